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
//! each client downloads and/or uploads (`--direction download|upload|both`,
//! default both), every transfer checked by SHA-256 (the file server checks
//! an upload's and answers its digest):
//! 1. each leg alone: a Braid single circuit pinned to `guard_i > middle_i
//!    > exit`, whose throughput is the leg's capacity that way;
//! 2. Braid Conflux with each scheduler (minrtt, lowrtt, ecf);
//! 3. the C-tor client's Conflux set (fresh SOCKS credentials each time).
//!
//! The two directions answer different questions. A download is split
//! across the legs by the C-tor exit's scheduler (prop 329 §3: the sender
//! schedules), so Braid's scheduler only places the request and SWITCHes:
//! downloads compare Braid's receive side (reordering, flow control) with
//! C-tor's. An upload is split by the client's scheduler, so uploads are
//! where Braid's schedulers differ, and how its default is chosen.
//!
//! Figures per direction. A download's throughput is its bytes over the
//! time from opening the SOCKS connection to the last byte, and its first
//! byte is the time to the first body byte. An upload's throughput is its
//! bytes over the time from the SOCKS connection's success (the stream's
//! CONNECTED) to the server's answer ([`Upload::mb_per_s`]), and the
//! first-byte column holds its connect time instead (SOCKS and BEGIN to
//! CONNECTED: an upload sends at once). The reorder queue that matters for
//! an upload is the exit's, which the client cannot see: upload rows have
//! no reorder peak, and the BDP (each leg's download capacity times its
//! RTT) is only set against downloads.
//!
//! Braid runs as `braid proxy` children with `--metrics`; `/metrics` is
//! scraped every 100 ms during each Braid transfer for per-leg DATA bytes
//! (received for a download, sent for an upload: [`scrape::Direction`]),
//! RTT and the reorder queue. C-tor's per-leg bytes come from `CIRC_BW`
//! events: `READ` for a download, `WRITTEN` for an upload.
//!
//! Short uploads (`--short-size`, default 1 MB; `--short-reps`, default
//! 10, 0 for none). Bulk transfers show a scheduler's steady state; its
//! handling of a transfer's end (ECF keeps the last cells off a slower leg
//! when the faster one alone would deliver them sooner) shows in transfers
//! short enough for the end to be much of them, and too large for the fast
//! leg's window alone (100 kB went wholly on the fast leg of a warm set
//! with every scheduler). So after the bulk
//! repetitions every client makes `short-reps` uploads of `short-size`
//! bytes, in rounds over the clients whose order alternates as above,
//! each checked by SHA-256. Completion time is the time from the SOCKS
//! connection's success (CONNECTED) to the server's answer
//! (`Upload::elapsed - Upload::connected`); each client gets its mean,
//! median, range and failures, and each scenario the Braid scheduler of
//! lowest median. Braid's proxies keep one set per SOCKS isolation key, so
//! its uploads go one after another over the set the bulk part warmed (as
//! a browser's would); the C-tor client gets fresh SOCKS credentials, so a
//! prebuilt set, each time. Braid's per-leg DATA bytes sent come from one
//! scrape before and one after each short upload (none during it);
//! C-tor's from `CIRC_BW WRITTEN`. When no bulk uploads run
//! (`--direction download`), each client warms up with an upload too.
//!
//! [`Upload::mb_per_s`]: braid_testnet::download::Upload::mb_per_s

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use braid_testnet::config::parse_rate;
use braid_testnet::ctor_conflux::{LegReport, Route};
use braid_testnet::download::{Download, Upload, fetch_file, upload_file};
use braid_testnet::process::read_records;
use braid_testnet::{Manifest, NetworkConfig, RelayShape, TestnetError, ctor_conflux, launcher};
use serde::Serialize;

use super::error::BenchError;
use super::output::{write_json, write_text};
use super::proc::{cpu_seconds, peak_rss_mb};
use super::proxy::{ProxyChild, start_proxy};
use super::scrape::{self, Direction, Point, Recording, TunnelUse};
use super::svg::{Line, Panel, render};
use crate::cli::{BenchConfluxArgs, BenchDirection};
use crate::testnet_cmd::{say, up_interruptible};

/// Braid's schedulers, in table order.
const SCHEDULERS: [&str; 3] = ["minrtt", "lowrtt", "ecf"];
/// Braid's default scheduler: the one plotted.
const DEFAULT_SCHEDULER: &str = "ecf";
/// Width of a time-series bin.
const BIN_S: f64 = 0.2;
/// Bytes of each client's warm-up transfers.
const WARMUP_BYTES: u64 = 1_000_000;
/// Tries at each warm-up transfer.
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

/// Who transfers.
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

/// A client ready to transfer.
#[derive(Debug)]
struct Running {
    who: Who,
    socks: SocketAddr,
    pid: u32,
    metrics: Option<SocketAddr>,
    /// Stops the proxy when dropped.
    _proxy: Option<ProxyChild>,
}

/// What one leg carried during one transfer.
#[derive(Debug, Clone, Serialize)]
struct LegFigure {
    leg: usize,
    path: String,
    /// Braid: DATA payload bytes received on the leg (download) or sent on
    /// it (upload). C-tor: cell bytes that arrived on it (download,
    /// `CIRC_BW READ`) or that the client wrote on it (upload, `WRITTEN`).
    bytes: u64,
    /// C-tor's `DELIVERED_READ` (download; misattributed across legs, see
    /// [`LegReport::bytes`]) or `DELIVERED_WRITTEN` (upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_bytes: Option<u64>,
    /// `bytes` over the sum of every leg's.
    share: f64,
    rtt_ms: Option<f64>,
    min_rtt_ms: Option<f64>,
    /// CONFLUX_LINK to LINKED (Braid: from metrics; C-tor: CONFLUX_RTT).
    link_rtt_ms: Option<f64>,
}

/// Per-leg throughput over time, in MB/s per bin.
#[derive(Debug, Clone, Serialize)]
struct SeriesJson {
    bin_ms: f64,
    unit: &'static str,
    legs: Vec<Vec<f64>>,
    total: Vec<f64>,
}

/// One transfer by one client.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    scenario: String,
    client: String,
    kind: &'static str,
    direction: Direction,
    rep: usize,
    ok: bool,
    error: Option<String>,
    bytes: u64,
    /// Download: bytes over the time from opening the SOCKS connection to
    /// the last byte. Upload: bytes over the time from the connection's
    /// success to the server's answer ([`Upload::mb_per_s`]).
    mb_per_s: f64,
    /// Upload: bytes over the server's time from the first body byte to
    /// the last ([`Upload::server_mb_per_s`]).
    server_mb_per_s: Option<f64>,
    /// Download: time to the first body byte. Upload: time to open the
    /// connection (SOCKS, BEGIN to CONNECTED), after which it sends.
    ttfb_ms: f64,
    cpu_s_per_100mb: Option<f64>,
    tunnel: Option<String>,
    /// Braid downloads only: the reorder queue's high-water mark over the
    /// set's life (an upload's reordering happens at the exit).
    reorder_peak_bytes: Option<f64>,
    /// Braid downloads only: the largest queue a scrape saw.
    reorder_sampled_max_bytes: Option<f64>,
    legs: Vec<LegFigure>,
    series: Option<SeriesJson>,
    metrics_scrapes: usize,
    metrics_failures: usize,
}

/// One client's transfers one way in one scenario.
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    client: String,
    kind: &'static str,
    direction: Direction,
    runs: usize,
    failed: usize,
    mb_per_s_mean: f64,
    mb_per_s_min: f64,
    mb_per_s_max: f64,
    /// The mean over the summed leg capacity the same way (sets only).
    fraction_of_leg_sum: Option<f64>,
    /// Mean of [`Sample::ttfb_ms`]: first byte of a download, connect time
    /// of an upload.
    ttfb_ms_mean: f64,
    cpu_s_per_100mb_mean: Option<f64>,
    peak_rss_mb: Option<f64>,
    reorder_peak_bytes: Option<f64>,
    two_bdp_bytes: Option<f64>,
    leg_shares: Vec<f64>,
}

/// One short upload by one client.
#[derive(Debug, Clone, Serialize)]
struct ShortSample {
    scenario: String,
    client: String,
    kind: &'static str,
    /// The round, from 0.
    rep: usize,
    ok: bool,
    /// Why it failed, or (C-tor, `ok`) a warning about the set it used.
    error: Option<String>,
    bytes: u64,
    /// From the SOCKS connection's success (CONNECTED) to the server's
    /// answer ([`completion_ms`]).
    completion_ms: f64,
    /// SOCKS and BEGIN to CONNECTED.
    connect_ms: f64,
    tunnel: Option<String>,
    /// Braid: DATA payload bytes sent on each leg (a scrape before and one
    /// after the upload). C-tor: cell bytes written on each leg (`CIRC_BW
    /// WRITTEN`).
    legs: Vec<LegFigure>,
}

/// Summary statistics of a non-empty set of figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Stats {
    mean: f64,
    /// The middle figure, or the mean of the two middle ones.
    median: f64,
    min: f64,
    max: f64,
}

/// One client's short uploads in one scenario.
#[derive(Debug, Clone, Serialize)]
struct ShortRow {
    scenario: String,
    client: String,
    kind: &'static str,
    runs: usize,
    failed: usize,
    /// Successful uploads with a warning (C-tor's that did not use a
    /// linked set of the scenario's legs); they count in the figures.
    warned: usize,
    /// [`ShortSample::completion_ms`] of the successful uploads (`None`:
    /// none succeeded).
    completion_ms: Option<Stats>,
    /// Mean of [`ShortSample::connect_ms`].
    connect_ms_mean: Option<f64>,
    /// Mean share of each leg, by middle in the scenario's order (sets
    /// only).
    leg_shares: Vec<f64>,
}

/// One leg's relays and its middle's link.
#[derive(Debug, Clone, Serialize)]
struct LegSetup {
    guard: String,
    middle: String,
    exit: String,
    middle_rate: &'static str,
    middle_delay_one_way: &'static str,
}

/// One target and whether the figures meet it (`None`: figures missing).
#[derive(Debug, Clone, Serialize)]
struct Target {
    direction: Direction,
    what: String,
    met: Option<bool>,
}

/// Each leg's capacity one way: the mean throughput of a Braid single
/// circuit through it alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Capacity {
    direction: Direction,
    leg_mb_s: Vec<Option<f64>>,
    /// Their sum, when every leg has one.
    sum_mb_s: Option<f64>,
}

/// One scenario's set-up, summary and targets.
#[derive(Debug, Clone, Serialize)]
struct ScenarioReport {
    name: &'static str,
    about: &'static str,
    legs: Vec<LegSetup>,
    ctor_torrc: Vec<String>,
    consensus_params: BTreeMap<String, i32>,
    /// Leg capacities, one entry per direction measured.
    capacity: Vec<Capacity>,
    /// Each leg's RTT for its BDP: the smallest congestion-control minimum
    /// RTT or LINK-to-LINKED RTT Braid measured on any circuit through the
    /// leg's middle (guards and exit are unshaped), else half the smallest
    /// time to first byte of the leg alone downloading (two round trips:
    /// BEGIN and the request).
    leg_rtt_ms: Vec<Option<f64>>,
    leg_rtt_source: Vec<&'static str>,
    /// Twice the largest leg BDP: download capacity times RTT (the client's
    /// reorder queue holds downloads; `None` without downloads).
    two_bdp_bytes: Option<f64>,
    rows: Vec<Row>,
    targets: Vec<Target>,
    /// A row per client for the short uploads.
    short_rows: Vec<ShortRow>,
    /// The Braid scheduler whose short uploads had the lowest median
    /// completion time.
    short_lowest_median_scheduler: Option<&'static str>,
    error: Option<String>,
}

/// Everything `bench conflux` measured, as written to the JSON file.
#[derive(Debug, Serialize)]
struct Report {
    size_bytes: u64,
    reps: usize,
    /// The directions measured, in the order of each scenario's rows.
    directions: Vec<Direction>,
    tor_version: String,
    link_emulation: &'static str,
    metrics_available: bool,
    scenarios: Vec<ScenarioReport>,
    samples: Vec<Sample>,
    /// Bytes of each short upload.
    short_size_bytes: u64,
    /// Short uploads per client and scenario (0: none).
    short_reps: usize,
    short_samples: Vec<ShortSample>,
}

const LINK_NOTE: &str = "testnet shaper on each middle: rate caps each direction of the \
    middle's link; the delay is added once per direction of that link, and a circuit crosses \
    it twice each way, so delay D adds 2D one way and 4D to the round trip";

fn interrupted(e: &BenchError) -> bool {
    matches!(e, BenchError::Testnet(TestnetError::Interrupted))
}

/// The directions `--direction` asks for, downloads first.
fn directions(choice: BenchDirection) -> Vec<Direction> {
    match choice {
        BenchDirection::Download => vec![Direction::Download],
        BenchDirection::Upload => vec![Direction::Upload],
        BenchDirection::Both => vec![Direction::Download, Direction::Upload],
    }
}

/// The sizes of the transfers.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Bytes of each bulk transfer (`--size`).
    bulk: u64,
    /// Bytes of each short upload (`--short-size`).
    short: u64,
}

/// The samples of one scenario, kept as they come (partial results
/// survive an interruption).
#[derive(Debug, Default)]
struct Collected {
    bulk: Vec<Sample>,
    short: Vec<ShortSample>,
}

pub(crate) async fn conflux(args: BenchConfluxArgs) -> Result<(), BenchError> {
    let sizes = Sizes {
        bulk: parse_rate(&args.size)?,
        short: parse_rate(&args.short_size)?,
    };
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
        size_bytes: sizes.bulk,
        reps: args.reps,
        directions: directions(args.direction),
        tor_version: String::new(),
        link_emulation: LINK_NOTE,
        metrics_available: false,
        scenarios: Vec::new(),
        samples: Vec::new(),
        short_size_bytes: sizes.short,
        short_reps: args.short_reps,
        short_samples: Vec::new(),
    };
    let mut failed = Vec::new();
    for sc in &chosen {
        say(&format!("[{}] {}", sc.name, sc.about));
        let outcome = run_scenario(&args, sc, sizes, &mut report).await;
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
    if report.short_reps > 0 {
        say(&short_table(&report));
    }
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
        capacity: Vec::new(),
        leg_rtt_ms: Vec::new(),
        leg_rtt_source: Vec::new(),
        two_bdp_bytes: None,
        rows: Vec::new(),
        targets: Vec::new(),
        short_rows: Vec::new(),
        short_lowest_median_scheduler: None,
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
    sizes: Sizes,
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
    let mut mine = Collected::default();
    let measured = tokio::select! {
        r = measure(args, sc, sizes, network.manifest(), &netdir, &braid_dir, &mut mine) => r,
        _ = tokio::signal::ctrl_c() => Err(BenchError::Testnet(TestnetError::Interrupted)),
        _ = term.recv() => Err(BenchError::Testnet(TestnetError::Interrupted)),
    };
    // The proxies were stopped when `measure` ended or was dropped.
    let stopped = network.down();
    report.samples.extend(mine.bulk);
    report.short_samples.extend(mine.short);
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

/// Starts the clients, warms them up, and runs the bulk repetitions, then
/// the short uploads.
async fn measure(
    args: &BenchConfluxArgs,
    sc: &Scenario,
    sizes: Sizes,
    manifest: &Manifest,
    netdir: &Path,
    braid_dir: &Path,
    collected: &mut Collected,
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
    let directions = directions(args.direction);
    let files = manifest.fileserver.address;
    // Warm-up: one small transfer in each direction measured (circuits,
    // caches, the congestion windows of what the client sends). C-tor
    // exits refuse streams for a moment after the network is ready: retry.
    for c in &clients {
        for direction in warm_up_directions(&directions, args.short_reps) {
            let mut last = String::new();
            for attempt in 0..WARMUP_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                match tokio::time::timeout(
                    Duration::from_secs(60),
                    warm_up(files, c.socks, direction),
                )
                .await
                {
                    Ok(Ok(())) => {
                        last.clear();
                        break;
                    }
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => last = "timed out".into(),
                }
            }
            if !last.is_empty() {
                say(&format!(
                    "[{}] warning: warm-up {} of {} failed {WARMUP_ATTEMPTS} times: {last}",
                    sc.name,
                    direction.name(),
                    c.who.label()
                ));
            }
        }
    }
    let mut mine: Vec<Sample> = Vec::new();
    for rep in 0..args.reps {
        let mut order: Vec<(&Running, Direction)> = clients
            .iter()
            .flat_map(|c| directions.iter().map(move |&d| (c, d)))
            .collect();
        if rep % 2 == 1 {
            order.reverse();
        }
        for (c, direction) in order {
            let s = transfer(sc, c, direction, manifest, sizes.bulk, rep).await;
            say(&format!("[{}] {}", sc.name, describe(&s)));
            collected.bulk.push(s.clone());
            mine.push(s);
        }
    }
    // Short uploads: rounds over every client, the order alternating.
    let mut short: Vec<ShortSample> = Vec::new();
    for rep in 0..args.short_reps {
        let mut order: Vec<&Running> = clients.iter().collect();
        if rep % 2 == 1 {
            order.reverse();
        }
        for c in order {
            let s = short_upload(sc, c, manifest, sizes.short, rep).await;
            say(&format!("[{}] {}", sc.name, describe_short(&s)));
            collected.short.push(s.clone());
            short.push(s);
        }
    }
    let mut out = summarise(sc, &clients, &mine, &directions);
    if args.short_reps > 0 {
        let whos: Vec<Who> = clients.iter().map(|c| c.who).collect();
        out.short_rows = whos.iter().map(|&w| short_row(sc, w, &short)).collect();
        out.short_lowest_median_scheduler = lowest_median_scheduler(&whos, &out.short_rows);
    }
    Ok(out)
}

/// The directions to warm up: those measured in bulk, and uploads when
/// short uploads follow.
fn warm_up_directions(directions: &[Direction], short_reps: usize) -> Vec<Direction> {
    let mut out = directions.to_vec();
    if short_reps > 0 && !out.contains(&Direction::Upload) {
        out.push(Direction::Upload);
    }
    out
}

/// A warm-up transfer of [`WARMUP_BYTES`] through `socks`: checked, not
/// timed.
async fn warm_up(
    files: SocketAddr,
    socks: SocketAddr,
    direction: Direction,
) -> Result<(), TestnetError> {
    let socks = Some((socks, None));
    match direction {
        Direction::Download => fetch_file(files, socks, WARMUP_BYTES, 999).await.map(drop),
        Direction::Upload => upload_file(files, socks, WARMUP_BYTES, 999).await.map(drop),
    }
}

/// What a checked transfer measured, either way.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Done {
    bytes: u64,
    /// [`Sample::mb_per_s`].
    mb_per_s: f64,
    /// [`Sample::server_mb_per_s`].
    server_mb_per_s: Option<f64>,
    /// [`Sample::ttfb_ms`]: first byte of a download, connect time of an
    /// upload.
    first_ms: f64,
}

impl From<&Download> for Done {
    fn from(d: &Download) -> Self {
        Done {
            bytes: d.bytes,
            mb_per_s: d.mb_per_s(),
            server_mb_per_s: None,
            first_ms: d.time_to_first_byte.as_secs_f64() * 1000.0,
        }
    }
}

impl From<&Upload> for Done {
    fn from(u: &Upload) -> Self {
        Done {
            bytes: u.bytes,
            mb_per_s: u.mb_per_s(),
            server_mb_per_s: Some(u.server_mb_per_s()),
            first_ms: u.connected.as_secs_f64() * 1000.0,
        }
    }
}

/// How long a transfer of `size` bytes may take: generous, 50 kB/s and a
/// minute.
fn time_limit(size: u64) -> Duration {
    Duration::from_secs(60 + size / 50_000)
}

/// One checked transfer by one client.
async fn transfer(
    sc: &Scenario,
    c: &Running,
    direction: Direction,
    manifest: &Manifest,
    size: u64,
    rep: usize,
) -> Sample {
    let limit = time_limit(size);
    let seed = rep as u64;
    let cpu0 = cpu_seconds(c.pid);
    let mut sample = Sample {
        scenario: sc.name.into(),
        client: c.who.label(),
        kind: c.who.kind(),
        direction,
        rep,
        ok: false,
        error: None,
        bytes: 0,
        mb_per_s: 0.0,
        server_mb_per_s: None,
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
    let timed_out = || {
        format!(
            "no complete {} within {} s",
            direction.name(),
            limit.as_secs()
        )
    };
    let server = manifest.fileserver.address;
    match c.who {
        Who::Ctor => {
            let run = async {
                match direction {
                    Direction::Download => ctor_conflux::download(manifest, size, seed)
                        .await
                        .map(|d| (Done::from(&d.download), d.route)),
                    Direction::Upload => ctor_conflux::upload(manifest, size, seed)
                        .await
                        .map(|u| (Done::from(&u.upload), u.route)),
                }
            };
            match tokio::time::timeout(limit, run).await {
                Ok(Ok((done, route))) => {
                    fill_done(&mut sample, &done);
                    sample.tunnel = route.conflux_id.clone();
                    sample.legs = ctor_legs(&route.legs, direction);
                    sample.error = check_ctor_set(sc, &route);
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
        Who::Leg(_) | Who::Braid(_) => {
            let socks = Some((c.socks, None));
            let run = tokio::time::timeout(limit, async {
                match direction {
                    Direction::Download => fetch_file(server, socks, size, seed)
                        .await
                        .map(|d| Done::from(&d)),
                    Direction::Upload => upload_file(server, socks, size, seed)
                        .await
                        .map(|u| Done::from(&u)),
                }
            });
            let (result, rec) = match c.metrics {
                Some(addr) => scrape::record(addr, run).await,
                None => (run.await, Recording::default()),
            };
            sample.metrics_scrapes = rec.points.len();
            sample.metrics_failures = rec.failures;
            match result {
                Ok(Ok(done)) => {
                    fill_done(&mut sample, &done);
                    if let Some(u) = scrape::analyse(&rec.points, BIN_S, direction) {
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

/// Marks `sample` as a success with `done`'s figures.
fn fill_done(sample: &mut Sample, done: &Done) {
    sample.ok = true;
    sample.bytes = done.bytes;
    sample.mb_per_s = done.mb_per_s;
    sample.server_mb_per_s = done.server_mb_per_s;
    sample.ttfb_ms = done.first_ms;
}

/// One checked short upload of `size` bytes by one client: its completion
/// time and what each leg sent (for Braid from a scrape before and one
/// after the upload, none during it, so that the timed part is not
/// disturbed).
async fn short_upload(
    sc: &Scenario,
    c: &Running,
    manifest: &Manifest,
    size: u64,
    rep: usize,
) -> ShortSample {
    let limit = time_limit(size);
    let seed = rep as u64;
    let mut sample = ShortSample {
        scenario: sc.name.into(),
        client: c.who.label(),
        kind: c.who.kind(),
        rep,
        ok: false,
        error: None,
        bytes: 0,
        completion_ms: 0.0,
        connect_ms: 0.0,
        tunnel: None,
        legs: Vec::new(),
    };
    let timed_out = || format!("no complete upload within {} s", limit.as_secs());
    match c.who {
        Who::Ctor => {
            match tokio::time::timeout(limit, ctor_conflux::upload(manifest, size, seed)).await {
                Ok(Ok(u)) => {
                    fill_short(&mut sample, &u.upload);
                    sample.tunnel = u.route.conflux_id.clone();
                    sample.legs = ctor_legs(&u.route.legs, Direction::Upload);
                    sample.error = check_ctor_set(sc, &u.route);
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
        Who::Leg(_) | Who::Braid(_) => {
            let snap = || async {
                match c.metrics {
                    Some(addr) => scrape::scrape(addr).await.ok(),
                    None => None,
                }
            };
            let before = snap().await;
            let socks = Some((c.socks, None));
            let server = manifest.fileserver.address;
            match tokio::time::timeout(limit, upload_file(server, socks, size, seed)).await {
                Ok(Ok(u)) => {
                    fill_short(&mut sample, &u);
                    if let (Some(before), Some(after)) = (before, snap().await) {
                        let points = [
                            Point {
                                t: 0.0,
                                snap: before,
                            },
                            Point {
                                t: u.elapsed.as_secs_f64(),
                                snap: after,
                            },
                        ];
                        if let Some(used) = scrape::analyse(&points, BIN_S, Direction::Upload) {
                            sample.tunnel = Some(used.tunnel.clone());
                            sample.legs = leg_figures(&used);
                        }
                    }
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
    }
    sample
}

/// An upload's completion time in ms: from the SOCKS connection's success
/// (CONNECTED) to the server's answer.
fn completion_ms(u: &Upload) -> f64 {
    u.elapsed.saturating_sub(u.connected).as_secs_f64() * 1000.0
}

/// Marks `sample` as a success with `u`'s figures.
fn fill_short(sample: &mut ShortSample, u: &Upload) {
    sample.ok = true;
    sample.bytes = u.bytes;
    sample.completion_ms = completion_ms(u);
    sample.connect_ms = u.connected.as_secs_f64() * 1000.0;
}

/// C-tor's legs for a transfer going `direction`: cell bytes counted where
/// each cell arrives (`READ`) for a download, where each leaves the client
/// (`WRITTEN`) for an upload, with the `DELIVERED_` figure beside.
fn ctor_legs(legs: &[LegReport], direction: Direction) -> Vec<LegFigure> {
    let figures = |l: &LegReport| match direction {
        Direction::Download => (l.read, l.bytes),
        Direction::Upload => (l.written, l.delivered_written),
    };
    let total = legs.iter().map(|l| figures(l).0).sum::<u64>().max(1);
    legs.iter()
        .enumerate()
        .map(|(i, l)| {
            let (bytes, delivered) = figures(l);
            LegFigure {
                leg: i,
                path: l.path.join(">"),
                bytes,
                delivered_bytes: Some(delivered),
                share: bytes as f64 / total as f64,
                rtt_ms: None,
                min_rtt_ms: None,
                link_rtt_ms: l.rtt_ms,
            }
        })
        .collect()
}

/// Why C-tor's transfer does not count as a Conflux set of the scenario's
/// legs: its stream's circuit was not CONFLUX_LINKED, or its set had
/// another number of legs (3 legs only with the consensus parameter).
fn check_ctor_set(sc: &Scenario, route: &Route) -> Option<String> {
    (route.purpose != "CONFLUX_LINKED" || route.legs.len() != sc.legs()).then(|| {
        format!(
            "C-tor used a {} circuit with {} legs",
            route.purpose,
            route.legs.len()
        )
    })
}

/// Braid's per-leg figures, series and (downloads only) reorder queue.
fn fill_from_metrics(sample: &mut Sample, u: &TunnelUse) {
    sample.tunnel = Some(u.tunnel.clone());
    if sample.direction == Direction::Download {
        sample.reorder_peak_bytes = u.reorder_peak_bytes;
        sample.reorder_sampled_max_bytes = u.reorder_sampled_max_bytes;
    }
    sample.legs = leg_figures(u);
    let mb = |v: &Vec<f64>| v.iter().map(|x| (x / 1e4).round() / 100.0).collect();
    sample.series = Some(SeriesJson {
        bin_ms: u.series.bin_s * 1000.0,
        unit: "MB/s",
        legs: u.series.legs.iter().map(mb).collect(),
        total: mb(&u.series.total),
    });
}

/// Braid's per-leg figures of a transfer, from its metrics.
fn leg_figures(u: &TunnelUse) -> Vec<LegFigure> {
    let total: f64 = u.legs.iter().map(|l| l.bytes).sum::<f64>().max(1.0);
    u.legs
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
        .collect()
}

/// One line about one sample, for the progress log.
fn describe(s: &Sample) -> String {
    let mut t = format!(
        "{:<22} {:<8} run {}: ",
        s.client,
        s.direction.name(),
        s.rep + 1
    );
    if s.ok {
        let first = match s.direction {
            Direction::Download => "first byte",
            Direction::Upload => "connect",
        };
        let _ = write!(t, "{:.2} MB/s, {first} {:.0} ms", s.mb_per_s, s.ttfb_ms);
        if let Some(m) = s.server_mb_per_s {
            let _ = write!(t, ", server {m:.2} MB/s");
        }
        if let Some(c) = s.cpu_s_per_100mb {
            let _ = write!(t, ", {c:.2} CPU s/100 MB");
        }
        if let Some(shares) = shares_by_middle(&s.legs) {
            let _ = write!(t, ", by middle {shares}");
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

/// One line about one short upload, for the progress log.
fn describe_short(s: &ShortSample) -> String {
    let mut t = format!("{:<22} short upload {}: ", s.client, s.rep + 1);
    if s.ok {
        let _ = write!(
            t,
            "{:.0} ms (connect {:.0} ms)",
            s.completion_ms, s.connect_ms
        );
        if let Some(shares) = shares_by_middle(&s.legs) {
            let _ = write!(t, ", by middle {shares}");
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

/// Each leg's share by middle, sorted by middle (`relay2 60% relay3
/// 40%`); `None` for a single leg.
fn shares_by_middle(legs: &[LegFigure]) -> Option<String> {
    if legs.len() < 2 {
        return None;
    }
    let mut shares: Vec<(&str, f64)> = legs.iter().map(|l| (middle_of(&l.path), l.share)).collect();
    shares.sort_by(|a, b| a.0.cmp(b.0));
    let shares: Vec<String> = shares
        .iter()
        .map(|(m, share)| format!("{m} {:.0}%", share * 100.0))
        .collect();
    Some(shares.join(" "))
}

/// The middle of a `guard>middle>exit` path.
fn middle_of(path: &str) -> &str {
    path.split('>').nth(1).unwrap_or("?")
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Rows, leg capacities, BDP and targets from the scenario's samples: for
/// each of `directions` in turn, a row per client.
fn summarise(
    sc: &Scenario,
    clients: &[Running],
    samples: &[Sample],
    directions: &[Direction],
) -> ScenarioReport {
    let mut out = scenario_report(sc);
    let k = sc.legs();
    out.capacity = directions
        .iter()
        .map(|&d| capacity(sc, samples, d))
        .collect();
    let (rtts, sources): (Vec<Option<f64>>, Vec<&'static str>) =
        (0..k).map(|i| leg_rtt(sc, i, samples)).unzip();
    out.leg_rtt_ms = rtts;
    out.leg_rtt_source = sources;
    out.two_bdp_bytes = capacity_of(&out.capacity, Direction::Download)
        .and_then(|c| {
            c.leg_mb_s
                .iter()
                .zip(&out.leg_rtt_ms)
                .map(|(c, r)| Some(c.as_ref()? * 1e6 * r.as_ref()? / 1000.0))
                .collect::<Option<Vec<f64>>>()
        })
        .and_then(|v| v.into_iter().reduce(f64::max))
        .map(|b| 2.0 * b);
    for &direction in directions {
        let leg_sum = capacity_of(&out.capacity, direction).and_then(|c| c.sum_mb_s);
        for c in clients {
            let row = row(sc, c, direction, samples, leg_sum, out.two_bdp_bytes);
            out.rows.push(row);
        }
    }
    out.targets = targets(&out);
    out
}

/// Each leg's mean throughput alone going `direction`, and their sum.
fn capacity(sc: &Scenario, samples: &[Sample], direction: Direction) -> Capacity {
    let leg_mb_s: Vec<Option<f64>> = (0..sc.legs())
        .map(|i| {
            let label = Who::Leg(i).label();
            mean(
                &samples
                    .iter()
                    .filter(|s| s.ok && s.direction == direction && s.client == label)
                    .map(|s| s.mb_per_s)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    Capacity {
        direction,
        sum_mb_s: leg_mb_s
            .iter()
            .copied()
            .collect::<Option<Vec<f64>>>()
            .map(|v| v.iter().sum()),
        leg_mb_s,
    }
}

/// The capacities measured going `direction`.
fn capacity_of(capacity: &[Capacity], direction: Direction) -> Option<&Capacity> {
    capacity.iter().find(|c| c.direction == direction)
}

/// Client `c`'s row going `direction`; `leg_sum` is the summed leg
/// capacity that way, `two_bdp` twice the largest leg BDP.
fn row(
    sc: &Scenario,
    c: &Running,
    direction: Direction,
    samples: &[Sample],
    leg_sum: Option<f64>,
    two_bdp: Option<f64>,
) -> Row {
    let label = c.who.label();
    let all: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.client == label && s.direction == direction)
        .collect();
    let ok: Vec<&Sample> = all.iter().copied().filter(|s| s.ok).collect();
    let rates: Vec<f64> = ok.iter().map(|s| s.mb_per_s).collect();
    let m = mean(&rates).unwrap_or(0.0);
    let cpus: Vec<f64> = ok.iter().filter_map(|s| s.cpu_s_per_100mb).collect();
    let leg_shares = leg_shares(sc, &ok.iter().map(|s| &s.legs[..]).collect::<Vec<_>>());
    let is_set = !matches!(c.who, Who::Leg(_));
    let download = direction == Direction::Download;
    Row {
        scenario: sc.name.into(),
        client: label,
        kind: c.who.kind(),
        direction,
        runs: ok.len(),
        failed: all.len() - ok.len(),
        mb_per_s_mean: m,
        mb_per_s_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        mb_per_s_max: rates.iter().copied().fold(0.0, f64::max),
        fraction_of_leg_sum: leg_sum
            .filter(|sum| is_set && *sum > 0.0 && !ok.is_empty())
            .map(|sum| m / sum),
        ttfb_ms_mean: mean(&ok.iter().map(|s| s.ttfb_ms).collect::<Vec<_>>()).unwrap_or(0.0),
        cpu_s_per_100mb_mean: mean(&cpus),
        peak_rss_mb: peak_rss_mb(c.pid),
        reorder_peak_bytes: if c.who.kind() == "braid" && download {
            ok.iter()
                .filter_map(|s| s.reorder_peak_bytes)
                .reduce(f64::max)
        } else {
            None
        },
        two_bdp_bytes: (is_set && download).then_some(two_bdp).flatten(),
        leg_shares,
    }
}

/// The mean share of each leg over `transfers` (each one's legs), in the
/// scenario's leg order, by middle (Conflux pairs guards and middles at
/// random; the middle makes the leg). Empty unless some transfer used
/// more than one leg.
fn leg_shares(sc: &Scenario, transfers: &[&[LegFigure]]) -> Vec<f64> {
    if !transfers.iter().any(|legs| legs.len() > 1) {
        return Vec::new();
    }
    (0..sc.legs())
        .map(|i| {
            let middle = sc.middle(i);
            mean(
                &transfers
                    .iter()
                    .map(|legs| {
                        legs.iter()
                            .filter(|l| middle_of(&l.path) == middle)
                            .map(|l| l.share)
                            .sum::<f64>()
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or(0.0)
        })
        .collect()
}

/// Mean, median and range of `v`; `None` when it is empty.
fn stats(v: &[f64]) -> Option<Stats> {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let low = sorted.get(n.checked_sub(1)? / 2)?;
    let high = sorted.get(n / 2)?;
    Some(Stats {
        mean: mean(v)?,
        median: (low + high) / 2.0,
        min: *sorted.first()?,
        max: *sorted.last()?,
    })
}

/// Client `who`'s row of short uploads.
fn short_row(sc: &Scenario, who: Who, samples: &[ShortSample]) -> ShortRow {
    let label = who.label();
    let all: Vec<&ShortSample> = samples.iter().filter(|s| s.client == label).collect();
    let ok: Vec<&ShortSample> = all.iter().copied().filter(|s| s.ok).collect();
    ShortRow {
        scenario: sc.name.into(),
        client: label,
        kind: who.kind(),
        runs: ok.len(),
        failed: all.len() - ok.len(),
        warned: ok.iter().filter(|s| s.error.is_some()).count(),
        completion_ms: stats(&ok.iter().map(|s| s.completion_ms).collect::<Vec<_>>()),
        connect_ms_mean: mean(&ok.iter().map(|s| s.connect_ms).collect::<Vec<_>>()),
        leg_shares: leg_shares(sc, &ok.iter().map(|s| &s.legs[..]).collect::<Vec<_>>()),
    }
}

/// The Braid scheduler whose short uploads had the lowest median
/// completion time (the first in table order on a tie); `rows` are the
/// rows of `whos`, in the same order.
fn lowest_median_scheduler(whos: &[Who], rows: &[ShortRow]) -> Option<&'static str> {
    whos.iter()
        .zip(rows)
        .filter_map(|(who, row)| match who {
            Who::Braid(s) => Some((*s, row.completion_ms?.median)),
            Who::Leg(_) | Who::Ctor => None,
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
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
        .filter(|s| s.ok && s.direction == Direction::Download && s.client == label)
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

/// Per direction: Braid Conflux >= 0.95 of the summed leg capacity and >=
/// C-tor's Conflux. Downloads: peak reorder <= 2 x the largest leg BDP
/// (an upload's reorder queue is the exit's).
fn targets(r: &ScenarioReport) -> Vec<Target> {
    let mut out = Vec::new();
    for row in r.rows.iter().filter(|x| x.kind == "braid") {
        let direction = row.direction;
        let ctor = r
            .rows
            .iter()
            .find(|x| x.kind == "ctor" && x.direction == direction && x.runs > 0);
        let what = |t: &str| format!("{} {}: {} {t}", r.name, direction.name(), row.client);
        out.push(Target {
            direction,
            what: what(&format!(">= {TARGET_FRACTION:.2} of summed leg capacity")),
            met: row.fraction_of_leg_sum.map(|f| f >= TARGET_FRACTION),
        });
        out.push(Target {
            direction,
            what: what(">= C-tor's Conflux"),
            met: ctor
                .filter(|_| row.runs > 0)
                .map(|c| row.mb_per_s_mean >= c.mb_per_s_mean),
        });
        if direction == Direction::Download {
            out.push(Target {
                direction,
                what: what("peak reorder <= 2 x largest leg BDP"),
                met: match (row.reorder_peak_bytes, r.two_bdp_bytes) {
                    (Some(p), Some(b)) => Some(p <= b),
                    _ => None,
                },
            });
        }
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

/// Notes printed under the table when uploads ran.
const UPLOAD_NOTES: &str = "upload rows: MB/s from the SOCKS connection's success to the \
    server's answer; \"first byte\" is the connect time (SOCKS, BEGIN to CONNECTED); leg \
    shares from DATA bytes sent (Braid) or CIRC_BW WRITTEN (C-tor); no reorder peak (the \
    exit reorders an upload)";

/// The table, the leg capacities and the targets, as printed.
fn table(r: &Report) -> String {
    let directions: Vec<&str> = r.directions.iter().map(|d| d.name()).collect();
    let mut out = format!(
        "Conflux, {} MB transfers ({}), {} runs each, tor {}\n\
         | scenario | direction | client | MB/s mean (min-max) | of leg sum | first byte ms | CPU s / 100 MB | peak reorder kB | 2 x largest leg BDP kB | leg shares % |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        r.size_bytes as f64 / 1e6,
        directions.join(", "),
        r.reps,
        r.tor_version
    );
    for sc in &r.scenarios {
        if let Some(e) = &sc.error {
            let _ = writeln!(out, "| {} | | failed: {e} | | | | | | | |", sc.name);
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
            let download = row.direction == Direction::Download;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
                sc.name,
                row.direction.name(),
                row.client,
                rate,
                opt(row.fraction_of_leg_sum, |f| format!("{f:.3}")),
                row.ttfb_ms_mean,
                opt(row.cpu_s_per_100mb_mean, |c| format!("{c:.2}")),
                if row.kind == "braid" && download {
                    opt(row.reorder_peak_bytes, |b| format!("{:.0}", b / 1000.0))
                } else if row.kind == "braid" {
                    "n/a".into()
                } else {
                    "-".into()
                },
                if row.kind == "leg" || !download {
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
    if r.directions.contains(&Direction::Upload) {
        let _ = writeln!(out, "\n{UPLOAD_NOTES}");
    }
    out.push_str("\nleg capacity (one circuit alone) and RTT measured by Braid:\n");
    for sc in r.scenarios.iter().filter(|s| s.error.is_none()) {
        let per_direction = |i: Option<usize>| -> String {
            sc.capacity
                .iter()
                .map(|c| {
                    let v = match i {
                        Some(i) => c.leg_mb_s.get(i).copied().flatten(),
                        None => c.sum_mb_s,
                    };
                    format!(
                        "{} {} MB/s",
                        c.direction.name(),
                        opt(v, |v| format!("{v:.2}"))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let legs: Vec<String> = sc
            .legs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!(
                    "{}>{}>{} ({} {}): {}, RTT {} ms ({})",
                    l.guard,
                    l.middle,
                    l.exit,
                    l.middle_rate,
                    l.middle_delay_one_way,
                    per_direction(Some(i)),
                    opt(sc.leg_rtt_ms.get(i).copied().flatten(), |m| format!(
                        "{m:.0}"
                    )),
                    sc.leg_rtt_source.get(i).copied().unwrap_or("none"),
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {}: {}; sum: {}",
            sc.name,
            legs.join("; "),
            per_direction(None)
        );
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

/// Notes printed under the short-upload table.
const SHORT_NOTES: &str = "completion: from the SOCKS connection's success (CONNECTED) to the \
    server's answer; connect: SOCKS, BEGIN to CONNECTED; clients in rounds, the order \
    alternating; Braid sends over the set its bulk transfers warmed (one per SOCKS isolation \
    key), C-tor over a fresh prebuilt set each time (fresh SOCKS credentials); \"with a \
    warning\": C-tor's upload did not use a linked set of the scenario's legs (still counted; \
    see short_samples in the JSON); leg shares from DATA bytes sent (Braid, scraped before and \
    after each upload) or CIRC_BW WRITTEN (C-tor)";

/// The short-upload table and, per scenario, the Braid scheduler of
/// lowest median, as printed.
fn short_table(r: &Report) -> String {
    let mut out = format!(
        "Conflux, short uploads: {} kB each, {} per client, tor {}\n\
         | scenario | client | mean ms | median ms | min-max ms | failed | connect ms | leg shares % |\n\
         |---|---|---|---|---|---|---|---|\n",
        r.short_size_bytes as f64 / 1e3,
        r.short_reps,
        r.tor_version
    );
    for sc in &r.scenarios {
        if let Some(e) = &sc.error {
            let _ = writeln!(out, "| {} | failed: {e} | | | | | | |", sc.name);
            continue;
        }
        for row in &sc.short_rows {
            let shares: Vec<String> = row
                .leg_shares
                .iter()
                .map(|s| format!("{:.0}", s * 100.0))
                .collect();
            let (mean, median, range) = match row.completion_ms {
                Some(c) => (
                    format!("{:.0}", c.mean),
                    format!("{:.0}", c.median),
                    format!("{:.0}-{:.0}", c.min, c.max),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let mut failed = row.failed.to_string();
            if row.warned > 0 {
                let _ = write!(failed, " ({} with a warning)", row.warned);
            }
            let _ = writeln!(
                out,
                "| {} | {} | {mean} | {median} | {range} | {failed} | {} | {} |",
                sc.name,
                row.client,
                opt(row.connect_ms_mean, |c| format!("{c:.0}")),
                if shares.len() > 1 {
                    shares.join("/")
                } else {
                    "-".into()
                }
            );
        }
    }
    let _ = writeln!(out, "\n{SHORT_NOTES}");
    out.push_str("\nlowest median completion among Braid's schedulers:\n");
    for sc in r.scenarios.iter().filter(|s| s.error.is_none()) {
        let medians: Vec<String> = sc
            .short_rows
            .iter()
            .filter(|row| row.kind == "braid")
            .map(|row| {
                format!(
                    "{} {}",
                    row.client,
                    opt(row.completion_ms.map(|c| c.median), |m| format!("{m:.1}"))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {}: {} (medians ms: {})",
            sc.name,
            sc.short_lowest_median_scheduler
                .unwrap_or("none (no Braid short upload succeeded)"),
            medians.join(", ")
        );
    }
    out
}

/// Per-leg throughput of Braid's default scheduler, one panel per scenario
/// and direction (its first run with figures): DATA bytes received for a
/// download, sent for an upload.
fn plot(r: &Report) -> String {
    plot_scheduler(r, DEFAULT_SCHEDULER)
}

/// [`plot`] for the Braid scheduler named `scheduler`.
fn plot_scheduler(r: &Report, scheduler: &str) -> String {
    let label = format!("Braid {scheduler}");
    let mut panels = Vec::new();
    for sc in &r.scenarios {
        for &direction in &r.directions {
            let Some((s, series)) = r
                .samples
                .iter()
                .filter(|s| {
                    s.scenario == sc.name && s.client == label && s.direction == direction && s.ok
                })
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
            let counted = match direction {
                Direction::Download => "received",
                Direction::Upload => "sent",
            };
            panels.push(Panel {
                title: format!(
                    "{} {}: {} - Braid {scheduler}, run {}, {:.2} MB/s (DATA {counted})",
                    sc.name,
                    direction.name(),
                    sc.about,
                    s.rep + 1,
                    s.mb_per_s
                ),
                bin_s: series.bin_ms / 1000.0,
                lines,
            });
        }
    }
    render(
        &panels,
        "time since the transfer began (s)",
        "MB/s (200 ms bins)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of `scenarios` and bulk `samples` (`size` bytes, `reps`
    /// runs, `directions`) with `short` short-upload samples of 100 kB,
    /// `short_reps` each.
    fn test_report(
        size: u64,
        reps: usize,
        directions: Vec<Direction>,
        scenarios: Vec<ScenarioReport>,
        samples: Vec<Sample>,
        short_reps: usize,
        short: Vec<ShortSample>,
    ) -> Report {
        Report {
            size_bytes: size,
            reps,
            directions,
            tor_version: "0.4.9.11".into(),
            link_emulation: LINK_NOTE,
            metrics_available: true,
            scenarios,
            samples,
            short_size_bytes: 100_000,
            short_reps,
            short_samples: short,
        }
    }
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

    fn sample(
        client: Who,
        direction: Direction,
        rep: usize,
        mb: f64,
        legs: &[(f64, Option<f64>)],
    ) -> Sample {
        Sample {
            scenario: "uniform".into(),
            client: client.label(),
            kind: client.kind(),
            direction,
            rep,
            ok: true,
            error: None,
            bytes: 1,
            mb_per_s: mb,
            server_mb_per_s: None,
            ttfb_ms: match direction {
                Direction::Download => 100.0,
                Direction::Upload => 30.0,
            },
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

    fn running(who: Who) -> Running {
        Running {
            who,
            socks: ([127, 0, 0, 1], 1).into(),
            pid: u32::MAX,
            metrics: None,
            _proxy: None,
        }
    }

    #[test]
    fn summary_fractions_bdp_and_targets() {
        use Direction::{Download as D, Upload as U};
        let sc = &scenarios()[0];
        let clients = vec![
            running(Who::Leg(0)),
            running(Who::Leg(1)),
            running(Who::Braid("lowrtt")),
            running(Who::Ctor),
        ];
        let mut samples = vec![
            sample(Who::Leg(0), D, 0, 2.0, &[(1.0, Some(50.0))]),
            sample(Who::Leg(0), D, 1, 2.0, &[(1.0, Some(40.0))]),
            sample(Who::Leg(1), D, 0, 1.0, &[(1.0, Some(100.0))]),
            sample(Who::Braid("lowrtt"), D, 0, 2.9, &[(0.6, None), (0.4, None)]),
            sample(
                Who::Braid("lowrtt"),
                D,
                1,
                2.95,
                &[(0.5, None), (0.5, None)],
            ),
            sample(Who::Ctor, D, 0, 2.8, &[(0.7, None), (0.3, None)]),
            // Uploads: legs of 1.5 and 0.5 MB/s (the second's RTT from its
            // congestion control, lower than any download's); Braid at 0.9
            // of their sum and below C-tor.
            sample(Who::Leg(0), U, 0, 1.5, &[(1.0, None)]),
            sample(Who::Leg(1), U, 0, 0.5, &[(1.0, Some(90.0))]),
            sample(
                Who::Braid("lowrtt"),
                U,
                0,
                1.8,
                &[(0.75, None), (0.25, None)],
            ),
            sample(Who::Ctor, U, 0, 1.9, &[(0.5, None), (0.5, None)]),
        ];
        let mut failed = sample(Who::Ctor, D, 1, 0.0, &[]);
        failed.ok = false;
        samples.push(failed);
        let r = summarise(sc, &clients, &samples, &[D, U]);
        assert_eq!(
            r.capacity,
            vec![
                Capacity {
                    direction: D,
                    leg_mb_s: vec![Some(2.0), Some(1.0)],
                    sum_mb_s: Some(3.0)
                },
                Capacity {
                    direction: U,
                    leg_mb_s: vec![Some(1.5), Some(0.5)],
                    sum_mb_s: Some(2.0)
                },
            ]
        );
        assert_eq!(r.leg_rtt_ms, vec![Some(40.0), Some(90.0)]);
        // Download capacities: max(2 MB/s x 40 ms, 1 MB/s x 90 ms) = 90 kB,
        // doubled (upload ones would give 60 kB).
        assert!((r.two_bdp_bytes.unwrap() - 180_000.0).abs() < 1e-6);
        // A row per client and direction, downloads first.
        let dirs: Vec<Direction> = r.rows.iter().map(|x| x.direction).collect();
        assert_eq!(dirs, [D, D, D, D, U, U, U, U]);
        let find = |kind: &str, d: Direction| {
            r.rows
                .iter()
                .find(|x| x.kind == kind && x.direction == d)
                .unwrap()
        };
        let braid = find("braid", D);
        assert!((braid.fraction_of_leg_sum.unwrap() - 2.925 / 3.0).abs() < 1e-9);
        assert_eq!(braid.leg_shares, vec![0.55, 0.45]);
        assert_eq!(braid.reorder_peak_bytes, Some(100_000.0));
        assert_eq!(braid.two_bdp_bytes, Some(180_000.0));
        assert_eq!(braid.ttfb_ms_mean, 100.0);
        let leg = find("leg", D);
        assert!(leg.leg_shares.is_empty());
        assert_eq!(leg.fraction_of_leg_sum, None);
        let ctor = find("ctor", D);
        assert_eq!((ctor.runs, ctor.failed), (1, 1));
        assert_eq!(ctor.reorder_peak_bytes, None);
        // The upload rows: against the upload capacity, no reorder peak
        // nor BDP, the connect time as first byte.
        let up = find("braid", U);
        assert_eq!((up.runs, up.failed), (1, 0));
        assert!((up.fraction_of_leg_sum.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(up.leg_shares, vec![0.75, 0.25]);
        assert_eq!(up.reorder_peak_bytes, None);
        assert_eq!(up.two_bdp_bytes, None);
        assert_eq!(up.ttfb_ms_mean, 30.0);
        let ctor_up = find("ctor", U);
        assert_eq!((ctor_up.runs, ctor_up.failed), (1, 0));
        assert!((ctor_up.fraction_of_leg_sum.unwrap() - 0.95).abs() < 1e-9);
        let met: Vec<(Direction, Option<bool>)> =
            r.targets.iter().map(|t| (t.direction, t.met)).collect();
        assert_eq!(
            met,
            vec![
                (D, Some(true)),
                (D, Some(true)),
                (D, Some(true)),
                (U, Some(false)),
                (U, Some(false)),
            ]
        );
        assert!(
            r.targets[4]
                .what
                .starts_with("uniform upload: Braid lowrtt >= C-tor")
        );
        let mut report = test_report(20_000_000, 2, vec![D, U], vec![r], samples, 0, Vec::new());
        let t = table(&report);
        assert!(
            t.contains("| uniform | download | Braid lowrtt | 2.92 (2.90-2.95) | 0.975 | 100 |"),
            "{t}"
        );
        assert!(
            t.contains("| uniform | download | C-tor | 2.80 (2.80-2.80), 1 failed |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| uniform | upload | Braid lowrtt | 1.80 (1.80-1.80) | 0.900 | 30 | 1.00 | n/a | - | 75/25 |"
            ),
            "{t}"
        );
        assert!(t.contains("(download, upload)"), "{t}");
        assert!(t.contains(UPLOAD_NOTES), "{t}");
        assert!(
            t.contains("(2MiB 10ms): download 2.00 MB/s, upload 1.50 MB/s, RTT 40 ms"),
            "{t}"
        );
        assert!(
            t.contains("sum: download 3.00 MB/s, upload 2.00 MB/s"),
            "{t}"
        );
        assert!(
            t.contains("uniform upload: Braid lowrtt >= C-tor's Conflux: NOT met"),
            "{t}"
        );
        assert!(
            t.contains("uniform download: Braid lowrtt >= C-tor's Conflux: met"),
            "{t}"
        );
        // Every sample, row and target says which way it went.
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["directions"], serde_json::json!(["download", "upload"]));
        assert_eq!(v["samples"][6]["direction"], "upload");
        assert_eq!(v["scenarios"][0]["rows"][0]["direction"], "download");
        assert_eq!(v["scenarios"][0]["rows"][6]["direction"], "upload");
        assert_eq!(v["scenarios"][0]["targets"][3]["direction"], "upload");
        assert_eq!(v["scenarios"][0]["capacity"][1]["direction"], "upload");
        // No series in the samples: an empty plot, still a document.
        let svg = plot(&report);
        assert!(
            svg.contains("</svg>") && !svg.contains("<polyline"),
            "{svg}"
        );
        // One panel per direction for the default scheduler's first run
        // with a series; other schedulers are not plotted.
        let series = |v: f64| SeriesJson {
            bin_ms: 200.0,
            unit: "MB/s",
            legs: vec![vec![v, v], vec![v, v]],
            total: vec![2.0 * v, 2.0 * v],
        };
        for (i, v) in [(3, 1.4), (8, 0.9)] {
            report.samples[i].series = Some(series(v));
        }
        let mut ecf = sample(Who::Braid("ecf"), U, 0, 1.0, &[]);
        ecf.series = Some(series(0.5));
        report.samples.push(ecf);
        // The default scheduler's run only.
        let svg = plot(&report);
        assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
        assert!(
            svg.contains(&format!("Braid {DEFAULT_SCHEDULER}, run 1")),
            "{svg}"
        );
        let svg = plot_scheduler(&report, "lowrtt");
        assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
        assert!(svg.contains("uniform download: "), "{svg}");
        assert!(
            svg.contains("Braid lowrtt, run 1, 1.80 MB/s (DATA sent)"),
            "{svg}"
        );
        // Only uploads asked for: only their panel.
        report.directions = vec![U];
        assert_eq!(
            plot_scheduler(&report, "lowrtt")
                .matches("<polyline")
                .count(),
            3
        );
        // Without any RTT from metrics, half the first-byte time of a
        // download (an upload's connect time is not used).
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
        assert_eq!(leg_rtt(sc, 0, &bare[6..]), (None, "none"));
    }

    #[test]
    fn uploads_only() {
        use Direction::Upload as U;
        let sc = &scenarios()[0];
        let clients = vec![
            running(Who::Leg(0)),
            running(Who::Leg(1)),
            running(Who::Braid("ecf")),
        ];
        let samples = vec![
            sample(Who::Leg(0), U, 0, 1.0, &[(1.0, Some(40.0))]),
            sample(Who::Leg(1), U, 0, 1.0, &[(1.0, Some(40.0))]),
            sample(Who::Braid("ecf"), U, 0, 1.96, &[(0.5, None), (0.5, None)]),
        ];
        let r = summarise(sc, &clients, &samples, &[U]);
        assert_eq!(r.capacity.len(), 1);
        assert_eq!(r.capacity[0].sum_mb_s, Some(2.0));
        // No download capacity: no BDP, and no reorder target.
        assert_eq!(r.two_bdp_bytes, None);
        assert_eq!(r.rows.len(), 3);
        let met: Vec<Option<bool>> = r.targets.iter().map(|t| t.met).collect();
        // 0.98 of the sum; no C-tor row to compare with.
        assert_eq!(met, vec![Some(true), None]);
        let report = test_report(5_000_000, 1, vec![U], vec![r], samples, 0, Vec::new());
        let t = table(&report);
        assert!(!t.contains("| download |"), "{t}");
        assert!(t.contains("(upload), 1 runs each"), "{t}");
        assert!(t.contains(": upload 1.00 MB/s, RTT 40 ms"), "{t}");
        assert!(t.contains("unknown (figures missing)"), "{t}");
    }

    #[test]
    fn direction_choices() {
        use Direction::{Download as D, Upload as U};
        use clap::Parser as _;
        assert_eq!(directions(BenchDirection::Both), [D, U]);
        assert_eq!(directions(BenchDirection::Download), [D]);
        assert_eq!(directions(BenchDirection::Upload), [U]);
        let parse = |extra: &[&str]| {
            let mut argv = vec!["braid", "bench", "conflux", "--dir", "/tmp/x"];
            argv.extend_from_slice(extra);
            match crate::cli::Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(crate::cli::Command::Bench(crate::cli::BenchCmd::Conflux(a))) => Ok(a.direction),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.kind()),
            }
        };
        assert_eq!(parse(&[]), Ok(BenchDirection::Both));
        assert_eq!(
            parse(&["--direction", "upload"]),
            Ok(BenchDirection::Upload)
        );
        assert_eq!(
            parse(&["--direction", "download"]),
            Ok(BenchDirection::Download)
        );
        assert_eq!(
            parse(&["--direction", "sideways"]),
            Err(clap::error::ErrorKind::InvalidValue)
        );
    }

    #[test]
    fn transfer_figures_each_way() {
        let d = Download {
            bytes: 2_000_000,
            elapsed: Duration::from_secs(2),
            time_to_first_byte: Duration::from_millis(120),
            sha256: String::new(),
        };
        assert_eq!(
            Done::from(&d),
            Done {
                bytes: 2_000_000,
                mb_per_s: 1.0,
                server_mb_per_s: None,
                first_ms: 120.0
            }
        );
        let u = Upload {
            bytes: 2_000_000,
            elapsed: Duration::from_millis(1250),
            connected: Duration::from_millis(250),
            server_elapsed: Duration::from_millis(500),
            sha256: String::new(),
        };
        assert_eq!(
            Done::from(&u),
            Done {
                bytes: 2_000_000,
                mb_per_s: 2.0,
                server_mb_per_s: Some(4.0),
                first_ms: 250.0
            }
        );
    }

    #[test]
    fn ctor_legs_follow_the_direction() {
        let leg = |id: u64, middle: &str, read: u64, written: u64| LegReport {
            circ_id: id,
            path: vec![format!("relay{id}"), middle.into(), "exit0".into()],
            fingerprints: vec![format!("G{id}"), middle.into(), "E".into()],
            rtt_ms: Some(45.0),
            bytes: 7,
            read,
            written,
            delivered_written: 9,
        };
        let legs = vec![leg(0, "relay2", 300, 1000), leg(1, "relay3", 100, 3000)];
        let down = ctor_legs(&legs, Direction::Download);
        let figures = |v: &[LegFigure]| -> Vec<(u64, Option<u64>, f64)> {
            v.iter()
                .map(|l| (l.bytes, l.delivered_bytes, l.share))
                .collect()
        };
        assert_eq!(figures(&down), [(300, Some(7), 0.75), (100, Some(7), 0.25)]);
        assert_eq!(down[1].path, "relay1>relay3>exit0");
        assert_eq!(down[0].link_rtt_ms, Some(45.0));
        let up = ctor_legs(&legs, Direction::Upload);
        assert_eq!(figures(&up), [(1000, Some(9), 0.25), (3000, Some(9), 0.75)]);
        // The set must be linked and have the scenario's legs.
        let route = |purpose: &str, legs: Vec<LegReport>| Route {
            stream_circ: Some(1),
            purpose: purpose.into(),
            conflux_id: Some("x".into()),
            legs,
            dropped_events: 0,
        };
        let sc = &scenarios()[0];
        assert_eq!(
            check_ctor_set(sc, &route("CONFLUX_LINKED", legs.clone())),
            None
        );
        assert_eq!(
            check_ctor_set(&scenarios()[3], &route("CONFLUX_LINKED", legs.clone())),
            Some("C-tor used a CONFLUX_LINKED circuit with 2 legs".into())
        );
        assert_eq!(
            check_ctor_set(sc, &route("GENERAL", legs[..1].to_vec())),
            Some("C-tor used a GENERAL circuit with 1 legs".into())
        );
    }

    fn short(who: Who, rep: usize, ms: f64, shares: &[(&str, f64)]) -> ShortSample {
        ShortSample {
            scenario: "rtt-1-5".into(),
            client: who.label(),
            kind: who.kind(),
            rep,
            ok: true,
            error: None,
            bytes: 100_000,
            completion_ms: ms,
            connect_ms: 10.0 + rep as f64,
            tunnel: Some("1".into()),
            legs: shares
                .iter()
                .enumerate()
                .map(|(i, (middle, share))| LegFigure {
                    leg: i,
                    path: format!("relay{i}>{middle}>exit0"),
                    bytes: (share * 100_000.0) as u64,
                    delivered_bytes: None,
                    share: *share,
                    rtt_ms: None,
                    min_rtt_ms: None,
                    link_rtt_ms: None,
                })
                .collect(),
        }
    }

    #[test]
    fn summary_statistics() {
        assert_eq!(stats(&[]), None);
        assert_eq!(
            stats(&[7.0]),
            Some(Stats {
                mean: 7.0,
                median: 7.0,
                min: 7.0,
                max: 7.0
            })
        );
        // Odd count: the middle figure, whatever the order given.
        assert_eq!(
            stats(&[300.0, 100.0, 110.0]),
            Some(Stats {
                mean: 170.0,
                median: 110.0,
                min: 100.0,
                max: 300.0
            })
        );
        // Even count: the mean of the two middle figures; an outlier moves
        // the mean, not the median.
        assert_eq!(
            stats(&[120.0, 100.0, 1000.0, 140.0]),
            Some(Stats {
                mean: 340.0,
                median: 130.0,
                min: 100.0,
                max: 1000.0
            })
        );
    }

    #[test]
    fn short_rows_table_and_lowest_median() {
        let sc = &scenarios()[2];
        let whos = [
            Who::Leg(0),
            Who::Leg(1),
            Who::Braid("minrtt"),
            Who::Braid("lowrtt"),
            Who::Braid("ecf"),
            Who::Ctor,
        ];
        let mut samples = Vec::new();
        for rep in 0..3 {
            let r = rep as f64;
            samples.push(short(Who::Leg(0), rep, 150.0 + r, &[("relay2", 1.0)]));
            samples.push(short(Who::Leg(1), rep, 600.0 + r, &[("relay3", 1.0)]));
            samples.push(short(
                Who::Braid("minrtt"),
                rep,
                200.0 + 10.0 * r,
                &[("relay2", 1.0), ("relay3", 0.0)],
            ));
            // lowrtt: the leg order of the set differs from the
            // scenario's; shares follow the middles.
            samples.push(short(
                Who::Braid("lowrtt"),
                rep,
                [400.0, 180.0, 190.0][rep],
                &[("relay3", 0.25), ("relay2", 0.75)],
            ));
            samples.push(short(
                Who::Braid("ecf"),
                rep,
                [185.0, 170.0, 900.0][rep],
                &[("relay2", 0.8 + 0.1 * r), ("relay3", 0.2 - 0.1 * r)],
            ));
            samples.push(short(
                Who::Ctor,
                rep,
                300.0,
                &[("relay2", 0.5), ("relay3", 0.5)],
            ));
        }
        // One C-tor upload over a single circuit: counted, with a warning.
        if let Some(c) = samples.iter_mut().rev().find(|s| s.kind == "ctor") {
            c.error = Some("C-tor used a GENERAL circuit with 1 legs".into());
            c.completion_ms = 600.0;
            c.legs = short(Who::Ctor, 0, 0.0, &[("relay3", 1.0)]).legs;
        }
        // A failed ECF upload counts as a failure, not a time.
        let mut failed = short(Who::Braid("ecf"), 3, 1.0, &[]);
        failed.ok = false;
        failed.error = Some("timed out".into());
        samples.push(failed);
        let rows: Vec<ShortRow> = whos.iter().map(|&w| short_row(sc, w, &samples)).collect();
        let row = |client: &str| rows.iter().find(|r| r.client == client).unwrap();
        let ecf = row("Braid ecf");
        assert_eq!((ecf.runs, ecf.failed, ecf.warned), (3, 1, 0));
        assert_eq!(
            ecf.completion_ms,
            Some(Stats {
                mean: 1255.0 / 3.0,
                median: 185.0,
                min: 170.0,
                max: 900.0
            })
        );
        assert_eq!(ecf.connect_ms_mean, Some(11.0));
        assert_eq!(ecf.leg_shares.len(), 2);
        assert!((ecf.leg_shares[0] - 0.9).abs() < 1e-9);
        assert!((ecf.leg_shares[1] - 0.1).abs() < 1e-9);
        assert_eq!(row("Braid lowrtt").leg_shares, vec![0.75, 0.25]);
        assert_eq!(row("Braid lowrtt").completion_ms.unwrap().median, 190.0);
        // A single leg has no shares.
        assert!(row("leg 1 alone (Braid)").leg_shares.is_empty());
        let ctor = row("C-tor");
        assert_eq!((ctor.runs, ctor.failed, ctor.warned), (3, 0, 1));
        assert_eq!(ctor.completion_ms.unwrap().max, 600.0);
        // ECF's median (185) beats lowrtt's (190) and minrtt's (210),
        // though its mean is the worst of the three.
        assert_eq!(lowest_median_scheduler(&whos, &rows), Some("ecf"));
        // A tie goes to the first in table order; a scheduler without a
        // successful upload is left out; the C-tor row is never chosen.
        let mut tied = rows.clone();
        tied[2].completion_ms = tied[4].completion_ms;
        assert_eq!(lowest_median_scheduler(&whos, &tied), Some("minrtt"));
        tied[2].completion_ms = None;
        tied[4].completion_ms = None;
        assert_eq!(lowest_median_scheduler(&whos, &tied), Some("lowrtt"));
        tied[3].completion_ms = None;
        assert_eq!(lowest_median_scheduler(&whos, &tied), None);

        let mut r = scenario_report(sc);
        r.short_rows = rows;
        r.short_lowest_median_scheduler = Some("ecf");
        let failed_scenario = ScenarioReport {
            error: Some("the network did not start".into()),
            ..scenario_report(&scenarios()[0])
        };
        let report = test_report(
            2_000_000,
            1,
            vec![Direction::Upload],
            vec![failed_scenario, r],
            Vec::new(),
            3,
            samples,
        );
        let t = short_table(&report);
        assert!(
            t.starts_with("Conflux, short uploads: 100 kB each, 3 per client, tor 0.4.9.11\n"),
            "{t}"
        );
        assert!(
            t.contains("| scenario | client | mean ms | median ms | min-max ms | failed |"),
            "{t}"
        );
        assert!(
            t.contains("| uniform | failed: the network did not start | | | | | | |"),
            "{t}"
        );
        assert!(
            t.contains("| rtt-1-5 | Braid ecf | 418 | 185 | 170-900 | 1 | 11 | 90/10 |"),
            "{t}"
        );
        assert!(
            t.contains("| rtt-1-5 | Braid lowrtt | 257 | 190 | 180-400 | 0 | 11 | 75/25 |"),
            "{t}"
        );
        assert!(
            t.contains("| rtt-1-5 | leg 2 alone (Braid) | 601 | 601 | 600-602 | 0 | 11 | - |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| rtt-1-5 | C-tor | 400 | 300 | 300-600 | 0 (1 with a warning) | 11 | 33/67 |"
            ),
            "{t}"
        );
        assert!(t.contains(SHORT_NOTES), "{t}");
        assert!(
            t.contains(
                "  rtt-1-5: ecf (medians ms: Braid minrtt 210.0, Braid lowrtt 190.0, Braid ecf 185.0)"
            ),
            "{t}"
        );
        // The failed scenario has no verdict line.
        assert!(!t.contains("  uniform:"), "{t}");
        // A client whose uploads all failed.
        let mut all_failed = report.scenarios[1].clone();
        all_failed.short_rows.truncate(1);
        all_failed.short_rows[0].completion_ms = None;
        all_failed.short_rows[0].connect_ms_mean = None;
        all_failed.short_rows[0].failed = 3;
        all_failed.short_lowest_median_scheduler = None;
        let t = short_table(&Report {
            scenarios: vec![all_failed],
            ..report
        });
        assert!(
            t.contains("| rtt-1-5 | leg 1 alone (Braid) | - | - | - | 3 | n/a | - |"),
            "{t}"
        );
        assert!(
            t.contains("  rtt-1-5: none (no Braid short upload succeeded) (medians ms: )"),
            "{t}"
        );
    }

    #[test]
    fn short_figures_in_json_and_log() {
        let sc = &scenarios()[2];
        let samples = vec![short(
            Who::Braid("ecf"),
            0,
            123.4,
            &[("relay3", 0.25), ("relay2", 0.75)],
        )];
        let mut r = scenario_report(sc);
        r.short_rows = vec![short_row(sc, Who::Braid("ecf"), &samples)];
        r.short_lowest_median_scheduler = Some("ecf");
        let report = test_report(
            20_000_000,
            1,
            vec![Direction::Upload],
            vec![r],
            Vec::new(),
            1,
            samples,
        );
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["short_size_bytes"], 100_000);
        assert_eq!(v["short_reps"], 1);
        assert_eq!(v["short_samples"][0]["completion_ms"], 123.4);
        assert_eq!(v["short_samples"][0]["legs"][1]["bytes"], 75_000);
        let row = &v["scenarios"][0]["short_rows"][0];
        assert_eq!(row["client"], "Braid ecf");
        assert_eq!(row["completion_ms"]["median"], 123.4);
        assert_eq!(row["leg_shares"], serde_json::json!([0.75, 0.25]));
        assert_eq!(v["scenarios"][0]["short_lowest_median_scheduler"], "ecf");
        // The bulk fields keep their names.
        assert_eq!(v["size_bytes"], 20_000_000);
        assert!(v["scenarios"][0]["rows"].is_array());

        let line = describe_short(&report.short_samples[0]);
        assert_eq!(
            line,
            "Braid ecf              short upload 1: 123 ms (connect 10 ms), by middle relay2 75% relay3 25%"
        );
        let mut bad = report.short_samples[0].clone();
        bad.ok = false;
        bad.error = Some("no complete upload within 62 s".into());
        assert!(
            describe_short(&bad)
                .ends_with("short upload 1: FAILED: no complete upload within 62 s")
        );
        assert_eq!(shares_by_middle(&bad.legs[..1]), None);
    }

    #[test]
    fn short_options_and_warm_up() {
        use Direction::{Download as D, Upload as U};
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["braid", "bench", "conflux", "--dir", "/tmp/x"];
            argv.extend_from_slice(extra);
            match crate::cli::Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(crate::cli::Command::Bench(crate::cli::BenchCmd::Conflux(a))) => {
                    Ok((parse_rate(&a.short_size).unwrap(), a.short_reps))
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.kind()),
            }
        };
        assert_eq!(parse(&[]), Ok((1_000_000, 10)));
        assert_eq!(
            parse(&["--short-size", "64KiB", "--short-reps", "0"]),
            Ok((65_536, 0))
        );
        assert_eq!(
            parse(&["--short-reps", "ten"]),
            Err(clap::error::ErrorKind::ValueValidation)
        );
        // With short uploads, an upload warm-up even when the bulk part
        // only downloads.
        assert_eq!(warm_up_directions(&[D], 10), [D, U]);
        assert_eq!(warm_up_directions(&[D], 0), [D]);
        assert_eq!(warm_up_directions(&[D, U], 10), [D, U]);
        assert_eq!(warm_up_directions(&[U], 10), [U]);
        assert_eq!(time_limit(100_000), Duration::from_secs(62));
    }

    #[test]
    fn short_completion_excludes_the_connection() {
        let u = Upload {
            bytes: 100_000,
            elapsed: Duration::from_millis(480),
            connected: Duration::from_millis(130),
            server_elapsed: Duration::from_millis(200),
            sha256: String::new(),
        };
        assert!((completion_ms(&u) - 350.0).abs() < 1e-9);
        let mut s = short(Who::Ctor, 0, 0.0, &[]);
        s.ok = false;
        fill_short(&mut s, &u);
        assert!(s.ok);
        assert!((s.completion_ms - 350.0).abs() < 1e-9);
        assert!((s.connect_ms - 130.0).abs() < 1e-9);
    }
}
