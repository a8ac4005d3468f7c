//! The Redis side: one process-wide tokio runtime for Redis I/O (policy threads are plain OS
//! threads and block on it; async callers just await), one multiplexed `ConnectionManager` per
//! URL (it reconnects by itself), and the server-side scripts for GCRA and connection leases.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

/// Redis I/O runs here, whoever asks: a policy thread blocks on it, an actix arbiter awaits.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ferry-redis")
        .enable_all()
        .build()
        .expect("the Redis runtime starts")
});

/// How a connection is made; the same URL and timeouts share one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisTarget {
    pub url: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

static CONNECTIONS: LazyLock<Mutex<HashMap<RedisTarget, ConnectionManager>>> =
    LazyLock::new(Default::default);

/// The shared connection for `target` (made lazily: it connects on first use, so an unreachable
/// server is an error of the query, not of the open).
pub fn connection(target: &RedisTarget) -> RedisResult<ConnectionManager> {
    let mut all = CONNECTIONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = all.get(target) {
        return Ok(c.clone());
    }
    let client = redis::Client::open(target.url.as_str())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(target.connect_timeout))
        .set_response_timeout(Some(target.response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let _in_runtime = RUNTIME.enter();
    let manager = ConnectionManager::new_lazy_with_config(client, config)?;
    all.insert(target.clone(), manager.clone());
    Ok(manager)
}

/// Run a Redis future on the Redis runtime and wait for it: from a plain thread by blocking,
/// from inside another runtime by awaiting the spawned task.
pub fn block_on<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    RUNTIME.block_on(f)
}

pub async fn on_runtime<T: Send + 'static>(
    f: impl Future<Output = RedisResult<T>> + Send + 'static,
) -> RedisResult<T> {
    match RUNTIME.spawn(f).await {
        Ok(r) => r,
        Err(e) => {
            Err(redis::RedisError::from((redis::ErrorKind::Client, "redis task failed", e.to_string())))
        }
    }
}

/// GCRA over several throttles at once, all or nothing (one round trip per message).
/// KEYS: throttle keys; ARGV: interval_us, burst for each key. The rule is `model::gcra::step`,
/// with the server's clock, so nodes with skewed clocks still share one schedule.
/// Returns {throttled, retry_after_us, remaining, reset_after_us} (the last two for the first key).
pub static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait, tats = 0, {}
local remaining, reset_after = 0, 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * burst
  if allow_at > now then
    if allow_at - now > wait then wait = allow_at - now end
    if i == 1 then reset_after = tat - now end
  elseif i == 1 then
    remaining = math.floor((now - allow_at) / interval)
    reset_after = new_tat - now
  end
  tats[i] = new_tat
end
if wait > 0 then return {1, wait, 0, reset_after} end
for i, key in ipairs(KEYS) do
  local ttl_ms = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl_ms)
end
return {0, 0, remaining, reset_after}
"#,
    )
});

/// Take a slot of every limit or of none. KEYS: limit keys, smallest first; ARGV[1]: member,
/// ARGV[2]: lease ms, ARGV[2 + i]: limit of KEYS[i]. Expired holders are dropped first.
/// Returns 0, or the index of the full limit.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member, lease = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, member) and redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, string.format('%.0f', now + lease), member)
  redis.call('PEXPIRE', key, lease * 2)
end
return 0
"#,
    )
});

/// Push a held lease's expiry forward. KEYS: limit keys; ARGV[1]: member, ARGV[2]: lease ms.
/// Returns how many of the slots had already expired (and were not taken back).
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member, lease = ARGV[1], tonumber(ARGV[2])
local lost = 0
for _, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', string.format('%.0f', now + lease), member) == 0 then
    lost = lost + 1
  else
    redis.call('PEXPIRE', key, lease * 2)
  end
end
return lost
"#,
    )
});
