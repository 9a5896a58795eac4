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
use super::event::ExitEvent;
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
            let held = ExitStreamMap::held_len(s);
            let to = s.to_dest.len() + held;
            let from = s.from_dest.len();
            // A migrated stream's buffer also carries its old id's bytes
            // (Braid proposal 001 §4.2): its own, raised bound applies.
            let plain = held == 0 && s.to_dest.limit() == self.to_dest_limit;
            if (plain && to > self.to_dest_limit)
                || s.to_dest.len() > s.to_dest.limit()
                || held > self.to_dest_limit
                || from > s.from_dest.limit().max(cfg.dest_buffer)
            {
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
                // A migrated stream's old id (its tail) sends its MARK or
                // END from the control queue.
                let tail = name == "ctrl" && self.tails.get(id).is_some_and(|t| t.queued);
                if !(self.streams.contains_key(id) || tail) || !seen.insert(*id) {
                    return Err(format!("{name} queue holds {id} wrongly"));
                }
            }
            for (id, t) in &self.tails {
                if self.streams.contains_key(id) {
                    return Err(format!("{id} is a stream and a migrated stream's tail"));
                }
                if t.received > t.expect || t.queued != self.ctrl_q.contains(id) {
                    return Err(format!("tail {id}: {t:?}"));
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

/// One step of a run against an [`ExitStreamMap`]: a client message or a
/// driver call. Stream picks (`s`) index the ids the driver has been told
/// about, so that driver calls mostly hit real streams.
#[derive(Debug, Clone)]
pub enum ExitOp {
    /// The client sends `msg` on stream id `id`.
    Client {
        /// The stream id (0 is skipped).
        id: u16,
        /// The message.
        msg: AnyRelayMsg,
    },
    /// A well-behaved client opens a stream with `msg` (a BEGIN, BEGIN_DIR
    /// or RESOLVE) on the lowest id the map does not hold.
    Open {
        /// The opening message.
        msg: AnyRelayMsg,
    },
    /// The driver answers a connect: CONNECTED with an address, or a
    /// refusal with reason `refuse`.
    Connect {
        /// Stream pick.
        s: usize,
        /// Refuse with this END reason instead.
        refuse: Option<u8>,
        /// Answer with an IPv6 address.
        v6: bool,
    },
    /// The driver answers a lookup with `n` addresses (0: an error).
    Resolved {
        /// Stream pick.
        s: usize,
        /// Answers.
        n: usize,
    },
    /// The driver reads up to `len` bytes.
    Read {
        /// Stream pick.
        s: usize,
        /// Buffer size.
        len: usize,
    },
    /// The driver writes `len` bytes of the destination's.
    Write {
        /// Stream pick.
        s: usize,
        /// Bytes offered.
        len: usize,
    },
    /// The destination's EOF.
    Shutdown {
        /// Stream pick.
        s: usize,
    },
    /// The driver closes the stream.
    Close {
        /// Stream pick.
        s: usize,
    },
    /// The circuit takes up to `n` messages, DATA only if `data`.
    Transmit {
        /// The circuit's window is open.
        data: bool,
        /// How many.
        n: usize,
    },
    /// The driver takes the events.
    Events,
    /// Time passes, and the timers run.
    Advance {
        /// Milliseconds.
        ms: u64,
    },
    /// The circuit closes.
    CircuitClosed,
}

/// A run: the map, the model, the clock and what the driver knows.
#[derive(Debug)]
pub struct ExitRun {
    /// The map under test.
    pub map: ExitStreamMap,
    /// The wire and byte model.
    pub checker: ExitChecker,
    /// The clock.
    pub now: std::time::Instant,
    /// Ids the driver was told about, in order.
    known: Vec<StreamId>,
    /// A counter for the destination's bytes.
    next_byte: u8,
}

impl ExitRun {
    /// A run on a fresh map.
    pub fn new(map: ExitStreamMap) -> Self {
        let max = map.config().data_len();
        ExitRun {
            map,
            checker: ExitChecker::new(max),
            now: std::time::Instant::now(),
            known: Vec::new(),
            next_byte: 0,
        }
    }

    /// A known id by pick.
    fn pick(&self, s: usize) -> Option<StreamId> {
        self.known.get(s % self.known.len().max(1)).copied()
    }

    /// Take every event, learning the ids.
    fn events(&mut self) -> Result<(), String> {
        let mut n = 0usize;
        while let Some(ev) = self.map.poll_event() {
            n += 1;
            if n > 100_000 {
                return Err("poll_event never ends".into());
            }
            if matches!(
                ev,
                ExitEvent::Connect { .. } | ExitEvent::Resolve { .. } | ExitEvent::DirStream { .. }
            ) {
                let id = ev.id();
                self.known.retain(|k| *k != id);
                self.known.push(id);
                if self.known.len() > 64 {
                    self.known.remove(0);
                }
            }
        }
        Ok(())
    }

    /// Apply `op`, then check every invariant.
    pub fn step(&mut self, op: ExitOp) -> Result<(), String> {
        let now = self.now;
        match op {
            ExitOp::Client { id, msg } => {
                let Some(id) = StreamId::new(id) else {
                    return Ok(());
                };
                let before = self.map.to_dest_buffered(id);
                let copy = msg.clone();
                let r = self.map.handle_msg(id, msg, now);
                if let Err(e) = &r
                    && e.is_misuse()
                {
                    return Err(format!("a client message gave a misuse error: {e}"));
                }
                let after = self.map.to_dest_buffered(id);
                self.checker.client_msg(id, &copy, &r, before, after)?;
            }
            ExitOp::Open { msg } => {
                let free = (1..=64u16)
                    .filter_map(StreamId::new)
                    .find(|id| self.map.state(*id).is_none());
                if let Some(id) = free {
                    return self.step(ExitOp::Client { id: id.get(), msg });
                }
            }
            ExitOp::Connect { s, refuse, v6 } => {
                if let Some(id) = self.pick(s) {
                    let _ = match refuse {
                        Some(r) => self.map.refuse(id, r.into(), now),
                        None if v6 => self.map.connected(
                            id,
                            "2001:db8::7".parse().map_err(|_| "addr")?,
                            60,
                            now,
                        ),
                        None => self.map.connected(
                            id,
                            "192.0.2.7".parse().map_err(|_| "addr")?,
                            60,
                            now,
                        ),
                    };
                }
            }
            ExitOp::Resolved { s, n } => {
                if let Some(id) = self.pick(s) {
                    let answers: Vec<crate::stream::ResolvedAnswer> = (0..n)
                        .map(|i| crate::stream::ResolvedAnswer::Ip {
                            addr: std::net::IpAddr::from([192, 0, 2, (i % 250) as u8]),
                            ttl: i as u32,
                        })
                        .collect();
                    let _ = self.map.resolved(id, &answers, now);
                }
            }
            ExitOp::Read { s, len } => {
                if let Some(id) = self.pick(s) {
                    let mut buf = vec![0u8; len];
                    if let Ok(n) = self.map.read(id, &mut buf, now) {
                        self.checker.read(id, buf.get(..n).unwrap_or(&[]))?;
                    }
                }
            }
            ExitOp::Write { s, len } => {
                if let Some(id) = self.pick(s) {
                    let start = self.next_byte;
                    let bytes: Vec<u8> = (0..len).map(|i| start.wrapping_add(i as u8)).collect();
                    if let Ok(n) = self.map.write(id, &bytes, now) {
                        self.next_byte = self.next_byte.wrapping_add(n as u8);
                        self.checker.wrote(id, bytes.get(..n).unwrap_or(&[]));
                    }
                }
            }
            ExitOp::Shutdown { s } => {
                if let Some(id) = self.pick(s) {
                    let _ = self.map.shutdown_write(id, now);
                }
            }
            ExitOp::Close { s } => {
                if let Some(id) = self.pick(s) {
                    let _ = self
                        .map
                        .close(id, tor_cell::relaycell::msg::EndReason::CONNRESET, now);
                }
            }
            ExitOp::Transmit { data, n } => {
                for _ in 0..n {
                    let Some((id, msg)) = self.map.poll_transmit(data) else {
                        break;
                    };
                    self.checker.sent(id, &msg, data)?;
                }
            }
            ExitOp::Events => self.events()?,
            ExitOp::Advance { ms } => {
                self.now += std::time::Duration::from_millis(ms);
                if let Some(t) = self.map.poll_timeout()
                    && t + std::time::Duration::from_secs(3600) < self.now
                {
                    return Err("a deadline far in the past was never handled".into());
                }
                self.map.handle_timeout(self.now);
                if self.map.poll_timeout().is_some_and(|t| t <= self.now) {
                    return Err("handle_timeout left a passed deadline".into());
                }
            }
            ExitOp::CircuitClosed => {
                self.map.handle_circuit_closed();
                self.events()?;
                if !self.map.is_empty() || self.map.poll_transmit(true).is_some() {
                    return Err("streams or messages left after the circuit closed".into());
                }
            }
        }
        self.map.check_invariants()
    }
}
