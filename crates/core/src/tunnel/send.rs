//! The sending side of a tunnel: stream messages into legs as the legs
//! take them. On a single circuit they go to its last hop while its queue
//! has room; on a Conflux set the set sequences each one and the scheduler
//! places it (prop 329 §2.8, §3).

use std::time::Instant;

use crate::conflux::{LegCc, MAX_LEGS, SendOutcome};
use crate::ids::LegId;

use super::client::ClientTunnel;
use super::error::TunnelError;

/// Queue room every Conflux leg keeps for the set's own messages (SWITCH,
/// LINK, LINKED_ACK): stream messages stop while any linked leg has less.
pub const LEG_RESERVE: usize = 4;

impl ClientTunnel {
    /// A resumable set (Braid proposal 001 §3): free what each leg's
    /// congestion control saw acknowledged, then put a resumed leg's
    /// resends on it as its window allows, before anything new.
    fn resend(&mut self, now: Instant) {
        let Some(m) = self.multipath.as_mut() else {
            return;
        };
        if !m.set.is_resumable() {
            return;
        }
        for l in self.legs.iter().filter(|l| !l.closed) {
            let (Some(id), Some(f)) = (l.conflux, l.circuit.hop_figures(l.last_hop)) else {
                continue;
            };
            m.set.leg_acked(
                id,
                f.data_sent.saturating_sub(f.inflight.unwrap_or(0)),
                f.cwnd,
            );
        }
        loop {
            let legs = &self.legs;
            let can_send = |id| {
                legs.iter().any(|l| {
                    l.conflux == Some(id)
                        && !l.closed
                        && l.circuit.queue_space() > LEG_RESERVE
                        && l.circuit.can_send_data(l.last_hop)
                })
            };
            let Some(out) = m.set.poll_resend(can_send) else {
                return;
            };
            let Some(leg) = self.legs.iter_mut().find(|l| l.conflux == Some(out.leg)) else {
                return;
            };
            let hop = leg.last_hop;
            for (s, msg) in out.into_msgs() {
                if let Err(e) = leg.circuit.send_relay(hop, s, msg, now) {
                    tracing::debug!("{}: cannot resend: {e}", leg.key);
                    break;
                }
            }
        }
    }

    /// Stream messages into the legs while they take them.
    pub(crate) fn pump_sends(&mut self, now: Instant) {
        if !self.is_open() || self.streams.is_none() {
            return;
        }
        if self.multipath.is_some() {
            if let Err(e) = self.pump_set(now) {
                self.close_with(e);
            }
        } else {
            self.pump_single(now);
        }
    }

    /// A single circuit: to its last hop, DATA only while its window is
    /// open.
    fn pump_single(&mut self, now: Instant) {
        let (Some(leg), Some(streams)) = (
            self.legs.iter_mut().find(|l| l.built && !l.closed),
            self.streams.as_mut(),
        ) else {
            return;
        };
        let hop = leg.last_hop;
        while leg.circuit.queue_space() > 0 {
            let can_data = leg.circuit.can_send_data(hop);
            let Some((id, msg)) = streams.poll_transmit(can_data) else {
                break;
            };
            if let Err(e) = leg.circuit.send_relay(hop, Some(id), msg, now) {
                // Only a closed circuit gets here (room was checked); its
                // terminal event closes the tunnel.
                tracing::debug!("{}: cannot send: {e}", leg.key);
                break;
            }
        }
    }

    /// A Conflux set: each message sequenced by the set and put on the leg
    /// the scheduler picks, while every linked leg keeps
    /// [`LEG_RESERVE`] cells of room.
    fn pump_set(&mut self, now: Instant) -> Result<(), TunnelError> {
        self.resend(now);
        let mut backlog_known = false;
        let mut backlog = None;
        loop {
            let room = self
                .legs
                .iter()
                .filter(|l| l.conflux.is_some() && !l.closed)
                .all(|l| l.circuit.queue_space() > LEG_RESERVE);
            if !room {
                return Ok(());
            }
            // The legs' congestion figures, on the stack: a set has at
            // most MAX_LEGS legs, and this runs once per message.
            let mut cc = [(LegId(0), LegCc::default()); MAX_LEGS];
            let mut n = 0;
            let figures = self.legs.iter().filter(|l| !l.closed).filter_map(|l| {
                let id = l.conflux?;
                let f = l.circuit.hop_figures(l.last_hop)?;
                Some((
                    id,
                    LegCc::from_figures(&f, l.circuit.can_send_data(l.last_hop)),
                ))
            });
            for (slot, leg) in cc.iter_mut().zip(figures) {
                *slot = leg;
                n += 1;
            }
            let cc = cc.get(..n).unwrap_or_default();
            let any_can_send = cc.iter().any(|(_, c)| c.can_send);
            let (Some(m), Some(streams)) = (self.multipath.as_mut(), self.streams.as_mut()) else {
                return Ok(());
            };
            let next = match m.held.take() {
                Some(held) => Some(held),
                None => streams.poll_transmit(any_can_send),
            };
            let Some((stream, msg)) = next else {
                return Ok(());
            };
            // What waits behind this message, for ECF; unknown while an
            // application writes faster than we send. Read once per pump,
            // then counted down.
            if !backlog_known {
                backlog = streams.send_backlog();
                backlog_known = true;
            }
            m.chooser.set_backlog(backlog.map(|b| b + 1));
            let is_data = matches!(msg, tor_cell::relaycell::msg::AnyRelayMsg::Data(_));
            match m.set.send(&mut m.chooser, cc, Some(stream), msg, now)? {
                SendOutcome::Sent(out) => {
                    m.sent.record(now, m.set.last_seq_sent());
                    if is_data {
                        backlog = backlog.map(|b| b.saturating_sub(1));
                        // New DATA with nothing left to resend: it flows
                        // again (issue 15's recovery time).
                        if !m.set.resend_pending() {
                            self.counters.flowing(now, m.set.resume_settled());
                        }
                    }
                    let Some(leg) = self.legs.iter_mut().find(|l| l.conflux == Some(out.leg))
                    else {
                        return Err(TunnelError::BadLeg(format!(
                            "the set chose unknown {}",
                            out.leg
                        )));
                    };
                    let hop = leg.last_hop;
                    for (s, msg) in out.into_msgs() {
                        if let Err(e) = leg.circuit.send_relay(hop, s, msg, now) {
                            // The message is sequenced: losing it loses data.
                            tracing::debug!("{}: cannot send: {e}", leg.key);
                            leg.close_on(TunnelError::CircuitClosed {
                                leg: leg.key,
                                reason: crate::circuit::CloseReason::Error(e),
                            });
                            break;
                        }
                    }
                }
                SendOutcome::Blocked { stream, msg } => {
                    if let Some(stream) = stream {
                        m.held = Some((stream, msg));
                    }
                    return Ok(());
                }
            }
        }
    }
}
