//! Errors of the channel driver: why a channel could not be opened
//! ([`ChannelDriverError`]) and why an open one ended ([`CloseReason`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use braid_core::channel::ChannelError;
use thiserror::Error;
use tor_cell::chancell::ChanCmd;

/// The step of [`Channel::connect`](super::Channel::connect) that was
/// running when it failed or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectPhase {
    /// The TCP connection to the ORPort.
    Tcp,
    /// The TLS handshake.
    Tls,
    /// The link handshake (VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO).
    LinkHandshake,
}

impl fmt::Display for ConnectPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectPhase::Tcp => "TCP connect",
            ConnectPhase::Tls => "TLS handshake",
            ConnectPhase::LinkHandshake => "link handshake",
        })
    }
}

/// A channel could not be opened, or a request to an open channel failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChannelDriverError {
    /// The TCP connection failed (refused, unreachable, ...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The relay's ORPort.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake failed (including a bad handshake signature).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// The relay's ORPort.
        addr: SocketAddr,
        /// Why (rustls errors come wrapped in an `io::Error`).
        source: io::Error,
    },
    /// Our TLS configuration could not be built (a bug).
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    /// The TLS handshake finished without a server certificate, so the
    /// CERTS cell cannot be checked against it.
    #[error("{addr} presented no TLS certificate")]
    NoPeerCertificate {
        /// The relay's ORPort.
        addr: SocketAddr,
    },
    /// Reading or writing failed during the link handshake.
    #[error("I/O error during the link handshake with {addr}: {source}")]
    Io {
        /// The relay's ORPort.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The relay closed the connection before the link handshake finished.
    #[error("{addr} closed the connection during the link handshake")]
    HandshakeEof {
        /// The relay's ORPort.
        addr: SocketAddr,
    },
    /// The link handshake failed: a protocol violation, certificates that
    /// do not prove the expected identity, or a resource limit.
    #[error("link handshake with {addr} failed: {source}")]
    Handshake {
        /// The relay's ORPort.
        addr: SocketAddr,
        /// Why, as braid-core's channel layer says it.
        source: ChannelError,
    },
    /// The connection did not open within its time limit.
    #[error("{phase} with {addr} timed out ({after:?} since the start)")]
    Timeout {
        /// The relay's ORPort.
        addr: SocketAddr,
        /// The step that was running.
        phase: ConnectPhase,
        /// Time since the start of the connection attempt.
        after: Duration,
    },
    /// The channel is closed (or closing): it takes no more requests.
    #[error("channel closed: {0}")]
    Closed(CloseReason),
    /// No circuit id could be found that is not in use.
    #[error("no free circuit id on the channel")]
    CircIdsExhausted,
}

impl ChannelDriverError {
    /// The channel-layer error of a failed link handshake, if that is what
    /// this is.
    pub fn channel_error(&self) -> Option<&ChannelError> {
        match self {
            ChannelDriverError::Handshake { source, .. } => Some(source),
            ChannelDriverError::Closed(CloseReason::Cell(e)) => Some(e),
            _ => None,
        }
    }

    /// True for a timeout of any phase.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ChannelDriverError::Timeout { .. })
    }
}

/// Why an open channel ended. Every circuit's receiver ends when the
/// channel does; [`ChannelHandle::closed`](super::ChannelHandle::closed)
/// says why.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The relay closed the connection (TCP FIN or TLS close_notify).
    #[error("the relay closed the connection")]
    Eof,
    /// Reading or writing failed (reset, TLS error, ...).
    #[error("connection error: {0}")]
    Io(Arc<io::Error>),
    /// A cell could not be framed or parsed, or broke a limit of the codec.
    #[error("bad cell from the relay: {0}")]
    Cell(ChannelError),
    /// The relay sent a channel-level cell that has no place on an open
    /// channel (CERTS, AUTH_CHALLENGE, AUTHENTICATE, NETINFO).
    #[error("unexpected {cmd} cell on an open channel")]
    UnexpectedCell {
        /// Its command.
        cmd: ChanCmd,
    },
    /// Our own output could not be encoded (a bug).
    #[error("internal error: {0}")]
    Internal(String),
    /// We closed it: [`ChannelHandle::shutdown`](super::ChannelHandle::shutdown),
    /// or every handle and circuit was dropped.
    #[error("closed locally")]
    Local,
    /// The reactor task ended without saying why (it was aborted, or the
    /// runtime shut down).
    #[error("the channel reactor stopped")]
    ReactorGone,
}

impl CloseReason {
    /// True if the relay is to blame: it broke the protocol.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            CloseReason::Cell(e) => e.is_peer_fault(),
            CloseReason::UnexpectedCell { .. } => true,
            _ => false,
        }
    }
}

impl From<io::Error> for CloseReason {
    fn from(e: io::Error) -> Self {
        CloseReason::Io(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
        let e = ChannelDriverError::Timeout {
            addr,
            phase: ConnectPhase::LinkHandshake,
            after: Duration::from_secs(3),
        };
        assert!(e.is_timeout());
        assert_eq!(
            e.to_string(),
            "link handshake with 127.0.0.1:9 timed out (3s since the start)"
        );
        let e = ChannelDriverError::Handshake {
            addr,
            source: ChannelError::TlsCertMismatch,
        };
        assert_eq!(e.channel_error(), Some(&ChannelError::TlsCertMismatch));
        assert!(
            CloseReason::UnexpectedCell {
                cmd: ChanCmd::NETINFO
            }
            .is_peer_fault()
        );
        assert!(!CloseReason::Local.is_peer_fault());
    }
}
