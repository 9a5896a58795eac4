//! One async lock per key: work on one key (a connect to one relay, a build
//! for one isolation key) runs one at a time, work on different keys runs
//! in parallel. A caller that looks for a result (an open channel, a pooled
//! tunnel) before and again after taking the lock shares the work of the
//! caller it waited for instead of doing it again.
//!
//! A key's lock exists only while someone holds it or waits for it, so the
//! table stays as small as the work in progress.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// Async locks by key.
#[derive(Debug)]
pub struct KeyedLock<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

/// The lock of one key, held until dropped.
#[derive(Debug)]
pub struct KeyedGuard<'a, K: Eq + Hash> {
    owner: &'a KeyedLock<K>,
    key: K,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Clone> Default for KeyedLock<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone> KeyedLock<K> {
    /// No key locked.
    pub fn new() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Wait until no one else holds `key`'s lock, and take it. Waiters
    /// take it in the order they came (tokio's mutex is fair).
    /// Cancel-safe: a waiter dropped before its turn leaves nothing locked.
    pub async fn lock(&self, key: K) -> KeyedGuard<'_, K> {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            // Locks nobody holds or waits for: left by a waiter that was
            // dropped after the holder let go.
            locks.retain(|_, m| Arc::strong_count(m) > 1);
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        let guard = mutex.lock_owned().await;
        KeyedGuard {
            owner: self,
            key,
            guard: Some(guard),
        }
    }

    /// Keys whose lock is held or waited for.
    pub fn active_keys(&self) -> usize {
        let locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.values().filter(|m| Arc::strong_count(m) > 1).count()
    }
}

impl<K: Eq + Hash> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.owner.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Every holder and waiter keeps a clone: only the table's is left
        // when no one else wants the key.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio::time::{Instant, sleep, timeout};

    use super::*;

    const CONNECT: Duration = Duration::from_secs(1);

    /// A stand-in for the client's channel map: connects (sleeping
    /// [`CONNECT`]) under the key's lock, keeps what they open, and counts
    /// them.
    #[derive(Debug, Default)]
    struct Connector {
        locks: KeyedLock<u32>,
        open: Mutex<HashMap<u32, u32>>,
        connects: AtomicU32,
    }

    impl Connector {
        fn cached(&self, key: u32) -> Option<u32> {
            self.open.lock().unwrap().get(&key).copied()
        }

        /// An open "channel" to `key`: the one kept, or a new connect.
        async fn channel_to(&self, key: u32) -> u32 {
            if let Some(ch) = self.cached(key) {
                return ch;
            }
            let _connecting = self.locks.lock(key).await;
            if let Some(ch) = self.cached(key) {
                return ch;
            }
            sleep(CONNECT).await;
            let ch = 100 + self.connects.fetch_add(1, Ordering::Relaxed);
            self.open.lock().unwrap().insert(key, ch);
            ch
        }
    }

    #[tokio::test(start_paused = true)]
    async fn different_keys_connect_in_parallel_same_key_shares() {
        let c = Connector::default();
        let start = Instant::now();
        let (a1, a2, a3, b) = tokio::join!(
            c.channel_to(1),
            c.channel_to(1),
            c.channel_to(1),
            c.channel_to(2)
        );
        // One connect per key, both at once.
        assert_eq!(start.elapsed(), CONNECT);
        assert_eq!(c.connects.load(Ordering::Relaxed), 2);
        assert_eq!((a1, a2), (a1, a3));
        assert_ne!(a1, b);
        // Nothing stays locked or in the table.
        assert_eq!(c.locks.active_keys(), 0);
        assert!(c.locks.locks.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn same_key_runs_one_at_a_time() {
        let locks = KeyedLock::new();
        let work = |key: u32| {
            let locks = &locks;
            async move {
                let _g = locks.lock(key).await;
                sleep(CONNECT).await;
                Instant::now()
            }
        };
        let start = Instant::now();
        let (a, b, c) = tokio::join!(work(7), work(7), work(8));
        // Key 7's second holder starts when the first is done; key 8 does
        // not wait for key 7.
        let mut seven = [a - start, b - start];
        seven.sort();
        assert_eq!(seven, [CONNECT, CONNECT * 2]);
        assert_eq!(c - start, CONNECT);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiters_leave_nothing_behind() {
        let locks = KeyedLock::new();
        let held = locks.lock(1).await;
        // A waiter that gives up before its turn.
        assert!(timeout(CONNECT, locks.lock(1)).await.is_err());
        assert_eq!(locks.active_keys(), 1);
        // A waiter polled once, then dropped after the holder let go.
        let mut waiter = Box::pin(locks.lock(1));
        assert!(timeout(Duration::ZERO, &mut waiter).await.is_err());
        drop(held);
        drop(waiter);
        assert_eq!(locks.active_keys(), 0);
        // The key can be taken again at once, and its lock is then the
        // only one in the table.
        let again = timeout(Duration::ZERO, locks.lock(1)).await.unwrap();
        assert_eq!(locks.locks.lock().unwrap().len(), 1);
        drop(again);
        assert!(locks.locks.lock().unwrap().is_empty());
    }
}
