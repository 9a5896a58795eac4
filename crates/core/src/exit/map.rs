//! [`ExitStreamMap`]: the exit's streams of one circuit (tor-spec §6,
//! §7.4; proposal 324 §4).
//!
//! The circuit hands in every stream message its edge receives
//! ([`ExitStreamMap::handle_msg`]) and asks for messages to send
//! ([`ExitStreamMap::poll_transmit`]), saying whether its window lets DATA
//! go. The driver takes [`ExitEvent`]s (connect, resolve, bytes readable,
//! room to write, closed), does all the IO, and answers (`connected`,
//! `refuse`, `resolved`, `read`, `write`, `shutdown_write`, `close`; see
//! the `driver` module). Time comes in as `now`; the one timer per stream is
//! the connect deadline, the flush deadline after the client's END, or the
//! end of a pacing pause ([`ExitStreamMap::poll_timeout`]).
//!
//! **Bounds.** Streams per circuit ([`ExitConfig::max_streams`]: a BEGIN
//! beyond it is answered END RESOURCELIMIT); bytes for the destination per
//! stream (what flow control lets the client send; more is a violation that
//! ends the stream) and over the circuit ([`ExitConfig::to_dest_total`]);
//! bytes from the destination per stream and over the circuit
//! ([`ExitConfig::dest_buffer`], [`ExitConfig::dest_buffer_total`]: `write`
//! takes no more and the driver stops reading the socket, so a client that
//! never reads holds at most that); refusals waiting to go; closed-stream
//! accounting ([`ExitConfig::max_half_closed`]); events (at most one of
//! each kind per stream, plus one `Closed` per replaced stream, counted
//! against `max_streams`).
//!
//! **Cells for streams we do not hold.** C-tor's exit drops them
//! (`relay.c`: "data cell dropped, unknown stream"). Here too, counted in
//! [`ExitStats`]: on a stream we closed, what the client could still send
//! before it saw our END (the client side's half-closed accounting, reused)
//! is `dropped_closed`, anything beyond it, or after the client's own END,
//! `dropped_invalid`; on an id never opened, `dropped_unknown`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, End, EndReason, Resolved, ResolvedVal};

use crate::ids::StreamId;
use crate::stream::half_closed::HalfClosedTable;
use crate::stream::{Host, StreamFlowMode};

use super::config::{ExitConfig, to_dest_limit};
use super::error::ExitError;
use super::event::ExitEvent;
use super::migrate::{MigrateRequest, Tail};
use super::request::{DEFAULT_DNS_TTL, ResolveParse, clip_dns_ttl, parse_begin, parse_resolve};
use super::stream::{ExitStream, Kind, Phase, Request};
use crate::stream::migrate_wire::is_migrate_cmd;

mod live;
mod open;

/// What the map has counted, for logs and metrics (and the vanguards-style
/// accounting of dropped cells C-tor keeps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// Streams opened (BEGIN, BEGIN_DIR or RESOLVE handed to the driver).
    pub opened: u64,
    /// Requests answered at once with END or RESOLVED (malformed, refused
    /// by a rule or a limit, or an IP literal to resolve).
    pub answered_at_once: u64,
    /// Cells on ids never opened on this circuit (dropped, as C-tor).
    pub dropped_unknown: u64,
    /// Cells on streams we closed that the client could still send before
    /// it saw our END (dropped quietly).
    pub dropped_closed: u64,
    /// Cells dropped that the client should not have sent: after its own
    /// END, beyond what could cross our END, messages out of place (DATA on
    /// a RESOLVE stream, CONNECTED from a client), XON/XOFF C-tor ignores
    /// (without congestion control, a second XOFF).
    pub dropped_invalid: u64,
    /// Protocol violations that ended a stream (see [`ExitError`]).
    pub violations: u64,
}

/// The exit's streams of one circuit (or, later, of one Conflux set).
/// See the [module docs](self).
#[derive(Debug)]
pub struct ExitStreamMap {
    /// Limits.
    pub(crate) cfg: ExitConfig,
    /// Windows or XON/XOFF.
    pub(crate) mode: StreamFlowMode,
    /// Bound on each stream's bytes for the destination.
    pub(crate) to_dest_limit: usize,
    /// The streams.
    pub(crate) streams: HashMap<StreamId, ExitStream>,
    /// Closed streams' accounting of late cells.
    pub(crate) half: HalfClosedTable,
    /// END or RESOLVED for requests answered at once, in order.
    pub(crate) refusals: VecDeque<(StreamId, AnyRelayMsg)>,
    /// `Closed` events of streams replaced by a new one on the same id.
    pub(crate) orphans: VecDeque<ExitEvent>,
    /// Streams with a control message to send, in turn.
    pub(crate) ctrl_q: VecDeque<StreamId>,
    /// Streams with DATA they may send, in turn.
    pub(crate) data_q: VecDeque<StreamId>,
    /// Streams with an event for the driver.
    pub(crate) event_q: VecDeque<StreamId>,
    /// Streams whose short write waits for room in the circuit's total.
    pub(crate) waiting: VecDeque<StreamId>,
    /// Stream deadlines.
    pub(crate) deadlines: BTreeSet<(Instant, StreamId)>,
    /// Bytes for destinations, all streams.
    pub(crate) to_dest_total: usize,
    /// Bytes from destinations, all streams.
    pub(crate) from_dest_total: usize,
    /// For TTL fuzzing.
    pub(crate) rng: StdRng,
    /// The circuit is gone.
    pub(crate) circuit_closed: bool,
    /// Counters.
    pub(crate) stats: ExitStats,
    /// Old ids of streams migrated away, until both MIGRATE_MARKs
    /// (Braid proposal 001 §4.2).
    pub(crate) tails: HashMap<StreamId, Tail>,
    /// What the owner of the maps must do across them
    /// ([`ExitStreamMap::take_migrate_requests`]).
    pub(crate) mig_requests: VecDeque<MigrateRequest>,
    /// When the last migrations into this map began (at most
    /// [`MAX_PER_SECOND`](super::migrate::MAX_PER_SECOND) kept).
    pub(crate) mig_recent: VecDeque<Instant>,
    /// The latest `now` given, for the tails' linger.
    pub(crate) mig_now: Option<Instant>,
    /// Tests only: XOFF is ignored ([`Self::ignore_xoff`]).
    #[cfg(feature = "hostile")]
    pub(crate) ignore_xoff: bool,
}

impl ExitStreamMap {
    /// An empty map for a circuit whose flow control is `mode` (XON/XOFF
    /// when the circuit negotiated congestion control, fixed windows
    /// otherwise).
    pub fn new(cfg: ExitConfig, mode: StreamFlowMode) -> Self {
        Self::with_seed(cfg, mode, rand::random::<u64>())
    }

    /// [`new`](Self::new) with its TTL fuzzing seeded, for tests and
    /// reproducible runs.
    pub fn with_seed(cfg: ExitConfig, mode: StreamFlowMode, seed: u64) -> Self {
        ExitStreamMap {
            half: HalfClosedTable::new(cfg.max_half_closed),
            to_dest_limit: to_dest_limit(&mode),
            cfg,
            mode,
            streams: HashMap::new(),
            refusals: VecDeque::new(),
            orphans: VecDeque::new(),
            ctrl_q: VecDeque::new(),
            data_q: VecDeque::new(),
            event_q: VecDeque::new(),
            waiting: VecDeque::new(),
            deadlines: BTreeSet::new(),
            to_dest_total: 0,
            from_dest_total: 0,
            rng: StdRng::seed_from_u64(seed),
            circuit_closed: false,
            stats: ExitStats::default(),
            tails: HashMap::new(),
            mig_requests: VecDeque::new(),
            mig_recent: VecDeque::new(),
            mig_now: None,
            #[cfg(feature = "hostile")]
            ignore_xoff: false,
        }
    }

    /// Tests only ([`crate::relay::node::hostile`]): ignore the client's
    /// XOFF on every stream.
    #[cfg(feature = "hostile")]
    pub fn ignore_xoff(&mut self) {
        self.ignore_xoff = true;
    }

    // ------------------------------------------------------------------
    // Inbound
    // ------------------------------------------------------------------

    /// A message from the client on stream `id`.
    ///
    /// Whatever it is, it has been answered on the wire when this returns:
    /// an error says what the client did wrong (the stream concerned is
    /// ended, with END TORPROTOCOL or RESOURCELIMIT) or which of our limits
    /// refused it; if [`ExitError::closes_circuit`], the caller closes the
    /// circuit. Padding and unknown commands are ignored (tor-spec §6.1).
    pub fn handle_msg(
        &mut self,
        id: StreamId,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), ExitError> {
        if self.circuit_closed {
            return Ok(());
        }
        self.mig_now = Some(self.mig_now.map_or(now, |t| t.max(now)));
        let cmd = msg.cmd();
        if self.cfg.migrate && is_migrate_cmd(cmd) {
            let result = self.on_migrate_msg(id, &msg, now);
            if result.as_ref().is_err_and(ExitError::is_protocol_violation) {
                self.stats.violations += 1;
            }
            self.wake_writers();
            return result;
        }
        let result = match msg {
            AnyRelayMsg::Drop(_) | AnyRelayMsg::Unrecognized(_) => Ok(()),
            AnyRelayMsg::Begin(b) => {
                let request = if self.cfg.client_first_hop {
                    // C-tor: "Don't let clients use us as a single-hop proxy."
                    Err(EndReason::TORPROTOCOL)
                } else {
                    parse_begin(&b, self.cfg.ipv6_exit)
                };
                let decision = match request {
                    Ok((target, _)) if !self.cfg.exits => Err(non_exit_refusal(&target.host)),
                    Ok((target, flags)) => Ok(Opening {
                        kind: Kind::Connect,
                        literal: !matches!(target.host, Host::Hostname(_)),
                        flags,
                        request: Request::Connect { target, flags },
                    }),
                    Err(reason) => Err(end_msg(reason)),
                };
                self.on_open(id, cmd, now, decision)
            }
            AnyRelayMsg::BeginDir(_) => {
                let decision = if self.cfg.serves_directory {
                    Ok(Opening {
                        kind: Kind::Dir,
                        literal: false,
                        flags: BeginFlags::empty(),
                        request: Request::Dir,
                    })
                } else {
                    // tor-spec §6.2; C-tor `connection_exit_begin_conn`.
                    Err(end_msg(EndReason::NOTDIRECTORY))
                };
                self.on_open(id, cmd, now, decision)
            }
            AnyRelayMsg::Resolve(r) => {
                let parsed = parse_resolve(r.query());
                self.on_open(
                    id,
                    cmd,
                    now,
                    match parsed {
                        // C-tor `dns_resolve_impl` at a non-exit: no
                        // lookups, RESOLVED_TYPE_ERROR.
                        ResolveParse::Lookup(_) if !self.cfg.exits => {
                            Err(AnyRelayMsg::Resolved(Resolved::new_err(false, 0)))
                        }
                        ResolveParse::Lookup(q) => Ok(Opening {
                            kind: Kind::Resolve,
                            literal: false,
                            flags: BeginFlags::empty(),
                            request: Request::Resolve(q),
                        }),
                        ResolveParse::Literal(ip) => {
                            let mut res = Resolved::new_empty();
                            res.add_answer(ResolvedVal::Ip(ip), DEFAULT_DNS_TTL);
                            Err(AnyRelayMsg::Resolved(res))
                        }
                        // tor-spec §6.4; C-tor `send_resolved_cell` with
                        // RESOLVED_TYPE_ERROR.
                        ResolveParse::Invalid => {
                            Err(AnyRelayMsg::Resolved(Resolved::new_err(false, 0)))
                        }
                    },
                )
            }
            other => self.on_stream_msg(id, other, now),
        };
        if result.as_ref().is_err_and(ExitError::is_protocol_violation) {
            self.stats.violations += 1;
        }
        self.wake_writers();
        result
    }

    /// The circuit is gone: every stream the driver knows ends with
    /// `Closed { reason: DESTROY, remote: true }`; nothing more is sent.
    pub fn handle_circuit_closed(&mut self) {
        self.circuit_closed = true;
        self.tails_circuit_closed();
        self.refusals.clear();
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.streams.get_mut(&id) {
                let tell = s.visible() && (!s.close_reported || s.events.closed);
                s.release();
                s.reply = None;
                s.end_to_send = None;
                s.signals.clear();
                s.sendmes = 0;
                s.from_dest.clear();
                s.phase = Phase::Closed;
                s.after_close = None;
                s.deadline = None;
                if tell {
                    s.released = false;
                    s.close_reported = true;
                    s.end = Some((EndReason::DESTROY, true));
                    s.events.closed = true;
                }
            }
            self.refresh(id);
        }
    }

    // ------------------------------------------------------------------
    // Time
    // ------------------------------------------------------------------

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Act on every deadline passed at `now`: a connect or lookup the driver
    /// did not answer ends (END TIMEOUT, or RESOLVED with a transient error)
    /// and the driver gets `Closed` to abort it; a stream the client ended
    /// whose last bytes the driver did not take ends; a paced stream may
    /// take bytes again (`Writable`).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            let linger = linger(&self.mode, &self.cfg, now);
            if let Some(s) = self.streams.get_mut(&id) {
                s.queued.deadline = None;
                if s.deadline.is_some_and(|d| d <= now) {
                    s.touch(now);
                    // Never re-armed here: the loop must end.
                    s.deadline = None;
                    match s.phase {
                        Phase::Requested => {
                            let msg = if s.kind == Kind::Resolve {
                                AnyRelayMsg::Resolved(Resolved::new_err(true, 0))
                            } else {
                                end_msg(EndReason::TIMEOUT)
                            };
                            s.close_local(EndReason::TIMEOUT, msg, linger);
                        }
                        Phase::Closed => s.to_dest.clear(),
                        Phase::Open => {}
                    }
                }
            }
            self.refresh(id);
        }
        self.wake_writers();
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// Bring the map's queues, totals and timers in line with stream `id`
    /// after a change; finish a shutdown whose bytes have gone; tell the
    /// driver a stream is over once it has its last bytes; drop a stream
    /// once nothing is left to do.
    pub(crate) fn refresh(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let linger_until = linger(&self.mode, &self.cfg, s.last_now);
        // The destination's EOF: END DONE once its bytes are out (C-tor
        // `connection_edge_reached_eof`).
        if s.dest_eof && s.phase == Phase::Open && s.from_dest.is_empty() && s.reply.is_none() {
            s.close_local(EndReason::DONE, end_msg(EndReason::DONE), linger_until);
        }
        Self::migrate_refresh(&mut self.mig_requests, s);
        // Totals (with a migrated stream's held bytes).
        let to_dest = s.to_dest.len() + Self::held_len(s);
        self.to_dest_total = self
            .to_dest_total
            .saturating_sub(s.queued.to_dest)
            .saturating_add(to_dest);
        s.queued.to_dest = to_dest;
        self.from_dest_total = self
            .from_dest_total
            .saturating_sub(s.queued.from_dest)
            .saturating_add(s.from_dest.len());
        s.queued.from_dest = s.from_dest.len();
        // Room after a short write: now, when the total has room, or when
        // pacing allows.
        if s.want_writable {
            if s.phase != Phase::Open || s.dest_eof || !s.visible() {
                s.want_writable = false;
            } else {
                let total_free = self
                    .cfg
                    .dest_buffer_total
                    .saturating_sub(self.from_dest_total);
                let now = s.last_now;
                let (room, paced) = s.write_room(now, total_free);
                if room > 0 {
                    s.want_writable = false;
                    s.events.writable = true;
                } else if total_free == 0 {
                    if !s.queued.waiting {
                        s.queued.waiting = true;
                        self.waiting.push_back(id);
                    }
                } else if paced && s.deadline.is_none() {
                    s.deadline = s.pacer.map(|p| p.next_cell_at());
                }
            }
        }
        // Over: tell the driver once it has taken the last bytes.
        if s.phase == Phase::Closed && s.visible() && !s.close_reported && s.to_dest.is_empty() {
            s.close_reported = true;
            s.events.closed = true;
            s.events.readable = false;
            s.events.writable = false;
            s.deadline = None;
        }
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
        if !s.queued.data && s.can_send_data() {
            s.queued.data = true;
            self.data_q.push_back(id);
        }
        if !s.queued.event && s.has_events() {
            s.queued.event = true;
            self.event_q.push_back(id);
        }
        let driver_done = s.released || !s.announced || (s.close_reported && !s.events.closed);
        if s.phase == Phase::Closed && !s.has_control() && !s.has_events() && driver_done {
            self.remove(id, true);
        }
    }

    /// Forget stream `id`, keeping its late-cell accounting if `keep_half`.
    pub(crate) fn remove(&mut self, id: StreamId, keep_half: bool) {
        let Some(s) = self.detach(id) else {
            return;
        };
        if keep_half && let Some(hc) = s.after_close {
            self.half.insert(id, hc);
        }
    }

    /// Take stream `id` out of the map and its queues, totals and timers.
    pub(crate) fn detach(&mut self, id: StreamId) -> Option<ExitStream> {
        let s = self.streams.remove(&id)?;
        self.to_dest_total = self.to_dest_total.saturating_sub(s.queued.to_dest);
        self.from_dest_total = self.from_dest_total.saturating_sub(s.queued.from_dest);
        if s.queued.ctrl {
            self.ctrl_q.retain(|x| *x != id);
        }
        if s.queued.data {
            self.data_q.retain(|x| *x != id);
        }
        if s.queued.event {
            self.event_q.retain(|x| *x != id);
        }
        if s.queued.waiting {
            self.waiting.retain(|x| *x != id);
        }
        if let Some(d) = s.queued.deadline {
            self.deadlines.remove(&(d, id));
        }
        Some(s)
    }

    /// Give the streams waiting for room in the circuit's total their
    /// `Writable` once there is some.
    pub(crate) fn wake_writers(&mut self) {
        if self.waiting.is_empty() || self.from_dest_total >= self.cfg.dest_buffer_total {
            return;
        }
        for _ in 0..self.waiting.len() {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            if let Some(s) = self.streams.get_mut(&id) {
                s.queued.waiting = false;
            }
            self.refresh(id);
        }
    }
}

/// A request that opens a stream for the driver.
pub(crate) struct Opening {
    /// What it is.
    kind: Kind,
    /// The target is an IP literal.
    literal: bool,
    /// BEGIN flags acted on.
    flags: BeginFlags,
    /// The event for the driver.
    request: Request,
}

/// How a relay that does not exit answers a well-formed BEGIN to `host`:
/// an IP literal fails its policy (`reject *:*`), END EXITPOLICY with the
/// address and C-tor's TTL for a literal (`connection_exit_connect`,
/// `connection_edge_end`); a name is never looked up, END RESOLVEFAILED
/// (`dns_resolve_impl`).
fn non_exit_refusal(host: &Host) -> AnyRelayMsg {
    let ip = match host {
        Host::Ipv4(a) => IpAddr::V4(*a),
        Host::Ipv6(a) => IpAddr::V6(*a),
        Host::Hostname(_) => return end_msg(EndReason::RESOLVEFAILED),
    };
    AnyRelayMsg::End(End::new_exitpolicy(ip, clip_dns_ttl(DEFAULT_DNS_TTL)))
}

/// An END message with `reason`.
pub(crate) fn end_msg(reason: EndReason) -> AnyRelayMsg {
    AnyRelayMsg::End(End::new_with_reason(reason))
}

/// With congestion control, until when the client's crossing DATA, XON and
/// XOFF are dropped quietly after our END.
pub(crate) fn linger(mode: &StreamFlowMode, cfg: &ExitConfig, now: Instant) -> Option<Instant> {
    if mode.is_cc() {
        now.checked_add(cfg.half_closed_linger)
    } else {
        None
    }
}
