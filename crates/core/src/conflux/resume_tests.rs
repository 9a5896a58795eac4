//! Resumption (Braid proposal 001 §3, prop 329 §2.7) on the in-memory
//! pair of `tests`: a leg lost with data in flight, or every leg, is
//! replaced and nothing is lost or delivered twice; the retransmit buffer
//! bounds the sender; the grace and the resumption limits close the set.

use super::*;
use crate::conflux::ext::LinkExt;

/// A pair of resumable sets with legs of one-way `delays`, linked.
fn resumable_pair(seed: u64, jitter_ms: u64, delays: &[u64]) -> (Pair, Vec<LegId>) {
    resumable_pair_with(ResumeParams::default(), seed, jitter_ms, delays)
}

/// [`resumable_pair`] with `params`.
fn resumable_pair_with(
    params: ResumeParams,
    seed: u64,
    jitter_ms: u64,
    delays: &[u64],
) -> (Pair, Vec<LegId>) {
    linked_with(seed, jitter_ms, delays, |p| {
        p.client.enable_resumption(params);
        p.exit.enable_resumption(params);
    })
}

/// A pair set up by `setup`, with legs of one-way `delays`, linked.
pub(super) fn linked_with(
    seed: u64,
    jitter_ms: u64,
    delays: &[u64],
    setup: impl FnOnce(&mut Pair),
) -> (Pair, Vec<LegId>) {
    let mut p = Pair::new(seed, jitter_ms);
    setup(&mut p);
    let legs: Vec<LegId> = delays
        .iter()
        .map(|d| p.launch(Duration::from_millis(*d)))
        .collect();
    p.run();
    assert!(p.client.is_linked() && p.exit.is_linked());
    (p, legs)
}

/// Every leg's DATA is acknowledged (call with the pipes drained: all of
/// it arrived).
pub(super) fn ack_all(p: &mut Pair) {
    for (c, e) in p.map.clone() {
        p.client.leg_acked(c, u64::MAX, None);
        p.exit.leg_acked(e, u64::MAX, None);
    }
}

/// Leg `leg` dies: what is in flight on it both ways is lost, both ends
/// learn it.
fn kill(p: &mut Pair, leg: LegId) {
    p.up.remove(&leg);
    p.down.remove(&leg);
    p.client
        .leg_closed(leg, LegClosedInfo::default(), p.now)
        .unwrap();
    let e = p.map.remove(&leg).unwrap();
    p.exit
        .leg_closed(e, LegClosedInfo::default(), p.now)
        .unwrap();
    p.pump();
}

/// Send DATA `from..to` both ways on random legs, stepping now and then.
pub(super) fn send_range(
    p: &mut Pair,
    cc: &mut RandomChooser,
    ce: &mut RandomChooser,
    from: u32,
    to: u32,
) {
    for i in from..to {
        p.client_send(cc, i);
        p.exit_send(ce, i);
        if i % 4 == 0 {
            p.step();
        }
    }
}

#[test]
fn a_busy_leg_lost_is_resumed_without_loss_or_duplicates() {
    for seed in 0..20 {
        let (mut p, legs) = resumable_pair(seed, 3, &[5, 12]);
        let mut cc = RandomChooser(Xs(seed + 2));
        let mut ce = RandomChooser(Xs(seed + 3));
        send_range(&mut p, &mut cc, &mut ce, 0, 30);
        p.run();
        ack_all(&mut p);
        // 30..60 in flight both ways, a few delivered, then B dies.
        send_range(&mut p, &mut cc, &mut ce, 30, 60);
        kill(&mut p, legs[1]);
        assert!(!p.client.is_closed() && !p.exit.is_closed(), "seed {seed}");
        // No new DATA while the gap waits for a new leg (it would only
        // fill the peer's reorder queue).
        let msg = data(60);
        assert!(matches!(
            p.client.send(&mut cc, &[], stream(), msg, p.now).unwrap(),
            SendOutcome::Blocked { .. }
        ));
        p.launch(Duration::from_millis(2));
        p.run();
        send_range(&mut p, &mut cc, &mut ce, 60, 80);
        p.run();
        assert_eq!(p.client.linked_legs(), 2);
        assert_eq!(p.exit.resumptions(), 1);
        assert_eq!(p.client.resumptions(), 1);
        finish_to_200(&mut p, &mut cc, &mut ce, 80);
        assert!(
            p.client.resent() + p.exit.resent() > 0,
            "seed {seed}: something was resent"
        );
    }
}

#[test]
fn every_leg_lost_then_new_legs_within_the_grace() {
    let (mut p, legs) = resumable_pair(5, 2, &[4, 9]);
    let mut cc = RandomChooser(Xs(7));
    let mut ce = RandomChooser(Xs(8));
    send_range(&mut p, &mut cc, &mut ce, 0, 50);
    kill(&mut p, legs[0]);
    kill(&mut p, legs[1]);
    assert_eq!(p.client.linked_legs(), 0);
    let grace = ResumeParams::default().grace;
    assert_eq!(p.exit.poll_timeout(), Some(p.now + grace));
    // Not yet: a little before the grace ends, two new legs.
    p.now += grace - Duration::from_secs(1);
    p.exit.handle_timeout(p.now);
    p.client.handle_timeout(p.now);
    assert!(!p.exit.is_closed());
    p.launch(Duration::from_millis(3));
    p.launch(Duration::from_millis(6));
    p.run();
    assert_eq!(p.exit.poll_timeout(), None, "the grace is over");
    finish_to_200(&mut p, &mut cc, &mut ce, 50);
}

/// A leg lost with data in flight while another stays: new DATA waits for
/// a new leg to resend the gap; if none comes within the grace, the set
/// closes instead of holding its streams forever.
#[test]
fn a_gap_no_new_leg_fills_closes_after_the_grace() {
    let (mut p, legs) = resumable_pair(8, 0, &[4, 9]);
    let mut cc = RandomChooser(Xs(9));
    let mut ce = RandomChooser(Xs(10));
    send_range(&mut p, &mut cc, &mut ce, 0, 40);
    kill(&mut p, legs[1]);
    assert_eq!(p.client.linked_legs(), 1);
    let grace = ResumeParams::default().grace;
    let t = p.exit.poll_timeout().unwrap();
    assert!(t <= p.now + grace, "a deadline within the grace");
    p.now = t;
    p.exit.handle_timeout(p.now);
    p.client.handle_timeout(p.now);
    assert!(matches!(
        p.exit.close_reason(),
        Some(ConfluxError::ResumeGraceExpired { .. })
    ));
    assert!(matches!(
        p.client.close_reason(),
        Some(ConfluxError::ResumeGraceExpired { .. })
    ));
}

#[test]
fn without_a_leg_past_the_grace_the_set_closes() {
    let (mut p, legs) = resumable_pair(6, 0, &[4, 9]);
    kill(&mut p, legs[0]);
    kill(&mut p, legs[1]);
    let t = p.exit.poll_timeout().unwrap();
    p.exit.handle_timeout(t);
    assert!(matches!(
        p.exit.close_reason(),
        Some(ConfluxError::ResumeGraceExpired { .. })
    ));
}

#[test]
fn the_retransmit_buffer_bounds_the_sender() {
    let params = ResumeParams {
        buffer_bytes: 64 * 1024,
        ..ResumeParams::default()
    };
    let (mut p, _) = resumable_pair_with(params, 7, 0, &[4, 9]);
    let mut ce = RandomChooser(Xs(3));
    let mut sent = 0;
    while let SendOutcome::Sent(out) = p
        .exit
        .send(&mut ce, &[], stream(), data(sent), p.now)
        .unwrap()
    {
        sent += 1;
        let c = p.client_leg_of(out.leg);
        for (s, m) in out.into_msgs() {
            p.push_down(c, s, m);
        }
        assert!(sent < 10_000, "never blocked");
    }
    let bound = params.buffer_bytes;
    assert!(p.exit.retransmit_bytes() >= bound);
    assert!(p.exit.retransmit_bytes() < bound + 1024);
    assert_eq!(p.got_client.len(), 0);
    // The client gets them all (no SENDMEs in this harness): once
    // acknowledged, the buffer empties and DATA goes again.
    while p.step() {}
    ack_all(&mut p);
    assert_eq!(p.exit.retransmit_bytes(), 0);
    assert_eq!(p.got_client.len(), sent as usize, "all delivered once");
    assert!(matches!(
        p.exit
            .send(&mut ce, &[], stream(), data(sent), p.now)
            .unwrap(),
        SendOutcome::Sent(_)
    ));
    assert!(p.exit.retransmit_peak_bytes() >= bound);
}

/// Every leg's DATA acknowledged as its circuit would: as many cells as
/// reached the peer on it, resends included.
fn ack_exact(p: &mut Pair) {
    for (c, e) in p.map.clone() {
        let up = p.data_up.get(&c).copied().unwrap_or(0);
        let down = p.data_down.get(&c).copied().unwrap_or(0);
        p.client.leg_acked(c, up, None);
        p.exit.leg_acked(e, down, None);
    }
}

/// Resumption after resumption with acknowledgements counted as circuits
/// count them (resent cells included; the soak found both faults): what a
/// resumed leg resent is freed by that leg's acknowledgements, a lost
/// leg's messages the peer had are freed at the resumption, and nothing
/// sent on a resumed leg is freed before it arrived, so the next leg lost
/// loses nothing. Once all is delivered and acknowledged the buffers are
/// empty.
#[test]
fn resumed_legs_free_what_they_carry_and_nothing_early() {
    let params = ResumeParams {
        per_minute: 10,
        ..ResumeParams::default()
    };
    for seed in 0..20 {
        let (mut p, legs) = resumable_pair_with(params, seed, 2, &[4, 9]);
        let mut cc = RandomChooser(Xs(seed + 11));
        let mut ce = RandomChooser(Xs(seed + 12));
        let mut live = legs.clone();
        let mut next = 0;
        for round in 0..4 {
            // Fresh DATA both ways, partly delivered and acknowledged.
            send_range(&mut p, &mut cc, &mut ce, next, next + 30);
            next += 30;
            ack_exact(&mut p);
            // The newest leg dies with cells in flight; a new one links
            // and the resends start, partly delivered.
            let dead = live.pop().unwrap();
            kill(&mut p, dead);
            let new = p.launch(Duration::from_millis(3 + round));
            live.insert(0, new);
            while !(p.client.linked_legs() == 2 && p.exit.linked_legs() == 2) {
                assert!(p.step(), "seed {seed} round {round}: the leg links");
            }
            for _ in 0..6 {
                p.step();
            }
            ack_exact(&mut p);
        }
        p.run();
        ack_exact(&mut p);
        assert_eq!(p.got_client, (0..next).collect::<Vec<_>>(), "seed {seed}");
        assert_eq!(p.got_exit, (0..next).collect::<Vec<_>>(), "seed {seed}");
        assert_eq!(p.client.resumptions(), 4);
        assert_eq!(p.exit.retransmit_bytes(), 0, "seed {seed}: exit");
        assert_eq!(p.client.retransmit_bytes(), 0, "seed {seed}: client");
    }
}

#[test]
fn too_many_resumptions_close_the_set() {
    let (mut p, legs) = resumable_pair(8, 0, &[4, 9]);
    kill(&mut p, legs[1]);
    for _ in 0..3 {
        let l = p.launch(Duration::from_millis(3));
        p.run();
        assert!(!p.exit.is_closed());
        kill(&mut p, l);
    }
    // A fourth within the minute: refused, the set closes.
    let leg = p.client.add_leg(p.now).unwrap();
    let (_, link) = p.client.poll_transmit().unwrap();
    let AnyRelayMsg::ConfluxLink(link) = link else {
        panic!("{link:?}")
    };
    let _ = leg;
    let _ = p.exit.accept_link(&link, false, p.now);
    assert!(matches!(
        p.exit.close_reason(),
        Some(ConfluxError::TooManyResumptions { .. })
    ));
}

#[test]
fn without_resumption_a_busy_leg_lost_still_closes_the_set() {
    // The rules against C-tor stand unchanged (prop 329 §2.7 not agreed).
    let (mut p, legs) = linked_pair(3, 0, &[4, 9]);
    let mut cc = RandomChooser(Xs(1));
    let mut ce = RandomChooser(Xs(2));
    send_range(&mut p, &mut cc, &mut ce, 0, 40);
    p.client_send_on(legs[1], 40);
    let r = p.client.leg_closed(
        legs[1],
        LegClosedInfo {
            inflight: 40,
            sendme_inc: 31,
        },
        p.now,
    );
    assert!(r.is_err());
    assert!(p.client.is_closed());
}

/// RESUME_CAP goes out only when offered: a client that does not offer
/// (an exit without BraidResume=1, e.g. C-tor) sends a plain LINK; an exit
/// answers a LINK with it by a plain LINKED unless it offers too; a LINK
/// without it never makes an offering exit resumable.
#[test]
fn resume_cap_only_where_offered() {
    let now = Instant::now();
    // A client that does not offer: plain LINK.
    let mut plain = ConfluxSet::new_client(nonce(1), ConfluxConfig::client());
    plain.add_leg(now).unwrap();
    let (_, link) = plain.poll_transmit().unwrap();
    assert!(matches!(link, AnyRelayMsg::ConfluxLink(_)), "{link:?}");
    // A client that offers: the LINK carries it.
    let mut offering = ConfluxSet::new_client(nonce(2), ConfluxConfig::client());
    offering.offer_resumption(ResumeParams::default());
    offering.add_leg(now).unwrap();
    let (_, link) = offering.poll_transmit().unwrap();
    let (link, ext) = crate::conflux::ext::split(link).unwrap();
    assert!(ext.cap.is_some());
    assert_eq!(ext.leg.as_ref().map(|n| n.lost.len()), Some(0), "{ext:?}");
    let AnyRelayMsg::ConfluxLink(link) = link else {
        panic!("{link:?}")
    };
    // An exit that does not offer answers with a plain LINKED.
    let mut exit = ConfluxSet::new_exit(nonce(2), ConfluxConfig::exit());
    exit.accept_link_with(&link, &ext, false, now).unwrap();
    let (_, linked) = exit.poll_transmit().unwrap();
    assert!(matches!(linked, AnyRelayMsg::ConfluxLinked(_)));
    assert!(!exit.is_resumable());
    // One that offers, to a LINK that carried it: resumable, and says so.
    let mut exit = ConfluxSet::new_exit(nonce(2), ConfluxConfig::exit());
    exit.offer_resumption(ResumeParams::default());
    exit.accept_link_with(&link, &ext, false, now).unwrap();
    let (_, linked) = exit.poll_transmit().unwrap();
    assert!(matches!(linked, AnyRelayMsg::Unrecognized(_)));
    assert!(exit.is_resumable());
    // To a LINK without it: not resumable, plain LINKED.
    let mut exit = ConfluxSet::new_exit(nonce(2), ConfluxConfig::exit());
    exit.offer_resumption(ResumeParams::default());
    exit.accept_link_with(&link, &LinkExt::default(), false, now)
        .unwrap();
    let (_, linked) = exit.poll_transmit().unwrap();
    assert!(matches!(linked, AnyRelayMsg::ConfluxLinked(_)));
    assert!(!exit.is_resumable());
}

/// Between legs (all lost), or with the only leg still resending, a
/// message to send waits: any command, not only DATA (a client's XON or
/// END must not close a set that is resuming; found when a kill took both
/// legs of a set in the integration test).
#[test]
fn without_a_leg_to_send_on_messages_wait() {
    let (mut p, legs) = resumable_pair(9, 0, &[4, 9]);
    let mut cc = RandomChooser(Xs(1));
    let mut ce = RandomChooser(Xs(2));
    send_range(&mut p, &mut cc, &mut ce, 0, 20);
    kill(&mut p, legs[0]);
    kill(&mut p, legs[1]);
    let end: AnyRelayMsg = End::new_with_reason(tor_cell::relaycell::msg::EndReason::DONE).into();
    for set in [&mut p.client, &mut p.exit] {
        let out = set
            .send(&mut cc, &[], stream(), end.clone(), p.now)
            .unwrap();
        assert!(matches!(out, SendOutcome::Blocked { .. }), "{out:?}");
        assert!(!set.is_closed());
    }
    // A new leg that has resends pending is the only one: still waiting.
    let c = p.client.add_leg(p.now).unwrap();
    p.delay.insert(c, Duration::from_millis(3));
    p.up.entry(c).or_default();
    p.down.entry(c).or_default();
    p.pump();
    p.run();
    finish_to_200(&mut p, &mut cc, &mut ce, 20);
}
