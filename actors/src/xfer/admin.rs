//! Admin xfer (SPEC §4.5): matching scheduled queues are captured at request time and their
//! waiting messages moved, in the background, into the xfer queue for the target. Each move is
//! durable (save_info, new queue) before the message can be sent (SPEC §4.10).

use actix::prelude::*;
use serde_json::json;

use crate::model::admin::Criteria;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::xfer::{is_xfer_queue, pick_target, save_info};
use crate::model::{Message, MessageId};
use crate::queue::requeue::{save_all, save_meta};
use crate::queue::{DrainWaiting, Insert, MatchingQueues, QueueManager, Services};

/// `POST /api/admin/xfer/v1`, after validation: `xfer_queues` are the targets' xfer queues
/// (one, or several for a drain spread over peers: each scheduled queue goes whole to one).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdminXfer {
    pub criteria: Criteria,
    pub xfer_queues: Vec<String>,
    pub reason: String,
    /// The progress record (`Sweeps::begin`) this sweep reports to.
    pub sweep: uuid::Uuid,
}

/// Messages moved per spool commit: the sweep's rate is bounded by commits (fsync), not messages.
const CHUNK: usize = 1000;

/// Run an admin xfer to completion (the HTTP reply does not wait for this).
pub async fn run(services: Services, queues: Addr<QueueManager>, req: AdminXfer) {
    let matching = match queues.send(MatchingQueues(req.criteria.clone())).await {
        Ok(m) => m,
        Err(e) => {
            services.sweeps.end_sweep(req.sweep);
            return tracing::error!(error = %e, "admin xfer: queue manager unavailable");
        }
    };
    let mut moved = 0usize;
    // A target's own xfer queue is not moved to it (nor to another target: that is a re-target,
    // which the operator asks for by naming that queue alone).
    for (name, addr) in matching.into_iter().filter(|(n, _)| !req.xfer_queues.contains(n)) {
        let to = &req.xfer_queues[pick_target(&name, &req.xfer_queues)];
        let ids = addr.send(DrainWaiting).await.unwrap_or_default();
        for chunk in ids.chunks(CHUNK) {
            moved += rebind(&services, chunk, &name, to, &req).await;
        }
    }
    services.sweeps.end_sweep(req.sweep);
    tracing::info!(targets = ?req.xfer_queues, moved, reason = %req.reason, "admin xfer: messages moved to the xfer queues");
}

/// Move drained messages into the xfer queue: save_info and the new queue, durably, in one
/// commit; then AdminRebind and insert. Returns how many were moved.
async fn rebind(services: &Services, ids: &[MessageId], from: &str, to: &str, req: &AdminXfer) -> usize {
    let mut msgs = Vec::with_capacity(ids.len());
    for &id in ids {
        let meta = match services.spool.load_meta(&id) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(%id, error = %e, "admin xfer: cannot load message; it stays spooled until restart");
                continue;
            }
        };
        let mut msg = Message::from_spool(id, meta, bytes::Bytes::new());
        if !is_xfer_queue(from) {
            save_info(&mut msg);
        }
        msg.set_meta("queue", json!(to));
        msg.due = None;
        msgs.push(msg);
    }
    save_all(services, &msgs).await;
    let moved = msgs.len();
    for msg in msgs {
        services.logger.rebind(&msg, from, to, &req.reason);
        services.sweeps.captured(req.sweep, msg.id);
        services.queues.do_send(Insert {
            msg,
            ctx: InsertContext::new(InsertReason::AdminRebind),
            reply: None,
            check_expiry: false,
        });
    }
    moved
}

/// `POST /api/admin/xfer/cancel/v1` (SPEC §4.6).
#[derive(Message)]
#[rtype(result = "Result<(), (u16, String)>")]
pub struct CancelXfer {
    pub queue_name: String,
    pub reason: String,
}

impl Handler<CancelXfer> for QueueManager {
    type Result = ResponseFuture<Result<(), (u16, String)>>;

    fn handle(&mut self, req: CancelXfer, ctx: &mut Context<Self>) -> Self::Result {
        let me = ctx.address();
        let services = self.services_handle();
        Box::pin(async move {
            if !is_xfer_queue(&req.queue_name) {
                return Err((400, format!("{} is not an xfer queue", req.queue_name)));
            }
            let criteria = Criteria { queue_names: vec![req.queue_name.clone()], ..Criteria::default() };
            let Some((_, queue)) =
                me.send(MatchingQueues(criteria)).await.ok().and_then(|m| m.into_iter().next())
            else {
                // D8: KumoMTA creates the queue and answers 200; an unknown queue is a 404 here.
                return Err((404, format!("no xfer queue named {}", req.queue_name)));
            };
            actix::spawn(async move {
                let ids = queue.send(DrainWaiting).await.unwrap_or_default();
                // Concurrently within a chunk, so the spool writer commits many saves per fsync.
                for chunk in ids.chunks(CHUNK) {
                    let cancels =
                        chunk.iter().map(|id| cancel_one(&services, *id, &req.queue_name, &req.reason));
                    futures_util::future::join_all(cancels).await;
                }
            });
            Ok(())
        })
    }
}

/// Back to the original queue, eligible at once; attempts, schedule and queue keys as restored.
async fn cancel_one(services: &Services, id: MessageId, xfer_queue: &str, reason: &str) {
    let Ok(Some(meta)) = services.spool.load_meta(&id) else { return };
    let mut msg = Message::from_spool(id, meta, bytes::Bytes::new());
    let now = chrono::Utc::now();
    if let Err(e) = crate::model::xfer::restore_info(&mut msg, now) {
        tracing::error!(%id, error = %e, "xfer cancel: bad saved queue info; the message stays in the xfer queue");
        return services.queues.do_send(Insert {
            msg,
            ctx: InsertContext::new(InsertReason::AdminRebind),
            reply: None,
            check_expiry: false,
        });
    }
    // The restored due is replaced by now (delay 0); Adjust still applies to a schedule.
    msg.due = msg.schedule.as_ref().map(|s| s.adjust(now));
    let original = match msg.queue_name() {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(%id, error = %e, "xfer cancel: the original queue cannot be computed; returned to the xfer queue");
            save_info(&mut msg);
            msg.set_meta("queue", json!(xfer_queue));
            save_meta(services, &msg).await;
            return services.queues.do_send(Insert {
                msg,
                ctx: InsertContext::new(InsertReason::AdminRebind),
                reply: None,
                check_expiry: false,
            });
        }
    };
    save_meta(services, &msg).await;
    services.sweeps.left(&id);
    services.logger.rebind(&msg, xfer_queue, &original, reason);
    services.queues.do_send(Insert {
        msg,
        ctx: InsertContext::new(InsertReason::AdminRebind),
        reply: None,
        check_expiry: true,
    });
}
