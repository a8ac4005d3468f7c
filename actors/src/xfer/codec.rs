//! The xfer wire format (SPEC §4.3): one compact JSON line (`id`, `sender`, `recipient` array,
//! `meta`), a `\n`, then the raw message bytes; gzip on the wire. The receiver also takes deflate
//! and identity, and applies its size limit to the *decompressed* body so a small bomb cannot
//! expand into memory (D20).
//!
//! The batch form (Ferry only; docs/xfer-protocol.md) repeats that framing, with `size` in each
//! JSON line giving the length of the raw bytes that follow it.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::Message;

/// The JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub id: String,
    pub sender: String,
    pub recipient: Vec<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Length of the raw bytes after the line: required in the batch form, optional (and then
    /// checked) in the single form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Content-Type of a batch request.
pub const BATCH_CONTENT_TYPE: &str = "application/x-ferry-xfer-batch";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unsupported Content-Encoding {0:?} (use gzip, deflate or identity)")]
    Encoding(String),
    #[error("body is not valid {0}: {1}")]
    Corrupt(&'static str, String),
    #[error("body is larger than {0} bytes after decompression")]
    TooLarge(usize),
    #[error("malformed xfer body: {0}")]
    Framing(String),
}

/// Write one framed message into `out` (the gzip stream: no intermediate plain copy).
fn frame(msg: &Message, size: Option<u64>, out: &mut impl Write) {
    let envelope = Envelope {
        id: msg.id.to_string(),
        sender: msg.sender.clone(),
        recipient: msg.recipients.clone(),
        meta: msg.meta.clone(),
        size,
    };
    let mut line = serde_json::to_vec(&envelope).expect("envelope serialises");
    line.push(b'\n');
    out.write_all(&line).and_then(|()| out.write_all(&msg.data)).expect("writing to memory");
}

fn gzip_encoder(capacity: usize) -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::with_capacity(capacity), flate2::Compression::fast())
}

/// Body for a message: JSON line + raw bytes, gzip-compressed.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut gz = gzip_encoder(msg.data.len() / 2 + 256);
    frame(msg, None, &mut gz);
    gz.finish().expect("writing to memory")
}

/// Body for a batch: each message framed with its `size`, one after the other, gzip-compressed.
pub fn encode_batch<'a>(msgs: impl IntoIterator<Item = &'a Message>) -> Vec<u8> {
    let mut gz = gzip_encoder(64 << 10);
    for msg in msgs {
        frame(msg, Some(msg.data.len() as u64), &mut gz);
    }
    gz.finish().expect("writing to memory")
}

/// Undo `Content-Encoding`, refusing anything over `limit` bytes once decompressed, and any
/// bytes after the compressed stream (they would be silently ignored otherwise: a truncated or
/// spliced body must not pass as a shorter valid one). Several gzip members one after another
/// are one valid gzip stream (RFC 1952 §2.2) and decode to their concatenation.
pub fn decompress(body: &[u8], encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => out.extend_from_slice(&body[..body.len().min(limit + 1)]),
        Some("gzip") | Some("x-gzip") => {
            let mut rest = body;
            loop {
                let mut member = flate2::bufread::GzDecoder::new(rest);
                read_limited(&mut member, "gzip", limit, &mut out)?;
                rest = member.into_inner();
                if rest.is_empty() || out.len() > limit {
                    break;
                }
                if !rest.starts_with(&[0x1f, 0x8b]) {
                    return Err(trailing("gzip", rest.len()));
                }
            }
        }
        Some("deflate") => {
            let mut stream = flate2::bufread::ZlibDecoder::new(body);
            read_limited(&mut stream, "deflate", limit, &mut out)?;
            let rest = stream.into_inner();
            if !rest.is_empty() && out.len() <= limit {
                return Err(trailing("deflate", rest.len()));
            }
        }
        Some(other) => return Err(CodecError::Encoding(other.to_string())),
    };
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

/// Append what `r` decodes to `out`, stopping one byte past `limit` in total.
fn read_limited(
    r: &mut impl Read,
    what: &'static str,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let room = (limit + 1).saturating_sub(out.len()) as u64;
    r.take(room).read_to_end(out).map(drop).map_err(|e| CodecError::Corrupt(what, e.to_string()))
}

fn trailing(what: &'static str, n: usize) -> CodecError {
    CodecError::Corrupt(what, format!("{n} bytes of trailing data after the end of the {what} stream"))
}

/// Split a decompressed body into its envelope and message bytes (a slice of `plain`, no copy).
pub fn decode(plain: &Bytes) -> Result<(Envelope, Bytes), CodecError> {
    let nl = plain
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| CodecError::Framing("no JSON line (missing \\n)".into()))?;
    let envelope: Envelope =
        serde_json::from_slice(&plain[..nl]).map_err(|e| CodecError::Framing(format!("JSON line: {e}")))?;
    if envelope.recipient.is_empty() {
        return Err(CodecError::Framing("recipient is empty".into()));
    }
    let data = &plain[nl + 1..];
    if envelope.size.is_some_and(|s| s != data.len() as u64) {
        return Err(CodecError::Framing(format!(
            "size is {} but {} bytes follow the JSON line",
            envelope.size.unwrap_or_default(),
            data.len()
        )));
    }
    Ok((envelope, plain.slice(nl + 1..)))
}

/// Split a decompressed batch body into its messages. Any framing error refuses the whole batch,
/// naming the message (1-based) where it was found.
pub fn decode_batch(plain: &Bytes) -> Result<Vec<(Envelope, Bytes)>, CodecError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < plain.len() {
        let rest = &plain[at..];
        let n = out.len() + 1;
        let fail = |what: String| CodecError::Framing(format!("message {n} of the batch: {what}"));
        let nl =
            rest.iter().position(|b| *b == b'\n').ok_or_else(|| fail("no JSON line (missing \\n)".into()))?;
        let envelope: Envelope =
            serde_json::from_slice(&rest[..nl]).map_err(|e| fail(format!("JSON line: {e}")))?;
        if envelope.recipient.is_empty() {
            return Err(fail("recipient is empty".into()));
        }
        let size = envelope.size.ok_or_else(|| fail("size is missing".into()))?;
        let after = &rest[nl + 1..];
        if size > after.len() as u64 {
            return Err(fail(format!("size is {size} but only {} bytes remain", after.len())));
        }
        let start = at + nl + 1;
        out.push((envelope, plain.slice(start..start + size as usize)));
        at = start + size as usize;
    }
    if out.is_empty() {
        return Err(CodecError::Framing("the batch is empty".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageIdGenerator;

    fn message() -> Message {
        let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        let mut m = Message::new(
            g.generate(),
            "sender@example.com".into(),
            vec!["a@example.com".into()],
            Bytes::from_static(b"Subject: x\r\n\r\nbinary \x00\xff\n.\r\n"),
        );
        m.set_meta("tenant", serde_json::json!("t"));
        m
    }

    #[test]
    fn round_trip_keeps_every_byte() {
        let m = message();
        let plain = Bytes::from(decompress(&encode(&m), Some("gzip"), 1 << 20).unwrap());
        let (env, data) = decode(&plain).unwrap();
        assert_eq!(env.id, m.id.to_string());
        assert_eq!(env.recipient, m.recipients);
        assert_eq!(env.meta, m.meta);
        assert_eq!(data, m.data);
    }

    #[test]
    fn malformed_bodies_are_named() {
        let gz = encode(&message());
        assert!(matches!(
            decompress(&gz[..gz.len() / 2], Some("gzip"), 1 << 20),
            Err(CodecError::Corrupt("gzip", _))
        ));
        assert!(matches!(decompress(b"x", Some("br"), 10), Err(CodecError::Encoding(_))));
        let d = |b: &'static [u8]| decode(&Bytes::from_static(b));
        assert!(matches!(d(b"{\"id\":\"x\"}"), Err(CodecError::Framing(_))));
        assert!(matches!(d(b"not json\nbody"), Err(CodecError::Framing(_))));
        assert!(matches!(
            d(b"{\"id\":\"x\",\"sender\":\"\",\"recipient\":[]}\n"),
            Err(CodecError::Framing(_))
        ));
    }

    #[test]
    fn a_batch_round_trips_and_keeps_message_boundaries() {
        let a = message();
        let mut b = message();
        b.data = Bytes::from_static(b"{\"id\":\"looks like a line\"}\n\nbody");
        let unzip = |gz: Vec<u8>| Bytes::from(decompress(&gz, Some("gzip"), 1 << 20).unwrap());
        let plain = unzip(encode_batch([&a, &b]));
        let items = decode_batch(&plain).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].0.id.as_str(), &items[0].1), (a.id.to_string().as_str(), &a.data));
        assert_eq!((items[1].0.id.as_str(), &items[1].1), (b.id.to_string().as_str(), &b.data));
        // A truncated batch names the message that is short.
        let cut = plain.slice(..plain.len() - 3);
        let err = decode_batch(&cut).unwrap_err().to_string();
        assert!(err.contains("message 2") && err.contains("remain"), "{err}");
        assert!(decode_batch(&Bytes::new()).unwrap_err().to_string().contains("empty"));
        // The single form checks a size it is given.
        let batch_of_one = unzip(encode_batch([&a]));
        assert!(decode(&batch_of_one).is_ok());
        let grown = Bytes::from([batch_of_one.as_ref(), b"x"].concat());
        assert!(decode(&grown).unwrap_err().to_string().contains("size is"));
        let single = unzip(encode(&a));
        // A batch item without size is refused.
        assert!(decode_batch(&single).unwrap_err().to_string().contains("size is missing"));
    }

    #[test]
    fn bytes_after_the_compressed_stream_are_refused() {
        let gz = encode(&message());
        let plain = decompress(&gz, Some("gzip"), 1 << 20).unwrap();
        let garbage = [gz.as_slice(), b"garbage"].concat();
        let err = decompress(&garbage, Some("gzip"), 1 << 20).unwrap_err();
        assert_eq!(
            err,
            CodecError::Corrupt("gzip", "7 bytes of trailing data after the end of the gzip stream".into())
        );
        let zeros = [gz.as_slice(), &[0, 0, 0, 0]].concat();
        assert!(decompress(&zeros, Some("gzip"), 1 << 20).is_err(), "padding is trailing data too");
        // Garbage that starts like a gzip header is a corrupt second member.
        let fake = [gz.as_slice(), &[0x1f, 0x8b, 0]].concat();
        assert!(matches!(decompress(&fake, Some("gzip"), 1 << 20), Err(CodecError::Corrupt("gzip", _))));
        // Two whole members are one multi-member gzip stream.
        let two = [gz.as_slice(), gz.as_slice()].concat();
        assert_eq!(decompress(&two, Some("gzip"), 1 << 20).unwrap(), [plain.as_slice(), &plain].concat());
        // ... and the limit counts them together.
        assert_eq!(
            decompress(&two, Some("gzip"), plain.len() + 1),
            Err(CodecError::TooLarge(plain.len() + 1))
        );

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&plain).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(decompress(&z, Some("deflate"), 1 << 20).unwrap(), plain);
        let err = decompress(&[z.as_slice(), b"x"].concat(), Some("deflate"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("1 bytes of trailing data"), "{err}");
    }

    #[test]
    fn the_limit_applies_after_decompression() {
        let mut m = message();
        m.data = Bytes::from(vec![b'a'; 100_000]);
        let gz = encode(&m);
        assert!(gz.len() < 10_000, "compresses well");
        assert_eq!(decompress(&gz, Some("gzip"), 50_000), Err(CodecError::TooLarge(50_000)));
        assert!(decompress(&gz, Some("gzip"), 200_000).is_ok());
        assert_eq!(decompress(&[b'x'; 20], None, 10), Err(CodecError::TooLarge(10)));
    }
}
