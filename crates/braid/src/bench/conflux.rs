//! `braid bench conflux`: Braid's Conflux sets against each leg alone and
//! against the C-tor client's Conflux sets, over middles with different
//! links.
//!
//! Each scenario launches its own private network: `k` guards (`relay0`
//! .. `relay{k-1}`, unshaped), `k` middles (`relay{k}` ..
//! `relay{2k-1}`, shaped as the scenario says), one exit (`exit0`,
//! unshaped), 3 authorities, the file server and the C-tor client. Every
//! client is pinned to those relays: Braid with `[braid] entry_nodes`,
//! `middle_nodes`, `exit_nodes`, the C-tor client with `EntryNodes`,
//! `MiddleNodes`, `ExitNodes` (and, for 3 legs, the consensus parameter
//! `cfx_num_legs_set=3` voted by the authorities' `ConsensusParams`, since
//! C-tor takes its set size from the consensus only).
//!
//! Link emulation (the testnet shaper): a middle's rate caps each
//! direction of its access link, and its delay is added once per direction
//! of that link. A circuit crosses a middle's link twice each way (in from
//! the exit, out to the guard, and back), so a middle with delay `D` adds
//! `2D` to each one-way trip and `4D` to the circuit's round trip; its rate
//! caps the circuit's throughput.
//!
//! Then, alternating the order every repetition as `bench single` does,
//! every download checked by SHA-256:
//! 1. each leg alone: a Braid single circuit pinned to `guard_i > middle_i
//!    > exit`, whose throughput is the leg's capacity;
//! 2. Braid Conflux with each scheduler (minrtt, lowrtt, ecf; the
//!    scheduler picks the leg for what the client sends, downloads are
//!    scheduled by the exit);
//! 3. the C-tor client's Conflux set (fresh SOCKS credentials each time).
//!
//! Braid runs as `braid proxy` children with `--metrics`; `/metrics` is
//! scraped every 100 ms during each Braid download for per-leg bytes, RTT
//! and the reorder queue. C-tor's per-leg bytes come from `CIRC_BW` events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use braid_testnet::config::parse_rate;
use braid_testnet::download::fetch_file;
use braid_testnet::process::read_records;
use braid_testnet::{Manifest, NetworkConfig, RelayShape, TestnetError, ctor_conflux, launcher};
use serde::Serialize;

use super::error::BenchError;
use super::output::{write_json, write_text};
use super::proc::{cpu_seconds, peak_rss_mb};
use super::proxy::{ProxyChild, start_proxy};
use super::scrape::{self, Direction, Recording, TunnelUse};
use super::svg::{Line, Panel, render};
use crate::cli::BenchConfluxArgs;
use crate::testnet_cmd::{say, up_interruptible};

/// Braid's schedulers, in table order.
const SCHEDULERS: [&str; 3] = ["minrtt", "lowrtt", "ecf"];
/// Braid's default scheduler: the one plotted.
const DEFAULT_SCHEDULER: &str = "lowrtt";
/// Width of a time-series bin.
const BIN_S: f64 = 0.2;
/// Bytes of the warm-up download of each client.
const WARMUP_BYTES: u64 = 1_000_000;
/// Tries at the warm-up download.
const WARMUP_ATTEMPTS: usize = 5;
/// The targets the table is checked against.
const TARGET_FRACTION: f64 = 0.95;

/// A middle's link.
#[derive(Debug, Clone, Copy)]
struct Link {
    rate: &'static str,
    delay: &'static str,
}

/// One scenario: a middle per leg.
#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    about: &'static str,
    middles: Vec<Link>,
}

impl Scenario {
    fn legs(&self) -> usize {
        self.middles.len()
    }
    fn guard(&self, i: usize) -> String {
        format!("relay{i}")
    }
    fn middle(&self, i: usize) -> String {
        format!("relay{}", self.legs() + i)
    }
}

fn scenarios() -> Vec<Scenario> {
    let l = |rate, delay| Link { rate, delay };
    vec![
        Scenario {
            name: "uniform",
            about: "2 legs, both middles 2 MiB/s + 10 ms",
            middles: vec![l("2MiB", "10ms"), l("2MiB", "10ms")],
        },
        Scenario {
            name: "bw-1-3",
            about: "2 legs, middles 1 MiB/s and 3 MiB/s, 10 ms",
            middles: vec![l("1MiB", "10ms"), l("3MiB", "10ms")],
        },
        Scenario {
            name: "rtt-1-5",
            about: "2 legs, middles 2 MiB/s with 10 ms and 50 ms",
            middles: vec![l("2MiB", "10ms"), l("2MiB", "50ms")],
        },
        Scenario {
            name: "3-legs",
            about: "3 legs, middles 2 MiB/s + 10 ms",
            middles: vec![l("2MiB", "10ms"), l("2MiB", "10ms"), l("2MiB", "10ms")],
        },
    ]
}

/// The names `--scenario` accepts.
pub(crate) fn scenario_names() -> Vec<&'static str> {
    scenarios().iter().map(|s| s.name).collect()
}

/// Who downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A Braid single circuit through leg `i` alone.
    Leg(usize),
    /// Braid Conflux with this scheduler.
    Braid(&'static str),
    /// The C-tor client's Conflux set.
    Ctor,
}

impl Who {
    fn label(self) -> String {
        match self {
            Who::Leg(i) => format!("leg {} alone (Braid)", i + 1),
            Who::Braid(s) => format!("Braid {s}"),
            Who::Ctor => "C-tor".into(),
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Who::Leg(_) => "leg",
            Who::Braid(_) => "braid",
            Who::Ctor => "ctor",
        }
    }
}

/// A client ready to download.
#[derive(Debug)]
struct Running {
    who: Who,
    socks: SocketAddr,
    pid: u32,
    metrics: Option<SocketAddr>,
    /// Stops the proxy when dropped.
    _proxy: Option<ProxyChild>,
}

#[derive(Debug, Clone, Serialize)]
struct LegFigure {
    leg: usize,
    path: String,
    /// Braid: DATA payload bytes received on the leg. C-tor: cell bytes
    /// that arrived on it (`CIRC_BW READ`).
    bytes: u64,
    /// C-tor's `DELIVERED_READ` (misattributed across legs, see
    /// `ctor_conflux::LegReport::bytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_bytes: Option<u64>,
    share: f64,
    rtt_ms: Option<f64>,
    min_rtt_ms: Option<f64>,
    /// CONFLUX_LINK to LINKED (Braid: from metrics; C-tor: CONFLUX_RTT).
    link_rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct SeriesJson {
    bin_ms: f64,
    unit: &'static str,
    legs: Vec<Vec<f64>>,
    total: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Sample {
    scenario: String,
    client: String,
    kind: &'static str,
    rep: usize,
    ok: bool,
    error: Option<String>,
    bytes: u64,
    mb_per_s: f64,
    ttfb_ms: f64,
    cpu_s_per_100mb: Option<f64>,
    tunnel: Option<String>,
    reorder_peak_bytes: Option<f64>,
    reorder_sampled_max_bytes: Option<f64>,
    legs: Vec<LegFigure>,
    series: Option<SeriesJson>,
    metrics_scrapes: usize,
    metrics_failures: usize,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    client: String,
    kind: &'static str,
    runs: usize,
    failed: usize,
    mb_per_s_mean: f64,
    mb_per_s_min: f64,
    mb_per_s_max: f64,
    fraction_of_leg_sum: Option<f64>,
    ttfb_ms_mean: f64,
    cpu_s_per_100mb_mean: Option<f64>,
    peak_rss_mb: Option<f64>,
    reorder_peak_bytes: Option<f64>,
    two_bdp_bytes: Option<f64>,
    leg_shares: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct LegSetup {
    guard: String,
    middle: String,
    exit: String,
    middle_rate: &'static str,
    middle_delay_one_way: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Target {
    what: String,
    met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
struct ScenarioReport {
    name: &'static str,
    about: &'static str,
    legs: Vec<LegSetup>,
    ctor_torrc: Vec<String>,
    consensus_params: BTreeMap<String, i32>,
    leg_capacity_mb_s: Vec<Option<f64>>,
    leg_capacity_sum_mb_s: Option<f64>,
    /// Each leg's RTT for its BDP: the smallest congestion-control minimum
    /// RTT or LINK-to-LINKED RTT Braid measured on any circuit through the
    /// leg's middle (guards and exit are unshaped), else half the smallest
    /// time to first byte of the leg alone (two round trips: BEGIN and the
    /// request).
    leg_rtt_ms: Vec<Option<f64>>,
    leg_rtt_source: Vec<&'static str>,
    two_bdp_bytes: Option<f64>,
    rows: Vec<Row>,
    targets: Vec<Target>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    size_bytes: u64,
    reps: usize,
    tor_version: String,
    link_emulation: &'static str,
    metrics_available: bool,
    scenarios: Vec<ScenarioReport>,
    samples: Vec<Sample>,
}

const LINK_NOTE: &str = "testnet shaper on each middle: rate caps each direction of the \
    middle's link; the delay is added once per direction of that link, and a circuit crosses \
    it twice each way, so delay D adds 2D one way and 4D to the round trip";

fn interrupted(e: &BenchError) -> bool {
    matches!(e, BenchError::Testnet(TestnetError::Interrupted))
}

pub(crate) async fn conflux(args: BenchConfluxArgs) -> Result<(), BenchError> {
    let size = parse_rate(&args.size)?;
    if args.reps == 0 {
        return Err(BenchError::Usage("--reps must be at least 1".into()));
    }
    let all = scenarios();
    let chosen: Vec<Scenario> = if args.scenario.is_empty() {
        all
    } else {
        let mut out = Vec::new();
        for name in &args.scenario {
            let s = all.iter().find(|s| s.name == name).ok_or_else(|| {
                BenchError::Usage(format!(
                    "unknown scenario {name:?}; one of: {}",
                    scenario_names().join(", ")
                ))
            })?;
            out.push(s.clone());
        }
        out
    };
    std::fs::create_dir_all(&args.dir).map_err(|source| BenchError::Write {
        path: args.dir.clone(),
        source,
    })?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| args.dir.join("bench-conflux.json"));
    let svg_path = args
        .svg
        .clone()
        .unwrap_or_else(|| args.dir.join("bench-conflux.svg"));
    let mut report = Report {
        size_bytes: size,
        reps: args.reps,
        tor_version: String::new(),
        link_emulation: LINK_NOTE,
        metrics_available: false,
        scenarios: Vec::new(),
        samples: Vec::new(),
    };
    let mut failed = Vec::new();
    for sc in &chosen {
        say(&format!("[{}] {}", sc.name, sc.about));
        let outcome = run_scenario(&args, sc, size, &mut report).await;
        let stop = match outcome {
            Ok(r) => {
                report.scenarios.push(r);
                false
            }
            Err(e) => {
                say(&format!("[{}] failed: {e}", sc.name));
                failed.push(format!("{}: {e}", sc.name));
                report.scenarios.push(ScenarioReport {
                    error: Some(e.to_string()),
                    ..scenario_report(sc)
                });
                interrupted(&e)
            }
        };
        report.metrics_available = report
            .samples
            .iter()
            .any(|s| s.kind != "ctor" && s.metrics_scrapes > 0);
        write_json(&json_path, &report)?;
        write_text(&svg_path, &plot(&report))?;
        if stop {
            say(&format!("partial results in {}", json_path.display()));
            return Err(BenchError::Testnet(TestnetError::Interrupted));
        }
    }
    say(&table(&report));
    if !report.metrics_available {
        say(
            "note: no Braid per-leg figures: the proxy's metrics endpoint did not answer \
             (per-leg bytes, RTT, reorder queue and the plot are missing)",
        );
    }
    say(&format!(
        "wrote {} and {}",
        json_path.display(),
        svg_path.display()
    ));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Failed(format!(
            "{} scenario(s) failed: {}",
            failed.len(),
            failed.join("; ")
        )))
    }
}

/// The scenario's fixed description, before any measurement.
fn scenario_report(sc: &Scenario) -> ScenarioReport {
    let k = sc.legs();
    ScenarioReport {
        name: sc.name,
        about: sc.about,
        legs: (0..k)
            .map(|i| LegSetup {
                guard: sc.guard(i),
                middle: sc.middle(i),
                exit: "exit0".into(),
                middle_rate: sc.middles.get(i).map_or("", |l| l.rate),
                middle_delay_one_way: sc.middles.get(i).map_or("", |l| l.delay),
            })
            .collect(),
        ctor_torrc: ctor_torrc(sc),
        consensus_params: consensus_params(sc),
        leg_capacity_mb_s: Vec::new(),
        leg_capacity_sum_mb_s: None,
        leg_rtt_ms: Vec::new(),
        leg_rtt_source: Vec::new(),
        two_bdp_bytes: None,
        rows: Vec::new(),
        targets: Vec::new(),
        error: None,
    }
}

/// The C-tor client's pinning lines (tor accepts nicknames).
fn ctor_torrc(sc: &Scenario) -> Vec<String> {
    let k = sc.legs();
    let guards: Vec<String> = (0..k).map(|i| sc.guard(i)).collect();
    let middles: Vec<String> = (0..k).map(|i| sc.middle(i)).collect();
    vec![
        format!("EntryNodes {}", guards.join(",")),
        format!("MiddleNodes {}", middles.join(",")),
        "ExitNodes exit0".into(),
    ]
}

/// C-tor clients build sets of `cfx_num_legs_set` legs (default 2).
fn consensus_params(sc: &Scenario) -> BTreeMap<String, i32> {
    let mut p = BTreeMap::new();
    if sc.legs() != 2 {
        p.insert(
            "cfx_num_legs_set".into(),
            i32::try_from(sc.legs()).unwrap_or(2),
        );
    }
    p
}

/// Launches the scenario's network, measures, and stops the network
/// whatever happens (Ctrl-C and SIGTERM included).
async fn run_scenario(
    args: &BenchConfluxArgs,
    sc: &Scenario,
    size: u64,
    report: &mut Report,
) -> Result<ScenarioReport, BenchError> {
    let exe = std::env::current_exe().map_err(|e| TestnetError::io("locating", "braid", e))?;
    let root = args.dir.join(sc.name);
    let netdir = root.join("net");
    // A network left by an earlier, killed run: stop it first.
    if netdir.join("pids").exists() {
        let _ = launcher::down(&netdir);
    }
    let _ = std::fs::remove_dir_all(&root);
    let braid_dir = root.join("braid");
    std::fs::create_dir_all(&braid_dir).map_err(|source| BenchError::Write {
        path: braid_dir.clone(),
        source,
    })?;
    let k = sc.legs();
    let mut config = NetworkConfig::new(&netdir, &exe);
    config.base_port = args.base_port;
    config.relays = 2 * k;
    config.exits = 1;
    config.client = true;
    config.client_conflux = true;
    config.client_torrc = ctor_torrc(sc);
    config.consensus_params = consensus_params(sc);
    for (i, link) in sc.middles.iter().enumerate() {
        let (name, shape) =
            RelayShape::parse_flag(&format!("{}:{}:{}", sc.middle(i), link.rate, link.delay))?;
        config.shapes.insert(name, shape);
    }
    say(&format!(
        "[{}] starting the network in {}",
        sc.name,
        netdir.display()
    ));
    let network = up_interruptible(&config).await?;
    report
        .tor_version
        .clone_from(&network.manifest().network.tor_version);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| TestnetError::io("installing signal handler for", &netdir, e))?;
    let mut mine = Vec::new();
    let measured = tokio::select! {
        r = measure(args, sc, size, network.manifest(), &netdir, &braid_dir, &mut mine) => r,
        _ = tokio::signal::ctrl_c() => Err(BenchError::Testnet(TestnetError::Interrupted)),
        _ = term.recv() => Err(BenchError::Testnet(TestnetError::Interrupted)),
    };
    // The proxies were stopped when `measure` ended or was dropped.
    let stopped = network.down();
    report.samples.extend(mine);
    let mut out = measured?;
    stopped?;
    out.error = None;
    Ok(out)
}

/// The Braid configuration of one proxy: the network file plus `[braid]`.
fn braid_config(
    network_toml: &str,
    cache: &Path,
    conflux_legs: Option<usize>,
    scheduler: &str,
    nodes: [&[String]; 3],
) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let list = |l: &[String]| {
        let items: Vec<String> = l.iter().map(|s| quote(s)).collect();
        format!("[{}]", items.join(", "))
    };
    let mut t = network_toml.trim_end().to_string();
    t.push_str("\n\n[braid]\n");
    let _ = writeln!(t, "cache_dir = {}", quote(&cache.to_string_lossy()));
    if let Some(n) = conflux_legs {
        let _ = writeln!(t, "conflux = true\nlegs = {n}");
    }
    let _ = writeln!(t, "scheduler = {}", quote(scheduler));
    let [entry, middle, exit] = nodes;
    let _ = writeln!(t, "entry_nodes = {}", list(entry));
    let _ = writeln!(t, "middle_nodes = {}", list(middle));
    let _ = writeln!(t, "exit_nodes = {}", list(exit));
    t
}

/// Starts the clients, warms them up, and runs the repetitions.
async fn measure(
    args: &BenchConfluxArgs,
    sc: &Scenario,
    size: u64,
    manifest: &Manifest,
    netdir: &Path,
    braid_dir: &Path,
    samples: &mut Vec<Sample>,
) -> Result<ScenarioReport, BenchError> {
    let k = sc.legs();
    let network_toml = std::fs::read_to_string(netdir.join("network.toml"))
        .map_err(|e| TestnetError::io("reading", netdir.join("network.toml"), e))?;
    let guards: Vec<String> = (0..k).map(|i| sc.guard(i)).collect();
    let middles: Vec<String> = (0..k).map(|i| sc.middle(i)).collect();
    let exit = vec!["exit0".to_string()];
    let mut whos: Vec<Who> = (0..k).map(Who::Leg).collect();
    whos.extend(SCHEDULERS.iter().map(|s| Who::Braid(s)));
    whos.push(Who::Ctor);
    let mut clients = Vec::new();
    for (n, who) in whos.iter().copied().enumerate() {
        let port = |off: u16| {
            let n = u16::try_from(n).unwrap_or(0);
            SocketAddr::from(([127, 0, 0, 1], args.base_port + 600 + 2 * n + off))
        };
        let running = match who {
            Who::Ctor => Running {
                who,
                socks: manifest
                    .client_socks()
                    .ok_or(BenchError::Missing("C-tor client SOCKS port"))?,
                pid: read_records(netdir)?
                    .into_iter()
                    .find(|r| r.name == "client")
                    .map(|r| r.pid)
                    .ok_or(BenchError::Missing("C-tor client process"))?,
                metrics: None,
                _proxy: None,
            },
            Who::Leg(_) | Who::Braid(_) => {
                let (legs, scheduler, entry, middle, name) = match who {
                    Who::Leg(i) => (
                        None,
                        DEFAULT_SCHEDULER,
                        guards.get(i..=i).unwrap_or_default(),
                        middles.get(i..=i).unwrap_or_default(),
                        format!("leg{}", i + 1),
                    ),
                    Who::Braid(s) => (
                        Some(k),
                        s,
                        guards.as_slice(),
                        middles.as_slice(),
                        s.to_string(),
                    ),
                    Who::Ctor => (None, DEFAULT_SCHEDULER, &[][..], &[][..], String::new()),
                };
                let file = braid_dir.join(format!("{name}.toml"));
                let text = braid_config(
                    &network_toml,
                    &braid_dir.join(format!("{name}-cache")),
                    legs,
                    scheduler,
                    [entry, middle, &exit],
                );
                write_text(&file, &text)?;
                let (socks, metrics) = (port(0), port(1));
                let proxy = start_proxy(&file, socks, &["--metrics".into(), metrics.to_string()])
                    .map_err(|e| {
                    BenchError::Proxy(format!("{} ({}): {e}", who.label(), name))
                })?;
                say(&format!(
                    "[{}] {} ready: SOCKS {socks}, metrics {metrics}",
                    sc.name,
                    who.label()
                ));
                Running {
                    who,
                    socks,
                    pid: proxy.pid(),
                    metrics: Some(metrics),
                    _proxy: Some(proxy),
                }
            }
        };
        clients.push(running);
    }
    let files = manifest.fileserver.address;
    // Warm-up: one small download each (circuits, caches). C-tor exits
    // refuse streams for a moment after the network is ready: retry.
    for c in &clients {
        let mut last = String::new();
        for attempt in 0..WARMUP_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            match tokio::time::timeout(
                Duration::from_secs(60),
                fetch_file(files, Some((c.socks, None)), WARMUP_BYTES, 999),
            )
            .await
            {
                Ok(Ok(_)) => {
                    last.clear();
                    break;
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        if !last.is_empty() {
            say(&format!(
                "[{}] warning: warm-up download of {} failed {WARMUP_ATTEMPTS} times: {last}",
                sc.name,
                c.who.label()
            ));
        }
    }
    let mut mine: Vec<Sample> = Vec::new();
    for rep in 0..args.reps {
        let order: Vec<&Running> = if rep % 2 == 0 {
            clients.iter().collect()
        } else {
            clients.iter().rev().collect()
        };
        for c in order {
            let s = download(sc, c, manifest, size, rep).await;
            say(&format!("[{}] {}", sc.name, describe(&s)));
            samples.push(s.clone());
            mine.push(s);
        }
    }
    Ok(summarise(sc, &clients, &mine))
}

/// One checked download by one client.
async fn download(
    sc: &Scenario,
    c: &Running,
    manifest: &Manifest,
    size: u64,
    rep: usize,
) -> Sample {
    // Generous: 50 kB/s and a minute.
    let limit = Duration::from_secs(60 + size / 50_000);
    let seed = rep as u64;
    let cpu0 = cpu_seconds(c.pid);
    let mut sample = Sample {
        scenario: sc.name.into(),
        client: c.who.label(),
        kind: c.who.kind(),
        rep,
        ok: false,
        error: None,
        bytes: 0,
        mb_per_s: 0.0,
        ttfb_ms: 0.0,
        cpu_s_per_100mb: None,
        tunnel: None,
        reorder_peak_bytes: None,
        reorder_sampled_max_bytes: None,
        legs: Vec::new(),
        series: None,
        metrics_scrapes: 0,
        metrics_failures: 0,
    };
    let timed_out = || format!("no complete download within {} s", limit.as_secs());
    match c.who {
        Who::Ctor => {
            match tokio::time::timeout(limit, ctor_conflux::download(manifest, size, seed)).await {
                Ok(Ok(d)) => {
                    sample.ok = true;
                    sample.bytes = d.download.bytes;
                    sample.mb_per_s = d.download.mb_per_s();
                    sample.ttfb_ms = d.download.time_to_first_byte.as_secs_f64() * 1000.0;
                    let total: u64 = d.legs.iter().map(|l| l.read).sum::<u64>().max(1);
                    sample.tunnel = d.conflux_id.clone();
                    sample.legs = d
                        .legs
                        .iter()
                        .enumerate()
                        .map(|(i, l)| LegFigure {
                            leg: i,
                            path: l.path.join(">"),
                            bytes: l.read,
                            delivered_bytes: Some(l.bytes),
                            share: l.read as f64 / total as f64,
                            rtt_ms: None,
                            min_rtt_ms: None,
                            link_rtt_ms: l.rtt_ms,
                        })
                        .collect();
                    if d.purpose != "CONFLUX_LINKED" || d.legs.len() != sc.legs() {
                        sample.error = Some(format!(
                            "C-tor used a {} circuit with {} legs",
                            d.purpose,
                            d.legs.len()
                        ));
                    }
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
        Who::Leg(_) | Who::Braid(_) => {
            let fetch = tokio::time::timeout(
                limit,
                fetch_file(
                    manifest.fileserver.address,
                    Some((c.socks, None)),
                    size,
                    seed,
                ),
            );
            let (result, rec) = match c.metrics {
                Some(addr) => scrape::record(addr, fetch).await,
                None => (fetch.await, Recording::default()),
            };
            sample.metrics_scrapes = rec.points.len();
            sample.metrics_failures = rec.failures;
            match result {
                Ok(Ok(d)) => {
                    sample.ok = true;
                    sample.bytes = d.bytes;
                    sample.mb_per_s = d.mb_per_s();
                    sample.ttfb_ms = d.time_to_first_byte.as_secs_f64() * 1000.0;
                    if let Some(u) = scrape::analyse(&rec.points, BIN_S, Direction::Download) {
                        fill_from_metrics(&mut sample, &u);
                    }
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
    }
    if let (Some(a), Some(b)) = (cpu0, cpu_seconds(c.pid))
        && sample.ok
    {
        sample.cpu_s_per_100mb = Some((b - a) * 1e8 / size as f64);
    }
    sample
}

fn fill_from_metrics(sample: &mut Sample, u: &TunnelUse) {
    let total: f64 = u.legs.iter().map(|l| l.bytes).sum::<f64>().max(1.0);
    sample.tunnel = Some(u.tunnel.clone());
    sample.reorder_peak_bytes = u.reorder_peak_bytes;
    sample.reorder_sampled_max_bytes = u.reorder_sampled_max_bytes;
    sample.legs = u
        .legs
        .iter()
        .map(|l| LegFigure {
            leg: l.leg as usize,
            path: l.path.clone().unwrap_or_default(),
            bytes: l.bytes as u64,
            delivered_bytes: None,
            share: l.bytes / total,
            rtt_ms: l.rtt_s.map(|s| s * 1000.0),
            min_rtt_ms: l.min_rtt_s.map(|s| s * 1000.0),
            link_rtt_ms: l.link_rtt_s.map(|s| s * 1000.0),
        })
        .collect();
    let mb = |v: &Vec<f64>| v.iter().map(|x| (x / 1e4).round() / 100.0).collect();
    sample.series = Some(SeriesJson {
        bin_ms: u.series.bin_s * 1000.0,
        unit: "MB/s",
        legs: u.series.legs.iter().map(mb).collect(),
        total: mb(&u.series.total),
    });
}

fn describe(s: &Sample) -> String {
    let mut t = format!("{:<22} run {}: ", s.client, s.rep + 1);
    if s.ok {
        let _ = write!(t, "{:.2} MB/s, first byte {:.0} ms", s.mb_per_s, s.ttfb_ms);
        if let Some(c) = s.cpu_s_per_100mb {
            let _ = write!(t, ", {c:.2} CPU s/100 MB");
        }
        if s.legs.len() > 1 {
            let mut shares: Vec<(String, f64)> = s
                .legs
                .iter()
                .map(|l| (middle_of(&l.path).to_string(), l.share))
                .collect();
            shares.sort_by(|a, b| a.0.cmp(&b.0));
            let shares: Vec<String> = shares
                .iter()
                .map(|(m, share)| format!("{m} {:.0}%", share * 100.0))
                .collect();
            let _ = write!(t, ", by middle {}", shares.join(" "));
        }
        if let Some(p) = s.reorder_peak_bytes
            && s.kind == "braid"
        {
            let _ = write!(t, ", reorder peak {:.0} kB", p / 1000.0);
        }
        if let Some(e) = &s.error {
            let _ = write!(t, " (warning: {e})");
        }
    } else {
        let _ = write!(
            t,
            "FAILED: {}",
            s.error.as_deref().unwrap_or("unknown error")
        );
    }
    t
}

/// The middle of a `guard>middle>exit` path.
fn middle_of(path: &str) -> &str {
    path.split('>').nth(1).unwrap_or("?")
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Rows, leg capacities, BDP and targets from the scenario's samples.
fn summarise(sc: &Scenario, clients: &[Running], samples: &[Sample]) -> ScenarioReport {
    let mut out = scenario_report(sc);
    let k = sc.legs();
    let ok_of = |who: Who| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.client == who.label() && s.ok)
            .collect()
    };
    out.leg_capacity_mb_s = (0..k)
        .map(|i| {
            mean(
                &ok_of(Who::Leg(i))
                    .iter()
                    .map(|s| s.mb_per_s)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    out.leg_capacity_sum_mb_s = out
        .leg_capacity_mb_s
        .iter()
        .copied()
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.iter().sum());
    let (rtts, sources): (Vec<Option<f64>>, Vec<&'static str>) =
        (0..k).map(|i| leg_rtt(sc, i, samples)).unzip();
    out.leg_rtt_ms = rtts;
    out.leg_rtt_source = sources;
    out.two_bdp_bytes = out
        .leg_capacity_mb_s
        .iter()
        .zip(&out.leg_rtt_ms)
        .map(|(c, r)| Some(c.as_ref()? * 1e6 * r.as_ref()? / 1000.0))
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max))
        .map(|b| 2.0 * b);
    for c in clients {
        let all: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.client == c.who.label())
            .collect();
        let ok: Vec<&Sample> = all.iter().copied().filter(|s| s.ok).collect();
        let rates: Vec<f64> = ok.iter().map(|s| s.mb_per_s).collect();
        let m = mean(&rates).unwrap_or(0.0);
        let cpus: Vec<f64> = ok.iter().filter_map(|s| s.cpu_s_per_100mb).collect();
        // Shares in the scenario's leg order, by middle (Conflux pairs
        // guards and middles at random; the middle makes the leg).
        let leg_shares = if ok.iter().any(|s| s.legs.len() > 1) {
            (0..k)
                .map(|i| {
                    let middle = sc.middle(i);
                    mean(
                        &ok.iter()
                            .map(|s| {
                                s.legs
                                    .iter()
                                    .filter(|l| middle_of(&l.path) == middle)
                                    .map(|l| l.share)
                                    .sum::<f64>()
                            })
                            .collect::<Vec<_>>(),
                    )
                    .unwrap_or(0.0)
                })
                .collect()
        } else {
            Vec::new()
        };
        let is_set = !matches!(c.who, Who::Leg(_));
        out.rows.push(Row {
            scenario: sc.name.into(),
            client: c.who.label(),
            kind: c.who.kind(),
            runs: ok.len(),
            failed: all.len() - ok.len(),
            mb_per_s_mean: m,
            mb_per_s_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            mb_per_s_max: rates.iter().copied().fold(0.0, f64::max),
            fraction_of_leg_sum: out
                .leg_capacity_sum_mb_s
                .filter(|sum| is_set && *sum > 0.0 && !ok.is_empty())
                .map(|sum| m / sum),
            ttfb_ms_mean: mean(&ok.iter().map(|s| s.ttfb_ms).collect::<Vec<_>>()).unwrap_or(0.0),
            cpu_s_per_100mb_mean: mean(&cpus),
            peak_rss_mb: peak_rss_mb(c.pid),
            reorder_peak_bytes: if c.who.kind() == "braid" {
                ok.iter()
                    .filter_map(|s| s.reorder_peak_bytes)
                    .reduce(f64::max)
            } else {
                None
            },
            two_bdp_bytes: is_set.then_some(out.two_bdp_bytes).flatten(),
            leg_shares,
        });
    }
    out.targets = targets(&out);
    out
}

/// Leg `i`'s RTT and where it came from (see [`ScenarioReport`]).
fn leg_rtt(sc: &Scenario, i: usize, samples: &[Sample]) -> (Option<f64>, &'static str) {
    let middle = sc.middle(i);
    let measured = samples
        .iter()
        .filter(|s| s.ok && s.kind != "ctor")
        .flat_map(|s| &s.legs)
        .filter(|l| middle_of(&l.path) == middle)
        .flat_map(|l| [l.min_rtt_ms, l.link_rtt_ms])
        .flatten()
        .filter(|r| *r > 0.0)
        .reduce(f64::min);
    if measured.is_some() {
        return (measured, "Braid congestion control or LINK RTT");
    }
    let label = Who::Leg(i).label();
    let ttfb = samples
        .iter()
        .filter(|s| s.ok && s.client == label)
        .map(|s| s.ttfb_ms / 2.0)
        .reduce(f64::min);
    (
        ttfb,
        if ttfb.is_some() {
            "first byte / 2"
        } else {
            "none"
        },
    )
}

/// Braid Conflux >= 0.95 of the summed leg capacity and >= C-tor's
/// Conflux; peak reorder <= 2 x the largest leg BDP.
fn targets(r: &ScenarioReport) -> Vec<Target> {
    let ctor = r.rows.iter().find(|x| x.kind == "ctor" && x.runs > 0);
    let mut out = Vec::new();
    for row in r.rows.iter().filter(|x| x.kind == "braid") {
        let f = row.fraction_of_leg_sum;
        out.push(Target {
            what: format!(
                "{}: {} >= {TARGET_FRACTION:.2} of summed leg capacity",
                r.name, row.client
            ),
            met: f.map(|f| f >= TARGET_FRACTION),
        });
        out.push(Target {
            what: format!("{}: {} >= C-tor's Conflux", r.name, row.client),
            met: ctor
                .filter(|_| row.runs > 0)
                .map(|c| row.mb_per_s_mean >= c.mb_per_s_mean),
        });
        out.push(Target {
            what: format!(
                "{}: {} peak reorder <= 2 x largest leg BDP",
                r.name, row.client
            ),
            met: match (row.reorder_peak_bytes, r.two_bdp_bytes) {
                (Some(p), Some(b)) => Some(p <= b),
                _ => None,
            },
        });
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

fn table(r: &Report) -> String {
    let mut out = format!(
        "Conflux, {} MB downloads, {} runs each, tor {}\n\
         | scenario | client | MB/s mean (min-max) | of leg sum | first byte ms | CPU s / 100 MB | peak reorder kB | 2 x largest leg BDP kB | leg shares % |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        r.size_bytes as f64 / 1e6,
        r.reps,
        r.tor_version
    );
    for sc in &r.scenarios {
        if let Some(e) = &sc.error {
            let _ = writeln!(out, "| {} | failed: {e} | | | | | | | |", sc.name);
            continue;
        }
        for row in &sc.rows {
            let rate = if row.runs == 0 {
                format!("all {} failed", row.failed)
            } else {
                let mut s = format!(
                    "{:.2} ({:.2}-{:.2})",
                    row.mb_per_s_mean, row.mb_per_s_min, row.mb_per_s_max
                );
                if row.failed > 0 {
                    let _ = write!(s, ", {} failed", row.failed);
                }
                s
            };
            let shares: Vec<String> = row
                .leg_shares
                .iter()
                .map(|s| format!("{:.0}", s * 100.0))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
                sc.name,
                row.client,
                rate,
                opt(row.fraction_of_leg_sum, |f| format!("{f:.2}")),
                row.ttfb_ms_mean,
                opt(row.cpu_s_per_100mb_mean, |c| format!("{c:.2}")),
                if row.kind == "braid" {
                    opt(row.reorder_peak_bytes, |b| format!("{:.0}", b / 1000.0))
                } else {
                    "-".into()
                },
                if row.kind == "leg" {
                    "-".into()
                } else {
                    opt(row.two_bdp_bytes, |b| format!("{:.0}", b / 1000.0))
                },
                if shares.len() > 1 {
                    shares.join("/")
                } else {
                    "-".into()
                }
            );
        }
    }
    out.push_str("\nleg capacity (one circuit alone) and RTT measured by Braid:\n");
    for sc in r.scenarios.iter().filter(|s| s.error.is_none()) {
        let legs: Vec<String> = sc
            .legs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!(
                    "{}>{}>{} ({} {}): {} MB/s, RTT {} ms ({})",
                    l.guard,
                    l.middle,
                    l.exit,
                    l.middle_rate,
                    l.middle_delay_one_way,
                    opt(sc.leg_capacity_mb_s.get(i).copied().flatten(), |c| format!(
                        "{c:.2}"
                    )),
                    opt(sc.leg_rtt_ms.get(i).copied().flatten(), |m| format!(
                        "{m:.0}"
                    )),
                    sc.leg_rtt_source.get(i).copied().unwrap_or("none"),
                )
            })
            .collect();
        let _ = writeln!(out, "  {}: {}", sc.name, legs.join("; "));
    }
    out.push_str("\ntargets:\n");
    for sc in &r.scenarios {
        for t in &sc.targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "unknown (figures missing)",
            };
            let _ = writeln!(out, "  {}: {verdict}", t.what);
        }
    }
    out
}

/// Per-leg throughput of Braid's default scheduler, one panel per
/// scenario (its first run with figures).
fn plot(r: &Report) -> String {
    let mut panels = Vec::new();
    for sc in &r.scenarios {
        let label = Who::Braid(DEFAULT_SCHEDULER).label();
        let Some((s, series)) = r
            .samples
            .iter()
            .filter(|s| s.scenario == sc.name && s.client == label && s.ok)
            .find_map(|s| Some((s, s.series.as_ref()?)))
        else {
            continue;
        };
        let mut lines: Vec<Line> = series
            .legs
            .iter()
            .enumerate()
            .map(|(i, v)| Line {
                label: format!(
                    "leg {} {}",
                    i + 1,
                    s.legs.get(i).map(|l| l.path.as_str()).unwrap_or("")
                ),
                values: v.clone(),
            })
            .collect();
        lines.push(Line {
            label: "total".into(),
            values: series.total.clone(),
        });
        panels.push(Panel {
            title: format!(
                "{}: {} - Braid {DEFAULT_SCHEDULER}, run {}, {:.2} MB/s",
                sc.name,
                sc.about,
                s.rep + 1,
                s.mb_per_s
            ),
            bin_s: series.bin_ms / 1000.0,
            lines,
        });
    }
    render(&panels, "time since the request (s)", "MB/s (200 ms bins)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn scenarios_are_the_four_of_the_issue() {
        let s = scenarios();
        assert_eq!(scenario_names(), ["uniform", "bw-1-3", "rtt-1-5", "3-legs"]);
        assert_eq!(s[3].legs(), 3);
        assert_eq!(s[3].guard(2), "relay2");
        assert_eq!(s[3].middle(0), "relay3");
        assert_eq!(
            ctor_torrc(&s[3]),
            [
                "EntryNodes relay0,relay1,relay2",
                "MiddleNodes relay3,relay4,relay5",
                "ExitNodes exit0"
            ]
        );
        assert!(consensus_params(&s[0]).is_empty());
        assert_eq!(consensus_params(&s[3]).get("cfx_num_legs_set"), Some(&3));
        for sc in &s {
            for (i, l) in sc.middles.iter().enumerate() {
                RelayShape::parse_flag(&format!("{}:{}:{}", sc.middle(i), l.rate, l.delay))
                    .unwrap();
            }
        }
    }

    #[test]
    fn braid_config_parses() {
        let network = "[network]\nenforce_distinct_subnets = false\n\n[[authority]]\n\
            nickname = \"auth0\"\naddress = \"127.0.0.1\"\ndir_port = 26001\n\
            v3ident = \"DF42171FC3F4BE879C6F3F36C488ADFCE0C9D819\"\n\n[[relay]]\nnickname = \"relay0\"\n";
        let g = vec!["relay0".to_string(), "relay1".to_string()];
        let m = vec!["relay2".to_string(), "relay3".to_string()];
        let e = vec!["exit0".to_string()];
        let text = braid_config(
            network,
            Path::new("/tmp/a \"b\"/cache"),
            Some(2),
            "ecf",
            [&g, &m, &e],
        );
        let c = braid_client::ClientConfig::parse(&text, Path::new("/tmp/x.toml")).unwrap();
        assert_eq!(c.conflux_legs, Some(2));
        assert_eq!(c.cache_dir, PathBuf::from("/tmp/a \"b\"/cache"));
        assert_eq!(c.nodes.entry.len(), 2);
        assert_eq!(c.nodes.middle[1].to_string(), "relay3");
        assert_eq!(c.nodes.exit[0].to_string(), "exit0");
        let single = braid_config(network, Path::new("/c"), None, "lowrtt", [&g, &m, &e]);
        let c = braid_client::ClientConfig::parse(&single, Path::new("/tmp/x.toml")).unwrap();
        assert_eq!(c.conflux_legs, None);
    }

    fn sample(client: Who, rep: usize, mb: f64, legs: &[(f64, Option<f64>)]) -> Sample {
        Sample {
            scenario: "uniform".into(),
            client: client.label(),
            kind: client.kind(),
            rep,
            ok: true,
            error: None,
            bytes: 1,
            mb_per_s: mb,
            ttfb_ms: 100.0,
            cpu_s_per_100mb: Some(1.0),
            tunnel: Some("1".into()),
            reorder_peak_bytes: matches!(client, Who::Braid(_)).then_some(100_000.0),
            reorder_sampled_max_bytes: None,
            legs: legs
                .iter()
                .enumerate()
                .map(|(i, (share, rtt))| LegFigure {
                    leg: i,
                    path: match client {
                        Who::Leg(j) => format!("relay{j}>relay{}>exit0", j + 2),
                        _ => format!("relay{i}>relay{}>exit0", i + 2),
                    },
                    bytes: 1,
                    share: *share,
                    delivered_bytes: None,
                    rtt_ms: None,
                    min_rtt_ms: *rtt,
                    link_rtt_ms: None,
                })
                .collect(),
            series: None,
            metrics_scrapes: 10,
            metrics_failures: 0,
        }
    }

    #[test]
    fn summary_fractions_bdp_and_targets() {
        let sc = &scenarios()[0];
        let running = |who| Running {
            who,
            socks: ([127, 0, 0, 1], 1).into(),
            pid: u32::MAX,
            metrics: None,
            _proxy: None,
        };
        let clients = vec![
            running(Who::Leg(0)),
            running(Who::Leg(1)),
            running(Who::Braid("lowrtt")),
            running(Who::Ctor),
        ];
        let mut samples = vec![
            sample(Who::Leg(0), 0, 2.0, &[(1.0, Some(50.0))]),
            sample(Who::Leg(0), 1, 2.0, &[(1.0, Some(40.0))]),
            sample(Who::Leg(1), 0, 1.0, &[(1.0, Some(100.0))]),
            sample(Who::Braid("lowrtt"), 0, 2.9, &[(0.6, None), (0.4, None)]),
            sample(Who::Braid("lowrtt"), 1, 2.95, &[(0.5, None), (0.5, None)]),
            sample(Who::Ctor, 0, 2.8, &[(0.7, None), (0.3, None)]),
        ];
        let mut failed = sample(Who::Ctor, 1, 0.0, &[]);
        failed.ok = false;
        samples.push(failed);
        let r = summarise(sc, &clients, &samples);
        assert_eq!(r.leg_capacity_mb_s, vec![Some(2.0), Some(1.0)]);
        assert_eq!(r.leg_capacity_sum_mb_s, Some(3.0));
        assert_eq!(r.leg_rtt_ms, vec![Some(40.0), Some(100.0)]);
        // max(2 MB/s x 40 ms, 1 MB/s x 100 ms) = 100 kB, doubled.
        assert!((r.two_bdp_bytes.unwrap() - 200_000.0).abs() < 1e-6);
        let braid = r.rows.iter().find(|x| x.kind == "braid").unwrap();
        assert!((braid.fraction_of_leg_sum.unwrap() - 2.925 / 3.0).abs() < 1e-9);
        assert_eq!(braid.leg_shares, vec![0.55, 0.45]);
        let leg = r.rows.iter().find(|x| x.kind == "leg").unwrap();
        assert!(leg.leg_shares.is_empty());
        assert_eq!(braid.reorder_peak_bytes, Some(100_000.0));
        let ctor = r.rows.iter().find(|x| x.kind == "ctor").unwrap();
        assert_eq!((ctor.runs, ctor.failed), (1, 1));
        assert_eq!(ctor.reorder_peak_bytes, None);
        let leg = r.rows.iter().find(|x| x.kind == "leg").unwrap();
        assert_eq!(leg.fraction_of_leg_sum, None);
        let met: Vec<Option<bool>> = r.targets.iter().map(|t| t.met).collect();
        assert_eq!(met, vec![Some(true), Some(true), Some(true)]);
        let report = Report {
            size_bytes: 20_000_000,
            reps: 2,
            tor_version: "0.4.9.11".into(),
            link_emulation: LINK_NOTE,
            metrics_available: true,
            scenarios: vec![r],
            samples,
        };
        let t = table(&report);
        assert!(
            t.contains("| uniform | Braid lowrtt | 2.92 (2.90-2.95) | 0.97 |"),
            "{t}"
        );
        assert!(
            t.contains("| uniform | C-tor | 2.80 (2.80-2.80), 1 failed |"),
            "{t}"
        );
        assert!(t.contains("RTT 40 ms"), "{t}");
        assert!(!t.contains("NOT met"), "{t}");
        // No series in the samples: an empty plot, still a document.
        assert!(plot(&report).contains("</svg>"));
        // Without any RTT from metrics, half the first-byte time.
        let bare: Vec<Sample> = report
            .samples
            .iter()
            .cloned()
            .map(|mut s| {
                s.legs.iter_mut().for_each(|l| l.min_rtt_ms = None);
                s
            })
            .collect();
        assert_eq!(leg_rtt(sc, 0, &bare), (Some(50.0), "first byte / 2"));
        assert_eq!(leg_rtt(sc, 1, &bare[..1]), (None, "none"));
    }
}
