//! The Conflux exit role of a [`RelayNode`] (proposal 329): circuits that
//! end here link into sets, and each set's streams live in one
//! [`ExitStreamMap`] whose cells a Braid scheduler places on the legs.
//!
//! - Linking (prop 329 §2.4.2; C-tor `conflux_process_link`): a
//!   CONFLUX_LINK is taken only on a circuit that ends here, negotiated
//!   congestion control, and carried no stream message before it
//!   (TROVE-2026-025). Its nonce names the set: the first LINK with a nonce
//!   makes one, later ones add legs (to a live set too: a client replacing
//!   a lost leg), found by all 32 bytes (TROVE-2026-004), at most
//!   [`ConfluxExitConfig::max_legs`]. The exit links a leg when it sends
//!   LINKED, so there is no pool of half-linked sets to bound or time out;
//!   a LINKED_ACK late by [`ConfluxExitConfig::linked_ack_timeout`] closes
//!   its leg.
//! - Streams: the set sequences BEGIN, DATA, END, ... from every leg into
//!   one order (its bounded reorder queue) and hands them to the set's map;
//!   the map's answers and downloads go out through the set's scheduler
//!   ([`pump_set`](RelayNode::pump_set)), which sees the real backlog: the
//!   destinations' bytes waiting in the map.
//! - Scheduling (prop 329 §3): the client's desired UX picks it
//!   ([`scheduler_for`]) unless the operator fixed one.
//! - Ending: a leg that closes leaves the set, which survives it unless
//!   C-tor's leg-loss rules say data was lost ([`ConfluxSet::leg_closed`]);
//!   a set that closes ends every stream once and closes every leg,
//!   whichever went first (TROVE-2026-016/026).
//! - Memory: each set's reorder queue, its streams' buffers and a held
//!   cell count toward the node's limit; under pressure the sets loaded
//!   longest close first (prop 329 §4.2.2, beside the node's circuits).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tor_cell::chancell::msg::DestroyReason;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxLink};

use super::{NodeEvent, Peer, RelayNode};
use crate::conflux::ext::LinkExt;
use crate::conflux::{
    ConfluxConfig, ConfluxError, ConfluxEvent, ConfluxSet, Handled, LegCc, LegClosedInfo, LinkInfo,
    MAX_LEGS, ResumeParams, SendOutcome, V1DesiredUx, is_multiplexed,
};
use crate::conflux_sched::{SchedulerChooser, SchedulerKind};
use crate::exit::{ExitConfig, ExitStreamMap, PREV_QUEUE_TARGET};
use crate::ids::{CircKey, EdgeKey, LegId, SetKey, StreamId};
use crate::stream::StreamFlowMode;
use crate::tunnel::LEG_RESERVE;

/// How long the client's LINKED_ACK may take after our LINKED by default.
/// C-tor clients answer at once; the leg's RTT is all it measures.
pub const LINKED_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the Conflux exit role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfluxExitConfig {
    /// The scheduler for every set's downloads whatever its client asks
    /// (`None`: by the client's desired UX, [`scheduler_for`]).
    pub scheduler: Option<SchedulerKind>,
    /// Most legs per set (C-tor `cfx_max_legs_set`, 8); clamped to 1..=8.
    pub max_legs: usize,
    /// How long after LINKED the LINKED_ACK may take.
    pub linked_ack_timeout: Duration,
    /// Resumption offered to clients that ask for it in their LINK
    /// (Braid proposal 001; advertise `BraidResume=1` with it). `None`:
    /// LINKs that ask get a plain LINKED, as from C-tor.
    pub resume: Option<ResumeParams>,
    /// Misbehave on purpose in every set (tests only, [`super::hostile`]).
    #[cfg(feature = "hostile")]
    pub hostile: Option<super::hostile::Hostile>,
}

impl Default for ConfluxExitConfig {
    fn default() -> Self {
        Self {
            scheduler: None,
            max_legs: MAX_LEGS,
            linked_ack_timeout: LINKED_ACK_TIMEOUT,
            resume: None,
            #[cfg(feature = "hostile")]
            hostile: None,
        }
    }
}

/// The scheduler a client's desired UX asks for (prop 329 §3.1). C-tor
/// runs LowRTT for HIGH_THROUGHPUT and NO_OPINION and MinRTT otherwise;
/// Braid places throughput downloads with ECF, which uses a slower leg only
/// when it delivers before the fastest would, and bounds the client's
/// reorder memory for the LOW_MEM ones by keeping to the lowest-RTT leg.
pub fn scheduler_for(ux: V1DesiredUx) -> SchedulerKind {
    match ux {
        V1DesiredUx::MIN_LATENCY | V1DesiredUx::LOW_MEM_LATENCY => SchedulerKind::MinRtt,
        V1DesiredUx::LOW_MEM_THROUGHPUT => SchedulerKind::LowRtt,
        _ => SchedulerKind::Ecf,
    }
}

/// Figures of one set, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFigures {
    /// Linked legs.
    pub legs: usize,
    /// The circuits of its legs.
    pub circuits: Vec<CircKey>,
    /// The scheduler placing its downloads.
    pub scheduler: &'static str,
    /// Bytes in its reorder queue (uploads out of order).
    pub reorder_bytes: usize,
    /// The most its reorder queue held.
    pub reorder_peak_bytes: usize,
    /// Destination bytes waiting to be sent (the download backlog).
    pub backlog_bytes: usize,
    /// Its streams.
    pub streams: usize,
    /// Multiplexed messages sent and delivered in order.
    pub last_seq_sent: u64,
    /// Multiplexed messages received in order.
    pub last_seq_delivered: u64,
    /// Closed (its legs are closing).
    pub closed: bool,
    /// Resumable (Braid proposal 001).
    pub resumable: bool,
    /// Times a lost leg was replaced and resent to.
    pub resumptions: usize,
    /// Messages resent.
    pub resent: u64,
    /// Bytes in its retransmit buffer.
    pub retransmit_bytes: usize,
    /// The most its retransmit buffer held.
    pub retransmit_peak_bytes: usize,
    /// What its legs' congestion windows allowed at that peak (Braid
    /// proposal 001 §3.2).
    pub retransmit_peak_bound_bytes: usize,
}

/// One Conflux set at the exit.
#[derive(Debug)]
pub(in crate::relay) struct ExitSet {
    /// The set, exit role.
    pub(super) set: ConfluxSet,
    /// Its scheduler.
    chooser: SchedulerChooser,
    /// Which one.
    kind: SchedulerKind,
    /// The operator fixed the scheduler.
    fixed: bool,
    /// Its streams.
    pub(super) streams: ExitStreamMap,
    /// A DATA message the scheduler held back (no leg could send).
    held: Option<(StreamId, AnyRelayMsg)>,
    /// Its legs' circuits.
    legs: BTreeMap<LegId, CircKey>,
    /// The deadline filed in [`RelayNode::timers`] for it.
    deadline: Option<Instant>,
    /// Its bytes in [`RelayNode::queued_bytes`].
    pub(super) accounted: usize,
    /// Since when it has had bytes queued (the age the memory limit
    /// closes sets by).
    pub(super) loaded_since: Option<Instant>,
    /// Its streams were told it closed.
    streams_closed: bool,
    /// Its progress toward its hostile turn ([`super::hostile`]).
    #[cfg(feature = "hostile")]
    hostile: super::hostile::HostileState,
}

impl ExitSet {
    /// Close it on `e` (its legs close when the node next drives it).
    pub(super) fn close(&mut self, e: ConfluxError) {
        self.set.close(e);
    }
}

impl RelayNode {
    /// Take the Conflux exit role (`None`: a CONFLUX_LINK closes its
    /// circuit, as C-tor does with Conflux off). Needs the exit role
    /// ([`Self::set_exit`]). Sets already linked go on.
    pub fn set_conflux(&mut self, cfg: Option<ConfluxExitConfig>) {
        self.conflux = cfg;
    }

    /// Whether CONFLUX_LINK is answered.
    pub fn is_conflux_exit(&self) -> bool {
        self.conflux.is_some() && self.exit.is_some()
    }

    /// The open sets.
    pub fn sets(&self) -> impl Iterator<Item = SetKey> + '_ {
        self.sets.keys().copied()
    }

    /// The set circuit `circ` is a leg of.
    pub fn set_of(&self, circ: CircKey) -> Option<SetKey> {
        self.circuits.get(&circ)?.leg.map(|(s, _)| s)
    }

    /// Figures of set `set`.
    pub fn set_figures(&self, set: SetKey) -> Option<SetFigures> {
        let es = self.sets.get(&set)?;
        Some(SetFigures {
            legs: es.set.linked_legs(),
            circuits: es.legs.values().copied().collect(),
            scheduler: es.kind.name(),
            reorder_bytes: es.set.reorder_bytes(),
            reorder_peak_bytes: es.set.reorder_peak_bytes(),
            backlog_bytes: es.streams.buffered().1,
            streams: es.streams.len(),
            last_seq_sent: es.set.last_seq_sent(),
            last_seq_delivered: es.set.last_seq_delivered(),
            closed: es.set.is_closed(),
            resumable: es.set.is_resumable(),
            resumptions: es.set.resumptions(),
            resent: es.set.resent(),
            retransmit_bytes: es.set.retransmit_bytes(),
            retransmit_peak_bytes: es.set.retransmit_peak_bytes(),
            retransmit_peak_bound_bytes: es.set.retransmit_peak_bound_bytes(),
        })
    }

    /// A CONFLUX_LINK reached us as circuit `key`'s last hop, with Braid's
    /// extensions `ext` (RESUME_CAP, LEG) or none.
    pub(super) fn link(&mut self, key: CircKey, link: &ConfluxLink, ext: &LinkExt, now: Instant) {
        let Some(cfg) = self.conflux.clone() else {
            // C-tor `conflux_process_link` with Conflux off: TORPROTOCOL.
            self.refuse_link(key, &ConfluxError::CannotAddLeg("we are no Conflux exit"));
            return;
        };
        let Some(nc) = self.circuits.get(&key) else {
            return;
        };
        if nc.circ.has_next() {
            self.refuse_link(key, &ConfluxError::LinkNotAtLastHop);
            return;
        }
        if nc.circ.cc_sendme_inc().is_none() {
            self.refuse_link(key, &ConfluxError::LinkWithoutCongestionControl);
            return;
        }
        let had_streams = nc.streams.is_some();
        let client_first_hop = nc
            .prev
            .and_then(|(chan, _)| self.channels.get(&chan))
            .is_some_and(|c| c.peer == Peer::Client);
        let info = match LinkInfo::from_link(link) {
            Ok(i) => i,
            Err(e) => {
                self.refuse_link(key, &e);
                return;
            }
        };
        let existing = self
            .set_nonces
            .get(info.nonce.as_bytes())
            .copied()
            .filter(|s| {
                self.sets
                    .get(s)
                    .is_some_and(|es| es.set.nonce().ct_eq(&info.nonce) && !es.set.is_closed())
            });
        let (set, new) = match existing {
            Some(s) => (s, false),
            None => {
                let Some(es) = self.new_set(&cfg, &info, client_first_hop) else {
                    self.refuse_link(key, &ConfluxError::CannotAddLeg("we are no exit"));
                    return;
                };
                let s = SetKey(self.next_set);
                self.next_set += 1;
                self.sets.insert(s, es);
                (s, true)
            }
        };
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        match es.set.accept_link_with(link, ext, had_streams, now) {
            Ok(leg) => {
                es.legs.insert(leg, key);
                if !es.fixed
                    && let Some(ux) = es.set.peer_ux()
                    && scheduler_for(ux) != es.kind
                {
                    es.kind = scheduler_for(ux);
                    es.chooser = SchedulerChooser::new(es.kind.build());
                }
                if new {
                    self.set_nonces.insert(*info.nonce.as_bytes(), set);
                    self.stats.sets_created += 1;
                }
                self.stats.legs_linked += 1;
                if let Some(nc) = self.circuits.get_mut(&key) {
                    nc.leg = Some((set, leg));
                }
                tracing::debug!("{key}: linked as {leg} of {set}");
            }
            Err(e) => {
                if new {
                    self.sets.remove(&set);
                }
                self.refuse_link(key, &e);
                return;
            }
        }
        self.drive_set(set, now);
    }

    /// A set for the first LINK with `info`'s nonce.
    fn new_set(
        &mut self,
        cfg: &ConfluxExitConfig,
        info: &LinkInfo,
        client_first_hop: bool,
    ) -> Option<ExitSet> {
        let exit = ExitConfig {
            client_first_hop,
            ..self.exit.clone()?
        };
        let config = ConfluxConfig {
            max_legs: cfg.max_legs.clamp(1, MAX_LEGS),
            link_timeout: cfg.linked_ack_timeout,
            ..ConfluxConfig::exit()
        };
        let kind = cfg.scheduler.unwrap_or(SchedulerKind::Ecf);
        let mode = StreamFlowMode::XonXoff {
            params: self.flow.clone(),
            onion: false,
        };
        let seed: u64 = rand::RngExt::random(&mut self.rng);
        let mut set = ConfluxSet::new_exit(info.nonce.clone(), config);
        if let Some(params) = cfg.resume {
            set.offer_resumption(params);
        }
        #[cfg_attr(
            not(feature = "hostile"),
            allow(unused_mut, reason = "mutated only by the hostile build")
        )]
        let mut streams = ExitStreamMap::with_seed(exit, mode, seed);
        #[cfg(feature = "hostile")]
        if cfg.hostile == Some(super::hostile::Hostile::IgnoreXoff) {
            streams.ignore_xoff();
        }
        Some(ExitSet {
            set,
            chooser: SchedulerChooser::new(kind.build()),
            kind,
            fixed: cfg.scheduler.is_some(),
            streams,
            held: None,
            legs: BTreeMap::new(),
            deadline: None,
            accounted: 0,
            loaded_since: None,
            streams_closed: false,
            #[cfg(feature = "hostile")]
            hostile: Default::default(),
        })
    }

    /// Refuse circuit `key`'s LINK: the circuit closes (C-tor closes it
    /// with TORPROTOCOL; a full set is RESOURCELIMIT here).
    fn refuse_link(&mut self, key: CircKey, e: &ConfluxError) {
        tracing::debug!("{key}: CONFLUX_LINK refused: {e}");
        self.stats.links_refused += 1;
        let reason = match e.destroy_reason() {
            DestroyReason::INTERNAL => DestroyReason::PROTOCOL,
            r => r,
        };
        if let Some(nc) = self.circuits.get_mut(&key) {
            nc.circ.close(reason);
        }
    }

    /// A Conflux message other than LINK on circuit `key`, which is no
    /// leg: the circuit closes (C-tor: TORPROTOCOL). True if it was one.
    pub(super) fn conflux_misplaced(&mut self, key: CircKey, msg: &AnyRelayMsg) -> bool {
        if !matches!(
            msg,
            AnyRelayMsg::ConfluxLinked(_)
                | AnyRelayMsg::ConfluxLinkedAck(_)
                | AnyRelayMsg::ConfluxSwitch(_)
        ) {
            return false;
        }
        let e = ConfluxError::NotALeg { cmd: msg.cmd() };
        tracing::debug!("{key}: {e}");
        if let Some(nc) = self.circuits.get_mut(&key) {
            nc.circ.close(DestroyReason::PROTOCOL);
        }
        true
    }

    /// A message on `leg` of `set`, from its last hop (us).
    pub(super) fn set_msg(
        &mut self,
        set: SetKey,
        leg: LegId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) {
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        match es.set.handle_msg(leg, stream, msg, now) {
            Ok(Handled::Consumed) | Ok(Handled::NotConflux { stream: None, .. }) => {}
            // Not sequenced (prop 329 §2.5: stream SENDMEs, padding): to
            // the streams as it comes.
            Ok(Handled::NotConflux {
                stream: Some(id),
                msg,
            }) => to_streams(es, id, msg, now),
            Err(e) => tracing::debug!("{set}: closed on {leg}'s message: {e}"),
        }
        self.drive_set(set, now);
    }

    /// Circuit `key` closed: if it was a leg, its set learns (and may
    /// close, if the rules say data was lost on it).
    pub(super) fn leg_gone(&mut self, key: CircKey, now: Instant) {
        let Some(nc) = self.circuits.get_mut(&key) else {
            return;
        };
        let Some((set, leg)) = nc.leg.take() else {
            return;
        };
        let info = LegClosedInfo {
            inflight: nc.circ.cwnd().map_or(0, |(_, inflight)| inflight),
            sendme_inc: nc.circ.cc_sendme_inc().map_or(0, u64::from),
        };
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        es.legs.remove(&leg);
        if let Err(e) = es.set.leg_closed(leg, info, now) {
            tracing::debug!("{set}: closed on losing {leg} ({key}): {e}");
        }
        self.drive_set(set, now);
    }

    /// Due deadlines of set `set`: LINKED_ACKs, its streams'.
    pub(super) fn set_timeout(&mut self, set: SetKey, now: Instant) {
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        es.deadline = None;
        es.set.handle_timeout(now);
        es.streams.handle_timeout(now);
        self.drive_set(set, now);
    }

    /// Move what set `set` has: in-order messages to its streams, its
    /// own cells (LINKED) and its streams' cells onto the legs, its
    /// streams' events to the driver; close it and its legs if it closed;
    /// file its deadline and bytes; forget it once it has no leg left.
    pub(super) fn drive_set(&mut self, set: SetKey, now: Instant) {
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        while let Some(d) = es.set.poll_delivered() {
            if let Some(id) = d.stream {
                to_streams(es, id, d.msg, now);
            }
        }
        let mut late = Vec::new();
        while let Some(ev) = es.set.poll_event() {
            match ev {
                ConfluxEvent::LegFailed { leg, error } => late.push((leg, error)),
                ConfluxEvent::LegDropped { leg } => {
                    // The client lost it (Braid proposal 001 §3.3): its
                    // circuit goes, as a lost leg's would.
                    tracing::debug!("{set}: {leg} dropped: the client lost it");
                    late.push((leg, ConfluxError::LegDroppedByPeer { leg }));
                }
                // A relay on it hangs (§3.6): its circuit goes.
                ConfluxEvent::LegSilent { leg, silent } => {
                    late.push((leg, ConfluxError::LegSilent { leg, silent }));
                }
                ev => tracing::trace!("{set}: {ev:?}"),
            }
        }
        while let Some((leg, msg)) = es.set.poll_transmit() {
            let Some(nc) = es.legs.get(&leg).and_then(|c| self.circuits.get_mut(c)) else {
                continue;
            };
            if let Err(e) = nc.circ.send(None, msg, now) {
                tracing::debug!("{set}: cannot send on {leg}: {e}");
            }
        }
        for (leg, e) in late {
            tracing::debug!("{set}: closing {leg}: {e}");
            if let Some(nc) = es.legs.get(&leg).and_then(|c| self.circuits.get_mut(c)) {
                nc.circ.close(e.destroy_reason());
            }
        }
        if es.set.is_closed() {
            if !es.streams_closed {
                es.streams_closed = true;
                es.held = None;
                es.streams.handle_circuit_closed();
                tracing::debug!(
                    "{set}: closed: {}",
                    es.set
                        .close_reason()
                        .map_or_else(|| "no reason".to_owned(), ToString::to_string)
                );
            }
            let reason = es
                .set
                .close_reason()
                .map_or(DestroyReason::FINISHED, ConfluxError::destroy_reason);
            for c in es.legs.values() {
                if let Some(nc) = self.circuits.get_mut(c) {
                    nc.circ.close(reason);
                }
            }
        } else {
            // Upload backpressure: the legs ahead of a gap in the reorder
            // queue hold their SENDMEs (ConfluxSet::sendme_hold).
            for (&leg, c) in &es.legs {
                if let Some(nc) = self.circuits.get_mut(c) {
                    nc.circ.set_sendme_hold(es.set.sendme_hold(leg), now);
                }
            }
            self.pump_set(set, now);
        }
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        while let Some(event) = es.streams.poll_event() {
            self.events.push_back(NodeEvent::Exit {
                edge: EdgeKey::Set(set),
                event,
            });
        }
        // On the stack: this runs for every cell a leg's channel takes.
        let mut legs = [CircKey(0); MAX_LEGS];
        let mut n = 0;
        for (slot, c) in legs.iter_mut().zip(es.legs.values()) {
            *slot = *c;
            n += 1;
        }
        for &c in legs.get(..n).unwrap_or_default() {
            let Some(nc) = self.circuits.get(&c) else {
                continue;
            };
            if let Some((chan, _)) = nc.prev {
                self.ready.insert(chan);
            }
            if nc.circ.is_closed() {
                // Its Closed event: the set learns it lost the leg.
                self.settle(c, now);
            } else {
                self.account(c, now);
            }
        }
        self.refresh_set_timer(set);
        self.account_set(set, now);
        self.note_migrate_requests(EdgeKey::Set(set));
        self.maybe_release_set(set);
        self.run_migrations(now);
    }

    /// Set `set`'s streams onto its legs as its scheduler places them,
    /// while some leg's queue toward the client has room (prop 329 §2.8,
    /// §3), keeping [`LEG_RESERVE`] cells of it for the set's own cells.
    fn pump_set(&mut self, set: SetKey, now: Instant) {
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        if !es.set.is_linked() {
            return;
        }
        if es.set.is_resumable() {
            // What each leg's congestion control saw acknowledged frees the
            // retransmit buffer (Braid proposal 001 §3.1).
            for (leg, c) in &es.legs {
                if let Some(nc) = self.circuits.get(c) {
                    let sent = nc.circ.data_counts().0;
                    let (cwnd, inflight) = nc.circ.cwnd().map_or((None, 0), |(c, i)| (Some(c), i));
                    es.set.leg_acked(*leg, sent.saturating_sub(inflight), cwnd);
                }
            }
        }
        let target = PREV_QUEUE_TARGET - LEG_RESERVE;
        #[cfg(feature = "hostile")]
        let hostile = self.conflux.as_ref().and_then(|c| c.hostile);
        // A resumed leg's resends first, as its window allows.
        loop {
            let circuits = &self.circuits;
            let legs = &es.legs;
            let can_send = |leg: LegId| {
                legs.get(&leg)
                    .and_then(|c| circuits.get(c))
                    .is_some_and(|nc| nc.circ.leg_cc(target).can_send)
            };
            let Some(out) = es.set.poll_resend(can_send) else {
                break;
            };
            let leg = out.leg;
            let Some(nc) = es.legs.get(&leg).and_then(|c| self.circuits.get_mut(c)) else {
                break;
            };
            for (s, m) in out.into_msgs() {
                if let Err(e) = nc.circ.send(s, m, now) {
                    tracing::debug!("{set}: cannot resend on {leg}: {e}");
                    break;
                }
            }
        }
        let mut backlog: Option<Option<u64>> = None;
        loop {
            let mut cc = [(LegId(0), LegCc::default()); MAX_LEGS];
            let mut n = 0;
            let mut room = false;
            // Hysteresis: the current leg sends until its queue reaches
            // the target, another leg only once its queue is down to half
            // of it. Without it, with every leg's queue at the target, the
            // leg whose channel just took a cell is the only one with
            // room, and the set switches legs at every cell (a SWITCH per
            // DATA cell, half of each link; found by the simulator).
            let current = es.set.current_leg();
            for (leg, c) in &es.legs {
                let Some(nc) = self.circuits.get(c).filter(|nc| !nc.circ.is_closed()) else {
                    continue;
                };
                room |= nc.circ.queued().0 < target;
                let limit = if current == Some(*leg) {
                    target
                } else {
                    target / 2
                };
                if let Some(slot) = cc.get_mut(n) {
                    *slot = (*leg, nc.circ.leg_cc(limit));
                    n += 1;
                }
            }
            let cc = cc.get(..n).unwrap_or_default();
            if !room {
                return;
            }
            let any_can_send = cc.iter().any(|(_, c)| c.can_send);
            let next = match es.held.take() {
                Some(h) => Some(h),
                None => es.streams.poll_transmit(any_can_send),
            };
            let Some((id, msg)) = next else {
                return;
            };
            if !is_multiplexed(msg.cmd()) {
                // Stream-level flow control is not sequenced (prop 329
                // §2.5); our streams on a set use XON/XOFF, so this is rare.
                let leg = es
                    .set
                    .current_leg()
                    .or_else(|| es.legs.keys().next().copied());
                if let Some(nc) = leg
                    .and_then(|l| es.legs.get(&l))
                    .and_then(|c| self.circuits.get_mut(c))
                {
                    let _ = nc.circ.send(Some(id), msg, now);
                }
                continue;
            }
            // What waits behind this message, for ECF: the destinations'
            // bytes in the map, in cells, unknown while a destination keeps
            // its buffer filling (it has more than the buffer shows). Read
            // once per pump, then counted down as DATA goes.
            let b = *backlog.get_or_insert_with(|| es.streams.send_backlog());
            es.chooser.set_backlog(b.map(|b| b + 1));
            let is_data = matches!(msg, AnyRelayMsg::Data(_));
            match es.set.send(&mut es.chooser, cc, Some(id), msg, now) {
                Ok(SendOutcome::Sent(out)) => {
                    if is_data {
                        backlog = backlog.map(|b| b.map(|b| b.saturating_sub(1)));
                    }
                    let leg = out.leg;
                    let Some(nc) = es.legs.get(&leg).and_then(|c| self.circuits.get_mut(c)) else {
                        return;
                    };
                    #[cfg(feature = "hostile")]
                    let out = match hostile {
                        Some(h) => h.rewrite(&mut es.hostile, out.into_msgs()),
                        None => out.into_msgs().collect(),
                    };
                    #[cfg(not(feature = "hostile"))]
                    let out = out.into_msgs();
                    for (s, m) in out {
                        if let Err(e) = nc.circ.send(s, m, now) {
                            // Sequenced and lost: the circuit closed, and
                            // the set's leg-loss rules decide.
                            tracing::debug!("{set}: cannot send on {leg}: {e}");
                            break;
                        }
                    }
                }
                Ok(SendOutcome::Blocked { stream, msg }) => {
                    es.held = stream.map(|s| (s, msg));
                    return;
                }
                Err(e) => {
                    tracing::debug!("{set}: cannot send: {e}");
                    return;
                }
            }
        }
    }

    /// File set `set`'s next deadline.
    pub(super) fn refresh_set_timer(&mut self, set: SetKey) {
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        let next = [es.set.poll_timeout(), es.streams.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if next == es.deadline {
            return;
        }
        if let Some(t) = es.deadline.take() {
            self.timers.remove(&(t, EdgeKey::Set(set)));
        }
        if let Some(t) = next {
            self.timers.insert((t, EdgeKey::Set(set)));
            es.deadline = Some(t);
        }
    }

    /// Recount set `set`'s bytes (reorder queue, stream buffers, a held
    /// cell) into the node's total.
    fn account_set(&mut self, set: SetKey, now: Instant) {
        let Some(es) = self.sets.get_mut(&set) else {
            return;
        };
        let (to_dest, from_dest) = es.streams.buffered();
        let held = es.held.as_ref().map_or(0, |_| super::CELL_MEM_BYTES);
        let bytes = es.set.reorder_bytes() + es.set.retransmit_bytes() + to_dest + from_dest + held;
        self.queued_bytes = self.queued_bytes - es.accounted + bytes;
        es.accounted = bytes;
        if bytes == 0 {
            es.loaded_since = None;
        } else if es.loaded_since.is_none() {
            es.loaded_since = Some(now);
        }
    }

    /// The sets the memory limit may close, with the age of their oldest
    /// queued data: in their reorder queue or map, or in their legs'
    /// queues (a leg's cells are its set's: the set is what closes).
    pub(super) fn set_victims(&self, now: Instant) -> Vec<(Instant, EdgeKey)> {
        self.sets
            .iter()
            .filter(|(_, es)| !es.set.is_closed())
            .filter_map(|(k, es)| {
                let legs = es
                    .legs
                    .values()
                    .filter_map(|c| self.circuits.get(c))
                    .filter_map(|nc| nc.circ.oldest_queued());
                let oldest = es.loaded_since.into_iter().chain(legs).min()?;
                Some((oldest.min(now), EdgeKey::Set(*k)))
            })
            .collect()
    }

    /// Forget set `set` once closed with no leg left.
    fn maybe_release_set(&mut self, set: SetKey) {
        let Some(es) = self.sets.get(&set) else {
            return;
        };
        if !(es.set.is_closed() && es.legs.is_empty()) {
            return;
        }
        if let Some(t) = es.deadline {
            self.timers.remove(&(t, EdgeKey::Set(set)));
        }
        self.queued_bytes -= es.accounted;
        let nonce = *es.set.nonce().as_bytes();
        if self.set_nonces.get(&nonce) == Some(&set) {
            self.set_nonces.remove(&nonce);
        }
        self.sets.remove(&set);
    }
}

/// An in-order (or unsequenced) stream message of `es` to its streams; a
/// violation the tunnel answers for closes the set.
fn to_streams(es: &mut ExitSet, id: StreamId, msg: AnyRelayMsg, now: Instant) {
    if es.set.is_closed() {
        return;
    }
    if let Err(e) = es.streams.handle_msg(id, msg, now)
        && e.closes_circuit()
    {
        es.set.close(ConfluxError::StreamViolation(e.to_string()));
    }
}
