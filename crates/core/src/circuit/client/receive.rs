//! Cells a [`ClientCircuit`] receives: handshake replies, relay cells
//! decrypted and checked (tor-spec §5, §6.1), deliver windows and our
//! SENDMEs, circuit SENDMEs from the relays (tor-spec §7.3, proposal 289),
//! and events for the driver.

use std::time::Instant;

use tor_cell::chancell::msg::AnyChanMsg;
use tor_cell::relaycell::msg::{AnyRelayMsg, Sendme};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::{ClientCircuit, to_cc_tag};
use crate::circuit::build::PendingHandshake;
use crate::circuit::error::CircError;
use crate::circuit::event::{CircEvent, CloseReason};
use crate::circuit::hop::{Hop, PlainCell};
use crate::circuit::relay_cell;
use crate::crypto::{RelayCellBody, SendmeTag};
use crate::ids::HopNum;

impl ClientCircuit {
    /// A cell from the channel for this circuit.
    ///
    /// `Err` means the cell broke the protocol (or overran one of our
    /// bounds) and the circuit is now closed: a DESTROY is queued and the
    /// terminal event carries the same error. Cells for a closed circuit
    /// are ignored (tor-spec §5.4).
    pub fn handle_cell(&mut self, now: Instant, msg: AnyChanMsg) -> Result<(), CircError> {
        if self.closed {
            return Ok(());
        }
        let result = match msg {
            AnyChanMsg::Created2(c) => self.first_hop_reply(false, &c.into_body(), now),
            AnyChanMsg::CreatedFast(c) => self.first_hop_reply(true, &c.into_handshake(), now),
            AnyChanMsg::Relay(r) => self.handle_relay(now, r.into_relay_body()),
            AnyChanMsg::RelayEarly(_) => Err(unexpected(
                "RELAY_EARLY",
                "tor-spec §5.6: an inbound RELAY_EARLY cell MUST close the circuit",
            )),
            AnyChanMsg::Destroy(d) => {
                self.shutdown(CloseReason::Destroyed { reason: d.reason() }, false);
                Ok(())
            }
            other => Err(CircError::UnexpectedCell {
                cell: tor_cell::chancell::ChanMsg::cmd(&other).to_string(),
                rule: "tor-spec §5: not a cell a relay sends on a client circuit",
            }),
        };
        result.map_err(|e| if self.closed { e } else { self.fail(e) })
    }

    /// The first hop's CREATED2, or CREATED_FAST if `fast`.
    fn first_hop_reply(&mut self, fast: bool, reply: &[u8], now: Instant) -> Result<(), CircError> {
        let sent_fast =
            matches!(&self.pending, Some(p) if matches!(p.handshake, PendingHandshake::Fast(_)));
        if self.hops.is_empty() && self.pending.is_some() && fast == sent_fast {
            return self.finish_hop(reply, now);
        }
        let cell = if fast { "CREATED_FAST" } else { "CREATED2" };
        let rule =
            "tor-spec §5.1: CREATED2 answers our CREATE2 and CREATED_FAST our CREATE_FAST, once";
        Err(unexpected(cell, rule))
    }

    /// An inbound RELAY cell body: peel, recognize, dispatch.
    fn handle_relay(
        &mut self,
        now: Instant,
        mut body: Box<RelayCellBody>,
    ) -> Result<(), CircError> {
        if self.hops.is_empty() {
            return Err(unexpected(
                "RELAY",
                "tor-spec §5.1: no relay cell before the first hop's CREATED2",
            ));
        }
        let (hop, tag) =
            self.layers
                .decrypt_inbound(&mut body)
                .ok_or(CircError::UnrecognizedCell {
                    n_hops: self.hops.len(),
                })?;
        let (stream, msg) = relay_cell::decode(&body)
            .map_err(|source| CircError::MalformedRelayCell { hop, source })?;
        let cmd = msg.cmd();
        match (stream, msg) {
            (Some(stream), AnyRelayMsg::Data(data)) => {
                self.on_data_received(hop, &tag, now)?;
                self.push_event(CircEvent::StreamMsg {
                    hop,
                    stream,
                    msg: data.into(),
                })
            }
            (None, AnyRelayMsg::Sendme(sendme)) => self.on_circuit_sendme(hop, sendme, now),
            (None, AnyRelayMsg::Extended2(ext)) => {
                if self.pending.is_some() && Some(hop) == self.last_hop() && !self.hops.is_empty() {
                    self.finish_hop(&ext.into_body(), now)
                } else {
                    Err(CircError::UnexpectedRelayMsg {
                        hop,
                        cmd,
                        rule: "tor-spec §5.1.2: EXTENDED2 answers our EXTEND2, from the last hop",
                    })
                }
            }
            (None, AnyRelayMsg::Extended(_)) => Err(CircError::UnexpectedRelayMsg {
                hop,
                cmd,
                rule: "tor-spec §5.1.2: EXTENDED answers EXTEND, which Braid never sends",
            }),
            (None, AnyRelayMsg::Truncated(t)) => {
                self.shutdown(
                    CloseReason::Truncated {
                        hop,
                        reason: t.reason(),
                    },
                    true,
                );
                Ok(())
            }
            // Padding (tor-spec §6.1 RELAY_DROP) and commands we do not
            // know: "the cell must be dropped and ignored" (tor-spec §6.1);
            // they count for the digests, which is done.
            // A LINKED with Braid's extensions is the Conflux layer's
            // (`conflux::ext`, Braid proposal 001 §2.2).
            (_, AnyRelayMsg::Drop(_)) => Ok(()),
            // Braid proposal 001 §4's stream messages are the stream
            // layer's (which ignores them unless the exit offered them);
            // its LEGS_LOST (§3.3) and leg probes (§3.6) are the Conflux
            // layer's.
            (_, AnyRelayMsg::Unrecognized(u))
                if u.cmd() != RelayCmd::CONFLUX_LINKED
                    && !crate::conflux::ext::is_set_cmd(u.cmd())
                    && !crate::stream::migrate_wire::is_migrate_cmd(u.cmd()) =>
            {
                Ok(())
            }
            (_, msg) if is_forward_only(cmd) => {
                drop(msg);
                Err(CircError::UnexpectedRelayMsg {
                    hop,
                    cmd,
                    rule: "tor-spec §6.1: commands labelled \"forward\" are sent only by the \
                           origin of the circuit, which we are",
                })
            }
            (Some(stream), msg) => self.push_event(CircEvent::StreamMsg { hop, stream, msg }),
            (None, msg) => self.push_event(CircEvent::CircMsg { hop, msg }),
        }
    }

    /// A DATA cell from `hop` with SENDME tag `tag`: count it against our
    /// deliver window and send a circuit SENDME v1 carrying its tag when an
    /// increment is due (tor-spec §7.3, §7.3.1; proposal 289; with
    /// congestion control every `sendme_inc` cells, proposal 324), unless
    /// SENDMEs to `hop` are held ([`Self::set_sendme_hold`]).
    fn on_data_received(
        &mut self,
        hop: HopNum,
        tag: &SendmeTag,
        now: Instant,
    ) -> Result<(), CircError> {
        self.hop_mut(hop)
            .ok_or(CircError::Internal("recognized by a missing hop"))?
            .on_data(tag)
            .map_err(|source| CircError::FlowControl { hop, source })?;
        self.send_due_sendmes(hop, now)
    }

    /// Hold back (or release) the circuit SENDMEs due to `hop`, a
    /// congestion-controlled hop: its sender stops once its window of
    /// unacknowledged cells is full, which is how a Conflux set whose
    /// reorder queue fills slows the legs that are ahead (Braid; proposal
    /// 324 §3 lets the receiver pace SENDMEs). Held SENDMEs never let our
    /// deliver window run out. Releasing sends every held SENDME, in order.
    /// `Err` (and the circuit closed) only if they cannot be sent.
    pub fn set_sendme_hold(
        &mut self,
        hop: HopNum,
        hold: bool,
        now: Instant,
    ) -> Result<(), CircError> {
        if self.closed {
            return Ok(());
        }
        let Some(h) = self.hop_mut(hop) else {
            return Ok(());
        };
        h.deliver.set_hold(hold);
        if hold {
            return Ok(());
        }
        self.send_due_sendmes(hop, now).map_err(|e| self.fail(e))
    }

    /// Send the SENDMEs [`Hop::next_sendme`] lets go now.
    fn send_due_sendmes(&mut self, hop: HopNum, now: Instant) -> Result<(), CircError> {
        while let Some(tag) = self.hop_mut(hop).and_then(Hop::next_sendme) {
            // Bounded: a peer that keeps sending DATA while we cannot get
            // our SENDMEs out fills the reserve and the circuit closes.
            self.check_control_space()?;
            let msg = Sendme::from(to_cc_tag(&tag));
            let body =
                relay_cell::encode(None, msg.into(), &mut self.rng).map_err(CircError::Encode)?;
            // Circuit-level cells never wait for the window.
            self.transmit(
                hop,
                PlainCell {
                    body,
                    is_data: false,
                    stream: None,
                },
                false,
                now,
            )?;
        }
        Ok(())
    }

    /// A circuit-level SENDME from `hop`: check its tag, credit the window
    /// (and, with congestion control, take an RTT sample and update cwnd),
    /// then send what the window now allows.
    fn on_circuit_sendme(
        &mut self,
        hop: HopNum,
        sendme: Sendme,
        now: Instant,
    ) -> Result<(), CircError> {
        let tag = sendme.into_sendme_tag();
        let h = self
            .hop_mut(hop)
            .ok_or(CircError::Internal("recognized by a missing hop"))?;
        h.sender
            .on_sendme_received(now, tag.as_ref())
            .map_err(|source| CircError::FlowControl { hop, source })?;
        h.sendmes_received += 1;
        self.release_waiting(now)
    }

    /// Queue an event for the driver, within its bound.
    pub(super) fn push_event(&mut self, ev: CircEvent) -> Result<(), CircError> {
        if self.events.len() >= self.params.max_pending_events {
            return Err(CircError::EventQueueFull {
                limit: self.params.max_pending_events,
            });
        }
        self.events.push_back(ev);
        Ok(())
    }
}

/// An unexpected channel cell.
fn unexpected(cell: &str, rule: &'static str) -> CircError {
    CircError::UnexpectedCell {
        cell: cell.to_string(),
        rule,
    }
}

/// Relay commands only the origin of a circuit sends (tor-spec §6.1
/// "[forward]"; proposal 329 for CONFLUX_LINK and CONFLUX_LINKED_ACK;
/// rend-spec for the onion service requests).
fn is_forward_only(cmd: RelayCmd) -> bool {
    matches!(
        cmd,
        RelayCmd::BEGIN
            | RelayCmd::EXTEND
            | RelayCmd::TRUNCATE
            | RelayCmd::RESOLVE
            | RelayCmd::BEGIN_DIR
            | RelayCmd::EXTEND2
            | RelayCmd::CONNECT_UDP
            | RelayCmd::CONFLUX_LINK
            | RelayCmd::CONFLUX_LINKED_ACK
            | RelayCmd::ESTABLISH_INTRO
            | RelayCmd::ESTABLISH_RENDEZVOUS
            | RelayCmd::INTRODUCE1
            | RelayCmd::PADDING_NEGOTIATE
    )
}
