//! Tests of [`ClientCircuit`]: builds, relay traffic, SENDMEs and
//! congestion control, closes, protocol violations and queue bounds,
//! against the mock relays of [`test_network`](super::test_network).
//!
//! Here: the helpers (`pub(super)`, shared with `close_tests` and
//! `bound_tests`, which hold the closes and violations, and the bounds),
//! builds, relay traffic, SENDMEs and congestion control.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};
use tor_cell::relaycell::msg::{AnyRelayMsg, Begin, Data, End, Sendme};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::test_network::{MockNet, build, pump};
use super::*;
use crate::cc::CcError;
use crate::ids::{CircId, HopNum, StreamId};

pub(super) fn sid(n: u16) -> Option<StreamId> {
    StreamId::new(n)
}

pub(super) fn data(bytes: &[u8]) -> AnyRelayMsg {
    Data::new(bytes).unwrap().into()
}

/// All events queued now.
pub(super) fn events(c: &mut ClientCircuit) -> Vec<CircEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// The DATA payloads of the stream events.
pub(super) fn stream_data(evs: &[CircEvent]) -> Vec<(HopNum, u16, Vec<u8>)> {
    evs.iter()
        .filter_map(|e| match e {
            CircEvent::StreamMsg {
                hop,
                stream,
                msg: AnyRelayMsg::Data(d),
            } => Some((*hop, stream.get(), d.as_ref().to_vec())),
            _ => None,
        })
        .collect()
}

pub(super) fn terminal(evs: &[CircEvent]) -> Option<&CloseReason> {
    evs.iter().find_map(|e| match e {
        CircEvent::Closed { reason } | CircEvent::BuildFailed { reason } => Some(reason),
        _ => None,
    })
}

/// A built 3-hop circuit: ntor, ntor, ntor-v3 + CC.
pub(super) fn three_hop() -> (ClientCircuit, MockNet, Instant) {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let mut c = build(&mut net, &[0, 1, 2], CircParams::default(), now);
    let _ = events(&mut c);
    (c, net, now)
}

#[test]
fn builds_three_hops() {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let mut seed = StdRng::seed_from_u64(5);
    let id = CircId::new(0x8000_0042).unwrap();
    let mut c =
        ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now).unwrap();
    assert!(!c.is_built());
    assert_eq!(c.circ_id(), id);
    // The first cell is a CREATE2 with ntor (relay 0 lacks Relay=4).
    let create = c.poll_transmit().unwrap();
    match &create {
        AnyChanMsg::Create2(c2) => assert_eq!(
            c2.handshake_type(),
            tor_cell::chancell::msg::HandshakeType::NTOR
        ),
        other => panic!("{other:?}"),
    }
    for reply in net.deliver(create) {
        c.handle_cell(now, reply).unwrap();
    }
    assert!(c.is_built(), "one hop, nothing planned");
    c.extend(net.target(1), now).unwrap();
    c.extend(net.target(2), now).unwrap();
    assert!(!c.is_built());
    pump(&mut c, &mut net, now).unwrap();
    assert!(c.is_built());
    assert_eq!(c.n_hops(), 3);
    assert_eq!(
        net.hops.iter().map(|h| h.relay).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let evs = events(&mut c);
    let summary: Vec<String> = evs.iter().map(|e| format!("{e:?}")).collect();
    assert!(
        matches!(
            evs[..],
            [
                CircEvent::HopAdded {
                    hop: HopNum(0),
                    cc_sendme_inc: None
                },
                CircEvent::Built { n_hops: 1 },
                CircEvent::HopAdded {
                    hop: HopNum(1),
                    cc_sendme_inc: None
                },
                CircEvent::HopAdded {
                    hop: HopNum(2),
                    cc_sendme_inc: Some(31)
                },
                CircEvent::Built { n_hops: 3 },
            ]
        ),
        "{summary:?}"
    );
    // Both EXTEND2s went in RELAY_EARLY cells; the exit negotiated CC.
    assert_eq!(net.early, [(0, RelayCmd::EXTEND2), (1, RelayCmd::EXTEND2)]);
    assert_eq!(net.extend_not_early, 0);
    assert_eq!(c.relay_early_left(), MAX_RELAY_EARLY - 2);
    assert_eq!(net.hops[2].cc, Some(31));
    assert!(c.cc_enabled(HopNum(2)));
    assert!(!c.cc_enabled(HopNum(1)));
    let f = c.last_hop_figures().unwrap();
    assert_eq!(f.hop, HopNum(2));
    assert_eq!(f.cc_sendme_inc, Some(31));
    assert_eq!(f.cwnd, Some(124));
    assert_eq!(f.inflight, Some(0));
    let f0 = c.hop_figures(HopNum(0)).unwrap();
    assert_eq!(f0.cwnd, None);
    assert_eq!(f0.send_window, 1000);
}

/// Keys agree with every hop: cells to and from each hop round-trip.
#[test]
fn data_round_trips_to_every_hop() {
    let (mut c, mut net, now) = three_hop();
    for hop in 0..3_u8 {
        let payload = vec![hop; 100 + usize::from(hop)];
        c.send_relay(HopNum(hop), sid(7), data(&payload), now)
            .unwrap();
        pump(&mut c, &mut net, now).unwrap();
        let got = stream_data(&events(&mut c));
        assert_eq!(got, [(HopNum(hop), 7, payload.clone())]);
        assert_eq!(net.log.last().unwrap().0, usize::from(hop));
    }
    // A full cell, and BEGIN -> CONNECTED on the exit.
    c.send_relay(HopNum(2), sid(9), data(&[0xee; 498]), now)
        .unwrap();
    let begin = Begin::new("example.com", 80, 0).unwrap();
    c.send_relay(HopNum(2), sid(10), begin.into(), now).unwrap();
    pump(&mut c, &mut net, now).unwrap();
    let evs = events(&mut c);
    assert_eq!(stream_data(&evs), [(HopNum(2), 9, vec![0xee; 498])]);
    assert!(evs.iter().any(|e| matches!(
        e,
        CircEvent::StreamMsg { hop: HopNum(2), stream, msg: AnyRelayMsg::Connected(_) }
            if stream.get() == 10
    )));
    assert_eq!(net.unrecognized, 0);
}

/// tor-spec §5.6: after the two EXTEND2s, the next six cells for hops
/// other than the first are RELAY_EARLY, then plain RELAY.
#[test]
fn relay_early_budget() {
    let (mut c, mut net, now) = three_hop();
    net.echo = false;
    c.send_relay(HopNum(0), sid(1), data(b"first hop"), now)
        .unwrap();
    for i in 0..10_u8 {
        c.send_relay(HopNum(2), sid(1), data(&[i]), now).unwrap();
    }
    pump(&mut c, &mut net, now).unwrap();
    assert_eq!(net.early.len(), 8);
    assert!(net.early[2..].iter().all(|(h, _)| *h == 2));
    assert_eq!(c.relay_early_left(), 0);
    // No RELAY_EARLY left for an EXTEND2.
    assert_eq!(
        c.extend(net.target(0), now),
        Err(CircError::RelayEarlyExhausted)
    );
    assert!(!c.is_closed());
}

/// Requested extensions keep their RELAY_EARLY cells even when other
/// cells are sent meanwhile.
#[test]
fn relay_early_reserved_for_planned_extends() {
    let now = Instant::now();
    let mut net = MockNet::new(&[(true, None); 9], 3);
    let mut c = build(&mut net, &[0, 1], CircParams::default(), now);
    for i in 2..9 {
        c.extend(net.target(i), now).unwrap();
    }
    // The budget is spoken for: 1 used, 1 pending, 6 planned.
    assert_eq!(
        c.extend(net.target(0), now),
        Err(CircError::RelayEarlyExhausted)
    );
    net.echo = false;
    c.send_relay(HopNum(1), sid(3), data(b"x"), now).unwrap();
    pump(&mut c, &mut net, now).unwrap();
    assert!(c.is_built());
    assert_eq!(c.n_hops(), 9);
    assert_eq!(net.extend_not_early, 0);
    assert_eq!(net.early.len(), 8);
    assert!(net.early.iter().all(|(_, cmd)| *cmd == RelayCmd::EXTEND2));
}

/// A relay without ntor-v3 gets ntor and fixed windows, and a SENDME
/// every 100 DATA cells.
#[test]
fn ntor_only_relays_get_fixed_windows() {
    let now = Instant::now();
    let mut net = MockNet::new(&[(false, None), (false, None)], 4);
    let mut c = build(&mut net, &[0, 1], CircParams::default(), now);
    assert!(!c.cc_enabled(HopNum(1)));
    assert_eq!(net.hops[1].cc, None);
    let f = c.last_hop_figures().unwrap();
    assert_eq!(f.cwnd, None);
    assert_eq!(f.send_window, 1000);
    // Inbound: 250 DATA cells from hop 1 -> our SENDMEs after 100, 200.
    for i in 0..250_u32 {
        let cell = net.originate(1, 5, data(&i.to_be_bytes()));
        c.handle_cell(now, cell).unwrap();
        pump(&mut c, &mut net, now).unwrap();
    }
    assert_eq!(net.hops[1].sendmes, [(100, true), (200, true)]);
    assert_eq!(c.hop_figures(HopNum(1)).unwrap().sendmes_sent, 2);
    // Outbound: the fixed window closes after 1000 cells without SENDMEs.
    net.auto_sendme = false;
    net.echo = false;
    let _ = events(&mut c);
    for _ in 0..1000 {
        assert!(c.can_send_data(HopNum(1)));
        c.send_relay(HopNum(1), sid(5), data(b"d"), now).unwrap();
        pump(&mut c, &mut net, now).unwrap();
    }
    assert!(!c.can_send_data(HopNum(1)));
    c.send_relay(HopNum(1), sid(5), data(b"waits"), now)
        .unwrap();
    pump(&mut c, &mut net, now).unwrap();
    assert_eq!(net.hops[1].data_received, 1000);
    assert_eq!(c.hop_figures(HopNum(1)).unwrap().waiting_cells, 1);
}

/// With congestion control, our SENDMEs come every `sendme_inc` (31)
/// DATA cells and carry the tag of the cell that triggered them.
#[test]
fn circuit_sendmes_every_sendme_inc_with_v1_tags() {
    let (mut c, mut net, now) = three_hop();
    for i in 0..100_u32 {
        let cell = net.originate(2, 1, data(&i.to_be_bytes()));
        c.handle_cell(now, cell).unwrap();
        pump(&mut c, &mut net, now).unwrap();
    }
    assert_eq!(stream_data(&events(&mut c)).len(), 100);
    assert_eq!(net.hops[2].sendmes, [(31, true), (62, true), (93, true)]);
    let f = c.last_hop_figures().unwrap();
    assert_eq!(f.data_received, 100);
    assert_eq!(f.sendmes_sent, 3);
    assert_eq!(f.deliver_window, 1000 - 7);
    // Nothing from the middle hops.
    assert!(net.hops[0].sendmes.is_empty() && net.hops[1].sendmes.is_empty());
}

/// A SENDME with a forged tag closes the circuit (proposal 289).
#[test]
fn forged_sendme_tag_closes() {
    let (mut c, mut net, now) = three_hop();
    net.auto_sendme = false;
    net.echo = false;
    for _ in 0..31 {
        c.send_relay(HopNum(2), sid(1), data(b"x"), now).unwrap();
    }
    pump(&mut c, &mut net, now).unwrap();
    let forged = net.originate(2, 0, Sendme::new_tag([0xab; 20]).into());
    let err = c.handle_cell(now, forged).unwrap_err();
    assert_eq!(
        err,
        CircError::FlowControl {
            hop: HopNum(2),
            source: CcError::SendmeTagMismatch
        }
    );
    assert!(err.is_protocol_violation());
    assert!(c.is_closed());
    let evs = events(&mut c);
    assert_eq!(terminal(&evs), Some(&CloseReason::Error(err)));
    assert!(matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(_))));
    assert!(c.poll_transmit().is_none());
    // Closed: further input is ignored, output refused.
    let late = net.originate(2, 1, data(b"late"));
    assert!(c.handle_cell(now, late).is_ok());
    assert_eq!(
        c.send_relay(HopNum(2), sid(1), data(b"x"), now),
        Err(CircError::Closed)
    );
}

/// A SENDME when none is expected, and a version 0 SENDME.
#[test]
fn unexpected_and_v0_sendmes_close() {
    let (mut c, mut net, now) = three_hop();
    let spurious = net.originate(2, 0, Sendme::new_tag([1; 20]).into());
    assert!(matches!(
        c.handle_cell(now, spurious),
        Err(CircError::FlowControl {
            source: CcError::UnexpectedSendme { .. },
            ..
        })
    ));

    let (mut c, mut net, now) = three_hop();
    net.auto_sendme = false;
    net.echo = false;
    for _ in 0..31 {
        c.send_relay(HopNum(2), sid(1), data(b"x"), now).unwrap();
    }
    pump(&mut c, &mut net, now).unwrap();
    let v0 = net.originate(2, 0, Sendme::new_empty().into());
    assert!(matches!(
        c.handle_cell(now, v0),
        Err(CircError::FlowControl {
            source: CcError::SendmeVersionRejected { version: 0, .. },
            ..
        })
    ));
}

/// DATA waits while the congestion window is closed and leaves when a
/// SENDME opens it; RTT is measured.
#[test]
fn data_waits_for_the_congestion_window() {
    let (mut c, mut net, mut now) = three_hop();
    net.auto_sendme = false;
    net.echo = false;
    // cwnd_init = 124: 124 cells go, the rest wait.
    for i in 0..130_u32 {
        c.send_relay(HopNum(2), sid(1), data(&i.to_be_bytes()), now)
            .unwrap();
    }
    // A non-DATA cell on another stream does not wait; one on the
    // waiting stream does.
    c.send_relay(HopNum(2), sid(2), End::new_misc().into(), now)
        .unwrap();
    c.send_relay(HopNum(2), sid(1), End::new_misc().into(), now)
        .unwrap();
    pump(&mut c, &mut net, now).unwrap();
    assert_eq!(net.hops[2].data_received, 124);
    let f = c.last_hop_figures().unwrap();
    assert_eq!(f.inflight, Some(124));
    assert_eq!(f.waiting_cells, 7);
    assert_eq!(c.queued_cells(), 7);
    assert!(!c.can_send_data(HopNum(2)));
    let ends: Vec<u16> = net
        .log
        .iter()
        .filter(|(_, _, m)| m.cmd() == RelayCmd::END)
        .map(|(_, s, _)| *s)
        .collect();
    assert_eq!(ends, [2]);
    // The relay acknowledges the first 31 cells 50 ms later, with the
    // tag of the 31st.
    now += Duration::from_millis(50);
    let tag = net.hops[2].data_tags[30];
    let sendme = net.originate(2, 0, Sendme::from(tag).into());
    c.handle_cell(now, sendme).unwrap();
    pump(&mut c, &mut net, now).unwrap();
    assert_eq!(net.hops[2].data_received, 130);
    let ends: Vec<u16> = net
        .log
        .iter()
        .filter(|(_, _, m)| m.cmd() == RelayCmd::END)
        .map(|(_, s, _)| *s)
        .collect();
    assert_eq!(ends, [2, 1], "stream 1's END after its DATA");
    let f = c.last_hop_figures().unwrap();
    assert_eq!(f.waiting_cells, 0);
    assert_eq!(f.sendmes_received, 1);
    assert!(f.min_rtt.is_some() && f.ewma_rtt.is_some(), "{f:?}");
}

/// A CREATED2 whose AUTH does not verify fails the build.
#[test]
fn bad_created2_fails_the_build() {
    let now = Instant::now();
    for (v3, at_hop) in [(false, 0), (true, 0), (false, 1), (true, 2)] {
        let mut net = MockNet::new(&[(v3, Some(31)); 3], 8);
        let mut seed = StdRng::seed_from_u64(1);
        let id = CircId::new(0x8000_0001).unwrap();
        let mut c =
            ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now).unwrap();
        for i in 1..3 {
            c.extend(net.target(i), now).unwrap();
        }
        if at_hop == 0 {
            net.tamper_reply = true;
            let err = pump(&mut c, &mut net, now).unwrap_err();
            assert!(
                matches!(err, CircError::Handshake { hop: HopNum(0), .. }),
                "{err}"
            );
        } else {
            // Build up to the hop before, then tamper.
            let create = c.poll_transmit().unwrap();
            for r in net.deliver(create) {
                c.handle_cell(now, r).unwrap();
            }
            if at_hop == 2 {
                let ext = c.poll_transmit().unwrap();
                for r in net.deliver(ext) {
                    c.handle_cell(now, r).unwrap();
                }
            }
            net.tamper_reply = true;
            let err = pump(&mut c, &mut net, now).unwrap_err();
            assert!(
                matches!(err, CircError::Handshake { hop, .. } if hop == HopNum(at_hop)),
                "{err}"
            );
        }
        assert!(c.is_closed());
        let evs = events(&mut c);
        assert!(
            matches!(
                evs.last(),
                Some(CircEvent::BuildFailed {
                    reason: CloseReason::Error(CircError::Handshake { .. })
                })
            ),
            "{v3} {at_hop} {evs:?}"
        );
        assert_eq!(net.destroys, 1);
    }
}

/// DESTROY during the build: BuildFailed.
#[test]
fn destroy_while_building() {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let mut seed = StdRng::seed_from_u64(1);
    let id = CircId::new(0x8000_0001).unwrap();
    let mut c =
        ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now).unwrap();
    let _ = c.poll_transmit();
    let d = AnyChanMsg::Destroy(Destroy::new(DestroyReason::RESOURCELIMIT));
    c.handle_cell(now, d).unwrap();
    assert!(matches!(
        events(&mut c)[..],
        [CircEvent::BuildFailed {
            reason: CloseReason::Destroyed { .. }
        }]
    ));
    let _ = &mut net;
}

/// The exit answers congestion control we did not ask for, or with an
/// unacceptable `sendme_inc`.
#[test]
fn bad_cc_negotiation_fails_the_build() {
    let now = Instant::now();
    for (inc, unasked) in [(31, true), (60, false), (0, false)] {
        let mut net = MockNet::new(&[(true, None), (true, Some(inc))], 2);
        net.relays[1].cc_unasked = unasked;
        let mut seed = StdRng::seed_from_u64(1);
        let id = CircId::new(0x8000_0001).unwrap();
        let mut c =
            ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now).unwrap();
        let mut t = net.target(1);
        t.request_cc = !unasked;
        c.extend(t, now).unwrap();
        let err = pump(&mut c, &mut net, now).unwrap_err();
        assert!(
            matches!(err, CircError::CcNegotiation { hop: HopNum(1), .. }),
            "{inc} {unasked}: {err}"
        );
    }
}

/// An ntor-v3 relay that declines congestion control gets fixed
/// windows.
#[test]
fn declined_cc_means_fixed_windows() {
    let now = Instant::now();
    let mut net = MockNet::new(&[(true, None), (true, None)], 2);
    let c = build(&mut net, &[0, 1], CircParams::default(), now);
    assert!(!c.cc_enabled(HopNum(1)));
    assert_eq!(c.last_hop_figures().unwrap().send_window, 1000);
}
