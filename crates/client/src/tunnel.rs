//! The tunnel driver: one tokio task per tunnel (a single circuit or a
//! Conflux set) that owns braid-core's
//! [`ClientTunnel`](braid_core::tunnel::ClientTunnel) and moves what it
//! says between the legs' channel queues, the streams' pipes and the
//! client. Every protocol decision is the core's.
//!
//! - [`task`]: the task, [`build_tunnel`] and [`build_conflux_tunnel`].
//! - [`legs`]: [`LegPlan`] and the [`LegSource`] new legs come from.
//! - `apps`: the application ends of streams.
//! - [`handle`]: [`TunnelHandle`], what the rest of the client holds, and
//!   its errors.
//! - [`stream`]: [`TorStream`], the application's end of a stream.

mod apps;
pub mod handle;
pub mod legs;
pub mod stream;
pub mod task;

pub use crate::report::{LegReport, ReorderReport, TunnelReport};
pub use handle::{BeginError, TunnelError, TunnelHandle, TunnelInfo, TunnelStatus, WeakTunnel};
pub use legs::{LegFuture, LegPlan, LegSource};
pub use stream::TorStream;
pub use task::{build_conflux_tunnel, build_tunnel};
