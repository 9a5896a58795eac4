//! Every 2026 Conflux TROVE from the client's side, against braid-core's
//! real tunnel (`ClientTunnel`, crates/core/src/tunnel) on the virtual
//! clock, with the C-tor-like simulated exit or the real Braid exit
//! (`RelayNode`) at the end of the legs.
//!
//! C-tor references are to the mirror `syphyr/tor`, branch `main` at
//! `817b7105f2` (2025-12-16), which predates the 2026 fixes. The set-level
//! tests of the same TROVEs are braid-core's `conflux::trove_tests` and
//! `conflux::hostile_tests`; the exit's, `relay::trove_tests`. Each test
//! names the TROVE, and `cargo test trove_2026` lists them all.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use braid_core::circuit::CircError;
use braid_core::conflux::{ConfluxConfig, ConfluxError, ResumeParams};
use braid_core::conflux_sched::SchedulerKind;
use braid_core::relay::ConfluxExitConfig;
use braid_core::stream::Target;
use braid_core::tunnel::{TunnelConfig, TunnelError, TunnelErrorKind, TunnelEvent};
use braid_sim::tunnel::{LegLinks, NodeExitConfig, SimConfig, TunnelSim, Want};
use tor_cell::relaycell::msg::{BeginDir, ConfluxSwitch, Data, EndReason};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn conflux() -> TunnelConfig {
    TunnelConfig::conflux(ConfluxConfig::client(), SchedulerKind::Ecf)
}

/// Two legs to the C-tor-like simulated exit.
fn to_sim_exit(seed: u64) -> TunnelSim {
    TunnelSim::new(SimConfig::new(
        seed,
        conflux(),
        vec![LegLinks::symmetric(2_000_000, MS(20)); 2],
    ))
    .unwrap()
}

/// Two legs to the Braid exit.
fn to_node_exit(seed: u64, legs: Vec<LegLinks>) -> TunnelSim {
    TunnelSim::new(SimConfig::new(seed, conflux(), legs).with_node_exit(NodeExitConfig::default()))
        .unwrap()
}

fn closed_error(sim: &TunnelSim) -> Option<TunnelError> {
    sim.log.iter().find_map(|(_, e)| match e {
        TunnelEvent::Closed { error } => Some(error.clone()),
        _ => None,
    })
}

/// Counts the tunnel's log lines saying a stream met a protocol violation
/// of the exit (`ClientTunnel` logs them at info and goes on).
struct Violations(std::sync::Arc<std::sync::atomic::AtomicUsize>);

/// The `message` field of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Violations {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        if m.0.contains("protocol violation of the exit") {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn closes(sim: &TunnelSim) -> usize {
    sim.logged(|e| matches!(e, TunnelEvent::Closed { .. }))
        .len()
}

/// TROVE-2026-008 (BEGIN_DIR on legs), the client's side: the tunnel has
/// no way to put a directory stream on a set (the set refuses to sequence
/// BEGIN_DIR: `conflux::trove_tests`), and a BEGIN_DIR an exit sends down
/// a leg is a command only a circuit's origin sends (tor-spec §6.1): the
/// leg's circuit closes on it at once, as the exit's violation, before it
/// reaches the set or the streams; the set's leg-loss rules then decide
/// (here the leg carried part of the download: the tunnel closes). The
/// stream ends once, every leg sends its DESTROY once, nothing is sent
/// after. C-tor: `handle_relay_msg` (relay.c) took BEGIN_DIR on a Conflux
/// circuit with no check; the fix refuses it.
#[test]
fn trove_2026_008_begin_dir_on_a_leg_client() {
    let mut sim = to_sim_exit(8);
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Download(20_000_000)).unwrap();
    sim.run_for(MS(400));
    sim.inject(1, 2, Some(id), BeginDir::default().into());
    assert!(sim.run_until(SECS(5), |s| s.client.is_finished()));
    let lost = sim.logged(|e| matches!(e, TunnelEvent::LegLost { .. }));
    let [TunnelEvent::LegLost { leg, error, .. }] = lost.as_slice() else {
        panic!("{:?}", sim.log)
    };
    assert_eq!(sim.path_of(*leg), Some(1));
    assert_eq!(error.kind(), TunnelErrorKind::PeerViolation, "{error}");
    assert!(error.to_string().contains("BEGIN_DIR"), "{error}");
    let e = closed_error(&sim).unwrap();
    assert!(
        matches!(e, TunnelError::Conflux(ConfluxError::LegLost { .. })),
        "{e}"
    );
    assert_eq!(closes(&sim), 1);
    assert!(sim.legs.values().all(|l| l.destroys_sent == 1));
    assert!(sim.legs.values().all(|l| l.cells_after_end == 0));
    let s = &sim.app.streams[&id];
    assert_eq!(sim.app.ends[&id], 1, "{s:?}");
    assert!(s.failed());
}

/// TROVE-2026-010 (reorder accounting when a queue is cleared), the
/// client's side: the exit leaves a gap and sends cells past it (they
/// wait in the reorder queue), then breaks a rule. The tunnel's figures
/// show the queue empty at once, while its legs still linger for their
/// DESTROYs, and the peak as history. C-tor: `conflux_free_`
/// (conflux_pool.c) freed the queue without taking it off
/// `total_ooo_q_bytes` (conflux.c); the fix subtracts it. Braid kept a
/// closed set's queue until the tunnel was dropped (found by
/// `conflux::trove_tests`); `ConfluxSet::fail` now empties it.
#[test]
fn trove_2026_010_reorder_accounting_client() {
    let mut sim = to_sim_exit(10);
    assert!(sim.run_until_open(SECS(10)));
    let id = sim.open(Want::Download(20_000_000)).unwrap();
    sim.run_for(MS(300));
    // A gap of 200 on leg 1 and 40 full cells behind it.
    sim.inject(1, 2, None, ConfluxSwitch::new(200).into());
    for _ in 0..40 {
        sim.inject(1, 2, Some(id), Data::new(&[7; 498]).unwrap().into());
    }
    assert!(sim.run_until(SECS(2), |s| {
        s.client.reorder_snapshot().is_some_and(|r| r.waiting >= 40)
    }));
    let held = sim.client.reorder_snapshot().unwrap();
    assert!(held.bytes >= 40 * 498, "{held:?}");
    sim.inject(0, 2, Some(id), BeginDir::default().into());
    assert!(sim.run_until(SECS(2), |s| s.client.is_closed()));
    let r = sim.client.reorder_snapshot().unwrap();
    assert_eq!((r.bytes, r.waiting), (0, 0), "{r:?}");
    assert!(r.peak_bytes >= held.bytes);
    assert!(sim.run_until(SECS(5), |s| s.client.is_finished()));
}

/// TROVE-2026-016 and -026 (streams freed once when a set closes,
/// whatever leg goes first), the client's side, against the Braid exit:
/// three downloads; the legs die one after the other in either order, or
/// together, and no leg replaces them. Each stream ends exactly once,
/// the tunnel closes once, sends nothing on a dead leg, and the exit
/// forgets the set and its streams. C-tor: `linked_circuit_free` and
/// `linked_nullify_streams` (conflux_pool.c) moved or freed the set's
/// shared stream lists per leg, so a stream could be freed through one
/// leg and used through another (-026, a recovery leg; -016, at
/// shutdown). Braid's streams are the tunnel's, not a leg's.
#[test]
fn trove_2026_016_026_streams_ended_once_whatever_leg_goes_first_client() {
    for (case, kills) in [vec![0, 1], vec![1, 0], vec![0]].into_iter().enumerate() {
        let legs = vec![LegLinks::symmetric(2_000_000, MS(20)); 2];
        let mut sim = to_node_exit(16 + case as u64, legs);
        sim.refuse_legs = true;
        assert!(sim.run_until_open(SECS(10)));
        let ids: Vec<_> = (0..3)
            .map(|_| sim.open(Want::Download(10_000_000)).unwrap())
            .collect();
        sim.run_for(MS(500));
        if kills.len() == 1 {
            sim.kill(0);
            sim.kill(1);
        } else {
            for p in kills {
                sim.kill(p);
                sim.run_for(MS(60));
            }
        }
        assert!(sim.run_until(SECS(30), |s| s.client.is_finished()));
        assert_eq!(closes(&sim), 1, "case {case}");
        for id in &ids {
            let s = &sim.app.streams[id];
            assert_eq!(sim.app.ends[id], 1, "case {case}: {id}: {s:?}");
        }
        sim.run_for(SECS(5));
        let node = &sim.node_exit.as_ref().unwrap().node;
        assert_eq!(node.sets().count(), 0, "case {case}");
        assert_eq!(node.exit_stream_count(), 0);
        assert_eq!(node.queued_bytes(), 0);
    }
}

/// TROVE-2026-017 (a SWITCH that fails to send), the client's side: an
/// upload over two legs, one of them slow enough that its cells (the
/// SWITCHes onto it and the DATA after them) wait in the tunnel for its
/// link; the slow leg dies with them unsent. Its messages are spent
/// sequence numbers: either the tunnel closes (the set lost its current
/// sending leg, or data in flight), or the exit still receives every byte
/// of the upload, in order. Never a tunnel that goes on over the other
/// leg while the exit waits for the lost numbers. C-tor:
/// `conflux_send_switch_command` (conflux_cell.c) ignored a failed send
/// and `conflux_decide_circ_for_send` (conflux.c) then wrote to the
/// closed circuit; the fix closes the set.
#[test]
fn trove_2026_017_switch_that_fails_to_send_client() {
    for seed in 0..6 {
        let legs = vec![
            LegLinks::symmetric(4_000_000, MS(15)),
            LegLinks::symmetric(150_000, MS(40)),
        ];
        let mut sim = to_node_exit(170 + seed, legs);
        sim.refuse_legs = true;
        assert!(sim.run_until_open(SECS(10)));
        let total = 6_000_000;
        let id = sim.open(Want::Upload(total)).unwrap();
        sim.run_for(MS(400 + 150 * seed));
        sim.kill(1);
        sim.run_until(SECS(60), |s| {
            s.client.is_finished() || s.app.streams[&id].complete()
        });
        sim.run_for(SECS(2));
        let node = &sim.node_exit.as_ref().unwrap().node;
        if sim.client.is_closed() {
            assert_eq!(sim.app.ends[&id], 1);
        } else {
            let s = &sim.app.streams[&id];
            assert!(s.complete(), "seed {seed}: {s:?} {:?}", sim.log);
            assert_eq!(sim.exit_received(), vec![total], "seed {seed}");
            assert!(node.sets().count() == 1);
        }
    }
}

/// TROVE-2026-025 (LINK after a stream), the client's side: no stream
/// cell goes on a leg before its LINK, on the first legs (BEGIN is
/// refused until the set links) and on a leg that replaces a lost one
/// while streams run; the Braid exit, which refuses a LINK after a
/// stream, refuses none. C-tor's exit took such a LINK
/// (`conflux_process_link`, conflux_pool.c, no check;
/// `validate_circ_has_no_streams` only logged a BUG); the fix refuses it.
#[test]
fn trove_2026_025_link_before_any_stream_client() {
    let legs = vec![LegLinks::symmetric(2_000_000, MS(20)); 2];
    let mut sim = to_node_exit(25, legs);
    let now = sim.now();
    let early = sim
        .client
        .begin(&Target::hostname("dl-1000.sim", 80), now)
        .unwrap_err();
    assert_eq!(early, TunnelError::NotOpen);
    assert!(sim.run_until_open(SECS(10)));
    // A leg is lost before anything was sent on it and replaced while
    // streams run.
    sim.kill(1);
    let ids: Vec<_> = (0..3)
        .map(|_| sim.open(Want::Download(400_000)).unwrap())
        .collect();
    assert!(
        sim.run_until(SECS(60), |s| s.app.all_complete()),
        "{:?}",
        sim.log
    );
    assert_eq!(
        sim.logged(|e| matches!(e, TunnelEvent::LegLost { .. }))
            .len(),
        1
    );
    let more: Vec<_> = (0..3)
        .map(|_| sim.open(Want::Download(400_000)).unwrap())
        .collect();
    assert!(sim.run_until(SECS(60), |s| s.app.all_complete()));
    let node = &sim.node_exit.as_ref().unwrap().node;
    assert_eq!(node.stats().links_refused, 0);
    assert_eq!(node.stats().legs_linked, 3, "two legs and a replacement");
    assert!(
        ids.iter()
            .chain(&more)
            .all(|id| sim.app.streams[id].content_ok)
    );
}

/// TROVE-2026-032 (an unrequested CC_RESPONSE), the client's side: a
/// middle relay answers congestion control it was not asked for (the
/// client asks the exit only). The leg's build fails with a protocol
/// violation of that hop, the tunnel replaces it with fresh relays, and a
/// download completes byte-identical. C-tor:
/// `negotiate_v3_ntor_client_circ_params` (onion_crypto.c) accepted the
/// answer whenever the consensus enabled congestion control, and
/// `circuit_finish_handshake` (circuitbuild.c) made congestion control
/// for that hop; the fix refuses an answer to a request not made (Braid:
/// `circuit::build::check_cc_answer`).
#[test]
fn trove_2026_032_unrequested_cc_response_client() {
    let mut sim = to_sim_exit(32);
    // Leg 1 runs guard 2, middle 3.
    sim.relays.get_mut(3).unwrap().answers_cc_unasked = true;
    assert!(sim.run_until_open(SECS(20)), "{:?}", sim.log);
    let failed = sim.logged(|e| {
        matches!(
            e,
            TunnelEvent::LegFailed {
                error: TunnelError::BuildFailed { .. } | TunnelError::CircuitClosed { .. },
                ..
            }
        )
    });
    assert_eq!(failed.len(), 1, "{:?}", sim.log);
    let TunnelEvent::LegFailed { error, .. } = failed[0] else {
        panic!()
    };
    let text = error.to_string();
    assert!(
        text.contains("did not request congestion control"),
        "{text}"
    );
    assert!(matches!(
        error,
        TunnelError::BuildFailed {
            reason: braid_core::circuit::CloseReason::Error(CircError::CcNegotiation { .. }),
            ..
        }
    ));
    assert_eq!(sim.client.launches().0, 3, "one replacement");
    let id = sim.open(Want::Download(500_000)).unwrap();
    assert!(sim.run_until(SECS(30), |s| s.app.all_complete()));
    assert!(sim.app.streams[&id].content_ok);
}

/// TROVE-2026-040 (isolation kept in sync across legs), the client's
/// side: what a stream's isolation and id depend on is the tunnel's, not
/// a leg's. A download runs while its busy leg dies and a replacement
/// joins (resumption on both ends, Braid proposal 001): it completes
/// byte-identical over the new leg, and the streams opened after it get
/// ids the tunnel never gave before. C-tor kept isolation fields per leg
/// and copied only some of them (`conflux_sync_circ_fields`,
/// conflux_util.c: `next_stream_id`, dirtiness, not the isolation), so a
/// stream of another isolation could be attached through another leg;
/// the fix syncs them. (Braid's client pool keys whole tunnels by
/// isolation, crates/client `pool`.)
#[test]
fn trove_2026_040_stream_state_shared_across_legs_client() {
    let mut tunnel = conflux();
    tunnel.resume = Some(ResumeParams::default());
    let legs = vec![LegLinks::symmetric(2_000_000, MS(20)); 2];
    let mut sim = TunnelSim::new(
        SimConfig::new(40, tunnel, legs).with_node_exit(NodeExitConfig {
            conflux: ConfluxExitConfig {
                resume: Some(ResumeParams::default()),
                ..ConfluxExitConfig::default()
            },
            ..NodeExitConfig::default()
        }),
    )
    .unwrap();
    assert!(sim.run_until_open(SECS(10)));
    let first = sim.open(Want::Download(8_000_000)).unwrap();
    sim.run_for(MS(900));
    let busy = if sim.legs[&0].cells_down >= sim.legs[&1].cells_down {
        0
    } else {
        1
    };
    sim.kill(busy);
    assert!(
        sim.run_until(SECS(60), |s| s.app.all_complete()),
        "{:?}",
        sim.log
    );
    assert!(sim.app.streams[&first].content_ok);
    let mut ids = vec![first];
    for _ in 0..5 {
        let id = sim.open(Want::Download(50_000)).unwrap();
        assert!(!ids.contains(&id), "{id} given twice");
        ids.push(id);
    }
    assert!(sim.run_until(SECS(60), |s| s.app.all_complete()));
    assert_eq!(closes(&sim), 0);
    let node = &sim.node_exit.as_ref().unwrap().node;
    assert_eq!(node.sets().count(), 1, "one set, one stream map");
}

/// arti's TROVE-2026-047 (half-closed streams), the client's side: the
/// application closes a download mid-transfer; the exit's DATA already on
/// its way arrives afterwards on both legs, in sequence order. The
/// tunnel's half-closed accounting takes it quietly (no violation, no
/// second end), and a download beside it completes byte-identical. The
/// accounting is the tunnel's stream map's, whatever leg the late cells
/// use (C-tor shares one `half_streams` list across legs,
/// `conflux_update_half_streams`, conflux_util.c).
#[test]
fn trove_2026_047_half_closed_streams_across_legs_client() {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = Violations(count.clone());
    tracing::subscriber::with_default(subscriber, || {
        let legs = vec![
            LegLinks::symmetric(2_000_000, MS(20)),
            LegLinks::symmetric(2_000_000, MS(35)),
        ];
        let mut sim = to_node_exit(47, legs);
        assert!(sim.run_until_open(SECS(10)));
        let gone = sim.open(Want::Download(20_000_000)).unwrap();
        let by = sim.open(Want::Download(3_000_000)).unwrap();
        sim.run_for(MS(700));
        let (d0, d1) = (sim.legs[&0].cells_down, sim.legs[&1].cells_down);
        assert!(
            d0 > 50 && d1 > 50,
            "both legs carry the download: {d0} {d1}"
        );
        let now = sim.now();
        sim.client.close_stream(gone, EndReason::MISC, now).unwrap();
        let after = (sim.legs[&0].cells_down, sim.legs[&1].cells_down);
        assert!(sim.run_until(SECS(60), |s| s.app.streams[&by].complete()));
        assert!(
            sim.legs[&0].cells_down > after.0 + 5 && sim.legs[&1].cells_down > after.1 + 5,
            "late cells came on both legs"
        );
        assert!(sim.app.streams[&by].content_ok);
        assert!(!sim.client.is_closed(), "{:?}", closed_error(&sim));
        assert_eq!(closes(&sim), 0);
        assert!(sim.app.ends.get(&gone).copied().unwrap_or(0) <= 1);
    });
    assert_eq!(
        count.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "late cells of the closed stream counted as the exit's violations"
    );
}
