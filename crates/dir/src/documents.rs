//! Parsing and verifying directory documents: the microdescriptor-flavoured
//! consensus (dir-spec §3.4.1, §3.9), authority key certificates (dir-spec
//! §3.1) and microdescriptors (dir-spec §3.3). Parsing is tor-netdoc's;
//! what this module adds is the trust decision: which authorities count,
//! which certificates may vouch for a signature, which times are valid and
//! which microdescriptors the consensus asked for.
//!
//! Everything here is a pure function of its inputs: `now` is passed in.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tor_checkable::{ExternallySigned, SelfSigned, TimeBound};
use tor_llcrypto::pk::rsa::RsaIdentity;
use tor_netdoc::doc::authcert::{AuthCert, AuthCertKeyIds};
use tor_netdoc::doc::microdesc::{MdDigest, Microdesc, MicrodescAndHash};
use tor_netdoc::doc::netstatus::{MdConsensus, UnvalidatedMdConsensus};

use crate::error::{DocError, DocKind};
use crate::relay::RelayId;

/// Largest document we parse, in bytes. The public network's microdesc
/// consensus is about 3 MB; a response to one microdescriptor request is far
/// smaller. Anything larger is refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// The validity period of a consensus (dir-spec §3.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// `valid-after`: the consensus was made for this time.
    pub valid_after: SystemTime,
    /// `fresh-until`: a newer one is expected after this time.
    pub fresh_until: SystemTime,
    /// `valid-until`: the consensus must not be used after this time.
    pub valid_until: SystemTime,
}

impl Lifetime {
    /// True if `now` lies within `valid-after ..= valid-until`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.valid_after <= now && now <= self.valid_until
    }
}

/// A consensus that parsed and is timely, but whose signatures have not been
/// checked yet because some authority certificates may be missing.
#[derive(Debug)]
pub struct PendingConsensus {
    unvalidated: UnvalidatedMdConsensus,
    lifetime: Lifetime,
    /// Authorities (v3 identities) that claim to have signed it.
    claimed_signers: Vec<RelayId>,
}

/// A consensus whose signatures and validity time have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedConsensus {
    /// The parsed document.
    pub consensus: MdConsensus,
    /// Its lifetime.
    pub lifetime: Lifetime,
    /// The exact text, for the cache.
    pub text: String,
}

/// A microdescriptor the consensus asked for, with the exact text that hashes
/// to its digest (kept for the cache).
#[derive(Debug, Clone)]
pub struct CheckedMicrodesc {
    /// SHA-256 of `text`: the digest listed in the consensus "m" line.
    pub digest: MdDigest,
    /// The parsed microdescriptor.
    pub md: Microdesc,
    /// The text, from "onion-key" to the end of its last line.
    pub text: String,
}

/// Refuse a document over [`MAX_DOCUMENT_BYTES`].
pub fn check_size(kind: DocKind, len: usize) -> Result<(), DocError> {
    if len > MAX_DOCUMENT_BYTES {
        return Err(DocError::TooLarge {
            kind,
            size: len,
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

fn rsa_id(id: &RelayId) -> RsaIdentity {
    RsaIdentity::from(*id.as_bytes())
}

fn relay_id(id: &RsaIdentity) -> RelayId {
    RelayId::new(id.to_bytes())
}

fn malformed(kind: DocKind, e: impl fmt::Display) -> DocError {
    DocError::Malformed {
        kind,
        detail: e.to_string(),
    }
}

/// An authority certificate that verified, with its exact text (for the
/// cache).
#[derive(Debug, Clone)]
pub struct CheckedCert {
    /// The certificate.
    pub cert: AuthCert,
    /// Its text, from "dir-key-certificate-version" to the end of its
    /// signature.
    pub text: String,
}

/// Split concatenated documents at lines whose first word is `keyword`.
fn split_at_keyword<'a>(text: &'a str, keyword: &str) -> Vec<&'a str> {
    let mut starts: Vec<usize> = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.split_ascii_whitespace().next() == Some(keyword) {
            starts.push(pos);
        }
        pos += line.len();
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        if let Some(chunk) = text.get(start..end) {
            out.push(chunk);
        }
    }
    out
}

/// Parse authority key certificates (one or many, concatenated) and keep
/// those that are well signed (dir-spec §3.1: the identity key signs the
/// whole certificate, the signing key cross-certifies the identity), not
/// expired at `now` (nor published more than a day after it), and belong
/// to one of `authorities` (v3 identities). Returns the good certificates
/// and one error for each rejected one, so that a bad certificate in a
/// batch does not spoil the others.
pub fn parse_certs(
    text: &str,
    authorities: &[RelayId],
    now: SystemTime,
) -> (Vec<CheckedCert>, Vec<DocError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    if let Err(e) = check_size(DocKind::AuthorityCert, text.len()) {
        return (good, vec![e]);
    }
    for chunk in split_at_keyword(text, "dir-key-certificate-version") {
        match check_cert(AuthCert::parse(chunk), authorities, now) {
            Ok(cert) => good.push(CheckedCert {
                cert,
                text: chunk.to_owned(),
            }),
            Err(e) => bad.push(e),
        }
    }
    if good.is_empty() && bad.is_empty() {
        bad.push(malformed(DocKind::AuthorityCert, "no certificate found"));
    }
    (good, bad)
}

fn check_cert(
    item: Result<tor_netdoc::doc::authcert::UncheckedAuthCert, tor_netdoc::Error>,
    authorities: &[RelayId],
    now: SystemTime,
) -> Result<AuthCert, DocError> {
    let unchecked = item.map_err(|e| malformed(DocKind::AuthorityCert, e))?;
    let timed = unchecked
        .check_signature()
        .map_err(|e| DocError::BadSignature {
            kind: DocKind::AuthorityCert,
            detail: e.to_string(),
        })?;
    // C-tor checks only that a certificate has not expired
    // (networkstatus.c: `cert->expires < now`); a clock behind a freshly
    // published one is tolerated as far as it is for the consensus.
    let cert = timed
        .extend_start_bound(crate::bootstrap::CLOCK_TOLERANCE)
        .if_valid_at(&now)
        .map_err(|e| DocError::NotTimely {
            kind: DocKind::AuthorityCert,
            detail: e.to_string(),
        })?;
    let id = relay_id(cert.id_fingerprint());
    if !authorities.contains(&id) {
        return Err(DocError::UntrustedCert { id });
    }
    Ok(cert)
}

/// Parse a microdescriptor-flavoured consensus and check its validity time
/// against `now` (dir-spec §3.4.1: usable from valid-after to valid-until),
/// and that it claims signatures from a majority of `authorities`. The
/// signatures themselves are checked by [`PendingConsensus::verify`] once
/// the certificates are at hand.
pub fn parse_consensus(
    text: &str,
    authorities: &[RelayId],
    now: SystemTime,
) -> Result<PendingConsensus, DocError> {
    parse_consensus_within(text, authorities, now, Duration::ZERO)
}

/// As [`parse_consensus`], but a consensus up to `tolerance` before its
/// valid-after or after its valid-until is taken too (C-tor's 24 hours,
/// [`CLOCK_TOLERANCE`](crate::bootstrap::CLOCK_TOLERANCE)); the caller
/// compares [`PendingConsensus::lifetime`] with its clock. Beyond the
/// tolerance the error names how far off the clock is.
pub fn parse_consensus_within(
    text: &str,
    authorities: &[RelayId],
    now: SystemTime,
    tolerance: Duration,
) -> Result<PendingConsensus, DocError> {
    check_size(DocKind::Consensus, text.len())?;
    if !text.starts_with("network-status-version 3 microdesc") {
        return Err(malformed(
            DocKind::Consensus,
            "not a microdesc-flavoured consensus (expected \"network-status-version 3 microdesc\")",
        ));
    }
    let (_signed, _rest, unchecked) =
        MdConsensus::parse(text).map_err(|e| malformed(DocKind::Consensus, e))?;
    let unvalidated = if tolerance.is_zero() {
        unchecked
            .if_valid_at(&now)
            .map_err(|e| DocError::NotTimely {
                kind: DocKind::Consensus,
                detail: e.to_string(),
            })?
    } else {
        let lt = unchecked.dangerously_peek().peek_lifetime();
        let (valid_after, valid_until) = (lt.valid_after(), lt.valid_until());
        unchecked
            .extend_start_bound(tolerance)
            .extend_end_bound(tolerance)
            .if_valid_at(&now)
            .map_err(|_| DocError::NotTimely {
                kind: DocKind::Consensus,
                detail: skew_detail(valid_after, valid_until, now, tolerance),
            })?
    };
    let lt = unvalidated.peek_lifetime();
    let lifetime = Lifetime {
        valid_after: lt.valid_after(),
        fresh_until: lt.fresh_until(),
        valid_until: lt.valid_until(),
    };
    let unvalidated = unvalidated.set_n_authorities(authorities.len());
    let claimed_signers = claimed_signers(text, authorities);
    let pending = PendingConsensus {
        unvalidated,
        lifetime,
        claimed_signers,
    };
    pending.check_claimed_majority(authorities)?;
    Ok(pending)
}

/// Why a consensus lies beyond the clock tolerance, with the times.
fn skew_detail(
    valid_after: SystemTime,
    valid_until: SystemTime,
    now: SystemTime,
    tolerance: Duration,
) -> String {
    use crate::bootstrap::Hms;
    use crate::serve::date::format_http_date as date;
    let off = match (
        valid_after.duration_since(now),
        now.duration_since(valid_until),
    ) {
        (Ok(d), _) => format!("our clock is {} before its valid-after", Hms(d)),
        (_, Ok(d)) => format!("our clock is {} past its valid-until", Hms(d)),
        _ => "our clock is within it".to_owned(),
    };
    format!(
        "valid from {} to {}, and {off} ({}): beyond the {} tolerance for clock skew; check the system clock",
        date(valid_after),
        date(valid_until),
        date(now),
        Hms(tolerance)
    )
}

/// The configured authorities named by "directory-signature" lines
/// (dir-spec §3.4.1), each counted once.
fn claimed_signers(text: &str, authorities: &[RelayId]) -> Vec<RelayId> {
    let mut out: Vec<RelayId> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("directory-signature") {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        // "directory-signature [Algorithm] identity signing-key-digest"
        let ident = match rest.as_slice() {
            [_, ident, _] | [ident, _] => *ident,
            _ => continue,
        };
        if let Ok(id) = ident.parse::<RelayId>()
            && authorities.contains(&id)
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out
}

/// dir-spec §3.4.1 / C-tor: a consensus needs valid signatures from more
/// than half of the authorities the client believes in.
pub fn signatures_needed(n_authorities: usize) -> usize {
    n_authorities / 2 + 1
}

impl PendingConsensus {
    /// The consensus' validity period.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    fn check_claimed_majority(&self, authorities: &[RelayId]) -> Result<(), DocError> {
        let needed = signatures_needed(authorities.len());
        let rsa: Vec<RsaIdentity> = authorities.iter().map(rsa_id).collect();
        let refs: Vec<&RsaIdentity> = rsa.iter().collect();
        if self.claimed_signers.len() < needed || !self.unvalidated.authorities_are_correct(&refs) {
            return Err(DocError::TooFewSignatures {
                found: self.claimed_signers.len(),
                configured: authorities.len(),
                needed,
            });
        }
        Ok(())
    }

    /// Certificates (identity, signing key) of configured authorities that
    /// signed this consensus and that are not among `have`. Fetch these from
    /// `/tor/keys/fp-sk/` (dir-spec §4.3).
    pub fn missing_certs(&self, have: &[AuthCert], authorities: &[RelayId]) -> Vec<AuthCertKeyIds> {
        let known: HashSet<AuthCertKeyIds> = have.iter().map(AuthCert::key_ids).collect();
        let mut out: Vec<AuthCertKeyIds> = Vec::new();
        for ids in self.unvalidated.signing_cert_ids() {
            let trusted = authorities.contains(&relay_id(&ids.id_fingerprint));
            if trusted && !known.contains(&ids) && !out.contains(&ids) {
                out.push(ids);
            }
        }
        out
    }

    /// Configured authorities that claim to have signed and whose
    /// certificate is among `certs`: the most signatures
    /// [`Self::verify`] can check.
    pub fn signers_with_certs(&self, certs: &[AuthCert]) -> usize {
        self.claimed_signers
            .iter()
            .filter(|id| certs.iter().any(|c| relay_id(c.id_fingerprint()) == **id))
            .count()
    }

    /// Check the signatures with the certificates of configured authorities:
    /// a majority of `authorities` must have signed with a key certified by
    /// one of `certs` (certificates of other identities are ignored).
    pub fn verify(
        self,
        text: &str,
        certs: &[AuthCert],
        authorities: &[RelayId],
    ) -> Result<VerifiedConsensus, DocError> {
        let trusted: Vec<AuthCert> = certs
            .iter()
            .filter(|c| authorities.contains(&relay_id(c.id_fingerprint())))
            .cloned()
            .collect();
        let needed = signatures_needed(authorities.len());
        let lifetime = self.lifetime;
        let usable = self.signers_with_certs(&trusted);
        if usable < needed {
            return Err(DocError::MissingCerts {
                have: usable,
                needed,
            });
        }
        let consensus = self.unvalidated.check_signature(&trusted).map_err(|e| {
            DocError::BadSignature {
                kind: DocKind::Consensus,
                detail: format!(
                    "fewer than {needed} of the {} configured authorities' signatures verify ({e})",
                    authorities.len()
                ),
            }
        })?;
        Ok(VerifiedConsensus {
            consensus,
            lifetime,
            text: text.to_owned(),
        })
    }
}

/// Split concatenated microdescriptors into the texts that each hash to the
/// digest (dir-spec §3.3: a microdescriptor starts with its "onion-key"
/// line and runs to the start of the next one).
pub fn split_microdescs(text: &str) -> Vec<&str> {
    split_at_keyword(text, "onion-key")
}

/// Parse microdescriptors and keep those whose SHA-256 digest is in `wanted`
/// (the digests the verified consensus lists). A microdescriptor whose text
/// was altered has another digest and is refused: that is the whole of its
/// authentication (dir-spec §3.3).
pub fn parse_microdescs(
    text: &str,
    wanted: &HashSet<MdDigest>,
) -> (Vec<CheckedMicrodesc>, Vec<DocError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    if let Err(e) = check_size(DocKind::Microdesc, text.len()) {
        return (good, vec![e]);
    }
    for chunk in split_microdescs(text) {
        let digest: MdDigest = Sha256::digest(chunk.as_bytes()).into();
        if !wanted.contains(&digest) {
            bad.push(DocError::UnlistedMicrodesc {
                digest: hex::encode(digest),
            });
            continue;
        }
        match MicrodescAndHash::parse(chunk) {
            Ok(parsed) if parsed.sha256 == digest => good.push(CheckedMicrodesc {
                digest,
                md: parsed.md,
                text: chunk.to_owned(),
            }),
            Ok(_) => bad.push(malformed(
                DocKind::Microdesc,
                "parser's digest differs from the text's SHA-256",
            )),
            Err(e) => bad.push(malformed(DocKind::Microdesc, e)),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority() {
        assert_eq!(signatures_needed(1), 1);
        assert_eq!(signatures_needed(3), 2);
        assert_eq!(signatures_needed(9), 5);
    }

    #[test]
    fn microdescs_split_at_onion_key() {
        let text = "onion-key\nntor-onion-key AAAA\nonion-key\nntor-onion-key BBBB\nid ed25519 x\n";
        let parts = split_microdescs(text);
        assert_eq!(
            parts,
            vec![
                "onion-key\nntor-onion-key AAAA\n",
                "onion-key\nntor-onion-key BBBB\nid ed25519 x\n"
            ]
        );
        assert!(split_microdescs("garbage\n").is_empty());
    }

    #[test]
    fn unlisted_microdesc_is_refused() {
        let (good, bad) = parse_microdescs("onion-key\nntor-onion-key AAAA\n", &HashSet::new());
        assert!(good.is_empty());
        assert!(matches!(
            bad.as_slice(),
            [DocError::UnlistedMicrodesc { .. }]
        ));
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let big = "x".repeat(MAX_DOCUMENT_BYTES + 1);
        assert!(matches!(
            parse_consensus(&big, &[], SystemTime::now()),
            Err(DocError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_consensus_is_malformed() {
        let err = parse_consensus(
            "network-status-version 3 microdesc\nnonsense\n",
            &[],
            SystemTime::now(),
        );
        assert!(matches!(err, Err(DocError::Malformed { .. })), "{err:?}");
        let err = parse_consensus("network-status-version 3\n", &[], SystemTime::now());
        assert!(matches!(err, Err(DocError::Malformed { .. })), "{err:?}");
    }

    #[test]
    fn garbage_certs_are_reported() {
        let (good, bad) = parse_certs("dir-key-certificate-version 3\n", &[], SystemTime::now());
        assert!(good.is_empty());
        assert!(!bad.is_empty());
    }
}
