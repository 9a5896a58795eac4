//! Async drivers of the Braid client. The drivers move bytes and timers; the
//! protocol lives in `braid-core` and the directory logic in `braid-dir`.
//!
//! - [`channel`]: the channel reactor: TLS to a relay's ORPort, the link
//!   handshake, and the circuit map with bounded queues.
//! - [`client`]: [`TorClient`]: directory, guards, channels, a tunnel pool,
//!   and the SOCKS [`socks::Connector`].
//! - [`config`]: the client's TOML configuration (a private network's
//!   `network.toml` works as one).
//! - [`hops`]: directory relays as circuit hop targets.
//! - [`http`]: the minimal HTTP/1.0 exchange with DirPorts.
//! - [`dir_cache`]: the on-disk directory cache (atomic writes, corrupt files
//!   set aside).
//! - [`dir_driver`]: runs `braid_dir::DirBootstrap` over its transports
//!   and the cache.
//! - [`dir_onehop`]: the BEGIN_DIR transport: channel, one-hop circuit,
//!   directory stream.
//! - [`socks`]: the SOCKS5 and SOCKS4a front end (sans-IO handshake, tokio
//!   listener).
//! - [`http_connect`]: the HTTP CONNECT front end (sans-IO parser, tokio
//!   listener).
//! - [`names`]: which requests go to an exit and which are refused or
//!   answered here (`.onion`, `.exit`, bad hostnames), sans IO.
//! - [`listener`]: what the two front ends share (accept loop, loopback
//!   warning, byte relay).
//! - [`safelog`]: destinations scrubbed from the log unless asked.
//! - [`keyed_lock`]: one async lock per key (a relay, an isolation key),
//!   so work on different keys runs in parallel.
//! - [`pool`]: the tunnels kept per isolation key, least recently used
//!   keys evicted beyond a bound.
//! - [`report`]: what is known about a tunnel, and what its task reports
//!   about it and its legs.
//! - [`pipe`]: the bounded pipe between a tunnel's task and a stream's
//!   application end, [`pipe::TorStream`].
//! - [`metrics`]: per-tunnel and per-leg figures as Prometheus text and
//!   JSON on an optional HTTP port.
//! - [`tunnel`]: the tunnel driver: one task per tunnel (a circuit or a
//!   Conflux set) owning braid-core's `ClientTunnel`.
//! - [`error`]: the error types.

pub mod channel;
pub mod client;
pub mod config;
pub mod dir_cache;
pub mod dir_driver;
pub mod dir_onehop;
pub mod error;
pub mod hops;
pub mod http;
pub mod http_connect;
pub mod keyed_lock;
pub mod listener;
pub mod metrics;
pub mod names;
pub mod pipe;
pub mod pool;
pub mod report;
pub mod safelog;
pub mod socks;
pub mod state;
pub mod tunnel;

pub use client::TorClient;
pub use config::ClientConfig;
pub use dir_cache::DirCache;
pub use dir_driver::{BootstrapReport, DirDriver};
pub use error::{ClientError, ConfigError, FetchError};
