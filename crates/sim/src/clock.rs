//! The virtual clock: a fixed base `Instant` plus an offset that only the
//! simulation advances. Nothing sleeps and nothing reads the system clock
//! after the base is taken, so what a run computes does not depend on the
//! machine; reports give times as offsets from the base.

use std::time::{Duration, Instant};

/// Virtual time.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    /// Time zero.
    base: Instant,
    /// Time elapsed since `base`.
    offset: Duration,
}

impl VirtualClock {
    /// A clock at time zero, `base`.
    pub fn new(base: Instant) -> Self {
        VirtualClock {
            base,
            offset: Duration::ZERO,
        }
    }

    /// Now, as an `Instant` for the core's state machines.
    pub fn now(&self) -> Instant {
        self.at(self.offset)
    }

    /// The `Instant` at `offset` from time zero (saturating at the base if
    /// the platform cannot represent it, which no simulated run reaches).
    pub fn at(&self, offset: Duration) -> Instant {
        self.base.checked_add(offset).unwrap_or(self.base)
    }

    /// Time elapsed since time zero.
    pub fn elapsed(&self) -> Duration {
        self.offset
    }

    /// Move to `offset`; time never goes backwards, so an earlier offset
    /// leaves the clock where it is.
    pub fn advance_to(&mut self, offset: Duration) {
        self.offset = self.offset.max(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic() {
        let base = Instant::now();
        let mut c = VirtualClock::new(base);
        assert_eq!(c.now(), base);
        c.advance_to(Duration::from_millis(5));
        c.advance_to(Duration::from_millis(3));
        assert_eq!(c.elapsed(), Duration::from_millis(5));
        assert_eq!(c.now(), base + Duration::from_millis(5));
    }
}
