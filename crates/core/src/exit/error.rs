//! The one error type of the exit's stream layer, [`ExitError`].
//!
//! Every variant has a kind ([`ExitErrorKind`]): the client broke the
//! protocol, it hit one of our limits, the driver misused the API, or a
//! bug on our side. Whatever a client's message did, the map has already
//! answered it on the wire (an END on the stream concerned) when the error
//! is returned; [`ExitError::closes_circuit`] says whether the circuit must
//! go too (C-tor closes it for those).

use std::fmt;

use tor_cell::relaycell::RelayCmd;

use crate::cc::CcError;
use crate::ids::StreamId;

/// A stream's state as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStreamState {
    /// A BEGIN waits for `connected` or `refuse`.
    Connecting,
    /// A RESOLVE waits for `resolved`.
    Resolving,
    /// Connected: bytes flow both ways.
    Open,
    /// The destination's EOF: the rest of its bytes go out, then END DONE.
    HalfClosedLocal,
    /// The client sent END: its last bytes wait for the destination.
    HalfClosedRemote,
    /// Over on the wire.
    Closed,
}

impl fmt::Display for ExitStreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExitStreamState::Connecting => "connecting",
            ExitStreamState::Resolving => "resolving",
            ExitStreamState::Open => "open",
            ExitStreamState::HalfClosedLocal => "half-closed (local)",
            ExitStreamState::HalfClosedRemote => "half-closed (remote)",
            ExitStreamState::Closed => "closed",
        })
    }
}

/// Who is to blame for an [`ExitError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitErrorKind {
    /// The client sent something the protocol does not allow.
    ProtocolViolation,
    /// A legal request passed one of our limits.
    ResourceLimit,
    /// The driver used the API wrongly.
    Misuse,
    /// A bug on our side.
    Internal,
}

/// An error of the exit's stream layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExitError {
    // ----- protocol violations by the client -----
    /// A BEGIN, BEGIN_DIR or RESOLVE on a stream id that is in use: that
    /// stream is closed with END TORPROTOCOL. (C-tor drops such a BEGIN
    /// "for known stream"; Braid ends the stream, whose id the client has
    /// confused.)
    #[error(
        "protocol violation: {cmd} on {id}, which is in use \
         (tor-spec §6.2: a new stream takes an unused id)"
    )]
    StreamInUse {
        /// The stream.
        id: StreamId,
        /// The opening command.
        cmd: RelayCmd,
    },

    /// Stream flow control was broken (stream SENDME with congestion
    /// control, more DATA than the window, ...): the stream is closed
    /// with END TORPROTOCOL.
    #[error("on {id}: {source}")]
    Flow {
        /// The stream.
        id: StreamId,
        /// The rule broken.
        source: CcError,
    },

    /// DATA that would overflow the stream's buffer for the destination,
    /// which is sized to what flow control lets the client send: the stream
    /// is closed with END TORPROTOCOL.
    #[error(
        "protocol violation: {len} bytes of DATA on {id} with {buffered} buffered would \
         exceed the {limit} bytes stream flow control allows (tor-spec §7.4, proposal 324 §4)"
    )]
    BufferOverflow {
        /// The stream.
        id: StreamId,
        /// Bytes in the cell.
        len: usize,
        /// Bytes already buffered.
        buffered: usize,
        /// The bound.
        limit: usize,
    },

    /// A Braid live stream migration message out of place (proposal 001
    /// §4.3: a MIGRATE_MARK without a migration, a MIGRATE where BEGIN is
    /// not allowed, more bytes on an old id than it announced): END
    /// TORPROTOCOL on that id.
    #[error("protocol violation on {id}: {why} (Braid proposal 001 §4)")]
    Migration {
        /// The stream id.
        id: StreamId,
        /// The rule broken.
        why: &'static str,
    },

    // ----- our limits -----
    /// The circuit holds the most streams we allow: the BEGIN or RESOLVE
    /// was answered END RESOURCELIMIT.
    #[error("resource limit: {limit} streams on this circuit; {id} refused with RESOURCELIMIT")]
    TooManyStreams {
        /// The refused stream.
        id: StreamId,
        /// The limit.
        limit: usize,
    },

    /// The bytes waiting for all the circuit's destinations would pass
    /// their bound: the stream whose DATA did it was closed with END
    /// RESOURCELIMIT.
    #[error(
        "resource limit: {limit} bytes already wait for this circuit's destinations; \
         {id} closed with RESOURCELIMIT"
    )]
    ToDestTotal {
        /// The stream closed.
        id: StreamId,
        /// The bound.
        limit: usize,
    },

    /// Too many migrations in progress on this tunnel, or begun in the last
    /// second (proposal 001 §4.3): the MIGRATE was answered END
    /// RESOURCELIMIT.
    #[error("resource limit: too many stream migrations on this tunnel; {id} refused")]
    TooManyMigrations {
        /// The new id refused.
        id: StreamId,
    },

    /// Too many refusals wait to be sent (the circuit does not take our
    /// cells): this request was dropped unanswered.
    #[error("resource limit: {limit} refusals already wait to be sent; {id} dropped")]
    RefusalsQueued {
        /// The dropped request's stream.
        id: StreamId,
        /// The bound.
        limit: usize,
    },

    // ----- misuse by the driver -----
    /// No stream with this id is visible to the driver (never announced,
    /// or over).
    #[error("misuse: no stream {id}")]
    NoSuchStream {
        /// The id given.
        id: StreamId,
    },

    /// The call does not fit the stream's state or kind.
    #[error("misuse: cannot {op} {id} in state {state}")]
    InvalidState {
        /// The stream.
        id: StreamId,
        /// The call.
        op: &'static str,
        /// The stream's state.
        state: ExitStreamState,
    },

    /// An answer that cannot be given (an unspecified address, an
    /// address family the client refused, a name too long for RESOLVED).
    #[error("misuse: bad answer for {id}: {why}")]
    InvalidAnswer {
        /// The stream.
        id: StreamId,
        /// What was wrong.
        why: &'static str,
    },

    // ----- bugs -----
    /// Something that cannot happen did.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ExitError {
    /// Who is to blame.
    pub fn kind(&self) -> ExitErrorKind {
        match self {
            ExitError::StreamInUse { .. }
            | ExitError::BufferOverflow { .. }
            | ExitError::Migration { .. } => ExitErrorKind::ProtocolViolation,
            ExitError::Flow { source, .. } => {
                if source.is_protocol_violation() {
                    ExitErrorKind::ProtocolViolation
                } else {
                    ExitErrorKind::Internal
                }
            }
            ExitError::TooManyStreams { .. }
            | ExitError::ToDestTotal { .. }
            | ExitError::RefusalsQueued { .. }
            | ExitError::TooManyMigrations { .. } => ExitErrorKind::ResourceLimit,
            ExitError::NoSuchStream { .. }
            | ExitError::InvalidState { .. }
            | ExitError::InvalidAnswer { .. } => ExitErrorKind::Misuse,
            ExitError::Internal(_) => ExitErrorKind::Internal,
        }
    }

    /// True if the client broke the protocol.
    pub fn is_protocol_violation(&self) -> bool {
        self.kind() == ExitErrorKind::ProtocolViolation
    }

    /// True if one of our limits was hit.
    pub fn is_resource_limit(&self) -> bool {
        self.kind() == ExitErrorKind::ResourceLimit
    }

    /// True if the driver misused the API.
    pub fn is_misuse(&self) -> bool {
        self.kind() == ExitErrorKind::Misuse
    }

    /// True if the circuit must be closed (DESTROY with PROTOCOL), as
    /// C-tor closes it: a stream SENDME with congestion control (proposal
    /// 324 §2.2; `sendme_process_stream_level`), one the window does not
    /// allow, or DATA past the stream's deliver window (tor-spec §7.4:
    /// "(relay data) conn deliver_window below 0").
    pub fn closes_circuit(&self) -> bool {
        matches!(
            self,
            ExitError::Flow {
                source: CcError::StreamSendmeWithCc
                    | CcError::PackageWindowOverflow { .. }
                    | CcError::UnexpectedSendme { .. }
                    | CcError::DeliverWindowExhausted { .. },
                ..
            }
        )
    }

    /// The stream concerned, if there is one.
    pub fn stream_id(&self) -> Option<StreamId> {
        match self {
            ExitError::StreamInUse { id, .. }
            | ExitError::Flow { id, .. }
            | ExitError::BufferOverflow { id, .. }
            | ExitError::TooManyStreams { id, .. }
            | ExitError::ToDestTotal { id, .. }
            | ExitError::RefusalsQueued { id, .. }
            | ExitError::NoSuchStream { id }
            | ExitError::InvalidState { id, .. }
            | ExitError::InvalidAnswer { id, .. }
            | ExitError::Migration { id, .. }
            | ExitError::TooManyMigrations { id } => Some(*id),
            ExitError::Internal(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::WindowKind;

    fn id(n: u16) -> StreamId {
        StreamId::new(n).unwrap()
    }

    #[test]
    fn kinds_and_circuit_closing() {
        let sendme = ExitError::Flow {
            id: id(1),
            source: CcError::StreamSendmeWithCc,
        };
        assert!(sendme.is_protocol_violation());
        assert!(sendme.closes_circuit());
        assert!(sendme.to_string().contains("proposal 324"));
        let ignored = ExitError::Flow {
            id: id(1),
            source: CcError::XoffIgnored { bytes: 9, limit: 1 },
        };
        assert!(ignored.is_protocol_violation());
        assert!(!ignored.closes_circuit());
        let deliver = ExitError::Flow {
            id: id(2),
            source: CcError::DeliverWindowExhausted {
                kind: WindowKind::Stream,
            },
        };
        assert!(deliver.closes_circuit());
        let in_use = ExitError::StreamInUse {
            id: id(3),
            cmd: RelayCmd::BEGIN,
        };
        assert!(in_use.is_protocol_violation() && !in_use.closes_circuit());
        assert_eq!(in_use.stream_id(), Some(id(3)));
        assert!(
            ExitError::TooManyStreams {
                id: id(4),
                limit: 1
            }
            .is_resource_limit()
        );
        assert!(ExitError::NoSuchStream { id: id(5) }.is_misuse());
        assert_eq!(ExitError::Internal("x".into()).stream_id(), None);
        assert_eq!(
            ExitStreamState::HalfClosedRemote.to_string(),
            "half-closed (remote)"
        );
    }
}
