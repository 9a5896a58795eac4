//! A client circuit (`braid_core::circuit::ClientCircuit`) after it is
//! built through one to three mock relays (braid-core's
//! `test_support::circuit_network`: ntor or ntor-v3, with or without
//! congestion control, answered by the crypto module's relay side), then
//! fed what a hostile path sends: relay messages with
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
use std::time::{Duration, Instant};

use braid_core::cc::SendmeTag as CcTag;
use braid_core::circuit::{
    CONTROL_RESERVE_CELLS, CircError, CircEvent, CircParams, ClientCircuit, MAX_RELAY_EARLY,
};
use braid_core::crypto::{CELL_BODY_LEN, RelayCellBody};
use braid_core::ids::{CircId, HopNum, StreamId};
use braid_core::test_support::circuit_network::MockNet;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_bytes::Reader;
use tor_cell::chancell::msg::{AnyChanMsg, Created2, Relay};
use tor_cell::chancell::{ChanCmd, ChanMsg as _};
use tor_cell::relaycell::msg::{AnyRelayMsg, Data, Extended2, Sendme};
use tor_cell::relaycell::{AnyRelayMsgOuter, RelayCellFormat, RelayCmd, RelayMsg as _};

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

/// The path: braid-core's mock relays (their handshakes, onion layers and
/// deliver windows), answering the client passively.
struct Path {
    net: MockNet,
    /// Per hop, the tags of the client's DATA cells that the relay owes a
    /// SENDME for, oldest first.
    owed: Vec<VecDeque<CcTag>>,
}

impl Path {
    /// A cell from the client; the answers to send back. CREATE2 and an
    /// EXTEND2 to the last hop get the next relay's handshake (nothing if
    /// it fails); the client's DATA counts against each hop's deliver
    /// window; nothing else is answered. Every relay cell must be
    /// recognized by some hop.
    fn deliver(&mut self, cell: AnyChanMsg) -> Vec<AnyChanMsg> {
        let net = &mut self.net;
        let mut body = match cell {
            AnyChanMsg::Create2(c) => {
                assert!(net.hops.is_empty(), "CREATE2 on a live circuit");
                return match net.handshake(0, c.handshake_type(), c.body()) {
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
        for (i, h) in net.hops.iter_mut().enumerate() {
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
                let h = &mut net.hops[hop];
                h.deliver
                    .on_data_received()
                    .expect("the client overran a hop's deliver window");
                if h.deliver.take_sendme() {
                    self.owed.resize_with(net.hops.len(), VecDeque::new);
                    self.owed[hop].push_back(CcTag::from(*tag.as_bytes()));
                }
                vec![]
            }
            AnyRelayMsg::Extend2(e)
                if hop + 1 == net.hops.len() && net.hops.len() < net.relays.len() =>
            {
                match net.handshake(net.hops.len(), e.handshake_type(), e.handshake()) {
                    Some(reply) => vec![net.originate(hop, 0, Extended2::new(reply).into())],
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
fn pump(circ: &mut ClientCircuit, path: &mut Path, now: Instant) {
    while let Some(cell) = circ.poll_transmit() {
        for reply in path.deliver(cell) {
            let _ = feed(circ, now, reply, true);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let shape = inp.u8();
    let n_hops = 1 + usize::from(shape % 3);
    let mut well_behaved = true;
    // Each relay: (speaks ntor-v3, the `sendme_inc` it answers a
    // congestion control request with).
    let relays: Vec<(bool, Option<u8>)> = (0..n_hops)
        .map(|_| {
            let caps = inp.u8();
            let cc_answer = match caps >> 2 & 3 {
                0 => None,
                1 => {
                    well_behaved = false;
                    Some(caps >> 4)
                }
                _ => Some(30 + (caps >> 4) % 3),
            };
            (caps & 1 != 0, cc_answer)
        })
        .collect();
    let params = CircParams {
        max_queued_cells: 1 + usize::from(inp.u8() % 64),
        max_pending_events: 1 + usize::from(inp.u8() % 64),
        ..CircParams::default()
    };
    let max_queued = params.max_queued_cells;
    let max_events = params.max_pending_events;
    let mut path = Path {
        net: MockNet::new(&relays, u64::from(shape)),
        owed: Vec::new(),
    };
    let mut now = Instant::now();
    let circ_id = CircId::new(0x8000_0001).expect("non-zero");
    let mut circ = ClientCircuit::new(
        circ_id,
        path.net.target(0),
        params,
        &mut StdRng::seed_from_u64(u64::from(shape) + 1),
        now,
    )
    .expect("good onion key");
    for i in 1..n_hops {
        circ.extend(path.net.target(i), now)
            .expect("within the RELAY_EARLY budget");
    }
    pump(&mut circ, &mut path, now);

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
        let net = &mut path.net;
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
                net.originate_body(hop, &mut body);
                let _ = feed(
                    &mut circ,
                    now,
                    AnyChanMsg::Relay(Relay::from_raw(body)),
                    true,
                );
            }
            // A burst of DATA from a hop on a stream.
            3 => {
                if net.hops.is_empty() {
                    continue;
                }
                let count = 1 + usize::from(inp.u8() % 128);
                let stream = 1 + u16::from(inp.u8() % 4);
                for _ in 0..count {
                    let cell =
                        net.originate(hop, stream, Data::new(b"data").expect("short").into());
                    if feed(&mut circ, now, cell, true).is_err() {
                        break;
                    }
                }
            }
            // The honest SENDME a hop owes for the client's DATA.
            4 => {
                let Some(tag) = path.owed.get_mut(hop).and_then(VecDeque::pop_front) else {
                    continue;
                };
                let cell = path.net.originate(hop, 0, Sendme::from(tag).into());
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
                    for reply in path.deliver(cell) {
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
