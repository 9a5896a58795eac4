//! `up`, `status` and `down`: launching a private network and stopping it.
//!
//! `up` makes keys and torrc files, starts the helper (file server and
//! shapers), the authorities and relays, waits until every authority's
//! consensus lists every relay with the flags Conflux needs, then starts a
//! C-tor client and waits for it to bootstrap. Whatever fails on the way,
//! everything started so far is stopped before the error is returned.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::NetworkConfig;
use crate::consensus::{self, Expected};
use crate::control::{ControlConn, keyword, keywords};
use crate::error::TestnetError;
use crate::helper::{HelperPlan, ShaperEntry};
use crate::keys::{self, NodeKeys};
use crate::manifest::{
    AuthorityEntry, ClientEntry, FileServerEntry, MANIFEST_FILE, Manifest, NetworkInfo, RelayEntry,
};
use crate::plan::{NodePlan, Plan, Role};
use crate::process::{self, Spawned};
use crate::shaper::ShaperConfig;
use crate::torrc::{self, AuthorityLine, TorrcContext};

/// Marks a directory as made by the launcher, so that it may be reused.
const MARKER: &str = ".braid-testnet";
/// How long `down` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running network started by [`up`]. Dropping it stops the network
/// unless [`Network::detach`] was called.
#[derive(Debug)]
pub struct Network {
    manifest: Manifest,
    dir: PathBuf,
    children: Vec<Spawned>,
    done: bool,
}

impl Network {
    /// What the network consists of (also in `DIR/network.toml`).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The network directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops every process of the network.
    pub fn down(mut self) -> Result<usize, TestnetError> {
        self.done = true;
        let result = down(&self.dir);
        reap(&mut self.children);
        result
    }

    /// Leaves the network running after this handle is gone (the CLI's
    /// `up`); `braid testnet down` stops it later.
    pub fn detach(mut self) {
        self.done = true;
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if !self.done {
            let _ = down(&self.dir);
            reap(&mut self.children);
        }
    }
}

fn reap(children: &mut [Spawned]) {
    for c in children {
        let _ = c.child.try_wait();
    }
}

/// Stops what an unfinished `up` started, unless disarmed.
struct Cleanup {
    dir: PathBuf,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let _ = process::stop_recorded(&self.dir, STOP_GRACE);
            let _ = process::clear_records(&self.dir);
        }
    }
}

struct Progress {
    start: Instant,
    enabled: bool,
    last: String,
}

impl Progress {
    fn say(&mut self, msg: &str) {
        if self.enabled && msg != self.last {
            #[allow(clippy::print_stderr, reason = "progress lines are for the user")]
            {
                eprintln!("[{:6.1}s] {msg}", self.start.elapsed().as_secs_f64());
            }
            self.last = msg.to_string();
        }
        tracing::debug!("{msg}");
    }
}

/// Launches the network described by `config` and waits until it is ready
/// for Conflux: see the module docs.
pub async fn up(config: &NetworkConfig) -> Result<Network, TestnetError> {
    let start = Instant::now();
    let mut progress = Progress {
        start,
        enabled: config.progress,
        last: String::new(),
    };
    let version = keys::check_tor_version(&config.tor)?;
    let dir = absolute(&config.dir)?;
    let plan = Plan::new(&NetworkConfig {
        dir: dir.clone(),
        ..config.clone()
    })?;
    prepare_dir(&dir)?;
    check_ports(&plan)?;
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        armed: true,
    };

    progress.say(&format!(
        "tor {version}: generating keys for {} authorities and {} relays",
        config.authorities,
        config.relays + config.exits
    ));
    let keys = generate_keys(config, &plan)?;
    let bwfile = dir.join("bandwidth-file");
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let measured: Vec<(String, u64)> = plan
        .nodes
        .iter()
        .filter_map(|n| {
            Some((
                keys.get(&n.nickname)?.0.fingerprint.clone(),
                torrc::measured_kb(n),
            ))
        })
        .collect();
    write(&bwfile, &torrc::bandwidth_file(now_unix, &measured))?;
    let mut ctx = torrc_context(config, &plan, &keys);
    ctx.bandwidth_file = Some(bwfile);
    for node in &plan.nodes {
        std::fs::create_dir_all(&node.dir)
            .map_err(|e| TestnetError::io("creating", &node.dir, e))?;
        write(&node.torrc_path(), &torrc::render(node, &ctx))?;
        if node.role == Role::Exit {
            write(&node.dir.join("resolv.conf"), &torrc::exit_resolv_conf())?;
        }
    }

    let mut children = Vec::new();
    let fileserver = SocketAddr::from((Ipv4Addr::LOCALHOST, plan.fileserver_port));
    let helper = start_helper(config, &plan, &dir, fileserver).await?;
    children.push(helper);
    progress.say("file server and shapers up; starting authorities and relays");
    for node in plan.nodes.iter().filter(|n| n.is_relay()) {
        children.push(start_tor(config, &dir, node)?);
    }

    let expected: Vec<Expected> = plan
        .nodes
        .iter()
        .filter(|n| n.is_relay())
        .filter_map(|n| {
            keys.get(&n.nickname).map(|k| Expected {
                nickname: n.nickname.clone(),
                fingerprint: k.0.fingerprint.clone(),
                guard: n.role == Role::Relay,
                exit: n.role == Role::Exit,
            })
        })
        .collect();
    let deadline = start + config.timeout;
    wait_for_consensus(
        &plan,
        &expected,
        &mut children,
        deadline,
        config,
        &mut progress,
    )
    .await?;

    let mut client_entry = None;
    if let Some(client) = plan.with_role(Role::Client).next() {
        progress.say("consensus complete on every authority; starting the C-tor client");
        children.push(start_tor(config, &dir, client)?);
        wait_for_client(client, &mut children, deadline, config, &mut progress).await?;
        client_entry = Some(ClientEntry {
            socks_port: client.socks_port.unwrap_or(0),
            control_port: client.control_port,
            control_cookie: client.cookie_path(),
        });
    }

    let startup = start.elapsed();
    let manifest = Manifest {
        network: NetworkInfo {
            dir: dir.clone(),
            tor_version: version,
            ready_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            startup_secs: (startup.as_secs_f64() * 10.0).round() / 10.0,
            enforce_distinct_subnets: false,
        },
        authorities: plan
            .with_role(Role::Authority)
            .filter_map(|n| {
                let (k, v3) = keys.get(&n.nickname)?;
                Some(AuthorityEntry {
                    nickname: n.nickname.clone(),
                    address: Ipv4Addr::LOCALHOST,
                    or_port: n.or_port,
                    dir_port: n.dir_port.unwrap_or(0),
                    v3ident: v3.clone().unwrap_or_default(),
                    fingerprint: k.fingerprint.clone(),
                    ed25519: k.ed25519.clone(),
                    control_port: n.control_port,
                })
            })
            .collect(),
        relays: plan
            .nodes
            .iter()
            .filter(|n| matches!(n.role, Role::Relay | Role::Exit))
            .filter_map(|n| {
                let (k, _) = keys.get(&n.nickname)?;
                Some(RelayEntry {
                    nickname: n.nickname.clone(),
                    fingerprint: k.fingerprint.clone(),
                    ed25519: k.ed25519.clone(),
                    address: Ipv4Addr::LOCALHOST,
                    or_port: n.or_port,
                    control_port: n.control_port,
                    guard: n.role == Role::Relay,
                    exit: n.role == Role::Exit,
                    shape: n.shape,
                    bandwidth_rate: n.bandwidth,
                })
            })
            .collect(),
        client: client_entry,
        fileserver: FileServerEntry {
            address: fileserver,
        },
    };
    manifest.store(&dir)?;
    progress.say(&format!(
        "network ready in {:.1} s; wrote {}",
        startup.as_secs_f64(),
        dir.join(MANIFEST_FILE).display()
    ));
    cleanup.armed = false;
    Ok(Network {
        manifest,
        dir,
        children,
        done: false,
    })
}

fn absolute(dir: &Path) -> Result<PathBuf, TestnetError> {
    std::path::absolute(dir).map_err(|e| TestnetError::io("resolving", dir, e))
}

fn write(path: &Path, text: &str) -> Result<(), TestnetError> {
    std::fs::write(path, text).map_err(|e| TestnetError::io("writing", path, e))
}

/// Refuses a directory with live processes or foreign content; clears one
/// left by an earlier network.
fn prepare_dir(dir: &Path) -> Result<(), TestnetError> {
    let alive = process::read_records(dir)?
        .iter()
        .filter(|r| process::is_alive(r))
        .count();
    if alive > 0 {
        return Err(TestnetError::AlreadyRunning {
            dir: dir.to_path_buf(),
            alive,
        });
    }
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|e| TestnetError::io("reading", dir, e))?;
        let empty = entries.next().is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                return Err(TestnetError::ForeignDirectory(dir.to_path_buf()));
            }
            for name in [
                "nodes",
                MANIFEST_FILE,
                "helper.toml",
                "helper.log",
                "bandwidth-file",
                process::PID_FILE,
            ] {
                let path = dir.join(name);
                let result = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match result {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(TestnetError::io("removing", &path, e)),
                }
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| TestnetError::io("creating", dir, e))?;
    write(&dir.join(MARKER), "made by braid testnet\n")
}

fn check_ports(plan: &Plan) -> Result<(), TestnetError> {
    for (port, purpose) in plan.ports() {
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            return Err(TestnetError::PortInUse { port, purpose });
        }
    }
    Ok(())
}

/// Identity keys and (for authorities) the v3 identity, by nickname.
type KeyMap = std::collections::HashMap<String, (NodeKeys, Option<String>)>;
/// What key generation yields for one node.
type NodeKeyResult = Result<(String, NodeKeys, Option<String>), TestnetError>;

/// Makes identity keys for every relay and authority, in parallel.
fn generate_keys(config: &NetworkConfig, plan: &Plan) -> Result<KeyMap, TestnetError> {
    let results: Vec<NodeKeyResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .nodes
            .iter()
            .filter(|n| n.is_relay())
            .map(|node| scope.spawn(move || node_keys(config, node)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(TestnetError::Keygen {
                        name: "?".into(),
                        detail: "key generation thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut map = KeyMap::new();
    for r in results {
        let (name, keys, v3) = r?;
        map.insert(name, (keys, v3));
    }
    Ok(map)
}

fn node_keys(config: &NetworkConfig, node: &NodePlan) -> NodeKeyResult {
    std::fs::create_dir_all(&node.dir).map_err(|e| TestnetError::io("creating", &node.dir, e))?;
    let data = node.data_dir();
    let keys = keys::relay_keys(&config.tor, &node.dir, &data, &node.nickname, node.or_port)?;
    let v3 = match (node.role, node.dir_port) {
        (Role::Authority, Some(dir_port)) => Some(keys::authority_v3_keys(
            &config.tor_gencert,
            &data,
            &node.nickname,
            dir_port,
        )?),
        _ => None,
    };
    Ok((node.nickname.clone(), keys, v3))
}

fn torrc_context(config: &NetworkConfig, plan: &Plan, keys: &KeyMap) -> TorrcContext {
    let fps = |role: Role| -> Vec<String> {
        plan.with_role(role)
            .filter_map(|n| keys.get(&n.nickname).map(|k| k.0.fingerprint.clone()))
            .collect()
    };
    TorrcContext {
        authorities: plan
            .with_role(Role::Authority)
            .filter_map(|n| {
                let (k, v3) = keys.get(&n.nickname)?;
                Some(AuthorityLine {
                    nickname: n.nickname.clone(),
                    or_port: n.or_port,
                    dir_port: n.dir_port.unwrap_or(0),
                    v3ident: v3.clone().unwrap_or_default(),
                    fingerprint: k.fingerprint.clone(),
                })
            })
            .collect(),
        guard_fingerprints: fps(Role::Relay),
        exit_fingerprints: fps(Role::Exit),
        log_level: config.log_level.clone(),
        client_conflux_ux: config.client_conflux_ux.clone(),
        client_conflux: config.client_conflux,
        client_extra: config.client_torrc.clone(),
        consensus_params: (!config.consensus_params.is_empty()).then(|| {
            config
                .consensus_params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }),
        bandwidth_file: None,
    }
}

async fn start_helper(
    config: &NetworkConfig,
    plan: &Plan,
    dir: &Path,
    fileserver: SocketAddr,
) -> Result<Spawned, TestnetError> {
    let helper_plan = HelperPlan {
        fileserver,
        shapers: plan
            .nodes
            .iter()
            .filter_map(|n| {
                Some(ShaperEntry {
                    listen: SocketAddr::from((Ipv4Addr::LOCALHOST, n.or_port)),
                    config: ShaperConfig {
                        name: n.nickname.clone(),
                        target: SocketAddr::from((Ipv4Addr::LOCALHOST, n.real_or_port?)),
                        spec: n.shape?,
                    },
                })
            })
            .collect(),
    };
    helper_plan.store(dir)?;
    let mut cmd = Command::new(&config.helper_exe);
    cmd.args(["testnet", "helper", "--dir"]).arg(dir);
    let log = dir.join("helper.log");
    let mut helper = process::spawn_recorded(dir, "helper", cmd, &log)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if tokio::net::TcpStream::connect(fileserver).await.is_ok() {
            return Ok(helper);
        }
        if let Ok(Some(status)) = helper.child.try_wait() {
            return Err(died(&helper, &status.to_string()));
        }
        if Instant::now() > deadline {
            return Err(TestnetError::Timeout {
                what: "the helper (file server and shapers) to listen".into(),
                secs: 15,
                log,
                tail: process::log_tail(&helper.log, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn died(s: &Spawned, status: &str) -> TestnetError {
    TestnetError::ProcessDied {
        name: s.name.clone(),
        pid: s.child.id(),
        status: status.to_string(),
        log: s.log.clone(),
        tail: process::log_tail(&s.log, 20),
    }
}

fn start_tor(config: &NetworkConfig, dir: &Path, node: &NodePlan) -> Result<Spawned, TestnetError> {
    let mut cmd = Command::new(&config.tor);
    cmd.arg("-f").arg(node.torrc_path());
    process::spawn_recorded(dir, &node.nickname, cmd, &node.log_path())
}

fn check_alive(children: &mut [Spawned]) -> Result<(), TestnetError> {
    for c in children.iter_mut() {
        if let Ok(Some(status)) = c.child.try_wait() {
            return Err(died(c, &status.to_string()));
        }
    }
    Ok(())
}

async fn wait_for_consensus(
    plan: &Plan,
    expected: &[Expected],
    children: &mut [Spawned],
    deadline: Instant,
    config: &NetworkConfig,
    progress: &mut Progress,
) -> Result<(), TestnetError> {
    let authorities: Vec<&NodePlan> = plan.with_role(Role::Authority).collect();
    loop {
        check_alive(children)?;
        let mut worst: Option<Vec<String>> = None;
        let mut all_ready = true;
        for auth in &authorities {
            let Some(dir_port) = auth.dir_port else {
                continue;
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, dir_port));
            let problems = match consensus::fetch(addr, Duration::from_secs(5)).await {
                Ok(text) => consensus::missing(&consensus::parse_entries(&text), expected),
                Err(_) => vec![format!("{} has no consensus yet", auth.nickname)],
            };
            if !problems.is_empty() {
                all_ready = false;
                if worst.as_ref().is_none_or(|w| problems.len() > w.len()) {
                    worst = Some(problems);
                }
            }
        }
        if all_ready {
            return Ok(());
        }
        let problems = worst.unwrap_or_default();
        let shown: Vec<&str> = problems.iter().take(4).map(String::as_str).collect();
        let more = problems.len().saturating_sub(shown.len());
        progress.say(&format!(
            "waiting for the consensus: {}{}",
            shown.join("; "),
            if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            }
        ));
        if Instant::now() > deadline {
            let log = authorities
                .first()
                .map(|a| a.log_path())
                .unwrap_or_default();
            return Err(TestnetError::Timeout {
                what: format!("a consensus listing every relay ({})", problems.join("; ")),
                secs: config.timeout.as_secs(),
                tail: process::log_tail(&log, 20),
                log,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn wait_for_client(
    client: &NodePlan,
    children: &mut [Spawned],
    deadline: Instant,
    config: &NetworkConfig,
    progress: &mut Progress,
) -> Result<(), TestnetError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client.control_port));
    let mut conn: Option<ControlConn> = None;
    let mut last = String::from("not started");
    loop {
        check_alive(children)?;
        if conn.is_none() && client.cookie_path().exists() {
            conn = ControlConn::connect(addr, &client.cookie_path()).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match c.getinfo("status/bootstrap-phase").await {
                Ok(phase) => {
                    let kw = keywords(&phase);
                    let pct = keyword(&kw, "PROGRESS").unwrap_or("0");
                    let summary = keyword(&kw, "SUMMARY").unwrap_or("").trim_matches('"');
                    last = format!("{pct}% ({summary})");
                    progress.say(&format!("C-tor client bootstrapped {last}"));
                    if pct == "100" && !config.client_conflux {
                        return Ok(());
                    }
                    if pct == "100" {
                        // Ready for Conflux only once a set is linked: a
                        // stream that arrives earlier gets a plain circuit.
                        let sets = c
                            .getinfo("circuit-status")
                            .await
                            .map(|text| linked_sets(&text))
                            .unwrap_or(0);
                        if sets > 0 {
                            progress.say(&format!("C-tor client holds {sets} linked Conflux sets"));
                            return Ok(());
                        }
                        last = "100%, no linked Conflux set yet".into();
                        progress.say("C-tor client bootstrapped; waiting for a linked Conflux set");
                    }
                }
                Err(_) => conn = None,
            }
        }
        if Instant::now() > deadline {
            return Err(TestnetError::Timeout {
                what: format!("the C-tor client to bootstrap (last: {last})"),
                secs: config.timeout.as_secs(),
                log: client.log_path(),
                tail: process::log_tail(&client.log_path(), 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How many Conflux sets in a `circuit-status` listing have at least two
/// built legs.
fn linked_sets(circuit_status: &str) -> usize {
    let mut legs: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for c in crate::ctor_conflux::parse_circuit_status(circuit_status) {
        if c.status == "BUILT"
            && c.purpose == "CONFLUX_LINKED"
            && let Some(id) = c.conflux_id
        {
            *legs.entry(id).or_default() += 1;
        }
    }
    legs.values().filter(|n| **n >= 2).count()
}

/// One process of a network, for `status`.
#[derive(Debug, Clone)]
pub struct ProcessStatus {
    /// Its nickname.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Whether it is running.
    pub alive: bool,
}

/// What `status` finds in a network directory.
#[derive(Debug, Clone)]
pub struct Status {
    /// The manifest, once the network has been ready.
    pub manifest: Option<Manifest>,
    /// Every recorded process.
    pub processes: Vec<ProcessStatus>,
    /// Relays listed in the first authority's consensus and the problems
    /// still open, when it answered.
    pub consensus: Option<(usize, Vec<String>)>,
}

/// Inspects the network in `dir`.
pub async fn status(dir: &Path) -> Result<Status, TestnetError> {
    let records = process::read_records(dir)?;
    let manifest = match Manifest::load(dir) {
        Ok(m) => Some(m),
        Err(TestnetError::NoNetwork(_)) if !records.is_empty() => None,
        Err(e) => return Err(e),
    };
    let processes = records
        .iter()
        .map(|r| ProcessStatus {
            name: r.name.clone(),
            pid: r.pid,
            alive: process::is_alive(r),
        })
        .collect();
    let mut consensus_state = None;
    if let Some(m) = &manifest
        && let Some(auth) = m.authorities.first()
    {
        let addr = SocketAddr::from((auth.address, auth.dir_port));
        if let Ok(text) = consensus::fetch(addr, Duration::from_secs(3)).await {
            let entries = consensus::parse_entries(&text);
            let expected: Vec<Expected> = m
                .relays
                .iter()
                .map(|r| Expected {
                    nickname: r.nickname.clone(),
                    fingerprint: r.fingerprint.clone(),
                    guard: r.guard,
                    exit: r.exit,
                })
                .collect();
            consensus_state = Some((entries.len(), consensus::missing(&entries, &expected)));
        }
    }
    Ok(Status {
        manifest,
        processes,
        consensus: consensus_state,
    })
}

/// Stops every process recorded in `dir`; returns how many were running.
/// Stopping a network that is already down is not an error.
pub fn down(dir: &Path) -> Result<usize, TestnetError> {
    if !dir.join(process::PID_FILE).exists() && !dir.join(MANIFEST_FILE).exists() {
        return Err(TestnetError::NoNetwork(dir.to_path_buf()));
    }
    let (alive, survivors) = process::stop_recorded(dir, STOP_GRACE)?;
    if survivors > 0 {
        return Err(TestnetError::StopFailed(
            survivors,
            dir.join(process::PID_FILE),
        ));
    }
    process::clear_records(dir)?;
    Ok(alive)
}
