//! The real Braid exit in the simulation: braid-core's
//! [`RelayNode`](braid_core::relay::RelayNode) with the exit and Conflux
//! exit roles at the end of every leg, the legs' guards and middles
//! simulated in front of it, the simulation playing the node's driver.
//!
//! - [`driver`]: [`NodeExit`], the node, its channels from the middles and
//!   its timers.
//! - [`front`]: [`FrontRelays`], a circuit's guard and middle.
//! - [`server`]: [`Destinations`], the destinations of its exit streams.

pub mod driver;
pub mod front;
pub mod server;

pub use driver::{DownLinks, NodeCircuit, NodeExit, NodeExitConfig};
pub use front::FrontRelays;
pub use server::{Dest, Destinations};
