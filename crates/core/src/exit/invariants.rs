//! What no sequence of client messages and driver calls may break in an
//! [`ExitStreamMap`] (for its proptests and the `core_exit_streams` fuzz
//! target): every bound holds, the map's bookkeeping agrees with its
//! streams, and on the wire DATA goes only when the circuit allows, only
//! after CONNECTED, never after the client's END, carrying exactly the
//! destination's bytes in order, while the driver reads exactly the
//! client's accepted bytes in order.

use std::collections::{HashMap, HashSet};

use tor_cell::relaycell::msg::AnyRelayMsg;

use crate::ids::StreamId;

use super::error::ExitError;
use super::map::ExitStreamMap;
use super::stream::{Phase, Queued};

impl ExitStreamMap {
    /// Check the map's bounds and bookkeeping; the first broken rule.
    pub fn check_invariants(&self) -> Result<(), String> {
        let cfg = &self.cfg;
        let held = self.streams.len() + self.orphans.len();
        if held > cfg.max_streams {
            return Err(format!(
                "{held} streams and orphans over {}",
                cfg.max_streams
            ));
        }
        if self.refusals.len() > cfg.max_refusals() {
            return Err(format!("{} refusals queued", self.refusals.len()));
        }
        if self.half.len() > cfg.max_half_closed {
            return Err(format!("{} half-closed entries", self.half.len()));
        }
        let (mut to_sum, mut from_sum) = (0usize, 0usize);
        for (id, s) in &self.streams {
            let to = s.to_dest.len();
            let from = s.from_dest.len();
            if to > self.to_dest_limit || from > cfg.dest_buffer {
                return Err(format!("{id}: buffers {to} / {from} over their bounds"));
            }
            let Queued {
                to_dest: qt,
                from_dest: qf,
                ..
            } = s.queued;
            if qt != to || qf != from {
                return Err(format!("{id}: counted {qt}/{qf}, holds {to}/{from}"));
            }
            if s.signals.len() > 2 || s.sendmes > 10 {
                return Err(format!(
                    "{id}: {} signals, {} SENDMEs",
                    s.signals.len(),
                    s.sendmes
                ));
            }
            if s.phase == Phase::Closed && from > 0 {
                return Err(format!("{id}: closed with {from} bytes to send"));
            }
            if s.has_control() && !s.queued.ctrl {
                return Err(format!("{id}: control waiting, not queued"));
            }
            if s.has_events() && !s.queued.event {
                return Err(format!("{id}: events waiting, not queued"));
            }
            if let Some(d) = s.queued.deadline
                && !self.deadlines.contains(&(d, *id))
            {
                return Err(format!("{id}: deadline not registered"));
            }
            to_sum += to;
            from_sum += from;
        }
        if to_sum != self.to_dest_total || from_sum != self.from_dest_total {
            return Err(format!(
                "totals {}/{} but streams hold {to_sum}/{from_sum}",
                self.to_dest_total, self.from_dest_total
            ));
        }
        if to_sum > cfg.to_dest_total || from_sum > cfg.dest_buffer_total {
            return Err(format!("totals {to_sum}/{from_sum} over their bounds"));
        }
        for (name, q) in [
            ("ctrl", &self.ctrl_q),
            ("data", &self.data_q),
            ("event", &self.event_q),
            ("waiting", &self.waiting),
        ] {
            let mut seen = HashSet::new();
            for id in q {
                if !self.streams.contains_key(id) || !seen.insert(*id) {
                    return Err(format!("{name} queue holds {id} wrongly"));
                }
            }
        }
        for (_, id) in &self.deadlines {
            if !self.streams.contains_key(id) {
                return Err(format!("deadline for {id}, not held"));
            }
        }
        if self.circuit_closed && (!self.refusals.is_empty() || !self.ctrl_q.is_empty()) {
            return Err("messages to send after the circuit closed".into());
        }
        Ok(())
    }
}

/// What one stream id has seen on the wire and through the driver.
#[derive(Debug, Default, Clone)]
struct IdModel {
    /// The client's accepted bytes for the destination.
    to_dest: Vec<u8>,
    /// How many of them the driver has read.
    read: usize,
    /// The destination's bytes the map took.
    written: Vec<u8>,
    /// How many of them went out in DATA.
    sent: usize,
    /// CONNECTED went out for the current stream.
    connected: bool,
    /// Our END (or RESOLVED) went out for the current stream.
    ended: bool,
    /// The client sent END (and has not opened the id again).
    client_ended: bool,
}

/// A model of what every stream id carries, checked against the map's
/// wire output and the driver's reads.
#[derive(Debug, Default)]
pub struct ExitChecker {
    /// Per id.
    ids: HashMap<StreamId, IdModel>,
    /// The largest DATA body allowed.
    max_data_len: usize,
}

impl ExitChecker {
    /// A checker for a map sending DATA bodies of at most `max_data_len`.
    pub fn new(max_data_len: usize) -> Self {
        ExitChecker {
            ids: HashMap::new(),
            max_data_len,
        }
    }

    /// The client sent `msg` on `id`; `before` and `after` are the map's
    /// `to_dest_buffered(id)` around `handle_msg`, which gave `result`.
    pub fn client_msg(
        &mut self,
        id: StreamId,
        msg: &AnyRelayMsg,
        result: &Result<(), ExitError>,
        before: Option<usize>,
        after: Option<usize>,
    ) -> Result<(), String> {
        let m = self.ids.entry(id).or_default();
        match msg {
            // A new stream (or an answer at once) unless the id was in use,
            // which leaves the old stream as it was.
            AnyRelayMsg::Begin(_) | AnyRelayMsg::BeginDir(_) | AnyRelayMsg::Resolve(_)
                if !matches!(result, Err(ExitError::StreamInUse { .. })) =>
            {
                *m = IdModel::default();
            }
            AnyRelayMsg::Data(d) => {
                let grew = after.unwrap_or(0).saturating_sub(before.unwrap_or(0));
                if grew != 0 && grew != d.as_ref().len() {
                    return Err(format!(
                        "{id}: DATA of {} grew the buffer by {grew}",
                        d.as_ref().len()
                    ));
                }
                if grew != 0 {
                    if result.is_err() {
                        return Err(format!("{id}: DATA taken and refused"));
                    }
                    m.to_dest.extend_from_slice(d.as_ref());
                }
            }
            AnyRelayMsg::End(_) => m.client_ended = true,
            _ => {}
        }
        Ok(())
    }

    /// The driver read `bytes` from `id`.
    pub fn read(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), String> {
        let m = self.ids.entry(id).or_default();
        let want = m.to_dest.get(m.read..m.read + bytes.len());
        if want != Some(bytes) {
            return Err(format!("{id}: read bytes the client did not send there"));
        }
        m.read += bytes.len();
        Ok(())
    }

    /// The driver wrote `taken`, the part of its bytes the map took.
    pub fn wrote(&mut self, id: StreamId, taken: &[u8]) {
        self.ids
            .entry(id)
            .or_default()
            .written
            .extend_from_slice(taken);
    }

    /// The map sent `msg` on `id`, asked with `can_send_data`.
    pub fn sent(
        &mut self,
        id: StreamId,
        msg: &AnyRelayMsg,
        can_send_data: bool,
    ) -> Result<(), String> {
        let max = self.max_data_len;
        let m = self.ids.entry(id).or_default();
        if m.client_ended {
            return Err(format!("{id}: {msg:?} after the client's END"));
        }
        match msg {
            AnyRelayMsg::Data(d) => {
                let b = d.as_ref();
                if !can_send_data || b.len() > max {
                    return Err(format!(
                        "{id}: DATA of {} bytes, allowed {can_send_data}",
                        b.len()
                    ));
                }
                if !m.connected || m.ended {
                    return Err(format!("{id}: DATA outside an open stream"));
                }
                if m.written.get(m.sent..m.sent + b.len()) != Some(b) {
                    return Err(format!("{id}: DATA not the destination's next bytes"));
                }
                m.sent += b.len();
            }
            AnyRelayMsg::Connected(_) => {
                if m.connected || m.ended {
                    return Err(format!("{id}: second CONNECTED"));
                }
                m.connected = true;
            }
            AnyRelayMsg::End(_) | AnyRelayMsg::Resolved(_) => {
                if m.ended {
                    return Err(format!("{id}: second END or RESOLVED"));
                }
                m.ended = true;
            }
            AnyRelayMsg::Xon(_) | AnyRelayMsg::Xoff(_) | AnyRelayMsg::Sendme(_) => {
                if m.ended {
                    return Err(format!("{id}: flow control after our END"));
                }
            }
            other => return Err(format!("{id}: the exit sent {other:?}")),
        }
        Ok(())
    }
}
