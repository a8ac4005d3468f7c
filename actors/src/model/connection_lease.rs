//! Connection limits shared by several nodes, as leases: a slot is held by one member
//! (`<node>:<connection>`) until an expiry that the holder keeps pushing forward while its
//! connection lives, so the slots of a node that dies come back within one lease time. In Redis a
//! limit is a sorted set (member → expiry); here are the rules the scripts and the local
//! fallback share: key names, the order limits are taken in, the lease timing and the node's
//! share when Redis is away.

use std::collections::HashMap;
use std::time::Duration;

/// How long a lease lasts without renewal, and how often a live connection renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew_every: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming { duration: Duration::from_secs(30), renew_every: Duration::from_secs(10) }
    }
}

impl LeaseTiming {
    /// Renewal must come well inside the lease, or a live connection loses its slot.
    pub fn new(duration: Duration, renew_every: Option<Duration>) -> Result<LeaseTiming, String> {
        let renew_every = renew_every.unwrap_or(duration / 3);
        if duration.is_zero() || renew_every.is_zero() || renew_every >= duration {
            return Err(format!(
                "lease renewal ({renew_every:?}) must be shorter than the lease ({duration:?}) and not zero"
            ));
        }
        Ok(LeaseTiming { duration, renew_every })
    }
}

/// The Redis key of a named connection limit.
pub fn limit_key(name: &str) -> String {
    format!("ferry:limit:{name}")
}

/// The Redis key of a named throttle.
pub fn throttle_key(name: &str) -> String {
    format!("ferry:throttle:{name}")
}

/// The name of a ready queue's own `connection_limit` among the cluster's limits.
pub fn connection_limit_name(ready_queue: &str) -> String {
    format!("ferry.connection_limit.{ready_queue}")
}

/// Smallest limit first (KumoMTA's order): the scarce slot is tried before a plentiful one is taken.
pub fn in_acquire_order(mut limits: Vec<(String, usize)>) -> Vec<(String, usize)> {
    limits.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    limits
}

/// This node's share of a connection limit while Redis is away (see `ThrottleSpec::share`).
pub fn share(limit: usize, nodes: u32) -> usize {
    (limit / nodes.max(1) as usize).max(1)
}

/// Leases held on this node without Redis: a count per limit name.
#[derive(Debug, Default)]
pub struct LocalLeases {
    held: HashMap<String, usize>,
}

impl LocalLeases {
    /// Take a slot of every limit or of none; `Err(name)` names the limit that is full.
    pub fn acquire(&mut self, limits: &[(String, usize)]) -> Result<(), String> {
        if let Some((name, _)) = limits.iter().find(|(name, limit)| self.held(name) >= *limit) {
            return Err(name.clone());
        }
        for (name, _) in limits {
            *self.held.entry(name.clone()).or_default() += 1;
        }
        Ok(())
    }

    pub fn release<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        for name in names {
            if let Some(n) = self.held.get_mut(name) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.held.remove(name);
                }
            }
        }
    }

    pub fn held(&self, name: &str) -> usize {
        self.held.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(list: &[(&str, usize)]) -> Vec<(String, usize)> {
        list.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    }

    #[test]
    fn smallest_limit_is_taken_first() {
        let order = in_acquire_order(limits(&[("global", 100), ("site", 3), ("b", 10), ("a", 10)]));
        let names: Vec<_> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["site", "a", "b", "global"]);
    }

    #[test]
    fn local_leases_are_all_or_nothing() {
        let mut leases = LocalLeases::default();
        let both = limits(&[("site", 2), ("global", 3)]);
        assert!(leases.acquire(&both).is_ok());
        assert!(leases.acquire(&both).is_ok());
        assert_eq!(leases.acquire(&both), Err("site".into()));
        assert_eq!(leases.held("global"), 2, "a refused acquire takes nothing");
        assert!(leases.acquire(&limits(&[("global", 3)])).is_ok());
        assert_eq!(leases.acquire(&limits(&[("global", 3)])), Err("global".into()));
        let names: Vec<String> = both.iter().map(|(n, _)| n.clone()).collect();
        leases.release(&names);
        assert_eq!((leases.held("site"), leases.held("global")), (1, 2));
        leases.release(&names);
        leases.release(&names);
        assert_eq!(leases.held("site"), 0, "never below zero");
    }

    #[test]
    fn timing_and_shares() {
        assert_eq!(LeaseTiming::default().renew_every, Duration::from_secs(10));
        let t = LeaseTiming::new(Duration::from_secs(3), None).unwrap();
        assert_eq!(t.renew_every, Duration::from_secs(1));
        assert!(LeaseTiming::new(Duration::from_secs(3), Some(Duration::from_secs(3))).is_err());
        assert_eq!((share(3, 2), share(32, 3), share(1, 4), share(5, 0)), (1, 10, 1, 5));
    }
}
