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
    /// A stream being migrated away from this circuit has every byte the
    /// exit sent on it (its MIGRATE_MARK came, Braid proposal 001 §4.2):
    /// take what is left of it with
    /// [`StreamMap::migrate_finish`](super::StreamMap::migrate_finish) and
    /// give it to the new stream
    /// ([`StreamMap::migrate_join`](super::StreamMap::migrate_join)), which
    /// carries the stream from then on.
    MigrateHandover {
        /// The old stream.
        id: StreamId,
    },
    /// A migration's new stream ended before it took the stream over
    /// (proposal 001 §4.2, §4.3): tell the old stream with
    /// [`StreamMap::migrate_target_failed`](super::StreamMap::migrate_target_failed).
    MigrateFailed {
        /// The new stream.
        id: StreamId,
        /// The exit refused the migration (its END came before MIGRATED,
        /// or no answer came): the old stream goes on. Otherwise the
        /// stream is aborted.
        refused: bool,
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
            | StreamEvent::Resolved { id, .. }
            | StreamEvent::MigrateHandover { id }
            | StreamEvent::MigrateFailed { id, .. } => *id,
        }
    }
}
