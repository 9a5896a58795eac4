//! Entry-guard selection after guard-spec, as a sans-IO state machine: the
//! caller feeds it consensuses, circuit outcomes and the current time, and
//! asks it which guard to use.
//!
//! Implemented: the sampled set (§4.1), filtering (§4.2), the confirmed list
//! (§4.3), primary guards (§4.4), retry schedules (§4.5), guard selection
//! (§4.6), failure and success (§4.7, §4.8), consensus updates and expiry
//! (§4.10), randomized dates (§A.2) and a persistent state (after §A.5).
//! The per-circuit waiting states of §4.9 belong to the circuit manager; this
//! module tells it whether a circuit through a guard may be used at once
//! ([`GuardUsage`], [`SuccessOutcome`]).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, SystemTime};

use rand::{Rng, RngExt};

use crate::relay::{PortPolicy, RelayFlags, RelayId};

mod member;
mod sample;
mod select;
mod state;

pub use member::retry_interval;

/// One day.
const DAY: Duration = Duration::from_secs(24 * 3600);
/// One hour.
const HOUR: Duration = Duration::from_secs(3600);

/// Tunables of the guard algorithm, defaulting to guard-spec §A.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardParams {
    /// MAX_SAMPLE_SIZE: the sampled set never exceeds this (60)...
    pub max_sample_size: usize,
    /// MAX_SAMPLE_THRESHOLD: ...nor this percentage of the consensus'
    /// guards (20)...
    pub max_sample_threshold_percent: usize,
    /// MIN_FILTERED_SAMPLE: ...unless that is below this, which is then the
    /// limit (20). The sample grows until this many guards are usable.
    pub min_filtered_sample: usize,
    /// N_PRIMARY_GUARDS (3).
    pub n_primary: usize,
    /// NUM_USABLE_PRIMARY_GUARDS: [`GuardSet::pick_guard`] chooses uniformly
    /// among the first this-many usable primary guards (1).
    pub n_usable_primary: usize,
    /// GUARD_LIFETIME (120 days).
    pub guard_lifetime: Duration,
    /// GUARD_CONFIRMED_MIN_LIFETIME (60 days).
    pub confirmed_min_lifetime: Duration,
    /// REMOVE_UNLISTED_GUARDS_AFTER (20 days).
    pub remove_unlisted_after: Duration,
    /// INTERNET_LIKELY_DOWN_INTERVAL (10 minutes).
    pub internet_likely_down: Duration,
    /// NONPRIMARY_GUARD_CONNECT_TIMEOUT (15 s): how long a better circuit
    /// that has not completed blocks a held one (§4.9).
    pub nonprimary_connect_timeout: Duration,
    /// The flags a relay needs to be in {GUARDS} (§4.0): Guard, Stable,
    /// Fast, V2Dir; we add Valid.
    pub required_flags: RelayFlags,
}

impl Default for GuardParams {
    fn default() -> Self {
        Self {
            max_sample_size: 60,
            max_sample_threshold_percent: 20,
            min_filtered_sample: 20,
            n_primary: 3,
            n_usable_primary: 1,
            guard_lifetime: 120 * DAY,
            confirmed_min_lifetime: 60 * DAY,
            remove_unlisted_after: 20 * DAY,
            internet_likely_down: Duration::from_secs(600),
            nonprimary_connect_timeout: Duration::from_secs(15),
            required_flags: RelayFlags::GUARD
                | RelayFlags::STABLE
                | RelayFlags::FAST
                | RelayFlags::V2DIR
                | RelayFlags::VALID,
        }
    }
}

/// Restrictions from our own configuration (guard-spec §4.2): guards are
/// sampled regardless, and filtered afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardFilter {
    /// Never use these (ExcludeNodes).
    pub exclude: Vec<RelayId>,
    /// If set, only guards whose OR port this allows (a firewall that lets
    /// only some ports out, like FascistFirewall / ReachableAddresses).
    pub reachable_ports: Option<PortPolicy>,
}

impl GuardFilter {
    fn permits(&self, id: &RelayId, addr: SocketAddrV4) -> bool {
        !self.exclude.contains(id)
            && self
                .reachable_ports
                .as_ref()
                .is_none_or(|p| p.allows_port(addr.port()))
    }
}

/// Whether a guard is believed reachable (guard-spec §4.1 `is_reachable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// We connected to it.
    Yes,
    /// We failed to connect and its retry time has not come.
    No,
    /// Worth trying.
    Maybe,
}

/// How a circuit through a chosen guard may be used (guard-spec §4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardUsage {
    /// A primary guard: the circuit is usable as soon as it is built
    /// (`<usable_on_completion>`).
    Primary,
    /// Not a primary guard: once built, use the circuit only if no better
    /// guard works (`<usable_if_no_better_guard>`); see [`SuccessOutcome`].
    NonPrimary,
}

/// A guard chosen for a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardChoice {
    /// The guard.
    pub id: RelayId,
    /// How the circuit may be used.
    pub usage: GuardUsage,
}

/// What [`GuardSet::note_success`] concluded (guard-spec §4.8, §4.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuccessOutcome {
    /// The guard is primary, or every primary guard is unreachable: the
    /// circuit may be used now (unless the caller has a better circuit
    /// pending, §4.9 "blocks").
    UseNow,
    /// A primary guard might still work: hold the circuit back and try the
    /// primary guards first (`<waiting_for_better_guard>`). A circuit whose
    /// guard was picked with exclusions that ruled out the primary guards
    /// (e.g. a Conflux leg) is not blocked by them (§4.9 "obeys all the
    /// restrictions") and may be used now.
    WaitForBetterGuard,
}

/// What the latest consensus said about a listed guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listing {
    addr: SocketAddrV4,
    running: bool,
}

/// One member of {SAMPLED_GUARDS}.
#[derive(Clone, Debug, PartialEq)]
struct SampledGuard {
    id: RelayId,
    nickname: String,
    // Persistent (§4.1, §4.3).
    added_on: SystemTime,
    added_by: Option<String>,
    listed: bool,
    unlisted_since: Option<SystemTime>,
    confirmed_on: Option<SystemTime>,
    /// Unknown persisted keys, kept as §A.5 asks.
    extra: BTreeMap<String, toml::Value>,
    // Transient (§4.1).
    reachable: Reachability,
    failing_since: Option<SystemTime>,
    last_tried: Option<SystemTime>,
    pending: bool,
    listing: Option<Listing>,
}

/// A member of {GUARDS} in the latest consensus.
#[derive(Clone, Debug, PartialEq)]
struct Candidate {
    id: RelayId,
    nickname: String,
    listing: Listing,
    weight: u128,
}

/// The guard state of guard-spec §4: sampled, confirmed and primary guards.
///
/// Feed it every new (live) consensus with [`Self::update_consensus`], ask
/// for guards with [`Self::pick_guard`], and report outcomes with
/// [`Self::note_success`] / [`Self::note_failure`]. Persist it with
/// [`Self::to_toml`] and [`Self::from_toml`].
#[derive(Clone, Debug)]
pub struct GuardSet {
    params: GuardParams,
    filter: GuardFilter,
    /// In sample order.
    sampled: Vec<SampledGuard>,
    /// In confirmation order; a subset of `sampled`.
    confirmed: Vec<RelayId>,
    /// Non-persistent; a subset of the filtered guards.
    primary: Vec<RelayId>,
    /// {GUARDS} from the latest consensus.
    candidates: Vec<Candidate>,
    /// Set once a consensus has been seen.
    have_consensus: bool,
    /// §4.6 `last_time_on_internet`; `None` is "infinitely far in the past".
    last_time_on_internet: Option<SystemTime>,
}

/// RAND(now, interval) of guard-spec §A.2: a uniformly random time between
/// `now - interval` and `now`.
fn rand_past<R: Rng + ?Sized>(now: SystemTime, interval: Duration, rng: &mut R) -> SystemTime {
    let secs = rng.random_range(0..=interval.as_secs());
    now.checked_sub(Duration::from_secs(secs)).unwrap_or(now)
}

/// `later - earlier`, or zero if the clock went backwards.
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

impl GuardSet {
    /// An empty guard set.
    pub fn new(params: GuardParams) -> Self {
        Self {
            params,
            filter: GuardFilter::default(),
            sampled: Vec::new(),
            confirmed: Vec::new(),
            primary: Vec::new(),
            candidates: Vec::new(),
            have_consensus: false,
            last_time_on_internet: None,
        }
    }

    /// The parameters in use.
    pub fn params(&self) -> &GuardParams {
        &self.params
    }

    /// Replace the parameters (a new consensus may change them, see
    /// [`GuardParams::from_consensus`]) and recompute the primary guards,
    /// whose number may have changed. The sample is resized on the next
    /// [`Self::update_consensus`].
    pub fn set_params(&mut self, params: GuardParams) {
        if params != self.params {
            self.params = params;
            self.recompute_primary();
        }
    }

    /// Replace our configuration's restrictions and recompute the filtered
    /// and primary guards (§4.10: "whenever one of the configuration options
    /// that affects the filter is updated").
    pub fn set_filter(&mut self, filter: GuardFilter) {
        self.filter = filter;
        self.recompute_primary();
    }

    /// The sampled guards in sample order.
    pub fn sampled(&self) -> Vec<RelayId> {
        self.sampled.iter().map(|g| g.id).collect()
    }

    /// The confirmed guards in priority order (§4.3).
    pub fn confirmed(&self) -> &[RelayId] {
        &self.confirmed
    }

    /// The primary guards in priority order (§4.4).
    pub fn primary(&self) -> &[RelayId] {
        &self.primary
    }

    /// The sampled guards that pass the filter (§4.2).
    pub fn filtered(&self) -> Vec<RelayId> {
        self.sampled
            .iter()
            .filter(|g| g.is_filtered(&self.filter))
            .map(|g| g.id)
            .collect()
    }

    /// The reachability of a sampled guard as of `now`.
    pub fn reachability(&self, id: &RelayId, now: SystemTime) -> Option<Reachability> {
        self.get(id)
            .map(|g| g.reachable_at(now, self.primary.contains(id)))
    }

    /// When a guard marked unreachable will be retried, if it is marked so.
    pub fn retry_at(&self, id: &RelayId) -> Option<SystemTime> {
        self.get(id)
            .and_then(|g| g.retry_at(self.primary.contains(id)))
    }

    /// True if every primary guard is unreachable as of `now` (§4.9).
    pub fn all_primary_unreachable(&self, now: SystemTime) -> bool {
        self.primary
            .iter()
            .all(|id| self.reachability(id, now) == Some(Reachability::No))
    }

    /// guard-spec §4.9 (UPDATE_WAITING): may a circuit held in
    /// `<waiting_for_better_guard>` for `waited` be used at `now`? Yes once
    /// every primary guard is unreachable, or once it has waited
    /// NONPRIMARY_GUARD_CONNECT_TIMEOUT: a better circuit that has not
    /// completed by then no longer blocks it.
    pub fn waiting_circuit_usable(&self, waited: Duration, now: SystemTime) -> bool {
        self.all_primary_unreachable(now) || waited >= self.params.nonprimary_connect_timeout
    }

    /// The usable guards (filtered, not known unreachable as of `now`) in
    /// order of preference: primary guards, then other confirmed guards, then
    /// the rest in sample order (§4.6). Pass them (as relays) to
    /// [`choose_conflux_legs`](crate::choose_conflux_legs). Unlike
    /// [`Self::pick_guard`] this changes no state.
    pub fn usable_guards(&self, now: SystemTime) -> Vec<RelayId> {
        let mut out: Vec<RelayId> = Vec::new();
        let order = self
            .primary
            .iter()
            .chain(&self.confirmed)
            .chain(self.sampled.iter().map(|g| &g.id));
        for id in order {
            if out.contains(id) {
                continue;
            }
            let Some(g) = self.get(id) else { continue };
            if g.is_filtered(&self.filter)
                && g.reachable_at(now, self.primary.contains(id)) != Reachability::No
            {
                out.push(*id);
            }
        }
        out
    }

    fn get(&self, id: &RelayId) -> Option<&SampledGuard> {
        self.sampled.iter().find(|g| g.id == *id)
    }

    fn get_mut(&mut self, id: &RelayId) -> Option<&mut SampledGuard> {
        self.sampled.iter_mut().find(|g| g.id == *id)
    }
}

#[cfg(test)]
mod tests;
