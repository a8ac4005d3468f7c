//! One scheduled queue (SPEC §2.3, §2.4). It owns the (due, id) pairs of its waiting messages and
//! a single timer for the earliest one. Promotion hands a message on by message (SPEC I2): to a
//! dispatcher, to an inline maildir write, or to the requeue path when the queue is suspended.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::manager::{Insert, QueueManager, ReapMe};
use super::records::Records;
use super::requeue::{self, Requeue};
use super::services::Services;
use crate::delivery::{self, Enqueue, ReadyItem};
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_config::{Protocol, QueueConfig, RefreshStrategy};
use crate::model::queue_name;
use crate::model::retry;
use crate::model::{Message, MessageId, Response};

/// How often a queue checks whether to refresh its config or be reaped (SPEC §2.1).
const TICK: Duration = Duration::from_secs(10);

pub struct ScheduledQueue {
    name: String,
    config: Arc<QueueConfig>,
    config_fetched: Instant,
    pub(super) services: Services,
    manager: Addr<QueueManager>,
    /// Waiting messages ordered by due time (unix nanos), then id.
    waiting: BTreeSet<(i64, MessageId)>,
    timer: Option<(i64, SpawnHandle)>,
    last_changed: DateTime<Utc>,
    empty_since: Option<Instant>,
    /// `max_message_rate`: the earliest time the next promotion is allowed (GCRA).
    rate_tat: Instant,
    /// Slots already handed to throttled messages; a returning one uses its slot instead of
    /// being throttled again, so a backlog drains at the rate instead of churning.
    rate_reserved: u64,
    /// `scheduled_count{queue}`.
    gauge: crate::metrics::OwnedGauge,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct QueueInsert {
    pub msg: Message,
    pub ctx: InsertContext,
    pub check_expiry: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopQueue;

/// Take every waiting message out of the queue (an admin sweep now owns them, SPEC I2).
#[derive(Message)]
#[rtype(result = "Vec<MessageId>")]
pub struct DrainWaiting;

impl Handler<DrainWaiting> for ScheduledQueue {
    type Result = MessageResult<DrainWaiting>;
    fn handle(&mut self, _: DrainWaiting, ctx: &mut Context<Self>) -> Self::Result {
        let ids = std::mem::take(&mut self.waiting).into_iter().map(|(_, id)| id).collect();
        self.touch();
        self.arm_timer(ctx);
        MessageResult(ids)
    }
}

/// A ready queue that sent these messages back for want of room (`max_ready`) has room again:
/// those still waiting here are promoted now instead of at their estimated due time.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PromoteReturned(pub Vec<MessageId>);

impl Handler<PromoteReturned> for ScheduledQueue {
    type Result = ();
    fn handle(&mut self, PromoteReturned(ids): PromoteReturned, ctx: &mut Context<Self>) {
        let ids: std::collections::HashSet<MessageId> = ids.into_iter().collect();
        let mut found = Vec::new();
        self.waiting.retain(|(_, id)| {
            let returned = ids.contains(id);
            if returned {
                found.push(*id);
            }
            !returned
        });
        if found.is_empty() {
            return;
        }
        for id in found {
            self.promote_id(id, ctx);
        }
        self.touch();
        self.arm_timer(ctx);
    }
}

/// Spooled messages found at start-up (SPEC §2.9): E3, then wait or promote.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct QueueEnumerated(pub Vec<super::manager::Waiting>);

#[derive(Message)]
#[rtype(result = "()")]
struct NewConfig(QueueConfig);

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl ScheduledQueue {
    pub(crate) fn new(
        name: String,
        config: Arc<QueueConfig>,
        services: Services,
        manager: Addr<QueueManager>,
    ) -> Self {
        let gauge = crate::metrics::OwnedGauge::new(&crate::metrics::metrics().scheduled, &name);
        Self {
            gauge,
            name,
            config,
            config_fetched: Instant::now(),
            services,
            manager,
            waiting: BTreeSet::new(),
            timer: None,
            last_changed: Utc::now(),
            empty_since: Some(Instant::now()),
            rate_tat: Instant::now(),
            rate_reserved: 0,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn config(&self) -> &Arc<QueueConfig> {
        &self.config
    }

    pub(crate) fn waiting(&self) -> impl Iterator<Item = (DateTime<Utc>, MessageId)> + '_ {
        self.waiting.iter().map(|(due, id)| (DateTime::from_timestamp_nanos(*due), *id))
    }

    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn last_changed(&self) -> DateTime<Utc> {
        self.last_changed
    }

    /// Keep exactly one timer, for the earliest due message.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(&(first, _)) = self.waiting.first() else {
            if let Some((_, h)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            return;
        };
        if matches!(self.timer, Some((at, _)) if at == first) {
            return;
        }
        if let Some((_, h)) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let wait = Duration::from_nanos((first - nanos(Utc::now())).max(0) as u64);
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.on_due(ctx);
        });
        self.timer = Some((first, handle));
    }

    fn on_due(&mut self, ctx: &mut Context<Self>) {
        let now = nanos(Utc::now());
        while let Some(&(due, id)) = self.waiting.first() {
            if due > now {
                break;
            }
            self.waiting.pop_first();
            self.promote_id(id, ctx);
        }
        self.touch();
        self.arm_timer(ctx);
    }

    fn touch(&mut self) {
        self.gauge.set(self.waiting.len());
        self.last_changed = Utc::now();
        self.empty_since = if self.waiting.is_empty() { Some(Instant::now()) } else { None };
    }

    /// Promotion of a message known only by id: load it first (the body is not needed yet).
    fn promote_id(&mut self, id: MessageId, ctx: &mut Context<Self>) {
        match self.services.spool.load_meta(&id) {
            Ok(Some(meta)) => {
                let msg = Message::from_spool(id, meta, bytes::Bytes::new());
                self.promote(msg, InsertContext::new(InsertReason::DueTimeWasReached), ctx);
            }
            Ok(None) => tracing::debug!(%id, queue = %self.name, "due message is no longer spooled"),
            Err(e) => {
                tracing::error!(%id, queue = %self.name, error = %e, "cannot load due message; it stays spooled")
            }
        }
    }

    /// SPEC §2.4, checks in order.
    fn promote(&mut self, msg: Message, _reason: InsertContext, _ctx: &mut Context<Self>) {
        let services = self.services.clone();
        if let Some(hold) = requeue::hold_of(&services, &self.name) {
            let (queue, config) = (self.name.clone(), self.config.clone());
            actix::spawn(async move { requeue::apply_hold(&services, msg, &queue, &config, hold).await });
            return;
        }
        // Step 3: max_message_rate. Over the rate: back through the requeue path without an
        // increment, due when the rate allows (no TF, so a Delayed record explains it).
        if let Some(rate) = self.config.max_message_rate {
            let now = Instant::now();
            let interval = rate.per / u32::try_from(rate.count).unwrap_or(u32::MAX);
            let returning = self.rate_reserved > 0 && msg.due.is_some_and(|d| d <= Utc::now());
            if returning {
                self.rate_reserved -= 1;
            } else if self.rate_tat > now {
                let retry_after = self.rate_tat - now;
                self.rate_tat += interval;
                self.rate_reserved += 1;
                let req = Requeue {
                    msg,
                    queue: self.name.clone(),
                    config: self.config.clone(),
                    response: Response::new(
                        451,
                        Some("4.4.5"),
                        "KumoMTA internal: max_message_rate exceeded",
                    ),
                    ctx: _reason.with(InsertReason::MessageRateThrottle),
                    increment: false,
                    delay: Some(retry_after),
                };
                actix::spawn(async move { requeue::requeue(&services, req).await });
                return;
            } else {
                self.rate_tat = now + interval;
            }
        }
        match &self.config.protocol {
            Protocol::Xfer { .. } => {
                let item = ReadyItem { id: msg.id, queue: self.name.clone(), config: self.config.clone() };
                services.xfer.do_send(crate::xfer::Transfer(item));
            }
            Protocol::Maildir { .. } => {
                let (queue, config) = (self.name.clone(), self.config.clone());
                actix::spawn(
                    async move { delivery::maildir::deliver(&services, msg, &queue, &config).await },
                );
            }
            _ => {
                let item = ReadyItem { id: msg.id, queue: self.name.clone(), config: self.config.clone() };
                services.delivery.do_send(Enqueue(item));
            }
        }
    }

    fn refresh_config(&mut self, ctx: &mut Context<Self>) {
        if self.config.refresh_strategy != RefreshStrategy::Ttl
            || self.config_fetched.elapsed() < self.config.refresh_interval.0
        {
            return;
        }
        self.config_fetched = Instant::now();
        let parts = queue_name::parse(&self.name);
        let (policy, me, name) = (self.services.policy.clone(), ctx.address(), self.name.clone());
        actix::spawn(async move {
            match policy.call(crate::policy::Lane::Config, move |state| state.get_queue_config(&parts)).await
            {
                Ok(Ok(config)) => me.do_send(NewConfig(config)),
                // SPEC §2.1: a failed refresh keeps the old config.
                Ok(Err(e)) => {
                    tracing::warn!(queue = %name, error = %e, "config refresh failed; keeping the old config")
                }
                Err(_) => {}
            }
        });
    }
}

impl Actor for ScheduledQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| {
            act.refresh_config(ctx);
            let idle = act.empty_since.is_some_and(|t| t.elapsed() >= act.config.reap_interval.0);
            if idle {
                act.manager.do_send(ReapMe { name: act.name.clone(), addr: ctx.address() });
            }
        });
    }
}

impl Handler<QueueInsert> for ScheduledQueue {
    type Result = ();

    /// SPEC §2.3.
    fn handle(
        &mut self,
        QueueInsert { msg, mut ctx, check_expiry }: QueueInsert,
        actor_ctx: &mut Context<Self>,
    ) {
        let now = Utc::now();
        // SPEC §2.3 step 1: an admin bounce takes messages as they arrive.
        if let Some(hold @ requeue::Hold::Bounce { .. }) = requeue::hold_of(&self.services, &self.name) {
            let (services, queue, config) = (self.services.clone(), self.name.clone(), self.config.clone());
            actix::spawn(async move { requeue::apply_hold(&services, msg, &queue, &config, hold).await });
            return;
        }
        // E3: messages loaded from the spool are checked against their stored due time; E2 for
        // messages rebound here from another queue, against this queue's max_age.
        // D9: no expiry check on entry into an xfer queue.
        let check_expiry = check_expiry && !matches!(self.config.protocol, Protocol::Xfer { .. });
        if check_expiry || ctx.is_exactly(InsertReason::Enumerated) {
            let due = msg.due.unwrap_or(now);
            if let Err(retry::Expired(reason)) =
                retry::check_expiry(due, msg.created(), self.config.max_age.0, msg.schedule.as_ref())
            {
                let (services, queue) = (self.services.clone(), self.name.clone());
                actix::spawn(async move { requeue::expire(&services, &msg, &queue, &reason).await });
                return;
            }
        }
        match msg.due {
            Some(due) if due > now => {
                if ctx.is_exactly(InsertReason::Received) && msg.schedule.is_some() {
                    ctx.push(InsertReason::ScheduledForLater);
                }
                // An admin rebind that left a message where it was keeps its due time quietly.
                let quiet = ctx.is_exactly(InsertReason::Enumerated)
                    || ctx.contains(InsertReason::LoggedTransientFailure)
                    || ctx.is_exactly(InsertReason::AdminRebind);
                if !quiet {
                    Records(&self.services.logger).delayed(&msg, &self.name, &ctx, due, now);
                }
                self.waiting.insert((nanos(due), msg.id));
                self.touch();
                self.arm_timer(actor_ctx);
            }
            _ => self.promote(msg, ctx, actor_ctx),
        }
    }
}

impl Handler<QueueEnumerated> for ScheduledQueue {
    type Result = ();

    fn handle(&mut self, QueueEnumerated(entries): QueueEnumerated, ctx: &mut Context<Self>) {
        let now = Utc::now();
        for w in entries {
            let due = w.due.unwrap_or(now);
            if let Err(retry::Expired(reason)) =
                retry::check_expiry(due, w.id.created(), self.config.max_age.0, w.schedule.as_ref())
            {
                let (services, queue) = (self.services.clone(), self.name.clone());
                actix::spawn(async move {
                    if let Ok(Some(msg)) = services.spool.load(&w.id) {
                        requeue::expire(&services, &msg, &queue, &reason).await;
                    }
                });
            } else if due <= now {
                self.promote_id(w.id, ctx);
            } else {
                self.waiting.insert((nanos(due), w.id));
            }
        }
        self.touch();
        self.arm_timer(ctx);
    }
}

impl Handler<NewConfig> for ScheduledQueue {
    type Result = ();
    fn handle(&mut self, NewConfig(config): NewConfig, _: &mut Context<Self>) {
        // Later decisions only; existing due times stay (SPEC §2.1).
        self.config = Arc::new(config);
    }
}

impl Handler<StopQueue> for ScheduledQueue {
    type Result = ();
    fn handle(&mut self, _: StopQueue, ctx: &mut Context<Self>) {
        // Anything that arrived after the reap request goes back through the manager.
        for (_, id) in std::mem::take(&mut self.waiting) {
            if let Ok(Some(meta)) = self.services.spool.load_meta(&id) {
                let msg = Message::from_spool(id, meta, bytes::Bytes::new());
                self.manager.do_send(Insert {
                    msg,
                    ctx: InsertContext::new(InsertReason::Enumerated),
                    reply: None,
                    check_expiry: false,
                });
            }
        }
        ctx.stop();
    }
}
