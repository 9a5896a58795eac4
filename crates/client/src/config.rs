//! The client configuration. Without a file Braid uses the public Tor
//! network. A file names a private network: its `[[authority]]` tables
//! (nickname, address, dir_port, v3ident) are the trust roots, and
//! `[network] enforce_distinct_subnets = false` lifts the /16 rule for a
//! loopback network. The `network.toml` that `braid testnet up` writes is
//! such a file; other tables in it are ignored. Braid's own options live
//! under `[braid]`.
//!
//! ```toml
//! [network]
//! enforce_distinct_subnets = false
//!
//! [[authority]]
//! nickname = "auth0"
//! address = "127.0.0.1"
//! dir_port = 17001
//! v3ident = "DF42171FC3F4BE879C6F3F36C488ADFCE0C9D819"
//!
//! [braid]
//! cache_dir = "/var/cache/braid"   # default: braid-cache beside this file
//! conflux = true                   # multipath tunnels (default: off for now)
//! legs = 2                         # legs per tunnel, 2 to 8
//! scheduler = "ecf"                # what we send: ecf (default), lowrtt
//!                                  # or minrtt
//! ux = "throughput"                # asked of the exit in LINK: throughput,
//!                                  # latency, low-mem-throughput,
//!                                  # low-mem-latency, no-opinion
//! resume = true                    # Conflux sets resume lost legs with exits
//!                                  # that advertise BraidResume=1 (default)
//! metrics = "127.0.0.1:9035"       # braid proxy serves /metrics, /status
//! reorder_limit = "auto"           # bytes a Conflux set may hold out of
//!                                  # order: "auto" (2 MiB, raised to twice
//!                                  # the legs' bandwidth times their RTT, up
//!                                  # to 32 MiB) or a size ("8 MiB", 8388608)
//! # Node restrictions, like C-tor's EntryNodes/MiddleNodes/ExitNodes:
//! # nicknames (case-insensitive) or 40-hex RSA fingerprints ($ optional).
//! # An empty or missing list leaves the position free. With entry_nodes
//! # the guards come from the list instead of the persistent guard set
//! # (Conflux legs still get distinct guards and distinct middles); listed
//! # relays must still have the flags their position needs.
//! entry_nodes = ["relay0", "relay1"]
//! middle_nodes = ["relay2", "relay3"]
//! exit_nodes = ["$0123456789ABCDEF0123456789ABCDEF01234567"]
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use braid_core::conflux::{ReorderLimit, ReorderSizer, V1DesiredUx};
use braid_core::conflux_sched::SchedulerKind;
use braid_dir::{Authority, DirConfig, NodeRestrictions};
use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Debug, Deserialize)]
struct FileConfig {
    #[serde(default)]
    network: NetworkSection,
    #[serde(default)]
    authority: Vec<AuthoritySection>,
    #[serde(default)]
    braid: BraidSection,
}

#[derive(Debug, Default, Deserialize)]
struct NetworkSection {
    enforce_distinct_subnets: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct AuthoritySection {
    nickname: String,
    address: IpAddr,
    dir_port: u16,
    v3ident: String,
}

#[derive(Debug, Default, Deserialize)]
struct BraidSection {
    cache_dir: Option<PathBuf>,
    conflux: Option<bool>,
    legs: Option<usize>,
    scheduler: Option<String>,
    ux: Option<String>,
    resume: Option<bool>,
    metrics: Option<SocketAddr>,
    reorder_limit: Option<toml::Value>,
    #[serde(default)]
    entry_nodes: Vec<String>,
    #[serde(default)]
    middle_nodes: Vec<String>,
    #[serde(default)]
    exit_nodes: Vec<String>,
}

/// Everything the client needs to know before it starts.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The directory trust roots.
    pub dir: DirConfig,
    /// Apply path-spec's /16 rule.
    pub enforce_distinct_subnets: bool,
    /// Where the directory cache lives.
    pub cache_dir: PathBuf,
    /// The file this came from (`None`: the public network).
    pub source: Option<PathBuf>,
    /// Conflux legs per tunnel (2..=8), or `None` for single circuits.
    pub conflux_legs: Option<usize>,
    /// The scheduler for what we send on a Conflux set.
    pub scheduler: SchedulerKind,
    /// The UX asked of the exit in CONFLUX_LINK (prop 329 §2.2): it picks
    /// the exit's scheduler for what we download (C-tor: throughput →
    /// LowRTT, latency and low-mem → MinRTT).
    pub conflux_ux: V1DesiredUx,
    /// Offer resumption (Braid proposal 001) to Conflux exits that
    /// advertise `BraidResume=1` (`[braid] resume`, default on): a leg
    /// lost with data in flight is replaced instead of closing the set.
    /// Never offered to an exit that does not advertise it.
    pub resume: bool,
    /// Where `braid proxy` serves its metrics (loopback only).
    pub metrics: Option<SocketAddr>,
    /// The byte limit of a Conflux set's reorder queue (`[braid]
    /// reorder_limit`): `None` sizes it from the legs (a
    /// [`ReorderSizer`], from 2 MiB).
    pub reorder_limit: Option<usize>,
    /// Relays allowed as guard, middle and exit (`[braid] entry_nodes`,
    /// `middle_nodes`, `exit_nodes`); empty lists allow every relay.
    pub nodes: NodeRestrictions,
}

impl ClientConfig {
    /// The public Tor network, with the cache in `$XDG_CACHE_HOME/braid`
    /// (or `~/.cache/braid`).
    pub fn public() -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        Self {
            dir: DirConfig::public(),
            enforce_distinct_subnets: true,
            cache_dir: base.join("braid").join("public"),
            source: None,
            conflux_legs: None,
            scheduler: SchedulerKind::Ecf,
            conflux_ux: V1DesiredUx::HIGH_THROUGHPUT,
            resume: true,
            metrics: None,
            reorder_limit: None,
            nodes: NodeRestrictions::default(),
        }
    }

    /// Read a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse the text of a configuration file found at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let invalid = |detail: String| ConfigError::Invalid {
            path: path.to_owned(),
            detail,
        };
        if file.authority.is_empty() {
            return Err(invalid(
                "no [[authority]] tables: a private network needs its authorities".into(),
            ));
        }
        let mut authorities = Vec::new();
        for a in file.authority {
            let v3ident = a
                .v3ident
                .parse()
                .map_err(|e| invalid(format!("authority {}: bad v3ident: {e}", a.nickname)))?;
            if a.dir_port == 0 {
                return Err(invalid(format!("authority {}: dir_port 0", a.nickname)));
            }
            authorities.push(Authority {
                nickname: a.nickname,
                v3ident,
                dir_addr: SocketAddr::new(a.address, a.dir_port),
            });
        }
        let cache_dir = file.braid.cache_dir.unwrap_or_else(|| {
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                .join("braid-cache")
        });
        let conflux_legs = match (file.braid.conflux, file.braid.legs) {
            (Some(false), _) | (None, None) => None,
            (_, Some(n)) if !(2..=8).contains(&n) => {
                return Err(invalid(format!("[braid] legs = {n}: Conflux needs 2 to 8")));
            }
            (_, legs) => Some(legs.unwrap_or(2)),
        };
        let scheduler = match file.braid.scheduler.as_deref() {
            // ECF: as fast as LowRTT in bulk, faster at the end of a
            // transfer (README, "Schedulers and the default").
            None => SchedulerKind::Ecf,
            Some(name) => SchedulerKind::from_name(name).ok_or_else(|| {
                invalid(format!(
                    "[braid] scheduler = {name:?}: one of minrtt, lowrtt, ecf"
                ))
            })?,
        };
        let conflux_ux = match file.braid.ux.as_deref() {
            None => V1DesiredUx::HIGH_THROUGHPUT,
            Some(name) => parse_ux(name).ok_or_else(|| {
                invalid(format!(
                    "[braid] ux = {name:?}: one of throughput, latency, low-mem-throughput, low-mem-latency, no-opinion"
                ))
            })?,
        };
        if let Some(addr) = file.braid.metrics
            && !addr.ip().is_loopback()
        {
            return Err(invalid(format!(
                "[braid] metrics = {addr}: only a loopback address"
            )));
        }
        let reorder_limit = match &file.braid.reorder_limit {
            None => None,
            Some(toml::Value::String(s)) if s == "auto" => None,
            Some(v) => {
                let bytes = match v {
                    toml::Value::Integer(n) => usize::try_from(*n).ok(),
                    toml::Value::String(s) => parse_size(s),
                    _ => None,
                };
                let bad = || {
                    invalid(format!(
                        "[braid] reorder_limit = {v}: \"auto\" or a size from {} to {} bytes (\"8 MiB\", 8388608)",
                        MIN_REORDER_LIMIT, MAX_REORDER_LIMIT
                    ))
                };
                let bytes = bytes.ok_or_else(bad)?;
                if !(MIN_REORDER_LIMIT..=MAX_REORDER_LIMIT).contains(&bytes) {
                    return Err(bad());
                }
                Some(bytes)
            }
        };
        let nodes = NodeRestrictions::parse(
            &file.braid.entry_nodes,
            &file.braid.middle_nodes,
            &file.braid.exit_nodes,
        )
        .map_err(|e| invalid(format!("[braid] {e}")))?;
        Ok(Self {
            dir: DirConfig {
                authorities,
                fallbacks: Vec::new(),
            },
            enforce_distinct_subnets: file.network.enforce_distinct_subnets.unwrap_or(true),
            cache_dir,
            source: Some(path.to_owned()),
            conflux_legs,
            scheduler,
            conflux_ux,
            resume: file.braid.resume.unwrap_or(true),
            metrics: file.braid.metrics,
            reorder_limit,
            nodes,
        })
    }
}

/// The least `[braid] reorder_limit`: 64 KiB (one congestion window of
/// each of two legs barely fits; sets may close under load).
const MIN_REORDER_LIMIT: usize = 64 * 1024;
/// The most `[braid] reorder_limit`: 1 GiB.
const MAX_REORDER_LIMIT: usize = 1 << 30;

impl ClientConfig {
    /// The reorder bounds a new Conflux set starts with, and whether it
    /// raises them as its legs are measured.
    pub fn reorder(&self) -> (ReorderLimit, bool) {
        match self.reorder_limit {
            Some(bytes) => (ReorderLimit::from_bytes(bytes), false),
            None => (ReorderSizer::initial_limit(), true),
        }
    }
}

/// A size: bytes, or a number with B, kB, KiB, MB, MiB, GB or GiB (a
/// space between them or not; case-insensitive units). `None` if
/// malformed or too large.
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" => 1024.0,
        "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    let bytes = (n * factor).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes <= usize::MAX as f64).then_some(bytes as usize)
}

/// A UX by its name in the configuration.
fn parse_ux(name: &str) -> Option<V1DesiredUx> {
    Some(match name {
        "throughput" | "high-throughput" => V1DesiredUx::HIGH_THROUGHPUT,
        "latency" | "min-latency" => V1DesiredUx::MIN_LATENCY,
        "low-mem-throughput" => V1DesiredUx::LOW_MEM_THROUGHPUT,
        "low-mem-latency" => V1DesiredUx::LOW_MEM_LATENCY,
        "no-opinion" => V1DesiredUx::NO_OPINION,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_dir::NodeSpec;

    const NETWORK_TOML: &str = r#"
[network]
dir = "/tmp/x"
enforce_distinct_subnets = false

[[authority]]
nickname = "auth0"
address = "127.0.0.1"
or_port = 26000
dir_port = 26001
v3ident = "DF42171FC3F4BE879C6F3F36C488ADFCE0C9D819"

[[relay]]
nickname = "relay0"

[client]
socks_port = 1
"#;

    #[test]
    fn reads_a_testnet_manifest() {
        let c = ClientConfig::parse(NETWORK_TOML, Path::new("/tmp/x/network.toml")).unwrap();
        assert_eq!(c.dir.authorities.len(), 1);
        assert_eq!(
            c.dir.authorities[0].dir_addr,
            "127.0.0.1:26001".parse().unwrap()
        );
        assert!(!c.enforce_distinct_subnets);
        assert_eq!(c.cache_dir, PathBuf::from("/tmp/x/braid-cache"));
    }

    #[test]
    fn bad_files_are_explained() {
        let p = Path::new("c.toml");
        let e = ClientConfig::parse("[network]\n", p).unwrap_err();
        assert!(e.to_string().contains("no [[authority]]"), "{e}");
        let e = ClientConfig::parse(&NETWORK_TOML.replace("DF42", "ZZ42"), p).unwrap_err();
        assert!(e.to_string().contains("bad v3ident"), "{e}");
        let e = ClientConfig::parse(
            &format!("{NETWORK_TOML}\n[braid]\nscheduler = \"fastest\"\n"),
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("minrtt, lowrtt, ecf"), "{e}");
        let c = ClientConfig::parse(
            &format!("{NETWORK_TOML}\n[braid]\nconflux = true\nscheduler = \"ecf\"\n"),
            p,
        )
        .unwrap();
        assert_eq!((c.conflux_legs, c.scheduler), (Some(2), SchedulerKind::Ecf));
        let e = ClientConfig::parse("[[authority]\n", p).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    #[test]
    fn ux_and_metrics() {
        let p = Path::new("c.toml");
        let c = ClientConfig::parse(NETWORK_TOML, p).unwrap();
        assert_eq!(c.conflux_ux, V1DesiredUx::HIGH_THROUGHPUT);
        assert_eq!(c.metrics, None);
        let c = ClientConfig::parse(
            &format!(
                "{NETWORK_TOML}
[braid]
ux = \"latency\"
metrics = \"127.0.0.1:9035\"
"
            ),
            p,
        )
        .unwrap();
        assert_eq!(c.conflux_ux, V1DesiredUx::MIN_LATENCY);
        assert_eq!(c.metrics, Some("127.0.0.1:9035".parse().unwrap()));
        let e = ClientConfig::parse(
            &format!(
                "{NETWORK_TOML}
[braid]
ux = \"fast\"
"
            ),
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no-opinion"), "{e}");
        let e = ClientConfig::parse(
            &format!(
                "{NETWORK_TOML}
[braid]
metrics = \"0.0.0.0:9035\"
"
            ),
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[test]
    fn reorder_limit() {
        let p = Path::new("c.toml");
        let with =
            |line: &str| ClientConfig::parse(&format!("{NETWORK_TOML}\n[braid]\n{line}\n"), p);
        let c = ClientConfig::parse(NETWORK_TOML, p).unwrap();
        assert_eq!(c.reorder_limit, None);
        assert_eq!(c.reorder(), (ReorderSizer::initial_limit(), true));
        assert_eq!(
            with("reorder_limit = \"auto\"").unwrap().reorder_limit,
            None
        );
        for (line, bytes) in [
            ("reorder_limit = 8388608", 8 << 20),
            ("reorder_limit = \"8 MiB\"", 8 << 20),
            ("reorder_limit = \"8MiB\"", 8 << 20),
            ("reorder_limit = \"2.5 mb\"", 2_500_000),
            ("reorder_limit = \"512 KiB\"", 512 << 10),
            ("reorder_limit = \"1 GiB\"", 1 << 30),
        ] {
            let c = with(line).unwrap();
            assert_eq!(c.reorder_limit, Some(bytes), "{line}");
            assert_eq!(c.reorder(), (ReorderLimit::from_bytes(bytes), false));
        }
        for line in [
            "reorder_limit = \"lots\"",
            "reorder_limit = \"8 MiBs\"",
            "reorder_limit = \"-1 MiB\"",
            "reorder_limit = -1",
            "reorder_limit = 1000",
            "reorder_limit = \"2 GiB\"",
            "reorder_limit = true",
        ] {
            let e = with(line).unwrap_err();
            assert!(e.to_string().contains("reorder_limit"), "{line}: {e}");
        }
    }

    #[test]
    fn node_lists() {
        let p = Path::new("c.toml");
        let c = ClientConfig::parse(NETWORK_TOML, p).unwrap();
        assert!(c.nodes.is_empty());
        let fp = "AB".repeat(20);
        let c = ClientConfig::parse(
            &format!(
                "{NETWORK_TOML}\n[braid]\nentry_nodes = [\"relay0\", \"Relay1\"]\nmiddle_nodes = [\"${fp}\"]\nexit_nodes = [\"exit0\"]\n"
            ),
            p,
        )
        .unwrap();
        assert_eq!(
            c.nodes.entry,
            vec![
                NodeSpec::Nickname("relay0".into()),
                NodeSpec::Nickname("Relay1".into())
            ]
        );
        assert_eq!(c.nodes.middle, vec![NodeSpec::Id(fp.parse().unwrap())]);
        assert_eq!(c.nodes.exit, vec![NodeSpec::Nickname("exit0".into())]);
        let e = ClientConfig::parse(
            &format!("{NETWORK_TOML}\n[braid]\nmiddle_nodes = [\"relay 2\"]\n"),
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"relay 2\""), "{e}");
        assert!(e.to_string().contains("fingerprint"), "{e}");
        let e = ClientConfig::parse(
            &format!("{NETWORK_TOML}\n[braid]\nexit_nodes = \"exit0\"\n"),
            p,
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(ClientConfig::public().nodes.is_empty());
    }

    #[test]
    fn public_network_by_default() {
        let c = ClientConfig::public();
        assert_eq!(c.dir.authorities.len(), 9);
        assert!(c.dir.fallbacks.len() > 100);
        assert!(c.enforce_distinct_subnets);
        assert!(c.cache_dir.ends_with("braid/public"));
    }
}
