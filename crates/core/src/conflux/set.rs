//! [`ConfluxSet`]: N legs to one exit woven into one sequenced tunnel
//! (prop 329 §2).
//!
//! One state machine serves both ends. A client set ([`ConfluxSet::new_client`])
//! launches legs ([`ConfluxSet::add_leg`] sends CONFLUX_LINK), accepts
//! CONFLUX_LINKED and answers LINKED_ACK; an exit set
//! ([`ConfluxSet::new_exit`]) accepts CONFLUX_LINK ([`ConfluxSet::accept_link`])
//! and answers LINKED. Once linked, both ends are symmetric: multiplexed
//! messages go out through [`ConfluxSet::send`] (which picks the leg with a
//! [`LegChooser`](super::LegChooser) and prepends a CONFLUX_SWITCH when
//! the leg changes) and come in through [`ConfluxSet::handle_msg`], in
//! order, via [`ConfluxSet::poll_delivered`].
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
use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxSwitch};

use super::choose::LegInfo;
use super::error::ConfluxError;
use super::link::{ClientLinkHandshake, ConfluxNonce, ExitLinkHandshake};
use super::reorder::{ReorderLimit, ReorderQueue};
use super::seq::{RecvSeq, SendSeq, SwitchWindow};
use super::sizer::ReorderSizer;
use crate::ids::{LegId, StreamId};

mod inbound;
mod legnote;
mod linking;
mod liveness;
mod outbound;
mod queries;
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
    /// Exit: the client's LINK of a new leg named this leg lost (Braid
    /// proposal 001 §3.3). It has left the set, its messages are resent
    /// on the new leg: close its circuit.
    LegDropped {
        /// The leg.
        leg: LegId,
    },
    /// Something went on a linked leg and nothing came back, not even
    /// the answer to a LEG_PING (Braid proposal 001 §3.6): a relay on it
    /// hangs. Close its circuit (with [`ConfluxError::LegSilent`]); the set
    /// learns of the loss from [`ConfluxSet::leg_closed`] as of any.
    LegSilent {
        /// The leg.
        leg: LegId,
        /// Since when it has been silent.
        silent: Duration,
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
    /// Lost legs, what LINKs said of them, the peer's leg numbers
    /// (Braid proposal 001 §3.3, [`legnote`]).
    notes: legnote::LegNotes,
    /// Silent legs (Braid proposal 001 §3.6, [`liveness`]).
    watch: liveness::Watch,
}

impl ConfluxSet {
    /// A client set with `nonce` (fresh, [`ConfluxNonce::random`]).
    pub fn new_client(nonce: ConfluxNonce, config: ConfluxConfig) -> Self {
        Self::new(Role::Client, nonce, config)
    }

    /// An exit set, created when a LINK with an unknown nonce arrives
    /// (read it with [`LinkInfo::from_link`](super::LinkInfo::from_link));
    /// then [`Self::accept_link`].
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
            notes: legnote::LegNotes::default(),
            watch: liveness::Watch::default(),
        }
    }

    // ----- Outputs -----

    /// The next handshake message to send, with its leg (stream id none).
    pub fn poll_transmit(&mut self) -> Option<(LegId, AnyRelayMsg)> {
        let (leg, msg) = self.transmit.pop_front()?;
        Some((leg, self.with_extensions(leg, msg)))
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
    /// (client), LINKED_ACK deadline (exit), grace end, leg probe.
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
            .chain(self.probe_deadline())
            .min()
    }

    /// Close the set on a local decision `e` (out of memory, the relay
    /// shutting down): nothing more is sent or delivered. No effect on a
    /// closed set.
    pub fn close(&mut self, e: ConfluxError) {
        let _ = self.fail(e);
    }
}
