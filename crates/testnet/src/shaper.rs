//! A userspace link shaper: rate caps and one-way delay for one relay.
//!
//! Kernel traffic control (`tc`/netem) is not available where the test
//! network runs, so link emulation is done by a small TCP proxy that sits in
//! front of one relay and sees *all* of its traffic:
//!
//! * **Inbound connections.** The relay advertises ORPort `P` in the
//!   consensus but really listens on `R` ([`ShaperConfig::target`]). The
//!   shaper listens on `P` and forwards every connection that is not an HTTP
//!   `CONNECT` (in practice, a TLS ClientHello) to `R`.
//! * **Outbound connections.** The relay is configured with
//!   `HTTPSProxy 127.0.0.1:P`, so for each connection it opens it first sends
//!   `CONNECT host:port HTTP/1.0` to the shaper. The shaper checks that the
//!   destination is an IPv4 loopback address, connects to it, answers
//!   `200 Connection established` and then forwards bytes.
//!
//! Either way, bytes flowing *toward* the relay are direction **in** and bytes
//! flowing *from* the relay are direction **out**, and every connection of a
//! shaper draws on the same pair of token buckets, one per direction. That
//! makes the rate cap a property of the relay's "access link", like a real
//! uplink/downlink, rather than of each connection.
//!
//! # Pipeline
//!
//! Each direction of each connection is a reader and a writer joined by an
//! unbounded channel whose content is bounded in bytes by a semaphore:
//!
//! ```text
//!   socket A ─read─▶ [queue cap] ─▶ [token bucket] ─stamp─▶ channel ─▶ sleep until stamp + delay ─write─▶ socket B
//! ```
//!
//! The reader reads at most 16 KiB at a time, reserves that many bytes of
//! queue space (so it stops reading, and TCP flow control pushes back on the
//! sender, once the queue is full), waits for the shared token bucket (the
//! link's serialization time) and stamps the chunk with the time it left.
//! The writer holds every chunk until its stamp plus the one-way delay (the
//! propagation time) and then writes it. Because several chunks can be "on
//! the wire" at once, a delay does not reduce throughput below the rate as
//! long as the queue cap exceeds rate × delay; the cap is
//! `max(256 KiB, 2 × rate × delay)`, clamped to 64 MiB (8 MiB for a delayed
//! direction without a rate cap, 256 KiB for an undelayed one). The bucket
//! lets a burst of `max(16 KiB, rate / 50)` bytes through at once.
//!
//! When a side reaches end-of-file, the writer of that direction drains its
//! queue and then shuts down the write half of the other socket, so
//! half-closed connections behave as they would without the shaper. The
//! connection ends when both directions are done; an I/O error in either
//! direction drops the whole connection (and only that connection).
//!
//! # Loopback only
//!
//! The shaper refuses to listen on, forward to, or `CONNECT` to anything but
//! IPv4 loopback (`127.0.0.0/8`).
//!
//! # Not modelled
//!
//! The TCP handshake itself is not delayed (the shaper accepts and connects
//! instantly), so connection setup is one round trip shorter than on a real
//! link with the same delay. Loss and jitter are not modelled.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::io_errors::{is_disconnect, is_transient_accept_error};

/// Largest chunk read from a socket at once.
const CHUNK: usize = 16 * 1024;
/// Largest `CONNECT` request head (request line and headers) accepted.
const MAX_CONNECT_HEAD: usize = 8 * 1024;
/// How long a client may take to send its whole `CONNECT` request head.
const CONNECT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Smallest token-bucket burst, in bytes.
const MIN_BURST: u64 = 16 * 1024;
/// Smallest per-connection, per-direction queue cap, in bytes.
const MIN_QUEUE: u64 = 256 * 1024;
/// Largest per-connection, per-direction queue cap, in bytes.
const MAX_QUEUE: u64 = 64 * 1024 * 1024;
/// Queue cap used when a direction has a delay but no rate cap.
const UNLIMITED_DELAYED_QUEUE: u64 = 8 * 1024 * 1024;

const CONNECT_PREFIX: &[u8] = b"CONNECT ";
const REPLY_ESTABLISHED: &[u8] = b"HTTP/1.0 200 Connection established\r\n\r\n";
const REPLY_BAD_REQUEST: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\n";
const REPLY_FORBIDDEN: &[u8] = b"HTTP/1.0 403 Forbidden\r\n\r\n";
const REPLY_BAD_GATEWAY: &[u8] = b"HTTP/1.0 502 Bad Gateway\r\n\r\n";

/// Link properties of one relay.
///
/// "in" = bytes flowing toward the relay, "out" = bytes flowing from the
/// relay. The default shapes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShapeSpec {
    /// Bytes per second toward the relay; `None` = unlimited. A rate of zero
    /// is treated as one byte per second.
    pub rate_in: Option<u64>,
    /// Bytes per second from the relay; `None` = unlimited. A rate of zero
    /// is treated as one byte per second.
    pub rate_out: Option<u64>,
    /// One-way delay added to bytes flowing toward the relay, in microseconds.
    pub delay_in_us: u64,
    /// One-way delay added to bytes flowing from the relay, in microseconds.
    pub delay_out_us: u64,
}

/// Everything one shaper needs to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShaperConfig {
    /// Name for logs, e.g. the relay nickname.
    pub name: String,
    /// The relay's real ORPort address that direct (non-`CONNECT`)
    /// connections go to. Must be an IPv4 loopback address.
    pub target: SocketAddr,
    /// The link to emulate.
    pub spec: ShapeSpec,
}

/// Runs a shaper on `listener` until the listener fails.
///
/// Spawns a task per accepted connection; errors on a connection are logged
/// and affect only that connection. Transient accept errors (such as running
/// out of file descriptors) are logged and retried.
///
/// # Errors
///
/// Fails with [`io::ErrorKind::InvalidInput`] if the listener or
/// `config.target` is not an IPv4 loopback address, and with the listener's
/// error if accepting fails for good.
pub async fn run_shaper(listener: TcpListener, config: ShaperConfig) -> io::Result<()> {
    let local = listener.local_addr()?;
    if !is_loopback_v4(local.ip()) {
        return Err(not_loopback("shaper listen address", local));
    }
    if !is_loopback_v4(config.target.ip()) {
        return Err(not_loopback("shaper target", config.target));
    }
    let shaper = Arc::new(Shaper::new(config));
    debug!(
        shaper = %shaper.name,
        %local,
        target = %shaper.target,
        spec = ?shaper.spec,
        "shaper listening"
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_transient_accept_error(&e) => {
                warn!(shaper = %shaper.name, error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                warn!(shaper = %shaper.name, error = %e, "accept failed; shaper stops");
                return Err(e);
            }
        };
        let shaper = Arc::clone(&shaper);
        tokio::spawn(async move {
            let id = shaper.next_id.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = shaper.handle(stream, peer, id).await {
                if is_disconnect(&e) {
                    debug!(shaper = %shaper.name, conn = id, %peer, error = %e, "connection dropped");
                } else {
                    warn!(shaper = %shaper.name, conn = id, %peer, error = %e, "connection failed");
                }
            }
        });
    }
}

/// State shared by all connections of one shaper.
#[derive(Debug)]
struct Shaper {
    name: String,
    target: SocketAddr,
    spec: ShapeSpec,
    /// Token bucket for bytes toward the relay; `None` = unlimited.
    bucket_in: Option<Mutex<TokenBucket>>,
    /// Token bucket for bytes from the relay; `None` = unlimited.
    bucket_out: Option<Mutex<TokenBucket>>,
    /// Connection counter, for logs.
    next_id: AtomicU64,
}

/// Which way bytes flow, relative to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Toward the relay.
    In,
    /// From the relay.
    Out,
}

impl Direction {
    /// The other way.
    fn reverse(self) -> Direction {
        match self {
            Direction::In => Direction::Out,
            Direction::Out => Direction::In,
        }
    }
}

/// How a connection turned out to be used, once its first bytes are known.
#[derive(Debug)]
enum Preamble {
    /// The peer closed without sending anything.
    Empty,
    /// An inbound connection to the relay; holds the bytes read so far.
    Direct(Vec<u8>),
    /// The relay's own outgoing connection; holds the whole buffer read so
    /// far, which starts with `CONNECT `.
    Connect(Vec<u8>),
}

impl Shaper {
    fn new(config: ShaperConfig) -> Shaper {
        let bucket = |rate: Option<u64>| rate.map(|r| Mutex::new(TokenBucket::new(r)));
        Shaper {
            bucket_in: bucket(config.spec.rate_in),
            bucket_out: bucket(config.spec.rate_out),
            name: config.name,
            target: config.target,
            spec: config.spec,
            next_id: AtomicU64::new(0),
        }
    }

    /// Serves one accepted connection to the end.
    async fn handle(&self, mut client: TcpStream, peer: SocketAddr, id: u64) -> io::Result<()> {
        client.set_nodelay(true)?;
        match sniff(&mut client).await? {
            Preamble::Empty => {
                debug!(shaper = %self.name, conn = id, %peer, "closed before sending anything");
                Ok(())
            }
            Preamble::Direct(initial) => {
                let relay = TcpStream::connect(self.target).await?;
                relay.set_nodelay(true)?;
                debug!(shaper = %self.name, conn = id, %peer, target = %self.target, "inbound connection");
                let (bytes_in, bytes_out) =
                    self.relay(client, relay, Direction::In, initial).await?;
                debug!(shaper = %self.name, conn = id, bytes_in, bytes_out, "inbound connection closed");
                Ok(())
            }
            Preamble::Connect(buf) => self.handle_connect(client, buf, peer, id).await,
        }
    }

    /// Serves the relay's own outgoing connection, which starts with an HTTP
    /// `CONNECT` request of which `buf` holds the beginning.
    async fn handle_connect(
        &self,
        mut client: TcpStream,
        buf: Vec<u8>,
        peer: SocketAddr,
        id: u64,
    ) -> io::Result<()> {
        let head = tokio::time::timeout(CONNECT_HEAD_TIMEOUT, read_connect_head(&mut client, buf))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "CONNECT request head timed out")
            })??;
        let Some((head_len, buf)) = head else {
            debug!(shaper = %self.name, conn = id, %peer, "CONNECT request head too long or truncated");
            let _ = client.write_all(REPLY_BAD_REQUEST).await;
            return Ok(());
        };
        let dest = match parse_connect_head(buf.get(..head_len).unwrap_or_default()) {
            Ok(dest) => dest,
            Err(ConnectError::Malformed) => {
                debug!(shaper = %self.name, conn = id, %peer, "malformed CONNECT request");
                client.write_all(REPLY_BAD_REQUEST).await?;
                return Ok(());
            }
            Err(ConnectError::Forbidden(what)) => {
                warn!(shaper = %self.name, conn = id, %peer, dest = %what, "refusing CONNECT to a non-loopback destination");
                client.write_all(REPLY_FORBIDDEN).await?;
                return Ok(());
            }
        };
        let remote = match TcpStream::connect(dest).await {
            Ok(remote) => remote,
            Err(e) => {
                warn!(shaper = %self.name, conn = id, %dest, error = %e, "CONNECT destination unreachable");
                client.write_all(REPLY_BAD_GATEWAY).await?;
                return Ok(());
            }
        };
        remote.set_nodelay(true)?;
        client.write_all(REPLY_ESTABLISHED).await?;
        debug!(shaper = %self.name, conn = id, %peer, %dest, "outbound connection");
        let initial = buf.get(head_len..).unwrap_or_default().to_vec();
        // Here the accepted socket is the relay itself.
        let (bytes_out, bytes_in) = self.relay(client, remote, Direction::Out, initial).await?;
        debug!(shaper = %self.name, conn = id, %dest, bytes_in, bytes_out, "outbound connection closed");
        Ok(())
    }

    /// Forwards bytes between `a` and `b` until both directions are done.
    ///
    /// Bytes from `a` to `b` flow in direction `ab`, the others the opposite
    /// way. `initial` holds bytes already read from `a`, to be sent first.
    ///
    /// Returns the number of bytes forwarded a→b and b→a.
    async fn relay(
        &self,
        a: TcpStream,
        b: TcpStream,
        ab: Direction,
        initial: Vec<u8>,
    ) -> io::Result<(u64, u64)> {
        let (a_read, a_write) = a.into_split();
        let (b_read, b_write) = b.into_split();
        tokio::try_join!(
            self.pipe(a_read, b_write, ab, initial),
            self.pipe(b_read, a_write, ab.reverse(), Vec::new()),
        )
    }

    /// One direction of one connection: reads from `from`, shapes, writes
    /// to `to`, and shuts `to` down after `from` reaches end-of-file.
    ///
    /// Returns the number of bytes forwarded.
    async fn pipe(
        &self,
        from: OwnedReadHalf,
        to: OwnedWriteHalf,
        dir: Direction,
        initial: Vec<u8>,
    ) -> io::Result<u64> {
        let (bucket, rate, delay_us) = match dir {
            Direction::In => (&self.bucket_in, self.spec.rate_in, self.spec.delay_in_us),
            Direction::Out => (&self.bucket_out, self.spec.rate_out, self.spec.delay_out_us),
        };
        let delay = Duration::from_micros(delay_us);
        let cap = queue_cap(rate, delay);
        let space = Arc::new(Semaphore::new(cap));
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = read_side(from, tx, space, cap, bucket.as_ref(), initial);
        let writer = write_side(to, rx, delay);
        let ((), written) = tokio::try_join!(reader, writer)?;
        Ok(written)
    }
}

/// A chunk on its way through a pipeline: when it left the link's token
/// bucket, its bytes, and the queue space it holds.
type Chunk = (Instant, Vec<u8>, OwnedSemaphorePermit);

/// Reader half of a pipeline; returns at end-of-file.
async fn read_side(
    mut from: OwnedReadHalf,
    tx: mpsc::UnboundedSender<Chunk>,
    space: Arc<Semaphore>,
    cap: usize,
    bucket: Option<&Mutex<TokenBucket>>,
    initial: Vec<u8>,
) -> io::Result<()> {
    let mut pending = Some(initial).filter(|b| !b.is_empty());
    let mut buf = vec![0; CHUNK];
    loop {
        let data = match pending.take() {
            Some(data) => data,
            None => {
                let n = from.read(&mut buf).await?;
                if n == 0 {
                    // Dropping `tx` tells the writer to drain and shut down.
                    return Ok(());
                }
                // A copy of exactly the bytes read, so that the queue cap
                // (counted in bytes) also bounds the memory used.
                buf.get(..n).unwrap_or_default().to_vec()
            }
        };
        // Wait for room in the queue; this is the backpressure that keeps
        // memory bounded while chunks wait out their delay.
        let permits = u32::try_from(data.len().min(cap)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&space).acquire_many_owned(permits).await else {
            return Ok(());
        };
        // Then for the link: the shared bucket decides when the chunk has
        // been "serialized" onto the wire.
        let departure = match bucket {
            Some(bucket) => {
                let at = bucket
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .reserve(data.len(), Instant::now());
                sleep_until(at).await;
                at
            }
            None => Instant::now(),
        };
        if tx.send((departure, data, permit)).is_err() {
            // The writer is gone, which only happens when it failed; its
            // error is what the connection reports.
            return Ok(());
        }
    }
}

/// Writer half of a pipeline; returns the number of bytes written once the
/// reader is done and everything queued has been written.
async fn write_side(
    mut to: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    delay: Duration,
) -> io::Result<u64> {
    let mut written = 0u64;
    while let Some((departure, data, permit)) = rx.recv().await {
        if !delay.is_zero() {
            sleep_until(later(departure, delay)).await;
        }
        to.write_all(&data).await?;
        written = written.saturating_add(data.len() as u64);
        drop(permit);
    }
    to.shutdown().await?;
    Ok(written)
}

/// Queue cap in bytes for one direction of one connection.
fn queue_cap(rate: Option<u64>, delay: Duration) -> usize {
    let cap = match rate {
        _ if delay.is_zero() => MIN_QUEUE,
        Some(rate) => {
            let in_flight = u128::from(rate.max(1)).saturating_mul(delay.as_micros()) / 1_000_000;
            u64::try_from(in_flight.saturating_mul(2)).unwrap_or(u64::MAX)
        }
        None => UNLIMITED_DELAYED_QUEUE,
    };
    usize::try_from(cap.clamp(MIN_QUEUE, MAX_QUEUE)).unwrap_or(usize::MAX)
}

/// A token bucket that lends: a reservation may take the balance below
/// zero, and the caller waits until the debt is paid off. Concurrent users
/// thus queue up in reservation order and together get exactly the rate.
#[derive(Debug)]
struct TokenBucket {
    /// Bytes per second.
    rate: f64,
    /// Largest balance, in bytes.
    burst: f64,
    /// Current balance, in bytes; negative while in debt.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    fn new(rate: u64) -> TokenBucket {
        let rate = rate.max(1);
        let burst = (rate / 50).max(MIN_BURST) as f64;
        TokenBucket {
            rate: rate as f64,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// Takes `bytes` tokens and returns when they may be sent.
    fn reserve(&mut self, bytes: usize, now: Instant) -> Instant {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        if now > self.updated {
            self.updated = now;
        }
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            return now;
        }
        let wait = Duration::try_from_secs_f64(-self.tokens / self.rate).unwrap_or(Duration::MAX);
        later(now, wait)
    }
}

/// Sleeps until `t`, without involving the timer if `t` has passed.
async fn sleep_until(t: Instant) {
    if t > Instant::now() {
        tokio::time::sleep_until(t).await;
    }
}

/// `t + d`, or a year after `t` if that is not representable.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(t)
}

/// Reads the first bytes of a connection, until it is clear whether it
/// starts with `CONNECT `.
async fn sniff(stream: &mut TcpStream) -> io::Result<Preamble> {
    let mut buf = Vec::new();
    let mut chunk = vec![0; CHUNK];
    loop {
        let seen = buf.len().min(CONNECT_PREFIX.len());
        let prefix = buf.get(..seen).unwrap_or_default();
        if !CONNECT_PREFIX.starts_with(prefix) {
            return Ok(Preamble::Direct(buf));
        }
        if seen == CONNECT_PREFIX.len() {
            return Ok(Preamble::Connect(buf));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Preamble::Empty
            } else {
                Preamble::Direct(buf)
            });
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Reads until the end of the `CONNECT` request head.
///
/// Returns the length of the head (including the blank line) and all bytes
/// read, or `None` if the head is longer than [`MAX_CONNECT_HEAD`] or the
/// peer stopped sending before finishing it.
async fn read_connect_head(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
) -> io::Result<Option<(usize, Vec<u8>)>> {
    let mut chunk = vec![0; CHUNK];
    loop {
        if let Some(end) = find_head_end(&buf) {
            return Ok((end <= MAX_CONNECT_HEAD).then_some((end, buf)));
        }
        if buf.len() >= MAX_CONNECT_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Length of the HTTP head in `buf` up to and including `\r\n\r\n`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Why a `CONNECT` request was refused.
#[derive(Debug, PartialEq, Eq)]
enum ConnectError {
    /// Not a well-formed `CONNECT host:port HTTP/1.x` request.
    Malformed,
    /// Well-formed, but the destination (given) is not IPv4 loopback.
    Forbidden(String),
}

/// Parses a `CONNECT` request head and returns its destination, which must
/// be an IPv4 literal in `127.0.0.0/8`.
fn parse_connect_head(head: &[u8]) -> Result<SocketAddrV4, ConnectError> {
    let head = std::str::from_utf8(head).map_err(|_| ConnectError::Malformed)?;
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some("CONNECT"), Some(authority), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ConnectError::Malformed);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ConnectError::Malformed);
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(ConnectError::Malformed);
    };
    let port: u16 = port.parse().map_err(|_| ConnectError::Malformed)?;
    match host.parse::<Ipv4Addr>() {
        Ok(ip) if ip.is_loopback() && port != 0 => Ok(SocketAddrV4::new(ip, port)),
        _ => Err(ConnectError::Forbidden(authority.to_string())),
    }
}

/// Whether `ip` is in `127.0.0.0/8`.
fn is_loopback_v4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_loopback())
}

fn not_loopback(what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} {addr} is not an IPv4 loopback address"),
    )
}

#[cfg(test)]
mod tests;
