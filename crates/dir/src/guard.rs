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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::error::GuardError;
use crate::relay::{PortPolicy, Relay, RelayFlags, RelayId};
use crate::weights::{BandwidthWeights, Position, pick_weighted};

/// One day.
const DAY: Duration = Duration::from_secs(24 * 3600);
/// One hour.
const HOUR: Duration = Duration::from_secs(3600);
/// Version of the persisted state format.
const STATE_VERSION: u32 = 1;

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

/// The retry interval after failing for `failing_for` (guard-spec §A.1
/// PRIMARY_GUARDS_RETRY_SCHED and GUARDS_RETRY_SCHED).
pub fn retry_interval(failing_for: Duration, primary: bool) -> Duration {
    let (a, b, c, d) = if primary {
        (10 * 60, 90 * 60, 4 * 3600, 9 * 3600)
    } else {
        (3600, 4 * 3600, 18 * 3600, 36 * 3600)
    };
    let secs = if failing_for < 6 * HOUR {
        a
    } else if failing_for < 96 * HOUR {
        // "for the next 90 hours"
        b
    } else if failing_for < 96 * HOUR + 3 * DAY {
        // "for the next 3 days"
        c
    } else {
        d
    };
    Duration::from_secs(secs)
}

impl SampledGuard {
    /// Member of {FILTERED_GUARDS} (§4.2): listed, Running in the latest
    /// consensus, and allowed by our configuration.
    fn is_filtered(&self, filter: &GuardFilter) -> bool {
        self.listed
            && self
                .listing
                .is_some_and(|l| l.running && filter.permits(&self.id, l.addr))
    }

    /// When a guard marked unreachable becomes worth retrying (§4.5).
    fn retry_at(&self, primary: bool) -> Option<SystemTime> {
        if self.reachable != Reachability::No {
            return None;
        }
        let tried = self.last_tried.or(self.failing_since)?;
        let failing_for = since(tried, self.failing_since.unwrap_or(tried));
        tried.checked_add(retry_interval(failing_for, primary))
    }

    /// Reachability as of `now`, counting expired failures as Maybe.
    fn reachable_at(&self, now: SystemTime, primary: bool) -> Reachability {
        match self.retry_at(primary) {
            Some(t) if now >= t => Reachability::Maybe,
            _ => self.reachable,
        }
    }
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

    /// Take in a new consensus (§4.10). Call it only with a live consensus:
    /// guards unlisted for too long are removed here.
    ///
    /// {GUARDS} (§4.0) are the relays with every flag of
    /// [`GuardParams::required_flags`]; sampling among them is weighted by
    /// bandwidth and the guard-position weights (§3.1.1, path-spec §5.1).
    pub fn update_consensus<R: Rng + ?Sized>(
        &mut self,
        relays: &[Relay],
        weights: &BandwidthWeights,
        now: SystemTime,
        rng: &mut R,
    ) {
        self.have_consensus = true;
        self.candidates = relays
            .iter()
            .filter(|r| r.has_flags(self.params.required_flags))
            .map(|r| Candidate {
                id: r.id,
                nickname: r.nickname.clone(),
                listing: Listing {
                    addr: r.addr,
                    running: r.has_flags(RelayFlags::RUNNING),
                },
                weight: weights.weighted_bandwidth(r, Position::Guard),
            })
            .collect();
        // Update IS_LISTED and FIRST_UNLISTED_AT (§4.10).
        let unlisted_slop = self.params.remove_unlisted_after / 5;
        for g in &mut self.sampled {
            match self.candidates.iter().find(|c| c.id == g.id) {
                Some(c) => {
                    g.listed = true;
                    g.unlisted_since = None;
                    g.listing = Some(c.listing);
                    g.nickname.clone_from(&c.nickname);
                }
                None => {
                    if g.listed || g.unlisted_since.is_none() {
                        g.unlisted_since = Some(rand_past(now, unlisted_slop, rng));
                    }
                    g.listed = false;
                    g.listing = None;
                }
            }
        }
        self.expire(now);
        self.recompute_primary();
        self.expand_sample(now, rng);
    }

    /// Remove guards per the expiry rules of §4.1.
    fn expire(&mut self, now: SystemTime) {
        let p = &self.params;
        let expired = |g: &SampledGuard| {
            let unlisted_too_long = !g.listed
                && g.unlisted_since
                    .is_some_and(|t| since(now, t) >= p.remove_unlisted_after);
            let too_old = since(now, g.added_on) >= p.guard_lifetime
                && g.confirmed_on
                    .is_none_or(|t| since(now, t) >= p.confirmed_min_lifetime);
            unlisted_too_long || too_old
        };
        let gone: Vec<RelayId> = self
            .sampled
            .iter()
            .filter(|g| expired(g))
            .map(|g| g.id)
            .collect();
        if gone.is_empty() {
            return;
        }
        self.sampled.retain(|g| !gone.contains(&g.id));
        self.confirmed.retain(|id| !gone.contains(id));
        self.primary.retain(|id| !gone.contains(id));
    }

    /// The most guards the sample may hold (§4.1).
    fn max_sample(&self) -> usize {
        let p = &self.params;
        let by_fraction = self.candidates.len() * p.max_sample_threshold_percent / 100;
        p.max_sample_size
            .min(by_fraction)
            .max(p.min_filtered_sample)
    }

    fn n_usable_filtered(&self, now: SystemTime) -> usize {
        self.sampled
            .iter()
            .filter(|g| {
                g.is_filtered(&self.filter)
                    && g.reachable_at(now, self.primary.contains(&g.id)) != Reachability::No
            })
            .count()
    }

    /// Add guards until enough are usable, the sample is full, or {GUARDS}
    /// is exhausted (§4.2). Recomputes the primary guards if any were added.
    fn expand_sample<R: Rng + ?Sized>(&mut self, now: SystemTime, rng: &mut R) {
        let max = self.max_sample();
        let mut usable = self.n_usable_filtered(now);
        let mut added = false;
        // The bound counts listed guards only: guards that left the
        // consensus cannot be used and expire after
        // REMOVE_UNLISTED_GUARDS_AFTER (§4.10), and a sample made only of
        // vanished relays (a network that was replaced) must still be able
        // to grow. Unlisted guards are bounded separately: beyond `max`,
        // the one unlisted longest leaves to make room.
        let mut listed = self.sampled.iter().filter(|g| g.listed).count();
        while usable < self.params.min_filtered_sample && listed < max {
            if self.sampled.len() >= max.saturating_mul(2) {
                self.drop_longest_unlisted();
            }
            let pool: Vec<(usize, u128)> = self
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| !self.sampled.iter().any(|g| g.id == c.id))
                .map(|(i, c)| (i, c.weight))
                .collect();
            let Some(c) = pick_weighted(&pool, rng).and_then(|i| self.candidates.get(i)) else {
                break;
            };
            let g = SampledGuard {
                id: c.id,
                nickname: c.nickname.clone(),
                added_on: rand_past(now, self.params.guard_lifetime / 10, rng),
                added_by: Some(concat!("braid ", env!("CARGO_PKG_VERSION")).to_owned()),
                listed: true,
                unlisted_since: None,
                confirmed_on: None,
                extra: BTreeMap::new(),
                reachable: Reachability::Maybe,
                failing_since: None,
                last_tried: None,
                pending: false,
                listing: Some(c.listing),
            };
            if g.is_filtered(&self.filter) {
                usable += 1;
            }
            self.sampled.push(g);
            listed += 1;
            added = true;
        }
        if added {
            self.recompute_primary();
        }
    }

    /// Remove the guard unlisted for longest (to keep the sample bounded
    /// when it grows past vanished guards).
    fn drop_longest_unlisted(&mut self) {
        let oldest = self
            .sampled
            .iter()
            .filter(|g| !g.listed)
            .min_by_key(|g| g.unlisted_since)
            .map(|g| g.id);
        if let Some(id) = oldest {
            self.sampled.retain(|g| g.id != id);
            self.confirmed.retain(|c| *c != id);
            self.primary.retain(|p| *p != id);
        }
    }

    /// Recompute {PRIMARY_GUARDS} (§4.4): confirmed filtered guards first,
    /// then the previous primary guards that are still filtered, then other
    /// filtered guards in sample order.
    fn recompute_primary(&mut self) {
        let n = self.params.n_primary;
        let filtered = |id: &RelayId| self.get(id).is_some_and(|g| g.is_filtered(&self.filter));
        let mut new: Vec<RelayId> = Vec::with_capacity(n);
        let order = self
            .confirmed
            .iter()
            .chain(&self.primary)
            .chain(self.sampled.iter().map(|g| &g.id));
        for id in order {
            if new.len() >= n {
                break;
            }
            if !new.contains(id) && filtered(id) {
                new.push(*id);
            }
        }
        self.primary = new;
    }

    /// Apply §4.5: guards whose retry time has come become Maybe.
    fn refresh_retries(&mut self, now: SystemTime) {
        let primary = self.primary.clone();
        for g in &mut self.sampled {
            if g.reachable == Reachability::No
                && g.reachable_at(now, primary.contains(&g.id)) == Reachability::Maybe
            {
                g.reachable = Reachability::Maybe;
            }
        }
    }

    /// Choose a guard for a new circuit (§4.6), never one of `exclude` (e.g.
    /// the guards of the other legs of a Conflux set, or the exit's family
    /// from [`conflicting_ids`](crate::conflicting_ids)).
    ///
    /// Order: a usable primary guard (chosen uniformly among the first
    /// [`GuardParams::n_usable_primary`]); else the first usable confirmed
    /// guard that is not pending; else the first usable guard in sample
    /// order that is not pending (these two mark it pending). If no guard is
    /// usable, every filtered guard is marked Maybe and the choice retried,
    /// as §4.6 says.
    pub fn pick_guard<R: Rng + ?Sized>(
        &mut self,
        exclude: &[RelayId],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<GuardChoice, GuardError> {
        if !self.have_consensus {
            return Err(GuardError::NoUsableGuard(
                "the guard set has not seen a consensus yet".into(),
            ));
        }
        self.refresh_retries(now);
        self.expand_sample(now, rng);
        if let Some(choice) = self.select(exclude, now, rng) {
            return Ok(choice);
        }
        // §4.6: "we have exhausted all the sampled guards ... marking all
        // guards as <maybe> reachable".
        let mut reset = false;
        for g in &mut self.sampled {
            if g.reachable == Reachability::No
                && g.is_filtered(&self.filter)
                && !exclude.contains(&g.id)
            {
                g.reachable = Reachability::Maybe;
                reset = true;
            }
        }
        if reset && let Some(choice) = self.select(exclude, now, rng) {
            return Ok(choice);
        }
        let filtered = self.filtered();
        let allowed = filtered.iter().filter(|id| !exclude.contains(id)).count();
        Err(GuardError::NoUsableGuard(format!(
            "{} guards in the consensus, {} sampled, {} pass the filter, {} not excluded",
            self.candidates.len(),
            self.sampled.len(),
            filtered.len(),
            allowed
        )))
    }

    /// The selection steps of §4.6, without the fallback.
    fn select<R: Rng + ?Sized>(
        &mut self,
        exclude: &[RelayId],
        now: SystemTime,
        rng: &mut R,
    ) -> Option<GuardChoice> {
        let usable = |g: &SampledGuard| {
            !exclude.contains(&g.id)
                && g.is_filtered(&self.filter)
                && g.reachable != Reachability::No
        };
        let primaries: Vec<RelayId> = self
            .primary
            .iter()
            .filter(|id| self.get(id).is_some_and(usable))
            .take(self.params.n_usable_primary.max(1))
            .copied()
            .collect();
        let (id, usage) = if !primaries.is_empty() {
            let i = rng.random_range(0..primaries.len());
            (*primaries.get(i)?, GuardUsage::Primary)
        } else {
            let confirmed: Vec<RelayId> = self
                .confirmed
                .iter()
                .filter(|id| self.get(id).is_some_and(usable))
                .copied()
                .collect();
            let sampled: Vec<(RelayId, bool)> = self
                .sampled
                .iter()
                .filter(|g| usable(g))
                .map(|g| (g.id, g.pending))
                .collect();
            let pending = |id: &RelayId| self.get(id).is_some_and(|g| g.pending);
            let id = if !confirmed.is_empty() {
                confirmed
                    .iter()
                    .find(|id| !pending(id))
                    .or(confirmed.first())
                    .copied()?
            } else {
                sampled
                    .iter()
                    .find(|(_, p)| !p)
                    .or(sampled.first())
                    .map(|(id, _)| *id)?
            };
            (id, GuardUsage::NonPrimary)
        };
        let g = self.get_mut(&id)?;
        g.last_tried = Some(now);
        if usage == GuardUsage::NonPrimary {
            g.pending = true;
        }
        Some(GuardChoice { id, usage })
    }

    /// A circuit through `id` failed in a way that shows the guard
    /// unreachable (§4.7): mark it No, not pending, and start (or continue)
    /// its failure period. It is retried per §4.5, counting from this report.
    pub fn note_failure(&mut self, id: &RelayId, now: SystemTime) -> Result<(), GuardError> {
        let g = self.get_mut(id).ok_or(GuardError::UnknownGuard(*id))?;
        g.reachable = Reachability::No;
        g.pending = false;
        g.failing_since.get_or_insert(now);
        g.last_tried = Some(now);
        Ok(())
    }

    /// A circuit through `id` succeeded (§4.8): mark it reachable, confirm it
    /// (with a randomized date, §A.2), and say whether the circuit may be
    /// used now.
    pub fn note_success<R: Rng + ?Sized>(
        &mut self,
        id: &RelayId,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<SuccessOutcome, GuardError> {
        let lifetime = self.params.guard_lifetime / 10;
        let was_primary = self.primary.contains(id);
        let primaries_down = self.all_primary_unreachable(now);
        let g = self.get_mut(id).ok_or(GuardError::UnknownGuard(*id))?;
        g.reachable = Reachability::Yes;
        g.failing_since = None;
        g.pending = false;
        if g.confirmed_on.is_none() {
            g.confirmed_on = Some(rand_past(now, lifetime, rng));
        }
        if !self.confirmed.contains(id) {
            self.confirmed.push(*id);
        }
        self.recompute_primary();
        let net_was_down = self
            .last_time_on_internet
            .is_none_or(|t| since(now, t) > self.params.internet_likely_down);
        self.last_time_on_internet = Some(now);
        if was_primary {
            return Ok(SuccessOutcome::UseNow);
        }
        if net_was_down {
            // §4.8: the primary guards may have failed only because the
            // network was down; give them another chance.
            let primary = self.primary.clone();
            for g in self.sampled.iter_mut().filter(|g| primary.contains(&g.id)) {
                if g.reachable == Reachability::No {
                    g.reachable = Reachability::Maybe;
                }
            }
            return Ok(SuccessOutcome::WaitForBetterGuard);
        }
        Ok(if primaries_down {
            SuccessOutcome::UseNow
        } else {
            SuccessOutcome::WaitForBetterGuard
        })
    }

    /// Serialize the persistent state (§4.1, §4.3; format after §A.5) as
    /// TOML.
    pub fn to_toml(&self) -> Result<String, GuardError> {
        let secs = |t: SystemTime| since(t, UNIX_EPOCH).as_secs();
        let guards = self
            .sampled
            .iter()
            .map(|g| GuardEntry {
                rsa_id: g.id,
                nickname: g.nickname.clone(),
                sampled_on: secs(g.added_on),
                sampled_by: g.added_by.clone(),
                listed: g.listed,
                unlisted_since: g.unlisted_since.map(secs),
                confirmed_on: g.confirmed_on.map(secs),
                confirmed_idx: self.confirmed.iter().position(|c| *c == g.id),
                extra: g.extra.clone(),
            })
            .collect();
        let state = StateFile {
            version: STATE_VERSION,
            guards,
        };
        toml::to_string(&state).map_err(|e| GuardError::Serialize(e.to_string()))
    }

    /// Restore a guard set saved by [`Self::to_toml`]. Transient state
    /// (reachability, pending) starts fresh, and nothing is usable until the
    /// next [`Self::update_consensus`]. A corrupt file gives
    /// [`GuardError::CorruptState`]; the caller should then start with
    /// [`Self::new`].
    pub fn from_toml(text: &str, params: GuardParams) -> Result<Self, GuardError> {
        let corrupt = GuardError::CorruptState;
        let state: StateFile = toml::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(corrupt(format!(
                "unsupported version {} (expected {STATE_VERSION})",
                state.version
            )));
        }
        let time = |s: u64| {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(s))
                .ok_or_else(|| corrupt(format!("time {s} out of range")))
        };
        let mut set = Self::new(params);
        let mut confirmed: Vec<(usize, RelayId)> = Vec::new();
        for e in state.guards {
            if set.get(&e.rsa_id).is_some() {
                return Err(corrupt(format!("guard {} listed twice", e.rsa_id)));
            }
            if let Some(idx) = e.confirmed_idx {
                if confirmed.iter().any(|(i, _)| *i == idx) {
                    return Err(corrupt(format!("confirmed_idx {idx} used twice")));
                }
                confirmed.push((idx, e.rsa_id));
            }
            set.sampled.push(SampledGuard {
                id: e.rsa_id,
                nickname: e.nickname,
                added_on: time(e.sampled_on)?,
                added_by: e.sampled_by,
                listed: e.listed,
                unlisted_since: e.unlisted_since.map(time).transpose()?,
                confirmed_on: e.confirmed_on.map(time).transpose()?,
                extra: e.extra,
                reachable: Reachability::Maybe,
                failing_since: None,
                last_tried: None,
                pending: false,
                listing: None,
            });
        }
        confirmed.sort_unstable();
        set.confirmed = confirmed.into_iter().map(|(_, id)| id).collect();
        Ok(set)
    }
}

/// The persisted state file.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default, rename = "guard")]
    guards: Vec<GuardEntry>,
}

/// One persisted sampled guard; field names follow guard-spec §A.5, times
/// are seconds since the Unix epoch.
#[derive(Debug, Serialize, Deserialize)]
struct GuardEntry {
    rsa_id: RelayId,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    nickname: String,
    sampled_on: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sampled_by: Option<String>,
    listed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unlisted_since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_on: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_idx: Option<usize>,
    /// Keys we do not know, kept for whoever wrote them (§A.5).
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}

#[cfg(test)]
mod tests;
