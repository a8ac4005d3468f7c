//! GCRA, the generic cell rate algorithm: a throttle of `count` per `period` that spaces cells
//! evenly (one every `period / count`), keeping only a theoretical arrival time. Used for egress
//! paths' `max_message_rate` and `max_connection_rate`; time is a parameter, so tests need no
//! clock.

use std::time::{Duration, Instant};

use super::queue_config::Rate;

#[derive(Debug, Clone)]
pub struct Gcra {
    interval: Duration,
    /// When the next cell conforms.
    tat: Option<Instant>,
}

impl Gcra {
    pub fn new(rate: Rate) -> Gcra {
        Gcra { interval: rate.per / rate.count.clamp(1, u32::MAX as u64) as u32, tat: None }
    }

    /// Let one cell through at `now`, or say how long until one may pass (nothing is counted then).
    pub fn acquire(&mut self, now: Instant) -> Result<(), Duration> {
        match self.tat {
            Some(tat) if tat > now => Err(tat - now),
            _ => {
                self.tat = Some(now + self.interval);
                Ok(())
            }
        }
    }

    /// Keep the position in the schedule while taking a new rate (a refreshed path config).
    pub fn set_rate(&mut self, rate: Rate) {
        self.interval = rate.per / rate.count.clamp(1, u32::MAX as u64) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_spaced_evenly() {
        let rate = Rate::parse("50/s").unwrap();
        let mut g = Gcra::new(rate);
        let t0 = Instant::now();
        assert_eq!(g.acquire(t0), Ok(()));
        assert_eq!(g.acquire(t0), Err(Duration::from_millis(20)));
        assert_eq!(g.acquire(t0 + Duration::from_millis(19)), Err(Duration::from_millis(1)));
        assert_eq!(g.acquire(t0 + Duration::from_millis(20)), Ok(()));
        // 200 cells need at least 199 intervals: 3.98 s at 50/s.
        let mut g = Gcra::new(rate);
        let mut now = t0;
        for _ in 0..200 {
            while let Err(wait) = g.acquire(now) {
                now += wait;
            }
        }
        assert_eq!(now - t0, Duration::from_millis(3980));
    }

    #[test]
    fn an_idle_throttle_does_not_bank_credit() {
        let mut g = Gcra::new(Rate::parse("1/s").unwrap());
        let t0 = Instant::now();
        assert!(g.acquire(t0).is_ok());
        let later = t0 + Duration::from_secs(3600);
        assert!(g.acquire(later).is_ok());
        assert!(g.acquire(later).is_err(), "an hour idle allows one cell, not 3,600");
        g.set_rate(Rate::parse("10/s").unwrap());
        assert!(g.acquire(later + Duration::from_millis(1000)).is_ok());
        assert_eq!(g.acquire(later + Duration::from_millis(1000)), Err(Duration::from_millis(100)));
    }
}
