//! Relays that hang without closing anything (Braid proposal 001 §3.6),
//! end to end on the virtual clock: braid-core's client tunnel and the
//! Braid exit (`RelayNode`), both offering resumption with leg probes. A
//! hung relay sends no DESTROY and closes no connection; the ends find
//! the silent leg with LEG_PING, close it and resume the set on a new leg.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::conflux::{ConfluxError, ResumeParams};
use braid_core::tunnel::{TunnelError, TunnelEvent};
use braid_sim::tunnel::{LegLinks, SimConfig, TunnelSim, Want};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Legs the client lost as silent (§3.6).
fn silent_losses(sim: &TunnelSim) -> usize {
    sim.logged(|e| {
        matches!(
            e,
            TunnelEvent::LegLost {
                error: TunnelError::Conflux(ConfluxError::LegSilent { .. }),
                ..
            }
        )
    })
    .len()
}

/// A 20 MB download; the busy leg's middle hangs `after` ms in. The exit
/// (sending, unanswered) pings it, gives it up, tells the client on the
/// other leg (LEGS_LOST); a new leg resumes the set and the download
/// completes byte-exact.
#[test]
fn a_relay_hanging_under_a_download_is_found_and_the_set_resumes() {
    for (seed, after) in [(1, 900), (2, 1700), (3, 2500)] {
        let legs = vec![LegLinks::symmetric(2_000_000, MS(20)); 2];
        let mut sim =
            TunnelSim::new(SimConfig::resumable(seed, legs, ResumeParams::default())).unwrap();
        assert!(sim.run_until_open(SECS(5)));
        let n = 20_000_000;
        let id = sim.open(Want::Download(n)).unwrap();
        sim.run_for(MS(after));
        let hung_at = sim.elapsed();
        let p = sim.busiest_alive().unwrap();
        sim.hang(p);
        assert!(sim.run_until(SECS(90), |s| s.app.all_complete() || s.client.is_finished()));
        let s = &sim.app.streams[&id];
        assert!(s.content_ok && s.received == n, "seed {seed}: {s:?}");
        let done = sim.elapsed() - hung_at;
        let st = sim.client.resume_stats();
        println!("seed {seed}: hung {after} ms in; done {done:?} after; {st:?}");
        assert_eq!(st.resumptions, 1, "seed {seed}: {st:?}");
        assert!(done < SECS(25), "seed {seed}: {done:?}");
        assert!(!sim.client.is_finished(), "seed {seed}: the set lives");
    }
}

/// An upload whose busy leg hangs: the client (sending, unanswered) pings
/// it and gives it up itself; every byte reaches the destination once.
#[test]
fn a_relay_hanging_under_an_upload_is_found_by_the_client() {
    let legs = vec![LegLinks::symmetric(2_000_000, MS(20)); 2];
    let mut sim = TunnelSim::new(SimConfig::resumable(4, legs, ResumeParams::default())).unwrap();
    assert!(sim.run_until_open(SECS(5)));
    let n = 10_000_000;
    sim.open(Want::Upload(n)).unwrap();
    sim.run_for(SECS(2));
    let busy = if sim.legs[&0].cells_up >= sim.legs[&1].cells_up {
        0
    } else {
        1
    };
    sim.hang(busy);
    assert!(sim.run_until(SECS(90), |s| s.exit_received() == [n]
        || s.client.is_finished()));
    assert_eq!(sim.exit_received(), [n], "every byte, once");
    assert_eq!(silent_losses(&sim), 1, "the client found it: {:?}", sim.log);
    assert!(sim.client.conflux_set().unwrap().pings_sent() >= 1);
}

/// Both legs hang at once (one guard under both): the exit can tell the
/// client nothing, and the client only receives; its PING after the
/// burst finds both legs silent, and new legs resume the set.
#[test]
fn every_leg_hanging_at_once_is_found_by_the_client_that_only_receives() {
    let legs = vec![LegLinks::symmetric(2_000_000, MS(20)); 2];
    let mut sim = TunnelSim::new(SimConfig::resumable(5, legs, ResumeParams::default())).unwrap();
    assert!(sim.run_until_open(SECS(5)));
    let n = 10_000_000;
    let id = sim.open(Want::Download(n)).unwrap();
    sim.run_for(MS(1500));
    sim.hang(0);
    sim.hang(1);
    assert!(sim.run_until(SECS(90), |s| s.app.all_complete() || s.client.is_finished()));
    let s = &sim.app.streams[&id];
    assert!(s.content_ok && s.received == n, "{s:?}; {:?}", sim.log);
    assert_eq!(silent_losses(&sim), 2, "{:?}", sim.log);
}

/// The same hang with a client that does not offer probes: nothing finds
/// it, and the download stalls for good (what §3.6 is for).
#[test]
fn without_probes_a_hung_relay_stalls_the_set() {
    let legs = vec![LegLinks::symmetric(2_000_000, MS(20)); 2];
    let client = ResumeParams {
        probe: None,
        ..ResumeParams::default()
    };
    let mut sim = TunnelSim::new(SimConfig::resumable(1, legs, client)).unwrap();
    assert!(sim.run_until_open(SECS(5)));
    let id = sim.open(Want::Download(20_000_000)).unwrap();
    sim.run_for(MS(900));
    let p = sim.busiest_alive().unwrap();
    sim.hang(p);
    sim.run_for(SECS(60));
    assert!(!sim.app.all_complete(), "{:?}", sim.app.streams[&id]);
    assert_eq!(silent_losses(&sim), 0);
    assert_eq!(sim.client.conflux_set().unwrap().pings_sent(), 0);
}

/// Slow legs (400 ms one way, 250 kB/s, with queues) and a minute of quiet
/// after a download: PINGs go after bursts, but no leg is called silent.
#[test]
fn slow_and_idle_legs_are_not_called_silent() {
    let legs = vec![LegLinks::symmetric(250_000, MS(400)); 2];
    let mut sim = TunnelSim::new(SimConfig::resumable(6, legs, ResumeParams::default())).unwrap();
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Download(5_000_000)).unwrap();
    assert!(sim.run_until(SECS(120), |s| s.app.all_complete()
        || s.client.is_finished()));
    assert!(sim.app.streams[&id].content_ok);
    let after_download = sim.client.conflux_set().unwrap().pings_sent();
    sim.run_for(SECS(60));
    let pings = sim.client.conflux_set().unwrap().pings_sent();
    println!("client PINGs: {after_download} in the download, {pings} in all");
    assert_eq!(sim.client.resume_stats().legs_lost, 0, "{:?}", sim.log);
    assert!(!sim.client.is_finished());
    // One per leg after the burst, none in the quiet minute.
    assert!(pings <= after_download + 2, "{pings} PINGs");
}
