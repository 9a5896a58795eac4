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

use super::handle::ResolveQuery;

/// A caller waiting for CONNECTED.
type BeginReply = oneshot::Sender<Result<TorStream, BeginError>>;
/// A caller waiting for RESOLVED.
type ResolveReply = oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>;

/// One connected stream, seen from the task.
#[derive(Debug)]
struct App {
    pipe: StreamPipe,
    /// The stream's end is in the pipe.
    delivered_eof: bool,
    /// The application is done writing and the core was told (or takes
    /// no more).
    sent_eof: bool,
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
            StreamEvent::Readable { .. } | StreamEvent::Writable { .. } => {}
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

    /// Move bytes between pipes and the core's streams as far as both
    /// allow. Ready when anything moved; Pending, with the task's waker in
    /// every pipe, when nothing did.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, t: &mut ClientTunnel) -> Poll<()> {
        let now = Instant::now();
        let mut progress = false;
        self.apps.retain(|&id, app| {
            let (moved, keep) = app.pump(cx, t, id, now);
            progress |= moved;
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
        let fill = self.pipe.fill(cx, |room| match t.read(id, room, now) {
            Ok(0) => Read::Eof,
            Ok(n) => Read::Bytes(n),
            Err(StreamError::WouldBlock { .. }) => Read::Nothing,
            Err(_) => Read::Broken,
        });
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
            let (moved, done) = self.pipe.drain(cx, |data| {
                let room = t.send_space(id).unwrap_or(0).min(data.len());
                if room == 0 {
                    return 0;
                }
                t.write(id, data.get(..room).unwrap_or_default(), now)
                    .unwrap_or_else(|_| {
                        refused = true;
                        0
                    })
            });
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
