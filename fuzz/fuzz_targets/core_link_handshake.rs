//! The client side of the link handshake
//! (`braid_core::channel::ClientHandshake`) fed a relay's bytes: a valid
//! prefix of a relay's answer (VERSIONS, a CERTS that verifies against the
//! TLS certificate we pass, AUTH_CHALLENGE, NETINFO), as far as the input
//! asks, then arbitrary bytes, all in arbitrary chunks; either through
//! `handle_bytes` or framed by our own codec and given to `handle_cell`.
//!
//! Invariants: no panic; our first output is our VERSIONS cell. Progress
//! or failure: while only the valid answer has come, the handshake never
//! fails, and it has reached the step that answer completes (the best
//! shared link version once the relay's VERSIONS is in; open once its
//! NETINFO is in); it never goes back (the version stays, open stays open,
//! failed stays failed and refuses input); its deadline stays where it was
//! set, so a relay that keeps it waiting is cut off by the driver. Until
//! open it sends nothing more; once open, exactly our NETINFO. An open
//! handshake proves the identity we asked for, at a link version we
//! offered; `finish` hands over a codec at that version holding every byte
//! that came after the relay's NETINFO.
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

    // The relay's answer, as far as `mode` says, then the fuzz bytes; the
    // end of each of its cells, and the version it makes us choose.
    let mut stream = Vec::new();
    let stage = mode % 5;
    let mut ends = Vec::new();
    let mut chosen = None;
    if stage >= 1 {
        let (versions, best): (&[u8], u16) = match mode >> 3 & 3 {
            0 => (&[0, 4], 4),
            1 => (&[0, 5], 5),
            2 => (&[0, 3, 0, 4, 0, 5], 5),
            _ => (&[0, 5, 0, 4, 0, 1], 5),
        };
        chosen = Some(best);
        stream.extend_from_slice(&[0, 0, 7]);
        stream.extend_from_slice(&(versions.len() as u16).to_be_bytes());
        stream.extend_from_slice(versions);
        ends.push(stream.len());
    }
    if stage >= 2 {
        var_cell(&mut stream, 129, &relay.certs);
        ends.push(stream.len());
    }
    if stage >= 3 {
        let mut body = vec![0x42; 32];
        body.extend_from_slice(&[0, 2, 0, 1, 0, 3]);
        var_cell(&mut stream, 130, &body);
        ends.push(stream.len());
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
        ends.push(stream.len());
    }
    let valid_len = stream.len();
    stream.extend_from_slice(data);
    let deadline = hs.deadline();

    let by_cell = mode & 0x20 != 0;
    let mut framer = CellCodec::new();
    let mut fed = 0;
    let mut sent = Vec::new();
    let mut opened_at = None;
    let mut sizes = chunks.iter().copied().cycle();
    while fed < stream.len() {
        let n = sizes
            .next()
            .map_or(stream.len() - fed, |s| usize::from(s).max(1))
            .min(stream.len() - fed);
        let chunk = &stream[fed..fed + n];
        let version_before = hs.link_version();
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
        let was_open = opened_at.is_some();
        fed += n;
        if let Some(out) = hs.poll_transmit() {
            sent.extend_from_slice(&out);
        }
        assert_eq!(hs.deadline(), deadline, "the deadline moved");
        if version_before.is_some() {
            assert_eq!(
                hs.link_version(),
                version_before,
                "the link version changed"
            );
        }
        if was_open {
            assert!(hs.is_open(), "an open handshake closed");
        }
        if hs.is_open() && opened_at.is_none() {
            opened_at = Some(fed);
        }
        match r {
            Ok(()) => assert!(!hs.is_failed()),
            Err(_) => {
                assert!(hs.is_failed() && !hs.is_open());
                assert!(fed > valid_len, "a valid answer failed the handshake");
                assert!(
                    hs.handle_bytes(now(), b"\0").is_err(),
                    "failed handshake took input"
                );
                break;
            }
        }
        // Progress: every complete cell of the valid answer has taken effect.
        if fed >= ends.first().copied().unwrap_or(usize::MAX) {
            assert_eq!(hs.link_version(), chosen, "the relay's VERSIONS is in");
        }
        if stage == 4 && fed >= valid_len {
            assert!(hs.is_open(), "the relay's NETINFO is in, not open");
        }
        if !hs.is_open() {
            assert!(sent.is_empty(), "sent {} bytes before opening", sent.len());
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
        // Our NETINFO, once: a fixed-size cell (4-byte circuit id) with
        // command 8.
        assert_eq!(
            sent.len(),
            514,
            "after opening we sent {} bytes",
            sent.len()
        );
        assert_eq!(sent[4], 8);
        let opened = hs.finish().expect("open handshake finishes");
        assert_eq!(opened.codec.link_version(), Some(v));
        assert!(opened.unsent.is_empty());
        if !by_cell && stage == 4 {
            // Everything after the relay's NETINFO waits for the channel.
            assert_eq!(opened.codec.buffered_len(), stream.len() - valid_len);
        }
    } else {
        assert!(hs.finish().is_err());
    }
});
