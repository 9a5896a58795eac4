//! torrc files for every role of the private network.
//!
//! The options follow `shared/notes/ctor-private-network.md`: a testing
//! network with short voting intervals, everything bound to 127.0.0.1,
//! exits that accept loopback (and whose outgoing connections are bound to
//! loopback, so nothing else is ever reached), Conflux and congestion
//! control on (both default on in tor 0.4.9).

use std::fmt::Write as _;

use crate::plan::{NodePlan, Role};

/// One `DirAuthority` line's worth of facts.
#[derive(Debug, Clone)]
pub struct AuthorityLine {
    /// The authority's nickname.
    pub nickname: String,
    /// Its ORPort.
    pub or_port: u16,
    /// Its DirPort.
    pub dir_port: u16,
    /// Its v3 identity (authority certificate fingerprint).
    pub v3ident: String,
    /// Its RSA identity fingerprint.
    pub fingerprint: String,
}

/// What every torrc needs to know about the rest of the network.
#[derive(Debug, Clone)]
pub struct TorrcContext {
    /// All authorities.
    pub authorities: Vec<AuthorityLine>,
    /// Fingerprints of the relays the authorities vote Guard.
    pub guard_fingerprints: Vec<String>,
    /// Fingerprints of the relays the authorities vote Exit.
    pub exit_fingerprints: Vec<String>,
    /// Fingerprints of the relays the authorities vote HSDir: the C-tor
    /// ones (authorities included); a Braid relay serves no onion-service
    /// descriptors.
    pub hsdir_fingerprints: Vec<String>,
    /// tor's log level.
    pub log_level: String,
    /// The client's `ConfluxClientUX`.
    pub client_conflux_ux: Option<String>,
    /// The client's `ConfluxEnabled`.
    pub client_conflux: bool,
    /// Extra lines for the client's torrc.
    pub client_extra: Vec<String>,
    /// The authorities' `ConsensusParams` (`name=value`, space-separated).
    pub consensus_params: Option<String>,
    /// The authorities' bandwidth file (measured bandwidths).
    pub bandwidth_file: Option<std::path::PathBuf>,
}

/// Renders the torrc of `node`.
pub fn render(node: &NodePlan, ctx: &TorrcContext) -> String {
    let mut t = String::new();
    let data = node.data_dir();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line(format!(
        "# {} ({:?}), written by braid testnet",
        node.nickname, node.role
    ));
    line("TestingTorNetwork 1".into());
    line(format!("DataDirectory {}", data.display()));
    line(format!("Nickname {}", node.nickname));
    line(format!("Log {} stdout", ctx.log_level));
    line("RunAsDaemon 0".into());
    line("SafeLogging 0".into());
    // Millisecond timestamps, so bootstrap phases can be timed from the log.
    line("LogTimeGranularity 1".into());
    line("ShutdownWaitLength 0".into());
    line("Address 127.0.0.1".into());
    line("AddressDisableIPv6 1".into());
    line("OutboundBindAddress 127.0.0.1".into());
    line(format!("ControlPort 127.0.0.1:{}", node.control_port));
    line("CookieAuthentication 1".into());
    line("ContactInfo braid-testnet".into());
    for a in &ctx.authorities {
        line(format!(
            "DirAuthority {} orport={} v3ident={} 127.0.0.1:{} {}",
            a.nickname, a.or_port, a.v3ident, a.dir_port, a.fingerprint
        ));
    }
    match node.role {
        Role::Client => client(node, ctx, &mut line),
        Role::Authority | Role::Relay | Role::Exit => relay(node, ctx, &mut line),
    }
    t
}

fn client(node: &NodePlan, ctx: &TorrcContext, line: &mut impl FnMut(String)) {
    if let Some(p) = node.socks_port {
        line(format!("SocksPort 127.0.0.1:{p}"));
    }
    line("ClientOnly 1".into());
    line("PathsNeededToBuildCircuits 0.25".into());
    // All relays share 127.0.0.1; /16 separation would forbid every path.
    line("EnforceDistinctSubnets 0".into());
    line(format!("ConfluxEnabled {}", u8::from(ctx.client_conflux)));
    if let Some(ux) = &ctx.client_conflux_ux {
        line(format!("ConfluxClientUX {ux}"));
    }
    for extra in &ctx.client_extra {
        line(extra.clone());
    }
}

fn relay(node: &NodePlan, ctx: &TorrcContext, line: &mut impl FnMut(String)) {
    line("SocksPort 0".into());
    line("AssumeReachable 1".into());
    match node.real_or_port {
        // A shaper listens on the advertised port and forwards to the real
        // one; the relay's own outgoing OR connections go through the same
        // shaper as an HTTP CONNECT proxy, so both directions of every
        // channel share its limits.
        Some(real) => {
            line(format!("ORPort 127.0.0.1:{} NoListen", node.or_port));
            line(format!("ORPort 127.0.0.1:{real} NoAdvertise"));
            line(format!("HTTPSProxy 127.0.0.1:{}", node.or_port));
        }
        None => line(format!("ORPort 127.0.0.1:{}", node.or_port)),
    }
    if let Some(bw) = node.bandwidth {
        line(format!("BandwidthRate {bw} bytes"));
        line(format!("BandwidthBurst {bw} bytes"));
    }
    if node.role == Role::Exit {
        line("ExitRelay 1".into());
        line("ExitPolicyRejectPrivate 0".into());
        line("ExitPolicyRejectLocalInterfaces 0".into());
        // A loopback-only policy is summarised as reject-all in the
        // microdescriptor, so accept the rest too; outgoing exit
        // connections are bound to 127.0.0.1 and fail at once elsewhere.
        line("ExitPolicy accept 127.0.0.0/8:*".into());
        line("ExitPolicy accept *:*".into());
        line("OutboundBindAddressExit 127.0.0.1".into());
        line(format!(
            "ServerDNSResolvConfFile {}",
            node.dir.join("resolv.conf").display()
        ));
        line("ServerDNSDetectHijacking 0".into());
        line("ServerDNSAllowBrokenConfig 1".into());
    } else {
        line("ExitRelay 0".into());
        line("ExitPolicy reject *:*".into());
    }
    if node.role == Role::Authority {
        if let Some(p) = node.dir_port {
            line(format!("DirPort 127.0.0.1:{p}"));
        }
        for opt in [
            "AuthoritativeDirectory 1",
            "V3AuthoritativeDirectory 1",
            "TestingV3AuthInitialVotingInterval 5",
            "V3AuthVotingInterval 10",
            "TestingV3AuthInitialVoteDelay 2",
            "TestingV3AuthInitialDistDelay 2",
            "V3AuthVoteDelay 2",
            "V3AuthDistDelay 2",
            "V3AuthNIntervalsValid 2",
            "TestingMinExitFlagThreshold 0",
            "TestingMinFastFlagThreshold 0",
            "TestingDirAuthVoteGuardIsStrict 1",
            "TestingDirAuthVoteExitIsStrict 1",
            "TestingDirAuthVoteHSDirIsStrict 1",
            "AuthDirVoteStableGuaranteeMinUptime 0",
            "AuthDirMaxServersPerAddr 0",
        ] {
            line(opt.to_string());
        }
        line(format!(
            "TestingDirAuthVoteGuard {}",
            ctx.guard_fingerprints.join(",")
        ));
        line(format!(
            "TestingDirAuthVoteExit {}",
            ctx.exit_fingerprints.join(",")
        ));
        line(format!(
            "TestingDirAuthVoteHSDir {}",
            ctx.hsdir_fingerprints.join(",")
        ));
        if let Some(file) = &ctx.bandwidth_file {
            line(format!("V3BandwidthsFile {}", file.display()));
        }
        if let Some(params) = &ctx.consensus_params {
            line(format!("ConsensusParams {params}"));
        }
    }
}

/// Default measured bandwidth of a relay without link emulation, in
/// kilobytes per second.
pub const DEFAULT_RELAY_KB: u64 = 10_000;
/// Measured bandwidth of an authority: low, so that clients seldom put
/// them on paths (they carry no link emulation).
pub const AUTHORITY_KB: u64 = 100;

/// The measured bandwidth the authorities vote for a node, in kilobytes per
/// second: the slowest of its shaper rates and BandwidthRate, else a
/// default. Without such a file the authorities would vote the relays'
/// self-observed bandwidths, which on an idle test network are a few kB/s
/// and random, so the Fast flag flaps and the bandwidth weights are
/// arbitrary.
pub fn measured_kb(node: &NodePlan) -> u64 {
    if node.role == Role::Authority {
        return AUTHORITY_KB;
    }
    let caps = [
        node.shape.and_then(|s| s.rate_in),
        node.shape.and_then(|s| s.rate_out),
        node.bandwidth,
    ];
    caps.iter()
        .flatten()
        .min()
        .map_or(DEFAULT_RELAY_KB, |bytes| (bytes / 1000).max(1))
}

/// A bandwidth file (bandwidth-file-spec, version 1.0.0 form) listing
/// `(fingerprint, kilobytes per second)` for the authorities to vote.
pub fn bandwidth_file(now_unix: u64, relays: &[(String, u64)]) -> String {
    let mut s = format!("{now_unix}\n");
    for (fp, kb) in relays {
        let _ = writeln!(s, "node_id=${fp} bw={kb}");
    }
    s
}

/// The resolv.conf an exit uses: only the loopback resolver.
pub fn exit_resolv_conf() -> String {
    let mut s = String::new();
    let _ = writeln!(s, "nameserver 127.0.0.1");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NetworkConfig, RelayShape};
    use crate::plan::Plan;

    fn ctx() -> TorrcContext {
        TorrcContext {
            authorities: vec![AuthorityLine {
                nickname: "auth0".into(),
                or_port: 17000,
                dir_port: 17001,
                v3ident: "A".repeat(40),
                fingerprint: "B".repeat(40),
            }],
            guard_fingerprints: vec!["C".repeat(40)],
            exit_fingerprints: vec!["D".repeat(40)],
            hsdir_fingerprints: vec!["B".repeat(40), "E".repeat(40)],
            log_level: "notice".into(),
            client_conflux_ux: Some("throughput".into()),
            client_conflux: true,
            client_extra: vec!["EntryNodes relay0,relay1".into()],
            consensus_params: Some("cfx_num_legs_set=3".into()),
            bandwidth_file: Some("/tmp/net/bwfile".into()),
        }
    }

    #[test]
    fn roles_get_their_options() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.shapes.insert(
            "relay0".into(),
            RelayShape {
                rate: Some("1MiB".into()),
                bandwidth: Some("1MB".into()),
                ..RelayShape::default()
            },
        );
        let plan = Plan::new(&config).unwrap();
        let get = |name: &str| {
            let node = plan.nodes.iter().find(|n| n.nickname == name).unwrap();
            render(node, &ctx())
        };
        let auth = get("auth0");
        assert!(auth.contains("V3AuthoritativeDirectory 1"));
        assert!(auth.contains("DirPort 127.0.0.1:17001"));
        assert!(auth.contains(&format!("TestingDirAuthVoteExit {}", "D".repeat(40))));
        assert!(auth.contains(&format!(
            "TestingDirAuthVoteHSDir {},{}\n",
            "B".repeat(40),
            "E".repeat(40)
        )));
        assert!(auth.contains("TestingDirAuthVoteHSDirIsStrict 1"));
        assert!(auth.contains("V3BandwidthsFile /tmp/net/bwfile"));
        assert!(auth.contains("ConsensusParams cfx_num_legs_set=3\n"));
        let exit = get("exit0");
        assert!(exit.contains("ExitPolicy accept 127.0.0.0/8:*"));
        assert!(exit.contains("OutboundBindAddressExit 127.0.0.1"));
        assert!(!exit.contains("AuthoritativeDirectory"));
        let shaped = get("relay0");
        assert!(shaped.contains("ORPort 127.0.0.1:17030 NoListen"));
        assert!(shaped.contains("ORPort 127.0.0.1:17033 NoAdvertise"));
        assert!(shaped.contains("HTTPSProxy 127.0.0.1:17030"));
        assert!(shaped.contains("BandwidthRate 1000000 bytes"));
        assert!(shaped.contains("ExitPolicy reject *:*"));
        let plain = get("relay1");
        assert!(plain.contains("ORPort 127.0.0.1:17040\n"));
        assert!(!plain.contains("HTTPSProxy"));
        let client = get("client");
        assert!(client.contains("SocksPort 127.0.0.1:"));
        assert!(client.contains("ConfluxEnabled 1"));
        assert!(client.contains("ConfluxClientUX throughput"));
        assert!(client.contains("\nEntryNodes relay0,relay1\n"));
        assert!(!client.contains("ConsensusParams"));
        assert!(!exit.contains("EntryNodes") && !exit.contains("ConsensusParams"));
        assert!(!client.contains("ORPort"));
        assert!(!shaped.contains("V3BandwidthsFile"));
        for text in [&auth, &exit, &shaped, &client] {
            assert!(text.contains("DirAuthority auth0 orport=17000"));
            assert!(text.contains("TestingTorNetwork 1"));
        }
    }
}

#[cfg(test)]
mod bandwidth_tests {
    use super::*;
    use crate::config::{NetworkConfig, RelayShape};
    use crate::plan::Plan;

    #[test]
    fn measured_bandwidths_follow_caps() {
        let mut config = NetworkConfig::new("/tmp/net", "braid");
        config.shapes.insert(
            "relay0".into(),
            RelayShape {
                rate: Some("2MiB".into()),
                rate_out: Some("500KB".into()),
                ..RelayShape::default()
            },
        );
        config.shapes.insert(
            "relay1".into(),
            RelayShape {
                bandwidth: Some("1MB".into()),
                ..RelayShape::default()
            },
        );
        let plan = Plan::new(&config).unwrap();
        let kb = |name: &str| measured_kb(plan.nodes.iter().find(|n| n.nickname == name).unwrap());
        assert_eq!(kb("relay0"), 500);
        assert_eq!(kb("relay1"), 1000);
        assert_eq!(kb("relay2"), DEFAULT_RELAY_KB);
        assert_eq!(kb("auth0"), AUTHORITY_KB);
        let file = bandwidth_file(1_700_000_000, &[("AB".into(), 5), ("CD".into(), 7)]);
        assert_eq!(file, "1700000000\nnode_id=$AB bw=5\nnode_id=$CD bw=7\n");
    }
}
