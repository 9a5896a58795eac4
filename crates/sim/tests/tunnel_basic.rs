//! The real tunnel core against the simulated exit: single circuits and
//! Conflux sets carry downloads and uploads, byte for byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::conflux::ConfluxConfig;
use braid_core::conflux_sched::SchedulerKind;
use braid_core::tunnel::{TunnelConfig, TunnelEvent};
use braid_sim::tunnel::{LegLinks, SimConfig, TunnelSim, Want};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn conflux(n: usize, seed: u64) -> SimConfig {
    SimConfig::new(
        seed,
        TunnelConfig::conflux(ConfluxConfig::client(), SchedulerKind::Ecf),
        vec![LegLinks::symmetric(2_000_000, MS(20)); n],
    )
}

#[test]
fn single_circuit_downloads() {
    let mut sim = TunnelSim::new(SimConfig::new(
        1,
        TunnelConfig::single(),
        vec![LegLinks::symmetric(2_000_000, MS(20))],
    ))
    .unwrap();
    assert!(sim.run_until_open(SECS(5)), "{:?}", sim.log);
    let id = sim.open(Want::Download(1_000_000)).unwrap();
    assert!(
        sim.run_until(SECS(30), |s| s.app.all_complete()),
        "{:?}",
        sim.app.streams
    );
    let s = &sim.app.streams[&id];
    assert_eq!(s.received, 1_000_000);
    assert!(s.content_ok);
}

#[test]
fn conflux_set_downloads_over_both_legs() {
    let mut sim = TunnelSim::new(conflux(2, 2)).unwrap();
    assert!(sim.run_until_open(SECS(5)), "{:?}", sim.log);
    assert!(sim.logged(|e| matches!(e, TunnelEvent::Opened)).len() == 1);
    sim.open(Want::Download(5_000_000)).unwrap();
    let done = sim.run_until(SECS(60), |s| s.app.all_complete());
    assert!(done, "{:?} {:?}", sim.app.streams, sim.log);
    for (p, l) in &sim.legs {
        assert!(
            l.cells_down > 1000,
            "leg {p} carried {} cells",
            l.cells_down
        );
    }
    println!("5 MB over 2 legs in {:?}", sim.elapsed());
}

#[test]
fn conflux_set_uploads_over_both_legs() {
    let mut sim = TunnelSim::new(conflux(2, 3)).unwrap();
    assert!(sim.run_until_open(SECS(5)));
    let id = sim.open(Want::Upload(3_000_000)).unwrap();
    let done = sim.run_until(SECS(60), |s| {
        s.exit.all_streams().any(|(_, st)| st.received == 3_000_000)
    });
    assert!(done, "{:?}", sim.app.streams[&id]);
    for (p, l) in &sim.legs {
        assert!(l.cells_up > 500, "leg {p} carried {} cells up", l.cells_up);
    }
}
