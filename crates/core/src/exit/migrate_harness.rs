//! The test world of live stream migration (Braid proposal 001 §4): two
//! client tunnels' [`StreamMap`]s (A, a single circuit, and B) and their
//! exit maps, joined by four FIFO links, the exit's requests carried out by
//! the same [`carry_out`] the relay node uses, the client's driver and
//! application and the exit's destination played as the real ones do.
//! Every step is one message or one call, so a test (or a proptest) picks
//! the interleaving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, EndReason};

use crate::cc::FlowParams;
use crate::ids::{CircKey, EdgeKey, SetKey, StreamId};
use crate::stream::{StreamEvent, StreamFlowMode, StreamMap, StreamMapConfig, Target};

use super::migrate::{CarriedOut, ExitMaps, MigrateTokens, carry_out};
use super::*;

/// Tunnel A (the old one) at the exit.
pub(super) const EDGE_A: EdgeKey = EdgeKey::Circuit(CircKey(1));
/// Tunnel B (the new one) at the exit.
pub(super) const EDGE_B: EdgeKey = EdgeKey::Set(SetKey(2));

/// Tunnel `i`'s edge at the exit.
pub(super) fn edge(i: usize) -> EdgeKey {
    if i == 0 { EDGE_A } else { EDGE_B }
}

/// Tunnel index of `e`.
fn index(e: EdgeKey) -> usize {
    usize::from(e != EDGE_A)
}

/// The `n`th byte of the download.
pub(super) fn down_byte(n: usize) -> u8 {
    (n.wrapping_mul(31) % 251) as u8
}

/// The `n`th byte of the upload.
pub(super) fn up_byte(n: usize) -> u8 {
    (n.wrapping_mul(17) % 241) as u8 ^ 0x5a
}

fn cc() -> StreamFlowMode {
    StreamFlowMode::XonXoff {
        params: FlowParams::default(),
        onion: false,
    }
}

/// The destination of the one stream.
#[derive(Debug, Default)]
pub(super) struct Dest {
    /// Bytes it sends.
    pub(super) total: usize,
    /// Bytes it waits for before its EOF.
    pub(super) expect_up: usize,
    /// Bytes the exit map took.
    pub(super) written: usize,
    /// Its EOF went in.
    pub(super) eof_sent: bool,
    /// Bytes it received.
    pub(super) got: Vec<u8>,
    /// How the map said it ended.
    pub(super) closed: Option<(EndReason, bool)>,
}

/// The client application's one stream.
#[derive(Debug, Default)]
pub(super) struct App {
    /// Which tunnel and id carry it now.
    pub(super) at: Option<(usize, StreamId)>,
    /// Bytes read.
    pub(super) got: Vec<u8>,
    /// Read to EOF.
    pub(super) eof: bool,
    /// A read failed (reset).
    pub(super) failed: bool,
    /// Bytes to upload, then shut down.
    pub(super) total: usize,
    /// Bytes to download.
    pub(super) down_total: usize,
    /// Bytes written.
    pub(super) written: usize,
    /// Shut down.
    pub(super) shutdown: bool,
}

/// The world. See the [module docs](self).
pub(super) struct MigWorld {
    pub(super) now: Instant,
    pub(super) client: [StreamMap; 2],
    pub(super) exit: [ExitStreamMap; 2],
    pub(super) tokens: MigrateTokens,
    rng: StdRng,
    /// Client to exit, per tunnel.
    pub(super) up: [VecDeque<(StreamId, AnyRelayMsg)>; 2],
    /// Exit to client, per tunnel.
    pub(super) down: [VecDeque<(StreamId, AnyRelayMsg)>; 2],
    /// Destinations by where their stream is.
    pub(super) dest: BTreeMap<(EdgeKey, StreamId), Dest>,
    pub(super) app: App,
    /// The last migration: old id, new id.
    pub(super) mig: Option<(StreamId, StreamId)>,
    /// Its tunnels: old, new.
    pub(super) mig_dir: (usize, usize),
    /// It is in progress.
    pub(super) moving: bool,
    pub(super) client_events: Vec<(usize, StreamEvent)>,
    pub(super) exit_events: Vec<(EdgeKey, ExitEvent)>,
    pub(super) exit_errors: Vec<ExitError>,
    pub(super) client_errors: Vec<crate::stream::StreamError>,
}

struct Maps<'a>(&'a mut [ExitStreamMap; 2]);

impl ExitMaps for Maps<'_> {
    fn map_mut(&mut self, e: EdgeKey) -> Option<&mut ExitStreamMap> {
        self.0.get_mut(index(e))
    }
}

impl MigWorld {
    /// Both tunnels, both ends migratable (or not, for the exit).
    pub(super) fn new(seed: u64, exit_migrates: bool) -> Self {
        let ccfg = StreamMapConfig {
            migratable: true,
            connect_timeout: Duration::from_secs(30),
            ..StreamMapConfig::default()
        };
        let ecfg = ExitConfig {
            migrate: exit_migrates,
            ..ExitConfig::default()
        };
        MigWorld {
            now: Instant::now(),
            client: [
                StreamMap::with_first_id(ccfg.clone(), cc(), 10),
                StreamMap::with_first_id(ccfg, cc(), 500),
            ],
            exit: [
                ExitStreamMap::with_seed(ecfg.clone(), cc(), seed),
                ExitStreamMap::with_seed(ecfg, cc(), seed ^ 1),
            ],
            tokens: MigrateTokens::default(),
            rng: StdRng::seed_from_u64(seed),
            up: Default::default(),
            down: Default::default(),
            dest: BTreeMap::new(),
            app: App::default(),
            mig: None,
            mig_dir: (0, 1),
            moving: false,
            client_events: Vec::new(),
            exit_events: Vec::new(),
            exit_errors: Vec::new(),
            client_errors: Vec::new(),
        }
    }

    /// Open the application's stream on A: it downloads `down` bytes and
    /// uploads `up`. Nothing moves yet.
    pub(super) fn open_only(&mut self, down: usize, up: usize) -> StreamId {
        let target = Target::hostname(format!("x-{down}-{up}.test"), 80);
        let id = self.client[0]
            .begin(&target, BeginFlags::empty(), self.now)
            .unwrap();
        self.app.at = Some((0, id));
        self.app.total = up;
        self.app.down_total = down;
        id
    }

    /// Begin migrating the stream to the other tunnel (from A to B the
    /// first time); false if it may not be.
    pub(super) fn migrate(&mut self) -> bool {
        let Some((from, a)) = self.app.at else {
            return false;
        };
        let to = 1 - from;
        if self.moving || !self.client[from].migratable(a) {
            return false;
        }
        let ticket = self.client[from].migrate_out(a).unwrap();
        let b = self.client[to].migrate_in(&ticket, self.now).unwrap();
        self.mig = Some((a, b));
        self.mig_dir = (from, to);
        self.moving = true;
        true
    }

    // ----- Steps -----

    /// Tunnel `i`'s client messages onto its up link. True if any.
    pub(super) fn client_send(&mut self, i: usize) -> bool {
        let mut any = false;
        while let Some(m) = self.client[i].poll_transmit(true) {
            self.up[i].push_back(m);
            any = true;
        }
        any
    }

    /// One client message of tunnel `i` onto its up link.
    pub(super) fn client_send_one(&mut self, i: usize) -> bool {
        let Some(m) = self.client[i].poll_transmit(true) else {
            return false;
        };
        self.up[i].push_back(m);
        true
    }

    /// One exit message of tunnel `i` onto its down link.
    pub(super) fn exit_send_one(&mut self, i: usize) -> bool {
        let Some(m) = self.exit[i].poll_transmit(true) else {
            return false;
        };
        self.down[i].push_back(m);
        self.check();
        true
    }

    /// Tunnel `i`'s exit messages onto its down link. True if any.
    pub(super) fn exit_send(&mut self, i: usize) -> bool {
        let mut any = false;
        while let Some(m) = self.exit[i].poll_transmit(true) {
            self.down[i].push_back(m);
            any = true;
        }
        any
    }

    /// One message up on tunnel `i`. True if there was one.
    pub(super) fn deliver_up(&mut self, i: usize) -> bool {
        let Some((id, msg)) = self.up[i].pop_front() else {
            return false;
        };
        if let Err(e) = self.exit[i].handle_msg(id, msg, self.now) {
            self.exit_errors.push(e);
        }
        self.route();
        self.check();
        true
    }

    /// Both exit maps' bookkeeping.
    pub(super) fn check(&self) {
        for m in &self.exit {
            m.check_invariants().unwrap();
        }
    }

    /// One message down on tunnel `i`. True if there was one.
    pub(super) fn deliver_down(&mut self, i: usize) -> bool {
        let Some((id, msg)) = self.down[i].pop_front() else {
            return false;
        };
        if let Err(e) = self.client[i].handle_msg(self.now, id, msg) {
            self.client_errors.push(e);
        }
        self.client_drive();
        true
    }

    /// The exit's requests carried out, its events acted on.
    pub(super) fn route(&mut self) {
        for _ in 0..1000 {
            let mut out = CarriedOut::default();
            for e in 0..2 {
                for r in self.exit[e].take_migrate_requests() {
                    let mut maps = Maps(&mut self.exit);
                    carry_out(
                        &mut maps,
                        &mut self.tokens,
                        &mut self.rng,
                        edge(e),
                        r,
                        self.now,
                        &mut out,
                    );
                }
            }
            for ((fe, fid), (te, tid)) in out.moved {
                self.exit_event(
                    fe,
                    ExitEvent::Moved {
                        id: fid,
                        to_edge: te,
                        to_id: tid,
                    },
                );
            }
            let mut any = false;
            for e in 0..2 {
                while let Some(ev) = self.exit[e].poll_event() {
                    any = true;
                    self.exit_event(edge(e), ev);
                }
            }
            if !any && !self.exit.iter().any(ExitStreamMap::has_migrate_requests) {
                self.check();
                return;
            }
        }
        panic!("exit never settled");
    }

    /// The exit driver's answer to an event of `e`'s map.
    fn exit_event(&mut self, e: EdgeKey, ev: ExitEvent) {
        self.exit_events.push((e, ev.clone()));
        let i = index(e);
        match ev {
            ExitEvent::Connect { id, target, .. } => {
                // "x-DOWN-UP.test".
                let sizes: Vec<usize> = match &target.host {
                    crate::stream::Host::Hostname(h) => h
                        .trim_end_matches(".test")
                        .split('-')
                        .skip(1)
                        .filter_map(|n| n.parse().ok())
                        .collect(),
                    _ => Vec::new(),
                };
                self.dest.insert(
                    (e, id),
                    Dest {
                        total: sizes.first().copied().unwrap_or(0),
                        expect_up: sizes.get(1).copied().unwrap_or(0),
                        ..Dest::default()
                    },
                );
                let addr: IpAddr = "192.0.2.80".parse().unwrap();
                self.exit[i].connected(id, addr, 300, self.now).unwrap();
                self.dest_write(e, id);
            }
            ExitEvent::Readable { id } => self.dest_read(e, id),
            ExitEvent::Writable { id } => self.dest_write(e, id),
            ExitEvent::Closed { id, reason, remote } => {
                if let Some(d) = self.dest.get_mut(&(e, id)) {
                    d.closed = Some((reason, remote));
                }
            }
            ExitEvent::Moved { id, to_edge, to_id } => {
                let d = self
                    .dest
                    .remove(&(e, id))
                    .expect("a moved stream's destination");
                self.dest.insert((to_edge, to_id), d);
                self.dest_read(to_edge, to_id);
                self.dest_write(to_edge, to_id);
            }
            ExitEvent::Resolve { .. } | ExitEvent::DirStream { .. } => {}
        }
    }

    /// The destination takes what the map has for it.
    fn dest_read(&mut self, e: EdgeKey, id: StreamId) {
        let i = index(e);
        let mut buf = [0u8; 1000];
        while self.dest.get(&(e, id)).is_some_and(|d| d.closed.is_none()) {
            let Ok(n) = self.exit[i].read(id, &mut buf, self.now) else {
                break;
            };
            if n == 0 {
                break;
            }
            self.dest
                .get_mut(&(e, id))
                .unwrap()
                .got
                .extend_from_slice(&buf[..n]);
        }
        // Its EOF may wait for the upload.
        self.dest_write(e, id);
    }

    /// The destination writes what the map takes, then its EOF.
    fn dest_write(&mut self, e: EdgeKey, id: StreamId) {
        let i = index(e);
        loop {
            let Some(d) = self.dest.get(&(e, id)).filter(|d| d.closed.is_none()) else {
                return;
            };
            if d.eof_sent {
                return;
            }
            if d.written == d.total {
                if d.got.len() < d.expect_up {
                    return;
                }
                if self.exit[i].shutdown_write(id, self.now).is_ok() {
                    self.dest.get_mut(&(e, id)).unwrap().eof_sent = true;
                }
                return;
            }
            let from = d.written;
            let chunk: Vec<u8> = (from..d.total.min(from + 700)).map(down_byte).collect();
            let Ok(n) = self.exit[i].write(id, &chunk, self.now) else {
                return;
            };
            self.dest.get_mut(&(e, id)).unwrap().written += n;
            if n < chunk.len() {
                return;
            }
        }
    }

    /// The client driver: its tunnels' events, routed as the real one does.
    pub(super) fn client_drive(&mut self) {
        for i in 0..2 {
            while let Some(ev) = self.client[i].poll_event() {
                self.client_events.push((i, ev.clone()));
                match ev {
                    StreamEvent::MigrateHandover { id } => {
                        let (a, b) = self.mig.unwrap();
                        let (from, to) = self.mig_dir;
                        assert_eq!((i, id), (from, a));
                        let h = self.client[from].migrate_finish(a, self.now).unwrap();
                        match self.client[to].migrate_join(b, h, self.now) {
                            Ok(()) => {}
                            Err(e) => self.client_errors.push(e),
                        }
                        self.app.at = Some((to, b));
                        self.moving = false;
                    }
                    StreamEvent::MigrateFailed { id, refused } => {
                        let (a, b) = self.mig.unwrap();
                        let (from, to) = self.mig_dir;
                        assert_eq!((i, id), (to, b));
                        let _ = self.client[from].migrate_target_failed(a, refused, self.now);
                        self.moving = false;
                        if refused {
                            self.mig = None;
                        }
                    }
                    StreamEvent::Ended { id, .. } => {
                        // The old id ended: its new one goes too.
                        let (from, to) = self.mig_dir;
                        if let Some((a, b)) = self.mig
                            && self.moving
                            && (i, id) == (from, a)
                            && self.app.at == Some((from, a))
                        {
                            let _ = self.client[to].close(b, EndReason::MISC, self.now);
                            self.moving = false;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The application reads what its stream has. True if anything.
    pub(super) fn app_read(&mut self) -> bool {
        let Some((i, id)) = self.app.at else {
            return false;
        };
        let mut any = false;
        let mut buf = [0u8; 1500];
        while !self.app.eof && !self.app.failed {
            match self.client[i].read(id, &mut buf, self.now) {
                Ok(0) => {
                    // EOF, clean only if the stream ended well.
                    let reset = self.client_events.iter().any(|(j, e)| {
                        *j == i
                            && matches!(e, StreamEvent::Ended { id: x, reason, .. }
                                if *x == id && *reason != crate::stream::CloseReason::End(EndReason::DONE))
                    });
                    self.app.eof = !reset;
                    self.app.failed = reset;
                    any = true;
                }
                Ok(n) => {
                    self.app.got.extend_from_slice(&buf[..n]);
                    any = true;
                }
                Err(e) if e.is_would_block() => break,
                Err(_) => {
                    self.app.failed = true;
                    any = true;
                }
            }
        }
        self.client_drive();
        any
    }

    /// The application writes its upload, then shuts down. True if
    /// anything.
    pub(super) fn app_write(&mut self) -> bool {
        let Some((i, id)) = self.app.at else {
            return false;
        };
        let mut any = false;
        while self.app.written < self.app.total {
            let room = self.client[i].send_space(id).unwrap_or(0);
            if room == 0 {
                break;
            }
            let from = self.app.written;
            let to = self.app.total.min(from + room.min(900));
            let chunk: Vec<u8> = (from..to).map(up_byte).collect();
            match self.client[i].write(id, &chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.app.written += n;
                    any = true;
                }
            }
        }
        // Shut down once everything is written and, for a download, read.
        let down_done = self.app.eof || self.app.down_total == 0;
        if self.app.written == self.app.total
            && down_done
            && !self.app.shutdown
            && self.client[i].shutdown_write(id, self.now).is_ok()
        {
            self.app.shutdown = true;
            any = true;
        }
        self.client_drive();
        any
    }

    /// Everything moves until nothing does.
    pub(super) fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut any = false;
            for i in 0..2 {
                any |= self.client_send(i);
                any |= self.exit_send(i);
                while self.deliver_up(i) {
                    any = true;
                }
                while self.deliver_down(i) {
                    any = true;
                }
            }
            self.route();
            any |= self.app_read();
            any |= self.app_write();
            if !any {
                return;
            }
        }
        panic!("never settled");
    }

    /// The destination of the stream, wherever it is now.
    pub(super) fn the_dest(&self) -> &Dest {
        assert_eq!(self.dest.len(), 1, "{:?}", self.dest.keys());
        self.dest.values().next().unwrap()
    }

    /// Let time pass.
    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        for i in 0..2 {
            self.client[i].handle_timeout(self.now);
            self.exit[i].handle_timeout(self.now);
        }
        self.client_drive();
        self.route();
    }
}
