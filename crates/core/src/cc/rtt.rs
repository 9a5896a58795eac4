//! Round-trip time estimation from SENDMEs (proposal 324 §2.1).
//!
//! When we send the DATA cell that will make the peer answer with a SENDME
//! (every `sendme_inc`-th cell), we remember when; when that SENDME comes
//! back, the difference is one RTT sample. Samples are smoothed with
//! N-EWMA (§2.1.2), the minimum and maximum are kept, and samples that look
//! like a stalled or jumping clock are thrown away (§2.1.1).
//!
//! The queue of send times holds one entry per outstanding SENDME, so it
//! never holds more than `cwnd / sendme_inc` entries when the sender obeys
//! its window; it also has a hard capacity fixed at creation. A SENDME that
//! finds the queue empty is the peer's protocol violation
//! ([`CcError::UnexpectedSendme`]).
//!
//! C-tor caches "the clock is stalled" in one global flag shared by all
//! circuits; a sans-IO estimator has no global state, so Braid keeps the
//! flag per estimator ([`RttEstimator::clock_stalled`]); a driver that wants
//! the global behaviour can read it and aggregate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::error::{CcError, WindowKind};
use super::params::CcParams;

/// A new RTT more than this many times larger (jump) or smaller (stall)
/// than the EWMA is suspicious (proposal 324 §2.1.1; C-tor
/// `DELTA_DISCREPENCY_RATIO_MAX`).
const DELTA_DISCREPANCY_RATIO_MAX: u64 = 5000;

/// N-count EWMA (proposal 324 §2.1.2), in the rearranged form the spec
/// requires for identical rounding: `(2·curr + (N−1)·prev) / (N+1)`. A
/// `prev` of 0 means "no average yet".
pub fn n_count_ewma(curr: u64, prev: u64, n: u64) -> u64 {
    if prev == 0 {
        return curr;
    }
    let n = u128::from(n.max(1));
    let v = (2 * u128::from(curr) + (n - 1) * u128::from(prev)) / (n + 1);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Weighted average between two values giving `pct_max` percent to the
/// larger (C-tor `percent_max_mix`): 0 is min, 100 is max.
fn percent_max_mix(a: u64, b: u64, pct_max: u64) -> u64 {
    let pct = u128::from(pct_max.min(100));
    let (hi, lo) = (u128::from(a.max(b)), u128::from(a.min(b)));
    u64::try_from(pct * hi / 100 + (100 - pct) * lo / 100).unwrap_or(u64::MAX)
}

/// Microseconds in a duration, saturating.
fn usec(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What the congestion controller tells the estimator at each SENDME; the
/// smoothing and the minimum-RTT reset depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttContext {
    /// The controller is in slow start.
    pub in_slow_start: bool,
    /// SENDMEs between cwnd updates (`CWND_UPDATE_RATE`, proposal 324 §3.3).
    pub cwnd_update_rate: u64,
    /// cwnd currently equals `cc_cwnd_min`.
    pub at_cwnd_min: bool,
}

/// The outcome of one SENDME for the estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RttSample {
    /// A usable sample: the raw RTT.
    Measured(Duration),
    /// Discarded: the clock did not move (zero delta), or the sample is far
    /// below the average while the clock is known to have stalled.
    ClockStalled,
    /// Discarded: far above the average, likely a clock jump or a
    /// suspended peer.
    ClockJumped,
}

impl RttSample {
    /// True if the sample was used.
    pub fn is_measured(&self) -> bool {
        matches!(self, RttSample::Measured(_))
    }
}

/// The RTT estimator of one circuit hop (proposal 324 §2.1).
#[derive(Debug, Clone)]
pub struct RttEstimator {
    /// Send times of the cells that each expect a SENDME, oldest first.
    pending: VecDeque<Instant>,
    /// Hard bound on `pending`.
    capacity: usize,
    /// `cc_ewma_cwnd_pct`.
    ewma_cwnd_pct: u64,
    /// `cc_ewma_max`.
    ewma_max: u64,
    /// `cc_ewma_ss`.
    ewma_ss: u64,
    /// `cc_rtt_reset_pct`.
    rtt_reset_pct: u64,
    /// Smoothed RTT in µs; 0 until the first sample.
    ewma_usec: u64,
    /// Minimum (of the EWMA) in µs; 0 until the first sample.
    min_usec: u64,
    /// Maximum raw sample in µs.
    max_usec: u64,
    /// Last used raw sample in µs.
    last_usec: u64,
    /// Cached "the clock stalled" (proposal 324 §2.1.1).
    clock_stalled: bool,
}

impl RttEstimator {
    /// A new estimator with room for `capacity` outstanding SENDMEs.
    pub fn new(params: &CcParams, capacity: usize) -> Self {
        RttEstimator {
            pending: VecDeque::new(),
            capacity,
            ewma_cwnd_pct: u64::from(params.ewma_cwnd_pct),
            ewma_max: u64::from(params.ewma_max),
            ewma_ss: u64::from(params.ewma_ss),
            rtt_reset_pct: u64::from(params.rtt_reset_pct),
            ewma_usec: 0,
            min_usec: 0,
            max_usec: 0,
            last_usec: 0,
            clock_stalled: false,
        }
    }

    /// We sent, at `now`, a cell that will make the peer send a SENDME.
    ///
    /// Fails (a local error) if the queue is at its capacity, which only
    /// happens when the sender ignores its window.
    pub fn expect_sendme(&mut self, now: Instant) -> Result<(), CcError> {
        if self.pending.len() >= self.capacity {
            return Err(CcError::SendWindowClosed {
                kind: WindowKind::Circuit,
            });
        }
        self.pending.push_back(now);
        Ok(())
    }

    /// A SENDME arrived at `now`: take the oldest send time and update the
    /// estimates (proposal 324 §2.1; C-tor
    /// `congestion_control_update_circuit_rtt`).
    pub fn on_sendme(&mut self, now: Instant, ctx: RttContext) -> Result<RttSample, CcError> {
        let sent = self.pending.pop_front().ok_or(CcError::UnexpectedSendme {
            kind: WindowKind::Circuit,
        })?;
        // An `Instant` earlier than the send time is a clock going
        // backwards: a zero delta, treated as a stall.
        let raw = now.saturating_duration_since(sent);
        let raw_usec = usec(raw);

        if let Some(discard) = self.stalled_or_jumped(raw_usec, ctx.in_slow_start) {
            return Ok(discard);
        }

        // proposal 324 §2.1.2: N is cc_ewma_ss in slow start, else the
        // SENDMEs per cwnd update times cc_ewma_cwnd_pct, capped at
        // cc_ewma_max, and at least 2.
        let n = if ctx.in_slow_start {
            self.ewma_ss
        } else {
            (ctx.cwnd_update_rate.saturating_mul(self.ewma_cwnd_pct) / 100).min(self.ewma_max)
        }
        .max(2);
        self.ewma_usec = n_count_ewma(raw_usec, self.ewma_usec, n);
        self.max_usec = self.max_usec.max(raw_usec);
        self.last_usec = raw_usec;

        if self.min_usec == 0 {
            self.min_usec = self.ewma_usec;
        } else if ctx.at_cwnd_min && !ctx.in_slow_start {
            // proposal 324 §3.1.2, cc_rtt_reset_pct: a cwnd stuck at its
            // minimum may come from an abnormally low min RTT; raise it.
            self.min_usec = percent_max_mix(self.ewma_usec, self.min_usec, self.rtt_reset_pct);
        } else if self.ewma_usec < self.min_usec {
            // The minimum of the EWMA, not of raw samples, as C-tor does.
            self.min_usec = self.ewma_usec;
        }
        Ok(RttSample::Measured(raw))
    }

    /// The clock heuristics of proposal 324 §2.1.1: `Some(reason)` if the
    /// sample must be discarded.
    fn stalled_or_jumped(&mut self, new_usec: u64, in_slow_start: bool) -> Option<RttSample> {
        if new_usec == 0 {
            self.clock_stalled = true;
            return Some(RttSample::ClockStalled);
        }
        // No checks until we have an EWMA and have left slow start.
        if in_slow_start || self.ewma_usec == 0 {
            return None;
        }
        let old = u128::from(self.ewma_usec);
        let new = u128::from(new_usec);
        let ratio = u128::from(DELTA_DISCREPANCY_RATIO_MAX);
        if old > new * ratio {
            // Much smaller: a stall only if the clock was already seen
            // stalling (a 0 delta); otherwise trust it.
            return self.clock_stalled.then_some(RttSample::ClockStalled);
        }
        if new > old * ratio {
            // Much larger: a jump (or a suspended peer). Not cached: the
            // network can cause it.
            return Some(RttSample::ClockJumped);
        }
        self.clock_stalled = false;
        None
    }

    /// Outstanding SENDMEs (send times waiting for their SENDME).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The hard bound on outstanding SENDMEs.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Smoothed RTT, once there is a sample.
    pub fn ewma_rtt(&self) -> Option<Duration> {
        (self.ewma_usec != 0).then(|| Duration::from_micros(self.ewma_usec))
    }

    /// Minimum RTT (of the smoothed value), once there is a sample.
    pub fn min_rtt(&self) -> Option<Duration> {
        (self.min_usec != 0).then(|| Duration::from_micros(self.min_usec))
    }

    /// Maximum raw RTT, once there is a sample.
    pub fn max_rtt(&self) -> Option<Duration> {
        (self.max_usec != 0).then(|| Duration::from_micros(self.max_usec))
    }

    /// Last used raw RTT sample.
    pub fn last_rtt(&self) -> Option<Duration> {
        (self.last_usec != 0).then(|| Duration::from_micros(self.last_usec))
    }

    /// Smoothed RTT in µs, 0 if none (C-tor's representation).
    pub fn ewma_usec(&self) -> u64 {
        self.ewma_usec
    }

    /// Minimum RTT in µs, 0 if none.
    pub fn min_usec(&self) -> u64 {
        self.min_usec
    }

    /// True if the last verdict on the clock was "stalled".
    pub fn clock_stalled(&self) -> bool {
        self.clock_stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SS: RttContext = RttContext {
        in_slow_start: true,
        cwnd_update_rate: 1,
        at_cwnd_min: false,
    };
    const STEADY: RttContext = RttContext {
        in_slow_start: false,
        cwnd_update_rate: 1,
        at_cwnd_min: false,
    };

    fn est() -> RttEstimator {
        RttEstimator::new(&CcParams::default(), 16)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Send at `t0 + sent`, SENDME at `t0 + recv`.
    fn sample(
        e: &mut RttEstimator,
        t0: Instant,
        sent: Duration,
        recv: Duration,
        ctx: RttContext,
    ) -> RttSample {
        e.expect_sendme(t0 + sent).unwrap();
        e.on_sendme(t0 + recv, ctx).unwrap()
    }

    #[test]
    fn ewma_min_max() {
        let t0 = Instant::now();
        let mut e = est();
        assert_eq!(e.ewma_rtt(), None);
        assert_eq!(
            sample(&mut e, t0, ms(0), ms(100), SS),
            RttSample::Measured(ms(100))
        );
        assert_eq!(e.ewma_rtt(), Some(ms(100)));
        assert_eq!(e.min_rtt(), Some(ms(100)));
        // N = cc_ewma_ss = 2: (2*200 + 1*100) / 3 = 166.666 ms
        sample(&mut e, t0, ms(100), ms(300), SS);
        assert_eq!(e.ewma_usec(), 166_666);
        assert_eq!(e.max_rtt(), Some(ms(200)));
        assert_eq!(e.min_usec(), 100_000);
        // A lower value pulls the EWMA, and the min follows the EWMA.
        sample(&mut e, t0, ms(300), ms(310), SS);
        assert_eq!(e.ewma_usec(), (2 * 10_000 + 166_666) / 3);
        assert_eq!(e.min_usec(), (2 * 10_000 + 166_666) / 3);
        assert_eq!(e.last_rtt(), Some(ms(10)));
    }

    #[test]
    fn steady_state_n_uses_update_rate() {
        let t0 = Instant::now();
        let mut e = est();
        sample(&mut e, t0, ms(0), ms(100), SS);
        // update rate 40, pct 50 -> 20, capped at ewma_max 10: (2*200 + 9*100)/11
        let ctx = RttContext {
            cwnd_update_rate: 40,
            ..STEADY
        };
        sample(&mut e, t0, ms(0), ms(200), ctx);
        assert_eq!(e.ewma_usec(), (2 * 200_000 + 9 * 100_000) / 11);
    }

    #[test]
    fn zero_delta_is_a_stall_and_is_cached() {
        let t0 = Instant::now();
        let mut e = est();
        assert_eq!(
            sample(&mut e, t0, ms(5), ms(5), SS),
            RttSample::ClockStalled
        );
        assert!(e.clock_stalled());
        assert_eq!(e.ewma_rtt(), None);
        // A clock going backwards is a zero delta too.
        assert_eq!(
            sample(&mut e, t0, ms(10), ms(5), SS),
            RttSample::ClockStalled
        );
        // In slow start, no ratio checks: any non-zero sample is used.
        assert!(sample(&mut e, t0, ms(0), ms(100), SS).is_measured());
    }

    #[test]
    fn jump_is_discarded_after_slow_start() {
        let t0 = Instant::now();
        let mut e = est();
        sample(&mut e, t0, ms(0), ms(10), SS);
        // 10 ms * 5000 = 50 s; 60 s is a jump.
        let s = sample(&mut e, t0, ms(0), Duration::from_secs(60), STEADY);
        assert_eq!(s, RttSample::ClockJumped);
        assert_eq!(e.ewma_rtt(), Some(ms(10)));
        assert!(!e.clock_stalled(), "a jump is not cached");
        // The same sample in slow start would be used.
        let s = sample(&mut e, t0, ms(0), Duration::from_secs(60), SS);
        assert!(s.is_measured());
    }

    #[test]
    fn tiny_sample_depends_on_cached_stall() {
        let t0 = Instant::now();
        let mut e = est();
        sample(&mut e, t0, ms(0), Duration::from_secs(10), SS);
        // 10 s / 5000 = 2 ms; 1 µs is far below. Clock not known stalled:
        // the sample is used.
        let tiny = Duration::from_micros(1);
        assert!(sample(&mut e, t0, ms(0), tiny, STEADY).is_measured());

        let mut e = est();
        sample(&mut e, t0, ms(0), Duration::from_secs(10), SS);
        // A zero delta marks the clock stalled ...
        assert_eq!(
            sample(&mut e, t0, ms(1), ms(1), STEADY),
            RttSample::ClockStalled
        );
        // ... so a far smaller sample is now discarded ...
        assert_eq!(
            sample(&mut e, t0, ms(0), tiny, STEADY),
            RttSample::ClockStalled
        );
        // ... and a plausible one clears the flag.
        assert!(sample(&mut e, t0, ms(0), Duration::from_secs(9), STEADY).is_measured());
        assert!(!e.clock_stalled());
    }

    #[test]
    fn min_rtt_reset_at_cwnd_min() {
        let t0 = Instant::now();
        let mut e = est();
        sample(&mut e, t0, ms(0), ms(100), SS);
        let ctx = RttContext {
            at_cwnd_min: true,
            ..STEADY
        };
        // ewma = (2*400+100)/3 = 300 ms; rtt_reset_pct 100 -> min = max(ewma, min).
        sample(&mut e, t0, ms(0), ms(400), ctx);
        assert_eq!(e.min_usec(), 300_000);
    }

    #[test]
    fn unexpected_sendme_and_capacity() {
        let t0 = Instant::now();
        let mut e = RttEstimator::new(&CcParams::default(), 2);
        assert_eq!(
            e.on_sendme(t0, SS),
            Err(CcError::UnexpectedSendme {
                kind: WindowKind::Circuit
            })
        );
        e.expect_sendme(t0).unwrap();
        e.expect_sendme(t0).unwrap();
        assert!(e.expect_sendme(t0).is_err());
        assert_eq!(e.pending(), 2);
    }

    #[test]
    fn ewma_helpers() {
        assert_eq!(n_count_ewma(10, 0, 5), 10);
        assert_eq!(n_count_ewma(10, 20, 3), (20 + 2 * 20) / 4);
        assert_eq!(n_count_ewma(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(percent_max_mix(10, 20, 0), 10);
        assert_eq!(percent_max_mix(10, 20, 100), 20);
        assert_eq!(percent_max_mix(20, 10, 50), 15);
    }
}
