//! When a relay builds and uploads its descriptor: a fresh one every 18
//! hours (authorities drop descriptors published more than 24 h ago, and
//! flag relays whose descriptor is older than 18 h `StaleDesc`, dir-spec
//! §3.4.1) or whenever the driver says its contents changed; each
//! authority gets every new descriptor until it answers 200, failures
//! retried per authority with exponential backoff.
//!
//! Sans-IO: the driver calls [`PublishSchedule::descriptor_built`] after
//! building, takes uploads from [`PublishSchedule::poll_upload`], reports
//! each answer to [`PublishSchedule::upload_done`], and sleeps until
//! [`PublishSchedule::poll_timeout`].

use std::time::{Duration, Instant};

/// Timing of descriptor uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Build and upload a fresh descriptor this long after the last one
    /// (C-tor's `FORCE_REGENERATE_DESCRIPTOR_INTERVAL`, 18 h).
    pub republish_after: Duration,
    /// Delay before the first retry to an authority that refused or did
    /// not answer; doubled at each further failure.
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            republish_after: Duration::from_secs(18 * 3600),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
        }
    }
}

/// One upload to do: the current descriptor to authority number
/// `authority` (an index into the driver's authority list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    /// Index of the authority.
    pub authority: usize,
    /// Which descriptor (the count of [`PublishSchedule::descriptor_built`]
    /// calls when the upload started).
    pub generation: u64,
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The authority answered 200 (stored, or already had it).
    Accepted,
    /// The authority answered with another status: it refused the
    /// descriptor (the driver logs its reason).
    Refused,
    /// No answer: connection refused, timeout, malformed response.
    Failed,
}

#[derive(Debug, Clone, Default)]
struct AuthorityState {
    /// The last generation this authority accepted (0: none).
    accepted: u64,
    /// The generation being uploaded, if an upload is under way.
    in_flight: Option<u64>,
    /// Failures since the last success or new descriptor.
    failures: u32,
    /// Not before this instant (`None`: at once).
    retry_at: Option<Instant>,
}

/// The upload schedule of one relay's descriptor to a fixed list of
/// authorities.
#[derive(Debug, Clone)]
pub struct PublishSchedule {
    config: ScheduleConfig,
    /// Descriptors built so far; 0 before the first.
    generation: u64,
    built_at: Option<Instant>,
    authorities: Vec<AuthorityState>,
}

impl PublishSchedule {
    /// A schedule for `authorities` authorities; nothing is built yet.
    pub fn new(authorities: usize, config: ScheduleConfig) -> Self {
        Self {
            config,
            generation: 0,
            built_at: None,
            authorities: vec![AuthorityState::default(); authorities],
        }
    }

    /// Whether the driver should build a fresh descriptor now: none yet, or
    /// the last one is `republish_after` old.
    pub fn needs_rebuild(&self, now: Instant) -> bool {
        match self.built_at {
            None => true,
            Some(t) => now >= t + self.config.republish_after,
        }
    }

    /// A new descriptor was built at `now` (first one, periodic rebuild, or
    /// changed contents): every authority is due at once, retries start
    /// over. Returns its generation.
    pub fn descriptor_built(&mut self, now: Instant) -> u64 {
        self.generation = self.generation.saturating_add(1);
        self.built_at = Some(now);
        for a in &mut self.authorities {
            a.failures = 0;
            a.retry_at = None;
        }
        self.generation
    }

    /// The next upload due at `now`, marked as under way; `None` when
    /// nothing is due (see [`poll_timeout`](Self::poll_timeout)).
    pub fn poll_upload(&mut self, now: Instant) -> Option<Upload> {
        let generation = self.generation;
        if generation == 0 {
            return None;
        }
        let (authority, state) = self.authorities.iter_mut().enumerate().find(|(_, a)| {
            a.accepted < generation && a.in_flight.is_none() && a.retry_at.is_none_or(|t| t <= now)
        })?;
        state.in_flight = Some(generation);
        Some(Upload {
            authority,
            generation,
        })
    }

    /// An upload ended at `now`. Answers about an older descriptor than the
    /// current one only free the authority (the new one is due anyway).
    pub fn upload_done(&mut self, upload: Upload, outcome: UploadOutcome, now: Instant) {
        let current = self.generation;
        let Some(state) = self.authorities.get_mut(upload.authority) else {
            return;
        };
        if state.in_flight == Some(upload.generation) {
            state.in_flight = None;
        }
        if upload.generation != current {
            return;
        }
        match outcome {
            UploadOutcome::Accepted => {
                state.accepted = current;
                state.failures = 0;
                state.retry_at = None;
            }
            UploadOutcome::Refused | UploadOutcome::Failed => {
                state.failures = state.failures.saturating_add(1);
                state.retry_at = Some(now + self.config.retry_delay(state.failures));
            }
        }
    }

    /// When the driver must next call [`needs_rebuild`](Self::needs_rebuild)
    /// and [`poll_upload`](Self::poll_upload): the earliest retry of an
    /// authority still owed the descriptor, or the periodic rebuild.
    /// `None` before the first descriptor.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let built_at = self.built_at?;
        let rebuild = built_at + self.config.republish_after;
        let retries = self
            .authorities
            .iter()
            .filter(|a| a.accepted < self.generation && a.in_flight.is_none())
            .map(|a| a.retry_at.unwrap_or(built_at));
        retries.chain([rebuild]).min()
    }

    /// How many authorities hold the current descriptor.
    pub fn accepted_count(&self) -> usize {
        self.authorities
            .iter()
            .filter(|a| self.generation > 0 && a.accepted == self.generation)
            .count()
    }

    /// When the current descriptor is next due at `authority` after a
    /// failure (`None`: not waiting for a retry).
    pub fn retry_at(&self, authority: usize) -> Option<Instant> {
        self.authorities
            .get(authority)
            .filter(|a| a.accepted < self.generation && a.in_flight.is_none())
            .and_then(|a| a.retry_at)
    }

    /// Failed uploads of the current descriptor to `authority` in a row.
    pub fn failures(&self, authority: usize) -> u32 {
        self.authorities.get(authority).map_or(0, |a| a.failures)
    }
}

impl ScheduleConfig {
    /// The delay after `failures` failures in a row (at least 1):
    /// `retry_initial` doubled `failures - 1` times, at most `retry_max`.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.retry_initial
            .saturating_mul(1_u32 << doublings)
            .min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn config() -> ScheduleConfig {
        ScheduleConfig {
            republish_after: Duration::from_secs(18 * 3600),
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
        }
    }

    fn drain(s: &mut PublishSchedule, now: Instant) -> Vec<Upload> {
        std::iter::from_fn(|| s.poll_upload(now)).collect()
    }

    #[test]
    fn every_authority_gets_each_new_descriptor_once() {
        let t0 = Instant::now();
        let mut s = PublishSchedule::new(3, config());
        assert!(s.needs_rebuild(t0));
        assert_eq!(s.poll_upload(t0), None);
        assert_eq!(s.poll_timeout(), None);
        let g = s.descriptor_built(t0);
        assert_eq!(g, 1);
        let ups = drain(&mut s, t0);
        assert_eq!(
            ups.iter().map(|u| u.authority).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        // In flight: nothing more, and no retry timer for them.
        assert_eq!(s.poll_upload(t0), None);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(18 * 3600)));
        for u in ups {
            s.upload_done(u, UploadOutcome::Accepted, t0);
        }
        assert_eq!(s.accepted_count(), 3);
        assert_eq!(s.poll_upload(t0 + Duration::from_secs(3600)), None);
        assert!(!s.needs_rebuild(t0 + Duration::from_secs(18 * 3600 - 1)));
        assert!(s.needs_rebuild(t0 + Duration::from_secs(18 * 3600)));
    }

    #[test]
    fn failures_back_off_per_authority_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = PublishSchedule::new(2, config());
        s.descriptor_built(t0);
        let ups = drain(&mut s, t0);
        s.upload_done(ups[0], UploadOutcome::Accepted, t0);
        let mut now = t0;
        let mut up = ups[1];
        let mut delays = Vec::new();
        for _ in 0..6 {
            s.upload_done(up, UploadOutcome::Refused, now);
            let next = s.poll_timeout().unwrap();
            assert_eq!(s.retry_at(1), Some(next));
            assert_eq!(s.retry_at(0), None);
            delays.push((next - now).as_secs());
            assert_eq!(s.poll_upload(next - Duration::from_millis(1)), None);
            now = next;
            up = s.poll_upload(now).unwrap();
            assert_eq!(up.authority, 1);
        }
        assert_eq!(delays, [10, 20, 40, 60, 60, 60]);
        assert_eq!(s.retry_at(1), None, "in flight");
        assert_eq!(s.failures(1), 6);
        assert_eq!(s.failures(0), 0);
        s.upload_done(up, UploadOutcome::Accepted, now);
        assert_eq!(s.failures(1), 0);
        assert_eq!(s.accepted_count(), 2);
    }

    #[test]
    fn a_new_descriptor_supersedes_uploads_in_flight_and_resets_backoff() {
        let t0 = Instant::now();
        let mut s = PublishSchedule::new(1, config());
        s.descriptor_built(t0);
        let first = s.poll_upload(t0).unwrap();
        s.upload_done(first, UploadOutcome::Failed, t0);
        let t1 = t0 + Duration::from_secs(10);
        let old = s.poll_upload(t1).unwrap();
        // The contents change while the retry is under way.
        s.descriptor_built(t1);
        assert_eq!(s.poll_upload(t1), None, "still busy with the old one");
        s.upload_done(old, UploadOutcome::Accepted, t1);
        assert_eq!(s.accepted_count(), 0, "the old one does not count");
        let new = s.poll_upload(t1).unwrap();
        assert_eq!(new.generation, 2);
        s.upload_done(new, UploadOutcome::Accepted, t1);
        assert_eq!(s.accepted_count(), 1);
        // Unknown authorities are ignored.
        s.upload_done(
            Upload {
                authority: 9,
                generation: 2,
            },
            UploadOutcome::Failed,
            t1,
        );
    }

    #[test]
    fn retry_delay_saturates() {
        let c = config();
        assert_eq!(c.retry_delay(0), Duration::from_secs(10));
        assert_eq!(c.retry_delay(u32::MAX), Duration::from_secs(60));
        let huge = ScheduleConfig {
            retry_max: Duration::MAX,
            ..c
        };
        assert!(huge.retry_delay(200) >= Duration::from_secs(10 << 30));
    }
}
