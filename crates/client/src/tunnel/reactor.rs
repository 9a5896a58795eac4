//! The task of one tunnel. It owns the sans-IO circuit and stream map, the
//! circuit's two queues to the channel reactor, and the reactor ends of its
//! streams' pipes; each turn of its loop feeds what arrived into the core
//! and carries what the core produced out. Nothing here buffers beyond the
//! core's bounds and one chunk per stream in each direction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_core::cc::{CcParams, FlowParams};
use braid_core::circuit::{CircEvent, CircParams, ClientCircuit, HopTarget};
use braid_core::ids::HopNum;
use braid_core::stream::StreamMapConfig;
use tokio::sync::{mpsc, oneshot, watch};
use tor_cell::chancell::msg::AnyChanMsg;

use super::handle::{Cmd, TunnelError, TunnelHandle, TunnelInfo, TunnelStatus, next_tunnel_id};
use super::report::{LegReport, TunnelReport};
use super::streams::StreamSide;
use crate::channel::{ChannelHandle, CircuitIo};

/// Requests waiting for the task.
const CMD_QUEUE: usize = 64;
/// Most inbound cells handled in one turn of the loop before the streams
/// get their turn.
const INBOUND_BATCH: usize = 256;

/// How to build a tunnel.
#[derive(Debug, Clone)]
pub struct TunnelParams {
    /// Circuit settings (congestion control from the consensus).
    pub circuit: CircParams,
    /// Stream settings.
    pub streams: StreamMapConfig,
    /// XON/XOFF parameters from the consensus.
    pub flow: FlowParams,
    /// Give up building after this long.
    pub build_timeout: Duration,
}

impl TunnelParams {
    /// Parameters from a consensus' "params" line.
    pub fn from_consensus(params: &std::collections::BTreeMap<String, i32>) -> Self {
        let pairs: Vec<(String, i32)> = params.iter().map(|(k, v)| (k.clone(), *v)).collect();
        Self {
            circuit: CircParams {
                cc: CcParams::from_consensus(pairs.as_slice()),
                ..CircParams::default()
            },
            streams: StreamMapConfig::default(),
            flow: FlowParams::from_consensus(pairs.as_slice()),
            build_timeout: Duration::from_secs(60),
        }
    }
}

/// Open a circuit on `channel` and queue its CREATE2 and the EXTEND2s that
/// take it through `hops` (the first is the relay at the other end of
/// `channel`); the caller's task runs the build. Shared by the single and
/// the Conflux tunnels.
pub(crate) async fn open_circuit(
    channel: &ChannelHandle,
    hops: Vec<HopTarget>,
    params: &TunnelParams,
) -> Result<(ClientCircuit, CircuitIo), TunnelError> {
    let mut hops = hops.into_iter();
    let first = hops
        .next()
        .ok_or_else(|| TunnelError::Path("a circuit needs at least one hop".into()))?;
    let (circ_id, io) = channel.open_circuit().await?;
    let now = Instant::now();
    let build_error = |e: braid_core::circuit::CircError| TunnelError::Build {
        reason: e.to_string(),
        hops_done: 0,
    };
    let mut circuit = {
        let mut rng = rand::rng();
        ClientCircuit::new(circ_id, first, params.circuit.clone(), &mut rng, now)
            .map_err(build_error)?
    };
    for hop in hops {
        circuit.extend(hop, now).map_err(build_error)?;
    }
    Ok((circuit, io))
}

/// Hand `circuit`'s cells to its channel queue while it has room; a cell
/// that did not fit stays in `pending`. Tells the circuit whether its
/// channel is blocked (congestion control counts that).
pub(crate) fn flush_cells(
    circuit: &mut ClientCircuit,
    tx: &mpsc::Sender<AnyChanMsg>,
    pending: &mut Option<AnyChanMsg>,
) {
    if pending.is_none() {
        *pending = circuit.poll_transmit();
    }
    while let Some(cell) = pending.take() {
        match tx.try_send(cell) {
            Ok(()) => *pending = circuit.poll_transmit(),
            Err(mpsc::error::TrySendError::Full(cell)) => {
                *pending = Some(cell);
                break;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
    }
    circuit.set_blocked_on_channel(pending.is_some());
}

/// Build a circuit through `hops` (the first is the relay at the other end
/// of `channel`) and start its task. Returns once the circuit is built.
pub async fn build_tunnel(
    channel: &ChannelHandle,
    hops: Vec<HopTarget>,
    info: TunnelInfo,
    params: TunnelParams,
) -> Result<TunnelHandle, TunnelError> {
    let (circuit, io) = open_circuit(channel, hops, &params).await?;
    let (cmd_tx, cmd_rx) = mpsc::channel(CMD_QUEUE);
    let (status_tx, status_rx) = watch::channel(TunnelStatus::Building);
    let (built_tx, built_rx) = oneshot::channel();
    let id = next_tunnel_id();
    let task = Task {
        id,
        path: info.legs.first().cloned().unwrap_or_default(),
        circuit,
        side: StreamSide::new(params.streams.clone(), params.flow.clone()),
        built: Some(built_tx),
        status: status_tx,
        last_hop: HopNum(0),
        handles_gone: false,
        hops_done: 0,
    };
    tokio::spawn(task.run(io, cmd_rx));
    let handle = TunnelHandle {
        id,
        cmd: cmd_tx,
        status: status_rx,
        info: Arc::new(info),
    };
    match tokio::time::timeout(params.build_timeout, built_rx).await {
        Ok(Ok(Ok(()))) => Ok(handle),
        Ok(Ok(Err((reason, hops_done)))) => Err(TunnelError::Build { reason, hops_done }),
        Ok(Err(_)) => Err(TunnelError::Build {
            reason: "the circuit task ended".into(),
            hops_done: 0,
        }),
        Err(_) => {
            handle.close().await;
            Err(TunnelError::Timeout(params.build_timeout))
        }
    }
}

struct Task {
    id: u64,
    /// The relays' nicknames, for reports.
    path: Vec<String>,
    circuit: ClientCircuit,
    side: StreamSide,
    built: Option<oneshot::Sender<Result<(), (String, usize)>>>,
    hops_done: usize,
    status: watch::Sender<TunnelStatus>,
    last_hop: HopNum,
    handles_gone: bool,
}

/// Why the loop stopped.
enum Exit {
    Closed(String),
}

impl Task {
    async fn run(mut self, io: CircuitIo, mut cmd_rx: mpsc::Receiver<Cmd>) {
        let CircuitIo { tx, mut rx } = io;
        let mut pending_cell: Option<AnyChanMsg> = None;
        let reason = loop {
            let now = Instant::now();
            if let Err(Exit::Closed(reason)) = self.process(now) {
                break reason;
            }
            flush_cells(&mut self.circuit, &tx, &mut pending_cell);
            if self.handles_gone && self.side.is_idle() {
                self.circuit.close();
                while let Some(cell) = self.circuit.poll_transmit() {
                    let _ = tx.try_send(cell);
                }
                break "no longer used".to_owned();
            }
            let sleep = sleep_until(self.side.timer());
            let side = &mut self.side;
            tokio::select! {
                cell = rx.recv() => match cell {
                    Some(cell) => {
                        // Take every cell already queued, so the channel's
                        // bounded queue for this circuit drains as fast as
                        // it fills.
                        let now = Instant::now();
                        let mut next = Some(cell);
                        let mut taken = 0;
                        while let Some(cell) = next.take() {
                            if let Err(e) = self.circuit.handle_cell(now, cell) {
                                tracing::info!("circuit closed: {e}");
                                break;
                            }
                            taken += 1;
                            if taken < INBOUND_BATCH {
                                next = rx.try_recv().ok();
                            }
                        }
                    }
                    None => {
                        self.circuit.close();
                        break "the channel closed".to_owned();
                    }
                },
                permit = tx.reserve(), if pending_cell.is_some() => {
                    if let (Ok(permit), Some(cell)) = (permit, pending_cell.take()) {
                        permit.send(cell);
                    }
                }
                cmd = cmd_rx.recv(), if !self.handles_gone => match cmd {
                    Some(cmd) => self.command(cmd, Instant::now()),
                    None => self.handles_gone = true,
                },
                () = std::future::poll_fn(|cx| side.poll_apps(cx)) => {}
                () = sleep => self.side.handle_timeout(Instant::now()),
            }
        };
        self.side.fail_all(&reason);
        if let Some(built) = self.built.take() {
            let _ = built.send(Err((reason.clone(), self.hops_done)));
        }
        let _ = self.status.send(TunnelStatus::Closed(reason.clone()));
        tracing::debug!("tunnel task ends: {reason}");
    }

    /// Feed events through the core: circuit events into the stream map,
    /// stream events to their waiters, stream messages into the circuit.
    fn process(&mut self, now: Instant) -> Result<(), Exit> {
        while let Some(ev) = self.circuit.poll_event() {
            match ev {
                CircEvent::HopAdded { .. } => self.hops_done += 1,
                CircEvent::Built { n_hops } => {
                    self.last_hop = HopNum(u8::try_from(n_hops.saturating_sub(1)).unwrap_or(0));
                    self.side.open(self.circuit.cc_enabled(self.last_hop));
                    let _ = self.status.send(TunnelStatus::Open);
                    if let Some(built) = self.built.take() {
                        let _ = built.send(Ok(()));
                    }
                }
                CircEvent::BuildFailed { reason } => {
                    let reason = format!("{reason:?}");
                    if let Some(built) = self.built.take() {
                        let _ = built.send(Err((reason.clone(), self.hops_done)));
                    }
                    return Err(Exit::Closed(reason));
                }
                CircEvent::Closed { reason } => return Err(Exit::Closed(format!("{reason:?}"))),
                CircEvent::StreamMsg { hop, stream, msg } => {
                    if hop != self.last_hop {
                        tracing::info!("stream message from {hop}, not the exit: dropped");
                        continue;
                    }
                    self.side.handle_msg(now, stream, msg);
                }
                CircEvent::CircMsg { hop, msg } => {
                    tracing::debug!("ignored circuit message from {hop}: {msg:?}");
                }
            }
        }
        self.side.process_events(now);
        // Stream messages into the circuit, while it takes them.
        while self.circuit.queue_space() > 0 {
            let can_data = self.circuit.can_send_data(self.last_hop);
            let Some((id, msg)) = self.side.poll_transmit(can_data) else {
                break;
            };
            if let Err(e) = self.circuit.send_relay(self.last_hop, Some(id), msg, now) {
                tracing::info!("cannot send on the circuit: {e}");
                break;
            }
        }
        Ok(())
    }

    fn command(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Begin { target, reply } => self.side.begin(&target, reply, now),
            Cmd::Resolve { host, reply } => self.side.resolve(&host, reply, now),
            Cmd::Report { reply } => {
                let _ = reply.send(TunnelReport {
                    id: self.id,
                    conflux: false,
                    legs: vec![LegReport {
                        path: self.path.clone(),
                        open: !self.circuit.is_closed(),
                        figures: self.circuit.last_hop_figures(),
                        stats: None,
                        replacement: false,
                        link_rtt: None,
                    }],
                    reorder: None,
                    streams: self.side.count(),
                });
            }
            Cmd::Close => self.circuit.close(),
        }
    }
}

/// Sleep until `t`, or forever.
pub(crate) async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
