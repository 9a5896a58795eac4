//! The SOCKS5 front end of `braid proxy` (RFC 1928, username/password
//! authentication per RFC 1929, and tor's RESOLVE extensions).
//!
//! - [`proto`]: the handshake as a sans-IO state machine: bytes in, bytes
//!   out, a [`SocksRequest`] at the end.
//! - [`server`]: the tokio listener that runs it per connection and hands
//!   requests to a [`Connector`].

pub mod proto;
pub mod server;

pub use proto::{
    IsolationKey, SocksCommand, SocksError, SocksHandshake, SocksReply, SocksRequest, SocksTarget,
    encode_reply,
};
pub use server::{Connector, SocksServer};
