//! The relay's long-term keys, in a C-tor `keys/` directory (tor-spec
//! §1.1, "Keys and names"; C-tor's `routerkeys.c` and `router.c`):
//!
//! | file | key |
//! |---|---|
//! | `secret_id_key` | RSA-1024 identity (PEM) |
//! | `secret_onion_key` | RSA-1024 TAP onion key (PEM), only for the descriptor |
//! | `secret_onion_key_ntor` (`.old`) | curve25519 ntor key, current (previous) |
//! | `ed25519_master_id_secret_key` | ed25519 master identity (may be kept offline) |
//! | `ed25519_master_id_public_key` | its public key |
//! | `ed25519_signing_secret_key` | ed25519 medium-term signing key |
//! | `ed25519_signing_cert` | type-4 certificate of the signing key by the master key |
//!
//! The formats are C-tor's, so `tor --list-fingerprint` makes a directory
//! Braid loads and reads one Braid made.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use braid_core::channel::RelayIdentityKeys;
use braid_core::crypto::ntor::NtorSecretKey;
use braid_core::crypto::ntor_v3::NtorV3SecretKey;
use braid_core::relay::OnionKeys;
use braid_dir::descriptor::DescriptorKeys;
use rand::{CryptoRng, Rng};
use tor_cert::{CertType, CertifiedKey, Ed25519Cert};
use tor_checkable::{SelfSigned as _, TimeBound as _};
use tor_llcrypto::pk::ed25519::{self, Ed25519Identity};
use tor_llcrypto::pk::{curve25519, rsa};

use crate::error::KeyError;
use crate::keyfile::{
    encode_tagged, exists, private_dir, read_rsa, read_tagged, read_tagged_vec, rsa_pem,
    write_private,
};

/// Lifetime of a new signing-key certificate (C-tor's `SigningKeyLifetime`
/// default, 30 days).
pub const SIGNING_KEY_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Renew the signing key when its certificate expires within this (C-tor's
/// `TestingSigningKeySlop` default, 1 day).
pub const SIGNING_KEY_SLOP: Duration = Duration::from_secs(24 * 3600);

const ID_KEY: &str = "secret_id_key";
const TAP_KEY: &str = "secret_onion_key";
const NTOR_KEY: &str = "secret_onion_key_ntor";
const NTOR_KEY_OLD: &str = "secret_onion_key_ntor.old";
const MASTER_SECRET: &str = "ed25519_master_id_secret_key";
const MASTER_PUBLIC: &str = "ed25519_master_id_public_key";
const SIGNING_SECRET: &str = "ed25519_signing_secret_key";
const SIGNING_CERT: &str = "ed25519_signing_cert";

/// Files a key directory must hold (the master key files are checked
/// apart: either may be absent when the other or the certificate names the
/// master key).
const REQUIRED: [&str; 5] = [ID_KEY, TAP_KEY, NTOR_KEY, SIGNING_SECRET, SIGNING_CERT];

/// What [`RelayKeys::open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysOpened {
    /// The directory held no keys: a new identity was made and stored.
    Generated,
    /// The keys were loaded as they were.
    Loaded,
    /// The keys were loaded and the signing key, near its expiry, was
    /// replaced by a new one with a new certificate (stored).
    RenewedSigningKey,
}

/// A relay's keys.
pub struct RelayKeys {
    identity: rsa::KeyPair,
    tap_onion: rsa::KeyPair,
    master: Ed25519Identity,
    master_secret: Option<ed25519::ExpandedKeypair>,
    signing: ed25519::ExpandedKeypair,
    signing_cert: Vec<u8>,
    signing_cert_expiry: SystemTime,
    ntor: curve25519::StaticKeypair,
    ntor_previous: Option<curve25519::StaticKeypair>,
    /// When the current onion keys were made: the ntor key file's
    /// modification time when loaded (C-tor's `onion_key_set_at`).
    onion_set_at: SystemTime,
}

impl std::fmt::Debug for RelayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayKeys")
            .field("rsa_identity", &self.rsa_identity())
            .field("ed_identity", &self.master)
            .field("master_secret", &self.master_secret.is_some())
            .field("signing_cert_expiry", &self.signing_cert_expiry)
            .finish_non_exhaustive()
    }
}

impl RelayKeys {
    /// A new identity: every key fresh, the signing key certified from
    /// `now` for [`SIGNING_KEY_LIFETIME`].
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R, now: SystemTime) -> Result<Self, KeyError> {
        let gen_rsa = |rng: &mut R| {
            rsa::KeyPair::generate(rng).map_err(|e| KeyError::Generate(format!("RSA key: {e}")))
        };
        let identity = gen_rsa(rng)?;
        let tap_onion = gen_rsa(rng)?;
        let master_secret = ed25519::ExpandedKeypair::from(&ed25519::Keypair::generate(rng));
        let master = Ed25519Identity::from(master_secret.public());
        let signing = ed25519::ExpandedKeypair::from(&ed25519::Keypair::generate(rng));
        let (signing_cert, signing_cert_expiry) =
            certify_signing_key(&master_secret, &signing, now)?;
        Ok(Self {
            identity,
            tap_onion,
            master,
            master_secret: Some(master_secret),
            signing,
            signing_cert,
            signing_cert_expiry,
            ntor: generate_ntor(rng),
            ntor_previous: None,
            onion_set_at: now,
        })
    }

    /// Open the key directory `dir`: make and store a new identity if it
    /// holds no keys, else load them and renew the signing key if its
    /// certificate expires within [`SIGNING_KEY_SLOP`] of `now`.
    pub fn open<R: Rng + CryptoRng>(
        dir: &Path,
        rng: &mut R,
        now: SystemTime,
    ) -> Result<(Self, KeysOpened), KeyError> {
        let present: Vec<&str> = REQUIRED
            .iter()
            .chain(&[MASTER_SECRET, MASTER_PUBLIC])
            .copied()
            .filter(|f| exists(&dir.join(f)))
            .collect();
        if present.is_empty() {
            let keys = Self::generate(rng, now)?;
            keys.store(dir)?;
            return Ok((keys, KeysOpened::Generated));
        }
        let mut keys = Self::load(dir)?;
        if keys.signing_cert_expiry > now + SIGNING_KEY_SLOP {
            return Ok((keys, KeysOpened::Loaded));
        }
        keys.renew_signing_key(rng, now)?;
        keys.store_signing_key(dir)?;
        Ok((keys, KeysOpened::RenewedSigningKey))
    }

    /// Load the keys in `dir`, checking that they belong together. The
    /// certificate's expiry is not checked (see [`Self::open`]).
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|f| !exists(&dir.join(f)))
            .map(|f| (*f).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(KeyError::Incomplete {
                dir: dir.to_owned(),
                missing,
            });
        }
        let identity = read_rsa(&dir.join(ID_KEY))?;
        let tap_onion = read_rsa(&dir.join(TAP_KEY))?;
        let ntor = read_ntor(&dir.join(NTOR_KEY))?;
        let onion_set_at = std::fs::metadata(dir.join(NTOR_KEY))
            .and_then(|m| m.modified())
            .map_err(|source| KeyError::Io {
                path: dir.join(NTOR_KEY),
                source,
            })?;
        let old = dir.join(NTOR_KEY_OLD);
        let ntor_previous = if exists(&old) {
            Some(read_ntor(&old)?)
        } else {
            None
        };
        let signing = read_ed_secret(&dir.join(SIGNING_SECRET), "type4")?;
        let signing_cert = read_tagged_vec(&dir.join(SIGNING_CERT), "ed25519v1-cert", "type4")?;
        let (master, signing_cert_expiry) = check_signing_cert(&signing_cert, &signing)?;

        let master_secret = if exists(&dir.join(MASTER_SECRET)) {
            let secret = read_ed_secret(&dir.join(MASTER_SECRET), "type0")?;
            if Ed25519Identity::from(secret.public()) != master {
                return Err(KeyError::Mismatch(format!(
                    "{MASTER_SECRET} is not the key that signed {SIGNING_CERT}"
                )));
            }
            Some(secret)
        } else {
            None
        };
        let public = dir.join(MASTER_PUBLIC);
        if exists(&public) {
            let bytes = read_tagged::<32>(&public, "ed25519v1-public", "type0")?;
            if Ed25519Identity::from(*bytes) != master {
                return Err(KeyError::Mismatch(format!(
                    "{MASTER_PUBLIC} is not the key that signed {SIGNING_CERT}"
                )));
            }
        }
        Ok(Self {
            identity,
            tap_onion,
            master,
            master_secret,
            signing,
            signing_cert,
            signing_cert_expiry,
            ntor,
            ntor_previous,
            onion_set_at,
        })
    }

    /// Write every key to `dir` (created 0700; files 0600).
    pub fn store(&self, dir: &Path) -> Result<(), KeyError> {
        private_dir(dir)?;
        write_private(&dir.join(ID_KEY), rsa_pem(&self.identity)?.as_bytes())?;
        write_private(&dir.join(TAP_KEY), rsa_pem(&self.tap_onion)?.as_bytes())?;
        write_private(&dir.join(NTOR_KEY), &ntor_file(&self.ntor))?;
        if let Some(old) = &self.ntor_previous {
            write_private(&dir.join(NTOR_KEY_OLD), &ntor_file(old))?;
        }
        if let Some(master) = &self.master_secret {
            let file = encode_tagged("ed25519v1-secret", "type0", &master.to_secret_key_bytes());
            write_private(&dir.join(MASTER_SECRET), &file)?;
        }
        let public = encode_tagged("ed25519v1-public", "type0", self.master.as_bytes());
        write_private(&dir.join(MASTER_PUBLIC), &public)?;
        self.store_signing_key(dir)
    }

    /// Write the signing key and its certificate to `dir` (after
    /// [`Self::renew_signing_key`]).
    pub fn store_signing_key(&self, dir: &Path) -> Result<(), KeyError> {
        private_dir(dir)?;
        let secret = encode_tagged(
            "ed25519v1-secret",
            "type4",
            &self.signing.to_secret_key_bytes(),
        );
        // The certificate first: a crash between the two leaves the old
        // key with a certificate that does not certify it, which `load`
        // reports rather than using.
        write_private(
            &dir.join(SIGNING_CERT),
            &encode_tagged("ed25519v1-cert", "type4", &self.signing_cert),
        )?;
        write_private(&dir.join(SIGNING_SECRET), &secret)
    }

    /// New onion keys (C-tor's `rotate_onion_key`): a new TAP key and a new ntor key, the current
    /// ntor key kept as the previous one (clients holding the old
    /// descriptor still extend with it until
    /// [`Self::expire_previous_onion_key`]).
    pub fn rotate_onion_keys<R: Rng + CryptoRng>(
        &mut self,
        rng: &mut R,
        now: SystemTime,
    ) -> Result<(), KeyError> {
        let tap =
            rsa::KeyPair::generate(rng).map_err(|e| KeyError::Generate(format!("RSA key: {e}")))?;
        self.tap_onion = tap;
        self.ntor_previous = Some(std::mem::replace(&mut self.ntor, generate_ntor(rng)));
        self.onion_set_at = now;
        Ok(())
    }

    /// Forget the previous ntor key (its grace period is over).
    pub fn expire_previous_onion_key(&mut self) {
        self.ntor_previous = None;
    }

    /// When the current onion keys were made.
    pub fn onion_set_at(&self) -> SystemTime {
        self.onion_set_at
    }

    /// Write the onion keys to `dir`: the previous ntor key (or its file
    /// removed), the TAP key, then the current ntor key, whose
    /// modification time [`Self::load`] reads as [`Self::onion_set_at`].
    pub fn store_onion_keys(&self, dir: &Path) -> Result<(), KeyError> {
        private_dir(dir)?;
        let old = dir.join(NTOR_KEY_OLD);
        match &self.ntor_previous {
            Some(k) => write_private(&old, &ntor_file(k))?,
            None => match std::fs::remove_file(&old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(KeyError::Io { path: old, source }),
            },
        }
        write_private(&dir.join(TAP_KEY), rsa_pem(&self.tap_onion)?.as_bytes())?;
        write_private(&dir.join(NTOR_KEY), &ntor_file(&self.ntor))
    }

    /// Replace the signing key by a new one certified from `now`; needs
    /// the master identity secret key.
    pub fn renew_signing_key<R: Rng + CryptoRng>(
        &mut self,
        rng: &mut R,
        now: SystemTime,
    ) -> Result<(), KeyError> {
        let Some(master) = &self.master_secret else {
            return Err(KeyError::CannotRenew {
                expiry: self.signing_cert_expiry,
            });
        };
        let signing = ed25519::ExpandedKeypair::from(&ed25519::Keypair::generate(rng));
        let (cert, expiry) = certify_signing_key(master, &signing, now)?;
        self.signing = signing;
        self.signing_cert = cert;
        self.signing_cert_expiry = expiry;
        Ok(())
    }

    /// The RSA identity (the relay's fingerprint).
    pub fn rsa_identity(&self) -> rsa::RsaIdentity {
        self.identity.to_public_key().to_rsa_identity()
    }

    /// The ed25519 master identity.
    pub fn ed_identity(&self) -> Ed25519Identity {
        self.master
    }

    /// The RSA identity key.
    pub fn identity(&self) -> &rsa::KeyPair {
        &self.identity
    }

    /// The RSA TAP onion key (for the descriptor only).
    pub fn tap_onion(&self) -> &rsa::KeyPair {
        &self.tap_onion
    }

    /// The ed25519 master identity secret key, unless kept offline.
    pub fn master_secret(&self) -> Option<&ed25519::ExpandedKeypair> {
        self.master_secret.as_ref()
    }

    /// The ed25519 medium-term signing key.
    pub fn signing(&self) -> &ed25519::ExpandedKeypair {
        &self.signing
    }

    /// The encoded type-4 certificate of the signing key.
    pub fn signing_cert(&self) -> &[u8] {
        &self.signing_cert
    }

    /// When the signing-key certificate expires.
    pub fn signing_cert_expiry(&self) -> SystemTime {
        self.signing_cert_expiry
    }

    /// The current ntor onion key.
    pub fn ntor(&self) -> &curve25519::StaticKeypair {
        &self.ntor
    }

    /// The previous ntor onion key, still accepted for a while after a
    /// rotation.
    pub fn ntor_previous(&self) -> Option<&curve25519::StaticKeypair> {
        self.ntor_previous.as_ref()
    }

    /// The long-term keys the link handshake needs (braid-core's
    /// [`RelayIdentityKeys`]), copied: the link keys are rebuilt from them
    /// every few days.
    pub fn identity_keys(&self) -> Result<RelayIdentityKeys, KeyError> {
        let signing = self.signing.to_secret_key_bytes();
        let ed_signing = ed25519::ExpandedKeypair::from_secret_key_bytes(signing)
            .ok_or_else(|| KeyError::Generate("copying the signing key".into()))?;
        Ok(RelayIdentityKeys {
            rsa_identity: rsa::KeyPair::from(self.identity.as_key().clone()),
            ed_identity: self.master,
            ed_signing,
            signing_cert: self.signing_cert.clone(),
        })
    }

    /// The circuit-extension keys (ntor and ntor-v3 share the curve25519
    /// onion keys), current first, then the previous one if kept.
    pub fn onion_keys(&self) -> OnionKeys {
        let rsa_id = self.rsa_identity();
        let keys: Vec<&curve25519::StaticKeypair> = std::iter::once(&self.ntor)
            .chain(&self.ntor_previous)
            .collect();
        OnionKeys {
            ntor: keys
                .iter()
                .map(|k| NtorSecretKey::new(rsa_id, k.secret.clone()))
                .collect(),
            ntor_v3: keys
                .iter()
                .map(|k| NtorV3SecretKey::new(self.master, k.secret.clone()))
                .collect(),
        }
    }

    /// The keys the server descriptor is made from.
    pub fn descriptor_keys(&self) -> DescriptorKeys<'_> {
        DescriptorKeys {
            identity: &self.identity,
            tap_onion: &self.tap_onion,
            signing: &self.signing,
            signing_cert: &self.signing_cert,
            ntor: &self.ntor,
        }
    }
}

/// The key directory inside a C-tor DataDirectory.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// A type-4 certificate of `signing` by `master`, with the
/// signed-with-ed25519-key extension, valid from `now` for
/// [`SIGNING_KEY_LIFETIME`] (C-tor's `ed_key_new` with
/// `INIT_ED_KEY_INCLUDE_SIGNING_KEY_IN_CERT`).
fn certify_signing_key(
    master: &ed25519::ExpandedKeypair,
    signing: &ed25519::ExpandedKeypair,
    now: SystemTime,
) -> Result<(Vec<u8>, SystemTime), KeyError> {
    let cert: Vec<u8> = Ed25519Cert::builder()
        .cert_type(CertType::IDENTITY_V_SIGNING)
        .cert_key(CertifiedKey::Ed25519(signing.public().into()))
        .signing_key(master.public().into())
        .expiration(now + SIGNING_KEY_LIFETIME)
        .encode_and_sign(master)
        .map_err(|e| KeyError::Generate(format!("signing-key certificate: {e}")))?
        .into();
    let (_, expiry) = check_signing_cert(&cert, signing)?;
    Ok((cert, expiry))
}

/// Check that `cert` is a well-signed type-4 certificate of `signing` with
/// the signed-with extension; return the master identity and the expiry.
fn check_signing_cert(
    cert: &[u8],
    signing: &ed25519::ExpandedKeypair,
) -> Result<(Ed25519Identity, SystemTime), KeyError> {
    let bad = |what: &str| KeyError::Mismatch(format!("{SIGNING_CERT}: {what}"));
    let cert = Ed25519Cert::decode(cert).map_err(|e| bad(&format!("does not decode: {e}")))?;
    if cert.peek_cert_type() != CertType::IDENTITY_V_SIGNING {
        return Err(bad(&format!("type {}, not 4", cert.peek_cert_type())));
    }
    if cert.peek_subject_key() != &CertifiedKey::Ed25519(signing.public().into()) {
        return Err(bad(&format!("does not certify {SIGNING_SECRET}")));
    }
    let unchecked = cert
        .should_have_signing_key()
        .map_err(|_| bad("no signed-with-ed25519-key extension"))?;
    let master = *unchecked.peek_signing_key();
    let cert = unchecked
        .check_signature()
        .map_err(|_| bad("bad signature"))?
        .dangerously_assume_timely();
    Ok((master, cert.expiry()))
}

fn read_ed_secret(path: &Path, tag: &str) -> Result<ed25519::ExpandedKeypair, KeyError> {
    let bytes = read_tagged::<64>(path, "ed25519v1-secret", tag)?;
    ed25519::ExpandedKeypair::from_secret_key_bytes(*bytes).ok_or_else(|| KeyError::Malformed {
        path: path.to_owned(),
        detail: "not an ed25519 expanded secret key".into(),
    })
}

/// `secret_onion_key_ntor`: 32 secret bytes then the 32-byte public key,
/// which must match (C-tor's `curve25519_keypair_read_from_file`).
fn read_ntor(path: &Path) -> Result<curve25519::StaticKeypair, KeyError> {
    let bytes = read_tagged::<64>(path, "c25519v1", "onion")?;
    let (secret, public) = bytes.split_at(32);
    let mut s = [0_u8; 32];
    s.copy_from_slice(secret);
    let secret = curve25519::StaticSecret::from(clamp(s));
    let derived = curve25519::PublicKey::from(&secret);
    if derived.as_bytes() != public {
        return Err(KeyError::Malformed {
            path: path.to_owned(),
            detail: "the public key does not match the secret key".into(),
        });
    }
    Ok(curve25519::StaticKeypair {
        secret,
        public: derived,
    })
}

fn ntor_file(k: &curve25519::StaticKeypair) -> zeroize::Zeroizing<Vec<u8>> {
    let mut data = zeroize::Zeroizing::new(Vec::with_capacity(64));
    data.extend_from_slice(&k.secret.to_bytes());
    data.extend_from_slice(k.public.as_bytes());
    encode_tagged("c25519v1", "onion", &data)
}

/// X25519 clamping, as C-tor applies when it makes a secret key
/// (`curve25519_secret_key_generate`); X25519 clamps anyway, so this only
/// keeps the stored bytes canonical.
fn clamp(mut s: [u8; 32]) -> [u8; 32] {
    s[0] &= 248;
    s[31] = (s[31] & 127) | 64;
    s
}

fn generate_ntor<R: Rng + CryptoRng>(rng: &mut R) -> curve25519::StaticKeypair {
    let mut s = [0_u8; 32];
    rng.fill_bytes(&mut s);
    let secret = curve25519::StaticSecret::from(clamp(s));
    curve25519::StaticKeypair {
        public: (&secret).into(),
        secret,
    }
}

#[cfg(test)]
mod tests;
