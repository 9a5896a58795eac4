//! Keeping the sampled set: taking in a consensus, expiry and growing the
//! sample (guard-spec §4.1, §4.2, §4.10).

use std::collections::BTreeMap;
use std::time::SystemTime;

use rand::Rng;

use super::{Candidate, GuardSet, Listing, Reachability, SampledGuard, rand_past, since};
use crate::relay::{Relay, RelayFlags, RelayId};
use crate::weights::{BandwidthWeights, Position, pick_weighted};

impl GuardSet {
    /// Take in a new consensus (§4.10). Call it only with a live consensus:
    /// guards unlisted for too long are removed here.
    ///
    /// {GUARDS} (§4.0) are the relays with every flag of
    /// [`GuardParams::required_flags`](super::GuardParams::required_flags);
    /// sampling among them is weighted by bandwidth and the guard-position
    /// weights (§3.1.1, path-spec §5.1).
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
    pub(super) fn expand_sample<R: Rng + ?Sized>(&mut self, now: SystemTime, rng: &mut R) {
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
}
