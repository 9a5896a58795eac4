//! [`ConfluxSet`]: N legs to one exit woven into one sequenced tunnel
//! (prop 329 §2).
//!
//! One state machine serves both ends. A client set ([`ConfluxSet::new_client`])
//! launches legs ([`ConfluxSet::add_leg`] sends CONFLUX_LINK), accepts
//! CONFLUX_LINKED and answers LINKED_ACK; an exit set
//! ([`ConfluxSet::new_exit`]) accepts CONFLUX_LINK ([`ConfluxSet::accept_link`])
//! and answers LINKED. Once linked, both ends are symmetric: multiplexed
//! messages go out through [`ConfluxSet::send`] (which picks the leg with a
//! [`LegChooser`] and prepends a CONFLUX_SWITCH when the leg changes) and
//! come in through [`ConfluxSet::handle_msg`], in order, via
//! [`ConfluxSet::poll_delivered`].
//!
//! # Outputs
//!
//! - [`ConfluxSet::send`]/[`ConfluxSet::send_on`] return the messages to
//!   put on one leg, in order (a SWITCH, then the message);
//! - [`ConfluxSet::poll_transmit`]: handshake messages (LINK, LINKED,
//!   LINKED_ACK) for a leg. Drain it after every call, before the next
//!   `send`, so a leg's LINKED_ACK precedes its data;
//! - [`ConfluxSet::poll_delivered`]: inbound multiplexed messages, in
//!   sequence order;
//! - [`ConfluxSet::poll_event`]: [`ConfluxEvent`]s (a leg linked or failed,
//!   the set usable);
//! - [`ConfluxSet::poll_timeout`]: when to call
//!   [`ConfluxSet::handle_timeout`] (LINKED deadlines).
//!
//! # Errors and their scope
//!
//! A method returning `Err` with a [`ConfluxError`] of kind protocol
//! violation, resource limit or leg loss has **closed the set**: the driver
//! closes every leg and ends the set's streams. A failure confined to one
//! leg that is still linking (a wrong nonce, a timeout, data before
//! linking) only drops that leg: the method returns `Ok` and
//! [`ConfluxEvent::LegFailed`] tells the driver to close that circuit (and,
//! on the client, perhaps to launch another, [`ConfluxSet::add_leg`]).
//! Local errors change nothing.
//!
//! # Leg loss (prop 329 §2.4.3)
//!
//! See [`ConfluxSet::leg_closed`] for the exact rule.
//!
//! # Legs added later (prop 329 §2.4.4, §2.7)
//!
//! A set that lost a leg may add one: the new leg sends a LINK with the same
//! nonce, carrying our highest sequence number sent and the last one
//! received in order. Both ends take the new leg's starting sequence
//! numbers from that LINK (client: from what it sent; exit: from what it
//! received), which C-tor's exit does too, so the numbers agree even when
//! data is in flight. C-tor additionally refuses, at link time, a peer
//! whose `last_seqno_sent` exceeds what it has delivered ("data loss"), and
//! tears the set down: a C-tor exit therefore only accepts a new leg while
//! nothing the client sent is in flight. Full resumption (retransmitting
//! lost cells, §2.7) is not implemented: a set that lost data closes.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tor_cell::relaycell::conflux::V1DesiredUx;
use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxLink, ConfluxSwitch};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::choose::{LegCc, LegChooser, LegInfo};
use super::error::{ConfluxError, LegLossRule};
use super::link::{ClientLinkHandshake, ConfluxNonce, ExitLinkHandshake, LinkInfo};
use super::reorder::{ReorderError, ReorderLimit, ReorderQueue};
use super::seq::{RecvSeq, SendSeq, SwitchWindow, is_multiplexed};
use super::sizer::ReorderSizer;
use crate::ids::{LegId, StreamId};

mod resume;

/// Most legs per set (C-tor `cfx_max_legs_set`, and the exit's limit).
pub const MAX_LEGS: usize = 8;

/// Which end of the set we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The origin: sends LINK, receives LINKED.
    Client,
    /// The exit (or onion service): receives LINK, sends LINKED.
    Exit,
}

/// Settings of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfluxConfig {
    /// The scheduling we ask the peer to use for what it sends us (prop 329
    /// §2.2). C-tor clients ask HIGH_THROUGHPUT, exits MIN_LATENCY.
    pub desired_ux: V1DesiredUx,
    /// How long a client leg waits for LINKED (prop 329 §2.2: at most the
    /// stream timeout; C-tor uses the circuit build timeout, which the
    /// driver may set here).
    pub link_timeout: Duration,
    /// Most legs at once (2..=8).
    pub max_legs: usize,
    /// Legs a client set means to link (C-tor `cfx_num_legs_set`).
    pub num_legs: usize,
    /// Launches beyond `num_legs` allowed for failed legs (C-tor
    /// `cfx_max_unlinked_leg_retry`, prop 329 §4.2.2: bounded to limit
    /// guard discovery). The count restarts once, when the set links.
    pub max_leg_retries: usize,
    /// Reorder queue bounds (the starting ones when `reorder_auto`).
    pub reorder: ReorderLimit,
    /// Raise the reorder byte limit as the legs are measured, to twice
    /// their summed bandwidth times the largest RTT ([`ReorderSizer`]);
    /// off: `reorder` stays as given.
    pub reorder_auto: bool,
    /// SWITCH plausibility bound.
    pub switch_window: SwitchWindow,
    /// Hold back the SENDMEs of legs ahead of a gap while the reorder
    /// queue is over half full ([`ConfluxSet::sendme_hold`]); off: the
    /// queue's limit is the only bound (and closes the set when reached).
    pub sendme_pacing: bool,
}

impl ConfluxConfig {
    /// A client's defaults: HIGH_THROUGHPUT, 10 s LINKED timeout (Braid's
    /// first stream connect timeout), 2 legs, 3 retries, a reorder limit
    /// sized from the legs ([`ReorderSizer`]: 2 MiB to 32 MiB).
    pub fn client() -> Self {
        Self {
            desired_ux: V1DesiredUx::HIGH_THROUGHPUT,
            link_timeout: Duration::from_secs(10),
            max_legs: MAX_LEGS,
            num_legs: 2,
            max_leg_retries: 3,
            reorder: ReorderSizer::initial_limit(),
            reorder_auto: true,
            switch_window: SwitchWindow::default(),
            sendme_pacing: true,
        }
    }

    /// An exit's defaults: MIN_LATENCY, at most 8 legs.
    pub fn exit() -> Self {
        Self {
            desired_ux: V1DesiredUx::MIN_LATENCY,
            ..Self::client()
        }
    }
}

/// A multiplexed message received in order.
#[derive(Debug)]
pub struct Delivered {
    /// Its absolute sequence number.
    pub seq: u64,
    /// The leg it came on.
    pub leg: LegId,
    /// Its stream.
    pub stream: Option<StreamId>,
    /// The message.
    pub msg: AnyRelayMsg,
}

/// What to put on one leg: a CONFLUX_SWITCH if the leg changed, then the
/// message. No allocation: one of these goes out per message sent.
#[derive(Debug)]
pub struct Outgoing {
    /// The leg (it may differ from the one asked for, see
    /// [`ConfluxSet::send_on`]).
    pub leg: LegId,
    /// The CONFLUX_SWITCH to send first (stream id none), if the leg is
    /// behind the set's last sequence number (prop 329 §2.6).
    pub switch: Option<ConfluxSwitch>,
    /// The message's stream.
    pub stream: Option<StreamId>,
    /// The message.
    pub msg: AnyRelayMsg,
}

impl Outgoing {
    /// The messages with their stream ids, in the order they go: the
    /// SWITCH (stream none) if any, then the message.
    pub fn into_msgs(self) -> impl Iterator<Item = (Option<StreamId>, AnyRelayMsg)> {
        let switch = self.switch.map(|s| (None, AnyRelayMsg::from(s)));
        switch
            .into_iter()
            .chain(std::iter::once((self.stream, self.msg)))
    }
}

/// What [`ConfluxSet::send`] did.
#[derive(Debug)]
pub enum SendOutcome {
    /// Send these.
    Sent(Outgoing),
    /// No leg may send DATA now (the chooser said hold): the message is
    /// given back, nothing changed.
    Blocked {
        /// Its stream.
        stream: Option<StreamId>,
        /// The message.
        msg: AnyRelayMsg,
    },
}

/// What [`ConfluxSet::handle_msg`] did with a message.
#[derive(Debug)]
pub enum Handled {
    /// The set took it.
    Consumed,
    /// Not a Conflux or multiplexed message: the circuit's own business
    /// (SENDME, padding, ...). Given back.
    NotConflux {
        /// Its stream.
        stream: Option<StreamId>,
        /// The message.
        msg: AnyRelayMsg,
    },
}

/// Something the driver should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfluxEvent {
    /// A leg is linked and carries data. Client: LINKED accepted (RTT
    /// measured); exit: LINKED sent (RTT once LINKED_ACK arrives).
    LegLinked {
        /// The leg.
        leg: LegId,
        /// Its link RTT, if measured.
        rtt: Option<Duration>,
    },
    /// Exit: LINKED_ACK gave a leg's RTT.
    LegRtt {
        /// The leg.
        leg: LegId,
        /// LINKED sent to LINKED_ACK received.
        rtt: Duration,
    },
    /// The set became usable (every leg launched so far is linked, prop
    /// 329 §2.4.2). Reported once.
    SetLinked {
        /// Linked legs.
        legs: usize,
    },
    /// A leg failed: close its circuit. Client: a leg still linking, it
    /// has left the set. Exit: a linked leg whose LINKED_ACK is late; it
    /// stays until [`ConfluxSet::leg_closed`].
    LegFailed {
        /// The leg.
        leg: LegId,
        /// Why.
        error: ConfluxError,
    },
}

/// What the driver knows of a linked leg's circuit when it closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegClosedInfo {
    /// DATA cells sent on the leg and not acknowledged by a SENDME.
    pub inflight: u64,
    /// The leg's `sendme_inc` (0 if unknown).
    pub sendme_inc: u64,
}

/// What one leg carried, for reports (kept after the leg leaves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    /// DATA payload bytes sent on the leg.
    pub data_bytes_sent: u64,
    /// DATA payload bytes received on the leg.
    pub data_bytes_received: u64,
    /// Multiplexed messages sent on the leg.
    pub msgs_sent: u64,
    /// Multiplexed messages received on the leg.
    pub msgs_received: u64,
    /// CONFLUX_SWITCH messages sent on the leg.
    pub switches_sent: u64,
    /// CONFLUX_SWITCH messages received on the leg.
    pub switches_received: u64,
    /// The leg's `last_seq_sent` (prop 329 §2.6), as last known.
    pub last_seq_sent: u64,
    /// The leg's `last_seq_recv`, as last known.
    pub last_seq_recv: u64,
}

/// One leg.
#[derive(Debug)]
enum LegState {
    /// Client, waiting for LINKED.
    ClientLinking(ClientLinkHandshake),
    /// Client, linked.
    ClientLinked {
        /// LINK to LINKED.
        rtt: Duration,
    },
    /// Exit (linked from the moment LINKED was produced).
    Exit(ExitLinkHandshake),
}

impl LegState {
    /// True if the leg carries data.
    fn is_linked(&self) -> bool {
        match self {
            LegState::ClientLinking(_) => false,
            LegState::ClientLinked { .. } => true,
            LegState::Exit(h) => h.is_linked(),
        }
    }

    /// The link RTT, if measured.
    fn rtt(&self) -> Option<Duration> {
        match self {
            LegState::ClientLinking(_) => None,
            LegState::ClientLinked { rtt } => Some(*rtt),
            LegState::Exit(h) => h.rtt(),
        }
    }
}

/// Accounting overhead per held message (the map entry and the message
/// struct); a DATA message adds its bytes, any other message a full relay
/// body.
const ENTRY_OVERHEAD: usize = 96 + std::mem::size_of::<Delivered>();
/// Most bytes a relay message body holds (tor-spec §6.1).
const RELAY_BODY_MAX: usize = 498;

/// The bytes a held message is charged.
fn msg_cost(msg: &AnyRelayMsg) -> usize {
    ENTRY_OVERHEAD
        + match msg {
            AnyRelayMsg::Data(d) => d.as_ref().len(),
            _ => RELAY_BODY_MAX,
        }
}

/// A Conflux set, one end (prop 329).
#[derive(Debug)]
pub struct ConfluxSet {
    /// Client or exit.
    role: Role,
    /// The set's secret.
    nonce: ConfluxNonce,
    /// Settings.
    config: ConfluxConfig,
    /// The legs, linking or linked.
    legs: BTreeMap<LegId, LegState>,
    /// The next leg id to try.
    next_leg: u8,
    /// Sender's sequence numbers (linked legs only).
    send: SendSeq,
    /// Receiver's sequence numbers (linked legs only).
    recv: RecvSeq,
    /// Inbound multiplexed messages, ordered.
    reorder: ReorderQueue<Delivered>,
    /// Every launched leg linked once (prop 329 §2.4.2).
    linked: bool,
    /// Closed on an error.
    closed: Option<ConfluxError>,
    /// The UX the peer asked for (what our scheduler should provide).
    peer_ux: Option<V1DesiredUx>,
    /// Handshake messages to send.
    transmit: VecDeque<(LegId, AnyRelayMsg)>,
    /// Events for the driver.
    events: VecDeque<ConfluxEvent>,
    /// Per-leg counters, for reports.
    stats: BTreeMap<LegId, LegStats>,
    /// Sizes the reorder limit (with `reorder_auto`).
    sizer: Option<ReorderSizer>,
    /// DATA payload bytes handed out in order ([`Self::poll_delivered`]).
    delivered_bytes: u64,
    /// What the chooser is shown, refilled for every message sent (kept
    /// for its allocation).
    infos: Vec<LegInfo>,
    /// Resumption (Braid proposal 001 §3), when both ends agreed.
    resume: Option<super::retransmit::Retransmit>,
    /// Resumption we offer the peer (Braid proposal 001 §2).
    resume_offer: Option<super::ResumeParams>,
    /// Since when a resumable set has waited for a new leg (none linked,
    /// or a lost leg's messages to resend).
    orphaned_since: Option<Instant>,
    /// Messages to resend on a resumed leg, in order.
    resend: VecDeque<resume::Resend>,
    /// Messages resent.
    resent: u64,
    /// Messages the peer resent to us (counted as they arrive).
    peer_resent: u64,
    /// Resumed legs whose peer resends are still arriving: up to which
    /// number (the peer's last sent when it linked). At most one per leg.
    resent_upto: Vec<(LegId, u64)>,
    /// A linked leg of the resumable set was lost since the last
    /// resumption.
    lost_legs: bool,
    /// A leg was lost with messages not acknowledged, and no new leg has
    /// resent them yet: no new DATA until one does.
    gap_pending: bool,
}

impl ConfluxSet {
    /// A client set with `nonce` (fresh, [`ConfluxNonce::random`]).
    pub fn new_client(nonce: ConfluxNonce, config: ConfluxConfig) -> Self {
        Self::new(Role::Client, nonce, config)
    }

    /// An exit set, created when a LINK with an unknown nonce arrives
    /// (read it with [`LinkInfo::from_link`]); then [`Self::accept_link`].
    pub fn new_exit(nonce: ConfluxNonce, config: ConfluxConfig) -> Self {
        Self::new(Role::Exit, nonce, config)
    }

    /// A set.
    fn new(role: Role, nonce: ConfluxNonce, mut config: ConfluxConfig) -> Self {
        config.max_legs = config.max_legs.clamp(1, MAX_LEGS);
        Self {
            role,
            nonce,
            config,
            legs: BTreeMap::new(),
            next_leg: 0,
            send: SendSeq::new(),
            recv: RecvSeq::new(config.switch_window),
            reorder: ReorderQueue::new(config.reorder),
            linked: false,
            closed: None,
            peer_ux: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: BTreeMap::new(),
            sizer: config.reorder_auto.then(ReorderSizer::new),
            delivered_bytes: 0,
            infos: Vec::with_capacity(MAX_LEGS),
            resume: None,
            resume_offer: None,
            orphaned_since: None,
            resend: VecDeque::new(),
            resent: 0,
            peer_resent: 0,
            resent_upto: Vec::new(),
            lost_legs: false,
            gap_pending: false,
        }
    }

    // ----- Queries -----

    /// Client or exit.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The set's nonce (never log it).
    pub fn nonce(&self) -> &ConfluxNonce {
        &self.nonce
    }

    /// True once every launched leg linked (the set carries streams).
    pub fn is_linked(&self) -> bool {
        self.linked && self.closed.is_none()
    }

    /// True once closed on an error.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// The error that closed the set.
    pub fn close_reason(&self) -> Option<&ConfluxError> {
        self.closed.as_ref()
    }

    /// Every leg and whether it is linked.
    pub fn legs(&self) -> impl Iterator<Item = (LegId, bool)> + '_ {
        self.legs.iter().map(|(l, s)| (*l, s.is_linked()))
    }

    /// Linked legs.
    pub fn linked_legs(&self) -> usize {
        self.legs.values().filter(|s| s.is_linked()).count()
    }

    /// What `leg` carried: for a linked leg (zeros and its starting
    /// sequence numbers if it carried nothing yet), and for one that left
    /// after carrying something, until its id is reused. `None` for a leg
    /// still linking or unknown.
    pub fn leg_stats(&self, leg: LegId) -> Option<LegStats> {
        let mut st = match self.stats.get(&leg) {
            Some(st) => *st,
            None if self.legs.get(&leg).is_some_and(LegState::is_linked) => LegStats::default(),
            None => return None,
        };
        if let Some(sent) = self.send.leg_last_sent(leg) {
            st.last_seq_sent = sent;
        }
        if let Some(recv) = self.recv.leg_last_recv(leg) {
            st.last_seq_recv = recv;
        }
        Some(st)
    }

    /// Counters of `leg`, created on first use.
    fn stats_mut(&mut self, leg: LegId) -> &mut LegStats {
        self.stats.entry(leg).or_default()
    }

    /// Keep the last sequence numbers of `leg` before it leaves.
    fn snapshot_seqs(&mut self, leg: LegId) {
        let sent = self.send.leg_last_sent(leg);
        let recv = self.recv.leg_last_recv(leg);
        let st = self.stats_mut(leg);
        if let Some(sent) = sent {
            st.last_seq_sent = sent;
        }
        if let Some(recv) = recv {
            st.last_seq_recv = recv;
        }
    }

    /// The link RTT of `leg`, if measured.
    pub fn leg_rtt(&self, leg: LegId) -> Option<Duration> {
        self.legs.get(&leg).and_then(LegState::rtt)
    }

    /// The UX the peer asked for in its LINK/LINKED: what our scheduler
    /// should provide (C-tor: HIGH_THROUGHPUT and NO_OPINION → LowRTT,
    /// MIN_LATENCY and LOW_MEM_* → MinRTT).
    pub fn peer_ux(&self) -> Option<V1DesiredUx> {
        self.peer_ux
    }

    /// The absolute sequence number of the last multiplexed message sent.
    pub fn last_seq_sent(&self) -> u64 {
        self.send.last_seq_sent()
    }

    /// The last sequence number received in order.
    pub fn last_seq_delivered(&self) -> u64 {
        self.reorder.last_in_order()
    }

    /// The leg the last multiplexed message went on.
    pub fn current_leg(&self) -> Option<LegId> {
        self.send.current()
    }

    /// Bytes held in the reorder queue now.
    pub fn reorder_bytes(&self) -> usize {
        self.reorder.bytes()
    }

    /// The most bytes the reorder queue ever held.
    pub fn reorder_peak_bytes(&self) -> usize {
        self.reorder.peak_bytes()
    }

    /// The most cells the reorder queue ever held.
    pub fn reorder_peak_cells(&self) -> usize {
        self.reorder.peak_cells()
    }

    /// Cells waiting in the reorder queue for a gap to fill.
    pub fn reorder_waiting(&self) -> usize {
        self.reorder.waiting()
    }

    /// Whether the receiver should hold back the circuit SENDMEs of `leg`
    /// now (Braid's receiver backpressure; the caller applies it with
    /// [`crate::circuit::ClientCircuit::set_sendme_hold`]): the reorder
    /// queue holds more than half its byte limit and `leg` has already
    /// received past the number the queue waits for, so what it brings
    /// only grows the queue. A leg that can still bring the missing number
    /// is never held. Without this a leg that stalls for a moment (a busy
    /// relay) lets the others fill the queue to its limit at full speed,
    /// and the set closes although nobody misbehaved; with it, the exit's
    /// congestion window stops the legs that are ahead and the queue stays
    /// near half its limit. An exit that sends past its window anyway
    /// still meets the hard limit ([`ConfluxError::ReorderQueueFull`]).
    pub fn sendme_hold(&self, leg: LegId) -> bool {
        if !self.config.sendme_pacing || self.reorder.bytes() <= self.reorder.limit().max_bytes / 4
        {
            return false;
        }
        self.recv
            .leg_last_recv(leg)
            .is_some_and(|last| last >= self.reorder.expected())
    }

    /// The reorder queue's bounds.
    pub fn reorder_limit(&self) -> ReorderLimit {
        self.reorder.limit()
    }

    /// Change the reorder bounds, for example to
    /// [`ReorderQueue::default_limit`] of the measured legs.
    pub fn set_reorder_limit(&mut self, limit: ReorderLimit) {
        self.reorder.set_limit(limit);
    }

    /// With `reorder_auto`, raise the reorder byte limit to what the legs
    /// measured so far call for ([`ReorderSizer`]); `cc` gives congestion
    /// control's RTTs where the caller has them (legs we send on), the
    /// LINK RTT stands in otherwise. Never lowers it.
    fn resize_reorder(&mut self, now: Instant, cc: &[(LegId, LegCc)]) {
        if !self.sizer.as_ref().is_some_and(|s| s.due(now)) {
            return;
        }
        let rtts: Vec<Duration> = self
            .leg_infos(cc)
            .iter()
            .filter_map(|i| match (i.link_rtt, i.cc.ewma_rtt) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            })
            .collect();
        let bytes = self.delivered_bytes.saturating_add(
            self.stats
                .values()
                .map(|c| c.data_bytes_sent)
                .fold(0u64, u64::saturating_add),
        );
        let Some(sizer) = self.sizer.as_mut() else {
            return;
        };
        let want = sizer.observe(now, bytes, rtts);
        let limit = self.reorder.limit();
        if want > limit.max_bytes {
            self.reorder.set_limit(ReorderLimit {
                max_ahead: limit.max_ahead,
                ..ReorderLimit::from_bytes(want)
            });
        }
    }

    /// What a scheduler sees of each linked leg, merged with the driver's
    /// congestion control figures `cc` (legs missing there get
    /// [`LegCc::default`]).
    pub fn leg_infos(&self, cc: &[(LegId, LegCc)]) -> Vec<LegInfo> {
        let mut infos = Vec::new();
        self.fill_leg_infos(cc, &mut infos);
        infos
    }

    /// [`Self::leg_infos`] into `infos` (cleared first).
    fn fill_leg_infos(&self, cc: &[(LegId, LegCc)], infos: &mut Vec<LegInfo>) {
        infos.clear();
        infos.extend(
            self.legs
                .iter()
                .filter(|(_, s)| s.is_linked())
                .map(|(l, s)| LegInfo {
                    leg: *l,
                    link_rtt: s.rtt(),
                    cc: cc
                        .iter()
                        .find(|(id, _)| id == l)
                        .map(|(_, c)| *c)
                        .unwrap_or_default(),
                    last_seq_sent: self.send.leg_last_sent(*l).unwrap_or(0),
                }),
        );
    }

    // ----- Outputs -----

    /// The next handshake message to send, with its leg (stream id none).
    pub fn poll_transmit(&mut self) -> Option<(LegId, AnyRelayMsg)> {
        let (leg, msg) = self.transmit.pop_front()?;
        Some((leg, self.with_extensions(msg)))
    }

    /// The next inbound multiplexed message in sequence order.
    pub fn poll_delivered(&mut self) -> Option<Delivered> {
        let d = self.reorder.pop().map(|(_, d)| d)?;
        if let AnyRelayMsg::Data(data) = &d.msg {
            self.delivered_bytes = self
                .delivered_bytes
                .saturating_add(data.as_ref().len() as u64);
        }
        Some(d)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConfluxEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is due: the earliest LINKED deadline
    /// (client), LINKED_ACK deadline (exit).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.link_timeout;
        self.legs
            .values()
            .filter_map(|s| match s {
                LegState::ClientLinking(h) => h.deadline(),
                LegState::Exit(h) => h.ack_deadline(timeout),
                LegState::ClientLinked { .. } => None,
            })
            .chain(self.grace_deadline())
            .min()
    }

    /// Close the set on a local decision `e` (out of memory, the relay
    /// shutting down): nothing more is sent or delivered. No effect on a
    /// closed set.
    pub fn close(&mut self, e: ConfluxError) {
        let _ = self.fail(e);
    }

    // ----- Linking -----

    /// A free leg id. The counters of a leg that had it before are
    /// dropped, so a reused id starts from zero.
    fn alloc_leg(&mut self) -> Option<LegId> {
        for _ in 0..=u8::MAX {
            let id = LegId(self.next_leg);
            self.next_leg = self.next_leg.wrapping_add(1);
            if !self.legs.contains_key(&id) {
                self.stats.remove(&id);
                return Some(id);
            }
        }
        None
    }

    /// Our LINK/LINKED payload now.
    fn our_link_info(&self) -> LinkInfo {
        LinkInfo {
            nonce: self.nonce.clone(),
            last_seqno_sent: self.send.last_seq_sent(),
            last_seqno_recv: self.reorder.last_in_order(),
            desired_ux: self.config.desired_ux,
        }
    }

    /// Client: a new leg's circuit is built (to the set's exit, with
    /// congestion control negotiated on its last hop, prop 329 §2.2); the
    /// CONFLUX_LINK for it is in [`Self::poll_transmit`] and its LINKED is
    /// due by [`Self::poll_timeout`]. Also how a set that lost a leg adds
    /// one (same nonce, current sequence numbers, prop 329 §2.4.4).
    ///
    /// Refused (local error) on an exit set, a closed set, or at
    /// `max_legs`. The launch budget (`num_legs + max_leg_retries`, prop
    /// 329 §4.2.2) is the tunnel's, which launches the circuits
    /// ([`crate::tunnel::ClientTunnel`]).
    pub fn add_leg(&mut self, now: Instant) -> Result<LegId, ConfluxError> {
        let info = self.our_link_info();
        self.add_leg_with(now, info)
    }

    /// [`Self::add_leg`] for a new leg of a linked set whose LINK claims
    /// only `delivered` as `last_seqno_sent` (capped at what we sent): a
    /// number the exit has surely delivered. The leg's sequence numbers
    /// start there, so our first message on it carries a SWITCH over the
    /// rest (prop 329 §2.4.4, §2.6). Why: a C-tor exit takes a LINK whose
    /// `last_seqno_sent` exceeds its `last_seq_delivered` for data loss
    /// and closes the whole set (`validate_unlinked_legs`), and messages
    /// we sent on other legs may still be on their way when LINK arrives.
    pub fn add_leg_delivered(
        &mut self,
        now: Instant,
        delivered: u64,
    ) -> Result<LegId, ConfluxError> {
        let mut info = self.our_link_info();
        info.last_seqno_sent = info.last_seqno_sent.min(delivered);
        self.add_leg_with(now, info)
    }

    /// Add a leg whose LINK carries `info`.
    fn add_leg_with(&mut self, now: Instant, info: LinkInfo) -> Result<LegId, ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        if self.role != Role::Client {
            return Err(ConfluxError::CannotAddLeg(
                "an exit set adds legs with accept_link",
            ));
        }
        if self.legs.len() >= self.config.max_legs {
            return Err(ConfluxError::CannotAddLeg("the set has max_legs legs"));
        }
        let leg = self
            .alloc_leg()
            .ok_or(ConfluxError::CannotAddLeg("no free leg id"))?;
        let mut hs = ClientLinkHandshake::new(leg, info);
        let link = hs.start(now, self.config.link_timeout)?;
        self.legs.insert(leg, LegState::ClientLinking(hs));
        self.transmit.push_back((leg, link.into()));
        Ok(leg)
    }

    /// Exit: a CONFLUX_LINK with this set's nonce arrived on a circuit that
    /// is not a leg yet. `circuit_has_streams`: it already carried a BEGIN.
    /// On success the circuit is a linked leg (prop 329 §2.4.2: the exit
    /// links when it sends LINKED) and its LINKED is in
    /// [`Self::poll_transmit`].
    ///
    /// An error refuses this circuit only (close it with
    /// [`ConfluxError::destroy_reason`]); the set is unchanged.
    pub fn accept_link(
        &mut self,
        link: &ConfluxLink,
        circuit_has_streams: bool,
        now: Instant,
    ) -> Result<LegId, ConfluxError> {
        self.accept_link_with(link, None, circuit_has_streams, now)
    }

    /// [`Self::accept_link`] for a LINK that carried Braid's `cap`
    /// ([`super::ext::split`]): with resumption offered
    /// ([`Self::offer_resumption`]) and nothing sent yet, the set becomes
    /// resumable and its LINKED says so (Braid proposal 001 §2.2).
    pub fn accept_link_with(
        &mut self,
        link: &ConfluxLink,
        cap: Option<super::ResumeCap>,
        circuit_has_streams: bool,
        now: Instant,
    ) -> Result<LegId, ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        if cap.is_some() {
            self.peer_offers_resumption();
        }
        if self.role != Role::Exit {
            return Err(ConfluxError::WrongDirection {
                leg: LegId(u8::MAX),
                cmd: RelayCmd::CONFLUX_LINK,
            });
        }
        if self.legs.len() >= self.config.max_legs {
            return Err(ConfluxError::TooManyLegs {
                max: self.config.max_legs,
            });
        }
        let leg = self
            .alloc_leg()
            .ok_or(ConfluxError::TooManyLegs { max: MAX_LEGS })?;
        let mut hs = ExitLinkHandshake::new(leg);
        let peer = hs.handle_link(link, circuit_has_streams)?;
        if !peer.nonce.ct_eq(&self.nonce) {
            return Err(ConfluxError::CannotAddLeg(
                "LINK nonce belongs to another set",
            ));
        }
        // The client cannot have delivered more than we sent (§2.4.4).
        let sent = self.send.last_seq_sent();
        if peer.last_seqno_recv > sent {
            return Err(ConfluxError::ImpossibleLinkSeq {
                leg,
                claimed: peer.last_seqno_recv,
                sent,
            });
        }
        let ours = self.our_link_info();
        let linked = hs.linked(&ours, now)?;
        let resuming = self.resume.is_some() && self.linked;
        // Starting numbers from the LINK, as the client takes them; on a
        // resumed leg the client resends from what we said we have.
        self.send.add_leg(leg, peer.last_seqno_recv);
        self.recv.add_leg(
            leg,
            if resuming {
                ours.last_seqno_recv
            } else {
                peer.last_seqno_sent
            },
        );
        self.peer_ux = Some(peer.desired_ux);
        self.legs.insert(leg, LegState::Exit(hs));
        self.transmit.push_back((leg, linked.into()));
        self.events
            .push_back(ConfluxEvent::LegLinked { leg, rtt: None });
        self.maybe_finalize();
        if resuming {
            self.expect_resends(leg, &ours, &peer);
            // A failure closes the set (the caller sees it closed).
            let _ = self.resume_on(leg, peer.last_seqno_recv, now);
        }
        Ok(leg)
    }

    /// The set becomes usable once every leg is linked (prop 329 §2.4.2),
    /// unless it was closed first: a closed set stays unusable, so a
    /// linking leg that then fails or closes (leaving only linked legs)
    /// must not make it report [`ConfluxEvent::SetLinked`].
    fn maybe_finalize(&mut self) {
        if self.closed.is_some()
            || self.linked
            || self.legs.is_empty()
            || !self.legs.values().all(LegState::is_linked)
        {
            return;
        }
        self.linked = true;
        self.events.push_back(ConfluxEvent::SetLinked {
            legs: self.legs.len(),
        });
    }

    /// Close the set on `e`. Nothing more is sent, resent or delivered,
    /// so the reorder queue and the retransmit buffer are emptied now:
    /// their bytes (up to their limits) would otherwise stay held, and
    /// counted, until the driver drops the set, which waits for every
    /// leg's DESTROY to go out (TROVE-2026-010).
    fn fail(&mut self, e: ConfluxError) -> ConfluxError {
        if self.closed.is_none() {
            self.closed = Some(e.clone());
        }
        self.transmit.clear();
        self.reorder.clear();
        self.resend.clear();
        if let Some(r) = self.resume.as_mut() {
            r.clear();
        }
        e
    }

    /// Drop a leg that is still linking, on `error`.
    fn fail_leg(&mut self, leg: LegId, error: ConfluxError) {
        self.legs.remove(&leg);
        self.events
            .push_back(ConfluxEvent::LegFailed { leg, error });
        self.maybe_finalize();
    }

    /// A violation on `leg`: confined to it if it is still linking, fatal
    /// for the set otherwise.
    fn violation(&mut self, leg: LegId, e: ConfluxError) -> Result<Handled, ConfluxError> {
        match self.legs.get(&leg) {
            Some(s) if !s.is_linked() => {
                self.fail_leg(leg, e);
                Ok(Handled::Consumed)
            }
            _ => Err(self.fail(e)),
        }
    }

    /// LINKED deadlines: every client leg whose LINKED is late fails
    /// ([`ConfluxEvent::LegFailed`] with [`ConfluxError::LinkTimeout`]).
    /// Exit: a linked leg whose LINKED_ACK is late is reported once with
    /// [`ConfluxEvent::LegFailed`] ([`ConfluxError::LinkedAckTimeout`])
    /// but stays in the set: the caller closes its circuit and then calls
    /// [`Self::leg_closed`], whose rules decide whether the set survives.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.link_timeout;
        let mut late = Vec::new();
        let mut late_ack = Vec::new();
        for (leg, s) in &mut self.legs {
            match s {
                LegState::ClientLinking(h) => {
                    if let Err(e) = h.check_timeout(now) {
                        late.push((*leg, e));
                    }
                }
                LegState::Exit(h) => {
                    if let Err(e) = h.check_ack(now, timeout) {
                        late_ack.push((*leg, e));
                    }
                }
                LegState::ClientLinked { .. } => {}
            }
        }
        for (leg, e) in late {
            self.fail_leg(leg, e);
        }
        for (leg, error) in late_ack {
            self.events
                .push_back(ConfluxEvent::LegFailed { leg, error });
        }
        self.check_grace(now);
    }

    // ----- Inbound -----

    /// A relay message arrived on `leg` from its last hop (the driver
    /// checks the hop: Conflux messages from any other hop are a violation
    /// of its own, prop 329 §4.2.1; and Conflux messages on a circuit that
    /// is not a leg). Conflux messages are handled, multiplexed ones
    /// sequenced; anything else is given back.
    pub fn handle_msg(
        &mut self,
        leg: LegId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<Handled, ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        self.resize_reorder(now, &[]);
        // Braid's LINK/LINKED extensions (proposal 001 §2.2).
        let (msg, cap) = match super::ext::split(msg) {
            Ok(split) => split,
            Err(e) => return self.violation(leg, e),
        };
        if cap.is_some() && matches!(msg, AnyRelayMsg::ConfluxLinked(_)) {
            self.peer_offers_resumption();
        }
        let Some(state) = self.legs.get_mut(&leg) else {
            return Err(ConfluxError::NoSuchLeg { leg });
        };
        let cmd = msg.cmd();
        match msg {
            AnyRelayMsg::ConfluxLinked(linked) => {
                let r = match state {
                    LegState::Exit(_) => Err(ConfluxError::WrongDirection { leg, cmd }),
                    LegState::ClientLinked { .. } => Err(ConfluxError::LinkedTwice { leg }),
                    LegState::ClientLinking(h) => match h.handle_linked(&linked, now) {
                        Ok(out) => {
                            let ours = h.ours().clone();
                            *state = LegState::ClientLinked { rtt: out.rtt };
                            let resuming = self.resume.is_some() && self.linked;
                            // Starting numbers from our LINK (§2.4.4); on a
                            // resumed leg we resend from what the exit
                            // says it has.
                            self.send.add_leg(
                                leg,
                                if resuming {
                                    out.peer.last_seqno_recv
                                } else {
                                    ours.last_seqno_sent
                                },
                            );
                            self.recv.add_leg(leg, ours.last_seqno_recv);
                            if resuming {
                                self.expect_resends(leg, &ours, &out.peer);
                                let _ = self.resume_on(leg, out.peer.last_seqno_recv, now);
                            }
                            self.peer_ux = Some(out.peer.desired_ux);
                            self.transmit.push_back((leg, out.ack.into()));
                            self.events.push_back(ConfluxEvent::LegLinked {
                                leg,
                                rtt: Some(out.rtt),
                            });
                            self.maybe_finalize();
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                match r {
                    Ok(()) => Ok(Handled::Consumed),
                    Err(e) => self.violation(leg, e),
                }
            }
            AnyRelayMsg::ConfluxLinkedAck(_) => {
                let r = match state {
                    LegState::Exit(h) => h.handle_linked_ack(now),
                    _ => Err(ConfluxError::WrongDirection { leg, cmd }),
                };
                match r {
                    Ok(rtt) => {
                        self.events.push_back(ConfluxEvent::LegRtt { leg, rtt });
                        Ok(Handled::Consumed)
                    }
                    Err(e) => self.violation(leg, e),
                }
            }
            AnyRelayMsg::ConfluxLink(_) => {
                let e = match state {
                    LegState::Exit(_) => ConfluxError::LinkTwice { leg },
                    _ => ConfluxError::WrongDirection { leg, cmd },
                };
                self.violation(leg, e)
            }
            AnyRelayMsg::ConfluxSwitch(sw) => {
                if !state.is_linked() {
                    return self.violation(leg, ConfluxError::NotLinkedLeg { leg, cmd });
                }
                let reorder = &self.reorder;
                if let Err(e) = self
                    .recv
                    .on_switch(leg, sw.seqno(), |n| reorder.unreceived_upto(n))
                {
                    return Err(self.fail(e));
                }
                self.stats_mut(leg).switches_received += 1;
                self.check_gap(leg)?;
                Ok(Handled::Consumed)
            }
            _ if cmd == RelayCmd::BEGIN_DIR => {
                self.violation(leg, ConfluxError::BeginDirOnLeg { leg })
            }
            msg if is_multiplexed(cmd) => {
                if !state.is_linked() {
                    return self.violation(leg, ConfluxError::NotLinkedLeg { leg, cmd });
                }
                self.sequenced(leg, stream, msg)?;
                Ok(Handled::Consumed)
            }
            msg => Ok(Handled::NotConflux { stream, msg }),
        }
    }

    /// A multiplexed message on linked `leg`.
    fn sequenced(
        &mut self,
        leg: LegId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
    ) -> Result<(), ConfluxError> {
        let seq = self.recv.on_cell(leg).map_err(|e| self.fail(e))?;
        self.count_resend(leg, seq);
        let st = self.stats_mut(leg);
        st.msgs_received += 1;
        if let AnyRelayMsg::Data(d) = &msg {
            st.data_bytes_received += d.as_ref().len() as u64;
        }
        let cost = msg_cost(&msg);
        let d = Delivered {
            seq,
            leg,
            stream,
            msg,
        };
        if let Err(e) = self.reorder.insert(seq, d, cost) {
            if self.resume.is_some()
                && matches!(
                    e,
                    ReorderError::Stale { .. } | ReorderError::Duplicate { .. }
                )
            {
                // A resent message we already had (Braid proposal 001
                // §3.3): dropped, not counted against the bound.
                return Ok(());
            }
            let e = match e {
                ReorderError::Stale { seq, delivered } => ConfluxError::StaleSeq {
                    leg,
                    seq,
                    delivered,
                },
                ReorderError::Duplicate { seq } => ConfluxError::DuplicateSeq { leg, seq },
                ReorderError::TooFarAhead {
                    seq,
                    expected,
                    max_ahead,
                } => ConfluxError::SeqTooFarAhead {
                    leg,
                    seq,
                    expected,
                    max_ahead,
                },
                ReorderError::Full {
                    cells,
                    bytes,
                    limit,
                } => ConfluxError::ReorderQueueFull {
                    expected: self.reorder.expected(),
                    legs: self.recv.describe(),
                    cells,
                    bytes,
                    max_cells: limit.max_cells,
                    max_bytes: limit.max_bytes,
                },
            };
            return Err(self.fail(e));
        }
        self.check_gap(leg)
    }

    /// Receive side, exact: fail if the next needed sequence number can no
    /// longer arrive on any linked leg.
    fn check_gap(&mut self, leg: LegId) -> Result<(), ConfluxError> {
        if self.resume.is_some() {
            // A resumed leg brings what is missing (Braid proposal 001).
            return Ok(());
        }
        match self.recv.can_still_arrive(self.reorder.expected()) {
            Some(true) => Ok(()),
            Some(false) => Err(self.fail(ConfluxError::LegLost {
                leg,
                rule: LegLossRule::GapCannotFill,
            })),
            None => Err(self.fail(ConfluxError::LegLost {
                leg,
                rule: LegLossRule::NoLegsLeft,
            })),
        }
    }

    /// The circuit of `leg` closed (DESTROY, TRUNCATED, our own close).
    ///
    /// A leg still linking just leaves (prop 329 §2.4.3: the client may
    /// relaunch one, [`Self::add_leg`]). For a linked leg the set goes on
    /// with the others unless one of these holds, in which case it closes
    /// (`Err`, [`ConfluxError::LegLost`]):
    ///
    /// Send side, as C-tor's `cfx_del_leg` (we cannot know what the peer
    /// received; SENDMEs only acknowledge every `sendme_inc` DATA cells):
    /// 1. the leg was our current sending leg (the last multiplexed message
    ///    went on it) — [`LegLossRule::CurrentSendingLeg`];
    /// 2. its `last_seq_sent` is strictly above every other leg's — our
    ///    latest cells went on it — [`LegLossRule::HighestSeqSent`];
    /// 3. it had `inflight >= sendme_inc` DATA cells unacknowledged —
    ///    [`LegLossRule::DataInFlight`].
    ///
    /// Receive side, exact (where C-tor guesses with "had the highest
    /// `last_seq_recv`"): 4. the next sequence number we need can no
    /// longer arrive, because every remaining leg has already received
    /// past it — [`LegLossRule::GapCannotFill`]. Checked here and on every
    /// later SWITCH or cell, so a loss that only shows once the other legs
    /// move on is caught then.
    ///
    /// 5. no linked leg is left — [`LegLossRule::NoLegsLeft`].
    pub fn leg_closed(
        &mut self,
        leg: LegId,
        info: LegClosedInfo,
        now: Instant,
    ) -> Result<(), ConfluxError> {
        let Some(state) = self.legs.get(&leg) else {
            return Err(ConfluxError::NoSuchLeg { leg });
        };
        if !state.is_linked() {
            self.legs.remove(&leg);
            self.maybe_finalize();
            return Ok(());
        }
        self.legs.remove(&leg);
        self.snapshot_seqs(leg);
        if self.closed.is_some() {
            self.send.remove_leg(leg);
            self.recv.remove_leg(leg);
            return Ok(());
        }
        if self.resume.is_some() {
            // Braid proposal 001 §3.3: what it carried is resent on the
            // next leg; none of the data-loss rules apply.
            self.resumable_leg_closed(leg, now);
            return Ok(());
        }
        let was_current = self.send.current() == Some(leg);
        let highest = match (self.send.leg_last_sent(leg), self.send.max_other_than(leg)) {
            (Some(mine), Some(others)) => mine > others,
            _ => false,
        };
        self.send.remove_leg(leg);
        self.recv.remove_leg(leg);
        let rule = if self.linked_legs() == 0 {
            Some(LegLossRule::NoLegsLeft)
        } else if was_current {
            Some(LegLossRule::CurrentSendingLeg)
        } else if highest {
            Some(LegLossRule::HighestSeqSent)
        } else if info.sendme_inc > 0 && info.inflight >= info.sendme_inc {
            Some(LegLossRule::DataInFlight)
        } else {
            None
        };
        if let Some(rule) = rule {
            return Err(self.fail(ConfluxError::LegLost { leg, rule }));
        }
        self.check_gap(leg)
    }

    // ----- Outbound -----

    /// Send a multiplexed message (prop 329 §2.8), on the leg `chooser`
    /// picks among the linked legs (with `cc`, the driver's congestion
    /// figures per leg). If the chooser holds, DATA is given back
    /// ([`SendOutcome::Blocked`]) and other commands go on the current leg
    /// (prop 329 §2.5).
    pub fn send(
        &mut self,
        chooser: &mut dyn LegChooser,
        cc: &[(LegId, LegCc)],
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<SendOutcome, ConfluxError> {
        self.check_can_send(msg.cmd())?;
        self.resize_reorder(now, cc);
        let cmd = msg.cmd();
        if cmd == RelayCmd::DATA && (self.retransmit_full() || self.gap_pending) {
            // Braid proposal 001 §3.2: never drop what is unacknowledged.
            return Ok(SendOutcome::Blocked { stream, msg });
        }
        let mut infos = std::mem::take(&mut self.infos);
        self.fill_leg_infos(cc, &mut infos);
        if !self.resend.is_empty() {
            // A resumed leg takes nothing new before its resends.
            infos.retain(|i| !self.has_resend(i.leg));
        }
        if infos.is_empty() && self.resume.is_some() {
            // A resumable set between legs (all lost, or the only one
            // still resending): the message waits for one (Braid
            // proposal 001 §3.4); it is not an error.
            self.infos = infos;
            return Ok(SendOutcome::Blocked { stream, msg });
        }
        let current = self.send.current();
        let chosen = chooser
            .choose(&infos, current, cmd, now)
            .filter(|l| infos.iter().any(|i| i.leg == *l));
        let leg = match chosen {
            Some(l) => Ok(Some(l)),
            None if cmd == RelayCmd::DATA => Ok(None),
            None => match current.filter(|c| infos.iter().any(|i| i.leg == *c)) {
                Some(c) => Ok(Some(c)),
                None => infos
                    .iter()
                    .min_by_key(|i| (i.rtt().is_none(), i.rtt(), i.leg))
                    .map(|i| Some(i.leg))
                    .ok_or(ConfluxError::NotLinked),
            },
        };
        self.infos = infos;
        match leg? {
            Some(leg) => self.send_on(leg, stream, msg).map(SendOutcome::Sent),
            None => Ok(SendOutcome::Blocked { stream, msg }),
        }
    }

    /// Send a multiplexed message on `leg`, chosen by the caller. The
    /// returned [`Outgoing::leg`] may differ: when another leg is about to
    /// fall 2^31 sequence numbers behind, the message goes there instead
    /// (prop 329 §2.6).
    pub fn send_on(
        &mut self,
        leg: LegId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
    ) -> Result<Outgoing, ConfluxError> {
        self.check_can_send(msg.cmd())?;
        if !self.legs.get(&leg).is_some_and(LegState::is_linked) {
            return Err(ConfluxError::NoSuchLeg { leg });
        }
        let leg = self.send.forced_leg(leg);
        let switch = self.send.on_send(leg)?;
        if let Some(seq) = self.send.leg_last_sent(leg) {
            self.keep_sent(leg, seq, stream, &msg);
        }
        let st = self.stats_mut(leg);
        st.msgs_sent += 1;
        st.switches_sent += u64::from(switch.is_some());
        if let AnyRelayMsg::Data(d) = &msg {
            st.data_bytes_sent += d.as_ref().len() as u64;
        }
        Ok(Outgoing {
            leg,
            switch: switch.map(ConfluxSwitch::new),
            stream,
            msg,
        })
    }

    /// Whether a multiplexed `cmd` may be sent now.
    fn check_can_send(&self, cmd: RelayCmd) -> Result<(), ConfluxError> {
        if self.closed.is_some() {
            return Err(ConfluxError::Closed);
        }
        if !is_multiplexed(cmd) {
            return Err(ConfluxError::NotMultiplexed { cmd });
        }
        if !self.linked {
            return Err(ConfluxError::NotLinked);
        }
        Ok(())
    }
}
