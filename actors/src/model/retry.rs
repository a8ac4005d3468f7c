//! Retry schedule (SPEC §2.6) and expiry (SPEC §2.7) as pure functions of `now`, so a 20-minute
//! schedule is tested in microseconds. Jitter takes its random number as an argument for the same
//! reason.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_config::format_duration;

use super::scheduling::Scheduling;

/// Backoff for a message that had `n` attempts before this failure (first failure: n = 0):
/// `min(retry_interval * 2^n, max_retry_interval)`, saturating.
pub fn retry_delay(retry_interval: Duration, max_retry_interval: Option<Duration>, n: u16) -> Duration {
    let factor = 1u32.checked_shl(u32::from(n)).unwrap_or(0);
    let delay = if factor == 0 { Duration::MAX } else { retry_interval.saturating_mul(factor) };
    match max_retry_interval {
        Some(cap) => delay.min(cap),
        None => delay,
    }
}

/// Jitter in whole seconds: `rand01 * mag - mag/2`, truncated toward zero, where
/// `mag = min(retry_interval / 20, 60 s)`.
pub fn jitter_secs(retry_interval: Duration, rand01: f64) -> i64 {
    let mag = (retry_interval.as_secs_f64() / 20.0).min(60.0);
    (rand01 * mag - mag / 2.0).trunc() as i64
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The inputs of a requeue with increment.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub retry_interval: Duration,
    pub max_retry_interval: Option<Duration>,
    pub max_age: Duration,
}

/// Why a message expires, as the `Expiration` record's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired(pub String);

fn age_message(age: Duration, max_age: Duration) -> Expired {
    Expired(format!(
        "Next delivery time would be {} after creation, which exceeds max_age={}",
        format_duration(Duration::from_secs(age.as_secs())),
        format_duration(max_age)
    ))
}

fn expires_message(due: DateTime<Utc>, expires: DateTime<Utc>) -> Expired {
    Expired(format!(
        "Next delivery time would be at {} which exceeds the expiry time {} configured via set_scheduling",
        due.to_rfc3339(),
        expires.to_rfc3339()
    ))
}

/// SPEC §2.6 without any expiry check: `Adjust(now + delay + jitter)` (xfer_in_requeue leaves
/// expiry to the target, SPEC §4.7 step 3).
pub fn next_due_unchecked(
    now: DateTime<Utc>,
    n: u16,
    backoff: &Backoff,
    schedule: Option<&Scheduling>,
    rand01: f64,
) -> DateTime<Utc> {
    let delay = retry_delay(backoff.retry_interval, backoff.max_retry_interval, n);
    let base = add(now, delay);
    let jittered = base
        .checked_add_signed(chrono::Duration::seconds(jitter_secs(backoff.retry_interval, rand01)))
        .unwrap_or(base);
    schedule.map_or(jittered, |s| s.adjust(jittered))
}

/// SPEC §2.6 + E1: the next due time after a transient failure with increment, or why the
/// message expires instead. `n` is num_attempts before this failure.
pub fn next_due_with_increment(
    now: DateTime<Utc>,
    created: DateTime<Utc>,
    n: u16,
    backoff: &Backoff,
    schedule: Option<&Scheduling>,
    rand01: f64,
) -> Result<DateTime<Utc>, Expired> {
    let delay = retry_delay(backoff.retry_interval, backoff.max_retry_interval, n);
    let jitter = jitter_secs(backoff.retry_interval, rand01);
    let base = add(now, delay);
    let jittered = base.checked_add_signed(chrono::Duration::seconds(jitter)).unwrap_or(base);
    let due = schedule.map_or(jittered, |s| s.adjust(jittered));
    match schedule.and_then(Scheduling::expires) {
        Some(expires) if due >= expires => Err(expires_message(due, expires)),
        Some(_) => Ok(due),
        None => {
            let age_now = (now - created).to_std().unwrap_or_default();
            let age = age_now.saturating_add(delay);
            if age >= backoff.max_age { Err(age_message(age, backoff.max_age)) } else { Ok(due) }
        }
    }
}

/// E2 (requeue without increment) and E3 (spool load): expire when `due - created >= max_age`,
/// or when `due >= expires` (the engine also checks `expires` here; D14).
pub fn check_expiry(
    due: DateTime<Utc>,
    created: DateTime<Utc>,
    max_age: Duration,
    schedule: Option<&Scheduling>,
) -> Result<(), Expired> {
    if let Some(expires) = schedule.and_then(Scheduling::expires)
        && due >= expires
    {
        return Err(expires_message(due, expires));
    }
    let age = (due - created).to_std().unwrap_or_default();
    if age >= max_age { Err(age_message(age, max_age)) } else { Ok(()) }
}

/// SPEC §2.6 without increment: `Adjust(now + delay)`, or `Adjust(now + rand[0,60) s)` without a delay.
pub fn next_due_without_increment(
    now: DateTime<Utc>,
    delay: Option<Duration>,
    schedule: Option<&Scheduling>,
    rand01: f64,
) -> DateTime<Utc> {
    let delay = delay.unwrap_or_else(|| Duration::from_secs_f64(rand01 * 60.0));
    let t = add(now, delay);
    schedule.map_or(t, |s| s.adjust(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const MIN: u64 = 60;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn delays_double_from_the_attempts_before_the_failure() {
        let ri = Duration::from_secs(20 * MIN);
        let want = [20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480];
        for (n, minutes) in want.iter().enumerate() {
            assert_eq!(retry_delay(ri, None, n as u16), Duration::from_secs(minutes * MIN), "n={n}");
        }
        let five = Duration::from_secs(5);
        assert_eq!(retry_delay(five, None, 0), five);
        assert_eq!(retry_delay(five, None, 2), Duration::from_secs(20));
    }

    #[test]
    fn cap_applies_and_equal_cap_is_a_fixed_interval() {
        let ri = Duration::from_secs(20 * MIN);
        let cap = Some(Duration::from_secs(60 * MIN));
        let got: Vec<u64> = (0..=10).map(|n| retry_delay(ri, cap, n).as_secs() / MIN).collect();
        assert_eq!(got, [20, 40, 60, 60, 60, 60, 60, 60, 60, 60, 60]);
        let five = Duration::from_secs(5);
        assert!((0..=10).all(|n| retry_delay(five, Some(five), n) == five));
    }

    #[test]
    fn huge_attempt_counts_saturate() {
        let ri = Duration::from_secs(20 * MIN);
        assert_eq!(retry_delay(ri, None, 200), Duration::MAX);
        assert_eq!(retry_delay(ri, Some(Duration::from_secs(3600)), u16::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_bounds() {
        // 20 m: mag = 60 s, jitter in (-30, 30) whole seconds.
        let ri = Duration::from_secs(20 * MIN);
        assert_eq!(jitter_secs(ri, 0.0), -30);
        assert_eq!(jitter_secs(ri, 0.5), 0);
        assert_eq!(jitter_secs(ri, 0.999_999), 29);
        // 5 s: mag = 0.25 s, so no whole-second jitter at all.
        assert!([0.0, 0.3, 0.99].iter().all(|r| jitter_secs(Duration::from_secs(5), *r) == 0));
        // Huge intervals cap the magnitude at 60 s.
        assert_eq!(jitter_secs(Duration::from_secs(86_400), 0.0), -30);
    }

    #[test]
    fn next_due_adds_delay_and_jitter() {
        let b = Backoff {
            retry_interval: Duration::from_secs(20 * MIN),
            max_retry_interval: None,
            max_age: Duration::from_secs(7 * 86_400),
        };
        let due = next_due_with_increment(t0(), t0(), 0, &b, None, 0.0).unwrap();
        assert_eq!(due, t0() + chrono::Duration::seconds(20 * 60 - 30));
        let due = next_due_with_increment(t0(), t0(), 1, &b, None, 0.5).unwrap();
        assert_eq!(due, t0() + chrono::Duration::minutes(40));
    }

    #[test]
    fn e1_max_age_boundary_is_inclusive() {
        let b = Backoff {
            retry_interval: Duration::from_secs(60),
            max_retry_interval: None,
            max_age: Duration::from_secs(600),
        };
        let created = t0();
        // age now 540 s + delay 60 s = 600 s == max_age: expires (>=).
        let now = created + chrono::Duration::seconds(540);
        let err = next_due_with_increment(now, created, 0, &b, None, 0.5).unwrap_err();
        assert_eq!(err.0, "Next delivery time would be 10m after creation, which exceeds max_age=10m");
        // One second younger: still retried.
        let now = created + chrono::Duration::seconds(539);
        assert!(next_due_with_increment(now, created, 0, &b, None, 0.5).is_ok());
    }

    #[test]
    fn e1_expires_replaces_max_age() {
        let b = Backoff {
            retry_interval: Duration::from_secs(5),
            max_retry_interval: None,
            max_age: Duration::from_secs(1),
        };
        let sched = Scheduling::from_json_str(r#"{"expires":"2026-03-01T12:00:10+00:00"}"#).unwrap();
        // max_age (1 s) would expire it, but with `expires` only `expires` counts.
        assert!(next_due_with_increment(t0(), t0(), 0, &b, Some(&sched), 0.5).is_ok());
        // due = now + 5 s = 12:00:10 == expires: expires (>=).
        let now = t0() + chrono::Duration::seconds(5);
        let err = next_due_with_increment(now, t0(), 0, &b, Some(&sched), 0.5).unwrap_err();
        assert!(err.0.contains("configured via set_scheduling"), "{}", err.0);
    }

    #[test]
    fn e2_checks_due_minus_created_and_expires() {
        let max_age = Duration::from_secs(600);
        assert!(check_expiry(t0() + chrono::Duration::seconds(599), t0(), max_age, None).is_ok());
        assert!(check_expiry(t0() + chrono::Duration::seconds(600), t0(), max_age, None).is_err());
        let sched = Scheduling::from_json_str(r#"{"expires":"2026-03-01T12:00:10Z"}"#).unwrap();
        assert!(check_expiry(t0() + chrono::Duration::seconds(9), t0(), max_age, Some(&sched)).is_ok());
        assert!(check_expiry(t0() + chrono::Duration::seconds(10), t0(), max_age, Some(&sched)).is_err());
    }

    #[test]
    fn without_increment_uses_delay_or_up_to_a_minute() {
        assert_eq!(next_due_without_increment(t0(), Some(Duration::ZERO), None, 0.9), t0());
        assert_eq!(
            next_due_without_increment(t0(), Some(Duration::from_secs(7)), None, 0.9),
            t0() + chrono::Duration::seconds(7)
        );
        let d = next_due_without_increment(t0(), None, None, 0.5);
        assert_eq!(d, t0() + chrono::Duration::seconds(30));
    }

    #[test]
    fn schedule_window_adjusts_the_retry() {
        let sched = Scheduling::from_json_str(
            r#"{"dow":"Mon,Tue,Wed,Thu,Fri,Sat,Sun","tz":"UTC","start":"13:00:00","end":"14:00:00"}"#,
        )
        .unwrap();
        let b = Backoff {
            retry_interval: Duration::from_secs(60),
            max_retry_interval: None,
            max_age: Duration::from_secs(86_400),
        };
        let due = next_due_with_increment(t0(), t0(), 0, &b, Some(&sched), 0.5).unwrap();
        assert_eq!(due, Utc.with_ymd_and_hms(2026, 3, 1, 13, 0, 0).unwrap());
    }
}
