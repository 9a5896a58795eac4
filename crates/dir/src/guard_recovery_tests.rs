//! A guard sample whose relays all vanished (a private network replaced in
//! the same directory, or a long-offline client) recovers on the next
//! consensus without a restart (guard-spec §4.1, §4.10; issue 16), and the
//! sample stays bounded however often that happens.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{BandwidthWeights, GuardParams, GuardSet, Relay, RelayFlags, RelayId};

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// `n` guards with ids `first..first + n`.
fn guards(first: u16, n: u16) -> Vec<Relay> {
    (first..first + n)
        .map(|i| {
            let mut b = [0_u8; 20];
            b[..2].copy_from_slice(&i.to_be_bytes());
            let mut r = Relay::new(
                RelayId::new(b),
                format!("g{i}"),
                SocketAddrV4::new(Ipv4Addr::new(10, (i % 250) as u8, 1, 1), 9001),
            );
            r.flags = GuardParams::default().required_flags | RelayFlags::RUNNING;
            r.weight = 100;
            r
        })
        .collect()
}

#[test]
fn a_sample_of_vanished_guards_recovers_on_the_next_consensus() {
    let mut rng = StdRng::seed_from_u64(7);
    let w = BandwidthWeights::default();
    let mut set = GuardSet::new(GuardParams::default());
    // A small network: all 5 guards sampled (MIN_FILTERED_SAMPLE is 20).
    set.update_consensus(&guards(0, 5), &w, t0(), &mut rng);
    let old = set.sampled();
    assert_eq!(old.len(), 5);
    set.pick_guard(&[], t0(), &mut rng).unwrap();

    // The network is replaced: 5 new guards, none of the old ones.
    let now = t0() + Duration::from_secs(600);
    let new = guards(100, 5);
    set.update_consensus(&new, &w, now, &mut rng);
    let choice = set.pick_guard(&[], now, &mut rng).unwrap();
    assert!(new.iter().any(|r| r.id == choice.id), "{choice:?}");
    assert!(set.primary().iter().all(|p| !old.contains(p)));
}

#[test]
fn a_full_sample_of_vanished_guards_makes_room() {
    let mut rng = StdRng::seed_from_u64(8);
    let w = BandwidthWeights::default();
    let mut set = GuardSet::new(GuardParams::default());
    // 100 guards: the sample fills to MIN_FILTERED_SAMPLE (20 = max).
    set.update_consensus(&guards(0, 100), &w, t0(), &mut rng);
    assert_eq!(set.sampled().len(), 20);
    // Replaced again and again: the sample keeps working and never holds
    // more than twice its bound.
    for round in 1..=5_u16 {
        let now = t0() + Duration::from_secs(3600 * u64::from(round));
        let new = guards(1000 * round, 100);
        set.update_consensus(&new, &w, now, &mut rng);
        assert!(set.sampled().len() <= 40, "{}", set.sampled().len());
        let choice = set.pick_guard(&[], now, &mut rng).unwrap();
        assert!(new.iter().any(|r| r.id == choice.id));
        assert_eq!(set.filtered().len(), 20);
    }
}
