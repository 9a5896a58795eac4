//! A [`ConfluxSet`] losing legs, on the in-memory pair of `tests` (whose
//! helpers these use): the leg-loss rules (prop 329 §2.4.3), legs added
//! after a loss (§2.4.4), and the per-leg counters that outlive a leg.

use std::time::Duration;

use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::End;

use super::tests::{Pair, RandomChooser, Xs, finish_to_200, linked_pair, stream};
use super::*;
use crate::ids::LegId;

/// Leg loss without lost data: the set goes on with the other legs.
#[test]
fn leg_loss_without_data_loss_continues() {
    let (mut p, legs) = linked_pair(7, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    // Traffic on both legs both ways, the last of it on A.
    p.client_send_on(b, 0);
    p.exit_send_on(b, 0);
    p.client_send_on(a, 1);
    p.exit_send_on(a, 1);
    p.run();
    let info = LegClosedInfo {
        inflight: 3,
        sendme_inc: 31,
    };
    p.client.leg_closed(b, info, p.now).unwrap();
    p.exit.leg_closed(p.map[&b], info, p.now).unwrap();
    assert!(p.client.is_linked());
    for i in 2..20 {
        p.client_send(&mut RandomChooser(Xs(u64::from(i) + 100)), i);
        p.exit_send(&mut RandomChooser(Xs(u64::from(i))), i);
    }
    p.run();
    assert_eq!(p.got_client, (0..20).collect::<Vec<_>>());
    assert_eq!(p.got_exit, (0..20).collect::<Vec<_>>());
}

/// Leg loss with possible data loss closes the set, naming the rule.
#[test]
fn leg_loss_with_data_loss_closes() {
    let none = LegClosedInfo::default();

    // Our current sending leg.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    p.client_send_on(legs[1], 0);
    assert_eq!(
        p.client.leg_closed(legs[1], none, p.now).unwrap_err(),
        ConfluxError::LegLost {
            leg: legs[1],
            rule: LegLossRule::CurrentSendingLeg
        }
    );
    assert!(p.client.is_closed());

    // A leg with a SENDME's worth of DATA unacknowledged.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    p.client_send_on(legs[1], 0);
    p.client_send_on(legs[0], 1);
    let e = p
        .client
        .leg_closed(
            legs[1],
            LegClosedInfo {
                inflight: 31,
                sendme_inc: 31,
            },
            p.now,
        )
        .unwrap_err();
    assert_eq!(
        e,
        ConfluxError::LegLost {
            leg: legs[1],
            rule: LegLossRule::DataInFlight
        }
    );

    // Receive side: the exit sent 1..=5 on A, then switched to B; A dies
    // before its cells arrive. The gap is detected when A closes.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    for i in 0..5 {
        p.exit_send_on(a, i);
    }
    p.exit_send_on(b, 5);
    // Deliver only B's pipe.
    let down_b: Vec<_> = p.down.get_mut(&b).unwrap().q.drain(..).collect();
    p.down.get_mut(&a).unwrap().q.clear();
    for (_, s, m) in down_b {
        p.client.handle_msg(b, s, m, p.now).unwrap();
    }
    assert_eq!(p.client.reorder_waiting(), 1);
    assert_eq!(
        p.client.leg_closed(a, none, p.now).unwrap_err(),
        ConfluxError::LegLost {
            leg: a,
            rule: LegLossRule::GapCannotFill
        }
    );

    // ... or, if B's SWITCH comes later, when it arrives.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    for i in 0..5 {
        p.exit_send_on(a, i);
    }
    p.exit_send_on(b, 5);
    let down_b: Vec<_> = p.down.get_mut(&b).unwrap().q.drain(..).collect();
    p.client.leg_closed(a, none, p.now).unwrap();
    let mut res = Ok(Handled::Consumed);
    for (_, s, m) in down_b {
        res = p.client.handle_msg(b, s, m, p.now);
        if res.is_err() {
            break;
        }
    }
    assert_eq!(
        res.unwrap_err(),
        ConfluxError::LegLost {
            leg: b,
            rule: LegLossRule::GapCannotFill
        }
    );

    // The last leg.
    let (mut p, legs) = linked_pair(8, 0, &[5]);
    assert_eq!(
        p.client.leg_closed(legs[0], none, p.now).unwrap_err(),
        ConfluxError::LegLost {
            leg: legs[0],
            rule: LegLossRule::NoLegsLeft
        }
    );

    // A leg still linking just leaves.
    let (mut p, _) = linked_pair(8, 0, &[5]);
    let c = p.client.add_leg(p.now).unwrap();
    p.client.leg_closed(c, none, p.now).unwrap();
    assert!(p.client.is_linked());
}

/// Two linked legs A and B with 30 DATA each way spread over them, then
/// 1 more on A, B lost on both ends, and DATA 31..40 in flight on A.
/// Returns the pair, A, B, the choosers, and the client's
/// `last_seq_sent` before the in-flight part.
fn lose_b_with_data_in_flight(
    seed: u64,
    jitter_ms: u64,
) -> (Pair, LegId, LegId, RandomChooser, RandomChooser, u64) {
    let (mut p, legs) = linked_pair(seed, jitter_ms, &[5, 12]);
    let (a, b) = (legs[0], legs[1]);
    let mut cc = RandomChooser(Xs(seed + 2));
    let mut ce = RandomChooser(Xs(seed + 3));
    for i in 0..30 {
        p.client_send(&mut cc, i);
        p.exit_send(&mut ce, i);
    }
    p.run();
    // Make A the current leg on both ends, then lose B.
    p.client_send_on(a, 30);
    p.exit_send_on(a, 30);
    p.run();
    let delivered = p.client.last_seq_sent();
    p.client
        .leg_closed(b, LegClosedInfo::default(), p.now)
        .unwrap();
    p.exit
        .leg_closed(p.map[&b], LegClosedInfo::default(), p.now)
        .unwrap();
    p.map.remove(&b);
    p.up.remove(&b);
    p.down.remove(&b);
    // Data in flight on A while the new leg links.
    for i in 31..40 {
        p.client_send_on(a, i);
        p.exit_send_on(a, i);
    }
    (p, a, b, cc, ce, delivered)
}

/// A set that lost a leg links a replacement (same nonce, current sequence
/// numbers, prop 329 §2.4.4), even with data in flight on the survivor,
/// and sequencing stays right in both directions.
#[test]
fn replacement_leg_after_loss() {
    let (mut p, _, b, mut cc, mut ce, _) = lose_b_with_data_in_flight(9, 3);
    let c = p.launch(Duration::from_millis(2));
    assert_ne!(c, b);
    p.run();
    assert_eq!(p.client.linked_legs(), 2);
    assert_eq!(p.exit.linked_legs(), 2);
    finish_to_200(&mut p, &mut cc, &mut ce, 40);
    assert!(p.switches_down > 0 && p.switches_up > 0);
}

/// A replacement leg whose LINK claims only what the exit surely has
/// (`add_leg_delivered`, for C-tor's data-loss check) while more is in
/// flight on the survivor: its numbers start there, our first message on
/// it carries a SWITCH over the rest, and both directions stay in order.
#[test]
fn replacement_leg_links_with_an_older_last_seqno_sent() {
    let (mut p, _, _, mut cc, mut ce, delivered) = lose_b_with_data_in_flight(19, 2);
    assert!(p.client.last_seq_sent() > delivered);
    let c = p.launch_delivered(Duration::from_millis(1), delivered);
    p.run();
    assert_eq!(p.client.linked_legs(), 2);
    assert_eq!(p.exit.linked_legs(), 2);
    let st = p.client.leg_stats(c).unwrap();
    assert_eq!(st.last_seq_sent, delivered, "numbers start at the claim");
    // The first message on the new leg jumps the gap with a SWITCH.
    let switches = p.switches_up;
    p.client_send_on(c, 40);
    assert_eq!(p.switches_up, switches + 1);
    p.exit_send(&mut ce, 40);
    finish_to_200(&mut p, &mut cc, &mut ce, 41);
}

/// `leg_stats`: per-leg DATA bytes and messages each way, SWITCHes sent
/// and received (prop 329 §2.6), the legs' last sequence numbers; zeros
/// for a linked leg that carried nothing, `None` for a leg still linking
/// or unknown; kept after the leg closes.
#[test]
fn leg_stats_count_each_leg_and_survive_its_close() {
    let (mut p, legs) = linked_pair(21, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    let zero = LegStats::default();
    assert_eq!(p.client.leg_stats(a), Some(zero));
    assert_eq!(p.exit.leg_stats(p.map[&b]), Some(zero));
    assert_eq!(p.client.leg_stats(LegId(200)), None);

    // Client: 2 DATA (4 bytes each) on A, then one on B (after a
    // SWITCH(2)), then one on A again (after a SWITCH(1)).
    p.client_send_on(a, 0);
    p.client_send_on(a, 1);
    p.client_send_on(b, 2);
    p.client_send_on(a, 3);
    // Exit: DATA on A, then END on B (after a SWITCH(1)), DATA on A
    // (after a SWITCH(1)).
    p.exit_send_on(a, 0);
    let out = p
        .exit
        .send_on(p.map[&b], stream(), End::new_misc().into())
        .unwrap();
    assert!(out.switch.is_some(), "a SWITCH, then the message");
    for (s, m) in out.into_msgs() {
        p.push_down(b, s, m);
    }
    p.exit_send_on(a, 1);
    // The pair only delivers DATA: feed the client A's then B's pipe.
    for leg in [a, b] {
        let down: Vec<_> = p.down.get_mut(&leg).unwrap().q.drain(..).collect();
        for (_, s, m) in down {
            p.client.handle_msg(leg, s, m, p.now).unwrap();
        }
    }
    let mut got = Vec::new();
    while let Some(d) = p.client.poll_delivered() {
        got.push((d.seq, d.leg, d.msg.cmd()));
    }
    assert_eq!(
        got,
        vec![
            (1, a, RelayCmd::DATA),
            (2, b, RelayCmd::END),
            (3, a, RelayCmd::DATA)
        ]
    );
    p.run();
    assert_eq!(p.got_exit, vec![0, 1, 2, 3]);

    let sa = p.client.leg_stats(a).unwrap();
    let sb = p.client.leg_stats(b).unwrap();
    assert_eq!(
        sa,
        LegStats {
            data_bytes_sent: 12,
            data_bytes_received: 8,
            msgs_sent: 3,
            msgs_received: 2,
            switches_sent: 1,
            switches_received: 1,
            last_seq_sent: 4,
            last_seq_recv: 3,
        }
    );
    assert_eq!(
        sb,
        LegStats {
            data_bytes_sent: 4,
            data_bytes_received: 0,
            msgs_sent: 1,
            msgs_received: 1,
            switches_sent: 1,
            switches_received: 1,
            last_seq_sent: 3,
            last_seq_recv: 2,
        }
    );
    // The exit's view of the same legs mirrors the client's.
    let ea = p.exit.leg_stats(p.map[&a]).unwrap();
    let eb = p.exit.leg_stats(p.map[&b]).unwrap();
    assert_eq!(
        (
            ea.data_bytes_received,
            ea.msgs_received,
            ea.switches_received
        ),
        (12, 3, 1)
    );
    assert_eq!(
        (ea.data_bytes_sent, ea.msgs_sent, ea.switches_sent),
        (8, 2, 1)
    );
    assert_eq!((ea.last_seq_sent, ea.last_seq_recv), (3, 4));
    assert_eq!(
        (
            eb.data_bytes_received,
            eb.msgs_received,
            eb.switches_received
        ),
        (4, 1, 1)
    );
    assert_eq!(
        (eb.data_bytes_sent, eb.msgs_sent, eb.switches_sent),
        (0, 1, 1)
    );
    assert_eq!((eb.last_seq_sent, eb.last_seq_recv), (2, 3));

    // B closes (not the current leg on either end, nothing in flight):
    // the sets go on and B's counters stay, with its last numbers.
    p.client
        .leg_closed(b, LegClosedInfo::default(), p.now)
        .unwrap();
    p.exit
        .leg_closed(p.map[&b], LegClosedInfo::default(), p.now)
        .unwrap();
    assert!(p.client.is_linked() && p.exit.is_linked());
    assert_eq!(p.client.leg_stats(b), Some(sb));
    assert_eq!(p.exit.leg_stats(p.map[&b]), Some(eb));
    // A goes on counting; B does not.
    p.client_send_on(a, 4);
    p.run();
    let sa2 = p.client.leg_stats(a).unwrap();
    assert_eq!((sa2.msgs_sent, sa2.data_bytes_sent), (4, 16));
    assert_eq!((sa2.switches_sent, sa2.last_seq_sent), (1, 5));
    assert_eq!(p.client.leg_stats(b), Some(sb));

    // A leg still linking has none; once linked, zeros and its starting
    // numbers (prop 329 §2.4.4: our LINK's).
    let c = p.launch(Duration::from_millis(2));
    assert_eq!(p.client.leg_stats(c), None);
    p.run();
    assert_eq!(
        p.client.leg_stats(c),
        Some(LegStats {
            last_seq_sent: 5,
            last_seq_recv: 3,
            ..LegStats::default()
        })
    );
    assert_eq!(
        p.exit.leg_stats(p.map[&c]),
        Some(LegStats {
            last_seq_sent: 3,
            last_seq_recv: 5,
            ..LegStats::default()
        })
    );
}
