//! The last 15 minutes of the node's activity, one sample per second, for the dashboard's charts
//! and `ferry top`'s sparklines.
//!
//! A tick reads the node's cumulative counters (records logged, by type) and its queue depth;
//! [`MetricsHistory::record`] turns two readings into per-second rates and keeps them in a ring of
//! fixed size, so the history costs the same memory however long the node runs. The tick's time
//! is a parameter: tests run a quarter of an hour of samples in microseconds.

use std::collections::VecDeque;

use serde::Serialize;

/// Seconds of history kept (15 minutes).
pub const HISTORY_SECONDS: usize = 15 * 60;

/// The counters sampled, in [`Reading::counters`] order: (series name, what it counts).
pub const COUNTER_SERIES: [(&str, &str); 6] = [
    ("received", "Messages received per second"),
    ("delivered", "Messages delivered per second"),
    ("transient", "Transient failures per second"),
    ("bounced", "Bounces per second"),
    ("xfer_out", "Messages transferred to other nodes per second"),
    ("xfer_in", "Messages received from other nodes per second"),
];

/// One reading of the node's numbers, taken by the tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Cumulative counts, in [`COUNTER_SERIES`] order.
    pub counters: [u64; COUNTER_SERIES.len()],
    /// Messages waiting, scheduled and ready, at the time of the reading.
    pub queue_depth: u64,
}

/// One second of history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    /// Unix time (seconds) the sample describes.
    pub at: u64,
    /// Per-second rates, in [`COUNTER_SERIES`] order.
    pub rates: [f64; COUNTER_SERIES.len()],
    pub queue_depth: u64,
}

/// The history in the shape the JSON endpoint serves: one array per series, oldest first, all
/// the same length as `at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryView {
    pub interval_seconds: u64,
    pub capacity: usize,
    /// Unix time of each sample.
    pub at: Vec<u64>,
    pub series: Vec<Series>,
}

/// One named series of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: &'static str,
    pub description: &'static str,
    /// `per_second` (a rate) or `messages` (a count).
    pub unit: &'static str,
    /// One value per sample, oldest first.
    pub values: Vec<f64>,
}

/// A fixed-size ring of per-second samples and the reading they were last computed from.
#[derive(Debug)]
pub struct MetricsHistory {
    samples: VecDeque<Second>,
    capacity: usize,
    last: Option<(u64, Reading)>,
}

impl Default for MetricsHistory {
    fn default() -> Self {
        Self::with_capacity(HISTORY_SECONDS)
    }
}

/// The per-second rate of a counter that went from `before` to `now` over `secs` seconds. A
/// counter that went down was reset (a restart of whatever counts): it counted `now` since.
pub fn rate(before: u64, now: u64, secs: u64) -> f64 {
    let delta = if now < before { now } else { now - before };
    delta as f64 / secs.max(1) as f64
}

impl MetricsHistory {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { samples: VecDeque::with_capacity(capacity), capacity, last: None }
    }

    /// Add the reading taken at unix second `now`. The first reading only sets the baseline. A
    /// second reading within the same second waits for the next one (its counts are not lost: the
    /// baseline stays). When ticks were missed the delta is spread evenly over the missed
    /// seconds, so the time axis stays one sample per second. A clock that went back restarts
    /// the baseline.
    pub fn record(&mut self, now: u64, reading: Reading) {
        let Some((then, before)) = self.last else {
            self.last = Some((now, reading));
            return;
        };
        if now <= then {
            if now < then {
                self.last = Some((now, reading));
            }
            return;
        }
        let secs = now - then;
        let mut rates = [0.0; COUNTER_SERIES.len()];
        for (r, (b, n)) in rates.iter_mut().zip(before.counters.iter().zip(&reading.counters)) {
            *r = rate(*b, *n, secs);
        }
        // Only the last `capacity` seconds of a long gap can be kept.
        let first = now - secs.min(self.capacity as u64) + 1;
        for at in first..=now {
            if self.samples.len() == self.capacity {
                self.samples.pop_front();
            }
            self.samples.push_back(Second { at, rates, queue_depth: reading.queue_depth });
        }
        self.last = Some((now, reading));
    }

    /// Samples after unix second `since` (all of them if None), oldest first.
    pub fn since(&self, since: Option<u64>) -> impl Iterator<Item = &Second> {
        let start = since.map_or(0, |s| self.samples.partition_point(|x| x.at <= s));
        self.samples.range(start..)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples after `since`, one array per series.
    pub fn view(&self, since: Option<u64>) -> HistoryView {
        let samples: Vec<&Second> = self.since(since).collect();
        let mut series: Vec<Series> = COUNTER_SERIES
            .iter()
            .enumerate()
            .map(|(i, (name, description))| Series {
                name,
                description,
                unit: "per_second",
                values: samples.iter().map(|s| s.rates[i]).collect(),
            })
            .collect();
        series.push(Series {
            name: "queue_depth",
            description: "Messages waiting (scheduled and ready)",
            unit: "messages",
            values: samples.iter().map(|s| s.queue_depth as f64).collect(),
        });
        HistoryView {
            interval_seconds: 1,
            capacity: self.capacity,
            at: samples.iter().map(|s| s.at).collect(),
            series,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(received: u64, delivered: u64, depth: u64) -> Reading {
        Reading { counters: [received, delivered, 0, 0, 0, 0], queue_depth: depth }
    }

    #[test]
    fn rates_are_counter_deltas_and_a_reset_counts_from_zero() {
        assert_eq!(rate(10, 25, 1), 15.0);
        assert_eq!(rate(10, 30, 4), 5.0);
        assert_eq!(rate(500, 7, 1), 7.0, "a counter that went down restarted");
        assert_eq!(rate(3, 3, 0), 0.0, "no division by zero");
    }

    #[test]
    fn the_first_reading_is_a_baseline_and_each_second_a_sample() {
        let mut h = MetricsHistory::default();
        h.record(1000, reading(100, 0, 0));
        assert!(h.is_empty());
        h.record(1001, reading(300, 0, 200));
        h.record(1002, reading(300, 150, 50));
        let s: Vec<&Second> = h.since(None).collect();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].at, s[0].rates[0], s[0].rates[1], s[0].queue_depth), (1001, 200.0, 0.0, 200));
        assert_eq!((s[1].at, s[1].rates[0], s[1].rates[1], s[1].queue_depth), (1002, 0.0, 150.0, 50));
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes_and_no_more() {
        let mut h = MetricsHistory::default();
        for t in 0..=2000u64 {
            h.record(t, reading(t * 3, t, 0));
        }
        assert_eq!(h.len(), HISTORY_SECONDS);
        let s: Vec<&Second> = h.since(None).collect();
        assert_eq!(s.first().unwrap().at, 2000 - HISTORY_SECONDS as u64 + 1);
        assert_eq!(s.last().unwrap().at, 2000);
        assert!(s.iter().all(|x| x.rates[0] == 3.0 && x.rates[1] == 1.0));
        assert!(h.samples.capacity() < 2 * HISTORY_SECONDS, "fixed memory");
    }

    #[test]
    fn missed_ticks_spread_the_delta_and_a_long_gap_keeps_only_the_window() {
        let mut h = MetricsHistory::with_capacity(10);
        h.record(100, reading(0, 0, 0));
        h.record(104, reading(40, 0, 7));
        let s: Vec<(u64, f64)> = h.since(None).map(|x| (x.at, x.rates[0])).collect();
        assert_eq!(s, [(101, 10.0), (102, 10.0), (103, 10.0), (104, 10.0)]);
        h.record(10_000, reading(40, 0, 0));
        assert_eq!(h.len(), 10);
        assert_eq!(h.since(None).next().unwrap().at, 9_991);
    }

    #[test]
    fn the_same_second_waits_and_a_clock_going_back_rebaselines() {
        let mut h = MetricsHistory::default();
        h.record(50, reading(0, 0, 0));
        h.record(50, reading(5, 0, 0));
        assert!(h.is_empty(), "no sample within the same second");
        h.record(51, reading(9, 0, 0));
        assert_eq!(h.since(None).next().unwrap().rates[0], 9.0, "the early reading's counts are kept");
        h.record(40, reading(20, 0, 0));
        h.record(41, reading(21, 0, 0));
        assert_eq!(h.since(None).last().unwrap().rates[0], 1.0);
    }

    #[test]
    fn a_poll_gets_only_what_is_new_as_one_array_per_series() {
        let mut h = MetricsHistory::default();
        for t in 0..=5u64 {
            h.record(t, reading(t * 2, 0, t));
        }
        let v = h.view(Some(3));
        assert_eq!(v.at, [4, 5]);
        let names: Vec<&str> = v.series.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["received", "delivered", "transient", "bounced", "xfer_out", "xfer_in", "queue_depth"]
        );
        assert_eq!(v.series[0].values, [2.0, 2.0]);
        assert_eq!((v.series[6].unit, v.series[6].values.as_slice()), ("messages", [4.0, 5.0].as_slice()));
        assert!(h.view(Some(5)).at.is_empty());
        assert_eq!(h.view(None).at.len(), 5);
    }
}
