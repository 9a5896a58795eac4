//! The per-leg input of a scheduler.

use std::time::Duration;

use crate::ids::LegId;

/// What a scheduler knows about one leg of a Conflux set at the moment it
/// decides. The caller fills it from the leg's congestion control (for a
/// TOR_VEGAS leg: [`Vegas`](crate::cc::Vegas)'s `cwnd`, `inflight`,
/// `ewma_rtt`, `rtt().min_rtt()`) and from its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegView {
    /// The leg.
    pub id: LegId,
    /// Lowest RTT seen on the leg; before any SENDME, the RTT from LINK to
    /// LINKED (C-tor records that as the leg's first RTT).
    pub min_rtt: Option<Duration>,
    /// Smoothed RTT from SENDMEs (proposal 324 §2.1), once measured.
    pub ewma_rtt: Option<Duration>,
    /// Congestion window, cells.
    pub cwnd_cells: u64,
    /// DATA cells sent and not yet acknowledged by a SENDME.
    pub inflight_cells: u64,
    /// The leg is not blocked locally: its channel takes cells (C-tor: not
    /// `circuit_blocked_on_n_chan` / `_p_chan`). The window is checked
    /// separately, see [`LegView::ready`].
    pub can_send: bool,
    /// Estimated bottleneck bandwidth of the leg, cells per second, if the
    /// caller has one (a delivery-rate estimate). Schedulers that need a
    /// rate and have none use `cwnd / RTT`.
    pub est_bandwidth: Option<u64>,
}

impl LegView {
    /// True if a cell may go out on this leg now: not blocked and
    /// `inflight < cwnd` (C-tor `circuit_ready_to_send`).
    pub fn ready(&self) -> bool {
        self.can_send && self.inflight_cells < self.cwnd_cells
    }

    /// The RTT C-tor's schedulers compare (`circ_rtts_usec`): the smoothed
    /// RTT once there is one, else the minimum (the LINK RTT). A zero RTT
    /// counts as no measurement, as in C-tor.
    pub fn sched_rtt(&self) -> Option<Duration> {
        self.ewma_rtt
            .filter(|d| !d.is_zero())
            .or(self.min_rtt)
            .filter(|d| !d.is_zero())
    }

    /// The queueing part of the RTT (`ewma − min`), zero when either is
    /// unknown.
    pub fn queue_delay(&self) -> Duration {
        match (self.ewma_rtt, self.min_rtt) {
            (Some(e), Some(m)) => e.saturating_sub(m),
            _ => Duration::ZERO,
        }
    }

    /// Cells per second this leg delivers: [`LegView::est_bandwidth`] if
    /// given, else `cwnd / sched_rtt` (the rate a window-limited leg runs
    /// at); `None` without an RTT. At least 1.
    pub fn rate(&self) -> Option<u64> {
        if let Some(bw) = self.est_bandwidth.filter(|b| *b > 0) {
            return Some(bw);
        }
        let rtt_us = u128::from(duration_us(self.sched_rtt()?));
        let rate = u128::from(self.cwnd_cells.max(1)) * 1_000_000 / rtt_us.max(1);
        Some(u64::try_from(rate).unwrap_or(u64::MAX).max(1))
    }
}

/// A duration in whole microseconds, saturating.
pub(super) fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The leg with the lowest [`LegView::sched_rtt`] among those `keep`
/// accepts; legs without an RTT are skipped. Ties go to the earliest leg
/// in `legs` (C-tor compares with a strict `<` in list order).
pub(super) fn lowest_rtt(legs: &[LegView], keep: impl Fn(&LegView) -> bool) -> Option<&LegView> {
    let mut best: Option<(&LegView, Duration)> = None;
    for leg in legs.iter().filter(|l| keep(l)) {
        let Some(rtt) = leg.sched_rtt() else {
            continue;
        };
        if best.is_none_or(|(_, b)| rtt < b) {
            best = Some((leg, rtt));
        }
    }
    best.map(|(leg, _)| leg)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A ready leg with RTT `rtt_ms` (both min and EWMA), cwnd 100, nothing
    /// in flight.
    pub(in crate::conflux_sched) fn leg(id: u8, rtt_ms: u64) -> LegView {
        LegView {
            id: LegId(id),
            min_rtt: Some(Duration::from_millis(rtt_ms)),
            ewma_rtt: Some(Duration::from_millis(rtt_ms)),
            cwnd_cells: 100,
            inflight_cells: 0,
            can_send: true,
            est_bandwidth: None,
        }
    }

    /// The same leg with its window full.
    pub(in crate::conflux_sched) fn full(mut l: LegView) -> LegView {
        l.inflight_cells = l.cwnd_cells;
        l
    }

    #[test]
    fn ready_needs_window_and_channel() {
        let l = leg(0, 10);
        assert!(l.ready());
        assert!(!full(l).ready());
        assert!(
            !LegView {
                can_send: false,
                ..l
            }
            .ready()
        );
        let over = LegView {
            inflight_cells: 150,
            ..l
        };
        assert!(!over.ready());
    }

    #[test]
    fn sched_rtt_prefers_ewma_and_ignores_zero() {
        let mut l = leg(0, 10);
        l.ewma_rtt = Some(Duration::from_millis(30));
        assert_eq!(l.sched_rtt(), Some(Duration::from_millis(30)));
        l.ewma_rtt = Some(Duration::ZERO);
        assert_eq!(l.sched_rtt(), Some(Duration::from_millis(10)));
        l.min_rtt = Some(Duration::ZERO);
        assert_eq!(l.sched_rtt(), None);
        l.min_rtt = None;
        l.ewma_rtt = None;
        assert_eq!(l.sched_rtt(), None);
        assert_eq!(l.rate(), None);
    }

    #[test]
    fn rate_from_window_or_estimate() {
        let mut l = leg(0, 100);
        // 100 cells per 100 ms.
        assert_eq!(l.rate(), Some(1000));
        l.est_bandwidth = Some(5000);
        assert_eq!(l.rate(), Some(5000));
        l.est_bandwidth = Some(0);
        assert_eq!(l.rate(), Some(1000));
        l.ewma_rtt = Some(Duration::from_nanos(1));
        l.min_rtt = None;
        assert!(l.rate().is_some_and(|r| r >= 1));
    }

    #[test]
    fn lowest_rtt_ties_go_to_the_first() {
        let legs = [leg(3, 20), leg(1, 10), leg(2, 10)];
        assert_eq!(lowest_rtt(&legs, |_| true).map(|l| l.id), Some(LegId(1)));
        assert_eq!(
            lowest_rtt(&legs, |l| l.id != LegId(1)).map(|l| l.id),
            Some(LegId(2))
        );
        assert_eq!(lowest_rtt(&legs, |_| false), None);
    }
}
