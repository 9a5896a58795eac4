//! braid-core's real tunnel in the simulation: a [`ClientTunnel`]
//! (braid_core::tunnel) against an exit built from the core's parts (relay
//! crypto and handshakes, TOR_VEGAS, the Conflux set in its exit role,
//! C-tor-like) or against braid-core's own relay node as the exit (the
//! Braid exit, [`ExitKind::Node`]), over legs with delay, bandwidth, loss
//! and kills, on the virtual clock.
//!
//! - [`world`]: [`TunnelSim`], the run, playing the client's driver.
//! - [`exit`]: [`SimExit`], the exit side and its stream server.
//! - [`node_exit`]: [`NodeExit`], braid-core's relay node as the exit,
//!   with its stream server.
//! - [`relay_circuit`]: the relay side of one circuit.
//! - [`relays`]: the relays' keys and handshakes.
//! - [`app`]: the client's application, checking every byte.
//! - [`multi`]: [`MultiSim`], several tunnels of one client to the Braid
//!   exit, with live stream migration between them.
//!
//! [`ClientTunnel`]: braid_core::tunnel::ClientTunnel

pub mod app;
pub mod exit;
pub mod multi;
pub mod node_exit;
pub mod relay_circuit;
pub mod relays;
pub mod world;

pub use app::{App, AppStream, UPLOAD_BYTE, Want};
pub use exit::{ExitConfig, LinkRecord, PathId, SimExit, content_byte};
pub use multi::{AppStream as MultiApp, MultiSim, Transfer};
pub use node_exit::{NodeExit, NodeExitConfig};
pub use world::{ExitKind, LegLinks, SimConfig, SimLeg, TunnelSim};
