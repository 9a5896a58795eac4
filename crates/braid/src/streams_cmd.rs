//! `braid streams`: the connected streams of a running `braid proxy
//! --metrics ADDR`, with the tunnel carrying each (`GET /streams`), and
//! `braid streams migrate APP`, which moves one to another tunnel of its
//! isolation key to the same exit (`POST /streams/migrate/APP`, Braid
//! live stream migration, proposal 001 §4).

use std::net::SocketAddr;
use std::time::Duration;

use braid_client::FetchError;
use braid_client::client::{MigrateOutcome, MigrateTo, StreamView};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cli::{StreamsArgs, StreamsCmd};

/// Errors of `braid streams`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamsError {
    #[error("cannot reach the proxy's metrics port: {0}")]
    Fetch(#[from] FetchError),
    #[error("the proxy's answer is not what this braid expects: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot ask the proxy at {addr}: {source}")]
    Post {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the proxy did not move stream {app}: {why}")]
    Refused { app: u64, why: String },
}

/// Largest answer read.
const MAX_ANSWER: usize = 4 << 20;
/// How long the proxy may take (a migration may build a tunnel).
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: StreamsArgs) -> Result<(), StreamsError> {
    match args.command {
        None => {
            let body =
                braid_client::http::get(args.metrics, "/streams", MAX_ANSWER, TIMEOUT).await?;
            if args.json {
                print(&body);
                return Ok(());
            }
            let streams: Vec<StreamView> = serde_json::from_str(&body)?;
            print(&render(&streams));
        }
        Some(StreamsCmd::Migrate { app, to }) => {
            let to = match to {
                MigrateTo::Any => "any".to_owned(),
                MigrateTo::Single => "single".to_owned(),
                MigrateTo::Conflux => "conflux".to_owned(),
                MigrateTo::Tunnel(id) => id.to_string(),
            };
            let (ok, body) = post(args.metrics, &format!("/streams/migrate/{app}?to={to}")).await?;
            if !ok {
                return Err(StreamsError::Refused {
                    app,
                    why: body.trim().to_owned(),
                });
            }
            if args.json {
                print(&body);
                return Ok(());
            }
            let done: MigrateOutcome = serde_json::from_str(&body)?;
            print(&format!(
                "stream {} moving from tunnel {} to tunnel {} (stream {} there{})",
                done.app,
                done.from,
                done.to,
                done.to_stream,
                if done.built { ", built for it" } else { "" }
            ));
        }
    }
    Ok(())
}

/// `POST path` to the proxy: whether it answered 200, and the body.
async fn post(addr: SocketAddr, path: &str) -> Result<(bool, String), StreamsError> {
    let err = |source| StreamsError::Post { addr, source };
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
        conn.write_all(req.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut conn)
            .take(u64::try_from(MAX_ANSWER).unwrap_or(u64::MAX))
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| err(std::io::ErrorKind::TimedOut.into()))?
        .map_err(err)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let ok = head
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    Ok((ok, body.to_owned()))
}

#[allow(clippy::print_stdout, reason = "the command's output")]
fn print(text: &str) {
    println!("{}", text.trim_end());
}

/// The table: one row per stream.
fn render(streams: &[StreamView]) -> String {
    use std::fmt::Write as _;
    if streams.is_empty() {
        return "no streams\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:>7} {:<8} {:>7} {:>12} {:>12} {:>6}  state",
        "stream", "tunnel", "kind", "id", "bytes in", "bytes out", "moves"
    );
    for s in streams {
        let state = if s.stream.migrating {
            "moving"
        } else if s.stream.migratable {
            "migratable"
        } else {
            "-"
        };
        let _ = writeln!(
            out,
            "{:>6} {:>7} {:<8} {:>7} {:>12} {:>12} {:>6}  {state}",
            s.stream.app,
            s.tunnel,
            s.kind,
            s.stream.id,
            s.stream.bytes_read,
            s.stream.bytes_written,
            s.stream.moves,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use braid_client::report::StreamReport;

    use super::*;

    #[test]
    fn the_table_has_a_row_per_stream_with_its_tunnel_and_state() {
        let row = |app, tunnel, migratable, migrating| StreamView {
            tunnel,
            kind: "single".into(),
            exit: "AA".into(),
            stream: StreamReport {
                app,
                id: 7,
                migratable,
                migrating,
                bytes_read: 1000,
                bytes_written: 20,
                moves: 1,
                buffered: 0,
                buffer_limit: 0,
            },
        };
        let t = render(&[row(3, 11, true, false), row(4, 12, false, true)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].contains("migratable") && lines[1].contains(" 11 "),
            "{t}"
        );
        assert!(lines[2].trim_end().ends_with("moving"), "{t}");
        assert_eq!(render(&[]), "no streams\n");
    }
}
