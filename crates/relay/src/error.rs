//! Errors of the relay driver: one enum per concern, each kind saying what
//! the operator or the caller should do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use thiserror::Error;

/// The relay's keys could not be loaded, generated or stored.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing a key file failed: fix permissions or disk.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A key file is not in the format C-tor writes: restore it from a
    /// backup, or remove the key directory to make a new identity.
    #[error("{path}: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Some key files exist and others are missing; Braid will not
    /// overwrite the ones present with a new identity.
    #[error(
        "{dir}: incomplete key directory, missing {missing:?}; restore them, or remove the directory to make a new identity"
    )]
    Incomplete {
        /// The key directory.
        dir: PathBuf,
        /// The files missing.
        missing: Vec<String>,
    },
    /// The key files do not belong together (e.g. the signing-key
    /// certificate names another master key).
    #[error("keys do not belong together: {0}")]
    Mismatch(String),
    /// The signing-key certificate expires (or has expired) and the master
    /// identity secret key, needed to sign a new one, is not in the key
    /// directory: make one with the master key (`tor --keygen`) and copy
    /// it in.
    #[error(
        "the signing-key certificate expires at {expiry:?}; the master identity secret key is needed to renew it"
    )]
    CannotRenew {
        /// When the certificate expires.
        expiry: SystemTime,
    },
    /// Making or encoding a key failed: a bug.
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// A descriptor upload to one authority failed without an HTTP answer
/// (the caller retries later).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Connecting, writing or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The authority's DirPort.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// No complete answer within the timeout.
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout {
        /// The authority's DirPort.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer is not an HTTP/1.x response, or is too long.
    #[error("{addr}: malformed answer: {detail}")]
    Malformed {
        /// The authority's DirPort.
        addr: SocketAddr,
        /// What is wrong.
        detail: String,
    },
}

/// The configuration file could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has fields of the wrong type.
    #[error("{path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// A value is not acceptable.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// `braid relay run` could not start, or stopped on a local problem.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// The keys could not be copied for the link handshake.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The keys cannot make the link handshake's certificates (an expired
    /// signing-key certificate, say): fix the key directory.
    #[error("link keys: {0}")]
    LinkKeys(#[source] braid_core::channel::ChannelError),
    /// The ORPort cannot listen: another process holds the port, or the
    /// address is not ours.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The TLS configuration could not be built (a bug, or a key rustls
    /// does not take).
    #[error("TLS: {0}")]
    Tls(String),
    /// The descriptor could not be built from the configuration and keys.
    #[error("descriptor: {0}")]
    Descriptor(#[from] braid_dir::descriptor::DescriptorError),
    /// A task of the relay ended unexpectedly (a bug).
    #[error("internal: {0}")]
    Internal(String),
}

/// The consensus could not be fetched or verified (logged; the relay
/// keeps the parameters in force and retries).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No HTTP answer from the authority.
    #[error(transparent)]
    Http(#[from] PublishError),
    /// The authority answered, but not with the document.
    #[error("GET {path}: {status} {reason}")]
    Status {
        /// What was asked for.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The document does not parse or verify.
    #[error(transparent)]
    Document(#[from] braid_dir::DocError),
}

/// Why one channel's TLS or link handshake failed (logged; the connection
/// is dropped, nothing else is affected).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The TCP connection or TLS failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The link handshake failed (the peer's fault, mostly).
    #[error("link handshake: {0}")]
    Handshake(#[from] braid_core::channel::ChannelError),
    /// The peer closed the connection during the handshake.
    #[error("closed during the handshake")]
    Eof,
    /// The handshake did not finish in time.
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    /// TLS finished without the peer's certificate.
    #[error("no TLS certificate from the peer")]
    NoPeerCertificate,
    /// The TLS exporter value could not be made.
    #[error("TLS exporter: {0}")]
    Export(rustls::Error),
    /// No address of the relay to extend to could be reached.
    #[error("no address reachable: {0}")]
    Unreachable(String),
}
