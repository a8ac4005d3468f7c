//! Delivery: ready queues ("dispatchers"), one actor per egress source and site, each running up
//! to `connection_limit` connections that pull messages until the queue is empty (SPEC §2.4 step
//! 4). Each promoted message first takes a source from its queue's egress pool (`egress`); ready
//! queues are named like KumoMTA's, `<source>-><site>@smtp_client` for SMTP and
//! `<source>-><queue>@lua:<ctor>` for custom_lua; maildir writes inline and has no dispatcher.

mod admin;
mod client_trace;
pub mod custom_lua;
pub mod maildir;
pub mod mx;
mod outcome;
pub(crate) mod smtp;
pub mod smtp_client;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::egress::ready_queue::{Ready, ReadyQueue, StopIfIdle};
use crate::egress::{Chosen, EgressPools, ResolvedPool};
use crate::model::egress::EgressSource;

use crate::model::MessageId;
use crate::model::queue_config::{MxListEntry, Protocol, QueueConfig};
use crate::model::queue_name;
use crate::queue::Services;

pub use admin::{
    CancelReadyQueueSuspension, InspectReadyQueue, ListReadyQueueSuspensions, QuiesceDelivery,
    ReadyQueueStatesOf, SuspendReadyQueue,
};
pub use outcome::settle;

/// A message promoted to a ready queue.
#[derive(Debug, Clone)]
pub struct ReadyItem {
    pub id: MessageId,
    pub queue: String,
    pub config: Arc<QueueConfig>,
}

/// Where a site's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteKind {
    MxList(Vec<MxListEntry>),
    /// MX lookup of this domain (`domain[:port]`).
    Mx(String),
    Lua {
        constructor: String,
    },
}

/// The site (ready queue name, after `<source>->`) and kind for a queue's config.
pub fn site_for(queue: &str, config: &QueueConfig) -> (String, SiteKind) {
    match &config.protocol {
        Protocol::SmtpList(list) => {
            let labels: Vec<String> = list
                .iter()
                .map(|e| match e {
                    MxListEntry::Name(n) => n.clone(),
                    MxListEntry::Resolved { name, .. } => name.clone(),
                })
                .collect();
            (format!("mx_list:{}@smtp_client", labels.join(",")), SiteKind::MxList(list.clone()))
        }
        Protocol::CustomLua { constructor, .. } => {
            (format!("{queue}@lua:{constructor}"), SiteKind::Lua { constructor: constructor.clone() })
        }
        Protocol::Xfer { .. } => (format!("{queue}@xfer"), SiteKind::Mx(String::new())),
        Protocol::SmtpMx | Protocol::Maildir { .. } => {
            let parts = queue_name::parse(queue);
            let domain = parts.routing_domain.unwrap_or(parts.domain);
            (format!("mx:{domain}@smtp_client"), SiteKind::Mx(domain))
        }
    }
}

/// Registry of dispatchers by ready queue name, and the egress pools that pick their sources.
pub struct DeliveryManager {
    services: Option<Services>,
    sites: HashMap<String, Addr<ReadyQueue>>,
    egress: EgressPools,
    next_worker: usize,
}

impl DeliveryManager {
    pub fn new() -> Self {
        Self { services: None, sites: HashMap::new(), egress: EgressPools::default(), next_worker: 0 }
    }
}

impl Default for DeliveryManager {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor for DeliveryManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(60), |me, _| me.egress.sweep(Instant::now()));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachDelivery(pub Services);

impl Handler<AttachDelivery> for DeliveryManager {
    type Result = ();
    fn handle(&mut self, msg: AttachDelivery, _: &mut Context<Self>) {
        self.services = Some(msg.0);
    }
}

/// Hand a promoted message to its site's dispatcher.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub ReadyItem);

impl Handler<Enqueue> for DeliveryManager {
    type Result = ();

    fn handle(&mut self, Enqueue(item): Enqueue, ctx: &mut Context<Self>) {
        let Some(services) = self.services.clone() else { return };
        let chosen = match services.ready_suspensions.lock() {
            // Sources whose ready queue for this message is suspended are skipped.
            Ok(suspensions) if !suspensions.is_empty() => {
                let (site, _) = site_for(&item.queue, &item.config);
                let now = chrono::Utc::now();
                self.egress.choose_eligible(item, Instant::now(), |source| {
                    let name = format!("{source}->{site}");
                    let s = suspensions.matching(&name, now)?;
                    Some(format!("ready queue {name} is suspended: {}", s.reason))
                })
            }
            _ => self.egress.choose(item, Instant::now()),
        };
        match chosen {
            Chosen::Source(item, source) => self.dispatch(item, source, services, ctx),
            Chosen::Failed(item, why) => {
                actix::spawn(async move { smtp::unroutable(&services, item, why, None).await });
            }
            Chosen::Held(Some(pool)) => {
                let me = ctx.address();
                actix::spawn(async move {
                    let result = crate::egress::pools::resolve(&services.policy, pool.clone()).await;
                    me.do_send(PoolResolved { pool, result });
                });
            }
            Chosen::Held(None) => {}
        }
    }
}

/// A pool lookup finished; the messages held for it are chosen again.
#[derive(Message)]
#[rtype(result = "()")]
struct PoolResolved {
    pool: String,
    result: Result<ResolvedPool, String>,
}

impl Handler<PoolResolved> for DeliveryManager {
    type Result = ();
    fn handle(&mut self, PoolResolved { pool, result }: PoolResolved, ctx: &mut Context<Self>) {
        for item in self.egress.resolved(&pool, result, Instant::now()) {
            ctx.notify(Enqueue(item));
        }
    }
}

impl DeliveryManager {
    /// Hand a message to the ready queue of its source and site, starting it if needed.
    fn dispatch(
        &mut self,
        item: ReadyItem,
        source: Arc<EgressSource>,
        services: Services,
        ctx: &mut Context<Self>,
    ) {
        let (site, kind) = site_for(&item.queue, &item.config);
        let name = format!("{}->{site}", source.name);
        let addr = match self.sites.get(&name).filter(|a| a.connected()) {
            Some(a) => a.clone(),
            None => {
                let workers = services.workers.clone();
                let worker = workers[self.next_worker % workers.len()].clone();
                self.next_worker = self.next_worker.wrapping_add(1);
                let (queue_name, manager, first) = (name.clone(), ctx.address(), item.clone());
                let addr = ReadyQueue::start_in_arbiter(&worker, move |_| {
                    ReadyQueue::new(queue_name, kind, source, &first, services, manager)
                });
                self.sites.insert(name, addr.clone());
                addr
            }
        };
        addr.do_send(Ready(item));
    }
}

/// A ready queue with no connection and nothing ready asks to be dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SiteIdle(pub String, pub Addr<ReadyQueue>);

impl Handler<SiteIdle> for DeliveryManager {
    type Result = ();
    fn handle(&mut self, SiteIdle(site, addr): SiteIdle, _: &mut Context<Self>) {
        if self.sites.get(&site) == Some(&addr) {
            self.sites.remove(&site);
        }
        addr.do_send(StopIfIdle);
    }
}

/// The metrics label of a ready queue: `<protocol>:<ready queue name>` (KumoMTA's `service`).
pub fn service_name(site: &str) -> String {
    let proto = site.rsplit_once('@').map_or("", |(_, p)| p);
    let proto = proto.split(':').next().unwrap_or(proto);
    format!("{proto}:{site}")
}

/// A backlog grows a ready queue to thousands of slots; once it has drained, give most of them
/// back, so that memory follows the queue down instead of keeping its high-water mark.
pub(crate) fn shrink_after_backlog<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > 1024 && queue.len() < queue.capacity() / 8 {
        queue.shrink_to(queue.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_backlog_gives_its_slots_back_and_keeps_its_order() {
        let mut q: VecDeque<u32> = (0..20_000).collect();
        let peak = q.capacity();
        let mut popped = Vec::new();
        while q.len() > 10 {
            popped.push(q.pop_front().unwrap());
            shrink_after_backlog(&mut q);
        }
        assert!(peak >= 20_000 && q.capacity() <= 2048, "capacity {} after a peak of {peak}", q.capacity());
        assert_eq!(popped, (0..19_990).collect::<Vec<_>>());
        assert_eq!(q.into_iter().collect::<Vec<_>>(), (19_990..20_000).collect::<Vec<_>>());
        // A small queue is left alone: no churn in steady state.
        let mut small: VecDeque<u32> = VecDeque::with_capacity(512);
        small.push_back(1);
        shrink_after_backlog(&mut small);
        assert!(small.capacity() >= 512);
    }
}
