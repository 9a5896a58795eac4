//! A small client for tor's control port (control-spec): cookie
//! authentication, GETINFO, SETEVENTS and asynchronous events.
//!
//! A reader task splits what tor sends into replies (to the command that is
//! waiting) and asynchronous `650` events (into a bounded queue; events that
//! do not fit are counted and dropped rather than buffered without limit).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::error::TestnetError;

/// One reply or event: its status code and lines (data blocks included,
/// without their terminating `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit status (250, 552, 650, ...).
    pub code: u16,
    /// The text of each line after the code and separator.
    pub lines: Vec<String>,
}

/// How many events may wait to be read before new ones are dropped.
const EVENT_QUEUE: usize = 8192;
/// How long a command waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// An authenticated control connection.
#[derive(Debug)]
pub struct ControlConn {
    addr: SocketAddr,
    writer: OwnedWriteHalf,
    replies: mpsc::Receiver<Reply>,
    events: mpsc::Receiver<Reply>,
    dropped_events: Arc<AtomicU64>,
}

impl ControlConn {
    /// Connects to `addr` and authenticates with the cookie in
    /// `cookie_file` (`CookieAuthentication 1`).
    pub async fn connect(addr: SocketAddr, cookie_file: &Path) -> Result<Self, TestnetError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| control_err(addr, e.to_string()))?;
        let (read, writer) = stream.into_split();
        let (reply_tx, replies) = mpsc::channel(16);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let dropped_events = Arc::new(AtomicU64::new(0));
        let dropped = dropped_events.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            while let Ok(Some(reply)) = read_reply(&mut reader).await {
                if reply.code == 650 {
                    if event_tx.try_send(reply).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                } else if reply_tx.send(reply).await.is_err() {
                    break;
                }
            }
        });
        let mut conn = ControlConn {
            addr,
            writer,
            replies,
            events,
            dropped_events,
        };
        let cookie = std::fs::read(cookie_file)
            .map_err(|e| TestnetError::io("reading control cookie", cookie_file, e))?;
        let hex = crate::consensus::hex_upper(&cookie);
        conn.command(&format!("AUTHENTICATE {hex}")).await?;
        Ok(conn)
    }

    /// Sends one command line and returns its reply; a non-2xx reply is an
    /// error.
    pub async fn command(&mut self, line: &str) -> Result<Reply, TestnetError> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| control_err(self.addr, e.to_string()))?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.replies.recv())
            .await
            .map_err(|_| control_err(self.addr, format!("no reply to {line:.40}")))?
            .ok_or_else(|| control_err(self.addr, "connection closed".into()))?;
        if !(200..300).contains(&reply.code) {
            return Err(control_err(
                self.addr,
                format!("{line:.40}: {} {}", reply.code, reply.lines.join(" ")),
            ));
        }
        Ok(reply)
    }

    /// `GETINFO key`: the value, with multi-line values joined by `\n`.
    pub async fn getinfo(&mut self, key: &str) -> Result<String, TestnetError> {
        let reply = self.command(&format!("GETINFO {key}")).await?;
        let prefix = format!("{key}=");
        let mut value = Vec::new();
        let mut in_value = false;
        for line in &reply.lines {
            if let Some(v) = line.strip_prefix(&prefix) {
                in_value = true;
                if !v.is_empty() {
                    value.push(v.to_string());
                }
            } else if line == "OK" {
                in_value = false;
            } else if in_value {
                value.push(line.clone());
            }
        }
        Ok(value.join("\n"))
    }

    /// Subscribes to `events` (replacing earlier subscriptions).
    pub async fn set_events(&mut self, events: &[&str]) -> Result<(), TestnetError> {
        self.command(&format!("SETEVENTS {}", events.join(" ")))
            .await
            .map(drop)
    }

    /// The next queued event, waiting at most `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Reply> {
        tokio::time::timeout(wait, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every event queued right now.
    pub fn drain_events(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }
}

fn control_err(addr: SocketAddr, detail: String) -> TestnetError {
    TestnetError::Control {
        addr: addr.to_string(),
        detail,
    }
}

/// Longest line accepted from tor.
const MAX_LINE: usize = 1 << 20;

/// Reads one complete reply: `NNN-` lines continue it, `NNN+` starts a
/// data block ending in `.`, `NNN ` ends it (control-spec §2.3).
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Reply>> {
    let mut lines = Vec::new();
    loop {
        let Some(line) = read_line(reader).await? else {
            return Ok(None);
        };
        let (Some(digits), Some(sep)) = (line.get(..3), line.as_bytes().get(3)) else {
            continue;
        };
        let code = digits.parse().unwrap_or(0);
        let text = line.get(4..).unwrap_or_default().to_string();
        match sep {
            b' ' => {
                lines.push(text);
                return Ok(Some(Reply { code, lines }));
            }
            b'-' => lines.push(text),
            b'+' => {
                lines.push(text);
                loop {
                    let Some(data) = read_line(reader).await? else {
                        return Ok(Some(Reply { code, lines }));
                    };
                    if data == "." {
                        break;
                    }
                    let data = data.strip_prefix('.').unwrap_or(&data).to_string();
                    lines.push(data);
                }
            }
            _ => {}
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

use tokio::io::AsyncReadExt as _;

/// Parses `KEY=VALUE` words of an event or status line into pairs; words
/// without `=` are skipped.
pub fn keywords(line: &str) -> Vec<(&str, &str)> {
    line.split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

/// The value of `key` among pairs from [`keywords`].
pub fn keyword<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_and_data_blocks() {
        let input = b"250-version=0.4.9\r\n250+circuit-status=\r\n1 BUILT a,b PURPOSE=X\r\n..dotted\r\n.\r\n250 OK\r\n650 CIRC_BW ID=1 READ=2\r\n";
        let mut reader = BufReader::new(&input[..]);
        let r = read_reply(&mut reader).await.unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(
            r.lines,
            vec![
                "version=0.4.9",
                "circuit-status=",
                "1 BUILT a,b PURPOSE=X",
                ".dotted",
                "OK"
            ]
        );
        let e = read_reply(&mut reader).await.unwrap().unwrap();
        assert_eq!(e.code, 650);
        assert_eq!(keywords(&e.lines[0]), vec![("ID", "1"), ("READ", "2")]);
        assert_eq!(keyword(&keywords(&e.lines[0]), "READ"), Some("2"));
        assert_eq!(keyword(&keywords(&e.lines[0]), "WRITTEN"), None);
        assert!(read_reply(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn getinfo_against_a_scripted_peer() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cookie = std::env::temp_dir().join(format!("braid-cookie-{}", std::process::id()));
        std::fs::write(&cookie, [0xAB; 32]).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            let auth = read_line(&mut r).await.unwrap().unwrap();
            assert_eq!(auth, format!("AUTHENTICATE {}", "AB".repeat(32)));
            w.write_all(b"250 OK\r\n").await.unwrap();
            let q = read_line(&mut r).await.unwrap().unwrap();
            assert_eq!(q, "GETINFO circuit-status");
            w.write_all(
                b"650 STREAM 1 NEW 0 x:1\r\n250+circuit-status=\r\nA\r\nB\r\n.\r\n250 OK\r\n",
            )
            .await
            .unwrap();
            let q = read_line(&mut r).await.unwrap().unwrap();
            assert_eq!(q, "GETINFO nope");
            w.write_all(b"552 Unrecognized key \"nope\"\r\n")
                .await
                .unwrap();
        });
        let mut conn = ControlConn::connect(addr, &cookie).await.unwrap();
        assert_eq!(conn.getinfo("circuit-status").await.unwrap(), "A\nB");
        let event = conn.next_event(Duration::from_secs(1)).await.unwrap();
        assert_eq!(event.lines, vec!["STREAM 1 NEW 0 x:1"]);
        let err = conn.getinfo("nope").await.unwrap_err();
        assert!(err.to_string().contains("552"), "{err}");
        std::fs::remove_file(&cookie).unwrap();
    }
}
