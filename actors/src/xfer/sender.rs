//! Sending one message to a peer (SPEC §4.3, §4.9).

use serde_json::{Value, json};

use super::codec;
use crate::delivery::ReadyItem;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::{RecordType, Response};
use crate::queue::requeue;
use crate::queue::{Attempt, Services};

pub(super) async fn send(
    services: Services,
    client: awc::Client,
    target: String,
    site: String,
    item: ReadyItem,
) {
    let mut msg = match services.spool.load(&item.id) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            return tracing::error!(id = %item.id, error = %e, "cannot load message to transfer; it stays spooled");
        }
    };
    let attempt = Attempt { site: site.clone(), peer: None, protocol: Some("Xfer".into()) };
    let logged = InsertContext::new(InsertReason::LoggedTransientFailure);
    // Ready queues re-check suspension (SPEC §2.4): an xfer queue can be suspended too.
    if let Some(reason) = requeue::suspension_of(&services, &item.queue) {
        return requeue::suspended(&services, msg, &item.queue, &item.config, &reason).await;
    }
    // SPEC §4.3: the receiver dedupes and loop-guards on these.
    msg.set_meta("xfer_prior_id", json!(msg.id.to_string()));
    msg.set_meta("xfer_prior_node", json!(services.node_id.hyphenated().to_string()));
    let url = format!("{target}api/xfer/inject/v1");
    let sent = client
        .post(&url)
        .insert_header(("Content-Type", "application/octet-stream"))
        .insert_header(("Content-Encoding", "gzip"))
        .send_body(codec::encode(&msg))
        .await;
    let outcome = match sent {
        Err(e) => Err(format!("request status {url}: {e}")),
        Ok(mut resp) => {
            let status = resp.status();
            let body = resp
                .body()
                .limit(1 << 20)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let new_id =
                serde_json::from_str::<Value>(&body).ok().and_then(|v| v["id"].as_str().map(str::to_string));
            match (status.as_u16(), new_id) {
                (200, Some(id)) => Ok(id),
                _ => Err(format!(
                    "request status {url}: {}: {}. Response body: {body}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )),
            }
        }
    };
    match outcome {
        Ok(new_id) => {
            let mut r = services.logger.record(RecordType::XferOut, &msg, &item.queue);
            r.site = site;
            r.response = Response::new(250, None, format!("new id is {new_id}"));
            r.delivery_protocol = Some("xfer".into());
            services.logger.log(&r);
            requeue::remove(&services, &msg).await;
        }
        Err(text) => {
            let response =
                Response::new(400, None, format!("KumoMTA internal: error in deliver_message: {text}"));
            // SPEC §4.9: TF, then the requeue path in the xfer queue with increment.
            requeue::transient(&services, msg, &item.queue, &item.config, response, &attempt, logged).await;
        }
    }
}
