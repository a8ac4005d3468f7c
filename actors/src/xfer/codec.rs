//! The xfer wire format (SPEC §4.3): one compact JSON line (`id`, `sender`, `recipient` array,
//! `meta`), a `\n`, then the raw message bytes; gzip on the wire. The receiver also takes deflate
//! and identity, and applies its size limit to the *decompressed* body so a small bomb cannot
//! expand into memory (D20).

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
}

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

/// Body for a message: JSON line + raw bytes, gzip-compressed.
pub fn encode(msg: &Message) -> Vec<u8> {
    let envelope = Envelope {
        id: msg.id.to_string(),
        sender: msg.sender.clone(),
        recipient: msg.recipients.clone(),
        meta: msg.meta.clone(),
    };
    let mut plain = serde_json::to_vec(&envelope).expect("envelope serialises");
    plain.push(b'\n');
    plain.extend_from_slice(&msg.data);
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(plain.len() / 2), flate2::Compression::fast());
    gz.write_all(&plain).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// Undo `Content-Encoding`, refusing anything over `limit` bytes once decompressed.
pub fn decompress(body: &[u8], encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let read = |mut r: Box<dyn Read + '_>, what: &'static str, out: &mut Vec<u8>| {
        r.by_ref()
            .take(limit as u64 + 1)
            .read_to_end(out)
            .map_err(|e| CodecError::Corrupt(what, e.to_string()))
    };
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => out.extend_from_slice(&body[..body.len().min(limit + 1)]),
        Some("gzip") | Some("x-gzip") => {
            read(Box::new(flate2::read::GzDecoder::new(body)), "gzip", &mut out)?;
        }
        Some("deflate") => {
            read(Box::new(flate2::read::ZlibDecoder::new(body)), "deflate", &mut out)?;
        }
        Some(other) => return Err(CodecError::Encoding(other.to_string())),
    };
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

/// Split a decompressed body into its envelope and message bytes.
pub fn decode(plain: &[u8]) -> Result<(Envelope, Bytes), CodecError> {
    let nl = plain
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| CodecError::Framing("no JSON line (missing \\n)".into()))?;
    let envelope: Envelope =
        serde_json::from_slice(&plain[..nl]).map_err(|e| CodecError::Framing(format!("JSON line: {e}")))?;
    if envelope.recipient.is_empty() {
        return Err(CodecError::Framing("recipient is empty".into()));
    }
    Ok((envelope, Bytes::copy_from_slice(&plain[nl + 1..])))
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
        let plain = decompress(&encode(&m), Some("gzip"), 1 << 20).unwrap();
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
        assert!(matches!(decode(b"{\"id\":\"x\"}"), Err(CodecError::Framing(_))));
        assert!(matches!(decode(b"not json\nbody"), Err(CodecError::Framing(_))));
        assert!(matches!(
            decode(b"{\"id\":\"x\",\"sender\":\"\",\"recipient\":[]}\n"),
            Err(CodecError::Framing(_))
        ));
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
