//! What `up` waits for, and how it tells the user: the authorities'
//! DirPorts, a consensus listing every relay with its flags, the C-tor
//! client's bootstrap; progress lines; a child that died.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::braid_relay;
use crate::config::NetworkConfig;
use crate::consensus::{self, Expected};
use crate::control::{ControlConn, keyword, keywords};
use crate::error::TestnetError;
use crate::plan::{NodePlan, Plan, Role, Software};
use crate::process::{self, Spawned};

/// Progress lines on standard error (when enabled) and in the debug log.
pub(crate) struct Progress {
    pub(crate) start: Instant,
    pub(crate) enabled: bool,
    pub(crate) last: String,
}

impl Progress {
    pub(crate) fn say(&mut self, msg: &str) {
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

/// The error for a child that exited.
pub(crate) fn died(s: &Spawned, status: &str) -> TestnetError {
    TestnetError::ProcessDied {
        name: s.name.clone(),
        pid: s.child.id(),
        status: status.to_string(),
        log: s.log.clone(),
        tail: process::log_tail(&s.log, 20),
    }
}

/// Waits until every authority accepts connections on its DirPort.
pub(crate) async fn wait_for_dir_ports(
    plan: &Plan,
    children: &mut [Spawned],
    deadline: Instant,
    config: &NetworkConfig,
) -> Result<(), TestnetError> {
    for auth in plan.with_role(Role::Authority) {
        let Some(port) = auth.dir_port else {
            continue;
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            check_alive(children)?;
            if Instant::now() > deadline {
                return Err(TestnetError::Timeout {
                    what: format!("{} to open its DirPort {port}", auth.nickname),
                    secs: config.timeout.as_secs(),
                    log: auth.log_path(),
                    tail: process::log_tail(&auth.log_path(), 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Fails with the first child that has exited.
pub(crate) fn check_alive(children: &mut [Spawned]) -> Result<(), TestnetError> {
    for c in children.iter_mut() {
        if let Ok(Some(status)) = c.child.try_wait() {
            return Err(died(c, &status.to_string()));
        }
    }
    Ok(())
}

/// Waits until every authority's consensus lists `expected` as
/// [`consensus::missing`] wants, and returns the oldest `valid-after` of
/// those complete consensuses (Unix seconds); the timeout names what is
/// missing and the log of each relay it concerns.
pub(crate) async fn wait_for_consensus(
    plan: &Plan,
    expected: &[Expected],
    children: &mut [Spawned],
    deadline: Instant,
    config: &NetworkConfig,
    progress: &mut Progress,
) -> Result<u64, TestnetError> {
    let authorities: Vec<&NodePlan> = plan.with_role(Role::Authority).collect();
    loop {
        check_alive(children)?;
        let mut worst: Option<Vec<String>> = None;
        let mut all_ready = true;
        let mut oldest: Option<u64> = None;
        for auth in &authorities {
            let Some(dir_port) = auth.dir_port else {
                continue;
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, dir_port));
            let problems = match consensus::fetch(addr, Duration::from_secs(5)).await {
                Ok(text) => {
                    let va = consensus::valid_after_unix(&text).unwrap_or(0);
                    oldest = Some(oldest.map_or(va, |o| o.min(va)));
                    consensus::missing(&consensus::parse_entries(&text), expected)
                }
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
            return Ok(oldest.unwrap_or(0));
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
            // Point at the log of the first Braid relay with a problem
            // (its own log says why an authority would not list it), else
            // at the first authority's.
            let braid_log = plan
                .with_software(Software::Braid)
                .find(|n| problems.iter().any(|p| names_relay(p, &n.nickname)))
                .map(NodePlan::log_path);
            let log = braid_log
                .or_else(|| authorities.first().map(|a| a.log_path()))
                .unwrap_or_default();
            return Err(TestnetError::Timeout {
                what: format!(
                    "a consensus listing every relay ({})",
                    with_logs(&problems, plan).join("; ")
                ),
                secs: config.timeout.as_secs(),
                tail: process::log_tail(&log, 20),
                log,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until every relay that is a directory cache serves a consensus at
/// least as new as `valid_after` (the authorities' first complete one), so
/// that a client bootstrapping from any fallback sees every relay: a C-tor
/// relay's microdesc consensus read over its ControlPort, a Braid relay's
/// `braid_relay_dir_consensus_valid_after_seconds` from its metrics.
pub(crate) async fn wait_for_caches(
    plan: &Plan,
    config: &NetworkConfig,
    valid_after: u64,
    children: &mut [Spawned],
    deadline: Instant,
    progress: &mut Progress,
) -> Result<(), TestnetError> {
    let caches: Vec<&NodePlan> = plan
        .nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Relay | Role::Exit))
        .filter(|n| {
            n.software == Software::Tor
                || braid_relay::is_dir_cache(&braid_relay::options_for(config, &n.nickname))
        })
        .collect();
    // Each cache, its control connection (C-tor) and whether it is fresh.
    let mut state: Vec<(&NodePlan, Option<ControlConn>, bool)> =
        caches.into_iter().map(|n| (n, None, false)).collect();
    loop {
        check_alive(children)?;
        for (node, conn, fresh) in &mut state {
            if *fresh {
                continue;
            }
            let served = match node.software {
                Software::Tor => ctor_consensus_valid_after(node, conn).await,
                Software::Braid => braid_consensus_valid_after(node, config).await,
            };
            *fresh = served.is_some_and(|va| va >= valid_after);
        }
        let stale: Vec<&NodePlan> = state
            .iter()
            .filter(|(_, _, fresh)| !fresh)
            .map(|(n, _, _)| *n)
            .collect();
        let Some(first) = stale.first() else {
            return Ok(());
        };
        let names: Vec<&str> = stale.iter().map(|n| n.nickname.as_str()).collect();
        progress.say(&format!(
            "waiting for the directory caches to fetch the complete consensus: {}",
            names.join(", ")
        ));
        if Instant::now() > deadline {
            let log = first.log_path();
            return Err(TestnetError::Timeout {
                what: format!(
                    "the directory caches to serve the complete consensus ({} still serve an older one)",
                    names.join(", ")
                ),
                secs: config.timeout.as_secs(),
                tail: process::log_tail(&log, 20),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `valid-after` of the microdesc consensus C-tor relay `node` holds.
async fn ctor_consensus_valid_after(
    node: &NodePlan,
    conn: &mut Option<ControlConn>,
) -> Option<u64> {
    if conn.is_none() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, node.control_port));
        *conn = ControlConn::connect(addr, &node.cookie_path()).await.ok();
    }
    let c = conn.as_mut()?;
    match c
        .getinfo("dir/status-vote/current/consensus-microdesc")
        .await
    {
        Ok(text) => consensus::valid_after_unix(&text),
        Err(_) => {
            *conn = None;
            None
        }
    }
}

/// The `valid-after` of the consensus Braid relay `node`'s cache serves.
async fn braid_consensus_valid_after(node: &NodePlan, config: &NetworkConfig) -> Option<u64> {
    let addr = braid_relay::metrics_addr(node, &braid_relay::options_for(config, &node.nickname))?;
    let text = consensus::http_text(addr, "/metrics", Duration::from_secs(5))
        .await
        .ok()?;
    let secs = consensus::gauge(&text, "braid_relay_dir_consensus_valid_after_seconds")?;
    // Unix seconds fit a u64 and an f64 exactly.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "whole seconds"
    )]
    Some(secs as u64)
}

/// Whether a problem line from [`consensus::missing`] is about `nickname`.
fn names_relay(problem: &str, nickname: &str) -> bool {
    problem
        .strip_prefix(nickname)
        .is_some_and(|rest| rest.starts_with(' '))
}

/// The problems, each followed by the log of the relay it names.
fn with_logs(problems: &[String], plan: &Plan) -> Vec<String> {
    problems
        .iter()
        .map(
            |p| match plan.nodes.iter().find(|n| names_relay(p, &n.nickname)) {
                Some(n) => format!("{p} (log: {})", n.log_path().display()),
                None => p.clone(),
            },
        )
        .collect()
}

/// Waits until the C-tor client has bootstrapped (and holds a linked
/// Conflux set when Conflux is on).
pub(crate) async fn wait_for_client(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_point_at_the_relays_logs() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.braid_relays = 1;
        config.braid_exits = 1;
        let plan = Plan::new(&config).unwrap();
        assert!(names_relay("braidexit0 lacks Running", "braidexit0"));
        assert!(!names_relay("braidexit0 lacks Running", "braidexit"));
        assert!(!names_relay("relay10 not listed", "relay1"));
        let problems = vec![
            "braidexit0 lacks Running,Exit".to_string(),
            "relay1 not listed".to_string(),
            "auth2 has no consensus yet".to_string(),
            "something else".to_string(),
        ];
        assert_eq!(
            with_logs(&problems, &plan),
            [
                "braidexit0 lacks Running,Exit (log: /tmp/net/nodes/braidexit0/braid.log)",
                "relay1 not listed (log: /tmp/net/nodes/relay1/tor.log)",
                "auth2 has no consensus yet (log: /tmp/net/nodes/auth2/tor.log)",
                "something else",
            ]
        );
    }
}
