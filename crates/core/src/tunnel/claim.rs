//! What a replacement leg's CONFLUX_LINK may claim as `last_seqno_sent`.
//!
//! A C-tor exit takes a LINK whose `last_seqno_sent` exceeds what it has
//! delivered for data loss and closes the whole set
//! (`validate_unlinked_legs`), and messages we sent on other legs may still
//! be on their way when the new leg's LINK arrives. So a new leg of a linked
//! set claims only a sequence number we sent long enough ago for the exit
//! to have it: at least [`LINK_DELIVERED_RTTS`] of the slowest leg's link
//! RTT, and at least [`LINK_DELIVERED_MIN`]. Its sequence numbers then
//! start there and our first message on it carries a SWITCH over the rest
//! (prop 329 §2.4.4, §2.6).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Link RTTs of the slowest leg a send must be old to be claimed.
pub const LINK_DELIVERED_RTTS: u32 = 4;
/// ... and at least this long ago.
pub const LINK_DELIVERED_MIN: Duration = Duration::from_millis(250);
/// Sends remembered: a bound on memory. When the log is full, new sends
/// are not recorded until old ones age out, so the claim errs low (a
/// claim too low costs a larger SWITCH; one too high closes the set).
const SENT_LOG: usize = 1024;

/// Recent sends and the highest sequence number old enough to claim.
#[derive(Debug, Default)]
pub(crate) struct SentLog {
    /// When, and our `last_seq_sent` after it.
    log: VecDeque<(Instant, u64)>,
    /// `last_seq_sent` after the newest send folded out of the log.
    floor: u64,
}

impl SentLog {
    /// A multiplexed message went out at `now`; `seq` is our
    /// `last_seq_sent` after it.
    pub(crate) fn record(&mut self, now: Instant, seq: u64) {
        if self.log.len() < SENT_LOG {
            self.log.push_back((now, seq));
        }
    }

    /// The highest sequence number sent at least `max(slowest_rtt × 4,
    /// 250 ms)` before `now`.
    pub(crate) fn delivered(&mut self, now: Instant, slowest_rtt: Duration) -> u64 {
        let age = slowest_rtt
            .saturating_mul(LINK_DELIVERED_RTTS)
            .max(LINK_DELIVERED_MIN);
        while let Some(&(at, seq)) = self.log.front() {
            if at.checked_add(age).is_some_and(|t| t > now) {
                break;
            }
            self.floor = self.floor.max(seq);
            self.log.pop_front();
        }
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_only_old_sends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut log = SentLog::default();
        for i in 1..=10u64 {
            log.record(t0 + ms(i * 100), i);
        }
        // RTT 50 ms: 4 RTTs = 200 ms, below the 250 ms floor.
        assert_eq!(log.delivered(t0 + ms(100), ms(50)), 0);
        assert_eq!(log.delivered(t0 + ms(650), ms(50)), 4);
        // A slow leg (200 ms): 800 ms.
        assert_eq!(log.delivered(t0 + ms(1500), ms(200)), 7);
        assert_eq!(log.delivered(t0 + ms(5000), ms(200)), 10);
    }

    #[test]
    fn bounded_and_errs_low() {
        let t0 = Instant::now();
        let mut log = SentLog::default();
        for i in 0..(3 * SENT_LOG as u64) {
            log.record(t0, i + 1);
        }
        assert_eq!(log.log.len(), SENT_LOG);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(log.delivered(later, Duration::ZERO), SENT_LOG as u64);
        log.record(later, 5000);
        assert_eq!(
            log.delivered(later + Duration::from_secs(1), Duration::ZERO),
            5000
        );
    }
}
