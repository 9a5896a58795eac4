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
mod tests {
    use super::*;

    /// Starts a file server on an ephemeral loopback port.
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(run_fileserver(listener));
        addr
    }

    /// Sends `request` as is, half-closes, and returns the status code, the headers
    /// (lowercased names) and the body, read until the server closes.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&response[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (name, value) = l.split_once(':').unwrap();
                (name.to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        (status, headers, response[end + 4..].to_vec())
    }

    fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
    }

    #[test]
    fn fill_is_deterministic_and_offset_consistent() {
        let mut full = vec![0; 1000];
        fill(7, 0, &mut full);
        let mut again = vec![0; 1000];
        fill(7, 0, &mut again);
        assert_eq!(full, again);
        for offset in 0..40 {
            for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 100, 901] {
                let mut part = vec![0; len];
                fill(7, offset as u64, &mut part);
                assert_eq!(
                    part,
                    full[offset..offset + len],
                    "offset {offset} len {len}"
                );
            }
        }
        // Other seeds give other bytes, not a shifted copy.
        let mut other = vec![0; 1000];
        fill(8, 0, &mut other);
        assert_ne!(other, full);
        assert!(!full.windows(16).any(|w| w == &other[..16]));
        // Far offsets work without wrapping problems.
        let mut far = [0; 13];
        fill(1, u64::MAX - 5, &mut far);
        fill(1, (1 << 40) - 3, &mut far);
        // Not all zero, nor constant.
        assert!(full.iter().any(|&b| b != full[0]));
    }

    #[test]
    fn expected_sha256_matches_fill() {
        for size in [0, 1, 7, 8, 9, 100_000, 3 * 65_536 + 5] {
            let mut bytes = vec![0; size];
            fill(3, 0, &mut bytes);
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            assert_eq!(expected_sha256(size as u64, 3), digest, "size {size}");
        }
        assert_eq!(
            hex(&expected_sha256(0, 0)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(file_path(1000, 7), "/bytes/1000?seed=7");
        assert_eq!(parse_seed(""), Some(0));
        assert_eq!(parse_seed("seed=12"), Some(12));
        assert_eq!(parse_seed("x=1&seed=12"), Some(12));
        assert_eq!(parse_seed("seed=-1"), None);
        assert_eq!(parse_seed("seed=1&seed=2"), None);
        assert_eq!(parse_seed("seed="), None);
    }

    #[test]
    fn parses_requests() {
        let parse = |s: &str| parse_request(s.as_bytes());
        assert_eq!(
            parse("GET /bytes/10 HTTP/1.1\r\nHost: x"),
            Ok(Request::Bytes {
                size: 10,
                seed: 0,
                head: false
            })
        );
        assert_eq!(
            parse("HEAD /sha256/10?seed=4 HTTP/1.0"),
            Ok(Request::Sha256 {
                size: 10,
                seed: 4,
                head: true
            })
        );
        assert_eq!(
            parse(&format!("GET /bytes/{MAX_SIZE} HTTP/1.1")),
            Ok(Request::Bytes {
                size: MAX_SIZE,
                seed: 0,
                head: false
            })
        );
        for bad in [
            "",
            "GET",
            "GET /bytes/10",
            "GET /bytes/10 HTTP/2.0",
            "GET  /bytes/10 HTTP/1.1",
            "GET /bytes/10 HTTP/1.1\r\nno colon",
            "GET /bytes/ HTTP/1.1",
            "GET /bytes/+10 HTTP/1.1",
            "GET /bytes/1x HTTP/1.1",
            "GET /bytes/99999999999999999999999 HTTP/1.1",
            "GET /bytes/10?seed=x HTTP/1.1",
            "get /bytes/10 HTTP/1.1",
            "GET bytes/10 HTTP/1.1",
        ] {
            assert_eq!(parse(bad), Err(Refusal::BadRequest), "{bad:?}");
        }
        assert_eq!(
            parse(&format!("GET /bytes/{} HTTP/1.1", MAX_SIZE + 1)),
            Err(Refusal::BadRequest)
        );
        assert_eq!(parse("GET / HTTP/1.1"), Err(Refusal::NotFound));
        assert_eq!(parse("GET /bytes HTTP/1.1"), Err(Refusal::NotFound));
        assert_eq!(
            parse("POST /bytes/1 HTTP/1.1"),
            Err(Refusal::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert_eq!(
            parse_request(b"GET /\xff HTTP/1.1"),
            Err(Refusal::BadRequest)
        );
    }

    #[test]
    fn parses_uploads() {
        let parse = |s: &str| parse_request(s.as_bytes());
        let upload = |size, seed| Ok(Request::Upload { size, seed });
        assert_eq!(
            parse("POST /upload/10?seed=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 10"),
            upload(10, 3)
        );
        assert_eq!(
            parse("POST /upload/0 HTTP/1.0\r\ncontent-length:\t0 "),
            upload(0, 0)
        );
        // A repeated header with the same value is fine.
        assert_eq!(
            parse("POST /upload/5 HTTP/1.1\r\nContent-Length: 5\r\nCONTENT-LENGTH: 5"),
            upload(5, 0)
        );
        assert_eq!(
            parse(&format!(
                "POST /upload/{MAX_SIZE} HTTP/1.1\r\nContent-Length: {MAX_SIZE}"
            )),
            upload(MAX_SIZE, 0)
        );
        for bad in [
            "POST /upload/10 HTTP/1.1\r\nContent-Length: 11",
            "POST /upload/10 HTTP/1.1\r\nContent-Length: +10",
            "POST /upload/10 HTTP/1.1\r\nContent-Length: ",
            "POST /upload/10 HTTP/1.1\r\nContent-Length: 10, 10",
            "POST /upload/10 HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 9",
            "POST /upload/x HTTP/1.1\r\nContent-Length: 10",
            "POST /upload/10?seed=y HTTP/1.1\r\nContent-Length: 10",
        ] {
            assert_eq!(parse(bad), Err(Refusal::BadRequest), "{bad:?}");
        }
        let too_big = MAX_SIZE + 1;
        assert_eq!(
            parse(&format!(
                "POST /upload/{too_big} HTTP/1.1\r\nContent-Length: {too_big}"
            )),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            parse("POST /upload/10 HTTP/1.1\r\nHost: x"),
            Err(Refusal::LengthRequired)
        );
        assert_eq!(
            parse("POST /upload/10 HTTP/1.1\r\nTransfer-Encoding: chunked"),
            Err(Refusal::NotImplemented)
        );
        assert_eq!(
            parse("POST /upload/10 HTTP/1.1\r\nContent-Length: 10\r\ntransfer-encoding: chunked"),
            Err(Refusal::NotImplemented)
        );
        assert_eq!(
            parse("GET /upload/10 HTTP/1.1"),
            Err(Refusal::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(parse("POST /uploads HTTP/1.1"), Err(Refusal::NotFound));
        assert_eq!(upload_path(1000, 7), "/upload/1000?seed=7");
    }

    /// The head and body of an upload of the file of `size` bytes for `seed`.
    fn upload_request(size: u64, seed: u64) -> Vec<u8> {
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n",
            upload_path(size, seed)
        )
        .into_bytes();
        let start = request.len();
        request.resize(start + size as usize, 0);
        fill(seed, 0, &mut request[start..]);
        request
    }

    /// Checks an upload's answer against the file of `size` bytes for `seed`
    /// and returns the microseconds it reports.
    fn check_answer(
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        size: u64,
        seed: u64,
    ) -> u64 {
        assert_eq!(status, 200);
        assert_eq!(header(headers, "content-type"), Some("text/plain"));
        let body = std::str::from_utf8(body).unwrap();
        assert_eq!(
            header(headers, "content-length"),
            Some(body.len().to_string().as_str())
        );
        let line = body.strip_suffix('\n').unwrap();
        assert!(!line.contains('\n'), "{body:?}");
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{body:?}");
        assert_eq!(fields[0], hex(&expected_sha256(size, seed)));
        assert_eq!(fields[1], size.to_string());
        fields[2].parse().unwrap()
    }

    #[tokio::test]
    async fn receives_uploads() {
        let addr = server().await;
        // Large (many reads), small (the body comes with the head) and empty.
        for (size, seed) in [(1_000_000, 7), (100, 3), (0, 0)] {
            let (status, headers, body) = exchange(addr, &upload_request(size, seed)).await;
            let micros = check_answer(status, &headers, &body, size, seed);
            if size == 0 {
                assert_eq!(micros, 0);
            }
        }
        // A different body gets a different digest: the server hashes what
        // arrives, whatever the seed in the path says.
        let mut request = upload_request(1000, 1);
        let body_start = request.len() - 1000;
        fill(2, 0, &mut request[body_start..]);
        let (status, _, body) = exchange(addr, &request).await;
        assert_eq!(status, 200);
        let want = format!("{} 1000 ", hex(&expected_sha256(1000, 2)));
        assert!(String::from_utf8(body).unwrap().starts_with(&want));
    }

    #[tokio::test]
    async fn receives_uploads_in_small_pieces() {
        let addr = server().await;
        let size = 200_000;
        let request = upload_request(size, 9);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        // Pieces of varying sizes, some splitting the head, one holding the
        // end of the head and the start of the body; a pause in the middle of
        // the body must show in the server's timing.
        let pieces = [1, 7, 100, 1500, 3, 64, 999];
        let mut at = 0;
        let mut writes = 0;
        while at < request.len() {
            let n = pieces[writes % pieces.len()].min(request.len() - at);
            stream.write_all(&request[at..at + n]).await.unwrap();
            at += n;
            writes += 1;
            if writes % 50 == 0 {
                tokio::task::yield_now().await;
            }
            if writes == 300 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        assert!(writes > 300);
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&response[..end]).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let micros = check_answer(200, &headers, &response[end + 4..], size, 9);
        assert!(micros >= 30_000, "{micros} µs despite a 30 ms pause");
    }

    #[tokio::test]
    async fn refuses_bad_uploads() {
        let addr = server().await;
        let post = |extra: &str| {
            format!("POST /upload/10?seed=1 HTTP/1.1\r\nHost: x\r\n{extra}\r\n0123456789")
                .into_bytes()
        };
        let (status, _, _) = exchange(addr, &post("Content-Length: 9\r\n")).await;
        assert_eq!(status, 400);
        let (status, _, _) = exchange(addr, &post("")).await;
        assert_eq!(status, 411);
        let (status, _, _) = exchange(addr, &post("Transfer-Encoding: chunked\r\n")).await;
        assert_eq!(status, 501);
        let (status, headers, _) = exchange(addr, &get("/upload/10")).await;
        assert_eq!(status, 405);
        assert_eq!(header(&headers, "allow"), Some("POST"));
        let (status, headers, _) = exchange(addr, &post("Content-Length: 10\r\n")[1..]).await;
        assert_eq!(status, 405, "OST is not a method of /upload");
        assert_eq!(header(&headers, "allow"), Some("POST"));
        // The same request with the right length is fine.
        let (status, _, body) = exchange(addr, &post("Content-Length: 10\r\n")).await;
        assert_eq!(status, 200);
        let want = format!("{} 10 ", hex(&Sha256::digest(b"0123456789")));
        assert!(String::from_utf8(body).unwrap().starts_with(&want));
    }

    #[tokio::test]
    async fn survives_uploads_that_stop_early() {
        let addr = server().await;
        let request = upload_request(1_000_000, 4);
        let head_len = request.len() - 1_000_000;
        // Half of the body, then a half-close: the server drops the
        // connection without an answer, and does not wait for the rest.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&request[..head_len + 500_000])
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("the server keeps an abandoned upload open")
            .unwrap();
        assert!(
            response.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&response)
        );
        // A client that vanishes after a little of the body.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request[..head_len + 1000]).await.unwrap();
        drop(stream);
        // The server still answers.
        let (status, headers, body) = exchange(addr, &upload_request(5000, 4)).await;
        check_answer(status, &headers, &body, 5000, 4);
    }

    #[tokio::test]
    async fn upload_bodies_with_early_bytes_stalls_and_extra_bytes() {
        let mut all = vec![0; 10_000];
        fill(5, 0, &mut all);
        let digest = |bytes: &[u8]| -> [u8; 32] { Sha256::digest(bytes).into() };
        // Part with the head, the rest from the stream, then bytes past the
        // body that are not read.
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&all[3000..]).await.unwrap();
        client.write_all(b"next request").await.unwrap();
        let got = receive_upload(&mut server, &all[..3000], 10_000, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.sha256, digest(&all));
        assert_eq!(got.bytes, 10_000);
        let mut after = [0; 12];
        server.read_exact(&mut after).await.unwrap();
        assert_eq!(&after, b"next request");
        // Everything with the head, and more than the body.
        let got = receive_upload(&mut server, &all, 4000, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.sha256, digest(&all[..4000]));
        assert_eq!((got.bytes, got.micros), (4000, 0));
        assert_eq!(
            got.answer(),
            format!("{} 4000 0\n", hex(&digest(&all[..4000])))
        );
        // A stall ends the upload without an answer.
        client.write_all(&all[..10]).await.unwrap();
        let started = Instant::now();
        let got = receive_upload(&mut server, &[], 100, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(got, None);
        assert!(started.elapsed() >= Duration::from_millis(200));
        // So does the end of the stream.
        drop(client);
        let got = receive_upload(&mut server, &[], 100, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got, None);
    }

    #[tokio::test]
    async fn serves_files_and_digests() {
        let addr = server().await;
        let expected = hex(&expected_sha256(1_000_000, 7));

        let (status, headers, body) = exchange(addr, &get(&file_path(1_000_000, 7))).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-length"), Some("1000000"));
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(body.len(), 1_000_000);
        assert_eq!(hex(&Sha256::digest(&body)), expected);

        let (status, headers, body) = exchange(addr, &get("/sha256/1000000?seed=7")).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("text/plain"));
        assert_eq!(String::from_utf8(body).unwrap(), expected);

        // The default seed is 0.
        let (status, _, body) = exchange(addr, &get("/bytes/100")).await;
        assert_eq!(status, 200);
        let mut want = vec![0; 100];
        fill(0, 0, &mut want);
        assert_eq!(body, want);

        // HEAD: headers only.
        let request = b"HEAD /bytes/5000 HTTP/1.0\r\n\r\n";
        let (status, headers, body) = exchange(addr, request).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-length"), Some("5000"));
        assert!(body.is_empty());

        let (status, _, body) = exchange(addr, &get("/bytes/0")).await;
        assert_eq!(status, 200);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn refuses_bad_requests() {
        let addr = server().await;
        let (status, _, _) = exchange(addr, b"\x16\x03\x01 garbage\r\n\r\n").await;
        assert_eq!(status, 400);
        let (status, _, _) = exchange(addr, &get("/nothing/here")).await;
        assert_eq!(status, 404);
        let (status, _, _) = exchange(addr, &get("/bytes/2000000000000")).await;
        assert_eq!(status, 400);
        let (status, headers, _) = exchange(addr, b"DELETE /bytes/1 HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, 405);
        assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));

        // A request head over 8 KiB.
        let mut big = b"GET /bytes/1 HTTP/1.1\r\nX-Filler: ".to_vec();
        big.resize(MAX_HEAD + 1000, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        let (status, _, _) = exchange(addr, &big).await;
        assert_eq!(status, 431);

        // A client that closes mid-head gets a 400 and the server survives.
        let (status, _, _) = exchange(addr, b"GET /bytes/1 HT").await;
        assert_eq!(status, 400);
        let (status, _, _) = exchange(addr, &get("/bytes/1")).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn survives_clients_that_leave_early() {
        let addr = server().await;
        // Ask for a large file and hang up after a little of it.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&get("/bytes/100000000")).await.unwrap();
        let mut buf = [0; 1000];
        stream.read_exact(&mut buf).await.unwrap();
        drop(stream);
        // Connect and close without a word.
        drop(TcpStream::connect(addr).await.unwrap());
        let (status, _, body) = exchange(addr, &get("/bytes/10")).await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), 10);
    }
}
