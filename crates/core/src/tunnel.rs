//! The tunnel: one object that composes a tunnel's legs, its Conflux set,
//! its streams and its scheduler, for the client role (prop 329, tor-spec
//! §5-§7), in the manner of quinn-proto's `Connection`.
//!
//! A [`ClientTunnel`] is one circuit or a Conflux set of 2..=8 legs to one
//! exit. It owns every leg's [`ClientCircuit`](crate::circuit::ClientCircuit),
//! the [`ConfluxSet`](crate::conflux::ConfluxSet), the
//! [`StreamMap`](crate::stream::StreamMap) and the
//! [scheduler](crate::conflux_sched). It owns no socket and no clock:
//!
//! - inputs: [`ClientTunnel::handle_cell`] (a cell from a leg's channel),
//!   [`ClientTunnel::handle_leg_gone`], [`ClientTunnel::set_leg_blocked`],
//!   [`ClientTunnel::handle_timeout`], new legs
//!   ([`ClientTunnel::add_leg`]), and the stream calls
//!   ([`ClientTunnel::begin`], `read`, `write`, `shutdown_write`,
//!   `close_stream`);
//! - outputs: [`ClientTunnel::poll_transmit`] (a cell for a leg's channel),
//!   [`ClientTunnel::poll_event`] ([`TunnelEvent`]),
//!   [`ClientTunnel::poll_timeout`].
//!
//! **Rules it carries** (the driver carries none): a Conflux leg needs
//! congestion control on its last hop (prop 329 §2.2); LINK goes out once
//! every leg of a set being built is built, and at once on a new leg of a
//! linked set, claiming only what the exit surely delivered
//! ([`claim`]); legs that fail are relaunched within one launch budget
//! (prop 329 §4.2.2) with backoff; stream and Conflux messages come only
//! from the last hop (one rule for both kinds of tunnel: the leg closes);
//! what the scheduler is told (the streams' backlog for ECF); queue room
//! every leg keeps for the set's own messages; every timer (open, leg
//! build, relaunch, LINKED deadlines, connect deadlines) in one
//! timer table (`timers`); a leg we close sends its DESTROY before it is
//! released, whatever the set does.
//!
//! The exit role (the Braid relay's Conflux exit) is meant to sit beside
//! it with the same parts: the set already has both roles.
//!
//! - [`client`]: the [`ClientTunnel`] itself.
//! - [`config`]: its settings, [`TunnelConfig`].
//! - [`event`]: [`TunnelEvent`] and leg reports.
//! - [`error`]: its errors, [`TunnelError`].
//! - `leg`: one leg, and the launch budget; [`LegSpec`].
//! - `send`: stream messages into legs.
//! - [`stats`]: resumption and migration figures, [`ResumeStats`].
//! - `streams`: the stream calls.
//! - `migrate`: live stream migration between tunnels (Braid proposal 001
//!   §4).
//! - [`claim`]: what a replacement leg's LINK claims.
//! - [`close`]: why a tunnel closed, structured ([`CloseCause`]), and
//!   the rule for the next one (Braid proposal 001 §5.3).
//! - `timers`: the timer table.

pub mod claim;
pub mod client;
pub mod close;
pub mod config;
pub mod error;
pub mod event;
mod leg;
mod migrate;
mod send;
pub mod stats;
mod streams;
mod timers;

pub use client::ClientTunnel;
pub use close::{CloseCause, Rebuild, TunnelClose};
pub use config::{TunnelConfig, TunnelKind};
pub use error::{TunnelError, TunnelErrorKind};
pub use event::{LegSnapshot, ReorderSnapshot, TunnelEvent};
pub use leg::LegSpec;
pub use send::LEG_RESERVE;
pub use stats::ResumeStats;
