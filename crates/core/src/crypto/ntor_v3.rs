//! The ntor-v3 circuit handshake, CREATE2 handshake type 0x0003
//! (proposal 332; tor-spec "The ntor-v3 handshake").
//!
//! Unlike ntor, the client addresses the relay by its ed25519 identity and
//! sends an encrypted, authenticated message (`CM`) with its onionskin; the
//! relay answers with its own encrypted message (`SM`). For circuit
//! extension both messages are extension lists ([`super::extensions`]) and
//! the verification string is `"circuit extend"`: use
//! [`client_handshake_for_circuit`], [`NtorV3ClientState::finish_for_circuit`]
//! and [`server_handshake_for_circuit`]. The general functions take raw
//! messages and any verification string.
//!
//! Instantiation (proposal 332 A.1): `H(s,t) = SHA3_256(ENCAP(t) | s)`,
//! `MAC(k,msg,t) = SHA3_256(ENCAP(t) | ENCAP(k) | msg)`,
//! `KDF(s,t) = SHAKE_256(ENCAP(t) | s)`, `ENC = AES-256-CTR` (zero IV),
//! curve25519, all lengths 32.

use std::fmt;

use cipher::{KeyIvInit as _, StreamCipher as _};
use digest::{Digest as _, ExtendableOutput as _, XofReader as _};
use rand::CryptoRng;
use subtle::ConstantTimeEq as _;
use tor_llcrypto::cipher::aes::Aes256Ctr;
use tor_llcrypto::d::{Sha3_256, Shake256, Shake256Reader};
use tor_llcrypto::pk::curve25519::{PublicKey, SharedSecret, StaticSecret};
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use zeroize::Zeroizing;

use super::error::HandshakeError;
use super::extensions::{self, CircRequestExt, CircResponseExt};
use super::kdf::KeyGenerator;

/// CREATE2 `HTYPE` of ntor-v3.
pub const HANDSHAKE_TYPE: u16 = 0x0003;
/// `PROTOID` (proposal 332 A.2).
pub const PROTOID: &[u8] = b"ntor3-curve25519-sha3_256-1";
/// The verification string `VER` for circuit extension (C-tor's
/// `NTOR3_CIRC_VERIFICATION`).
pub const CIRCUIT_EXTEND_VERIFICATION: &[u8] = b"circuit extend";

/// `t_msgkdf = PROTOID | ":kdf_phase1"`.
const T_MSGKDF: &[u8] = b"ntor3-curve25519-sha3_256-1:kdf_phase1";
/// `t_msgmac = PROTOID | ":msg_mac"`.
const T_MSGMAC: &[u8] = b"ntor3-curve25519-sha3_256-1:msg_mac";
/// `t_key_seed = PROTOID | ":key_seed"`.
const T_KEY_SEED: &[u8] = b"ntor3-curve25519-sha3_256-1:key_seed";
/// `t_verify = PROTOID | ":verify"`.
const T_VERIFY: &[u8] = b"ntor3-curve25519-sha3_256-1:verify";
/// `t_final = PROTOID | ":kdf_final"`.
const T_FINAL: &[u8] = b"ntor3-curve25519-sha3_256-1:kdf_final";
/// `t_auth = PROTOID | ":auth_final"`.
const T_AUTH: &[u8] = b"ntor3-curve25519-sha3_256-1:auth_final";

/// `DIGEST_LEN = MAC_LEN = MAC_KEY_LEN = ENC_KEY_LEN = PUB_KEY_LEN = ID_LEN`.
const LEN: usize = 32;

/// Shortest client onionskin: `NODEID | KEYID | CLIENT_PK | MAC` with an
/// empty message.
pub const CLIENT_HANDSHAKE_MIN_LEN: usize = 4 * LEN;
/// Shortest relay reply: `Y | AUTH` with an empty message.
pub const SERVER_HANDSHAKE_MIN_LEN: usize = 2 * LEN;

/// What a client must know of a relay to run ntor-v3 with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtorV3PublicKey {
    /// The relay's ed25519 identity (`ID`).
    pub id: Ed25519Identity,
    /// The relay's ntor onion key (`B`).
    pub onion_key: PublicKey,
}

/// One of a relay's ntor onion keys, with the secret half.
#[derive(Clone)]
pub struct NtorV3SecretKey {
    /// Identity and public onion key.
    pub public: NtorV3PublicKey,
    /// The secret onion key `b`.
    secret: StaticSecret,
}

impl NtorV3SecretKey {
    /// Pair a secret onion key with the relay's identity.
    pub fn new(id: Ed25519Identity, secret: StaticSecret) -> Self {
        let onion_key = PublicKey::from(&secret);
        Self {
            public: NtorV3PublicKey { id, onion_key },
            secret,
        }
    }
}

impl fmt::Debug for NtorV3SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtorV3SecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The client's state between sending the onionskin and reading the reply.
pub struct NtorV3ClientState {
    /// The relay addressed.
    relay: NtorV3PublicKey,
    /// The ephemeral secret `x`.
    x: StaticSecret,
    /// `X`.
    x_pub: PublicKey,
    /// `Bx = EXP(B, x)`.
    bx: Zeroizing<[u8; LEN]>,
    /// The MAC the client sent.
    msg_mac: [u8; LEN],
    /// `VER`.
    verification: Vec<u8>,
}

impl fmt::Debug for NtorV3ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtorV3ClientState")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

/// `ENCAP(s) = htonll(len(s)) | s`: the length prefix.
fn encap_len(s: &[u8]) -> [u8; 8] {
    (s.len() as u64).to_be_bytes()
}

/// `H(s, t) = SHA3_256(ENCAP(t) | s)`, `s` the concatenation of `parts`.
fn h(t: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; LEN]> {
    let mut d = Sha3_256::new();
    d.update(encap_len(t));
    d.update(t);
    for p in parts {
        d.update(p);
    }
    Zeroizing::new(d.finalize().into())
}

/// `MAC(k, msg, t) = SHA3_256(ENCAP(t) | ENCAP(k) | msg)`.
fn mac(k: &[u8], t: &[u8], parts: &[&[u8]]) -> [u8; LEN] {
    let mut d = Sha3_256::new();
    d.update(encap_len(t));
    d.update(t);
    d.update(encap_len(k));
    d.update(k);
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// `KDF(s, t) = SHAKE_256(ENCAP(t) | s)`, as a reader.
fn kdf(t: &[u8], parts: &[&[u8]]) -> Shake256Reader {
    let mut xof = Shake256::default();
    digest::Update::update(&mut xof, &encap_len(t));
    digest::Update::update(&mut xof, t);
    for p in parts {
        digest::Update::update(&mut xof, p);
    }
    xof.finalize_xof()
}

/// `ENC(k, m)` / `DEC(k, m)`: AES-256-CTR with a zero IV, in place.
fn aes256_ctr(key: &[u8; LEN], buf: &mut [u8]) {
    let mut c = Aes256Ctr::new(&(*key).into(), &Default::default());
    c.apply_keystream(buf);
}

/// The bytes of a Diffie-Hellman result, refusing the point at infinity
/// (proposal 332 "Security notes").
fn checked(s: &SharedSecret) -> Result<Zeroizing<[u8; LEN]>, HandshakeError> {
    if s.was_contributory() {
        Ok(Zeroizing::new(*s.as_bytes()))
    } else {
        Err(HandshakeError::DegenerateKey)
    }
}

/// Phase-1 keys `(ENC_K1, MAC_K1)` from `Bx = Xb`:
/// `KDF_msgkdf(Bx | ID | X | B | PROTOID | ENCAP(VER))`.
fn phase1_keys(
    bx: &[u8; LEN],
    relay: &NtorV3PublicKey,
    x_pub: &PublicKey,
    ver: &[u8],
) -> (Zeroizing<[u8; LEN]>, Zeroizing<[u8; LEN]>) {
    let mut r = kdf(
        T_MSGKDF,
        &[
            bx,
            relay.id.as_bytes(),
            x_pub.as_bytes(),
            relay.onion_key.as_bytes(),
            PROTOID,
            &encap_len(ver),
            ver,
        ],
    );
    let mut enc_k1 = Zeroizing::new([0_u8; LEN]);
    let mut mac_k1 = Zeroizing::new([0_u8; LEN]);
    r.read(&mut enc_k1[..]);
    r.read(&mut mac_k1[..]);
    (enc_k1, mac_k1)
}

/// `MAC_msgmac(MAC_K1, ID | B | X | encrypted_msg)`.
fn msg_mac(
    mac_k1: &[u8; LEN],
    relay: &NtorV3PublicKey,
    x_pub: &PublicKey,
    emsg: &[u8],
) -> [u8; LEN] {
    mac(
        mac_k1,
        T_MSGMAC,
        &[
            relay.id.as_bytes(),
            relay.onion_key.as_bytes(),
            x_pub.as_bytes(),
            emsg,
        ],
    )
}

/// The second phase, common to both sides (proposal 332 "Server
/// operation", "Client operation, phase 2"): from `Xy = Yx` and
/// `Xb = Bx`, `verify`, `ENC_KEY` and the key stream.
struct Phase2 {
    /// `verify = H_verify(secret_input)`.
    verify: Zeroizing<[u8; LEN]>,
    /// `ENC_KEY`, the first 32 bytes of `KDF_final(ntor_key_seed)`.
    enc_key: Zeroizing<[u8; LEN]>,
    /// The rest of `KDF_final(ntor_key_seed)`.
    keystream: Shake256Reader,
}

/// The public values both sides hash.
struct Transcript<'a> {
    /// The relay (`ID`, `B`).
    relay: &'a NtorV3PublicKey,
    /// `X`.
    x_pub: &'a PublicKey,
    /// `Y`.
    y_pub: &'a PublicKey,
}

/// See [`Phase2`].
fn phase2(xy: &[u8; LEN], xb: &[u8; LEN], t: &Transcript<'_>, ver: &[u8]) -> Phase2 {
    // secret_input = Xy | Xb | ID | B | X | Y | PROTOID | ENCAP(VER)
    let ver_len = encap_len(ver);
    let secret_input: [&[u8]; 9] = [
        xy,
        xb,
        t.relay.id.as_bytes(),
        t.relay.onion_key.as_bytes(),
        t.x_pub.as_bytes(),
        t.y_pub.as_bytes(),
        PROTOID,
        &ver_len,
        ver,
    ];
    // ntor_key_seed = H_key_seed(secret_input); verify = H_verify(secret_input)
    let key_seed = h(T_KEY_SEED, &secret_input);
    let verify = h(T_VERIFY, &secret_input);
    // RAW_KEYSTREAM = KDF_final(ntor_key_seed)
    // (ENC_KEY, KEYSTREAM) = PARTITION(RAW_KEYSTREAM, ENC_KEY_LEN, ...)
    let mut keystream = kdf(T_FINAL, &[&key_seed[..]]);
    let mut enc_key = Zeroizing::new([0_u8; LEN]);
    keystream.read(&mut enc_key[..]);
    Phase2 {
        verify,
        enc_key,
        keystream,
    }
}

/// `AUTH = H_auth(verify | ID | B | Y | X | MAC | ENCAP(encrypted_msg) |
/// PROTOID | "Server")`.
fn auth(
    verify: &[u8; LEN],
    t: &Transcript<'_>,
    client_mac: &[u8; LEN],
    server_emsg: &[u8],
) -> [u8; LEN] {
    *h(
        T_AUTH,
        &[
            verify,
            t.relay.id.as_bytes(),
            t.relay.onion_key.as_bytes(),
            t.y_pub.as_bytes(),
            t.x_pub.as_bytes(),
            client_mac,
            &encap_len(server_emsg),
            server_emsg,
            PROTOID,
            b"Server",
        ],
    )
}

/// A 32-byte secret from the random source, as a curve25519 secret key.
fn random_secret<R: CryptoRng + ?Sized>(rng: &mut R) -> StaticSecret {
    let mut bytes = Zeroizing::new([0_u8; LEN]);
    rng.fill_bytes(&mut bytes[..]);
    StaticSecret::from(*bytes)
}

/// Start an ntor-v3 handshake with `relay`, sending `client_msg` (`CM`)
/// under verification string `verification` (`VER`): returns the state and
/// the onionskin `ID | B | X | ENC(CM) | MAC`.
///
/// Fails only with [`HandshakeError::DegenerateKey`] if the relay's onion
/// key is of small order (bad directory data).
pub fn client_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
    relay: &NtorV3PublicKey,
    client_msg: &[u8],
    verification: &[u8],
) -> Result<(NtorV3ClientState, Vec<u8>), HandshakeError> {
    client_handshake_with_secret(random_secret(rng), relay, client_msg, verification)
}

/// [`client_handshake`] with a given ephemeral secret `x`.
fn client_handshake_with_secret(
    x: StaticSecret,
    relay: &NtorV3PublicKey,
    client_msg: &[u8],
    verification: &[u8],
) -> Result<(NtorV3ClientState, Vec<u8>), HandshakeError> {
    let x_pub = PublicKey::from(&x);
    // Bx = EXP(B,x)
    let bx = checked(&x.diffie_hellman(&relay.onion_key))?;
    let (enc_k1, mac_k1) = phase1_keys(&bx, relay, &x_pub, verification);
    // encrypted_msg = ENC(ENC_K1, CM)
    let mut onionskin = Vec::with_capacity(CLIENT_HANDSHAKE_MIN_LEN + client_msg.len());
    onionskin.extend_from_slice(relay.id.as_bytes());
    onionskin.extend_from_slice(relay.onion_key.as_bytes());
    onionskin.extend_from_slice(x_pub.as_bytes());
    let mut emsg = client_msg.to_vec();
    aes256_ctr(&enc_k1, &mut emsg);
    // msg_mac = MAC_msgmac(MAC_K1, ID | B | X | encrypted_msg)
    let msg_mac = msg_mac(&mac_k1, relay, &x_pub, &emsg);
    onionskin.extend_from_slice(&emsg);
    onionskin.extend_from_slice(&msg_mac);
    let state = NtorV3ClientState {
        relay: relay.clone(),
        x,
        x_pub,
        bx,
        msg_mac,
        verification: verification.to_vec(),
    };
    Ok((state, onionskin))
}

impl NtorV3ClientState {
    /// The relay this handshake is addressed to.
    pub fn relay(&self) -> &NtorV3PublicKey {
        &self.relay
    }

    /// Finish the handshake with the relay's reply `Y | AUTH | MSG`
    /// (proposal 332 "Client operation, phase 2"): check `AUTH`, decrypt the
    /// relay's message `SM`, and return it with the key material.
    pub fn finish(self, reply: &[u8]) -> Result<(Vec<u8>, KeyGenerator), HandshakeError> {
        let (y_bytes, rest) = reply
            .split_first_chunk::<LEN>()
            .ok_or(HandshakeError::Malformed("ntor-v3 reply too short"))?;
        let (auth_got, server_emsg) = rest
            .split_first_chunk::<LEN>()
            .ok_or(HandshakeError::Malformed("ntor-v3 reply too short"))?;
        let y_pub = PublicKey::from(*y_bytes);
        // Yx = EXP(Y, x)
        let yx = checked(&self.x.diffie_hellman(&y_pub))?;
        let t = Transcript {
            relay: &self.relay,
            x_pub: &self.x_pub,
            y_pub: &y_pub,
        };
        let p2 = phase2(&yx, &self.bx, &t, &self.verification);
        let expected = auth(&p2.verify, &t, &self.msg_mac, server_emsg);
        if !bool::from(expected.ct_eq(auth_got)) {
            return Err(HandshakeError::AuthMismatch("ntor-v3 AUTH"));
        }
        // SM = DEC(ENC_KEY, MSG)
        let mut server_msg = server_emsg.to_vec();
        aes256_ctr(&p2.enc_key, &mut server_msg);
        Ok((server_msg, KeyGenerator::shake(p2.keystream)))
    }

    /// [`finish`](Self::finish) for circuit extension: the relay's message
    /// decoded as an extension list.
    pub fn finish_for_circuit(
        self,
        reply: &[u8],
    ) -> Result<(Vec<CircResponseExt>, KeyGenerator), HandshakeError> {
        let (msg, keygen) = self.finish(reply)?;
        Ok((extensions::decode_response(&msg)?, keygen))
    }
}

/// Start an ntor-v3 handshake for circuit extension (CREATE2/EXTEND2
/// type 0x0003): `exts` encoded as the client message, verification string
/// [`CIRCUIT_EXTEND_VERIFICATION`].
pub fn client_handshake_for_circuit<R: CryptoRng + ?Sized>(
    rng: &mut R,
    relay: &NtorV3PublicKey,
    exts: &[CircRequestExt],
) -> Result<(NtorV3ClientState, Vec<u8>), HandshakeError> {
    let msg = extensions::encode_request(exts)?;
    client_handshake(rng, relay, &msg, CIRCUIT_EXTEND_VERIFICATION)
}

/// Answer a client's onionskin (proposal 332 "Server operation") with one
/// of `keys` (the relay's current and previous onion keys, all with its
/// identity), under verification string `verification`.
///
/// `respond` gets the client's decrypted message `CM` and returns the
/// relay's message `SM`, or `None` to refuse
/// ([`HandshakeError::MessageRefused`]); it is called only once the
/// client's MAC has verified. Returns the reply `Y | AUTH | ENC(SM)` and
/// the key material.
pub fn server_handshake<R, F>(
    rng: &mut R,
    keys: &[NtorV3SecretKey],
    verification: &[u8],
    onionskin: &[u8],
    respond: F,
) -> Result<(Vec<u8>, KeyGenerator), HandshakeError>
where
    R: CryptoRng + ?Sized,
    F: FnOnce(&[u8]) -> Option<Vec<u8>>,
{
    server_handshake_with_secret(random_secret(rng), keys, verification, onionskin, respond)
}

/// [`server_handshake`] with a given ephemeral secret `y`.
fn server_handshake_with_secret<F>(
    y: StaticSecret,
    keys: &[NtorV3SecretKey],
    verification: &[u8],
    onionskin: &[u8],
    respond: F,
) -> Result<(Vec<u8>, KeyGenerator), HandshakeError>
where
    F: FnOnce(&[u8]) -> Option<Vec<u8>>,
{
    let short = HandshakeError::Malformed("ntor-v3 onionskin too short");
    let (node_id, rest) = onionskin.split_first_chunk::<LEN>().ok_or(short.clone())?;
    let (key_id, rest) = rest.split_first_chunk::<LEN>().ok_or(short.clone())?;
    let (x_bytes, rest) = rest.split_first_chunk::<LEN>().ok_or(short.clone())?;
    let (client_emsg, client_mac) = rest.split_last_chunk::<LEN>().ok_or(short)?;
    // The relay checks whether NODEID is as expected, and looks up the (b,B)
    // keypair corresponding to KEYID.
    let key = keys
        .iter()
        .find(|k| k.public.id.as_bytes() == node_id && k.public.onion_key.as_bytes() == key_id)
        .ok_or(HandshakeError::UnknownKey)?;
    let relay = &key.public;
    let x_pub = PublicKey::from(*x_bytes);
    // Xb = EXP(X,b)
    let xb = checked(&key.secret.diffie_hellman(&x_pub))?;
    let (enc_k1, mac_k1) = phase1_keys(&xb, relay, &x_pub, verification);
    let expected_mac = msg_mac(&mac_k1, relay, &x_pub, client_emsg);
    if !bool::from(expected_mac.ct_eq(client_mac)) {
        return Err(HandshakeError::AuthMismatch("ntor-v3 client MAC"));
    }
    // CM = DEC(MSG, ENC_K1)
    let mut client_msg = Zeroizing::new(client_emsg.to_vec());
    aes256_ctr(&enc_k1, &mut client_msg);
    let server_msg = respond(&client_msg).ok_or(HandshakeError::MessageRefused)?;

    let y_pub = PublicKey::from(&y);
    // Xy = EXP(X,y)
    let xy = checked(&y.diffie_hellman(&x_pub))?;
    let t = Transcript {
        relay,
        x_pub: &x_pub,
        y_pub: &y_pub,
    };
    let p2 = phase2(&xy, &xb, &t, verification);
    // encrypted_msg = ENC(ENC_KEY, SM)
    let mut server_emsg = server_msg;
    aes256_ctr(&p2.enc_key, &mut server_emsg);
    let auth = auth(&p2.verify, &t, client_mac, &server_emsg);
    let mut reply = Vec::with_capacity(SERVER_HANDSHAKE_MIN_LEN + server_emsg.len());
    reply.extend_from_slice(y_pub.as_bytes());
    reply.extend_from_slice(&auth);
    reply.extend_from_slice(&server_emsg);
    Ok((reply, KeyGenerator::shake(p2.keystream)))
}

/// Answer a circuit-extension onionskin (CREATE2 type 0x0003): the
/// client's message decoded as extensions for `respond`, which returns the
/// extensions to answer with (for example
/// [`extensions::cc_response`] when [`extensions::requests_cc`]), or `None`
/// to refuse. An undecodable client message is
/// [`HandshakeError::Malformed`].
pub fn server_handshake_for_circuit<R, F>(
    rng: &mut R,
    keys: &[NtorV3SecretKey],
    onionskin: &[u8],
    respond: F,
) -> Result<(Vec<u8>, KeyGenerator), HandshakeError>
where
    R: CryptoRng + ?Sized,
    F: FnOnce(&[CircRequestExt]) -> Option<Vec<CircResponseExt>>,
{
    let mut decode_error = None;
    let result = server_handshake(rng, keys, CIRCUIT_EXTEND_VERIFICATION, onionskin, |cm| {
        let exts = extensions::decode_request(cm)
            .map_err(|e| decode_error = Some(e))
            .ok()?;
        let answer = respond(&exts)?;
        extensions::encode_response(&answer)
            .map_err(|e| decode_error = Some(e))
            .ok()
    });
    match (result, decode_error) {
        (Err(HandshakeError::MessageRefused), Some(e)) => Err(e),
        (result, _) => result,
    }
}

#[cfg(test)]
mod tests {
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
            client_handshake_for_circuit(&mut rng, &relay.public, &[extensions::cc_request()])
                .unwrap();
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
        let (state, onionskin) =
            client_handshake_for_circuit(&mut rng, &relay.public, &[]).unwrap();
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
            client_handshake_for_circuit(&mut rng, &relay.public, &[extensions::cc_request()])
                .unwrap();
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
}
