//! The client side of the link handshake
//! (`braid_core::channel::ClientHandshake`) fed a relay's bytes: a valid
//! prefix of a relay's answer (VERSIONS, a CERTS that verifies against the
//! TLS certificate we pass, AUTH_CHALLENGE, NETINFO), as far as the input
//! asks, then arbitrary bytes, all in arbitrary chunks; either through
//! `handle_bytes` or framed by our own codec and given to `handle_cell`.
//!
//! Invariants: no panic; every call either fails (and the handshake then
//! stays failed and refuses input) or progresses; our first output is our
//! VERSIONS cell; an open handshake proves the identity we asked for, at a
//! link version we offered, and `finish` hands over a codec at that
//! version.
#![no_main]

mod core_mock_relay;

use std::time::{Duration, Instant};

use braid_core::channel::{CellCodec, ClientHandshake, HandshakeParams};
use core_mock_relay::{MockRelay, now};
use libfuzzer_sys::fuzz_target;

fn var_cell(out: &mut Vec<u8>, cmd: u8, body: &[u8]) {
    out.extend_from_slice(&[0, 0, 0, 0, cmd]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fuzz_target!(|input: (u8, Vec<u8>, &[u8])| {
    let (mode, chunks, data) = input;
    let relay = MockRelay::shared();
    let params = HandshakeParams::new(relay.expected(), relay.tls_cert.clone())
        .with_peer_addr([127, 0, 0, 1].into())
        .with_timeout(Duration::from_secs(30));
    let mut hs = ClientHandshake::new(params, Instant::now());
    let first = hs.poll_transmit().expect("our VERSIONS");
    assert_eq!(first, [0, 0, 7, 0, 4, 0, 4, 0, 5]);

    // The relay's answer, as far as `mode` says, then the fuzz bytes.
    let mut stream = Vec::new();
    let stage = mode % 5;
    if stage >= 1 {
        let versions: &[u8] = match mode >> 3 & 3 {
            0 => &[0, 4],
            1 => &[0, 5],
            2 => &[0, 3, 0, 4, 0, 5],
            _ => &[0, 5, 0, 4, 0, 1],
        };
        stream.extend_from_slice(&[0, 0, 7]);
        stream.extend_from_slice(&(versions.len() as u16).to_be_bytes());
        stream.extend_from_slice(versions);
    }
    if stage >= 2 {
        var_cell(&mut stream, 129, &relay.certs);
    }
    if stage >= 3 {
        let mut body = vec![0x42; 32];
        body.extend_from_slice(&[0, 2, 0, 1, 0, 3]);
        var_cell(&mut stream, 130, &body);
    }
    if stage >= 4 {
        let t = now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as u32;
        let mut cell = vec![0, 0, 0, 0, 8];
        cell.extend_from_slice(&t.to_be_bytes());
        cell.extend_from_slice(&[4, 4, 127, 0, 0, 2, 1, 4, 4, 10, 0, 0, 1]);
        cell.resize(514, 0);
        stream.extend_from_slice(&cell);
    }
    stream.extend_from_slice(data);

    let by_cell = mode & 0x20 != 0;
    let mut framer = CellCodec::new();
    let mut rest = &stream[..];
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .map_or(rest.len(), |s| usize::from(s).max(1))
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let r = if by_cell {
            if hs.is_open() {
                break;
            }
            if framer.handle_bytes(chunk).is_err() {
                break;
            }
            let mut r = Ok(());
            loop {
                if framer.link_version().is_none()
                    && let Some(v) = hs.link_version()
                {
                    framer
                        .set_link_version(v)
                        .expect("negotiated version is supported");
                }
                match framer.poll_cell() {
                    Ok(Some(cell)) => {
                        r = hs.handle_cell(now(), cell);
                        if r.is_err() || hs.is_open() {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            r
        } else {
            hs.handle_bytes(now(), chunk)
        };
        let _ = hs.poll_transmit();
        match r {
            Ok(()) => assert!(!hs.is_failed()),
            Err(_) => {
                assert!(hs.is_failed() && !hs.is_open());
                assert!(
                    hs.handle_bytes(now(), b"\0").is_err(),
                    "failed handshake took input"
                );
                break;
            }
        }
    }
    if stage == 4 {
        // Nothing the fuzzer appends can undo a complete, valid answer.
        assert!(hs.is_open(), "a valid answer did not open the handshake");
    }
    if let Some(outcome) = hs.outcome() {
        let v = outcome.link_version;
        assert!(v == 4 || v == 5);
        assert_eq!(outcome.peer.rsa, relay.expected().rsa);
        assert_eq!(Some(outcome.peer.ed25519), relay.expected().ed25519);
        assert_eq!(hs.link_version(), Some(v));
        let opened = hs.finish().expect("open handshake finishes");
        assert_eq!(opened.codec.link_version(), Some(v));
    } else {
        assert!(hs.finish().is_err());
    }
});
