//! How a [`ClientCircuit`] ends, against the mock relays of
//! [`test_network`](super::test_network) with the helpers of `tests`:
//! DESTROY, TRUNCATED and our own close, and the inbound cells that are
//! protocol violations or tolerated.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::msg::{AnyRelayMsg, Begin, End, Truncated};

use super::tests::{data, events, sid, terminal, three_hop};
use super::*;
use crate::ids::HopNum;

#[test]
fn destroy_closes() {
    let (mut c, _net, now) = three_hop();
    let d = AnyChanMsg::Destroy(Destroy::new(DestroyReason::CHANNEL_CLOSED));
    c.handle_cell(now, d).unwrap();
    assert!(c.is_closed());
    assert!(!c.is_built());
    let evs = events(&mut c);
    assert!(matches!(
        evs[..],
        [CircEvent::Closed {
            reason: CloseReason::Destroyed {
                reason: DestroyReason::CHANNEL_CLOSED
            }
        }]
    ));
    // No DESTROY in answer to a DESTROY.
    assert!(c.poll_transmit().is_none());
}

#[test]
fn truncated_closes_and_destroys() {
    let (mut c, mut net, now) = three_hop();
    let t = net.originate(1, 0, Truncated::new(DestroyReason::CONNECTFAILED).into());
    c.handle_cell(now, t).unwrap();
    let evs = events(&mut c);
    assert_eq!(
        terminal(&evs),
        Some(&CloseReason::Truncated {
            hop: HopNum(1),
            reason: DestroyReason::CONNECTFAILED
        })
    );
    assert!(
        matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(d)) if d.reason() == DestroyReason::NONE)
    );
}

#[test]
fn local_close() {
    let (mut c, mut net, now) = three_hop();
    net.auto_sendme = false;
    c.send_relay(HopNum(2), sid(1), data(b"dropped"), now)
        .unwrap();
    c.close();
    c.close();
    assert!(matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(_))));
    assert!(c.poll_transmit().is_none());
    let evs = events(&mut c);
    assert!(matches!(
        evs[..],
        [CircEvent::Closed {
            reason: CloseReason::Local
        }]
    ));
    assert_eq!(c.extend(net.target(0), now), Err(CircError::Closed));
}

/// tor-spec §5.5.3: an inbound cell no hop recognizes is an error.
#[test]
fn unrecognized_cell_is_a_violation() {
    let (mut c, mut net, now) = three_hop();
    let g = net.garbage();
    let err = c.handle_cell(now, g).unwrap_err();
    assert_eq!(err, CircError::UnrecognizedCell { n_hops: 3 });
    assert!(err.is_protocol_violation());
    assert!(err.to_string().contains("tor-spec §5.5.3"));
    assert!(matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(_))));
}

#[test]
fn inbound_relay_early_and_stray_cells_are_violations() {
    let (mut c, mut net, now) = three_hop();
    let AnyChanMsg::Relay(r) = net.originate(2, 1, data(b"x")) else {
        panic!()
    };
    let err = c.handle_cell(now, r.into_early()).unwrap_err();
    assert!(matches!(err, CircError::UnexpectedCell { .. }));
    assert!(err.to_string().contains("§5.6"));

    let (mut c, _net, now) = three_hop();
    let stray = AnyChanMsg::Created2(tor_cell::chancell::msg::Created2::new(vec![0; 64]));
    assert!(
        c.handle_cell(now, stray)
            .unwrap_err()
            .is_protocol_violation()
    );

    // A forward-only command from a relay.
    let (mut c, mut net, now) = three_hop();
    let begin = Begin::new("example.com", 80, 0).unwrap();
    let cell = net.originate(2, 4, begin.into());
    assert!(matches!(
        c.handle_cell(now, cell),
        Err(CircError::UnexpectedRelayMsg {
            hop: HopNum(2),
            cmd: RelayCmd::BEGIN,
            ..
        })
    ));
    // EXTENDED2 nobody asked for.
    let (mut c, mut net, now) = three_hop();
    let cell = net.originate(
        2,
        0,
        tor_cell::relaycell::msg::Extended2::new(vec![1]).into(),
    );
    assert!(
        c.handle_cell(now, cell)
            .unwrap_err()
            .is_protocol_violation()
    );
}

/// Cells the client tolerates: padding, unknown commands, stream
/// messages from a middle hop (leaky pipe), circuit messages for the
/// layer above.
#[test]
fn tolerated_inbound_cells() {
    let (mut c, mut net, now) = three_hop();
    let drop_cell = net.originate(1, 0, tor_cell::relaycell::msg::Drop::default().into());
    c.handle_cell(now, drop_cell).unwrap();
    let unknown = tor_cell::relaycell::msg::Unrecognized::new(RelayCmd::from(250), vec![1, 2]);
    let cell = net.originate(2, 0, unknown.into());
    c.handle_cell(now, cell).unwrap();
    let cell = net.originate(0, 3, End::new_misc().into());
    c.handle_cell(now, cell).unwrap();
    let switch = tor_cell::relaycell::conflux::ConfluxSwitch::new(7);
    let cell = net.originate(2, 0, switch.into());
    c.handle_cell(now, cell).unwrap();
    let evs = events(&mut c);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(matches!(
        &evs[0],
        CircEvent::StreamMsg {
            hop: HopNum(0),
            msg: AnyRelayMsg::End(_),
            ..
        }
    ));
    assert!(matches!(
        &evs[1],
        CircEvent::CircMsg {
            hop: HopNum(2),
            msg: AnyRelayMsg::ConfluxSwitch(_)
        }
    ));
    assert!(!c.is_closed());
}
