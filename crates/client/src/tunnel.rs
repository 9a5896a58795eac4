//! The tunnel reactor: one tokio task per circuit that owns the sans-IO
//! [`ClientCircuit`](braid_core::circuit::ClientCircuit) and its
//! [`StreamMap`](braid_core::stream::StreamMap), the circuit's queues to
//! its channel, and the application ends of its streams. It moves cells and
//! bytes; every decision is the core's.
//!
//! - [`handle`]: [`TunnelHandle`], what the rest of the client holds, and
//!   its errors.
//! - [`reactor`]: the task.
//! - [`stream`]: [`TorStream`], the application's end of a stream.
//! - [`target`]: turning directory relays into circuit hop targets.
//!
//! Conflux sets (several circuits in one task) come with the Conflux work.

pub mod handle;
pub mod reactor;
pub mod stream;
pub mod target;

pub use handle::{BeginError, TunnelError, TunnelHandle, TunnelInfo, TunnelStatus};
pub use reactor::{TunnelParams, build_tunnel};
pub use stream::TorStream;
pub use target::hop_target;
