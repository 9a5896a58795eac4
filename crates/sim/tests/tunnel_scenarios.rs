//! The standard scheduler scenarios (1:1 and 1:3 bandwidth at equal RTT,
//! 10 ms : 200 ms RTT at equal bandwidth) run on braid-core's real tunnel
//! rather than the simulator's model of a sender: uploads placed by the
//! client tunnel's scheduler, downloads by the exit's: the simulated
//! exit's (C-tor's exits run LowRTT) and braid-core's relay node's (the
//! Braid exit, each scheduler fixed). Prints the fraction of the legs'
//! summed capacity; `cargo test -p braid-sim --test tunnel_scenarios --
//! --nocapture`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::conflux::ConfluxConfig;
use braid_core::conflux_sched::SchedulerKind;
use braid_core::relay::ConfluxExitConfig;
use braid_core::tunnel::TunnelConfig;
use braid_sim::Scenario;
use braid_sim::tunnel::{ExitConfig, LegLinks, NodeExitConfig, SimConfig, TunnelSim, Want};

/// Seconds of transfer at the summed capacity.
const SECONDS: f64 = 4.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// Which exit, with the scheduler it places downloads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The simulated, C-tor-like exit.
    Sim(SchedulerKind),
    /// braid-core's relay node, its scheduler fixed.
    Node(SchedulerKind),
}

/// One run: the fraction of the summed payload capacity reached, each
/// leg's share of the cells, and the exit's name.
fn run(sc: &Scenario, dir: Dir, client: SchedulerKind, exit: Exit) -> (f64, Vec<f64>, String) {
    let legs: Vec<LegLinks> = sc
        .legs
        .iter()
        .map(|l| match dir {
            Dir::Up => LegLinks {
                up: l.forward,
                down: l.reverse,
            },
            Dir::Down => LegLinks {
                up: l.reverse,
                down: l.forward,
            },
        })
        .collect();
    let capacity: f64 = sc.legs.iter().map(|l| l.payload_rate()).sum();
    let bytes = (capacity * SECONDS) as u64;
    let mut config = SimConfig::new(
        sc.seed,
        TunnelConfig::conflux(ConfluxConfig::client(), client),
        legs,
    );
    match exit {
        Exit::Sim(scheduler) => config.exit = ExitConfig { scheduler },
        Exit::Node(k) => {
            config = config.with_node_exit(NodeExitConfig {
                conflux: ConfluxExitConfig {
                    scheduler: Some(k),
                    ..ConfluxExitConfig::default()
                },
                ..NodeExitConfig::default()
            });
        }
    }
    let mut sim = TunnelSim::new(config).unwrap();
    assert!(sim.run_until_open(Duration::from_secs(10)));
    let start = sim.elapsed();
    let limit = start + Duration::from_secs_f64(SECONDS * 10.0);
    let done = match dir {
        Dir::Up => {
            sim.open(Want::Upload(bytes)).unwrap();
            sim.run_until(limit, |s| s.exit_received().contains(&bytes))
        }
        Dir::Down => {
            sim.open(Want::Download(bytes)).unwrap();
            sim.run_until(limit, |s| s.app.all_complete())
        }
    };
    assert!(done, "{} {dir:?} {}: not done", sc.name, sim.exit_name());
    let secs = (sim.elapsed() - start).as_secs_f64();
    let cells: Vec<u64> = sim
        .legs
        .values()
        .map(|l| match dir {
            Dir::Up => l.cells_up,
            Dir::Down => l.cells_down,
        })
        .collect();
    let total: u64 = cells.iter().sum();
    let shares = cells
        .iter()
        .map(|c| *c as f64 / total.max(1) as f64)
        .collect();
    (bytes as f64 / secs / capacity, shares, sim.exit_name())
}

/// One row of a table: the direction, the scheduler that placed the
/// transfer (the client's up, the exit's down), the exit, the fraction of
/// capacity and the legs' shares.
type Row = (Dir, SchedulerKind, Exit, f64, Vec<f64>);

fn table(sc: &Scenario) -> Vec<Row> {
    let mut out = Vec::new();
    let exit = Exit::Sim(SchedulerKind::LowRtt);
    for kind in SchedulerKind::ALL {
        let (f, s, name) = run(sc, Dir::Up, kind, exit);
        println!(
            "{:<11} upload   client {:<7} {f:.3}  shares {s:.2?}  ({name})",
            sc.name,
            kind.name()
        );
        out.push((Dir::Up, kind, exit, f, s));
    }
    for exit in SchedulerKind::ALL
        .into_iter()
        .flat_map(|k| [Exit::Sim(k), Exit::Node(k)])
    {
        let (f, s, name) = run(sc, Dir::Down, SchedulerKind::Ecf, exit);
        let kind = match exit {
            Exit::Sim(k) | Exit::Node(k) => k,
        };
        println!("{:<11} download {name:<26} {f:.3}  shares {s:.2?}", sc.name);
        out.push((Dir::Down, kind, exit, f, s));
    }
    out
}

/// LowRTT and ECF use both legs to most of their summed capacity (the
/// bounds are the measured figures, 0.89-0.93 on 2026-12-06, with a
/// margin), except the Braid exit's rows in `short`, which braid-core's
/// exit holds below it for now: on equal legs its queue target flips the
/// leg every cell, a SWITCH per DATA cell (tunnel_node_exit.rs,
/// `equal_legs_do_not_switch_at_every_cell`, ignored and failing; 1:1
/// measured 0.58 with LowRTT and ECF). Returns the table for further
/// checks.
fn check(sc: &Scenario, min: f64, short: &[SchedulerKind]) -> Vec<Row> {
    let t = table(sc);
    for (dir, kind, exit, f, shares) in &t {
        let known_short = matches!(exit, Exit::Node(k) if short.contains(k));
        if *kind == SchedulerKind::MinRtt || known_short {
            continue;
        }
        assert!(*f >= min, "{} {dir:?} {exit:?}: {f} < {min}", sc.name);
        assert!(
            shares.iter().all(|s| *s > 0.1),
            "{} {dir:?} {exit:?}: {shares:?}",
            sc.name
        );
    }
    t
}

#[test]
fn one_to_one_on_the_real_core() {
    check(
        &Scenario::one_to_one(),
        0.88,
        &[SchedulerKind::Ecf, SchedulerKind::LowRtt],
    );
}

#[test]
fn one_to_three_on_the_real_core() {
    check(&Scenario::one_to_three(), 0.88, &[]);
}

#[test]
fn rtt_10_200_on_the_real_core() {
    let t = check(&Scenario::rtt_10_200(), 0.85, &[]);
    // MinRTT keeps to the 10 ms leg (for latency, C-tor's MIN_LATENCY):
    // about half the capacity.
    for (dir, kind, _, f, shares) in t {
        if kind == SchedulerKind::MinRtt {
            assert!(shares[0] > 0.95 && f < 0.55, "{dir:?}: {f} {shares:?}");
        }
    }
}
