//! Resumption and migration figures (Braid proposal 001, issue 15) in the
//! metrics: per tunnel and totals over the live tunnels, as Prometheus
//! families and as a `/status` block. The counts are braid-core's
//! ([`ResumeStats`]), polled through each tunnel's report.
//!
//! | name | labels | meaning |
//! |---|---|---|
//! | `braid_tunnel_resumable` | tunnel | 1 if both ends agreed on resumption |
//! | `braid_tunnel_resumptions_total` | tunnel | new legs linked after losses |
//! | `braid_tunnel_cells_resent_total` | tunnel, by | relay cells resent (`by="us"`, `by="peer"`) |
//! | `braid_tunnel_retransmit_bytes` | tunnel | retransmit buffer now |
//! | `braid_tunnel_retransmit_peak_bytes` | tunnel | its peak |
//! | `braid_tunnel_retransmit_peak_bound_bytes` | tunnel | what the legs' congestion windows allowed at that peak |
//! | `braid_tunnel_legs_lost_total` | tunnel | linked legs lost |
//! | `braid_tunnel_recovery_seconds` | tunnel, which | leg loss to data flowing again (`last`, `max`) |
//! | `braid_tunnel_migrations_total` | tunnel, outcome | streams moved away (`done`, `refused`, `aborted`) |
//! | `braid_resume_*` | (as above, no tunnel) | totals over the live tunnels |

use braid_core::tunnel::ResumeStats;
use serde::{Deserialize, Serialize};

use super::TunnelSnapshot;

/// A Prometheus family: name, type, help, rows (labels, value).
pub(super) type Family = (&'static str, &'static str, &'static str, Rows);
/// Samples: labels, value.
pub(super) type Rows = Vec<(String, f64)>;

/// The sum over `tunnels` (the larger peak and maximum).
pub fn totals(tunnels: &[TunnelSnapshot]) -> ResumeStats {
    let mut t = ResumeStats::default();
    for s in tunnels {
        t.add(&s.report.resume);
    }
    t
}

/// The rows of one figure: per tunnel, then the total without a tunnel
/// label; `extra` is a further label (or empty).
fn rows(
    tunnels: &[TunnelSnapshot],
    total: &ResumeStats,
    extra: &str,
    f: impl Fn(&ResumeStats) -> Option<f64>,
) -> (Rows, Rows) {
    let sep = if extra.is_empty() { "" } else { "," };
    let per = tunnels
        .iter()
        .filter_map(|t| {
            f(&t.report.resume).map(|v| (format!("tunnel=\"{}\"{sep}{extra}", t.report.id), v))
        })
        .collect();
    let tot = f(total)
        .map(|v| (extra.to_owned(), v))
        .into_iter()
        .collect();
    (per, tot)
}

/// Every resumption and migration family, per tunnel and in total.
pub(super) fn families(tunnels: &[TunnelSnapshot]) -> Vec<Family> {
    let total = totals(tunnels);
    type Pick = fn(&ResumeStats) -> Option<f64>;
    #[allow(clippy::type_complexity, reason = "a table")]
    let table: Vec<(&str, &str, &str, &str, &str, Vec<(&str, Pick)>)> = vec![
        (
            "braid_tunnel_resumable",
            "braid_resume_tunnels_resumable",
            "gauge",
            "1 if both ends agreed on resumption (Braid proposal 001 §2).",
            "",
            vec![("", |s| Some(f64::from(u8::from(s.resumable))))],
        ),
        (
            "braid_tunnel_resumptions_total",
            "braid_resume_resumptions_total",
            "counter",
            "Resumptions: new legs linked after legs were lost (Braid proposal 001 §3.3).",
            "",
            vec![("", |s| Some(s.resumptions as f64))],
        ),
        (
            "braid_tunnel_cells_resent_total",
            "braid_resume_cells_resent_total",
            "counter",
            "Relay cells resent on resumed legs, by us or by the peer.",
            "by",
            vec![
                ("us", |s| Some(s.cells_resent as f64)),
                ("peer", |s| Some(s.cells_resent_by_peer as f64)),
            ],
        ),
        (
            "braid_tunnel_retransmit_bytes",
            "braid_resume_retransmit_bytes",
            "gauge",
            "Bytes in the retransmit buffer (Braid proposal 001 §3.2).",
            "",
            vec![("", |s| Some(s.retransmit_bytes as f64))],
        ),
        (
            "braid_tunnel_retransmit_peak_bytes",
            "braid_resume_retransmit_peak_bytes",
            "gauge",
            "The most bytes the retransmit buffer held.",
            "",
            vec![("", |s| Some(s.retransmit_peak_bytes as f64))],
        ),
        (
            "braid_tunnel_retransmit_peak_bound_bytes",
            "braid_resume_retransmit_peak_bound_bytes",
            "gauge",
            "At the retransmit buffer's peak, the sum of the congestion windows of the legs \
             holding its messages (lost legs awaiting their resend included), a full cell each.",
            "",
            vec![("", |s| Some(s.retransmit_peak_bound_bytes as f64))],
        ),
        (
            "braid_tunnel_legs_lost_total",
            "braid_resume_legs_lost_total",
            "counter",
            "Linked legs lost.",
            "",
            vec![("", |s| Some(s.legs_lost as f64))],
        ),
        (
            "braid_tunnel_recovery_seconds",
            "braid_resume_recovery_seconds",
            "gauge",
            "From a leg's loss to data flowing again: the last time and the longest.",
            "which",
            vec![
                ("last", |s| s.last_recovery.map(|d| d.as_secs_f64())),
                ("max", |s| s.max_recovery.map(|d| d.as_secs_f64())),
            ],
        ),
        (
            "braid_tunnel_migrations_total",
            "braid_resume_migrations_total",
            "counter",
            "Streams moved away from the tunnel, by outcome (Braid proposal 001 §4).",
            "outcome",
            vec![
                ("done", |s| Some(s.migrations_done as f64)),
                ("refused", |s| Some(s.migrations_refused as f64)),
                ("aborted", |s| Some(s.migrations_aborted as f64)),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (name, total_name, kind, help, label, picks) in table {
        let (mut per, mut tot) = (Vec::new(), Vec::new());
        for (value, pick) in picks {
            let extra = if label.is_empty() {
                String::new()
            } else {
                format!("{label}=\"{value}\"")
            };
            let (p, t) = rows(tunnels, &total, &extra, pick);
            per.extend(p);
            tot.extend(t);
        }
        out.push((name, kind, help, per));
        out.push((total_name, kind, help, tot));
    }
    out
}

/// One tunnel's resumption and migration figures in `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeView {
    /// Both ends agreed on resumption.
    pub resumable: bool,
    /// Resumptions.
    pub resumptions: u64,
    /// Relay cells we resent.
    pub cells_resent: u64,
    /// Relay cells the peer resent to us.
    pub cells_resent_by_peer: u64,
    /// Retransmit buffer bytes now.
    pub retransmit_bytes: u64,
    /// Its peak.
    pub retransmit_peak_bytes: u64,
    /// What the legs' congestion windows allowed at that peak.
    #[serde(default)]
    pub retransmit_peak_bound_bytes: u64,
    /// Linked legs lost.
    pub legs_lost: u64,
    /// Last time from a leg's loss to data flowing again, ms.
    pub last_recovery_ms: Option<f64>,
    /// The longest such time, ms.
    pub max_recovery_ms: Option<f64>,
    /// Streams moved away.
    pub migrations_done: u64,
    /// Moves refused by the exit.
    pub migrations_refused: u64,
    /// Moves that failed otherwise.
    pub migrations_aborted: u64,
}

impl From<&ResumeStats> for ResumeView {
    fn from(s: &ResumeStats) -> Self {
        let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        ResumeView {
            resumable: s.resumable,
            resumptions: s.resumptions,
            cells_resent: s.cells_resent,
            cells_resent_by_peer: s.cells_resent_by_peer,
            retransmit_bytes: s.retransmit_bytes,
            retransmit_peak_bytes: s.retransmit_peak_bytes,
            retransmit_peak_bound_bytes: s.retransmit_peak_bound_bytes,
            legs_lost: s.legs_lost,
            last_recovery_ms: ms(s.last_recovery),
            max_recovery_ms: ms(s.max_recovery),
            migrations_done: s.migrations_done,
            migrations_refused: s.migrations_refused,
            migrations_aborted: s.migrations_aborted,
        }
    }
}

impl ResumeView {
    /// One line for `braid status` (empty when there is nothing to say).
    pub fn describe(&self) -> String {
        if !self.resumable && self.legs_lost == 0 && self.migrations() == 0 {
            return String::new();
        }
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"));
        format!(
            "resumable {}, {} resumption(s), cells resent {} by us / {} by the peer, \
             retransmit {} B (peak {} B, windows {} B), {} leg(s) lost, recovery last {} max {}, \
             migrations {} done / {} refused / {} aborted",
            if self.resumable { "yes" } else { "no" },
            self.resumptions,
            self.cells_resent,
            self.cells_resent_by_peer,
            self.retransmit_bytes,
            self.retransmit_peak_bytes,
            self.retransmit_peak_bound_bytes,
            self.legs_lost,
            ms(self.last_recovery_ms),
            ms(self.max_recovery_ms),
            self.migrations_done,
            self.migrations_refused,
            self.migrations_aborted,
        )
    }

    /// Add `other` in (the larger peak and maximum; the last recovery is
    /// `other`'s if it has one).
    pub fn add(&mut self, other: &ResumeView) {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.resumable |= other.resumable;
        self.resumptions += other.resumptions;
        self.cells_resent += other.cells_resent;
        self.cells_resent_by_peer += other.cells_resent_by_peer;
        self.retransmit_bytes += other.retransmit_bytes;
        if other.retransmit_peak_bytes > self.retransmit_peak_bytes {
            self.retransmit_peak_bytes = other.retransmit_peak_bytes;
            self.retransmit_peak_bound_bytes = other.retransmit_peak_bound_bytes;
        }
        self.legs_lost += other.legs_lost;
        self.last_recovery_ms = other.last_recovery_ms.or(self.last_recovery_ms);
        self.max_recovery_ms = max(self.max_recovery_ms, other.max_recovery_ms);
        self.migrations_done += other.migrations_done;
        self.migrations_refused += other.migrations_refused;
        self.migrations_aborted += other.migrations_aborted;
    }

    fn migrations(&self) -> u64 {
        self.migrations_done + self.migrations_refused + self.migrations_aborted
    }
}
