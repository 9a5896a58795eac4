//! The driver's side of an [`ExitStreamMap`]: its answers to the
//! requests (`connected`, `refuse`, `resolved`), the bytes both ways
//! (`read`, `write`), the destination's EOF and errors (`shutdown_write`,
//! `close`), and the polls for events and for messages to send.

use std::net::IpAddr;
use std::time::Instant;

use tor_cell::relaycell::msg::{
    AnyRelayMsg, BeginFlags, Connected, Data, End, EndReason, Resolved, ResolvedVal,
};

use crate::cc::Drained;
use crate::ids::StreamId;
use crate::stream::ResolvedAnswer;

use super::config::ExitConfig;
use super::error::{ExitError, ExitStreamState};
use super::event::ExitEvent;
use super::map::{ExitStats, ExitStreamMap, end_msg, linger};
use super::request::{DEFAULT_DNS_TTL, clip_dns_fuzzy_ttl, clip_dns_ttl};
use super::stream::{ExitStream, Kind, Phase};

/// The most a RESOLVED body holds (a relay cell's data, format v0).
const MAX_RESOLVED_LEN: usize = Data::MAXLEN;

impl ExitStreamMap {
    // ------------------------------------------------------------------
    // Answers to requests
    // ------------------------------------------------------------------

    /// The destination of a [`ExitEvent::Connect`] is connected, at `addr`:
    /// CONNECTED goes to the client with the address (tor-spec §6.2) and
    /// `ttl`, the resolver's TTL, clipped and fuzzed as C-tor does
    /// ([`clip_dns_fuzzy_ttl`]; for an IP literal target, C-tor's
    /// `DEFAULT_DNS_TTL`). Bytes flow from now on.
    ///
    /// Misuse: the stream is not a connecting one; `addr` is unspecified
    /// (the client would close the stream, tor-spec §6.2), or of a family
    /// the BEGIN flags refused for a hostname (IPv4 with IPv4-not-ok, IPv6
    /// without IPv6-ok: C-tor's client closes such a stream with
    /// TORPROTOCOL); use [`choose_address`](super::choose_address).
    pub fn connected(
        &mut self,
        id: StreamId,
        addr: IpAddr,
        ttl: u32,
        now: Instant,
    ) -> Result<(), ExitError> {
        let s = visible(&mut self.streams, id)?;
        requested(s, id, Kind::Connect, "connect")?;
        if addr.is_unspecified() {
            return Err(ExitError::InvalidAnswer {
                id,
                why: "unspecified address",
            });
        }
        if !s.literal {
            let refused = match addr {
                IpAddr::V4(_) => s.flags.contains(BeginFlags::IPV4_NOT_OKAY),
                IpAddr::V6(_) => !s.flags.contains(BeginFlags::IPV6_OKAY),
            };
            if refused {
                return Err(ExitError::InvalidAnswer {
                    id,
                    why: "an address family the BEGIN flags refused",
                });
            }
        }
        s.touch(now);
        let ttl = if s.literal {
            DEFAULT_DNS_TTL
        } else {
            clip_dns_fuzzy_ttl(ttl, &mut self.rng)
        };
        s.reply = Some(AnyRelayMsg::Connected(Connected::new_with_addr(addr, ttl)));
        s.phase = Phase::Open;
        s.deadline = None;
        if !s.to_dest.is_empty() {
            s.events.readable = true;
        }
        self.refresh(id);
        Ok(())
    }

    /// The BEGIN of a [`ExitEvent::Connect`] is refused with `reason`
    /// (EXITPOLICY, CONNECTREFUSED, RESOLVEFAILED, NOROUTE, TIMEOUT,
    /// RESOURCELIMIT, TORPROTOCOL for a connection back into the network,
    /// ...; tor-spec §6.3; [`end_reason_for_io`](super::end_reason_for_io)
    /// for a socket error): END goes to the client and the stream is over.
    pub fn refuse(
        &mut self,
        id: StreamId,
        reason: EndReason,
        now: Instant,
    ) -> Result<(), ExitError> {
        self.refuse_with(id, reason, End::new_with_reason(reason), now)
    }

    /// The exit policy refuses the address `addr` the target resolved to:
    /// END EXITPOLICY with the address and its TTL (clipped, C-tor
    /// `connection_edge_end`), so that the client can remember it.
    pub fn refuse_exit_policy(
        &mut self,
        id: StreamId,
        addr: IpAddr,
        ttl: u32,
        now: Instant,
    ) -> Result<(), ExitError> {
        let end = End::new_exitpolicy(addr, clip_dns_ttl(ttl));
        self.refuse_with(id, EndReason::EXITPOLICY, end, now)
    }

    /// Refuse a connecting stream with `end`.
    fn refuse_with(
        &mut self,
        id: StreamId,
        reason: EndReason,
        end: End,
        now: Instant,
    ) -> Result<(), ExitError> {
        let linger = linger(&self.mode, &self.cfg, now);
        let s = visible(&mut self.streams, id)?;
        requested(s, id, Kind::Connect, "refuse")?;
        s.touch(now);
        s.release();
        s.close_local(reason, AnyRelayMsg::End(end), linger);
        self.refresh(id);
        Ok(())
    }

    /// The answer to a [`ExitEvent::Resolve`] (tor-spec §6.4): addresses
    /// for a name, a name for a reverse lookup, or an error
    /// ([`ResolvedAnswer::TransientError`], C-tor's answer when the lookup
    /// timed out or the server failed; [`ResolvedAnswer::NontransientError`]
    /// when the name does not exist). TTLs are clipped and fuzzed as C-tor
    /// does; no answer at all is sent as a nontransient error (C-tor
    /// `send_resolved_cell`); answers that do not fit in one RESOLVED are
    /// left out. The stream is over.
    ///
    /// Misuse: not a resolving stream; a name longer than 255 bytes.
    pub fn resolved(
        &mut self,
        id: StreamId,
        answers: &[ResolvedAnswer],
        now: Instant,
    ) -> Result<(), ExitError> {
        let s = visible(&mut self.streams, id)?;
        requested(s, id, Kind::Resolve, "answer")?;
        let mut msg = Resolved::new_empty();
        let mut len = 0usize;
        for a in answers {
            let (val, ttl, size) = match a {
                ResolvedAnswer::Ip { addr, ttl } => {
                    let size = if addr.is_ipv4() { 4 } else { 16 };
                    (
                        ResolvedVal::Ip(*addr),
                        clip_dns_fuzzy_ttl(*ttl, &mut self.rng),
                        size,
                    )
                }
                ResolvedAnswer::Hostname { name, ttl } => {
                    if name.len() > 255 {
                        return Err(ExitError::InvalidAnswer {
                            id,
                            why: "a hostname longer than 255 bytes",
                        });
                    }
                    let ttl = clip_dns_fuzzy_ttl(*ttl, &mut self.rng);
                    (
                        ResolvedVal::Hostname(name.as_bytes().to_vec()),
                        ttl,
                        name.len(),
                    )
                }
                ResolvedAnswer::TransientError => (ResolvedVal::TransientError, 0, 0),
                ResolvedAnswer::NontransientError => (ResolvedVal::NontransientError, 0, 0),
                // Nothing a resolver gives; not ours to invent.
                ResolvedAnswer::Unrecognized { .. } => continue,
            };
            // Type, length, value, TTL (tor-spec §6.4).
            let add = 2 + size + 4;
            if len + add > MAX_RESOLVED_LEN {
                break;
            }
            len += add;
            msg.add_answer(val, ttl);
        }
        if len == 0 {
            msg = Resolved::new_err(false, 0);
        }
        s.touch(now);
        s.release();
        s.close_local(EndReason::DONE, AnyRelayMsg::Resolved(msg), None);
        self.refresh(id);
        Ok(())
    }

    // ------------------------------------------------------------------
    // Bytes
    // ------------------------------------------------------------------

    /// Take bytes the client sent for the destination (after
    /// [`ExitEvent::Readable`]): up to `buf.len()`, 0 when none wait.
    /// Taking them may send XON (proposal 324 §4.1.1) or stream SENDMEs
    /// (tor-spec §7.4) to the client. After the client's END the last bytes
    /// are still read; then `Closed` comes.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8], now: Instant) -> Result<usize, ExitError> {
        let flush = self.cfg.flush_timeout;
        let s = visible(&mut self.streams, id)?;
        if s.phase == Phase::Requested || s.kind == Kind::Resolve {
            return Err(invalid(s, id, "read from"));
        }
        s.touch(now);
        let n = s.to_dest.pop_into(buf);
        // A migrated stream's old-id bytes were counted by that id's flow
        // control (Braid proposal 001 §4.2 step 4).
        let own = ExitStreamMap::read_own(s, n);
        if n > 0 {
            if s.phase == Phase::Open {
                let written = u64::try_from(own).unwrap_or(u64::MAX);
                let left = ExitStreamMap::own_buffered(s);
                let buffered = u64::try_from(left).unwrap_or(u64::MAX);
                match s.flow.on_drained(now, written, buffered) {
                    Drained::Sendmes(k) => s.sendmes = s.sendmes.saturating_add(k),
                    Drained::Signal(Some(sig)) => s.push_signal(sig),
                    Drained::Signal(None) => {}
                }
            } else if s.deadline.is_some() {
                // Flushing after the client's END: progress restarts the
                // wait (C-tor: 15 s without a write).
                s.deadline = now.checked_add(flush);
            }
        }
        self.refresh(id);
        Ok(n)
    }

    /// Room for the destination's bytes on stream `id` now: what
    /// [`write`](Self::write) would take. Read no more than this from the
    /// socket.
    pub fn write_capacity(&mut self, id: StreamId, now: Instant) -> Result<usize, ExitError> {
        let total_free = self
            .cfg
            .dest_buffer_total
            .saturating_sub(self.from_dest_total);
        let s = visible(&mut self.streams, id)?;
        if !writable(s) {
            return Err(invalid(s, id, "write to"));
        }
        s.touch(now);
        Ok(s.write_room(now, total_free).0)
    }

    /// Bytes from the destination for the client: returns how many were
    /// taken, as many as fit in the stream's buffer, the circuit's total and
    /// the client's advised rate allow; 0 when none: stop reading the
    /// socket until [`ExitEvent::Writable`]. Only once connected.
    pub fn write(&mut self, id: StreamId, data: &[u8], now: Instant) -> Result<usize, ExitError> {
        let total_free = self
            .cfg
            .dest_buffer_total
            .saturating_sub(self.from_dest_total);
        let s = visible(&mut self.streams, id)?;
        if !writable(s) {
            return Err(invalid(s, id, "write to"));
        }
        s.touch(now);
        let (room, paced) = s.write_room(now, total_free);
        let n = s
            .from_dest
            .push(data.get(..room.min(data.len())).unwrap_or(&[]));
        if let Some(p) = s.pacer.as_mut() {
            p.take(n);
        }
        if n < data.len() {
            s.want_writable = true;
            if paced && room == n {
                s.deadline = s.pacer.map(|p| p.next_cell_at());
            }
        }
        self.refresh(id);
        Ok(n)
    }

    /// The destination closed its side (EOF): what it sent goes to the
    /// client, then END DONE (C-tor `connection_edge_reached_eof`; Tor has
    /// no half-close on the wire, tor-spec §6.3); then `Closed`.
    pub fn shutdown_write(&mut self, id: StreamId, now: Instant) -> Result<(), ExitError> {
        let s = visible(&mut self.streams, id)?;
        if !writable(s) {
            return Err(invalid(s, id, "shut down"));
        }
        s.touch(now);
        s.dest_eof = true;
        s.want_writable = false;
        self.refresh(id);
        Ok(())
    }

    /// The driver ends stream `id` (a socket error, or it gives up): END
    /// with `reason` goes to the client if the stream is still open on the
    /// wire (an exit sends its real reason; only a stream's originator is
    /// held to MISC, tor-spec §6.3); what waited either way is dropped. No
    /// event follows.
    pub fn close(
        &mut self,
        id: StreamId,
        reason: EndReason,
        now: Instant,
    ) -> Result<(), ExitError> {
        let linger = linger(&self.mode, &self.cfg, now);
        let s = visible(&mut self.streams, id)?;
        s.touch(now);
        s.release();
        let msg = if s.kind == Kind::Resolve {
            AnyRelayMsg::Resolved(Resolved::new_err(true, 0))
        } else {
            end_msg(reason)
        };
        s.close_local(reason, msg, linger);
        self.refresh(id);
        self.wake_writers();
        Ok(())
    }

    // ------------------------------------------------------------------
    // Inspection
    // ------------------------------------------------------------------

    /// The state of stream `id`, if held.
    pub fn state(&self, id: StreamId) -> Option<ExitStreamState> {
        self.streams.get(&id).map(ExitStream::state)
    }

    /// Streams held (any state).
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True if no stream is held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Bytes of stream `id` waiting for the destination.
    pub fn to_dest_buffered(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id).map(|s| s.to_dest.len())
    }

    /// Bytes of stream `id` from the destination waiting to be sent.
    pub fn from_dest_buffered(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id).map(|s| s.from_dest.len())
    }

    /// Bytes waiting (for the destinations, for the client), all streams.
    pub fn buffered(&self) -> (usize, usize) {
        (self.to_dest_total, self.from_dest_total)
    }

    /// What waits to be sent to the client, in DATA cells, for a Conflux
    /// scheduler that weighs a slow leg against the backlog (ECF): `None`
    /// (unknown, likely large) while a destination that has not finished
    /// keeps its stream's buffer at least half full (it writes faster than
    /// we send, and the buffer's bound hides the rest, as the client's
    /// `StreamMap::send_backlog` says of an application).
    pub fn send_backlog(&self) -> Option<u64> {
        let half = self.cfg.dest_buffer / 2;
        for s in self.streams.values() {
            if writable(s) && s.from_dest.len() >= half.max(1) {
                return None;
            }
        }
        Some(self.from_dest_total.div_ceil(self.cfg.data_len()) as u64)
    }

    /// The bound on one stream's bytes for the destination.
    pub fn to_dest_limit(&self) -> usize {
        self.to_dest_limit
    }

    /// Closed streams whose late cells are accounted for.
    pub fn half_closed_len(&self) -> usize {
        self.half.len()
    }

    /// True once the circuit is gone.
    pub fn is_circuit_closed(&self) -> bool {
        self.circuit_closed
    }

    /// The counters.
    pub fn stats(&self) -> &ExitStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &ExitConfig {
        &self.cfg
    }

    // ------------------------------------------------------------------
    // Polls
    // ------------------------------------------------------------------

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ExitEvent> {
        if let Some(ev) = self.orphans.pop_front() {
            return Some(ev);
        }
        for _ in 0..self.event_q.len() {
            let id = self.event_q.pop_front()?;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.queued.event = false;
            let ev = s.take_event(id);
            self.refresh(id);
            if ev.is_some() {
                return ev;
            }
        }
        None
    }

    /// The next message to send to the client: answers given at once,
    /// then CONNECTED, RESOLVED, END, XON, XOFF and stream SENDMEs, then, if
    /// `can_send_data` (the circuit's window is open), one DATA cell of at
    /// most [`ExitConfig::max_data_len`](super::ExitConfig::max_data_len)
    /// bytes from a stream whose flow control allows it. Streams take
    /// turns.
    pub fn poll_transmit(&mut self, can_send_data: bool) -> Option<(StreamId, AnyRelayMsg)> {
        if let Some(r) = self.refusals.pop_front() {
            return Some(r);
        }
        for _ in 0..self.ctrl_q.len() {
            let id = self.ctrl_q.pop_front()?;
            let Some(s) = self.streams.get_mut(&id) else {
                // The old id of a migrated stream: its MARK or END.
                if let Some(m) = self.tail_control(id) {
                    return Some((id, m));
                }
                continue;
            };
            s.queued.ctrl = false;
            let msg = s.take_control();
            self.refresh(id);
            if let Some(m) = msg {
                return Some((id, m));
            }
        }
        if !can_send_data {
            return None;
        }
        let max = self.cfg.data_len();
        for _ in 0..self.data_q.len() {
            let id = self.data_q.pop_front()?;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.queued.data = false;
            if !s.can_send_data() {
                self.refresh(id);
                continue;
            }
            let chunk = s.from_dest.pop_chunk(max);
            let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            s.bytes_out = s.bytes_out.saturating_add(len);
            let sent = s.flow.on_data_sent(len).is_ok();
            let msg = Data::new(&chunk).ok().filter(|_| sent);
            self.refresh(id);
            self.wake_writers();
            if let Some(d) = msg {
                return Some((id, AnyRelayMsg::Data(d)));
            }
        }
        None
    }

    /// Refusals and control messages waiting, for a caller that wants to
    /// know whether [`poll_transmit`](Self::poll_transmit) has something
    /// with the circuit's window closed.
    pub fn has_control(&self) -> bool {
        !self.refusals.is_empty() || !self.ctrl_q.is_empty()
    }
}

/// The stream `id`, if the driver may deal with it.
fn visible(
    streams: &mut std::collections::HashMap<StreamId, ExitStream>,
    id: StreamId,
) -> Result<&mut ExitStream, ExitError> {
    match streams.get_mut(&id) {
        Some(s) if s.visible() => Ok(s),
        _ => Err(ExitError::NoSuchStream { id }),
    }
}

/// Fails unless `s` is a `kind` stream waiting for the driver's answer.
fn requested(s: &ExitStream, id: StreamId, kind: Kind, op: &'static str) -> Result<(), ExitError> {
    if s.kind == kind && s.phase == Phase::Requested {
        Ok(())
    } else {
        Err(invalid(s, id, op))
    }
}

/// True if the destination's bytes may be written to `s`.
fn writable(s: &ExitStream) -> bool {
    s.phase == Phase::Open && !s.dest_eof && s.kind != Kind::Resolve
}

/// [`ExitError::InvalidState`] for `op` on `s`.
fn invalid(s: &ExitStream, id: StreamId, op: &'static str) -> ExitError {
    ExitError::InvalidState {
        id,
        op,
        state: s.state(),
    }
}
