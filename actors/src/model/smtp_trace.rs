//! Live SMTP tracing: the websocket messages of `/api/admin/trace-smtp-server/v1` and
//! `/api/admin/trace-smtp-client/v1` (KumoMTA's `TraceSmtpV1*` and `TraceSmtpClientV1*` shapes, so
//! `kcli trace-smtp-server|client` read Ferry's), and the pure rules around them: which events a
//! subscriber's filter lets through, `terse` abbreviation, redaction of AUTH credentials and the
//! bound on a traced string.

use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use ferry_config::Cidr;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A traced read or write is cut to this many bytes (a reply of 100 long lines, a pipelined batch
/// of many RCPTs); message content is never traced, only its size.
pub const MAX_TRACED_TEXT: usize = 4096;

/// What stands in for the message content in a DATA trace event (its length goes beside it).
pub const CONTENT_PLACEHOLDER: &str = "[message content not traced]";

/// The filter a `trace-smtp-server` subscriber sends first (KumoMTA's `TraceSmtpV1Request`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerTraceRequest {
    /// Only connections from these addresses; None or empty: every connection.
    #[serde(default)]
    pub source_addr: Option<Vec<Cidr>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub terse: bool,
}

/// The filter a `trace-smtp-client` subscriber sends first (KumoMTA's
/// `TraceSmtpClientV1Request`). Each list is an allow-list for one `conn_meta` property; an empty
/// list, or a session that does not (yet) have the property, lets the event through.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClientTraceRequest {
    #[serde(default)]
    pub campaign: Vec<String>,
    #[serde(default)]
    pub tenant: Vec<String>,
    #[serde(default)]
    pub domain: Vec<String>,
    #[serde(default)]
    pub routing_domain: Vec<String>,
    #[serde(default)]
    pub egress_pool: Vec<String>,
    #[serde(default)]
    pub egress_source: Vec<String>,
    #[serde(default)]
    pub mail_from: Vec<String>,
    #[serde(default)]
    pub rcpt_to: Vec<String>,
    #[serde(default)]
    pub source_addr: Option<Vec<Cidr>>,
    #[serde(default)]
    pub mx_host: Vec<String>,
    #[serde(default)]
    pub ready_queue: Vec<String>,
    #[serde(default)]
    pub mx_addr: Option<Vec<Cidr>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub terse: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// One trace event: which connection (`conn_meta`, Null for a notice to the subscriber), what,
/// and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceEvent<P> {
    pub conn_meta: Value,
    pub payload: P,
    pub when: DateTime<Utc>,
}

/// One inbound trace event (KumoMTA's `TraceSmtpV1Event`).
pub type ServerTraceEvent = TraceEvent<ServerTracePayload>;
/// One outbound trace event (KumoMTA's `TraceSmtpClientV1Event`).
pub type ClientTraceEvent = TraceEvent<ClientTracePayload>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum ServerTracePayload {
    Connected,
    Closed,
    /// A command line as the client sent it (AUTH arguments redacted).
    Read(String),
    /// Replies as written, possibly several pipelined ones.
    Write(String),
    Diagnostic {
        level: String,
        message: String,
    },
    /// A read shortened by `terse`, or the DATA content (never traced): a snippet and the size.
    AbbreviatedRead {
        snippet: String,
        len: usize,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum ClientTracePayload {
    BeginSession,
    Connected,
    Closed,
    /// A reply as the server sent it.
    Read(String),
    /// Command lines as written.
    Write(String),
    Diagnostic {
        level: String,
        message: String,
    },
    MessageObtained,
    /// A write shortened by `terse`, or the DATA content (never traced): a snippet and the size.
    AbbreviatedWrite {
        snippet: String,
        len: usize,
    },
}

/// The IP of an address-valued `conn_meta` property ("1.2.3.4:25" or "1.2.3.4").
fn ip_of(meta: &Value, key: &str) -> Option<IpAddr> {
    let text = meta.get(key)?.as_str()?;
    text.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| text.parse::<IpAddr>()).ok()
}

/// Outside the CIDR allow-list? An empty list, or no address in the event, excludes nothing.
fn outside(allowed: &Option<Vec<Cidr>>, meta: &Value, key: &str) -> bool {
    match (allowed, ip_of(meta, key)) {
        (Some(list), Some(ip)) if !list.is_empty() => !list.iter().any(|c| c.contains(ip)),
        _ => false,
    }
}

/// `pattern` matches `value` exactly (ASCII case-insensitively), or as a glob where `*` stands
/// for any run of characters (`*@example.com`, `mx*.example.net`).
pub fn wildcard_matches(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.to_ascii_lowercase(), value.to_ascii_lowercase());
    let mut parts = p.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = v.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Outside a string allow-list? The property may be a string or a list of strings (a
/// multi-recipient message): one match is enough.
fn outside_list(allowed: &[String], meta: &Value, key: &str) -> bool {
    if allowed.is_empty() {
        return false;
    }
    let hit = |v: &str| allowed.iter().any(|p| wildcard_matches(p, v));
    match meta.get(key) {
        Some(Value::String(s)) => !hit(s),
        Some(Value::Array(items)) => !items.iter().filter_map(Value::as_str).any(hit),
        _ => false,
    }
}

impl ServerTraceRequest {
    /// Does this subscriber see an event of the connection described by `conn_meta`? Events
    /// without an address (a "lagged" notice) always pass.
    pub fn admits(&self, conn_meta: &Value) -> bool {
        !outside(&self.source_addr, conn_meta, "received_from")
    }
}

impl ClientTraceRequest {
    pub fn admits(&self, meta: &Value) -> bool {
        let lists: [(&[String], &str); 10] = [
            (&self.campaign, "campaign"),
            (&self.domain, "domain"),
            (&self.egress_pool, "egress_pool"),
            (&self.egress_source, "egress_source"),
            (&self.mx_host, "mx_host"),
            (&self.ready_queue, "ready_queue"),
            (&self.rcpt_to, "recipient"),
            (&self.routing_domain, "routing_domain"),
            (&self.mail_from, "sender"),
            (&self.tenant, "tenant"),
        ];
        !outside(&self.source_addr, meta, "source_address")
            && !outside(&self.mx_addr, meta, "mx_address")
            && !lists.iter().any(|(allowed, key)| outside_list(allowed, meta, key))
    }
}

/// `terse`: a multi-line text becomes its first line and its total size; None when it is one line
/// (nothing to abbreviate).
pub fn abbreviate(text: &str) -> Option<(String, usize)> {
    let mut lines = text.trim_end().lines();
    let first = lines.next()?;
    lines.next()?;
    Some((first.to_string(), text.len()))
}

/// What the two sides' payloads have in common.
pub trait TracePayload: Sized {
    /// The payload as a subscriber asking for `terse` sees it.
    fn for_subscriber(self, terse: bool) -> Self;
    fn diagnostic(level: &str, message: String) -> Self;
}

impl TracePayload for ServerTracePayload {
    fn for_subscriber(self, terse: bool) -> Self {
        match self {
            ServerTracePayload::Read(text) if terse => match abbreviate(&text) {
                Some((snippet, len)) => ServerTracePayload::AbbreviatedRead { snippet, len },
                None => ServerTracePayload::Read(text),
            },
            other => other,
        }
    }
    fn diagnostic(level: &str, message: String) -> Self {
        ServerTracePayload::Diagnostic { level: level.into(), message }
    }
}

impl TracePayload for ClientTracePayload {
    fn for_subscriber(self, terse: bool) -> Self {
        match self {
            ClientTracePayload::Write(text) if terse => match abbreviate(&text) {
                Some((snippet, len)) => ClientTracePayload::AbbreviatedWrite { snippet, len },
                None => ClientTracePayload::Write(text),
            },
            other => other,
        }
    }
    fn diagnostic(level: &str, message: String) -> Self {
        ClientTracePayload::Diagnostic { level: level.into(), message }
    }
}

/// A subscriber's side of a trace: what it asked for decides which events it gets and how.
pub trait TraceFilter {
    type Payload: TracePayload;
    fn admits(&self, conn_meta: &Value) -> bool;
    fn terse(&self) -> bool;

    /// The event as this subscriber sees it, or None if its filter excludes it.
    fn view(&self, e: TraceEvent<Self::Payload>) -> Option<TraceEvent<Self::Payload>> {
        self.admits(&e.conn_meta).then(|| TraceEvent { payload: e.payload.for_subscriber(self.terse()), ..e })
    }

    /// The notice a subscriber gets when it fell behind and lost `missed` events.
    fn lagged(missed: u64) -> TraceEvent<Self::Payload> {
        let message = format!("Tracer Lagged behind and missed {missed} events");
        TraceEvent {
            conn_meta: Value::Null,
            payload: TracePayload::diagnostic("ERROR", message),
            when: Utc::now(),
        }
    }
}

impl TraceFilter for ServerTraceRequest {
    type Payload = ServerTracePayload;
    fn admits(&self, conn_meta: &Value) -> bool {
        self.admits(conn_meta)
    }
    fn terse(&self) -> bool {
        self.terse
    }
}

impl TraceFilter for ClientTraceRequest {
    type Payload = ClientTracePayload;
    fn admits(&self, conn_meta: &Value) -> bool {
        self.admits(conn_meta)
    }
    fn terse(&self) -> bool {
        self.terse
    }
}

/// Bytes as traced text: lossy UTF-8, cut at [`MAX_TRACED_TEXT`] with a note of the full size.
pub fn bounded_text(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_TRACED_TEXT {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut text = String::from_utf8_lossy(&bytes[..MAX_TRACED_TEXT]).into_owned();
    text.push_str(&format!("\r\n[... {} bytes in all]\r\n", bytes.len()));
    text
}

/// A command line as traced: AUTH keeps its mechanism, its initial response (a credential) is
/// replaced, so a trace never shows a password.
pub fn redact_command(line: &[u8]) -> String {
    let text = bounded_text(line);
    let mut words = text.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(verb), Some(mech), initial) if verb.eq_ignore_ascii_case("AUTH") => {
            let tail = if initial.is_some() { " [redacted]" } else { "" };
            format!("{verb} {mech}{tail}\r\n")
        }
        _ => text,
    }
}

/// An AUTH exchange line (the client's answer to a 334 challenge) as traced.
pub const REDACTED_AUTH_LINE: &str = "[redacted AUTH response]\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cidrs(list: &[&str]) -> Option<Vec<Cidr>> {
        Some(list.iter().map(|c| c.parse().unwrap()).collect())
    }

    #[test]
    fn server_filter_matches_the_peer_address_by_cidr() {
        let req = ServerTraceRequest { source_addr: cidrs(&["10.0.0.0/8", "::1"]), terse: false };
        assert!(req.admits(&json!({"received_from": "10.1.2.3:4567", "received_via": "10.0.0.1:25"})));
        assert!(req.admits(&json!({"received_from": "[::1]:4567"})));
        assert!(!req.admits(&json!({"received_from": "127.0.0.1:4567"})));
        // A lagged notice has no connection: every subscriber gets it.
        assert!(req.admits(&Value::Null));
        assert!(ServerTraceRequest::default().admits(&json!({"received_from": "127.0.0.1:1"})));
        let empty = ServerTraceRequest { source_addr: Some(vec![]), terse: false };
        assert!(empty.admits(&json!({"received_from": "127.0.0.1:1"})), "an empty list is no filter");
    }

    #[test]
    fn the_request_reads_kumomta_json() {
        let req: ServerTraceRequest =
            serde_json::from_str(r#"{"source_addr":["127.0.0.1/32"],"terse":true}"#).unwrap();
        assert_eq!(req.source_addr, cidrs(&["127.0.0.1"]));
        assert!(req.terse);
        let req: ClientTraceRequest = serde_json::from_str(r#"{"domain":["example.com"]}"#).unwrap();
        assert_eq!(req.domain, ["example.com"]);
        assert!(serde_json::from_str::<ServerTraceRequest>(r#"{"source_addr":["nope"]}"#).is_err());
    }

    #[test]
    fn client_filter_ignores_properties_the_session_does_not_have_yet() {
        let req = ClientTraceRequest {
            domain: vec!["example.com".into()],
            rcpt_to: vec!["*@example.com".into()],
            ..Default::default()
        };
        let begin = json!({"id": "1", "ready_queue": "unspecified->mx:example.com@smtp_client"});
        assert!(req.admits(&begin), "no message yet: domain and recipient cannot exclude");
        let msg = json!({"id": "1", "domain": "example.com", "recipient": "a@example.com"});
        assert!(req.admits(&msg));
        assert!(!req.admits(&json!({"domain": "other.org"})));
        assert!(!req.admits(&json!({"domain": "example.com", "recipient": "a@other.org"})));
        let many = json!({"recipient": ["a@other.org", "b@EXAMPLE.com"]});
        assert!(req.admits(&many), "one recipient of several is enough");
    }

    #[test]
    fn client_filter_checks_addresses_by_cidr() {
        let req = ClientTraceRequest { mx_addr: cidrs(&["192.0.2.0/24"]), ..Default::default() };
        assert!(req.admits(&json!({"mx_address": "192.0.2.7:25"})));
        assert!(!req.admits(&json!({"mx_address": "198.51.100.1:25"})));
        let req = ClientTraceRequest { source_addr: cidrs(&["10.0.0.5"]), ..Default::default() };
        assert!(req.admits(&json!({"source_address": "10.0.0.5"})));
        assert!(!req.admits(&json!({"source_address": "10.0.0.6:40000"})));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_matches("example.com", "Example.COM"));
        assert!(!wildcard_matches("example.com", "mail.example.com"));
        assert!(wildcard_matches("*.example.com", "mail.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(wildcard_matches("ip-*->mx:*@smtp_client", "ip-1->mx:gmail.com@smtp_client"));
        assert!(wildcard_matches("*", ""));
        assert!(!wildcard_matches("a*a", "a"), "the two ends may not overlap");
        assert!(wildcard_matches("a*b*c", "aXbYc"));
        assert!(!wildcard_matches("a*b*c", "aXcYb"));
    }

    #[test]
    fn terse_keeps_the_first_line_and_the_size() {
        let text = "EHLO x\r\nMAIL FROM:<a@b>\r\n";
        let p = ServerTracePayload::Read(text.into()).for_subscriber(true);
        assert_eq!(p, ServerTracePayload::AbbreviatedRead { snippet: "EHLO x".into(), len: text.len() });
        let one = ServerTracePayload::Read("QUIT\r\n".into());
        assert_eq!(one.clone().for_subscriber(true), one, "one line: nothing to abbreviate");
        assert_eq!(
            ServerTracePayload::Read(text.into()).for_subscriber(false),
            ServerTracePayload::Read(text.into())
        );
        let w = ClientTracePayload::Write(text.into()).for_subscriber(true);
        assert_eq!(w, ClientTracePayload::AbbreviatedWrite { snippet: "EHLO x".into(), len: text.len() });
    }

    #[test]
    fn auth_credentials_never_reach_a_trace() {
        assert_eq!(redact_command(b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"), "AUTH PLAIN [redacted]\r\n");
        assert_eq!(redact_command(b"auth login dXNlcg==\r\n"), "auth login [redacted]\r\n");
        assert_eq!(redact_command(b"AUTH LOGIN\r\n"), "AUTH LOGIN\r\n");
        assert_eq!(redact_command(b"MAIL FROM:<a@b>\r\n"), "MAIL FROM:<a@b>\r\n");
    }

    #[test]
    fn traced_text_is_bounded() {
        let big = vec![b'x'; MAX_TRACED_TEXT * 3];
        let text = bounded_text(&big);
        assert!(text.len() < MAX_TRACED_TEXT + 64);
        assert!(text.ends_with(&format!("[... {} bytes in all]\r\n", big.len())));
        assert_eq!(bounded_text(b"250 OK\r\n"), "250 OK\r\n");
    }

    #[test]
    fn events_serialize_as_kumomta_does() {
        let when = "2026-12-02T10:00:00Z".parse().unwrap();
        let e = ServerTraceEvent {
            conn_meta: json!({}),
            payload: ServerTracePayload::Read("QUIT\r\n".into()),
            when,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["payload"], json!({"Read": "QUIT\r\n"}));
        let c = serde_json::to_value(ServerTracePayload::Connected).unwrap();
        assert_eq!(c, json!("Connected"));
        let a = serde_json::to_value(ClientTracePayload::AbbreviatedWrite { snippet: "x".into(), len: 9 })
            .unwrap();
        assert_eq!(a, json!({"AbbreviatedWrite": {"snippet": "x", "len": 9}}));
    }
}
