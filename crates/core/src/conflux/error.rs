//! Errors of the Conflux layer.
//!
//! Every [`ConfluxError`] is of one [`ConfluxErrorKind`]:
//!
//! - **protocol violation**: the peer broke a rule of proposal 329 (or of
//!   the C-tor behaviour every implementation relies on); the message
//!   names the rule. On a leg that is still linking only that leg fails;
//!   on a linked leg the whole set is closed (the driver sends DESTROY
//!   with reason PROTOCOL on every leg, [`ConfluxError::destroy_reason`]);
//! - **resource limit**: one of our bounds (the reorder queue) would be
//!   exceeded; the set is closed with RESOURCELIMIT and its streams end;
//! - **timeout**: a leg's CONFLUX_LINKED did not arrive in time, or a
//!   linked leg went silent (Braid proposal 001 §3.6); only that leg
//!   fails;
//! - **leg loss**: legs closed and the set cannot go on (no leg left, or
//!   sequenced data may have been lost with a leg);
//! - **local**: the caller used the API out of order (no such leg, not
//!   linked yet, a command that is not multiplexed, ...). Local errors
//!   change no state.
//!
//! No variant carries the nonce.

use std::time::Duration;

use thiserror::Error;
use tor_cell::chancell::msg::DestroyReason;
use tor_cell::relaycell::RelayCmd;

use crate::ids::LegId;

/// The class of a [`ConfluxError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfluxErrorKind {
    /// The peer broke a protocol rule.
    ProtocolViolation,
    /// One of our resource bounds would be exceeded.
    ResourceLimit,
    /// A handshake took too long.
    Timeout,
    /// Legs closed and the set cannot continue.
    LegLoss,
    /// The caller misused the API; nothing changed.
    Local,
}

/// Why the set cannot survive the loss of a leg (prop 329 §2.4.3, C-tor
/// `cfx_del_leg`), or how lost data was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegLossRule {
    /// The closed leg was our current sending leg: the last sequenced
    /// cells we sent went on it and may not have arrived.
    CurrentSendingLeg,
    /// The closed leg had the highest `last_seq_sent` of all legs.
    HighestSeqSent,
    /// The closed leg had at least `sendme_inc` DATA cells in flight
    /// (sent, not acknowledged by a SENDME).
    DataInFlight,
    /// Receive side, exact: the next sequence number we need can no longer
    /// arrive on any remaining leg (every remaining leg has already
    /// received past it), so it was lost with a closed leg.
    GapCannotFill,
    /// No linked leg is left.
    NoLegsLeft,
}

/// An error of the Conflux layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfluxError {
    // ----- Linking (prop 329 §2.2, §4.2.1) -----
    /// CONFLUX_LINKED carried a nonce other than the one of our LINK.
    #[error(
        "{leg}: CONFLUX_LINKED nonce differs from the LINK's (prop 329 §4.2.1: the nonce must match the one used in the LINK command)"
    )]
    WrongNonce {
        /// The leg.
        leg: LegId,
    },
    /// CONFLUX_LINKED on a leg that sent no LINK.
    #[error(
        "{leg}: CONFLUX_LINKED without a LINK (prop 329 §4.2.1: only an unlinked circuit that sent a LINK may receive LINKED)"
    )]
    LinkedWithoutLink {
        /// The leg.
        leg: LegId,
    },
    /// A second CONFLUX_LINKED on a leg.
    #[error("{leg}: second CONFLUX_LINKED (prop 329 §4.2.1: LINKED only on an unlinked circuit)")]
    LinkedTwice {
        /// The leg.
        leg: LegId,
    },
    /// A CONFLUX_LINKED reached the exit side, or a LINK or LINKED_ACK the
    /// client side.
    #[error(
        "{leg}: {cmd} may not arrive at this end of a conflux set (prop 329 §4.2.1: LINK and LINKED_ACK go to the exit, LINKED to the client)"
    )]
    WrongDirection {
        /// The leg.
        leg: LegId,
        /// The command.
        cmd: RelayCmd,
    },
    /// A second CONFLUX_LINK on a circuit.
    #[error(
        "{leg}: second CONFLUX_LINK on a circuit (prop 329 §4.2.1: no previous LINK may have arrived on this circuit)"
    )]
    LinkTwice {
        /// The leg.
        leg: LegId,
    },
    /// CONFLUX_LINK on a circuit that already carried streams.
    #[error(
        "CONFLUX_LINK on a circuit that already has streams (C-tor TROVE-2026-025: LINK must come before any BEGIN)"
    )]
    LinkOnUsedCircuit,
    /// CONFLUX_LINKED_ACK before our LINKED was sent.
    #[error(
        "{leg}: CONFLUX_LINKED_ACK before LINKED (prop 329 §4.2.1: the circuit must have received its LINK)"
    )]
    AckWithoutLinked {
        /// The leg.
        leg: LegId,
    },
    /// A second CONFLUX_LINKED_ACK.
    #[error(
        "{leg}: second CONFLUX_LINKED_ACK (prop 329 §4.2.1: the circuit may not have received a LINKED_ACK yet)"
    )]
    AckTwice {
        /// The leg.
        leg: LegId,
    },
    /// The sequence numbers of a LINK or LINKED are impossible.
    #[error(
        "{leg}: CONFLUX_LINK/LINKED claims {claimed} cells delivered but only {sent} were sent (prop 329 §2.4.4)"
    )]
    ImpossibleLinkSeq {
        /// The leg.
        leg: LegId,
        /// What the peer says it delivered.
        claimed: u64,
        /// What we sent.
        sent: u64,
    },
    /// The peer tries to link more legs than allowed.
    #[error("set already has {max} legs (cfx_max_legs_set)")]
    TooManyLegs {
        /// The most legs a set may have.
        max: usize,
    },
    /// CONFLUX_LINKED did not arrive in time.
    #[error(
        "{leg}: no CONFLUX_LINKED within {timeout:?} (prop 329 §2.2: abandon a leg whose LINKED takes too long)"
    )]
    LinkTimeout {
        /// The leg.
        leg: LegId,
        /// The time allowed.
        timeout: Duration,
    },

    /// Exit: CONFLUX_LINKED_ACK did not arrive in time.
    #[error(
        "{leg}: no CONFLUX_LINKED_ACK within {timeout:?} of our LINKED (prop 329 §2.2: the client answers LINKED at once)"
    )]
    LinkedAckTimeout {
        /// The leg.
        leg: LegId,
        /// The time allowed.
        timeout: Duration,
    },
    /// Exit: a CONFLUX_LINK on a circuit that continues past us (C-tor
    /// `conflux_validate_source_hop`: legs end at the exit).
    #[error("CONFLUX_LINK on a circuit that goes on past us (prop 329 §2.4: legs end at the exit)")]
    LinkNotAtLastHop,
    /// Exit: a CONFLUX_LINK on a circuit without congestion control.
    #[error(
        "CONFLUX_LINK on a circuit without congestion control (prop 329 §2.2: legs negotiate it at CREATE2)"
    )]
    LinkWithoutCongestionControl,
    /// A Conflux message on a circuit that is no leg (C-tor closes it).
    #[error("{cmd} on a circuit that is not a Conflux leg (prop 329 §2.4)")]
    NotALeg {
        /// The command.
        cmd: RelayCmd,
    },
    /// A stream of the set broke a rule the whole tunnel answers for.
    #[error("a stream of the set broke the protocol: {0}")]
    StreamViolation(String),
    /// A resumable set waited for a new leg past its grace: it had none,
    /// or a lost leg's messages were never resent (Braid proposal 001
    /// §3.4).
    #[error("no new leg resumed the set within the grace of {grace:?} (Braid proposal 001 §3.4)")]
    ResumeGraceExpired {
        /// The grace.
        grace: Duration,
    },
    /// A resumable set was resumed too often (Braid proposal 001 §3.5).
    #[error(
        "resumed too often: at most {per_minute} a minute and {total} in all (Braid proposal 001 §3.5)"
    )]
    TooManyResumptions {
        /// Per minute.
        per_minute: usize,
        /// In the set's life.
        total: usize,
    },
    /// A Braid LINK/LINKED extension list that does not parse (Braid
    /// proposal 001 §2.2).
    #[error("{cmd} with a malformed extension list: {why} (Braid proposal 001 §2.2)")]
    BadExtension {
        /// The command.
        cmd: RelayCmd,
        /// What is wrong.
        why: &'static str,
    },
    /// We closed the set to free memory (prop 329 §4.2.2: under memory
    /// pressure the sets with the oldest queued data go first).
    #[error("closed to stay under the relay's memory limit")]
    OutOfMemory,

    // ----- Sequencing (prop 329 §2.6, §2.8, §4.2.1) -----
    /// A multiplexed command or SWITCH on a leg that is not linked.
    #[error(
        "{leg}: {cmd} on a leg that is not linked (prop 329 §2.4: unlinked legs carry no data)"
    )]
    NotLinkedLeg {
        /// The leg.
        leg: LegId,
        /// The command.
        cmd: RelayCmd,
    },
    /// BEGIN_DIR on a conflux leg.
    #[error(
        "{leg}: BEGIN_DIR on a conflux leg (C-tor TROVE-2026-008: legs carry no directory streams)"
    )]
    BeginDirOnLeg {
        /// The leg.
        leg: LegId,
    },
    /// CONFLUX_SWITCH with relative sequence number 0 after data flowed,
    /// one too many in a row without data.
    #[error(
        "{leg}: CONFLUX_SWITCH with relative seqno 0, the 17th switch in a row that moves nothing (prop 329 §2.6, §4.2.3: switches must advance the sequence; a few empty ones are C-tor's, more are a side channel)"
    )]
    SwitchZero {
        /// The leg.
        leg: LegId,
    },
    /// Two SWITCHes on one leg without a sequenced cell between them, one
    /// too many empty switches in a row
    /// ([`MAX_EMPTY_SWITCHES`](super::seq::MAX_EMPTY_SWITCHES)).
    #[error(
        "{leg}: CONFLUX_SWITCH again with no sequenced cell since the last one, the 17th switch in a row that moves nothing (prop 329 §4.2.1, §4.2.3: a few are C-tor's, more are a side channel)"
    )]
    SwitchRepeated {
        /// The leg.
        leg: LegId,
    },
    /// A SWITCH whose jump is more than the other legs could have in flight.
    #[error(
        "{leg}: CONFLUX_SWITCH leaves {missing} cells to arrive on the other legs, which could carry at most {bound} (prop 329 §4.2: implausible sequence jump)"
    )]
    SwitchTooFar {
        /// The leg.
        leg: LegId,
        /// Cells at or below the new sequence number not yet received.
        missing: u64,
        /// What the other legs' windows allow.
        bound: u64,
    },
    /// A sequence number would overflow 64 bits.
    #[error("{leg}: sequence number overflow (prop 329 §2.6)")]
    SeqOverflow {
        /// The leg.
        leg: LegId,
    },
    /// A cell whose sequence number was already delivered.
    #[error(
        "{leg}: sequence number {seq} already delivered (up to {delivered}) (prop 329 §2.6; C-tor closes on seq <= last delivered)"
    )]
    StaleSeq {
        /// The leg.
        leg: LegId,
        /// The cell's sequence number.
        seq: u64,
        /// The last delivered sequence number.
        delivered: u64,
    },
    /// Two cells with the same sequence number.
    #[error("{leg}: duplicate sequence number {seq} (prop 329 §2.6)")]
    DuplicateSeq {
        /// The leg.
        leg: LegId,
        /// The sequence number.
        seq: u64,
    },
    /// A sequence number absurdly far ahead of delivery.
    #[error(
        "{leg}: sequence number {seq} is more than {max_ahead} ahead of the next needed {expected} (prop 329 §4.1: reorder queue abuse)"
    )]
    SeqTooFarAhead {
        /// The leg.
        leg: LegId,
        /// The sequence number.
        seq: u64,
        /// The next sequence number needed.
        expected: u64,
        /// How far ahead a cell may be.
        max_ahead: u64,
    },

    // ----- Resources -----
    /// The reorder queue would exceed its limit.
    #[error(
        "reorder queue full: {cells} cells / {bytes} bytes held waiting for #{expected}, limit {max_cells} cells / {max_bytes} bytes; legs' last received {legs} (prop 329 §4.1)"
    )]
    ReorderQueueFull {
        /// The sequence number the queue waits for.
        expected: u64,
        /// Each linked leg's `last_seq_recv`, as "leg=seq ..." (which
        /// leg could still bring `expected`).
        legs: String,
        /// Cells held.
        cells: usize,
        /// Bytes held.
        bytes: usize,
        /// The cell limit.
        max_cells: usize,
        /// The byte limit.
        max_bytes: usize,
    },

    // ----- Leg loss -----
    /// Legs closed and the set must close.
    #[error("{leg} closed and the set cannot continue: {rule:?} (prop 329 §2.4.3)")]
    LegLost {
        /// The leg whose loss decided it (for `GapCannotFill` detected on
        /// arrival, the leg the last message came on).
        leg: LegId,
        /// The rule.
        rule: LegLossRule,
    },
    /// The other end said it lost this leg (Braid proposal 001 §3.3: the
    /// client in a LINK, the exit in LEGS_LOST); the set goes on.
    #[error("{leg}: the other end lost it (Braid proposal 001 §3.3)")]
    LegDroppedByPeer {
        /// The leg.
        leg: LegId,
    },

    /// Something went on the leg and nothing came back, not even the
    /// answer to a LEG_PING (Braid proposal 001 §3.6): a relay on it
    /// hangs. Only that leg closes; the set resumes.
    #[error("{leg}: silent for {silent:?}, its LEG_PING unanswered (Braid proposal 001 §3.6)")]
    LegSilent {
        /// The leg.
        leg: LegId,
        /// How long it was silent.
        silent: Duration,
    },

    // ----- Local -----
    /// No such leg in this set.
    #[error("no {leg} in this set")]
    NoSuchLeg {
        /// The leg.
        leg: LegId,
    },
    /// The leg is not linked yet, or the set has no linked leg.
    #[error("no linked leg to send on")]
    NotLinked,
    /// The command is not multiplexed over the set (prop 329 §2.8); send it
    /// on its own circuit.
    #[error("{cmd} is not a multiplexed command (prop 329 §2.8); send it on its circuit")]
    NotMultiplexed {
        /// The command.
        cmd: RelayCmd,
    },
    /// The set is closed.
    #[error("conflux set is closed")]
    Closed,
    /// Adding a leg is not allowed now (leg limit or relaunch budget).
    #[error("cannot add a leg: {0}")]
    CannotAddLeg(&'static str),
    /// A message could not be built.
    #[error("cannot build {cmd} message: {reason}")]
    Encode {
        /// The command.
        cmd: RelayCmd,
        /// Why.
        reason: String,
    },
}

impl ConfluxError {
    /// The class of this error.
    pub fn kind(&self) -> ConfluxErrorKind {
        use ConfluxError as E;
        match self {
            E::WrongNonce { .. }
            | E::LinkedWithoutLink { .. }
            | E::LinkedTwice { .. }
            | E::WrongDirection { .. }
            | E::LinkTwice { .. }
            | E::LinkOnUsedCircuit
            | E::AckWithoutLinked { .. }
            | E::AckTwice { .. }
            | E::ImpossibleLinkSeq { .. }
            | E::TooManyLegs { .. }
            | E::NotLinkedLeg { .. }
            | E::BeginDirOnLeg { .. }
            | E::SwitchZero { .. }
            | E::SwitchRepeated { .. }
            | E::SwitchTooFar { .. }
            | E::SeqOverflow { .. }
            | E::StaleSeq { .. }
            | E::DuplicateSeq { .. }
            | E::SeqTooFarAhead { .. }
            | E::LinkNotAtLastHop
            | E::LinkWithoutCongestionControl
            | E::NotALeg { .. }
            | E::BadExtension { .. }
            | E::StreamViolation(_) => ConfluxErrorKind::ProtocolViolation,
            E::ReorderQueueFull { .. } | E::OutOfMemory => ConfluxErrorKind::ResourceLimit,
            E::LinkTimeout { .. }
            | E::LinkedAckTimeout { .. }
            | E::ResumeGraceExpired { .. }
            | E::LegSilent { .. } => ConfluxErrorKind::Timeout,
            E::TooManyResumptions { .. } => ConfluxErrorKind::LegLoss,
            E::LegLost { .. } | E::LegDroppedByPeer { .. } => ConfluxErrorKind::LegLoss,
            E::NoSuchLeg { .. }
            | E::NotLinked
            | E::NotMultiplexed { .. }
            | E::Closed
            | E::CannotAddLeg(_)
            | E::Encode { .. } => ConfluxErrorKind::Local,
        }
    }

    /// True if the peer broke a protocol rule.
    pub fn is_protocol_violation(&self) -> bool {
        self.kind() == ConfluxErrorKind::ProtocolViolation
    }

    /// True if one of our resource limits was hit.
    pub fn is_resource_limit(&self) -> bool {
        self.kind() == ConfluxErrorKind::ResourceLimit
    }

    /// The DESTROY reason a relay (exit) end uses when it closes legs on
    /// this error (clients always send NONE, tor-spec §5.4).
    pub fn destroy_reason(&self) -> DestroyReason {
        match self.kind() {
            ConfluxErrorKind::ProtocolViolation => DestroyReason::PROTOCOL,
            ConfluxErrorKind::ResourceLimit => DestroyReason::RESOURCELIMIT,
            ConfluxErrorKind::Timeout => DestroyReason::TIMEOUT,
            ConfluxErrorKind::LegLoss => DestroyReason::FINISHED,
            ConfluxErrorKind::Local => DestroyReason::INTERNAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_reasons() {
        let v = ConfluxError::SwitchZero { leg: LegId(1) };
        assert!(v.is_protocol_violation());
        assert_eq!(v.destroy_reason(), DestroyReason::PROTOCOL);
        assert!(v.to_string().contains("prop 329"));
        let r = ConfluxError::ReorderQueueFull {
            expected: 7,
            legs: "leg1=9".into(),
            cells: 1,
            bytes: 2,
            max_cells: 3,
            max_bytes: 4,
        };
        assert!(r.is_resource_limit());
        assert_eq!(r.destroy_reason(), DestroyReason::RESOURCELIMIT);
        assert_eq!(ConfluxError::Closed.kind(), ConfluxErrorKind::Local);
    }
}
