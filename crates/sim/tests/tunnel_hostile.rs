//! A hostile exit side against the real tunnel core: LINKED twice, cells
//! on legs that are not legs yet, DESTROY storms, garbage, a reorder gap
//! that never fills. Every case ends with a clear error, closes only what
//! it must, and keeps memory within the core's bounds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::conflux::{ConfluxConfig, ConfluxError, ConfluxNonce, LinkInfo, V1DesiredUx};
use braid_core::conflux_sched::SchedulerKind;
use braid_core::tunnel::{TunnelConfig, TunnelError, TunnelErrorKind, TunnelEvent};
use braid_sim::tunnel::{LegLinks, SimConfig, TunnelSim, Want};
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason, Relay};
use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxLinked, ConfluxSwitch, Data};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn set_sim(seed: u64) -> TunnelSim {
    TunnelSim::new(SimConfig::new(
        seed,
        TunnelConfig::conflux(ConfluxConfig::client(), SchedulerKind::Ecf),
        vec![LegLinks::symmetric(2_000_000, MS(20)); 2],
    ))
    .unwrap()
}

fn closed_error(sim: &TunnelSim) -> Option<TunnelError> {
    sim.log.iter().find_map(|(_, e)| match e {
        TunnelEvent::Closed { error } => Some(error.clone()),
        _ => None,
    })
}

/// What the core holds stays within its bounds.
fn assert_bounded(sim: &TunnelSim) {
    if let Some(r) = sim.client.reorder_snapshot() {
        assert!(r.bytes <= r.limit_bytes, "{r:?}");
        assert!(r.peak_bytes <= r.limit_bytes, "{r:?}");
    }
    let (launched, budget) = sim.client.launches();
    assert!(launched <= budget);
    assert!(sim.client.leg_snapshots().len() <= 16 + budget);
    for id in sim.app.streams.keys() {
        assert!(sim.client.recv_buffered(*id).unwrap_or(0) <= 4 * 1024 * 1024);
    }
    assert!(sim.legs.values().all(|l| l.cells_after_end == 0));
}

/// A second LINKED on a linked leg is a violation of the exit: the set
/// closes, every leg sends its DESTROY, streams are reset.
#[test]
fn linked_twice_closes_the_set() {
    let mut sim = set_sim(21);
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Download(20_000_000)).unwrap();
    sim.run_for(MS(500));
    let info = LinkInfo {
        nonce: ConfluxNonce::from_bytes([7; 32]),
        last_seqno_sent: 0,
        last_seqno_recv: 0,
        desired_ux: V1DesiredUx::MIN_LATENCY,
    };
    let linked = ConfluxLinked::new(info.to_payload().unwrap());
    sim.inject(1, 2, None, linked.into());
    assert!(sim.run_until(SECS(5), |s| s.client.is_finished()));
    let e = closed_error(&sim).unwrap();
    assert!(
        matches!(e, TunnelError::Conflux(ConfluxError::LinkedTwice { .. })),
        "{e}"
    );
    assert_eq!(e.kind(), TunnelErrorKind::PeerViolation);
    assert!(sim.app.streams[&id].failed());
    assert!(
        sim.legs
            .values()
            .all(|l| l.destroys_sent == 1 && l.released)
    );
    assert_bounded(&sim);
}

/// A relay message on a built leg before its LINK (the exit has nothing to
/// say on a circuit that is not a leg yet), and one from the guard while a
/// leg is still building: each closes that leg only, which is relaunched.
#[test]
fn cells_on_legs_that_are_not_legs_yet() {
    let mut config = SimConfig::new(
        22,
        TunnelConfig::conflux(ConfluxConfig::client(), SchedulerKind::Ecf),
        vec![
            LegLinks::symmetric(2_000_000, MS(20)),
            LegLinks::symmetric(2_000_000, MS(300)),
        ],
    );
    config.spare = LegLinks::symmetric(2_000_000, MS(20));
    let mut sim = TunnelSim::new(config).unwrap();
    // Leg 0 is built after ~3 RTTs of 40 ms; leg 1 takes seconds.
    sim.run_for(MS(400));
    assert!(!sim.client.is_open());
    sim.inject(0, 2, None, ConfluxSwitch::new(5).into());
    sim.inject(1, 0, None, ConfluxSwitch::new(5).into());
    assert!(sim.run_until_open(SECS(20)), "{:?}", sim.log);
    let failed: Vec<&TunnelError> = sim
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            TunnelEvent::LegFailed { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert!(
        matches!(
            failed.as_slice(),
            [TunnelError::NotALeg { .. }, TunnelError::WrongHop { .. }]
                | [TunnelError::WrongHop { .. }, TunnelError::NotALeg { .. }]
        ),
        "{failed:?}"
    );
    assert_eq!(sim.legs[&0].destroys_sent, 1);
    assert_eq!(sim.legs[&1].destroys_sent, 1);
    sim.open(Want::Download(500_000)).unwrap();
    assert!(sim.run_until(SECS(30), |s| s.app.all_complete()));
    assert_bounded(&sim);
}

/// DESTROYs on every leg, again and again, and on legs already gone: the
/// tunnel closes once, nothing is sent after a leg is released, memory
/// stays bounded.
#[test]
fn destroy_storm() {
    let mut sim = set_sim(23);
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Download(20_000_000)).unwrap();
    sim.run_for(MS(300));
    for round in 0..50 {
        for p in 0..2 {
            sim.inject_cell(p, Destroy::new(DestroyReason::CHANNEL_CLOSED).into());
        }
        sim.run_for(MS(1 + round % 3));
    }
    assert!(sim.run_until(SECS(5), |s| s.client.is_finished()));
    let closes = sim.logged(|e| matches!(e, TunnelEvent::Closed { .. }));
    assert_eq!(closes.len(), 1);
    assert_eq!(closed_error(&sim).unwrap().kind(), TunnelErrorKind::Lost);
    assert!(sim.app.streams[&id].failed());
    // The first leg destroyed by the relay sends none back; the other,
    // closed by us when the set closes (or destroyed first), at most one.
    assert_eq!(sim.legs[&0].destroys_sent, 0);
    assert!(
        sim.legs
            .values()
            .all(|l| l.destroys_sent <= 1 && l.released)
    );
    assert_bounded(&sim);
}

/// DESTROYs one idle leg at a time: each loss is survived and replaced,
/// within the budget; then the set closes for want of legs.
#[test]
fn destroys_on_idle_legs_use_up_the_budget() {
    let mut sim = set_sim(24);
    assert!(sim.run_until_open(SECS(10)));
    for _ in 0..8 {
        let live: Vec<u32> = sim
            .legs
            .iter()
            .filter(|(_, l)| !l.released && !l.dead)
            .map(|(p, _)| *p)
            .collect();
        let Some(p) = live.first() else { break };
        sim.inject_cell(*p, Destroy::new(DestroyReason::CHANNEL_CLOSED).into());
        sim.run_for(SECS(2));
        assert_bounded(&sim);
    }
    assert!(sim.run_until(SECS(60), |s| s.client.is_finished()));
    let (launched, budget) = sim.client.launches();
    assert_eq!((launched, budget), (5, 5));
    assert!(closed_error(&sim).is_some());
}

/// Cells no hop can recognize: the leg's circuit closes on the violation
/// (tor-spec §5.5.3) with a DESTROY; the idle set goes on.
#[test]
fn garbage_closes_only_its_leg() {
    let mut sim = set_sim(25);
    assert!(sim.run_until_open(SECS(10)));
    sim.run_for(MS(200));
    sim.inject_cell(1, AnyChanMsg::Relay(Relay::from_raw([0x42; 509])));
    sim.run_for(SECS(2));
    let lost = sim.logged(|e| matches!(e, TunnelEvent::LegLost { .. }));
    assert_eq!(lost.len(), 1, "{:?}", sim.log);
    if let TunnelEvent::LegLost { error, .. } = lost[0] {
        assert!(error.is_peer_violation(), "{error}");
    }
    assert_eq!(sim.legs[&1].destroys_sent, 1);
    assert!(sim.client.is_open());
    assert_bounded(&sim);
}

/// The exit opens a gap and never fills it: the reorder queue reaches its
/// bound and the set closes with a resource limit, never holding more.
#[test]
fn a_gap_that_never_fills_hits_the_reorder_bound() {
    let mut sim = set_sim(26);
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Download(1000)).unwrap();
    assert!(sim.run_until(SECS(5), |s| s.app.all_complete()));
    let limit = sim.client.reorder_snapshot().unwrap().limit_bytes;
    // A SWITCH over 1000 sequence numbers that never come, then DATA.
    sim.inject(0, 2, None, ConfluxSwitch::new(1000).into());
    let data: AnyRelayMsg = Data::new(&[9; 498]).unwrap().into();
    let mut sent = 0;
    while !sim.client.is_closed() && sent < 20_000 {
        for _ in 0..100 {
            sim.inject(0, 2, Some(id), data.clone());
        }
        sent += 100;
        sim.run_for(MS(5));
        assert_bounded(&sim);
    }
    assert!(sim.run_until(SECS(5), |s| s.client.is_finished()));
    let e = closed_error(&sim).unwrap();
    assert_eq!(e.kind(), TunnelErrorKind::ResourceLimit, "{e}");
    let r = sim.client.reorder_snapshot().unwrap();
    assert!(
        r.peak_bytes <= limit && r.peak_bytes * 10 >= limit * 9,
        "{r:?} {limit}"
    );
}
