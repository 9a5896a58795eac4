//! `braid demo`: the main job, end to end.
//!
//! A private network; a download through Braid's own client on one circuit
//! (its Conflux tunnels come with the Conflux work); then the same download
//! through the C-tor client's Conflux set, with its per-leg report.

use std::sync::Arc;
use std::time::Duration;

use braid_client::socks::SocksServer;
use braid_client::{ClientConfig, TorClient};
use braid_testnet::config::parse_rate;
use braid_testnet::download::{Download, fetch_file};
use braid_testnet::{RelayShape, TestnetError, ctor_conflux};

use crate::cli::DemoArgs;
use crate::testnet_cmd::{config_from, say, up_interruptible};

pub(crate) async fn run(args: DemoArgs) -> Result<(), TestnetError> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("braid-demo"));
    let size = parse_rate(&args.size)?;
    let mut config = config_from(dir, &args.net)?;
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
    let result = async {
        say(&format!(
            "network up in {:.1} s; downloading {size} bytes through Braid's client (one circuit)",
            network.manifest().network.startup_secs
        ));
        match braid_download(network.dir(), network.manifest().fileserver.address, size).await {
            Ok((d, path)) => say(&format!(
                "Braid: {} bytes in {:.2} s ({:.2} MB/s, first byte after {:.0} ms) over {path}, SHA-256 {} verified",
                d.bytes,
                d.elapsed.as_secs_f64(),
                d.mb_per_s(),
                d.time_to_first_byte.as_secs_f64() * 1000.0,
                d.sha256
            )),
            Err(e) => say(&format!("Braid download failed: {e}")),
        }
        say(&format!("downloading {size} bytes through the C-tor client's Conflux set"));
        let report = ctor_conflux::download(network.manifest(), size, 1).await?;
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
            report.stream_circ.map_or("?".into(), |c| c.to_string()),
            report.purpose,
            report.conflux_id.as_deref().unwrap_or("none")
        ));
        say(&report.table());
        match report.check_linked_pair() {
            Ok(()) => say("the two legs share the exit and differ in guard and middle"),
            Err(e) => say(&format!("warning: {e}")),
        }
        Ok::<_, TestnetError>(())
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

/// Bootstrap Braid's client in-process, serve SOCKS on an ephemeral port,
/// and fetch the file through it. Returns the download and the circuit's
/// path.
async fn braid_download(
    dir: &std::path::Path,
    files: std::net::SocketAddr,
    size: u64,
) -> Result<(Download, String), String> {
    let mut config = ClientConfig::load(&dir.join("network.toml")).map_err(|e| e.to_string())?;
    config.cache_dir = dir.join("braid-cache");
    let client = TorClient::bootstrap(config, Duration::from_secs(60), |_| {})
        .await
        .map_err(|e| e.to_string())?;
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
    let mut path = String::new();
    if let Some(t) = client.tunnels().first() {
        path = t.info().describe();
        if let Some(f) = t.figures().await {
            path.push_str(&format!(
                " ({}; {} cells received, {} circuit SENDMEs sent, RTT min {:?})",
                f.cc_sendme_inc.map_or_else(
                    || "fixed windows".to_owned(),
                    |inc| format!("congestion control, sendme_inc {inc}")
                ),
                f.data_received,
                f.sendmes_sent,
                f.min_rtt.unwrap_or_default()
            ));
        }
    }
    let _ = stop.send(());
    let _ = serving.await;
    result.map(|d| (d, path))
}
