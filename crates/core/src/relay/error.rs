//! Errors of a relay's circuits.

use thiserror::Error;
use tor_cell::chancell::msg::{DestroyReason, HandshakeType};
use tor_cell::relaycell::RelayCmd;

use crate::cc::CcError;
use crate::circuit::RelayCellError;
use crate::crypto::{HandshakeError, KdfError, RelayCryptoError};

/// The class of a [`RelayCircError`], and the DESTROY reason it closes the
/// circuit with (tor-spec §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayCircErrorKind {
    /// A peer broke the protocol: DESTROY with PROTOCOL.
    Protocol,
    /// One of our bounds: DESTROY with RESOURCELIMIT.
    ResourceLimit,
    /// A bug or misuse on our side: DESTROY with INTERNAL.
    Local,
}

/// An error on a relay's circuit. Every one closes the circuit (both
/// ways) except the local ones returned by calls that change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RelayCircError {
    /// The CREATE2 handshake failed (bad onionskin, unknown key).
    #[error("circuit handshake failed: {0} (tor-spec §5.1.4, proposal 332)")]
    Handshake(#[from] HandshakeError),
    /// A CREATE2 handshake type we do not speak.
    #[error("CREATE2 handshake type {0} not supported (tor-spec §5.1: ntor and ntor-v3 only)")]
    UnsupportedHandshake(HandshakeType),
    /// Key material could not be expanded.
    #[error("key derivation: {0}")]
    Kdf(#[from] KdfError),
    /// Relay crypto setup failed.
    #[error("relay crypto: {0}")]
    Crypto(#[from] RelayCryptoError),
    /// A cell not allowed here (a second CREATE, CREATED from the previous
    /// hop, ...), naming the rule.
    #[error("unexpected {cell} cell ({rule})")]
    UnexpectedCell {
        /// The cell command.
        cell: String,
        /// The rule broken.
        rule: &'static str,
    },
    /// A relay cell no hop could recognize reached the end of the circuit
    /// (tor-spec §5.5.2.2: the last hop closes the circuit).
    #[error("an outbound relay cell not recognized at the last hop (tor-spec §5.5.2.2)")]
    Unrecognized,
    /// More than 8 RELAY_EARLY cells (tor-spec §5.6).
    #[error("more than {max} RELAY_EARLY cells (tor-spec §5.6)")]
    TooManyRelayEarly {
        /// The limit.
        max: u8,
    },
    /// EXTEND2 in a RELAY cell rather than RELAY_EARLY (tor-spec §5.6).
    #[error("EXTEND2 not in a RELAY_EARLY cell (tor-spec §5.6)")]
    ExtendNotEarly,
    /// A relay message we may not receive here.
    #[error("unexpected {cmd} message ({rule})")]
    UnexpectedRelayMsg {
        /// The command.
        cmd: RelayCmd,
        /// The rule broken.
        rule: &'static str,
    },
    /// A relay cell body that does not parse.
    #[error("malformed relay cell: {0}")]
    Malformed(RelayCellError),
    /// A circuit-level flow control violation (SENDMEs, windows).
    #[error("flow control: {0}")]
    FlowControl(CcError),
    /// A queue of ours passed its bound (the peer sends faster than the
    /// next channel takes, or than our driver drains).
    #[error("circuit queue full ({queued} cells, limit {limit})")]
    QueueFull {
        /// Cells queued.
        queued: usize,
        /// The bound.
        limit: usize,
    },
    /// Local: the circuit is closed.
    #[error("the circuit is closed")]
    Closed,
    /// Local: a message could not be framed.
    #[error("cannot frame a relay message: {0}")]
    Encode(RelayCellError),
    /// Local: DATA with the congestion window closed.
    #[error("no room in the congestion window")]
    WindowClosed,
}

impl RelayCircError {
    /// The class of this error.
    pub fn kind(&self) -> RelayCircErrorKind {
        match self {
            Self::Handshake(e) if !e.is_protocol_violation() => RelayCircErrorKind::Local,
            Self::FlowControl(e) if !e.is_protocol_violation() => RelayCircErrorKind::Local,
            Self::Malformed(e) if !e.is_protocol_violation() => RelayCircErrorKind::Local,
            Self::Handshake(_)
            | Self::UnsupportedHandshake(_)
            | Self::UnexpectedCell { .. }
            | Self::Unrecognized
            | Self::TooManyRelayEarly { .. }
            | Self::ExtendNotEarly
            | Self::UnexpectedRelayMsg { .. }
            | Self::Malformed(_)
            | Self::FlowControl(_) => RelayCircErrorKind::Protocol,
            Self::QueueFull { .. } => RelayCircErrorKind::ResourceLimit,
            Self::Kdf(_)
            | Self::Crypto(_)
            | Self::Closed
            | Self::Encode(_)
            | Self::WindowClosed => RelayCircErrorKind::Local,
        }
    }

    /// The DESTROY reason for closing a circuit on this error.
    pub fn destroy_reason(&self) -> DestroyReason {
        match self.kind() {
            RelayCircErrorKind::Protocol => DestroyReason::PROTOCOL,
            RelayCircErrorKind::ResourceLimit => DestroyReason::RESOURCELIMIT,
            RelayCircErrorKind::Local => DestroyReason::INTERNAL,
        }
    }
}
