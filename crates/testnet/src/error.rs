//! The error type of the launcher.

use std::path::PathBuf;

/// Everything that can go wrong while launching, inspecting or stopping a
/// private network. Each variant renders as a one-line cause; the log tail,
/// where there is one, follows on later lines.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// `tor` (or `tor-gencert`) is not installed.
    #[error(
        "`{binary}` not found: install Debian's tor package (apt-get install tor, version 0.4.9 or newer)"
    )]
    TorMissing {
        /// The program that could not be run.
        binary: String,
    },
    /// The installed tor is older than the launcher supports.
    #[error(
        "tor {found} is too old: Braid's test network needs 0.4.9 or newer (Conflux exits, FlowCtrl=2); install a newer tor package"
    )]
    TorTooOld {
        /// The version that was found.
        found: String,
    },
    /// A port the network needs is taken by another program.
    #[error(
        "127.0.0.1:{port} is already in use (needed for {purpose}); stop that program or pick another --base-port"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// What the network would have used it for.
        purpose: String,
    },
    /// The directory already holds a network with live processes.
    #[error(
        "{dir} already holds a running network ({alive} live processes); run `braid testnet down --dir {dir}` first"
    )]
    AlreadyRunning {
        /// The network directory.
        dir: PathBuf,
        /// Number of live processes recorded there.
        alive: usize,
    },
    /// The directory is not empty and was not made by the launcher.
    #[error(
        "{0} is not empty and is not a Braid test network directory; choose an empty or new directory"
    )]
    ForeignDirectory(PathBuf),
    /// The directory holds no network.
    #[error("{0} holds no Braid test network (no network.toml or pids file)")]
    NoNetwork(PathBuf),
    /// The configuration or scenario is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A process that the network needs exited.
    #[error(
        "{name} (pid {pid}) exited during start-up with {status}\n--- last lines of {log} ---\n{tail}"
    )]
    ProcessDied {
        /// Nickname of the process.
        name: String,
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// The network did not become ready in time.
    #[error("timed out after {secs} s waiting for {what}\n--- last lines of {log} ---\n{tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        secs: u64,
        /// The most relevant log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// Key generation with tor or tor-gencert failed.
    #[error("key generation for {name} failed: {detail}")]
    Keygen {
        /// Node nickname.
        name: String,
        /// What the tool said.
        detail: String,
    },
    /// Talking to a control port failed or it answered an error.
    #[error("control port {addr}: {detail}")]
    Control {
        /// The control port address.
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// A SOCKS proxy refused or broke the connection.
    #[error("SOCKS5 proxy {addr}: {detail}")]
    Socks {
        /// The proxy address.
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// An HTTP exchange failed.
    #[error("HTTP {url}: {detail}")]
    Http {
        /// What was requested.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// A download's content did not match its expected digest.
    #[error("download of {size} bytes is corrupt: SHA-256 {got}, expected {expected}")]
    DigestMismatch {
        /// The file size.
        size: u64,
        /// The digest of what arrived.
        got: String,
        /// The digest it should have had.
        expected: String,
    },
    /// The network manifest could not be read or written.
    #[error("network manifest {path}: {detail}")]
    Manifest {
        /// The manifest path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Some processes survived `down`.
    #[error("could not stop {0} processes (see {1})")]
    StopFailed(usize, PathBuf),
    /// Parts of a run (the demo's downloads) failed; each named.
    #[error("{} part(s) failed: {}", .0.len(), .0.join("; "))]
    PartsFailed(Vec<String>),
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The launcher was interrupted (Ctrl-C or SIGTERM); everything was stopped.
    #[error("interrupted; every process that was started has been stopped")]
    Interrupted,
}

impl TestnetError {
    /// Wraps an IO error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TestnetError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
