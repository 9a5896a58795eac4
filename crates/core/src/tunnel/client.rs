//! [`ClientTunnel`]: the client end of a tunnel, one circuit or a Conflux
//! set, composed from the core's parts. See the [module docs](super).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};
use tor_cell::chancell::msg::AnyChanMsg;
use tor_cell::relaycell::msg::AnyRelayMsg;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::circuit::HopTarget;
use crate::conflux::{ConfluxNonce, ConfluxSet, Delivered};
use crate::conflux_sched::SchedulerChooser;
use crate::ids::{LegKey, StreamId};
use crate::stream::StreamMap;

use super::claim::SentLog;
use super::config::{TunnelConfig, TunnelKind};
use super::error::TunnelError;
use super::event::{LegSnapshot, ReorderSnapshot, TunnelEvent};
use super::leg::{Launches, Leg, LegSpec};
use super::timers::{Timer, TimerTable};

mod failing;
mod inbound;
mod relaunch;
mod settle;

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
    /// Policy (b): whether the tunnel keeps losing legs ([`failing`]).
    failing: failing::Failing,
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
            failing: failing::Failing::default(),
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
            now.checked_add(self.build_timeout(replacement))
                .unwrap_or(now),
        );
        self.legs.push(leg);
        Ok(key)
    }

    /// How long a leg may take to build: the configured (learned)
    /// timeout; for a leg replacing one of a resumable set, at most half
    /// the set's grace, so that a build stuck on a relay that hangs (one
    /// that may have cost the set its lost leg, Braid proposal 001 §3.6)
    /// fails in time for another within the grace (path-spec §2.4's
    /// first timeout is 60 s, the grace 30 s).
    fn build_timeout(&self, replacement: bool) -> Duration {
        let grace = self
            .multipath
            .as_ref()
            .and_then(|m| m.set.resume_grace())
            .filter(|_| replacement);
        match grace {
            Some(g) => self.config.leg_build_timeout.min(g / 2),
            None => self.config.leg_build_timeout,
        }
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
        let id = l.conflux;
        if let Err(e) = l.circuit.handle_cell(now, cell) {
            tracing::debug!("{leg}: {e}");
        }
        // Anything heard keeps a leg alive (Braid proposal 001 §3.6).
        if let (Some(id), Some(m)) = (id, self.multipath.as_mut()) {
            m.set.leg_heard(id, now);
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
                    let replacement = self.leg_mut(key).is_some_and(|l| l.replacement);
                    let after = self.build_timeout(replacement);
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
        if let Some(out) = self.next_ready(now) {
            return Some(out);
        }
        self.pump_sends(now);
        let out = self.next_ready(now);
        if out.is_none() {
            self.release_legs();
        }
        out
    }

    /// A ready cell of the next unblocked leg, round robin (the set
    /// watches what goes on its legs, Braid proposal 001 §3.6).
    fn next_ready(&mut self, now: Instant) -> Option<(LegKey, AnyChanMsg)> {
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
                if let (Some(id), Some(m)) = (leg.conflux, self.multipath.as_mut()) {
                    m.set.leg_sent(id, now);
                }
                return Some((leg.key, cell));
            }
        }
        None
    }

    // ----- Internals -----

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
}
