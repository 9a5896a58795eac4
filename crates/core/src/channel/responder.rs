//! The responder (relay) side of the in-protocol link handshake (tor-spec
//! §4), as a sans-IO state machine.
//!
//! The driver accepts TCP, does the TLS server handshake with the
//! certificate of [`RelayLinkKeys::tls`], and feeds us the bytes:
//!
//! ```text
//!   initiator                          we
//!   VERSIONS                 ---->
//!                            <----     VERSIONS, CERTS (1, 2, 4, 5, 7),
//!                                      AUTH_CHALLENGE (method 3), NETINFO
//!   a client:  NETINFO       ---->
//!   a relay:   CERTS (2, 4, 6, 7), AUTHENTICATE (AUTH0003), NETINFO  ---->
//! ```
//!
//! We answer the initiator's VERSIONS at once with our whole flight, as
//! C-tor does (`channel_tls_process_versions_cell`). Then an initiator that
//! does not authenticate sends NETINFO and is
//! [`Initiator::Unauthenticated`] (a client, or a bridge: never to be named
//! in an EXTEND); one that authenticates sends CERTS, which we verify
//! (`initiator_certs`), and AUTHENTICATE, whose AUTH0003
//! authenticator we check ([`super::auth`]) before NETINFO makes it
//! [`Initiator::Relay`]. Like C-tor, an initiator that sends CERTS and then
//! NETINFO without AUTHENTICATE stays unauthenticated.
//!
//! The authenticator covers the bytes of both sides' cells (recorded here,
//! `transcript`), our TLS certificate, and a TLS exporter value
//! whose context is the initiator's CID, known only from its CERTS. So
//! once the initiator's certificates check out, the handshake stops and
//! [`ResponderHandshake::tls_export_request`] says what to export; the
//! driver answers with [`ResponderHandshake::handle_tls_export`] (rustls:
//! `export_keying_material(&mut [0; 32], label, Some(&context))`) and
//! buffered input goes on. VPADDING may come at any time; unknown
//! variable-length cells are dropped; any other cell out of place fails
//! the handshake (tor-spec §4: "no other cell type is allowed to
//! intervene").

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::CryptoRng;
use tor_cell::chancell::msg::{AnyChanMsg, AuthChallenge, Authenticate, Netinfo, Versions};
use tor_cell::chancell::{AnyChanCell, ChanCell, ChanCmd, ChanMsg};

use super::auth::{AUTH_METHOD_ED25519_SHA256_RFC5705, AUTH0003_EXPORTER_LABEL, Auth0003};
use super::certs::{VerifiedIdentity, certs_msg_body, tls_cert_digest};
use super::codec::{CellCodec, RawCell, SUPPORTED_LINK_VERSIONS, encode_versions};
use super::error::ChannelError;
use super::handshake::{ClockSkew, DEFAULT_HANDSHAKE_TIMEOUT, netinfo_timestamp, versions_list};
use super::initiator_certs::{InitiatorCerts, verify_initiator_certs};
use super::relay_keys::RelayLinkKeys;
use super::transcript::Transcript;

/// What the responder knows before the handshake starts.
#[derive(Debug, Clone)]
pub struct ResponderParams {
    /// Our keys and certificates.
    pub keys: Arc<RelayLinkKeys>,
    /// The initiator's address as we see it (the TCP peer), which our
    /// NETINFO reports; `None` sends 0.0.0.0.
    pub peer_addr: Option<IpAddr>,
    /// Our own addresses, which our NETINFO lists (tor-spec §4.5).
    pub my_addrs: Vec<IpAddr>,
    /// How long the handshake may take (see
    /// [`ResponderHandshake::deadline`]).
    pub timeout: Duration,
}

impl ResponderParams {
    /// Parameters with no addresses and the default timeout.
    pub fn new(keys: Arc<RelayLinkKeys>) -> Self {
        ResponderParams {
            keys,
            peer_addr: None,
            my_addrs: Vec::new(),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Report `addr` as the initiator's address.
    pub fn with_peer_addr(mut self, addr: IpAddr) -> Self {
        self.peer_addr = Some(addr);
        self
    }

    /// List `addrs` as ours.
    pub fn with_my_addrs(mut self, addrs: Vec<IpAddr>) -> Self {
        self.my_addrs = addrs;
        self
    }

    /// Give the handshake `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Who opened the channel, as far as the handshake proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// It did not authenticate: a client or a bridge. Its circuits may not
    /// be extended by naming it, and a C-tor exit would refuse BEGIN from
    /// it over a relay's circuit.
    Unauthenticated,
    /// A relay, with the identities its CERTS and AUTHENTICATE proved.
    Relay(VerifiedIdentity),
}

/// The result of a successful responder handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponderOutcome {
    /// The negotiated link protocol version (4 or 5).
    pub link_version: u16,
    /// Who the initiator proved to be.
    pub initiator: Initiator,
    /// The addresses the initiator lists as its own in NETINFO (empty for
    /// clients).
    pub peer_addrs: Vec<IpAddr>,
    /// Our address as the initiator sees it, from its NETINFO.
    pub our_addr_seen_by_peer: Option<IpAddr>,
    /// The initiator's NETINFO timestamp, `None` if 0 (clients send 0).
    pub peer_time: Option<SystemTime>,
    /// The initiator's clock skew, if it sent a timestamp.
    pub clock_skew: Option<ClockSkew>,
}

/// A finished responder handshake: its result, the codec to go on
/// framing cells with, and output not yet handed out.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenedResponder {
    /// The result.
    pub outcome: ResponderOutcome,
    /// The codec, set to the link version, holding any bytes that came
    /// after the initiator's NETINFO.
    pub codec: CellCodec,
    /// Bytes still to send, unless already polled.
    pub unsent: Vec<u8>,
}

/// What the driver must export from the TLS session for the initiator's
/// AUTHENTICATE to be checked (tor-spec §4.4.2, TLSSECRETS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsExportRequest {
    /// The exporter label.
    pub label: &'static [u8],
    /// The exporter context: the initiator's CID.
    pub context: [u8; 32],
    /// The output length.
    pub len: usize,
}

/// Where the handshake is.
#[derive(Debug)]
enum State {
    /// Waiting for the initiator's VERSIONS (tor-spec §4.1).
    AwaitVersions,
    /// Our flight is sent; waiting for CERTS or NETINFO.
    AwaitInitiator,
    /// The initiator's CERTS checked out; waiting for the driver's TLS
    /// exporter value.
    AwaitTlsExport(Box<InitiatorCerts>),
    /// Waiting for AUTHENTICATE (or a NETINFO that gives up on it).
    AwaitAuthenticate(Box<InitiatorCerts>, [u8; 32]),
    /// Authenticated; waiting for NETINFO.
    AwaitNetinfo(VerifiedIdentity),
    /// Done.
    Open(ResponderOutcome),
    /// An error ended it.
    Failed,
}

impl State {
    /// What this state waits for, for error messages.
    fn expecting(&self) -> &'static str {
        match self {
            State::AwaitVersions => "VERSIONS",
            State::AwaitInitiator => "CERTS or NETINFO",
            State::AwaitTlsExport(_) => "nothing: the TLS exporter value",
            State::AwaitAuthenticate(..) => "AUTHENTICATE or NETINFO",
            State::AwaitNetinfo(_) => "NETINFO",
            State::Open(_) => "nothing: the handshake is over",
            State::Failed => "nothing: the handshake failed",
        }
    }
}

/// The responder side of the link handshake (tor-spec §4). See the module
/// documentation.
#[derive(Debug)]
pub struct ResponderHandshake {
    /// Where we are.
    state: State,
    /// Framing of the connection.
    codec: CellCodec,
    /// Bytes to send.
    transmit: Vec<u8>,
    /// Our keys, addresses and the peer's address.
    params: ResponderParams,
    /// The AUTH_CHALLENGE challenge.
    challenge: [u8; 32],
    /// The digest of what we sent before NETINFO (SLOG).
    sent: Transcript,
    /// The digest of what the initiator sent before AUTHENTICATE (CLOG).
    received: Transcript,
    /// When the driver should give up.
    deadline: Instant,
}

impl ResponderHandshake {
    /// Start a handshake at `now`, drawing the AUTH_CHALLENGE challenge
    /// from `rng`. Nothing is sent before the initiator's VERSIONS.
    pub fn new<R: CryptoRng + ?Sized>(params: ResponderParams, rng: &mut R, now: Instant) -> Self {
        let mut challenge = [0; 32];
        rng.fill_bytes(&mut challenge);
        ResponderHandshake {
            state: State::AwaitVersions,
            codec: CellCodec::new(),
            transmit: Vec::new(),
            deadline: now.checked_add(params.timeout).unwrap_or(now),
            params,
            challenge,
            sent: Transcript::new(),
            received: Transcript::new(),
        }
    }

    /// When the driver should abandon the handshake.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Bytes to write to the connection, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    /// The TLS exporter value the handshake waits for, if it waits for one.
    pub fn tls_export_request(&self) -> Option<TlsExportRequest> {
        match &self.state {
            State::AwaitTlsExport(c) => Some(TlsExportRequest {
                label: AUTH0003_EXPORTER_LABEL,
                context: c.rsa_id_sha256,
                len: 32,
            }),
            _ => None,
        }
    }

    /// True once the initiator's NETINFO has been accepted.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// True if an error has ended the handshake.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// The result, once open.
    pub fn outcome(&self) -> Option<&ResponderOutcome> {
        match &self.state {
            State::Open(o) => Some(o),
            _ => None,
        }
    }

    /// The negotiated link version, once the initiator's VERSIONS has come.
    pub fn link_version(&self) -> Option<u16> {
        self.codec.link_version()
    }

    /// Bytes read from the connection at wall-clock time `now` (against
    /// which certificates are checked, the clock skew measured, and our
    /// NETINFO timestamped).
    ///
    /// Cells are processed until the handshake is open or waits for the
    /// TLS exporter; the rest stays buffered. An error ends the handshake:
    /// close the connection.
    pub fn handle_bytes(&mut self, now: SystemTime, data: &[u8]) -> Result<(), ChannelError> {
        if matches!(self.state, State::Failed) {
            return Err(ChannelError::Internal(
                "input to a handshake that has failed".into(),
            ));
        }
        let r = self.codec.handle_bytes(data).and_then(|()| self.drain(now));
        self.fail_on_err(r)
    }

    /// The TLS exporter value asked for by
    /// [`tls_export_request`](Self::tls_export_request), at `now`;
    /// processing of buffered input resumes.
    pub fn handle_tls_export(
        &mut self,
        now: SystemTime,
        material: [u8; 32],
    ) -> Result<(), ChannelError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::AwaitTlsExport(certs) = state else {
            let e = ChannelError::Internal(format!(
                "TLS exporter value given while expecting {}",
                state.expecting()
            ));
            // A misuse, not a reason to fail a healthy handshake.
            self.state = state;
            return Err(e);
        };
        self.state = State::AwaitAuthenticate(certs, material);
        let r = self.drain(now);
        self.fail_on_err(r)
    }

    /// Take the result, the codec and unsent output of an open handshake.
    /// Fails (internal error) if the handshake is not open.
    pub fn finish(self) -> Result<OpenedResponder, ChannelError> {
        match self.state {
            State::Open(outcome) => Ok(OpenedResponder {
                outcome,
                codec: self.codec,
                unsent: self.transmit,
            }),
            s => Err(ChannelError::Internal(format!(
                "finish() on a handshake that is not open (expecting {})",
                s.expecting()
            ))),
        }
    }

    /// Mark the handshake failed if `r` is an error.
    fn fail_on_err(&mut self, r: Result<(), ChannelError>) -> Result<(), ChannelError> {
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// Process buffered cells until more input is needed, the handshake is
    /// open, or it waits for the TLS exporter.
    fn drain(&mut self, now: SystemTime) -> Result<(), ChannelError> {
        while !matches!(self.state, State::Open(_) | State::AwaitTlsExport(_)) {
            let wide = self.codec.link_version().is_some();
            let Some(raw) = self.codec.poll_raw_cell()? else {
                break;
            };
            self.process(now, &raw, wide)?;
        }
        Ok(())
    }

    /// Handle one framed cell (`wide`: framed with 4-byte circuit ids).
    fn process(&mut self, now: SystemTime, raw: &RawCell, wide: bool) -> Result<(), ChannelError> {
        // tor-spec §4.4.2: CLOG covers every cell the initiator sent before
        // AUTHENTICATE (C-tor records all but AUTHENTICATE).
        if raw.cmd() != ChanCmd::AUTHENTICATE {
            self.received.record_raw(raw, wide);
        }
        let (_, msg) = raw.parse()?.into_circid_and_msg();
        let cmd = msg.cmd();
        let unexpected = |state: &State| ChannelError::UnexpectedCell {
            cmd,
            expecting: state.expecting(),
        };
        match (&self.state, msg) {
            // tor-spec §4.1: VPADDING at any time.
            (_, AnyChanMsg::Vpadding(_)) => Ok(()),
            (State::AwaitVersions, AnyChanMsg::Versions(v)) => self.on_versions(now, &v),
            // tor-spec §4: AUTHORIZE may come before VERSIONS; it means
            // nothing yet.
            (State::AwaitVersions, AnyChanMsg::Unrecognized(_)) if cmd == ChanCmd::AUTHORIZE => {
                Ok(())
            }
            (State::AwaitVersions, _) => Err(unexpected(&self.state)),
            // tor-spec §4.1: later VERSIONS cells are ignored.
            (_, AnyChanMsg::Versions(_)) => Ok(()),
            (State::AwaitInitiator, AnyChanMsg::Certs(c)) => {
                let certs = verify_initiator_certs(&certs_msg_body(&c)?, now)?;
                self.state = State::AwaitTlsExport(Box::new(certs));
                Ok(())
            }
            (State::AwaitAuthenticate(certs, tlssecrets), AnyChanMsg::Authenticate(a)) => {
                let identity = self.check_authenticate(certs, tlssecrets, &a)?;
                self.received.close();
                self.state = State::AwaitNetinfo(identity);
                Ok(())
            }
            // A client's NETINFO; or, as C-tor allows, an initiator that
            // sent CERTS and gave up on authenticating.
            (State::AwaitInitiator | State::AwaitAuthenticate(..), AnyChanMsg::Netinfo(n)) => {
                self.on_netinfo(now, Initiator::Unauthenticated, &n)
            }
            (State::AwaitNetinfo(id), AnyChanMsg::Netinfo(n)) => {
                let id = *id;
                self.on_netinfo(now, Initiator::Relay(id), &n)
            }
            // tor-spec §3: unknown variable-length commands are dropped.
            (
                State::AwaitInitiator | State::AwaitAuthenticate(..) | State::AwaitNetinfo(_),
                AnyChanMsg::Unrecognized(_),
            ) if cmd.is_var_cell() => Ok(()),
            (state, _) => Err(unexpected(state)),
        }
    }

    /// The initiator's VERSIONS: pick the highest common version (tor-spec
    /// §4.1) and send VERSIONS, CERTS, AUTH_CHALLENGE and NETINFO.
    fn on_versions(&mut self, now: SystemTime, v: &Versions) -> Result<(), ChannelError> {
        let Some(version) = v.best_shared_link_protocol(SUPPORTED_LINK_VERSIONS) else {
            return Err(ChannelError::NoCommonVersion {
                ours: SUPPORTED_LINK_VERSIONS.to_vec(),
                theirs: versions_list(v),
            });
        };
        let mut flight = Vec::new();
        // Our VERSIONS goes out with 2-byte circuit ids, the rest with 4.
        encode_versions(SUPPORTED_LINK_VERSIONS, &mut flight)?;
        self.codec.set_link_version(version)?;
        let certs = self.params.keys.responder_certs();
        self.codec
            .encode_cell(ChanCell::new(None, certs.into()), &mut flight)?;
        let challenge =
            AuthChallenge::new(self.challenge, vec![AUTH_METHOD_ED25519_SHA256_RFC5705]);
        self.codec
            .encode_cell(ChanCell::new(None, challenge.into()), &mut flight)?;
        // SLOG: "up to and including the AUTH_CHALLENGE cell".
        self.sent.record(&flight);
        self.sent.close();
        let netinfo: AnyChanCell = ChanCell::new(
            None,
            Netinfo::from_relay(
                netinfo_timestamp(now),
                self.params.peer_addr,
                self.params.my_addrs.clone(),
            )
            .into(),
        );
        self.codec.encode_cell(netinfo, &mut flight)?;
        self.transmit.extend_from_slice(&flight);
        self.state = State::AwaitInitiator;
        Ok(())
    }

    /// Check AUTHENTICATE against what we expect (tor-spec §4.4.2).
    fn check_authenticate(
        &self,
        certs: &InitiatorCerts,
        tlssecrets: &[u8; 32],
        msg: &Authenticate,
    ) -> Result<VerifiedIdentity, ChannelError> {
        let keys = &self.params.keys;
        let expected = Auth0003 {
            cid: certs.rsa_id_sha256,
            sid: *keys.rsa_id_sha256(),
            cid_ed: certs.identity.ed25519.into(),
            sid_ed: keys.ed_identity().into(),
            slog: self.sent.digest(),
            clog: self.received.digest(),
            scert: tls_cert_digest(keys.tls_cert_der()),
            tlssecrets: *tlssecrets,
        };
        expected.verify(msg, &certs.auth_key)?;
        Ok(certs.identity)
    }

    /// The initiator's NETINFO (tor-spec §4.5): record it and open.
    fn on_netinfo(
        &mut self,
        now: SystemTime,
        initiator: Initiator,
        n: &Netinfo,
    ) -> Result<(), ChannelError> {
        let link_version = self
            .codec
            .link_version()
            .ok_or_else(|| ChannelError::Internal("NETINFO accepted before VERSIONS".into()))?;
        let peer_time = n.timestamp();
        self.state = State::Open(ResponderOutcome {
            link_version,
            initiator,
            peer_addrs: n.my_addrs().to_vec(),
            our_addr_seen_by_peer: n.their_addr().copied(),
            peer_time,
            clock_skew: peer_time.map(|t| ClockSkew::between(t, now)),
        });
        Ok(())
    }
}
