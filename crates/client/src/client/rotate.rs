//! Policy (c) of live stream migration (Braid proposal 001 §4.4): circuit
//! rotation for long-lived streams. A tunnel takes new streams for
//! `max_circuit_dirtiness` after its first use (C-tor's
//! `MaxCircuitDirtiness`); then it leaves its key's pool and, as in C-tor,
//! lives on while streams use it, so that one middle may see a long SSH
//! session or download for hours. Where its exit takes migrated streams
//! (`BraidMigrate=1`), Braid moves such streams, `rotate_streams_after`
//! after the tunnel left the pool, to a fresh tunnel of the same isolation
//! key to the same exit (the key's own, or one built for them); the old
//! tunnel, with no stream and no handle left, closes. Nothing moves
//! across isolation keys or exits, and the exit learns nothing it does
//! not know (it sees the same streams; proposal 001 §5.1).

use std::time::{Duration, Instant};

use super::TorClient;
use super::migrate::MigrateTo;
use crate::socks::IsolationKey;
use crate::tunnel::TunnelHandle;

/// Retired tunnels remembered at most (the oldest forgotten first: its
/// streams then stay where they are, as in C-tor).
const MAX_RETIRED: usize = 256;

/// Tunnels that left their key's pool for dirtiness with streams on them,
/// with their key and when they left. The list holds a handle of each
/// (so that it can be asked to move its streams, and `braid streams`
/// still lists them) only while streams use it: once none does, the
/// handle goes and the tunnel closes, as C-tor closes a dirty circuit
/// without streams.
#[derive(Debug, Default)]
pub(super) struct Retired(Vec<(IsolationKey, TunnelHandle, Instant)>);

impl Retired {
    /// `tunnel` of `key` left the pool at `now`; kept if streams use it.
    pub(super) fn add(&mut self, key: IsolationKey, tunnel: TunnelHandle, now: Instant) {
        if tunnel.is_closed() || tunnel.streams_open() == 0 {
            return;
        }
        if self.0.len() >= MAX_RETIRED {
            self.0.remove(0);
        }
        self.0.push((key, tunnel, now));
    }

    /// The tunnels that left the pool `after` or longer before `now`
    /// (never, for `None`), taken off the list (each is looked at once);
    /// those closed or without streams are dropped.
    fn due(&mut self, now: Instant, after: Option<Duration>) -> Vec<(IsolationKey, TunnelHandle)> {
        let mut due = Vec::new();
        self.0.retain(|(key, t, since)| {
            if t.is_closed() || t.streams_open() == 0 {
                return false;
            }
            match after {
                Some(after) if now.saturating_duration_since(*since) >= after => {
                    due.push((key.clone(), t.clone()));
                    false
                }
                _ => true,
            }
        });
        due
    }

    /// Tunnels remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl TorClient {
    /// Policy (c): move the streams of the tunnels retired long enough
    /// ago to fresh tunnels of their keys (see the [module docs](self)).
    /// Tunnels retired without streams are dropped on the way (they
    /// close).
    pub(super) fn rotate_due(&self, now: Instant) {
        let after = self.inner.config.rotate_streams_after;
        let due = {
            let mut retired = self.inner.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.due(now, after)
        };
        for (key, from) in due {
            if !from.info().migrate {
                tracing::debug!(
                    "tunnel {} is due for rotation; its exit takes no migrated streams",
                    from.id()
                );
                continue;
            }
            let client = self.clone();
            tokio::spawn(async move { client.rotate(key, from).await });
        }
    }

    /// Move `from`'s migratable streams to another tunnel of `key` to the
    /// same exit (a Conflux set first; built if there is none).
    async fn rotate(&self, key: IsolationKey, from: TunnelHandle) {
        let Some(report) = from.report().await else {
            return;
        };
        if !report.stream_list.iter().any(|s| s.migratable) {
            tracing::debug!(
                "tunnel {} is due for rotation with no migratable stream ({} stream(s))",
                from.id(),
                report.stream_list.len()
            );
            return;
        }
        match self.target_for(&key, &from, MigrateTo::Any).await {
            Ok((to, built)) => {
                let moved = self.move_streams(&from, &to).await;
                tracing::info!(
                    "tunnel {} rotated: {moved} long-lived stream(s) moved to tunnel {}{}",
                    from.id(),
                    to.id(),
                    if built { ", built for them" } else { "" }
                );
            }
            Err(e) => tracing::info!(
                "tunnel {} is due for rotation; its streams stay: {e}",
                from.id()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn due_after_the_delay_once_kept_while_streams_use_it_and_bounded() {
        let mut r = Retired::default();
        let t0 = Instant::now();
        let (t, _task) = TunnelHandle::test_pair(1);
        let key = IsolationKey::default();
        let ten = Some(Duration::from_secs(10));
        r.add(key.clone(), t.clone(), t0);
        assert!(r.due(t0 + Duration::from_secs(5), ten).is_empty());
        assert_eq!(r.len(), 1, "not yet due: kept");
        assert!(r.due(t0 + Duration::from_secs(60), None).is_empty());
        assert_eq!(r.len(), 1, "no rotation: kept while streams use it");
        let due = r.due(t0 + Duration::from_secs(10), ten);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.id(), t.id());
        assert_eq!(r.len(), 0, "looked at once");
        // The list is bounded.
        for _ in 0..MAX_RETIRED + 10 {
            r.add(key.clone(), t.clone(), t0);
        }
        assert_eq!(r.len(), MAX_RETIRED);
        // Without streams a tunnel is not kept: its handle goes.
        t.busy.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!(r.due(t0, ten).is_empty());
        assert_eq!(r.len(), 0);
        r.add(key, t.clone(), t0);
        assert_eq!(r.len(), 0);
    }
}
