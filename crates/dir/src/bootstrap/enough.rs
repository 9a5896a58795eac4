//! When the directory is enough to build circuits (C-tor
//! `compute_frac_paths_available`, `router_have_minimum_dir_info`): not
//! when every microdescriptor is here, but when the relays we hold
//! microdescriptors for carry a large enough share of the paths, weighted
//! by bandwidth: the product of the guard, middle and exit fractions must
//! reach `min_paths_for_circs_pct` (60% by default).

use std::collections::BTreeMap;
use std::fmt;

use crate::relay::{Relay, RelayFlags};
use crate::weights::{BandwidthWeights, Position};

/// The consensus parameter of the share of paths needed, in percent.
pub const PATHS_PARAM: &str = "min_paths_for_circs_pct";
/// Its default (C-tor `DFLT_PCT_USABLE_NEEDED`).
pub const DEFAULT_PATHS_PCT: i32 = 60;
/// Its bounds.
const PATHS_PCT_RANGE: (i32, i32) = (25, 95);

/// The share of paths usable, by position and in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathsAvailable {
    /// Guard bandwidth with a microdescriptor, as a fraction of all.
    pub guard: f64,
    /// Middle bandwidth likewise.
    pub middle: f64,
    /// Exit bandwidth likewise (the middle fraction if the consensus lists
    /// no usable exit).
    pub exit: f64,
}

impl PathsAvailable {
    /// The product: the share of whole paths.
    pub fn paths(&self) -> f64 {
        self.guard * self.middle * self.exit
    }

    /// The share of paths over `listed` relays (with `ntor_key` set for
    /// those whose microdescriptor we hold).
    pub fn of(listed: &[Relay], weights: &BandwidthWeights) -> Self {
        let usable: Vec<&Relay> = listed
            .iter()
            .filter(|r| r.has_flags(RelayFlags::RUNNING | RelayFlags::VALID))
            .collect();
        let guards: Vec<&Relay> = usable
            .iter()
            .copied()
            .filter(|r| r.has_flags(RelayFlags::GUARD))
            .collect();
        let exits: Vec<&Relay> = usable
            .iter()
            .copied()
            .filter(|r| r.has_flags(RelayFlags::EXIT))
            .collect();
        let middle = fraction(&usable, weights, Position::Middle, has_md);
        let exit_ok = |r: &Relay| has_md(r) && r.policy.allows_some_port();
        let mut exit = fraction(&exits, weights, Position::Exit, exit_ok);
        // No exit with a descriptor and a policy: only internal paths, so
        // the exit end is a middle (C-tor `CONSENSUS_PATH_INTERNAL`).
        if !exits.iter().any(|r| exit_ok(r)) && exit <= 0.0 {
            exit = middle;
        }
        Self {
            guard: fraction(&guards, weights, Position::Guard, has_md),
            middle,
            exit,
        }
    }
}

impl fmt::Display for PathsAvailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0}% of guard bandwidth, {:.0}% of middle, {:.0}% of exit = {:.0}% of paths",
            self.guard * 100.0,
            self.middle * 100.0,
            self.exit * 100.0,
            self.paths() * 100.0
        )
    }
}

fn has_md(r: &Relay) -> bool {
    r.ntor_key.is_some()
}

/// The weighted share of `relays` that are `present` (C-tor
/// `frac_nodes_with_descriptors`): by count when no relay has weight, 0
/// for no relays.
fn fraction(
    relays: &[&Relay],
    weights: &BandwidthWeights,
    position: Position,
    present: impl Fn(&Relay) -> bool,
) -> f64 {
    if relays.is_empty() {
        return 0.0;
    }
    let mut total = 0_u128;
    let mut have = 0_u128;
    for r in relays {
        let w = weights.weighted_bandwidth(r, position);
        total = total.saturating_add(w);
        if present(r) {
            have = have.saturating_add(w);
        }
    }
    if total == 0 {
        let n = relays.iter().filter(|r| present(r)).count();
        return count_ratio(n, relays.len());
    }
    ratio(have, total)
}

fn count_ratio(a: usize, b: usize) -> f64 {
    ratio(
        u128::try_from(a).unwrap_or(u128::MAX),
        u128::try_from(b).unwrap_or(u128::MAX),
    )
}

#[allow(
    clippy::cast_precision_loss,
    reason = "a fraction of two bandwidth sums; f64 is precise enough"
)]
fn ratio(a: u128, b: u128) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The share of paths needed before circuits are built: the consensus'
/// `min_paths_for_circs_pct`, 25 to 95, 60 by default (C-tor
/// `get_frac_paths_needed_for_circs`).
pub fn paths_needed(params: &BTreeMap<String, i32>) -> f64 {
    let pct = params
        .get(PATHS_PARAM)
        .copied()
        .unwrap_or(DEFAULT_PATHS_PCT)
        .clamp(PATHS_PCT_RANGE.0, PATHS_PCT_RANGE.1);
    f64::from(pct) / 100.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp, reason = "tests")]

    use super::*;
    use crate::relay::{PortPolicy, RelayId};

    fn relay(i: u8, flags: RelayFlags, weight: u64, md: bool) -> Relay {
        let mut r = Relay::new(
            RelayId::new([i; 20]),
            format!("r{i}"),
            format!("127.0.0.{i}:9001").parse().unwrap(),
        );
        r.flags = flags | RelayFlags::RUNNING | RelayFlags::VALID;
        r.weight = weight;
        if md {
            r.ntor_key = Some([i; 32]);
            r.policy = PortPolicy::accept_all();
        }
        r
    }

    fn net(md: [bool; 4]) -> Vec<Relay> {
        vec![
            relay(1, RelayFlags::GUARD, 300, md[0]),
            relay(2, RelayFlags::GUARD, 100, md[1]),
            relay(3, RelayFlags::empty(), 200, md[2]),
            relay(4, RelayFlags::EXIT, 400, md[3]),
        ]
    }

    #[test]
    fn shares_are_bandwidth_weighted_per_position_and_multiplied() {
        let w = BandwidthWeights::uniform(10_000);
        let all = PathsAvailable::of(&net([true; 4]), &w);
        assert_eq!(all.paths(), 1.0);
        let none = PathsAvailable::of(&net([false; 4]), &w);
        assert_eq!(none.paths(), 0.0);
        // The big guard missing: a quarter of guard bandwidth, 7/10 of the
        // middle, all of the exit.
        let p = PathsAvailable::of(&net([false, true, true, true]), &w);
        assert_eq!(p.guard, 0.25);
        assert_eq!(p.middle, 0.7);
        assert_eq!(p.exit, 1.0);
        assert!((p.paths() - 0.175).abs() < 1e-9);
        assert!(p.to_string().contains("= 18% of paths"), "{p}");
    }

    /// 60% of the relays' descriptors can be enough, or far from it: what
    /// counts is the share of paths.
    #[test]
    fn sixty_percent_of_paths_not_of_descriptors() {
        let w = BandwidthWeights::uniform(10_000);
        let mut relays: Vec<Relay> = (1..=10)
            .map(|i| relay(i, RelayFlags::GUARD | RelayFlags::EXIT, 100, i <= 8))
            .collect();
        // 8 of 10 equal relays: 0.8^3 = 51%, not enough.
        let p = PathsAvailable::of(&relays, &w);
        assert!(p.paths() < 0.6, "{p}");
        // The two missing are tiny: 0.99^3, enough.
        relays[8].weight = 1;
        relays[9].weight = 1;
        assert!(PathsAvailable::of(&relays, &w).paths() >= 0.6);
    }

    #[test]
    fn no_exit_means_internal_paths_and_no_weight_means_counting() {
        let w = BandwidthWeights::uniform(10_000);
        let relays = vec![
            relay(1, RelayFlags::GUARD, 0, true),
            relay(2, RelayFlags::empty(), 0, false),
        ];
        let p = PathsAvailable::of(&relays, &w);
        assert_eq!((p.guard, p.middle, p.exit), (1.0, 0.5, 0.5));
        assert_eq!(PathsAvailable::of(&[], &w).paths(), 0.0);
    }

    #[test]
    fn the_needed_share_comes_from_the_consensus_within_bounds() {
        let mut params = BTreeMap::new();
        assert_eq!(paths_needed(&params), 0.6);
        params.insert(PATHS_PARAM.to_owned(), 80);
        assert_eq!(paths_needed(&params), 0.8);
        params.insert(PATHS_PARAM.to_owned(), 5);
        assert_eq!(paths_needed(&params), 0.25);
        params.insert(PATHS_PARAM.to_owned(), 100);
        assert_eq!(paths_needed(&params), 0.95);
    }
}
