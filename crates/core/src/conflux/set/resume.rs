//! Resumption of a [`ConfluxSet`] (Braid proposal 001 §3, prop 329 §2.7),
//! on when both ends agreed ([`ConfluxSet::enable_resumption`]): the set
//! keeps what it sent until its leg acknowledges it, survives losing legs
//! with data in flight (and all its legs, for a grace period), and when a
//! new leg links, each end resends on it what the other lacks, with the
//! numbers the messages had, before anything new goes on that leg.

use std::time::Instant;

use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxSwitch};

use super::{ConfluxSet, Outgoing};
use crate::conflux::MAX_LEGS;
use crate::conflux::error::ConfluxError;
use crate::conflux::link::LinkInfo;
use crate::conflux::retransmit::{ResumeParams, Retransmit};
use crate::ids::{LegId, StreamId};

impl ConfluxSet {
    /// Make the set resumable with `params` (both ends agreed, Braid
    /// proposal 001 §2). From now on what it sends is kept until
    /// acknowledged ([`Self::leg_acked`]); call it before anything is
    /// sent. No effect if already on.
    pub fn enable_resumption(&mut self, params: ResumeParams) {
        if self.resume.is_none() {
            self.resume = Some(Retransmit::new(params));
        }
    }

    /// Offer resumption with `params` (Braid proposal 001 §2): a client's
    /// LINKs carry RESUME_CAP (call it only for an exit that advertises
    /// `BraidResume=1`) and the set becomes resumable when the exit's
    /// LINKED carries it too; an exit answers a LINK that carries it with
    /// a LINKED that does, and becomes resumable. Before anything is sent.
    pub fn offer_resumption(&mut self, params: ResumeParams) {
        self.resume_offer = Some(params);
    }

    /// The peer's LINK or LINKED carried RESUME_CAP: resumable if we
    /// offer it and nothing was sent yet (a buffer cannot start late).
    pub(super) fn peer_offers_resumption(&mut self) {
        if let Some(params) = self.resume_offer
            && self.send.last_seq_sent() == 0
        {
            self.enable_resumption(params);
        }
    }

    /// `msg` as it goes out on `leg`: a client's LINK with RESUME_CAP and
    /// its LEG note when it offers resumption; an exit's LINKED with
    /// RESUME_CAP when the set is resumable (the client offered: never to
    /// C-tor).
    pub(super) fn with_extensions(&mut self, leg: LegId, msg: AnyRelayMsg) -> AnyRelayMsg {
        let Some(params) = self.resume_offer.as_ref() else {
            return msg;
        };
        let cap = Some(crate::conflux::ResumeCap::from_params(params));
        let ext = match &msg {
            AnyRelayMsg::ConfluxLink(_) => crate::conflux::ext::LinkExt {
                cap,
                leg: Some(self.notes.link_note(leg)),
                probe: self.offers_probe(),
            },
            AnyRelayMsg::ConfluxLinked(_) if self.resume.is_some() => {
                crate::conflux::ext::LinkExt {
                    cap,
                    leg: None,
                    // Only to a client that offered it (§3.6).
                    probe: self.offers_probe() && self.watch.peer_probes,
                }
            }
            _ => return msg,
        };
        match crate::conflux::ext::extend(msg.clone(), &ext) {
            Ok(m) => m,
            Err(_) => msg,
        }
    }

    /// How long the set may live without a linked leg (§3.4), when it
    /// is resumable.
    pub fn resume_grace(&self) -> Option<std::time::Duration> {
        self.resume.as_ref().map(|r| r.params().grace)
    }

    /// Whether the set is resumable.
    pub fn is_resumable(&self) -> bool {
        self.resume.is_some()
    }

    /// Bytes in the retransmit buffer.
    pub fn retransmit_bytes(&self) -> usize {
        self.resume.as_ref().map_or(0, Retransmit::bytes)
    }

    /// The most bytes the retransmit buffer held.
    pub fn retransmit_peak_bytes(&self) -> usize {
        self.resume.as_ref().map_or(0, Retransmit::peak)
    }

    /// What the legs' congestion windows allowed at that peak (the sum of
    /// the windows of the legs holding messages then, lost ones awaiting
    /// their resend included; Braid proposal 001 §3.2).
    pub fn retransmit_peak_bound_bytes(&self) -> usize {
        self.resume.as_ref().map_or(0, Retransmit::peak_bound)
    }

    /// Times a leg was resumed.
    pub fn resumptions(&self) -> usize {
        self.resume.as_ref().map_or(0, Retransmit::resumptions)
    }

    /// Messages resent so far.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Messages the peer resent to us on resumed legs: those that came
    /// on a resumed leg numbered at most the peer's last sent when it
    /// linked (its resends come first, Braid proposal 001 §3.3).
    pub fn peer_resent(&self) -> u64 {
        self.peer_resent
    }

    /// Resumed `leg` linked: the peer's resends on it are numbered after
    /// what we said we have, up to what it says it sent.
    pub(super) fn expect_resends(&mut self, leg: LegId, ours: &LinkInfo, peer: &LinkInfo) {
        self.resent_upto.retain(|(l, _)| *l != leg);
        if peer.last_seqno_sent > ours.last_seqno_recv && self.resent_upto.len() < MAX_LEGS {
            self.resent_upto.push((leg, peer.last_seqno_sent));
        }
    }

    /// Message `seq` came on `leg`: count it if it is a resend.
    pub(super) fn count_resend(&mut self, leg: LegId, seq: u64) {
        if self.resent_upto.is_empty() {
            return;
        }
        if let Some(i) = self.resent_upto.iter().position(|(l, _)| *l == leg) {
            let upto = self.resent_upto.get(i).map_or(0, |(_, u)| *u);
            if seq <= upto {
                self.peer_resent += 1;
            }
            if seq >= upto {
                self.resent_upto.swap_remove(i);
            }
        }
    }

    /// `data_acked` DATA cells sent on `leg` are acknowledged by the peer
    /// (cumulative: the leg's DATA sent minus its congestion control's
    /// cells in flight). Frees what the peer has.
    /// `cwnd` is the leg's congestion window (cells), for the bound the
    /// retransmit peak is reported with.
    pub fn leg_acked(&mut self, leg: LegId, data_acked: u64, cwnd: Option<u64>) {
        if let Some(r) = self.resume.as_mut() {
            r.acked(leg, data_acked, cwnd);
        }
    }

    /// True when the retransmit buffer is full: no DATA goes until
    /// acknowledgements free room.
    pub(super) fn retransmit_full(&self) -> bool {
        self.resume.as_ref().is_some_and(Retransmit::is_full)
    }

    /// Keep message `seq`, sent on `leg`, for resending.
    pub(super) fn keep_sent(
        &mut self,
        leg: LegId,
        seq: u64,
        stream: Option<StreamId>,
        msg: &AnyRelayMsg,
    ) {
        if let Some(r) = self.resume.as_mut() {
            r.record(leg, seq, stream, msg);
        }
    }

    /// Whether the set is past its last leg loss: not resumable, or
    /// resumed since and every resend the peer announced has come (Braid
    /// proposal 001 §3.3). Data delivered before that may be data ahead
    /// of a gap.
    pub fn resume_settled(&self) -> bool {
        self.resume.is_none() || (!self.lost_legs && self.resent_upto.is_empty())
    }

    /// Whether a resumed leg still brings resends from the peer.
    pub fn resends_expected(&self) -> bool {
        !self.resent_upto.is_empty()
    }

    /// Whether any leg still has messages to resend.
    pub fn resend_pending(&self) -> bool {
        !self.resend.is_empty()
    }

    /// Whether `leg` still has messages to resend (the scheduler keeps new
    /// ones off it meanwhile).
    pub fn has_resend(&self, leg: LegId) -> bool {
        self.resend.iter().any(|(l, _, _)| *l == leg)
    }

    /// The next message to resend, if its leg may send now (`can_send`):
    /// with the SWITCH to put first when numbers the peer has are skipped.
    /// Send these before anything else on that leg.
    pub fn poll_resend(&mut self, can_send: impl Fn(LegId) -> bool) -> Option<Outgoing> {
        let (leg, _, _) = self.resend.front()?;
        if !can_send(*leg) {
            return None;
        }
        let (leg, seq, held) = self.resend.pop_front()?;
        if self.resend.is_empty()
            && let Some(r) = self.resume.as_mut()
        {
            r.resends_done();
        }
        match self.send.on_resend(leg, seq) {
            Ok(switch) => {
                // Kept again as sent on its new leg: that leg's
                // acknowledgements count it (its circuit counts every DATA
                // cell it sends, resends included) and free it.
                self.keep_sent(leg, seq, held.stream, &held.msg);
                self.resent += 1;
                let st = self.stats_mut(leg);
                st.msgs_sent += 1;
                st.switches_sent += u64::from(switch.is_some());
                if let AnyRelayMsg::Data(d) = &held.msg {
                    st.data_bytes_sent += d.as_ref().len() as u64;
                }
                Some(Outgoing {
                    leg,
                    switch: switch.map(ConfluxSwitch::new),
                    stream: held.stream,
                    msg: held.msg,
                })
            }
            Err(e) => {
                let _ = self.fail(e);
                self.resend.clear();
                None
            }
        }
    }

    /// Whether a new leg may still resume the set at `now`: false once
    /// legs were lost since the last resumption and one more would pass
    /// the bounds of Braid proposal 001 §3.5. The client then stops
    /// resuming (§5.3) rather than launch a leg the exit would refuse.
    pub fn may_resume(&self, now: Instant) -> bool {
        match &self.resume {
            Some(r) if self.lost_legs && self.linked => r.allows_resumption(now),
            _ => true,
        }
    }

    /// Close the set because it resumes no more (Braid proposal 001 §3.5,
    /// §5.3); the error it closed with.
    pub fn stop_resuming(&mut self) -> ConfluxError {
        let (per_minute, total) = self
            .resume
            .as_ref()
            .map_or((0, 0), |r| (r.params().per_minute, r.params().total));
        self.fail(ConfluxError::TooManyResumptions { per_minute, total })
    }

    /// A linked leg of a resumable set closed: it leaves, whatever it
    /// carried; the set waits for a new leg if none is left.
    /// `tell`: an exit tells the client ([`Self::tell_leg_lost`]) unless
    /// the client named the leg lost itself.
    pub(super) fn resumable_leg_closed(&mut self, leg: LegId, now: Instant, tell: bool) {
        self.lost_legs = true;
        if let Some(num) = self.notes.leg_lost(self.role, leg)
            && tell
        {
            self.tell_leg_lost(num);
        }
        self.send.remove_leg(leg);
        self.recv.remove_leg(leg);
        if let Some(r) = self.resume.as_mut()
            && r.leg_gone(leg)
        {
            // The peer may lack what the leg carried: until a new leg
            // resends it, new DATA would only pile up in the peer's
            // reorder queue behind the gap (Braid proposal 001 §3.2).
            self.gap_pending = true;
        }
        self.resend.retain(|(l, _, _)| *l != leg);
        self.resent_upto.retain(|(l, _)| *l != leg);
        if self.gap_pending || self.linked_legs() == 0 {
            // The grace runs until a new leg resumes: without legs, or
            // with a gap only a new leg fills (new DATA waits meanwhile),
            // the set must not wait forever (Braid proposal 001 §3.4).
            self.orphaned_since.get_or_insert(now);
        }
    }

    /// A new leg `leg` of a linked resumable set is linked; the peer has
    /// everything up to `peer_recv` in order. Queue what it may lack, from
    /// the buffer (what is still on its way on other legs comes twice; the
    /// peer drops the copy). If legs were lost since the last one, this is
    /// a resumption: count it (§3.5: too many close the set).
    pub(super) fn resume_on(
        &mut self,
        leg: LegId,
        peer_recv: u64,
        now: Instant,
    ) -> Result<(), ConfluxError> {
        let sent = self.send.last_seq_sent();
        let Some(r) = self.resume.as_mut() else {
            return Ok(());
        };
        if std::mem::take(&mut self.lost_legs) && !r.note_resumption(now) {
            let (per_minute, total) = (r.params().per_minute, r.params().total);
            return Err(self.fail(ConfluxError::TooManyResumptions { per_minute, total }));
        }
        // What the peer has in order no leg will acknowledge any more if
        // it went on a lost leg: drop it all.
        r.forget_through(peer_recv);
        for (seq, held) in r.held_in(peer_recv, sent) {
            self.resend.push_back((leg, seq, held));
        }
        if self.resend.is_empty() {
            r.resends_done();
        }
        self.orphaned_since = None;
        self.gap_pending = false;
        Ok(())
    }

    /// Whether the set waits for a new leg to resume it: it lost a linked
    /// leg since its last resumption (the peer may lack what that leg
    /// carried toward us, which only a new leg's LINK tells it), or it has
    /// a gap to fill or no leg left (Braid proposal 001 §3.3, §3.4).
    pub fn awaits_resumption(&self) -> bool {
        self.resume.is_some()
            && (self.lost_legs || self.orphaned_since.is_some())
            && self.closed.is_none()
    }

    /// When a set without legs gives up.
    pub(super) fn grace_deadline(&self) -> Option<Instant> {
        let r = self.resume.as_ref()?;
        Some(self.orphaned_since? + r.params().grace)
    }

    /// Close the set if it has waited for a new leg past its grace.
    pub(super) fn check_grace(&mut self, now: Instant) {
        if self.closed.is_none()
            && let Some(t) = self.grace_deadline()
            && now >= t
        {
            let grace = self.resume.as_ref().map(|r| r.params().grace);
            let _ = self.fail(ConfluxError::ResumeGraceExpired {
                grace: grace.unwrap_or_default(),
            });
        }
    }
}

/// The resend queue's entries: leg, absolute number, message.
pub(super) type Resend = (LegId, u64, crate::conflux::retransmit::Held);
