//! A delivery-rate estimate for [`LegView::est_bandwidth`]: cells
//! acknowledged per second over the last few SENDMEs.
//!
//! While a leg is kept busy (which is exactly when ECF weighs waiting for
//! it), SENDMEs come back at the rate its bottleneck delivers, so the
//! rate of acknowledgements over a short window measures its bandwidth.
//! When the sender leaves the leg idle it under-estimates, which makes ECF
//! lean towards using the other legs, the LowRTT side. Before two SENDMEs
//! there is no estimate, and schedulers fall back to `cwnd / RTT`, which
//! over-estimates a leg whose queue is building (slow start).
//!
//! [`LegView::est_bandwidth`]: super::LegView::est_bandwidth

use std::collections::VecDeque;
use std::time::Instant;

/// Delivery rate of one leg from its SENDMEs.
#[derive(Debug, Clone)]
pub struct DeliveryRate {
    /// Arrival time and cells acknowledged of the last SENDMEs, oldest
    /// first; at most `window` entries.
    acks: VecDeque<(Instant, u64)>,
    /// How many SENDMEs the estimate spans (at least 2).
    window: usize,
}

impl DeliveryRate {
    /// An estimator over the last `window` SENDMEs (clamped to 2..=64).
    pub fn new(window: usize) -> Self {
        let window = window.clamp(2, 64);
        DeliveryRate {
            acks: VecDeque::with_capacity(window),
            window,
        }
    }

    /// A SENDME acknowledging `cells` arrived at `now`. A time earlier than
    /// the previous one (which a monotonic clock never gives) restarts the
    /// estimate.
    pub fn on_ack(&mut self, now: Instant, cells: u64) {
        if self.acks.back().is_some_and(|(t, _)| now < *t) {
            self.acks.clear();
        }
        if self.acks.len() >= self.window {
            self.acks.pop_front();
        }
        self.acks.push_back((now, cells));
    }

    /// Cells per second acknowledged over the window, once two SENDMEs
    /// apart in time have arrived. At least 1.
    pub fn rate(&self) -> Option<u64> {
        let (first, _) = self.acks.front()?;
        let (last, _) = self.acks.back()?;
        let span = last.saturating_duration_since(*first).as_micros();
        if span == 0 {
            return None;
        }
        // The first SENDME's cells were delivered before the window began.
        let cells: u128 = self.acks.iter().skip(1).map(|(_, c)| u128::from(*c)).sum();
        let rate = cells * 1_000_000 / span;
        Some(u64::try_from(rate).unwrap_or(u64::MAX).max(1))
    }
}

impl Default for DeliveryRate {
    /// Over the last 8 SENDMEs.
    fn default() -> Self {
        DeliveryRate::new(8)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn steady_acks() {
        let t0 = Instant::now();
        let mut r = DeliveryRate::new(4);
        assert_eq!(r.rate(), None);
        r.on_ack(t0, 31);
        assert_eq!(r.rate(), None);
        // 31 cells every 10 ms: 3100 cells/s, whatever the window holds.
        for i in 1..10u64 {
            r.on_ack(t0 + Duration::from_millis(10 * i), 31);
            assert_eq!(r.rate(), Some(3100), "{i}");
        }
    }

    #[test]
    fn no_rate_without_elapsed_time() {
        let t0 = Instant::now();
        let mut r = DeliveryRate::new(4);
        r.on_ack(t0, 31);
        r.on_ack(t0, 31);
        assert_eq!(r.rate(), None);
        r.on_ack(t0 + Duration::from_millis(31), 31);
        // 62 cells in 31 ms.
        assert_eq!(r.rate(), Some(2000));
    }

    #[test]
    fn clock_going_back_restarts() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut r = DeliveryRate::default();
        r.on_ack(t0, 31);
        r.on_ack(t0 + Duration::from_millis(31), 31);
        assert_eq!(r.rate(), Some(1000));
        r.on_ack(t0, 31);
        assert_eq!(r.rate(), None);
        assert_eq!(DeliveryRate::new(0).window, 2);
    }
}
