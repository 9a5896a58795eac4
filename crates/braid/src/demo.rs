//! `braid demo`: the main job, end to end.
//!
//! For now the download goes through the network's C-tor client; when
//! Braid's own client exists the demo moves onto it.

use braid_testnet::config::parse_rate;
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
            "network up in {:.1} s; downloading {size} bytes through the C-tor client's Conflux set",
            network.manifest().network.startup_secs
        ));
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
