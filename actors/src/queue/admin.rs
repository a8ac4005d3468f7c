//! Admin bounce and rebind (SPEC §2.8, §5): directives and sweeps over the waiting messages of
//! matching scheduled queues. Sweeps run in the background; the HTTP reply does not wait.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::{Map, Value};

use super::manager::{MatchingQueues, QueueManager};
use super::requeue::{admin_bounce, save_all};
use super::scheduled::DrainWaiting;
use super::{Insert, Services};
use crate::model::admin::{Bounce, Criteria};
use crate::model::cluster::{Directive, DirectiveKind};
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::{Message, MessageId};
use crate::spool::SpoolOp;

/// Messages handled per spool commit in a sweep.
const CHUNK: usize = 1000;

/// `POST /api/admin/bounce/v1`.
#[derive(Message)]
#[rtype(result = "uuid::Uuid")]
pub struct BounceQueues {
    pub criteria: Criteria,
    pub reason: String,
    pub duration: Duration,
    pub suppress_logging: bool,
}

impl Handler<BounceQueues> for QueueManager {
    type Result = MessageResult<BounceQueues>;

    fn handle(&mut self, req: BounceQueues, ctx: &mut Context<Self>) -> Self::Result {
        let id = uuid::Uuid::new_v4();
        let expires = Utc::now() + chrono::Duration::from_std(req.duration).unwrap_or(chrono::Duration::MAX);
        let services = self.services_handle();
        let bounce = Bounce {
            id,
            criteria: req.criteria,
            reason: req.reason,
            expires,
            suppress_logging: req.suppress_logging,
            origin: services.origin(),
            bounced: BTreeMap::new(),
            total_bounced: 0,
        };
        services.announce(Directive::Bounce(bounce.clone()));
        start_bounce(services, ctx.address(), bounce);
        MessageResult(id)
    }
}

/// A bounce made here or by a peer: recorded (so arrivals bounce while it lasts), then the
/// matching queues are drained in the background.
pub(super) fn start_bounce(services: Services, me: Addr<QueueManager>, bounce: Bounce) {
    if let Ok(mut b) = services.bounces.lock() {
        b.add(bounce.clone());
    }
    actix::spawn(async move {
        let Ok(matching) = me.send(MatchingQueues(bounce.criteria)).await else { return };
        for (queue, addr) in matching {
            let ids = addr.send(DrainWaiting).await.unwrap_or_default();
            for chunk in ids.chunks(CHUNK) {
                let msgs = load(&services, chunk, false);
                admin_bounce(&services, &msgs, &queue, bounce.id, &bounce.reason, bounce.suppress_logging)
                    .await;
            }
        }
    });
}

fn load(services: &Services, ids: &[MessageId], with_data: bool) -> Vec<Message> {
    ids.iter()
        .filter_map(|id| {
            let loaded = if with_data {
                services.spool.load(id)
            } else {
                services.spool.load_meta(id).map(|m| m.map(|m| Message::from_spool(*id, m, bytes::Bytes::new())))
            };
            match loaded {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(%id, error = %e, "admin sweep: cannot load message; it stays spooled until restart");
                    None
                }
            }
        })
        .collect()
}

/// One live bounce as `bounce-list` shows it.
#[derive(Debug, Clone)]
pub struct BounceView {
    pub bounce: Bounce,
    pub remaining: Duration,
}

#[derive(Message)]
#[rtype(result = "Vec<BounceView>")]
pub struct ListBounces;

impl Handler<ListBounces> for QueueManager {
    type Result = MessageResult<ListBounces>;
    fn handle(&mut self, _: ListBounces, _: &mut Context<Self>) -> Self::Result {
        let now = Utc::now();
        let services = self.services_handle();
        let list = match services.bounces.lock() {
            Ok(mut b) => b
                .live(now)
                .iter()
                .map(|b| BounceView {
                    bounce: b.clone(),
                    remaining: (b.expires - now).to_std().unwrap_or_default(),
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        MessageResult(list)
    }
}

/// `DELETE /api/admin/bounce/v1`; true if it existed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CancelBounce(pub uuid::Uuid);

impl Handler<CancelBounce> for QueueManager {
    type Result = bool;
    fn handle(&mut self, CancelBounce(id): CancelBounce, _: &mut Context<Self>) -> bool {
        let services = self.services_handle();
        let removed = remove_bounce(&services, &id);
        if removed {
            services.announce_cancel((DirectiveKind::Bounce, id));
        }
        removed
    }
}

/// Remove a bounce made here or by a peer; true if it existed.
pub(super) fn remove_bounce(services: &Services, id: &uuid::Uuid) -> bool {
    services.bounces.lock().map(|mut b| b.remove(id)).unwrap_or(false)
}

/// `POST /api/admin/rebind/v1` (SPEC §5).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct RebindQueues {
    pub criteria: Criteria,
    pub reason: String,
    pub data: Map<String, Value>,
    pub suppress_logging: bool,
    pub trigger_rebind_event: bool,
    pub always_flush: bool,
}

impl Handler<RebindQueues> for QueueManager {
    type Result = ();

    fn handle(&mut self, req: RebindQueues, ctx: &mut Context<Self>) {
        let (services, me) = (self.services_handle(), ctx.address());
        actix::spawn(async move {
            let Ok(matching) = me.send(MatchingQueues(req.criteria.clone())).await else { return };
            let mut rebound = 0usize;
            for (queue, addr) in matching {
                let ids = addr.send(DrainWaiting).await.unwrap_or_default();
                for chunk in ids.chunks(CHUNK) {
                    rebound += rebind_chunk(&services, chunk, &queue, &req).await;
                }
            }
            tracing::info!(rebound, reason = %req.reason, "admin rebind finished");
        });
    }
}

/// Per drained message: `rebind_message(msg, data)` or the data copied into meta; save; then back
/// into a queue: the new one due now, or the same one with its due time kept unless
/// `always_flush` (D10). A failing or missing handler leaves the message unchanged.
async fn rebind_chunk(services: &Services, ids: &[MessageId], from: &str, req: &RebindQueues) -> usize {
    let msgs = load(services, ids, req.trigger_rebind_event);
    let mut changed = Vec::with_capacity(msgs.len());
    for mut msg in msgs {
        let before = msg.clone();
        let mut notes = Vec::new();
        if req.trigger_rebind_event {
            let data = Value::Object(req.data.clone());
            match services
                .policy
                .call(crate::policy::Lane::Delivery, move |state| state.rebind_message(msg, &data))
                .await
            {
                Ok((returned, Ok(()), n)) => {
                    msg = returned;
                    notes = n;
                }
                Ok((_, Err(e), _)) => {
                    tracing::error!(id = %before.id, queue = from, error = %e, "rebind_message failed; the message is unchanged");
                    msg = before.clone();
                }
                Err(e) => {
                    tracing::error!(id = %before.id, error = %e, "policy unavailable; the message is unchanged");
                    msg = before.clone();
                }
            }
        } else {
            for (k, v) in &req.data {
                msg.set_meta(k, v.clone());
            }
        }
        let to = match msg.queue_name() {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(id = %msg.id, error = %e, "rebind left no computable queue name; the message is unchanged");
                msg = before.clone();
                from.to_string()
            }
        };
        let moved = to != from;
        if moved || req.always_flush {
            msg.due = None;
        }
        if moved && !req.suppress_logging {
            services.logger.rebind(&msg, from, &to, &req.reason);
        }
        for note in notes {
            services.logger.rebind(&msg, &note.from, &note.to, &note.reason);
        }
        changed.push((msg, moved, before));
    }
    // One commit: the body too where the event may have changed it.
    let (with_data, meta_only): (Vec<_>, Vec<_>) =
        changed.iter().partition(|(m, _, before)| req.trigger_rebind_event && m.data != before.data);
    let puts: Vec<SpoolOp> = with_data.iter().map(|(m, _, _)| SpoolOp::put(m)).collect();
    if !puts.is_empty()
        && let Err(e) = services.writer.commit(puts).await
    {
        tracing::error!(error = %e, "rebind: saving rewritten messages failed; they keep their old content on disk");
    }
    let meta_only: Vec<Message> = meta_only.into_iter().map(|(m, _, _)| m.clone()).collect();
    save_all(services, &meta_only).await;
    let n = changed.len();
    for (msg, moved, _) in changed {
        let msg = Message { data: bytes::Bytes::new(), ..msg };
        // E2 for a message entering another queue (SPEC §2.7).
        services.queues.do_send(Insert {
            msg,
            ctx: InsertContext::new(InsertReason::AdminRebind),
            reply: None,
            check_expiry: moved,
        });
    }
    n
}
