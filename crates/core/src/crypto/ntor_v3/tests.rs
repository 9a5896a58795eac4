//! Tests of [`super`]: known-answer vectors, circuit round trips, refusals and tampering.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use proptest::prelude::*;

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn arr32(s: &str) -> [u8; 32] {
    unhex(s).try_into().unwrap()
}

fn relay_key(seed: u8, id: u8) -> NtorV3SecretKey {
    NtorV3SecretKey::new(
        Ed25519Identity::new([id; 32]),
        StaticSecret::from([seed; 32]),
    )
}

// Proposal 332 X.2 (also C-tor's test_ntor_v3.c and arti's tests).
const B_SK: &str = "4051daa5921cfa2a1c27b08451324919538e79e788a81b38cbed097a5dff454a";
const B_PK: &str = "f8307a2bc1870b00b828bb74dbb8fd88e632a6375ab3bcd1ae706aaa8b6cdd1d";
const ID: &str = "9fad2af287ef942632833d21f946c6260c33fae6172b60006e86e4a6911753a2";
const X_SK: &str = "b825a3719147bcbe5fb1d0b0fcb9c09e51948048e2e3283d2ab7b45b5ef38b49";
const X_PK: &str = "252fe9ae91264c91d4ecb8501f79d0387e34ad8ca0f7c995184f7d11d5da4f46";
const CM: &str = "68656c6c6f20776f726c64";
const VER: &str = "78797a7a79";
const Y_SK: &str = "4865a5b7689dafd978f529291c7171bc159be076b92186405d13220b80e2a053";
const Y_PK: &str = "4bf4814326fdab45ad5184f5518bd7fae25dc59374062698201a50a22954246d";
const SM: &str = "486f6c61204d756e646f";
const CLIENT_HS: &str = "9fad2af287ef942632833d21f946c6260c33fae6172b60006e86e4a6911753a2f8307a2bc1870b00b828bb74dbb8fd88e632a6375ab3bcd1ae706aaa8b6cdd1d252fe9ae91264c91d4ecb8501f79d0387e34ad8ca0f7c995184f7d11d5da4f463bebd9151fd3b47c180abc9e044d53565f04d82bbb3bebed3d06cea65db8be9c72b68cd461942088502f67";
const SERVER_HS: &str = "4bf4814326fdab45ad5184f5518bd7fae25dc59374062698201a50a22954246d2fc5f8773ca824542bc6cf6f57c7c29bbf4e5476461ab130c5b18ab0a91276651202c3e1e87c0d32054c";
const KEYSTREAM: &str = "9c19b631fd94ed86a817e01f6c80b0743a43f5faebd39cfaa8b00fa8bcc65c3bfeaa403d91acbd68a821bf6ee8504602b094a254392a07737d5662768c7a9fb1b2814bb34780eaee6e867c773e28c212ead563e98a1cd5d5b4576f5ee61c59bde025ff2851bb19b721421694f263818e3531e43a9e4e3e2c661e2ad547d8984caa28ebecd3e4525452299be26b9185a20a90ce1eac20a91f2832d731b54502b09749b5a2a2949292f8cfcbeffb790c7790ed935a9d251e7e336148ea83b063a5618fcff674a44581585fd22077ca0e52c59a24347a38d1a1ceebddbf238541f226b8f88d0fb9c07a1bcd2ea764bbbb5dacdaf5312a14c0b9e4f06309b0333b4a";

fn vector_relay() -> NtorV3SecretKey {
    NtorV3SecretKey::new(
        Ed25519Identity::new(arr32(ID)),
        StaticSecret::from(arr32(B_SK)),
    )
}

#[test]
fn known_answer_messages_and_keys() {
    let relay = vector_relay();
    assert_eq!(relay.public.onion_key.as_bytes(), &arr32(B_PK));
    let x = StaticSecret::from(arr32(X_SK));
    assert_eq!(PublicKey::from(&x).as_bytes(), &arr32(X_PK));
    let y = StaticSecret::from(arr32(Y_SK));
    assert_eq!(PublicKey::from(&y).as_bytes(), &arr32(Y_PK));

    let (state, onionskin) =
        client_handshake_with_secret(x, &relay.public, &unhex(CM), &unhex(VER)).unwrap();
    assert_eq!(onionskin, unhex(CLIENT_HS));

    let mut seen_cm = None;
    let (reply, s_keygen) = server_handshake_with_secret(
        y,
        std::slice::from_ref(&relay),
        &unhex(VER),
        &onionskin,
        |cm| {
            seen_cm = Some(cm.to_vec());
            Some(unhex(SM))
        },
    )
    .unwrap();
    assert_eq!(seen_cm, Some(unhex(CM)));
    assert_eq!(reply, unhex(SERVER_HS));

    let (sm, c_keygen) = state.finish(&reply).unwrap();
    assert_eq!(sm, unhex(SM));
    assert_eq!(&c_keygen.expand(256).unwrap()[..], &unhex(KEYSTREAM)[..]);
    assert_eq!(&s_keygen.expand(256).unwrap()[..], &unhex(KEYSTREAM)[..]);
}

/// The intermediate values of proposal 332 X.2.
#[test]
fn known_answer_intermediates() {
    let relay = vector_relay().public;
    let x = StaticSecret::from(arr32(X_SK));
    let x_pub = PublicKey::from(&x);
    let y = StaticSecret::from(arr32(Y_SK));
    let y_pub = PublicKey::from(&y);
    let ver = unhex(VER);
    let bx = checked(&x.diffie_hellman(&relay.onion_key)).unwrap();
    let (enc_k1, mac_k1) = phase1_keys(&bx, &relay, &x_pub, &ver);
    assert_eq!(
        *enc_k1,
        arr32("4cd166e93f1c60a29f8fb9ec40ea0fc878930c27800594593e1c4d0f3b5fbd02")
    );
    assert_eq!(
        *mac_k1,
        arr32("f5b69e85fdd26e1b0bdbbc8128e32d8123040255f11f744af3cc98fc13613cda")
    );
    let onionskin = unhex(CLIENT_HS);
    let emsg = &onionskin[96..onionskin.len() - 32];
    let client_mac = msg_mac(&mac_k1, &relay, &x_pub, emsg);
    assert_eq!(
        client_mac,
        arr32("9e044d53565f04d82bbb3bebed3d06cea65db8be9c72b68cd461942088502f67")
    );
    let yx = checked(&x.diffie_hellman(&y_pub)).unwrap();
    let reply = unhex(SERVER_HS);
    let t = Transcript {
        relay: &relay,
        x_pub: &x_pub,
        y_pub: &y_pub,
    };
    let p2 = phase2(&yx, &bx, &t, &ver);
    assert_eq!(
        *p2.enc_key,
        arr32("cab8a93eef62246a83536c4384f331ec26061b66098c61421b6cae81f4f57c56")
    );
    assert_eq!(
        auth(&p2.verify, &t, &client_mac, &reply[64..]),
        arr32("2fc5f8773ca824542bc6cf6f57c7c29bbf4e5476461ab130c5b18ab0a9127665")
    );
    let ver_len = encap_len(&ver);
    let secret_input: [&[u8]; 9] = [
        &yx[..],
        &bx[..],
        relay.id.as_bytes(),
        relay.onion_key.as_bytes(),
        x_pub.as_bytes(),
        y_pub.as_bytes(),
        PROTOID,
        &ver_len,
        &ver,
    ];
    assert_eq!(
        *h(T_KEY_SEED, &secret_input),
        arr32("b9a092741098e1f5b8ab37ce74399dd57522c974d7ae4626283a1077b9273255")
    );
    assert_eq!(
        *h(T_VERIFY, &secret_input),
        arr32("1dc09fb249738a79f1bc3a545eee8c415f27213894a760bb4df58862e414799a")
    );
}

#[test]
fn circuit_round_trip_with_cc_negotiation() {
    let mut rng = rand::rng();
    let relay = relay_key(1, 2);
    let keys = [relay.clone()];
    let (state, onionskin) =
        client_handshake_for_circuit(&mut rng, &relay.public, &[extensions::cc_request()]).unwrap();
    let (reply, s_keygen) = server_handshake_for_circuit(&mut rng, &keys, &onionskin, |exts| {
        Some(if extensions::requests_cc(exts) {
            vec![extensions::cc_response(31)]
        } else {
            vec![]
        })
    })
    .unwrap();
    let (exts, c_keygen) = state.finish_for_circuit(&reply).unwrap();
    assert_eq!(extensions::cc_sendme_inc(&exts), Some(31));
    assert_eq!(
        &c_keygen.expand(92).unwrap()[..],
        &s_keygen.expand(92).unwrap()[..]
    );
}

#[test]
fn circuit_round_trip_without_extensions() {
    let mut rng = rand::rng();
    let relay = relay_key(1, 2);
    let (state, onionskin) = client_handshake_for_circuit(&mut rng, &relay.public, &[]).unwrap();
    let (reply, _) = server_handshake_for_circuit(&mut rng, &[relay], &onionskin, |exts| {
        assert!(exts.is_empty());
        Some(vec![])
    })
    .unwrap();
    let (exts, _) = state.finish_for_circuit(&reply).unwrap();
    assert!(exts.is_empty());
}

#[test]
fn refusal_and_undecodable_client_message() {
    let mut rng = rand::rng();
    let relay = relay_key(1, 2);
    let keys = [relay.clone()];
    let (_, onionskin) =
        client_handshake_for_circuit(&mut rng, &relay.public, &[extensions::cc_request()]).unwrap();
    assert_eq!(
        server_handshake_for_circuit(&mut rng, &keys, &onionskin, |_| None).err(),
        Some(HandshakeError::MessageRefused)
    );
    // A properly encrypted and MACed message that is not an extension list.
    let (_, onionskin) = client_handshake(
        &mut rng,
        &relay.public,
        &[5, 1],
        CIRCUIT_EXTEND_VERIFICATION,
    )
    .unwrap();
    assert!(matches!(
        server_handshake_for_circuit(&mut rng, &keys, &onionskin, |_| Some(vec![])),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn verification_mismatch_is_refused() {
    let mut rng = rand::rng();
    let relay = relay_key(1, 2);
    let (_, onionskin) = client_handshake(&mut rng, &relay.public, b"hi", b"one").unwrap();
    assert_eq!(
        server_handshake(&mut rng, &[relay], b"two", &onionskin, |_| Some(vec![])).err(),
        Some(HandshakeError::AuthMismatch("ntor-v3 client MAC"))
    );
}

#[test]
fn wrong_identity_or_key_is_refused() {
    let mut rng = rand::rng();
    let relay = relay_key(1, 2);
    let other = relay_key(3, 4);
    for pk in [
        NtorV3PublicKey {
            id: other.public.id,
            onion_key: relay.public.onion_key,
        },
        NtorV3PublicKey {
            id: relay.public.id,
            onion_key: other.public.onion_key,
        },
    ] {
        let (_, onionskin) = client_handshake(&mut rng, &pk, b"", b"").unwrap();
        assert_eq!(
            server_handshake(
                &mut rng,
                std::slice::from_ref(&relay),
                b"",
                &onionskin,
                |_| Some(vec![])
            )
            .err(),
            Some(HandshakeError::UnknownKey)
        );
    }
}

#[test]
fn short_messages_are_malformed() {
    let mut rng = rand::rng();
    let relay = relay_key(1, 2);
    let (state, _) = client_handshake(&mut rng, &relay.public, b"", b"").unwrap();
    assert!(matches!(
        state.finish(&[0; SERVER_HANDSHAKE_MIN_LEN - 1]),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(matches!(
        server_handshake(
            &mut rng,
            &[relay],
            b"",
            &[0; CLIENT_HANDSHAKE_MIN_LEN - 1],
            |_| Some(vec![])
        ),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn degenerate_keys_are_refused() {
    let mut rng = rand::rng();
    let relay = relay_key(1, 2);
    // The relay's reply with Y = 0.
    let (state, _) = client_handshake(&mut rng, &relay.public, b"", b"").unwrap();
    assert_eq!(
        state.finish(&[0; 64]).err(),
        Some(HandshakeError::DegenerateKey)
    );
    // A client onionskin with X = 0.
    let (_, mut onionskin) = client_handshake(&mut rng, &relay.public, b"", b"").unwrap();
    onionskin[64..96].fill(0);
    assert_eq!(
        server_handshake(
            &mut rng,
            std::slice::from_ref(&relay),
            b"",
            &onionskin,
            |_| Some(vec![])
        )
        .err(),
        Some(HandshakeError::DegenerateKey)
    );
    // A relay onion key of small order.
    let bad = NtorV3PublicKey {
        id: relay.public.id,
        onion_key: PublicKey::from([0; 32]),
    };
    assert_eq!(
        client_handshake(&mut rng, &bad, b"", b"").err(),
        Some(HandshakeError::DegenerateKey)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any messages round-trip, and flipping any bit of the reply makes
    /// the client refuse it.
    #[test]
    fn round_trip_and_tamper(
        cm in proptest::collection::vec(any::<u8>(), 0..200),
        sm in proptest::collection::vec(any::<u8>(), 0..200),
        ver in proptest::collection::vec(any::<u8>(), 0..20),
        flip in any::<prop::sample::Index>(),
        bit in 0..8_u8,
    ) {
        let mut rng = rand::rng();
        let relay = relay_key(7, 8);
        let keys = [relay.clone()];
        let (state, onionskin) = client_handshake(&mut rng, &relay.public, &cm, &ver).unwrap();
        let sm2 = sm.clone();
        let mut got_cm = None;
        let (reply, s_keygen) = server_handshake(&mut rng, &keys, &ver, &onionskin, |m| {
            got_cm = Some(m.to_vec());
            Some(sm2)
        }).unwrap();
        prop_assert_eq!(got_cm, Some(cm.clone()));

        let (state2, onionskin2) = client_handshake(&mut rng, &relay.public, &cm, &ver).unwrap();
        let (reply2, _) = server_handshake(&mut rng, &keys, &ver, &onionskin2, |_| Some(sm.clone())).unwrap();
        let mut tampered2 = reply2.clone();
        tampered2[flip.index(reply2.len())] ^= 1 << bit;
        let err = state2.finish(&tampered2).err();
        prop_assert!(matches!(
            err,
            Some(HandshakeError::AuthMismatch(_)) | Some(HandshakeError::DegenerateKey)
        ));

        let (got_sm, c_keygen) = state.finish(&reply).unwrap();
        prop_assert_eq!(got_sm, sm);
        prop_assert_eq!(&c_keygen.expand(92).unwrap()[..], &s_keygen.expand(92).unwrap()[..]);

        // A tampered onionskin is refused by the relay.
        let mut bad = onionskin.clone();
        bad[flip.index(onionskin.len())] ^= 1 << bit;
        let err = server_handshake(&mut rng, &keys, &ver, &bad, |_| Some(vec![])).err();
        prop_assert!(matches!(
            err,
            Some(HandshakeError::AuthMismatch(_))
                | Some(HandshakeError::UnknownKey)
                | Some(HandshakeError::DegenerateKey)
        ));
    }
}
