//! A deterministic simulator for Braid's Conflux core, in the manner of
//! neqo's `test-fixture/src/sim`: no sockets, no threads, no sleeping.
//!
//! A run moves a bulk transfer, cell by cell, from a sender over N legs to
//! a receiver:
//!
//! - **Time** is virtual ([`clock::VirtualClock`]): a fixed `Instant` plus
//!   a `Duration` that jumps from event to event. Events sit in an
//!   [`event::EventQueue`] ordered by time, ties broken by insertion order,
//!   so a run is a pure function of its [`Scenario`] (seed included).
//! - **Randomness** comes from one seed ([`rng::SimRng`], xoshiro256++,
//!   reproducible across platforms); every link draws from its own stream
//!   derived from the seed and its index.
//! - **Links** ([`link::Link`]) have a one-way delay, a bandwidth (each
//!   cell occupies the link for `514 bytes / bandwidth`), a bounded
//!   bottleneck queue and random loss. Tor cells travel over TCP, so a
//!   loss is not a missing cell: it is a cell delayed by a retransmission
//!   penalty, and, TCP being in order, every cell behind it on the same
//!   link waits too (head-of-line blocking). Optional uniform jitter
//!   and periodic stalls delay cells the same way.
//! - **The sender** ([`sim`]) has `transfer_bytes` to send in 498-byte
//!   DATA cells. Before each cell it asks a
//!   [`Scheduler`](braid_core::conflux_sched::Scheduler) which leg to use,
//!   giving it each leg's RTTs, window, inflight, whether the leg's link
//!   queue has room, and the backlog. Each leg runs its own congestion
//!   control ([`cc::LegCc`]): braid-core's TOR_VEGAS (the default) or a
//!   fixed window; either way the receiver returns a SENDME on the leg's
//!   reverse link every 31 cells it receives on that leg (ACK clocking).
//! - **The receiver** hands every cell to a [`reorder::ReorderSink`], which
//!   delivers in sequence order; the run measures its peak. The local
//!   [`reorder::BTreeReorder`] is the unbounded reference;
//!   [`reorder::CoreReorder`] is braid-core's bounded reorder queue (a
//!   refused cell stops the run, as the real queue closes the set).
//!
//! Not modelled: SWITCH cells (the receiver sees absolute sequence numbers;
//! the number of leg switches is counted instead), cross traffic, the
//! relays inside a leg (a leg is one bottleneck), leg failure.
//!
//! The output is a [`Report`]: goodput, fraction of the summed leg
//! capacity, per-leg share, peak reorder bytes and a per-leg throughput
//! time series ([`report::Report::series_csv`]).
//!
//! - [`clock`]: the virtual clock.
//! - [`event`]: the time-ordered event queue.
//! - [`rng`]: the seeded random number generator.
//! - [`link`]: one direction of a leg.
//! - [`cc`]: per-leg congestion control.
//! - [`reorder`]: the receiver's reorder buffer interface and a simple one.
//! - [`scenario`]: what to simulate, and the standard scenarios.
//! - [`report`]: what a run measured.
//! - [`sim`]: the run itself.
//! - [`tunnel`]: braid-core's real tunnel (client end) against a
//!   simulated exit or braid-core's real relay node as the exit, over
//!   simulated legs: the harness for the core's composed behaviour
//!   (building, linking, relaunching, leg loss, hostile peers).

pub mod cc;
pub mod clock;
pub mod event;
pub mod link;
pub mod reorder;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod tunnel;

pub use cc::{CcModel, LegCc};
pub use clock::VirtualClock;
pub use event::EventQueue;
pub use link::{CELL_BYTES, DATA_BYTES, Link, LinkConfig};
pub use reorder::{BTreeReorder, CoreReorder, Delivered, ReorderSink, SinkError};
pub use report::{LegReport, Report, Sample};
pub use rng::SimRng;
pub use scenario::{BwSource, LegConfig, Scenario};
pub use sim::{run, run_with_sink};
