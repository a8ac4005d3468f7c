//! How fast a ready queue is draining, to send `max_ready` overflow back for about as long as the
//! queue needs to make room (KumoMTA delays overflow by up to 60 s at random; a fixed minute would
//! stall a burst that a fast path clears in a second).

use std::time::{Duration, Instant};

/// Messages taken per second, measured over windows of about a second.
#[derive(Debug, Clone)]
pub struct DrainRate {
    window_start: Instant,
    taken: u64,
    /// The last full window's rate; None before one has passed.
    per_second: Option<f64>,
}

const WINDOW: Duration = Duration::from_secs(1);
const MIN_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(60);

impl DrainRate {
    pub fn new(now: Instant) -> Self {
        DrainRate { window_start: now, taken: 0, per_second: None }
    }

    /// `n` messages were taken at `now`.
    pub fn note_taken(&mut self, now: Instant, n: u64) {
        self.taken += n;
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= WINDOW {
            self.per_second = Some(self.taken as f64 / elapsed.as_secs_f64());
            self.window_start = now;
            self.taken = 0;
        }
    }

    /// How long until `backlog` messages have gone at the measured rate (one second while
    /// nothing has been measured), between 250 ms and 60 s; `jitter` in [0, 1) spreads returns
    /// over half to one and a half times that.
    pub fn delay_for(&self, backlog: usize, jitter: f64) -> Duration {
        let base = match self.per_second {
            Some(rate) if rate > 0.0 => Duration::from_secs_f64(backlog as f64 / rate),
            _ => Duration::from_secs(1),
        };
        base.mul_f64(0.5 + jitter).clamp(MIN_DELAY, MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_the_measured_drain_rate() {
        let t0 = Instant::now();
        let mut d = DrainRate::new(t0);
        assert_eq!(d.delay_for(1024, 0.5), Duration::from_secs(1), "unmeasured: a second");
        // 2,000 taken over one second: 1,024 more drain in about half a second.
        for i in 0..2000u32 {
            d.note_taken(t0 + Duration::from_micros(500 * u64::from(i + 1)), 1);
        }
        let delay = d.delay_for(1024, 0.5);
        assert!(delay > Duration::from_millis(450) && delay < Duration::from_millis(560), "{delay:?}");
        assert_eq!(d.delay_for(1024, 0.0), delay / 2);
        // Bounded both ways.
        assert_eq!(d.delay_for(1, 0.5), MIN_DELAY);
        let mut slow = DrainRate::new(t0);
        slow.note_taken(t0 + Duration::from_secs(10), 1);
        assert_eq!(slow.delay_for(10_000, 0.9), MAX_DELAY);
    }
}
