//! The one error type of the channel layer: framing, the link handshake in
//! both roles, CERTS and AUTHENTICATE verification and the circuit
//! multiplexer.
//!
//! Every variant belongs to one of three kinds ([`ErrorKind`]): the peer broke
//! the protocol (close the channel, blame the relay), we hit one of our own
//! resource limits (close the channel, the peer may be innocent), or a local
//! bug (the caller misused an API, or we built something we cannot encode).

use std::time::SystemTime;

use tor_cell::chancell::ChanCmd;
use tor_cert::CertType;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

/// Who is to blame for a [`ChannelError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The peer sent something the protocol does not allow: a malformed or
    /// out-of-place cell, or certificates that do not prove the identity we
    /// wanted.
    Protocol,
    /// The input was legal, but exceeded one of our limits.
    ResourceLimit,
    /// A bug on our side, or a misuse of this API by the caller.
    Internal,
}

/// An error on a channel: framing, the link handshake, CERTS verification,
/// or the multiplexing of circuits on an open channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    // ----- Framing (tor-spec §3), the peer's fault -----
    /// Before the link version is negotiated only variable-length cells
    /// (VERSIONS, VPADDING, AUTHORIZE) can be framed (tor-spec §3, §4).
    #[error("{cmd} cell received before link protocol version negotiation")]
    FixedCellBeforeVersions {
        /// The command of the offending cell.
        cmd: ChanCmd,
    },
    /// A cell's body could not be parsed as a message of its command.
    #[error("malformed {cmd} cell: {reason}")]
    MalformedCell {
        /// The command of the offending cell.
        cmd: ChanCmd,
        /// What was wrong with it.
        reason: String,
    },
    /// A cell carried a circuit id its command does not allow (zero for
    /// circuit cells, non-zero for channel cells).
    #[error("circuit id {circ_id} not allowed on a {cmd} cell")]
    BadCircId {
        /// The command of the offending cell.
        cmd: ChanCmd,
        /// The circuit id it carried.
        circ_id: u32,
    },

    // ----- Link handshake (tor-spec §4), the peer's fault -----
    /// The peer's VERSIONS cell has no version in common with ours
    /// (tor-spec §4.1).
    #[error("no common link protocol version: we offer {ours:?}, the peer offers {theirs:?}")]
    NoCommonVersion {
        /// The versions we offered.
        ours: Vec<u16>,
        /// The versions the peer offered.
        theirs: Vec<u16>,
    },
    /// A cell that the handshake does not allow at this point (tor-spec §4:
    /// "no other cell type is allowed to intervene"), or a handshake cell
    /// (CERTS, AUTH_CHALLENGE, AUTHENTICATE, NETINFO) once the channel is
    /// open.
    #[error("unexpected {cmd} cell during the link handshake (expecting {expecting})")]
    UnexpectedCell {
        /// The command of the offending cell.
        cmd: ChanCmd,
        /// What the handshake was waiting for.
        expecting: &'static str,
    },

    // ----- CERTS verification (tor-spec §4.2), the peer's fault -----
    /// The CERTS cell body does not parse (tor-spec §4.2 format).
    #[error("malformed CERTS cell: {reason}")]
    MalformedCerts {
        /// What was wrong with it.
        reason: String,
    },
    /// One certificate does not parse, or is not of the type it is labelled
    /// with.
    #[error("malformed certificate of type {cert_type}: {reason}")]
    MalformedCert {
        /// The type the CERTS cell gave it.
        cert_type: CertType,
        /// What was wrong with it.
        reason: String,
    },
    /// "The CERTS cell contains exactly one CertType N": none was there.
    #[error("CERTS cell lacks a certificate of type {cert_type}")]
    MissingCert {
        /// The missing type.
        cert_type: CertType,
    },
    /// "A CERTS cell may have no more than one certificate of each
    /// CertType."
    #[error("CERTS cell has more than one certificate of type {cert_type}")]
    DuplicateCert {
        /// The repeated type.
        cert_type: CertType,
    },
    /// "No X.509 or Ed25519 certificates are expired."
    #[error("certificate of type {cert_type} expired at {expired_at:?}")]
    CertExpired {
        /// The expired certificate's type.
        cert_type: CertType,
        /// When it expired.
        expired_at: SystemTime,
    },
    /// An X.509 certificate whose validAfter date is still in the future.
    #[error("certificate of type {cert_type} is not valid before {valid_after:?}")]
    CertNotYetValid {
        /// The certificate's type.
        cert_type: CertType,
        /// When it becomes valid.
        valid_after: SystemTime,
    },
    /// "All certificates are correctly signed": this one's signature does
    /// not verify under the key that must have made it.
    #[error("bad signature on certificate of type {cert_type}")]
    BadSignature {
        /// The badly signed certificate's type.
        cert_type: CertType,
    },
    /// A certificate names (in its signed-with-ed25519-key extension) a
    /// signer other than the key the chain requires, e.g. a Signing->Link
    /// cert not made by the key in the ID->Signing cert.
    #[error(
        "certificate of type {cert_type} claims a signer other than the one the chain requires"
    )]
    WrongSigner {
        /// The certificate's type.
        cert_type: CertType,
    },
    /// The Ed25519 ID->Signing certificate lacks the signed-with-ed25519-key
    /// extension, so it does not name the identity key.
    #[error("certificate of type {cert_type} lacks its signing-key extension")]
    MissingSigningKey {
        /// The certificate's type.
        cert_type: CertType,
    },
    /// "The certified key in the ID certificate is a 1024-bit RSA key."
    #[error("RSA identity key is not a 1024-bit key with exponent 65537 ({bits} bits)")]
    BadRsaIdentityKey {
        /// The key's size in bits.
        bits: usize,
    },
    /// "The RSA->Ed25519 cross-certificate certifies the Ed25519 identity":
    /// it certifies a different key than the one that signed the
    /// ID->Signing cert.
    #[error("RSA->Ed25519 cross-certificate certifies a different Ed25519 identity")]
    CrosscertMismatch,
    /// "The certified key in the Signing->Link certificate matches the SHA256
    /// digest of the certificate that was used to authenticate the TLS
    /// connection": it does not.
    #[error("Signing->Link certificate does not certify the TLS certificate of this connection")]
    TlsCertMismatch,
    /// The certificates prove an RSA identity, but not the one we meant to
    /// reach.
    #[error("peer has RSA identity {found}, expected {expected}")]
    WrongRsaIdentity {
        /// The identity we wanted.
        expected: RsaIdentity,
        /// The identity the certificates prove.
        found: RsaIdentity,
    },
    /// The certificates prove an Ed25519 identity, but not the one we meant
    /// to reach.
    #[error("peer has Ed25519 identity {found}, expected {expected}")]
    WrongEd25519Identity {
        /// The identity we wanted.
        expected: Ed25519Identity,
        /// The identity the certificates prove.
        found: Ed25519Identity,
    },

    // ----- Initiator authentication (tor-spec §4.4), the peer's fault -----
    /// An AUTHENTICATE cell with an authentication method we do not accept
    /// (we offer and accept only 3, Ed25519-SHA256-RFC5705).
    #[error("AUTHENTICATE with unsupported method {auth_type}")]
    UnsupportedAuthType {
        /// The AuthType of the cell.
        auth_type: u16,
    },
    /// An AUTHENTICATE cell too short to hold an AUTH0003 authenticator
    /// (tor-spec §4.4.2).
    #[error("malformed AUTHENTICATE cell: {reason}")]
    MalformedAuthenticate {
        /// What was wrong with it.
        reason: String,
    },
    /// "A responder checks that all fields from TYPE through TLSSECRETS
    /// contain their unique correct values" (tor-spec §4.4.2): this one
    /// does not (the first that differs is named).
    #[error("AUTHENTICATE field {field} does not have its expected value")]
    AuthenticateMismatch {
        /// The field: TYPE, CID, SID, CID_ED, SID_ED, SLOG, CLOG, SCERT or
        /// TLSSECRETS.
        field: &'static str,
    },
    /// The AUTHENTICATE signature does not verify under the authentication
    /// key of the initiator's Signing->Auth certificate (tor-spec §4.4.2).
    #[error("bad signature on the AUTHENTICATE cell")]
    BadAuthenticateSignature,

    // ----- Resource limits -----
    /// Every random circuit id tried was in use (tor-spec §5.1.1): the
    /// channel carries no new circuit.
    #[error("no free circuit id on the channel after {attempts} attempts")]
    CircIdsExhausted {
        /// How many ids were tried.
        attempts: usize,
    },
    /// A variable-length cell longer than our configured limit.
    #[error("variable-length cell of {len} bytes exceeds the limit of {max}")]
    CellTooLong {
        /// The length field of the cell.
        len: usize,
        /// Our limit.
        max: usize,
    },
    /// More undecoded input than the decoder may hold: the driver fed bytes
    /// without taking cells out.
    #[error("decoder buffer would hold {len} bytes, over the limit of {max}")]
    BufferFull {
        /// How many bytes the buffer would hold.
        len: usize,
        /// Our limit.
        max: usize,
    },

    // ----- Local bugs -----
    /// A circuit of ours handed the multiplexer a cell it may not send
    /// (tor-spec §5: an initiator's circuit sends CREATE*, RELAY,
    /// RELAY_EARLY and DESTROY); the circuit is closed.
    #[error("circ {circ_id:#010x} may not send a {cmd} cell; closed")]
    CellNotAllowed {
        /// The circuit.
        circ_id: u32,
        /// The command of the cell.
        cmd: ChanCmd,
    },
    /// The peer opened a circuit with an id it may not use (in use, or
    /// with the other end's high bit, tor-spec §5.1.1).
    #[error("circ {circ_id:#010x} cannot be opened by the peer: {why}")]
    BadPeerCircId {
        /// The id.
        circ_id: u32,
        /// Why.
        why: &'static str,
    },
    /// A bug on our side or a misuse of this API (e.g. encoding a cell we
    /// built wrongly, or feeding a handshake that has already failed).
    #[error("internal error: {0}")]
    Internal(String),
    /// Our own relay keys cannot make a link handshake: a certificate that
    /// does not parse, is not signed by the key it should be, or certifies
    /// another key; or one could not be built. A local configuration
    /// problem, not the peer's.
    #[error("relay link keys: {reason}")]
    BadLinkKeys {
        /// What is wrong.
        reason: String,
    },
}

impl ChannelError {
    /// Who is to blame for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ChannelError::CellTooLong { .. }
            | ChannelError::BufferFull { .. }
            | ChannelError::CircIdsExhausted { .. } => ErrorKind::ResourceLimit,
            ChannelError::Internal(_)
            | ChannelError::CellNotAllowed { .. }
            | ChannelError::BadLinkKeys { .. } => ErrorKind::Internal,
            ChannelError::FixedCellBeforeVersions { .. }
            | ChannelError::MalformedCell { .. }
            | ChannelError::BadCircId { .. }
            | ChannelError::BadPeerCircId { .. }
            | ChannelError::NoCommonVersion { .. }
            | ChannelError::UnexpectedCell { .. }
            | ChannelError::MalformedCerts { .. }
            | ChannelError::MalformedCert { .. }
            | ChannelError::MissingCert { .. }
            | ChannelError::DuplicateCert { .. }
            | ChannelError::CertExpired { .. }
            | ChannelError::CertNotYetValid { .. }
            | ChannelError::BadSignature { .. }
            | ChannelError::WrongSigner { .. }
            | ChannelError::MissingSigningKey { .. }
            | ChannelError::BadRsaIdentityKey { .. }
            | ChannelError::CrosscertMismatch
            | ChannelError::TlsCertMismatch
            | ChannelError::WrongRsaIdentity { .. }
            | ChannelError::WrongEd25519Identity { .. }
            | ChannelError::UnsupportedAuthType { .. }
            | ChannelError::MalformedAuthenticate { .. }
            | ChannelError::AuthenticateMismatch { .. }
            | ChannelError::BadAuthenticateSignature => ErrorKind::Protocol,
        }
    }

    /// True if the peer broke the protocol ([`ErrorKind::Protocol`]).
    pub fn is_peer_fault(&self) -> bool {
        self.kind() == ErrorKind::Protocol
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            ChannelError::CellTooLong { len: 9, max: 8 }.kind(),
            ErrorKind::ResourceLimit
        );
        assert_eq!(
            ChannelError::Internal("x".into()).kind(),
            ErrorKind::Internal
        );
        assert!(ChannelError::TlsCertMismatch.is_peer_fault());
        let e = ChannelError::MissingCert {
            cert_type: CertType::RSA_ID_X509,
        };
        assert!(e.to_string().contains("RSA_ID_X509"), "{e}");
    }
}
