//! The tunnel core's leg rules, on the real core in the simulation:
//! DESTROY for legs we close, one relaunch budget with backoff, the
//! replacement leg's LINK, build timeouts, the exit-hop rule, leg loss
//! idle and with data in flight, many streams at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::conflux::ConfluxConfig;
use braid_core::conflux_sched::SchedulerKind;
use braid_core::ids::StreamId;
use braid_core::tunnel::{TunnelConfig, TunnelError, TunnelErrorKind, TunnelEvent};
use braid_sim::link::LinkConfig;
use braid_sim::tunnel::{LegLinks, SimConfig, TunnelSim, Want};
use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxSwitch, Data};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn set_config(n: usize, seed: u64, scheduler: SchedulerKind) -> SimConfig {
    SimConfig::new(
        seed,
        TunnelConfig::conflux(ConfluxConfig::client(), scheduler),
        vec![LegLinks::symmetric(2_000_000, MS(20)); n],
    )
}

fn closed_error(sim: &TunnelSim) -> Option<TunnelError> {
    sim.log.iter().find_map(|(_, e)| match e {
        TunnelEvent::Closed { error } => Some(error.clone()),
        _ => None,
    })
}

fn data() -> AnyRelayMsg {
    Data::new(&[1; 100]).unwrap().into()
}

/// A leg we close because its last hop has no congestion control (prop
/// 329 §2.2) sends its DESTROY while the set lives, and a new leg takes
/// its place.
#[test]
fn a_leg_we_close_sends_destroy() {
    let mut sim = TunnelSim::new(set_config(2, 11, SchedulerKind::Ecf)).unwrap();
    sim.exit.circuits.get_mut(&0).unwrap().relay.refuse_cc = true;
    assert!(sim.run_until_open(SECS(10)), "{:?}", sim.log);
    let failed = sim.logged(|e| matches!(e, TunnelEvent::LegFailed { .. }));
    assert!(
        matches!(
            failed.as_slice(),
            [TunnelEvent::LegFailed {
                error: TunnelError::NoCongestionControl { .. },
                ..
            }]
        ),
        "{failed:?}"
    );
    assert_eq!(sim.legs[&0].destroys_sent, 1);
    assert_eq!(sim.exit.circuits[&0].relay.destroys, 1, "the exit got it");
    assert!(sim.legs[&0].released);
    assert_eq!(sim.client.launches(), (3, 5));
    // The replacement linked: the set works on two legs.
    sim.open(Want::Download(1_000_000)).unwrap();
    assert!(sim.run_until(SECS(30), |s| s.app.all_complete()));
    assert!(sim.legs[&2].cells_down > 100);
}

/// A leg that breaks the exit-hop rule is closed with its DESTROY; the
/// set goes on when the leg carried nothing.
#[test]
fn wrong_hop_on_a_set_closes_that_leg_only() {
    let mut sim = TunnelSim::new(set_config(2, 12, SchedulerKind::MinRtt)).unwrap();
    assert!(sim.run_until_open(SECS(10)));
    sim.run_for(MS(200));
    // The middle of leg 1 speaks Conflux.
    sim.inject(1, 1, None, ConfluxSwitch::new(1).into());
    sim.run_for(MS(200));
    let lost = sim.logged(|e| matches!(e, TunnelEvent::LegLost { .. }));
    assert!(
        matches!(
            lost.as_slice(),
            [TunnelEvent::LegLost {
                error: TunnelError::WrongHop { .. },
                ..
            }]
        ),
        "{:?}",
        sim.log
    );
    assert_eq!(sim.legs[&1].destroys_sent, 1);
    assert!(sim.client.is_open());
    sim.open(Want::Download(500_000)).unwrap();
    assert!(sim.run_until(SECS(30), |s| s.app.all_complete()));
}

/// On a single circuit the same rule closes the tunnel: streams reset.
#[test]
fn wrong_hop_on_a_single_circuit_closes_the_tunnel() {
    let mut sim = TunnelSim::new(SimConfig::new(
        13,
        TunnelConfig::single(),
        vec![LegLinks::symmetric(1_000_000, MS(20))],
    ))
    .unwrap();
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Download(5_000_000)).unwrap();
    sim.run_for(MS(500));
    sim.inject(0, 1, Some(id), data());
    assert!(sim.run_until(SECS(10), |s| s.client.is_finished()));
    let e = closed_error(&sim).unwrap();
    assert!(matches!(e, TunnelError::WrongHop { .. }), "{e}");
    assert_eq!(e.kind(), TunnelErrorKind::PeerViolation);
    assert_eq!(sim.legs[&0].destroys_sent, 1);
    let s = &sim.app.streams[&id];
    assert!(s.failed() && !s.complete(), "{s:?}");
}

/// Legs that never build: each times out, is relaunched with growing
/// waits, and the tunnel gives up once the one budget is spent.
#[test]
fn relaunches_stay_within_the_budget() {
    let mut config = set_config(2, 14, SchedulerKind::Ecf);
    config.tunnel.leg_build_timeout = SECS(2);
    config.tunnel.open_timeout = SECS(600);
    let mut sim = TunnelSim::new(config).unwrap();
    // Every middle black-holes its EXTEND2 to the exit.
    let exit = sim.relays.len() - 1;
    sim.black_holes.push(exit);
    for c in sim.exit.circuits.values_mut() {
        c.relay.black_hole = Some(exit);
    }
    assert!(sim.run_until(SECS(600), |s| s.client.is_finished()));
    let e = closed_error(&sim).unwrap();
    assert_eq!(
        e,
        TunnelError::LaunchBudgetSpent {
            launches: 5,
            budget: 5
        }
    );
    let wanted: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(_, e)| matches!(e, TunnelEvent::LegWanted { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(wanted.len(), 3, "2 first legs + 3 relaunches");
    let timeouts = sim.logged(|e| {
        matches!(
            e,
            TunnelEvent::LegFailed {
                error: TunnelError::BuildTimeout { hops_done: 2, .. },
                ..
            }
        )
    });
    assert_eq!(timeouts.len(), 5);
    // The first relaunch goes at once (at the first timeout), the next
    // ones wait 250 ms and 500 ms more than a build timeout would alone.
    assert_eq!(wanted[0], SECS(2));
    assert!(wanted[1] >= wanted[0] + MS(250), "{wanted:?}");
    assert!(sim.legs.values().all(|l| l.released));
    assert!(sim.legs.values().all(|l| l.destroys_sent == 1));
}

/// A single circuit that never builds times out and fails; no relaunch.
#[test]
fn a_build_that_never_completes_times_out() {
    let mut config = SimConfig::new(
        15,
        TunnelConfig::single(),
        vec![LegLinks::symmetric(1_000_000, MS(20))],
    );
    // As the client sets them: the same for the leg and the tunnel.
    config.tunnel.leg_build_timeout = SECS(3);
    config.tunnel.open_timeout = SECS(3);
    let mut sim = TunnelSim::new(config).unwrap();
    let exit = sim.relays.len() - 1;
    sim.exit.circuits.get_mut(&0).unwrap().relay.black_hole = Some(exit);
    assert!(sim.run_until(SECS(100), |s| s.client.is_finished()));
    let e = closed_error(&sim).unwrap();
    assert!(
        matches!(e, TunnelError::BuildTimeout { hops_done: 2, .. }),
        "{e}"
    );
    assert_eq!(e.suspect(), Some(2), "the relay it extended to");
    assert_eq!(sim.elapsed(), SECS(3));
    assert_eq!(sim.legs[&0].destroys_sent, 1);
    assert_eq!(
        sim.logged(|e| matches!(e, TunnelEvent::LegWanted { .. }))
            .len(),
        0
    );
}

/// A set that cannot open in time fails with the open timeout.
#[test]
fn a_set_that_never_links_times_out() {
    let mut config = set_config(2, 16, SchedulerKind::Ecf);
    config.tunnel.open_timeout = SECS(20);
    let mut sim = TunnelSim::new(config).unwrap();
    let exit = sim.relays.len() - 1;
    sim.exit.circuits.get_mut(&1).unwrap().relay.black_hole = Some(exit);
    assert!(sim.run_until(SECS(100), |s| s.client.is_finished()));
    assert_eq!(closed_error(&sim), Some(TunnelError::OpenTimeout(SECS(20))));
    assert_eq!(sim.elapsed(), SECS(20));
}

/// A leg killed while idle: the set goes on, a replacement links with a
/// claim the exit has delivered (C-tor's data-loss check), at once, while
/// an upload keeps going on the other leg.
#[test]
fn idle_leg_killed_replacement_links_mid_transfer() {
    let mut config = set_config(2, 17, SchedulerKind::MinRtt);
    // Leg 1 is slower: MinRTT keeps everything on leg 0.
    config.legs[1] = LegLinks::symmetric(2_000_000, MS(60));
    let mut sim = TunnelSim::new(config).unwrap();
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Upload(8_000_000)).unwrap();
    sim.run_for(SECS(1));
    assert!(
        sim.legs[&1].cells_up < 20,
        "leg 1 idle: {}",
        sim.legs[&1].cells_up
    );
    let killed_at = sim.elapsed();
    sim.kill(1);
    assert!(sim.run_until(SECS(60), |s| {
        s.exit.all_streams().any(|(_, st)| st.received == 8_000_000)
    }));
    assert!(sim.client.is_open(), "{:?}", sim.log);
    assert!(!sim.app.streams[&id].failed());
    let lost = sim.logged(|e| matches!(e, TunnelEvent::LegLost { .. }));
    assert_eq!(lost.len(), 1, "{:?}", sim.log);
    // The replacement's LINK went to the live set and claimed only what
    // the exit had delivered.
    let live: Vec<_> = sim.exit.links.iter().filter(|l| l.path >= 2).collect();
    assert_eq!(live.len(), 1, "{:?}", sim.exit.links);
    assert!(live[0].to_live_set);
    assert!(live[0].claimed <= live[0].delivered, "{:?}", live[0]);
    assert!(live[0].claimed > 0, "it claimed what was delivered");
    // It linked within a few RTTs of being built, mid-upload.
    let linked_leg = &sim.legs[&2];
    assert!(linked_leg.cells_up > 0);
    let wanted_at = sim
        .log
        .iter()
        .find(|(_, e)| matches!(e, TunnelEvent::LegWanted { .. }))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(
        wanted_at - killed_at <= MS(100),
        "asked at once: {wanted_at:?}"
    );
    println!("links: {:?}", sim.exit.links);
}

/// A leg killed with data in flight: the set closes (prop 329 §2.4.3),
/// streams are reset promptly, nothing hangs.
#[test]
fn busy_leg_killed_resets_streams() {
    let mut sim = TunnelSim::new(set_config(2, 18, SchedulerKind::Ecf)).unwrap();
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Upload(20_000_000)).unwrap();
    sim.run_for(SECS(1));
    let killed_at = sim.elapsed();
    sim.kill(0);
    assert!(sim.run_until(killed_at + SECS(5), |s| s.client.is_finished()));
    let e = closed_error(&sim).unwrap();
    assert_eq!(e.kind(), TunnelErrorKind::Lost, "{e}");
    let s = &sim.app.streams[&id];
    assert!(s.failed(), "{s:?}");
    assert!(sim.elapsed() - killed_at < SECS(1));
    // The surviving leg sent its DESTROY.
    assert_eq!(sim.legs[&1].destroys_sent, 1);
}

/// Eight streams at once on a set, each byte-exact.
#[test]
fn eight_streams_in_parallel() {
    let mut sim = TunnelSim::new(set_config(2, 19, SchedulerKind::Ecf)).unwrap();
    assert!(sim.run_until_open(SECS(10)));
    let ids: Vec<StreamId> = (0..8)
        .map(|i| sim.open(Want::Download(300_000 + i * 10_000)).unwrap())
        .collect();
    assert!(
        sim.run_until(SECS(60), |s| s.app.all_complete()),
        "{:?}",
        sim.app.streams
    );
    for id in ids {
        assert!(sim.app.streams[&id].content_ok);
    }
    let l0 = sim.legs[&0].cells_down;
    let l1 = sim.legs[&1].cells_down;
    assert!(l0 > 500 && l1 > 500, "{l0} {l1}");
}

/// The same seed gives the same run.
#[test]
fn deterministic_by_seed() {
    let run = |seed| {
        let mut config = set_config(2, seed, SchedulerKind::Ecf);
        config.legs[1] = LegLinks {
            up: LinkConfig::new(1_000_000, MS(30)).with_loss(2000, MS(200)),
            down: LinkConfig::new(1_000_000, MS(30)).with_loss(2000, MS(200)),
        };
        let mut sim = TunnelSim::new(config).unwrap();
        assert!(sim.run_until_open(SECS(10)));
        sim.open(Want::Download(2_000_000)).unwrap();
        assert!(sim.run_until(SECS(60), |s| s.app.all_complete()));
        (
            sim.elapsed(),
            sim.legs.values().map(|l| l.cells_down).collect::<Vec<_>>(),
        )
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

/// path-spec §2.4: a built leg reports its build time (what the client's
/// learned timeout records), and a timeout set after the tunnel was made
/// applies to the legs launched from then on.
#[test]
fn legs_report_their_build_time_and_take_a_new_timeout() {
    let mut sim = TunnelSim::new(set_config(2, 21, SchedulerKind::Ecf)).unwrap();
    assert!(sim.run_until_open(SECS(10)), "{:?}", sim.log);
    let took: Vec<Duration> = sim
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            TunnelEvent::LegBuilt { took, .. } => Some(*took),
            _ => None,
        })
        .collect();
    assert_eq!(took.len(), 2);
    // Three hops, each at least a round trip over 20 ms links.
    for t in &took {
        assert!(*t >= MS(120) && *t < SECS(2), "{took:?}");
    }

    let mut config = set_config(2, 22, SchedulerKind::Ecf);
    config.tunnel.leg_build_timeout = SECS(2);
    config.tunnel.open_timeout = SECS(600);
    let mut sim = TunnelSim::new(config).unwrap();
    sim.client.set_leg_build_timeout(MS(1500));
    let exit = sim.relays.len() - 1;
    sim.black_holes.push(exit);
    for c in sim.exit.circuits.values_mut() {
        c.relay.black_hole = Some(exit);
    }
    assert!(sim.run_until(SECS(60), |s| s.client.is_finished()));
    let failed: Vec<(Duration, TunnelError)> = sim
        .log
        .iter()
        .filter_map(|(t, e)| match e {
            TunnelEvent::LegFailed { error, .. } => Some((*t, error.clone())),
            _ => None,
        })
        .collect();
    assert!(
        failed
            .iter()
            .all(|(_, e)| matches!(e, TunnelError::BuildTimeout { hops_done: 2, .. })),
        "{failed:?}"
    );
    // The first two legs were launched with the tunnel (2 s); the first
    // relaunch goes at once at 2 s and times out 1.5 s later.
    assert_eq!(failed[0].0, SECS(2));
    assert_eq!(failed[2].0, MS(3500), "{failed:?}");
}
