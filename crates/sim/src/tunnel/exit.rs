//! The simulated exit: the relay side of every circuit, Conflux sets in
//! the exit role (braid-core's [`ConfluxSet::new_exit`]), and a stream
//! server behind them.
//!
//! Streams are answered by the name they BEGIN to: `dl-N.sim` sends `N`
//! bytes of [`content_byte`] then ends (DONE), `ul.sim` takes what comes
//! and counts it, anything else is refused with END EXITPOLICY. The
//! exit honours XON/XOFF (proposal 324 §4) and its circuits' congestion
//! windows; on a set it sequences what it sends and places it with a
//! scheduler (C-tor's exits: LowRTT).

use std::collections::BTreeMap;
use std::time::Instant;

use braid_core::cc::{EdgeKind, FlowParams, XonXoffSender};
use braid_core::conflux::{
    ConfluxConfig, ConfluxSet, Handled, LegCc, LegClosedInfo, LinkInfo, SendOutcome,
};
use braid_core::conflux_sched::{SchedulerChooser, SchedulerKind};
use braid_core::ids::{LegId, StreamId};
use tor_cell::chancell::msg::{AnyChanMsg, Destroy, DestroyReason};
use tor_cell::relaycell::msg::{AnyRelayMsg, Connected, Data, End, EndReason};

use super::relay_circuit::{FromClient, RelayCircuit};
use super::relays::SimRelays;

/// A simulated circuit, named by the simulation.
pub type PathId = u32;

/// Byte `offset` of what stream `stream` downloads: depends on both, so
/// that a byte delivered to the wrong stream or out of order shows.
pub fn content_byte(stream: StreamId, offset: u64) -> u8 {
    let x = offset
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(stream.get()).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    (x >> 29) as u8
}

/// What a stream asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Send this many bytes, then END.
    Download(u64),
    /// Take what comes.
    Upload,
}

/// One stream at the exit.
#[derive(Debug)]
pub struct ExitStream {
    kind: Kind,
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
    /// The client ended it.
    pub ended_by_client: bool,
    /// Our END went out.
    pub end_sent: bool,
    /// XON/XOFF from the client.
    flow: XonXoffSender,
}

impl ExitStream {
    /// Bytes left to send.
    fn left(&self) -> u64 {
        match self.kind {
            Kind::Download(n) => n.saturating_sub(self.sent),
            Kind::Upload => 0,
        }
    }
}

/// The streams of a circuit or of a set.
#[derive(Debug, Default)]
pub struct ExitStreams {
    /// By id.
    pub map: BTreeMap<StreamId, ExitStream>,
    /// Stream messages that broke the rules (for assertions).
    pub violations: u32,
    /// Round-robin cursor.
    next: u16,
}

impl ExitStreams {
    /// A stream message from the client, in order; the answer to send,
    /// if any.
    fn handle(&mut self, stream: StreamId, msg: AnyRelayMsg) -> Option<AnyRelayMsg> {
        match msg {
            AnyRelayMsg::Begin(b) => {
                let addr = String::from_utf8_lossy(b.addr()).into_owned();
                let kind = if addr == "ul.sim" {
                    Kind::Upload
                } else if let Some(n) = addr
                    .strip_prefix("dl-")
                    .and_then(|r| r.strip_suffix(".sim"))
                    .and_then(|n| n.parse().ok())
                {
                    Kind::Download(n)
                } else {
                    return Some(End::new_with_reason(EndReason::EXITPOLICY).into());
                };
                self.map.insert(
                    stream,
                    ExitStream {
                        kind,
                        sent: 0,
                        received: 0,
                        ended_by_client: false,
                        end_sent: false,
                        flow: XonXoffSender::new(&FlowParams::default(), EdgeKind::Exit, false),
                    },
                );
                Some(Connected::new_empty().into())
            }
            AnyRelayMsg::Data(d) => {
                match self.map.get_mut(&stream) {
                    Some(s) => s.received += d.as_ref().len() as u64,
                    None => self.violations += 1,
                }
                None
            }
            AnyRelayMsg::End(_) => {
                if let Some(s) = self.map.get_mut(&stream) {
                    s.ended_by_client = true;
                }
                None
            }
            AnyRelayMsg::Xoff(_) => {
                if let Some(s) = self.map.get_mut(&stream)
                    && s.flow.on_xoff().is_err()
                {
                    self.violations += 1;
                }
                None
            }
            AnyRelayMsg::Xon(x) => {
                if let Some(s) = self.map.get_mut(&stream)
                    && s.flow.on_xon(x.kbytes_per_sec_ewma()).is_err()
                {
                    self.violations += 1;
                }
                None
            }
            _ => None,
        }
    }

    /// The next message a stream has to send (DATA while its window and
    /// flow control allow, then END), round robin.
    fn next_msg(&mut self) -> Option<(StreamId, AnyRelayMsg)> {
        let ids: Vec<StreamId> = self.map.keys().copied().collect();
        let n = ids.len();
        let start = ids.iter().position(|id| id.get() >= self.next).unwrap_or(0);
        for k in 0..n {
            let id = *ids.get((start + k) % n)?;
            let s = self.map.get_mut(&id)?;
            if s.ended_by_client || s.end_sent {
                continue;
            }
            let left = s.left();
            if left == 0 {
                if matches!(s.kind, Kind::Download(_)) {
                    s.end_sent = true;
                    self.next = id.get().wrapping_add(1);
                    return Some((id, End::new_with_reason(EndReason::DONE).into()));
                }
                continue;
            }
            if !s.flow.can_send() {
                continue;
            }
            let len = left.min(Data::MAXLEN as u64);
            let bytes: Vec<u8> = (0..len).map(|i| content_byte(id, s.sent + i)).collect();
            s.sent += len;
            s.flow.on_data_sent(len);
            self.next = id.get().wrapping_add(1);
            return Data::new(&bytes).ok().map(|d| (id, d.into()));
        }
        None
    }
}

/// One circuit at the exit.
#[derive(Debug)]
pub struct ExitCircuit {
    /// The relay side of it.
    pub relay: RelayCircuit,
    /// Its first relay.
    first_relay: usize,
    /// Its set and leg, once linked.
    pub leg: Option<(usize, LegId)>,
    /// Its own streams, when it is not a leg.
    pub streams: ExitStreams,
    /// It carried a BEGIN (C-tor refuses LINK then, TROVE-2026-025).
    had_begin: bool,
    /// Gone.
    pub closed: bool,
}

/// One Conflux set at the exit.
#[derive(Debug)]
pub struct ExitSet {
    /// The set, exit role.
    pub set: ConfluxSet,
    chooser: SchedulerChooser,
    /// Its streams.
    pub streams: ExitStreams,
    /// A message the scheduler held.
    held: Option<(StreamId, AnyRelayMsg)>,
}

/// How the exit behaves.
#[derive(Debug, Clone)]
pub struct ExitConfig {
    /// The scheduler placing downloads on a set (C-tor: LowRTT).
    pub scheduler: SchedulerKind,
}

impl Default for ExitConfig {
    fn default() -> Self {
        Self {
            scheduler: SchedulerKind::LowRtt,
        }
    }
}

/// The exit side of the simulated network.
#[derive(Debug, Default)]
pub struct SimExit {
    /// Circuits by path.
    pub circuits: BTreeMap<PathId, ExitCircuit>,
    /// Sets, by index.
    pub sets: Vec<ExitSet>,
    config: ExitConfig,
    /// Cells no hop recognized, middles that recognized a cell, client
    /// protocol errors.
    pub broken: Vec<&'static str>,
    /// Every LINK accepted: its circuit, what it claimed as
    /// `last_seqno_sent`, and what the set had delivered in order when it
    /// arrived (C-tor's exit takes a claim above that for data loss and
    /// closes the set, `validate_unlinked_legs`).
    pub links: Vec<LinkRecord>,
}

/// A LINK the exit accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRecord {
    /// Its circuit.
    pub path: PathId,
    /// Its `last_seqno_sent`.
    pub claimed: u64,
    /// The set's `last_seq_delivered` when it arrived.
    pub delivered: u64,
    /// The set was already linked (a new leg for a live set).
    pub to_live_set: bool,
}

impl SimExit {
    /// An exit behaving as `config` says.
    pub fn new(config: ExitConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// A name for reports: C-tor-like, and its scheduler.
    pub fn name(&self) -> String {
        format!("simulated exit ({})", self.config.scheduler.name())
    }

    /// A new circuit `path` through relays starting at `first_relay`.
    pub fn add_circuit(&mut self, path: PathId, first_relay: usize, seed: u64) {
        self.circuits.insert(
            path,
            ExitCircuit {
                relay: RelayCircuit::new(seed),
                first_relay,
                leg: None,
                streams: ExitStreams::default(),
                had_begin: false,
                closed: false,
            },
        );
    }

    /// A cell from the client on `path`; cells to send back.
    pub fn from_client(
        &mut self,
        relays: &SimRelays,
        path: PathId,
        cell: AnyChanMsg,
        now: Instant,
    ) -> Vec<(PathId, AnyChanMsg)> {
        let mut out = Vec::new();
        let Some(c) = self.circuits.get_mut(&path).filter(|c| !c.closed) else {
            return out;
        };
        let first = c.first_relay;
        for r in c.relay.from_client(relays, first, cell, now) {
            match r {
                FromClient::Reply(cell) => out.push((path, cell)),
                FromClient::AtExit { stream, msg } => {
                    self.at_exit(path, stream, msg, now, &mut out)
                }
                FromClient::AtMiddle { .. } => self.broken.push("a middle recognized a cell"),
                FromClient::Destroyed => self.circuit_gone(path, now, &mut out),
                FromClient::Broken(why) => {
                    self.broken.push(why);
                    out.push((path, Destroy::new(DestroyReason::PROTOCOL).into()));
                    self.circuit_gone(path, now, &mut out);
                }
            }
        }
        out
    }

    /// A relay message at the exit hop of `path`.
    fn at_exit(
        &mut self,
        path: PathId,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
        out: &mut Vec<(PathId, AnyChanMsg)>,
    ) {
        let Some(c) = self.circuits.get_mut(&path) else {
            return;
        };
        if let Some((set_i, leg)) = c.leg {
            let Some(s) = self.sets.get_mut(set_i) else {
                return;
            };
            match s.set.handle_msg(leg, stream, msg, now) {
                Ok(Handled::Consumed) => {}
                Ok(Handled::NotConflux {
                    stream: Some(stream),
                    msg,
                }) => {
                    s.streams.handle(stream, msg);
                }
                Ok(Handled::NotConflux { .. }) => {}
                Err(e) => {
                    self.broken.push("the set closed on a client message");
                    tracing::debug!("exit set closed: {e}");
                }
            }
            self.drain_set(set_i, now, out);
            return;
        }
        if let AnyRelayMsg::ConfluxLink(link) = msg {
            let Ok(info) = LinkInfo::from_link(&link) else {
                out.push((path, Destroy::new(DestroyReason::PROTOCOL).into()));
                return;
            };
            let set_i = match self
                .sets
                .iter()
                .position(|s| s.set.nonce().ct_eq(&info.nonce) && !s.set.is_closed())
            {
                Some(i) => i,
                None => {
                    self.sets.push(ExitSet {
                        set: ConfluxSet::new_exit(info.nonce.clone(), ConfluxConfig::exit()),
                        chooser: SchedulerChooser::new(self.config.scheduler.build()),
                        streams: ExitStreams::default(),
                        held: None,
                    });
                    self.sets.len() - 1
                }
            };
            let had_begin = c.had_begin;
            let Some(s) = self.sets.get_mut(set_i) else {
                return;
            };
            let delivered = s.set.last_seq_delivered();
            let to_live_set = s.set.is_linked();
            match s.set.accept_link(&link, had_begin, now) {
                Ok(leg) => {
                    c.leg = Some((set_i, leg));
                    self.links.push(LinkRecord {
                        path,
                        claimed: info.last_seqno_sent,
                        delivered,
                        to_live_set,
                    });
                }
                Err(e) => {
                    tracing::debug!("exit refused a LINK: {e}");
                    out.push((path, Destroy::new(e.destroy_reason()).into()));
                    c.closed = true;
                }
            }
            self.drain_set(set_i, now, out);
            return;
        }
        if let Some(stream) = stream {
            c.had_begin |= matches!(msg, AnyRelayMsg::Begin(_));
            if let Some(answer) = c.streams.handle(stream, msg) {
                let cell = c.relay.from_exit(Some(stream), answer, now);
                out.push((path, cell));
            }
        }
    }

    /// A set's handshake messages onto legs, its in-order messages to its
    /// streams, their answers through the set.
    fn drain_set(&mut self, set_i: usize, now: Instant, out: &mut Vec<(PathId, AnyChanMsg)>) {
        let Some(s) = self.sets.get_mut(set_i) else {
            return;
        };
        let mut answers = Vec::new();
        while let Some(d) = s.set.poll_delivered() {
            if let Some(stream) = d.stream
                && let Some(a) = s.streams.handle(stream, d.msg)
            {
                answers.push((stream, a));
            }
        }
        while s.set.poll_event().is_some() {}
        let mut sends: Vec<(LegId, Option<StreamId>, AnyRelayMsg)> = Vec::new();
        while let Some((leg, msg)) = s.set.poll_transmit() {
            sends.push((leg, None, msg));
        }
        for (stream, msg) in answers {
            // Non-DATA stream messages go on the current leg (prop 329 §2.5).
            let cc = Self::leg_ccs(&self.circuits, set_i, s, &|_| true);
            if let Ok(SendOutcome::Sent(o)) =
                s.set.send(&mut s.chooser, &cc, Some(stream), msg, now)
            {
                let leg = o.leg;
                for (st, m) in o.into_msgs() {
                    sends.push((leg, st, m));
                }
            }
        }
        let closed = s.set.is_closed();
        for (leg, stream, msg) in sends {
            if let Some((p, c)) = self
                .circuits
                .iter_mut()
                .find(|(_, c)| c.leg == Some((set_i, leg)) && !c.closed)
            {
                out.push((*p, c.relay.from_exit(stream, msg, now)));
            }
        }
        if closed {
            for (p, c) in self.circuits.iter_mut() {
                if c.leg.is_some_and(|(i, _)| i == set_i) && !c.closed {
                    c.closed = true;
                    out.push((*p, Destroy::new(DestroyReason::FINISHED).into()));
                }
            }
        }
    }

    /// The congestion figures of set `set_i`'s legs; `room(path)` says
    /// whether the leg's link takes a cell now.
    fn leg_ccs(
        circuits: &BTreeMap<PathId, ExitCircuit>,
        set_i: usize,
        s: &ExitSet,
        room: &dyn Fn(PathId) -> bool,
    ) -> Vec<(LegId, LegCc)> {
        s.set
            .legs()
            .filter(|(_, linked)| *linked)
            .filter_map(|(leg, _)| {
                let (p, c) = circuits
                    .iter()
                    .find(|(_, c)| c.leg == Some((set_i, leg)) && !c.closed)?;
                Some((leg, c.relay.leg_cc(room(*p))))
            })
            .collect()
    }

    /// The circuit `path` is gone (the client destroyed it, or a relay on
    /// it died).
    pub fn circuit_gone(
        &mut self,
        path: PathId,
        now: Instant,
        out: &mut Vec<(PathId, AnyChanMsg)>,
    ) {
        let Some(c) = self.circuits.get_mut(&path) else {
            return;
        };
        c.closed = true;
        let Some((set_i, leg)) = c.leg else {
            return;
        };
        let info = c
            .relay
            .leg_cc(true)
            .inflight
            .map(|inflight| LegClosedInfo {
                inflight,
                sendme_inc: 31,
            })
            .unwrap_or_default();
        if let Some(s) = self.sets.get_mut(set_i)
            && let Err(e) = s.set.leg_closed(leg, info, now)
        {
            tracing::debug!("exit set closed on a leg's loss: {e}");
        }
        self.drain_set(set_i, now, out);
    }

    /// Cells the exit's streams send now: DATA while a circuit's window
    /// and `room(path)` allow, and ENDs. Returns them in sending order.
    pub fn pump(
        &mut self,
        room: &dyn Fn(PathId) -> bool,
        now: Instant,
        budget: usize,
    ) -> Vec<(PathId, AnyChanMsg)> {
        let mut out = Vec::new();
        for (p, c) in self.circuits.iter_mut() {
            if c.closed || c.leg.is_some() {
                continue;
            }
            while out.len() < budget && room(*p) && c.relay.can_send_data() {
                let Some((stream, msg)) = c.streams.next_msg() else {
                    break;
                };
                out.push((*p, c.relay.from_exit(Some(stream), msg, now)));
            }
        }
        for set_i in 0..self.sets.len() {
            self.pump_set(set_i, room, now, budget, &mut out);
        }
        out
    }

    /// Set `set_i`'s streams onto its legs, as its scheduler places them.
    fn pump_set(
        &mut self,
        set_i: usize,
        room: &dyn Fn(PathId) -> bool,
        now: Instant,
        budget: usize,
        out: &mut Vec<(PathId, AnyChanMsg)>,
    ) {
        let Some(s) = self.sets.get_mut(set_i) else {
            return;
        };
        while out.len() < budget && s.set.is_linked() {
            let cc = Self::leg_ccs(&self.circuits, set_i, s, room);
            if !cc.iter().any(|(_, c)| c.can_send) {
                return;
            }
            let next = s.held.take().or_else(|| s.streams.next_msg());
            let Some((stream, msg)) = next else {
                return;
            };
            s.chooser.set_backlog(None);
            match s.set.send(&mut s.chooser, &cc, Some(stream), msg, now) {
                Ok(SendOutcome::Sent(o)) => {
                    let Some((p, c)) = self
                        .circuits
                        .iter_mut()
                        .find(|(_, c)| c.leg == Some((set_i, o.leg)) && !c.closed)
                    else {
                        return;
                    };
                    for (st, m) in o.into_msgs() {
                        out.push((*p, c.relay.from_exit(st, m, now)));
                    }
                }
                Ok(SendOutcome::Blocked { stream, msg }) => {
                    if let Some(stream) = stream {
                        s.held = Some((stream, msg));
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!("exit set cannot send: {e}");
                    return;
                }
            }
        }
    }

    /// The streams of `path`: its own, or its set's.
    pub fn streams_of(&self, path: PathId) -> Option<&ExitStreams> {
        let c = self.circuits.get(&path)?;
        match c.leg {
            Some((i, _)) => self.sets.get(i).map(|s| &s.streams),
            None => Some(&c.streams),
        }
    }

    /// Every stream the exit served, on any circuit or set.
    pub fn all_streams(&self) -> impl Iterator<Item = (&StreamId, &ExitStream)> {
        self.circuits
            .values()
            .flat_map(|c| c.streams.map.iter())
            .chain(self.sets.iter().flat_map(|s| s.streams.map.iter()))
    }
}
