//! Errors of the circuit cryptography.
//!
//! Three small enums, one per job: [`HandshakeError`] for the circuit
//! handshakes (ntor, ntor-v3), [`KdfError`] for key derivation, and
//! [`RelayCryptoError`] for the per-hop relay cell crypto. None of them
//! carries secret material.

use thiserror::Error;

use crate::ids::HopNum;

/// A circuit handshake (CREATE2/CREATED2 onionskin) failed.
///
/// Every variant but [`Internal`](Self::Internal) is the peer's fault: the
/// caller should close the circuit (client side) or refuse the CREATE2
/// (relay side). [`is_protocol_violation`](Self::is_protocol_violation) says
/// which.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The message has the wrong length or an undecodable body (for
    /// example a bad ntor-v3 extension list).
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// The authenticator did not verify: the relay's AUTH on the client
    /// side, the client's MAC on the relay side (ntor-v3). Either the peer
    /// does not hold the key it claims or the message was altered.
    #[error("handshake authentication failed ({0} mismatch)")]
    AuthMismatch(&'static str),
    /// A Diffie-Hellman result was the point at infinity (all zero): the
    /// peer sent a key of small order (tor-spec §5.1.4).
    #[error("degenerate Diffie-Hellman key from the peer")]
    DegenerateKey,
    /// Relay side: the client addressed a NODEID or onion key (KEYID) this
    /// relay does not have.
    #[error("handshake addressed to an unknown identity or onion key")]
    UnknownKey,
    /// Relay side (ntor-v3): the client's message was refused by the
    /// caller's reply function (for example an unacceptable extension).
    #[error("client handshake message refused")]
    MessageRefused,
    /// A bug or an impossible state on our side, not the peer's fault.
    #[error("internal error in circuit handshake: {0}")]
    Internal(&'static str),
}

impl HandshakeError {
    /// True if the error is the peer's fault (it violated the protocol or
    /// addressed a key we do not have), false for our own internal errors.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, Self::Internal(_))
    }
}

/// A key derivation function could not produce what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KdfError {
    /// More output was requested than the function can give (KDF-TOR:
    /// 256 × 20 bytes; HKDF-SHA256: 255 × 32 bytes).
    #[error("key derivation asked for {requested} bytes, at most {max} possible")]
    TooLong {
        /// Bytes requested.
        requested: usize,
        /// The most this function can produce.
        max: usize,
    },
}

/// Relay cell crypto was used in a way that cannot work.
///
/// These are caller errors, never caused by network input: a cell that no
/// hop recognizes is reported as `None` by the decrypting functions, not as
/// an error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RelayCryptoError {
    /// A cell was addressed to a hop the circuit does not have.
    #[error("no {hop} on this circuit ({n_hops} hops)")]
    NoSuchHop {
        /// The hop asked for.
        hop: HopNum,
        /// How many hops the circuit has.
        n_hops: usize,
    },
    /// The circuit already has the most hops a [`HopNum`] can name.
    #[error("too many hops on one circuit")]
    TooManyHops,
    /// Key material shorter than the cell crypto needs.
    #[error("relay crypto needs {needed} bytes of key material, got {got}")]
    ShortKeyMaterial {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// Deriving the key material failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_violation_classification() {
        assert!(HandshakeError::AuthMismatch("AUTH").is_protocol_violation());
        assert!(HandshakeError::Malformed("short").is_protocol_violation());
        assert!(HandshakeError::DegenerateKey.is_protocol_violation());
        assert!(HandshakeError::UnknownKey.is_protocol_violation());
        assert!(!HandshakeError::Internal("bug").is_protocol_violation());
    }

    #[test]
    fn messages_name_the_problem() {
        let e = RelayCryptoError::NoSuchHop {
            hop: HopNum(3),
            n_hops: 3,
        };
        assert_eq!(e.to_string(), "no hop 3 on this circuit (3 hops)");
        let e = KdfError::TooLong {
            requested: 9000,
            max: 8160,
        };
        assert!(e.to_string().contains("9000"));
    }
}
