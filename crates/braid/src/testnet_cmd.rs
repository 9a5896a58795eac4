//! `braid testnet ...`.

use std::path::{Path, PathBuf};

use braid_testnet::config::parse_rate;
use braid_testnet::{NetworkConfig, RelayShape, TestnetError, launcher};

use crate::cli::{NetArgs, TestnetCmd, UpArgs};

pub(crate) async fn run(cmd: TestnetCmd) -> Result<(), TestnetError> {
    match cmd {
        TestnetCmd::Up(args) => up(*args).await,
        TestnetCmd::Status { dir } => status(&dir).await,
        TestnetCmd::Down { dir } => {
            let n = launcher::down(&dir)?;
            say(&format!("stopped {n} processes of {}", dir.display()));
            Ok(())
        }
        TestnetCmd::Helper { dir } => braid_testnet::helper::run(&dir).await,
    }
}

#[allow(clippy::print_stdout, reason = "command output")]
pub(crate) fn say(text: &str) {
    println!("{text}");
}

/// Builds a network configuration from the shared flags.
pub(crate) fn config_from(dir: PathBuf, net: &NetArgs) -> Result<NetworkConfig, TestnetError> {
    let exe = std::env::current_exe().map_err(|e| TestnetError::io("locating", "braid", e))?;
    let mut config = NetworkConfig::new(dir, exe);
    if let Some(path) = &net.scenario {
        config.apply_scenario(path)?;
    }
    if let Some(n) = net.relays {
        config.relays = n;
    }
    if let Some(n) = net.exits {
        config.exits = n;
    }
    if let Some(n) = net.braid_relays {
        config.braid_relays = n;
    }
    if let Some(n) = net.braid_exits {
        config.braid_exits = n;
    }
    if let Some(n) = net.authorities {
        config.authorities = n;
    }
    if let Some(p) = net.base_port {
        config.base_port = p;
    }
    if net.conflux_ux.is_some() {
        config.client_conflux_ux.clone_from(&net.conflux_ux);
    }
    for flag in &net.shapes {
        let (name, shape) = RelayShape::parse_flag(flag)?;
        let entry = config.shapes.entry(name).or_default();
        entry.rate = shape.rate;
        entry.delay = shape.delay;
    }
    for flag in &net.bandwidths {
        let Some((name, rate)) = flag.split_once(':') else {
            return Err(TestnetError::Config(format!(
                "--bandwidth {flag}: expected NAME:RATE, e.g. relays:1MB"
            )));
        };
        parse_rate(rate)?;
        config.shapes.entry(name.to_string()).or_default().bandwidth = Some(rate.to_string());
    }
    config.timeout = std::time::Duration::from_secs(net.timeout);
    config.log_level.clone_from(&net.tor_log);
    config.tor.clone_from(&net.tor);
    config.progress = true;
    config.validate()?;
    Ok(config)
}

/// Runs `up`, stopping everything on Ctrl-C or SIGTERM.
pub(crate) async fn up_interruptible(
    config: &NetworkConfig,
) -> Result<launcher::Network, TestnetError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| TestnetError::io("installing signal handler for", &config.dir, e))?;
    tokio::select! {
        r = launcher::up(config) => r,
        // Dropping the `up` future stops what it started.
        _ = tokio::signal::ctrl_c() => Err(TestnetError::Interrupted),
        _ = term.recv() => Err(TestnetError::Interrupted),
    }
}

async fn up(args: UpArgs) -> Result<(), TestnetError> {
    let mut config = config_from(args.dir, &args.net)?;
    config.client = !args.no_client;
    let network = up_interruptible(&config).await?;
    let m = network.manifest();
    let braid = m
        .relays
        .iter()
        .filter(|r| r.software == braid_testnet::plan::Software::Braid)
        .count();
    say(&format!(
        "network up in {:.1} s: {} authorities, {} relays ({} exits{}){}, file server {}",
        m.network.startup_secs,
        m.authorities.len(),
        m.relays.len(),
        m.relays.iter().filter(|r| r.exit).count(),
        if braid > 0 {
            format!("; {braid} Braid")
        } else {
            String::new()
        },
        m.client_socks()
            .map(|s| format!(", C-tor client SOCKS {s}"))
            .unwrap_or_default(),
        m.fileserver.address
    ));
    say(&format!(
        "manifest: {}\nstop it with: braid testnet down --dir {}",
        network.dir().join("network.toml").display(),
        network.dir().display()
    ));
    network.detach();
    Ok(())
}

async fn status(dir: &Path) -> Result<(), TestnetError> {
    let st = launcher::status(dir).await?;
    let alive = st.processes.iter().filter(|p| p.alive).count();
    say(&format!(
        "{}: {alive} of {} processes running",
        dir.display(),
        st.processes.len()
    ));
    for p in &st.processes {
        say(&format!(
            "  {:<12} pid {:<8} {}",
            p.name,
            p.pid,
            if p.alive { "running" } else { "stopped" }
        ));
    }
    match (&st.manifest, &st.consensus) {
        (Some(m), Some((listed, problems))) => {
            say(&format!(
                "consensus: {listed} relays listed (incl. authorities); {}",
                if problems.is_empty() {
                    "every relay has the flags it needs".to_string()
                } else {
                    problems.join("; ")
                }
            ));
            if let Some(s) = m.client_socks() {
                say(&format!("C-tor client SOCKS {s}"));
            }
            say(&format!("file server http://{}", m.fileserver.address));
        }
        (Some(_), None) => say("consensus: the first authority does not answer"),
        (None, _) => say("no network.toml: the network never became ready"),
    }
    Ok(())
}
