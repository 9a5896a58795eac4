//! Statistics: rows per client, leg capacities and RTTs, the BDP, the
//! targets, and the short uploads' summary.

use super::report::{
    Capacity, LegFigure, Row, Sample, ScenarioReport, ShortRow, ShortSample, Stats, Target,
    scenario_report,
};
use super::run::Running;
use super::scenario::{Scenario, Who};
use crate::bench::proc::peak_rss_mb;
use crate::bench::scrape::Direction;

/// The targets the table is checked against.
const TARGET_FRACTION: f64 = 0.95;

/// The middle of a `guard>middle>exit` path.
pub(super) fn middle_of(path: &str) -> &str {
    path.split('>').nth(1).unwrap_or("?")
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Rows, leg capacities, BDP and targets from the scenario's samples: for
/// each of `directions` in turn, a row per client.
pub(super) fn summarise(
    sc: &Scenario,
    clients: &[Running],
    samples: &[Sample],
    directions: &[Direction],
) -> ScenarioReport {
    let mut out = scenario_report(sc);
    let k = sc.legs();
    out.capacity = directions
        .iter()
        .map(|&d| capacity(sc, samples, d))
        .collect();
    let (rtts, sources): (Vec<Option<f64>>, Vec<&'static str>) =
        (0..k).map(|i| leg_rtt(sc, i, samples)).unzip();
    out.leg_rtt_ms = rtts;
    out.leg_rtt_source = sources;
    out.two_bdp_bytes = capacity_of(&out.capacity, Direction::Download)
        .and_then(|c| {
            c.leg_mb_s
                .iter()
                .zip(&out.leg_rtt_ms)
                .map(|(c, r)| Some(c.as_ref()? * 1e6 * r.as_ref()? / 1000.0))
                .collect::<Option<Vec<f64>>>()
        })
        .and_then(|v| v.into_iter().reduce(f64::max))
        .map(|b| 2.0 * b);
    for &direction in directions {
        let leg_sum = capacity_of(&out.capacity, direction).and_then(|c| c.sum_mb_s);
        for c in clients {
            let row = row(sc, c, direction, samples, leg_sum, out.two_bdp_bytes);
            out.rows.push(row);
        }
    }
    out.targets = targets(&out);
    out
}

/// Each leg's mean throughput alone going `direction`, and their sum.
fn capacity(sc: &Scenario, samples: &[Sample], direction: Direction) -> Capacity {
    let leg_mb_s: Vec<Option<f64>> = (0..sc.legs())
        .map(|i| {
            let label = Who::Leg(i).label();
            mean(
                &samples
                    .iter()
                    .filter(|s| s.ok && s.direction == direction && s.client == label)
                    .map(|s| s.mb_per_s)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    Capacity {
        direction,
        sum_mb_s: leg_mb_s
            .iter()
            .copied()
            .collect::<Option<Vec<f64>>>()
            .map(|v| v.iter().sum()),
        leg_mb_s,
    }
}

/// The capacities measured going `direction`.
fn capacity_of(capacity: &[Capacity], direction: Direction) -> Option<&Capacity> {
    capacity.iter().find(|c| c.direction == direction)
}

/// Client `c`'s row going `direction`; `leg_sum` is the summed leg
/// capacity that way, `two_bdp` twice the largest leg BDP.
fn row(
    sc: &Scenario,
    c: &Running,
    direction: Direction,
    samples: &[Sample],
    leg_sum: Option<f64>,
    two_bdp: Option<f64>,
) -> Row {
    let label = c.who.label();
    let all: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.client == label && s.direction == direction)
        .collect();
    let ok: Vec<&Sample> = all.iter().copied().filter(|s| s.ok).collect();
    let rates: Vec<f64> = ok.iter().map(|s| s.mb_per_s).collect();
    let m = mean(&rates).unwrap_or(0.0);
    let cpus: Vec<f64> = ok.iter().filter_map(|s| s.cpu_s_per_100mb).collect();
    let exit_cpus: Vec<f64> = ok.iter().filter_map(|s| s.exit_cpu_s_per_100mb).collect();
    let leg_shares = leg_shares(sc, &ok.iter().map(|s| &s.legs[..]).collect::<Vec<_>>());
    let is_set = !matches!(c.who, Who::Leg(_));
    let download = direction == Direction::Download;
    Row {
        scenario: sc.name.into(),
        client: label,
        kind: c.who.kind(),
        direction,
        runs: ok.len(),
        failed: all.len() - ok.len(),
        mb_per_s_mean: m,
        mb_per_s_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        mb_per_s_max: rates.iter().copied().fold(0.0, f64::max),
        fraction_of_leg_sum: leg_sum
            .filter(|sum| is_set && *sum > 0.0 && !ok.is_empty())
            .map(|sum| m / sum),
        ttfb_ms_mean: mean(&ok.iter().map(|s| s.ttfb_ms).collect::<Vec<_>>()).unwrap_or(0.0),
        cpu_s_per_100mb_mean: mean(&cpus),
        exit_cpu_s_per_100mb_mean: mean(&exit_cpus),
        peak_rss_mb: peak_rss_mb(c.pid),
        reorder_peak_bytes: if c.who.kind() == "braid" && download {
            ok.iter()
                .filter_map(|s| s.reorder_peak_bytes)
                .reduce(f64::max)
        } else {
            None
        },
        two_bdp_bytes: (is_set && download).then_some(two_bdp).flatten(),
        leg_shares,
    }
}

/// The mean share of each leg over `transfers` (each one's legs), in the
/// scenario's leg order, by middle (Conflux pairs guards and middles at
/// random; the middle makes the leg). Empty unless some transfer used
/// more than one leg.
fn leg_shares(sc: &Scenario, transfers: &[&[LegFigure]]) -> Vec<f64> {
    if !transfers.iter().any(|legs| legs.len() > 1) {
        return Vec::new();
    }
    (0..sc.legs())
        .map(|i| {
            let middle = sc.middle(i);
            mean(
                &transfers
                    .iter()
                    .map(|legs| {
                        legs.iter()
                            .filter(|l| middle_of(&l.path) == middle)
                            .map(|l| l.share)
                            .sum::<f64>()
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or(0.0)
        })
        .collect()
}

/// Mean, median and range of `v`; `None` when it is empty.
fn stats(v: &[f64]) -> Option<Stats> {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let low = sorted.get(n.checked_sub(1)? / 2)?;
    let high = sorted.get(n / 2)?;
    Some(Stats {
        mean: mean(v)?,
        median: (low + high) / 2.0,
        min: *sorted.first()?,
        max: *sorted.last()?,
    })
}

/// Client `who`'s row of short uploads.
pub(super) fn short_row(sc: &Scenario, who: Who, samples: &[ShortSample]) -> ShortRow {
    let label = who.label();
    let all: Vec<&ShortSample> = samples.iter().filter(|s| s.client == label).collect();
    let ok: Vec<&ShortSample> = all.iter().copied().filter(|s| s.ok).collect();
    ShortRow {
        scenario: sc.name.into(),
        client: label,
        kind: who.kind(),
        runs: ok.len(),
        failed: all.len() - ok.len(),
        warned: ok.iter().filter(|s| s.error.is_some()).count(),
        completion_ms: stats(&ok.iter().map(|s| s.completion_ms).collect::<Vec<_>>()),
        connect_ms_mean: mean(&ok.iter().map(|s| s.connect_ms).collect::<Vec<_>>()),
        leg_shares: leg_shares(sc, &ok.iter().map(|s| &s.legs[..]).collect::<Vec<_>>()),
    }
}

/// The Braid scheduler whose short uploads had the lowest median
/// completion time (the first in table order on a tie); `rows` are the
/// rows of `whos`, in the same order.
pub(super) fn lowest_median_scheduler(whos: &[Who], rows: &[ShortRow]) -> Option<&'static str> {
    whos.iter()
        .zip(rows)
        .filter_map(|(who, row)| match who {
            Who::Braid(s) => Some((*s, row.completion_ms?.median)),
            Who::Leg(_) | Who::Ctor => None,
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
}

/// Leg `i`'s RTT and where it came from (see [`ScenarioReport`]).
fn leg_rtt(sc: &Scenario, i: usize, samples: &[Sample]) -> (Option<f64>, &'static str) {
    let middle = sc.middle(i);
    let measured = samples
        .iter()
        .filter(|s| s.ok && s.kind != "ctor")
        .flat_map(|s| &s.legs)
        .filter(|l| middle_of(&l.path) == middle)
        .flat_map(|l| [l.min_rtt_ms, l.link_rtt_ms])
        .flatten()
        .filter(|r| *r > 0.0)
        .reduce(f64::min);
    if measured.is_some() {
        return (measured, "Braid congestion control or LINK RTT");
    }
    let label = Who::Leg(i).label();
    let ttfb = samples
        .iter()
        .filter(|s| s.ok && s.direction == Direction::Download && s.client == label)
        .map(|s| s.ttfb_ms / 2.0)
        .reduce(f64::min);
    (
        ttfb,
        if ttfb.is_some() {
            "first byte / 2"
        } else {
            "none"
        },
    )
}

/// The Braid exit's targets (issue 14), across each scenario's two runs
/// (`BASE` with the C-tor exit, `BASE+braid-exit` with the Braid exit),
/// downloads: Braid's ECF set through the Braid exit >= 0.97 of the summed
/// leg capacity; >= 1.15 x the C-tor client through the C-tor exit where
/// the legs differ or are three; the C-tor client at least as fast through
/// the Braid exit as through the C-tor exit.
pub(super) fn exit_targets(scenarios: &[ScenarioReport]) -> Vec<Target> {
    let d = Direction::Download;
    let rate = |sc: &ScenarioReport, client: &str| {
        sc.rows
            .iter()
            .find(|r| r.direction == d && r.client == client && r.runs > 0)
            .map(|r| (r.mb_per_s_mean, r.fraction_of_leg_sum))
    };
    let braid = Who::Braid("ecf").label();
    let ctor = Who::Ctor.label();
    let mut out = Vec::new();
    for b in scenarios
        .iter()
        .filter(|s| s.name.ends_with(BRAID_EXIT_SUFFIX))
    {
        let base = b.name.trim_end_matches(BRAID_EXIT_SUFFIX);
        let tor = scenarios.iter().find(|s| s.name == base);
        out.push(Target {
            direction: d,
            what: format!(
                "{base} download: {braid} through the Braid exit >= {BRAID_EXIT_FRACTION:.2} of summed leg capacity"
            ),
            met: rate(b, &braid)
                .and_then(|(_, f)| f)
                .map(|f| f >= BRAID_EXIT_FRACTION),
        });
        if base != "uniform" {
            out.push(Target {
                direction: d,
                what: format!(
                    "{base} download: {braid} through the Braid exit >= {BRAID_EXIT_OVER_CTOR:.2} x C-tor through the C-tor exit"
                ),
                met: rate(b, &braid)
                    .zip(tor.and_then(|t| rate(t, &ctor)))
                    .map(|((m, _), (c, _))| m >= BRAID_EXIT_OVER_CTOR * c),
            });
        }
        out.push(Target {
            direction: d,
            what: format!(
                "{base} download: C-tor through the Braid exit >= C-tor through the C-tor exit"
            ),
            met: rate(b, &ctor)
                .zip(tor.and_then(|t| rate(t, &ctor)))
                .map(|((m, _), (c, _))| m >= c),
        });
    }
    out
}

/// The suffix of a scenario's name with the Braid exit.
const BRAID_EXIT_SUFFIX: &str = "+braid-exit";
/// Issue 14: Braid through the Braid exit, of the summed leg capacity.
const BRAID_EXIT_FRACTION: f64 = 0.97;
/// Issue 14: Braid through the Braid exit over C-tor through the C-tor exit.
const BRAID_EXIT_OVER_CTOR: f64 = 1.15;

/// Per direction: Braid Conflux >= 0.95 of the summed leg capacity and >=
/// C-tor's Conflux. Downloads: peak reorder <= 2 x the largest leg BDP
/// (an upload's reorder queue is the exit's).
fn targets(r: &ScenarioReport) -> Vec<Target> {
    let mut out = Vec::new();
    for row in r.rows.iter().filter(|x| x.kind == "braid") {
        let direction = row.direction;
        let ctor = r
            .rows
            .iter()
            .find(|x| x.kind == "ctor" && x.direction == direction && x.runs > 0);
        let what = |t: &str| format!("{} {}: {} {t}", r.name, direction.name(), row.client);
        out.push(Target {
            direction,
            what: what(&format!(">= {TARGET_FRACTION:.2} of summed leg capacity")),
            met: row.fraction_of_leg_sum.map(|f| f >= TARGET_FRACTION),
        });
        out.push(Target {
            direction,
            what: what(">= C-tor's Conflux"),
            met: ctor
                .filter(|_| row.runs > 0)
                .map(|c| row.mb_per_s_mean >= c.mb_per_s_mean),
        });
        if direction == Direction::Download {
            out.push(Target {
                direction,
                what: what("peak reorder <= 2 x largest leg BDP"),
                met: match (row.reorder_peak_bytes, r.two_bdp_bytes) {
                    (Some(p), Some(b)) => Some(p <= b),
                    _ => None,
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::conflux::fixtures::{short_uploads, two_way, uploads_only};
    use crate::bench::conflux::scenario::scenarios;

    #[test]
    fn summary_fractions_bdp_and_targets() {
        use Direction::{Download as D, Upload as U};
        let sc = &scenarios()[0];
        let (clients, samples) = two_way();
        let r = summarise(sc, &clients, &samples, &[D, U]);
        assert_eq!(
            r.capacity,
            vec![
                Capacity {
                    direction: D,
                    leg_mb_s: vec![Some(2.0), Some(1.0)],
                    sum_mb_s: Some(3.0)
                },
                Capacity {
                    direction: U,
                    leg_mb_s: vec![Some(1.5), Some(0.5)],
                    sum_mb_s: Some(2.0)
                },
            ]
        );
        assert_eq!(r.leg_rtt_ms, vec![Some(40.0), Some(90.0)]);
        // Download capacities: max(2 MB/s x 40 ms, 1 MB/s x 90 ms) = 90 kB,
        // doubled (upload ones would give 60 kB).
        assert!((r.two_bdp_bytes.unwrap() - 180_000.0).abs() < 1e-6);
        // A row per client and direction, downloads first.
        let dirs: Vec<Direction> = r.rows.iter().map(|x| x.direction).collect();
        assert_eq!(dirs, [D, D, D, D, U, U, U, U]);
        let find = |kind: &str, d: Direction| {
            r.rows
                .iter()
                .find(|x| x.kind == kind && x.direction == d)
                .unwrap()
        };
        let braid = find("braid", D);
        assert!((braid.fraction_of_leg_sum.unwrap() - 2.925 / 3.0).abs() < 1e-9);
        assert_eq!(braid.leg_shares, vec![0.55, 0.45]);
        assert_eq!(braid.reorder_peak_bytes, Some(100_000.0));
        assert_eq!(braid.two_bdp_bytes, Some(180_000.0));
        assert_eq!(braid.ttfb_ms_mean, 100.0);
        let leg = find("leg", D);
        assert!(leg.leg_shares.is_empty());
        assert_eq!(leg.fraction_of_leg_sum, None);
        let ctor = find("ctor", D);
        assert_eq!((ctor.runs, ctor.failed), (1, 1));
        assert_eq!(ctor.reorder_peak_bytes, None);
        // The upload rows: against the upload capacity, no reorder peak
        // nor BDP, the connect time as first byte.
        let up = find("braid", U);
        assert_eq!((up.runs, up.failed), (1, 0));
        assert!((up.fraction_of_leg_sum.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(up.leg_shares, vec![0.75, 0.25]);
        assert_eq!(up.reorder_peak_bytes, None);
        assert_eq!(up.two_bdp_bytes, None);
        assert_eq!(up.ttfb_ms_mean, 30.0);
        let ctor_up = find("ctor", U);
        assert_eq!((ctor_up.runs, ctor_up.failed), (1, 0));
        assert!((ctor_up.fraction_of_leg_sum.unwrap() - 0.95).abs() < 1e-9);
        let met: Vec<(Direction, Option<bool>)> =
            r.targets.iter().map(|t| (t.direction, t.met)).collect();
        assert_eq!(
            met,
            vec![
                (D, Some(true)),
                (D, Some(true)),
                (D, Some(true)),
                (U, Some(false)),
                (U, Some(false)),
            ]
        );
        assert!(
            r.targets[4]
                .what
                .starts_with("uniform upload: Braid lowrtt >= C-tor")
        );
        // Without any RTT from metrics, half the first-byte time of a
        // download (an upload's connect time is not used).
        let bare: Vec<Sample> = samples
            .iter()
            .cloned()
            .map(|mut s| {
                s.legs.iter_mut().for_each(|l| l.min_rtt_ms = None);
                s
            })
            .collect();
        assert_eq!(leg_rtt(sc, 0, &bare), (Some(50.0), "first byte / 2"));
        assert_eq!(leg_rtt(sc, 1, &bare[..1]), (None, "none"));
        assert_eq!(leg_rtt(sc, 0, &bare[6..]), (None, "none"));
    }

    #[test]
    fn summary_of_uploads_only() {
        use Direction::Upload as U;
        let sc = &scenarios()[0];
        let (clients, samples) = uploads_only();
        let r = summarise(sc, &clients, &samples, &[U]);
        assert_eq!(r.capacity.len(), 1);
        assert_eq!(r.capacity[0].sum_mb_s, Some(2.0));
        // No download capacity: no BDP, and no reorder target.
        assert_eq!(r.two_bdp_bytes, None);
        assert_eq!(r.rows.len(), 3);
        let met: Vec<Option<bool>> = r.targets.iter().map(|t| t.met).collect();
        // 0.98 of the sum; no C-tor row to compare with.
        assert_eq!(met, vec![Some(true), None]);
    }

    #[test]
    fn summary_statistics() {
        assert_eq!(stats(&[]), None);
        assert_eq!(
            stats(&[7.0]),
            Some(Stats {
                mean: 7.0,
                median: 7.0,
                min: 7.0,
                max: 7.0
            })
        );
        // Odd count: the middle figure, whatever the order given.
        assert_eq!(
            stats(&[300.0, 100.0, 110.0]),
            Some(Stats {
                mean: 170.0,
                median: 110.0,
                min: 100.0,
                max: 300.0
            })
        );
        // Even count: the mean of the two middle figures; an outlier moves
        // the mean, not the median.
        assert_eq!(
            stats(&[120.0, 100.0, 1000.0, 140.0]),
            Some(Stats {
                mean: 340.0,
                median: 130.0,
                min: 100.0,
                max: 1000.0
            })
        );
    }

    #[test]
    fn short_rows_and_lowest_median() {
        let sc = &scenarios()[4];
        let (whos, samples) = short_uploads();
        let rows: Vec<ShortRow> = whos.iter().map(|&w| short_row(sc, w, &samples)).collect();
        let row = |client: &str| rows.iter().find(|r| r.client == client).unwrap();
        let ecf = row("Braid ecf");
        assert_eq!((ecf.runs, ecf.failed, ecf.warned), (3, 1, 0));
        assert_eq!(
            ecf.completion_ms,
            Some(Stats {
                mean: 1255.0 / 3.0,
                median: 185.0,
                min: 170.0,
                max: 900.0
            })
        );
        assert_eq!(ecf.connect_ms_mean, Some(11.0));
        assert_eq!(ecf.leg_shares.len(), 2);
        assert!((ecf.leg_shares[0] - 0.9).abs() < 1e-9);
        assert!((ecf.leg_shares[1] - 0.1).abs() < 1e-9);
        assert_eq!(row("Braid lowrtt").leg_shares, vec![0.75, 0.25]);
        assert_eq!(row("Braid lowrtt").completion_ms.unwrap().median, 190.0);
        // A single leg has no shares.
        assert!(row("leg 1 alone (Braid)").leg_shares.is_empty());
        let ctor = row("C-tor");
        assert_eq!((ctor.runs, ctor.failed, ctor.warned), (3, 0, 1));
        assert_eq!(ctor.completion_ms.unwrap().max, 600.0);
        // ECF's median (185) beats lowrtt's (190) and minrtt's (210),
        // though its mean is the worst of the three.
        assert_eq!(lowest_median_scheduler(&whos, &rows), Some("ecf"));
        // A tie goes to the first in table order; a scheduler without a
        // successful upload is left out; the C-tor row is never chosen.
        let mut tied = rows.clone();
        tied[2].completion_ms = tied[4].completion_ms;
        assert_eq!(lowest_median_scheduler(&whos, &tied), Some("minrtt"));
        tied[2].completion_ms = None;
        tied[4].completion_ms = None;
        assert_eq!(lowest_median_scheduler(&whos, &tied), Some("lowrtt"));
        tied[3].completion_ms = None;
        assert_eq!(lowest_median_scheduler(&whos, &tied), None);
    }

    #[test]
    fn exit_targets_compare_the_two_exits() {
        let report = crate::bench::conflux::fixtures::two_way_report();
        let tor_sc = report.scenarios[0].clone();
        let row = |client: String, mb: f64, f: f64| Row {
            client,
            direction: Direction::Download,
            runs: 2,
            mb_per_s_mean: mb,
            fraction_of_leg_sum: Some(f),
            ..tor_sc.rows[0].clone()
        };
        let braid = Who::Braid("ecf").label();
        let ctor = Who::Ctor.label();
        let mut tor = tor_sc.clone();
        tor.name = "bw-1-3";
        tor.rows = vec![row(ctor.clone(), 3.0, 0.75), row(braid.clone(), 3.5, 0.88)];
        let mut theirs = tor.clone();
        theirs.name = "bw-1-3+braid-exit";
        theirs.rows = vec![row(ctor.clone(), 3.2, 0.80), row(braid.clone(), 3.9, 0.975)];
        let t = exit_targets(&[tor.clone(), theirs.clone()]);
        let verdicts: Vec<(String, Option<bool>)> =
            t.iter().map(|x| (x.what.clone(), x.met)).collect();
        assert_eq!(verdicts.len(), 3, "{verdicts:?}");
        assert_eq!(verdicts[0].1, Some(true), "0.975 >= 0.97");
        assert_eq!(verdicts[1].1, Some(true), "3.9 >= 1.15 x 3.0");
        assert_eq!(verdicts[2].1, Some(true), "3.2 >= 3.0");
        theirs.rows = vec![row(ctor, 2.9, 0.7), row(braid, 3.4, 0.85)];
        let t = exit_targets(&[tor.clone(), theirs]);
        assert!(t.iter().all(|x| x.met == Some(false)), "{t:?}");
        // Without the Braid exit's run: no exit targets.
        assert!(exit_targets(&[tor]).is_empty());
    }
}
