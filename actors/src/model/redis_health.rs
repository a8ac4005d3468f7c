//! Whether the shared store is usable, as seen from this node: after a failure the node works on
//! its local shares and tries Redis again after a short pause (not on every message, which would
//! stall each one for a connect timeout); it says so at most once a minute, and once more when
//! Redis answers again.

use std::time::{Duration, Instant};

use super::throttle::Throttle;

/// What to log after an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthNote {
    /// Redis failed: log it (`suppressed` failures since the last line).
    Down { suppressed: u64 },
    /// Redis answered after being down.
    Recovered,
}

#[derive(Debug)]
pub struct RedisHealth {
    retry_after: Duration,
    down_until: Option<Instant>,
    was_down: bool,
    log: Throttle,
}

impl RedisHealth {
    pub fn new(retry_after: Duration) -> RedisHealth {
        RedisHealth {
            retry_after,
            down_until: None,
            was_down: false,
            log: Throttle::new(Duration::from_secs(60)),
        }
    }

    /// Worth asking Redis now (false while in the pause after a failure).
    pub fn should_try(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|until| now >= until)
    }

    pub fn failed(&mut self, now: Instant) -> Option<HealthNote> {
        self.down_until = Some(now + self.retry_after);
        self.was_down = true;
        self.log.hit(now).map(|suppressed| HealthNote::Down { suppressed })
    }

    pub fn succeeded(&mut self) -> Option<HealthNote> {
        self.down_until = None;
        if !std::mem::take(&mut self.was_down) {
            return None;
        }
        self.log.reset();
        Some(HealthNote::Recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_pauses_logs_once_a_minute_and_recovers() {
        let t0 = Instant::now();
        let mut h = RedisHealth::new(Duration::from_secs(1));
        assert!(h.should_try(t0));
        assert_eq!(h.succeeded(), None);
        assert_eq!(h.failed(t0), Some(HealthNote::Down { suppressed: 0 }));
        assert!(!h.should_try(t0 + Duration::from_millis(500)));
        assert!(h.should_try(t0 + Duration::from_secs(1)));
        for s in 1..59 {
            assert_eq!(h.failed(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(h.failed(t0 + Duration::from_secs(60)), Some(HealthNote::Down { suppressed: 58 }));
        assert_eq!(h.succeeded(), Some(HealthNote::Recovered));
        assert!(h.should_try(t0 + Duration::from_secs(60)));
        assert_eq!(h.succeeded(), None);
        assert_eq!(
            h.failed(t0 + Duration::from_secs(61)),
            Some(HealthNote::Down { suppressed: 0 }),
            "a new outage is reported at once"
        );
    }
}
