//! What a delivery attempt's per-recipient responses mean for the message (SPEC §7.1, I1):
//! delivered recipients get a `Delivery`, refused ones a `Bounce`, and whoever is left is a
//! `TransientFailure` going back through the requeue path. The spool entry is removed only once
//! no recipient is left, after the records.

use std::sync::Arc;

use super::smtp_client::{Disposition, classify};
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_config::QueueConfig;
use crate::model::{Message, Response};
use crate::queue::Attempt;
use crate::queue::requeue::{self, Requeue};
use crate::queue::{Records, Services};

/// Settle one attempt. `results` pairs each recipient with its response.
pub async fn settle(
    services: &Services,
    msg: Message,
    queue: &str,
    config: &Arc<QueueConfig>,
    results: Vec<(String, Response)>,
    attempt: &Attempt,
) {
    let records = Records(&services.logger);
    let mut delivered = Vec::new();
    let mut bounced = Vec::new();
    let mut transient = Vec::new();
    for (rcpt, response) in results {
        match classify(&response) {
            Disposition::Delivered => delivered.push((rcpt, response)),
            Disposition::Permanent => bounced.push((rcpt, response)),
            Disposition::Transient | Disposition::TooManyRecipients => transient.push((rcpt, response)),
        }
    }
    let with = |list: &[(String, Response)]| Message {
        recipients: list.iter().map(|(r, _)| r.clone()).collect(),
        ..msg.clone()
    };
    if let Some((_, response)) = delivered.first() {
        records.delivery(&with(&delivered), queue, response.clone(), attempt);
    }
    if let Some((_, response)) = bounced.first() {
        records.bounce(&with(&bounced), queue, response.clone(), attempt);
    }
    let Some((_, response)) = transient.first().cloned() else {
        requeue::remove(services, &msg).await;
        return;
    };
    let remaining = with(&transient);
    records.transient(&remaining, queue, response.clone(), attempt);
    let req = Requeue {
        msg: remaining,
        queue: queue.to_string(),
        config: config.clone(),
        response,
        ctx: InsertContext::new(InsertReason::LoggedTransientFailure),
        increment: true,
        delay: None,
    };
    requeue::requeue(services, req).await;
}

/// A failure that prevented any per-recipient answer (connection, DNS, Lua error): one TF for the
/// whole message, then the requeue path.
pub async fn transient_failure(
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
    requeue::requeue(services, req).await;
}

/// `KumoMTA internal: error in deliver_message: <err>` (SPEC §3.1).
pub fn internal_error(err: impl std::fmt::Display) -> Response {
    Response::new(400, None, format!("KumoMTA internal: error in deliver_message: {err}"))
}
