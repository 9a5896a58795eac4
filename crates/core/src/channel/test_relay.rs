//! Test support: a mock relay with real keys that makes the certificates a
//! C-tor relay puts in its CERTS cell (tor-spec §4.2), good or broken on
//! demand.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support")]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tor_cert::rsa::EncodedRsaCrosscert;
use tor_cert::{CertType, CertifiedKey, Ed25519Cert};
use tor_llcrypto::pk::ed25519::{Ed25519Identity, Keypair as EdKeypair};
use tor_llcrypto::pk::rsa::{KeyPair as RsaKeyPair, PublicKey as RsaPublicKey, RsaIdentity};

use super::certs::tls_cert_digest;
use super::relay_keys::{RelayIdentityKeys, RelayLinkKeys};
use super::x509::build;

/// A 2048-bit RSA public key (PKCS#1 DER), from tor-llcrypto's test data.
const RSA2048_PUBLIC: &str = "3082010a028201010097a08af777515b03d99702a7e25382438ac93c1ba89601ece7b9ce1a1c5667ba6b97ef6c489c9e269da5f42b70ce09d6cf8c91b77bed2c66885be394f5de1c2e0a7e6464f5c9bc988dd5f3fd495af77041b64c7546930d99f3a5183186a5f188baa8f7ad579083d3bff0ce6508d1961d4f5da26fd84d1a693f903c47b1cfb3f6910843eafbcebafff58e74e6e737e4517514746880cb1b5b4fbf75243ca713c0fbd50176595e8d6e4b9bffb5434479ccbe6ed5cf1e22982826b60123eec3064e84f657da88312dcc5258320d52cfa3dda9fe372db38ebb2448e0411a26d3a95a35de9d617f8bf9ff2d9a099bf8123763229a3cd0ccd5c3c812c36c710bc0d3510203010001";

const DAY: Duration = Duration::from_secs(86_400);

/// A relay's keys.
pub(crate) struct MockRelay {
    /// RSA1024 identity key.
    rsa: RsaKeyPair,
    /// Ed25519 identity key.
    ed_id: EdKeypair,
    /// Ed25519 signing key.
    ed_sign: EdKeypair,
    /// Ed25519 authentication key (certificate type 6).
    auth: EdKeypair,
    /// Its "TLS certificate" (any bytes will do: only the digest matters).
    tls_cert: Vec<u8>,
}

impl MockRelay {
    /// A relay with fresh keys.
    pub(crate) fn generate(tag: &str) -> Self {
        let mut rng = rand::rng();
        MockRelay {
            rsa: RsaKeyPair::generate(&mut rng).unwrap(),
            ed_id: EdKeypair::generate(&mut rng),
            ed_sign: EdKeypair::generate(&mut rng),
            auth: EdKeypair::generate(&mut rng),
            tls_cert: format!("TLS certificate of {tag}").into_bytes(),
        }
    }

    /// One relay shared by all tests (RSA key generation takes time).
    pub(crate) fn shared() -> &'static MockRelay {
        static R: OnceLock<MockRelay> = OnceLock::new();
        R.get_or_init(|| MockRelay::generate("relay"))
    }

    /// A second, different relay.
    pub(crate) fn other() -> &'static MockRelay {
        static R: OnceLock<MockRelay> = OnceLock::new();
        R.get_or_init(|| MockRelay::generate("other"))
    }

    pub(crate) fn rsa_id(&self) -> RsaIdentity {
        self.rsa.to_public_key().to_rsa_identity()
    }

    pub(crate) fn ed_id(&self) -> Ed25519Identity {
        self.ed_id.verifying_key().into()
    }

    pub(crate) fn auth_key(&self) -> tor_llcrypto::pk::ed25519::PublicKey {
        self.auth.verifying_key()
    }

    pub(crate) fn rsa_id_sha256(&self) -> [u8; 32] {
        super::certs::rsa_key_digest(&self.rsa.to_public_key())
    }

    /// This relay's long-term keys, with a type 4 certificate valid for a
    /// year from `now`.
    pub(crate) fn identity_keys(&self, now: SystemTime) -> RelayIdentityKeys {
        RelayIdentityKeys::from_master_keys(
            RsaKeyPair::from(self.rsa.as_key().clone()),
            &self.ed_id,
            &self.ed_sign,
            now + 365 * DAY,
        )
        .unwrap()
    }

    /// Link keys built from this relay's keys at `now` (slow: a 2048-bit
    /// TLS key).
    pub(crate) fn link_keys(&self, now: SystemTime) -> RelayLinkKeys {
        RelayLinkKeys::new(self.identity_keys(now), &mut rand::rng(), now).unwrap()
    }

    pub(crate) fn tls_cert(&self) -> &[u8] {
        &self.tls_cert
    }

    pub(crate) fn tls_digest(&self) -> [u8; 32] {
        tls_cert_digest(&self.tls_cert)
    }

    /// A good CERTS set at `now`, in C-tor's order (2, 4, 5, 7).
    pub(crate) fn certs(&self, now: SystemTime) -> CertSet {
        let mut set = CertSet::default();
        set.push(
            CertType::RSA_ID_X509,
            self.rsa_id_cert(now - DAY, now + 365 * DAY),
        );
        for t in [
            CertType::IDENTITY_V_SIGNING,
            CertType::SIGNING_V_TLS_CERT,
            CertType::RSA_ID_V_IDENTITY,
        ] {
            set.push(t, self.cert_expiring(t, now + 2 * DAY));
        }
        set
    }

    /// A good initiator's CERTS set at `now` (2, 4, 6, 7).
    pub(crate) fn initiator_certs(&self, now: SystemTime) -> CertSet {
        let mut set = CertSet::default();
        set.push(
            CertType::RSA_ID_X509,
            self.rsa_id_cert(now - DAY, now + 365 * DAY),
        );
        for t in [
            CertType::IDENTITY_V_SIGNING,
            CertType::SIGNING_V_LINK_AUTH,
            CertType::RSA_ID_V_IDENTITY,
        ] {
            set.push(t, self.cert_expiring(t, now + 2 * DAY));
        }
        set
    }

    /// The X.509 RSA identity certificate, self-signed.
    pub(crate) fn rsa_id_cert(&self, not_before: SystemTime, not_after: SystemTime) -> Vec<u8> {
        build::rsa_cert(&self.rsa.to_public_key(), &self.rsa, not_before, not_after)
    }

    /// Our RSA key's certificate, signed by another relay's key.
    pub(crate) fn rsa_id_cert_signed_by_other(&self, now: SystemTime) -> Vec<u8> {
        build::rsa_cert(
            &self.rsa.to_public_key(),
            &MockRelay::other().rsa,
            now - DAY,
            now + DAY,
        )
    }

    /// An X.509 certificate for a 2048-bit key (not validly signed).
    pub(crate) fn rsa2048_cert(now: SystemTime) -> Vec<u8> {
        let key = RsaPublicKey::from_der(&hex::decode(RSA2048_PUBLIC).unwrap()).unwrap();
        build::rsa_cert(&key, &MockRelay::shared().rsa, now - DAY, now + DAY)
    }

    /// A crosscert from our RSA key certifying `ed`.
    pub(crate) fn crosscert_for(&self, ed: &Ed25519Identity) -> Vec<u8> {
        EncodedRsaCrosscert::encode_and_sign(&self.rsa, ed, SystemTime::now() + 3650 * DAY)
            .unwrap()
            .into()
    }

    /// Certificate `cert_type` (4, 5, 6 or 7), expiring at `expiry`.
    pub(crate) fn cert_expiring(&self, cert_type: CertType, expiry: SystemTime) -> Vec<u8> {
        match cert_type {
            CertType::IDENTITY_V_SIGNING => Ed25519Cert::builder()
                .cert_type(cert_type)
                .expiration(expiry)
                .signing_key(self.ed_id())
                .cert_key(CertifiedKey::Ed25519(self.ed_sign.verifying_key().into()))
                .encode_and_sign(&self.ed_id)
                .unwrap()
                .into(),
            CertType::SIGNING_V_TLS_CERT => Ed25519Cert::builder()
                .cert_type(cert_type)
                .expiration(expiry)
                .cert_key(CertifiedKey::X509Sha256Digest(self.tls_digest()))
                .encode_and_sign(&self.ed_sign)
                .unwrap()
                .into(),
            CertType::SIGNING_V_LINK_AUTH => Ed25519Cert::builder()
                .cert_type(cert_type)
                .expiration(expiry)
                .cert_key(CertifiedKey::Ed25519(self.auth.verifying_key().into()))
                .encode_and_sign(&self.ed_sign)
                .unwrap()
                .into(),
            CertType::RSA_ID_V_IDENTITY => {
                EncodedRsaCrosscert::encode_and_sign(&self.rsa, &self.ed_id(), expiry)
                    .unwrap()
                    .into()
            }
            t => panic!("no such certificate: {t}"),
        }
    }
}

/// The certificates of a CERTS cell, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct CertSet {
    entries: Vec<(CertType, Vec<u8>)>,
}

impl CertSet {
    pub(crate) fn push(&mut self, t: CertType, body: Vec<u8>) {
        self.entries.push((t, body));
    }

    pub(crate) fn remove(&mut self, t: CertType) {
        self.entries.retain(|(u, _)| *u != t);
    }

    /// Replace the certificate of type `t` in place.
    pub(crate) fn replace(&mut self, t: CertType, body: Vec<u8>) {
        let slot = self.entries.iter_mut().find(|(u, _)| *u == t).unwrap();
        slot.1 = body;
    }

    pub(crate) fn get(&self, t: CertType) -> &[u8] {
        &self.entries.iter().find(|(u, _)| *u == t).unwrap().1
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&CertType, &Vec<u8>)> {
        self.entries.iter().map(|(t, b)| (t, b))
    }

    /// The CERTS cell body (tor-spec §4.2).
    pub(crate) fn body(&self) -> Vec<u8> {
        let mut out = vec![u8::try_from(self.entries.len()).unwrap()];
        for (t, body) in &self.entries {
            out.push((*t).into());
            out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
            out.extend_from_slice(body);
        }
        out
    }
}
