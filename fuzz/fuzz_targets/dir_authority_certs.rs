//! Authority key certificates (one or many): tor-netdoc's parser and our
//! trust checks (`parse_certs`). The first input byte chooses which of the
//! recorded authorities are configured (bits 0-2) and the time (bits 3-4:
//! inside the recorded certificates' lifetime, before their publication,
//! after their expiry); the rest is the text. Seeded with the recorded
//! certificates.
//!
//! Invariants: every certificate in the text (each "dir-key-certificate-version"
//! line starts one) is accepted or refused, once; an empty text is one
//! refusal. An accepted certificate is one of the text's certificates,
//! belongs to a configured authority, is valid at the time given, and its
//! signatures verify when checked here without tor-netdoc (dir-spec §3.1:
//! the identity key in the text, whose SHA-1 is the fingerprint, signs
//! the SHA-1 of the text through "dir-key-certification\n"; the signing key
//! signs the identity's fingerprint in "dir-key-crosscert").
#![no_main]

mod recorded;

use std::time::Duration;

use base64ct::{Base64, Encoding as _};
use braid_dir::RelayId;
use braid_dir::bootstrap::CLOCK_TOLERANCE;
use braid_dir::documents::parse_certs;
use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;
use tor_llcrypto::d::Sha1;
use tor_llcrypto::pk::rsa::{PublicKey, RsaIdentity};

/// The object after the line `keyword` (its base64 lines between the
/// BEGIN and END lines), decoded.
fn object_after(text: &str, keyword: &str) -> Option<Vec<u8>> {
    let mut lines = text.lines().skip_while(|l| l.trim_end() != keyword);
    lines.next()?;
    if !lines.next()?.starts_with("-----BEGIN ") {
        return None;
    }
    let b64: String = lines
        .take_while(|l| !l.starts_with("-----END "))
        .map(str::trim_end)
        .collect();
    Base64::decode_vec(&b64).ok()
}

/// The certificate's signatures, checked from its text alone; its
/// identity's fingerprint if they verify.
fn independently_verified(text: &str) -> Option<RsaIdentity> {
    let identity = PublicKey::from_der(&object_after(text, "dir-identity-key")?)?;
    let signing = PublicKey::from_der(&object_after(text, "dir-signing-key")?)?;
    let fingerprint = identity.to_rsa_identity();
    let certification = "\ndir-key-certification\n";
    let signed_end = text.find(certification)? + certification.len();
    let digest = Sha1::digest(&text.as_bytes()[..signed_end]);
    identity
        .verify(&digest, &object_after(text, "dir-key-certification")?)
        .ok()?;
    signing
        .verify(
            fingerprint.as_bytes(),
            &object_after(text, "dir-key-crosscert")?,
        )
        .ok()?;
    Some(fingerprint)
}

fuzz_target!(|input: (u8, &str)| {
    let (sel, text) = input;
    let configured: Vec<RelayId> = recorded::authorities()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| sel & (1 << i) != 0)
        .map(|(_, id)| id)
        .collect();
    let during = recorded::during();
    let now = match (sel >> 3) & 3 {
        // Before the recorded certificates were published (2026-11-21).
        1 => during - Duration::from_secs(86_400),
        // After they expired (2027-11-21).
        2 => during + Duration::from_secs(2 * 365 * 86_400),
        _ => during,
    };
    let (good, bad) = parse_certs(text, &configured, now);
    let starts = text
        .lines()
        .filter(|l| l.split_ascii_whitespace().next() == Some("dir-key-certificate-version"))
        .count();
    assert_eq!(
        good.len() + bad.len(),
        starts.max(1),
        "{starts} certificates"
    );
    for c in &good {
        assert!(
            text.contains(&c.text),
            "an accepted certificate is not in the text"
        );
        let fingerprint = *c.cert.id_fingerprint();
        let id = RelayId::new(fingerprint.to_bytes());
        assert!(
            configured.contains(&id),
            "a certificate of {id} was accepted"
        );
        // Not expired; published at most CLOCK_TOLERANCE (24 h) after
        // `now`: a client whose clock is behind takes a fresh certificate,
        // as it takes a consensus (parse_certs' documented rule).
        assert!(now <= c.cert.expires(), "an expired certificate was accepted");
        assert!(
            c.cert.published() <= now + CLOCK_TOLERANCE,
            "a certificate published more than 24 h after now was accepted"
        );
        let text_start = c.text.find("dir-key-certificate-version").unwrap_or(0);
        assert_eq!(
            independently_verified(&c.text[text_start..]),
            Some(fingerprint),
            "an accepted certificate's signatures do not verify"
        );
    }
});
