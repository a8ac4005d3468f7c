//! Admin suspensions of ready queues (KumoMTA's `suspend-ready-q`): one egress path, named
//! exactly (`<source>-><site>@<protocol>`), stops sending until the directive is cancelled or
//! expires. Unlike a scheduled-queue suspension it matches no criteria: the name is the key, and a
//! new directive for the same name replaces the old one (as in KumoMTA). Pure data and rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cluster::Origin;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyQueueSuspension {
    pub id: uuid::Uuid,
    /// The ready queue's full name.
    pub name: String,
    pub reason: String,
    pub expires: DateTime<Utc>,
    /// The node that made it.
    pub origin: Origin,
}

impl ReadyQueueSuspension {
    /// Time left, at whole seconds (what the list and inspect-ready-q show).
    pub fn remaining(&self, now: DateTime<Utc>) -> std::time::Duration {
        std::time::Duration::from_secs((self.expires - now).num_seconds().max(0) as u64)
    }
}

/// The live ready-queue suspensions.
#[derive(Debug, Default, Clone)]
pub struct ReadyQueueSuspensions(Vec<ReadyQueueSuspension>);

impl ReadyQueueSuspensions {
    pub fn add(&mut self, s: ReadyQueueSuspension) {
        self.0.retain(|old| old.name != s.name);
        self.0.push(s);
    }

    pub fn remove(&mut self, id: &uuid::Uuid) -> bool {
        let before = self.0.len();
        self.0.retain(|s| s.id != *id);
        before != self.0.len()
    }

    /// Live directives (expired ones are dropped as a side effect).
    pub fn live(&mut self, now: DateTime<Utc>) -> &[ReadyQueueSuspension] {
        self.0.retain(|s| s.expires > now);
        &self.0
    }

    /// The directive suspending the ready queue `name`, if one is live.
    pub fn matching(&self, name: &str, now: DateTime<Utc>) -> Option<&ReadyQueueSuspension> {
        self.0.iter().find(|s| s.expires > now && s.name == name)
    }

    /// Cheap check for the delivery hot path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, reason: &str, secs: i64, now: DateTime<Utc>) -> ReadyQueueSuspension {
        ReadyQueueSuspension {
            id: uuid::Uuid::new_v4(),
            name: name.into(),
            reason: reason.into(),
            expires: now + chrono::Duration::seconds(secs),
            origin: Origin::local(uuid::Uuid::nil()),
        }
    }

    #[test]
    fn exact_names_match_a_new_directive_replaces_and_expiry_lapses() {
        let now = Utc::now();
        let q = "unspecified->mx_list:[127.0.0.1]:2525@smtp_client";
        let mut all = ReadyQueueSuspensions::default();
        all.add(s(q, "first", 60, now));
        all.add(s(q, "second", 60, now));
        all.add(s("ip-1->mx:example.com@smtp_client", "other", 30, now));
        assert_eq!(all.live(now).len(), 2, "the same name replaces the older directive");
        assert_eq!(all.matching(q, now).unwrap().reason, "second");
        assert!(all.matching("unspecified->mx_list:[127.0.0.1]:25@smtp_client", now).is_none(), "exact only");
        assert_eq!(all.matching(q, now).unwrap().remaining(now).as_secs(), 60);
        assert!(all.matching(q, now + chrono::Duration::seconds(61)).is_none());
        assert_eq!(all.live(now + chrono::Duration::seconds(45)).len(), 1, "the 30s one lapsed");
        let id = all.live(now)[0].id;
        assert!(all.remove(&id));
        assert!(!all.remove(&id));
        assert!(all.is_empty());
    }
}
