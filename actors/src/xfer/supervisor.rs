//! The XferSupervisor receives every message promoted from an xfer queue and owns one XferTarget
//! actor per normalised target URL (SPEC §4.1). A target streams its messages to the peer with
//! bounded concurrency and settles each outcome: `XferOut` and removal, or a TransientFailure
//! and the requeue path.
//!
//! Batching is adaptive: a request takes whatever is ready, up to `batch_size` messages, so a
//! trickle goes one message per request with no added latency and a drain fills its batches.
//! Until a peer has answered a batch, only one request (the probe) is in flight to it. A peer
//! that answers 404/405 to the batch endpoint (not Ferry) gets single-message requests; the
//! batch form is tried again after [`BATCH_RETRY`].
//!
//! A target with nothing ready or in flight for `[xfer] idle_timeout` asks the supervisor to
//! retire it. The supervisor forgets it first and only then tells it to stop, so every message
//! the supervisor routed to it is already in its mailbox ahead of the stop; one that arrived in
//! between is still sent before the actor ends. The next message for that node starts a new one.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::sender::{Peer, Sent};
use crate::delivery::ReadyItem;
use crate::metrics::{OwnedGauge, XferTargetStats};
use crate::model::queue_config::Protocol;
use crate::queue::Services;

/// SPEC §4.1: HTTP timeout per transfer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a peer without the batch endpoint gets single-message requests before a new try.
const BATCH_RETRY: Duration = Duration::from_secs(600);

/// A message promoted from an xfer queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Transfer(pub ReadyItem);

#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachXfer(pub Services);

#[derive(Default)]
pub struct XferSupervisor {
    services: Option<Services>,
    targets: HashMap<String, Addr<XferTarget>>,
    next_worker: usize,
}

impl Actor for XferSupervisor {
    type Context = Context<Self>;
}

impl Handler<AttachXfer> for XferSupervisor {
    type Result = ();
    fn handle(&mut self, AttachXfer(services): AttachXfer, _: &mut Context<Self>) {
        self.services = Some(services);
    }
}

/// From a target that has been idle: may it stop?
#[derive(Message)]
#[rtype(result = "()")]
struct Idle {
    target: String,
    addr: Addr<XferTarget>,
}

/// From the supervisor: you are no longer routed to; stop once nothing is left.
#[derive(Message)]
#[rtype(result = "()")]
struct Retire;

impl Handler<Idle> for XferSupervisor {
    type Result = ();
    fn handle(&mut self, Idle { target, addr }: Idle, _: &mut Context<Self>) {
        if self.targets.get(&target) == Some(&addr) {
            self.targets.remove(&target);
        }
        addr.do_send(Retire);
    }
}

impl Handler<Transfer> for XferSupervisor {
    type Result = ();

    fn handle(&mut self, Transfer(item): Transfer, _: &mut Context<Self>) {
        let Some(services) = self.services.clone() else { return };
        let Protocol::Xfer { target } = &item.config.protocol else { return };
        let addr = match self.targets.get(target).filter(|a| a.connected()) {
            Some(a) => a.clone(),
            None => {
                let worker = services.workers[self.next_worker % services.workers.len()].clone();
                self.next_worker = self.next_worker.wrapping_add(1);
                let (t, q) = (target.clone(), item.queue.clone());
                let addr = XferTarget::start_in_arbiter(&worker, move |_| XferTarget::new(t, &q, services));
                self.targets.insert(target.clone(), addr.clone());
                addr
            }
        };
        addr.do_send(Queued(item));
    }
}

/// One peer node.
pub struct XferTarget {
    target: String,
    site: String,
    services: Services,
    ready: VecDeque<ReadyItem>,
    in_flight: usize,
    /// awc clients are tied to their arbiter; made on first use there.
    client: Option<awc::Client>,
    form: Form,
    ready_gauge: OwnedGauge,
    connection_gauge: OwnedGauge,
    stats: Arc<XferTargetStats>,
    /// When it last had something ready or in flight.
    busy_at: Instant,
    retired: bool,
}

/// What this target is known to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Not yet known: one batch request at a time until it answers.
    Unknown,
    Batch,
    /// The peer lacks the batch endpoint: single-message requests until then.
    SinglesUntil(Instant),
}

impl Actor for XferTarget {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let idle = self.services.xfer_settings.idle_timeout;
        ctx.run_interval((idle / 4).max(Duration::from_millis(100)), move |act, ctx| {
            if !act.retired && act.is_idle() && act.busy_at.elapsed() >= idle {
                let target = act.target.clone();
                act.services.xfer.do_send(Idle { target, addr: ctx.address() });
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        tracing::debug!(target = %self.target, "xfer target retired");
        let m = crate::metrics::metrics();
        if let Ok(mut all) = m.xfer_targets.lock()
            && all.get(&self.target).is_some_and(|s| Arc::ptr_eq(s, &self.stats))
        {
            all.remove(&self.target);
        }
    }
}

impl Handler<Retire> for XferTarget {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        if self.is_idle() {
            ctx.stop();
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Queued(ReadyItem);

impl XferTarget {
    fn new(target: String, queue: &str, services: Services) -> Self {
        let site = format!("unspecified->{queue}@xfer");
        let m = crate::metrics::metrics();
        let service = crate::delivery::service_name(&site);
        let stats = Arc::new(XferTargetStats { site: site.clone(), ..Default::default() });
        if let Ok(mut all) = m.xfer_targets.lock() {
            all.insert(target.clone(), stats.clone());
        }
        XferTarget {
            ready_gauge: OwnedGauge::new(&m.ready, &service),
            connection_gauge: OwnedGauge::new(&m.connections, &service),
            stats,
            target,
            site,
            services,
            ready: VecDeque::new(),
            in_flight: 0,
            client: None,
            form: Form::Unknown,
            busy_at: Instant::now(),
            retired: false,
        }
    }

    fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.in_flight == 0
    }

    fn publish(&self) {
        self.ready_gauge.set(self.ready.len());
        self.connection_gauge.set(self.in_flight);
        self.stats.ready.store(self.ready.len() as i64, Ordering::Relaxed);
        self.stats.in_flight.store(self.in_flight as i64, Ordering::Relaxed);
        if let Ok(mut form) = self.stats.form.lock() {
            *form = match self.form {
                Form::Unknown => "unknown",
                Form::Batch => "batch",
                Form::SinglesUntil(_) => "single",
            };
        }
    }

    fn batching(&mut self) -> bool {
        if let Form::SinglesUntil(t) = self.form
            && Instant::now() >= t
        {
            self.form = Form::Unknown;
        }
        self.services.xfer_settings.batch_size > 1 && !matches!(self.form, Form::SinglesUntil(_))
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        let settings = self.services.xfer_settings.clone();
        while self.in_flight < settings.concurrency && !self.ready.is_empty() {
            let batching = self.batching();
            if batching && self.form == Form::Unknown && self.in_flight > 0 {
                break; // wait for the probe's answer
            }
            self.in_flight += 1;
            let client = self
                .client
                .get_or_insert_with(|| super::http_client(settings.tls.as_ref(), HTTP_TIMEOUT))
                .clone();
            let peer = Peer {
                services: self.services.clone(),
                client,
                target: self.target.clone(),
                site: self.site.clone(),
                stats: self.stats.clone(),
            };
            let done = |act: &mut Self, ctx: &mut Context<Self>| {
                act.in_flight -= 1;
                act.busy_at = Instant::now();
                act.pump(ctx);
                if act.retired && act.is_idle() {
                    ctx.stop();
                }
            };
            if batching {
                let n = settings.batch_size.min(self.ready.len());
                let items: Vec<ReadyItem> = self.ready.drain(..n).collect();
                ctx.spawn(peer.send_batch(items).into_actor(self).map(move |sent, act, ctx| {
                    match sent {
                        Sent::Supported => act.form = Form::Batch,
                        Sent::Unknown => {}
                        Sent::Unsupported(items) => {
                            tracing::info!(target = %act.target, "peer has no batch endpoint; sending one message per request");
                            act.form = Form::SinglesUntil(Instant::now() + BATCH_RETRY);
                            for item in items.into_iter().rev() {
                                act.ready.push_front(item);
                            }
                        }
                    }
                    done(act, ctx);
                }));
            } else {
                let item = self.ready.pop_front().expect("not empty");
                crate::delivery::shrink_after_backlog(&mut self.ready);
                ctx.spawn(peer.send_one(item).into_actor(self).map(move |(), act, ctx| done(act, ctx)));
            }
        }
        self.publish();
    }
}

impl Handler<Queued> for XferTarget {
    type Result = ();
    fn handle(&mut self, Queued(item): Queued, ctx: &mut Context<Self>) {
        self.ready.push_back(item);
        self.busy_at = Instant::now();
        self.pump(ctx);
    }
}
