//! custom_lua connections (SPEC §7.3): each "connection" sends through the policy actor, where the
//! constructor's object lives.

use std::sync::Arc;

use actix::Addr;

use super::outcome::internal_error;
use crate::egress::ready_queue::{ReadyQueue, next_item};
use crate::metrics::ReadyQueueStats;
use crate::model::Response;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_name;
use crate::policy::PolicyError;
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
    while let Some(item) = next_item(&queue, false).await {
        let Some(msg) = super::smtp::take(&services, &item).await else { continue };
        let (ctor, queue) = (constructor.to_string(), item.queue.clone());
        let parts = queue_name::parse(&queue);
        let call = services
            .policy
            .call(crate::policy::Lane::Delivery, move |state| {
                state.custom_lua_send(&ctor, &queue, &parts, msg)
            })
            .await;
        let Ok((msg, result)) = call else {
            tracing::error!(id = %item.id, "policy actor stopped during custom_lua delivery; message stays spooled");
            return;
        };
        let attempt =
            Attempt { site: site.clone(), peer: None, protocol: Some("Lua".into()), egress: None, tls: None };
        let records = Records(&services.logger);
        let logged = InsertContext::new(InsertReason::LoggedTransientFailure);
        match result {
            Ok(text) => {
                stats.delivered();
                records.delivery(&msg, &item.queue, Response::new(200, None, text), &attempt);
                requeue::remove(&services, &msg).await;
            }
            Err(PolicyError::Rejected { code, text }) if (400..500).contains(&code) => {
                stats.transfail();
                let response = Response::new(code, None, text);
                transient(&services, msg, &item.queue, &item.config, response, &attempt, logged).await;
            }
            Err(PolicyError::Rejected { code, text }) => {
                stats.fail();
                records.bounce(&msg, &item.queue, Response::new(code, None, text), &attempt);
                requeue::remove(&services, &msg).await;
            }
            Err(e) => {
                stats.transfail();
                let response = internal_error(e);
                transient(&services, msg, &item.queue, &item.config, response, &attempt, logged).await;
            }
        }
    }
}
