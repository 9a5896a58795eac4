//! The tunnels kept per isolation key (SOCKS credentials), bounded: at most
//! [`MAX_POOL_KEYS`] keys, each with at most a given number of tunnels.
//! When a new key would go beyond the bound, the least recently used key
//! leaves the pool with its tunnels; a key whose tunnels have all closed
//! leaves as soon as that is seen. A tunnel takes new streams for
//! [`MAX_CIRCUIT_DIRTINESS`] after it was first given to a key (C-tor's
//! `MaxCircuitDirtiness`, path-spec §2.1.2 on circuit reuse), then leaves
//! the pool: its streams go on, new ones get a new tunnel. A tunnel that leaves the pool is only
//! dropped from it: once nothing else holds it (no stream, no caller), its
//! task closes it ([`TunnelHandle`]: dropping every handle closes the
//! circuit once its streams are done).
//!
//! Generic over the tunnel ([`Pooled`]) so it can be tested without a
//! network.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::tunnel::TunnelHandle;

/// Isolation keys whose tunnels the client keeps. A key is a SOCKS
/// username and password: Tor Browser uses one per first-party site, so
/// this keeps the circuits of the 64 sites used last (at most 256 tunnels
/// with 4 per key); a site used again after eviction gets a new circuit,
/// never another key's. C-tor bounds the same thing by time instead
/// (`MaxCircuitDirtiness`, 10 minutes), which a burst of new credentials
/// does not bound.
pub const MAX_POOL_KEYS: usize = 64;

/// How long a tunnel takes new streams after it was first used: C-tor's
/// `MaxCircuitDirtiness` default (10 minutes), so that a long session is
/// not linkable through one circuit and Braid's circuits live as long as
/// C-tor's.
pub const MAX_CIRCUIT_DIRTINESS: Duration = Duration::from_secs(600);

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

/// True if a tunnel first used at `since` is open and has not been in use
/// for `max_dirtiness` at `now`.
fn takes_streams<T: Pooled>(
    (t, since): &(T, Instant),
    now: Instant,
    max_dirtiness: Duration,
) -> bool {
    !t.is_closed() && now.saturating_duration_since(*since) < max_dirtiness
}

/// One key's tunnels and when the key was last used.
#[derive(Debug)]
struct Entry<T> {
    /// The key's tunnels, each with when it was first given to the key
    /// (it is dirty from then on).
    tunnels: Vec<(T, Instant)>,
    /// The pool's use counter at the last use.
    last_used: u64,
}

/// Tunnels per isolation key, least recently used keys evicted first.
#[derive(Debug)]
pub struct IsolationPool<K, T> {
    entries: HashMap<K, Entry<T>>,
    max_keys: usize,
    max_per_key: usize,
    /// See [`MAX_CIRCUIT_DIRTINESS`].
    max_dirtiness: Duration,
    /// Counts uses, to order keys by their last use.
    uses: u64,
    /// Tunnels that left for dirtiness since [`Self::expire`] last
    /// returned them, with their keys (at most [`MAX_DEPARTED`]).
    departed: Vec<(K, T)>,
}

/// Tunnels that left for dirtiness kept for [`IsolationPool::expire`] to
/// return (the client takes them every sweep); beyond, the oldest are
/// forgotten (their streams stay where they are).
const MAX_DEPARTED: usize = 1024;

/// Keep the tunnels of `entry` that take streams at `now`; the open ones
/// too dirty go to `departed` with `key`.
fn sweep<K: Clone, T: Pooled>(
    key: &K,
    entry: &mut Entry<T>,
    now: Instant,
    max: Duration,
    departed: &mut Vec<(K, T)>,
) {
    entry.tunnels.retain(|t| {
        let keep = takes_streams(t, now, max);
        if !keep && !t.0.is_closed() {
            if departed.len() >= MAX_DEPARTED {
                departed.remove(0);
            }
            departed.push((key.clone(), t.0.clone()));
        }
        keep
    });
}

impl<K: Eq + Hash + Clone, T: Pooled> IsolationPool<K, T> {
    /// A pool of at most `max_keys` keys (at least 1) with at most
    /// `max_per_key` tunnels each, each taking streams for `max_dirtiness`.
    pub fn new(max_keys: usize, max_per_key: usize, max_dirtiness: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            max_keys: max_keys.max(1),
            max_per_key,
            max_dirtiness,
            uses: 0,
            departed: Vec::new(),
        }
    }

    /// Drop every closed or too dirty tunnel, and the keys left without
    /// one. The client calls it now and then, so that the tunnels that
    /// leave are closed once their streams end (their last handle gone).
    /// Returns the tunnels that left for dirtiness (not the closed ones),
    /// here or since the last call (on a [`Self::find`] or
    /// [`Self::insert`]), with their keys.
    pub fn expire(&mut self, now: Instant) -> Vec<(K, T)> {
        self.sweep_all(now);
        std::mem::take(&mut self.departed)
    }

    /// [`sweep`] every key, dropping the keys left without a tunnel.
    fn sweep_all(&mut self, now: Instant) {
        let max = self.max_dirtiness;
        let departed = &mut self.departed;
        self.entries.retain(|key, e| {
            sweep(key, e, now, max, departed);
            !e.tunnels.is_empty()
        });
    }

    /// Keys with tunnels in the pool.
    pub fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// A live tunnel of `key` that `fits` and is not too dirty; a hit makes
    /// `key` the most recently used. Closed and too dirty tunnels of `key`
    /// are dropped on the way, and the key with them if none is left.
    pub fn find(&mut self, key: &K, now: Instant, fits: impl Fn(&T) -> bool) -> Option<T> {
        let max = self.max_dirtiness;
        let entry = self.entries.get_mut(key)?;
        sweep(key, entry, now, max, &mut self.departed);
        if entry.tunnels.is_empty() {
            self.entries.remove(key);
            return None;
        }
        let found = entry.tunnels.iter().find(|(t, _)| fits(t))?.0.clone();
        self.uses += 1;
        entry.last_used = self.uses;
        Some(found)
    }

    /// Keep `tunnel` for `key`, first used `now` (unless `key` already has
    /// its fill of usable tunnels) and make `key` the most recently used.
    /// Keys whose tunnels have all closed or gone stale leave; then, beyond
    /// [`Self::new`]'s `max_keys`, the least recently used keys leave with
    /// their tunnels.
    pub fn insert(&mut self, key: K, tunnel: T, now: Instant) {
        self.sweep_all(now);
        self.uses += 1;
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            tunnels: Vec::new(),
            last_used: 0,
        });
        entry.last_used = self.uses;
        if entry.tunnels.len() < self.max_per_key && !tunnel.is_closed() {
            entry.tunnels.push((tunnel, now));
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
            entry.tunnels.retain(|(t, _)| !gone(t) && !t.is_closed());
            if entry.tunnels.is_empty() {
                self.entries.remove(key);
            }
        }
    }

    /// The tunnels of `key`.
    pub fn tunnels_of(&self, key: &K) -> Vec<T> {
        self.entries
            .get(key)
            .map(|e| e.tunnels.iter().map(|(t, _)| t.clone()).collect())
            .unwrap_or_default()
    }

    /// The key holding a tunnel that `is`, if any.
    pub fn key_of(&self, is: impl Fn(&T) -> bool) -> Option<K> {
        self.entries
            .iter()
            .find(|(_, e)| e.tunnels.iter().any(|(t, _)| is(t)))
            .map(|(k, _)| k.clone())
    }

    /// Every tunnel in the pool.
    pub fn all(&self) -> Vec<T> {
        self.entries
            .values()
            .flat_map(|e| e.tunnels.iter().map(|(t, _)| t.clone()))
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

    /// The tests' clock: one instant, so nothing goes stale unless a test
    /// says so.
    fn now() -> Instant {
        thread_local!(static T0: Instant = Instant::now());
        T0.with(|t| *t)
    }

    fn ids(v: &[Fake]) -> Vec<u32> {
        let mut ids: Vec<u32> = v.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn least_recently_used_key_leaves_first() {
        let mut pool = IsolationPool::new(3, 4, MAX_CIRCUIT_DIRTINESS);
        for k in 0..3_u32 {
            pool.insert(k, Fake::new(k), now());
        }
        // Key 0 is used again, so key 1 is now the least recently used.
        assert_eq!(pool.find(&0, now(), |_| true).unwrap().id, 0);
        pool.insert(3, Fake::new(3), now());
        assert_eq!(pool.key_count(), 3);
        assert!(pool.tunnels_of(&1).is_empty());
        assert_eq!(ids(&pool.all()), vec![0, 2, 3]);
        // A miss does not count as a use: key 2 goes next.
        assert!(pool.find(&2, now(), |_| false).is_none());
        pool.insert(4, Fake::new(4), now());
        assert_eq!(ids(&pool.all()), vec![0, 3, 4]);
    }

    #[test]
    fn many_keys_stay_bounded() {
        let mut pool = IsolationPool::new(MAX_POOL_KEYS, 4, MAX_CIRCUIT_DIRTINESS);
        let mut kept = Vec::new();
        for k in 0..10_000_u32 {
            let t = Fake::new(k);
            kept.push(t.clone());
            pool.insert(k, t, now());
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
        let mut pool = IsolationPool::new(8, 4, MAX_CIRCUIT_DIRTINESS);
        let a = Fake::new(1);
        let b = Fake::new(2);
        pool.insert("a", a.clone(), now());
        pool.insert("a", b.clone(), now());
        pool.insert("b", Fake::new(3), now());
        a.close();
        assert_eq!(pool.find(&"a", now(), |_| true).unwrap().id, 2);
        assert_eq!(ids(&pool.tunnels_of(&"a")), vec![2]);
        // A key whose tunnels have all closed leaves when it is looked up...
        b.close();
        assert!(pool.find(&"a", now(), |_| true).is_none());
        assert_eq!(pool.key_count(), 1);
        // ... or when another key is added.
        let c = Fake::new(4);
        pool.insert("c", c.clone(), now());
        c.close();
        pool.insert("d", Fake::new(5), now());
        assert_eq!(pool.key_count(), 2);
        assert_eq!(ids(&pool.all()), vec![3, 5]);
        // A closed tunnel is not kept at all.
        pool.insert("e", c, now());
        assert_eq!(pool.key_count(), 2);
    }

    #[test]
    fn per_key_limit_and_remove() {
        let mut pool = IsolationPool::new(8, 2, MAX_CIRCUIT_DIRTINESS);
        for id in 0..3 {
            pool.insert("k", Fake::new(id), now());
        }
        assert_eq!(ids(&pool.tunnels_of(&"k")), vec![0, 1]);
        // `find` picks a tunnel that fits.
        assert_eq!(pool.find(&"k", now(), |t| t.id == 1).unwrap().id, 1);
        assert_eq!(pool.key_of(|t| t.id == 1), Some("k"));
        assert_eq!(pool.key_of(|t| t.id == 9), None);
        pool.remove(&"k", |t| t.id == 0);
        assert_eq!(ids(&pool.tunnels_of(&"k")), vec![1]);
        pool.remove(&"k", |t| t.id == 1);
        assert_eq!(pool.key_count(), 0);
        // Removing from an unknown key is nothing.
        pool.remove(&"x", |_| true);
        assert_eq!(pool.key_count(), 0);
    }

    #[test]
    fn a_tunnel_takes_new_streams_for_ten_minutes_after_its_first_use() {
        let mut pool = IsolationPool::new(8, 4, MAX_CIRCUIT_DIRTINESS);
        let t0 = now();
        let first = Fake::new(1);
        pool.insert("k", first.clone(), t0);
        // 9 minutes on, the same tunnel.
        let later = t0 + Duration::from_secs(9 * 60);
        assert_eq!(pool.find(&"k", later, |_| true).unwrap().id, 1);
        // 11 minutes after the first stream, a new stream gets a new
        // tunnel: the old one has left the pool; the next expire hands it
        // to the client (for policy (c)), and then the pool no longer
        // holds it, so it closes when its own streams end.
        let t11 = t0 + Duration::from_secs(11 * 60);
        assert!(pool.find(&"k", t11, |_| true).is_none());
        assert_eq!(pool.key_count(), 0);
        let departed = pool.expire(t11);
        assert_eq!(departed.len(), 1);
        assert_eq!((departed[0].0, departed[0].1.id), ("k", 1));
        drop(departed);
        assert_eq!(Arc::strong_count(&first.closed), 1);
        pool.insert("k", Fake::new(2), t11);
        assert_eq!(pool.find(&"k", t11, |_| true).unwrap().id, 2);
        // Dirtiness counts from the first use, not the last.
        let t20 = t11 + Duration::from_secs(9 * 60);
        assert_eq!(pool.find(&"k", t20, |_| true).unwrap().id, 2);
        assert!(
            pool.find(&"k", t20 + Duration::from_secs(61), |_| true)
                .is_none()
        );
    }

    #[test]
    fn expire_drops_stale_tunnels_of_every_key() {
        let mut pool = IsolationPool::new(8, 4, Duration::from_secs(600));
        let t0 = now();
        pool.insert("old", Fake::new(1), t0);
        pool.insert("new", Fake::new(2), t0 + Duration::from_secs(300));
        assert!(pool.expire(t0 + Duration::from_secs(599)).is_empty());
        assert_eq!(ids(&pool.all()), vec![1, 2]);
        let gone = pool.expire(t0 + Duration::from_secs(600));
        assert_eq!(
            gone.iter().map(|(k, t)| (*k, t.id)).collect::<Vec<_>>(),
            [("old", 1)]
        );
        assert_eq!(ids(&pool.all()), vec![2]);
        assert_eq!(pool.key_count(), 1);
        // A closed tunnel is not handed on: nothing will move off it.
        pool.all()[0].close();
        assert!(pool.expire(t0 + Duration::from_secs(900)).is_empty());
        assert_eq!(pool.key_count(), 0);
    }
}
