//! The wait before the next tunnel of an isolation key after one closed
//! for a reason that calls for it (Braid proposal 001 §5.3: it stopped
//! resuming, its legs died together through one guard, or its peer broke
//! the protocol). The rule and the random delay are braid-core's
//! ([`TunnelClose::rebuild`]); this keeps, per key, until when to wait and
//! which middles to avoid, and the client sleeps and builds.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use braid_core::tunnel::TunnelClose;
use braid_dir::RelayId;
use rand::Rng;

use super::TorClient;
use crate::hops::relay_id;
use crate::socks::IsolationKey;
use crate::tunnel::TunnelHandle;

/// A wait recorded for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The tunnel whose close set it.
    pub(crate) tunnel: u64,
    /// No new tunnel before this.
    pub(crate) not_before: Instant,
    /// Middles the next tunnel must not use.
    pub(crate) avoid: Vec<RelayId>,
}

/// Waits per isolation key, at most `max` keys (the oldest wait goes
/// first).
#[derive(Debug)]
pub(crate) struct RebuildGate<K> {
    pending: HashMap<K, Pending>,
    max: usize,
}

impl<K: Eq + Hash + Clone> RebuildGate<K> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            pending: HashMap::new(),
            max: max.max(1),
        }
    }

    /// Tunnel `tunnel` of `key` closed at `now` as `close` says: if the
    /// rule applies, the key's next tunnel waits the delay drawn from
    /// `rng` and avoids the closed one's middles. Returns the delay. A
    /// second report of the same tunnel changes nothing.
    pub(crate) fn note_close<R: Rng + ?Sized>(
        &mut self,
        key: K,
        tunnel: u64,
        close: &TunnelClose,
        now: Instant,
        rng: &mut R,
    ) -> Option<Duration> {
        if self.pending.get(&key).is_some_and(|p| p.tunnel == tunnel) {
            return None;
        }
        let rule = close.rebuild(rng)?;
        let mut avoid: Vec<RelayId> = rule.avoid.iter().map(relay_id).collect();
        // A wait not yet used for this key keeps its middles too.
        if let Some(old) = self.pending.remove(&key) {
            for id in old.avoid {
                if !avoid.contains(&id) {
                    avoid.push(id);
                }
            }
        }
        if self.pending.len() >= self.max
            && let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.not_before)
                .map(|(k, _)| k.clone())
        {
            self.pending.remove(&oldest);
        }
        self.pending.insert(
            key,
            Pending {
                tunnel,
                not_before: now + rule.delay,
                avoid,
            },
        );
        Some(rule.delay)
    }

    /// The wait for `key`'s next tunnel, if one is recorded.
    pub(crate) fn pending(&self, key: &K) -> Option<&Pending> {
        self.pending.get(key)
    }

    /// `key`'s next tunnel is built: its wait is used up.
    pub(crate) fn built(&mut self, key: &K) {
        self.pending.remove(key);
    }
}

impl TorClient {
    /// Watch `tunnel` of `key` until it closes; a close the rule applies
    /// to (Braid proposal 001 §5.3) delays the key's next tunnel. Holds
    /// neither the tunnel nor the client.
    pub(crate) fn watch_close(&self, key: &IsolationKey, tunnel: &TunnelHandle) {
        let closed = tunnel.closed();
        let weak = std::sync::Arc::downgrade(&self.inner);
        let (key, id) = (key.clone(), tunnel.id());
        tokio::spawn(async move {
            let Some(close) = closed.await else {
                return;
            };
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let mut gate = inner.rebuild.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if let Some(d) = gate.note_close(key, id, &close, now, &mut rand::rng()) {
                tracing::info!(
                    "tunnel {id} closed ({}): the next one for its key in {d:?}, \
                     on other middles (Braid proposal 001 §5.3)",
                    close.text
                );
            }
        });
    }

    /// True while `key`'s next tunnel must be built fresh (a spare one
    /// may share the closed one's middles).
    pub(crate) fn rebuild_pending(&self, key: &IsolationKey) -> bool {
        let gate = self.inner.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        gate.pending(key).is_some()
    }

    /// Sleep out `key`'s wait, if any; the middles its next tunnel avoids.
    pub(crate) async fn rebuild_wait(&self, key: &IsolationKey) -> Vec<RelayId> {
        let pending = {
            let gate = self.inner.rebuild.lock().unwrap_or_else(|e| e.into_inner());
            gate.pending(key).cloned()
        };
        let Some(p) = pending else {
            return Vec::new();
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(p.not_before)).await;
        p.avoid
    }

    /// `key`'s next tunnel is built.
    pub(crate) fn rebuilt(&self, key: &IsolationKey) {
        let mut gate = self.inner.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        gate.built(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_core::tunnel::CloseCause;
    use braid_core::tunnel::close::{REBUILD_DELAY_MAX, REBUILD_DELAY_MIN};
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;
    use tor_llcrypto::pk::rsa::RsaIdentity;

    fn close(cause: CloseCause, middles: &[u8]) -> TunnelClose {
        TunnelClose {
            cause,
            text: "why".into(),
            middles: middles
                .iter()
                .map(|b| RsaIdentity::from([*b; 20]))
                .collect(),
        }
    }

    fn rid(b: u8) -> RelayId {
        relay_id(&RsaIdentity::from([b; 20]))
    }

    #[test]
    fn rule_causes_delay_the_key_within_bounds() {
        let now = Instant::now();
        for seed in 0..200 {
            let mut gate = RebuildGate::new(4);
            let mut rng = StdRng::seed_from_u64(seed);
            let d = gate
                .note_close(
                    "k",
                    1,
                    &close(CloseCause::TooManyResumptions, &[2]),
                    now,
                    &mut rng,
                )
                .expect("a delay");
            assert!(
                (REBUILD_DELAY_MIN..=REBUILD_DELAY_MAX).contains(&d),
                "{d:?}"
            );
            let p = gate.pending(&"k").expect("pending");
            assert_eq!(p.not_before, now + d);
            assert_eq!(p.avoid, vec![rid(2)]);
            assert!(gate.pending(&"other").is_none());
        }
    }

    #[test]
    fn other_causes_do_not() {
        let mut gate = RebuildGate::new(4);
        let mut rng = StdRng::seed_from_u64(1);
        for cause in [CloseCause::Lost, CloseCause::Local, CloseCause::Timeout] {
            let got = gate.note_close("k", 1, &close(cause, &[2]), Instant::now(), &mut rng);
            assert_eq!(got, None);
        }
        assert!(gate.pending(&"k").is_none());
    }

    #[test]
    fn same_tunnel_once_and_middles_accumulate_until_built() {
        let mut gate = RebuildGate::new(4);
        let mut rng = StdRng::seed_from_u64(2);
        let now = Instant::now();
        let c = close(CloseCause::ProtocolViolation, &[2, 3]);
        assert!(gate.note_close("k", 1, &c, now, &mut rng).is_some());
        assert!(gate.note_close("k", 1, &c, now, &mut rng).is_none());
        let c2 = close(CloseCause::LegsKilledTogether, &[3, 4]);
        assert!(gate.note_close("k", 2, &c2, now, &mut rng).is_some());
        let p = gate.pending(&"k").expect("pending");
        assert_eq!(p.avoid, vec![rid(3), rid(4), rid(2)]);
        gate.built(&"k");
        assert!(gate.pending(&"k").is_none());
    }

    #[test]
    fn bounded_oldest_first() {
        let mut gate = RebuildGate::new(2);
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        let c = close(CloseCause::TooManyResumptions, &[2]);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(10 * i as u64);
            gate.note_close(k, i as u64, &c, at, &mut rng);
        }
        assert!(gate.pending(&"a").is_none());
        assert!(gate.pending(&"b").is_some() && gate.pending(&"c").is_some());
    }
}
