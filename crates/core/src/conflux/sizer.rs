//! Sizing a set's reorder-queue limit from its legs: the receive buffer
//! MPTCP needs (RFC 6182 §5.3.2, RFC 8684 §3.3.6), about twice the sum of
//! the legs' bandwidths times the largest RTT
//! ([`ReorderQueue::default_limit`]), measured as the set runs.
//!
//! The legs' summed bandwidth is the fastest rate at which the set moved
//! DATA over any [`ReorderSizer::INTERVAL`]: bytes delivered in order plus
//! bytes sent. Cells held behind a gap do not count, so an exit that opens
//! a gap and fills the queue behind it (the gap attack) cannot raise the
//! limit it is held to. The RTT is the largest the driver knows of any leg
//! (LINK to LINKED, or congestion control's while we send). The limit only
//! grows: lowering it under cells already held would close the set for
//! what was allowed a moment ago. It starts at
//! [`ReorderSizer::FLOOR_BYTES`] and stops at
//! [`ReorderLimit::CEILING_BYTES`], so a set never holds more than that
//! whatever an exit does.
//!
//! Sans-IO: the caller passes `now` and the counters.

use std::time::{Duration, Instant};

use super::reorder::{ReorderLimit, ReorderQueue};

/// Raises a set's reorder limit as its legs show their bandwidth.
#[derive(Debug, Clone, Default)]
pub struct ReorderSizer {
    /// The previous sample: when, and the byte count then.
    last: Option<(Instant, u64)>,
    /// The fastest rate seen, bytes per second.
    max_rate: u64,
    /// The largest RTT seen on any leg.
    max_rtt: Option<Duration>,
}

impl ReorderSizer {
    /// The limit before the legs are measured, and the least it is: the
    /// largest reorder peak Braid saw in its benchmark against C-tor
    /// exits (0.94 MB: 1 MiB/s and 3 MiB/s legs, where C-tor's LowRTT
    /// feeds the slow leg's queue) fits twice.
    pub const FLOOR_BYTES: usize = 2 * 1024 * 1024;
    /// Rates are measured over at least this long.
    pub const INTERVAL: Duration = Duration::from_millis(250);

    /// A sizer that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The limit a set starts with.
    pub fn initial_limit() -> ReorderLimit {
        ReorderLimit::from_bytes(Self::FLOOR_BYTES)
    }

    /// True if a sample at `now` would measure (the first one, or
    /// [`Self::INTERVAL`] after the previous).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .as_ref()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= Self::INTERVAL)
    }

    /// Take the set's byte count (`bytes`: DATA delivered in order plus
    /// sent, so far) and its legs' RTTs at `now` (a no-op unless
    /// [`Self::due`]) and return the byte limit they call for so far:
    /// twice the fastest rate times the largest RTT, within
    /// [[`Self::FLOOR_BYTES`], [`ReorderLimit::CEILING_BYTES`]].
    pub fn observe(
        &mut self,
        now: Instant,
        bytes: u64,
        rtts: impl IntoIterator<Item = Duration>,
    ) -> usize {
        if self.due(now) {
            if let Some(rtt) = rtts.into_iter().max() {
                self.max_rtt = Some(self.max_rtt.map_or(rtt, |m| m.max(rtt)));
            }
            if let Some((at, before)) = self.last {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                let rate = (bytes.saturating_sub(before) as f64 / secs) as u64;
                self.max_rate = self.max_rate.max(rate);
            }
            self.last = Some((now, bytes));
        }
        self.limit_bytes()
    }

    /// The limit for what was measured so far.
    pub fn limit_bytes(&self) -> usize {
        let rtt = self.max_rtt.unwrap_or_default();
        ReorderQueue::<()>::default_limit(&[(self.max_rate, rtt)])
            .max_bytes
            .clamp(Self::FLOOR_BYTES, ReorderLimit::CEILING_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_at_the_floor() {
        let s = ReorderSizer::new();
        assert_eq!(s.limit_bytes(), ReorderSizer::FLOOR_BYTES);
        assert_eq!(
            ReorderSizer::initial_limit().max_bytes,
            ReorderSizer::FLOOR_BYTES
        );
    }

    #[test]
    fn follows_the_fastest_rate_and_the_largest_rtt() {
        let t = Instant::now();
        let mut s = ReorderSizer::new();
        assert_eq!(
            s.observe(t, 0, [ms(100), ms(200)]),
            ReorderSizer::FLOOR_BYTES
        );
        // Too early: no measurement.
        s.observe(t + ms(100), 3_000_000, [ms(100), ms(200)]);
        assert_eq!(s.limit_bytes(), ReorderSizer::FLOOR_BYTES);
        // 30 MB/s over 200 ms: 2 x 30 MB/s x 0.2 s = 12 MB.
        assert_eq!(
            s.observe(t + ms(500), 15_000_000, [ms(100), ms(200)]),
            12_000_000
        );
        // Slower later, shorter RTTs: the limit stays.
        assert_eq!(s.observe(t + ms(1500), 16_000_000, [ms(50)]), 12_000_000);
        // Faster: it grows (50 MB/s: 20 MB).
        assert_eq!(s.observe(t + ms(2000), 41_000_000, [ms(50)]), 20_000_000);
    }

    #[test]
    fn slow_sets_stay_at_the_floor_and_fast_long_ones_stop_at_the_ceiling() {
        let t = Instant::now();
        let mut s = ReorderSizer::new();
        s.observe(t, 0, [ms(45), ms(45)]);
        // 4 MB/s over 45 ms: 360 kB, under the floor.
        assert_eq!(
            s.observe(t + ms(1000), 4_000_000, [ms(45), ms(45)]),
            ReorderSizer::FLOOR_BYTES
        );
        // An exit that answered LINK after 10 s and sends 100 MB/s.
        assert_eq!(
            s.observe(t + ms(2000), 104_000_000, [ms(10_000), ms(45)]),
            ReorderLimit::CEILING_BYTES
        );
    }

    #[test]
    fn no_rtt_no_growth() {
        let t = Instant::now();
        let mut s = ReorderSizer::new();
        s.observe(t, 0, []);
        assert_eq!(
            s.observe(t + ms(1000), 100_000_000, []),
            ReorderSizer::FLOOR_BYTES
        );
    }
}
