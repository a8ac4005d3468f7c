//! The requeue path (SPEC §2.6, §2.7, §3): every transient failure comes through here, whatever
//! caused it. It computes the next due time (or expires the message), saves due and attempts
//! durably (D1), and hands the message back to the queue manager.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::manager::Insert;
use super::records::Records;
use super::services::Services;
use crate::model::insert_context::InsertContext;
use crate::model::queue_config::QueueConfig;
use crate::model::retry::{self, Expired};
use crate::model::{Message, Response};
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

/// Apply the retry schedule and reinsert. Never loses the message: on a spool error it is still
/// reinserted (it stays spooled with its previous due time).
pub async fn requeue(services: &Services, req: Requeue) {
    let Requeue { mut msg, queue, config, ctx, increment, delay, .. } = req;
    let now = Utc::now();
    let rand01: f64 = rand::random();
    let outcome = if increment {
        // SPEC §3.4 rule 6 (engine): maildir failures carry their own delay instead of the backoff.
        let due = match delay {
            Some(d) => retry::check_expiry(
                now + chrono::Duration::from_std(d).unwrap_or_default(),
                msg.created(),
                config.max_age.0,
                msg.schedule.as_ref(),
            )
            .map(|()| now + chrono::Duration::from_std(d).unwrap_or_default()),
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
        Err(Expired(reason)) => expire(services, &msg, &queue, &reason).await,
        Ok(due) => {
            msg.due = Some(due);
            save_meta(services, &msg).await;
            services.queues.do_send(Insert { msg, ctx, reply: None });
        }
    }
}

/// Log `Expiration` 551 5.4.7 and remove from the spool (record first: SPEC I1).
pub async fn expire(services: &Services, msg: &Message, queue: &str, reason: &str) {
    Records(&services.logger).expiration(msg, queue, 551, "5.4.7", reason);
    remove(services, msg).await;
}

/// Remove a message whose final record has been logged.
pub async fn remove(services: &Services, msg: &Message) {
    if let Err(e) = services.writer.commit(vec![SpoolOp::Remove { id: msg.id }]).await {
        tracing::error!(id = %msg.id, error = %e, "spool removal failed; the message will be found again at restart");
    }
}

/// Persist meta, due and attempts (not the body).
pub async fn save_meta(services: &Services, msg: &Message) {
    let op = SpoolOp::Put { id: msg.id, meta: msg.spool_meta().to_bytes(), data: None };
    if let Err(e) = services.writer.commit(vec![op]).await {
        tracing::error!(id = %msg.id, error = %e, "saving due time and attempts failed; kept in memory");
    }
}
