//! Tests of the stream layer as a whole: a [`StreamMap`] driven by a
//! scripted exit.
//!
//! Here: the helpers (`pub(super)`, shared with `flow_tests` and
//! `misuse_tests`), opening, data, ending and closing streams, the connect
//! timeout, RESOLVE, and the circuit closing.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tor_cell::relaycell::RelayMsg;
use tor_cell::relaycell::msg::{
    AnyRelayMsg, Begin, BeginFlags, Connected, Data, End, EndReason, Resolved, ResolvedVal,
};

use crate::cc::FlowParams;
use crate::ids::StreamId;

use super::*;

pub(super) const CELL: usize = 498;

pub(super) fn t0() -> Instant {
    Instant::now()
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn cc_mode() -> StreamFlowMode {
    StreamFlowMode::XonXoff {
        params: FlowParams::default(),
        onion: false,
    }
}

pub(super) fn new_map(mode: StreamFlowMode) -> StreamMap {
    StreamMap::with_first_id(StreamMapConfig::default(), mode, 1)
}

pub(super) fn body(msg: AnyRelayMsg) -> Vec<u8> {
    let mut v = Vec::new();
    msg.encode_onto(&mut v).unwrap();
    v
}

pub(super) fn data(bytes: &[u8]) -> AnyRelayMsg {
    AnyRelayMsg::Data(Data::new(bytes).unwrap())
}

pub(super) fn connected() -> AnyRelayMsg {
    AnyRelayMsg::Connected(Connected::new_with_addr("192.0.2.80".parse().unwrap(), 300))
}

pub(super) fn end(r: EndReason) -> AnyRelayMsg {
    AnyRelayMsg::End(End::new_with_reason(r))
}

/// Everything `poll_transmit` gives now.
pub(super) fn drain(m: &mut StreamMap, can_send_data: bool) -> Vec<(StreamId, AnyRelayMsg)> {
    let mut out = Vec::new();
    while let Some(x) = m.poll_transmit(can_send_data) {
        out.push(x);
        assert!(out.len() < 100_000, "poll_transmit never ends");
    }
    out
}

pub(super) fn events(m: &mut StreamMap) -> Vec<StreamEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

pub(super) fn cmds(msgs: &[(StreamId, AnyRelayMsg)]) -> Vec<String> {
    msgs.iter().map(|(_, m)| m.cmd().to_string()).collect()
}

/// Open a stream to example.com:80 and let the exit connect it.
pub(super) fn open(m: &mut StreamMap, now: Instant) -> StreamId {
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
pub(super) fn read_all(m: &mut StreamMap, id: StreamId, now: Instant) -> (Vec<u8>, bool) {
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
