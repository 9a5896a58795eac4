//! The channel layer: cell framing, the client side of the link handshake,
//! CERTS verification, and the circuits of an open channel (tor-spec
//! §2-§5).
//!
//! - [`codec`]: framing of fixed- and variable-length cells for link
//!   protocols 4 and 5, plus the 2-byte-circuit-id VERSIONS cell (tor-spec
//!   §3).
//! - [`handshake`]: the initiator's VERSIONS / CERTS / AUTH_CHALLENGE /
//!   NETINFO exchange as a sans-IO state machine (tor-spec §4).
//! - [`certs`]: checking a responder's CERTS cell against its TLS
//!   certificate and the identity we meant to reach (tor-spec §4.2).
//! - [`mux`]: the circuit multiplexer of an open channel: circuit ids, which
//!   circuit a cell is for, what a circuit may send, round robin, DESTROYs
//!   and the DESTROY probe (tor-spec §5).
//! - [`error`]: [`ChannelError`], one enum for all of it.
//!
//! TLS itself, sockets and timers belong to the driver.

pub mod certs;
pub mod codec;
pub mod error;
pub mod handshake;
pub mod mux;
#[cfg(test)]
mod mux_proptests;
#[cfg(test)]
mod mux_tests;
#[cfg(test)]
mod test_relay;
pub(crate) mod x509;

pub use certs::{ExpectedIdentity, VerifiedIdentity};
pub use codec::{CellCodec, RawCell};
pub use error::{ChannelError, ErrorKind};
pub use handshake::{ClientHandshake, ClockSkew, HandshakeOutcome, HandshakeParams, OpenedChannel};
pub use mux::{ChannelMux, IgnoreReason, Inbound, MuxConfig, MuxStats, Undelivered};
