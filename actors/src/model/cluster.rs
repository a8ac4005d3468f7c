//! Cluster-wide admin directives (issue 17, item 3): how a suspension, ready-queue suspension or
//! admin bounce is written to Redis and announced, and how a node merges what Redis holds with
//! what it knows. Pure: the Redis I/O is in `crate::cluster`.
//!
//! Each directive is one key, `ferry:cluster:directive:<kind>:<id>`, whose value is the directive
//! as JSON and whose TTL is the time it has left, so Redis forgets it when it lapses. Changes are
//! announced on one pub/sub channel; a node ignores its own announcements (no loops), and at
//! start and after every reconnection it reloads the keys ([`Ledger::plan_resync`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::admin::{Bounce, Suspension};
use super::ready_queue_suspension::ReadyQueueSuspension;

/// The pub/sub channel every node listens on.
pub const CHANNEL: &str = "ferry:cluster:directives";
/// `SCAN MATCH` pattern of every directive key.
pub const DIRECTIVE_PATTERN: &str = "ferry:cluster:directive:*";

/// The node that made a directive: a Ferry extension field of the list endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub node_id: Uuid,
    /// Its admin URL, when it belongs to a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_url: Option<String>,
}

impl Origin {
    pub fn local(node_id: Uuid) -> Self {
        Self { node_id, node_url: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectiveKind {
    Suspend,
    SuspendReadyQ,
    Bounce,
}

impl DirectiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectiveKind::Suspend => "suspend",
            DirectiveKind::SuspendReadyQ => "suspend_ready_q",
            DirectiveKind::Bounce => "bounce",
        }
    }
}

/// One directive as it travels: the same structs the node keeps, tagged by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Directive {
    Suspend(Suspension),
    SuspendReadyQ(ReadyQueueSuspension),
    Bounce(Bounce),
}

/// Which directive: kind and id.
pub type DirectiveKey = (DirectiveKind, Uuid);

impl Directive {
    pub fn kind(&self) -> DirectiveKind {
        match self {
            Directive::Suspend(_) => DirectiveKind::Suspend,
            Directive::SuspendReadyQ(_) => DirectiveKind::SuspendReadyQ,
            Directive::Bounce(_) => DirectiveKind::Bounce,
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            Directive::Suspend(s) => s.id,
            Directive::SuspendReadyQ(s) => s.id,
            Directive::Bounce(b) => b.id,
        }
    }

    pub fn key(&self) -> DirectiveKey {
        (self.kind(), self.id())
    }

    pub fn expires(&self) -> DateTime<Utc> {
        match self {
            Directive::Suspend(s) => s.expires,
            Directive::SuspendReadyQ(s) => s.expires,
            Directive::Bounce(b) => b.expires,
        }
    }

    pub fn origin(&self) -> &Origin {
        match self {
            Directive::Suspend(s) => &s.origin,
            Directive::SuspendReadyQ(s) => &s.origin,
            Directive::Bounce(b) => &b.origin,
        }
    }

    /// Its Redis key.
    pub fn redis_key(&self) -> String {
        redis_key(self.kind(), self.id())
    }

    /// The key's TTL in whole seconds, rounded up; None once it has lapsed (nothing to store).
    pub fn ttl(&self, now: DateTime<Utc>) -> Option<u64> {
        let left = (self.expires() - now).to_std().ok().filter(|d| !d.is_zero())?;
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a directive always serializes")
    }

    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

pub fn redis_key(kind: DirectiveKind, id: Uuid) -> String {
    format!("ferry:cluster:directive:{}:{id}", kind.as_str())
}

/// What a node says on [`CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Announcement {
    Add { directive: Box<Directive> },
    Cancel { kind: DirectiveKind, id: Uuid, by: Uuid },
}

impl Announcement {
    /// The node that said it: a node skips its own.
    pub fn sender(&self) -> Uuid {
        match self {
            Announcement::Add { directive } => directive.origin().node_id,
            Announcement::Cancel { by, .. } => *by,
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("an announcement always serializes")
    }

    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// What a resync does: apply directives this node lacks, cancel those Redis no longer holds,
/// store the ones made here while Redis was away, delete the ones cancelled here meanwhile.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResyncPlan {
    pub apply: Vec<Directive>,
    pub cancel: Vec<DirectiveKey>,
    pub store: Vec<Directive>,
    pub delete: Vec<DirectiveKey>,
}

/// The directives this node holds, as far as the cluster is concerned, and which of its own
/// changes Redis has not seen yet.
#[derive(Debug, Default)]
pub struct Ledger {
    known: HashMap<DirectiveKey, Directive>,
    unsynced: HashSet<DirectiveKey>,
    unsynced_cancels: HashSet<DirectiveKey>,
}

impl Ledger {
    /// Made here; `stored`: Redis has it.
    pub fn made_here(&mut self, d: Directive, stored: bool) {
        if !stored {
            self.unsynced.insert(d.key());
        }
        self.known.insert(d.key(), d);
    }

    /// Cancelled here; `deleted`: Redis has forgotten it.
    pub fn cancelled_here(&mut self, key: DirectiveKey, deleted: bool) {
        self.known.remove(&key);
        self.unsynced.remove(&key);
        if !deleted {
            self.unsynced_cancels.insert(key);
        }
    }

    /// Announced by a peer: true if this node should apply it (it did not know it).
    pub fn added_remotely(&mut self, d: Directive) -> bool {
        let key = d.key();
        if self.unsynced_cancels.contains(&key) {
            return false;
        }
        self.known.insert(key, d).is_none()
    }

    /// Cancelled by a peer: true if this node held it.
    pub fn cancelled_remotely(&mut self, key: DirectiveKey) -> bool {
        self.unsynced.remove(&key);
        self.known.remove(&key).is_some()
    }

    /// Merge Redis's set (`stored`) with this node's at `now`. A directive this node made while
    /// Redis was away is stored, not cancelled; one it cancelled meanwhile is deleted, not
    /// re-applied; any other it knows that Redis lacks was cancelled or lapsed elsewhere.
    pub fn plan_resync(&self, stored: &[Directive], now: DateTime<Utc>) -> ResyncPlan {
        let in_redis: HashSet<DirectiveKey> = stored.iter().map(Directive::key).collect();
        let mut plan = ResyncPlan {
            apply: stored
                .iter()
                .filter(|d| d.expires() > now)
                .filter(|d| !self.known.contains_key(&d.key()) && !self.unsynced_cancels.contains(&d.key()))
                .cloned()
                .collect(),
            ..ResyncPlan::default()
        };
        for (key, d) in &self.known {
            if self.unsynced.contains(key) {
                if d.expires() > now {
                    plan.store.push(d.clone());
                }
            } else if !in_redis.contains(key) {
                plan.cancel.push(*key);
            }
        }
        plan.delete = self.unsynced_cancels.iter().copied().collect();
        // Stable order, for logs and tests.
        plan.apply.sort_by_key(Directive::key);
        plan.store.sort_by_key(Directive::key);
        plan.cancel.sort();
        plan.delete.sort();
        plan
    }

    /// The plan was carried out.
    pub fn resynced(&mut self, plan: &ResyncPlan, now: DateTime<Utc>) {
        for d in &plan.apply {
            self.known.insert(d.key(), d.clone());
        }
        for key in &plan.cancel {
            self.known.remove(key);
        }
        self.unsynced.clear();
        self.unsynced_cancels.clear();
        self.known.retain(|_, d| d.expires() > now);
    }

    /// Forget lapsed directives (Redis has already let their keys expire).
    pub fn forget_lapsed(&mut self, now: DateTime<Utc>) {
        self.known.retain(|_, d| d.expires() > now);
    }

    /// Whether anything waits for Redis.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || !self.unsynced_cancels.is_empty()
    }
}

/// A Redis URL fit for a log line: the password (and a lone username) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            } else if !u.username().is_empty() {
                let _ = u.set_username("***");
            }
            u.to_string()
        }
        Err(_) => "<unparsable redis URL>".into(),
    }
}

/// `text` (an error message) with the URL's password removed wherever it appears.
pub fn redact_secret(text: &str, url: &str) -> String {
    let secret = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string).or_else(|| Some(u.username().to_string())));
    match secret.filter(|s| s.len() >= 3) {
        Some(s) => text.replace(&s, "***"),
        None => text.to_string(),
    }
}

/// "Log once a minute": true when a warning may be written at `now`.
#[derive(Debug)]
pub struct LogEvery {
    every: Duration,
    last: Option<Instant>,
}

impl LogEvery {
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    pub fn due(&mut self, now: Instant) -> bool {
        let due = self.last.is_none_or(|last| now.duration_since(last) >= self.every);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests;
