//! Errors of flow and congestion control.
//!
//! Every protocol violation by the peer is its own variant and its message
//! names the rule that was broken, so that the circuit reactor can close the
//! circuit (or stream) with a useful log line. A few variants are local
//! errors (the caller used the API out of order); [`CcError::is_protocol_violation`]
//! tells them apart.

use thiserror::Error;

/// Which fixed window an error is about (tor-spec §7.3 / §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// The circuit-level window (1000 cells, increment 100).
    Circuit,
    /// A stream-level window (500 cells, increment 50).
    Stream,
}

impl std::fmt::Display for WindowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowKind::Circuit => f.write_str("circuit"),
            WindowKind::Stream => f.write_str("stream"),
        }
    }
}

/// An error of flow or congestion control.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CcError {
    /// A SENDME arrived while we were expecting none: every SENDME must
    /// acknowledge a window increment's worth of DATA cells that we sent
    /// and that no earlier SENDME acknowledged.
    #[error(
        "protocol violation: {kind}-level SENDME received with no SENDME outstanding \
         (tor-spec §7.3/§7.4; proposal 289 §4: a SENDME needs a cell to acknowledge)"
    )]
    UnexpectedSendme {
        /// Circuit- or stream-level SENDME.
        kind: WindowKind,
    },

    /// A SENDME v1 carried a tag other than the digest of the cell that
    /// made us expect it.
    #[error(
        "protocol violation: SENDME v1 tag does not match the digest of the DATA cell \
         that triggered it (proposal 289 §3, tor-spec §7.3.1)"
    )]
    SendmeTagMismatch,

    /// A SENDME's version is below the minimum we accept (or above the one
    /// we understand).
    #[error(
        "protocol violation: SENDME version {version} not accepted (accepted: {min} to 1) \
         (tor-spec §7.3.1, sendme_accept_min_version)"
    )]
    SendmeVersionRejected {
        /// The version on the wire (0 for an empty body).
        version: u8,
        /// The minimum version we accept.
        min: u8,
    },

    /// The SENDME body could not be parsed.
    #[error("protocol violation: malformed SENDME body (tor-spec §7.3.1): {0}")]
    MalformedSendme(String),

    /// A SENDME would raise a package window above its maximum.
    #[error(
        "protocol violation: {kind} package window would exceed its maximum of {max} cells \
         (tor-spec §7.3/§7.4: a SENDME may not grant more than the initial window)"
    )]
    PackageWindowOverflow {
        /// Circuit or stream window.
        kind: WindowKind,
        /// The maximum window.
        max: u32,
    },

    /// The peer sent a DATA cell while our deliver window was empty.
    #[error(
        "protocol violation: DATA cell received with the {kind} deliver window at 0 \
         (tor-spec §7.3: a deliver window below 0 tears the circuit down)"
    )]
    DeliverWindowExhausted {
        /// Circuit or stream window.
        kind: WindowKind,
    },

    /// A stream-level SENDME arrived on a circuit using congestion control.
    #[error(
        "protocol violation: stream-level SENDME on a congestion-controlled circuit \
         (proposal 324 §2.2: stream SENDMEs are not used with congestion control)"
    )]
    StreamSendmeWithCc,

    /// An XON or XOFF arrived on a stream of a circuit without congestion
    /// control.
    #[error(
        "protocol violation: XON/XOFF on a circuit without congestion control \
         (proposal 324 §4: XON/XOFF replaces stream windows only with congestion control)"
    )]
    XonXoffWithoutCc,

    /// The peer kept sending on a stream after we sent it an XOFF, beyond
    /// what could have been in flight.
    #[error(
        "protocol violation: {bytes} bytes received on a stream after our XOFF, over the \
         grace of {limit} bytes (proposal 324 §4.1.1/§4.1.3: XOFF means stop sending)"
    )]
    XoffIgnored {
        /// Bytes received since the XOFF.
        bytes: u64,
        /// The grace we allow.
        limit: u64,
    },

    /// An XOFF arrived on a stream that was already XOFF.
    #[error(
        "protocol violation: XOFF received on a stream already stopped by XOFF \
         (proposal 324 §4.1.1)"
    )]
    DuplicateXoff,

    /// More XOFFs arrived than the data we sent could have caused.
    #[error(
        "protocol violation: XOFF number {count} after only {sent} bytes sent; at most one per \
         {limit} bytes (proposal 324 §4.1.4, dropmark defence)"
    )]
    XoffTooEarly {
        /// XOFFs received (scaled).
        count: u64,
        /// Bytes sent on the stream (scaled).
        sent: u64,
        /// Bytes that must be sent per XOFF.
        limit: u64,
    },

    /// More XONs arrived than the data we sent could have caused.
    #[error(
        "protocol violation: XON number {count} after only {sent} bytes sent; at most one per \
         {limit} bytes (proposal 324 §4.1.4, dropmark defence)"
    )]
    XonTooEarly {
        /// XONs received (scaled).
        count: u64,
        /// Bytes sent on the stream (scaled).
        sent: u64,
        /// Bytes that must be sent per XON.
        limit: u64,
    },

    /// Local error: a DATA cell was sent while the window was closed
    /// (`can_send()` was false).
    #[error("local error: DATA cell sent while the {kind} send window is closed")]
    SendWindowClosed {
        /// Circuit or stream window.
        kind: WindowKind,
    },
}

impl CcError {
    /// True if the peer broke the protocol (close the circuit or stream);
    /// false for a local misuse of the API.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, CcError::SendWindowClosed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_rule() {
        let e = CcError::SendmeTagMismatch;
        assert!(e.to_string().contains("proposal 289"));
        let e = CcError::UnexpectedSendme {
            kind: WindowKind::Circuit,
        };
        assert!(e.to_string().contains("circuit-level"));
        assert!(e.is_protocol_violation());
        assert!(
            !CcError::SendWindowClosed {
                kind: WindowKind::Stream
            }
            .is_protocol_violation()
        );
    }
}
