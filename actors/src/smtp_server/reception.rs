//! What happens to a complete message: policy event, queue name, durable spool write, Reception
//! record, and only then the 250 (ARCHITECTURE: "an SMTP 250 is sent only after the spool commit").

use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;

use super::reports::route_report;
use crate::logging::Logger;
use crate::model::inbound_report::InboundReport;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::listener_domain::RelayDisposition;
use crate::model::queue_name::NULL_QUEUE;
use crate::model::record::PeerAddress;
use crate::model::{Message, MessageIdGenerator, RecordType, Response, batch, headers};
use crate::policy::{PolicyError, PolicyPool, PolicyState, RebindNote};
use crate::queue::{Attempt, Insert, QueueManager, Records};
use crate::spool::{SpoolError, SpoolOp, SpoolWriter};
use actix::Addr;
use ferry_config::BatchHandling;
use tokio::sync::oneshot;

/// Everything a session needs to accept a message. Shared by all sessions.
pub struct Reception {
    pub hostname: String,
    pub ids: MessageIdGenerator,
    pub spool: SpoolWriter,
    pub policy: PolicyPool,
    pub logger: Logger,
    pub batch_handling: BatchHandling,
    /// Where spooled messages go; None only in tests of reception alone.
    pub queues: Option<Addr<QueueManager>>,
}

/// The connection a message arrived on.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub ehlo: String,
    /// Set once STARTTLS has succeeded.
    pub tls: Option<crate::tls::TlsInfo>,
    /// Set once AUTH has succeeded.
    pub auth: Option<Authenticated>,
}

impl Connection {
    /// KumoMTA's connection metadata, as policy events (`conn_meta`) see it.
    pub fn meta(&self) -> Value {
        let mut meta = serde_json::json!({
            "received_from": self.peer.to_string(),
            "received_via": self.local.to_string(),
            "ehlo_domain": self.ehlo,
        });
        if let (Some(auth), Value::Object(map)) = (&self.auth, &mut meta) {
            map.insert("authn_id".into(), Value::String(auth.authc.clone()));
            map.insert("authz_id".into(), Value::String(auth.authz.clone()));
        }
        meta
    }
}

/// How each recipient domain of a transaction is handled (`get_listener_domain`), by domain in
/// lowercase. Empty when the policy has no such handler: every message is relayed as usual.
pub type Dispositions = HashMap<String, RelayDisposition>;

/// Who a client authenticated as (AUTH PLAIN/LOGIN).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub authc: String,
    pub authz: String,
}

/// An SMTP reply: code, enhanced code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Self { code, enhanced: Some(enhanced), text: text.into() }
    }

    pub fn line(&self) -> String {
        match self.enhanced {
            Some(e) => format!("{} {e} {}\r\n", self.code, self.text),
            None => format!("{} {}\r\n", self.code, self.text),
        }
    }
}

/// One message of a transaction, ready to be spooled.
pub(super) struct Part {
    pub(super) msg: Message,
    pub(super) queue: String,
    rebinds: Vec<RebindNote>,
    /// The report this message is, when its recipient domain logs reports.
    pub(super) report: Option<InboundReport>,
    /// False: a report consumed by its record (`LogThenDrop`); nothing is spooled.
    pub(super) keep: bool,
}

/// Why a reception event did not accept a message.
pub(crate) enum EventRefusal {
    /// `kumo.reject(code, text)`.
    Rejected { code: u16, text: String },
    /// Any other handler error.
    Failed(PolicyError),
    /// The policy actor has stopped (shutdown).
    Stopped,
}

impl Reception {
    /// Accept (or refuse) one transaction. The reply is final: 250 means every message it made is
    /// durably spooled. The recipients become one message per domain (or per recipient, by
    /// `[smtp] batch_handling`), each with its own id, policy event, Reception record and queue,
    /// all spooled in one group commit.
    pub async fn receive(
        &self,
        conn: &Connection,
        sender: String,
        recipients: Vec<String>,
        body: Vec<u8>,
        dispositions: &Dispositions,
    ) -> Reply {
        let mut groups = batch::split(recipients, self.batch_handling);
        let last = groups.pop().unwrap_or_default();
        let mut parts = Vec::with_capacity(groups.len() + 1);
        for rcpts in groups {
            match self.prepare(conn, sender.clone(), rcpts, body.clone()).await {
                Ok(part) => parts.push(part),
                Err(reply) => return reply,
            }
        }
        match self.prepare(conn, sender, last, body).await {
            Ok(part) => parts.push(part),
            Err(reply) => return reply,
        }
        for part in &mut parts {
            if let Err(reply) = route_report(part, dispositions).await {
                return reply;
            }
        }

        // SPEC §1.5: the null queue discards at reception; nothing is spooled.
        let puts: Vec<SpoolOp> =
            parts.iter().filter(|p| p.keep && p.queue != NULL_QUEUE).map(|p| SpoolOp::put(&p.msg)).collect();
        if !puts.is_empty() {
            match self.spool.commit(puts).await {
                Ok(()) => {}
                // The writer logs a full spool once per interval; deliveries free it again.
                Err(SpoolError::Full) => return Reply::new(452, "4.3.1", "Insufficient system storage"),
                Err(e) => {
                    let ids: Vec<String> = parts.iter().map(|p| p.msg.id.to_string()).collect();
                    tracing::error!(ids = ?ids, error = %e, "spool write failed; message refused with 451");
                    return Reply::new(451, "4.3.0", "Temporary spool failure; try again later");
                }
            }
        }

        for part in &parts {
            if let Some(InboundReport::Feedback(report)) = &part.report {
                self.logger.log(&self.feedback_record(conn, part, report));
            }
            if part.keep {
                let mut record = self.logger.record(RecordType::Reception, &part.msg, &part.queue);
                record.peer_address =
                    Some(PeerAddress { name: conn.ehlo.clone(), addr: conn.peer.ip().to_string() });
                if let Some(tls) = &conn.tls {
                    record.tls_protocol_version = Some(tls.protocol_version.clone());
                    record.tls_cipher = Some(tls.cipher.clone());
                }
                self.logger.log(&record);
            }
            if let Some(InboundReport::Oob(report)) = &part.report {
                for record in self.oob_records(conn, part, report) {
                    self.logger.log(&record);
                }
            }
            // kumo.xfer.xfer(msg, url, reason) in the handler: the move is saved, so log it now.
            for note in part.rebinds.iter().filter(|_| part.keep) {
                self.logger.rebind(&part.msg, &note.from, &note.to, &note.reason);
            }
        }

        let mut accepted = Vec::with_capacity(parts.len());
        let mut refusal = None;
        for part in parts {
            let id = part.msg.id;
            if !part.keep {
                accepted.push(id.to_string());
                continue;
            }
            match self.insert(part.msg, &part.queue).await {
                Ok(()) => accepted.push(id.to_string()),
                Err(reply) => refusal = Some(reply),
            }
        }
        match refusal {
            Some(reply) if accepted.is_empty() => reply,
            Some(_) => Reply::new(250, "2.0.0", format!("PARTIAL ids={}", accepted.join(" "))),
            None => Reply::new(250, "2.0.0", format!("OK ids={}", accepted.join(" "))),
        }
    }

    /// Make one message of the transaction and run `smtp_server_message_received` on it. An Err is
    /// the reply for the whole transaction (a policy refusal refuses every part).
    async fn prepare(
        &self,
        conn: &Connection,
        sender: String,
        recipients: Vec<String>,
        body: Vec<u8>,
    ) -> Result<Part, Reply> {
        let id = self.ids.generate();
        let data = with_received_header(&self.hostname, conn, &id.to_string(), &recipients, body);
        let mut msg = Message::new(id, sender, recipients, Bytes::from(data));
        for (key, value) in [
            ("received_from", conn.peer.to_string()),
            ("received_via", conn.local.to_string()),
            ("reception_protocol", "ESMTP".to_string()),
            ("hostname", self.hostname.clone()),
            ("ehlo_domain", conn.ehlo.clone()),
        ] {
            msg.set_meta(key, Value::String(value));
        }
        if let Some(auth) = &conn.auth {
            msg.set_meta("authn_id", Value::String(auth.authc.clone()));
            if !auth.authz.is_empty() {
                msg.set_meta("authz_id", Value::String(auth.authz.clone()));
            }
        }
        if let Some(tls) = &conn.tls {
            msg.set_meta("tls_protocol_version", Value::String(tls.protocol_version.clone()));
            msg.set_meta("tls_cipher", Value::String(tls.cipher.clone()));
        }

        let mut rebinds = Vec::new();
        if self.policy.has_handler("smtp_server_message_received") {
            let id = msg.id;
            let ran = self
                .run_event(msg, |state, msg| {
                    state.run_message_chain_noting("smtp_server_message_received", msg, None, |_| {
                        Ok(mlua::MultiValue::new())
                    })
                })
                .await;
            match ran {
                Ok((returned, notes)) => {
                    msg = returned;
                    rebinds = notes;
                }
                Err(EventRefusal::Stopped) => {
                    return Err(Reply::new(421, "4.3.2", "Service shutting down; try again later"));
                }
                Err(EventRefusal::Rejected { code, text }) => {
                    let code = if (400..600).contains(&code) { code } else { 550 };
                    return Err(Reply { code, enhanced: None, text });
                }
                Err(EventRefusal::Failed(e)) => {
                    tracing::error!(%id, error = %e, "smtp_server_message_received failed; message refused with 451");
                    return Err(Reply::new(451, "4.3.0", "Temporary policy failure; try again later"));
                }
            }
        }

        match msg.queue_name() {
            Ok(queue) => Ok(Part { msg, queue, rebinds, report: None, keep: true }),
            Err(e) => {
                tracing::error!(id = %msg.id, error = %e, "cannot compute queue name; message refused with 451");
                Err(Reply::new(451, "4.3.0", format!("Cannot compute queue name: {e}")))
            }
        }
    }

    /// Run a reception event (`smtp_server_message_received`, `http_message_generated`) on the
    /// Reception lane: a client waits for the answer.
    pub(crate) async fn run_event(
        &self,
        msg: Message,
        run: impl FnOnce(&PolicyState, Message) -> (Message, Result<(), PolicyError>, Vec<RebindNote>)
        + Send
        + 'static,
    ) -> Result<(Message, Vec<RebindNote>), EventRefusal> {
        let (msg, outcome, notes) = self
            .policy
            .call(crate::policy::Lane::Reception, move |state| run(state, msg))
            .await
            .map_err(|_| EventRefusal::Stopped)?;
        match outcome {
            Ok(()) => Ok((msg, notes)),
            Err(PolicyError::Rejected { code, text }) => Err(EventRefusal::Rejected { code, text }),
            Err(e) => Err(EventRefusal::Failed(e)),
        }
    }

    /// Hand a spooled message to its queue; if the queue cannot be made, unwind it (SPEC §2.1).
    pub(crate) async fn insert(&self, msg: Message, queue: &str) -> Result<(), Reply> {
        let Some(queues) = &self.queues else { return Ok(()) };
        if queue == NULL_QUEUE {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let kept = Message { data: Bytes::new(), ..msg.clone() };
        queues.do_send(Insert {
            msg,
            ctx: InsertContext::new(InsertReason::Received),
            reply: Some(tx),
            check_expiry: false,
        });
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.unwind(kept, queue, &e).await),
            Err(_) => Err(self.unwind(kept, queue, "queue manager stopped").await),
        }
    }

    /// SPEC §2.1: a message whose queue cannot be created at reception is removed again, with a
    /// Bounce, and the client is told to try later.
    async fn unwind(&self, msg: Message, queue: &str, error: &str) -> Reply {
        let response = Response::new(
            500,
            None,
            format!("KumoMTA internal: QueueManager::insert failed during reception: {error}"),
        );
        Records(&self.logger).bounce(&msg, queue, response, &Attempt::default());
        if let Err(e) = self.spool.commit(vec![SpoolOp::Remove { id: msg.id }]).await {
            tracing::error!(id = %msg.id, error = %e, "could not unwind the spool write");
        }
        tracing::error!(id = %msg.id, queue, error, "message refused: its queue could not be created");
        Reply::new(451, "4.3.0", "Temporary failure: queue configuration error; try again later")
    }

    /// Log a refusal the listener sent before a message existed.
    pub fn log_rejection(
        &self,
        conn: &Connection,
        sender: &str,
        recipient: &str,
        reply: &Reply,
        command: &str,
    ) {
        let mut response = Response::new(reply.code, reply.enhanced, reply.text.clone());
        response.command = Some(command.to_string());
        let record = self.logger.rejection(
            sender,
            recipient,
            response,
            PeerAddress { name: conn.ehlo.clone(), addr: conn.peer.ip().to_string() },
        );
        self.logger.log(&record);
    }
}

/// Prepend our trace header (RFC 5321 §4.4).
fn with_received_header(
    hostname: &str,
    conn: &Connection,
    id: &str,
    recipients: &[String],
    body: Vec<u8>,
) -> Vec<u8> {
    let for_clause = match recipients {
        [one] => format!("\r\n\tfor <{one}>"),
        _ => String::new(),
    };
    let value = format!(
        "from {} ({})\r\n\tby {hostname} (Ferry) with {} id {id}{for_clause};\r\n\t{}",
        conn.ehlo,
        conn.peer.ip(),
        // RFC 3848: ESMTPS once STARTTLS has protected the session.
        match (conn.tls.is_some(), conn.auth.is_some()) {
            (true, true) => "ESMTPSA",
            (true, false) => "ESMTPS",
            (false, true) => "ESMTPA",
            (false, false) => "ESMTP",
        },
        Utc::now().to_rfc2822()
    );
    headers::prepend(&body, "Received", &value)
}
