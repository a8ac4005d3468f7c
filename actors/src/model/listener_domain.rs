//! Listener domains (KumoMTA's `kumo.make_listener_domain`, returned by `get_listener_domain`):
//! per-domain reception rules that widen relaying (`relay_to`, `relay_from`) and turn a domain
//! into a report mailbox (`log_arf` for RFC 5965 feedback, `log_oob` for RFC 3464 bounces).
//!
//! The decisions are pure: which RCPT TO is accepted, and what happens to a message once its
//! content shows whether it is a report.

use std::net::IpAddr;

use ferry_config::{Cidr, cidr::any_contains};
use serde_json::Value;

/// What to do with an incoming report (`log_arf` / `log_oob`). `true` means `LogThenRelay` and
/// `false` `Ignore`, as in KumoMTA's older configurations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReportDisposition {
    /// Not looked at: the message is an ordinary message.
    #[default]
    Ignore,
    /// Logged (`Feedback` / `OOB`), then dropped: no other record, nothing spooled.
    LogThenDrop,
    /// Logged, then accepted and relayed like any message.
    LogThenRelay,
}

impl ReportDisposition {
    pub fn should_log(self) -> bool {
        self != Self::Ignore
    }

    fn from_json(key: &str, v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(false) => Ok(Self::Ignore),
            Value::Bool(true) => Ok(Self::LogThenRelay),
            Value::String(s) if s == "Ignore" => Ok(Self::Ignore),
            Value::String(s) if s == "LogThenDrop" => Ok(Self::LogThenDrop),
            Value::String(s) if s == "LogThenRelay" => Ok(Self::LogThenRelay),
            other => Err(format!(
                "{key}: expected \"Ignore\", \"LogThenDrop\", \"LogThenRelay\" or a boolean, got {other}"
            )),
        }
    }
}

/// One domain's rules. Every field defaults to "no widening": relaying stays as `relay_hosts`
/// (and AUTH) decide, and reports are not parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerDomain {
    /// Anyone may send to this domain.
    pub relay_to: bool,
    /// Clients in these ranges may send mail *from* this domain to anywhere.
    pub relay_from: Vec<Cidr>,
    pub log_arf: ReportDisposition,
    pub log_oob: ReportDisposition,
}

impl ListenerDomain {
    /// The table given to `kumo.make_listener_domain`; unknown keys are errors (a typo must not
    /// silently open or close relaying).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let Value::Object(map) = v else { return Err("expected a table".into()) };
        let mut d = ListenerDomain::default();
        for (key, value) in map {
            match key.as_str() {
                "relay_to" => {
                    d.relay_to = value.as_bool().ok_or("relay_to: expected a boolean")?;
                }
                "relay_from" => d.relay_from = cidr_list(value)?,
                "log_arf" => d.log_arf = ReportDisposition::from_json(key, value)?,
                "log_oob" => d.log_oob = ReportDisposition::from_json(key, value)?,
                // Deprecated and unused in KumoMTA; accepted so its policies load.
                "ttl" => {}
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        Ok(d)
    }
}

fn cidr_list(v: &Value) -> Result<Vec<Cidr>, String> {
    let items = match v {
        Value::Array(items) => items.as_slice(),
        Value::Object(m) if m.is_empty() => &[],
        Value::String(_) => std::slice::from_ref(v),
        _ => return Err("relay_from: expected a list of CIDR blocks".into()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let s = item.as_str().ok_or_else(|| format!("relay_from[{}]: expected a string", i + 1))?;
            s.parse().map_err(|e| format!("relay_from[{}]: {e}", i + 1))
        })
        .collect()
}

/// How one recipient of a transaction is to be handled (KumoMTA's relay disposition).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayDisposition {
    /// Ordinary mail for this recipient may be queued for delivery.
    pub relay: bool,
    pub log_arf: ReportDisposition,
    pub log_oob: ReportDisposition,
}

impl RelayDisposition {
    /// The decision at RCPT TO. `trusted`: the client may relay anyway (`relay_hosts`, or it
    /// authenticated); `sender_domain` / `recipient_domain`: what `get_listener_domain` said for
    /// each (None: no configuration for it).
    pub fn decide(
        trusted: bool,
        peer: IpAddr,
        sender_domain: Option<&ListenerDomain>,
        recipient_domain: Option<&ListenerDomain>,
    ) -> Self {
        let relay_from = sender_domain.is_some_and(|d| any_contains(&d.relay_from, peer));
        let relay_to = recipient_domain.is_some_and(|d| d.relay_to);
        let (log_arf, log_oob) = recipient_domain.map(|d| (d.log_arf, d.log_oob)).unwrap_or_default();
        Self { relay: trusted || relay_from || relay_to, log_arf, log_oob }
    }

    /// RCPT TO is accepted when the recipient may be relayed to or is a report mailbox.
    pub fn accepts_rcpt(&self) -> bool {
        self.relay || self.log_arf.should_log() || self.log_oob.should_log()
    }

    /// After DATA: what happens to a message whose content was (or was not) found to be a
    /// report. A report not relayed is dropped after its record; an ordinary message that may
    /// not be relayed is refused (its RCPT was accepted only because reports are).
    pub fn after_data(&self, found: Option<ReportKind>) -> AfterData {
        let keep = match found {
            Some(ReportKind::Arf) => self.log_arf == ReportDisposition::LogThenRelay,
            Some(ReportKind::Oob) => self.log_oob == ReportDisposition::LogThenRelay,
            None => self.relay,
        };
        match (found, keep) {
            (_, true) => AfterData::Queue,
            (Some(_), false) => AfterData::Drop,
            (None, false) => AfterData::RefuseRelaying,
        }
    }

    /// Which report kinds the content must be checked for, in KumoMTA's order (ARF first).
    pub fn wanted(&self) -> Vec<ReportKind> {
        let arf = self.log_arf.should_log().then_some(ReportKind::Arf);
        let oob = self.log_oob.should_log().then_some(ReportKind::Oob);
        arf.into_iter().chain(oob).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Arf,
    Oob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterData {
    Queue,
    Drop,
    RefuseRelaying,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peer() -> IpAddr {
        "10.0.0.7".parse().unwrap()
    }

    #[test]
    fn tables_parse_with_kumomta_values_and_defaults() {
        let d = ListenerDomain::from_json(&json!({})).unwrap();
        assert_eq!(d, ListenerDomain::default());
        assert!(!d.relay_to && d.log_arf == ReportDisposition::Ignore);

        let d = ListenerDomain::from_json(
            &json!({"relay_to": true, "log_arf": "LogThenDrop", "log_oob": true, "relay_from": ["10.0.0.0/24"]}),
        )
        .unwrap();
        assert!(d.relay_to);
        assert_eq!((d.log_arf, d.log_oob), (ReportDisposition::LogThenDrop, ReportDisposition::LogThenRelay));
        assert_eq!(d.relay_from.len(), 1);
        assert_eq!(
            ListenerDomain::from_json(&json!({"log_oob": false})).unwrap().log_oob,
            ReportDisposition::Ignore
        );

        for (bad, says) in [
            (json!({"relay_too": true}), "relay_too"),
            (json!({"log_arf": "Drop"}), "log_arf"),
            (json!({"relay_from": ["10.0.0.0/40"]}), "relay_from[1]"),
            (json!({"relay_to": "yes"}), "relay_to"),
        ] {
            let e = ListenerDomain::from_json(&bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn relaying_is_widened_by_relay_to_and_relay_from_only() {
        let open = ListenerDomain { relay_to: true, ..Default::default() };
        let from = ListenerDomain { relay_from: vec!["10.0.0.0/24".parse().unwrap()], ..Default::default() };
        let nothing = ListenerDomain::default();
        assert!(!RelayDisposition::decide(false, peer(), None, None).accepts_rcpt());
        assert!(RelayDisposition::decide(true, peer(), None, None).relay);
        assert!(RelayDisposition::decide(false, peer(), None, Some(&open)).relay);
        assert!(
            !RelayDisposition::decide(false, peer(), Some(&open), Some(&nothing)).relay,
            "relay_to is about the recipient"
        );
        assert!(RelayDisposition::decide(false, peer(), Some(&from), None).relay);
        assert!(!RelayDisposition::decide(false, "192.0.2.1".parse().unwrap(), Some(&from), None).relay);
    }

    #[test]
    fn report_mailboxes_accept_rcpt_but_only_reports_get_through() {
        let fbl = ListenerDomain { log_arf: ReportDisposition::LogThenDrop, ..Default::default() };
        let d = RelayDisposition::decide(false, peer(), None, Some(&fbl));
        assert!(d.accepts_rcpt() && !d.relay);
        assert_eq!(d.wanted(), [ReportKind::Arf]);
        assert_eq!(d.after_data(Some(ReportKind::Arf)), AfterData::Drop);
        assert_eq!(d.after_data(None), AfterData::RefuseRelaying);

        let both = ListenerDomain {
            log_arf: ReportDisposition::LogThenRelay,
            log_oob: ReportDisposition::LogThenDrop,
            ..Default::default()
        };
        let d = RelayDisposition::decide(false, peer(), None, Some(&both));
        assert_eq!(d.wanted(), [ReportKind::Arf, ReportKind::Oob]);
        assert_eq!(
            d.after_data(Some(ReportKind::Arf)),
            AfterData::Queue,
            "LogThenRelay queues even without relay_to"
        );
        assert_eq!(d.after_data(Some(ReportKind::Oob)), AfterData::Drop);

        let trusted = RelayDisposition::decide(true, peer(), None, Some(&fbl));
        assert_eq!(trusted.after_data(None), AfterData::Queue);
        assert_eq!(
            trusted.after_data(Some(ReportKind::Arf)),
            AfterData::Drop,
            "a report to a LogThenDrop domain is consumed"
        );
    }
}
