//! The relay's directory cache (C-tor's `DirCache 1`, dir-spec §4, §6):
//! the microdesc consensus the relay fetches anyway (`consensus`), the
//! authorities' certificates that verified it, and the microdescriptors it
//! lists, fetched from the authorities' DirPorts; served over BEGIN_DIR
//! streams (tor-spec §6.2) by braid-dir's sans-IO `serve` module. With it
//! the descriptor says `tunnelled-dir-server`, the authorities vote V2Dir,
//! and C-tor clients take the relay as a guard and a directory guard.
//!
//! - `fetch`: filling the cache after each consensus fetch.
//! - `streams`: the BEGIN_DIR streams of the node task.

mod fetch;
mod streams;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use braid_dir::serve::{DirCache, DocType, Outcome};

pub(crate) use fetch::refresh;
pub(crate) use streams::DirStreams;

/// The cache and its counters, shared by the fetcher and the node task
/// (each holds a lock only while it reads or changes the cache, never
/// across an await).
#[derive(Debug, Default)]
pub(crate) struct DirShared {
    /// The documents served.
    pub(crate) cache: RwLock<DirCache>,
    /// What was served and fetched.
    pub(crate) stats: DirStats,
}

/// Counters of the directory cache, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct DirStats {
    /// Answers by document kind and status.
    answers: Mutex<BTreeMap<(DocType, u16), u64>>,
    /// Answer bytes (heads and bodies) handed to streams.
    pub(crate) bytes: AtomicU64,
    /// Streams ended without an answer (malformed or stalled requests,
    /// too many streams).
    pub(crate) closed: AtomicU64,
    /// Directory streams open.
    pub(crate) open: AtomicU64,
    /// Microdescriptor requests to authorities that worked.
    pub(crate) md_fetches: AtomicU64,
    /// Those that failed.
    pub(crate) md_fetches_failed: AtomicU64,
}

impl DirStats {
    /// Count what became of a request.
    pub(crate) fn record(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Answered { doc, status, bytes } => {
                let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
                *answers.entry((*doc, *status)).or_default() += 1;
                self.bytes
                    .fetch_add(u64::try_from(*bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            Outcome::Closed { .. } => {
                self.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The directory cache's figures, for the metrics page.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DirFigures {
    /// Answers by document kind and status.
    pub(crate) answers: Vec<(DocType, u16, u64)>,
    /// Answer bytes handed to streams.
    pub(crate) bytes: u64,
    /// Streams ended without an answer.
    pub(crate) closed: u64,
    /// Directory streams open.
    pub(crate) open: u64,
    /// Microdescriptor fetches that worked and failed.
    pub(crate) md_fetches: (u64, u64),
    /// Microdescriptors held and their bytes.
    pub(crate) microdescs: (usize, usize),
    /// Certificates held.
    pub(crate) certs: usize,
    /// `valid-after` of the consensus served.
    pub(crate) consensus_valid_after: Option<SystemTime>,
}

impl DirShared {
    /// The figures now.
    pub(crate) fn figures(&self) -> DirFigures {
        let s = &self.stats;
        let answers = s
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(&(doc, status), &n)| (doc, status, n))
            .collect();
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        DirFigures {
            answers,
            bytes: s.bytes.load(Ordering::Relaxed),
            closed: s.closed.load(Ordering::Relaxed),
            open: s.open.load(Ordering::Relaxed),
            md_fetches: (
                s.md_fetches.load(Ordering::Relaxed),
                s.md_fetches_failed.load(Ordering::Relaxed),
            ),
            microdescs: (cache.n_microdescs(), cache.microdesc_bytes()),
            certs: cache.certs().len(),
            consensus_valid_after: cache.consensus().map(|c| c.lifetime().valid_after),
        }
    }
}
