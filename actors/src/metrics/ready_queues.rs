//! What each ready queue publishes beyond its gauges: who it is (source, site, protocol), the
//! limits of its egress path, and KumoMTA's per-service delivery counters
//! (`total_messages_delivered`, `total_messages_transfail`, `total_messages_fail`, labelled
//! `service="<protocol>:<ready queue>"`, plus the per-protocol sums labelled `service="<protocol>"`).
//!
//! A connection holds its queue's `Arc<ReadyQueueStats>`, so counting a message is two relaxed
//! atomic adds: no map lookup, no lock. Like KumoMTA's, a queue's counters start from zero when
//! the queue is reaped and re-created; the per-protocol sums live as long as the process.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::model::egress_path::EgressPathConfig;
use crate::model::queue_config::Rate;

/// Delivered / transiently failed / permanently failed message counts.
#[derive(Debug, Default)]
pub struct DeliveryCounts {
    delivered: AtomicU64,
    transfail: AtomicU64,
    fail: AtomicU64,
}

/// A reading of [`DeliveryCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub delivered: u64,
    pub transfail: u64,
    pub fail: u64,
}

impl DeliveryCounts {
    pub fn read(&self) -> Counts {
        Counts {
            delivered: self.delivered.load(Ordering::Relaxed),
            transfail: self.transfail.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
        }
    }
}

/// The limits of a ready queue's egress path that an operator watches it against.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PathLimits {
    pub connection_limit: usize,
    pub max_message_rate: Option<Rate>,
    pub max_connection_rate: Option<Rate>,
    pub max_ready: usize,
}

impl From<&EgressPathConfig> for PathLimits {
    fn from(p: &EgressPathConfig) -> Self {
        PathLimits {
            connection_limit: p.connection_limit,
            max_message_rate: p.max_message_rate,
            max_connection_rate: p.max_connection_rate,
            max_ready: p.max_ready,
        }
    }
}

/// One live ready queue, as the views and `/metrics` see it.
#[derive(Debug)]
pub struct ReadyQueueStats {
    /// `<source>-><site>`, e.g. `ip-1->mx_list:[127.0.0.1]:25@smtp_client`.
    pub name: String,
    /// `<protocol>:<name>`, the `service` label.
    pub service: String,
    pub source: String,
    pub site: String,
    pub protocol: String,
    counts: DeliveryCounts,
    protocol_counts: Arc<DeliveryCounts>,
    /// None until the path config is known; set again on each refresh (rare: no hot path).
    limits: Mutex<Option<PathLimits>>,
}

impl ReadyQueueStats {
    pub fn delivered(&self) {
        self.counts.delivered.fetch_add(1, Ordering::Relaxed);
        self.protocol_counts.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn transfail(&self) {
        self.counts.transfail.fetch_add(1, Ordering::Relaxed);
        self.protocol_counts.transfail.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fail(&self) {
        self.counts.fail.fetch_add(1, Ordering::Relaxed);
        self.protocol_counts.fail.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> Counts {
        self.counts.read()
    }

    pub fn set_limits(&self, path: &EgressPathConfig) {
        if let Ok(mut l) = self.limits.lock() {
            *l = Some(path.into());
        }
    }

    pub fn limits(&self) -> Option<PathLimits> {
        self.limits.lock().ok().and_then(|l| l.clone())
    }
}

/// The live ready queues by service label, and the per-protocol sums.
#[derive(Default)]
pub struct ReadyQueueFamily {
    queues: Mutex<BTreeMap<String, Arc<ReadyQueueStats>>>,
    protocols: Mutex<BTreeMap<String, Arc<DeliveryCounts>>>,
}

impl ReadyQueueFamily {
    /// Up to `n` ready queues after service `after` (from the start if None), in service order.
    pub fn chunk_after(&self, after: Option<&str>, n: usize) -> Vec<Arc<ReadyQueueStats>> {
        let map = self.queues.lock().expect("ready queue stats lock");
        let range = match after {
            Some(k) => map.range::<str, _>((Bound::Excluded(k), Bound::Unbounded)),
            None => map.range::<str, _>(..),
        };
        range.take(n).map(|(_, v)| v.clone()).collect()
    }

    /// Per-protocol sums, by protocol (`smtp_client`, `lua`).
    pub fn protocol_counts(&self) -> Vec<(String, Counts)> {
        let map = self.protocols.lock().expect("ready queue stats lock");
        map.iter().map(|(p, c)| (p.clone(), c.read())).collect()
    }

    pub fn len(&self) -> usize {
        self.queues.lock().expect("ready queue stats lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A ready queue's entry, removed from the family when the queue stops.
pub struct OwnedReadyQueueStats {
    family: &'static ReadyQueueFamily,
    stats: Arc<ReadyQueueStats>,
}

impl OwnedReadyQueueStats {
    /// `name` is `<source>-><site>`; `service` its `<protocol>:<name>` label.
    pub fn new(family: &'static ReadyQueueFamily, name: &str, service: &str) -> Self {
        let protocol = service.split_once(':').map_or(service, |(p, _)| p).to_string();
        let (source, site) = name.split_once("->").unwrap_or(("", name));
        let protocol_counts = family
            .protocols
            .lock()
            .expect("ready queue stats lock")
            .entry(protocol.clone())
            .or_default()
            .clone();
        let stats = Arc::new(ReadyQueueStats {
            name: name.to_string(),
            service: service.to_string(),
            source: source.to_string(),
            site: site.to_string(),
            protocol,
            counts: DeliveryCounts::default(),
            protocol_counts,
            limits: Mutex::new(None),
        });
        family.queues.lock().expect("ready queue stats lock").insert(service.to_string(), stats.clone());
        Self { family, stats }
    }

    /// The handle a connection counts its messages on.
    pub fn handle(&self) -> Arc<ReadyQueueStats> {
        self.stats.clone()
    }
}

impl std::ops::Deref for OwnedReadyQueueStats {
    type Target = ReadyQueueStats;
    fn deref(&self) -> &ReadyQueueStats {
        &self.stats
    }
}

impl Drop for OwnedReadyQueueStats {
    fn drop(&mut self) {
        // A successor queue of the same name may already own the entry: only remove our own.
        let mut map = self.family.queues.lock().expect("ready queue stats lock");
        if map.get(&self.stats.service).is_some_and(|s| Arc::ptr_eq(s, &self.stats)) {
            map.remove(&self.stats.service);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;

    #[test]
    fn counts_reach_the_queue_and_its_protocol_and_a_reaped_queue_starts_over() {
        static FAMILY: LazyLock<ReadyQueueFamily> = LazyLock::new(ReadyQueueFamily::default);
        let name = "ip-1->mx:example.com@smtp_client";
        let a = OwnedReadyQueueStats::new(&FAMILY, name, &format!("smtp_client:{name}"));
        let b = OwnedReadyQueueStats::new(&FAMILY, "ip-2->q@lua:make", "lua:ip-2->q@lua:make");
        assert_eq!(
            (a.source.as_str(), a.site.as_str(), a.protocol.as_str()),
            ("ip-1", "mx:example.com@smtp_client", "smtp_client")
        );
        let handle = a.handle();
        handle.delivered();
        handle.delivered();
        handle.transfail();
        b.fail();
        assert_eq!(a.counts(), Counts { delivered: 2, transfail: 1, fail: 0 });
        let protocols = FAMILY.protocol_counts();
        assert_eq!(protocols[0], ("lua".into(), Counts { delivered: 0, transfail: 0, fail: 1 }));
        assert_eq!(protocols[1], ("smtp_client".into(), Counts { delivered: 2, transfail: 1, fail: 0 }));
        assert_eq!(FAMILY.chunk_after(None, 10).len(), 2);
        assert_eq!(FAMILY.chunk_after(Some("lua:ip-2->q@lua:make"), 10)[0].name, name);

        // Re-created under the same name: fresh counters; the old owner's drop leaves it listed.
        let successor = OwnedReadyQueueStats::new(&FAMILY, name, &format!("smtp_client:{name}"));
        drop(a);
        assert_eq!(FAMILY.len(), 2);
        assert_eq!(FAMILY.chunk_after(Some("lua:ip-2->q@lua:make"), 1)[0].counts(), Counts::default());
        assert_eq!(FAMILY.protocol_counts()[1].1.delivered, 2, "the protocol sum outlives its queues");
        drop((b, successor));
        assert!(FAMILY.is_empty());
    }
}
