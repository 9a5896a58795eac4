//! A leg the exit hears of late (Braid proposal 001 §3.3): the client
//! lost it and linked a new leg before the exit learned of the loss; the
//! new leg's LINK names it, the exit drops it, and nothing the exit sent
//! on it after the client's loss is lost.

use super::resume_tests::{ack_all, send_range};
use super::*;

/// A pair whose ends offer resumption (so LINKs carry Braid's extensions)
/// with legs of one-way `delays`, linked.
fn offering_pair(seed: u64, delays: &[u64]) -> (Pair, Vec<LegId>) {
    let mut p = Pair::new(seed, 3);
    p.client.offer_resumption(ResumeParams::default());
    p.exit.offer_resumption(ResumeParams::default());
    let legs: Vec<LegId> = delays
        .iter()
        .map(|d| p.launch(Duration::from_millis(*d)))
        .collect();
    p.run();
    assert!(p.client.is_resumable() && p.exit.is_resumable());
    (p, legs)
}

#[test]
fn a_leg_the_client_lost_is_dropped_by_the_next_link_before_the_exit_hears() {
    for seed in 0..20 {
        let (mut p, legs) = offering_pair(seed, &[5, 12]);
        let mut cc = RandomChooser(Xs(seed + 2));
        let mut ce = RandomChooser(Xs(seed + 3));
        send_range(&mut p, &mut cc, &mut ce, 0, 30);
        p.run();
        ack_all(&mut p);
        send_range(&mut p, &mut cc, &mut ce, 30, 60);
        // B's path dies; only the client hears of it (the middle holds
        // the exit's DESTROY).
        let b = legs[1];
        let eb = p.map[&b];
        p.dead.push(b);
        p.up.get_mut(&b).unwrap().q.clear();
        p.down.get_mut(&b).unwrap().q.clear();
        p.client
            .leg_closed(b, LegClosedInfo::default(), p.now)
            .unwrap();
        p.pump();
        // The new leg's LINK names B: the exit drops it and resumes.
        p.launch(Duration::from_millis(2));
        p.run();
        assert!(
            p.events_exit
                .iter()
                .any(|e| matches!(e, ConfluxEvent::LegDropped { leg } if *leg == eb)),
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
    p.dead.push(legs[0]);
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
