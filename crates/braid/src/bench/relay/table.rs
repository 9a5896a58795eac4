//! The tables `braid bench relay` prints (Markdown, as the README shows
//! them) and its progress lines.

use std::fmt::Write as _;

use super::bulk::BulkSample;
use super::load::{Kind, LoadRun};
use super::report::{Report, Target};
use super::setup::{BULK_MIDDLE, GUARD, LOAD_MIDDLE};
use super::stats::Summary;

/// `v` with `digits` decimals, or "-".
fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// "mean (min-max)" of `s`.
fn mean_range(s: Option<Summary>, digits: usize) -> String {
    s.map_or_else(
        || "-".into(),
        |s| {
            format!(
                "{:.digits$} ({:.digits$}-{:.digits$})",
                s.mean, s.min, s.max
            )
        },
    )
}

/// "median / p90" of `s`.
fn median_p90(s: Option<Summary>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{:.0} / {:.0}", s.median, s.p90))
}

fn met(t: &Target) -> &'static str {
    match t.met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "unknown",
    }
}

/// The three tables: bulk downloads, load runs, targets.
pub(super) fn table(r: &Report) -> String {
    let s = &r.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Bulk downloads: {} MB each, {} per exit, circuits {GUARD} > {BULK_MIDDLE} ({}) > exit; tor {}",
        s.size as f64 / 1e6,
        s.reps,
        s.bulk_shape.as_deref().unwrap_or("unshaped"),
        r.tor_version
    );
    out.push_str(
        "| exit | MB/s mean (min-max) | first byte ms median | exit CPU s / 100 MB mean (min-max) | exit peak RSS MB | failed |\n|---|---|---|---|---|---|\n",
    );
    for row in &r.bulk_rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.label,
            mean_range(row.mb_per_s, 2),
            num(row.ttfb_ms.map(|t| t.median), 0),
            mean_range(row.cpu_s_per_100mb, 2),
            num(row.peak_rss_mb, 1),
            row.failed
        );
    }
    let bulk_streams = s.load_streams.div_ceil(2);
    let _ = writeln!(
        out,
        "\nLoad runs: {} streams on as many circuits ({bulk_streams} x {} MB bulk from the start, {} x {} kB small every {} ms), {} per exit, circuits {GUARD} > {LOAD_MIDDLE} ({}) > exit",
        s.load_streams,
        s.load_bulk_size as f64 / 1e6,
        s.load_streams - bulk_streams,
        s.load_small_size as f64 / 1e3,
        s.small_gap.as_millis(),
        s.reps,
        s.load_shape
    );
    out.push_str(
        "| exit | small first byte under load ms median / p90 | small done ms median / p90 | small under load | bulk MB/s per stream median | bulk MB/s all streams | exit CPU s / 100 MB | exit peak RSS MB | failed streams |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in &r.load_rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}/{} | {} | {} | {} | {} | {} |",
            row.label,
            median_p90(row.small_ttfb_ms),
            median_p90(row.small_elapsed_ms),
            row.small_under_load,
            row.small_total,
            num(row.bulk_mb_per_s.map(|b| b.median), 2),
            num(row.bulk_aggregate_mb_per_s, 2),
            num(row.cpu_s_per_100mb, 2),
            num(row.peak_rss_mb, 1),
            row.failed_streams
        );
    }
    for row in &r.load_rows {
        let Some(kist) = row.exit.kist() else {
            continue;
        };
        let setting = if kist { "on" } else { "off" };
        let _ = match row.kist_as_configured {
            None => writeln!(
                out,
                "{}: no KIST figures from the relay",
                row.exit.nickname()
            ),
            Some(ok) => writeln!(
                out,
                "{} (KIST {setting}): {} KIST runs, a channel held at its limit {} times{}",
                row.exit.nickname(),
                num(row.kist_runs, 0),
                num(row.kist_channels_limited, 0),
                if ok { "" } else { ": NOT as configured" }
            ),
        };
    }
    out.push_str("\nTargets (Braid exit with KIST on)\n| target | Braid | reference | |\n|---|---|---|---|\n");
    for t in &r.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.what,
            num(t.braid, 2),
            num(t.reference, 2),
            met(t)
        );
    }
    out
}

/// The progress line of a bulk download.
pub(super) fn describe_bulk(s: &BulkSample) -> String {
    match &s.error {
        Some(e) => format!("bulk {:>15} run {}: FAILED: {e}", s.exit.label(), s.rep + 1),
        None => format!(
            "bulk {:>15} run {}: {:.2} MB/s, first byte {:.0} ms, exit CPU {:.2} s / 100 MB",
            s.exit.label(),
            s.rep + 1,
            s.mb_per_s,
            s.ttfb_ms,
            s.cpu_s_per_100mb
        ),
    }
}

/// The progress line of a load run.
pub(super) fn describe_load(r: &LoadRun) -> String {
    let mut ttfb: Vec<f64> = r
        .streams
        .iter()
        .filter(|s| s.kind == Kind::Small && s.ok)
        .map(|s| s.ttfb_ms)
        .collect();
    ttfb.sort_by(f64::total_cmp);
    let failed = r.streams.iter().filter(|s| !s.ok).count();
    let ttfb: Vec<String> = ttfb.iter().map(|t| format!("{t:.0}")).collect();
    format!(
        "load {:>15} run {}: {:.1} s, bulk {} MB/s in all, exit CPU {} s / 100 MB, small first bytes (ms) [{}]{}",
        r.exit.label(),
        r.rep + 1,
        r.duration_s,
        num(r.bulk_aggregate_mb_per_s, 2),
        num(r.cpu_s_per_100mb, 2),
        ttfb.join(" "),
        if failed > 0 {
            format!(", {failed} FAILED")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::time::Duration;

    use super::*;
    use crate::bench::relay::report::{BulkRow, LoadRow};
    use crate::bench::relay::setup::{Exit, Settings};
    use crate::bench::relay::stats::summary;

    fn report() -> Report {
        let settings = Settings {
            size: 50_000_000,
            reps: 3,
            load_shape: "2MiB:10ms".into(),
            bulk_shape: None,
            exit_bandwidth: None,
            load_streams: 20,
            load_bulk_size: 10_000_000,
            load_small_size: 20_000,
            small_gap: Duration::from_millis(500),
            base_port: 26000,
        };
        let bulk_row = |exit: Exit, mbs: &[f64], cpu: &[f64]| BulkRow {
            exit,
            label: exit.label(),
            runs: mbs.len(),
            failed: 0,
            mb_per_s: summary(mbs),
            ttfb_ms: summary(&[12.0, 14.0, 13.0]),
            cpu_s_per_100mb: summary(cpu),
            peak_rss_mb: Some(30.25),
        };
        let load_row = |exit: Exit, ttfb: Option<&[f64]>| LoadRow {
            exit,
            label: exit.label(),
            runs: 3,
            failed_streams: 1,
            bulk_mb_per_s: summary(&[0.2, 0.2]),
            bulk_aggregate_mb_per_s: Some(2.05),
            small_under_load: ttfb.map_or(0, <[f64]>::len),
            small_total: 30,
            small_ttfb_ms: ttfb.and_then(summary),
            small_elapsed_ms: ttfb.and_then(summary),
            cpu_s_per_100mb: Some(3.456),
            peak_rss_mb: None,
            kist_as_configured: exit.kist(),
            kist_runs: exit.kist().map(|k| if k { 1234.0 } else { 0.0 }),
            kist_channels_limited: exit.kist().map(|_| 7.0),
        };
        let bulk_rows = vec![
            bulk_row(Exit::Braid, &[10.0, 12.0], &[1.0, 1.2]),
            bulk_row(Exit::Ctor, &[9.0, 11.0], &[2.0, 2.0]),
        ];
        let load_rows = vec![
            load_row(Exit::Braid, Some(&[100.0, 300.0, 200.0])),
            load_row(Exit::BraidNoKist, None),
            load_row(Exit::Ctor, Some(&[150.0])),
        ];
        let targets = super::super::report::targets(&bulk_rows, &load_rows);
        Report {
            settings,
            tor_version: "0.4.9.11".into(),
            loadavg_start: String::new(),
            loadavg_end: String::new(),
            cpus: 2,
            bulk_rows,
            load_rows,
            targets,
            bulk_samples: Vec::new(),
            load_runs: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn tables_show_every_exit_and_target() {
        let text = table(&report());
        assert!(text.starts_with(
            "Bulk downloads: 50 MB each, 3 per exit, circuits relay0 > relay1 (unshaped) > exit; tor 0.4.9.11\n"
        ));
        assert!(
            text.contains(
                "| Braid, KIST on | 11.00 (10.00-12.00) | 13 | 1.10 (1.00-1.20) | 30.2 | 0 |"
            ),
            "{text}"
        );
        assert!(text.contains("| C-tor | 10.00 (9.00-11.00) |"), "{text}");
        assert!(text.contains(
            "Load runs: 20 streams on as many circuits (10 x 10 MB bulk from the start, 10 x 20 kB small every 500 ms), 3 per exit, circuits relay0 > relay2 (2MiB:10ms) > exit"
        ));
        assert!(
            text.contains(
                "| Braid, KIST on | 200 / 300 | 200 / 300 | 3/30 | 0.20 | 2.05 | 3.46 | - | 1 |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| Braid, KIST off | - | - | 0/30 |"),
            "{text}"
        );
        // Throughput 11 >= 10 met; CPU 1.1 <= 1.4 met; RSS unknown; first
        // byte 200 > 150 not met; KIST off unknown.
        assert!(
            text.contains("| bulk throughput >= C-tor's (mean MB/s) | 11.00 | 10.00 | met |"),
            "{text}"
        );
        assert!(
            text.contains("| exit CPU per 100 MB <= 0.7 x C-tor's (mean s) | 1.10 | 2.00 | met |")
        );
        assert!(text.contains("| exit peak RSS <= C-tor's (MB) | - | - | unknown |"));
        assert!(text.contains(
            "| small-stream first byte under load <= C-tor's (median ms) | 200.00 | 150.00 | NOT met |"
        ));
        assert_eq!(text.matches("| unknown |").count(), 2, "{text}");
    }

    #[test]
    fn progress_lines() {
        use crate::bench::relay::load::tests::stream;
        let s = BulkSample {
            exit: Exit::Ctor,
            rep: 1,
            ok: true,
            error: None,
            mb_per_s: 9.876,
            ttfb_ms: 12.4,
            exit_cpu_s: 1.0,
            cpu_s_per_100mb: 2.0,
        };
        assert_eq!(
            describe_bulk(&s),
            "bulk           C-tor run 2: 9.88 MB/s, first byte 12 ms, exit CPU 2.00 s / 100 MB"
        );
        let failed = BulkSample {
            ok: false,
            error: Some("reset".into()),
            ..s
        };
        assert!(describe_bulk(&failed).ends_with("run 2: FAILED: reset"));
        let mut streams = vec![
            stream(Kind::Bulk, 0.0, 10.0, 1000.0),
            stream(Kind::Small, 100.0, 250.0, 300.0),
            stream(Kind::Small, 200.0, 120.0, 300.0),
        ];
        streams[0].ok = false;
        let r = LoadRun {
            exit: Exit::BraidNoKist,
            rep: 0,
            duration_s: 12.34,
            bulk_aggregate_mb_per_s: None,
            exit_cpu_s: 1.0,
            cpu_s_per_100mb: Some(4.0),
            relay_metrics: None,
            metrics_error: None,
            streams,
        };
        assert_eq!(
            describe_load(&r),
            "load Braid, KIST off run 1: 12.3 s, bulk - MB/s in all, exit CPU 4.00 s / 100 MB, small first bytes (ms) [120 250], 1 FAILED"
        );
    }
}
