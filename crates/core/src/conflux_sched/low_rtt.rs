//! LowRTT: C-tor's `CONFLUX_ALG_LOWRTT` (`conflux_decide_circ_lowrtt`).
//!
//! Rules, as C-tor 0.4.9 applies them:
//! - skip every leg that cannot send (`inflight >= cwnd`, or its channel
//!   blocked);
//! - of the rest, take the one with the lowest RTT ([`LegView::sched_rtt`]:
//!   smoothed RTT, or the LINK RTT before any SENDME), ignoring legs with
//!   no RTT; on equal RTTs the earliest leg of the set wins (strict `<`);
//! - none left: send nothing.
//!
//! The resulting "stickiness" is only this: the lowest-RTT leg is used
//! until its window fills, then the next one, and the sender returns to
//! the fastest leg as soon as its window opens. C-tor has a switch rate
//! limit (`cells_until_switch`, `conflux_can_switch`) but sets it to 0 on
//! every switch and at the first leg, so it never holds a leg; nor does
//! the current leg win ties. This is what C-tor runs for HIGH_THROUGHPUT
//! and NO_OPINION, so for every download from a C-tor exit. It fills
//! every window, which maximises throughput and lets the receiver's
//! reorder queue grow to about `bandwidth_fast × (RTT_slow − RTT_fast)/2`.

use std::time::Instant;

use super::leg::{LegView, lowest_rtt};
use super::scheduler::Scheduler;
use crate::ids::LegId;

/// The LowRTT scheduler. Stateless.
#[derive(Debug, Clone, Default)]
pub struct LowRtt;

impl LowRtt {
    /// A new LowRTT scheduler.
    pub fn new() -> Self {
        LowRtt
    }
}

impl Scheduler for LowRtt {
    fn choose(&mut self, legs: &[LegView], _now: Instant) -> Option<LegId> {
        lowest_rtt(legs, LegView::ready).map(|l| l.id)
    }

    fn name(&self) -> &'static str {
        "lowrtt"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::leg::tests::{full, leg};
    use super::*;

    #[test]
    fn lowest_rtt_leg_with_room() {
        let now = Instant::now();
        let mut s = LowRtt::new();
        assert_eq!(
            s.choose(&[leg(0, 30), leg(1, 10), leg(2, 20)], now),
            Some(LegId(1))
        );
        assert_eq!(
            s.choose(&[leg(0, 30), full(leg(1, 10)), leg(2, 20)], now),
            Some(LegId(2))
        );
        let blocked = LegView {
            can_send: false,
            ..leg(2, 20)
        };
        assert_eq!(
            s.choose(&[leg(0, 30), full(leg(1, 10)), blocked], now),
            Some(LegId(0))
        );
        assert_eq!(s.choose(&[full(leg(0, 30)), full(leg(1, 10))], now), None);
    }

    #[test]
    fn returns_to_the_fast_leg_as_soon_as_it_has_room() {
        // No stickiness to the slower leg: C-tor's cells_until_switch is 0.
        let now = Instant::now();
        let mut s = LowRtt::new();
        let fast = leg(0, 10);
        let slow = leg(1, 50);
        assert_eq!(s.choose(&[full(fast), slow], now), Some(LegId(1)));
        assert_eq!(s.choose(&[full(fast), slow], now), Some(LegId(1)));
        let mut opened = full(fast);
        opened.inflight_cells -= 1;
        assert_eq!(s.choose(&[opened, slow], now), Some(LegId(0)));
    }

    #[test]
    fn ties_go_to_the_first_ready_leg_not_the_current_one() {
        let now = Instant::now();
        let mut s = LowRtt::new();
        let (a, b) = (leg(0, 10), leg(1, 10));
        assert_eq!(s.choose(&[full(a), b], now), Some(LegId(1)));
        // b was used last, but a (first in the set, same RTT) wins again.
        assert_eq!(s.choose(&[a, b], now), Some(LegId(0)));
        assert_eq!(s.choose(&[b, a], now), Some(LegId(1)));
    }

    #[test]
    fn unmeasured_legs_are_never_used() {
        let now = Instant::now();
        let mut s = LowRtt::new();
        let none = LegView {
            min_rtt: None,
            ewma_rtt: Some(Duration::ZERO),
            ..leg(0, 1)
        };
        assert_eq!(s.choose(&[none], now), None);
        assert_eq!(s.choose(&[none, leg(1, 500)], now), Some(LegId(1)));
    }
}
