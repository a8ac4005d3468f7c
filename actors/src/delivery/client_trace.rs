//! What an outbound connection tells `trace-smtp-client` subscribers (crate::smtp_trace::CLIENT):
//! the session's identity as KumoMTA's `conn_meta` names it (`id`, `ready_queue`,
//! `egress_source`, `egress_pool`, `mx_host`, `mx_address`, `source_address`, and per message
//! `sender`, `recipient`, `domain`, `campaign`, `tenant`, `routing_domain`). Nothing is built
//! unless someone is tracing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use serde_json::{Value, json};

use super::mx::Target;
use crate::model::queue_name;
use crate::model::smtp_trace::{ClientTraceEvent, ClientTracePayload};
use crate::smtp_trace::CLIENT;

/// The ready queue a connection serves, for its trace (empty in unit tests of the client).
#[derive(Debug, Clone, Default)]
pub struct TraceLabels {
    /// e.g. `unspecified->mx:example.com@smtp_client`.
    pub ready_queue: String,
    pub egress_source: String,
    pub egress_pool: String,
}

/// The message a connection is carrying, once a subscriber has seen it obtained.
#[derive(Debug, Clone)]
struct TracedMessage {
    sender: String,
    recipients: Vec<String>,
    queue: String,
}

/// One connection's trace identity.
#[derive(Debug)]
pub(super) struct ClientTrace {
    id: String,
    message: Option<TracedMessage>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ClientTrace {
    pub(super) fn new() -> ClientTrace {
        ClientTrace { id: NEXT_ID.fetch_add(1, Ordering::Relaxed).to_string(), message: None }
    }

    /// Publish `payload` about this connection, if anyone is tracing.
    #[inline]
    pub(super) fn publish(
        &self,
        labels: &TraceLabels,
        target: &Target,
        local: Option<SocketAddr>,
        payload: impl FnOnce() -> ClientTracePayload,
    ) {
        CLIENT.publish(|| ClientTraceEvent {
            conn_meta: self.conn_meta(labels, target, local),
            payload: payload(),
            when: Utc::now(),
        });
    }

    /// The connection now carries this message (kept only while someone traces).
    pub(super) fn obtained(&mut self, sender: &str, recipients: &[String], queue: &str) -> bool {
        if !CLIENT.is_active() {
            self.message = None;
            return false;
        }
        self.message = Some(TracedMessage {
            sender: sender.to_string(),
            recipients: recipients.to_vec(),
            queue: queue.to_string(),
        });
        true
    }

    fn conn_meta(&self, labels: &TraceLabels, target: &Target, local: Option<SocketAddr>) -> Value {
        let mut meta = json!({
            "id": self.id,
            "ready_queue": labels.ready_queue,
            "egress_source": labels.egress_source,
            "egress_pool": labels.egress_pool,
            "mx_host": target.name,
            "mx_address": target.addr.to_string(),
        });
        if let Some(local) = local {
            meta["source_address"] = json!(local.to_string());
        }
        if let Some(m) = &self.message {
            let parts = queue_name::parse(&m.queue);
            meta["sender"] = json!(m.sender);
            meta["recipient"] = match m.recipients.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            meta["domain"] = json!(parts.domain);
            for (key, value) in [
                ("campaign", parts.campaign),
                ("tenant", parts.tenant),
                ("routing_domain", parts.routing_domain),
            ] {
                if let Some(v) = value {
                    meta[key] = json!(v);
                }
            }
        }
        meta
    }
}
