//! [`MultiSim`]: several of braid-core's [`ClientTunnel`]s of one client
//! against one Braid exit ([`NodeExit`]) on the virtual clock, with the
//! client driver's part in live stream migration (Braid proposal 001 §4):
//! the application's streams can move from one tunnel to another and the
//! driver carries the ticket and the handover between them, nothing else.
//!
//! Each leg of each tunnel has its own guard and middle (so a middle that
//! dies takes only its leg) and its own up and down [`Link`]. The
//! application checks every byte: downloads against
//! [`content_byte`] of the stream's first id, ordered uploads against
//! [`upload_byte`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use braid_core::circuit::HopTarget;
use braid_core::ids::{CircId, LegKey, StreamId};
use braid_core::stream::{CloseReason, EndReason, StreamEvent, Target};
use braid_core::tunnel::{ClientTunnel, LegSpec, TunnelConfig, TunnelError, TunnelEvent};
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};

use super::exit::{PathId, content_byte};
use super::node_exit::server::upload_byte;
use super::node_exit::{DownLinks, NodeExit, NodeExitConfig};
use super::relays::SimRelays;
use super::world::LegLinks;
use crate::clock::VirtualClock;
use crate::event::EventQueue;
use crate::link::Link;
use crate::rng::SimRng;

/// Bytes an application writes at once.
const WRITE_CHUNK: usize = 16 * 1024;

/// What an application stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Download this many bytes (`dl-N.sim`).
    Download(u64),
    /// Upload this many ordered bytes (`ulo.sim`), then shut down.
    Upload(u64),
}

/// One application stream, wherever it is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStream {
    /// What it does.
    pub transfer: Transfer,
    /// The tunnel and stream id carrying it now.
    pub at: (usize, StreamId),
    /// The id it was opened with (its download content is that id's).
    pub first_id: StreamId,
    /// CONNECTED came.
    pub connected: bool,
    /// Bytes read.
    pub received: u64,
    /// Every byte read was the right one at the right place.
    pub content_ok: bool,
    /// Bytes written.
    pub written: u64,
    /// Shut down its writing side.
    pub shutdown: bool,
    /// Read to a clean EOF.
    pub eof: bool,
    /// Ended abnormally (an END other than DONE, its tunnel gone, or an
    /// aborted migration).
    pub failed: bool,
    /// Times it moved to another tunnel.
    pub moves: u32,
}

impl AppStream {
    /// Finished as asked: every byte downloaded and right, or every byte
    /// written and the stream ended cleanly.
    pub fn complete(&self) -> bool {
        match self.transfer {
            Transfer::Download(n) => self.eof && self.received == n && self.content_ok,
            Transfer::Upload(n) => self.written == n && self.shutdown && !self.failed,
        }
    }

    /// Over, one way or the other.
    pub fn over(&self) -> bool {
        self.complete() || self.failed || self.eof
    }
}

/// A migration in progress: the old place, the new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Migration {
    from: (usize, StreamId),
    to: (usize, StreamId),
    app: usize,
}

/// One leg of one tunnel.
#[derive(Debug)]
struct Leg {
    tunnel: usize,
    key: LegKey,
    up: Link,
    down: Link,
    pending: Option<AnyChanMsg>,
    up_wake: bool,
    dead: bool,
    released: bool,
}

#[derive(Debug)]
enum Ev {
    ToExit(PathId, AnyChanMsg),
    ToClient(PathId, AnyChanMsg),
    GuardDestroy(PathId),
    ExitGone(PathId),
    Wake,
    UpFree(PathId),
    DownFree,
}

/// The simulation. See the [module docs](self).
#[derive(Debug)]
pub struct MultiSim {
    /// Virtual time.
    pub clock: VirtualClock,
    queue: EventQueue<Ev>,
    /// The client's tunnels, in creation order.
    pub tunnels: Vec<ClientTunnel>,
    /// The Braid exit.
    pub node: NodeExit,
    relays: SimRelays,
    legs: BTreeMap<PathId, Leg>,
    /// The application's streams.
    pub apps: Vec<AppStream>,
    migrations: Vec<Migration>,
    /// Every tunnel event but stream events: tunnel, time, event.
    pub log: Vec<(usize, Duration, TunnelEvent)>,
    /// Stream events, in order: tunnel, event.
    pub stream_log: Vec<(usize, StreamEvent)>,
    /// Migrations begun and handed over: application stream, when begun,
    /// when the new tunnel took it over (`None` until then, or if it
    /// failed).
    pub moves: Vec<(usize, Duration, Option<Duration>)>,
    links: LegLinks,
    seed: u64,
    next_path: PathId,
    next_relay: usize,
    exit_relay: usize,
    wake_at: Option<Instant>,
    down_wake: bool,
}

impl MultiSim {
    /// A client of one Braid exit configured as `node`, its legs over
    /// `links`; no tunnel yet.
    pub fn new(seed: u64, node: NodeExitConfig, links: LegLinks) -> Option<Self> {
        let relays = SimRelays::new(80, seed);
        let exit_relay = relays.len() - 1;
        let node = NodeExit::new(&relays, exit_relay, node, seed)?;
        Some(Self {
            clock: VirtualClock::new(Instant::now()),
            queue: EventQueue::new(),
            tunnels: Vec::new(),
            node,
            relays,
            legs: BTreeMap::new(),
            apps: Vec::new(),
            migrations: Vec::new(),
            log: Vec::new(),
            stream_log: Vec::new(),
            moves: Vec::new(),
            links,
            seed,
            next_path: 0,
            next_relay: 0,
            exit_relay,
            wake_at: None,
            down_wake: false,
        })
    }

    /// Now, as the core sees it.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// A new tunnel as `config` says (its kind says how many legs); its
    /// index.
    pub fn add_tunnel(&mut self, config: TunnelConfig) -> Result<usize, TunnelError> {
        let t = self.tunnels.len();
        let mut specs = Vec::new();
        for _ in 0..config.initial_legs() {
            specs.push(self.new_path(t)?.1);
        }
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            self.seed ^ (0xc11e_u64 << 16) ^ t as u64,
        );
        let tunnel = ClientTunnel::new(config, specs, &mut rng, self.now())?;
        // The core numbers the first legs in order.
        for (k, l) in self.legs.values_mut().filter(|l| l.tunnel == t).enumerate() {
            l.key = LegKey(u32::try_from(k).unwrap_or(u32::MAX));
        }
        self.tunnels.push(tunnel);
        self.flush();
        Ok(t)
    }

    /// A fresh path for tunnel `t`: two relays no leg used, the exit.
    fn new_path(&mut self, t: usize) -> Result<(PathId, LegSpec), TunnelError> {
        let (g, m) = (self.next_relay, self.next_relay + 1);
        if m >= self.exit_relay {
            return Err(TunnelError::BadLeg("no relays left".into()));
        }
        self.next_relay += 2;
        let path = self.next_path;
        self.next_path += 1;
        let through = [g, m, self.exit_relay];
        let hops: Option<Vec<HopTarget>> = through
            .iter()
            .enumerate()
            .map(|(i, r)| self.relays.target(*r, i == 2))
            .collect();
        let spec = LegSpec {
            circ_id: CircId::new(0x8000_0000 | (path + 1))
                .ok_or_else(|| TunnelError::BadLeg("circuit id".into()))?,
            hops: hops.ok_or_else(|| TunnelError::BadLeg("no such relay".into()))?,
        };
        let s = self.seed ^ u64::from(path);
        self.node.add_circuit(path, through, s);
        self.legs.insert(
            path,
            Leg {
                tunnel: t,
                key: LegKey(u32::MAX),
                up: Link::new(
                    self.links.up,
                    SimRng::stream(self.seed, 2 * u64::from(path) + 100),
                ),
                down: Link::new(
                    self.links.down,
                    SimRng::stream(self.seed, 2 * u64::from(path) + 101),
                ),
                pending: None,
                up_wake: false,
                dead: false,
                released: false,
            },
        );
        Ok((path, spec))
    }

    /// The paths of tunnel `t`'s legs.
    pub fn paths_of(&self, t: usize) -> Vec<PathId> {
        self.legs
            .iter()
            .filter(|(_, l)| l.tunnel == t)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Open an application stream on tunnel `t`; its index.
    pub fn open(&mut self, t: usize, transfer: Transfer) -> Result<usize, TunnelError> {
        let host = match transfer {
            Transfer::Download(n) => format!("dl-{n}.sim"),
            Transfer::Upload(_) => "ulo.sim".to_owned(),
        };
        let now = self.now();
        let tunnel = self.tunnels.get_mut(t).ok_or(TunnelError::NotOpen)?;
        let id = tunnel.begin(&Target::hostname(host, 80), now)?;
        self.apps.push(AppStream {
            transfer,
            at: (t, id),
            first_id: id,
            connected: false,
            received: 0,
            content_ok: true,
            written: 0,
            shutdown: false,
            eof: false,
            failed: false,
            moves: 0,
        });
        self.flush();
        Ok(self.apps.len() - 1)
    }

    /// Begin moving application stream `app` to tunnel `to` (same exit, same
    /// isolation: the caller's word). False if the stream may not move now.
    pub fn migrate(&mut self, app: usize, to: usize) -> bool {
        let now = self.now();
        let Some(&AppStream { at: (t, id), .. }) = self.apps.get(app) else {
            return false;
        };
        if t == to || self.migrations.iter().any(|m| m.app == app) {
            return false;
        }
        let Some(ticket) = self
            .tunnels
            .get_mut(t)
            .and_then(|tun| tun.migrate_out(id, now).ok())
        else {
            return false;
        };
        let Some(b) = self
            .tunnels
            .get_mut(to)
            .and_then(|tun| tun.migrate_in(&ticket, now).ok())
        else {
            // Nothing went out: the old stream goes on.
            if let Some(tun) = self.tunnels.get_mut(t) {
                let _ = tun.migrate_target_failed(id, true, now);
            }
            return false;
        };
        self.migrations.push(Migration {
            from: (t, id),
            to: (to, b),
            app,
        });
        self.moves.push((app, self.clock.elapsed(), None));
        self.flush();
        true
    }

    /// Migrations in progress.
    pub fn migrating(&self) -> usize {
        self.migrations.len()
    }

    /// Run until `done` holds (true), nothing is left to happen, or virtual
    /// time passes `limit` (false).
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

    /// A relay on path `p` dies: its leg's traffic is lost from now; the
    /// guard tells the client one down delay later, the exit learns one
    /// up delay later.
    pub fn kill(&mut self, p: PathId) {
        let offset = self.elapsed();
        let Some(l) = self.legs.get_mut(&p) else {
            return;
        };
        l.dead = true;
        l.pending = None;
        let (down, up) = (l.down.config().delay, l.up.config().delay);
        self.queue.push(offset + down, Ev::GuardDestroy(p));
        self.queue.push(offset + up, Ev::ExitGone(p));
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now();
        match ev {
            Ev::ToExit(p, cell) => {
                if self.legs.get(&p).is_none_or(|l| l.dead) {
                    return;
                }
                let out = self.node.from_client(&self.relays, p, cell, now);
                self.send_down(out);
            }
            Ev::ToClient(p, cell) => {
                let Some(l) = self.legs.get(&p).filter(|l| !l.dead && !l.released) else {
                    return;
                };
                let (t, key) = (l.tunnel, l.key);
                if let Some(tun) = self.tunnels.get_mut(t) {
                    tun.handle_cell(key, cell, now);
                }
            }
            Ev::GuardDestroy(p) => {
                if let Some(l) = self.legs.get(&p).filter(|l| !l.released) {
                    let (t, key) = (l.tunnel, l.key);
                    let cell = Destroy::new(DestroyReason::CHANNEL_CLOSED).into();
                    if let Some(tun) = self.tunnels.get_mut(t) {
                        tun.handle_cell(key, cell, now);
                    }
                }
            }
            Ev::ExitGone(p) => {
                let out = self.node.relay_died(p, now);
                self.send_down(out);
            }
            Ev::Wake => {
                self.wake_at = None;
                for tun in &mut self.tunnels {
                    if tun.poll_timeout().is_some_and(|t| t <= now) {
                        tun.handle_timeout(now);
                    }
                }
                self.node.handle_timeout(now);
            }
            Ev::UpFree(p) => {
                let offset = self.elapsed();
                let Some(l) = self.legs.get_mut(&p) else {
                    return;
                };
                l.up_wake = false;
                let Some(cell) = l.pending.take() else {
                    return;
                };
                match l.up.try_send(offset) {
                    Some(at) => {
                        let (t, key) = (l.tunnel, l.key);
                        self.queue.push(at, Ev::ToExit(p, cell));
                        if let Some(tun) = self.tunnels.get_mut(t) {
                            tun.set_leg_blocked(key, false);
                        }
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
            Ev::DownFree => self.down_wake = false,
        }
    }

    fn send_down(&mut self, cells: Vec<(PathId, AnyChanMsg)>) {
        let offset = self.elapsed();
        for (p, cell) in cells {
            if let Some(l) = self.legs.get_mut(&p).filter(|l| !l.dead) {
                let at = l.down.send(offset);
                self.queue.push(at, Ev::ToClient(p, cell));
            }
        }
    }

    /// Move everything the tunnels, the applications and the exit have.
    fn flush(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for t in 0..self.tunnels.len() {
                moved |= self.transmit(t);
                moved |= self.events(t);
            }
            moved |= self.apps_io();
            moved |= self.exit_pump();
            if !moved {
                break;
            }
        }
        let next = self
            .tunnels
            .iter()
            .filter_map(ClientTunnel::poll_timeout)
            .chain(self.node.poll_timeout())
            .min();
        if let Some(t) = next
            && self.wake_at.is_none_or(|w| t < w)
        {
            self.wake_at = Some(t);
            let offset = t.saturating_duration_since(self.clock.at(Duration::ZERO));
            self.queue.push(offset.max(self.elapsed()), Ev::Wake);
        }
    }

    /// Tunnel `t`'s cells onto its legs' up links.
    fn transmit(&mut self, t: usize) -> bool {
        let now = self.now();
        let offset = self.elapsed();
        let mut moved = false;
        while let Some((key, cell)) = self.tunnels.get_mut(t).and_then(|x| x.poll_transmit(now)) {
            moved = true;
            let Some((p, l)) = self
                .legs
                .iter_mut()
                .find(|(_, l)| l.tunnel == t && l.key == key)
            else {
                continue;
            };
            let p = *p;
            if l.dead || l.released {
                continue;
            }
            match l.up.try_send(offset) {
                Some(at) => self.queue.push(at, Ev::ToExit(p, cell)),
                None => {
                    l.pending = Some(cell);
                    if let Some(tun) = self.tunnels.get_mut(t) {
                        tun.set_leg_blocked(key, true);
                    }
                    if !l.up_wake
                        && let Some(at) = l.up.next_departure()
                    {
                        l.up_wake = true;
                        self.queue.push(at, Ev::UpFree(p));
                    }
                }
            }
        }
        moved
    }

    /// Tunnel `t`'s events, acted on as the client's driver does.
    fn events(&mut self, t: usize) -> bool {
        let mut moved = false;
        while let Some(ev) = self.tunnels.get_mut(t).and_then(ClientTunnel::poll_event) {
            moved = true;
            match ev {
                TunnelEvent::Stream(s) => {
                    self.stream_log.push((t, s.clone()));
                    self.stream_event(t, s);
                }
                TunnelEvent::LegWanted { .. } => self.new_leg(t),
                TunnelEvent::LegReleased { leg } => {
                    if let Some(l) = self
                        .legs
                        .values_mut()
                        .find(|l| l.tunnel == t && l.key == leg)
                    {
                        l.released = true;
                    }
                    self.log.push((t, self.clock.elapsed(), ev));
                }
                other => self.log.push((t, self.clock.elapsed(), other)),
            }
        }
        moved
    }

    /// A leg tunnel `t` asked for.
    fn new_leg(&mut self, t: usize) {
        let now = self.now();
        match self.new_path(t) {
            Ok((path, spec)) => {
                let added = self.tunnels.get_mut(t).map(|x| x.add_leg(spec, now));
                match added {
                    Some(Ok(key)) => {
                        if let Some(l) = self.legs.get_mut(&path) {
                            l.key = key;
                        }
                    }
                    _ => {
                        self.legs.remove(&path);
                    }
                }
            }
            Err(e) => {
                if let Some(x) = self.tunnels.get_mut(t) {
                    x.leg_unavailable(e.to_string(), now);
                }
            }
        }
    }

    /// The driver's part of a stream event of tunnel `t`: the migration's
    /// routing, and the application's bookkeeping.
    fn stream_event(&mut self, t: usize, ev: StreamEvent) {
        let now = self.now();
        let id = ev.id();
        match ev {
            StreamEvent::Connected { .. } => {
                if let Some(a) = self.apps.iter_mut().find(|a| a.at == (t, id)) {
                    a.connected = true;
                }
            }
            StreamEvent::MigrateHandover { .. } => {
                let Some(i) = self.migrations.iter().position(|m| m.from == (t, id)) else {
                    return;
                };
                let m = self.migrations.remove(i);
                let Some(h) = self
                    .tunnels
                    .get_mut(t)
                    .and_then(|x| x.migrate_finish(id, now).ok())
                else {
                    return;
                };
                let (to, b) = m.to;
                let joined = self
                    .tunnels
                    .get_mut(to)
                    .is_some_and(|x| x.migrate_join(b, h, now).is_ok());
                if let Some(a) = self.apps.get_mut(m.app) {
                    a.at = m.to;
                    a.moves += 1;
                    a.failed |= !joined;
                }
                let at = self.clock.elapsed();
                if let Some(r) = self
                    .moves
                    .iter_mut()
                    .rev()
                    .find(|r| r.0 == m.app && r.2.is_none())
                {
                    r.2 = Some(at);
                }
            }
            StreamEvent::MigrateFailed { refused, .. } => {
                let Some(i) = self.migrations.iter().position(|m| m.to == (t, id)) else {
                    return;
                };
                let m = self.migrations.remove(i);
                let (from, a) = m.from;
                if let Some(x) = self.tunnels.get_mut(from) {
                    let _ = x.migrate_target_failed(a, refused, now);
                }
            }
            StreamEvent::Ended { reason, .. } => {
                // The old stream ended before its handover: its new one
                // goes too.
                if let Some(i) = self.migrations.iter().position(|m| m.from == (t, id)) {
                    let m = self.migrations.remove(i);
                    let (to, b) = m.to;
                    if let Some(x) = self.tunnels.get_mut(to) {
                        let _ = x.close_stream(b, EndReason::MISC, now);
                    }
                }
                if reason != CloseReason::End(EndReason::DONE)
                    && let Some(a) = self.apps.iter_mut().find(|a| a.at == (t, id))
                {
                    a.failed = true;
                }
            }
            _ => {}
        }
    }

    /// Every application reads and writes what it can. True if anything
    /// moved.
    fn apps_io(&mut self) -> bool {
        let now = self.now();
        let mut moved = false;
        let mut buf = vec![0u8; 64 * 1024];
        for a in &mut self.apps {
            let (t, id) = a.at;
            let Some(tun) = self.tunnels.get_mut(t) else {
                continue;
            };
            // Reading.
            while !a.eof && !a.failed {
                match tun.read(id, &mut buf, now) {
                    Ok(0) => {
                        a.eof = true;
                        moved = true;
                    }
                    Ok(n) => {
                        for (i, b) in buf.iter().take(n).enumerate() {
                            let at = a.received + i as u64;
                            if *b != content_byte(a.first_id, at) {
                                a.content_ok = false;
                            }
                        }
                        a.received += n as u64;
                        moved = true;
                    }
                    Err(e) if e.is_would_block() => break,
                    Err(_) => {
                        a.failed = true;
                        moved = true;
                    }
                }
            }
            // Writing.
            let Transfer::Upload(total) = a.transfer else {
                continue;
            };
            if !a.connected || a.failed {
                continue;
            }
            while a.written < total {
                let room = tun.send_space(id).unwrap_or(0);
                if room == 0 {
                    break;
                }
                let n = usize::try_from(total - a.written)
                    .unwrap_or(usize::MAX)
                    .min(room)
                    .min(WRITE_CHUNK);
                let chunk: Vec<u8> = (0..n as u64).map(|i| upload_byte(a.written + i)).collect();
                match tun.write(id, &chunk, now) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        a.written += k as u64;
                        moved = true;
                    }
                }
            }
            if a.written == total && !a.shutdown && tun.shutdown_write(id, now).is_ok() {
                a.shutdown = true;
                moved = true;
            }
        }
        moved
    }

    /// The exit's cells onto the down links, as they have room.
    fn exit_pump(&mut self) -> bool {
        let now = self.now();
        let offset = self.elapsed();
        let mut downs = Downs {
            legs: &mut self.legs,
            queue: &mut self.queue,
            offset,
        };
        let moved = self.node.pump(&mut downs, now);
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

    /// Bytes each ordered upload's destination received, and whether they
    /// were all in order.
    pub fn uploads(&self) -> Vec<(u64, bool)> {
        self.node
            .server
            .all()
            .filter(|d| matches!(d.kind, super::node_exit::server::Kind::OrderedUpload))
            .map(|d| (d.received, d.upload_ok))
            .collect()
    }
}

/// The legs' down links, for the node's pump.
struct Downs<'a> {
    legs: &'a mut BTreeMap<PathId, Leg>,
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
