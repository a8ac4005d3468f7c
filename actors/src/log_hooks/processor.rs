//! Turns hooked records into messages: each batch of records waiting is offered to
//! `should_enqueue_log_record` in one policy job, the kept messages are spooled in one commit and
//! handed to their queues, and then the batch is marked done (which releases [`super::barrier`]).

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use serde_json::Value;

use super::{LOG_RECORD_PROTOCOL, Offered};
use crate::logging::segment_writer::LogWriterHandle;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::record::Recipients;
use crate::model::{Message, MessageIdGenerator};
use crate::policy::{Lane, PolicyError, PolicyPool};
use crate::queue::{Insert, QueueManager};
use crate::spool::{SpoolError, SpoolOp, SpoolWriter};

/// Records turned into messages per policy job and spool commit.
const BATCH: usize = 512;
/// How long a batch keeps trying a full spool before its events are dropped (see below).
const FULL_SPOOL_PATIENCE: Duration = Duration::from_secs(10);

pub struct Handles {
    pub policy: PolicyPool,
    /// The log file writer: a batch's records are in the log before their hook messages are
    /// spooled, so no event outlives (a kill -9 of) the record it reports.
    pub log: LogWriterHandle,
    pub writer: SpoolWriter,
    pub queues: Addr<QueueManager>,
    pub ids: Arc<MessageIdGenerator>,
}

/// Run until the node stops. Does nothing if the receiver was already taken.
pub async fn run(handles: Handles) {
    let Some(mut rx) = super::take_receiver() else { return };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let last = batch.last().map(|o: &Offered| o.seq).unwrap_or(0);
        let messages: Vec<(Message, String)> =
            batch.drain(..).map(|o| (hook_message(&handles.ids, o.record), o.hook.name.clone())).collect();
        let kept = match enqueue_decisions(&handles.policy, messages).await {
            Some(kept) => kept,
            None => return,
        };
        if !kept.is_empty() {
            handles.log.flushed().await;
        }
        spool(&handles.writer, &kept).await;
        for (msg, _) in kept {
            handles.queues.do_send(Insert {
                msg,
                ctx: InsertContext::new(InsertReason::Received),
                check_expiry: false,
                reply: None,
            });
        }
        super::mark_done(last);
    }
}

/// KumoMTA's log message: sender and recipient of the original, the record as the body (JSON),
/// `reception_protocol = "LogRecord"`. Its `log_record` meta is read from the body when the
/// policy asks for it ([`Message::meta_value`]), so the record is stored once.
fn hook_message(ids: &MessageIdGenerator, record: crate::model::LogRecord) -> Message {
    let body = serde_json::to_vec(&record).unwrap_or_default();
    let recipients = match record.recipient {
        Recipients::One(r) => vec![r],
        Recipients::Many(list) => list,
    };
    let mut msg = Message::new(ids.generate(), record.sender, recipients, Bytes::from(body));
    msg.set_meta("reception_protocol", Value::String(LOG_RECORD_PROTOCOL.into()));
    msg
}

/// Run `should_enqueue_log_record(msg, hook_name)` for each; keep the ones it answers true for,
/// with their queue names. None: the policy pool has stopped.
async fn enqueue_decisions(
    policy: &PolicyPool,
    messages: Vec<(Message, String)>,
) -> Option<Vec<(Message, String)>> {
    if !policy.has_handler("should_enqueue_log_record") {
        // Nothing routes them: a hook with no handler is a configuration mistake, said once.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "log hook configured but no should_enqueue_log_record handler; its records are dropped"
            )
        });
        return Some(Vec::new());
    }
    let decided = policy
        .call(Lane::Delivery, move |state| {
            let mut kept = Vec::new();
            for (msg, hook) in messages {
                let id = msg.id;
                let (msg, result) = state.run_chain_returning("should_enqueue_log_record", msg, |lua| {
                    Ok(mlua::MultiValue::from_iter([mlua::Value::String(lua.create_string(&hook)?)]))
                });
                match result {
                    Ok(Some(mlua::Value::Boolean(true))) => match msg.queue_name() {
                        Ok(queue) if queue != crate::model::queue_name::NULL_QUEUE => kept.push((msg, queue)),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(%id, error = %e, "log hook message has no queue name; dropped")
                        }
                    },
                    Ok(_) => {}
                    Err(e) => log_policy_error(&id.to_string(), &e),
                }
            }
            kept
        })
        .await;
    decided.ok()
}

fn log_policy_error(id: &str, e: &PolicyError) {
    tracing::error!(id, error = %e, "should_enqueue_log_record failed; the log record is not enqueued");
}

/// One commit for the batch. A spool error is retried; a spool that stays full is not waited on
/// for ever: removals of delivered mail (which free it) wait on this batch, so its events are
/// dropped, loudly, rather than stopping every delivery of the node.
async fn spool(writer: &SpoolWriter, kept: &[(Message, String)]) {
    if kept.is_empty() {
        return;
    }
    let ops = || -> Vec<SpoolOp> { kept.iter().map(|(m, _)| SpoolOp::put(m)).collect() };
    let started = tokio::time::Instant::now();
    loop {
        match writer.commit(ops()).await {
            Ok(()) => return,
            Err(SpoolError::WriterStopped) => return,
            Err(SpoolError::Full) if started.elapsed() > FULL_SPOOL_PATIENCE => {
                tracing::error!(events = kept.len(), "spool full: log hook events dropped");
                return;
            }
            Err(e) => {
                tracing::warn!(events = kept.len(), error = %e, "log hook messages not spooled yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogRecord;

    #[test]
    fn a_hook_message_keeps_its_record_once_and_offers_it_as_meta() {
        let ids = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        let record: LogRecord = serde_json::from_value(serde_json::json!({
            "type": "Delivery", "id": "abc", "sender": "s@example.com", "recipient": "r@example.com",
            "queue": "example.com", "site": "", "size": 10,
            "response": {"code": 250, "enhanced_code": null, "content": "ok", "command": null},
            "timestamp": 1, "event_time": "2026-12-02T00:00:00Z", "created": 1,
            "created_time": "2026-12-02T00:00:00Z", "num_attempts": 1, "bounce_classification": "Uncategorized",
            "meta": {"tenant": "acme"}, "headers": {}, "nodeid": "n",
        }))
        .unwrap();
        let msg = hook_message(&ids, record.clone());
        let spooled = serde_json::to_value(msg.spool_meta()).unwrap();
        assert!(spooled["meta"].get("log_record").is_none(), "not stored twice: {spooled}");
        assert_eq!(msg.get_meta("reception_protocol"), Some(&Value::String("LogRecord".into())));
        let body: Value = serde_json::from_slice(&msg.data).unwrap();
        assert_eq!(body, serde_json::to_value(&record).unwrap());
        assert_eq!(msg.meta_value("log_record").as_deref(), Some(&body));
        assert_eq!(msg.recipients, ["r@example.com"]);
        // Any other message has no such meta.
        let plain = Message::new(ids.generate(), "s@x".into(), vec!["r@x".into()], Bytes::from_static(b"{}"));
        assert!(plain.meta_value("log_record").is_none());
    }
}
