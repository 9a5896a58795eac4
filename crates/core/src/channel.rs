//! The channel layer: cell framing, the link handshake in both roles,
//! CERTS and AUTHENTICATE verification, and the circuits of an open
//! channel (tor-spec §2-§5).
//!
//! - [`codec`]: framing of fixed- and variable-length cells for link
//!   protocols 4 and 5, plus the 2-byte-circuit-id VERSIONS cell (tor-spec
//!   §3).
//! - [`handshake`]: the initiator's VERSIONS / CERTS / AUTH_CHALLENGE /
//!   NETINFO exchange as a sans-IO state machine (tor-spec §4), for clients
//!   and, with [`InitiatorAuth`], for relays that authenticate
//!   ([`initiator_auth`]).
//! - [`responder`]: the relay's side of the same exchange: our VERSIONS,
//!   CERTS, AUTH_CHALLENGE and NETINFO, then a client's NETINFO or a
//!   relay's CERTS, AUTHENTICATE and NETINFO.
//! - [`certs`]: checking a responder's CERTS cell against its TLS
//!   certificate and the identity we meant to reach (tor-spec §4.2);
//!   `initiator_certs` checks an initiator's.
//! - [`auth`]: the AUTH0003 authenticator (tor-spec §4.4.2), over the
//!   handshake transcripts of `transcript`.
//! - [`relay_keys`]: a relay's keys and link certificates for both roles.
//! - [`mux`]: the circuit multiplexer of an open channel: circuit ids, which
//!   circuit a cell is for, what a circuit may send, round robin, DESTROYs
//!   and the DESTROY probe (tor-spec §5).
//! - [`padding`]: connection padding and the idle timeout of a client's
//!   channel (padding-spec §2), as a timer the driver polls.
//! - [`error`]: [`ChannelError`], one enum for all of it.
//!
//! TLS itself, sockets and timers belong to the driver; the TLS values the
//! handshake needs (certificates, an exporter value) are its inputs.

pub mod auth;
#[cfg(test)]
mod auth_ctor_tests;
pub mod certs;
pub mod codec;
pub mod error;
pub mod handshake;
#[cfg(test)]
mod handshake_tests;
pub mod initiator_auth;
mod initiator_certs;
pub mod mux;
#[cfg(test)]
mod mux_proptests;
#[cfg(test)]
mod mux_tests;
pub mod padding;
pub mod relay_keys;
pub mod responder;
#[cfg(test)]
mod responder_bad_input_tests;
#[cfg(test)]
mod responder_tests;
#[cfg(test)]
mod test_relay;
mod transcript;
pub(crate) mod x509;

pub use auth::{AUTH_METHOD_ED25519_SHA256_RFC5705, AUTH0003_EXPORTER_LABEL};
pub use certs::{ExpectedIdentity, VerifiedIdentity};
pub use codec::{CellCodec, RawCell};
pub use error::{ChannelError, ErrorKind};
pub use handshake::{ClientHandshake, ClockSkew, HandshakeOutcome, HandshakeParams, OpenedChannel};
pub use initiator_auth::InitiatorAuth;
pub use mux::{ChannelMux, IgnoreReason, Inbound, MuxConfig, MuxStats, Undelivered};
pub use relay_keys::{RelayIdentityKeys, RelayLinkKeys};
pub use responder::{
    Initiator, OpenedResponder, ResponderHandshake, ResponderOutcome, ResponderParams,
    TlsExportRequest,
};
