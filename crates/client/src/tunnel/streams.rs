//! The stream side of a tunnel task, shared by the single-circuit and the
//! Conflux reactors: the [`StreamMap`], the application ends of connected
//! streams, and the callers waiting for CONNECTED or RESOLVED. The reactor
//! feeds it the exit's stream messages (in order) and sends what
//! [`StreamSide::poll_transmit`] yields.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use braid_core::cc::FlowParams;
use braid_core::circuit::relay_cell::MAX_DATA_LEN;
use braid_core::ids::StreamId;
use braid_core::stream::{
    BeginFlags, CloseReason as StreamClose, EndReason, ResolvedAnswer, Socks5Reply, StreamError,
    StreamEvent, StreamFlowMode, StreamMap, StreamMapConfig, Target,
};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::oneshot;
use tor_cell::relaycell::msg::AnyRelayMsg;

use super::handle::BeginError;
use super::stream::TorStream;

/// Bytes of one stream's pipe to the application, per direction.
pub(crate) const PIPE_BYTES: usize = 64 * 1024;
/// Largest chunk moved from an application's pipe into the stream map at
/// once.
const CHUNK: usize = 16 * 1024;

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

/// The streams of one tunnel.
#[derive(Debug)]
pub(crate) struct StreamSide {
    streams: Option<StreamMap>,
    cfg: StreamMapConfig,
    flow: FlowParams,
    apps: HashMap<StreamId, App>,
    begins: HashMap<StreamId, oneshot::Sender<Result<TorStream, BeginError>>>,
    resolves: HashMap<StreamId, oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>>,
}

impl StreamSide {
    pub(crate) fn new(cfg: StreamMapConfig, flow: FlowParams) -> Self {
        Self {
            streams: None,
            cfg,
            flow,
            apps: HashMap::new(),
            begins: HashMap::new(),
            resolves: HashMap::new(),
        }
    }

    /// The tunnel is built: streams may open, with XON/XOFF if the exit hop
    /// runs congestion control, else fixed windows.
    pub(crate) fn open(&mut self, congestion_controlled: bool) {
        let mode = if congestion_controlled {
            StreamFlowMode::XonXoff {
                params: self.flow.clone(),
                onion: false,
            }
        } else {
            StreamFlowMode::Windowed
        };
        self.streams = Some(StreamMap::new(self.cfg.clone(), mode));
    }

    /// No stream open or opening.
    pub(crate) fn is_idle(&self) -> bool {
        self.apps.is_empty() && self.begins.is_empty() && self.resolves.is_empty()
    }

    /// Streams open or opening, and resolves waiting.
    pub(crate) fn count(&self) -> usize {
        self.apps.len() + self.begins.len() + self.resolves.len()
    }

    /// A stream message from the exit, in order.
    pub(crate) fn handle_msg(&mut self, now: Instant, stream: StreamId, msg: AnyRelayMsg) {
        let Some(streams) = self.streams.as_mut() else {
            return;
        };
        if let Err(e) = streams.handle_msg(now, stream, msg) {
            log_stream_error(&e);
        }
    }

    /// Open a stream (the answer comes with CONNECTED or END).
    pub(crate) fn begin(
        &mut self,
        target: &Target,
        reply: oneshot::Sender<Result<TorStream, BeginError>>,
        now: Instant,
    ) {
        let Some(streams) = self.streams.as_mut() else {
            let _ = reply.send(Err(not_open()));
            return;
        };
        match streams.begin(target, BeginFlags::empty(), now) {
            Ok(id) => {
                self.begins.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(local_error(&e)));
            }
        }
    }

    /// Resolve a hostname at the exit.
    pub(crate) fn resolve(
        &mut self,
        host: &str,
        reply: oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>,
        now: Instant,
    ) {
        let Some(streams) = self.streams.as_mut() else {
            let _ = reply.send(Err(not_open()));
            return;
        };
        match streams.resolve(host, now) {
            Ok(id) => {
                self.resolves.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(local_error(&e)));
            }
        }
    }

    /// Hand stream events to their waiters; forget finished streams.
    pub(crate) fn process_events(&mut self, now: Instant) {
        let Some(streams) = self.streams.as_mut() else {
            return;
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
        self.apps.retain(|_, app| !app.done);
    }

    /// The next stream message to send, DATA only if `can_send_data`.
    pub(crate) fn poll_transmit(&mut self, can_send_data: bool) -> Option<(StreamId, AnyRelayMsg)> {
        self.streams.as_mut()?.poll_transmit(can_send_data)
    }

    /// Cells the streams have waiting to go out, for a scheduler that
    /// weighs the rest of a transfer ([`braid_core::conflux_sched::Scheduler::set_backlog`]):
    /// `None` when some application has more than the stream buffers hold
    /// (its writing side open and its stream's send buffer at least half
    /// full: it writes faster than the tunnel sends, a bulk transfer whose
    /// end is not in sight); else the buffered bytes in DATA cells.
    pub(crate) fn send_backlog(&self) -> Option<u64> {
        let streams = self.streams.as_ref()?;
        let limit = streams.config().send_buffer;
        let mut bytes = 0usize;
        for (&id, app) in &self.apps {
            let buffered = streams.send_buffered(id).unwrap_or(0);
            if !app.app_eof && buffered.saturating_mul(2) >= limit {
                return None;
            }
            bytes = bytes.saturating_add(buffered);
        }
        Some(bytes.div_ceil(MAX_DATA_LEN) as u64)
    }

    /// When the stream map next needs [`Self::handle_timeout`].
    pub(crate) fn timer(&self) -> Option<Instant> {
        self.streams.as_ref().and_then(StreamMap::poll_timeout)
    }

    /// Time passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(s) = self.streams.as_mut() {
            s.handle_timeout(now);
        }
    }

    /// Move bytes between pipes and streams (see [`poll_apps`]).
    pub(crate) fn poll_apps(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        poll_apps(cx, &mut self.apps, &mut self.streams)
    }

    /// The tunnel is gone: every waiter gets an error, every connected
    /// stream is marked failed and its pipe dropped.
    pub(crate) fn fail_all(&mut self, reason: &str) {
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
        for app in self.apps.values() {
            app.failed.store(true, Ordering::Release);
        }
        self.apps.clear();
    }
}

fn not_open() -> BeginError {
    BeginError {
        reply: Socks5Reply::GeneralFailure,
        reason: "the circuit is not open".into(),
        circuit_failed: true,
    }
}

fn local_error(e: &StreamError) -> BeginError {
    BeginError {
        reply: Socks5Reply::GeneralFailure,
        reason: e.to_string(),
        circuit_failed: false,
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
            // Everything buffered, up to a pipe's worth, in one read: flow
            // control then sees the buffer empty whenever the application
            // keeps up, as C-tor sees an edge's outbuf after a flush, and
            // only a read that leaves bytes behind restarts the count of
            // the advised XON rate's doubling (prop 324 §4.1.2). With
            // reads of 16 KB a burst of 33 cells or more, as a Conflux
            // reorder queue releases when a gap fills, left a remainder:
            // an exit told a low rate once was let go only slowly.
            let want = streams.recv_buffered(id).unwrap_or(0).clamp(1, PIPE_BYTES);
            let mut chunk = vec![0; want];
            match streams.read(id, &mut chunk, now) {
                Ok(0) => {
                    // Everything delivered and the stream ended: EOF.
                    let _ = Pin::new(&mut app.pipe).poll_shutdown(cx);
                    app.delivered_eof = true;
                    progress = true;
                    break;
                }
                Ok(n) => {
                    chunk.truncate(n);
                    app.out = chunk;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use std::time::Duration;

    use braid_core::stream::Target;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tor_cell::relaycell::flow_ctrl::XonKBpsEwma;
    use tor_cell::relaycell::msg::{Connected, Data};

    /// Moves bytes between the pipes and the stream map once.
    async fn pump(side: &mut StreamSide) {
        std::future::poll_fn(|cx| {
            let _ = side.poll_apps(cx);
            Poll::Ready(())
        })
        .await;
    }

    /// The advised rates (KB/s, 0 for none) of the XONs the side sends now,
    /// and whether it sends an XOFF.
    fn flow_signals(side: &mut StreamSide) -> (Vec<u32>, bool) {
        let mut rates = Vec::new();
        let mut xoff = false;
        while let Some((_, msg)) = side.poll_transmit(true) {
            match msg {
                AnyRelayMsg::Xon(x) => rates.push(match x.kbytes_per_sec_ewma() {
                    XonKBpsEwma::Limited(r) => r.get(),
                    XonKBpsEwma::Unlimited => 0,
                }),
                AnyRelayMsg::Xoff(_) => xoff = true,
                _ => {}
            }
        }
        (rates, xoff)
    }

    /// Reads `n` bytes from the application's end, moving them through.
    async fn take(side: &mut StreamSide, app: &mut TorStream, n: usize) {
        let mut got = 0;
        let mut buf = vec![0; 64 * 1024];
        while got < n {
            pump(side).await;
            let read = tokio::time::timeout(Duration::from_millis(20), app.read(&mut buf));
            if let Ok(r) = read.await {
                got += r.unwrap();
            }
        }
        assert_eq!(got, n);
    }

    #[tokio::test]
    async fn advised_rate_doubles_while_the_application_takes_bursts_at_once() {
        // After an XOFF the exit keeps to the rate our XON advised; when
        // the application then takes everything that comes, the rate must
        // double every cc_xon_rate cells (prop 324 §4.1.2), also when
        // cells come in bursts over 32 (a Conflux reorder queue releasing
        // a filled gap).
        let p = FlowParams::default();
        let mut side = StreamSide::new(StreamMapConfig::default(), p.clone());
        side.open(true);
        let (tx, rx) = oneshot::channel();
        side.begin(&Target::hostname("example.com", 80), tx, Instant::now());
        let (id, _begin) = side.poll_transmit(true).unwrap();
        side.handle_msg(Instant::now(), id, Connected::new_empty().into());
        side.process_events(Instant::now());
        let mut app = rx.await.unwrap().unwrap();
        let cell = [7u8; MAX_DATA_LEN];
        let data = || -> AnyRelayMsg { Data::new(&cell).unwrap().into() };
        let cells = usize::try_from(p.xoff_client_bytes).unwrap() / MAX_DATA_LEN + 2;
        for _ in 0..cells {
            side.handle_msg(Instant::now(), id, data());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        side.handle_msg(Instant::now(), id, data());
        assert!(flow_signals(&mut side).1, "XOFF");
        take(&mut side, &mut app, (cells + 1) * MAX_DATA_LEN).await;
        let (first, _) = flow_signals(&mut side);
        assert_eq!(first.len(), 1, "one XON once drained: {first:?}");
        let first = first[0];
        assert!(first > 0, "a measured rate");
        // Bursts of 40 cells, each taken at once: 800 cells in all.
        let mut later = Vec::new();
        for _ in 0..20 {
            for _ in 0..40 {
                side.handle_msg(Instant::now(), id, data());
            }
            take(&mut side, &mut app, 40 * MAX_DATA_LEN).await;
            later.extend(flow_signals(&mut side).0);
        }
        assert!(
            later.iter().any(|&r| r == 0 || r >= 2 * first),
            "first XON {first} KB/s, then {later:?}"
        );
    }

    #[tokio::test]
    async fn backlog_is_unknown_while_the_application_outpaces_the_stream() {
        let now = Instant::now();
        let cfg = StreamMapConfig::default();
        let limit = cfg.send_buffer;
        let mut side = StreamSide::new(cfg, FlowParams::default());
        side.open(true);
        let (tx, rx) = oneshot::channel();
        side.begin(&Target::hostname("example.com", 80), tx, now);
        let (id, _begin) = side.poll_transmit(true).unwrap();
        side.handle_msg(now, id, Connected::new_empty().into());
        side.process_events(now);
        let mut app = rx.await.unwrap().unwrap();
        assert_eq!(side.send_backlog(), Some(0));

        // A little data: known, in cells (1000 bytes = 3 DATA cells).
        app.write_all(&[7; 1000]).await.unwrap();
        pump(&mut side).await;
        assert_eq!(side.send_backlog(), Some(3));

        // More than half the send buffer with the writing side open: the
        // application has more than we hold.
        app.write_all(&vec![7; limit]).await.unwrap();
        pump(&mut side).await;
        assert_eq!(side.send_backlog(), None);

        // Sent down to a few cells: known again.
        while side.streams.as_ref().unwrap().send_buffered(id).unwrap() > 2 * MAX_DATA_LEN {
            side.poll_transmit(true).unwrap();
        }
        assert_eq!(side.send_backlog(), Some(2));

        // Once the application closes its side, what is buffered is all
        // there is, however much.
        app.write_all(&vec![7; limit * 5 / 8]).await.unwrap();
        app.shutdown().await.unwrap();
        for _ in 0..4 {
            pump(&mut side).await;
        }
        let buffered = side.streams.as_ref().unwrap().send_buffered(id).unwrap();
        assert!(buffered * 2 >= limit, "{buffered}");
        assert_eq!(
            side.send_backlog(),
            Some(buffered.div_ceil(MAX_DATA_LEN) as u64)
        );
    }
}
