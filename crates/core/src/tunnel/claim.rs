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
/// Sends remembered: a bound on memory. When the log is full every second
/// entry is dropped, so it keeps covering the same time at half the
/// resolution: the claim can only err low (a claim too low costs a larger
/// SWITCH; one too high closes the set).
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
        if self.log.len() >= SENT_LOG {
            // Keep the newest, drop every second one before it.
            let mut i = 0usize;
            let last = self.log.len() - 1;
            self.log.retain(|_| {
                let keep = i % 2 == 1 || i == last;
                i += 1;
                keep
            });
        }
        self.log.push_back((now, seq));
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
    fn bounded_and_never_claims_a_recent_send() {
        // Fast sending: 1 ms apart, far more sends than the log holds;
        // the send numbered k goes at k - 1 ms.
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let old_enough = |claim: u64, now_ms: u64| claim == 0 || claim + 249 <= now_ms;
        let mut log = SentLog::default();
        let n = 10 * SENT_LOG as u64;
        for i in 0..n {
            log.record(t0 + ms(i), i + 1);
            let claim = log.delivered(t0 + ms(i), Duration::ZERO);
            assert!(old_enough(claim, i), "{claim} at {i}");
        }
        // Without claims in between the log fills and thins out.
        for i in n..2 * n {
            log.record(t0 + ms(i), i + 1);
            assert!(log.log.len() <= SENT_LOG);
        }
        let now = 2 * n;
        let claim = log.delivered(t0 + ms(now), Duration::ZERO);
        assert!(old_enough(claim, now), "{claim} at {now}");
        assert!(
            claim + 300 >= now,
            "close to the newest old-enough send: {claim} at {now}"
        );
    }
}
