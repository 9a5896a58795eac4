//! The channel reactor: one task per channel that owns the connection.
//!
//! It reads bytes, frames cells with braid-core's [`CellCodec`] and hands
//! each circuit's cells to that circuit through a bounded queue; it takes
//! cells from circuits (round robin, one cell per circuit per round, up to
//! a batch), encodes them and writes them, flushing once per batch. Which
//! cell goes where is decided by [`dispatch`](super::dispatch).
//!
//! Memory is bounded everywhere (the seed's KIST plan, item 3): the reactor
//! never waits for a circuit. When a circuit's inbound queue is full, the
//! circuit is closed (DESTROY with
//! [`ChannelConfig::overflow_reason`]) and its queue dropped, with a log
//! line saying so. Reading from the relay goes on whatever the write side
//! does; taking cells from circuits stops while the encoded output exceeds
//! [`ChannelConfig::write_buffer_limit`], so their senders wait.
//!
//! The reactor is one hand-written poll function rather than a `select!`,
//! so that reading and writing share the stream without splitting it and no
//! future is ever cancelled half-way.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use braid_core::channel::CellCodec;
use braid_core::ids::CircId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tor_cell::chancell::msg::{AnyChanMsg, CreateFast, Destroy, DestroyReason};
use tor_cell::chancell::{ChanCell, ChanCmd, ChanMsg};

use super::config::ChannelConfig;
use super::dispatch::{Inbound, allocate_circ_id, classify_inbound, outbound_allowed};
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
            cells_dropped: self.cells_dropped.load(Ordering::Relaxed),
            overflow_closes: self.overflow_closes.load(Ordering::Relaxed),
            destroy_probes: self.destroy_probes.load(Ordering::Relaxed),
        }
    }
}

/// Add one to a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One registered circuit's ends of its queues.
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
    /// The circuits, by id.
    circuits: BTreeMap<CircId, CircEntry>,
    /// The last circuit whose cell was taken: the next round starts after
    /// it.
    cursor: Option<CircId>,
    /// The one-hop probe circuit in flight, if any
    /// ([`ChannelConfig::destroy_probe`]).
    probe: Option<CircId>,
    /// A DESTROY came while a probe was in flight: probe again after it.
    probe_again: bool,
    /// Limits.
    config: ChannelConfig,
    /// Counters.
    stats: Arc<SharedStats>,
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
        circuits: BTreeMap::new(),
        cursor: None,
        probe: None,
        probe_again: false,
        config,
        stats: stats.clone(),
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
        self.circuits.clear();
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
            if self.shutdown || (!self.control_open && self.circuits.is_empty()) {
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
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
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
                let circuits = &self.circuits;
                let probe = self.probe;
                let result = allocate_circ_id(rand::random, |id| {
                    circuits.contains_key(&id) || probe == Some(id)
                })
                .ok_or(ChannelDriverError::CircIdsExhausted);
                if let Ok(id) = result {
                    self.circuits.insert(id, CircEntry { inbound, outbound });
                    tracing::trace!(peer = %self.peer, "{id} registered");
                }
                // A requester that went away gets no circuit (and the relay
                // never heard of it: no DESTROY).
                if let Err(Ok(id)) = reply.send(result) {
                    self.circuits.remove(&id);
                }
            }
            Ctrl::Close { id, reason, reply } => {
                let was_open = self.circuits.remove(&id).is_some();
                if was_open {
                    tracing::debug!(peer = %self.peer, "{id} closed locally ({reason})");
                    self.queue_destroy(id, reason);
                }
                let _ = reply.send(was_open);
            }
            Ctrl::Shutdown => self.shutdown = true,
        }
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
                    self.on_cell(classify_inbound(cell))?;
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Act on one cell from the relay.
    fn on_cell(&mut self, inbound: Inbound) -> Result<(), CloseReason> {
        match inbound {
            Inbound::Ignore { why, cmd } => {
                if matches!(cmd, ChanCmd::PADDING | ChanCmd::VPADDING) {
                    bump(&self.stats.padding_in);
                } else {
                    bump(&self.stats.cells_dropped);
                }
                tracing::trace!(peer = %self.peer, "{cmd} cell ignored: {why}");
                Ok(())
            }
            Inbound::Violation { cmd } => Err(CloseReason::UnexpectedCell { cmd }),
            Inbound::Circuit { id, msg, destroy } if Some(id) == self.probe => {
                // The probe did its work by being answered.
                self.probe = None;
                if matches!(msg, AnyChanMsg::CreatedFast(_)) {
                    self.queue_destroy(id, DestroyReason::NONE);
                }
                if self.probe_again && !destroy {
                    self.probe_again = false;
                    self.send_probe();
                }
                Ok(())
            }
            Inbound::Circuit { id, msg, destroy } => {
                let Some(entry) = self.circuits.get(&id) else {
                    bump(&self.stats.cells_dropped);
                    tracing::debug!(
                        peer = %self.peer,
                        "{} cell for unknown {id} dropped",
                        msg.cmd()
                    );
                    return Ok(());
                };
                match entry.inbound.try_send(msg) {
                    Ok(()) if destroy => {
                        tracing::debug!(peer = %self.peer, "{id} destroyed by the relay");
                        self.circuits.remove(&id);
                        self.after_relay_destroy();
                    }
                    Ok(()) => {}
                    Err(TrySendError::Full(msg)) => {
                        self.circuits.remove(&id);
                        if destroy {
                            tracing::debug!(peer = %self.peer, "{id} destroyed by the relay ({}), its queue full", destroy_reason(&msg));
                        } else {
                            bump(&self.stats.overflow_closes);
                            let reason = self.config.overflow_reason;
                            tracing::info!(
                                peer = %self.peer,
                                "{id} closed: its inbound queue of {} cells is full (DESTROY {reason})",
                                self.config.circuit_inbound_queue
                            );
                            self.queue_destroy(id, reason);
                        }
                    }
                    Err(TrySendError::Closed(_)) => {
                        self.circuits.remove(&id);
                        if !destroy {
                            tracing::debug!(peer = %self.peer, "{id} dropped by its owner");
                            self.queue_destroy(id, DestroyReason::NONE);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The relay destroyed one of our circuits: if others remain, make it
    /// flush any DESTROY it holds for them ([`ChannelConfig::destroy_probe`]).
    fn after_relay_destroy(&mut self) {
        if !self.config.destroy_probe || self.circuits.is_empty() {
            return;
        }
        if self.probe.is_some() {
            self.probe_again = true;
        } else {
            self.send_probe();
        }
    }

    /// Send a CREATE_FAST (tor-spec §5.1.1) on a fresh circuit id; its
    /// answer is destroyed unread.
    fn send_probe(&mut self) {
        let circuits = &self.circuits;
        let Some(id) = allocate_circ_id(rand::random, |id| circuits.contains_key(&id)) else {
            return;
        };
        let key: [u8; 20] = rand::random();
        match self.encode(id, CreateFast::new(key.to_vec()).into()) {
            Ok(()) => {
                tracing::debug!(peer = %self.peer, "{id}: probe sent so the relay flushes held DESTROYs");
                bump(&self.stats.destroy_probes);
                self.probe = Some(id);
            }
            Err(e) => tracing::warn!(peer = %self.peer, "cannot encode a probe: {e}"),
        }
    }

    /// Take cells from circuits, round robin (one cell per circuit per
    /// round, starting after the last circuit served), up to a batch, and
    /// encode them. True if anything changed.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> bool {
        let batch = self.config.write_batch_cells;
        let mut found = Vec::new();
        let mut gone = Vec::new();
        let mut cells = 0_usize;
        loop {
            let before = cells;
            let mut poll = |id: CircId, entry: &mut CircEntry| {
                if cells >= batch || gone.contains(&id) {
                    return;
                }
                match entry.outbound.poll_recv(cx) {
                    Poll::Ready(Some(msg)) => {
                        cells += 1;
                        found.push((id, msg));
                    }
                    Poll::Ready(None) => gone.push(id),
                    Poll::Pending => {}
                }
            };
            match self.cursor {
                None => self.circuits.iter_mut().for_each(|(&id, e)| poll(id, e)),
                Some(cursor) => {
                    self.circuits
                        .range_mut((Bound::Excluded(cursor), Bound::Unbounded))
                        .for_each(|(&id, e)| poll(id, e));
                    self.circuits
                        .range_mut(..=cursor)
                        .for_each(|(&id, e)| poll(id, e));
                }
            }
            if let Some((id, _)) = found.last() {
                self.cursor = Some(*id);
            }
            if cells == before || cells >= batch {
                break;
            }
        }
        let progress = !found.is_empty() || !gone.is_empty();
        // Cells first: a circuit may queue its last cells and drop its
        // sender in one go.
        for (id, msg) in found {
            self.queue_outbound(id, msg);
        }
        for id in gone {
            if self.circuits.remove(&id).is_some() {
                tracing::debug!(peer = %self.peer, "{id} dropped by its owner");
                self.queue_destroy(id, DestroyReason::NONE);
            }
        }
        progress
    }

    /// Encode a circuit's cell, or close the circuit if it may not send it.
    fn queue_outbound(&mut self, id: CircId, msg: AnyChanMsg) {
        if !self.circuits.contains_key(&id) {
            // Closed earlier in this batch.
            return;
        }
        let cmd = msg.cmd();
        let destroy = matches!(msg, AnyChanMsg::Destroy(_));
        if !outbound_allowed(&msg) {
            tracing::warn!(peer = %self.peer, "{id} tried to send a {cmd} cell; closing it");
            self.circuits.remove(&id);
            self.queue_destroy(id, DestroyReason::NONE);
            return;
        }
        if let Err(e) = self.encode(id, msg) {
            tracing::warn!(peer = %self.peer, "{id}: cannot encode its {cmd} cell ({e}); closing it");
            self.circuits.remove(&id);
            self.queue_destroy(id, DestroyReason::NONE);
            return;
        }
        if destroy {
            tracing::debug!(peer = %self.peer, "{id} closed by its owner");
            self.circuits.remove(&id);
        }
    }

    /// Encode a DESTROY for `id`.
    fn queue_destroy(&mut self, id: CircId, reason: DestroyReason) {
        if let Err(e) = self.encode(id, Destroy::new(reason).into()) {
            // Cannot happen: a DESTROY on a non-zero id always encodes.
            tracing::warn!(peer = %self.peer, "{id}: cannot encode DESTROY: {e}");
        }
    }

    /// Append one cell to the output.
    fn encode(
        &mut self,
        id: CircId,
        msg: AnyChanMsg,
    ) -> Result<(), braid_core::channel::ChannelError> {
        if self.write_pos > 0 && self.write_pos == self.write_buf.len() {
            self.write_buf.clear();
            self.write_pos = 0;
        }
        let cell = ChanCell::new(tor_cell::chancell::CircId::new(id.get()), msg);
        self.codec.encode_cell(cell, &mut self.write_buf)?;
        bump(&self.stats.cells_out);
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
fn destroy_reason(msg: &AnyChanMsg) -> DestroyReason {
    match msg {
        AnyChanMsg::Destroy(d) => d.reason(),
        _ => DestroyReason::NONE,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;
    use crate::channel::handle::CircuitIo;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tor_cell::chancell::msg::{CreateFast, CreatedFast, Netinfo, Padding, Relay, Vpadding};
    use tor_cell::chancell::{AnyChanCell, ChanCmd, CircId as WireCircId};

    const WAIT: Duration = Duration::from_secs(5);

    /// The relay's end of the connection.
    struct Peer {
        io: DuplexStream,
        codec: CellCodec,
    }

    impl Peer {
        async fn send(&mut self, id: u32, msg: AnyChanMsg) {
            let mut out = Vec::new();
            self.codec
                .encode_cell(ChanCell::new(WireCircId::new(id), msg), &mut out)
                .unwrap();
            self.io.write_all(&out).await.unwrap();
        }

        async fn recv(&mut self) -> AnyChanCell {
            tokio::time::timeout(WAIT, async {
                loop {
                    if let Some(c) = self.codec.poll_cell().unwrap() {
                        return c;
                    }
                    let mut buf = [0_u8; 4096];
                    let n = self.io.read(&mut buf).await.unwrap();
                    assert!(n > 0, "reactor closed the connection");
                    self.codec.handle_bytes(&buf[..n]).unwrap();
                }
            })
            .await
            .expect("no cell from the reactor")
        }

        /// Any bytes from the reactor.
        async fn recv_raw(&mut self) -> usize {
            let mut buf = [0_u8; 4096];
            self.io.read(&mut buf).await.unwrap()
        }

        /// Expect a DESTROY for `id`; return its reason.
        async fn recv_destroy(&mut self, id: CircId) -> DestroyReason {
            let (cid, msg) = self.recv().await.into_circid_and_msg();
            assert_eq!(WireCircId::get_or_zero(cid), id.get());
            match msg {
                AnyChanMsg::Destroy(d) => d.reason(),
                m => panic!("expected DESTROY, got {}", m.cmd()),
            }
        }
    }

    fn codec() -> CellCodec {
        let mut c = CellCodec::new();
        c.set_link_version(5).unwrap();
        c
    }

    fn start(
        config: ChannelConfig,
        unsent: Vec<u8>,
    ) -> (ReactorLink, JoinHandle<CloseReason>, Peer) {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let peer: SocketAddr = ([127, 0, 0, 1], 9).into();
        let (link, task) = spawn_link(ours, peer, codec(), unsent, config);
        (
            link,
            task,
            Peer {
                io: theirs,
                codec: codec(),
            },
        )
    }

    async fn recv_msg(io: &mut CircuitIo) -> Option<AnyChanMsg> {
        tokio::time::timeout(WAIT, io.rx.recv())
            .await
            .expect("circuit waited too long")
    }

    fn relay(marker: u8) -> AnyChanMsg {
        Relay::new([marker]).into()
    }

    fn marker(msg: AnyChanMsg) -> u8 {
        match msg {
            AnyChanMsg::Relay(r) => r.into_relay_body()[0],
            m => panic!("expected RELAY, got {}", m.cmd()),
        }
    }

    #[tokio::test]
    async fn cells_flow_both_ways() {
        let mut netinfo = Vec::new();
        codec()
            .encode_cell(
                ChanCell::new(None, Netinfo::from_client(None).into()),
                &mut netinfo,
            )
            .unwrap();
        let (link, _task, mut peer) = start(ChannelConfig::default(), netinfo);
        // What the handshake left unsent goes first.
        assert_eq!(peer.recv().await.msg().cmd(), ChanCmd::NETINFO);

        let (id, mut io) = link.open_circuit().await.unwrap();
        assert!(id.high_bit(), "{id}");
        io.tx
            .send(CreateFast::new(vec![7; 20]).into())
            .await
            .unwrap();
        let (cid, msg) = peer.recv().await.into_circid_and_msg();
        assert_eq!(WireCircId::get_or_zero(cid), id.get());
        assert!(matches!(msg, AnyChanMsg::CreateFast(c) if c.handshake() == [7; 20]));

        // Padding, VPADDING and cells for unknown circuits are dropped; the
        // circuit gets only its own.
        peer.send(0, Padding::new().into()).await;
        peer.send(0, Vpadding::new(10).into()).await;
        peer.send(0x8000_0001 ^ id.get(), relay(9)).await;
        peer.send(id.get(), CreatedFast::new(vec![3; 40]).into())
            .await;
        peer.send(id.get(), relay(1)).await;
        let msg = recv_msg(&mut io).await.unwrap();
        match msg {
            AnyChanMsg::CreatedFast(c) => assert_eq!(c.into_handshake(), [3; 40]),
            m => panic!("expected CREATED_FAST, got {}", m.cmd()),
        }
        assert_eq!(marker(recv_msg(&mut io).await.unwrap()), 1);
        assert!(!link.is_closed());
        let stats = link.stats();
        assert_eq!((stats.padding_in, stats.cells_dropped), (2, 1), "{stats:?}");
        assert_eq!((stats.cells_in, stats.cells_out), (5, 1), "{stats:?}");
    }

    #[tokio::test]
    async fn full_inbound_queue_closes_only_that_circuit() {
        let config = ChannelConfig {
            circuit_inbound_queue: 2,
            ..ChannelConfig::default()
        };
        let (link, _task, mut peer) = start(config, Vec::new());
        let (slow, mut slow_io) = link.open_circuit().await.unwrap();
        let (fast, mut fast_io) = link.open_circuit().await.unwrap();
        for i in 0..3 {
            peer.send(slow.get(), relay(i)).await;
        }
        assert_eq!(peer.recv_destroy(slow).await, DestroyReason::RESOURCELIMIT);
        assert_eq!(link.stats().overflow_closes, 1);
        // The slow circuit gets what fit, then its queue ends.
        assert_eq!(marker(recv_msg(&mut slow_io).await.unwrap()), 0);
        assert_eq!(marker(recv_msg(&mut slow_io).await.unwrap()), 1);
        assert!(recv_msg(&mut slow_io).await.is_none());
        assert!(slow_io.tx.send(relay(0)).await.is_err());
        // Later cells for it are dropped; the other circuit is unharmed.
        peer.send(slow.get(), relay(5)).await;
        peer.send(fast.get(), relay(6)).await;
        assert_eq!(marker(recv_msg(&mut fast_io).await.unwrap()), 6);
        fast_io.tx.send(relay(7)).await.unwrap();
        let (cid, msg) = peer.recv().await.into_circid_and_msg();
        assert_eq!(WireCircId::get_or_zero(cid), fast.get());
        assert_eq!(marker(msg), 7);
        // Closing an already closed circuit says so.
        assert!(!link.close_circuit(slow, DestroyReason::NONE).await.unwrap());
    }

    #[tokio::test]
    async fn relay_destroys_make_the_relay_flush_held_destroys() {
        let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
        let (a, mut a_io) = link.open_circuit().await.unwrap();
        let (b, mut b_io) = link.open_circuit().await.unwrap();
        let (c, mut c_io) = link.open_circuit().await.unwrap();
        let probe_of = |cell: AnyChanCell| {
            let (cid, msg) = cell.into_circid_and_msg();
            assert!(matches!(msg, AnyChanMsg::CreateFast(_)), "{}", msg.cmd());
            let id = WireCircId::get_or_zero(cid);
            assert!(![a.get(), b.get(), c.get()].contains(&id));
            id
        };
        // a destroyed while b and c remain: a probe.
        peer.send(a.get(), Destroy::new(DestroyReason::CHANNEL_CLOSED).into())
            .await;
        assert!(matches!(
            recv_msg(&mut a_io).await,
            Some(AnyChanMsg::Destroy(_))
        ));
        let p1 = probe_of(peer.recv().await);
        // b destroyed while the probe is out: no second probe yet.
        peer.send(b.get(), Destroy::new(DestroyReason::CHANNEL_CLOSED).into())
            .await;
        assert!(matches!(
            recv_msg(&mut b_io).await,
            Some(AnyChanMsg::Destroy(_))
        ));
        // The answer is destroyed unread, then c (still here) gets another.
        peer.send(p1, CreatedFast::new(vec![7; 40]).into()).await;
        let (cid, msg) = peer.recv().await.into_circid_and_msg();
        assert_eq!(WireCircId::get_or_zero(cid), p1);
        assert!(matches!(msg, AnyChanMsg::Destroy(_)));
        let p2 = probe_of(peer.recv().await);
        assert_ne!(p1, p2);
        // A probe refused with DESTROY is simply over.
        peer.send(p2, Destroy::new(DestroyReason::RESOURCELIMIT).into())
            .await;
        // c destroyed last: nobody left, no probe; c's queue is intact.
        peer.send(c.get(), Destroy::new(DestroyReason::FINISHED).into())
            .await;
        assert!(matches!(
            recv_msg(&mut c_io).await,
            Some(AnyChanMsg::Destroy(_))
        ));
        assert!(recv_msg(&mut c_io).await.is_none());
        assert_eq!(link.stats().destroy_probes, 2);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), peer.recv_raw())
                .await
                .is_err(),
            "nothing more from the reactor"
        );
    }

    #[tokio::test]
    async fn destroys_both_ways() {
        let config = ChannelConfig {
            destroy_probe: false,
            ..ChannelConfig::default()
        };
        let (link, _task, mut peer) = start(config, Vec::new());
        let (a, mut a_io) = link.open_circuit().await.unwrap();
        let (b, mut b_io) = link.open_circuit().await.unwrap();
        let (c, c_io) = link.open_circuit().await.unwrap();
        let (d, d_io) = link.open_circuit().await.unwrap();

        // The relay destroys a: a gets the DESTROY, then its queue ends,
        // and nothing goes back.
        peer.send(a.get(), Destroy::new(DestroyReason::FINISHED).into())
            .await;
        let msg = recv_msg(&mut a_io).await.unwrap();
        assert!(matches!(msg, AnyChanMsg::Destroy(d) if d.reason() == DestroyReason::FINISHED));
        assert!(recv_msg(&mut a_io).await.is_none());

        // We close b.
        assert!(link.close_circuit(b, DestroyReason::NONE).await.unwrap());
        assert_eq!(peer.recv_destroy(b).await, DestroyReason::NONE);
        assert!(recv_msg(&mut b_io).await.is_none());

        // c's owner sends a DESTROY itself.
        c_io.tx
            .send(Destroy::new(DestroyReason::NONE).into())
            .await
            .unwrap();
        assert_eq!(peer.recv_destroy(c).await, DestroyReason::NONE);

        // d's owner drops it, after a last cell.
        d_io.tx.send(relay(4)).await.unwrap();
        drop(d_io);
        let (cid, msg) = peer.recv().await.into_circid_and_msg();
        assert_eq!(WireCircId::get_or_zero(cid), d.get());
        assert_eq!(marker(msg), 4);
        assert_eq!(peer.recv_destroy(d).await, DestroyReason::NONE);

        // A circuit may not send channel-level cells: closed.
        let (e, e_io) = link.open_circuit().await.unwrap();
        e_io.tx.send(Padding::new().into()).await.unwrap();
        assert_eq!(peer.recv_destroy(e).await, DestroyReason::NONE);
        assert!(!link.is_closed());
    }

    #[tokio::test]
    async fn circuits_take_turns() {
        let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
        let (a, a_io) = link.open_circuit().await.unwrap();
        let (b, b_io) = link.open_circuit().await.unwrap();
        // Queued before the reactor runs again (current-thread runtime).
        for i in 0..4 {
            a_io.tx.try_send(relay(i)).unwrap();
            b_io.tx.try_send(relay(i)).unwrap();
        }
        let mut order = Vec::new();
        for _ in 0..8 {
            let (cid, msg) = peer.recv().await.into_circid_and_msg();
            let cid = WireCircId::get_or_zero(cid);
            order.push((cid == a.get(), marker(msg)));
            assert!(cid == a.get() || cid == b.get());
        }
        for pair in order.chunks(2) {
            assert_ne!(pair[0].0, pair[1].0, "not round robin: {order:?}");
            assert_eq!(pair[0].1, pair[1].1, "{order:?}");
        }
    }

    #[tokio::test]
    async fn eof_ends_every_circuit() {
        let (link, task, peer) = start(ChannelConfig::default(), Vec::new());
        let (_a, mut a_io) = link.open_circuit().await.unwrap();
        drop(peer);
        assert!(recv_msg(&mut a_io).await.is_none());
        assert!(matches!(link.closed().await, CloseReason::Eof));
        assert!(matches!(task.await.unwrap(), CloseReason::Eof));
        assert!(link.is_closed());
        assert!(matches!(
            link.open_circuit().await.unwrap_err(),
            ChannelDriverError::Closed(CloseReason::Eof)
        ));
    }

    #[tokio::test]
    async fn eof_mid_cell_is_an_error() {
        let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
        peer.io.write_all(&[0x80, 0, 0, 1, 3, 0]).await.unwrap();
        drop(peer);
        assert!(matches!(link.closed().await, CloseReason::Io(_)));
    }

    #[tokio::test]
    async fn handshake_cell_on_open_channel_closes_it() {
        let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
        let (_a, mut a_io) = link.open_circuit().await.unwrap();
        peer.send(0, Netinfo::from_client(None).into()).await;
        assert!(recv_msg(&mut a_io).await.is_none());
        let reason = link.closed().await;
        assert!(
            matches!(reason, CloseReason::UnexpectedCell { cmd } if cmd == ChanCmd::NETINFO),
            "{reason}"
        );
        assert!(reason.is_peer_fault());
    }

    #[tokio::test]
    async fn circuit_cell_on_circuit_zero_closes_the_channel() {
        let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
        // A RELAY cell with circuit id 0, framed by hand.
        let mut cell = vec![0, 0, 0, 0, 3];
        cell.resize(514, 0);
        peer.io.write_all(&cell).await.unwrap();
        let reason = link.closed().await;
        assert!(matches!(reason, CloseReason::Cell(_)), "{reason}");
    }

    #[tokio::test]
    async fn shutdown_and_dropped_handles_close_locally() {
        let (link, task, mut peer) = start(ChannelConfig::default(), Vec::new());
        let (_a, mut a_io) = link.open_circuit().await.unwrap();
        link.shutdown().await.unwrap();
        assert!(recv_msg(&mut a_io).await.is_none());
        assert!(matches!(task.await.unwrap(), CloseReason::Local));
        let mut buf = [0_u8; 16];
        assert_eq!(
            peer.io.read(&mut buf).await.unwrap(),
            0,
            "EOF after shutdown"
        );

        // Without handles the channel lives as long as its circuits.
        let (link, task, mut peer) = start(ChannelConfig::default(), Vec::new());
        let (a, a_io) = link.open_circuit().await.unwrap();
        drop(link);
        peer.send(a.get(), relay(1)).await;
        a_io.tx.send(relay(2)).await.unwrap();
        let (_, msg) = peer.recv().await.into_circid_and_msg();
        assert_eq!(marker(msg), 2);
        drop(a_io);
        assert_eq!(peer.recv_destroy(a).await, DestroyReason::NONE);
        let reason = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert!(matches!(reason, CloseReason::Local), "{reason}");
    }
}
