//! The plot: per-leg throughput over time of Braid's default scheduler.

use super::report::Report;
use super::scenario::DEFAULT_SCHEDULER;
use crate::bench::scrape::Direction;
use crate::bench::svg::{Line, Panel, render};

/// Per-leg throughput of Braid's default scheduler, one panel per scenario
/// and direction (its first run with figures): DATA bytes received for a
/// download, sent for an upload.
pub(super) fn plot(r: &Report) -> String {
    plot_scheduler(r, DEFAULT_SCHEDULER)
}

/// [`plot`] for the Braid scheduler named `scheduler`.
fn plot_scheduler(r: &Report, scheduler: &str) -> String {
    let label = format!("Braid {scheduler}");
    let mut panels = Vec::new();
    for sc in &r.scenarios {
        for &direction in &r.directions {
            let Some((s, series)) = r
                .samples
                .iter()
                .filter(|s| {
                    s.scenario == sc.name && s.client == label && s.direction == direction && s.ok
                })
                .find_map(|s| Some((s, s.series.as_ref()?)))
            else {
                continue;
            };
            let mut lines: Vec<Line> = series
                .legs
                .iter()
                .enumerate()
                .map(|(i, v)| Line {
                    label: format!(
                        "leg {} {}",
                        i + 1,
                        s.legs.get(i).map(|l| l.path.as_str()).unwrap_or("")
                    ),
                    values: v.clone(),
                })
                .collect();
            lines.push(Line {
                label: "total".into(),
                values: series.total.clone(),
            });
            let counted = match direction {
                Direction::Download => "received",
                Direction::Upload => "sent",
            };
            panels.push(Panel {
                title: format!(
                    "{} {}: {} - Braid {scheduler}, run {}, {:.2} MB/s (DATA {counted})",
                    sc.name,
                    direction.name(),
                    sc.about,
                    s.rep + 1,
                    s.mb_per_s
                ),
                bin_s: series.bin_ms / 1000.0,
                lines,
            });
        }
    }
    render(
        &panels,
        "time since the transfer began (s)",
        "MB/s (200 ms bins)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::conflux::fixtures::{sample, two_way_report};
    use crate::bench::conflux::report::SeriesJson;
    use crate::bench::conflux::scenario::Who;

    #[test]
    fn default_scheduler_panels() {
        use Direction::Upload as U;
        let mut report = two_way_report();
        // No series in the samples: an empty plot, still a document.
        let svg = plot(&report);
        assert!(
            svg.contains("</svg>") && !svg.contains("<polyline"),
            "{svg}"
        );
        // One panel per direction for the default scheduler's first run
        // with a series; other schedulers are not plotted.
        let series = |v: f64| SeriesJson {
            bin_ms: 200.0,
            unit: "MB/s",
            legs: vec![vec![v, v], vec![v, v]],
            total: vec![2.0 * v, 2.0 * v],
        };
        for (i, v) in [(3, 1.4), (8, 0.9)] {
            report.samples[i].series = Some(series(v));
        }
        let mut ecf = sample(Who::Braid("ecf"), U, 0, 1.0, &[]);
        ecf.series = Some(series(0.5));
        report.samples.push(ecf);
        // The default scheduler's run only.
        let svg = plot(&report);
        assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
        assert!(
            svg.contains(&format!("Braid {DEFAULT_SCHEDULER}, run 1")),
            "{svg}"
        );
        let svg = plot_scheduler(&report, "lowrtt");
        assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
        assert!(svg.contains("uniform download: "), "{svg}");
        assert!(
            svg.contains("Braid lowrtt, run 1, 1.80 MB/s (DATA sent)"),
            "{svg}"
        );
        // Only uploads asked for: only their panel.
        report.directions = vec![U];
        assert_eq!(
            plot_scheduler(&report, "lowrtt")
                .matches("<polyline")
                .count(),
            3
        );
    }
}
