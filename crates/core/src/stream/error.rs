//! The one error type of the stream layer, [`StreamError`].
//!
//! Every variant has a kind ([`StreamErrorKind`]): the exit broke the
//! protocol, we hit one of our own limits, the caller misused the API, the
//! operation would block, or a bug on our side. A protocol violation on a
//! stream closes that stream (the [`StreamMap`](super::StreamMap) has
//! already queued its END when the error is returned); whether the circuit
//! goes too is the circuit driver's decision.

use tor_cell::relaycell::RelayCmd;

use crate::cc::CcError;
use crate::ids::StreamId;

use super::state::StreamState;

/// Who is to blame for a [`StreamError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorKind {
    /// The exit sent something the protocol does not allow.
    ProtocolViolation,
    /// A legal request exceeded one of our configured limits.
    ResourceLimit,
    /// The caller used the API wrongly (unknown id, bad target, write after
    /// shutdown, ...).
    Misuse,
    /// Nothing to read yet; try again after a `Readable` event.
    WouldBlock,
    /// A bug on our side.
    Internal,
}

/// An error of the stream layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    // ----- protocol violations by the exit -----
    /// A message named a stream id this circuit never opened.
    #[error(
        "protocol violation: {cmd} for {id}, which was never opened on this circuit \
         (tor-spec §6.1: stream ids are chosen by the OP)"
    )]
    UnknownStream {
        /// The stream id on the message.
        id: StreamId,
        /// Its relay command.
        cmd: RelayCmd,
    },

    /// A message that the stream's state does not allow (DATA before
    /// CONNECTED, a second CONNECTED, RESOLVED on a connect stream, a
    /// forward-only command sent backward, ...).
    #[error("protocol violation: {cmd} on {id} in state {state} ({rule})")]
    UnexpectedMessage {
        /// The stream.
        id: StreamId,
        /// The relay command received.
        cmd: RelayCmd,
        /// The stream's state when it arrived.
        state: StreamState,
        /// The rule broken.
        rule: &'static str,
    },

    /// More cells on a stream we closed than the exit could have sent
    /// before it saw our END, or any cell after the exit's own END.
    #[error(
        "protocol violation: {cmd} on closed {id} beyond what could be in flight \
         (tor-spec §6.3: the sender of END SHOULD remember how many cells it would \
         have accepted, and after an END no further cells arrive)"
    )]
    ClosedStream {
        /// The stream id.
        id: StreamId,
        /// The relay command received.
        cmd: RelayCmd,
    },

    /// DATA arrived that would overflow the stream's receive buffer, which
    /// is sized to what flow control lets the exit send.
    #[error(
        "protocol violation: {len} bytes of DATA on {id} with {buffered} buffered would \
         exceed the limit of {limit} bytes that stream flow control allows \
         (tor-spec §7.4, proposal 324 §4)"
    )]
    ReceiveBufferOverflow {
        /// The stream.
        id: StreamId,
        /// Bytes in the arriving cell.
        len: usize,
        /// Bytes already buffered.
        buffered: usize,
        /// The buffer limit.
        limit: usize,
    },

    /// Stream flow control was violated (windows, SENDME or XON/XOFF
    /// rules); the inner error names the rule.
    #[error("on {id}: {source}")]
    Flow {
        /// The stream.
        id: StreamId,
        /// The broken rule.
        source: CcError,
    },

    /// A CONNECTED message whose address is unusable (tor-spec §6.2; C-tor
    /// closes such a stream with TORPROTOCOL).
    #[error("protocol violation: CONNECTED on {id}: {why} (tor-spec §6.2)")]
    BadConnected {
        /// The stream.
        id: StreamId,
        /// What was wrong.
        why: &'static str,
    },

    // ----- local resource limits -----
    /// The circuit already carries the configured maximum of streams.
    #[error("resource limit: {limit} streams already open on this circuit")]
    TooManyStreams {
        /// The configured limit.
        limit: usize,
    },

    /// No stream id is free on this circuit.
    #[error("resource limit: no unused stream id left on this circuit")]
    NoStreamIds,

    // ----- misuse by the caller -----
    /// The caller named a stream this map does not hold (never opened,
    /// or already released).
    #[error("misuse: no stream {id} on this circuit")]
    NoSuchStream {
        /// The id passed in.
        id: StreamId,
    },

    /// The target cannot be put in a BEGIN or RESOLVE (tor-spec §6.2, §6.4).
    #[error("misuse: invalid target: {why}")]
    InvalidTarget {
        /// What was wrong.
        why: &'static str,
    },

    /// The operation does not fit the stream's state or kind (write after
    /// shutdown or END, read on a RESOLVE stream, ...).
    #[error("misuse: cannot {op} {id} in state {state}")]
    InvalidState {
        /// The stream.
        id: StreamId,
        /// The operation attempted.
        op: &'static str,
        /// The stream's state.
        state: StreamState,
    },

    // ----- not an error as such -----
    /// Nothing buffered to read and the stream has not ended.
    #[error("{id}: nothing to read yet")]
    WouldBlock {
        /// The stream.
        id: StreamId,
    },

    // ----- bugs -----
    /// Something that cannot happen did (a message we built could not be
    /// encoded, for instance).
    #[error("internal error: {0}")]
    Internal(String),
}

impl StreamError {
    /// Who is to blame.
    pub fn kind(&self) -> StreamErrorKind {
        match self {
            StreamError::UnknownStream { .. }
            | StreamError::UnexpectedMessage { .. }
            | StreamError::ClosedStream { .. }
            | StreamError::ReceiveBufferOverflow { .. }
            | StreamError::BadConnected { .. } => StreamErrorKind::ProtocolViolation,
            StreamError::Flow { source, .. } => {
                if source.is_protocol_violation() {
                    StreamErrorKind::ProtocolViolation
                } else {
                    StreamErrorKind::Internal
                }
            }
            StreamError::TooManyStreams { .. } | StreamError::NoStreamIds => {
                StreamErrorKind::ResourceLimit
            }
            StreamError::NoSuchStream { .. }
            | StreamError::InvalidTarget { .. }
            | StreamError::InvalidState { .. } => StreamErrorKind::Misuse,
            StreamError::WouldBlock { .. } => StreamErrorKind::WouldBlock,
            StreamError::Internal(_) => StreamErrorKind::Internal,
        }
    }

    /// True if the exit broke the protocol. The stream concerned, if it
    /// was open, has been closed with an END; the driver may also close the
    /// circuit (C-tor does for some of these, e.g. a stream SENDME with
    /// congestion control or a deliver window below zero).
    pub fn is_protocol_violation(&self) -> bool {
        self.kind() == StreamErrorKind::ProtocolViolation
    }

    /// True if a local limit was hit.
    pub fn is_resource_limit(&self) -> bool {
        self.kind() == StreamErrorKind::ResourceLimit
    }

    /// True if the caller misused the API.
    pub fn is_misuse(&self) -> bool {
        self.kind() == StreamErrorKind::Misuse
    }

    /// True for [`StreamError::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        self.kind() == StreamErrorKind::WouldBlock
    }

    /// The stream concerned, if there is one.
    pub fn stream_id(&self) -> Option<StreamId> {
        match self {
            StreamError::UnknownStream { id, .. }
            | StreamError::UnexpectedMessage { id, .. }
            | StreamError::ClosedStream { id, .. }
            | StreamError::ReceiveBufferOverflow { id, .. }
            | StreamError::Flow { id, .. }
            | StreamError::BadConnected { id, .. }
            | StreamError::NoSuchStream { id }
            | StreamError::InvalidState { id, .. }
            | StreamError::WouldBlock { id } => Some(*id),
            StreamError::TooManyStreams { .. }
            | StreamError::NoStreamIds
            | StreamError::InvalidTarget { .. }
            | StreamError::Internal(_) => None,
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
    fn kinds() {
        let flow = StreamError::Flow {
            id: id(3),
            source: CcError::StreamSendmeWithCc,
        };
        assert!(flow.is_protocol_violation());
        assert!(flow.to_string().contains("proposal 324"));
        assert!(flow.to_string().contains("stream 3"));
        let local = StreamError::Flow {
            id: id(3),
            source: CcError::SendWindowClosed {
                kind: WindowKind::Stream,
            },
        };
        assert_eq!(local.kind(), StreamErrorKind::Internal);
        assert!(StreamError::TooManyStreams { limit: 5 }.is_resource_limit());
        assert!(StreamError::NoSuchStream { id: id(1) }.is_misuse());
        assert!(StreamError::WouldBlock { id: id(1) }.is_would_block());
        assert_eq!(StreamError::NoStreamIds.stream_id(), None);
        let unk = StreamError::UnknownStream {
            id: id(9),
            cmd: RelayCmd::DATA,
        };
        assert!(unk.is_protocol_violation());
        assert!(unk.to_string().contains("tor-spec §6.1"));
        assert_eq!(unk.stream_id(), Some(id(9)));
    }
}
