//! What network to launch: sizes, ports, link emulation.
//!
//! A [`NetworkConfig`] comes from command-line flags, from a TOML scenario
//! file ([`NetworkConfig::apply_scenario`]), or both. A scenario file looks
//! like this:
//!
//! ```toml
//! relays = 5          # non-exit relays (all get the Guard flag)
//! exits = 3
//! base_port = 17000
//!
//! # Link emulation. Keys are a nickname (relay0, exit1, ...) or a group:
//! # "relays" (every non-exit relay), "exits", "all". A nickname wins over
//! # a group.
//! [shape.relays]
//! rate = "1 MiB"      # per direction, per second (rate_in / rate_out)
//! delay = "10ms"      # one way, per direction (delay_in / delay_out)
//!
//! [shape.relay1]
//! rate = "512 KiB"
//! delay = "40ms"
//! bandwidth = "1 MB"  # tor's own BandwidthRate and BandwidthBurst
//!
//! # Extra lines for the C-tor client's torrc, e.g. to pin its paths.
//! client_torrc = ["EntryNodes relay0,relay1", "MiddleNodes relay2,relay3"]
//!
//! # Consensus parameters the authorities vote (tor's ConsensusParams);
//! # e.g. C-tor clients build Conflux sets of cfx_num_legs_set legs.
//! [consensus_params]
//! cfx_num_legs_set = 3
//!
//! # Braid relays beside the C-tor ones (`braid relay run`): non-exits
//! # braidrelay0.. (voted Guard) and exits braidexit0.. Link emulation
//! # groups (relays, exits, all) apply to C-tor relays only; a Braid relay
//! # takes a `bandwidth` under its own nickname, nothing else.
//! braid_relays = 1
//! braid_exits = 1
//! # The Braid exits' policy (torrc syntax); whatever it says, a Braid exit
//! # of the testnet connects only to 127.0.0.0/8.
//! braid_exit_policy = ["reject 127.0.0.1:9", "accept 127.0.0.0/8:*", "accept *:*"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::TestnetError;
use crate::shaper::ShapeSpec;

/// Link emulation for one relay or group of relays, as the user writes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayShape {
    /// Rate cap in both directions ("1 MiB", "800KB", bytes per second).
    pub rate: Option<String>,
    /// Rate cap toward the relay; overrides `rate`.
    pub rate_in: Option<String>,
    /// Rate cap from the relay; overrides `rate`.
    pub rate_out: Option<String>,
    /// One-way delay in both directions ("10ms").
    pub delay: Option<String>,
    /// Delay toward the relay; overrides `delay`.
    pub delay_in: Option<String>,
    /// Delay from the relay; overrides `delay`.
    pub delay_out: Option<String>,
    /// tor's own `BandwidthRate`/`BandwidthBurst` for the relay.
    pub bandwidth: Option<String>,
}

impl RelayShape {
    /// Parses the command-line form `NAME:RATE[:DELAY]`, e.g.
    /// `relays:1MiB:10ms` or `relay2:512KiB:40ms`. `-` leaves the rate
    /// unlimited (`exit0:-:20ms`).
    pub fn parse_flag(flag: &str) -> Result<(String, RelayShape), TestnetError> {
        let mut parts = flag.split(':');
        let (Some(name), Some(rate)) = (parts.next(), parts.next()) else {
            return Err(TestnetError::Config(format!(
                "--shape {flag}: expected NAME:RATE[:DELAY], e.g. relays:1MiB:10ms"
            )));
        };
        let delay = parts.next();
        if parts.next().is_some() || name.is_empty() {
            return Err(TestnetError::Config(format!(
                "--shape {flag}: expected NAME:RATE[:DELAY]"
            )));
        }
        let shape = RelayShape {
            rate: (rate != "-").then(|| rate.to_string()),
            delay: delay.map(str::to_string),
            ..RelayShape::default()
        };
        shape.to_spec()?;
        Ok((name.to_string(), shape))
    }

    /// Resolves the shaper's settings; `None` when nothing is shaped.
    pub fn to_spec(&self) -> Result<Option<ShapeSpec>, TestnetError> {
        let rate_in = self.rate_in.as_ref().or(self.rate.as_ref());
        let rate_out = self.rate_out.as_ref().or(self.rate.as_ref());
        let delay_in = self.delay_in.as_ref().or(self.delay.as_ref());
        let delay_out = self.delay_out.as_ref().or(self.delay.as_ref());
        let spec = ShapeSpec {
            rate_in: rate_in.map(|r| parse_rate(r)).transpose()?,
            rate_out: rate_out.map(|r| parse_rate(r)).transpose()?,
            delay_in_us: delay_in
                .map(|d| parse_delay_us(d))
                .transpose()?
                .unwrap_or(0),
            delay_out_us: delay_out
                .map(|d| parse_delay_us(d))
                .transpose()?
                .unwrap_or(0),
        };
        Ok((spec != ShapeSpec::default()).then_some(spec))
    }

    /// tor's BandwidthRate for the relay, in bytes per second.
    pub fn bandwidth_bytes(&self) -> Result<Option<u64>, TestnetError> {
        let Some(bw) = &self.bandwidth else {
            return Ok(None);
        };
        let rate = parse_rate(bw)?;
        // tor refuses a BandwidthRate below 75 KB.
        if rate < 76_800 {
            return Err(TestnetError::Config(format!(
                "bandwidth {bw}: tor needs at least 75 KB"
            )));
        }
        Ok(Some(rate))
    }

    /// Fields of `over` replace those of `self`.
    fn overlay(&self, over: &RelayShape) -> RelayShape {
        RelayShape {
            rate: over.rate.clone().or_else(|| self.rate.clone()),
            rate_in: over.rate_in.clone().or_else(|| self.rate_in.clone()),
            rate_out: over.rate_out.clone().or_else(|| self.rate_out.clone()),
            delay: over.delay.clone().or_else(|| self.delay.clone()),
            delay_in: over.delay_in.clone().or_else(|| self.delay_in.clone()),
            delay_out: over.delay_out.clone().or_else(|| self.delay_out.clone()),
            bandwidth: over.bandwidth.clone().or_else(|| self.bandwidth.clone()),
        }
    }
}

/// The whole description of a network to launch.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Directory for keys, torrc files, logs, pids and `network.toml`.
    pub dir: PathBuf,
    /// Number of directory authorities.
    pub authorities: usize,
    /// Number of non-exit relays; each is voted Guard.
    pub relays: usize,
    /// Number of exits (Conflux=1, FlowCtrl=2, accepting 127.0.0.1).
    pub exits: usize,
    /// Number of Braid non-exit relays (`braidrelay0`, ...); each is voted
    /// Guard.
    pub braid_relays: usize,
    /// Number of Braid exits (`braidexit0`, ...), connecting to 127.0.0.0/8
    /// only.
    pub braid_exits: usize,
    /// The Braid exits' exit policy, torrc syntax (one or more rules per
    /// entry); by default the C-tor exits' policy.
    pub braid_exit_policy: Vec<String>,
    /// Extra `[braid_relay]` options of the Braid relays' `relay.toml`
    /// (e.g. `kist = false`), by nickname (`braidexit1`) or `all` (every
    /// Braid relay); a nickname's options win over `all`'s. Options the
    /// testnet itself writes (nickname, ports, keys, policy, ...) cannot be
    /// set here.
    pub braid_relay_options: BTreeMap<String, toml::Table>,
    /// First port; the network uses a block of ports from here.
    pub base_port: u16,
    /// Link emulation by nickname or group (`relays`, `exits`, `all`).
    pub shapes: BTreeMap<String, RelayShape>,
    /// Start a C-tor client (SOCKS + control port) and wait for it.
    pub client: bool,
    /// The C-tor client's `ConfluxClientUX`, when set.
    pub client_conflux_ux: Option<String>,
    /// Conflux on in the C-tor client (`ConfluxEnabled`); off gives the
    /// single-circuit baseline. Switching it at runtime is not an option:
    /// tor 0.4.9.11 then fails its next stream (README).
    pub client_conflux: bool,
    /// Extra lines appended to the C-tor client's torrc (e.g.
    /// `EntryNodes relay0,relay1`, `MiddleNodes ...`, `ExitNodes exit0`;
    /// tor accepts nicknames there).
    pub client_torrc: Vec<String>,
    /// Consensus parameters every authority votes (`ConsensusParams`), so
    /// that the consensus carries them: e.g. `cfx_num_legs_set = 3` makes
    /// C-tor clients build 3-leg Conflux sets.
    pub consensus_params: BTreeMap<String, i32>,
    /// How long start-up may take before it fails.
    pub timeout: Duration,
    /// The tor program.
    pub tor: PathBuf,
    /// The tor-gencert program.
    pub tor_gencert: PathBuf,
    /// The program that runs the helper process (shapers, file server):
    /// the `braid` binary, which has a `testnet helper` subcommand.
    pub helper_exe: PathBuf,
    /// The program that runs the Braid relays (`braid relay run`): the
    /// `braid` binary.
    pub braid_bin: PathBuf,
    /// tor's log level for every node ("notice" or "info").
    pub log_level: String,
    /// The Braid relays' log level ("info", or "debug"); tor's `debug`
    /// also turns it to debug.
    pub braid_log_level: String,
    /// Print progress lines to standard error.
    pub progress: bool,
}

/// Default first port: high enough to stay clear of common services.
pub const DEFAULT_BASE_PORT: u16 = 17000;

/// The Braid exits' default policy: the C-tor exits' (torrc.rs). A
/// loopback-only policy would be summarised as reject-all in the
/// microdescriptor, so the rest is accepted too; the relay itself connects
/// only to 127.0.0.0/8 (`exit_connect_loopback_only`).
pub const DEFAULT_BRAID_EXIT_POLICY: [&str; 2] = ["accept 127.0.0.0/8:*", "accept *:*"];

/// Nickname prefix of the Braid non-exit relays.
pub const BRAID_RELAY_PREFIX: &str = "braidrelay";
/// Nickname prefix of the Braid exits.
pub const BRAID_EXIT_PREFIX: &str = "braidexit";

impl NetworkConfig {
    /// A default network (3 authorities, 5 relays, 3 exits) in `dir`.
    /// `helper_exe` (the `braid` binary) also runs the Braid relays unless
    /// `braid_bin` is changed.
    pub fn new(dir: impl Into<PathBuf>, helper_exe: impl Into<PathBuf>) -> Self {
        let helper_exe = helper_exe.into();
        NetworkConfig {
            dir: dir.into(),
            authorities: 3,
            relays: 5,
            exits: 3,
            braid_relays: 0,
            braid_exits: 0,
            braid_exit_policy: DEFAULT_BRAID_EXIT_POLICY
                .iter()
                .map(|r| (*r).to_string())
                .collect(),
            braid_relay_options: BTreeMap::new(),
            base_port: DEFAULT_BASE_PORT,
            shapes: BTreeMap::new(),
            client: true,
            client_conflux_ux: None,
            client_conflux: true,
            client_torrc: Vec::new(),
            consensus_params: BTreeMap::new(),
            timeout: Duration::from_secs(180),
            tor: PathBuf::from("tor"),
            tor_gencert: PathBuf::from("tor-gencert"),
            braid_bin: helper_exe.clone(),
            helper_exe,
            log_level: "notice".to_string(),
            braid_log_level: "info".to_string(),
            progress: false,
        }
    }

    /// Applies a TOML scenario file on top of this configuration.
    pub fn apply_scenario(&mut self, path: &Path) -> Result<(), TestnetError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| TestnetError::io("reading", path, e))?;
        self.apply_scenario_str(&text)
            .map_err(|e| TestnetError::Config(format!("{}: {e}", path.display())))
    }

    /// Applies a scenario given as TOML text.
    pub fn apply_scenario_str(&mut self, text: &str) -> Result<(), TestnetError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| TestnetError::Config(e.message().to_string()))?;
        if let Some(n) = scenario.authorities {
            self.authorities = n;
        }
        if let Some(n) = scenario.relays {
            self.relays = n;
        }
        if let Some(n) = scenario.exits {
            self.exits = n;
        }
        if let Some(n) = scenario.braid_relays {
            self.braid_relays = n;
        }
        if let Some(n) = scenario.braid_exits {
            self.braid_exits = n;
        }
        if let Some(policy) = scenario.braid_exit_policy {
            self.braid_exit_policy = policy;
        }
        if let Some(p) = scenario.base_port {
            self.base_port = p;
        }
        if let Some(ux) = scenario.client_conflux_ux {
            self.client_conflux_ux = Some(ux);
        }
        if let Some(t) = scenario.timeout_secs {
            self.timeout = Duration::from_secs(t);
        }
        self.client_torrc.extend(scenario.client_torrc);
        self.consensus_params.extend(scenario.consensus_params);
        for (name, shape) in scenario.shape {
            let merged = self
                .shapes
                .get(&name)
                .cloned()
                .unwrap_or_default()
                .overlay(&shape);
            self.shapes.insert(name, merged);
        }
        Ok(())
    }

    /// Checks sizes and shape names; called by the launcher before anything
    /// is started.
    pub fn validate(&self) -> Result<(), TestnetError> {
        if !(1..=9).contains(&self.authorities) {
            return Err(TestnetError::Config(
                "authorities must be between 1 and 9".into(),
            ));
        }
        // The launcher waits for the C-tor client's first linked Conflux
        // set: two legs with distinct guards and distinct middles, to a
        // C-tor exit (Braid exits do not offer Conflux yet).
        if self.client && self.client_conflux {
            if self.relays < 4 {
                return Err(TestnetError::Config(
                    "at least 4 non-exit relays are needed (two Conflux legs need distinct guards and middles)"
                        .into(),
                ));
            }
            if self.exits < 1 {
                return Err(TestnetError::Config(
                    "at least 1 C-tor exit is needed (the C-tor client's Conflux sets end there)"
                        .into(),
                ));
            }
        }
        if self.relays + self.braid_relays < 1 {
            return Err(TestnetError::Config(
                "at least 1 non-exit relay (C-tor or Braid) is needed".into(),
            ));
        }
        if self.exits + self.braid_exits < 1 {
            return Err(TestnetError::Config(
                "at least 1 exit (C-tor or Braid) is needed".into(),
            ));
        }
        if self.relays + self.exits + self.braid_relays + self.braid_exits > 200 {
            return Err(TestnetError::Config("at most 200 relays".into()));
        }
        if self.braid_exits > 0 {
            if self.braid_exit_policy.is_empty() {
                return Err(TestnetError::Config(
                    "braid_exit_policy: no rules (an exit needs at least one accept)".into(),
                ));
            }
            for rule in &self.braid_exit_policy {
                let word = rule.split_whitespace().next().unwrap_or("");
                if rule.contains(['\n', '\r']) || !matches!(word, "accept" | "reject") {
                    return Err(TestnetError::Config(format!(
                        "braid_exit_policy rule {rule:?}: expected `accept PATTERN` or `reject PATTERN`"
                    )));
                }
            }
        }
        crate::braid_relay::check_options(self)?;
        let last = u32::from(self.base_port) + 10 * self.node_count() as u32 + 10;
        if self.base_port < 1024 || last > u32::from(u16::MAX) {
            return Err(TestnetError::Config(format!(
                "base port {} leaves no room for {} nodes (ports {}..{last})",
                self.base_port,
                self.node_count(),
                self.base_port
            )));
        }
        for line in &self.client_torrc {
            if line.trim().is_empty() || line.contains(['\n', '\r']) {
                return Err(TestnetError::Config(format!(
                    "client torrc line {line:?}: one non-empty line per entry"
                )));
            }
        }
        for name in self.consensus_params.keys() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(TestnetError::Config(format!(
                    "consensus parameter {name:?}: letters, digits and _ only"
                )));
            }
        }
        for (name, shape) in &self.shapes {
            if !self.is_known_name(name) {
                return Err(TestnetError::Config(format!(
                    "shape for unknown relay or group `{name}` (use relayN, exitN, braidrelayN, braidexitN, relays, exits or all)"
                )));
            }
            if is_braid_name(name)
                && *shape
                    != (RelayShape {
                        bandwidth: shape.bandwidth.clone(),
                        ..RelayShape::default()
                    })
            {
                return Err(TestnetError::Config(format!(
                    "shape for `{name}`: a Braid relay takes only `bandwidth` (no link emulation: it has no separate listening port for a shaper)"
                )));
            }
            shape.to_spec()?;
            shape.bandwidth_bytes()?;
        }
        Ok(())
    }

    /// Number of processes with ports (authorities, relays, exits, Braid
    /// relays and exits, client).
    pub fn node_count(&self) -> usize {
        self.authorities
            + self.relays
            + self.exits
            + self.braid_relays
            + self.braid_exits
            + usize::from(self.client)
    }

    pub(crate) fn is_known_name(&self, name: &str) -> bool {
        if matches!(name, "relays" | "exits" | "all") {
            return true;
        }
        let index = |prefix: &str| {
            name.strip_prefix(prefix)
                .and_then(|n| n.parse::<usize>().ok())
        };
        match (
            index("relay"),
            index("exit"),
            index(BRAID_RELAY_PREFIX),
            index(BRAID_EXIT_PREFIX),
        ) {
            (Some(i), ..) => i < self.relays,
            (_, Some(i), ..) => i < self.exits,
            (_, _, Some(i), _) => i < self.braid_relays,
            (.., Some(i)) => i < self.braid_exits,
            _ => false,
        }
    }

    /// Sets `[braid_relay]` option `key` of Braid relay `name` (or `all`)
    /// in [`NetworkConfig::braid_relay_options`].
    pub fn set_braid_relay_option(&mut self, name: &str, key: &str, value: impl Into<toml::Value>) {
        self.braid_relay_options
            .entry(name.to_string())
            .or_default()
            .insert(key.to_string(), value.into());
    }

    /// Makes Braid exit `name` a hostile Conflux exit (`hostile =
    /// "seq-gap"` in its relay.toml; behaviours: braid-core's
    /// `relay::node::hostile`). Only a `braid` program built with the
    /// `hostile` feature runs it (the integration tests' build); any other
    /// refuses the file.
    pub fn set_hostile_exit(&mut self, name: &str, behaviour: &str) {
        self.set_braid_relay_option(name, "hostile", behaviour);
    }

    /// The shape of Braid relay `nickname`: only its own entry (groups
    /// are for C-tor relays), of which only `bandwidth` is allowed.
    pub fn braid_shape_for(&self, nickname: &str) -> RelayShape {
        self.shapes.get(nickname).cloned().unwrap_or_default()
    }

    /// The effective shape of relay `nickname` (exit or not): the `all`
    /// group, then its own group, then its nickname.
    pub fn shape_for(&self, nickname: &str, is_exit: bool) -> RelayShape {
        let group = if is_exit { "exits" } else { "relays" };
        let mut shape = RelayShape::default();
        for key in ["all", group, nickname] {
            if let Some(s) = self.shapes.get(key) {
                shape = shape.overlay(s);
            }
        }
        shape
    }
}

/// Whether `name` is a Braid relay's nickname (`braidrelayN`, `braidexitN`).
pub(crate) fn is_braid_name(name: &str) -> bool {
    name.starts_with(BRAID_RELAY_PREFIX) || name.starts_with(BRAID_EXIT_PREFIX)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    authorities: Option<usize>,
    relays: Option<usize>,
    exits: Option<usize>,
    braid_relays: Option<usize>,
    braid_exits: Option<usize>,
    braid_exit_policy: Option<Vec<String>>,
    base_port: Option<u16>,
    client_conflux_ux: Option<String>,
    timeout_secs: Option<u64>,
    #[serde(default)]
    client_torrc: Vec<String>,
    #[serde(default)]
    consensus_params: BTreeMap<String, i32>,
    #[serde(default)]
    shape: BTreeMap<String, RelayShape>,
}

/// Parses a byte rate: `1000000`, `800KB`, `1 MiB`, `2MiB/s`.
pub fn parse_rate(text: &str) -> Result<u64, TestnetError> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| TestnetError::Config(format!("rate `{text}`: expected e.g. 1MiB or 800KB")))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" | "K" | "k" => 1e3,
        "KiB" | "Ki" => 1024.0,
        "MB" | "M" => 1e6,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "GB" | "G" => 1e9,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(TestnetError::Config(format!(
                "rate `{text}`: unknown unit `{other}` (B, KB, KiB, MB, MiB, GB, GiB)"
            )));
        }
    };
    let bytes = (num * mult).round();
    if !(1.0..=1e12).contains(&bytes) {
        return Err(TestnetError::Config(format!(
            "rate `{text}` is out of range"
        )));
    }
    Ok(bytes as u64)
}

/// Parses a delay into microseconds: `10ms`, `1.5ms`, `500us`, `1s`, `10`
/// (milliseconds).
pub fn parse_delay_us(text: &str) -> Result<u64, TestnetError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| TestnetError::Config(format!("delay `{text}`: expected e.g. 10ms")))?;
    let mult = match unit.trim() {
        "" | "ms" => 1e3,
        "us" | "µs" => 1.0,
        "s" => 1e6,
        other => {
            return Err(TestnetError::Config(format!(
                "delay `{text}`: unknown unit `{other}` (us, ms, s)"
            )));
        }
    };
    let us = (num * mult).round();
    if !(0.0..=10e6).contains(&us) {
        return Err(TestnetError::Config(format!(
            "delay `{text}` is out of range (at most 10 s)"
        )));
    }
    Ok(us as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1MiB").unwrap(), 1_048_576);
        assert_eq!(parse_rate("1 MiB/s").unwrap(), 1_048_576);
        assert_eq!(parse_rate("800KB").unwrap(), 800_000);
        assert_eq!(parse_rate("0.5MiB").unwrap(), 524_288);
        assert_eq!(parse_rate("12345").unwrap(), 12_345);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1 furlong").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn delays() {
        assert_eq!(parse_delay_us("10ms").unwrap(), 10_000);
        assert_eq!(parse_delay_us("10").unwrap(), 10_000);
        assert_eq!(parse_delay_us("250us").unwrap(), 250);
        assert_eq!(parse_delay_us("1.5s").unwrap(), 1_500_000);
        assert!(parse_delay_us("-1ms").is_err());
        assert!(parse_delay_us("11s").is_err());
        assert!(parse_delay_us("1 week").is_err());
    }

    #[test]
    fn shape_flag() {
        let (name, shape) = RelayShape::parse_flag("relays:1MiB:10ms").unwrap();
        assert_eq!(name, "relays");
        let spec = shape.to_spec().unwrap().unwrap();
        assert_eq!(spec.rate_in, Some(1_048_576));
        assert_eq!(spec.rate_out, Some(1_048_576));
        assert_eq!(spec.delay_in_us, 10_000);
        assert_eq!(spec.delay_out_us, 10_000);
        let (_, shape) = RelayShape::parse_flag("exit0:-:20ms").unwrap();
        let spec = shape.to_spec().unwrap().unwrap();
        assert_eq!(spec.rate_in, None);
        assert_eq!(spec.delay_out_us, 20_000);
        assert!(RelayShape::parse_flag("relays").is_err());
        assert!(RelayShape::parse_flag("relays:fast").is_err());
        assert!(RelayShape::parse_flag("relays:1MiB:10ms:x").is_err());
    }

    #[test]
    fn scenario_overlays_groups_and_names() {
        let mut config = NetworkConfig::new("/tmp/x", "braid");
        config
            .apply_scenario_str(
                r#"
                relays = 6
                exits = 2
                [shape.relays]
                rate = "1 MiB"
                delay = "10ms"
                [shape.relay1]
                rate_in = "2 MiB"
                bandwidth = "1 MB"
                "#,
            )
            .unwrap();
        config.validate().unwrap();
        assert_eq!(config.relays, 6);
        assert_eq!(config.exits, 2);
        let r1 = config.shape_for("relay1", false);
        let spec = r1.to_spec().unwrap().unwrap();
        assert_eq!(spec.rate_in, Some(2 * 1_048_576));
        assert_eq!(spec.rate_out, Some(1_048_576));
        assert_eq!(spec.delay_in_us, 10_000);
        assert_eq!(r1.bandwidth_bytes().unwrap(), Some(1_000_000));
        assert_eq!(config.shape_for("exit0", true).to_spec().unwrap(), None);
    }

    #[test]
    fn client_torrc_and_consensus_params() {
        let mut config = NetworkConfig::new("/tmp/x", "braid");
        config
            .apply_scenario_str(
                r#"
                client_torrc = ["EntryNodes relay0,relay1", "ExitNodes exit0"]
                [consensus_params]
                cfx_num_legs_set = 3
                "#,
            )
            .unwrap();
        config.validate().unwrap();
        assert_eq!(config.client_torrc.len(), 2);
        assert_eq!(config.consensus_params.get("cfx_num_legs_set"), Some(&3));
        config.client_torrc.push("A 1\nB 2".into());
        assert!(config.validate().is_err());
        let mut config = NetworkConfig::new("/tmp/x", "braid");
        config.consensus_params.insert("cfx num".into(), 1);
        assert!(config.validate().is_err());
        assert!(
            config
                .apply_scenario_str("[consensus_params]\ncfx_num_legs_set = \"three\"")
                .is_err()
        );
    }

    #[test]
    fn braid_relays_from_a_scenario() {
        let mut config = NetworkConfig::new("/tmp/x", "/opt/braid");
        assert_eq!((config.braid_relays, config.braid_exits), (0, 0));
        assert_eq!(config.braid_bin, Path::new("/opt/braid"));
        assert_eq!(config.braid_exit_policy, DEFAULT_BRAID_EXIT_POLICY);
        config
            .apply_scenario_str(
                r#"
                braid_relays = 2
                braid_exits = 1
                braid_exit_policy = ["reject 127.0.0.1:9", "accept 127.0.0.0/8:*"]
                [shape.braidexit0]
                bandwidth = "2 MB"
                "#,
            )
            .unwrap();
        config.validate().unwrap();
        assert_eq!((config.braid_relays, config.braid_exits), (2, 1));
        assert_eq!(config.node_count(), 3 + 5 + 3 + 2 + 1 + 1);
        assert_eq!(config.braid_exit_policy.len(), 2);
        assert_eq!(
            config
                .braid_shape_for("braidexit0")
                .bandwidth_bytes()
                .unwrap(),
            Some(2_000_000)
        );
        assert_eq!(config.braid_shape_for("braidrelay1"), RelayShape::default());
        // Groups are for the C-tor relays only.
        config.shapes.insert(
            "relays".into(),
            RelayShape {
                rate: Some("1MiB".into()),
                ..RelayShape::default()
            },
        );
        config.validate().unwrap();
        assert_eq!(config.braid_shape_for("braidrelay0"), RelayShape::default());
    }

    #[test]
    fn braid_relay_errors_are_clear() {
        let braid = || {
            let mut c = NetworkConfig::new("/tmp/x", "braid");
            c.braid_relays = 1;
            c.braid_exits = 1;
            c
        };
        // No link emulation for Braid relays, and no unknown ones.
        let mut config = braid();
        config
            .apply_scenario_str("[shape.braidrelay0]\nrate = \"1MiB\"")
            .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("braidrelay0") && err.contains("only `bandwidth`"),
            "{err}"
        );
        let mut config = braid();
        config
            .apply_scenario_str("[shape.braidexit1]\nbandwidth = \"1MB\"")
            .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("braidexit1"), "{err}");
        // Policies are torrc rules.
        for policy in [
            vec![],
            vec!["allow *:*".to_string()],
            vec!["accept *:*\nx".into()],
        ] {
            let mut config = braid();
            config.braid_exit_policy = policy.clone();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("braid_exit_policy"), "{policy:?}: {err}");
        }
        // Without a Conflux client, a small network will do, even without
        // C-tor exits; with one, the C-tor part must carry Conflux.
        let mut config = braid();
        config.relays = 1;
        config.exits = 0;
        assert!(config.validate().is_err());
        config.client_conflux = false;
        config.validate().unwrap();
        config.braid_exits = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("at least 1 exit"), "{err}");
        let mut config = braid();
        config.client = false;
        config.relays = 0;
        config.braid_relays = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn scenario_errors_are_clear() {
        let mut config = NetworkConfig::new("/tmp/x", "braid");
        assert!(config.apply_scenario_str("relays = \"many\"").is_err());
        assert!(config.apply_scenario_str("colour = 3").is_err());
        config
            .apply_scenario_str("[shape.relay9]\nrate = \"1MiB\"")
            .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("relay9"), "{err}");
        let mut config = NetworkConfig::new("/tmp/x", "braid");
        config.relays = 2;
        assert!(config.validate().is_err());
        let mut config = NetworkConfig::new("/tmp/x", "braid");
        config.shapes.insert(
            "exits".into(),
            RelayShape {
                bandwidth: Some("10KB".into()),
                ..RelayShape::default()
            },
        );
        assert!(config.validate().is_err());
    }
}
