//! The receiving side of xfer: `POST /api/xfer/inject/v1` (SPEC §4.3) and its batch form
//! `POST /api/xfer/inject-batch/v1` (docs/xfer-protocol.md), as functions of the request so the
//! HTTP layer stays a translator. Nothing is spooled unless the framing is sound (with no bytes
//! after the compressed stream) and the envelope addresses pass the SMTP listener's rule
//! (`model::address`), and no message is acknowledged before the spool commit (with fsync) that
//! makes it true (D16). A batch is one commit, so one fsync, for all its messages.

use std::collections::HashMap;
use std::net::SocketAddr;

use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use super::codec::{self, CodecError, Envelope};
use crate::model::address;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::record::PeerAddress;
use crate::model::xfer::{derive_id, restore_info};
use crate::model::{Message, MessageId, RecordType};
use crate::policy::RebindNote;
use crate::queue::{Insert, Services};
use crate::spool::{SpoolError, SpoolOp};

pub struct InjectRequest {
    pub body: bytes::Bytes,
    pub content_encoding: Option<String>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Largest body accepted, after decompression (D20).
    pub limit: usize,
    /// How the peer was admitted: `trusted_hosts` or `bearer_token` (meta `xfer_auth`).
    pub auth: &'static str,
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

type PriorKey = (Option<String>, Option<String>);

/// The dedupe key of SPEC §4.3 step 4.
fn prior_key(meta: &Map<String, Value>) -> PriorKey {
    let get = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_string);
    (get("xfer_prior_node"), get("xfer_prior_id"))
}

fn decompress(req: &InjectRequest) -> Result<bytes::Bytes, Refused> {
    codec::decompress(&req.body, req.content_encoding.as_deref(), req.limit).map(bytes::Bytes::from).map_err(
        |e| match e {
            CodecError::TooLarge(_) => refused(413, e.to_string()),
            other => refused(400, other.to_string()),
        },
    )
}

/// The single-message form. Returns the local id.
pub async fn inject(services: &Services, req: InjectRequest) -> Result<MessageId, Refused> {
    let plain = decompress(&req)?;
    let item = codec::decode(&plain).map_err(|e| refused(400, e.to_string()))?;
    let mut results = inject_all(services, vec![item], &req).await;
    results.pop().expect("one answer per message")
}

/// The batch form: the whole request is refused (nothing stored) if its framing is bad;
/// otherwise each message gets its own answer, in request order.
pub async fn inject_batch(
    services: &Services,
    req: InjectRequest,
) -> Result<Vec<Result<MessageId, Refused>>, Refused> {
    let plain = decompress(&req)?;
    let items = codec::decode_batch(&plain).map_err(|e| refused(400, e.to_string()))?;
    Ok(inject_all(services, items, &req).await)
}

/// Where one message of a request stands.
enum Slot {
    /// Answered already: refused, or a resend of a message this node has (or had).
    Answered(Result<MessageId, Refused>),
    /// A resend of an earlier message of the same request.
    SameAs(usize),
    /// New here, under this local id; `Ready` once the policy has seen it.
    New(Message),
    Ready {
        msg: Message,
        queue: String,
        rebinds: Vec<RebindNote>,
    },
}

/// Steps 3–11 of SPEC §4.3 for every message of a request.
async fn inject_all(
    services: &Services,
    items: Vec<(Envelope, bytes::Bytes)>,
    req: &InjectRequest,
) -> Vec<Result<MessageId, Refused>> {
    let me = services.node_id.hyphenated().to_string();
    let mut claimed: HashMap<MessageId, (usize, PriorKey)> = HashMap::new();
    let slots: Vec<Slot> = items
        .into_iter()
        .enumerate()
        .map(|(n, (envelope, data))| {
            let key = prior_key(&envelope.meta);
            let src: MessageId = match envelope.id.parse() {
                Ok(id) => id,
                Err(e) => return Slot::Answered(Err(refused(400, format!("id: {e}")))),
            };
            // The SMTP listener's address rule (null sender allowed), before anything is stored.
            if let Err(e) = address::check_envelope(&envelope.sender, &envelope.recipient) {
                return Slot::Answered(Err(refused(400, e)));
            }
            // 3. Loop guard (D4: compare the bare UUID).
            if key.0.as_deref() == Some(me.as_str()) {
                return Slot::Answered(Err(refused(
                    400,
                    format!("cannot xfer to myself. xfer_prior_node={me} which is my node id"),
                )));
            }
            // 4. Dedupe (D5).
            match local_id(services, &src, &key, &claimed) {
                Err(r) => Slot::Answered(Err(r)),
                Ok(Known::Here(id)) => Slot::Answered(Ok(id)),
                Ok(Known::InRequest(first)) => Slot::SameAs(first),
                Ok(Known::New(id)) => {
                    claimed.insert(id, (n, key));
                    let mut msg = Message::new(id, envelope.sender, envelope.recipient, data);
                    msg.meta = envelope.meta;
                    Slot::New(msg)
                }
            }
        })
        .collect();

    // 5–7, concurrently across the policy pool.
    let mut slots: Vec<Slot> = futures_util::future::join_all(slots.into_iter().map(|slot| async move {
        match slot {
            Slot::New(msg) => match prepare(services, msg, req).await {
                Ok((msg, queue, rebinds)) => Slot::Ready { msg, queue, rebinds },
                Err(r) => Slot::Answered(Err(r)),
            },
            other => other,
        }
    }))
    .await;

    // 8. One durable commit (fsync) for every message that is ready.
    let puts: Vec<SpoolOp> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Ready { msg, .. } => Some(SpoolOp::put(msg)),
            _ => None,
        })
        .collect();
    if !puts.is_empty()
        && let Err(e) = services.writer.commit(puts).await
    {
        // 507 Insufficient Storage: the sender keeps the message and tries again later.
        let status = if matches!(e, SpoolError::Full) { 507 } else { 503 };
        let why = refused(status, format!("spool write failed: {e}"));
        for slot in &mut slots {
            if matches!(slot, Slot::Ready { .. }) {
                *slot = Slot::Answered(Err(why.clone()));
            }
        }
    }

    // 9–10. XferIn, then insert; a failed insert unwinds (no Bounce: the sender retries; D6).
    let slots: Vec<Slot> = futures_util::future::join_all(slots.into_iter().map(|slot| async move {
        let Slot::Ready { msg, queue, rebinds } = slot else { return slot };
        let mut record = services.logger.record(RecordType::XferIn, &msg, &queue);
        record.delivery_protocol = Some("xfer".into());
        record.peer_address = Some(PeerAddress { name: String::new(), addr: req.peer.ip().to_string() });
        services.logger.log(&record);
        for note in rebinds {
            services.logger.rebind(&msg, &note.from, &note.to, &note.reason);
        }
        Slot::Answered(insert(services, msg).await)
    }))
    .await;

    // 11. Answers, in request order.
    let answers: Vec<Option<Result<MessageId, Refused>>> = slots
        .iter()
        .map(|s| match s {
            Slot::Answered(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    slots
        .iter()
        .map(|s| match s {
            Slot::SameAs(first) => answers[*first].clone().expect("an earlier message is answered"),
            Slot::Answered(r) => r.clone(),
            Slot::New(_) | Slot::Ready { .. } => unreachable!("every message is answered by now"),
        })
        .collect()
}

enum Known {
    /// Spooled here, or delivered from here within the tombstone window.
    Here(MessageId),
    /// Earlier in the same request (index).
    InRequest(usize),
    New(MessageId),
}

/// SPEC §4.4: the local id is derived from the source id, so a resend finds its copy; a
/// different message owning the derived id steps the clock sequence.
fn local_id(
    services: &Services,
    src: &MessageId,
    key: &PriorKey,
    claimed: &HashMap<MessageId, (usize, PriorKey)>,
) -> Result<Known, Refused> {
    let mut id = derive_id(src, &services.node_field);
    loop {
        let owner = match claimed.get(&id) {
            Some((n, k)) if k == key => return Ok(Known::InRequest(*n)),
            Some(_) => Some(()),
            None => match services.spool.load_meta(&id) {
                Ok(None) => match services.spool.tombstone(&id) {
                    Ok(Some((node, prior)))
                        if key.0.as_deref() == Some(node.as_str())
                            && key.1.as_deref() == Some(prior.as_str()) =>
                    {
                        tracing::info!(%id, %src, "xfer resend of a message already completed here; acknowledged");
                        return Ok(Known::Here(id));
                    }
                    Ok(_) => None,
                    Err(e) => return Err(refused(503, format!("spool unavailable: {e}"))),
                },
                Ok(Some(existing)) if &prior_key(&existing.meta) == key => {
                    tracing::info!(%id, %src, "xfer resend of a message already here; acknowledged with its id");
                    return Ok(Known::Here(id));
                }
                Ok(Some(_)) => Some(()),
                Err(e) => return Err(refused(503, format!("spool unavailable: {e}"))),
            },
        };
        if owner.is_none() {
            return Ok(Known::New(id));
        }
        let mut b = *id.as_bytes();
        let seq = (u16::from_be_bytes([b[8], b[9]]) & 0x3fff).wrapping_add(1) & 0x3fff;
        [b[8], b[9]] = (0x8000 | seq).to_be_bytes();
        id = MessageId::from_bytes(b);
    }
}

/// Steps 5–7: provenance, restore_info, xfer_message_received; then the queue it will live in.
async fn prepare(
    services: &Services,
    mut msg: Message,
    req: &InjectRequest,
) -> Result<(Message, String, Vec<RebindNote>), Refused> {
    let id = msg.id;
    msg.set_meta("xfer_from", json!(req.peer.ip().to_string()));
    msg.set_meta("xfer_via", json!(req.local.to_string()));
    msg.set_meta("xfer_auth", json!(req.auth));
    restore_info(&mut msg, Utc::now()).map_err(|e| refused(400, e))?;
    let mut rebinds = Vec::new();
    if services.policy.has_handler("xfer_message_received") {
        let auth = json!({"peer": req.peer.ip().to_string(), "method": req.auth});
        let (returned, outcome, notes) = services
            .policy
            .call(crate::policy::Lane::Reception, move |state| state.xfer_message_received(msg, &auth))
            .await
            .map_err(|e| refused(503, e.to_string()))?;
        msg = returned;
        rebinds = notes;
        if let Err(e) = outcome {
            tracing::error!(%id, error = %e, "xfer_message_received failed; the sender will retry");
            return Err(refused(500, format!("xfer_message_received: {e}")));
        }
    }
    let queue = msg.queue_name().map_err(|e| refused(400, format!("cannot compute the queue name: {e}")))?;
    Ok((msg, queue, rebinds))
}

/// Step 10 for one committed message.
async fn insert(services: &Services, msg: Message) -> Result<MessageId, Refused> {
    let id = msg.id;
    let (tx, rx) = oneshot::channel();
    services.queues.do_send(Insert {
        msg,
        ctx: InsertContext::new(InsertReason::Received),
        reply: Some(tx),
        check_expiry: false,
    });
    let why = match rx.await {
        Ok(Ok(())) => return Ok(id),
        Ok(Err(e)) => e,
        Err(_) => "queue manager stopped".into(),
    };
    let _ = services.writer.commit(vec![SpoolOp::Remove { id }]).await;
    tracing::error!(%id, error = %why, "xfer insert failed; removed again, the sender will retry");
    Err(refused(500, format!("insert failed: {why}")))
}
