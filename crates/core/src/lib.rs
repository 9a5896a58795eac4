//! The sans-IO protocol core of Braid.
//!
//! The Tor protocol as plain state machines: channel handshake state,
//! circuits, relay crypto, streams, SENDME and congestion control
//! (proposal 324), and later Conflux linking, sequencing, leg scheduling and
//! the bounded reorder queue (proposal 329). It owns no sockets, no runtime
//! and no clock: callers pass `now`, feed input through `handle_*` methods and
//! take output from `poll_*` methods, in the manner of `quinn-proto`.
//!
//! Module rule (the same in every Braid crate): one module per file; a file
//! that has submodules (`channel.rs` for `channel/`) only declares and
//! re-exports them.
//!
//! - [`ids`]: typed identifiers shared by every layer.
//! - [`channel`]: cell framing, the link handshake (VERSIONS, CERTS,
//!   AUTH_CHALLENGE, NETINFO), CERTS verification (tor-spec §4) and the
//!   circuits of an open channel (`ChannelMux`, tor-spec §5.1.1).
//! - [`crypto`]: circuit handshakes (ntor, ntor-v3) and tor1 relay crypto
//!   (tor-spec §5.1.4, §5.5, proposal 332).
//! - [`cc`]: SENDMEs and congestion control (tor-spec §7.4, proposal 324).
//! - [`circuit`]: a client circuit's hops: building with CREATE2/EXTEND2,
//!   relay cell framing and crypto, circuit-level SENDMEs and congestion
//!   control (tor-spec §5, §6.1, §7).
//! - [`stream`]: streams on a circuit: BEGIN/CONNECTED/DATA/END,
//!   RESOLVE/RESOLVED, stream flow control (tor-spec §6.2-§6.4).
//! - [`conflux`]: Conflux sets: linking, sequencing, SWITCH, the bounded
//!   reorder queue, leg loss (proposal 329).
//! - [`conflux_sched`]: Conflux leg schedulers (MinRTT, LowRTT, ECF).
//! - [`relay`]: the relay's side of circuits: CREATE2 answered, our
//!   layer both ways, EXTEND2, SENDMEs and congestion control as an edge.
//! - [`exit`]: the exit's side of streams: BEGIN, RESOLVE, BEGIN_DIR
//!   answered, bytes to and from the destinations the driver connects,
//!   XON/XOFF as the exit, bounded buffers.
//! - [`tunnel`]: the tunnel composing them: one circuit or a Conflux set,
//!   its streams and its scheduler, behind one sans-IO interface.
//! - [`time`]: calendar arithmetic (no clock): dates and days since the
//!   Unix epoch, for certificate times.
//! - `test_support` (tests and the `test-support` feature): the test
//!   helpers the fuzz targets share.

pub mod cc;
pub mod channel;
pub mod circuit;
pub mod conflux;
pub mod conflux_sched;
pub mod crypto;
pub mod exit;
pub mod ids;
pub mod relay;
pub mod stream;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod time;
pub mod tunnel;
