//! A relay's authentication when it initiates a channel (tor-spec §4.4):
//! the part of [`ClientHandshake`](super::ClientHandshake) that a relay
//! extending a circuit adds, so that the responder learns its identity (a
//! C-tor exit refuses BEGIN on circuits that reach it over unauthenticated
//! channels from relays).
//!
//! ```text
//!   we (relay)                            responder
//!   VERSIONS                  ---->
//!                             <----       VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO
//!   CERTS (2, 4, 6, 7), AUTHENTICATE (AUTH0003), NETINFO  ---->
//! ```
//!
//! We answer the AUTH_CHALLENGE once the responder's CERTS is verified
//! (tor-spec §4.4: "Initiators MUST NOT send an AUTHENTICATE cell before
//! they have verified the certificates presented in the responder's CERTS
//! cell"), and only if it offers method 3. The authenticator signs the
//! digests of both sides' cells, kept here: everything we sent before
//! AUTHENTICATE (CLOG) and everything the responder sent up to and
//! including AUTH_CHALLENGE (SLOG), byte for byte as on the wire.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rand::CryptoRng;
use tor_cell::chancell::ChanCell;
use tor_cell::chancell::msg::{AuthChallenge, Netinfo};

use super::auth::{AUTH_METHOD_ED25519_SHA256_RFC5705, AUTH0003_RAND_LEN, Auth0003};
use super::certs::VerifiedIdentity;
use super::codec::{CellCodec, RawCell};
use super::error::ChannelError;
use super::handshake::netinfo_timestamp;
use super::relay_keys::RelayLinkKeys;
use super::transcript::Transcript;

/// What a relay needs to authenticate as the initiator of a channel.
#[derive(Clone)]
pub struct InitiatorAuth {
    /// Our keys and certificates.
    pub keys: Arc<RelayLinkKeys>,
    /// The TLS exporter value of this connection: label
    /// [`AUTH0003_EXPORTER_LABEL`](super::auth::AUTH0003_EXPORTER_LABEL),
    /// context [`RelayLinkKeys::auth0003_exporter_context`], 32 bytes
    /// (rustls: `export_keying_material`).
    pub tls_exporter: [u8; 32],
    /// The RAND field of the authenticator: random bytes.
    pub rand: [u8; AUTH0003_RAND_LEN],
    /// Our addresses, which our NETINFO lists (tor-spec §4.5).
    pub my_addrs: Vec<IpAddr>,
}

impl std::fmt::Debug for InitiatorAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorAuth")
            .field("keys", &self.keys)
            .field("my_addrs", &self.my_addrs)
            .finish_non_exhaustive()
    }
}

impl InitiatorAuth {
    /// Authentication with `keys`, for a connection whose TLS exporter
    /// gave `tls_exporter`; RAND drawn from `rng`.
    pub fn new<R: CryptoRng + ?Sized>(
        keys: Arc<RelayLinkKeys>,
        tls_exporter: [u8; 32],
        my_addrs: Vec<IpAddr>,
        rng: &mut R,
    ) -> Self {
        let mut rand = [0; AUTH0003_RAND_LEN];
        rng.fill_bytes(&mut rand);
        InitiatorAuth {
            keys,
            tls_exporter,
            rand,
            my_addrs,
        }
    }
}

/// The authentication bookkeeping of one handshake.
#[derive(Debug)]
pub(super) struct AuthState {
    /// Keys and inputs.
    params: InitiatorAuth,
    /// What we sent (CLOG).
    sent: Transcript,
    /// What the responder sent (SLOG).
    received: Transcript,
    /// SHA-256 of the responder's RSA identity key, once its CERTS is
    /// verified (the SID).
    sid: Option<[u8; 32]>,
    /// Whether we sent AUTHENTICATE.
    authenticated: bool,
}

impl AuthState {
    /// Fresh bookkeeping.
    pub(super) fn new(params: InitiatorAuth) -> Self {
        AuthState {
            params,
            sent: Transcript::new(),
            received: Transcript::new(),
            sid: None,
            authenticated: false,
        }
    }

    /// Bytes we send.
    pub(super) fn record_sent(&mut self, bytes: &[u8]) {
        self.sent.record(bytes);
    }

    /// A cell the responder sent, as framed (`wide`: 4-byte circuit ids).
    pub(super) fn record_received(&mut self, raw: &RawCell, wide: bool) {
        self.received.record_raw(raw, wide);
    }

    /// The responder's verified RSA identity key digest.
    pub(super) fn set_sid(&mut self, sid: [u8; 32]) {
        self.sid = Some(sid);
    }

    /// Whether we sent AUTHENTICATE.
    pub(super) fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Answer the responder's AUTH_CHALLENGE (already recorded): if it
    /// offers method 3, append CERTS and AUTHENTICATE to `out`, framed by
    /// `codec`. `peer` is the responder's verified identity and
    /// `scert` the SHA-256 of its TLS certificate.
    pub(super) fn answer_challenge(
        &mut self,
        challenge: &AuthChallenge,
        peer: &VerifiedIdentity,
        scert: &[u8; 32],
        codec: &CellCodec,
        out: &mut Vec<u8>,
    ) -> Result<(), ChannelError> {
        if !challenge
            .methods()
            .contains(&AUTH_METHOD_ED25519_SHA256_RFC5705)
        {
            // Nothing we can do; the channel stays unauthenticated.
            return Ok(());
        }
        let sid = self
            .sid
            .ok_or_else(|| ChannelError::Internal("AUTH_CHALLENGE before CERTS verified".into()))?;
        let keys = &self.params.keys;
        let mut certs = Vec::new();
        codec.encode_cell(
            ChanCell::new(None, keys.initiator_certs().into()),
            &mut certs,
        )?;
        self.sent.record(&certs);
        let fields = Auth0003 {
            cid: *keys.rsa_id_sha256(),
            sid,
            cid_ed: keys.ed_identity().into(),
            sid_ed: peer.ed25519.into(),
            slog: self.received.digest(),
            clog: self.sent.digest(),
            scert: *scert,
            tlssecrets: self.params.tls_exporter,
        };
        let authenticate = fields.sign(&self.params.rand, keys.auth_key());
        let mut cells = certs;
        codec.encode_cell(ChanCell::new(None, authenticate.into()), &mut cells)?;
        self.sent.close();
        self.received.close();
        out.extend_from_slice(&cells);
        self.authenticated = true;
        Ok(())
    }

    /// Our NETINFO as a relay: the time, the responder's address, ours
    /// (tor-spec §4.5; C-tor `connection_or_send_netinfo`).
    pub(super) fn netinfo(&self, now: SystemTime, peer_addr: Option<IpAddr>) -> Netinfo {
        Netinfo::from_relay(
            netinfo_timestamp(now),
            peer_addr,
            self.params.my_addrs.clone(),
        )
    }
}
