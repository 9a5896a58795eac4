//! The application ends of a tunnel's streams: callers waiting for
//! CONNECTED or RESOLVED, and the pipes of connected streams, whose bytes
//! this moves to and from the core's streams. Which END reasons mean
//! "try another circuit" is the core's
//! ([`CloseReason::retry_elsewhere`](braid_core::stream::CloseReason::retry_elsewhere)).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use braid_core::ids::StreamId;
use braid_core::stream::{
    CloseReason as StreamClose, EndReason, ResolvedAnswer, Socks5Reply, StreamEvent, Target,
};
use braid_core::tunnel::ClientTunnel;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::oneshot;

use super::handle::BeginError;
use super::stream::TorStream;

/// Bytes of one stream's pipe to the application, per direction.
pub(crate) const PIPE_BYTES: usize = 64 * 1024;
/// Largest chunk moved from an application's pipe at once.
const CHUNK: usize = 16 * 1024;

/// A caller waiting for CONNECTED.
type BeginReply = oneshot::Sender<Result<TorStream, BeginError>>;
/// A caller waiting for RESOLVED.
type ResolveReply = oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>;

/// One connected stream's pipe, seen from the task.
#[derive(Debug)]
struct App {
    pipe: DuplexStream,
    /// Bytes read from the core not yet written into the pipe.
    out: Vec<u8>,
    out_pos: usize,
    /// Everything delivered and the pipe shut down for writing.
    delivered_eof: bool,
    /// The application closed its writing side.
    app_eof: bool,
    /// Over: ended and flushed, or the application left.
    done: bool,
    /// Set when the stream ends abnormally: reads then end in an error.
    failed: Arc<AtomicBool>,
}

/// The application side of a tunnel's streams.
#[derive(Debug, Default)]
pub(crate) struct Apps {
    apps: HashMap<StreamId, App>,
    begins: HashMap<StreamId, BeginReply>,
    resolves: HashMap<StreamId, ResolveReply>,
}

impl Apps {
    /// No stream open or opening.
    pub(crate) fn is_idle(&self) -> bool {
        self.apps.is_empty() && self.begins.is_empty() && self.resolves.is_empty()
    }

    /// Streams open or opening, and resolves waiting.
    pub(crate) fn count(&self) -> usize {
        self.apps.len() + self.begins.len() + self.resolves.len()
    }

    /// Open a stream; `reply` is answered on CONNECTED or END.
    pub(crate) fn begin(
        &mut self,
        t: &mut ClientTunnel,
        target: &Target,
        reply: BeginReply,
        now: Instant,
    ) {
        match t.begin(target, now) {
            Ok(id) => {
                self.begins.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(BeginError {
                    reply: Socks5Reply::GeneralFailure,
                    circuit_failed: e.retry_elsewhere(),
                    reason: e.to_string(),
                }));
            }
        }
    }

    /// Resolve `host` at the exit.
    pub(crate) fn resolve(
        &mut self,
        t: &mut ClientTunnel,
        host: &str,
        reply: ResolveReply,
        now: Instant,
    ) {
        match t.resolve(host, now) {
            Ok(id) => {
                self.resolves.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(BeginError {
                    reply: Socks5Reply::GeneralFailure,
                    circuit_failed: e.retry_elsewhere(),
                    reason: e.to_string(),
                }));
            }
        }
    }

    /// A stream event from the core.
    pub(crate) fn on_event(&mut self, t: &mut ClientTunnel, ev: StreamEvent, now: Instant) {
        match ev {
            StreamEvent::Connected { id, .. } => {
                let Some(waiter) = self.begins.remove(&id) else {
                    return;
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
                    let _ = t.close_stream(id, EndReason::MISC, now);
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
                let err = || BeginError {
                    reply: reason.socks5_reply(),
                    reason: if remote {
                        format!("the exit refused: {reason}")
                    } else {
                        reason.to_string()
                    },
                    circuit_failed: reason.retry_elsewhere(),
                };
                if let Some(w) = self.begins.remove(&id) {
                    let _ = w.send(Err(err()));
                }
                if let Some(w) = self.resolves.remove(&id) {
                    let _ = w.send(Err(err()));
                }
            }
            StreamEvent::Resolved { id, answers } => {
                if let Some(w) = self.resolves.remove(&id) {
                    let _ = w.send(Ok(answers));
                }
            }
            StreamEvent::Readable { .. } | StreamEvent::Writable { .. } => {}
        }
    }

    /// The tunnel is gone: waiters get an error, connected streams are
    /// marked failed and their pipes dropped.
    pub(crate) fn fail_all(&mut self, reason: &str, retry: bool) {
        let err = || BeginError {
            reply: Socks5Reply::GeneralFailure,
            reason: format!("the circuit closed: {reason}"),
            circuit_failed: retry,
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

    /// Move bytes between pipes and the core's streams as far as both
    /// allow. Ready when anything moved; Pending, with wakers on every
    /// pipe that could move, when nothing did.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, t: &mut ClientTunnel) -> Poll<()> {
        let now = Instant::now();
        let mut progress = false;
        let mut buf = [0u8; CHUNK];
        for (&id, app) in &mut self.apps {
            if app.done {
                continue;
            }
            progress |= to_app(cx, t, id, app, now);
            if !app.done {
                progress |= from_app(cx, t, id, app, &mut buf, now);
            }
            if app.delivered_eof && (app.app_eof || t.stream_state(id).is_none()) {
                app.done = true;
                progress = true;
            }
        }
        self.apps.retain(|_, a| !a.done);
        if progress {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Exit -> application. True if anything moved.
fn to_app(
    cx: &mut Context<'_>,
    t: &mut ClientTunnel,
    id: StreamId,
    app: &mut App,
    now: Instant,
) -> bool {
    let mut progress = false;
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
                    let _ = t.close_stream(id, EndReason::MISC, now);
                    app.done = true;
                    return true;
                }
                Poll::Pending => return progress,
            }
        }
        if app.delivered_eof {
            return progress;
        }
        // Everything buffered, up to a pipe's worth, in one read: flow
        // control then sees the buffer empty whenever the application
        // keeps up, and only a read that leaves bytes behind restarts the
        // count of the advised XON rate's doubling (prop 324 §4.1.2).
        let want = t.recv_buffered(id).unwrap_or(0).clamp(1, PIPE_BYTES);
        let mut chunk = vec![0; want];
        match t.read(id, &mut chunk, now) {
            Ok(0) => {
                let _ = Pin::new(&mut app.pipe).poll_shutdown(cx);
                app.delivered_eof = true;
                return true;
            }
            Ok(n) => {
                chunk.truncate(n);
                app.out = chunk;
                app.out_pos = 0;
                progress = true;
            }
            Err(_) => return progress,
        }
    }
}

/// Application -> exit, as far as the stream's send buffer allows. True if
/// anything moved.
fn from_app(
    cx: &mut Context<'_>,
    t: &mut ClientTunnel,
    id: StreamId,
    app: &mut App,
    buf: &mut [u8],
    now: Instant,
) -> bool {
    let mut progress = false;
    while !app.app_eof {
        let Some(space) = t.send_space(id).filter(|s| *s > 0) else {
            break;
        };
        let want = space.min(buf.len());
        let mut rb = ReadBuf::new(buf.get_mut(..want).unwrap_or_default());
        match Pin::new(&mut app.pipe).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                app.app_eof = true;
                let _ = t.shutdown_write(id, now);
                progress = true;
            }
            Poll::Ready(Ok(())) => {
                if t.write(id, rb.filled(), now).is_err() {
                    app.app_eof = true;
                }
                progress = true;
            }
            Poll::Ready(Err(_)) => {
                let _ = t.close_stream(id, EndReason::MISC, now);
                app.done = true;
                return true;
            }
            Poll::Pending => break,
        }
    }
    progress
}
