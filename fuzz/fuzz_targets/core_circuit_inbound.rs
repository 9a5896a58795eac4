//! A client circuit (`braid_core::circuit::ClientCircuit`) after it is
//! built through one to three mock relays (ntor or ntor-v3, with or
//! without congestion control, answered by the crypto module's relay
//! side), then fed what a hostile path sends: relay messages with
//! arbitrary command, stream id, length field and body, properly
//! encrypted by the hop that sends them (so they reach the recognized
//! relay cell path), well-formed DATA bursts and honest circuit SENDMEs,
//! garbage relay cells and arbitrary channel cells, interleaved with the
//! client's own sends, the driver's polls, clock steps and channel
//! blocking.
//!
//! Invariants: no panic; queued cells never exceed `max_queued_cells` plus
//! the control reserve; a cell a hop originated is never "unrecognized",
//! and no network input causes an internal error; an error closes the
//! circuit for good; events beyond the build's stay within
//! `max_pending_events` (plus the terminal one); exactly one terminal event; an honest SENDME is
//! accepted; every cell the client sends is recognized by some hop and it
//! never overruns a hop's deliver window; with well-behaved relays the
//! circuit builds.
#![no_main]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use braid_core::cc::{DeliverWindow, SendmeTag as CcTag};
use braid_core::circuit::{
    CONTROL_RESERVE_CELLS, CircError, CircEvent, CircParams, ClientCircuit, HopTarget,
    MAX_RELAY_EARLY,
};
use braid_core::crypto::extensions;
use braid_core::crypto::ntor::{self, NtorSecretKey};
use braid_core::crypto::ntor_v3::{self, NtorV3SecretKey};
use braid_core::crypto::{CELL_BODY_LEN, RelayCellBody, RelayHop, Tor1Keys};
use braid_core::ids::{CircId, HopNum, StreamId};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_bytes::Reader;
use tor_cell::chancell::msg::{AnyChanMsg, Created2, HandshakeType, Relay};
use tor_cell::chancell::{ChanCmd, ChanMsg as _};
use tor_cell::relaycell::msg::{AnyRelayMsg, Data, Extended2, Sendme};
use tor_cell::relaycell::{
    AnyRelayMsgOuter, RelayCellFormat, RelayCmd, RelayMsg as _, StreamId as CellStreamId,
};
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

/// The fuzz input, read front to back; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// A relay of the mock path.
struct MockRelay {
    ntor: NtorSecretKey,
    v3: NtorV3SecretKey,
    speaks_v3: bool,
    /// The `sendme_inc` it answers a congestion control request with.
    cc_answer: Option<u8>,
}

/// The relay side of one built hop.
struct MockHop {
    crypto: RelayHop,
    deliver: DeliverWindow,
    /// Tags of the client's DATA cells that the relay owes a SENDME for.
    owed: VecDeque<CcTag>,
}

struct MockNet {
    rng: StdRng,
    relays: Vec<MockRelay>,
    hops: Vec<MockHop>,
}

impl MockNet {
    fn target(&self, i: usize) -> HopTarget {
        let r = &self.relays[i];
        HopTarget {
            rsa_id: r.ntor.public.id,
            ed_id: r.v3.public.id,
            ntor_onion_key: r.ntor.public.onion_key,
            addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, i as u8 + 1), 9001)),
            ntor_v3: r.speaks_v3,
            request_cc: true,
        }
    }

    /// The relay side of a handshake at the next relay; `None` if it fails.
    fn handshake(&mut self, htype: HandshakeType, skin: &[u8]) -> Option<Vec<u8>> {
        let r = self.relays.get(self.hops.len())?;
        let (reply, keygen, cc) = if htype == HandshakeType::NTOR {
            let (kg, reply) =
                ntor::server_handshake(&mut self.rng, std::slice::from_ref(&r.ntor), skin).ok()?;
            (reply.to_vec(), kg, None)
        } else if htype == HandshakeType::NTOR_V3 && r.speaks_v3 {
            let mut cc = None;
            let answer = r.cc_answer;
            let (reply, kg) = ntor_v3::server_handshake_for_circuit(
                &mut self.rng,
                std::slice::from_ref(&r.v3),
                skin,
                |exts| {
                    Some(match answer {
                        Some(inc) if extensions::requests_cc(exts) => {
                            cc = Some(inc);
                            vec![extensions::cc_response(inc)]
                        }
                        _ => vec![],
                    })
                },
            )
            .ok()?;
            (reply, kg, cc)
        } else {
            return None;
        };
        let keys = Tor1Keys::derive(keygen).ok()?;
        self.hops.push(MockHop {
            crypto: RelayHop::new(&keys),
            deliver: cc.map_or_else(DeliverWindow::circuit, DeliverWindow::circuit_cc),
            owed: VecDeque::new(),
        });
        Some(reply)
    }

    /// Encrypt a plaintext body that hop `hop` originates.
    fn originate(&mut self, hop: usize, body: &mut RelayCellBody) -> CcTag {
        let tag = self.hops[hop].crypto.originate_inbound(body);
        for h in self.hops[..hop].iter_mut().rev() {
            h.crypto.encrypt_inbound(body);
        }
        CcTag::from(*tag.as_bytes())
    }

    fn originate_msg(&mut self, hop: usize, stream: u16, msg: AnyRelayMsg) -> Option<AnyChanMsg> {
        let mut body = AnyRelayMsgOuter::new(CellStreamId::new(stream), msg)
            .encode(RelayCellFormat::V0, &mut self.rng)
            .ok()?;
        self.originate(hop, &mut body);
        Some(AnyChanMsg::Relay(Relay::from_raw(*body)))
    }

    /// A cell from the client; the answers to send back.
    fn deliver(&mut self, cell: AnyChanMsg) -> Vec<AnyChanMsg> {
        let mut body = match cell {
            AnyChanMsg::Create2(c) => {
                assert!(self.hops.is_empty(), "CREATE2 on a live circuit");
                return match self.handshake(c.handshake_type(), c.body()) {
                    Some(reply) => vec![AnyChanMsg::Created2(Created2::new(reply))],
                    None => vec![],
                };
            }
            AnyChanMsg::Relay(r) => r.into_relay_body(),
            AnyChanMsg::RelayEarly(r) => r.into_relay_body(),
            AnyChanMsg::Destroy(_) => return vec![],
            other => panic!("the client sent {}", other.cmd()),
        };
        let mut found = None;
        for (i, h) in self.hops.iter_mut().enumerate() {
            if let Some(tag) = h.crypto.decrypt_outbound(&mut body) {
                found = Some((i, tag));
                break;
            }
        }
        let (hop, tag) = found.expect("a cell from the client that no hop recognizes");
        let Ok(outer) = AnyRelayMsgOuter::decode_singleton(RelayCellFormat::V0, body) else {
            return vec![];
        };
        let (_, msg) = outer.into_streamid_and_msg();
        match msg {
            AnyRelayMsg::Data(_) => {
                let h = &mut self.hops[hop];
                h.deliver
                    .on_data_received()
                    .expect("the client overran a hop's deliver window");
                if h.deliver.take_sendme() {
                    h.owed.push_back(CcTag::from(*tag.as_bytes()));
                }
                vec![]
            }
            AnyRelayMsg::Extend2(e) if hop + 1 == self.hops.len() => {
                match self.handshake(e.handshake_type(), e.handshake()) {
                    Some(reply) => self
                        .originate_msg(hop, 0, Extended2::new(reply).into())
                        .into_iter()
                        .collect(),
                    None => vec![],
                }
            }
            _ => vec![],
        }
    }
}

/// Feed one cell; check what the circuit promises about errors.
fn feed(
    circ: &mut ClientCircuit,
    now: Instant,
    cell: AnyChanMsg,
    honest: bool,
) -> Result<(), CircError> {
    let was_closed = circ.is_closed();
    let r = circ.handle_cell(now, cell);
    if let Err(e) = &r {
        assert!(circ.is_closed(), "error without closing: {e}");
        assert!(
            !matches!(e, CircError::Internal(_)),
            "internal error on network input: {e}"
        );
        if honest {
            assert!(
                !matches!(e, CircError::UnrecognizedCell { .. }),
                "a properly encrypted cell was not recognized"
            );
        }
    }
    if was_closed {
        assert!(r.is_ok(), "cells on a closed circuit are ignored");
    }
    r
}

/// Move cells both ways until nothing moves (the build).
fn pump(circ: &mut ClientCircuit, net: &mut MockNet, now: Instant) {
    while let Some(cell) = circ.poll_transmit() {
        for reply in net.deliver(cell) {
            let _ = feed(circ, now, reply, true);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let shape = inp.u8();
    let n_hops = 1 + usize::from(shape % 3);
    let mut well_behaved = true;
    let relays: Vec<MockRelay> = (0..n_hops)
        .map(|i| {
            let caps = inp.u8();
            let secret = StaticSecret::from([(i as u8).wrapping_mul(7).wrapping_add(1); 32]);
            let cc_answer = match caps >> 2 & 3 {
                0 => None,
                1 => {
                    well_behaved = false;
                    Some(caps >> 4)
                }
                _ => Some(30 + (caps >> 4) % 3),
            };
            MockRelay {
                ntor: NtorSecretKey::new(RsaIdentity::from([i as u8 + 1; 20]), secret.clone()),
                v3: NtorV3SecretKey::new(Ed25519Identity::new([i as u8 + 100; 32]), secret),
                speaks_v3: caps & 1 != 0,
                cc_answer,
            }
        })
        .collect();
    let params = CircParams {
        max_queued_cells: 1 + usize::from(inp.u8() % 64),
        max_pending_events: 1 + usize::from(inp.u8() % 64),
        ..CircParams::default()
    };
    let max_queued = params.max_queued_cells;
    let max_events = params.max_pending_events;
    let mut net = MockNet {
        rng: StdRng::seed_from_u64(u64::from(shape)),
        relays,
        hops: Vec::new(),
    };
    let mut now = Instant::now();
    let circ_id = CircId::new(0x8000_0001).expect("non-zero");
    let mut circ = ClientCircuit::new(
        circ_id,
        net.target(0),
        params,
        &mut StdRng::seed_from_u64(u64::from(shape) + 1),
        now,
    )
    .expect("good onion key");
    for i in 1..n_hops {
        circ.extend(net.target(i), now)
            .expect("within the RELAY_EARLY budget");
    }
    pump(&mut circ, &mut net, now);

    let mut terminal = 0;
    let mut drain = |circ: &mut ClientCircuit| {
        let (mut n, mut build) = (0, 0);
        while let Some(ev) = circ.poll_event() {
            match ev {
                CircEvent::Closed { .. } | CircEvent::BuildFailed { .. } => terminal += 1,
                // Not counted against `max_pending_events` by the circuit
                // (client.rs pushes them directly); bounded by the
                // RELAY_EARLY budget instead: one create plus at most
                // MAX_RELAY_EARLY extends, each a HopAdded and a Built.
                CircEvent::HopAdded { .. } | CircEvent::Built { .. } => build += 1,
                _ => {}
            }
            n += 1;
        }
        assert!(build <= 2 * (1 + usize::from(MAX_RELAY_EARLY)));
        assert!(
            n - build <= max_events + 1,
            "{n} events pending, bound {max_events}"
        );
    };
    drain(&mut circ);
    if well_behaved && max_events >= 8 {
        assert!(
            circ.is_built(),
            "well-behaved relays, but the circuit did not build"
        );
    }

    while !inp.0.is_empty() && !circ.is_closed() {
        let op = inp.u8();
        let hop = usize::from(op >> 4) % net.hops.len().max(1);
        match op % 12 {
            // A relay message with arbitrary fields from a hop.
            0..=2 => {
                if net.hops.is_empty() {
                    continue;
                }
                let cmd = inp.u8();
                let stream = if op & 0x80 != 0 {
                    inp.u16()
                } else {
                    u16::from(inp.u8() & 3)
                };
                let n = usize::from(inp.u16()) % (CELL_BODY_LEN - 11 + 1);
                let payload = inp.bytes(n);
                let len = if op & 0x40 != 0 {
                    inp.u16()
                } else {
                    payload.len() as u16
                };
                let mut body: RelayCellBody = [0; CELL_BODY_LEN];
                body[0] = cmd;
                body[3..5].copy_from_slice(&stream.to_be_bytes());
                body[9..11].copy_from_slice(&len.to_be_bytes());
                body[11..11 + payload.len()].copy_from_slice(payload);
                net.originate(hop, &mut body);
                let _ = feed(
                    &mut circ,
                    now,
                    AnyChanMsg::Relay(Relay::from_raw(body)),
                    true,
                );
            }
            // A burst of DATA from a hop on a stream.
            3 => {
                let count = 1 + usize::from(inp.u8() % 128);
                let stream = 1 + u16::from(inp.u8() % 4);
                for _ in 0..count {
                    let Some(cell) =
                        net.originate_msg(hop, stream, Data::new(b"data").expect("short").into())
                    else {
                        break;
                    };
                    if feed(&mut circ, now, cell, true).is_err() {
                        break;
                    }
                }
            }
            // The honest SENDME a hop owes for the client's DATA.
            4 => {
                let Some(h) = net.hops.get_mut(hop) else {
                    continue;
                };
                let Some(tag) = h.owed.pop_front() else {
                    continue;
                };
                let cell = net
                    .originate_msg(hop, 0, Sendme::from(tag).into())
                    .expect("encodes");
                let r = feed(&mut circ, now, cell, true);
                assert!(r.is_ok(), "an honest SENDME was refused: {r:?}");
            }
            // The client sends DATA (or any message from the input).
            5 | 6 => {
                let count = 1 + usize::from(inp.u8() % 64);
                let stream = StreamId::new(1 + u16::from(inp.u8() % 4));
                let target = HopNum(hop as u8);
                for _ in 0..count {
                    let msg: AnyRelayMsg = if op % 12 == 5 {
                        Data::new(&[0x61; 100]).expect("short").into()
                    } else {
                        let cmd = RelayCmd::from(inp.u8());
                        let n = usize::from(inp.u8());
                        let Ok(m) = AnyRelayMsg::decode_from_reader(
                            cmd,
                            &mut Reader::from_slice(inp.bytes(n)),
                        ) else {
                            break;
                        };
                        m
                    };
                    let queued = circ.queued_cells();
                    match circ.send_relay(target, stream, msg, now) {
                        Ok(()) => {
                            assert!(queued < max_queued, "send_relay accepted over the bound")
                        }
                        Err(CircError::QueueFull { .. }) => break,
                        Err(_) => {}
                    }
                }
            }
            // The driver sends what is ready; the relays answer nothing.
            7 => {
                for _ in 0..=inp.u8() {
                    let Some(cell) = circ.poll_transmit() else {
                        break;
                    };
                    for reply in net.deliver(cell) {
                        let _ = feed(&mut circ, now, reply, true);
                    }
                }
            }
            8 => drain(&mut circ),
            9 => now += Duration::from_millis(u64::from(inp.u16())),
            10 => circ.set_blocked_on_channel(op & 0x10 != 0),
            // Rarer: garbage, other channel cells, closing.
            _ => match op >> 4 {
                0..=5 => {
                    let mut body: RelayCellBody = [0; CELL_BODY_LEN];
                    let n = usize::from(inp.u16()) % (CELL_BODY_LEN + 1);
                    let g = inp.bytes(n);
                    body[..g.len()].copy_from_slice(g);
                    let _ = feed(
                        &mut circ,
                        now,
                        AnyChanMsg::Relay(Relay::from_raw(body)),
                        false,
                    );
                }
                6..=13 => {
                    let cmd = ChanCmd::from(inp.u8());
                    let n = usize::from(inp.u16() % 600);
                    let body = inp.bytes(n);
                    if let Ok(msg) =
                        AnyChanMsg::decode_from_reader(cmd, &mut Reader::from_slice(body))
                    {
                        let _ = feed(&mut circ, now, msg, false);
                    }
                }
                _ => circ.close(),
            },
        }
        assert!(
            circ.queued_cells() <= max_queued + CONTROL_RESERVE_CELLS,
            "{} cells queued, bound {} + {}",
            circ.queued_cells(),
            max_queued,
            CONTROL_RESERVE_CELLS
        );
    }
    drain(&mut circ);
    assert!(terminal <= 1, "{terminal} terminal events");
    assert_eq!(terminal == 1, circ.is_closed(), "terminal event iff closed");
});
