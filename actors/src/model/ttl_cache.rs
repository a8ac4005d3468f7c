//! A bounded cache whose entries expire: what `kumo.memoize` keeps results in. Time is passed in,
//! so expiry is tested without sleeping. At capacity, the entry inserted earliest is evicted.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<K, (V, Instant)>,
    /// Insertion order, for eviction; may hold keys already replaced or expired.
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), entries: HashMap::new(), order: VecDeque::new() }
    }

    /// The value for `key` if it was stored less than `ttl` before `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        self.entries.get(key).filter(|(_, expires)| now < *expires).map(|(v, _)| v.clone())
    }

    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.capacity {
                let Some(oldest) = self.order.pop_front() else { break };
                self.entries.remove(&oldest);
            }
            self.order.push_back(key.clone());
        }
        self.entries.insert(key, (value, now + self.ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(Duration::from_secs(10), 4);
        c.insert("a", 1, t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(9)), Some(1));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(10)), None);
        c.insert("a", 2, t0 + Duration::from_secs(10));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(11)), Some(2));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_eldest_entry_is_evicted_at_capacity() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(Duration::from_secs(10), 2);
        c.insert("a", 1, t0);
        c.insert("b", 2, t0);
        c.insert("a", 3, t0); // replacing does not evict
        assert_eq!((c.get(&"a", t0), c.get(&"b", t0)), (Some(3), Some(2)));
        c.insert("c", 4, t0);
        assert_eq!(c.get(&"a", t0), None);
        assert_eq!((c.get(&"b", t0), c.get(&"c", t0)), (Some(2), Some(4)));
    }
}
