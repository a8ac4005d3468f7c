//! Ready-queue admin (KumoMTA's `suspend-ready-q` and `inspect-ready-q`), answered by the delivery
//! manager because it knows which ready queues are running.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use super::DeliveryManager;
use crate::cluster::{ApplyDirective, CancelDirective};
use crate::egress::ready_queue::{ReadyQueueSnapshot, Recheck, Snapshot};
use crate::model::cluster::{Directive, DirectiveKind};
use crate::model::ready_queue_suspension::ReadyQueueSuspension;

/// `POST /api/admin/suspend-ready-q/v1`.
#[derive(Message)]
#[rtype(result = "uuid::Uuid")]
pub struct SuspendReadyQueue {
    pub name: String,
    pub reason: String,
    pub duration: Duration,
}

impl Handler<SuspendReadyQueue> for DeliveryManager {
    type Result = MessageResult<SuspendReadyQueue>;
    fn handle(&mut self, req: SuspendReadyQueue, _: &mut Context<Self>) -> Self::Result {
        let id = uuid::Uuid::new_v4();
        let expires = Utc::now() + chrono::Duration::from_std(req.duration).unwrap_or(chrono::Duration::MAX);
        if let Some(services) = self.services.clone() {
            let s = ReadyQueueSuspension {
                id,
                name: req.name,
                reason: req.reason,
                expires,
                origin: services.origin(),
            };
            self.add_ready_suspension(s.clone());
            services.announce(Directive::SuspendReadyQ(s));
        }
        MessageResult(id)
    }
}

impl DeliveryManager {
    /// A ready-queue suspension made here or by a peer takes effect the same way.
    fn add_ready_suspension(&self, s: ReadyQueueSuspension) {
        let name = s.name.clone();
        if let Some(services) = &self.services
            && let Ok(mut all) = services.ready_suspensions.lock()
        {
            all.add(s);
        }
        // Messages already waiting there go back at once, as in KumoMTA.
        if let Some(queue) = self.sites.get(&name) {
            queue.do_send(Recheck);
        }
    }

    fn remove_ready_suspension(&self, id: &uuid::Uuid) -> bool {
        let Some(services) = &self.services else { return false };
        services.ready_suspensions.lock().map(|mut all| all.remove(id)).unwrap_or(false)
    }
}

impl Handler<ApplyDirective> for DeliveryManager {
    type Result = ();
    fn handle(&mut self, ApplyDirective(d): ApplyDirective, _: &mut Context<Self>) {
        match d {
            Directive::SuspendReadyQ(s) => self.add_ready_suspension(s),
            other => {
                tracing::warn!(kind = other.kind().as_str(), "cluster: directive sent to the wrong actor")
            }
        }
    }
}

impl Handler<CancelDirective> for DeliveryManager {
    type Result = ();
    fn handle(&mut self, CancelDirective((_, id)): CancelDirective, _: &mut Context<Self>) {
        self.remove_ready_suspension(&id);
    }
}

/// `GET /api/admin/suspend-ready-q/v1`: the live directives.
#[derive(Message)]
#[rtype(result = "Vec<ReadyQueueSuspension>")]
pub struct ListReadyQueueSuspensions;

impl Handler<ListReadyQueueSuspensions> for DeliveryManager {
    type Result = MessageResult<ListReadyQueueSuspensions>;
    fn handle(&mut self, _: ListReadyQueueSuspensions, _: &mut Context<Self>) -> Self::Result {
        let Some(services) = &self.services else { return MessageResult(Vec::new()) };
        let list = services.ready_suspensions.lock().map(|mut all| all.live(Utc::now()).to_vec());
        MessageResult(list.unwrap_or_default())
    }
}

/// `DELETE /api/admin/suspend-ready-q/v1`; true if it existed. Messages held by it were requeued
/// on their scheduled queue's retry schedule and go out at their next attempt.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CancelReadyQueueSuspension(pub uuid::Uuid);

impl Handler<CancelReadyQueueSuspension> for DeliveryManager {
    type Result = bool;
    fn handle(
        &mut self,
        CancelReadyQueueSuspension(id): CancelReadyQueueSuspension,
        _: &mut Context<Self>,
    ) -> bool {
        let removed = self.remove_ready_suspension(&id);
        if removed && let Some(services) = &self.services {
            services.announce_cancel((DirectiveKind::SuspendReadyQ, id));
        }
        removed
    }
}

/// `GET /api/admin/inspect-ready-q/v1`: None when no ready queue of that name is running.
#[derive(Message)]
#[rtype(result = "Option<ReadyQueueSnapshot>")]
pub struct InspectReadyQueue(pub String);

impl Handler<InspectReadyQueue> for DeliveryManager {
    type Result = ResponseFuture<Option<ReadyQueueSnapshot>>;
    fn handle(&mut self, InspectReadyQueue(name): InspectReadyQueue, _: &mut Context<Self>) -> Self::Result {
        let queue = self.sites.get(&name).filter(|a| a.connected()).cloned();
        Box::pin(async move { queue?.send(Snapshot).await.ok() })
    }
}

/// `GET /api/admin/ready-q-states/v1`: the states of the named ready queues (all when empty).
#[derive(Message)]
#[rtype(result = "Vec<crate::egress::ready_queue::ReadyQueueStates>")]
pub struct ReadyQueueStatesOf(pub Vec<String>);

impl Handler<ReadyQueueStatesOf> for DeliveryManager {
    type Result = ResponseFuture<Vec<crate::egress::ready_queue::ReadyQueueStates>>;
    fn handle(
        &mut self,
        ReadyQueueStatesOf(names): ReadyQueueStatesOf,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let queues: Vec<_> = self
            .sites
            .iter()
            .filter(|(name, addr)| addr.connected() && (names.is_empty() || names.contains(name)))
            .map(|(_, addr)| addr.clone())
            .collect();
        Box::pin(async move {
            let asked = queues.iter().map(|q| q.send(crate::egress::ready_queue::States));
            futures_util::future::join_all(asked).await.into_iter().filter_map(Result::ok).collect()
        })
    }
}

/// Shutdown: every ready queue stops sending and answers once its connections have settled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct QuiesceDelivery;

impl Handler<QuiesceDelivery> for DeliveryManager {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: QuiesceDelivery, _: &mut Context<Self>) -> Self::Result {
        let waits: Vec<_> = self
            .sites
            .values()
            .filter(|a| a.connected())
            .map(|addr| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                addr.do_send(crate::egress::ready_queue::Quiesce(tx));
                rx
            })
            .collect();
        Box::pin(async move {
            futures_util::future::join_all(waits).await;
        })
    }
}
