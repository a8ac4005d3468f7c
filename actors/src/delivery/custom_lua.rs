//! custom_lua connections (SPEC §7.3): each connection owns a Lua state (see
//! `policy::custom_lua`), takes messages from its ready queue one at a time, or in batches of up
//! to `batch_size` for `send_batch`, and settles each message by the disposition. It stays open
//! while messages keep coming, up to the egress path's `idle_timeout` without one.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use super::ReadyItem;
use super::outcome::internal_error;
use crate::egress::ready_queue::{ReadyQueue, next_item, take_ready};
use crate::metrics::ReadyQueueStats;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_config::Protocol;
use crate::model::{Message, Response, queue_name};
use crate::policy::PolicyError;
use crate::policy::custom_lua::LuaConnection;
use crate::queue::requeue;
use crate::queue::requeue::transient;
use crate::queue::{Attempt, Records, Services};

pub(crate) async fn connection(
    services: Services,
    stats: Arc<ReadyQueueStats>,
    site: String,
    constructor: &str,
    queue: Addr<ReadyQueue>,
) {
    let attempt = Attempt { site, peer: None, protocol: Some("Lua".into()), egress: None, tls: None };
    let state = match services.policy.load_state() {
        Ok(state) => state,
        Err(e) => {
            // The policy file no longer loads: what is ready now fails transiently.
            while let Some(item) = next_item(&queue, false).await {
                let Some(msg) = super::smtp::take(&services, &item).await else { continue };
                settle(&services, &stats, &attempt, &item, msg, Err(PolicyError::Load(e.to_string()))).await;
            }
            return;
        }
    };
    let tls = services.settings.client_tls.as_ref().map(|t| t.verifying.clone());
    let mut conn = LuaConnection::new(state, constructor, tls);
    // Like an SMTP connection, an idle one waits up to the path's idle_timeout for more work
    // before it closes (and its Lua state, costly to build, is dropped).
    while let Some(first) = next_item(&queue, true).await {
        let (batch_size, min_size, latency) = match &first.config.protocol {
            Protocol::CustomLua { batch_size, min_batch_size, max_batch_latency, .. } => {
                (*batch_size, *min_batch_size, *max_batch_latency)
            }
            _ => (1, 1, Duration::ZERO),
        };
        let parts = queue_name::parse(&first.queue);
        if batch_size <= 1 {
            let Some(msg) = super::smtp::take(&services, &first).await else { continue };
            let (msg, result) = conn.send(&parts, msg).await;
            settle(&services, &stats, &attempt, &first, msg, result).await;
            continue;
        }
        let items = fill_batch(&queue, first, batch_size, min_size, latency).await;
        let mut taken = Vec::with_capacity(items.len());
        for item in items {
            if let Some(msg) = super::smtp::take(&services, &item).await {
                taken.push((item, msg));
            }
        }
        if taken.is_empty() {
            continue;
        }
        let (items, msgs): (Vec<ReadyItem>, Vec<Message>) = taken.into_iter().unzip();
        let (msgs, result) = conn.send_batch(&parts, msgs).await;
        // KumoMTA's rule: the batch's disposition applies to every message in it (each gets its
        // own retry time). A delivered batch is removed in one spool commit.
        if let Ok(text) = &result {
            let records = Records(&services.logger);
            for (item, msg) in items.iter().zip(&msgs) {
                stats.delivered();
                records.delivery(msg, &item.queue, Response::new(200, None, text.clone()), &attempt);
            }
            requeue::remove_all(&services, &msgs).await;
            continue;
        }
        for (item, msg) in items.iter().zip(msgs) {
            settle(&services, &stats, &attempt, item, msg, result.clone()).await;
        }
    }
}

/// Up to `size` items: whatever is ready now, and if fewer than `min` are, waiting up to
/// `latency` for more.
async fn fill_batch(
    queue: &Addr<ReadyQueue>,
    first: ReadyItem,
    size: usize,
    min: usize,
    latency: Duration,
) -> Vec<ReadyItem> {
    let mut items = vec![first];
    let deadline = tokio::time::Instant::now() + latency;
    while items.len() < size {
        let more = take_ready(queue, size - items.len()).await;
        if !more.is_empty() {
            items.extend(more);
            continue;
        }
        if items.len() >= min || tokio::time::Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout_at(deadline, next_item(queue, true)).await {
            Ok(Some(item)) => items.push(item),
            _ => break,
        }
    }
    items
}

/// Log the outcome and remove, retry or keep the message.
async fn settle(
    services: &Services,
    stats: &ReadyQueueStats,
    attempt: &Attempt,
    item: &ReadyItem,
    msg: Message,
    result: Result<String, PolicyError>,
) {
    let records = Records(&services.logger);
    let logged = InsertContext::new(InsertReason::LoggedTransientFailure);
    match result {
        Ok(text) => {
            stats.delivered();
            records.delivery(&msg, &item.queue, Response::new(200, None, text), attempt);
            requeue::remove(services, &msg).await;
        }
        Err(PolicyError::Rejected { code, text }) if (400..500).contains(&code) => {
            stats.transfail();
            let response = Response::new(code, None, text);
            transient(services, msg, &item.queue, &item.config, response, attempt, logged).await;
        }
        Err(PolicyError::Rejected { code, text }) => {
            stats.fail();
            records.bounce(&msg, &item.queue, Response::new(code, None, text), attempt);
            requeue::remove(services, &msg).await;
        }
        Err(e) => {
            stats.transfail();
            let response = internal_error(e);
            transient(services, msg, &item.queue, &item.config, response, attempt, logged).await;
        }
    }
}
