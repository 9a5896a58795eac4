//! `braid-testnet`: a private Tor network of real C-tor relays on 127.0.0.1.
//!
//! Every integration test, demo and benchmark of Braid runs on such a
//! network: three directory authorities, non-exit relays and exits from
//! Debian's `tor` package (and, on request, Braid relays and exits beside
//! them: [`braid_relay`]), a C-tor client to compare against, a loopback
//! HTTP file server, and optional link emulation (a userspace shaper in front
//! of a relay's ORPort, since tc netem is not available here).
//!
//! The entry points are [`launcher::up`], [`launcher::status`] and
//! [`launcher::down`]; `up` writes `DIR/network.toml` ([`manifest`]) that
//! later tools load.
//!
//! Module rule (the same in every Braid crate): one module per file, named
//! for what it holds; `lib.rs` only declares and re-exports.

pub mod braid_relay;
pub mod config;
pub mod consensus;
pub mod control;
pub mod ctor_conflux;
pub mod ctor_log;
pub mod download;
pub mod error;
pub mod fileserver;
pub mod helper;
mod io_errors;
pub mod keys;
pub mod launcher;
pub mod manifest;
pub mod plan;
pub mod process;
mod ready;
pub mod shaper;
pub mod socks;
pub mod torrc;

pub use config::{NetworkConfig, RelayShape};
pub use error::TestnetError;
pub use manifest::Manifest;
