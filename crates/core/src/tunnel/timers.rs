//! The tunnel's timer table: one deadline per [`Timer`], and the earliest
//! of them and of the parts' own deadlines (the Conflux set's LINKED
//! deadlines, the streams' connect deadlines) is the tunnel's
//! [`poll_timeout`](super::ClientTunnel::poll_timeout).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::ids::LegKey;

/// A timer of the tunnel itself. Timers due at the same instant fire in
/// this order: a leg's build timeout before the tunnel's open timeout, so
/// a single circuit that never builds fails with the error that names the
/// relay it was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// A leg's circuit must be built by then
    /// ([`TunnelConfig::leg_build_timeout`](super::TunnelConfig::leg_build_timeout)).
    LegBuild(LegKey),
    /// The next leg relaunch may go (backoff between relaunches).
    Relaunch,
    /// The tunnel must be open by then
    /// ([`TunnelConfig::open_timeout`](super::TunnelConfig::open_timeout)).
    Open,
}

/// Deadlines by timer; at most one per timer, so the table holds at most
/// two plus one per live leg.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: BTreeMap<Timer, Instant>,
}

impl TimerTable {
    /// Arm `timer` for `at` (replacing its previous deadline).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines.insert(timer, at);
    }

    /// Disarm `timer`.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        self.deadlines.remove(&timer);
    }

    /// True if `timer` is armed.
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.deadlines.contains_key(&timer)
    }

    /// The earliest deadline of the table and of `others`.
    pub(crate) fn next(
        &self,
        others: impl IntoIterator<Item = Option<Instant>>,
    ) -> Option<Instant> {
        self.deadlines
            .values()
            .copied()
            .chain(others.into_iter().flatten())
            .min()
    }

    /// Disarm and return every timer due at `now`, earliest first.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Instant, Timer)> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, at)| (*at, *t))
            .collect();
        due.sort();
        for (_, t) in &due {
            self.deadlines.remove(t);
        }
        due.into_iter().map(|(_, t)| t).collect()
    }

    /// Timers armed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_leg_build_timeout_fires_before_the_open_timeout_at_the_same_instant() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::Open, t0);
        t.set(Timer::LegBuild(LegKey(7)), t0);
        assert_eq!(
            t.take_expired(t0),
            vec![Timer::LegBuild(LegKey(7)), Timer::Open]
        );
    }

    #[test]
    fn earliest_first_and_disarmed_once_taken() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = TimerTable::default();
        t.set(Timer::Open, t0 + ms(300));
        t.set(Timer::LegBuild(LegKey(2)), t0 + ms(100));
        t.set(Timer::Relaunch, t0 + ms(200));
        assert_eq!(t.next([None]), Some(t0 + ms(100)));
        assert_eq!(t.next([Some(t0 + ms(50))]), Some(t0 + ms(50)));
        assert!(t.take_expired(t0 + ms(99)).is_empty());
        assert_eq!(
            t.take_expired(t0 + ms(250)),
            vec![Timer::LegBuild(LegKey(2)), Timer::Relaunch]
        );
        assert_eq!(t.len(), 1);
        assert!(t.take_expired(t0 + ms(250)).is_empty(), "fired once");
        // Re-arming replaces.
        t.set(Timer::Open, t0 + ms(400));
        assert_eq!(t.len(), 1);
        t.cancel(Timer::Open);
        assert_eq!(t.next([None]), None);
        assert!(!t.is_set(Timer::Open));
    }
}
