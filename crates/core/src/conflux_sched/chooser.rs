//! The bridge from a [`Scheduler`] to the set's
//! [`LegChooser`]: what the set knows of each
//! leg ([`LegInfo`]) becomes what a scheduler reads ([`LegView`]).

use std::time::Instant;

use tor_cell::relaycell::RelayCmd;

use crate::conflux::{LegChooser, LegInfo};
use crate::ids::LegId;

use super::leg::LegView;
use super::scheduler::Scheduler;

/// A [`Scheduler`] used as a set's [`LegChooser`].
pub struct SchedulerChooser {
    inner: Box<dyn Scheduler + Send>,
    /// The legs as the scheduler sees them, refilled for every choice
    /// (kept for its allocation: one choice per message sent).
    views: Vec<LegView>,
}

impl std::fmt::Debug for SchedulerChooser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerChooser")
            .field("scheduler", &self.inner.name())
            .finish()
    }
}

impl SchedulerChooser {
    /// Wrap `inner`.
    pub fn new(inner: Box<dyn Scheduler + Send>) -> Self {
        Self {
            inner,
            views: Vec::new(),
        }
    }

    /// The scheduler's name.
    pub fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// Tell the scheduler what waits to be sent ([`Scheduler::set_backlog`]).
    pub fn set_backlog(&mut self, cells: Option<u64>) {
        self.inner.set_backlog(cells);
    }
}

/// What a scheduler sees of a leg. Before the first SENDME the link RTT
/// stands in for the minimum RTT, as C-tor records it; a leg without a
/// congestion window reads as having no room.
pub fn leg_view(info: &LegInfo) -> LegView {
    LegView {
        id: info.leg,
        min_rtt: info.cc.min_rtt.or(info.link_rtt),
        ewma_rtt: info.cc.ewma_rtt,
        cwnd_cells: info.cc.cwnd.unwrap_or(0),
        inflight_cells: info.cc.inflight.unwrap_or(0),
        can_send: info.cc.can_send,
        est_bandwidth: None,
    }
}

impl LegChooser for SchedulerChooser {
    fn choose(
        &mut self,
        legs: &[LegInfo],
        _current: Option<LegId>,
        _cmd: RelayCmd,
        now: Instant,
    ) -> Option<LegId> {
        self.views.clear();
        self.views.extend(legs.iter().map(leg_view));
        self.inner.choose(&self.views, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conflux::LegCc;
    use crate::conflux_sched::SchedulerKind;
    use std::time::Duration;

    fn info(leg: u8, rtt_ms: u64, can_send: bool) -> LegInfo {
        LegInfo {
            leg: LegId(leg),
            link_rtt: Some(Duration::from_millis(rtt_ms)),
            cc: LegCc {
                cwnd: Some(124),
                inflight: Some(0),
                can_send,
                ..LegCc::default()
            },
            last_seq_sent: 0,
        }
    }

    #[test]
    fn every_scheduler_picks_the_fast_ready_leg_through_the_bridge() {
        let now = Instant::now();
        for kind in SchedulerKind::ALL {
            let mut c = SchedulerChooser::new(kind.build());
            let legs = [info(0, 80, true), info(1, 20, true)];
            assert_eq!(
                c.choose(&legs, None, RelayCmd::DATA, now),
                Some(LegId(1)),
                "{}",
                c.name()
            );
        }
        // LowRTT falls back to the slower leg when the fast one is blocked;
        // MinRTT waits.
        let legs = [info(0, 80, true), info(1, 20, false)];
        let mut low = SchedulerChooser::new(SchedulerKind::LowRtt.build());
        assert_eq!(low.choose(&legs, None, RelayCmd::DATA, now), Some(LegId(0)));
        let mut min = SchedulerChooser::new(SchedulerKind::MinRtt.build());
        assert_eq!(min.choose(&legs, None, RelayCmd::DATA, now), None);
    }

    #[test]
    fn link_rtt_stands_in_before_sendmes() {
        let v = leg_view(&info(3, 42, true));
        assert_eq!(v.min_rtt, Some(Duration::from_millis(42)));
        assert_eq!(v.ewma_rtt, None);
        assert!(v.ready());
    }
}
