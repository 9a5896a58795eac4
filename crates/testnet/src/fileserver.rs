//! A loopback HTTP server of generated files with a known SHA-256.
//!
//! Tests and benchmarks download files through the Tor network and check
//! what arrives. Rather than storing files, the server generates them: the
//! file of `size` bytes for `seed` is a pseudo-random byte stream that
//! [`fill`] can produce at any offset, and whose digest [`expected_sha256`]
//! computes locally, so the downloader knows what to expect without asking.
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
//!
//! Sizes go up to 1 TiB. Unknown paths get 404, other methods 405, malformed
//! requests and sizes 400, request heads over 8 KiB 431. Every response
//! carries `Connection: close` and the server closes the connection after
//! it. The server only listens on IPv4 loopback addresses.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::io_errors::{is_disconnect, is_transient_accept_error};

/// Largest file served: 1 TiB.
const MAX_SIZE: u64 = 1 << 40;
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep reading (and discarding) after the response, so that
/// unread request bytes do not turn the close into a reset that could
/// destroy the response before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
/// Size of each write of a file body.
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
}

/// Why a request gets no file.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
}

impl Refusal {
    fn status(&self) -> &'static str {
        match self {
            Refusal::BadRequest => "400 Bad Request",
            Refusal::NotFound => "404 Not Found",
            Refusal::MethodNotAllowed => "405 Method Not Allowed",
            Refusal::HeadTooLarge => "431 Request Header Fields Too Large",
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
    let request = match head {
        Head::Closed => return Ok(()),
        Head::TooLarge => Err(Refusal::HeadTooLarge),
        Head::Truncated => Err(Refusal::BadRequest),
        Head::Complete(head) => parse_request(&head),
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
        Err(refusal) => {
            let body = format!("{}\n", refusal.status());
            let extra: &[&str] = if refusal == Refusal::MethodNotAllowed {
                &["Allow: GET, HEAD"]
            } else {
                &[]
            };
            let headers = response_head(refusal.status(), "text/plain", body.len() as u64, extra);
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
    /// The head, up to and excluding the blank line.
    Complete(Vec<u8>),
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
            buf.truncate(end);
            return Ok(Head::Complete(buf));
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
    for line in lines {
        let name = line
            .split_once(':')
            .map(|(name, _)| name)
            .unwrap_or_default();
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(Refusal::BadRequest);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (kind, size) = if let Some(size) = path.strip_prefix("/bytes/") {
        ("bytes", size)
    } else if let Some(size) = path.strip_prefix("/sha256/") {
        ("sha256", size)
    } else {
        return Err(Refusal::NotFound);
    };
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Refusal::MethodNotAllowed),
    };
    let size = parse_number(size).filter(|&s| s <= MAX_SIZE);
    let seed = parse_seed(query);
    let (Some(size), Some(seed)) = (size, seed) else {
        return Err(Refusal::BadRequest);
    };
    Ok(match kind {
        "bytes" => Request::Bytes { size, seed, head },
        _ => Request::Sha256 { size, seed, head },
    })
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
            Err(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            parse_request(b"GET /\xff HTTP/1.1"),
            Err(Refusal::BadRequest)
        );
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
