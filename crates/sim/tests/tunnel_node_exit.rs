//! braid-core's real client tunnel against braid-core's real relay node
//! as the exit (the Braid exit), over simulated legs: single circuits and
//! Conflux sets carry downloads and uploads byte for byte, legs die, the
//! node frees what it held.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::tunnel::TunnelConfig;
use braid_sim::tunnel::{LegLinks, NodeExitConfig, SimConfig, TunnelSim, Want};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn single(seed: u64) -> SimConfig {
    SimConfig::new(
        seed,
        TunnelConfig::single(),
        vec![LegLinks::symmetric(2_000_000, MS(20))],
    )
    .with_node_exit(NodeExitConfig::default())
}

#[test]
fn single_circuit_download_through_the_node() {
    let mut sim = TunnelSim::new(single(1)).unwrap();
    assert!(sim.run_until_open(SECS(5)), "{:?}", sim.log);
    let id = sim.open(Want::Download(1_000_000)).unwrap();
    assert!(
        sim.run_until(SECS(30), |s| s.app.all_complete()),
        "{:?} {:?}",
        sim.app.streams,
        sim.node_exit.as_ref().map(|n| (&n.broken, &n.server))
    );
    let s = &sim.app.streams[&id];
    assert_eq!(s.received, 1_000_000);
    assert!(s.content_ok);
    println!("{} in {:?}", sim.exit_name(), sim.elapsed());
}
