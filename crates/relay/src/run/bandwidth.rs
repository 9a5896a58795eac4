//! The observed bandwidth a descriptor reports (dir-spec §2.1.1
//! `bandwidth`, third value): as C-tor's `rep_hist_bandwidth_assess`, the
//! smaller of the highest read rate and the highest write rate, each the
//! most bytes moved in any 10-second period of the last day, per second.

use std::collections::VecDeque;

/// Length of one period, seconds.
pub(crate) const PERIOD_SECS: u64 = 10;
/// Periods kept: a day's.
const PERIODS: usize = 24 * 3600 / PERIOD_SECS as usize;

/// Bytes read and written per period, for the last day.
#[derive(Debug, Default)]
pub(crate) struct BandwidthHistory {
    /// (read, written) per period, oldest first.
    periods: VecDeque<(u64, u64)>,
    /// The totals at the end of the last period.
    last: Option<(u64, u64)>,
}

impl BandwidthHistory {
    /// End a period: `read` and `written` are the running totals.
    pub(crate) fn record(&mut self, read: u64, written: u64) {
        if let Some((r, w)) = self.last {
            if self.periods.len() == PERIODS {
                self.periods.pop_front();
            }
            self.periods
                .push_back((read.saturating_sub(r), written.saturating_sub(w)));
        }
        self.last = Some((read, written));
    }

    /// The observed bandwidth, bytes per second.
    pub(crate) fn observed(&self) -> u32 {
        let max_read = self.periods.iter().map(|p| p.0).max().unwrap_or(0);
        let max_written = self.periods.iter().map(|p| p.1).max().unwrap_or(0);
        u32::try_from(max_read.min(max_written) / PERIOD_SECS).unwrap_or(u32::MAX)
    }
}

/// Whether the observed bandwidth moved enough from what the last
/// descriptor said to publish a new one: by half or double (C-tor's
/// `check_descriptor_bandwidth_changed` uses the same factor of two).
pub(crate) fn changed_enough(published: u32, now: u32) -> bool {
    let (p, n) = (u64::from(published), u64::from(now));
    n > p.saturating_mul(2) || p > n.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_of_the_peaks_per_second() {
        let mut h = BandwidthHistory::default();
        assert_eq!(h.observed(), 0);
        h.record(1000, 5000);
        assert_eq!(h.observed(), 0, "the first totals only start a period");
        // 100 kB read / 10 s, 20 kB written.
        h.record(101_000, 25_000);
        // 10 kB read, 300 kB written.
        h.record(111_000, 325_000);
        // Peaks: read 100 kB, written 300 kB -> 100 kB / 10 s.
        assert_eq!(h.observed(), 10_000);
    }

    #[test]
    fn a_day_is_kept() {
        let mut h = BandwidthHistory::default();
        h.record(0, 0);
        h.record(1_000_000, 1_000_000);
        assert_eq!(h.observed(), 100_000);
        let (mut r, mut w) = (1_000_000, 1_000_000);
        for _ in 0..PERIODS - 1 {
            r += 10;
            w += 10;
            h.record(r, w);
        }
        assert_eq!(h.observed(), 100_000, "the peak is still within the day");
        h.record(r + 10, w + 10);
        assert_eq!(h.observed(), 1, "the peak aged out");
        assert_eq!(h.periods.len(), PERIODS);
    }

    #[test]
    fn change_factor() {
        assert!(!changed_enough(0, 0));
        assert!(changed_enough(0, 1));
        assert!(!changed_enough(1000, 2000));
        assert!(changed_enough(1000, 2001));
        assert!(changed_enough(1000, 499));
        assert!(!changed_enough(1000, 500));
    }
}
