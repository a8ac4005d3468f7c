//! What happens to a complete message: policy event, queue name, durable spool write, Reception
//! record, and only then the 250 (ARCHITECTURE: "an SMTP 250 is sent only after the spool commit").

use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;
use std::net::SocketAddr;

use crate::logging::Logger;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_name::NULL_QUEUE;
use crate::model::record::PeerAddress;
use crate::model::{Message, MessageIdGenerator, RecordType, Response, headers};
use crate::policy::{PolicyError, PolicyPool};
use crate::queue::{Attempt, Insert, QueueManager, Records};
use crate::spool::{SpoolOp, SpoolWriter};
use actix::Addr;
use tokio::sync::oneshot;

/// Everything a session needs to accept a message. Shared by all sessions.
pub struct Reception {
    pub hostname: String,
    pub ids: MessageIdGenerator,
    pub spool: SpoolWriter,
    pub policy: PolicyPool,
    pub logger: Logger,
    /// Where spooled messages go; None only in tests of reception alone.
    pub queues: Option<Addr<QueueManager>>,
}

/// The connection a message arrived on.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub ehlo: String,
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

impl Reception {
    /// Accept (or refuse) one message. The reply is final: 250 means it is durably spooled.
    pub async fn receive(
        &self,
        conn: &Connection,
        sender: String,
        recipients: Vec<String>,
        body: Vec<u8>,
    ) -> Reply {
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

        let mut rebinds = Vec::new();
        if self.policy.has_handler("smtp_server_message_received") {
            let call = self
                .policy
                .call(crate::policy::Lane::Reception, move |state| {
                    state.run_message_chain_noting("smtp_server_message_received", msg, None, |_| {
                        Ok(mlua::MultiValue::new())
                    })
                })
                .await;
            let (returned, outcome, notes) = match call {
                Ok(triple) => triple,
                Err(_) => return Reply::new(421, "4.3.2", "Service shutting down; try again later"),
            };
            msg = returned;
            rebinds = notes;
            match outcome {
                Ok(()) => {}
                Err(PolicyError::Rejected { code, text }) => {
                    let code = if (400..600).contains(&code) { code } else { 550 };
                    return Reply { code, enhanced: None, text };
                }
                Err(e) => {
                    tracing::error!(id = %msg.id, error = %e, "smtp_server_message_received failed; message refused with 451");
                    return Reply::new(451, "4.3.0", "Temporary policy failure; try again later");
                }
            }
        }

        let queue = match msg.queue_name() {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(id = %msg.id, error = %e, "cannot compute queue name; message refused with 451");
                return Reply::new(451, "4.3.0", format!("Cannot compute queue name: {e}"));
            }
        };

        if queue != NULL_QUEUE {
            // SPEC §1.5: the null queue discards at reception; nothing is spooled.
            let put =
                SpoolOp::Put { id: msg.id, meta: msg.spool_meta().to_bytes(), data: Some(msg.data.clone()) };
            if let Err(e) = self.spool.commit(vec![put]).await {
                tracing::error!(id = %msg.id, error = %e, "spool write failed; message refused with 451");
                return Reply::new(451, "4.3.0", "Temporary spool failure; try again later");
            }
        }

        let mut record = self.logger.record(RecordType::Reception, &msg, &queue);
        record.peer_address = Some(PeerAddress { name: conn.ehlo.clone(), addr: conn.peer.ip().to_string() });
        self.logger.log(&record);
        // kumo.xfer.xfer(msg, url, reason) in the handler: the move is saved, so log it now.
        for note in rebinds {
            self.logger.rebind(&msg, &note.from, &note.to, &note.reason);
        }
        let reply = Reply::new(250, "2.0.0", format!("OK id={}", msg.id));
        if queue == NULL_QUEUE {
            return reply;
        }
        let Some(queues) = &self.queues else { return reply };
        let (tx, rx) = oneshot::channel();
        let kept = Message { data: Bytes::new(), ..msg.clone() };
        queues.do_send(Insert {
            msg,
            ctx: InsertContext::new(InsertReason::Received),
            reply: Some(tx),
            check_expiry: false,
        });
        match rx.await {
            Ok(Ok(())) => reply,
            Ok(Err(e)) => self.unwind(kept, &queue, &e).await,
            Err(_) => self.unwind(kept, &queue, "queue manager stopped").await,
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
        "from {} ({})\r\n\tby {hostname} (Ferry) with ESMTP id {id}{for_clause};\r\n\t{}",
        conn.ehlo,
        conn.peer.ip(),
        Utc::now().to_rfc2822()
    );
    headers::prepend(&body, "Received", &value)
}
