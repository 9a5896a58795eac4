//! The layout of a network: which node gets which ports and directories.
//!
//! Node `i` (authorities first, then relays, exits, Braid relays, Braid
//! exits and the client) owns the ten ports from `base_port + 10 * i`: +0
//! advertised ORPort, +1 DirPort, +2 ControlPort, +3 real ORPort behind a
//! shaper, +4 SocksPort. A Braid relay uses only its ORPort. The file
//! server takes the first port after the last node.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{BRAID_EXIT_PREFIX, BRAID_RELAY_PREFIX, NetworkConfig};
use crate::error::TestnetError;
use crate::shaper::ShapeSpec;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A v3 directory authority (also a non-exit relay).
    Authority,
    /// A non-exit relay, voted Guard.
    Relay,
    /// An exit relay accepting 127.0.0.0/8.
    Exit,
    /// The C-tor client.
    Client,
}

/// Which program runs a relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Software {
    /// C-tor (`tor -f torrc`).
    #[default]
    Tor,
    /// Braid (`braid relay run --config relay.toml`).
    Braid,
}

/// One process of the network.
#[derive(Debug, Clone)]
pub struct NodePlan {
    /// Its nickname: `auth0`, `relay3`, `exit1`, `braidrelay0`,
    /// `braidexit0`, `client`.
    pub nickname: String,
    /// What it is.
    pub role: Role,
    /// What runs it (authorities and the client are always C-tor).
    pub software: Software,
    /// `DIR/nodes/<nickname>`.
    pub dir: PathBuf,
    /// The ORPort listed in the consensus (0 for the client).
    pub or_port: u16,
    /// Where tor really listens when a shaper holds `or_port`.
    pub real_or_port: Option<u16>,
    /// The DirPort (authorities only).
    pub dir_port: Option<u16>,
    /// The ControlPort (0 for a Braid relay, which has none).
    pub control_port: u16,
    /// A Braid relay's Prometheus listener (in the ControlPort's slot),
    /// which the launcher reads to see the consensus the relay serves.
    pub metrics_port: Option<u16>,
    /// The SocksPort (client only).
    pub socks_port: Option<u16>,
    /// Link emulation in front of the ORPort.
    pub shape: Option<ShapeSpec>,
    /// tor's BandwidthRate/Burst, bytes per second.
    pub bandwidth: Option<u64>,
}

impl NodePlan {
    /// tor's DataDirectory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// The file the node logs to (its standard output and error):
    /// `tor.log`, or `braid.log` for a Braid relay.
    pub fn log_path(&self) -> PathBuf {
        match self.software {
            Software::Tor => self.dir.join("tor.log"),
            Software::Braid => self.dir.join("braid.log"),
        }
    }
    /// A Braid relay's configuration file.
    pub fn relay_toml_path(&self) -> PathBuf {
        self.dir.join("relay.toml")
    }
    /// Where `tor --list-fingerprint` leaves the relay's keys (C-tor's
    /// `keys/` directory, which a Braid relay reads as it is).
    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir().join("keys")
    }
    /// The torrc.
    pub fn torrc_path(&self) -> PathBuf {
        self.dir.join("torrc")
    }
    /// The control port's authentication cookie.
    pub fn cookie_path(&self) -> PathBuf {
        self.data_dir().join("control_auth_cookie")
    }
    /// Whether it is in the consensus.
    pub fn is_relay(&self) -> bool {
        self.role != Role::Client
    }
    /// Every port it needs, with what for.
    pub fn ports(&self) -> Vec<(u16, String)> {
        let n = &self.nickname;
        let mut ports = Vec::new();
        if self.software == Software::Tor {
            ports.push((self.control_port, format!("{n} ControlPort")));
        }
        if self.is_relay() {
            ports.push((self.or_port, format!("{n} ORPort")));
        }
        if let Some(p) = self.real_or_port {
            ports.push((p, format!("{n} ORPort behind its shaper")));
        }
        if let Some(p) = self.dir_port {
            ports.push((p, format!("{n} DirPort")));
        }
        if let Some(p) = self.metrics_port {
            ports.push((p, format!("{n} metrics")));
        }
        if let Some(p) = self.socks_port {
            ports.push((p, format!("{n} SocksPort")));
        }
        ports
    }
}

/// The whole layout.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every node, authorities first.
    pub nodes: Vec<NodePlan>,
    /// The file server's port.
    pub fileserver_port: u16,
}

impl Plan {
    /// Lays out `config`; validates it first.
    pub fn new(config: &NetworkConfig) -> Result<Plan, TestnetError> {
        config.validate()?;
        let mut nodes = Vec::new();
        let (tor, braid) = (Software::Tor, Software::Braid);
        let roles = std::iter::repeat_n((Role::Authority, tor), config.authorities)
            .chain(std::iter::repeat_n((Role::Relay, tor), config.relays))
            .chain(std::iter::repeat_n((Role::Exit, tor), config.exits))
            .chain(std::iter::repeat_n(
                (Role::Relay, braid),
                config.braid_relays,
            ))
            .chain(std::iter::repeat_n((Role::Exit, braid), config.braid_exits))
            .chain(std::iter::repeat_n(
                (Role::Client, tor),
                usize::from(config.client),
            ));
        let (mut n_auth, mut n_relay, mut n_exit) = (0, 0, 0);
        let (mut n_braid_relay, mut n_braid_exit) = (0, 0);
        for (i, (role, software)) in roles.enumerate() {
            let base = config.base_port + 10 * u16::try_from(i).unwrap_or(u16::MAX / 10);
            let nickname = match (role, software) {
                (Role::Authority, _) => next_name("auth", &mut n_auth),
                (Role::Relay, Software::Tor) => next_name("relay", &mut n_relay),
                (Role::Exit, Software::Tor) => next_name("exit", &mut n_exit),
                (Role::Relay, Software::Braid) => next_name(BRAID_RELAY_PREFIX, &mut n_braid_relay),
                (Role::Exit, Software::Braid) => next_name(BRAID_EXIT_PREFIX, &mut n_braid_exit),
                (Role::Client, _) => "client".to_string(),
            };
            let (shape, bandwidth) = match (role, software) {
                (Role::Relay | Role::Exit, Software::Tor) => {
                    let s = config.shape_for(&nickname, role == Role::Exit);
                    (s.to_spec()?, s.bandwidth_bytes()?)
                }
                // Validated: a Braid relay's own entry holds at most a
                // bandwidth.
                (Role::Relay | Role::Exit, Software::Braid) => {
                    (None, config.braid_shape_for(&nickname).bandwidth_bytes()?)
                }
                (Role::Authority | Role::Client, _) => (None, None),
            };
            nodes.push(NodePlan {
                dir: config.dir.join("nodes").join(&nickname),
                nickname,
                role,
                software,
                or_port: if role == Role::Client { 0 } else { base },
                real_or_port: shape.is_some().then_some(base + 3),
                dir_port: (role == Role::Authority).then_some(base + 1),
                control_port: if software == Software::Braid {
                    0
                } else {
                    base + 2
                },
                metrics_port: (software == Software::Braid && role != Role::Client)
                    .then_some(base + 2),
                socks_port: (role == Role::Client).then_some(base + 4),
                shape,
                bandwidth,
            });
        }
        let fileserver_port = config.base_port + 10 * u16::try_from(nodes.len()).unwrap_or(0);
        Ok(Plan {
            nodes,
            fileserver_port,
        })
    }

    /// Nodes of one role (C-tor and Braid).
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// Nodes run by one program.
    pub fn with_software(&self, software: Software) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(move |n| n.software == software)
    }

    /// Every port the network needs.
    pub fn ports(&self) -> Vec<(u16, String)> {
        let mut ports: Vec<_> = self.nodes.iter().flat_map(NodePlan::ports).collect();
        ports.push((self.fileserver_port, "the file server".to_string()));
        ports
    }

    /// The network directory's `nodes` folder.
    pub fn nodes_dir(dir: &Path) -> PathBuf {
        dir.join("nodes")
    }
}

fn next_name(prefix: &str, counter: &mut usize) -> String {
    let name = format!("{prefix}{counter}");
    *counter += 1;
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayShape;

    #[test]
    fn layout_has_distinct_ports_and_names() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.shapes.insert(
            "relay1".into(),
            RelayShape {
                rate: Some("1MiB".into()),
                ..RelayShape::default()
            },
        );
        let plan = Plan::new(&config).unwrap();
        assert_eq!(plan.nodes.len(), 3 + 5 + 3 + 1);
        let ports = plan.ports();
        let mut unique: Vec<u16> = ports.iter().map(|p| p.0).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        let relay1 = plan.nodes.iter().find(|n| n.nickname == "relay1").unwrap();
        assert!(relay1.shape.is_some() && relay1.real_or_port.is_some());
        let relay0 = plan.nodes.iter().find(|n| n.nickname == "relay0").unwrap();
        assert!(relay0.shape.is_none() && relay0.real_or_port.is_none());
        assert_eq!(plan.with_role(Role::Exit).count(), 3);
        assert_eq!(plan.with_role(Role::Client).count(), 1);
        assert_eq!(plan.with_software(Software::Braid).count(), 0);
    }

    #[test]
    fn braid_relays_follow_the_ctor_ones() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.relays = 4;
        config.exits = 1;
        config.braid_relays = 2;
        config.braid_exits = 1;
        config.shapes.insert(
            "braidexit0".into(),
            RelayShape {
                bandwidth: Some("2MB".into()),
                ..RelayShape::default()
            },
        );
        let plan = Plan::new(&config).unwrap();
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.nickname.as_str()).collect();
        assert_eq!(
            names,
            [
                "auth0",
                "auth1",
                "auth2",
                "relay0",
                "relay1",
                "relay2",
                "relay3",
                "exit0",
                "braidrelay0",
                "braidrelay1",
                "braidexit0",
                "client"
            ]
        );
        let braid: Vec<&NodePlan> = plan.with_software(Software::Braid).collect();
        assert_eq!(braid.len(), 3);
        let [r0, r1, e0] = braid.as_slice() else {
            panic!("{braid:?}");
        };
        assert_eq!(
            (r0.role, r1.role, e0.role),
            (Role::Relay, Role::Relay, Role::Exit)
        );
        // Node 8 of the block: its ORPort, metrics in the ControlPort's
        // slot, no shaper.
        assert_eq!(r0.or_port, 17080);
        assert_eq!((r0.control_port, r0.metrics_port), (0, Some(17082)));
        assert!(r0.shape.is_none() && r0.real_or_port.is_none());
        assert_eq!(
            r0.ports(),
            vec![
                (17080, "braidrelay0 ORPort".to_string()),
                (17082, "braidrelay0 metrics".to_string())
            ]
        );
        assert_eq!(e0.bandwidth, Some(2_000_000));
        assert!(r0.log_path().ends_with("nodes/braidrelay0/braid.log"));
        assert!(e0.keys_dir().ends_with("nodes/braidexit0/data/keys"));
        assert_eq!(plan.with_role(Role::Relay).count(), 6);
        assert_eq!(plan.with_role(Role::Exit).count(), 2);
        let client = plan.with_role(Role::Client).next().unwrap();
        assert_eq!(client.socks_port, Some(17114));
        assert_eq!(plan.fileserver_port, 17120);
        let ports = plan.ports();
        let mut unique: Vec<u16> = ports.iter().map(|p| p.0).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
    }
}
