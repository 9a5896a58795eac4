//! Flow control of a [`StreamMap`]'s streams, driven by a scripted exit
//! with the helpers of `tests`: XON/XOFF both ways and the rates we
//! advise (proposal 324 §4), fixed stream windows and their SENDMEs
//! (tor-spec §7.4), and the send backlog the scheduler sees.

use std::time::{Duration, Instant};

use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{AnyRelayMsg, EndReason, Sendme};

use crate::cc::{CcError, FlowParams};
use crate::ids::StreamId;

use super::tests::{
    CELL, body, cc_mode, cmds, data, drain, events, ms, new_map, open, read_all, t0,
};
use super::*;

#[test]
fn xoff_ignored_closes_only_that_stream() {
    let now = t0();
    let p = FlowParams::default();
    let mut m = new_map(cc_mode());
    let a = open(&mut m, now);
    let b = open(&mut m, now);
    events(&mut m);
    let cell = [0x55u8; CELL];
    let limit_cells = usize::try_from(p.xoff_client_bytes).unwrap() / CELL;
    // Fill past the XOFF limit without reading.
    for _ in 0..=limit_cells {
        m.handle_msg(now, a, data(&cell)).unwrap();
    }
    assert!(
        drain(&mut m, false).is_empty(),
        "no XOFF before the 5 ms grace"
    );
    m.handle_msg(now + ms(1), a, data(&cell)).unwrap();
    m.handle_msg(now + ms(6), a, data(&cell)).unwrap();
    let out = drain(&mut m, false);
    assert_eq!(cmds(&out), vec!["XOFF"]);
    assert_eq!(out[0].0, a);
    // The exit may have grace_bytes in flight; then it must stop.
    let grace_cells = usize::try_from(p.xoff_grace_bytes).unwrap() / CELL;
    for _ in 0..grace_cells {
        m.handle_msg(now + ms(7), a, data(&cell)).unwrap();
    }
    assert!(m.recv_buffered(a).unwrap() <= m.recv_limit());
    let e = m.handle_msg(now + ms(8), a, data(&cell)).unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::Flow {
                source: CcError::XoffIgnored { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_protocol_violation());
    assert!(e.to_string().contains("proposal 324"));
    assert_eq!(cmds(&drain(&mut m, false)), vec!["END"]);
    let evs = events(&mut m);
    assert!(evs.contains(&StreamEvent::Ended {
        id: a,
        reason: CloseReason::End(EndReason::TORPROTOCOL),
        remote: false
    }));
    // The other stream is unaffected.
    m.handle_msg(now + ms(9), b, data(b"fine")).unwrap();
    assert_eq!(read_all(&mut m, b, now + ms(9)).0, b"fine");
    m.write(b, b"up").unwrap();
    assert_eq!(cmds(&drain(&mut m, true)), vec!["DATA"]);
    assert_eq!(m.state(b), Some(StreamState::Open));
    // What stream a had buffered is still readable, then EOF.
    let (got, eof) = read_all(&mut m, a, now + ms(10));
    assert!(eof);
    assert_eq!(got.len(), (limit_cells + 3 + grace_cells) * CELL);
}

/// A stream whose exit sent past the XOFF limit for longer than the grace
/// period (XOFF checked), then an application that reads `cells` cells
/// every `every` until the buffer is empty. Returns the map, the stream,
/// the time of the last read and what the map sends then.
fn xoff_then_drain(
    cells: usize,
    every: Duration,
) -> (StreamMap, StreamId, Instant, Vec<(StreamId, AnyRelayMsg)>) {
    let now = t0();
    let p = FlowParams::default();
    let mut m = new_map(cc_mode());
    let a = open(&mut m, now);
    events(&mut m);
    let cell = [1u8; CELL];
    let limit_cells = usize::try_from(p.xoff_client_bytes).unwrap() / CELL;
    for i in 0..limit_cells + 3 {
        let t = if i > limit_cells { now + ms(6) } else { now };
        m.handle_msg(t, a, data(&cell)).unwrap();
    }
    assert_eq!(cmds(&drain(&mut m, false)), vec!["XOFF"]);
    let mut t = now + ms(10);
    let mut buf = vec![0u8; cells * CELL];
    while m.recv_buffered(a).unwrap() > 0 {
        t += every;
        m.read(a, &mut buf, t).unwrap();
    }
    let out = drain(&mut m, false);
    (m, a, t, out)
}

#[test]
fn xon_after_xoff_once_drained() {
    // The application reads everything: XON.
    let (_, _, _, out) = xoff_then_drain(50, ms(10));
    assert_eq!(cmds(&out), vec!["XON"]);
}

#[test]
fn exit_xoff_stops_our_data_until_xon() {
    let now = t0();
    let p = FlowParams::default();
    let cfg = StreamMapConfig {
        send_buffer: 1 << 20,
        ..StreamMapConfig::default()
    };
    let mut m = StreamMap::with_first_id(cfg, cc_mode(), 1);
    let a = open(&mut m, now);
    // An XOFF before we sent anything is a dropmark (proposal 324 §4.1.4).
    let xoff = || AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0));
    let early = m.handle_msg(now, a, xoff()).unwrap_err();
    assert!(
        matches!(
            early,
            StreamError::Flow {
                source: CcError::XoffTooEarly { .. },
                ..
            }
        ),
        "{early}"
    );
    let a = open(&mut m, now);
    let n = usize::try_from(p.xoff_exit_bytes).unwrap() + 10 * CELL;
    let mut left = n;
    while left > 0 {
        let k = m.write(a, &vec![3u8; left.min(65536)]).unwrap();
        left -= k;
        drain(&mut m, true);
    }
    m.write(a, b"held").unwrap();
    m.handle_msg(now, a, xoff()).unwrap();
    assert!(m.poll_transmit(true).is_none(), "XOFF stops DATA");
    let xon = AnyRelayMsg::Xon(Xon::new(FlowCtrlVersion::V0, XonKBpsEwma::Unlimited));
    m.handle_msg(now, a, xon).unwrap();
    assert_eq!(cmds(&drain(&mut m, true)), vec!["DATA"]);
}

#[test]
fn fixed_windows_sendme_every_50_cells() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = open(&mut m, now);
    events(&mut m);
    let mut sendme_at = Vec::new();
    let mut buf = [0u8; CELL];
    for i in 1..=1000 {
        m.handle_msg(now, id, data(&[9u8; CELL])).unwrap();
        m.read(id, &mut buf, now).unwrap();
        for (sid, msg) in drain(&mut m, false) {
            assert_eq!(sid, id);
            assert!(matches!(msg, AnyRelayMsg::Sendme(_)));
            assert!(
                body(msg).is_empty(),
                "stream SENDMEs are empty (tor-spec §7.4)"
            );
            sendme_at.push(i);
        }
    }
    let want: Vec<i32> = (1..=20).map(|k| k * 50).collect();
    assert_eq!(sendme_at, want);
}

#[test]
fn fixed_windows_deliver_overflow_is_violation() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = open(&mut m, now);
    let other = open(&mut m, now);
    for _ in 0..500 {
        m.handle_msg(now, id, data(&[1u8; CELL])).unwrap();
    }
    assert!(drain(&mut m, false).is_empty(), "no SENDME while unread");
    assert_eq!(m.recv_buffered(id), Some(500 * CELL));
    let e = m.handle_msg(now, id, data(b"x")).unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::Flow {
                source: CcError::DeliverWindowExhausted { .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(cmds(&drain(&mut m, false)), vec!["END"]);
    assert_eq!(m.state(other), Some(StreamState::Open));
    // The 500 cells are still readable, then EOF.
    let (got, eof) = read_all(&mut m, id, now);
    assert_eq!(got.len(), 500 * CELL);
    assert!(eof);
}

#[test]
fn fixed_package_window_stops_at_500() {
    let now = t0();
    let cfg = StreamMapConfig {
        send_buffer: 600 * CELL,
        ..StreamMapConfig::default()
    };
    let mut m = StreamMap::with_first_id(cfg, StreamFlowMode::Windowed, 1);
    let id = open(&mut m, now);
    assert_eq!(m.write(id, &vec![0u8; 600 * CELL]).unwrap(), 600 * CELL);
    assert_eq!(drain(&mut m, true).len(), 500);
    assert_eq!(m.send_buffered(id), Some(100 * CELL));
    let sendme = || AnyRelayMsg::Sendme(Sendme::new_empty());
    m.handle_msg(now, id, sendme()).unwrap();
    assert_eq!(drain(&mut m, true).len(), 50);
    m.handle_msg(now, id, sendme()).unwrap();
    assert_eq!(drain(&mut m, true).len(), 50);
    assert_eq!(m.send_buffered(id), Some(0));
    // Ten more SENDMEs fill the window back to 500; the eleventh overflows.
    for _ in 0..10 {
        m.handle_msg(now, id, sendme()).unwrap();
    }
    let e = m.handle_msg(now, id, sendme()).unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::Flow {
                source: CcError::PackageWindowOverflow { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn cc_stream_sendme_is_violation() {
    let now = t0();
    let mut m = new_map(cc_mode());
    let id = open(&mut m, now);
    events(&mut m);
    let e = m
        .handle_msg(now, id, AnyRelayMsg::Sendme(Sendme::new_empty()))
        .unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::Flow {
                source: CcError::StreamSendmeWithCc,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_protocol_violation());
    assert_eq!(cmds(&drain(&mut m, false)), vec!["END"]);
    assert_eq!(
        events(&mut m),
        vec![StreamEvent::Ended {
            id,
            reason: CloseReason::End(EndReason::TORPROTOCOL),
            remote: false
        }]
    );
    // XON/XOFF on a circuit without congestion control is one too.
    let mut w = new_map(StreamFlowMode::Windowed);
    let id = open(&mut w, now);
    let e = w
        .handle_msg(now, id, AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0)))
        .unwrap_err();
    assert!(e.is_protocol_violation(), "{e}");
}

/// The advised rates (KB/s, 0 for unlimited) of the XONs in `msgs`.
fn xon_rates(msgs: &[(StreamId, AnyRelayMsg)]) -> Vec<u32> {
    msgs.iter()
        .filter_map(|(_, m)| match m {
            AnyRelayMsg::Xon(x) => Some(match x.kbytes_per_sec_ewma() {
                XonKBpsEwma::Limited(r) => r.get(),
                XonKBpsEwma::Unlimited => 0,
            }),
            _ => None,
        })
        .collect()
}

/// XOFF, then a slow application advises a low rate; then the exit keeps
/// to that rate, sending bursts of `burst` cells, and the application takes
/// each burst at once. Returns the first advised rate and the advised rates
/// that followed over 3 MB.
fn rates_when_the_application_speeds_up(burst: usize) -> (u32, Vec<u32>) {
    // 25 cells every 20 ms: about 620 KB/s.
    let (mut m, a, mut t, out) = xoff_then_drain(25, ms(20));
    let cell = [1u8; CELL];
    let first = xon_rates(&out);
    assert_eq!(first.len(), 1, "one XON once drained");
    let advised = first[0];
    assert!((300..700).contains(&advised), "{advised}");
    // The exit at the advised rate, in bursts.
    let period = Duration::from_micros((burst * CELL) as u64 * 1000 / u64::from(advised));
    let mut later = Vec::new();
    let mut big = vec![0u8; 1 << 20];
    for _ in 0..(3_000_000 / (burst * CELL)) {
        t += period;
        for _ in 0..burst {
            m.handle_msg(t, a, data(&cell)).unwrap();
        }
        m.read(a, &mut big, t).unwrap();
        later.extend(xon_rates(&drain(&mut m, false)));
    }
    (advised, later)
}

#[test]
fn advised_rate_grows_when_the_application_keeps_up() {
    // prop 324 §4.1.2: while the buffer drains to 0, the advised rate
    // doubles every cc_xon_rate cells; an exit held to a low rate must be
    // let go once the application keeps up, whatever the burst size.
    for burst in [16, 40] {
        let (first, later) = rates_when_the_application_speeds_up(burst);
        println!("bursts of {burst}: first XON {first} KB/s, then {later:?}");
        assert!(
            later.iter().any(|&r| r == 0 || r >= 2 * first),
            "bursts of {burst}: first XON {first} KB/s, then {later:?}"
        );
    }
}

/// The backlog a scheduler sees (ECF): unknown while an application keeps
/// a stream's send buffer at least half full and still writes; otherwise
/// the buffered bytes in DATA cells, whatever their amount once the
/// application stopped writing.
#[test]
fn send_backlog_for_the_scheduler() {
    let now = t0();
    let mut m = new_map(cc_mode());
    let limit = m.config().send_buffer;
    assert_eq!(m.send_backlog(), Some(0), "no streams");
    let id = open(&mut m, now);
    drain(&mut m, true);
    assert_eq!(m.send_backlog(), Some(0));
    m.write(id, &[7; 1000]).unwrap();
    assert_eq!(m.send_backlog(), Some(3), "1000 bytes: 3 cells");
    m.write(id, &vec![7; limit / 2]).unwrap();
    assert_eq!(
        m.send_backlog(),
        None,
        "half full and writing: a bulk transfer"
    );
    // Sent down to two cells: known again.
    while m.send_buffered(id).unwrap() > 2 * CELL {
        m.poll_transmit(true).unwrap();
    }
    assert_eq!(m.send_backlog(), Some(2));
    // The application is done writing: what is buffered is all there is.
    m.write(id, &vec![7; limit * 5 / 8]).unwrap();
    m.shutdown_write(id, now).unwrap();
    let buffered = m.send_buffered(id).unwrap();
    assert!(buffered * 2 >= limit);
    assert_eq!(m.send_backlog(), Some(buffered.div_ceil(CELL) as u64));
}
