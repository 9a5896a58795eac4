//! The channel reactor: one task per channel that owns the connection.
//!
//! It reads bytes, frames cells with braid-core's [`CellCodec`] and hands
//! each circuit's cells to that circuit through a bounded queue; it takes
//! cells from circuits (round robin, one cell per circuit per round, up to
//! a batch), encodes them and writes them, flushing once per batch. Every
//! protocol decision (circuit ids, which circuit a cell is for, what a
//! circuit may send, the round-robin order, DESTROYs and the DESTROY probe)
//! is braid-core's [`ChannelMux`]; the reactor moves bytes, owns the
//! circuits' queues and publishes the counters.
//!
//! Memory is bounded everywhere (the seed's KIST plan, item 3): the reactor
//! never waits for a circuit. When a circuit's inbound queue is full, the
//! mux closes the circuit (DESTROY with [`ChannelConfig::overflow_reason`])
//! and its queue is dropped, with a log line saying so. Reading from the
//! relay goes on whatever the write side does; taking cells from circuits
//! stops while the encoded output exceeds
//! [`ChannelConfig::write_buffer_limit`], so their senders wait.
//!
//! Connection padding and the idle close follow braid-core's
//! [`ChannelTimers`] (padding-spec §2): the reactor tells it of every cell
//! encoded and of the circuit count, sleeps until its timeout, and sends
//! the CELL_PADDING or closes the channel it asks for.
//!
//! The reactor is one hand-written poll function rather than a `select!`,
//! so that reading and writing share the stream without splitting it and no
//! future is ever cancelled half-way.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use braid_core::channel::padding::{ChannelTimers, TimerAction};
use braid_core::channel::{
    CellCodec, ChannelError, ChannelMux, IgnoreReason, Inbound, MuxConfig, MuxStats, Undelivered,
};
use braid_core::ids::CircId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tor_cell::chancell::msg::{AnyChanMsg, Padding};
use tor_cell::chancell::{AnyChanCell, ChanMsg};

use super::config::ChannelConfig;
use super::error::{ChannelDriverError, CloseReason};
use super::handle::{ChannelHandle, ChannelInfo, Ctrl, ReactorLink};

/// Bytes read from the connection at a time: one full TLS record.
const READ_CHUNK: usize = 16 * 1024;

/// Rounds of the poll loop before the reactor yields to other tasks even
/// though it could go on.
const MAX_ROUNDS_PER_POLL: usize = 32;

/// Counters of one channel (see [`ChannelHandle::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Cells read.
    pub cells_in: u64,
    /// Cells encoded for writing (not counting the handshake's).
    pub cells_out: u64,
    /// PADDING and VPADDING cells read (and ignored).
    pub padding_in: u64,
    /// CELL_PADDING cells sent on an idle channel (padding-spec §2.2).
    pub padding_out: u64,
    /// Other cells dropped: for unknown circuits, unknown commands, late
    /// VERSIONS, CREATE* from the relay.
    pub cells_dropped: u64,
    /// Circuits closed because their inbound queue was full.
    pub overflow_closes: u64,
    /// One-hop probes sent to make the relay flush held DESTROYs
    /// ([`ChannelConfig::destroy_probe`]).
    pub destroy_probes: u64,
}

/// The reactor's counters, readable from handles.
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    /// See [`ChannelStats::cells_in`].
    cells_in: AtomicU64,
    /// See [`ChannelStats::cells_out`].
    cells_out: AtomicU64,
    /// See [`ChannelStats::padding_in`].
    padding_in: AtomicU64,
    /// See [`ChannelStats::padding_out`].
    padding_out: AtomicU64,
    /// See [`ChannelStats::cells_dropped`].
    cells_dropped: AtomicU64,
    /// See [`ChannelStats::overflow_closes`].
    overflow_closes: AtomicU64,
    /// See [`ChannelStats::destroy_probes`].
    destroy_probes: AtomicU64,
}

impl SharedStats {
    /// The counters now.
    pub(crate) fn snapshot(&self) -> ChannelStats {
        ChannelStats {
            cells_in: self.cells_in.load(Ordering::Relaxed),
            cells_out: self.cells_out.load(Ordering::Relaxed),
            padding_in: self.padding_in.load(Ordering::Relaxed),
            padding_out: self.padding_out.load(Ordering::Relaxed),
            cells_dropped: self.cells_dropped.load(Ordering::Relaxed),
            overflow_closes: self.overflow_closes.load(Ordering::Relaxed),
            destroy_probes: self.destroy_probes.load(Ordering::Relaxed),
        }
    }

    /// Publish the mux's counters.
    fn publish(&self, mux: MuxStats) {
        self.padding_in.store(mux.padding_in, Ordering::Relaxed);
        self.cells_dropped
            .store(mux.cells_dropped, Ordering::Relaxed);
        self.overflow_closes
            .store(mux.overflow_closes, Ordering::Relaxed);
        self.destroy_probes
            .store(mux.destroy_probes, Ordering::Relaxed);
    }
}

/// Add one to a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One registered circuit's ends of its queues: what the reactor attaches
/// to a circuit in the mux.
#[derive(Debug)]
struct CircEntry {
    /// Toward the circuit.
    inbound: mpsc::Sender<AnyChanMsg>,
    /// From the circuit.
    outbound: mpsc::Receiver<AnyChanMsg>,
}

/// The state of one channel's reactor task.
#[derive(Debug)]
struct Reactor<S> {
    /// The TLS stream (anything bidirectional in tests).
    stream: S,
    /// For log lines.
    peer: SocketAddr,
    /// Framing; holds undecoded input (less than one cell between polls).
    codec: CellCodec,
    /// Where reads land.
    read_buf: Box<[u8]>,
    /// Encoded cells not yet written; `write_buf[write_pos..]` remains.
    write_buf: Vec<u8>,
    /// How much of `write_buf` is written.
    write_pos: usize,
    /// Bytes were written since the last flush.
    need_flush: bool,
    /// Requests from handles.
    control: mpsc::Receiver<Ctrl>,
    /// False once every handle is gone.
    control_open: bool,
    /// A shutdown was requested.
    shutdown: bool,
    /// The circuits and every protocol decision about them.
    mux: ChannelMux<CircEntry>,
    /// Cells taken from circuits in one round (kept for its allocation).
    taken: Vec<(CircId, AnyChanMsg)>,
    /// Circuits whose owner dropped its sender, in one round.
    gone: Vec<CircId>,
    /// Limits.
    config: ChannelConfig,
    /// Counters.
    stats: Arc<SharedStats>,
    /// The mux's counters as last published.
    published: MuxStats,
    /// Padding and idle close (padding-spec §2).
    timers: ChannelTimers,
    /// Sleeps until `timers`' next timeout...
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// ...which is this one.
    sleep_until: Option<std::time::Instant>,
    /// Cells were encoded since the timers last heard of it.
    sent: bool,
}

/// Now, on tokio's clock (paused in tests).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Start the reactor task for a channel whose link handshake is done:
/// `codec` is set to the link version and holds whatever followed the
/// relay's NETINFO; `unsent` is output the handshake had not written.
pub(crate) fn spawn<S>(
    stream: S,
    codec: CellCodec,
    unsent: Vec<u8>,
    info: ChannelInfo,
    config: ChannelConfig,
) -> (ChannelHandle, JoinHandle<CloseReason>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (link, task) = spawn_link(stream, info.addr, codec, unsent, config);
    (ChannelHandle::new(link, info), task)
}

/// [`spawn`] without the handshake's results: what tests of the reactor
/// alone can build.
pub(crate) fn spawn_link<S>(
    stream: S,
    peer: SocketAddr,
    codec: CellCodec,
    unsent: Vec<u8>,
    config: ChannelConfig,
) -> (ReactorLink, JoinHandle<CloseReason>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = config.sanitized();
    let link = codec.link_version().unwrap_or(0);
    let timers = ChannelTimers::new(config.padding, link, now(), &mut rand::rng());
    let (control_tx, control_rx) = mpsc::channel(config.control_queue);
    let (closed_tx, closed_rx) = watch::channel(None);
    let stats = Arc::new(SharedStats::default());
    let link = ReactorLink::new(
        control_tx,
        closed_rx,
        stats.clone(),
        config.circuit_inbound_queue,
        config.circuit_outbound_queue,
    );
    let reactor = Reactor {
        stream,
        peer,
        codec,
        read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
        need_flush: false,
        write_buf: unsent,
        write_pos: 0,
        control: control_rx,
        control_open: true,
        shutdown: false,
        mux: ChannelMux::new(MuxConfig {
            destroy_probe: config.destroy_probe,
            overflow_reason: config.overflow_reason,
            ..MuxConfig::client()
        }),
        taken: Vec::new(),
        gone: Vec::new(),
        config,
        stats: stats.clone(),
        published: MuxStats::default(),
        timers,
        sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
        sleep_until: None,
        sent: false,
    };
    let task = tokio::spawn(reactor.run(closed_tx));
    (link, task)
}

impl<S> Reactor<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Run until the channel ends; publish why before the circuits' queues
    /// are dropped, so a circuit that sees its receiver end can ask.
    async fn run(mut self, closed: watch::Sender<Option<CloseReason>>) -> CloseReason {
        tracing::debug!(peer = %self.peer, "channel reactor started");
        let reason = poll_fn(|cx| self.poll_run(cx)).await;
        if matches!(reason, CloseReason::Local) {
            // Flush what is left and say goodbye (TLS close_notify), within
            // a time limit: the relay may not be reading.
            let timeout = self.config.shutdown_timeout;
            let pending = self.write_buf.get(self.write_pos..).unwrap_or_default();
            let goodbye = async {
                self.stream.write_all(pending).await?;
                self.stream.shutdown().await
            };
            match tokio::time::timeout(timeout, goodbye).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(peer = %self.peer, "closing the channel: {e}"),
                Err(_) => tracing::debug!(peer = %self.peer, "closing the channel timed out"),
            }
        }
        if reason.is_peer_fault() {
            tracing::warn!(peer = %self.peer, "channel closed: {reason}");
        } else {
            tracing::debug!(peer = %self.peer, "channel closed: {reason}");
        }
        tracing::debug!(peer = %self.peer, stats = ?self.stats.snapshot(), "channel statistics");
        closed.send_replace(Some(reason.clone()));
        // Every circuit's receiver ends here.
        self.mux.clear();
        // Requests still queued get no answer: their senders see the
        // channel closed.
        self.control.close();
        reason
    }

    /// One wake-up: handle requests, read, take cells from circuits, write,
    /// until nothing more can be done (or the round budget is spent).
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        for _ in 0..MAX_ROUNDS_PER_POLL {
            let mut progress = self.poll_control(cx);
            if self.shutdown || (!self.control_open && self.mux.is_empty()) {
                return Poll::Ready(CloseReason::Local);
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(reason)) => return Poll::Ready(reason),
                Poll::Pending => {}
            }
            if self.pending_write() < self.config.write_buffer_limit {
                progress |= self.poll_outbound(cx);
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(reason)) => return Poll::Ready(reason),
                Poll::Pending => {}
            }
            match self.poll_timers(cx) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(reason)) => return Poll::Ready(reason),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Run the padding and idle timers: `Ready(Ok)` when one fired (a
    /// padding cell may be encoded), `Ready(Err)` when the channel has been
    /// without circuits for its idle timeout.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CloseReason>> {
        let round = now();
        // Cells encoded in this round restart the padding timer once, from
        // the round's time (padding-spec §2.2 allows the time a cell is
        // queued as the time it is sent), not one clock read and draw per
        // cell.
        if std::mem::take(&mut self.sent) {
            self.timers.note_sent(round, &mut rand::rng());
        }
        self.timers.note_circuits(self.mux.len(), round);
        let Some(at) = self.timers.poll_timeout() else {
            self.sleep_until = None;
            return Poll::Pending;
        };
        if self.sleep_until != Some(at) {
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(at));
            self.sleep_until = Some(at);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep_until = None;
        match self.timers.handle_timeout(now(), &mut rand::rng()) {
            TimerAction::None => {}
            TimerAction::SendPadding => {
                if let Err(e) = self.encode(AnyChanCell::new(None, Padding::new().into())) {
                    return Poll::Ready(Err(CloseReason::Internal(format!(
                        "cannot encode a PADDING cell: {e}"
                    ))));
                }
                bump(&self.stats.padding_out);
                // handle_timeout restarted the timer for this cell.
                self.sent = false;
            }
            TimerAction::CloseIdle => {
                tracing::debug!(
                    peer = %self.peer,
                    "channel without circuits for {:?}: closing it",
                    self.timers.idle_timeout()
                );
                return Poll::Ready(Err(CloseReason::Local));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Bytes encoded but not written.
    fn pending_write(&self) -> usize {
        self.write_buf.len().saturating_sub(self.write_pos)
    }

    /// Handle every queued request. True if there was one.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while self.control_open && !self.shutdown {
            match self.control.poll_recv(cx) {
                Poll::Ready(Some(ctrl)) => {
                    progress = true;
                    self.on_control(ctrl);
                }
                Poll::Ready(None) => {
                    self.control_open = false;
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    /// Handle one request.
    fn on_control(&mut self, ctrl: Ctrl) {
        match ctrl {
            Ctrl::Open {
                inbound,
                outbound,
                reply,
            } => {
                let entry = CircEntry { inbound, outbound };
                // Running out of ids is the only error open_circuit has.
                let result = self
                    .mux
                    .open_circuit(&mut rand::rng(), entry)
                    .map_err(|_| ChannelDriverError::CircIdsExhausted);
                if let Ok(id) = result {
                    tracing::trace!(peer = %self.peer, "{id} registered");
                }
                // A requester that went away gets no circuit.
                if let Err(Ok(id)) = reply.send(result) {
                    self.mux.cancel_circuit(id);
                }
            }
            Ctrl::Close { id, reason, reply } => {
                let was_open = self.mux.close_circuit(id, reason);
                if was_open {
                    tracing::debug!(peer = %self.peer, "{id} closed locally ({reason})");
                }
                let _ = reply.send(was_open);
            }
            Ctrl::Shutdown => self.shutdown = true,
        }
        self.flush_mux();
    }

    /// Read once and dispatch every whole cell. `Ready(Ok)` if bytes came.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CloseReason>> {
        let mut buf = ReadBuf::new(&mut self.read_buf[..]);
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            // tokio-rustls reports a TCP close without TLS close_notify so;
            // C-tor closes channels that way.
            Poll::Ready(Err(e))
                if e.kind() == io::ErrorKind::UnexpectedEof && self.codec.buffered_len() == 0 =>
            {
                Poll::Ready(Err(CloseReason::Eof))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Poll::Ready(Err(if self.codec.buffered_len() == 0 {
                    CloseReason::Eof
                } else {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed in the middle of a cell ({} bytes)",
                            self.codec.buffered_len()
                        ),
                    )
                    .into()
                }))
            }
            Poll::Ready(Ok(())) => {
                self.codec
                    .handle_bytes(buf.filled())
                    .map_err(CloseReason::Cell)?;
                while let Some(raw) = self.codec.poll_raw_cell().map_err(CloseReason::Cell)? {
                    bump(&self.stats.cells_in);
                    let cell = raw.parse().map_err(CloseReason::Cell)?;
                    self.on_cell(cell)?;
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Act on one cell from the relay, as the mux decides.
    fn on_cell(&mut self, cell: AnyChanCell) -> Result<(), CloseReason> {
        let inbound = match self.mux.handle_cell(cell, &mut rand::rng()) {
            Ok(inbound) => inbound,
            Err(ChannelError::UnexpectedCell { cmd, .. }) => {
                return Err(CloseReason::UnexpectedCell { cmd });
            }
            Err(e) => return Err(CloseReason::Cell(e)),
        };
        match inbound {
            Inbound::Ignored {
                cmd,
                id: Some(id),
                why: why @ IgnoreReason::UnknownCircuit,
            } => tracing::debug!(peer = %self.peer, "{cmd} cell for {id} dropped: {why}"),
            Inbound::Ignored { cmd, why, .. } => {
                tracing::trace!(peer = %self.peer, "{cmd} cell ignored: {why}");
            }
            Inbound::Deliver { id, entry, msg } => match entry.inbound.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::info!(
                        peer = %self.peer,
                        "{id} closed: its inbound queue of {} cells is full (DESTROY {})",
                        self.config.circuit_inbound_queue,
                        self.config.overflow_reason
                    );
                    self.mux.deliver_failed(id, Undelivered::Full);
                }
                Err(TrySendError::Closed(_)) => {
                    tracing::debug!(peer = %self.peer, "{id} dropped by its owner");
                    self.mux.deliver_failed(id, Undelivered::Gone);
                }
            },
            Inbound::Destroyed { id, entry, msg } => {
                let reason = destroy_reason(&msg);
                match entry.inbound.try_send(msg) {
                    Ok(()) => {
                        tracing::debug!(peer = %self.peer, "{id} destroyed by the relay ({reason})")
                    }
                    Err(_) => tracing::debug!(
                        peer = %self.peer,
                        "{id} destroyed by the relay ({reason}), its queue full or dropped"
                    ),
                }
            }
            // A client's mux ignores CREATE*: not reached.
            Inbound::PeerCreate { id, msg } => {
                tracing::debug!(peer = %self.peer, "{} cell for {id} dropped", msg.cmd());
            }
        }
        self.flush_mux();
        Ok(())
    }

    /// Take cells from circuits in the mux's round-robin order (one cell
    /// per circuit per round), up to a batch, and encode them. True if
    /// anything changed.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> bool {
        let batch = self.config.write_batch_cells;
        let mut cells = 0_usize;
        let mut progress = false;
        let mut taken = std::mem::take(&mut self.taken);
        let mut gone = std::mem::take(&mut self.gone);
        loop {
            self.mux.for_each_in_turn(|id, entry| {
                if cells.saturating_add(taken.len()) >= batch {
                    return;
                }
                match entry.outbound.poll_recv(cx) {
                    Poll::Ready(Some(msg)) => taken.push((id, msg)),
                    Poll::Ready(None) => gone.push(id),
                    Poll::Pending => {}
                }
            });
            let round = taken.len();
            cells = cells.saturating_add(round);
            progress |= round > 0 || !gone.is_empty();
            // Cells first: a circuit may queue its last cells and drop its
            // sender in one go.
            for (id, msg) in taken.drain(..) {
                self.send_circuit_cell(id, msg);
            }
            for id in gone.drain(..) {
                if self.mux.owner_gone(id) {
                    tracing::debug!(peer = %self.peer, "{id} dropped by its owner");
                }
            }
            self.flush_mux();
            if round == 0 || cells >= batch {
                break;
            }
        }
        self.taken = taken;
        self.gone = gone;
        progress
    }

    /// Encode a circuit's cell if the mux lets it through (else the mux
    /// closes the circuit).
    fn send_circuit_cell(&mut self, id: CircId, msg: AnyChanMsg) {
        let cmd = msg.cmd();
        if matches!(msg, AnyChanMsg::Create2(_)) {
            // A full circuit: padding starts (padding-spec §2.6,
            // nf_pad_before_usage), unlike a one-hop CREATE_FAST one.
            self.timers.note_full_circuit(now(), &mut rand::rng());
        }
        match self.mux.check_outbound(id, msg) {
            // Closed earlier in this batch.
            Ok(None) => {}
            Ok(Some(cell)) => {
                let destroy = matches!(cell.msg(), AnyChanMsg::Destroy(_));
                match self.encode(cell) {
                    Ok(()) if destroy => {
                        tracing::debug!(peer = %self.peer, "{id} closed by its owner");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(peer = %self.peer, "{id}: cannot encode its {cmd} cell ({e}); closing it");
                        self.mux.send_failed(id);
                    }
                }
            }
            Err(e) => tracing::warn!(peer = %self.peer, "{e}"),
        }
        self.flush_mux();
    }

    /// Encode the cells the mux sends of its own accord (DESTROYs,
    /// probes), and publish its counters.
    fn flush_mux(&mut self) {
        while let Some(cell) = self.mux.poll_transmit() {
            let probe = matches!(cell.msg(), AnyChanMsg::CreateFast(_));
            let cmd = cell.msg().cmd();
            let id = tor_cell::chancell::CircId::get_or_zero(cell.circid());
            match self.encode(cell) {
                Ok(()) if probe => tracing::debug!(
                    peer = %self.peer,
                    "circ {id:#010x}: probe sent so the relay flushes held DESTROYs"
                ),
                Ok(()) => {}
                // Cannot happen: a DESTROY or CREATE_FAST on a non-zero id
                // always encodes.
                Err(e) => {
                    tracing::warn!(peer = %self.peer, "circ {id:#010x}: cannot encode {cmd}: {e}");
                }
            }
        }
        let stats = self.mux.stats();
        if stats != self.published {
            self.stats.publish(stats);
            self.published = stats;
        }
    }

    /// Append one cell to the output.
    fn encode(&mut self, cell: AnyChanCell) -> Result<(), ChannelError> {
        if self.write_pos > 0 && self.write_pos == self.write_buf.len() {
            self.write_buf.clear();
            self.write_pos = 0;
        }
        self.codec.encode_cell(cell, &mut self.write_buf)?;
        bump(&self.stats.cells_out);
        self.sent = true;
        Ok(())
    }

    /// Write what is encoded, then flush. `Ready(Ok)` if anything moved.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CloseReason>> {
        let mut progress = false;
        while let Some(rest) = self
            .write_buf
            .get(self.write_pos..)
            .filter(|rest| !rest.is_empty())
        {
            match Pin::new(&mut self.stream).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.write_pos = self.write_pos.saturating_add(n);
                    self.need_flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => break,
            }
        }
        if self.write_pos >= self.write_buf.len() {
            self.write_buf.clear();
            self.write_pos = 0;
            if self.need_flush {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.need_flush = false;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => {}
                }
            }
        }
        if progress {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// The reason of a DESTROY message, for logs.
fn destroy_reason(msg: &AnyChanMsg) -> tor_cell::chancell::msg::DestroyReason {
    match msg {
        AnyChanMsg::Destroy(d) => d.reason(),
        _ => tor_cell::chancell::msg::DestroyReason::NONE,
    }
}
