//! One node's conversation with Redis: connect, subscribe, reload, then store and announce local
//! changes, apply peers' announcements and heartbeat, until the connection fails; then keep
//! recording local changes, warn once a minute, and try again every second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use super::{ClusterSettings, ClusterView, Handles, Outgoing};
use crate::model::cluster::{
    Announcement, CHANNEL, DIRECTIVE_PATTERN, Directive, DirectiveKey, Ledger, LogEvery, redact_secret,
    redact_url, redis_key,
};
use crate::model::cluster_node::{NODE_PATTERN, NodeHeartbeat, node_ttl, view};

/// Wait between connection attempts.
const RETRY: Duration = Duration::from_secs(1);
/// Longest wait for one Redis operation.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an unreachable Redis is reported.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why a connected spell ended.
enum End {
    /// Every link was dropped: the node is stopping.
    Stopped,
    Lost(String),
}

struct Session {
    settings: ClusterSettings,
    handles: Handles,
    ledger: Ledger,
    view: Arc<Mutex<ClusterView>>,
    warn: LogEvery,
    /// Redis has been unreachable since the last warning.
    down: bool,
}

pub(super) async fn run(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    view: Arc<Mutex<ClusterView>>,
    settings: ClusterSettings,
    handles: Handles,
) {
    let shown = redact_url(&settings.redis_url);
    let client = match redis::Client::open(settings.redis_url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            let e = redact_secret(&e.to_string(), &settings.redis_url);
            tracing::error!(redis = %shown, error = %e, "cluster: bad Redis URL; directives stay local");
            return;
        }
    };
    let mut s = Session {
        settings,
        handles,
        ledger: Ledger::default(),
        view,
        warn: LogEvery::new(WARN_EVERY),
        down: false,
    };
    loop {
        match s.connected(&client, &mut rx).await {
            End::Stopped => return,
            End::Lost(why) => {
                if let Ok(mut v) = s.view.lock() {
                    v.connected = false;
                }
                if s.warn.due(Instant::now()) {
                    let why = redact_secret(&why, &s.settings.redis_url);
                    tracing::warn!(redis = %shown, error = %why, "cluster: Redis unreachable; admin directives apply on this node only until it returns");
                }
                s.down = true;
            }
        }
        // Offline: keep the ledger current so the resync stores what was done meanwhile.
        let until = tokio::time::Instant::now() + RETRY;
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    None => return,
                    Some(out) => s.record(out, false),
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

async fn timed<T>(what: &str, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {OP_TIMEOUT:?}")),
    }
}

impl Session {
    async fn connected(&mut self, client: &redis::Client, rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> End {
        let attempt = async {
            let con = timed("connect", client.get_multiplexed_async_connection()).await?;
            let mut pubsub = timed("connect (pub/sub)", client.get_async_pubsub()).await?;
            // Subscribed before the reload, so nothing announced in between is missed.
            timed("SUBSCRIBE", pubsub.subscribe(CHANNEL)).await?;
            Ok::<_, String>((con, pubsub.into_on_message()))
        };
        let (mut con, mut messages) = match attempt.await {
            Ok(c) => c,
            Err(e) => return End::Lost(e),
        };
        if let Err(e) = self.resync(&mut con).await {
            return End::Lost(e);
        }
        let shown = redact_url(&self.settings.redis_url);
        if std::mem::take(&mut self.down) {
            tracing::info!(redis = %shown, "cluster: Redis is back; directives resynchronised");
        } else {
            tracing::info!(redis = %shown, node_url = %self.settings.node_url, "cluster: joined");
        }
        let mut beat = tokio::time::interval(self.settings.heartbeat_interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                out = rx.recv() => match out {
                    None => return End::Stopped,
                    Some(out) => self.send(&mut con, out).await,
                },
                msg = messages.next() => match msg {
                    None => Err("the pub/sub connection closed".to_string()),
                    Some(msg) => {
                        self.receive(msg.get_payload_bytes());
                        Ok(())
                    }
                },
                _ = beat.tick() => self.heartbeat(&mut con).await,
            };
            if let Err(e) = step {
                return End::Lost(e);
            }
        }
    }

    /// Offline: remember what Redis has not seen.
    fn record(&mut self, out: Outgoing, synced: bool) {
        match out {
            Outgoing::Made(d) => self.ledger.made_here(*d, synced),
            Outgoing::Cancelled(key) => self.ledger.cancelled_here(key, synced),
        }
    }

    async fn send(&mut self, con: &mut MultiplexedConnection, out: Outgoing) -> Result<(), String> {
        let result = match &out {
            Outgoing::Made(d) => store(con, d).await,
            Outgoing::Cancelled(key) => delete(con, *key, self.settings.node_id).await,
        };
        self.record(out, result.is_ok());
        result
    }

    fn receive(&mut self, payload: &[u8]) {
        let announcement = match std::str::from_utf8(payload)
            .map_err(|e| e.to_string())
            .and_then(|t| Announcement::decode(t).map_err(|e| e.to_string()))
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: ignoring an undecodable announcement");
                return;
            }
        };
        if announcement.sender() == self.settings.node_id {
            return;
        }
        match announcement {
            Announcement::Add { directive } => {
                if self.ledger.added_remotely((*directive).clone()) {
                    tracing::info!(kind = directive.kind().as_str(), id = %directive.id(), from = %directive.origin().node_id, "cluster: applying a peer's directive");
                    self.handles.apply(*directive);
                }
            }
            Announcement::Cancel { kind, id, by } => {
                self.ledger.cancelled_remotely((kind, id));
                tracing::info!(kind = kind.as_str(), %id, %by, "cluster: a peer cancelled a directive");
                self.handles.cancel((kind, id));
            }
        }
    }

    /// Merge Redis's directives with this node's (`model::cluster::Ledger::plan_resync`).
    async fn resync(&mut self, con: &mut MultiplexedConnection) -> Result<(), String> {
        let stored: Vec<Directive> = values(con, DIRECTIVE_PATTERN)
            .await?
            .iter()
            .filter_map(|text| match Directive::decode(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: ignoring an undecodable directive in Redis");
                    None
                }
            })
            .collect();
        let now = Utc::now();
        let plan = self.ledger.plan_resync(&stored, now);
        for d in &plan.store {
            store(con, d).await?;
        }
        for key in &plan.delete {
            delete(con, *key, self.settings.node_id).await?;
        }
        for d in &plan.apply {
            self.handles.apply(d.clone());
        }
        for key in &plan.cancel {
            self.handles.cancel(*key);
        }
        if !(plan.apply.is_empty()
            && plan.cancel.is_empty()
            && plan.store.is_empty()
            && plan.delete.is_empty())
        {
            tracing::info!(
                applied = plan.apply.len(),
                cancelled = plan.cancel.len(),
                stored = plan.store.len(),
                deleted = plan.delete.len(),
                "cluster: directives resynchronised with Redis"
            );
        }
        self.ledger.resynced(&plan, now);
        Ok(())
    }

    /// Write this node's heartbeat and read everyone's.
    async fn heartbeat(&mut self, con: &mut MultiplexedConnection) -> Result<(), String> {
        let m = crate::metrics::metrics();
        let me = NodeHeartbeat {
            node_id: self.settings.node_id,
            node_url: self.settings.node_url.clone(),
            version: self.settings.version.clone(),
            scheduled: m.scheduled.total(),
            ready: m.ready.total(),
            last_heartbeat: Utc::now(),
        };
        self.ledger.forget_lapsed(me.last_heartbeat);
        let ttl = node_ttl(self.settings.heartbeat_interval);
        let set = redis::cmd("SET").arg(me.redis_key()).arg(me.encode()).arg("EX").arg(ttl).to_owned();
        timed("SET heartbeat", set.query_async::<()>(con)).await?;
        let all = values(con, NODE_PATTERN).await?;
        if let Ok(mut v) = self.view.lock() {
            *v = ClusterView { connected: true, nodes: view(all.iter().map(String::as_str)) };
        }
        Ok(())
    }
}

/// SET with the directive's time left as TTL, and announce it; a lapsed one is left out.
async fn store(con: &mut MultiplexedConnection, d: &Directive) -> Result<(), String> {
    let Some(ttl) = d.ttl(Utc::now()) else { return Ok(()) };
    let announce = Announcement::Add { directive: Box::new(d.clone()) }.encode();
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("SET").arg(d.redis_key()).arg(d.encode()).arg("EX").arg(ttl).ignore();
    pipe.cmd("PUBLISH").arg(CHANNEL).arg(announce).ignore();
    timed("SET directive", pipe.query_async::<()>(con)).await
}

async fn delete(
    con: &mut MultiplexedConnection,
    (kind, id): DirectiveKey,
    me: uuid::Uuid,
) -> Result<(), String> {
    let announce = Announcement::Cancel { kind, id, by: me }.encode();
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(redis_key(kind, id)).ignore();
    pipe.cmd("PUBLISH").arg(CHANNEL).arg(announce).ignore();
    timed("DEL directive", pipe.query_async::<()>(con)).await
}

/// The values of every key matching `pattern` (SCAN, then MGET).
async fn values(con: &mut MultiplexedConnection, pattern: &str) -> Result<Vec<String>, String> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let scan = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500).to_owned();
        let (next, batch): (u64, Vec<String>) = timed("SCAN", scan.query_async(con)).await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mget = redis::cmd("MGET").arg(&keys).to_owned();
    // A key may lapse between SCAN and MGET.
    let found: Vec<Option<String>> = timed("MGET", mget.query_async(con)).await?;
    Ok(found.into_iter().flatten().collect())
}
