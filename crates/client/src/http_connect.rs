//! The HTTP CONNECT front end of `braid proxy` (`--http-connect`), as C-tor's
//! HTTPTunnelPort and arti's HTTP CONNECT port.
//!
//! - [`proto`]: the request parser, sans IO, and the answers.
//! - [`server`]: the tokio listener.

pub mod proto;
pub mod server;

pub use proto::{HttpConnectError, HttpConnectParser, HttpConnectRequest};
pub use server::HttpConnectServer;
