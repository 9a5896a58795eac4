//! Observability: every live tunnel's figures, per tunnel and per leg, as
//! Prometheus text (`GET /metrics`) and as JSON (`GET /status`, what
//! `braid status` prints), on an optional loopback HTTP port of
//! `braid proxy`. The same port lists the connected streams (`GET
//! /streams`, JSON) and moves one to another tunnel of its isolation key
//! to the same exit (`POST /streams/migrate/APP`, Braid live stream
//! migration: what `braid streams` asks).
//!
//! Metric names (a single circuit is a tunnel with one leg, `leg="0"`):
//!
//! | name | labels | meaning |
//! |---|---|---|
//! | `braid_tunnels` | | live tunnels |
//! | `braid_tunnel_streams` | tunnel | streams open or opening |
//! | `braid_tunnel_legs_open` | tunnel, kind | legs open |
//! | `braid_tunnel_reorder_bytes` | tunnel | reorder queue now |
//! | `braid_tunnel_reorder_peak_bytes` | tunnel | its peak |
//! | `braid_tunnel_reorder_limit_bytes` | tunnel | its limit |
//! | `braid_leg_open` | tunnel, leg, path | 1 open, 0 closed |
//! | `braid_leg_replacement` | tunnel, leg | 1 if it replaced a lost leg |
//! | `braid_leg_data_bytes_received_total` | tunnel, leg | DATA bytes in |
//! | `braid_leg_data_bytes_sent_total` | tunnel, leg | DATA bytes out |
//! | `braid_leg_rtt_seconds` | tunnel, leg | smoothed RTT |
//! | `braid_leg_min_rtt_seconds` | tunnel, leg | minimum RTT |
//! | `braid_leg_link_rtt_seconds` | tunnel, leg | LINK to LINKED (Conflux) |
//! | `braid_leg_cwnd_cells` | tunnel, leg | congestion window |
//! | `braid_leg_inflight_cells` | tunnel, leg | DATA cells unacknowledged |
//! | `braid_leg_switches_sent_total` | tunnel, leg | CONFLUX_SWITCH out |
//! | `braid_leg_switches_received_total` | tunnel, leg | CONFLUX_SWITCH in |
//! | `braid_leg_share` | tunnel, leg | this leg's part of the tunnel's DATA bytes received |
//!
//! The share is a ratio of counters, given for convenience; the counters
//! are the truth. Resumption and migration figures: [`resume`].

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod resume;

pub use resume::{ResumeView, totals};

use crate::client::{MigrateTo, TorClient};
use crate::tunnel::{TunnelInfo, TunnelReport, TunnelStatus};

/// Longest request head read.
const MAX_REQUEST: usize = 4096;
/// How long a metrics client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One tunnel as the endpoint shows it.
#[derive(Debug, Clone)]
pub struct TunnelSnapshot {
    /// What it was built through.
    pub info: TunnelInfo,
    /// Building, open or closed.
    pub status: TunnelStatus,
    /// Its task's figures.
    pub report: TunnelReport,
}

/// Every live tunnel of `client`, asked of each tunnel's task.
pub async fn snapshot(client: &TorClient) -> Vec<TunnelSnapshot> {
    let mut out = Vec::new();
    for t in client.live_tunnels() {
        if let Some(report) = t.report().await {
            out.push(TunnelSnapshot {
                info: t.info().clone(),
                status: t.status(),
                report,
            });
        }
    }
    out.sort_by_key(|s| s.report.id);
    out
}

/// A Prometheus label value, escaped (text format 0.0.4).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot as Prometheus text.
pub fn prometheus(tunnels: &[TunnelSnapshot]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let tunnel_rows = |f: &dyn Fn(&TunnelSnapshot) -> Option<f64>| -> Vec<(String, f64)> {
        tunnels
            .iter()
            .filter_map(|t| f(t).map(|v| (format!("tunnel=\"{}\"", t.report.id), v)))
            .collect()
    };
    let leg_rows = |f: &dyn Fn(&crate::tunnel::LegReport) -> Option<f64>| -> Vec<(String, f64)> {
        let mut rows = Vec::new();
        for t in tunnels {
            for (i, l) in t.report.legs.iter().enumerate() {
                if let Some(v) = f(l) {
                    rows.push((format!("tunnel=\"{}\",leg=\"{i}\"", t.report.id), v));
                }
            }
        }
        rows
    };
    family(
        "braid_tunnels",
        "gauge",
        "Live tunnels.",
        vec![(String::new(), tunnels.len() as f64)],
    );
    family(
        "braid_tunnel_streams",
        "gauge",
        "Streams open or opening on the tunnel.",
        tunnel_rows(&|t| Some(t.report.streams as f64)),
    );
    family(
        "braid_tunnel_legs_open",
        "gauge",
        "Open legs of the tunnel (1 for a single circuit).",
        tunnels
            .iter()
            .map(|t| {
                (
                    format!(
                        "tunnel=\"{}\",kind=\"{}\"",
                        t.report.id,
                        if t.report.conflux {
                            "conflux"
                        } else {
                            "single"
                        }
                    ),
                    t.report.legs.iter().filter(|l| l.open).count() as f64,
                )
            })
            .collect(),
    );
    family(
        "braid_tunnel_reorder_bytes",
        "gauge",
        "Bytes held in the Conflux reorder queue.",
        tunnel_rows(&|t| t.report.reorder.map(|r| r.bytes as f64)),
    );
    family(
        "braid_tunnel_reorder_peak_bytes",
        "gauge",
        "Most bytes the Conflux reorder queue held.",
        tunnel_rows(&|t| t.report.reorder.map(|r| r.peak_bytes as f64)),
    );
    family(
        "braid_tunnel_reorder_limit_bytes",
        "gauge",
        "The reorder queue's limit; going over it closes the set.",
        tunnel_rows(&|t| t.report.reorder.map(|r| r.limit_bytes as f64)),
    );
    let mut open_rows = Vec::new();
    for t in tunnels {
        for (i, l) in t.report.legs.iter().enumerate() {
            open_rows.push((
                format!(
                    "tunnel=\"{}\",leg=\"{i}\",path=\"{}\"",
                    t.report.id,
                    label(&l.path.join(">"))
                ),
                f64::from(u8::from(l.open)),
            ));
        }
    }
    family(
        "braid_leg_open",
        "gauge",
        "1 if the leg is open.",
        open_rows,
    );
    family(
        "braid_leg_replacement",
        "gauge",
        "1 if the leg replaced one that was lost.",
        leg_rows(&|l| Some(f64::from(u8::from(l.replacement)))),
    );
    family(
        "braid_leg_data_bytes_received_total",
        "counter",
        "DATA payload bytes received on the leg.",
        leg_rows(&|l| Some(l.data_bytes_received() as f64)),
    );
    family(
        "braid_leg_data_bytes_sent_total",
        "counter",
        "DATA payload bytes sent on the leg.",
        leg_rows(&|l| Some(l.data_bytes_sent() as f64)),
    );
    family(
        "braid_leg_rtt_seconds",
        "gauge",
        "Smoothed RTT of the leg.",
        leg_rows(&|l| l.figures.as_ref()?.ewma_rtt.map(|d| d.as_secs_f64())),
    );
    family(
        "braid_leg_min_rtt_seconds",
        "gauge",
        "Minimum RTT of the leg.",
        leg_rows(&|l| l.figures.as_ref()?.min_rtt.map(|d| d.as_secs_f64())),
    );
    family(
        "braid_leg_link_rtt_seconds",
        "gauge",
        "CONFLUX_LINK to LINKED on the leg (its RTT when it only receives).",
        leg_rows(&|l| l.link_rtt.map(|d| d.as_secs_f64())),
    );
    family(
        "braid_leg_cwnd_cells",
        "gauge",
        "Congestion window of the leg.",
        leg_rows(&|l| l.figures.as_ref()?.cwnd.map(|c| c as f64)),
    );
    family(
        "braid_leg_inflight_cells",
        "gauge",
        "DATA cells sent on the leg and not acknowledged.",
        leg_rows(&|l| l.figures.as_ref()?.inflight.map(|c| c as f64)),
    );
    family(
        "braid_leg_switches_sent_total",
        "counter",
        "CONFLUX_SWITCH messages sent on the leg.",
        leg_rows(&|l| l.stats.map(|s| s.switches_sent as f64)),
    );
    family(
        "braid_leg_switches_received_total",
        "counter",
        "CONFLUX_SWITCH messages received on the leg.",
        leg_rows(&|l| l.stats.map(|s| s.switches_received as f64)),
    );
    let mut share_rows = Vec::new();
    for t in tunnels {
        let total = t.report.data_bytes_received();
        for (i, l) in t.report.legs.iter().enumerate() {
            if total > 0 {
                share_rows.push((
                    format!("tunnel=\"{}\",leg=\"{i}\"", t.report.id),
                    l.data_bytes_received() as f64 / total as f64,
                ));
            }
        }
    }
    family(
        "braid_leg_share",
        "gauge",
        "The leg's part of the tunnel's DATA bytes received.",
        share_rows,
    );
    for (name, kind, help, rows) in resume::families(tunnels) {
        family(name, kind, help, rows);
    }
    out
}

/// One leg in `/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LegStatus {
    /// Index in launch order.
    pub leg: usize,
    /// Relays, guard first.
    pub path: Vec<String>,
    /// Still open.
    pub open: bool,
    /// Replaced a lost leg.
    pub replacement: bool,
    /// Smoothed RTT, ms.
    pub rtt_ms: Option<f64>,
    /// Minimum RTT, ms.
    pub min_rtt_ms: Option<f64>,
    /// LINK to LINKED, ms (Conflux).
    pub link_rtt_ms: Option<f64>,
    /// Congestion window, cells.
    pub cwnd: Option<u64>,
    /// Unacknowledged DATA cells.
    pub inflight: Option<u64>,
    /// DATA bytes received.
    pub bytes_received: u64,
    /// DATA bytes sent.
    pub bytes_sent: u64,
    /// Part of the tunnel's bytes received.
    pub share: f64,
    /// SWITCH messages sent.
    pub switches_sent: Option<u64>,
    /// SWITCH messages received.
    pub switches_received: Option<u64>,
}

/// One tunnel in `/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TunnelStatusView {
    /// The tunnel's id.
    pub id: u64,
    /// "conflux" or "single".
    pub kind: String,
    /// "building", "open", or "closed: why".
    pub status: String,
    /// Streams open or opening.
    pub streams: usize,
    /// Reorder queue bytes now (Conflux).
    pub reorder_bytes: Option<usize>,
    /// Reorder queue peak (Conflux).
    pub reorder_peak_bytes: Option<usize>,
    /// Reorder queue limit (Conflux).
    pub reorder_limit_bytes: Option<usize>,
    /// The legs.
    pub legs: Vec<LegStatus>,
    /// Resumption and migration figures (absent from older proxies).
    #[serde(default)]
    pub resume: ResumeView,
}

/// The snapshot as `/status` rows.
pub fn status_view(tunnels: &[TunnelSnapshot]) -> Vec<TunnelStatusView> {
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    tunnels
        .iter()
        .map(|t| {
            let total = t.report.data_bytes_received();
            TunnelStatusView {
                id: t.report.id,
                kind: if t.report.conflux {
                    "conflux"
                } else {
                    "single"
                }
                .into(),
                status: match &t.status {
                    TunnelStatus::Building => "building".into(),
                    TunnelStatus::Open => "open".into(),
                    TunnelStatus::Closed(why) => format!("closed: {}", why.text),
                },
                streams: t.report.streams,
                reorder_bytes: t.report.reorder.map(|r| r.bytes),
                reorder_peak_bytes: t.report.reorder.map(|r| r.peak_bytes),
                reorder_limit_bytes: t.report.reorder.map(|r| r.limit_bytes),
                resume: ResumeView::from(&t.report.resume),
                legs: t
                    .report
                    .legs
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let f = l.figures.as_ref();
                        let received = l.data_bytes_received();
                        LegStatus {
                            leg: i,
                            path: l.path.clone(),
                            open: l.open,
                            replacement: l.replacement,
                            rtt_ms: ms(f.and_then(|f| f.ewma_rtt)),
                            min_rtt_ms: ms(f.and_then(|f| f.min_rtt)),
                            link_rtt_ms: ms(l.link_rtt),
                            cwnd: f.and_then(|f| f.cwnd),
                            inflight: f.and_then(|f| f.inflight),
                            bytes_received: received,
                            bytes_sent: l.data_bytes_sent(),
                            share: if total > 0 {
                                received as f64 / total as f64
                            } else {
                                0.0
                            },
                            switches_sent: l.stats.map(|s| s.switches_sent),
                            switches_received: l.stats.map(|s| s.switches_received),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Serve `/metrics` and `/status` on `listener` until `shutdown`
/// completes. One request per connection (HTTP/1.0 style).
pub async fn serve(listener: TcpListener, client: TorClient, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    let client = client.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(conn, &client).await {
                            tracing::debug!("metrics request: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("metrics port: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// The path of an HTTP request head (`GET /path HTTP/1.x`), if it is a GET.
fn request_path(head: &str) -> Option<&str> {
    match request_line(head)? {
        ("GET", path) => Some(path),
        _ => None,
    }
}

/// The method and path (without its query) of an HTTP request head.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?;
    let path = parts.next()?;
    Some((method, path.split('?').next().unwrap_or(path)))
}

/// The application stream of `POST /streams/migrate/APP[?to=WHERE]`, and
/// where to (`any`, `single`, `conflux` or a tunnel number; an unknown
/// value is an error for the caller).
fn migrate_request(head: &str) -> Option<(u64, Result<MigrateTo, String>)> {
    let ("POST", path) = request_line(head)? else {
        return None;
    };
    let app = path.strip_prefix("/streams/migrate/")?.parse().ok()?;
    let full = head.lines().next()?.split_whitespace().nth(1)?;
    let to = match full.split_once('?') {
        None => Ok(MigrateTo::Any),
        Some((_, query)) => query
            .split('&')
            .find_map(|kv| kv.strip_prefix("to="))
            .map_or(Ok(MigrateTo::Any), str::parse),
    };
    Some((app, to))
}

async fn answer(mut conn: TcpStream, client: &TorClient) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 512];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    if let Some((app, to)) = migrate_request(&head) {
        let moved = match to {
            Ok(to) => client.migrate_stream(app, to).await,
            Err(e) => Err(e),
        };
        let (code, body) = match moved {
            Ok(done) => (
                "200 OK",
                serde_json::to_string_pretty(&done).unwrap_or_default(),
            ),
            Err(e) => ("409 Conflict", format!("{e}\n")),
        };
        let reply = format!(
            "HTTP/1.0 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).await?;
        return conn.shutdown().await;
    }
    let (code, ctype, body) = match request_path(&head) {
        Some("/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            prometheus(&snapshot(client).await),
        ),
        Some("/streams") => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&client.streams().await).unwrap_or_else(|_| "[]".into()),
        ),
        Some("/status") => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&status_view(&snapshot(client).await))
                .unwrap_or_else(|_| "[]".into()),
        ),
        Some(_) => ("404 Not Found", "text/plain", "not found\n".into()),
        None => (
            "405 Method Not Allowed",
            "text/plain",
            "GET, or POST /streams/migrate/APP\n".into(),
        ),
    };
    let reply = format!(
        "HTTP/1.0 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;
    use crate::tunnel::{LegReport, ReorderReport};
    use braid_core::circuit::HopFigures;
    use braid_core::conflux::LegStats;
    use braid_core::ids::HopNum;

    fn figures(rtt_ms: u64, cwnd: u64) -> HopFigures {
        HopFigures {
            hop: HopNum(2),
            cc_sendme_inc: Some(31),
            min_rtt: Some(Duration::from_millis(rtt_ms)),
            ewma_rtt: Some(Duration::from_millis(rtt_ms + 5)),
            cwnd: Some(cwnd),
            inflight: Some(7),
            in_slow_start: Some(false),
            send_window: 0,
            deliver_window: 0,
            waiting_cells: 0,
            data_sent: 3,
            data_received: 100,
            sendmes_sent: 3,
            sendmes_received: 0,
            sendmes_held: 0,
        }
    }

    fn conflux_snapshot() -> TunnelSnapshot {
        let leg = |name: &str, rx: u64, open: bool| LegReport {
            path: vec![format!("g{name}"), format!("m{name}"), "exit\"0".into()],
            open,
            figures: Some(figures(20, 124)),
            stats: Some(LegStats {
                data_bytes_received: rx,
                data_bytes_sent: 10,
                switches_sent: 1,
                switches_received: 4,
                ..LegStats::default()
            }),
            replacement: !open,
            link_rtt: Some(Duration::from_millis(12)),
        };
        TunnelSnapshot {
            info: TunnelInfo {
                legs: vec![],
                exit: braid_dir::RelayId::from([1; 20]),
                exit_policy: braid_dir::PortPolicy::default(),
                migrate: false,
            },
            status: TunnelStatus::Open,
            report: TunnelReport {
                id: 7,
                conflux: true,
                legs: vec![leg("a", 3000, true), leg("b", 1000, false)],
                reorder: Some(ReorderReport {
                    bytes: 0,
                    peak_bytes: 4096,
                    limit_bytes: 1 << 20,
                    waiting: 0,
                }),
                streams: 2,
                stream_list: Vec::new(),
                resume: braid_core::tunnel::ResumeStats {
                    resumable: true,
                    resumptions: 1,
                    cells_resent_by_peer: 359,
                    retransmit_peak_bytes: 4000,
                    legs_lost: 1,
                    recoveries: 1,
                    last_recovery: Some(Duration::from_millis(250)),
                    max_recovery: Some(Duration::from_millis(250)),
                    migrations_refused: 1,
                    ..Default::default()
                },
            },
        }
    }

    #[test]
    fn prometheus_text_has_every_family_per_leg() {
        let text = prometheus(&[conflux_snapshot()]);
        assert!(text.contains("braid_tunnels 1\n"));
        assert!(text.contains("braid_tunnel_legs_open{tunnel=\"7\",kind=\"conflux\"} 1\n"));
        assert!(text.contains("braid_tunnel_reorder_peak_bytes{tunnel=\"7\"} 4096\n"));
        assert!(
            text.contains("braid_leg_open{tunnel=\"7\",leg=\"0\",path=\"ga>ma>exit\\\"0\"} 1\n")
        );
        assert!(
            text.contains("braid_leg_open{tunnel=\"7\",leg=\"1\",path=\"gb>mb>exit\\\"0\"} 0\n")
        );
        assert!(
            text.contains("braid_leg_data_bytes_received_total{tunnel=\"7\",leg=\"1\"} 1000\n")
        );
        assert!(text.contains("braid_leg_share{tunnel=\"7\",leg=\"0\"} 0.75\n"));
        assert!(text.contains("braid_leg_rtt_seconds{tunnel=\"7\",leg=\"0\"} 0.025\n"));
        assert!(text.contains("braid_leg_switches_received_total{tunnel=\"7\",leg=\"0\"} 4\n"));
        assert!(text.contains("braid_leg_link_rtt_seconds{tunnel=\"7\",leg=\"1\"} 0.012\n"));
        assert!(text.contains("braid_tunnel_resumptions_total{tunnel=\"7\"} 1\n"));
        assert!(text.contains("braid_tunnel_cells_resent_total{tunnel=\"7\",by=\"peer\"} 359\n"));
        assert!(text.contains("braid_tunnel_recovery_seconds{tunnel=\"7\",which=\"last\"} 0.25\n"));
        assert!(
            text.contains("braid_tunnel_migrations_total{tunnel=\"7\",outcome=\"refused\"} 1\n")
        );
        // Totals over the live tunnels.
        assert!(text.contains("braid_resume_resumptions_total 1\n"));
        assert!(text.contains("braid_resume_cells_resent_total{by=\"peer\"} 359\n"));
        assert!(text.contains("braid_resume_retransmit_peak_bytes 4000\n"));
        // Every sample line belongs to a declared family.
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(declared.contains(&name), "{line}");
        }
    }

    #[test]
    fn a_single_circuit_is_one_leg_with_cell_based_bytes() {
        let mut s = conflux_snapshot();
        s.report.conflux = false;
        s.report.reorder = None;
        s.report.legs.truncate(1);
        s.report.legs[0].stats = None;
        let text = prometheus(&[s]);
        assert!(text.contains("braid_tunnel_legs_open{tunnel=\"7\",kind=\"single\"} 1\n"));
        assert!(
            text.contains("braid_leg_data_bytes_received_total{tunnel=\"7\",leg=\"0\"} 49800\n")
        );
        assert!(!text.contains("braid_tunnel_reorder_bytes{"));
        assert!(!text.contains("braid_leg_switches_sent_total{"));
    }

    #[test]
    fn status_view_gives_shares_and_milliseconds() {
        let v = status_view(&[conflux_snapshot()]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, "conflux");
        assert_eq!(v[0].legs[0].rtt_ms, Some(25.0));
        assert!((v[0].legs[0].share - 0.75).abs() < 1e-9);
        assert!(v[0].legs[1].replacement);
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains("\"reorder_peak_bytes\":4096"));
    }

    #[test]
    fn only_get_is_served() {
        assert_eq!(request_path("GET /metrics HTTP/1.1\r\n"), Some("/metrics"));
        assert_eq!(
            request_path("GET /status?x=1 HTTP/1.0\r\n"),
            Some("/status")
        );
        assert_eq!(request_path("POST /metrics HTTP/1.1\r\n"), None);
        assert_eq!(request_path(""), None);
    }

    #[test]
    fn a_migration_is_a_post_with_the_stream_number() {
        assert_eq!(
            migrate_request("POST /streams/migrate/42 HTTP/1.0\r\n"),
            Some((42, Ok(MigrateTo::Any)))
        );
        assert_eq!(
            migrate_request("POST /streams/migrate/42?to=single HTTP/1.0\r\n"),
            Some((42, Ok(MigrateTo::Single)))
        );
        assert_eq!(
            migrate_request("POST /streams/migrate/7?x=1&to=conflux HTTP/1.0\r\n"),
            Some((7, Ok(MigrateTo::Conflux)))
        );
        assert_eq!(
            migrate_request("POST /streams/migrate/7?to=12 HTTP/1.0\r\n"),
            Some((7, Ok(MigrateTo::Tunnel(12))))
        );
        assert!(matches!(
            migrate_request("POST /streams/migrate/7?to=elsewhere HTTP/1.0\r\n"),
            Some((7, Err(_)))
        ));
        assert_eq!(
            migrate_request("GET /streams/migrate/42 HTTP/1.0\r\n"),
            None
        );
        assert_eq!(
            migrate_request("POST /streams/migrate/x HTTP/1.0\r\n"),
            None
        );
        assert_eq!(migrate_request("POST /streams HTTP/1.0\r\n"), None);
    }
}
