//! Consensus diffs (dir-spec §4.4 and appendix "Consensus diff format",
//! proposal 140): a client that holds a consensus names it in
//! `X-Or-Diff-From-Consensus` by the SHA3-256 of its signed part; a cache
//! may answer with an ed-style diff from it to its newest consensus, which
//! we apply with arti's `tor-consdiff` and check against the digest the diff
//! names for its result. The result is then an ordinary consensus: parsed
//! and its signatures checked like any other.

use digest::Digest as _;
use tor_consdiff::DiffSizeStrictness;
use tor_llcrypto::d::Sha3_256;

use crate::error::{DocError, DocKind};

/// The request header that names the consensus we hold.
pub const DIFF_HEADER: &str = "X-Or-Diff-From-Consensus";

/// Ask for a diff only from a consensus at most this old (C-tor's
/// `try-diff-for-consensus-newer-than` consensus parameter, in hours).
pub const DIFF_PARAM: &str = "try-diff-for-consensus-newer-than";
/// Its default: 72 hours.
pub const DIFF_MAX_AGE_HOURS: i32 = 72;

/// The keyword that starts the signatures: what is hashed ends with it.
const SIGNATURE_START: &str = "directory-signature ";

/// SHA3-256 of a consensus "as signed": its text up to and including the
/// first `directory-signature ` (dir-spec §3.4.1, C-tor
/// `digest_sha3_as_signed`). `None` if it has no signature line.
pub fn digest_as_signed(consensus: &str) -> Option<[u8; 32]> {
    let at = if consensus.starts_with(SIGNATURE_START) {
        0
    } else {
        consensus.find(&format!("\n{SIGNATURE_START}"))? + 1
    };
    let signed = consensus.get(..at + SIGNATURE_START.len())?;
    Some(Sha3_256::digest(signed.as_bytes()).into())
}

/// True if `body` is a consensus diff rather than a consensus.
pub fn is_diff(body: &str) -> bool {
    tor_consdiff::looks_like_diff(body)
}

/// Apply `diff` to `base` (the consensus we hold): the diff must name
/// `base`'s digest, apply cleanly, stay within a sane size for its base,
/// and produce a document with the digest it announces. Any failure is
/// [`DocError::BadDiff`], and the caller fetches the full consensus.
pub fn apply(base: &str, diff: &str) -> Result<String, DocError> {
    let bad = |detail: String| DocError::BadDiff { detail };
    let from =
        digest_as_signed(base).ok_or_else(|| bad("the consensus held has no signature".into()))?;
    let result = tor_consdiff::apply_diff(base, diff, Some(from), DiffSizeStrictness::Apply)
        .map_err(|e| bad(e.to_string()))?;
    result.check_digest().map_err(|e| bad(e.to_string()))?;
    let text = result.to_string();
    crate::documents::check_size(DocKind::Consensus, text.len())?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    const BASE: &str = "network-status-version 3 microdesc\nvalid-after 1\nr a\nr b\ndirectory-footer\ndirectory-signature X Y\nsig\n";
    const TARGET: &str = "network-status-version 3 microdesc\nvalid-after 2\nr a\nr c\ndirectory-footer\ndirectory-signature X Y\nsig2\n";

    fn diff() -> String {
        tor_consdiff::gen_cons_diff(BASE, TARGET, DiffSizeStrictness::None).unwrap()
    }

    #[test]
    fn a_diff_applies_to_its_base_only() {
        assert!(is_diff(&diff()));
        assert!(!is_diff(TARGET));
        assert_eq!(apply(BASE, &diff()).unwrap(), TARGET);
        let other = BASE.replace("r b", "r z");
        let e = apply(&other, &diff()).unwrap_err();
        assert!(matches!(e, DocError::BadDiff { .. }), "{e}");
    }

    #[test]
    fn digest_covers_the_text_to_the_first_signature_keyword() {
        let d = digest_as_signed(BASE).unwrap();
        let at = BASE.find("directory-signature ").unwrap() + "directory-signature ".len();
        assert_eq!(
            d,
            <[u8; 32]>::from(Sha3_256::digest(&BASE.as_bytes()[..at]))
        );
        // The signatures do not count.
        assert_eq!(digest_as_signed(&BASE.replace("sig\n", "other\n")), Some(d));
        assert_eq!(digest_as_signed("no signature\n"), None);
    }

    /// Cut short, altered or garbage: an error, never a panic.
    #[test]
    fn truncated_and_malformed_diffs_are_refused() {
        let good = diff();
        // Less its final newline it is the same diff.
        for n in 0..good.trim_end().len() {
            if let Ok(t) = apply(BASE, &good[..n]) {
                panic!("a diff cut at {n} of {} applied: {t:?}", good.len());
            }
        }
        for bad in [
            good.replace("hash ", "hash 00"),
            good.replacen('c', "q", 1),
            good.replace("d\n", "9999d\n"),
            "network-status-diff-version 1\nhash zz zz\n".to_owned(),
            "network-status-diff-version 1\n".to_owned(),
            format!("{good}1,$d\n"),
        ] {
            assert!(apply(BASE, &bad).is_err(), "{bad:?}");
        }
    }
}
