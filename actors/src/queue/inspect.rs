//! `inspect-sched-q` (SPEC §5): what a scheduled queue holds, as KumoMTA's JSON.

use actix::prelude::*;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::manager::{Lookup, QueueManager};
use super::scheduled::ScheduledQueue;
use crate::model::record::Recipients;

/// Ask for a queue's waiting messages; None when no such queue exists.
#[derive(Message)]
#[rtype(result = "Option<Value>")]
pub struct InspectQueue {
    pub queue_name: String,
    pub want_body: bool,
    /// None: no limit.
    pub limit: Option<usize>,
}

#[derive(Message)]
#[rtype(result = "Value")]
struct Snapshot {
    want_body: bool,
    limit: Option<usize>,
}

impl Handler<InspectQueue> for QueueManager {
    type Result = ResponseFuture<Option<Value>>;

    fn handle(&mut self, msg: InspectQueue, ctx: &mut Context<Self>) -> Self::Result {
        let me = ctx.address();
        Box::pin(async move {
            let queue = me.send(Lookup(msg.queue_name)).await.ok().flatten()?;
            queue.send(Snapshot { want_body: msg.want_body, limit: msg.limit }).await.ok()
        })
    }
}

impl Handler<Snapshot> for ScheduledQueue {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, Snapshot { want_body, limit }: Snapshot, _: &mut Context<Self>) -> Self::Result {
        let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let spool = self.services.spool;
        let total = self.waiting_len();
        let messages: Vec<Value> = self
            .waiting()
            .take(limit.unwrap_or(usize::MAX))
            .filter_map(|(due, id)| {
                let m = if want_body {
                    spool.load(&id).ok().flatten()?
                } else {
                    crate::model::Message::from_spool(
                        id,
                        spool.load_meta(&id).ok().flatten()?,
                        bytes::Bytes::new(),
                    )
                };
                let mut message = json!({
                    "sender": m.sender,
                    "recipient": Recipients::from(m.recipients.as_slice()),
                    "meta": m.meta,
                    "due": ts(due),
                    "num_attempts": m.num_attempts,
                    "scheduling": m.schedule.as_ref().map(|s| s.to_json()),
                });
                if want_body {
                    message["data"] = Value::String(String::from_utf8_lossy(&m.data).into_owned());
                }
                Some(json!({"id": id.to_string(), "message": message}))
            })
            .collect();
        MessageResult(json!({
            "queue_name": self.name(),
            "num_scheduled": total,
            "delayed_metric": total,
            "now": ts(Utc::now()),
            "last_changed": ts(self.last_changed()),
            "queue_config": self.config().to_json(),
            "messages": messages,
        }))
    }
}
