//! `braid relay keys`, `braid relay descriptor` and `braid relay run`: the
//! relay's identity, its server descriptor (printed or uploaded to the
//! authorities), and the relay itself.

use std::time::{Duration, SystemTime};

use braid_dir::descriptor::{DescriptorError, build_descriptor};
use braid_relay::publish::upload_and_check;
use braid_relay::{ConfigError, KeyError, KeysOpened, RelayConfig, RelayKeys, RunError};

use crate::cli::{RelayCmd, RelayDescriptorArgs, RelayRunArgs};

/// Errors of `braid relay`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayCmdError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot build the descriptor: {0}")]
    Descriptor(#[from] DescriptorError),
    #[error("{refused} of {total} authorities do not hold the descriptor")]
    NotPublished { refused: usize, total: usize },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot watch for signals: {0}")]
    Signals(std::io::Error),
}

pub(crate) async fn run(cmd: RelayCmd) -> Result<(), RelayCmdError> {
    match cmd {
        RelayCmd::Keys { dir } => {
            let keys = open_keys(&dir)?;
            print(&format!(
                "fingerprint {}\ned25519 {}\nsigning key certified until {}",
                keys.rsa_identity().as_hex_upper(),
                keys.ed_identity(),
                utc(keys.signing_cert_expiry()),
            ));
            Ok(())
        }
        RelayCmd::Descriptor(args) => descriptor(args).await,
        RelayCmd::Run(args) => run_relay(args).await,
    }
}

/// `braid relay run`: until SIGINT or SIGTERM.
async fn run_relay(args: RelayRunArgs) -> Result<(), RelayCmdError> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = RelayConfig::load(&args.config)?;
    let keys = open_keys(&config.keys_dir)?;
    let mut term = signal(SignalKind::terminate()).map_err(RelayCmdError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RelayCmdError::Signals)?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    };
    braid_relay::run::run(config, keys, shutdown).await?;
    Ok(())
}

fn open_keys(dir: &std::path::Path) -> Result<RelayKeys, KeyError> {
    let (keys, how) = RelayKeys::open(dir, &mut rand::rng(), SystemTime::now())?;
    let what = match how {
        KeysOpened::Generated => "made a new identity in",
        KeysOpened::Loaded => "loaded the keys in",
        KeysOpened::RenewedSigningKey => "renewed the signing key in",
    };
    tracing::info!("{what} {}", dir.display());
    Ok(keys)
}

async fn descriptor(args: RelayDescriptorArgs) -> Result<(), RelayCmdError> {
    let config = RelayConfig::load(&args.config)?;
    let keys = open_keys(&config.keys_dir)?;
    let info = config.descriptor_info(SystemTime::now(), 0, 0);
    let desc = build_descriptor(&keys.descriptor_keys(), &info)?;
    if !args.publish {
        print(desc.text());
        return Ok(());
    }
    let timeout = Duration::from_secs(args.timeout);
    let mut refused = 0;
    for auth in &config.authorities {
        let line = match upload_and_check(auth.dir_addr, &desc, timeout).await {
            Ok(r) => {
                refused += usize::from(!r.accepted());
                r.describe()
            }
            Err(e) => {
                refused += 1;
                e.to_string()
            }
        };
        print(&format!("{} ({}): {line}", auth.nickname, auth.dir_addr));
    }
    if refused > 0 {
        return Err(RelayCmdError::NotPublished {
            refused,
            total: config.authorities.len(),
        });
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = braid_core::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[allow(clippy::print_stdout, reason = "the command's output")]
fn print(text: &str) {
    println!("{}", text.trim_end());
}
