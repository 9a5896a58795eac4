//! Receiver backpressure on a Conflux set (`ConfluxSet::sendme_hold`), on
//! the real core in the simulation: a leg that stalls now and then beside
//! fast legs, a C-tor-like LowRTT exit and a fixed reorder limit. Without
//! pacing the legs ahead of the stalled one fill the reorder queue at full
//! speed and the set closes on its limit although nobody misbehaved; with
//! it, their held SENDMEs stop the exit at its congestion window and the
//! download completes with the queue within its limit.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::conflux::{ConfluxConfig, ConfluxErrorKind, ReorderLimit};
use braid_core::conflux_sched::SchedulerKind;
use braid_core::tunnel::{TunnelConfig, TunnelError, TunnelEvent};
use braid_sim::link::LinkConfig;
use braid_sim::tunnel::{LegLinks, SimConfig, TunnelSim, Want};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;
const LIMIT: usize = 2 * 1024 * 1024;
const SIZE: u64 = 20_000_000;

/// Three 4 MB/s legs with 3 ms of jitter; the third stalls 400 ms every
/// 1.5 s; the reorder limit is the client's starting one (2 MiB).
fn config(seed: u64, pacing: bool) -> SimConfig {
    let mut conflux = ConfluxConfig::client();
    conflux.num_legs = 3;
    conflux.reorder = ReorderLimit::from_bytes(LIMIT);
    conflux.reorder_auto = false;
    conflux.sendme_pacing = pacing;
    let link = LinkConfig::new(4_000_000, MS(15)).with_jitter(MS(3));
    let fast = LegLinks {
        up: link,
        down: link,
    };
    let stalling = link.with_stalls(MS(1500), MS(400));
    SimConfig::new(
        seed,
        TunnelConfig::conflux(conflux, SchedulerKind::LowRtt),
        vec![
            fast,
            fast,
            LegLinks {
                up: link,
                down: stalling,
            },
        ],
    )
}

struct Outcome {
    complete: bool,
    closed: Option<TunnelError>,
    peak: usize,
    secs: f64,
}

fn run(seed: u64, pacing: bool) -> Outcome {
    let mut sim = TunnelSim::new(config(seed, pacing)).unwrap();
    assert!(sim.run_until_open(SECS(10)), "{:?}", sim.log);
    let id = sim.open(Want::Download(SIZE)).unwrap();
    let start = sim.elapsed();
    let closed = |s: &TunnelSim| {
        s.log.iter().find_map(|(_, e)| match e {
            TunnelEvent::Closed { error } => Some(error.clone()),
            _ => None,
        })
    };
    sim.run_until(SECS(60), |s| s.app.all_complete() || closed(s).is_some());
    let peak = sim
        .client
        .conflux_set()
        .map_or(0, |set| set.reorder_peak_bytes());
    let o = Outcome {
        complete: sim.app.streams[&id].content_ok && sim.app.streams[&id].received == SIZE,
        closed: closed(&sim),
        peak,
        secs: (sim.elapsed() - start).as_secs_f64(),
    };
    println!(
        "seed {seed} pacing {pacing}: complete {} in {:.2} s, reorder peak {} KiB of {} KiB, closed {:?}",
        o.complete,
        o.secs,
        o.peak / 1024,
        LIMIT / 1024,
        o.closed.as_ref().map(ToString::to_string)
    );
    o
}

/// With pacing every run completes within the limit; without it, the
/// same runs close on the limit (the reason this exists).
#[test]
fn a_stalling_leg_does_not_close_the_set() {
    let mut unpaced_failures = 0;
    for seed in 1..=4 {
        let paced = run(seed, true);
        assert!(paced.complete, "seed {seed}: {:?}", paced.closed);
        assert!(paced.peak <= LIMIT, "seed {seed}: peak {}", paced.peak);
        let unpaced = run(seed, false);
        if let Some(e) = &unpaced.closed {
            assert!(
                matches!(e, TunnelError::Conflux(c) if c.kind() == ConfluxErrorKind::ResourceLimit),
                "{e}"
            );
            unpaced_failures += 1;
        }
    }
    assert!(
        unpaced_failures >= 3,
        "without pacing the stalls should close the set: {unpaced_failures} of 4"
    );
}
