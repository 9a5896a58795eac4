//! [`TunnelSim`]: braid-core's real [`ClientTunnel`] against a simulated
//! exit ([`SimExit`], C-tor-like) or braid-core's real relay node
//! ([`NodeExit`], the Braid exit, [`ExitKind`]) over simulated legs, on a
//! virtual clock, deterministic by seed (quinn's `Pair`, neqo's
//! `test-fixture/src/sim`).
//!
//! The simulation plays the driver the real client has: it moves the
//! tunnel's cells onto each leg's up [`Link`] (a full link queue blocks
//! the leg, [`ClientTunnel::set_leg_blocked`]), delivers the exit's cells
//! from the down link, wakes the tunnel at its `poll_timeout`, answers
//! [`TunnelEvent::LegWanted`] with a fresh path, and runs the
//! application ([`App`]). Legs can be killed (a middle dies: the guard
//! sends DESTROY with CHANNEL_CLOSED, cells in flight are lost) and
//! anything can be injected from any hop of any leg.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use braid_core::circuit::HopTarget;
use braid_core::conflux::{ConfluxConfig, ResumeParams};
use braid_core::conflux_sched::SchedulerKind;
use braid_core::ids::{CircId, LegKey, StreamId};
use braid_core::tunnel::{ClientTunnel, LegSpec, TunnelConfig, TunnelError, TunnelEvent};
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};
use tor_cell::relaycell::msg::AnyRelayMsg;

use super::app::{App, Want};
use super::exit::{ExitConfig, PathId, SimExit};
use super::node_exit::{DownLinks, NodeExit, NodeExitConfig};
use super::relays::SimRelays;
use crate::clock::VirtualClock;
use crate::event::EventQueue;
use crate::link::{Link, LinkConfig};
use crate::rng::SimRng;

/// Cells the exit may put on links in one round of its pump.
const EXIT_PUMP_BATCH: usize = 32;

/// The two directions of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegLinks {
    /// Client to exit.
    pub up: LinkConfig,
    /// Exit to client.
    pub down: LinkConfig,
}

impl LegLinks {
    /// `bandwidth` bytes/s and `one_way` delay both ways.
    pub fn symmetric(bandwidth: u64, one_way: Duration) -> Self {
        let l = LinkConfig::new(bandwidth, one_way);
        Self { up: l, down: l }
    }
}

/// Which exit the legs end at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExitKind {
    /// [`SimExit`] as [`SimConfig::exit`] says: a C-tor-like exit (LowRTT
    /// by default).
    #[default]
    Simulated,
    /// braid-core's [`RelayNode`](braid_core::relay::RelayNode), the Braid
    /// exit ([`NodeExit`]).
    Node(Box<NodeExitConfig>),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed of every random draw.
    pub seed: u64,
    /// The tunnel's settings (single circuit or Conflux).
    pub tunnel: TunnelConfig,
    /// The first legs' links (one for a single circuit).
    pub legs: Vec<LegLinks>,
    /// The links of legs launched later.
    pub spare: LegLinks,
    /// Which exit runs.
    pub exit_kind: ExitKind,
    /// How the simulated exit behaves ([`ExitKind::Simulated`]).
    pub exit: ExitConfig,
    /// Relays in the network (guards and middles are drawn from them; the
    /// last is the exit).
    pub relays: usize,
}

impl SimConfig {
    /// `tunnel` over `legs`, with spare legs like the first and a LowRTT
    /// exit.
    pub fn new(seed: u64, tunnel: TunnelConfig, legs: Vec<LegLinks>) -> Self {
        let spare = legs
            .first()
            .copied()
            .unwrap_or_else(|| LegLinks::symmetric(2_000_000, Duration::from_millis(20)));
        Self {
            seed,
            tunnel,
            legs,
            spare,
            exit_kind: ExitKind::Simulated,
            exit: ExitConfig::default(),
            relays: 40,
        }
    }

    /// The same with braid-core's relay node as the exit.
    pub fn with_node_exit(self, node: NodeExitConfig) -> Self {
        Self {
            exit_kind: ExitKind::Node(Box::new(node)),
            ..self
        }
    }

    /// A Conflux set (ECF) over `legs` to the Braid exit (braid-core's
    /// relay node), both ends offering resumption (Braid proposal 001): the
    /// client with `client`, the exit with the defaults.
    pub fn resumable(seed: u64, legs: Vec<LegLinks>, client: ResumeParams) -> Self {
        let mut tunnel = TunnelConfig::conflux(ConfluxConfig::client(), SchedulerKind::Ecf);
        tunnel.resume = Some(client);
        let mut node = NodeExitConfig::default();
        node.conflux.resume = Some(ResumeParams::default());
        Self::new(seed, tunnel, legs).with_node_exit(node)
    }
}

/// One simulated leg.
#[derive(Debug)]
pub struct SimLeg {
    /// The tunnel's name for it.
    pub key: LegKey,
    /// Guard, middle, exit.
    pub relays: [usize; 3],
    /// Client to exit.
    up: Link,
    /// Exit to client.
    down: Link,
    /// A cell the up link refused; the leg is blocked until it goes.
    pending: Option<AnyChanMsg>,
    /// A wake-up for the up link is scheduled.
    up_wake: bool,
    /// Killed: traffic on it is lost.
    pub dead: bool,
    /// The tunnel released it.
    pub released: bool,
    /// Cells the client sent on it.
    pub cells_up: u64,
    /// Cells the client received on it.
    pub cells_down: u64,
    /// DESTROY cells the client sent on it.
    pub destroys_sent: u32,
    /// Cells the client sent after the leg was killed or released.
    pub cells_after_end: u64,
}

#[derive(Debug)]
enum Ev {
    /// A cell reaches the exit side.
    ToExit(PathId, AnyChanMsg),
    /// A cell reaches the client.
    ToClient(PathId, AnyChanMsg),
    /// The guard of a killed leg tells the client.
    GuardDestroy(PathId),
    /// The exit learns a killed leg is gone.
    ExitGone(PathId),
    /// The tunnel's timer.
    Wake,
    /// An up link has room again.
    UpFree(PathId),
    /// A down link has room again.
    DownFree,
}

/// The simulation. See the [module docs](self).
#[derive(Debug)]
pub struct TunnelSim {
    /// Virtual time.
    pub clock: VirtualClock,
    queue: EventQueue<Ev>,
    /// The tunnel under test.
    pub client: ClientTunnel,
    /// The simulated exit (idle when the node exit runs).
    pub exit: SimExit,
    /// braid-core's relay node as the exit, when [`ExitKind::Node`].
    pub node_exit: Option<NodeExit>,
    /// The relays.
    pub relays: SimRelays,
    /// Legs by path.
    pub legs: BTreeMap<PathId, SimLeg>,
    /// The application.
    pub app: App,
    /// Every event the tunnel gave but stream events, with its time.
    pub log: Vec<(Duration, TunnelEvent)>,
    /// Stream events the tunnel gave.
    pub stream_events: u64,
    /// Answer `LegWanted` with `leg_unavailable`.
    pub refuse_legs: bool,
    /// Relays (by index) that black-hole EXTEND2s to them on new circuits.
    pub black_holes: Vec<usize>,
    spare: LegLinks,
    seed: u64,
    next_path: PathId,
    exit_relay: usize,
    /// Relays used by any leg so far (a relaunch takes fresh ones).
    used: Vec<usize>,
    wake_at: Option<Instant>,
    down_wake: bool,
}

impl TunnelSim {
    /// A simulation as `config` says; the tunnel's first cells are queued.
    pub fn new(config: SimConfig) -> Result<Self, TunnelError> {
        let base = Instant::now();
        let clock = VirtualClock::new(base);
        let relays = SimRelays::new(config.relays.max(3), config.seed);
        let exit_relay = relays.len() - 1;
        let mut sim_legs = BTreeMap::new();
        let mut specs = Vec::new();
        let mut used = Vec::new();
        for (i, links) in config.legs.iter().enumerate() {
            let path = PathId::try_from(i).unwrap_or(0);
            let (g, m) = (2 * i, 2 * i + 1);
            used.extend([g, m]);
            specs.push(Self::spec(&relays, path, [g, m, exit_relay])?);
            sim_legs.insert(
                path,
                Self::sim_leg(config.seed, path, *links, [g, m, exit_relay]),
            );
        }
        let mut rng = SimRng::stream(config.seed, 0xc1);
        let mut seed_bytes = [0u8; 32];
        for b in &mut seed_bytes {
            *b = u8::try_from(rng.up_to(255)).unwrap_or(0);
        }
        let mut crng = <rand::rngs::StdRng as rand::SeedableRng>::from_seed(seed_bytes);
        let client = ClientTunnel::new(config.tunnel.clone(), specs, &mut crng, clock.now())?;
        let mut exit = SimExit::new(config.exit.clone());
        let mut node_exit = match &config.exit_kind {
            ExitKind::Simulated => None,
            ExitKind::Node(cfg) => Some(
                NodeExit::new(&relays, exit_relay, (**cfg).clone(), config.seed)
                    .ok_or_else(|| TunnelError::BadLeg("no exit relay".into()))?,
            ),
        };
        // Legs get their keys in creation order: key n is path n.
        let mut legs = BTreeMap::new();
        for (path, mut leg) in sim_legs {
            leg.key = LegKey(path);
            let seed = config.seed ^ u64::from(path);
            match node_exit.as_mut() {
                Some(n) => n.add_circuit(path, leg.relays, seed),
                None => exit.add_circuit(path, leg.relays[0], seed),
            }
            legs.insert(path, leg);
        }
        let next_path = PathId::try_from(config.legs.len()).unwrap_or(0);
        let mut sim = Self {
            clock,
            queue: EventQueue::new(),
            client,
            exit,
            node_exit,
            relays,
            legs,
            app: App::default(),
            log: Vec::new(),
            stream_events: 0,
            refuse_legs: false,
            black_holes: Vec::new(),
            spare: config.spare,
            seed: config.seed,
            next_path,
            exit_relay,
            used,
            wake_at: None,
            down_wake: false,
        };
        sim.flush();
        Ok(sim)
    }

    /// The circuit spec of a leg through `relays`.
    fn spec(relays: &SimRelays, path: PathId, through: [usize; 3]) -> Result<LegSpec, TunnelError> {
        let hops: Option<Vec<HopTarget>> = through
            .iter()
            .enumerate()
            .map(|(i, r)| relays.target(*r, i == 2))
            .collect();
        Ok(LegSpec {
            circ_id: CircId::new(0x8000_0000 | (path + 1))
                .ok_or_else(|| TunnelError::BadLeg("circuit id".into()))?,
            hops: hops.ok_or_else(|| TunnelError::BadLeg("no such relay".into()))?,
        })
    }

    fn sim_leg(seed: u64, path: PathId, links: LegLinks, relays: [usize; 3]) -> SimLeg {
        SimLeg {
            key: LegKey(u32::MAX),
            relays,
            up: Link::new(links.up, SimRng::stream(seed, 2 * u64::from(path) + 100)),
            down: Link::new(links.down, SimRng::stream(seed, 2 * u64::from(path) + 101)),
            pending: None,
            up_wake: false,
            dead: false,
            released: false,
            cells_up: 0,
            cells_down: 0,
            destroys_sent: 0,
            cells_after_end: 0,
        }
    }

    /// Now, as the core sees it.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The path of leg `key`.
    pub fn path_of(&self, key: LegKey) -> Option<PathId> {
        self.legs
            .iter()
            .find(|(_, l)| l.key == key)
            .map(|(p, _)| *p)
    }

    /// Run until `done` holds (true) or nothing is left to happen or
    /// virtual time passes `limit` (false).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        loop {
            self.flush();
            if done(self) {
                return true;
            }
            let Some(at) = self.queue.peek_time() else {
                return false;
            };
            if at > limit {
                return false;
            }
            let Some((at, ev)) = self.queue.pop() else {
                return false;
            };
            self.clock.advance_to(at);
            self.handle(ev);
        }
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.elapsed() + d;
        self.run_until(until, |_| false);
        self.clock.advance_to(until);
    }

    /// Run until the tunnel is open.
    pub fn run_until_open(&mut self, limit: Duration) -> bool {
        self.run_until(limit, |s| s.client.is_open())
    }

    /// Open a stream (the tunnel must be open).
    pub fn open(&mut self, want: Want) -> Result<StreamId, TunnelError> {
        let now = self.now();
        let id = self.app.open(&mut self.client, want, now)?;
        self.flush();
        Ok(id)
    }

    /// One event.
    fn handle(&mut self, ev: Ev) {
        let now = self.now();
        match ev {
            Ev::ToExit(p, cell) => {
                if self.legs.get(&p).is_none_or(|l| l.dead) {
                    return;
                }
                let out = match self.node_exit.as_mut() {
                    Some(n) => n.from_client(&self.relays, p, cell, now),
                    None => self.exit.from_client(&self.relays, p, cell, now),
                };
                self.send_down(out);
            }
            Ev::ToClient(p, cell) => {
                let Some(l) = self.legs.get_mut(&p).filter(|l| !l.dead && !l.released) else {
                    return;
                };
                l.cells_down += 1;
                let key = l.key;
                self.client.handle_cell(key, cell, now);
            }
            Ev::GuardDestroy(p) => {
                if let Some(l) = self.legs.get(&p).filter(|l| !l.released) {
                    let key = l.key;
                    let cell = Destroy::new(DestroyReason::CHANNEL_CLOSED).into();
                    self.client.handle_cell(key, cell, now);
                }
            }
            Ev::ExitGone(p) => {
                let mut out = Vec::new();
                match self.node_exit.as_mut() {
                    Some(n) => out = n.relay_died(p, now),
                    None => self.exit.circuit_gone(p, now, &mut out),
                }
                self.send_down(out);
            }
            Ev::Wake => {
                self.wake_at = None;
                if self.client.poll_timeout().is_some_and(|t| t <= now) {
                    self.client.handle_timeout(now);
                }
                if let Some(n) = self.node_exit.as_mut() {
                    n.handle_timeout(now);
                }
            }
            Ev::UpFree(p) => {
                let offset = self.elapsed();
                let Some(l) = self.legs.get_mut(&p) else {
                    return;
                };
                l.up_wake = false;
                if let Some(cell) = l.pending.take() {
                    match l.up.try_send(offset) {
                        Some(at) => {
                            l.cells_up += 1;
                            let key = l.key;
                            self.queue.push(at, Ev::ToExit(p, cell));
                            self.client.set_leg_blocked(key, false);
                        }
                        None => {
                            l.pending = Some(cell);
                            if let Some(t) = l.up.next_departure() {
                                l.up_wake = true;
                                self.queue.push(t, Ev::UpFree(p));
                            }
                        }
                    }
                }
            }
            Ev::DownFree => self.down_wake = false,
        }
    }

    /// Cells from the exit onto the down links.
    fn send_down(&mut self, cells: Vec<(PathId, AnyChanMsg)>) {
        let offset = self.elapsed();
        for (p, cell) in cells {
            if let Some(l) = self.legs.get_mut(&p).filter(|l| !l.dead) {
                let at = l.down.send(offset);
                self.queue.push(at, Ev::ToClient(p, cell));
            }
        }
    }

    /// Move everything the tunnel, the application and the exit have.
    fn flush(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            moved |= self.client_transmit();
            moved |= self.client_events();
            moved |= self.exit_pump();
            if !moved {
                break;
            }
        }
        let node_t = self.node_exit.as_ref().and_then(NodeExit::poll_timeout);
        let next = [self.client.poll_timeout(), node_t]
            .into_iter()
            .flatten()
            .min();
        if let Some(t) = next
            && self.wake_at.is_none_or(|w| t < w)
        {
            self.wake_at = Some(t);
            let offset = t.saturating_duration_since(self.clock.at(Duration::ZERO));
            self.queue.push(offset.max(self.elapsed()), Ev::Wake);
        }
    }

    /// The tunnel's cells onto up links. True if any.
    fn client_transmit(&mut self) -> bool {
        let now = self.now();
        let offset = self.elapsed();
        let mut moved = false;
        while let Some((key, cell)) = self.client.poll_transmit(now) {
            moved = true;
            let Some((p, l)) = self.legs.iter_mut().find(|(_, l)| l.key == key) else {
                continue;
            };
            let p = *p;
            if matches!(cell, AnyChanMsg::Destroy(_)) {
                l.destroys_sent += 1;
            }
            if l.dead || l.released {
                l.cells_after_end += 1;
                continue;
            }
            match l.up.try_send(offset) {
                Some(at) => {
                    l.cells_up += 1;
                    self.queue.push(at, Ev::ToExit(p, cell));
                }
                None => {
                    l.pending = Some(cell);
                    self.client.set_leg_blocked(key, true);
                    if !l.up_wake
                        && let Some(t) = l.up.next_departure()
                    {
                        l.up_wake = true;
                        self.queue.push(t, Ev::UpFree(p));
                    }
                }
            }
        }
        moved
    }

    /// The tunnel's events, acted on as a driver would. True if any.
    fn client_events(&mut self) -> bool {
        let now = self.now();
        let mut moved = false;
        while let Some(ev) = self.client.poll_event() {
            moved = true;
            if !matches!(ev, TunnelEvent::Stream(_)) {
                self.log.push((self.elapsed(), ev.clone()));
            }
            match ev {
                TunnelEvent::Stream(s) => {
                    self.stream_events += 1;
                    self.app.on_event(&mut self.client, s, now);
                }
                TunnelEvent::LegWanted { avoid, .. } => self.new_leg(&avoid),
                TunnelEvent::LegReleased { leg } => {
                    if let Some(l) = self.legs.values_mut().find(|l| l.key == leg) {
                        l.released = true;
                    }
                }
                _ => {}
            }
        }
        moved
    }

    /// Answer a `LegWanted`: fresh guard and middle, none of `avoid`.
    fn new_leg(&mut self, avoid: &[tor_llcrypto::pk::rsa::RsaIdentity]) {
        let now = self.now();
        if self.refuse_legs {
            self.client
                .leg_unavailable("refused by the test".into(), now);
            return;
        }
        let free: Vec<usize> = (0..self.exit_relay)
            .filter(|r| !self.used.contains(r))
            .filter(|r| {
                self.relays
                    .target(*r, false)
                    .is_some_and(|t| !avoid.contains(&t.rsa_id))
            })
            .take(2)
            .collect();
        let (Some(&g), Some(&m)) = (free.first(), free.get(1)) else {
            self.client.leg_unavailable("no relays left".into(), now);
            return;
        };
        self.used.extend([g, m]);
        let path = self.next_path;
        self.next_path += 1;
        let through = [g, m, self.exit_relay];
        let Ok(spec) = Self::spec(&self.relays, path, through) else {
            self.client.leg_unavailable("no spec".into(), now);
            return;
        };
        let mut leg = Self::sim_leg(self.seed, path, self.spare, through);
        let black_hole = self
            .black_holes
            .iter()
            .copied()
            .find(|r| through.contains(r));
        let seed = self.seed ^ u64::from(path);
        match self.node_exit.as_mut() {
            Some(n) => {
                n.add_circuit(path, through, seed);
                if let Some(c) = n.circuits.get_mut(&path) {
                    c.front.black_hole = black_hole;
                }
            }
            None => {
                self.exit.add_circuit(path, g, seed);
                if let Some(c) = self.exit.circuits.get_mut(&path) {
                    c.relay.black_hole = black_hole;
                }
            }
        }
        match self.client.add_leg(spec, now) {
            Ok(key) => {
                leg.key = key;
                self.legs.insert(path, leg);
            }
            Err(e) => tracing::debug!("add_leg refused: {e}"),
        }
    }

    /// The exit's streams onto the down links, as they have room. True if
    /// any cell went.
    fn exit_pump(&mut self) -> bool {
        let now = self.now();
        let offset = self.elapsed();
        let mut moved = false;
        if let Some(n) = self.node_exit.as_mut() {
            let mut downs = Downs {
                legs: &mut self.legs,
                queue: &mut self.queue,
                offset,
            };
            moved = n.pump(&mut downs, now);
        }
        while self.node_exit.is_none() {
            let mut room: BTreeMap<PathId, bool> = BTreeMap::new();
            for (p, l) in self.legs.iter_mut() {
                room.insert(*p, !l.dead && l.down.has_room(offset));
            }
            let cells = self.exit.pump(
                &|p| room.get(&p).copied().unwrap_or(false),
                now,
                EXIT_PUMP_BATCH,
            );
            if cells.is_empty() {
                break;
            }
            moved = true;
            self.send_down(cells);
        }
        if !self.down_wake {
            let next = self
                .legs
                .values()
                .filter(|l| !l.dead)
                .filter_map(|l| l.down.next_departure())
                .filter(|t| *t > offset)
                .min();
            if let Some(t) = next {
                self.down_wake = true;
                self.queue.push(t, Ev::DownFree);
            }
        }
        moved
    }

    /// A relay on `path` dies mid-path: traffic on the leg is lost from
    /// now; the guard sends the client DESTROY (CHANNEL_CLOSED) one down
    /// delay later, the exit learns one up delay later.
    pub fn kill(&mut self, path: PathId) {
        self.kill_with(path, Duration::ZERO, Duration::ZERO);
    }

    /// [`Self::kill`], but the exit learns of it only `exit_late` after
    /// the client does (a C-tor middle holding the exit's DESTROY behind
    /// another on an idle channel).
    pub fn kill_exit_late(&mut self, path: PathId, exit_late: Duration) {
        self.kill_with(path, Duration::ZERO, exit_late);
    }

    /// [`Self::kill`], but the client's guard sends the DESTROY only
    /// `client_late` after the exit hears (a C-tor guard holding it).
    pub fn kill_client_late(&mut self, path: PathId, client_late: Duration) {
        self.kill_with(path, client_late, Duration::ZERO);
    }

    /// Of the legs not killed or hung, the one that carried the most
    /// cells down.
    pub fn busiest_alive(&self) -> Option<PathId> {
        self.legs
            .iter()
            .filter(|(_, l)| !l.dead)
            .max_by_key(|(_, l)| l.cells_down)
            .map(|(k, _)| *k)
    }

    /// A relay on `path` hangs (a frozen process, a machine cut off):
    /// traffic on the leg is lost from now and nobody closes anything, so
    /// neither end hears of it but by its own probes (Braid proposal 001
    /// §3.6).
    pub fn hang(&mut self, path: PathId) {
        if let Some(l) = self.legs.get_mut(&path) {
            l.dead = true;
            l.pending = None;
        }
    }

    fn kill_with(&mut self, path: PathId, client_late: Duration, exit_late: Duration) {
        let offset = self.elapsed();
        let Some(l) = self.legs.get_mut(&path) else {
            return;
        };
        l.dead = true;
        l.pending = None;
        let down = l.down.config().delay;
        let up = l.up.config().delay;
        self.queue
            .push(offset + down + client_late, Ev::GuardDestroy(path));
        self.queue.push(offset + up + exit_late, Ev::ExitGone(path));
    }

    /// Hop `hop` (0 guard, 1 middle, 2 exit) of `path` sends `msg` on
    /// `stream` to the client, as soon as the down link carries it.
    /// With the node exit, only the guard and the middle (hops 0 and 1)
    /// can.
    pub fn inject(&mut self, path: PathId, hop: usize, stream: Option<StreamId>, msg: AnyRelayMsg) {
        let now = self.now();
        let cell = match self.node_exit.as_mut() {
            Some(n) => match n.circuits.get_mut(&path) {
                Some(c) if hop < c.front.n_hops() => c.front.originate(hop, stream, msg),
                _ => return,
            },
            None => match self.exit.circuits.get_mut(&path) {
                Some(c) => c.relay.originate(hop, stream, msg, now),
                None => return,
            },
        };
        self.send_down(vec![(path, cell)]);
    }

    /// A channel cell to the client on `path`, as from the guard.
    pub fn inject_cell(&mut self, path: PathId, cell: AnyChanMsg) {
        self.send_down(vec![(path, cell)]);
    }

    /// Which exit ran, for reports.
    pub fn exit_name(&self) -> String {
        match &self.node_exit {
            Some(n) => n.name(),
            None => self.exit.name(),
        }
    }

    /// Bytes each stream delivered to its destination at the exit
    /// (uploads), whichever exit runs.
    pub fn exit_received(&self) -> Vec<u64> {
        match &self.node_exit {
            Some(n) => n.received().collect(),
            None => self.exit.all_streams().map(|(_, s)| s.received).collect(),
        }
    }

    /// The tunnel's events of one kind so far.
    pub fn logged(&self, f: impl Fn(&TunnelEvent) -> bool) -> Vec<&TunnelEvent> {
        self.log.iter().map(|(_, e)| e).filter(|e| f(e)).collect()
    }
}

/// The legs' down links, for the node exit's pump.
struct Downs<'a> {
    legs: &'a mut BTreeMap<PathId, SimLeg>,
    queue: &'a mut EventQueue<Ev>,
    offset: Duration,
}

impl DownLinks for Downs<'_> {
    fn has_room(&mut self, path: PathId) -> bool {
        self.legs
            .get_mut(&path)
            .is_some_and(|l| !l.dead && l.down.has_room(self.offset))
    }

    fn send(&mut self, path: PathId, cell: AnyChanMsg) {
        if let Some(l) = self.legs.get_mut(&path).filter(|l| !l.dead) {
            let at = l.down.send(self.offset);
            self.queue.push(at, Ev::ToClient(path, cell));
        }
    }
}
