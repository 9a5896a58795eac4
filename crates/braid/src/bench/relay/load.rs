//! A load run: concurrent bulk and small streams through one exit, each on
//! its own circuit (its own SOCKS isolation tag, built beforehand), the
//! circuits sharing the exit's channel to the load middle, whose shaped
//! link is the bottleneck. Every bulk stream starts at once; the small
//! streams start one after another while the bulk streams run, so their
//! time to first byte shows how long the exit keeps a quiet circuit's
//! cells behind the bulk circuits' (EWMA circuit priority, KIST's socket
//! limit).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use braid_testnet::download::fetch_file;
use serde::Serialize;

use super::client::CtorClient;
use super::metrics::{Figures, change, scrape};
use super::setup::{Exit, LOAD_MIDDLE, Settings};
use crate::bench::error::BenchError;
use crate::bench::proc::cpu_seconds;

/// How long one stream of a load run may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(600);

/// A stream's part in a load run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    /// A bulk download, the load.
    Bulk,
    /// A small download, whose first byte is timed under the load.
    Small,
}

/// The streams of a run of `n`: bulk and small alternately (the first
/// bulk), each with its start after the run's start: 0 for the bulk ones,
/// `gap`, `2 gap`, ... for the small ones.
pub(super) fn schedule(n: usize, gap: Duration) -> Vec<(Kind, Duration)> {
    let mut small = 0u32;
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                (Kind::Bulk, Duration::ZERO)
            } else {
                small += 1;
                (Kind::Small, gap * small)
            }
        })
        .collect()
}

/// One stream of a load run.
#[derive(Debug, Clone, Serialize)]
pub(super) struct StreamSample {
    /// Its place in the run.
    pub(super) index: usize,
    /// Bulk or small.
    pub(super) kind: Kind,
    /// Milliseconds from the run's start to the stream's.
    pub(super) start_ms: f64,
    /// Whether the whole body arrived with the right SHA-256.
    pub(super) ok: bool,
    /// Why not.
    pub(super) error: Option<String>,
    /// Body bytes (0 when it failed).
    pub(super) bytes: u64,
    /// Milliseconds from the SOCKS connection to the first body byte.
    pub(super) ttfb_ms: f64,
    /// Milliseconds from the SOCKS connection to the last byte (or the
    /// failure).
    pub(super) elapsed_ms: f64,
    /// Throughput (MB/s).
    pub(super) mb_per_s: f64,
    /// For a small stream: how many bulk streams were transferring (past
    /// their first byte, not done) during the whole of it.
    pub(super) bulk_running: usize,
}

impl StreamSample {
    fn end_ms(&self) -> f64 {
        self.start_ms + self.elapsed_ms
    }
}

/// Counts, for each small stream, the successful bulk streams that were
/// transferring from its start to its end.
pub(super) fn mark_bulk_running(streams: &mut [StreamSample]) {
    let bulk: Vec<(f64, f64)> = streams
        .iter()
        .filter(|s| s.kind == Kind::Bulk && s.ok)
        .map(|s| (s.start_ms + s.ttfb_ms, s.end_ms()))
        .collect();
    for s in streams.iter_mut().filter(|s| s.kind == Kind::Small) {
        let (start, end) = (s.start_ms, s.end_ms());
        s.bulk_running = bulk
            .iter()
            .filter(|(b0, b1)| *b0 <= start && *b1 >= end)
            .count();
    }
}

/// Whether a small stream ran under load: at least half of the run's bulk
/// streams (and at least one) transferring during the whole of it.
pub(super) fn under_load(s: &StreamSample, bulk_streams: usize) -> bool {
    s.kind == Kind::Small && s.ok && s.bulk_running >= 1 && 2 * s.bulk_running >= bulk_streams
}

/// One load run through one exit.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LoadRun {
    /// The exit.
    pub(super) exit: Exit,
    /// The repetition.
    pub(super) rep: usize,
    /// Seconds from the run's start to its last stream's end.
    pub(super) duration_s: f64,
    /// Bytes of every bulk stream that succeeded over the time from the
    /// first bulk stream's start to the last one's end (MB/s).
    pub(super) bulk_aggregate_mb_per_s: Option<f64>,
    /// The exit's CPU seconds during the run.
    pub(super) exit_cpu_s: f64,
    /// Exit CPU seconds per 100 MB of the streams' bodies.
    pub(super) cpu_s_per_100mb: Option<f64>,
    /// A Braid exit's own figures over the run ([`change`]).
    pub(super) relay_metrics: Option<Figures>,
    /// Why they are missing.
    pub(super) metrics_error: Option<String>,
    /// Every stream.
    pub(super) streams: Vec<StreamSample>,
}

/// Builds the run's circuits, then runs its streams through `exit` and
/// measures the exit (`pid`, its metrics endpoint `metrics` for a Braid
/// exit) meanwhile.
pub(super) async fn load_run(
    client: &mut CtorClient,
    settings: &Settings,
    exit: Exit,
    rep: usize,
    pid: u32,
    metrics: Option<SocketAddr>,
) -> Result<LoadRun, BenchError> {
    let plan = schedule(settings.load_streams, settings.small_gap);
    let tags: Vec<String> = (0..plan.len())
        .map(|i| format!("load-{}-{rep}-{i}", exit.nickname()))
        .collect();
    client.pin(LOAD_MIDDLE, exit).await?;
    client.prepare(&tags, LOAD_MIDDLE, exit).await?;
    let (files, socks) = (client.files, client.socks);
    let before = match metrics {
        Some(addr) => Some(scrape(addr).await),
        None => None,
    };
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    // A JoinSet aborts the streams still running if the run is dropped
    // (Ctrl-C, SIGTERM).
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (&(kind, offset), tag)) in plan.iter().zip(tags).enumerate() {
        let size = match kind {
            Kind::Bulk => settings.load_bulk_size,
            Kind::Small => settings.load_small_size,
        };
        tasks.spawn(async move {
            tokio::time::sleep_until((t0 + offset).into()).await;
            one_stream(files, socks, &tag, size, index, kind, t0).await
        });
    }
    let mut streams = Vec::with_capacity(plan.len());
    while let Some(done) = tasks.join_next().await {
        streams.push(done.map_err(|e| BenchError::Failed(format!("load stream task: {e}")))?);
    }
    streams.sort_by_key(|s| s.index);
    let cpu1 = cpu_seconds(pid);
    let duration_s = t0.elapsed().as_secs_f64();
    let (relay_metrics, metrics_error) = match (before, metrics) {
        (Some(Ok(before)), Some(addr)) => match scrape(addr).await {
            Ok(after) => (Some(change(&before, &after)), None),
            Err(e) => (None, Some(e)),
        },
        (Some(Err(e)), _) => (None, Some(e)),
        _ => (None, None),
    };
    mark_bulk_running(&mut streams);
    let bytes: u64 = streams.iter().map(|s| s.bytes).sum();
    let exit_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok(LoadRun {
        exit,
        rep,
        duration_s,
        bulk_aggregate_mb_per_s: bulk_aggregate(&streams),
        exit_cpu_s,
        cpu_s_per_100mb: (bytes > 0 && exit_cpu_s.is_finite())
            .then(|| exit_cpu_s * 1e8 / bytes as f64),
        relay_metrics,
        metrics_error,
        streams,
    })
}

/// The successful bulk streams' bytes over the time from the first one's
/// start to the last one's end, in MB/s.
pub(super) fn bulk_aggregate(streams: &[StreamSample]) -> Option<f64> {
    let bulk: Vec<&StreamSample> = streams
        .iter()
        .filter(|s| s.kind == Kind::Bulk && s.ok)
        .collect();
    let start = bulk.iter().map(|s| s.start_ms).reduce(f64::min)?;
    let end = bulk.iter().map(|s| s.end_ms()).reduce(f64::max)?;
    let bytes: u64 = bulk.iter().map(|s| s.bytes).sum();
    (end > start).then(|| bytes as f64 / 1e6 / ((end - start) / 1e3))
}

/// One checked download on `tag`.
async fn one_stream(
    files: SocketAddr,
    socks: SocketAddr,
    tag: &str,
    size: u64,
    index: usize,
    kind: Kind,
    t0: Instant,
) -> StreamSample {
    let started = Instant::now();
    let start_ms = started.duration_since(t0).as_secs_f64() * 1e3;
    let seed = 2000 + index as u64;
    let fetched = tokio::time::timeout(
        STREAM_TIMEOUT,
        fetch_file(files, Some((socks, Some((tag, tag)))), size, seed),
    )
    .await;
    let mut s = StreamSample {
        index,
        kind,
        start_ms,
        ok: false,
        error: None,
        bytes: 0,
        ttfb_ms: f64::NAN,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        mb_per_s: 0.0,
        bulk_running: 0,
    };
    match fetched {
        Ok(Ok(d)) => {
            s.ok = true;
            s.bytes = d.bytes;
            s.ttfb_ms = d.time_to_first_byte.as_secs_f64() * 1e3;
            s.elapsed_ms = d.elapsed.as_secs_f64() * 1e3;
            s.mb_per_s = d.mb_per_s();
        }
        Ok(Err(e)) => s.error = Some(e.to_string()),
        Err(_) => s.error = Some(format!("no end within {} s", STREAM_TIMEOUT.as_secs())),
    }
    s
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    /// A successful stream.
    pub(crate) fn stream(kind: Kind, start_ms: f64, ttfb_ms: f64, elapsed_ms: f64) -> StreamSample {
        let bytes = match kind {
            Kind::Bulk => 10_000_000,
            Kind::Small => 20_000,
        };
        StreamSample {
            index: 0,
            kind,
            start_ms,
            ok: true,
            error: None,
            bytes,
            ttfb_ms,
            elapsed_ms,
            mb_per_s: bytes as f64 / 1e3 / elapsed_ms,
            bulk_running: 0,
        }
    }

    #[test]
    fn schedule_interleaves_bulk_and_small() {
        let ms = Duration::from_millis;
        let s = schedule(5, ms(500));
        assert_eq!(
            s,
            [
                (Kind::Bulk, ms(0)),
                (Kind::Small, ms(500)),
                (Kind::Bulk, ms(0)),
                (Kind::Small, ms(1000)),
                (Kind::Bulk, ms(0)),
            ]
        );
        let s = schedule(20, ms(250));
        assert_eq!(s.iter().filter(|(k, _)| *k == Kind::Bulk).count(), 10);
        assert_eq!(s[19], (Kind::Small, ms(2500)));
        assert!(schedule(0, ms(1)).is_empty());
    }

    #[test]
    fn bulk_streams_running_during_each_small_one() {
        let mut v = vec![
            // Transferring from 100 to 10000 ms, 50 to 3000 ms.
            stream(Kind::Bulk, 0.0, 100.0, 10_000.0),
            stream(Kind::Bulk, 0.0, 50.0, 3_000.0),
            // A failed bulk stream counts for nothing.
            StreamSample {
                ok: false,
                ..stream(Kind::Bulk, 0.0, 10.0, 20_000.0)
            },
            stream(Kind::Small, 500.0, 80.0, 120.0),
            stream(Kind::Small, 2_950.0, 80.0, 120.0),
            stream(Kind::Small, 20.0, 5.0, 10.0),
            stream(Kind::Small, 12_000.0, 5.0, 10.0),
        ];
        mark_bulk_running(&mut v);
        let running: Vec<usize> = v.iter().map(|s| s.bulk_running).collect();
        assert_eq!(running, [0, 0, 0, 2, 1, 0, 0]);
        // Three bulk streams in the run: two running is under load, one is
        // not (less than half), none is not.
        let flags: Vec<bool> = v.iter().map(|s| under_load(s, 3)).collect();
        assert_eq!(flags, [false, false, false, true, false, false, false]);
        assert!(under_load(&v[4], 2));
        let failed = StreamSample {
            ok: false,
            ..v[3].clone()
        };
        assert!(!under_load(&failed, 3));
    }

    #[test]
    fn aggregate_bulk_throughput() {
        let v = vec![
            stream(Kind::Bulk, 0.0, 100.0, 10_000.0),
            stream(Kind::Bulk, 0.0, 50.0, 5_000.0),
            stream(Kind::Small, 500.0, 80.0, 20_000.0),
        ];
        // 20 MB from 0 to 10 s.
        assert_eq!(bulk_aggregate(&v), Some(2.0));
        assert_eq!(bulk_aggregate(&v[2..]), None);
        assert_eq!(bulk_aggregate(&[]), None);
    }
}
