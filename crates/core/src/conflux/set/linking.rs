//! Linking a [`ConfluxSet`]'s legs (prop 329 §2.2, §2.4): a client's new
//! legs and their LINK, an exit's accepted LINKs, the set becoming usable,
//! failures confined to a linking leg or closing the set, and the link
//! deadlines.

use std::time::Instant;

use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::msg::ConfluxLink;

use super::{ConfluxEvent, ConfluxSet, Handled, LegState, MAX_LEGS, Role};
use crate::conflux::error::ConfluxError;
use crate::conflux::ext::LinkExt;
use crate::conflux::link::{ClientLinkHandshake, ExitLinkHandshake, LinkInfo};
use crate::ids::LegId;

impl ConfluxSet {
    /// A free leg id. The counters of a leg that had it before are
    /// dropped, so a reused id starts from zero.
    fn alloc_leg(&mut self) -> Option<LegId> {
        for _ in 0..=u8::MAX {
            let id = LegId(self.next_leg);
            self.next_leg = self.next_leg.wrapping_add(1);
            if !self.legs.contains_key(&id) {
                self.stats.remove(&id);
                return Some(id);
            }
        }
        None
    }

    /// Our LINK/LINKED payload now.
    fn our_link_info(&self) -> LinkInfo {
        LinkInfo {
            nonce: self.nonce.clone(),
            last_seqno_sent: self.send.last_seq_sent(),
            last_seqno_recv: self.reorder.last_in_order(),
            desired_ux: self.config.desired_ux,
        }
    }

    /// Client: a new leg's circuit is built (to the set's exit, with
    /// congestion control negotiated on its last hop, prop 329 §2.2); the
    /// CONFLUX_LINK for it is in [`Self::poll_transmit`] and its LINKED is
    /// due by [`Self::poll_timeout`]. Also how a set that lost a leg adds
    /// one (same nonce, current sequence numbers, prop 329 §2.4.4).
    ///
    /// Refused (local error) on an exit set, a closed set, or at
    /// `max_legs`. The launch budget (`num_legs + max_leg_retries`, prop
    /// 329 §4.2.2) is the tunnel's, which launches the circuits
    /// ([`crate::tunnel::ClientTunnel`]).
    pub fn add_leg(&mut self, now: Instant) -> Result<LegId, ConfluxError> {
        let info = self.our_link_info();
        self.add_leg_with(now, info)
    }

    /// [`Self::add_leg`] for a new leg of a linked set whose LINK claims
    /// only `delivered` as `last_seqno_sent` (capped at what we sent): a
    /// number the exit has surely delivered. The leg's sequence numbers
    /// start there, so our first message on it carries a SWITCH over the
    /// rest (prop 329 §2.4.4, §2.6). Why: a C-tor exit takes a LINK whose
    /// `last_seqno_sent` exceeds its `last_seq_delivered` for data loss
    /// and closes the whole set (`validate_unlinked_legs`), and messages
    /// we sent on other legs may still be on their way when LINK arrives.
    pub fn add_leg_delivered(
        &mut self,
        now: Instant,
        delivered: u64,
    ) -> Result<LegId, ConfluxError> {
        let mut info = self.our_link_info();
        info.last_seqno_sent = info.last_seqno_sent.min(delivered);
        self.add_leg_with(now, info)
    }

    /// Add a leg whose LINK carries `info`.
    fn add_leg_with(&mut self, now: Instant, info: LinkInfo) -> Result<LegId, ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        if self.role != Role::Client {
            return Err(ConfluxError::CannotAddLeg(
                "an exit set adds legs with accept_link",
            ));
        }
        if self.legs.len() >= self.config.max_legs {
            return Err(ConfluxError::CannotAddLeg("the set has max_legs legs"));
        }
        let leg = self
            .alloc_leg()
            .ok_or(ConfluxError::CannotAddLeg("no free leg id"))?;
        let mut hs = ClientLinkHandshake::new(leg, info);
        let link = hs.start(now, self.config.link_timeout)?;
        self.legs.insert(leg, LegState::ClientLinking(hs));
        self.transmit.push_back((leg, link.into()));
        Ok(leg)
    }

    /// Exit: a CONFLUX_LINK with this set's nonce arrived on a circuit that
    /// is not a leg yet. `circuit_has_streams`: it already carried a BEGIN.
    /// On success the circuit is a linked leg (prop 329 §2.4.2: the exit
    /// links when it sends LINKED) and its LINKED is in
    /// [`Self::poll_transmit`].
    ///
    /// An error refuses this circuit only (close it with
    /// [`ConfluxError::destroy_reason`]); the set is unchanged.
    pub fn accept_link(
        &mut self,
        link: &ConfluxLink,
        circuit_has_streams: bool,
        now: Instant,
    ) -> Result<LegId, ConfluxError> {
        self.accept_link_with(link, &LinkExt::default(), circuit_has_streams, now)
    }

    /// [`Self::accept_link`] for a LINK that carried Braid's extensions
    /// `ext` ([`crate::conflux::ext::split`]): with resumption offered
    /// ([`Self::offer_resumption`]) and nothing sent yet, RESUME_CAP makes
    /// the set resumable and its LINKED says so (Braid proposal 001 §2.2);
    /// a LEG note numbers the leg and drops the legs it names lost before
    /// the new leg resumes the set (§3.3, [`ConfluxEvent::LegDropped`]).
    pub fn accept_link_with(
        &mut self,
        link: &ConfluxLink,
        ext: &LinkExt,
        circuit_has_streams: bool,
        now: Instant,
    ) -> Result<LegId, ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        if ext.cap.is_some() {
            self.peer_offers_resumption();
            self.watch.peer_probes |= ext.probe;
        }
        if self.role != Role::Exit {
            return Err(ConfluxError::WrongDirection {
                leg: LegId(u8::MAX),
                cmd: RelayCmd::CONFLUX_LINK,
            });
        }
        if self.legs.len() >= self.config.max_legs {
            return Err(ConfluxError::TooManyLegs {
                max: self.config.max_legs,
            });
        }
        let leg = self
            .alloc_leg()
            .ok_or(ConfluxError::TooManyLegs { max: MAX_LEGS })?;
        let mut hs = ExitLinkHandshake::new(leg);
        let peer = hs.handle_link(link, circuit_has_streams)?;
        if !peer.nonce.ct_eq(&self.nonce) {
            return Err(ConfluxError::CannotAddLeg(
                "LINK nonce belongs to another set",
            ));
        }
        // The client cannot have delivered more than we sent (§2.4.4).
        let sent = self.send.last_seq_sent();
        if peer.last_seqno_recv > sent {
            return Err(ConfluxError::ImpossibleLinkSeq {
                leg,
                claimed: peer.last_seqno_recv,
                sent,
            });
        }
        let ours = self.our_link_info();
        let linked = hs.linked(&ours, now)?;
        let resuming = self.resume.is_some() && self.linked;
        // Starting numbers from the LINK, as the client takes them; on a
        // resumed leg the client resends from what we said we have.
        self.send.add_leg(leg, peer.last_seqno_recv);
        self.recv.add_leg(
            leg,
            if resuming {
                ours.last_seqno_recv
            } else {
                peer.last_seqno_sent
            },
        );
        self.peer_ux = Some(peer.desired_ux);
        self.legs.insert(leg, LegState::Exit(hs));
        if let Some(note) = &ext.leg {
            self.take_leg_note(leg, note, now);
        }
        self.transmit.push_back((leg, linked.into()));
        self.tell_untold_on(leg);
        self.events
            .push_back(ConfluxEvent::LegLinked { leg, rtt: None });
        self.maybe_finalize();
        if resuming {
            self.expect_resends(leg, &ours, &peer);
            // A failure closes the set (the caller sees it closed).
            let _ = self.resume_on(leg, peer.last_seqno_recv, now);
        }
        Ok(leg)
    }

    /// The set becomes usable once every leg is linked (prop 329 §2.4.2),
    /// unless it was closed first: a closed set stays unusable, so a
    /// linking leg that then fails or closes (leaving only linked legs)
    /// must not make it report [`ConfluxEvent::SetLinked`].
    pub(super) fn maybe_finalize(&mut self) {
        if self.closed.is_some()
            || self.linked
            || self.legs.is_empty()
            || !self.legs.values().all(LegState::is_linked)
        {
            return;
        }
        self.linked = true;
        self.events.push_back(ConfluxEvent::SetLinked {
            legs: self.legs.len(),
        });
    }

    /// Close the set on `e`. Nothing more is sent, resent or delivered,
    /// so the reorder queue and the retransmit buffer are emptied now:
    /// their bytes (up to their limits) would otherwise stay held, and
    /// counted, until the driver drops the set, which waits for every
    /// leg's DESTROY to go out (TROVE-2026-010).
    pub(super) fn fail(&mut self, e: ConfluxError) -> ConfluxError {
        if self.closed.is_none() {
            self.closed = Some(e.clone());
        }
        self.transmit.clear();
        self.reorder.clear();
        self.resend.clear();
        if let Some(r) = self.resume.as_mut() {
            r.clear();
        }
        e
    }

    /// Drop a leg that is still linking, on `error`.
    fn fail_leg(&mut self, leg: LegId, error: ConfluxError) {
        self.legs.remove(&leg);
        self.leg_link_done(leg, false);
        self.events
            .push_back(ConfluxEvent::LegFailed { leg, error });
        self.maybe_finalize();
    }

    /// A violation on `leg`: confined to it if it is still linking, fatal
    /// for the set otherwise.
    pub(super) fn violation(
        &mut self,
        leg: LegId,
        e: ConfluxError,
    ) -> Result<Handled, ConfluxError> {
        match self.legs.get(&leg) {
            Some(s) if !s.is_linked() => {
                self.fail_leg(leg, e);
                Ok(Handled::Consumed)
            }
            _ => Err(self.fail(e)),
        }
    }

    /// LINKED deadlines: every client leg whose LINKED is late fails
    /// ([`ConfluxEvent::LegFailed`] with [`ConfluxError::LinkTimeout`]).
    /// Exit: a linked leg whose LINKED_ACK is late is reported once with
    /// [`ConfluxEvent::LegFailed`] ([`ConfluxError::LinkedAckTimeout`])
    /// but stays in the set: the caller closes its circuit and then calls
    /// [`Self::leg_closed`], whose rules decide whether the set survives.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.link_timeout;
        let mut late = Vec::new();
        let mut late_ack = Vec::new();
        for (leg, s) in &mut self.legs {
            match s {
                LegState::ClientLinking(h) => {
                    if let Err(e) = h.check_timeout(now) {
                        late.push((*leg, e));
                    }
                }
                LegState::Exit(h) => {
                    if let Err(e) = h.check_ack(now, timeout) {
                        late_ack.push((*leg, e));
                    }
                }
                LegState::ClientLinked { .. } => {}
            }
        }
        for (leg, e) in late {
            self.fail_leg(leg, e);
        }
        for (leg, error) in late_ack {
            self.events
                .push_back(ConfluxEvent::LegFailed { leg, error });
        }
        self.check_grace(now);
        self.check_probes(now);
    }
}
