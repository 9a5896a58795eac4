//! Property tests of the stream layer: random interleavings of application
//! calls, circuit polls, timers and messages from a (possibly hostile)
//! exit never panic, never exceed a bound, and deliver to the application
//! exactly the data the map accepted, in order, for every stream (the
//! checks are [`StreamChecker`]'s).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{
    AnyRelayMsg, BeginFlags, Connected, Data, End, EndReason, Resolved, ResolvedVal, Sendme,
};

use crate::ids::StreamId;

use super::invariants::{StreamChecker, small_xon_xoff};
use super::*;

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    Begin,
    Resolve,
    Write { s: usize, len: usize },
    Read { s: usize, len: usize },
    Shutdown { s: usize },
    Close { s: usize },
    Transmit { data: bool, n: usize },
    Events,
    Advance { ms: u64 },
    Timeout,
    CircuitClosed,
    Answer,
    Exit { s: usize, msg: ExitMsg },
    StrayId { id: u16, msg: ExitMsg },
}

/// A message the exit sends.
#[derive(Debug, Clone)]
enum ExitMsg {
    Connected,
    Data(usize),
    End(u8),
    Sendme,
    Xon,
    Xoff,
    Resolved,
}

fn exit_msg() -> impl Strategy<Value = ExitMsg> {
    prop_oneof![
        2 => Just(ExitMsg::Connected),
        20 => (1usize..=498).prop_map(ExitMsg::Data),
        1 => (0u8..16).prop_map(ExitMsg::End),
        2 => Just(ExitMsg::Sendme),
        1 => Just(ExitMsg::Xon),
        1 => Just(ExitMsg::Xoff),
        1 => Just(ExitMsg::Resolved),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Begin),
        1 => Just(Op::Resolve),
        4 => (0usize..8, 0usize..3000).prop_map(|(s, len)| Op::Write { s, len }),
        4 => (0usize..8, 0usize..3000).prop_map(|(s, len)| Op::Read { s, len }),
        1 => (0usize..8).prop_map(|s| Op::Shutdown { s }),
        1 => (0usize..8).prop_map(|s| Op::Close { s }),
        8 => (any::<bool>(), 1usize..20).prop_map(|(data, n)| Op::Transmit { data, n }),
        2 => Just(Op::Events),
        3 => (0u64..300).prop_map(|ms| Op::Advance { ms }),
        1 => (0u64..16_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Timeout),
        1 => Just(Op::CircuitClosed),
        6 => Just(Op::Answer),
        24 => (0usize..8, exit_msg()).prop_map(|(s, msg)| Op::Exit { s, msg }),
        1 => (any::<u16>(), exit_msg()).prop_map(|(id, msg)| Op::StrayId { id, msg }),
    ]
}

/// What the scripted exit knows about one stream.
#[derive(Debug, Default)]
struct ExitSide {
    /// Counter for the exit's data pattern.
    next_byte: u32,
    /// Our BEGIN or RESOLVE went out.
    on_wire: bool,
}

fn build(msg: &ExitMsg, exit: Option<&mut ExitSide>) -> AnyRelayMsg {
    match msg {
        ExitMsg::Connected => {
            AnyRelayMsg::Connected(Connected::new_with_addr("192.0.2.1".parse().unwrap(), 60))
        }
        ExitMsg::Data(len) => {
            let start = exit.map_or(0, |e| {
                let s = e.next_byte;
                e.next_byte = e.next_byte.wrapping_add(*len as u32);
                s
            });
            let bytes: Vec<u8> = (0..*len as u32)
                .map(|i| (start.wrapping_add(i) % 251) as u8)
                .collect();
            AnyRelayMsg::Data(Data::new(&bytes).unwrap())
        }
        ExitMsg::End(r) => AnyRelayMsg::End(End::new_with_reason(EndReason::from(*r))),
        ExitMsg::Sendme => AnyRelayMsg::Sendme(Sendme::new_empty()),
        ExitMsg::Xon => AnyRelayMsg::Xon(Xon::new(FlowCtrlVersion::V0, XonKBpsEwma::Unlimited)),
        ExitMsg::Xoff => AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0)),
        ExitMsg::Resolved => {
            let mut r = Resolved::new_empty();
            r.add_answer(ResolvedVal::Ip("192.0.2.2".parse().unwrap()), 5);
            AnyRelayMsg::Resolved(r)
        }
    }
}

/// One run; a broken invariant panics (proptest reports it).
fn run(ops: Vec<Op>, cc: bool, optimistic: bool) {
    let cfg = StreamMapConfig {
        max_streams: 4,
        send_buffer: 2000,
        max_half_closed: 3,
        optimistic_data: optimistic,
        ..StreamMapConfig::default()
    };
    let mode = if cc {
        small_xon_xoff()
    } else {
        StreamFlowMode::Windowed
    };
    let mut m = StreamMap::with_first_id(cfg.clone(), mode, 1);
    let mut now = Instant::now();
    let mut check = StreamChecker::new();
    let mut exit: HashMap<StreamId, ExitSide> = HashMap::new();
    // Mostly a stream the map still holds; sometimes any stream ever opened
    // (to exercise closed and released ids).
    let pick = |m: &StreamMap, ids: &[StreamId], s: usize| {
        let live: Vec<StreamId> = ids
            .iter()
            .copied()
            .filter(|id| m.state(*id).is_some())
            .collect();
        if s < 6 && !live.is_empty() {
            live.get(s % live.len()).copied()
        } else {
            ids.get(s % ids.len().max(1)).copied()
        }
    };

    for op in ops {
        match op {
            Op::Begin => {
                if let Ok(id) = m.begin(
                    &Target::hostname("example.com", 80),
                    BeginFlags::empty(),
                    now,
                ) {
                    check.opened(id);
                }
            }
            Op::Resolve => {
                if let Ok(id) = m.resolve("example.com", now) {
                    check.opened(id);
                }
            }
            Op::Write { s, len } => {
                if let Some(id) = pick(&m, check.ids(), s) {
                    let bytes: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
                    if let Ok(n) = m.write(id, &bytes) {
                        check.wrote(id, &bytes, n);
                    }
                }
            }
            Op::Read { s, len } => {
                if let Some(id) = pick(&m, check.ids(), s) {
                    let mut buf = vec![0u8; len];
                    if let Ok(n) = m.read(id, &mut buf, now) {
                        check.read(id, &buf[..n]);
                    }
                }
            }
            Op::Shutdown { s } => {
                if let Some(id) = pick(&m, check.ids(), s) {
                    let _ = m.shutdown_write(id, now);
                }
            }
            Op::Close { s } => {
                if let Some(id) = pick(&m, check.ids(), s)
                    && m.close(id, EndReason::MISC, now).is_ok()
                {
                    check.closed(id);
                }
            }
            Op::Transmit { data, n } => {
                for _ in 0..n {
                    let Some((id, msg)) = m.poll_transmit(data) else {
                        break;
                    };
                    if matches!(msg, AnyRelayMsg::Begin(_) | AnyRelayMsg::Resolve(_)) {
                        exit.entry(id).or_default().on_wire = true;
                    }
                    check.transmitted(id, &msg, data, cfg.max_data_len);
                }
            }
            Op::Events => {
                for _ in 0..100 {
                    let Some(ev) = m.poll_event() else { break };
                    check.event(&ev);
                }
            }
            Op::Advance { ms } => now += Duration::from_millis(ms),
            Op::Timeout => m.handle_timeout(now),
            Op::CircuitClosed => m.handle_circuit_closed(),
            Op::Answer => {
                // A well-behaved exit answers every BEGIN and RESOLVE it saw.
                for &id in check.ids() {
                    let on_wire = exit.get(&id).is_some_and(|e| e.on_wire);
                    let answer = match m.state(id) {
                        Some(StreamState::Connecting) if on_wire => ExitMsg::Connected,
                        Some(StreamState::Resolving) if on_wire => ExitMsg::Resolved,
                        _ => continue,
                    };
                    let r = m.handle_msg(now, id, build(&answer, None));
                    assert!(r.is_ok(), "{r:?}");
                }
            }
            Op::Exit { s, msg } => {
                if let Some(id) = pick(&m, check.ids(), s) {
                    let msg = build(&msg, Some(exit.entry(id).or_default()));
                    let _ = check.deliver(&mut m, now, id, msg);
                }
            }
            Op::StrayId { id, msg } => {
                if let Some(id) = StreamId::new(id) {
                    let _ = check.deliver(&mut m, now, id, build(&msg, None));
                }
            }
        }
        // Bounds hold after every step.
        check.check_bounds(&m, &cfg);
    }
    // The application reads what is left: every stream gives exactly what
    // the map accepted.
    check.finish(&mut m, now, 700);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random interleavings, fixed windows or XON/XOFF, with or without
    /// optimistic data.
    #[test]
    fn random_interleavings_hold_invariants(
        ops in proptest::collection::vec(op(), 1..400),
        cc in any::<bool>(),
        optimistic in any::<bool>(),
    ) {
        run(ops, cc, optimistic);
    }
}

/// A well-behaved exit that echoes everything back, through a circuit that
/// lets DATA through only now and then: all data arrives intact.
#[test]
fn echo_exit_round_trip() {
    for cc in [false, true] {
        let mode = if cc {
            small_xon_xoff()
        } else {
            StreamFlowMode::Windowed
        };
        let mut m = StreamMap::with_first_id(StreamMapConfig::default(), mode, 1);
        let mut now = Instant::now();
        let ids: Vec<StreamId> = (0..3)
            .map(|_| {
                m.begin(
                    &Target::hostname("echo.example", 7),
                    BeginFlags::empty(),
                    now,
                )
                .unwrap()
            })
            .collect();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut offsets = vec![0usize; ids.len()];
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); ids.len()];
        let mut buf = vec![0u8; 4096];
        let mut exit_cells: HashMap<StreamId, u32> = HashMap::new();
        for round in 0..20_000 {
            now += Duration::from_millis(1);
            for (k, id) in ids.iter().enumerate() {
                let off = offsets[k];
                if off < payload.len()
                    && let Ok(n) = m.write(*id, &payload[off..(off + 3000).min(payload.len())])
                {
                    offsets[k] += n;
                }
            }
            let can_send = round % 3 != 0;
            while let Some((id, msg)) = m.poll_transmit(can_send) {
                match msg {
                    AnyRelayMsg::Begin(_) => m
                        .handle_msg(now, id, build(&ExitMsg::Connected, None))
                        .unwrap(),
                    AnyRelayMsg::Data(d) => {
                        // The exit echoes; on fixed windows it sends a
                        // stream SENDME for every 50 cells (tor-spec §7.4).
                        m.handle_msg(now, id, AnyRelayMsg::Data(d)).unwrap();
                        let c = exit_cells.entry(id).or_insert(0u32);
                        *c += 1;
                        if !cc && c.is_multiple_of(50) {
                            m.handle_msg(now, id, AnyRelayMsg::Sendme(Sendme::new_empty()))
                                .unwrap();
                        }
                    }
                    _ => {}
                }
            }
            for (k, id) in ids.iter().enumerate() {
                while let Ok(n) = m.read(*id, &mut buf, now) {
                    if n == 0 {
                        break;
                    }
                    got[k].extend_from_slice(&buf[..n]);
                }
            }
            if got.iter().all(|g| g.len() == payload.len()) {
                break;
            }
        }
        for g in &got {
            assert_eq!(g.len(), payload.len(), "cc={cc}");
            assert!(g == &payload, "cc={cc}");
        }
    }
}
