//! What the bootstrap hands the driver: requests to make, progress, and
//! events to act on or log.

use std::fmt;
use std::time::SystemTime;

use crate::documents::Lifetime;
use crate::error::{DocError, DocKind};
use crate::fetch::Encoding;

use super::sources::DirSource;
use super::timing::ClockSkew;

/// Identifies a request handed out by
/// [`DirBootstrap::poll_request`](super::DirBootstrap::poll_request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub(crate) u64);

/// An HTTP GET the driver should perform: send `request` to `source`
/// (over BEGIN_DIR on a one-hop circuit, or to a DirPort), read the answer
/// until the stream ends, at most `max_bytes`, and hand it to
/// [`DirBootstrap::handle_http`](super::DirBootstrap::handle_http).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRequest {
    /// Answer with this id.
    pub id: RequestId,
    /// Whom to ask, and how.
    pub source: DirSource,
    /// The request path (dir-spec §4), e.g.
    /// `/tor/status-vote/current/consensus-microdesc/0232AF+14C131.z`.
    pub path: String,
    /// The request's bytes (head and blank line).
    pub request: Vec<u8>,
    /// What is being fetched.
    pub kind: DocKind,
    /// The most response bytes to read (head and compressed body); more is
    /// a failed fetch.
    pub max_bytes: usize,
}

/// The bootstrap phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Nothing fetched yet.
    Starting,
    /// Waiting for a consensus.
    Consensus,
    /// Waiting for authority certificates to check the consensus.
    Certificates,
    /// Fetching the microdescriptors the consensus lists.
    Microdescriptors,
    /// Every microdescriptor is here (or was given up on).
    Done,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Consensus => "loading consensus",
            Self::Certificates => "loading authority certificates",
            Self::Microdescriptors => "loading microdescriptors",
            Self::Done => "done",
        })
    }
}

/// How far the bootstrap is, in the manner of tor's "Bootstrapped 45%".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// 0 to 100.
    pub percent: u8,
    /// The current phase.
    pub phase: Phase,
    /// Microdescriptors held and listed.
    pub microdescs: (usize, usize),
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bootstrapped {}% ({})", self.percent, self.phase)?;
        if self.phase >= Phase::Microdescriptors {
            write!(
                f,
                ": {} of {} microdescriptors",
                self.microdescs.0, self.microdescs.1
            )?;
        }
        Ok(())
    }
}

/// Something the driver should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEvent {
    /// Progress changed.
    Progress(Progress),
    /// A verified document to write to the cache, replacing the file of its
    /// kind. Only verified documents are ever handed out here, so the cache
    /// never holds worse than what it held.
    Store {
        /// Which file.
        kind: DocKind,
        /// Its new content.
        text: String,
    },
    /// A response arrived and its body was decoded (before the documents in
    /// it are checked): for figures of bytes and compression.
    Fetched {
        /// Who answered.
        source: DirSource,
        /// What was asked for.
        kind: DocKind,
        /// How the body came.
        encoding: Encoding,
        /// Response bytes read (head and body as sent).
        wire_bytes: usize,
        /// The decoded body's bytes.
        body_bytes: usize,
        /// The body is a consensus diff.
        diff: bool,
    },
    /// A document was refused. [`DocError::Outdated`] is a consensus no
    /// newer than the one in use: not a failure of its source, and the next
    /// fetch waits for the next consensus' time (dir-spec §5.1).
    Rejected {
        /// Where it came from (`None`: the cache).
        source: Option<DirSource>,
        /// Why.
        error: DocError,
    },
    /// A fetch failed (connection, HTTP status, size, or a document
    /// refused): the source is avoided and the document's download
    /// schedule backs off (dir-spec §5.5).
    FetchFailed {
        /// The source.
        source: DirSource,
        /// What the driver reported, or why the document was refused.
        error: String,
        /// The earliest time this kind of document is asked for again.
        retry_at: SystemTime,
    },
    /// A consensus outside its validity period (but within
    /// [`CLOCK_TOLERANCE`](super::CLOCK_TOLERANCE) of it) was adopted: our
    /// clock is off, or the consensus is stale. Worth a warning naming the
    /// skew (C-tor: "Our clock is N behind the time published in the
    /// consensus").
    ClockSkew {
        /// Where the consensus came from (`None`: the cache).
        source: Option<DirSource>,
        /// How far our clock lies outside the consensus' validity.
        skew: ClockSkew,
        /// The consensus' validity period.
        lifetime: Lifetime,
    },
    /// A new consensus is in use.
    NewConsensus {
        /// Its valid-after time.
        valid_after: SystemTime,
        /// When the next one will be fetched.
        refresh_at: SystemTime,
    },
}
