//! Live stream migration (Braid proposal 001 §4) through real relay nodes:
//! a stream moves from one circuit to another at the exit node, whose
//! driver hears `Moved` before anything of the new id; the node's token
//! table; a MIGRATE addressed to a relay the circuit goes on past.

use crate::cc::FlowParams;
use crate::exit::{ExitConfig, ExitEvent};
use crate::stream::migrate_wire::MigrateMsg;
use crate::stream::{StreamEvent, StreamFlowMode, StreamMap, StreamMapConfig, Target};

use super::*;

fn migrating_exit() -> ExitConfig {
    ExitConfig {
        migrate: true,
        ..ExitConfig::default()
    }
}

fn client_map(first: u16) -> StreamMap {
    let cfg = StreamMapConfig {
        migratable: true,
        ..StreamMapConfig::default()
    };
    let mode = StreamFlowMode::XonXoff {
        params: FlowParams::default(),
        onion: false,
    };
    StreamMap::with_first_id(cfg, mode, first)
}

/// Move `m`'s messages onto client circuit `c` (to hop 2), the circuits'
/// stream messages into `m`, until nothing moves.
fn exchange(w: &mut World, maps: &mut [(usize, &mut StreamMap)], now: Instant) {
    for _ in 0..100 {
        let mut moved = false;
        for (c, m) in maps.iter_mut() {
            while let Some((id, msg)) = m.poll_transmit(true) {
                moved = true;
                w.clients[*c]
                    .send_relay(HopNum(2), Some(id), msg, now)
                    .unwrap();
            }
        }
        w.pump(now);
        for (c, m) in maps.iter_mut() {
            for (s, msg) in std::mem::take(&mut w.msgs[*c]) {
                moved = true;
                let _ = m.handle_msg(now, s.unwrap(), msg);
            }
        }
        if !moved {
            return;
        }
    }
}

fn read_all(m: &mut StreamMap, id: StreamId, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = m.read(id, &mut buf, now) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn a_stream_moves_between_circuits_at_the_exit_node() {
    let now = Instant::now();
    let mut w = World::new(3);
    w.nodes[2].set_exit(Some(migrating_exit()));
    let (ca, cb) = (w.circuit(&[0, 1, 2], now), w.circuit(&[0, 1, 2], now));
    w.pump(now);
    let (mut ma, mut mb) = (client_map(1), client_map(40));
    let a = ma
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    exchange(&mut w, &mut [(ca, &mut ma)], now);
    let Some((_, edge_a, ExitEvent::Connect { .. })) = w.exit_events.pop() else {
        panic!("{:?}", w.exit_events)
    };
    let addr = std::net::IpAddr::from([192, 0, 2, 7]);
    let node = &mut w.nodes[2];
    node.exit(edge_a, now, |m| m.connected(a, addr, 300, now))
        .unwrap()
        .unwrap();
    node.exit(edge_a, now, |m| m.write(a, b"first-", now))
        .unwrap()
        .unwrap();
    exchange(&mut w, &mut [(ca, &mut ma)], now);
    assert!(ma.migratable(a), "the node gave a token");
    assert_eq!(w.nodes[2].migrate_tokens(), 1);
    // Move it.
    let ticket = ma.migrate_out(a).unwrap();
    let b = mb.migrate_in(&ticket, now).unwrap();
    w.exit_events.clear();
    exchange(&mut w, &mut [(ca, &mut ma), (cb, &mut mb)], now);
    let moved = w.exit_events.iter().position(|(_, e, ev)| {
        *e == edge_a && matches!(ev, ExitEvent::Moved { id, to_id, .. } if *id == a && *to_id == b)
    });
    let Some(i) = moved else {
        panic!("{:?}", w.exit_events)
    };
    let ExitEvent::Moved { to_edge, .. } = w.exit_events[i].2 else {
        unreachable!()
    };
    assert_ne!(to_edge, edge_a);
    assert!(
        w.exit_events[..i].iter().all(|(_, e, _)| *e != to_edge),
        "Moved before any event of the new place"
    );
    // The destination writes on at the new place.
    w.nodes[2]
        .exit(to_edge, now, |m| m.write(b, b"second", now))
        .unwrap()
        .unwrap();
    exchange(&mut w, &mut [(ca, &mut ma), (cb, &mut mb)], now);
    let handover =
        std::iter::from_fn(|| ma.poll_event()).any(|e| e == StreamEvent::MigrateHandover { id: a });
    assert!(handover);
    let h = ma.migrate_finish(a, now).unwrap();
    mb.migrate_join(b, h, now).unwrap();
    assert_eq!(read_all(&mut mb, b, now), b"first-second");
    // Upload on B reaches the destination there.
    mb.write(b, b"up").unwrap();
    exchange(&mut w, &mut [(ca, &mut ma), (cb, &mut mb)], now);
    let mut buf = [0u8; 16];
    let n = w.nodes[2]
        .exit(to_edge, now, |m| m.read(b, &mut buf, now))
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"up");
    // The stream ends: the token is forgotten.
    w.nodes[2]
        .exit(to_edge, now, |m| m.close(b, EndReason::DONE, now))
        .unwrap()
        .unwrap();
    exchange(&mut w, &mut [(ca, &mut ma), (cb, &mut mb)], now);
    assert_eq!(w.nodes[2].migrate_tokens(), 0);
}

#[test]
fn a_migrate_to_a_relay_the_circuit_goes_on_past_is_torprotocol() {
    let now = Instant::now();
    let mut w = World::new(3);
    w.nodes[1].set_exit(Some(migrating_exit()));
    w.nodes[2].set_exit(Some(migrating_exit()));
    let c = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    let msg = MigrateMsg::Migrate(crate::stream::migrate_wire::Migrate {
        token: crate::stream::StreamToken::from_bytes([3; 32]),
        recv_bytes: 0,
        sent_bytes: 0,
        done: false,
    });
    let sid = StreamId::new(9);
    w.clients[c]
        .send_relay(HopNum(1), sid, msg.to_msg(), now)
        .unwrap();
    w.pump(now);
    assert!(
        matches!(w.msgs[c].as_slice(), [(s, AnyRelayMsg::End(e))] if *s == sid && e.reason() == EndReason::TORPROTOCOL),
        "{:?}",
        w.msgs[c]
    );
}
