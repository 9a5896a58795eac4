//! A minimal HTTP/1.0 client for DirPorts (dir-spec §4: documents are
//! served over plain HTTP), one request per connection, a hard limit on
//! the bytes read and a deadline on the whole exchange. [`exchange`] moves
//! the bootstrap's request and answer as bytes (it asks for compression
//! and decodes the answer itself, braid-dir's `fetch`); [`get`] is the
//! plain GET of one uncompressed document, for tools and tests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::FetchError;

/// Largest response head we read.
pub const MAX_HEAD: usize = 16 * 1024;

/// Bytes asked for per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// GET `path` from `addr`; the body as text. Fails on a status other than
/// 200, on a body over `max_body` bytes, and after `timeout`.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    max_body: usize,
    timeout: Duration,
) -> Result<String, FetchError> {
    match tokio::time::timeout(timeout, get_inner(addr, path, max_body)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout { addr, timeout }),
    }
}

/// Send `request` (a whole request head, as
/// [`braid_dir::fetch::Request::encode`] makes it) to the DirPort at
/// `addr` and read the answer until the server closes: the raw response,
/// at most `max_bytes` of it, for the bootstrap to parse and decode.
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    max_bytes: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    let io = |source| FetchError::Io { addr, source };
    let inner = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        stream.write_all(request).await.map_err(io)?;
        read_raw(addr, &mut stream, max_bytes).await
    };
    match tokio::time::timeout(timeout, inner).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout { addr, timeout }),
    }
}

/// Read until EOF, refusing more than `limit` bytes (at most one read past
/// it is buffered).
async fn read_raw<R: AsyncRead + Unpin>(
    addr: SocketAddr,
    stream: &mut R,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let io = |source| FetchError::Io { addr, source };
    let mut buf = Vec::new();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.len() > limit {
            return Err(FetchError::TooLarge { addr, limit });
        }
    }
}

async fn get_inner(addr: SocketAddr, path: &str, max_body: usize) -> Result<String, FetchError> {
    let io = |source| FetchError::Io { addr, source };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    read_response(addr, &mut stream, max_body).await
}

/// Read a response until EOF and split it as [`parse_response`] does,
/// refusing it as soon as it exceeds [`MAX_HEAD`] plus `max_body` bytes (so
/// at most one read more than that is ever buffered). Generic over the
/// reader for the fuzz target.
pub async fn read_response<R: AsyncRead + Unpin>(
    addr: SocketAddr,
    stream: &mut R,
    max_body: usize,
) -> Result<String, FetchError> {
    let limit = MAX_HEAD.saturating_add(max_body);
    let buf = read_raw(addr, stream, limit).await.map_err(|e| match e {
        FetchError::TooLarge { addr, .. } => FetchError::TooLarge {
            addr,
            limit: max_body,
        },
        e => e,
    })?;
    parse_response(addr, &buf, max_body)
}

/// Split a complete HTTP/1.0 response (as read until EOF) into status and
/// body; public for the fuzz target.
pub fn parse_response(addr: SocketAddr, buf: &[u8], max_body: usize) -> Result<String, FetchError> {
    let malformed = |detail: &str| FetchError::Malformed {
        addr,
        detail: detail.to_owned(),
    };
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    if head_end > MAX_HEAD {
        return Err(malformed("headers too long"));
    }
    let head = std::str::from_utf8(buf.get(..head_end).unwrap_or_default())
        .map_err(|_| malformed("headers are not UTF-8"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("bad status code"))?;
    let reason = parts.next().unwrap_or_default().trim().to_owned();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-encoding")
            && !matches!(value.trim(), "identity" | "")
        {
            return Err(malformed("compressed body, which was not asked for"));
        }
    }
    if status != 200 {
        return Err(FetchError::Status {
            addr,
            status,
            reason,
        });
    }
    let body = buf.get(head_end + 4..).unwrap_or_default();
    if body.len() > max_body {
        return Err(FetchError::TooLarge {
            addr,
            limit: max_body,
        });
    }
    String::from_utf8(body.to_vec()).map_err(|_| malformed("body is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn parses_ok_and_errors() {
        let ok = parse_response(addr(), b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody", 10).unwrap();
        assert_eq!(ok, "body");
        let e = parse_response(addr(), b"HTTP/1.0 404 Not found\r\n\r\n", 10).unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
        let e = parse_response(addr(), b"HTTP/1.0 200 OK\r\n\r\n0123456789x", 10).unwrap_err();
        assert!(matches!(e, FetchError::TooLarge { .. }));
        let e = parse_response(addr(), b"garbage", 10).unwrap_err();
        assert!(matches!(e, FetchError::Malformed { .. }));
        let e = parse_response(
            addr(),
            b"HTTP/1.0 200 OK\r\nContent-Encoding: deflate\r\n\r\nx",
            10,
        )
        .unwrap_err();
        assert!(matches!(e, FetchError::Malformed { .. }));
        let e = parse_response(addr(), b"SMTP 200 OK\r\n\r\n", 10).unwrap_err();
        assert!(matches!(e, FetchError::Malformed { .. }));
    }

    #[tokio::test]
    async fn fetches_from_a_server_and_stops_at_the_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).await.unwrap();
                assert!(req[..n].starts_with(b"GET /tor/x HTTP/1.0\r\n"));
                s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
                s.write_all(&vec![b'a'; 100_000]).await.unwrap();
            }
        });
        let body = get(addr, "/tor/x", 200_000, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(body.len(), 100_000);
        let e = get(addr, "/tor/x", 1000, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::TooLarge { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_endless_response_stops_at_the_limit() {
        let mut endless = tokio::io::repeat(b'a');
        let e = read_response(addr(), &mut endless, 100).await.unwrap_err();
        assert!(matches!(e, FetchError::TooLarge { limit: 100, .. }), "{e}");
    }

    #[tokio::test]
    async fn refused_and_silent_servers_fail_cleanly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = get(addr, "/", 10, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Io { .. }), "{e}");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let e = get(addr, "/", 10, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    }
}
