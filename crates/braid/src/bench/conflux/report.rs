//! What `bench conflux` records, as written to its JSON file: samples of
//! each transfer, rows per client, leg capacities, targets.

use std::collections::BTreeMap;

use serde::Serialize;

use super::scenario::{Scenario, consensus_params, ctor_torrc};
use crate::bench::scrape::Direction;

/// What one leg carried during one transfer.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LegFigure {
    pub(super) leg: usize,
    pub(super) path: String,
    /// Braid: DATA payload bytes received on the leg (download) or sent on
    /// it (upload). C-tor: cell bytes that arrived on it (download,
    /// `CIRC_BW READ`) or that the client wrote on it (upload, `WRITTEN`).
    pub(super) bytes: u64,
    /// C-tor's `DELIVERED_READ` (download; misattributed across legs, see
    /// [`LegReport::bytes`]) or `DELIVERED_WRITTEN` (upload).
    ///
    /// [`LegReport::bytes`]: braid_testnet::ctor_conflux::LegReport::bytes
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) delivered_bytes: Option<u64>,
    /// `bytes` over the sum of every leg's.
    pub(super) share: f64,
    pub(super) rtt_ms: Option<f64>,
    pub(super) min_rtt_ms: Option<f64>,
    /// CONFLUX_LINK to LINKED (Braid: from metrics; C-tor: CONFLUX_RTT).
    pub(super) link_rtt_ms: Option<f64>,
}

/// Per-leg throughput over time, in MB/s per bin.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SeriesJson {
    pub(super) bin_ms: f64,
    pub(super) unit: &'static str,
    pub(super) legs: Vec<Vec<f64>>,
    pub(super) total: Vec<f64>,
}

/// One transfer by one client.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Sample {
    pub(super) scenario: String,
    pub(super) client: String,
    pub(super) kind: &'static str,
    pub(super) direction: Direction,
    pub(super) rep: usize,
    pub(super) ok: bool,
    pub(super) error: Option<String>,
    pub(super) bytes: u64,
    /// Download: bytes over the time from opening the SOCKS connection to
    /// the last byte. Upload: bytes over the time from the connection's
    /// success to the server's answer ([`Upload::mb_per_s`]).
    ///
    /// [`Upload::mb_per_s`]: braid_testnet::download::Upload::mb_per_s
    pub(super) mb_per_s: f64,
    /// Upload: bytes over the server's time from the first body byte to
    /// the last ([`Upload::server_mb_per_s`]).
    ///
    /// [`Upload::server_mb_per_s`]: braid_testnet::download::Upload::server_mb_per_s
    pub(super) server_mb_per_s: Option<f64>,
    /// Download: time to the first body byte. Upload: time to open the
    /// connection (SOCKS, BEGIN to CONNECTED), after which it sends.
    pub(super) ttfb_ms: f64,
    pub(super) cpu_s_per_100mb: Option<f64>,
    /// The exit relay's CPU time during the transfer, per 100 MB (every
    /// other transfer is idle meanwhile, so this is the transfer's cost at
    /// the exit).
    pub(super) exit_cpu_s_per_100mb: Option<f64>,
    pub(super) tunnel: Option<String>,
    /// Braid downloads only: the reorder queue's high-water mark over the
    /// set's life (an upload's reordering happens at the exit).
    pub(super) reorder_peak_bytes: Option<f64>,
    /// Braid downloads only: the largest queue a scrape saw.
    pub(super) reorder_sampled_max_bytes: Option<f64>,
    pub(super) legs: Vec<LegFigure>,
    pub(super) series: Option<SeriesJson>,
    pub(super) metrics_scrapes: usize,
    pub(super) metrics_failures: usize,
}

/// One client's transfers one way in one scenario.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Row {
    pub(super) scenario: String,
    pub(super) client: String,
    pub(super) kind: &'static str,
    pub(super) direction: Direction,
    pub(super) runs: usize,
    pub(super) failed: usize,
    pub(super) mb_per_s_mean: f64,
    pub(super) mb_per_s_min: f64,
    pub(super) mb_per_s_max: f64,
    /// The mean over the summed leg capacity the same way (sets only).
    pub(super) fraction_of_leg_sum: Option<f64>,
    /// Mean of [`Sample::ttfb_ms`]: first byte of a download, connect time
    /// of an upload.
    pub(super) ttfb_ms_mean: f64,
    pub(super) cpu_s_per_100mb_mean: Option<f64>,
    /// Mean of [`Sample::exit_cpu_s_per_100mb`].
    pub(super) exit_cpu_s_per_100mb_mean: Option<f64>,
    pub(super) peak_rss_mb: Option<f64>,
    pub(super) reorder_peak_bytes: Option<f64>,
    pub(super) two_bdp_bytes: Option<f64>,
    pub(super) leg_shares: Vec<f64>,
}

/// One short upload by one client.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ShortSample {
    pub(super) scenario: String,
    pub(super) client: String,
    pub(super) kind: &'static str,
    /// The round, from 0.
    pub(super) rep: usize,
    pub(super) ok: bool,
    /// Why it failed, or (C-tor, `ok`) a warning about the set it used.
    pub(super) error: Option<String>,
    pub(super) bytes: u64,
    /// From the SOCKS connection's success (CONNECTED) to the server's
    /// answer ([`completion_ms`](super::transfer::completion_ms)).
    pub(super) completion_ms: f64,
    /// SOCKS and BEGIN to CONNECTED.
    pub(super) connect_ms: f64,
    pub(super) tunnel: Option<String>,
    /// Braid: DATA payload bytes sent on each leg (a scrape before and one
    /// after the upload). C-tor: cell bytes written on each leg (`CIRC_BW
    /// WRITTEN`).
    pub(super) legs: Vec<LegFigure>,
}

/// Summary statistics of a non-empty set of figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Stats {
    pub(super) mean: f64,
    /// The middle figure, or the mean of the two middle ones.
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

/// One client's short uploads in one scenario.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ShortRow {
    pub(super) scenario: String,
    pub(super) client: String,
    pub(super) kind: &'static str,
    pub(super) runs: usize,
    pub(super) failed: usize,
    /// Successful uploads with a warning (C-tor's that did not use a
    /// linked set of the scenario's legs); they count in the figures.
    pub(super) warned: usize,
    /// [`ShortSample::completion_ms`] of the successful uploads (`None`:
    /// none succeeded).
    pub(super) completion_ms: Option<Stats>,
    /// Mean of [`ShortSample::connect_ms`].
    pub(super) connect_ms_mean: Option<f64>,
    /// Mean share of each leg, by middle in the scenario's order (sets
    /// only).
    pub(super) leg_shares: Vec<f64>,
}

/// One leg's relays and its middle's link.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LegSetup {
    pub(super) guard: String,
    pub(super) middle: String,
    pub(super) exit: String,
    pub(super) middle_rate: &'static str,
    pub(super) middle_delay_one_way: &'static str,
}

/// One target and whether the figures meet it (`None`: figures missing).
#[derive(Debug, Clone, Serialize)]
pub(super) struct Target {
    pub(super) direction: Direction,
    pub(super) what: String,
    pub(super) met: Option<bool>,
}

/// Each leg's capacity one way: the mean throughput of a Braid single
/// circuit through it alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Capacity {
    pub(super) direction: Direction,
    pub(super) leg_mb_s: Vec<Option<f64>>,
    /// Their sum, when every leg has one.
    pub(super) sum_mb_s: Option<f64>,
}

/// One scenario's set-up, summary and targets.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ScenarioReport {
    pub(super) name: &'static str,
    pub(super) about: &'static str,
    pub(super) legs: Vec<LegSetup>,
    pub(super) ctor_torrc: Vec<String>,
    pub(super) consensus_params: BTreeMap<String, i32>,
    /// Leg capacities, one entry per direction measured.
    pub(super) capacity: Vec<Capacity>,
    /// Each leg's RTT for its BDP: the smallest congestion-control minimum
    /// RTT or LINK-to-LINKED RTT Braid measured on any circuit through the
    /// leg's middle (guards and exit are unshaped), else half the smallest
    /// time to first byte of the leg alone downloading (two round trips:
    /// BEGIN and the request).
    pub(super) leg_rtt_ms: Vec<Option<f64>>,
    pub(super) leg_rtt_source: Vec<&'static str>,
    /// Twice the largest leg BDP: download capacity times RTT (the client's
    /// reorder queue holds downloads; `None` without downloads).
    pub(super) two_bdp_bytes: Option<f64>,
    /// The exit relay's peak RSS (VmHWM) when the scenario ended.
    pub(super) exit_peak_rss_mb: Option<f64>,
    pub(super) rows: Vec<Row>,
    pub(super) targets: Vec<Target>,
    /// A row per client for the short uploads.
    pub(super) short_rows: Vec<ShortRow>,
    /// The Braid scheduler whose short uploads had the lowest median
    /// completion time.
    pub(super) short_lowest_median_scheduler: Option<&'static str>,
    pub(super) error: Option<String>,
}

/// Everything `bench conflux` measured, as written to the JSON file.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) size_bytes: u64,
    pub(super) reps: usize,
    /// The directions measured, in the order of each scenario's rows.
    pub(super) directions: Vec<Direction>,
    pub(super) tor_version: String,
    pub(super) link_emulation: &'static str,
    pub(super) metrics_available: bool,
    pub(super) scenarios: Vec<ScenarioReport>,
    /// The Braid exit's targets, across scenarios ([`exit_targets`]).
    ///
    /// [`exit_targets`]: super::stats::exit_targets
    pub(super) exit_targets: Vec<Target>,
    pub(super) samples: Vec<Sample>,
    /// Bytes of each short upload.
    pub(super) short_size_bytes: u64,
    /// Short uploads per client and scenario (0: none).
    pub(super) short_reps: usize,
    pub(super) short_samples: Vec<ShortSample>,
}

pub(super) const LINK_NOTE: &str = "testnet shaper on each middle: rate caps each direction of the \
    middle's link; the delay is added once per direction of that link, and a circuit crosses \
    it twice each way, so delay D adds 2D one way and 4D to the round trip";

/// The scenario's fixed description, before any measurement.
pub(super) fn scenario_report(sc: &Scenario) -> ScenarioReport {
    let k = sc.legs();
    ScenarioReport {
        name: sc.name,
        about: sc.about,
        legs: (0..k)
            .map(|i| LegSetup {
                guard: sc.guard(i),
                middle: sc.middle(i),
                exit: sc.exit.relay().into(),
                middle_rate: sc.middles.get(i).map_or("", |l| l.rate),
                middle_delay_one_way: sc.middles.get(i).map_or("", |l| l.delay),
            })
            .collect(),
        ctor_torrc: ctor_torrc(sc),
        consensus_params: consensus_params(sc),
        capacity: Vec::new(),
        leg_rtt_ms: Vec::new(),
        leg_rtt_source: Vec::new(),
        two_bdp_bytes: None,
        exit_peak_rss_mb: None,
        rows: Vec::new(),
        targets: Vec::new(),
        short_rows: Vec::new(),
        short_lowest_median_scheduler: None,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::conflux::fixtures::{short, test_report, two_way_report};
    use crate::bench::conflux::scenario::{Who, scenarios};
    use crate::bench::conflux::stats::short_row;

    #[test]
    fn each_figure_says_its_direction() {
        let report = two_way_report();
        // Every sample, row and target says which way it went.
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["directions"], serde_json::json!(["download", "upload"]));
        assert_eq!(v["samples"][6]["direction"], "upload");
        assert_eq!(v["scenarios"][0]["rows"][0]["direction"], "download");
        assert_eq!(v["scenarios"][0]["rows"][6]["direction"], "upload");
        assert_eq!(v["scenarios"][0]["targets"][3]["direction"], "upload");
        assert_eq!(v["scenarios"][0]["capacity"][1]["direction"], "upload");
    }

    #[test]
    fn short_figures_in_json() {
        let sc = &scenarios()[4];
        let samples = vec![short(
            Who::Braid("ecf"),
            0,
            123.4,
            &[("relay3", 0.25), ("relay2", 0.75)],
        )];
        let mut r = scenario_report(sc);
        r.short_rows = vec![short_row(sc, Who::Braid("ecf"), &samples)];
        r.short_lowest_median_scheduler = Some("ecf");
        let report = test_report(
            20_000_000,
            1,
            vec![Direction::Upload],
            vec![r],
            Vec::new(),
            1,
            samples,
        );
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["short_size_bytes"], 100_000);
        assert_eq!(v["short_reps"], 1);
        assert_eq!(v["short_samples"][0]["completion_ms"], 123.4);
        assert_eq!(v["short_samples"][0]["legs"][1]["bytes"], 75_000);
        let row = &v["scenarios"][0]["short_rows"][0];
        assert_eq!(row["client"], "Braid ecf");
        assert_eq!(row["completion_ms"]["median"], 123.4);
        assert_eq!(row["leg_shares"], serde_json::json!([0.75, 0.25]));
        assert_eq!(v["scenarios"][0]["short_lowest_median_scheduler"], "ecf");
        // The bulk fields keep their names.
        assert_eq!(v["size_bytes"], 20_000_000);
        assert!(v["scenarios"][0]["rows"].is_array());
    }
}
