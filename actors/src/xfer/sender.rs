//! Sending messages to a peer (SPEC §4.3, §4.9): one message per request (the SPEC form, which
//! any KumoMTA-compatible peer takes), or many per request in Ferry's batch form
//! (docs/xfer-protocol.md), which needs one fsync on each side per batch instead of per message.

use serde_json::{Value, json};

use super::codec;
use crate::delivery::ReadyItem;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::{Message, RecordType, Response};
use crate::queue::requeue;
use crate::queue::{Attempt, Services};

/// What a target actor needs to send.
#[derive(Clone)]
pub(super) struct Peer {
    pub services: Services,
    pub client: awc::Client,
    /// Normalised target URL, ending in `/`.
    pub target: String,
    /// The ready queue name, for log records.
    pub site: String,
    pub stats: std::sync::Arc<crate::metrics::XferTargetStats>,
}

/// What a batch request taught about the peer.
pub(super) enum Sent {
    /// It answered in the batch form.
    Supported,
    /// No answer either way (connection errors, 5xx, …).
    Unknown,
    /// It does not know the batch endpoint (404/405): these were not sent.
    Unsupported(Vec<ReadyItem>),
}

/// One message's result: the peer's id for it, or why it failed.
type Outcome = Result<String, String>;

impl Peer {
    fn post(&self, path: &str, content_type: &str) -> awc::ClientRequest {
        let req = self
            .client
            .post(format!("{}{path}", self.target))
            .insert_header(("Content-Type", content_type))
            .insert_header(("Content-Encoding", "gzip"));
        match &self.services.xfer_settings.token {
            Some(token) => req.insert_header(("Authorization", format!("Bearer {token}"))),
            None => req,
        }
    }

    /// Load the messages to send. Bounced or suspended ones take that path instead (SPEC §2.4:
    /// ready queues re-check; an xfer queue can be suspended or bounced too).
    async fn load(&self, items: Vec<ReadyItem>) -> Vec<(ReadyItem, Message)> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let mut msg = match self.services.spool.load(&item.id) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(id = %item.id, error = %e, "cannot load message to transfer; it stays spooled");
                    continue;
                }
            };
            if let Some(hold) = requeue::hold_of(&self.services, &item.queue) {
                requeue::apply_hold(&self.services, msg, &item.queue, &item.config, hold).await;
                continue;
            }
            // SPEC §4.3: the receiver dedupes and loop-guards on these.
            msg.set_meta("xfer_prior_id", json!(msg.id.to_string()));
            msg.set_meta("xfer_prior_node", json!(self.services.node_id.hyphenated().to_string()));
            out.push((item, msg));
        }
        out
    }

    /// The single-message form.
    pub(super) async fn send_one(self, item: ReadyItem) {
        let Some((item, msg)) = self.load(vec![item]).await.pop() else { return };
        let url = format!("{}api/xfer/inject/v1", self.target);
        let sent =
            self.post("api/xfer/inject/v1", "application/octet-stream").send_body(codec::encode(&msg)).await;
        let outcome = match sent {
            Err(e) => Err(format!("request status {url}: {e}")),
            Ok(mut resp) => {
                let (status, body) = read(&mut resp).await;
                let new_id = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_string));
                match (status.as_u16(), new_id) {
                    (200, Some(id)) => Ok(id),
                    _ => Err(status_text(&url, status, &body)),
                }
            }
        };
        self.settle(vec![(item, msg, outcome)]).await;
    }

    /// The batch form: `items` in requests of at most `batch_bytes` each.
    pub(super) async fn send_batch(self, items: Vec<ReadyItem>) -> Sent {
        let url = format!("{}api/xfer/inject-batch/v1", self.target);
        let limit = self.services.xfer_settings.batch_bytes;
        let mut loaded = self.load(items).await.into_iter().peekable();
        let mut learned = Sent::Unknown;
        while loaded.peek().is_some() {
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            while let Some((_, msg)) = loaded.peek() {
                if !chunk.is_empty() && bytes + msg.data.len() > limit {
                    break;
                }
                bytes += msg.data.len();
                chunk.push(loaded.next().expect("peeked"));
            }
            let body = codec::encode_batch(chunk.iter().map(|(_, m)| m));
            let sent = self.post("api/xfer/inject-batch/v1", codec::BATCH_CONTENT_TYPE).send_body(body).await;
            let outcomes: Vec<Outcome> = match sent {
                Err(e) => vec![Err(format!("request status {url}: {e}")); chunk.len()],
                Ok(mut resp) => {
                    let (status, body) = read(&mut resp).await;
                    if matches!(status.as_u16(), 404 | 405) {
                        let unsent = chunk.into_iter().map(|(i, _)| i).chain(loaded.map(|(i, _)| i));
                        return Sent::Unsupported(unsent.collect());
                    }
                    match batch_results(status.as_u16(), &body, chunk.len()) {
                        Some(per_message) => {
                            learned = Sent::Supported;
                            per_message
                                .into_iter()
                                .map(|r| r.map_err(|(code, error)| status_text_for(&url, code, &error)))
                                .collect()
                        }
                        None => vec![Err(status_text(&url, status, &body)); chunk.len()],
                    }
                }
            };
            let settled = chunk.into_iter().zip(outcomes).map(|((item, msg), o)| (item, msg, o)).collect();
            self.settle(settled).await;
        }
        learned
    }

    /// SPEC §4.9 for each message: `XferOut` and removal (one commit for all), or a
    /// TransientFailure and the requeue path in the xfer queue.
    async fn settle(&self, outcomes: Vec<(ReadyItem, Message, Outcome)>) {
        let services = &self.services;
        let mut transferred = Vec::new();
        let mut failures = Vec::new();
        for (item, msg, outcome) in outcomes {
            match outcome {
                Ok(new_id) => {
                    let mut r = services.logger.record(RecordType::XferOut, &msg, &item.queue);
                    r.site = self.site.clone();
                    r.response = Response::new(250, None, format!("new id is {new_id}"));
                    r.delivery_protocol = Some("xfer".into());
                    // Counted before the record is written: whoever sees the XferOut sees it counted.
                    services.sweeps.transferred(&msg.id);
                    self.stats.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    services.logger.log(&r);
                    transferred.push(msg);
                }
                Err(text) => {
                    services.sweeps.failed(&msg.id, &text);
                    self.stats.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Ok(mut last) = self.stats.last_error.lock() {
                        *last = Some(text.clone());
                    }
                    failures.push((item, msg, text));
                }
            }
        }
        requeue::remove_all(services, &transferred).await;
        let attempt = Attempt {
            site: self.site.clone(),
            peer: None,
            protocol: Some("Xfer".into()),
            egress: None,
            tls: None,
        };
        let failed = failures.into_iter().map(|(item, msg, text)| {
            let attempt = attempt.clone();
            async move {
                let response =
                    Response::new(400, None, format!("KumoMTA internal: error in deliver_message: {text}"));
                let logged = InsertContext::new(InsertReason::LoggedTransientFailure);
                // SPEC §4.9: TF, then the requeue path in the xfer queue with increment.
                requeue::transient(services, msg, &item.queue, &item.config, response, &attempt, logged)
                    .await;
            }
        });
        futures_util::future::join_all(failed).await;
    }
}

async fn read<S>(resp: &mut awc::ClientResponse<S>) -> (awc::http::StatusCode, String)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = resp.body().limit(16 << 20).await.map(|b| String::from_utf8_lossy(&b).into_owned());
    (resp.status(), body.unwrap_or_default())
}

fn status_text(url: &str, status: awc::http::StatusCode, body: &str) -> String {
    format!(
        "request status {url}: {}: {}. Response body: {body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

fn status_text_for(url: &str, code: u16, error: &str) -> String {
    let status =
        awc::http::StatusCode::from_u16(code).unwrap_or(awc::http::StatusCode::INTERNAL_SERVER_ERROR);
    status_text(url, status, &json!({"error": error}).to_string())
}

/// A batch answer: `200 {"results":[{"id":…} | {"status":…,"error":…}, …]}` with one entry per
/// message sent; anything else is None (the whole request failed).
fn batch_results(status: u16, body: &str, expected: usize) -> Option<Vec<Result<String, (u16, String)>>> {
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(body).ok()?;
    let results = v.get("results")?.as_array()?;
    if results.len() != expected {
        return None;
    }
    results
        .iter()
        .map(|r| match (r.get("id").and_then(Value::as_str), r.get("status").and_then(Value::as_u64)) {
            (Some(id), _) => Some(Ok(id.to_string())),
            (None, Some(code)) => Some(Err((
                code as u16,
                r.get("error").and_then(Value::as_str).unwrap_or_default().to_string(),
            ))),
            (None, None) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::batch_results;

    #[test]
    fn batch_answers_are_matched_to_messages_or_refused_whole() {
        let body = r#"{"results":[{"id":"a"},{"status":400,"error":"cannot xfer to myself"}]}"#;
        assert_eq!(
            batch_results(200, body, 2),
            Some(vec![Ok("a".into()), Err((400, "cannot xfer to myself".into()))])
        );
        assert_eq!(batch_results(200, body, 3), None, "a count mismatch fails every message");
        assert_eq!(batch_results(500, body, 2), None);
        assert_eq!(batch_results(200, "not json", 2), None);
        assert_eq!(batch_results(200, r#"{"results":[{},{"id":"b"}]}"#, 2), None);
    }
}
