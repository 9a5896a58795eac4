//! Tests of [`super`]: known answers, per-hop round trips, digests, SENDME tags and tampering.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use digest::{ExtendableOutput as _, Update as _, XofReader as _};
use proptest::prelude::*;

use super::*;

/// Key material for hop `seed` (distinct per seed).
fn keys(seed: u8) -> Tor1Keys {
    let km: Vec<u8> = (0..Tor1Keys::KEY_MATERIAL_LEN)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    Tor1Keys::from_key_material(&km).unwrap()
}

/// A client with `n` hops and the matching relays.
fn circuit(n: u8) -> (ClientLayers, Vec<RelayHop>) {
    let mut client = ClientLayers::new();
    let mut relays = Vec::new();
    for i in 0..n {
        let k = keys(i + 1);
        assert_eq!(client.add_hop(&k).unwrap(), HopNum(i));
        relays.push(RelayHop::new(&k));
    }
    (client, relays)
}

/// A DATA cell on stream 1 carrying `data` (at most 498 bytes).
fn data_cell(data: &[u8]) -> RelayCellBody {
    let mut body = [0_u8; CELL_BODY_LEN];
    body[0] = 2; // RELAY_DATA
    body[4] = 1; // stream 1
    let len = u16::try_from(data.len()).unwrap();
    body[9..11].copy_from_slice(&len.to_be_bytes());
    body[11..11 + data.len()].copy_from_slice(data);
    body
}

/// Pass an outbound cell along the relays; the index of the relay that
/// recognized it, with the tag.
fn deliver_outbound(
    relays: &mut [RelayHop],
    body: &mut RelayCellBody,
) -> Option<(usize, SendmeTag)> {
    for (i, r) in relays.iter_mut().enumerate() {
        if let Some(tag) = r.decrypt_outbound(body) {
            return Some((i, tag));
        }
    }
    None
}

/// Relay `from` originates an inbound cell; those before it add their
/// layers.
fn send_inbound(relays: &mut [RelayHop], from: usize, body: &mut RelayCellBody) -> SendmeTag {
    let tag = relays[from].originate_inbound(body);
    for r in relays[..from].iter_mut().rev() {
        r.encrypt_inbound(body);
    }
    tag
}

/// C-tor's test_relaycrypt.c vectors (cells encrypted by C-tor, as
/// published in arti): three hops with fixed key material, 51 DATA
/// cells with SHAKE-256 generated contents sent to the third hop.
#[test]
fn known_answer_c_tor_relaycrypt() {
    const K1: &[u8; 92] =
        b"    'My public key is in this signed x509 object', said Tom assertively.      (N-PREG-VIRYL)";
    const K2: &[u8; 92] =
        b"'Let's chart the pedal phlanges in the tomb', said Tom cryptographically.  (PELCG-GBR-TENCU)";
    const K3: &[u8; 92] =
        b"     'Segmentation fault bugs don't _just happen_', said Tom seethingly.        (P-GUVAT-YL)";
    const SEED: &[u8] = b"'You mean to tell me that there's a version of Sha-3 with no limit on the output length?', said Tom shakily.";
    let expected: Vec<(usize, Vec<u8>)> = include_str!("../testdata/tor1_relaycrypt.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (n, h) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), hex::decode(h).unwrap())
        })
        .collect();
    assert_eq!(expected.len(), 8);

    let mut client = ClientLayers::new();
    let mut relays = Vec::new();
    for k in [K1, K2, K3] {
        let keys = Tor1Keys::from_key_material(k).unwrap();
        client.add_hop(&keys).unwrap();
        relays.push(RelayHop::new(&keys));
    }
    let mut xof = tor_llcrypto::d::Shake256::default();
    xof.update(SEED);
    let mut stream = xof.finalize_xof();
    let mut checked = 0;
    for cellno in 0..51 {
        let mut body = [0_u8; CELL_BODY_LEN];
        body[0] = 2; // RELAY_DATA
        body[4] = 1; // stream 1
        body[9] = 1; // length 498
        body[10] = 242;
        stream.read(&mut body[11..]);
        let plain = body;
        let client_tag = client.encrypt_outbound(HopNum(2), &mut body).unwrap();
        if let Some((_, cell)) = expected.iter().find(|(n, _)| *n == cellno) {
            assert_eq!(&body[..], &cell[..], "cell {cellno}");
            checked += 1;
        }
        // And the relays peel what C-tor produced back to the plaintext.
        let (at, relay_tag) = deliver_outbound(&mut relays, &mut body).unwrap();
        assert_eq!(at, 2);
        assert_eq!(relay_tag, client_tag);
        assert_eq!(
            &body[..11],
            &{
                let mut p = plain;
                p[5..9].copy_from_slice(&body[5..9]);
                p
            }[..11]
        );
        assert_eq!(&body[11..], &plain[11..]);
    }
    assert_eq!(checked, 8);
}

#[test]
fn outbound_round_trip_to_every_hop() {
    let (mut client, mut relays) = circuit(3);
    for round in 0..5_u8 {
        for target in 0..3_u8 {
            let plain = data_cell(&[round, target, 0xee]);
            let mut body = plain;
            let c_tag = client.encrypt_outbound(HopNum(target), &mut body).unwrap();
            assert_ne!(body, plain);
            let (at, r_tag) = deliver_outbound(&mut relays, &mut body).unwrap();
            assert_eq!(at, usize::from(target));
            assert_eq!(r_tag, c_tag);
            assert_eq!(body[0], 2);
            assert_eq!(&body[11..14], &[round, target, 0xee]);
            assert_eq!(&body[9..11], &[0, 3]);
            // Everything but the digest field is the plaintext.
            let mut expect = plain;
            expect[5..9].copy_from_slice(&body[5..9]);
            assert_eq!(body, expect);
        }
    }
}

#[test]
fn inbound_round_trip_from_every_hop() {
    let (mut client, mut relays) = circuit(3);
    for round in 0..5_u8 {
        for from in 0..3_usize {
            let plain = data_cell(&[round, 0xaa]);
            let mut body = plain;
            let r_tag = send_inbound(&mut relays, from, &mut body);
            let (hop, c_tag) = client.decrypt_inbound(&mut body).unwrap();
            assert_eq!(usize::from(hop.0), from);
            assert_eq!(c_tag, r_tag);
            let mut expect = plain;
            expect[5..9].copy_from_slice(&body[5..9]);
            assert_eq!(body, expect);
        }
    }
}

#[test]
fn cell_for_a_later_hop_is_not_recognized_earlier() {
    let (mut client, mut relays) = circuit(3);
    let mut body = data_cell(b"for hop 2");
    client.encrypt_outbound(HopNum(2), &mut body).unwrap();
    assert_eq!(relays[0].decrypt_outbound(&mut body), None);
    assert_eq!(relays[1].decrypt_outbound(&mut body), None);
    assert!(relays[2].decrypt_outbound(&mut body).is_some());

    let mut body = data_cell(b"for hop 1");
    client.encrypt_outbound(HopNum(1), &mut body).unwrap();
    assert_eq!(relays[0].decrypt_outbound(&mut body), None);
    assert!(relays[1].decrypt_outbound(&mut body).is_some());
}

/// A cell with `recognized` zero but a wrong digest is not recognized
/// and leaves the running digest untouched, so the next genuine cell
/// still is.
#[test]
fn unrecognized_cell_leaves_digest_unchanged() {
    let k = keys(9);
    // The sender's and the receiver's views of one direction.
    let mut sender = CryptState::new(&k.kf, &k.df);
    let mut receiver = CryptState::new(&k.kf, &k.df);
    let before = receiver.digest_now();

    let mut fake = data_cell(b"recognized is zero, digest is wrong");
    fake[5..9].copy_from_slice(&[1, 2, 3, 4]);
    sender.apply(&mut fake);
    receiver.apply(&mut fake);
    assert_eq!(&fake[1..3], &[0, 0]);
    assert_eq!(receiver.recognize(&fake), None);
    assert_eq!(receiver.digest_now(), before);

    let mut real = data_cell(b"genuine");
    let s_tag = sender.originate(&mut real);
    sender.apply(&mut real);
    receiver.apply(&mut real);
    assert_eq!(receiver.recognize(&real), Some(s_tag));
    assert_ne!(receiver.digest_now(), before);
}

/// The same through the public API: at the client, a cell from hop 2
/// is checked (and refused) at hops 0 and 1 without disturbing them.
#[test]
fn interleaved_hops_keep_their_digests() {
    let (mut client, mut relays) = circuit(3);
    for from in [2, 0, 2, 1, 1, 0, 2, 0] {
        let mut body = data_cell(&[from as u8]);
        let r_tag = send_inbound(&mut relays, from, &mut body);
        assert_eq!(
            client.decrypt_inbound(&mut body),
            Some((HopNum(from as u8), r_tag))
        );
    }
}

#[test]
fn sendme_tags_differ_per_cell_and_match_the_running_digest() {
    let (mut client, mut relays) = circuit(2);
    let mut tags = Vec::new();
    for _ in 0..3 {
        let mut body = data_cell(b"same payload");
        let tag = client.encrypt_outbound(HopNum(1), &mut body).unwrap();
        let (_, r_tag) = deliver_outbound(&mut relays, &mut body).unwrap();
        assert_eq!(tag, r_tag);
        // The digest field is the first four bytes of the tag.
        assert_eq!(&body[5..9], &tag.as_bytes()[..4]);
        assert_eq!(client.hops[1].outbound.digest_now(), *tag.as_bytes());
        tags.push(tag);
    }
    assert_ne!(tags[0], tags[1]);
    assert_ne!(tags[1], tags[2]);
    assert!(tags[0].ct_eq(&tags[0]));
    assert!(!tags[0].ct_eq(&tags[1]));
}

#[test]
fn garbage_inbound_cell_is_not_recognized() {
    let (mut client, _) = circuit(3);
    let mut body = [0x5a_u8; CELL_BODY_LEN];
    assert_eq!(client.decrypt_inbound(&mut body), None);
}

#[test]
fn caller_errors() {
    let (mut client, _) = circuit(2);
    let mut body = data_cell(b"x");
    assert_eq!(
        client.encrypt_outbound(HopNum(2), &mut body),
        Err(RelayCryptoError::NoSuchHop {
            hop: HopNum(2),
            n_hops: 2
        })
    );
    assert_eq!(body, data_cell(b"x"));
    let mut empty = ClientLayers::new();
    assert!(empty.encrypt_outbound(HopNum(0), &mut body).is_err());
    assert_eq!(empty.decrypt_inbound(&mut body), None);
    assert_eq!(
        Tor1Keys::from_key_material(&[0; 91]).err(),
        Some(RelayCryptoError::ShortKeyMaterial {
            needed: 92,
            got: 91
        })
    );
    let mut full = ClientLayers::new();
    let k = keys(1);
    for _ in 0..256 {
        full.add_hop(&k).unwrap();
    }
    assert_eq!(full.add_hop(&k), Err(RelayCryptoError::TooManyHops));
    client.truncate(1);
    assert_eq!(client.n_hops(), 1);
}

#[test]
fn key_material_layouts() {
    let km: Vec<u8> = (0..92).collect();
    let a = Tor1Keys::from_key_material(&km).unwrap();
    assert_eq!(a.df[0], 0);
    assert_eq!(a.db[0], 20);
    assert_eq!(a.kf[0], 40);
    assert_eq!(a.kb[0], 56);
    assert_eq!(a.kh()[0], 72);
    let b = Tor1Keys::from_kdf_tor_key_material(&km).unwrap();
    assert_eq!(b.kh()[0], 0);
    assert_eq!(b.df[0], 20);
    assert_eq!(b.db[0], 40);
    assert_eq!(b.kf[0], 60);
    assert_eq!(b.kb[0], 76);
    // derive() picks the layout from the KDF.
    let c = Tor1Keys::derive(KeyGenerator::kdf_tor(b"K0")).unwrap();
    let raw = super::super::kdf::kdf_tor(b"K0", 92).unwrap();
    assert_eq!(&c.kh()[..], &raw[..20]);
    assert_eq!(&c.df[..], &raw[20..40]);
    assert_eq!(format!("{c:?}"), "Tor1Keys { .. }");
}

/// An end-to-end check with real handshakes: ntor for hop 0, ntor-v3
/// for hops 1 and 2, keys through `Tor1Keys::derive`.
#[test]
fn with_real_handshakes() {
    use super::super::{ntor, ntor_v3};
    use tor_llcrypto::pk::curve25519::StaticSecret;
    let mut rng = rand::rng();
    let mut client = ClientLayers::new();
    let mut relays = Vec::new();

    let relay0 = ntor::NtorSecretKey::new([1; 20].into(), StaticSecret::from([11; 32]));
    let (st, skin) = ntor::client_handshake(&mut rng, &relay0.public);
    let (s_kg, reply) = ntor::server_handshake(&mut rng, &[relay0], &skin).unwrap();
    client
        .add_hop(&Tor1Keys::derive(st.finish(&reply).unwrap()).unwrap())
        .unwrap();
    relays.push(RelayHop::new(&Tor1Keys::derive(s_kg).unwrap()));

    for i in 1..3_u8 {
        let relay = ntor_v3::NtorV3SecretKey::new(
            tor_llcrypto::pk::ed25519::Ed25519Identity::new([i; 32]),
            StaticSecret::from([i + 20; 32]),
        );
        let (st, skin) =
            ntor_v3::client_handshake_for_circuit(&mut rng, &relay.public, &[]).unwrap();
        let (reply, s_kg) =
            ntor_v3::server_handshake_for_circuit(&mut rng, &[relay], &skin, |_| Some(vec![]))
                .unwrap();
        let (_, c_kg) = st.finish_for_circuit(&reply).unwrap();
        client.add_hop(&Tor1Keys::derive(c_kg).unwrap()).unwrap();
        relays.push(RelayHop::new(&Tor1Keys::derive(s_kg).unwrap()));
    }
    let mut body = data_cell(b"hello exit");
    let tag = client.encrypt_outbound(HopNum(2), &mut body).unwrap();
    assert_eq!(deliver_outbound(&mut relays, &mut body), Some((2, tag)));
    let mut body = data_cell(b"hello client");
    let tag = send_inbound(&mut relays, 2, &mut body);
    assert_eq!(client.decrypt_inbound(&mut body), Some((HopNum(2), tag)));
}

/// One step of a random conversation: a cell to or from a hop.
#[derive(Debug, Clone)]
struct Step {
    outbound: bool,
    hop: u8,
    payload: Vec<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        any::<bool>(),
        0..3_u8,
        proptest::collection::vec(any::<u8>(), 0..=498),
    )
        .prop_map(|(outbound, hop, payload)| Step {
            outbound,
            hop,
            payload,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of cells in both directions arrives at the right
    /// hop, intact, with equal SENDME tags on both ends.
    #[test]
    fn random_conversations(steps in proptest::collection::vec(step(), 1..24)) {
        let (mut client, mut relays) = circuit(3);
        for s in steps {
            let plain = data_cell(&s.payload);
            let mut body = plain;
            let (at, tag_a, tag_b) = if s.outbound {
                let a = client.encrypt_outbound(HopNum(s.hop), &mut body).unwrap();
                let (at, b) = deliver_outbound(&mut relays, &mut body).unwrap();
                (at, a, b)
            } else {
                let a = send_inbound(&mut relays, usize::from(s.hop), &mut body);
                let (hop, b) = client.decrypt_inbound(&mut body).unwrap();
                (usize::from(hop.0), a, b)
            };
            prop_assert_eq!(at, usize::from(s.hop));
            prop_assert_eq!(tag_a, tag_b);
            prop_assert_eq!(&body[..5], &plain[..5]);
            prop_assert_eq!(&body[9..], &plain[9..]);
        }
    }

    /// Flipping a bit of an outbound cell makes its target refuse it.
    #[test]
    fn tampered_cell_is_refused(
        payload in proptest::collection::vec(any::<u8>(), 0..=498),
        byte in 0..CELL_BODY_LEN,
        bit in 0..8_u8,
    ) {
        let (mut client, mut relays) = circuit(2);
        let mut body = data_cell(&payload);
        client.encrypt_outbound(HopNum(1), &mut body).unwrap();
        body[byte] ^= 1 << bit;
        // Hop 0 may (with chance 2^-16 per cell) see recognized == 0,
        // but it can never match the digest of hop 1's cell.
        prop_assert_eq!(relays[0].decrypt_outbound(&mut body), None);
        prop_assert_eq!(relays[1].decrypt_outbound(&mut body), None);
    }
}
