//! The tunnels kept per isolation key (SOCKS credentials), bounded: at most
//! [`MAX_POOL_KEYS`] keys, each with at most a given number of tunnels.
//! When a new key would go beyond the bound, the least recently used key
//! leaves the pool with its tunnels; a key whose tunnels have all closed
//! leaves as soon as that is seen. A tunnel that leaves the pool is only
//! dropped from it: once nothing else holds it (no stream, no caller), its
//! task closes it ([`TunnelHandle`]: dropping every handle closes the
//! circuit once its streams are done).
//!
//! Generic over the tunnel ([`Pooled`]) so it can be tested without a
//! network.

use std::collections::HashMap;
use std::hash::Hash;

use crate::tunnel::TunnelHandle;

/// Isolation keys whose tunnels the client keeps. A key is a SOCKS
/// username and password: Tor Browser uses one per first-party site, so
/// this keeps the circuits of the 64 sites used last (at most 256 tunnels
/// with 4 per key); a site used again after eviction gets a new circuit,
/// never another key's. C-tor bounds the same thing by time instead
/// (`MaxCircuitDirtiness`, 10 minutes), which a burst of new credentials
/// does not bound.
pub const MAX_POOL_KEYS: usize = 64;

/// What the pool needs of a tunnel.
pub trait Pooled: Clone {
    /// True once the tunnel is gone: the pool drops it.
    fn is_closed(&self) -> bool;
}

impl Pooled for TunnelHandle {
    fn is_closed(&self) -> bool {
        TunnelHandle::is_closed(self)
    }
}

/// One key's tunnels and when the key was last used.
#[derive(Debug)]
struct Entry<T> {
    tunnels: Vec<T>,
    /// The pool's use counter at the last use.
    last_used: u64,
}

/// Tunnels per isolation key, least recently used keys evicted first.
#[derive(Debug)]
pub struct IsolationPool<K, T> {
    entries: HashMap<K, Entry<T>>,
    max_keys: usize,
    max_per_key: usize,
    /// Counts uses, to order keys by their last use.
    uses: u64,
}

impl<K: Eq + Hash + Clone, T: Pooled> IsolationPool<K, T> {
    /// A pool of at most `max_keys` keys (at least 1) with at most
    /// `max_per_key` tunnels each.
    pub fn new(max_keys: usize, max_per_key: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_keys: max_keys.max(1),
            max_per_key,
            uses: 0,
        }
    }

    /// Keys with tunnels in the pool.
    pub fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// A live tunnel of `key` that `fits`; a hit makes `key` the most
    /// recently used. Closed tunnels of `key` are dropped on the way, and
    /// the key with them if none is left.
    pub fn find(&mut self, key: &K, fits: impl Fn(&T) -> bool) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        entry.tunnels.retain(|t| !t.is_closed());
        if entry.tunnels.is_empty() {
            self.entries.remove(key);
            return None;
        }
        let found = entry.tunnels.iter().find(|t| fits(t)).cloned()?;
        self.uses += 1;
        entry.last_used = self.uses;
        Some(found)
    }

    /// Keep `tunnel` for `key` (unless `key` already has its fill of live
    /// tunnels) and make `key` the most recently used. Keys whose tunnels
    /// have all closed leave; then, beyond [`Self::new`]'s `max_keys`, the
    /// least recently used keys leave with their tunnels.
    pub fn insert(&mut self, key: K, tunnel: T) {
        self.entries.retain(|_, e| {
            e.tunnels.retain(|t| !t.is_closed());
            !e.tunnels.is_empty()
        });
        self.uses += 1;
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            tunnels: Vec::new(),
            last_used: 0,
        });
        entry.last_used = self.uses;
        if entry.tunnels.len() < self.max_per_key && !tunnel.is_closed() {
            entry.tunnels.push(tunnel);
        }
        if entry.tunnels.is_empty() {
            self.entries.remove(&key);
        }
        while self.entries.len() > self.max_keys {
            let oldest = self
                .entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }

    /// Drop the tunnels of `key` that are `gone` or closed, and the key if
    /// none is left.
    pub fn remove(&mut self, key: &K, gone: impl Fn(&T) -> bool) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.tunnels.retain(|t| !gone(t) && !t.is_closed());
            if entry.tunnels.is_empty() {
                self.entries.remove(key);
            }
        }
    }

    /// The tunnels of `key`.
    pub fn tunnels_of(&self, key: &K) -> Vec<T> {
        self.entries
            .get(key)
            .map(|e| e.tunnels.clone())
            .unwrap_or_default()
    }

    /// Every tunnel in the pool.
    pub fn all(&self) -> Vec<T> {
        self.entries
            .values()
            .flat_map(|e| e.tunnels.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A tunnel whose closing the test controls; `id` tells them apart.
    #[derive(Clone, Debug)]
    struct Fake {
        id: u32,
        closed: Arc<AtomicBool>,
    }

    impl Fake {
        fn new(id: u32) -> Self {
            Self {
                id,
                closed: Arc::new(AtomicBool::new(false)),
            }
        }

        fn close(&self) {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    impl Pooled for Fake {
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::Relaxed)
        }
    }

    fn ids(v: &[Fake]) -> Vec<u32> {
        let mut ids: Vec<u32> = v.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn least_recently_used_key_leaves_first() {
        let mut pool = IsolationPool::new(3, 4);
        for k in 0..3_u32 {
            pool.insert(k, Fake::new(k));
        }
        // Key 0 is used again, so key 1 is now the least recently used.
        assert_eq!(pool.find(&0, |_| true).unwrap().id, 0);
        pool.insert(3, Fake::new(3));
        assert_eq!(pool.key_count(), 3);
        assert!(pool.tunnels_of(&1).is_empty());
        assert_eq!(ids(&pool.all()), vec![0, 2, 3]);
        // A miss does not count as a use: key 2 goes next.
        assert!(pool.find(&2, |_| false).is_none());
        pool.insert(4, Fake::new(4));
        assert_eq!(ids(&pool.all()), vec![0, 3, 4]);
    }

    #[test]
    fn many_keys_stay_bounded() {
        let mut pool = IsolationPool::new(MAX_POOL_KEYS, 4);
        let mut kept = Vec::new();
        for k in 0..10_000_u32 {
            let t = Fake::new(k);
            kept.push(t.clone());
            pool.insert(k, t);
            assert!(pool.key_count() <= MAX_POOL_KEYS);
        }
        // The last MAX_POOL_KEYS keys are kept.
        let last: Vec<u32> = (10_000 - MAX_POOL_KEYS as u32..10_000).collect();
        assert_eq!(ids(&pool.all()), last);
        // An evicted key's tunnel is no longer held by the pool.
        assert_eq!(Arc::strong_count(&kept[0].closed), 1);
    }

    #[test]
    fn closed_tunnels_and_their_keys_leave() {
        let mut pool = IsolationPool::new(8, 4);
        let a = Fake::new(1);
        let b = Fake::new(2);
        pool.insert("a", a.clone());
        pool.insert("a", b.clone());
        pool.insert("b", Fake::new(3));
        a.close();
        assert_eq!(pool.find(&"a", |_| true).unwrap().id, 2);
        assert_eq!(ids(&pool.tunnels_of(&"a")), vec![2]);
        // A key whose tunnels have all closed leaves when it is looked up...
        b.close();
        assert!(pool.find(&"a", |_| true).is_none());
        assert_eq!(pool.key_count(), 1);
        // ... or when another key is added.
        let c = Fake::new(4);
        pool.insert("c", c.clone());
        c.close();
        pool.insert("d", Fake::new(5));
        assert_eq!(pool.key_count(), 2);
        assert_eq!(ids(&pool.all()), vec![3, 5]);
        // A closed tunnel is not kept at all.
        pool.insert("e", c);
        assert_eq!(pool.key_count(), 2);
    }

    #[test]
    fn per_key_limit_and_remove() {
        let mut pool = IsolationPool::new(8, 2);
        for id in 0..3 {
            pool.insert("k", Fake::new(id));
        }
        assert_eq!(ids(&pool.tunnels_of(&"k")), vec![0, 1]);
        // `find` picks a tunnel that fits.
        assert_eq!(pool.find(&"k", |t| t.id == 1).unwrap().id, 1);
        pool.remove(&"k", |t| t.id == 0);
        assert_eq!(ids(&pool.tunnels_of(&"k")), vec![1]);
        pool.remove(&"k", |t| t.id == 1);
        assert_eq!(pool.key_count(), 0);
        // Removing from an unknown key is nothing.
        pool.remove(&"x", |_| true);
        assert_eq!(pool.key_count(), 0);
    }
}
