//! A leg the exit hears of late (Braid proposal 001 §3.3): the client
//! lost it and linked a new leg before the exit learned of the loss; the
//! new leg's LINK names it, the exit drops it, and nothing the exit sent
//! on it after the client's loss is lost.

use super::resume_tests::{ack_all, linked_with, send_range};
use super::*;

/// A pair whose ends offer resumption (so LINKs carry Braid's extensions)
/// with legs of one-way `delays`, linked.
fn offering_pair(seed: u64, delays: &[u64]) -> (Pair, Vec<LegId>) {
    let (p, legs) = linked_with(seed, 3, delays, |p| {
        p.client.offer_resumption(ResumeParams::default());
        p.exit.offer_resumption(ResumeParams::default());
    });
    assert!(p.client.is_resumable() && p.exit.is_resumable());
    (p, legs)
}

/// Whether `events` report `leg` dropped.
fn dropped(events: &[ConfluxEvent], leg: LegId) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ConfluxEvent::LegDropped { leg: l } if *l == leg))
}

/// A two-leg offering pair with DATA 30..60 in flight both ways when the
/// path of its second leg dies, neither end told yet: the pair, its
/// choosers, that leg and the exit's id of it.
fn busy_pair_losing_a_leg(seed: u64) -> (Pair, RandomChooser, RandomChooser, LegId, LegId) {
    let (mut p, legs) = offering_pair(seed, &[5, 12]);
    let mut cc = RandomChooser(Xs(seed + 2));
    let mut ce = RandomChooser(Xs(seed + 3));
    send_range(&mut p, &mut cc, &mut ce, 0, 30);
    p.run();
    ack_all(&mut p);
    send_range(&mut p, &mut cc, &mut ce, 30, 60);
    let b = legs[1];
    let eb = p.map[&b];
    p.cut(b);
    (p, cc, ce, b, eb)
}

#[test]
fn a_leg_the_client_lost_is_dropped_by_the_next_link_before_the_exit_hears() {
    for seed in 0..20 {
        // Only the client hears of the loss (the middle holds the exit's
        // DESTROY).
        let (mut p, mut cc, mut ce, b, eb) = busy_pair_losing_a_leg(seed);
        p.client
            .leg_closed(b, LegClosedInfo::default(), p.now)
            .unwrap();
        p.pump();
        // The new leg's LINK names B: the exit drops it and resumes.
        p.launch(Duration::from_millis(2));
        p.run();
        assert!(
            dropped(&p.events_exit, eb),
            "seed {seed}: {:?}",
            p.events_exit
        );
        assert_eq!(p.exit.linked_legs(), 2, "seed {seed}");
        assert_eq!(p.exit.resumptions(), 1, "seed {seed}");
        assert!(!p.exit.awaits_resumption(), "seed {seed}");
        // The exit hears of B's loss at last: nothing changes.
        assert!(matches!(
            p.exit.leg_closed(eb, LegClosedInfo::default(), p.now),
            Err(ConfluxError::NoSuchLeg { .. })
        ));
        assert!(
            !p.exit.awaits_resumption() && !p.exit.is_closed(),
            "seed {seed}"
        );
        // Everything arrives, once and in order, both ways.
        finish_to_200(&mut p, &mut cc, &mut ce, 60);
    }
}

/// A LINK names only legs lost since the last answered LINK: the lost list
/// empties once a LINK that named them is answered; a leg that failed to
/// link told nothing.
#[test]
fn links_name_the_lost_legs_until_a_link_naming_them_is_answered() {
    let (mut p, legs) = offering_pair(1, &[5, 12]);
    let notes = |p: &mut Pair| -> Vec<super::ext::LegNote> {
        let mut out = Vec::new();
        for (_, q) in p.up.iter() {
            for (_, _, m) in &q.q {
                if m.cmd() == RelayCmd::CONFLUX_LINK {
                    let (_, ext) = super::ext::split(m.clone()).unwrap();
                    out.push(ext.leg.unwrap());
                }
            }
        }
        out
    };
    p.cut(legs[0]);
    p.client
        .leg_closed(legs[0], LegClosedInfo::default(), p.now)
        .unwrap();
    let _ = p
        .exit
        .leg_closed(p.map[&legs[0]], LegClosedInfo::default(), p.now);
    p.pump();
    let c = p.client.add_leg(p.now).unwrap();
    p.delay.insert(c, Duration::from_millis(3));
    p.up.entry(c).or_default();
    p.down.entry(c).or_default();
    p.pump();
    let n = notes(&mut p);
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].num, n[0].lost.clone()), (c.0, vec![legs[0].0]));
    p.run();
    assert_eq!(p.client.linked_legs(), 2);
    // Answered: the next LINK names nothing.
    let d = p.launch(Duration::from_millis(3));
    let n = notes(&mut p);
    assert_eq!((n[0].num, n[0].lost.len()), (d.0, 0), "{n:?}");
}

/// The other way round: the exit hears of the loss and the client does
/// not (its guard holds the DESTROY). The exit's gap would wait for a new
/// leg that never comes; its LEGS_LOST on the leg that lives makes the
/// client drop the leg and link a new one, and nothing is lost.
#[test]
fn legs_lost_from_the_exit_makes_the_client_drop_the_leg_and_resume() {
    for seed in 0..20 {
        // Only the exit hears of the loss (the guard holds the client's
        // DESTROY).
        let (mut p, mut cc, mut ce, b, eb) = busy_pair_losing_a_leg(seed);
        p.exit
            .leg_closed(eb, LegClosedInfo::default(), p.now)
            .unwrap();
        p.pump();
        p.run();
        // The client heard it from the exit: the driver closes the leg.
        assert!(
            dropped(&p.events_client, b),
            "seed {seed}: {:?}",
            p.events_client
        );
        p.client
            .leg_closed(b, LegClosedInfo::default(), p.now)
            .unwrap();
        p.launch(Duration::from_millis(2));
        p.run();
        assert_eq!(p.exit.resumptions(), 1, "seed {seed}");
        assert!(!p.exit.awaits_resumption(), "seed {seed}");
        finish_to_200(&mut p, &mut cc, &mut ce, 60);
    }
}

/// A LEGS_LOST where resumption is off, or malformed, is a protocol
/// violation that closes the set; one naming unknown legs does nothing.
#[test]
fn legs_lost_out_of_place_is_a_violation() {
    let (mut p, legs) = super::linked_pair(3, 0, &[5, 9]);
    let msg = super::ext::legs_lost_msg(&[legs[1].0]);
    assert!(p.client.handle_msg(legs[0], None, msg, p.now).is_err());
    assert!(p.client.is_closed());
    let (mut p, legs) = offering_pair(3, &[5, 9]);
    let msg = super::ext::legs_lost_msg(&[200]);
    assert!(matches!(
        p.client.handle_msg(legs[0], None, msg, p.now),
        Ok(Handled::Consumed)
    ));
    assert!(p.client.poll_event().is_none() && !p.client.is_closed());
    let cmd = RelayCmd::from(super::ext::CMD_LEGS_LOST);
    let bad =
        AnyRelayMsg::Unrecognized(tor_cell::relaycell::msg::Unrecognized::new(cmd, vec![3, 1]));
    assert!(p.client.handle_msg(legs[0], None, bad, p.now).is_err());
    assert!(p.client.is_closed());
}

/// Both legs die; the exit hears of both, the client of one only (the
/// other's guard holds the DESTROY). No leg lives to carry a LEGS_LOST:
/// the exit tells the client on the new leg, after its LINKED, and the
/// client drops the stale leg before it sends anything more into it.
#[test]
fn legs_lost_while_none_lived_are_told_on_the_next_leg() {
    for seed in 0..10 {
        let (mut p, mut cc, mut ce, b, eb) = busy_pair_losing_a_leg(seed);
        let a = *p.map.keys().find(|l| **l != b).unwrap();
        let ea = p.map[&a];
        p.cut(a);
        p.exit
            .leg_closed(ea, LegClosedInfo::default(), p.now)
            .unwrap();
        p.exit
            .leg_closed(eb, LegClosedInfo::default(), p.now)
            .unwrap();
        p.client
            .leg_closed(a, LegClosedInfo::default(), p.now)
            .unwrap();
        p.pump();
        assert_eq!(p.exit.linked_legs(), 0);
        p.launch(Duration::from_millis(2));
        p.run();
        assert!(
            dropped(&p.events_client, b),
            "seed {seed}: {:?}",
            p.events_client
        );
        p.client
            .leg_closed(b, LegClosedInfo::default(), p.now)
            .unwrap();
        p.pump();
        if p.client.awaits_resumption() {
            p.launch(Duration::from_millis(3));
            p.run();
        }
        finish_to_200(&mut p, &mut cc, &mut ce, 60);
    }
}
