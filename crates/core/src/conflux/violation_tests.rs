//! [`ConfluxSet`] refusing what breaks the protocol, on the in-memory
//! pair of `tests` (whose helpers these use): each violation closes the
//! set (or fails the leg still linking) with the rule named, and what an
//! exit set refuses of a LINK (prop 329 §4.2).

use std::time::{Duration, Instant};

use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{
    AnyRelayMsg, ConfluxLink, ConfluxLinked, ConfluxLinkedAck, ConfluxSwitch,
};

use super::tests::{Pair, data, linked_pair, nonce, stream};
use super::*;

/// Violations on a linked leg close the set; on a linking leg, only the leg.
#[test]
fn violations() {
    let linked_ack = || -> AnyRelayMsg { ConfluxLinkedAck::default().into() };
    let switch = |n| -> AnyRelayMsg { ConfluxSwitch::new(n).into() };

    // Client receives LINKED_ACK / LINK.
    for m in [
        linked_ack(),
        ConfluxLink::new(
            LinkInfo {
                nonce: nonce(7),
                last_seqno_sent: 0,
                last_seqno_recv: 0,
                desired_ux: V1DesiredUx::NO_OPINION,
            }
            .to_payload()
            .unwrap(),
        )
        .into(),
    ] {
        let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
        let cmd = m.cmd();
        let e = p.client.handle_msg(legs[0], None, m, p.now).unwrap_err();
        assert_eq!(e, ConfluxError::WrongDirection { leg: legs[0], cmd });
        assert!(e.is_protocol_violation());
        assert!(p.client.is_closed());
        assert_eq!(
            p.client
                .handle_msg(legs[0], stream(), data(0), p.now)
                .unwrap_err(),
            ConfluxError::Closed
        );
    }

    // LINKED twice.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    let again = ConfluxLinked::new(
        LinkInfo {
            nonce: nonce(7),
            last_seqno_sent: 0,
            last_seqno_recv: 0,
            desired_ux: V1DesiredUx::NO_OPINION,
        }
        .to_payload()
        .unwrap(),
    );
    assert_eq!(
        p.client
            .handle_msg(legs[1], None, again.into(), p.now)
            .unwrap_err(),
        ConfluxError::LinkedTwice { leg: legs[1] }
    );

    // SWITCH 0 after data; SWITCH repeated: C-tor sends a few such empty
    // switches, MAX_EMPTY_SWITCHES in a row pass, the next closes the set.
    // LINKED_ACK twice at the exit.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    p.client
        .handle_msg(legs[0], stream(), data(0), p.now)
        .unwrap();
    for _ in 0..MAX_EMPTY_SWITCHES {
        p.client
            .handle_msg(legs[1], None, switch(0), p.now)
            .unwrap();
    }
    assert_eq!(
        p.client
            .handle_msg(legs[1], None, switch(0), p.now)
            .unwrap_err(),
        ConfluxError::SwitchZero { leg: legs[1] }
    );
    assert!(p.client.is_closed());
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    // The first SWITCH on a leg is not empty; repeats are.
    for _ in 0..=MAX_EMPTY_SWITCHES {
        p.client
            .handle_msg(legs[1], None, switch(3), p.now)
            .unwrap();
    }
    assert_eq!(
        p.client
            .handle_msg(legs[1], None, switch(3), p.now)
            .unwrap_err(),
        ConfluxError::SwitchRepeated { leg: legs[1] }
    );
    assert!(p.client.is_closed());
    let e0 = p.map[&legs[0]];
    assert_eq!(
        p.exit
            .handle_msg(e0, None, linked_ack(), p.now)
            .unwrap_err(),
        ConfluxError::AckTwice { leg: e0 }
    );

    // C-tor's first-leg race: SWITCH(0) before any data is fine.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    p.client
        .handle_msg(legs[1], None, switch(0), p.now)
        .unwrap();
    p.client
        .handle_msg(legs[1], stream(), data(0), p.now)
        .unwrap();
    assert_eq!(p.client.poll_delivered().map(|d| d.seq), Some(1));

    // An implausible jump before any data (arti's check, generalised).
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    assert!(matches!(
        p.client.handle_msg(legs[1], None, switch(1_000_000), p.now),
        Err(ConfluxError::SwitchTooFar { .. })
    ));

    // Overlapping sequence numbers: B claims 1..=3 after A delivered 1..=3.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    for i in 0..3 {
        p.client
            .handle_msg(legs[0], stream(), data(i), p.now)
            .unwrap();
    }
    assert_eq!(
        p.client
            .handle_msg(legs[1], stream(), data(9), p.now)
            .unwrap_err(),
        ConfluxError::StaleSeq {
            leg: legs[1],
            seq: 1,
            delivered: 3
        }
    );
    // Duplicate: two legs claim 5 (a third could still bring 1..=4).
    let (mut p, legs) = linked_pair(4, 0, &[5, 5, 5]);
    p.client
        .handle_msg(legs[0], None, switch(4), p.now)
        .unwrap();
    p.client
        .handle_msg(legs[0], stream(), data(5), p.now)
        .unwrap();
    p.client
        .handle_msg(legs[1], None, switch(4), p.now)
        .unwrap();
    assert_eq!(
        p.client
            .handle_msg(legs[1], stream(), data(5), p.now)
            .unwrap_err(),
        ConfluxError::DuplicateSeq {
            leg: legs[1],
            seq: 5
        }
    );

    // BEGIN_DIR on a leg.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    let bd = AnyRelayMsg::BeginDir(tor_cell::relaycell::msg::BeginDir::default());
    assert_eq!(
        p.client
            .handle_msg(legs[0], stream(), bd, p.now)
            .unwrap_err(),
        ConfluxError::BeginDirOnLeg { leg: legs[0] }
    );

    // Data on a leg still linking: that leg fails, the set is fine.
    let mut p = Pair::new(5, 0);
    let a = p.launch(Duration::from_millis(5));
    p.run();
    let b = p.client.add_leg(p.now).unwrap();
    assert!(matches!(
        p.client.handle_msg(b, stream(), data(0), p.now).unwrap(),
        Handled::Consumed
    ));
    assert!(p.client.is_linked());
    assert_eq!(p.client.legs().collect::<Vec<_>>(), vec![(a, true)]);
}

/// Exit side refusals: a ninth leg (here: beyond max_legs), LINK on a
/// circuit with streams, impossible sequence numbers. None touches the set.
#[test]
fn exit_refusals() {
    let t0 = Instant::now();
    let mut cfg = ConfluxConfig::exit();
    cfg.max_legs = 2;
    let mut e = ConfluxSet::new_exit(nonce(7), cfg);
    let link = |recv: u64| {
        ConfluxLink::new(
            LinkInfo {
                nonce: nonce(7),
                last_seqno_sent: 0,
                last_seqno_recv: recv,
                desired_ux: V1DesiredUx::HIGH_THROUGHPUT,
            }
            .to_payload()
            .unwrap(),
        )
    };
    assert_eq!(
        e.accept_link(&link(0), true, t0).unwrap_err(),
        ConfluxError::LinkOnUsedCircuit
    );
    assert!(matches!(
        e.accept_link(&link(5), false, t0),
        Err(ConfluxError::ImpossibleLinkSeq {
            claimed: 5,
            sent: 0,
            ..
        })
    ));
    e.accept_link(&link(0), false, t0).unwrap();
    e.accept_link(&link(0), false, t0).unwrap();
    assert_eq!(
        e.accept_link(&link(0), false, t0).unwrap_err(),
        ConfluxError::TooManyLegs { max: 2 }
    );
    assert!(!e.is_closed());
    assert_eq!(e.linked_legs(), 2);
    // Another set's LINK.
    let mut e2 = ConfluxSet::new_exit(nonce(9), ConfluxConfig::exit());
    assert!(e2.accept_link(&link(0), false, t0).is_err());
    assert_eq!(e2.linked_legs(), 0);
}
