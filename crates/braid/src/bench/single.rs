//! `braid bench single`: Braid's client against the C-tor client, one
//! circuit each, on the same private network in the same run.
//!
//! For each link setting (unshaped, then shaped) a network is started with
//! the C-tor client's Conflux off (`ConfluxEnabled 0`: its single-circuit
//! baseline) and `braid proxy` is started beside it as a child process.
//! Downloads alternate between the two clients (the order flips every
//! repetition), each checked by SHA-256. Client CPU is read from
//! `/proc/PID/stat` around each download and peak RSS from `VmHWM`.

use std::net::SocketAddr;
use std::path::PathBuf;

use braid_testnet::config::parse_rate;
use braid_testnet::download::fetch_file;
use braid_testnet::process::read_records;
use braid_testnet::{NetworkConfig, RelayShape, TestnetError};
use serde::Serialize;

use super::error::BenchError;
use super::output::write_json;
use super::proc::{cpu_seconds, peak_rss_mb};
use super::proxy::start_proxy;
use crate::cli::BenchSingleArgs;
use crate::testnet_cmd::{say, up_interruptible};

#[derive(Debug, Clone, Serialize)]
struct Sample {
    client: &'static str,
    links: String,
    rep: usize,
    mb_per_s: f64,
    ttfb_ms: f64,
    cpu_s_per_100mb: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    client: &'static str,
    links: String,
    runs: usize,
    mb_per_s_mean: f64,
    mb_per_s_min: f64,
    mb_per_s_max: f64,
    ttfb_ms_mean: f64,
    cpu_s_per_100mb_mean: f64,
    peak_rss_mb: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    size_bytes: u64,
    reps: usize,
    tor_version: String,
    rows: Vec<Row>,
    samples: Vec<Sample>,
}

pub(crate) async fn single(args: BenchSingleArgs) -> Result<(), BenchError> {
    let size = parse_rate(&args.size)?;
    let exe = std::env::current_exe().map_err(|e| TestnetError::io("locating", "braid", e))?;
    let mut settings: Vec<(String, Option<(String, RelayShape)>)> = Vec::new();
    if !args.shaped_only {
        settings.push(("unshaped".into(), None));
    }
    let (name, shape) = RelayShape::parse_flag(&args.shape)?;
    settings.push((format!("shaped {}", args.shape), Some((name, shape))));
    let mut samples = Vec::new();
    let mut rows = Vec::new();
    let mut tor_version = String::new();
    for (i, (links, shape)) in settings.into_iter().enumerate() {
        let dir = args.dir.join(format!("net{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = NetworkConfig::new(&dir, &exe);
        config.base_port = args.base_port;
        config.client = true;
        config.client_conflux = false;
        if let Some((name, shape)) = shape {
            config.shapes.insert(name, shape);
        }
        say(&format!(
            "[{links}] starting the network in {}",
            dir.display()
        ));
        let network = up_interruptible(&config).await?;
        let manifest = network.manifest().clone();
        tor_version.clone_from(&manifest.network.tor_version);
        let result = async {
            let toml = dir.join("network.toml");
            let braid_socks: SocketAddr = ([127, 0, 0, 1], args.base_port + 600).into();
            // One circuit against one circuit: Conflux (the default) off.
            let proxy = start_proxy(&toml, braid_socks, &["--conflux-legs".into(), "0".into()])?;
            let braid_pid = proxy.pid();
            let ctor_socks = manifest
                .client_socks()
                .ok_or(BenchError::Missing("C-tor client SOCKS port"))?;
            let ctor_pid = read_records(&dir)?
                .into_iter()
                .find(|r| r.name == "client")
                .map(|r| r.pid)
                .ok_or(BenchError::Missing("C-tor client process"))?;
            let files = manifest.fileserver.address;
            let clients = [("braid", braid_socks, braid_pid), ("C-tor", ctor_socks, ctor_pid)];
            // Warm-up: one small download each (circuits, caches).
            for (_, socks, _) in clients {
                fetch_file(files, Some((socks, None)), 1_000_000, 999).await?;
            }
            let mut mine = Vec::new();
            for rep in 0..args.reps {
                let order: Vec<_> = if rep % 2 == 0 {
                    clients.to_vec()
                } else {
                    clients.iter().rev().copied().collect()
                };
                for (client, socks, pid) in order {
                    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
                    let d = fetch_file(files, Some((socks, None)), size, rep as u64).await?;
                    let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
                    let s = Sample {
                        client,
                        links: links.clone(),
                        rep,
                        mb_per_s: d.mb_per_s(),
                        ttfb_ms: d.time_to_first_byte.as_secs_f64() * 1000.0,
                        cpu_s_per_100mb: (cpu1 - cpu0) * 1e8 / size as f64,
                    };
                    say(&format!(
                        "[{links}] {client:>5} run {}: {:.2} MB/s, first byte {:.0} ms, {:.2} CPU s/100 MB",
                        rep + 1,
                        s.mb_per_s,
                        s.ttfb_ms,
                        s.cpu_s_per_100mb
                    ));
                    mine.push(s);
                }
            }
            for (client, _, pid) in clients {
                let runs: Vec<&Sample> = mine.iter().filter(|s| s.client == client).collect();
                let n = runs.len().max(1) as f64;
                let mean = |f: fn(&Sample) -> f64| runs.iter().map(|s| f(s)).sum::<f64>() / n;
                rows.push(Row {
                    client,
                    links: links.clone(),
                    runs: runs.len(),
                    mb_per_s_mean: mean(|s| s.mb_per_s),
                    mb_per_s_min: runs.iter().map(|s| s.mb_per_s).fold(f64::INFINITY, f64::min),
                    mb_per_s_max: runs.iter().map(|s| s.mb_per_s).fold(0.0, f64::max),
                    ttfb_ms_mean: mean(|s| s.ttfb_ms),
                    cpu_s_per_100mb_mean: mean(|s| s.cpu_s_per_100mb),
                    peak_rss_mb: peak_rss_mb(pid).unwrap_or(0.0),
                });
            }
            samples.extend(mine);
            drop(proxy);
            Ok::<_, BenchError>(())
        }
        .await;
        let stopped = network.down();
        result?;
        stopped?;
    }
    let report = Report {
        size_bytes: size,
        reps: args.reps,
        tor_version,
        rows,
        samples,
    };
    say(&table(&report));
    let json_path: PathBuf = args.dir.join("bench-single.json");
    write_json(&json_path, &report)?;
    say(&format!("wrote {}", json_path.display()));
    Ok(())
}

fn table(r: &Report) -> String {
    let mut out = format!(
        "single circuit, {} MB downloads, {} runs each, tor {}\n",
        r.size_bytes as f64 / 1e6,
        r.reps,
        r.tor_version
    );
    out.push_str(
        "| links | client | MB/s mean (min-max) | first byte ms | CPU s / 100 MB | peak RSS MB |\n|---|---|---|---|---|---|\n",
    );
    for row in &r.rows {
        out.push_str(&format!(
            "| {} | {} | {:.2} ({:.2}-{:.2}) | {:.0} | {:.2} | {:.1} |\n",
            row.links,
            row.client,
            row.mb_per_s_mean,
            row.mb_per_s_min,
            row.mb_per_s_max,
            row.ttfb_ms_mean,
            row.cpu_s_per_100mb_mean,
            row.peak_rss_mb
        ));
    }
    out
}
