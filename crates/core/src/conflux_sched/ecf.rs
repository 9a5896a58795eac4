//! ECF: Earliest Completion First, for legs of different RTT and bandwidth.
//!
//! After Y. Lim, E. Nahum, D. Towsley, R. Gibbens, "ECF: An MPTCP Path
//! Scheduler to Manage Heterogeneous Paths", CoNEXT 2017 (the same concern
//! as BLEST, Ferlin et al., IFIP Networking 2016: a cell sent on a slow
//! path arrives after cells sent later on the fast path, so the receiver
//! holds the fast path's cells in its reorder queue meanwhile).
//!
//! The idea: when the fastest leg has room, use it. When it has not, a
//! slower leg with room may carry the next cell only if that makes the
//! data arrive sooner than waiting for the fastest leg would: if the
//! fastest leg alone would deliver the whole remaining backlog before the
//! slower leg delivers this one cell, wait instead. Do not send on the
//! slow leg what the fast leg would deliver sooner.
//!
//! The rule here, with `k` the backlog in cells (this one included),
//! `rate` a leg's cells per second ([`LegView::rate`]: the bandwidth
//! estimate, else `cwnd / RTT`), RTTs from [`LegView::sched_rtt`]:
//!
//! - `f` = the lowest-RTT leg (ties: the earliest in the set). If `f` can
//!   send, send on `f`.
//! - `s` = the lowest-RTT leg that can send (what LowRTT would take). None:
//!   wait.
//! - backlog unknown ([`Scheduler::set_backlog`] never called, or called
//!   with `None`): a bulk transfer, for which using every leg finishes
//!   first: send on `s`.
//! - `T_f = RTT_f/2 + k/rate_f` (the fastest leg delivers all `k`) and
//!   `T_s = RTT_s/2 + 1/rate_s + δ` (the slow leg delivers this cell),
//!   `δ` the larger queueing delay (`EWMA − min`) of the two, halved.
//!   Wait if `T_f < (1 + w·β)·T_s`, else send on `s`. `w` is 1 while
//!   waiting, 0 otherwise, `β = 0.25`: ECF's hysteresis, so the decision
//!   does not flap from one cell to the next.
//!
//! Departures from the paper, on purpose:
//! - The paper compares times to acknowledgement (`n·RTT_f` against
//!   `RTT_s`); what Conflux cares about is arrival at the receiver, so
//!   one-way times are compared, taking half the RTT for each (legs are
//!   assumed about symmetric).
//! - The paper's second test (send on the slow path anyway when
//!   `k/cwnd_s · RTT_s < 2·RTT_f + δ`) is left out: with a backlog smaller
//!   than the slow window it rates the slow path's time as a fraction of
//!   its RTT, while a cell on it never arrives before its one-way delay;
//!   on a 10 ms + 200 ms set it would put the last cells of every
//!   transfer on the 200 ms leg.
//! - Rates are in cells and may come from a bandwidth estimate instead of
//!   the window.
//!
//! Reorder budget ([`Ecf::with_reorder_budget`], off by default), after
//! BLEST (S. Ferlin, Ö. Alay, O. Mehani, R. Boreli, "BLEST: Blocking
//! Estimation-based MPTCP Scheduler for Heterogeneous Networks", IFIP
//! Networking 2016): BLEST skips the slow subflow when what the fast one
//! would send during the slow one's RTT would not fit the receive window.
//! Conflux has no receive window, but Braid's receiver has a bounded
//! reorder queue that closes the set when overrun. A cell sent on `s` lets
//! `f` deliver about `rate_f · (RTT_s/2 + 1/rate_s − RTT_f/2)` later cells
//! before it, which the receiver must hold; if that is over the budget,
//! wait for `f` instead, whatever the backlog. This trades the slow leg's
//! bandwidth for reorder memory.
//!
//! Waiting is only ever a choice between legs: ECF never picks a leg
//! LowRTT would not, and with the backlog unknown and no budget it is
//! exactly LowRTT.

use std::time::{Duration, Instant};

use super::leg::{LegView, duration_us, lowest_rtt};
use super::scheduler::Scheduler;
use crate::ids::LegId;

/// ECF's hysteresis, percent (the paper's β = 0.25).
const BETA_PCT: u128 = 25;

/// The ECF scheduler.
#[derive(Debug, Clone, Default)]
pub struct Ecf {
    /// Cells waiting to be sent, if known.
    backlog: Option<u64>,
    /// The last decision was to wait for the fastest leg.
    waiting: bool,
    /// Most cells the receiver should have to hold out of order.
    reorder_budget: Option<u64>,
}

impl Ecf {
    /// A new ECF scheduler, backlog unknown.
    pub fn new() -> Self {
        Ecf::default()
    }

    /// A new ECF scheduler that also never sends on a slower leg when the
    /// receiver would have to hold more than `cells` out of order for it.
    pub fn with_reorder_budget(cells: u64) -> Self {
        Ecf {
            reorder_budget: Some(cells),
            ..Ecf::default()
        }
    }

    /// Cells `fast` is expected to deliver ahead of a cell sent on `slow`
    /// now (what the receiver holds meanwhile); `None` without RTTs.
    fn reorder_cost(fast: &LegView, slow: &LegView) -> Option<u64> {
        let rate_f = u128::from(fast.rate()?);
        let rate_s = u128::from(slow.rate()?.max(1));
        let arrive_s = half_us(slow.sched_rtt()?) + 1_000_000 / rate_s;
        let lead_us = arrive_s.saturating_sub(half_us(fast.sched_rtt()?));
        Some(u64::try_from(rate_f * lead_us / 1_000_000).unwrap_or(u64::MAX))
    }

    /// True if the last decision was to wait for the fastest leg.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Should the next cell wait for `fast` rather than go on `slow`?
    fn should_wait(&self, fast: &LegView, slow: &LegView, backlog: u64) -> bool {
        let (Some(rtt_f), Some(rtt_s), Some(rate_f), Some(rate_s)) =
            (fast.sched_rtt(), slow.sched_rtt(), fast.rate(), slow.rate())
        else {
            return false;
        };
        let k = u128::from(backlog.max(1));
        let delta = fast.queue_delay().max(slow.queue_delay()) / 2;
        let t_fast = half_us(rtt_f) + k * 1_000_000 / u128::from(rate_f.max(1));
        let t_slow =
            half_us(rtt_s) + 1_000_000 / u128::from(rate_s.max(1)) + u128::from(duration_us(delta));
        let w = u128::from(self.waiting);
        t_fast * 100 < (100 + w * BETA_PCT) * t_slow
    }
}

/// Half a duration, in µs.
fn half_us(d: Duration) -> u128 {
    u128::from(duration_us(d)) / 2
}

impl Scheduler for Ecf {
    fn choose(&mut self, legs: &[LegView], _now: Instant) -> Option<LegId> {
        let fast = lowest_rtt(legs, |_| true)?;
        if fast.ready() {
            self.waiting = false;
            return Some(fast.id);
        }
        let slow = lowest_rtt(legs, LegView::ready)?;
        if let Some(budget) = self.reorder_budget
            && Self::reorder_cost(fast, slow).is_some_and(|c| c > budget)
        {
            self.waiting = true;
            return None;
        }
        let Some(backlog) = self.backlog else {
            self.waiting = false;
            return Some(slow.id);
        };
        if self.should_wait(fast, slow, backlog) {
            self.waiting = true;
            None
        } else {
            self.waiting = false;
            Some(slow.id)
        }
    }

    fn name(&self) -> &'static str {
        if self.reorder_budget.is_some() {
            "ecf-budget"
        } else {
            "ecf"
        }
    }

    fn set_backlog(&mut self, cells: Option<u64>) {
        self.backlog = cells;
    }
}

#[cfg(test)]
mod tests {
    use super::super::leg::tests::{full, leg};
    use super::*;

    /// Fast: 10 ms, cwnd 100 (10 000 cells/s), full. Slow: 50 ms, cwnd 100
    /// (2 000 cells/s), empty. T_s = 25 + 0.5 ms; T_f = 5 + 0.1·k ms, so
    /// ECF waits below k = 205 (k = 268 while already waiting).
    fn set() -> [LegView; 2] {
        [full(leg(0, 10)), leg(1, 50)]
    }

    #[test]
    fn fastest_leg_when_it_has_room() {
        let now = Instant::now();
        let mut s = Ecf::new();
        s.set_backlog(Some(1));
        assert_eq!(s.choose(&[leg(0, 10), leg(1, 50)], now), Some(LegId(0)));
        assert!(!s.is_waiting());
    }

    #[test]
    fn unknown_backlog_is_bulk() {
        let now = Instant::now();
        assert_eq!(Ecf::new().choose(&set(), now), Some(LegId(1)));
    }

    #[test]
    fn waits_when_the_fast_leg_finishes_first() {
        let now = Instant::now();
        let mut s = Ecf::new();
        s.set_backlog(Some(100));
        assert_eq!(s.choose(&set(), now), None);
        assert!(s.is_waiting());
        s.set_backlog(Some(204));
        assert_eq!(s.choose(&set(), now), None);
        s.set_backlog(Some(100_000));
        assert_eq!(s.choose(&set(), now), Some(LegId(1)));
        assert!(!s.is_waiting());
        // Back to a small backlog, then unknown again (bulk): every leg.
        s.set_backlog(Some(100));
        assert_eq!(s.choose(&set(), now), None);
        s.set_backlog(None);
        assert_eq!(s.choose(&set(), now), Some(LegId(1)));
    }

    #[test]
    fn hysteresis() {
        let now = Instant::now();
        let mut s = Ecf::new();
        // Not waiting: 250 cells take the fast leg 30 ms > 25.5 ms.
        s.set_backlog(Some(250));
        assert_eq!(s.choose(&set(), now), Some(LegId(1)));
        // Once waiting, the bar is 1.25 × 25.5 ms.
        s.set_backlog(Some(100));
        assert_eq!(s.choose(&set(), now), None);
        s.set_backlog(Some(250));
        assert_eq!(s.choose(&set(), now), None);
        s.set_backlog(Some(300));
        assert_eq!(s.choose(&set(), now), Some(LegId(1)));
    }

    #[test]
    fn bandwidth_estimate_counts() {
        let now = Instant::now();
        let mut s = Ecf::new();
        s.set_backlog(Some(100));
        let mut legs = set();
        // A fast leg that only moves 1 000 cells/s needs 105 ms for 100
        // cells: the slow leg delivers sooner.
        legs[0].est_bandwidth = Some(1000);
        assert_eq!(s.choose(&legs, now), Some(LegId(1)));
    }

    #[test]
    fn queueing_delay_counts_against_the_slow_leg() {
        let now = Instant::now();
        let mut s = Ecf::new();
        // 220 cells: 27 ms on the fast leg against 25.5 ms: send on slow...
        s.set_backlog(Some(220));
        assert_eq!(s.choose(&set(), now), Some(LegId(1)));
        // ... unless the slow leg's RTT varies by 10 ms (queueing).
        let mut legs = set();
        legs[1].ewma_rtt = Some(Duration::from_millis(52));
        legs[1].min_rtt = Some(Duration::from_millis(42));
        assert_eq!(s.choose(&legs, now), None);
    }

    #[test]
    fn reorder_budget() {
        let now = Instant::now();
        // A cell on the slow leg arrives 20.5 ms after one on the fast
        // leg, which delivers 10 000 cells/s: 205 cells to hold.
        let mut s = Ecf::with_reorder_budget(204);
        assert_eq!(s.choose(&set(), now), None);
        s.set_backlog(Some(100_000));
        assert_eq!(s.choose(&set(), now), None);
        let mut s = Ecf::with_reorder_budget(205);
        assert_eq!(s.choose(&set(), now), Some(LegId(1)));
        // The fast leg, when it has room, is never held back.
        let mut s = Ecf::with_reorder_budget(0);
        assert_eq!(s.choose(&[leg(0, 10), leg(1, 50)], now), Some(LegId(0)));
        // Equal RTTs cost only the serialisation time.
        assert_eq!(s.choose(&[full(leg(0, 10)), leg(1, 10)], now), None);
        let mut s = Ecf::with_reorder_budget(20);
        assert_eq!(
            s.choose(&[full(leg(0, 10)), leg(1, 10)], now),
            Some(LegId(1))
        );
    }

    #[test]
    fn nothing_to_send_on() {
        let now = Instant::now();
        let mut s = Ecf::new();
        assert_eq!(s.choose(&[], now), None);
        assert_eq!(s.choose(&[full(leg(0, 10)), full(leg(1, 50))], now), None);
    }
}
