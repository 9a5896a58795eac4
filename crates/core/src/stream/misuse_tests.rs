//! A [`StreamMap`] against a scripted exit that breaks the rules and an
//! application that misuses it, with the helpers of `tests`: messages out
//! of place, unknown and closed stream ids (and the half-closed
//! accounting), and the map's limits.

use std::time::Duration;

use tor_cell::relaycell::msg::{AnyRelayMsg, Begin, BeginFlags, EndReason};

use crate::ids::StreamId;

use super::tests::{CELL, cc_mode, cmds, connected, data, drain, events, ms, new_map, open, t0};
use super::*;

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
