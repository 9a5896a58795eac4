//! Running `braid bench relay`: the network, the bulk downloads, the load
//! runs, the report; the network stopped whatever happens (errors, Ctrl-C,
//! SIGTERM), and the samples measured so far written even then.

use std::path::Path;

use braid_testnet::{Manifest, TestnetError, launcher};

use super::bulk::{BulkSample, bulk_download};
use super::client::{CtorClient, pid_of};
use super::load::{LoadRun, load_run};
use super::report::{PeakRss, Report, rows, targets};
use super::setup::{BULK_EXITS, LOAD_EXITS, Settings, order};
use super::table::{describe_bulk, describe_load, table};
use crate::bench::error::BenchError;
use crate::bench::output::write_json;
use crate::bench::proc::peak_rss_mb;
use crate::cli::BenchRelayArgs;
use crate::testnet_cmd::{say, up_interruptible};

/// What has been measured so far.
#[derive(Debug, Default)]
struct Collected {
    tor_version: String,
    loadavg_start: String,
    loadavg_end: String,
    bulk: Vec<BulkSample>,
    load: Vec<LoadRun>,
    /// In the order of [`LOAD_EXITS`].
    rss: [PeakRss; 3],
}

/// `/proc/loadavg`, trimmed (empty when unreadable).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(crate) async fn relay(args: BenchRelayArgs) -> Result<(), BenchError> {
    let settings = Settings::from_args(&args)?;
    std::fs::create_dir_all(&args.dir).map_err(|source| BenchError::Write {
        path: args.dir.clone(),
        source,
    })?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| args.dir.join("bench-relay.json"));
    let exe = std::env::current_exe().map_err(|e| TestnetError::io("locating", "braid", e))?;
    let netdir = args.dir.join("net");
    // A network left by an earlier, killed run: stop it first.
    if netdir.join("pids").exists() {
        let _ = launcher::down(&netdir);
    }
    let _ = std::fs::remove_dir_all(&netdir);
    let config = settings.network_config(&netdir, &exe)?;
    say(&format!("starting the network in {}", netdir.display()));
    let network = up_interruptible(&config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| TestnetError::io("installing signal handler for", &netdir, e))?;
    let mut collected = Collected {
        tor_version: network.manifest().network.tor_version.clone(),
        ..Collected::default()
    };
    let measured = tokio::select! {
        r = measure(&settings, network.manifest(), &netdir, &mut collected) => r,
        _ = tokio::signal::ctrl_c() => Err(BenchError::Testnet(TestnetError::Interrupted)),
        _ = term.recv() => Err(BenchError::Testnet(TestnetError::Interrupted)),
    };
    let stopped = network.down();
    let (bulk_rows, load_rows) = rows(&collected.bulk, &collected.load, &collected.rss);
    let report = Report {
        settings,
        tor_version: collected.tor_version,
        loadavg_start: collected.loadavg_start,
        loadavg_end: collected.loadavg_end,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        targets: targets(&bulk_rows, &load_rows),
        bulk_rows,
        load_rows,
        bulk_samples: collected.bulk,
        load_runs: collected.load,
        error: measured.as_ref().err().map(ToString::to_string),
    };
    write_json(&json_path, &report)?;
    match &measured {
        Ok(()) => say(&table(&report)),
        Err(e) => say(&format!("stopped: {e}; partial results")),
    }
    say(&format!("wrote {}", json_path.display()));
    measured?;
    stopped?;
    Ok(())
}

/// The bulk downloads, then the load runs, each exit's peak RSS after
/// each part.
async fn measure(
    settings: &Settings,
    manifest: &Manifest,
    netdir: &Path,
    collected: &mut Collected,
) -> Result<(), BenchError> {
    let mut client = CtorClient::connect(manifest).await?;
    let mut pids = [0u32; 3];
    for (pid, exit) in pids.iter_mut().zip(LOAD_EXITS) {
        *pid = pid_of(netdir, exit.nickname())?;
    }
    let pid = |exit| {
        LOAD_EXITS
            .iter()
            .zip(pids)
            .find(|(e, _)| **e == exit)
            .map_or(0, |(_, p)| p)
    };
    collected.loadavg_start = loadavg();
    say(&format!(
        "load average at the start: {}",
        collected.loadavg_start
    ));
    for rep in 0..settings.reps {
        for exit in order(&BULK_EXITS, rep) {
            let s = bulk_download(&mut client, settings, exit, rep, pid(exit)).await?;
            say(&describe_bulk(&s));
            collected.bulk.push(s);
        }
    }
    for (rss, p) in collected.rss.iter_mut().zip(pids) {
        rss.after_bulk = peak_rss_mb(p);
    }
    for rep in 0..settings.reps {
        for exit in order(&LOAD_EXITS, rep) {
            let metrics = exit.metrics(settings.base_port);
            let r = load_run(&mut client, settings, exit, rep, pid(exit), metrics).await?;
            say(&describe_load(&r));
            collected.load.push(r);
        }
    }
    for (rss, p) in collected.rss.iter_mut().zip(pids) {
        rss.at_end = peak_rss_mb(p);
    }
    collected.loadavg_end = loadavg();
    say(&format!(
        "load average at the end: {}",
        collected.loadavg_end
    ));
    Ok(())
}
