//! `DIR/network.toml`: what a launched network consists of, for the Braid
//! client, tests and benchmarks to load.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TestnetError;
use crate::plan::Software;
use crate::shaper::ShapeSpec;

/// File name of the manifest inside the network directory.
pub const MANIFEST_FILE: &str = "network.toml";

/// The whole network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Facts about the network as a whole.
    pub network: NetworkInfo,
    /// The directory authorities.
    #[serde(rename = "authority")]
    pub authorities: Vec<AuthorityEntry>,
    /// Every relay that is not an authority.
    #[serde(rename = "relay")]
    pub relays: Vec<RelayEntry>,
    /// The fallback directories a client asks over BEGIN_DIR before it
    /// knows a consensus (the authorities' DirPorts only when none
    /// answers): every relay that is not an authority, so a private network
    /// bootstraps the way the public one does.
    #[serde(rename = "fallback", default)]
    pub fallbacks: Vec<FallbackEntry>,
    /// The C-tor client, when one was started.
    pub client: Option<ClientEntry>,
    /// The loopback HTTP file server.
    pub fileserver: FileServerEntry,
}

/// Facts about the network as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The network directory.
    pub dir: PathBuf,
    /// `tor --version` of the relays.
    pub tor_version: String,
    /// Seconds since the Unix epoch when the network was ready.
    pub ready_at_unix: u64,
    /// Seconds from launch until the network was ready.
    pub startup_secs: f64,
    /// Path selection on this network must not require distinct /16s,
    /// since every relay is on 127.0.0.1 (tor's EnforceDistinctSubnets 0).
    pub enforce_distinct_subnets: bool,
}

/// A directory authority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorityEntry {
    /// Nickname.
    pub nickname: String,
    /// IPv4 address.
    pub address: Ipv4Addr,
    /// ORPort.
    pub or_port: u16,
    /// DirPort.
    pub dir_port: u16,
    /// v3 identity: fingerprint of the authority identity key, hex.
    pub v3ident: String,
    /// RSA identity fingerprint, hex.
    pub fingerprint: String,
    /// Ed25519 identity, base64.
    pub ed25519: String,
    /// ControlPort.
    pub control_port: u16,
}

/// A relay (not an authority).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayEntry {
    /// Nickname.
    pub nickname: String,
    /// What runs it: `"tor"` or `"braid"` (files written before Braid
    /// relays existed have no such key: C-tor).
    #[serde(default)]
    pub software: Software,
    /// RSA identity fingerprint, hex.
    pub fingerprint: String,
    /// Ed25519 identity, base64.
    pub ed25519: String,
    /// IPv4 address.
    pub address: Ipv4Addr,
    /// The ORPort in the consensus.
    pub or_port: u16,
    /// ControlPort (0 for a Braid relay, which has none).
    pub control_port: u16,
    /// Voted Guard.
    pub guard: bool,
    /// An exit.
    pub exit: bool,
    /// Link emulation in front of its ORPort.
    pub shape: Option<ShapeSpec>,
    /// tor's BandwidthRate, bytes per second.
    pub bandwidth_rate: Option<u64>,
    /// Where a Braid relay serves its Prometheus metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// A fallback directory: `[[fallback]]` in the network file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackEntry {
    /// Nickname.
    pub nickname: String,
    /// IPv4 address.
    pub address: Ipv4Addr,
    /// ORPort, where it answers BEGIN_DIR.
    pub or_port: u16,
    /// RSA identity fingerprint, hex: its channel must prove it.
    pub fingerprint: String,
    /// Ed25519 identity, base64: its channel must prove it too.
    pub ed25519: String,
}

impl FallbackEntry {
    /// The relay as a fallback.
    pub fn of(relay: &RelayEntry) -> Self {
        Self {
            nickname: relay.nickname.clone(),
            address: relay.address,
            or_port: relay.or_port,
            fingerprint: relay.fingerprint.clone(),
            ed25519: relay.ed25519.clone(),
        }
    }
}

/// The C-tor client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEntry {
    /// SOCKS5 port.
    pub socks_port: u16,
    /// ControlPort.
    pub control_port: u16,
    /// Its control cookie file.
    pub control_cookie: PathBuf,
}

/// The file server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileServerEntry {
    /// Where it listens.
    pub address: SocketAddr,
}

impl Manifest {
    /// Reads `DIR/network.toml`.
    pub fn load(dir: &Path) -> Result<Manifest, TestnetError> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TestnetError::NoNetwork(dir.to_path_buf()));
            }
            Err(e) => return Err(TestnetError::io("reading", &path, e)),
        };
        toml::from_str(&text).map_err(|e| TestnetError::Manifest {
            path,
            detail: e.message().to_string(),
        })
    }

    /// Writes `DIR/network.toml` atomically (temporary file, then rename).
    pub fn store(&self, dir: &Path) -> Result<(), TestnetError> {
        let path = dir.join(MANIFEST_FILE);
        let text = toml::to_string_pretty(self).map_err(|e| TestnetError::Manifest {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let header = "# A private Tor network launched by `braid testnet up`.\n\
                      # Load it with `braid ... --network` or braid_testnet::Manifest::load.\n\n";
        std::fs::write(&tmp, format!("{header}{text}"))
            .map_err(|e| TestnetError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| TestnetError::io("renaming", &path, e))
    }

    /// The client's SOCKS address.
    pub fn client_socks(&self) -> Option<SocketAddr> {
        self.client
            .as_ref()
            .map(|c| SocketAddr::from((Ipv4Addr::LOCALHOST, c.socks_port)))
    }

    /// A relay (or authority) nickname by RSA fingerprint.
    pub fn nickname_of(&self, fingerprint: &str) -> Option<&str> {
        let fp = fingerprint.trim_start_matches('$').to_ascii_uppercase();
        self.relays
            .iter()
            .find(|r| r.fingerprint == fp)
            .map(|r| r.nickname.as_str())
            .or_else(|| {
                self.authorities
                    .iter()
                    .find(|a| a.fingerprint == fp)
                    .map(|a| a.nickname.as_str())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut manifest = Manifest {
            network: NetworkInfo {
                dir: "/tmp/net".into(),
                tor_version: "0.4.9.11".into(),
                ready_at_unix: 1,
                startup_secs: 15.5,
                enforce_distinct_subnets: false,
            },
            authorities: vec![AuthorityEntry {
                nickname: "auth0".into(),
                address: Ipv4Addr::LOCALHOST,
                or_port: 17000,
                dir_port: 17001,
                v3ident: "A".repeat(40),
                fingerprint: "B".repeat(40),
                ed25519: "x".into(),
                control_port: 17002,
            }],
            relays: vec![RelayEntry {
                nickname: "exit0".into(),
                software: Software::Tor,
                fingerprint: "C".repeat(40),
                ed25519: "y".into(),
                address: Ipv4Addr::LOCALHOST,
                or_port: 17080,
                control_port: 17082,
                guard: false,
                exit: true,
                shape: Some(ShapeSpec {
                    rate_in: Some(1),
                    rate_out: None,
                    delay_in_us: 10,
                    delay_out_us: 0,
                }),
                bandwidth_rate: None,
                metrics: None,
            }],
            fallbacks: Vec::new(),
            client: Some(ClientEntry {
                socks_port: 17114,
                control_port: 17112,
                control_cookie: "/tmp/c".into(),
            }),
            fileserver: FileServerEntry {
                address: "127.0.0.1:17120".parse().unwrap(),
            },
        };
        manifest.fallbacks = manifest.relays.iter().map(FallbackEntry::of).collect();
        let dir = std::env::temp_dir().join(format!("braid-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        manifest.store(&dir).unwrap();
        let back = Manifest::load(&dir).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(
            back.nickname_of(&format!("${}", "c".repeat(40))),
            Some("exit0")
        );
        assert_eq!(back.nickname_of(&"B".repeat(40)), Some("auth0"));
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        assert!(text.contains("software = \"tor\""), "{text}");
        assert!(
            text.contains(
                "[[fallback]]\nnickname = \"exit0\"\naddress = \"127.0.0.1\"\nor_port = 17080\n"
            ),
            "{text}"
        );
        // A file from before Braid relays: no `software` key means C-tor.
        std::fs::write(
            dir.join(MANIFEST_FILE),
            text.replace("software = \"tor\"\n", ""),
        )
        .unwrap();
        assert_eq!(Manifest::load(&dir).unwrap(), manifest);
        let mut braid = manifest.clone();
        braid.relays[0].software = Software::Braid;
        braid.store(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        assert!(text.contains("software = \"braid\""), "{text}");
        assert_eq!(Manifest::load(&dir).unwrap(), braid);
        std::fs::write(dir.join(MANIFEST_FILE), "network = 3").unwrap();
        assert!(Manifest::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            Manifest::load(&dir),
            Err(TestnetError::NoNetwork(_))
        ));
    }
}
