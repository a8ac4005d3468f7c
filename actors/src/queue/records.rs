//! The delivery-side records (SPEC §6) in one place, so every path that logs a TransientFailure
//! or a Bounce fills the same fields the same way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_config::format_duration;

use crate::logging::Logger;
use crate::model::egress::UNSPECIFIED;
use crate::model::insert_context::InsertContext;
use crate::model::record::{PeerAddress, SourceAddress};
use crate::model::{LogRecord, Message, RecordType, Response};

/// Where and how an attempt went, for the record.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    /// Ready queue name (`unspecified->…@smtp_client`), or "" for inline/policy decisions.
    pub site: String,
    pub peer: Option<PeerAddress>,
    /// `ESMTP`, `Maildir`, `Lua`, `xfer`.
    pub protocol: Option<String>,
    /// The egress pool and source the attempt left from (ready queues); None: `unspecified`.
    pub egress: Option<EgressUsed>,
    /// What STARTTLS negotiated on the attempt's connection.
    pub tls: Option<crate::tls::TlsInfo>,
}

/// Which pool and source an attempt used, and the local address its connection had.
#[derive(Debug, Clone, Default)]
pub struct EgressUsed {
    pub pool: String,
    pub source: String,
    pub local: Option<std::net::SocketAddr>,
}

/// Record helpers over a [`Logger`].
pub struct Records<'a>(pub &'a Logger);

impl Records<'_> {
    fn base(
        &self,
        kind: RecordType,
        msg: &Message,
        queue: &str,
        response: Response,
        attempt: &Attempt,
    ) -> LogRecord {
        let mut r = self.0.record(kind, msg, queue);
        r.response = response;
        r.site = attempt.site.clone();
        r.peer_address = attempt.peer.clone();
        r.delivery_protocol = attempt.protocol.clone();
        if let Some(tls) = &attempt.tls {
            r.tls_protocol_version = Some(tls.protocol_version.clone());
            r.tls_cipher = Some(tls.cipher.clone());
            if !tls.peer_subject_name.is_empty() {
                r.tls_peer_subject_name = Some(serde_json::json!(tls.peer_subject_name));
            }
        }
        match &attempt.egress {
            Some(e) => {
                r.egress_pool = Some(e.pool.clone());
                r.egress_source = Some(e.source.clone());
                r.source_address = e.local.map(|a| SourceAddress { address: a.to_string() });
            }
            None if attempt.protocol.is_some() => {
                r.egress_pool = Some(UNSPECIFIED.into());
                r.egress_source = Some(UNSPECIFIED.into());
            }
            None => {}
        }
        r
    }

    pub fn delivery(&self, msg: &Message, queue: &str, response: Response, attempt: &Attempt) {
        self.0.log(&self.base(RecordType::Delivery, msg, queue, response, attempt));
    }

    pub fn transient(&self, msg: &Message, queue: &str, response: Response, attempt: &Attempt) {
        self.0.log(&self.base(RecordType::TransientFailure, msg, queue, response, attempt));
    }

    pub fn bounce(&self, msg: &Message, queue: &str, response: Response, attempt: &Attempt) {
        self.0.log(&self.base(RecordType::Bounce, msg, queue, response, attempt));
    }

    pub fn expiration(&self, msg: &Message, queue: &str, code: u16, enhanced: &str, reason: &str) {
        let response = Response::new(code, Some(enhanced), reason);
        self.0.log(&self.base(RecordType::Expiration, msg, queue, response, &Attempt::default()));
    }

    /// SPEC §2.8: `AdminBounce` 551 5.7.1, site `localhost`.
    pub fn admin_bounce(&self, msg: &Message, queue: &str, reason: &str) {
        let response =
            Response::new(551, Some("5.7.1"), format!("Administrator bounced with reason: {reason}"));
        let attempt = Attempt { site: "localhost".into(), ..Attempt::default() };
        self.0.log(&self.base(RecordType::AdminBounce, msg, queue, response, &attempt));
    }

    /// SPEC §2.3 step 4: `Delayed` 400 "Context: …. Next due in … at …".
    pub fn delayed(
        &self,
        msg: &Message,
        queue: &str,
        ctx: &InsertContext,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
        let content = format!(
            "Context: {ctx}. Next due in {} at {}",
            format_duration(Duration::from_secs(wait.as_secs())),
            due.to_rfc3339()
        );
        let response = Response::new(400, None, content);
        self.0.log(&self.base(RecordType::Delayed, msg, queue, response, &Attempt::default()));
    }
}
