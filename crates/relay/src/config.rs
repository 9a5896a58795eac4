//! The relay's configuration file. The authorities are `[[authority]]`
//! tables as in the client's file and the `network.toml` that
//! `braid testnet up` writes (so a relay file can be that file plus a
//! `[braid_relay]` table; its `[[relay]]` tables, the network's relays, are
//! ignored); the relay's own options live under `[braid_relay]`:
//!
//! ```toml
//! [braid_relay]
//! nickname = "braidrelay0"       # 1 to 19 letters and digits
//! address = "127.0.0.1"          # IPv4 address of the ORPort
//! or_port = 9001
//! keys_dir = "braidrelay0/keys"  # default: keys beside this file
//! bandwidth_rate = 1000000       # bytes/s the relay sustains
//! bandwidth_burst = 2000000      # bytes/s in bursts (default: the rate)
//! proto = "Link=4-5 LinkAuth=3"  # what the relay implements, verbatim
//! exit_policy = ["reject *:*"]   # torrc syntax (default: no exit)
//! contact = "you <you@example.org>"
//! hidden_service_dir = false
//! # `braid relay run` only:
//! listen = "127.0.0.1:9001"      # where the ORPort listens (default: address:or_port)
//! exit = false                   # serve exit streams (default: whether the policy accepts any)
//! exit_connect_loopback_only = false  # exit streams only to 127.0.0.0/8 (test networks)
//! max_dns_lookups = 32           # concurrent name lookups of the exit
//! max_handshakes = 128           # concurrent inbound TLS + link handshakes
//! max_mem_in_queues = 1073741824 # bytes of circuit queues and exit buffers (C-tor's MaxMemInQueues)
//! kist = true                    # KIST write limits in the channel writers (default true)
//! kist_interval_ms = 10          # KIST run interval, 1 to 100 (default: the consensus', else 10)
//! dir_cache = true               # serve the directory over BEGIN_DIR, advertise tunnelled-dir-server (C-tor's DirCache, default true)
//! metrics = "127.0.0.1:9035"     # Prometheus text on GET /metrics (loopback only; default: none)
//! conflux_scheduler = "ecf"      # Conflux exit (proto Conflux=1): place every set's downloads
//!                                # with ecf, lowrtt or minrtt (default: as the client's UX asks)
//! # hostile = "seq-gap"          # tests only: a Conflux exit that breaks the protocol on purpose
//!                                # (seq-gap, switch-flood, junk); refused unless braid-relay is
//!                                # built with the `hostile` feature
//!
//! [[authority]]
//! nickname = "auth0"
//! address = "127.0.0.1"
//! dir_port = 17001
//! v3ident = "DF42171FC3F4BE879C6F3F36C488ADFCE0C9D819"
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use braid_core::conflux::ResumeParams;
use braid_core::conflux_sched::SchedulerKind;
use braid_core::relay::ConfluxExitConfig;
use braid_dir::Authority;
use braid_dir::descriptor::{Bandwidth, DescriptorInfo, ExitPolicy, braid_platform};
use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Debug, Deserialize)]
struct FileConfig {
    braid_relay: Option<RelaySection>,
    #[serde(default)]
    authority: Vec<AuthoritySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelaySection {
    nickname: String,
    address: Ipv4Addr,
    or_port: u16,
    keys_dir: Option<PathBuf>,
    bandwidth_rate: u32,
    bandwidth_burst: Option<u32>,
    proto: String,
    exit_policy: Option<Vec<String>>,
    contact: Option<String>,
    #[serde(default)]
    hidden_service_dir: bool,
    listen: Option<SocketAddr>,
    exit: Option<bool>,
    #[serde(default)]
    exit_connect_loopback_only: bool,
    max_dns_lookups: Option<usize>,
    max_handshakes: Option<usize>,
    max_mem_in_queues: Option<usize>,
    kist: Option<bool>,
    kist_interval_ms: Option<u64>,
    metrics: Option<SocketAddr>,
    conflux_scheduler: Option<String>,
    dir_cache: Option<bool>,
    /// Read in every build, so that a build without the feature refuses
    /// it by name.
    hostile: Option<String>,
}

/// Default bound on the bytes of all circuits' queues and exit buffers:
/// 1 GiB (C-tor derives its `MaxMemInQueues` from the machine's memory,
/// 8 GiB at most; past it the circuits with the oldest queued data close).
pub const DEFAULT_MAX_MEM_IN_QUEUES: usize = 1 << 30;

/// Default bound on the exit's concurrent name lookups.
pub const DEFAULT_MAX_DNS_LOOKUPS: usize = 32;

/// Default bound on concurrent inbound handshakes (TLS and link).
pub const DEFAULT_MAX_HANDSHAKES: usize = 128;

#[derive(Debug, Deserialize)]
struct AuthoritySection {
    nickname: String,
    address: IpAddr,
    dir_port: u16,
    v3ident: String,
}

/// Everything the relay needs to know before it starts.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Nickname.
    pub nickname: String,
    /// IPv4 address of the ORPort.
    pub address: Ipv4Addr,
    /// ORPort.
    pub or_port: u16,
    /// The key directory.
    pub keys_dir: PathBuf,
    /// Bandwidth rate and burst, bytes per second.
    pub bandwidth_rate: u32,
    /// Burst.
    pub bandwidth_burst: u32,
    /// The `proto` line.
    pub proto: String,
    /// The exit policy.
    pub exit_policy: ExitPolicy,
    /// Contact information.
    pub contact: Option<String>,
    /// Advertise `hidden-service-dir`.
    pub hidden_service_dir: bool,
    /// Where descriptors are uploaded.
    pub authorities: Vec<Authority>,
    /// Where the ORPort listens (the advertised address and port unless
    /// set, e.g. behind a forwarding shaper).
    pub listen: SocketAddr,
    /// Whether the relay serves exit streams (its policy accepts some
    /// destinations).
    pub exit: bool,
    /// Exit streams connect only to 127.0.0.0/8, whatever the policy
    /// advertises (test networks).
    pub exit_connect_loopback_only: bool,
    /// Most concurrent name lookups of the exit.
    pub max_dns_lookups: usize,
    /// Most concurrent inbound handshakes (TLS and link).
    pub max_handshakes: usize,
    /// Bound on the bytes of all circuits' queues and exit buffers.
    pub max_mem_in_queues: usize,
    /// Whether the channel writers use KIST's write limits.
    pub kist: bool,
    /// KIST's run interval, over the consensus' `KISTSchedRunInterval`.
    pub kist_interval: Option<Duration>,
    /// Where Prometheus text is served (`GET /metrics`), a loopback
    /// address.
    pub metrics: Option<SocketAddr>,
    /// The Conflux exit role (prop 329): on when `proto` advertises
    /// `Conflux=1`, which needs the exit role.
    pub conflux: Option<ConfluxExitConfig>,
    /// Serve the directory over BEGIN_DIR (a directory cache: the
    /// consensus, certificates and microdescriptors fetched from the
    /// authorities) and say so in the descriptor (`tunnelled-dir-server`),
    /// as C-tor's `DirCache 1`, the default. Without it the authorities
    /// give no V2Dir flag and C-tor clients neither fetch from the relay
    /// nor sample it as a guard.
    pub dir_cache: bool,
    /// Live stream migration for Braid clients (Braid proposal 001 §4):
    /// on when `proto` advertises `BraidMigrate=1`, which needs the exit
    /// role.
    pub migrate: bool,
}

impl RelayConfig {
    /// Read a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse the text of a configuration file found at `path` (relative
    /// paths in it are taken from the file's directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let invalid = |detail: String| ConfigError::Invalid {
            path: path.to_owned(),
            detail,
        };
        let relay = file
            .braid_relay
            .ok_or_else(|| invalid("no [braid_relay] table".into()))?;
        if file.authority.is_empty() {
            return Err(invalid(
                "no [[authority]] tables: the relay needs authorities to publish to".into(),
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
        let base = path.parent().unwrap_or(Path::new("."));
        let keys_dir = base.join(relay.keys_dir.unwrap_or_else(|| PathBuf::from("keys")));
        let exit_policy = match &relay.exit_policy {
            None => ExitPolicy::reject_all(),
            Some(lines) => ExitPolicy::parse(lines.iter().map(String::as_str))
                .map_err(|e| invalid(format!("[braid_relay] {e}")))?,
        };
        let exit = relay.exit.unwrap_or_else(|| exit_policy.is_exit());
        match (exit, exit_policy.is_exit()) {
            (true, false) => {
                return Err(invalid(
                    "[braid_relay] exit = true, but the exit policy accepts nothing".into(),
                ));
            }
            (false, true) => {
                return Err(invalid(
                    "[braid_relay] exit = false, but the exit policy accepts destinations \
                     (clients would send streams we refuse)"
                        .into(),
                ));
            }
            _ => {}
        }
        let positive = |v: Option<usize>, default: usize, name: &str| match v {
            Some(0) => Err(invalid(format!("[braid_relay] {name} must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let max_dns_lookups = positive(
            relay.max_dns_lookups,
            DEFAULT_MAX_DNS_LOOKUPS,
            "max_dns_lookups",
        )?;
        let max_handshakes = positive(
            relay.max_handshakes,
            DEFAULT_MAX_HANDSHAKES,
            "max_handshakes",
        )?;
        let max_mem_in_queues = positive(
            relay.max_mem_in_queues,
            DEFAULT_MAX_MEM_IN_QUEUES,
            "max_mem_in_queues",
        )?;
        let kist_interval = match relay.kist_interval_ms {
            // C-tor's KISTSchedRunInterval range, 0 (off) aside: use
            // `kist = false` for that.
            Some(ms @ 1..=100) => Some(Duration::from_millis(ms)),
            Some(ms) => {
                return Err(invalid(format!(
                    "[braid_relay] kist_interval_ms = {ms}: must be 1 to 100 (kist = false turns KIST off)"
                )));
            }
            None => None,
        };
        if let Some(m) = relay.metrics
            && !m.ip().is_loopback()
        {
            // The figures show traffic: never beyond this host.
            return Err(invalid(format!(
                "[braid_relay] metrics = {m}: not a loopback address"
            )));
        }
        let protocols = relay.proto.parse::<tor_protover::Protocols>().ok();
        let advertises_conflux = protocols
            .as_ref()
            .is_some_and(|p| p.supports_known_subver(tor_protover::ProtoKind::Conflux, 1));
        // Braid proposal 001 §2.1: resumption, for Conflux sets.
        let advertises_resume = protocols
            .as_ref()
            .is_some_and(|p| p.supports_subver("BraidResume", 1));
        if advertises_resume && !advertises_conflux {
            return Err(invalid(
                "[braid_relay] proto advertises BraidResume=1 without Conflux=1 (it resumes Conflux sets)"
                    .into(),
            ));
        }
        // Braid proposal 001 §2.1: live stream migration, an exit's.
        let migrate = protocols
            .as_ref()
            .is_some_and(|p| p.supports_subver("BraidMigrate", 1));
        if migrate && !exit {
            return Err(invalid(
                "[braid_relay] proto advertises BraidMigrate=1, which only an exit answers".into(),
            ));
        }
        let scheduler = match relay.conflux_scheduler.as_deref() {
            None => None,
            Some(name) => Some(SchedulerKind::from_name(name).ok_or_else(|| {
                invalid(format!(
                    "[braid_relay] conflux_scheduler = {name:?}: not one of ecf, lowrtt, minrtt"
                ))
            })?),
        };
        let hostile = hostile(relay.hostile.as_deref()).map_err(invalid)?;
        if hostile.is_some() && !(advertises_conflux && exit) {
            return Err(invalid(
                "[braid_relay] hostile is a Conflux exit's: proto must advertise Conflux=1".into(),
            ));
        }
        let conflux = match (advertises_conflux, exit) {
            (true, true) => Some(ConfluxExitConfig {
                scheduler,
                resume: advertises_resume.then(ResumeParams::default),
                #[cfg(feature = "hostile")]
                hostile,
                ..ConfluxExitConfig::default()
            }),
            (true, false) => {
                return Err(invalid(
                    "[braid_relay] proto advertises Conflux=1, which only an exit answers".into(),
                ));
            }
            (false, _) if scheduler.is_some() => {
                return Err(invalid(
                    "[braid_relay] conflux_scheduler is set, but proto does not advertise Conflux=1"
                        .into(),
                ));
            }
            (false, _) => None,
        };
        let listen = relay
            .listen
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(relay.address), relay.or_port));
        let config = Self {
            nickname: relay.nickname,
            address: relay.address,
            or_port: relay.or_port,
            keys_dir,
            bandwidth_rate: relay.bandwidth_rate,
            bandwidth_burst: relay.bandwidth_burst.unwrap_or(relay.bandwidth_rate),
            proto: relay.proto,
            exit_policy,
            contact: relay.contact,
            hidden_service_dir: relay.hidden_service_dir,
            authorities,
            listen,
            exit,
            exit_connect_loopback_only: relay.exit_connect_loopback_only,
            max_dns_lookups,
            max_handshakes,
            max_mem_in_queues,
            kist: relay.kist.unwrap_or(true),
            kist_interval,
            metrics: relay.metrics,
            conflux,
            dir_cache: relay.dir_cache.unwrap_or(true),
            migrate,
        };
        // Every field the descriptor takes is checked now, not at the
        // first upload.
        config
            .descriptor_info(SystemTime::UNIX_EPOCH, 0, 0)
            .validate()
            .map_err(|e| invalid(format!("[braid_relay] {e}")))?;
        Ok(config)
    }

    /// The descriptor's fields, published at `published`, after `uptime`
    /// seconds of running with `observed` bytes/s observed.
    pub fn descriptor_info(
        &self,
        published: SystemTime,
        uptime: u64,
        observed: u32,
    ) -> DescriptorInfo {
        DescriptorInfo {
            nickname: self.nickname.clone(),
            address: self.address,
            or_port: self.or_port,
            bandwidth: Bandwidth {
                average: self.bandwidth_rate,
                burst: self.bandwidth_burst,
                observed,
            },
            platform: braid_platform(env!("CARGO_PKG_VERSION"), os_name()),
            proto: self.proto.clone(),
            exit_policy: self.exit_policy.clone(),
            contact: self.contact.clone(),
            hidden_service_dir: self.hidden_service_dir,
            tunnelled_dir_server: self.dir_cache,
            uptime,
            published,
        }
    }
}

/// The OS as C-tor names it in its platform line (`uname` style).
/// The `hostile` key: a behaviour of
/// [`braid_core::relay::node::hostile::Hostile`], with the `hostile`
/// feature only (tests).
#[cfg(feature = "hostile")]
fn hostile(
    name: Option<&str>,
) -> Result<Option<braid_core::relay::node::hostile::Hostile>, String> {
    use braid_core::relay::node::hostile::Hostile;
    let Some(name) = name else {
        return Ok(None);
    };
    match Hostile::from_name(name) {
        Some(h) => {
            tracing::warn!(
                "[braid_relay] hostile = {name:?}: this exit breaks the protocol on purpose"
            );
            Ok(Some(h))
        }
        None => {
            let names: Vec<_> = Hostile::ALL.iter().map(|h| h.name()).collect();
            Err(format!(
                "[braid_relay] hostile = {name:?}: not one of {}",
                names.join(", ")
            ))
        }
    }
}

/// The `hostile` key without the `hostile` feature: refused.
#[cfg(not(feature = "hostile"))]
fn hostile(name: Option<&str>) -> Result<Option<()>, String> {
    match name {
        None => Ok(None),
        Some(name) => Err(format!(
            "[braid_relay] hostile = {name:?}: this build has no hostile mode (a test-only \
             misbehaving exit: build braid-relay with the `hostile` feature)"
        )),
    }
}

fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        "openbsd" => "OpenBSD",
        "netbsd" => "NetBSD",
        "windows" => "Windows",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const AUTHORITIES: &str = r#"
[network]
enforce_distinct_subnets = false

[[authority]]
nickname = "auth0"
address = "127.0.0.1"
dir_port = 17001
v3ident = "DF42171FC3F4BE879C6F3F36C488ADFCE0C9D819"
"#;

    fn parse(relay: &str) -> Result<RelayConfig, ConfigError> {
        let text =
            format!("{AUTHORITIES}\n[[relay]]\nnickname = \"relay0\"\n\n[braid_relay]\n{relay}");
        RelayConfig::parse(&text, Path::new("/srv/braid/relay.toml"))
    }

    const MINIMAL: &str = r#"
nickname = "braidrelay0"
address = "127.0.0.1"
or_port = 9001
bandwidth_rate = 1000000
proto = "Link=4-5"
"#;

    #[test]
    fn a_network_file_plus_a_relay_table() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.authorities.len(), 1);
        assert_eq!(c.authorities[0].dir_addr.port(), 17001);
        assert_eq!(c.keys_dir, Path::new("/srv/braid/keys"));
        assert_eq!(c.bandwidth_burst, 1_000_000);
        assert!(!c.exit_policy.is_exit());
        let info = c.descriptor_info(SystemTime::now(), 5, 7);
        assert_eq!(
            info.platform,
            format!("Braid {} on Linux", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(info.bandwidth.observed, 7);
        info.validate().unwrap();

        let full = format!(
            "{MINIMAL}keys_dir = \"k\"\nbandwidth_burst = 5\nexit_policy = [\"accept *:80\"]\ncontact = \"me\"\nhidden_service_dir = true\n"
        );
        let c = parse(&full).unwrap();
        assert_eq!(c.keys_dir, Path::new("/srv/braid/k"));
        assert!(c.exit_policy.is_exit());
        assert_eq!(c.exit_policy.rules().len(), 2);
        assert!(c.hidden_service_dir);
        assert!(c.exit, "an accepting policy makes an exit");
        assert_eq!(c.listen, "127.0.0.1:9001".parse().unwrap());
    }

    #[test]
    fn run_options() {
        let c = parse(MINIMAL).unwrap();
        assert!(!c.exit);
        assert!(!c.exit_connect_loopback_only);
        assert_eq!(c.max_dns_lookups, DEFAULT_MAX_DNS_LOOKUPS);
        assert_eq!(c.max_mem_in_queues, DEFAULT_MAX_MEM_IN_QUEUES);
        assert_eq!(c.max_handshakes, DEFAULT_MAX_HANDSHAKES);
        assert_eq!(c.listen, "127.0.0.1:9001".parse().unwrap());
        assert!(c.kist);
        assert_eq!((c.kist_interval, c.metrics), (None, None));
        // A directory cache by default, as C-tor's DirCache 1.
        assert!(c.dir_cache);
        assert!(
            c.descriptor_info(SystemTime::now(), 0, 0)
                .tunnelled_dir_server
        );
        let c = parse(&format!("{MINIMAL}dir_cache = false\n")).unwrap();
        assert!(!c.dir_cache);
        assert!(
            !c.descriptor_info(SystemTime::now(), 0, 0)
                .tunnelled_dir_server
        );

        let text =
            format!("{MINIMAL}kist = false\nkist_interval_ms = 25\nmetrics = \"127.0.0.1:9035\"\n");
        let c = parse(&text).unwrap();
        assert!(!c.kist);
        assert_eq!(c.kist_interval, Some(Duration::from_millis(25)));
        assert_eq!(c.metrics, Some("127.0.0.1:9035".parse().unwrap()));

        let text = format!(
            "{MINIMAL}listen = \"0.0.0.0:9101\"\nexit = true\nexit_policy = [\"accept 127.0.0.0/8:*\"]\n\
             exit_connect_loopback_only = true\nmax_dns_lookups = 4\nmax_handshakes = 9\n\
             max_mem_in_queues = 5000000\n"
        );
        let c = parse(&text).unwrap();
        assert!(c.exit && c.exit_connect_loopback_only);
        assert_eq!((c.max_dns_lookups, c.max_handshakes), (4, 9));
        assert_eq!(c.max_mem_in_queues, 5_000_000);
        assert_eq!(c.listen, "0.0.0.0:9101".parse().unwrap());

        for (extra, needle) in [
            ("exit = true\n", "accepts nothing"),
            (
                "exit = false\nexit_policy = [\"accept *:80\"]\n",
                "exit = false",
            ),
            ("max_dns_lookups = 0\n", "max_dns_lookups"),
            ("max_handshakes = 0\n", "max_handshakes"),
            ("max_mem_in_queues = 0\n", "max_mem_in_queues"),
            ("listen = \"nowhere\"\n", "listen"),
            ("kist_interval_ms = 0\n", "kist_interval_ms"),
            ("kist_interval_ms = 101\n", "kist_interval_ms"),
            ("metrics = \"0.0.0.0:9035\"\n", "loopback"),
            ("kist = 1\n", "kist"),
            ("dir_cache = \"yes\"\n", "dir_cache"),
        ] {
            let e = parse(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    /// `hostile` is refused by name in a normal build, and taken only on
    /// a Conflux exit with the feature.
    #[test]
    fn hostile_is_a_test_feature() {
        let exit = "exit_policy = [\"accept 127.0.0.0/8:*\"]\n";
        let cfx = MINIMAL.replace("Link=4-5", "Conflux=1 FlowCtrl=1-2 Link=4-5");
        let text = format!("{cfx}{exit}hostile = \"seq-gap\"\n");
        #[cfg(not(feature = "hostile"))]
        {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains("no hostile mode"), "{e}");
        }
        #[cfg(feature = "hostile")]
        {
            use braid_core::relay::node::hostile::Hostile;
            let c = parse(&text).unwrap();
            assert_eq!(c.conflux.and_then(|x| x.hostile), Some(Hostile::SeqGap));
            let e = parse(&format!("{cfx}{exit}hostile = \"rude\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("not one of seq-gap"), "{e}");
            let e = parse(&format!("{MINIMAL}{exit}hostile = \"junk\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("Conflux=1"), "{e}");
        }
    }

    #[test]
    fn conflux_follows_what_proto_advertises() {
        let exit = "exit_policy = [\"accept 127.0.0.0/8:*\"]\n";
        let c = parse(&format!("{MINIMAL}{exit}")).unwrap();
        assert_eq!(c.conflux, None, "no Conflux=1, no Conflux exit");
        let cfx = MINIMAL.replace("Link=4-5", "Conflux=1 FlowCtrl=1-2 Link=4-5");
        let c = parse(&format!("{cfx}{exit}")).unwrap();
        assert_eq!(c.conflux, Some(ConfluxExitConfig::default()));
        let resume = MINIMAL.replace("Link=4-5", "BraidResume=1 Conflux=1 FlowCtrl=1-2 Link=4-5");
        let c = parse(&format!("{resume}{exit}")).unwrap();
        assert_eq!(
            c.conflux.and_then(|x| x.resume),
            Some(ResumeParams::default()),
            "BraidResume=1: resumption offered"
        );
        let migrate = MINIMAL.replace("Link=4-5", "BraidMigrate=1 Link=4-5");
        assert!(parse(&format!("{migrate}{exit}")).unwrap().migrate);
        assert!(!parse(&format!("{cfx}{exit}")).unwrap().migrate);
        let e = parse(&migrate).unwrap_err().to_string();
        assert!(e.contains("BraidMigrate=1, which only an exit"), "{e}");
        let lone = MINIMAL.replace("Link=4-5", "BraidResume=1 Link=4-5");
        let e = parse(&format!("{lone}{exit}")).unwrap_err().to_string();
        assert!(e.contains("without Conflux=1"), "{e}");
        let c = parse(&format!("{cfx}{exit}conflux_scheduler = \"lowrtt\"\n")).unwrap();
        assert_eq!(
            c.conflux.and_then(|x| x.scheduler),
            Some(SchedulerKind::LowRtt)
        );
        for (text, needle) in [
            (cfx.clone(), "only an exit"),
            (
                format!("{cfx}{exit}conflux_scheduler = \"fastest\"\n"),
                "conflux_scheduler",
            ),
            (
                format!("{MINIMAL}{exit}conflux_scheduler = \"ecf\"\n"),
                "Conflux=1",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn bad_files_are_explained() {
        for (relay, needle) in [
            ("nickname = \"x\"", "missing field"),
            (&MINIMAL.replace("braidrelay0", "bad-nick"), "nickname"),
            (&MINIMAL.replace("Link=4-5", "Link=x"), "proto"),
            (&MINIMAL.replace("1000000", "0"), "bandwidth"),
            (
                &format!("{MINIMAL}exit_policy = [\"allow *:*\"]"),
                "exit policy",
            ),
            (&format!("{MINIMAL}colour = 1"), "unknown field"),
        ] {
            let e = parse(relay).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let e = RelayConfig::parse(AUTHORITIES, Path::new("r.toml")).unwrap_err();
        assert!(e.to_string().contains("[braid_relay]"), "{e}");
        let text = format!("[braid_relay]\n{MINIMAL}");
        let e = RelayConfig::parse(&text, Path::new("r.toml")).unwrap_err();
        assert!(e.to_string().contains("[[authority]]"), "{e}");
    }
}
