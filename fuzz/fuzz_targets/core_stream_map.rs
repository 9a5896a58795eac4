//! One circuit's streams (`braid_core::stream::StreamMap`): relay messages
//! from a hostile exit, decoded from fuzz bytes with tor-cell (any command,
//! any body) or built well-formed (CONNECTED, DATA, END, SENDME, XON, XOFF,
//! RESOLVED), on open, closed or never-used stream ids, interleaved with
//! the application's begin / resolve / write / read / shutdown / close,
//! the circuit's polls, timers and circuit closure. Fixed windows or
//! XON/XOFF, optimistic data or not, small limits so they are reached.
//!
//! Invariants (the module's documented bounds, as in its proptests): no
//! panic; streams, half-closed entries, send and receive buffers stay
//! within their limits; DATA goes out only when the circuit allows it, at
//! most `max_data_len` bytes, and in the order written; the application
//! reads exactly the DATA the map accepted, in order; an id never used on
//! the circuit is a protocol violation.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use braid_core::cc::FlowParams;
use braid_core::ids::StreamId;
use braid_core::stream::{
    BeginFlags, StreamFlowMode, StreamMap, StreamMapConfig, StreamState, Target,
};
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

/// What the target knows about one stream.
#[derive(Default)]
struct Model {
    written: Vec<u8>,
    sent: Vec<u8>,
    delivered: Vec<u8>,
    read: Vec<u8>,
    closed: bool,
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

/// Hand `msg` to the map on `id`, recording accepted DATA in the model.
fn deliver(
    m: &mut StreamMap,
    models: &mut HashMap<StreamId, Model>,
    now: Instant,
    id: StreamId,
    msg: AnyRelayMsg,
) -> Result<(), braid_core::stream::StreamError> {
    let receiving = matches!(
        m.state(id),
        Some(StreamState::Open | StreamState::HalfClosedLocal)
    );
    let bytes = match &msg {
        AnyRelayMsg::Data(d) => Some(d.as_ref().to_vec()),
        _ => None,
    };
    let before = m.recv_buffered(id);
    let r = m.handle_msg(now, id, msg);
    if let (Ok(()), Some(b), true) = (&r, bytes, receiving)
        && let Some(md) = models.get_mut(&id)
    {
        assert_eq!(m.recv_buffered(id), before.map(|x| x + b.len()));
        md.delivered.extend_from_slice(&b);
    }
    r
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
        let cell = 498;
        StreamFlowMode::XonXoff {
            params: FlowParams {
                xoff_client_bytes: 10 * cell,
                xoff_exit_bytes: 4 * cell,
                xon_rate_bytes: 5 * cell,
                xoff_grace_bytes: 20 * cell,
                ..FlowParams::default()
            },
            onion: false,
        }
    } else {
        StreamFlowMode::Windowed
    };
    let first = inp.u16();
    let mut m = StreamMap::with_first_id(cfg.clone(), mode, first);
    let mut now = Instant::now();
    let mut ids: Vec<StreamId> = Vec::new();
    let mut models: HashMap<StreamId, Model> = HashMap::new();
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
                    assert!(!models.contains_key(&id), "id {id} reused");
                    ids.push(id);
                    models.insert(id, Model::default());
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
                    assert!(!models.contains_key(&id), "id {id} reused");
                    ids.push(id);
                    models.insert(id, Model::default());
                }
            }
            2 => {
                let s = inp.u8();
                let len = usize::from(inp.u16() % 3000);
                if let Some(id) = pick(&m, &ids, s) {
                    let bytes: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
                    if let Ok(n) = m.write(id, &bytes) {
                        assert!(n <= len);
                        if let Some(md) = models.get_mut(&id) {
                            md.written.extend_from_slice(&bytes[..n]);
                        }
                    }
                }
            }
            3 => {
                let s = inp.u8();
                let len = usize::from(inp.u16() % 3000);
                if let Some(id) = pick(&m, &ids, s) {
                    let mut buf = vec![0u8; len];
                    if let Ok(n) = m.read(id, &mut buf, now)
                        && let Some(md) = models.get_mut(&id)
                    {
                        md.read.extend_from_slice(&buf[..n]);
                    }
                }
            }
            4 => {
                if let Some(id) = pick(&m, &ids, inp.u8()) {
                    let _ = m.shutdown_write(id, now);
                }
            }
            5 => {
                let s = inp.u8();
                let reason = EndReason::from(inp.u8());
                if let Some(id) = pick(&m, &ids, s)
                    && m.close(id, reason, now).is_ok()
                    && let Some(md) = models.get_mut(&id)
                {
                    md.closed = true;
                    md.delivered.truncate(md.read.len());
                }
            }
            6 | 7 => {
                let can_send = op & 0x10 != 0;
                for _ in 0..=(op >> 5) {
                    let Some((id, msg)) = m.poll_transmit(can_send) else {
                        break;
                    };
                    assert!(models.contains_key(&id), "message on an id never opened");
                    if let AnyRelayMsg::Data(d) = msg {
                        assert!(can_send, "DATA while the circuit said no");
                        let b = d.as_ref();
                        assert!(!b.is_empty() && b.len() <= cfg.max_data_len.min(498));
                        if let Some(md) = models.get_mut(&id) {
                            md.sent.extend_from_slice(b);
                        }
                    }
                }
            }
            8 => {
                for _ in 0..100 {
                    let Some(ev) = m.poll_event() else { break };
                    assert!(models.contains_key(&ev.id()));
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
                let Some(id) = pick(&m, &ids, s) else {
                    continue;
                };
                let _ = deliver(&mut m, &mut models, now, id, msg);
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
                let held = m.state(id).is_some();
                let droppable = matches!(msg, AnyRelayMsg::Drop(_) | AnyRelayMsg::Unrecognized(_));
                let r = deliver(&mut m, &mut models, now, id, msg);
                if !held && !models.contains_key(&id) && !droppable {
                    assert!(
                        r.is_err_and(|e| e.is_protocol_violation()),
                        "never-used id accepted"
                    );
                }
            }
        }
        // Bounds hold after every step.
        assert!(m.len() <= cfg.max_streams);
        assert!(m.half_closed_len() <= cfg.max_half_closed);
        for id in &ids {
            if let Some(n) = m.recv_buffered(*id) {
                assert!(n <= m.recv_limit());
            }
            if let Some(n) = m.send_buffered(*id) {
                assert!(n <= cfg.send_buffer);
            }
            if let Some(md) = models.get(id) {
                assert!(
                    md.written.starts_with(&md.sent),
                    "DATA out of order on {id}"
                );
                assert!(
                    md.delivered.starts_with(&md.read),
                    "read out of order on {id}"
                );
            }
        }
    }
    // The application reads what is left: each stream gives exactly what
    // the map accepted.
    let mut buf = vec![0u8; 700];
    for id in &ids {
        if let Some(md) = models.get_mut(id) {
            if !md.closed {
                for _ in 0..10_000 {
                    match m.read(*id, &mut buf, now) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => md.read.extend_from_slice(&buf[..n]),
                    }
                }
            }
            assert_eq!(md.read, md.delivered, "stream {id}");
        }
    }
});
