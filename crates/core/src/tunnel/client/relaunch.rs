//! Legs of a [`ClientTunnel`]'s Conflux set after the first: LINK on the
//! legs built, a new leg asked for when one failed or was lost (prop 329
//! §2.4.3, §2.4.4), within the launch budget, and when not to resume
//! (Braid proposal 001 §5.3).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::tunnel::error::TunnelError;
use crate::tunnel::event::TunnelEvent;
use crate::tunnel::leg::Leg;
use crate::tunnel::timers::Timer;

use super::{ClientTunnel, Multipath, Phase};

impl ClientTunnel {
    /// Send LINK on built legs that have none yet. While the set is being
    /// built, only once no leg is building and no relaunch is pending (the
    /// set counts as linked once every leg launched so far links, prop 329
    /// §2.4.2, so a fast leg would otherwise link a one-leg set); a new leg
    /// of a linked set at once, claiming only what the exit has surely
    /// delivered ([`crate::tunnel::claim`]).
    pub(super) fn link_built_legs(&mut self, now: Instant) {
        let pending = self.launches.outstanding > 0 || self.timers.is_set(Timer::Relaunch);
        let building = self.legs.iter().any(Leg::building);
        let Some(m) = self.multipath.as_mut() else {
            return;
        };
        if m.set.is_closed() {
            return;
        }
        let linked = m.set.is_linked();
        if !linked && (pending || building) {
            return;
        }
        let slowest = self
            .legs
            .iter()
            .filter_map(|l| l.conflux.and_then(|id| m.set.leg_rtt(id)))
            .max()
            .unwrap_or(Duration::ZERO);
        let delivered = m.sent.delivered(now, slowest);
        for leg in self
            .legs
            .iter_mut()
            .filter(|l| l.built && !l.closed && l.conflux.is_none())
        {
            // A resumable set's new leg claims what it really sent: the
            // exit resends from what it says it has (Braid proposal 001
            // §3.3); C-tor's exits need the claim of `crate::tunnel::claim`.
            let added = if linked && !m.set.is_resumable() {
                m.set.add_leg_delivered(now, delivered)
            } else {
                m.set.add_leg(now)
            };
            match added {
                Ok(id) => {
                    if leg.replacement {
                        tracing::debug!(
                            "conflux: LINK for new {} (last_seqno_sent {delivered})",
                            leg.key
                        );
                    }
                    leg.conflux = Some(id);
                }
                Err(e) => leg.close_on(TunnelError::Conflux(e)),
            }
        }
    }

    /// After a leg failed or closed: ask for a new one if the budget
    /// allows (at once the first time, then with backoff), else close the
    /// tunnel if nothing is left of it. A single circuit is never
    /// relaunched.
    pub(super) fn relaunch_or_fail(&mut self, now: Instant, error: TunnelError) {
        if self.is_closed() || self.multipath.is_none() {
            return;
        }
        // Braid proposal 001 §5.3: past the resumptions §3.5 allows, the
        // client stops resuming and closes the set (its next set waits and
        // avoids its middles: `crate::tunnel::close`).
        if let Some(m) = self.multipath.as_mut()
            && !m.set.may_resume(now)
        {
            let e = m.set.stop_resuming();
            self.close_with(TunnelError::Conflux(e));
            return;
        }
        if self.phase == Phase::Open {
            self.launches.refill(now);
        }
        if self.may_launch() {
            if !self.timers.is_set(Timer::Relaunch) {
                let at = self.launches.next_at(now);
                if at <= now {
                    self.ask_for_leg();
                } else {
                    self.timers.set(Timer::Relaunch, at);
                }
            }
            return;
        }
        let live = self.legs.iter().any(|l| !l.closed);
        let waiting = self.launches.outstanding > 0 || self.timers.is_set(Timer::Relaunch);
        if !live && !waiting {
            tracing::debug!("no leg left after: {error}");
            self.close_with(TunnelError::LaunchBudgetSpent {
                launches: self.launches.launched,
                budget: self.launches.budget,
            });
        } else if self.phase == Phase::Building {
            // The legs left may now link without waiting for this one.
            self.link_built_legs(now);
        }
    }

    /// Whether a leg may be launched now: within the launch budget, or,
    /// past it, for a resumable set that waits for a new leg to resume it.
    /// Such a set is bounded by Braid proposal 001 §3.5 (3 resumptions a
    /// minute, 20 in all, checked above) and its grace (§3.4), and the
    /// backoff still spaces the launches; were the budget to refuse, the
    /// set could only wait out its grace and reset its streams (found by
    /// `braid bench resume`).
    fn may_launch(&self) -> bool {
        self.launches.can_launch()
            || self
                .multipath
                .as_ref()
                .is_some_and(|m| m.set.awaits_resumption())
    }

    /// Ask the driver for a new leg (prop 329 §2.4.3, §2.4.4): to the
    /// set's exit, with no guard or middle another live leg uses (§2.2).
    pub(super) fn ask_for_leg(&mut self) {
        if self.is_closed() || !self.may_launch() {
            return;
        }
        self.launches.take();
        let exit = self.exit.rsa_id;
        let mut avoid: Vec<RsaIdentity> = Vec::new();
        for id in self
            .legs
            .iter()
            .filter(|l| !l.closed)
            .flat_map(|l| l.path.iter())
        {
            if *id != exit && !avoid.contains(id) {
                avoid.push(*id);
            }
        }
        self.events.push_back(TunnelEvent::LegWanted {
            exit: self.exit.clone(),
            avoid,
        });
    }
}

/// Braid proposal 001 §5.3, when not to resume: a linked leg of a
/// resumable set was lost through `guard`; if no linked leg is left and
/// every leg lost in the last second (two or more) went through that same
/// guard, the guard is the likely killer and the set closes instead of
/// resuming (a re-link would confirm to it that the circuits were in use,
/// prop 329 §4.3).
pub(super) fn killed_together(
    m: &mut Multipath,
    guard: Option<RsaIdentity>,
    now: Instant,
) -> Option<TunnelError> {
    let guard = guard?;
    if !m.set.is_resumable() {
        return None;
    }
    if m.losses.len() >= crate::conflux::MAX_LEGS {
        m.losses.pop_front();
    }
    m.losses.push_back((now, guard));
    if m.set.linked_legs() > 0 {
        return None;
    }
    same_guard_burst(&m.losses, &guard, now)
        .map(|legs| TunnelError::LegsKilledTogether { guard, legs })
}

/// How many legs were lost within [`KILLED_TOGETHER_WITHIN`] of `now`, if
/// two or more and every one through `guard`.
fn same_guard_burst(
    losses: &VecDeque<(Instant, RsaIdentity)>,
    guard: &RsaIdentity,
    now: Instant,
) -> Option<usize> {
    let mut n = 0;
    for (t, g) in losses {
        if now.saturating_duration_since(*t) <= KILLED_TOGETHER_WITHIN {
            if g != guard {
                return None;
            }
            n += 1;
        }
    }
    (n >= 2).then_some(n)
}

/// Legs lost this close together count as killed together (Braid
/// proposal 001 §5.3).
const KILLED_TOGETHER_WITHIN: Duration = Duration::from_secs(1);

#[cfg(test)]
mod killed_together_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_burst_through_one_guard_counts_and_any_other_does_not() {
        let now = Instant::now();
        let (a, b) = (RsaIdentity::from([1; 20]), RsaIdentity::from([2; 20]));
        let ms = Duration::from_millis;
        let losses = |v: &[(u64, RsaIdentity)]| -> VecDeque<_> {
            v.iter().map(|(ago, g)| (now - ms(*ago), *g)).collect()
        };
        // Two legs through guard A within a second.
        assert_eq!(
            same_guard_burst(&losses(&[(300, a), (0, a)]), &a, now),
            Some(2)
        );
        // One leg only: a single loss is no burst.
        assert_eq!(same_guard_burst(&losses(&[(0, a)]), &a, now), None);
        // Different guards: resume.
        assert_eq!(
            same_guard_burst(&losses(&[(300, b), (0, a)]), &a, now),
            None
        );
        // Same guard, but more than a second apart.
        assert_eq!(
            same_guard_burst(&losses(&[(1500, a), (0, a)]), &a, now),
            None
        );
        // An old loss elsewhere does not matter.
        assert_eq!(
            same_guard_burst(&losses(&[(5000, b), (200, a), (0, a)]), &a, now),
            Some(2)
        );
    }
}
