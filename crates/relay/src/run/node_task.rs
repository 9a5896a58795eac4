//! The node task: the one owner of braid-core's [`RelayNode`]. It takes
//! open channels and cells from the other tasks, lets the node route them,
//! pulls each channel's outgoing cells into the channel's writer queue
//! (telling the node when a channel is blocked), opens the channels the
//! node asks for, and closes channels that stayed idle.
//!
//! With KIST on (the default, see [`super::kist`]) a channel's cells are
//! pulled within the write limit its socket allows per run; with KIST off,
//! while its writer queue has room.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use braid_core::channel::ExpectedIdentity;
use braid_core::ids::ChanKey;
use braid_core::relay::kist::CELL_WIRE_BYTES;
use braid_core::relay::{NodeEvent, Peer, RelayNode};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, watch};

use super::chan_io::{ChanIo, Traffic};
use super::connect::connect;
use super::consensus::NetParams;
use super::exit::Exits;
use super::link::Link;
use super::metrics::NodeFigures;
use super::msg::{OpenedLink, ToNode};
use super::sockinfo::socket_info;
use braid_core::relay::kist_sched::{KernelError, Kist, Outlet, Sent, SocketState};

/// Messages the node task handles before it pulls cells out again.
const BATCH: usize = 64;
/// How often a blocked channel's queue is looked at again even without
/// word from its writer.
const BLOCKED_RECHECK: Duration = Duration::from_secs(1);

/// The node task's settings.
#[derive(Debug, Clone)]
pub(crate) struct NodeParams {
    /// Our addresses, for NETINFO when we open channels.
    pub(crate) my_addrs: Vec<IpAddr>,
    /// Most channels being opened at once.
    pub(crate) max_connects: usize,
    /// `[braid_relay] kist`.
    pub(crate) kist: bool,
    /// `[braid_relay] kist_interval_ms`, over the consensus'.
    pub(crate) kist_interval: Option<Duration>,
}

/// One open channel, as the node task sees it.
#[derive(Debug)]
struct Chan {
    io: ChanIo,
    /// The writer's queue was full; the node was told.
    blocked: bool,
    peer: Peer,
}

/// The node task.
#[derive(Debug)]
pub(crate) struct NodeTask {
    node: RelayNode,
    params: NodeParams,
    chans: BTreeMap<ChanKey, Chan>,
    inbox: mpsc::Receiver<ToNode>,
    to_node: mpsc::Sender<ToNode>,
    link: watch::Receiver<Arc<Link>>,
    connects: Arc<Semaphore>,
    traffic: Arc<Traffic>,
    /// Channels to pull cells from (the node's `poll_ready`, writers with
    /// room again, new channels).
    to_pull: BTreeSet<ChanKey>,
    /// Exit streams' destinations.
    exits: Exits,
    /// The KIST scheduler.
    kist: Kist,
    /// `valid-after` of the consensus whose parameters are in force.
    consensus_valid_after: Option<SystemTime>,
}

impl NodeTask {
    /// A task around `node`, reading `inbox` (whose sender is `to_node`).
    pub(crate) fn new(
        node: RelayNode,
        params: NodeParams,
        inbox: mpsc::Receiver<ToNode>,
        to_node: mpsc::Sender<ToNode>,
        link: watch::Receiver<Arc<Link>>,
        traffic: Arc<Traffic>,
        exits: Exits,
    ) -> Self {
        Self {
            kist: Kist::new(params.kist, params.kist_interval),
            consensus_valid_after: None,
            node,
            connects: Arc::new(Semaphore::new(params.max_connects)),
            params,
            chans: BTreeMap::new(),
            inbox,
            to_node,
            link,
            traffic,
            to_pull: BTreeSet::new(),
            exits,
        }
    }

    /// Run until every sender of the inbox is gone.
    pub(crate) async fn run(mut self) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                msg = self.inbox.recv() => {
                    let Some(msg) = msg else { return };
                    let now = Instant::now();
                    self.handle(msg, now);
                    for _ in 1..BATCH {
                        match self.inbox.try_recv() {
                            Ok(msg) => self.handle(msg, now),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until(wake) => {}
            }
            let now = Instant::now();
            self.on_timers(now);
            self.events(now);
            self.pull(now);
        }
    }

    fn handle(&mut self, msg: ToNode, now: Instant) {
        match msg {
            ToNode::Opened(link) => self.opened(*link, now),
            ToNode::ConnectFailed { id, why } => {
                tracing::info!("extending: cannot open a channel ({id:?}): {why}");
                self.node.connect_failed(id, now);
            }
            ToNode::Cells { chan, cells } => {
                for cell in cells {
                    if !self.chans.contains_key(&chan) {
                        return;
                    }
                    if let Err(e) = self.node.handle_cell(chan, cell, now) {
                        self.close(chan, &format!("{e}"), now);
                        return;
                    }
                }
            }
            ToNode::Closed { chan, why } => self.close(chan, &why, now),
            ToNode::Exit { edge, id, what } => {
                self.exits
                    .message(&mut self.node, edge, id, what, &self.to_node, now);
            }
            ToNode::Params(p) => self.apply(*p),
            ToNode::OnionKeys(k) => self.node.set_onion_keys(*k),
            ToNode::Figures(tx) => {
                let _ = tx.send(self.figures());
            }
            ToNode::WriterReady { chan } => {
                if let Some(c) = self.chans.get_mut(&chan)
                    && c.blocked
                {
                    c.blocked = false;
                    self.node.set_channel_blocked(chan, false);
                    self.to_pull.insert(chan);
                }
            }
        }
    }

    /// Apply a consensus' parameters: congestion control and XON/XOFF of
    /// new circuits, circuit priority's half-life, KIST's run interval.
    fn apply(&mut self, p: NetParams) {
        self.node.set_padding_params(p.padding);
        self.node.set_cc_params(p.cc.clone());
        self.node.set_flow_params(p.flow.clone());
        self.node.set_ewma_halflife(p.halflife);
        let released = self.kist.set_consensus_interval(p.kist_interval);
        self.to_pull.extend(released);
        let age = SystemTime::now()
            .duration_since(p.valid_after)
            .unwrap_or_default()
            .as_secs();
        tracing::info!(
            "consensus parameters (valid-after {age} s ago): {}; applied: cc_alg {:?}, \
             cc_sendme_inc {}, cc_cwnd_init {}, cc_xoff_exit {} B, circuit priority half-life {:?}, \
             KIST {}",
            p.summary,
            p.cc.alg,
            p.cc.sendme_inc,
            p.cc.cwnd_init,
            p.flow.xoff_exit_bytes,
            p.halflife,
            match self.kist.params() {
                Some(k) => format!("every {:?}", k.run_interval),
                None => "off".to_owned(),
            }
        );
        self.consensus_valid_after = Some(p.valid_after);
    }

    /// Figures for the metrics.
    fn figures(&self) -> NodeFigures {
        let relays = self
            .chans
            .values()
            .filter(|c| matches!(c.peer, Peer::Relay { .. }))
            .count();
        NodeFigures {
            client_channels: self.chans.len() - relays,
            relay_channels: relays,
            blocked_channels: self.chans.values().filter(|c| c.blocked).count(),
            circuits: self.node.circuit_count(),
            exit_streams: self.node.exit_stream_count(),
            queued_bytes: self.node.queued_bytes(),
            writer_cells: self
                .chans
                .values()
                .map(|c| c.io.unwritten.load(Ordering::Relaxed))
                .sum(),
            stats: self.node.stats(),
            kist_interval: self.kist.params().map(|k| k.run_interval),
            kist: self.kist.stats(),
            kist_pending: self.kist.pending_count(),
            consensus_valid_after: self.consensus_valid_after,
            sets: self
                .node
                .sets()
                .filter_map(|s| self.node.set_figures(s))
                .collect(),
        }
    }

    fn opened(&mut self, link: OpenedLink, now: Instant) {
        let (peer, connect, addr) = (link.peer, link.connect, link.addr);
        let chan = self.node.add_channel(peer, link.initiator, now);
        if let Some(v) = link.codec.link_version() {
            self.node.set_link_version(chan, v);
        }
        let io = ChanIo::spawn(chan, link, &self.to_node, &self.traffic);
        tracing::info!(
            "{chan} open with {} at {addr}{}",
            describe(&peer),
            if connect.is_some() {
                " (we extend to it)"
            } else {
                ""
            }
        );
        self.chans.insert(
            chan,
            Chan {
                io,
                blocked: false,
                peer,
            },
        );
        self.to_pull.insert(chan);
        if let Some(id) = connect {
            self.node.connect_done(id, chan, now);
        }
    }

    /// Forget channel `chan`: its writer sends what it holds and closes
    /// the connection; the node closes its circuits.
    fn close(&mut self, chan: ChanKey, why: &str, now: Instant) {
        let Some(c) = self.chans.remove(&chan) else {
            return;
        };
        tracing::info!("{chan} with {} closed: {why}", describe(&c.peer));
        c.io.close();
        self.kist.forget(chan);
        self.node.channel_closed(chan, now);
    }

    /// The node's requests.
    fn events(&mut self, now: Instant) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                NodeEvent::Connect { id, rsa, ed, addrs } => {
                    let link = Arc::clone(&self.link.borrow());
                    let (to_node, permits) = (self.to_node.clone(), Arc::clone(&self.connects));
                    let my_addrs = self.params.my_addrs.clone();
                    tracing::debug!("extending: opening a channel to {rsa} at {addrs:?}");
                    tokio::spawn(async move {
                        let Ok(_permit) = permits.acquire_owned().await else {
                            return;
                        };
                        let expected = ExpectedIdentity { rsa, ed25519: ed };
                        let msg = match connect(&link, expected, &addrs, my_addrs).await {
                            Ok(mut opened) => {
                                opened.connect = Some(id);
                                ToNode::Opened(Box::new(opened))
                            }
                            Err(e) => ToNode::ConnectFailed {
                                id,
                                why: format!("{rsa}: {e}"),
                            },
                        };
                        let _ = to_node.send(msg).await;
                    });
                }
                NodeEvent::Exit { edge, event } => {
                    self.exits
                        .event(&mut self.node, edge, event, &self.to_node, now);
                }
                NodeEvent::CloseChannel { chan, why } => self.close(chan, &why, now),
            }
        }
    }

    /// Pull the cells of every channel that may have some into its writer
    /// queue: within its KIST limit, or while the queue has room.
    fn pull(&mut self, now: Instant) {
        while let Some(chan) = self.node.poll_ready() {
            self.to_pull.insert(chan);
        }
        let mut out = Writers {
            node: &mut self.node,
            chans: &mut self.chans,
        };
        if self.kist.params().is_some() {
            for chan in std::mem::take(&mut self.to_pull) {
                self.kist.ready(&mut out, chan, now);
            }
            self.kist.run_if_due(&mut out, now);
        } else {
            for chan in std::mem::take(&mut self.to_pull) {
                while out.send_one(chan, now) == Sent::Cell {}
            }
        }
    }

    /// When the task must wake without a message.
    fn next_wake(&self) -> Option<Instant> {
        let blocked = (self.chans.values().any(|c| c.blocked) || self.exits.any_blocked())
            .then(|| Instant::now() + BLOCKED_RECHECK);
        let kist = self.kist.next_run(Instant::now());
        [blocked, kist, self.node.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_timers(&mut self, now: Instant) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.exits.recheck(&mut self.node, now);
        for (&chan, c) in &mut self.chans {
            if c.blocked && c.io.tx.capacity() > 0 {
                c.blocked = false;
                c.io.full.store(false, Ordering::SeqCst);
                self.node.set_channel_blocked(chan, false);
                self.to_pull.insert(chan);
            }
        }
    }
}

/// The node and the channels' writers, as KIST schedules them.
struct Writers<'a> {
    node: &'a mut RelayNode,
    chans: &'a mut BTreeMap<ChanKey, Chan>,
}

impl Outlet for Writers<'_> {
    fn priority(&mut self, chan: ChanKey, now: Instant) -> Option<f64> {
        self.node.channel_priority(chan, now)
    }

    fn send_one(&mut self, chan: ChanKey, now: Instant) -> Sent {
        let Some(c) = self.chans.get_mut(&chan) else {
            return Sent::Gone;
        };
        if c.blocked {
            return Sent::Full;
        }
        let permit = loop {
            match c.io.tx.try_reserve() {
                Ok(p) => break p,
                Err(TrySendError::Full(())) => {
                    // Tell the writer first, then look again: if it took
                    // cells meanwhile, go on.
                    c.io.full.store(true, Ordering::SeqCst);
                    if c.io.tx.capacity() > 0 {
                        continue;
                    }
                    c.blocked = true;
                    self.node.set_channel_blocked(chan, true);
                    return Sent::Full;
                }
                // The writer stopped; its Closed message is on the way.
                Err(TrySendError::Closed(())) => return Sent::Gone,
            }
        };
        let Some(cell) = self.node.poll_transmit(chan, now) else {
            return Sent::Empty;
        };
        // Counted before the writer can see it (it subtracts once written).
        c.io.unwritten.fetch_add(1, Ordering::Relaxed);
        permit.send(cell);
        Sent::Cell
    }

    fn socket(&mut self, chan: ChanKey, ask_kernel: bool) -> Option<SocketState> {
        let c = self.chans.get(&chan)?;
        let info = if ask_kernel {
            c.io.sock.as_ref().map(|fd| {
                socket_info(fd.as_fd()).map_err(|e| {
                    // C-tor's `kist_no_kernel_support`: EINVAL, the kernel
                    // lacks TCP_INFO or SIOCOUTQNSD.
                    if e.raw_os_error() == Some(libc::EINVAL) {
                        KernelError::Unsupported(e.to_string())
                    } else {
                        KernelError::Failed(e.to_string())
                    }
                })
            })
        } else {
            None
        };
        Some(SocketState {
            info,
            buffered: c
                .io
                .unwritten
                .load(Ordering::Relaxed)
                .saturating_mul(CELL_WIRE_BYTES),
            room: c.io.tx.capacity(),
        })
    }
}

fn describe(peer: &Peer) -> String {
    match peer {
        Peer::Client => "a client".to_owned(),
        Peer::Relay { rsa, .. } => format!("relay {}", rsa.as_hex_upper()),
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
