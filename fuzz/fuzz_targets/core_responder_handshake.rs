//! The relay side of the link handshake
//! (`braid_core::channel::ResponderHandshake`) fed an initiator's bytes: a
//! valid prefix of an authenticating relay's cells (VERSIONS, CERTS,
//! AUTHENTICATE, NETINFO, recorded from braid-core's own initiator against
//! a responder whose challenge is seeded the same way) or of a client's
//! (VERSIONS, NETINFO), as far as the input asks, then arbitrary bytes,
//! all in arbitrary chunks; the TLS exporter answered right, or wrong.
//!
//! Invariants: no panic; a failed call leaves the handshake failed and
//! refusing input; we send at most our one flight; a complete valid relay
//! answer with the right exporter opens with the relay's identities
//! whatever follows it, a complete client answer opens unauthenticated; an
//! authenticated outcome only ever names the relay whose keys signed.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use braid_core::channel::{
    ClientHandshake, ExpectedIdentity, HandshakeParams, Initiator, InitiatorAuth,
    RelayIdentityKeys, RelayLinkKeys, ResponderHandshake, ResponderParams,
};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use sha2::Digest as _;
use tor_llcrypto::pk::ed25519;
use tor_llcrypto::pk::rsa::KeyPair as RsaKeyPair;

/// The instant everything happens at.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_258_700)
}

/// A relay's link keys from a seed.
fn keys(seed: u64) -> Arc<RelayLinkKeys> {
    let mut rng = StdRng::seed_from_u64(seed);
    let year = Duration::from_secs(365 * 86_400);
    let ids = RelayIdentityKeys::from_master_keys(
        RsaKeyPair::generate(&mut rng).expect("RSA key"),
        &ed25519::Keypair::generate(&mut rng),
        &ed25519::Keypair::generate(&mut rng),
        now() + year,
    )
    .expect("identity keys");
    Arc::new(RelayLinkKeys::new(ids, &mut rng, now()).expect("link keys"))
}

/// Our pretend TLS session's exporter.
fn export(context: &[u8; 32]) -> [u8; 32] {
    sha2::Sha256::digest([&b"session"[..], context].concat()).into()
}

const CHALLENGE_SEED: u64 = 5;

fn responder(keys: &Arc<RelayLinkKeys>) -> ResponderHandshake {
    let p = ResponderParams::new(keys.clone())
        .with_peer_addr([127, 0, 0, 2].into())
        .with_my_addrs(vec![[127, 0, 0, 1].into()]);
    ResponderHandshake::new(
        p,
        &mut StdRng::seed_from_u64(CHALLENGE_SEED),
        Instant::now(),
    )
}

struct Fixture {
    responder: Arc<RelayLinkKeys>,
    initiator: Arc<RelayLinkKeys>,
    /// The relay's cells: VERSIONS, CERTS, AUTHENTICATE, NETINFO.
    relay_cells: Vec<Vec<u8>>,
    /// A client's: VERSIONS, NETINFO.
    client_cells: Vec<Vec<u8>>,
}

/// Run an initiator against a seeded responder and keep what it sent.
fn record(a: &Arc<RelayLinkKeys>, params: HandshakeParams) -> Vec<Vec<u8>> {
    let mut init = ClientHandshake::new(params, Instant::now());
    let mut resp = responder(a);
    let mut sent = Vec::new();
    loop {
        let mut moved = false;
        if let Some(b) = init.poll_transmit() {
            resp.handle_bytes(now(), &b).expect("honest bytes");
            sent.push(b);
            moved = true;
        }
        if let Some(req) = resp.tls_export_request() {
            resp.handle_tls_export(now(), export(&req.context))
                .expect("honest exporter");
            moved = true;
        }
        if let Some(b) = resp.poll_transmit() {
            init.handle_bytes(now(), &b).expect("honest flight");
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(resp.is_open(), "the honest initiator did not open");
    // Split the answer after VERSIONS into its cells (all variable-length
    // but the last, NETINFO, which is 514 bytes).
    let mut cells = vec![sent.remove(0)];
    let rest: Vec<u8> = sent.concat();
    let mut at = 0;
    while at < rest.len() {
        let var = rest[at + 4] >= 128;
        let len = if var {
            7 + usize::from(u16::from_be_bytes([rest[at + 5], rest[at + 6]]))
        } else {
            514
        };
        cells.push(rest[at..at + len].to_vec());
        at += len;
    }
    cells
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let a = keys(1);
        let b = keys(2);
        let base = HandshakeParams::new(
            ExpectedIdentity {
                rsa: a.rsa_identity(),
                ed25519: Some(a.ed_identity()),
            },
            a.tls_cert_der().to_vec(),
        );
        let auth = InitiatorAuth::new(
            b.clone(),
            export(&b.auth0003_exporter_context()),
            vec![[127, 0, 0, 2].into()],
            &mut StdRng::seed_from_u64(3),
        );
        let relay_cells = record(&a, base.clone().with_relay_auth(auth));
        assert_eq!(relay_cells.len(), 4);
        let client_cells = record(&a, base);
        assert_eq!(client_cells.len(), 2);
        Fixture {
            responder: a,
            initiator: b,
            relay_cells,
            client_cells,
        }
    })
}

fuzz_target!(
    // Four RSA keys, two of 2048 bits: seconds under the sanitizer, kept
    // out of the first input's time.
    init: {
        fixture();
    },
    |input: (u8, Vec<u8>, &[u8])| {
    let (mode, chunks, data) = input;
    let f = fixture();
    let client = mode & 0x10 != 0;
    let wrong_export = mode & 0x20 != 0;
    let cells = if client {
        &f.client_cells
    } else {
        &f.relay_cells
    };
    let stage = usize::from(mode & 7).min(cells.len());
    let mut stream: Vec<u8> = cells[..stage].concat();
    stream.extend_from_slice(data);

    let mut r = responder(&f.responder);
    let mut sent = 0;
    let mut rest = &stream[..];
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .map_or(rest.len(), |s| usize::from(s).max(1))
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut res = r.handle_bytes(now(), chunk);
        if res.is_ok()
            && let Some(req) = r.tls_export_request()
        {
            let mut value = export(&req.context);
            if wrong_export {
                value[0] ^= 1;
            }
            res = r.handle_tls_export(now(), value);
        }
        sent += r.poll_transmit().map_or(0, |b| b.len());
        if res.is_err() {
            assert!(r.is_failed() && !r.is_open());
            assert!(
                r.handle_bytes(now(), b"\0").is_err(),
                "failed handshake took input"
            );
            break;
        }
        assert!(!r.is_failed());
    }
    assert!(sent < 4000, "sent {sent} bytes");
    let complete = stage == cells.len();
    if complete && !wrong_export {
        let o = r.outcome().expect("a complete valid answer opens");
        if client {
            assert_eq!(o.initiator, Initiator::Unauthenticated);
        } else {
            assert!(
                matches!(o.initiator, Initiator::Relay(id)
                    if id.rsa == f.initiator.rsa_identity()
                        && id.ed25519 == f.initiator.ed_identity()),
                "{o:?}"
            );
        }
    }
    if let Some(o) = r.outcome()
        && let Initiator::Relay(id) = o.initiator
    {
        assert!(!wrong_export, "authenticated with a wrong exporter value");
        assert_eq!(id.rsa, f.initiator.rsa_identity());
    }
    match r.outcome().cloned() {
        Some(o) => {
            let opened = r.finish().expect("open handshake finishes");
            assert_eq!(opened.codec.link_version(), Some(o.link_version));
        }
        None => assert!(r.finish().is_err()),
    }
});
