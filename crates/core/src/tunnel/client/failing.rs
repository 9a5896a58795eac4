//! Policy (b) of Braid proposal 001 §4.4: a tunnel that keeps losing legs
//! (lost, or failed to build or link) should be left: its streams move to
//! another tunnel of their key to the same exit. The tunnel decides when
//! it keeps failing ([`TunnelEvent::KeepsFailing`], once); the client
//! moves the streams.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ClientTunnel;
use crate::tunnel::TunnelEvent;

/// Legs lost or failed within [`FAILING_WINDOW`] that make a tunnel one
/// that keeps failing.
pub(crate) const FAILING_LOSSES: usize = 3;
/// See [`FAILING_LOSSES`].
pub(crate) const FAILING_WINDOW: Duration = Duration::from_secs(60);

/// When legs were lost lately, and whether the driver was told.
#[derive(Debug, Default)]
pub(crate) struct Failing {
    /// At most [`FAILING_LOSSES`] times, oldest first.
    recent: VecDeque<Instant>,
    told: bool,
}

impl Failing {
    /// A leg was lost or failed at `now`: the number of losses within
    /// the window, if this one makes the tunnel one that keeps failing
    /// (once).
    fn note(&mut self, now: Instant) -> Option<usize> {
        self.recent
            .retain(|t| now.saturating_duration_since(*t) < FAILING_WINDOW);
        if self.recent.len() >= FAILING_LOSSES {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.told || self.recent.len() < FAILING_LOSSES {
            return None;
        }
        self.told = true;
        Some(self.recent.len())
    }
}

impl ClientTunnel {
    /// A leg was lost or failed at `now` (after its event): report
    /// [`TunnelEvent::KeepsFailing`] when that makes the tunnel one that
    /// keeps failing.
    pub(super) fn note_leg_trouble(&mut self, now: Instant) {
        if let Some(losses) = self.failing.note(now) {
            tracing::info!(
                "{losses} legs lost or failed within {FAILING_WINDOW:?}: the tunnel keeps failing"
            );
            self.events.push_back(TunnelEvent::KeepsFailing {
                losses,
                within: FAILING_WINDOW,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn three_losses_within_a_minute_tell_once() {
        let t0 = Instant::now();
        let mut f = Failing::default();
        assert_eq!(f.note(t0), None);
        assert_eq!(f.note(t0 + Duration::from_secs(30)), None);
        // The first is past the window by now: still two.
        assert_eq!(f.note(t0 + Duration::from_secs(61)), None);
        assert_eq!(f.note(t0 + Duration::from_secs(62)), Some(3));
        // Once only.
        assert_eq!(f.note(t0 + Duration::from_secs(63)), None);
        assert!(f.recent.len() <= FAILING_LOSSES);
    }
}
