//! What an inbound session tells `trace-smtp-server` subscribers (crate::smtp_trace::SERVER):
//! the connection's identity as KumoMTA's `conn_meta` names it, and the payload. Nothing is
//! built unless someone is tracing.

use chrono::Utc;
use serde_json::json;

use super::reception::Connection;
use crate::model::smtp_trace::{ServerTraceEvent, ServerTracePayload};
use crate::smtp_trace::SERVER;

/// Publish `payload` about `conn`, if anyone is tracing.
#[inline]
pub(super) fn publish(conn: &Connection, payload: impl FnOnce() -> ServerTracePayload) {
    SERVER.publish(|| ServerTraceEvent { conn_meta: conn_meta(conn), payload: payload(), when: Utc::now() });
}

fn conn_meta(conn: &Connection) -> serde_json::Value {
    let mut meta = json!({
        "received_from": conn.peer.to_string(),
        "received_via": conn.local.to_string(),
    });
    if !conn.ehlo.is_empty() {
        meta["ehlo_domain"] = json!(conn.ehlo);
    }
    if let Some(tls) = &conn.tls {
        meta["tls_protocol_version"] = json!(tls.protocol_version);
        meta["tls_cipher"] = json!(tls.cipher);
    }
    if let Some(auth) = &conn.auth {
        meta["authn_id"] = json!(auth.authc);
    }
    meta
}

/// A diagnostic line (TLS established, a timeout) in the trace.
pub(super) fn diagnostic(conn: &Connection, level: &str, message: impl FnOnce() -> String) {
    publish(conn, || ServerTracePayload::Diagnostic { level: level.to_string(), message: message() });
}
