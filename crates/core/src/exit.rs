//! The exit's side of streams (tor-spec §6, §7.4; proposal 324 §4),
//! sans-IO like the client's [`stream`](crate::stream): a circuit's
//! streams at its last hop, answering BEGIN, BEGIN_DIR and RESOLVE, moving
//! bytes between the client and the destinations the driver connects, with
//! stream flow control in the exit's role and every buffer bounded.
//!
//! - [`map`]: [`ExitStreamMap`], the state machine of one circuit's (or
//!   one Conflux set's) exit streams, with [`ExitStats`].
//! - `driver`: the driver's calls on the map (answers, bytes, polls).
//! - [`edge`]: [`ExitEdge`], a [`RelayCircuit`](crate::relay::RelayCircuit)
//!   with its map, what the relay driver holds per circuit; [`deliver`] and
//!   [`pump`] for a caller that holds the two itself.
//! - [`request`]: BEGIN and RESOLVE checked as C-tor checks them, the
//!   address choice for a hostname ([`choose_address`]), TTL clipping, the
//!   END reason for a socket error ([`end_reason_for_io`]).
//! - [`config`]: limits ([`ExitConfig`]), the connect timeout.
//! - [`event`]: what the driver is told, [`ExitEvent`].
//! - [`error`]: the error type, [`ExitError`].
//! - [`migrate`]: live stream migration between maps at one exit (Braid
//!   proposal 001 §4): [`MigrateRequest`], [`MigrateTokens`].
//! - `stream`: one stream's state.
//! - `invariants` (tests and the `test-support` feature): what no
//!   sequence of client messages and driver calls may break.
//!
//! **What the map never sees.** The circuit parses each message with
//! tor-cell before the map gets it, and a body tor-cell cannot parse
//! closes the circuit (`RelayCircuit`: `Malformed`, DESTROY PROTOCOL). For
//! BEGIN that means an ADDRPORT without `:` or NUL, a port that is not a
//! decimal number up to 65535, or a non-ASCII address, and for RESOLVE a
//! query without its NUL: C-tor answers those with END TORPROTOCOL (or a
//! RESOLVED error) and keeps the circuit. tor-cell also strips an IPv6
//! literal's brackets, so `[example.com]:80` arrives as `example.com`
//! (C-tor refuses it as an invalid destination).

pub mod config;
mod driver;
pub mod edge;
#[cfg(test)]
mod edge_tests;
pub mod error;
pub mod event;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod harness;
#[cfg(any(test, feature = "test-support"))]
pub mod invariants;
pub mod map;
pub mod migrate;
#[cfg(test)]
mod migrate_harness;
mod migrate_in;
#[cfg(test)]
mod migrate_tests;
#[cfg(test)]
mod proptests;
pub mod request;
mod stream;
#[cfg(test)]
mod tests;

pub use config::{DEFAULT_MAX_STREAMS, EXIT_CONNECT_TIMEOUT, ExitConfig, FLUSH_TIMEOUT};
pub use edge::{ExitEdge, PREV_QUEUE_TARGET, deliver, pump};
pub use error::{ExitError, ExitErrorKind, ExitStreamState};
pub use event::ExitEvent;
pub use map::{ExitStats, ExitStreamMap};
pub use migrate::{MigrateRequest, MigrateTokens, MovedStream, StreamAt};
pub use request::{
    ResolveQuery, choose_address, clip_dns_fuzzy_ttl, clip_dns_ttl, end_reason_for_io, is_internal,
};
