//! What `braid bench relay` measures and on which network: the settings
//! from the command line, the exits compared, the relays every circuit
//! crosses, and the network's configuration.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use braid_testnet::config::parse_rate;
use braid_testnet::{NetworkConfig, RelayShape};
use serde::Serialize;

use crate::bench::error::BenchError;
use crate::cli::BenchRelayArgs;

/// Every circuit's first hop (a C-tor relay: C-tor clients take guards
/// only among relays with V2Dir, which Braid relays lack).
pub(super) const GUARD: &str = "relay0";
/// The middle of the bulk downloads' circuits (`--bulk-shape`).
pub(super) const BULK_MIDDLE: &str = "relay1";
/// The middle of the load runs' circuits (`--shape`): the bottleneck
/// behind the exits.
pub(super) const LOAD_MIDDLE: &str = "relay2";

/// One exit compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Exit {
    /// `braidexit0`, `kist = true`.
    Braid,
    /// `braidexit1`, `kist = false`: the same relay without KIST.
    BraidNoKist,
    /// `exit0`, C-tor.
    Ctor,
}

/// The exits of the bulk downloads.
pub(super) const BULK_EXITS: [Exit; 2] = [Exit::Braid, Exit::Ctor];
/// The exits of the load runs.
pub(super) const LOAD_EXITS: [Exit; 3] = [Exit::Braid, Exit::BraidNoKist, Exit::Ctor];

impl Exit {
    /// Its nickname in the network.
    pub(super) fn nickname(self) -> &'static str {
        match self {
            Exit::Braid => "braidexit0",
            Exit::BraidNoKist => "braidexit1",
            Exit::Ctor => "exit0",
        }
    }

    /// How the tables name it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Exit::Braid => "Braid, KIST on",
            Exit::BraidNoKist => "Braid, KIST off",
            Exit::Ctor => "C-tor",
        }
    }

    /// Where a Braid exit serves its metrics (`[braid_relay] metrics`):
    /// port `base_port + 900 + i`, above the network's block.
    pub(super) fn metrics(self, base_port: u16) -> Option<SocketAddr> {
        let offset = match self {
            Exit::Braid => 900,
            Exit::BraidNoKist => 901,
            Exit::Ctor => return None,
        };
        Some(SocketAddr::from((
            [127, 0, 0, 1],
            base_port.checked_add(offset)?,
        )))
    }

    /// Its `[braid_relay] kist` option (`None`: a C-tor exit).
    pub(super) fn kist(self) -> Option<bool> {
        match self {
            Exit::Braid => Some(true),
            Exit::BraidNoKist => Some(false),
            Exit::Ctor => None,
        }
    }
}

/// `items` in repetition `rep`'s order: as given on even repetitions,
/// reversed on odd ones.
pub(super) fn order<T: Copy>(items: &[T], rep: usize) -> Vec<T> {
    if rep.is_multiple_of(2) {
        items.to_vec()
    } else {
        items.iter().rev().copied().collect()
    }
}

/// The command line, checked.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Settings {
    /// Bytes of each bulk download.
    pub(super) size: u64,
    /// Bulk downloads per exit; load runs per exit.
    pub(super) reps: usize,
    /// `--shape` as given.
    pub(super) load_shape: String,
    /// `--bulk-shape` as given.
    pub(super) bulk_shape: Option<String>,
    /// `--exit-bandwidth` in bytes per second.
    pub(super) exit_bandwidth: Option<u64>,
    /// Streams per load run.
    pub(super) load_streams: usize,
    /// Bytes of each bulk stream of a load run.
    pub(super) load_bulk_size: u64,
    /// Bytes of each small stream of a load run.
    pub(super) load_small_size: u64,
    /// From a load run's start to its first small stream, and between small
    /// streams.
    #[serde(serialize_with = "millis")]
    pub(super) small_gap: Duration,
    /// First port of the network.
    pub(super) base_port: u16,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Settings {
    /// Checks the command line.
    pub(super) fn from_args(args: &BenchRelayArgs) -> Result<Settings, BenchError> {
        if args.reps == 0 {
            return Err(BenchError::Usage("--reps must be at least 1".into()));
        }
        if args.load_streams < 2 {
            return Err(BenchError::Usage(
                "--load-streams must be at least 2 (one bulk, one small)".into(),
            ));
        }
        if args.base_port > u16::MAX - 1000 {
            return Err(BenchError::Usage(format!(
                "--base-port {}: the exits' metrics use base + 900 and up",
                args.base_port
            )));
        }
        if args.small_gap_ms == 0 {
            return Err(BenchError::Usage("--small-gap-ms must be positive".into()));
        }
        let settings = Settings {
            size: parse_rate(&args.size)?,
            reps: args.reps,
            load_shape: args.shape.clone(),
            bulk_shape: args.bulk_shape.clone(),
            exit_bandwidth: args.exit_bandwidth.as_deref().map(parse_rate).transpose()?,
            load_streams: args.load_streams,
            load_bulk_size: parse_rate(&args.load_bulk_size)?,
            load_small_size: parse_rate(&args.load_small_size)?,
            small_gap: Duration::from_millis(args.small_gap_ms),
            base_port: args.base_port,
        };
        // Checks the shapes and the bandwidth as the launcher will.
        settings
            .network_config(Path::new("/nonexistent"), Path::new("braid"))?
            .validate()?;
        Ok(settings)
    }

    /// The network: 3 authorities, the guard and the two middles (C-tor
    /// relays: the same for every exit), the C-tor exit `exit0`, the
    /// Braid exits `braidexit0` (KIST on) and `braidexit1` (KIST off), and
    /// the C-tor client without Conflux (the Braid exits offer none). The
    /// exits have no link emulation (a Braid relay cannot have any) and the
    /// same BandwidthRate.
    pub(super) fn network_config(
        &self,
        dir: &Path,
        exe: &Path,
    ) -> Result<NetworkConfig, BenchError> {
        let mut config = NetworkConfig::new(dir, exe);
        config.base_port = self.base_port;
        config.relays = 3;
        config.exits = 1;
        config.braid_relays = 0;
        config.braid_exits = 2;
        config.client = true;
        config.client_conflux = false;
        let shape = |name: &str, link: &str| {
            RelayShape::parse_flag(&format!("{name}:{link}")).map(|(_, s)| s)
        };
        config
            .shapes
            .insert(LOAD_MIDDLE.into(), shape(LOAD_MIDDLE, &self.load_shape)?);
        if let Some(link) = &self.bulk_shape {
            config
                .shapes
                .insert(BULK_MIDDLE.into(), shape(BULK_MIDDLE, link)?);
        }
        if let Some(bw) = self.exit_bandwidth {
            for exit in LOAD_EXITS {
                config.shapes.insert(
                    exit.nickname().into(),
                    RelayShape {
                        bandwidth: Some(bw.to_string()),
                        ..RelayShape::default()
                    },
                );
            }
        }
        for exit in LOAD_EXITS {
            if let Some(kist) = exit.kist() {
                config.set_braid_relay_option(exit.nickname(), "kist", kist);
            }
            if let Some(addr) = exit.metrics(self.base_port) {
                config.set_braid_relay_option(exit.nickname(), "metrics", addr.to_string());
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use clap::Parser as _;

    use super::*;
    use crate::cli::{BenchCmd, Cli, Command};

    fn args(extra: &[&str]) -> Result<BenchRelayArgs, clap::Error> {
        let mut argv = vec!["braid", "bench", "relay", "--dir", "/tmp/x"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| match c.command {
            Command::Bench(BenchCmd::Relay(a)) => a,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn defaults_and_checks() {
        let s = Settings::from_args(&args(&[]).unwrap()).unwrap();
        assert_eq!(s.size, 50_000_000);
        assert_eq!(s.reps, 3);
        assert_eq!(s.load_streams, 20);
        assert_eq!(s.load_bulk_size, 10_000_000);
        assert_eq!(s.load_small_size, 20_000);
        assert_eq!(s.small_gap, Duration::from_millis(500));
        assert_eq!(s.exit_bandwidth, None);
        for bad in [
            &["--reps", "0"][..],
            &["--load-streams", "1"],
            &["--small-gap-ms", "0"],
            &["--shape", "fast"],
            &["--bulk-shape", "1MiB:forever"],
            &["--exit-bandwidth", "1kB"],
            &["--size", "lots"],
            &["--base-port", "65000"],
        ] {
            let e = Settings::from_args(&args(bad).unwrap());
            assert!(e.is_err(), "{bad:?}");
        }
        assert!(args(&["--load-streams", "many"]).is_err());
    }

    #[test]
    fn network_has_both_exits_alike_and_kist_on_and_off() {
        let s = Settings::from_args(
            &args(&["--bulk-shape", "8MiB", "--exit-bandwidth", "5MB"]).unwrap(),
        )
        .unwrap();
        let c = s
            .network_config(Path::new("/tmp/n"), Path::new("/bin/braid"))
            .unwrap();
        c.validate().unwrap();
        assert_eq!(
            (c.relays, c.exits, c.braid_relays, c.braid_exits),
            (3, 1, 0, 2)
        );
        assert!(c.client && !c.client_conflux);
        // The middles are shaped, the guard and the exits are not.
        let spec = |name: &str, exit: bool| c.shape_for(name, exit).to_spec().unwrap();
        let load = spec(LOAD_MIDDLE, false).unwrap();
        assert_eq!(load.rate_in, Some(2 * 1024 * 1024));
        assert_eq!(load.delay_out_us, 10_000);
        assert_eq!(spec(BULK_MIDDLE, false).unwrap().rate_out, Some(8 << 20));
        assert_eq!(spec(GUARD, false), None);
        assert_eq!(spec("exit0", true), None);
        // The same BandwidthRate for every exit.
        for exit in LOAD_EXITS {
            let shape = c.shapes.get(exit.nickname()).unwrap();
            assert_eq!(shape.bandwidth_bytes().unwrap(), Some(5_000_000));
            assert_eq!(shape.to_spec().unwrap(), None);
        }
        let kist = |name: &str| {
            braid_testnet::braid_relay::options_for(&c, name)
                .get("kist")
                .and_then(|v| v.as_bool())
        };
        assert_eq!(kist("braidexit0"), Some(true));
        assert_eq!(kist("braidexit1"), Some(false));
        assert_eq!(kist("exit0"), None);
        let metrics = |name: &str| {
            braid_testnet::braid_relay::options_for(&c, name)
                .get("metrics")
                .and_then(|v| v.as_str().map(str::to_string))
        };
        assert_eq!(metrics("braidexit0").as_deref(), Some("127.0.0.1:26900"));
        assert_eq!(metrics("braidexit1").as_deref(), Some("127.0.0.1:26901"));
        assert_eq!(metrics("exit0"), None);
        assert_eq!(Exit::Ctor.metrics(26000), None);
        for exit in LOAD_EXITS {
            assert_eq!(kist(exit.nickname()), exit.kist());
        }
    }

    #[test]
    fn order_flips_every_repetition() {
        assert_eq!(order(&BULK_EXITS, 0), [Exit::Braid, Exit::Ctor]);
        assert_eq!(order(&BULK_EXITS, 1), [Exit::Ctor, Exit::Braid]);
        assert_eq!(order(&LOAD_EXITS, 2), LOAD_EXITS);
        assert_eq!(
            order(&LOAD_EXITS, 3),
            [Exit::Ctor, Exit::BraidNoKist, Exit::Braid]
        );
    }
}
