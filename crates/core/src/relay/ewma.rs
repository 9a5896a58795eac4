//! Circuit priority by an exponentially weighted moving average of the
//! cells each circuit sent recently (C-tor's `circuitmux_ewma.c`, from
//! "DefenestraTor" / Tang and Goldberg, "An improved algorithm for Tor
//! circuit scheduling", CCS 2010): a channel's writer takes its next cell
//! from the circuit with the lowest count, so an interactive circuit that
//! sends a few cells goes before a bulk one with a backlog.
//!
//! C-tor decays the counts per tick (`CircuitPriorityTickSecs`, 10 s) by a
//! factor from the half-life (`CircuitPriorityHalflifeMsec`, default 30 s)
//! and weights a cell sent within a tick by its fraction; we decay
//! continuously with the same half-life, which orders circuits the same
//! way without a global tick.

use std::time::{Duration, Instant};

/// Default half-life of a circuit's cell count: C-tor's
/// `CMUX_PRIORITY_HALFLIFE_MSEC_DEFAULT`, the consensus parameter
/// `CircuitPriorityHalflifeMsec` (range 1 ms to `i32::MAX` ms).
pub const DEFAULT_HALFLIFE: Duration = Duration::from_millis(30_000);

/// A half-life from the consensus parameter `CircuitPriorityHalflifeMsec`
/// (clamped to its range; `None`: the default).
pub fn halflife_from_param(msec: Option<i32>) -> Duration {
    match msec {
        Some(ms) => Duration::from_millis(u64::try_from(ms.max(1)).unwrap_or(1)),
        None => DEFAULT_HALFLIFE,
    }
}

/// One circuit's decayed cell count in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CellEwma {
    count: f64,
    at: Option<Instant>,
}

impl CellEwma {
    /// The count at `now`, decayed with `halflife` since it last changed.
    /// Times before the last change count as that time.
    pub fn value(&self, now: Instant, halflife: Duration) -> f64 {
        let Some(at) = self.at else {
            return 0.0;
        };
        let dt = now.saturating_duration_since(at).as_secs_f64();
        let h = halflife.as_secs_f64().max(1e-3);
        self.count * (-std::f64::consts::LN_2 * dt / h).exp()
    }

    /// `cells` were sent at `now`.
    pub fn note_sent(&mut self, cells: u32, now: Instant, halflife: Duration) {
        let at = match self.at {
            Some(at) if at > now => at,
            _ => now,
        };
        self.count = self.value(at, halflife) + f64::from(cells);
        self.at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn counts_halve_every_halflife_and_add_up() {
        let t0 = Instant::now();
        let h = Duration::from_secs(30);
        let mut e = CellEwma::default();
        assert_eq!(e.value(t0, h), 0.0);
        e.note_sent(100, t0, h);
        assert!((e.value(t0, h) - 100.0).abs() < 1e-9);
        assert!((e.value(t0 + h, h) - 50.0).abs() < 1e-6);
        assert!((e.value(t0 + 2 * h, h) - 25.0).abs() < 1e-6);
        e.note_sent(10, t0 + h, h);
        assert!((e.value(t0 + h, h) - 60.0).abs() < 1e-6);
        // A time before the last change does not grow the count.
        assert!((e.value(t0, h) - 60.0).abs() < 1e-6);
        assert_eq!(halflife_from_param(None), DEFAULT_HALFLIFE);
        assert_eq!(halflife_from_param(Some(-5)), Duration::from_millis(1));
        assert_eq!(halflife_from_param(Some(500)), Duration::from_millis(500));
    }
}
