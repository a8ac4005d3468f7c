//! Per-queue configuration (SPEC §2.2), as built by `kumo.make_queue_config{...}`. Unknown keys are
//! errors that name the key; values use the same duration forms as the TOML config.

use std::time::Duration;

use ferry_config::HumanDuration;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default = "defaults::retry_interval")]
    pub retry_interval: HumanDuration,
    #[serde(default)]
    pub max_retry_interval: Option<HumanDuration>,
    #[serde(default = "defaults::max_age")]
    pub max_age: HumanDuration,
    #[serde(default = "defaults::egress_pool")]
    pub egress_pool: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub max_message_rate: Option<Rate>,
    #[serde(default = "defaults::refresh_interval")]
    pub refresh_interval: HumanDuration,
    #[serde(default)]
    pub refresh_strategy: RefreshStrategy,
    #[serde(default = "defaults::reap_interval")]
    pub reap_interval: HumanDuration,
    /// Accepted for KumoMTA compatibility; Ferry's queues need no tuning here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timerwheel_tick_interval: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_policy: Option<Value>,
    /// Copied into log records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
}

mod defaults {
    use ferry_config::HumanDuration;
    pub fn retry_interval() -> HumanDuration {
        HumanDuration::from_secs(20 * 60)
    }
    pub fn max_age() -> HumanDuration {
        HumanDuration::from_secs(7 * 86_400)
    }
    pub fn egress_pool() -> String {
        "unspecified".into()
    }
    pub fn refresh_interval() -> HumanDuration {
        HumanDuration::from_secs(60)
    }
    pub fn reap_interval() -> HumanDuration {
        HumanDuration::from_secs(600)
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig::from_json(&Value::Object(Map::new())).expect("defaults are valid")
    }
}

impl QueueConfig {
    /// Parse a config table; the error names the offending key.
    pub fn from_json(v: &Value) -> Result<QueueConfig, String> {
        let v = match v {
            // An empty Lua table may arrive as an empty array.
            Value::Array(a) if a.is_empty() => Value::Object(Map::new()),
            other => other.clone(),
        };
        let config: QueueConfig = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." { inner } else { format!("{path}: {inner}") }
        })?;
        if config.retry_interval.0.is_zero() {
            return Err("retry_interval must be greater than 0".into());
        }
        Ok(config)
    }

    /// SPEC §4.1: an xfer queue's built-in config: 10 s backoff doubling, capped at 300 s (D9),
    /// 7 day max_age.
    pub fn for_xfer(target: &str) -> QueueConfig {
        QueueConfig {
            retry_interval: HumanDuration::from_secs(10),
            max_retry_interval: Some(HumanDuration::from_secs(300)),
            protocol: Protocol::Xfer { target: target.to_string() },
            ..QueueConfig::default()
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn backoff(&self) -> super::retry::Backoff {
        super::retry::Backoff {
            retry_interval: self.retry_interval.0,
            max_retry_interval: self.max_retry_interval.map(|d| d.0),
            max_age: self.max_age.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshStrategy {
    #[default]
    Ttl,
    Epoch,
}

/// `"100/s"`, `"10/m"`, `"3600/h"`, `"1000/d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
}

impl Rate {
    pub fn parse(s: &str) -> Result<Rate, String> {
        let err = || format!("invalid rate {s:?}: expected N/s, N/m, N/h or N/d");
        let (n, unit) = s.split_once('/').ok_or_else(err)?;
        let count: u64 = n.trim().parse().map_err(|_| err())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hr" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(err()),
        };
        if count == 0 {
            return Err(err());
        }
        Ok(Rate { count, per: Duration::from_secs(per) })
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        s.collect_str(&format_args!("{}/{unit}", self.count))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rate::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// An `mx_list` entry as written: a string, or `{name, addr}` (SPEC §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MxListEntry {
    Name(String),
    Resolved { name: String, addr: String },
}

/// How a queue delivers; chosen by which key is present (SPEC §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Protocol {
    /// SMTP to `mx_list` in order, or via MX lookup when None.
    #[default]
    SmtpMx,
    SmtpList(Vec<MxListEntry>),
    Maildir {
        path: String,
        dir_mode: Option<u32>,
        file_mode: Option<u32>,
    },
    CustomLua {
        constructor: String,
        /// Messages per `send_batch` call; 1 = `send` one at a time.
        batch_size: usize,
        /// A batch waits for this many messages, up to `max_batch_latency` (KumoMTA's).
        min_batch_size: usize,
        max_batch_latency: std::time::Duration,
    },
    /// An xfer queue's built-in protocol: send to the node at `target` (never from Lua).
    Xfer {
        target: String,
    },
}

impl Protocol {
    /// Messages one connection takes at a time: a custom_lua `batch_size`, else 1.
    pub fn batch_size(&self) -> usize {
        match self {
            Protocol::CustomLua { batch_size, .. } => (*batch_size).max(1),
            _ => 1,
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = match self {
            Protocol::SmtpMx => serde_json::json!({"smtp": {}}),
            Protocol::SmtpList(list) => serde_json::json!({"smtp": {"mx_list": list}}),
            Protocol::Maildir { path, dir_mode, file_mode } => {
                serde_json::json!({"maildir_path": path, "dir_mode": dir_mode, "file_mode": file_mode})
            }
            Protocol::CustomLua { constructor, batch_size, min_batch_size, max_batch_latency } => {
                serde_json::json!({"custom_lua": {
                    "constructor": constructor, "batch_size": batch_size, "min_batch_size": min_batch_size,
                    "max_batch_latency": format!("{}ms", max_batch_latency.as_millis()),
                }})
            }
            Protocol::Xfer { target } => serde_json::json!({"xfer": {"target": target}}),
        };
        v.serialize(s)
    }
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown key {what}.{k} (expected one of {})", allowed.join(", "))),
        None => Ok(()),
    }
}

fn mode(v: Option<&Value>, key: &str) -> Result<Option<u32>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|m| *m <= 0o7777)
            .map(|m| Some(m as u32))
            .ok_or_else(|| format!("protocol.{key} must be a file mode such as tonumber('775', 8)")),
        Some(_) => Err(format!("protocol.{key} must be a number")),
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = match Value::deserialize(d)? {
            Value::Object(m) => m,
            Value::Array(a) if a.is_empty() => Map::new(),
            other => return Err(D::Error::custom(format!("protocol must be a table, found {other}"))),
        };
        let parse = || -> Result<Protocol, String> {
            if map.contains_key("xfer") {
                return Err("protocol.xfer is not allowed: xfer is reached only through xfer queues".into());
            }
            if let Some(smtp) = map.get("smtp") {
                only_keys(&map, &["smtp"], "protocol")?;
                let smtp = match smtp {
                    Value::Object(m) => m.clone(),
                    Value::Array(a) if a.is_empty() => Map::new(),
                    _ => return Err("protocol.smtp must be a table".into()),
                };
                only_keys(&smtp, &["mx_list"], "protocol.smtp")?;
                return match smtp.get("mx_list") {
                    None => Ok(Protocol::SmtpMx),
                    Some(list) => {
                        let list: Vec<MxListEntry> = serde_json::from_value(list.clone()).map_err(|_| {
                            "protocol.smtp.mx_list must be a list of strings or {name, addr} tables"
                                .to_string()
                        })?;
                        if list.is_empty() {
                            return Err("protocol.smtp.mx_list is empty".into());
                        }
                        Ok(Protocol::SmtpList(list))
                    }
                };
            }
            if let Some(path) = map.get("maildir_path") {
                only_keys(&map, &["maildir_path", "dir_mode", "file_mode"], "protocol")?;
                let path = path.as_str().ok_or("protocol.maildir_path must be a string")?.to_string();
                return Ok(Protocol::Maildir {
                    path,
                    dir_mode: mode(map.get("dir_mode"), "dir_mode")?,
                    file_mode: mode(map.get("file_mode"), "file_mode")?,
                });
            }
            if let Some(lua) = map.get("custom_lua") {
                only_keys(&map, &["custom_lua"], "protocol")?;
                let lua = lua.as_object().ok_or("protocol.custom_lua must be a table")?;
                only_keys(
                    lua,
                    &["constructor", "batch_size", "min_batch_size", "max_batch_latency"],
                    "protocol.custom_lua",
                )?;
                let constructor = lua
                    .get("constructor")
                    .and_then(Value::as_str)
                    .ok_or("protocol.custom_lua.constructor must name an event")?
                    .to_string();
                let count = |key: &str| lua.get(key).and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
                let (batch_size, min_batch_size) = (count("batch_size"), count("min_batch_size"));
                let max_batch_latency = match lua.get("max_batch_latency") {
                    None => std::time::Duration::ZERO,
                    Some(Value::Number(n)) => {
                        std::time::Duration::from_secs_f64(n.as_f64().unwrap_or(0.0).max(0.0))
                    }
                    Some(Value::String(s)) => ferry_config::duration::parse_duration(s)
                        .map_err(|e| format!("protocol.custom_lua.max_batch_latency: {e}"))?,
                    Some(_) => return Err("protocol.custom_lua.max_batch_latency must be a duration".into()),
                };
                return Ok(Protocol::CustomLua {
                    constructor,
                    batch_size,
                    min_batch_size,
                    max_batch_latency,
                });
            }
            match map.keys().next() {
                None => Ok(Protocol::SmtpMx),
                Some(k) => {
                    Err(format!("unknown key protocol.{k} (expected smtp, maildir_path or custom_lua)"))
                }
            }
        };
        parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_the_spec() {
        let c = QueueConfig::default();
        assert_eq!(c.retry_interval.0, Duration::from_secs(1200));
        assert_eq!(c.max_age.0, Duration::from_secs(7 * 86_400));
        assert_eq!(c.egress_pool, "unspecified");
        assert_eq!(c.protocol, Protocol::SmtpMx);
        assert_eq!(c.refresh_strategy, RefreshStrategy::Ttl);
        let j = c.to_json();
        assert_eq!(j["retry_interval"], "20m");
        assert_eq!(j["max_age"], "7days");
    }

    #[test]
    fn every_protocol_form() {
        let c = QueueConfig::from_json(&json!({"protocol": {"smtp": {"mx_list": ["smart.host.local", "relay:2025", "[10.0.0.1]", {"name": "mx.example.com", "addr": "10.0.0.1:2025"}]}}})).unwrap();
        let Protocol::SmtpList(list) = &c.protocol else { panic!() };
        assert_eq!(list.len(), 4);
        assert_eq!(
            list[3],
            MxListEntry::Resolved { name: "mx.example.com".into(), addr: "10.0.0.1:2025".into() }
        );
        let c = QueueConfig::from_json(
            &json!({"protocol": {"maildir_path": "/var/tmp/m", "dir_mode": 0o775, "file_mode": 0o664}}),
        )
        .unwrap();
        assert_eq!(
            c.protocol,
            Protocol::Maildir { path: "/var/tmp/m".into(), dir_mode: Some(0o775), file_mode: Some(0o664) }
        );
        let c = QueueConfig::from_json(&json!({"protocol": {"custom_lua": {"constructor": "make.webhook", "batch_size": 1, "min_batch_size": 1, "max_batch_latency": "0s"}}})).unwrap();
        assert_eq!(
            c.protocol,
            Protocol::CustomLua {
                constructor: "make.webhook".into(),
                batch_size: 1,
                min_batch_size: 1,
                max_batch_latency: std::time::Duration::ZERO
            }
        );
        let c = QueueConfig::from_json(&json!({"protocol": {"custom_lua": {"constructor": "w", "batch_size": 100, "max_batch_latency": "250ms"}}})).unwrap();
        assert!(
            matches!(c.protocol, Protocol::CustomLua { batch_size: 100, max_batch_latency, .. } if max_batch_latency.as_millis() == 250)
        );
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let err = QueueConfig::from_json(&json!({"retry_intervall": "5s"})).unwrap_err();
        assert!(err.contains("retry_intervall"), "{err}");
        let err = QueueConfig::from_json(&json!({"max_age": "forever"})).unwrap_err();
        assert!(err.starts_with("max_age"), "{err}");
        let err = QueueConfig::from_json(&json!({"protocol": {"xfer": {}}})).unwrap_err();
        assert!(err.contains("xfer is reached only through xfer queues"), "{err}");
        let err = QueueConfig::from_json(&json!({"protocol": {"smtp": {"mx_lst": []}}})).unwrap_err();
        assert!(err.contains("protocol.smtp.mx_lst"), "{err}");
        let err = QueueConfig::from_json(&json!({"max_message_rate": "fast"})).unwrap_err();
        assert!(err.contains("invalid rate"), "{err}");
    }

    #[test]
    fn accepted_compat_keys_and_rates() {
        let c = QueueConfig::from_json(&json!({"strategy": "SingletonTimerWheel", "provider_name": "gmail", "max_message_rate": "100/s", "retry_interval": 5, "max_retry_interval": "5s"})).unwrap();
        assert_eq!(c.max_message_rate, Some(Rate { count: 100, per: Duration::from_secs(1) }));
        assert_eq!(c.to_json()["max_message_rate"], "100/s");
        assert_eq!(c.backoff().max_retry_interval, Some(Duration::from_secs(5)));
        assert!(QueueConfig::from_json(&json!([])).is_ok(), "an empty Lua table");
    }
}
