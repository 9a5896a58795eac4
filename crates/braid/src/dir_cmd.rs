//! `braid dir`: bootstrap the directory and print what it holds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use braid_client::{ClientConfig, ClientError, DirCache, DirDriver};
use braid_core::time::civil_from_days;
use braid_dir::{
    DirEvent, GuardParams, GuardSet, NetDir, PathConfig, RelayFlags, choose_path,
    conflux_exit_protocols,
};

use crate::cli::DirArgs;
use crate::testnet_cmd::say;

pub(crate) async fn run(args: DirArgs) -> Result<(), ClientError> {
    let mut config = match &args.config {
        Some(path) => ClientConfig::load(path)?,
        None => ClientConfig::public(),
    };
    if let Some(dir) = args.cache {
        config.cache_dir = dir;
    }
    let mut driver = DirDriver::new(&config, !args.no_cache)?;
    let quiet = args.quiet;
    let report = driver
        .bootstrap(Duration::from_secs(args.timeout), |ev| match ev {
            DirEvent::Progress(p) if !quiet => say(&p.to_string()),
            DirEvent::Rejected { source, error } => say(&format!(
                "refused a document from {}: {error}",
                source
                    .as_ref()
                    .map_or_else(|| "the cache".to_owned(), ToString::to_string)
            )),
            DirEvent::FetchFailed { source, error, .. } if !quiet => {
                say(&format!("fetch failed: {source}: {error}"))
            }
            _ => {}
        })
        .await?;
    let Some(dir) = driver.netdir() else {
        return Ok(());
    };
    let network = config.source.as_ref().map_or_else(
        || "the public Tor network".to_owned(),
        |p| format!("the network of {}", p.display()),
    );
    let mut out = String::new();
    let lt = dir.lifetime();
    let _ = writeln!(out, "directory of {network}");
    let _ = writeln!(
        out,
        "consensus: valid-after {}, fresh-until {}, valid-until {} (UTC)",
        utc(lt.valid_after),
        utc(lt.fresh_until),
        utc(lt.valid_until)
    );
    let cached: Vec<String> = report.from_cache.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "bootstrap: {:.2} s; {} fetches, {} failed, {} documents refused; from cache: {}; cache {}",
        report.elapsed.as_secs_f64(),
        report.fetches,
        report.fetch_failures,
        report.rejected,
        if cached.is_empty() {
            "nothing".to_owned()
        } else {
            cached.join(", ")
        },
        if args.no_cache {
            "off".to_owned()
        } else {
            config.cache_dir.display().to_string()
        },
    );
    let f = &report.figures;
    let _ = writeln!(
        out,
        "fetched: {} bytes ({} decoded); {} answers from fallbacks, {} from caches, {} from authorities; {} compressed, {} diffs",
        f.wire_bytes,
        f.body_bytes,
        f.from_fallbacks,
        f.from_caches,
        f.from_authorities,
        f.compressed,
        f.diffs
    );
    let guards = if args.no_cache {
        None
    } else {
        guards(&config, dir, &mut out)
    };
    summary(
        &mut out,
        dir,
        config.enforce_distinct_subnets,
        args.port,
        guards.as_ref(),
    );
    say(out.trim_end());
    Ok(())
}

/// Load the guard state from the cache, take in the consensus, persist it
/// again, and name the primary guards.
fn guards(config: &ClientConfig, dir: &NetDir, out: &mut String) -> Option<GuardSet> {
    let cache = DirCache::open(&config.cache_dir).ok()?;
    let params = GuardParams::default();
    let mut set = match cache.load_guards() {
        Ok(Some(text)) => GuardSet::from_toml(&text, params.clone()).unwrap_or_else(|e| {
            let _ = writeln!(out, "guard state unreadable ({e}); starting a new one");
            GuardSet::new(params.clone())
        }),
        _ => GuardSet::new(params.clone()),
    };
    let relays = dir.relays();
    set.update_consensus(&relays, dir.weights(), SystemTime::now(), &mut rand::rng());
    if let Ok(text) = set.to_toml()
        && let Err(e) = cache.store_guards(&text)
    {
        let _ = writeln!(out, "cannot save the guard state: {e}");
    }
    let names: Vec<String> = set
        .primary()
        .iter()
        .map(|id| {
            relays
                .iter()
                .find(|r| r.id == *id)
                .map_or_else(|| id.to_string(), |r| r.nickname.clone())
        })
        .collect();
    let _ = writeln!(
        out,
        "guards: {} sampled, primary {} (state in {})",
        set.sampled().len(),
        names.join(", "),
        cache.dir().join("guards.toml").display()
    );
    Some(set)
}

/// Relays, flags, exits by policy and three sample paths.
fn summary(out: &mut String, dir: &NetDir, subnets: bool, port: u16, guards: Option<&GuardSet>) {
    let relays = dir.relays();
    let _ = writeln!(
        out,
        "relays: {} listed, {} with microdescriptors",
        dir.n_listed(),
        relays.len()
    );
    let names = [
        ("Running", RelayFlags::RUNNING),
        ("Valid", RelayFlags::VALID),
        ("Fast", RelayFlags::FAST),
        ("Stable", RelayFlags::STABLE),
        ("Guard", RelayFlags::GUARD),
        ("Exit", RelayFlags::EXIT),
        ("BadExit", RelayFlags::BAD_EXIT),
        ("HSDir", RelayFlags::HSDIR),
        ("V2Dir", RelayFlags::V2DIR),
        ("Authority", RelayFlags::AUTHORITY),
        ("MiddleOnly", RelayFlags::MIDDLE_ONLY),
    ];
    let flags: Vec<String> = names
        .iter()
        .map(|(n, f)| (n, relays.iter().filter(|r| r.has_flags(*f)).count()))
        .filter(|(_, c)| *c > 0)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    let _ = writeln!(out, "flags: {}", flags.join(", "));
    let mut policies: BTreeMap<String, usize> = BTreeMap::new();
    let exits: Vec<_> = relays
        .iter()
        .filter(|r| r.has_flags(RelayFlags::EXIT) && r.policy.allows_some_port())
        .collect();
    for r in &exits {
        *policies.entry(r.policy.to_string()).or_default() += 1;
    }
    let _ = writeln!(out, "exits by policy ({} exits):", exits.len());
    let mut by_count: Vec<_> = policies.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (policy, n) in by_count.iter().take(10) {
        let shown: String = policy.chars().take(100).collect();
        let _ = writeln!(out, "  {n:>5}  {shown}");
    }
    for p in [80u16, 443] {
        let n = exits.iter().filter(|r| r.policy.allows_port(p)).count();
        let _ = writeln!(out, "  exits allowing port {p}: {n}");
    }
    let cf = conflux_exit_protocols();
    let n = exits.iter().filter(|r| r.supports_all(&cf)).count();
    let _ = writeln!(out, "  conflux-capable exits ({cf}): {n}");
    let config = PathConfig {
        enforce_distinct_subnets: subnets,
        exit_port: Some(port),
        ..PathConfig::default()
    };
    let _ = writeln!(out, "sample paths (guard > middle > exit, port {port}):");
    let mut rng = rand::rng();
    let primary: Vec<&braid_dir::Relay> = guards
        .map(|g| g.primary().to_vec())
        .unwrap_or_default()
        .iter()
        .filter_map(|id| relays.iter().find(|r| r.id == *id))
        .collect();
    for i in 0..3 {
        // With a guard set, paths start at a primary guard (guard-spec §4.9).
        let guard = primary.get(i % primary.len().max(1)).copied();
        match choose_path(&relays, dir.weights(), guard, &config, &mut rng) {
            Ok(p) => {
                let _ = writeln!(
                    out,
                    "  {} {} > {} {} > {} {}",
                    p.guard.nickname,
                    p.guard.addr,
                    p.middle.nickname,
                    p.middle.addr,
                    p.exit.nickname,
                    p.exit.addr
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  no path: {e}");
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` for a time after 1970.
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_258_690);
        assert_eq!(utc(t), "2026-11-21 10:58:10");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc(leap), "2000-02-29 00:00:00");
    }
}
