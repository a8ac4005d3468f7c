//! The XferSupervisor receives every message promoted from an xfer queue and owns one XferTarget
//! actor per normalised target URL (SPEC §4.1). A target streams its messages to the peer with
//! bounded concurrency and settles each outcome: `XferOut` and removal, or a TransientFailure
//! and the requeue path.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix::prelude::*;

use super::sender;
use crate::delivery::ReadyItem;
use crate::model::queue_config::Protocol;
use crate::queue::Services;

/// Transfers in flight per target (SPEC §4.1: ≤ 32).
const CONCURRENCY: usize = 32;
/// SPEC §4.1: HTTP timeout per transfer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(300);

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
                let addr = XferTarget::start_in_arbiter(&worker, move |_| XferTarget {
                    target: t,
                    site: format!("unspecified->{q}@xfer"),
                    services,
                    ready: VecDeque::new(),
                    in_flight: 0,
                    client: None,
                });
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
}

impl Actor for XferTarget {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Queued(ReadyItem);

impl XferTarget {
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < CONCURRENCY {
            let Some(item) = self.ready.pop_front() else { break };
            self.in_flight += 1;
            let client = self
                .client
                .get_or_insert_with(|| {
                    awc::Client::builder().timeout(HTTP_TIMEOUT).disable_redirects().finish()
                })
                .clone();
            let fut =
                sender::send(self.services.clone(), client, self.target.clone(), self.site.clone(), item);
            ctx.spawn(fut.into_actor(self).map(|(), act, ctx| {
                act.in_flight -= 1;
                act.pump(ctx);
            }));
        }
    }
}

impl Handler<Queued> for XferTarget {
    type Result = ();
    fn handle(&mut self, Queued(item): Queued, ctx: &mut Context<Self>) {
        self.ready.push_back(item);
        self.pump(ctx);
    }
}
