//! Downloads from the network's file server, directly or through a SOCKS
//! proxy, checked against the file's known SHA-256.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::TestnetError;
use crate::fileserver;
use crate::socks;

/// The status line and length of an HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpHead {
    /// The status code.
    pub status: u16,
    /// The Content-Length, when given.
    pub content_length: Option<u64>,
}

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Sends `GET path` on `stream` and hands the body to `body` chunk by
/// chunk (it returns `false` to stop early). Reads to the Content-Length,
/// or to end of stream when there is none.
pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
    mut body: impl FnMut(&[u8]) -> bool,
) -> Result<HttpHead, TestnetError> {
    let url = format!("http://{host}{path}");
    let err = |detail: String| TestnetError::Http {
        url: url.clone(),
        detail,
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut buf = Vec::with_capacity(MAX_HEAD);
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() >= MAX_HEAD {
            return Err(err("response head too large".into()));
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| err(e.to_string()))?;
        if n == 0 {
            return Err(err("connection closed before the response head".into()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head_text = String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default()).into_owned();
    let mut lines = head_text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err("malformed status line".into()))?;
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    let head = HttpHead {
        status,
        content_length,
    };
    let mut received: u64 = 0;
    let first = buf.get(head_end..).unwrap_or_default();
    if !first.is_empty() {
        received += first.len() as u64;
        if !body(first) {
            return Ok(head);
        }
    }
    let mut chunk = vec![0u8; 64 * 1024];
    while content_length.is_none_or(|len| received < len) {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| err(e.to_string()))?;
        if n == 0 {
            if let Some(len) = content_length {
                return Err(err(format!(
                    "connection closed after {received} of {len} body bytes"
                )));
            }
            break;
        }
        received += n as u64;
        if !body(chunk.get(..n).unwrap_or_default()) {
            break;
        }
    }
    Ok(head)
}

/// The outcome of one checked download.
#[derive(Debug, Clone)]
pub struct Download {
    /// Bytes of body received.
    pub bytes: u64,
    /// Time from opening the connection to the last byte.
    pub elapsed: Duration,
    /// Time from opening the connection to the first body byte.
    pub time_to_first_byte: Duration,
    /// SHA-256 of the body, hex.
    pub sha256: String,
}

impl Download {
    /// Throughput in MB/s (10^6 bytes per second).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Downloads the generated file of `size` bytes (with `seed`) from the file
/// server at `server`, through the SOCKS5 proxy `socks` when given, and
/// checks its SHA-256.
pub async fn fetch_file(
    server: SocketAddr,
    socks_proxy: Option<(SocketAddr, Option<(&str, &str)>)>,
    size: u64,
    seed: u64,
) -> Result<Download, TestnetError> {
    let start = Instant::now();
    let path = fileserver::file_path(size, seed);
    let stream = match socks_proxy {
        Some((proxy, auth)) => socks::connect(proxy, server, auth).await?,
        None => tokio::net::TcpStream::connect(server)
            .await
            .map_err(|e| TestnetError::Http {
                url: format!("http://{server}{path}"),
                detail: e.to_string(),
            })?,
    };
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut first_byte = None;
    let head = http_get(stream, &server.to_string(), &path, |chunk| {
        first_byte.get_or_insert_with(|| start.elapsed());
        bytes += chunk.len() as u64;
        hasher.update(chunk);
        true
    })
    .await?;
    let elapsed = start.elapsed();
    if head.status != 200 {
        return Err(TestnetError::Http {
            url: format!("http://{server}{path}"),
            detail: format!("status {}", head.status),
        });
    }
    let got = fileserver::hex(&hasher.finalize());
    let expected = fileserver::hex(&fileserver::expected_sha256(size, seed));
    if bytes != size || got != expected {
        return Err(TestnetError::DigestMismatch {
            size,
            got: format!("{got} ({bytes} bytes)"),
            expected,
        });
    }
    Ok(Download {
        bytes,
        elapsed,
        time_to_first_byte: first_byte.unwrap_or(elapsed),
        sha256: got,
    })
}
