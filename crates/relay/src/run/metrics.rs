//! Observability of `braid relay run`: Prometheus text on `GET /metrics`
//! at `[braid_relay] metrics` (a loopback address), like `braid proxy
//! --metrics`. Each request asks the node task for its figures.
//!
//! | name | labels | meaning |
//! |---|---|---|
//! | `braid_relay_uptime_seconds` | | since start |
//! | `braid_relay_channels` | peer (client, relay) | open channels |
//! | `braid_relay_channels_blocked` | | channels whose writer queue is full |
//! | `braid_relay_circuits` | | circuits carried |
//! | `braid_relay_exit_streams` | | exit streams open |
//! | `braid_relay_read_bytes_total` | | bytes read from channels |
//! | `braid_relay_written_bytes_total` | | bytes written to channels |
//! | `braid_relay_queued_bytes` | | bytes in circuit queues and exit buffers |
//! | `braid_relay_memory_limit_bytes` | | their bound (MaxMemInQueues) |
//! | `braid_relay_writer_queued_cells` | | cells handed to writers, not yet written |
//! | `braid_relay_circuits_created_total` | | circuits opened by peers |
//! | `braid_relay_creates_refused_total` | | CREATEs refused |
//! | `braid_relay_extends_total` | | circuits extended |
//! | `braid_relay_circuits_closed_total` | | circuits closed |
//! | `braid_relay_oom_closed_total` | | circuits closed over the memory limit |
//! | `braid_relay_padding_cells_total` | | PADDING cells sent on quiet client channels |
//! | `braid_relay_kist_enabled` | | 1 if KIST limits the writers |
//! | `braid_relay_kist_run_interval_seconds` | | its run interval |
//! | `braid_relay_kist_runs_total` | | KIST runs (for channels their limit held back) |
//! | `braid_relay_kist_limits_total` | | write limits computed |
//! | `braid_relay_kist_fallback_limits_total` | | of those, without kernel figures |
//! | `braid_relay_kist_limit_bytes_total` | | sum of the limits |
//! | `braid_relay_kist_channels_limited_total` | | a channel used its limit with cells left |
//! | `braid_relay_kist_cells_total` | | cells moved to writers under KIST |
//! | `braid_relay_kist_pending_channels` | | channels waiting for their limit to expire |
//! | `braid_relay_conflux_sets` | scheduler | Conflux sets open, by download scheduler |
//! | `braid_relay_conflux_legs` | | their linked legs |
//! | `braid_relay_conflux_reorder_bytes` | | bytes in their reorder queues (uploads) |
//! | `braid_relay_conflux_reorder_peak_bytes` | | the largest peak of one set's reorder queue |
//! | `braid_relay_conflux_backlog_bytes` | | destination bytes waiting in their stream maps |
//! | `braid_relay_conflux_resumable_sets` | | open sets that resume lost legs (Braid proposal 001) |
//! | `braid_relay_conflux_resumptions` | | resumptions of the open sets |
//! | `braid_relay_conflux_resent_cells` | | cells the open sets resent on resumed legs |
//! | `braid_relay_conflux_retransmit_bytes` | | bytes in their retransmit buffers |
//! | `braid_relay_conflux_retransmit_peak_bytes` | | the largest peak of one set's retransmit buffer |
//! | `braid_relay_conflux_retransmit_peak_bound_bytes` | | that set's legs' windows at its peak |
//! | `braid_relay_conflux_sets_created_total` | | sets made |
//! | `braid_relay_conflux_legs_linked_total` | | legs linked |
//! | `braid_relay_conflux_links_refused_total` | | CONFLUX_LINKs refused |
//! | `braid_relay_conflux_oom_sets_closed_total` | | sets closed over the memory limit |
//! | `braid_relay_consensus_fetches_total` | result (ok, failed) | consensus fetches |
//! | `braid_relay_consensus_valid_after_seconds` | | `valid-after` of the consensus in force (Unix time) |
//! | `braid_relay_dir_answers_total` | doc (consensus, microdescs, certificates, robots, other), status | directory requests answered over BEGIN_DIR |
//! | `braid_relay_dir_answer_bytes_total` | | bytes of those answers |
//! | `braid_relay_dir_closed_total` | | directory streams ended without an answer |
//! | `braid_relay_dir_streams` | | directory streams open |
//! | `braid_relay_dir_microdesc_fetches_total` | result (ok, failed) | microdescriptor requests to authorities |
//! | `braid_relay_dir_cached_microdescs` | | microdescriptors held (and `_bytes`) |
//! | `braid_relay_dir_cached_certificates` | | authority certificates held |
//! | `braid_relay_dir_consensus_valid_after_seconds` | | `valid-after` of the consensus served (Unix time) |
//!
//! The `dir` families appear when the relay is a directory cache.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use braid_core::relay::{NodeStats, SetFigures};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::chan_io::Traffic;
use super::consensus::FetchStats;
use super::dircache::{DirFigures, DirShared};
use super::msg::ToNode;
use braid_core::relay::kist_sched::KistStats;

/// Longest request head read.
const MAX_REQUEST: usize = 4096;
/// How long a metrics client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node task reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeFigures {
    /// Channels with clients.
    pub(crate) client_channels: usize,
    /// Channels with relays.
    pub(crate) relay_channels: usize,
    /// Channels whose writer queue is full.
    pub(crate) blocked_channels: usize,
    /// Circuits.
    pub(crate) circuits: usize,
    /// Exit streams.
    pub(crate) exit_streams: usize,
    /// Bytes in circuit queues and exit buffers.
    pub(crate) queued_bytes: usize,
    /// Cells handed to writers, not yet written.
    pub(crate) writer_cells: usize,
    /// The node's counters.
    pub(crate) stats: NodeStats,
    /// KIST's run interval, `None` when off.
    pub(crate) kist_interval: Option<Duration>,
    /// KIST's counters.
    pub(crate) kist: KistStats,
    /// Channels waiting for their KIST limit to expire.
    pub(crate) kist_pending: usize,
    /// `valid-after` of the consensus whose parameters are in force.
    pub(crate) consensus_valid_after: Option<SystemTime>,
    /// Every open Conflux set.
    pub(crate) sets: Vec<SetFigures>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Since start.
    pub(crate) uptime: Duration,
    /// The node task's figures.
    pub(crate) node: NodeFigures,
    /// Bytes read from channels.
    pub(crate) read: u64,
    /// Bytes written to channels.
    pub(crate) written: u64,
    /// The memory limit.
    pub(crate) memory_limit: usize,
    /// Consensus fetches that worked.
    pub(crate) consensus_ok: u64,
    /// Consensus fetches that failed.
    pub(crate) consensus_failed: u64,
    /// The directory cache's figures, if we serve one.
    pub(crate) dir: Option<DirFigures>,
}

/// What the server needs besides the node task.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    /// The node task's inbox.
    pub(crate) to_node: mpsc::Sender<ToNode>,
    /// Bytes moved by channels.
    pub(crate) traffic: Arc<Traffic>,
    /// Consensus fetches.
    pub(crate) fetches: Arc<FetchStats>,
    /// When the relay started.
    pub(crate) started: Instant,
    /// The memory limit.
    pub(crate) memory_limit: usize,
    /// The directory cache, if we serve one.
    pub(crate) dir: Option<Arc<DirShared>>,
}

impl Sources {
    /// The figures now; `None` if the node task is gone.
    async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.to_node.send(ToNode::Figures(tx)).await.ok()?;
        let node = rx.await.ok()?;
        Some(Snapshot {
            uptime: self.started.elapsed(),
            node,
            read: self.traffic.read.load(Ordering::Relaxed),
            written: self.traffic.written.load(Ordering::Relaxed),
            memory_limit: self.memory_limit,
            consensus_ok: self.fetches.fetched.load(Ordering::Relaxed),
            consensus_failed: self.fetches.failed.load(Ordering::Relaxed),
            dir: self.dir.as_ref().map(|d| d.figures()),
        })
    }
}

/// The snapshot as Prometheus text (format 0.0.4).
pub(crate) fn prometheus(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: &[(&str, f64)]| {
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
    let n = &s.node;
    let one = |v: f64| [("", v)];
    let gauge = "gauge";
    let counter = "counter";
    family(
        "braid_relay_uptime_seconds",
        gauge,
        "Seconds since the relay started.",
        &one(s.uptime.as_secs_f64()),
    );
    family(
        "braid_relay_channels",
        gauge,
        "Open channels, by who is at the other end.",
        &[
            ("peer=\"client\"", n.client_channels as f64),
            ("peer=\"relay\"", n.relay_channels as f64),
        ],
    );
    family(
        "braid_relay_channels_blocked",
        gauge,
        "Channels whose writer queue is full.",
        &one(n.blocked_channels as f64),
    );
    family(
        "braid_relay_circuits",
        gauge,
        "Circuits carried.",
        &one(n.circuits as f64),
    );
    family(
        "braid_relay_exit_streams",
        gauge,
        "Exit streams open.",
        &one(n.exit_streams as f64),
    );
    family(
        "braid_relay_read_bytes_total",
        counter,
        "Bytes read from channels (TLS included).",
        &one(s.read as f64),
    );
    family(
        "braid_relay_written_bytes_total",
        counter,
        "Bytes written to channels (TLS included).",
        &one(s.written as f64),
    );
    family(
        "braid_relay_queued_bytes",
        gauge,
        "Bytes queued in circuits and exit stream buffers.",
        &one(n.queued_bytes as f64),
    );
    family(
        "braid_relay_memory_limit_bytes",
        gauge,
        "The bound on queued bytes (MaxMemInQueues).",
        &one(s.memory_limit as f64),
    );
    family(
        "braid_relay_writer_queued_cells",
        gauge,
        "Cells handed to channel writers and not yet written to the socket.",
        &one(n.writer_cells as f64),
    );
    let by_scheduler: Vec<(&str, f64)> = [
        ("scheduler=\"ecf\"", "ecf"),
        ("scheduler=\"lowrtt\"", "lowrtt"),
        ("scheduler=\"minrtt\"", "minrtt"),
    ]
    .into_iter()
    .map(|(label, name)| {
        let count = n.sets.iter().filter(|f| f.scheduler == name).count();
        (label, count as f64)
    })
    .collect();
    family(
        "braid_relay_conflux_sets",
        gauge,
        "Conflux sets open, by the scheduler placing their downloads.",
        &by_scheduler,
    );
    let peak_set = n.sets.iter().max_by_key(|f| f.retransmit_peak_bytes);
    for (name, help, v) in [
        (
            "braid_relay_conflux_legs",
            "Linked legs of the open Conflux sets.",
            n.sets.iter().map(|f| f.legs).sum::<usize>(),
        ),
        (
            "braid_relay_conflux_reorder_bytes",
            "Bytes in the Conflux sets' reorder queues (uploads out of order).",
            n.sets.iter().map(|f| f.reorder_bytes).sum(),
        ),
        (
            "braid_relay_conflux_reorder_peak_bytes",
            "The largest peak of one open set's reorder queue.",
            n.sets
                .iter()
                .map(|f| f.reorder_peak_bytes)
                .max()
                .unwrap_or(0),
        ),
        (
            "braid_relay_conflux_backlog_bytes",
            "Destination bytes waiting in the Conflux sets' stream maps.",
            n.sets.iter().map(|f| f.backlog_bytes).sum(),
        ),
        (
            "braid_relay_conflux_resumable_sets",
            "Open Conflux sets that resume lost legs (Braid proposal 001).",
            n.sets.iter().filter(|f| f.resumable).count(),
        ),
        (
            "braid_relay_conflux_resumptions",
            "Resumptions of the open Conflux sets.",
            n.sets.iter().map(|f| f.resumptions).sum(),
        ),
        (
            "braid_relay_conflux_resent_cells",
            "Cells the open Conflux sets resent on resumed legs.",
            usize::try_from(n.sets.iter().map(|f| f.resent).sum::<u64>()).unwrap_or(usize::MAX),
        ),
        (
            "braid_relay_conflux_retransmit_bytes",
            "Bytes in the open Conflux sets' retransmit buffers.",
            n.sets.iter().map(|f| f.retransmit_bytes).sum(),
        ),
        (
            "braid_relay_conflux_retransmit_peak_bytes",
            "The largest peak of one open set's retransmit buffer.",
            peak_set.map_or(0, |f| f.retransmit_peak_bytes),
        ),
        (
            "braid_relay_conflux_retransmit_peak_bound_bytes",
            "What that set's legs' congestion windows allowed at its peak.",
            peak_set.map_or(0, |f| f.retransmit_peak_bound_bytes),
        ),
    ] {
        family(name, gauge, help, &one(v as f64));
    }
    let st = &n.stats;
    for (name, help, v) in [
        (
            "braid_relay_circuits_created_total",
            "Circuits opened by peers.",
            st.circuits_created,
        ),
        (
            "braid_relay_creates_refused_total",
            "CREATE cells refused (limits, bad handshakes).",
            st.creates_refused,
        ),
        (
            "braid_relay_extends_total",
            "Circuits extended to a next relay.",
            st.extends,
        ),
        (
            "braid_relay_circuits_closed_total",
            "Circuits closed.",
            st.circuits_closed,
        ),
        (
            "braid_relay_oom_closed_total",
            "Circuits closed to stay under the memory limit.",
            st.oom_closed,
        ),
        (
            "braid_relay_padding_cells_total",
            "PADDING cells sent on quiet channels (padding-spec 2).",
            st.padding_sent,
        ),
        (
            "braid_relay_conflux_sets_created_total",
            "Conflux sets made (prop 329).",
            st.sets_created,
        ),
        (
            "braid_relay_conflux_legs_linked_total",
            "Conflux legs linked.",
            st.legs_linked,
        ),
        (
            "braid_relay_conflux_links_refused_total",
            "CONFLUX_LINKs refused (their circuit closed).",
            st.links_refused,
        ),
        (
            "braid_relay_conflux_oom_sets_closed_total",
            "Conflux sets closed to stay under the memory limit.",
            st.oom_sets_closed,
        ),
    ] {
        family(name, counter, help, &one(v as f64));
    }
    family(
        "braid_relay_kist_enabled",
        gauge,
        "1 if KIST limits what the channel writers take.",
        &one(if n.kist_interval.is_some() { 1.0 } else { 0.0 }),
    );
    if let Some(i) = n.kist_interval {
        family(
            "braid_relay_kist_run_interval_seconds",
            gauge,
            "KIST's run interval.",
            &one(i.as_secs_f64()),
        );
    }
    let k = &n.kist;
    for (name, help, v) in [
        (
            "braid_relay_kist_runs_total",
            "KIST runs, for channels their limit held back.",
            k.runs,
        ),
        (
            "braid_relay_kist_limits_total",
            "Channel write limits computed.",
            k.limits,
        ),
        (
            "braid_relay_kist_fallback_limits_total",
            "Write limits from the writer's room, without TCP_INFO.",
            k.fallbacks,
        ),
        (
            "braid_relay_kist_limit_bytes_total",
            "Sum of the write limits computed.",
            k.limit_bytes,
        ),
        (
            "braid_relay_kist_channels_limited_total",
            "Times a channel used its whole limit with cells left.",
            k.limited,
        ),
        (
            "braid_relay_kist_cells_total",
            "Cells moved to channel writers under KIST.",
            k.cells,
        ),
    ] {
        family(name, counter, help, &one(v as f64));
    }
    family(
        "braid_relay_kist_pending_channels",
        gauge,
        "Channels waiting for their KIST limit to expire.",
        &one(n.kist_pending as f64),
    );
    family(
        "braid_relay_consensus_fetches_total",
        counter,
        "Consensus fetches, by result.",
        &[
            ("result=\"ok\"", s.consensus_ok as f64),
            ("result=\"failed\"", s.consensus_failed as f64),
        ],
    );
    if let Some(t) = n.consensus_valid_after {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        family(
            "braid_relay_consensus_valid_after_seconds",
            gauge,
            "valid-after of the consensus whose parameters are in force (Unix time).",
            &one(secs),
        );
    }
    if let Some(d) = &s.dir {
        dir_families(d, &mut family);
    }
    out
}

/// The directory cache's families.
fn dir_families(d: &DirFigures, family: &mut impl FnMut(&str, &str, &str, &[(&str, f64)])) {
    let labels: Vec<String> = d
        .answers
        .iter()
        .map(|(doc, status, _)| format!("doc=\"{}\",status=\"{status}\"", doc.name()))
        .collect();
    let rows: Vec<(&str, f64)> = labels
        .iter()
        .zip(&d.answers)
        .map(|(l, (_, _, n))| (l.as_str(), *n as f64))
        .collect();
    family(
        "braid_relay_dir_answers_total",
        "counter",
        "Directory requests answered over BEGIN_DIR, by document and status.",
        &rows,
    );
    let one = |v: f64| [("", v)];
    family(
        "braid_relay_dir_answer_bytes_total",
        "counter",
        "Bytes of directory answers (heads and bodies).",
        &one(d.bytes as f64),
    );
    family(
        "braid_relay_dir_closed_total",
        "counter",
        "Directory streams ended without an answer.",
        &one(d.closed as f64),
    );
    family(
        "braid_relay_dir_streams",
        "gauge",
        "Directory streams open.",
        &one(d.open as f64),
    );
    family(
        "braid_relay_dir_microdesc_fetches_total",
        "counter",
        "Microdescriptor requests to authorities, by result.",
        &[
            ("result=\"ok\"", d.md_fetches.0 as f64),
            ("result=\"failed\"", d.md_fetches.1 as f64),
        ],
    );
    family(
        "braid_relay_dir_cached_microdescs",
        "gauge",
        "Microdescriptors the directory cache holds.",
        &one(d.microdescs.0 as f64),
    );
    family(
        "braid_relay_dir_cached_microdescs_bytes",
        "gauge",
        "Their bytes.",
        &one(d.microdescs.1 as f64),
    );
    family(
        "braid_relay_dir_cached_certificates",
        "gauge",
        "Authority certificates the directory cache holds.",
        &one(d.certs as f64),
    );
    if let Some(t) = d.consensus_valid_after {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        family(
            "braid_relay_dir_consensus_valid_after_seconds",
            "gauge",
            "valid-after of the consensus the directory cache serves (Unix time).",
            &one(secs),
        );
    }
}

/// Serve `GET /metrics` on `listener` (until the relay stops: the
/// driver aborts the task).
pub(crate) async fn serve(listener: TcpListener, sources: Sources) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let sources = sources.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(conn, &sources).await {
                        tracing::debug!("metrics request: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics port: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The path of an HTTP request head (`GET /path HTTP/1.x`), if it is a GET.
fn request_path(head: &str) -> Option<&str> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    if parts.next()? != "GET" {
        return None;
    }
    let path = parts.next()?;
    Some(path.split('?').next().unwrap_or(path))
}

async fn answer(mut conn: TcpStream, sources: &Sources) -> std::io::Result<()> {
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
    let (code, body) = match request_path(&head) {
        Some("/metrics") => match sources.snapshot().await {
            Some(s) => ("200 OK", prometheus(&s)),
            None => ("503 Service Unavailable", "the relay is stopping\n".into()),
        },
        Some(_) => ("404 Not Found", "not found\n".into()),
        None => ("405 Method Not Allowed", "GET only\n".into()),
    };
    let reply = format!(
        "HTTP/1.0 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests;
