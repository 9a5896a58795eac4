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
        self.retransmit_peak_bytes = self.retransmit_peak_bytes.max(other.retransmit_peak_bytes);
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
    /// The highest sequence number received when that leg was lost: data
    /// up to it was on its way before the loss, so its delivery is no
    /// recovery (the gap the lost leg leaves comes after it).
    stalled_after_seq: u64,
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
    /// `seen` is the highest sequence number received on any leg then.
    pub(crate) fn leg_lost(&mut self, now: Instant, seen: u64) {
        self.legs_lost += 1;
        if self.stalled_since.is_none() {
            self.stalled_since = Some(now);
            self.stalled_after_seq = seen;
        }
    }

    /// DATA was delivered in order up to `seq` at `now` with nothing left
    /// waiting behind a gap: data flows again if `seq` is past what had
    /// been received when the leg was lost.
    pub(crate) fn delivered(&mut self, now: Instant, seq: u64) {
        if seq > self.stalled_after_seq {
            self.flowing(now);
        }
    }

    /// Data flows at `now`: DATA delivered in order with nothing left
    /// waiting behind a gap, or new DATA sent with nothing left to
    /// resend.
    pub(crate) fn flowing(&mut self, now: Instant) {
        let Some(since) = self.stalled_since.take() else {
            return;
        };
        self.stalled_after_seq = 0;
        let d = now.saturating_duration_since(since);
        self.recoveries += 1;
        self.last = Some(d);
        self.max = self.max.max(Some(d));
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
        c.flowing(t0);
        assert_eq!((c.recoveries, c.last), (0, None), "no loss, no recovery");
        c.leg_lost(t0, 0);
        c.leg_lost(t0 + Duration::from_millis(100), 0);
        c.flowing(t0 + Duration::from_millis(700));
        c.flowing(t0 + Duration::from_millis(900));
        assert_eq!(c.legs_lost, 2);
        assert_eq!(c.recoveries, 1);
        assert_eq!(c.last, Some(Duration::from_millis(700)));
        c.leg_lost(t0 + Duration::from_secs(2), 0);
        c.flowing(t0 + Duration::from_millis(2300));
        assert_eq!(c.last, Some(Duration::from_millis(300)));
        assert_eq!(c.max, Some(Duration::from_millis(700)));
    }

    /// Data received before the loss and delivered after it (the other
    /// leg's cells ahead of the lost leg's gap) is no recovery: seen in
    /// the conflux_exit test, a 0 ns recovery with 23 cells resent.
    #[test]
    fn recovery_counts_only_data_past_the_loss() {
        let t0 = Instant::now();
        let mut c = Counters::default();
        c.leg_lost(t0, 1000);
        c.delivered(t0, 990);
        c.delivered(t0 + Duration::from_millis(5), 1000);
        assert_eq!((c.recoveries, c.last), (0, None));
        // A second loss keeps the first one's time and mark.
        c.leg_lost(t0 + Duration::from_millis(10), 2000);
        c.delivered(t0 + Duration::from_millis(250), 1001);
        assert_eq!(c.recoveries, 1);
        assert_eq!(c.last, Some(Duration::from_millis(250)));
        // Once flowing, further deliveries change nothing.
        c.delivered(t0 + Duration::from_millis(400), 3000);
        assert_eq!(c.recoveries, 1);
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
