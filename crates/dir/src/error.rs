//! Errors of this crate, one enum per concern plus [`enum@Error`] that wraps them
//! all for callers that do not care which part failed.

use std::fmt;

use thiserror::Error;

use crate::relay::RelayId;
use crate::weights::Position;

/// Any error of `braid-dir`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A relay identity could not be parsed.
    #[error(transparent)]
    Id(#[from] IdParseError),
    /// A port-policy summary could not be parsed.
    #[error(transparent)]
    Policy(#[from] PolicyParseError),
    /// The consensus bandwidth weights could not be parsed.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// No path satisfying the restrictions exists.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The guard set failed.
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// A hex relay identity was malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid relay identity {input:?}: expected {expected} hex digits")]
pub struct IdParseError {
    /// The rejected text (truncated to 80 characters).
    pub input: String,
    /// How many hex digits the identity needs.
    pub expected: usize,
}

/// An entry of a node list (`entry_nodes`, ...) was neither a fingerprint
/// nor a nickname.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "node {0:?}: expected a relay fingerprint (40 hex digits, optionally after $) or a nickname (1 to 19 letters and digits)"
)]
pub struct NodeSpecError(pub String);

/// A microdescriptor port-policy summary ("accept 80,443") was malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyParseError {
    /// The summary does not start with `accept` or `reject`.
    #[error("port policy must start with \"accept\" or \"reject\", found {0:?}")]
    BadKeyword(String),
    /// The summary has no port list, or more than one.
    #[error("port policy needs exactly one port list after the keyword")]
    BadShape,
    /// One element of the port list is not a port or a range `lo-hi` with
    /// `1 <= lo <= hi <= 65535`.
    #[error("invalid port or port range {0:?} in port policy")]
    BadRange(String),
}

/// The `bandwidth-weights` line of a consensus was malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// An item is not of the form `Keyword=Int32` (dir-spec §3.4.1).
    #[error("bandwidth weight item {0:?} is not of the form Keyword=Int32")]
    Malformed(String),
    /// A known weight appeared twice.
    #[error("bandwidth weight {0} appears twice")]
    Duplicate(String),
    /// A known weight is negative or larger than the weight scale.
    #[error("bandwidth weight {key}={value} is outside 0..={scale}")]
    OutOfRange {
        /// The weight's keyword (e.g. `Wgg`).
        key: String,
        /// The value found.
        value: i64,
        /// The weight scale in force (`bwweightscale`, normally 10000).
        scale: u32,
    },
    /// The weight scale is not in `1..=i32::MAX` (dir-spec §3.8.3).
    #[error("bandwidth weight scale {0} is outside 1..=2147483647")]
    BadScale(u64),
}

/// Why no path could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    /// No relay can fill a position.
    #[error("no {position} relay available that is {needs}; {rejected}")]
    NoCandidate {
        /// The position we tried to fill.
        position: Position,
        /// A description of the requirements, e.g. "Running, Valid, Exit,
        /// allowing port 80 and supporting Conflux=1".
        needs: String,
        /// Why the relays we looked at were turned down.
        rejected: Box<Rejections>,
    },
    /// The guard given by the caller cannot be used in this path.
    #[error("guard {guard} cannot be used: {reason}")]
    UnusableGuard {
        /// The guard's identity.
        guard: RelayId,
        /// What it lacks.
        reason: String,
    },
    /// A Conflux set was asked for with no legs.
    #[error("a conflux set needs at least one leg")]
    NoLegs,
    /// Exits were found, but none could carry the requested number of legs.
    #[error("no exit could carry {legs} conflux legs (tried {tried} exits); last failure: {last}")]
    NotEnoughLegs {
        /// How many legs were requested.
        legs: usize,
        /// How many exits were tried.
        tried: usize,
        /// Why the last exit tried failed.
        last: Box<PathError>,
    },
}

/// Counts of the reasons why relays were rejected for a position, reported
/// in [`PathError::NoCandidate`]. Each relay is counted once, under the first
/// rule it broke.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Relays considered.
    pub total: usize,
    /// Lacking Running or Valid.
    pub not_running_or_valid: usize,
    /// Lacking Fast although the path needs it.
    pub not_fast: usize,
    /// Lacking Stable although the path needs it.
    pub not_stable: usize,
    /// Flagged MiddleOnly but considered for another position.
    pub middle_only: usize,
    /// Lacking the Guard flag (guard position).
    pub not_guard: usize,
    /// Lacking the Exit flag (exit position).
    pub not_exit: usize,
    /// Flagged BadExit (exit position).
    pub bad_exit: usize,
    /// Exit policy rejects the port (or every port).
    pub port_rejected: usize,
    /// Missing a required subprotocol.
    pub missing_protocols: usize,
    /// The same relay is already in the path, or was excluded by the caller.
    pub already_used: usize,
    /// In the same family as a relay already in the path.
    pub same_family: usize,
    /// In the same /16 as a relay already in the path.
    pub same_subnet: usize,
    /// Not in the configured node list of the position (`entry_nodes`,
    /// `middle_nodes`, `exit_nodes`).
    pub not_listed: usize,
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total == 0 {
            return write!(f, "the relay list is empty");
        }
        write!(f, "of {} relays", self.total)?;
        let parts = [
            (self.not_listed, "not in the configured node list"),
            (self.not_running_or_valid, "not Running and Valid"),
            (self.not_fast, "not Fast"),
            (self.not_stable, "not Stable"),
            (self.middle_only, "MiddleOnly"),
            (self.not_guard, "without the Guard flag"),
            (self.not_exit, "without the Exit flag"),
            (self.bad_exit, "BadExit"),
            (self.port_rejected, "rejecting the port"),
            (self.missing_protocols, "lacking the protocols"),
            (self.already_used, "already used"),
            (self.same_family, "in the family of a chosen relay"),
            (self.same_subnet, "in the /16 of a chosen relay"),
        ];
        let mut sep = ": ";
        for (n, what) in parts {
            if n > 0 {
                write!(f, "{sep}{n} {what}")?;
                sep = ", ";
            }
        }
        Ok(())
    }
}

/// Errors of the guard set.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GuardError {
    /// No guard can be used right now.
    #[error("no usable guard: {0}")]
    NoUsableGuard(String),
    /// The guard is not in the sampled set.
    #[error("guard {0} is not in the sampled guard set")]
    UnknownGuard(RelayId),
    /// The persisted state could not be read; start with a fresh
    /// [`GuardSet`](crate::GuardSet).
    #[error("corrupt guard state: {0}")]
    CorruptState(String),
    /// The state could not be serialized.
    #[error("cannot serialize guard state: {0}")]
    Serialize(String),
}

/// Which kind of directory document an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// The microdesc-flavoured consensus.
    Consensus,
    /// An authority key certificate.
    AuthorityCert,
    /// A microdescriptor.
    Microdesc,
}

impl fmt::Display for DocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Consensus => "consensus",
            Self::AuthorityCert => "authority certificate",
            Self::Microdesc => "microdescriptor",
        })
    }
}

/// A directory document was refused. Every variant but [`DocError::TooLarge`]
/// is the fault of whoever produced or altered the document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DocError {
    /// The document does not parse.
    #[error("malformed {kind}: {detail}")]
    Malformed {
        /// The document's kind.
        kind: DocKind,
        /// The parser's complaint.
        detail: String,
    },
    /// The document is outside its validity period.
    #[error("{kind} is not valid now: {detail}")]
    NotTimely {
        /// The document's kind.
        kind: DocKind,
        /// Expired or not yet valid, and by how much.
        detail: String,
    },
    /// A signature does not verify.
    #[error("{kind} has a bad signature: {detail}")]
    BadSignature {
        /// The document's kind.
        kind: DocKind,
        /// What failed.
        detail: String,
    },
    /// The consensus does not even claim enough signatures.
    #[error(
        "consensus is signed by {found} of the {configured} configured authorities; it needs {needed}"
    )]
    TooFewSignatures {
        /// Configured authorities named in its signature lines.
        found: usize,
        /// Authorities configured.
        configured: usize,
        /// The majority required.
        needed: usize,
    },
    /// Not enough certificates of configured authorities are at hand to
    /// check a majority of signatures.
    #[error("certificates of only {have} signing authorities are known; {needed} are needed")]
    MissingCerts {
        /// Signing authorities whose certificate we have.
        have: usize,
        /// The majority required.
        needed: usize,
    },
    /// A certificate belongs to an identity that is not a configured
    /// authority.
    #[error("authority certificate of {id} is not from a configured authority")]
    UntrustedCert {
        /// The certificate's identity.
        id: RelayId,
    },
    /// A microdescriptor's digest is not listed in the consensus: it was
    /// altered, or never asked for.
    #[error("microdescriptor with digest {digest} is not listed in the consensus")]
    UnlistedMicrodesc {
        /// Hex SHA-256 of its text.
        digest: String,
    },
    /// A consensus is not newer than the one in use (a replay).
    #[error("consensus valid-after is not newer than the one in use")]
    Outdated,
    /// A consensus diff that does not apply to the consensus held, or
    /// whose result is not the document it announces (dir-spec §4.4): the
    /// full consensus is fetched instead.
    #[error("consensus diff refused: {detail}")]
    BadDiff {
        /// What was wrong.
        detail: String,
    },
    /// A document exceeds the size limit and was not parsed.
    #[error("{kind} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The document's kind.
        kind: DocKind,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// A directory request that cannot be answered normally, or a document the
/// directory cache refuses ([`serve`](crate::serve)). The kind says what
/// the caller does: [`ServeError::closes_stream`] ends the stream without an
/// answer, a `BadRequestLine` is answered 400, cache errors leave the cache
/// as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The request head passed the limit without ending (C-tor:
    /// "Request too large ... Closing", `MAX_HEADERS_SIZE`).
    #[error("request head longer than {limit} bytes")]
    HeadTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The request line is not `METHOD URL HTTP/1.x` (answered 400).
    #[error("malformed request line")]
    BadRequestLine,
    /// Neither GET nor POST (C-tor closes the connection).
    #[error("unknown HTTP method {method:?}")]
    UnknownMethod {
        /// The first word of the request (truncated to 16 characters).
        method: String,
    },
    /// The cache serves only the microdesc-flavoured consensus.
    #[error("not a microdesc-flavoured consensus")]
    NotMicrodescConsensus,
    /// A document over the size limit.
    #[error("document of {size} bytes over the limit of {limit}")]
    DocumentTooLarge {
        /// Its size, bytes.
        size: usize,
        /// The limit, bytes.
        limit: usize,
    },
    /// The microdescriptors would pass the cache's byte budget.
    #[error("microdescriptor cache full ({limit} bytes)")]
    CacheFull {
        /// The budget, bytes.
        limit: usize,
    },
}

impl ServeError {
    /// The stream ends without an answer (C-tor closes such a
    /// connection).
    pub fn closes_stream(&self) -> bool {
        matches!(self, Self::HeadTooLarge { .. } | Self::UnknownMethod { .. })
    }
}
