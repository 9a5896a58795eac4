//! A sampled guard on its own: the retry schedule (guard-spec §4.5, §A.1),
//! its reachability as of a given time, and whether it passes the filter
//! (§4.2).

use std::time::{Duration, SystemTime};

use super::{DAY, GuardFilter, HOUR, Reachability, SampledGuard, since};

/// The retry interval after failing for `failing_for` (guard-spec §A.1
/// PRIMARY_GUARDS_RETRY_SCHED and GUARDS_RETRY_SCHED).
pub fn retry_interval(failing_for: Duration, primary: bool) -> Duration {
    let (a, b, c, d) = if primary {
        (10 * 60, 90 * 60, 4 * 3600, 9 * 3600)
    } else {
        (3600, 4 * 3600, 18 * 3600, 36 * 3600)
    };
    let secs = if failing_for < 6 * HOUR {
        a
    } else if failing_for < 96 * HOUR {
        // "for the next 90 hours"
        b
    } else if failing_for < 96 * HOUR + 3 * DAY {
        // "for the next 3 days"
        c
    } else {
        d
    };
    Duration::from_secs(secs)
}

impl SampledGuard {
    /// Member of {FILTERED_GUARDS} (§4.2): listed, Running in the latest
    /// consensus, and allowed by our configuration.
    pub(super) fn is_filtered(&self, filter: &GuardFilter) -> bool {
        self.listed
            && self
                .listing
                .is_some_and(|l| l.running && filter.permits(&self.id, l.addr))
    }

    /// When a guard marked unreachable becomes worth retrying (§4.5).
    pub(super) fn retry_at(&self, primary: bool) -> Option<SystemTime> {
        if self.reachable != Reachability::No {
            return None;
        }
        let tried = self.last_tried.or(self.failing_since)?;
        let failing_for = since(tried, self.failing_since.unwrap_or(tried));
        tried.checked_add(retry_interval(failing_for, primary))
    }

    /// Reachability as of `now`, counting expired failures as Maybe.
    pub(super) fn reachable_at(&self, now: SystemTime, primary: bool) -> Reachability {
        match self.retry_at(primary) {
            Some(t) if now >= t => Reachability::Maybe,
            _ => self.reachable,
        }
    }
}
