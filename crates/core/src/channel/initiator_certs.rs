//! Verification of an initiator's CERTS cell by a responder (tor-spec §4.2,
//! "To authenticate the initiator as having a given Ed25519,RSA identity
//! key combination").
//!
//! An initiating relay presents, each exactly once: type 2 (RSA1024
//! identity, self-signed X.509), type 4 (Ed25519 ID->Signing), type 6
//! (Ed25519 Signing->Auth: the key that signs its AUTHENTICATE cell) and
//! type 7 (RSA->Ed25519 cross-certificate). Types 2, 4 and 7 are checked as
//! for a responder ([`super::certs`]); type 6 must be signed by the signing
//! key type 4 certifies. C-tor also sends a type 3 RSA AUTH certificate,
//! which the Ed25519 method does not use: it is ignored, like any other
//! type. Checking these does not prove the identity yet: only a valid
//! AUTHENTICATE cell does ([`super::auth`]).

use std::time::SystemTime;

use tor_cert::{CertType, CertifiedKey};
use tor_checkable::SelfSigned as _;
use tor_llcrypto::pk::ed25519;

use super::certs::{
    VerifiedIdentity, check_ed_cert, check_identity_chain, decode_ed_cert, parse_certs_body,
    rsa_key_digest,
};
use super::error::ChannelError;

/// What a valid initiator CERTS cell claims, to be proved by its
/// AUTHENTICATE cell.
#[derive(Debug, Clone)]
pub(crate) struct InitiatorCerts {
    /// The identities, and when the first certificate expires.
    pub(crate) identity: VerifiedIdentity,
    /// SHA-256 of the RSA identity key: the CID of AUTH0003.
    pub(crate) rsa_id_sha256: [u8; 32],
    /// The key its AUTHENTICATE cell must be signed with.
    pub(crate) auth_key: ed25519::PublicKey,
}

/// Check an initiator's CERTS cell body as a responder must (tor-spec
/// §4.2). `now` is the wall-clock time against which expiry is checked.
pub(crate) fn verify_initiator_certs(
    certs_body: &[u8],
    now: SystemTime,
) -> Result<InitiatorCerts, ChannelError> {
    let entries = parse_certs_body(certs_body)?;
    // "The CERTS cell contains exactly one CertType 6 "Signing->auth"
    // certificate" (and 2, 4, 7, checked with the chain).
    let (chain, signing_auth) = check_identity_chain(&entries, CertType::SIGNING_V_LINK_AUTH, now)?;

    // "The Signing->AUTH cert was signed with the Signing key listed in the
    // ID->Signing cert."
    let cert_type = CertType::SIGNING_V_LINK_AUTH;
    let unchecked = decode_ed_cert(signing_auth, cert_type)?
        .should_be_signed_with(&chain.signing_key)
        .map_err(|_| ChannelError::WrongSigner { cert_type })?;
    let signing_auth = check_ed_cert(unchecked.check_signature(), cert_type, now)?;
    let auth_key = match signing_auth.subject_key() {
        CertifiedKey::Ed25519(k) => ed25519::PublicKey::from_bytes(&(*k).into()).ok(),
        _ => None,
    }
    .ok_or_else(|| ChannelError::MalformedCert {
        cert_type,
        reason: "does not certify an Ed25519 authentication key".into(),
    })?;

    Ok(InitiatorCerts {
        identity: VerifiedIdentity {
            rsa: chain.rsa_key.to_rsa_identity(),
            ed25519: chain.ed_id,
            valid_until: chain.valid_until.min(signing_auth.expiry()),
        },
        rsa_id_sha256: rsa_key_digest(&chain.rsa_key),
        auth_key,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::super::test_relay::MockRelay;
    use super::*;
    use std::time::Duration;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
    }

    #[test]
    fn good_initiator_certs() {
        let r = MockRelay::shared();
        let c = verify_initiator_certs(&r.initiator_certs(now()).body(), now()).unwrap();
        assert_eq!(c.identity.rsa, r.rsa_id());
        assert_eq!(c.identity.ed25519, r.ed_id());
        assert_eq!(c.auth_key, r.auth_key());
        assert_eq!(c.rsa_id_sha256, r.rsa_id_sha256());
        assert!(c.identity.valid_until > now());
        // C-tor's extra type 3 certificate is ignored.
        let mut set = r.initiator_certs(now());
        set.push(CertType::LINK_AUTH_X509, vec![1, 2, 3]);
        assert!(verify_initiator_certs(&set.body(), now()).is_ok());
    }

    #[test]
    fn bad_initiator_certs() {
        let r = MockRelay::shared();
        let other = MockRelay::other();
        let t6 = CertType::SIGNING_V_LINK_AUTH;
        for t in [
            CertType::RSA_ID_X509,
            CertType::IDENTITY_V_SIGNING,
            t6,
            CertType::RSA_ID_V_IDENTITY,
        ] {
            let mut set = r.initiator_certs(now());
            set.remove(t);
            assert_eq!(
                verify_initiator_certs(&set.body(), now()).unwrap_err(),
                ChannelError::MissingCert { cert_type: t }
            );
        }
        // A responder's set (type 5, no type 6) is not an initiator's.
        assert_eq!(
            verify_initiator_certs(&r.certs(now()).body(), now()).unwrap_err(),
            ChannelError::MissingCert { cert_type: t6 }
        );
        // Type 6 signed by another relay's signing key.
        let mut set = r.initiator_certs(now());
        set.replace(t6, other.initiator_certs(now()).get(t6).to_vec());
        assert!(matches!(
            verify_initiator_certs(&set.body(), now()).unwrap_err(),
            ChannelError::BadSignature { cert_type } | ChannelError::WrongSigner { cert_type }
                if cert_type == t6
        ));
        // Type 6 with a flipped signature byte, or expired.
        let mut set = r.initiator_certs(now());
        let mut c = set.get(t6).to_vec();
        let n = c.len();
        c[n - 2] ^= 4;
        set.replace(t6, c);
        assert_eq!(
            verify_initiator_certs(&set.body(), now()).unwrap_err(),
            ChannelError::BadSignature { cert_type: t6 }
        );
        let mut set = r.initiator_certs(now());
        set.replace(t6, r.cert_expiring(t6, now() - Duration::from_secs(7200)));
        assert!(matches!(
            verify_initiator_certs(&set.body(), now()).unwrap_err(),
            ChannelError::CertExpired { cert_type, .. } if cert_type == t6
        ));
        // A type 5 certificate labelled 6.
        let mut set = r.initiator_certs(now());
        set.replace(
            t6,
            r.certs(now()).get(CertType::SIGNING_V_TLS_CERT).to_vec(),
        );
        assert!(matches!(
            verify_initiator_certs(&set.body(), now()).unwrap_err(),
            ChannelError::MalformedCert { cert_type, .. } if cert_type == t6
        ));
        // The chain is checked as for a responder: a crosscert for another
        // identity.
        let mut set = r.initiator_certs(now());
        set.replace(CertType::RSA_ID_V_IDENTITY, r.crosscert_for(&other.ed_id()));
        assert_eq!(
            verify_initiator_certs(&set.body(), now()).unwrap_err(),
            ChannelError::CrosscertMismatch
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..800)) {
            let _ = verify_initiator_certs(&body, now());
        }
    }
}
