//! Tests of [`ClientCircuit`]: builds, relay traffic, SENDMEs and
//! congestion control, closes, protocol violations and queue bounds,
//! against the mock relays of [`test_network`](super::test_network).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};
use tor_cell::relaycell::msg::{AnyRelayMsg, Begin, Data, End, Sendme, Truncated};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::error::{CircErrorKind, RelayCellError};
use super::test_network::{MockNet, build, pump};
use super::*;
use crate::cc::CcError;
use crate::ids::{CircId, HopNum, StreamId};

fn sid(n: u16) -> Option<StreamId> {
    StreamId::new(n)
}

fn data(bytes: &[u8]) -> AnyRelayMsg {
    Data::new(bytes).unwrap().into()
}

/// All events queued now.
fn events(c: &mut ClientCircuit) -> Vec<CircEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// The DATA payloads of the stream events.
fn stream_data(evs: &[CircEvent]) -> Vec<(HopNum, u16, Vec<u8>)> {
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

fn terminal(evs: &[CircEvent]) -> Option<&CloseReason> {
    evs.iter().find_map(|e| match e {
        CircEvent::Closed { reason } | CircEvent::BuildFailed { reason } => Some(reason),
        _ => None,
    })
}

/// A built 3-hop circuit: ntor, ntor, ntor-v3 + CC.
fn three_hop() -> (ClientCircuit, MockNet, Instant) {
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
