//! The tunnel reactor: one tokio task per circuit that owns the sans-IO
//! [`ClientCircuit`](braid_core::circuit::ClientCircuit) and its
//! [`StreamMap`](braid_core::stream::StreamMap), the circuit's queues to
//! its channel, and the application ends of its streams. It moves cells and
//! bytes; every decision is the core's.
//!
//! - [`handle`]: [`TunnelHandle`], what the rest of the client holds, and
//!   its errors.
//! - [`reactor`]: the task of a single circuit.
//! - [`multipath`]: the task of a Conflux set, owning all its legs.
//! - [`report`]: [`TunnelReport`], what a task says about its tunnel.
//! - [`stream`]: [`TorStream`], the application's end of a stream.
//! - `streams`: the stream side shared by both reactors.
//! - [`target`]: turning directory relays into circuit hop targets.
//!

pub mod handle;
pub mod multipath;
pub mod reactor;
pub mod report;
pub mod stream;
mod streams;
pub mod target;

pub use handle::{BeginError, TunnelError, TunnelHandle, TunnelInfo, TunnelStatus, WeakTunnel};
pub use multipath::{LegFuture, LegPlan, LegSource, build_conflux_tunnel};
pub use reactor::{TunnelParams, build_tunnel};
pub use report::{LegReport, ReorderReport, TunnelReport};
pub use stream::TorStream;
pub use target::hop_target;
