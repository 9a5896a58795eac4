//! The Conflux link handshake, one leg at a time (prop 329 §2.2, §2.4,
//! §4.2.1).
//!
//! The client (initiator) sends CONFLUX_LINK on each leg, the exit
//! (responder) answers CONFLUX_LINKED with the same nonce, and the client
//! closes the three-way handshake with CONFLUX_LINKED_ACK. Each end
//! measures the leg's initial RTT: the client from LINK sent to LINKED
//! received, the exit from LINKED sent to LINKED_ACK received (prop 329
//! §2.2 "\[LINKING_EXIT\]").
//!
//! [`ClientLinkHandshake`] and [`ExitLinkHandshake`] are the per-leg state
//! machines; [`ConfluxSet`](super::ConfluxSet) drives them, and a simulated
//! exit or Braid's own exit can use [`ExitLinkHandshake`] directly.

use std::fmt;
use std::time::{Duration, Instant};

use rand::CryptoRng;
use subtle::ConstantTimeEq as _;
use tor_bytes::{Reader, Writer as _};
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::conflux::{V1DesiredUx, V1LinkPayload, V1Nonce};
use tor_cell::relaycell::msg::{ConfluxLink, ConfluxLinked, ConfluxLinkedAck};
use zeroize::Zeroize as _;

use super::error::ConfluxError;
use crate::ids::LegId;

/// Length of a v1 nonce (prop 329 §2.2).
pub const NONCE_LEN: usize = 32;

/// The 256-bit secret shared by every leg of a set (prop 329 §2.2).
///
/// Compared in constant time, over all 32 bytes (C-tor compared one byte,
/// TROVE-2026-004). Never printed: `Debug` shows no byte of it ("MUST NOT
/// be logged"). Wiped on drop.
#[derive(Clone)]
pub struct ConfluxNonce([u8; NONCE_LEN]);

impl ConfluxNonce {
    /// A fresh random nonce for a new set.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0_u8; NONCE_LEN];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// A nonce from its bytes.
    pub fn from_bytes(bytes: [u8; NONCE_LEN]) -> Self {
        Self(bytes)
    }

    /// The nonce's bytes (for a pool keyed by nonce; never log them).
    pub fn as_bytes(&self) -> &[u8; NONCE_LEN] {
        &self.0
    }

    /// Constant-time equality over all 32 bytes.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// As tor-cell's type.
    fn to_v1(&self) -> Result<V1Nonce, ConfluxError> {
        Reader::from_slice(&self.0)
            .extract::<V1Nonce>()
            .map_err(|e| ConfluxError::Encode {
                cmd: RelayCmd::CONFLUX_LINK,
                reason: e.to_string(),
            })
    }

    /// From tor-cell's type.
    fn from_v1(n: &V1Nonce) -> Result<Self, ConfluxError> {
        let mut v: Vec<u8> = Vec::with_capacity(NONCE_LEN);
        let bad = |reason: String| ConfluxError::Encode {
            cmd: RelayCmd::CONFLUX_LINKED,
            reason,
        };
        v.write(n).map_err(|e| bad(e.to_string()))?;
        let mut out = [0_u8; NONCE_LEN];
        if v.len() != NONCE_LEN {
            v.zeroize();
            return Err(bad("nonce is not 32 bytes".into()));
        }
        out.copy_from_slice(&v);
        v.zeroize();
        Ok(Self(out))
    }
}

impl PartialEq for ConfluxNonce {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}
impl Eq for ConfluxNonce {}

impl std::hash::Hash for ConfluxNonce {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for ConfluxNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfluxNonce(..)")
    }
}

impl Drop for ConfluxNonce {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The v1 payload of a CONFLUX_LINK or CONFLUX_LINKED (prop 329 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The set's nonce.
    pub nonce: ConfluxNonce,
    /// The sender's highest absolute sequence number sent (0 on a new set).
    pub last_seqno_sent: u64,
    /// The sender's last sequence number delivered in order (0 on a new
    /// set).
    pub last_seqno_recv: u64,
    /// The scheduling properties the sender wants for the data it
    /// receives.
    pub desired_ux: V1DesiredUx,
}

impl LinkInfo {
    /// The payload of a LINK or LINKED.
    pub fn to_payload(&self) -> Result<V1LinkPayload, ConfluxError> {
        let mut p = V1LinkPayload::new(self.nonce.to_v1()?, self.desired_ux);
        p.set_last_seqno_sent(self.last_seqno_sent);
        p.set_last_seqno_recv(self.last_seqno_recv);
        Ok(p)
    }

    /// Read a LINK or LINKED payload.
    pub fn from_payload(p: &V1LinkPayload) -> Result<Self, ConfluxError> {
        Ok(Self {
            nonce: ConfluxNonce::from_v1(p.nonce())?,
            last_seqno_sent: *p.last_seqno_sent(),
            last_seqno_recv: *p.last_seqno_recv(),
            desired_ux: *p.desired_ux(),
        })
    }

    /// The payload of a CONFLUX_LINK: what an exit's driver reads to find
    /// the set by nonce before handing the message to it.
    pub fn from_link(m: &ConfluxLink) -> Result<Self, ConfluxError> {
        Self::from_payload(m.payload())
    }
}

/// State of a client leg's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// LINK not sent yet.
    Created,
    /// LINK sent; waiting for LINKED.
    LinkSent { sent_at: Instant, deadline: Instant },
    /// LINKED accepted; LINKED_ACK produced.
    Linked { rtt: Duration },
    /// Refused or timed out.
    Failed,
}

/// What an accepted CONFLUX_LINKED yields.
#[derive(Debug)]
pub struct LinkedOutcome {
    /// The leg's RTT, LINK sent to LINKED received.
    pub rtt: Duration,
    /// The exit's payload (its sequence numbers and desired UX).
    pub peer: LinkInfo,
    /// The LINKED_ACK to send on the leg.
    pub ack: ConfluxLinkedAck,
}

/// The client (initiator) side of one leg's link handshake (prop 329
/// §2.2).
#[derive(Debug, Clone)]
pub struct ClientLinkHandshake {
    /// The leg.
    leg: LegId,
    /// Our LINK payload.
    ours: LinkInfo,
    /// Where we are.
    state: ClientState,
}

impl ClientLinkHandshake {
    /// A handshake that will send `ours` on `leg`.
    pub fn new(leg: LegId, ours: LinkInfo) -> Self {
        Self {
            leg,
            ours,
            state: ClientState::Created,
        }
    }

    /// Our LINK payload.
    pub fn ours(&self) -> &LinkInfo {
        &self.ours
    }

    /// The CONFLUX_LINK to send now; LINKED is due by `now + timeout`
    /// (prop 329 §2.2: no larger than the stream timeout; C-tor uses the
    /// circuit build timeout).
    pub fn start(&mut self, now: Instant, timeout: Duration) -> Result<ConfluxLink, ConfluxError> {
        if self.state != ClientState::Created {
            return Err(ConfluxError::CannotAddLeg("LINK already sent on this leg"));
        }
        let msg = ConfluxLink::new(self.ours.to_payload()?);
        self.state = ClientState::LinkSent {
            sent_at: now,
            deadline: now.checked_add(timeout).unwrap_or(now),
        };
        Ok(msg)
    }

    /// When LINKED is due, while it is awaited.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            ClientState::LinkSent { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// The RTT measured, once linked.
    pub fn rtt(&self) -> Option<Duration> {
        match self.state {
            ClientState::Linked { rtt } => Some(rtt),
            _ => None,
        }
    }

    /// True once LINKED was accepted.
    pub fn is_linked(&self) -> bool {
        matches!(self.state, ClientState::Linked { .. })
    }

    /// True if the handshake failed.
    pub fn is_failed(&self) -> bool {
        self.state == ClientState::Failed
    }

    /// Fails the handshake if `now` is past the deadline.
    pub fn check_timeout(&mut self, now: Instant) -> Result<(), ConfluxError> {
        if let ClientState::LinkSent { sent_at, deadline } = self.state
            && now >= deadline
        {
            self.state = ClientState::Failed;
            return Err(ConfluxError::LinkTimeout {
                leg: self.leg,
                timeout: deadline.saturating_duration_since(sent_at),
            });
        }
        Ok(())
    }

    /// A CONFLUX_LINKED arrived on the leg (prop 329 §4.2.1: only after our
    /// LINK, only once, only with the full nonce, and only in time).
    pub fn handle_linked(
        &mut self,
        linked: &ConfluxLinked,
        now: Instant,
    ) -> Result<LinkedOutcome, ConfluxError> {
        let leg = self.leg;
        let sent_at = match self.state {
            ClientState::Created | ClientState::Failed => {
                return Err(ConfluxError::LinkedWithoutLink { leg });
            }
            ClientState::Linked { .. } => return Err(ConfluxError::LinkedTwice { leg }),
            ClientState::LinkSent { sent_at, .. } => sent_at,
        };
        self.check_timeout(now)?;
        let peer = match LinkInfo::from_payload(linked.payload()) {
            Ok(p) => p,
            Err(_) => {
                self.state = ClientState::Failed;
                return Err(ConfluxError::WrongNonce { leg });
            }
        };
        if !peer.nonce.ct_eq(&self.ours.nonce) {
            self.state = ClientState::Failed;
            return Err(ConfluxError::WrongNonce { leg });
        }
        // Everything we had delivered when we sent LINK, the exit had sent
        // before it answered: it cannot claim fewer (prop 329 §2.4.4). (Its
        // `last_seqno_recv` may exceed what we had sent at LINK time: our
        // later cells on other legs can overtake the LINK.)
        if peer.last_seqno_sent < self.ours.last_seqno_recv {
            self.state = ClientState::Failed;
            return Err(ConfluxError::ImpossibleLinkSeq {
                leg,
                claimed: self.ours.last_seqno_recv,
                sent: peer.last_seqno_sent,
            });
        }
        let rtt = now.saturating_duration_since(sent_at);
        self.state = ClientState::Linked { rtt };
        Ok(LinkedOutcome {
            rtt,
            peer,
            ack: ConfluxLinkedAck::default(),
        })
    }
}

/// State of an exit leg's handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExitState {
    /// Waiting for LINK.
    AwaitLink,
    /// LINK accepted, LINKED not produced yet.
    GotLink { peer: LinkInfo },
    /// LINKED sent at `sent_at`.
    LinkedSent { peer: LinkInfo, sent_at: Instant },
    /// LINKED_ACK received.
    Acked { peer: LinkInfo, rtt: Duration },
}

/// The exit (responder) side of one leg's link handshake (prop 329 §2.2,
/// §4.2.1). The exit considers the leg linked once it has sent LINKED
/// (§2.4.2); LINKED_ACK only gives the RTT.
#[derive(Debug, Clone)]
pub struct ExitLinkHandshake {
    /// The leg.
    leg: LegId,
    /// Where we are.
    state: ExitState,
    /// LINKED_ACK was reported late.
    ack_late: bool,
}

impl ExitLinkHandshake {
    /// A circuit that may receive a LINK.
    pub fn new(leg: LegId) -> Self {
        Self {
            leg,
            state: ExitState::AwaitLink,
            ack_late: false,
        }
    }

    /// A CONFLUX_LINK arrived. `circuit_has_streams`: the circuit already
    /// carried a BEGIN (refused: LINK must come first, TROVE-2026-025).
    pub fn handle_link(
        &mut self,
        link: &ConfluxLink,
        circuit_has_streams: bool,
    ) -> Result<LinkInfo, ConfluxError> {
        if self.state != ExitState::AwaitLink {
            return Err(ConfluxError::LinkTwice { leg: self.leg });
        }
        if circuit_has_streams {
            return Err(ConfluxError::LinkOnUsedCircuit);
        }
        let peer = LinkInfo::from_link(link)?;
        self.state = ExitState::GotLink { peer: peer.clone() };
        Ok(peer)
    }

    /// The CONFLUX_LINKED answering the LINK, with our payload `ours`
    /// (same nonce; our sequence numbers; our desired UX, C-tor exits say
    /// MIN_LATENCY). The RTT clock starts now.
    pub fn linked(&mut self, ours: &LinkInfo, now: Instant) -> Result<ConfluxLinked, ConfluxError> {
        let ExitState::GotLink { peer } = &self.state else {
            return Err(ConfluxError::CannotAddLeg("no LINK to answer"));
        };
        if !peer.nonce.ct_eq(&ours.nonce) {
            return Err(ConfluxError::CannotAddLeg(
                "LINKED nonce differs from the LINK's",
            ));
        }
        let msg = ConfluxLinked::new(ours.to_payload()?);
        self.state = ExitState::LinkedSent {
            peer: peer.clone(),
            sent_at: now,
        };
        Ok(msg)
    }

    /// A CONFLUX_LINKED_ACK arrived: the leg's RTT, LINKED sent to ACK
    /// received.
    pub fn handle_linked_ack(&mut self, now: Instant) -> Result<Duration, ConfluxError> {
        let leg = self.leg;
        match &self.state {
            ExitState::AwaitLink | ExitState::GotLink { .. } => {
                Err(ConfluxError::AckWithoutLinked { leg })
            }
            ExitState::Acked { .. } => Err(ConfluxError::AckTwice { leg }),
            ExitState::LinkedSent { peer, sent_at } => {
                let rtt = now.saturating_duration_since(*sent_at);
                self.state = ExitState::Acked {
                    peer: peer.clone(),
                    rtt,
                };
                Ok(rtt)
            }
        }
    }

    /// The client's LINK payload, once received.
    pub fn peer(&self) -> Option<&LinkInfo> {
        match &self.state {
            ExitState::AwaitLink => None,
            ExitState::GotLink { peer }
            | ExitState::LinkedSent { peer, .. }
            | ExitState::Acked { peer, .. } => Some(peer),
        }
    }

    /// The RTT, once LINKED_ACK arrived.
    pub fn rtt(&self) -> Option<Duration> {
        match &self.state {
            ExitState::Acked { rtt, .. } => Some(*rtt),
            _ => None,
        }
    }

    /// When LINKED_ACK is due, `timeout` after our LINKED, while it has
    /// not come and the leg was not already reported late.
    pub fn ack_deadline(&self, timeout: Duration) -> Option<Instant> {
        match &self.state {
            ExitState::LinkedSent { sent_at, .. } if !self.ack_late => Some(*sent_at + timeout),
            _ => None,
        }
    }

    /// Whether LINKED_ACK is overdue at `now` (reported once: later calls
    /// say no).
    pub fn check_ack(&mut self, now: Instant, timeout: Duration) -> Result<(), ConfluxError> {
        match self.ack_deadline(timeout) {
            Some(t) if now >= t => {
                self.ack_late = true;
                Err(ConfluxError::LinkedAckTimeout {
                    leg: self.leg,
                    timeout,
                })
            }
            _ => Ok(()),
        }
    }

    /// True once LINKED was produced (the exit's "linked", §2.4.2).
    pub fn is_linked(&self) -> bool {
        matches!(
            self.state,
            ExitState::LinkedSent { .. } | ExitState::Acked { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    fn info(nonce: &ConfluxNonce) -> LinkInfo {
        LinkInfo {
            nonce: nonce.clone(),
            last_seqno_sent: 0,
            last_seqno_recv: 0,
            desired_ux: V1DesiredUx::HIGH_THROUGHPUT,
        }
    }

    fn nonce(seed: u64) -> ConfluxNonce {
        ConfluxNonce::random(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    #[test]
    fn nonce_roundtrip_and_redacted() {
        let n = nonce(1);
        let back = ConfluxNonce::from_v1(&n.to_v1().unwrap()).unwrap();
        assert_eq!(back, n);
        assert_ne!(nonce(2), n);
        assert_eq!(format!("{n:?}"), "ConfluxNonce(..)");
        // Differing only in the last byte is still different (TROVE-2026-004).
        let mut b = *n.as_bytes();
        b[31] ^= 1;
        assert!(!ConfluxNonce::from_bytes(b).ct_eq(&n));
        let mut b = *n.as_bytes();
        b[0] ^= 1;
        assert!(!ConfluxNonce::from_bytes(b).ct_eq(&n));
    }

    /// Full three-way handshake, with the RTTs taken from the passed-in
    /// clock on both ends.
    #[test]
    fn happy_path_measures_rtt_both_ends() {
        let t0 = Instant::now();
        let n = nonce(3);
        let mut c = ClientLinkHandshake::new(LegId(0), info(&n));
        let link = c.start(t0, Duration::from_secs(10)).unwrap();
        assert_eq!(c.deadline(), Some(t0 + Duration::from_secs(10)));

        let mut e = ExitLinkHandshake::new(LegId(5));
        let peer = e.handle_link(&link, false).unwrap();
        assert_eq!(peer.nonce, n);
        assert_eq!(peer.desired_ux, V1DesiredUx::HIGH_THROUGHPUT);
        let mut ours = info(&n);
        ours.desired_ux = V1DesiredUx::MIN_LATENCY;
        let linked = e.linked(&ours, t0 + Duration::from_millis(40)).unwrap();
        assert!(e.is_linked());

        let out = c
            .handle_linked(&linked, t0 + Duration::from_millis(80))
            .unwrap();
        assert_eq!(out.rtt, Duration::from_millis(80));
        assert_eq!(c.rtt(), Some(Duration::from_millis(80)));
        assert_eq!(out.peer.desired_ux, V1DesiredUx::MIN_LATENCY);
        assert_eq!(c.deadline(), None);

        let rtt = e
            .handle_linked_ack(t0 + Duration::from_millis(120))
            .unwrap();
        assert_eq!(rtt, Duration::from_millis(80));
        assert_eq!(e.rtt(), Some(rtt));
    }

    #[test]
    fn client_refusals() {
        let t0 = Instant::now();
        let n = nonce(4);
        let mut e = ExitLinkHandshake::new(LegId(0));
        let mut c0 = ClientLinkHandshake::new(LegId(0), info(&n));
        let link = c0.start(t0, Duration::from_secs(1)).unwrap();
        e.handle_link(&link, false).unwrap();
        let good = e.linked(&info(&n), t0).unwrap();

        // LINKED without LINK.
        let mut c = ClientLinkHandshake::new(LegId(1), info(&n));
        assert_eq!(
            c.handle_linked(&good, t0).unwrap_err(),
            ConfluxError::LinkedWithoutLink { leg: LegId(1) }
        );

        // LINKED twice.
        c.start(t0, Duration::from_secs(1)).unwrap();
        c.handle_linked(&good, t0).unwrap();
        assert_eq!(
            c.handle_linked(&good, t0).unwrap_err(),
            ConfluxError::LinkedTwice { leg: LegId(1) }
        );

        // Wrong nonce: one bit off in the last byte.
        let mut b = *n.as_bytes();
        b[31] ^= 0x80;
        let other = ConfluxNonce::from_bytes(b);
        let mut e2 = ExitLinkHandshake::new(LegId(0));
        let mut c2 = ClientLinkHandshake::new(LegId(2), info(&other));
        e2.handle_link(&c2.start(t0, Duration::from_secs(1)).unwrap(), false)
            .unwrap();
        let bad = e2.linked(&info(&other), t0).unwrap();
        let mut c3 = ClientLinkHandshake::new(LegId(3), info(&n));
        c3.start(t0, Duration::from_secs(1)).unwrap();
        let err = c3.handle_linked(&bad, t0).unwrap_err();
        assert_eq!(err, ConfluxError::WrongNonce { leg: LegId(3) });
        assert!(err.is_protocol_violation());
        assert!(c3.is_failed());

        // Timeout: LINKED at the deadline is too late.
        let mut c4 = ClientLinkHandshake::new(LegId(4), info(&n));
        c4.start(t0, Duration::from_secs(1)).unwrap();
        assert!(c4.check_timeout(t0 + Duration::from_millis(999)).is_ok());
        let err = c4
            .handle_linked(&good, t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(
            err,
            ConfluxError::LinkTimeout {
                leg: LegId(4),
                timeout: Duration::from_secs(1)
            }
        );
        // And after failing, a late LINKED is "without LINK".
        assert_eq!(
            c4.handle_linked(&good, t0).unwrap_err(),
            ConfluxError::LinkedWithoutLink { leg: LegId(4) }
        );

        // The exit claims fewer cells sent than we had delivered.
        let mut ours = info(&n);
        ours.last_seqno_recv = 10;
        let mut c5 = ClientLinkHandshake::new(LegId(5), ours);
        c5.start(t0, Duration::from_secs(1)).unwrap();
        assert!(matches!(
            c5.handle_linked(&good, t0),
            Err(ConfluxError::ImpossibleLinkSeq { .. })
        ));

        // Starting twice is local misuse.
        assert!(c.start(t0, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn exit_refusals() {
        let t0 = Instant::now();
        let n = nonce(5);
        let mut c = ClientLinkHandshake::new(LegId(0), info(&n));
        let link = c.start(t0, Duration::from_secs(1)).unwrap();

        let mut e = ExitLinkHandshake::new(LegId(7));
        assert_eq!(
            e.handle_link(&link, true).unwrap_err(),
            ConfluxError::LinkOnUsedCircuit
        );
        assert_eq!(
            e.handle_linked_ack(t0).unwrap_err(),
            ConfluxError::AckWithoutLinked { leg: LegId(7) }
        );
        e.handle_link(&link, false).unwrap();
        assert_eq!(
            e.handle_link(&link, false).unwrap_err(),
            ConfluxError::LinkTwice { leg: LegId(7) }
        );
        assert_eq!(
            e.handle_linked_ack(t0).unwrap_err(),
            ConfluxError::AckWithoutLinked { leg: LegId(7) }
        );
        // LINKED must carry the LINK's nonce.
        assert!(e.linked(&info(&nonce(6)), t0).is_err());
        e.linked(&info(&n), t0).unwrap();
        e.handle_linked_ack(t0).unwrap();
        assert_eq!(
            e.handle_linked_ack(t0).unwrap_err(),
            ConfluxError::AckTwice { leg: LegId(7) }
        );
    }
}
