//! One circuit's streams (`braid_core::stream::StreamMap`): relay messages
//! from a hostile exit, decoded from fuzz bytes with tor-cell (any command,
//! any body) or built well-formed (CONNECTED, DATA, END, SENDME, XON, XOFF,
//! RESOLVED), on open, closed or never-used stream ids, interleaved with
//! the application's begin / resolve / write / read / shutdown / close,
//! the circuit's polls, timers and circuit closure. Fixed windows or
//! XON/XOFF, optimistic data or not, small limits so they are reached.
//!
//! Invariants (braid-core's `test_support::stream_invariants`, which its
//! proptests check too): no panic; streams, half-closed entries, send and receive buffers stay
//! within their limits; DATA goes out only when the circuit allows it, at
//! most `max_data_len` bytes, and in the order written; the application
//! reads exactly the DATA the map accepted, in order; an id never used on
//! the circuit is a protocol violation.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use braid_core::ids::StreamId;
use braid_core::stream::{BeginFlags, StreamFlowMode, StreamMap, StreamMapConfig, Target};
use braid_core::test_support::stream_invariants::{StreamChecker, small_xon_xoff};
use libfuzzer_sys::fuzz_target;
use tor_bytes::Reader;
use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{
    AnyRelayMsg, Connected, Data, End, EndReason, Resolved, ResolvedVal, Sendme,
};
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

/// An exit's message: well-formed, or whatever tor-cell decodes.
fn exit_msg(inp: &mut Input<'_>) -> Option<AnyRelayMsg> {
    let kind = inp.u8();
    Some(match kind % 9 {
        0 => AnyRelayMsg::Connected(if kind & 0x10 != 0 {
            Connected::new_empty()
        } else {
            Connected::new_with_addr(IpAddr::from([192, 0, 2, inp.u8()]), u32::from(inp.u8()))
        }),
        1 | 2 => {
            let len = usize::from(inp.u16() % 499).max(1);
            let start = inp.u8();
            let bytes: Vec<u8> = (0..len).map(|i| start.wrapping_add(i as u8)).collect();
            AnyRelayMsg::Data(Data::new(&bytes).ok()?)
        }
        3 => AnyRelayMsg::End(End::new_with_reason(EndReason::from(inp.u8()))),
        4 => AnyRelayMsg::Sendme(Sendme::new_empty()),
        5 => AnyRelayMsg::Xon(Xon::new(
            FlowCtrlVersion::V0,
            match std::num::NonZeroU32::new(u32::from(inp.u16())) {
                None => XonKBpsEwma::Unlimited,
                Some(r) => XonKBpsEwma::Limited(r),
            },
        )),
        6 => AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0)),
        7 => {
            let mut r = Resolved::new_empty();
            r.add_answer(
                ResolvedVal::Ip(IpAddr::from([192, 0, 2, inp.u8()])),
                u32::from(inp.u8()),
            );
            AnyRelayMsg::Resolved(r)
        }
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
    let cfg = StreamMapConfig {
        max_streams: 1 + usize::from(flags & 3),
        send_buffer: 1000 + 500 * usize::from(flags >> 4 & 3),
        max_half_closed: usize::from(flags >> 6),
        optimistic_data: flags & 4 != 0,
        informative_end_reasons: flags & 0x40 != 0,
        max_data_len: if flags & 0x80 != 0 { 100 } else { 498 },
        ..StreamMapConfig::default()
    };
    let mode = if flags & 8 != 0 {
        small_xon_xoff()
    } else {
        StreamFlowMode::Windowed
    };
    let first = inp.u16();
    let mut m = StreamMap::with_first_id(cfg.clone(), mode, first);
    let mut now = Instant::now();
    let mut check = StreamChecker::new();
    let pick = |m: &StreamMap, ids: &[StreamId], s: u8| -> Option<StreamId> {
        let live: Vec<StreamId> = ids
            .iter()
            .copied()
            .filter(|id| m.state(*id).is_some())
            .collect();
        if s < 200 && !live.is_empty() {
            live.get(usize::from(s) % live.len()).copied()
        } else {
            ids.get(usize::from(s) % ids.len().max(1)).copied()
        }
    };

    while !inp.0.is_empty() {
        let op = inp.u8();
        match op % 14 {
            0 => {
                let target = match op >> 4 {
                    0 => Target::ip(IpAddr::from([10, 0, 0, inp.u8()]), inp.u16()),
                    1 => Target::ip(
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, inp.u16()]),
                        inp.u16(),
                    ),
                    2 => {
                        let n = usize::from(inp.u8());
                        Target::hostname(String::from_utf8_lossy(inp.bytes(n)), inp.u16())
                    }
                    _ => Target::hostname("example.com", 80),
                };
                let flags = BeginFlags::from(u32::from(inp.u8() & 7));
                if let Ok(id) = m.begin(&target, flags, now) {
                    check.opened(id);
                }
            }
            1 => {
                let r = if op & 0x10 != 0 {
                    m.resolve_reverse(IpAddr::from([192, 0, 2, inp.u8()]), now)
                } else {
                    let n = usize::from(inp.u8());
                    m.resolve(&String::from_utf8_lossy(inp.bytes(n)), now)
                };
                if let Ok(id) = r {
                    check.opened(id);
                }
            }
            2 => {
                let s = inp.u8();
                let len = usize::from(inp.u16() % 3000);
                if let Some(id) = pick(&m, check.ids(), s) {
                    let bytes: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
                    if let Ok(n) = m.write(id, &bytes) {
                        check.wrote(id, &bytes, n);
                    }
                }
            }
            3 => {
                let s = inp.u8();
                let len = usize::from(inp.u16() % 3000);
                if let Some(id) = pick(&m, check.ids(), s) {
                    let mut buf = vec![0u8; len];
                    if let Ok(n) = m.read(id, &mut buf, now) {
                        check.read(id, &buf[..n]);
                    }
                }
            }
            4 => {
                if let Some(id) = pick(&m, check.ids(), inp.u8()) {
                    let _ = m.shutdown_write(id, now);
                }
            }
            5 => {
                let s = inp.u8();
                let reason = EndReason::from(inp.u8());
                if let Some(id) = pick(&m, check.ids(), s)
                    && m.close(id, reason, now).is_ok()
                {
                    check.closed(id);
                }
            }
            6 | 7 => {
                let can_send = op & 0x10 != 0;
                for _ in 0..=(op >> 5) {
                    let Some((id, msg)) = m.poll_transmit(can_send) else {
                        break;
                    };
                    check.transmitted(id, &msg, can_send, cfg.max_data_len);
                }
            }
            8 => {
                for _ in 0..100 {
                    let Some(ev) = m.poll_event() else { break };
                    check.event(&ev);
                }
            }
            9 => now += Duration::from_millis(u64::from(inp.u16()) * 4),
            10 => {
                m.handle_timeout(now);
                if let Some(t) = m.poll_timeout() {
                    assert!(t > now, "an overdue deadline survived handle_timeout");
                }
            }
            11 => {
                if op & 0xf0 == 0xf0 {
                    m.handle_circuit_closed();
                }
            }
            12 => {
                // A message on a stream we opened.
                let s = inp.u8();
                let Some(msg) = exit_msg(&mut inp) else {
                    continue;
                };
                let Some(id) = pick(&m, check.ids(), s) else {
                    continue;
                };
                let _ = check.deliver(&mut m, now, id, msg);
            }
            _ => {
                // A message on any id.
                let raw = inp.u16();
                let Some(msg) = exit_msg(&mut inp) else {
                    continue;
                };
                let Some(id) = StreamId::new(raw) else {
                    continue;
                };
                // On a never-used id, a protocol violation.
                let _ = check.deliver(&mut m, now, id, msg);
            }
        }
        // Bounds hold after every step.
        check.check_bounds(&m, &cfg);
    }
    // The application reads what is left: each stream gives exactly what
    // the map accepted.
    check.finish(&mut m, now, 700);
});
