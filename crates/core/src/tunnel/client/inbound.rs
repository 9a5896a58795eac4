//! What comes in on a [`ClientTunnel`]'s legs: relay messages from the
//! exit hop to the Conflux set or the streams, and the set's output (its
//! handshake messages, events and in-order messages) acted on.

use std::time::Instant;

use tor_cell::relaycell::msg::AnyRelayMsg;
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use crate::conflux::{ConfluxError, ConfluxEvent, Handled};
use crate::ids::{HopNum, StreamId};
use crate::tunnel::error::TunnelError;

use super::{ClientTunnel, Phase};

impl ClientTunnel {
    /// A relay message from `hop` of leg `i`.
    pub(super) fn on_msg(
        &mut self,
        i: usize,
        hop: HopNum,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) {
        let Some(leg) = self.legs.get_mut(i) else {
            return;
        };
        if leg.closed || matches!(self.phase, Phase::Closed(_)) {
            return;
        }
        let key = leg.key;
        let cmd = msg.cmd();
        // One exit-hop rule for both kinds of tunnel: streams attach to the
        // last hop (tor-spec §6.2) and Conflux speaks only from the exit
        // (prop 329 §4.2.1); anything from another hop closes the leg.
        if !leg.built || hop != leg.last_hop {
            leg.close_on(TunnelError::WrongHop { leg: key, hop, cmd });
            return;
        }
        let conflux_id = leg.conflux;
        let Some(m) = self.multipath.as_mut() else {
            match stream {
                Some(stream) => self.stream_msg(stream, msg, now),
                None if is_conflux_cmd(cmd) => {
                    if let Some(l) = self.legs.get_mut(i) {
                        l.close_on(TunnelError::ConfluxOnSingle { leg: key, cmd });
                    }
                }
                None => tracing::debug!("{key}: circuit message {cmd} ignored"),
            }
            return;
        };
        let Some(id) = conflux_id else {
            if let Some(l) = self.legs.get_mut(i) {
                l.close_on(TunnelError::NotALeg { leg: key, cmd });
            }
            return;
        };
        match m.set.handle_msg(id, stream, msg, now) {
            Ok(Handled::Consumed) => {}
            Ok(Handled::NotConflux {
                stream: Some(stream),
                msg,
            }) => self.stream_msg(stream, msg, now),
            Ok(Handled::NotConflux { stream: None, msg }) => {
                tracing::debug!("{key}: circuit message {} ignored", msg.cmd());
            }
            Err(e) => self.close_with(TunnelError::Conflux(e)),
        }
        // The set's replies (LINKED_ACK) before anything else goes out.
        self.drain_set(now);
    }

    /// A stream message, in order, to the streams.
    fn stream_msg(&mut self, stream: StreamId, msg: AnyRelayMsg, now: Instant) {
        let Some(streams) = self.streams.as_mut() else {
            return;
        };
        if let Err(e) = streams.handle_msg(now, stream, msg) {
            if e.is_protocol_violation() {
                tracing::info!("stream closed for a protocol violation of the exit: {e}");
            } else {
                tracing::debug!("stream message: {e}");
            }
        }
    }

    /// The set's handshake messages onto their legs, its events acted on,
    /// its in-order messages to the streams. True if anything moved.
    pub(super) fn drain_set(&mut self, now: Instant) -> bool {
        let Some(m) = self.multipath.as_mut() else {
            return false;
        };
        let mut moved = false;
        let mut transmit = Vec::new();
        while let Some(t) = m.set.poll_transmit() {
            transmit.push(t);
        }
        let mut events = Vec::new();
        while let Some(ev) = m.set.poll_event() {
            events.push(ev);
        }
        let closed = m.set.close_reason().cloned();
        let (settled, resends) = (m.set.resume_settled(), m.set.resends_expected());
        let mut delivered = std::mem::take(&mut m.delivered);
        if closed.is_none() {
            while let Some(d) = m.set.poll_delivered() {
                delivered.push(d);
            }
        }
        for (id, msg) in transmit {
            moved = true;
            if let Some(leg) = self.legs.iter_mut().find(|l| l.conflux == Some(id)) {
                let hop = leg.last_hop;
                if let Err(e) = leg.circuit.send_relay(hop, None, msg, now) {
                    tracing::debug!("{}: cannot send: {e}", leg.key);
                }
            }
        }
        for ev in events {
            moved = true;
            match ev {
                ConfluxEvent::SetLinked { legs } => {
                    tracing::debug!("conflux set linked with {legs} legs");
                    self.open_streams(true, now);
                }
                ConfluxEvent::LegFailed { leg, error } => {
                    if let Some(l) = self.legs.iter_mut().find(|l| l.conflux == Some(leg)) {
                        // The set has dropped it already.
                        l.conflux = None;
                        l.close_on(TunnelError::Conflux(error));
                    }
                }
                ConfluxEvent::LegLinked { leg, rtt } => {
                    tracing::debug!("conflux {leg} linked, RTT {rtt:?}");
                    if resends {
                        self.counters.ahead_of_a_gap();
                    }
                }
                ConfluxEvent::LegDropped { leg } => {
                    // The exit lost it (Braid proposal 001 §3.3): close
                    // it; the set learns of the loss as of any and a new
                    // leg resumes it.
                    if let Some(l) = self.legs.iter_mut().find(|l| l.conflux == Some(leg)) {
                        l.close_on(TunnelError::Conflux(ConfluxError::LegDroppedByPeer { leg }));
                    }
                }
                ConfluxEvent::LegSilent { leg, silent } => {
                    // A relay on it hangs (Braid proposal 001 §3.6): close
                    // it; the set resumes as for any loss.
                    tracing::debug!("conflux {leg} silent for {silent:?}: closing it");
                    if let Some(l) = self.legs.iter_mut().find(|l| l.conflux == Some(leg)) {
                        l.close_on(TunnelError::Conflux(ConfluxError::LegSilent {
                            leg,
                            silent,
                        }));
                    }
                }
                // An exit's event.
                ConfluxEvent::LegRtt { .. } => {}
            }
        }
        let mut data = false;
        for d in delivered.drain(..) {
            moved = true;
            data |= matches!(d.msg, AnyRelayMsg::Data(_));
            if let Some(stream) = d.stream {
                self.stream_msg(stream, d.msg, now);
            }
        }
        // Data flows again once it is delivered with nothing held behind
        // a gap (issue 15's recovery time).
        if data && self.reorder_snapshot().is_some_and(|r| r.waiting == 0) {
            self.counters.flowing(now, settled);
        }
        if let Some(m) = self.multipath.as_mut() {
            m.delivered = delivered;
        }
        if let Some(e) = closed {
            self.close_with(TunnelError::Conflux(e));
        }
        moved
    }
}

/// Conflux commands (prop 329 §2.3).
fn is_conflux_cmd(cmd: RelayCmd) -> bool {
    matches!(
        cmd,
        RelayCmd::CONFLUX_LINK
            | RelayCmd::CONFLUX_LINKED
            | RelayCmd::CONFLUX_LINKED_ACK
            | RelayCmd::CONFLUX_SWITCH
    )
}
