//! The helper process: the file server and every link shaper of a network.
//!
//! `braid testnet up` returns while the network keeps running, so these
//! tokio services live in a process of their own (`braid testnet helper
//! --dir DIR`), recorded in the pid file like the tor processes. Its plan is
//! `DIR/helper.toml`, written by the launcher.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::error::TestnetError;
use crate::fileserver;
use crate::shaper::{self, ShaperConfig};

/// File name of the helper's plan inside the network directory.
pub const HELPER_PLAN: &str = "helper.toml";

/// What the helper runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperPlan {
    /// Where the file server listens.
    pub fileserver: SocketAddr,
    /// The shapers.
    #[serde(default, rename = "shaper")]
    pub shapers: Vec<ShaperEntry>,
}

/// One shaper: where it listens and what it does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShaperEntry {
    /// The relay's advertised ORPort, where the shaper listens.
    pub listen: SocketAddr,
    /// The shaper's settings.
    pub config: ShaperConfig,
}

impl HelperPlan {
    /// Writes the plan into `dir`.
    pub fn store(&self, dir: &Path) -> Result<(), TestnetError> {
        let path = dir.join(HELPER_PLAN);
        let text = toml::to_string_pretty(self).map_err(|e| TestnetError::Manifest {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| TestnetError::io("writing", &path, e))
    }

    /// Reads the plan from `dir`.
    pub fn load(dir: &Path) -> Result<HelperPlan, TestnetError> {
        let path = dir.join(HELPER_PLAN);
        let text =
            std::fs::read_to_string(&path).map_err(|e| TestnetError::io("reading", &path, e))?;
        toml::from_str(&text).map_err(|e| TestnetError::Manifest {
            path,
            detail: e.message().to_string(),
        })
    }
}

/// Runs the helper for the network in `dir` until it is told to stop
/// (SIGTERM or SIGINT). Binds every port first, so a port in use is
/// reported before anything is served.
pub async fn run(dir: &Path) -> Result<(), TestnetError> {
    let plan = HelperPlan::load(dir)?;
    let bind = |addr: SocketAddr, purpose: String| async move {
        if !addr.ip().is_loopback() {
            return Err(TestnetError::Config(format!(
                "{purpose}: {addr} is not a loopback address"
            )));
        }
        TcpListener::bind(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                TestnetError::PortInUse {
                    port: addr.port(),
                    purpose,
                }
            } else {
                TestnetError::io("listening on", addr.to_string(), e)
            }
        })
    };
    let files = bind(plan.fileserver, "the file server".into()).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for entry in &plan.shapers {
        let listener = bind(entry.listen, format!("the shaper of {}", entry.config.name)).await?;
        let config = entry.config.clone();
        tasks.spawn(async move {
            let name = config.name.clone();
            if let Err(e) = shaper::run_shaper(listener, config).await {
                tracing::error!(%name, "shaper stopped: {e}");
            }
        });
    }
    tasks.spawn(async move {
        if let Err(e) = fileserver::run_fileserver(files).await {
            tracing::error!("file server stopped: {e}");
        }
    });
    tracing::info!(
        fileserver = %plan.fileserver,
        shapers = plan.shapers.len(),
        "helper ready"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| TestnetError::io("installing signal handler in", dir, e))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = tasks.join_next() => {
            return Err(TestnetError::Config("a helper service stopped unexpectedly".into()));
        }
    }
    Ok(())
}
