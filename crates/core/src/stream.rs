//! Streams on a circuit, client side (tor-spec §6, §7.4; proposal 324 §4).
//!
//! A sans-IO [`StreamMap`] per circuit: the application opens streams
//! (BEGIN to a hostname, IPv4 or IPv6 target, or RESOLVE), writes and reads
//! bytes, and takes [`StreamEvent`]s; the circuit hands in the messages the
//! exit sent on stream ids (`(StreamId, AnyRelayMsg)`) and takes the ones to
//! send, being told whether its window lets DATA go. Stream flow control is
//! fixed 500/50 windows with stream SENDMEs on circuits without congestion
//! control and XON/XOFF on circuits with it, chosen per circuit
//! ([`StreamFlowMode`]). Everything is bounded: streams per circuit, send
//! and receive buffer per stream, closed-stream accounting.
//!
//! - [`map`]: [`StreamMap`], the state machine of one circuit's streams.
//! - [`state`]: one stream's state ([`StreamState`]).
//! - [`config`]: limits and the flow mode ([`StreamMapConfig`],
//!   [`StreamFlowMode`]), C-tor's connect timeouts.
//! - [`target`]: BEGIN targets, CONNECTED addresses, RESOLVED answers.
//! - [`event`]: what the application is told, [`StreamEvent`].
//! - [`reasons`]: END reasons and their SOCKS5 replies ([`CloseReason`],
//!   [`Socks5Reply`]).
//! - [`error`]: the error type, [`StreamError`].
//! - `half_closed`: what may still arrive on a closed stream (C-tor's
//!   half-closed edges) and which ids were ever used.
//! - [`migrate`]: live stream migration between tunnels to one exit,
//!   client side (Braid proposal 001 §4): [`MigrateTicket`], [`Handover`].
//! - [`migrate_wire`]: its five relay messages and the [`StreamToken`],
//!   shared with the exit.
//! - `buffer`: the bounded byte queue behind the stream buffers.
//! - `invariants` (tests and the `test-support` feature): what no sequence
//!   of calls and exit messages may break, checked against a model.

pub(crate) mod buffer;
pub mod config;
pub mod error;
pub mod event;
#[cfg(test)]
mod flow_tests;
pub(crate) mod half_closed;
#[cfg(any(test, feature = "test-support"))]
pub mod invariants;
pub mod map;
pub mod migrate;
#[cfg(test)]
mod migrate_tests;
pub mod migrate_wire;
#[cfg(test)]
mod misuse_tests;
#[cfg(test)]
mod proptests;
pub mod reasons;
pub mod state;
pub mod target;
#[cfg(test)]
mod tests;

pub use config::{
    CONNECT_TIMEOUT_FIRST, CONNECT_TIMEOUT_LATER, StreamFlowMode, StreamMapConfig,
    connect_timeout_for_attempt,
};
pub use error::{StreamError, StreamErrorKind};
pub use event::StreamEvent;
pub use map::StreamMap;
pub use migrate::{Handover, MigrateTicket};
pub use migrate_wire::StreamToken;
pub use reasons::{CloseReason, EndReason, Socks5Reply};
pub use state::StreamState;
pub use target::{Host, ResolvedAnswer, Target};
pub use tor_cell::relaycell::msg::BeginFlags;
