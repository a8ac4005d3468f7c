//! Egress pools as the delivery layer sees them: resolved from the policy (`get_egress_pool`,
//! then `get_egress_source` for each entry), cached for the shortest of their TTLs, and turned
//! into one source per message by a weighted round robin kept per scheduled queue (KumoMTA keeps
//! it per queue too, and resets it when the queue has been idle a while).
//!
//! Pure state, owned by the delivery manager actor: `choose` answers at once from the cache or
//! holds the message while its pool is being resolved; `resolved` hands held messages back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::delivery::ReadyItem;
use crate::model::egress::{EgressPool, EgressSource, WeightedRoundRobin};
use crate::policy::{Lane, PolicyPool};

/// A failed pool lookup is remembered this long, so a broken policy is not asked per message.
const FAILURE_TTL: Duration = Duration::from_secs(10);
/// A scheduled queue's rotation is forgotten after this long unused.
const ROTATION_IDLE: Duration = Duration::from_secs(600);

/// A pool with its sources looked up, in entry order.
#[derive(Debug)]
pub struct ResolvedPool {
    pub pool: EgressPool,
    pub sources: Vec<Arc<EgressSource>>,
    pub expires: Instant,
}

enum Slot {
    Ready(Arc<ResolvedPool>),
    /// Messages waiting for the lookup in flight.
    Resolving(Vec<ReadyItem>),
    Failed {
        error: String,
        until: Instant,
    },
}

struct Rotation {
    pool: Arc<ResolvedPool>,
    wrr: WeightedRoundRobin,
    used: Instant,
}

/// What to do with a promoted message.
pub enum Chosen {
    /// Send it from this source.
    Source(ReadyItem, Arc<EgressSource>),
    /// Its pool cannot be resolved: a transient failure with this reason.
    Failed(ReadyItem, String),
    /// Held until its pool is resolved; `Some(pool)` when the caller must start that lookup.
    Held(Option<String>),
}

#[derive(Default)]
pub struct EgressPools {
    pools: HashMap<String, Slot>,
    rotations: HashMap<String, Rotation>,
}

impl EgressPools {
    pub fn choose(&mut self, item: ReadyItem, now: Instant) -> Chosen {
        self.choose_eligible(item, now, |_| None)
    }

    /// [`EgressPools::choose`], skipping the sources for which `suspended(source)` says why their
    /// ready queue for this message is suspended (KumoMTA's `suspend-ready-q`): the message goes
    /// out through another source of the pool, or, when none is left, fails transiently with
    /// KumoMTA's "no sources ... are eligible" reason, the suspension appended.
    pub fn choose_eligible(
        &mut self,
        item: ReadyItem,
        now: Instant,
        suspended: impl Fn(&str) -> Option<String>,
    ) -> Chosen {
        // Per message: look up by reference; a name is copied only to start a lookup or explain.
        let config = item.config.clone();
        let name = config.egress_pool.as_str();
        let ready = match self.pools.get_mut(name) {
            Some(Slot::Ready(p)) if p.expires > now => p.clone(),
            Some(Slot::Resolving(held)) => {
                held.push(item);
                return Chosen::Held(None);
            }
            Some(Slot::Failed { error, until }) if *until > now => {
                let why = format!("failed to resolve egress pool {name:?}: {error}");
                return Chosen::Failed(item, why);
            }
            _ => {
                self.pools.insert(name.to_string(), Slot::Resolving(vec![item]));
                return Chosen::Held(Some(name.to_string()));
            }
        };
        if !self.rotations.contains_key(&item.queue) {
            let fresh =
                Rotation { pool: ready.clone(), wrr: WeightedRoundRobin::new(&ready.pool), used: now };
            self.rotations.insert(item.queue.clone(), fresh);
        }
        let rotation = self.rotations.get_mut(&item.queue).expect("inserted above");
        // A refreshed definition (or another pool for this queue) starts a fresh rotation.
        if !Arc::ptr_eq(&rotation.pool, &ready) {
            *rotation =
                Rotation { pool: ready.clone(), wrr: WeightedRoundRobin::new(&ready.pool), used: now };
        }
        rotation.used = now;
        let Some(first) = rotation.wrr.pick() else {
            return Chosen::Failed(item, format!("egress pool {name:?} has no source with a weight above 0"));
        };
        let Some(why) = suspended(&ready.sources[first].name) else {
            return Chosen::Source(item, ready.sources[first].clone());
        };
        // One full cycle of the rotation visits every source with a weight.
        for _ in 1..rotation.wrr.cycle_len() {
            match rotation.wrr.pick() {
                Some(i) if suspended(&ready.sources[i].name).is_none() => {
                    return Chosen::Source(item, ready.sources[i].clone());
                }
                _ => {}
            }
        }
        let why = format!(
            "no sources for {} pool=`{name}` are eligible for selection at this time ({why})",
            item.queue
        );
        Chosen::Failed(item, why)
    }

    /// A lookup finished: cache it and return the messages held for it, to be chosen again.
    pub fn resolved(
        &mut self,
        name: &str,
        result: Result<ResolvedPool, String>,
        now: Instant,
    ) -> Vec<ReadyItem> {
        let slot = match result {
            Ok(pool) => Slot::Ready(Arc::new(pool)),
            Err(error) => {
                tracing::error!(pool = name, %error, "egress pool could not be resolved; its messages are retried later");
                Slot::Failed { error, until: now + FAILURE_TTL }
            }
        };
        match self.pools.insert(name.to_string(), slot) {
            Some(Slot::Resolving(held)) => held,
            _ => Vec::new(),
        }
    }

    /// Forget rotations of queues that have sent nothing for a while.
    pub fn sweep(&mut self, now: Instant) {
        self.rotations.retain(|_, r| now.duration_since(r.used) < ROTATION_IDLE);
    }
}

/// Look a pool and each of its sources up in the policy (one call on the config lane).
pub async fn resolve(policy: &PolicyPool, name: String) -> Result<ResolvedPool, String> {
    let result = policy
        .call(Lane::Config, move |state| {
            let pool = state.get_egress_pool(&name).map_err(|e| e.to_string())?;
            let mut ttl = pool.ttl();
            let mut sources = Vec::with_capacity(pool.entries.len());
            for entry in &pool.entries {
                let source = state
                    .get_egress_source(&entry.name)
                    .map_err(|e| format!("source {:?}: {e}", entry.name))?;
                if source.name != entry.name {
                    return Err(format!(
                        "get_egress_source({:?}) returned a source named {:?}",
                        entry.name, source.name
                    ));
                }
                ttl = ttl.min(source.ttl());
                sources.push(Arc::new(source));
            }
            Ok((pool, sources, ttl))
        })
        .await
        .map_err(|e| e.to_string())?;
    let (pool, sources, ttl) = result?;
    Ok(ResolvedPool { pool, sources, expires: Instant::now() + ttl })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;
    use crate::model::egress::PoolEntry;
    use crate::model::queue_config::QueueConfig;

    fn item(queue: &str, pool: &str) -> ReadyItem {
        let config = QueueConfig { egress_pool: pool.into(), ..QueueConfig::default() };
        ReadyItem { id: MessageId::from_bytes([1; 16]), queue: queue.into(), config: Arc::new(config) }
    }

    fn resolved(weights: &[u32], ttl: Duration, now: Instant) -> ResolvedPool {
        let entries: Vec<PoolEntry> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| PoolEntry { name: format!("ip-{i}"), weight: *w })
            .collect();
        let sources = entries
            .iter()
            .map(|e| Arc::new(EgressSource { name: e.name.clone(), ..EgressSource::unspecified() }))
            .collect();
        ResolvedPool {
            pool: EgressPool { name: "p".into(), entries, ttl: None },
            sources,
            expires: now + ttl,
        }
    }

    fn source(c: Chosen) -> String {
        match c {
            Chosen::Source(_, s) => s.name.clone(),
            Chosen::Failed(_, why) => panic!("failed: {why}"),
            Chosen::Held(_) => panic!("held"),
        }
    }

    #[test]
    fn one_lookup_for_many_messages_then_weighted_rotation_per_queue() {
        let now = Instant::now();
        let mut pools = EgressPools::default();
        assert!(matches!(pools.choose(item("a.example", "p"), now), Chosen::Held(Some(n)) if n == "p"));
        assert!(
            matches!(pools.choose(item("a.example", "p"), now), Chosen::Held(None)),
            "one lookup in flight"
        );
        let held = pools.resolved("p", Ok(resolved(&[3, 1], Duration::from_secs(60), now)), now);
        assert_eq!(held.len(), 2);
        let picks: Vec<String> = held.into_iter().map(|i| source(pools.choose(i, now))).collect();
        assert_eq!(picks, ["ip-0", "ip-0"]);
        assert_eq!(source(pools.choose(item("a.example", "p"), now)), "ip-1");
        // Another scheduled queue on the same pool has its own rotation.
        assert_eq!(source(pools.choose(item("b.example", "p"), now)), "ip-0");
    }

    #[test]
    fn suspended_sources_are_skipped_until_none_is_left() {
        let now = Instant::now();
        let mut pools = EgressPools::default();
        pools.choose(item("q", "p"), now);
        pools.resolved("p", Ok(resolved(&[3, 1], Duration::from_secs(60), now)), now);
        let ip0_suspended =
            |s: &str| (s == "ip-0").then(|| "ready queue ip-0->x is suspended: r".to_string());
        for _ in 0..4 {
            assert_eq!(source(pools.choose_eligible(item("q", "p"), now, ip0_suspended)), "ip-1");
        }
        let all = |s: &str| Some(format!("ready queue {s}->x is suspended: r"));
        match pools.choose_eligible(item("q", "p"), now, all) {
            Chosen::Failed(_, why) => assert!(
                why.starts_with(
                    "no sources for q pool=`p` are eligible for selection at this time (ready queue ip-"
                ),
                "{why}"
            ),
            _ => panic!("every source is suspended"),
        }
    }

    #[test]
    fn expiry_refreshes_and_failures_are_cached_briefly() {
        let now = Instant::now();
        let mut pools = EgressPools::default();
        pools.choose(item("q", "p"), now);
        pools.resolved("p", Ok(resolved(&[1], Duration::from_secs(5), now)), now);
        let later = now + Duration::from_secs(6);
        assert!(
            matches!(pools.choose(item("q", "p"), later), Chosen::Held(Some(_))),
            "expired: looked up again"
        );
        let held = pools.resolved("p", Err("boom".into()), later);
        assert!(
            matches!(pools.choose(held.into_iter().next().unwrap(), later), Chosen::Failed(_, why) if why.contains("boom"))
        );
        let after = later + FAILURE_TTL + Duration::from_secs(1);
        assert!(matches!(pools.choose(item("q", "p"), after), Chosen::Held(Some(_))), "failure forgotten");
    }
}
