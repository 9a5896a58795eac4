//! The client side of live stream migration (Braid proposal 001 §4)
//! against hand-written exit messages: what the exit may and may not send,
//! what the two maps give each other, and where the bytes go. The two
//! sides together are tested in `exit::migrate_tests`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, Connected, Data, EndReason};

use crate::cc::FlowParams;
use crate::ids::StreamId;

use super::migrate_wire::{CMD_MIGRATE, CMD_REGISTER, MigrateMsg, Migrated, StreamToken};
use super::*;

fn cfg(migratable: bool) -> StreamMapConfig {
    StreamMapConfig {
        migratable,
        ..StreamMapConfig::default()
    }
}

fn cc() -> StreamFlowMode {
    StreamFlowMode::XonXoff {
        params: FlowParams::default(),
        onion: false,
    }
}

fn data(b: &[u8]) -> AnyRelayMsg {
    AnyRelayMsg::Data(Data::new(b).unwrap())
}

fn connected() -> AnyRelayMsg {
    AnyRelayMsg::Connected(Connected::new_with_addr("192.0.2.80".parse().unwrap(), 300))
}

fn token() -> StreamToken {
    StreamToken::from_bytes([7; 32])
}

/// Everything `m` sends now, as raw commands.
fn sent(m: &mut StreamMap) -> Vec<(StreamId, AnyRelayMsg)> {
    std::iter::from_fn(|| m.poll_transmit(true)).collect()
}

fn cmds(v: &[(StreamId, AnyRelayMsg)]) -> Vec<u8> {
    v.iter()
        .map(|(_, m)| u8::from(tor_cell::relaycell::RelayMsg::cmd(m)))
        .collect()
}

fn events(m: &mut StreamMap) -> Vec<StreamEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// An open stream on a migratable map with its token.
fn open_with_token(now: Instant) -> (StreamMap, StreamId) {
    let mut m = StreamMap::with_first_id(cfg(true), cc(), 1);
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    assert_eq!(
        cmds(&sent(&mut m)),
        [1, CMD_REGISTER],
        "REGISTER right after BEGIN"
    );
    m.handle_msg(now, id, connected()).unwrap();
    assert!(!m.migratable(id), "not before the token");
    m.handle_msg(now, id, MigrateMsg::Token(token()).to_msg())
        .unwrap();
    assert!(m.migratable(id));
    events(&mut m);
    (m, id)
}

#[test]
fn no_register_and_no_migration_toward_an_exit_without_braidmigrate() {
    let now = Instant::now();
    let mut m = StreamMap::with_first_id(cfg(false), cc(), 1);
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    assert_eq!(cmds(&sent(&mut m)), [1], "a BEGIN and nothing else");
    m.handle_msg(now, id, connected()).unwrap();
    // A TOKEN from such an exit is an unknown command: ignored.
    m.handle_msg(now, id, MigrateMsg::Token(token()).to_msg())
        .unwrap();
    assert!(!m.migratable(id));
    let (mut a, aid) = open_with_token(now);
    let ticket = a.migrate_out(aid).unwrap();
    assert!(m.migrate_in(&ticket, now).is_err());
}

#[test]
fn a_token_comes_once_after_register_and_connected() {
    let now = Instant::now();
    let (mut m, id) = open_with_token(now);
    let e = m
        .handle_msg(now, id, MigrateMsg::Token(token()).to_msg())
        .unwrap_err();
    assert!(e.is_protocol_violation(), "{e}");
    assert!(cmds(&sent(&mut m)).contains(&3), "END on that stream");
}

/// We gave up on a stream before its CONNECTED (a BEGIN timeout): the
/// exit's CONNECTED and the STREAM_TOKEN that answers our REGISTER may
/// still come, once each, and are no violation; a second TOKEN is (the
/// soak's BEGIN timeouts met it as a protocol violation).
#[test]
fn a_token_in_flight_when_we_close_is_accepted_once() {
    let now = Instant::now();
    let mut m = StreamMap::with_first_id(cfg(true), cc(), 1);
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    assert_eq!(cmds(&sent(&mut m)), [1, CMD_REGISTER]);
    m.close(id, EndReason::TIMEOUT, now).unwrap();
    assert!(cmds(&sent(&mut m)).contains(&3), "our END");
    m.handle_msg(now, id, connected()).unwrap();
    m.handle_msg(now, id, MigrateMsg::Token(token()).to_msg())
        .unwrap();
    let e = m
        .handle_msg(now, id, MigrateMsg::Token(token()).to_msg())
        .unwrap_err();
    assert!(matches!(e, StreamError::ClosedStream { .. }), "{e}");
}

#[test]
fn a_mark_without_a_migration_ends_the_stream_with_torprotocol() {
    let now = Instant::now();
    let (mut m, id) = open_with_token(now);
    let e = m
        .handle_msg(now, id, MigrateMsg::Mark.to_msg())
        .unwrap_err();
    assert!(e.to_string().contains("§4.3"), "{e}");
    assert_eq!(
        events(&mut m),
        [StreamEvent::Ended {
            id,
            reason: CloseReason::End(EndReason::TORPROTOCOL),
            remote: false
        }]
    );
}

#[test]
fn the_old_id_sends_nothing_new_and_its_writes_wait() {
    let now = Instant::now();
    let (mut a, id) = open_with_token(now);
    a.write(id, b"before").unwrap();
    assert_eq!(cmds(&sent(&mut a)), [2]);
    let ticket = a.migrate_out(id).unwrap();
    assert_eq!((ticket.sent_bytes(), ticket.recv_bytes()), (6, 0));
    assert_eq!(a.send_space(id), Some(0));
    assert_eq!(a.write(id, b"after").unwrap(), 0);
    assert!(sent(&mut a).is_empty());
    assert!(a.migrate_out(id).is_err(), "once");
    // The new id: MIGRATE and nothing else until it takes over.
    let mut b = StreamMap::with_first_id(cfg(true), cc(), 100);
    let bid = b.migrate_in(&ticket, now).unwrap();
    assert_eq!(cmds(&sent(&mut b)), [CMD_MIGRATE]);
    // A refusal (END before MIGRATED): the old id sends again.
    b.handle_msg(
        now,
        bid,
        AnyRelayMsg::End(tor_cell::relaycell::msg::End::new_with_reason(
            EndReason::MISC,
        )),
    )
    .unwrap();
    let ev = events(&mut b);
    assert!(
        ev.contains(&StreamEvent::MigrateFailed {
            id: bid,
            refused: true
        }),
        "{ev:?}"
    );
    a.migrate_target_failed(id, true, now).unwrap();
    assert!(a.send_space(id).unwrap() > 0);
    a.write(id, b"after").unwrap();
    assert_eq!(cmds(&sent(&mut a)), [2]);
    assert!(a.migratable(id), "and may try again");
}

/// A migration whose old id `a` got `old` from the exit and MARK, whose
/// new id got MIGRATED and `new`: the old id's bytes come first.
#[test]
fn the_old_ids_bytes_are_read_first_and_the_new_id_counts_only_its_own() {
    let now = Instant::now();
    let (mut a, aid) = open_with_token(now);
    a.handle_msg(now, aid, data(b"one-")).unwrap();
    let ticket = a.migrate_out(aid).unwrap();
    let mut b = StreamMap::with_first_id(cfg(true), cc(), 100);
    let bid = b.migrate_in(&ticket, now).unwrap();
    sent(&mut b);
    // The exit answered on B and sent new bytes there before A's last
    // bytes and its MARK came.
    let migrated = Migrated {
        recv_bytes: 0,
        sent_bytes: 8,
        done: false,
    };
    b.handle_msg(now, bid, MigrateMsg::Migrated(migrated).to_msg())
        .unwrap();
    b.handle_msg(now, bid, data(b"three")).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        b.read(bid, &mut buf, now).unwrap_err().is_would_block(),
        "held"
    );
    a.handle_msg(now, aid, data(b"two-")).unwrap();
    a.handle_msg(now, aid, MigrateMsg::Mark.to_msg()).unwrap();
    assert_eq!(
        events(&mut a).last(),
        Some(&StreamEvent::MigrateHandover { id: aid })
    );
    assert_eq!(
        cmds(&sent(&mut a)),
        [super::migrate_wire::CMD_MARK],
        "ours follows"
    );
    // The application had read "one-" on A.
    let n = a.read(aid, &mut buf[..4], now).unwrap();
    assert_eq!(&buf[..n], b"one-");
    let h = a.migrate_finish(aid, now).unwrap();
    assert_eq!((h.recv_len(), h.send_len()), (4, 0));
    assert!(a.state(aid).is_none() || a.recv_buffered(aid) == Some(0));
    // A late XON on the old id is dropped quietly; DATA is not.
    let xon = AnyRelayMsg::Xon(tor_cell::relaycell::flow_ctrl::Xon::new(
        tor_cell::relaycell::flow_ctrl::FlowCtrlVersion::V0,
        tor_cell::relaycell::flow_ctrl::XonKBpsEwma::Unlimited,
    ));
    a.handle_msg(now, aid, xon).unwrap();
    assert!(a.handle_msg(now, aid, data(b"x")).is_err());
    b.migrate_join(bid, h, now).unwrap();
    let mut got = Vec::new();
    while let Ok(n) = b.read(bid, &mut buf, now) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"two-three");
    assert_eq!(b.state(bid), Some(StreamState::Open));
}

#[test]
fn data_on_the_old_id_after_its_mark_is_a_violation() {
    let now = Instant::now();
    let (mut a, aid) = open_with_token(now);
    a.migrate_out(aid).unwrap();
    a.handle_msg(now, aid, MigrateMsg::Mark.to_msg()).unwrap();
    let e = a.handle_msg(now, aid, data(b"late")).unwrap_err();
    assert!(e.to_string().contains("after its MIGRATE_MARK"), "{e}");
}

#[test]
fn the_new_id_takes_migrated_not_connected_and_checks_the_counts() {
    let now = Instant::now();
    let (mut a, aid) = open_with_token(now);
    a.write(aid, b"12345").unwrap();
    sent(&mut a);
    a.handle_msg(now, aid, data(b"abc")).unwrap();
    let ticket = a.migrate_out(aid).unwrap();
    let new = |first| {
        let mut b = StreamMap::with_first_id(cfg(true), cc(), first);
        let id = b.migrate_in(&ticket, now).unwrap();
        sent(&mut b);
        (b, id)
    };
    let (mut b, bid) = new(100);
    assert!(b.handle_msg(now, bid, connected()).is_err(), "CONNECTED");
    // The exit received more than we sent, or sent less than we received.
    for (recv, sent_) in [(6, 3), (5, 2)] {
        let (mut b, bid) = new(200);
        let m = Migrated {
            recv_bytes: recv,
            sent_bytes: sent_,
            done: false,
        };
        assert!(
            b.handle_msg(now, bid, MigrateMsg::Migrated(m).to_msg())
                .is_err()
        );
        let ev = events(&mut b);
        assert!(
            ev.contains(&StreamEvent::MigrateFailed {
                id: bid,
                refused: false
            }),
            "an exit that answers and lies aborts: {ev:?}"
        );
    }
    // MIGRATED's count of bytes sent on A must be what A got by its MARK.
    let (mut b, bid) = new(300);
    let ok = Migrated {
        recv_bytes: 5,
        sent_bytes: 9,
        done: true,
    };
    b.handle_msg(now, bid, MigrateMsg::Migrated(ok).to_msg())
        .unwrap();
    a.handle_msg(now, aid, MigrateMsg::Mark.to_msg()).unwrap();
    let h = a.migrate_finish(aid, now).unwrap();
    let e = b.migrate_join(bid, h, now).unwrap_err();
    assert!(e.is_protocol_violation(), "3 bytes came on A, not 9: {e}");
}

#[test]
fn the_new_id_gives_up_after_the_connect_timeout_and_the_old_goes_on() {
    let now = Instant::now();
    let (mut a, aid) = open_with_token(now);
    let ticket = a.migrate_out(aid).unwrap();
    let mut b = StreamMap::with_first_id(cfg(true), cc(), 100);
    let bid = b.migrate_in(&ticket, now).unwrap();
    sent(&mut b);
    let later = now + Duration::from_secs(11);
    b.handle_timeout(later);
    assert!(events(&mut b).contains(&StreamEvent::MigrateFailed {
        id: bid,
        refused: true
    }));
    a.migrate_target_failed(aid, true, later).unwrap();
    assert!(a.migratable(aid));
}
