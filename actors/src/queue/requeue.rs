//! The requeue path (SPEC §2.6, §2.7, §3): every transient failure comes through here, whatever
//! caused it. It computes the next due time (or expires the message), saves due and attempts
//! durably (D1), and hands the message back to the queue manager.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::manager::Insert;
use super::records::{Attempt, Records};
use super::services::Services;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_config::QueueConfig;
use crate::model::retry::{self, Expired};
use crate::model::{Message, Response};
use crate::policy::PolicyError;
use crate::policy::requeue::RequeueArgs;
use crate::spool::SpoolOp;

/// A message going back to a queue after a transient failure or a throttle.
pub struct Requeue {
    pub msg: Message,
    /// The queue it was in.
    pub queue: String,
    pub config: Arc<QueueConfig>,
    /// The response that caused it (already logged as a TransientFailure when `ctx` says so).
    pub response: Response,
    pub ctx: InsertContext,
    pub increment: bool,
    pub delay: Option<Duration>,
}

/// SPEC §3.4: ask the policy (`requeue_message`), then either bounce, move the message to the
/// queue the policy chose (immediately eligible), or apply the retry schedule in its own queue.
/// Never loses the message: on a spool error it is still reinserted (it stays spooled with its
/// previous due time), and a policy error restores it as it was.
pub async fn requeue(services: &Services, req: Requeue) {
    let Requeue { msg, queue, config, response, ctx, increment, delay } = req;
    let failure =
        Failure { queue: &queue, config: &config, response: &response, ctx: &ctx, increment, delay };
    let msg = match decide(services, msg, failure).await {
        Decision::Bounced => return,
        Decision::Moved { msg, to } => return move_to(services, msg, &to, increment, ctx).await,
        Decision::Stay(msg) => msg,
    };
    retry_in_place(services, msg, &queue, &config, ctx, increment, delay).await;
}

enum Decision {
    Bounced,
    Moved { msg: Message, to: String },
    Stay(Message),
}

/// What went wrong and where, as `decide` needs it.
#[derive(Clone, Copy)]
struct Failure<'a> {
    queue: &'a str,
    config: &'a QueueConfig,
    response: &'a Response,
    ctx: &'a InsertContext,
    increment: bool,
    delay: Option<Duration>,
}

/// Run the `requeue_message` chain on the policy actor (never on the queue actor).
async fn decide(services: &Services, msg: Message, failure: Failure<'_>) -> Decision {
    let Failure { queue, config, response, ctx, increment, delay } = failure;
    let backoff = config.backoff();
    if !services.policy.has_handler("requeue_message") {
        return Decision::Stay(msg);
    }
    // SPEC §3.4 rule 1: snapshot what a failed handler must not leave half-changed (D2).
    let snapshot = (msg.meta.clone(), msg.schedule.clone(), msg.due);
    let fallback = msg.clone();
    let args = RequeueArgs {
        smtp_response: response.to_single_line(),
        insert_context: ctx.names(),
        increment_attempts: increment,
        delay,
        backoff: Some(backoff),
    };
    let (mut msg, outcome, rebinds) = match services
        .policy
        .call(crate::policy::Lane::Delivery, move |state| state.requeue_message(msg, &args))
        .await
    {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(id = %fallback.id, error = %e, "requeue_message could not run; message keeps its queue");
            return Decision::Stay(fallback);
        }
    };
    match outcome {
        Ok(()) => {
            // kumo.xfer.xfer_in_requeue(..., reason) asked for AdminRebind records.
            for note in rebinds {
                services.logger.rebind(&msg, &note.from, &note.to, &note.reason);
            }
        }
        Err(PolicyError::Rejected { code, text }) => {
            // Rule 3: any code, even 4xx, bounces; later handlers were not called.
            let response = Response { code, enhanced_code: None, content: text, command: None };
            Records(&services.logger).bounce(&msg, queue, response, &Attempt::default());
            remove(services, &msg).await;
            return Decision::Bounced;
        }
        Err(e) => {
            // Rule 4: diagnostic, snapshot restored, original queue, increment and delay.
            tracing::error!(id = %msg.id, %queue, error = %e, "requeue_message failed; message restored to its queue");
            (msg.meta, msg.schedule, msg.due) = snapshot;
            return Decision::Stay(msg);
        }
    }
    match msg.queue_name() {
        Ok(to) if to != queue => Decision::Moved { msg, to },
        Ok(_) => Decision::Stay(msg),
        Err(e) => {
            tracing::error!(id = %msg.id, %queue, error = %e, "requeue_message left an uncomputable queue name; restored");
            (msg.meta, msg.schedule, msg.due) = snapshot;
            Decision::Stay(msg)
        }
    }
}

/// Rule 5: immediately eligible in the new queue. Attempts increase once if `increment`; the
/// schedule stays unless the handler cleared it (Adjust applies); E2 is checked by the new queue.
async fn move_to(services: &Services, mut msg: Message, to: &str, increment: bool, ctx: InsertContext) {
    if increment {
        msg.num_attempts = msg.num_attempts.saturating_add(1);
    }
    msg.due = msg.schedule.as_ref().map(|s| s.adjust(Utc::now()));
    tracing::debug!(id = %msg.id, queue = to, "requeue_message moved the message");
    services.sweeps.moved(&msg.id, to);
    save_meta(services, &msg).await;
    services.queues.do_send(Insert { msg, ctx, reply: None, check_expiry: true });
}

/// Rule 6: the retry schedule in the same queue.
async fn retry_in_place(
    services: &Services,
    mut msg: Message,
    queue: &str,
    config: &QueueConfig,
    ctx: InsertContext,
    increment: bool,
    delay: Option<Duration>,
) {
    let now = Utc::now();
    let rand01: f64 = rand::random();
    let outcome = if increment {
        // Engine: maildir failures carry their own delay instead of the backoff.
        let due = match delay {
            Some(d) => {
                let due = now + chrono::Duration::from_std(d).unwrap_or_default();
                retry::check_expiry(due, msg.created(), config.max_age.0, msg.schedule.as_ref()).map(|()| due)
            }
            None => retry::next_due_with_increment(
                now,
                msg.created(),
                msg.num_attempts,
                &config.backoff(),
                msg.schedule.as_ref(),
                rand01,
            ),
        };
        due.inspect(|_| msg.num_attempts = msg.num_attempts.saturating_add(1))
    } else {
        let due = retry::next_due_without_increment(now, delay, msg.schedule.as_ref(), rand01);
        retry::check_expiry(due, msg.created(), config.max_age.0, msg.schedule.as_ref()).map(|()| due)
    };
    match outcome {
        Err(Expired(reason)) => expire(services, &msg, queue, &reason).await,
        Ok(due) => {
            msg.due = Some(due);
            save_meta(services, &msg).await;
            services.queues.do_send(Insert { msg, ctx, reply: None, check_expiry: false });
        }
    }
}

/// An admin directive holding back a queue's messages (SPEC §2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    Bounce { id: uuid::Uuid, reason: String, suppress_logging: bool },
    Suspend(String),
}

/// The directive matching `queue`, bounces first (SPEC §2.3 step 1, §2.4 steps 1–2): checked on
/// insert, on promotion, and again when a ready queue dequeues.
pub fn hold_of(services: &Services, queue: &str) -> Option<Hold> {
    let now = Utc::now();
    if let Ok(bounces) = services.bounces.lock()
        && let Some(b) = bounces.matching(queue, now)
    {
        return Some(Hold::Bounce {
            id: b.id,
            reason: b.reason.clone(),
            suppress_logging: b.suppress_logging,
        });
    }
    let suspensions = services.suspensions.lock().ok()?;
    suspensions.matching(queue, now).map(|s| Hold::Suspend(s.reason.clone()))
}

/// Carry out a hold: `AdminBounce` and removal, or the suspension's TransientFailure and requeue.
pub async fn apply_hold(
    services: &Services,
    msg: Message,
    queue: &str,
    config: &Arc<QueueConfig>,
    hold: Hold,
) {
    match hold {
        Hold::Suspend(reason) => suspended(services, msg, queue, config, &reason).await,
        Hold::Bounce { id, reason, suppress_logging } => {
            admin_bounce(services, &[msg], queue, id, &reason, suppress_logging).await
        }
    }
}

/// `AdminBounce` (unless suppressed) and removal, in one spool commit, counted on the directive.
pub async fn admin_bounce(
    services: &Services,
    msgs: &[Message],
    queue: &str,
    id: uuid::Uuid,
    reason: &str,
    suppress_logging: bool,
) {
    if !suppress_logging {
        for msg in msgs {
            Records(&services.logger).admin_bounce(msg, queue, reason);
        }
    }
    if let Ok(mut bounces) = services.bounces.lock() {
        for _ in msgs {
            bounces.count(&id, queue);
        }
    }
    remove_all(services, msgs).await;
}

/// A failure logged as one `TransientFailure` record for the message, then the requeue path
/// with an increment (SPEC §3.1): the common end of connection, DNS, Lua, xfer and suspension
/// failures.
pub async fn transient(
    services: &Services,
    msg: Message,
    queue: &str,
    config: &Arc<QueueConfig>,
    response: Response,
    attempt: &Attempt,
    ctx: InsertContext,
) {
    Records(&services.logger).transient(&msg, queue, response.clone(), attempt);
    let req = Requeue {
        msg,
        queue: queue.to_string(),
        config: config.clone(),
        response,
        ctx,
        increment: true,
        delay: None,
    };
    requeue(services, req).await;
}

/// SPEC §2.4 step 2 (and the ready-queue re-check): a suspended queue answers with a
/// TransientFailure 451 4.4.4 whose site is the scheduled queue, then the normal requeue path.
async fn suspended(services: &Services, msg: Message, queue: &str, config: &Arc<QueueConfig>, reason: &str) {
    let response = Response::new(
        451,
        Some("4.4.4"),
        format!("KumoMTA internal: scheduled queue is suspended: {reason}"),
    );
    let attempt = Attempt { site: queue.to_string(), ..Default::default() };
    let ctx = InsertContext::new(InsertReason::LoggedTransientFailure);
    transient(services, msg, queue, config, response, &attempt, ctx).await;
}

/// Log `Expiration` 551 5.4.7 and remove from the spool (record first: SPEC I1).
pub async fn expire(services: &Services, msg: &Message, queue: &str, reason: &str) {
    Records(&services.logger).expiration(msg, queue, 551, "5.4.7", reason);
    remove(services, msg).await;
}

/// How long a completed transferred message is remembered for dedupe (SPEC §4.3 step 4).
const TOMBSTONE_DAYS: i64 = 7;

/// Remove a message whose final record has been logged. One that arrived by xfer leaves a
/// tombstone, so that a resend of it is acknowledged instead of delivered twice.
pub async fn remove(services: &Services, msg: &Message) {
    remove_all(services, std::slice::from_ref(msg)).await;
}

/// Removals started by [`remove_later`] and not yet committed.
static PENDING_REMOVALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static REMOVALS_SETTLED: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Beyond this many removals in flight, [`remove_later`] waits for its own (back pressure).
const MAX_PENDING_REMOVALS: usize = 10_000;

/// [`remove`] without waiting for it: a delivery connection takes its next message while the
/// delivered one's removal (which may first wait for its log-hook events, see `log_hooks`)
/// commits. The engine waits for these at shutdown ([`removals_settled`]), so a graceful stop
/// does not send a delivered message again.
pub async fn remove_later(services: &Services, msg: Message) {
    use std::sync::atomic::Ordering;
    if PENDING_REMOVALS.load(Ordering::Acquire) >= MAX_PENDING_REMOVALS {
        return remove(services, &msg).await;
    }
    PENDING_REMOVALS.fetch_add(1, Ordering::AcqRel);
    let services = services.clone();
    actix::spawn(async move {
        remove(&services, &msg).await;
        if PENDING_REMOVALS.fetch_sub(1, Ordering::AcqRel) == 1 {
            REMOVALS_SETTLED.notify_waiters();
        }
    });
}

/// Wait until every [`remove_later`] has committed.
pub async fn removals_settled() {
    use std::sync::atomic::Ordering;
    loop {
        let settled = REMOVALS_SETTLED.notified();
        if PENDING_REMOVALS.load(Ordering::Acquire) == 0 {
            return;
        }
        settled.await;
    }
}

/// [`remove`] for many messages, in one spool commit.
pub async fn remove_all(services: &Services, msgs: &[Message]) {
    if msgs.is_empty() {
        return;
    }
    // The records of these outcomes become hook messages before the outcomes become durable.
    crate::log_hooks::barrier().await;
    let ops = msgs
        .iter()
        .map(|msg| {
            // A message an admin xfer moved, now bounced or expired instead of transferred.
            services.sweeps.left(&msg.id);
            let meta_str = |k: &str| msg.get_meta(k).and_then(|v| v.as_str()).map(str::to_string);
            match (meta_str("xfer_prior_node"), meta_str("xfer_prior_id"), msg.get_meta("xfer_from")) {
                (Some(prior_node), Some(prior_id), Some(_)) => SpoolOp::RemoveWithTombstone {
                    id: msg.id,
                    prior_node,
                    prior_id,
                    expires: Utc::now().timestamp() + TOMBSTONE_DAYS * 86_400,
                },
                _ => SpoolOp::Remove { id: msg.id },
            }
        })
        .collect();
    if let Err(e) = services.writer.commit(ops).await {
        tracing::error!(messages = msgs.len(), first = %msgs[0].id, error = %e, "spool removal failed; the messages will be found again at restart");
    }
}

/// Persist meta, due and attempts (not the body).
pub async fn save_meta(services: &Services, msg: &Message) {
    save_all(services, std::slice::from_ref(msg)).await;
}

/// [`save_meta`] for many messages, in one spool commit.
pub async fn save_all(services: &Services, msgs: &[Message]) {
    if msgs.is_empty() {
        return;
    }
    crate::log_hooks::barrier().await;
    let ops =
        msgs.iter().map(|m| SpoolOp::Put { id: m.id, meta: m.spool_meta().to_bytes(), data: None }).collect();
    if let Err(e) = services.writer.commit(ops).await {
        tracing::error!(messages = msgs.len(), first = %msgs[0].id, error = %e, "saving due time and attempts failed; kept in memory");
    }
}
