//! What a directory cache fetches from the authorities, and when.
//!
//! The next consensus (dir-spec §5.1; C-tor
//! `update_consensus_networkstatus_fetch_time_impl` for a relay that
//! fetches directory information early): at a random time in the first
//! half of the interval after the held one stops being fresh, a little
//! after `fresh-until` so the authorities have published it; at once if
//! the held one is not valid now. The microdescriptors it lacks: by
//! digest, [`MDS_PER_REQUEST`] per request (dir-spec §4.3).

use std::time::{Duration, SystemTime};

use base64ct::{Base64Unpadded, Encoding as _};
use rand::{Rng, RngExt as _};
use tor_netdoc::doc::microdesc::MdDigest;

use crate::documents::Lifetime;

/// C-tor `CONSENSUS_MIN_SECONDS_BEFORE_CACHING`: how long after
/// `fresh-until` a cache waits at least (an interval's sixteenth on fast
/// test networks, at least a second).
pub const MIN_WAIT_AFTER_FRESH: Duration = Duration::from_secs(120);

/// Microdescriptors asked in one request: C-tor's `max_dl_per_request`
/// for a request that is not tunnelled (URLs under 4 KB for proxies).
pub const MDS_PER_REQUEST: usize = 90;

/// The paths that fetch `digests`: `/tor/micro/d/<D1>-<D2>...`, base64
/// without padding, [`MDS_PER_REQUEST`] each.
pub fn microdesc_paths(digests: &[MdDigest]) -> Vec<String> {
    digests
        .chunks(MDS_PER_REQUEST)
        .map(|batch| {
            let list: Vec<String> = batch
                .iter()
                .map(|d| Base64Unpadded::encode_string(d))
                .collect();
            format!("/tor/micro/d/{}", list.join("-"))
        })
        .collect()
}

/// When to fetch the consensus after the one valid for `held`, at `now`.
pub fn next_consensus_fetch<R: Rng + ?Sized>(
    held: &Lifetime,
    now: SystemTime,
    rng: &mut R,
) -> SystemTime {
    if !held.is_valid_at(now) {
        return now;
    }
    let secs = |a: SystemTime, b: SystemTime| a.duration_since(b).map_or(0, |d| d.as_secs());
    let interval = secs(held.fresh_until, held.valid_after);
    let min_wait = MIN_WAIT_AFTER_FRESH.as_secs().min(interval / 16).max(1);
    let window = (interval / 2).max(1);
    let mut start = held.fresh_until + Duration::from_secs(min_wait);
    // A start so late that the window reaches valid-until is pulled back
    // (C-tor: "catch late start in crazy-fast networks").
    if start + Duration::from_secs(window) >= held.valid_until {
        start = held
            .valid_until
            .checked_sub(Duration::from_secs(window.saturating_add(1)))
            .unwrap_or(held.fresh_until)
            .max(held.fresh_until);
    }
    (start + Duration::from_secs(rng.random_range(0..window))).min(held.valid_until)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests")]

    use std::time::UNIX_EPOCH;

    use proptest::prelude::*;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    fn lifetime(va: u64, fu: u64, vu: u64) -> Lifetime {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        Lifetime {
            valid_after: t(va),
            fresh_until: t(fu),
            valid_until: t(vu),
        }
    }

    #[test]
    fn public_network_and_test_network() {
        let mut rng = StdRng::seed_from_u64(1);
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        // An hour fresh, three valid: 2 min after fresh-until, within 30 min.
        let l = lifetime(0, 3600, 3 * 3600);
        for _ in 0..200 {
            let at = next_consensus_fetch(&l, t(100), &mut rng);
            assert!(at >= t(3720) && at < t(3720 + 1800), "{at:?}");
        }
        // The testnet's 10 s votes, valid 20 s: from 11 s, within 5 s.
        let l = lifetime(1000, 1010, 1020);
        for _ in 0..200 {
            let at = next_consensus_fetch(&l, t(1001), &mut rng);
            assert!(at >= t(1010) && at < t(1020), "{at:?}");
        }
        // Not valid now: at once.
        assert_eq!(next_consensus_fetch(&l, t(2000), &mut rng), t(2000));
        assert_eq!(next_consensus_fetch(&l, t(999), &mut rng), t(999));
    }

    #[test]
    fn microdescriptors_in_batches_of_90() {
        let digests: Vec<MdDigest> = (0..=200_u8).map(|i| [i; 32]).collect();
        let paths = microdesc_paths(&digests);
        assert_eq!(paths.len(), 3);
        assert_eq!(paths[0].matches('-').count(), 89);
        assert_eq!(paths[2].matches('-').count(), 20);
        // Each digest is 43 characters; C-tor's URL limit for proxies holds.
        assert!(paths[0].len() < 4096 - 60, "{}", paths[0].len());
        assert!(paths[1].starts_with(&format!(
            "/tor/micro/d/{}-",
            Base64Unpadded::encode_string(&[90; 32])
        )));
        assert!(microdesc_paths(&[]).is_empty());
    }

    proptest! {
        #[test]
        fn after_fresh_and_before_expiry(
            va in 0_u64..1_000_000, fresh in 1_u64..100_000, valid in 1_u64..100_000, seed: u64
        ) {
            let l = lifetime(va, va + fresh, va + fresh + valid);
            let mut rng = StdRng::seed_from_u64(seed);
            let now = l.valid_after;
            let at = next_consensus_fetch(&l, now, &mut rng);
            prop_assert!(at >= l.fresh_until);
            prop_assert!(at <= l.valid_until);
        }
    }
}
