//! The client (initiator) side of the in-protocol link handshake
//! (tor-spec §4), as a sans-IO state machine.
//!
//! The driver does TLS (rustls) and gives us the DER certificate the relay
//! presented. Then:
//!
//! ```text
//!   we                                   relay
//!   VERSIONS (4, 5)          ---->
//!                            <----       VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO
//!   NETINFO (timestamp 0)    ---->
//! ```
//!
//! We pick the highest common link version (tor-spec §4.1), verify the CERTS
//! cell against the TLS certificate and the identity we meant to reach
//! (tor-spec §4.2, [`super::certs`]), ignore AUTH_CHALLENGE (tor-spec §4.3: a
//! client does not authenticate), and read the relay's NETINFO (tor-spec
//! §4.5). VPADDING may come at any time. Any other cell, or one out of
//! order, is a protocol violation ("no other cell type is allowed to
//! intervene", tor-spec §4).
//!
//! A relay that initiates a channel (to extend a circuit) authenticates
//! itself as well: given [`HandshakeParams::with_relay_auth`], we answer
//! the AUTH_CHALLENGE with CERTS and AUTHENTICATE and send a relay's
//! NETINFO right after them (tor-spec §4.4; see [`super::initiator_auth`]).
//!
//! Feed input with [`ClientHandshake::handle_bytes`] (or, for a driver that
//! frames cells itself and does not authenticate,
//! [`ClientHandshake::handle_cell`]); send what
//! [`ClientHandshake::poll_transmit`] returns; when
//! [`ClientHandshake::is_open`], take the result and the codec (which keeps
//! any bytes that followed the relay's NETINFO) with
//! [`ClientHandshake::finish`]. Timeouts are the driver's:
//! [`ClientHandshake::deadline`] says when to give up.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use tor_cell::chancell::msg::{AnyChanMsg, Netinfo, Versions};
use tor_cell::chancell::{AnyChanCell, ChanCell, ChanCmd, ChanMsg};

use super::certs::{
    ExpectedIdentity, VerifiedIdentity, certs_msg_body, tls_cert_digest, verify_responder_chain,
};
use super::codec::{CellCodec, SUPPORTED_LINK_VERSIONS, encode_versions};
use super::error::ChannelError;
use super::initiator_auth::{AuthState, InitiatorAuth};

/// How long a driver should give the handshake by default: C-tor and arti
/// allow a channel handshake a few tens of seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the client knows before the handshake starts.
#[derive(Debug, Clone)]
pub struct HandshakeParams {
    /// The relay we mean to reach.
    pub expected: ExpectedIdentity,
    /// The DER certificate the relay presented in the TLS handshake.
    pub peer_tls_cert: Vec<u8>,
    /// The relay's address as we connected to it, which our NETINFO reports
    /// (tor-spec §4.5 "Other OR's address"); `None` sends 0.0.0.0.
    pub peer_addr: Option<IpAddr>,
    /// How long the handshake may take (see [`ClientHandshake::deadline`]).
    pub timeout: Duration,
    /// For a relay: authenticate with these keys (tor-spec §4.4). `None`
    /// for a client, which does not authenticate.
    pub relay_auth: Option<InitiatorAuth>,
}

impl HandshakeParams {
    /// Parameters with no peer address and the default timeout.
    pub fn new(expected: ExpectedIdentity, peer_tls_cert: Vec<u8>) -> Self {
        HandshakeParams {
            expected,
            peer_tls_cert,
            peer_addr: None,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            relay_auth: None,
        }
    }

    /// Report `addr` as the relay's address in our NETINFO.
    pub fn with_peer_addr(mut self, addr: IpAddr) -> Self {
        self.peer_addr = Some(addr);
        self
    }

    /// Give the handshake `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Authenticate as the relay of `auth` (see the module documentation).
    pub fn with_relay_auth(mut self, auth: InitiatorAuth) -> Self {
        self.relay_auth = Some(auth);
        self
    }
}

/// How the relay's clock differs from ours, from its NETINFO timestamp
/// (tor-spec §4.5). One-second granularity, and the network delay makes
/// the peer look behind by that much: treat a few seconds as no skew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSkew {
    /// The relay's clock is ahead of ours (or equal: `PeerAhead(0)`).
    PeerAhead(Duration),
    /// The relay's clock is behind ours.
    PeerBehind(Duration),
}

impl ClockSkew {
    /// The skew of a peer that said `peer_time` when we read `now`.
    pub fn between(peer_time: SystemTime, now: SystemTime) -> Self {
        match peer_time.duration_since(now) {
            Ok(ahead) => ClockSkew::PeerAhead(ahead),
            Err(e) => ClockSkew::PeerBehind(e.duration()),
        }
    }
}

/// The result of a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeOutcome {
    /// The negotiated link protocol version (4 or 5).
    pub link_version: u16,
    /// The relay's verified identities (RSA and Ed25519) and when its
    /// certificates expire.
    pub peer: VerifiedIdentity,
    /// The relay's own addresses, from its NETINFO ("this OR's address");
    /// the caller may check them against the consensus (tor-spec §5.3.1).
    pub peer_addrs: Vec<IpAddr>,
    /// Our address as the relay sees it, from its NETINFO ("other OR's
    /// address"), if it gave a usable one. Not to be trusted blindly.
    pub our_addr_seen_by_peer: Option<IpAddr>,
    /// The relay's NETINFO timestamp, `None` if it sent 0.
    pub peer_time: Option<SystemTime>,
    /// The relay's clock skew, if it sent a timestamp.
    pub clock_skew: Option<ClockSkew>,
    /// Whether we authenticated (sent CERTS and AUTHENTICATE): only with
    /// [`HandshakeParams::with_relay_auth`], and only if the responder's
    /// AUTH_CHALLENGE offered method 3.
    pub authenticated: bool,
}

/// A finished handshake: its result, the codec to go on framing cells with,
/// and whatever output [`ClientHandshake::poll_transmit`] had not yet
/// handed out.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenedChannel {
    /// The result.
    pub outcome: HandshakeOutcome,
    /// The codec, set to the negotiated link version, holding any bytes
    /// that came after the relay's NETINFO.
    pub codec: CellCodec,
    /// Bytes still to send (our NETINFO, unless already polled).
    pub unsent: Vec<u8>,
}

/// Where the handshake is.
#[derive(Debug)]
enum State {
    /// We sent VERSIONS; waiting for theirs (tor-spec §4.1).
    AwaitVersions,
    /// Waiting for CERTS (tor-spec §4.2).
    AwaitCerts,
    /// Certificates verified; waiting for NETINFO, perhaps after one
    /// AUTH_CHALLENGE (tor-spec §4.3, §4.5).
    AwaitNetinfo {
        /// The link version.
        link_version: u16,
        /// What the certificates proved.
        peer: VerifiedIdentity,
        /// Whether an AUTH_CHALLENGE has come already.
        auth_challenge_seen: bool,
    },
    /// Done.
    Open(HandshakeOutcome),
    /// An error ended it.
    Failed,
}

impl State {
    /// What this state waits for, for error messages.
    fn expecting(&self) -> &'static str {
        match self {
            State::AwaitVersions => "VERSIONS",
            State::AwaitCerts => "CERTS",
            State::AwaitNetinfo {
                auth_challenge_seen: false,
                ..
            } => "AUTH_CHALLENGE or NETINFO",
            State::AwaitNetinfo { .. } => "NETINFO",
            State::Open(_) => "nothing: the handshake is over",
            State::Failed => "nothing: the handshake failed",
        }
    }
}

/// The client side of the link handshake (tor-spec §4). See the module
/// documentation.
#[derive(Debug)]
pub struct ClientHandshake {
    /// Where we are.
    state: State,
    /// Framing of the connection.
    codec: CellCodec,
    /// Bytes to send.
    transmit: Vec<u8>,
    /// The relay we mean to reach.
    expected: ExpectedIdentity,
    /// SHA-256 of the relay's TLS certificate.
    tls_cert_sha256: [u8; 32],
    /// The relay's address for our NETINFO.
    peer_addr: Option<IpAddr>,
    /// A relay's authentication, if we authenticate.
    auth: Option<AuthState>,
    /// Whether our NETINFO has gone out.
    netinfo_sent: bool,
    /// When the driver should give up.
    deadline: Instant,
}

impl ClientHandshake {
    /// Start a handshake at `now`: our VERSIONS cell (offering 4 and 5) is
    /// ready in [`poll_transmit`](Self::poll_transmit).
    pub fn new(params: HandshakeParams, now: Instant) -> Self {
        let mut transmit = Vec::new();
        let state = match encode_versions(SUPPORTED_LINK_VERSIONS, &mut transmit) {
            Ok(()) => State::AwaitVersions,
            // Cannot happen with two versions; fail closed rather than panic.
            Err(_) => State::Failed,
        };
        let mut auth = params.relay_auth.map(AuthState::new);
        if let Some(a) = &mut auth {
            a.record_sent(&transmit);
        }
        ClientHandshake {
            state,
            codec: CellCodec::new(),
            transmit,
            expected: params.expected,
            tls_cert_sha256: tls_cert_digest(&params.peer_tls_cert),
            peer_addr: params.peer_addr,
            auth,
            netinfo_sent: false,
            deadline: now.checked_add(params.timeout).unwrap_or(now),
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

    /// True once the relay's NETINFO has been accepted.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// True if an error has ended the handshake.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// The result, once open.
    pub fn outcome(&self) -> Option<&HandshakeOutcome> {
        match &self.state {
            State::Open(o) => Some(o),
            _ => None,
        }
    }

    /// The negotiated link version, once the relay's VERSIONS has come.
    pub fn link_version(&self) -> Option<u16> {
        self.codec.link_version()
    }

    /// Bytes read from the connection at wall-clock time `now` (against
    /// which certificates are checked and the clock skew measured).
    ///
    /// Cells are processed until the handshake is open; bytes after the
    /// relay's NETINFO stay in the codec for the channel. An error ends the
    /// handshake: close the connection.
    pub fn handle_bytes(&mut self, now: SystemTime, data: &[u8]) -> Result<(), ChannelError> {
        self.check_running(true)?;
        let r = self.codec.handle_bytes(data).and_then(|()| self.drain(now));
        self.fail_on_err(r)
    }

    /// One cell, for a driver that frames cells itself (it must switch to
    /// the link version's framing once [`link_version`](Self::link_version)
    /// is known). Same contract as [`handle_bytes`](Self::handle_bytes).
    /// Not for a relay that authenticates: its authenticator covers the
    /// cells' bytes as received (an internal error).
    pub fn handle_cell(&mut self, now: SystemTime, cell: AnyChanCell) -> Result<(), ChannelError> {
        self.check_running(false)?;
        if self.auth.is_some() {
            return Err(ChannelError::Internal(
                "an authenticating handshake takes bytes (handle_bytes), not cells".into(),
            ));
        }
        let r = self.process(now, cell);
        self.fail_on_err(r)
    }

    /// Take the result, the codec and unsent output of an open handshake.
    /// Fails (internal error) if the handshake is not open; the handshake is
    /// consumed either way.
    pub fn finish(self) -> Result<OpenedChannel, ChannelError> {
        match self.state {
            State::Open(outcome) => Ok(OpenedChannel {
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

    /// Refuse input after failure, and cells after opening. Bytes after
    /// opening are allowed (`bytes_ok`): they are buffered for the channel.
    fn check_running(&self, bytes_ok: bool) -> Result<(), ChannelError> {
        match self.state {
            State::Failed => Err(ChannelError::Internal(
                "input to a handshake that has failed".into(),
            )),
            State::Open(_) if !bytes_ok => Err(ChannelError::Internal(
                "cell given to a handshake that is open; give it to the channel".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Mark the handshake failed if `r` is an error.
    fn fail_on_err(&mut self, r: Result<(), ChannelError>) -> Result<(), ChannelError> {
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// Process buffered cells until more input is needed or the handshake
    /// is open.
    fn drain(&mut self, now: SystemTime) -> Result<(), ChannelError> {
        while !self.is_open() {
            let wide = self.codec.link_version().is_some();
            let Some(raw) = self.codec.poll_raw_cell()? else {
                break;
            };
            if let Some(a) = &mut self.auth {
                a.record_received(&raw, wide);
            }
            let cell = raw.parse()?;
            self.process(now, cell)?;
        }
        Ok(())
    }

    /// Handle one cell.
    fn process(&mut self, now: SystemTime, cell: AnyChanCell) -> Result<(), ChannelError> {
        let (circ_id, msg) = cell.into_circid_and_msg();
        let cmd = msg.cmd();
        // The codec checks this for cells it frames; `handle_cell` callers
        // may not have.
        if !cmd.accepts_circid_val(circ_id) {
            return Err(ChannelError::BadCircId {
                cmd,
                circ_id: tor_cell::chancell::CircId::get_or_zero(circ_id),
            });
        }
        let unexpected = |state: &State| ChannelError::UnexpectedCell {
            cmd,
            expecting: state.expecting(),
        };
        match (&mut self.state, msg) {
            // tor-spec §4.1: "either side may send VPADDING cells at any
            // time".
            (_, AnyChanMsg::Vpadding(_)) => Ok(()),
            (State::AwaitVersions, AnyChanMsg::Versions(v)) => self.on_versions(&v),
            // tor-spec §4: "the first cell must be VERSIONS, VPADDING, or
            // AUTHORIZE"; AUTHORIZE is reserved and means nothing yet.
            (State::AwaitVersions, AnyChanMsg::Unrecognized(_)) if cmd == ChanCmd::AUTHORIZE => {
                Ok(())
            }
            (State::AwaitVersions, _) => Err(unexpected(&self.state)),
            // tor-spec §4.1: "Any VERSIONS cells sent after the first
            // VERSIONS cell MUST be ignored."
            (_, AnyChanMsg::Versions(_)) => Ok(()),
            (State::AwaitCerts, AnyChanMsg::Certs(c)) => {
                // tor-spec §4.2: as soon as it has the CERTS cell, the
                // initiator knows whether the responder is authenticated.
                let body = certs_msg_body(&c)?;
                let (peer, sid) =
                    verify_responder_chain(&body, &self.tls_cert_sha256, &self.expected, now)?;
                if let Some(a) = &mut self.auth {
                    a.set_sid(sid);
                }
                let link_version = self.codec.link_version().ok_or_else(|| {
                    ChannelError::Internal("CERTS accepted before VERSIONS".into())
                })?;
                self.state = State::AwaitNetinfo {
                    link_version,
                    peer,
                    auth_challenge_seen: false,
                };
                Ok(())
            }
            // tor-spec §4.3: a client that does not authenticate ignores the
            // AUTH_CHALLENGE; a relay answers it (tor-spec §4.4). A second
            // one is out of protocol.
            (
                State::AwaitNetinfo {
                    auth_challenge_seen,
                    peer,
                    ..
                },
                AnyChanMsg::AuthChallenge(challenge),
            ) if !*auth_challenge_seen => {
                *auth_challenge_seen = true;
                let peer = *peer;
                if let Some(a) = &mut self.auth {
                    a.answer_challenge(
                        &challenge,
                        &peer,
                        &self.tls_cert_sha256,
                        &self.codec,
                        &mut self.transmit,
                    )?;
                    // C-tor sends its NETINFO right after AUTHENTICATE.
                    self.send_netinfo(now)?;
                }
                Ok(())
            }
            (
                State::AwaitNetinfo {
                    link_version, peer, ..
                },
                AnyChanMsg::Netinfo(n),
            ) => {
                let (link_version, peer) = (*link_version, *peer);
                self.on_netinfo(now, link_version, peer, &n)
            }
            // Unknown variable-length commands are dropped (tor-spec §3:
            // "Upon receiving any other value for the command field, an OR
            // must drop the cell"), as C-tor does during its handshake.
            (State::AwaitCerts | State::AwaitNetinfo { .. }, AnyChanMsg::Unrecognized(_))
                if cmd.is_var_cell() =>
            {
                Ok(())
            }
            (state, _) => Err(unexpected(state)),
        }
    }

    /// The relay's VERSIONS: choose "the highest number contained both in
    /// the VERSIONS cell they sent and in the versions cell they received"
    /// (tor-spec §4.1).
    fn on_versions(&mut self, v: &Versions) -> Result<(), ChannelError> {
        let Some(version) = v.best_shared_link_protocol(SUPPORTED_LINK_VERSIONS) else {
            return Err(ChannelError::NoCommonVersion {
                ours: SUPPORTED_LINK_VERSIONS.to_vec(),
                theirs: versions_list(v),
            });
        };
        self.codec.set_link_version(version)?;
        self.state = State::AwaitCerts;
        Ok(())
    }

    /// The relay's NETINFO (tor-spec §4.5): record it, answer with ours,
    /// and open.
    fn on_netinfo(
        &mut self,
        now: SystemTime,
        link_version: u16,
        peer: VerifiedIdentity,
        n: &Netinfo,
    ) -> Result<(), ChannelError> {
        let peer_time = n.timestamp();
        let outcome = HandshakeOutcome {
            link_version,
            peer,
            peer_addrs: n.my_addrs().to_vec(),
            our_addr_seen_by_peer: n.their_addr().copied(),
            peer_time,
            clock_skew: peer_time.map(|t| ClockSkew::between(t, now)),
            authenticated: self.auth.as_ref().is_some_and(AuthState::authenticated),
        };
        self.send_netinfo(now)?;
        self.state = State::Open(outcome);
        Ok(())
    }

    /// Our NETINFO, once (tor-spec §4.5): a client's sends timestamp 0 and
    /// lists no address of ours ("Clients SHOULD send "0" as their
    /// timestamp"); a relay's sends the time and its addresses.
    fn send_netinfo(&mut self, now: SystemTime) -> Result<(), ChannelError> {
        if self.netinfo_sent {
            return Ok(());
        }
        let netinfo = match &self.auth {
            Some(a) => a.netinfo(now, self.peer_addr),
            None => Netinfo::from_client(self.peer_addr),
        };
        let ours: AnyChanCell = ChanCell::new(None, netinfo.into());
        self.codec.encode_cell(ours, &mut self.transmit)?;
        self.netinfo_sent = true;
        Ok(())
    }
}

/// A NETINFO timestamp for `now`: seconds since 1970, 0 if not
/// representable (tor-spec §4.5; 32 bits until 2106).
pub(super) fn netinfo_timestamp(now: SystemTime) -> u32 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| u32::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// The versions a VERSIONS message lists (tor-cell keeps them private; its
/// encoding is just the list).
pub(super) fn versions_list(v: &Versions) -> Vec<u16> {
    let mut body = Vec::new();
    if AnyChanMsg::Versions(v.clone())
        .encode_onto(&mut body)
        .is_err()
    {
        return Vec::new();
    }
    body.chunks_exact(2)
        .map(|c| c.iter().fold(0_u16, |acc, &b| (acc << 8) | u16::from(b)))
        .collect()
}
