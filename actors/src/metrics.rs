//! Process-wide metrics for `GET /metrics` (Prometheus text format) and the admin views.
//!
//! Actors own their numbers and publish them here as atomics: a scheduled queue its waiting
//! count, a dispatcher its ready count and connections, the spool writer and the policy pool
//! their latencies, the logger one counter per record type. Reading never sends a message to an
//! actor, so a scrape costs the actors nothing. Gauge families are ordered maps so a scrape can
//! walk a million queues in chunks (see [`GaugeFamily::chunk_after`]) instead of building one
//! huge string under one lock.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::model::RecordType;
use crate::model::metrics_history::{COUNTER_SERIES, HistoryView, MetricsHistory, Reading};

mod ready_queues;
pub use ready_queues::{Counts, OwnedReadyQueueStats, PathLimits, ReadyQueueFamily, ReadyQueueStats};

/// One labelled gauge per key (a queue name, a ready queue).
#[derive(Default)]
pub struct GaugeFamily {
    map: Mutex<BTreeMap<String, Arc<AtomicI64>>>,
    /// The sum of every owned gauge, kept as they change so a 1 s tick need not walk the map.
    total: AtomicI64,
}

impl GaugeFamily {
    /// The sum of the family's gauges (a gauge whose actor is still stopping included).
    pub fn total(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn remove(&self, key: &str) {
        self.map.lock().expect("gauge lock").remove(key);
    }

    /// Up to `n` (key, value) pairs after `after` (from the start if None), in key order.
    pub fn chunk_after(&self, after: Option<&str>, n: usize) -> Vec<(String, i64)> {
        let map = self.map.lock().expect("gauge lock");
        let range = match after {
            Some(k) => map.range::<str, _>((Bound::Excluded(k), Bound::Unbounded)),
            None => map.range::<str, _>(..),
        };
        range.take(n).map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed))).collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("gauge lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<i64> {
        self.map.lock().expect("gauge lock").get(key).map(|g| g.load(Ordering::Relaxed))
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let micros = d.as_micros().min(u64::MAX as u128) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*le, cumulative)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
            max: Duration::from_micros(self.max_micros.load(Ordering::Relaxed)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, cumulative count).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: Duration,
    pub max: Duration,
}

impl HistogramSnapshot {
    pub fn mean(&self) -> Duration {
        if self.count == 0 { Duration::ZERO } else { self.sum / self.count as u32 }
    }
}

/// Everything the node publishes.
#[derive(Default)]
pub struct Metrics {
    /// `scheduled_count{queue}`: messages waiting in each scheduled queue.
    pub scheduled: GaugeFamily,
    /// `ready_count{service}`: messages in each ready queue (`smtp_client:<site>`, `xfer:<site>`, …).
    pub ready: GaugeFamily,
    /// `connection_count{service}`: open connections (or requests in flight) per ready queue.
    pub connections: GaugeFamily,
    /// Each live ready queue: its source, site, path limits and delivery counters.
    pub ready_queues: ReadyQueueFamily,
    /// Records logged, by type.
    records: [AtomicU64; RECORD_TYPES.len()],
    pub spool_commit: Histogram,
    /// Messages per spool commit.
    pub spool_batch: Histogram,
    pub policy_handler: Histogram,
    /// Policy calls waiting for a Lua state.
    pub policy_queued: AtomicI64,
    /// Open SMTP sessions.
    pub smtp_connections: AtomicI64,
    /// SMTP connections refused at accept for `max_connections` / `max_connections_per_ip`.
    pub connections_denied: AtomicU64,
    /// One entry per xfer target actor, by target URL.
    pub xfer_targets: Mutex<BTreeMap<String, Arc<XferTargetStats>>>,
    /// Log records lost because the log disk refused them for too long (or no segment could be
    /// created).
    pub log_records_dropped: AtomicU64,
    /// The latest log records (JSON lines), newest last, for the dashboard.
    recent: Mutex<std::collections::VecDeque<String>>,
    /// Per-second rates over the last 15 minutes, fed by [`Metrics::sample_history`].
    history: Mutex<MetricsHistory>,
}

/// Log records kept for [`Metrics::recent_records`].
pub const RECENT_RECORDS: usize = 200;

/// What an xfer target actor publishes about its peer.
#[derive(Debug, Default)]
pub struct XferTargetStats {
    pub site: String,
    pub ready: AtomicI64,
    pub in_flight: AtomicI64,
    /// Messages the peer accepted.
    pub sent: AtomicU64,
    /// Failed attempts (each a TransientFailure).
    pub failed: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// `unknown`, `batch` or `single`.
    pub form: Mutex<&'static str>,
}

/// Record types counted, with the counter each feeds.
pub const RECORD_TYPES: [(RecordType, &str, &str); 9] = [
    (RecordType::Reception, "total_messages_received", "Messages accepted over SMTP"),
    (RecordType::Delivery, "total_messages_delivered", "Messages delivered"),
    (RecordType::TransientFailure, "total_messages_transfail", "Transient delivery failures"),
    (RecordType::Bounce, "total_messages_bounced", "Permanent failures and policy bounces"),
    (RecordType::Expiration, "total_messages_expired", "Messages expired"),
    (RecordType::AdminBounce, "total_messages_admin_bounced", "Messages bounced by an administrator"),
    (RecordType::AdminRebind, "total_messages_rebound", "Messages rebound to another queue"),
    (RecordType::XferIn, "total_messages_xfer_in", "Messages received from another node"),
    (RecordType::XferOut, "total_messages_xfer_out", "Messages transferred to another node"),
];

impl Metrics {
    pub fn record_logged(&self, kind: RecordType) {
        if let Some(i) = RECORD_TYPES.iter().position(|(k, _, _)| *k == kind) {
            self.records[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (counter name, help, value) for each record type.
    pub fn totals(&self) -> Vec<(&'static str, &'static str, u64)> {
        RECORD_TYPES
            .iter()
            .zip(&self.records)
            .map(|((_, name, help), n)| (*name, *help, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Keep a logged record's JSON line among the latest ones.
    pub fn record_line(&self, line: &str) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_RECORDS {
                recent.pop_front();
            }
            recent.push_back(line.to_string());
        }
    }

    /// Up to `n` of the latest records, oldest first.
    pub fn recent_records(&self, n: usize) -> Vec<String> {
        let recent = self.recent.lock().map(|r| r.clone()).unwrap_or_default();
        recent.into_iter().rev().take(n).collect::<Vec<_>>().into_iter().rev().collect()
    }
}

/// The record type each history counter counts, in [`COUNTER_SERIES`] order.
const HISTORY_COUNTERS: [RecordType; COUNTER_SERIES.len()] = [
    RecordType::Reception,
    RecordType::Delivery,
    RecordType::TransientFailure,
    RecordType::Bounce,
    RecordType::XferOut,
    RecordType::XferIn,
];

impl Metrics {
    /// The reading the history tick takes: the record counters and the messages waiting.
    pub fn reading(&self) -> Reading {
        let count = |kind: RecordType| {
            RECORD_TYPES
                .iter()
                .position(|(k, _, _)| *k == kind)
                .map_or(0, |i| self.records[i].load(Ordering::Relaxed))
        };
        let mut counters = [0; COUNTER_SERIES.len()];
        for (c, kind) in counters.iter_mut().zip(HISTORY_COUNTERS) {
            *c = count(kind);
        }
        let depth = self.scheduled.total() + self.ready.total();
        Reading { counters, queue_depth: depth.max(0) as u64 }
    }

    /// One tick of the history, at unix second `now`.
    pub fn sample_history(&self, now: u64) {
        let reading = self.reading();
        if let Ok(mut h) = self.history.lock() {
            h.record(now, reading);
        }
    }

    /// The history after unix second `since` (all 15 minutes if None).
    pub fn history(&self, since: Option<u64>) -> HistoryView {
        self.history.lock().map(|h| h.view(since)).unwrap_or_else(|_| MetricsHistory::default().view(None))
    }
}

/// Tick the history once a second, just after each second turns, on a thread of its own (a
/// tick is a few atomic reads and one short lock).
pub fn spawn_history_tick() -> std::io::Result<()> {
    std::thread::Builder::new().name("ferry-metrics-history".into()).spawn(|| {
        loop {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            metrics().sample_history(now.as_secs());
            let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
            std::thread::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(5));
        }
    })?;
    Ok(())
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The node's metrics (one node per process).
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// A gauge an actor owns: set as the actor's number changes, removed when the actor stops.
pub struct OwnedGauge {
    family: &'static GaugeFamily,
    key: String,
    gauge: Arc<AtomicI64>,
}

impl OwnedGauge {
    /// Takes over `key` (a predecessor still stopping keeps its own, now unlisted, gauge).
    pub fn new(family: &'static GaugeFamily, key: &str) -> Self {
        let gauge = Arc::new(AtomicI64::new(0));
        family.map.lock().expect("gauge lock").insert(key.to_string(), gauge.clone());
        Self { family, key: key.to_string(), gauge }
    }

    pub fn set(&self, v: usize) {
        let old = self.gauge.swap(v as i64, Ordering::Relaxed);
        self.family.total.fetch_add(v as i64 - old, Ordering::Relaxed);
    }
}

impl Drop for OwnedGauge {
    fn drop(&mut self) {
        self.family.total.fetch_sub(self.gauge.load(Ordering::Relaxed), Ordering::Relaxed);
        // A successor actor may already own the key (a re-created queue): only remove our own.
        let mut map = self.family.map.lock().expect("gauge lock");
        if map.get(&self.key).is_some_and(|g| Arc::ptr_eq(g, &self.gauge)) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_families_walk_in_chunks_and_owners_clean_up() {
        static FAMILY: LazyLock<GaugeFamily> = LazyLock::new(GaugeFamily::default);
        let gauges: Vec<OwnedGauge> = (0..5).map(|i| OwnedGauge::new(&FAMILY, &format!("q{i}"))).collect();
        gauges[3].set(7);
        let first = FAMILY.chunk_after(None, 2);
        assert_eq!(first, vec![("q0".into(), 0), ("q1".into(), 0)]);
        let rest = FAMILY.chunk_after(Some("q1"), 10);
        assert_eq!(rest.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["q2", "q3", "q4"]);
        assert_eq!(rest[1].1, 7);
        // A re-created queue's gauge survives its predecessor's drop.
        let mut gauges = gauges;
        let old = gauges.remove(0);
        let successor = OwnedGauge::new(&FAMILY, "q0");
        drop(old);
        successor.set(2);
        assert_eq!(FAMILY.get("q0"), Some(2));
        gauges[1].set(5);
        assert_eq!(FAMILY.total(), 2 + 7 + 5, "the total follows every set");
        drop(gauges);
        drop(successor);
        assert!(FAMILY.is_empty());
        assert_eq!(FAMILY.total(), 0, "and every drop");
    }

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[3], (0.005, 2));
        assert_eq!(s.buckets.last().unwrap().1, 2, "60 s is beyond the last bucket (only +Inf has it)");
        assert_eq!(s.max, Duration::from_secs(60));
    }
}
