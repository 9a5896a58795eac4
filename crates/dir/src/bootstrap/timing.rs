//! When to fetch the next consensus (dir-spec §5.1) and how far our clock
//! may lie outside a consensus' validity (C-tor's 24 hours).
//!
//! A client fetches the consensus after the one it holds at a random time
//! from three quarters of an interval after fresh-until, through seven
//! eighths of what then remains before valid-until (C-tor
//! `update_consensus_networkstatus_fetch_time_impl`, ordinary client). An
//! answer no newer than the held one means the next consensus is late: it
//! is looked for again in the same window one voting interval later (the
//! authorities make one per interval), not at once and not as a failure.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::{Rng, RngExt as _};

use crate::documents::Lifetime;

/// How far outside its validity a consensus is still taken: C-tor's
/// `NETWORKSTATUS_ALLOW_SKEW` and `REASONABLY_LIVE_TIME` (dir-spec §5.1: a
/// "reasonably live" consensus expired less than 24 hours ago). Beyond it
/// the consensus is refused.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(24 * 3600);

/// How long a consensus waits for the certificates that check it before
/// another consensus is fetched (C-tor `DELAY_WHILE_FETCHING_CERTS`).
pub const CERT_WAIT: Duration = Duration::from_secs(20 * 60);

/// How far our clock lies outside a consensus' validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSkew {
    /// The consensus is not valid yet: our clock is behind by at least
    /// this much (no authority can sign a consensus ahead of time).
    Behind(Duration),
    /// The consensus expired this long ago: our clock is ahead by at least
    /// this much, or the consensus is stale.
    Ahead(Duration),
}

impl ClockSkew {
    /// How far `now` lies outside `lifetime` (`None`: inside it).
    pub fn of(lifetime: &Lifetime, now: SystemTime) -> Option<Self> {
        if let Ok(d) = lifetime.valid_after.duration_since(now)
            && !d.is_zero()
        {
            return Some(Self::Behind(d));
        }
        match now.duration_since(lifetime.valid_until) {
            Ok(d) if !d.is_zero() => Some(Self::Ahead(d)),
            _ => None,
        }
    }

    /// The distance, either way.
    pub fn amount(&self) -> Duration {
        match self {
            Self::Behind(d) | Self::Ahead(d) => *d,
        }
    }

    /// True if within [`CLOCK_TOLERANCE`].
    pub fn is_tolerated(&self) -> bool {
        self.amount() <= CLOCK_TOLERANCE
    }
}

impl fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Behind(d) => write!(
                f,
                "our clock is {} behind the consensus' valid-after; check the system clock",
                Hms(*d)
            ),
            Self::Ahead(d) => write!(
                f,
                "the consensus expired {} ago by our clock; our clock is ahead or the consensus is stale",
                Hms(*d)
            ),
        }
    }
}

/// A duration as `12h 0m 5s`.
#[derive(Debug, Clone, Copy)]
pub struct Hms(pub Duration);

impl fmt::Display for Hms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        write!(f, "{}h {}m {}s", s / 3600, s % 3600 / 60, s % 60)
    }
}

fn secs_between(later: SystemTime, earlier: SystemTime) -> u64 {
    later.duration_since(earlier).map_or(0, |d| d.as_secs())
}

fn plus(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).unwrap_or(t)
}

/// The §5.1 window of `lt`: its start, its length in whole seconds (at
/// least one), and the voting interval (at least one second). Whole
/// seconds and C-tor's clamps for "crazy-fast" test networks, as in
/// `update_consensus_networkstatus_fetch_time_impl`.
fn window(lt: &Lifetime) -> (SystemTime, u64, u64) {
    let interval = secs_between(lt.fresh_until, lt.valid_after).max(1);
    // "Give all the caches enough time to download the consensus."
    let mut start = plus(lt.fresh_until, Duration::from_secs(interval * 3 / 4));
    // "But download the next one well before this one is expired."
    let len = (secs_between(lt.valid_until, start) * 7 / 8).max(1);
    // "catch late start in crazy-fast networks"
    if plus(start, Duration::from_secs(len)) >= lt.valid_until
        && let Some(s) = lt.valid_until.checked_sub(Duration::from_secs(len + 1))
    {
        start = s;
    }
    (start, len, interval)
}

fn random_in<R: Rng + ?Sized>(start: SystemTime, len_secs: u64, rng: &mut R) -> SystemTime {
    let offset = rng.random_range(0..len_secs.saturating_mul(1000).max(1));
    plus(start, Duration::from_millis(offset))
}

/// When to fetch the consensus after `lt`, adopted at `now` (dir-spec
/// §5.1). A time already past (the consensus came late) means at once, as
/// does a consensus that has expired (C-tor: "No live consensus; we should
/// fetch one immediately"). A consensus not valid yet means our clock is
/// behind: the window is measured from `now` as if the consensus had just
/// become valid, since by the network's clock it has.
pub fn fetch_time<R: Rng + ?Sized>(lt: &Lifetime, now: SystemTime, rng: &mut R) -> SystemTime {
    let (start, len, _) = window(lt);
    match ClockSkew::of(lt, now) {
        None => random_in(start, len, rng),
        Some(ClockSkew::Ahead(_)) => now,
        Some(ClockSkew::Behind(_)) => {
            let since_valid = start.duration_since(lt.valid_after).unwrap_or_default();
            random_in(plus(now, since_valid), len, rng)
        }
    }
}

/// When to look again after a source answered, at `now`, with a consensus
/// no newer than `lt`, the one held: in the §5.1 window of the consensus
/// one voting interval after `lt`, or the first such window that starts
/// after `now`. Always after `now`; with a clock behind `lt`, measured as
/// in [`fetch_time`].
pub fn fetch_time_not_newer<R: Rng + ?Sized>(
    lt: &Lifetime,
    now: SystemTime,
    rng: &mut R,
) -> SystemTime {
    let (start, len, interval) = window(lt);
    // With our clock behind, count from valid-after and shift back.
    let behind = lt.valid_after.duration_since(now).unwrap_or_default();
    let net_now = plus(now, behind);
    let k = if start > net_now {
        0
    } else {
        secs_between(net_now, start) / interval + 1
    };
    let next_start = plus(start, Duration::from_secs(k.saturating_mul(interval)));
    let at = random_in(next_start, len, rng);
    let at = at.checked_sub(behind).unwrap_or(at);
    if at > now {
        at
    } else {
        // Only at the end of representable time.
        plus(now, Duration::from_secs(interval))
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

    const H: u64 = 3600;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    /// The public network's shape: fresh an hour, valid three.
    fn public(va: u64) -> Lifetime {
        Lifetime {
            valid_after: t(va),
            fresh_until: t(va + H),
            valid_until: t(va + 3 * H),
        }
    }

    const T0: u64 = 1_800_000_000;

    #[test]
    fn dir_spec_example_window() {
        // dir-spec §5.1: valid at 1:00, fresh until 2:00, expires 4:00:
        // fetch between 2:45 and 3:50.
        let lt = public(T0);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..500 {
            let at = fetch_time(&lt, t(T0 + 60), &mut rng);
            // 7/8 of 75 minutes is 65 min 37.5 s (the spec rounds it).
            assert!(
                at >= t(T0 + H + 45 * 60) && at < t(T0 + H + 45 * 60 + 3938),
                "{at:?}"
            );
        }
    }

    #[test]
    fn crazy_fast_test_network_window() {
        // braid testnet: 10 s fresh, 20 s valid. C-tor: start 7 s after
        // fresh-until, within 2 s.
        let lt = Lifetime {
            valid_after: t(T0),
            fresh_until: t(T0 + 10),
            valid_until: t(T0 + 20),
        };
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..200 {
            let at = fetch_time(&lt, t(T0 + 1), &mut rng);
            assert!(at >= t(T0 + 17) && at < t(T0 + 19), "{at:?}");
        }
    }

    #[test]
    fn expired_means_at_once_and_early_means_measured_from_now() {
        let lt = public(T0);
        let mut rng = StdRng::seed_from_u64(3);
        let late = t(T0 + 5 * H);
        assert_eq!(fetch_time(&lt, late, &mut rng), late);
        // Our clock 12 h behind: the window lies 1.75 h to 2.84 h ahead of
        // now, as for a client that just got a fresh consensus.
        let early = t(T0 - 12 * H);
        for _ in 0..100 {
            let at = fetch_time(&lt, early, &mut rng);
            let d = at.duration_since(early).unwrap();
            assert!(d >= Duration::from_secs(105 * 60), "{d:?}");
            assert!(d < Duration::from_secs(170 * 60), "{d:?}");
        }
    }

    #[test]
    fn not_newer_waits_for_the_next_window() {
        let lt = public(T0);
        let mut rng = StdRng::seed_from_u64(4);
        // Asked at 2:00 into the consensus (inside its window) and told
        // nothing newer: the next window starts an interval later.
        let now = t(T0 + 2 * H);
        for _ in 0..200 {
            let at = fetch_time_not_newer(&lt, now, &mut rng);
            assert!(at >= t(T0 + 2 * H + 45 * 60), "{at:?}");
            assert!(at < t(T0 + 2 * H + 45 * 60 + 66 * 60), "{at:?}");
        }
        // A stalled network, a day later: within the next interval and a
        // window.
        let now = t(T0 + 30 * H + 10);
        let at = fetch_time_not_newer(&lt, now, &mut rng);
        let d = at.duration_since(now).unwrap();
        assert!(
            d > Duration::ZERO && d < Duration::from_secs(H + 66 * 60),
            "{d:?}"
        );
    }

    #[test]
    fn skew_either_way() {
        let lt = public(T0);
        assert_eq!(ClockSkew::of(&lt, t(T0)), None);
        assert_eq!(ClockSkew::of(&lt, t(T0 + 3 * H)), None);
        let behind = ClockSkew::of(&lt, t(T0 - 12 * H)).unwrap();
        assert_eq!(behind, ClockSkew::Behind(Duration::from_secs(12 * H)));
        assert!(behind.is_tolerated());
        assert!(behind.to_string().contains("12h 0m 0s behind"), "{behind}");
        let ahead = ClockSkew::of(&lt, t(T0 + 28 * H + 1)).unwrap();
        assert_eq!(ahead, ClockSkew::Ahead(Duration::from_secs(25 * H + 1)));
        assert!(!ahead.is_tolerated());
        assert!(ahead.to_string().contains("25h 0m 1s ago"), "{ahead}");
    }

    proptest! {
        #[test]
        fn not_newer_is_always_later_and_at_most_two_intervals_away(
            va in 1_000_000_000_u64..2_000_000_000,
            interval in 1_u64..(4 * H),
            valid_extra in 0_u64..(8 * H),
            offset in 0_u64..(80 * H),
            behind: bool,
            seed: u64,
        ) {
            let lt = Lifetime {
                valid_after: t(va),
                fresh_until: t(va + interval),
                valid_until: t(va + interval + valid_extra),
            };
            let now = if behind { t(va - offset) } else { t(va + offset) };
            let mut rng = StdRng::seed_from_u64(seed);
            let at = fetch_time_not_newer(&lt, now, &mut rng);
            prop_assert!(at > now);
            let (_, len, iv) = window(&lt);
            let wait = at.duration_since(now).unwrap();
            prop_assert!(
                wait <= Duration::from_secs(2 * iv + len + interval + valid_extra),
                "{wait:?}"
            );
            // A live consensus is refetched before it expires; any other
            // never before now.
            let f = fetch_time(&lt, now, &mut rng);
            if ClockSkew::of(&lt, now).is_none() {
                prop_assert!(f < lt.valid_until, "{f:?}");
            } else {
                prop_assert!(f >= now);
            }
        }
    }
}
