//! `braid bench resume`: the busy leg's middle killed under a transfer,
//! many times, through the Braid exit (resumption, Braid proposal 001 §3,
//! prop 329 §2.7) and through a C-tor exit (prop 329's rules: the stream
//! resets), on one network.
//!
//! `braid proxy` (Conflux on, metrics on, middles among eight C-tor
//! relays) runs as a child. For each exit kind, one transfer each way
//! without a kill gives the usual time T; then each run starts a download
//! or an upload of
//! `--size` and at a random point (between 20% and 70% of T) kills with
//! SIGKILL the middle of the leg that carried the most bytes in the last
//! 300 ms (from the proxy's per-leg metrics); the relay is restarted once
//! the transfer ends. Each run has a set of its own, built by a small
//! transfer first (a set killed every few seconds would meet the client's
//! rules against repeated losses instead). A run whose transfer ends
//! before its kill is run again. Per run: completed (SHA-256 checked)
//! or why not, time against T, the client's stall (leg loss to data
//! flowing again, `braid_tunnel_recovery_seconds`), cells resent both ways
//! and the retransmit buffer's peak. A table per exit kind and a JSON file.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use braid_testnet::config::parse_rate;
use braid_testnet::download::{fetch_file, upload_file};
use braid_testnet::plan::Software;
use braid_testnet::{NetworkConfig, RelayShape, TestnetError};
use rand::RngExt;
use serde::Serialize;

use super::error::BenchError;
use super::median;
use super::output::write_json;
use super::prom::{PromSample, parse};
use super::proxy::start_proxy;
use super::soak::{kill, leg_middle, restart, scrape_raw};
use crate::cli::{BenchExit, BenchResumeArgs};
use crate::testnet_cmd::{say, up_interruptible};

/// How long a transfer with a kill may take, past its usual time.
const GRACE: Duration = Duration::from_secs(120);
/// Between kills: time for the killed relay to come back. Each run has a
/// set of its own: one set killed every few seconds would meet the
/// client's rules against repeated losses (3 resumptions a minute and a
/// launch budget refilled once a minute, Braid proposal 001 §3.5; 3 legs
/// lost in a minute move its streams to another set), which the soak
/// exercises.
const SPACING: Duration = Duration::from_secs(5);
/// Bytes of the transfer that builds a run's set before the measured one.
const WARM_UP: u64 = 50_000;

/// One run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    exit: String,
    direction: &'static str,
    /// When the middle was killed, seconds after the transfer began.
    killed_at_s: f64,
    middle: String,
    /// Completed with the right SHA-256.
    completed: bool,
    /// Why not.
    error: Option<String>,
    /// Its time over the usual time.
    slowdown: Option<f64>,
    /// Leg loss to data flowing again, as the client measured it.
    stall_s: Option<f64>,
    cells_resent_by_us: f64,
    cells_resent_by_peer: f64,
    retransmit_peak_bytes: f64,
    /// What the legs' congestion windows allowed at that peak.
    retransmit_peak_bound_bytes: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    size_bytes: u64,
    runs_per_direction: usize,
    shape: String,
    usual_s: Vec<(String, &'static str, f64)>,
    runs: Vec<Run>,
}

pub(crate) async fn resume(args: BenchResumeArgs) -> Result<(), BenchError> {
    let size = parse_rate(&args.size)?;
    if args.runs == 0 || size == 0 {
        return Err(BenchError::Usage(
            "--runs and --size must be positive".into(),
        ));
    }
    let exe = std::env::current_exe().map_err(|e| TestnetError::io("locating", "braid", e))?;
    let dir = args.dir.join("net");
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = NetworkConfig::new(&dir, &exe);
    config.base_port = args.base_port;
    config.client = false;
    config.braid_exits = 1;
    // Enough middles that legs killed and relaunched always find one.
    config.relays = 8;
    if args.debug_logs {
        config.braid_log_level = "debug".into();
    }
    let (name, shape) = RelayShape::parse_flag(&args.shape)?;
    config.shapes.insert(name, shape);
    say(&format!("starting the network in {}", dir.display()));
    let network = up_interruptible(&config).await?;
    let manifest = network.manifest().clone();
    let kinds: Vec<bool> = match args.exit {
        BenchExit::Braid => vec![true],
        BenchExit::Tor => vec![false],
        BenchExit::Both => vec![true, false],
    };
    let result = async {
        let mut report = Report {
            size_bytes: size,
            runs_per_direction: args.runs,
            shape: args.shape.clone(),
            usual_s: Vec::new(),
            runs: Vec::new(),
        };
        for (k, braid) in kinds.into_iter().enumerate() {
            let exit_name = if braid { "braid" } else { "C-tor" };
            let exits: Vec<String> = manifest
                .relays
                .iter()
                .filter(|r| r.exit && r.nickname.starts_with("braid") == braid)
                .map(|r| r.nickname.clone())
                .collect();
            // Middles: the C-tor relays that are neither exits nor
            // authorities (so that a killed one is restarted as it ran),
            // for both kinds of exit alike.
            let middles: Vec<String> = manifest
                .relays
                .iter()
                .filter(|r| {
                    !r.exit && r.software == Software::Tor && !r.nickname.starts_with("auth")
                })
                .map(|r| r.nickname.clone())
                .collect();
            let port = args.base_port + 600 + 2 * k as u16;
            let socks: SocketAddr = ([127, 0, 0, 1], port).into();
            let metrics: SocketAddr = ([127, 0, 0, 1], port + 1).into();
            // Each proxy its own copy of the network file, so that its log
            // (beside it, `proxy-<exit>.log`) is its own.
            let toml = dir.join(format!(
                "proxy-{}.toml",
                if braid { "braid" } else { "tor" }
            ));
            std::fs::copy(dir.join("network.toml"), &toml)
                .map_err(|e| TestnetError::io("copying", "network.toml", e))?;
            let mut extra = vec![
                "--metrics".into(),
                metrics.to_string(),
                "--exit-nodes".into(),
                exits.join(","),
                "--middle-nodes".into(),
                middles.join(","),
            ];
            if args.debug_logs {
                // With start_proxy's -v: -vv, debug.
                extra.push("-v".into());
            }
            let proxy = start_proxy(&toml, socks, &extra)?;
            let files = manifest.fileserver.address;
            let bench = Bench {
                dir: &dir,
                socks,
                metrics,
                files,
                size,
            };
            let mut last_kill: Option<Instant> = None;
            for direction in ["download", "upload"] {
                // Each run on a set of its own (its own SOCKS credentials),
                // built by a small transfer first, so that the measured
                // one starts on the set (not on the single circuit that
                // carries streams while a set builds).
                let key = format!("usual-{k}-{direction}");
                bench.warm_up(&key).await?;
                let t0 = Instant::now();
                bench.transfer(direction, &key, 0).await?;
                let usual = t0.elapsed();
                say(&format!(
                    "[{exit_name}] {direction} of {size} bytes without a kill: {:.2} s",
                    usual.as_secs_f64()
                ));
                report
                    .usual_s
                    .push((exit_name.to_owned(), direction, usual.as_secs_f64()));
                let mut i = 0;
                let mut tries = 0;
                while i < args.runs {
                    tries += 1;
                    if tries > 3 * args.runs {
                        return Err(BenchError::Failed(
                            "the transfers keep ending before the kill: use a larger --size".into(),
                        ));
                    }
                    if let Some(t) = last_kill {
                        tokio::time::sleep_until((t + SPACING).into()).await;
                    }
                    let key = format!("run-{k}-{direction}-{tries}");
                    bench.warm_up(&key).await?;
                    let Some(run) = bench
                        .run(exit_name, direction, &key, usual, tries as u64)
                        .await?
                    else {
                        continue;
                    };
                    last_kill = Some(Instant::now());
                    i += 1;
                    say(&format!(
                        "[{exit_name}] {direction} {i}: killed {} at {:.2} s: {}",
                        run.middle,
                        run.killed_at_s,
                        match (&run.error, run.slowdown, run.stall_s) {
                            (Some(e), _, _) => format!("failed ({e})"),
                            (None, s, st) => format!(
                                "completed, x{:.2} the usual time, stall {}",
                                s.unwrap_or(0.0),
                                st.map_or("-".into(), |v| format!("{:.0} ms", v * 1000.0))
                            ),
                        }
                    ));
                    report.runs.push(run);
                }
            }
            drop(proxy);
        }
        Ok::<_, BenchError>(report)
    }
    .await;
    let stopped = network.down();
    let report = result?;
    stopped?;
    say(&table(&report));
    let json_path = args.dir.join("bench-resume.json");
    write_json(&json_path, &report)?;
    say(&format!("wrote {}", json_path.display()));
    Ok(())
}

struct Bench<'a> {
    dir: &'a std::path::Path,
    socks: SocketAddr,
    metrics: SocketAddr,
    files: SocketAddr,
    size: u64,
}

impl Bench<'_> {
    /// A small download that builds `key`'s set.
    async fn warm_up(&self, key: &str) -> Result<(), BenchError> {
        fetch_file(self.files, Some((self.socks, Some((key, "x")))), WARM_UP, 7).await?;
        Ok(())
    }

    /// One checked transfer on the set of SOCKS user `key`.
    async fn transfer(&self, direction: &str, key: &str, seed: u64) -> Result<(), BenchError> {
        let proxy = Some((self.socks, Some((key, "x"))));
        if direction == "upload" {
            upload_file(self.files, proxy, self.size, seed).await?;
        } else {
            fetch_file(self.files, proxy, self.size, seed).await?;
        }
        Ok(())
    }

    /// A transfer whose busy leg's middle dies at a random point.
    async fn run(
        &self,
        exit: &str,
        direction: &'static str,
        key: &str,
        usual: Duration,
        seed: u64,
    ) -> Result<Option<Run>, BenchError> {
        let start = Instant::now();
        let transfer = self.transfer(direction, key, seed + 1);
        tokio::pin!(transfer);
        let wait = usual.mul_f64(rand::rng().random_range(0.2..0.7));
        let mut early = None;
        tokio::select! {
            r = &mut transfer => early = Some(r),
            () = tokio::time::sleep(wait) => {}
        }
        if let Some(r) = early {
            say(&format!(
                "[{exit}] {direction}: the transfer ended before the kill ({}), again",
                r.map_or_else(|e| e.to_string(), |()| "completed".into())
            ));
            return Ok(None);
        }
        let Some((tunnel, middle)) = busy_middle(self.metrics, direction == "upload").await else {
            say(&format!(
                "[{exit}] {direction}: no leg carried the transfer, again"
            ));
            let _ = tokio::time::timeout(usual + GRACE, &mut transfer).await;
            return Ok(None);
        };
        kill(self.dir, &middle)?;
        let killed_at_s = start.elapsed().as_secs_f64();
        let outcome = tokio::time::timeout(usual + GRACE, &mut transfer).await;
        let elapsed = start.elapsed();
        let after_raw = scrape_raw(self.metrics).await.unwrap_or_default();
        restart(self.dir, &middle)?;
        let after = parse(&after_raw);
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "not done {} s after the usual time",
                GRACE.as_secs()
            )),
        };
        // The busy leg's tunnel (gone if it closed).
        // Its figures: the set is this run's alone.
        let of_tunnel = |name: &str, label: Option<(&str, &str)>| {
            after
                .iter()
                .find(|s| {
                    s.name == name
                        && s.label("tunnel") == Some(tunnel.as_str())
                        && label.is_none_or(|(k, v)| s.label(k) == Some(v))
                })
                .map(|s| s.value)
        };
        let stall_s = of_tunnel("braid_tunnel_recovery_seconds", Some(("which", "last")));
        let peak = of_tunnel("braid_tunnel_retransmit_peak_bytes", None).unwrap_or(0.0);
        let bound = of_tunnel("braid_tunnel_retransmit_peak_bound_bytes", None).unwrap_or(0.0);
        let resent = |by| of_tunnel("braid_tunnel_cells_resent_total", Some(("by", by)));
        Ok(Some(Run {
            exit: exit.to_owned(),
            direction,
            killed_at_s,
            middle,
            completed: error.is_none(),
            slowdown: error
                .is_none()
                .then(|| elapsed.as_secs_f64() / usual.as_secs_f64().max(1e-3)),
            error,
            stall_s,
            cells_resent_by_us: resent("us").unwrap_or(0.0),
            cells_resent_by_peer: resent("peer").unwrap_or(0.0),
            retransmit_peak_bytes: peak,
            retransmit_peak_bound_bytes: bound,
        }))
    }
}

/// The tunnel and the middle of the open leg that moved the most DATA
/// bytes (received, or sent for an upload) over 300 ms.
async fn busy_middle(metrics: SocketAddr, upload: bool) -> Option<(String, String)> {
    let name = if upload {
        "braid_leg_data_bytes_sent_total"
    } else {
        "braid_leg_data_bytes_received_total"
    };
    let bytes = |samples: &[PromSample]| -> Vec<((String, String), f64)> {
        samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| {
                Some((
                    (s.label("tunnel")?.to_owned(), s.label("leg")?.to_owned()),
                    s.value,
                ))
            })
            .collect()
    };
    let first = bytes(&parse(&scrape_raw(metrics).await?));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = scrape_raw(metrics).await?;
    let samples = parse(&raw);
    let (busiest, _) = bytes(&samples)
        .into_iter()
        .map(|(k, v)| {
            let was = first.iter().find(|(f, _)| *f == k).map_or(0.0, |(_, v)| *v);
            (k, v - was)
        })
        .filter(|(_, moved)| *moved > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    samples
        .iter()
        .filter(|s| s.name == "braid_leg_open" && s.value > 0.0)
        .find(|s| {
            s.label("tunnel") == Some(busiest.0.as_str())
                && s.label("leg") == Some(busiest.1.as_str())
        })
        .and_then(leg_middle)
        .map(|m| (busiest.0.clone(), m.to_owned()))
}

/// Per exit kind and direction: runs, completed, time against the usual,
/// stall (median, max), cells resent, retransmit peak (the largest, with
/// what the legs' congestion windows allowed at it, and how many runs
/// went past their windows).
fn table(r: &Report) -> String {
    let mut out = format!(
        "resume: {} bytes, {} runs each way per exit, links {}\n\
         | exit | direction | usual s | completed | time / usual (median) | stall ms (median, max) | cells resent us/peer (mean) | retransmit peak KiB (max) / windows KiB | runs past windows |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        r.size_bytes, r.runs_per_direction, r.shape
    );
    for (exit, direction, usual) in &r.usual_s {
        let runs: Vec<&Run> = r
            .runs
            .iter()
            .filter(|x| &x.exit == exit && x.direction == *direction)
            .collect();
        let done = runs.iter().filter(|x| x.completed).count();
        let slow: Vec<f64> = runs.iter().filter_map(|x| x.slowdown).collect();
        let stall: Vec<f64> = runs
            .iter()
            .filter(|x| x.completed)
            .filter_map(|x| x.stall_s)
            .map(|s| s * 1000.0)
            .collect();
        let n = runs.len().max(1) as f64;
        let us: f64 = runs.iter().map(|x| x.cells_resent_by_us).sum::<f64>() / n;
        let peer: f64 = runs.iter().map(|x| x.cells_resent_by_peer).sum::<f64>() / n;
        let top = runs
            .iter()
            .max_by(|a, b| a.retransmit_peak_bytes.total_cmp(&b.retransmit_peak_bytes));
        let peak = top.map_or(0.0, |x| x.retransmit_peak_bytes) / 1024.0;
        let bound = top.map_or(0.0, |x| x.retransmit_peak_bound_bytes) / 1024.0;
        let past = runs
            .iter()
            .filter(|x| x.retransmit_peak_bytes > x.retransmit_peak_bound_bytes)
            .count();
        out.push_str(&format!(
            "| {exit} | {direction} | {usual:.2} | {done}/{} | {} | {} | {us:.0}/{peer:.0} | {peak:.0} / {bound:.0} | {past} |\n",
            runs.len(),
            median(&slow).map_or("-".into(), |m| format!("{m:.2}")),
            median(&stall).map_or("-".into(), |m| format!(
                "{m:.0}, {:.0}",
                stall.iter().copied().fold(0.0, f64::max)
            )),
        ));
    }
    let failures: Vec<String> = r
        .runs
        .iter()
        .filter_map(|x| {
            x.error
                .as_ref()
                .map(|e| format!("  {} {}: {e}", x.exit, x.direction))
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("failures:\n");
        out.push_str(&failures.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn run(exit: &str, error: Option<&str>, stall: Option<f64>) -> Run {
        Run {
            exit: exit.into(),
            direction: "download",
            killed_at_s: 1.0,
            middle: "relay1".into(),
            completed: error.is_none(),
            error: error.map(Into::into),
            slowdown: error.is_none().then_some(1.5),
            stall_s: stall,
            cells_resent_by_us: 0.0,
            cells_resent_by_peer: 120.0,
            retransmit_peak_bytes: 2048.0,
            retransmit_peak_bound_bytes: 4096.0,
        }
    }

    #[test]
    fn the_table_counts_completions_and_names_failures() {
        let r = Report {
            size_bytes: 1000,
            runs_per_direction: 3,
            shape: "relays:4MiB:10ms".into(),
            usual_s: vec![
                ("braid".into(), "download", 2.0),
                ("C-tor".into(), "download", 2.0),
            ],
            runs: vec![
                run("braid", None, Some(0.2)),
                run("braid", None, Some(0.4)),
                run("braid", None, Some(0.3)),
                run("C-tor", Some("connection reset"), None),
            ],
        };
        let t = table(&r);
        assert!(
            t.contains("| braid | download | 2.00 | 3/3 | 1.50 | 300, 400 | 0/120 | 2 / 4 | 0 |"),
            "{t}"
        );
        assert!(
            t.contains("| C-tor | download | 2.00 | 0/1 | - | - |"),
            "{t}"
        );
        assert!(t.contains("  C-tor download: connection reset"), "{t}");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
