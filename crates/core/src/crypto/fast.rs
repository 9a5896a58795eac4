//! The CREATE_FAST handshake (tor-spec §5.1.5), keys by KDF-TOR (§5.2.1).
//!
//! Only for the first hop, whose identity TLS already authenticated; C-tor
//! no longer uses it by default (0.3.1.1-alpha and later), and Braid's
//! client prefers ntor. Kept because it is tiny and some relays' tests use
//! it.

use std::fmt;

use rand::CryptoRng;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::error::HandshakeError;
use super::kdf::{KeyGenerator, kdf_tor};

/// `HASH_LEN`: the length of `X`, `Y` and `KH`.
const HASH_LEN: usize = 20;
/// Length of a CREATE_FAST body: `X`.
pub const CLIENT_HANDSHAKE_LEN: usize = HASH_LEN;
/// Length of a CREATED_FAST body: `Y | KH`.
pub const SERVER_HANDSHAKE_LEN: usize = 2 * HASH_LEN;

/// The client's state between CREATE_FAST and CREATED_FAST.
pub struct FastClientState {
    /// The client's key material `X`.
    x: Zeroizing<[u8; HASH_LEN]>,
}

impl fmt::Debug for FastClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastClientState").finish_non_exhaustive()
    }
}

/// `K0 = X | Y`.
fn k0(x: &[u8; HASH_LEN], y: &[u8; HASH_LEN]) -> Zeroizing<[u8; 2 * HASH_LEN]> {
    let mut k0 = Zeroizing::new([0_u8; 2 * HASH_LEN]);
    let (a, b) = k0.split_at_mut(HASH_LEN);
    a.copy_from_slice(x);
    b.copy_from_slice(y);
    k0
}

/// `KH`, the first `HASH_LEN` bytes of KDF-TOR(K0).
fn kh(k0: &[u8]) -> Result<Zeroizing<[u8; HASH_LEN]>, HandshakeError> {
    let k = kdf_tor(k0, HASH_LEN).map_err(|_| HandshakeError::Internal("KDF-TOR"))?;
    let kh: [u8; HASH_LEN] = k
        .as_slice()
        .try_into()
        .map_err(|_| HandshakeError::Internal("KDF-TOR length"))?;
    Ok(Zeroizing::new(kh))
}

/// Start a CREATE_FAST handshake: random `X`, the cell body.
pub fn client_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
) -> (FastClientState, [u8; CLIENT_HANDSHAKE_LEN]) {
    let mut x = Zeroizing::new([0_u8; HASH_LEN]);
    rng.fill_bytes(&mut x[..]);
    let body = *x;
    (FastClientState { x }, body)
}

impl FastClientState {
    /// Finish with the CREATED_FAST body `Y | KH`: check `KH` and return
    /// the key material (KDF-TOR of `X | Y`; [`Tor1Keys::derive`] knows
    /// its layout).
    ///
    /// [`Tor1Keys::derive`]: super::relay_crypto::Tor1Keys::derive
    pub fn finish(self, reply: &[u8]) -> Result<KeyGenerator, HandshakeError> {
        let reply: &[u8; SERVER_HANDSHAKE_LEN] = reply
            .try_into()
            .map_err(|_| HandshakeError::Malformed("CREATED_FAST body is not 40 bytes"))?;
        let (y, their_kh) = reply
            .split_first_chunk::<HASH_LEN>()
            .ok_or(HandshakeError::Internal("split"))?;
        let k0 = k0(&self.x, y);
        if bool::from(kh(&k0[..])?.ct_eq(their_kh)) {
            Ok(KeyGenerator::kdf_tor(&k0[..]))
        } else {
            Err(HandshakeError::AuthMismatch("CREATED_FAST KH"))
        }
    }
}

/// Answer a CREATE_FAST body `X`: random `Y`, the CREATED_FAST body
/// `Y | KH` and the key material.
pub fn server_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
    body: &[u8],
) -> Result<(KeyGenerator, [u8; SERVER_HANDSHAKE_LEN]), HandshakeError> {
    let x: &[u8; HASH_LEN] = body
        .try_into()
        .map_err(|_| HandshakeError::Malformed("CREATE_FAST body is not 20 bytes"))?;
    let mut y = [0_u8; HASH_LEN];
    rng.fill_bytes(&mut y);
    let k0 = k0(x, &y);
    let kh = kh(&k0[..])?;
    let mut reply = [0_u8; SERVER_HANDSHAKE_LEN];
    let (a, b) = reply.split_at_mut(HASH_LEN);
    a.copy_from_slice(&y);
    b.copy_from_slice(&kh[..]);
    Ok((KeyGenerator::kdf_tor(&k0[..]), reply))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn round_trip() {
        let mut rng = rand::rng();
        let (state, create) = client_handshake(&mut rng);
        let (s_kg, created) = server_handshake(&mut rng, &create).unwrap();
        let c_kg = state.finish(&created).unwrap();
        let c = c_kg.expand(92).unwrap();
        let s = s_kg.expand(92).unwrap();
        assert_eq!(&c[..], &s[..]);
        // KH is the first 20 bytes of the key material.
        assert_eq!(&c[..20], &created[20..]);
    }

    #[test]
    fn tampered_or_short_reply_is_refused() {
        let mut rng = rand::rng();
        let (state, create) = client_handshake(&mut rng);
        let (_, mut created) = server_handshake(&mut rng, &create).unwrap();
        created[3] ^= 1;
        assert_eq!(
            state.finish(&created).err(),
            Some(HandshakeError::AuthMismatch("CREATED_FAST KH"))
        );
        let (state, _) = client_handshake(&mut rng);
        assert!(matches!(
            state.finish(&[0; 39]),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            server_handshake(&mut rng, &[0; 21]),
            Err(HandshakeError::Malformed(_))
        ));
    }
}
