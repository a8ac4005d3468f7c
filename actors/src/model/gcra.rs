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

/// One GCRA step with a burst, on microsecond timestamps: the rule `kumo.make_throttle` follows
/// locally and the Redis script (`throttles::scripts::GCRA`) follows on the server, line for line,
/// so a shared throttle behaves as a local one. `tat` is the stored theoretical arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraStep {
    pub throttled: bool,
    /// The tat to store when the cell passes (unchanged when throttled).
    pub tat: u64,
    pub retry_after_us: u64,
    /// Cells that could still pass right now.
    pub remaining: u64,
    /// Until the throttle is back to its full burst.
    pub reset_after_us: u64,
}

pub fn step(tat: Option<u64>, now: u64, interval_us: u64, burst: u64) -> GcraStep {
    let interval = interval_us.max(1);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let tolerance = interval * burst.max(1);
    let allow_at = new_tat.saturating_sub(tolerance);
    if allow_at > now {
        return GcraStep {
            throttled: true,
            tat,
            retry_after_us: allow_at - now,
            remaining: 0,
            reset_after_us: tat - now,
        };
    }
    let remaining = tolerance.saturating_sub(new_tat - now) / interval;
    GcraStep { throttled: false, tat: new_tat, retry_after_us: 0, remaining, reset_after_us: new_tat - now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_allows_a_burst_then_spaces_cells() {
        // 6/m with the default burst (6): six pass at once, the seventh waits 10 s.
        let (interval, burst) = (10_000_000, 6);
        let mut tat = None;
        for n in 0..6 {
            let s = step(tat, 0, interval, burst);
            assert!(!s.throttled, "cell {n}");
            assert_eq!(s.remaining, 5 - n);
            tat = Some(s.tat);
        }
        let s = step(tat, 0, interval, burst);
        assert!(s.throttled);
        assert_eq!((s.retry_after_us, s.tat), (10_000_000, tat.unwrap()));
        assert!(!step(tat, 10_000_000, interval, burst).throttled);
        // max_burst=1: one now, the next after one interval.
        let first = step(None, 0, interval, 1);
        assert_eq!(step(Some(first.tat), 1, interval, 1).retry_after_us, interval - 1);
    }

    #[test]
    fn step_with_burst_one_matches_the_even_gcra() {
        let rate = Rate::parse("50/s").unwrap();
        let mut g = Gcra::new(rate);
        let t0 = Instant::now();
        let mut tat = None;
        for ms in [0u64, 5, 20, 21, 39, 40, 100, 101] {
            let even = g.acquire(t0 + Duration::from_millis(ms)).is_ok();
            let s = step(tat, ms * 1000, 20_000, 1);
            assert_eq!(even, !s.throttled, "at {ms} ms");
            if !s.throttled {
                tat = Some(s.tat);
            }
        }
    }

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
