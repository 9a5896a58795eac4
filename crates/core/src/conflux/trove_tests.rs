//! Every 2026 Conflux TROVE that concerns the [`ConfluxSet`] itself, on
//! both ends (a client set and an exit set linked to each other in
//! memory, the test carrying each message across).
//!
//! C-tor references are to the mirror `syphyr/tor`, branch `main` at
//! `817b7105f2` (2025-12-16), which predates the 2026 fixes: each names
//! the function where the flaw was and what the fix does. The tests of
//! the other TROVEs and of the drivers are in `hostile_tests`
//! (`trove_2026_004_*`, `trove_2026_025_*`), `relay::trove_tests` (the
//! Braid exit) and braid-sim's `tests/trove.rs` (the client tunnel).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginDir, Connected, Data};

use super::*;
use crate::ids::{LegId, StreamId};

fn sid() -> Option<StreamId> {
    StreamId::new(5)
}

fn data(n: usize) -> AnyRelayMsg {
    Data::new(&vec![0x42; n]).unwrap().into()
}

/// A client set and an exit set, linked over `n` legs: `legs[i]` is
/// (client leg, exit leg) of leg i.
struct Pair {
    client: ConfluxSet,
    exit: ConfluxSet,
    legs: Vec<(LegId, LegId)>,
    now: Instant,
}

impl Pair {
    fn new(n: usize) -> Self {
        Self::with(n, false)
    }

    /// `n` legs; `resumable`: both ends keep what they send until
    /// acknowledged (Braid proposal 001).
    fn with(n: usize, resumable: bool) -> Self {
        let now = Instant::now();
        let nonce = ConfluxNonce::from_bytes([0x3c; NONCE_LEN]);
        let mut client = ConfluxSet::new_client(nonce.clone(), ConfluxConfig::client());
        let mut exit = ConfluxSet::new_exit(nonce, ConfluxConfig::exit());
        if resumable {
            client.enable_resumption(ResumeParams::default());
            exit.enable_resumption(ResumeParams::default());
        }
        let mut legs = Vec::new();
        for _ in 0..n {
            let c = client.add_leg(now).unwrap();
            let (_, link) = client.poll_transmit().unwrap();
            let AnyRelayMsg::ConfluxLink(link) = link else {
                panic!("{link:?}")
            };
            let e = exit.accept_link(&link, false, now).unwrap();
            legs.push((c, e));
        }
        let later = now + Duration::from_millis(30);
        while let Some((e, linked)) = exit.poll_transmit() {
            let c = legs.iter().find(|(_, x)| *x == e).unwrap().0;
            client.handle_msg(c, None, linked, later).unwrap();
        }
        while let Some((c, ack)) = client.poll_transmit() {
            let e = legs.iter().find(|(x, _)| *x == c).unwrap().1;
            exit.handle_msg(e, None, ack, later + Duration::from_millis(30))
                .unwrap();
        }
        assert!(client.is_linked() && exit.is_linked());
        Self {
            client,
            exit,
            legs,
            now: later,
        }
    }

    /// The set of one end, and the leg of index `i` on it.
    fn end(&mut self, client: bool, i: usize) -> (&mut ConfluxSet, LegId) {
        if client {
            (&mut self.client, self.legs[i].0)
        } else {
            (&mut self.exit, self.legs[i].1)
        }
    }

    /// Send `msg` from one end on leg `i`, deliver it (and its SWITCH) at
    /// the other end.
    fn carry(&mut self, from_client: bool, i: usize, msg: AnyRelayMsg) -> Result<(), ConfluxError> {
        let now = self.now;
        let (from, leg) = self.end(from_client, i);
        let out = from.send_on(leg, sid(), msg)?;
        let (to, leg) = self.end(!from_client, i);
        for (s, m) in out.into_msgs() {
            to.handle_msg(leg, s, m, now)?;
        }
        Ok(())
    }
}

/// TROVE-2026-008 (BEGIN_DIR on legs), the client's side: a client never
/// puts a directory stream on a set (the set refuses to sequence
/// BEGIN_DIR: the tunnel has no other way to a leg), and a BEGIN_DIR
/// that arrives on a linked leg is the exit's protocol violation: the
/// set closes with `BeginDirOnLeg` and delivers nothing more.
///
/// C-tor: BEGIN_DIR reached `connection_exit_begin_conn` on a linked
/// circuit and attached a directory stream to one leg only (relay.c
/// `handle_relay_msg`, `RELAY_COMMAND_BEGIN_DIR`, no `circ->conflux`
/// check at `817b7105f2`); the fix refuses BEGIN_DIR on a Conflux
/// circuit. The exit's side: `relay::trove_tests`.
#[test]
fn trove_2026_008_begin_dir_on_a_leg_client() {
    let mut p = Pair::new(2);
    let (c, leg) = p.end(true, 0);
    let e = c
        .send_on(leg, sid(), BeginDir::default().into())
        .unwrap_err();
    assert_eq!(
        e,
        ConfluxError::NotMultiplexed {
            cmd: tor_cell::relaycell::RelayCmd::BEGIN_DIR
        }
    );
    assert_eq!(c.last_seq_sent(), 0, "nothing was sequenced");
    // Data before it is delivered; the BEGIN_DIR closes the set.
    p.carry(false, 0, data(10)).unwrap();
    let now = p.now;
    let (c, leg) = p.end(true, 1);
    let e = c
        .handle_msg(leg, sid(), BeginDir::default().into(), now)
        .unwrap_err();
    assert_eq!(e, ConfluxError::BeginDirOnLeg { leg });
    assert!(e.is_protocol_violation());
    assert!(c.is_closed());
    assert!(
        c.poll_delivered().is_none(),
        "a closed set delivers nothing more"
    );
    assert_eq!(
        c.handle_msg(leg, sid(), data(1), now).unwrap_err(),
        ConfluxError::Closed
    );
}

/// TROVE-2026-010 (reorder accounting when a queue is cleared), both
/// ends: whatever closes a set (a protocol violation, a leg lost with
/// data, a local close), its reorder queue is emptied at once and its
/// byte count goes to zero with it, so that what the driver reports and
/// what a node's memory limit counts is what the set still holds. While
/// it is open, the count is exactly what the held messages were charged,
/// through gaps, fills and takes.
///
/// C-tor: `conflux_free_` (conflux_pool.c) frees the out-of-order queue's
/// messages without taking their cost off `total_ooo_q_bytes`
/// (conflux.c), which `conflux_handle_oom` and the relay's OOM check
/// (`cell_queues_check_size`) trust; the fix subtracts each freed
/// message. Braid's set kept its queue (and its count) until the set was
/// dropped, which at an exit is after every leg's DESTROY went out: a
/// closed set's memory counted against the node's limit, and the node
/// closed other circuits for it (`relay::trove_tests`).
#[test]
fn trove_2026_010_reorder_accounting_when_a_queue_is_cleared() {
    for client_side in [true, false] {
        for how in 0..3 {
            let mut p = Pair::with(2, how == 2);
            // Message 1 goes on leg 0 and is lost to the receiver;
            // messages 2..=21 arrive on leg 1 and wait for it.
            let (from, leg0) = p.end(!client_side, 0);
            let _lost = from.send_on(leg0, sid(), data(400)).unwrap();
            for _ in 0..20 {
                p.carry(!client_side, 1, data(400)).unwrap();
            }
            let (to, _) = p.end(client_side, 0);
            let held = to.reorder_bytes();
            assert_eq!(to.reorder_waiting(), 20);
            assert!(held >= 20 * 400, "{held}");
            assert!(to.poll_delivered().is_none());
            let now = p.now;
            let (to, leg1) = p.end(client_side, 1);
            match how {
                // The peer breaks a rule on the other leg.
                0 => {
                    let e = to
                        .handle_msg(leg1, sid(), BeginDir::default().into(), now)
                        .unwrap_err();
                    assert!(e.is_protocol_violation());
                }
                // The leg that carried message 1 closes with it in flight:
                // the gap can never fill.
                1 => {
                    let (to, leg0) = p.end(client_side, 0);
                    let e = to
                        .leg_closed(leg0, LegClosedInfo::default(), now)
                        .unwrap_err();
                    assert!(matches!(
                        e,
                        ConfluxError::LegLost {
                            rule: LegLossRule::GapCannotFill,
                            ..
                        }
                    ));
                }
                // A local close (the node out of memory), of a resumable
                // set.
                _ => to.close(ConfluxError::OutOfMemory),
            }
            let (to, _) = p.end(client_side, 0);
            assert!(to.is_closed());
            assert_eq!(to.reorder_bytes(), 0, "side {client_side} case {how}");
            assert_eq!(to.reorder_waiting(), 0);
            assert!(to.reorder_peak_bytes() >= held, "the peak is history");
            assert!(to.poll_delivered().is_none());
            // A resumable sender's retransmit buffer goes with its set.
            let (from, _) = p.end(!client_side, 0);
            if how == 2 {
                assert!(from.retransmit_bytes() >= 21 * 400);
                from.close(ConfluxError::Closed);
            }
            assert_eq!(from.retransmit_bytes(), 0);
        }
    }
    // Open, the count follows every message exactly: each held DATA is
    // charged its bytes and one fixed overhead.
    let mut p = Pair::new(2);
    let (from, leg0) = p.end(true, 0);
    let first = from.send_on(leg0, sid(), data(100)).unwrap();
    p.carry(true, 1, data(200)).unwrap();
    let overhead = p.exit.reorder_bytes() - 200;
    for n in [300, 498] {
        p.carry(true, 1, data(n)).unwrap();
    }
    let cost = |n: usize| n + overhead;
    assert_eq!(p.exit.reorder_bytes(), cost(200) + cost(300) + cost(498));
    let leg = p.legs[0].1;
    let now = p.now;
    for (s, m) in first.into_msgs() {
        p.exit.handle_msg(leg, s, m, now).unwrap();
    }
    let mut left = cost(100) + cost(200) + cost(300) + cost(498);
    assert_eq!(p.exit.reorder_bytes(), left);
    for n in [100, 200, 300, 498] {
        let d = p.exit.poll_delivered().unwrap();
        assert!(matches!(&d.msg, AnyRelayMsg::Data(x) if x.as_ref().len() == n));
        left -= cost(n);
        assert_eq!(p.exit.reorder_bytes(), left);
    }
    assert_eq!(left, 0);
}

/// TROVE-2026-017 (a SWITCH that fails to send), both ends: the set hands
/// the driver a SWITCH and the message after it for one leg; if they
/// cannot be sent (the leg's circuit closed under it, its channel gone)
/// the driver reports the leg closed, and the set closes at once, before
/// anything else is sent: the message's sequence number is spent, so
/// going on over another leg would leave the peer a gap it can never fill
/// (prop 329 §2.4.3: the current sending leg lost). It closes even if the
/// leg had nothing in flight and another leg has sent more.
///
/// C-tor: `conflux_decide_circ_for_send` (conflux.c) moved `curr_leg` and
/// called `conflux_send_switch_command` (conflux_cell.c), which ignores
/// the result of `relay_send_command_from_edge` and returns true, so the
/// caller then wrote the cell to a circuit the failed send had closed
/// and freed; the fix returns the failure and closes the set
/// (`conflux_mark_all_for_close`) without sending.
#[test]
fn trove_2026_017_switch_that_fails_to_send() {
    for client_side in [true, false] {
        let mut p = Pair::new(3);
        // Leg 2 runs ahead, then leg 0 sends, then the switch to leg 1.
        for _ in 0..5 {
            p.carry(client_side, 2, data(50)).unwrap();
        }
        p.carry(client_side, 0, data(50)).unwrap();
        let (set, leg1) = p.end(client_side, 1);
        let out = set.send_on(leg1, sid(), data(50)).unwrap();
        assert_eq!(out.leg, leg1);
        assert!(out.switch.is_some(), "the leg changed: a SWITCH first");
        assert_eq!(set.current_leg(), Some(leg1));
        // The SWITCH does not go out: the leg is gone, nothing in flight.
        let now = p.now;
        let (set, leg1) = p.end(client_side, 1);
        let e = set
            .leg_closed(
                leg1,
                LegClosedInfo {
                    inflight: 0,
                    sendme_inc: 31,
                },
                now,
            )
            .unwrap_err();
        assert_eq!(
            e,
            ConfluxError::LegLost {
                leg: leg1,
                rule: LegLossRule::CurrentSendingLeg
            },
            "side {client_side}"
        );
        assert!(set.is_closed());
        let mut chooser = StickyLowestRtt;
        let r = set.send(&mut chooser, &[], sid(), data(1), now);
        assert_eq!(r.unwrap_err(), ConfluxError::Closed);
        let (leg0, leg2) = (p.end(client_side, 0).1, p.end(client_side, 2).1);
        let set = p.end(client_side, 0).0;
        assert_eq!(
            set.send_on(leg0, sid(), data(1)).unwrap_err(),
            ConfluxError::Closed
        );
        assert_eq!(
            set.send_on(leg2, sid(), data(1)).unwrap_err(),
            ConfluxError::Closed
        );
    }
}

/// TROVE-2026-025 (LINK after a stream), the set's own check on the exit
/// end: a LINK on a circuit that already carried a stream is refused
/// whatever its nonce (a new set or a live one), and the set is
/// unchanged. The exit node's test: `relay::trove_tests`.
#[test]
fn trove_2026_025_link_after_a_stream_exit_set() {
    let mut p = Pair::new(1);
    p.carry(true, 0, Connected::new_empty().into()).unwrap();
    let mut client = ConfluxSet::new_client(
        ConfluxNonce::from_bytes([0x3c; NONCE_LEN]),
        ConfluxConfig::client(),
    );
    client.add_leg(p.now).unwrap();
    let (_, link) = client.poll_transmit().unwrap();
    let AnyRelayMsg::ConfluxLink(link) = link else {
        panic!()
    };
    let e = p.exit.accept_link(&link, true, p.now).unwrap_err();
    assert_eq!(e, ConfluxError::LinkOnUsedCircuit);
    assert!(e.is_protocol_violation());
    assert_eq!(p.exit.linked_legs(), 1);
    assert!(p.exit.poll_transmit().is_none(), "no LINKED");
    // A brand-new set too.
    let mut fresh = ConfluxSet::new_exit(
        ConfluxNonce::from_bytes([0x3c; NONCE_LEN]),
        ConfluxConfig::exit(),
    );
    assert_eq!(
        fresh.accept_link(&link, true, p.now).unwrap_err(),
        ConfluxError::LinkOnUsedCircuit
    );
    assert_eq!(fresh.legs().count(), 0);
    // Without streams the same LINK links.
    assert!(p.exit.accept_link(&link, false, p.now).is_ok());
    assert_eq!(
        p.exit.poll_transmit().map(|(_, m)| m.cmd()),
        Some(tor_cell::relaycell::RelayCmd::CONFLUX_LINKED)
    );
}
