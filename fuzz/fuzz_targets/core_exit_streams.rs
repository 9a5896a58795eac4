//! The exit's streams of one circuit (`braid_core::exit::ExitStreamMap`):
//! a hostile client's messages, decoded from fuzz bytes with tor-cell
//! (any command, any body: BEGIN with any ADDRPORT and flags, RESOLVE with
//! any query, DATA, END, SENDME, XON/XOFF with any rate, ...) or built
//! well-formed, on a few stream ids or any id, interleaved with the
//! driver's answers (connected, refuse, resolved), its reads and writes,
//! shutdowns and closes, the circuit's polls with and without its window,
//! time, timers and the circuit's end. Fixed windows or XON/XOFF; small
//! limits so they are reached; any mix of the configuration's switches.
//!
//! Invariants (braid-core's `exit::invariants::ExitRun`, which its
//! proptests use too): no panic; streams, refusals, half-closed entries,
//! both buffers of every stream and their circuit totals within their
//! bounds, the map's bookkeeping in agreement with its streams; DATA only
//! with the circuit's window open, after CONNECTED, never after the
//! client's END, carrying the destination's bytes in order; the driver
//! reads exactly the client's accepted bytes, in order; a client message
//! never gives a misuse error.
#![no_main]

use std::time::Duration;

use braid_core::exit::invariants::{ExitOp, ExitRun};
use braid_core::exit::{ExitConfig, ExitStreamMap};
use braid_core::stream::StreamFlowMode;
use braid_core::test_support::stream_invariants::small_xon_xoff;
use libfuzzer_sys::fuzz_target;
use tor_bytes::Reader;
use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{AnyRelayMsg, Begin, Data, End, EndReason, Resolve, Sendme};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

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

/// A client's message: well-formed, or whatever tor-cell decodes.
fn client_msg(inp: &mut Input<'_>) -> Option<AnyRelayMsg> {
    let kind = inp.u8();
    Some(match kind % 10 {
        0 => {
            // BEGIN with fuzzed ADDRPORT and flags, parsed as on the wire.
            let n = usize::from(inp.u8() % 64);
            let mut body = inp.bytes(n).to_vec();
            body.push(0);
            if kind & 0x10 != 0 {
                body.extend_from_slice(&u32::from(inp.u8()).to_be_bytes());
            }
            let b = <Begin as tor_cell::relaycell::msg::Body>::decode_from_reader(
                &mut Reader::from_slice(&body),
            )
            .ok()?;
            AnyRelayMsg::Begin(b)
        }
        1 => {
            let port = inp.u16();
            let host =
                ["example.com", "192.0.2.5", "2001:db8::5", "x.onion"][usize::from(kind >> 4) % 4];
            AnyRelayMsg::Begin(Begin::new(host, port, u32::from(inp.u8() & 7)).ok()?)
        }
        2 => {
            let n = usize::from(inp.u8() % 80);
            let q = String::from_utf8_lossy(inp.bytes(n)).into_owned();
            AnyRelayMsg::Resolve(Resolve::new(&q))
        }
        3 | 4 => {
            let len = usize::from(inp.u16() % 499).max(1);
            let start = inp.u8();
            let bytes: Vec<u8> = (0..len).map(|i| start.wrapping_add(i as u8)).collect();
            AnyRelayMsg::Data(Data::new(&bytes).ok()?)
        }
        5 => AnyRelayMsg::End(End::new_with_reason(EndReason::from(inp.u8()))),
        6 => AnyRelayMsg::Sendme(Sendme::new_empty()),
        7 => AnyRelayMsg::Xon(Xon::new(
            FlowCtrlVersion::V0,
            match std::num::NonZeroU32::new(u32::from(inp.u16())) {
                None => XonKBpsEwma::Unlimited,
                Some(r) => XonKBpsEwma::Limited(r),
            },
        )),
        8 => AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0)),
        _ => {
            let cmd = RelayCmd::from(inp.u8());
            let n = usize::from(inp.u16() % 499);
            let body = inp.bytes(n);
            AnyRelayMsg::decode_from_reader(cmd, &mut Reader::from_slice(body)).ok()?
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let flags = inp.u8();
    let cfg = ExitConfig {
        max_streams: 1 + usize::from(flags & 3),
        dest_buffer: 1000 + 1000 * usize::from(flags >> 2 & 1),
        dest_buffer_total: 3000,
        to_dest_total: 6000 + 20_000 * usize::from(flags >> 3 & 1),
        connect_timeout: Duration::from_millis(500),
        flush_timeout: Duration::from_millis(300),
        max_half_closed: usize::from(flags >> 4 & 3),
        half_closed_linger: Duration::from_millis(200),
        max_data_len: if flags & 0x40 != 0 { 100 } else { 498 },
        serves_directory: flags & 0x80 != 0,
        ipv6_exit: flags & 0x20 != 0,
        client_first_hop: flags & 0x30 == 0x30,
        // A directory-only relay (BEGIN and RESOLVE refused at once).
        exits: flags & 0x81 != 0x81,
        // Live stream migration (Braid proposal 001 §4) on some runs.
        migrate: flags & 0x09 == 0x09,
    };
    let mode = if inp.u8() & 1 != 0 {
        small_xon_xoff()
    } else {
        StreamFlowMode::Windowed
    };
    let mut run = ExitRun::new(ExitStreamMap::with_seed(cfg, mode, 1));
    while !inp.0.is_empty() {
        let op = inp.u8();
        let s = usize::from(op >> 4);
        let step = match op % 14 {
            0..=3 => {
                // Mostly ids 1-4; sometimes any.
                let id = if op & 0x80 != 0 {
                    inp.u16()
                } else {
                    1 + u16::from(op >> 4 & 3)
                };
                let Some(msg) = client_msg(&mut inp) else {
                    continue;
                };
                ExitOp::Client { id, msg }
            }
            4 => {
                let Some(msg) = client_msg(&mut inp) else {
                    continue;
                };
                ExitOp::Open { msg }
            }
            5 => {
                let r = inp.u8();
                ExitOp::Connect {
                    s,
                    refuse: (r & 0x80 != 0).then_some(r & 0x0f),
                    v6: r & 0x40 != 0,
                }
            }
            6 => ExitOp::Resolved {
                s,
                n: usize::from(inp.u8() % 32),
            },
            7 => ExitOp::Read {
                s,
                len: usize::from(inp.u16() % 3000),
            },
            8 => ExitOp::Write {
                s,
                len: usize::from(inp.u16() % 3000),
            },
            9 => {
                if op & 0x10 != 0 {
                    ExitOp::Shutdown { s }
                } else {
                    ExitOp::Close { s }
                }
            }
            10 => ExitOp::Transmit {
                data: op & 0x10 != 0,
                n: 1 + usize::from(op >> 5),
            },
            11 => ExitOp::Events,
            12 => ExitOp::Advance {
                ms: u64::from(inp.u16() % 2000),
            },
            _ => {
                if op & 0xf0 != 0xf0 {
                    continue;
                }
                ExitOp::CircuitClosed
            }
        };
        let desc = format!("{step:?}");
        if let Err(e) = run.step(step) {
            panic!("{desc}: {e}");
        }
    }
    // Whatever is left goes out within the rules.
    if let Err(e) = run.step(ExitOp::Events).and_then(|()| {
        run.step(ExitOp::Transmit {
            data: true,
            n: 100_000,
        })
    }) {
        panic!("drain: {e}");
    }
});
