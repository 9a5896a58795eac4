//! The Conflux tunnel task: one task owns every leg of a set (the design
//! sketch's option 2). Each leg is a core [`ClientCircuit`] with its own
//! queues to its channel; the core's [`ConfluxSet`] links the legs,
//! sequences what is sent, reorders what arrives; the shared stream side
//! sees one ordered stream of messages, as on a single circuit.
//!
//! Legs are relaunched (prop 329 §2.4.3, §2.4.4): a leg that fails to
//! build or link is replaced while the set is being built, and a linked
//! set that loses a leg without losing data gets a new leg with the same
//! nonce, within a launch budget. A [`LegSource`] (the client) picks each
//! new leg's path: a guard and a middle no open leg uses, the set's exit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use braid_core::circuit::{CircEvent, ClientCircuit, CloseReason, HopTarget};
use braid_core::conflux::{
    ConfluxConfig, ConfluxEvent, ConfluxNonce, ConfluxSet, Handled, LegCc, LegClosedInfo,
    SendOutcome,
};
use braid_core::conflux_sched::{SchedulerChooser, SchedulerKind};
use braid_core::ids::{HopNum, LegId, StreamId};
use tokio::sync::{mpsc, oneshot, watch};
use tor_cell::chancell::msg::AnyChanMsg;
use tor_cell::chancell::msg::DestroyReason;
use tor_cell::relaycell::msg::AnyRelayMsg;

use super::handle::{Cmd, TunnelError, TunnelHandle, TunnelInfo, TunnelStatus, next_tunnel_id};
use super::reactor::{TunnelParams, flush_cells, open_circuit, sleep_until};
use super::report::{LegReport, ReorderReport, TunnelReport};
use super::streams::StreamSide;
use crate::channel::{ChannelHandle, CircuitIo};

/// One leg to build: a channel to its guard, the hops from that guard to
/// the exit, and its relays (nicknames and identities, guard first).
#[derive(Debug)]
pub struct LegPlan {
    /// A channel to the guard.
    pub channel: ChannelHandle,
    /// The hops, guard first.
    pub hops: Vec<HopTarget>,
    /// Nicknames, guard first.
    pub names: Vec<String>,
    /// Identities, guard first.
    pub ids: Vec<braid_dir::RelayId>,
}

/// A future of a new leg's plan.
pub type LegFuture = Pin<Box<dyn Future<Output = Result<LegPlan, TunnelError>> + Send>>;

/// Where a set gets the paths of relaunched legs.
pub trait LegSource: Send + Sync + std::fmt::Debug {
    /// A leg to `exit` whose guard and middle are none of `used` (prop 329
    /// §2.2: legs share no guard or middle).
    fn new_leg(&self, exit: braid_dir::RelayId, used: Vec<braid_dir::RelayId>) -> LegFuture;
    /// The leg along `ids` failed after `hops_done` hops (the relay at that
    /// index, if any, could not be reached).
    fn leg_failed(&self, ids: &[braid_dir::RelayId], hops_done: usize);
    /// The leg along `ids` is built: its guard works (guard-spec §4.8).
    fn leg_built(&self, ids: &[braid_dir::RelayId]);
}

/// Cells taken from one leg's queue before the next leg's turn: small, so
/// the set sees the legs' cells in about the order they arrived (a leg's
/// long batch would hold the other legs' earlier cells back and swell the
/// reorder queue with cells that are only waiting for our own loop).
const INBOUND_CHUNK: usize = 16;
/// Cells taken from all legs in one turn of the loop before the streams
/// and the sending side get theirs.
const INBOUND_BUDGET: usize = 512;
/// Requests waiting for the task.
const CMD_QUEUE: usize = 64;
/// Queue room every leg keeps for the set's own messages (SWITCH, LINK).
const LEG_RESERVE: usize = 4;
/// A replacement leg's LINK claims as `last_seqno_sent` only what we
/// sent at least this many of the slowest leg's link RTTs ago: a C-tor
/// exit takes a claim above what it has delivered for data loss and closes
/// the whole set (`validate_unlinked_legs`).
const LINK_DELIVERED_RTTS: u32 = 4;
/// ... and at least this long ago.
const LINK_DELIVERED_MIN: Duration = Duration::from_millis(250);
/// Sends remembered for that (older ones are folded into a floor).
const SENT_LOG: usize = 1024;

/// One leg's circuit and its channel queues.
struct Leg {
    circuit: ClientCircuit,
    tx: mpsc::Sender<AnyChanMsg>,
    rx: mpsc::Receiver<AnyChanMsg>,
    pending: Option<AnyChanMsg>,
    /// The set's name for it, once built and LINK sent.
    id: Option<LegId>,
    last_hop: HopNum,
    /// Built (congestion control on its last hop).
    built: bool,
    /// Hops completed so far.
    hops_done: usize,
    closed: bool,
    /// The relays' nicknames, guard first.
    path: Vec<String>,
    /// The relays' identities, guard first.
    ids: Vec<braid_dir::RelayId>,
    /// It replaced a leg that closed or failed.
    replacement: bool,
}

impl Leg {
    /// A leg whose circuit is being built.
    fn new(
        circuit: ClientCircuit,
        io: CircuitIo,
        plan_names: Vec<String>,
        ids: Vec<braid_dir::RelayId>,
        replacement: bool,
    ) -> Self {
        let CircuitIo { tx, rx } = io;
        Self {
            circuit,
            tx,
            rx,
            pending: None,
            id: None,
            last_hop: HopNum(0),
            built: false,
            hops_done: 0,
            closed: false,
            path: plan_names,
            ids,
            replacement,
        }
    }
}

/// A relaunched leg's circuit, opened, or why not.
type Relaunched = Result<
    (
        ClientCircuit,
        CircuitIo,
        Vec<String>,
        Vec<braid_dir::RelayId>,
    ),
    TunnelError,
>;

/// Build a Conflux set over `legs` (each a channel to its guard and the
/// path from that guard to the shared exit), link it, and start its task.
/// Returns once every leg is linked (prop 329 §2.4.2), or fails. With a
/// `source`, legs that fail are relaunched within the launch budget
/// (`num_legs + max_leg_retries`, as C-tor's `cfx_max_unlinked_leg_retry`).
pub async fn build_conflux_tunnel(
    legs: Vec<LegPlan>,
    info: TunnelInfo,
    params: TunnelParams,
    mut conflux: ConfluxConfig,
    scheduler: SchedulerKind,
    source: Option<Arc<dyn LegSource>>,
) -> Result<TunnelHandle, TunnelError> {
    let mut built_legs = Vec::new();
    for plan in legs {
        let (circuit, io) = open_circuit(&plan.channel, plan.hops, &params).await?;
        built_legs.push(Leg::new(circuit, io, plan.names, plan.ids, false));
    }
    conflux.num_legs = built_legs.len();
    let budget = conflux.num_legs.saturating_add(conflux.max_leg_retries);
    let nonce = {
        let mut rng = rand::rng();
        ConfluxNonce::random(&mut rng)
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(CMD_QUEUE);
    let (status_tx, status_rx) = watch::channel(TunnelStatus::Building);
    let (built_tx, built_rx) = oneshot::channel();
    let (relaunch_tx, relaunch_rx) = mpsc::channel(4);
    let id = next_tunnel_id();
    let task = Task {
        id,
        exit: info.exit,
        launches: built_legs.len(),
        budget,
        legs: built_legs,
        set: ConfluxSet::new_client(nonce, conflux),
        side: StreamSide::new(params.streams.clone(), params.flow.clone()),
        chooser: SchedulerChooser::new(scheduler.build()),
        held: None,
        built: Some(built_tx),
        status: status_tx,
        handles_gone: false,
        source,
        params,
        relaunch_tx,
        relaunching: 0,
        sent_log: std::collections::VecDeque::new(),
        sent_floor: 0,
        fatal: None,
    };
    let build_timeout = task.params.build_timeout;
    tokio::spawn(task.run(cmd_rx, relaunch_rx));
    let handle = TunnelHandle {
        id,
        cmd: cmd_tx,
        status: status_rx,
        info: Arc::new(info),
    };
    match tokio::time::timeout(build_timeout, built_rx).await {
        Ok(Ok(Ok(()))) => Ok(handle),
        Ok(Ok(Err((reason, Some((leg, hops_done)))))) => Err(TunnelError::LegBuild {
            leg,
            hops_done,
            reason,
        }),
        Ok(Ok(Err((reason, None)))) => Err(TunnelError::Build {
            reason,
            hops_done: 0,
        }),
        Ok(Err(_)) => Err(TunnelError::Build {
            reason: "the tunnel task ended".into(),
            hops_done: 0,
        }),
        Err(_) => {
            handle.close().await;
            Err(TunnelError::Timeout(build_timeout))
        }
    }
}

/// How a set's build ended: linked, or why not (with the failed leg's index
/// and hops completed, when a leg's build failed).
type BuiltReply = Result<(), (String, Option<(usize, usize)>)>;

struct Task {
    id: u64,
    legs: Vec<Leg>,
    set: ConfluxSet,
    side: StreamSide,
    chooser: SchedulerChooser,
    /// A stream message the set could not place yet (no leg may send DATA).
    held: Option<(StreamId, AnyRelayMsg)>,
    /// Answered when the set links, or with why it failed (and which leg
    /// after how many hops, when a leg's build failed).
    built: Option<oneshot::Sender<BuiltReply>>,
    status: watch::Sender<TunnelStatus>,
    handles_gone: bool,
    /// The set's exit.
    exit: braid_dir::RelayId,
    /// Where relaunched legs come from (none: no relaunch).
    source: Option<Arc<dyn LegSource>>,
    /// For relaunched legs' circuits.
    params: TunnelParams,
    /// Relaunched legs' circuits come back here.
    relaunch_tx: mpsc::Sender<Relaunched>,
    /// Relaunches under way.
    relaunching: usize,
    /// Legs launched so far, first ones included.
    launches: usize,
    /// Most legs ever launched.
    budget: usize,
    /// Recent sends: when, and our `last_seq_sent` after it.
    sent_log: std::collections::VecDeque<(Instant, u64)>,
    /// `last_seq_sent` after the newest send folded out of the log.
    sent_floor: u64,
    /// Why the set must close (a failure outside the core).
    fatal: Option<String>,
}

impl Task {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Cmd>,
        mut relaunch_rx: mpsc::Receiver<Relaunched>,
    ) {
        let reason = loop {
            let now = Instant::now();
            if let Err(reason) = self.process(now) {
                break reason;
            }
            self.flush();
            if self.handles_gone && self.side.is_idle() {
                break "no longer used".to_owned();
            }
            let timer = match (self.side.timer(), self.set.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = sleep_until(timer);
            let blocked = self
                .legs
                .iter()
                .position(|l| l.pending.is_some() && !l.closed);
            // Wait for room on the first blocked leg (others are retried on
            // every turn); the permit is released at once, flush() uses it.
            let blocked_tx = blocked.and_then(|i| self.legs.get(i)).map(|l| l.tx.clone());
            let reserve = async move {
                match blocked_tx {
                    Some(tx) => tx.reserve().await.map(drop).is_ok(),
                    None => std::future::pending().await,
                }
            };
            let legs = &mut self.legs;
            let side = &mut self.side;
            tokio::select! {
                (i, cell) = std::future::poll_fn(|cx| {
                    for (i, leg) in legs.iter_mut().enumerate() {
                        if leg.closed {
                            continue;
                        }
                        if let Poll::Ready(c) = leg.rx.poll_recv(cx) {
                            return Poll::Ready((i, c));
                        }
                    }
                    Poll::Pending
                }) => {
                    let now = Instant::now();
                    let mut taken = self.inbound(i, cell, now);
                    // Then every leg's queue in turn, a chunk each, until
                    // they are empty or the budget is spent: a leg whose
                    // cells wait in its queue while another leg's fill
                    // the reorder queue would stall the whole set.
                    loop {
                        let before = taken;
                        for j in 0..self.legs.len() {
                            if taken >= INBOUND_BUDGET || self.fatal.is_some() {
                                break;
                            }
                            if let Some(leg) = self.legs.get_mut(j)
                                && !leg.closed
                                && let Ok(cell) = leg.rx.try_recv()
                            {
                                taken += self.inbound(j, Some(cell), now);
                            }
                        }
                        if taken == before || taken >= INBOUND_BUDGET || self.fatal.is_some() {
                            break;
                        }
                    }
                }
                _ = reserve => {}
                cmd = cmd_rx.recv(), if !self.handles_gone => match cmd {
                    Some(cmd) => self.command(cmd, Instant::now()),
                    None => self.handles_gone = true,
                },
                () = std::future::poll_fn(|cx| side.poll_apps(cx)) => {}
                Some(r) = relaunch_rx.recv() => self.relaunched(r),
                () = sleep => {
                    let now = Instant::now();
                    self.side.handle_timeout(now);
                    self.set.handle_timeout(now);
                }
            }
        };
        for leg in &mut self.legs {
            leg.circuit.close();
            while let Some(cell) = leg.circuit.poll_transmit() {
                let _ = leg.tx.try_send(cell);
            }
        }
        self.side.fail_all(&reason);
        if let Some(built) = self.built.take() {
            let _ = built.send(Err((reason.clone(), None)));
        }
        let _ = self.status.send(TunnelStatus::Closed(reason.clone()));
        tracing::info!("conflux tunnel ends: {reason}");
    }

    /// `first` and up to [`INBOUND_CHUNK`] cells in all from leg `i`'s
    /// channel queue (`None`: the channel is gone), each taken through
    /// the circuit and the set at once, and what it puts in order handed
    /// to the streams, so in-order cells never pile up in the reorder
    /// queue behind a batch. Returns the cells taken. An error that closes
    /// the set is kept for [`Self::process`].
    fn inbound(&mut self, i: usize, first: Option<AnyChanMsg>, now: Instant) -> usize {
        let Some(first) = first else {
            if let Some(leg) = self.legs.get_mut(i) {
                leg.circuit.close();
            }
            return 0;
        };
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(cell) = next.take() {
            let Some(leg) = self.legs.get_mut(i) else {
                break;
            };
            if let Err(e) = leg.circuit.handle_cell(now, cell) {
                tracing::info!("conflux leg circuit closed: {e}");
                break;
            }
            taken += 1;
            if let Err(reason) = self.leg_events(i, now) {
                self.fatal.get_or_insert(reason);
                break;
            }
            self.deliver(now);
            if taken < INBOUND_CHUNK
                && let Some(leg) = self.legs.get_mut(i)
            {
                next = leg.rx.try_recv().ok();
            }
        }
        taken
    }

    /// Leg `i`'s circuit events into the set.
    fn leg_events(&mut self, i: usize, now: Instant) -> Result<(), String> {
        while let Some(ev) = self.legs.get_mut(i).and_then(|l| l.circuit.poll_event()) {
            self.circuit_event(i, ev, now)?;
        }
        Ok(())
    }

    /// In-order messages from the set to the streams.
    fn deliver(&mut self, now: Instant) {
        while let Some(d) = self.set.poll_delivered() {
            if let Some(stream) = d.stream {
                self.side.handle_msg(now, stream, d.msg);
            }
        }
    }

    /// Hand each leg's cells to its channel while there is room.
    fn flush(&mut self) {
        for leg in &mut self.legs {
            if leg.closed {
                continue;
            }
            flush_cells(&mut leg.circuit, &leg.tx, &mut leg.pending);
        }
    }

    /// Move everything one step through the core. An error closes the set.
    fn process(&mut self, now: Instant) -> Result<(), String> {
        if let Some(reason) = self.fatal.take() {
            return Err(reason);
        }
        // Circuit events of every leg into the set.
        for i in 0..self.legs.len() {
            self.leg_events(i, now)?;
        }
        // The set's own messages onto their legs.
        while let Some((id, msg)) = self.set.poll_transmit() {
            if let Some(leg) = self.legs.iter_mut().find(|l| l.id == Some(id)) {
                let hop = leg.last_hop;
                if let Err(e) = leg.circuit.send_relay(hop, None, msg, now) {
                    tracing::info!("cannot send on {id}: {e}");
                }
            }
        }
        while let Some(ev) = self.set.poll_event() {
            match ev {
                ConfluxEvent::SetLinked { legs } => {
                    tracing::info!("conflux set linked with {legs} legs");
                    self.side.open(true);
                    let _ = self.status.send(TunnelStatus::Open);
                    if let Some(built) = self.built.take() {
                        let _ = built.send(Ok(()));
                    }
                }
                ConfluxEvent::LegFailed { leg, error } => {
                    tracing::info!("conflux {leg} failed to link: {error}");
                    // The set has dropped it; its close relaunches it.
                    if let Some(l) = self.legs.iter_mut().find(|l| l.id == Some(leg)) {
                        l.id = None;
                        l.circuit.close();
                    }
                }
                ConfluxEvent::LegLinked { leg, rtt } => {
                    tracing::debug!("conflux {leg} linked, RTT {rtt:?}");
                }
                ConfluxEvent::LegRtt { .. } => {}
            }
        }
        if self.set.is_closed() {
            return Err(self
                .set
                .close_reason()
                .map_or_else(|| "the set closed".to_owned(), ToString::to_string));
        }
        if self.legs.iter().all(|l| l.closed) && self.relaunching == 0 {
            return Err("every leg closed".into());
        }
        self.deliver(now);
        self.side.process_events(now);
        self.send_streams(now)?;
        Ok(())
    }

    fn circuit_event(&mut self, i: usize, ev: CircEvent, now: Instant) -> Result<(), String> {
        let Some(leg) = self.legs.get_mut(i) else {
            return Ok(());
        };
        match ev {
            CircEvent::HopAdded { .. } => leg.hops_done += 1,
            CircEvent::Built { n_hops } => {
                if let Some(source) = &self.source {
                    source.leg_built(&leg.ids);
                }
                leg.last_hop = HopNum(u8::try_from(n_hops.saturating_sub(1)).unwrap_or(0));
                if !leg.circuit.cc_enabled(leg.last_hop) {
                    // prop 329 §2.2: legs need congestion control.
                    tracing::info!("conflux leg without congestion control: closed");
                    leg.circuit.close();
                    return Ok(());
                }
                leg.built = true;
                self.link_built_legs(now);
            }
            CircEvent::BuildFailed { reason } => {
                leg.closed = true;
                let hops_done = leg.hops_done;
                tracing::info!("conflux leg failed to build: {reason:?}");
                if let Some(source) = &self.source {
                    source.leg_failed(&leg.ids, hops_done);
                }
                if !self.relaunch() && self.built.is_some() {
                    let reason = format!("a leg failed to build: {reason:?}");
                    if let Some(built) = self.built.take() {
                        let _ = built.send(Err((reason.clone(), Some((i, hops_done)))));
                    }
                    return Err(reason);
                }
            }
            CircEvent::Closed { reason } => {
                leg.closed = true;
                tracing::info!("conflux leg closed: {reason:?}");
                // A guard gives CHANNEL_CLOSED only for its own channel to
                // the next hop (C-tor forwards a DESTROY from further on
                // as DESTROYED): the middle is likely gone, though the
                // consensus still lists it. Not in the replacement.
                if let CloseReason::Destroyed { reason } = &reason
                    && *reason == DestroyReason::CHANNEL_CLOSED
                    && let Some(source) = &self.source
                {
                    source.leg_failed(&leg.ids, 1);
                }
                if let Some(id) = leg.id {
                    let info = leg
                        .circuit
                        .hop_figures(leg.last_hop)
                        .map(|f| LegClosedInfo {
                            inflight: f.inflight.unwrap_or(0),
                            sendme_inc: f.cc_sendme_inc.map_or(0, u64::from),
                        })
                        .unwrap_or_default();
                    // prop 329 §2.4.3: the set goes on only if no data
                    // was lost with the leg.
                    self.set
                        .leg_closed(id, info, now)
                        .map_err(|e| e.to_string())?;
                }
                if !self.relaunch() && self.built.is_some() {
                    return Err(format!("a leg closed before linking: {reason:?}"));
                }
            }
            CircEvent::StreamMsg { hop, stream, msg } => {
                self.leg_msg(i, hop, Some(stream), msg, now)?;
            }
            CircEvent::CircMsg { hop, msg } => self.leg_msg(i, hop, None, msg, now)?,
        }
        Ok(())
    }

    /// Send LINK on built legs that have none yet. While the set is being
    /// built, only once every leg is built (the set counts as linked once
    /// every leg launched so far links, prop 329 §2.4.2, so a fast leg
    /// would otherwise link a one-leg set); a new leg of a linked set at
    /// once, claiming only what the exit has surely delivered
    /// ([`Self::delivered_seq`]).
    fn link_built_legs(&mut self, now: Instant) {
        if self.set.is_closed() {
            return;
        }
        let linked = self.set.is_linked();
        if !linked && (self.relaunching > 0 || !self.legs.iter().all(|l| l.built || l.closed)) {
            return;
        }
        let delivered = self.delivered_seq(now);
        for leg in self
            .legs
            .iter_mut()
            .filter(|l| l.built && !l.closed && l.id.is_none())
        {
            let added = if linked {
                self.set.add_leg_delivered(now, delivered)
            } else {
                self.set.add_leg(now)
            };
            match added {
                Ok(id) => {
                    if leg.replacement {
                        tracing::info!(
                            "conflux: LINK for a new leg {} (last_seqno_sent {delivered})",
                            leg.path.join(" > ")
                        );
                    }
                    leg.id = Some(id);
                }
                Err(e) => {
                    tracing::info!("cannot add a conflux leg: {e}");
                    leg.circuit.close();
                }
            }
        }
    }

    /// The highest sequence number we sent long enough ago
    /// ([`LINK_DELIVERED_RTTS`]) for the exit to have delivered it.
    fn delivered_seq(&mut self, now: Instant) -> u64 {
        let rtt = self
            .legs
            .iter()
            .filter_map(|l| l.id.and_then(|id| self.set.leg_rtt(id)))
            .max()
            .unwrap_or_default();
        let age = (rtt * LINK_DELIVERED_RTTS).max(LINK_DELIVERED_MIN);
        while let Some(&(at, seq)) = self.sent_log.front() {
            if at + age > now {
                break;
            }
            self.sent_floor = seq;
            self.sent_log.pop_front();
        }
        self.sent_floor
    }

    /// Launch a new leg to the set's exit, if there is a source and launch
    /// budget left (prop 329 §2.4.3 relaunch; §2.4.4 a new leg for a
    /// linked set). True if one is under way.
    fn relaunch(&mut self) -> bool {
        let Some(source) = self.source.clone() else {
            return false;
        };
        if self.set.is_closed() || self.launches >= self.budget || self.handles_gone {
            return false;
        }
        self.launches += 1;
        self.relaunching += 1;
        let exit = self.exit;
        let used: Vec<braid_dir::RelayId> = self
            .legs
            .iter()
            .filter(|l| !l.closed)
            .flat_map(|l| l.ids.iter().copied())
            .filter(|id| *id != exit)
            .collect();
        let params = self.params.clone();
        let tx = self.relaunch_tx.clone();
        tracing::info!(
            "conflux: relaunching a leg ({} of {} launches)",
            self.launches,
            self.budget
        );
        tokio::spawn(async move {
            let result = async {
                let plan = source.new_leg(exit, used).await?;
                let (circuit, io) = open_circuit(&plan.channel, plan.hops, &params).await?;
                Ok((circuit, io, plan.names, plan.ids))
            }
            .await;
            let _ = tx.send(result).await;
        });
        true
    }

    /// A relaunched leg's circuit is open (or could not be).
    fn relaunched(&mut self, result: Relaunched) {
        self.relaunching = self.relaunching.saturating_sub(1);
        match result {
            Ok((circuit, io, names, ids)) => {
                self.legs.push(Leg::new(circuit, io, names, ids, true));
            }
            Err(e) => {
                tracing::info!("conflux: a relaunched leg failed: {e}");
                if !self.relaunch() && self.built.is_some() {
                    self.fatal = Some(format!("no leg could be relaunched: {e}"));
                }
            }
        }
    }

    fn leg_msg(
        &mut self,
        i: usize,
        hop: HopNum,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), String> {
        let Some(leg) = self.legs.get(i) else {
            return Ok(());
        };
        // prop 329 §4.2.1: Conflux and stream traffic only from the exit.
        if hop != leg.last_hop {
            return Err(format!("a relay message from {hop}, not the exit"));
        }
        let Some(id) = leg.id else {
            return Err("a message on a leg that is not linked".into());
        };
        match self.set.handle_msg(id, stream, msg, now) {
            Ok(Handled::Consumed) => Ok(()),
            Ok(Handled::NotConflux { stream, msg }) => {
                if let Some(stream) = stream {
                    self.side.handle_msg(now, stream, msg);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stream messages through the set onto legs, while legs take them.
    fn send_streams(&mut self, now: Instant) -> Result<(), String> {
        loop {
            let room = self
                .legs
                .iter()
                .filter(|l| l.id.is_some() && !l.closed)
                .all(|l| l.circuit.queue_space() > LEG_RESERVE);
            if !room {
                return Ok(());
            }
            let cc: Vec<(LegId, LegCc)> = self
                .legs
                .iter()
                .filter(|l| !l.closed)
                .filter_map(|l| {
                    let id = l.id?;
                    let f = l.circuit.hop_figures(l.last_hop)?;
                    Some((
                        id,
                        LegCc::from_figures(&f, l.circuit.can_send_data(l.last_hop)),
                    ))
                })
                .collect();
            let any_can_send = cc.iter().any(|(_, c)| c.can_send);
            let next = match self.held.take() {
                Some(m) => Some(m),
                None => self.side.poll_transmit(any_can_send),
            };
            let Some((stream, msg)) = next else {
                return Ok(());
            };
            // What waits behind this message (for ECF); unknown while an
            // application writes faster than we send.
            let backlog = self.side.send_backlog().map(|b| b + 1);
            self.chooser.set_backlog(backlog);
            match self
                .set
                .send(&mut self.chooser, &cc, Some(stream), msg, now)
                .map_err(|e| e.to_string())?
            {
                SendOutcome::Sent(out) => {
                    if self.sent_log.len() < SENT_LOG {
                        self.sent_log.push_back((now, self.set.last_seq_sent()));
                    }
                    let Some(leg) = self.legs.iter_mut().find(|l| l.id == Some(out.leg)) else {
                        return Err(format!("the set chose unknown {}", out.leg));
                    };
                    let hop = leg.last_hop;
                    for (s, m) in out.msgs {
                        leg.circuit
                            .send_relay(hop, s, m, now)
                            .map_err(|e| e.to_string())?;
                    }
                }
                SendOutcome::Blocked { stream, msg } => {
                    if let Some(stream) = stream {
                        self.held = Some((stream, msg));
                    }
                    return Ok(());
                }
            }
        }
    }

    /// The set's figures, every leg launched so far included.
    fn report(&self) -> TunnelReport {
        let limit = self.set.reorder_limit();
        TunnelReport {
            id: self.id,
            conflux: true,
            legs: self
                .legs
                .iter()
                .map(|l| LegReport {
                    path: l.path.clone(),
                    open: !l.closed,
                    figures: l.circuit.hop_figures(l.last_hop),
                    stats: l.id.and_then(|id| self.set.leg_stats(id)),
                    replacement: l.replacement,
                    link_rtt: l.id.and_then(|id| self.set.leg_rtt(id)),
                })
                .collect(),
            reorder: Some(ReorderReport {
                bytes: self.set.reorder_bytes(),
                peak_bytes: self.set.reorder_peak_bytes(),
                limit_bytes: limit.max_bytes,
                waiting: self.set.reorder_waiting(),
            }),
            streams: self.side.count(),
        }
    }

    fn command(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Begin { target, reply } => self.side.begin(&target, reply, now),
            Cmd::Resolve { host, reply } => self.side.resolve(&host, reply, now),
            Cmd::Report { reply } => {
                let _ = reply.send(self.report());
            }
            Cmd::Close => {
                for leg in &mut self.legs {
                    leg.circuit.close();
                }
            }
        }
    }
}
