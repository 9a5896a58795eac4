//! AUTH0003, link authentication type 3, Ed25519-SHA256-RFC5705 (tor-spec
//! §4.4.2): the authenticator an initiating relay signs in its
//! AUTHENTICATE cell, and the responder's check of it.
//!
//! ```text
//!   TYPE        "AUTH0003"                                       8
//!   CID         SHA-256 of the initiator's RSA identity key      32
//!   SID         SHA-256 of the responder's RSA identity key      32
//!   CID_ED      the initiator's Ed25519 identity                 32
//!   SID_ED      the responder's Ed25519 identity                 32
//!   SLOG        SHA-256 of the responder's cells up to and
//!               including AUTH_CHALLENGE                         32
//!   CLOG        SHA-256 of the initiator's cells before this     32
//!   SCERT       SHA-256 of the responder's TLS certificate       32
//!   TLSSECRETS  TLS exporter, label "EXPORTER FOR TOR TLS CLIENT
//!               BINDING AUTH0003", context CID, 32 bytes         32
//!   RAND        random                                           24
//!   SIG         Ed25519 signature of all the above by the
//!               initiator's authentication key (cert type 6)     64
//! ```
//!
//! The exporter's context is the CID, as C-tor computes it
//! (`connection_or_compute_authenticate_cell_body`); older tor-spec text
//! named the initiator's Ed25519 identity instead.

use subtle::ConstantTimeEq as _;
use tor_cell::chancell::msg::Authenticate;
use tor_llcrypto::pk::ed25519;

use super::error::ChannelError;

/// The AuthType / AUTH_CHALLENGE method of Ed25519-SHA256-RFC5705, the
/// only one we offer and accept.
pub const AUTH_METHOD_ED25519_SHA256_RFC5705: u16 = 3;

/// The TLS exporter label of AUTH0003 (RFC 5705 / RFC 8446 §7.5).
pub const AUTH0003_EXPORTER_LABEL: &[u8] = b"EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003";

/// The TYPE field.
const AUTH0003_TYPE: &[u8; 8] = b"AUTH0003";

/// Length of TYPE through TLSSECRETS.
pub const AUTH0003_FIXED_LEN: usize = 8 + 8 * 32;

/// Length of RAND.
pub const AUTH0003_RAND_LEN: usize = 24;

/// Length of SIG.
const SIG_LEN: usize = 64;

/// The fields of an AUTH0003 authenticator that both sides compute (TYPE
/// is fixed; RAND and SIG are the initiator's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Auth0003 {
    /// SHA-256 of the initiator's RSA identity key.
    pub(crate) cid: [u8; 32],
    /// SHA-256 of the responder's RSA identity key.
    pub(crate) sid: [u8; 32],
    /// The initiator's Ed25519 identity.
    pub(crate) cid_ed: [u8; 32],
    /// The responder's Ed25519 identity.
    pub(crate) sid_ed: [u8; 32],
    /// Digest of the responder's cells.
    pub(crate) slog: [u8; 32],
    /// Digest of the initiator's cells.
    pub(crate) clog: [u8; 32],
    /// SHA-256 of the responder's TLS certificate.
    pub(crate) scert: [u8; 32],
    /// The TLS exporter value.
    pub(crate) tlssecrets: [u8; 32],
}

impl Auth0003 {
    /// The named fields in order, after TYPE.
    fn fields(&self) -> [(&'static str, &[u8; 32]); 8] {
        [
            ("CID", &self.cid),
            ("SID", &self.sid),
            ("CID_ED", &self.cid_ed),
            ("SID_ED", &self.sid_ed),
            ("SLOG", &self.slog),
            ("CLOG", &self.clog),
            ("SCERT", &self.scert),
            ("TLSSECRETS", &self.tlssecrets),
        ]
    }

    /// TYPE through TLSSECRETS.
    fn fixed_part(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(AUTH0003_FIXED_LEN + AUTH0003_RAND_LEN + SIG_LEN);
        out.extend_from_slice(AUTH0003_TYPE);
        for (_, f) in self.fields() {
            out.extend_from_slice(f);
        }
        out
    }

    /// The initiator's AUTHENTICATE message: these fields, `rand`, and the
    /// signature of all of it by `auth_key`.
    pub(crate) fn sign(
        &self,
        rand: &[u8; AUTH0003_RAND_LEN],
        auth_key: &ed25519::Keypair,
    ) -> Authenticate {
        let mut body = self.fixed_part();
        body.extend_from_slice(rand);
        let sig = auth_key.sign(&body);
        body.extend_from_slice(&sig.to_bytes());
        Authenticate::new(AUTH_METHOD_ED25519_SHA256_RFC5705, body)
    }

    /// The responder's check of an AUTHENTICATE message against the values
    /// it expects (`self`), with the initiator's authentication key
    /// `auth_key` (from its verified type 6 certificate).
    ///
    /// "A responder checks that all fields from TYPE through TLSSECRETS
    /// contain their unique correct values as described above, and then
    /// verifies the signature. The server MUST ignore any extra bytes in
    /// the signed data after the RAND field" (tor-spec §4.4.2): the
    /// signature is the last 64 bytes of the authenticator and covers
    /// everything before it.
    pub(crate) fn verify(
        &self,
        msg: &Authenticate,
        auth_key: &ed25519::PublicKey,
    ) -> Result<(), ChannelError> {
        if msg.auth_type() != AUTH_METHOD_ED25519_SHA256_RFC5705 {
            return Err(ChannelError::UnsupportedAuthType {
                auth_type: msg.auth_type(),
            });
        }
        let auth = msg.auth();
        let min = AUTH0003_FIXED_LEN + AUTH0003_RAND_LEN + SIG_LEN;
        if auth.len() < min {
            return Err(ChannelError::MalformedAuthenticate {
                reason: format!(
                    "authenticator of {} bytes, AUTH0003 needs at least {min}",
                    auth.len()
                ),
            });
        }
        let (signed, sig) = auth
            .split_at_checked(auth.len() - SIG_LEN)
            .ok_or_else(|| ChannelError::Internal("AUTHENTICATE length checked".into()))?;
        let expected = self.fixed_part();
        let got = signed.get(..AUTH0003_FIXED_LEN).unwrap_or_default();
        // Compare field by field, each in constant time (TLSSECRETS is
        // derived from the session's secrets), and name the first that
        // differs.
        let mut names = std::iter::once("TYPE").chain(self.fields().map(|(n, _)| n));
        let mut at = 0;
        for len in std::iter::once(8).chain([32; 8]) {
            let name = names.next().unwrap_or("?");
            let (Some(e), Some(g)) = (expected.get(at..at + len), got.get(at..at + len)) else {
                return Err(ChannelError::Internal("AUTH0003 field bounds".into()));
            };
            if !bool::from(e.ct_eq(g)) {
                return Err(ChannelError::AuthenticateMismatch { field: name });
            }
            at += len;
        }
        let sig: [u8; SIG_LEN] = sig
            .try_into()
            .map_err(|_| ChannelError::Internal("AUTHENTICATE signature length".into()))?;
        auth_key
            .verify(signed, &ed25519::Signature::from(sig))
            .map_err(|_| ChannelError::BadAuthenticateSignature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn fields() -> Auth0003 {
        Auth0003 {
            cid: [1; 32],
            sid: [2; 32],
            cid_ed: [3; 32],
            sid_ed: [4; 32],
            slog: [5; 32],
            clog: [6; 32],
            scert: [7; 32],
            tlssecrets: [8; 32],
        }
    }

    fn key() -> ed25519::Keypair {
        ed25519::Keypair::from_bytes(&[42; 32])
    }

    #[test]
    fn layout() {
        let msg = fields().sign(&[9; 24], &key());
        assert_eq!(msg.auth_type(), 3);
        let auth = msg.auth();
        assert_eq!(auth.len(), 352);
        assert_eq!(&auth[..8], b"AUTH0003");
        for (i, b) in (1..=8_u8).enumerate() {
            assert!(auth[8 + 32 * i..8 + 32 * (i + 1)].iter().all(|&x| x == b));
        }
        assert_eq!(&auth[264..288], &[9; 24]);
        // tor-cell agrees on where the body ends.
        assert_eq!(msg.body_no_rand().unwrap(), &auth[..264]);
        assert_eq!(msg.body().unwrap(), &auth[..288]);
        let sig = ed25519::Signature::from(*msg.sig().unwrap());
        key().verifying_key().verify(&auth[..288], &sig).unwrap();
    }

    #[test]
    fn verify_accepts_and_names_the_wrong_field() {
        let f = fields();
        let k = key();
        let msg = f.sign(&[9; 24], &k);
        f.verify(&msg, &k.verifying_key()).unwrap();
        // Every byte of TYPE..TLSSECRETS matters, and is named.
        let names = [
            "TYPE",
            "CID",
            "SID",
            "CID_ED",
            "SID_ED",
            "SLOG",
            "CLOG",
            "SCERT",
            "TLSSECRETS",
        ];
        for i in 0..AUTH0003_FIXED_LEN {
            let mut auth = msg.auth().to_vec();
            auth[i] ^= 1;
            let m = Authenticate::new(3, auth);
            let field = if i < 8 {
                names[0]
            } else {
                names[1 + (i - 8) / 32]
            };
            assert_eq!(
                f.verify(&m, &k.verifying_key()).unwrap_err(),
                ChannelError::AuthenticateMismatch { field },
                "byte {i}"
            );
        }
        // RAND and SIG are covered by the signature.
        for i in AUTH0003_FIXED_LEN..msg.auth().len() {
            let mut auth = msg.auth().to_vec();
            auth[i] ^= 0x40;
            let m = Authenticate::new(3, auth);
            assert_eq!(
                f.verify(&m, &k.verifying_key()).unwrap_err(),
                ChannelError::BadAuthenticateSignature,
                "byte {i}"
            );
        }
        // Another key's signature.
        let other = ed25519::Keypair::from_bytes(&[43; 32]);
        assert_eq!(
            f.verify(&f.sign(&[9; 24], &other), &k.verifying_key())
                .unwrap_err(),
            ChannelError::BadAuthenticateSignature
        );
    }

    #[test]
    fn extra_signed_bytes_allowed_short_refused() {
        let f = fields();
        let k = key();
        // Extra bytes after RAND, inside the signed part.
        let mut body = f.fixed_part();
        body.extend_from_slice(&[9; 24]);
        body.extend_from_slice(b"extra");
        let sig = k.sign(&body);
        body.extend_from_slice(&sig.to_bytes());
        f.verify(&Authenticate::new(3, body), &k.verifying_key())
            .unwrap();
        // Too short for AUTH0003.
        let msg = f.sign(&[9; 24], &k);
        let short = Authenticate::new(3, msg.auth()[..351].to_vec());
        assert!(matches!(
            f.verify(&short, &k.verifying_key()).unwrap_err(),
            ChannelError::MalformedAuthenticate { .. }
        ));
        assert!(matches!(
            f.verify(&Authenticate::new(3, Vec::new()), &k.verifying_key())
                .unwrap_err(),
            ChannelError::MalformedAuthenticate { .. }
        ));
        // Another method.
        assert_eq!(
            f.verify(
                &Authenticate::new(1, msg.auth().to_vec()),
                &k.verifying_key()
            )
            .unwrap_err(),
            ChannelError::UnsupportedAuthType { auth_type: 1 }
        );
    }
}
