//! What the exit's streams ask of their driver, from
//! [`ExitStreamMap::poll_event`](super::ExitStreamMap::poll_event).

use tor_cell::relaycell::msg::{BeginFlags, EndReason};

use crate::ids::{EdgeKey, StreamId};
use crate::stream::Target;

use super::request::ResolveQuery;

/// Something the driver must act on. All IO is the driver's: the map
/// only says what the client asked and what the bytes are doing.
///
/// Per stream the events come in order: first its request (`Connect`,
/// `Resolve` or `DirStream`), last `Closed`; after `Closed` the id may come
/// back in a later request, for a new stream. `Readable` and `Writable` are
/// edge-triggered and at most one of each waits per stream: after
/// `Readable`, read until [`read`](super::ExitStreamMap::read) gives 0;
/// after a short [`write`](super::ExitStreamMap::write), wait for
/// `Writable`.
#[derive(Debug, Clone, PartialEq)]
pub enum ExitEvent {
    /// A BEGIN (tor-spec §6.2): check the exit policy, resolve a hostname
    /// (picking the address with [`choose_address`](super::choose_address)),
    /// connect; then [`connected`](super::ExitStreamMap::connected) or
    /// [`refuse`](super::ExitStreamMap::refuse).
    Connect {
        /// The stream.
        id: StreamId,
        /// Where to (hostnames in lower case; checked as C-tor does).
        target: Target,
        /// The BEGIN flags to act on (IPv6 ones cleared when the exit does
        /// not exit to IPv6).
        flags: BeginFlags,
    },
    /// A RESOLVE (tor-spec §6.4): look it up and answer with
    /// [`resolved`](super::ExitStreamMap::resolved).
    Resolve {
        /// The stream.
        id: StreamId,
        /// The name, or the address of a reverse lookup.
        query: ResolveQuery,
    },
    /// A BEGIN_DIR was accepted (we serve directories) and answered
    /// CONNECTED: the stream's bytes are requests for our directory
    /// server and its answers (tor-spec §6.2; C-tor
    /// `connection_exit_connect_dir`).
    DirStream {
        /// The stream.
        id: StreamId,
    },
    /// Bytes from the client wait for the destination.
    Readable {
        /// The stream.
        id: StreamId,
    },
    /// There is room again for the destination's bytes after a short
    /// write.
    Writable {
        /// The stream.
        id: StreamId,
    },
    /// The stream is over: close the socket (abort a connect or a lookup
    /// in progress). The driver reads and writes nothing more on it. Not
    /// sent for a stream the driver itself ended (`refuse`, `resolved`,
    /// `close`).
    Closed {
        /// The stream.
        id: StreamId,
        /// The client's END reason (`remote`), or ours: `DONE` after
        /// [`shutdown_write`](super::ExitStreamMap::shutdown_write) sent its
        /// END, `TIMEOUT` when the driver did not answer in time,
        /// `TORPROTOCOL` or `RESOURCELIMIT` when the client broke a rule or
        /// a limit, `DESTROY` when the circuit went.
        reason: EndReason,
        /// True if the client ended it (or the circuit was destroyed).
        remote: bool,
    },
    /// The stream moved to another circuit or Conflux set at this relay
    /// (Braid live stream migration, proposal 001 §4): from now on it is
    /// stream `to_id` of `to_edge` for every call and event; its
    /// destination stays as it is. Events and bytes that were the stream's
    /// go on there.
    Moved {
        /// The stream's old id.
        id: StreamId,
        /// Its circuit or set now.
        to_edge: EdgeKey,
        /// Its id there.
        to_id: StreamId,
    },
}

impl ExitEvent {
    /// The stream the event is about.
    pub fn id(&self) -> StreamId {
        match self {
            ExitEvent::Connect { id, .. }
            | ExitEvent::Resolve { id, .. }
            | ExitEvent::DirStream { id }
            | ExitEvent::Readable { id }
            | ExitEvent::Writable { id }
            | ExitEvent::Closed { id, .. }
            | ExitEvent::Moved { id, .. } => *id,
        }
    }
}
