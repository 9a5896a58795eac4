//! Leg numbers and lost legs in a resumable set's LINKs (Braid proposal
//! 001 §2.2, §3.3).
//!
//! An end may learn that a leg died long before the other: a C-tor
//! middle can hold the DESTROY for a leg behind another's while nothing
//! else goes on its channel. A client that lost a leg links a new one at
//! once; an exit that has not heard of the loss yet resends on the new
//! leg what the client lacks, then goes on sending on the dead leg, and
//! when it does hear of the loss it has nothing left to resume with: the
//! client already linked. So the client numbers its legs in its LINKs and
//! names, in every LINK, the legs it lost that no answered LINK named
//! yet; the exit drops those legs before it resumes on the new one.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{ConfluxEvent, ConfluxSet, Handled, Role};
use crate::conflux::MAX_LEGS;
use crate::conflux::error::ConfluxError;
use crate::conflux::ext::{LegNote, MAX_LOST};
use crate::ids::LegId;

/// A set's bookkeeping of leg numbers and lost legs.
#[derive(Debug, Default)]
pub(super) struct LegNotes {
    /// Client: linked legs lost that no LINK the exit answered named yet
    /// (at most [`MAX_LOST`], the oldest forgotten).
    untold: Vec<LegId>,
    /// Client: what the LINK of each leg still linking named (at most
    /// [`MAX_LEGS`] legs).
    told: Vec<(LegId, Vec<LegId>)>,
    /// Exit: the client's number of each of our legs that had one.
    peer_nums: BTreeMap<LegId, u8>,
    /// Exit: numbers of legs lost while no leg lived to tell the client
    /// (at most [`MAX_LOST`]).
    exit_untold: Vec<u8>,
}

impl LegNotes {
    /// Linked leg `leg` was lost. Exit: the client's number for it, if it
    /// gave one.
    pub(super) fn leg_lost(&mut self, role: Role, leg: LegId) -> Option<u8> {
        match role {
            Role::Client => {
                if self.untold.len() >= MAX_LOST {
                    self.untold.remove(0);
                }
                self.untold.push(leg);
                None
            }
            Role::Exit => self.peer_nums.remove(&leg),
        }
    }

    /// Client: the LEG note of `leg`'s LINK (our leg id is its number),
    /// remembered until the LINK is answered.
    pub(super) fn link_note(&mut self, leg: LegId) -> LegNote {
        self.told.retain(|(l, _)| *l != leg);
        if self.told.len() >= MAX_LEGS {
            self.told.remove(0);
        }
        self.told.push((leg, self.untold.clone()));
        LegNote {
            num: leg.0,
            lost: self.untold.iter().map(|l| l.0).collect(),
        }
    }

    /// Client: `leg`'s LINK was answered (the exit read what it named) or
    /// the leg failed (it told nothing).
    pub(super) fn link_done(&mut self, leg: LegId, answered: bool) {
        let Some(i) = self.told.iter().position(|(l, _)| *l == leg) else {
            return;
        };
        let (_, named) = self.told.swap_remove(i);
        if answered {
            self.untold.retain(|l| !named.contains(l));
        }
    }

    /// Exit: our leg the client numbers `num`.
    fn leg_numbered(&self, num: u8) -> Option<LegId> {
        self.peer_nums
            .iter()
            .find(|(_, n)| **n == num)
            .map(|(l, _)| *l)
    }
}

impl ConfluxSet {
    /// Exit: the client's LINK for new leg `leg` (in the set already)
    /// carried `note`. Remember
    /// the leg's number; if the set is resumable and linked, drop the
    /// linked legs the note names lost, as if their circuits had closed
    /// (each reported with [`ConfluxEvent::LegDropped`]), before the new
    /// leg resumes the set.
    pub(super) fn take_leg_note(&mut self, leg: LegId, note: &LegNote, now: Instant) {
        if self.resume.is_some() && self.linked {
            for &num in &note.lost {
                let Some(lost) = self.notes.leg_numbered(num) else {
                    continue;
                };
                if lost == leg || !self.legs.get(&lost).is_some_and(|s| s.is_linked()) {
                    continue;
                }
                self.legs.remove(&lost);
                self.snapshot_seqs(lost);
                self.resumable_leg_closed(lost, now, false);
                self.events
                    .push_back(ConfluxEvent::LegDropped { leg: lost });
            }
        }
        // Only legs of the set (at most MAX_LEGS); a number the client
        // gave twice belongs to its newest leg.
        let legs = &self.legs;
        self.notes
            .peer_nums
            .retain(|l, n| *n != note.num && legs.contains_key(l));
        if legs.contains_key(&leg) {
            self.notes.peer_nums.insert(leg, note.num);
        }
    }

    /// Exit: linked leg `leg`, which the client numbers `num`, was lost
    /// and the client did not say so: tell it on a leg that lives, so
    /// that it drops the leg and links a new one (without which a gap the
    /// lost leg left would wait for a new leg that never comes). With no
    /// leg alive, the next leg to link tells it, after its LINKED.
    pub(super) fn tell_leg_lost(&mut self, num: u8) {
        let alive = self
            .legs
            .iter()
            .find(|(_, s)| s.is_linked())
            .map(|(l, _)| *l);
        match alive {
            Some(alive) => self
                .transmit
                .push_back((alive, crate::conflux::ext::legs_lost_msg(&[num]))),
            None => {
                if self.notes.exit_untold.len() >= MAX_LOST {
                    self.notes.exit_untold.remove(0);
                }
                self.notes.exit_untold.push(num);
            }
        }
    }

    /// Exit: new leg `leg` is linked (its LINKED queued): the legs lost
    /// while none lived go to the client on it.
    pub(super) fn tell_untold_on(&mut self, leg: LegId) {
        if self.notes.exit_untold.is_empty() {
            return;
        }
        let nums = std::mem::take(&mut self.notes.exit_untold);
        self.transmit
            .push_back((leg, crate::conflux::ext::legs_lost_msg(&nums)));
    }

    /// Client: the exit's LEGS_LOST on `on` named `nums`: each of our
    /// linked legs among them is reported with
    /// [`ConfluxEvent::LegDropped`] (the driver closes its circuit, and
    /// the set learns of the loss as of any). A set without resumption
    /// never gets one: a protocol violation.
    pub(super) fn legs_lost_from_peer(
        &mut self,
        on: LegId,
        nums: Result<Vec<u8>, ConfluxError>,
    ) -> Result<Handled, ConfluxError> {
        let cmd = tor_cell::relaycell::RelayCmd::from(crate::conflux::ext::CMD_LEGS_LOST);
        if self.role != Role::Client || self.resume.is_none() {
            return self.violation(
                on,
                ConfluxError::BadExtension {
                    cmd,
                    why: "LEGS_LOST without resumption, or to an exit",
                },
            );
        }
        let nums = match nums {
            Ok(n) => n,
            Err(e) => return self.violation(on, e),
        };
        for num in nums {
            let leg = LegId(num);
            if self.legs.get(&leg).is_some_and(|s| s.is_linked()) {
                self.events.push_back(ConfluxEvent::LegDropped { leg });
            }
        }
        Ok(Handled::Consumed)
    }

    /// Client: `leg`'s LINK was answered, or the leg failed.
    pub(super) fn leg_link_done(&mut self, leg: LegId, answered: bool) {
        self.notes.link_done(leg, answered);
    }
}
