//! Client circuits (tor-spec §5, §6.1, §7.3; proposals 289, 324, 332).
//!
//! A [`ClientCircuit`] is the sans-IO state machine of one origin circuit
//! on one channel: it builds its path hop by hop (CREATE2, then EXTEND2 in
//! RELAY_EARLY cells, ntor-v3 with congestion control negotiation where the
//! relay supports it, ntor otherwise), frames and onion-encrypts relay
//! cells, recognizes inbound ones, runs circuit-level SENDMEs and
//! congestion control per hop (TOR_VEGAS where negotiated, fixed windows
//! otherwise), and hands stream messages to the layer above. It owns no
//! socket and no clock: the channel driver feeds it cells with `now`
//! ([`ClientCircuit::handle_cell`]) and takes its cells
//! ([`ClientCircuit::poll_transmit`]) and events
//! ([`ClientCircuit::poll_event`]).
//!
//! - [`client`]: [`ClientCircuit`] itself (CREATE2, or CREATE_FAST for
//!   one-hop directory circuits).
//! - [`begin_dir`]: one directory request over BEGIN_DIR on a one-hop
//!   circuit ([`BeginDirFetch`]).
//! - [`build`]: [`HopTarget`], handshake choice, EXTEND2 link specifiers.
//! - [`relay_cell`]: relay cell framing, format v0 (tor-spec §6.1).
//! - [`event`]: [`CircEvent`] and [`CloseReason`].
//! - [`params`]: [`CircParams`], the queue bounds.
//! - [`error`]: [`CircError`] and [`RelayCellError`].
//! - `hop` (private): per-hop flow control state; its figures are
//!   [`HopFigures`].

pub mod begin_dir;
#[cfg(test)]
mod bound_tests;
pub mod build;
pub mod client;
#[cfg(test)]
mod close_tests;
pub mod error;
pub mod event;
mod hop;
pub mod params;
pub mod relay_cell;
#[cfg(test)]
mod sendme_hold_tests;
#[cfg(any(test, feature = "test-support"))]
pub mod test_network;
#[cfg(test)]
mod tests;

pub use begin_dir::{BeginDirError, BeginDirFetch};
pub use build::HopTarget;
pub use client::{ClientCircuit, MAX_RELAY_EARLY};
pub use error::{CircError, CircErrorKind, RelayCellError};
pub use event::{CircEvent, CloseReason};
pub use hop::HopFigures;
pub use params::{CONTROL_RESERVE_CELLS, CircParams, DEFAULT_MAX_QUEUED_CELLS};
