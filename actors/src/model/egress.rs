//! Egress sources and pools (seed 002; KumoMTA's `make_egress_source` / `make_egress_pool`).
//!
//! A *source* is where outbound traffic comes from: a local address to bind, the name to EHLO
//! with, optionally a remote port. A *pool* is a weighted set of sources; a scheduled queue's
//! `egress_pool` names one, and each message it promotes takes the next source by weighted round
//! robin. With no policy for them, the pool `unspecified` holds the one source `unspecified`,
//! which binds nothing (the kernel picks the address).

use std::net::IpAddr;
use std::time::Duration;

use ferry_config::HumanDuration;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The name of the default pool and of its one source.
pub const UNSPECIFIED: &str = "unspecified";

/// How long a source or pool definition is cached when it does not say (KumoMTA's default).
const DEFAULT_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSource {
    pub name: String,
    /// Local address outbound connections bind to (IPv4 or IPv6); None: the kernel chooses.
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// EHLO name; an egress path's `ehlo_domain` wins over it, and the node's host name is used
    /// when neither is set.
    #[serde(default)]
    pub ehlo_domain: Option<String>,
    /// Overrides the remote SMTP port (and the path's `smtp_port`).
    #[serde(default)]
    pub remote_port: Option<u16>,
    #[serde(default)]
    pub ttl: Option<HumanDuration>,
}

impl EgressSource {
    pub fn unspecified() -> EgressSource {
        EgressSource {
            name: UNSPECIFIED.into(),
            source_address: None,
            ehlo_domain: None,
            remote_port: None,
            ttl: None,
        }
    }

    pub fn from_json(v: &Value) -> Result<EgressSource, String> {
        let source: EgressSource = from_json(v)?;
        if source.name.is_empty() {
            return Err("name: a source needs a name".into());
        }
        if source.ehlo_domain.as_deref().is_some_and(|d| d.is_empty() || d.contains(char::is_whitespace)) {
            return Err(format!(
                "ehlo_domain: {:?} is not a host name",
                source.ehlo_domain.unwrap_or_default()
            ));
        }
        Ok(source)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl.map_or(DEFAULT_TTL, |t| t.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub name: String,
    /// Relative share of the pool's traffic; 0 takes the source out of rotation.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPool {
    pub name: String,
    pub entries: Vec<PoolEntry>,
    #[serde(default)]
    pub ttl: Option<HumanDuration>,
}

impl EgressPool {
    pub fn unspecified() -> EgressPool {
        EgressPool {
            name: UNSPECIFIED.into(),
            entries: vec![PoolEntry { name: UNSPECIFIED.into(), weight: 1 }],
            ttl: None,
        }
    }

    pub fn from_json(v: &Value) -> Result<EgressPool, String> {
        let pool: EgressPool = from_json(v)?;
        if pool.name.is_empty() {
            return Err("name: a pool needs a name".into());
        }
        if let Some(i) = pool.entries.iter().position(|e| e.name.is_empty()) {
            return Err(format!("entries[{}].name: a source name is required", i + 1));
        }
        if pool.entries.iter().all(|e| e.weight == 0) {
            return Err(format!("entries: pool {:?} has no source with a weight above 0", pool.name));
        }
        Ok(pool)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl.map_or(DEFAULT_TTL, |t| t.0)
    }
}

/// Deserialize a Lua table (as JSON), naming the key at fault; Lua's arrays are 1-based, so an
/// index in the path is shown as Lua counts.
fn from_json<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    let v = match v {
        Value::Array(a) if a.is_empty() => Value::Object(Map::new()),
        other => other.clone(),
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().iter().fold(String::new(), |mut out, seg| {
            match seg {
                serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{}]", index + 1)),
                serde_path_to_error::Segment::Map { key } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                other => out.push_str(&other.to_string()),
            }
            out
        });
        let inner = e.into_inner().to_string();
        if path.is_empty() || path == "?" { inner } else { format!("{path}: {inner}") }
    })
}

/// Smooth weighted round robin over a pool's entries: over any `sum(weights)` consecutive picks,
/// each entry is chosen exactly `weight` times, and picks of one entry are spread out rather
/// than bunched (3:1 gives a a b a, not a a a b). Entries of weight 0 are never chosen.
#[derive(Debug, Clone)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl WeightedRoundRobin {
    pub fn new(pool: &EgressPool) -> Self {
        let weights: Vec<i64> = pool.entries.iter().map(|e| i64::from(e.weight)).collect();
        let total = weights.iter().sum();
        WeightedRoundRobin { current: vec![0; weights.len()], weights, total }
    }

    /// Picks in one full cycle, over which every entry with a weight comes up (bounded, so that
    /// a caller looking for an eligible entry stops in time even with huge weights).
    pub fn cycle_len(&self) -> usize {
        usize::try_from(self.total).unwrap_or(0).min(4096)
    }

    /// The index of the next entry, or None when no entry has a weight.
    pub fn pick(&mut self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        for (c, w) in self.current.iter_mut().zip(&self.weights) {
            *c += w;
        }
        let (best, _) = self.current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))?;
        self.current[best] -= self.total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(weights: &[u32]) -> EgressPool {
        EgressPool {
            name: "p".into(),
            entries: weights
                .iter()
                .enumerate()
                .map(|(i, w)| PoolEntry { name: format!("ip-{i}"), weight: *w })
                .collect(),
            ttl: None,
        }
    }

    #[test]
    fn smooth_weighted_round_robin_spreads_picks_exactly_by_weight() {
        let mut wrr = WeightedRoundRobin::new(&pool(&[3, 1]));
        let picks: Vec<usize> = (0..8).filter_map(|_| wrr.pick()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0]);
        let mut wrr = WeightedRoundRobin::new(&pool(&[5, 0, 2, 1]));
        let mut counts = [0; 4];
        for _ in 0..800 {
            counts[wrr.pick().unwrap()] += 1;
        }
        assert_eq!(counts, [500, 0, 200, 100]);
        assert_eq!(WeightedRoundRobin::new(&pool(&[0, 0])).pick(), None);
    }

    #[test]
    fn sources_parse_with_defaults_and_name_bad_keys() {
        let s = EgressSource::from_json(
            &json!({"name": "ip-1", "source_address": "127.0.0.2", "ehlo_domain": "mta1.example"}),
        )
        .unwrap();
        assert_eq!(s.source_address, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(s.ttl(), Duration::from_secs(60));
        let v6 =
            EgressSource::from_json(&json!({"name": "v6", "source_address": "::1", "ttl": "5m"})).unwrap();
        assert_eq!((v6.source_address, v6.ttl()), (Some("::1".parse().unwrap()), Duration::from_secs(300)));
        let e = EgressSource::from_json(&json!({"name": "x", "source_adress": "1.2.3.4"})).unwrap_err();
        assert!(e.contains("source_adress"), "{e}");
        let e = EgressSource::from_json(&json!({"name": "x", "source_address": "not-an-ip"})).unwrap_err();
        assert!(e.starts_with("source_address"), "{e}");
        assert!(EgressSource::from_json(&json!({"name": ""})).is_err());
        assert!(EgressSource::from_json(&json!({"name": "x", "ehlo_domain": "two words"})).is_err());
    }

    #[test]
    fn pools_validate_weights_and_entries() {
        let p = EgressPool::from_json(
            &json!({"name": "p", "entries": [{"name": "a", "weight": 3}, {"name": "b"}]}),
        )
        .unwrap();
        assert_eq!(p.entries[1].weight, 1, "weight defaults to 1");
        for (bad, key) in [
            (json!({"name": "p", "entries": [{"name": "a", "weight": -1}]}), "entries[1].weight"),
            (json!({"name": "p", "entries": [{"name": "a", "weight": 1.5}]}), "entries[1].weight"),
            (json!({"name": "p", "entries": [{"name": "a"}, {"name": "b", "wieght": 2}]}), "entries[2]"),
            (json!({"name": "p", "entries": [{"name": "a", "weight": 0}]}), "entries"),
            (json!({"name": "p"}), "entries"),
        ] {
            let e = EgressPool::from_json(&bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
