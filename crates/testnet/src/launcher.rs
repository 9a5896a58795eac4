//! `up`, `status` and `down`: launching a private network and stopping it.
//!
//! `up` makes keys and torrc files (`relay.toml` for Braid relays), starts
//! the helper (file server and shapers), the authorities and C-tor relays,
//! then the Braid relays once the authorities' DirPorts answer (so their
//! first descriptor upload finds them), waits until every authority's
//! consensus lists every relay with the flags it needs (Conflux for the
//! C-tor exits), then starts a C-tor client and waits for it to bootstrap.
//! Whatever fails on the way, everything started so far is stopped before
//! the error is returned.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::braid_relay::{self, AuthorityTable};
use crate::config::NetworkConfig;
use crate::consensus::{self, Expected};
use crate::error::TestnetError;
use crate::helper::{HelperPlan, ShaperEntry};
use crate::keys::{self, NodeKeys};
use crate::manifest::{
    AuthorityEntry, ClientEntry, FallbackEntry, FileServerEntry, MANIFEST_FILE, Manifest,
    NetworkInfo, RelayEntry,
};
use crate::plan::{NodePlan, Plan, Role, Software};
use crate::process::{self, Spawned};
use crate::ready::{
    Progress, died, wait_for_caches, wait_for_client, wait_for_consensus, wait_for_dir_ports,
};
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
    if let Some(range) = ephemeral_overlap(&plan, &read_ephemeral_range()) {
        progress.say(&format!(
            "warning: ports {range} are in the kernel's ephemeral range: an outgoing connection may take one of them while the network runs (pick a --base-port below it)"
        ));
    }
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        armed: true,
    };

    progress.say(&format!(
        "tor {version}: generating keys for {} authorities and {} relays{}",
        config.authorities,
        config.relays + config.exits + config.braid_relays + config.braid_exits,
        match config.braid_relays + config.braid_exits {
            0 => String::new(),
            n => format!(" ({n} Braid)"),
        }
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
    let relay_authorities = authority_tables(&plan, &keys);
    for node in &plan.nodes {
        std::fs::create_dir_all(&node.dir)
            .map_err(|e| TestnetError::io("creating", &node.dir, e))?;
        match node.software {
            Software::Tor => {
                write(&node.torrc_path(), &torrc::render(node, &ctx))?;
                if node.role == Role::Exit {
                    write(&node.dir.join("resolv.conf"), &torrc::exit_resolv_conf())?;
                }
            }
            Software::Braid => write(
                &node.relay_toml_path(),
                &braid_relay::render_relay_toml(
                    node,
                    &relay_authorities,
                    &config.braid_exit_policy,
                    &braid_relay::options_for(config, &node.nickname),
                )?,
            )?,
        }
    }

    let mut children = Vec::new();
    let fileserver = SocketAddr::from((Ipv4Addr::LOCALHOST, plan.fileserver_port));
    let helper = start_helper(config, &plan, &dir, fileserver).await?;
    children.push(helper);
    progress.say("file server and shapers up; starting authorities and relays");
    for node in plan.with_software(Software::Tor).filter(|n| n.is_relay()) {
        children.push(start_tor(config, &dir, node)?);
    }
    let deadline = start + config.timeout;
    if plan.with_software(Software::Braid).next().is_some() {
        wait_for_dir_ports(&plan, &mut children, deadline, config).await?;
        progress.say("authorities answer on their DirPorts; starting the Braid relays");
        for node in plan.with_software(Software::Braid) {
            children.push(start_braid(config, &dir, node)?);
        }
    }

    let expected: Vec<Expected> = plan
        .nodes
        .iter()
        .filter(|n| n.is_relay())
        .filter_map(|n| {
            keys.get(&n.nickname).map(|k| {
                Expected::for_relay(
                    &n.nickname,
                    &k.0.fingerprint,
                    n.role == Role::Relay,
                    n.role == Role::Exit,
                    n.software,
                )
            })
        })
        .collect();
    let valid_after = wait_for_consensus(
        &plan,
        &expected,
        &mut children,
        deadline,
        config,
        &mut progress,
    )
    .await?;
    // A client bootstraps from a fallback (a relay), not an authority: the
    // network is ready when none of them serves an older consensus.
    wait_for_caches(
        &plan,
        config,
        valid_after,
        &mut children,
        deadline,
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
    let relays: Vec<RelayEntry> = plan
        .nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Relay | Role::Exit))
        .filter_map(|n| {
            let (k, _) = keys.get(&n.nickname)?;
            Some(RelayEntry {
                nickname: n.nickname.clone(),
                software: n.software,
                fingerprint: k.fingerprint.clone(),
                ed25519: k.ed25519.clone(),
                address: Ipv4Addr::LOCALHOST,
                or_port: n.or_port,
                control_port: n.control_port,
                guard: n.role == Role::Relay,
                exit: n.role == Role::Exit,
                shape: n.shape,
                bandwidth_rate: n.bandwidth,
                metrics: (n.software == Software::Braid)
                    .then(|| {
                        braid_relay::metrics_addr(n, &braid_relay::options_for(config, &n.nickname))
                    })
                    .flatten(),
            })
        })
        .collect();
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
        fallbacks: relays.iter().map(FallbackEntry::of).collect(),
        relays,
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

/// The kernel's ephemeral port range (`ip_local_port_range`), Linux's
/// default when it cannot be read.
fn read_ephemeral_range() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".into())
}

/// The planned ports that fall in the ephemeral range `range` ("low
/// high"), as "first-last", if any.
fn ephemeral_overlap(plan: &Plan, range: &str) -> Option<String> {
    let mut bounds = range.split_ascii_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    let inside: Vec<u16> = plan
        .ports()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| (low..=high).contains(p))
        .collect();
    Some(format!("{}-{}", inside.iter().min()?, inside.iter().max()?))
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
        hsdir_fingerprints: plan
            .with_software(Software::Tor)
            .filter(|n| n.is_relay())
            .filter_map(|n| keys.get(&n.nickname).map(|k| k.0.fingerprint.clone()))
            .collect(),
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

/// The authorities as a Braid relay's `[[authority]]` tables.
fn authority_tables(plan: &Plan, keys: &KeyMap) -> Vec<AuthorityTable> {
    plan.with_role(Role::Authority)
        .filter_map(|n| {
            let (_, v3) = keys.get(&n.nickname)?;
            Some(AuthorityTable {
                nickname: n.nickname.clone(),
                address: Ipv4Addr::LOCALHOST,
                dir_port: n.dir_port?,
                v3ident: v3.clone()?,
            })
        })
        .collect()
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

fn start_tor(config: &NetworkConfig, dir: &Path, node: &NodePlan) -> Result<Spawned, TestnetError> {
    let mut cmd = Command::new(&config.tor);
    cmd.arg("-f").arg(node.torrc_path());
    process::spawn_recorded(dir, &node.nickname, cmd, &node.log_path())
}

fn start_braid(
    config: &NetworkConfig,
    dir: &Path,
    node: &NodePlan,
) -> Result<Spawned, TestnetError> {
    let level = if config.log_level == "debug" {
        "debug"
    } else {
        &config.braid_log_level
    };
    let cmd = braid_relay::command(&config.braid_bin, node, level);
    process::spawn_recorded(dir, &node.nickname, cmd, &node.log_path())
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
                .map(|r| {
                    Expected::for_relay(&r.nickname, &r.fingerprint, r.guard, r.exit, r.software)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_in_the_ephemeral_range_are_named() {
        let plan = |base| {
            let mut c = NetworkConfig::new("/tmp/net", "braid");
            c.base_port = base;
            Plan::new(&c).unwrap()
        };
        assert_eq!(ephemeral_overlap(&plan(17000), "32768\t60999\n"), None);
        let inside = ephemeral_overlap(&plan(36000), "32768\t60999\n").unwrap();
        assert!(inside.starts_with("36000-"), "{inside}");
        let straddling = ephemeral_overlap(&plan(32700), "32768 60999").unwrap();
        let first: u16 = straddling.split('-').next().unwrap().parse().unwrap();
        assert!((32768..32800).contains(&first), "{straddling}");
        assert_eq!(ephemeral_overlap(&plan(36000), "garbage"), None);
    }
}
