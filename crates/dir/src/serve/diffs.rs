//! Consensus diffs a cache serves (dir-spec §4.5, appendix E; prop 140):
//! the cache keeps the consensuses it served before (a few, for a bounded
//! time and memory) and, when a new one comes, makes a diff from each of
//! them to it, once. A client naming one of them in
//! `X-Or-Diff-From-Consensus` (or in the `/diff/<HASH>/` URL) gets the diff
//! instead of the whole document. The diffs are made by arti's
//! `tor-consdiff` (`gen_cons_diff`), which checks each against its own
//! applier before returning it; those that fail, or are no smaller than the
//! consensus itself, are not offered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tor_consdiff::DiffSizeStrictness;

use crate::fetch::diff::DIFF_MAX_AGE_HOURS;

/// Older consensuses kept to make diffs from, at most.
pub const MAX_HISTORY: usize = 12;
/// Their text, at most (the public network's microdesc consensus is about
/// 2.5 MB: the last several hours).
pub const MAX_HISTORY_BYTES: usize = 24 << 20;
/// How old (by `valid-after`, behind the newest) a consensus a diff is made
/// from may be: what clients ask for (`try-diff-for-consensus-newer-than`,
/// 72 hours by default).
pub const MAX_AGE: Duration = Duration::from_secs(DIFF_MAX_AGE_HOURS.unsigned_abs() as u64 * 3600);

/// A consensus served before, kept to make diffs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldConsensus {
    /// SHA3-256 of its signed part: what clients name it by.
    pub digest: [u8; 32],
    /// Its text.
    pub text: Arc<str>,
    /// Its `valid-after`.
    pub valid_after: SystemTime,
}

/// A diff from an older consensus to the one held.
#[derive(Debug, PartialEq, Eq)]
pub struct CachedDiff {
    body: Arc<[u8]>,
    deflated: OnceLock<Arc<[u8]>>,
}

impl CachedDiff {
    /// The diff's text.
    pub fn body(&self) -> &Arc<[u8]> {
        &self.body
    }

    /// The text deflated, made at the first request that wants it.
    pub fn deflated(&self) -> &Arc<[u8]> {
        deflate_once(&self.deflated, &self.body)
    }
}

/// `body` deflated (zlib), made once into `cell` and kept.
pub(crate) fn deflate_once<'a>(cell: &'a OnceLock<Arc<[u8]>>, body: &[u8]) -> &'a Arc<[u8]> {
    cell.get_or_init(|| {
        Arc::from(
            crate::fetch::compress::encode(crate::fetch::Encoding::Deflate, body)
                .unwrap_or_default(),
        )
    })
}

/// Diffs from each of `sources` to `new` (whose signed part's digest is
/// `new_digest`, never a source of its own), by source digest.
pub fn make_diffs(
    sources: &[OldConsensus],
    new: &str,
    new_digest: &[u8; 32],
) -> HashMap<[u8; 32], Arc<CachedDiff>> {
    let mut out = HashMap::new();
    for old in sources {
        if &old.digest == new_digest || out.contains_key(&old.digest) {
            continue;
        }
        let Ok(diff) = tor_consdiff::gen_cons_diff(&old.text, new, DiffSizeStrictness::Apply)
        else {
            continue;
        };
        if diff.len() >= new.len() {
            continue;
        }
        out.insert(
            old.digest,
            Arc::new(CachedDiff {
                body: Arc::from(diff.as_bytes()),
                deflated: OnceLock::new(),
            }),
        );
    }
    out
}

/// `old` was replaced by a consensus valid after `newest`: keep it (unless
/// it is kept already), then drop the oldest past [`MAX_HISTORY`],
/// [`MAX_HISTORY_BYTES`] or [`MAX_AGE`] behind `newest`.
pub(crate) fn keep(history: &mut VecDeque<OldConsensus>, old: OldConsensus, newest: SystemTime) {
    if !history.iter().any(|h| h.digest == old.digest) {
        history.push_back(old);
    }
    let too_old = |h: &OldConsensus| {
        newest
            .duration_since(h.valid_after)
            .is_ok_and(|age| age > MAX_AGE)
    };
    history.retain(|h| !too_old(h));
    while history.len() > MAX_HISTORY
        || history.iter().map(|h| h.text.len()).sum::<usize>() > MAX_HISTORY_BYTES
    {
        if history.pop_front().is_none() {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
