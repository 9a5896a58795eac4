//! Errors of the tunnel layer.
//!
//! A [`TunnelError`] says why a tunnel closed (the terminal
//! [`TunnelEvent::Closed`](super::TunnelEvent::Closed)) or why one of its
//! legs failed ([`TunnelEvent::LegFailed`](super::TunnelEvent::LegFailed)).
//! Its [`TunnelErrorKind`] tells the caller what to do:
//!
//! - **local**: we closed it, or the caller used the API out of order:
//!   nothing to retry;
//! - **timeout**, **build failed**: the tunnel (or leg) never worked:
//!   build another, avoiding the relay that failed
//!   ([`TunnelError::hops_done`]);
//! - **peer violation**: a relay or the exit broke the protocol: the
//!   tunnel is gone, build another;
//! - **resource limit**: one of our bounds was hit by the peer's traffic;
//! - **lost**: the network took it down (a relay destroyed a circuit, a
//!   channel closed, a Conflux set lost data with a leg).

use std::time::Duration;

use thiserror::Error;
use tor_cell::relaycell::RelayCmd;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::circuit::{CircErrorKind, CloseReason};
use crate::conflux::{ConfluxError, ConfluxErrorKind};
use crate::ids::{HopNum, LegKey};

/// The class of a [`TunnelError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelErrorKind {
    /// We closed it, or the API was used out of order.
    Local,
    /// Something took too long.
    Timeout,
    /// A circuit could not be built, or no leg could be launched.
    BuildFailed,
    /// A relay or the exit broke the protocol.
    PeerViolation,
    /// One of our bounds was hit.
    ResourceLimit,
    /// The network took it down.
    Lost,
}

/// An error of the tunnel layer. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// We closed the tunnel ([`ClientTunnel::close`](super::ClientTunnel::close)).
    #[error("the tunnel was closed by us")]
    Closed,
    /// The tunnel was not open in time ([`TunnelConfig::open_timeout`](super::TunnelConfig::open_timeout)).
    #[error("the tunnel was not open after {0:?}")]
    OpenTimeout(Duration),
    /// A leg's circuit was not built in time
    /// ([`TunnelConfig::leg_build_timeout`](super::TunnelConfig::leg_build_timeout)).
    #[error("{leg}: circuit not built after {after:?} ({hops_done} hops done)")]
    BuildTimeout {
        /// The leg.
        leg: LegKey,
        /// The timeout.
        after: Duration,
        /// Hops completed.
        hops_done: usize,
    },
    /// A leg's circuit closed before it was built.
    #[error("{leg}: circuit build failed after {hops_done} hops: {reason}")]
    BuildFailed {
        /// The leg.
        leg: LegKey,
        /// Hops completed: the relay at this index of the path (if any) is
        /// the one that could not be reached or refused.
        hops_done: usize,
        /// Why.
        reason: CloseReason,
    },
    /// A built leg's circuit closed.
    #[error("{leg}: circuit closed: {reason}")]
    CircuitClosed {
        /// The leg.
        leg: LegKey,
        /// Why.
        reason: CloseReason,
    },
    /// A Conflux leg's last hop did not accept congestion control, which
    /// every leg needs (prop 329 §2.2).
    #[error("{leg}: no congestion control on the last hop (prop 329 §2.2: legs need it)")]
    NoCongestionControl {
        /// The leg.
        leg: LegKey,
    },
    /// A stream or Conflux message came from a hop other than the last:
    /// streams attach to the last hop (tor-spec §6.2) and Conflux messages
    /// come only from the exit (prop 329 §4.2.1).
    #[error("{leg}: a {cmd} message from {hop}, not the last hop (tor-spec §6.2, prop 329 §4.2.1)")]
    WrongHop {
        /// The leg.
        leg: LegKey,
        /// The hop it came from.
        hop: HopNum,
        /// The command.
        cmd: RelayCmd,
    },
    /// A relay message on a Conflux leg before its LINK went out (prop 329
    /// §4.2.1: the exit has nothing to say on a circuit that is not a leg).
    #[error("{leg}: a {cmd} message before the leg's LINK (prop 329 §4.2.1)")]
    NotALeg {
        /// The leg.
        leg: LegKey,
        /// The command.
        cmd: RelayCmd,
    },
    /// A Conflux message on a tunnel that is a single circuit (prop 329
    /// §4.2.1: LINKED and SWITCH only on a circuit that sent LINK).
    #[error("{leg}: a {cmd} message on a circuit that is not a Conflux leg (prop 329 §4.2.1)")]
    ConfluxOnSingle {
        /// The leg.
        leg: LegKey,
        /// The command.
        cmd: RelayCmd,
    },
    /// Every leg of a resumable set died within a second through the same
    /// guard: the guard is the likely killer, so the set closes instead of
    /// resuming (Braid proposal 001 §5.3, confirmation attacks, prop 329
    /// §4.3).
    #[error(
        "{legs} legs died within 1 s through guard {guard}: not resuming (Braid proposal 001 §5.3)"
    )]
    LegsKilledTogether {
        /// The guard they shared.
        guard: RsaIdentity,
        /// How many died.
        legs: usize,
    },
    /// The Conflux set closed (a violation on a linked leg, the reorder
    /// bound, a leg lost with data) or refused a leg.
    #[error(transparent)]
    Conflux(#[from] ConfluxError),
    /// Every launch the budget allows was used and none is left to make
    /// the tunnel work (prop 329 §4.2.2).
    #[error("no leg left: {launches} launches of a budget of {budget} (prop 329 §4.2.2)")]
    LaunchBudgetSpent {
        /// Launches made.
        launches: usize,
        /// The budget.
        budget: usize,
    },
    /// The driver could not provide a leg asked for (no path, the channel
    /// to the guard failed).
    #[error("no leg could be launched: {0}")]
    LegUnavailable(String),
    /// Local: the tunnel is not open (streams wait for
    /// [`TunnelEvent::Opened`](super::TunnelEvent::Opened)), or is closed.
    #[error("the tunnel is not open")]
    NotOpen,
    /// Local: a stream could not be opened (too many streams, a bad
    /// target).
    #[error(transparent)]
    Stream(crate::stream::StreamError),
    /// Local: no such leg.
    #[error("{0}: no such leg")]
    NoSuchLeg(LegKey),
    /// Local: a leg was offered that the tunnel did not ask for.
    #[error("no leg was asked for")]
    LegNotWanted,
    /// Local: a leg cannot be built on the path given.
    #[error("cannot launch a leg: {0}")]
    BadLeg(String),
}

impl TunnelError {
    /// The class of this error.
    pub fn kind(&self) -> TunnelErrorKind {
        use TunnelError as E;
        match self {
            E::Closed
            | E::NotOpen
            | E::NoSuchLeg(_)
            | E::LegNotWanted
            | E::BadLeg(_)
            | E::Stream(_) => TunnelErrorKind::Local,
            E::OpenTimeout(_) | E::BuildTimeout { .. } => TunnelErrorKind::Timeout,
            E::BuildFailed { reason, .. } => match close_kind(reason) {
                TunnelErrorKind::Lost => TunnelErrorKind::BuildFailed,
                k => k,
            },
            E::LaunchBudgetSpent { .. } | E::LegUnavailable(_) => TunnelErrorKind::BuildFailed,
            E::LegsKilledTogether { .. } => TunnelErrorKind::Lost,
            E::CircuitClosed { reason, .. } => close_kind(reason),
            E::NoCongestionControl { .. }
            | E::WrongHop { .. }
            | E::NotALeg { .. }
            | E::ConfluxOnSingle { .. } => TunnelErrorKind::PeerViolation,
            E::Conflux(e) => match e.kind() {
                ConfluxErrorKind::ProtocolViolation => TunnelErrorKind::PeerViolation,
                ConfluxErrorKind::ResourceLimit => TunnelErrorKind::ResourceLimit,
                ConfluxErrorKind::Timeout => TunnelErrorKind::Timeout,
                ConfluxErrorKind::LegLoss => TunnelErrorKind::Lost,
                ConfluxErrorKind::Local => TunnelErrorKind::Local,
            },
        }
    }

    /// For a leg that failed while building: hops completed, so the relay
    /// at that index of its path (if any) is the one that failed.
    pub fn hops_done(&self) -> Option<usize> {
        match self {
            TunnelError::BuildFailed { hops_done, .. }
            | TunnelError::BuildTimeout { hops_done, .. } => Some(*hops_done),
            _ => None,
        }
    }

    /// The index in the leg's path of the relay most likely at fault, for
    /// the driver to avoid it for a while: for a leg that failed while
    /// building, the relay it was extending to ([`Self::hops_done`]); for a
    /// built leg the guard destroyed with CHANNEL_CLOSED, the middle (a
    /// guard gives that reason only for its own channel to the next hop;
    /// C-tor forwards a DESTROY from further on as DESTROYED, tor-spec
    /// §5.4). A failure at the first hop is the guard's, which the guard
    /// set judges instead (guard-spec §4.7): `None`. A leg lost in
    /// silence (Braid proposal 001 §3.6) or that the exit lost (§3.3):
    /// the middle, the relay a hang or a closed channel most likely
    /// comes from when the client's own channel to the guard is up (a
    /// replacement through a relay that hangs would hang too).
    pub fn suspect(&self) -> Option<usize> {
        match self {
            TunnelError::CircuitClosed {
                reason: CloseReason::Destroyed { reason },
                ..
            } if *reason == tor_cell::chancell::msg::DestroyReason::CHANNEL_CLOSED => Some(1),
            TunnelError::Conflux(
                crate::conflux::ConfluxError::LegSilent { .. }
                | crate::conflux::ConfluxError::LegDroppedByPeer { .. },
            ) => Some(1),
            _ => self.hops_done().filter(|h| *h > 0),
        }
    }

    /// True if a relay or the exit broke the protocol.
    pub fn is_peer_violation(&self) -> bool {
        self.kind() == TunnelErrorKind::PeerViolation
    }

    /// True unless we closed the tunnel ourselves or misused the API:
    /// another tunnel may do better.
    pub fn retry_elsewhere(&self) -> bool {
        self.kind() != TunnelErrorKind::Local
    }
}

/// The kind of a circuit's close reason.
fn close_kind(reason: &CloseReason) -> TunnelErrorKind {
    match reason {
        CloseReason::Local => TunnelErrorKind::Local,
        CloseReason::Destroyed { .. }
        | CloseReason::Truncated { .. }
        | CloseReason::ChannelClosed => TunnelErrorKind::Lost,
        CloseReason::Error(e) => match e.kind() {
            CircErrorKind::Protocol => TunnelErrorKind::PeerViolation,
            CircErrorKind::ResourceLimit => TunnelErrorKind::ResourceLimit,
            CircErrorKind::Local => TunnelErrorKind::Local,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::CircError;
    use tor_cell::chancell::msg::DestroyReason;

    #[test]
    fn kinds() {
        let leg = LegKey(1);
        let destroyed = CloseReason::Destroyed {
            reason: DestroyReason::CHANNEL_CLOSED,
        };
        assert_eq!(
            TunnelError::BuildFailed {
                leg,
                hops_done: 1,
                reason: destroyed.clone()
            }
            .kind(),
            TunnelErrorKind::BuildFailed
        );
        assert_eq!(
            TunnelError::CircuitClosed {
                leg,
                reason: destroyed
            }
            .kind(),
            TunnelErrorKind::Lost
        );
        let violation = CloseReason::Error(CircError::UnrecognizedCell { n_hops: 3 });
        let e = TunnelError::CircuitClosed {
            leg,
            reason: violation,
        };
        assert!(e.is_peer_violation());
        assert!(e.retry_elsewhere());
        assert!(!TunnelError::Closed.retry_elsewhere());
        assert_eq!(
            TunnelError::BuildTimeout {
                leg,
                after: Duration::from_secs(1),
                hops_done: 2
            }
            .hops_done(),
            Some(2)
        );
        let wrong = TunnelError::WrongHop {
            leg,
            hop: HopNum(1),
            cmd: RelayCmd::DATA,
        };
        assert!(wrong.to_string().contains("tor-spec §6.2"), "{wrong}");
        assert!(
            TunnelError::Conflux(ConfluxError::SwitchZero {
                leg: crate::ids::LegId(0)
            })
            .is_peer_violation()
        );
    }

    /// The relay to avoid for a while: the one a build stopped at, the
    /// middle of a leg its guard lost the next hop of, lost in silence
    /// (Braid proposal 001 §3.6) or lost at the exit (§3.3); never the
    /// guard.
    #[test]
    fn suspects() {
        let leg = LegKey(1);
        let id = crate::ids::LegId(0);
        let silent = ConfluxError::LegSilent {
            leg: id,
            silent: Duration::from_secs(13),
        };
        assert_eq!(TunnelError::Conflux(silent).suspect(), Some(1));
        assert_eq!(
            TunnelError::Conflux(ConfluxError::LegDroppedByPeer { leg: id }).suspect(),
            Some(1)
        );
        let timeout = |hops_done| TunnelError::BuildTimeout {
            leg,
            after: Duration::from_secs(15),
            hops_done,
        };
        assert_eq!(timeout(2).suspect(), Some(2));
        assert_eq!(timeout(0).suspect(), None, "the guard set judges guards");
        assert_eq!(
            TunnelError::CircuitClosed {
                leg,
                reason: CloseReason::Destroyed {
                    reason: DestroyReason::FINISHED
                }
            }
            .suspect(),
            None
        );
    }
}
