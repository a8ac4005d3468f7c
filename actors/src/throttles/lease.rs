//! A held connection slot (of every limit the connection counts against). In Redis it is a
//! member of each limit's sorted set, renewed while held and removed on drop; a node that dies
//! stops renewing and its slots expire. Without Redis it is a count in this node's table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use crate::model::connection_lease::{in_acquire_order, limit_key, share};

use super::{LOCAL_LEASES, Shared, connection, on_runtime, redis_store, shared};

/// This process among the cluster's lease holders: new on every start, so a restarted node never
/// renews the slots its previous life left behind.
static INSTANCE: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

pub struct Lease {
    names: Vec<String>,
    held_in: Held,
}

enum Held {
    Local,
    Redis { member: String, keys: Vec<String>, shared: Arc<Shared>, renew: tokio::task::JoinHandle<()> },
}

/// Take a slot of each `(limit name, limit)`, smallest limit first, all or nothing. `Err` names
/// the limit that is full.
pub async fn acquire_leases(limits: Vec<(String, usize)>) -> Result<Lease, String> {
    let limits = in_acquire_order(limits);
    let names: Vec<String> = limits.iter().map(|(n, _)| n.clone()).collect();
    let Some(shared) = shared() else { return acquire_locally(names, &limits) };
    if shared.should_try() {
        let member = format!("{}:{}", *INSTANCE, NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
        let keys: Vec<String> = names.iter().map(|n| limit_key(n)).collect();
        let lease_ms = shared.config.lease.duration.as_millis() as u64;
        let result = match connection(&shared.config.target) {
            Ok(mut conn) => {
                let (keys, member, limits) = (keys.clone(), member.clone(), limits.clone());
                on_runtime(async move {
                    let mut call = redis_store::ACQUIRE.prepare_invoke();
                    call.arg(&member).arg(lease_ms);
                    for (key, (_, limit)) in keys.iter().zip(&limits) {
                        call.key(key).arg(*limit);
                    }
                    call.invoke_async::<i64>(&mut conn).await
                })
                .await
            }
            Err(e) => Err(e),
        };
        shared.note(&result);
        match result {
            Ok(0) => {
                let renew = super::RUNTIME.spawn(renew_forever(shared.clone(), keys.clone(), member.clone()));
                return Ok(Lease { names, held_in: Held::Redis { member, keys, shared, renew } });
            }
            Ok(full) => return Err(names.get(full as usize - 1).cloned().unwrap_or_default()),
            Err(_) => {}
        }
    }
    let nodes = shared.config.node_count;
    let shares: Vec<_> = limits.iter().map(|(n, l)| (n.clone(), share(*l, nodes))).collect();
    acquire_locally(names, &shares)
}

fn acquire_locally(names: Vec<String>, limits: &[(String, usize)]) -> Result<Lease, String> {
    LOCAL_LEASES.lock().unwrap_or_else(|e| e.into_inner()).acquire(limits)?;
    Ok(Lease { names, held_in: Held::Local })
}

async fn renew_forever(shared: Arc<Shared>, keys: Vec<String>, member: String) {
    let lease = shared.config.lease;
    loop {
        tokio::time::sleep(lease.renew_every).await;
        let Ok(mut conn) = connection(&shared.config.target) else { continue };
        let mut call = redis_store::RENEW.prepare_invoke();
        for key in &keys {
            call.key(key);
        }
        call.arg(&member).arg(lease.duration.as_millis() as u64);
        let result = call.invoke_async::<i64>(&mut conn).await;
        shared.note(&result);
        if let Ok(lost) = result
            && lost > 0
        {
            tracing::warn!(
                member,
                lost,
                "connection lease expired before it was renewed (Redis away longer than the lease)"
            );
        }
    }
}

impl Lease {
    /// The limit names this lease holds a slot of.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match &self.held_in {
            Held::Local => LOCAL_LEASES.lock().unwrap_or_else(|e| e.into_inner()).release(&self.names),
            Held::Redis { member, keys, shared, renew } => {
                renew.abort();
                let (member, keys, target) = (member.clone(), keys.clone(), shared.config.target.clone());
                super::RUNTIME.spawn(async move {
                    let Ok(mut conn) = connection(&target) else { return };
                    let mut pipe = redis::pipe();
                    for key in &keys {
                        pipe.zrem(key, &member).ignore();
                    }
                    // Failing here is fine: the slot expires with the lease.
                    let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
                });
            }
        }
    }
}
