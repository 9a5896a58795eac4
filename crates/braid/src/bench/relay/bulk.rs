//! One bulk download through one exit: the C-tor client pinned to
//! `GUARD > BULK_MIDDLE > exit`, the circuit built by a small download on
//! a fresh isolation tag, then the measured download on the same circuit,
//! checked by SHA-256, with the exit's CPU time around it.

use std::time::Duration;

use braid_testnet::download::fetch_file;
use serde::Serialize;

use super::client::CtorClient;
use super::setup::{BULK_MIDDLE, Exit, Settings};
use crate::bench::error::BenchError;
use crate::bench::proc::cpu_seconds;

/// How long one bulk download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// One bulk download.
#[derive(Debug, Clone, Serialize)]
pub(super) struct BulkSample {
    /// The exit.
    pub(super) exit: Exit,
    /// The repetition.
    pub(super) rep: usize,
    /// Whether the whole body arrived with the right SHA-256.
    pub(super) ok: bool,
    /// Why not.
    pub(super) error: Option<String>,
    /// Throughput: bytes over the time from the SOCKS connection to the
    /// last byte (MB/s).
    pub(super) mb_per_s: f64,
    /// Milliseconds from the SOCKS connection to the first body byte.
    pub(super) ttfb_ms: f64,
    /// The exit's CPU seconds during the download.
    pub(super) exit_cpu_s: f64,
    /// The exit's CPU seconds per 100 MB.
    pub(super) cpu_s_per_100mb: f64,
}

/// Downloads `settings.size` bytes through `exit` (process `pid`). A failed
/// download is a sample with `ok` false; a circuit that cannot be built or
/// takes another path is an error.
pub(super) async fn bulk_download(
    client: &mut CtorClient,
    settings: &Settings,
    exit: Exit,
    rep: usize,
    pid: u32,
) -> Result<BulkSample, BenchError> {
    let tag = format!("bulk-{}-{rep}", exit.nickname());
    client.pin(BULK_MIDDLE, exit).await?;
    client
        .prepare(std::slice::from_ref(&tag), BULK_MIDDLE, exit)
        .await?;
    let mut s = BulkSample {
        exit,
        rep,
        ok: false,
        error: None,
        mb_per_s: 0.0,
        ttfb_ms: f64::NAN,
        exit_cpu_s: f64::NAN,
        cpu_s_per_100mb: f64::NAN,
    };
    let auth = Some((client.socks, Some((tag.as_str(), tag.as_str()))));
    let cpu0 = cpu_seconds(pid);
    let fetched = tokio::time::timeout(
        DOWNLOAD_TIMEOUT,
        fetch_file(client.files, auth, settings.size, rep as u64),
    )
    .await;
    let cpu1 = cpu_seconds(pid);
    match fetched {
        Ok(Ok(d)) => {
            s.ok = true;
            s.mb_per_s = d.mb_per_s();
            s.ttfb_ms = d.time_to_first_byte.as_secs_f64() * 1e3;
            if let (Some(a), Some(b)) = (cpu0, cpu1) {
                s.exit_cpu_s = b - a;
                s.cpu_s_per_100mb = (b - a) * 1e8 / d.bytes.max(1) as f64;
            }
        }
        Ok(Err(e)) => s.error = Some(e.to_string()),
        Err(_) => s.error = Some(format!("no end within {} s", DOWNLOAD_TIMEOUT.as_secs())),
    }
    Ok(s)
}
