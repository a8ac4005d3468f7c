//! Admin directives (SPEC §2.8): which queues an operator's suspend, bounce, xfer or rebind
//! selects, and the suspension directive itself. Matching is pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cluster::Origin;
use super::queue_name;

/// Selection criteria shared by suspend, bounce, xfer and rebind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criteria {
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_domain: Option<String>,
    #[serde(default)]
    pub queue_names: Vec<String>,
}

impl Criteria {
    /// Non-empty `queue_names` → exact names only; otherwise each given criterion must equal the
    /// parsed component (an absent component never matches); no criteria → every queue.
    pub fn matches(&self, queue: &str) -> bool {
        if !self.queue_names.is_empty() {
            return self.queue_names.iter().any(|q| q == queue);
        }
        let parts = queue_name::parse(queue);
        let eq = |want: &Option<String>, have: Option<&str>| match want.as_deref().filter(|w| !w.is_empty()) {
            None => true,
            Some(w) => have == Some(w),
        };
        eq(&self.campaign, parts.campaign.as_deref())
            && eq(&self.tenant, parts.tenant.as_deref())
            && eq(&self.domain, Some(parts.domain.as_str()))
            && eq(&self.routing_domain, parts.routing_domain.as_deref())
    }
}

/// An admin suspension: matching queues answer each promotion with a transient failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub id: uuid::Uuid,
    pub criteria: Criteria,
    pub reason: String,
    pub expires: DateTime<Utc>,
    /// The node that made it (the same node unless it came through the cluster).
    pub origin: Origin,
}

/// The live suspensions. Identical criteria replace an older directive.
#[derive(Debug, Default, Clone)]
pub struct Suspensions(Vec<Suspension>);

impl Suspensions {
    pub fn add(&mut self, s: Suspension) {
        self.0.retain(|old| old.criteria != s.criteria);
        self.0.push(s);
    }

    pub fn remove(&mut self, id: &uuid::Uuid) -> bool {
        let before = self.0.len();
        self.0.retain(|s| s.id != *id);
        before != self.0.len()
    }

    /// Live directives (expired ones are dropped as a side effect).
    pub fn live(&mut self, now: DateTime<Utc>) -> &[Suspension] {
        self.0.retain(|s| s.expires > now);
        &self.0
    }

    pub fn matching(&self, queue: &str, now: DateTime<Utc>) -> Option<&Suspension> {
        self.0.iter().find(|s| s.expires > now && s.criteria.matches(queue))
    }
}

/// An admin bounce (SPEC §2.8): matching queues are drained into `AdminBounce` records, and
/// messages inserted or promoted into them while it lasts are bounced too.
/// Counts are this node's own: they do not travel through the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounce {
    pub id: uuid::Uuid,
    pub criteria: Criteria,
    pub reason: String,
    pub expires: DateTime<Utc>,
    pub suppress_logging: bool,
    pub origin: Origin,
    /// Messages bounced so far, by queue.
    #[serde(skip)]
    pub bounced: std::collections::BTreeMap<String, u64>,
    #[serde(skip)]
    pub total_bounced: u64,
}

/// The live bounces (each request its own directive, as in KumoMTA).
#[derive(Debug, Default, Clone)]
pub struct Bounces(Vec<Bounce>);

impl Bounces {
    pub fn add(&mut self, b: Bounce) {
        self.0.push(b);
    }

    pub fn remove(&mut self, id: &uuid::Uuid) -> bool {
        let before = self.0.len();
        self.0.retain(|b| b.id != *id);
        before != self.0.len()
    }

    /// Live directives (expired ones are dropped as a side effect).
    pub fn live(&mut self, now: DateTime<Utc>) -> &[Bounce] {
        self.0.retain(|b| b.expires > now);
        &self.0
    }

    pub fn matching(&self, queue: &str, now: DateTime<Utc>) -> Option<&Bounce> {
        self.0.iter().find(|b| b.expires > now && b.criteria.matches(queue))
    }

    /// Count one message bounced by directive `id` from `queue`.
    pub fn count(&mut self, id: &uuid::Uuid, queue: &str) {
        if let Some(b) = self.0.iter_mut().find(|b| b.id == *id) {
            *b.bounced.entry(queue.to_string()).or_default() += 1;
            b.total_bounced += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(domain: Option<&str>, tenant: Option<&str>, queues: &[&str]) -> Criteria {
        Criteria {
            domain: domain.map(str::to_string),
            tenant: tenant.map(str::to_string),
            queue_names: queues.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn matching_rules() {
        assert!(c(Some("example.com"), None, &[]).matches("example.com"));
        assert!(c(Some("example.com"), None, &[]).matches("camp:t@example.com!rd"));
        assert!(!c(Some("example.com"), None, &[]).matches("example.org"));
        assert!(c(Some("example.com"), Some("mytenant"), &[]).matches("mytenant@example.com"));
        // An absent component never matches a given criterion.
        assert!(!c(Some("example.com"), Some("mytenant"), &[]).matches("example.com"));
        // queue_names overrides the rest and is exact.
        assert!(c(Some("nomatch"), None, &["a.com"]).matches("a.com"));
        assert!(!c(None, None, &["a.com"]).matches("t@a.com"));
        // No criteria: everything, xfer queues included.
        assert!(Criteria::default().matches("http://h:8000/.xfer.kumomta.internal"));
    }

    #[test]
    fn identical_criteria_replace_and_expired_ones_lapse() {
        let now = Utc::now();
        let mut s = Suspensions::default();
        let mk = |reason: &str, secs: i64| Suspension {
            id: uuid::Uuid::new_v4(),
            criteria: c(Some("example.com"), None, &[]),
            reason: reason.into(),
            expires: now + chrono::Duration::seconds(secs),
            origin: Origin::local(uuid::Uuid::nil()),
        };
        s.add(mk("first", 60));
        s.add(mk("second", 60));
        assert_eq!(s.live(now).len(), 1);
        assert_eq!(s.matching("example.com", now).unwrap().reason, "second");
        assert!(s.matching("example.com", now + chrono::Duration::seconds(61)).is_none());
        let id = s.live(now)[0].id;
        assert!(s.remove(&id));
        assert!(!s.remove(&id));
    }
}

#[cfg(test)]
mod bounce_tests {
    use super::*;

    #[test]
    fn bounces_match_count_and_lapse() {
        let now = Utc::now();
        let mut all = Bounces::default();
        let id = uuid::Uuid::new_v4();
        all.add(Bounce {
            id,
            criteria: Criteria { routing_domain: Some("relay.example".into()), ..Default::default() },
            reason: "spam run".into(),
            expires: now + chrono::Duration::minutes(5),
            suppress_logging: false,
            origin: Origin::local(uuid::Uuid::nil()),
            bounced: Default::default(),
            total_bounced: 0,
        });
        assert!(all.matching("example.com!relay.example", now).is_some());
        assert!(all.matching("example.com", now).is_none(), "no routing domain, no match");
        all.count(&id, "example.com!relay.example");
        all.count(&id, "example.com!relay.example");
        let live = all.live(now);
        assert_eq!((live[0].total_bounced, live[0].bounced["example.com!relay.example"]), (2, 2));
        assert!(all.matching("example.com!relay.example", now + chrono::Duration::minutes(6)).is_none());
        assert!(all.remove(&id));
        assert!(!all.remove(&id));
    }
}
