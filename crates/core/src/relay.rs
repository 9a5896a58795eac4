//! The relay's side of circuits (tor-spec §5, §6.1, §7.3): answering
//! CREATE2 and CREATE_FAST, our layer of relay crypto both ways, extending
//! with EXTEND2, circuit SENDMEs and congestion control for what we send
//! as a circuit's edge, DESTROY and TRUNCATED. Sans-IO like the client's
//! [`circuit`](crate::circuit): the relay driver moves cells between
//! channels.
//!
//! - [`create`]: answering a circuit's first cell, [`OnionKeys`].
//! - [`circuit`]: [`RelayCircuit`], one circuit at a relay.
//! - [`node`]: [`RelayNode`], a relay's channels and circuits, routing
//!   cells between them.
//! - [`ewma`]: circuit priority on a channel by recent cells ([`ewma::CellEwma`]).
//! - [`kist`]: KIST's socket write limit ([`kist::write_limit`]);
//!   [`kist_sched`]: the KIST scheduler of the channels' writers.
//! - [`error`]: its errors, [`RelayCircError`].

pub mod circuit;
pub mod create;
pub mod error;
pub mod ewma;
pub mod kist;
pub mod kist_sched;
pub mod node;
#[cfg(test)]
mod node_tests;
mod queue;
#[cfg(test)]
mod tests;

pub use circuit::{ExtendRequest, MAX_QUEUED_CELLS, MAX_RELAY_EARLY, RelayCircEvent, RelayCircuit};
pub use create::{Answered, OnionKeys, answer_create_fast, answer_create2};
pub use error::{RelayCircError, RelayCircErrorKind};
pub use node::{
    ConfluxExitConfig, ConnectId, NodeEvent, NodeStats, Peer, RelayNode, SetFigures, scheduler_for,
};
