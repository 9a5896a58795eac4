//! The application ends of a tunnel's streams: callers waiting for
//! CONNECTED or RESOLVED, and the pipes of connected streams
//! ([`crate::pipe`]), which this fills from the core's streams and drains
//! into them. Which END reasons mean "try another circuit" is the core's
//! ([`CloseReason::retry_elsewhere`](braid_core::stream::CloseReason::retry_elsewhere)).

use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::Instant;

use braid_core::ids::StreamId;
use braid_core::stream::{
    CloseReason as StreamClose, EndReason, ResolvedAnswer, StreamError, StreamEvent, Target,
};
use braid_core::tunnel::ClientTunnel;
use tokio::sync::oneshot;

use crate::error::BeginError;
use crate::pipe::{Fill, Read, StreamPipe, TorStream, pipe};
use crate::report::StreamReport;

use super::handle::ResolveQuery;

/// A caller waiting for CONNECTED.
type BeginReply = oneshot::Sender<Result<TorStream, BeginError>>;
/// A caller waiting for RESOLVED.
type ResolveReply = oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>;

/// One connected stream, seen from the task. It moves to another tunnel's
/// task with its stream (Braid live stream migration).
#[derive(Debug)]
pub(crate) struct App {
    pipe: StreamPipe,
    /// The stream's end is in the pipe.
    delivered_eof: bool,
    /// The application is done writing and the core was told (or takes
    /// no more).
    sent_eof: bool,
    /// Its number, unique in this process, kept across tunnels.
    app_id: u64,
    /// Bytes into the pipe, over every tunnel.
    bytes_read: u64,
    /// Bytes out of the pipe, over every tunnel.
    bytes_written: u64,
    /// Times it moved.
    moves: u32,
}

impl App {
    /// The stream ended abnormally: the application reads an error after
    /// its data.
    pub(crate) fn fail(&self) {
        self.pipe.set_failed();
    }
}

/// The next application stream number.
fn next_app_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The application side of a tunnel's streams.
#[derive(Debug, Default)]
pub(crate) struct Apps {
    apps: HashMap<StreamId, App>,
    begins: HashMap<StreamId, BeginReply>,
    resolves: HashMap<StreamId, ResolveReply>,
    /// Streams whose application went away since the task last looked.
    gone: Vec<StreamId>,
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
    pub(crate) fn begin(&mut self, t: &mut ClientTunnel, target: &Target, reply: BeginReply) {
        match t.begin(target, Instant::now()) {
            Ok(id) => drop(self.begins.insert(id, reply)),
            Err(e) => drop(reply.send(Err(BeginError::refused(&e)))),
        }
    }

    /// Ask the exit `query`.
    pub(crate) fn resolve(
        &mut self,
        t: &mut ClientTunnel,
        query: ResolveQuery,
        reply: ResolveReply,
    ) {
        let opened = match query {
            ResolveQuery::Name(host) => t.resolve(&host, Instant::now()),
            ResolveQuery::Reverse(addr) => t.resolve_reverse(addr, Instant::now()),
        };
        match opened {
            Ok(id) => drop(self.resolves.insert(id, reply)),
            Err(e) => drop(reply.send(Err(BeginError::refused(&e)))),
        }
    }

    /// A stream event from the core.
    pub(crate) fn on_event(&mut self, t: &mut ClientTunnel, ev: StreamEvent, now: Instant) {
        match ev {
            StreamEvent::Connected { id, .. } => {
                let Some(waiter) = self.begins.remove(&id) else {
                    return;
                };
                let (task_end, app_end) = pipe();
                if waiter.send(Ok(app_end)).is_ok() {
                    let app = App {
                        pipe: task_end,
                        delivered_eof: false,
                        sent_eof: false,
                        app_id: next_app_id(),
                        bytes_read: 0,
                        bytes_written: 0,
                        moves: 0,
                    };
                    self.apps.insert(id, app);
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
                    app.pipe.set_failed();
                }
                if let Some(w) = self.begins.remove(&id) {
                    let _ = w.send(Err(BeginError::ended(reason, remote)));
                }
                if let Some(w) = self.resolves.remove(&id) {
                    let _ = w.send(Err(BeginError::ended(reason, remote)));
                }
            }
            StreamEvent::Resolved { id, answers } => {
                if let Some(w) = self.resolves.remove(&id) {
                    let _ = w.send(Ok(answers));
                }
            }
            // Migration is the task's (it involves the other tunnel).
            StreamEvent::Readable { .. }
            | StreamEvent::Writable { .. }
            | StreamEvent::MigrateHandover { .. }
            | StreamEvent::MigrateFailed { .. } => {}
        }
    }

    /// The tunnel is gone: waiters get an error, connected streams are
    /// marked failed and their pipes dropped.
    pub(crate) fn fail_all(&mut self, reason: &str, retry: bool) {
        let err = || BeginError::circuit_closed(Some(reason), retry);
        for (_, w) in self.begins.drain() {
            let _ = w.send(Err(err()));
        }
        for (_, w) in self.resolves.drain() {
            let _ = w.send(Err(err()));
        }
        for app in self.apps.values() {
            app.pipe.set_failed();
        }
        self.apps.clear();
    }

    /// Take stream `id`'s application end, to move it to another tunnel.
    pub(crate) fn take(&mut self, id: StreamId) -> Option<App> {
        self.apps.remove(&id)
    }

    /// Carry `app`'s stream on `id` from now on (it moved here).
    pub(crate) fn adopt(&mut self, id: StreamId, mut app: App) {
        app.moves += 1;
        self.apps.insert(id, app);
    }

    /// Streams whose application went away (their stream was closed here)
    /// since the last call.
    pub(crate) fn take_gone(&mut self) -> Vec<StreamId> {
        std::mem::take(&mut self.gone)
    }

    /// The connected streams, for reports.
    pub(crate) fn list(&self, t: &ClientTunnel) -> Vec<StreamReport> {
        let mut out: Vec<StreamReport> = self
            .apps
            .iter()
            .map(|(id, a)| StreamReport {
                app: a.app_id,
                id: id.get(),
                migratable: t.migratable(*id),
                migrating: t.migrating(*id),
                bytes_read: a.bytes_read,
                bytes_written: a.bytes_written,
                moves: a.moves,
                buffered: t.recv_buffered(*id).unwrap_or(0) as u64,
                buffer_limit: t.recv_limit().unwrap_or(0) as u64,
            })
            .collect();
        out.sort_by_key(|r| r.app);
        out
    }

    /// The stream carrying application stream `app_id`, if it is here.
    pub(crate) fn find(&self, app_id: u64) -> Option<StreamId> {
        self.apps
            .iter()
            .find(|(_, a)| a.app_id == app_id)
            .map(|(id, _)| *id)
    }

    /// Move bytes between pipes and the core's streams as far as both
    /// allow. Ready when anything moved; Pending, with the task's waker in
    /// every pipe, when nothing did.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, t: &mut ClientTunnel) -> Poll<()> {
        let now = Instant::now();
        let mut progress = false;
        let gone = &mut self.gone;
        self.apps.retain(|&id, app| {
            let (moved, keep) = app.pump(cx, t, id, now);
            progress |= moved;
            if !keep && !app.delivered_eof {
                gone.push(id);
            }
            keep
        });
        if progress {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl App {
    /// Move bytes both ways. Returns whether anything moved and whether
    /// the stream still needs its pipe.
    fn pump(
        &mut self,
        cx: &Context<'_>,
        t: &mut ClientTunnel,
        id: StreamId,
        now: Instant,
    ) -> (bool, bool) {
        // Exit -> application: straight from the core's buffer into the
        // pipe's free room, so what the application has not taken waits
        // where flow control counts it (prop 324 §4).
        let mut read = 0u64;
        let fill = self.pipe.fill(cx, |room| match t.read(id, room, now) {
            Ok(0) => Read::Eof,
            Ok(n) => {
                read += n as u64;
                Read::Bytes(n)
            }
            Err(StreamError::WouldBlock { .. }) => Read::Nothing,
            Err(_) => Read::Broken,
        });
        self.bytes_read += read;
        let mut progress = matches!(fill, Fill::Moved | Fill::Ended);
        match fill {
            Fill::Ended => self.delivered_eof = true,
            Fill::AppGone if !self.delivered_eof => {
                let _ = t.close_stream(id, EndReason::MISC, now);
                return (true, false);
            }
            _ => {}
        }
        // Application -> exit, as far as the stream's send buffer takes.
        if !self.sent_eof {
            let mut refused = false;
            let mut written = 0u64;
            let (moved, done) = self.pipe.drain(cx, |data| {
                let room = t.send_space(id).unwrap_or(0).min(data.len());
                if room == 0 {
                    return 0;
                }
                let n = t
                    .write(id, data.get(..room).unwrap_or_default(), now)
                    .unwrap_or_else(|_| {
                        refused = true;
                        0
                    });
                written += n as u64;
                n
            });
            self.bytes_written += written;
            progress |= moved;
            if refused || done {
                if done && !refused {
                    let _ = t.shutdown_write(id, now);
                }
                self.sent_eof = true;
                progress = true;
            }
        }
        let over = self.delivered_eof && (self.sent_eof || t.stream_state(id).is_none());
        (progress || over, !over)
    }
}
