//! The layout of a network: which node gets which ports and directories.
//!
//! Node `i` (authorities first, then relays, exits and the client) owns the
//! ten ports from `base_port + 10 * i`: +0 advertised ORPort, +1 DirPort,
//! +2 ControlPort, +3 real ORPort behind a shaper, +4 SocksPort. The file
//! server takes the first port after the last node.

use std::path::{Path, PathBuf};

use crate::config::NetworkConfig;
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

/// One tor process of the network.
#[derive(Debug, Clone)]
pub struct NodePlan {
    /// Its nickname: `auth0`, `relay3`, `exit1`, `client`.
    pub nickname: String,
    /// What it is.
    pub role: Role,
    /// `DIR/nodes/<nickname>`.
    pub dir: PathBuf,
    /// The ORPort listed in the consensus (0 for the client).
    pub or_port: u16,
    /// Where tor really listens when a shaper holds `or_port`.
    pub real_or_port: Option<u16>,
    /// The DirPort (authorities only).
    pub dir_port: Option<u16>,
    /// The ControlPort.
    pub control_port: u16,
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
    /// The file tor logs to (its standard output).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("tor.log")
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
        let mut ports = vec![(self.control_port, format!("{n} ControlPort"))];
        if self.is_relay() {
            ports.push((self.or_port, format!("{n} ORPort")));
        }
        if let Some(p) = self.real_or_port {
            ports.push((p, format!("{n} ORPort behind its shaper")));
        }
        if let Some(p) = self.dir_port {
            ports.push((p, format!("{n} DirPort")));
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
        let roles = std::iter::repeat_n(Role::Authority, config.authorities)
            .chain(std::iter::repeat_n(Role::Relay, config.relays))
            .chain(std::iter::repeat_n(Role::Exit, config.exits))
            .chain(std::iter::repeat_n(
                Role::Client,
                usize::from(config.client),
            ));
        let (mut n_auth, mut n_relay, mut n_exit) = (0, 0, 0);
        for (i, role) in roles.enumerate() {
            let base = config.base_port + 10 * u16::try_from(i).unwrap_or(u16::MAX / 10);
            let nickname = match role {
                Role::Authority => next_name("auth", &mut n_auth),
                Role::Relay => next_name("relay", &mut n_relay),
                Role::Exit => next_name("exit", &mut n_exit),
                Role::Client => "client".to_string(),
            };
            let (shape, bandwidth) = match role {
                Role::Relay | Role::Exit => {
                    let s = config.shape_for(&nickname, role == Role::Exit);
                    (s.to_spec()?, s.bandwidth_bytes()?)
                }
                Role::Authority | Role::Client => (None, None),
            };
            nodes.push(NodePlan {
                dir: config.dir.join("nodes").join(&nickname),
                nickname,
                role,
                or_port: if role == Role::Client { 0 } else { base },
                real_or_port: shape.is_some().then_some(base + 3),
                dir_port: (role == Role::Authority).then_some(base + 1),
                control_port: base + 2,
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

    /// Nodes of one role.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(move |n| n.role == role)
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
    }
}
