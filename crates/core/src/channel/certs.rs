//! Verification of a responder's CERTS cell by a client (tor-spec §4.2,
//! "To authenticate the responder as having a given Ed25519,RSA identity key
//! combination").
//!
//! The responder (a relay) must present, each exactly once:
//!
//! - type 2: its RSA1024 identity key in a self-signed X.509 certificate;
//! - type 7: an RSA->Ed25519 cross-certificate, signed by that RSA key,
//!   certifying its Ed25519 identity (cert-spec §2.3);
//! - type 4: an Ed25519 ID->Signing certificate, signed by the Ed25519
//!   identity and naming it in a signed-with-ed25519-key extension;
//! - type 5: an Ed25519 Signing->Link certificate, signed by the signing key,
//!   certifying the SHA-256 digest of the TLS certificate of this connection.
//!
//! Then the identities must be those of the relay we meant to reach. The
//! RSA-only form of the handshake (types 1 and 2 alone) is obsolete and not
//! accepted: every supported relay has an Ed25519 identity.

use std::time::{Duration, SystemTime};

use digest::Digest;
use tor_cell::chancell::ChanMsg as _;
use tor_cell::chancell::msg::{AnyChanMsg, Certs};
use tor_cert::rsa::RsaCrosscert;
use tor_cert::{CertError, CertType, CertifiedKey, Ed25519Cert};
use tor_checkable::{ExternallySigned as _, SelfSigned as _, TimeBound as _};
use tor_llcrypto::d::Sha256;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::{PublicKey as RsaPublicKey, RsaIdentity};

use super::error::ChannelError;
use super::x509::RsaIdCert;

/// How long after its validUntil date we still accept an X.509 RSA identity
/// certificate: C-tor's `TOR_X509_PAST_SLOP` (two days), for peers whose
/// clock lags ours.
pub const X509_PAST_SLOP: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// How long before its validAfter date we already accept an X.509 RSA
/// identity certificate: C-tor's `TOR_X509_FUTURE_SLOP` (30 days). C-tor
/// picks a random start time for these certificates, which can lie ahead of
/// the real one.
pub const X509_FUTURE_SLOP: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The identity of the relay we meant to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedIdentity {
    /// Its RSA identity (the SHA-1 of its RSA identity key).
    pub rsa: RsaIdentity,
    /// Its Ed25519 identity, if we know it (from the consensus or
    /// microdescriptor); `None` accepts any Ed25519 identity the
    /// certificates prove.
    pub ed25519: Option<Ed25519Identity>,
}

/// What a valid CERTS cell proves about the responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The responder's RSA identity.
    pub rsa: RsaIdentity,
    /// The responder's Ed25519 identity.
    pub ed25519: Ed25519Identity,
    /// When the first of the certificates expires: a channel should not
    /// outlive it.
    pub valid_until: SystemTime,
}

/// One certificate of a CERTS cell, not parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertEntry<'a> {
    /// Its CertType label.
    pub cert_type: CertType,
    /// Its encoding.
    pub body: &'a [u8],
}

/// The SHA-256 of a DER certificate: what a Signing->Link certificate
/// certifies for the TLS certificate.
pub fn tls_cert_digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Split a CERTS cell body into its certificates (tor-spec §4.2), refusing a
/// repeated CertType ("A CERTS cell may have no more than one certificate of
/// each CertType"). Extra bytes after the last certificate are ignored, as
/// the spec requires.
pub fn parse_certs_body(body: &[u8]) -> Result<Vec<CertEntry<'_>>, ChannelError> {
    let truncated = || ChannelError::MalformedCerts {
        reason: "truncated".into(),
    };
    let (&n, mut rest) = body.split_first().ok_or_else(truncated)?;
    let mut seen = [false; 256];
    let mut entries = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (&cert_type, after) = rest.split_first().ok_or_else(truncated)?;
        let (len, after) = after.split_at_checked(2).ok_or_else(truncated)?;
        let len = len
            .iter()
            .fold(0_usize, |acc, &b| (acc << 8) | usize::from(b));
        let (cert, after) = after.split_at_checked(len).ok_or_else(truncated)?;
        rest = after;
        if let Some(seen) = seen.get_mut(usize::from(cert_type)) {
            if *seen {
                return Err(ChannelError::DuplicateCert {
                    cert_type: cert_type.into(),
                });
            }
            *seen = true;
        }
        entries.push(CertEntry {
            cert_type: cert_type.into(),
            body: cert,
        });
    }
    Ok(entries)
}

/// The body of a parsed CERTS message, re-encoded: tor-cell keeps the
/// certificates but only lets us look up the first of each type, and we
/// need to see them all to refuse duplicates.
pub fn certs_msg_body(msg: &Certs) -> Result<Vec<u8>, ChannelError> {
    let mut body = Vec::new();
    AnyChanMsg::Certs(msg.clone())
        .encode_onto(&mut body)
        .map_err(|e| ChannelError::Internal(format!("cannot re-encode CERTS: {e}")))?;
    Ok(body)
}

/// Check a responder's CERTS cell body as a client must (tor-spec §4.2).
///
/// `tls_cert_sha256` is the SHA-256 of the DER certificate the peer
/// presented in TLS ([`tls_cert_digest`]); `now` is the wall-clock time
/// against which expiry is checked. Every failure names the rule broken.
/// The chain is validated before the identities are compared, so a
/// [`ChannelError::WrongRsaIdentity`] means "a valid relay, but not the one
/// we wanted".
pub fn verify_responder_certs(
    certs_body: &[u8],
    tls_cert_sha256: &[u8; 32],
    expected: &ExpectedIdentity,
    now: SystemTime,
) -> Result<VerifiedIdentity, ChannelError> {
    verify_responder_chain(certs_body, tls_cert_sha256, expected, now).map(|(v, _)| v)
}

/// [`verify_responder_certs`], also returning the SHA-256 of the
/// responder's RSA identity key (its DER encoding): the SID of an AUTH0003
/// authenticator (tor-spec §4.4.2).
pub(super) fn verify_responder_chain(
    certs_body: &[u8],
    tls_cert_sha256: &[u8; 32],
    expected: &ExpectedIdentity,
    now: SystemTime,
) -> Result<(VerifiedIdentity, [u8; 32]), ChannelError> {
    let entries = parse_certs_body(certs_body)?;
    // "The CERTS cell contains exactly one CertType 2 / 4 / 5 / 7 cert"
    // (duplicates were refused while parsing).
    let (chain, signing_link) = check_identity_chain(&entries, CertType::SIGNING_V_TLS_CERT, now)?;

    // "The Signing->Link cert was signed with the Signing key listed in the
    // ID->Signing cert", and "The certified key in the Signing->Link
    // certificate matches the SHA256 digest of the certificate that was used
    // to authenticate the TLS connection."
    let cert_type = CertType::SIGNING_V_TLS_CERT;
    let unchecked = decode_ed_cert(signing_link, cert_type)?
        .should_be_signed_with(&chain.signing_key)
        .map_err(|_| ChannelError::WrongSigner { cert_type })?;
    let signing_link = check_ed_cert(unchecked.check_signature(), cert_type, now)?;
    match signing_link.subject_key() {
        CertifiedKey::X509Sha256Digest(d) if d == tls_cert_sha256 => {}
        _ => return Err(ChannelError::TlsCertMismatch),
    }

    // The chain is sound; is it the relay we wanted?
    let rsa_id = chain.rsa_key.to_rsa_identity();
    if rsa_id != expected.rsa {
        return Err(ChannelError::WrongRsaIdentity {
            expected: expected.rsa,
            found: rsa_id,
        });
    }
    if let Some(want) = expected.ed25519
        && want != chain.ed_id
    {
        return Err(ChannelError::WrongEd25519Identity {
            expected: want,
            found: chain.ed_id,
        });
    }

    let verified = VerifiedIdentity {
        rsa: rsa_id,
        ed25519: chain.ed_id,
        valid_until: chain.valid_until.min(signing_link.expiry()),
    };
    Ok((verified, rsa_key_digest(&chain.rsa_key)))
}

/// The SHA-256 of an RSA key's DER (PKCS#1) encoding: C-tor's "SHA256 ID
/// digest" of an identity key, the CID and SID of AUTH0003 (tor-spec
/// §4.4.2; C-tor `crypto_pk_get_common_digests`).
pub fn rsa_key_digest(key: &RsaPublicKey) -> [u8; 32] {
    Sha256::digest(key.to_der()).into()
}

/// The certificate of type `cert_type`, which must be there.
pub(super) fn find_cert<'a>(
    entries: &[CertEntry<'a>],
    cert_type: CertType,
) -> Result<&'a [u8], ChannelError> {
    entries
        .iter()
        .find(|e| e.cert_type == cert_type)
        .map(|e| e.body)
        .ok_or(ChannelError::MissingCert { cert_type })
}

/// What the certificates both roles present (types 2, 4 and 7) prove: an
/// RSA identity, an Ed25519 identity cross-certified by it, and the
/// Ed25519 signing key that identity certifies (tor-spec §4.2).
#[derive(Debug, Clone)]
pub(super) struct IdentityChain {
    /// The RSA1024 identity key (type 2).
    pub(super) rsa_key: RsaPublicKey,
    /// The Ed25519 identity (signer of type 4, subject of type 7).
    pub(super) ed_id: Ed25519Identity,
    /// The Ed25519 signing key type 4 certifies: the signer of types 5 and 6.
    pub(super) signing_key: Ed25519Identity,
    /// When the first of the three certificates expires.
    pub(super) valid_until: SystemTime,
}

/// Check the certificates of types 2, 4 and 7 as tor-spec §4.2 asks of
/// both roles, after making sure that they and the role's own link
/// certificate (`role_cert`: 5 for a responder, 6 for an initiator) are
/// there; returns the chain and the body of `role_cert`, not yet checked.
pub(super) fn check_identity_chain<'a>(
    entries: &[CertEntry<'a>],
    role_cert: CertType,
    now: SystemTime,
) -> Result<(IdentityChain, &'a [u8]), ChannelError> {
    let rsa_id_der = find_cert(entries, CertType::RSA_ID_X509)?;
    let id_signing = find_cert(entries, CertType::IDENTITY_V_SIGNING)?;
    let role_cert = find_cert(entries, role_cert)?;
    let crosscert = find_cert(entries, CertType::RSA_ID_V_IDENTITY)?;

    let (rsa_key, rsa_not_after) = check_rsa_id_cert(rsa_id_der, now)?;

    // "The identity key listed in the ID->Signing cert was used to sign the
    // ID->Signing Cert."
    let cert_type = CertType::IDENTITY_V_SIGNING;
    let unchecked = decode_ed_cert(id_signing, cert_type)?
        .should_have_signing_key()
        .map_err(|_| ChannelError::MissingSigningKey { cert_type })?;
    let ed_id = *unchecked.peek_signing_key();
    let id_signing = check_ed_cert(unchecked.check_signature(), cert_type, now)?;
    let signing_key = match id_signing.subject_key() {
        CertifiedKey::Ed25519(k) => *k,
        _ => {
            return Err(ChannelError::MalformedCert {
                cert_type,
                reason: "does not certify an Ed25519 signing key".into(),
            });
        }
    };

    // "The RSA->Ed25519 cross-certificate certifies the Ed25519 identity, and
    // is signed with the RSA identity listed in the "ID" certificate."
    let cert_type = CertType::RSA_ID_V_IDENTITY;
    let crosscert = RsaCrosscert::decode(crosscert)
        .map_err(|e| ChannelError::MalformedCert {
            cert_type,
            reason: e.to_string(),
        })?
        .check_signature(&rsa_key)
        .map_err(|_| ChannelError::BadSignature { cert_type })?
        .dangerously_assume_timely();
    if now > crosscert.expiry() {
        return Err(ChannelError::CertExpired {
            cert_type,
            expired_at: crosscert.expiry(),
        });
    }
    if !crosscert.subject_key_matches(&ed_id) {
        return Err(ChannelError::CrosscertMismatch);
    }

    let valid_until = rsa_not_after
        .min(crosscert.expiry())
        .min(id_signing.expiry());
    let chain = IdentityChain {
        rsa_key,
        ed_id,
        signing_key,
        valid_until,
    };
    Ok((chain, role_cert))
}

/// Check the RSA identity certificate (type 2): "The certified key in the ID
/// certificate is a 1024-bit RSA key", "The RSA ID certificate is correctly
/// self-signed", and its validAfter / validUntil dates (with C-tor's
/// tolerances). Returns the key and validUntil.
fn check_rsa_id_cert(
    der: &[u8],
    now: SystemTime,
) -> Result<(RsaPublicKey, SystemTime), ChannelError> {
    let cert_type = CertType::RSA_ID_X509;
    let cert = RsaIdCert::parse(der)
        .map_err(|reason| ChannelError::MalformedCert { cert_type, reason })?;
    let key = cert.key();
    if key.bits() != 1024 || !key.exponent_is(65537) {
        return Err(ChannelError::BadRsaIdentityKey { bits: key.bits() });
    }
    if !cert.is_self_signed() {
        return Err(ChannelError::BadSignature { cert_type });
    }
    if cert
        .not_after()
        .checked_add(X509_PAST_SLOP)
        .is_some_and(|end| now > end)
    {
        return Err(ChannelError::CertExpired {
            cert_type,
            expired_at: cert.not_after(),
        });
    }
    if now
        .checked_add(X509_FUTURE_SLOP)
        .is_some_and(|t| t < cert.not_before())
    {
        return Err(ChannelError::CertNotYetValid {
            cert_type,
            valid_after: cert.not_before(),
        });
    }
    Ok((key.clone(), cert.not_after()))
}

/// Decode an Ed25519 certificate labelled `cert_type` in the CERTS cell, and
/// check that it says it is of that type.
pub(super) fn decode_ed_cert(
    body: &[u8],
    cert_type: CertType,
) -> Result<tor_cert::KeyUnknownCert, ChannelError> {
    let cert = Ed25519Cert::decode(body).map_err(|e| ChannelError::MalformedCert {
        cert_type,
        reason: e.to_string(),
    })?;
    if cert.peek_cert_type() != cert_type {
        return Err(ChannelError::MalformedCert {
            cert_type,
            reason: format!("labelled {cert_type}, but is a {}", cert.peek_cert_type()),
        });
    }
    Ok(cert)
}

/// Finish checking an Ed25519 certificate: the outcome of its signature
/// check, then its expiry.
pub(super) fn check_ed_cert(
    sig_checked: Result<tor_cert::SigCheckedCert, CertError>,
    cert_type: CertType,
    now: SystemTime,
) -> Result<Ed25519Cert, ChannelError> {
    let cert = sig_checked
        .map_err(|_| ChannelError::BadSignature { cert_type })?
        .dangerously_assume_timely();
    if cert.is_expired_at(now) {
        return Err(ChannelError::CertExpired {
            cert_type,
            expired_at: cert.expiry(),
        });
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::super::test_relay::{CertSet, MockRelay};
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
    }

    fn expected(r: &MockRelay) -> ExpectedIdentity {
        ExpectedIdentity {
            rsa: r.rsa_id(),
            ed25519: Some(r.ed_id()),
        }
    }

    fn verify(r: &MockRelay, set: &CertSet) -> Result<VerifiedIdentity, ChannelError> {
        verify_responder_certs(&set.body(), &r.tls_digest(), &expected(r), now())
    }

    #[test]
    fn good_certs_accepted() {
        let r = MockRelay::shared();
        let set = r.certs(now());
        let v = verify(r, &set).unwrap();
        assert_eq!(v.rsa, r.rsa_id());
        assert_eq!(v.ed25519, r.ed_id());
        assert!(v.valid_until > now());
        // Without an expected Ed25519 identity, too.
        let exp = ExpectedIdentity {
            rsa: r.rsa_id(),
            ed25519: None,
        };
        let v2 = verify_responder_certs(&set.body(), &r.tls_digest(), &exp, now()).unwrap();
        assert_eq!(v, v2);
        // Extra certificate types and trailing bytes are fine.
        let mut set = set;
        set.push(CertType::SIGNING_V_LINK_AUTH, vec![1, 2, 3]);
        let mut body = set.body();
        body.extend_from_slice(&[0; 7]);
        assert!(verify_responder_certs(&body, &r.tls_digest(), &expected(r), now()).is_ok());
    }

    #[test]
    fn wrong_rsa_identity_refused() {
        let r = MockRelay::shared();
        let mut exp = expected(r);
        exp.rsa = RsaIdentity::from([7; 20]);
        let e = verify_responder_certs(&r.certs(now()).body(), &r.tls_digest(), &exp, now())
            .unwrap_err();
        assert_eq!(
            e,
            ChannelError::WrongRsaIdentity {
                expected: exp.rsa,
                found: r.rsa_id()
            }
        );
        assert!(e.is_peer_fault());
    }

    #[test]
    fn wrong_ed25519_identity_refused() {
        let r = MockRelay::shared();
        let mut exp = expected(r);
        exp.ed25519 = Some(Ed25519Identity::from([9; 32]));
        let e = verify_responder_certs(&r.certs(now()).body(), &r.tls_digest(), &exp, now())
            .unwrap_err();
        assert_eq!(
            e,
            ChannelError::WrongEd25519Identity {
                expected: Ed25519Identity::from([9; 32]),
                found: r.ed_id()
            }
        );
    }

    #[test]
    fn expired_certs_refused() {
        let r = MockRelay::shared();
        let past = now() - Duration::from_secs(3 * 3600);
        for cert_type in [
            CertType::IDENTITY_V_SIGNING,
            CertType::SIGNING_V_TLS_CERT,
            CertType::RSA_ID_V_IDENTITY,
        ] {
            let mut set = r.certs(now());
            set.replace(cert_type, r.cert_expiring(cert_type, past));
            match verify(r, &set).unwrap_err() {
                ChannelError::CertExpired {
                    cert_type: t,
                    expired_at,
                } => {
                    assert_eq!(t, cert_type);
                    assert!(expired_at < now());
                }
                e => panic!("{cert_type}: {e}"),
            }
        }
        // X.509: within C-tor's two days of slop it passes, beyond it fails.
        let mut set = r.certs(now());
        let day = Duration::from_secs(86_400);
        set.replace(
            CertType::RSA_ID_X509,
            r.rsa_id_cert(now() - 300 * day, now() - day),
        );
        assert!(verify(r, &set).is_ok());
        set.replace(
            CertType::RSA_ID_X509,
            r.rsa_id_cert(now() - 300 * day, now() - 3 * day),
        );
        assert!(matches!(
            verify(r, &set).unwrap_err(),
            ChannelError::CertExpired { cert_type, .. } if cert_type == CertType::RSA_ID_X509
        ));
        // Not yet valid beyond 30 days.
        set.replace(
            CertType::RSA_ID_X509,
            r.rsa_id_cert(now() + 31 * day, now() + 300 * day),
        );
        assert!(matches!(
            verify(r, &set).unwrap_err(),
            ChannelError::CertNotYetValid { cert_type, .. } if cert_type == CertType::RSA_ID_X509
        ));
    }

    #[test]
    fn bad_signatures_refused() {
        let r = MockRelay::shared();
        for cert_type in [
            CertType::RSA_ID_X509,
            CertType::IDENTITY_V_SIGNING,
            CertType::SIGNING_V_TLS_CERT,
            CertType::RSA_ID_V_IDENTITY,
        ] {
            let mut set = r.certs(now());
            // Flip a byte of the signature, which ends every one of them.
            let mut cert = set.get(cert_type).to_vec();
            let n = cert.len();
            cert[n - 3] ^= 0x10;
            set.replace(cert_type, cert);
            assert_eq!(
                verify(r, &set).unwrap_err(),
                ChannelError::BadSignature { cert_type },
                "{cert_type}"
            );
        }
        // A flipped byte in the signed part of the ID->Signing cert (the
        // certified key) breaks its signature as well.
        let mut set = r.certs(now());
        let mut cert = set.get(CertType::IDENTITY_V_SIGNING).to_vec();
        cert[10] ^= 1;
        set.replace(CertType::IDENTITY_V_SIGNING, cert);
        assert_eq!(
            verify(r, &set).unwrap_err(),
            ChannelError::BadSignature {
                cert_type: CertType::IDENTITY_V_SIGNING
            }
        );
        // An RSA identity certificate signed by another key.
        let mut set = r.certs(now());
        set.replace(CertType::RSA_ID_X509, r.rsa_id_cert_signed_by_other(now()));
        assert_eq!(
            verify(r, &set).unwrap_err(),
            ChannelError::BadSignature {
                cert_type: CertType::RSA_ID_X509
            }
        );
    }

    #[test]
    fn missing_certs_refused() {
        let r = MockRelay::shared();
        for cert_type in [
            CertType::RSA_ID_X509,
            CertType::IDENTITY_V_SIGNING,
            CertType::SIGNING_V_TLS_CERT,
            CertType::RSA_ID_V_IDENTITY,
        ] {
            let mut set = r.certs(now());
            set.remove(cert_type);
            assert_eq!(
                verify(r, &set).unwrap_err(),
                ChannelError::MissingCert { cert_type }
            );
        }
        assert_eq!(
            verify_responder_certs(&[0], &r.tls_digest(), &expected(r), now()).unwrap_err(),
            ChannelError::MissingCert {
                cert_type: CertType::RSA_ID_X509
            }
        );
    }

    #[test]
    fn duplicate_certs_refused() {
        let r = MockRelay::shared();
        for cert_type in [
            CertType::RSA_ID_X509,
            CertType::IDENTITY_V_SIGNING,
            CertType::SIGNING_V_TLS_CERT,
            CertType::RSA_ID_V_IDENTITY,
            CertType::SIGNING_V_LINK_AUTH,
        ] {
            let mut set = r.certs(now());
            set.push(cert_type, vec![0xaa]);
            set.push(cert_type, vec![0xbb]);
            assert_eq!(
                verify(r, &set).unwrap_err(),
                ChannelError::DuplicateCert { cert_type }
            );
        }
        // Even an identical copy.
        let mut set = r.certs(now());
        let t4 = set.get(CertType::IDENTITY_V_SIGNING).to_vec();
        set.push(CertType::IDENTITY_V_SIGNING, t4);
        assert!(matches!(
            verify(r, &set).unwrap_err(),
            ChannelError::DuplicateCert { .. }
        ));
    }

    #[test]
    fn tls_cert_mismatch_refused() {
        let r = MockRelay::shared();
        let other = tls_cert_digest(b"some other TLS certificate");
        assert_eq!(
            verify_responder_certs(&r.certs(now()).body(), &other, &expected(r), now())
                .unwrap_err(),
            ChannelError::TlsCertMismatch
        );
    }

    #[test]
    fn chain_breaks_refused() {
        let r = MockRelay::shared();
        let other = MockRelay::other();
        // A crosscert from our RSA key certifying another Ed25519 identity.
        let mut set = r.certs(now());
        set.replace(CertType::RSA_ID_V_IDENTITY, r.crosscert_for(&other.ed_id()));
        assert_eq!(
            verify(r, &set).unwrap_err(),
            ChannelError::CrosscertMismatch
        );
        // Another relay's Signing->Link cert (signed by its signing key,
        // which names itself): wrong signer, or bad signature.
        let mut set = r.certs(now());
        set.replace(
            CertType::SIGNING_V_TLS_CERT,
            other
                .certs(now())
                .get(CertType::SIGNING_V_TLS_CERT)
                .to_vec(),
        );
        assert!(matches!(
            verify(r, &set).unwrap_err(),
            ChannelError::BadSignature { cert_type } | ChannelError::WrongSigner { cert_type }
                if cert_type == CertType::SIGNING_V_TLS_CERT
        ));
        // Another relay's crosscert: signed by a different RSA key.
        let mut set = r.certs(now());
        set.replace(
            CertType::RSA_ID_V_IDENTITY,
            other.certs(now()).get(CertType::RSA_ID_V_IDENTITY).to_vec(),
        );
        assert_eq!(
            verify(r, &set).unwrap_err(),
            ChannelError::BadSignature {
                cert_type: CertType::RSA_ID_V_IDENTITY
            }
        );
        // Certificates swapped between labels.
        let mut set = r.certs(now());
        let t4 = set.get(CertType::IDENTITY_V_SIGNING).to_vec();
        let t5 = set.get(CertType::SIGNING_V_TLS_CERT).to_vec();
        set.replace(CertType::IDENTITY_V_SIGNING, t5);
        set.replace(CertType::SIGNING_V_TLS_CERT, t4);
        assert!(matches!(
            verify(r, &set).unwrap_err(),
            ChannelError::MalformedCert { .. }
        ));
        // A 2048-bit identity key is not an RSA1024 identity.
        let mut set = r.certs(now());
        set.replace(CertType::RSA_ID_X509, MockRelay::rsa2048_cert(now()));
        assert_eq!(
            verify(r, &set).unwrap_err(),
            ChannelError::BadRsaIdentityKey { bits: 2048 }
        );
    }

    #[test]
    fn malformed_certs_body_refused() {
        let r = MockRelay::shared();
        let body = r.certs(now()).body();
        for cut in [0, 1, 2, 3, 10, body.len() - 1] {
            let e = verify_responder_certs(&body[..cut], &r.tls_digest(), &expected(r), now())
                .unwrap_err();
            assert!(
                matches!(e, ChannelError::MalformedCerts { .. }),
                "{cut}: {e}"
            );
        }
    }

    /// The CERTS of a real C-tor relay on a chutney network, as recorded in
    /// arti's tor-proto tests; valid at 2020-09-26T18:01:20Z.
    #[test]
    fn real_relay_certs_accepted() {
        const T2: &str = "308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A";
        const T4: &str = "01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602";
        const T5: &str = "01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C";
        const T7: &str = "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F";
        let digest: [u8; 32] =
            hex::decode("b4fd606b64e4cbd466b8d76cb131069bae6f3aa1878857c9f624e31d77a799b8")
                .unwrap()
                .try_into()
                .unwrap();
        let rsa = RsaIdentity::from_bytes(
            &hex::decode("2f1fb49bb332a9eec617e41e911c33fb3890aef3").unwrap(),
        )
        .unwrap();
        let ed = Ed25519Identity::from_bytes(
            &hex::decode("dcb604db2034b00fd16986d4adb9d16b21cb4e4457a33dec0f538903683e96e9")
                .unwrap(),
        )
        .unwrap();
        let mut set = CertSet::default();
        // C-tor's order.
        set.push(CertType::RSA_ID_X509, hex::decode(T2).unwrap());
        set.push(CertType::IDENTITY_V_SIGNING, hex::decode(T4).unwrap());
        set.push(CertType::SIGNING_V_TLS_CERT, hex::decode(T5).unwrap());
        set.push(CertType::RSA_ID_V_IDENTITY, hex::decode(T7).unwrap());
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_601_143_280);
        let exp = ExpectedIdentity {
            rsa,
            ed25519: Some(ed),
        };
        let v = verify_responder_certs(&set.body(), &digest, &exp, when).unwrap();
        assert_eq!(v.rsa, rsa);
        assert_eq!(v.ed25519, ed);
        // A month later the Ed25519 certificates have expired.
        let later = when + Duration::from_secs(40 * 86_400);
        assert!(matches!(
            verify_responder_certs(&set.body(), &digest, &exp, later).unwrap_err(),
            ChannelError::CertExpired { .. }
        ));
    }

    #[test]
    fn certs_msg_round_trip() {
        let r = MockRelay::shared();
        let set = r.certs(now());
        let mut msg = Certs::new_empty();
        for (t, body) in set.entries() {
            msg.push_cert_body(*t, body.clone());
        }
        assert_eq!(certs_msg_body(&msg).unwrap(), set.body());
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..800)) {
            let r = MockRelay::shared();
            let _ = verify_responder_certs(&body, &r.tls_digest(), &expected(r), now());
        }
    }
}
