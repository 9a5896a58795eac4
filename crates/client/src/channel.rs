//! The channel driver: TLS to a relay's ORPort, braid-core's link handshake
//! run to completion, then a reactor task that owns the connection and
//! carries cells between it and the circuits (tor-spec §2-§5.1).
//!
//! ```text
//!  Channel::connect ── TCP ── TLS (tls) ── ClientHandshake (braid-core)
//!                                                   │
//!                                          reactor task (reactor)
//!   ChannelHandle ──control──▶ │ reads cells ─▶ ChannelMux (braid-core) ─▶ bounded queue ─▶ CircuitIo.rx
//!                              │ writes cells ◀─ round robin, batches ◀─ bounded queue ◀─ CircuitIo.tx
//! ```
//!
//! Which circuit a cell is for, circuit ids, what a circuit may send, the
//! round-robin order, DESTROYs and the DESTROY probe are decided by
//! braid-core's [`ChannelMux`](braid_core::channel::ChannelMux); this driver
//! moves bytes and owns the queues. Every queue is bounded; a circuit that
//! does not keep up with its inbound queue is closed instead of slowing the
//! channel down or making it buffer.
//!
//! - [`connect`]: [`Channel::connect`], TCP + TLS + link handshake.
//! - [`tls`]: the rustls configuration (any certificate, real handshake
//!   signatures) and the TLS handshake.
//! - [`reactor`]: the task that owns the connection.
//! - [`handle`]: [`ChannelHandle`] and a circuit's [`CircuitIo`].
//! - [`config`]: [`ChannelConfig`], limits and timeouts.
//! - [`error`]: [`ChannelDriverError`] and [`CloseReason`].

pub mod config;
pub mod connect;
pub mod error;
pub mod handle;
pub mod reactor;
#[cfg(test)]
mod reactor_tests;
pub mod tls;

pub use config::ChannelConfig;
pub use connect::Channel;
pub use error::{ChannelDriverError, CloseReason, ConnectPhase};
pub use handle::{ChannelHandle, ChannelInfo, CircuitIo};
pub use reactor::ChannelStats;
pub use tls::TlsInfo;
