//! A minimal HTTP/1.0 client for authorities' DirPorts (dir-spec §4:
//! descriptors are uploaded with `POST /tor/`, documents fetched with
//! `GET`): one request per connection, the answer read until the
//! authority closes, bounded in size and time. Unlike the client's fetcher
//! it returns every status with its reason and body, since an authority's
//! refusal is the thing to log.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::error::PublishError;

/// Largest response head we accept.
const MAX_HEAD: usize = 16 * 1024;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Reason phrase: C-tor puts its verdict here ("Router descriptor
    /// was too large.", ...).
    pub reason: String,
    /// Header fields, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (bytes that are not UTF-8 replaced).
    pub body: String,
}

impl HttpAnswer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send `method path` with `body` (if any) to `addr`; the answer, whatever
/// its status. Fails on a connection error, an answer longer than
/// `max_body` (plus the head), a malformed answer, or after `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    max_body: usize,
    timeout: Duration,
) -> Result<HttpAnswer, PublishError> {
    tokio::time::timeout(timeout, request_inner(addr, method, path, body, max_body))
        .await
        .unwrap_or(Err(PublishError::Timeout { addr, timeout }))
}

async fn request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    max_body: usize,
) -> Result<HttpAnswer, PublishError> {
    let io = |source| PublishError::Io { addr, source };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes).await.map_err(io)?;
    let limit = MAX_HEAD.saturating_add(max_body);
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.len() > limit {
            return Err(PublishError::Malformed {
                addr,
                detail: format!("answer longer than {limit} bytes"),
            });
        }
    }
    parse_answer(addr, &buf)
}

/// Parse a complete HTTP/1.x answer (as read until the peer closed).
pub fn parse_answer(addr: SocketAddr, buf: &[u8]) -> Result<HttpAnswer, PublishError> {
    let malformed = |detail: &str| PublishError::Malformed {
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
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or_default().starts_with("HTTP/1.") {
        return Err(malformed("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| malformed("bad status code"))?;
    let reason = parts.next().unwrap_or_default().trim().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = String::from_utf8_lossy(buf.get(head_end + 4..).unwrap_or_default()).into_owned();
    Ok(HttpAnswer {
        status,
        reason,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;
    use tokio::net::TcpListener;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn answers_of_every_status_parse() {
        let a = parse_answer(
            addr(),
            b"HTTP/1.0 400 Router descriptor was too large.\r\nDate: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.status, 400);
        assert_eq!(a.reason, "Router descriptor was too large.");
        assert_eq!(a.header("date"), Some("x"));
        assert_eq!(a.body, "");
        let a = parse_answer(
            addr(),
            b"HTTP/1.0 200 OK\r\nX-Descriptor-Not-New: Yes\r\n\r\nbody\xff",
        )
        .unwrap();
        assert_eq!(a.header("X-Descriptor-Not-New"), Some("Yes"));
        assert_eq!(a.body, "body\u{fffd}");
        for bad in [
            &b"garbage"[..],
            b"SMTP 200 OK\r\n\r\n",
            b"HTTP/1.0 abc OK\r\n\r\n",
            b"HTTP/1.0 99 x\r\n\r\n",
            b"HTTP/1.0 200 \xff\r\n\r\n",
        ] {
            assert!(matches!(
                parse_answer(addr(), bad),
                Err(PublishError::Malformed { .. })
            ));
        }
    }

    #[tokio::test]
    async fn posts_with_a_length_and_bounds_the_answer_and_the_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // 1: a normal answer, after checking the request.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0_u8; 4096];
            let mut n = 0;
            while !req[..n].ends_with(b"hello") {
                n += s.read(&mut req[n..]).await.unwrap();
            }
            let req = String::from_utf8_lossy(&req[..n]).into_owned();
            assert!(req.starts_with("POST /tor/ HTTP/1.0\r\n"), "{req}");
            assert!(req.contains("\r\nContent-Length: 5\r\n"), "{req}");
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
            drop(s);
            // 2: too long an answer.
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(&vec![b'a'; 100_000]).await;
            drop(s);
            // 3: never answers.
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let t = Duration::from_secs(5);
        let a = request(server, "POST", "/tor/", Some(b"hello"), 100, t)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        let e = request(server, "GET", "/x", None, 100, t)
            .await
            .unwrap_err();
        assert!(matches!(e, PublishError::Malformed { .. }), "{e}");
        let e = request(server, "GET", "/x", None, 100, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, PublishError::Timeout { .. }), "{e}");
        // Port 1: no test server can be there (a port freed here could be
        // taken by a test running beside this one).
        let dead: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let e = request(dead, "GET", "/x", None, 100, t).await.unwrap_err();
        assert!(matches!(e, PublishError::Io { .. }), "{e}");
    }
}
