//! Per-leg congestion control in the simulation.
//!
//! Either braid-core's TOR_VEGAS ([`braid_core::cc::Vegas`], C-tor's
//! default parameters, exit path, SENDME every 31 cells), which is what a
//! Conflux leg runs, or a fixed window for experiments that should not
//! depend on Vegas's dynamics. Both count cells in flight, take one SENDME
//! per 31 cells and measure RTT from it (the fixed window with braid-core's
//! RTT estimator too).

use std::time::{Duration, Instant};

use braid_core::cc::{CcParams, CcPath, RttContext, RttEstimator, Vegas};

/// Cells acknowledged by one SENDME (C-tor's `cc_sendme_inc`).
pub const SENDME_INC: u64 = 31;

/// Which congestion control every leg of a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcModel {
    /// TOR_VEGAS with C-tor's default parameters.
    Vegas,
    /// A fixed window of this many cells (at least one SENDME's worth).
    Fixed(u64),
}

/// Congestion control state of one leg.
#[derive(Debug, Clone)]
pub enum LegCc {
    /// TOR_VEGAS.
    Vegas(Box<Vegas>),
    /// A fixed window.
    Fixed {
        /// The window.
        cwnd: u64,
        /// Cells sent and not yet acknowledged.
        inflight: u64,
        /// RTT estimation.
        rtt: Box<RttEstimator>,
    },
}

/// Something the congestion control refused: a simulation bug or a
/// scheduler that sent on a closed window, counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcRefused;

impl LegCc {
    /// A fresh controller for `model`.
    pub fn new(model: CcModel) -> Self {
        let params = CcParams::default();
        match model {
            CcModel::Vegas => LegCc::Vegas(Box::new(Vegas::new(
                &params,
                CcPath::Exit,
                u8::try_from(SENDME_INC).unwrap_or(31),
            ))),
            CcModel::Fixed(cwnd) => {
                let cwnd = cwnd.max(SENDME_INC);
                let cap = usize::try_from(cwnd / SENDME_INC + 1).unwrap_or(usize::MAX);
                LegCc::Fixed {
                    cwnd,
                    inflight: 0,
                    rtt: Box::new(RttEstimator::new(&params, cap)),
                }
            }
        }
    }

    /// Congestion window, cells.
    pub fn cwnd(&self) -> u64 {
        match self {
            LegCc::Vegas(v) => v.cwnd(),
            LegCc::Fixed { cwnd, .. } => *cwnd,
        }
    }

    /// Cells in flight.
    pub fn inflight(&self) -> u64 {
        match self {
            LegCc::Vegas(v) => v.inflight(),
            LegCc::Fixed { inflight, .. } => *inflight,
        }
    }

    /// Smoothed RTT, once measured.
    pub fn ewma_rtt(&self) -> Option<Duration> {
        match self {
            LegCc::Vegas(v) => v.ewma_rtt(),
            LegCc::Fixed { rtt, .. } => rtt.ewma_rtt(),
        }
    }

    /// Minimum RTT, once measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        match self {
            LegCc::Vegas(v) => v.rtt().min_rtt(),
            LegCc::Fixed { rtt, .. } => rtt.min_rtt(),
        }
    }

    /// Tell Vegas whether the leg's channel (link queue) is blocked.
    pub fn set_blocked(&mut self, blocked: bool, queued: u64) {
        if let LegCc::Vegas(v) = self {
            v.set_blocked_on_channel(blocked, queued);
        }
    }

    /// A data cell was sent at `now`.
    pub fn on_sent(&mut self, now: Instant) -> Result<(), CcRefused> {
        match self {
            LegCc::Vegas(v) => v.on_data_sent(now).map(|_| ()).map_err(|_| CcRefused),
            LegCc::Fixed {
                cwnd,
                inflight,
                rtt,
            } => {
                if *inflight >= *cwnd {
                    return Err(CcRefused);
                }
                if (*inflight + 1).is_multiple_of(SENDME_INC) {
                    rtt.expect_sendme(now).map_err(|_| CcRefused)?;
                }
                *inflight += 1;
                Ok(())
            }
        }
    }

    /// A SENDME arrived at `now`.
    pub fn on_sendme(&mut self, now: Instant) -> Result<(), CcRefused> {
        match self {
            LegCc::Vegas(v) => v.on_sendme_received(now).map(|_| ()).map_err(|_| CcRefused),
            LegCc::Fixed { inflight, rtt, .. } => {
                if *inflight < SENDME_INC {
                    return Err(CcRefused);
                }
                let ctx = RttContext {
                    in_slow_start: false,
                    cwnd_update_rate: 1,
                    at_cwnd_min: false,
                };
                rtt.on_sendme(now, ctx).map_err(|_| CcRefused)?;
                *inflight -= SENDME_INC;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_clocks_on_sendmes() {
        let t0 = Instant::now();
        let mut cc = LegCc::new(CcModel::Fixed(62));
        for _ in 0..62 {
            cc.on_sent(t0).unwrap();
        }
        assert_eq!(cc.on_sent(t0), Err(CcRefused));
        cc.on_sendme(t0 + Duration::from_millis(40)).unwrap();
        assert_eq!(cc.inflight(), 31);
        assert_eq!(cc.ewma_rtt(), Some(Duration::from_millis(40)));
        cc.on_sendme(t0 + Duration::from_millis(40)).unwrap();
        assert_eq!(cc.on_sendme(t0), Err(CcRefused));
    }

    #[test]
    fn vegas_starts_at_c_tor_initial_window() {
        let cc = LegCc::new(CcModel::Vegas);
        assert_eq!(cc.cwnd(), 124);
        assert_eq!(cc.inflight(), 0);
        assert_eq!(cc.ewma_rtt(), None);
    }
}
