//! MTA-STS (RFC 8461) as pure rules: the `_mta-sts` TXT record, the policy file, which MX hosts a
//! policy allows, what it does to an egress path's `enable_tls`, and when a cached policy must be
//! looked at again. Fetching and caching live in `egress::mta_sts`.

use std::time::{Duration, Instant};

use super::egress_path::EnableTls;

/// RFC 8461 §3.2: max_age is at most 31557600 s (about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// How often the TXT record of a domain is looked at again (to see a new policy id, or a policy
/// published since). Between checks the cached answer is used as it is.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// `mx:` patterns, lower case, without a trailing dot: `mx.example.com` or `*.example.com`.
    pub mx: Vec<String>,
    pub max_age: Duration,
}

/// The policy id of a domain's `_mta-sts` TXT records (RFC 8461 §3.1): exactly one record must
/// start with `v=STSv1`, and it must carry an `id` of 1-32 letters and digits. Anything else is
/// no policy (`None`), as if the record were absent.
pub fn txt_policy_id(records: &[String]) -> Option<String> {
    let mut sts = records.iter().filter(|r| r.starts_with("v=STSv1"));
    let record = sts.next()?;
    if sts.next().is_some() {
        return None;
    }
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next()? != "v=STSv1" {
        return None;
    }
    let id = fields.find_map(|f| f.strip_prefix("id="))?;
    let valid = !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| id.to_string())
}

/// Parse a policy file (RFC 8461 §3.2): `key: value` lines (CRLF or LF), `version: STSv1`,
/// `mode`, `max_age`, and at least one `mx` unless the mode is `none`. Unknown keys are ignored.
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("line {line:?} is not \"key: value\""));
        };
        let value = value.trim();
        match key.trim() {
            "version" => version = Some(value.to_string()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            "max_age" => {
                let secs = value
                    .parse::<u64>()
                    .ok()
                    .filter(|_| value.len() <= 10)
                    .ok_or_else(|| format!("max_age {value:?} is not a number of seconds"))?;
                max_age = Some(Duration::from_secs(secs.min(MAX_AGE_LIMIT)));
            }
            "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("version is not STSv1".into());
    }
    let mode = mode.ok_or("no mode")?;
    let max_age = max_age.ok_or("no max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx".into());
    }
    Ok(Policy { mode, mx, max_age })
}

impl Policy {
    /// RFC 8461 §4.1: a pattern matches the host exactly, or `*.` matches exactly one leftmost label.
    pub fn allows_mx(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(suffix) => {
                host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
            }
            None => *pattern == host,
        })
    }

    /// The `enable_tls` a connection uses under this policy (KumoMTA's rule): `enforce` requires
    /// verified TLS; `testing` tries TLS without letting a certificate problem stop delivery, but
    /// never lowers a `Required*` the operator set; `none` leaves the configured value.
    pub fn effective_tls(&self, configured: EnableTls) -> EnableTls {
        match self.mode {
            Mode::Enforce => EnableTls::Required,
            Mode::Testing => match configured {
                EnableTls::Required | EnableTls::RequiredInsecure => configured,
                _ => EnableTls::OpportunisticInsecure,
            },
            Mode::None => configured,
        }
    }
}

/// What a domain's cache entry knows.
#[derive(Debug, Clone)]
pub struct Cached<P> {
    /// The policy and its id, with when it stops being valid (fetched + max_age).
    pub policy: Option<(String, P, Instant)>,
    /// When the TXT record was last looked at.
    pub checked: Instant,
}

/// What to do about a domain, given its cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Use what is cached (the policy, or none).
    UseCached,
    /// Look at the TXT record again.
    CheckTxt,
}

pub fn next<P>(cached: Option<&Cached<P>>, now: Instant) -> Next {
    match cached {
        Some(c) if now.saturating_duration_since(c.checked) < RECHECK_INTERVAL => Next::UseCached,
        _ => Next::CheckTxt,
    }
}

/// After the TXT lookup: fetch the policy file only for an id that differs from the one of a
/// still-valid cached policy (RFC 8461 §5.1). A missing TXT record does not discard a valid
/// cached policy (that is what makes a DNS attacker unable to strip it).
pub fn must_fetch<P>(cached: Option<&Cached<P>>, txt_id: Option<&str>, now: Instant) -> bool {
    let valid = cached.and_then(|c| c.policy.as_ref()).filter(|(_, _, until)| now < *until);
    match (txt_id, valid) {
        (None, _) => false,
        (Some(id), Some((cached_id, _, _))) => id != cached_id,
        (Some(_), None) => true,
    }
}

/// The policy in force now, if any: a cached one that has not outlived its max_age.
pub fn in_force<P>(cached: &Cached<P>, now: Instant) -> Option<&P> {
    cached.policy.as_ref().filter(|(_, _, until)| now < *until).map(|(_, p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn txt_records() {
        assert_eq!(txt_policy_id(&s(&["v=STSv1; id=20260101T000000"])), Some("20260101T000000".into()));
        assert_eq!(txt_policy_id(&s(&["v=STSv1;id=abc;"])), Some("abc".into()));
        assert_eq!(txt_policy_id(&s(&["v=spf1 -all", "v=STSv1; id=1"])), Some("1".into()));
        assert_eq!(txt_policy_id(&s(&[])), None);
        assert_eq!(txt_policy_id(&s(&["v=STSv1; id=1", "v=STSv1; id=2"])), None, "two records: none");
        assert_eq!(txt_policy_id(&s(&["v=STSv1"])), None, "no id");
        assert_eq!(txt_policy_id(&s(&["v=STSv1; id=a-b"])), None, "id is alphanumeric");
        assert_eq!(txt_policy_id(&s(&[&format!("v=STSv1; id={}", "a".repeat(33))])), None);
        assert_eq!(txt_policy_id(&s(&["v=STSv10; id=1"])), None);
    }

    #[test]
    fn policy_files() {
        let p = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: MX1.Example.com.\r\nmx: *.example.net\r\nmax_age: 86400\r\n")
            .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, s(&["mx1.example.com", "*.example.net"]));
        assert_eq!(p.max_age, Duration::from_secs(86400));
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 1\n").unwrap();
        assert_eq!((none.mode, none.mx.len()), (Mode::None, 0));
        let capped = parse_policy("version: STSv1\nmode: testing\nmx: a\nmax_age: 999999999\n").unwrap();
        assert_eq!(capped.max_age, Duration::from_secs(MAX_AGE_LIMIT));
        for (bad, why) in [
            ("mode: enforce\nmx: a\nmax_age: 1\n", "version"),
            ("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", "version"),
            ("version: STSv1\nmx: a\nmax_age: 1\n", "mode"),
            ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "mode"),
            ("version: STSv1\nmode: enforce\nmx: a\n", "max_age"),
            ("version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n", "max_age"),
            ("version: STSv1\nmode: enforce\nmax_age: 1\n", "mx"),
            ("<html>hello</html>\n", "key: value"),
        ] {
            let e = parse_policy(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn mx_patterns() {
        let p = Policy {
            mode: Mode::Enforce,
            mx: s(&["mx.example.com", "*.mail.example.net"]),
            max_age: Duration::ZERO,
        };
        assert!(p.allows_mx("mx.example.com") && p.allows_mx("MX.EXAMPLE.COM."));
        assert!(p.allows_mx("a.mail.example.net"));
        assert!(!p.allows_mx("mail.example.net"), "the wildcard needs a label");
        assert!(!p.allows_mx("a.b.mail.example.net"), "the wildcard is one label");
        assert!(!p.allows_mx("evil-mx.example.com") && !p.allows_mx("mx.example.com.evil"));
    }

    #[test]
    fn tls_under_each_mode() {
        use EnableTls::*;
        let with = |mode| Policy { mode, mx: s(&["a"]), max_age: Duration::ZERO };
        for configured in [Opportunistic, OpportunisticInsecure, Required, RequiredInsecure, Disabled] {
            assert_eq!(with(Mode::Enforce).effective_tls(configured), Required);
            assert_eq!(with(Mode::None).effective_tls(configured), configured);
        }
        assert_eq!(with(Mode::Testing).effective_tls(Disabled), OpportunisticInsecure);
        assert_eq!(with(Mode::Testing).effective_tls(Opportunistic), OpportunisticInsecure);
        assert_eq!(with(Mode::Testing).effective_tls(Required), Required, "never lowered");
    }

    #[test]
    fn cache_rules() {
        let t0 = Instant::now();
        let later = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(next::<()>(None, t0), Next::CheckTxt);
        let fresh = Cached { policy: Some(("1".to_string(), (), later(3600))), checked: t0 };
        assert_eq!(next(Some(&fresh), later(59)), Next::UseCached);
        assert_eq!(next(Some(&fresh), later(60)), Next::CheckTxt);
        // Same id and still valid: no fetch; a new id or an expired policy: fetch.
        assert!(!must_fetch(Some(&fresh), Some("1"), later(100)));
        assert!(must_fetch(Some(&fresh), Some("2"), later(100)));
        assert!(must_fetch(Some(&fresh), Some("1"), later(3600)));
        assert!(must_fetch::<()>(None, Some("1"), t0));
        // TXT gone: the cached policy stays in force until its max_age runs out.
        assert!(!must_fetch(Some(&fresh), None, later(100)));
        assert!(in_force(&fresh, later(3599)).is_some());
        assert!(in_force(&fresh, later(3600)).is_none());
    }
}
