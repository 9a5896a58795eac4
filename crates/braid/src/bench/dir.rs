//! `braid bench dir`: directory bootstrap, Braid's client beside the
//! C-tor client on one private network (issue 16).
//!
//! Three cases, each run `runs` times per client, the two clients taking
//! turns: **cold** (no cache), **warm** (the cache of a moment ago: the
//! consensus still fresh) and **diff** (a cache three consensus periods
//! old: both clients start from it, so the figure is the time and bytes
//! until they hold a newer consensus, fetched by diff where the caches
//! offer one).
//!
//! Braid: [`DirDriver::bootstrap`] in this process, from a cache
//! directory of its own; time from the start to a usable directory
//! (every document checked), bytes as the directory responses came on the
//! wire (HTTP heads and bodies, compressed as sent). C-tor: the network's
//! C-tor client restarted with its DataDirectory emptied or kept; time
//! from the start of the process to `status/enough-dir-info` = 1 (in the
//! diff case, to `consensus/valid-after` later than the cache's), bytes
//! from `traffic/read` (every byte read on its OR connections, TLS and
//! cells included, and the circuits it builds meanwhile: an upper bound
//! of its directory bytes). Both count from a cold process, so C-tor's
//! time includes its start-up.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use braid_client::{ClientConfig, DirDriver};
use braid_testnet::control::ControlConn;
use braid_testnet::process::{is_alive, kill_recorded, read_records, spawn_recorded};
use braid_testnet::{NetworkConfig, TestnetError};
use serde::Serialize;

use super::error::BenchError;
use super::median;
use super::output::write_json;
use crate::cli::BenchDirArgs;
use crate::testnet_cmd::{say, up_interruptible};

/// How long one bootstrap may take.
const LIMIT: Duration = Duration::from_secs(120);
/// The private network's consensus period (`V3AuthVotingInterval`), and
/// how long the diff case waits: three periods and a margin.
const DIFF_WAIT: Duration = Duration::from_secs(35);

#[derive(Debug, Clone, Serialize)]
struct Sample {
    client: &'static str,
    case: &'static str,
    run: usize,
    seconds: f64,
    bytes: u64,
    /// Braid: requests made, answers compressed, diffs.
    requests: Option<usize>,
    compressed: Option<usize>,
    diffs: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Report {
    tor_version: String,
    relays_in_consensus: usize,
    runs: usize,
    samples: Vec<Sample>,
}

pub(crate) async fn dir(args: BenchDirArgs) -> Result<(), BenchError> {
    if args.runs == 0 {
        return Err(BenchError::Usage("--runs must be at least 1".into()));
    }
    let exe = std::env::current_exe().map_err(|e| TestnetError::io("locating", "braid", e))?;
    let net = args.dir.join("net");
    let _ = std::fs::remove_dir_all(&net);
    let mut config = NetworkConfig::new(&net, &exe);
    config.base_port = args.base_port;
    config.client = true;
    config.client_conflux = false;
    config.relays = args.relays;
    say(&format!("starting the network in {}", net.display()));
    let network = up_interruptible(&config).await?;
    let manifest = network.manifest().clone();
    let result = async {
        let client = manifest
            .client
            .clone()
            .ok_or(BenchError::Missing("C-tor client"))?;
        let ctor = CtorClient::new(
            &net,
            &config.tor,
            &client.control_cookie,
            client.control_port,
        )?;
        let braid_config = ClientConfig::load(&net.join("network.toml"))
            .map_err(|e| BenchError::Failed(format!("network.toml: {e}")))?;
        let mut samples = Vec::new();
        for run in 0..args.runs {
            let cache = args.dir.join(format!("braid-cache-{run}"));
            let _ = std::fs::remove_dir_all(&cache);
            let mut cfg = braid_config.clone();
            cfg.cache_dir = cache;
            for case in ["cold", "warm", "diff"] {
                if case == "diff" {
                    say(&format!(
                        "run {}: waiting {} s for a newer consensus",
                        run + 1,
                        DIFF_WAIT.as_secs()
                    ));
                    tokio::time::sleep(DIFF_WAIT).await;
                }
                // Turns: C-tor first in even runs.
                let mut pair = [
                    ctor.bootstrap(case == "cold", case, run).await?,
                    braid(&cfg, case, run).await?,
                ];
                if run % 2 == 1 {
                    pair.reverse();
                }
                for s in pair {
                    say(&format!(
                        "run {} {:>4} {:>5}: {:.2} s, {} bytes{}",
                        run + 1,
                        s.case,
                        s.client,
                        s.seconds,
                        s.bytes,
                        s.diffs
                            .map_or_else(String::new, |d| format!(", {d} diff(s)"))
                    ));
                    samples.push(s);
                }
            }
        }
        ctor.stop();
        Ok::<_, BenchError>(samples)
    }
    .await;
    let stopped = network.down();
    let samples = result?;
    stopped?;
    let report = Report {
        tor_version: manifest.network.tor_version.clone(),
        relays_in_consensus: manifest.relays.len(),
        runs: args.runs,
        samples,
    };
    say(&table(&report));
    let json_path: PathBuf = args.dir.join("bench-dir.json");
    write_json(&json_path, &report)?;
    say(&format!("wrote {}", json_path.display()));
    Ok(())
}

/// One bootstrap of Braid's directory from `cfg.cache_dir` (for "diff",
/// on until it holds a consensus newer than the cache's).
async fn braid(cfg: &ClientConfig, case: &'static str, run: usize) -> Result<Sample, BenchError> {
    let failed = |e| BenchError::Failed(format!("braid {case} bootstrap: {e}"));
    let mut driver =
        DirDriver::new(cfg, true).map_err(|e| BenchError::Failed(format!("braid: {e}")))?;
    let mut r = driver.bootstrap(LIMIT, |_| {}).await.map_err(failed)?;
    if case == "diff" {
        let cached = driver
            .netdir()
            .map(|d| d.lifetime().valid_after)
            .ok_or_else(|| BenchError::Failed("braid: no consensus".into()))?;
        r = driver
            .catch_up(cached, LIMIT, |_| {})
            .await
            .map_err(failed)?;
    }
    Ok(Sample {
        client: "braid",
        case,
        run,
        seconds: r.elapsed.as_secs_f64(),
        bytes: r.figures.wire_bytes as u64,
        requests: Some(r.fetches),
        compressed: Some(r.figures.compressed),
        diffs: Some(r.figures.diffs),
    })
}

/// The network's C-tor client, restarted for each bootstrap.
struct CtorClient {
    net: PathBuf,
    tor: PathBuf,
    torrc: PathBuf,
    data: PathBuf,
    cookie: PathBuf,
    control: SocketAddr,
    log: PathBuf,
}

impl CtorClient {
    /// The client whose control cookie is `cookie` (`NODE/data/...`).
    fn new(net: &Path, tor: &Path, cookie: &Path, port: u16) -> Result<Self, BenchError> {
        let data = cookie
            .parent()
            .ok_or(BenchError::Missing("C-tor client data directory"))?
            .to_path_buf();
        let node = data
            .parent()
            .ok_or(BenchError::Missing("C-tor client directory"))?
            .to_path_buf();
        Ok(Self {
            net: net.to_path_buf(),
            tor: tor.to_path_buf(),
            torrc: node.join("torrc"),
            log: node.join("tor.log"),
            data,
            cookie: cookie.to_path_buf(),
            control: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        })
    }

    /// Stop the client (SIGKILL: its documents are on disk as they come)
    /// and wait until it is gone.
    fn stop(&self) {
        let _ = kill_recorded(&self.net, "client");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && read_records(&self.net)
                .map(|r| r.iter().any(|r| r.name == "client" && is_alive(r)))
                .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restart the client (its DataDirectory emptied if `cold`) and wait
    /// for enough directory information.
    async fn bootstrap(
        &self,
        cold: bool,
        case: &'static str,
        run: usize,
    ) -> Result<Sample, BenchError> {
        self.stop();
        if cold {
            let _ = std::fs::remove_dir_all(&self.data);
        }
        let _ = std::fs::remove_file(&self.cookie);
        // The diff case waits for a consensus newer than the cache's.
        let cached = if case == "diff" {
            cached_valid_after(&self.data)
        } else {
            None
        };
        let mut cmd = Command::new(&self.tor);
        cmd.arg("-f").arg(&self.torrc);
        let start = Instant::now();
        let _child = spawn_recorded(&self.net, "client", cmd, &self.log)?;
        let deadline = start + LIMIT;
        let mut conn = None;
        loop {
            if Instant::now() > deadline {
                return Err(BenchError::Failed(format!(
                    "the C-tor client had no directory after {} s ({case})",
                    LIMIT.as_secs()
                )));
            }
            if conn.is_none() && self.cookie.exists() {
                conn = ControlConn::connect(self.control, &self.cookie).await.ok();
            }
            let ready = match conn.as_mut() {
                None => false,
                Some(c) => match &cached {
                    None => c.getinfo("status/enough-dir-info").await.ok().as_deref() == Some("1"),
                    Some(old) => c
                        .getinfo("consensus/valid-after")
                        .await
                        .ok()
                        .is_some_and(|va| va.trim() > old.as_str()),
                },
            };
            if let Some(c) = conn.as_mut().filter(|_| ready) {
                let seconds = start.elapsed().as_secs_f64();
                let bytes = c
                    .getinfo("traffic/read")
                    .await
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                return Ok(Sample {
                    client: "C-tor",
                    case,
                    run,
                    seconds,
                    bytes,
                    requests: None,
                    compressed: None,
                    diffs: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The valid-after of the C-tor client's cached consensus in `data`, as
/// its control port writes it ("YYYY-MM-DD HH:MM:SS", which sorts as
/// text).
fn cached_valid_after(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data.join("cached-microdesc-consensus")).ok()?;
    let line = text.lines().find(|l| l.starts_with("valid-after "))?;
    Some(line.trim_start_matches("valid-after ").trim().to_owned())
}

/// The table: per case and client, median and range of time and bytes.
fn table(r: &Report) -> String {
    let mut out = format!(
        "directory bootstrap, {} relays in the consensus, {} runs each, tor {}\n\
         | case | client | seconds median (min-max) | bytes median (min-max) | diffs |\n\
         |---|---|---|---|---|\n",
        r.relays_in_consensus, r.runs, r.tor_version
    );
    for case in ["cold", "warm", "diff"] {
        for client in ["braid", "C-tor"] {
            let mine: Vec<&Sample> = r
                .samples
                .iter()
                .filter(|s| s.case == case && s.client == client)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let (s_med, s_min, s_max) = spread(&mine.iter().map(|s| s.seconds).collect::<Vec<_>>());
            let (b_med, b_min, b_max) =
                spread(&mine.iter().map(|s| s.bytes as f64).collect::<Vec<_>>());
            let diffs = mine
                .iter()
                .filter_map(|s| s.diffs)
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!(
                "| {case} | {client} | {s_med:.2} ({s_min:.2}-{s_max:.2}) | {b_med:.0} ({b_min:.0}-{b_max:.0}) | {} |\n",
                if diffs.is_empty() { "-" } else { &diffs }
            ));
        }
    }
    out.push_str(
        "(Braid: directory responses as they came on the wire; C-tor: traffic/read, every byte \
         on its OR connections.)\n",
    );
    out
}

/// Median, minimum and maximum of `v` (not empty).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let med = median(v).unwrap_or(0.0);
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (med, min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_case_and_client_with_medians() {
        let s = |client, case, seconds, bytes| Sample {
            client,
            case,
            run: 0,
            seconds,
            bytes,
            requests: None,
            compressed: None,
            diffs: (client == "braid").then_some(1),
        };
        let r = Report {
            tor_version: "0.4.9".into(),
            relays_in_consensus: 12,
            runs: 3,
            samples: vec![
                s("braid", "cold", 1.0, 100),
                s("braid", "cold", 3.0, 300),
                s("braid", "cold", 2.0, 200),
                s("C-tor", "warm", 0.5, 50),
            ],
        };
        let t = table(&r);
        assert!(
            t.contains("| cold | braid | 2.00 (1.00-3.00) | 200 (100-300) | 1,1,1 |"),
            "{t}"
        );
        assert!(
            t.contains("| warm | C-tor | 0.50 (0.50-0.50) | 50 (50-50) | - |"),
            "{t}"
        );
        assert!(!t.contains("| diff |"), "{t}");
    }
}
