//! The exit side of the node task: the destinations of exit streams
//! (`NodeEvent::Exit`). A stream's Connect checks the exit policy
//! (braid-dir's `ExitPolicy::allows`), resolves a hostname with the system
//! resolver behind a bound on concurrent lookups, picks the address
//! (`exit::choose_address`) and connects; then one task reads the socket
//! and one writes it, and the node task moves bytes between them and the
//! stream's map in the core:
//!
//! - client to destination: on `Readable` (or when the writer's small
//!   queue has room again), `read` from the map into the queue while it
//!   has room; what does not fit stays in the core, which counts it
//!   against the stream's window;
//! - destination to client: the reader reads a chunk only with one of
//!   [`DEST_CHUNKS_IN_FLIGHT`] permits; the node task `write`s the chunk
//!   into the map and gives the permit back once the map took it all,
//!   else keeps the rest until `Writable`. So a client that does not read
//!   stops the socket's reads (the map's bounds), and at most that many
//!   chunks wait here.
//!
//! BEGIN_DIR streams go to the directory cache's streams (`dircache`)
//! when the relay serves the directory.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use braid_core::exit::{ExitEvent, ResolveQuery, choose_address, end_reason_for_io};
use braid_core::ids::{EdgeKey, StreamId};
use braid_core::relay::RelayNode;
use braid_core::stream::{BeginFlags, Host, ResolvedAnswer, Target};
use braid_dir::descriptor::ExitPolicy;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tor_cell::relaycell::msg::EndReason;

use super::dircache::{DirShared, DirStreams};
use super::msg::{ExitMsg, ToNode};

/// Bytes read from a destination at once.
const DEST_CHUNK: usize = 16 * 1024;
/// Chunks read from a destination that the map has not taken yet.
pub(crate) const DEST_CHUNKS_IN_FLIGHT: usize = 2;
/// Chunks for a destination its writer holds.
const TO_DEST_CHUNKS: usize = 4;
/// How long a name lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The TTL we give for a name the system resolver found (it does not say):
/// C-tor's exits clip every TTL to 300 s or an hour anyway.
const LOOKUP_TTL: u32 = 300;
/// How long a connect may take (the core's connect deadline, 20 s, ends
/// the stream first).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing destination's writer may take to send what it has.
const DEST_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every exit stream's tasks need.
#[derive(Debug)]
pub(crate) struct ExitParams {
    /// The exit policy, as advertised.
    pub(crate) policy: ExitPolicy,
    /// Connect only to 127.0.0.0/8 (test networks).
    pub(crate) loopback_only: bool,
    /// Permits for concurrent name lookups.
    pub(crate) lookups: Semaphore,
    /// The directory cache, if we serve one.
    pub(crate) dir: Option<Arc<DirShared>>,
}

/// One stream's destination, as the node task sees it.
#[derive(Debug)]
struct Dest {
    /// The connect task, then the socket reader.
    task: AbortHandle,
    /// The writer's queue (once connected).
    to_dest: Option<mpsc::Sender<Vec<u8>>>,
    /// Set when the writer's queue was found full.
    full: Arc<AtomicBool>,
    /// The node found the queue full and waits for the writer.
    blocked: bool,
    /// Read permits of the socket reader.
    in_flight: Arc<Semaphore>,
    /// Permits held for `pending`.
    held: usize,
    /// Destination bytes the map has not taken.
    pending: Vec<u8>,
    /// The destination closed its side after `pending`.
    eof: bool,
    /// Where its tasks report it: where it was opened (a stream keeps its
    /// tasks when it migrates, Braid proposal 001 §4).
    origin: (EdgeKey, StreamId),
}

/// The exit streams' destinations.
#[derive(Debug)]
pub(crate) struct Exits {
    params: Arc<ExitParams>,
    dests: BTreeMap<(EdgeKey, StreamId), Dest>,
    /// Streams that migrated: where their tasks report them, and where
    /// they are now (one entry per live destination at most).
    moved: BTreeMap<(EdgeKey, StreamId), (EdgeKey, StreamId)>,
    /// BEGIN_DIR streams, if we serve the directory.
    dirs: Option<DirStreams>,
}

impl Exits {
    pub(crate) fn new(params: ExitParams) -> Self {
        let dirs = params.dir.clone().map(DirStreams::new);
        Self {
            params: Arc::new(params),
            dests: BTreeMap::new(),
            moved: BTreeMap::new(),
            dirs,
        }
    }

    /// Whether a destination's writer queue is full.
    pub(crate) fn any_blocked(&self) -> bool {
        self.dests.values().any(|d| d.blocked)
    }

    /// Look again at full writer queues (see the channels' recheck).
    pub(crate) fn recheck(&mut self, node: &mut RelayNode, now: Instant) {
        let keys: Vec<_> = self
            .dests
            .iter()
            .filter(|(_, d)| d.blocked && d.to_dest.as_ref().is_some_and(|t| t.capacity() > 0))
            .map(|(k, _)| *k)
            .collect();
        for (edge, id) in keys {
            if let Some(d) = self.dests.get_mut(&(edge, id)) {
                d.blocked = false;
            }
            self.feed(node, edge, id, now);
        }
    }

    /// An event of stream `id` of `edge` (a circuit or a Conflux set).
    pub(crate) fn event(
        &mut self,
        node: &mut RelayNode,
        edge: EdgeKey,
        ev: ExitEvent,
        to_node: &mpsc::Sender<ToNode>,
        now: Instant,
    ) {
        let id = ev.id();
        if let Some(dirs) = self.dirs.as_mut() {
            match ev {
                ExitEvent::DirStream { .. } => return dirs.open(node, edge, id, now),
                ExitEvent::Readable { .. } if dirs.contains(edge, id) => {
                    return dirs.readable(node, edge, id, now);
                }
                ExitEvent::Writable { .. } if dirs.contains(edge, id) => {
                    return dirs.writable(node, edge, id, now);
                }
                ExitEvent::Closed { .. } if dirs.contains(edge, id) => {
                    return dirs.closed(edge, id);
                }
                _ => {}
            }
        }
        match ev {
            ExitEvent::Connect { target, flags, .. } => {
                let task = tokio::spawn(connect(
                    Arc::clone(&self.params),
                    target,
                    flags,
                    Reply::new(to_node, edge, id),
                ));
                self.dests
                    .insert((edge, id), Dest::new(task.abort_handle(), (edge, id)));
            }
            ExitEvent::Resolve { query, .. } => {
                let task = tokio::spawn(resolve(
                    Arc::clone(&self.params),
                    query,
                    Reply::new(to_node, edge, id),
                ));
                self.dests
                    .insert((edge, id), Dest::new(task.abort_handle(), (edge, id)));
            }
            // We serve no directory (the core answers NOTDIRECTORY unless
            // ExitConfig::serves_directory is on).
            ExitEvent::DirStream { .. } => {
                let _ = node.exit(edge, now, |m| m.close(id, EndReason::NOTDIRECTORY, now));
            }
            ExitEvent::Readable { .. } => self.feed(node, edge, id, now),
            ExitEvent::Writable { .. } => self.drain(node, edge, id, now),
            ExitEvent::Closed { .. } => self.forget(edge, id),
            ExitEvent::Moved { to_edge, to_id, .. } => {
                // The stream is now `to_id` of `to_edge` (Braid live
                // stream migration); its socket and tasks stay.
                let Some(d) = self.dests.remove(&(edge, id)) else {
                    return;
                };
                let to = (to_edge, to_id);
                if d.origin == to {
                    self.moved.remove(&d.origin);
                } else {
                    self.moved.insert(d.origin, to);
                }
                self.dests.insert(to, d);
                self.feed(node, to_edge, to_id, now);
                self.drain(node, to_edge, to_id, now);
            }
        }
    }

    /// A message from stream `id`'s tasks.
    pub(crate) fn message(
        &mut self,
        node: &mut RelayNode,
        edge: EdgeKey,
        id: StreamId,
        what: ExitMsg,
        to_node: &mpsc::Sender<ToNode>,
        now: Instant,
    ) {
        // Its tasks name it by where it was opened.
        let (edge, id) = self.moved.get(&(edge, id)).copied().unwrap_or((edge, id));
        if !self.dests.contains_key(&(edge, id)) {
            return;
        }
        match what {
            ExitMsg::Connected { stream, addr, ttl } => {
                let ok = node.exit(edge, now, |m| m.connected(id, addr, ttl, now));
                if !matches!(ok, Some(Ok(()))) {
                    self.forget(edge, id);
                    return;
                }
                let (r, w) = stream.into_split();
                let Some(d) = self.dests.get_mut(&(edge, id)) else {
                    return;
                };
                let (tx, rx) = mpsc::channel(TO_DEST_CHUNKS);
                let (oe, oid) = d.origin;
                let reply = Reply::new(to_node, oe, oid);
                tokio::spawn(write_dest(w, rx, Arc::clone(&d.full), reply.clone()));
                d.task = tokio::spawn(read_dest(r, Arc::clone(&d.in_flight), reply)).abort_handle();
                d.to_dest = Some(tx);
                // BEGIN's optimistic data may already wait.
                self.feed(node, edge, id, now);
            }
            ExitMsg::RefusedByPolicy { addr, ttl } => {
                let _ = node.exit(edge, now, |m| m.refuse_exit_policy(id, addr, ttl, now));
                self.forget(edge, id);
            }
            ExitMsg::Refused(reason) => {
                let _ = node.exit(edge, now, |m| m.refuse(id, reason, now));
                self.forget(edge, id);
            }
            ExitMsg::Resolved(answers) => {
                let _ = node.exit(edge, now, |m| m.resolved(id, &answers, now));
                self.forget(edge, id);
            }
            ExitMsg::Data(data) => {
                if let Some(d) = self.dests.get_mut(&(edge, id)) {
                    d.pending.extend_from_slice(&data);
                    d.held += 1;
                }
                self.drain(node, edge, id, now);
            }
            ExitMsg::End(None) => {
                if let Some(d) = self.dests.get_mut(&(edge, id)) {
                    d.eof = true;
                }
                self.drain(node, edge, id, now);
            }
            ExitMsg::End(Some(kind)) => {
                let _ = node.exit(edge, now, |m| m.close(id, end_reason_for_io(kind), now));
                self.forget(edge, id);
            }
            ExitMsg::WriterReady => {
                if let Some(d) = self.dests.get_mut(&(edge, id)) {
                    d.blocked = false;
                }
                self.feed(node, edge, id, now);
            }
        }
    }

    /// Client bytes from the map to the destination's writer, while its
    /// queue has room.
    fn feed(&mut self, node: &mut RelayNode, edge: EdgeKey, id: StreamId, now: Instant) {
        let Some(d) = self.dests.get_mut(&(edge, id)) else {
            return;
        };
        let Some(tx) = d.to_dest.as_ref() else {
            return;
        };
        if d.blocked {
            return;
        }
        loop {
            let permit = match tx.try_reserve() {
                Ok(p) => p,
                Err(TrySendError::Full(())) => {
                    d.full.store(true, Ordering::SeqCst);
                    if tx.capacity() > 0 {
                        continue;
                    }
                    d.blocked = true;
                    return;
                }
                Err(TrySendError::Closed(())) => return,
            };
            let mut buf = vec![0; DEST_CHUNK];
            match node.exit(edge, now, |m| m.read(id, &mut buf, now)) {
                Some(Ok(n)) if n > 0 => {
                    buf.truncate(n);
                    permit.send(buf);
                }
                _ => return,
            }
        }
    }

    /// Destination bytes into the map, as far as it takes them.
    fn drain(&mut self, node: &mut RelayNode, edge: EdgeKey, id: StreamId, now: Instant) {
        let Some(d) = self.dests.get_mut(&(edge, id)) else {
            return;
        };
        if !d.pending.is_empty() {
            match node.exit(edge, now, |m| m.write(id, &d.pending, now)) {
                Some(Ok(n)) => {
                    d.pending.drain(..n.min(d.pending.len()));
                }
                _ => return,
            }
            if !d.pending.is_empty() {
                return;
            }
        }
        d.in_flight.add_permits(std::mem::take(&mut d.held));
        if d.eof {
            d.eof = false;
            let _ = node.exit(edge, now, |m| m.shutdown_write(id, now));
        }
    }

    /// Drop stream `id`'s destination: stop its tasks (its writer sends
    /// what it holds, then closes the socket).
    fn forget(&mut self, edge: EdgeKey, id: StreamId) {
        if let Some(d) = self.dests.remove(&(edge, id)) {
            self.moved.remove(&d.origin);
            d.task.abort();
        }
    }
}

impl Dest {
    fn new(task: AbortHandle, origin: (EdgeKey, StreamId)) -> Self {
        Self {
            origin,
            task,
            to_dest: None,
            full: Arc::new(AtomicBool::new(false)),
            blocked: false,
            in_flight: Arc::new(Semaphore::new(DEST_CHUNKS_IN_FLIGHT)),
            held: 0,
            pending: Vec::new(),
            eof: false,
        }
    }
}

/// Where a stream's tasks report.
#[derive(Debug, Clone)]
struct Reply {
    to_node: mpsc::Sender<ToNode>,
    edge: EdgeKey,
    id: StreamId,
}

impl Reply {
    fn new(to_node: &mpsc::Sender<ToNode>, edge: EdgeKey, id: StreamId) -> Self {
        Self {
            to_node: to_node.clone(),
            edge,
            id,
        }
    }

    /// Tell the node task; false once it is gone.
    async fn send(&self, what: ExitMsg) -> bool {
        let msg = ToNode::Exit {
            edge: self.edge,
            id: self.id,
            what,
        };
        self.to_node.send(msg).await.is_ok()
    }
}

/// Resolve, check the policy, connect.
async fn connect(params: Arc<ExitParams>, target: Target, flags: BeginFlags, reply: Reply) {
    let port = target.port;
    let (addrs, ttl) = match target.host {
        Host::Ipv4(a) => (vec![IpAddr::V4(a)], LOOKUP_TTL),
        Host::Ipv6(a) => (vec![IpAddr::V6(a)], LOOKUP_TTL),
        Host::Hostname(name) => match lookup(&params, &name, port).await {
            Ok(addrs) => (addrs, LOOKUP_TTL),
            Err(reason) => {
                reply.send(ExitMsg::Refused(reason)).await;
                return;
            }
        },
    };
    let Some(addr) = choose_address(flags, &addrs, |a| params.policy.allows(a, port)) else {
        reply.send(ExitMsg::Refused(EndReason::RESOLVEFAILED)).await;
        return;
    };
    if !params.policy.allows(addr, port) {
        reply.send(ExitMsg::RefusedByPolicy { addr, ttl }).await;
        return;
    }
    if params.loopback_only && !addr.is_loopback() {
        reply.send(ExitMsg::Refused(EndReason::NOROUTE)).await;
        return;
    }
    let what = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(SocketAddr::new(addr, port)),
    )
    .await
    {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            ExitMsg::Connected { stream, addr, ttl }
        }
        Ok(Err(e)) => ExitMsg::Refused(end_reason_for_io(e.kind())),
        Err(_) => ExitMsg::Refused(EndReason::TIMEOUT),
    };
    reply.send(what).await;
}

/// A RESOLVE: the addresses of a name. Reverse lookups are not done (the
/// system resolver has no interface for them here): answered as an error.
async fn resolve(params: Arc<ExitParams>, query: ResolveQuery, reply: Reply) {
    let answers = match query {
        ResolveQuery::Name(name) => match lookup(&params, &name, 0).await {
            Ok(addrs) => addrs
                .into_iter()
                .map(|addr| ResolvedAnswer::Ip {
                    addr,
                    ttl: LOOKUP_TTL,
                })
                .collect(),
            Err(EndReason::RESOLVEFAILED) => vec![ResolvedAnswer::NontransientError],
            Err(_) => vec![ResolvedAnswer::TransientError],
        },
        ResolveQuery::Reverse(_) => vec![ResolvedAnswer::NontransientError],
    };
    reply.send(ExitMsg::Resolved(answers)).await;
}

/// The addresses of `name`, with a lookup permit; the END reason if none.
async fn lookup(params: &ExitParams, name: &str, port: u16) -> Result<Vec<IpAddr>, EndReason> {
    let Ok(_permit) = params.lookups.acquire().await else {
        return Err(EndReason::RESOURCELIMIT);
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port))).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if addrs.is_empty() {
                Err(EndReason::RESOLVEFAILED)
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(_)) => Err(EndReason::RESOLVEFAILED),
        Err(_) => Err(EndReason::TIMEOUT),
    }
}

/// Read the destination, a chunk per permit.
async fn read_dest(mut r: OwnedReadHalf, in_flight: Arc<Semaphore>, reply: Reply) {
    loop {
        match in_flight.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        let mut buf = vec![0; DEST_CHUNK];
        let what = match r.read(&mut buf).await {
            Ok(0) => ExitMsg::End(None),
            Ok(n) => {
                buf.truncate(n);
                ExitMsg::Data(buf)
            }
            Err(e) => ExitMsg::End(Some(e.kind())),
        };
        let end = matches!(what, ExitMsg::End(_));
        if !reply.send(what).await || end {
            return;
        }
    }
}

/// Write the client's bytes to the destination until the node drops the
/// queue, then close our side.
async fn write_dest(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    full: Arc<AtomicBool>,
    reply: Reply,
) {
    while let Some(chunk) = rx.recv().await {
        if full.swap(false, Ordering::SeqCst) && !reply.send(ExitMsg::WriterReady).await {
            return;
        }
        if let Err(e) = w.write_all(&chunk).await {
            reply.send(ExitMsg::End(Some(e.kind()))).await;
            return;
        }
    }
    let _ = tokio::time::timeout(DEST_CLOSE_TIMEOUT, w.shutdown()).await;
}
