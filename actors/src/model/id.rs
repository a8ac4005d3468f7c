//! Message ids (SPEC §1.1): a version-1 UUID in "simple" form (32 lowercase hex digits). The id encodes
//! its creation time, so a message's age needs no extra field, and carries the node's 6-byte node field.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;
use uuid::timestamp::context::ContextV1;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Uuid);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid message id {0:?}: expected 32 hex digits of a version-1 UUID")]
pub struct BadMessageId(pub String);

impl MessageId {
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(b))
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    pub fn uuid(&self) -> Uuid {
        self.0
    }
    /// Creation time, from the v1 timestamp (SPEC §1.1 `created`).
    pub fn created(&self) -> DateTime<Utc> {
        let (secs, nanos) = self.0.get_timestamp().map(|t| t.to_unix()).unwrap_or((0, 0));
        Utc.timestamp_opt(secs as i64, nanos).single().unwrap_or_default()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = BadMessageId;
    fn from_str(s: &str) -> Result<Self, BadMessageId> {
        if s.len() != 32 {
            return Err(BadMessageId(s.to_string()));
        }
        let u = Uuid::try_parse(s).map_err(|_| BadMessageId(s.to_string()))?;
        if u.get_version_num() != 1 {
            return Err(BadMessageId(s.to_string()));
        }
        Ok(Self(u))
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Makes unique ids for one node. The 14-bit clock sequence is shared by all callers (it lives in
/// the generator), so ids from different threads in the same 100 ns tick still differ.
pub struct MessageIdGenerator {
    node: [u8; 6],
    context: ContextV1,
}

impl MessageIdGenerator {
    /// `node_uuid` is the node's UUID; its last six bytes become the v1 node field, with the
    /// multicast bit set as RFC 9562 asks for node ids that are not MAC addresses.
    pub fn new(node_uuid: &Uuid) -> Self {
        let b = node_uuid.as_bytes();
        let mut node = [b[10], b[11], b[12], b[13], b[14], b[15]];
        node[0] |= 0x01;
        Self { node, context: ContextV1::new(rand::random::<u16>()) }
    }

    pub fn node_field(&self) -> [u8; 6] {
        self.node
    }

    pub fn generate(&self) -> MessageId {
        self.generate_at(Utc::now())
    }

    /// An id whose creation time is `at` (tests and xfer use this to keep a message's age).
    pub fn generate_at(&self, at: DateTime<Utc>) -> MessageId {
        let ts = uuid::Timestamp::from_unix(
            &self.context,
            at.timestamp().max(0) as u64,
            at.timestamp_subsec_nanos(),
        );
        MessageId(Uuid::new_v1(ts, &self.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn generator() -> MessageIdGenerator {
        MessageIdGenerator::new(&Uuid::new_v4())
    }

    #[test]
    fn ids_are_32_lowercase_hex_v1_and_round_trip() {
        let id = generator().generate();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(s.parse::<MessageId>().unwrap(), id);
        assert_eq!(id.uuid().get_version_num(), 1);
    }

    #[test]
    fn created_is_encoded_in_the_id() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap() + chrono::Duration::milliseconds(500);
        let id = generator().generate_at(at);
        assert_eq!(id.created(), at);
    }

    #[test]
    fn many_ids_in_the_same_instant_are_unique() {
        let g = generator();
        let at = Utc::now();
        let ids: HashSet<_> = (0..10_000).map(|_| g.generate_at(at)).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn concurrent_generation_is_unique() {
        let g = std::sync::Arc::new(generator());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..2_000).map(|_| g.generate()).collect::<Vec<_>>())
            })
            .collect();
        let all: HashSet<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        assert_eq!(all.len(), 8_000);
    }

    #[test]
    fn node_field_comes_from_the_node_uuid() {
        let node = Uuid::new_v4();
        let g = MessageIdGenerator::new(&node);
        let id = g.generate();
        assert_eq!(id.uuid().get_node_id(), Some(g.node_field()));
        assert_eq!(g.node_field()[1..], node.as_bytes()[11..]);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "xyz", "1d98076abbbc11ed940250ebf67f93b", &Uuid::new_v4().simple().to_string()] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad}");
        }
    }
}
