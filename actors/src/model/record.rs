//! Log record types (SPEC §6). Field names and shapes are the contract; tests and operators read them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordType {
    Reception,
    Delivery,
    TransientFailure,
    Bounce,
    Expiration,
    AdminBounce,
    AdminRebind,
    Delayed,
    XferOut,
    XferIn,
    Rejection,
    #[serde(rename = "OOB")]
    Oob,
    Feedback,
    DeferredInjectionRebind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    /// Parse `4.4.4` style codes.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.');
        let class: u8 = it.next()?.parse().ok()?;
        let subject = it.next()?.parse().ok()?;
        let detail = it.next()?.parse().ok()?;
        (it.next().is_none() && matches!(class, 2 | 4 | 5)).then_some(Self { class, subject, detail })
    }
}

impl std::fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// An SMTP-style response as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub code: u16,
    pub enhanced_code: Option<EnhancedCode>,
    pub content: String,
    pub command: Option<String>,
}

impl Response {
    pub fn new(code: u16, enhanced: Option<&str>, content: impl Into<String>) -> Self {
        Self {
            code,
            enhanced_code: enhanced.and_then(EnhancedCode::parse),
            content: content.into(),
            command: None,
        }
    }

    /// The one-line rendition of SPEC §3.2: `"<code> <c>.<s>.<d> <content>"`, line breaks removed.
    pub fn to_single_line(&self) -> String {
        let content = self.content.replace(['\r', '\n'], " ");
        match self.enhanced_code {
            Some(e) => format!("{} {e} {content}", self.code),
            None => format!("{} {content}", self.code),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddress {
    pub name: String,
    pub addr: String,
}

/// The local end of a delivery connection (KumoMTA's `source_address`: `{"address": "ip:port"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAddress {
    pub address: String,
}

/// One recipient is logged as a string, several as an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Recipients {
    One(String),
    Many(Vec<String>),
}

impl From<&[String]> for Recipients {
    fn from(list: &[String]) -> Self {
        match list {
            [one] => Recipients::One(one.clone()),
            many => Recipients::Many(many.to_vec()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    #[serde(rename = "type")]
    pub kind: RecordType,
    pub id: String,
    pub sender: String,
    pub recipient: Recipients,
    pub queue: String,
    pub site: String,
    pub size: u64,
    pub response: Response,
    pub peer_address: Option<PeerAddress>,
    /// Unix seconds of `event_time`.
    pub timestamp: i64,
    /// RFC 3339 with nanoseconds, strictly increasing (SPEC I5).
    pub event_time: String,
    pub created: i64,
    pub created_time: String,
    pub num_attempts: u16,
    pub bounce_classification: String,
    pub egress_pool: Option<String>,
    pub egress_source: Option<String>,
    pub source_address: Option<SourceAddress>,
    pub feedback_report: Option<Value>,
    pub meta: Map<String, Value>,
    pub headers: Map<String, Value>,
    pub delivery_protocol: Option<String>,
    pub reception_protocol: Option<String>,
    pub nodeid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_peer_subject_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Feedback and OOB records (Ferry's addition): the id of the message the report is about,
    /// from the Ferry `Received` header it returned (see `model::report_origin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_id: Option<String>,
    /// Feedback and OOB records: the reported message's `Message-ID`, when the report returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_message_id: Option<String>,
    /// Each log hook's own meta and headers selection, by hook (in the order hooks were
    /// configured); filled only while hooks are configured. Not part of the record as logged.
    #[serde(skip)]
    pub hook_fields: Vec<(Map<String, Value>, Map<String, Value>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_parse_and_render() {
        let r = Response::new(451, Some("4.4.4"), "KumoMTA internal: scheduled queue is suspended:\r\n x");
        assert_eq!(r.enhanced_code, Some(EnhancedCode { class: 4, subject: 4, detail: 4 }));
        assert_eq!(r.to_single_line(), "451 4.4.4 KumoMTA internal: scheduled queue is suspended:   x");
        assert_eq!(Response::new(250, None, "ok").to_single_line(), "250 ok");
        assert_eq!(EnhancedCode::parse("3.1.1"), None);
        assert_eq!(
            serde_json::to_value(EnhancedCode::parse("5.7.1")).unwrap(),
            serde_json::json!({"class":5,"subject":7,"detail":1})
        );
    }

    #[test]
    fn recipients_one_is_a_string_many_an_array() {
        let one: Recipients = (&["a@b".to_string()][..]).into();
        assert_eq!(serde_json::to_value(one).unwrap(), serde_json::json!("a@b"));
        let many: Recipients = (&["a@b".to_string(), "c@d".to_string()][..]).into();
        assert_eq!(serde_json::to_value(many).unwrap(), serde_json::json!(["a@b", "c@d"]));
    }
}
