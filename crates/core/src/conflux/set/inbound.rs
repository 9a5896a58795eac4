//! The receive side of a [`ConfluxSet`]: relay messages from the legs
//! (handshake replies, SWITCH, multiplexed messages into the reorder
//! queue) and the loss of a leg (prop 329 §2.4.3, §2.6).

use std::time::Instant;

use tor_cell::relaycell::msg::AnyRelayMsg;
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::{ConfluxEvent, ConfluxSet, Delivered, Handled, LegClosedInfo, LegState, msg_cost};
use crate::conflux::error::{ConfluxError, LegLossRule};
use crate::conflux::reorder::ReorderError;
use crate::conflux::seq::is_multiplexed;
use crate::ids::{LegId, StreamId};

impl ConfluxSet {
    /// A relay message arrived on `leg` from its last hop (the driver
    /// checks the hop: Conflux messages from any other hop are a violation
    /// of its own, prop 329 §4.2.1; and Conflux messages on a circuit that
    /// is not a leg). Conflux messages are handled, multiplexed ones
    /// sequenced; anything else is given back.
    pub fn handle_msg(
        &mut self,
        leg: LegId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<Handled, ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        self.resize_reorder(now, &[]);
        // Braid's LINK/LINKED extensions (proposal 001 §2.2).
        let (msg, ext) = match crate::conflux::ext::split(msg) {
            Ok(split) => split,
            Err(e) => return self.violation(leg, e),
        };
        if ext.cap.is_some() && matches!(msg, AnyRelayMsg::ConfluxLinked(_)) {
            self.peer_offers_resumption();
            self.watch.peer_probes |= ext.probe;
        }
        if !self.legs.contains_key(&leg) {
            return Err(ConfluxError::NoSuchLeg { leg });
        }
        // Braid's circuit-level messages (proposal 001 §3.3, §3.6).
        if let Some(nums) = crate::conflux::ext::parse_legs_lost(&msg) {
            return self.legs_lost_from_peer(leg, nums);
        }
        self.leg_heard(leg, now);
        if let Some(probe) = crate::conflux::ext::Probe::parse(&msg) {
            return self.probe_from_peer(leg, probe);
        }
        let Some(state) = self.legs.get_mut(&leg) else {
            return Err(ConfluxError::NoSuchLeg { leg });
        };
        let cmd = msg.cmd();
        match msg {
            AnyRelayMsg::ConfluxLinked(linked) => {
                let r = match state {
                    LegState::Exit(_) => Err(ConfluxError::WrongDirection { leg, cmd }),
                    LegState::ClientLinked { .. } => Err(ConfluxError::LinkedTwice { leg }),
                    LegState::ClientLinking(h) => match h.handle_linked(&linked, now) {
                        Ok(out) => {
                            let ours = h.ours().clone();
                            *state = LegState::ClientLinked { rtt: out.rtt };
                            let resuming = self.resume.is_some() && self.linked;
                            // Starting numbers from our LINK (§2.4.4); on a
                            // resumed leg we resend from what the exit
                            // says it has.
                            self.send.add_leg(
                                leg,
                                if resuming {
                                    out.peer.last_seqno_recv
                                } else {
                                    ours.last_seqno_sent
                                },
                            );
                            self.recv.add_leg(leg, ours.last_seqno_recv);
                            if resuming {
                                self.expect_resends(leg, &ours, &out.peer);
                                let _ = self.resume_on(leg, out.peer.last_seqno_recv, now);
                            }
                            self.peer_ux = Some(out.peer.desired_ux);
                            self.leg_link_done(leg, true);
                            self.transmit.push_back((leg, out.ack.into()));
                            self.events.push_back(ConfluxEvent::LegLinked {
                                leg,
                                rtt: Some(out.rtt),
                            });
                            self.maybe_finalize();
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                match r {
                    Ok(()) => Ok(Handled::Consumed),
                    Err(e) => self.violation(leg, e),
                }
            }
            AnyRelayMsg::ConfluxLinkedAck(_) => {
                let r = match state {
                    LegState::Exit(h) => h.handle_linked_ack(now),
                    _ => Err(ConfluxError::WrongDirection { leg, cmd }),
                };
                match r {
                    Ok(rtt) => {
                        self.events.push_back(ConfluxEvent::LegRtt { leg, rtt });
                        Ok(Handled::Consumed)
                    }
                    Err(e) => self.violation(leg, e),
                }
            }
            AnyRelayMsg::ConfluxLink(_) => {
                let e = match state {
                    LegState::Exit(_) => ConfluxError::LinkTwice { leg },
                    _ => ConfluxError::WrongDirection { leg, cmd },
                };
                self.violation(leg, e)
            }
            AnyRelayMsg::ConfluxSwitch(sw) => {
                if !state.is_linked() {
                    return self.violation(leg, ConfluxError::NotLinkedLeg { leg, cmd });
                }
                let reorder = &self.reorder;
                if let Err(e) = self
                    .recv
                    .on_switch(leg, sw.seqno(), |n| reorder.unreceived_upto(n))
                {
                    return Err(self.fail(e));
                }
                self.stats_mut(leg).switches_received += 1;
                self.check_gap(leg)?;
                Ok(Handled::Consumed)
            }
            _ if cmd == RelayCmd::BEGIN_DIR => {
                self.violation(leg, ConfluxError::BeginDirOnLeg { leg })
            }
            msg if is_multiplexed(cmd) => {
                if !state.is_linked() {
                    return self.violation(leg, ConfluxError::NotLinkedLeg { leg, cmd });
                }
                self.sequenced(leg, stream, msg)?;
                Ok(Handled::Consumed)
            }
            msg => Ok(Handled::NotConflux { stream, msg }),
        }
    }

    /// A multiplexed message on linked `leg`.
    fn sequenced(
        &mut self,
        leg: LegId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
    ) -> Result<(), ConfluxError> {
        let seq = self.recv.on_cell(leg).map_err(|e| self.fail(e))?;
        self.count_resend(leg, seq);
        let st = self.stats_mut(leg);
        st.msgs_received += 1;
        if let AnyRelayMsg::Data(d) = &msg {
            st.data_bytes_received += d.as_ref().len() as u64;
        }
        let cost = msg_cost(&msg);
        let d = Delivered {
            seq,
            leg,
            stream,
            msg,
        };
        if let Err(e) = self.reorder.insert(seq, d, cost) {
            if self.resume.is_some()
                && matches!(
                    e,
                    ReorderError::Stale { .. } | ReorderError::Duplicate { .. }
                )
            {
                // A resent message we already had (Braid proposal 001
                // §3.3): dropped, not counted against the bound.
                return Ok(());
            }
            let e = match e {
                ReorderError::Stale { seq, delivered } => ConfluxError::StaleSeq {
                    leg,
                    seq,
                    delivered,
                },
                ReorderError::Duplicate { seq } => ConfluxError::DuplicateSeq { leg, seq },
                ReorderError::TooFarAhead {
                    seq,
                    expected,
                    max_ahead,
                } => ConfluxError::SeqTooFarAhead {
                    leg,
                    seq,
                    expected,
                    max_ahead,
                },
                ReorderError::Full {
                    cells,
                    bytes,
                    limit,
                } => ConfluxError::ReorderQueueFull {
                    expected: self.reorder.expected(),
                    legs: self.recv.describe(),
                    cells,
                    bytes,
                    max_cells: limit.max_cells,
                    max_bytes: limit.max_bytes,
                },
            };
            return Err(self.fail(e));
        }
        self.check_gap(leg)
    }

    /// Receive side, exact: fail if the next needed sequence number can no
    /// longer arrive on any linked leg.
    fn check_gap(&mut self, leg: LegId) -> Result<(), ConfluxError> {
        if self.resume.is_some() {
            // A resumed leg brings what is missing (Braid proposal 001).
            return Ok(());
        }
        match self.recv.can_still_arrive(self.reorder.expected()) {
            Some(true) => Ok(()),
            Some(false) => Err(self.fail(ConfluxError::LegLost {
                leg,
                rule: LegLossRule::GapCannotFill,
            })),
            None => Err(self.fail(ConfluxError::LegLost {
                leg,
                rule: LegLossRule::NoLegsLeft,
            })),
        }
    }

    /// The circuit of `leg` closed (DESTROY, TRUNCATED, our own close).
    ///
    /// A leg still linking just leaves (prop 329 §2.4.3: the client may
    /// relaunch one, [`Self::add_leg`]). For a linked leg the set goes on
    /// with the others unless one of these holds, in which case it closes
    /// (`Err`, [`ConfluxError::LegLost`]):
    ///
    /// Send side, as C-tor's `cfx_del_leg` (we cannot know what the peer
    /// received; SENDMEs only acknowledge every `sendme_inc` DATA cells):
    /// 1. the leg was our current sending leg (the last multiplexed message
    ///    went on it) — [`LegLossRule::CurrentSendingLeg`];
    /// 2. its `last_seq_sent` is strictly above every other leg's — our
    ///    latest cells went on it — [`LegLossRule::HighestSeqSent`];
    /// 3. it had `inflight >= sendme_inc` DATA cells unacknowledged —
    ///    [`LegLossRule::DataInFlight`].
    ///
    /// Receive side, exact (where C-tor guesses with "had the highest
    /// `last_seq_recv`"): 4. the next sequence number we need can no
    /// longer arrive, because every remaining leg has already received
    /// past it — [`LegLossRule::GapCannotFill`]. Checked here and on every
    /// later SWITCH or cell, so a loss that only shows once the other legs
    /// move on is caught then.
    ///
    /// 5. no linked leg is left — [`LegLossRule::NoLegsLeft`].
    pub fn leg_closed(
        &mut self,
        leg: LegId,
        info: LegClosedInfo,
        now: Instant,
    ) -> Result<(), ConfluxError> {
        let Some(state) = self.legs.get(&leg) else {
            return Err(ConfluxError::NoSuchLeg { leg });
        };
        if !state.is_linked() {
            self.legs.remove(&leg);
            self.leg_link_done(leg, false);
            self.maybe_finalize();
            return Ok(());
        }
        self.legs.remove(&leg);
        self.snapshot_seqs(leg);
        if self.closed.is_some() {
            self.send.remove_leg(leg);
            self.recv.remove_leg(leg);
            return Ok(());
        }
        if self.resume.is_some() {
            // Braid proposal 001 §3.3: what it carried is resent on the
            // next leg; none of the data-loss rules apply.
            self.resumable_leg_closed(leg, now, true);
            return Ok(());
        }
        let was_current = self.send.current() == Some(leg);
        let highest = match (self.send.leg_last_sent(leg), self.send.max_other_than(leg)) {
            (Some(mine), Some(others)) => mine > others,
            _ => false,
        };
        self.send.remove_leg(leg);
        self.recv.remove_leg(leg);
        let rule = if self.linked_legs() == 0 {
            Some(LegLossRule::NoLegsLeft)
        } else if was_current {
            Some(LegLossRule::CurrentSendingLeg)
        } else if highest {
            Some(LegLossRule::HighestSeqSent)
        } else if info.sendme_inc > 0 && info.inflight >= info.sendme_inc {
            Some(LegLossRule::DataInFlight)
        } else {
            None
        };
        if let Some(rule) = rule {
            return Err(self.fail(ConfluxError::LegLost { leg, rule }));
        }
        self.check_gap(leg)
    }
}
