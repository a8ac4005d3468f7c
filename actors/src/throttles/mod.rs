//! Throttles and connection limits, on this node or shared by a cluster through Redis
//! (KumoMTA's `kumo.make_throttle`, `kumo.configure_redis_throttles`, egress paths'
//! `max_message_rate`, `max_connection_rate`, `additional_message_rate_throttles`,
//! `connection_limit` and `additional_connection_limits`).
//!
//! Local by default. Once `configure_redis_throttles` has run (in `init`), every throttle but a
//! `local:` one is a GCRA evaluated by a script on the Redis server, and connection limits are
//! leases there ([`Lease`]). When Redis cannot be reached the node falls back to its share of
//! each limit (the limit divided by the configured `node_count`), says so once a minute, and goes
//! back to Redis as soon as it answers.

mod lease;
mod redis_store;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use lease::{Lease, acquire_leases};
pub use redis_store::{RUNTIME, RedisTarget, block_on, connection, on_runtime};

use crate::model::connection_lease::{LeaseTiming, LocalLeases, throttle_key};
use crate::model::gcra;
use crate::model::redis_health::{HealthNote, RedisHealth};
use crate::model::throttle_spec::ThrottleSpec;

/// What `configure_redis_throttles` set up.
#[derive(Debug, Clone)]
pub struct SharedConfig {
    pub target: RedisTarget,
    /// Nodes sharing the limits: a node's share while Redis is away is limit / node_count.
    pub node_count: u32,
    pub lease: LeaseTiming,
}

struct Shared {
    config: SharedConfig,
    health: Mutex<RedisHealth>,
}

static SHARED: RwLock<Option<Arc<Shared>>> = RwLock::new(None);
static LOCAL_TATS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);
static LOCAL_LEASES: LazyLock<Mutex<LocalLeases>> = LazyLock::new(Default::default);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Share throttles and connection limits through Redis from now on.
pub fn configure(config: SharedConfig) {
    tracing::info!(redis = %config.target.url, node_count = config.node_count, "throttles and connection limits are shared through Redis");
    let shared = Shared { config, health: Mutex::new(RedisHealth::new(Duration::from_secs(1))) };
    *SHARED.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(shared));
}

pub fn shared_enabled() -> bool {
    SHARED.read().map(|s| s.is_some()).unwrap_or(false)
}

fn shared() -> Option<Arc<Shared>> {
    SHARED.read().ok()?.clone()
}

impl Shared {
    /// Worth asking Redis now (not within a second of a failure).
    fn should_try(&self) -> bool {
        self.health.lock().map(|h| h.should_try(Instant::now())).unwrap_or(true)
    }

    fn note<T>(&self, result: &redis::RedisResult<T>) {
        let Ok(mut health) = self.health.lock() else { return };
        let note = match result {
            Ok(_) => health.succeeded(),
            Err(_) => health.failed(Instant::now()),
        };
        match (note, result) {
            (Some(HealthNote::Down { suppressed }), Err(error)) => tracing::warn!(
                redis = %self.config.target.url, %error, suppressed,
                "Redis unreachable: throttles and connection limits fall back to this node's share (limit / {})",
                self.config.node_count
            ),
            (Some(HealthNote::Recovered), _) => {
                tracing::info!(redis = %self.config.target.url, "Redis is back: throttles and connection limits are shared again")
            }
            _ => {}
        }
    }
}

/// The outcome of one throttle check (KumoMTA's `throttle:throttle()` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleOutcome {
    pub throttled: bool,
    pub limit: u64,
    pub remaining: u64,
    pub reset_after: Duration,
    pub retry_after: Option<Duration>,
}

/// Check and count one cell of every throttle in `list`, all or nothing within each store:
/// `local:` throttles (and all of them when nothing is shared) first, here; then the shared ones
/// in one script call. If the shared ones throttle, the local cells already counted stay counted.
pub async fn throttle(list: &[(String, ThrottleSpec)]) -> ThrottleOutcome {
    let shared = shared();
    let (remote, local): (Vec<_>, Vec<_>) =
        list.iter().partition(|(_, spec)| shared.is_some() && !spec.local);
    let local: Vec<(String, ThrottleSpec)> = local.into_iter().cloned().collect();
    let first_limit = list.first().map_or(0, |(_, s)| s.limit);
    if !local.is_empty() {
        let outcome = throttle_locally(&local);
        if outcome.throttled || remote.is_empty() {
            return outcome;
        }
    }
    let Some(shared) = shared else { return unthrottled(first_limit) };
    if remote.is_empty() {
        return unthrottled(first_limit);
    }
    let remote: Vec<(String, ThrottleSpec)> = remote.into_iter().cloned().collect();
    if shared.should_try() {
        let (conn, keys_args) = (connection(&shared.config.target), remote.clone());
        let result = match conn {
            Ok(mut conn) => {
                on_runtime(async move {
                    let mut call = redis_store::GCRA.prepare_invoke();
                    for (name, spec) in &keys_args {
                        call.key(throttle_key(name))
                            .arg(spec.interval().as_micros() as u64)
                            .arg(spec.burst());
                    }
                    call.invoke_async::<(i64, i64, i64, i64)>(&mut conn).await
                })
                .await
            }
            Err(e) => Err(e),
        };
        shared.note(&result);
        if let Ok((throttled, retry_us, remaining, reset_us)) = result {
            let us = |v: i64| Duration::from_micros(v.max(0) as u64);
            return ThrottleOutcome {
                throttled: throttled != 0,
                limit: remote[0].1.limit,
                remaining: remaining.max(0) as u64,
                reset_after: us(reset_us),
                retry_after: (throttled != 0).then(|| us(retry_us)),
            };
        }
    }
    let nodes = shared.config.node_count;
    let shares: Vec<_> = remote.iter().map(|(name, spec)| (name.clone(), spec.share(nodes))).collect();
    throttle_locally(&shares)
}

fn unthrottled(limit: u64) -> ThrottleOutcome {
    ThrottleOutcome {
        throttled: false,
        limit,
        remaining: limit,
        reset_after: Duration::ZERO,
        retry_after: None,
    }
}

/// `model::gcra::step` over this node's table of throttles, all or nothing.
fn throttle_locally(list: &[(String, ThrottleSpec)]) -> ThrottleOutcome {
    let now = EPOCH.elapsed().as_micros() as u64;
    let mut tats = LOCAL_TATS.lock().unwrap_or_else(|e| e.into_inner());
    let steps: Vec<_> = list
        .iter()
        .map(|(name, spec)| {
            gcra::step(tats.get(name).copied(), now, spec.interval().as_micros() as u64, spec.burst())
        })
        .collect();
    let wait = steps.iter().filter(|s| s.throttled).map(|s| s.retry_after_us).max();
    if wait.is_none() {
        for ((name, _), step) in list.iter().zip(&steps) {
            tats.insert(name.clone(), step.tat);
        }
    }
    let first = steps.first().copied().unwrap_or(gcra::step(None, now, 1, 1));
    ThrottleOutcome {
        throttled: wait.is_some(),
        limit: list.first().map_or(0, |(_, s)| s.limit),
        remaining: if wait.is_some() { 0 } else { first.remaining },
        reset_after: Duration::from_micros(first.reset_after_us),
        retry_after: wait.map(Duration::from_micros),
    }
}
