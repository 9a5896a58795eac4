//! Download schedules (dir-spec §5.5): after a failed fetch, a document is
//! asked for again after a randomized exponential delay, the "decorrelated
//! jitter" of C-tor's `next_random_exponential_delay`:
//!
//! ```text
//! Delay_{i+1} = MIN(cap, random_between(lower_bound, upper_bound))
//!   where upper_bound = MAX(lower_bound + 1, Delay_i * 3)
//!         lower_bound = MAX(1, base_delay)
//! ```
//!
//! One schedule per document kind, shared by every source: failing over to
//! another source does not reset it, only a useful answer does (C-tor's
//! `download_status_increment_failure` / `download_status_reset`). The
//! random numbers come from the caller, so tests are deterministic.

use std::time::{Duration, SystemTime};

use rand::{Rng, RngExt as _};

/// A schedule's delays: `base_delay` and `cap` of dir-spec §5.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleParams {
    initial: Duration,
    cap: Duration,
}

/// The least delay of any schedule. C-tor's client schedules all have a
/// base delay of 0 (`TestingClientDownloadInitialDelay`,
/// `TestingClientConsensusDownloadInitialDelay`,
/// `ClientBootstrapConsensusAuthorityOnlyDownloadInitialDelay`), which
/// `next_random_exponential_delay` raises to one second ("can't be zero").
pub const MIN_DELAY: Duration = Duration::from_secs(1);

/// The longest delay of Braid's client schedules. dir-spec §5.5 puts the
/// cap at `INT_MAX` seconds, and C-tor makes up for that by resetting its
/// schedules when an application asks for a circuit; Braid has no such
/// reset, so it caps the wait instead. Ten minutes is the longest finite
/// step of C-tor's client schedule before 0.3.4 replaced the lists by this
/// formula (`TestingClientDownloadSchedule` "0, 0, 60, 300, 600,
/// 2147483647"): once the jitter has drifted past it, six fetches an hour.
pub const MAX_DELAY: Duration = Duration::from_secs(600);

/// The consensus (C-tor `DL_SCHED_CONSENSUS`, client).
pub const CONSENSUS_SCHEDULE: ScheduleParams = ScheduleParams::new(MIN_DELAY, MAX_DELAY);
/// Authority certificates (C-tor `DL_SCHED_GENERIC`, client).
pub const CERT_SCHEDULE: ScheduleParams = ScheduleParams::new(MIN_DELAY, MAX_DELAY);
/// Microdescriptors (C-tor `DL_SCHED_GENERIC`, client).
pub const MICRODESC_SCHEDULE: ScheduleParams = ScheduleParams::new(MIN_DELAY, MAX_DELAY);

impl ScheduleParams {
    /// A schedule whose delays lie in `initial ..= cap`. `initial` is
    /// raised to [`MIN_DELAY`] (never zero), and `cap` to `initial`.
    pub const fn new(initial: Duration, cap: Duration) -> Self {
        let initial = if initial.as_millis() < MIN_DELAY.as_millis() {
            MIN_DELAY
        } else {
            initial
        };
        let cap = if cap.as_millis() < initial.as_millis() {
            initial
        } else {
            cap
        };
        Self { initial, cap }
    }

    /// The first and least delay (`lower_bound`).
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The next step of the jitter after `last` (`None`: the first failure
    /// since a reset), in milliseconds rather than C-tor's seconds:
    /// `random_between(lower_bound, MAX(lower_bound + 1, last * 3))`. The
    /// first is `initial`, as in C-tor (whose `last_delay_used` starts at
    /// 0). Not capped: see [`Self::delay`].
    pub fn next_step<R: Rng + ?Sized>(&self, last: Option<Duration>, rng: &mut R) -> Duration {
        let lower = millis(self.initial);
        let last = last.map_or(0, millis);
        let upper = last.saturating_mul(3).max(lower.saturating_add(1));
        Duration::from_millis(rng.random_range(lower..upper))
    }

    /// The wait for a step: `MIN(cap, step)`.
    ///
    /// The jitter itself runs on uncapped, as C-tor's does (its cap is
    /// `INT_MAX`): each step is drawn from up to three times the last
    /// *step*, not the last wait. Drawn from three times a capped wait, a
    /// third of the draws would fall below the cap and the walk could sink
    /// back to seconds (twice the fetches an hour at the cap, in bursts);
    /// uncapped, the steps drift upwards (by a factor of e^0.1 a step on
    /// average) and the wait settles at the cap.
    pub fn delay(&self, step: Duration) -> Duration {
        step.min(self.cap)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a document may be asked for again, after its failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSchedule {
    params: ScheduleParams,
    failures: u32,
    /// The jitter's last step, uncapped.
    last_step: Option<Duration>,
    /// The last wait, capped.
    last_delay: Option<Duration>,
    ready_at: Option<SystemTime>,
}

impl DownloadSchedule {
    /// A schedule with no failures: ready at once.
    pub fn new(params: ScheduleParams) -> Self {
        Self {
            params,
            failures: 0,
            last_step: None,
            last_delay: None,
            ready_at: None,
        }
    }

    /// Its delays.
    pub fn params(&self) -> ScheduleParams {
        self.params
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay chosen after the last failure.
    pub fn last_delay(&self) -> Option<Duration> {
        self.last_delay
    }

    /// The earliest time of the next attempt (`None`: at once).
    pub fn ready_at(&self) -> Option<SystemTime> {
        self.ready_at
    }

    /// True if an attempt may be made at `now`.
    pub fn is_ready(&self, now: SystemTime) -> bool {
        self.ready_at.is_none_or(|t| t <= now)
    }

    /// An attempt failed at `now`: the next one waits for the next delay.
    /// Returns when it may be made.
    pub fn note_failure<R: Rng + ?Sized>(&mut self, now: SystemTime, rng: &mut R) -> SystemTime {
        let step = self.params.next_step(self.last_step, rng);
        let delay = self.params.delay(step);
        self.last_step = Some(step);
        self.last_delay = Some(delay);
        self.failures = self.failures.saturating_add(1);
        // A clock at the end of time: no later instant exists, so the
        // attempt waits for a clock that moves (it never comes sooner).
        let at = now.checked_add(delay).unwrap_or(now);
        self.ready_at = Some(at);
        at
    }

    /// An attempt succeeded: the schedule starts over (C-tor
    /// `download_status_reset`).
    pub fn note_success(&mut self) {
        self.failures = 0;
        self.last_step = None;
        self.last_delay = None;
        self.ready_at = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::UNIX_EPOCH;

    use proptest::prelude::*;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn first_delay_is_the_initial_one_and_delays_settle_at_the_cap() {
        let mut s = DownloadSchedule::new(CONSENSUS_SCHEDULE);
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(s.is_ready(t0));
        let first = s.note_failure(t0, &mut rng);
        assert_eq!(first, t0 + MIN_DELAY);
        assert!(!s.is_ready(t0));
        assert!(s.is_ready(first));
        let mut delays = vec![s.last_delay().unwrap()];
        for _ in 0..299 {
            s.note_failure(t0, &mut rng);
            delays.push(s.last_delay().unwrap());
        }
        assert_eq!(s.failures(), 300);
        assert!(delays.iter().all(|d| *d >= MIN_DELAY && *d <= MAX_DELAY));
        // The uncapped steps drift up (e^0.1 a step on average): after a
        // few hundred failures every wait is the cap.
        assert!(delays[200..].iter().all(|d| *d == MAX_DELAY), "{delays:?}");
        s.note_success();
        assert_eq!(s.failures(), 0);
        assert!(s.is_ready(t0));
        s.note_failure(t0, &mut rng);
        assert_eq!(s.last_delay(), Some(MIN_DELAY), "a reset starts over");
    }

    #[test]
    fn parameters_are_never_zero_or_inverted() {
        let p = ScheduleParams::new(Duration::ZERO, Duration::ZERO);
        assert_eq!((p.initial(), p.cap()), (MIN_DELAY, MIN_DELAY));
        let p = ScheduleParams::new(Duration::from_secs(6), Duration::from_secs(2));
        assert_eq!(p.cap(), Duration::from_secs(6));
    }

    proptest! {
        #[test]
        fn delays_stay_within_initial_and_cap(
            initial_ms in 0_u64..120_000,
            cap_ms in 0_u64..7_200_000,
            seed: u64,
            failures in 1_usize..200,
        ) {
            let params = ScheduleParams::new(
                Duration::from_millis(initial_ms),
                Duration::from_millis(cap_ms),
            );
            prop_assert!(params.initial() >= MIN_DELAY);
            prop_assert!(params.cap() >= params.initial());
            let mut s = DownloadSchedule::new(params);
            let mut rng = StdRng::seed_from_u64(seed);
            let mut now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let mut prev: Option<Duration> = None;
            for i in 0..failures {
                let at = s.note_failure(now, &mut rng);
                let d = at.duration_since(now).unwrap();
                prop_assert!(!d.is_zero());
                prop_assert!(d >= params.initial(), "{d:?} < {:?}", params.initial());
                prop_assert!(d <= params.cap(), "{d:?} > {:?}", params.cap());
                if i == 0 {
                    prop_assert_eq!(d, params.initial());
                }
                // Never more than three times the previous delay.
                if let Some(prev) = prev {
                    prop_assert!(d <= (prev * 3).max(params.initial()));
                }
                prev = Some(d);
                prop_assert!(!s.is_ready(now));
                prop_assert!(s.is_ready(at));
                now = at;
            }
        }
    }
}
