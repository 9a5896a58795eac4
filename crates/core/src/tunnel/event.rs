//! What a tunnel tells its driver through
//! [`ClientTunnel::poll_event`](super::ClientTunnel::poll_event), and what
//! it reports about its legs.

use std::time::Duration;

use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::circuit::{HopFigures, HopTarget};
use crate::conflux::LegStats;
use crate::ids::LegKey;
use crate::stream::StreamEvent;

use super::error::TunnelError;

/// Something the driver must act on or may want to know.
///
/// The queue is bounded by construction: leg events by the launch budget,
/// stream events (edge-triggered, at most one of a kind per stream) by the
/// stream limit, `Opened` and `Closed` once each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// The tunnel is open (its circuit built, or its Conflux set linked):
    /// streams may be opened. Once.
    Opened,
    /// A leg's circuit is built. Its first hop is a guard that worked
    /// (guard-spec §4.8: the driver confirms it).
    LegBuilt {
        /// The leg.
        leg: LegKey,
        /// Its relays' identities, first hop first.
        path: Vec<RsaIdentity>,
        /// From its launch to its last hop's CREATED2/EXTENDED2: what
        /// path-spec §2.4's learned timeout records.
        took: Duration,
    },
    /// A leg failed before it was part of the working tunnel (its circuit
    /// failed to build, timed out, or was refused as a Conflux leg). With
    /// [`TunnelError::hops_done`] the driver knows which relay to avoid.
    LegFailed {
        /// The leg.
        leg: LegKey,
        /// Its relays' identities, first hop first.
        path: Vec<RsaIdentity>,
        /// Why.
        error: TunnelError,
    },
    /// A linked leg closed and the set goes on without it.
    LegLost {
        /// The leg.
        leg: LegKey,
        /// Its relays' identities, first hop first.
        path: Vec<RsaIdentity>,
        /// Why.
        error: TunnelError,
    },
    /// The tunnel wants a new leg to `exit` whose relays are none of
    /// `avoid` (prop 329 §2.2: legs share no guard or middle). Answer with
    /// [`ClientTunnel::add_leg`](super::ClientTunnel::add_leg) or
    /// [`ClientTunnel::leg_unavailable`](super::ClientTunnel::leg_unavailable).
    LegWanted {
        /// The set's exit.
        exit: HopTarget,
        /// Relays the new leg must not use (the exit excepted).
        avoid: Vec<RsaIdentity>,
    },
    /// A leg's circuit is gone and every cell it had for its channel was
    /// taken: the driver drops the leg's channel queues.
    LegReleased {
        /// The leg.
        leg: LegKey,
    },
    /// The tunnel keeps losing legs (Braid proposal 001 §4.4 policy (b)):
    /// `losses` legs lost or failed within `within`. Once. The client
    /// should move its streams to another tunnel of their key to the same
    /// exit and give it no new streams.
    KeepsFailing {
        /// Legs lost or failed.
        losses: usize,
        /// Within this time.
        within: Duration,
    },
    /// A stream event, with the core's stream rules applied.
    Stream(StreamEvent),
    /// The tunnel closed; every stream ended. The last event.
    Closed {
        /// Why.
        error: TunnelError,
    },
}

/// One leg of a tunnel, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSnapshot {
    /// The leg.
    pub leg: LegKey,
    /// Its relays' identities, first hop first.
    pub path: Vec<RsaIdentity>,
    /// Its circuit is open.
    pub open: bool,
    /// Its last hop's figures (RTT, cwnd, inflight, cells).
    pub figures: Option<HopFigures>,
    /// What it carried as part of a Conflux set; `None` for a single
    /// circuit or a leg that never linked.
    pub stats: Option<LegStats>,
    /// It was launched to replace a leg that failed or closed.
    pub replacement: bool,
    /// CONFLUX_LINK to LINKED (prop 329 §2.4.2).
    pub link_rtt: Option<Duration>,
}

/// A Conflux set's reorder queue, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderSnapshot {
    /// Bytes held now.
    pub bytes: usize,
    /// The most bytes ever held.
    pub peak_bytes: usize,
    /// The byte limit; going over it closes the set.
    pub limit_bytes: usize,
    /// Messages waiting for a gap to fill.
    pub waiting: usize,
}
