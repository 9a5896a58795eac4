//! The Braid exits' own figures: their Prometheus text (`[braid_relay]
//! metrics`) read before and after each load run, so the report shows
//! that KIST ran (or did not) on each, how often it held a channel back,
//! and what the memory limit closed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use braid_testnet::download::http_get;

use crate::bench::prom::parse;

/// How long a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The figures kept: KIST's, the out-of-memory closes, the bytes written,
/// and the queued bytes.
const KEPT: [&str; 4] = [
    "braid_relay_kist_",
    "braid_relay_oom_closed_total",
    "braid_relay_written_bytes_total",
    "braid_relay_queued_bytes",
];

/// Figures by metric name (without the prefix `braid_relay_`), summed
/// over their labels.
pub(super) type Figures = BTreeMap<String, f64>;

/// The kept figures of Prometheus text `text`.
pub(super) fn figures(text: &str) -> Figures {
    let mut out = Figures::new();
    for s in parse(text) {
        if KEPT.iter().any(|k| s.name.starts_with(k)) && s.value.is_finite() {
            let name = s.name.trim_start_matches("braid_relay_").to_string();
            *out.entry(name).or_insert(0.0) += s.value;
        }
    }
    out
}

/// What a run changed: for counters (`_total`) the difference, for the
/// other figures (gauges) the value after.
pub(super) fn change(before: &Figures, after: &Figures) -> Figures {
    after
        .iter()
        .map(|(name, v)| {
            let v = if name.ends_with("_total") {
                v - before.get(name).copied().unwrap_or(0.0)
            } else {
                *v
            };
            (name.clone(), v)
        })
        .collect()
}

/// `GET /metrics` from `addr`.
pub(super) async fn scrape(addr: SocketAddr) -> Result<Figures, String> {
    let get = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        let head = http_get(stream, &addr.to_string(), "/metrics", |chunk| {
            body.extend_from_slice(chunk);
            body.len() < 4 * 1024 * 1024
        })
        .await
        .map_err(|e| e.to_string())?;
        if head.status != 200 {
            return Err(format!("status {}", head.status));
        }
        Ok(figures(&String::from_utf8_lossy(&body)))
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, get)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Whether the figures agree with the relay's KIST setting `kist`: KIST
/// enabled and run during the load with `kist = true`; disabled and never
/// run with `kist = false`. `None` without the figures.
pub(super) fn kist_as_configured(kist: bool, run: &Figures) -> Option<bool> {
    let enabled = *run.get("kist_enabled")? > 0.5;
    let runs = *run.get("kist_runs_total")?;
    Some(if kist {
        enabled && runs > 0.0
    } else {
        !enabled && runs == 0.0
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const BEFORE: &str = "# HELP braid_relay_kist_runs_total KIST runs\n\
        # TYPE braid_relay_kist_runs_total counter\n\
        braid_relay_kist_runs_total 100\n\
        braid_relay_kist_enabled 1\n\
        braid_relay_kist_channels_limited_total 5\n\
        braid_relay_channels{peer=\"relay\"} 3\n\
        braid_relay_queued_bytes 1000\n\
        braid_relay_oom_closed_total 0\n";
    const AFTER: &str = "braid_relay_kist_runs_total 350\n\
        braid_relay_kist_enabled 1\n\
        braid_relay_kist_channels_limited_total 45\n\
        braid_relay_kist_pending_channels{x=\"a\"} 1\n\
        braid_relay_kist_pending_channels{x=\"b\"} 2\n\
        braid_relay_queued_bytes 500\n\
        braid_relay_oom_closed_total 0\n\
        braid_relay_written_bytes_total 2e6\n";

    #[test]
    fn kept_figures_and_their_change() {
        let before = figures(BEFORE);
        assert_eq!(before.get("kist_runs_total"), Some(&100.0));
        assert!(!before.contains_key("channels"), "{before:?}");
        let after = figures(AFTER);
        assert_eq!(after.get("kist_pending_channels"), Some(&3.0));
        let run = change(&before, &after);
        assert_eq!(run.get("kist_runs_total"), Some(&250.0));
        assert_eq!(run.get("kist_channels_limited_total"), Some(&40.0));
        // A counter absent before counts from 0; gauges are the value after.
        assert_eq!(run.get("written_bytes_total"), Some(&2e6));
        assert_eq!(run.get("queued_bytes"), Some(&500.0));
        assert_eq!(run.get("kist_enabled"), Some(&1.0));
        assert_eq!(kist_as_configured(true, &run), Some(true));
        assert_eq!(kist_as_configured(false, &run), Some(false));
    }

    #[test]
    fn kist_off_and_missing_figures() {
        let off = figures("braid_relay_kist_enabled 0\nbraid_relay_kist_runs_total 0\n");
        assert_eq!(kist_as_configured(false, &off), Some(true));
        assert_eq!(kist_as_configured(true, &off), Some(false));
        let idle_on = figures("braid_relay_kist_enabled 1\nbraid_relay_kist_runs_total 0\n");
        assert_eq!(kist_as_configured(true, &idle_on), Some(false));
        assert_eq!(kist_as_configured(true, &Figures::new()), None);
        assert!(figures("garbage\n\n").is_empty());
    }
}
