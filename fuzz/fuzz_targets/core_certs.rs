//! A responder's CERTS cell as a client checks it
//! (`braid_core::channel::certs::verify_responder_certs`, with
//! `parse_certs_body`): an arbitrary body; the CERTS recorded from a real
//! C-tor relay with arbitrary bytes changed; a generated relay's valid
//! CERTS with bytes changed; or that CERTS with one certificate replaced
//! by arbitrary bytes. Each is checked against its own TLS digest,
//! identity and time, so mutated chains reach the signature and identity
//! checks.
//!
//! Invariants: no panic; the unmodified recorded and generated bodies
//! verify; whatever verifies proves the identities asked for; a body that
//! verifies also splits into entries with no repeated type.
#![no_main]

mod core_mock_relay;

use braid_core::channel::certs::{parse_certs_body, verify_responder_certs};
use core_mock_relay::{MockRelay, certs_body, recorded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| {
    let (mode, data) = input;
    let gen_relay = MockRelay::shared();
    let rec = recorded();
    let (body, digest, expected, when) = match mode % 4 {
        0 => (
            data.to_vec(),
            gen_relay.tls_digest(),
            gen_relay.expected(),
            core_mock_relay::now(),
        ),
        // (offset, xor) pairs applied to a valid body.
        1 | 2 => {
            let (mut body, digest, expected, when) = if mode % 4 == 1 {
                (rec.body.clone(), rec.tls_digest, rec.expected, rec.when)
            } else {
                (
                    gen_relay.certs.clone(),
                    gen_relay.tls_digest(),
                    gen_relay.expected(),
                    core_mock_relay::now(),
                )
            };
            for m in data.chunks_exact(3) {
                let at = usize::from(u16::from_be_bytes([m[0], m[1]])) % body.len();
                body[at] ^= m[2];
            }
            // Optionally truncated or extended.
            if mode & 0x10 != 0 {
                body.truncate(usize::from(mode) * 8);
            }
            if mode & 0x20 != 0 {
                body.extend_from_slice(data);
            }
            (body, digest, expected, when)
        }
        // One certificate (or an extra one) replaced by the input.
        _ => {
            let entries = parse_certs_body(&gen_relay.certs).expect("own body parses");
            let mut list: Vec<(u8, Vec<u8>)> = entries
                .iter()
                .map(|e| (e.cert_type.into(), e.body.to_vec()))
                .collect();
            let slot = usize::from(mode >> 2) % (list.len() + 1);
            let cert_type = data.first().copied().unwrap_or(0);
            let cert = data.get(1..).unwrap_or_default().to_vec();
            if slot == list.len() {
                list.push((cert_type, cert));
            } else if mode & 0x80 != 0 {
                list[slot].0 = cert_type;
            } else {
                list[slot].1 = cert;
            }
            (
                certs_body(&list),
                gen_relay.tls_digest(),
                gen_relay.expected(),
                core_mock_relay::now(),
            )
        }
    };
    let pristine =
        (mode % 4 == 1 && body == rec.body) || (mode % 4 == 2 && body == gen_relay.certs);
    let result = verify_responder_certs(&body, &digest, &expected, when);
    if pristine {
        assert!(result.is_ok(), "a valid CERTS refused: {result:?}");
    }
    if let Ok(v) = result {
        assert_eq!(v.rsa, expected.rsa);
        assert_eq!(Some(v.ed25519), expected.ed25519);
        let entries = parse_certs_body(&body).expect("verified body parses");
        for (i, a) in entries.iter().enumerate() {
            assert!(entries[..i].iter().all(|b| b.cert_type != a.cert_type));
        }
    }
});
