//! Running a scenario: its network, the clients, the warm-up, then the
//! bulk repetitions and the short uploads, in alternating order.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use braid_testnet::config::parse_rate;
use braid_testnet::download::{fetch_file, upload_file};
use braid_testnet::process::read_records;
use braid_testnet::{Manifest, NetworkConfig, RelayShape, TestnetError, launcher};

use super::plot::plot;
use super::report::{LINK_NOTE, Report, Sample, ScenarioReport, ShortSample, scenario_report};
use super::scenario::{
    DEFAULT_SCHEDULER, ExitKind, SCHEDULERS, Scenario, Who, consensus_params, ctor_torrc,
    scenario_names, scenarios,
};
use super::stats::{exit_targets, lowest_median_scheduler, short_row, summarise};
use super::table::{describe, describe_short, short_table, table};
use super::transfer::{short_upload, transfer};
use crate::bench::error::BenchError;
use crate::bench::output::{write_json, write_text};
use crate::bench::proc::peak_rss_mb;
use crate::bench::proxy::{ProxyChild, start_proxy};
use crate::bench::scrape::Direction;
use crate::cli::{BenchConfluxArgs, BenchDirection, BenchExit};
use crate::testnet_cmd::{say, up_interruptible};

/// Bytes of each client's warm-up transfers.
const WARMUP_BYTES: u64 = 1_000_000;

/// Tries at each warm-up transfer.
const WARMUP_ATTEMPTS: usize = 5;

/// A client ready to transfer.
#[derive(Debug)]
pub(super) struct Running {
    pub(super) who: Who,
    pub(super) socks: SocketAddr,
    pub(super) pid: u32,
    pub(super) metrics: Option<SocketAddr>,
    /// Stops the proxy when dropped.
    pub(super) _proxy: Option<ProxyChild>,
}

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
    let all: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| match args.exit {
            BenchExit::Tor => s.exit == ExitKind::Tor,
            BenchExit::Braid => s.exit == ExitKind::Braid,
            BenchExit::Both => true,
        })
        .collect();
    let chosen: Vec<Scenario> = if args.scenario.is_empty() {
        all
    } else {
        let mut out = Vec::new();
        for name in &args.scenario {
            if !scenario_names().contains(&name.as_str()) {
                return Err(BenchError::Usage(format!(
                    "unknown scenario {name:?}; one of: {}",
                    scenario_names().join(", ")
                )));
            }
            out.extend(all.iter().filter(|s| s.base == name).cloned());
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
        exit_targets: Vec::new(),
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
        report.exit_targets = exit_targets(&report.scenarios);
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
    config.braid_exits = usize::from(sc.exit == ExitKind::Braid);
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
    // Each proxy its own state (guards), as its own cache: they run at once.
    let state = format!("{}-state", cache.to_string_lossy());
    let _ = writeln!(t, "state_dir = {}", quote(&state));
    match conflux_legs {
        Some(n) => {
            let _ = writeln!(t, "conflux = true\nlegs = {n}");
        }
        None => {
            let _ = writeln!(t, "conflux = false");
        }
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
    let exit = vec![sc.exit.relay().to_string()];
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
    // The exit's process, for its CPU time per transfer and peak RSS.
    let exit_pid = read_records(netdir)?
        .into_iter()
        .find(|r| r.name == sc.exit.relay())
        .map(|r| r.pid);
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
            let s = transfer(sc, c, direction, manifest, sizes.bulk, rep, exit_pid).await;
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
    out.exit_peak_rss_mb = exit_pid.and_then(peak_rss_mb);
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

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
        assert_eq!(c.state_dir, PathBuf::from("/tmp/a \"b\"/cache-state"));
        assert_eq!(c.nodes.entry.len(), 2);
        assert_eq!(c.nodes.middle[1].to_string(), "relay3");
        assert_eq!(c.nodes.exit[0].to_string(), "exit0");
        let single = braid_config(network, Path::new("/c"), None, "lowrtt", [&g, &m, &e]);
        let c = braid_client::ClientConfig::parse(&single, Path::new("/tmp/x.toml")).unwrap();
        assert_eq!(c.conflux_legs, None);
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
    }
}
