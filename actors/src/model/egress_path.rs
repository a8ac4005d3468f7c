//! Egress path configuration (KumoMTA's `kumo.make_egress_path{...}`, returned by the
//! `get_egress_path_config(routing_domain, egress_source, site_name)` event): how one ready queue,
//! a source sending to a site, shapes its traffic. Names and defaults are KumoMTA's.
//!
//! Keys KumoMTA has for tuning its own internals (wake-up strategies, memory policies, OpenSSL
//! options, ...) are accepted and have no effect, so an existing policy runs unchanged; keys whose
//! meaning Ferry cannot honour yet (LMTP, client certificates, SMTP AUTH to the peer, DANE) are
//! refused with an error saying so, rather than silently ignored. Anything else unknown is an
//! error naming the key.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_config::{Cidr, HumanDuration};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::queue_config::Rate;
use super::throttle_spec::ThrottleSpec;

/// `enable_tls`: KumoMTA's values; the TLS work makes them act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EnableTls {
    /// TLS when the peer offers it, certificate verified, no plaintext fallback on that host.
    #[default]
    Opportunistic,
    OpportunisticInsecure,
    Required,
    RequiredInsecure,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressPathConfig {
    #[serde(deserialize_with = "count")]
    pub connection_limit: usize,
    #[serde(deserialize_with = "count")]
    pub max_deliveries_per_connection: usize,
    pub max_message_rate: Option<Rate>,
    pub max_connection_rate: Option<Rate>,
    /// Limits cutting across paths, by name (shared through Redis once it is configured).
    #[serde(deserialize_with = "count_map")]
    pub additional_connection_limits: BTreeMap<String, usize>,
    #[serde(deserialize_with = "spec_map")]
    pub additional_message_rate_throttles: BTreeMap<String, ThrottleSpec>,
    #[serde(deserialize_with = "count")]
    pub max_ready: usize,
    pub smtp_port: u16,
    /// Destinations never to connect to (mail loops). None: the built-in default, which applies
    /// to MX hosts found in DNS only (see [`EgressPathConfig::prohibited_for`]).
    #[serde(deserialize_with = "some_list")]
    pub prohibited_hosts: Option<Vec<Cidr>>,
    /// Hosts left out of a site's host list.
    #[serde(deserialize_with = "list")]
    pub skip_hosts: Vec<Cidr>,
    /// How long an idle connection waits for another message before it closes.
    pub idle_timeout: HumanDuration,
    pub connect_timeout: HumanDuration,
    pub banner_timeout: HumanDuration,
    pub ehlo_timeout: HumanDuration,
    pub mail_from_timeout: HumanDuration,
    pub rcpt_to_timeout: HumanDuration,
    pub data_timeout: HumanDuration,
    pub data_dot_timeout: HumanDuration,
    pub rset_timeout: HumanDuration,
    pub starttls_timeout: HumanDuration,
    #[serde(deserialize_with = "count")]
    pub max_recipients_per_batch: usize,
    pub enable_pipelining: bool,
    pub enable_rset: bool,
    /// Wins over the source's `ehlo_domain`.
    pub ehlo_domain: Option<String>,
    pub enable_tls: EnableTls,
    pub opportunistic_tls_reconnect_on_failed_handshake: bool,
    pub enable_mta_sts: bool,
    pub enable_dane: bool,
    pub refresh_interval: HumanDuration,
}

impl Default for EgressPathConfig {
    fn default() -> Self {
        let secs = HumanDuration::from_secs;
        EgressPathConfig {
            connection_limit: 32,
            max_deliveries_per_connection: 1024,
            max_message_rate: None,
            max_connection_rate: None,
            additional_connection_limits: BTreeMap::new(),
            additional_message_rate_throttles: BTreeMap::new(),
            max_ready: 1024,
            smtp_port: 25,
            prohibited_hosts: None,
            skip_hosts: Vec::new(),
            idle_timeout: secs(60),
            connect_timeout: secs(60),
            banner_timeout: secs(60),
            ehlo_timeout: secs(300),
            mail_from_timeout: secs(300),
            rcpt_to_timeout: secs(300),
            data_timeout: secs(300),
            data_dot_timeout: secs(300),
            rset_timeout: secs(5),
            starttls_timeout: secs(5),
            max_recipients_per_batch: 100,
            enable_pipelining: true,
            enable_rset: true,
            ehlo_domain: None,
            enable_tls: EnableTls::Opportunistic,
            opportunistic_tls_reconnect_on_failed_handshake: false,
            enable_mta_sts: true,
            enable_dane: false,
            refresh_interval: secs(60),
        }
    }
}

/// KumoMTA keys that tune its own internals: accepted, no effect in Ferry.
const NO_EFFECT: &[&str] = &[
    "additional_source_selection_rates",
    "source_selection_rate",
    "consecutive_connection_failures_before_delay",
    "dispatcher_wakeup_strategy",
    "maintainer_wakeup_strategy",
    "dispatcher_progress_watchdog_timeout",
    "ip_lookup_strategy",
    "low_memory_reduction_policy",
    "no_memory_reduction_policy",
    "openssl_cipher_list",
    "openssl_cipher_suites",
    "openssl_options",
    "rustls_cipher_suites",
    "tls_prefer_openssl",
    "remember_broken_tls",
    "reconnect_strategy",
    "refresh_strategy",
    "system_shutdown_timeout",
    "try_next_host_on_transport_error",
    "ignore_8bit_checks",
    "provider_name",
    "aggressive_connection_opening",
];

/// KumoMTA keys Ferry cannot honour yet: refused when they would change what happens.
const NOT_YET: &[&str] = &[
    "use_lmtp",
    "tls_certificate",
    "tls_private_key",
    "smtp_auth_plain_username",
    "smtp_auth_plain_password",
    "allow_smtp_auth_plain_without_tls",
    "allow_smtp_auth_plain_without_valid_certificate",
];

impl EgressPathConfig {
    /// From `make_egress_path`'s table (as JSON). Errors name the key.
    pub fn from_json(v: &Value) -> Result<EgressPathConfig, String> {
        let mut map = match v {
            Value::Object(m) => m.clone(),
            Value::Array(a) if a.is_empty() => Map::new(),
            other => return Err(format!("expected a table of egress path settings, got {other}")),
        };
        for key in NO_EFFECT {
            map.remove(*key);
        }
        for key in NOT_YET {
            let Some(value) = map.remove(*key) else { continue };
            if !matches!(value, Value::Null | Value::Bool(false)) && value != Value::Array(Vec::new()) {
                return Err(format!("{key}: not supported by Ferry yet"));
            }
        }
        let config: EgressPathConfig = serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." { inner } else { format!("{path}: {inner}") }
        })?;
        if config.enable_dane {
            return Err("enable_dane: DANE is not supported yet; remove it or set it to false".into());
        }
        for (key, n) in [
            ("connection_limit", config.connection_limit),
            ("max_deliveries_per_connection", config.max_deliveries_per_connection),
            ("max_ready", config.max_ready),
            ("max_recipients_per_batch", config.max_recipients_per_batch),
        ] {
            if n == 0 {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if config.smtp_port == 0 {
            return Err("smtp_port: must be a port number (1-65535)".into());
        }
        Ok(config)
    }

    /// The hosts never to connect to. MX hosts found in DNS get KumoMTA's default (loopback and
    /// the unspecified address: an MX pointing there is a loop); an `mx_list` the operator wrote
    /// is their own routing and is filtered only by an explicit `prohibited_hosts`.
    pub fn prohibited_for(&self, from_dns: bool) -> Vec<Cidr> {
        match &self.prohibited_hosts {
            Some(list) => list.clone(),
            None if from_dns => ["127.0.0.0/8", "0.0.0.0/32", "::1/128", "::/128"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn idle(&self) -> Duration {
        self.idle_timeout.0
    }
}

/// A count given as a number, or as a string with `,` or `_` between digits (`"1,000"`).
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| D::Error::custom(format!("expected a whole number, got {n}"))),
        Value::String(s) => s
            .replace([',', '_'], "")
            .parse()
            .map_err(|_| D::Error::custom(format!("expected a whole number, got {s:?}"))),
        other => Err(D::Error::custom(format!("expected a whole number, got {other}"))),
    }
}

/// `{ name = count }`; an empty Lua table arrives as `[]`.
fn count_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, usize>, D::Error> {
    #[derive(Deserialize)]
    struct Count(#[serde(deserialize_with = "count")] usize);
    match Value::deserialize(d)? {
        Value::Array(a) if a.is_empty() => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| match serde_json::from_value::<Count>(v) {
                Ok(Count(0)) => Err(serde::de::Error::custom(format!("{k}: must be at least 1"))),
                Ok(Count(n)) => Ok((k, n)),
                Err(e) => Err(serde::de::Error::custom(format!("{k}: {e}"))),
            })
            .collect(),
        other => Err(serde::de::Error::custom(format!("expected a table of name = limit, got {other}"))),
    }
}

/// `{ name = '100/s' }`; an empty Lua table arrives as `[]`.
fn spec_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ThrottleSpec>, D::Error> {
    match Value::deserialize(d)? {
        Value::Array(a) if a.is_empty() => Ok(BTreeMap::new()),
        other => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

/// A list-valued key. Lua cannot tell an empty array from an empty table, so `{}` arrives as an
/// empty JSON object: here it is the empty list (`prohibited_hosts = {}` turns the list off).
fn list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Object(m) if m.is_empty() => Ok(Vec::new()),
        other => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

fn some_list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    list(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_kumomtas() {
        let c = EgressPathConfig::from_json(&json!({})).unwrap();
        assert_eq!((c.connection_limit, c.max_ready, c.max_deliveries_per_connection), (32, 1024, 1024));
        assert_eq!(
            (c.smtp_port, c.max_recipients_per_batch, c.enable_tls),
            (25, 100, EnableTls::Opportunistic)
        );
        assert_eq!(c.idle(), Duration::from_secs(60));
        assert!(c.prohibited_for(true).iter().any(|n| n.contains("127.0.0.1".parse().unwrap())));
        assert!(c.prohibited_for(false).is_empty(), "an operator's mx_list is not filtered by default");
    }

    #[test]
    fn values_parse_in_kumomtas_forms() {
        let c = EgressPathConfig::from_json(&json!({
            "connection_limit": "1,000", "max_message_rate": "50/s", "idle_timeout": "2min",
            "prohibited_hosts": ["10.0.0.0/8"], "enable_tls": "Required", "ehlo_domain": "mta.example",
            "dispatcher_wakeup_strategy": "Aggressive", "use_lmtp": false,
        }))
        .unwrap();
        assert_eq!(c.connection_limit, 1000);
        assert_eq!(c.max_message_rate, Some(Rate::parse("50/s").unwrap()));
        assert_eq!(c.idle(), Duration::from_secs(120));
        assert_eq!(c.enable_tls, EnableTls::Required);
        assert!(c.prohibited_for(false)[0].contains("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn an_empty_lua_table_is_an_empty_list() {
        // `prohibited_hosts = {}` in Lua arrives as `{}`: the list is off, not a type error.
        let c = EgressPathConfig::from_json(&json!({ "prohibited_hosts": {}, "skip_hosts": {} })).unwrap();
        assert!(c.prohibited_for(true).is_empty() && c.skip_hosts.is_empty());
        let e = EgressPathConfig::from_json(&json!({ "skip_hosts": { "a": 1 } })).unwrap_err();
        assert!(e.contains("skip_hosts"), "{e}");
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_key() {
        for (bad, key) in [
            (json!({"conection_limit": 3}), "conection_limit"),
            (json!({"connection_limit": 0}), "connection_limit"),
            (json!({"connection_limit": -1}), "connection_limit"),
            (json!({"max_message_rate": "fast"}), "max_message_rate"),
            (json!({"enable_tls": "Sometimes"}), "enable_tls"),
            (json!({"skip_hosts": ["not a cidr"]}), "skip_hosts"),
            (json!({"enable_dane": true}), "enable_dane"),
            (json!({"use_lmtp": true}), "use_lmtp"),
            (json!({"smtp_port": 0}), "smtp_port"),
        ] {
            let e = EgressPathConfig::from_json(&bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn additional_limits_and_throttles_cut_across_paths() {
        let c = EgressPathConfig::from_json(&json!({
            "additional_connection_limits": {"global": 100, "site": "1,000"},
            "additional_message_rate_throttles": {"global-rate": "4000/s", "mine": "local:10/m"},
        }))
        .unwrap();
        assert_eq!(c.additional_connection_limits.get("site"), Some(&1000));
        assert!(c.additional_message_rate_throttles["mine"].local);
        assert_eq!(c.additional_message_rate_throttles["global-rate"].limit, 4000);
        let empty = EgressPathConfig::from_json(&json!({"additional_connection_limits": []})).unwrap();
        assert!(empty.additional_connection_limits.is_empty());
        for (bad, key) in [
            (json!({"additional_connection_limits": {"g": 0}}), "additional_connection_limits"),
            (
                json!({"additional_message_rate_throttles": {"g": "fast"}}),
                "additional_message_rate_throttles",
            ),
        ] {
            let err = EgressPathConfig::from_json(&bad).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }
}
