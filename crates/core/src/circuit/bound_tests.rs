//! A [`ClientCircuit`]'s bounds, against the mock relays of
//! [`test_network`](super::test_network) with the helpers of `tests`:
//! local errors that leave it open, the caller's queue, the control
//! reserve and the event queue, and random operations that keep them.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use tor_cell::relaycell::msg::{End, Sendme};

use super::error::{CircErrorKind, RelayCellError};
use super::test_network::{MockNet, build, pump};
use super::tests::{data, events, sid, three_hop};
use super::*;
use crate::ids::HopNum;

#[test]
fn local_errors_leave_the_circuit_open() {
    let (mut c, mut net, now) = three_hop();
    assert_eq!(
        c.send_relay(HopNum(3), sid(1), data(b"x"), now),
        Err(CircError::NoSuchHop {
            hop: HopNum(3),
            n_hops: 3
        })
    );
    assert!(matches!(
        c.send_relay(HopNum(2), None, data(b"x"), now),
        Err(CircError::Encode(RelayCellError::BadStreamId { .. }))
    ));
    assert!(matches!(
        c.send_relay(HopNum(2), None, Sendme::new_tag([0; 20]).into(), now),
        Err(CircError::ReservedCommand { .. })
    ));
    let ext = tor_cell::relaycell::msg::Extend2::new(
        vec![],
        tor_cell::chancell::msg::HandshakeType::NTOR,
        vec![],
    );
    assert!(matches!(
        c.send_relay(HopNum(2), None, ext.into(), now),
        Err(CircError::ReservedCommand { .. })
    ));
    // A stream-level SENDME is the stream layer's to send.
    c.send_relay(HopNum(2), sid(1), Sendme::new_empty().into(), now)
        .unwrap();
    assert!(!c.is_closed());
    pump(&mut c, &mut net, now).unwrap();
    assert_eq!(CircError::Closed.kind(), CircErrorKind::Local);
}

/// The outbound queue bound holds, and is a local resource limit.
#[test]
fn queue_bound() {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let params = CircParams {
        max_queued_cells: 10,
        ..CircParams::default()
    };
    let mut c = build(&mut net, &[0, 1, 2], params, now);
    // The driver does not transmit: the ready queue fills.
    for i in 0..10_u8 {
        c.send_relay(HopNum(2), sid(1), data(&[i]), now).unwrap();
    }
    assert_eq!(c.queue_space(), 0);
    assert!(!c.can_send_data(HopNum(2)));
    let err = c
        .send_relay(HopNum(2), sid(1), data(b"over"), now)
        .unwrap_err();
    assert_eq!(
        err,
        CircError::QueueFull {
            queued: 10,
            limit: 10
        }
    );
    assert!(err.is_resource_limit());
    assert!(!c.is_closed());
    // Draining makes room.
    let _ = c.poll_transmit();
    c.send_relay(HopNum(2), sid(1), data(b"fits"), now).unwrap();
}

/// Inbound DATA while the driver never transmits: our SENDMEs fill the
/// control reserve and the circuit closes on the resource limit.
#[test]
fn control_reserve_overflow_closes() {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let params = CircParams {
        max_queued_cells: 4,
        ..CircParams::default()
    };
    let mut c = build(&mut net, &[0, 1, 2], params, now);
    let mut closed = None;
    for i in 0..5000_u32 {
        let cell = net.originate(2, 1, data(&i.to_be_bytes()));
        if let Err(e) = c.handle_cell(now, cell) {
            closed = Some((i, e));
            break;
        }
        let _ = events(&mut c);
    }
    let (i, e) = closed.unwrap();
    assert!(e.is_resource_limit(), "{e}");
    // 36 SENDMEs fit (4 + 32), the 37th does not: cell 37 * 31.
    assert_eq!(i + 1, 37 * 31);
    assert!(c.is_closed());
}

/// Stream events beyond their bound close the circuit.
#[test]
fn event_bound() {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let params = CircParams {
        max_pending_events: 5,
        ..CircParams::default()
    };
    let mut c = build(&mut net, &[0, 1, 2], params, now);
    let _ = events(&mut c);
    for i in 0..5_u8 {
        let cell = net.originate(2, 1, data(&[i]));
        c.handle_cell(now, cell).unwrap();
    }
    let cell = net.originate(2, 1, data(b"one too many"));
    assert_eq!(
        c.handle_cell(now, cell),
        Err(CircError::EventQueueFull { limit: 5 })
    );
    let evs = events(&mut c);
    assert_eq!(evs.len(), 6, "5 messages and the terminal event");
}

/// Random operations never panic and never exceed the bounds.
#[derive(Debug, Clone)]
enum Op {
    /// Send DATA to a hop on a stream.
    Send(u8, u16, u16),
    /// Send END on a stream.
    End(u8, u16),
    /// Let the mock network answer everything queued.
    Pump,
    /// Transmit one cell without the network answering.
    Drop1,
    /// The exit sends n DATA cells.
    Inbound(u8, u16),
    /// The exit sends a forged SENDME.
    Forge,
    /// Garbage arrives.
    Garbage,
    /// Time passes.
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4_u8, 1..4_u16, 1..60_u16).prop_map(|(h, s, n)| Op::Send(h, s, n)),
        1 => (0..4_u8, 1..4_u16).prop_map(|(h, s)| Op::End(h, s)),
        4 => Just(Op::Pump),
        2 => Just(Op::Drop1),
        3 => (0..3_u8, 1..80_u16).prop_map(|(h, n)| Op::Inbound(h, n)),
        1 => Just(Op::Forge),
        1 => Just(Op::Garbage),
        2 => (1..200_u16).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_operations_stay_bounded(
        ops in proptest::collection::vec(op(), 1..60),
        limit in 1..80_usize,
        echo in any::<bool>(),
    ) {
        let mut now = Instant::now();
        let mut net = MockNet::three_hops();
        net.echo = echo;
        let params = CircParams {
            max_queued_cells: limit,
            max_pending_events: 500,
            ..CircParams::default()
        };
        let mut c = build(&mut net, &[0, 1, 2], params, now);
        let mut dropped = false;
        for op in ops {
            match op {
                Op::Send(h, s, n) => {
                    for i in 0..n {
                        let r = c.send_relay(HopNum(h), sid(s), data(&i.to_be_bytes()), now);
                        if let Err(e) = r {
                            prop_assert!(
                                matches!(e, CircError::QueueFull { .. } | CircError::Closed | CircError::NoSuchHop { .. }),
                                "{}", e
                            );
                            prop_assert!(!e.is_protocol_violation());
                        }
                    }
                }
                Op::End(h, s) => {
                    let _ = c.send_relay(HopNum(h), sid(s), End::new_misc().into(), now);
                }
                Op::Pump => {
                    if !dropped {
                        let _ = pump(&mut c, &mut net, now);
                    }
                }
                Op::Drop1 => {
                    // A cell lost: the relay side is out of step from
                    // now on, so stop talking to it.
                    if c.poll_transmit().is_some() {
                        dropped = true;
                    }
                }
                Op::Inbound(h, n) => {
                    if !dropped {
                        for i in 0..n {
                            let cell = net.originate(usize::from(h), 1, data(&i.to_be_bytes()));
                            let _ = c.handle_cell(now, cell);
                        }
                    }
                }
                Op::Forge => {
                    if !dropped {
                        let cell = net.originate(2, 0, Sendme::new_tag([9; 20]).into());
                        if !c.is_closed() {
                            prop_assert!(c.handle_cell(now, cell).is_err());
                        }
                    }
                }
                Op::Garbage => {
                    let g = net.garbage();
                    let was_closed = c.is_closed();
                    let r = c.handle_cell(now, g);
                    prop_assert_eq!(r.is_err(), !was_closed);
                }
                Op::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            }
            prop_assert!(c.queued_cells() <= limit + CONTROL_RESERVE_CELLS);
            let evs = events(&mut c);
            prop_assert!(evs.len() <= 501);
            if c.is_closed() {
                prop_assert!(!c.is_built());
            }
            for h in 0..3_u8 {
                let f = c.hop_figures(HopNum(h)).unwrap();
                if let (Some(cwnd), Some(inflight)) = (f.cwnd, f.inflight) {
                    prop_assert!(inflight <= cwnd + 31);
                }
            }
        }
        prop_assert_eq!(net.unrecognized, 0);
        prop_assert_eq!(net.extend_not_early, 0);
    }
}
