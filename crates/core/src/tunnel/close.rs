//! Why a tunnel closed, structured for its driver, and what the client
//! does next because of it (Braid proposal 001 §5.3, confirmation attacks,
//! prop 329 §4.3).
//!
//! A set the client stopped resuming (3 resumptions in 60 s, §3.5, or its
//! leg launch budget spent on replacing lost legs, prop 329 §4.2.2, which
//! with C-tor's default of 3 relaunches comes first), whose legs died
//! together through one guard, or whose peer broke the protocol is not
//! rebuilt at once: the next set for the same isolation key waits a
//! uniformly random 1 to 5 s and uses other middles, so that an adversary
//! who kills legs gets no faster or more regular a reaction than a fresh
//! circuit would give. The rule is here; the driver only sleeps and passes
//! the middles to path selection.

use std::time::Duration;

use rand::{Rng, RngExt};
use tor_llcrypto::pk::rsa::RsaIdentity;

use super::error::{TunnelError, TunnelErrorKind};
use super::event::LegSnapshot;
use crate::conflux::ConfluxError;

/// The shortest wait before the next set (Braid proposal 001 §5.3).
pub const REBUILD_DELAY_MIN: Duration = Duration::from_secs(1);
/// The longest wait before the next set (Braid proposal 001 §5.3).
pub const REBUILD_DELAY_MAX: Duration = Duration::from_secs(5);

/// Why a tunnel closed, for the driver to act on (the text of the
/// [`TunnelError`] stays for display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCause {
    /// We closed it, or the API was misused.
    Local,
    /// A resumable set was resumed too often (Braid proposal 001 §3.5).
    TooManyResumptions,
    /// A resumable set that was resumed lost legs until its launch budget
    /// was spent (prop 329 §4.2.2): it stopped resuming as with
    /// [`Self::TooManyResumptions`].
    LegsKeptDying,
    /// Every leg died within a second through one guard (Braid proposal
    /// 001 §5.3).
    LegsKilledTogether,
    /// A relay or the exit broke the protocol.
    ProtocolViolation,
    /// One of our bounds was hit by the peer's traffic.
    ResourceLimit,
    /// Something took too long (opening, linking, a resumption's grace).
    Timeout,
    /// Its circuits could not be built, or no leg could be launched.
    BuildFailed,
    /// The network took it down.
    Lost,
}

impl CloseCause {
    /// The cause of `error`, on a tunnel resumed `resumptions` times.
    pub fn of_tunnel(error: &TunnelError, resumptions: u64) -> Self {
        match error {
            TunnelError::LaunchBudgetSpent { .. } if resumptions > 0 => CloseCause::LegsKeptDying,
            e => Self::of(e),
        }
    }

    /// The cause of `error`.
    pub fn of(error: &TunnelError) -> Self {
        match error {
            TunnelError::LegsKilledTogether { .. } => CloseCause::LegsKilledTogether,
            TunnelError::Conflux(ConfluxError::TooManyResumptions { .. }) => {
                CloseCause::TooManyResumptions
            }
            e => match e.kind() {
                TunnelErrorKind::Local => CloseCause::Local,
                TunnelErrorKind::Timeout => CloseCause::Timeout,
                TunnelErrorKind::BuildFailed => CloseCause::BuildFailed,
                TunnelErrorKind::PeerViolation => CloseCause::ProtocolViolation,
                TunnelErrorKind::ResourceLimit => CloseCause::ResourceLimit,
                TunnelErrorKind::Lost => CloseCause::Lost,
            },
        }
    }

    /// True if the next tunnel for the same isolation key waits a random
    /// delay and avoids this one's middles (Braid proposal 001 §5.3: the
    /// set stopped resuming, its legs died together through one guard, or
    /// the peer broke the protocol).
    pub fn delays_rebuild(self) -> bool {
        matches!(
            self,
            CloseCause::TooManyResumptions
                | CloseCause::LegsKeptDying
                | CloseCause::LegsKilledTogether
                | CloseCause::ProtocolViolation
        )
    }

    /// A short name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            CloseCause::Local => "local",
            CloseCause::TooManyResumptions => "too_many_resumptions",
            CloseCause::LegsKeptDying => "legs_kept_dying",
            CloseCause::LegsKilledTogether => "legs_killed_together",
            CloseCause::ProtocolViolation => "protocol_violation",
            CloseCause::ResourceLimit => "resource_limit",
            CloseCause::Timeout => "timeout",
            CloseCause::BuildFailed => "build_failed",
            CloseCause::Lost => "lost",
        }
    }
}

/// A closed tunnel: why, for the driver and for display, and the middles
/// its legs used (every leg launched, lost ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelClose {
    /// Why, structured.
    pub cause: CloseCause,
    /// Why, for people.
    pub text: String,
    /// The middle relays of its legs (every hop but the first and last).
    pub middles: Vec<RsaIdentity>,
}

impl TunnelClose {
    /// The close of a tunnel that ended with `error`, had `legs` and was
    /// resumed `resumptions` times.
    pub fn new(error: &TunnelError, legs: &[LegSnapshot], resumptions: u64) -> Self {
        let mut middles: Vec<RsaIdentity> = Vec::new();
        for l in legs {
            let inner = l.path.get(1..l.path.len().saturating_sub(1));
            for id in inner.unwrap_or_default() {
                if !middles.contains(id) {
                    middles.push(*id);
                }
            }
        }
        TunnelClose {
            cause: CloseCause::of_tunnel(error, resumptions),
            text: error.to_string(),
            middles,
        }
    }

    /// What the next tunnel for the same isolation key must respect, if
    /// anything: the delay drawn from `rng`, uniform in
    /// [`REBUILD_DELAY_MIN`]..=[`REBUILD_DELAY_MAX`] (millisecond steps),
    /// and the middles to avoid (Braid proposal 001 §5.3).
    pub fn rebuild<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<Rebuild> {
        self.cause.delays_rebuild().then(|| Rebuild {
            delay: rebuild_delay(rng),
            avoid: self.middles.clone(),
        })
    }
}

impl super::ClientTunnel {
    /// Why the tunnel closed, structured, once it has.
    pub fn close_summary(&self) -> Option<TunnelClose> {
        let error = self.close_error()?;
        let resumptions = self.resume_stats().resumptions;
        Some(TunnelClose::new(error, &self.leg_snapshots(), resumptions))
    }
}

/// The rule for the tunnel built after one that closed for a
/// [`CloseCause::delays_rebuild`] cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    /// Wait this long after the close before building it.
    pub delay: Duration,
    /// Use none of these as a middle.
    pub avoid: Vec<RsaIdentity>,
}

/// A delay uniform in [`REBUILD_DELAY_MIN`]..=[`REBUILD_DELAY_MAX`], in
/// milliseconds (Braid proposal 001 §5.3).
pub fn rebuild_delay<R: Rng + ?Sized>(rng: &mut R) -> Duration {
    let lo = u64::try_from(REBUILD_DELAY_MIN.as_millis()).unwrap_or(u64::MAX);
    let hi = u64::try_from(REBUILD_DELAY_MAX.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(lo..=hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::CloseReason;
    use crate::ids::LegKey;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    fn id(b: u8) -> RsaIdentity {
        RsaIdentity::from([b; 20])
    }

    fn leg(k: u32, path: &[u8]) -> LegSnapshot {
        LegSnapshot {
            leg: LegKey(k),
            path: path.iter().map(|b| id(*b)).collect(),
            open: false,
            figures: None,
            stats: None,
            replacement: false,
            link_rtt: None,
        }
    }

    fn too_many() -> TunnelError {
        TunnelError::Conflux(ConfluxError::TooManyResumptions {
            per_minute: 3,
            total: 20,
        })
    }

    #[test]
    fn causes() {
        assert_eq!(CloseCause::of(&too_many()), CloseCause::TooManyResumptions);
        let together = TunnelError::LegsKilledTogether {
            guard: id(1),
            legs: 2,
        };
        assert_eq!(CloseCause::of(&together), CloseCause::LegsKilledTogether);
        let wrong = TunnelError::WrongHop {
            leg: LegKey(0),
            hop: crate::ids::HopNum(1),
            cmd: tor_cell::relaycell::RelayCmd::DATA,
        };
        assert_eq!(CloseCause::of(&wrong), CloseCause::ProtocolViolation);
        assert_eq!(CloseCause::of(&TunnelError::Closed), CloseCause::Local);
        let lost = TunnelError::CircuitClosed {
            leg: LegKey(0),
            reason: CloseReason::ChannelClosed,
        };
        assert_eq!(CloseCause::of(&lost), CloseCause::Lost);
        for (e, delays) in [
            (too_many(), true),
            (together, true),
            (wrong, true),
            (lost, false),
            (TunnelError::Closed, false),
            (TunnelError::OpenTimeout(Duration::from_secs(1)), false),
        ] {
            assert_eq!(CloseCause::of(&e).delays_rebuild(), delays, "{e}");
        }
    }

    #[test]
    fn middles_of_every_leg_lost_ones_too() {
        let legs = [
            leg(0, &[1, 2, 9]),
            leg(1, &[3, 4, 9]),
            leg(2, &[1, 5, 9]),
            leg(3, &[6]),
        ];
        let close = TunnelClose::new(&too_many(), &legs, 3);
        assert_eq!(close.middles, vec![id(2), id(4), id(5)]);
        assert!(close.text.contains("§3.5"), "{}", close.text);
    }

    #[test]
    fn rebuild_only_for_the_rule_causes() {
        let legs = [leg(0, &[1, 2, 9])];
        let mut rng = StdRng::seed_from_u64(1);
        let lost = TunnelError::CircuitClosed {
            leg: LegKey(0),
            reason: CloseReason::ChannelClosed,
        };
        assert_eq!(TunnelClose::new(&lost, &legs, 1).rebuild(&mut rng), None);
        let spent = TunnelError::LaunchBudgetSpent {
            launches: 5,
            budget: 5,
        };
        let never_resumed = TunnelClose::new(&spent, &legs, 0);
        assert_eq!(never_resumed.cause, CloseCause::BuildFailed);
        assert_eq!(never_resumed.rebuild(&mut rng), None);
        let kept_dying = TunnelClose::new(&spent, &legs, 3);
        assert_eq!(kept_dying.cause, CloseCause::LegsKeptDying);
        assert!(kept_dying.rebuild(&mut rng).is_some());
        let r = TunnelClose::new(&too_many(), &legs, 3)
            .rebuild(&mut rng)
            .expect("a rebuild rule");
        assert_eq!(r.avoid, vec![id(2)]);
        assert!((REBUILD_DELAY_MIN..=REBUILD_DELAY_MAX).contains(&r.delay));
    }

    proptest::proptest! {
        #[test]
        fn delay_within_bounds(seed: u64) {
            let d = rebuild_delay(&mut StdRng::seed_from_u64(seed));
            proptest::prop_assert!(d >= REBUILD_DELAY_MIN && d <= REBUILD_DELAY_MAX);
        }
    }

    #[test]
    fn delay_spreads_over_the_range() {
        let mut rng = StdRng::seed_from_u64(3);
        let ds: Vec<Duration> = (0..2000).map(|_| rebuild_delay(&mut rng)).collect();
        let min = ds.iter().min().copied().unwrap_or_default();
        let max = ds.iter().max().copied().unwrap_or_default();
        // Uniform over 4 s: 2000 draws come within 50 ms of both ends.
        assert!(
            min < REBUILD_DELAY_MIN + Duration::from_millis(50),
            "{min:?}"
        );
        assert!(
            max > REBUILD_DELAY_MAX - Duration::from_millis(50),
            "{max:?}"
        );
        let below_3s = ds.iter().filter(|d| **d < Duration::from_secs(3)).count();
        assert!((800..1200).contains(&below_3s), "{below_3s}");
    }
}
