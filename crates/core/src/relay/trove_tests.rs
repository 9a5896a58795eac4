//! Every 2026 Conflux TROVE from the Braid exit's side: braid-core's
//! client circuits and a client-role `ConfluxSet` against a [`RelayNode`]
//! with the exit and Conflux exit roles, in the in-memory world of
//! `node_tests` (the helpers are `node_conflux_tests`').
//!
//! C-tor references are to the mirror `syphyr/tor`, branch `main` at
//! `817b7105f2` (2025-12-16), which predates the 2026 fixes: each test
//! names the function where the flaw was and what the fix does. Also
//! here under other names: TROVE-2026-025 is
//! `trove_2026_025_link_after_a_stream_exit` and one half of
//! TROVE-2026-032 `trove_2026_032_unrequested_link_extension_exit`
//! (`node_conflux_tests`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use tor_cell::relaycell::msg::{BeginDir, Data, End as EndMsg};

use super::*;

/// A client set with `nonce`.
fn client_with(nonce: [u8; 32]) -> Client {
    Client {
        set: ConfluxSet::new_client(ConfluxNonce::from_bytes(nonce), ConfluxConfig::client()),
        legs: Vec::new(),
        delivered: Vec::new(),
        seen: Vec::new(),
    }
}

/// Closed events of `edge`'s streams in `evs`, by stream.
fn closed_of(evs: &[(EdgeKey, ExitEvent)], edge: EdgeKey) -> Vec<StreamId> {
    let mut v: Vec<StreamId> = evs
        .iter()
        .filter_map(|(e, ev)| match ev {
            ExitEvent::Closed { id, .. } if *e == edge => Some(*id),
            _ => None,
        })
        .collect();
    v.sort_by_key(|s| s.get());
    v
}

/// The exit's channels toward the middles of `c`'s legs.
fn leg_channels(w: &World, c: &Client) -> Vec<(usize, ChanKey)> {
    let middles: Vec<usize> = c
        .legs
        .iter()
        .map(|(_, circ)| if *circ == c.legs[0].1 { 1 } else { 2 })
        .collect();
    w.links
        .iter()
        .filter_map(|(a, b)| match (a, b) {
            (End::Node(x, cx), End::Node(y, _)) if *x == EXIT && middles.contains(y) => {
                Some((EXIT, *cx))
            }
            (End::Node(y, _), End::Node(x, cx)) if *x == EXIT && middles.contains(y) => {
                Some((EXIT, *cx))
            }
            _ => None,
        })
        .collect()
}

/// A plain circuit through node 4 with stream `s` connected and
/// `cells` DATA cells of the client's waiting at the exit for the
/// destination (the driver does not read them): the bystander the
/// memory limit could pick.
fn bystander(w: &mut World, s: StreamId, cells: usize, now: Instant) -> (usize, EdgeKey) {
    let plain = w.circuit(&[0, 4, EXIT], now);
    w.pump(now);
    w.clients[plain]
        .send_relay(LAST, Some(s), begin(), now)
        .unwrap();
    w.pump(now);
    let evs = exit_events(w);
    let [(edge, ExitEvent::Connect { .. })] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    let edge = *edge;
    let addr = std::net::IpAddr::from([192, 0, 2, 9]);
    w.nodes[EXIT]
        .exit(edge, now, |m| m.connected(s, addr, 300, now))
        .unwrap()
        .unwrap();
    w.pump(now);
    for _ in 0..cells {
        w.clients[plain]
            .send_relay(LAST, Some(s), Data::new(&[0x11; 498]).unwrap().into(), now)
            .unwrap();
    }
    w.pump(now);
    (plain, edge)
}

/// TROVE-2026-004 (nonce compared in full), the exit's side: a LINK whose
/// nonce differs from a live set's in one byte (first, middle or last)
/// makes a set of its own; it never joins the other client's set, whose
/// streams it would then see. A set is found by its whole nonce.
///
/// C-tor: the client compared one byte of LINKED
/// (`conflux_process_linked`, conflux_pool.c, `sizeof(*link->nonce)`);
/// the exit's pools are `digest256map`s keyed by all 32 bytes
/// (`unlinked_pool_get`, `linked_pool_get`), which is what Braid's
/// `RelayNode::link` does too (`set_nonces`, then `ConfluxNonce::ct_eq`).
/// The client's side: `conflux::hostile_tests`.
#[test]
fn trove_2026_004_nonce_compared_in_full_exit() {
    let now = Instant::now();
    for pos in [0, 15, 31] {
        let mut w = world(ConfluxExitConfig::default());
        let mut a = client_with([7; 32]);
        a.add_leg(&mut w, 1, now);
        w.pump(now);
        a.take(&mut w, now);
        w.pump(now);
        assert!(a.set.is_linked());
        let mut near = [7; 32];
        near[pos] ^= 0x01;
        let mut b = client_with(near);
        b.add_leg(&mut w, 2, now);
        w.pump(now);
        b.take(&mut w, now);
        w.pump(now);
        assert!(b.set.is_linked(), "b's LINKED carries b's own nonce");
        assert_eq!(w.nodes[EXIT].stats().sets_created, 2, "byte {pos}");
        assert_eq!(w.nodes[EXIT].stats().links_refused, 0);
        let sets: Vec<SetKey> = w.nodes[EXIT].sets().collect();
        assert_eq!(sets.len(), 2);
        for s in &sets {
            assert_eq!(w.nodes[EXIT].set_figures(*s).unwrap().legs, 1);
        }
        // The same stream id on each: two streams of two sets.
        let ea = open_stream(&mut w, &mut a, sid(3), now);
        let eb = open_stream(&mut w, &mut b, sid(3), now);
        assert_ne!(ea, eb);
    }
}

/// TROVE-2026-008 (BEGIN_DIR on legs), the exit's side: a BEGIN_DIR on a
/// linked leg never opens a directory stream, even at an exit that serves
/// directories: the set closes (a protocol violation), every leg gets its
/// DESTROY, each of its streams ends once. A BEGIN_DIR on a plain circuit
/// beside it is served as usual.
///
/// C-tor: `handle_relay_msg` (relay.c) passes BEGIN_DIR to
/// `connection_exit_begin_conn` with no `circ->conflux` check, so a
/// directory stream was attached to one leg's `n_streams` and not kept in
/// the set's stream lists; the fix refuses BEGIN_DIR on a Conflux circuit.
/// The client's side: `conflux::trove_tests`.
#[test]
fn trove_2026_008_begin_dir_on_a_leg_exit() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    w.nodes[EXIT].set_exit(Some(ExitConfig {
        serves_directory: true,
        ..ExitConfig::default()
    }));
    let edge = open_stream(&mut w, &mut c, sid(4), now);
    let plain = w.circuit(&[0, 4, EXIT], now);
    w.pump(now);
    for (circ, s) in [(c.legs[1].1, sid(9)), (c.legs[0].1, sid(10))] {
        w.clients[circ]
            .send_relay(LAST, Some(s), BeginDir::default().into(), now)
            .unwrap();
    }
    w.pump(now);
    let evs = exit_events(&mut w);
    assert!(
        !evs.iter()
            .any(|(_, ev)| matches!(ev, ExitEvent::DirStream { .. })),
        "no directory stream on a leg: {evs:?}"
    );
    assert_eq!(closed_of(&evs, edge), vec![sid(4)], "ended once: {evs:?}");
    assert!(w.closed[c.legs[0].1].is_some() && w.closed[c.legs[1].1].is_some());
    assert_eq!(w.nodes[EXIT].sets().count(), 0);
    assert_eq!(w.nodes[EXIT].queued_bytes(), 0);
    // The plain circuit still gets its directory stream.
    w.clients[plain]
        .send_relay(LAST, Some(sid(1)), BeginDir::default().into(), now)
        .unwrap();
    w.pump(now);
    let evs = exit_events(&mut w);
    assert!(
        matches!(evs.as_slice(), [(EdgeKey::Circuit(_), ExitEvent::DirStream { id })] if *id == sid(1)),
        "{evs:?}"
    );
    assert!(w.closed[plain].is_none());
}

/// TROVE-2026-010 (reorder accounting when a queue is cleared), the
/// exit's side: a set holding 100 KB of uploads for a gap closes (the
/// client breaks a rule) while its legs' DESTROYs cannot go out yet (the
/// channels toward the client do not drain, so its legs' circuits stay
/// until they do). The node's count drops at once to what is really held
/// (the plain circuit beside it and two DESTROYs); that plain circuit,
/// with data of its own, is not closed by the memory limit for bytes
/// that are gone; once the DESTROYs go, the count is its alone.
///
/// C-tor: `conflux_free_` (conflux_pool.c) frees the out-of-order queue
/// without taking the freed messages off `total_ooo_q_bytes` (conflux.c,
/// added to the relay's total by `cell_queues_check_size`), so the OOM
/// handler acted on bytes already freed; the fix subtracts them. The
/// node takes a set's bytes off its total when it forgets the set
/// (`maybe_release_set`), which it does as soon as the set is closed and
/// its legs' circuits are closed, before their DESTROYs go out.
#[test]
fn trove_2026_010_reorder_accounting_when_a_set_closes_exit() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let s = sid(3);
    open_stream(&mut w, &mut c, s, now);
    let (plain, plain_edge) = bystander(&mut w, sid(1), 8, now);
    let plain_bytes = w.nodes[EXIT].queued_bytes();
    assert!(plain_bytes >= 8 * 498, "{plain_bytes}");
    let set = the_set(&w);
    // A gap of 100 on leg 1, then 200 full DATA cells behind it.
    let circ = c.legs[1].1;
    w.clients[circ]
        .send_relay(LAST, None, ConfluxSwitch::new(100).into(), now)
        .unwrap();
    let mut sent = 0;
    for _ in 0..2000 {
        if sent == 200 {
            break;
        }
        if w.clients[circ].can_send_data(LAST) {
            w.clients[circ]
                .send_relay(LAST, Some(s), Data::new(&[0x42; 498]).unwrap().into(), now)
                .unwrap();
            sent += 1;
        }
        w.pump(now);
    }
    assert_eq!(sent, 200);
    let f = w.nodes[EXIT].set_figures(set).unwrap();
    assert!(f.reorder_bytes >= 200 * 498, "{f:?}");
    // The legs' channels stop draining; the client breaks a rule.
    w.frozen = leg_channels(&w, &c);
    assert_eq!(w.frozen.len(), 2);
    w.clients[c.legs[0].1]
        .send_relay(LAST, Some(sid(8)), BeginDir::default().into(), now)
        .unwrap();
    w.pump(now);
    // The set is gone (its legs left it when their circuits closed); the
    // legs' circuits wait for their DESTROYs to go.
    assert!(w.nodes[EXIT].set_figures(set).is_none());
    assert_eq!(w.nodes[EXIT].circuit_count(), 3);
    assert!(
        w.closed[c.legs[0].1].is_none(),
        "the DESTROY is still queued"
    );
    let held = w.nodes[EXIT].queued_bytes();
    assert!(
        held <= plain_bytes + 2 * node::CELL_MEM_BYTES,
        "{held} counted for {plain_bytes} of the plain circuit and two DESTROYs"
    );
    // The memory limit sees what is held: the plain circuit stays.
    w.nodes[EXIT].set_memory_limit(Some(plain_bytes + 16 * 1024));
    let later = now + Duration::from_secs(1);
    w.nodes[EXIT].exit(plain_edge, later, |_| ()).unwrap();
    w.pump(later);
    assert_eq!(w.nodes[EXIT].stats().oom_closed, 0);
    assert!(w.closed[plain].is_none(), "the plain circuit goes on");
    // The DESTROYs go: the count is the plain circuit's.
    w.frozen.clear();
    w.pump(later);
    assert!(w.closed[c.legs[0].1].is_some() && w.closed[c.legs[1].1].is_some());
    assert_eq!(w.nodes[EXIT].circuit_count(), 1);
    assert_eq!(w.nodes[EXIT].queued_bytes(), plain_bytes);
}

/// TROVE-2026-016 and -026 (streams freed once when a set closes,
/// whatever leg goes first), the exit's side: three streams with bytes
/// buffered both ways; the legs go one after the other in either order,
/// both at once (the client's channel dies), after the set closed on a
/// violation, or the node closes the set for memory. Each stream's
/// `Closed` comes exactly once, nothing is left held (streams, bytes,
/// sets, timers), and the driver's later calls on the set find nothing.
///
/// C-tor: `linked_circuit_free` and `linked_nullify_streams`
/// (conflux_pool.c) hand the set's shared stream lists to the next leg
/// or free them, and `conflux_circuit_about_to_free` runs per leg: with
/// the leg freed first being the one the streams pointed to (a recovery
/// leg, -026) or at shutdown (-016), streams were freed through one leg
/// and used through another. Braid's streams belong to the set, not to a
/// leg, and end once when it closes (`RelayNode::drive_set`).
#[test]
fn trove_2026_016_026_streams_freed_once_whatever_leg_goes_first_exit() {
    let streams = [sid(2), sid(4), sid(6)];
    for case in 0..5 {
        let now = Instant::now();
        let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
        let set = the_set(&w);
        let mut edge = None;
        for &s in &streams {
            edge = Some(open_stream(&mut w, &mut c, s, now));
        }
        let edge = edge.unwrap();
        for &s in &streams {
            // The destination's bytes wait for the client; the client's
            // for the destination.
            w.nodes[EXIT]
                .exit(edge, now, |m| m.write(s, &[0x77; 3000], now))
                .unwrap()
                .unwrap();
            let leg = c.leg(1);
            c.send_on(&mut w, leg, s, Data::new(&[0x66; 400]).unwrap().into(), now);
        }
        w.pump(now);
        let _ = exit_events(&mut w);
        let (a, b) = (c.legs[0].1, c.legs[1].1);
        match case {
            0 => {
                w.clients[a].close();
                w.pump(now);
                w.clients[b].close();
            }
            1 => {
                w.clients[b].close();
                w.pump(now);
                w.clients[a].close();
            }
            2 => {
                let chan = w.client_chan;
                w.nodes[0].channel_closed(chan, now);
            }
            3 => {
                w.clients[b]
                    .send_relay(LAST, Some(sid(30)), BeginDir::default().into(), now)
                    .unwrap();
                w.pump(now);
                w.clients[a].close();
            }
            _ => {
                w.nodes[EXIT].set_memory_limit(Some(1000));
                w.nodes[EXIT]
                    .exit(edge, now, |m| m.write(sid(2), &[1; 10], now))
                    .unwrap()
                    .unwrap();
            }
        }
        w.pump(now);
        let later = now + Duration::from_secs(120);
        w.nodes[EXIT].handle_timeout(later);
        w.pump(later);
        let evs = exit_events(&mut w);
        assert_eq!(
            closed_of(&evs, edge),
            streams.to_vec(),
            "case {case}: {evs:?}"
        );
        assert!(w.nodes[EXIT].set_figures(set).is_none(), "case {case}");
        assert_eq!(w.nodes[EXIT].exit_stream_count(), 0);
        assert_eq!(w.nodes[EXIT].queued_bytes(), 0);
        assert_eq!(w.nodes[EXIT].edge_timeout(), None);
        for &s in &streams {
            assert!(
                w.nodes[EXIT]
                    .exit(edge, later, |m| m.close(s, EndReason::DONE, later))
                    .is_none()
            );
        }
        w.pump(later);
        assert!(exit_events(&mut w).is_empty());
    }
}

/// TROVE-2026-017 (a SWITCH that fails to send), the exit's side: the
/// exit's scheduler puts a download on both legs while neither channel
/// toward the client drains, so each leg's queue holds sequenced cells
/// (and the SWITCHes before them) that have not left; then one channel
/// drains again and the download goes on there, and the other leg dies
/// (the client closes it) with its cells never sent. Whichever leg it
/// is, the exit must not go on over the survivor as if those numbers had
/// arrived: the client would wait for them forever (a C-tor client) or
/// have to close the set itself. Either the exit's set closes, or the
/// client, told the leg is gone, still has every number it needs.
///
/// C-tor: `conflux_decide_circ_for_send` (conflux.c) moved `curr_leg`
/// before `conflux_send_switch_command` (conflux_cell.c), which ignored
/// the failure of `relay_send_command_from_edge`; the caller then wrote to
/// the closed circuit. The fix closes the set on a failed SWITCH. The
/// set's own rule: `conflux::trove_tests`.
#[test]
fn trove_2026_017_switch_that_fails_to_send_exit() {
    for dies in [0, 1] {
        let now = Instant::now();
        let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
        let set = the_set(&w);
        let s = sid(5);
        let edge = open_stream(&mut w, &mut c, s, now);
        let chans = leg_channels(&w, &c);
        let chan_of = |w: &World, middle: usize| {
            w.links
                .iter()
                .find_map(|(x, y)| match (x, y) {
                    (End::Node(EXIT, cx), End::Node(m, _))
                    | (End::Node(m, _), End::Node(EXIT, cx))
                        if *m == middle =>
                    {
                        Some((EXIT, *cx))
                    }
                    _ => None,
                })
                .unwrap()
        };
        let (dying, living) = (chan_of(&w, 1 + dies), chan_of(&w, 2 - dies));
        assert!(chans.contains(&dying) && chans.contains(&living));
        // Neither leg drains: the download fills both legs' queues.
        w.frozen = vec![dying, living];
        let mut t = now;
        for _ in 0..50 {
            let _ = w.nodes[EXIT].exit(edge, t, |m| m.write(s, &[0x5a; 8000], t));
            w.pump(t);
            t += Duration::from_millis(1);
        }
        assert!(w.nodes[EXIT].channel_priority(dying.1, t).is_some());
        assert!(w.nodes[EXIT].channel_priority(living.1, t).is_some());
        // One leg drains again; the download goes on over it.
        w.frozen = vec![dying];
        for _ in 0..50 {
            let _ = w.nodes[EXIT].exit(edge, t, |m| m.write(s, &[0x5a; 8000], t));
            w.pump(t);
            c.take(&mut w, t);
            t += Duration::from_millis(1);
        }
        assert!(
            w.nodes[EXIT].channel_priority(dying.1, t).is_some(),
            "still stuck"
        );
        // The stuck leg dies with its cells unsent.
        let dead = c.legs[dies].1;
        w.clients[dead].close();
        w.pump(t);
        c.take(&mut w, t);
        let exit_closed = w.nodes[EXIT].set_figures(set).is_none_or(|f| f.closed);
        let client_side =
            c.set
                .leg_closed(c.leg(dies), crate::conflux::LegClosedInfo::default(), t);
        assert!(
            exit_closed || client_side.is_ok(),
            "leg {dies}: the exit's set goes on but the client lost {:?}",
            client_side
        );
        if exit_closed {
            assert!(
                w.closed[c.legs[1 - dies].1].is_some(),
                "the survivor got its DESTROY"
            );
            assert_eq!(closed_of(&exit_events(&mut w), edge), vec![s]);
        }
    }
}

/// TROVE-2026-032 (an unrequested CC_RESPONSE), the exit's side: the
/// relay only ever answers congestion control, never takes an answer. A
/// CREATE2 whose ntor-v3 client message carries a CC_RESPONSE (type 2)
/// instead of a request is not a request: no congestion control, no
/// extension in the reply, and such a circuit can be no Conflux leg
/// (LINK refused: prop 329 §2.2). With both, the request counts, once.
///
/// C-tor: `negotiate_v3_ntor_client_circ_params` (onion_crypto.c)
/// accepted a CC_RESPONSE whenever the consensus enabled congestion
/// control, whether this hop had been asked or not, and
/// `circuit_finish_handshake` (circuitbuild.c) then made congestion
/// control for a hop that was never set up for it; the fix refuses an
/// answer to a request not made. The client's side (Braid refuses it,
/// `circuit::build::check_cc_answer`) is braid-sim's
/// `trove_2026_032_unrequested_cc_response_client`; the other half of
/// the exit's side, extensions in LINK it never asked for, is
/// `trove_2026_032_unrequested_link_extension_exit`.
#[test]
fn trove_2026_032_unrequested_cc_response_exit() {
    use crate::crypto::extensions;
    use crate::crypto::ntor_v3::{self, NtorV3PublicKey};
    use crate::relay::create::answer_create2;
    use tor_cell::chancell::msg::HandshakeType;

    let w = World::new(1);
    let secret = StaticSecret::from([5; 32]);
    let ed = w.targets[0].ed_id;
    let keys = OnionKeys {
        ntor: vec![],
        ntor_v3: vec![NtorV3SecretKey::new(ed, secret)],
    };
    let public = NtorV3PublicKey {
        id: ed,
        onion_key: w.targets[0].ntor_onion_key,
    };
    let mut rng = StdRng::seed_from_u64(3);
    // (client message, congestion control expected)
    let cases: [(&[u8], bool); 4] = [
        (&[1, 2, 1, 31], false),
        (&[2, 2, 1, 31, 1, 0], true),
        (&[1, 1, 0], true),
        (&[0], false),
    ];
    for (cm, want_cc) in cases {
        let (state, skin) =
            ntor_v3::client_handshake(&mut rng, &public, cm, ntor_v3::CIRCUIT_EXTEND_VERIFICATION)
                .unwrap();
        let answered = answer_create2(
            &keys,
            HandshakeType::NTOR_V3,
            &skin,
            &CcParams::default(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(answered.cc.is_some(), want_cc, "{cm:?}");
        let AnyChanMsg::Created2(reply) = answered.reply else {
            panic!()
        };
        let (exts, _) = state.finish_for_circuit(&reply.into_body()).unwrap();
        assert_eq!(extensions::cc_sendme_inc(&exts).is_some(), want_cc);
    }
    // At the node: a circuit whose exit hop was not asked for congestion
    // control cannot link.
    let now = Instant::now();
    let mut w = world(ConfluxExitConfig::default());
    let a = w.circuit(&[0, 1, EXIT], now);
    w.pump(now);
    assert!(w.clients[a].cc_enabled(LAST), "asked: the exit answered");
    let mut t = w.targets.clone();
    t[EXIT].request_cc = false;
    let b = w.clients.len();
    let mut plain = ClientCircuit::new(
        CircId::new(CLIENT_CIRC + u32::try_from(b).unwrap()).unwrap(),
        t[0].clone(),
        CircParams::default(),
        &mut w.rng,
        now,
    )
    .unwrap();
    plain.extend(t[2].clone(), now).unwrap();
    plain.extend(t[EXIT].clone(), now).unwrap();
    w.clients.push(plain);
    w.closed.push(None);
    w.stream_msgs.push(Vec::new());
    w.msgs.push(Vec::new());
    w.pump(now);
    assert!(w.clients[b].is_built());
    assert!(!w.clients[b].cc_enabled(LAST));
    let mut c = Client::new();
    let leg = c.set.add_leg(now).unwrap();
    c.legs.push((leg, b));
    c.flush(&mut w, now);
    w.pump(now);
    assert!(w.closed[b].is_some(), "LINK without congestion control");
    assert_eq!(w.nodes[EXIT].stats().links_refused, 1);
    assert!(w.closed[a].is_none());
}

/// TROVE-2026-040 (stream state kept in sync across legs), the exit's
/// side: a set's streams are the set's, whatever leg their cells come
/// on. A stream opened on leg 0 takes DATA sent on leg 1, in order with
/// leg 0's; a second BEGIN for its id on leg 1 opens no second stream
/// (the client broke a rule: its streams end, once); an id ended on one
/// leg is free on the other.
///
/// C-tor: the isolation fields a stream sets on the circuit it is
/// attached to (`connection_edge_update_circuit_isolation`, and the
/// fields `conflux_sync_circ_fields`, conflux_util.c, copies between legs
/// at `817b7105f2`: `next_stream_id`, dirtiness, idle timeout, not the
/// isolation) stayed on one leg, so a stream of another isolation could
/// attach to the set through another leg; the fix keeps them in sync. At
/// the exit C-tor keeps the stream lists in sync the same way
/// (`conflux_update_n_streams`, `conflux_update_resolving_streams`).
/// Braid has one stream map per set, and its client one per tunnel
/// (braid-sim's `trove_2026_040_*_client`).
#[test]
fn trove_2026_040_stream_state_kept_in_sync_across_legs_exit() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let s = sid(5);
    let edge = open_stream(&mut w, &mut c, s, now);
    let (l0, l1) = (c.leg(0), c.leg(1));
    let mut sent = Vec::new();
    for i in 0..6_u8 {
        let chunk = vec![i; 300];
        c.send_on(
            &mut w,
            if i % 2 == 0 { l1 } else { l0 },
            s,
            Data::new(&chunk).unwrap().into(),
            now,
        );
        sent.extend_from_slice(&chunk);
    }
    w.pump(now);
    let mut buf = vec![0; 8192];
    let n = w.nodes[EXIT]
        .exit(edge, now, |m| m.read(s, &mut buf, now))
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &sent[..], "one stream, both legs, in order");
    // The client ends it on leg 1; the id is free again, on leg 0.
    c.send_on(&mut w, l1, s, EndMsg::new_misc().into(), now);
    w.pump(now);
    let evs = exit_events(&mut w);
    assert_eq!(closed_of(&evs, edge), vec![s]);
    let before = w.nodes[EXIT].exit_streams(edge).unwrap().len();
    c.send_on(&mut w, l0, s, begin(), now);
    w.pump(now);
    let evs = exit_events(&mut w);
    assert!(
        matches!(evs.as_slice(), [(e, ExitEvent::Connect { id, .. })] if *e == edge && *id == s),
        "{evs:?}"
    );
    assert_eq!(
        w.nodes[EXIT].exit_streams(edge).unwrap().len(),
        before.max(1)
    );
    // A second BEGIN for the open id, on the other leg: no second stream.
    c.send_on(&mut w, l1, s, begin(), now);
    w.pump(now);
    let evs = exit_events(&mut w);
    assert!(
        !evs.iter()
            .any(|(_, ev)| matches!(ev, ExitEvent::Connect { .. })),
        "{evs:?}"
    );
    assert!(
        closed_of(&evs, edge).len() <= 1,
        "the stream ends at most once: {evs:?}"
    );
}

/// arti's TROVE-2026-047 (half-closed streams), the exit's side: the exit
/// ends a stream (its destination closed) with END on one leg; the
/// client's DATA for it, sent before the END reached it, arrives on the
/// other leg. The set's half-closed accounting takes it quietly: the set
/// stays open, the stream is not ended twice, another stream goes on, and
/// the client's own END, crossing ours, is taken too. The accounting is
/// the set's, so it does not matter which leg the late cells use.
///
/// C-tor keeps one `half_streams` list per set through
/// `conflux_update_half_streams` (conflux_util.c), for its client; arti
/// 2.7's fix of TROVE-2026-047 concerns its half-closed stream records.
/// The client's side: braid-sim's `trove_2026_047_*_client`.
#[test]
fn trove_2026_047_half_closed_streams_across_legs_exit() {
    let now = Instant::now();
    let (mut w, mut c) = linked(ConfluxExitConfig::default(), now);
    let set = the_set(&w);
    let (gone, other) = (sid(5), sid(7));
    let edge = open_stream(&mut w, &mut c, gone, now);
    open_stream(&mut w, &mut c, other, now);
    // The exit ends `gone`; the client has not seen it yet.
    w.nodes[EXIT]
        .exit(edge, now, |m| m.close(gone, EndReason::DONE, now))
        .unwrap()
        .unwrap();
    let map = w.nodes[EXIT].exit_streams(edge).unwrap();
    assert_eq!(map.half_closed_len(), 1);
    // Its late DATA comes on both legs.
    let (l0, l1) = (c.leg(0), c.leg(1));
    for i in 0..6 {
        let leg = if i % 2 == 0 { l1 } else { l0 };
        c.send_on(&mut w, leg, gone, Data::new(&[9; 200]).unwrap().into(), now);
    }
    w.pump(now);
    let f = w.nodes[EXIT].set_figures(set).unwrap();
    assert!(
        !f.closed,
        "late cells of a half-closed stream are no violation"
    );
    assert!(w.closed[c.legs[0].1].is_none() && w.closed[c.legs[1].1].is_none());
    let evs = exit_events(&mut w);
    assert!(closed_of(&evs, edge).is_empty(), "not ended twice: {evs:?}");
    let stats = w.nodes[EXIT].exit_streams(edge).unwrap().stats().clone();
    assert_eq!(stats.dropped_closed, 6, "taken as half-closed: {stats:?}");
    assert_eq!(
        (stats.dropped_invalid, stats.violations),
        (0, 0),
        "{stats:?}"
    );
    // The other stream goes on.
    c.send_on(
        &mut w,
        l1,
        other,
        Data::new(b"still here").unwrap().into(),
        now,
    );
    w.pump(now);
    let mut buf = [0; 64];
    let n = w.nodes[EXIT]
        .exit(edge, now, |m| m.read(other, &mut buf, now))
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"still here");
    // The client's END (it saw ours) crosses it: still no violation,
    // and the account stays one entry.
    c.send_on(&mut w, l0, gone, EndMsg::new_misc().into(), now);
    w.pump(now);
    assert_eq!(
        w.nodes[EXIT].exit_streams(edge).unwrap().half_closed_len(),
        1
    );
    assert!(!w.nodes[EXIT].set_figures(set).unwrap().closed);
    assert!(closed_of(&exit_events(&mut w), edge).is_empty());
}
