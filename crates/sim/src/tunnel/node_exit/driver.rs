//! [`NodeExit`]: braid-core's [`RelayNode`] as every circuit's exit, the
//! simulation playing its driver on the virtual clock (as crates/relay
//! `run/node_task.rs` does on tokio).
//!
//! Each middle relay has one channel to the node, opened by the middle
//! ([`Peer::Relay`] with the middle's identities, the node the responder):
//! the middle's CREATE2, RELAY, RELAY_EARLY and DESTROY cells go in with
//! [`RelayNode::handle_cell`] on it, under the circuit id the middle chose
//! (tor-spec §5.1.1: the initiator's ids have the high bit). The node's
//! cells are pulled with [`RelayNode::poll_transmit`] only while the leg's
//! down link has room (a full link is the channel's writer being full:
//! [`RelayNode::set_channel_blocked`], proposal 324 §3.3), so the node's
//! queues, congestion control and scheduler see the links' real
//! back-pressure. Its exit streams are served by [`Destinations`]; its
//! timers run at [`RelayNode::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use braid_core::cc::CcParams;
use braid_core::exit::ExitConfig as StreamLimits;
use braid_core::ids::ChanKey;
use braid_core::relay::{ConfluxExitConfig, NodeEvent, Peer, RelayNode};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};
use tor_cell::chancell::{ChanCell, CircId as WireId};

use super::front::{FromClient, FrontRelays};
use super::server::Destinations;
use crate::tunnel::exit::PathId;
use crate::tunnel::relays::SimRelays;

/// The high bit of the circuit ids the middles choose on their channels
/// to the node (they opened them).
const INITIATOR_BIT: u32 = 0x8000_0000;

/// How the node exit is set up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeExitConfig {
    /// The Conflux exit role: the scheduler is picked by the client's
    /// desired UX unless [`ConfluxExitConfig::scheduler`] fixes it.
    pub conflux: ConfluxExitConfig,
    /// The exit streams' limits.
    pub streams: StreamLimits,
    /// The node's memory limit ([`RelayNode::set_memory_limit`]).
    pub memory_limit: Option<usize>,
    /// Congestion control parameters (the consensus').
    pub cc: CcParams,
}

/// Where the node's cells go: each leg's link toward the client.
pub trait DownLinks {
    /// True if the down link of `path` takes a cell now.
    fn has_room(&mut self, path: PathId) -> bool;
    /// Put `cell` on the down link of `path`.
    fn send(&mut self, path: PathId, cell: AnyChanMsg);
}

/// One circuit through the node.
#[derive(Debug)]
pub struct NodeCircuit {
    /// Its guard and middle.
    pub front: FrontRelays,
    /// Guard, middle, exit.
    pub relays: [usize; 3],
    /// Its id on the middle's channel.
    wire: u32,
    /// The middle's channel, once the CREATE2 went.
    chan: Option<ChanKey>,
}

/// The node exit. See the [module docs](self).
#[derive(Debug)]
pub struct NodeExit {
    /// The node under test.
    pub node: RelayNode,
    /// Circuits by path.
    pub circuits: BTreeMap<PathId, NodeCircuit>,
    /// The destinations of its exit streams.
    pub server: Destinations,
    /// Protocol errors of the client at the front relays, and channels
    /// the node closed.
    pub broken: Vec<String>,
    /// Schedulers of the sets that linked, as the node named them.
    pub schedulers: BTreeSet<&'static str>,
    config: NodeExitConfig,
    /// Channels by middle relay.
    chans: BTreeMap<usize, ChanKey>,
    /// Circuits by channel and id.
    wires: BTreeMap<(ChanKey, u32), PathId>,
    /// Channels whose link was full when the node had cells.
    blocked: BTreeSet<ChanKey>,
    legs_linked: u64,
}

impl NodeExit {
    /// A node with relay `exit_relay`'s identity and onion keys; `None` if
    /// there is no such relay.
    pub fn new(
        relays: &SimRelays,
        exit_relay: usize,
        config: NodeExitConfig,
        seed: u64,
    ) -> Option<Self> {
        let keys = relays.onion_keys(exit_relay)?;
        let id = relays.target(exit_relay, true)?.rsa_id;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6e6f_6465);
        let mut node = RelayNode::new(id, keys, config.cc.clone(), &mut rng);
        node.set_exit(Some(config.streams.clone()));
        node.set_conflux(Some(config.conflux.clone()));
        node.set_memory_limit(config.memory_limit);
        Some(Self {
            node,
            circuits: BTreeMap::new(),
            server: Destinations::default(),
            broken: Vec::new(),
            schedulers: BTreeSet::new(),
            config,
            chans: BTreeMap::new(),
            wires: BTreeMap::new(),
            blocked: BTreeSet::new(),
            legs_linked: 0,
        })
    }

    /// Its settings.
    pub fn config(&self) -> &NodeExitConfig {
        &self.config
    }

    /// A new circuit `path` through `relays` (guard, middle, the node).
    pub fn add_circuit(&mut self, path: PathId, relays: [usize; 3], seed: u64) {
        self.circuits.insert(
            path,
            NodeCircuit {
                front: FrontRelays::new(relays[2], seed),
                relays,
                wire: INITIATOR_BIT | path.wrapping_add(1),
                chan: None,
            },
        );
    }

    /// A cell from the client on `path`, at its guard: the front relays'
    /// answers for the client; what goes on reaches the node at once.
    pub fn from_client(
        &mut self,
        relays: &SimRelays,
        path: PathId,
        cell: AnyChanMsg,
        now: Instant,
    ) -> Vec<(PathId, AnyChanMsg)> {
        let mut out = Vec::new();
        let Some(c) = self.circuits.get_mut(&path) else {
            return out;
        };
        let guard = c.relays[0];
        for r in c.front.from_client(relays, guard, cell) {
            match r {
                FromClient::Reply(cell) => out.push((path, cell)),
                FromClient::ToExit(cell) => self.forward_to_node(relays, path, cell, now, &mut out),
                FromClient::Broken(why) => {
                    self.broken.push(format!("path {path}: {why}"));
                    out.push((path, Destroy::new(DestroyReason::PROTOCOL).into()));
                }
            }
        }
        self.drive(now);
        out
    }

    /// `cell` from the middle of `path` to the node, on the middle's
    /// channel (opened with the first CREATE2).
    fn forward_to_node(
        &mut self,
        relays: &SimRelays,
        path: PathId,
        cell: AnyChanMsg,
        now: Instant,
        out: &mut Vec<(PathId, AnyChanMsg)>,
    ) {
        let Some(c) = self.circuits.get_mut(&path) else {
            return;
        };
        let middle = c.relays[1];
        let chan = match (c.chan, self.chans.get(&middle)) {
            (Some(chan), _) => chan,
            (None, Some(chan)) => *chan,
            (None, None) => {
                let Some(t) = relays.target(middle, false) else {
                    return;
                };
                let peer = Peer::Relay {
                    rsa: t.rsa_id,
                    ed: Some(t.ed_id),
                };
                let chan = self.node.add_channel(peer, false, now);
                self.chans.insert(middle, chan);
                chan
            }
        };
        if c.chan.is_none() {
            c.chan = Some(chan);
            self.wires.insert((chan, c.wire), path);
        }
        let wire = WireId::new(c.wire);
        if let Err(e) = self.node.handle_cell(chan, ChanCell::new(wire, cell), now) {
            // The driver closes a channel whose peer broke the protocol.
            self.broken.push(format!(
                "path {path}: the node closed relay {middle}'s channel: {e}"
            ));
            self.close_channel(chan, now, out);
        }
    }

    /// Channel `chan` is gone: the node closes its circuits; the middles
    /// tell their clients.
    fn close_channel(&mut self, chan: ChanKey, now: Instant, out: &mut Vec<(PathId, AnyChanMsg)>) {
        self.node.channel_closed(chan, now);
        self.chans.retain(|_, c| *c != chan);
        self.blocked.remove(&chan);
        let paths: Vec<PathId> = self
            .wires
            .range((chan, 0)..=(chan, u32::MAX))
            .map(|(_, p)| *p)
            .collect();
        self.wires.retain(|(c, _), _| *c != chan);
        for p in paths {
            if let Some(c) = self.circuits.get_mut(&p)
                && let Some(cell) = c.front.exit_gone()
            {
                out.push((p, cell));
            }
        }
        self.drive(now);
    }

    /// A relay in front of the node on `path` died: the middle's channel
    /// to the node is gone (its other circuits, if any, hear
    /// CHANNEL_CLOSED).
    pub fn relay_died(&mut self, path: PathId, now: Instant) -> Vec<(PathId, AnyChanMsg)> {
        let mut out = Vec::new();
        let Some(c) = self.circuits.get_mut(&path) else {
            return out;
        };
        c.front.closed = true;
        if let Some(chan) = c.chan {
            self.close_channel(chan, now, &mut out);
        }
        out
    }

    /// Pull the node's cells onto the down links while they have room.
    /// True if any cell went.
    pub fn pump(&mut self, downs: &mut dyn DownLinks, now: Instant) -> bool {
        // Every channel is looked at below; the node's hint adds nothing.
        while self.node.poll_ready().is_some() {}
        let mut moved = false;
        let chans: Vec<ChanKey> = self.chans.values().copied().collect();
        for chan in chans {
            loop {
                let room = {
                    let mut paths = self
                        .wires
                        .range((chan, 0)..=(chan, u32::MAX))
                        .map(|(_, p)| *p)
                        .peekable();
                    paths.peek().is_some() && paths.all(|p| downs.has_room(p))
                };
                if !room {
                    if self.blocked.insert(chan) {
                        self.node.set_channel_blocked(chan, true);
                    }
                    break;
                }
                if self.blocked.remove(&chan) {
                    self.node.set_channel_blocked(chan, false);
                }
                let Some(cell) = self.node.poll_transmit(chan, now) else {
                    break;
                };
                moved = true;
                let (id, msg) = cell.into_circid_and_msg();
                let path = self.wires.get(&(chan, WireId::get_or_zero(id))).copied();
                let Some((p, c)) = path.and_then(|p| Some((p, self.circuits.get_mut(&p)?))) else {
                    continue;
                };
                if let Some(cell) = c.front.from_exit(msg) {
                    downs.send(p, cell);
                }
            }
        }
        self.drive(now);
        moved
    }

    /// The node's next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }

    /// Run the node's due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.drive(now);
    }

    /// Act on the node's events: its exit streams' to the destinations.
    fn drive(&mut self, now: Instant) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                NodeEvent::Exit { edge, event } => {
                    self.server.event(&mut self.node, edge, event, now);
                }
                // Every circuit ends at the node: nothing extends from it.
                NodeEvent::Connect { id, .. } => self.node.connect_failed(id, now),
                NodeEvent::CloseChannel { .. } => {}
            }
        }
        let linked = self.node.stats().legs_linked;
        if linked != self.legs_linked {
            self.legs_linked = linked;
            let sets: Vec<_> = self.node.sets().collect();
            for s in sets {
                if let Some(f) = self.node.set_figures(s) {
                    self.schedulers.insert(f.scheduler);
                }
            }
        }
    }

    /// A name for reports: the node and its sets' scheduler.
    pub fn name(&self) -> String {
        let sched = match self.config.conflux.scheduler {
            Some(k) => format!("{} fixed", k.name()),
            None if self.schedulers.is_empty() => "by UX".to_owned(),
            None => format!(
                "{} by UX",
                self.schedulers
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
                    .join("+")
            ),
        };
        format!("braid exit ({sched})")
    }

    /// Bytes each upload destination received.
    pub fn received(&self) -> impl Iterator<Item = u64> + '_ {
        self.server.all().map(|d| d.received)
    }
}
