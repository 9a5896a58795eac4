//! BEGIN_DIR streams in the node task (tor-spec §6.2): the core opens the
//! stream and sends CONNECTED (`ExitEvent::DirStream`); here each stream
//! gets a braid-dir `Session`, which takes the client's bytes from the
//! stream's map until the request is complete, is answered from the cache,
//! and hands its answer into the map as the map has room (`write`, then
//! `Writable` when it had none); once all went, `shutdown_write` ends the
//! stream with END DONE after the bytes, as C-tor's directory connection
//! closing ends its linked stream. Bounds: [`MAX_DIR_STREAMS`] streams
//! (more are ended with RESOURCELIMIT), [`MAX_ANSWERING`] answers under way
//! (more are answered 503), the request head (braid-dir), and the session
//! stall (sessions that moved no byte for five minutes are closed when a
//! new stream opens).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use braid_core::ids::{EdgeKey, StreamId};
use braid_core::relay::RelayNode;
use braid_dir::serve::{Outcome, Session};
use tor_cell::relaycell::msg::EndReason;

use super::DirShared;

/// Directory streams open at once.
pub(crate) const MAX_DIR_STREAMS: usize = 1024;
/// Answers being handed out at once; past it, requests get 503 (C-tor's
/// answer when its write bucket is low).
pub(crate) const MAX_ANSWERING: usize = 256;
/// Bytes read from a stream's map at once.
const READ_CHUNK: usize = 4096;
/// Reads of client bytes after the request per event (they are dropped).
const MAX_DISCARD_READS: usize = 16;

/// The relay's BEGIN_DIR streams.
#[derive(Debug)]
pub(crate) struct DirStreams {
    shared: Arc<DirShared>,
    sessions: BTreeMap<(EdgeKey, StreamId), Session>,
}

impl DirStreams {
    pub(crate) fn new(shared: Arc<DirShared>) -> Self {
        Self {
            shared,
            sessions: BTreeMap::new(),
        }
    }

    /// Whether stream `id` of `edge` is a directory stream.
    pub(crate) fn contains(&self, edge: EdgeKey, id: StreamId) -> bool {
        self.sessions.contains_key(&(edge, id))
    }

    /// A BEGIN_DIR was accepted on `edge` as stream `id`.
    pub(crate) fn open(&mut self, node: &mut RelayNode, edge: EdgeKey, id: StreamId, now: Instant) {
        self.sweep(node, now);
        if self.sessions.len() >= MAX_DIR_STREAMS {
            self.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
            let _ = node.exit(edge, now, |m| m.close(id, EndReason::RESOURCELIMIT, now));
            return;
        }
        self.sessions.insert((edge, id), Session::new(now));
        self.count();
        // The request often came right behind the BEGIN_DIR.
        self.readable(node, edge, id, now);
    }

    /// Client bytes wait on stream `id`.
    pub(crate) fn readable(
        &mut self,
        node: &mut RelayNode,
        edge: EdgeKey,
        id: StreamId,
        now: Instant,
    ) {
        let date = SystemTime::now();
        let Some(s) = self.sessions.get_mut(&(edge, id)) else {
            return;
        };
        let mut buf = vec![0; READ_CHUNK];
        let mut discards = 0;
        loop {
            let n = match node.exit(edge, now, |m| m.read(id, &mut buf, now)) {
                Some(Ok(n)) if n > 0 => n,
                _ => break,
            };
            if !s.wants_input() {
                // After the request: dropped.
                discards += 1;
                if discards >= MAX_DISCARD_READS {
                    break;
                }
                continue;
            }
            if let Some(outcome) = s.handle_input(buf.get(..n).unwrap_or_default(), now, date) {
                if let Outcome::Closed { error: Some(e) } = &outcome {
                    tracing::debug!("directory stream {edge}/{id}: {e}; closing it");
                }
                self.shared.stats.record(&outcome);
            }
        }
        if s.is_ready() {
            let answering = self.sessions.values().filter(|s| s.pending() > 0).count();
            let Some(s) = self.sessions.get_mut(&(edge, id)) else {
                return;
            };
            let url = s.url().unwrap_or_default().to_owned();
            let outcome = if answering >= MAX_ANSWERING {
                s.answer_busy(date)
            } else {
                let cache = self.shared.cache.read().unwrap_or_else(|e| e.into_inner());
                s.answer(&cache, date)
            };
            if let Some(outcome) = outcome {
                tracing::debug!("directory request {url}: {outcome:?}");
                self.shared.stats.record(&outcome);
            }
        }
        self.flush(node, edge, id, now);
    }

    /// The stream's map has room again.
    pub(crate) fn writable(
        &mut self,
        node: &mut RelayNode,
        edge: EdgeKey,
        id: StreamId,
        now: Instant,
    ) {
        self.flush(node, edge, id, now);
    }

    /// The stream is over (the client ended it, or the circuit went).
    pub(crate) fn closed(&mut self, edge: EdgeKey, id: StreamId) {
        if self.sessions.remove(&(edge, id)).is_some() {
            self.count();
        }
    }

    /// Hand the answer into the map as far as it takes it; end the stream
    /// once it all went.
    fn flush(&mut self, node: &mut RelayNode, edge: EdgeKey, id: StreamId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&(edge, id)) else {
            return;
        };
        loop {
            let out = s.output();
            if out.is_empty() {
                break;
            }
            match node.exit(edge, now, |m| m.write(id, out, now)) {
                Some(Ok(n)) if n > 0 => s.consume(n, now),
                // No room (Writable follows), or the stream is gone.
                _ => break,
            }
        }
        if s.is_finished() {
            let _ = node.exit(edge, now, |m| m.shutdown_write(id, now));
            self.sessions.remove(&(edge, id));
            self.count();
        }
    }

    /// Close the streams that moved nothing for braid-dir's stall time.
    fn sweep(&mut self, node: &mut RelayNode, now: Instant) {
        let stalled: Vec<(EdgeKey, StreamId)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_stalled(now))
            .map(|(k, _)| *k)
            .collect();
        for (edge, id) in stalled {
            tracing::debug!("directory stream {edge}/{id} stalled; closing it");
            self.sessions.remove(&(edge, id));
            self.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
            let _ = node.exit(edge, now, |m| m.close(id, EndReason::TIMEOUT, now));
        }
        self.count();
    }

    fn count(&self) {
        self.shared.stats.open.store(
            u64::try_from(self.sessions.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}
