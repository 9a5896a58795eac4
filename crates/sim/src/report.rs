//! What a run measured.

use std::fmt::{self, Write as _};
use std::time::Duration;

use braid_core::ids::LegId;

use crate::reorder::SinkError;

/// One leg's part of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct LegReport {
    /// The leg.
    pub id: LegId,
    /// Forward bandwidth, bytes per second.
    pub bandwidth: u64,
    /// RTT of the idle leg.
    pub base_rtt: Duration,
    /// DATA cells sent on it.
    pub cells_sent: u64,
    /// Its share of all cells sent.
    pub share: f64,
    /// Its congestion window at the end.
    pub final_cwnd: u64,
    /// Its smoothed RTT at the end.
    pub final_ewma_rtt: Option<Duration>,
    /// Forward cells delayed by a (modelled) TCP retransmission.
    pub retransmitted: u64,
    /// Most cells ever in its forward queue.
    pub peak_queue: u64,
}

/// One time-series bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// Start of the bucket.
    pub start: Duration,
    /// Payload bytes that arrived at the receiver on each leg.
    pub leg_bytes: Vec<u64>,
    /// Payload bytes delivered in order.
    pub delivered_bytes: u64,
    /// Reorder buffer bytes at the end of the bucket (last value seen).
    pub reorder_bytes: u64,
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The scheduler's name.
    pub scheduler: &'static str,
    /// The seed.
    pub seed: u64,
    /// Every byte was delivered in order.
    pub completed: bool,
    /// Time of the last in-order delivery (or when the run stopped).
    pub duration: Duration,
    /// Payload bytes delivered in order.
    pub delivered_bytes: u64,
    /// `delivered_bytes / duration`, bytes per second.
    pub goodput: f64,
    /// Summed forward capacity of the legs, payload bytes per second.
    pub capacity: f64,
    /// `goodput / capacity`.
    pub fraction: f64,
    /// Per leg.
    pub legs: Vec<LegReport>,
    /// Largest reorder buffer, payload bytes.
    pub peak_reorder_bytes: u64,
    /// Largest reorder buffer, cells.
    pub peak_reorder_cells: u64,
    /// Largest forward bandwidth-delay product of a leg, payload bytes.
    pub max_leg_bdp_bytes: u64,
    /// Times the sender changed legs (each would be a SWITCH cell).
    pub switches: u64,
    /// Times the scheduler named a leg that could not send, or no leg of
    /// the set (a scheduler bug; the run then waits for the next event).
    pub bad_choices: u64,
    /// SENDMEs or sends the congestion control refused (a simulator bug).
    pub cc_errors: u64,
    /// The reorder sink refused a cell; the run stopped there.
    pub sink_error: Option<SinkError>,
    /// Width of a time-series bucket.
    pub sample_interval: Duration,
    /// The time series.
    pub series: Vec<Sample>,
}

impl Report {
    /// `peak_reorder_bytes / max_leg_bdp_bytes`.
    pub fn reorder_in_bdps(&self) -> f64 {
        self.peak_reorder_bytes as f64 / (self.max_leg_bdp_bytes.max(1)) as f64
    }

    /// The time series as CSV: `t_ms,leg0_Bps,...,delivered_Bps,reorder_bytes`.
    pub fn series_csv(&self) -> String {
        let mut out = String::from("t_ms");
        for l in &self.legs {
            let _ = write!(out, ",leg{}_Bps", l.id.0);
        }
        out.push_str(",delivered_Bps,reorder_bytes\n");
        let per_sec = 1.0 / self.sample_interval.as_secs_f64().max(1e-9);
        for s in &self.series {
            let _ = write!(out, "{}", s.start.as_millis());
            for b in &s.leg_bytes {
                let _ = write!(out, ",{:.0}", *b as f64 * per_sec);
            }
            let _ = writeln!(
                out,
                ",{:.0},{}",
                s.delivered_bytes as f64 * per_sec,
                s.reorder_bytes
            );
        }
        out
    }

    /// A Markdown table row: scenario, scheduler, goodput MB/s, fraction,
    /// leg shares, peak reorder KB, peak in leg BDPs, switches.
    pub fn table_row(&self) -> String {
        let shares: Vec<String> = self
            .legs
            .iter()
            .map(|l| format!("{:.0}%", l.share * 100.0))
            .collect();
        format!(
            "| {} | {} | {:.2} | {:.3} | {} | {:.0} | {:.2} | {} |{}",
            self.scenario,
            self.scheduler,
            self.goodput / 1e6,
            self.fraction,
            shares.join(" / "),
            self.peak_reorder_bytes as f64 / 1e3,
            self.reorder_in_bdps(),
            self.switches,
            if self.completed { "" } else { " incomplete" },
        )
    }

    /// The header matching [`Report::table_row`].
    pub fn table_header() -> &'static str {
        "| scenario | scheduler | goodput MB/s | fraction | leg shares | peak reorder KB | reorder / max leg BDP | switches |\n|---|---|---|---|---|---|---|---|"
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table_row())
    }
}
