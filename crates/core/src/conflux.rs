//! Conflux: several circuits to one exit woven into one tunnel (proposal
//! 329).
//!
//! Sans-IO, like the rest of the core: no sockets, no clock (`now` is
//! passed in), inputs through `handle_*`, outputs through `poll_*` and
//! return values. The driver owns the legs' circuits
//! ([`ClientCircuit`](crate::circuit::ClientCircuit)): it hands the set
//! every relay message a leg's last hop sends (circuit-level ones from
//! `CircEvent::CircMsg`, stream ones from `CircEvent::StreamMsg`) and sends
//! what the set returns on the leg it names (`send_relay(last_hop, stream,
//! msg, now)`).
//!
//! - [`set`]: [`ConfluxSet`], one end of a set of 1..=8 legs, client or
//!   exit: linking, sequencing, reordering, leg loss, legs added later.
//! - [`link`]: the per-leg link handshake, [`ClientLinkHandshake`] and
//!   [`ExitLinkHandshake`], and the set's [`ConfluxNonce`] (prop 329 §2.2).
//! - [`seq`]: which commands are multiplexed, absolute sequence numbers,
//!   CONFLUX_SWITCH on both ends with its checks (prop 329 §2.6, §2.8).
//! - [`reorder`]: the bounded [`ReorderQueue`] (prop 329 §4.1).
//! - [`sizer`]: [`ReorderSizer`], the queue's byte limit from the legs'
//!   bandwidth and RTT as they are measured.
//! - [`choose`]: the [`LegChooser`] trait schedulers implement, and what
//!   they see of a leg ([`LegInfo`], [`LegCc`]).
//! - [`error`]: [`ConfluxError`], naming the rule broken.
//! - `retransmit`: what a resumable set keeps until acknowledged
//!   ([`ResumeParams`]; Braid proposal 001 §3).
//!
//! Streams stay the business of the layer above: the set moves
//! `(stream id, message)` pairs in order and does not look inside, so a
//! stream can later move between sets or circuits without the set's
//! involvement.

pub mod choose;
pub mod error;
pub mod ext;
#[cfg(test)]
mod hostile_gap_tests;
#[cfg(test)]
mod hostile_switch_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod leg_loss_tests;
pub mod link;
pub mod reorder;
pub(crate) mod retransmit;
pub mod seq;
pub mod set;
pub mod sizer;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trove_tests;
#[cfg(test)]
mod violation_tests;

pub use choose::{LegCc, LegChooser, LegInfo, StickyLowestRtt};
pub use error::{ConfluxError, ConfluxErrorKind, LegLossRule};
pub use ext::ResumeCap;
pub use link::{
    ClientLinkHandshake, ConfluxNonce, ExitLinkHandshake, LinkInfo, LinkedOutcome, NONCE_LEN,
};
pub use reorder::{ReorderError, ReorderLimit, ReorderQueue};
pub use retransmit::{ProbeParams, ResumeParams};
pub use seq::{
    MAX_EMPTY_SWITCHES, MAX_RELATIVE_SEQ, RecvSeq, SendSeq, SwitchWindow, is_multiplexed,
};
pub use set::{
    ConfluxConfig, ConfluxEvent, ConfluxSet, Delivered, Handled, LegClosedInfo, LegStats, MAX_LEGS,
    Outgoing, Role, SendOutcome,
};
pub use sizer::ReorderSizer;
pub use tor_cell::relaycell::conflux::V1DesiredUx;
