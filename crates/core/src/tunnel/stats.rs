//! What a tunnel counts of resumption and migration (Braid proposal 001
//! §3, §4; issue 15's metrics), for its driver to poll
//! ([`ClientTunnel::resume_stats`]) and report. Counting only: no rule
//! here.

use std::time::{Duration, Instant};

use super::client::ClientTunnel;

/// Resumption and migration figures of one tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeStats {
    /// Both ends agreed on resumption (Braid proposal 001 §2).
    pub resumable: bool,
    /// Resumptions: new legs linked after legs were lost (§3.3).
    pub resumptions: u64,
    /// Relay messages (one cell each) we resent on resumed legs.
    pub cells_resent: u64,
    /// Relay messages the peer resent to us on resumed legs (at each
    /// resumption, its last sent minus our last received in order).
    pub cells_resent_by_peer: u64,
    /// Bytes in the retransmit buffer now (§3.2).
    pub retransmit_bytes: u64,
    /// The most bytes it held.
    pub retransmit_peak_bytes: u64,
    /// What the legs' congestion windows allowed at that peak: the sum of
    /// the windows (a full cell's charge each) of the legs holding
    /// messages then, lost legs awaiting their resend included.
    pub retransmit_peak_bound_bytes: u64,
    /// Linked legs lost.
    pub legs_lost: u64,
    /// Times data flowed again after a leg was lost.
    pub recoveries: u64,
    /// The last time from a leg's loss to data flowing again.
    pub last_recovery: Option<Duration>,
    /// The longest such time.
    pub max_recovery: Option<Duration>,
    /// Streams moved away from this tunnel (§4).
    pub migrations_done: u64,
    /// Moves the exit refused (the stream stayed here).
    pub migrations_refused: u64,
    /// Moves that failed otherwise.
    pub migrations_aborted: u64,
}

impl ResumeStats {
    /// The sum of `self` and `other` (the larger peak and maximum, the
    /// later last recovery is not known: `other`'s if it has one).
    pub fn add(&mut self, other: &ResumeStats) {
        self.resumable |= other.resumable;
        self.resumptions += other.resumptions;
        self.cells_resent += other.cells_resent;
        self.cells_resent_by_peer += other.cells_resent_by_peer;
        self.retransmit_bytes += other.retransmit_bytes;
        if other.retransmit_peak_bytes > self.retransmit_peak_bytes {
            self.retransmit_peak_bytes = other.retransmit_peak_bytes;
            self.retransmit_peak_bound_bytes = other.retransmit_peak_bound_bytes;
        }
        self.legs_lost += other.legs_lost;
        self.recoveries += other.recoveries;
        self.last_recovery = other.last_recovery.or(self.last_recovery);
        self.max_recovery = self.max_recovery.max(other.max_recovery);
        self.migrations_done += other.migrations_done;
        self.migrations_refused += other.migrations_refused;
        self.migrations_aborted += other.migrations_aborted;
    }
}

/// The tunnel's own counters (the set keeps the rest).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Since when data has not flowed after a leg was lost.
    stalled_since: Option<Instant>,
    /// The first data that flowed after the loss (or, once a resumed leg
    /// brings resends, after that leg linked), taken as the end of the
    /// stall once the set is settled.
    early_flow: Option<Instant>,
    legs_lost: u64,
    recoveries: u64,
    last: Option<Duration>,
    max: Option<Duration>,
    pub(crate) migrations_done: u64,
    pub(crate) migrations_refused: u64,
    pub(crate) migrations_aborted: u64,
}

impl Counters {
    /// A linked leg was lost at `now` (a loss while already waiting
    /// keeps the first one's time).
    pub(crate) fn leg_lost(&mut self, now: Instant) {
        self.legs_lost += 1;
        self.stalled_since.get_or_insert(now);
    }

    /// Data flows at `now`: DATA delivered in order with nothing left
    /// waiting behind a gap, or new DATA sent with nothing left to
    /// resend. `settled`: the set is past the loss (not resumable, or
    /// resumed and every resend in); before that, the flow counts only if
    /// the resumption brings nothing ([`Self::ahead_of_a_gap`]).
    pub(crate) fn flowing(&mut self, now: Instant, settled: bool) {
        let Some(since) = self.stalled_since else {
            return;
        };
        if !settled {
            self.early_flow.get_or_insert(now);
            return;
        }
        let end = self.early_flow.take().unwrap_or(now);
        self.stalled_since = None;
        let d = end.saturating_duration_since(since);
        self.recoveries += 1;
        self.last = Some(d);
        self.max = self.max.max(Some(d));
    }
}

impl Counters {
    /// A resumed leg brings resends: what flowed before it was data ahead
    /// of the gap, not the end of the stall.
    pub(crate) fn ahead_of_a_gap(&mut self) {
        self.early_flow = None;
    }
}

impl ClientTunnel {
    /// Its resumption and migration figures.
    pub fn resume_stats(&self) -> ResumeStats {
        let c = &self.counters;
        let mut s = ResumeStats {
            legs_lost: c.legs_lost,
            recoveries: c.recoveries,
            last_recovery: c.last,
            max_recovery: c.max,
            migrations_done: c.migrations_done,
            migrations_refused: c.migrations_refused,
            migrations_aborted: c.migrations_aborted,
            ..ResumeStats::default()
        };
        if let Some(set) = self.conflux_set() {
            s.resumable = set.is_resumable();
            s.resumptions = set.resumptions() as u64;
            s.cells_resent = set.resent();
            s.cells_resent_by_peer = set.peer_resent();
            s.retransmit_bytes = set.retransmit_bytes() as u64;
            s.retransmit_peak_bytes = set.retransmit_peak_bytes() as u64;
            s.retransmit_peak_bound_bytes = set.retransmit_peak_bound_bytes() as u64;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_from_the_first_loss_to_flow() {
        let t0 = Instant::now();
        let mut c = Counters::default();
        c.flowing(t0, true);
        assert_eq!((c.recoveries, c.last), (0, None), "no loss, no recovery");
        c.leg_lost(t0);
        c.leg_lost(t0 + Duration::from_millis(100));
        c.flowing(t0 + Duration::from_millis(700), true);
        c.flowing(t0 + Duration::from_millis(900), true);
        assert_eq!(c.legs_lost, 2);
        assert_eq!(c.recoveries, 1);
        assert_eq!(c.last, Some(Duration::from_millis(700)));
        c.leg_lost(t0 + Duration::from_secs(2));
        c.flowing(t0 + Duration::from_millis(2300), true);
        assert_eq!(c.last, Some(Duration::from_millis(300)));
        assert_eq!(c.max, Some(Duration::from_millis(700)));
    }

    #[test]
    fn data_ahead_of_a_gap_is_not_the_end_of_the_stall() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // The busy leg: what came just after the loss was ahead of the
        // gap; the stall ends when the resumed leg's resends flow.
        let mut c = Counters::default();
        c.leg_lost(t0);
        c.flowing(at(40), false);
        c.ahead_of_a_gap();
        c.flowing(at(600), false);
        c.flowing(at(900), true);
        assert_eq!(c.last, Some(Duration::from_millis(600)));
        // An idle leg: data went on; the resumption brought nothing.
        let mut c = Counters::default();
        c.leg_lost(t0);
        c.flowing(at(40), false);
        c.flowing(at(900), true);
        assert_eq!(c.last, Some(Duration::from_millis(40)));
    }

    #[test]
    fn totals() {
        let a = ResumeStats {
            resumptions: 1,
            cells_resent: 10,
            retransmit_peak_bytes: 500,
            max_recovery: Some(Duration::from_millis(300)),
            last_recovery: Some(Duration::from_millis(300)),
            ..ResumeStats::default()
        };
        let b = ResumeStats {
            resumptions: 2,
            cells_resent: 5,
            retransmit_peak_bytes: 200,
            max_recovery: Some(Duration::from_millis(100)),
            ..ResumeStats::default()
        };
        let mut t = a;
        t.add(&b);
        assert_eq!((t.resumptions, t.cells_resent), (3, 15));
        assert_eq!(t.retransmit_peak_bytes, 500);
        assert_eq!(t.max_recovery, Some(Duration::from_millis(300)));
        assert_eq!(t.last_recovery, Some(Duration::from_millis(300)));
    }
}
