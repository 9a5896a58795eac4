//! The ntor circuit handshake, CREATE2 handshake type 0x0002
//! (tor-spec §5.1.4, key expansion §5.2.2).
//!
//! Client: [`client_handshake`] builds the 84-byte onionskin from the
//! relay's RSA identity digest and its curve25519 ntor onion key and returns
//! a [`NtorClientState`]; [`NtorClientState::finish`] checks the relay's
//! 64-byte reply (AUTH) and returns the [`KeyGenerator`].
//!
//! Relay: [`server_handshake`] answers an onionskin with any of the relay's
//! current and previous onion keys.

use std::fmt;

use digest::Mac as _;
use hmac::Hmac;
use rand::CryptoRng;
use subtle::ConstantTimeEq as _;
use tor_llcrypto::d::Sha256;
use tor_llcrypto::pk::curve25519::{PublicKey, SharedSecret, StaticSecret};
use tor_llcrypto::pk::rsa::RsaIdentity;
use zeroize::Zeroizing;

use super::error::HandshakeError;
use super::kdf::KeyGenerator;

/// CREATE2 `HTYPE` of ntor (tor-spec §5.1).
pub const HANDSHAKE_TYPE: u16 = 0x0002;
/// `PROTOID` (tor-spec §5.1.4).
pub const PROTOID: &[u8] = b"ntor-curve25519-sha256-1";
/// `t_mac = PROTOID | ":mac"`.
const T_MAC: &[u8] = b"ntor-curve25519-sha256-1:mac";
/// `t_key = PROTOID | ":key_extract"`.
const T_KEY: &[u8] = b"ntor-curve25519-sha256-1:key_extract";
/// `t_verify = PROTOID | ":verify"`.
const T_VERIFY: &[u8] = b"ntor-curve25519-sha256-1:verify";
/// `m_expand = PROTOID | ":key_expand"`.
const M_EXPAND: &[u8] = b"ntor-curve25519-sha256-1:key_expand";

/// `ID_LENGTH`: an RSA identity digest.
const ID_LEN: usize = 20;
/// `G_LENGTH`: a curve25519 public key.
const G_LEN: usize = 32;
/// `H_LENGTH`: an HMAC-SHA256 output.
const H_LEN: usize = 32;

/// Length of the client's onionskin: `NODEID | KEYID | CLIENT_KP`.
pub const CLIENT_HANDSHAKE_LEN: usize = ID_LEN + H_LEN + G_LEN;
/// Length of the relay's reply: `SERVER_KP | AUTH`.
pub const SERVER_HANDSHAKE_LEN: usize = G_LEN + H_LEN;

/// What a client must know of a relay to run ntor with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtorPublicKey {
    /// The relay's RSA identity digest (`ID`, 20 bytes).
    pub id: RsaIdentity,
    /// The relay's ntor onion key (`B`).
    pub onion_key: PublicKey,
}

/// One of a relay's ntor onion keys, with the secret half.
#[derive(Clone)]
pub struct NtorSecretKey {
    /// Identity and public onion key.
    pub public: NtorPublicKey,
    /// The secret onion key `b`.
    secret: StaticSecret,
}

impl NtorSecretKey {
    /// Pair a secret onion key with the relay's identity.
    pub fn new(id: RsaIdentity, secret: StaticSecret) -> Self {
        let onion_key = PublicKey::from(&secret);
        Self {
            public: NtorPublicKey { id, onion_key },
            secret,
        }
    }
}

impl fmt::Debug for NtorSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtorSecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The client's state between sending the onionskin and reading the reply.
pub struct NtorClientState {
    /// The relay addressed.
    relay: NtorPublicKey,
    /// The ephemeral secret `x`.
    x: StaticSecret,
    /// The ephemeral public key `X`.
    x_pub: PublicKey,
}

impl fmt::Debug for NtorClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtorClientState")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

/// A 32-byte secret from the random source, as a curve25519 secret key.
fn random_secret<R: CryptoRng + ?Sized>(rng: &mut R) -> StaticSecret {
    let mut bytes = Zeroizing::new([0_u8; 32]);
    rng.fill_bytes(&mut bytes[..]);
    StaticSecret::from(*bytes)
}

/// Start an ntor handshake with `relay` (tor-spec §5.1.4): the onionskin
/// `NODEID | KEYID(B) | X` for a CREATE2 or EXTEND2 cell, and the state to
/// finish it with.
pub fn client_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
    relay: &NtorPublicKey,
) -> (NtorClientState, [u8; CLIENT_HANDSHAKE_LEN]) {
    client_handshake_with_secret(random_secret(rng), relay)
}

/// [`client_handshake`] with a given ephemeral secret `x` (deterministic:
/// for the known-answer tests).
fn client_handshake_with_secret(
    x: StaticSecret,
    relay: &NtorPublicKey,
) -> (NtorClientState, [u8; CLIENT_HANDSHAKE_LEN]) {
    let x_pub = PublicKey::from(&x);
    let mut onionskin = [0_u8; CLIENT_HANDSHAKE_LEN];
    let (node_id, rest) = onionskin.split_at_mut(ID_LEN);
    let (key_id, client_kp) = rest.split_at_mut(H_LEN);
    node_id.copy_from_slice(relay.id.as_bytes());
    key_id.copy_from_slice(relay.onion_key.as_bytes());
    client_kp.copy_from_slice(x_pub.as_bytes());
    let state = NtorClientState {
        relay: relay.clone(),
        x,
        x_pub,
    };
    (state, onionskin)
}

impl NtorClientState {
    /// The relay this handshake is addressed to.
    pub fn relay(&self) -> &NtorPublicKey {
        &self.relay
    }

    /// Finish the handshake with the relay's reply `SERVER_KP | AUTH`
    /// (tor-spec §5.1.4): check `AUTH` and return the key material.
    ///
    /// A wrong length is [`HandshakeError::Malformed`], a bad `AUTH`
    /// [`HandshakeError::AuthMismatch`], a small-order `Y`
    /// [`HandshakeError::DegenerateKey`].
    pub fn finish(self, reply: &[u8]) -> Result<KeyGenerator, HandshakeError> {
        let (y_bytes, auth) = split_reply(reply)?;
        let y_pub = PublicKey::from(y_bytes);
        // secret_input = EXP(Y,x) | EXP(B,x) | ID | B | X | Y | PROTOID
        let xy = self.x.diffie_hellman(&y_pub);
        let xb = self.x.diffie_hellman(&self.relay.onion_key);
        let derived = derive(&xy, &xb, &self.relay, &self.x_pub, &y_pub)?;
        // The client verifies that AUTH == H(auth_input, t_mac).
        if bool::from(derived.auth.ct_eq(auth)) {
            Ok(derived.keygen)
        } else {
            Err(HandshakeError::AuthMismatch("ntor AUTH"))
        }
    }
}

/// `SERVER_KP | AUTH` of a reply, or `Malformed` for a wrong length.
fn split_reply(reply: &[u8]) -> Result<([u8; G_LEN], &[u8; H_LEN]), HandshakeError> {
    let reply: &[u8; SERVER_HANDSHAKE_LEN] = reply
        .try_into()
        .map_err(|_| HandshakeError::Malformed("ntor reply is not 64 bytes"))?;
    let (y, auth) = reply
        .split_first_chunk::<G_LEN>()
        .ok_or(HandshakeError::Internal("split"))?;
    let auth: &[u8; H_LEN] = auth
        .try_into()
        .map_err(|_| HandshakeError::Internal("split"))?;
    Ok((*y, auth))
}

/// What both sides compute from the two Diffie-Hellman results.
struct Derived {
    /// `AUTH = H(auth_input, t_mac)`.
    auth: [u8; H_LEN],
    /// Key material from `KEY_SEED`.
    keygen: KeyGenerator,
}

/// `H(x, t)`: HMAC-SHA256 with key `t` over the concatenation of `parts`.
fn h(t: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; H_LEN]>, HandshakeError> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(t)
        .map_err(|_| HandshakeError::Internal("HMAC key length"))?;
    for part in parts {
        mac.update(part);
    }
    Ok(Zeroizing::new(mac.finalize().into_bytes().into()))
}

/// The common part of both sides (tor-spec §5.1.4): `secret_input`,
/// `KEY_SEED`, `verify`, `auth_input` and `AUTH`.
///
/// `first` is `EXP(X,y) = EXP(Y,x)`, `second` is `EXP(X,b) = EXP(B,x)`.
fn derive(
    first: &SharedSecret,
    second: &SharedSecret,
    relay: &NtorPublicKey,
    x_pub: &PublicKey,
    y_pub: &PublicKey,
) -> Result<Derived, HandshakeError> {
    // Both parties check that none of the EXP() operations produced the
    // point at infinity.
    if !first.was_contributory() || !second.was_contributory() {
        return Err(HandshakeError::DegenerateKey);
    }
    let id = relay.id.as_bytes();
    let b = relay.onion_key.as_bytes();
    let x = x_pub.as_bytes();
    let y = y_pub.as_bytes();
    // secret_input = EXP(X,y) | EXP(X,b) | ID | B | X | Y | PROTOID
    let secret_input: [&[u8]; 7] = [first.as_bytes(), second.as_bytes(), id, b, x, y, PROTOID];
    // KEY_SEED = H(secret_input, t_key)
    let key_seed = h(T_KEY, &secret_input)?;
    // verify = H(secret_input, t_verify)
    let verify = h(T_VERIFY, &secret_input)?;
    // auth_input = verify | ID | B | Y | X | PROTOID | "Server"
    let auth = h(T_MAC, &[&verify[..], id, b, y, x, PROTOID, b"Server"])?;
    Ok(Derived {
        auth: *auth,
        keygen: KeyGenerator::rfc5869(key_seed, M_EXPAND),
    })
}

/// Answer a client's onionskin (tor-spec §5.1.4, relay side) with one of
/// `keys` (the relay's current and previous ntor onion keys, all with the
/// relay's identity): returns the key material and the 64-byte reply
/// `Y | AUTH` for the CREATED2 or EXTENDED2 cell.
///
/// An onionskin naming another identity or onion key is
/// [`HandshakeError::UnknownKey`].
pub fn server_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &[NtorSecretKey],
    onionskin: &[u8],
) -> Result<(KeyGenerator, [u8; SERVER_HANDSHAKE_LEN]), HandshakeError> {
    server_handshake_with_secret(random_secret(rng), keys, onionskin)
}

/// [`server_handshake`] with a given ephemeral secret `y`.
fn server_handshake_with_secret(
    y: StaticSecret,
    keys: &[NtorSecretKey],
    onionskin: &[u8],
) -> Result<(KeyGenerator, [u8; SERVER_HANDSHAKE_LEN]), HandshakeError> {
    let onionskin: &[u8; CLIENT_HANDSHAKE_LEN] = onionskin
        .try_into()
        .map_err(|_| HandshakeError::Malformed("ntor onionskin is not 84 bytes"))?;
    let (node_id, rest) = onionskin.split_at(ID_LEN);
    let (key_id, client_kp) = rest.split_at(H_LEN);
    let key = keys
        .iter()
        .find(|k| k.public.id.as_bytes() == node_id && k.public.onion_key.as_bytes() == key_id)
        .ok_or(HandshakeError::UnknownKey)?;
    let x_bytes: [u8; G_LEN] = client_kp
        .try_into()
        .map_err(|_| HandshakeError::Internal("split"))?;
    let x_pub = PublicKey::from(x_bytes);
    let y_pub = PublicKey::from(&y);
    let xy = y.diffie_hellman(&x_pub);
    let xb = key.secret.diffie_hellman(&x_pub);
    let derived = derive(&xy, &xb, &key.public, &x_pub, &y_pub)?;
    let mut reply = [0_u8; SERVER_HANDSHAKE_LEN];
    let (server_kp, auth) = reply.split_at_mut(G_LEN);
    server_kp.copy_from_slice(y_pub.as_bytes());
    auth.copy_from_slice(&derived.auth);
    Ok((derived.keygen, reply))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    fn arr32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn relay_key(seed: u8, id: u8) -> NtorSecretKey {
        NtorSecretKey::new(RsaIdentity::from([id; 20]), StaticSecret::from([seed; 32]))
    }

    /// The vector of C-tor's test_ntor_cl / ntor_ref.py, as published in
    /// arti's tor-proto tests.
    #[test]
    fn known_answer() {
        let b = arr32("4820544f4c4420594f5520444f474954204b454550532048415050454e494e47");
        let b_pub = arr32("ccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471");
        let x = arr32("706f6461792069207075742e2e2e2e2e2e2e2e4a454c4c59206f6e2074686973");
        let y = arr32("70686520737175697272656c2e2e2e2e2e2e2e2e686173206869732067616d65");
        let id: [u8; 20] = hex::decode("69546f6c64596f7541626f75745374616972732e")
            .unwrap()
            .try_into()
            .unwrap();
        let client_hs = hex::decode(
            "69546f6c64596f7541626f75745374616972732eccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471e65dfdbef8b2635837fe2cebc086a8096eae3213e6830dc407516083d412b078",
        )
        .unwrap();
        let server_hs = hex::decode(
            "390480a14362761d6aec1fea840f6e9e928fb2adb7b25c670be1045e35133a371cbdf68b89923e1f85e8e18ee6e805ea333fe4849c790ffd2670bd80fec95cc8",
        )
        .unwrap();
        let keys = hex::decode(
            "0c62dee7f48893370d0ef896758d35729867beef1a5121df80e00f79ed349af39b51cae125719182f19d932a667dae1afbf2e336e6910e7822223e763afad0a13342157969dc6b79",
        )
        .unwrap();

        let relay = NtorSecretKey::new(RsaIdentity::from(id), StaticSecret::from(b));
        assert_eq!(relay.public.onion_key.as_bytes(), &b_pub);

        let (state, onionskin) = client_handshake_with_secret(StaticSecret::from(x), &relay.public);
        assert_eq!(&onionskin[..], &client_hs[..]);

        let (s_keygen, reply) = server_handshake_with_secret(
            StaticSecret::from(y),
            std::slice::from_ref(&relay),
            &onionskin,
        )
        .unwrap();
        assert_eq!(&reply[..], &server_hs[..]);

        let c_keygen = state.finish(&reply).unwrap();
        assert_eq!(&c_keygen.expand(keys.len()).unwrap()[..], &keys[..]);
        assert_eq!(&s_keygen.expand(keys.len()).unwrap()[..], &keys[..]);
    }

    #[test]
    fn round_trip_with_rotated_keys() {
        let mut rng = rand::rng();
        let old = relay_key(1, 9);
        let current = relay_key(2, 9);
        let keys = [current.clone(), old.clone()];
        for relay in [&current, &old] {
            let (state, onionskin) = client_handshake(&mut rng, &relay.public);
            let (s_keygen, reply) = server_handshake(&mut rng, &keys, &onionskin).unwrap();
            let c_keygen = state.finish(&reply).unwrap();
            assert_eq!(
                &c_keygen.expand(92).unwrap()[..],
                &s_keygen.expand(92).unwrap()[..]
            );
        }
    }

    #[test]
    fn wrong_identity_or_key_is_refused_by_the_relay() {
        let mut rng = rand::rng();
        let relay = relay_key(3, 7);
        let keys = [relay.clone()];
        let wrong_id = NtorPublicKey {
            id: RsaIdentity::from([8; 20]),
            onion_key: relay.public.onion_key,
        };
        let wrong_key = NtorPublicKey {
            id: relay.public.id,
            onion_key: relay_key(4, 7).public.onion_key,
        };
        for pk in [wrong_id, wrong_key] {
            let (_, onionskin) = client_handshake(&mut rng, &pk);
            assert_eq!(
                server_handshake(&mut rng, &keys, &onionskin).err(),
                Some(HandshakeError::UnknownKey)
            );
        }
        assert!(matches!(
            server_handshake(&mut rng, &keys, &[0; 83]),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn degenerate_client_key_is_refused() {
        let mut rng = rand::rng();
        let relay = relay_key(3, 7);
        let (_, mut onionskin) = client_handshake(&mut rng, &relay.public);
        // X = 0 is of small order: EXP(X, y) is the point at infinity.
        onionskin[52..].fill(0);
        assert_eq!(
            server_handshake(&mut rng, &[relay], &onionskin).err(),
            Some(HandshakeError::DegenerateKey)
        );
    }

    #[test]
    fn degenerate_relay_key_is_refused() {
        let mut rng = rand::rng();
        let relay = relay_key(3, 7);
        let (state, _) = client_handshake(&mut rng, &relay.public);
        let mut reply = [0_u8; SERVER_HANDSHAKE_LEN];
        reply[0] = 1; // Y = 1: small order too.
        assert_eq!(
            state.finish(&reply).err(),
            Some(HandshakeError::DegenerateKey)
        );
    }

    #[test]
    fn short_reply_is_malformed() {
        let mut rng = rand::rng();
        let relay = relay_key(3, 7);
        let (state, _) = client_handshake(&mut rng, &relay.public);
        assert!(matches!(
            state.finish(&[0; 63]),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let relay = relay_key(0x55, 7);
        let s = format!("{relay:?}");
        assert!(!s.contains("85")); // 0x55 printed as a decimal byte
        assert!(!s.contains("55, 55"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Flipping any bit of the reply makes the client refuse it.
        #[test]
        fn tampered_reply_is_refused(byte in 0..SERVER_HANDSHAKE_LEN, bit in 0..8_u8) {
            let mut rng = rand::rng();
            let relay = relay_key(5, 1);
            let (state, onionskin) = client_handshake(&mut rng, &relay.public);
            let (_, mut reply) = server_handshake(&mut rng, &[relay], &onionskin).unwrap();
            reply[byte] ^= 1 << bit;
            let err = state.finish(&reply).err();
            // Flipping a bit of Y may also yield a small-order point.
            prop_assert!(matches!(
                err,
                Some(HandshakeError::AuthMismatch(_)) | Some(HandshakeError::DegenerateKey)
            ));
        }
    }
}
