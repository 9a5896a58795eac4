//! [`StreamMap`]: the client streams of one circuit (tor-spec §6, §7.4,
//! proposal 324 §4).
//!
//! The circuit below hands in the messages its last hop sent on non-zero
//! stream ids ([`StreamMap::handle_msg`]) and asks for messages to send
//! ([`StreamMap::poll_transmit`]), saying whether its window lets DATA go.
//! The application side writes and reads bytes and takes
//! [`StreamEvent`]s. Time comes in as `now`; the one timer is the connect
//! deadline ([`StreamMap::poll_timeout`], [`StreamMap::handle_timeout`]).
//!
//! **Bounds.** Streams per circuit ([`StreamMapConfig::max_streams`]), send
//! buffer per stream ([`StreamMapConfig::send_buffer`]), receive buffer per
//! stream (what flow control lets the exit send: going over it is the exit's
//! violation), closed-stream accounting
//! ([`StreamMapConfig::max_half_closed`]). Every internal queue holds at most
//! one entry per stream, and a stream's pending control messages are a
//! handful (opener, END, two XON/XOFF, ten SENDMEs).
//!
//! **Messages for streams we do not hold** (C-tor, `relay.c`, drops them all
//! and only counts which were "valid" on half-closed streams, for the
//! vanguards addon). Here:
//! - a stream we closed: the cells it could still legitimately receive
//!   (C-tor's `half_edge_t` accounting) are dropped quietly, more is a
//!   violation ([`StreamError::ClosedStream`]; tor-spec §6.3 says to kill
//!   the circuit);
//! - an id used on this circuit but long forgotten: dropped quietly;
//! - an id never used on this circuit: a violation
//!   ([`StreamError::UnknownStream`]), since only the client picks ids.
//!
//! **Messages out of place on a live stream** (DATA before CONNECTED, a
//! second CONNECTED, RESOLVED on a connect stream, ...): a violation that
//! closes that stream. C-tor is laxer (it drops DATA before CONNECTED "for
//! forward compatibility" and closes the circuit for a second CONNECTED);
//! Braid closes only the stream and leaves the circuit to the driver.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, EndReason, Resolve};

use crate::cc::params::{STREAMWINDOW_INCREMENT, STREAMWINDOW_START};
use crate::cc::{Drained, EdgeKind, StreamFlowCtrl};
use crate::ids::StreamId;

use super::config::{StreamFlowMode, StreamMapConfig};
use super::error::StreamError;
use super::event::StreamEvent;
use super::half_closed::{HalfClosed, HalfClosedTable, UsedIds};
use super::migrate::{MigState, Register, Role};
use super::reasons::CloseReason;
use super::state::{Kind, Phase, Stream, StreamEnd, StreamState};
use super::target::{Target, resolve_msg};

mod inbound;
mod outbound;

/// The client streams of one circuit. See the [module docs](self).
#[derive(Debug)]
pub struct StreamMap {
    /// Limits.
    cfg: StreamMapConfig,
    /// Windows or XON/XOFF.
    mode: StreamFlowMode,
    /// Receive buffer bound per stream, from the flow mode.
    recv_limit: usize,
    /// The streams we hold.
    streams: HashMap<StreamId, Stream>,
    /// Closed streams' accounting of late cells.
    half: HalfClosedTable,
    /// Ids ever used on the circuit.
    used: UsedIds,
    /// Next id to try (C-tor: sequential from a random start).
    next_id: u16,
    /// Streams with a control message to send, in turn.
    ctrl_q: VecDeque<StreamId>,
    /// Streams with DATA they may send, in turn.
    data_q: VecDeque<StreamId>,
    /// Streams with an event for the application.
    event_q: VecDeque<StreamId>,
    /// Connect deadlines.
    deadlines: BTreeSet<(Instant, StreamId)>,
}

impl StreamMap {
    /// An empty map for a circuit whose flow control is `mode`; stream ids
    /// start at a random point, as in C-tor.
    pub fn new(cfg: StreamMapConfig, mode: StreamFlowMode) -> Self {
        Self::with_first_id(cfg, mode, rand::random::<u16>())
    }

    /// An empty map whose first stream id is `first` (or 1 if zero); for
    /// tests and reproducible runs.
    pub fn with_first_id(cfg: StreamMapConfig, mode: StreamFlowMode, first: u16) -> Self {
        let recv_limit = mode.recv_limit();
        StreamMap {
            half: HalfClosedTable::new(cfg.max_half_closed),
            cfg,
            mode,
            recv_limit,
            streams: HashMap::new(),
            used: UsedIds::new(),
            next_id: first,
            ctrl_q: VecDeque::new(),
            data_q: VecDeque::new(),
            event_q: VecDeque::new(),
            deadlines: BTreeSet::new(),
        }
    }

    // ------------------------------------------------------------------
    // Opening streams
    // ------------------------------------------------------------------

    /// Open a stream to `target` (tor-spec §6.2): queue a BEGIN with
    /// `flags` and wait up to [`StreamMapConfig::connect_timeout`] for
    /// CONNECTED. Data written before CONNECTED waits (or goes right after
    /// the BEGIN with [`StreamMapConfig::optimistic_data`]).
    pub fn begin(
        &mut self,
        target: &Target,
        flags: BeginFlags,
        now: Instant,
    ) -> Result<StreamId, StreamError> {
        self.begin_with_timeout(target, flags, self.cfg.connect_timeout, now)
    }

    /// [`begin`](Self::begin) with its own wait for CONNECTED (see
    /// [`connect_timeout_for_attempt`](super::connect_timeout_for_attempt)).
    pub fn begin_with_timeout(
        &mut self,
        target: &Target,
        flags: BeginFlags,
        timeout: Duration,
        now: Instant,
    ) -> Result<StreamId, StreamError> {
        let msg = AnyRelayMsg::Begin(target.begin_msg(flags)?);
        let id = self.open(Kind::Connect, msg, timeout, now)?;
        if self.cfg.migratable
            && let Some(s) = self.streams.get_mut(&id)
        {
            // Braid proposal 001 §4.1: REGISTER right after the BEGIN.
            s.mig = Some(Box::new(MigState {
                register: Register::ToSend,
                role: Role::Plain,
                foreign: 0,
            }));
            self.refresh(id);
        }
        Ok(id)
    }

    /// Ask the exit to resolve `hostname` (tor-spec §6.4). The answer comes
    /// as [`StreamEvent::Resolved`], a failure as [`StreamEvent::Ended`].
    pub fn resolve(&mut self, hostname: &str, now: Instant) -> Result<StreamId, StreamError> {
        let msg = AnyRelayMsg::Resolve(resolve_msg(hostname)?);
        self.open(Kind::Resolve, msg, self.cfg.connect_timeout, now)
    }

    /// Ask the exit for the name of `addr` (a reverse lookup, tor-spec
    /// §6.4: "in-addr.arpa").
    pub fn resolve_reverse(&mut self, addr: IpAddr, now: Instant) -> Result<StreamId, StreamError> {
        let msg = AnyRelayMsg::Resolve(Resolve::new_reverse(&addr));
        self.open(Kind::Resolve, msg, self.cfg.connect_timeout, now)
    }

    /// Allocate an id and add a stream that will send `opener`.
    fn open(
        &mut self,
        kind: Kind,
        opener: AnyRelayMsg,
        timeout: Duration,
        now: Instant,
    ) -> Result<StreamId, StreamError> {
        if self.streams.len() >= self.cfg.max_streams {
            return Err(StreamError::TooManyStreams {
                limit: self.cfg.max_streams,
            });
        }
        let id = self.allocate_id()?;
        let flow = match &self.mode {
            StreamFlowMode::Windowed => StreamFlowCtrl::windowed(),
            StreamFlowMode::XonXoff { params, onion } => {
                StreamFlowCtrl::xon_xoff(params, EdgeKind::Client, *onion)
            }
        };
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let stream = Stream::new(
            kind,
            opener,
            deadline,
            now,
            flow,
            self.cfg.send_buffer,
            self.recv_limit,
        );
        self.streams.insert(id, stream);
        self.refresh(id);
        Ok(id)
    }

    /// The next id not held by a stream or a closed stream's accounting
    /// (C-tor `get_unique_stream_id_by_circ`: sequential, skipping zero and
    /// ids in use).
    fn allocate_id(&mut self) -> Result<StreamId, StreamError> {
        for _ in 0..=u16::MAX {
            let candidate = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let Some(id) = StreamId::new(candidate) else {
                continue;
            };
            if !self.streams.contains_key(&id) && !self.half.contains(id) {
                return Ok(id);
            }
        }
        Err(StreamError::NoStreamIds)
    }

    // ------------------------------------------------------------------
    // Application side
    // ------------------------------------------------------------------

    /// Read buffered data of stream `id` into `buf`. Returns the number of
    /// bytes; 0 means EOF (the stream ended and everything was read; the id
    /// is then released) or an empty `buf`. With nothing buffered on a live
    /// stream: [`StreamError::WouldBlock`]. Reading frees window for the
    /// exit: stream SENDMEs or XON may follow.
    pub fn read(
        &mut self,
        id: StreamId,
        buf: &mut [u8],
        now: Instant,
    ) -> Result<usize, StreamError> {
        let s = held(&mut self.streams, id)?;
        if s.kind == Kind::Resolve {
            return Err(StreamError::InvalidState {
                id,
                op: "read from",
                state: s.state(),
            });
        }
        s.touch(now);
        if buf.is_empty() {
            return Ok(0);
        }
        if Self::reads_held(s) {
            // Braid proposal 001 §4.2 step 4: the old id's bytes first.
            return Err(StreamError::WouldBlock { id });
        }
        if !s.recv.is_empty() {
            let n = s.recv.pop_into(buf);
            // The old id's bytes were counted by its own flow control.
            let own = n - Self::read_foreign(s, n);
            if s.phase != Phase::Closed && own > 0 {
                let written = u64::try_from(own).unwrap_or(u64::MAX);
                let own_left = s.recv.len().saturating_sub(Self::foreign(s));
                let buffered = u64::try_from(own_left).unwrap_or(u64::MAX);
                match s.flow.on_drained(now, written, buffered) {
                    Drained::Sendmes(k) => s.sendmes = s.sendmes.saturating_add(k),
                    Drained::Signal(Some(sig)) => s.push_signal(sig),
                    Drained::Signal(None) => {}
                }
            }
            self.refresh(id);
            return Ok(n);
        }
        if s.phase == Phase::Closed {
            s.eof_read = true;
            self.refresh(id);
            return Ok(0);
        }
        Err(StreamError::WouldBlock { id })
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
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

    // ------------------------------------------------------------------
    // Time
    // ------------------------------------------------------------------

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Close every stream whose CONNECTED or RESOLVED is overdue: END to
    /// the exit, [`StreamEvent::Ended`] with `TIMEOUT` to the application
    /// (SOCKS "TTL expired"). C-tor then retries the request on another
    /// circuit; that is the driver's call.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            let wire = self.wire_reason(EndReason::TIMEOUT);
            if let Some(s) = self.streams.get_mut(&id) {
                s.queued.deadline = None;
                if s.deadline.is_some_and(|d| d <= now) {
                    if matches!(s.phase, Phase::Connecting | Phase::Resolving) {
                        s.touch(now);
                        close_local(s, &self.mode, &self.cfg, CloseReason::CONNECT_TIMEOUT, wire);
                    }
                    // Never re-armed: the loop must end.
                    s.deadline = None;
                }
            }
            self.refresh(id);
        }
    }

    // ------------------------------------------------------------------
    // Inspection
    // ------------------------------------------------------------------

    /// The state of stream `id`, if held.
    pub fn state(&self, id: StreamId) -> Option<StreamState> {
        self.streams.get(&id).map(Stream::state)
    }

    /// Streams held (any state).
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True if no stream is held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Bytes of stream `id` waiting to be read.
    pub fn recv_buffered(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id).map(|s| s.recv.len())
    }

    /// Bytes of stream `id` waiting to be sent.
    pub fn send_buffered(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id).map(|s| s.send.len())
    }

    /// DATA cells the streams have waiting to go out, for a scheduler that
    /// weighs the rest of a transfer (ECF,
    /// [`Scheduler::set_backlog`](crate::conflux_sched::Scheduler::set_backlog)):
    /// `None` while some application still writes and keeps its stream's
    /// send buffer at least half full (it writes faster than the tunnel
    /// sends: a bulk transfer whose end is not in sight); else the buffered
    /// bytes in DATA cells.
    pub fn send_backlog(&self) -> Option<u64> {
        let limit = self.cfg.send_buffer;
        let mut bytes = 0usize;
        for s in self.streams.values() {
            let buffered = s.send.len();
            let writing = matches!(s.phase, Phase::Connecting | Phase::Open) && !s.shutdown;
            if writing && buffered.saturating_mul(2) >= limit {
                return None;
            }
            bytes = bytes.saturating_add(buffered);
        }
        Some(bytes.div_ceil(self.cfg.data_len()) as u64)
    }

    /// The receive buffer bound per stream (from the flow mode).
    pub fn recv_limit(&self) -> usize {
        self.recv_limit
    }

    /// Closed streams whose late cells are still accounted for.
    pub fn half_closed_len(&self) -> usize {
        self.half.len()
    }

    /// The configuration.
    pub fn config(&self) -> &StreamMapConfig {
        &self.cfg
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// The END reason to put on the wire for a local `reason`.
    fn wire_reason(&self, reason: EndReason) -> EndReason {
        if self.cfg.informative_end_reasons {
            reason
        } else {
            // tor-spec §6.3; C-tor `connection_edge_end` on client circuits.
            EndReason::MISC
        }
    }

    /// The ids of the streams held.
    pub(crate) fn stream_ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.streams.keys().copied()
    }

    /// Stream `id`, if held.
    pub(crate) fn stream(&self, id: StreamId) -> Option<&Stream> {
        self.streams.get(&id)
    }

    /// Stream `id`, if held.
    pub(crate) fn stream_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.streams.get_mut(&id)
    }

    /// The flow mode.
    pub(crate) fn mode(&self) -> &StreamFlowMode {
        &self.mode
    }

    /// The END reason to put on the wire for a local `reason`.
    pub(crate) fn end_reason_on_wire(&self, reason: EndReason) -> EndReason {
        self.wire_reason(reason)
    }

    /// [`Self::open`], for the migration module.
    pub(crate) fn open_stream(
        &mut self,
        kind: Kind,
        opener: AnyRelayMsg,
        timeout: Duration,
        now: Instant,
    ) -> Result<StreamId, StreamError> {
        self.open(kind, opener, timeout, now)
    }

    /// [`Self::refresh`], for the migration module.
    pub(crate) fn refresh_stream(&mut self, id: StreamId) {
        self.refresh(id);
    }

    /// Close stream `id` from our side with `reason` (END `wire`).
    pub(crate) fn close_with(&mut self, id: StreamId, reason: CloseReason, wire: EndReason) {
        if let Some(s) = self.streams.get_mut(&id) {
            close_local(s, &self.mode, &self.cfg, reason, wire);
        }
        self.refresh(id);
    }

    /// Bring the map's queues and timers in line with stream `id` after a
    /// change, finish a shutdown whose data has gone out, and drop the
    /// stream once nothing is left to do.
    fn refresh(&mut self, id: StreamId) {
        let wire_done = self.wire_reason(EndReason::DONE);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        // shutdown_write: END once the buffered data is out (C-tor
        // `connection_edge_reached_eof` waits for its inbuf to be packaged).
        if s.shutdown
            && s.send.is_empty()
            && matches!(s.phase, Phase::Connecting | Phase::Open)
            && !Self::holds_shutdown(s)
            && s.mig.as_ref().is_none_or(|m| m.may_send_data())
        {
            close_local(
                s,
                &self.mode,
                &self.cfg,
                CloseReason::End(EndReason::DONE),
                wire_done,
            );
        }
        Self::note_target_end(s);
        if s.queued.deadline != s.deadline {
            if let Some(old) = s.queued.deadline.take() {
                self.deadlines.remove(&(old, id));
            }
            if let Some(new) = s.deadline {
                self.deadlines.insert((new, id));
                s.queued.deadline = Some(new);
            }
        }
        if !s.queued.ctrl && s.has_control() {
            s.queued.ctrl = true;
            self.ctrl_q.push_back(id);
        }
        if !s.queued.data && s.can_send_data(self.cfg.optimistic_data) {
            s.queued.data = true;
            self.data_q.push_back(id);
        }
        if !s.queued.event && s.has_events() {
            s.queued.event = true;
            self.event_q.push_back(id);
        }
        let finished = s.phase == Phase::Closed && !s.has_control();
        let app_done = s.released
            || (!s.has_events() && (s.kind == Kind::Resolve || (s.eof_read && s.recv.is_empty())));
        if finished && app_done {
            self.reap(id);
        }
    }

    /// Forget stream `id`, keeping its late-cell accounting.
    fn reap(&mut self, id: StreamId) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        if s.queued.ctrl {
            self.ctrl_q.retain(|x| *x != id);
        }
        if s.queued.data {
            self.data_q.retain(|x| *x != id);
        }
        if s.queued.event {
            self.event_q.retain(|x| *x != id);
        }
        if let Some(d) = s.queued.deadline {
            self.deadlines.remove(&(d, id));
        }
        if let Some(hc) = s.after_close {
            self.half.insert(id, hc);
        }
    }
}

/// The stream `id`, unless absent or released by the application.
fn held(streams: &mut HashMap<StreamId, Stream>, id: StreamId) -> Result<&mut Stream, StreamError> {
    match streams.get_mut(&id) {
        Some(s) if !s.released => Ok(s),
        _ => Err(StreamError::NoSuchStream { id }),
    }
}

/// Close a stream from our side with `reason` (locally) and `wire` (in the
/// END), unless it is closed already. A stream whose BEGIN never went out
/// just stops; otherwise END is queued and the cells the exit may still
/// send are accounted for (C-tor `connection_half_edge_add`).
fn close_local(
    s: &mut Stream,
    mode: &StreamFlowMode,
    cfg: &StreamMapConfig,
    reason: CloseReason,
    wire: EndReason,
) {
    if s.phase == Phase::Closed {
        return;
    }
    s.clear_outbound();
    let connecting = s.phase == Phase::Connecting;
    let resolving = s.phase == Phase::Resolving;
    if s.opener.take().is_some() {
        s.after_close = None;
    } else {
        s.end_to_send = Some(wire);
        s.after_close = Some(match (mode, &s.flow) {
            (StreamFlowMode::Windowed, StreamFlowCtrl::Window { package, deliver }) => {
                let unacked = STREAMWINDOW_START.saturating_sub(package.window());
                HalfClosed::after_end_windowed(
                    connecting,
                    resolving,
                    deliver.window(),
                    unacked / STREAMWINDOW_INCREMENT,
                )
            }
            _ => {
                let until = s
                    .last_now
                    .checked_add(cfg.half_closed_linger)
                    .unwrap_or(s.last_now);
                HalfClosed::after_end_cc(connecting, until)
            }
        });
        let token_due = s
            .mig
            .as_ref()
            .is_some_and(|m| m.register == crate::stream::migrate::Register::Sent);
        if token_due {
            s.after_close = s.after_close.take().map(HalfClosed::with_token_pending);
        }
    }
    s.phase = Phase::Closed;
    s.end = Some(StreamEnd {
        reason,
        remote: false,
    });
    s.events.ended = !s.released;
}
