//! Key derivation functions of the circuit handshakes.
//!
//! - KDF-TOR (tor-spec §5.2.1): SHA-1 in counter mode, used by
//!   CREATE_FAST (and the retired TAP handshake).
//! - KDF-RFC5869 (tor-spec §5.2.2): HKDF-SHA256, used by ntor.
//! - SHAKE-256 (proposal 332 A.1): the `KDF(s, t)` of ntor-v3.
//!
//! A finished handshake hands its caller a [`KeyGenerator`], which expands
//! to as many bytes of key material as the relay crypto needs (92 for
//! tor1, see [`Tor1Keys`](super::relay_crypto::Tor1Keys)).

use std::fmt;

use digest::{Digest, ExtendableOutput, XofReader};
use hkdf::Hkdf;
use tor_llcrypto::d::{Sha1, Sha256, Shake256, Shake256Reader};
use zeroize::Zeroizing;

use super::error::KdfError;

/// Bytes that are wiped from memory when dropped.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// SHA-1 output length: `HASH_LEN` of tor-spec §0.2.
const SHA1_LEN: usize = 20;
/// SHA-256 output length.
const SHA256_LEN: usize = 32;

/// The most KDF-TOR can produce: one SHA-1 block per counter byte value.
pub const KDF_TOR_MAX_LEN: usize = 256 * SHA1_LEN;
/// The most HKDF-SHA256 can produce (RFC 5869 §2.3: 255 × HashLen).
pub const KDF_RFC5869_MAX_LEN: usize = 255 * SHA256_LEN;

/// KDF-TOR (tor-spec §5.2.1):
/// `K = H(K0 | [00]) | H(K0 | [01]) | H(K0 | [02]) | ...` with H = SHA-1,
/// truncated to `len` bytes.
pub fn kdf_tor(k0: &[u8], len: usize) -> Result<SecretBytes, KdfError> {
    if len > KDF_TOR_MAX_LEN {
        return Err(KdfError::TooLong {
            requested: len,
            max: KDF_TOR_MAX_LEN,
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len + SHA1_LEN));
    for counter in 0..=u8::MAX {
        if out.len() >= len {
            break;
        }
        let mut h = Sha1::new();
        h.update(k0);
        h.update([counter]);
        out.extend_from_slice(&h.finalize());
    }
    out.truncate(len);
    Ok(out)
}

/// KDF-RFC5869 (tor-spec §5.2.2): HKDF-SHA256 with `salt = t_key`,
/// `IKM = secret_input` and `info = m_expand`, `len` bytes.
pub fn kdf_rfc5869(
    secret_input: &[u8],
    t_key: &[u8],
    m_expand: &[u8],
    len: usize,
) -> Result<SecretBytes, KdfError> {
    let hk = Hkdf::<Sha256>::new(Some(t_key), secret_input);
    hkdf_expand(&hk, m_expand, len)
}

/// The HKDF-Expand half of KDF-RFC5869, from the pseudo-random key (ntor's
/// `KEY_SEED`, which is exactly HKDF-Extract(t_key, secret_input)).
fn kdf_rfc5869_expand(
    key_seed: &[u8; SHA256_LEN],
    m_expand: &[u8],
    len: usize,
) -> Result<SecretBytes, KdfError> {
    // `from_prk` only fails for a PRK shorter than the hash output; ours is
    // exactly 32 bytes.
    let hk = Hkdf::<Sha256>::from_prk(key_seed).map_err(|_| KdfError::TooLong {
        requested: len,
        max: 0,
    })?;
    hkdf_expand(&hk, m_expand, len)
}

/// HKDF-Expand into a fresh zeroizing buffer.
fn hkdf_expand(hk: &Hkdf<Sha256>, info: &[u8], len: usize) -> Result<SecretBytes, KdfError> {
    let too_long = KdfError::TooLong {
        requested: len,
        max: KDF_RFC5869_MAX_LEN,
    };
    if len > KDF_RFC5869_MAX_LEN {
        return Err(too_long);
    }
    let mut out = Zeroizing::new(vec![0_u8; len]);
    hk.expand(info, &mut out).map_err(|_| too_long)?;
    Ok(out)
}

/// SHAKE-256 of `input`, `len` bytes: the untweaked form of ntor-v3's
/// `KDF` (proposal 332 A.1 prefixes `ENCAP(t)` to `input`).
pub fn shake256_kdf(input: &[u8], len: usize) -> SecretBytes {
    let mut xof = Shake256::default();
    digest::Update::update(&mut xof, input);
    let mut out = Zeroizing::new(vec![0_u8; len]);
    xof.finalize_xof().read(&mut out);
    out
}

/// The key material a finished circuit handshake agreed on, not yet
/// expanded. Call [`expand`](Self::expand) (or
/// [`Tor1Keys::derive`](super::relay_crypto::Tor1Keys::derive)) once.
pub struct KeyGenerator(Source);

/// Where a [`KeyGenerator`]'s bytes come from.
enum Source {
    /// ntor: HKDF-Expand of `KEY_SEED` with `m_expand` (tor-spec §5.1.4,
    /// §5.2.2).
    Rfc5869 {
        /// `KEY_SEED = H(secret_input, t_key)`, the HKDF pseudo-random key.
        key_seed: Zeroizing<[u8; SHA256_LEN]>,
        /// The `info` of HKDF-Expand.
        m_expand: &'static [u8],
    },
    /// ntor-v3: the rest of `KDF_final(ntor_key_seed)` after ENC_KEY
    /// (proposal 332, "Server operation").
    Shake(Box<Shake256Reader>),
    /// CREATE_FAST: KDF-TOR of `K0 = X | Y` (tor-spec §5.1.5, §5.2.1).
    KdfTor {
        /// `K0`.
        k0: SecretBytes,
    },
}

impl KeyGenerator {
    /// ntor's generator: HKDF-Expand of `key_seed` with `m_expand`.
    pub(crate) fn rfc5869(key_seed: Zeroizing<[u8; SHA256_LEN]>, m_expand: &'static [u8]) -> Self {
        Self(Source::Rfc5869 { key_seed, m_expand })
    }

    /// ntor-v3's generator: a SHAKE-256 reader positioned after ENC_KEY.
    pub(crate) fn shake(reader: Shake256Reader) -> Self {
        Self(Source::Shake(Box::new(reader)))
    }

    /// A KDF-TOR generator on base key material `k0` (for CREATE_FAST,
    /// `K0 = X | Y`). Note that KDF-TOR puts `KH` *first*
    /// (tor-spec §5.2.1), unlike the other two.
    pub fn kdf_tor(k0: &[u8]) -> Self {
        Self(Source::KdfTor {
            k0: Zeroizing::new(k0.to_vec()),
        })
    }

    /// True for KDF-TOR, whose key material puts `KH` first.
    pub(crate) fn is_kdf_tor(&self) -> bool {
        matches!(self.0, Source::KdfTor { .. })
    }

    /// The first `len` bytes of key material.
    pub fn expand(self, len: usize) -> Result<SecretBytes, KdfError> {
        match self.0 {
            Source::Rfc5869 { key_seed, m_expand } => kdf_rfc5869_expand(&key_seed, m_expand, len),
            Source::Shake(mut reader) => {
                let mut out = Zeroizing::new(vec![0_u8; len]);
                reader.read(&mut out);
                Ok(out)
            }
            Source::KdfTor { k0 } => kdf_tor(&k0, len),
        }
    }
}

impl fmt::Debug for KeyGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Source::Rfc5869 { .. } => "KDF-RFC5869",
            Source::Shake(_) => "SHAKE-256",
            Source::KdfTor { .. } => "KDF-TOR",
        };
        f.debug_tuple("KeyGenerator").field(&kind).finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        hex::decode(s).unwrap()
    }

    /// C-tor's test_crypto.c KDF-TOR vectors (generated by a Python
    /// reference implementation).
    #[test]
    fn kdf_tor_vectors() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"",
                "5ba93c9db0cff93f52b521d7420e43f6eda2784fbf8b4530d8
                 d246dd74ac53a13471bba17941dff7c4ea21bb365bbeeaf5f2
                 c654883e56d11e43c44e9842926af7ca0a8cca12604f945414
                 f07b01e13da42c6cf1de3abfdea9b95f34687cbbe92b9a7383",
            ),
            (
                b"Tor",
                "776c6214fc647aaa5f683c737ee66ec44f03d0372e1cce6922
                 7950f236ddf1e329a7ce7c227903303f525a8c6662426e8034
                 870642a6dabbd41b5d97ec9bf2312ea729992f48f8ea2d0ba8
                 3f45dfda1a80bdc8b80de01b23e3e0ffae099b3e4ccf28dc28",
            ),
            (
                b"AN ALARMING ITEM TO FIND ON A MONTHLY AUTO-DEBIT NOTICE",
                "a340b5d126086c3ab29c2af4179196dbf95e1c72431419d331
                 4844bf8f6afb6098db952b95581fb6c33625709d6f4400b8e7
                 ace18a70579fad83c0982ef73f89395bcc39493ad53a685854
                 daf2ba9b78733b805d9a6824c907ee1dba5ac27a1e466d4d10",
            ),
        ];
        for (k0, expect) in cases {
            assert_eq!(&kdf_tor(k0, 100).unwrap()[..], &unhex(expect)[..]);
            let via_gen = KeyGenerator::kdf_tor(k0).expand(100).unwrap();
            assert_eq!(&via_gen[..], &unhex(expect)[..]);
        }
    }

    #[test]
    fn kdf_tor_limits() {
        assert_eq!(kdf_tor(b"x", KDF_TOR_MAX_LEN).unwrap().len(), 5120);
        assert!(matches!(
            kdf_tor(b"x", KDF_TOR_MAX_LEN + 1),
            Err(KdfError::TooLong { .. })
        ));
        assert!(kdf_tor(b"x", 0).unwrap().is_empty());
    }

    /// RFC 5869 appendix A, test cases 1 and 3 (SHA-256).
    #[test]
    fn hkdf_rfc5869_vectors() {
        let ikm = [0x0b_u8; 22];
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let okm = kdf_rfc5869(&ikm, &salt, &info, 42).unwrap();
        assert_eq!(
            &okm[..],
            &unhex(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf
                 34007208d5b887185865"
            )[..]
        );
        let okm = kdf_rfc5869(&ikm, b"", b"", 42).unwrap();
        assert_eq!(
            &okm[..],
            &unhex(
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d
                 9d201395faa4b61a96c8"
            )[..]
        );
        // Extract then expand gives the same as the one-shot function.
        let prk: [u8; 32] =
            unhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
                .try_into()
                .unwrap();
        let okm2 = kdf_rfc5869_expand(&prk, &info, 42).unwrap();
        assert_eq!(&okm2[..], &kdf_rfc5869(&ikm, &salt, &info, 42).unwrap()[..]);
        assert!(matches!(
            kdf_rfc5869(&ikm, &salt, &info, KDF_RFC5869_MAX_LEN + 1),
            Err(KdfError::TooLong { .. })
        ));
    }

    /// C-tor's test_crypto.c KDF-RFC5869 vectors with ntor's strings
    /// (generated with ntor_ref.py).
    #[test]
    fn kdf_rfc5869_ntor_vectors() {
        let t_key = b"ntor-curve25519-sha256-1:key_extract";
        let m_expand = b"ntor-curve25519-sha256-1:key_expand";
        let cases: [(&[u8], &str); 2] = [
            (
                b"Tor",
                "5521492a85139a8d9107a2d5c0d9c91610d0f95989975ebee6
                 c02a4f8d622a6cfdf9b7c7edd3832e2760ded1eac309b76f8d
                 66c4a3c4d6225429b3a016e3c3d45911152fc87bc2de9630c3
                 961be9fdb9f93197ea8e5977180801926d3321fa21513e59ac",
            ),
            (
                b"AN ALARMING ITEM TO FIND ON YOUR CREDIT-RATING STATEMENT",
                "a2aa9b50da7e481d30463adb8f233ff06e9571a0ca6ab6df0f
                 b206fa34e5bc78d063fc291501beec53b36e5a0e434561200c
                 5f8bd13e0f88b3459600b4dc21d69363e2895321c06184879d
                 94b18f078411be70b767c7fc40679a9440a0c95ea83a23efbf",
            ),
        ];
        for (input, expect) in cases {
            let out = kdf_rfc5869(input, t_key, m_expand, 100).unwrap();
            assert_eq!(&out[..], &unhex(expect)[..]);
        }
    }

    /// A SHAKE-256 vector (NIST byte-oriented SHAKE256 test, as also used
    /// by tor-llcrypto).
    #[test]
    fn shake256_vector() {
        let input = unhex("76891a7bcc6c04490035b743152f64a8dd2ea18ab472b8d36ecf45858d0b0046");
        let expect = unhex("e8447df87d01beeb724c9a2a38ab00fcc24e9bd17860e673b021222d621a7810e5d3");
        assert_eq!(&shake256_kdf(&input, expect.len())[..], &expect[..]);
    }

    #[test]
    fn debug_hides_secrets() {
        let g = KeyGenerator::kdf_tor(b"secret secret");
        let s = format!("{g:?}");
        assert_eq!(s, "KeyGenerator(\"KDF-TOR\")");
    }
}
