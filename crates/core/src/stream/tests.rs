//! Tests of the stream layer as a whole: a [`StreamMap`] driven by a
//! scripted exit.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tor_cell::relaycell::RelayMsg;
use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{
    AnyRelayMsg, Begin, BeginFlags, Connected, Data, End, EndReason, Resolved, ResolvedVal, Sendme,
};

use crate::cc::{CcError, FlowParams};
use crate::ids::StreamId;

use super::*;

const CELL: usize = 498;

fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cc_mode() -> StreamFlowMode {
    StreamFlowMode::XonXoff {
        params: FlowParams::default(),
        onion: false,
    }
}

fn new_map(mode: StreamFlowMode) -> StreamMap {
    StreamMap::with_first_id(StreamMapConfig::default(), mode, 1)
}

fn body(msg: AnyRelayMsg) -> Vec<u8> {
    let mut v = Vec::new();
    msg.encode_onto(&mut v).unwrap();
    v
}

fn data(bytes: &[u8]) -> AnyRelayMsg {
    AnyRelayMsg::Data(Data::new(bytes).unwrap())
}

fn connected() -> AnyRelayMsg {
    AnyRelayMsg::Connected(Connected::new_with_addr("192.0.2.80".parse().unwrap(), 300))
}

fn end(r: EndReason) -> AnyRelayMsg {
    AnyRelayMsg::End(End::new_with_reason(r))
}

/// Everything `poll_transmit` gives now.
fn drain(m: &mut StreamMap, can_send_data: bool) -> Vec<(StreamId, AnyRelayMsg)> {
    let mut out = Vec::new();
    while let Some(x) = m.poll_transmit(can_send_data) {
        out.push(x);
        assert!(out.len() < 100_000, "poll_transmit never ends");
    }
    out
}

fn events(m: &mut StreamMap) -> Vec<StreamEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn cmds(msgs: &[(StreamId, AnyRelayMsg)]) -> Vec<String> {
    msgs.iter().map(|(_, m)| m.cmd().to_string()).collect()
}

/// Open a stream to example.com:80 and let the exit connect it.
fn open(m: &mut StreamMap, now: Instant) -> StreamId {
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    let out = drain(m, false);
    assert!(
        out.iter()
            .any(|(i, msg)| *i == id && matches!(msg, AnyRelayMsg::Begin(_)))
    );
    m.handle_msg(now, id, connected()).unwrap();
    id
}

/// Read everything buffered on `id`.
fn read_all(m: &mut StreamMap, id: StreamId, now: Instant) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        match m.read(id, &mut buf, now) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.is_would_block() => return (out, false),
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn begin_encodes_targets() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let cases: [(Target, BeginFlags, &[u8]); 3] = [
        (
            Target::hostname("WWW.Example.org", 443),
            BeginFlags::empty(),
            b"www.example.org:443\0",
        ),
        (
            Target::ip("203.0.113.5".parse().unwrap(), 80),
            BeginFlags::IPV6_OKAY,
            b"203.0.113.5:80\0\0\0\0\x01",
        ),
        (
            Target::ip("2001:db8::5".parse().unwrap(), 22),
            BeginFlags::IPV6_OKAY | BeginFlags::IPV6_PREFERRED,
            b"[2001:db8::5]:22\0\0\0\0\x05",
        ),
    ];
    for (target, flags, want) in cases {
        let id = m.begin(&target, flags, now).unwrap();
        assert_eq!(m.state(id), Some(StreamState::Connecting));
        let out = drain(&mut m, true);
        assert_eq!(out.len(), 1);
        let (got_id, msg) = out.into_iter().next().unwrap();
        assert_eq!(got_id, id);
        assert!(matches!(msg, AnyRelayMsg::Begin(_)));
        assert_eq!(body(msg), want, "{target}");
    }
    // The encodings parse back as the same BEGIN.
    let b = Begin::new("example.com", 80, BeginFlags::empty()).unwrap();
    assert_eq!(b.port(), 80);
}

#[test]
fn connected_gives_event_with_address() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = open(&mut m, now);
    assert_eq!(m.state(id), Some(StreamState::Open));
    assert_eq!(
        events(&mut m),
        vec![StreamEvent::Connected {
            id,
            addr: Some(("192.0.2.80".parse::<IpAddr>().unwrap(), 300))
        }]
    );
    // No timeout is pending any more.
    assert_eq!(m.poll_timeout(), None);
    // An empty CONNECTED (onion services, BEGIN_DIR) has no address.
    let id2 = m
        .begin(&Target::hostname("x.onion", 80), BeginFlags::empty(), now)
        .unwrap();
    drain(&mut m, false);
    m.handle_msg(now, id2, AnyRelayMsg::Connected(Connected::new_empty()))
        .unwrap();
    assert_eq!(
        events(&mut m),
        vec![StreamEvent::Connected {
            id: id2,
            addr: None
        }]
    );
}

#[test]
fn bad_connected_closes_stream() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    drain(&mut m, false);
    let zero = AnyRelayMsg::Connected(Connected::new_with_addr("0.0.0.0".parse().unwrap(), 1));
    let e = m.handle_msg(now, id, zero).unwrap_err();
    assert!(matches!(e, StreamError::BadConnected { .. }), "{e}");
    assert!(e.is_protocol_violation());
    let out = drain(&mut m, false);
    assert_eq!(cmds(&out), vec!["END"]);
    assert_eq!(
        events(&mut m),
        vec![StreamEvent::Ended {
            id,
            reason: CloseReason::End(EndReason::TORPROTOCOL),
            remote: false
        }]
    );
}

#[test]
fn data_is_chunked_in_order_and_round_robin() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let a = open(&mut m, now);
    let b = open(&mut m, now);
    events(&mut m);
    let pa: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    let pb: Vec<u8> = (0..1000u32).map(|i| (i % 13) as u8).collect();
    assert_eq!(m.write(a, &pa).unwrap(), 2000);
    assert_eq!(m.write(b, &pb).unwrap(), 1000);
    // The circuit's window is closed: nothing.
    assert!(m.poll_transmit(false).is_none());
    assert!(m.wants_transmit(true));
    assert!(!m.wants_transmit(false));
    let out = drain(&mut m, true);
    let order: Vec<StreamId> = out.iter().map(|(i, _)| *i).collect();
    // Turns: a, b, a, b, a, a (b has 3 cells, a has 5).
    assert_eq!(order, vec![a, b, a, b, a, b, a, a]);
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    for (id, msg) in out {
        let AnyRelayMsg::Data(d) = msg else {
            panic!("not DATA")
        };
        assert!(d.as_ref().len() <= CELL);
        if id == a {
            ga.extend_from_slice(d.as_ref());
        } else {
            gb.extend_from_slice(d.as_ref());
        }
    }
    assert_eq!(ga, pa);
    assert_eq!(gb, pb);
}

#[test]
fn data_waits_for_connected_unless_optimistic() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    m.write(id, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(cmds(&drain(&mut m, true)), vec!["BEGIN"]);
    m.handle_msg(now, id, connected()).unwrap();
    assert_eq!(cmds(&drain(&mut m, true)), vec!["DATA"]);

    let cfg = StreamMapConfig {
        optimistic_data: true,
        ..StreamMapConfig::default()
    };
    let mut m = StreamMap::with_first_id(cfg, StreamFlowMode::Windowed, 1);
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    m.write(id, b"hello").unwrap();
    assert_eq!(cmds(&drain(&mut m, true)), vec!["BEGIN", "DATA"]);
}

#[test]
fn end_reasons_map_to_socks_replies() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let expect = [
        (EndReason::MISC, Socks5Reply::GeneralFailure),
        (EndReason::RESOLVEFAILED, Socks5Reply::HostUnreachable),
        (EndReason::CONNECTREFUSED, Socks5Reply::ConnectionRefused),
        (EndReason::EXITPOLICY, Socks5Reply::NotAllowed),
        (EndReason::DESTROY, Socks5Reply::GeneralFailure),
        (EndReason::DONE, Socks5Reply::ConnectionRefused),
        (EndReason::TIMEOUT, Socks5Reply::TtlExpired),
        (EndReason::NOROUTE, Socks5Reply::HostUnreachable),
        (EndReason::HIBERNATING, Socks5Reply::GeneralFailure),
        (EndReason::INTERNAL, Socks5Reply::GeneralFailure),
        (EndReason::RESOURCELIMIT, Socks5Reply::GeneralFailure),
        (EndReason::CONNRESET, Socks5Reply::ConnectionRefused),
        (EndReason::TORPROTOCOL, Socks5Reply::GeneralFailure),
        (EndReason::NOTDIRECTORY, Socks5Reply::GeneralFailure),
        (EndReason::from(99), Socks5Reply::GeneralFailure),
    ];
    for (reason, reply) in expect {
        let id = m
            .begin(
                &Target::hostname("example.com", 80),
                BeginFlags::empty(),
                now,
            )
            .unwrap();
        drain(&mut m, false);
        m.handle_msg(now, id, end(reason)).unwrap();
        let evs = events(&mut m);
        let [
            StreamEvent::Ended {
                id: eid,
                reason: got,
                remote: true,
            },
        ] = evs.as_slice()
        else {
            panic!("{evs:?}")
        };
        assert_eq!(*eid, id);
        assert_eq!(got.socks5_reply(), reply, "{reason}");
        // Nothing is sent back after the exit's END (tor-spec §6.3).
        assert!(drain(&mut m, true).is_empty());
        // EOF, and the id is released.
        let mut buf = [0u8; 4];
        assert_eq!(m.read(id, &mut buf, now).unwrap(), 0);
        assert_eq!(m.state(id), None);
        assert!(m.read(id, &mut buf, now).unwrap_err().is_misuse());
    }
    assert!(m.is_empty());
}

#[test]
fn end_after_data_delivers_data_then_eof() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = open(&mut m, now);
    events(&mut m);
    m.handle_msg(now, id, data(b"hello ")).unwrap();
    m.handle_msg(now, id, data(b"world")).unwrap();
    m.handle_msg(now, id, end(EndReason::DONE)).unwrap();
    assert_eq!(m.state(id), Some(StreamState::HalfClosedRemote));
    assert_eq!(
        events(&mut m),
        vec![
            StreamEvent::Readable { id },
            StreamEvent::Ended {
                id,
                reason: CloseReason::End(EndReason::DONE),
                remote: true
            }
        ]
    );
    // Writing after the exit's END is refused.
    assert!(m.write(id, b"x").unwrap_err().is_misuse());
    let mut buf = [0u8; 4];
    assert_eq!(m.read(id, &mut buf, now).unwrap(), 4);
    assert_eq!(&buf, b"hell");
    let (rest, eof) = read_all(&mut m, id, now);
    assert_eq!(rest, b"o world");
    assert!(eof);
    assert_eq!(m.state(id), None);
    // Anything after the exit's END is a violation (tor-spec §6.3).
    let e = m.handle_msg(now, id, data(b"late")).unwrap_err();
    assert!(matches!(e, StreamError::ClosedStream { .. }), "{e}");
}

#[test]
fn shutdown_write_sends_end_after_pending_data() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = open(&mut m, now);
    events(&mut m);
    m.write(id, &[7u8; 1000]).unwrap();
    m.shutdown_write(id, now).unwrap();
    assert_eq!(m.state(id), Some(StreamState::HalfClosedLocal));
    assert!(m.write(id, b"more").unwrap_err().is_misuse());
    // Data from the exit is still delivered before our END goes out.
    m.handle_msg(now, id, data(b"reply")).unwrap();
    // The circuit cannot send DATA yet: no END either.
    assert!(drain(&mut m, false).is_empty());
    let out = drain(&mut m, true);
    assert_eq!(cmds(&out), vec!["DATA", "DATA", "DATA", "END"]);
    // MISC on the wire (tor-spec §6.3), DONE locally.
    assert_eq!(body(out[3].1.clone()), vec![1]);
    assert_eq!(
        events(&mut m),
        vec![
            StreamEvent::Readable { id },
            StreamEvent::Ended {
                id,
                reason: CloseReason::End(EndReason::DONE),
                remote: false
            }
        ]
    );
    // Late DATA from the exit (in flight before it saw our END) is
    // dropped, not delivered.
    m.handle_msg(now, id, data(b"late")).unwrap();
    let (got, eof) = read_all(&mut m, id, now);
    assert_eq!(got, b"reply");
    assert!(eof);
    assert_eq!(m.state(id), None);
    assert_eq!(m.half_closed_len(), 1);

    // With informative reasons the END says DONE.
    let cfg = StreamMapConfig {
        informative_end_reasons: true,
        ..StreamMapConfig::default()
    };
    let mut m = StreamMap::with_first_id(cfg, StreamFlowMode::Windowed, 1);
    let id = open(&mut m, now);
    m.shutdown_write(id, now).unwrap();
    let out = drain(&mut m, true);
    assert_eq!(cmds(&out), vec!["END"]);
    assert_eq!(body(out[0].1.clone()), vec![6]);
}

#[test]
fn shutdown_before_begin_sent_sends_nothing() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    m.shutdown_write(id, now).unwrap();
    assert!(drain(&mut m, true).is_empty());
    assert!(matches!(
        events(&mut m).as_slice(),
        [StreamEvent::Ended { remote: false, .. }]
    ));
    // The exit never saw this id: a message on it is a violation.
    let e = m.handle_msg(now, id, connected()).unwrap_err();
    assert!(matches!(e, StreamError::UnknownStream { .. }), "{e}");
}

#[test]
fn close_sends_end_and_releases() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = open(&mut m, now);
    m.write(id, b"unsent").unwrap();
    m.handle_msg(now, id, data(b"unread")).unwrap();
    m.close(id, EndReason::MISC, now).unwrap();
    // No more events for a released stream, unsent data dropped.
    assert!(events(&mut m).is_empty());
    assert_eq!(cmds(&drain(&mut m, true)), vec!["END"]);
    assert_eq!(m.state(id), None);
    assert!(m.close(id, EndReason::MISC, now).unwrap_err().is_misuse());
    // Cells the exit sent before it saw the END are accepted quietly.
    m.handle_msg(now, id, data(b"x")).unwrap();
    m.handle_msg(now, id, end(EndReason::DONE)).unwrap();
    // After its END, nothing more.
    assert!(
        m.handle_msg(now, id, data(b"y"))
            .unwrap_err()
            .is_protocol_violation()
    );
}

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

#[test]
fn connect_timeout() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = m
        .begin(
            &Target::hostname("slow.example", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    let late = m
        .begin_with_timeout(
            &Target::hostname("slow.example", 80),
            BeginFlags::empty(),
            connect_timeout_for_attempt(2),
            now,
        )
        .unwrap();
    drain(&mut m, false);
    assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(10)));
    m.handle_timeout(now + Duration::from_secs(9));
    assert_eq!(m.state(id), Some(StreamState::Connecting));
    m.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(m.state(id), Some(StreamState::Closed));
    assert_eq!(m.state(late), Some(StreamState::Connecting));
    assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(15)));
    let out = drain(&mut m, false);
    assert_eq!(cmds(&out), vec!["END"]);
    assert_eq!(out[0].0, id);
    let evs = events(&mut m);
    let [StreamEvent::Ended { reason, remote, .. }] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert!(!remote);
    assert_eq!(*reason, CloseReason::CONNECT_TIMEOUT);
    assert_eq!(reason.socks5_reply(), Socks5Reply::TtlExpired);
    // A CONNECTED that was in flight is accepted quietly (C-tor's
    // connected_pending); a second is not.
    m.handle_msg(now, id, connected()).unwrap();
    assert!(m.handle_msg(now, id, connected()).is_err());
    // Resolve streams time out too.
    let r = m.resolve("slow.example", now).unwrap();
    m.handle_timeout(now + Duration::from_secs(20));
    assert_eq!(m.state(late), Some(StreamState::Closed));
    assert_eq!(m.state(r), Some(StreamState::Closed));
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn resolve_and_resolved() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let id = m.resolve("Example.COM", now).unwrap();
    assert_eq!(m.state(id), Some(StreamState::Resolving));
    let out = drain(&mut m, true);
    assert_eq!(cmds(&out), vec!["RESOLVE"]);
    assert_eq!(body(out[0].1.clone()), b"example.com\0");
    assert!(m.write(id, b"x").unwrap_err().is_misuse());
    let mut r = Resolved::new_empty();
    r.add_answer(ResolvedVal::Ip("192.0.2.1".parse().unwrap()), 60);
    r.add_answer(ResolvedVal::Ip("2001:db8::1".parse().unwrap()), 60);
    m.handle_msg(now, id, AnyRelayMsg::Resolved(r)).unwrap();
    assert_eq!(
        events(&mut m),
        vec![StreamEvent::Resolved {
            id,
            answers: vec![
                ResolvedAnswer::Ip {
                    addr: "192.0.2.1".parse().unwrap(),
                    ttl: 60
                },
                ResolvedAnswer::Ip {
                    addr: "2001:db8::1".parse().unwrap(),
                    ttl: 60
                },
            ]
        }]
    );
    // Finished: no END is sent for a resolve stream, the id is released.
    assert!(drain(&mut m, true).is_empty());
    assert_eq!(m.state(id), None);
    assert!(
        m.handle_msg(now, id, end(EndReason::DONE))
            .unwrap_err()
            .is_protocol_violation()
    );
    // A reverse lookup; a failed lookup ends with RESOLVEFAILED.
    let rev = m
        .resolve_reverse("192.0.2.1".parse().unwrap(), now)
        .unwrap();
    let out = drain(&mut m, true);
    assert_eq!(body(out[0].1.clone()), b"1.2.0.192.in-addr.arpa\0");
    m.handle_msg(now, rev, end(EndReason::RESOLVEFAILED))
        .unwrap();
    let evs = events(&mut m);
    assert!(matches!(
        evs.as_slice(),
        [StreamEvent::Ended { reason, remote: true, .. }]
            if reason.socks5_reply() == Socks5Reply::HostUnreachable
    ));
    assert_eq!(m.state(rev), None);
    // DATA on a resolve stream is a violation.
    let r2 = m.resolve("x.example", now).unwrap();
    drain(&mut m, true);
    assert!(
        m.handle_msg(now, r2, data(b"no"))
            .unwrap_err()
            .is_protocol_violation()
    );
}

#[test]
fn messages_out_of_place() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    // DATA before CONNECTED.
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    drain(&mut m, false);
    let e = m.handle_msg(now, id, data(b"early")).unwrap_err();
    assert!(matches!(e, StreamError::UnexpectedMessage { .. }), "{e}");
    assert!(e.to_string().contains("tor-spec §6.2"));
    // A second CONNECTED.
    let id = open(&mut m, now);
    let e = m.handle_msg(now, id, connected()).unwrap_err();
    assert!(matches!(e, StreamError::UnexpectedMessage { .. }), "{e}");
    // A BEGIN toward the client.
    let id = open(&mut m, now);
    let begin = Begin::new("example.com", 80, BeginFlags::empty()).unwrap();
    assert!(
        m.handle_msg(now, id, AnyRelayMsg::Begin(begin))
            .unwrap_err()
            .is_protocol_violation()
    );
    // Padding and unknown commands are ignored.
    let id = open(&mut m, now);
    m.handle_msg(now, id, AnyRelayMsg::Drop(Default::default()))
        .unwrap();
    assert_eq!(m.state(id), Some(StreamState::Open));
}

#[test]
fn unknown_and_closed_ids() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let never = StreamId::new(4242).unwrap();
    let e = m.handle_msg(now, never, data(b"?")).unwrap_err();
    assert!(matches!(e, StreamError::UnknownStream { .. }), "{e}");
    assert!(e.is_protocol_violation());
    // A stream we closed while connecting: a CONNECTED and up to a deliver
    // window of DATA may still come, then nothing.
    let id = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    drain(&mut m, false);
    m.close(id, EndReason::MISC, now).unwrap();
    drain(&mut m, false);
    m.handle_msg(now, id, connected()).unwrap();
    for _ in 0..500 {
        m.handle_msg(now, id, data(b"d")).unwrap();
    }
    assert!(matches!(
        m.handle_msg(now, id, data(b"d")),
        Err(StreamError::ClosedStream { .. })
    ));
    // An id we used but forgot (the table is bounded) is ignored.
    let cfg = StreamMapConfig {
        max_half_closed: 1,
        ..StreamMapConfig::default()
    };
    let mut m = StreamMap::with_first_id(cfg, StreamFlowMode::Windowed, 1);
    let a = open(&mut m, now);
    let b = open(&mut m, now);
    m.close(a, EndReason::MISC, now).unwrap();
    m.close(b, EndReason::MISC, now).unwrap();
    drain(&mut m, false);
    assert_eq!(m.half_closed_len(), 1);
    for _ in 0..1000 {
        m.handle_msg(now, a, data(b"old")).unwrap();
    }
}

#[test]
fn cc_half_closed_is_timed() {
    let now = t0();
    let mut m = new_map(cc_mode());
    let id = open(&mut m, now);
    m.close(id, EndReason::MISC, now).unwrap();
    drain(&mut m, false);
    for _ in 0..2000 {
        m.handle_msg(now + ms(5), id, data(&[0u8; CELL])).unwrap();
    }
    assert!(
        m.handle_msg(now + Duration::from_secs(61), id, data(b"late"))
            .unwrap_err()
            .is_protocol_violation()
    );
}

#[test]
fn limits_and_misuse() {
    let now = t0();
    let cfg = StreamMapConfig {
        max_streams: 2,
        send_buffer: 1000,
        ..StreamMapConfig::default()
    };
    let mut m = StreamMap::with_first_id(cfg, StreamFlowMode::Windowed, u16::MAX);
    let a = open(&mut m, now);
    // Ids wrap around and skip zero.
    assert_eq!(a.get(), u16::MAX);
    let b = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    assert_eq!(b.get(), 1);
    let e = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap_err();
    assert_eq!(e, StreamError::TooManyStreams { limit: 2 });
    assert!(e.is_resource_limit());
    // Backpressure: a short write, then Writable once room frees up.
    events(&mut m);
    assert_eq!(m.write(a, &[1u8; 1500]).unwrap(), 1000);
    assert_eq!(m.write(a, b"more").unwrap(), 0);
    assert!(events(&mut m).is_empty());
    drain(&mut m, true);
    assert_eq!(events(&mut m), vec![StreamEvent::Writable { id: a }]);
    // Reading a live stream with nothing buffered would block.
    let mut buf = [0u8; 8];
    assert!(m.read(a, &mut buf, now).unwrap_err().is_would_block());
    let ghost = StreamId::new(77).unwrap();
    assert_eq!(
        m.write(ghost, b"x").unwrap_err(),
        StreamError::NoSuchStream { id: ghost }
    );
    assert!(m.shutdown_write(ghost, now).unwrap_err().is_misuse());
    let bad = m.begin(&Target::hostname("bad host", 80), BeginFlags::empty(), now);
    assert!(bad.unwrap_err().is_misuse());
    m.close(b, EndReason::MISC, now).unwrap();
    // The slot is free once the END is out.
    assert!(
        m.resolve("example.com", now)
            .unwrap_err()
            .is_resource_limit()
    );
    assert_eq!(cmds(&drain(&mut m, false)), vec!["END"]);
    let res = m.resolve("example.com", now).unwrap();
    assert!(m.read(res, &mut buf, now).unwrap_err().is_misuse());
    assert!(m.shutdown_write(res, now).unwrap_err().is_misuse());
    assert_eq!(m.len(), 2);
    assert!(!m.is_empty());
    assert_eq!(m.config().max_streams, 2);
}

#[test]
fn circuit_closed_ends_every_stream() {
    let now = t0();
    let mut m = new_map(StreamFlowMode::Windowed);
    let a = open(&mut m, now);
    let b = m
        .begin(
            &Target::hostname("example.com", 80),
            BeginFlags::empty(),
            now,
        )
        .unwrap();
    m.handle_msg(now, a, data(b"kept")).unwrap();
    events(&mut m);
    m.handle_circuit_closed();
    assert!(drain(&mut m, true).is_empty());
    let evs = events(&mut m);
    assert_eq!(evs.len(), 2);
    assert!(evs.iter().all(|e| matches!(
        e,
        StreamEvent::Ended { reason: CloseReason::End(r), remote: true, .. } if *r == EndReason::DESTROY
    )));
    assert_eq!(read_all(&mut m, a, now), (b"kept".to_vec(), true));
    assert_eq!(read_all(&mut m, b, now), (Vec::new(), true));
    assert!(m.is_empty());
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
