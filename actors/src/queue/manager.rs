//! The QueueManager: the registry of scheduled queues. It creates a queue on first use (asking the
//! policy for its config), shares that creation between concurrent inserts, caches a failed
//! creation for `policy.queue_config_retry_interval` (60 s, SPEC §2.1), routes inserts, and reaps
//! idle queues. Spooled messages whose queue config failed at start-up wait in the failed slot and
//! are retried when the cache expires (SPEC §2.9 would leave them until the next start).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::oneshot;

use super::scheduled::{QueueEnumerated, QueueInsert, ScheduledQueue, StopQueue};
use super::services::Services;
use crate::model::Message;
use crate::model::admin::{Criteria, Suspension};
use crate::model::cluster::{Directive, DirectiveKind};
use crate::model::insert_context::InsertContext;
use crate::model::queue_config::QueueConfig;
use crate::model::queue_name::{self, NULL_QUEUE};

/// How long a failed `get_queue_config` is remembered by default (SPEC §2.1).
const FAILURE_TTL: Duration = Duration::from_secs(60);

/// Insert a message into its queue. `reply`, when given, reports whether a queue could be found
/// or created (reception uses it to refuse the message instead of stranding it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Insert {
    pub msg: Message,
    pub ctx: InsertContext,
    /// Check expiry (E2) against the destination queue's config: set when a message is rebound.
    pub check_expiry: bool,
    pub reply: Option<oneshot::Sender<Result<(), String>>>,
}

type InsertReply = oneshot::Sender<Result<(), String>>;

/// Spooled messages found at start-up for one queue, scheduled in one go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InsertEnumerated {
    pub queue: String,
    pub entries: Vec<Waiting>,
    /// Answered once routed (start-up backpressure).
    pub reply: Option<oneshot::Sender<()>>,
}

/// A spooled message as a queue holds it: id, stored due time, and the schedule (for E3).
#[derive(Debug, Clone)]
pub struct Waiting {
    pub id: crate::model::MessageId,
    pub due: Option<chrono::DateTime<Utc>>,
    pub schedule: Option<crate::model::scheduling::Scheduling>,
}

/// Inserts held while a queue is being created.
enum Pending {
    One(Box<Message>, InsertContext, Option<InsertReply>, bool),
    Enumerated(Vec<Waiting>),
}

enum Slot {
    Ready(Addr<ScheduledQueue>),
    Creating(Vec<Pending>),
    /// `stranded`: spooled messages found at start-up that wait for this queue; each is held
    /// here only (never also in a queue or a pending list), so a retry cannot duplicate it.
    Failed {
        error: String,
        until: Instant,
        stranded: Vec<Waiting>,
    },
}

pub struct QueueManager {
    services: Option<Services>,
    queues: HashMap<String, Slot>,
    /// How long a failed creation is cached, and when its stranded messages are retried.
    retry: Duration,
}

impl QueueManager {
    pub fn new() -> Self {
        Self::with_config_retry(FAILURE_TTL)
    }

    /// `policy.queue_config_retry_interval`.
    pub fn with_config_retry(retry: Duration) -> Self {
        Self { services: None, queues: HashMap::new(), retry }
    }

    pub(crate) fn services_handle(&self) -> Services {
        self.services().clone()
    }

    fn services(&self) -> &Services {
        self.services.as_ref().expect("QueueManager is given its services before any insert")
    }
}

impl Default for QueueManager {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor for QueueManager {
    type Context = Context<Self>;
}

/// Wiring: the manager is started before the services it is part of exist.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(pub Services);

impl Handler<Attach> for QueueManager {
    type Result = ();
    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        self.services = Some(msg.0);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Created {
    name: String,
    result: Result<QueueConfig, String>,
}

impl Handler<Insert> for QueueManager {
    type Result = ();

    fn handle(&mut self, Insert { msg, ctx, reply, check_expiry }: Insert, actor_ctx: &mut Context<Self>) {
        let name = match msg.queue_name() {
            Ok(name) => name,
            Err(e) => {
                tracing::error!(id = %msg.id, error = %e, "cannot compute queue name; message stays spooled until restart");
                if let Some(r) = reply {
                    let _ = r.send(Err(format!("cannot compute queue name: {e}")));
                }
                return;
            }
        };
        if name == NULL_QUEUE {
            // SPEC §1.5: a spooled message rebound into `null` is removed silently.
            let services = self.services().clone();
            actix::spawn(async move { super::requeue::remove(&services, &msg).await });
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
            return;
        }
        match self.queues.get_mut(&name) {
            Some(Slot::Ready(addr)) => {
                addr.do_send(QueueInsert { msg, ctx, check_expiry });
                if let Some(r) = reply {
                    let _ = r.send(Ok(()));
                }
            }
            Some(Slot::Creating(pending)) => {
                pending.push(Pending::One(Box::new(msg), ctx, reply, check_expiry))
            }
            Some(Slot::Failed { error, until, .. }) if *until > Instant::now() => {
                let error = error.clone();
                self.creation_failed(&name, msg, ctx, reply, &error);
            }
            _ => {
                self.create(name, Pending::One(Box::new(msg), ctx, reply, check_expiry), actor_ctx);
            }
        }
    }
}

impl QueueManager {
    /// A message whose queue cannot be created: at reception the caller refuses it; otherwise it
    /// stays spooled and is retried after `retry`.
    fn creation_failed(
        &self,
        name: &str,
        msg: Message,
        ctx: InsertContext,
        reply: Option<oneshot::Sender<Result<(), String>>>,
        error: &str,
    ) {
        if let Some(r) = reply {
            let _ = r.send(Err(format!("QueueManager::insert failed: get_queue_config for {name}: {error}")));
            return;
        }
        let retry = self.retry;
        tracing::error!(id = %msg.id, queue = name, error, "queue config failed; retrying the message in {retry:?}");
        let me = self.services().queues.clone();
        actix::spawn(async move {
            tokio::time::sleep(retry).await;
            me.do_send(Insert { msg, ctx, reply: None, check_expiry: false });
        });
    }
}

impl Handler<Created> for QueueManager {
    type Result = ();

    fn handle(&mut self, Created { name, result }: Created, ctx: &mut Context<Self>) {
        let pending = match self.queues.remove(&name) {
            Some(Slot::Creating(pending)) => pending,
            _ => Vec::new(),
        };
        match result {
            Ok(config) => {
                let queue = ScheduledQueue::new(
                    name.clone(),
                    Arc::new(config),
                    self.services().clone(),
                    ctx.address(),
                );
                let addr = queue.start();
                for p in pending {
                    match p {
                        Pending::One(msg, insert_ctx, reply, check_expiry) => {
                            addr.do_send(QueueInsert { msg: *msg, ctx: insert_ctx, check_expiry });
                            if let Some(r) = reply {
                                let _ = r.send(Ok(()));
                            }
                        }
                        Pending::Enumerated(entries) => addr.do_send(QueueEnumerated(entries)),
                    }
                }
                self.queues.insert(name, Slot::Ready(addr));
            }
            Err(error) => {
                tracing::error!(queue = %name, %error, "get_queue_config failed; cached for {:?}", self.retry);
                let mut stranded = Vec::new();
                for p in pending {
                    match p {
                        Pending::One(msg, insert_ctx, reply, _) => {
                            self.creation_failed(&name, *msg, insert_ctx, reply, &error)
                        }
                        Pending::Enumerated(entries) => stranded.extend(entries),
                    }
                }
                let until = Instant::now() + self.retry;
                if !stranded.is_empty() {
                    self.retry_stranded_at(&name, stranded.len(), &error, until, ctx);
                }
                self.queues.insert(name, Slot::Failed { error, until, stranded });
            }
        }
    }
}

impl QueueManager {
    /// Start creating `name`: ask the policy for its config; `first`, and any messages stranded by
    /// an earlier failure, wait for the result.
    fn create(&mut self, name: String, first: Pending, ctx: &mut Context<Self>) {
        let mut pending = vec![first];
        if let Some(Slot::Failed { stranded, .. }) = self.queues.remove(&name)
            && !stranded.is_empty()
        {
            pending.push(Pending::Enumerated(stranded));
        }
        self.queues.insert(name.clone(), Slot::Creating(pending));
        // SPEC §1.5: xfer queues have a built-in config; get_queue_config is never called.
        if crate::model::xfer::is_xfer_queue(&name) {
            let result = crate::model::xfer::target_of_queue(&name)
                .map(|t| QueueConfig::for_xfer(&t))
                .ok_or_else(|| format!("{name} does not name a valid xfer target"));
            ctx.address().do_send(Created { name, result });
            return;
        }
        let policy = self.services().policy.clone();
        let parts = queue_name::parse(&name);
        let me = ctx.address();
        actix::spawn(async move {
            let result = match policy
                .call(crate::policy::Lane::Config, move |state| state.get_queue_config(&parts))
                .await
            {
                Ok(Ok(config)) => Ok(config),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            me.do_send(Created { name, result });
        });
    }
}

impl Handler<InsertEnumerated> for QueueManager {
    type Result = ();

    fn handle(
        &mut self,
        InsertEnumerated { queue, entries, reply }: InsertEnumerated,
        ctx: &mut Context<Self>,
    ) {
        match self.queues.get_mut(&queue) {
            Some(Slot::Ready(addr)) => addr.do_send(QueueEnumerated(entries)),
            Some(Slot::Creating(pending)) => pending.push(Pending::Enumerated(entries)),
            Some(Slot::Failed { error, until, stranded }) if *until > Instant::now() => {
                // The first stranded batch arms the slot's one retry; later ones ride along.
                let (first, until, error) = (stranded.is_empty(), *until, error.clone());
                stranded.extend(entries);
                if first {
                    let count = stranded.len();
                    self.retry_stranded_at(&queue, count, &error, until, ctx);
                }
            }
            _ => self.create(queue, Pending::Enumerated(entries), ctx),
        }
        if let Some(r) = reply {
            let _ = r.send(());
        }
    }
}

/// Time to retry the config of a queue whose failed slot holds stranded spooled messages.
#[derive(Message)]
#[rtype(result = "()")]
struct RetryStranded(String);

impl QueueManager {
    fn retry_stranded_at(
        &self,
        queue: &str,
        count: usize,
        error: &str,
        until: Instant,
        ctx: &mut Context<Self>,
    ) {
        let wait = until.saturating_duration_since(Instant::now());
        tracing::error!(%queue, messages = count, error, "queue config failed; its spooled messages are retried in {wait:?}");
        ctx.notify_later(RetryStranded(queue.to_string()), wait);
    }
}

impl Handler<RetryStranded> for QueueManager {
    type Result = ();

    /// Only a failed slot whose cache has expired is retried: a new arrival may already have
    /// taken the stranded messages into a fresh creation (and a fresh failure arms its own retry).
    fn handle(&mut self, RetryStranded(queue): RetryStranded, ctx: &mut Context<Self>) {
        let entries = match self.queues.get_mut(&queue) {
            Some(Slot::Failed { until, stranded, .. })
                if *until <= Instant::now() && !stranded.is_empty() =>
            {
                std::mem::take(stranded)
            }
            _ => return,
        };
        tracing::info!(%queue, messages = entries.len(), "retrying get_queue_config for spooled messages");
        self.create(queue, Pending::Enumerated(entries), ctx);
    }
}

/// A queue that has been empty for its reap interval asks to be dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ReapMe {
    pub name: String,
    pub addr: Addr<ScheduledQueue>,
}

impl Handler<ReapMe> for QueueManager {
    type Result = ();
    fn handle(&mut self, ReapMe { name, addr }: ReapMe, _: &mut Context<Self>) {
        if matches!(self.queues.get(&name), Some(Slot::Ready(a)) if *a == addr) {
            self.queues.remove(&name);
            // Anything the queue received before this is handed back by StopQueue.
            addr.do_send(StopQueue);
        }
    }
}

/// Messages a ready queue sent back for want of room, by scheduled queue: it has room now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadyHasRoom(pub Vec<(String, crate::model::MessageId)>);

impl Handler<ReadyHasRoom> for QueueManager {
    type Result = ();
    fn handle(&mut self, ReadyHasRoom(returned): ReadyHasRoom, _: &mut Context<Self>) {
        let mut by_queue: HashMap<String, Vec<crate::model::MessageId>> = HashMap::new();
        for (queue, id) in returned {
            by_queue.entry(queue).or_default().push(id);
        }
        for (queue, ids) in by_queue {
            if let Some(Slot::Ready(addr)) = self.queues.get(&queue) {
                addr.do_send(super::scheduled::PromoteReturned(ids));
            }
        }
    }
}

/// Look up a queue's actor (for inspection and admin sweeps).
#[derive(Message)]
#[rtype(result = "Option<Addr<ScheduledQueue>>")]
pub(crate) struct Lookup(pub String);

impl Handler<Lookup> for QueueManager {
    type Result = Option<Addr<ScheduledQueue>>;
    fn handle(&mut self, Lookup(name): Lookup, _: &mut Context<Self>) -> Self::Result {
        match self.queues.get(&name) {
            Some(Slot::Ready(addr)) => Some(addr.clone()),
            _ => None,
        }
    }
}

/// Queues matching admin criteria, captured now (SPEC I3: sweeps see what waits at sweep time).
#[derive(Message)]
#[rtype(result = "Vec<(String, Addr<ScheduledQueue>)>")]
pub struct MatchingQueues(pub Criteria);

impl Handler<MatchingQueues> for QueueManager {
    type Result = MessageResult<MatchingQueues>;
    fn handle(&mut self, MatchingQueues(criteria): MatchingQueues, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.queues
                .iter()
                .filter_map(|(name, slot)| match slot {
                    Slot::Ready(addr) if criteria.matches(name) => Some((name.clone(), addr.clone())),
                    _ => None,
                })
                .collect(),
        )
    }
}

impl Handler<crate::xfer::admin::AdminXfer> for QueueManager {
    type Result = ();
    fn handle(&mut self, req: crate::xfer::admin::AdminXfer, ctx: &mut Context<Self>) {
        let (services, me) = (self.services().clone(), ctx.address());
        actix::spawn(crate::xfer::admin::run(services, me, req));
    }
}

/// `POST /api/admin/suspend/v1`.
#[derive(Message)]
#[rtype(result = "uuid::Uuid")]
pub struct Suspend {
    pub criteria: Criteria,
    pub reason: String,
    pub duration: Duration,
}

impl Handler<Suspend> for QueueManager {
    type Result = MessageResult<Suspend>;
    fn handle(&mut self, msg: Suspend, _: &mut Context<Self>) -> Self::Result {
        let id = uuid::Uuid::new_v4();
        let expires = Utc::now() + chrono::Duration::from_std(msg.duration).unwrap_or(chrono::Duration::MAX);
        let services = self.services();
        let origin = services.origin();
        let suspension = Suspension { id, criteria: msg.criteria, reason: msg.reason, expires, origin };
        add_suspension(services, suspension.clone());
        services.announce(Directive::Suspend(suspension));
        MessageResult(id)
    }
}

/// A suspension made here or by a peer takes effect the same way.
pub(super) fn add_suspension(services: &Services, suspension: Suspension) {
    if let Ok(mut s) = services.suspensions.lock() {
        s.add(suspension);
    }
}

/// Remove a suspension made here or by a peer; true if it existed.
pub(super) fn remove_suspension(services: &Services, id: &uuid::Uuid) -> bool {
    services.suspensions.lock().map(|mut s| s.remove(id)).unwrap_or(false)
}

/// One live suspension as `suspend-list` shows it.
#[derive(Debug, Clone)]
pub struct SuspensionView {
    pub suspension: Suspension,
    pub remaining: Duration,
}

#[derive(Message)]
#[rtype(result = "Vec<SuspensionView>")]
pub struct ListSuspensions;

impl Handler<ListSuspensions> for QueueManager {
    type Result = MessageResult<ListSuspensions>;
    fn handle(&mut self, _: ListSuspensions, _: &mut Context<Self>) -> Self::Result {
        let now = Utc::now();
        let list = match self.services().suspensions.lock() {
            Ok(mut s) => s
                .live(now)
                .iter()
                .map(|s| SuspensionView {
                    suspension: s.clone(),
                    remaining: (s.expires - now).to_std().unwrap_or_default(),
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        MessageResult(list)
    }
}

/// `DELETE /api/admin/suspend/v1`; true if it existed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CancelSuspension(pub uuid::Uuid);

impl Handler<CancelSuspension> for QueueManager {
    type Result = bool;
    fn handle(&mut self, CancelSuspension(id): CancelSuspension, _: &mut Context<Self>) -> bool {
        let removed = remove_suspension(self.services(), &id);
        if removed {
            self.services().announce_cancel((DirectiveKind::Suspend, id));
        }
        removed
    }
}
