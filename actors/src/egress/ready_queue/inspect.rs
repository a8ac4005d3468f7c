//! What `inspect-ready-q` shows of one ready queue: its identity, the messages waiting in it, its
//! connections, throttles and suspension, and the path config in effect.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::ReadyQueue;
use crate::model::MessageId;
use crate::model::egress_path::EgressPathConfig;
use crate::model::ready_queue_suspension::ReadyQueueSuspension;

#[derive(Debug, Clone)]
pub struct ReadyQueueSnapshot {
    pub name: String,
    pub egress_source: String,
    pub egress_pool: String,
    pub path: Arc<EgressPathConfig>,
    /// False until `get_egress_path_config` has answered (`path` is then the defaults).
    pub path_known: bool,
    /// The messages waiting for a connection, in order: id and scheduled queue.
    pub ready: Vec<(MessageId, String)>,
    pub connections: usize,
    /// Connections waiting (up to `idle_timeout`) for the next message.
    pub idle_connections: usize,
    pub rate_throttled_since: Option<DateTime<Utc>>,
    pub limited_since: Option<DateTime<Utc>>,
    pub suspended: Option<ReadyQueueSuspension>,
}

#[derive(Message)]
#[rtype(result = "ReadyQueueSnapshot")]
pub struct Snapshot;

impl Handler<Snapshot> for ReadyQueue {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ReadyQueueSnapshot {
            name: self.name.clone(),
            egress_source: self.source.name.clone(),
            egress_pool: self.egress_pool.clone(),
            path: self.path.clone(),
            path_known: self.path_known(),
            ready: self.ready.iter().map(|i| (i.id, i.queue.clone())).collect(),
            connections: self.connections,
            idle_connections: self.waiters.iter().filter(|w| !w.is_closed()).count(),
            rate_throttled_since: self.rate_throttled_since,
            limited_since: self.limited_since,
            suspended: self.suspension(),
        })
    }
}

/// The states `GET /api/admin/ready-q-states/v1` reports (kcli queue-summary): since when the
/// queue has been held back by `max_connection_rate`, and by `connection_limit`.
#[derive(Message)]
#[rtype(result = "ReadyQueueStates")]
pub struct States;

#[derive(Debug, Clone)]
pub struct ReadyQueueStates {
    pub name: String,
    pub connection_rate_throttled: Option<(String, DateTime<Utc>)>,
    pub connection_limited: Option<(String, DateTime<Utc>)>,
}

impl Handler<States> for ReadyQueue {
    type Result = MessageResult<States>;
    fn handle(&mut self, _: States, _: &mut Context<Self>) -> Self::Result {
        let rate = self.path.max_connection_rate.map(|r| {
            let unit = match r.per.as_secs() {
                1 => "s",
                60 => "m",
                3600 => "h",
                _ => "d",
            };
            format!("max_connection_rate {}/{unit}", r.count)
        });
        MessageResult(ReadyQueueStates {
            name: self.name.clone(),
            connection_rate_throttled: self
                .rate_throttled_since
                .map(|since| (rate.unwrap_or_else(|| "max_connection_rate".into()), since)),
            connection_limited: self
                .limited_since
                .map(|since| (format!("connection_limit {} reached", self.path.connection_limit), since)),
        })
    }
}
