//! [`RelayNode`]: a relay's channels and circuits, sans-IO.
//!
//! The node owns every open channel's circuit map ([`ChannelMux`]) and
//! every circuit ([`RelayCircuit`]), and routes cells between them: a
//! CREATE2 or CREATE_FAST from a peer opens a circuit (answered with our
//! onion keys), an EXTEND2 continues it on a channel to the next relay
//! (reusing one that relay authenticated on, or asking the driver to open
//! one: [`NodeEvent::Connect`]), cells pass both ways, DESTROYs and closed
//! channels end what they must. A circuit's cells wait in its own bounded
//! queues until the channel's writer takes them
//! ([`RelayNode::poll_transmit`]): the driver pulls as fast as the socket
//! drains, so a slow channel holds back its own circuits only, and a
//! circuit that overfills closes alone.
//!
//! As a circuit's edge the node answers what a non-exit relay answers:
//! BEGIN and RESOLVE get END EXITPOLICY, BEGIN_DIR END NOTDIRECTORY
//! (tor-spec §6.2; C-tor `connection_exit_begin_conn`). With the exit role
//! ([`RelayNode::set_exit`]) a circuit's stream messages go to its own
//! [`ExitStreamMap`] instead, whose requests reach the driver as
//! [`NodeEvent::Exit`] and whose answers the driver gives through
//! [`RelayNode::exit`] (see the `exit_role` submodule).
//!
//! The driver's loop: feed cells ([`RelayNode::handle_cell`]) and answers,
//! take events ([`RelayNode::poll_event`]), then for every channel
//! [`RelayNode::poll_ready`] names, pull cells with
//! [`RelayNode::poll_transmit`] while its writer has room; sleep until
//! [`RelayNode::poll_timeout`], then [`RelayNode::handle_timeout`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};
use tor_cell::chancell::{AnyChanCell, ChanCell};
use tor_cell::relaycell::msg::{AnyRelayMsg, End, EndReason};
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::cc::{CcParams, FlowParams};
use crate::channel::{ChannelError, ChannelMux, Inbound, MuxConfig};
use crate::exit::{ExitConfig, ExitEvent, ExitStreamMap};
use crate::ids::{ChanKey, CircId, CircKey, EdgeKey, LegId, SetKey};

use super::circuit::{ExtendRequest, RelayCircEvent, RelayCircuit};
use super::create::{OnionKeys, answer_create_fast, answer_create2};
use super::ewma::{CellEwma, DEFAULT_HALFLIFE};

mod conflux_role;
mod exit_role;
mod extend;
#[cfg(feature = "hostile")]
pub mod hostile;
pub mod idle;
mod leg_watch;
mod memory;
mod migrate_role;
pub mod padding;
mod transmit;

use conflux_role::ExitSet;
pub use conflux_role::{ConfluxExitConfig, LINKED_ACK_TIMEOUT, SetFigures, scheduler_for};

pub use memory::CELL_MEM_BYTES;

/// Most circuits a node carries; CREATE beyond it is refused with
/// RESOURCELIMIT.
pub const MAX_CIRCUITS: usize = 16_384;

/// Most circuits one channel's peer may open at a node.
pub const MAX_CIRCUITS_PER_CHANNEL: usize = 2_048;

/// Who is at the other end of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A client (it did not authenticate).
    Client,
    /// A relay that proved these identities (tor-spec §4.4).
    Relay {
        /// Its RSA identity.
        rsa: RsaIdentity,
        /// Its Ed25519 identity.
        ed: Option<Ed25519Identity>,
    },
}

/// A request to the driver to open a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectId(pub u64);

/// What the node asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// Open a channel to this relay (TLS, then the link handshake,
    /// authenticating as a relay), then [`RelayNode::add_channel`] and
    /// [`RelayNode::connect_done`], or [`RelayNode::connect_failed`].
    Connect {
        /// The request.
        id: ConnectId,
        /// The relay's RSA identity.
        rsa: RsaIdentity,
        /// Its Ed25519 identity, if the client named it.
        ed: Option<Ed25519Identity>,
        /// Where, IPv4 first.
        addrs: Vec<SocketAddr>,
    },
    /// Close this channel (it carried no circuit for its idle timeout:
    /// [`idle`]); then [`RelayNode::channel_closed`].
    CloseChannel {
        /// The channel.
        chan: ChanKey,
        /// Why, for the log.
        why: String,
    },
    /// A request or signal of an exit stream of `edge`, a circuit or a
    /// Conflux set (exit role only): answer through [`RelayNode::exit`].
    /// The stream is `(edge, event.id())`; a `Closed` ends it.
    Exit {
        /// The circuit or set.
        edge: EdgeKey,
        /// What its stream map asks.
        event: ExitEvent,
    },
}

/// Counters of a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Circuits opened by peers.
    pub circuits_created: u64,
    /// CREATEs refused (limits, bad handshakes).
    pub creates_refused: u64,
    /// Circuits extended.
    pub extends: u64,
    /// Circuits closed.
    pub circuits_closed: u64,
    /// Circuits closed to stay under the memory limit.
    pub oom_closed: u64,
    /// Conflux sets made (prop 329, exit role).
    pub sets_created: u64,
    /// Legs linked into sets.
    pub legs_linked: u64,
    /// CONFLUX_LINKs refused (the circuit was closed).
    pub links_refused: u64,
    /// Sets closed to stay under the memory limit.
    pub oom_sets_closed: u64,
    /// PADDING cells sent on quiet channels ([`padding`]).
    pub padding_sent: u64,
}

/// One open channel.
#[derive(Debug)]
struct Chan {
    mux: ChannelMux<CircKey>,
    peer: Peer,
    /// Cells the node itself sends on it (CREATE2s for extensions,
    /// padding), in order; at most one per circuit extending through it.
    out: VecDeque<AnyChanCell>,
    /// Its channel padding ([`padding`]).
    pad: padding::ChanPadding,
    /// When it closes for carrying no circuit ([`idle`]), while it
    /// carries none.
    idle_deadline: Option<Instant>,
    /// Its idle timeout, drawn at opening.
    idle_timeout: Duration,
}

/// One circuit and where it runs.
#[derive(Debug)]
struct NodeCirc {
    circ: RelayCircuit,
    /// The previous hop's channel and our id there (None once gone).
    prev: Option<(ChanKey, CircId)>,
    /// The next hop's channel and our id there.
    next: Option<(ChanKey, CircId)>,
    /// A CREATE2 waiting for a channel to the next relay.
    waiting: Option<ExtendRequest>,
    /// The channel whose peer opened it (for the per-channel limit).
    origin: ChanKey,
    /// Its exit streams, made at the first stream message when we are an
    /// exit.
    streams: Option<ExitStreamMap>,
    /// Its Conflux set and leg, once it linked (its streams are the set's).
    leg: Option<(SetKey, LegId)>,
    /// The deadline filed in [`RelayNode::timers`] for it.
    deadline: Option<Instant>,
    /// Its recent cells toward the previous and the next hop
    /// ([`DIR_PREV`], [`DIR_NEXT`]), for the channels' circuit priority.
    ewma: [CellEwma; 2],
    /// Its bytes in [`RelayNode::queued_bytes`].
    accounted: usize,
    /// Since when its exit streams have held bytes (for the destinations
    /// or for the client): their age for the memory limit, which ranks
    /// circuits by the oldest of this and their oldest queued cell.
    streams_loaded_since: Option<Instant>,
}

/// Index of [`NodeCirc::ewma`] toward the previous hop.
const DIR_PREV: usize = 0;
/// Index of [`NodeCirc::ewma`] toward the next hop.
const DIR_NEXT: usize = 1;

/// A relay's channels and circuits. See the [module docs](self).
#[derive(Debug)]
pub struct RelayNode {
    own_id: RsaIdentity,
    keys: OnionKeys,
    cc: CcParams,
    rng: StdRng,
    channels: BTreeMap<ChanKey, Chan>,
    circuits: BTreeMap<CircKey, NodeCirc>,
    /// Channels being opened for extensions: whom to, and who waits.
    connects: BTreeMap<ConnectId, (RsaIdentity, Vec<CircKey>)>,
    events: VecDeque<NodeEvent>,
    /// The exit role's stream limits (None: not an exit).
    exit: Option<ExitConfig>,
    /// XON/XOFF parameters for exit streams on circuits with congestion
    /// control.
    flow: FlowParams,
    /// Circuits' and sets' next deadlines, earliest first.
    timers: BTreeSet<(Instant, EdgeKey)>,
    /// Conflux sets (exit role with [`ConfluxExitConfig`]).
    sets: BTreeMap<SetKey, ExitSet>,
    /// Sets by nonce (the full 32 bytes, TROVE-2026-004).
    set_nonces: std::collections::HashMap<[u8; 32], SetKey>,
    /// The Conflux exit role's settings (None: LINK is not answered).
    conflux: Option<ConfluxExitConfig>,
    /// Channels that may have cells to send, for [`Self::poll_ready`].
    ready: BTreeSet<ChanKey>,
    /// Circuits each channel's peer opened here (the per-channel limit).
    opened_on: BTreeMap<ChanKey, usize>,
    /// Half-life of the circuits' cell counts ([`super::ewma`]).
    halflife: Duration,
    /// The bound on [`Self::queued_bytes`].
    mem_limit: Option<usize>,
    /// Bytes in circuits' queues and exit buffers.
    queued_bytes: usize,
    next_chan: u64,
    next_circ: u64,
    next_connect: u64,
    next_set: u64,
    stats: NodeStats,
    /// Live stream migration's tokens (Braid proposal 001 §4.1).
    tokens: crate::exit::MigrateTokens,
    /// Maps with migration requests to carry out.
    mig_dirty: BTreeSet<EdgeKey>,
    /// Requests are being carried out (no reentry).
    mig_running: bool,
    /// The consensus' channel padding parameters.
    padding: crate::channel::padding::PaddingParams,
    /// The next look for channels to pad.
    pad_check: Option<Instant>,
    /// Channels whose padding falls due soon, by time.
    pad_due: BTreeSet<(Instant, ChanKey)>,
    /// Channels without circuits, by the time they close ([`idle`]).
    idle_timers: BTreeSet<(Instant, ChanKey)>,
}

impl RelayNode {
    /// A node with our identity, onion keys and the consensus' congestion
    /// control parameters.
    pub fn new<R: CryptoRng + ?Sized>(
        own_id: RsaIdentity,
        keys: OnionKeys,
        cc: CcParams,
        rng: &mut R,
    ) -> Self {
        Self {
            own_id,
            keys,
            cc,
            rng: StdRng::from_rng(rng),
            channels: BTreeMap::new(),
            circuits: BTreeMap::new(),
            connects: BTreeMap::new(),
            events: VecDeque::new(),
            exit: None,
            flow: FlowParams::default(),
            timers: BTreeSet::new(),
            sets: BTreeMap::new(),
            set_nonces: std::collections::HashMap::new(),
            conflux: None,
            ready: BTreeSet::new(),
            opened_on: BTreeMap::new(),
            halflife: DEFAULT_HALFLIFE,
            mem_limit: None,
            queued_bytes: 0,
            next_chan: 0,
            next_circ: 0,
            next_connect: 0,
            next_set: 0,
            stats: NodeStats::default(),
            tokens: crate::exit::MigrateTokens::default(),
            mig_dirty: BTreeSet::new(),
            mig_running: false,
            padding: crate::channel::padding::PaddingParams::default(),
            pad_check: None,
            pad_due: BTreeSet::new(),
            idle_timers: BTreeSet::new(),
        }
    }

    /// Replace the onion keys (rotation); circuits keep theirs.
    pub fn set_onion_keys(&mut self, keys: OnionKeys) {
        self.keys = keys;
    }

    /// The consensus' congestion control parameters, for circuits created
    /// from now on (those open keep theirs).
    pub fn set_cc_params(&mut self, cc: CcParams) {
        self.cc = cc;
    }

    /// The half-life of circuit priority (the consensus'
    /// `CircuitPriorityHalflifeMsec`, see [`super::ewma`]).
    pub fn set_ewma_halflife(&mut self, halflife: Duration) {
        self.halflife = halflife;
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Circuits carried.
    pub fn circuit_count(&self) -> usize {
        self.circuits.len()
    }

    /// Open channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// A channel whose link handshake is done at `now`: `peer` as it
    /// proved itself, `initiator` if we opened it. Its idle time runs until
    /// it carries a circuit ([`idle`]).
    pub fn add_channel(&mut self, peer: Peer, initiator: bool, now: Instant) -> ChanKey {
        let key = ChanKey(self.next_chan);
        self.next_chan += 1;
        let idle_timeout = self.draw_idle_timeout(peer);
        // A relay flushes the DESTROYs a C-tor peer holds (see
        // `MuxConfig::destroy_probe`) on any channel to a relay, opened by
        // either side: an exit learns late that a leg through a dead guard
        // is gone when the middle holds that leg's DESTROY behind
        // another's, and keeps sending into it. A relay accepts CREATE_FAST
        // from a relay on a channel it opened (C-tor `command.c`: only
        // clients refuse); a client never gets one.
        let destroy_probe = initiator || matches!(peer, Peer::Relay { .. });
        let config = MuxConfig {
            initiator,
            ignore_create: false,
            destroy_probe,
            overflow_reason: DestroyReason::RESOURCELIMIT,
        };
        self.channels.insert(
            key,
            Chan {
                mux: ChannelMux::new(config),
                peer,
                out: VecDeque::new(),
                pad: padding::ChanPadding::default(),
                idle_deadline: None,
                idle_timeout,
            },
        );
        self.start_idle(key, now);
        key
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    // ----- Cells in -----

    /// A cell read from channel `chan`. An error is the peer's fault and
    /// ends the channel: the driver closes it and calls
    /// [`Self::channel_closed`].
    pub fn handle_cell(
        &mut self,
        chan: ChanKey,
        cell: AnyChanCell,
        now: Instant,
    ) -> Result<(), ChannelError> {
        let Some(c) = self.channels.get_mut(&chan) else {
            return Ok(());
        };
        c.pad.note_xfer(now);
        if let AnyChanMsg::PaddingNegotiate(p) = cell.msg() {
            self.padding_negotiate(chan, p, now);
            return Ok(());
        }
        // The multiplexer may answer on its own (a DESTROY).
        self.ready.insert(chan);
        let touched = match c.mux.handle_cell(cell, &mut self.rng)? {
            Inbound::Deliver { entry, msg, .. } => {
                let key = *entry;
                self.deliver(key, chan, msg, now);
                Some(key)
            }
            Inbound::Destroyed { entry, msg, .. } => {
                self.deliver(entry, chan, msg, now);
                Some(entry)
            }
            Inbound::PeerCreate { id, msg } => self.peer_create(chan, id, msg, now),
            Inbound::Ignored { .. } => None,
        };
        if let Some(key) = touched {
            self.settle(key, now);
            self.check_memory(now);
        }
        // A DESTROY from the peer may have ended its last circuit.
        self.check_idle(chan, now);
        Ok(())
    }

    /// Hand `msg` from `chan` to circuit `key`, as from its previous or
    /// its next hop.
    fn deliver(&mut self, key: CircKey, chan: ChanKey, msg: AnyChanMsg, now: Instant) {
        let Some(nc) = self.circuits.get_mut(&key) else {
            return;
        };
        let destroy = matches!(msg, AnyChanMsg::Destroy(_));
        if nc.prev.is_some_and(|(c, _)| c == chan) {
            if destroy {
                nc.prev = None;
            }
            nc.circ.handle_from_prev(msg, now);
            if let Some(leg) = nc.leg {
                self.leg_heard(leg, now);
            }
        } else if nc.next.is_some_and(|(c, _)| c == chan) {
            if destroy {
                nc.next = None;
            }
            nc.circ.handle_from_next(msg, now);
        }
    }

    /// The peer on `chan` opens circuit `id` with `msg`.
    fn peer_create(
        &mut self,
        chan: ChanKey,
        id: CircId,
        msg: AnyChanMsg,
        now: Instant,
    ) -> Option<CircKey> {
        let on_channel = self.opened_on.get(&chan).copied().unwrap_or(0);
        let refuse = |node: &mut Self, reason| {
            node.stats.creates_refused += 1;
            node.ready.insert(chan);
            if let Some(c) = node.channels.get_mut(&chan) {
                c.out.push_back(ChanCell::new(
                    tor_cell::chancell::CircId::new(id.get()),
                    Destroy::new(reason).into(),
                ));
            }
            None
        };
        if self.circuits.len() >= MAX_CIRCUITS || on_channel >= MAX_CIRCUITS_PER_CHANNEL {
            return refuse(self, DestroyReason::RESOURCELIMIT);
        }
        let answered = match &msg {
            AnyChanMsg::Create2(c) => answer_create2(
                &self.keys,
                c.handshake_type(),
                c.body(),
                &self.cc,
                &mut self.rng,
            ),
            // tor-spec §5.1.5: CREATE_FAST only as the first hop, from the
            // client itself.
            AnyChanMsg::CreateFast(c) => match self.channels.get(&chan).map(|c| c.peer) {
                Some(Peer::Client) => answer_create_fast(c.handshake(), &mut self.rng),
                _ => return refuse(self, DestroyReason::PROTOCOL),
            },
            // The TAP CREATE cell is obsolete (tor-spec §5.1).
            _ => return refuse(self, DestroyReason::PROTOCOL),
        };
        let answered = match answered {
            Ok(a) => a,
            Err(e) => return refuse(self, e.destroy_reason()),
        };
        let key = CircKey(self.next_circ);
        let prev_id = match self.channels.get(&chan).map(|c| c.peer) {
            Some(Peer::Relay { rsa, .. }) => Some(rsa),
            _ => None,
        };
        let c = self.channels.get_mut(&chan)?;
        if c.mux.accept_circuit(id, key).is_err() {
            return refuse(self, DestroyReason::PROTOCOL);
        }
        self.next_circ += 1;
        self.stats.circuits_created += 1;
        *self.opened_on.entry(chan).or_default() += 1;
        if let Some(c) = self.channels.get_mut(&chan) {
            c.pad.used = true;
            self.pad_check.get_or_insert(now + padding::PADDING_CHECK);
        }
        self.stop_idle(chan);
        let circ = RelayCircuit::new(
            answered,
            self.cc.clone(),
            self.own_id,
            prev_id,
            &mut self.rng,
        );
        self.circuits.insert(
            key,
            NodeCirc {
                circ,
                prev: Some((chan, id)),
                next: None,
                waiting: None,
                origin: chan,
                streams: None,
                leg: None,
                deadline: None,
                ewma: [CellEwma::default(); 2],
                accounted: 0,
                streams_loaded_since: None,
            },
        );
        Some(key)
    }

    /// Act on circuit `key`'s events (and its exit streams'), note the
    /// channels it may have cells for and its next deadline; forget it
    /// once closed and drained.
    fn settle(&mut self, key: CircKey, now: Instant) {
        self.settle_quiet(key, now);
        if let Some(nc) = self.circuits.get(&key) {
            for (chan, _) in [nc.prev, nc.next].into_iter().flatten() {
                self.ready.insert(chan);
            }
        }
        self.maybe_release(key, now);
        self.run_migrations(now);
    }

    /// [`Self::settle`] without marking its channels ready or releasing
    /// it: for the writer's own pull ([`Self::poll_transmit`]).
    fn settle_quiet(&mut self, key: CircKey, now: Instant) {
        loop {
            while let Some(ev) = self
                .circuits
                .get_mut(&key)
                .and_then(|c| c.circ.poll_event())
            {
                match ev {
                    RelayCircEvent::Extend(req) => self.extend(key, req),
                    RelayCircEvent::Edge { stream, msg } => self.edge(key, stream, msg, now),
                    RelayCircEvent::Closed { .. } => {
                        self.stats.circuits_closed += 1;
                        if let Some(map) =
                            self.circuits.get_mut(&key).and_then(|c| c.streams.as_mut())
                        {
                            map.handle_circuit_closed();
                        }
                        self.leg_gone(key, now);
                    }
                }
            }
            // Pumping may close the circuit (a failed send): go round
            // again for its Closed.
            if !self.pump_exit(key, now) {
                break;
            }
        }
        self.refresh_timer(key);
        self.account(key, now);
        self.note_migrate_requests(EdgeKey::Circuit(key));
    }

    /// As the edge of circuit `key`: the exit's streams, or a non-exit
    /// relay's refusals.
    fn edge(
        &mut self,
        key: CircKey,
        stream: Option<crate::ids::StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) {
        if self.exit.is_some() {
            self.edge_exit(key, stream, msg, now);
            return;
        }
        let reason = match (&msg, stream) {
            (AnyRelayMsg::Begin(_) | AnyRelayMsg::Resolve(_), Some(_)) => EndReason::EXITPOLICY,
            (AnyRelayMsg::BeginDir(_), Some(_)) => EndReason::NOTDIRECTORY,
            // Anything else on a stream we never opened is dropped (C-tor
            // drops cells for unknown streams).
            _ => return,
        };
        if let Some(nc) = self.circuits.get_mut(&key) {
            let _ = nc
                .circ
                .send(stream, End::new_with_reason(reason).into(), now);
        }
    }

    /// Channel `chan` is gone: its circuits lose that side (tor-spec §5.4:
    /// the circuits of a closed channel are closed, and DESTROY goes to
    /// their other side).
    pub fn channel_closed(&mut self, chan: ChanKey, now: Instant) {
        self.stop_idle(chan);
        if let Some(mut c) = self.channels.remove(&chan) {
            c.mux.clear();
        }
        self.forget_padding(chan);
        self.ready.remove(&chan);
        self.opened_on.remove(&chan);
        let keys: Vec<CircKey> = self.circuits.keys().copied().collect();
        for key in keys {
            if let Some(nc) = self.circuits.get_mut(&key) {
                if nc.prev.is_some_and(|(c, _)| c == chan) {
                    nc.prev = None;
                    nc.circ.handle_prev_gone();
                }
                if nc.next.is_some_and(|(c, _)| c == chan) {
                    nc.next = None;
                    nc.circ.handle_next_gone();
                }
            }
            self.settle(key, now);
        }
    }

    /// Forget circuit `key` once closed with nothing left to send.
    fn maybe_release(&mut self, key: CircKey, now: Instant) {
        let Some(nc) = self.circuits.get(&key) else {
            return;
        };
        let (to_prev, to_next) = nc.circ.queued();
        let prev_done = nc.prev.is_none() || to_prev == 0;
        let next_done = nc.next.is_none() || to_next == 0;
        if !(nc.circ.is_closed() && prev_done && next_done && nc.waiting.is_none()) {
            return;
        }
        let sides = [nc.prev, nc.next];
        let origin = nc.origin;
        if let Some(t) = nc.deadline {
            self.timers.remove(&(t, EdgeKey::Circuit(key)));
        }
        self.queued_bytes -= nc.accounted;
        self.circuits.remove(&key);
        if let Some(n) = self.opened_on.get_mut(&origin) {
            *n = n.saturating_sub(1);
        }
        for (chan, id) in sides.into_iter().flatten() {
            if let Some(c) = self.channels.get_mut(&chan) {
                // Its DESTROY went out (the slot is gone), or the channel
                // never heard of it: forget it without a word.
                c.mux.cancel_circuit(id);
                if c.mux.is_empty() {
                    self.start_idle(chan, now);
                }
            }
        }
    }
}
