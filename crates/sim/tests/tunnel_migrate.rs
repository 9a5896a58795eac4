//! Live stream migration (Braid proposal 001 §4) on the virtual clock:
//! braid-core's client tunnels and the Braid exit (`RelayNode`), a stream
//! moved mid-transfer from a single-circuit tunnel to a Conflux set at the
//! same exit, over links with delay and loss. Every byte is checked where
//! it arrives (downloads against the stream's content, ordered uploads
//! against their offsets). Runs are deterministic by seed.

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
use braid_core::exit::ExitConfig;
use braid_core::ids::EdgeKey;
use braid_core::stream::{EndReason, StreamEvent};
use braid_core::tunnel::{TunnelConfig, TunnelEvent};
use braid_sim::LinkConfig;
use braid_sim::tunnel::{LegLinks, MultiSim, NodeExitConfig, Transfer};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The Braid exit, taking part in migration.
fn exit() -> NodeExitConfig {
    NodeExitConfig {
        streams: ExitConfig {
            migrate: true,
            ..ExitConfig::default()
        },
        ..NodeExitConfig::default()
    }
}

/// 2 MB/s legs, 20 ms each way, and a loss every 2000 cells (each costing
/// a TCP retransmission, 60 ms).
fn lossy() -> LegLinks {
    let l = LinkConfig::new(2_000_000, MS(20)).with_loss(500, MS(60));
    LegLinks { up: l, down: l }
}

fn single() -> TunnelConfig {
    let mut c = TunnelConfig::single();
    c.streams.migratable = true;
    c
}

fn set() -> TunnelConfig {
    let mut c = TunnelConfig::conflux(ConfluxConfig::client(), SchedulerKind::Ecf);
    c.streams.migratable = true;
    c
}

/// A client with a single circuit (tunnel 0) and a Conflux set (tunnel 1)
/// to the exit, both open.
fn two_tunnels(seed: u64) -> MultiSim {
    let mut sim = MultiSim::new(seed, exit(), lossy()).unwrap();
    let a = sim.add_tunnel(single()).unwrap();
    let b = sim.add_tunnel(set()).unwrap();
    assert_eq!((a, b), (0, 1));
    assert!(sim.run_until(SECS(10), |s| s.tunnels.iter().all(|t| t.is_open())));
    sim
}

/// Run until application stream `app` is over.
fn finish(sim: &mut MultiSim, app: usize, limit: Duration) {
    let done = sim.run_until(limit, |s| s.apps[app].over());
    assert!(done, "not over by {limit:?}: {:?}", sim.apps[app]);
}

#[test]
fn a_download_moves_mid_transfer_from_a_circuit_to_a_set() {
    let n = 20_000_000;
    let mut sim = two_tunnels(1);
    let app = sim.open(0, Transfer::Download(n)).unwrap();
    sim.run_for(SECS(3));
    let before = sim.apps[app].received;
    assert!(before > 0 && before < n, "mid-transfer: {before}");
    let at = sim.elapsed();
    assert!(sim.migrate(app, 1));
    finish(&mut sim, app, SECS(120));
    let a = &sim.apps[app];
    assert!(a.complete(), "{a:?}");
    assert_eq!((a.received, a.content_ok, a.moves), (n, true, 1));
    assert_eq!(a.at.0, 1, "finished on the set");
    assert!(sim.tunnels.iter().all(|t| t.is_open()));
    let (_, begun, Some(done)) = sim.moves[0] else {
        panic!("{:?}", sim.moves)
    };
    println!(
        "download {n} B: {before} B on the circuit, moved at {at:?} (handover {:?} later), \
         done at {:?}, byte-exact",
        done - begun,
        sim.elapsed()
    );
}

#[test]
fn an_upload_moves_mid_transfer_from_a_circuit_to_a_set() {
    let n = 10_000_000;
    let mut sim = two_tunnels(2);
    let app = sim.open(0, Transfer::Upload(n)).unwrap();
    sim.run_for(SECS(2));
    let before = sim.uploads()[0].0;
    assert!(before > 0 && before < n, "mid-transfer: {before}");
    assert!(sim.migrate(app, 1));
    assert!(sim.run_until(SECS(120), |s| s.uploads() == [(n, true)]
        || s.apps[app].failed));
    assert_eq!(sim.uploads(), [(n, true)], "every byte once, in order");
    assert_eq!(sim.apps[app].moves, 1);
    assert!(!sim.apps[app].failed);
    let (_, begun, done) = sim.moves[0];
    println!(
        "upload {n} B: {before} B through the circuit before the move, handover {:?} \
         after it, done at {:?}",
        done.unwrap() - begun,
        sim.elapsed()
    );
}

#[test]
fn a_stream_half_closed_by_the_client_moves_with_its_unsent_bytes() {
    let n = 3_000_000;
    let mut sim = two_tunnels(3);
    let app = sim.open(0, Transfer::Upload(n)).unwrap();
    // The application has written everything and shut down; up to a send
    // buffer of it is still unsent on the circuit.
    assert!(sim.run_until(SECS(60), |s| s.apps[app].shutdown));
    let (t, id) = sim.apps[app].at;
    let unsent = sim.tunnels[t].send_buffered(id).unwrap();
    assert!(unsent > 0, "bytes wait behind the shutdown");
    assert!(sim.migrate(app, 1));
    assert!(sim.run_until(SECS(60), |s| s.uploads() == [(n, true)]
        && s.node.server.all().all(|d| d.closed.is_some())));
    // The client ended it after its last byte (its END says MISC on the
    // wire, tor-spec §6.3), and the application saw no reset.
    let d = sim.node.server.all().next().unwrap();
    assert!(matches!(d.closed, Some((_, true))), "{:?}", d.closed);
    assert!(!sim.apps[app].failed);
    assert_eq!(sim.apps[app].moves, 1);
    println!("half-closed upload: {unsent} B unsent at the move, all {n} B delivered in order");
}

#[test]
fn a_reset_during_migration_reaches_the_application_and_nothing_else() {
    let mut sim = two_tunnels(4);
    let app = sim.open(0, Transfer::Download(10_000_000)).unwrap();
    sim.run_for(SECS(2));
    assert!(sim.migrate(app, 1));
    // The exit took the migration (the destination is on the set now)...
    assert!(sim.run_until(SECS(10), |s| {
        s.node
            .server
            .dests
            .keys()
            .any(|(e, _)| matches!(e, EdgeKey::Set(_)))
    }));
    assert_eq!(sim.migrating(), 1, "before the handover");
    // ... and its destination resets the connection.
    let (&(edge, id), _) = sim.node.server.dests.iter().next().unwrap();
    let now = sim.now();
    sim.node
        .node
        .exit(edge, now, |m| m.close(id, EndReason::CONNRESET, now))
        .unwrap()
        .unwrap();
    finish(&mut sim, app, SECS(30));
    assert!(sim.apps[app].failed, "a reset: {:?}", sim.apps[app]);
    assert_eq!(sim.migrating(), 0);
    // Both tunnels carry on.
    assert!(sim.tunnels.iter().all(|t| t.is_open()));
    let other = sim.open(1, Transfer::Download(1_000_000)).unwrap();
    finish(&mut sim, other, SECS(60));
    assert!(sim.apps[other].complete());
}

#[test]
fn tunnel_a_killed_before_its_mark_resets_the_stream_and_only_it() {
    let mut sim = two_tunnels(5);
    let moving = sim.open(0, Transfer::Download(10_000_000)).unwrap();
    let staying = sim.open(1, Transfer::Download(10_000_000)).unwrap();
    sim.run_for(SECS(2));
    assert!(sim.migrate(moving, 1));
    // The circuit's middle dies at once: the exit's MARK is lost with it.
    let path = sim.paths_of(0)[0];
    sim.kill(path);
    finish(&mut sim, moving, SECS(30));
    assert!(sim.apps[moving].failed, "{:?}", sim.apps[moving]);
    assert_eq!(sim.apps[moving].moves, 0, "never handed over");
    assert!(!sim.tunnels[0].is_open(), "the circuit is gone");
    finish(&mut sim, staying, SECS(120));
    assert!(sim.apps[staying].complete(), "{:?}", sim.apps[staying]);
    assert!(sim.tunnels[1].is_open());
    // The new id saw END: the exit aborted it, or the client closed it.
    let ended = sim.stream_log.iter().any(|(t, e)| {
        *t == 1
            && matches!(
                e,
                StreamEvent::MigrateFailed { .. } | StreamEvent::Ended { .. }
            )
    });
    assert!(ended);
}

/// What a run did, for comparison: when each stream event and tunnel
/// event came, and what the application got.
fn trace(seed: u64) -> (Duration, usize, usize, u64) {
    let n = 5_000_000;
    let mut sim = two_tunnels(seed);
    let app = sim.open(0, Transfer::Download(n)).unwrap();
    sim.run_for(SECS(1));
    assert!(sim.migrate(app, 1));
    finish(&mut sim, app, SECS(60));
    assert!(sim.apps[app].complete());
    let legs = sim
        .log
        .iter()
        .filter(|(_, _, e)| matches!(e, TunnelEvent::LegBuilt { .. }))
        .count();
    (
        sim.elapsed(),
        sim.stream_log.len(),
        legs,
        sim.apps[app].received,
    )
}

#[test]
fn runs_are_deterministic_by_seed() {
    assert_eq!(trace(7), trace(7));
    assert_ne!(trace(7).0, trace(8).0, "another seed, another run");
}
