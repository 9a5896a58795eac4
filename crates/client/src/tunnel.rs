//! The tunnel driver: one tokio task per tunnel (a single circuit or a
//! Conflux set) that owns braid-core's
//! [`ClientTunnel`](braid_core::tunnel::ClientTunnel) and moves what it
//! says between the legs' channel queues, the streams' pipes and the
//! client. Every protocol decision is the core's.
//!
//! - [`task`]: the task, [`build_tunnel`] and [`build_conflux_tunnel`].
//! - `apps`: the application ends of streams.
//! - [`handle`]: [`TunnelHandle`], what the rest of the client holds.
//!
//! The application's end of a stream, [`TorStream`], is [`crate::pipe`]'s;
//! the errors are [`crate::error`]'s, what is known and reported about a
//! tunnel [`crate::report`]'s, the legs' plans and the [`LegSource`] new
//! legs come from [`crate::hops`]'s.

mod apps;
pub mod handle;
pub mod task;

pub use crate::error::{BeginError, TunnelError};
pub use crate::hops::{LegFuture, LegPlan, LegSource};
pub use crate::pipe::TorStream;
pub use crate::report::{LegReport, ReorderReport, TunnelInfo, TunnelReport, TunnelStatus};
pub use handle::{TunnelHandle, WeakTunnel};
pub use task::{build_conflux_tunnel, build_tunnel};
