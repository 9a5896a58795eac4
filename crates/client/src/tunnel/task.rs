//! The tunnel task: one tokio task per tunnel (a single circuit or a
//! Conflux set) that owns the core's [`ClientTunnel`] and moves what it
//! says: cells between each leg's channel queues and the core, bytes
//! between the streams' pipes and the core, and legs the core asks for
//! from the [`LegSource`]. It sleeps until the core's `poll_timeout`.
//! Every protocol decision is the core's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Instant;

use braid_core::circuit::HopTarget;
use braid_core::ids::{LegKey, StreamId};
use braid_core::stream::{EndReason, StreamEvent};
use braid_core::tunnel::{
    ClientTunnel, LegSpec, TunnelClose, TunnelConfig, TunnelError as CoreTunnelError, TunnelEvent,
    TunnelKind,
};
use braid_dir::RelayId;
use tokio::sync::{mpsc, oneshot, watch};
use tor_cell::chancell::msg::AnyChanMsg;

use super::apps::Apps;
use super::handle::{Cmd, TunnelHandle, WeakTunnel, next_tunnel_id};
use crate::channel::{ChannelHandle, CircuitIo};
use crate::error::TunnelError;
use crate::hops::{LegPlan, LegSource, relay_id};
use crate::report::{TunnelInfo, TunnelReport, TunnelStatus};

/// Requests waiting for the task.
const CMD_QUEUE: usize = 64;
/// Cells taken from one leg before the next leg's turn: small, so the
/// core sees the legs' cells in about the order they arrived.
const INBOUND_CHUNK: usize = 16;
/// Cells taken from all legs in one turn of the loop before the streams
/// and the sending side get theirs.
const INBOUND_BUDGET: usize = 512;

/// Build a circuit through `hops` (the first is the relay at the other end
/// of `channel`) and start its task. Returns once the circuit is built.
pub async fn build_tunnel(
    channel: &ChannelHandle,
    hops: Vec<HopTarget>,
    info: TunnelInfo,
    mut config: TunnelConfig,
) -> Result<TunnelHandle, TunnelError> {
    let plan = LegPlan {
        channel: channel.clone(),
        hops,
        names: info.legs.first().cloned().unwrap_or_default(),
        ids: Vec::new(),
    };
    config.kind = TunnelKind::Single;
    spawn(vec![plan], info, config, None).await
}

/// Build a Conflux set over `legs` (each a channel to its guard and the
/// path from that guard to the shared exit) as `config` says (its kind a
/// Conflux set), link it, and start its task. Returns once the set is
/// linked (prop 329 §2.4.2), or fails. With a `source`, the core's
/// requests for new legs go there; without, none is relaunched.
pub async fn build_conflux_tunnel(
    legs: Vec<LegPlan>,
    info: TunnelInfo,
    mut config: TunnelConfig,
    source: Option<Arc<dyn LegSource>>,
) -> Result<TunnelHandle, TunnelError> {
    if source.is_none()
        && let TunnelKind::Conflux { conflux, .. } = &mut config.kind
    {
        conflux.max_leg_retries = 0;
    }
    spawn(legs, info, config, source).await
}

/// Open the legs' circuits, start the task, and wait until the tunnel is
/// open or failed.
async fn spawn(
    plans: Vec<LegPlan>,
    info: TunnelInfo,
    config: TunnelConfig,
    source: Option<Arc<dyn LegSource>>,
) -> Result<TunnelHandle, TunnelError> {
    let mut opened = Vec::new();
    for plan in plans {
        opened.push(open_leg(plan).await?);
    }
    let specs = opened.iter().map(|o| o.spec.clone()).collect();
    let tunnel = ClientTunnel::new(config, specs, &mut rand::rng(), Instant::now())?;
    let (cmd_tx, cmd_rx) = mpsc::channel(CMD_QUEUE);
    let (hold_tx, hold_rx) = mpsc::channel(1);
    let (status_tx, status_rx) = watch::channel(TunnelStatus::Building);
    let (built_tx, built_rx) = oneshot::channel();
    let (leg_tx, leg_rx) = mpsc::channel(4);
    let mut task = Task {
        id: next_tunnel_id(),
        tunnel,
        legs: HashMap::new(),
        names: BTreeMap::new(),
        apps: Apps::default(),
        built: Some(built_tx),
        status: status_tx,
        handles_gone: false,
        source,
        leg_tx,
        outgoing: HashMap::new(),
        incoming: HashMap::new(),
        busy: Arc::new(AtomicUsize::new(0)),
    };
    // The core numbers the first legs in order.
    for (i, leg) in opened.into_iter().enumerate() {
        task.register(LegKey(u32::try_from(i).unwrap_or(u32::MAX)), leg);
    }
    let handle = TunnelHandle {
        id: task.id,
        cmd: cmd_tx,
        hold: Some(hold_tx),
        status: status_rx,
        info: Arc::new(info),
        busy: task.busy.clone(),
    };
    tokio::spawn(task.run(cmd_rx, hold_rx, leg_rx));
    // Open, or why not (a task that ended without a word is a bug).
    built_rx.await.unwrap_or(Err(TunnelError::TaskGone))?;
    Ok(handle)
}

/// A leg's circuit registered on its channel: the spec the core builds it
/// from, its queues, and its relays' nicknames.
#[derive(Debug)]
struct OpenedLeg {
    spec: LegSpec,
    io: LegIo,
    names: Vec<String>,
}

/// Register a circuit for `plan` on its channel.
async fn open_leg(plan: LegPlan) -> Result<OpenedLeg, TunnelError> {
    if plan.hops.is_empty() {
        return Err(TunnelError::Path("a circuit needs at least one hop".into()));
    }
    let (circ_id, CircuitIo { tx, rx }) = plan.channel.open_circuit().await?;
    let (hops, ids, pending) = (plan.hops, plan.ids, None);
    Ok(OpenedLeg {
        spec: LegSpec { circ_id, hops },
        io: LegIo {
            tx,
            rx,
            pending,
            ids,
        },
        names: plan.names,
    })
}

/// One leg's channel queues.
#[derive(Debug)]
struct LegIo {
    tx: mpsc::Sender<AnyChanMsg>,
    rx: mpsc::Receiver<AnyChanMsg>,
    /// A cell its channel queue had no room for.
    pending: Option<AnyChanMsg>,
    /// Its relays.
    ids: Vec<RelayId>,
}

/// A leg asked for by the core, opened (or not).
type NewLeg = Result<OpenedLeg, TunnelError>;

struct Task {
    id: u64,
    tunnel: ClientTunnel,
    legs: HashMap<LegKey, LegIo>,
    /// Every leg's relays' nicknames, for reports (at most the launch
    /// budget's worth).
    names: BTreeMap<LegKey, Vec<String>>,
    apps: Apps,
    built: Option<oneshot::Sender<Result<(), TunnelError>>>,
    status: watch::Sender<TunnelStatus>,
    handles_gone: bool,
    source: Option<Arc<dyn LegSource>>,
    leg_tx: mpsc::Sender<NewLeg>,
    /// Streams moving to another tunnel (Braid proposal 001 §4).
    outgoing: HashMap<StreamId, Outgoing>,
    /// Streams moving here: the old tunnel and id.
    incoming: HashMap<StreamId, (WeakTunnel, StreamId)>,
    /// [`Apps::count`] for the handles ([`TunnelHandle::streams_open`]).
    busy: Arc<AtomicUsize>,
}

/// A stream moving away from this tunnel.
#[derive(Debug, Default)]
struct Outgoing {
    /// The new tunnel and id, once known.
    to: Option<(TunnelHandle, StreamId)>,
    /// Its old id's bytes are all here (the handover waits for `to`).
    handover: bool,
    /// It ended here before the handover: the new id must go.
    ended: bool,
}

impl Task {
    fn register(&mut self, key: LegKey, leg: OpenedLeg) {
        self.names.insert(key, leg.names);
        self.legs.insert(key, leg.io);
    }

    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Cmd>,
        mut hold_rx: mpsc::Receiver<()>,
        mut leg_rx: mpsc::Receiver<NewLeg>,
    ) {
        // Commands come while anything can reach the task (a tunnel its
        // streams alone hold still moves them); it closes once nothing
        // holds it and its streams are done.
        let mut cmd_open = true;
        loop {
            let now = Instant::now();
            self.transmit(now);
            if self.events(now) {
                break;
            }
            // What the events queued (a MIGRATE_MARK, an END) goes now.
            self.transmit(now);
            self.busy.store(self.apps.count(), Ordering::Relaxed);
            let moving = !self.outgoing.is_empty()
                || !self.incoming.is_empty()
                || self.tunnel.migrations_pending();
            if self.handles_gone && self.apps.is_idle() && !moving && !self.tunnel.is_closed() {
                self.tunnel.close(now);
                continue;
            }
            let timer = self.tunnel.poll_timeout();
            let blocked_tx = self
                .legs
                .values()
                .find(|l| l.pending.is_some())
                .map(|l| l.tx.clone());
            let reserve = async move {
                match blocked_tx {
                    Some(tx) => tx.reserve().await.map(drop).is_ok(),
                    None => std::future::pending().await,
                }
            };
            let legs = &mut self.legs;
            let (apps, tunnel) = (&mut self.apps, &mut self.tunnel);
            tokio::select! {
                (key, cell) = std::future::poll_fn(|cx| {
                    for (key, l) in legs.iter_mut() {
                        if let Poll::Ready(c) = l.rx.poll_recv(cx) {
                            return Poll::Ready((*key, c));
                        }
                    }
                    Poll::Pending
                }) => self.inbound(key, cell),
                _ = reserve => self.unblock(),
                cmd = cmd_rx.recv(), if cmd_open => match cmd {
                    Some(cmd) => self.command(cmd, Instant::now()),
                    None => {
                        cmd_open = false;
                        self.handles_gone = true;
                    }
                },
                None = hold_rx.recv(), if !self.handles_gone => self.handles_gone = true,
                () = std::future::poll_fn(|cx| apps.poll(cx, tunnel)) => self.apps_gone(),
                Some(leg) = leg_rx.recv() => self.new_leg(leg),
                () = sleep_until(timer) => self.tunnel.handle_timeout(Instant::now()),
            }
        }
        tracing::debug!("tunnel task ends");
    }

    /// A cell (or the end) from leg `key`, then every leg's queued cells
    /// in turn, a chunk each, up to the budget: a leg whose cells wait
    /// while another's fill the reorder queue would stall the set.
    fn inbound(&mut self, key: LegKey, first: Option<AnyChanMsg>) {
        let now = Instant::now();
        let Some(cell) = first else {
            self.tunnel.handle_leg_gone(key, now);
            return;
        };
        self.tunnel.handle_cell(key, cell, now);
        let mut taken = 1;
        loop {
            let before = taken;
            for (k, l) in &mut self.legs {
                for _ in 0..INBOUND_CHUNK {
                    if taken >= INBOUND_BUDGET {
                        return;
                    }
                    match l.rx.try_recv() {
                        Ok(cell) => {
                            taken += 1;
                            self.tunnel.handle_cell(*k, cell, now);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            self.tunnel.handle_leg_gone(*k, now);
                            break;
                        }
                    }
                }
            }
            if taken == before {
                return;
            }
        }
    }

    /// The core's cells into the legs' channel queues; a full queue blocks
    /// its leg until it has room.
    fn transmit(&mut self, now: Instant) {
        while let Some((key, cell)) = self.tunnel.poll_transmit(now) {
            let Some(l) = self.legs.get_mut(&key) else {
                continue;
            };
            match l.tx.try_send(cell) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(cell)) => {
                    l.pending = Some(cell);
                    self.tunnel.set_leg_blocked(key, true);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.tunnel.handle_leg_gone(key, now);
                }
            }
        }
    }

    /// A blocked leg's queue has room: its waiting cell goes.
    fn unblock(&mut self) {
        for (key, l) in &mut self.legs {
            let Some(cell) = l.pending.take() else {
                continue;
            };
            match l.tx.try_send(cell) {
                Err(mpsc::error::TrySendError::Full(cell)) => l.pending = Some(cell),
                // Sent, or the channel is gone (which its receiver says).
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.tunnel.set_leg_blocked(*key, false);
                }
            }
        }
    }

    /// Act on the core's events. True once the task is done.
    fn events(&mut self, now: Instant) -> bool {
        while let Some(ev) = self.tunnel.poll_event() {
            match ev {
                TunnelEvent::Opened => {
                    let _ = self.status.send(TunnelStatus::Open);
                    if let Some(b) = self.built.take() {
                        let _ = b.send(Ok(()));
                    }
                }
                TunnelEvent::LegBuilt { leg, took, .. } => {
                    if let (Some(s), Some(l)) = (&self.source, self.legs.get(&leg)) {
                        s.leg_built(&l.ids, took);
                    }
                }
                TunnelEvent::LegFailed {
                    leg,
                    error: error @ CoreTunnelError::BuildTimeout { hops_done, .. },
                    ..
                } => {
                    tracing::info!("tunnel {}: {error}", self.id);
                    if let (Some(s), Some(l)) = (&self.source, self.legs.get(&leg)) {
                        s.leg_timed_out(&l.ids, hops_done);
                        if let Some(i) = error.suspect() {
                            s.leg_failed(&l.ids, i);
                        }
                    }
                }
                TunnelEvent::LegFailed { leg, error, .. }
                | TunnelEvent::LegLost { leg, error, .. } => {
                    tracing::info!("tunnel {}: {error}", self.id);
                    if let (Some(s), Some(l), Some(i)) =
                        (&self.source, self.legs.get(&leg), error.suspect())
                    {
                        s.leg_failed(&l.ids, i);
                    }
                }
                TunnelEvent::LegWanted { exit, avoid } => self.want_leg(&exit, &avoid),
                TunnelEvent::KeepsFailing { losses, within } => {
                    // Policy (b) (Braid proposal 001 §4.4): the client
                    // moves its streams elsewhere.
                    tracing::info!(
                        "tunnel {}: {losses} legs lost within {within:?}: its streams leave it",
                        self.id
                    );
                    if let Some(s) = &self.source {
                        s.tunnel_failing(self.id);
                    }
                }
                TunnelEvent::LegReleased { leg } => {
                    self.legs.remove(&leg);
                }
                TunnelEvent::Stream(ev) => self.stream_event(ev, now),
                TunnelEvent::Closed { error } => {
                    tracing::debug!("tunnel {} closed: {error}", self.id);
                    // Streams that were moving and never handed over.
                    for (_, o) in self.outgoing.drain() {
                        if let Some((to, b)) = o.to {
                            to.send_now(Cmd::CloseStream { id: b });
                        }
                    }
                    self.apps
                        .fail_all(&error.to_string(), error.retry_elsewhere());
                    let close = self
                        .tunnel
                        .close_summary()
                        .unwrap_or_else(|| TunnelClose::new(&error, &[], 0));
                    let _ = self.status.send(TunnelStatus::Closed(close));
                    if let Some(b) = self.built.take() {
                        let _ = b.send(Err(TunnelError::Core(error)));
                    }
                }
            }
        }
        self.tunnel.is_finished()
    }

    /// Ask the source for a leg the core wants, in the background.
    fn want_leg(&mut self, exit: &HopTarget, avoid: &[tor_llcrypto::pk::rsa::RsaIdentity]) {
        let Some(source) = self.source.clone() else {
            self.tunnel
                .leg_unavailable("no source of legs".into(), Instant::now());
            return;
        };
        let exit = relay_id(&exit.rsa_id);
        let used: Vec<RelayId> = avoid.iter().map(relay_id).collect();
        let tx = self.leg_tx.clone();
        tokio::spawn(async move {
            let result = match source.new_leg(exit, used).await {
                Ok(plan) => open_leg(plan).await,
                Err(e) => Err(e),
            };
            let _ = tx.send(result).await;
        });
    }

    /// A leg the core asked for is open (or could not be).
    fn new_leg(&mut self, result: NewLeg) {
        let now = Instant::now();
        match result {
            Ok(leg) => {
                // path-spec §2.4: the learned timeout as it is now.
                let hops = leg.spec.hops.len();
                if let Some(t) = self.source.as_ref().and_then(|s| s.build_timeout(hops)) {
                    self.tunnel.set_leg_build_timeout(t);
                }
                match self.tunnel.add_leg(leg.spec.clone(), now) {
                    Ok(key) => self.register(key, leg),
                    Err(e) => tracing::debug!("tunnel {}: a new leg refused: {e}", self.id),
                }
            }
            Err(e) => self.tunnel.leg_unavailable(e.to_string(), now),
        }
    }

    fn command(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Begin { target, reply } => self.apps.begin(&mut self.tunnel, &target, reply),
            Cmd::Resolve { query, reply } => self.apps.resolve(&mut self.tunnel, query, reply),
            Cmd::Report { reply } => {
                let streams = self.apps.count();
                let list = self.apps.list(&self.tunnel);
                let report = TunnelReport::of(self.id, &self.tunnel, &self.names, streams, list);
                let _ = reply.send(report);
            }
            Cmd::Close => self.tunnel.close(now),
            Cmd::FindApp { app, reply } => {
                let _ = reply.send(self.apps.find(app));
            }
            cmd => self.migrate_command(cmd, now),
        }
    }
}

/// Sleep until `t`, or forever.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Live stream migration (Braid proposal 001 §4): the task carries what
/// the core gives between its tunnel and the other one, nothing more.
impl Task {
    /// A stream event: the migration's, then the application's.
    fn stream_event(&mut self, ev: StreamEvent, now: Instant) {
        match &ev {
            StreamEvent::MigrateHandover { id } => {
                let id = *id;
                if let Some(o) = self.outgoing.get_mut(&id) {
                    o.handover = true;
                    if o.to.is_some() {
                        self.hand_over(id, now);
                    }
                }
            }
            StreamEvent::MigrateFailed { id, refused } => {
                if let Some((from, a)) = self.incoming.remove(id)
                    && let Some(from) = from.reach()
                {
                    from.send_now(Cmd::MigrateTargetFailed {
                        id: a,
                        refused: *refused,
                    });
                }
            }
            StreamEvent::Ended { id, .. } => {
                // Ended here before its handover: the new id goes too.
                if let Some(o) = self.outgoing.get_mut(id) {
                    o.ended = true;
                    if let Some((to, b)) = o.to.take() {
                        to.send_now(Cmd::CloseStream { id: b });
                        self.outgoing.remove(id);
                    }
                }
            }
            _ => {}
        }
        self.apps.on_event(&mut self.tunnel, ev, now);
    }

    /// Outgoing stream `id` has all its bytes and knows its new place:
    /// what is left of it and the application's end go there.
    fn hand_over(&mut self, id: StreamId, now: Instant) {
        let Some(o) = self.outgoing.remove(&id) else {
            return;
        };
        let Some((to, b)) = o.to else {
            return;
        };
        let handover = self.tunnel.migrate_finish(id, now);
        match (handover, self.apps.take(id)) {
            (Ok(handover), Some(app)) => {
                tracing::debug!(
                    "tunnel {}: {id} moves to tunnel {} as {b}",
                    self.id,
                    to.id()
                );
                to.send_now(Cmd::MigrateJoin {
                    id: b,
                    handover,
                    app,
                });
            }
            (_, app) => {
                if let Some(app) = app {
                    app.fail();
                }
                to.send_now(Cmd::CloseStream { id: b });
            }
        }
    }

    /// The application ends of streams that went away: a stream moving
    /// away takes its new id with it.
    fn apps_gone(&mut self) {
        for id in self.apps.take_gone() {
            if let Some(o) = self.outgoing.remove(&id)
                && let Some((to, b)) = o.to
            {
                to.send_now(Cmd::CloseStream { id: b });
            }
        }
    }

    /// A migration request from the client or the other tunnel.
    fn migrate_command(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::MigrateOut { id, reply } => {
                let r = self.tunnel.migrate_out(id, now).map_err(|e| e.to_string());
                if r.is_ok() {
                    self.outgoing.insert(id, Outgoing::default());
                }
                let _ = reply.send(r);
            }
            Cmd::MigrateIn {
                ticket,
                from,
                from_id,
                reply,
            } => {
                let r = self
                    .tunnel
                    .migrate_in(&ticket, now)
                    .map_err(|e| e.to_string());
                if let Ok(b) = r {
                    self.incoming.insert(b, (from, from_id));
                }
                let _ = reply.send(r);
            }
            Cmd::MigrateTo { id, to, to_id } => {
                let Some(o) = self.outgoing.get_mut(&id) else {
                    // It ended meanwhile.
                    to.send_now(Cmd::CloseStream { id: to_id });
                    return;
                };
                if o.ended {
                    self.outgoing.remove(&id);
                    to.send_now(Cmd::CloseStream { id: to_id });
                    return;
                }
                o.to = Some((to, to_id));
                if o.handover {
                    self.hand_over(id, now);
                }
            }
            Cmd::MigrateJoin { id, handover, app } => {
                self.incoming.remove(&id);
                match self.tunnel.migrate_join(id, handover, now) {
                    Ok(()) => self.apps.adopt(id, app),
                    Err(e) => {
                        tracing::info!("tunnel {}: a stream could not take over: {e}", self.id);
                        app.fail();
                    }
                }
            }
            Cmd::MigrateTargetFailed { id, refused } => {
                self.outgoing.remove(&id);
                if let Err(e) = self.tunnel.migrate_target_failed(id, refused, now) {
                    tracing::debug!("tunnel {}: {e}", self.id);
                }
            }
            Cmd::CloseStream { id } => {
                self.incoming.remove(&id);
                let _ = self.tunnel.close_stream(id, EndReason::MISC, now);
            }
            Cmd::Begin { .. }
            | Cmd::Resolve { .. }
            | Cmd::Report { .. }
            | Cmd::Close
            | Cmd::FindApp { .. } => {}
        }
    }
}
