//! What the handshake, connect and channel tasks tell the node task.

use std::net::SocketAddr;

use std::net::IpAddr;

use braid_core::channel::CellCodec;
use braid_core::ids::{ChanKey, EdgeKey, StreamId};
use braid_core::relay::{ConnectId, Peer};
use braid_core::stream::ResolvedAnswer;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tor_cell::chancell::AnyChanCell;
use tor_cell::relaycell::msg::EndReason;

use super::consensus::NetParams;
use super::metrics::NodeFigures;

/// An ORPort connection: TLS over TCP, reads buffered below TLS (rustls
/// reads a few KiB at a time; one 64 KiB read serves many).
pub(crate) type OrStream = tokio_rustls::TlsStream<BufReader<TcpStream>>;

/// A connection whose link handshake is done.
#[derive(Debug)]
pub(crate) struct OpenedLink {
    /// Who the peer proved to be.
    pub(crate) peer: Peer,
    /// Whether we opened it.
    pub(crate) initiator: bool,
    /// The extension request it answers, if we opened it for one.
    pub(crate) connect: Option<ConnectId>,
    /// The connection.
    pub(crate) stream: OrStream,
    /// The codec, at the link version, with any bytes read past the
    /// handshake.
    pub(crate) codec: CellCodec,
    /// Handshake bytes still to send.
    pub(crate) unsent: Vec<u8>,
    /// The peer's address.
    pub(crate) addr: SocketAddr,
}

/// A message to the node task.
#[derive(Debug)]
pub(crate) enum ToNode {
    /// A channel is open.
    Opened(Box<OpenedLink>),
    /// A channel asked for by `NodeEvent::Connect` could not be opened.
    ConnectFailed {
        /// The request.
        id: ConnectId,
        /// Why, for the log.
        why: String,
    },
    /// Cells read from a channel, in order.
    Cells {
        /// The channel.
        chan: ChanKey,
        /// The cells.
        cells: Vec<AnyChanCell>,
    },
    /// A channel's reader or writer stopped: the connection is over.
    Closed {
        /// The channel.
        chan: ChanKey,
        /// Why, for the log.
        why: String,
    },
    /// A channel's writer took cells from a queue the node found full.
    WriterReady {
        /// The channel.
        chan: ChanKey,
    },
    /// The parameters of a new consensus, for new circuits.
    Params(Box<NetParams>),
    /// New onion keys (rotated, or the previous one expired).
    OnionKeys(Box<braid_core::relay::OnionKeys>),
    /// The node task's figures, for the metrics.
    Figures(oneshot::Sender<NodeFigures>),
    /// What an exit stream's tasks report.
    Exit {
        /// The stream's circuit or Conflux set.
        edge: EdgeKey,
        /// The stream.
        id: StreamId,
        /// What happened.
        what: ExitMsg,
    },
}

/// What happened to an exit stream's destination.
#[derive(Debug)]
pub(crate) enum ExitMsg {
    /// Connected to `addr`, found with a lookup valid for `ttl` seconds.
    Connected {
        /// The socket.
        stream: TcpStream,
        /// The address.
        addr: IpAddr,
        /// The lookup's TTL.
        ttl: u32,
    },
    /// The exit policy refuses `addr` (found valid for `ttl`).
    RefusedByPolicy {
        /// The address.
        addr: IpAddr,
        /// The lookup's TTL.
        ttl: u32,
    },
    /// The stream cannot be opened.
    Refused(EndReason),
    /// A RESOLVE's answers.
    Resolved(Vec<ResolvedAnswer>),
    /// Bytes from the destination.
    Data(Vec<u8>),
    /// The destination closed its side (`None`) or failed.
    End(Option<std::io::ErrorKind>),
    /// The destination's writer took bytes from a queue found full.
    WriterReady,
}
