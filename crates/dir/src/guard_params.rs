//! Guard parameters from the consensus (guard-spec §A.1 names them; C-tor's
//! `entrynodes.c` reads them with these defaults and bounds). Each new
//! consensus may change them: the client applies them with
//! [`GuardSet::set_params`](crate::GuardSet::set_params) before
//! [`update_consensus`](crate::GuardSet::update_consensus).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::guard::GuardParams;

/// One day.
const DAY: u64 = 24 * 3600;
/// The most any count parameter may be: C-tor allows up to INT32_MAX, but a
/// sample or primary list larger than this would only cost memory and time
/// (the public network lists about 3000 guards).
const MAX_COUNT: i32 = 10_000;

/// `name` from `params`, `default` when absent, clamped to `min..=max`
/// (as C-tor's `networkstatus_get_param`).
fn param(params: &BTreeMap<String, i32>, name: &str, default: i32, min: i32, max: i32) -> i32 {
    params.get(name).copied().unwrap_or(default).clamp(min, max)
}

/// A clamped count parameter as a usize (never below 1).
fn count(params: &BTreeMap<String, i32>, name: &str, default: i32) -> usize {
    usize::try_from(param(params, name, default, 1, MAX_COUNT)).unwrap_or(1)
}

/// A clamped parameter in days as a duration (1 day to 10 years).
fn days(params: &BTreeMap<String, i32>, name: &str, default: i32) -> Duration {
    let d = u64::try_from(param(params, name, default, 1, 3650)).unwrap_or(1);
    Duration::from_secs(d * DAY)
}

impl GuardParams {
    /// The parameters a consensus sets, the defaults of guard-spec §A.1 for
    /// those it does not (C-tor's names, defaults and bounds).
    pub fn from_consensus(params: &BTreeMap<String, i32>) -> Self {
        let down = param(
            params,
            "guard-internet-likely-down-interval",
            600,
            1,
            86_400,
        );
        Self {
            max_sample_size: count(params, "guard-max-sample-size", 60),
            max_sample_threshold_percent: usize::try_from(param(
                params,
                "guard-max-sample-threshold-percent",
                20,
                1,
                100,
            ))
            .unwrap_or(20),
            min_filtered_sample: count(params, "guard-min-filtered-sample-size", 20),
            n_primary: count(params, "guard-n-primary-guards", 3),
            n_usable_primary: count(params, "guard-n-primary-guards-to-use", 1),
            guard_lifetime: days(params, "guard-lifetime-days", 120),
            confirmed_min_lifetime: days(params, "guard-confirmed-min-lifetime-days", 60),
            remove_unlisted_after: days(params, "guard-remove-unlisted-guards-after-days", 20),
            internet_likely_down: Duration::from_secs(u64::try_from(down).unwrap_or(600)),
            nonprimary_connect_timeout: Duration::from_secs(
                u64::try_from(param(
                    params,
                    "guard-nonprimary-guard-connect-timeout",
                    15,
                    1,
                    86_400,
                ))
                .unwrap_or(15),
            ),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn params(v: &[(&str, i32)]) -> BTreeMap<String, i32> {
        v.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn an_empty_consensus_gives_the_spec_defaults() {
        assert_eq!(
            GuardParams::from_consensus(&params(&[])),
            GuardParams::default()
        );
    }

    #[test]
    fn consensus_values_are_taken() {
        let p = GuardParams::from_consensus(&params(&[
            ("guard-n-primary-guards", 5),
            ("guard-n-primary-guards-to-use", 2),
            ("guard-max-sample-size", 40),
            ("guard-lifetime-days", 30),
            ("guard-internet-likely-down-interval", 120),
        ]));
        assert_eq!(p.n_primary, 5);
        assert_eq!(p.n_usable_primary, 2);
        assert_eq!(p.max_sample_size, 40);
        assert_eq!(p.guard_lifetime, Duration::from_secs(30 * DAY));
        assert_eq!(p.internet_likely_down, Duration::from_secs(120));
        assert_eq!(p.min_filtered_sample, 20);
    }

    #[test]
    fn hostile_values_are_clamped() {
        let p = GuardParams::from_consensus(&params(&[
            ("guard-n-primary-guards", 0),
            ("guard-max-sample-size", i32::MAX),
            ("guard-max-sample-threshold-percent", 1000),
            ("guard-lifetime-days", -5),
            ("guard-internet-likely-down-interval", i32::MIN),
        ]));
        assert_eq!(p.n_primary, 1);
        assert_eq!(p.max_sample_size, 10_000);
        assert_eq!(p.max_sample_threshold_percent, 100);
        assert_eq!(p.guard_lifetime, Duration::from_secs(DAY));
        assert_eq!(p.internet_likely_down, Duration::from_secs(1));
    }
}
