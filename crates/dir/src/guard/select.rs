//! Primary guards, choosing a guard for a circuit, and what a circuit's
//! failure or success tells us (guard-spec §4.4 to §4.8).

use std::time::SystemTime;

use rand::{Rng, RngExt};

use super::{
    GuardChoice, GuardSet, GuardUsage, Reachability, SampledGuard, SuccessOutcome, rand_past, since,
};
use crate::error::GuardError;
use crate::relay::RelayId;

impl GuardSet {
    /// Recompute {PRIMARY_GUARDS} (§4.4): confirmed filtered guards first,
    /// then the previous primary guards that are still filtered, then other
    /// filtered guards in sample order.
    pub(super) fn recompute_primary(&mut self) {
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
    /// [`GuardParams::n_usable_primary`](super::GuardParams::n_usable_primary));
    /// else the first usable confirmed guard that is not pending; else the
    /// first usable guard in sample order that is not pending (these two
    /// mark it pending). If no guard is usable, every filtered guard is
    /// marked Maybe and the choice retried, as §4.6 says.
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
}
