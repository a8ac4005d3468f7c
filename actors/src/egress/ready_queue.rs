//! One ready queue: an egress source sending to one site (`<source>-><site>@<protocol>`). It owns
//! its egress path config (from `get_egress_path_config`, refreshed every `refresh_interval`
//! without dropping connections), the messages ready to go, and up to `connection_limit`
//! connections that pull them. It shapes what leaves: `max_ready` (overflow goes back to its
//! scheduled queue, `ReadyQueueWasFull`), `max_connection_rate` and `max_message_rate` (GCRA),
//! and idle connections wait up to `idle_timeout` for the next message before closing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::delivery::{DeliveryManager, Enqueue, ReadyItem, SiteKind, custom_lua, service_name, smtp};
use crate::metrics::{OwnedGauge, OwnedReadyQueueStats};
use crate::model::connection_lease::connection_limit_name;
use crate::model::drain_rate::DrainRate;
use crate::model::egress::EgressSource;
use crate::model::egress_path::EgressPathConfig;
use crate::model::gcra::Gcra;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::ready_queue_suspension::ReadyQueueSuspension;
use crate::model::throttle_spec::ThrottleSpec;
use crate::model::{MessageId, Response, queue_name};
use crate::policy::Lane;
use crate::queue::Services;
use crate::queue::requeue::{self, Requeue};
use crate::throttles;

mod inspect;
pub use inspect::{ReadyQueueSnapshot, ReadyQueueStates, Snapshot, States};

/// Queued messages per open connection before another one is opened.
const BACKLOG_PER_CONNECTION: usize = 4;
/// Most messages a ready queue remembers having sent back for want of room (beyond it, the
/// oldest wait for their due time).
const MAX_RETURNED: usize = 100_000;
/// A failed path lookup is retried after this long.
const PATH_RETRY: Duration = Duration::from_secs(10);
/// A connection refused a lease (the cluster's slots are all held) asks again after this.
const LEASE_RETRY: Duration = Duration::from_millis(500);

enum PathState {
    /// Not looked up yet, or the lookup failed at `Instant` (retry after PATH_RETRY).
    Missing(Option<Instant>),
    Resolving,
    Ready {
        fetched: Instant,
        refreshing: bool,
    },
}

pub struct ReadyQueue {
    name: String,
    kind: SiteKind,
    source: Arc<EgressSource>,
    /// The pool the source was chosen from (the first message's; inspect-ready-q shows it).
    egress_pool: String,
    /// The routing domain `get_egress_path_config` is asked about (the first queue's).
    routing_domain: String,
    services: Services,
    manager: Addr<DeliveryManager>,
    path: Arc<EgressPathConfig>,
    path_state: PathState,
    ready: VecDeque<ReadyItem>,
    /// Idle connections waiting for a message.
    waiters: VecDeque<oneshot::Sender<ReadyItem>>,
    /// Shutting down: no new sends; each sender is told once every connection has settled.
    stopping: Option<Vec<oneshot::Sender<()>>>,
    connections: usize,
    connection_rate: Option<Gcra>,
    message_rate: Option<Gcra>,
    /// A connection is due to be opened once `max_connection_rate` allows.
    connect_scheduled: bool,
    /// How fast connections take messages (for the overflow delay).
    drain: DrainRate,
    /// Messages sent back to their scheduled queues for want of room (`max_ready`), oldest
    /// first: promoted again as soon as there is room ([`ReadyQueue::note_room`]), their
    /// estimated due time being only the fallback.
    returned: VecDeque<(String, MessageId)>,
    /// Since when `max_connection_rate` has held a connection back (inspect-ready-q).
    rate_throttled_since: Option<DateTime<Utc>>,
    /// Since when every allowed connection has been busy with messages still waiting.
    limited_since: Option<DateTime<Utc>>,
    /// `ready_count{service}` and `connection_count{service}`.
    ready_gauge: OwnedGauge,
    connection_gauge: OwnedGauge,
    /// Source, site, path limits and delivery counters, for `/metrics` and the views.
    stats: OwnedReadyQueueStats,
}

impl ReadyQueue {
    pub fn new(
        name: String,
        kind: SiteKind,
        source: Arc<EgressSource>,
        first: &ReadyItem,
        services: Services,
        manager: Addr<DeliveryManager>,
    ) -> Self {
        let service = service_name(&name);
        let m = crate::metrics::metrics();
        let parts = queue_name::parse(&first.queue);
        ReadyQueue {
            ready_gauge: OwnedGauge::new(&m.ready, &service),
            connection_gauge: OwnedGauge::new(&m.connections, &service),
            stats: OwnedReadyQueueStats::new(&m.ready_queues, &name, &service),
            routing_domain: parts.routing_domain.unwrap_or(parts.domain),
            name,
            kind,
            source,
            egress_pool: first.config.egress_pool.clone(),
            services,
            manager,
            path: Arc::new(EgressPathConfig::default()),
            path_state: PathState::Missing(None),
            ready: VecDeque::new(),
            waiters: VecDeque::new(),
            stopping: None,
            connections: 0,
            connection_rate: None,
            message_rate: None,
            connect_scheduled: false,
            drain: DrainRate::new(Instant::now()),
            returned: VecDeque::new(),
            rate_throttled_since: None,
            limited_since: None,
        }
    }

    fn publish(&mut self) {
        self.ready_gauge.set(self.ready.len());
        self.connection_gauge.set(self.connections);
        let limited = self.connections >= self.path.connection_limit && !self.ready.is_empty();
        match (limited, self.limited_since) {
            (true, None) => self.limited_since = Some(Utc::now()),
            (false, Some(_)) => self.limited_since = None,
            _ => {}
        }
    }

    /// The `suspend-ready-q` directive naming this queue, if one is live.
    fn suspension(&self) -> Option<ReadyQueueSuspension> {
        let all = self.services.ready_suspensions.lock().ok()?;
        all.matching(&self.name, Utc::now()).cloned()
    }

    /// While suspended, nothing waits here: queued messages go back through the delivery manager,
    /// which picks another source of their pool or fails them transiently (KumoMTA reinserts a
    /// suspended ready queue's messages the same way), and idle connections close.
    fn release_if_suspended(&mut self) -> bool {
        if self.suspension().is_none() {
            return false;
        }
        for item in self.ready.drain(..) {
            self.manager.do_send(Enqueue(item));
        }
        self.waiters.clear();
        self.publish();
        true
    }

    /// The site part of the name, as `get_egress_path_config` gets it.
    fn site_name(&self) -> &str {
        self.name.split_once("->").map_or(self.name.as_str(), |(_, site)| site)
    }

    /// Look the path config up (first time, after a failure, or when it is due for a refresh).
    fn ensure_path(&mut self, ctx: &mut Context<Self>) {
        let start = match &mut self.path_state {
            PathState::Missing(None) => true,
            PathState::Missing(Some(failed)) => failed.elapsed() >= PATH_RETRY,
            PathState::Resolving => false,
            PathState::Ready { fetched, refreshing } => {
                let due = !*refreshing && fetched.elapsed() >= self.path.refresh_interval.0;
                if due {
                    *refreshing = true;
                }
                due
            }
        };
        if !start {
            return;
        }
        if matches!(self.path_state, PathState::Missing(_)) {
            self.path_state = PathState::Resolving;
        }
        let (policy, me) = (self.services.policy.clone(), ctx.address());
        let (domain, source, site) =
            (self.routing_domain.clone(), self.source.name.clone(), self.site_name().to_string());
        actix::spawn(async move {
            let result = policy
                .call(Lane::Config, move |state| state.get_egress_path_config(&domain, &source, &site))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            me.do_send(PathResolved(result));
        });
    }

    fn path_known(&self) -> bool {
        matches!(self.path_state, PathState::Ready { .. })
    }

    /// Open a connection if the backlog calls for one and the limits allow it.
    fn maybe_connect(&mut self, ctx: &mut Context<Self>) {
        self.publish();
        if self.ready.is_empty()
            || self.stopping.is_some()
            || self.release_if_suspended()
            || !self.path_known()
            || self.connect_scheduled
        {
            return;
        }
        let limit = self.path.connection_limit;
        // Reuse before fan-out: open another connection only when each one has a backlog (for a
        // batching custom_lua queue, a whole batch: several connections each sending a sliver
        // of what one could send at once cost a request, a Lua call and a commit per sliver).
        let batch = self.ready.front().map_or(1, |item| item.config.protocol.batch_size());
        let per_connection = BACKLOG_PER_CONNECTION.max(batch);
        let wanted = self.connections == 0 || self.ready.len() > self.connections * per_connection;
        if self.connections >= limit || !wanted {
            return;
        }
        // Shared through Redis, the connection rate and the limits are asked for by the
        // connection task; here only the local ones.
        let shared = throttles::shared_enabled();
        if !shared
            && let Some(rate) = self.connection_rate.as_mut()
            && let Err(wait) = rate.acquire(Instant::now())
        {
            self.connect_scheduled = true;
            self.rate_throttled_since.get_or_insert_with(Utc::now);
            ctx.run_later(wait, |me, ctx| {
                me.connect_scheduled = false;
                me.rate_throttled_since = None;
                me.maybe_connect(ctx);
            });
            return;
        }
        let connection_rate = match self.path.max_connection_rate {
            Some(rate) if shared => {
                Some((format!("ferry.connection_rate.{}", self.name), ThrottleSpec::even(rate)))
            }
            _ => None,
        };
        let mut limits: Vec<(String, usize)> =
            self.path.additional_connection_limits.iter().map(|(n, l)| (n.clone(), *l)).collect();
        if shared {
            limits.push((connection_limit_name(&self.name), limit));
        }
        self.connections += 1;
        self.publish();
        let (services, stats, site, kind, source, path, me) = (
            self.services.clone(),
            self.stats.handle(),
            self.name.clone(),
            self.kind.clone(),
            self.source.clone(),
            self.path.clone(),
            ctx.address(),
        );
        actix::spawn(async move {
            if let Some(rate) = connection_rate {
                let outcome = throttles::throttle(&[rate]).await;
                if let Some(wait) = outcome.retry_after.filter(|_| outcome.throttled) {
                    return me.do_send(ConnectDeferred(wait));
                }
            }
            let lease = match limits.is_empty() {
                true => None,
                false => match throttles::acquire_leases(limits).await {
                    Ok(lease) => {
                        // Granted: the queue may want yet another connection for its backlog.
                        me.do_send(Recheck);
                        Some(lease)
                    }
                    Err(_full) => return me.do_send(ConnectDeferred(LEASE_RETRY)),
                },
            };
            match &kind {
                SiteKind::Lua { constructor } => {
                    custom_lua::connection(services, stats, site, constructor, me.clone()).await
                }
                _ => smtp::connection(services, stats, site, kind, source, path, me.clone()).await,
            }
            drop(lease);
            me.do_send(ConnectionClosed);
        });
    }

    /// `max_ready`: a message beyond it goes back to its scheduled queue with no attempt counted,
    /// due again once the queue should have made room (its measured drain rate, jittered; at
    /// most a minute, as KumoMTA's random delay).
    fn overflow(&mut self, item: ReadyItem) {
        if self.returned.len() >= MAX_RETURNED {
            self.returned.pop_front();
        }
        self.returned.push_back((item.queue.clone(), item.id));
        let services = self.services.clone();
        let delay = self.drain.delay_for(self.ready.len(), rand::random());
        actix::spawn(async move {
            let Some(msg) = smtp::take(&services, &item).await else { return };
            let req = Requeue {
                msg,
                queue: item.queue.clone(),
                config: item.config.clone(),
                response: Response::new(
                    451,
                    Some("4.4.5"),
                    "KumoMTA internal: ready queue is full (max_ready)",
                ),
                ctx: InsertContext::new(InsertReason::ReadyQueueWasFull),
                increment: false,
                delay: Some(delay),
            };
            requeue::requeue(&services, req).await;
        });
    }

    /// `n` messages went to connections (from the queue or straight to a waiting one): the
    /// drain rate counts them, and there may be room for what was sent back.
    fn taken(&mut self, n: usize) {
        if n > 0 {
            self.drain.note_taken(Instant::now(), n as u64);
            self.note_room();
        }
    }

    /// If the queue is down to half of `max_ready`, the messages it sent back are asked for
    /// again, as many as fit. (Their due time was an estimate from the drain rate; a connection
    /// stall while it was measured could make it a minute.)
    fn note_room(&mut self) {
        if self.returned.is_empty() || !self.path_known() {
            return;
        }
        let max = self.path.max_ready;
        if self.ready.len() > max / 2 {
            return;
        }
        let n = (max - self.ready.len()).min(self.returned.len());
        let batch: Vec<(String, MessageId)> = self.returned.drain(..n).collect();
        self.services.queues.do_send(crate::queue::ReadyHasRoom(batch));
    }

    /// Give a message to an idle connection, if one is waiting; otherwise hand it back.
    fn hand_to_waiter(&mut self, mut item: ReadyItem) -> Option<ReadyItem> {
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.send(item) {
                Ok(()) => {
                    // Taken as surely as through `Next`.
                    self.taken(1);
                    return None;
                }
                // That connection stopped waiting (idle_timeout): try the next one.
                Err(back) => item = back,
            }
        }
        Some(item)
    }
}

impl Actor for ReadyQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.ensure_path(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Ready(pub ReadyItem);

impl Handler<Ready> for ReadyQueue {
    type Result = ();
    fn handle(&mut self, Ready(item): Ready, ctx: &mut Context<Self>) {
        if self.suspension().is_some() {
            // Suspended after the manager chose this queue: it chooses again.
            return self.manager.do_send(Enqueue(item));
        }
        self.ensure_path(ctx);
        let Some(item) = self.hand_to_waiter(item) else { return };
        if self.path_known() && self.ready.len() >= self.path.max_ready {
            return self.overflow(item);
        }
        self.ready.push_back(item);
        self.maybe_connect(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct PathResolved(Result<EgressPathConfig, String>);

impl Handler<PathResolved> for ReadyQueue {
    type Result = ();
    fn handle(&mut self, PathResolved(result): PathResolved, ctx: &mut Context<Self>) {
        let path = match result {
            Ok(path) => path,
            Err(error) if self.path_known() => {
                tracing::error!(ready_queue = %self.name, %error, "get_egress_path_config refresh failed; keeping the previous config");
                self.path_state = PathState::Ready { fetched: Instant::now(), refreshing: false };
                return;
            }
            Err(error) => {
                tracing::error!(ready_queue = %self.name, %error, "get_egress_path_config failed; its messages are retried later");
                self.path_state = PathState::Missing(Some(Instant::now()));
                let why = format!("failed to resolve egress path config: {error}");
                for item in self.ready.drain(..) {
                    let (services, why, stats) = (self.services.clone(), why.clone(), self.stats.handle());
                    actix::spawn(async move { smtp::unroutable(&services, item, why, Some(&stats)).await });
                }
                self.publish();
                return;
            }
        };
        // A changed limit applies to the running queue; open connections are kept.
        self.connection_rate = match (path.max_connection_rate, self.connection_rate.take()) {
            (Some(rate), Some(mut g)) => {
                g.set_rate(rate);
                Some(g)
            }
            (Some(rate), None) => Some(Gcra::new(rate)),
            (None, _) => None,
        };
        self.message_rate = match (path.max_message_rate, self.message_rate.take()) {
            (Some(rate), Some(mut g)) => {
                g.set_rate(rate);
                Some(g)
            }
            (Some(rate), None) => Some(Gcra::new(rate)),
            (None, _) => None,
        };
        self.stats.set_limits(&path);
        self.path = Arc::new(path);
        self.path_state = PathState::Ready { fetched: Instant::now(), refreshing: false };
        while self.ready.len() > self.path.max_ready {
            if let Some(item) = self.ready.pop_back() {
                self.overflow(item);
            }
        }
        self.maybe_connect(ctx);
    }
}

/// What a connection gets when it asks for work.
pub enum Work {
    Item(ReadyItem),
    /// Nothing now: wait up to the duration for a message handed over directly.
    Wait(oneshot::Receiver<ReadyItem>, Duration),
    Done,
}

/// A connection asks for its next message; `wait` = it can idle for one.
#[derive(Message)]
#[rtype(result = "Work")]
pub struct Next {
    pub wait: bool,
}

impl Handler<Next> for ReadyQueue {
    type Result = MessageResult<Next>;
    fn handle(&mut self, Next { wait }: Next, _: &mut Context<Self>) -> Self::Result {
        if self.stopping.is_some() || self.release_if_suspended() {
            return MessageResult(Work::Done);
        }
        let next = self.ready.pop_front();
        self.taken(usize::from(next.is_some()));
        crate::delivery::shrink_after_backlog(&mut self.ready);
        self.publish();
        MessageResult(match next {
            Some(item) => Work::Item(item),
            None if wait => {
                let (tx, rx) = oneshot::channel();
                self.waiters.push_back(tx);
                Work::Wait(rx, self.path.idle())
            }
            None => Work::Done,
        })
    }
}

/// A batching connection takes up to `max` more messages that are ready now (none: the queue is
/// empty, stopping or suspended), in one round trip rather than one per message.
#[derive(Message)]
#[rtype(result = "Vec<ReadyItem>")]
pub struct TakeReady {
    pub max: usize,
}

impl Handler<TakeReady> for ReadyQueue {
    type Result = MessageResult<TakeReady>;
    fn handle(&mut self, TakeReady { max }: TakeReady, _: &mut Context<Self>) -> Self::Result {
        if self.stopping.is_some() || self.release_if_suspended() || self.ready.is_empty() {
            return MessageResult(Vec::new());
        }
        let n = max.min(self.ready.len());
        let items: Vec<ReadyItem> = self.ready.drain(..n).collect();
        self.taken(n);
        crate::delivery::shrink_after_backlog(&mut self.ready);
        self.publish();
        MessageResult(items)
    }
}

/// Up to `max` messages ready now ([`TakeReady`]).
pub async fn take_ready(queue: &Addr<ReadyQueue>, max: usize) -> Vec<ReadyItem> {
    queue.send(TakeReady { max }).await.unwrap_or_default()
}

/// The next message for a connection, waiting up to the path's `idle_timeout` when `wait`.
pub async fn next_item(queue: &Addr<ReadyQueue>, wait: bool) -> Option<ReadyItem> {
    match queue.send(Next { wait }).await.ok()? {
        Work::Item(item) => Some(item),
        Work::Wait(mut rx, idle) => match tokio::time::timeout(idle, &mut rx).await {
            Ok(handed) => handed.ok(),
            // A message handed over just as the wait ended is still ours; closing first makes any
            // later hand-over fail, so the ready queue keeps that message.
            Err(_) => {
                rx.close();
                rx.try_recv().ok()
            }
        },
        Work::Done => None,
    }
}

/// A connection task could not start (the shared connection rate or a limit said no): the
/// slot it reserved is free again and the queue tries once more after the wait.
#[derive(Message)]
#[rtype(result = "()")]
struct ConnectDeferred(Duration);

impl Handler<ConnectDeferred> for ReadyQueue {
    type Result = ();
    fn handle(&mut self, ConnectDeferred(wait): ConnectDeferred, ctx: &mut Context<Self>) {
        self.connections = self.connections.saturating_sub(1);
        self.publish();
        if self.connect_scheduled {
            return;
        }
        self.connect_scheduled = true;
        self.rate_throttled_since.get_or_insert_with(Utc::now);
        ctx.run_later(wait, |me, ctx| {
            me.connect_scheduled = false;
            me.rate_throttled_since = None;
            me.maybe_connect(ctx);
        });
    }
}

/// May a message be sent now (`max_message_rate`, `additional_message_rate_throttles`)?
pub enum SendPermit {
    Go,
    Wait(Duration),
    /// Ask these throttles (shared through Redis, or cutting across paths).
    Ask(Arc<Vec<(String, ThrottleSpec)>>),
}

#[derive(Message)]
#[rtype(result = "SendPermit")]
pub struct AcquireSend;

impl Handler<AcquireSend> for ReadyQueue {
    type Result = MessageResult<AcquireSend>;
    fn handle(&mut self, _: AcquireSend, _: &mut Context<Self>) -> Self::Result {
        let shared = throttles::shared_enabled();
        if !shared
            && let Some(rate) = self.message_rate.as_mut()
            && let Err(wait) = rate.acquire(Instant::now())
        {
            return MessageResult(SendPermit::Wait(wait));
        }
        let mut ask: Vec<(String, ThrottleSpec)> = Vec::new();
        if shared && let Some(rate) = self.path.max_message_rate {
            ask.push((format!("ferry.message_rate.{}", self.name), ThrottleSpec::even(rate)));
        }
        ask.extend(self.path.additional_message_rate_throttles.iter().map(|(n, s)| (n.clone(), *s)));
        MessageResult(if ask.is_empty() { SendPermit::Go } else { SendPermit::Ask(Arc::new(ask)) })
    }
}

/// Wait until the path's message rates let one more message go.
pub async fn throttle_send(queue: &Addr<ReadyQueue>) {
    loop {
        match queue.send(AcquireSend).await {
            Ok(SendPermit::Wait(wait)) => tokio::time::sleep(wait).await,
            Ok(SendPermit::Ask(list)) => {
                // Only these are asked again: the local rate already let this message through.
                loop {
                    let outcome = throttles::throttle(&list).await;
                    match outcome.retry_after.filter(|_| outcome.throttled) {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => return,
                    }
                }
            }
            Ok(SendPermit::Go) | Err(_) => return,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectionClosed;

impl Handler<ConnectionClosed> for ReadyQueue {
    type Result = ();
    fn handle(&mut self, _: ConnectionClosed, ctx: &mut Context<Self>) {
        self.connections = self.connections.saturating_sub(1);
        self.publish();
        if self.connections == 0
            && let Some(waiting) = self.stopping.take()
        {
            for done in waiting {
                let _ = done.send(());
            }
            self.stopping = Some(Vec::new());
            return;
        }
        if self.connections == 0 && self.ready.is_empty() {
            self.manager.do_send(crate::delivery::SiteIdle(self.name.clone(), ctx.address()));
        }
        // Items that arrived while the last connection was finishing (it had already taken its
        // last message, or failed and drained the queue) still need one.
        self.maybe_connect(ctx);
    }
}

/// A `suspend-ready-q` directive was added: release what waits here if it names this queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Recheck;

impl Handler<Recheck> for ReadyQueue {
    type Result = ();
    fn handle(&mut self, _: Recheck, ctx: &mut Context<Self>) {
        if !self.release_if_suspended() {
            self.maybe_connect(ctx);
        }
    }
}

/// Take every queued item (a site-wide failure settles them all at once).
#[derive(Message)]
#[rtype(result = "Vec<ReadyItem>")]
pub struct DrainAll;

impl Handler<DrainAll> for ReadyQueue {
    type Result = MessageResult<DrainAll>;
    fn handle(&mut self, _: DrainAll, _: &mut Context<Self>) -> Self::Result {
        let all = self.ready.drain(..).collect();
        self.publish();
        MessageResult(all)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StopIfIdle;

impl Handler<StopIfIdle> for ReadyQueue {
    type Result = ();
    fn handle(&mut self, _: StopIfIdle, ctx: &mut Context<Self>) {
        // Items that raced in after the idle report go back through the manager.
        for item in self.ready.drain(..) {
            self.manager.do_send(Enqueue(item));
        }
        if self.connections == 0 {
            ctx.stop();
        }
    }
}

/// Shutdown: start nothing new, let each connection finish the message it has (so its outcome,
/// and the spool removal of a delivered message, are saved), then answer. What is still ready
/// stays spooled, due, for the next start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Quiesce(pub oneshot::Sender<()>);

impl Handler<Quiesce> for ReadyQueue {
    type Result = ();
    fn handle(&mut self, Quiesce(done): Quiesce, _: &mut Context<Self>) {
        // Idle connections see their wait end and close.
        self.waiters.clear();
        if self.connections == 0 {
            let _ = done.send(());
            self.stopping.get_or_insert_with(Vec::new);
        } else {
            self.stopping.get_or_insert_with(Vec::new).push(done);
        }
    }
}
