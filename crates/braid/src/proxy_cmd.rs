//! `braid proxy`: a SOCKS5 and SOCKS4a proxy, and optionally an HTTP
//! CONNECT proxy, on Braid's own client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_client::http_connect::HttpConnectServer;
use braid_client::socks::SocksServer;
use braid_client::{ClientConfig, ClientError, TorClient};
use braid_dir::DirEvent;

use crate::cli::ProxyArgs;
use crate::testnet_cmd::say;

/// Errors of `braid proxy`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the metrics address {0} is not a loopback address")]
    MetricsNotLoopback(SocketAddr),
}

pub(crate) async fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    let started = Instant::now();
    braid_client::safelog::set_unsafe_logging(args.unsafe_logging);
    let mut config = match &args.config {
        Some(path) => ClientConfig::load(path).map_err(ClientError::from)?,
        None => ClientConfig::public(),
    };
    if let Some(dir) = &args.cache {
        config.cache_dir.clone_from(dir);
    }
    if let Some(dir) = &args.state {
        config.state_dir.clone_from(dir);
    }
    match args.conflux_legs {
        Some(0 | 1) => config.conflux_legs = None,
        Some(n) => config.conflux_legs = Some(usize::from(n)),
        None => {}
    }
    // Node lists given on the command line replace the file's.
    if !args.entry_nodes.is_empty() {
        config.nodes.entry.clone_from(&args.entry_nodes);
    }
    if !args.middle_nodes.is_empty() {
        config.nodes.middle.clone_from(&args.middle_nodes);
    }
    if !args.exit_nodes.is_empty() {
        config.nodes.exit.clone_from(&args.exit_nodes);
    }
    // Listen first, so a busy port fails at once. A listener beyond
    // loopback is warned about in the log.
    let server = SocksServer::bind(args.socks)
        .await
        .map_err(|source| ProxyError::Listen {
            addr: args.socks,
            source,
        })?
        .extended_errors(args.extended_errors);
    let http = match args.http_connect {
        Some(addr) => Some(
            HttpConnectServer::bind(addr)
                .await
                .map_err(|source| ProxyError::Listen { addr, source })?,
        ),
        None => None,
    };
    let metrics_addr = args.metrics.or(config.metrics);
    let metrics = match metrics_addr {
        // The figures name relays and show traffic: never beyond this host.
        Some(addr) if !addr.ip().is_loopback() => return Err(ProxyError::MetricsNotLoopback(addr)),
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Listen { addr, source })?,
        ),
        None => None,
    };
    let client = TorClient::bootstrap(config, Duration::from_secs(args.timeout), |ev| {
        if let DirEvent::Progress(p) = ev {
            tracing::info!("{p}");
        }
    })
    .await?;
    say(&format!(
        "directory ready in {:.2} s; building circuits",
        started.elapsed().as_secs_f64()
    ));
    client.build_preemptive().await;
    for t in client.tunnels() {
        say(&format!("circuit ready: {}", t.info().describe()));
    }
    if let (Some(listener), Some(addr)) = (metrics, metrics_addr) {
        say(&format!("metrics on http://{addr}/metrics and /status"));
        tokio::spawn(braid_client::metrics::serve(
            listener,
            client.clone(),
            std::future::pending(),
        ));
    }
    let client = Arc::new(client);
    // One signal stops every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let http_task = match (http, args.http_connect) {
        (Some(http), Some(addr)) => {
            say(&format!("HTTP CONNECT proxy on {addr}"));
            Some(tokio::spawn(http.serve(client.clone(), stopped())))
        }
        _ => None,
    };
    say(&format!(
        "SOCKS5 proxy on {} (SOCKS4a too; ready in {:.2} s)",
        args.socks,
        started.elapsed().as_secs_f64()
    ));
    let socks_task = tokio::spawn(server.serve(client, stopped()));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let listen_error =
        |addr: SocketAddr| move |source: std::io::Error| ProxyError::Listen { addr, source };
    socks_task
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(listen_error(args.socks))?;
    if let (Some(task), Some(addr)) = (http_task, args.http_connect) {
        task.await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(listen_error(addr))?;
    }
    // Let the tunnel tasks send END for the streams that were cut.
    tokio::time::sleep(Duration::from_millis(300)).await;
    say("stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
