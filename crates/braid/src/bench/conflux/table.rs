//! What is printed: a line per transfer in the progress log, the table,
//! leg capacities and targets, and the short-upload table.

use std::fmt::Write as _;

use super::report::{LegFigure, Report, Sample, ShortSample};
use super::stats::middle_of;
use crate::bench::scrape::Direction;

/// One line about one sample, for the progress log.
pub(super) fn describe(s: &Sample) -> String {
    let mut t = format!(
        "{:<22} {:<8} run {}: ",
        s.client,
        s.direction.name(),
        s.rep + 1
    );
    if s.ok {
        let first = match s.direction {
            Direction::Download => "first byte",
            Direction::Upload => "connect",
        };
        let _ = write!(t, "{:.2} MB/s, {first} {:.0} ms", s.mb_per_s, s.ttfb_ms);
        if let Some(m) = s.server_mb_per_s {
            let _ = write!(t, ", server {m:.2} MB/s");
        }
        if let Some(c) = s.cpu_s_per_100mb {
            let _ = write!(t, ", {c:.2} CPU s/100 MB");
        }
        if let Some(shares) = shares_by_middle(&s.legs) {
            let _ = write!(t, ", by middle {shares}");
        }
        if let Some(p) = s.reorder_peak_bytes
            && s.kind == "braid"
        {
            let _ = write!(t, ", reorder peak {:.0} kB", p / 1000.0);
        }
        if let Some(e) = &s.error {
            let _ = write!(t, " (warning: {e})");
        }
    } else {
        let _ = write!(
            t,
            "FAILED: {}",
            s.error.as_deref().unwrap_or("unknown error")
        );
    }
    t
}

/// One line about one short upload, for the progress log.
pub(super) fn describe_short(s: &ShortSample) -> String {
    let mut t = format!("{:<22} short upload {}: ", s.client, s.rep + 1);
    if s.ok {
        let _ = write!(
            t,
            "{:.0} ms (connect {:.0} ms)",
            s.completion_ms, s.connect_ms
        );
        if let Some(shares) = shares_by_middle(&s.legs) {
            let _ = write!(t, ", by middle {shares}");
        }
        if let Some(e) = &s.error {
            let _ = write!(t, " (warning: {e})");
        }
    } else {
        let _ = write!(
            t,
            "FAILED: {}",
            s.error.as_deref().unwrap_or("unknown error")
        );
    }
    t
}

/// Each leg's share by middle, sorted by middle (`relay2 60% relay3
/// 40%`); `None` for a single leg.
fn shares_by_middle(legs: &[LegFigure]) -> Option<String> {
    if legs.len() < 2 {
        return None;
    }
    let mut shares: Vec<(&str, f64)> = legs.iter().map(|l| (middle_of(&l.path), l.share)).collect();
    shares.sort_by(|a, b| a.0.cmp(b.0));
    let shares: Vec<String> = shares
        .iter()
        .map(|(m, share)| format!("{m} {:.0}%", share * 100.0))
        .collect();
    Some(shares.join(" "))
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

/// Notes printed under the table when uploads ran.
const UPLOAD_NOTES: &str = "upload rows: MB/s from the SOCKS connection's success to the \
    server's answer; \"first byte\" is the connect time (SOCKS, BEGIN to CONNECTED); leg \
    shares from DATA bytes sent (Braid) or CIRC_BW WRITTEN (C-tor); no reorder peak (the \
    exit reorders an upload)";

/// The table, the leg capacities and the targets, as printed.
pub(super) fn table(r: &Report) -> String {
    let directions: Vec<&str> = r.directions.iter().map(|d| d.name()).collect();
    let mut out = format!(
        "Conflux, {} MB transfers ({}), {} runs each, tor {}\n\
         | scenario | direction | client | MB/s mean (min-max) | of leg sum | first byte ms | CPU s / 100 MB | exit CPU s / 100 MB | peak reorder kB | 2 x largest leg BDP kB | leg shares % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        r.size_bytes as f64 / 1e6,
        directions.join(", "),
        r.reps,
        r.tor_version
    );
    for sc in &r.scenarios {
        if let Some(e) = &sc.error {
            let _ = writeln!(out, "| {} | | failed: {e} | | | | | | | | |", sc.name);
            continue;
        }
        for row in &sc.rows {
            let rate = if row.runs == 0 {
                format!("all {} failed", row.failed)
            } else {
                let mut s = format!(
                    "{:.2} ({:.2}-{:.2})",
                    row.mb_per_s_mean, row.mb_per_s_min, row.mb_per_s_max
                );
                if row.failed > 0 {
                    let _ = write!(s, ", {} failed", row.failed);
                }
                s
            };
            let shares: Vec<String> = row
                .leg_shares
                .iter()
                .map(|s| format!("{:.0}", s * 100.0))
                .collect();
            let download = row.direction == Direction::Download;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                sc.name,
                row.direction.name(),
                row.client,
                rate,
                opt(row.fraction_of_leg_sum, |f| format!("{f:.3}")),
                row.ttfb_ms_mean,
                opt(row.cpu_s_per_100mb_mean, |c| format!("{c:.2}")),
                opt(row.exit_cpu_s_per_100mb_mean, |c| format!("{c:.2}")),
                if row.kind == "braid" && download {
                    opt(row.reorder_peak_bytes, |b| format!("{:.0}", b / 1000.0))
                } else if row.kind == "braid" {
                    "n/a".into()
                } else {
                    "-".into()
                },
                if row.kind == "leg" || !download {
                    "-".into()
                } else {
                    opt(row.two_bdp_bytes, |b| format!("{:.0}", b / 1000.0))
                },
                if shares.len() > 1 {
                    shares.join("/")
                } else {
                    "-".into()
                }
            );
        }
    }
    if r.directions.contains(&Direction::Upload) {
        let _ = writeln!(out, "\n{UPLOAD_NOTES}");
    }
    out.push_str("\nleg capacity (one circuit alone) and RTT measured by Braid:\n");
    for sc in r.scenarios.iter().filter(|s| s.error.is_none()) {
        let per_direction = |i: Option<usize>| -> String {
            sc.capacity
                .iter()
                .map(|c| {
                    let v = match i {
                        Some(i) => c.leg_mb_s.get(i).copied().flatten(),
                        None => c.sum_mb_s,
                    };
                    format!(
                        "{} {} MB/s",
                        c.direction.name(),
                        opt(v, |v| format!("{v:.2}"))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let legs: Vec<String> = sc
            .legs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!(
                    "{}>{}>{} ({} {}): {}, RTT {} ms ({})",
                    l.guard,
                    l.middle,
                    l.exit,
                    l.middle_rate,
                    l.middle_delay_one_way,
                    per_direction(Some(i)),
                    opt(sc.leg_rtt_ms.get(i).copied().flatten(), |m| format!(
                        "{m:.0}"
                    )),
                    sc.leg_rtt_source.get(i).copied().unwrap_or("none"),
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {}: {}; sum: {}; exit peak RSS {} MB",
            sc.name,
            legs.join("; "),
            per_direction(None),
            opt(sc.exit_peak_rss_mb, |m| format!("{m:.1}"))
        );
    }
    out.push_str("\ntargets:\n");
    for sc in &r.scenarios {
        for t in &sc.targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "unknown (figures missing)",
            };
            let _ = writeln!(out, "  {}: {verdict}", t.what);
        }
    }
    for t in &r.exit_targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "unknown (figures missing)",
        };
        let _ = writeln!(out, "  {}: {verdict}", t.what);
    }
    out
}

/// Notes printed under the short-upload table.
const SHORT_NOTES: &str = "completion: from the SOCKS connection's success (CONNECTED) to the \
    server's answer; connect: SOCKS, BEGIN to CONNECTED; clients in rounds, the order \
    alternating; Braid sends over the set its bulk transfers warmed (one per SOCKS isolation \
    key), C-tor over a fresh prebuilt set each time (fresh SOCKS credentials); \"with a \
    warning\": C-tor's upload did not use a linked set of the scenario's legs (still counted; \
    see short_samples in the JSON); leg shares from DATA bytes sent (Braid, scraped before and \
    after each upload) or CIRC_BW WRITTEN (C-tor)";

/// The short-upload table and, per scenario, the Braid scheduler of
/// lowest median, as printed.
pub(super) fn short_table(r: &Report) -> String {
    let mut out = format!(
        "Conflux, short uploads: {} kB each, {} per client, tor {}\n\
         | scenario | client | mean ms | median ms | min-max ms | failed | connect ms | leg shares % |\n\
         |---|---|---|---|---|---|---|---|\n",
        r.short_size_bytes as f64 / 1e3,
        r.short_reps,
        r.tor_version
    );
    for sc in &r.scenarios {
        if let Some(e) = &sc.error {
            let _ = writeln!(out, "| {} | failed: {e} | | | | | | |", sc.name);
            continue;
        }
        for row in &sc.short_rows {
            let shares: Vec<String> = row
                .leg_shares
                .iter()
                .map(|s| format!("{:.0}", s * 100.0))
                .collect();
            let (mean, median, range) = match row.completion_ms {
                Some(c) => (
                    format!("{:.0}", c.mean),
                    format!("{:.0}", c.median),
                    format!("{:.0}-{:.0}", c.min, c.max),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let mut failed = row.failed.to_string();
            if row.warned > 0 {
                let _ = write!(failed, " ({} with a warning)", row.warned);
            }
            let _ = writeln!(
                out,
                "| {} | {} | {mean} | {median} | {range} | {failed} | {} | {} |",
                sc.name,
                row.client,
                opt(row.connect_ms_mean, |c| format!("{c:.0}")),
                if shares.len() > 1 {
                    shares.join("/")
                } else {
                    "-".into()
                }
            );
        }
    }
    let _ = writeln!(out, "\n{SHORT_NOTES}");
    out.push_str("\nlowest median completion among Braid's schedulers:\n");
    for sc in r.scenarios.iter().filter(|s| s.error.is_none()) {
        let medians: Vec<String> = sc
            .short_rows
            .iter()
            .filter(|row| row.kind == "braid")
            .map(|row| {
                format!(
                    "{} {}",
                    row.client,
                    opt(row.completion_ms.map(|c| c.median), |m| format!("{m:.1}"))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {}: {} (medians ms: {})",
            sc.name,
            sc.short_lowest_median_scheduler
                .unwrap_or("none (no Braid short upload succeeded)"),
            medians.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::conflux::fixtures::{
        short, short_report, summarised_uploads_only, two_way_report,
    };
    use crate::bench::conflux::scenario::Who;

    #[test]
    fn table_both_ways() {
        let report = two_way_report();
        let t = table(&report);
        assert!(
            t.contains("| uniform | download | Braid lowrtt | 2.92 (2.90-2.95) | 0.975 | 100 |"),
            "{t}"
        );
        assert!(
            t.contains("| uniform | download | C-tor | 2.80 (2.80-2.80), 1 failed |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| uniform | upload | Braid lowrtt | 1.80 (1.80-1.80) | 0.900 | 30 | 1.00 | 0.50 | n/a | - | 75/25 |"
            ),
            "{t}"
        );
        assert!(t.contains("(download, upload)"), "{t}");
        assert!(t.contains(UPLOAD_NOTES), "{t}");
        assert!(
            t.contains("(2MiB 10ms): download 2.00 MB/s, upload 1.50 MB/s, RTT 40 ms"),
            "{t}"
        );
        assert!(
            t.contains("sum: download 3.00 MB/s, upload 2.00 MB/s"),
            "{t}"
        );
        assert!(
            t.contains("uniform upload: Braid lowrtt >= C-tor's Conflux: NOT met"),
            "{t}"
        );
        assert!(
            t.contains("uniform download: Braid lowrtt >= C-tor's Conflux: met"),
            "{t}"
        );
    }

    #[test]
    fn table_of_uploads_only() {
        let report = summarised_uploads_only();
        let t = table(&report);
        assert!(!t.contains("| download |"), "{t}");
        assert!(t.contains("(upload), 1 runs each"), "{t}");
        assert!(t.contains(": upload 1.00 MB/s, RTT 40 ms"), "{t}");
        assert!(t.contains("unknown (figures missing)"), "{t}");
    }

    #[test]
    fn short_table_and_lowest_median() {
        let report = short_report();
        let t = short_table(&report);
        assert!(
            t.starts_with("Conflux, short uploads: 100 kB each, 3 per client, tor 0.4.9.11\n"),
            "{t}"
        );
        assert!(
            t.contains("| scenario | client | mean ms | median ms | min-max ms | failed |"),
            "{t}"
        );
        assert!(
            t.contains("| uniform | failed: the network did not start | | | | | | |"),
            "{t}"
        );
        assert!(
            t.contains("| rtt-1-5 | Braid ecf | 418 | 185 | 170-900 | 1 | 11 | 90/10 |"),
            "{t}"
        );
        assert!(
            t.contains("| rtt-1-5 | Braid lowrtt | 257 | 190 | 180-400 | 0 | 11 | 75/25 |"),
            "{t}"
        );
        assert!(
            t.contains("| rtt-1-5 | leg 2 alone (Braid) | 601 | 601 | 600-602 | 0 | 11 | - |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| rtt-1-5 | C-tor | 400 | 300 | 300-600 | 0 (1 with a warning) | 11 | 33/67 |"
            ),
            "{t}"
        );
        assert!(t.contains(SHORT_NOTES), "{t}");
        assert!(
            t.contains(
                "  rtt-1-5: ecf (medians ms: Braid minrtt 210.0, Braid lowrtt 190.0, Braid ecf 185.0)"
            ),
            "{t}"
        );
        // The failed scenario has no verdict line.
        assert!(!t.contains("  uniform:"), "{t}");
        // A client whose uploads all failed.
        let mut all_failed = report.scenarios[1].clone();
        all_failed.short_rows.truncate(1);
        all_failed.short_rows[0].completion_ms = None;
        all_failed.short_rows[0].connect_ms_mean = None;
        all_failed.short_rows[0].failed = 3;
        all_failed.short_lowest_median_scheduler = None;
        let t = short_table(&Report {
            scenarios: vec![all_failed],
            ..report
        });
        assert!(
            t.contains("| rtt-1-5 | leg 1 alone (Braid) | - | - | - | 3 | n/a | - |"),
            "{t}"
        );
        assert!(
            t.contains("  rtt-1-5: none (no Braid short upload succeeded) (medians ms: )"),
            "{t}"
        );
    }

    #[test]
    fn short_upload_in_the_log() {
        let s = short(
            Who::Braid("ecf"),
            0,
            123.4,
            &[("relay3", 0.25), ("relay2", 0.75)],
        );
        let line = describe_short(&s);
        assert_eq!(
            line,
            "Braid ecf              short upload 1: 123 ms (connect 10 ms), by middle relay2 75% relay3 25%"
        );
        let mut bad = s.clone();
        bad.ok = false;
        bad.error = Some("no complete upload within 62 s".into());
        assert!(
            describe_short(&bad)
                .ends_with("short upload 1: FAILED: no complete upload within 62 s")
        );
        assert_eq!(shares_by_middle(&bad.legs[..1]), None);
    }
}
