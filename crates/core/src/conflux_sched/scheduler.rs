//! The scheduler interface and the list of schedulers.

use std::fmt;
use std::time::Instant;

use super::ecf::Ecf;
use super::leg::LegView;
use super::low_rtt::LowRtt;
use super::min_rtt::MinRtt;
use crate::ids::LegId;

/// Chooses the leg for the next multiplexed cell of a Conflux set.
///
/// The caller asks before each cell (C-tor `conflux_decide_circ_for_send`),
/// sends on the answer, and asks again after any change (a SENDME, a
/// channel unblocking). `None` means "send nothing now"; a correct
/// scheduler never names a leg whose [`LegView::ready`] is false, and
/// never a leg that is not in `legs`. Sending the SWITCH cell when the
/// answer differs from the previous leg is the caller's business.
pub trait Scheduler: fmt::Debug {
    /// The leg to send the next cell on, or `None` to wait.
    fn choose(&mut self, legs: &[LegView], now: Instant) -> Option<LegId>;

    /// A short name for reports ("minrtt", "lowrtt", "ecf").
    fn name(&self) -> &'static str;

    /// Cells waiting to be sent on the set (data read from streams, not yet
    /// packaged), or `None` when that is unknown: the sender has more than
    /// it buffers, a bulk transfer. Schedulers that weigh the remaining
    /// transfer use it; the others ignore it. Until it is called, the
    /// backlog is unknown.
    fn set_backlog(&mut self, cells: Option<u64>) {
        let _ = cells;
    }
}

/// The schedulers Braid has, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// [`MinRtt`].
    MinRtt,
    /// [`LowRtt`].
    LowRtt,
    /// [`Ecf`].
    Ecf,
}

impl SchedulerKind {
    /// Every scheduler.
    pub const ALL: [SchedulerKind; 3] = [
        SchedulerKind::MinRtt,
        SchedulerKind::LowRtt,
        SchedulerKind::Ecf,
    ];

    /// A fresh scheduler of this kind.
    pub fn build(self) -> Box<dyn Scheduler + Send> {
        match self {
            SchedulerKind::MinRtt => Box::new(MinRtt::new()),
            SchedulerKind::LowRtt => Box::new(LowRtt::new()),
            SchedulerKind::Ecf => Box::new(Ecf::new()),
        }
    }

    /// The scheduler's [`Scheduler::name`].
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::MinRtt => "minrtt",
            SchedulerKind::LowRtt => "lowrtt",
            SchedulerKind::Ecf => "ecf",
        }
    }

    /// The kind with this name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_round_trip() {
        for k in SchedulerKind::ALL {
            assert_eq!(SchedulerKind::from_name(k.name()), Some(k));
            assert_eq!(k.build().name(), k.name());
        }
        assert_eq!(SchedulerKind::from_name("cwndrtt"), None);
    }

    fn arb_leg() -> impl Strategy<Value = (Option<u64>, Option<u64>, u64, u64, bool, Option<u64>)> {
        (
            prop::option::weighted(0.9, 0u64..400_000),
            prop::option::weighted(0.8, 0u64..600_000),
            0u64..300,
            0u64..320,
            prop::bool::weighted(0.8),
            prop::option::of(0u64..20_000),
        )
    }

    /// Up to 8 legs (C-tor's `cfx_max_legs_set`) with distinct ids, RTTs
    /// in µs (zero included: "no measurement"), windows full or not.
    fn arb_legs() -> impl Strategy<Value = Vec<LegView>> {
        prop::collection::vec(arb_leg(), 0..=8).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (min, ewma, cwnd, inflight, can_send, bw))| LegView {
                    id: LegId(u8::try_from(i).unwrap()),
                    min_rtt: min.map(Duration::from_micros),
                    ewma_rtt: ewma.map(Duration::from_micros),
                    cwnd_cells: cwnd,
                    inflight_cells: inflight,
                    can_send,
                    est_bandwidth: bw,
                })
                .collect()
        })
    }

    fn find(legs: &[LegView], id: LegId) -> &LegView {
        legs.iter().find(|l| l.id == id).unwrap()
    }

    proptest! {
        #[test]
        fn never_picks_a_leg_that_cannot_send(
            legs in arb_legs(),
            backlog in prop::option::of(0u64..100_000),
        ) {
            let now = Instant::now();
            for kind in SchedulerKind::ALL {
                let mut s = kind.build();
                if let Some(b) = backlog {
                    s.set_backlog(Some(b));
                }
                if let Some(id) = s.choose(&legs, now) {
                    let leg = find(&legs, id);
                    prop_assert!(leg.ready(), "{kind} picked {leg:?}");
                    prop_assert!(leg.sched_rtt().is_some(), "{kind} picked {leg:?}");
                }
            }
        }

        #[test]
        fn low_rtt_picks_whenever_a_measured_leg_can_send(legs in arb_legs()) {
            let now = Instant::now();
            let can = legs.iter().any(|l| l.ready() && l.sched_rtt().is_some());
            let got = LowRtt::new().choose(&legs, now);
            prop_assert_eq!(got.is_some(), can);
            // ... and it is the lowest RTT among the ready legs.
            if let Some(id) = got {
                let rtt = find(&legs, id).sched_rtt().unwrap();
                for l in legs.iter().filter(|l| l.ready()) {
                    prop_assert!(l.sched_rtt().is_none_or(|r| r >= rtt));
                }
            }
        }

        #[test]
        fn min_rtt_picks_iff_the_lowest_rtt_leg_can_send(legs in arb_legs()) {
            let now = Instant::now();
            let lowest = legs
                .iter()
                .filter(|l| l.sched_rtt().is_some())
                .min_by_key(|l| l.sched_rtt());
            let got = MinRtt::new().choose(&legs, now);
            match lowest {
                Some(l) if l.ready() => prop_assert_eq!(got, Some(l.id)),
                _ => prop_assert_eq!(got, None),
            }
        }

        #[test]
        fn ecf_takes_the_fastest_leg_when_it_can_and_is_lowrtt_without_backlog(
            legs in arb_legs(),
            backlog in 0u64..100_000,
        ) {
            let now = Instant::now();
            let lowest = legs
                .iter()
                .filter(|l| l.sched_rtt().is_some())
                .min_by_key(|l| l.sched_rtt());
            let mut ecf = Ecf::new();
            ecf.set_backlog(Some(backlog));
            let got = ecf.choose(&legs, now);
            if let Some(l) = lowest.filter(|l| l.ready()) {
                prop_assert_eq!(got, Some(l.id));
            }
            // With the backlog unknown (bulk), ECF never waits.
            prop_assert_eq!(Ecf::new().choose(&legs, now), LowRtt::new().choose(&legs, now));
            // Whatever ECF picks, LowRTT would have picked too (ECF only
            // ever withholds the slow leg).
            if got.is_some() {
                prop_assert_eq!(got, LowRtt::new().choose(&legs, now));
            }
        }

        #[test]
        fn deterministic_for_equal_inputs(
            legs in arb_legs(),
            backlog in 0u64..100_000,
            steps in 1usize..20,
        ) {
            let now = Instant::now();
            for kind in SchedulerKind::ALL {
                let (mut a, mut b) = (kind.build(), kind.build());
                for i in 0..steps {
                    let t = now + Duration::from_millis(u64::try_from(i).unwrap());
                    a.set_backlog(Some(backlog));
                    b.set_backlog(Some(backlog));
                    prop_assert_eq!(a.choose(&legs, t), b.choose(&legs, t));
                }
            }
        }
    }
}
