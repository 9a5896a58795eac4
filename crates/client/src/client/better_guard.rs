//! guard-spec §4.9: a circuit built through a guard that is not primary,
//! while a primary guard may still work, waits (`<waiting_for_better_guard>`)
//! instead of carrying streams at once. Meanwhile a circuit through the
//! better guard is tried: if it completes through a primary guard it is
//! used and the held one dropped (it "blocks" the held circuit); the held
//! one is used once every primary guard is known unreachable, or once it
//! has waited NONPRIMARY_GUARD_CONNECT_TIMEOUT (the rule is braid-dir's
//! [`GuardSet::waiting_circuit_usable`](braid_dir::GuardSet::waiting_circuit_usable)).

use std::time::{Duration, Instant, SystemTime};

use braid_dir::SuccessOutcome;

use super::TorClient;
use crate::tunnel::TunnelHandle;

/// Attempts at a better circuit while one is held: each either completes
/// (through a primary guard it wins), fails (its guard is marked
/// unreachable, which may free the held one) or runs into the wait's end.
const BETTER_ATTEMPTS: usize = 3;

impl TorClient {
    /// Hold `held` while a circuit through a better guard is tried; the
    /// tunnel to use.
    pub(super) async fn wait_for_better_guard(
        &self,
        held: TunnelHandle,
        port: Option<u16>,
        avoid: &[braid_dir::RelayId],
    ) -> TunnelHandle {
        let start = Instant::now();
        for _ in 0..BETTER_ATTEMPTS {
            let limit = {
                let guards = self.inner.guards.lock().unwrap_or_else(|e| e.into_inner());
                if guards.waiting_circuit_usable(start.elapsed(), SystemTime::now()) {
                    break;
                }
                guards
                    .params()
                    .nonprimary_connect_timeout
                    .saturating_sub(start.elapsed())
            };
            match tokio::time::timeout(
                limit.max(Duration::from_millis(1)),
                self.build_attempt(port, avoid),
            )
            .await
            {
                // A circuit through a primary guard: it blocks the held one.
                Ok(Ok((better, Some(SuccessOutcome::UseNow) | None))) => {
                    tracing::info!(
                        "a circuit through a better guard completed; the one held for it is dropped"
                    );
                    return better;
                }
                // Another non-primary guard: not better; the held one stays.
                Ok(Ok((_, Some(SuccessOutcome::WaitForBetterGuard)))) => {}
                // Failed: its guard may now be marked unreachable.
                Ok(Err(e)) => tracing::debug!("better-guard attempt failed: {e}"),
                // NONPRIMARY_GUARD_CONNECT_TIMEOUT passed.
                Err(_) => break,
            }
        }
        held
    }
}
