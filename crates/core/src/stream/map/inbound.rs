//! What the exit sends on a [`StreamMap`]'s streams: messages on live
//! streams checked against the stream's state (tor-spec §6, proposal 324
//! §4), messages for streams we do not hold, and the circuit closing.

use std::time::Instant;

use tor_cell::relaycell::RelayMsg;
use tor_cell::relaycell::msg::{AnyRelayMsg, EndReason};

use super::{StreamMap, close_local};
use crate::cc::Drained;
use crate::ids::StreamId;
use crate::stream::config::StreamFlowMode;
use crate::stream::error::StreamError;
use crate::stream::half_closed::HalfClosed;
use crate::stream::migrate_wire::is_migrate_cmd;
use crate::stream::reasons::CloseReason;
use crate::stream::state::{Kind, Phase, Stream, StreamEnd};
use crate::stream::target::{ResolvedAnswer, connected_addr};

impl StreamMap {
    /// A message from the exit on stream `id`.
    ///
    /// On a protocol violation the stream (if it was live) is closed: an END
    /// is queued and
    /// [`StreamEvent::Ended`](crate::stream::StreamEvent::Ended) with
    /// `TORPROTOCOL` follows; the error names the rule. Padding and unknown
    /// relay commands are ignored (tor-spec §6.1: "the cell must be dropped
    /// and ignored").
    pub fn handle_msg(
        &mut self,
        now: Instant,
        id: StreamId,
        msg: AnyRelayMsg,
    ) -> Result<(), StreamError> {
        let cmd = msg.cmd();
        let migrate = self.cfg.migratable && is_migrate_cmd(cmd);
        if !migrate && matches!(msg, AnyRelayMsg::Drop(_) | AnyRelayMsg::Unrecognized(_)) {
            return Ok(());
        }
        let wire = self.wire_reason(EndReason::TORPROTOCOL);
        let Some(stream) = self.streams.get_mut(&id) else {
            return self.handle_unheld(now, id, cmd);
        };
        stream.touch(now);
        if stream.opener.is_some()
            || (stream.phase == Phase::Closed && stream.after_close.is_none())
        {
            // Our BEGIN has not gone out (or never did): the exit cannot
            // know this id from this stream.
            return self.handle_unheld(now, id, cmd);
        }
        let result = if stream.phase == Phase::Closed {
            let ok = stream
                .after_close
                .as_mut()
                .is_some_and(|hc| hc.accept(now, cmd));
            if ok {
                Ok(())
            } else {
                Err(StreamError::ClosedStream { id, cmd })
            }
        } else {
            let r = if migrate {
                Self::handle_migrate_msg(stream, id, &msg, cmd)
            } else {
                handle_live(stream, now, id, msg, &self.mode)
            };
            if r.as_ref().is_err_and(StreamError::is_protocol_violation) {
                close_local(
                    stream,
                    &self.mode,
                    &self.cfg,
                    CloseReason::End(EndReason::TORPROTOCOL),
                    wire,
                );
            }
            r
        };
        self.refresh(id);
        result
    }

    /// A message for an id we hold no live stream for.
    fn handle_unheld(
        &mut self,
        now: Instant,
        id: StreamId,
        cmd: tor_cell::relaycell::RelayCmd,
    ) -> Result<(), StreamError> {
        match self.half.accept(now, id, cmd) {
            Some(true) => Ok(()),
            Some(false) => Err(StreamError::ClosedStream { id, cmd }),
            None if self.used.contains(id) => Ok(()),
            None => Err(StreamError::UnknownStream { id, cmd }),
        }
    }

    /// The circuit is gone: every stream ends with `DESTROY` (C-tor
    /// `END_STREAM_REASON_DESTROY`), nothing more is sent, and buffered data
    /// stays readable.
    pub fn handle_circuit_closed(&mut self) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.streams.get_mut(&id) {
                if Self::survives_circuit(s) {
                    // Braid proposal 001 §4.3: every byte of this old id
                    // came before it went; its new id carries on.
                    continue;
                }
                s.opener = None;
                s.end_to_send = None;
                s.clear_outbound();
                if s.phase != Phase::Closed {
                    s.phase = Phase::Closed;
                    s.after_close = None;
                    s.end = Some(StreamEnd {
                        reason: CloseReason::End(EndReason::DESTROY),
                        remote: true,
                    });
                    s.events.ended = !s.released;
                }
            }
            self.refresh(id);
        }
    }
}

/// Handle a message on a stream that is not closed.
fn handle_live(
    s: &mut Stream,
    now: Instant,
    id: StreamId,
    msg: AnyRelayMsg,
    mode: &StreamFlowMode,
) -> Result<(), StreamError> {
    let cmd = msg.cmd();
    let unexpected = |s: &Stream, rule: &'static str| StreamError::UnexpectedMessage {
        id,
        cmd,
        state: s.state(),
        rule,
    };
    let flow = |source| StreamError::Flow { id, source };
    match msg {
        AnyRelayMsg::Connected(c) => {
            if s.phase != Phase::Connecting || StreamMap::is_target(s) {
                return Err(unexpected(
                    s,
                    "CONNECTED answers a BEGIN, once (tor-spec §6.2)",
                ));
            }
            let addr = connected_addr(c).map_err(|why| StreamError::BadConnected { id, why })?;
            s.phase = Phase::Open;
            s.deadline = None;
            s.events.connected = Some(addr);
            Ok(())
        }
        AnyRelayMsg::Data(d) => {
            if s.phase != Phase::Open {
                let rule = if s.kind == Kind::Resolve {
                    "no DATA on a RESOLVE stream (tor-spec §6.4)"
                } else {
                    "the exit sends DATA only after CONNECTED (tor-spec §6.2)"
                };
                return Err(unexpected(s, rule));
            }
            StreamMap::check_migrate_data(s, id)?;
            let bytes = d.as_ref();
            let len = bytes.len();
            if len > s.recv.free() {
                let buffered = s.recv.len();
                return Err(StreamError::ReceiveBufferOverflow {
                    id,
                    len,
                    buffered,
                    limit: s.recv.limit(),
                });
            }
            let buffered = s.recv.len();
            // What this id's flow control counts: not an old id's bytes
            // ahead of its own (Braid proposal 001 §4.2 step 4).
            let own = buffered.saturating_sub(StreamMap::foreign(s));
            let len64 = u64::try_from(len).unwrap_or(u64::MAX);
            let after = u64::try_from(own + len).unwrap_or(u64::MAX);
            let signal = s.flow.on_data_received(now, len64, after).map_err(flow)?;
            s.recv.push(bytes);
            s.recv_bytes = s.recv_bytes.saturating_add(len64);
            if buffered == 0 {
                s.events.readable = true;
            }
            if let Some(sig) = signal {
                s.push_signal(sig);
            }
            if !mode.is_cc() {
                // tor-spec §7.4: a SENDME as soon as the window is down by 50
                // and fewer than ten cells wait (C-tor considers it on every
                // DATA cell too).
                if let Drained::Sendmes(k) = s.flow.on_drained(now, 0, after) {
                    s.sendmes = s.sendmes.saturating_add(k);
                }
            }
            Ok(())
        }
        AnyRelayMsg::End(e) => {
            StreamMap::check_migrate_end(s, id)?;
            // tor-spec §6.3: after END "sends nothing more along the
            // circuit for that stream"; buffered data stays readable.
            s.opener = None;
            s.end_to_send = None;
            s.clear_outbound();
            s.phase = Phase::Closed;
            s.after_close = Some(HalfClosed::nothing());
            s.end = Some(StreamEnd {
                reason: CloseReason::End(e.reason()),
                remote: true,
            });
            s.events.ended = !s.released;
            Ok(())
        }
        AnyRelayMsg::Sendme(_) => {
            // tor-spec §7.4: the body of a stream SENDME is ignored.
            if s.kind == Kind::Resolve {
                return Err(unexpected(s, "no SENDME on a RESOLVE stream"));
            }
            s.flow.on_sendme().map_err(flow)
        }
        AnyRelayMsg::Xon(x) => {
            if s.kind == Kind::Resolve {
                return Err(unexpected(s, "no XON on a RESOLVE stream"));
            }
            s.flow.on_xon(x.kbytes_per_sec_ewma()).map_err(flow)
        }
        AnyRelayMsg::Xoff(_) => {
            if s.kind == Kind::Resolve {
                return Err(unexpected(s, "no XOFF on a RESOLVE stream"));
            }
            s.flow.on_xoff().map_err(flow)
        }
        AnyRelayMsg::Resolved(r) => {
            if s.phase != Phase::Resolving {
                return Err(unexpected(s, "RESOLVED answers a RESOLVE (tor-spec §6.4)"));
            }
            let answers: Vec<ResolvedAnswer> = r
                .into_answers()
                .into_iter()
                .map(|(v, ttl)| ResolvedAnswer::from_cell(v, ttl))
                .collect();
            // C-tor closes a resolve stream on RESOLVED without an END.
            s.phase = Phase::Closed;
            s.deadline = None;
            s.after_close = Some(HalfClosed::nothing());
            s.events.resolved = Some(answers);
            Ok(())
        }
        _ => Err(unexpected(
            s,
            "not a message an exit sends on a client stream (tor-spec §6.1)",
        )),
    }
}
