//! Braid relays in the network: the `relay.toml` each one runs with
//! (`braid relay run --config relay.toml`, the format of
//! `crates/relay/src/config.rs`) and the command that starts it.
//!
//! A Braid relay's keys are made as a C-tor relay's are, with
//! `tor --list-fingerprint` (keys.rs): the relay reads C-tor's `keys/`
//! directory as it is. It has no torrc, no ControlPort and no shaper.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::config::{NetworkConfig, is_braid_name};
use crate::error::TestnetError;
use crate::plan::{NodePlan, Role};

/// The `proto` line every Braid relay advertises: only what it implements.
///
/// C-tor 0.4.9 authorities require nothing of a relay's `proto` line to
/// list it beyond its presence and syntax (`routerparse.c` takes it as a
/// mandatory item; `dirvote.c` skips lists that `protover_list_is_invalid`
/// finds bad; `dirserv_get_status_impl` checks only a "Tor " platform's
/// version). The consensus' `required-relay-protocols` bind C-tor relays
/// only (they refuse to run without them). What the line changes is how
/// C-tor treats the relay:
/// - `Link=4-5`: the link handshake versions the responder answers
///   (tor-spec §4.1).
/// - `LinkAuth=3`: Ed25519 link authentication (AUTH0003, tor-spec §4.4.2);
///   with it the authorities' reachability test checks that the handshake
///   shows the descriptor's Ed25519 identity (`reachability.c`).
/// - `Relay=2,4`: CREATE2/EXTEND2 with ntor (C-tor clients skip relays
///   without Relay=2 in every position) and ntor-v3 (Relay=4, prop 332).
///   Not Relay=1 (TAP CREATE/EXTEND) nor Relay=3 (extending over IPv6,
///   untested here: the testnet is IPv4 only).
/// - `FlowCtrl=1-2`: authenticated circuit SENDMEs (prop 289) and
///   congestion control with XON/XOFF (prop 324); with Relay=4 C-tor
///   clients negotiate congestion control with the relay.
///
/// - `DirCache=1`: the relay is a directory cache over BEGIN_DIR
///   (`dir_cache`, on by default; its descriptor says
///   `tunnelled-dir-server`, which is what earns V2Dir and makes C-tor
///   clients sample it as a guard). Not `DirCache=2`, consensus diffs
///   (prop 140): it keeps none (a diff asked in the URL is 404, one asked
///   in `X-Or-Diff-From-Consensus` gets the full consensus). C-tor 0.4.9
///   clients check neither version when they pick guards or directory
///   caches (`node_is_possible_guard`, `node_is_dir`: flags only); the
///   consensus' required `DirCache=2` binds C-tor relays only.
///
/// Left out because the relay does not do them: `HSDir`, `HSIntro`,
/// `HSRend`, `Padding` (onion-service roles and their padding), `Conflux`
/// (only exits link sets: [`BRAID_EXIT_PROTO`]), and the document formats
/// `Cons`, `Desc`, `Microdesc`, which describe directory documents a relay
/// fetches or serves.
pub const BRAID_PROTO: &str = "DirCache=1 FlowCtrl=1-2 Link=4-5 LinkAuth=3 Relay=2,4";

/// A Braid exit's `proto`: [`BRAID_PROTO`], `Conflux=1`, the Conflux exit
/// (prop 329; C-tor clients pick a set's exit among relays that advertise
/// it and FlowCtrl=2), `BraidResume=1`, resumption for Braid clients, and
/// `BraidMigrate=1`, live stream migration for Braid clients (Braid
/// proposal 001 §3, §4; C-tor authorities copy unknown names into `pr`,
/// C-tor clients ignore them). The relay answers CONFLUX_LINK, RESUME_CAP
/// and STREAM_REGISTER because its `proto` says so.
pub const BRAID_EXIT_PROTO: &str =
    "BraidMigrate=1 BraidResume=1 Conflux=1 DirCache=1 FlowCtrl=1-2 Link=4-5 LinkAuth=3 Relay=2,4";

/// A Braid relay's advertised bandwidth when none is configured: C-tor's
/// default `BandwidthRate` (1 GByte/s), so that the relay is not slower
/// than a C-tor relay with no `BandwidthRate`. The authorities vote the
/// bandwidth file's figure, as for the C-tor relays.
pub const DEFAULT_BANDWIDTH: u32 = 1 << 30;

/// The `[[authority]]` facts a relay file needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorityTable {
    /// Nickname.
    pub nickname: String,
    /// Address of the DirPort.
    pub address: Ipv4Addr,
    /// DirPort.
    pub dir_port: u16,
    /// v3 identity, hex.
    pub v3ident: String,
}

#[derive(Debug, Serialize)]
struct RelayFile<'a> {
    braid_relay: RelaySection<'a>,
    authority: &'a [AuthorityTable],
}

#[derive(Debug, Serialize)]
struct RelaySection<'a> {
    nickname: &'a str,
    address: Ipv4Addr,
    or_port: u16,
    keys_dir: PathBuf,
    bandwidth_rate: u32,
    bandwidth_burst: u32,
    proto: &'a str,
    exit_policy: Vec<String>,
    contact: &'a str,
    /// Run the exit role.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<bool>,
    /// Connect only to 127.0.0.0/8, whatever the policy says (the C-tor
    /// exits' `OutboundBindAddressExit 127.0.0.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_connect_loopback_only: Option<bool>,
    /// The Prometheus listener the launcher reads, unless the network's
    /// options set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<String>,
    /// The network's extra options for this relay
    /// ([`NetworkConfig::braid_relay_options`]).
    #[serde(flatten)]
    extra: &'a toml::Table,
}

/// The `[braid_relay]` keys the testnet writes itself, which
/// [`NetworkConfig::braid_relay_options`] cannot set.
pub const TESTNET_RELAY_KEYS: [&str; 11] = [
    "nickname",
    "address",
    "or_port",
    "keys_dir",
    "bandwidth_rate",
    "bandwidth_burst",
    "proto",
    "exit_policy",
    "contact",
    "exit",
    "exit_connect_loopback_only",
];

/// Checks [`NetworkConfig::braid_relay_options`]: names of the network's
/// Braid relays (or `all`), no key of [`TESTNET_RELAY_KEYS`].
pub(crate) fn check_options(config: &NetworkConfig) -> Result<(), TestnetError> {
    for (name, options) in &config.braid_relay_options {
        if name != "all" && !(is_braid_name(name) && config.is_known_name(name)) {
            return Err(TestnetError::Config(format!(
                "options for unknown Braid relay `{name}` (use braidrelayN, braidexitN or all)"
            )));
        }
        if let Some(key) = options
            .keys()
            .find(|k| TESTNET_RELAY_KEYS.contains(&k.as_str()))
        {
            return Err(TestnetError::Config(format!(
                "options for `{name}`: `{key}` is written by the testnet itself"
            )));
        }
    }
    Ok(())
}

/// The extra `[braid_relay]` options of Braid relay `nickname`: those of
/// `all`, then its own (which win).
pub fn options_for(config: &NetworkConfig, nickname: &str) -> toml::Table {
    let mut out = toml::Table::new();
    for key in ["all", nickname] {
        if let Some(options) = config.braid_relay_options.get(key) {
            out.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    out
}

/// Renders the `relay.toml` of Braid relay `node`: the `[braid_relay]`
/// table and the network's authorities. An exit gets `exit_policy` (torrc
/// syntax), `exit = true` and `exit_connect_loopback_only = true`; a
/// non-exit `reject *:*`. `extra` ([`options_for`]) is added to the
/// `[braid_relay]` table.
pub fn render_relay_toml(
    node: &NodePlan,
    authorities: &[AuthorityTable],
    exit_policy: &[String],
    extra: &toml::Table,
) -> Result<String, TestnetError> {
    let is_exit = node.role == Role::Exit;
    let file = RelayFile {
        braid_relay: RelaySection {
            nickname: &node.nickname,
            address: Ipv4Addr::LOCALHOST,
            or_port: node.or_port,
            keys_dir: node.keys_dir(),
            bandwidth_rate: bandwidth(node),
            bandwidth_burst: bandwidth(node),
            proto: if is_exit {
                BRAID_EXIT_PROTO
            } else {
                BRAID_PROTO
            },
            exit_policy: if is_exit {
                exit_policy.to_vec()
            } else {
                vec!["reject *:*".to_string()]
            },
            contact: "braid-testnet",
            exit: is_exit.then_some(true),
            exit_connect_loopback_only: is_exit.then_some(true),
            metrics: if extra.contains_key("metrics") {
                None
            } else {
                node.metrics_port.map(|p| format!("127.0.0.1:{p}"))
            },
            extra,
        },
        authority: authorities,
    };
    let text = toml::to_string_pretty(&file).map_err(|e| {
        TestnetError::Config(format!("{}: cannot write relay.toml: {e}", node.nickname))
    })?;
    Ok(format!(
        "# {} ({:?}), a Braid relay, written by braid testnet\n\n{text}",
        node.nickname, node.role
    ))
}

/// Where Braid relay `node` serves its metrics: the network's `metrics`
/// option for it, else its planned metrics port.
pub fn metrics_addr(node: &NodePlan, extra: &toml::Table) -> Option<std::net::SocketAddr> {
    match extra.get("metrics") {
        Some(v) => v.as_str().and_then(|a| a.parse().ok()),
        None => node
            .metrics_port
            .map(|p| std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, p))),
    }
}

/// Whether a Braid relay with the options `extra` runs a directory cache
/// (`dir_cache`, on unless the options turn it off).
pub fn is_dir_cache(extra: &toml::Table) -> bool {
    extra
        .get("dir_cache")
        .and_then(toml::Value::as_bool)
        .unwrap_or(true)
}

/// The relay's bandwidth rate and burst in bytes per second: its
/// configured `bandwidth`, else [`DEFAULT_BANDWIDTH`].
fn bandwidth(node: &NodePlan) -> u32 {
    node.bandwidth
        .map_or(DEFAULT_BANDWIDTH, |b| u32::try_from(b).unwrap_or(u32::MAX))
}

/// The command that runs Braid relay `node` with the program `braid_bin`,
/// logging at info level (`-v`; `-vv` when `log_level` is `debug`), as
/// the C-tor relays log at notice.
pub fn command(braid_bin: &Path, node: &NodePlan, log_level: &str) -> Command {
    let mut cmd = Command::new(braid_bin);
    cmd.arg(if log_level == "debug" { "-vv" } else { "-v" })
        .args(["relay", "run", "--config"])
        .arg(node.relay_toml_path());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NetworkConfig, RelayShape};
    use crate::plan::{Plan, Software};

    fn plan() -> Plan {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.relays = 4;
        config.exits = 1;
        config.braid_relays = 1;
        config.braid_exits = 1;
        config.shapes.insert(
            "braidrelay0".into(),
            RelayShape {
                bandwidth: Some("5MB".into()),
                ..RelayShape::default()
            },
        );
        Plan::new(&config).unwrap()
    }

    fn authorities() -> Vec<AuthorityTable> {
        vec![
            AuthorityTable {
                nickname: "auth0".into(),
                address: Ipv4Addr::LOCALHOST,
                dir_port: 17001,
                v3ident: "A".repeat(40),
            },
            AuthorityTable {
                nickname: "auth1".into(),
                address: Ipv4Addr::LOCALHOST,
                dir_port: 17011,
                v3ident: "B".repeat(40),
            },
        ]
    }

    fn node<'a>(plan: &'a Plan, name: &str) -> &'a NodePlan {
        plan.nodes.iter().find(|n| n.nickname == name).unwrap()
    }

    /// The file read back as TOML: the relay's table and the authorities.
    fn parse(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn exit_file_binds_to_loopback_and_lists_the_authorities() {
        let plan = plan();
        let exit = node(&plan, "braidexit0");
        assert_eq!(exit.software, Software::Braid);
        let policy = vec!["reject 127.0.0.1:9".to_string(), "accept *:*".to_string()];
        let text = render_relay_toml(exit, &authorities(), &policy, &toml::Table::new()).unwrap();
        let t = parse(&text);
        let r = t["braid_relay"].as_table().unwrap();
        assert_eq!(r["nickname"].as_str(), Some("braidexit0"));
        assert_eq!(r["address"].as_str(), Some("127.0.0.1"));
        assert_eq!(r["or_port"].as_integer(), Some(17090));
        assert_eq!(
            r["keys_dir"].as_str(),
            Some("/tmp/net/nodes/braidexit0/data/keys")
        );
        assert_eq!(r["bandwidth_rate"].as_integer(), Some(1 << 30));
        assert_eq!(r["proto"].as_str(), Some(BRAID_EXIT_PROTO));
        let rules: Vec<&str> = r["exit_policy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(rules, ["reject 127.0.0.1:9", "accept *:*"]);
        assert_eq!(r["exit"].as_bool(), Some(true));
        assert_eq!(r["exit_connect_loopback_only"].as_bool(), Some(true));
        let auths = t["authority"].as_array().unwrap();
        assert_eq!(auths.len(), 2);
        assert_eq!(auths[1]["dir_port"].as_integer(), Some(17011));
        assert_eq!(auths[1]["v3ident"].as_str(), Some("B".repeat(40).as_str()));
        assert_eq!(auths[0]["address"].as_str(), Some("127.0.0.1"));
        assert!(text.starts_with("# braidexit0 (Exit), a Braid relay"));
        // Metrics in the ControlPort's slot, which the launcher reads.
        assert_eq!(r["metrics"].as_str(), Some("127.0.0.1:17092"));
        assert_eq!(
            metrics_addr(exit, &toml::Table::new()),
            Some("127.0.0.1:17092".parse().unwrap())
        );
        assert!(is_dir_cache(&toml::Table::new()));
    }

    #[test]
    fn the_networks_metrics_option_wins() {
        let plan = plan();
        let exit = node(&plan, "braidexit0");
        let extra: toml::Table =
            toml::from_str("metrics = \"127.0.0.1:36900\"\ndir_cache = false").unwrap();
        let text = render_relay_toml(exit, &authorities(), &[], &extra).unwrap();
        let r = parse(&text)["braid_relay"].as_table().unwrap().clone();
        assert_eq!(r["metrics"].as_str(), Some("127.0.0.1:36900"));
        assert_eq!(
            metrics_addr(exit, &extra),
            Some("127.0.0.1:36900".parse().unwrap())
        );
        assert!(!is_dir_cache(&extra));
    }

    #[test]
    fn non_exit_file_rejects_everything() {
        let plan = plan();
        let relay = node(&plan, "braidrelay0");
        let text = render_relay_toml(
            relay,
            &authorities(),
            &["accept *:*".into()],
            &toml::Table::new(),
        )
        .unwrap();
        let t = parse(&text);
        let r = t["braid_relay"].as_table().unwrap();
        assert_eq!(r["nickname"].as_str(), Some("braidrelay0"));
        assert_eq!(r["or_port"].as_integer(), Some(17080));
        assert_eq!(r["bandwidth_rate"].as_integer(), Some(5_000_000));
        assert_eq!(r["bandwidth_burst"].as_integer(), Some(5_000_000));
        let rules = r["exit_policy"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].as_str(), Some("reject *:*"));
        assert!(!r.contains_key("exit") && !r.contains_key("exit_connect_loopback_only"));
    }

    #[test]
    fn extra_options_are_written_per_relay() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.relays = 4;
        config.braid_relays = 1;
        config.braid_exits = 2;
        config.set_braid_relay_option("all", "kist", true);
        config.set_braid_relay_option("all", "max_handshakes", 64);
        config.set_braid_relay_option("braidexit1", "kist", false);
        config.validate().unwrap();
        let plan = Plan::new(&config).unwrap();
        let kist = |name: &str| {
            let extra = options_for(&config, name);
            let text = render_relay_toml(
                node(&plan, name),
                &authorities(),
                &["accept *:*".into()],
                &extra,
            )
            .unwrap();
            let r = parse(&text)["braid_relay"].as_table().unwrap().clone();
            assert_eq!(r["max_handshakes"].as_integer(), Some(64), "{name}");
            assert_eq!(r["nickname"].as_str(), Some(name));
            r["kist"].as_bool().unwrap()
        };
        assert!(kist("braidexit0"));
        assert!(!kist("braidexit1"));
        assert!(kist("braidrelay0"));
        // Nothing extra without options.
        config.braid_relay_options.clear();
        let text = render_relay_toml(
            node(&plan, "braidexit1"),
            &authorities(),
            &["accept *:*".into()],
            &options_for(&config, "braidexit1"),
        )
        .unwrap();
        assert!(
            !parse(&text)["braid_relay"]
                .as_table()
                .unwrap()
                .contains_key("kist")
        );
    }

    #[test]
    fn a_hostile_exit_gets_its_key() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.relays = 4;
        config.braid_exits = 2;
        config.set_hostile_exit("braidexit1", "seq-gap");
        config.validate().unwrap();
        let plan = Plan::new(&config).unwrap();
        let hostile = |name: &str| {
            let text = render_relay_toml(
                node(&plan, name),
                &authorities(),
                &["accept *:*".into()],
                &options_for(&config, name),
            )
            .unwrap();
            parse(&text)["braid_relay"].get("hostile").cloned()
        };
        assert_eq!(hostile("braidexit1"), Some("seq-gap".into()));
        assert_eq!(hostile("braidexit0"), None);
    }

    #[test]
    fn extra_options_are_checked() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.braid_exits = 1;
        let set = |config: &mut NetworkConfig, name: &str, text: &str| {
            config.braid_relay_options.clear();
            config
                .braid_relay_options
                .insert(name.into(), toml::from_str(text).unwrap());
            config.validate().map_err(|e| e.to_string())
        };
        assert!(set(&mut config, "braidexit0", "kist = false").is_ok());
        assert!(set(&mut config, "all", "kist = false").is_ok());
        for name in ["braidexit1", "braidrelay0", "exit0", "relays"] {
            let err = set(&mut config, name, "kist = false").unwrap_err();
            assert!(err.contains("unknown Braid relay"), "{name}: {err}");
        }
        for key in TESTNET_RELAY_KEYS {
            let err = set(&mut config, "all", &format!("{key} = 1")).unwrap_err();
            assert!(err.contains("written by the testnet"), "{key}: {err}");
        }
    }

    #[test]
    fn command_runs_the_relay_with_its_file() {
        let plan = plan();
        let cmd = command(
            Path::new("/usr/bin/braid"),
            node(&plan, "braidrelay0"),
            "notice",
        );
        assert_eq!(cmd.get_program(), "/usr/bin/braid");
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-v",
                "relay",
                "run",
                "--config",
                "/tmp/net/nodes/braidrelay0/relay.toml"
            ]
        );
        let cmd = command(Path::new("braid"), node(&plan, "braidexit0"), "debug");
        assert_eq!(cmd.get_args().next().unwrap(), "-vv");
    }

    #[test]
    fn proto_line_is_what_the_relay_implements() {
        use crate::consensus::supports;
        for (proto, v) in [
            ("Link", 4),
            ("Link", 5),
            ("LinkAuth", 3),
            ("Relay", 2),
            ("Relay", 4),
            ("DirCache", 1),
        ] {
            assert!(supports(BRAID_PROTO, proto, v), "{proto}={v}");
        }
        for (proto, v) in [
            ("Relay", 1),
            ("Relay", 3),
            ("Conflux", 1),
            ("DirCache", 2),
            ("HSDir", 2),
            ("HSIntro", 4),
            ("Padding", 2),
        ] {
            assert!(!supports(BRAID_PROTO, proto, v), "{proto}={v}");
        }
        assert!(supports(BRAID_PROTO, "FlowCtrl", 2));
        assert!(supports(BRAID_EXIT_PROTO, "Conflux", 1));
        assert!(supports(BRAID_EXIT_PROTO, "BraidResume", 1));
        assert!(!supports(BRAID_PROTO, "BraidResume", 1));
        assert!(supports(BRAID_EXIT_PROTO, "BraidMigrate", 1));
        assert!(!supports(BRAID_PROTO, "BraidMigrate", 1));
        assert_eq!(
            BRAID_EXIT_PROTO.replace("BraidMigrate=1 BraidResume=1 Conflux=1 ", ""),
            BRAID_PROTO,
            "exits advertise Conflux=1 and Braid's extensions besides what every Braid relay does"
        );
    }
}
