//! What the stream layer tells its driver, from
//! [`StreamMap::poll_event`](super::StreamMap::poll_event).

use std::net::IpAddr;

use crate::ids::StreamId;

use super::reasons::CloseReason;
use super::target::ResolvedAnswer;

/// Something that happened on a stream.
///
/// Events are edge-triggered and at most one of each kind is pending per
/// stream: after `Readable`, read until [`StreamError::WouldBlock`]
/// before expecting another; after a short `write`, wait for `Writable`.
///
/// [`StreamError::WouldBlock`]: super::StreamError::WouldBlock
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The exit connected (CONNECTED, tor-spec §6.2): the address it
    /// connected to and the TTL it gave, if it said (not for onion services
    /// or directory streams). The stream is writable.
    Connected {
        /// The stream.
        id: StreamId,
        /// Address and TTL in seconds.
        addr: Option<(IpAddr, u32)>,
    },
    /// Data arrived in an empty receive buffer.
    Readable {
        /// The stream.
        id: StreamId,
    },
    /// The send buffer has room again after a short write.
    Writable {
        /// The stream.
        id: StreamId,
    },
    /// The stream ended: by the exit's END (`remote`), or by us (after
    /// `shutdown_write` flushed, a connect timeout, or a protocol violation
    /// of the exit). Data still buffered can be read; then `read` returns 0
    /// (EOF). For a stream that never connected, `reason.socks5_reply()` is
    /// the SOCKS answer.
    Ended {
        /// The stream.
        id: StreamId,
        /// Why.
        reason: CloseReason,
        /// True if the exit sent END.
        remote: bool,
    },
    /// The answer to a RESOLVE (tor-spec §6.4). The stream is finished.
    Resolved {
        /// The stream.
        id: StreamId,
        /// The answers, in the exit's order.
        answers: Vec<ResolvedAnswer>,
    },
}

impl StreamEvent {
    /// The stream the event is about.
    pub fn id(&self) -> StreamId {
        match self {
            StreamEvent::Connected { id, .. }
            | StreamEvent::Readable { id }
            | StreamEvent::Writable { id }
            | StreamEvent::Ended { id, .. }
            | StreamEvent::Resolved { id, .. } => *id,
        }
    }
}
