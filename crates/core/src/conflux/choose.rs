//! The seam between a [`ConfluxSet`](super::ConfluxSet) and a leg
//! scheduler (prop 329 §3).
//!
//! The set knows which legs are linked, their link-handshake RTTs and their
//! sequence numbers; the circuits know their congestion control state. For
//! every multiplexed message the set merges both into one [`LegInfo`] per
//! linked leg and asks a [`LegChooser`] which leg to use. Schedulers
//! (MinRTT, LowRTT, ...) implement [`LegChooser`]; the set stays free of
//! policy.

use std::time::{Duration, Instant};

use tor_cell::relaycell::RelayCmd;

use crate::circuit::HopFigures;
use crate::ids::LegId;

/// Congestion control state of one leg's last hop, as the driver reads it
/// from the circuit ([`HopFigures`] and
/// [`ClientCircuit::can_send_data`](crate::circuit::ClientCircuit::can_send_data)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCc {
    /// Minimum RTT (TOR_VEGAS, once measured).
    pub min_rtt: Option<Duration>,
    /// Smoothed RTT (TOR_VEGAS, once measured).
    pub ewma_rtt: Option<Duration>,
    /// Congestion window, cells.
    pub cwnd: Option<u64>,
    /// DATA cells sent and not yet acknowledged.
    pub inflight: Option<u64>,
    /// Still in slow start.
    pub in_slow_start: Option<bool>,
    /// Negotiated `sendme_inc`.
    pub sendme_inc: Option<u8>,
    /// A DATA cell sent now leaves at once: room in the congestion window
    /// and the channel not blocked.
    pub can_send: bool,
}

impl LegCc {
    /// From a circuit's last-hop figures and its `can_send_data`.
    pub fn from_figures(f: &HopFigures, can_send: bool) -> Self {
        Self {
            min_rtt: f.min_rtt,
            ewma_rtt: f.ewma_rtt,
            cwnd: f.cwnd,
            inflight: f.inflight,
            in_slow_start: f.in_slow_start,
            sendme_inc: f.cc_sendme_inc,
            can_send,
        }
    }
}

/// What a scheduler sees of one linked leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegInfo {
    /// The leg.
    pub leg: LegId,
    /// RTT measured by the link handshake: LINK to LINKED on the client,
    /// LINKED to LINKED_ACK on the exit. `None` on an exit leg whose
    /// LINKED_ACK has not arrived: treat it as infinite (prop 329 §2.4.2).
    pub link_rtt: Option<Duration>,
    /// Congestion control state (all `None`, `can_send` false, if the
    /// driver gave none for this leg).
    pub cc: LegCc,
    /// The leg's `last_seq_sent`.
    pub last_seq_sent: u64,
}

impl LegInfo {
    /// The RTT a scheduler should rank by: the smoothed RTT, else the
    /// minimum, else the link RTT; `None` means unmeasured (infinite).
    pub fn rtt(&self) -> Option<Duration> {
        self.cc.ewma_rtt.or(self.cc.min_rtt).or(self.link_rtt)
    }

    /// `cwnd - inflight`, if known.
    pub fn cwnd_room(&self) -> Option<u64> {
        Some(self.cc.cwnd?.saturating_sub(self.cc.inflight?))
    }
}

/// A leg scheduler (prop 329 §3).
pub trait LegChooser {
    /// The leg for the next multiplexed message `cmd`, among `legs` (every
    /// linked leg, never empty, in `LegId` order). `current` is the leg the
    /// previous multiplexed message went on.
    ///
    /// `None` means "hold": no leg should send now. For DATA the set then
    /// sends nothing and gives the message back; for other commands it
    /// uses `current` anyway (prop 329 §2.5: non-DATA cells are not
    /// congestion controlled and must not be held).
    fn choose(
        &mut self,
        legs: &[LegInfo],
        current: Option<LegId>,
        cmd: RelayCmd,
        now: Instant,
    ) -> Option<LegId>;
}

/// The simplest chooser: always the current leg while it can send, else the
/// sendable leg with the lowest RTT (unmeasured last). Useful for tests and
/// as a fallback; real schedulers live with the scheduler code.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyLowestRtt;

impl LegChooser for StickyLowestRtt {
    fn choose(
        &mut self,
        legs: &[LegInfo],
        current: Option<LegId>,
        _cmd: RelayCmd,
        _now: Instant,
    ) -> Option<LegId> {
        if let Some(c) = current
            && legs.iter().any(|l| l.leg == c && l.cc.can_send)
        {
            return Some(c);
        }
        legs.iter()
            .filter(|l| l.cc.can_send)
            .min_by_key(|l| (l.rtt().is_none(), l.rtt(), l.leg))
            .map(|l| l.leg)
    }
}
