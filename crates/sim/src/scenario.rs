//! What to simulate: the legs, the transfer, the congestion control, the
//! seed; and the standard scenarios of the project's tests.

use std::time::Duration;

use crate::cc::CcModel;
use crate::link::{CELL_BYTES, DATA_BYTES, LinkConfig};

/// One MiB, for bandwidths.
pub const MIB: u64 = 1024 * 1024;

/// The two directions of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegConfig {
    /// Sender to receiver: DATA cells.
    pub forward: LinkConfig,
    /// Receiver to sender: SENDMEs.
    pub reverse: LinkConfig,
}

impl LegConfig {
    /// A leg of `bandwidth` bytes/s each way and round-trip time `rtt`
    /// (half of it each way), clean links.
    pub fn symmetric(bandwidth: u64, rtt: Duration) -> Self {
        let link = LinkConfig::new(bandwidth, rtt / 2);
        LegConfig {
            forward: link,
            reverse: link,
        }
    }

    /// The same leg with `f` applied to both directions.
    pub fn map(self, f: impl Fn(LinkConfig) -> LinkConfig) -> Self {
        LegConfig {
            forward: f(self.forward),
            reverse: f(self.reverse),
        }
    }

    /// RTT of an idle leg for one cell and its SENDME (what LINK/LINKED
    /// measures): both delays and both serialisation times.
    pub fn base_rtt(&self) -> Duration {
        self.forward
            .delay
            .saturating_add(self.reverse.delay)
            .saturating_add(self.forward.cell_time())
            .saturating_add(self.reverse.cell_time())
    }

    /// Bandwidth-delay product of the forward direction, in DATA payload
    /// bytes (cells per second × base RTT × 498).
    pub fn bdp_bytes(&self) -> u64 {
        let cells = self.forward.cells_per_sec() * self.base_rtt().as_secs_f64();
        (cells * DATA_BYTES as f64) as u64
    }

    /// Forward capacity in DATA payload bytes per second.
    pub fn payload_rate(&self) -> f64 {
        self.forward.bandwidth as f64 * DATA_BYTES as f64 / CELL_BYTES as f64
    }
}

/// Where [`LegView::est_bandwidth`](braid_core::conflux_sched::LegView)
/// comes from in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BwSource {
    /// No estimate: schedulers use `cwnd / RTT`.
    None,
    /// braid-core's [`DeliveryRate`](braid_core::conflux_sched::DeliveryRate)
    /// over the leg's SENDMEs (what a real sender can know).
    Sendme,
    /// The leg's true forward bandwidth (an oracle, for comparison).
    Oracle,
}

/// A simulation run's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// A name for reports ("1:1", ...).
    pub name: String,
    /// The legs, in the order of the set (C-tor's tie-breaks follow it).
    pub legs: Vec<LegConfig>,
    /// Application bytes to move (in 498-byte cells, the last one short).
    pub transfer_bytes: u64,
    /// Congestion control of every leg.
    pub cc: CcModel,
    /// The seed of every random draw.
    pub seed: u64,
    /// Tell the scheduler the remaining backlog before each cell (as an
    /// exit reading a file would know it); otherwise it is "unknown".
    pub tell_backlog: bool,
    /// Where the schedulers' per-leg bandwidth estimate comes from.
    pub bandwidth: BwSource,
    /// Width of a time-series bucket.
    pub sample_interval: Duration,
    /// Virtual time after which an unfinished run stops.
    pub time_limit: Duration,
}

impl Scenario {
    /// A scenario over `legs`, moving what the summed capacity carries in
    /// `seconds`, with TOR_VEGAS, seed 1, backlog told, bandwidth
    /// estimated from SENDMEs, 100 ms
    /// samples, and a time limit of 10 × `seconds` plus 10 s.
    pub fn new(name: &str, legs: Vec<LegConfig>, seconds: u64) -> Self {
        let rate: f64 = legs.iter().map(LegConfig::payload_rate).sum();
        Scenario {
            name: name.to_owned(),
            legs,
            transfer_bytes: (rate * seconds as f64) as u64,
            cc: CcModel::Vegas,
            seed: 1,
            tell_backlog: true,
            bandwidth: BwSource::Sendme,
            sample_interval: Duration::from_millis(100),
            time_limit: Duration::from_secs(seconds.saturating_mul(10).saturating_add(10)),
        }
    }

    /// Two legs of 2 MiB/s, 80 ms RTT each.
    pub fn one_to_one() -> Self {
        let leg = LegConfig::symmetric(2 * MIB, Duration::from_millis(80));
        Self::new("1:1", vec![leg, leg], 8)
    }

    /// Legs of 1 MiB/s and 3 MiB/s, 80 ms RTT each (the slower first).
    pub fn one_to_three() -> Self {
        let rtt = Duration::from_millis(80);
        Self::new(
            "1:3",
            vec![
                LegConfig::symmetric(MIB, rtt),
                LegConfig::symmetric(3 * MIB, rtt),
            ],
            8,
        )
    }

    /// Legs of 2 MiB/s each, 10 ms and 200 ms RTT.
    pub fn rtt_10_200() -> Self {
        Self::new(
            "10ms:200ms",
            vec![
                LegConfig::symmetric(2 * MIB, Duration::from_millis(10)),
                LegConfig::symmetric(2 * MIB, Duration::from_millis(200)),
            ],
            8,
        )
    }

    /// The three scenarios every scheduler is tested on.
    pub fn standard() -> Vec<Self> {
        vec![Self::one_to_one(), Self::one_to_three(), Self::rtt_10_200()]
    }

    /// The same scenario with another seed.
    pub fn with_seed(self, seed: u64) -> Self {
        Scenario { seed, ..self }
    }

    /// The same scenario with `f` applied to every link.
    pub fn map_links(self, f: impl Fn(LinkConfig) -> LinkConfig) -> Self {
        let legs = self.legs.iter().map(|l| l.map(&f)).collect();
        Scenario { legs, ..self }
    }

    /// Cells the transfer takes.
    pub fn total_cells(&self) -> u64 {
        self.transfer_bytes.div_ceil(DATA_BYTES)
    }

    /// Summed forward capacity, DATA payload bytes per second.
    pub fn capacity(&self) -> f64 {
        self.legs.iter().map(LegConfig::payload_rate).sum()
    }

    /// The largest forward bandwidth-delay product of a leg, payload bytes.
    pub fn max_leg_bdp_bytes(&self) -> u64 {
        self.legs
            .iter()
            .map(LegConfig::bdp_bytes)
            .max()
            .unwrap_or(0)
    }

    /// An upper bound on the reorder buffer for this model, payload bytes:
    /// while the oldest missing cell is on its way (at most the worst
    /// forward latency of any leg, `L`), every leg can deliver at most its
    /// queue plus `L` × its rate of later cells.
    pub fn reorder_bound_bytes(&self) -> u64 {
        let worst = self
            .legs
            .iter()
            .map(|l| l.forward.worst_case_latency())
            .max()
            .unwrap_or(Duration::ZERO);
        let cells: f64 = self
            .legs
            .iter()
            .map(|l| {
                f64::from(l.forward.queue_cells) + l.forward.cells_per_sec() * worst.as_secs_f64()
            })
            .sum();
        (cells.ceil() as u64).saturating_mul(DATA_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_scenarios() {
        let s = Scenario::rtt_10_200();
        assert_eq!(s.legs.len(), 2);
        // 2 MiB/s = 4080 cells/s; 200 ms + 2 cell times.
        assert_eq!(s.legs[1].base_rtt().as_micros(), 200_490);
        let bdp = s.max_leg_bdp_bytes();
        assert!((400_000..420_000).contains(&bdp), "{bdp}");
        assert!(s.total_cells() > 60_000);
        assert!(s.reorder_bound_bytes() > bdp);
    }
}
