//! The receiving side of xfer: `POST /api/xfer/inject/v1` (SPEC §4.3), as a function of the
//! request so the HTTP layer stays a translator. Nothing is spooled unless every check passed,
//! and the 200 is only sent after the spool commit (with fsync) that makes it true (D16).

use std::net::SocketAddr;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::codec::{self, CodecError};
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::record::PeerAddress;
use crate::model::xfer::{derive_id, restore_info};
use crate::model::{Message, MessageId, RecordType, SpoolMeta};
use crate::queue::{Insert, Services};
use crate::spool::SpoolOp;

/// Largest body accepted, after decompression (D20).
pub const DEFAULT_BODY_LIMIT: usize = 64 << 20;

pub struct InjectRequest {
    pub body: bytes::Bytes,
    pub content_encoding: Option<String>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub limit: usize,
}

/// A refusal: HTTP status and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused { status, message: message.into() }
}

/// The dedupe key of SPEC §4.3 step 4.
fn prior_key(msg_meta: &serde_json::Map<String, Value>) -> (Option<String>, Option<String>) {
    let get = |k: &str| msg_meta.get(k).and_then(Value::as_str).map(str::to_string);
    (get("xfer_prior_node"), get("xfer_prior_id"))
}

/// Steps 2–11 of SPEC §4.3. Returns the local id.
pub async fn inject(services: &Services, req: InjectRequest) -> Result<MessageId, Refused> {
    // 2. Framing.
    let plain =
        codec::decompress(&req.body, req.content_encoding.as_deref(), req.limit).map_err(|e| match e {
            CodecError::TooLarge(_) => refused(413, e.to_string()),
            other => refused(400, other.to_string()),
        })?;
    let (envelope, data) = codec::decode(&plain).map_err(|e| refused(400, e.to_string()))?;
    let src: MessageId = envelope.id.parse().map_err(|e| refused(400, format!("id: {e}")))?;
    // 3. Loop guard (D4: compare the bare UUID).
    let me = services.node_id.hyphenated().to_string();
    let (prior_node, prior_id) = prior_key(&envelope.meta);
    if prior_node.as_deref() == Some(me.as_str()) {
        return Err(refused(400, format!("cannot xfer to myself. xfer_prior_node={me} which is my node id")));
    }
    // 4. Dedupe (D5): the local id is derived from the source id, so a resend finds its copy.
    let mut id = derive_id(&src, &services.node_field);
    loop {
        match services.spool.load_meta(&id) {
            Ok(None) => match services.spool.tombstone(&id) {
                Ok(Some((node, prior)))
                    if prior_node.as_deref() == Some(node.as_str())
                        && prior_id.as_deref() == Some(prior.as_str()) =>
                {
                    tracing::info!(%id, %src, "xfer resend of a message already completed here; acknowledged");
                    return Ok(id);
                }
                _ => break,
            },
            Ok(Some(existing)) if prior_key(&existing.meta) == (prior_node.clone(), prior_id.clone()) => {
                tracing::info!(%id, %src, "xfer resend of a message already here; acknowledged with its id");
                return Ok(id);
            }
            Ok(Some(_)) => {
                // A different message owns this id: step the clock sequence (SPEC §4.4).
                let mut b = *id.as_bytes();
                let seq = (u16::from_be_bytes([b[8], b[9]]) & 0x3fff).wrapping_add(1) & 0x3fff;
                [b[8], b[9]] = (0x8000 | seq).to_be_bytes();
                id = MessageId::from_bytes(b);
            }
            Err(e) => return Err(refused(503, format!("spool unavailable: {e}"))),
        }
    }
    let mut msg = Message::new(id, envelope.sender, envelope.recipient, data);
    msg.meta = envelope.meta;
    // 5. Where it came from.
    msg.set_meta("xfer_from", json!(req.peer.ip().to_string()));
    msg.set_meta("xfer_via", json!(req.local.to_string()));
    msg.set_meta("xfer_auth", json!("trusted_hosts"));
    // 6. restore_info.
    restore_info(&mut msg, Utc::now()).map_err(|e| refused(400, e))?;
    // 7. xfer_message_received.
    if services.policy.has_handler("xfer_message_received") {
        let auth = json!({"peer": req.peer.ip().to_string(), "method": "trusted_hosts"});
        let (returned, outcome) = services
            .policy
            .call(move |state| state.xfer_message_received(msg, &auth))
            .await
            .map_err(|e| refused(503, e.to_string()))?;
        msg = returned;
        if let Err(e) = outcome {
            tracing::error!(%id, error = %e, "xfer_message_received failed; the sender will retry");
            return Err(refused(500, format!("xfer_message_received: {e}")));
        }
    }
    let queue = msg.queue_name().map_err(|e| refused(400, format!("cannot compute the queue name: {e}")))?;
    // 8. Durable (fsync) before answering.
    let meta: SpoolMeta = msg.spool_meta();
    services
        .writer
        .commit(vec![SpoolOp::Put { id, meta: meta.to_bytes(), data: Some(msg.data.clone()) }])
        .await
        .map_err(|e| refused(503, format!("spool write failed: {e}")))?;
    // 9. XferIn.
    let mut record = services.logger.record(RecordType::XferIn, &msg, &queue);
    record.delivery_protocol = Some("xfer".into());
    record.peer_address = Some(PeerAddress { name: String::new(), addr: req.peer.ip().to_string() });
    services.logger.log(&record);
    // 10. Insert with [Received]; a failure unwinds (no Bounce: the sender retries; D6).
    let (tx, rx) = oneshot::channel();
    let kept = Message { data: bytes::Bytes::new(), ..msg.clone() };
    services.queues.do_send(Insert {
        msg,
        ctx: InsertContext::new(InsertReason::Received),
        reply: Some(tx),
        check_expiry: false,
    });
    match rx.await {
        Ok(Ok(())) => Ok(id),
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e,
                _ => "queue manager stopped".into(),
            };
            let _ = services.writer.commit(vec![SpoolOp::Remove { id: kept.id }]).await;
            tracing::error!(%id, error = %why, "xfer insert failed; removed again, the sender will retry");
            Err(refused(500, format!("insert failed: {why}")))
        }
    }
}
