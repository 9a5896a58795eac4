//! `braid relay run`: the tokio driver of a relay around braid-core's
//! sans-IO [`RelayNode`](braid_core::relay::RelayNode). The tasks only
//! move bytes and keep time; the protocol is the core's.
//!
//! - [`driver`]: [`run`], starting every task (see its diagram).
//! - `accept`: the ORPort, TLS and the responder's link handshake.
//! - `connect`: channels we open to extend circuits.
//! - `consensus`: the consensus parameters, fetched at start and hourly.
//! - `chan_io`: a channel's reader and writer tasks.
//! - KIST (the write limits of the channels' sockets) is braid-core's
//!   [`kist_sched`](braid_core::relay::kist_sched); `node_task` drives it.
//! - `sockinfo`: `TCP_INFO` and `SIOCOUTQNSD` of a socket.
//! - `node_task`: the task that owns the node.
//! - `exit`: exit streams' destinations (policy, lookups, sockets).
//! - `dircache`: the directory cache, its fetches and its BEGIN_DIR streams.
//! - `link`: link keys and TLS configurations, rebuilt before expiry.
//! - `rekey`: onion keys rotated and the signing key renewed while running.
//! - `metrics`: Prometheus text on `GET /metrics`.
//! - `tls`: rustls configurations for both sides.
//! - `bandwidth`: the observed bandwidth the descriptor reports.
//! - `msg`: what the tasks tell the node task.

mod accept;
mod bandwidth;
mod chan_io;
mod connect;
mod consensus;
mod dircache;
pub mod driver;
mod exit;
mod link;
mod metrics;
mod msg;
mod node_task;
mod rekey;
mod sockinfo;
mod tls;

pub use driver::{HANDSHAKE_TIMEOUT, MAX_CONNECTS, run};
