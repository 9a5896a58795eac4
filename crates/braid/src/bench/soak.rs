//! `braid bench soak`: `braid proxy` (Conflux on, the default) under a
//! steady mixed load for a long time while the middles of its legs keep
//! dying, to show that nothing grows and nothing is lost.
//!
//! On one private network (C-tor relays and exits, a Braid exit): the
//! proxy runs as a child process with `--metrics`; `--streams` workers
//! loop until the end: a fifth upload, two fifths download bulk files, two
//! fifths make small request/response exchanges, each checked by SHA-256.
//! Every `--kill-every` seconds the middle of a leg that the proxy has open
//! (from its metrics) is killed with SIGKILL and restarted 15 s later, as
//! an operator's relay that crashed and came back. Every second the proxy's
//! resident memory (`VmRSS`), open descriptors (`/proc/PID/fd`) and live
//! tunnels are sampled. The report gives each series' least-squares slope
//! (per minute, over the second half of the run, after the warm-up), the
//! streams completed and failed, and every failure's reason.
//!
//! With `--exit braid` (the default) the proxy's exits are the Braid exit,
//! where resumption should leave no stream failed; `--exit tor` uses the
//! C-tor exits, where a busy leg's loss resets its streams.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_testnet::download::{fetch_file, http_get, upload_file};
use braid_testnet::process::{read_records, spawn_recorded};
use braid_testnet::{NetworkConfig, TestnetError};
use rand::RngExt;
use serde::Serialize;

use super::error::BenchError;
use super::output::write_json;
use super::prom::{PromSample, parse};
use super::proxy::start_proxy;
use crate::cli::{BenchExit, BenchSoakArgs};
use crate::testnet_cmd::{say, up_interruptible};

/// How long a killed relay stays down.
const DOWN_FOR: Duration = Duration::from_secs(15);

/// Bytes of a small request/response exchange.
const SMALL: u64 = 20_000;

/// One sample of the proxy process.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    t_s: f64,
    rss_mb: f64,
    fds: usize,
    tunnels: usize,
}

/// What the workers did.
#[derive(Debug, Default, Serialize)]
struct Outcomes {
    completed: BTreeMap<String, usize>,
    failed: BTreeMap<String, usize>,
    /// Failure reasons and how often each came.
    reasons: BTreeMap<String, usize>,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    minutes: f64,
    streams: usize,
    exit: String,
    kills: Vec<(f64, String)>,
    rss_mb_first: f64,
    rss_mb_last: f64,
    rss_mb_max: f64,
    rss_mb_per_min: f64,
    fds_first: usize,
    fds_last: usize,
    fds_per_min: f64,
    tunnels_max: usize,
    tunnels_per_min: f64,
    outcomes: Outcomes,
    samples: Vec<Sample>,
}

pub(crate) async fn soak(args: BenchSoakArgs) -> Result<(), BenchError> {
    if args.streams == 0 || args.minutes <= 0.0 {
        return Err(BenchError::Usage(
            "--streams and --minutes must be positive".into(),
        ));
    }
    if args.exit == BenchExit::Both {
        return Err(BenchError::Usage("--exit takes braid or tor here".into()));
    }
    let exe = std::env::current_exe().map_err(|e| TestnetError::io("locating", "braid", e))?;
    let dir = args.dir.join("net");
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = NetworkConfig::new(&dir, &exe);
    config.base_port = args.base_port;
    config.client = false;
    config.braid_exits = 1;
    if args.debug_logs {
        config.braid_log_level = "debug".into();
    }
    say(&format!("starting the network in {}", dir.display()));
    let network = up_interruptible(&config).await?;
    let manifest = network.manifest().clone();
    let result = async {
        let toml = dir.join("network.toml");
        let socks: SocketAddr = ([127, 0, 0, 1], args.base_port + 600).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], args.base_port + 601).into();
        let exits: Vec<String> = manifest
            .relays
            .iter()
            .filter(|r| {
                r.exit && (r.nickname.starts_with("braid") == (args.exit == BenchExit::Braid))
            })
            .map(|r| r.nickname.clone())
            .collect();
        if exits.is_empty() {
            return Err(BenchError::Missing("exit of the asked kind"));
        }
        let mut extra = vec![
            "--metrics".into(),
            metrics.to_string(),
            "--exit-nodes".into(),
            exits.join(","),
        ];
        if args.debug_logs {
            // With start_proxy's -v: -vv, debug.
            extra.push("-v".into());
        }
        let proxy = start_proxy(&toml, socks, &extra)?;
        let pid = proxy.pid();
        let files = manifest.fileserver.address;
        let run_for = Duration::from_secs_f64(args.minutes * 60.0);
        let start = Instant::now();
        let end = start + run_for;
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let mut workers = Vec::new();
        for i in 0..args.streams {
            let outcomes = outcomes.clone();
            let bulk = args.bulk_bytes;
            workers.push(tokio::spawn(async move {
                worker(i, files, socks, bulk, end, &outcomes).await;
            }));
        }
        let mut samples = Vec::new();
        let mut kills = Vec::new();
        let mut next_kill = start + Duration::from_secs(args.kill_every);
        let mut restarts: Vec<(Instant, String)> = Vec::new();
        let mut last_report = start;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = Instant::now();
            let raw = scrape_raw(metrics).await.unwrap_or_default();
            let tunnels = parse(&raw)
                .iter()
                .find(|s| s.name == "braid_tunnels")
                .map_or(0, |s| s.value as usize);
            samples.push(Sample {
                t_s: now.duration_since(start).as_secs_f64(),
                rss_mb: rss_mb(pid).unwrap_or(0.0),
                fds: fd_count(pid).unwrap_or(0),
                tunnels,
            });
            // No kill so late that the run ends before the relay is back.
            if args.kill_every > 0 && now >= next_kill && now + DOWN_FOR < end {
                next_kill = now + Duration::from_secs(args.kill_every);
                if let Some(middle) = pick_middle(&raw, &restarts) {
                    kill(&dir, &middle)?;
                    say(&format!(
                        "{:>6.0} s: killed {middle} (a middle of a live leg)",
                        now.duration_since(start).as_secs_f64()
                    ));
                    kills.push((now.duration_since(start).as_secs_f64(), middle.clone()));
                    restarts.push((now + DOWN_FOR, middle));
                }
            }
            restart_due(&dir, &mut restarts, now)?;
            if now.duration_since(last_report) >= Duration::from_secs(60) {
                last_report = now;
                let o = outcomes.lock().unwrap_or_else(|e| e.into_inner());
                let s = samples.last().cloned();
                say(&format!(
                    "{:>6.0} s: {} streams done, {} failed; RSS {:.1} MB, {} fds, {} tunnels",
                    now.duration_since(start).as_secs_f64(),
                    o.completed.values().sum::<usize>(),
                    o.failed.values().sum::<usize>(),
                    s.as_ref().map_or(0.0, |s| s.rss_mb),
                    s.as_ref().map_or(0, |s| s.fds),
                    s.as_ref().map_or(0, |s| s.tunnels),
                ));
            }
        }
        // The transfers still running finish; killed relays come back on
        // time meanwhile.
        let mut finishing = Box::pin(async {
            for w in workers {
                let _ = w.await;
            }
        });
        let mut finished = false;
        while !restarts.is_empty() {
            tokio::select! {
                () = &mut finishing => {
                    finished = true;
                    break;
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            restart_due(&dir, &mut restarts, Instant::now())?;
        }
        if !finished {
            finishing.await;
        }
        for (_, name) in restarts {
            restart(&dir, &name)?;
        }
        drop(proxy);
        let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()));
        Ok::<_, BenchError>(report(&args, samples, kills, outcomes))
    }
    .await;
    let stopped = network.down();
    let report = result?;
    stopped?;
    say(&table(&report));
    let json_path = args.dir.join("bench-soak.json");
    write_json(&json_path, &report)?;
    say(&format!("wrote {}", json_path.display()));
    Ok(())
}

/// One worker's loop until `end`: its kind by its index.
async fn worker(
    i: usize,
    files: SocketAddr,
    socks: SocketAddr,
    bulk: u64,
    end: Instant,
    outcomes: &Mutex<Outcomes>,
) {
    let kind = match i % 5 {
        0 => "upload",
        1 | 2 => "bulk",
        _ => "small",
    };
    let mut seed = (i as u64) << 32;
    while Instant::now() < end {
        seed += 1;
        let left = end.saturating_duration_since(Instant::now());
        let size = if kind == "small" { SMALL } else { bulk };
        let run = async {
            match kind {
                "upload" => upload_file(files, Some((socks, None)), size, seed)
                    .await
                    .map(|u| u.bytes),
                _ => fetch_file(files, Some((socks, None)), size, seed)
                    .await
                    .map(|d| d.bytes),
            }
        };
        // A transfer still running at the end is neither done nor failed.
        let Ok(result) = tokio::time::timeout(left + Duration::from_secs(120), run).await else {
            record(
                outcomes,
                kind,
                Err("did not finish 120 s after the end".into()),
            );
            return;
        };
        record(outcomes, kind, result.map_err(|e| e.to_string()));
        if kind == "small" {
            let pause = rand::rng().random_range(100..400);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

fn record(outcomes: &Mutex<Outcomes>, kind: &str, result: Result<u64, String>) {
    let mut o = outcomes.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(bytes) => {
            *o.completed.entry(kind.into()).or_default() += 1;
            o.bytes += bytes;
        }
        Err(why) => {
            *o.failed.entry(kind.into()).or_default() += 1;
            *o.reasons
                .entry(format!("{kind}: {}", reason(&why)))
                .or_default() += 1;
        }
    }
}

/// A failure's reason without the URL (which names the seed, different for
/// every transfer): `HTTP URL: DETAIL` gives `DETAIL`.
fn reason(why: &str) -> &str {
    why.strip_prefix("HTTP ")
        .and_then(|rest| rest.split_once(": "))
        .map_or(why, |(_, detail)| detail)
}

/// The proxy's Prometheus text.
pub(super) async fn scrape_raw(addr: SocketAddr) -> Option<String> {
    let get = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut body = Vec::new();
        let head = http_get(stream, &addr.to_string(), "/metrics", |chunk| {
            body.extend_from_slice(chunk);
            body.len() < 16 * 1024 * 1024
        })
        .await
        .ok()?;
        (head.status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()?
}

/// A middle of one of the proxy's open legs (their `path` label is
/// "guard>middle>exit"), not one already down.
fn pick_middle(raw: &str, down: &[(Instant, String)]) -> Option<String> {
    let middles: Vec<String> = parse(raw)
        .into_iter()
        .filter(|s| s.name == "braid_leg_open" && s.value > 0.0)
        .filter_map(|s| leg_middle(&s).map(str::to_owned))
        .filter(|m| !down.iter().any(|(_, d)| d == m))
        .collect();
    if middles.is_empty() {
        return None;
    }
    let i = rand::rng().random_range(0..middles.len());
    middles.get(i).cloned()
}

/// SIGKILL the network's process `name` (by its recorded pid).
pub(super) fn kill(dir: &std::path::Path, name: &str) -> Result<(), BenchError> {
    let record = read_records(dir)?
        .into_iter()
        .rev()
        .find(|r| r.name == name && braid_testnet::process::is_alive(r))
        .ok_or_else(|| BenchError::Failed(format!("no live process {name}")))?;
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &record.pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(BenchError::Failed(format!("cannot kill {name}")))
    }
}

/// Restart the relays of `restarts` whose time came by `now`.
fn restart_due(
    dir: &std::path::Path,
    restarts: &mut Vec<(Instant, String)>,
    now: Instant,
) -> Result<(), BenchError> {
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(restarts)
        .into_iter()
        .partition(|(at, _)| *at <= now);
    *restarts = later;
    for (_, name) in due {
        restart(dir, &name)?;
    }
    Ok(())
}

/// The middle of a leg from its `braid_leg_open` sample's `path` label
/// (`guard>middle>exit`).
pub(super) fn leg_middle(open: &PromSample) -> Option<&str> {
    open.label("path").and_then(|p| p.split('>').nth(1))
}

/// Start the C-tor relay `name` again from its torrc (same keys, same
/// ports); recorded, so the network's `down` stops it.
pub(super) fn restart(dir: &std::path::Path, name: &str) -> Result<(), BenchError> {
    let node = dir.join("nodes").join(name);
    let mut cmd = std::process::Command::new("tor");
    cmd.arg("-f").arg(node.join("torrc"));
    spawn_recorded(dir, name, cmd, &node.join("restart.log"))?;
    Ok(())
}

/// Resident memory now (`VmRSS`), MB.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Open file descriptors now.
fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Least-squares slope of `(x, y)` points, per unit of x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn report(
    args: &BenchSoakArgs,
    samples: Vec<Sample>,
    kills: Vec<(f64, String)>,
    outcomes: Outcomes,
) -> Report {
    // The second half: after warm-up (tunnels built, buffers grown).
    let half = samples.get(samples.len() / 2..).unwrap_or_default();
    let per_min = |f: fn(&Sample) -> f64| {
        slope(
            &half
                .iter()
                .map(|s| (s.t_s / 60.0, f(s)))
                .collect::<Vec<_>>(),
        )
    };
    Report {
        minutes: args.minutes,
        streams: args.streams,
        exit: format!("{:?}", args.exit).to_lowercase(),
        kills,
        rss_mb_first: half.first().map_or(0.0, |s| s.rss_mb),
        rss_mb_last: samples.last().map_or(0.0, |s| s.rss_mb),
        rss_mb_max: samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max),
        rss_mb_per_min: per_min(|s| s.rss_mb),
        fds_first: half.first().map_or(0, |s| s.fds),
        fds_last: samples.last().map_or(0, |s| s.fds),
        fds_per_min: per_min(|s| s.fds as f64),
        tunnels_max: samples.iter().map(|s| s.tunnels).max().unwrap_or(0),
        tunnels_per_min: per_min(|s| s.tunnels as f64),
        outcomes,
        samples,
    }
}

fn table(r: &Report) -> String {
    let done: usize = r.outcomes.completed.values().sum();
    let failed: usize = r.outcomes.failed.values().sum();
    let mut out = format!(
        "soak: {:.1} min, {} streams, exit {}, {} middles killed\n\
         | series | second half start | end | max | slope per minute |\n|---|---|---|---|---|\n\
         | RSS MB | {:.1} | {:.1} | {:.1} | {:+.3} |\n\
         | open fds | {} | {} | - | {:+.3} |\n\
         | tunnels | - | - | {} | {:+.3} |\n\
         streams completed {done} ({}), failed {failed} ({}); {:.1} MB moved\n",
        r.minutes,
        r.streams,
        r.exit,
        r.kills.len(),
        r.rss_mb_first,
        r.rss_mb_last,
        r.rss_mb_max,
        r.rss_mb_per_min,
        r.fds_first,
        r.fds_last,
        r.fds_per_min,
        r.tunnels_max,
        r.tunnels_per_min,
        kinds(&r.outcomes.completed),
        kinds(&r.outcomes.failed),
        r.outcomes.bytes as f64 / 1e6,
    );
    for (why, n) in &r.outcomes.reasons {
        out.push_str(&format!("  {n} x {why}\n"));
    }
    out
}

fn kinds(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 + 2.0 * f64::from(i)))
            .collect();
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), f64::from(i % 2))).collect();
        assert!(slope(&flat).abs() < 0.1);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }

    #[test]
    fn reasons_lose_their_url() {
        assert_eq!(
            reason(
                "HTTP http://127.0.0.1:21120/upload/2000000?seed=67: Connection reset by peer (os error 104)"
            ),
            "Connection reset by peer (os error 104)"
        );
        assert_eq!(reason("did not finish"), "did not finish");
    }

    #[test]
    fn middles_come_from_open_legs_not_down_ones() {
        let raw = "braid_leg_open{tunnel=\"1\",leg=\"0\",path=\"g0>m1>braidexit0\"} 1\n\
                   braid_leg_open{tunnel=\"1\",leg=\"1\",path=\"g1>m2>braidexit0\"} 0\n\
                   braid_leg_open{tunnel=\"2\",leg=\"0\",path=\"g1>m3>braidexit0\"} 1\n";
        let down = vec![(Instant::now(), "m3".to_owned())];
        for _ in 0..20 {
            assert_eq!(pick_middle(raw, &down).as_deref(), Some("m1"));
        }
        let all = vec![
            (Instant::now(), "m1".to_owned()),
            (Instant::now(), "m3".to_owned()),
        ];
        assert_eq!(pick_middle(raw, &all), None);
    }
}
