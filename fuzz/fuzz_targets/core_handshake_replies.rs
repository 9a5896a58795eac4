//! The client side of the circuit handshakes on arbitrary server replies:
//! ntor (`NtorClientState::finish`), ntor-v3 (`finish` and
//! `finish_for_circuit`, with the extension list decoder) and CREATE_FAST,
//! plus `extensions::decode_response` on the raw bytes.
//!
//! Invariants: no panic; a reply not made with the relay's secret key is
//! refused (a forged AUTH would need a hash collision), except that an
//! honest reply, which the target also produces and then flips one byte of
//! when the input asks, must be accepted unflipped and refused flipped.
#![no_main]

use braid_core::crypto::extensions;
use braid_core::crypto::fast;
use braid_core::crypto::ntor::{self, NtorSecretKey};
use braid_core::crypto::ntor_v3::{self, NtorV3SecretKey};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (mode, flip, reply) = input;
    let mut rng = StdRng::seed_from_u64(u64::from(mode));
    let secret = StaticSecret::from([7; 32]);
    let ntor_key = NtorSecretKey::new(RsaIdentity::from([1; 20]), secret.clone());
    let v3_key = NtorV3SecretKey::new(Ed25519Identity::new([2; 32]), secret);

    let _ = extensions::decode_response(reply);

    // Arbitrary replies.
    let (state, _) = ntor::client_handshake(&mut rng, &ntor_key.public);
    assert!(state.finish(reply).is_err(), "forged ntor reply accepted");
    let (state, _) = ntor_v3::client_handshake_for_circuit(
        &mut rng,
        &v3_key.public,
        &[extensions::cc_request()],
    )
    .expect("good onion key");
    assert!(
        state.finish_for_circuit(reply).is_err(),
        "forged ntor-v3 reply accepted"
    );
    let (state, _) = fast::client_handshake(&mut rng);
    assert!(state.finish(reply).is_err(), "forged CREATED_FAST accepted");

    // Honest replies (the server's message taken from the input), one
    // byte flipped if `flip` says so.
    let tamper = |mut r: Vec<u8>| {
        let flipped = flip & 0x8000 != 0 && !r.is_empty();
        if flipped {
            let i = usize::from(flip & 0x7fff) % r.len();
            r[i] ^= 1 << (flip % 8);
        }
        (r, flipped)
    };
    match mode % 3 {
        0 => {
            let (state, onionskin) = ntor::client_handshake(&mut rng, &ntor_key.public);
            let (_, good) =
                ntor::server_handshake(&mut rng, std::slice::from_ref(&ntor_key), &onionskin)
                    .expect("own onionskin");
            let (r, flipped) = tamper(good.to_vec());
            assert_eq!(state.finish(&r).is_ok(), !flipped);
        }
        1 => {
            let (state, onionskin) =
                ntor_v3::client_handshake(&mut rng, &v3_key.public, b"hello", b"fuzz")
                    .expect("good onion key");
            let (good, _) = ntor_v3::server_handshake(
                &mut rng,
                std::slice::from_ref(&v3_key),
                b"fuzz",
                &onionskin,
                |cm| {
                    assert_eq!(cm, b"hello");
                    Some(reply.to_vec())
                },
            )
            .expect("own onionskin");
            let (r, flipped) = tamper(good);
            match state.finish(&r) {
                Ok((sm, _)) => {
                    assert!(!flipped, "tampered ntor-v3 reply accepted");
                    assert_eq!(sm, reply);
                }
                Err(_) => assert!(flipped, "honest ntor-v3 reply refused"),
            }
        }
        _ => {
            let (state, onionskin) = ntor_v3::client_handshake_for_circuit(
                &mut rng,
                &v3_key.public,
                &[extensions::cc_request()],
            )
            .expect("good onion key");
            // The relay's extension list is the input, encoded raw: the
            // client must decode it or refuse it.
            let (good, _) = ntor_v3::server_handshake(
                &mut rng,
                std::slice::from_ref(&v3_key),
                ntor_v3::CIRCUIT_EXTEND_VERIFICATION,
                &onionskin,
                |_| Some(reply.to_vec()),
            )
            .expect("own onionskin");
            let (r, flipped) = tamper(good);
            let decodes = extensions::decode_response(reply).is_ok();
            match state.finish_for_circuit(&r) {
                Ok((exts, _)) => {
                    assert!(!flipped && decodes);
                    let _ = extensions::cc_sendme_inc(&exts);
                }
                Err(_) => assert!(flipped || !decodes),
            }
        }
    }
});
