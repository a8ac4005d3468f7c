//! The message (SPEC §1.1) and its stored form. The queue actor keeps only id, due and attempts in
//! memory; the full message lives in the spool and is loaded to deliver or transfer.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::id::MessageId;
use super::queue_name::{self, QueueNameError};
use super::scheduling::Scheduling;

/// `reception_protocol` of a message made by a log hook.
pub const LOG_RECORD_PROTOCOL: &str = "LogRecord";
/// The meta key under which a log-hook message offers its record (see [`Message::meta_value`]).
pub const LOG_RECORD_META: &str = "log_record";

/// Whether meta is a log-hook message's (`reception_protocol = "LogRecord"`).
pub fn is_log_record_meta(meta: &Map<String, Value>) -> bool {
    meta.get("reception_protocol").and_then(Value::as_str) == Some(LOG_RECORD_PROTOCOL)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    /// Envelope sender; the null sender is "".
    pub sender: String,
    /// Envelope recipients; the queue is chosen by the first.
    pub recipients: Vec<String>,
    pub meta: Map<String, Value>,
    /// Raw bytes, binary-safe, never altered by xfer.
    pub data: Bytes,
    pub schedule: Option<Scheduling>,
    /// None = due now.
    pub due: Option<DateTime<Utc>>,
    /// Completed delivery attempts.
    pub num_attempts: u16,
}

impl Message {
    pub fn new(id: MessageId, sender: String, recipients: Vec<String>, data: Bytes) -> Self {
        Self { id, sender, recipients, meta: Map::new(), data, schedule: None, due: None, num_attempts: 0 }
    }

    pub fn created(&self) -> DateTime<Utc> {
        self.id.created()
    }

    pub fn queue_name(&self) -> Result<String, QueueNameError> {
        queue_name::for_message(&self.meta, &self.recipients)
    }

    /// Meta value, with JSON null read back as absent (SPEC §1.2).
    pub fn get_meta(&self, key: &str) -> Option<&Value> {
        self.meta.get(key).filter(|v| !v.is_null())
    }

    pub fn set_meta(&mut self, key: impl Into<String>, value: Value) {
        self.meta.insert(key.into(), value);
    }

    /// [`Message::get_meta`] as the policy and the admin API see it: a log-hook message keeps its
    /// record once, as its body, and its `log_record` meta is that body parsed when asked for
    /// (storing it twice doubled what every hooked event cost the spool).
    pub fn meta_value(&self, key: &str) -> Option<std::borrow::Cow<'_, Value>> {
        if let Some(v) = self.get_meta(key) {
            return Some(std::borrow::Cow::Borrowed(v));
        }
        if key == LOG_RECORD_META && self.is_log_record() {
            return serde_json::from_slice(&self.data).ok().map(std::borrow::Cow::Owned);
        }
        None
    }

    /// A message made by a log hook (its body is a log record as JSON).
    pub fn is_log_record(&self) -> bool {
        is_log_record_meta(&self.meta)
    }

    /// The form stored in the spool's `meta` database.
    pub fn spool_meta(&self) -> SpoolMeta {
        SpoolMeta {
            sender: self.sender.clone(),
            recipient: self.recipients.clone(),
            meta: self.meta.clone(),
            schedule: self.schedule.clone(),
            due: self.due,
            num_attempts: Some(self.num_attempts),
        }
    }

    pub fn from_spool(id: MessageId, meta: SpoolMeta, data: Bytes) -> Self {
        Self {
            id,
            sender: meta.sender,
            recipients: meta.recipient,
            meta: meta.meta,
            data,
            schedule: meta.schedule,
            due: meta.due,
            num_attempts: meta.num_attempts.unwrap_or(0),
        }
    }
}

/// What the spool keeps per message besides the body. `due` and `num_attempts` are persisted (D1);
/// `num_attempts` is optional so that a record written without it can be told apart and inferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolMeta {
    pub sender: String,
    pub recipient: Vec<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Scheduling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_attempts: Option<u16>,
}

impl SpoolMeta {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("spool meta is always serialisable")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::id::MessageIdGenerator;
    use serde_json::json;

    #[test]
    fn spool_form_round_trips_due_and_attempts() {
        let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        let mut m = Message::new(
            g.generate(),
            "sender@example.com".into(),
            vec!["a@example.com".into(), "b@example.com".into()],
            Bytes::from_static(b"Subject: x\r\n\r\nhi\r\n"),
        );
        m.set_meta("tenant", json!("t"));
        m.due = Some(Utc::now());
        m.num_attempts = 3;
        let bytes = m.spool_meta().to_bytes();
        let back = Message::from_spool(m.id, SpoolMeta::from_bytes(&bytes).unwrap(), m.data.clone());
        assert_eq!(back, m);
        assert_eq!(back.queue_name().unwrap(), "t@example.com");
    }

    #[test]
    fn null_meta_reads_as_absent() {
        let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        let mut m = Message::new(g.generate(), String::new(), vec!["a@b.c".into()], Bytes::new());
        m.set_meta("k", Value::Null);
        assert_eq!(m.get_meta("k"), None);
        assert!(m.meta.contains_key("k"));
    }
}

/// Just what start-up needs to schedule a spooled message: due time, schedule and the fields its
/// queue name depends on. Parsing this instead of a full [`SpoolMeta`] skips building every meta
/// value, which is most of the cost of a restart with a large spool.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulingMeta {
    #[serde(default)]
    pub recipient: Vec<String>,
    #[serde(default)]
    pub meta: QueueKeys,
    #[serde(default)]
    pub schedule: Option<Scheduling>,
    #[serde(default)]
    pub due: Option<DateTime<Utc>>,
}

/// The meta keys a queue name is built from (SPEC §1.4); other keys are skipped unparsed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QueueKeys {
    #[serde(default)]
    queue: Option<Value>,
    #[serde(default)]
    tenant: Option<Value>,
    #[serde(default)]
    campaign: Option<Value>,
    #[serde(default)]
    routing_domain: Option<Value>,
}

impl SchedulingMeta {
    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }

    pub fn queue_name(&self) -> Result<String, QueueNameError> {
        let mut meta = Map::new();
        for (k, v) in [
            ("queue", &self.meta.queue),
            ("tenant", &self.meta.tenant),
            ("campaign", &self.meta.campaign),
            ("routing_domain", &self.meta.routing_domain),
        ] {
            if let Some(v) = v {
                meta.insert(k.to_string(), v.clone());
            }
        }
        queue_name::for_message(&meta, &self.recipient)
    }
}

#[cfg(test)]
mod scheduling_meta_tests {
    use super::*;
    use crate::model::id::MessageIdGenerator;
    use serde_json::json;

    #[test]
    fn the_light_parse_agrees_with_the_full_one() {
        let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        let mut m = Message::new(g.generate(), "s@x".into(), vec!["a@Example.com".into()], Bytes::new());
        m.set_meta("tenant", json!("t"));
        m.set_meta("campaign", json!("c"));
        m.set_meta("big", json!({"lots": [1, 2, 3], "of": "data"}));
        m.due = Some(Utc::now());
        m.schedule = Some(Scheduling::from_json_str(r#"{"expires":"3000-01-01T00:00:00Z"}"#).unwrap());
        let light = SchedulingMeta::from_bytes(&m.spool_meta().to_bytes()).unwrap();
        assert_eq!(light.queue_name().unwrap(), m.queue_name().unwrap());
        assert_eq!(light.due, m.due);
        assert_eq!(light.schedule, m.schedule);
    }
}
