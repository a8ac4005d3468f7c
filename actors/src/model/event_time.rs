//! Event times for log records (SPEC I5): nanosecond timestamps strictly increasing across the
//! process, so records of one message sort in causal order even within one clock tick.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

static LAST: AtomicI64 = AtomicI64::new(0);

/// The next event time: now, or one nanosecond after the previous one if the clock has not moved.
pub fn next() -> DateTime<Utc> {
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let candidate = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, candidate, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return DateTime::from_timestamp_nanos(candidate),
            Err(actual) => prev = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn strictly_increasing_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..10_000).map(|_| super::next()).collect::<Vec<_>>()))
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let v = h.join().unwrap();
            assert!(v.windows(2).all(|w| w[0] < w[1]));
            all.extend(v);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "event times must be unique");
    }
}
