//! A relay's keys and certificates for the link handshake, in both roles
//! (tor-spec §4.2, §4.4.2; cert-spec §2).
//!
//! The relay's long-term keys come from elsewhere (its key files): the
//! RSA1024 identity, the Ed25519 identity and its signing key with the
//! ID->Signing certificate (type 4). [`RelayIdentityKeys`] carries them in.
//! [`RelayLinkKeys::new`] checks that they belong together and makes the
//! material C-tor makes at startup and rotates (`routerkeys.c`,
//! `tortls.c`):
//!
//! - the RSA->Ed25519 cross-certificate (type 7), valid six months as
//!   C-tor's;
//! - the RSA identity's self-signed X.509 certificate (type 2);
//! - a TLS key (RSA, as C-tor requires of the peer's link key) and its
//!   X.509 certificate, which rustls presents and the CERTS cell repeats
//!   (type 1);
//! - the Signing->Link certificate (type 5), certifying the SHA-256 of that
//!   TLS certificate;
//! - an Ed25519 authentication key and its Signing->Auth certificate (type
//!   6), for AUTHENTICATE cells when we initiate.
//!
//! The driver rebuilds them before [`RelayLinkKeys::expiry`] (C-tor
//! rotates its link certificates every two days).

use std::time::{Duration, SystemTime};

use rand::CryptoRng;
use tor_cell::chancell::msg::Certs;
use tor_cert::rsa::EncodedRsaCrosscert;
use tor_cert::x509::{TlsKeyAndCert, create_legacy_rsa_id_cert};
use tor_cert::{CertType, CertifiedKey, Ed25519Cert};
use tor_checkable::{SelfSigned as _, TimeBound as _};
use tor_llcrypto::pk::ed25519::{self, Ed25519Identity, ExpandedKeypair};
use tor_llcrypto::pk::rsa::{KeyPair as RsaKeyPair, RsaIdentity};

use super::certs::{rsa_key_digest, tls_cert_digest};
use super::error::ChannelError;

/// How long the Signing->Link certificate (type 5) lasts: C-tor's
/// `TestingLinkCertLifetime` default.
pub const LINK_CERT_LIFETIME: Duration = Duration::from_secs(2 * 86_400);

/// How long the authentication key and its certificate (type 6) last:
/// C-tor's `TestingAuthKeyLifetime` default.
pub const AUTH_KEY_LIFETIME: Duration = Duration::from_secs(2 * 86_400);

/// How long the RSA->Ed25519 cross-certificate (type 7) lasts: six months,
/// as C-tor makes it (`load_ed_keys`).
pub const CROSSCERT_LIFETIME: Duration = Duration::from_secs(6 * 30 * 86_400);

/// A relay's long-term keys, as its key files hold them.
pub struct RelayIdentityKeys {
    /// The RSA1024 identity key (`secret_id_key`).
    pub rsa_identity: RsaKeyPair,
    /// The Ed25519 identity (`ed25519_master_id_public_key`); its secret
    /// key may stay offline.
    pub ed_identity: Ed25519Identity,
    /// The Ed25519 signing key (`ed25519_signing_secret_key`, which C-tor
    /// stores expanded; a `Keypair` converts with `ExpandedKeypair::from`).
    pub ed_signing: ExpandedKeypair,
    /// The ID->Signing certificate (type 4) for `ed_signing`, encoded
    /// (`ed25519_signing_cert`, less its file header).
    pub signing_cert: Vec<u8>,
}

impl std::fmt::Debug for RelayIdentityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayIdentityKeys")
            .field("rsa", &self.rsa_identity.to_public_key().to_rsa_identity())
            .field("ed25519", &self.ed_identity)
            .finish_non_exhaustive()
    }
}

impl RelayIdentityKeys {
    /// The keys of a relay whose Ed25519 master key is at hand: makes the
    /// type 4 certificate (signing key, signed by the identity and naming
    /// it).
    pub fn from_master_keys(
        rsa_identity: RsaKeyPair,
        ed_identity: &ed25519::Keypair,
        ed_signing: &ed25519::Keypair,
        signing_cert_expiry: SystemTime,
    ) -> Result<Self, ChannelError> {
        let id = Ed25519Identity::from(ed_identity.verifying_key());
        let signing_cert = Ed25519Cert::builder()
            .cert_type(CertType::IDENTITY_V_SIGNING)
            .expiration(signing_cert_expiry)
            .signing_key(id)
            .cert_key(CertifiedKey::Ed25519(ed_signing.verifying_key().into()))
            .encode_and_sign(ed_identity)
            .map_err(|e| bad_keys(format!("cannot make the type 4 certificate: {e}")))?;
        Ok(RelayIdentityKeys {
            rsa_identity,
            ed_identity: id,
            ed_signing: ExpandedKeypair::from(ed_signing),
            signing_cert: signing_cert.into(),
        })
    }
}

/// A relay's keys and certificates for link handshakes (see the module
/// documentation). Shared by every channel (put it in an `Arc`); rebuilt
/// before [`expiry`](Self::expiry).
pub struct RelayLinkKeys {
    /// The long-term keys.
    ids: RelayIdentityKeys,
    /// The RSA->Ed25519 cross-certificate (type 7).
    crosscert: Vec<u8>,
    /// The RSA identity (SHA-1 of the key).
    rsa_id: RsaIdentity,
    /// SHA-256 of the RSA identity key's DER: our CID or SID in AUTH0003.
    rsa_id_sha256: [u8; 32],
    /// The self-signed X.509 certificate of the RSA identity (type 2).
    rsa_id_cert: Vec<u8>,
    /// The TLS key and certificate (type 1).
    tls: TlsKeyAndCert,
    /// The Signing->Link certificate (type 5).
    link_cert: Vec<u8>,
    /// The authentication key (KP_link_ed, "AUTHENTICATE cell key").
    auth_key: ed25519::Keypair,
    /// The Signing->Auth certificate (type 6).
    auth_cert: Vec<u8>,
    /// When the first of all these certificates expires.
    expiry: SystemTime,
}

impl std::fmt::Debug for RelayLinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLinkKeys")
            .field("rsa", &self.rsa_id)
            .field("ed25519", &self.ids.ed_identity)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl RelayLinkKeys {
    /// Check `ids` and make the link-level keys and certificates, valid
    /// from `now` (see the module documentation). Slow: it generates a
    /// 2048-bit RSA TLS key.
    ///
    /// Fails with [`ChannelError::BadLinkKeys`] if the type 4 certificate
    /// is not the identity's certificate of the signing key or has
    /// expired, or the RSA key is not RSA1024 with exponent 65537.
    pub fn new<R: CryptoRng + ?Sized>(
        ids: RelayIdentityKeys,
        rng: &mut R,
        now: SystemTime,
    ) -> Result<Self, ChannelError> {
        let signing_expiry = check_identity_keys(&ids, now)?;
        let rsa_public = ids.rsa_identity.to_public_key();
        let crosscert_expiry = now + CROSSCERT_LIFETIME;
        let crosscert = EncodedRsaCrosscert::encode_and_sign(
            &ids.rsa_identity,
            &ids.ed_identity,
            crosscert_expiry,
        )
        .map_err(|e| bad_keys(format!("cannot make the type 7 certificate: {e}")))?;

        // C-tor names its identity certificate like the TLS issuer.
        let issuer = random_hostname(rng, ".net");
        let subject = random_hostname(rng, ".com");
        let rsa_id_cert =
            create_legacy_rsa_id_cert(&mut &mut *rng, now, &issuer, &ids.rsa_identity)
                .map_err(|e| bad_keys(format!("cannot make the type 2 certificate: {e}")))?;
        let tls = TlsKeyAndCert::create(&mut &mut *rng, now, &issuer, &subject)
            .map_err(|e| bad_keys(format!("cannot make the TLS key and certificate: {e}")))?;
        let tls_der = tls
            .certificates_der()
            .first()
            .map(|c| c.to_vec())
            .ok_or_else(|| bad_keys("no TLS certificate".into()))?;

        let link_expiry = tls.expiration().min(now + LINK_CERT_LIFETIME);
        let link_cert = Ed25519Cert::builder()
            .cert_type(CertType::SIGNING_V_TLS_CERT)
            .expiration(link_expiry)
            .cert_key(CertifiedKey::X509Sha256Digest(tls_cert_digest(&tls_der)))
            .encode_and_sign(&ids.ed_signing)
            .map_err(|e| bad_keys(format!("cannot make the type 5 certificate: {e}")))?;

        let auth_key = ed25519::Keypair::generate(&mut &mut *rng);
        let auth_expiry = now + AUTH_KEY_LIFETIME;
        let auth_cert = Ed25519Cert::builder()
            .cert_type(CertType::SIGNING_V_LINK_AUTH)
            .expiration(auth_expiry)
            .cert_key(CertifiedKey::Ed25519(auth_key.verifying_key().into()))
            .encode_and_sign(&ids.ed_signing)
            .map_err(|e| bad_keys(format!("cannot make the type 6 certificate: {e}")))?;

        Ok(RelayLinkKeys {
            rsa_id: rsa_public.to_rsa_identity(),
            rsa_id_sha256: rsa_key_digest(&rsa_public),
            rsa_id_cert,
            expiry: signing_expiry
                .min(crosscert_expiry)
                .min(link_expiry)
                .min(auth_expiry),
            ids,
            crosscert: crosscert.into(),
            tls,
            link_cert: link_cert.into(),
            auth_key,
            auth_cert: auth_cert.into(),
        })
    }

    /// Our RSA identity (fingerprint).
    pub fn rsa_identity(&self) -> RsaIdentity {
        self.rsa_id
    }

    /// Our Ed25519 identity.
    pub fn ed_identity(&self) -> Ed25519Identity {
        self.ids.ed_identity
    }

    /// The TLS key and certificate chain for the TLS server (and client):
    /// `certificates_der()` and `private_key_pkcs8_der()` for rustls.
    pub fn tls(&self) -> &TlsKeyAndCert {
        &self.tls
    }

    /// The DER of the TLS certificate we present.
    pub fn tls_cert_der(&self) -> &[u8] {
        self.tls
            .certificates_der()
            .first()
            .copied()
            .unwrap_or_default()
    }

    /// When the first certificate here (or of the long-term ones) expires:
    /// build new link keys before then.
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }

    /// The context of the TLS exporter an initiator's AUTH0003 uses: the
    /// SHA-256 of our RSA identity key (the CID; C-tor passes the CID, not
    /// the Ed25519 identity tor-spec §4.4.2 once named). With
    /// [`AUTH0003_EXPORTER_LABEL`](super::auth::AUTH0003_EXPORTER_LABEL)
    /// and a length of 32.
    pub fn auth0003_exporter_context(&self) -> [u8; 32] {
        self.rsa_id_sha256
    }

    /// SHA-256 of our RSA identity key's DER.
    pub(crate) fn rsa_id_sha256(&self) -> &[u8; 32] {
        &self.rsa_id_sha256
    }

    /// The authentication key that signs our AUTHENTICATE cells.
    pub(crate) fn auth_key(&self) -> &ed25519::Keypair {
        &self.auth_key
    }

    /// The CERTS message we send as responder, in C-tor's order
    /// (`connection_or_send_certs_cell`): 1, 2, 4, 5, 7.
    pub(crate) fn responder_certs(&self) -> Certs {
        certs_msg(&[
            (CertType::TLS_LINK_X509, self.tls_cert_der()),
            (CertType::RSA_ID_X509, &self.rsa_id_cert),
            (CertType::IDENTITY_V_SIGNING, &self.ids.signing_cert),
            (CertType::SIGNING_V_TLS_CERT, &self.link_cert),
            (CertType::RSA_ID_V_IDENTITY, &self.crosscert),
        ])
    }

    /// The CERTS message we send as an authenticating initiator (tor-spec
    /// §4.2): 2, 4, 6, 7.
    pub(crate) fn initiator_certs(&self) -> Certs {
        certs_msg(&[
            (CertType::RSA_ID_X509, &self.rsa_id_cert),
            (CertType::IDENTITY_V_SIGNING, &self.ids.signing_cert),
            (CertType::SIGNING_V_LINK_AUTH, &self.auth_cert),
            (CertType::RSA_ID_V_IDENTITY, &self.crosscert),
        ])
    }
}

/// Check that the long-term keys belong together and are valid at `now`;
/// returns when the signing key's certificate expires.
fn check_identity_keys(
    ids: &RelayIdentityKeys,
    now: SystemTime,
) -> Result<SystemTime, ChannelError> {
    let rsa = ids.rsa_identity.to_public_key();
    if rsa.bits() != 1024 || !rsa.exponent_is(65537) {
        return Err(bad_keys(format!(
            "the RSA identity is a {}-bit key, not RSA1024 with exponent 65537",
            rsa.bits()
        )));
    }
    let signing = Ed25519Cert::decode(&ids.signing_cert)
        .map_err(|e| bad_keys(format!("type 4 certificate: {e}")))?;
    if signing.peek_cert_type() != CertType::IDENTITY_V_SIGNING {
        return Err(bad_keys(format!(
            "type 4 certificate is a {}",
            signing.peek_cert_type()
        )));
    }
    let signing = signing
        .should_be_signed_with(&ids.ed_identity)
        .map_err(|_| bad_keys("type 4 certificate does not name the Ed25519 identity".into()))?
        .check_signature()
        .map_err(|_| bad_keys("type 4 certificate is not signed by the Ed25519 identity".into()))?
        .dangerously_assume_timely();
    if signing.is_expired_at(now) {
        return Err(bad_keys("type 4 certificate has expired".into()));
    }
    let signing_public = Ed25519Identity::from(ids.ed_signing.public());
    if signing.subject_key() != &CertifiedKey::Ed25519(signing_public) {
        return Err(bad_keys(
            "type 4 certificate certifies another signing key".into(),
        ));
    }
    Ok(signing.expiry())
}

/// A CERTS message with these certificates, in this order (tor-spec §4.2).
fn certs_msg(certs: &[(CertType, &[u8])]) -> Certs {
    let mut msg = Certs::new_empty();
    for (t, body) in certs {
        msg.push_cert_body(*t, body.to_vec());
    }
    msg
}

/// A host name as C-tor puts in its TLS certificates
/// (`crypto_random_hostname(8, 20, "www.", suffix)`).
fn random_hostname<R: CryptoRng + ?Sized>(rng: &mut R, suffix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let len = 8 + usize::from(rng.next_u32().to_be_bytes()[3] % 13);
    let mut name = String::from("www.");
    for _ in 0..len {
        let i = usize::from(rng.next_u32().to_be_bytes()[3] & 31);
        name.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'a')));
    }
    name.push_str(suffix);
    name
}

/// A [`ChannelError::BadLinkKeys`].
fn bad_keys(reason: String) -> ChannelError {
    ChannelError::BadLinkKeys { reason }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::super::certs::{
        ExpectedIdentity, certs_msg_body, parse_certs_body, verify_responder_certs,
    };
    use super::super::initiator_certs::verify_initiator_certs;
    use super::super::responder_tests::{keys_a, now};
    use super::super::test_relay::MockRelay;
    use super::super::x509::RsaIdCert;
    use super::*;

    #[test]
    fn link_keys_certify_each_other() {
        let k = keys_a();
        let r = MockRelay::shared();
        assert_eq!(k.rsa_identity(), r.rsa_id());
        assert_eq!(k.ed_identity(), r.ed_id());
        assert_eq!(k.auth0003_exporter_context(), r.rsa_id_sha256());
        // The expiry is the link certificates' two days (the long-term
        // ones last a year here), rounded to the hour by the Ed25519
        // certificate format.
        let left = k.expiry().duration_since(now()).unwrap();
        assert!(
            left <= LINK_CERT_LIFETIME + Duration::from_secs(3600),
            "{left:?}"
        );
        assert!(
            left >= LINK_CERT_LIFETIME - Duration::from_secs(3600),
            "{left:?}"
        );
        // The responder's CERTS proves our identity for our TLS
        // certificate, the initiator's CERTS for our authentication key.
        let exp = ExpectedIdentity {
            rsa: r.rsa_id(),
            ed25519: Some(r.ed_id()),
        };
        let body = certs_msg_body(&k.responder_certs()).unwrap();
        let tls = tls_cert_digest(k.tls_cert_der());
        let v = verify_responder_certs(&body, &tls, &exp, now()).unwrap();
        // Our expiry is never after the certificates' (which the Ed25519
        // format rounds up to the hour).
        assert!(v.valid_until >= k.expiry());
        assert!(v.valid_until < k.expiry() + Duration::from_secs(3600));
        let body = certs_msg_body(&k.initiator_certs()).unwrap();
        let c = verify_initiator_certs(&body, now()).unwrap();
        assert_eq!(c.auth_key, k.auth_key().verifying_key());
        assert_eq!(c.identity.ed25519, r.ed_id());
        let types: Vec<u8> = parse_certs_body(&body)
            .unwrap()
            .iter()
            .map(|e| e.cert_type.into())
            .collect();
        assert_eq!(types, [2, 4, 6, 7]);
        // tor-cert-x509's identity certificate reads as C-tor's: RSA1024,
        // self-signed.
        let t2 = k.responder_certs();
        let der = t2.cert_body(CertType::RSA_ID_X509).unwrap();
        let cert = RsaIdCert::parse(der).unwrap();
        assert!(cert.is_self_signed());
        assert_eq!(cert.key().to_rsa_identity(), r.rsa_id());
        // The TLS key is RSA (C-tor closes links whose key is not): its
        // SubjectPublicKeyInfo names rsaEncryption (the certificate itself
        // is signed with a throwaway P-256 key, as arti does).
        let rsa_encryption = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        assert!(
            k.tls_cert_der()
                .windows(rsa_encryption.len())
                .any(|w| w == rsa_encryption)
        );
        // Nothing secret in Debug.
        let dbg = format!("{k:?}");
        assert!(
            dbg.contains("RelayLinkKeys") && !dbg.contains("auth_key"),
            "{dbg}"
        );
    }

    #[test]
    fn mismatched_identity_keys_refused() {
        let r = MockRelay::shared();
        let other = MockRelay::other();
        let mut rng = rand::rng();
        let check = |ids: RelayIdentityKeys, when: SystemTime, what: &str| {
            let e = check_identity_keys(&ids, when).unwrap_err();
            assert!(
                matches!(&e, ChannelError::BadLinkKeys { reason } if reason.contains(what)),
                "{e}"
            );
            assert_eq!(e.kind(), super::super::error::ErrorKind::Internal);
        };
        // Another relay's type 4 certificate.
        let mut ids = r.identity_keys(now());
        ids.signing_cert = other.identity_keys(now()).signing_cert;
        check(ids, now(), "does not name");
        // Another relay's RSA identity with our Ed25519 keys: a new
        // identity pair, which C-tor would cross-certify just the same.
        let mut ids = r.identity_keys(now());
        ids.rsa_identity = other.identity_keys(now()).rsa_identity;
        assert!(check_identity_keys(&ids, now()).is_ok());
        // Another signing key than the one type 4 certifies.
        let mut ids = r.identity_keys(now());
        ids.ed_signing = ExpandedKeypair::from(&ed25519::Keypair::generate(&mut rng));
        check(ids, now(), "another signing key");
        // Garbage, and expiry.
        let mut ids = r.identity_keys(now());
        ids.signing_cert = vec![1, 2, 3];
        check(ids, now(), "type 4");
        let later = now() + Duration::from_secs(400 * 86_400);
        check(r.identity_keys(now()), later, "expired");
        // Good keys pass.
        assert!(check_identity_keys(&r.identity_keys(now()), now()).is_ok());
    }

    #[test]
    fn hostnames_look_like_ctor() {
        let mut rng = rand::rng();
        for _ in 0..50 {
            let h = random_hostname(&mut rng, ".net");
            assert!(h.starts_with("www.") && h.ends_with(".net"), "{h}");
            assert!((8..=20).contains(&(h.len() - 8)), "{h}");
        }
    }
}
