//! Human durations as used throughout the config and the Lua policy (SPEC "Conventions"):
//! a number of seconds (fractional allowed) or a string such as `"5s"`, `"20 minutes"`, `"7 days"`,
//! `"1h 30m"`. They are echoed back in the short form KumoMTA operators know (`"20m"`, `"7days"`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from configuration or policy. Displays in the short human form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

fn unit_nanos(unit: &str) -> Option<u128> {
    const S: u128 = 1_000_000_000;
    Some(match unit {
        "ns" | "nsec" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        "us" | "usec" | "micros" | "microsecond" | "microseconds" => 1_000,
        "ms" | "msec" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => S,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * S,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600 * S,
        "d" | "day" | "days" => 86_400 * S,
        "w" | "week" | "weeks" => 7 * 86_400 * S,
        _ => return None,
    })
}

/// Parse a human duration string. A bare number is seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError { input: input.to_string(), reason: reason.to_string() };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = rest[..unit_len].to_ascii_lowercase();
        let nanos = unit_nanos(&unit)
            .ok_or_else(|| err("unknown unit (use ns, us, ms, s, m, h, d or w, or their long names)"))?;
        total += (number * nanos as f64).round() as u128;
        rest = rest[unit_len..].trim_start_matches([' ', ',']);
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Format like humantime: `20m`, `7days`, `1h 30m`, `7days 3m`, `250ms`; zero is `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if secs == 0 && nanos == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    let days = secs / 86_400;
    secs %= 86_400;
    if days > 0 {
        parts.push(format!("{days}{}", if days == 1 { "day" } else { "days" }));
    }
    for (value, unit) in [(secs / 3600, "h"), (secs % 3600 / 60, "m"), (secs % 60, "s")] {
        if value > 0 {
            parts.push(format!("{value}{unit}"));
        }
    }
    for (value, unit) in [(nanos / 1_000_000, "ms"), (nanos / 1_000 % 1_000, "us"), (nanos % 1_000, "ns")] {
        if value > 0 {
            parts.push(format!("{value}{unit}"));
        }
    }
    parts.join(" ")
}

impl HumanDuration {
    pub fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(HumanDuration)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: seconds as a number, or a string such as \"5s\" or \"20 minutes\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(HumanDuration::from_secs)
                    .map_err(|_| E::custom(format!("invalid duration {v}: negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Duration::try_from_secs_f64(v)
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format!("invalid duration {v}: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_units() {
        let cases = [
            ("5", 5.0),
            ("2.5", 2.5),
            ("5s", 5.0),
            ("10 seconds", 10.0),
            ("20 minutes", 1200.0),
            ("20m", 1200.0),
            ("1h 30m", 5400.0),
            ("7 days", 604_800.0),
            ("7days", 604_800.0),
            ("250ms", 0.25),
            ("1 hour", 3600.0),
        ];
        for (input, secs) in cases {
            assert_eq!(parse_duration(input).unwrap().as_secs_f64(), secs, "{input}");
        }
    }

    #[test]
    fn rejects_garbage_with_reason() {
        for bad in ["", "abc", "5 parsecs", "m5", "-3s"] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("invalid duration"), "{err}");
        }
    }

    #[test]
    fn formats_short_form() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (1200, "20m"),
            (3600, "1h"),
            (5400, "1h 30m"),
            (604_800, "7days"),
            (604_980, "7days 3m"),
            (86_400, "1day"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn round_trips_through_text() {
        for secs in [1, 59, 61, 3599, 86_399, 90_061, 1_209_600] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
