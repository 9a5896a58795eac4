//! Errors of the client drivers, one enum per concern.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

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

/// An HTTP fetch from a DirPort failed. These are the network's or the
/// server's doing; the bootstrap retries elsewhere.
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
    /// The cache directory cannot be created.
    #[error("cannot use cache directory {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}
