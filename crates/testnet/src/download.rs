//! Downloads from and uploads to the network's file server, directly or
//! through a SOCKS proxy, checked against the file's known SHA-256.

use std::io;
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
/// Largest response body accepted for an upload (one short line).
const MAX_UPLOAD_ANSWER: usize = 1024;
/// Size of each write of an upload's body.
const UPLOAD_CHUNK: usize = 64 * 1024;

/// Sends `GET path` on `stream` and hands the body to `body` chunk by
/// chunk (it returns `false` to stop early). Reads to the Content-Length,
/// or to end of stream when there is none.
pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
    body: impl FnMut(&[u8]) -> bool,
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
    read_response(&mut stream, &url, body).await
}

/// Reads an HTTP response from `stream` (the answer to a request for
/// `url`) and hands the body to `body` chunk by chunk (it returns `false`
/// to stop early). Reads to the Content-Length, or to end of stream when
/// there is none.
async fn read_response<R: AsyncRead + Unpin>(
    stream: &mut R,
    url: &str,
    mut body: impl FnMut(&[u8]) -> bool,
) -> Result<HttpHead, TestnetError> {
    let err = |detail: String| TestnetError::Http {
        url: url.to_string(),
        detail,
    };
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

/// The outcome of one checked upload.
///
/// Two throughputs: [`Upload::mb_per_s`] is the client's view (from the
/// connection's opening to the server's answer, less the connect time), and
/// [`Upload::server_mb_per_s`] the server's (from the first body byte's
/// arrival to the last's), which excludes connection setup, the time the
/// first bytes take to cross the network and the answer's trip back.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Bytes of body sent (and received by the server).
    pub bytes: u64,
    /// Time from starting to open the connection to receiving the server's
    /// answer.
    pub elapsed: Duration,
    /// Time that opening the connection took (TCP, or SOCKS and the Tor
    /// circuit behind it), included in `elapsed`.
    pub connected: Duration,
    /// The server's time from the first body byte to the last (to the
    /// microsecond).
    pub server_elapsed: Duration,
    /// SHA-256 of the body as the server computed it, hex.
    pub sha256: String,
}

impl Upload {
    /// Throughput in MB/s (10^6 bytes per second) from the end of the
    /// connection set-up to the server's answer.
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.saturating_sub(self.connected).as_secs_f64();
        self.bytes as f64 / 1e6 / secs.max(1e-9)
    }

    /// Throughput in MB/s as the server saw it: bytes over the time from the
    /// first body byte to the last. Excludes connection setup and the
    /// answer's trip back; meaningless for a body that arrived in one read
    /// (the time is then 0).
    pub fn server_mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.server_elapsed.as_secs_f64().max(1e-9)
    }
}

/// Uploads the generated file of `size` bytes (with `seed`) to the file
/// server at `server`, through the SOCKS5 proxy `socks` when given, and
/// checks the SHA-256 and length the server reports for it.
///
/// The body goes out in 64 KiB writes while the answer is awaited, so that a
/// refusal (such as a 400) ends the upload at once. A server that answers
/// before the whole body was sent is an error.
pub async fn upload_file(
    server: SocketAddr,
    socks_proxy: Option<(SocketAddr, Option<(&str, &str)>)>,
    size: u64,
    seed: u64,
) -> Result<Upload, TestnetError> {
    let path = fileserver::upload_path(size, seed);
    let url = format!("http://{server}{path}");
    let http_err = |detail: String| TestnetError::Http {
        url: url.clone(),
        detail,
    };
    let start = Instant::now();
    let mut stream = match socks_proxy {
        Some((proxy, auth)) => socks::connect(proxy, server, auth).await?,
        None => tokio::net::TcpStream::connect(server)
            .await
            .map_err(|e| http_err(e.to_string()))?,
    };
    let connected = start.elapsed();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let (response, sent) = {
        let (mut reader, mut writer) = stream.split();
        let send = send_upload(&mut writer, head.as_bytes(), size, seed);
        let receive = read_response(&mut reader, &url, |chunk| {
            answer.extend_from_slice(chunk);
            answer.len() <= MAX_UPLOAD_ANSWER
        });
        tokio::pin!(send, receive);
        // `None` while the body is still being sent.
        let mut sent: Option<io::Result<()>> = None;
        let response = loop {
            tokio::select! {
                r = &mut send, if sent.is_none() => sent = Some(r),
                r = &mut receive => break r,
            }
        };
        (response, sent)
    };
    let elapsed = start.elapsed();
    let head = match (response, &sent) {
        (Ok(head), _) => head,
        (Err(e), Some(Err(send))) => {
            return Err(http_err(format!("sending the body failed: {send} ({e})")));
        }
        (Err(e), _) => return Err(e),
    };
    let text = String::from_utf8_lossy(&answer);
    if head.status != 200 {
        return Err(http_err(format!(
            "status {}: {}",
            head.status,
            text.trim_end()
        )));
    }
    match sent {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(http_err(format!("sending the body failed: {e}"))),
        None => return Err(http_err("answered before the whole body was sent".into())),
    }
    if answer.len() > MAX_UPLOAD_ANSWER {
        return Err(http_err(format!(
            "answer longer than {MAX_UPLOAD_ANSWER} bytes"
        )));
    }
    let (got, bytes, server_elapsed) = parse_upload_answer(&text)
        .ok_or_else(|| http_err(format!("malformed answer {:?}", text.as_ref())))?;
    let expected = fileserver::hex(&fileserver::expected_sha256(size, seed));
    if bytes != size || got != expected {
        return Err(TestnetError::DigestMismatch {
            size,
            got: format!("{got} ({bytes} bytes)"),
            expected,
        });
    }
    Ok(Upload {
        bytes,
        elapsed,
        connected,
        server_elapsed,
        sha256: got,
    })
}

/// Writes the request head `head`, then the body: the file of `size` bytes
/// for `seed`, in [`UPLOAD_CHUNK`] pieces.
async fn send_upload<W: AsyncWrite + Unpin>(
    stream: &mut W,
    head: &[u8],
    size: u64,
    seed: u64,
) -> io::Result<()> {
    stream.write_all(head).await?;
    let mut buf = vec![0; UPLOAD_CHUNK];
    let mut offset = 0;
    while offset < size {
        let n = usize::try_from(size - offset).map_or(UPLOAD_CHUNK, |r| r.min(UPLOAD_CHUNK));
        let chunk = buf.get_mut(..n).unwrap_or_default();
        fileserver::fill(seed, offset, chunk);
        stream.write_all(chunk).await?;
        offset += n as u64;
    }
    stream.flush().await
}

/// Parses the file server's answer to an upload, `<sha256 hex> <bytes>
/// <micros>` and a newline, into the digest, the byte count and the time.
fn parse_upload_answer(text: &str) -> Option<(String, u64, Duration)> {
    let line = text.strip_suffix('\n')?;
    let mut fields = line.split(' ');
    let (Some(digest), Some(bytes), Some(micros), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    let is_hex = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let number = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    if !is_hex {
        return None;
    }
    Some((
        digest.to_string(),
        number(bytes)?,
        Duration::from_micros(number(micros)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Starts the real file server on an ephemeral loopback port.
    async fn file_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(fileserver::run_fileserver(listener));
        addr
    }

    /// A server that reads one upload's head and `size` body bytes, then
    /// sends `response` as is and closes.
    async fn scripted_server(size: usize, response: String) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0; 4096];
            loop {
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
                    && got.len() >= end + 4 + size
                {
                    break;
                }
                let n = s.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "client closed early");
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(response.as_bytes()).await.unwrap();
        });
        addr
    }

    fn ok_response(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn uploads_to_the_file_server() {
        let addr = file_server().await;
        for (size, seed) in [(0, 0), (1, 5), (3 * 65_536 + 5, 6), (2_000_000, 7)] {
            let u = upload_file(addr, None, size, seed).await.unwrap();
            assert_eq!(u.bytes, size);
            assert_eq!(
                u.sha256,
                fileserver::hex(&fileserver::expected_sha256(size, seed))
            );
            assert!(u.connected <= u.elapsed);
            assert!(u.server_elapsed <= u.elapsed, "{u:?}");
            if size > 0 {
                assert!(u.mb_per_s() > 0.0);
            }
        }
    }

    #[tokio::test]
    async fn fetches_from_the_file_server() {
        let addr = file_server().await;
        let d = fetch_file(addr, None, 300_000, 2).await.unwrap();
        assert_eq!(d.bytes, 300_000);
        assert_eq!(
            d.sha256,
            fileserver::hex(&fileserver::expected_sha256(300_000, 2))
        );
    }

    #[tokio::test]
    async fn a_refused_upload_stops_at_once() {
        let addr = file_server().await;
        // Over the server's limit: refused with 400 right after the head,
        // while the client has a terabyte left to send.
        let upload = upload_file(addr, None, (1 << 40) + 1, 0);
        let err = tokio::time::timeout(Duration::from_secs(10), upload)
            .await
            .expect("the upload went on after the refusal")
            .unwrap_err();
        assert!(
            matches!(&err, TestnetError::Http { detail, .. } if detail.starts_with("status 400")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn wrong_answers_are_errors() {
        let size = 100_000;
        let good = fileserver::hex(&fileserver::expected_sha256(size as u64, 3));
        let bad = fileserver::hex(&fileserver::expected_sha256(size as u64, 4));
        let cases = [
            (ok_response(&format!("{bad} 100000 10\n")), "digest"),
            (ok_response(&format!("{good} 99999 10\n")), "digest"),
            (ok_response(&format!("{good} 100000\n")), "http"),
            (ok_response(&"x".repeat(2000)), "http"),
            (
                "HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\nbroke".to_string(),
                "http",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_string(),
                "http",
            ),
        ];
        for (response, kind) in cases {
            let addr = scripted_server(size, response.clone()).await;
            let err = upload_file(addr, None, size as u64, 3).await.unwrap_err();
            match kind {
                "digest" => assert!(
                    matches!(err, TestnetError::DigestMismatch { .. }),
                    "{response:?}: {err}"
                ),
                _ => assert!(
                    matches!(err, TestnetError::Http { .. }),
                    "{response:?}: {err}"
                ),
            }
        }
        // The same server with the right answer is fine.
        let addr = scripted_server(size, ok_response(&format!("{good} 100000 1500000\n"))).await;
        let u = upload_file(addr, None, size as u64, 3).await.unwrap();
        assert_eq!(u.server_elapsed, Duration::from_micros(1_500_000));
        assert!((u.server_mb_per_s() - 0.1 / 1.5).abs() < 1e-9);
    }

    #[test]
    fn upload_answers_and_rates() {
        let digest = "ab".repeat(32);
        assert_eq!(
            parse_upload_answer(&format!("{digest} 1000 25\n")),
            Some((digest.clone(), 1000, Duration::from_micros(25)))
        );
        for bad in [
            format!("{digest} 1000 25"),
            format!("{digest} 1000 25 7\n"),
            format!("{digest}  1000 25\n"),
            format!("{digest} +1000 25\n"),
            format!("{digest} 1000 -1\n"),
            format!("{} 1000 25\n", "AB".repeat(32)),
            format!("{} 1000 25\n", "ab".repeat(31)),
            "\n".to_string(),
        ] {
            assert_eq!(parse_upload_answer(&bad), None, "{bad:?}");
        }
        let u = Upload {
            bytes: 4_000_000,
            elapsed: Duration::from_secs(3),
            connected: Duration::from_secs(1),
            server_elapsed: Duration::from_millis(1600),
            sha256: String::new(),
        };
        assert!((u.mb_per_s() - 2.0).abs() < 1e-9);
        assert!((u.server_mb_per_s() - 2.5).abs() < 1e-9);
    }
}
