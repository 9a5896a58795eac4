//! Queries on a [`ConfluxSet`]: its state, the legs and their counters,
//! the reorder queue's figures and limit (sized from the legs), and what a
//! scheduler sees of each leg.

use std::time::{Duration, Instant};

use tor_cell::relaycell::conflux::V1DesiredUx;

use super::{ConfluxSet, LegState, LegStats, Role};
use crate::conflux::choose::{LegCc, LegInfo};
use crate::conflux::error::ConfluxError;
use crate::conflux::link::ConfluxNonce;
use crate::conflux::reorder::ReorderLimit;
use crate::ids::LegId;

impl ConfluxSet {
    /// Client or exit.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The set's nonce (never log it).
    pub fn nonce(&self) -> &ConfluxNonce {
        &self.nonce
    }

    /// True once every launched leg linked (the set carries streams).
    pub fn is_linked(&self) -> bool {
        self.linked && self.closed.is_none()
    }

    /// True once closed on an error.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// The error that closed the set.
    pub fn close_reason(&self) -> Option<&ConfluxError> {
        self.closed.as_ref()
    }

    /// Every leg and whether it is linked.
    pub fn legs(&self) -> impl Iterator<Item = (LegId, bool)> + '_ {
        self.legs.iter().map(|(l, s)| (*l, s.is_linked()))
    }

    /// Linked legs.
    pub fn linked_legs(&self) -> usize {
        self.legs.values().filter(|s| s.is_linked()).count()
    }

    /// What `leg` carried: for a linked leg (zeros and its starting
    /// sequence numbers if it carried nothing yet), and for one that left
    /// after carrying something, until its id is reused. `None` for a leg
    /// still linking or unknown.
    pub fn leg_stats(&self, leg: LegId) -> Option<LegStats> {
        let mut st = match self.stats.get(&leg) {
            Some(st) => *st,
            None if self.legs.get(&leg).is_some_and(LegState::is_linked) => LegStats::default(),
            None => return None,
        };
        if let Some(sent) = self.send.leg_last_sent(leg) {
            st.last_seq_sent = sent;
        }
        if let Some(recv) = self.recv.leg_last_recv(leg) {
            st.last_seq_recv = recv;
        }
        Some(st)
    }

    /// Counters of `leg`, created on first use.
    pub(super) fn stats_mut(&mut self, leg: LegId) -> &mut LegStats {
        self.stats.entry(leg).or_default()
    }

    /// Keep the last sequence numbers of `leg` before it leaves.
    pub(super) fn snapshot_seqs(&mut self, leg: LegId) {
        let sent = self.send.leg_last_sent(leg);
        let recv = self.recv.leg_last_recv(leg);
        let st = self.stats_mut(leg);
        if let Some(sent) = sent {
            st.last_seq_sent = sent;
        }
        if let Some(recv) = recv {
            st.last_seq_recv = recv;
        }
    }

    /// The link RTT of `leg`, if measured.
    pub fn leg_rtt(&self, leg: LegId) -> Option<Duration> {
        self.legs.get(&leg).and_then(LegState::rtt)
    }

    /// The UX the peer asked for in its LINK/LINKED: what our scheduler
    /// should provide (C-tor: HIGH_THROUGHPUT and NO_OPINION → LowRTT,
    /// MIN_LATENCY and LOW_MEM_* → MinRTT).
    pub fn peer_ux(&self) -> Option<V1DesiredUx> {
        self.peer_ux
    }

    /// The absolute sequence number of the last multiplexed message sent.
    pub fn last_seq_sent(&self) -> u64 {
        self.send.last_seq_sent()
    }

    /// The last sequence number received in order.
    pub fn last_seq_delivered(&self) -> u64 {
        self.reorder.last_in_order()
    }

    /// The leg the last multiplexed message went on.
    pub fn current_leg(&self) -> Option<LegId> {
        self.send.current()
    }

    /// Bytes held in the reorder queue now.
    pub fn reorder_bytes(&self) -> usize {
        self.reorder.bytes()
    }

    /// The most bytes the reorder queue ever held.
    pub fn reorder_peak_bytes(&self) -> usize {
        self.reorder.peak_bytes()
    }

    /// The most cells the reorder queue ever held.
    pub fn reorder_peak_cells(&self) -> usize {
        self.reorder.peak_cells()
    }

    /// Cells waiting in the reorder queue for a gap to fill.
    pub fn reorder_waiting(&self) -> usize {
        self.reorder.waiting()
    }

    /// Whether the receiver should hold back the circuit SENDMEs of `leg`
    /// now (Braid's receiver backpressure; the caller applies it with
    /// [`crate::circuit::ClientCircuit::set_sendme_hold`]): the reorder
    /// queue holds more than half its byte limit and `leg` has already
    /// received past the number the queue waits for, so what it brings
    /// only grows the queue. A leg that can still bring the missing number
    /// is never held. Without this a leg that stalls for a moment (a busy
    /// relay) lets the others fill the queue to its limit at full speed,
    /// and the set closes although nobody misbehaved; with it, the exit's
    /// congestion window stops the legs that are ahead and the queue stays
    /// near half its limit. An exit that sends past its window anyway
    /// still meets the hard limit ([`ConfluxError::ReorderQueueFull`]).
    pub fn sendme_hold(&self, leg: LegId) -> bool {
        if !self.config.sendme_pacing || self.reorder.bytes() <= self.reorder.limit().max_bytes / 4
        {
            return false;
        }
        self.recv
            .leg_last_recv(leg)
            .is_some_and(|last| last >= self.reorder.expected())
    }

    /// The reorder queue's bounds.
    pub fn reorder_limit(&self) -> ReorderLimit {
        self.reorder.limit()
    }

    /// Change the reorder bounds, for example to
    /// [`ReorderQueue::default_limit`](crate::conflux::ReorderQueue::default_limit)
    /// of the measured legs.
    pub fn set_reorder_limit(&mut self, limit: ReorderLimit) {
        self.reorder.set_limit(limit);
    }

    /// With `reorder_auto`, raise the reorder byte limit to what the legs
    /// measured so far call for
    /// ([`ReorderSizer`](crate::conflux::ReorderSizer)); `cc` gives
    /// congestion control's RTTs where the caller has them (legs we send
    /// on), the LINK RTT stands in otherwise. Never lowers it.
    pub(super) fn resize_reorder(&mut self, now: Instant, cc: &[(LegId, LegCc)]) {
        if !self.sizer.as_ref().is_some_and(|s| s.due(now)) {
            return;
        }
        let rtts: Vec<Duration> = self
            .leg_infos(cc)
            .iter()
            .filter_map(|i| match (i.link_rtt, i.cc.ewma_rtt) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            })
            .collect();
        let bytes = self.delivered_bytes.saturating_add(
            self.stats
                .values()
                .map(|c| c.data_bytes_sent)
                .fold(0u64, u64::saturating_add),
        );
        let Some(sizer) = self.sizer.as_mut() else {
            return;
        };
        let want = sizer.observe(now, bytes, rtts);
        let limit = self.reorder.limit();
        if want > limit.max_bytes {
            self.reorder.set_limit(ReorderLimit {
                max_ahead: limit.max_ahead,
                ..ReorderLimit::from_bytes(want)
            });
        }
    }

    /// What a scheduler sees of each linked leg, merged with the driver's
    /// congestion control figures `cc` (legs missing there get
    /// [`LegCc::default`]).
    pub fn leg_infos(&self, cc: &[(LegId, LegCc)]) -> Vec<LegInfo> {
        let mut infos = Vec::new();
        self.fill_leg_infos(cc, &mut infos);
        infos
    }

    /// [`Self::leg_infos`] into `infos` (cleared first).
    pub(super) fn fill_leg_infos(&self, cc: &[(LegId, LegCc)], infos: &mut Vec<LegInfo>) {
        infos.clear();
        infos.extend(
            self.legs
                .iter()
                .filter(|(_, s)| s.is_linked())
                .map(|(l, s)| LegInfo {
                    leg: *l,
                    link_rtt: s.rtt(),
                    cc: cc
                        .iter()
                        .find(|(id, _)| id == l)
                        .map(|(_, c)| *c)
                        .unwrap_or_default(),
                    last_seq_sent: self.send.leg_last_sent(*l).unwrap_or(0),
                }),
        );
    }
}
