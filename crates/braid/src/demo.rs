//! `braid demo`: the main job, end to end.
//!
//! A private network of C-tor relays and a Braid exit (a Conflux exit);
//! a download through Braid's own client over one circuit, then, for the
//! C-tor exit and for the Braid exit, the same download through Braid's
//! 2-leg Conflux set and through the C-tor client's set, each with its
//! per-leg report and checked by SHA-256; last, the same set to the Braid
//! exit with its busy leg's middle killed mid-download (resumption,
//! [`crate::demo_resume`]).

use std::sync::Arc;
use std::time::Duration;

use braid_client::socks::SocksServer;
use braid_client::{ClientConfig, TorClient};
use braid_dir::restrict::NodeRestrictions;
use braid_testnet::config::parse_rate;
use braid_testnet::download::{Download, fetch_file};
use braid_testnet::{RelayShape, TestnetError, ctor_conflux};

use crate::cli::DemoArgs;
use crate::testnet_cmd::{config_from, say, up_interruptible};

/// The demo client's cache, in the network's directory.
pub(crate) const BRAID_CACHE: &str = "braid-cache";

pub(crate) async fn run(args: DemoArgs) -> Result<(), TestnetError> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("braid-demo"));
    let size = parse_rate(&args.size)?;
    let mut config = config_from(dir, &args.net)?;
    if args.net.braid_exits.is_none() {
        // The Braid exit is what the demo shows besides C-tor's.
        config.braid_exits = 1;
    }
    if !args.no_shape && args.net.shapes.is_empty() && args.net.scenario.is_none() {
        let (name, shape) = RelayShape::parse_flag("relays:2MiB:10ms")?;
        config.shapes.insert(name, shape);
    }
    say(&format!(
        "Braid demo: a private Tor network in {}",
        config.dir.display()
    ));
    for (name, shape) in &config.shapes {
        say(&format!(
            "  link emulation on {name}: rate {} delay {}{}",
            shape.rate.as_deref().unwrap_or("unlimited"),
            shape.delay.as_deref().unwrap_or("0ms"),
            shape
                .bandwidth
                .as_ref()
                .map(|b| format!(", tor BandwidthRate {b}"))
                .unwrap_or_default()
        ));
    }
    let network = up_interruptible(&config).await?;
    // The network was made afresh: the client's cache (its guard sample
    // above all) from an earlier run names relays that no longer exist.
    match std::fs::remove_dir_all(network.dir().join(BRAID_CACHE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            say(&format!(
                "warning: could not clear the old client cache: {e}"
            ));
        }
        _ => {}
    }
    let result = async {
        say(&format!(
            "network up in {:.1} s",
            network.manifest().network.startup_secs
        ));
        let files = network.manifest().fileserver.address;
        let mut runs: Vec<(String, Option<usize>, Option<&str>)> =
            vec![("one circuit".into(), None, None)];
        let exits: Vec<&str> = ["exit0", "braidexit0"]
            .into_iter()
            .filter(|e| network.manifest().relays.iter().any(|r| r.nickname == *e))
            .collect();
        for exit in &exits {
            runs.push((format!("a 2-leg Conflux set to {exit}"), Some(2), Some(exit)));
        }
        // Every part runs; any failure is named at the end and makes the
        // demo fail.
        let mut failed = Vec::new();
        for (what, legs, exit) in runs {
            say(&format!("downloading {size} bytes through Braid's client, {what}"));
            match braid_download(network.dir(), files, size, legs, exit).await {
                Ok((d, report)) => {
                    say(&format!(
                        "Braid: {} bytes in {:.2} s ({:.2} MB/s, first byte after {:.0} ms), SHA-256 {} verified",
                        d.bytes,
                        d.elapsed.as_secs_f64(),
                        d.mb_per_s(),
                        d.time_to_first_byte.as_secs_f64() * 1000.0,
                        d.sha256
                    ));
                    say(report.trim_end());
                }
                Err(e) => {
                    say(&format!("Braid download failed: {e}"));
                    failed.push(format!("Braid's client, {what}: {e}"));
                }
            }
        }
        for exit in &exits {
            if let Err(e) = ctor_set_download(network.manifest(), size, exit).await {
                say(&format!("C-tor download failed: {e}"));
                failed.push(format!("the C-tor client's Conflux set to {exit}: {e}"));
            }
        }
        // Last: the kill leaves a relay down for the rest of the run.
        if exits.contains(&"braidexit0") {
            say(&format!(
                "downloading {size} bytes through Braid's client, a 2-leg Conflux set to \
                 braidexit0 whose busy leg's middle is killed a quarter of the way in"
            ));
            match crate::demo_resume::killed_middle_download(network.dir(), files, size, "braidexit0")
                .await
            {
                Ok((d, report)) => {
                    say(&format!(
                        "Braid: {} bytes in {:.2} s ({:.2} MB/s) through a killed middle, SHA-256 {} verified",
                        d.bytes,
                        d.elapsed.as_secs_f64(),
                        d.mb_per_s(),
                        d.sha256
                    ));
                    say(report.trim_end());
                }
                Err(e) => {
                    say(&format!("the resumption run failed: {e}"));
                    failed.push(format!("Braid's client, the resumption run: {e}"));
                }
            }
        }
        if failed.is_empty() {
            say("every download completed and matched its SHA-256");
            Ok(())
        } else {
            Err(TestnetError::PartsFailed(failed))
        }
    }
    .await;
    if args.keep {
        say(&format!(
            "network left running; stop it with: braid testnet down --dir {}",
            network.dir().display()
        ));
        network.detach();
    } else {
        let n = network.down()?;
        say(&format!("network down ({n} processes stopped)"));
    }
    result
}

/// The C-tor client's Conflux set, pinned to `exit`: a download of `size`
/// bytes with its per-leg report.
async fn ctor_set_download(
    manifest: &braid_testnet::Manifest,
    size: u64,
    exit: &str,
) -> Result<(), TestnetError> {
    say(&format!(
        "downloading {size} bytes through the C-tor client's Conflux set to {exit}"
    ));
    ctor_conflux::pin_exit(manifest, exit, Duration::from_secs(90)).await?;
    {
        let report = ctor_conflux::download(manifest, size, 1).await?;
        say(&format!(
            "downloaded {} bytes in {:.2} s ({:.2} MB/s, first byte after {:.0} ms), SHA-256 {} verified",
            report.download.bytes,
            report.download.elapsed.as_secs_f64(),
            report.download.mb_per_s(),
            report.download.time_to_first_byte.as_secs_f64() * 1000.0,
            report.download.sha256
        ));
        say(&format!(
            "stream on circuit {} ({}), Conflux set {}",
            report
                .route
                .stream_circ
                .map_or("?".into(), |c| c.to_string()),
            report.route.purpose,
            report.route.conflux_id.as_deref().unwrap_or("none")
        ));
        say(&report.table());
        match report.route.check_linked_pair() {
            Ok(()) => say("the two legs share the exit and differ in guard and middle"),
            Err(e) => say(&format!("warning: {e}")),
        }
    }
    Ok(())
}

/// Bootstrap Braid's client in-process (Conflux with `legs` legs, or one
/// circuit; to `exit` if given), serve SOCKS on an ephemeral port, and
/// fetch the file through it. Returns the download and a report of the tunnel: its legs, the DATA
/// each carried, and the reorder queue's peak.
async fn braid_download(
    dir: &std::path::Path,
    files: std::net::SocketAddr,
    size: u64,
    legs: Option<usize>,
    exit: Option<&str>,
) -> Result<(Download, String), String> {
    let mut config = ClientConfig::load(&dir.join("network.toml")).map_err(|e| e.to_string())?;
    config.cache_dir = dir.join(BRAID_CACHE);
    config.conflux_legs = legs;
    if let Some(exit) = exit {
        config.nodes = NodeRestrictions::parse(&[], &[], &[exit]).map_err(|e| e.to_string())?;
    }
    let client = TorClient::bootstrap(config, Duration::from_secs(60), |_| {})
        .await
        .map_err(|e| e.to_string())?;
    // Circuits (or sets) built ahead, as `braid proxy` does.
    client.build_preemptive().await;
    let server = SocksServer::bind(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| e.to_string())?;
    let socks = server.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(Arc::new(client.clone()), async {
        let _ = stopped.await;
    }));
    let result = fetch_file(files, Some((socks, None)), size, 1)
        .await
        .map_err(|e| e.to_string());
    let report = match client.tunnels().first() {
        Some(t) => tunnel_table(t).await,
        None => String::new(),
    };
    let _ = stop.send(());
    let _ = serving.await;
    result.map(|d| (d, report))
}

/// A tunnel's legs (path, DATA cells, share, congestion control) and its
/// reorder queue's peak.
pub(crate) async fn tunnel_table(t: &braid_client::tunnel::TunnelHandle) -> String {
    let mut report = String::new();
    {
        let figures = t.leg_figures().await;
        let cells: Vec<u64> = figures
            .iter()
            .map(|f| f.figures.as_ref().map_or(0, |f| f.data_received))
            .collect();
        let total: u64 = cells.iter().sum::<u64>().max(1);
        report.push_str(
            "leg  path (guard > middle > exit)       state    DATA cells  share  congestion control\n",
        );
        for (i, f) in figures.iter().enumerate() {
            let path = &f.path;
            let n = cells.get(i).copied().unwrap_or(0);
            let cc = f
                .figures
                .as_ref()
                .and_then(|f| f.cc_sendme_inc)
                .map_or_else(
                    || "fixed windows".to_owned(),
                    |inc| format!("TOR_VEGAS, sendme_inc {inc}"),
                );
            let state = match (f.open, f.replacement) {
                (true, false) => "open",
                (true, true) => "open*",
                (false, _) => "closed",
            };
            report.push_str(&format!(
                "{:<4} {:<34} {:<7} {:>10}  {:>4.1}%  {cc}\n",
                i + 1,
                path.join(" > "),
                state,
                n,
                n as f64 * 100.0 / total as f64
            ));
        }
        if let Some(peak) = t.reorder_peak().await {
            report.push_str(&format!("reorder queue peak: {peak} bytes\n"));
        }
        if figures.iter().any(|f| f.replacement) {
            report.push_str("(open*: a leg that replaced a lost one)\n");
        }
    }
    report
}
