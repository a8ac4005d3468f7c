//! The cluster view (issue 17, item 5): each node's heartbeat as stored in Redis, one key per
//! node whose TTL is a few heartbeats, so a node that stops disappears from the view. Pure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `SCAN MATCH` pattern of every node key.
pub const NODE_PATTERN: &str = "ferry:cluster:node:*";
/// Heartbeats a node may miss before it drops out of the view.
pub const MISSED_HEARTBEATS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHeartbeat {
    pub node_id: Uuid,
    /// Its admin URL (`[cluster] node_url`).
    pub node_url: String,
    pub version: String,
    /// Messages waiting in scheduled queues.
    pub scheduled: i64,
    /// Messages in ready queues.
    pub ready: i64,
    pub last_heartbeat: DateTime<Utc>,
}

impl NodeHeartbeat {
    pub fn redis_key(&self) -> String {
        node_key(self.node_id)
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a heartbeat always serializes")
    }

    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

pub fn node_key(id: Uuid) -> String {
    format!("ferry:cluster:node:{id}")
}

/// TTL of a node key for a heartbeat `interval`, in whole seconds (at least 2).
pub fn node_ttl(interval: Duration) -> u64 {
    (interval * MISSED_HEARTBEATS).as_secs_f64().ceil().max(2.0) as u64
}

/// The nodes seen, by admin URL then id, decodable entries only.
pub fn view<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<NodeHeartbeat> {
    let mut nodes: Vec<NodeHeartbeat> =
        values.into_iter().filter_map(|v| NodeHeartbeat::decode(v).ok()).collect();
    nodes.sort_by(|a, b| (&a.node_url, a.node_id).cmp(&(&b.node_url, b.node_id)));
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(n: u128, url: &str) -> NodeHeartbeat {
        NodeHeartbeat {
            node_id: Uuid::from_u128(n),
            node_url: url.into(),
            version: "0.1.0".into(),
            scheduled: 4,
            ready: 1,
            last_heartbeat: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn heartbeats_round_trip_and_the_view_is_sorted_skipping_garbage() {
        let (a, b) = (hb(2, "http://10.0.0.1:8000"), hb(1, "http://10.0.0.2:8000"));
        assert_eq!(NodeHeartbeat::decode(&a.encode()).unwrap(), a);
        assert_eq!(a.redis_key(), "ferry:cluster:node:00000000-0000-0000-0000-000000000002");
        let (ea, eb) = (a.encode(), b.encode());
        assert_eq!(view([eb.as_str(), "garbage", ea.as_str()]), vec![a, b]);
    }

    #[test]
    fn a_node_key_outlives_a_few_heartbeats() {
        assert_eq!(node_ttl(Duration::from_secs(5)), 15);
        assert_eq!(node_ttl(Duration::from_millis(300)), 2);
        assert_eq!(node_ttl(Duration::from_millis(1500)), 5);
    }
}
