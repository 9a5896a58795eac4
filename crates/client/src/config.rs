//! The client configuration. Without a file Braid uses the public Tor
//! network. A file names a private network: its `[[authority]]` tables
//! (nickname, address, dir_port, v3ident) are the trust roots, its
//! `[[fallback]]` tables (nickname, address, or_port, fingerprint, and
//! optionally ed25519) the relays first asked for the directory over
//! BEGIN_DIR (the authorities' DirPorts only when none answers), and
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
//! [[fallback]]
//! nickname = "relay0"
//! address = "127.0.0.1"
//! or_port = 17020
//! fingerprint = "0F7D5F4C9C3D1E0A4D6B2C8E1F3A5B7C9D0E2F41"
//! ed25519 = "x8rIKD1bL9n3uO7hA5z0iY2wVvKc6qS4jTmFgNnEaHs"  # optional
//!
//! [braid]
//! cache_dir = "/var/cache/braid"   # default: braid-cache beside this file
//! state_dir = "/var/lib/braid"     # guards; default: braid-state beside it
//! conflux = true                   # multipath tunnels (default: on, as C-tor
//!                                  # clients; false: single circuits)
//! legs = 2                         # legs per tunnel, 2 to 8
//! scheduler = "ecf"                # what we send: ecf (default), lowrtt
//!                                  # or minrtt
//! ux = "throughput"                # asked of the exit in LINK: throughput,
//!                                  # latency, low-mem-throughput,
//!                                  # low-mem-latency, no-opinion
//! resume = true                    # Conflux sets resume lost legs with exits
//!                                  # that advertise BraidResume=1 (default)
//! migrate = true                   # streams may move between tunnels to an
//!                                  # exit that advertises BraidMigrate=1
//!                                  # (default)
//! max_circuit_dirtiness = 600      # seconds a tunnel takes new streams after
//!                                  # its first (C-tor's MaxCircuitDirtiness)
//! rotate_streams_after = 3000      # seconds after that, its long-lived
//!                                  # streams move to a fresh tunnel to the
//!                                  # same exit (BraidMigrate=1 exits; 0:
//!                                  # never)
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

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use braid_core::conflux::{ReorderLimit, ReorderSizer, V1DesiredUx};
use braid_core::conflux_sched::SchedulerKind;
use braid_dir::{Authority, DirConfig, Ed25519Id, Fallback, NodeRestrictions};
use serde::Deserialize;

use crate::error::ConfigError;

/// How long after a tunnel left its key's pool (dirty) its long-lived
/// streams move to a fresh tunnel (policy (c), `rotate_streams_after`):
/// with the 10 minutes of dirtiness, no circuit carries a stream for much
/// more than an hour where the exit takes migrated streams.
pub const ROTATE_STREAMS_AFTER: Duration = Duration::from_secs(3000);

#[derive(Debug, Deserialize)]
struct FileConfig {
    #[serde(default)]
    network: NetworkSection,
    #[serde(default)]
    authority: Vec<AuthoritySection>,
    #[serde(default)]
    fallback: Vec<FallbackSection>,
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

#[derive(Debug, Deserialize)]
struct FallbackSection {
    nickname: String,
    address: Ipv4Addr,
    or_port: u16,
    /// RSA identity, 40 hex digits.
    fingerprint: String,
    /// Ed25519 identity, base64 (as network.toml writes it) or 64 hex.
    ed25519: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct BraidSection {
    cache_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    conflux: Option<bool>,
    legs: Option<usize>,
    scheduler: Option<String>,
    ux: Option<String>,
    resume: Option<bool>,
    migrate: Option<bool>,
    max_circuit_dirtiness: Option<u64>,
    rotate_streams_after: Option<u64>,
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
    /// Where the state that is not a cache lives (the guard set): private,
    /// locked by one process, keyed to the network ([`crate::state`]).
    pub state_dir: PathBuf,
    /// The file this came from (`None`: the public network).
    pub source: Option<PathBuf>,
    /// Conflux legs per tunnel (2..=8), or `None` for single circuits. On
    /// (2 legs) by default, as in C-tor clients (`ConfluxEnabled` auto);
    /// used only while the consensus has `cfx_enabled` on, and only where
    /// an exit that supports Conflux allows the port (else one circuit).
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
    /// Make streams migratable (Braid proposal 001 §4) on tunnels whose
    /// exit advertises `BraidMigrate=1` (`[braid] migrate`, default on):
    /// a stream then moves to another tunnel to the same exit of its
    /// isolation key when its own fails, when the Conflux set it waited
    /// for is ready, or on request (`braid streams migrate`). Never used
    /// with an exit that does not advertise it.
    pub migrate: bool,
    /// How long a tunnel takes new streams after its first (`[braid]
    /// max_circuit_dirtiness`, seconds; C-tor's `MaxCircuitDirtiness`,
    /// 10 minutes by default). Then it leaves its key's pool and lives on
    /// while streams use it.
    pub max_circuit_dirtiness: Duration,
    /// How long after leaving the pool a tunnel keeps its long-lived
    /// streams (`[braid] rotate_streams_after`, seconds, default 3000; 0
    /// or `None`: for good, as C-tor): then, where its exit advertises
    /// `BraidMigrate=1`, they move to a fresh tunnel of their isolation
    /// key to the same exit (Braid proposal 001 §4.4, policy (c)).
    pub rotate_streams_after: Option<Duration>,
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
            state_dir: std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share"))
                })
                .unwrap_or_else(std::env::temp_dir)
                .join("braid")
                .join("public"),
            source: None,
            conflux_legs: Some(2),
            scheduler: SchedulerKind::Ecf,
            conflux_ux: V1DesiredUx::HIGH_THROUGHPUT,
            resume: true,
            migrate: true,
            max_circuit_dirtiness: crate::pool::MAX_CIRCUIT_DIRTINESS,
            rotate_streams_after: Some(ROTATE_STREAMS_AFTER),
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
        let fallbacks = file
            .fallback
            .into_iter()
            .map(|f| parse_fallback(f).map_err(&invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_dir = file.braid.cache_dir.unwrap_or_else(|| {
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                .join("braid-cache")
        });
        let state_dir = file.braid.state_dir.unwrap_or_else(|| {
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                .join("braid-state")
        });
        let conflux_legs = match (file.braid.conflux, file.braid.legs) {
            (Some(false), _) => None,
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
                fallbacks,
            },
            enforce_distinct_subnets: file.network.enforce_distinct_subnets.unwrap_or(true),
            cache_dir,
            state_dir,
            source: Some(path.to_owned()),
            conflux_legs,
            scheduler,
            conflux_ux,
            resume: file.braid.resume.unwrap_or(true),
            migrate: file.braid.migrate.unwrap_or(true),
            max_circuit_dirtiness: match file.braid.max_circuit_dirtiness {
                None => crate::pool::MAX_CIRCUIT_DIRTINESS,
                Some(0) => {
                    return Err(invalid(
                        "[braid] max_circuit_dirtiness must be at least 1 s".into(),
                    ));
                }
                Some(s) => Duration::from_secs(s),
            },
            rotate_streams_after: match file.braid.rotate_streams_after {
                None => Some(ROTATE_STREAMS_AFTER),
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
            },
            metrics: file.braid.metrics,
            reorder_limit,
            nodes,
        })
    }
}

/// A `[[fallback]]` table: a relay asked over BEGIN_DIR before any
/// consensus is known, whose channel must prove these identities.
fn parse_fallback(f: FallbackSection) -> Result<Fallback, String> {
    let name = &f.nickname;
    let id = f
        .fingerprint
        .trim_start_matches('$')
        .parse()
        .map_err(|e| format!("fallback {name}: bad fingerprint: {e}"))?;
    if f.or_port == 0 {
        return Err(format!("fallback {name}: or_port 0"));
    }
    let ed_id = match f.ed25519.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<Ed25519Id>()
                .ok()
                .or_else(|| {
                    let e = tor_llcrypto::pk::ed25519::Ed25519Identity::from_base64(text)?;
                    <[u8; 32]>::try_from(e.as_bytes()).ok().map(Ed25519Id::new)
                })
                .ok_or_else(|| {
                    format!("fallback {name}: bad ed25519 {text:?}: base64 or 64 hex digits")
                })?,
        ),
    };
    Ok(Fallback {
        id,
        or_addr: SocketAddrV4::new(f.address, f.or_port),
        or_addr_v6: None,
        nickname: f.nickname,
        ed_id,
    })
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
        assert_eq!(c.state_dir, PathBuf::from("/tmp/x/braid-state"));
    }

    /// `[[fallback]]` tables, as `braid testnet up` writes them: RSA
    /// fingerprint and a base64 Ed25519 identity (hex works too).
    #[test]
    fn reads_fallback_tables() {
        let text = format!(
            "{NETWORK_TOML}\n[[fallback]]\nnickname = \"relay0\"\naddress = \"127.0.0.1\"\nor_port = 26020\nfingerprint = \"0F7D5F4C9C3D1E0A4D6B2C8E1F3A5B7C9D0E2F41\"\ned25519 = \"{}\"\n\n[[fallback]]\nnickname = \"relay1\"\naddress = \"127.0.0.2\"\nor_port = 26030\nfingerprint = \"$1F7D5F4C9C3D1E0A4D6B2C8E1F3A5B7C9D0E2F41\"\n",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"
        );
        let c = ClientConfig::parse(&text, Path::new("n.toml")).unwrap();
        let f = &c.dir.fallbacks;
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].nickname, "relay0");
        assert_eq!(f[0].or_addr, "127.0.0.1:26020".parse().unwrap());
        assert_eq!(f[0].ed_id, Some(Ed25519Id::new([1; 32])));
        assert_eq!(f[1].ed_id, None);
        assert_eq!(
            f[1].id.to_string(),
            "1F7D5F4C9C3D1E0A4D6B2C8E1F3A5B7C9D0E2F41"
        );
        let hex = text.replace(
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
            &"01".repeat(32),
        );
        let c = ClientConfig::parse(&hex, Path::new("n.toml")).unwrap();
        assert_eq!(c.dir.fallbacks[0].ed_id, Some(Ed25519Id::new([1; 32])));
        for (bad, why) in [
            ("0F7D5F4C9C3D", "bad fingerprint"),
            ("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE", "bad ed25519"),
            ("or_port = 26020", "or_port 0"),
        ] {
            let broken = match why {
                "bad fingerprint" => {
                    text.replacen("0F7D5F4C9C3D1E0A4D6B2C8E1F3A5B7C9D0E2F41", bad, 1)
                }
                "bad ed25519" => text.replace(bad, "not-an-identity"),
                _ => text.replace(bad, "or_port = 0"),
            };
            let e = ClientConfig::parse(&broken, Path::new("n.toml")).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
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
    fn dirtiness_and_rotation() {
        let p = Path::new("c.toml");
        let c = ClientConfig::parse(NETWORK_TOML, p).unwrap();
        assert_eq!(c.max_circuit_dirtiness, Duration::from_secs(600));
        assert_eq!(c.rotate_streams_after, Some(ROTATE_STREAMS_AFTER));
        let with =
            |lines: &str| ClientConfig::parse(&format!("{NETWORK_TOML}\n[braid]\n{lines}\n"), p);
        let c = with("max_circuit_dirtiness = 30\nrotate_streams_after = 0").unwrap();
        assert_eq!(c.max_circuit_dirtiness, Duration::from_secs(30));
        assert_eq!(c.rotate_streams_after, None, "0: never");
        let c = with("rotate_streams_after = 7200").unwrap();
        assert_eq!(c.rotate_streams_after, Some(Duration::from_secs(7200)));
        let e = with("max_circuit_dirtiness = 0").unwrap_err();
        assert!(e.to_string().contains("max_circuit_dirtiness"), "{e}");
        assert!(with("rotate_streams_after = -1").is_err());
    }

    #[test]
    fn public_network_by_default() {
        let c = ClientConfig::public();
        assert_eq!(c.dir.authorities.len(), 9);
        assert!(c.dir.fallbacks.len() > 100);
        assert!(c.enforce_distinct_subnets);
        assert!(c.cache_dir.ends_with("braid/public"));
        assert!(c.state_dir.ends_with("braid/public"));
        assert_ne!(c.state_dir, c.cache_dir);
    }
}
