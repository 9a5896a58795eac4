//! Errors of the client drivers, one enum per concern.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use braid_core::stream::Socks5Reply;
use thiserror::Error;

use crate::channel::ChannelDriverError;

/// The configuration file could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid config {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// A value is wrong.
    #[error("invalid config {path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// An HTTP fetch from a DirPort, or over BEGIN_DIR from a relay, failed.
/// These are the network's or the server's doing; the bootstrap retries
/// elsewhere.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting, writing or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("{addr}: no complete answer within {timeout:?}")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// The status was not 200.
    #[error("{addr}: HTTP status {status} {reason}")]
    Status {
        /// The server.
        addr: SocketAddr,
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The response is not HTTP we understand.
    #[error("{addr}: malformed HTTP response: {detail}")]
    Malformed {
        /// The server.
        addr: SocketAddr,
        /// What is wrong.
        detail: String,
    },
    /// The body exceeds the limit (resource limit: we stop reading).
    #[error("{addr}: body exceeds {limit} bytes")]
    TooLarge {
        /// The server.
        addr: SocketAddr,
        /// The limit.
        limit: usize,
    },
    /// The channel to a relay asked over BEGIN_DIR failed: unreachable,
    /// or not the relay we meant (its CERTS do not prove the identity).
    #[error(transparent)]
    Channel(#[from] ChannelDriverError),
    /// The one-hop circuit or its BEGIN_DIR stream failed.
    #[error("{addr}: {source}")]
    BeginDir {
        /// The relay's ORPort.
        addr: SocketAddr,
        /// What failed.
        source: braid_core::circuit::BeginDirError,
    },
}

/// Errors of the client as a whole.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The directory bootstrap did not finish in time.
    #[error(
        "directory bootstrap incomplete after {elapsed:?}: {progress}; last problem: {last_problem}"
    )]
    BootstrapTimeout {
        /// How long we tried.
        elapsed: Duration,
        /// How far it got.
        progress: String,
        /// The last refusal or fetch failure seen.
        last_problem: String,
    },
    /// The state directory cannot be used (locked by another process, not
    /// ours, unreadable).
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The cache directory cannot be created.
    #[error("cannot use cache directory {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A tunnel could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The channel to a first hop failed.
    #[error(transparent)]
    Channel(#[from] ChannelDriverError),
    /// The core gave up on the tunnel (a build failed or timed out, a
    /// leg's relay refused, a violation); its kind says what to do.
    #[error(transparent)]
    Core(#[from] braid_core::tunnel::TunnelError),
    /// No usable path.
    #[error("no path: {0}")]
    Path(String),
    /// The tunnel's task ended without a word (a bug, or shutdown).
    #[error("the tunnel task ended")]
    TaskGone,
}

impl TunnelError {
    /// The index in the path of the relay most likely at fault, if one is
    /// ([`braid_core::tunnel::TunnelError::suspect`]).
    pub fn suspect(&self) -> Option<usize> {
        match self {
            TunnelError::Core(e) => e.suspect(),
            _ => None,
        }
    }
}

/// A stream could not be opened; `reply` is the SOCKS answer.
#[derive(Debug, Clone, Error)]
#[error("{reason}")]
pub struct BeginError {
    /// The SOCKS5 reply code that says it.
    pub reply: Socks5Reply,
    /// Why, in words (the exit's END reason, a timeout, the circuit
    /// closing).
    pub reason: String,
    /// True if another circuit may do better: the circuit itself failed,
    /// or the exit gave a reason C-tor's client retries elsewhere (MISC,
    /// RESOLVEFAILED, TIMEOUT, NOROUTE, RESOURCELIMIT, HIBERNATING;
    /// `connection_ap_process_end_not_open`), or CONNECTED did not come in
    /// time.
    pub circuit_failed: bool,
}

impl BeginError {
    /// The tunnel would not open the stream (it is not open, or out of
    /// stream ids).
    pub(crate) fn refused(e: &braid_core::tunnel::TunnelError) -> Self {
        BeginError {
            reply: Socks5Reply::GeneralFailure,
            reason: e.to_string(),
            circuit_failed: e.retry_elsewhere(),
        }
    }

    /// The stream ended before it connected (or resolved), by the exit's
    /// END (`remote`) or ours.
    pub(crate) fn ended(reason: braid_core::stream::CloseReason, remote: bool) -> Self {
        BeginError {
            reply: reason.socks5_reply(),
            reason: if remote {
                format!("the exit refused: {reason}")
            } else {
                reason.to_string()
            },
            circuit_failed: reason.retry_elsewhere(),
        }
    }

    /// The tunnel closed (`why`, if known); `retry`: another may do better.
    pub(crate) fn circuit_closed(why: Option<&str>, retry: bool) -> Self {
        BeginError {
            reply: Socks5Reply::GeneralFailure,
            reason: match why {
                Some(why) => format!("the circuit closed: {why}"),
                None => "the circuit closed".into(),
            },
            circuit_failed: retry,
        }
    }
}
