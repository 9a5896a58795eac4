//! Inputs shared by the tests of `bench conflux`: reports, samples and
//! clients, and the figures several modules' tests start from.

use super::report::{
    LINK_NOTE, LegFigure, Report, Sample, ScenarioReport, ShortSample, scenario_report,
};
use super::run::Running;
use super::scenario::{Who, scenarios};
use super::stats::{short_row, summarise};
use crate::bench::scrape::Direction;

/// A report of `scenarios` and bulk `samples` (`size` bytes, `reps`
/// runs, `directions`) with `short` short-upload samples of 100 kB,
/// `short_reps` each.
pub(super) fn test_report(
    size: u64,
    reps: usize,
    directions: Vec<Direction>,
    scenarios: Vec<ScenarioReport>,
    samples: Vec<Sample>,
    short_reps: usize,
    short: Vec<ShortSample>,
) -> Report {
    Report {
        size_bytes: size,
        reps,
        directions,
        tor_version: "0.4.9.11".into(),
        link_emulation: LINK_NOTE,
        metrics_available: true,
        scenarios,
        exit_targets: Vec::new(),
        samples,
        short_size_bytes: 100_000,
        short_reps,
        short_samples: short,
    }
}

/// A successful transfer by `client` in the uniform scenario at `mb`
/// MB/s, with a leg per `(share, congestion-control minimum RTT)`.
pub(super) fn sample(
    client: Who,
    direction: Direction,
    rep: usize,
    mb: f64,
    legs: &[(f64, Option<f64>)],
) -> Sample {
    Sample {
        scenario: "uniform".into(),
        client: client.label(),
        kind: client.kind(),
        direction,
        rep,
        ok: true,
        error: None,
        bytes: 1,
        mb_per_s: mb,
        server_mb_per_s: None,
        ttfb_ms: match direction {
            Direction::Download => 100.0,
            Direction::Upload => 30.0,
        },
        cpu_s_per_100mb: Some(1.0),
        exit_cpu_s_per_100mb: Some(0.5),
        tunnel: Some("1".into()),
        reorder_peak_bytes: matches!(client, Who::Braid(_)).then_some(100_000.0),
        reorder_sampled_max_bytes: None,
        legs: legs
            .iter()
            .enumerate()
            .map(|(i, (share, rtt))| LegFigure {
                leg: i,
                path: match client {
                    Who::Leg(j) => format!("relay{j}>relay{}>exit0", j + 2),
                    _ => format!("relay{i}>relay{}>exit0", i + 2),
                },
                bytes: 1,
                share: *share,
                delivered_bytes: None,
                rtt_ms: None,
                min_rtt_ms: *rtt,
                link_rtt_ms: None,
            })
            .collect(),
        series: None,
        metrics_scrapes: 10,
        metrics_failures: 0,
    }
}

/// A client without a process (no CPU or memory figures).
pub(super) fn running(who: Who) -> Running {
    Running {
        who,
        socks: ([127, 0, 0, 1], 1).into(),
        pid: u32::MAX,
        metrics: None,
        _proxy: None,
    }
}

/// A successful short upload of 100 kB by `who` in the rtt-1-5 scenario,
/// completed in `ms`, with a leg per `(middle, share)`.
pub(super) fn short(who: Who, rep: usize, ms: f64, shares: &[(&str, f64)]) -> ShortSample {
    ShortSample {
        scenario: "rtt-1-5".into(),
        client: who.label(),
        kind: who.kind(),
        rep,
        ok: true,
        error: None,
        bytes: 100_000,
        completion_ms: ms,
        connect_ms: 10.0 + rep as f64,
        tunnel: Some("1".into()),
        legs: shares
            .iter()
            .enumerate()
            .map(|(i, (middle, share))| LegFigure {
                leg: i,
                path: format!("relay{i}>{middle}>exit0"),
                bytes: (share * 100_000.0) as u64,
                delivered_bytes: None,
                share: *share,
                rtt_ms: None,
                min_rtt_ms: None,
                link_rtt_ms: None,
            })
            .collect(),
    }
}

/// The uniform scenario's clients (both legs alone, Braid lowrtt, C-tor)
/// and their samples each way: downloads over legs of 2 and 1 MB/s,
/// uploads over legs of 1.5 and 0.5 MB/s, and a failed C-tor download.
pub(super) fn two_way() -> (Vec<Running>, Vec<Sample>) {
    use Direction::{Download as D, Upload as U};
    let clients = vec![
        running(Who::Leg(0)),
        running(Who::Leg(1)),
        running(Who::Braid("lowrtt")),
        running(Who::Ctor),
    ];
    let mut samples = vec![
        sample(Who::Leg(0), D, 0, 2.0, &[(1.0, Some(50.0))]),
        sample(Who::Leg(0), D, 1, 2.0, &[(1.0, Some(40.0))]),
        sample(Who::Leg(1), D, 0, 1.0, &[(1.0, Some(100.0))]),
        sample(Who::Braid("lowrtt"), D, 0, 2.9, &[(0.6, None), (0.4, None)]),
        sample(
            Who::Braid("lowrtt"),
            D,
            1,
            2.95,
            &[(0.5, None), (0.5, None)],
        ),
        sample(Who::Ctor, D, 0, 2.8, &[(0.7, None), (0.3, None)]),
        // Uploads: legs of 1.5 and 0.5 MB/s (the second's RTT from its
        // congestion control, lower than any download's); Braid at 0.9
        // of their sum and below C-tor.
        sample(Who::Leg(0), U, 0, 1.5, &[(1.0, None)]),
        sample(Who::Leg(1), U, 0, 0.5, &[(1.0, Some(90.0))]),
        sample(
            Who::Braid("lowrtt"),
            U,
            0,
            1.8,
            &[(0.75, None), (0.25, None)],
        ),
        sample(Who::Ctor, U, 0, 1.9, &[(0.5, None), (0.5, None)]),
    ];
    let mut failed = sample(Who::Ctor, D, 1, 0.0, &[]);
    failed.ok = false;
    samples.push(failed);
    (clients, samples)
}

/// [`two_way`] summarised, in a report of 20 MB transfers, 2 runs each.
pub(super) fn two_way_report() -> Report {
    use Direction::{Download as D, Upload as U};
    let (clients, samples) = two_way();
    let r = summarise(&scenarios()[0], &clients, &samples, &[D, U]);
    test_report(20_000_000, 2, vec![D, U], vec![r], samples, 0, Vec::new())
}

/// The uniform scenario with uploads only: legs of 1 MB/s each and Braid
/// ECF at 1.96 MB/s, no C-tor client.
pub(super) fn uploads_only() -> (Vec<Running>, Vec<Sample>) {
    use Direction::Upload as U;
    let clients = vec![
        running(Who::Leg(0)),
        running(Who::Leg(1)),
        running(Who::Braid("ecf")),
    ];
    let samples = vec![
        sample(Who::Leg(0), U, 0, 1.0, &[(1.0, Some(40.0))]),
        sample(Who::Leg(1), U, 0, 1.0, &[(1.0, Some(40.0))]),
        sample(Who::Braid("ecf"), U, 0, 1.96, &[(0.5, None), (0.5, None)]),
    ];
    (clients, samples)
}

/// The clients of the rtt-1-5 scenario, in table order, and three rounds
/// of their short uploads, with a C-tor upload over a single circuit (a
/// warning) and a failed ECF upload.
pub(super) fn short_uploads() -> ([Who; 6], Vec<ShortSample>) {
    let whos = [
        Who::Leg(0),
        Who::Leg(1),
        Who::Braid("minrtt"),
        Who::Braid("lowrtt"),
        Who::Braid("ecf"),
        Who::Ctor,
    ];
    let mut samples = Vec::new();
    for rep in 0..3 {
        let r = rep as f64;
        samples.push(short(Who::Leg(0), rep, 150.0 + r, &[("relay2", 1.0)]));
        samples.push(short(Who::Leg(1), rep, 600.0 + r, &[("relay3", 1.0)]));
        samples.push(short(
            Who::Braid("minrtt"),
            rep,
            200.0 + 10.0 * r,
            &[("relay2", 1.0), ("relay3", 0.0)],
        ));
        // lowrtt: the leg order of the set differs from the
        // scenario's; shares follow the middles.
        samples.push(short(
            Who::Braid("lowrtt"),
            rep,
            [400.0, 180.0, 190.0][rep],
            &[("relay3", 0.25), ("relay2", 0.75)],
        ));
        samples.push(short(
            Who::Braid("ecf"),
            rep,
            [185.0, 170.0, 900.0][rep],
            &[("relay2", 0.8 + 0.1 * r), ("relay3", 0.2 - 0.1 * r)],
        ));
        samples.push(short(
            Who::Ctor,
            rep,
            300.0,
            &[("relay2", 0.5), ("relay3", 0.5)],
        ));
    }
    // One C-tor upload over a single circuit: counted, with a warning.
    if let Some(c) = samples.iter_mut().rev().find(|s| s.kind == "ctor") {
        c.error = Some("C-tor used a GENERAL circuit with 1 legs".into());
        c.completion_ms = 600.0;
        c.legs = short(Who::Ctor, 0, 0.0, &[("relay3", 1.0)]).legs;
    }
    // A failed ECF upload counts as a failure, not a time.
    let mut failed = short(Who::Braid("ecf"), 3, 1.0, &[]);
    failed.ok = false;
    failed.error = Some("timed out".into());
    samples.push(failed);
    (whos, samples)
}

/// [`short_uploads`] summarised in a report with a failed scenario
/// before it.
pub(super) fn short_report() -> Report {
    let sc = &scenarios()[4];
    let (whos, samples) = short_uploads();
    let mut r = scenario_report(sc);
    r.short_rows = whos.iter().map(|&w| short_row(sc, w, &samples)).collect();
    r.short_lowest_median_scheduler = Some("ecf");
    let failed_scenario = ScenarioReport {
        error: Some("the network did not start".into()),
        ..scenario_report(&scenarios()[0])
    };
    test_report(
        2_000_000,
        1,
        vec![Direction::Upload],
        vec![failed_scenario, r],
        Vec::new(),
        3,
        samples,
    )
}

/// [`uploads_only`] summarised, in a report of 5 MB uploads, 1 run each.
pub(super) fn summarised_uploads_only() -> Report {
    use Direction::Upload as U;
    let (clients, samples) = uploads_only();
    let r = summarise(&scenarios()[0], &clients, &samples, &[U]);
    test_report(5_000_000, 1, vec![U], vec![r], samples, 0, Vec::new())
}
