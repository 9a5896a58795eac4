//! Conflux sequence numbers (prop 329 §2.6, §2.8) and CONFLUX_SWITCH.
//!
//! Every multiplexed relay message ([`is_multiplexed`]) sent over a set
//! takes the next absolute sequence number of its direction, starting at 1.
//! The number is never on the wire: each end counts per leg. The sender
//! keeps `last_seq_sent` per leg; when it sends on a leg other than the one
//! its previous multiplexed message went on, it first sends a
//! CONFLUX_SWITCH on the new leg carrying the *relative* sequence number,
//! the absolute number sent so far minus the new leg's `last_seq_sent`;
//! the receiver adds it to that leg's `last_seq_recv` (prop 329 §2.6, C-tor
//! `conflux_decide_circ_for_send` / `conflux_process_switch_command`).
//!
//! [`SendSeq`] is the sender's bookkeeping, [`RecvSeq`] the receiver's,
//! with SWITCH checks: a jump larger than the other legs' congestion
//! windows could have in flight ([`SwitchWindow`]) closes the set; "empty"
//! switches (a zero relative number once data flowed, two SWITCHes on a leg
//! with no data between them) are tolerated up to [`MAX_EMPTY_SWITCHES`]
//! in a row, because C-tor sends them (it switches legs also when it only
//! measures room to package), and close the set beyond that (prop 329
//! §4.2.3). arti refuses the first one; C-tor checks none.

use std::collections::BTreeMap;

use tor_cell::relaycell::RelayCmd;

use super::error::ConfluxError;
use crate::ids::LegId;

/// The relay commands that are multiplexed over a set and take a sequence
/// number (prop 329 §2.8; C-tor `conflux_should_multiplex`): BEGIN, DATA,
/// END, CONNECTED, RESOLVE, RESOLVED, XON, XOFF. Everything else (SENDME,
/// the CONFLUX_* commands, EXTEND*, BEGIN_DIR, padding, onion service
/// commands) belongs to one circuit. Braid's five stream migration
/// commands (Braid proposal 001 §4, sent only between Braid endpoints) are
/// multiplexed too: a MIGRATE_MARK must follow the set's last DATA of its
/// stream, whichever leg each went on.
pub fn is_multiplexed(cmd: RelayCmd) -> bool {
    matches!(
        cmd,
        RelayCmd::BEGIN
            | RelayCmd::DATA
            | RelayCmd::END
            | RelayCmd::CONNECTED
            | RelayCmd::RESOLVE
            | RelayCmd::RESOLVED
            | RelayCmd::XON
            | RelayCmd::XOFF
    ) || crate::stream::migrate_wire::is_migrate_cmd(cmd)
}

/// No leg's relative sequence number may reach this: before a leg falls
/// this far behind, the sender switches to it (prop 329 §2.6: "In the rare
/// event that we send more than 2^31 cells (~1TB) on a single leg, the leg
/// should be switched in order to reset that relative sequence number to
/// fit within 4 bytes"). C-tor instead closes the set when the relative
/// number would not fit.
pub const MAX_RELATIVE_SEQ: u64 = 1 << 31;

/// The sender's sequence state (prop 329 §2.6).
#[derive(Debug, Clone, Default)]
pub struct SendSeq {
    /// `last_seq_sent` per linked leg.
    legs: BTreeMap<LegId, u64>,
    /// The leg the last multiplexed message went on.
    current: Option<LegId>,
    /// The absolute sequence number of the last multiplexed message sent.
    last_sent: u64,
}

impl SendSeq {
    /// Nothing sent, no legs.
    pub fn new() -> Self {
        Self::default()
    }

    /// A leg joins with `base` as its `last_seq_sent`: 0 on a new set,
    /// for a leg added later the `last_seqno_sent` of the LINK that
    /// created it (prop 329 §2.4.4).
    pub fn add_leg(&mut self, leg: LegId, base: u64) {
        self.legs.insert(leg, base);
        self.last_sent = self.last_sent.max(base);
    }

    /// A leg leaves; its `last_seq_sent`.
    pub fn remove_leg(&mut self, leg: LegId) -> Option<u64> {
        if self.current == Some(leg) {
            self.current = None;
        }
        self.legs.remove(&leg)
    }

    /// The absolute sequence number of the last multiplexed message sent.
    pub fn last_seq_sent(&self) -> u64 {
        self.last_sent
    }

    /// `last_seq_sent` of `leg`.
    pub fn leg_last_sent(&self, leg: LegId) -> Option<u64> {
        self.legs.get(&leg).copied()
    }

    /// The highest `last_seq_sent` of the legs other than `leg`.
    pub fn max_other_than(&self, leg: LegId) -> Option<u64> {
        self.legs
            .iter()
            .filter(|(l, _)| **l != leg)
            .map(|(_, s)| *s)
            .max()
    }

    /// The leg the last multiplexed message went on.
    pub fn current(&self) -> Option<LegId> {
        self.current
    }

    /// The leg to use instead of `chosen` so that no leg's relative
    /// sequence number reaches [`MAX_RELATIVE_SEQ`]: the stalest other leg
    /// once it is about to, `chosen` otherwise.
    pub fn forced_leg(&self, chosen: LegId) -> LegId {
        let next = self.last_sent.saturating_add(1);
        self.legs
            .iter()
            .filter(|(l, s)| **l != chosen && next.saturating_sub(**s) >= MAX_RELATIVE_SEQ)
            .min_by_key(|(_, s)| **s)
            .map_or(chosen, |(l, _)| *l)
    }

    /// Account one multiplexed message sent on `leg`. Returns the relative
    /// sequence number of the CONFLUX_SWITCH to send on `leg` first, if the
    /// leg is behind (never a zero SWITCH).
    pub fn on_send(&mut self, leg: LegId) -> Result<Option<u32>, ConfluxError> {
        let last_sent = self.last_sent;
        let s = self
            .legs
            .get_mut(&leg)
            .ok_or(ConfluxError::NoSuchLeg { leg })?;
        let rel = last_sent.saturating_sub(*s);
        let switch = if rel > 0 {
            let rel32 = u32::try_from(rel).map_err(|_| ConfluxError::SeqOverflow { leg })?;
            *s = last_sent;
            Some(rel32)
        } else {
            None
        };
        let next = s.checked_add(1).ok_or(ConfluxError::SeqOverflow { leg })?;
        *s = next;
        self.last_sent = self.last_sent.max(next);
        self.current = Some(leg);
        Ok(switch)
    }

    /// Account message `seq` resent on `leg`, a leg that replaced one lost
    /// with data in flight (Braid proposal 001 §3.3): the leg's
    /// `last_seq_sent` moves to `seq`, the set's absolute count does not
    /// (prop 329 §2.7: resent cells are not counted twice). Returns the
    /// relative number of the SWITCH to send first when `seq` skips
    /// numbers the peer already has. `seq` must be above the leg's
    /// `last_seq_sent` and not above the set's.
    pub fn on_resend(&mut self, leg: LegId, seq: u64) -> Result<Option<u32>, ConfluxError> {
        let last_sent = self.last_sent;
        let s = self
            .legs
            .get_mut(&leg)
            .ok_or(ConfluxError::NoSuchLeg { leg })?;
        if seq <= *s || seq > last_sent {
            return Err(ConfluxError::CannotAddLeg("resend out of order on its leg"));
        }
        let rel = seq - 1 - *s;
        let switch = if rel > 0 {
            Some(u32::try_from(rel).map_err(|_| ConfluxError::SeqOverflow { leg })?)
        } else {
            None
        };
        *s = seq;
        Ok(switch)
    }

    /// Test hook: pretend `n` messages were sent on `leg` without SWITCH.
    #[cfg(test)]
    pub(crate) fn advance_for_test(&mut self, leg: LegId, n: u64) {
        if let Some(s) = self.legs.get_mut(&leg) {
            *s += n;
            self.last_sent = self.last_sent.max(*s);
            self.current = Some(leg);
        }
    }
}

/// How many cells the receiver believes a leg can have in flight, for the
/// SWITCH plausibility check: `initial_cells + growth * received`, where
/// `received` is the multiplexed cells received on that leg.
///
/// The sender's congestion window on a leg starts at `cc_cwnd_init` (at
/// most 10000 by consensus) and grows only with the SENDMEs we send for
/// cells received on it, by at most `cc_cwnd_inc_pct_ss` (at most 500 %)
/// of `sendme_inc` per SENDME, i.e. at most 5 cells per cell received
/// (proposal 324 §3.1). The defaults leave room above both, and for the
/// multiplexed commands congestion control does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchWindow {
    /// Cells a leg may carry before any growth.
    pub initial_cells: u64,
    /// Growth per cell received on the leg.
    pub growth: u64,
}

impl SwitchWindow {
    /// What a leg that received `received` cells may have in flight.
    pub fn capacity(&self, received: u64) -> u64 {
        self.initial_cells
            .saturating_add(self.growth.saturating_mul(received))
    }
}

impl Default for SwitchWindow {
    fn default() -> Self {
        Self {
            initial_cells: 16_384,
            growth: 8,
        }
    }
}

/// One leg, receive side.
#[derive(Debug, Clone, Copy, Default)]
struct RecvLeg {
    /// The absolute sequence number of the last multiplexed cell on the
    /// leg (or the base a SWITCH set).
    last_recv: u64,
    /// A SWITCH arrived and no multiplexed cell since.
    switch_pending: bool,
    /// Multiplexed cells received on the leg.
    received: u64,
    /// SWITCH(0)s after data on this leg since its last multiplexed cell
    /// or SWITCH that moved it. Cells on other legs do not reset it: a
    /// peer sends SWITCH(0) only when nothing was sent since (its
    /// previous SWITCH on this leg brought the leg up to date), so a run
    /// on one leg was a run in the peer's send order too, whatever the
    /// other legs' cells that arrive between them.
    zero_run: u32,
}

/// Empty SWITCHes (zero, or repeated without a cell between) tolerated in
/// a row before the set is closed (prop 329 §4.2.3).
pub const MAX_EMPTY_SWITCHES: u32 = 16;

/// The receiver's sequence state (prop 329 §2.6).
#[derive(Debug, Clone, Default)]
pub struct RecvSeq {
    /// Per linked leg.
    legs: BTreeMap<LegId, RecvLeg>,
    /// Any multiplexed cell received on any leg, ever.
    any_received: bool,
    /// The plausibility bound for SWITCH.
    window: SwitchWindow,
    /// SWITCHes in a row that moved nothing forward (zero, or repeated on
    /// a leg), since the last multiplexed cell on any leg.
    empty_switches: u32,
    /// What legs that left could have had in flight: cells a SWITCH may
    /// skip over without being implausible (they are lost, which
    /// [`RecvSeq::can_still_arrive`] then reports, rather than invented).
    departed: u64,
}

impl RecvSeq {
    /// No legs; SWITCHes checked against `window`.
    pub fn new(window: SwitchWindow) -> Self {
        Self {
            window,
            ..Self::default()
        }
    }

    /// A leg joins with `base` as its `last_seq_recv` (0 on a new set; the
    /// LINK's `last_seqno_recv` for a leg added later, prop 329 §2.4.4).
    pub fn add_leg(&mut self, leg: LegId, base: u64) {
        self.legs.insert(
            leg,
            RecvLeg {
                last_recv: base,
                ..RecvLeg::default()
            },
        );
    }

    /// A leg leaves; its `last_seq_recv`.
    pub fn remove_leg(&mut self, leg: LegId) -> Option<u64> {
        let l = self.legs.remove(&leg)?;
        self.departed = self
            .departed
            .saturating_add(self.window.capacity(l.received));
        Some(l.last_recv)
    }

    /// `last_seq_recv` of `leg`.
    pub fn leg_last_recv(&self, leg: LegId) -> Option<u64> {
        self.legs.get(&leg).map(|l| l.last_recv)
    }

    /// The highest `last_seq_recv` of the legs other than `leg`.
    pub fn max_other_than(&self, leg: LegId) -> Option<u64> {
        self.legs
            .iter()
            .filter(|(l, _)| **l != leg)
            .map(|(_, r)| r.last_recv)
            .max()
    }

    /// A CONFLUX_SWITCH with relative number `rel` arrived on `leg`.
    /// The cells it skips that have not arrived must be in flight on the
    /// other legs (or lost with legs that left): more than their
    /// [`SwitchWindow::capacity`] is a violation. `unreceived_upto(n)` tells how many sequence numbers up to `n` have
    /// not been received yet (delivered or held count as received).
    pub fn on_switch(
        &mut self,
        leg: LegId,
        rel: u32,
        unreceived_upto: impl FnOnce(u64) -> u64,
    ) -> Result<(), ConfluxError> {
        let window = self.window;
        let any_received = self.any_received;
        // What the other legs can still bring (prop 329 §4.2).
        let bound = self
            .legs
            .iter()
            .filter(|(l, _)| **l != leg)
            .map(|(_, r)| window.capacity(r.received))
            .fold(self.departed, u64::saturating_add);
        let newest_other = self.max_other_than(leg).unwrap_or(0);
        let empty_before = self.empty_switches;
        let l = self
            .legs
            .get_mut(&leg)
            .ok_or(ConfluxError::NoSuchLeg { leg })?;
        // An "empty" SWITCH moves nothing forward: a zero after data
        // (other than a fresh leg joining at the newest number, prop 329
        // §2.4.4), or a second SWITCH on a leg with no cell since. C-tor
        // sends both: it picks (and switches) legs also when it only
        // measures room to package (`conflux_decide_circ_for_send`), so
        // two flips without data give SWITCH(0), or SWITCH twice on one
        // leg. They carry no data, but prop 329 §4.2.3 warns that
        // switches can signal: tolerate a few in a row, then close.
        let fresh_at_front = l.received == 0 && l.last_recv >= newest_other;
        let zero = rel == 0 && any_received && !fresh_at_front;
        if zero {
            // A flood on one leg while another carries data: the run
            // counted on the leg (a hostile exit's 40 SWITCH(0)s went
            // unnoticed when the other leg's cells arrived between them).
            if l.zero_run >= MAX_EMPTY_SWITCHES {
                return Err(ConfluxError::SwitchZero { leg });
            }
            l.zero_run += 1;
        } else if rel > 0 {
            l.zero_run = 0;
        }
        if zero || l.switch_pending {
            if empty_before >= MAX_EMPTY_SWITCHES {
                return Err(if zero {
                    ConfluxError::SwitchZero { leg }
                } else {
                    ConfluxError::SwitchRepeated { leg }
                });
            }
            self.empty_switches = empty_before + 1;
        }
        if rel == 0 {
            l.switch_pending = true;
            return Ok(());
        }
        let new = l
            .last_recv
            .checked_add(u64::from(rel))
            .ok_or(ConfluxError::SeqOverflow { leg })?;
        let missing = unreceived_upto(new);
        if missing > bound {
            return Err(ConfluxError::SwitchTooFar {
                leg,
                missing,
                bound,
            });
        }
        l.last_recv = new;
        l.switch_pending = true;
        Ok(())
    }

    /// A multiplexed cell arrived on `leg`: its absolute sequence number.
    pub fn on_cell(&mut self, leg: LegId) -> Result<u64, ConfluxError> {
        let l = self
            .legs
            .get_mut(&leg)
            .ok_or(ConfluxError::NoSuchLeg { leg })?;
        let seq = l
            .last_recv
            .checked_add(1)
            .ok_or(ConfluxError::SeqOverflow { leg })?;
        l.last_recv = seq;
        l.switch_pending = false;
        l.zero_run = 0;
        l.received = l.received.saturating_add(1);
        self.any_received = true;
        self.empty_switches = 0;
        Ok(seq)
    }

    /// Whether sequence number `needed` can still arrive: some leg has not
    /// received past it yet. Cells on a leg arrive in order and a leg's
    /// numbers only grow, so once every remaining leg is at or beyond
    /// `needed` without it having arrived, it was sent on a leg that is
    /// gone: lost. `None` when there is no leg.
    pub fn can_still_arrive(&self, needed: u64) -> Option<bool> {
        if self.legs.is_empty() {
            return None;
        }
        Some(self.legs.values().any(|l| l.last_recv < needed))
    }

    /// Each leg's `last_seq_recv`, "leg0=12 leg1=40", in leg order (for
    /// error messages).
    pub fn describe(&self) -> String {
        self.legs
            .iter()
            .map(|(id, l)| format!("{id}={}", l.last_recv))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: LegId = LegId(0);
    const B: LegId = LegId(1);
    const C: LegId = LegId(2);

    #[test]
    fn multiplexed_set() {
        for c in [
            RelayCmd::BEGIN,
            RelayCmd::DATA,
            RelayCmd::END,
            RelayCmd::CONNECTED,
            RelayCmd::RESOLVE,
            RelayCmd::RESOLVED,
            RelayCmd::XON,
            RelayCmd::XOFF,
        ] {
            assert!(is_multiplexed(c), "{c}");
        }
        for c in [
            RelayCmd::SENDME,
            RelayCmd::BEGIN_DIR,
            RelayCmd::EXTEND2,
            RelayCmd::DROP,
            RelayCmd::CONFLUX_LINK,
            RelayCmd::CONFLUX_LINKED,
            RelayCmd::CONFLUX_LINKED_ACK,
            RelayCmd::CONFLUX_SWITCH,
            RelayCmd::PADDING_NEGOTIATE,
        ] {
            assert!(!is_multiplexed(c), "{c}");
        }
    }

    /// The proposal's example: 10 cells on leg A, SWITCH(10) to B, 21 on
    /// B, SWITCH(21) back to A.
    #[test]
    fn proposal_example_both_ends() {
        let mut s = SendSeq::new();
        let mut r = RecvSeq::new(SwitchWindow::default());
        for l in [A, B] {
            s.add_leg(l, 0);
            r.add_leg(l, 0);
        }
        let mut seqs = Vec::new();
        let send = |s: &mut SendSeq, r: &mut RecvSeq, leg| {
            if let Some(rel) = s.on_send(leg).unwrap() {
                r.on_switch(leg, rel, |_| 0).unwrap();
                Some(rel)
            } else {
                None
            }
        };
        for _ in 0..10 {
            assert_eq!(send(&mut s, &mut r, A), None);
            seqs.push(r.on_cell(A).unwrap());
        }
        let mut switches = Vec::new();
        for _ in 0..21 {
            switches.extend(send(&mut s, &mut r, B));
            seqs.push(r.on_cell(B).unwrap());
        }
        for _ in 0..3 {
            switches.extend(send(&mut s, &mut r, A));
            seqs.push(r.on_cell(A).unwrap());
        }
        assert_eq!(switches, vec![10, 21]);
        assert_eq!(seqs, (1..=34).collect::<Vec<_>>());
        assert_eq!(s.last_seq_sent(), 34);
        assert_eq!(s.current(), Some(A));
    }

    #[test]
    fn switch_before_relative_counter_passes_2_31() {
        let mut s = SendSeq::new();
        s.add_leg(A, 0);
        s.add_leg(B, 0);
        s.on_send(B).unwrap();
        s.advance_for_test(A, MAX_RELATIVE_SEQ - 1);
        // After one more cell on A, a SWITCH to B would say 2^31 - 1: fine.
        assert_eq!(s.forced_leg(A), A);
        s.on_send(A).unwrap();
        // After another, it would say 2^31: B now, with 2^31 - 1.
        assert_eq!(s.forced_leg(A), B);
        let rel = s.on_send(B).unwrap().unwrap();
        assert_eq!(u64::from(rel), MAX_RELATIVE_SEQ - 1);
        assert_eq!(s.forced_leg(A), A);
        assert_eq!(s.forced_leg(B), B);
    }

    #[test]
    fn switch_refusals() {
        let mut r = RecvSeq::new(SwitchWindow {
            initial_cells: 100,
            growth: 2,
        });
        r.add_leg(A, 0);
        r.add_leg(B, 0);
        // Zero before any data: C-tor's first-leg race, not empty, once
        // per leg.
        r.on_switch(B, 0, |_| 0).unwrap();
        r.on_switch(A, 0, |_| 0).unwrap();
        // Again on a leg with no cell since: empty. MAX_EMPTY_SWITCHES in
        // a row pass, counted over all legs together; the next one is
        // refused (before data a zero is only a repeat).
        for i in 0..MAX_EMPTY_SWITCHES {
            r.on_switch([A, B][i as usize % 2], 0, |_| 0).unwrap();
        }
        assert_eq!(
            r.on_switch(B, 0, |_| 0).unwrap_err(),
            ConfluxError::SwitchRepeated { leg: B }
        );
        // A multiplexed cell on any leg starts the count again.
        assert_eq!(r.on_cell(B).unwrap(), 1);
        // Zero after data is empty even on a leg with a cell since its
        // last SWITCH: MAX_EMPTY_SWITCHES pass, the next is refused.
        for _ in 0..MAX_EMPTY_SWITCHES {
            r.on_switch(B, 0, |_| 0).unwrap();
        }
        assert_eq!(
            r.on_switch(B, 0, |_| 0).unwrap_err(),
            ConfluxError::SwitchZero { leg: B }
        );
        assert_eq!(
            r.on_switch(A, 0, |_| 0).unwrap_err(),
            ConfluxError::SwitchZero { leg: A }
        );
        assert_eq!(r.on_cell(B).unwrap(), 2);
        // A repeated non-zero SWITCH is empty too, and still moves the
        // leg on: A (pending since its zeros) goes to 1, then 2.
        r.on_switch(A, 1, |_| 0).unwrap();
        r.on_switch(A, 1, |_| 0).unwrap();
        assert_eq!(r.leg_last_recv(A), Some(2));
        assert_eq!(r.on_cell(A).unwrap(), 3);
        // After a cell on A its first SWITCH is not empty, the next
        // MAX_EMPTY_SWITCHES are, then A is refused.
        for _ in 0..=MAX_EMPTY_SWITCHES {
            r.on_switch(A, 1, |n| n - 3).unwrap();
        }
        assert_eq!(
            r.on_switch(A, 1, |n| n - 3).unwrap_err(),
            ConfluxError::SwitchRepeated { leg: A }
        );
        // The one that overflows the count names its own kind.
        assert_eq!(
            r.on_switch(A, 0, |_| 0).unwrap_err(),
            ConfluxError::SwitchZero { leg: A }
        );
        let at = 3 + u64::from(MAX_EMPTY_SWITCHES) + 1;
        assert_eq!(
            r.leg_last_recv(A),
            Some(at),
            "the refused one moved nothing"
        );
        // A repeated SWITCH is still bounded: after a cell on A (21;
        // 1..=3 and 21 received), SWITCH(1) to 22, then a repeat of 500 is
        // too far: B has received 2 cells, so it can carry 100 + 2 * 2.
        assert_eq!(r.on_cell(A).unwrap(), at + 1);
        r.on_switch(A, 1, |n| n - 4).unwrap();
        let err = r.on_switch(A, 500, |n| n - 4).unwrap_err();
        assert_eq!(
            err,
            ConfluxError::SwitchTooFar {
                leg: A,
                missing: at + 2 + 500 - 4,
                bound: 104
            }
        );
        assert!(err.is_protocol_violation());
        // Within the bound, fine.
        r.on_switch(A, 80, |n| n - 4).unwrap();
        assert_eq!(r.on_cell(A).unwrap(), at + 83);

        // Zero on a leg that joined at the newest number and has carried
        // nothing (a replacement leg, prop 329 §2.4.4): not empty, once.
        let mut j = RecvSeq::new(SwitchWindow::default());
        j.add_leg(A, 0);
        assert_eq!(j.on_cell(A).unwrap(), 1);
        j.add_leg(B, 1);
        j.on_switch(B, 0, |_| 0).unwrap();
        for _ in 0..MAX_EMPTY_SWITCHES {
            j.on_switch(B, 0, |_| 0).unwrap();
        }
        assert_eq!(
            j.on_switch(B, 0, |_| 0).unwrap_err(),
            ConfluxError::SwitchRepeated { leg: B }
        );
        assert_eq!(j.on_cell(B).unwrap(), 2);
        // A leg that joined behind the newest number: its zero is empty.
        j.add_leg(LegId(9), 1);
        for _ in 0..MAX_EMPTY_SWITCHES {
            j.on_switch(LegId(9), 0, |_| 0).unwrap();
        }
        assert_eq!(
            j.on_switch(LegId(9), 0, |_| 0).unwrap_err(),
            ConfluxError::SwitchZero { leg: LegId(9) },
            "a leg that joined behind the newest number"
        );

        // Overflow.
        let mut r = RecvSeq::new(SwitchWindow {
            initial_cells: u64::MAX,
            growth: 0,
        });
        r.add_leg(A, u64::MAX - 1);
        r.add_leg(B, 0);
        r.on_cell(B).unwrap();
        assert_eq!(
            r.on_switch(A, 5, |_| 0).unwrap_err(),
            ConfluxError::SeqOverflow { leg: A }
        );
        // A lone leg cannot jump: nothing else could fill the gap.
        let mut r = RecvSeq::new(SwitchWindow::default());
        r.add_leg(C, 0);
        r.on_cell(C).unwrap();
        assert!(matches!(
            r.on_switch(C, 5, |n| n - 1),
            Err(ConfluxError::SwitchTooFar { bound: 0, .. })
        ));
    }

    #[test]
    fn gap_fillability() {
        let mut r = RecvSeq::new(SwitchWindow::default());
        assert_eq!(r.can_still_arrive(1), None);
        r.add_leg(A, 0);
        r.add_leg(B, 0);
        for _ in 0..5 {
            r.on_cell(A).unwrap();
        }
        // 6 can come on either leg.
        assert_eq!(r.can_still_arrive(6), Some(true));
        // B switches to 10: 6..=10 must come on A.
        r.on_switch(B, 10, |n| n - 5).unwrap();
        assert_eq!(r.can_still_arrive(6), Some(true));
        // A vanishes: nobody can bring 6.
        r.remove_leg(A);
        assert_eq!(r.can_still_arrive(6), Some(false));
        assert_eq!(r.can_still_arrive(11), Some(true));
    }
}
