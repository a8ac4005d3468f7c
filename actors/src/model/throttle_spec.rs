//! A throttle spec as KumoMTA writes it: `[local:]quantity/[N]period[,max_burst=B]` (`100/s`,
//! `1,000/hr`, `20/30min`, `local:10/m`, `6/m,max_burst=1`). `local:` keeps the throttle on this
//! node even when throttles are shared through Redis; the burst defaults to the quantity.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::queue_config::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSpec {
    pub limit: u64,
    pub period: Duration,
    pub max_burst: Option<u64>,
    pub local: bool,
}

impl ThrottleSpec {
    pub fn parse(s: &str) -> Result<ThrottleSpec, String> {
        let err =
            |why: &str| format!("invalid throttle {s:?}: {why} (expected [local:]N/period[,max_burst=N])");
        let (local, rest) = match s.trim().strip_prefix("local:") {
            Some(rest) => (true, rest),
            None => (false, s.trim()),
        };
        let (rate, burst) = match rest.split_once(",max_burst=") {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (rest, None),
        };
        let (quantity, period) = rate.split_once('/').ok_or_else(|| err("no '/'"))?;
        let limit = number(quantity).ok_or_else(|| err("the quantity is not a whole number"))?;
        let digits = period.trim().chars().take_while(|c| c.is_ascii_digit()).count();
        let (multiplier, unit) = period.trim().split_at(digits);
        let multiplier: u64 =
            if multiplier.is_empty() { 1 } else { multiplier.parse().map_err(|_| err("bad period"))? };
        let unit_secs = match unit.trim() {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(err("unknown period")),
        };
        let max_burst = match burst {
            Some(b) => Some(number(b).ok_or_else(|| err("max_burst is not a whole number"))?),
            None => None,
        };
        if limit == 0 || multiplier == 0 || max_burst == Some(0) {
            return Err(err("zero"));
        }
        Ok(ThrottleSpec { limit, period: Duration::from_secs(unit_secs * multiplier), max_burst, local })
    }

    /// An egress path rate: Ferry spaces those evenly (a burst of one), as its local GCRA does.
    pub fn even(rate: Rate) -> ThrottleSpec {
        ThrottleSpec { limit: rate.count, period: rate.per, max_burst: Some(1), local: false }
    }

    /// The spacing of cells: period / limit.
    pub fn interval(&self) -> Duration {
        self.period / self.limit.clamp(1, u32::MAX as u64) as u32
    }

    pub fn burst(&self) -> u64 {
        self.max_burst.unwrap_or(self.limit)
    }

    /// Redis unreachable: this node's share of a limit meant for `nodes` nodes (at least one, so
    /// nothing stops; rounded down, so the shares never add up to more than the whole).
    pub fn share(&self, nodes: u32) -> ThrottleSpec {
        let nodes = u64::from(nodes.max(1));
        ThrottleSpec {
            limit: (self.limit / nodes).max(1),
            max_burst: self.max_burst.map(|b| (b / nodes).max(1)),
            ..*self
        }
    }
}

fn number(s: &str) -> Option<u64> {
    s.trim().replace([',', '_'], "").parse().ok()
}

impl Serialize for ThrottleSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let local = if self.local { "local:" } else { "" };
        let burst = self.max_burst.map(|b| format!(",max_burst={b}")).unwrap_or_default();
        s.collect_str(&format_args!("{local}{}/{}s{burst}", self.limit, self.period.as_secs()))
    }
}

impl<'de> Deserialize<'de> for ThrottleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ThrottleSpec::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ThrottleSpec {
        ThrottleSpec::parse(s).unwrap()
    }

    #[test]
    fn kumomta_spellings() {
        for (s, limit, secs) in [
            ("10/s", 10, 1),
            ("10/sec", 10, 1),
            ("10/second", 10, 1),
            ("50/min", 50, 60),
            ("1,000/hr", 1000, 3600),
            ("1_000/h", 1000, 3600),
            ("10,000/day", 10_000, 86_400),
            ("20/30minute", 20, 1800),
        ] {
            let t = spec(s);
            assert_eq!(
                (t.limit, t.period.as_secs(), t.local, t.max_burst),
                (limit, secs, false, None),
                "{s}"
            );
        }
        let t = spec("local:10/m");
        assert!(t.local);
        assert_eq!(t.interval(), Duration::from_secs(6));
        let t = spec("6/m,max_burst=1");
        assert_eq!((t.burst(), t.interval()), (1, Duration::from_secs(10)));
        assert_eq!(spec("6/m").burst(), 6);
    }

    #[test]
    fn bad_specs_are_refused() {
        for s in ["", "10", "ten/s", "10/fortnight", "0/s", "10/s,max_burst=0", "10/0s", "10/s,max_burst=x"] {
            assert!(ThrottleSpec::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn a_share_never_adds_up_to_more_than_the_whole() {
        assert_eq!(spec("20/s").share(2).limit, 10);
        assert_eq!(spec("20/s").share(3).limit, 6);
        assert_eq!(spec("1/s").share(4).limit, 1, "never zero");
        assert_eq!(spec("20/s,max_burst=4").share(2).max_burst, Some(2));
        assert_eq!(spec("20/s").share(0).limit, 20);
    }

    #[test]
    fn serializes_back_to_a_spec() {
        let t = spec("local:6/m,max_burst=1");
        let s = serde_json::to_value(t).unwrap();
        assert_eq!(ThrottleSpec::parse(s.as_str().unwrap()).unwrap(), t);
    }
}
