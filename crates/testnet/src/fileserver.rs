//! A loopback HTTP server of generated files with a known SHA-256.
//!
//! Tests and benchmarks download files through the Tor network and check
//! what arrives. Rather than storing files, the server generates them: the
//! file of `size` bytes for `seed` is a pseudo-random byte stream that
//! [`fill`] can produce at any offset, and whose digest [`expected_sha256`]
//! computes locally, so the downloader knows what to expect without asking.
//! Uploads work the other way round: the client sends a generated file, and
//! the server answers with the SHA-256 of what arrived and how long it took.
//!
//! # Content
//!
//! Byte `i` of a file is byte `i % 8` (little-endian) of the 64-bit word
//! `mix(key + (i / 8 + 1) × γ)`, where `key = mix(seed ^ 0x6a09e667f3bcc908)`,
//! `γ = 0x9e3779b97f4a7c15` and `mix` is the splitmix64 finalizer. All
//! arithmetic wraps. Files of the same seed are prefixes of each other, and
//! any range can be generated without the bytes before it, at several GB/s.
//!
//! # HTTP
//!
//! A deliberately small HTTP/1.1 server, one request per connection:
//!
//! * `GET /bytes/<size>[?seed=<n>]`: the file (seed 0 by default), as
//!   `application/octet-stream` with a `Content-Length`. No digest header is
//!   sent, since that would mean hashing the whole file before sending it.
//! * `GET /sha256/<size>[?seed=<n>]`: the file's SHA-256, 64 lowercase hex
//!   digits as `text/plain`, without a newline.
//! * `HEAD` of either: the same headers without the body.
//! * `POST /upload/<size>[?seed=<n>]` with `Content-Length: <size>`: the
//!   server reads exactly `size` body bytes, hashing them as they come (the
//!   body is never stored), and answers `text/plain` with one line:
//!
//!   ```text
//!   <sha256> <bytes> <micros>\n
//!   ```
//!
//!   the body's SHA-256 as 64 lowercase hex digits, the number of body bytes
//!   (always `size`), and the microseconds from the arrival of the first
//!   body byte to the arrival of the last (0 for an empty body or one that
//!   came in a single read), separated by single spaces and ended by a
//!   newline. The seed is not used by the server (the client knows what it
//!   sent and compares the digest with [`expected_sha256`]); it only shows
//!   in the log. A `Content-Length` other than `size` (or repeated with
//!   different values) gets 400, a missing one 411 Length Required, and any
//!   `Transfer-Encoding` (chunked bodies are not supported) 501 Not
//!   Implemented. A client that closes before sending the whole body, or
//!   sends nothing for 60 s, gets no response: the connection is dropped.
//!
//! Sizes go up to 1 TiB. Unknown paths get 404, other methods 405 (with an
//! `Allow` header: `GET, HEAD` for files and digests, `POST` for uploads),
//! malformed requests and sizes 400, request heads over 8 KiB 431. Every
//! response carries `Connection: close` and the server closes the connection
//! after it. The server only listens on IPv4 loopback addresses.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::io_errors::{is_disconnect, is_transient_accept_error};

/// Largest file served: 1 TiB.
const MAX_SIZE: u64 = 1 << 40;
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an upload may go without a single body byte arriving before the
/// server gives up on it. Generous: uploads cross a shaped Tor network.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to keep reading (and discarding) after the response, so that
/// unread request bytes do not turn the close into a reset that could
/// destroy the response before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
/// Size of each write of a file body, and of each read of an upload.
const WRITE_CHUNK: usize = 64 * 1024;

/// Weyl-sequence increment of splitmix64.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
/// Mixed into the seed so that seed `s` is not seed `s + γ` shifted.
const SEED_SALT: u64 = 0x6a09_e667_f3bc_c908;

/// The splitmix64 output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Word `index` (bytes `8 × index ..`) of the files for the seed whose key
/// is `key`.
fn word(key: u64, index: u64) -> [u8; 8] {
    mix(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA))).to_le_bytes()
}

/// Deterministic content: fills `buf` with bytes `offset..offset + buf.len()`
/// of the file for `seed`.
///
/// The content does not depend on the file's size (a shorter file is a
/// prefix of a longer one), so no size is needed. See the module
/// documentation for the exact definition.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let key = mix(seed ^ SEED_SALT);
    let mut index = offset / 8;
    let skip = (offset % 8) as usize;
    // An unaligned start: the tail of the first word.
    let mut rest = buf;
    if skip != 0 {
        let w = word(key, index);
        let head = w.get(skip..).unwrap_or_default();
        let n = head.len().min(rest.len());
        let (now, later) = rest.split_at_mut(n);
        now.copy_from_slice(head.get(..n).unwrap_or_default());
        rest = later;
        index = index.wrapping_add(1);
    }
    let mut words = rest.chunks_exact_mut(8);
    for out in &mut words {
        out.copy_from_slice(&word(key, index));
        index = index.wrapping_add(1);
    }
    // An unaligned end: the start of the last word.
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let w = word(key, index);
        tail.copy_from_slice(w.get(..tail.len()).unwrap_or_default());
    }
}

/// SHA-256 of the file of `size` bytes for `seed`, computed locally.
///
/// Takes time proportional to `size` (a few hundred MB/s or more).
pub fn expected_sha256(size: u64, seed: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; WRITE_CHUNK];
    let mut offset = 0;
    while offset < size {
        let n = chunk_len(size - offset);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        fill(seed, offset, chunk);
        hasher.update(&*chunk);
        offset += n as u64;
    }
    hasher.finalize().into()
}

/// Lowercase hexadecimal form of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The path to request for a file: `/bytes/<size>?seed=<seed>`.
pub fn file_path(size: u64, seed: u64) -> String {
    format!("/bytes/{size}?seed={seed}")
}

/// The path to post an upload of the file of `size` bytes for `seed` to:
/// `/upload/<size>?seed=<seed>`.
pub fn upload_path(size: u64, seed: u64) -> String {
    format!("/upload/{size}?seed={seed}")
}

/// Serves files on `listener` until the listener fails.
///
/// Spawns a task per connection. Transient accept errors (such as running
/// out of file descriptors) are logged and retried.
///
/// # Errors
///
/// Fails with [`io::ErrorKind::InvalidInput`] if the listener is not on an
/// IPv4 loopback address, and with the listener's error if accepting fails
/// for good.
pub async fn run_fileserver(listener: TcpListener) -> io::Result<()> {
    let local = listener.local_addr()?;
    if !matches!(local.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file server address {local} is not an IPv4 loopback address"),
        ));
    }
    debug!(%local, "file server listening");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_transient_accept_error(&e) => {
                warn!(error = %e, "file server: accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "file server: accept failed; stopping");
                return Err(e);
            }
        };
        tokio::spawn(async move {
            match serve(stream, peer).await {
                Ok(()) => {}
                Err(e) if is_disconnect(&e) => {
                    debug!(%peer, error = %e, "file server: client went away");
                }
                Err(e) => warn!(%peer, error = %e, "file server: connection failed"),
            }
        });
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// The file itself.
    Bytes { size: u64, seed: u64, head: bool },
    /// The file's digest.
    Sha256 { size: u64, seed: u64, head: bool },
    /// An upload of `size` bytes (its `Content-Length` checked), the file
    /// for `seed` if the client plays by the rules.
    Upload { size: u64, seed: u64 },
}

/// Why a request gets no file.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    BadRequest,
    NotFound,
    /// The methods the resource does support, for the `Allow` header.
    MethodNotAllowed {
        allow: &'static str,
    },
    LengthRequired,
    HeadTooLarge,
    NotImplemented,
}

impl Refusal {
    fn status(&self) -> &'static str {
        match self {
            Refusal::BadRequest => "400 Bad Request",
            Refusal::NotFound => "404 Not Found",
            Refusal::MethodNotAllowed { .. } => "405 Method Not Allowed",
            Refusal::LengthRequired => "411 Length Required",
            Refusal::HeadTooLarge => "431 Request Header Fields Too Large",
            Refusal::NotImplemented => "501 Not Implemented",
        }
    }
}

/// Serves the one request of a connection, then closes it.
async fn serve(mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => {
            debug!(%peer, "file server: request head timed out");
            return Ok(());
        }
    };
    // `early`: the start of a body, read along with the head.
    let (request, early) = match head {
        Head::Closed => return Ok(()),
        Head::TooLarge => (Err(Refusal::HeadTooLarge), Vec::new()),
        Head::Truncated => (Err(Refusal::BadRequest), Vec::new()),
        Head::Complete { head, rest } => (parse_request(&head), rest),
    };
    debug!(%peer, ?request, "file server: request");
    match request {
        Ok(Request::Bytes { size, seed, head }) => {
            let headers = response_head("200 OK", "application/octet-stream", size, &[]);
            stream.write_all(headers.as_bytes()).await?;
            if !head {
                send_file(&mut stream, size, seed).await?;
            }
        }
        Ok(Request::Sha256 { size, seed, head }) => {
            let headers = response_head("200 OK", "text/plain", 64, &[]);
            if head {
                stream.write_all(headers.as_bytes()).await?;
            } else {
                // Hashing a large file takes a while; keep it off the
                // runtime's worker threads.
                let digest = tokio::task::spawn_blocking(move || expected_sha256(size, seed))
                    .await
                    .map_err(io::Error::other)?;
                let response = headers + &hex(&digest);
                stream.write_all(response.as_bytes()).await?;
            }
        }
        Ok(Request::Upload { size, .. }) => {
            let Some(upload) = receive_upload(&mut stream, &early, size, BODY_TIMEOUT).await?
            else {
                debug!(%peer, size, "file server: upload incomplete; dropping the connection");
                return Ok(());
            };
            let body = upload.answer();
            debug!(%peer, answer = body.trim_end(), "file server: upload received");
            let headers = response_head("200 OK", "text/plain", body.len() as u64, &[]);
            stream.write_all((headers + &body).as_bytes()).await?;
        }
        Err(refusal) => {
            let body = format!("{}\n", refusal.status());
            let allow = match refusal {
                Refusal::MethodNotAllowed { allow } => Some(format!("Allow: {allow}")),
                _ => None,
            };
            let allow = allow.as_deref();
            let headers = response_head(
                refusal.status(),
                "text/plain",
                body.len() as u64,
                allow.as_slice(),
            );
            stream.write_all((headers + &body).as_bytes()).await?;
        }
    }
    stream.shutdown().await?;
    linger(&mut stream).await;
    Ok(())
}

/// Writes the body of the file of `size` bytes for `seed`.
async fn send_file(stream: &mut TcpStream, size: u64, seed: u64) -> io::Result<()> {
    let mut buf = vec![0; WRITE_CHUNK];
    let mut offset = 0;
    while offset < size {
        let n = chunk_len(size - offset);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        fill(seed, offset, chunk);
        stream.write_all(chunk).await?;
        offset += n as u64;
    }
    Ok(())
}

/// What an upload delivered.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    /// SHA-256 of the body.
    sha256: [u8; 32],
    /// Body bytes read.
    bytes: u64,
    /// Microseconds from the first body byte to the last.
    micros: u64,
}

impl Received {
    /// The response body: `<sha256 hex> <bytes> <micros>` and a newline.
    fn answer(&self) -> String {
        format!("{} {} {}\n", hex(&self.sha256), self.bytes, self.micros)
    }
}

/// Reads and hashes the `size` bytes of an upload's body, of which `early`
/// (what came in the same reads as the request head) is the start; bytes
/// past `size` are left alone. `None` if the client closes first, or sends
/// nothing for `stall`.
async fn receive_upload<R: AsyncRead + Unpin>(
    stream: &mut R,
    early: &[u8],
    size: u64,
    stall: Duration,
) -> io::Result<Option<Received>> {
    let mut hasher = Sha256::new();
    let early = early
        .get(..usize::try_from(size).map_or(early.len(), |s| s.min(early.len())))
        .unwrap_or_default();
    let mut received = early.len() as u64;
    hasher.update(early);
    // Bytes that came with the head arrived (to within the microseconds it
    // took to parse the head) now.
    let mut first = (!early.is_empty()).then(Instant::now);
    let mut last = first;
    let mut buf = vec![0; WRITE_CHUNK];
    while received < size {
        let chunk = buf
            .get_mut(..chunk_len(size - received))
            .unwrap_or_default();
        let n = match tokio::time::timeout(stall, stream.read(chunk)).await {
            Ok(n) => n?,
            Err(_) => {
                debug!(received, size, "file server: upload stalled");
                return Ok(None);
            }
        };
        if n == 0 {
            debug!(
                received,
                size, "file server: client closed in the middle of an upload"
            );
            return Ok(None);
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = Some(now);
        hasher.update(chunk.get(..n).unwrap_or_default());
        received += n as u64;
    }
    let micros = match (first, last) {
        (Some(first), Some(last)) => {
            u64::try_from(last.duration_since(first).as_micros()).unwrap_or(u64::MAX)
        }
        _ => 0,
    };
    Ok(Some(Received {
        sha256: hasher.finalize().into(),
        bytes: received,
        micros,
    }))
}

/// Length of the next chunk when `remaining` bytes are left.
fn chunk_len(remaining: u64) -> usize {
    usize::try_from(remaining).map_or(WRITE_CHUNK, |r| r.min(WRITE_CHUNK))
}

/// The status line and headers of a response.
fn response_head(status: &str, content_type: &str, length: u64, extra: &[&str]) -> String {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n"
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Reads and discards whatever the client still sends, until it closes or
/// [`LINGER`] passes.
async fn linger(stream: &mut TcpStream) {
    let mut buf = [0; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The outcome of reading a request head.
#[derive(Debug)]
enum Head {
    /// The client closed without sending anything.
    Closed,
    /// The client closed in the middle of the head.
    Truncated,
    /// No end of the head within [`MAX_HEAD`] bytes.
    TooLarge,
    /// The head, up to and excluding the blank line, and the bytes after
    /// the blank line that came in the same reads (the start of a body).
    Complete { head: Vec<u8>, rest: Vec<u8> },
}

/// Reads a request head, up to the blank line that ends it.
async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut buf = Vec::new();
    let mut chunk = [0; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if end + 4 > MAX_HEAD {
                return Ok(Head::TooLarge);
            }
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Ok(Head::Complete { head: buf, rest });
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Head::Closed
            } else {
                Head::Truncated
            });
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Parses a request head (without its final blank line).
fn parse_request(head: &[u8]) -> Result<Request, Refusal> {
    let head = std::str::from_utf8(head).map_err(|_| Refusal::BadRequest)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::BadRequest);
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Refusal::BadRequest);
    }
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || !target.starts_with('/') {
        return Err(Refusal::BadRequest);
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or_default();
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(Refusal::BadRequest);
        }
        headers.push((name, value.trim_matches([' ', '\t'])));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (kind, size) = if let Some(size) = path.strip_prefix("/bytes/") {
        ("bytes", size)
    } else if let Some(size) = path.strip_prefix("/sha256/") {
        ("sha256", size)
    } else if let Some(size) = path.strip_prefix("/upload/") {
        ("upload", size)
    } else {
        return Err(Refusal::NotFound);
    };
    let head = match (kind, method) {
        ("upload", "POST") => false,
        ("upload", _) => return Err(Refusal::MethodNotAllowed { allow: "POST" }),
        (_, "GET") => false,
        (_, "HEAD") => true,
        _ => return Err(Refusal::MethodNotAllowed { allow: "GET, HEAD" }),
    };
    let size = parse_number(size).filter(|&s| s <= MAX_SIZE);
    let seed = parse_seed(query);
    let (Some(size), Some(seed)) = (size, seed) else {
        return Err(Refusal::BadRequest);
    };
    Ok(match kind {
        "bytes" => Request::Bytes { size, seed, head },
        "sha256" => Request::Sha256 { size, seed, head },
        _ => {
            check_body_length(&headers, size)?;
            Request::Upload { size, seed }
        }
    })
}

/// Checks that the headers announce a plain body of `size` bytes: no
/// `Transfer-Encoding` (501), a `Content-Length` (411) equal to `size` and
/// not contradicted by another one (400).
fn check_body_length(headers: &[(&str, &str)], size: u64) -> Result<(), Refusal> {
    let named = |wanted: &'static str| {
        headers
            .iter()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| *value)
    };
    if named("transfer-encoding").next().is_some() {
        return Err(Refusal::NotImplemented);
    }
    let mut lengths = named("content-length");
    let Some(length) = lengths.next() else {
        return Err(Refusal::LengthRequired);
    };
    if lengths.any(|other| other != length) || parse_number(length) != Some(size) {
        return Err(Refusal::BadRequest);
    }
    Ok(())
}

/// The seed in a query string (`seed=<n>`, other parameters ignored); 0 if
/// absent, `None` if malformed or given twice.
fn parse_seed(query: &str) -> Option<u64> {
    let mut seeds = query
        .split('&')
        .filter_map(|param| param.strip_prefix("seed="));
    let seed = seeds.next().map_or(Some(0), parse_number);
    if seeds.next().is_some() {
        return None;
    }
    seed
}

/// A plain decimal number: digits only, no sign.
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;
