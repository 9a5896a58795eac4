//! The relay's circuits against the client's: braid-core's `ClientCircuit`
//! builds through three `RelayCircuit`s in memory, streams flow with
//! SENDMEs and congestion control both ways, and every rule a relay keeps
//! closes the circuit with the DESTROY it should.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, DestroyReason, Relay};
use tor_cell::relaycell::msg::{AnyRelayMsg, Connected, Data};
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use super::*;
use crate::cc::CcParams;
use crate::circuit::{CircEvent, CircParams, ClientCircuit, CloseReason, HopTarget};
use crate::crypto::ntor::NtorSecretKey;
use crate::crypto::ntor_v3::NtorV3SecretKey;
use crate::ids::{CircId, HopNum, StreamId};

/// One relay's keys.
struct R {
    keys: OnionKeys,
    id: RsaIdentity,
    target: HopTarget,
}

fn relay(i: u8) -> R {
    let secret = StaticSecret::from([i.wrapping_mul(13).wrapping_add(3); 32]);
    let id = RsaIdentity::from([i + 1; 20]);
    let ed = Ed25519Identity::new([i + 50; 32]);
    let ntor = NtorSecretKey::new(id, secret.clone());
    let ntor_v3 = NtorV3SecretKey::new(ed, secret);
    let target = HopTarget {
        rsa_id: id,
        ed_id: ed,
        ntor_onion_key: ntor.public.onion_key,
        addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, i + 1), 9001)),
        ntor_v3: true,
        request_cc: true,
    };
    R {
        keys: OnionKeys {
            ntor: vec![ntor],
            ntor_v3: vec![ntor_v3],
        },
        id,
        target,
    }
}

/// A client circuit through relays in memory; the last relay is an edge
/// that answers BEGIN and echoes DATA.
struct Net {
    relays: Vec<R>,
    client: ClientCircuit,
    circs: Vec<RelayCircuit>,
    rng: StdRng,
    /// Edge messages seen at the last hop.
    edge: Vec<(Option<StreamId>, AnyRelayMsg)>,
    echo: bool,
    /// DESTROYs that reached the client.
    client_closed: Option<CloseReason>,
    /// Stream messages the client received.
    client_stream_msgs: u64,
}

impl Net {
    fn new(n: u8, now: Instant) -> Self {
        let mut relays: Vec<R> = (0..n).map(relay).collect();
        // As the client asks: congestion control of the last hop only.
        let last = relays.len() - 1;
        for (i, r) in relays.iter_mut().enumerate() {
            r.target.request_cc = i == last;
        }
        let mut rng = StdRng::seed_from_u64(7);
        let mut client = ClientCircuit::new(
            CircId::new(0x8000_0001).unwrap(),
            relays[0].target.clone(),
            CircParams::default(),
            &mut rng,
            now,
        )
        .unwrap();
        for r in &relays[1..] {
            client.extend(r.target.clone(), now).unwrap();
        }
        Net {
            relays,
            client,
            circs: Vec::new(),
            rng,
            edge: Vec::new(),
            echo: true,
            client_closed: None,
            client_stream_msgs: 0,
        }
    }

    /// Answer a CREATE2 at relay `i` with the previous relay `prev`.
    fn answer(&mut self, i: usize, cell: AnyChanMsg, prev: Option<RsaIdentity>) -> RelayCircuit {
        let AnyChanMsg::Create2(c) = cell else {
            panic!("expected CREATE2, got {cell:?}")
        };
        let r = &self.relays[i];
        let answered = answer_create2(
            &r.keys,
            c.handshake_type(),
            c.body(),
            &CcParams::default(),
            &mut self.rng,
        )
        .unwrap();
        RelayCircuit::new(answered, CcParams::default(), r.id, prev, &mut self.rng)
    }

    /// Move cells until nothing moves.
    fn pump(&mut self, now: Instant) {
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(cell) = self.client.poll_transmit() {
                moved = true;
                if self.circs.is_empty() {
                    let c = self.answer(0, cell, None);
                    self.circs.push(c);
                } else {
                    self.circs[0].handle_from_prev(cell, now);
                }
            }
            for i in 0..self.circs.len() {
                while let Some(cell) = self.circs[i].poll_to_next() {
                    moved = true;
                    if let Some(next) = self.circs.get_mut(i + 1) {
                        next.handle_from_prev(cell, now);
                    }
                }
                while let Some(ev) = self.circs[i].poll_event() {
                    moved = true;
                    match ev {
                        RelayCircEvent::Extend(req) => {
                            let j = self.relays.iter().position(|r| r.id == req.rsa_id).unwrap();
                            let prev = Some(self.relays[i].id);
                            let c = self.answer(j, req.create.into(), prev);
                            self.circs.push(c);
                        }
                        RelayCircEvent::Edge { stream, msg } => {
                            let reply = match &msg {
                                AnyRelayMsg::Begin(_) => Some(Connected::new_empty().into()),
                                AnyRelayMsg::Data(d) if self.echo => {
                                    Some(Data::new(d.as_ref()).unwrap().into())
                                }
                                _ => None,
                            };
                            self.edge.push((stream, msg));
                            if let Some(r) = reply {
                                self.circs[i].send(stream, r, now).unwrap();
                            }
                        }
                        RelayCircEvent::Closed { .. } => {}
                    }
                }
            }
            for i in (0..self.circs.len()).rev() {
                while let Some(cell) = self.circs[i].poll_to_prev() {
                    moved = true;
                    if i == 0 {
                        let _ = self.client.handle_cell(now, cell);
                    } else if matches!(cell, AnyChanMsg::Created2(_)) {
                        let AnyChanMsg::Created2(c) = cell else {
                            unreachable!()
                        };
                        self.circs[i - 1].extended(&c, now);
                    } else {
                        self.circs[i - 1].handle_from_next(cell, now);
                    }
                }
            }
            while let Some(ev) = self.client.poll_event() {
                match ev {
                    CircEvent::Closed { reason } | CircEvent::BuildFailed { reason } => {
                        self.client_closed = Some(reason);
                    }
                    CircEvent::StreamMsg { .. } => self.client_stream_msgs += 1,
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never settled");
    }
}

#[test]
fn a_client_circuit_builds_through_three_relays_and_streams_flow() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.pump(now);
    assert!(net.client.is_built());
    assert_eq!(net.circs.len(), 3);
    let last = HopNum(2);
    assert!(
        net.client.cc_enabled(last),
        "the exit negotiated congestion control"
    );
    assert_eq!(net.circs[2].cc_sendme_inc(), Some(31));
    assert!(
        net.circs[0].cc_sendme_inc().is_none(),
        "only the last hop was asked"
    );
    // A stream: BEGIN, then 2000 DATA cells each way (echoed), with
    // circuit SENDMEs both ways and the windows honoured.
    let sid = StreamId::new(5);
    let begin = crate::stream::Target::hostname("example.com", 80)
        .begin_msg(tor_cell::relaycell::msg::BeginFlags::empty())
        .unwrap();
    net.client.send_relay(last, sid, begin.into(), now).unwrap();
    net.pump(now);
    assert!(matches!(net.edge.last(), Some((_, AnyRelayMsg::Begin(_)))));
    let mut sent = 0;
    while sent < 2000 {
        while net.client.can_send_data(last) && sent < 2000 {
            net.client
                .send_relay(last, sid, Data::new(&[7; 498]).unwrap().into(), now)
                .unwrap();
            sent += 1;
        }
        net.pump(now);
        assert!(net.client_closed.is_none(), "{:?}", net.client_closed);
    }
    net.pump(now);
    let (edge_sent, edge_received) = net.circs[2].data_counts();
    assert_eq!(edge_received, 2000);
    assert_eq!(edge_sent, 2000, "every DATA echoed");
    // CONNECTED and every echoed DATA reached the client.
    assert_eq!(net.client_stream_msgs, 2001);
    let f = net.client.hop_figures(last).unwrap();
    assert!(f.sendmes_received >= 60, "{f:?}");
    assert!(f.sendmes_sent >= 60, "{f:?}");
    assert!(net.circs.iter().all(|c| !c.is_closed()));
}

/// The last hop closes with PROTOCOL; the hops before it pass the
/// DESTROY on as DESTROYED, which is what the client hears (as from C-tor).
#[test]
fn a_cell_no_hop_recognizes_closes_the_circuit_both_ways() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.pump(now);
    net.circs[0].handle_from_prev(AnyChanMsg::Relay(Relay::from_raw([9; 509])), now);
    net.pump(now);
    assert!(net.circs.iter().all(RelayCircuit::is_closed));
    assert_eq!(
        net.client_closed,
        Some(CloseReason::Destroyed {
            reason: DestroyReason::DESTROYED
        })
    );
}

/// tor-spec §5.6: a relay closes a circuit that sends more than 8
/// RELAY_EARLY cells. Counted with DROP cells the only hop recognizes.
#[test]
fn relay_early_beyond_eight_closes() {
    let now = Instant::now();
    let mut net = Net::new(1, now);
    net.pump(now);
    let mut closed_at = None;
    for k in 1..=9 {
        net.client
            .send_relay(
                HopNum(0),
                None,
                tor_cell::relaycell::msg::Drop::default().into(),
                now,
            )
            .unwrap();
        let cell = net.client.poll_transmit().unwrap();
        let AnyChanMsg::Relay(r) = cell else {
            panic!("{cell:?}")
        };
        net.circs[0].handle_from_prev(r.into_early(), now);
        if net.circs[0].is_closed() && closed_at.is_none() {
            closed_at = Some(k);
        }
    }
    assert_eq!(closed_at, Some(9));
    assert!(matches!(
        net.circs[0].poll_event(),
        Some(RelayCircEvent::Closed {
            reason: DestroyReason::PROTOCOL
        })
    ));
}

#[test]
fn extend_back_to_ourselves_or_the_previous_hop_is_refused() {
    let now = Instant::now();
    // The client asks relay 1 to extend back to relay 0.
    let mut net = Net::new(2, now);
    let back = net.relays[0].target.clone();
    net.client.extend(back, now).unwrap();
    net.pump(now);
    assert!(net.circs[1].is_closed());
    assert!(matches!(
        net.client_closed,
        Some(CloseReason::Destroyed { .. })
    ));
}

#[test]
fn destroy_from_the_next_hop_reaches_the_client_as_destroyed() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.pump(now);
    net.circs[1].handle_from_next(
        tor_cell::chancell::msg::Destroy::new(DestroyReason::FINISHED).into(),
        now,
    );
    net.pump(now);
    assert_eq!(
        net.client_closed,
        Some(CloseReason::Destroyed {
            reason: DestroyReason::DESTROYED
        })
    );
    assert!(net.circs[0].is_closed() && net.circs[1].is_closed());
}

#[test]
fn the_next_channel_closing_reaches_the_client_as_channel_closed() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.pump(now);
    net.circs[0].handle_next_gone();
    net.pump(now);
    assert_eq!(
        net.client_closed,
        Some(CloseReason::Destroyed {
            reason: DestroyReason::CHANNEL_CLOSED
        })
    );
}

#[test]
fn a_flood_toward_a_blocked_next_hop_closes_only_that_circuit() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.pump(now);
    // The next channel takes nothing: relay 0 queues what it passes on.
    let mut closed = false;
    for _ in 0..(MAX_QUEUED_CELLS + 10) {
        net.client
            .send_relay(
                HopNum(2),
                None,
                tor_cell::relaycell::msg::Drop::default().into(),
                now,
            )
            .unwrap();
        while let Some(cell) = net.client.poll_transmit() {
            net.circs[0].handle_from_prev(cell, now);
        }
        if net.circs[0].is_closed() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the queue toward the next hop is bounded");
    assert_eq!(
        net.circs[0].queued().1,
        1,
        "only the DESTROY is left for the next hop"
    );
    let mut reasons = Vec::new();
    while let Some(ev) = net.circs[0].poll_event() {
        if let RelayCircEvent::Closed { reason } = ev {
            reasons.push(reason);
        }
    }
    assert_eq!(reasons, vec![DestroyReason::RESOURCELIMIT]);
}

#[test]
fn create_fast_and_ntor_answers() {
    let mut rng = StdRng::seed_from_u64(3);
    let (state, x) = crate::crypto::fast::client_handshake(&mut rng);
    let a = answer_create_fast(&x, &mut rng).unwrap();
    let AnyChanMsg::CreatedFast(c) = a.reply else {
        panic!()
    };
    state.finish(&c.into_handshake()).unwrap();
    assert_eq!(a.cc, None);
    assert!(answer_create_fast(&[0; 19], &mut rng).is_err());
    // An unknown handshake type is refused.
    let r = relay(0);
    assert!(matches!(
        answer_create2(
            &r.keys,
            tor_cell::chancell::msg::HandshakeType::TAP,
            &[0; 186],
            &CcParams::default(),
            &mut rng
        ),
        Err(RelayCircError::UnsupportedHandshake(_))
    ));
}
