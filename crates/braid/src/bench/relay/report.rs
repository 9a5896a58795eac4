//! The report of `braid bench relay`: per-exit rows of the bulk downloads
//! and of the load runs, the targets, and every sample (the JSON
//! file).

use serde::Serialize;

use super::bulk::BulkSample;
use super::load::{Kind, LoadRun, under_load};
use super::metrics::kist_as_configured;
use super::setup::{BULK_EXITS, Exit, LOAD_EXITS, Settings};
use super::stats::{Summary, mean, summary};

/// The exit CPU per 100 MB the target allows, as a fraction of C-tor's.
pub(super) const CPU_TARGET: f64 = 0.7;

/// An exit's bulk downloads.
#[derive(Debug, Clone, Serialize)]
pub(super) struct BulkRow {
    pub(super) exit: Exit,
    pub(super) label: &'static str,
    /// Successful downloads.
    pub(super) runs: usize,
    pub(super) failed: usize,
    pub(super) mb_per_s: Option<Summary>,
    pub(super) ttfb_ms: Option<Summary>,
    pub(super) cpu_s_per_100mb: Option<Summary>,
    /// `VmHWM` after the bulk downloads (MB).
    pub(super) peak_rss_mb: Option<f64>,
}

/// An exit's load runs.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LoadRow {
    pub(super) exit: Exit,
    pub(super) label: &'static str,
    pub(super) runs: usize,
    /// Streams of any kind that failed.
    pub(super) failed_streams: usize,
    /// Per bulk stream (MB/s).
    pub(super) bulk_mb_per_s: Option<Summary>,
    /// Per run: every bulk stream's bytes over the bulk streams' span.
    pub(super) bulk_aggregate_mb_per_s: Option<f64>,
    /// Small streams under load ([`under_load`]) and all small streams.
    pub(super) small_under_load: usize,
    pub(super) small_total: usize,
    /// First byte of the small streams under load (ms).
    pub(super) small_ttfb_ms: Option<Summary>,
    /// Completion of the small streams under load (ms).
    pub(super) small_elapsed_ms: Option<Summary>,
    pub(super) cpu_s_per_100mb: Option<f64>,
    /// `VmHWM` at the end of the benchmark (MB).
    pub(super) peak_rss_mb: Option<f64>,
    /// A Braid exit: whether its figures showed KIST as configured in every
    /// run that has them (`None`: no figures).
    pub(super) kist_as_configured: Option<bool>,
    /// A Braid exit's KIST runs and channels held back at their limit, over
    /// the runs with figures.
    pub(super) kist_runs: Option<f64>,
    pub(super) kist_channels_limited: Option<f64>,
}

/// One of the targets, measured.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Target {
    pub(super) what: &'static str,
    /// The Braid figure compared.
    pub(super) braid: Option<f64>,
    /// What it is compared with (C-tor's figure, or Braid's with KIST off).
    pub(super) reference: Option<f64>,
    /// `None` when a figure is missing.
    pub(super) met: Option<bool>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub(super) settings: Settings,
    pub(super) tor_version: String,
    /// `/proc/loadavg` when the network was up and at the end: what else
    /// ran on the machine.
    pub(super) loadavg_start: String,
    pub(super) loadavg_end: String,
    pub(super) cpus: usize,
    pub(super) bulk_rows: Vec<BulkRow>,
    pub(super) load_rows: Vec<LoadRow>,
    pub(super) targets: Vec<Target>,
    pub(super) bulk_samples: Vec<BulkSample>,
    pub(super) load_runs: Vec<LoadRun>,
    /// Why the benchmark stopped early.
    pub(super) error: Option<String>,
}

/// Peak RSS of each exit, by when it was read.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PeakRss {
    pub(super) after_bulk: Option<f64>,
    pub(super) at_end: Option<f64>,
}

/// `exit`'s row of bulk downloads.
pub(super) fn bulk_row(exit: Exit, samples: &[BulkSample], rss: PeakRss) -> BulkRow {
    let mine: Vec<&BulkSample> = samples.iter().filter(|s| s.exit == exit).collect();
    let ok: Vec<&BulkSample> = mine.iter().copied().filter(|s| s.ok).collect();
    let figures = |f: fn(&BulkSample) -> f64| {
        summary(
            &ok.iter()
                .map(|s| f(s))
                .filter(|x| x.is_finite())
                .collect::<Vec<_>>(),
        )
    };
    BulkRow {
        exit,
        label: exit.label(),
        runs: ok.len(),
        failed: mine.len() - ok.len(),
        mb_per_s: figures(|s| s.mb_per_s),
        ttfb_ms: figures(|s| s.ttfb_ms),
        cpu_s_per_100mb: figures(|s| s.cpu_s_per_100mb),
        peak_rss_mb: rss.after_bulk,
    }
}

/// `exit`'s row of load runs.
pub(super) fn load_row(exit: Exit, runs: &[LoadRun], rss: PeakRss) -> LoadRow {
    let mine: Vec<&LoadRun> = runs.iter().filter(|r| r.exit == exit).collect();
    let mut bulk = Vec::new();
    let mut ttfb = Vec::new();
    let mut elapsed = Vec::new();
    let (mut small_total, mut failed_streams) = (0, 0);
    for run in &mine {
        let bulk_streams = run.streams.iter().filter(|s| s.kind == Kind::Bulk).count();
        for s in &run.streams {
            failed_streams += usize::from(!s.ok);
            match s.kind {
                Kind::Bulk if s.ok => bulk.push(s.mb_per_s),
                Kind::Bulk => {}
                Kind::Small => {
                    small_total += 1;
                    if under_load(s, bulk_streams) {
                        ttfb.push(s.ttfb_ms);
                        elapsed.push(s.elapsed_ms);
                    }
                }
            }
        }
    }
    let checks: Vec<bool> = mine
        .iter()
        .filter_map(|r| kist_as_configured(exit.kist()?, r.relay_metrics.as_ref()?))
        .collect();
    let kist_sum = |name: &str| {
        let v: Vec<f64> = mine
            .iter()
            .filter_map(|r| r.relay_metrics.as_ref()?.get(name).copied())
            .collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let finite = |v: Vec<Option<f64>>| {
        v.into_iter()
            .flatten()
            .filter(|x| x.is_finite())
            .collect::<Vec<_>>()
    };
    LoadRow {
        exit,
        label: exit.label(),
        runs: mine.len(),
        failed_streams,
        bulk_mb_per_s: summary(&bulk),
        bulk_aggregate_mb_per_s: mean(&finite(
            mine.iter().map(|r| r.bulk_aggregate_mb_per_s).collect(),
        )),
        small_under_load: ttfb.len(),
        small_total,
        small_ttfb_ms: summary(&ttfb),
        small_elapsed_ms: summary(&elapsed),
        cpu_s_per_100mb: mean(&finite(mine.iter().map(|r| r.cpu_s_per_100mb).collect())),
        peak_rss_mb: rss.at_end,
        kist_as_configured: (!checks.is_empty()).then(|| checks.iter().all(|c| *c)),
        kist_runs: kist_sum("kist_runs_total"),
        kist_channels_limited: kist_sum("kist_channels_limited_total"),
    }
}

/// The rows of every exit, `rss` in the order of [`LOAD_EXITS`].
pub(super) fn rows(
    bulk: &[BulkSample],
    load: &[LoadRun],
    rss: &[PeakRss; 3],
) -> (Vec<BulkRow>, Vec<LoadRow>) {
    let rss_of = |exit: Exit| {
        LOAD_EXITS
            .iter()
            .position(|e| *e == exit)
            .and_then(|i| rss.get(i))
            .copied()
            .unwrap_or_default()
    };
    (
        BULK_EXITS
            .iter()
            .map(|&e| bulk_row(e, bulk, rss_of(e)))
            .collect(),
        LOAD_EXITS
            .iter()
            .map(|&e| load_row(e, load, rss_of(e)))
            .collect(),
    )
}

/// The targets: Braid's exit (KIST on) against C-tor's, and
/// against itself with KIST off. Throughput and CPU from the bulk
/// downloads (means); peak RSS at the end (both carried the same
/// streams); first bytes of the small streams under load (medians).
pub(super) fn targets(bulk: &[BulkRow], load: &[LoadRow]) -> Vec<Target> {
    let b = |exit: Exit| bulk.iter().find(|r| r.exit == exit);
    let l = |exit: Exit| load.iter().find(|r| r.exit == exit);
    let bulk_mean =
        |exit: Exit, f: fn(&BulkRow) -> Option<Summary>| b(exit).and_then(f).map(|s| s.mean);
    let ttfb = |exit: Exit| l(exit).and_then(|r| r.small_ttfb_ms).map(|s| s.median);
    let rss = |exit: Exit| l(exit).and_then(|r| r.peak_rss_mb);
    let compare =
        |what, braid: Option<f64>, reference: Option<f64>, ok: fn(f64, f64) -> bool| Target {
            what,
            braid,
            reference,
            met: braid.zip(reference).map(|(x, r)| ok(x, r)),
        };
    vec![
        compare(
            "bulk throughput >= C-tor's (mean MB/s)",
            bulk_mean(Exit::Braid, |r| r.mb_per_s),
            bulk_mean(Exit::Ctor, |r| r.mb_per_s),
            |x, r| x >= r,
        ),
        compare(
            "exit CPU per 100 MB <= 0.7 x C-tor's (mean s)",
            bulk_mean(Exit::Braid, |r| r.cpu_s_per_100mb),
            bulk_mean(Exit::Ctor, |r| r.cpu_s_per_100mb),
            |x, r| x <= CPU_TARGET * r,
        ),
        compare(
            "exit peak RSS <= C-tor's (MB)",
            rss(Exit::Braid),
            rss(Exit::Ctor),
            |x, r| x <= r,
        ),
        compare(
            "small-stream first byte under load <= C-tor's (median ms)",
            ttfb(Exit::Braid),
            ttfb(Exit::Ctor),
            |x, r| x <= r,
        ),
        compare(
            "small-stream first byte under load lower with KIST on than off (median ms)",
            ttfb(Exit::Braid),
            ttfb(Exit::BraidNoKist),
            |x, r| x < r,
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;
    use crate::bench::relay::load::StreamSample;
    use crate::bench::relay::load::tests::stream;

    fn bulk(exit: Exit, rep: usize, mb_per_s: f64, ttfb_ms: f64, cpu: f64) -> BulkSample {
        BulkSample {
            exit,
            rep,
            ok: true,
            error: None,
            mb_per_s,
            ttfb_ms,
            exit_cpu_s: cpu / 2.0,
            cpu_s_per_100mb: cpu,
        }
    }

    /// A run through `exit`: two bulk streams over the whole run and two
    /// small ones under them with first bytes `ttfb`, and one small stream
    /// after the load.
    fn run(exit: Exit, rep: usize, ttfb: [f64; 2]) -> LoadRun {
        let mut streams = vec![
            stream(Kind::Bulk, 0.0, 100.0, 10_000.0),
            stream(Kind::Small, 500.0, ttfb[0], ttfb[0] + 20.0),
            stream(Kind::Bulk, 0.0, 100.0, 8_000.0),
            stream(Kind::Small, 1000.0, ttfb[1], ttfb[1] + 20.0),
            stream(Kind::Small, 11_000.0, 5.0, 10.0),
        ];
        super::super::load::mark_bulk_running(&mut streams);
        LoadRun {
            exit,
            rep,
            duration_s: 10.0,
            bulk_aggregate_mb_per_s: Some(2.0),
            exit_cpu_s: 1.0,
            cpu_s_per_100mb: Some(5.0),
            relay_metrics: None,
            metrics_error: None,
            streams,
        }
    }

    fn rss(braid: f64, nokist: f64, ctor: f64) -> [PeakRss; 3] {
        let at = |v| PeakRss {
            after_bulk: Some(v - 1.0),
            at_end: Some(v),
        };
        [at(braid), at(nokist), at(ctor)]
    }

    #[test]
    fn rows_summarise_each_exit() {
        let mut samples = vec![
            bulk(Exit::Braid, 0, 10.0, 20.0, 1.0),
            bulk(Exit::Ctor, 0, 8.0, 30.0, 2.0),
            bulk(Exit::Ctor, 1, 12.0, 50.0, 4.0),
            bulk(Exit::Braid, 1, 14.0, 40.0, 3.0),
        ];
        samples.push(BulkSample {
            ok: false,
            error: Some("reset".into()),
            ..bulk(Exit::Braid, 2, 0.0, f64::NAN, f64::NAN)
        });
        let load = vec![
            run(Exit::Braid, 0, [100.0, 200.0]),
            run(Exit::Ctor, 0, [300.0, 400.0]),
            run(Exit::BraidNoKist, 0, [500.0, 600.0]),
            run(Exit::Braid, 1, [300.0, 400.0]),
        ];
        let (b, l) = rows(&samples, &load, &rss(50.0, 40.0, 60.0));
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].exit, b[0].runs, b[0].failed), (Exit::Braid, 2, 1));
        assert_eq!(b[0].mb_per_s.unwrap().mean, 12.0);
        assert_eq!(b[0].ttfb_ms.unwrap().median, 30.0);
        assert_eq!(b[0].cpu_s_per_100mb.unwrap().mean, 2.0);
        assert_eq!(b[0].peak_rss_mb, Some(49.0));
        assert_eq!((b[1].exit, b[1].runs, b[1].failed), (Exit::Ctor, 2, 0));
        assert_eq!(b[1].peak_rss_mb, Some(59.0));
        assert_eq!(l.len(), 3);
        let braid = &l[0];
        assert_eq!((braid.runs, braid.failed_streams), (2, 0));
        // Two of three small streams per run were under the load.
        assert_eq!((braid.small_under_load, braid.small_total), (4, 6));
        let t = braid.small_ttfb_ms.unwrap();
        assert_eq!((t.median, t.p90, t.max), (250.0, 400.0, 400.0));
        assert_eq!(braid.small_elapsed_ms.unwrap().min, 120.0);
        assert_eq!(braid.bulk_mb_per_s.unwrap().n, 4);
        assert_eq!(braid.bulk_aggregate_mb_per_s, Some(2.0));
        assert_eq!(braid.cpu_s_per_100mb, Some(5.0));
        assert_eq!(braid.peak_rss_mb, Some(50.0));
        assert_eq!(l[1].exit, Exit::BraidNoKist);
        assert_eq!(l[2].small_ttfb_ms.unwrap().median, 350.0);

        let t = targets(&b, &l);
        assert_eq!(t.len(), 5);
        // 12 >= 10 MB/s; CPU 2.0 <= 0.7 x 3.0; RSS 50 <= 60; first byte
        // 250 <= 350 ms; 250 < 550 ms with KIST off.
        assert!(t.iter().all(|x| x.met == Some(true)), "{t:#?}");
        assert_eq!((t[0].braid, t[0].reference), (Some(12.0), Some(10.0)));
        assert_eq!((t[4].braid, t[4].reference), (Some(250.0), Some(550.0)));
    }

    #[test]
    fn targets_not_met_and_missing() {
        let samples = vec![
            bulk(Exit::Braid, 0, 9.0, 20.0, 2.2),
            bulk(Exit::Ctor, 0, 10.0, 30.0, 3.0),
        ];
        let load = vec![
            run(Exit::Braid, 0, [400.0, 400.0]),
            run(Exit::Ctor, 0, [300.0, 300.0]),
            run(Exit::BraidNoKist, 0, [400.0, 400.0]),
        ];
        let (b, l) = rows(&samples, &load, &rss(61.0, 40.0, 60.0));
        let met: Vec<Option<bool>> = targets(&b, &l).iter().map(|t| t.met).collect();
        // 9 < 10 MB/s; 2.2 > 2.1 s; 61 > 60 MB; 400 > 300 ms; 400 = 400
        // ms is not lower.
        assert_eq!(met, [Some(false); 5]);

        // No C-tor downloads, no small stream under load: unknown.
        let mut lonely = run(Exit::Braid, 0, [1.0, 1.0]);
        lonely.streams.retain(|s| s.kind == Kind::Small);
        super::super::load::mark_bulk_running(&mut lonely.streams);
        let (b, l) = rows(&samples[..1], &[lonely], &[PeakRss::default(); 3]);
        let t = targets(&b, &l);
        assert!(t.iter().all(|x| x.met.is_none()), "{t:#?}");
        assert_eq!(t[0].braid, Some(9.0));
        assert_eq!(l[0].small_under_load, 0);
        assert_eq!(l[0].small_total, 3);
    }

    #[test]
    fn kist_figures_of_the_braid_exits() {
        let figures = |enabled: f64, runs: f64| {
            let text = format!(
                "braid_relay_kist_enabled {enabled}\nbraid_relay_kist_runs_total {runs}\n\
                 braid_relay_kist_channels_limited_total 2\n"
            );
            Some(super::super::metrics::figures(&text))
        };
        let mut on = run(Exit::Braid, 0, [1.0, 1.0]);
        on.relay_metrics = figures(1.0, 40.0);
        let mut on2 = run(Exit::Braid, 1, [1.0, 1.0]);
        on2.relay_metrics = figures(1.0, 60.0);
        let mut off = run(Exit::BraidNoKist, 0, [1.0, 1.0]);
        off.relay_metrics = figures(0.0, 0.0);
        let ctor = run(Exit::Ctor, 0, [1.0, 1.0]);
        let runs = [on.clone(), on2, off.clone(), ctor];
        let rss = PeakRss::default();
        let row = load_row(Exit::Braid, &runs, rss);
        assert_eq!(row.kist_as_configured, Some(true));
        assert_eq!(
            (row.kist_runs, row.kist_channels_limited),
            (Some(100.0), Some(4.0))
        );
        assert_eq!(
            load_row(Exit::BraidNoKist, &runs, rss).kist_as_configured,
            Some(true)
        );
        let row = load_row(Exit::Ctor, &runs, rss);
        assert_eq!((row.kist_as_configured, row.kist_runs), (None, None));
        // KIST that never ran on the exit with kist = true, or ran on the
        // other: not as configured.
        on.relay_metrics = figures(1.0, 0.0);
        off.relay_metrics = figures(1.0, 5.0);
        let runs = [on, off];
        assert_eq!(
            load_row(Exit::Braid, &runs, rss).kist_as_configured,
            Some(false)
        );
        assert_eq!(
            load_row(Exit::BraidNoKist, &runs, rss).kist_as_configured,
            Some(false)
        );
    }

    #[test]
    fn failed_streams_are_counted_not_timed() {
        let mut r = run(Exit::Ctor, 0, [100.0, 100.0]);
        r.streams.push(StreamSample {
            ok: false,
            error: Some("reset".into()),
            ..stream(Kind::Small, 600.0, f64::NAN, 50.0)
        });
        let row = load_row(Exit::Ctor, &[r], PeakRss::default());
        assert_eq!(row.failed_streams, 1);
        assert_eq!((row.small_under_load, row.small_total), (2, 4));
        assert_eq!(row.small_ttfb_ms.unwrap().max, 100.0);
    }
}
