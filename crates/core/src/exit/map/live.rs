//! Messages on an [`ExitStreamMap`]'s streams other than the opening ones:
//! on a live stream checked against its state and flow control (tor-spec
//! §6, proposal 324 §4), on a closed or unknown one dropped and counted.

use std::time::Instant;

use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, EndReason};

use super::{ExitStreamMap, end_msg, linger};
use crate::cc::Drained;
use crate::exit::error::ExitError;
use crate::exit::stream::{Kind, Pacer, Phase};
use crate::ids::StreamId;
use crate::stream::half_closed::HalfClosed;

impl ExitStreamMap {
    /// A message other than an opening one.
    pub(super) fn on_stream_msg(
        &mut self,
        id: StreamId,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), ExitError> {
        let cmd = msg.cmd();
        if self.tails.contains_key(&id) {
            // The old id of a migrated stream (Braid proposal 001 §4.2).
            return self.tail_msg(id, msg);
        }
        let Some(s) = self.streams.get_mut(&id) else {
            if cmd == RelayCmd::END {
                // The client ended the stream before our answer went: it
                // hears nothing more on it (tor-spec §6.3).
                self.refusals.retain(|(r, _)| *r != id);
            }
            match self.half.accept(now, id, cmd) {
                Some(true) => self.stats.dropped_closed += 1,
                Some(false) => self.stats.dropped_invalid += 1,
                None => self.stats.dropped_unknown += 1,
            }
            return Ok(());
        };
        s.touch(now);
        if s.phase == Phase::Closed {
            if cmd == RelayCmd::END && !s.wire_done() {
                // Our END (or RESOLVED) has not gone out and need not now:
                // after the client's END nothing more goes to it.
                s.end_to_send = None;
                s.reply = None;
                s.after_close = Some(HalfClosed::nothing());
                self.stats.dropped_closed += 1;
                self.refresh(id);
                return Ok(());
            }
            let ok = s.after_close.as_mut().is_some_and(|hc| hc.accept(now, cmd));
            if ok {
                self.stats.dropped_closed += 1;
            } else {
                self.stats.dropped_invalid += 1;
            }
            return Ok(());
        }
        let result = self.handle_live(id, msg, now);
        if let Err(e) = &result {
            let reason = if e.is_resource_limit() {
                EndReason::RESOURCELIMIT
            } else {
                EndReason::TORPROTOCOL
            };
            let linger = linger(&self.mode, &self.cfg, now);
            if let Some(s) = self.streams.get_mut(&id) {
                s.close_local(reason, end_msg(reason), linger);
            }
        }
        self.refresh(id);
        result
    }

    /// A message on a stream that is not closed.
    fn handle_live(
        &mut self,
        id: StreamId,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), ExitError> {
        let flush_timeout = self.cfg.flush_timeout;
        let to_dest_room = self.cfg.to_dest_total.saturating_sub(self.to_dest_total);
        let total_limit = self.cfg.to_dest_total;
        let windowed = !self.mode.is_cc();
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let flow_err = |source| ExitError::Flow { id, source };
        match msg {
            AnyRelayMsg::Data(d) => {
                if s.kind == Kind::Resolve {
                    self.stats.dropped_invalid += 1;
                    return Ok(());
                }
                let bytes = d.as_ref();
                let len = bytes.len();
                let buffered = s.to_dest.len();
                // What this id's flow control counts (Braid proposal 001
                // §4.2: an old id's bytes ahead are not; held ones are).
                let own = Self::own_buffered(s);
                let holding = s.mig.as_ref().is_some_and(|m| m.join.is_some());
                let free = match s.mig.as_ref().and_then(|m| m.join.as_ref()) {
                    Some(j) => j.held.free(),
                    None => s.to_dest.free(),
                };
                if len > free {
                    return Err(ExitError::BufferOverflow {
                        id,
                        len,
                        buffered: own,
                        limit: s.to_dest.limit(),
                    });
                }
                if len > to_dest_room {
                    return Err(ExitError::ToDestTotal {
                        id,
                        limit: total_limit,
                    });
                }
                let len64 = u64::try_from(len).unwrap_or(u64::MAX);
                let after = u64::try_from(own + len).unwrap_or(u64::MAX);
                // C-tor takes DATA before the connection is open
                // ("optimistic data", tor-spec §6.2) into the outbuf.
                let signal = s
                    .flow
                    .on_data_received(now, len64, after)
                    .map_err(flow_err)?;
                s.bytes_in = s.bytes_in.saturating_add(len64);
                if holding {
                    Self::hold_joining(s, bytes);
                } else {
                    s.to_dest.push(bytes);
                    if buffered == 0 && s.phase == Phase::Open && s.visible() {
                        s.events.readable = true;
                    }
                }
                if let Some(sig) = signal {
                    // proposal 324 §4.1.1: XOFF past `cc_xoff_exit`.
                    s.push_signal(sig);
                }
                if windowed && let Drained::Sendmes(k) = s.flow.on_drained(now, 0, after) {
                    // tor-spec §7.4, as C-tor's
                    // `connection_edge_consider_sending_sendme` on DATA.
                    s.sendmes = s.sendmes.saturating_add(k);
                }
                Ok(())
            }
            AnyRelayMsg::End(e) => {
                if Self::defer_end(s, e.reason()) {
                    // Braid proposal 001 §4.2: after the old id's bytes.
                    return Ok(());
                }
                let flush_until = now.checked_add(flush_timeout);
                s.client_end(e.reason(), flush_until);
                Ok(())
            }
            AnyRelayMsg::Sendme(_) => {
                if s.kind == Kind::Resolve {
                    self.stats.dropped_invalid += 1;
                    return Ok(());
                }
                // tor-spec §7.4 (the body is ignored); with congestion
                // control a violation (proposal 324 §2.2).
                s.flow.on_sendme().map_err(flow_err)
            }
            AnyRelayMsg::Xon(x) => {
                // proposal 324 §4.1.1: resume, and pace to the advised rate
                // (§4.1.2). C-tor ignores a bad XON; so do we, counting it.
                let rate = x.kbytes_per_sec_ewma();
                if s.kind != Kind::Resolve && s.flow.on_xon(rate).is_ok() {
                    s.pacer = Pacer::for_xon(rate, s.pacer, now);
                } else {
                    self.stats.dropped_invalid += 1;
                }
                Ok(())
            }
            AnyRelayMsg::Xoff(_) => {
                #[cfg(feature = "hostile")]
                if self.ignore_xoff {
                    return Ok(());
                }
                if s.kind == Kind::Resolve || s.flow.on_xoff().is_err() {
                    self.stats.dropped_invalid += 1;
                }
                Ok(())
            }
            // Nothing else is for a stream at the exit (CONNECTED and the
            // like are a relay's, tor-spec §6.1); C-tor drops them.
            _ => {
                self.stats.dropped_invalid += 1;
                Ok(())
            }
        }
    }
}
