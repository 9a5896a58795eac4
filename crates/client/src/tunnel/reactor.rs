//! The task of one tunnel. It owns the sans-IO circuit and stream map, the
//! circuit's two queues to the channel reactor, and the reactor ends of its
//! streams' pipes; each turn of its loop feeds what arrived into the core
//! and carries what the core produced out. Nothing here buffers beyond the
//! core's bounds and one chunk per stream in each direction.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use braid_core::cc::{CcParams, FlowParams};
use braid_core::circuit::{CircEvent, CircParams, ClientCircuit, HopTarget};
use braid_core::ids::{HopNum, StreamId};
use braid_core::stream::{
    BeginFlags, CloseReason as StreamClose, EndReason, ResolvedAnswer, Socks5Reply, StreamError,
    StreamEvent, StreamFlowMode, StreamMap, StreamMapConfig,
};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tor_cell::chancell::msg::AnyChanMsg;

use super::handle::{BeginError, Cmd, TunnelError, TunnelHandle, TunnelInfo, TunnelStatus};
use super::stream::TorStream;
use crate::channel::{ChannelHandle, CircuitIo};

/// Bytes of one stream's pipe to the application, per direction.
pub const PIPE_BYTES: usize = 64 * 1024;
/// Largest chunk moved between a pipe and the stream map at once.
const CHUNK: usize = 16 * 1024;
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

/// Build a circuit through `hops` (the first is the relay at the other end
/// of `channel`) and start its task. Returns once the circuit is built.
pub async fn build_tunnel(
    channel: &ChannelHandle,
    hops: Vec<HopTarget>,
    info: TunnelInfo,
    params: TunnelParams,
) -> Result<TunnelHandle, TunnelError> {
    let mut hops = hops.into_iter();
    let first = hops
        .next()
        .ok_or_else(|| TunnelError::Path("a circuit needs at least one hop".into()))?;
    let (circ_id, io) = channel.open_circuit().await?;
    let now = Instant::now();
    let mut circuit = {
        let mut rng = rand::rng();
        ClientCircuit::new(circ_id, first, params.circuit.clone(), &mut rng, now).map_err(|e| {
            TunnelError::Build {
                reason: e.to_string(),
                hops_done: 0,
            }
        })?
    };
    for hop in hops {
        circuit.extend(hop, now).map_err(|e| TunnelError::Build {
            reason: e.to_string(),
            hops_done: 0,
        })?;
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(CMD_QUEUE);
    let (status_tx, status_rx) = watch::channel(TunnelStatus::Building);
    let (built_tx, built_rx) = oneshot::channel();
    let task = Task {
        circuit,
        streams: None,
        stream_cfg: params.streams.clone(),
        flow: params.flow.clone(),
        apps: HashMap::new(),
        begins: HashMap::new(),
        resolves: HashMap::new(),
        built: Some(built_tx),
        status: status_tx,
        last_hop: HopNum(0),
        handles_gone: false,
        hops_done: 0,
    };
    tokio::spawn(task.run(io, cmd_rx));
    let handle = TunnelHandle {
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

/// The application side of one stream, seen from the task.
#[derive(Debug)]
struct App {
    /// The task's end of the pipe.
    pipe: DuplexStream,
    /// Bytes from the exit not yet written into the pipe.
    out: Vec<u8>,
    /// How much of `out` was written.
    out_pos: usize,
    /// The exit's side ended and everything was delivered: the pipe was
    /// shut down for writing.
    delivered_eof: bool,
    /// The application closed its writing side.
    app_eof: bool,
    /// The stream is over (ended and flushed, or the application left).
    done: bool,
    /// Set when the stream ends abnormally; the application's reads then
    /// end in an error rather than EOF.
    failed: Arc<AtomicBool>,
}

struct Task {
    circuit: ClientCircuit,
    streams: Option<StreamMap>,
    stream_cfg: StreamMapConfig,
    flow: FlowParams,
    apps: HashMap<StreamId, App>,
    begins: HashMap<StreamId, oneshot::Sender<Result<TorStream, BeginError>>>,
    resolves: HashMap<StreamId, oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>>,
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
            // Hand cells to the channel while its queue has room.
            if pending_cell.is_none() {
                pending_cell = self.circuit.poll_transmit();
            }
            while let Some(cell) = pending_cell.take() {
                match tx.try_send(cell) {
                    Ok(()) => pending_cell = self.circuit.poll_transmit(),
                    Err(mpsc::error::TrySendError::Full(cell)) => {
                        pending_cell = Some(cell);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        pending_cell = None;
                        break;
                    }
                }
            }
            self.circuit.set_blocked_on_channel(pending_cell.is_some());
            if self.handles_gone && self.apps.is_empty() && self.begins.is_empty() {
                self.circuit.close();
                while let Some(cell) = self.circuit.poll_transmit() {
                    let _ = tx.try_send(cell);
                }
                break "no longer used".to_owned();
            }
            let timer = self.streams.as_ref().and_then(StreamMap::poll_timeout);
            let sleep = async {
                match timer {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            let streams = &mut self.streams;
            let apps = &mut self.apps;
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
                () = std::future::poll_fn(|cx| poll_apps(cx, apps, streams)) => {}
                () = sleep => {
                    if let Some(s) = self.streams.as_mut() {
                        s.handle_timeout(Instant::now());
                    }
                }
            }
        };
        self.fail_all(&reason);
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
                    let mode = if self.circuit.cc_enabled(self.last_hop) {
                        StreamFlowMode::XonXoff {
                            params: self.flow.clone(),
                            onion: false,
                        }
                    } else {
                        StreamFlowMode::Windowed
                    };
                    self.streams = Some(StreamMap::new(self.stream_cfg.clone(), mode));
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
                    let Some(streams) = self.streams.as_mut() else {
                        continue;
                    };
                    if hop != self.last_hop {
                        tracing::info!("stream message from {hop}, not the exit: dropped");
                        continue;
                    }
                    if let Err(e) = streams.handle_msg(now, stream, msg) {
                        log_stream_error(&e);
                    }
                }
                CircEvent::CircMsg { hop, msg } => {
                    tracing::debug!("ignored circuit message from {hop}: {msg:?}");
                }
            }
        }
        let Some(streams) = self.streams.as_mut() else {
            return Ok(());
        };
        while let Some(ev) = streams.poll_event() {
            match ev {
                StreamEvent::Connected { id, .. } => {
                    let Some(waiter) = self.begins.remove(&id) else {
                        continue;
                    };
                    let (app_end, task_end) = tokio::io::duplex(PIPE_BYTES);
                    let failed = Arc::new(AtomicBool::new(false));
                    if waiter
                        .send(Ok(TorStream::new(app_end, failed.clone())))
                        .is_ok()
                    {
                        self.apps.insert(
                            id,
                            App {
                                pipe: task_end,
                                out: Vec::new(),
                                out_pos: 0,
                                delivered_eof: false,
                                app_eof: false,
                                done: false,
                                failed,
                            },
                        );
                    } else {
                        let _ = streams.close(id, EndReason::MISC, now);
                    }
                }
                StreamEvent::Ended { id, reason, remote } => {
                    // An END other than DONE after CONNECTED: the data may be
                    // cut short (tor-spec §6.3).
                    if let Some(app) = self.apps.get(&id)
                        && reason != StreamClose::End(EndReason::DONE)
                    {
                        app.failed.store(true, Ordering::Release);
                    }
                    if let Some(waiter) = self.begins.remove(&id) {
                        let _ = waiter.send(Err(begin_error(reason, remote)));
                    }
                    if let Some(waiter) = self.resolves.remove(&id) {
                        let _ = waiter.send(Err(begin_error(reason, remote)));
                    }
                }
                StreamEvent::Resolved { id, answers } => {
                    if let Some(waiter) = self.resolves.remove(&id) {
                        let _ = waiter.send(Ok(answers));
                    }
                }
                StreamEvent::Readable { .. } | StreamEvent::Writable { .. } => {}
            }
        }
        // Stream messages into the circuit, while it takes them.
        while self.circuit.queue_space() > 0 {
            let can_data = self.circuit.can_send_data(self.last_hop);
            let Some((id, msg)) = streams.poll_transmit(can_data) else {
                break;
            };
            if let Err(e) = self.circuit.send_relay(self.last_hop, Some(id), msg, now) {
                tracing::info!("cannot send on the circuit: {e}");
                break;
            }
        }
        self.apps.retain(|_, app| !app.done);
        Ok(())
    }

    fn command(&mut self, cmd: Cmd, now: Instant) {
        let not_open = || BeginError {
            reply: Socks5Reply::GeneralFailure,
            reason: "the circuit is not open".into(),
            circuit_failed: true,
        };
        match cmd {
            Cmd::Begin { target, reply } => {
                let Some(streams) = self.streams.as_mut() else {
                    let _ = reply.send(Err(not_open()));
                    return;
                };
                match streams.begin(&target, BeginFlags::empty(), now) {
                    Ok(id) => {
                        self.begins.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(BeginError {
                            reply: Socks5Reply::GeneralFailure,
                            reason: e.to_string(),
                            circuit_failed: false,
                        }));
                    }
                }
            }
            Cmd::Resolve { host, reply } => {
                let Some(streams) = self.streams.as_mut() else {
                    let _ = reply.send(Err(not_open()));
                    return;
                };
                match streams.resolve(&host, now) {
                    Ok(id) => {
                        self.resolves.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(BeginError {
                            reply: Socks5Reply::GeneralFailure,
                            reason: e.to_string(),
                            circuit_failed: false,
                        }));
                    }
                }
            }
            Cmd::Figures { reply } => {
                let _ = reply.send(self.circuit.last_hop_figures());
            }
            Cmd::Close => self.circuit.close(),
        }
    }

    fn fail_all(&mut self, reason: &str) {
        if let Some(s) = self.streams.as_mut() {
            s.handle_circuit_closed();
        }
        let err = || BeginError {
            reply: Socks5Reply::GeneralFailure,
            reason: format!("the circuit closed: {reason}"),
            circuit_failed: true,
        };
        for (_, w) in self.begins.drain() {
            let _ = w.send(Err(err()));
        }
        for (_, w) in self.resolves.drain() {
            let _ = w.send(Err(err()));
        }
        if let Some(built) = self.built.take() {
            let _ = built.send(Err((reason.to_owned(), self.hops_done)));
        }
        // Dropping the pipes ends the applications' streams, as failed.
        for app in self.apps.values() {
            app.failed.store(true, Ordering::Release);
        }
        self.apps.clear();
        let _ = self.status.send(TunnelStatus::Closed(reason.to_owned()));
    }
}

fn begin_error(reason: StreamClose, remote: bool) -> BeginError {
    // C-tor's client retries a stream on another circuit for these END
    // reasons, and after a connect timeout; the others are answers about
    // the target (refused, not allowed) that another exit would repeat.
    let retriable = matches!(
        reason,
        StreamClose::End(
            EndReason::MISC
                | EndReason::RESOLVEFAILED
                | EndReason::TIMEOUT
                | EndReason::NOROUTE
                | EndReason::RESOURCELIMIT
                | EndReason::HIBERNATING
        )
    );
    BeginError {
        reply: reason.socks5_reply(),
        reason: if remote {
            format!("the exit refused: {reason}")
        } else {
            reason.to_string()
        },
        circuit_failed: retriable,
    }
}

fn log_stream_error(e: &StreamError) {
    if e.is_protocol_violation() {
        tracing::info!("stream closed for a protocol violation of the exit: {e}");
    } else {
        tracing::debug!("stream message: {e}");
    }
}

/// Move bytes between the streams' pipes and the stream map as far as both
/// allow. Ready when anything moved (the loop then feeds the core);
/// Pending, with wakers registered on every pipe that could move, when
/// nothing did.
fn poll_apps(
    cx: &mut Context<'_>,
    apps: &mut HashMap<StreamId, App>,
    streams: &mut Option<StreamMap>,
) -> Poll<()> {
    let Some(streams) = streams.as_mut() else {
        return Poll::Pending;
    };
    let now = Instant::now();
    let mut progress = false;
    let mut buf = [0u8; CHUNK];
    for (&id, app) in apps.iter_mut() {
        if app.done {
            continue;
        }
        // Exit -> application.
        loop {
            if app.out_pos < app.out.len() {
                let pending = app.out.get(app.out_pos..).unwrap_or_default();
                match Pin::new(&mut app.pipe).poll_write(cx, pending) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        app.out_pos += n;
                        progress = true;
                        continue;
                    }
                    Poll::Ready(_) => {
                        // The application is gone.
                        let _ = streams.close(id, EndReason::MISC, now);
                        app.done = true;
                        progress = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if app.delivered_eof {
                break;
            }
            match streams.read(id, &mut buf, now) {
                Ok(0) => {
                    // Everything delivered and the stream ended: EOF.
                    let _ = Pin::new(&mut app.pipe).poll_shutdown(cx);
                    app.delivered_eof = true;
                    progress = true;
                    break;
                }
                Ok(n) => {
                    app.out.clear();
                    app.out.extend_from_slice(buf.get(..n).unwrap_or_default());
                    app.out_pos = 0;
                    progress = true;
                }
                Err(_) => break,
            }
        }
        if app.done {
            continue;
        }
        // Application -> exit, as far as the stream's send buffer allows.
        while !app.app_eof {
            let space = streams
                .send_buffered(id)
                .map(|b| streams.config().send_buffer.saturating_sub(b));
            let Some(space) = space.filter(|s| *s > 0) else {
                break;
            };
            let want = space.min(CHUNK);
            let mut rb = ReadBuf::new(buf.get_mut(..want).unwrap_or_default());
            match Pin::new(&mut app.pipe).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    app.app_eof = true;
                    let _ = streams.shutdown_write(id, now);
                    progress = true;
                }
                Poll::Ready(Ok(())) => {
                    if let Err(e) = streams.write(id, rb.filled()) {
                        tracing::debug!("write to a closed stream: {e}");
                        app.app_eof = true;
                    }
                    progress = true;
                }
                Poll::Ready(Err(_)) => {
                    let _ = streams.close(id, EndReason::MISC, now);
                    app.done = true;
                    progress = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if app.delivered_eof && (app.app_eof || streams.state(id).is_none()) {
            app.done = true;
            progress = true;
        }
    }
    if progress {
        Poll::Ready(())
    } else {
        Poll::Pending
    }
}
