//! The SOCKS front end's handshake (`braid_client::socks::proto`, SOCKS5
//! and SOCKS4a): the client's bytes in arbitrary chunks.
//!
//! Invariants: no panic; a finished request is returned once and the
//! handshake then refuses input; after an error the handshake stays
//! failed; the bytes we send are whole replies the client could parse
//! (method choice, auth status, or a 10-byte SOCKS5 reply; for SOCKS4,
//! only the 8-byte "rejected").
#![no_main]

use braid_client::socks::proto::{SocksHandshake, SocksTarget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, &[u8])| {
    let (chunks, data) = input;
    let mut hs = SocksHandshake::new();
    let mut rest = data;
    let mut sizes = chunks.iter().copied().cycle();
    let mut sent = Vec::new();
    loop {
        let n = sizes
            .next()
            .map_or(rest.len(), |s| usize::from(s).max(1))
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let r = hs.handle_bytes(chunk);
        if let Some(out) = hs.poll_transmit() {
            sent.extend(out);
        }
        match r {
            Ok(Some(req)) => {
                if let SocksTarget::Hostname(h, _) = &req.target {
                    assert!(!h.is_empty() && h.len() <= 255 && !h.contains('\0'));
                }
                assert!(req.isolation.username.len() <= 255);
                assert!(req.isolation.password.len() <= 255);
                // Finished: nothing more is accepted.
                assert!(hs.handle_bytes(b"x").is_err());
                break;
            }
            Ok(None) => {}
            Err(_) => {
                assert!(hs.handle_bytes(b"").is_err(), "failed handshake went on");
                assert!(hs.handle_bytes(b"\x05\x01\x00").is_err());
                break;
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    if sent.first() == Some(&0) {
        // SOCKS4: nothing is sent during the handshake but a refusal.
        assert_eq!(sent, [0, 0x5B, 0, 0, 0, 0, 0, 0], "SOCKS4 reply {sent:?}");
        return;
    }
    // What we sent parses as the client would read it: a method choice,
    // then maybe an auth status, then maybe a reply (VER 5, REP, RSV 0,
    // ATYP 1, 4 + 2 bytes).
    let mut out = &sent[..];
    if !out.is_empty() {
        assert_eq!(out.get(..1), Some(&[5_u8][..]), "method choice {sent:?}");
        let method = out[1];
        assert!(matches!(method, 0 | 2 | 0xff));
        out = &out[2..];
        if method == 2 && !out.is_empty() {
            assert_eq!(out[0], 1, "auth status {sent:?}");
            out = &out[2..];
        }
        if !out.is_empty() {
            assert_eq!(out.len(), 10, "reply {sent:?}");
            assert_eq!((out[0], out[2], out[3]), (5, 0, 1));
        }
    }
});
