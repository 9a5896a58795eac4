//! RelayNode in the exit role (streams through the node, deadlines, first
//! hop refusal, flow control), circuit priority and the memory limit, on
//! the in-memory world of `node_tests`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use super::*;
use crate::ids::EdgeKey;

/// The exit events node `i` gave since the last call.
fn take_exit_events(w: &mut World, i: usize) -> Vec<(EdgeKey, crate::exit::ExitEvent)> {
    let (mine, rest) = std::mem::take(&mut w.exit_events)
        .into_iter()
        .partition(|(n, _, _)| *n == i);
    w.exit_events = rest;
    mine.into_iter().map(|(_, c, e)| (c, e)).collect()
}

/// Open stream `sid` on each client circuit in `clients` (all through node
/// 2, an exit) and answer its Connect: the exit's circuit keys, in order.
fn connected_streams(
    w: &mut World,
    clients: &[usize],
    sid: Option<StreamId>,
    now: Instant,
) -> Vec<EdgeKey> {
    use crate::exit::ExitEvent;
    let mut circs = Vec::new();
    for &n in clients {
        w.clients[n]
            .send_relay(HopNum(2), sid, begin(), now)
            .unwrap();
        w.pump(now);
        let evs = take_exit_events(w, 2);
        let [(circ, ExitEvent::Connect { .. })] = evs.as_slice() else {
            panic!("{evs:?}")
        };
        let addr = std::net::IpAddr::from([192, 0, 2, 7]);
        w.nodes[2]
            .exit(*circ, now, |m| m.connected(sid.unwrap(), addr, 300, now))
            .unwrap()
            .unwrap();
        circs.push(*circ);
    }
    circs
}

/// Three nodes, the last an exit; two client circuits through all three,
/// each with stream `sid` connected: the world, the client circuits and
/// the exit's circuit keys.
fn two_connected_downloads(
    sid: Option<StreamId>,
    now: Instant,
) -> (World, [usize; 2], Vec<EdgeKey>) {
    let mut w = World::new(3);
    w.nodes[2].set_exit(Some(crate::exit::ExitConfig::default()));
    let a = w.circuit(&[0, 1, 2], now);
    let b = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    let circs = connected_streams(&mut w, &[a, b], sid, now);
    w.pump(now);
    (w, [a, b], circs)
}

fn data(bytes: &[u8]) -> AnyRelayMsg {
    tor_cell::relaycell::msg::Data::new(bytes).unwrap().into()
}

/// A stream through three nodes, the last an exit: BEGIN reaches the
/// driver as a Connect, its answer the client as CONNECTED, bytes flow
/// both ways, the client's END reaches the driver as Closed; the exit's
/// channel toward the middle is named ready when its answer waits.
#[test]
fn an_exit_node_carries_a_stream_both_ways() {
    use crate::exit::{ExitConfig, ExitEvent};
    let now = Instant::now();
    let mut w = World::new(3);
    w.nodes[2].set_exit(Some(ExitConfig::default()));
    assert!(w.nodes[2].is_exit());
    let a = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    assert!(w.clients[a].is_built());
    let sid = StreamId::new(7);
    w.clients[a]
        .send_relay(HopNum(2), sid, begin(), now)
        .unwrap();
    w.pump(now);
    let evs = take_exit_events(&mut w, 2);
    let [(circ, ExitEvent::Connect { id, target, .. })] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(Some(*id), sid);
    assert_eq!(*target, crate::stream::Target::hostname("example.com", 80));
    let circ = *circ;
    // The driver has not answered: a connect deadline is filed.
    assert_eq!(
        w.nodes[2].edge_timeout(),
        Some(now + crate::exit::EXIT_CONNECT_TIMEOUT)
    );
    while w.nodes[2].poll_ready().is_some() {}
    let addr = std::net::IpAddr::from([192, 0, 2, 7]);
    w.nodes[2]
        .exit(circ, now, |m| m.connected(sid.unwrap(), addr, 300, now))
        .unwrap()
        .unwrap();
    assert!(
        w.nodes[2].poll_ready().is_some(),
        "CONNECTED waits on a channel"
    );
    assert_eq!(w.nodes[2].edge_timeout(), None);
    w.pump(now);
    assert!(
        matches!(w.stream_msgs[a].as_slice(), [AnyRelayMsg::Connected(_)]),
        "{:?}",
        w.stream_msgs[a]
    );
    // Client -> destination.
    w.clients[a]
        .send_relay(HopNum(2), sid, data(b"hello exit"), now)
        .unwrap();
    w.pump(now);
    let evs = take_exit_events(&mut w, 2);
    assert!(
        matches!(evs.as_slice(), [(_, ExitEvent::Readable { .. })]),
        "{evs:?}"
    );
    let mut buf = [0_u8; 64];
    let n = w.nodes[2]
        .exit(circ, now, |m| m.read(sid.unwrap(), &mut buf, now))
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"hello exit");
    // Destination -> client: 3000 bytes in several DATA cells.
    let body: Vec<u8> = (0..3000_u32).map(|i| (i % 251) as u8).collect();
    let took = w.nodes[2]
        .exit(circ, now, |m| m.write(sid.unwrap(), &body, now))
        .unwrap()
        .unwrap();
    assert_eq!(took, body.len());
    w.pump(now);
    let got: Vec<u8> = w.stream_msgs[a]
        .iter()
        .filter_map(|m| match m {
            AnyRelayMsg::Data(d) => Some(d.as_ref().to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(got, body);
    // The client ends the stream.
    w.clients[a]
        .send_relay(
            HopNum(2),
            sid,
            tor_cell::relaycell::msg::End::new_with_reason(EndReason::DONE).into(),
            now,
        )
        .unwrap();
    w.pump(now);
    let evs = take_exit_events(&mut w, 2);
    assert!(
        matches!(
            evs.as_slice(),
            [(_, ExitEvent::Closed { remote: true, .. })]
        ),
        "{evs:?}"
    );
    assert_eq!(w.nodes[2].exit_stream_count(), 0);
}

/// A connect the driver never answers ends with END TIMEOUT to the client
/// at the deadline; a circuit destroyed under open streams closes them for
/// the driver, and the node forgets the circuit and its timer.
#[test]
fn exit_deadlines_and_destroyed_circuits() {
    use crate::exit::{EXIT_CONNECT_TIMEOUT, ExitConfig, ExitEvent};
    let now = Instant::now();
    let mut w = World::new(3);
    w.nodes[2].set_exit(Some(ExitConfig::default()));
    let a = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    w.clients[a]
        .send_relay(HopNum(2), StreamId::new(1), begin(), now)
        .unwrap();
    w.pump(now);
    assert_eq!(take_exit_events(&mut w, 2).len(), 1);
    let later = now + EXIT_CONNECT_TIMEOUT;
    w.nodes[2].handle_timeout(later - std::time::Duration::from_millis(1));
    w.pump(later);
    assert!(w.stream_msgs[a].is_empty());
    w.nodes[2].handle_timeout(later);
    w.pump(later);
    assert!(
        matches!(w.stream_msgs[a].as_slice(), [AnyRelayMsg::End(e)] if e.reason() == EndReason::TIMEOUT),
        "{:?}",
        w.stream_msgs[a]
    );
    let evs = take_exit_events(&mut w, 2);
    assert!(
        matches!(evs.as_slice(), [(_, ExitEvent::Closed { reason, remote: false, .. })] if *reason == EndReason::TIMEOUT),
        "{evs:?}"
    );
    // Two streams waiting, then the client destroys the circuit.
    for s in [2, 3] {
        w.clients[a]
            .send_relay(HopNum(2), StreamId::new(s), begin(), later)
            .unwrap();
    }
    w.pump(later);
    assert_eq!(take_exit_events(&mut w, 2).len(), 2);
    assert!(w.nodes[2].edge_timeout().is_some());
    w.clients[a].close();
    w.pump(later);
    let evs = take_exit_events(&mut w, 2);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(evs.iter().all(
        |(_, e)| matches!(e, ExitEvent::Closed { reason, remote: true, .. } if *reason == EndReason::DESTROY)
    ));
    assert_eq!(w.nodes[2].circuit_count(), 0);
    assert_eq!(w.nodes[2].edge_timeout(), None);
}

/// As the client's first hop an exit refuses BEGIN (C-tor: no single-hop
/// proxying) with END TORPROTOCOL; a middle relay never sees stream
/// messages for the exit.
#[test]
fn an_exit_refuses_begin_as_first_hop() {
    use crate::exit::ExitConfig;
    let now = Instant::now();
    let mut w = World::new(2);
    w.nodes[0].set_exit(Some(ExitConfig::default()));
    w.nodes[1].set_exit(Some(ExitConfig::default()));
    let one = w.circuit(&[0], now);
    let two = w.circuit(&[0, 1], now);
    w.pump(now);
    w.clients[one]
        .send_relay(HopNum(0), StreamId::new(1), begin(), now)
        .unwrap();
    w.clients[two]
        .send_relay(HopNum(1), StreamId::new(1), begin(), now)
        .unwrap();
    w.pump(now);
    assert!(
        matches!(w.stream_msgs[one].as_slice(), [AnyRelayMsg::End(e)] if e.reason() == EndReason::TORPROTOCOL),
        "{:?}",
        w.stream_msgs[one]
    );
    assert!(take_exit_events(&mut w, 0).is_empty());
    assert_eq!(take_exit_events(&mut w, 1).len(), 1);
}

/// 1 MB from the destination through the exit node with congestion
/// control: the driver writes what the map takes (at most the stream's
/// buffer at a time), the circuit's queue toward the client refills as
/// the channel drains; every byte arrives in order.
#[test]
fn an_exit_node_sends_a_megabyte_under_flow_control() {
    use crate::exit::{ExitConfig, ExitEvent};
    let now = Instant::now();
    let mut w = World::new(3);
    w.nodes[2].set_exit(Some(ExitConfig::default()));
    let a = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    let sid = StreamId::new(9);
    w.clients[a]
        .send_relay(HopNum(2), sid, begin(), now)
        .unwrap();
    w.pump(now);
    let evs = take_exit_events(&mut w, 2);
    let [(circ, ExitEvent::Connect { .. })] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    let circ = *circ;
    let addr = std::net::IpAddr::from([192, 0, 2, 7]);
    w.nodes[2]
        .exit(circ, now, |m| m.connected(sid.unwrap(), addr, 300, now))
        .unwrap()
        .unwrap();
    let body: Vec<u8> = (0..1_000_000_u32).map(|i| (i % 253) as u8).collect();
    let mut off = 0;
    let mut rounds = 0;
    let mut t = now;
    while off < body.len() {
        rounds += 1;
        assert!(rounds < 10_000, "stuck at {off}");
        let took = w.nodes[2]
            .exit(circ, t, |m| m.write(sid.unwrap(), &body[off..], t))
            .unwrap()
            .unwrap();
        assert!(took <= 64 * 1024);
        off += took;
        t += std::time::Duration::from_millis(5);
        w.pump(t);
    }
    let got: Vec<u8> = w.stream_msgs[a]
        .iter()
        .filter_map(|m| match m {
            AnyRelayMsg::Data(d) => Some(d.as_ref().to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "bytes differ");
    assert!(
        rounds >= 16,
        "{rounds} rounds: the stream buffer was not bounded"
    );
    assert!(w.closed[a].is_none());
}

/// Circuit priority on a channel (C-tor's EWMA circuit mux): after a bulk
/// download on circuit `a`, a burst on a fresh circuit `b` leaves the
/// exit's channel before `a`'s new backlog, where round robin would
/// alternate them.
#[test]
fn a_quiet_circuit_goes_before_a_busy_one() {
    let now = Instant::now();
    let sid = StreamId::new(4);
    let (mut w, _, circs) = two_connected_downloads(sid, now);
    // `a` downloads 64 KiB.
    let bulk = vec![1_u8; 64 * 1024];
    let t1 = now + std::time::Duration::from_millis(100);
    w.nodes[2]
        .exit(circs[0], t1, |m| m.write(sid.unwrap(), &bulk, t1))
        .unwrap()
        .unwrap();
    w.pump(t1);
    // Both now have 20 KB (41 cells) to send; pull from the exit's channel.
    let t2 = t1 + std::time::Duration::from_millis(100);
    let burst = vec![2_u8; 20_000];
    for circ in &circs {
        w.nodes[2]
            .exit(*circ, t2, |m| m.write(sid.unwrap(), &burst, t2))
            .unwrap()
            .unwrap();
    }
    let chan = w
        .links
        .iter()
        .find_map(|(x, y)| match (x, y) {
            (End::Node(2, c), _) | (_, End::Node(2, c)) => Some(*c),
            _ => None,
        })
        .unwrap();
    // The channel's priority is its best circuit's: the quiet one's while
    // its cells wait, then the busy one's, none once all left.
    let quiet = w.nodes[2].channel_priority(chan, t2).unwrap();
    let mut order = Vec::new();
    let mut busy = None;
    while let Some(cell) = w.nodes[2].poll_transmit(chan, t2) {
        if order.len() == 41 {
            busy = w.nodes[2].channel_priority(chan, t2);
        }
        order.push(cell.circid());
    }
    assert!(
        busy.unwrap() > quiet + 100.0,
        "busy {busy:?}, quiet {quiet}"
    );
    assert_eq!(w.nodes[2].channel_priority(chan, t2), None);
    assert!(order.len() >= 80, "{}", order.len());
    let first = order[0];
    let run = order.iter().take_while(|&&c| c == first).count();
    assert!(
        run >= 40,
        "the quiet circuit's 41 cells first: run {run} in {order:?}"
    );
    assert!(order[run..].iter().all(|&c| c != first));
}

/// The memory limit (C-tor's MaxMemInQueues): a download whose client
/// does not read fills the exit's queues; when a second circuit's data
/// passes the limit, the circuit with the oldest queued data closes
/// (DESTROY RESOURCELIMIT) and the node is back under the limit.
#[test]
fn over_the_memory_limit_the_oldest_data_goes_first() {
    use crate::exit::ExitEvent;
    let now = Instant::now();
    let sid = StreamId::new(4);
    let (mut w, [a, b], circs) = two_connected_downloads(sid, now);
    assert_eq!(w.nodes[2].queued_bytes(), 0);
    let limit = 100_000;
    w.nodes[2].set_memory_limit(Some(limit));
    // `a`'s destination writes 64 KiB nobody takes from the exit.
    let t1 = now + std::time::Duration::from_millis(10);
    let body = vec![3_u8; 64 * 1024];
    w.nodes[2]
        .exit(circs[0], t1, |m| m.write(sid.unwrap(), &body, t1))
        .unwrap()
        .unwrap();
    let after_a = w.nodes[2].queued_bytes();
    assert!(after_a >= 64 * 1024, "{after_a}");
    assert!(after_a <= limit);
    assert_eq!(w.nodes[2].stats().oom_closed, 0);
    // `b`'s does the same later: over the limit, `a` (older) closes.
    let t2 = t1 + std::time::Duration::from_millis(10);
    w.nodes[2]
        .exit(circs[1], t2, |m| m.write(sid.unwrap(), &body, t2))
        .unwrap()
        .unwrap();
    assert_eq!(w.nodes[2].stats().oom_closed, 1);
    assert!(
        w.nodes[2].queued_bytes() <= limit / 4 * 3,
        "{}",
        w.nodes[2].queued_bytes()
    );
    let evs = take_exit_events(&mut w, 2);
    w.pump(t2);
    let evs: Vec<_> = evs.into_iter().chain(take_exit_events(&mut w, 2)).collect();
    assert!(
        evs.iter().any(|(c, e)| *c == circs[0]
            && matches!(e, ExitEvent::Closed { reason, .. } if *reason == EndReason::DESTROY)),
        "{evs:?}"
    );
    assert!(w.closed[a].is_some(), "a closed");
    assert!(w.closed[b].is_none(), "b goes on");
    // b's data all reach its client.
    let got: usize = w.stream_msgs[b]
        .iter()
        .filter_map(|m| match m {
            AnyRelayMsg::Data(d) => Some(d.as_ref().len()),
            _ => None,
        })
        .sum();
    assert!(got > 0);
}

/// Bytes a circuit's exit stream holds for its destination are as old as
/// when they arrived: a circuit with only such old stream bytes (no cell
/// queued) closes before a newer circuit with queued cells.
#[test]
fn over_the_memory_limit_old_stream_bytes_go_before_newer_cells() {
    let now = Instant::now();
    let sid = StreamId::new(4);
    let (mut w, [a, b], circs) = two_connected_downloads(sid, now);
    let limit = 100_000;
    w.nodes[2].set_memory_limit(Some(limit));
    // t1: `a`'s client sends 60 KB its destination does not take yet.
    let t1 = now + std::time::Duration::from_millis(10);
    let chunk = vec![5_u8; 498];
    for _ in 0..120 {
        w.clients[a]
            .send_relay(HopNum(2), sid, data(&chunk), t1)
            .unwrap();
    }
    w.pump(t1);
    let held = w.nodes[2]
        .exit(circs[0], t1, |m| m.to_dest_buffered(sid.unwrap()))
        .flatten()
        .unwrap();
    assert_eq!(held, 120 * 498);
    assert_eq!(w.nodes[2].stats().oom_closed, 0);
    // t2: `b`'s destination writes 10 KB, its cells wait (not pumped).
    let t2 = t1 + std::time::Duration::from_millis(10);
    let small = vec![7_u8; 10_000];
    w.nodes[2]
        .exit(circs[1], t2, |m| m.write(sid.unwrap(), &small, t2))
        .unwrap()
        .unwrap();
    assert_eq!(w.nodes[2].stats().oom_closed, 0);
    // t3: 40 KB more on `b`: over the limit; `a`'s bytes (t1) are older
    // than `b`'s first cell (t2).
    let t3 = t2 + std::time::Duration::from_millis(10);
    let more = vec![8_u8; 40_000];
    w.nodes[2]
        .exit(circs[1], t3, |m| m.write(sid.unwrap(), &more, t3))
        .unwrap()
        .unwrap();
    assert_eq!(w.nodes[2].stats().oom_closed, 1);
    assert!(w.nodes[2].queued_bytes() <= limit / 4 * 3);
    w.pump(t3);
    assert!(w.closed[a].is_some(), "a (older stream bytes) closed");
    assert!(w.closed[b].is_none(), "b goes on");
}
