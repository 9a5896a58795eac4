//! Errors of the circuit layer.
//!
//! [`RelayCellError`] is about one relay cell body (tor-spec §6.1 framing);
//! [`CircError`] is about a circuit. Every [`CircError`] variant is one of
//! three kinds ([`CircErrorKind`]):
//!
//! - a **protocol violation** by a relay on the path: a CREATED2 or
//!   EXTENDED2 whose handshake does not verify, a cell that no hop
//!   recognizes, a message that may not arrive at a client, a SENDME that
//!   breaks the rules of tor-spec §7.3 / proposal 289. The circuit is closed
//!   and the message names the rule;
//! - a **resource limit** of ours: a queue is full. Returned by the sending
//!   methods without closing the circuit; when the peer's traffic would push
//!   one of our internal queues over its bound, the circuit is closed;
//! - a **local** error: the caller used the API out of order (no such hop,
//!   circuit closed, RELAY_EARLY budget spent, message too long to encode),
//!   or an internal bug.
//!
//! None of these carries key material.

use thiserror::Error;
use tor_cell::relaycell::RelayCmd;

use crate::cc::CcError;
use crate::crypto::{HandshakeError, RelayCryptoError};
use crate::ids::HopNum;

/// A relay cell body could not be framed or parsed (tor-spec §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RelayCellError {
    /// The `Length` field exceeds the 498 bytes a body can hold.
    #[error(
        "relay cell length field {len} exceeds {max} (tor-spec §6.1: Length <= PAYLOAD_LEN - 11)"
    )]
    LengthTooLarge {
        /// The `Length` field.
        len: usize,
        /// The most a relay cell carries (498).
        max: usize,
    },
    /// The command needs a stream id and the cell has none, or the other
    /// way round (tor-spec §6.1: "control" commands use stream id 0,
    /// stream commands a non-zero one).
    #[error(
        "relay command {cmd} with stream id {stream} (tor-spec §6.1: control commands use stream 0, stream commands a non-zero id)"
    )]
    BadStreamId {
        /// The relay command.
        cmd: RelayCmd,
        /// The stream id on the wire (0 for none).
        stream: u16,
    },
    /// The data could not be parsed as a message of its command.
    #[error("malformed {cmd} message: {reason}")]
    Malformed {
        /// The relay command.
        cmd: RelayCmd,
        /// What tor-cell said.
        reason: String,
    },
    /// Local: the message does not fit in one relay cell.
    #[error("{cmd} message of {len} bytes does not fit in a relay cell (at most {max})")]
    TooLong {
        /// The relay command.
        cmd: RelayCmd,
        /// The encoded length.
        len: usize,
        /// The most a relay cell carries (498).
        max: usize,
    },
    /// Local: tor-cell could not encode the message.
    #[error("cannot encode {cmd} message: {reason}")]
    Encode {
        /// The relay command.
        cmd: RelayCmd,
        /// What tor-cell said.
        reason: String,
    },
}

impl RelayCellError {
    /// True if the error comes from parsing a received body (the sender's
    /// fault), false for our own encoding errors.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, Self::TooLong { .. } | Self::Encode { .. })
    }
}

/// Who is to blame for a [`CircError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircErrorKind {
    /// A relay on the path broke the protocol.
    Protocol,
    /// One of our bounded queues is full.
    ResourceLimit,
    /// The caller misused the API, or a bug on our side.
    Local,
}

/// An error on a client circuit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CircError {
    // ----- Protocol violations by a relay -----
    /// The relay's CREATED2 or EXTENDED2 reply did not complete the
    /// handshake (bad AUTH, malformed reply, degenerate key).
    #[error("{hop}: circuit handshake failed: {source} (tor-spec §5.1.4, proposal 332)")]
    Handshake {
        /// The hop being created.
        hop: HopNum,
        /// What went wrong.
        source: HandshakeError,
    },
    /// The relay answered our ntor-v3 congestion control request in a way
    /// we cannot accept: a `sendme_inc` out of range, or an answer to a
    /// request we did not make.
    #[error("{hop}: congestion control negotiation refused: {reason} (proposal 324 §6.2)")]
    CcNegotiation {
        /// The hop being created.
        hop: HopNum,
        /// What was wrong.
        reason: String,
    },
    /// A cell arrived that may not arrive on a client circuit in its state
    /// (for example a CREATED2 when no CREATE2 is pending, or any
    /// RELAY_EARLY cell).
    #[error("unexpected {cell} cell: {rule}")]
    UnexpectedCell {
        /// The cell's command.
        cell: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// An inbound relay cell that no hop recognized. The client is the end
    /// of the circuit, so nothing may pass it by.
    #[error(
        "inbound relay cell recognized by none of the {n_hops} hops (tor-spec §5.5.3: the \
         origin is the end of the circuit; an unrecognized cell there is an error)"
    )]
    UnrecognizedCell {
        /// How many hops were tried.
        n_hops: usize,
    },
    /// A recognized relay cell whose body is malformed.
    #[error("{hop}: {source}")]
    MalformedRelayCell {
        /// The hop that sent it.
        hop: HopNum,
        /// What was wrong.
        source: RelayCellError,
    },
    /// A well-formed relay message a client must not receive here.
    #[error("{hop}: unexpected {cmd} message: {rule}")]
    UnexpectedRelayMsg {
        /// The hop that sent it.
        hop: HopNum,
        /// Its command.
        cmd: RelayCmd,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// Flow or congestion control: a SENDME that breaks tor-spec §7.3 /
    /// proposal 289 (wrong tag, none expected, rejected version), or DATA
    /// beyond our deliver window.
    #[error("{hop}: {source}")]
    FlowControl {
        /// The hop concerned.
        hop: HopNum,
        /// The rule broken (or, for local errors, the misuse).
        source: CcError,
    },

    // ----- Resource limits -----
    /// The circuit's outbound queue is full.
    #[error("outbound queue full: {queued} cells queued, limit {limit} (local resource limit)")]
    QueueFull {
        /// Cells queued.
        queued: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// Events for the caller piled up beyond their bound (the driver does
    /// not call `poll_event`).
    #[error("event queue full: {limit} events pending (local resource limit)")]
    EventQueueFull {
        /// The bound.
        limit: usize,
    },

    // ----- Local errors -----
    /// The circuit is closed.
    #[error("circuit is closed")]
    Closed,
    /// A cell was addressed to a hop the circuit does not have (yet).
    #[error("no {hop} on this circuit ({n_hops} hops)")]
    NoSuchHop {
        /// The hop asked for.
        hop: HopNum,
        /// How many hops the circuit has.
        n_hops: usize,
    },
    /// An EXTEND2 must go in a RELAY_EARLY cell and the circuit has sent
    /// its 8 (tor-spec §5.6).
    #[error("no RELAY_EARLY cell left to carry an EXTEND2 (tor-spec §5.6: at most 8 per circuit)")]
    RelayEarlyExhausted,
    /// A message could not be framed.
    #[error("cannot send: {0}")]
    Encode(RelayCellError),
    /// The caller's message is not one it may send through `send_relay`
    /// (EXTEND2 and circuit SENDMEs belong to the circuit itself).
    #[error("{cmd} messages are sent by the circuit itself, not through send_relay")]
    ReservedCommand {
        /// The command refused.
        cmd: RelayCmd,
    },
    /// Relay crypto refused (a hop count or key length problem).
    #[error("relay crypto: {0}")]
    Crypto(RelayCryptoError),
    /// Starting a handshake failed on our side (for example a small-order
    /// onion key in the directory data).
    #[error("{hop}: cannot start circuit handshake: {source}")]
    HandshakeStart {
        /// The hop being created.
        hop: HopNum,
        /// Why.
        source: HandshakeError,
    },
    /// A bug: a state the code should never reach.
    #[error("internal error in circuit: {0}")]
    Internal(&'static str),
}

impl CircError {
    /// Who is to blame.
    pub fn kind(&self) -> CircErrorKind {
        match self {
            Self::Handshake { source, .. } => {
                if source.is_protocol_violation() {
                    CircErrorKind::Protocol
                } else {
                    CircErrorKind::Local
                }
            }
            Self::FlowControl { source, .. } => {
                if source.is_protocol_violation() {
                    CircErrorKind::Protocol
                } else {
                    CircErrorKind::Local
                }
            }
            Self::MalformedRelayCell { source, .. } => {
                if source.is_protocol_violation() {
                    CircErrorKind::Protocol
                } else {
                    CircErrorKind::Local
                }
            }
            Self::CcNegotiation { .. }
            | Self::UnexpectedCell { .. }
            | Self::UnrecognizedCell { .. }
            | Self::UnexpectedRelayMsg { .. } => CircErrorKind::Protocol,
            Self::QueueFull { .. } | Self::EventQueueFull { .. } => CircErrorKind::ResourceLimit,
            Self::Closed
            | Self::NoSuchHop { .. }
            | Self::RelayEarlyExhausted
            | Self::Encode(_)
            | Self::ReservedCommand { .. }
            | Self::Crypto(_)
            | Self::HandshakeStart { .. }
            | Self::Internal(_) => CircErrorKind::Local,
        }
    }

    /// True if a relay on the path broke the protocol.
    pub fn is_protocol_violation(&self) -> bool {
        self.kind() == CircErrorKind::Protocol
    }

    /// True if one of our bounded queues is full.
    pub fn is_resource_limit(&self) -> bool {
        self.kind() == CircErrorKind::ResourceLimit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::WindowKind;

    #[test]
    fn classification() {
        assert!(CircError::UnrecognizedCell { n_hops: 3 }.is_protocol_violation());
        assert!(
            CircError::FlowControl {
                hop: HopNum(2),
                source: CcError::SendmeTagMismatch
            }
            .is_protocol_violation()
        );
        let local_cc = CircError::FlowControl {
            hop: HopNum(2),
            source: CcError::SendWindowClosed {
                kind: WindowKind::Circuit,
            },
        };
        assert_eq!(local_cc.kind(), CircErrorKind::Local);
        assert!(
            CircError::Handshake {
                hop: HopNum(0),
                source: HandshakeError::AuthMismatch("AUTH")
            }
            .is_protocol_violation()
        );
        let full = CircError::QueueFull {
            queued: 10,
            limit: 10,
        };
        assert!(full.is_resource_limit());
        assert!(!full.is_protocol_violation());
        assert_eq!(CircError::Internal("x").kind(), CircErrorKind::Local);
        assert_eq!(
            CircError::Encode(RelayCellError::TooLong {
                cmd: RelayCmd::DATA,
                len: 600,
                max: 498
            })
            .kind(),
            CircErrorKind::Local
        );
    }

    #[test]
    fn messages_name_the_rule() {
        let e = CircError::UnrecognizedCell { n_hops: 3 };
        assert!(e.to_string().contains("tor-spec §5.5.3"));
        let e = CircError::FlowControl {
            hop: HopNum(2),
            source: CcError::SendmeTagMismatch,
        };
        assert!(e.to_string().contains("proposal 289"), "{e}");
        assert!(e.to_string().starts_with("hop 2"), "{e}");
        assert!(
            RelayCellError::LengthTooLarge { len: 499, max: 498 }
                .to_string()
                .contains("§6.1")
        );
    }
}
