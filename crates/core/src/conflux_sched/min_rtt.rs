//! MinRTT: C-tor's `CONFLUX_ALG_MINRTT` (`conflux_decide_circ_minrtt`).
//!
//! Rules, as C-tor 0.4.9 applies them:
//! - take the leg with the lowest RTT ([`LegView::sched_rtt`]: the smoothed
//!   RTT, or the LINK RTT before any SENDME), ignoring legs with no RTT;
//!   on equal RTTs the earliest leg of the set wins (strict `<`);
//! - if that leg cannot send (window full or channel blocked), send on no
//!   leg at all: never fall back to a slower one.
//!
//! So it minimises latency and needs no reorder queue, at the price of
//! using one leg's bandwidth at a time (it still moves to another leg when
//! the smoothed RTTs cross). C-tor runs it for the MIN_LATENCY and LOW_MEM
//! UX, i.e. on exits answering a client that asked for low latency.
//! C-tor's switch rate limit (`cells_until_switch`) is always 0 there, so
//! there is no stickiness to model: the choice depends only on the legs.

use std::time::Instant;

use super::leg::{LegView, lowest_rtt};
use super::scheduler::Scheduler;
use crate::ids::LegId;

/// The MinRTT scheduler. Stateless.
#[derive(Debug, Clone, Default)]
pub struct MinRtt;

impl MinRtt {
    /// A new MinRTT scheduler.
    pub fn new() -> Self {
        MinRtt
    }
}

impl Scheduler for MinRtt {
    fn choose(&mut self, legs: &[LegView], _now: Instant) -> Option<LegId> {
        lowest_rtt(legs, |_| true)
            .filter(|l| l.ready())
            .map(|l| l.id)
    }

    fn name(&self) -> &'static str {
        "minrtt"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::leg::tests::{full, leg};
    use super::*;

    #[test]
    fn lowest_rtt_leg() {
        let now = Instant::now();
        let legs = [leg(0, 30), leg(1, 10), leg(2, 20)];
        assert_eq!(MinRtt::new().choose(&legs, now), Some(LegId(1)));
    }

    #[test]
    fn waits_when_the_lowest_rtt_leg_is_full() {
        let now = Instant::now();
        let legs = [leg(0, 30), full(leg(1, 10)), leg(2, 20)];
        assert_eq!(MinRtt::new().choose(&legs, now), None);
        let blocked = LegView {
            can_send: false,
            ..leg(1, 10)
        };
        assert_eq!(MinRtt::new().choose(&[leg(0, 30), blocked], now), None);
    }

    #[test]
    fn ties_go_to_the_first_leg_of_the_set() {
        let now = Instant::now();
        assert_eq!(
            MinRtt::new().choose(&[leg(4, 10), leg(2, 10)], now),
            Some(LegId(4))
        );
        // Even when the first one cannot send: C-tor then sends nothing.
        assert_eq!(
            MinRtt::new().choose(&[full(leg(4, 10)), leg(2, 10)], now),
            None
        );
    }

    #[test]
    fn smoothed_rtt_decides_and_unmeasured_legs_are_ignored() {
        let now = Instant::now();
        let mut a = leg(0, 10);
        a.ewma_rtt = Some(Duration::from_millis(50));
        let b = leg(1, 20);
        assert_eq!(MinRtt::new().choose(&[a, b], now), Some(LegId(1)));
        let none = LegView {
            min_rtt: None,
            ewma_rtt: None,
            ..leg(2, 1)
        };
        let zero = LegView {
            min_rtt: Some(Duration::ZERO),
            ewma_rtt: None,
            ..leg(3, 1)
        };
        assert_eq!(MinRtt::new().choose(&[none, zero, b], now), Some(LegId(1)));
        assert_eq!(MinRtt::new().choose(&[none, zero], now), None);
        assert_eq!(MinRtt::new().choose(&[], now), None);
    }
}
