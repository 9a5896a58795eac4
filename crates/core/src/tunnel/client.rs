//! [`ClientTunnel`]: the client end of a tunnel, one circuit or a Conflux
//! set, composed from the core's parts. See the [module docs](super).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{CryptoRng, RngExt as _, SeedableRng as _};
use tor_cell::chancell::msg::AnyChanMsg;
use tor_cell::relaycell::msg::AnyRelayMsg;
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::circuit::{CircEvent, CloseReason, HopTarget};
use crate::conflux::{ConfluxEvent, ConfluxNonce, ConfluxSet, Delivered, Handled};
use crate::conflux_sched::SchedulerChooser;
use crate::ids::{HopNum, LegKey, StreamId};
use crate::stream::{StreamFlowMode, StreamMap};

use super::claim::SentLog;
use super::config::{TunnelConfig, TunnelKind};
use super::error::TunnelError;
use super::event::{LegSnapshot, ReorderSnapshot, TunnelEvent};
use super::leg::{Launches, Leg, LegSpec};
use super::timers::{Timer, TimerTable};

/// Reports kept of legs that are gone (bounded).
const MAX_LEG_RECORDS: usize = 16;

/// Where the tunnel is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Legs building or linking.
    Building,
    /// Streams may be opened.
    Open,
    /// Closed; legs may still have a DESTROY to send.
    Closed(TunnelError),
}

/// The Conflux part of a tunnel.
#[derive(Debug)]
pub(crate) struct Multipath {
    /// The set.
    pub(crate) set: ConfluxSet,
    /// The scheduler placing what we send.
    pub(crate) chooser: SchedulerChooser,
    /// A stream message no leg could take yet (the scheduler held DATA).
    pub(crate) held: Option<(StreamId, AnyRelayMsg)>,
    /// Recent sends, for what a replacement leg's LINK may claim.
    pub(crate) sent: SentLog,
    /// Messages the set delivered, between taking them and handing them
    /// to the streams (kept for its allocation: this runs per cell).
    pub(crate) delivered: Vec<Delivered>,
    /// Linked legs lost lately: when and through which guard (the last
    /// [`MAX_LEGS`](crate::conflux::MAX_LEGS)), for Braid proposal 001
    /// §5.3's rule on legs killed together.
    pub(crate) losses: VecDeque<(Instant, RsaIdentity)>,
}

/// The client end of a tunnel. See the [module docs](super).
#[derive(Debug)]
pub struct ClientTunnel {
    /// Settings.
    pub(crate) config: TunnelConfig,
    /// Randomness for circuits, nonces and stream ids, seeded from the
    /// caller's generator.
    rng: StdRng,
    /// Live legs and closed legs not released yet, in launch order.
    pub(crate) legs: Vec<Leg>,
    /// The next leg key.
    next_key: u32,
    /// The Conflux set, for a Conflux tunnel.
    pub(crate) multipath: Option<Multipath>,
    /// The streams, once open.
    pub(crate) streams: Option<StreamMap>,
    /// The tunnel's own timers.
    timers: TimerTable,
    /// The relaunch budget.
    launches: Launches,
    /// The exit every leg goes to.
    exit: HopTarget,
    /// Where it is.
    phase: Phase,
    /// Events for the driver.
    events: VecDeque<TunnelEvent>,
    /// Reports of released legs, newest last.
    records: VecDeque<LegSnapshot>,
    /// Where the next `poll_transmit` round starts.
    cursor: usize,
    /// Leg losses, recoveries and migrations ([`super::stats`]).
    pub(crate) counters: super::stats::Counters,
}

impl ClientTunnel {
    /// A tunnel over `legs` (one for a single circuit; the first legs of a
    /// Conflux set, which means to link as many): every leg's CREATE2 is
    /// queued and its build timer armed. All legs go to the same exit.
    pub fn new<R: CryptoRng + ?Sized>(
        mut config: TunnelConfig,
        legs: Vec<LegSpec>,
        rng: &mut R,
        now: Instant,
    ) -> Result<Self, TunnelError> {
        let exit = legs
            .first()
            .and_then(|l| l.hops.last())
            .cloned()
            .ok_or_else(|| TunnelError::BadLeg("no legs".into()))?;
        if legs
            .iter()
            .any(|l| l.hops.last().map(|h| h.rsa_id) != Some(exit.rsa_id))
        {
            return Err(TunnelError::BadLeg("legs to different exits".into()));
        }
        let mut rng = StdRng::from_rng(rng);
        let multipath = match &mut config.kind {
            TunnelKind::Single => {
                if legs.len() != 1 {
                    return Err(TunnelError::BadLeg("a single circuit has one leg".into()));
                }
                None
            }
            TunnelKind::Conflux { conflux, scheduler } => {
                conflux.num_legs = legs.len();
                let nonce = ConfluxNonce::random(&mut rng);
                let mut set = ConfluxSet::new_client(nonce, *conflux);
                if let Some(params) = config.resume {
                    set.offer_resumption(params);
                }
                Some(Multipath {
                    set,
                    chooser: SchedulerChooser::new(scheduler.build()),
                    held: None,
                    sent: SentLog::default(),
                    delivered: Vec::new(),
                    losses: VecDeque::new(),
                })
            }
        };
        let launches = Launches::new(config.launch_budget(), legs.len(), config.relaunch_backoff);
        let mut timers = TimerTable::default();
        timers.set(
            Timer::Open,
            now.checked_add(config.open_timeout).unwrap_or(now),
        );
        let mut tunnel = Self {
            config,
            rng,
            legs: Vec::new(),
            next_key: 0,
            multipath,
            streams: None,
            timers,
            launches,
            exit,
            phase: Phase::Building,
            events: VecDeque::new(),
            records: VecDeque::new(),
            cursor: 0,
            counters: super::stats::Counters::default(),
        };
        for spec in legs {
            tunnel.launch(spec, false, now)?;
        }
        Ok(tunnel)
    }

    /// Start a leg's circuit.
    fn launch(
        &mut self,
        spec: LegSpec,
        replacement: bool,
        now: Instant,
    ) -> Result<LegKey, TunnelError> {
        let key = LegKey(self.next_key);
        self.next_key = self.next_key.wrapping_add(1);
        let leg = Leg::launch(
            key,
            spec,
            &self.config.circuit,
            replacement,
            &mut self.rng,
            now,
        )?;
        self.timers.set(
            Timer::LegBuild(key),
            now.checked_add(self.config.leg_build_timeout)
                .unwrap_or(now),
        );
        self.legs.push(leg);
        Ok(key)
    }

    // ----- State -----

    /// True once streams may be opened, until the tunnel closes.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// True once the tunnel has closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// Why the tunnel closed.
    pub fn close_error(&self) -> Option<&TunnelError> {
        match &self.phase {
            Phase::Closed(e) => Some(e),
            _ => None,
        }
    }

    /// Closed, and every leg released: the driver is done.
    pub fn is_finished(&self) -> bool {
        self.is_closed() && self.legs.is_empty()
    }

    /// A Conflux set.
    pub fn is_conflux(&self) -> bool {
        self.multipath.is_some()
    }

    /// Streams held (any state).
    pub fn stream_count(&self) -> usize {
        self.streams.as_ref().map_or(0, StreamMap::len)
    }

    /// Leg launches so far, first legs included, and the budget.
    pub fn launches(&self) -> (usize, usize) {
        (self.launches.launched, self.launches.budget)
    }

    /// Every leg: live ones, then (bounded) records of released ones.
    pub fn leg_snapshots(&self) -> Vec<LegSnapshot> {
        let mut out: Vec<LegSnapshot> = self.records.iter().cloned().collect();
        out.extend(self.legs.iter().map(|l| self.snapshot(l)));
        out.sort_by_key(|s| s.leg);
        out
    }

    /// The reorder queue of a Conflux set.
    pub fn reorder_snapshot(&self) -> Option<ReorderSnapshot> {
        let set = &self.multipath.as_ref()?.set;
        Some(ReorderSnapshot {
            bytes: set.reorder_bytes(),
            peak_bytes: set.reorder_peak_bytes(),
            limit_bytes: set.reorder_limit().max_bytes,
            waiting: set.reorder_waiting(),
        })
    }

    /// The Conflux set, for figures.
    pub fn conflux_set(&self) -> Option<&ConfluxSet> {
        self.multipath.as_ref().map(|m| &m.set)
    }

    /// A leg's report with the set's figures.
    fn snapshot(&self, leg: &Leg) -> LegSnapshot {
        let mut s = leg.snapshot();
        if let (Some(id), Some(m)) = (leg.conflux, &self.multipath) {
            s.stats = m.set.leg_stats(id);
            s.link_rtt = m.set.leg_rtt(id);
        }
        s
    }

    // ----- Inputs -----

    /// A cell from `leg`'s channel.
    pub fn handle_cell(&mut self, leg: LegKey, cell: AnyChanMsg, now: Instant) {
        let Some(l) = self.leg_mut(leg) else {
            return;
        };
        if let Err(e) = l.circuit.handle_cell(now, cell) {
            tracing::debug!("{leg}: {e}");
        }
        self.settle(now);
    }

    /// `leg`'s channel closed or dropped the circuit: the leg is gone
    /// without a DESTROY, and its queued cells are dropped.
    pub fn handle_leg_gone(&mut self, leg: LegKey, now: Instant) {
        let Some(l) = self.leg_mut(leg) else {
            return;
        };
        l.io_gone = true;
        l.circuit.handle_channel_closed();
        self.settle(now);
    }

    /// The build timeout of the legs launched from now on (path-spec §2.4:
    /// the driver keeps the learned estimate and passes it in; legs
    /// already building keep theirs).
    pub fn set_leg_build_timeout(&mut self, timeout: Duration) {
        self.config.leg_build_timeout = timeout;
    }

    /// Whether `leg`'s channel queue is full: while it is, its cells wait
    /// here and congestion control counts the leg as blocked (proposal 324
    /// §3.3).
    pub fn set_leg_blocked(&mut self, leg: LegKey, blocked: bool) {
        if let Some(l) = self.leg_mut(leg) {
            l.blocked = blocked;
            l.circuit.set_blocked_on_channel(blocked);
        }
    }

    /// A new leg, as asked for by [`TunnelEvent::LegWanted`].
    pub fn add_leg(&mut self, spec: LegSpec, now: Instant) -> Result<LegKey, TunnelError> {
        if self.launches.outstanding == 0 || self.is_closed() {
            return Err(TunnelError::LegNotWanted);
        }
        if spec.hops.last().map(|h| h.rsa_id) != Some(self.exit.rsa_id) {
            return Err(TunnelError::BadLeg("not to the tunnel's exit".into()));
        }
        self.launches.answered();
        let key = match self.launch(spec, true, now) {
            Ok(k) => k,
            Err(e) => {
                self.relaunch_or_fail(now, e.clone());
                self.settle(now);
                return Err(e);
            }
        };
        self.settle(now);
        Ok(key)
    }

    /// The driver could not provide a leg asked for by
    /// [`TunnelEvent::LegWanted`] (no path, or its guard unreachable).
    pub fn leg_unavailable(&mut self, reason: String, now: Instant) {
        if self.launches.outstanding == 0 {
            return;
        }
        self.launches.answered();
        self.relaunch_or_fail(now, TunnelError::LegUnavailable(reason));
        self.settle(now);
    }

    /// Time passed: fire due timers (open, leg builds, relaunch backoff,
    /// the set's LINKED deadlines, the streams' connect deadlines).
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.take_expired(now) {
            match timer {
                Timer::Open => {
                    if self.phase == Phase::Building {
                        self.close_with(TunnelError::OpenTimeout(self.config.open_timeout));
                    }
                }
                Timer::Relaunch => self.ask_for_leg(),
                Timer::LegBuild(key) => {
                    let after = self.config.leg_build_timeout;
                    if let Some(l) = self.leg_mut(key).filter(|l| l.building()) {
                        let hops_done = l.hops_done;
                        l.close_on(TunnelError::BuildTimeout {
                            leg: key,
                            after,
                            hops_done,
                        });
                    }
                }
            }
            // Each timer's consequences before the next timer is judged.
            self.settle(now);
        }
        if let Some(m) = self.multipath.as_mut() {
            m.set.handle_timeout(now);
        }
        if let Some(s) = self.streams.as_mut() {
            s.handle_timeout(now);
        }
        self.settle(now);
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let set = self.multipath.as_ref().and_then(|m| m.set.poll_timeout());
        let streams = self.streams.as_ref().and_then(StreamMap::poll_timeout);
        self.timers.next([set, streams])
    }

    /// Close the tunnel: every leg's circuit sends its DESTROY, every
    /// stream ends.
    pub fn close(&mut self, now: Instant) {
        self.close_with(TunnelError::Closed);
        self.settle(now);
    }

    // ----- Outputs -----

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TunnelEvent> {
        self.events.pop_front()
    }

    /// The next cell to send, and the leg whose channel takes it. Legs
    /// take turns; a blocked leg's cells wait. Stream data is taken as the
    /// legs have room.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(LegKey, AnyChanMsg)> {
        if let Some(out) = self.next_ready() {
            return Some(out);
        }
        self.pump_sends(now);
        let out = self.next_ready();
        if out.is_none() {
            self.release_legs();
        }
        out
    }

    /// A ready cell of the next unblocked leg, round robin.
    fn next_ready(&mut self) -> Option<(LegKey, AnyChanMsg)> {
        let n = self.legs.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let Some(leg) = self.legs.get_mut(i) else {
                continue;
            };
            if leg.blocked || leg.io_gone {
                continue;
            }
            if let Some(cell) = leg.circuit.poll_transmit() {
                self.cursor = i + 1;
                return Some((leg.key, cell));
            }
        }
        None
    }

    // ----- Internals -----

    /// The leg `key`.
    pub(crate) fn leg_mut(&mut self, key: LegKey) -> Option<&mut Leg> {
        self.legs.iter_mut().find(|l| l.key == key)
    }

    /// Feed everything through until nothing moves: circuit events into
    /// the set and the streams, the set's output onto legs, stream events
    /// out, stream data into legs; release legs that are done.
    pub(crate) fn settle(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            for i in 0..self.legs.len() {
                moved |= self.leg_events(i, now);
            }
            moved |= self.drain_set(now);
            if !moved {
                break;
            }
        }
        self.stream_events();
        self.pump_sends(now);
        self.pace_legs(now);
        self.release_legs();
    }

    /// Hold back or release each Conflux leg's circuit SENDMEs as the set
    /// says ([`crate::conflux::ConfluxSet::sendme_hold`]: the legs ahead of
    /// a gap wait while the reorder queue is over half full).
    fn pace_legs(&mut self, now: Instant) {
        let Some(m) = self.multipath.as_ref() else {
            return;
        };
        for l in &mut self.legs {
            let Some(id) = l.conflux else { continue };
            let hold = m.set.sendme_hold(id);
            if hold != l.sendme_hold && l.built && !l.closed {
                l.sendme_hold = hold;
                if let Err(e) = l.circuit.set_sendme_hold(l.last_hop, hold, now) {
                    tracing::debug!("{}: cannot release SENDMEs: {e}", l.key);
                }
            }
        }
    }

    /// Leg `i`'s circuit events. True if there were any.
    fn leg_events(&mut self, i: usize, now: Instant) -> bool {
        let mut any = false;
        while let Some(ev) = self.legs.get_mut(i).and_then(|l| l.circuit.poll_event()) {
            any = true;
            match ev {
                CircEvent::HopAdded { .. } => {
                    if let Some(l) = self.legs.get_mut(i) {
                        l.hops_done += 1;
                    }
                }
                CircEvent::Built { n_hops } => self.on_built(i, n_hops, now),
                CircEvent::BuildFailed { reason } => self.on_build_failed(i, reason, now),
                CircEvent::Closed { reason } => self.on_closed(i, reason, now),
                CircEvent::StreamMsg { hop, stream, msg } => {
                    self.on_msg(i, hop, Some(stream), msg, now);
                }
                CircEvent::CircMsg { hop, msg } => self.on_msg(i, hop, None, msg, now),
            }
        }
        any
    }

    /// Leg `i`'s circuit is built.
    fn on_built(&mut self, i: usize, n_hops: usize, now: Instant) {
        let conflux = self.multipath.is_some();
        let closed = self.is_closed();
        let Some(leg) = self.legs.get_mut(i) else {
            return;
        };
        leg.built = true;
        leg.last_hop = HopNum(u8::try_from(n_hops.saturating_sub(1)).unwrap_or(0));
        let key = leg.key;
        let cc = leg.circuit.cc_enabled(leg.last_hop);
        let path = leg.path.clone();
        let took = now.saturating_duration_since(leg.launched_at);
        self.timers.cancel(Timer::LegBuild(key));
        if closed {
            return;
        }
        self.events.push_back(TunnelEvent::LegBuilt {
            leg: key,
            path,
            took,
        });
        if !conflux {
            self.open_streams(cc);
            return;
        }
        if !cc {
            // prop 329 §2.2: every leg needs congestion control.
            if let Some(l) = self.legs.get_mut(i) {
                l.close_on(TunnelError::NoCongestionControl { leg: key });
            }
            return;
        }
        self.link_built_legs(now);
    }

    /// The tunnel is open: streams may start, with XON/XOFF when the exit
    /// hop runs congestion control, else fixed windows (proposal 324 §4).
    fn open_streams(&mut self, congestion_controlled: bool) {
        if self.phase != Phase::Building {
            return;
        }
        let mode = if congestion_controlled {
            StreamFlowMode::XonXoff {
                params: self.config.flow.clone(),
                onion: false,
            }
        } else {
            StreamFlowMode::Windowed
        };
        let first: u16 = self.rng.random();
        self.streams = Some(StreamMap::with_first_id(
            self.config.streams.clone(),
            mode,
            first,
        ));
        self.phase = Phase::Open;
        self.timers.cancel(Timer::Open);
        self.events.push_back(TunnelEvent::Opened);
    }

    /// Leg `i`'s circuit closed before it was built.
    fn on_build_failed(&mut self, i: usize, reason: CloseReason, now: Instant) {
        let Some(leg) = self.legs.get_mut(i) else {
            return;
        };
        leg.closed = true;
        let key = leg.key;
        let error = leg.close_error.take().unwrap_or(TunnelError::BuildFailed {
            leg: key,
            hops_done: leg.hops_done,
            reason,
        });
        let path = leg.path.clone();
        self.timers.cancel(Timer::LegBuild(key));
        if self.is_closed() {
            return;
        }
        self.events.push_back(TunnelEvent::LegFailed {
            leg: key,
            path,
            error: error.clone(),
        });
        if self.multipath.is_none() {
            self.close_with(error);
        } else {
            self.relaunch_or_fail(now, error);
        }
    }

    /// Leg `i`'s circuit closed after it was built.
    fn on_closed(&mut self, i: usize, reason: CloseReason, now: Instant) {
        let Some(leg) = self.legs.get_mut(i) else {
            return;
        };
        leg.closed = true;
        let key = leg.key;
        let error = leg
            .close_error
            .take()
            .unwrap_or(TunnelError::CircuitClosed { leg: key, reason });
        let path = leg.path.clone();
        let info = leg.closed_info();
        let id = leg.conflux;
        if self.is_closed() {
            return;
        }
        let Some(m) = self.multipath.as_mut() else {
            self.close_with(error);
            return;
        };
        let linked = id.is_some_and(|id| m.set.legs().any(|(l, linked)| l == id && linked));
        // The highest sequence number received on any leg, the lost one
        // too: issue 15's recovery time counts data past it.
        let seen = m
            .set
            .legs()
            .filter_map(|(l, _)| m.set.leg_stats(l))
            .map(|s| s.last_seq_recv)
            .fold(m.set.last_seq_delivered(), u64::max);
        if let Some(id) = id {
            // prop 329 §2.4.3: the set goes on only if no data was lost
            // with the leg.
            if let Err(e) = m.set.leg_closed(id, info, now) {
                // The leg's own error (a protocol violation of the exit,
                // say) is told here: the tunnel closes on the set's rule.
                tracing::info!("{error}; the set cannot go on without it");
                self.close_with(TunnelError::Conflux(e));
                return;
            }
        }
        if let Some(l) = self.legs.get_mut(i) {
            l.was_linked = linked;
        }
        if linked && let Some(e) = killed_together(m, path.first().copied(), now) {
            self.close_with(e);
            return;
        }
        if linked {
            self.counters.leg_lost(now, seen);
        }
        let ev = if linked {
            TunnelEvent::LegLost {
                leg: key,
                path,
                error: error.clone(),
            }
        } else {
            TunnelEvent::LegFailed {
                leg: key,
                path,
                error: error.clone(),
            }
        };
        self.events.push_back(ev);
        self.relaunch_or_fail(now, error);
    }

    /// A relay message from `hop` of leg `i`.
    fn on_msg(
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
    fn drain_set(&mut self, now: Instant) -> bool {
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
                    self.open_streams(true);
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
                }
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
        // Data flows again once data past the loss is delivered with
        // nothing held behind a gap (issue 15's recovery time).
        if data && self.reorder_snapshot().is_some_and(|r| r.waiting == 0) {
            let seq = self
                .multipath
                .as_ref()
                .map_or(0, |m| m.set.last_seq_delivered());
            self.counters.delivered(now, seq);
        }
        if let Some(m) = self.multipath.as_mut() {
            m.delivered = delivered;
        }
        if let Some(e) = closed {
            self.close_with(TunnelError::Conflux(e));
        }
        moved
    }

    /// Send LINK on built legs that have none yet. While the set is being
    /// built, only once no leg is building and no relaunch is pending (the
    /// set counts as linked once every leg launched so far links, prop 329
    /// §2.4.2, so a fast leg would otherwise link a one-leg set); a new leg
    /// of a linked set at once, claiming only what the exit has surely
    /// delivered ([`super::claim`]).
    fn link_built_legs(&mut self, now: Instant) {
        let pending = self.launches.outstanding > 0 || self.timers.is_set(Timer::Relaunch);
        let building = self.legs.iter().any(Leg::building);
        let Some(m) = self.multipath.as_mut() else {
            return;
        };
        if m.set.is_closed() {
            return;
        }
        let linked = m.set.is_linked();
        if !linked && (pending || building) {
            return;
        }
        let slowest = self
            .legs
            .iter()
            .filter_map(|l| l.conflux.and_then(|id| m.set.leg_rtt(id)))
            .max()
            .unwrap_or(Duration::ZERO);
        let delivered = m.sent.delivered(now, slowest);
        for leg in self
            .legs
            .iter_mut()
            .filter(|l| l.built && !l.closed && l.conflux.is_none())
        {
            // A resumable set's new leg claims what it really sent: the
            // exit resends from what it says it has (Braid proposal 001
            // §3.3); C-tor's exits need the claim of `super::claim`.
            let added = if linked && !m.set.is_resumable() {
                m.set.add_leg_delivered(now, delivered)
            } else {
                m.set.add_leg(now)
            };
            match added {
                Ok(id) => {
                    if leg.replacement {
                        tracing::debug!(
                            "conflux: LINK for new {} (last_seqno_sent {delivered})",
                            leg.key
                        );
                    }
                    leg.conflux = Some(id);
                }
                Err(e) => leg.close_on(TunnelError::Conflux(e)),
            }
        }
    }

    /// After a leg failed or closed: ask for a new one if the budget
    /// allows (at once the first time, then with backoff), else close the
    /// tunnel if nothing is left of it. A single circuit is never
    /// relaunched.
    fn relaunch_or_fail(&mut self, now: Instant, error: TunnelError) {
        if self.is_closed() || self.multipath.is_none() {
            return;
        }
        // Braid proposal 001 §5.3: past the resumptions §3.5 allows, the
        // client stops resuming and closes the set (its next set waits and
        // avoids its middles: `super::close`).
        if let Some(m) = self.multipath.as_mut()
            && !m.set.may_resume(now)
        {
            let e = m.set.stop_resuming();
            self.close_with(TunnelError::Conflux(e));
            return;
        }
        if self.launches.can_launch() {
            if !self.timers.is_set(Timer::Relaunch) {
                let at = self.launches.next_at(now);
                if at <= now {
                    self.ask_for_leg();
                } else {
                    self.timers.set(Timer::Relaunch, at);
                }
            }
            return;
        }
        let live = self.legs.iter().any(|l| !l.closed);
        let waiting = self.launches.outstanding > 0 || self.timers.is_set(Timer::Relaunch);
        if !live && !waiting {
            tracing::debug!("no leg left after: {error}");
            self.close_with(TunnelError::LaunchBudgetSpent {
                launches: self.launches.launched,
                budget: self.launches.budget,
            });
        } else if self.phase == Phase::Building {
            // The legs left may now link without waiting for this one.
            self.link_built_legs(now);
        }
    }

    /// Ask the driver for a new leg (prop 329 §2.4.3, §2.4.4): to the
    /// set's exit, with no guard or middle another live leg uses (§2.2).
    fn ask_for_leg(&mut self) {
        if self.is_closed() || !self.launches.can_launch() {
            return;
        }
        self.launches.take();
        let exit = self.exit.rsa_id;
        let mut avoid: Vec<RsaIdentity> = Vec::new();
        for id in self
            .legs
            .iter()
            .filter(|l| !l.closed)
            .flat_map(|l| l.path.iter())
        {
            if *id != exit && !avoid.contains(id) {
                avoid.push(*id);
            }
        }
        self.events.push_back(TunnelEvent::LegWanted {
            exit: self.exit.clone(),
            avoid,
        });
    }

    /// Close the tunnel on `error`: every leg's circuit closes (sending its
    /// DESTROY), every stream ends.
    pub(crate) fn close_with(&mut self, error: TunnelError) {
        if self.is_closed() {
            return;
        }
        tracing::debug!("tunnel closes: {error}");
        for leg in &mut self.legs {
            leg.close_on(error.clone());
        }
        if let Some(s) = self.streams.as_mut() {
            s.handle_circuit_closed();
        }
        if let Some(m) = self.multipath.as_mut() {
            m.held = None;
        }
        self.timers = TimerTable::default();
        self.phase = Phase::Closed(error.clone());
        self.stream_events();
        self.events.push_back(TunnelEvent::Closed { error });
    }

    /// Stream events out.
    fn stream_events(&mut self) {
        let Some(streams) = self.streams.as_mut() else {
            return;
        };
        while let Some(ev) = streams.poll_event() {
            self.events.push_back(TunnelEvent::Stream(ev));
        }
    }

    /// Drop legs whose circuit closed and whose last cell went out.
    fn release_legs(&mut self) {
        while let Some(i) = self.legs.iter().position(Leg::releasable) {
            let leg = self.legs.remove(i);
            let mut s = self.snapshot(&leg);
            s.open = false;
            if self.records.len() >= MAX_LEG_RECORDS {
                self.records.pop_front();
            }
            self.records.push_back(s);
            self.timers.cancel(Timer::LegBuild(leg.key));
            self.events
                .push_back(TunnelEvent::LegReleased { leg: leg.key });
            if self.cursor > i {
                self.cursor -= 1;
            }
        }
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

/// Braid proposal 001 §5.3, when not to resume: a linked leg of a
/// resumable set was lost through `guard`; if no linked leg is left and
/// every leg lost in the last second (two or more) went through that same
/// guard, the guard is the likely killer and the set closes instead of
/// resuming (a re-link would confirm to it that the circuits were in use,
/// prop 329 §4.3).
fn killed_together(
    m: &mut Multipath,
    guard: Option<RsaIdentity>,
    now: Instant,
) -> Option<TunnelError> {
    let guard = guard?;
    if !m.set.is_resumable() {
        return None;
    }
    if m.losses.len() >= crate::conflux::MAX_LEGS {
        m.losses.pop_front();
    }
    m.losses.push_back((now, guard));
    if m.set.linked_legs() > 0 {
        return None;
    }
    same_guard_burst(&m.losses, &guard, now)
        .map(|legs| TunnelError::LegsKilledTogether { guard, legs })
}

/// How many legs were lost within [`KILLED_TOGETHER_WITHIN`] of `now`, if
/// two or more and every one through `guard`.
fn same_guard_burst(
    losses: &VecDeque<(Instant, RsaIdentity)>,
    guard: &RsaIdentity,
    now: Instant,
) -> Option<usize> {
    let mut n = 0;
    for (t, g) in losses {
        if now.saturating_duration_since(*t) <= KILLED_TOGETHER_WITHIN {
            if g != guard {
                return None;
            }
            n += 1;
        }
    }
    (n >= 2).then_some(n)
}

/// Legs lost this close together count as killed together (Braid
/// proposal 001 §5.3).
const KILLED_TOGETHER_WITHIN: Duration = Duration::from_secs(1);

#[cfg(test)]
mod killed_together_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_burst_through_one_guard_counts_and_any_other_does_not() {
        let now = Instant::now();
        let (a, b) = (RsaIdentity::from([1; 20]), RsaIdentity::from([2; 20]));
        let ms = Duration::from_millis;
        let losses = |v: &[(u64, RsaIdentity)]| -> VecDeque<_> {
            v.iter().map(|(ago, g)| (now - ms(*ago), *g)).collect()
        };
        // Two legs through guard A within a second.
        assert_eq!(
            same_guard_burst(&losses(&[(300, a), (0, a)]), &a, now),
            Some(2)
        );
        // One leg only: a single loss is no burst.
        assert_eq!(same_guard_burst(&losses(&[(0, a)]), &a, now), None);
        // Different guards: resume.
        assert_eq!(
            same_guard_burst(&losses(&[(300, b), (0, a)]), &a, now),
            None
        );
        // Same guard, but more than a second apart.
        assert_eq!(
            same_guard_burst(&losses(&[(1500, a), (0, a)]), &a, now),
            None
        );
        // An old loss elsewhere does not matter.
        assert_eq!(
            same_guard_burst(&losses(&[(5000, b), (200, a), (0, a)]), &a, now),
            Some(2)
        );
    }
}
