//! Live stream migration (Braid proposal 001 §4) between two client
//! tunnels and their exit maps ([`super::migrate_harness`]): bytes both
//! ways, refusals, aborts, limits; and, as a property, A's bytes before
//! B's in both directions whatever the interleaving of cells.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use proptest::prelude::*;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, End, EndReason};

use crate::ids::StreamId;
use crate::stream::migrate_wire::{CMD_MIGRATED, Migrate, MigrateMsg};
use crate::stream::{StreamEvent, StreamFlowMode, StreamToken};

use super::migrate::{MAX_IN_PROGRESS, MAX_PER_SECOND, MAX_TOKENS, MigrateTokens};
use super::migrate_harness::{EDGE_A, EDGE_B, MigWorld, down_byte, up_byte};
use super::*;

/// Step until stream `a` on A has its token (it may be migrated).
fn until_migratable(w: &mut MigWorld, a: StreamId) {
    for _ in 0..200 {
        if w.client[0].migratable(a) {
            return;
        }
        w.client_send(0);
        w.deliver_up(0);
        w.exit_send_one(0);
        w.deliver_down(0);
    }
    panic!("never migratable: {:?}", w.client_events);
}

/// Everything the world delivered is what was sent, in order.
fn assert_complete(w: &MigWorld, down: usize, up: usize) {
    let want_down: Vec<u8> = (0..down).map(down_byte).collect();
    let want_up: Vec<u8> = (0..up).map(up_byte).collect();
    assert!(!w.app.failed, "reset: {:?}", w.client_events);
    assert_eq!(w.app.got.len(), down, "{:?}", w.client_events);
    assert!(w.app.got == want_down, "download bytes out of order");
    assert!(w.app.eof);
    let d = w.the_dest();
    assert_eq!(d.got.len(), up);
    assert!(d.got == want_up, "upload bytes out of order");
}

/// The exit's messages on tunnel `i` so far that match `f`.
fn ends_on(w: &MigWorld, i: usize, id: StreamId) -> Vec<EndReason> {
    w.down[i]
        .iter()
        .filter(|(s, _)| *s == id)
        .filter_map(|(_, m)| match m {
            AnyRelayMsg::End(e) => Some(e.reason()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stream_moves_mid_transfer_with_every_byte_once_and_in_order() {
    let (down, up) = (60_000, 40_000);
    let mut w = MigWorld::new(1, true);
    let a = w.open_only(down, up);
    until_migratable(&mut w, a);
    // Data in flight both ways on A.
    w.app_write();
    for _ in 0..40 {
        w.client_send_one(0);
        w.exit_send_one(0);
    }
    for _ in 0..20 {
        w.deliver_up(0);
        w.deliver_down(0);
    }
    w.app_read();
    let before = w.app.got.len();
    assert!(before > 0 && before < down, "mid-transfer: {before}");
    assert!(w.migrate());
    w.settle();
    assert_complete(&w, down, up);
    let (_, b) = w.mig.unwrap();
    assert_eq!(w.app.at, Some((1, b)), "the stream is on B now");
    // The exit's stream and destination are on B; A's tail is gone.
    assert!(w.dest.contains_key(&(EDGE_B, b)));
    assert_eq!(w.exit[0].migration_tails(), 0);
    assert!(w.exit_errors.is_empty(), "{:?}", w.exit_errors);
    assert!(w.client_errors.is_empty(), "{:?}", w.client_errors);
    // Both MARKs crossed; no END on the old id.
    assert!(w.exit_events.iter().any(|(e, ev)| *e == EDGE_A
        && matches!(ev, ExitEvent::Moved { to_edge, to_id, .. } if *to_edge == EDGE_B && *to_id == b)));
}

#[test]
fn a_stream_moves_there_and_back_again_with_its_token() {
    let (down, up) = (200_000, 150_000);
    let mut w = MigWorld::new(16, true);
    let a = w.open_only(down, up);
    until_migratable(&mut w, a);
    w.app_write();
    for _ in 0..30 {
        step(&mut w, 0);
        step(&mut w, 2);
        step(&mut w, 4);
        step(&mut w, 6);
    }
    assert!(w.migrate(), "A to B");
    let (_, b) = w.mig.unwrap();
    // Until B has taken over, been answered, and the exit has the
    // client's MARK, it may not move again.
    for _ in 0..400 {
        if w.client[1].migratable(b) && w.exit[0].migration_tails() == 0 {
            break;
        }
        for op in [1, 3, 5, 7, 0, 2, 4, 6, 8, 9] {
            step(&mut w, op);
        }
    }
    assert!(w.client[1].migratable(b), "{:?}", w.client_events);
    assert!(w.migrate(), "B back to A");
    w.settle();
    assert_complete(&w, down, up);
    assert_eq!(w.tokens.len(), 0);
    let moves = w
        .exit_events
        .iter()
        .filter(|(_, e)| matches!(e, ExitEvent::Moved { .. }))
        .count();
    assert_eq!(moves, 2);
    assert_eq!(w.app.at.unwrap().0, 0, "back on A");
    assert!(w.exit_errors.is_empty() && w.client_errors.is_empty());
}

#[test]
fn the_token_is_forgotten_when_the_stream_ends() {
    let mut w = MigWorld::new(2, true);
    let a = w.open_only(1000, 0);
    until_migratable(&mut w, a);
    assert_eq!(w.tokens.len(), 1);
    w.settle();
    assert_complete(&w, 1000, 0);
    assert_eq!(w.tokens.len(), 0, "forgotten at the stream's end");
}

#[test]
fn an_exit_without_migration_gives_no_token_and_ignores_register() {
    let mut w = MigWorld::new(3, false);
    let a = w.open_only(5000, 0);
    w.settle();
    assert_complete(&w, 5000, 0);
    assert!(!w.client[0].migratable(a));
    assert_eq!(w.tokens.len(), 0);
    assert!(w.exit_errors.is_empty());
}

#[test]
fn an_unknown_token_is_refused_with_misc_and_the_stream_goes_on_on_a() {
    let (down, up) = (30_000, 20_000);
    let mut w = MigWorld::new(4, true);
    let a = w.open_only(down, up);
    until_migratable(&mut w, a);
    assert!(w.migrate());
    // The exit no longer knows the token.
    w.tokens = MigrateTokens::default();
    w.settle();
    let (_, b) = (
        a,
        w.client_events.iter().find_map(|(i, e)| match e {
            StreamEvent::MigrateFailed { id, refused } if *i == 1 => Some((*id, *refused)),
            _ => None,
        }),
    );
    assert_eq!(b.map(|x| x.1), Some(true), "refused: {:?}", w.client_events);
    let b = b.unwrap().0;
    assert_eq!(
        ends_on(&w, 1, b),
        Vec::<EndReason>::new(),
        "delivered already"
    );
    assert!(
        w.exit_events
            .iter()
            .all(|(_, e)| !matches!(e, ExitEvent::Moved { .. }))
    );
    assert_eq!(w.app.at, Some((0, a)), "still on A");
    assert_complete(&w, down, up);
}

/// A MIGRATE the test writes itself on new id `id` of tunnel B.
fn forged_migrate(w: &mut MigWorld, id: u16, token: StreamToken, recv: u64, sent: u64) -> StreamId {
    let id = StreamId::new(id).unwrap();
    let m = MigrateMsg::Migrate(Migrate {
        token,
        recv_bytes: recv,
        sent_bytes: sent,
        done: false,
    });
    w.up[1].push_back((id, m.to_msg()));
    w.deliver_up(1);
    w.exit_send(1);
    id
}

/// The token the exit gave stream `a` of A.
fn token_of(w: &MigWorld, a: StreamId) -> StreamToken {
    w.exit[0].streams[&a]
        .mig
        .as_ref()
        .unwrap()
        .token
        .clone()
        .unwrap()
}

#[test]
fn counts_that_cannot_be_are_refused_with_torprotocol_and_a_is_untouched() {
    let mut w = MigWorld::new(5, true);
    let a = w.open_only(20_000, 0);
    until_migratable(&mut w, a);
    let t = token_of(&w, a);
    let sent = w.exit[0].streams[&a].bytes_out;
    // The client claims to have received more than was sent.
    let b1 = forged_migrate(&mut w, 900, t.clone(), sent + 1, 0);
    assert_eq!(ends_on(&w, 1, b1), [EndReason::TORPROTOCOL]);
    // Or to have sent less than we received (nothing: 0 is fine), or more
    // in flight than flow control allows.
    let b2 = forged_migrate(&mut w, 901, t, 0, 10_000_000);
    assert_eq!(ends_on(&w, 1, b2), [EndReason::TORPROTOCOL]);
    assert!(w.exit[0].streams.contains_key(&a), "A untouched");
    w.settle();
    assert_complete(&w, 20_000, 0);
}

#[test]
fn a_second_migrate_for_a_stream_migrating_is_torprotocol() {
    let mut w = MigWorld::new(6, true);
    let a = w.open_only(20_000, 0);
    until_migratable(&mut w, a);
    let t = token_of(&w, a);
    assert!(w.migrate());
    w.client_send(1);
    w.deliver_up(1);
    let (_, b) = w.mig.unwrap();
    assert!(w.dest.contains_key(&(EDGE_B, b)), "moved");
    // Before the client's MARK on A: a second MIGRATE.
    let c = forged_migrate(&mut w, 700, t, 0, 0);
    assert_eq!(ends_on(&w, 1, c), [EndReason::TORPROTOCOL]);
    w.settle();
    assert_complete(&w, 20_000, 0);
}

#[test]
fn a_mark_without_a_migration_ends_that_stream_with_torprotocol() {
    let mut w = MigWorld::new(7, true);
    let a = w.open_only(20_000, 0);
    until_migratable(&mut w, a);
    w.up[0].push_back((a, MigrateMsg::Mark.to_msg()));
    w.deliver_up(0);
    assert!(
        matches!(w.exit_errors.last(), Some(ExitError::Migration { id, .. }) if *id == a),
        "{:?}",
        w.exit_errors
    );
    w.exit_send(0);
    assert!(ends_on(&w, 0, a).contains(&EndReason::TORPROTOCOL));
    // On an id nobody uses: dropped.
    let n = w.exit[0].stats().dropped_invalid;
    w.up[0].push_back((StreamId::new(4444).unwrap(), MigrateMsg::Mark.to_msg()));
    w.deliver_up(0);
    assert_eq!(w.exit[0].stats().dropped_invalid, n + 1);
}

#[test]
fn the_clients_end_on_the_old_id_before_both_marks_aborts_the_new_one() {
    let mut w = MigWorld::new(8, true);
    let a = w.open_only(50_000, 0);
    until_migratable(&mut w, a);
    assert!(w.migrate());
    w.client_send(1);
    w.deliver_up(1);
    let (_, b) = w.mig.unwrap();
    // The client gives up (END on A, whose MARK it never sent).
    w.up[0].push_back((a, End::new_with_reason(EndReason::MISC).into()));
    w.deliver_up(0);
    w.exit_send(1);
    assert!(
        ends_on(&w, 1, b).contains(&EndReason::MISC),
        "{:?}",
        w.down[1]
    );
    assert!(matches!(
        w.the_dest().closed,
        Some((EndReason::MISC, false))
    ));
}

#[test]
fn our_end_on_the_new_id_before_both_marks_aborts_the_old_one() {
    let mut w = MigWorld::new(14, true);
    let a = w.open_only(50_000, 0);
    until_migratable(&mut w, a);
    assert!(w.migrate());
    w.client_send(1);
    w.deliver_up(1);
    let (_, b) = w.mig.unwrap();
    // The destination resets.
    let now = w.now;
    w.exit[1].close(b, EndReason::CONNRESET, now).unwrap();
    w.route();
    w.exit_send(0);
    w.exit_send(1);
    assert!(ends_on(&w, 1, b).contains(&EndReason::CONNRESET));
    assert!(
        ends_on(&w, 0, a).contains(&EndReason::MISC),
        "{:?}",
        w.down[0]
    );
    w.settle();
    assert!(w.app.failed, "the application sees a reset");
}

#[test]
fn the_clients_end_on_the_new_id_waits_for_the_old_ids_bytes() {
    // The client's END (always MISC on the wire, tor-spec §6.3) on B comes
    // before its last bytes and MARK on A: it takes effect after them.
    let up = 20_000;
    let mut w = MigWorld::new(15, true);
    let a = w.open_only(0, up);
    until_migratable(&mut w, a);
    w.app_write();
    for _ in 0..10 {
        w.client_send_one(0);
    }
    assert!(w.migrate());
    w.client_send(1);
    w.deliver_up(1);
    w.exit_send(0);
    w.deliver_down(0); // MARK: handover, B sends the rest and its END.
    while w.deliver_down(0) {}
    w.exit_send(1);
    while w.deliver_down(1) {}
    w.client_send(1);
    while w.deliver_up(1) {}
    let (_, b) = w.mig.unwrap();
    let join = w.exit[1].streams[&b].mig.as_ref().unwrap().join.as_ref();
    assert!(join.unwrap().end.is_some(), "B's END came before A's MARK");
    assert!(w.dest[&(EDGE_B, b)].closed.is_none(), "held for A's bytes");
    w.client_send(0);
    while w.deliver_up(0) {}
    w.settle();
    let d = w.the_dest();
    assert_eq!(d.got, (0..up).map(up_byte).collect::<Vec<_>>());
    assert!(d.closed.is_some());
    assert!(w.exit_errors.is_empty());
}

#[test]
fn tunnel_a_failing_before_its_mark_resets_the_stream_at_both_ends() {
    let mut w = MigWorld::new(9, true);
    let a = w.open_only(50_000, 10_000);
    until_migratable(&mut w, a);
    assert!(w.migrate());
    w.client_send(1);
    w.deliver_up(1);
    // Tunnel A dies at the exit before the client's MARK, and at the
    // client before the exit's.
    w.exit[0].handle_circuit_closed();
    w.up[0].clear();
    w.down[0].clear();
    w.client[0].handle_circuit_closed();
    w.route();
    w.client_drive();
    w.exit_send(1);
    let (_, b) = w.mig.unwrap();
    assert!(
        ends_on(&w, 1, b).contains(&EndReason::MISC),
        "{:?}",
        w.down[1]
    );
    w.settle();
    assert!(w.app.failed, "the application sees a reset");
    assert!(w.the_dest().closed.is_some());
}

#[test]
fn a_stream_whose_client_stopped_writing_moves_and_ends_after_its_bytes() {
    // The application wrote everything and shut down; its bytes wait
    // unsent when the migration begins (FLAGS bit 0).
    let up = 30_000;
    let mut w = MigWorld::new(10, true);
    let a = w.open_only(0, up);
    until_migratable(&mut w, a);
    w.app_write();
    assert!(w.app.shutdown);
    assert_eq!(w.client[0].send_buffered(a), Some(up));
    assert!(w.migrate());
    w.client_send(1);
    w.deliver_up(1);
    let (_, b) = w.mig.unwrap();
    let client_done = w.exit[1].streams[&b].mig.as_ref().unwrap().client_done;
    assert!(client_done, "MIGRATE said the client was done writing");
    w.settle();
    let d = w.the_dest();
    assert_eq!(d.got.len(), up);
    assert!(d.got == (0..up).map(up_byte).collect::<Vec<_>>());
    // It ended cleanly on B, after the bytes (the client's END DONE and
    // the destination's, once it had them all, cross).
    assert!(
        matches!(d.closed, Some((EndReason::DONE, _))),
        "{:?}",
        d.closed
    );
    assert!(w.exit_errors.is_empty() && w.client_errors.is_empty());
}

#[test]
fn a_stream_whose_destination_stopped_moves_and_ends_after_its_bytes() {
    // The destination wrote everything and its EOF; its bytes wait unsent
    // when the migration begins: MIGRATED says so (FLAGS bit 0) and END
    // DONE follows the last of them on B.
    let down = 30_000;
    let mut w = MigWorld::new(11, true);
    let a = w.open_only(down, 0);
    until_migratable(&mut w, a);
    assert!(w.the_dest().eof_sent);
    assert!(w.migrate());
    w.client_send(1);
    w.deliver_up(1);
    w.exit_send(1);
    let migrated = w.down[1]
        .iter()
        .find_map(|(_, m)| match MigrateMsg::parse(m) {
            Some(Ok(MigrateMsg::Migrated(m))) => Some(m),
            _ => None,
        });
    let m = migrated.expect("MIGRATED on B");
    assert!(m.done, "the destination was done");
    assert_eq!(u8::from(w.down[1][0].1.cmd()), CMD_MIGRATED);
    w.settle();
    assert_complete(&w, down, 0);
    let (_, b) = w.mig.unwrap();
    let done = w.client_events.iter().any(|(i, e)| {
        *i == 1
            && matches!(e, StreamEvent::Ended { id, reason, remote: true } if *id == b
            && *reason == crate::stream::CloseReason::End(EndReason::DONE))
    });
    assert!(done, "{:?}", w.client_events);
}

#[test]
fn a_migrate_where_we_are_the_first_hop_is_torprotocol() {
    let cfg = ExitConfig {
        migrate: true,
        client_first_hop: true,
        ..ExitConfig::default()
    };
    let mut m = ExitStreamMap::with_seed(cfg, StreamFlowMode::Windowed, 1);
    let id = StreamId::new(3).unwrap();
    let msg = MigrateMsg::Migrate(Migrate {
        token: StreamToken::from_bytes([1; 32]),
        recv_bytes: 0,
        sent_bytes: 0,
        done: false,
    });
    let e = m.handle_msg(id, msg.to_msg(), std::time::Instant::now());
    assert!(matches!(e, Err(ExitError::Migration { .. })), "{e:?}");
    let (sid, end) = m.poll_transmit(true).unwrap();
    assert_eq!(sid, id);
    assert!(matches!(end, AnyRelayMsg::End(e) if e.reason() == EndReason::TORPROTOCOL));
    assert!(m.take_migrate_requests().is_empty());
}

#[test]
fn at_most_4096_tokens() {
    let mut t = MigrateTokens::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let at = (EDGE_A, StreamId::new(1).unwrap());
    let mut kept = Vec::new();
    for _ in 0..MAX_TOKENS {
        kept.push(t.issue(&mut rng, at).unwrap());
    }
    assert!(
        t.issue(&mut rng, at).is_none(),
        "a REGISTER beyond gets none"
    );
    t.forget(&kept[7]);
    assert!(t.issue(&mut rng, at).is_some());
    assert_eq!(t.len(), MAX_TOKENS);
}

use rand::SeedableRng as _;

/// `n` connected, registered streams on map A and their tokens, driven
/// by hand (no client).
fn streams_with_tokens(n: u16) -> (MigWorld, Vec<(StreamId, StreamToken)>) {
    let mut w = MigWorld::new(12, true);
    let mut out = Vec::new();
    let begin = |i: u16| {
        let t = crate::stream::Target::hostname(format!("x-{i}-0.test"), 80);
        AnyRelayMsg::Begin(t.begin_msg(BeginFlags::empty()).unwrap())
    };
    for i in 1..=n {
        let id = StreamId::new(i).unwrap();
        w.up[0].push_back((id, begin(i)));
        w.up[0].push_back((id, MigrateMsg::Register.to_msg()));
        w.deliver_up(0);
        w.deliver_up(0);
        out.push((id, token_of(&w, id)));
    }
    (w, out)
}

#[test]
fn sixteen_migrations_a_second_and_64_in_progress_per_tunnel() {
    let n = u16::try_from(MAX_IN_PROGRESS + 1).unwrap();
    let (mut w, streams) = streams_with_tokens(n);
    let mut refused = Vec::new();
    for (k, (id, t)) in streams.iter().enumerate() {
        if k > 0 && k % MAX_PER_SECOND == 0 {
            w.advance(Duration::from_millis(1001));
        }
        let b = StreamId::new(1000 + id.get()).unwrap();
        w.up[1].push_back((
            b,
            MigrateMsg::Migrate(Migrate {
                token: t.clone(),
                recv_bytes: 0,
                sent_bytes: 0,
                done: false,
            })
            .to_msg(),
        ));
        w.deliver_up(1);
        if matches!(w.exit_errors.last(), Some(ExitError::TooManyMigrations { id }) if *id == b) {
            refused.push(k);
        }
    }
    assert_eq!(refused, [MAX_IN_PROGRESS], "only the 65th, in progress");
    assert_eq!(w.exit[1].migrations_in_progress(), MAX_IN_PROGRESS);
    // Seventeen within a second: the seventeenth is refused.
    let (mut w, streams) = streams_with_tokens(u16::try_from(MAX_PER_SECOND + 1).unwrap());
    for (id, t) in &streams {
        let b = StreamId::new(1000 + id.get()).unwrap();
        w.up[1].push_back((
            b,
            MigrateMsg::Migrate(Migrate {
                token: t.clone(),
                recv_bytes: 0,
                sent_bytes: 0,
                done: false,
            })
            .to_msg(),
        ));
        w.deliver_up(1);
    }
    assert!(matches!(
        w.exit_errors.as_slice(),
        [ExitError::TooManyMigrations { .. }]
    ));
    w.exit_send(1);
    let last = StreamId::new(1000 + u16::try_from(MAX_PER_SECOND + 1).unwrap()).unwrap();
    assert_eq!(ends_on(&w, 1, last), [EndReason::RESOURCELIMIT]);
}

/// Steps a proptest picks from.
fn step(w: &mut MigWorld, op: u8) {
    match op % 10 {
        0 => {
            w.client_send_one(0);
        }
        1 => {
            w.client_send_one(1);
        }
        2 => {
            w.exit_send_one(0);
        }
        3 => {
            w.exit_send_one(1);
        }
        4 => {
            w.deliver_up(0);
        }
        5 => {
            w.deliver_up(1);
        }
        6 => {
            w.deliver_down(0);
        }
        7 => {
            w.deliver_down(1);
        }
        8 => {
            w.app_read();
        }
        _ => {
            w.app_write();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the interleaving of cells on the two tunnels, and wherever
    /// in the transfer the migration starts: the application reads every
    /// downloaded byte once and in order, the destination every uploaded
    /// byte (A's before B's, §4.2 step 4), and the stream ends on B.
    #[test]
    fn a_bytes_always_come_before_b_bytes(
        seed in 0u64..1000,
        down in 0usize..40_000,
        up in 0usize..40_000,
        before in proptest::collection::vec(any::<u8>(), 0..400),
        after in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut w = MigWorld::new(seed, true);
        let a = w.open_only(down, up);
        until_migratable(&mut w, a);
        for op in before {
            step(&mut w, op);
        }
        let moved = w.migrate();
        for op in after {
            step(&mut w, op);
        }
        w.settle();
        prop_assert!(w.exit_errors.is_empty(), "{:?}", w.exit_errors);
        prop_assert!(w.client_errors.is_empty(), "{:?}", w.client_errors);
        assert_complete(&w, down, up);
        // Taken over by B; or still on A, which ended the stream (or
        // refused) before the exit saw MIGRATE.
        match w.app.at {
            Some((1, b)) => prop_assert!(moved && w.mig.map(|m| m.1) == Some(b)),
            at => prop_assert_eq!(at, Some((0, a))),
        }
        prop_assert_eq!(w.exit[0].migration_tails(), 0);
    }
}
