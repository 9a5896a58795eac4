//! The SOCKS front end of `braid proxy`: SOCKS5 (RFC 1928, username/password
//! authentication per RFC 1929, and tor's RESOLVE extensions) and SOCKS4a
//! on one port, as C-tor's SocksPort.
//!
//! - [`proto`]: the handshake as a sans-IO state machine: bytes in, bytes
//!   out, a [`SocksRequest`] at the end.
//! - `v4`: SOCKS4 and SOCKS4a requests.
//! - [`reply`]: the replies in either version, with tor's extended codes
//!   (prop 304).
//! - [`server`]: the tokio listener that runs it per connection and hands
//!   requests to a [`Connector`].

pub mod proto;
pub mod reply;
pub mod server;
mod v4;

pub use proto::{
    IsolationKey, SocksCommand, SocksError, SocksHandshake, SocksRequest, SocksTarget, SocksVersion,
};
pub use reply::{ExtendedError, Failure, SocksReply, encode_reply};
pub use server::{Connector, SocksServer};
