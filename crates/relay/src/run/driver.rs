//! `braid relay run`: start every task of the relay and run until told
//! to stop.
//!
//! ```text
//!   accept loop ──(TLS + responder handshake, bounded, 30 s)──┐
//!   connect tasks (NodeEvent::Connect) ───────────────────────┤ open channels
//!   channel readers ──────── cells ───────────────────────────┤
//!                                                             ▼
//!                                          node task (owns the RelayNode)
//!                                                             │ cells pulled while
//!   channel writers ◄──── bounded per-channel queues ─────────┘ the queue has room
//!   publisher: descriptor at start, every 18 h, when the observed bandwidth moves
//!   link keys: rebuilt before the link certificates expire
//!   rekey: onion keys rotated, the previous expired, the signing key
//!     renewed (stored; the node, link keys and publisher told)
//!   consensus: fetched at start and hourly (as a directory cache when a
//!     cache should, with the microdescriptors), parameters to the node task
//!   metrics (optional): GET /metrics asks the node task for its figures
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use braid_core::cc::CcParams;
use braid_core::exit::ExitConfig;
use braid_core::relay::RelayNode;
use braid_dir::descriptor::{ScheduleConfig, ServerDescriptor, build_descriptor};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use super::accept::{AcceptParams, accept_loop};
use super::bandwidth::{BandwidthHistory, PERIOD_SECS, changed_enough};
use super::chan_io::Traffic;
use super::consensus::{FetchStats, fetch_loop};
use super::dircache::DirShared;
use super::exit::{ExitParams, Exits};
use super::link::{Link, rotate};
use super::metrics::{Sources, serve as serve_metrics};
use super::node_task::{NodeParams, NodeTask};
use super::rekey::{KeySchedule, Rekey, read as read_keys, rekey_loop};
use crate::config::RelayConfig;
use crate::error::RunError;
use crate::keys::RelayKeys;
use crate::publish::Publisher;

/// How long a connection may take from TCP accept to an open channel
/// (C-tor and arti allow a few tens of seconds).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most channels being opened to extend circuits at once.
pub const MAX_CONNECTS: usize = 64;
/// Messages the node task's inbox holds.
const INBOX: usize = 256;
/// A descriptor for a changed bandwidth waits at least this long after
/// the previous one (C-tor waits up to 3 hours; a new relay's first
/// traffic should reach the authorities sooner).
const MIN_REPUBLISH: Duration = Duration::from_secs(20 * 60);
/// Each upload to an authority may take this long.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Run the relay of `config` with `keys` until `shutdown` completes (or a
/// task fails).
pub async fn run(
    config: RelayConfig,
    keys: RelayKeys,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let started = Instant::now();
    let keys = Arc::new(RwLock::new(keys));
    let ids = {
        let keys = Arc::clone(&keys);
        move || read_keys(&keys).identity_keys()
    };
    let first = tokio::task::spawn_blocking({
        let ids = ids.clone();
        move || Link::build(ids())
    })
    .await
    .map_err(|e| RunError::Internal(e.to_string()))??;
    let (link_tx, link_rx) = watch::channel(Arc::new(first));

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    let metrics = match config.metrics {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Listen { addr, source })?,
        ),
        None => None,
    };
    let mut node = {
        let k = read_keys(&keys);
        tracing::info!(
            "relay {} ({}, ed25519 {}) listening on {}, advertised {}:{}",
            config.nickname,
            k.rsa_identity().as_hex_upper(),
            k.ed_identity(),
            config.listen,
            config.address,
            config.or_port
        );
        RelayNode::new(
            k.rsa_identity(),
            k.onion_keys(),
            CcParams::default(),
            &mut rand::rng(),
        )
    };
    let my_addrs = vec![IpAddr::V4(config.address)];
    node.set_memory_limit(Some(config.max_mem_in_queues));
    if let Some(cfx) = &config.conflux {
        tracing::info!(
            "Conflux exit: up to {} legs per set, downloads placed by {}",
            cfx.max_legs,
            cfx.scheduler
                .map_or("the scheduler each client's UX asks for", |k| k.name())
        );
        node.set_conflux(Some(cfx.clone()));
    }
    let dir = config.dir_cache.then(|| Arc::new(DirShared::default()));
    if config.exit || config.dir_cache {
        // A directory cache that is not an exit takes the exit role for
        // BEGIN_DIR alone (the core answers BEGIN and RESOLVE as a C-tor
        // non-exit).
        node.set_exit(Some(ExitConfig {
            exits: config.exit,
            serves_directory: config.dir_cache,
            migrate: config.exit && config.migrate,
            ..ExitConfig::default()
        }));
        if config.exit && config.migrate {
            tracing::info!("live stream migration for Braid clients (BraidMigrate=1)");
        }
    }
    if config.dir_cache {
        tracing::info!(
            "directory cache: serving the consensus, certificates and microdescriptors over BEGIN_DIR"
        );
    }
    if config.exit {
        tracing::info!(
            "exit: policy {}{}",
            config
                .exit_policy
                .rules()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if config.exit_connect_loopback_only {
                "; connecting to 127.0.0.0/8 only"
            } else {
                ""
            }
        );
    }
    tracing::info!(
        "KIST {}",
        match (config.kist, config.kist_interval) {
            (false, _) =>
                "off (kist = false): writers take cells while their queue has room".to_owned(),
            (true, Some(i)) => format!("on, every {i:?} (kist_interval_ms)"),
            (true, None) => "on, every 10 ms until the consensus says otherwise".to_owned(),
        }
    );
    let exits = Exits::new(ExitParams {
        policy: config.exit_policy.clone(),
        loopback_only: config.exit_connect_loopback_only,
        lookups: tokio::sync::Semaphore::new(config.max_dns_lookups),
        dir: dir.clone(),
    });
    let traffic = Arc::new(Traffic::default());
    let (to_node, inbox) = mpsc::channel(INBOX);
    let node_task = NodeTask::new(
        node,
        NodeParams {
            my_addrs: my_addrs.clone(),
            max_connects: MAX_CONNECTS,
            kist: config.kist,
            kist_interval: config.kist_interval,
        },
        inbox,
        to_node.clone(),
        link_rx.clone(),
        Arc::clone(&traffic),
        exits,
    );

    let mut tasks = JoinSet::new();
    let fetches = Arc::new(FetchStats::default());
    if let Some(listener) = metrics {
        tracing::info!(
            "metrics on http://{}/metrics",
            listener
                .local_addr()
                .map_or_else(|e| e.to_string(), |a| a.to_string())
        );
        let sources = Sources {
            to_node: to_node.clone(),
            traffic: Arc::clone(&traffic),
            fetches: Arc::clone(&fetches),
            started,
            memory_limit: config.max_mem_in_queues,
            dir: dir.clone(),
        };
        tasks.spawn(async move {
            serve_metrics(listener, sources).await;
            Ok(())
        });
    }
    let (authorities, to) = (config.authorities.clone(), to_node.clone());
    let (key_schedule, schedule) = watch::channel(KeySchedule::default());
    tasks.spawn(async move {
        fetch_loop(authorities, to, key_schedule, fetches, dir).await;
        Ok(())
    });
    let (republish, relink) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    tasks.spawn(rekey_task(Rekey {
        keys: Arc::clone(&keys),
        dir: config.keys_dir.clone(),
        schedule,
        to_node: to_node.clone(),
        republish: Arc::clone(&republish),
        relink: Arc::clone(&relink),
    }));
    tasks.spawn(async move {
        node_task.run().await;
        Err(RunError::Internal("the node task ended".into()))
    });
    let params = AcceptParams {
        my_addrs,
        max_handshakes: config.max_handshakes,
        timeout: HANDSHAKE_TIMEOUT,
    };
    tasks.spawn(async move {
        accept_loop(listener, link_rx, params, to_node).await;
        Err(RunError::Internal("the accept loop ended".into()))
    });
    tasks.spawn(async move {
        rotate(ids, link_tx, relink).await;
        Ok(())
    });
    tasks.spawn(publish(config, keys, traffic, started, republish));

    tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
        Some(joined) = next_error(&mut tasks) => joined,
    }
}

/// The first task that ends with an error (tasks that end well are let
/// go).
async fn next_error(tasks: &mut JoinSet<Result<(), RunError>>) -> Option<Result<(), RunError>> {
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(Err(e)),
            Err(e) => return Some(Err(RunError::Internal(e.to_string()))),
        }
    }
    std::future::pending().await
}

/// The renewal task, as a task of [`run`].
async fn rekey_task(r: Rekey) -> Result<(), RunError> {
    rekey_loop(r).await;
    Ok(())
}

/// Publish the descriptor (see [`Publisher`]) with the observed bandwidth
/// measured here, and again when it moves enough or `changed` is notified
/// (new keys).
async fn publish(
    config: RelayConfig,
    keys: Arc<RwLock<RelayKeys>>,
    traffic: Arc<Traffic>,
    started: Instant,
    changed: Arc<Notify>,
) -> Result<(), RunError> {
    // The observed bandwidth now, and what the last descriptor said when.
    let observed = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let published: Arc<Mutex<(u32, Instant)>> = Arc::new(Mutex::new((0, Instant::now())));
    let sampler = {
        let (observed, published, changed) = (
            Arc::clone(&observed),
            Arc::clone(&published),
            Arc::clone(&changed),
        );
        async move {
            let mut history = BandwidthHistory::default();
            let mut tick = tokio::time::interval(Duration::from_secs(PERIOD_SECS));
            loop {
                tick.tick().await;
                history.record(
                    traffic.read.load(Ordering::Relaxed),
                    traffic.written.load(Ordering::Relaxed),
                );
                let now = history.observed();
                observed.store(now, Ordering::Relaxed);
                let (said, at) = *published.lock().unwrap_or_else(|e| e.into_inner());
                if changed_enough(said, now) && at.elapsed() >= MIN_REPUBLISH {
                    tracing::info!("observed bandwidth {said} -> {now} B/s: new descriptor");
                    changed.notify_one();
                }
            }
        }
    };
    let make = |t: SystemTime| -> Result<ServerDescriptor, RunError> {
        let bw = observed.load(Ordering::Relaxed);
        *published.lock().unwrap_or_else(|e| e.into_inner()) = (bw, Instant::now());
        let info = config.descriptor_info(t, started.elapsed().as_secs(), bw);
        Ok(build_descriptor(
            &read_keys(&keys).descriptor_keys(),
            &info,
        )?)
    };
    let mut publisher = Publisher::new(
        config.authorities.clone(),
        ScheduleConfig::default(),
        UPLOAD_TIMEOUT,
    );
    tokio::select! {
        r = publisher.run(make, &changed, None) => r,
        () = sampler => Ok(()),
    }
}
