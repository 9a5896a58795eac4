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
mod tests;
