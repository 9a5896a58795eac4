//! RelayNode as a Conflux exit (prop 329): braid-core's client circuits
//! and a client-role ConfluxSet link legs through the in-memory world of
//! `node_tests` and carry streams both ways; the hostile cases close what
//! they must and nothing else.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use tor_cell::relaycell::msg::{ConfluxSwitch, Data};

use super::*;
use crate::conflux::{ConfluxConfig, ConfluxNonce, ConfluxSet, Handled};
use crate::exit::{ExitConfig, ExitEvent};
use crate::ids::{EdgeKey, LegId, SetKey};
use crate::relay::node::ConfluxExitConfig;

/// The exit is node 3; legs run 0-1-3 and 0-2-3.
const EXIT: usize = 3;
const LAST: HopNum = HopNum(2);

/// A client's Conflux set over world circuits.
struct Client {
    set: ConfluxSet,
    /// Client circuit index by leg.
    legs: Vec<(LegId, usize)>,
    /// Messages of the set's streams delivered in order.
    delivered: Vec<(StreamId, AnyRelayMsg)>,
    /// How far into each circuit's messages we have read.
    seen: Vec<usize>,
}

impl Client {
    fn new() -> Self {
        let nonce = ConfluxNonce::from_bytes([7; 32]);
        Client {
            set: ConfluxSet::new_client(nonce, ConfluxConfig::client()),
            legs: Vec::new(),
            delivered: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn circ_of(&self, leg: LegId) -> usize {
        self.legs.iter().find(|(l, _)| *l == leg).unwrap().1
    }

    /// Send what the set has for its legs.
    fn flush(&mut self, w: &mut World, now: Instant) {
        while let Some((leg, msg)) = self.set.poll_transmit() {
            let c = self.circ_of(leg);
            w.clients[c].send_relay(LAST, None, msg, now).unwrap();
        }
    }

    /// A new leg on a new circuit through `middle`, its LINK sent.
    fn add_leg(&mut self, w: &mut World, middle: usize, now: Instant) -> usize {
        let c = w.circuit(&[0, middle, EXIT], now);
        w.pump(now);
        assert!(w.clients[c].is_built());
        let leg = self.set.add_leg(now).unwrap();
        self.legs.push((leg, c));
        self.flush(w, now);
        c
    }

    /// Take what the circuits got into the set, answer (LINKED_ACK).
    fn take(&mut self, w: &mut World, now: Instant) {
        for &(leg, c) in &self.legs.clone() {
            while self.seen.len() <= c {
                self.seen.push(0);
            }
            let new: Vec<_> = w.msgs[c][self.seen[c]..].to_vec();
            self.seen[c] = w.msgs[c].len();
            for (stream, msg) in new {
                match self.set.handle_msg(leg, stream, msg, now) {
                    Ok(Handled::Consumed) => {}
                    Ok(Handled::NotConflux { .. }) => {}
                    Err(e) => panic!("client set: {e}"),
                }
            }
        }
        while let Some(d) = self.set.poll_delivered() {
            self.delivered.push((d.stream.unwrap(), d.msg));
        }
        self.flush(w, now);
    }

    /// Send a stream message on `leg` through the set (sequenced).
    fn send_on(
        &mut self,
        w: &mut World,
        leg: LegId,
        sid: StreamId,
        msg: AnyRelayMsg,
        now: Instant,
    ) {
        let out = self.set.send_on(leg, Some(sid), msg).unwrap();
        let c = self.circ_of(out.leg);
        for (s, m) in out.into_msgs() {
            w.clients[c].send_relay(LAST, s, m, now).unwrap();
        }
    }

    fn leg(&self, i: usize) -> LegId {
        self.legs[i].0
    }
}

/// Five nodes, node 3 a Conflux exit.
fn world(cfg: ConfluxExitConfig) -> World {
    let mut w = World::new(5);
    w.nodes[EXIT].set_exit(Some(ExitConfig::default()));
    w.nodes[EXIT].set_conflux(Some(cfg));
    w
}

/// A world with a client set of two linked legs.
fn linked(cfg: ConfluxExitConfig, now: Instant) -> (World, Client) {
    let mut w = world(cfg);
    let mut c = Client::new();
    c.add_leg(&mut w, 1, now);
    c.add_leg(&mut w, 2, now);
    w.pump(now);
    // LINKED_ACK 20 ms after LINKED: the exit's first RTT of each leg (a
    // zero RTT counts as none, and ECF places DATA by RTT).
    let later = now + Duration::from_millis(20);
    c.take(&mut w, later);
    w.pump(later);
    assert!(c.set.is_linked(), "the client's set links");
    (w, c)
}

fn exit_events(w: &mut World) -> Vec<(EdgeKey, ExitEvent)> {
    let (mine, rest) = std::mem::take(&mut w.exit_events)
        .into_iter()
        .partition(|(n, _, _)| *n == EXIT);
    w.exit_events = rest;
    mine.into_iter().map(|(_, e, ev)| (e, ev)).collect()
}

fn the_set(w: &World) -> SetKey {
    let sets: Vec<SetKey> = w.nodes[EXIT].sets().collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    sets[0]
}

/// Open stream `sid` through the set (BEGIN on leg 0) and connect it.
fn open_stream(w: &mut World, c: &mut Client, sid: StreamId, now: Instant) -> EdgeKey {
    let leg = c.leg(0);
    c.send_on(w, leg, sid, begin(), now);
    w.pump(now);
    let evs = exit_events(w);
    let [(edge, ExitEvent::Connect { id, .. })] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(*id, sid);
    assert!(matches!(edge, EdgeKey::Set(_)), "{edge:?}");
    let edge = *edge;
    let addr = std::net::IpAddr::from([192, 0, 2, 7]);
    w.nodes[EXIT]
        .exit(edge, now, |m| m.connected(sid, addr, 300, now))
        .unwrap()
        .unwrap();
    w.pump(now);
    c.take(w, now);
    assert!(
        c.delivered
            .iter()
            .any(|(s, m)| *s == sid && matches!(m, AnyRelayMsg::Connected(_))),
        "{:?}",
        c.delivered
    );
    edge
}

fn sid(n: u16) -> StreamId {
    StreamId::new(n).unwrap()
}

#[test]
fn two_legs_link_and_carry_a_download_in_order() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let set = the_set(&w);
    let f = w.nodes[EXIT].set_figures(set).unwrap();
    assert_eq!(f.legs, 2);
    assert_eq!(f.scheduler, "ecf", "HIGH_THROUGHPUT picks ECF");
    assert_eq!(w.nodes[EXIT].stats().sets_created, 1);
    assert_eq!(w.nodes[EXIT].stats().legs_linked, 2);
    let s = sid(5);
    let edge = open_stream(&mut w, &mut c, s, now);
    assert_eq!(edge, EdgeKey::Set(set));
    // 200 KB from the destination, written as the map takes it.
    let body: Vec<u8> = (0..200_000_u32).map(|i| (i % 253) as u8).collect();
    let mut off = 0;
    let mut t = now;
    for _ in 0..10_000 {
        if off < body.len() {
            off += w.nodes[EXIT]
                .exit(edge, t, |m| m.write(s, &body[off..], t))
                .unwrap()
                .unwrap();
        }
        w.pump(t);
        c.take(&mut w, t);
        t += Duration::from_millis(1);
        let got: usize = c
            .delivered
            .iter()
            .map(|(_, m)| match m {
                AnyRelayMsg::Data(d) => d.as_ref().len(),
                _ => 0,
            })
            .sum();
        if got == body.len() {
            break;
        }
    }
    let got: Vec<u8> = c
        .delivered
        .iter()
        .filter_map(|(st, m)| match m {
            AnyRelayMsg::Data(d) if *st == s => Some(d.as_ref().to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "bytes arrive in order through the set");
    let f = w.nodes[EXIT].set_figures(set).unwrap();
    assert!(f.last_seq_sent > 400, "{f:?}");
}

#[test]
fn an_upload_over_both_legs_reaches_the_destination_in_order() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let s = sid(9);
    let edge = open_stream(&mut w, &mut c, s, now);
    let mut sent = Vec::new();
    for i in 0..40_u32 {
        let chunk: Vec<u8> = (0..400).map(|j| ((i * 7 + j) % 251) as u8).collect();
        let leg = c.leg((i % 2) as usize);
        c.send_on(&mut w, leg, s, Data::new(&chunk).unwrap().into(), now);
        sent.extend_from_slice(&chunk);
    }
    w.pump(now);
    let mut got = Vec::new();
    let mut buf = vec![0_u8; 64 * 1024];
    let n = w.nodes[EXIT]
        .exit(edge, now, |m| m.read(s, &mut buf, now))
        .unwrap()
        .unwrap();
    got.extend_from_slice(&buf[..n]);
    assert_eq!(got, sent);
    let f = w.nodes[EXIT].set_figures(the_set(&w)).unwrap();
    assert_eq!(f.reorder_bytes, 0);
}

/// TROVE-2026-025 (LINK after a stream), the exit's side: LINK must come
/// before any stream on its circuit. C-tor's `conflux_process_link`
/// (conflux_pool.c, `syphyr/tor` main at 817b7105f2) checked nothing and
/// `validate_circ_has_no_streams` only logged a BUG and forgot the
/// circuit's streams when it linked; the fix refuses the LINK. The
/// client's side: `conflux::hostile_tests`, braid-sim `tests/trove.rs`.
#[test]
fn trove_2026_025_link_after_a_stream_exit() {
    let now = Instant::now();
    let mut w = world(ConfluxExitConfig::default());
    let a = w.circuit(&[0, 1, EXIT], now);
    w.pump(now);
    w.clients[a]
        .send_relay(LAST, Some(sid(3)), begin(), now)
        .unwrap();
    w.pump(now);
    let mut c = Client::new();
    let leg = c.set.add_leg(now).unwrap();
    c.legs.push((leg, a));
    c.flush(&mut w, now);
    w.pump(now);
    assert!(
        matches!(w.closed[a], Some(CloseReason::Destroyed { .. })),
        "{:?}",
        w.closed[a]
    );
    assert_eq!(w.nodes[EXIT].stats().links_refused, 1);
    assert_eq!(w.nodes[EXIT].sets().count(), 0);
}

#[test]
fn link_at_a_hop_that_is_not_the_last_is_refused() {
    // C-tor `conflux_validate_source_hop`: a leg ends at the exit.
    let now = Instant::now();
    let mut w = world(ConfluxExitConfig::default());
    let a = w.circuit(&[0, EXIT, 1], now);
    w.pump(now);
    let mut c = Client::new();
    let leg = c.set.add_leg(now).unwrap();
    let (_, link) = c.set.poll_transmit().unwrap();
    c.legs.push((leg, a));
    w.clients[a].send_relay(HopNum(1), None, link, now).unwrap();
    w.pump(now);
    assert_eq!(w.nodes[EXIT].stats().links_refused, 1);
    assert!(w.closed[a].is_some());
}

#[test]
fn a_leg_beyond_max_legs_is_refused_and_the_set_goes_on() {
    let now = Instant::now();
    let cfg = ConfluxExitConfig {
        max_legs: 2,
        ..ConfluxExitConfig::default()
    };
    let (mut w, mut c) = linked(cfg, now);
    let third = c.add_leg(&mut w, 4, now);
    w.pump(now);
    assert!(w.closed[third].is_some(), "the third leg is refused");
    assert_eq!(w.nodes[EXIT].stats().links_refused, 1);
    let f = w.nodes[EXIT].set_figures(the_set(&w)).unwrap();
    assert_eq!(f.legs, 2);
    assert!(!f.closed);
}

#[test]
fn a_second_link_on_a_leg_closes_the_set_and_ends_each_stream_once() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let edge = open_stream(&mut w, &mut c, sid(4), now);
    let _ = open_stream(&mut w, &mut c, sid(6), now);
    // A LINK again on leg 0's circuit.
    let circ = c.legs[0].1;
    let nonce = ConfluxNonce::from_bytes([7; 32]);
    let mut other = ConfluxSet::new_client(nonce, ConfluxConfig::client());
    other.add_leg(now).unwrap();
    let (_, link) = other.poll_transmit().unwrap();
    w.clients[circ].send_relay(LAST, None, link, now).unwrap();
    w.pump(now);
    let evs = exit_events(&mut w);
    let closed: Vec<StreamId> = evs
        .iter()
        .filter_map(|(e, ev)| match ev {
            ExitEvent::Closed { id, .. } if *e == edge => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2, "each stream ends once: {evs:?}");
    assert!(w.closed[c.legs[0].1].is_some());
    assert!(w.closed[c.legs[1].1].is_some(), "every leg closes");
    assert_eq!(w.nodes[EXIT].sets().count(), 0, "the set is forgotten");
    assert_eq!(w.nodes[EXIT].queued_bytes(), 0);
}

#[test]
fn a_switch_on_a_circuit_that_is_no_leg_closes_it_alone() {
    let now = Instant::now();
    let (mut w, _c) = linked(ConfluxExitConfig::default(), now);
    let a = w.circuit(&[0, 4, EXIT], now);
    w.pump(now);
    w.clients[a]
        .send_relay(LAST, None, ConfluxSwitch::new(5).into(), now)
        .unwrap();
    w.pump(now);
    assert!(
        matches!(w.closed[a], Some(CloseReason::Destroyed { .. })),
        "{:?}",
        w.closed[a]
    );
    assert!(!w.nodes[EXIT].set_figures(the_set(&w)).unwrap().closed);
}

#[test]
fn an_idle_leg_lost_leaves_the_set_and_a_new_leg_joins_it() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let s = sid(8);
    let edge = open_stream(&mut w, &mut c, s, now);
    // Everything so far went on leg 0 (BEGIN, CONNECTED): leg 1 is idle.
    let idle = c.legs[1].1;
    let set = the_set(&w);
    let exit_circ = w.nodes[EXIT].set_figures(set).unwrap().circuits[1];
    w.clients[idle].close();
    w.pump(now);
    assert_eq!(w.nodes[EXIT].set_of(exit_circ), None);
    let f = w.nodes[EXIT].set_figures(set).unwrap();
    assert_eq!(f.legs, 1);
    assert!(!f.closed, "an idle leg's loss loses no data");
    c.set
        .leg_closed(c.leg(1), crate::conflux::LegClosedInfo::default(), now)
        .unwrap();
    c.legs.truncate(1);
    // A replacement joins the live set.
    c.add_leg(&mut w, 4, now);
    w.pump(now);
    c.take(&mut w, now);
    w.pump(now);
    let f = w.nodes[EXIT].set_figures(set).unwrap();
    assert_eq!(f.legs, 2);
    // The stream goes on.
    let took = w.nodes[EXIT]
        .exit(edge, now, |m| m.write(s, b"still here", now))
        .unwrap()
        .unwrap();
    assert_eq!(took, 10);
    w.pump(now);
    c.take(&mut w, now);
    assert!(c.delivered.iter().any(
        |(st, m)| *st == s && matches!(m, AnyRelayMsg::Data(d) if d.as_ref() == b"still here")
    ));
}

#[test]
fn a_leg_whose_linked_ack_never_comes_is_closed() {
    let now = Instant::now();
    let cfg = ConfluxExitConfig {
        linked_ack_timeout: Duration::from_secs(5),
        ..ConfluxExitConfig::default()
    };
    let mut w = world(cfg);
    let a = w.circuit(&[0, 1, EXIT], now);
    w.pump(now);
    let mut c = Client::new();
    let leg = c.set.add_leg(now).unwrap();
    c.legs.push((leg, a));
    c.flush(&mut w, now);
    w.pump(now);
    // We never take the LINKED (so no LINKED_ACK goes).
    assert_eq!(
        w.nodes[EXIT].edge_timeout(),
        Some(now + Duration::from_secs(5))
    );
    let later = now + Duration::from_secs(5);
    w.nodes[EXIT].handle_timeout(later);
    w.pump(later);
    assert!(
        matches!(w.closed[a], Some(CloseReason::Destroyed { .. })),
        "{:?}",
        w.closed[a]
    );
    assert_eq!(w.nodes[EXIT].sets().count(), 0);
    assert_eq!(w.nodes[EXIT].edge_timeout(), None);
}

#[test]
fn a_set_over_the_memory_limit_closes_and_others_go_on() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let s = sid(2);
    let edge = open_stream(&mut w, &mut c, s, now);
    // A plain circuit beside it, with a stream.
    let plain = w.circuit(&[0, 4, EXIT], now);
    w.pump(now);
    w.clients[plain]
        .send_relay(LAST, Some(sid(1)), begin(), now)
        .unwrap();
    w.pump(now);
    let evs = exit_events(&mut w);
    let [(plain_edge, ExitEvent::Connect { .. })] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    let plain_edge = *plain_edge;
    w.nodes[EXIT].set_memory_limit(Some(40_000));
    // The client never takes its cells: the destination's bytes pile up
    // in the set's map (up to its 64 KiB stream buffer).
    let bulk = vec![0x5a_u8; 64 * 1024];
    let later = now + Duration::from_secs(1);
    let _ = w.nodes[EXIT].exit(edge, later, |m| m.write(s, &bulk, later));
    assert_eq!(w.nodes[EXIT].stats().oom_sets_closed, 1);
    w.pump(later);
    assert_eq!(w.nodes[EXIT].sets().count(), 0);
    assert!(w.closed[c.legs[0].1].is_some());
    assert!(w.closed[plain].is_none(), "the plain circuit goes on");
    assert!(w.nodes[EXIT].exit_streams(plain_edge).is_some());
    assert!(w.nodes[EXIT].queued_bytes() < 40_000);
}

/// A client that opens a sequence gap on one leg (a SWITCH far ahead) and
/// piles DATA behind it: once the reorder queue holds a quarter of its
/// limit the exit holds that leg's SENDMEs, the client's congestion window
/// stops it, and the queue stays far under its limit (a client that sent
/// past its window would meet the hard limit, tested on the set:
/// `reorder_queue_full_closes_with_resource_limit`). The set's memory
/// comes back when it closes, and another circuit goes on.
#[test]
fn a_gap_with_data_piled_behind_it_is_held_back() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let s = sid(3);
    open_stream(&mut w, &mut c, s, now);
    let plain = w.circuit(&[0, 4, EXIT], now);
    w.pump(now);
    let set = the_set(&w);
    let circ = c.legs[1].1;
    // Jump leg 1 ahead by 100 messages that never come, then pile DATA.
    w.clients[circ]
        .send_relay(LAST, None, ConfluxSwitch::new(100).into(), now)
        .unwrap();
    let chunk = [0x42_u8; 498];
    let mut peak = 0;
    let mut sent = 0;
    for _ in 0..20_000 {
        // The client's circuit window: it moves only with SENDMEs.
        if w.clients[circ].can_send_data(LAST) {
            w.clients[circ]
                .send_relay(LAST, Some(s), Data::new(&chunk).unwrap().into(), now)
                .unwrap();
            sent += 1;
        }
        w.pump(now);
        peak = peak.max(w.nodes[EXIT].queued_bytes());
    }
    let f = w.nodes[EXIT].set_figures(set).unwrap();
    assert!(!f.closed, "held, not closed");
    let limit = crate::conflux::ReorderSizer::initial_limit().max_bytes;
    assert!(
        f.reorder_bytes > limit / 4 && f.reorder_peak_bytes < limit * 3 / 4,
        "reorder {} peak {} of {limit}",
        f.reorder_bytes,
        f.reorder_peak_bytes
    );
    assert!(sent < 3000, "the client was stopped after {sent} cells");
    assert!(!w.clients[circ].can_send_data(LAST));
    assert!(peak < limit, "peak {peak}");
    // The set closes (the client ends it): every byte comes back.
    w.clients[c.legs[0].1].close();
    w.clients[circ].close();
    w.pump(now);
    assert!(w.nodes[EXIT].set_figures(set).is_none_or(|f| f.closed));
    assert_eq!(w.nodes[EXIT].queued_bytes(), 0);
    assert!(w.closed[plain].is_none(), "another circuit goes on");
}

/// SWITCHes with no data between them beyond C-tor's habit close the set
/// (prop 329 §4.2.3).
#[test]
fn a_switch_flood_closes_the_set() {
    let now = Instant::now();
    let (mut w, c) = linked(ConfluxExitConfig::default(), now);
    let set = the_set(&w);
    let circ = c.legs[0].1;
    // The first moves the leg on; the rest are empty, one past the limit.
    for _ in 0..crate::conflux::MAX_EMPTY_SWITCHES + 2 {
        w.clients[circ]
            .send_relay(LAST, None, ConfluxSwitch::new(1).into(), now)
            .unwrap();
    }
    w.pump(now);
    assert!(w.nodes[EXIT].set_figures(set).is_none(), "the set is gone");
    assert!(w.closed[circ].is_some() && w.closed[c.legs[1].1].is_some());
}

/// A LINK carrying an extension the exit never asked for (the shape of
/// C-tor's TROVE-2026-032, an unrequested CC_RESPONSE): unknown types are
/// skipped, the leg links as a plain one, nothing breaks; a malformed list
/// closes that circuit alone. The other half of the exit's side, a
/// CC_RESPONSE in a CREATE2: `trove_2026_032_unrequested_cc_response_exit`
/// (`relay::trove_tests`, with C-tor's function).
#[test]
fn trove_2026_032_unrequested_link_extension_exit() {
    use tor_cell::relaycell::RelayCmd;
    use tor_cell::relaycell::msg::Unrecognized;
    let now = Instant::now();
    let mut w = world(ConfluxExitConfig::default());
    let with_tail = |w: &mut World, c: usize, tail: &[u8]| {
        let mut client = Client::new();
        client.set.add_leg(now).unwrap();
        let (_, link) = client.set.poll_transmit().unwrap();
        let mut body = Vec::new();
        tor_cell::relaycell::RelayMsg::encode_onto(link, &mut body).unwrap();
        body.extend_from_slice(tail);
        let msg = AnyRelayMsg::Unrecognized(Unrecognized::new(RelayCmd::CONFLUX_LINK, body));
        w.clients[c].send_relay(LAST, None, msg, now).unwrap();
        w.pump(now);
    };
    let a = w.circuit(&[0, 1, EXIT], now);
    w.pump(now);
    // One extension of an unknown type 2, six bytes.
    with_tail(&mut w, a, &[1, 2, 6, 0, 0, 0, 1, 0, 30]);
    assert!(w.closed[a].is_none());
    assert_eq!(w.nodes[EXIT].stats().legs_linked, 1);
    assert!(
        w.msgs[a]
            .iter()
            .any(|(_, m)| matches!(m, AnyRelayMsg::ConfluxLinked(_))),
        "a plain LINKED: {:?}",
        w.msgs[a]
    );
    assert!(!w.nodes[EXIT].set_figures(the_set(&w)).unwrap().resumable);
    // A list running past the body.
    let b = w.circuit(&[0, 2, EXIT], now);
    w.pump(now);
    with_tail(&mut w, b, &[3, 2, 90]);
    assert!(w.closed[b].is_some(), "closed");
    assert!(w.closed[a].is_none(), "the other leg goes on");
}

// Every 2026 Conflux TROVE, the exit's side.
#[path = "trove_tests.rs"]
mod trove_tests;
