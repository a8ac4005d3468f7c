//! What a delivery attempt's per-recipient responses mean for the message (SPEC §7.1, I1):
//! delivered recipients get a `Delivery`, refused ones a `Bounce`, and whoever is left is a
//! `TransientFailure` going back through the requeue path. The spool entry is removed only once
//! no recipient is left, after the records.

use std::sync::Arc;

use super::smtp_client::{Disposition, classify};
use crate::metrics::ReadyQueueStats;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_config::QueueConfig;
use crate::model::{Message, Response};
use crate::queue::Attempt;
use crate::queue::requeue;
use crate::queue::{Records, Services};

/// Settle one attempt. `results` pairs each recipient with its response. The ready queue counts
/// one delivered / failed / transiently failed message per record written.
pub async fn settle(
    services: &Services,
    stats: &ReadyQueueStats,
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
        stats.delivered();
        records.delivery(&with(&delivered), queue, response.clone(), attempt);
    }
    if let Some((_, response)) = bounced.first() {
        stats.fail();
        records.bounce(&with(&bounced), queue, response.clone(), attempt);
    }
    let Some((_, response)) = transient.first().cloned() else {
        requeue::remove_later(services, msg).await;
        return;
    };
    stats.transfail();
    let ctx = InsertContext::new(InsertReason::LoggedTransientFailure);
    requeue::transient(services, with(&transient), queue, config, response, attempt, ctx).await;
}

/// `KumoMTA internal: error in deliver_message: <err>` (SPEC §3.1).
pub fn internal_error(err: impl std::fmt::Display) -> Response {
    Response::new(400, None, format!("KumoMTA internal: error in deliver_message: {err}"))
}
