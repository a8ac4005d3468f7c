//! At most one report per interval: how a failure that repeats many times a second (a full log
//! disk) becomes one log line a minute instead of a flood.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    last_report: Option<Instant>,
    /// Events since the last report that were not reported.
    suppressed: u64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Throttle { interval, last_report: None, suppressed: 0 }
    }

    /// One event at `now`. `Some(n)` means report it, mentioning the `n` events that were kept
    /// quiet since the previous report; `None` means stay quiet (it is counted).
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        let due = self.last_report.is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// The trouble is over: the next event is reported at once.
    pub fn reset(&mut self) {
        self.last_report = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.hit(t0), Some(0));
        for ms in 1..1000 {
            assert_eq!(t.hit(t0 + Duration::from_millis(ms * 10)), None);
        }
        assert_eq!(t.hit(t0 + Duration::from_secs(59)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(60)), Some(1000));
        assert_eq!(t.hit(t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn reset_reports_the_next_event_at_once() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.hit(t0), Some(0));
        assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        t.reset();
        assert_eq!(t.hit(t0 + Duration::from_secs(2)), Some(0));
    }
}
