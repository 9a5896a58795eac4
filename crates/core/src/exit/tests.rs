//! The exit's streams against the client's: braid-core's `StreamMap` (the
//! client) joined message for message to an `ExitStreamMap`, with a
//! scripted driver (`harness`). Flow control and bounds are in
//! `flow_tests`, the circuit tests in `edge_tests`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{
    AnyRelayMsg, BeginDir, BeginFlags, End, EndReason, Resolve, Sendme,
};

use crate::cc::CcError;
use crate::stream::{
    CloseReason, ResolvedAnswer, Socks5Reply, StreamEvent, StreamFlowMode, Target,
};

use super::harness::*;
use super::*;

#[test]
fn connect_then_bytes_both_ways_and_the_clients_end() {
    for mode in [StreamFlowMode::Windowed, cc()] {
        let mut p = Pair::new(mode.clone(), ExitConfig::default());
        let (id, ev) = p.begin(Target::hostname("Example.COM", 443), BeginFlags::IPV6_OKAY);
        // Without IPv6 exit the IPv6 flag is not passed on.
        assert_eq!(
            ev,
            ExitEvent::Connect {
                id,
                target: Target::hostname("example.com", 443),
                flags: BeginFlags::empty(),
            }
        );
        p.exit.connected(id, ip("192.0.2.80"), 10, p.now).unwrap();
        p.pump();
        // tor-spec §6.2: the address, with C-tor's clipped, fuzzed TTL.
        let addr = p.client_events.iter().find_map(|e| match e {
            StreamEvent::Connected { addr, .. } => Some(*addr),
            _ => None,
        });
        let (a, ttl) = addr.unwrap().unwrap();
        assert_eq!(a, ip("192.0.2.80"));
        assert!((60..=540).contains(&ttl), "{ttl}");
        // Client to destination.
        assert_eq!(p.client.write(id, b"GET / HTTP/1.0\r\n\r\n").unwrap(), 18);
        p.pump();
        assert!(p.exit_events.contains(&ExitEvent::Readable { id }));
        assert_eq!(p.exit_read_all(id), b"GET / HTTP/1.0\r\n\r\n");
        // Destination to client.
        assert_eq!(p.exit_write(id, b"HTTP/1.0 200 OK\r\n"), 17);
        p.pump();
        assert_eq!(p.client_read_all(id), b"HTTP/1.0 200 OK\r\n");
        // The client ends: the driver is told, nothing more goes back.
        p.client.write(id, b"tail").unwrap();
        p.client.shutdown_write(id, p.now).unwrap();
        p.pump();
        assert!(
            p.exit_closed(id).is_empty(),
            "its last bytes wait for the driver"
        );
        assert_eq!(p.exit.state(id), Some(ExitStreamState::HalfClosedRemote));
        assert!(p.exit.write(id, b"late", p.now).is_err());
        assert_eq!(p.exit_read_all(id), b"tail");
        p.pump();
        assert_eq!(p.exit_closed(id), vec![(EndReason::DONE, true)], "{mode:?}");
        assert!(p.exit.is_empty(), "the stream is gone");
        assert!(
            p.exit_sent
                .iter()
                .all(|(_, m)| !matches!(m, AnyRelayMsg::End(_)))
        );
    }
}

/// Every END reason the driver may refuse with reaches the client, which
/// derives C-tor's SOCKS5 reply from it.
#[test]
fn refusals_reach_the_client_with_their_socks_reply() {
    let cases = [
        (EndReason::EXITPOLICY, Socks5Reply::NotAllowed),
        (EndReason::CONNECTREFUSED, Socks5Reply::ConnectionRefused),
        (EndReason::RESOLVEFAILED, Socks5Reply::HostUnreachable),
        (EndReason::NOROUTE, Socks5Reply::HostUnreachable),
        (EndReason::TIMEOUT, Socks5Reply::TtlExpired),
        (EndReason::CONNRESET, Socks5Reply::ConnectionRefused),
        (EndReason::RESOURCELIMIT, Socks5Reply::GeneralFailure),
        (EndReason::TORPROTOCOL, Socks5Reply::GeneralFailure),
        (EndReason::HIBERNATING, Socks5Reply::GeneralFailure),
        (EndReason::MISC, Socks5Reply::GeneralFailure),
    ];
    let mut p = Pair::new(cc(), ExitConfig::default());
    for (reason, reply) in cases {
        let (id, _) = p.begin(Target::hostname("example.net", 25), BeginFlags::empty());
        p.exit.refuse(id, reason, p.now).unwrap();
        p.pump();
        let (got, remote) = p.client_ended(id).unwrap();
        assert!(remote);
        assert_eq!(got, CloseReason::End(reason));
        assert_eq!(got.socks5_reply(), reply, "{reason}");
        assert!(p.exit_closed(id).is_empty(), "the driver refused it itself");
        assert!(p.exit.connected(id, ip("192.0.2.1"), 1, p.now).is_err());
        p.client_events.clear();
    }
    // EXITPOLICY with the address the name resolved to (C-tor
    // `connection_edge_end`): reason, address, clipped TTL on the wire.
    let (id, _) = p.begin(Target::hostname("example.net", 25), BeginFlags::empty());
    p.exit
        .refuse_exit_policy(id, ip("198.51.100.7"), 50, p.now)
        .unwrap();
    p.pump();
    let (_, end) = p.exit_sent.last().unwrap();
    let mut body = Vec::new();
    end.clone().encode_onto(&mut body).unwrap();
    assert_eq!(body, [4, 198, 51, 100, 7, 0, 0, 1, 44]);
    assert_eq!(
        p.client_ended(id).unwrap().0.socks5_reply(),
        Socks5Reply::NotAllowed
    );
    assert_eq!(
        end_reason_for_io(std::io::ErrorKind::ConnectionRefused),
        EndReason::CONNECTREFUSED
    );
}

#[test]
fn resolve_forward_reverse_and_failures() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    // Forward.
    let id = p.client.resolve("WWW.Example.org", p.now).unwrap();
    p.pump();
    assert_eq!(
        p.exit_events.last(),
        Some(&ExitEvent::Resolve {
            id,
            query: ResolveQuery::Name("www.example.org".into())
        })
    );
    p.exit
        .resolved(
            id,
            &[
                ResolvedAnswer::Ip {
                    addr: ip("192.0.2.1"),
                    ttl: 20,
                },
                ResolvedAnswer::Ip {
                    addr: ip("2001:db8::1"),
                    ttl: 86_400,
                },
            ],
            p.now,
        )
        .unwrap();
    p.pump();
    let answers = p
        .client_events
        .iter()
        .find_map(|e| match e {
            StreamEvent::Resolved { id: i, answers } if *i == id => Some(answers.clone()),
            _ => None,
        })
        .unwrap();
    let [
        ResolvedAnswer::Ip { addr: a, ttl: t1 },
        ResolvedAnswer::Ip { addr: b, ttl: t2 },
    ] = answers[..]
    else {
        panic!("{answers:?}")
    };
    assert_eq!((a, b), (ip("192.0.2.1"), ip("2001:db8::1")));
    assert!(
        (60..=540).contains(&t1) && (3360..=3840).contains(&t2),
        "{t1} {t2}"
    );
    assert!(p.exit.is_empty(), "a RESOLVE stream ends with RESOLVED");

    // Reverse (tor-spec §6.4: in-addr.arpa).
    let id = p.client.resolve_reverse(ip("192.0.2.5"), p.now).unwrap();
    p.pump();
    assert_eq!(
        p.exit_events.last(),
        Some(&ExitEvent::Resolve {
            id,
            query: ResolveQuery::Reverse(ip("192.0.2.5"))
        })
    );
    p.exit
        .resolved(
            id,
            &[ResolvedAnswer::Hostname {
                name: "host.example".into(),
                ttl: 400,
            }],
            p.now,
        )
        .unwrap();
    p.pump();
    assert!(matches!(
        p.client_events.last(),
        Some(StreamEvent::Resolved { answers, .. })
            if matches!(&answers[..], [ResolvedAnswer::Hostname { name, .. }] if name == "host.example")
    ));

    // Failures: the resolver's error, nothing found, an internal reverse
    // lookup (answered at once, C-tor), a lookup never answered.
    let nontransient = |p: &Pair, id| {
        p.client_events.iter().any(|e| {
            matches!(e, StreamEvent::Resolved { id: i, answers }
                if *i == id && answers == &[ResolvedAnswer::NontransientError])
        })
    };
    let id = p.client.resolve("nx.example", p.now).unwrap();
    p.pump();
    p.exit
        .resolved(id, &[ResolvedAnswer::NontransientError], p.now)
        .unwrap();
    p.pump();
    assert!(nontransient(&p, id));
    let id = p.client.resolve("empty.example", p.now).unwrap();
    p.pump();
    p.exit.resolved(id, &[], p.now).unwrap();
    p.pump();
    assert!(nontransient(&p, id));
    let n_events = p.exit_events.len();
    let id = p.client.resolve_reverse(ip("10.1.2.3"), p.now).unwrap();
    p.pump();
    assert!(nontransient(&p, id));
    assert_eq!(p.exit_events.len(), n_events, "never reached the driver");
    // An IP literal is its own answer (C-tor's DEFAULT_DNS_TTL).
    let lit = AnyRelayMsg::Resolve(Resolve::new("192.0.2.44"));
    p.give_exit(sid(900), lit).unwrap();
    let (i, m) = p.exit.poll_transmit(true).unwrap();
    assert_eq!(i, sid(900));
    let AnyRelayMsg::Resolved(r) = m else {
        panic!()
    };
    assert_eq!(
        r.into_answers(),
        vec![(
            tor_cell::relaycell::msg::ResolvedVal::Ip(ip("192.0.2.44")),
            1800
        )]
    );
    // Never answered: RESOLVED with a transient error after the deadline,
    // and the driver told to stop.
    let id = p.client.resolve("slow.example", p.now).unwrap();
    p.pump();
    p.advance(EXIT_CONNECT_TIMEOUT);
    assert!(p.client_events.iter().any(|e| matches!(e,
        StreamEvent::Resolved { id: i, answers } if *i == id && answers == &[ResolvedAnswer::TransientError])));
    assert_eq!(p.exit_closed(id), vec![(EndReason::TIMEOUT, false)]);
    // A name longer than RESOLVED can carry is the driver's mistake.
    let id = p.client.resolve("long.example", p.now).unwrap();
    p.pump();
    let long = ResolvedAnswer::Hostname {
        name: "a".repeat(256),
        ttl: 1,
    };
    assert!(p.exit.resolved(id, &[long], p.now).unwrap_err().is_misuse());
}

#[test]
fn connect_timeout_ends_the_stream_both_ways() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let (id, _) = p.begin(
        Target::hostname("blackhole.example", 80),
        BeginFlags::empty(),
    );
    assert_eq!(p.exit.poll_timeout(), Some(p.now + EXIT_CONNECT_TIMEOUT));
    p.advance(EXIT_CONNECT_TIMEOUT - Duration::from_millis(1));
    assert!(p.exit_closed(id).is_empty());
    p.advance(Duration::from_millis(1));
    // The driver aborts the connect; the client hears TIMEOUT.
    assert_eq!(p.exit_closed(id), vec![(EndReason::TIMEOUT, false)]);
    let (reason, remote) = p.client_ended(id).unwrap();
    assert!(remote);
    assert_eq!(reason.socks5_reply(), Socks5Reply::TtlExpired);
    // A late answer is a misuse: the stream is gone.
    assert!(
        p.exit
            .connected(id, ip("192.0.2.1"), 1, p.now)
            .unwrap_err()
            .is_misuse()
    );
    assert!(p.exit.is_empty());
}

#[test]
fn destination_eof_sends_its_bytes_then_end_done() {
    let mut p = Pair::new(StreamFlowMode::Windowed, ExitConfig::default());
    let id = p.open();
    let body = vec![b'x'; 3000];
    assert_eq!(p.exit_write(id, &body), 3000);
    p.exit.shutdown_write(id, p.now).unwrap();
    assert_eq!(p.exit.state(id), Some(ExitStreamState::HalfClosedLocal));
    assert!(p.exit.write(id, b"more", p.now).unwrap_err().is_misuse());
    p.pump();
    // DATA, DATA, ..., END DONE: the client gets every byte, then the END.
    let (_, last) = p.exit_sent.last().unwrap();
    assert!(matches!(last, AnyRelayMsg::End(e) if e.reason() == EndReason::DONE));
    assert_eq!(p.client_read_all(id), body);
    assert_eq!(
        p.client_ended(id),
        Some((CloseReason::End(EndReason::DONE), true))
    );
    assert_eq!(p.exit_closed(id), vec![(EndReason::DONE, false)]);
}

/// After the client's END its last bytes wait for the driver, but not
/// forever (C-tor's 15 s for a connection held open to flush).
#[test]
fn the_clients_last_bytes_are_flushed_within_a_deadline() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let id = p.open();
    p.client.write(id, &[7; 2000]).unwrap();
    p.client.shutdown_write(id, p.now).unwrap();
    p.pump();
    let mut buf = [0u8; 500];
    assert_eq!(p.exit.read(id, &mut buf, p.now).unwrap(), 500);
    p.advance(FLUSH_TIMEOUT - Duration::from_secs(1));
    // Progress restarted the wait when the first bytes were read.
    assert!(p.exit_closed(id).is_empty());
    p.advance(Duration::from_secs(1));
    assert_eq!(p.exit_closed(id), vec![(EndReason::DONE, true)]);
    assert!(p.exit.read(id, &mut buf, p.now).unwrap_err().is_misuse());
    assert_eq!(p.exit.buffered(), (0, 0));
}

/// Malformed BEGINs, each refused as C-tor refuses it; the circuit goes on.
#[test]
fn malformed_begins_get_the_reason_c_tor_gives() {
    let cases: [(&[u8], EndReason); 8] = [
        (b"example.com:0\0", EndReason::TORPROTOCOL),
        (b"bad host.example:80\0", EndReason::RESOLVEFAILED),
        (b"semi;colon:80\0", EndReason::RESOLVEFAILED),
        (b":80\0", EndReason::RESOLVEFAILED),
        (b"1.2.0.192.in-addr.arpa:80\0", EndReason::RESOLVEFAILED),
        (b"[2001:db8::1]:80\0", EndReason::EXITPOLICY),
        (b"example.com:80\0\0\0\0\x02", EndReason::EXITPOLICY),
        (b"[1:2:3]:80\0", EndReason::RESOLVEFAILED),
    ];
    let mut p = Pair::new(cc(), ExitConfig::default());
    for (i, (body, reason)) in cases.iter().enumerate() {
        let id = sid(100 + i as u16);
        p.give_exit(id, begin_wire(body)).unwrap();
        assert_eq!(
            p.exit.poll_event(),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
        let (got, msg) = p.exit.poll_transmit(true).unwrap();
        assert_eq!(got, id);
        assert!(
            matches!(&msg, AnyRelayMsg::End(e) if e.reason() == *reason),
            "{}: {msg:?}",
            String::from_utf8_lossy(body)
        );
        // Optimistic DATA right behind it is dropped quietly.
        p.give_exit(id, data(b"GET /")).unwrap();
    }
    assert_eq!(p.exit.stats().answered_at_once, 8);
    assert_eq!(p.exit.stats().dropped_closed, 8);
    assert!(p.exit.is_empty());
    // A client's BEGIN on its first hop (C-tor: no single-hop proxy), a
    // BEGIN_DIR where we serve no directory.
    let mut first = Pair::new(
        cc(),
        ExitConfig {
            client_first_hop: true,
            ..ExitConfig::default()
        },
    );
    first
        .give_exit(sid(1), begin_wire(b"example.com:80\0"))
        .unwrap();
    first
        .give_exit(sid(2), AnyRelayMsg::BeginDir(BeginDir::default()))
        .unwrap();
    let ends: Vec<_> = std::iter::from_fn(|| first.exit.poll_transmit(true)).collect();
    assert!(
        matches!(&ends[..], [(_, AnyRelayMsg::End(a)), (_, AnyRelayMsg::End(b))]
        if a.reason() == EndReason::TORPROTOCOL && b.reason() == EndReason::NOTDIRECTORY)
    );
}

#[test]
fn begin_dir_opens_a_directory_stream_when_we_serve_one() {
    let cfg = ExitConfig {
        serves_directory: true,
        ..ExitConfig::default()
    };
    let mut p = Pair::new(StreamFlowMode::Windowed, cfg);
    p.give_exit(sid(3), AnyRelayMsg::BeginDir(BeginDir::default()))
        .unwrap();
    // CONNECTED at once, empty (tor-spec §6.2), and the driver is told.
    let (_, m) = p.exit.poll_transmit(true).unwrap();
    let mut body = Vec::new();
    m.encode_onto(&mut body).unwrap();
    assert!(body.is_empty());
    assert_eq!(
        p.exit.poll_event(),
        Some(ExitEvent::DirStream { id: sid(3) })
    );
    p.give_exit(
        sid(3),
        data(b"GET /tor/status-vote/current/consensus HTTP/1.0\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(
        p.exit.poll_event(),
        Some(ExitEvent::Readable { id: sid(3) })
    );
    assert_eq!(p.exit_read_all(sid(3)).len(), 51);
}

/// A relay that serves the directory but does not exit (`exits: false`)
/// answers as a C-tor non-exit: no lookups, no connections, BEGIN_DIR
/// served.
#[test]
fn a_relay_that_does_not_exit_answers_as_c_tor_non_exits() {
    let cfg = ExitConfig {
        exits: false,
        serves_directory: true,
        ..ExitConfig::default()
    };
    let mut p = Pair::new(cc(), cfg.clone());
    let end_body = |m: &AnyRelayMsg| {
        let mut body = Vec::new();
        m.clone().encode_onto(&mut body).unwrap();
        body
    };
    // A name: END RESOLVEFAILED; an IP literal: END EXITPOLICY with the
    // address and the literal's clipped TTL (3600); port 0 is still the
    // exit's TORPROTOCOL.
    p.give_exit(sid(1), begin_wire(b"example.com:443\0"))
        .unwrap();
    p.give_exit(sid(2), begin_wire(b"192.0.2.7:80\0")).unwrap();
    p.give_exit(sid(3), begin_wire(b"example.com:0\0")).unwrap();
    // RESOLVE of a name: a nontransient error; of a literal: itself.
    p.give_exit(sid(4), AnyRelayMsg::Resolve(Resolve::new("example.com")))
        .unwrap();
    p.give_exit(sid(5), AnyRelayMsg::Resolve(Resolve::new("192.0.2.9")))
        .unwrap();
    p.give_exit(
        sid(6),
        AnyRelayMsg::Resolve(Resolve::new("9.2.0.192.in-addr.arpa")),
    )
    .unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| p.exit.poll_transmit(true)).collect();
    assert_eq!(sent.len(), 6, "{sent:?}");
    assert!(
        matches!(&sent[0], (i, AnyRelayMsg::End(e)) if *i == sid(1) && e.reason() == EndReason::RESOLVEFAILED)
    );
    assert!(matches!(&sent[1].1, AnyRelayMsg::End(e) if e.reason() == EndReason::EXITPOLICY));
    assert_eq!(end_body(&sent[1].1), [4, 192, 0, 2, 7, 0, 0, 0x0e, 0x10]);
    assert!(matches!(&sent[2].1, AnyRelayMsg::End(e) if e.reason() == EndReason::TORPROTOCOL));
    for (i, want) in [
        (3, &[0xf1, 0, 0, 0, 0, 0][..]),
        (5, &[0xf1, 0, 0, 0, 0, 0][..]),
    ] {
        assert!(
            matches!(&sent[i].1, AnyRelayMsg::Resolved(_)),
            "{:?}",
            sent[i]
        );
        assert_eq!(end_body(&sent[i].1), want, "{:?}", sent[i]);
    }
    assert_eq!(&end_body(&sent[4].1)[..6], [4, 4, 192, 0, 2, 9]);
    // The driver never hears of them; BEGIN_DIR opens a directory stream.
    assert_eq!(p.exit.poll_event(), None);
    p.give_exit(sid(7), AnyRelayMsg::BeginDir(BeginDir::default()))
        .unwrap();
    assert_eq!(
        p.exit.poll_event(),
        Some(ExitEvent::DirStream { id: sid(7) })
    );
    assert_eq!(p.exit.stats().answered_at_once, 6);
    // The client's own end-to-end view: a BEGIN to a name fails with
    // RESOLVEFAILED.
    let id = p
        .client
        .begin(
            &Target::hostname("example.org", 80),
            BeginFlags::empty(),
            p.now,
        )
        .unwrap();
    p.pump();
    assert_eq!(
        p.client_ended(id).unwrap().0,
        CloseReason::End(EndReason::RESOLVEFAILED)
    );
    // On a client's first hop BEGIN is still TORPROTOCOL.
    let mut first = Pair::new(
        cc(),
        ExitConfig {
            client_first_hop: true,
            ..cfg
        },
    );
    first
        .give_exit(sid(1), begin_wire(b"192.0.2.7:80\0"))
        .unwrap();
    let (_, m) = first.exit.poll_transmit(true).unwrap();
    assert!(matches!(m, AnyRelayMsg::End(e) if e.reason() == EndReason::TORPROTOCOL));
}

/// More BEGINs than the circuit may hold: the rest get END RESOURCELIMIT
/// (issue 13, "BEGIN floods"), and room comes back as streams end.
#[test]
fn a_begin_flood_stops_at_the_stream_limit() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let mut ids = Vec::new();
    for _ in 0..600 {
        ids.push(
            p.client
                .begin(
                    &Target::hostname("example.com", 80),
                    BeginFlags::empty(),
                    p.now,
                )
                .unwrap(),
        );
    }
    p.pump();
    let connects = p
        .exit_events
        .iter()
        .filter(|e| matches!(e, ExitEvent::Connect { .. }))
        .count();
    assert_eq!(connects, DEFAULT_MAX_STREAMS);
    assert_eq!(p.exit.len(), DEFAULT_MAX_STREAMS);
    let limited = p
        .client_events
        .iter()
        .filter(|e| {
            matches!(e, StreamEvent::Ended { reason, .. }
            if *reason == CloseReason::End(EndReason::RESOURCELIMIT))
        })
        .count();
    assert_eq!(limited, 600 - DEFAULT_MAX_STREAMS);
    assert_eq!(p.exit_errors.len(), 600 - DEFAULT_MAX_STREAMS);
    assert!(p.exit_errors.iter().all(ExitError::is_resource_limit));
    // Refuse ten: ten more fit.
    for id in &ids[..10] {
        p.exit
            .refuse(*id, EndReason::CONNECTREFUSED, p.now)
            .unwrap();
    }
    p.pump();
    for _ in 0..11 {
        p.client
            .begin(
                &Target::hostname("example.com", 80),
                BeginFlags::empty(),
                p.now,
            )
            .unwrap();
    }
    p.exit_errors.clear();
    p.pump();
    assert_eq!(p.exit.len(), DEFAULT_MAX_STREAMS);
    assert_eq!(p.exit_errors.len(), 1);
}

#[test]
fn a_stream_sendme_with_congestion_control_is_a_violation() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let id = p.open();
    let e = p
        .give_exit(id, AnyRelayMsg::Sendme(Sendme::new_empty()))
        .unwrap_err();
    assert_eq!(
        e,
        ExitError::Flow {
            id,
            source: CcError::StreamSendmeWithCc
        }
    );
    assert!(e.closes_circuit());
    p.pump();
    assert_eq!(
        p.client_ended(id),
        Some((CloseReason::End(EndReason::TORPROTOCOL), true))
    );
    assert_eq!(p.exit_closed(id), vec![(EndReason::TORPROTOCOL, false)]);
    assert_eq!(p.exit.stats().violations, 1);
}

#[test]
fn cells_for_unknown_ids_are_dropped_and_counted() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    for msg in [
        data(b"x"),
        AnyRelayMsg::End(End::new_with_reason(EndReason::DONE)),
        AnyRelayMsg::Sendme(Sendme::new_empty()),
        AnyRelayMsg::Xon(Xon::new(FlowCtrlVersion::V0, XonKBpsEwma::Unlimited)),
    ] {
        p.give_exit(sid(77), msg).unwrap();
    }
    assert_eq!(p.exit.stats().dropped_unknown, 4);
    assert_eq!(p.exit.poll_transmit(true).map(|(i, _)| i), None);
    assert!(p.exit.poll_event().is_none());
}

#[test]
fn an_id_in_use_and_an_id_reused() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let id = p.open();
    // A second BEGIN on a live id ends that stream.
    let e = p
        .give_exit(id, begin_wire(b"example.org:80\0"))
        .unwrap_err();
    assert!(matches!(e, ExitError::StreamInUse { .. }));
    p.pump();
    assert_eq!(p.exit_closed(id), vec![(EndReason::TORPROTOCOL, false)]);
    // After the client's END the id is free again; the driver hears the
    // old stream's Closed before the new Connect.
    let id2 = p.open();
    p.give_exit(id2, data(b"abc")).unwrap();
    p.give_exit(id2, AnyRelayMsg::End(End::new_with_reason(EndReason::MISC)))
        .unwrap();
    p.give_exit(id2, begin_wire(b"example.org:443\0")).unwrap();
    let evs: Vec<_> = std::iter::from_fn(|| p.exit.poll_event()).collect();
    assert!(
        matches!(&evs[..], [
        ExitEvent::Closed { reason: EndReason::MISC, remote: true, .. },
        ExitEvent::Connect { target, .. },
    ] if target.port == 443),
        "{evs:?}"
    );
}

/// Cells crossing our END: within what the client could send, dropped
/// quietly; beyond it, or after the client's own END, counted as invalid.
#[test]
fn cells_after_a_close_are_dropped_within_a_bound() {
    let mut p = Pair::new(StreamFlowMode::Windowed, ExitConfig::default());
    let (id, _) = p.begin(Target::hostname("example.com", 80), BeginFlags::empty());
    p.exit.refuse(id, EndReason::CONNECTREFUSED, p.now).unwrap();
    let _ = p.exit.poll_transmit(true);
    for _ in 0..500 {
        p.give_exit(id, data(b"x")).unwrap();
    }
    assert_eq!(p.exit.stats().dropped_closed, 500);
    p.give_exit(id, data(b"x")).unwrap();
    assert_eq!(p.exit.stats().dropped_invalid, 1);
    assert_eq!(p.exit.half_closed_len(), 1);
}

/// The client's XOFF stops our DATA, its XON's rate paces what `write`
/// takes (C-tor's token bucket on the destination's reads).
/// A client that never reads: the exit takes the destination's bytes only
/// up to its bounds, per stream and over the circuit.
#[test]
fn the_circuit_closing_ends_every_stream_the_driver_knows() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let a = p.open();
    let (b, _) = p.begin(Target::hostname("example.com", 80), BeginFlags::empty());
    // One not yet announced to the driver.
    p.give_exit(sid(999), begin_wire(b"example.com:80\0"))
        .unwrap();
    p.exit.handle_circuit_closed();
    let evs: Vec<_> = std::iter::from_fn(|| p.exit.poll_event()).collect();
    let mut closed: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            ExitEvent::Closed {
                id,
                reason: EndReason::DESTROY,
                remote: true,
            } => Some(*id),
            _ => None,
        })
        .collect();
    closed.sort();
    assert_eq!(closed, vec![a, b]);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(p.exit.poll_transmit(true).is_none());
    assert!(p.exit.is_empty());
    p.exit.check_invariants().unwrap();
}

#[test]
fn answers_the_client_would_refuse_are_misuse() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let (id, _) = p.begin(Target::hostname("example.com", 80), BeginFlags::empty());
    assert!(
        p.exit
            .connected(id, ip("0.0.0.0"), 1, p.now)
            .unwrap_err()
            .is_misuse()
    );
    // The client did not say IPv6 was fine.
    assert!(
        p.exit
            .connected(id, ip("2001:db8::1"), 1, p.now)
            .unwrap_err()
            .is_misuse()
    );
    assert!(p.exit.resolved(id, &[], p.now).unwrap_err().is_misuse());
    assert!(p.exit.write(id, b"x", p.now).unwrap_err().is_misuse());
    // An IPv6 exit with the client's consent; an IP literal keeps C-tor's
    // 30-minute TTL.
    let cfg = ExitConfig {
        ipv6_exit: true,
        ..ExitConfig::default()
    };
    let mut p = Pair::new(cc(), cfg);
    let (id, ev) = p.begin(
        Target::hostname("example.com", 80),
        BeginFlags::IPV6_OKAY | BeginFlags::IPV6_PREFERRED,
    );
    let ExitEvent::Connect { flags, .. } = ev else {
        panic!()
    };
    let addr = choose_address(flags, &[ip("192.0.2.1"), ip("2001:db8::1")], |_| true);
    p.exit.connected(id, addr.unwrap(), 1, p.now).unwrap();
    let (id, _) = p.begin(Target::ip(ip("2001:db8::5"), 80), BeginFlags::IPV6_OKAY);
    p.exit.connected(id, ip("2001:db8::5"), 1, p.now).unwrap();
    p.pump();
    let addrs: Vec<_> = p
        .client_events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Connected { addr, .. } => *addr,
            _ => None,
        })
        .collect();
    assert_eq!(addrs[0].0, ip("2001:db8::1"));
    assert_eq!(addrs[1], (ip("2001:db8::5"), 1800));
}
