//! Tests of [`super`]: guard sampling, selection, retries, expiry and the TOML state file.

use super::*;
use crate::error::GuardError;
use crate::relay::Relay;
use crate::weights::BandwidthWeights;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::Ipv4Addr;
use std::time::UNIX_EPOCH;

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn min(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn id(n: u16) -> RelayId {
    let mut b = [0_u8; 20];
    b[..2].copy_from_slice(&n.to_be_bytes());
    RelayId::new(b)
}

/// `n` guards (ids 0..n) with weight 100 + 10 * i, plus a few non-guards.
fn consensus(n: u16) -> Vec<Relay> {
    let mut v: Vec<Relay> = (0..n)
        .map(|i| {
            let mut r = Relay::new(
                id(i),
                format!("g{i}"),
                SocketAddrV4::new(Ipv4Addr::new(10, (i % 250) as u8, 0, 1), 9001 + i),
            );
            r.flags = GuardParams::default().required_flags | RelayFlags::RUNNING;
            r.weight = 100 + 10 * u64::from(i);
            r
        })
        .collect();
    for i in 0..3 {
        let mut r = Relay::new(
            id(60_000 + i),
            "middle",
            SocketAddrV4::new(Ipv4Addr::new(11, 0, 0, 1), 9001),
        );
        r.flags = RelayFlags::RUNNING | RelayFlags::VALID | RelayFlags::FAST;
        r.weight = 1000;
        v.push(r);
    }
    v
}

fn set_with(n: u16, rng: &mut StdRng) -> (GuardSet, Vec<Relay>) {
    let relays = consensus(n);
    let mut set = GuardSet::new(GuardParams::default());
    set.update_consensus(&relays, &BandwidthWeights::default(), t0(), rng);
    (set, relays)
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(99)
}

#[test]
fn retry_schedule() {
    let h = |n| n * HOUR;
    assert_eq!(retry_interval(Duration::ZERO, true), min(10));
    assert_eq!(retry_interval(h(5), true), min(10));
    assert_eq!(retry_interval(h(6), true), min(90));
    assert_eq!(retry_interval(h(95), true), min(90));
    assert_eq!(retry_interval(h(96), true), h(4));
    assert_eq!(retry_interval(h(96 + 71), true), h(4));
    assert_eq!(retry_interval(h(96 + 72), true), h(9));
    assert_eq!(retry_interval(Duration::ZERO, false), h(1));
    assert_eq!(retry_interval(h(7), false), h(4));
    assert_eq!(retry_interval(h(100), false), h(18));
    assert_eq!(retry_interval(h(1000), false), h(36));
}

#[test]
fn tiny_network_samples_all_guards() {
    let mut rng = rng();
    let (set, _) = set_with(5, &mut rng);
    let mut sampled = set.sampled();
    sampled.sort();
    assert_eq!(sampled, (0..5).map(id).collect::<Vec<_>>());
    assert_eq!(set.primary().len(), 3);
    assert_eq!(set.primary(), &set.sampled()[..3]);
    assert!(set.confirmed().is_empty());
    assert_eq!(set.filtered().len(), 5);
}

#[test]
fn sample_size_limits() {
    let mut rng = rng();
    // 500 guards: grows until MIN_FILTERED_SAMPLE (20) are usable.
    let (mut set, relays) = set_with(500, &mut rng);
    assert_eq!(set.sampled().len(), 20);
    // Exclude most of them: the sample grows to its maximum,
    // min(60, 20% of 500) = 60.
    let sampled = set.sampled();
    set.set_filter(GuardFilter {
        exclude: (0..500)
            .map(id)
            .filter(|i| !sampled[..5].contains(i))
            .collect(),
        reachable_ports: None,
    });
    set.update_consensus(&relays, &BandwidthWeights::default(), t0(), &mut rng);
    assert_eq!(set.sampled().len(), 60);
    // 150 guards: 20% is 30.
    let (mut set, relays) = set_with(150, &mut rng);
    set.set_filter(GuardFilter {
        exclude: (0..150).map(id).collect(),
        reachable_ports: None,
    });
    set.update_consensus(&relays, &BandwidthWeights::default(), t0(), &mut rng);
    assert_eq!(set.sampled().len(), 30);
    assert!(set.primary().is_empty());
    let e = set.pick_guard(&[], t0(), &mut rng).unwrap_err();
    assert!(
        e.to_string()
            .contains("150 guards in the consensus, 30 sampled, 0 pass"),
        "{e}"
    );
    // 50 guards: 20% is 10, below MIN_FILTERED_SAMPLE, so 20.
    let (mut set, relays) = set_with(50, &mut rng);
    set.set_filter(GuardFilter {
        exclude: (0..50).map(id).collect(),
        reachable_ports: None,
    });
    set.update_consensus(&relays, &BandwidthWeights::default(), t0(), &mut rng);
    assert_eq!(set.sampled().len(), 20);
}

#[test]
fn sampling_is_bandwidth_weighted() {
    // Guard 0 has all the bandwidth: it is always sampled first.
    let mut relays = consensus(30);
    for r in &mut relays[1..30] {
        r.weight = 0;
    }
    relays[0].weight = 1_000_000;
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut set = GuardSet::new(GuardParams::default());
        set.update_consensus(&relays, &BandwidthWeights::default(), t0(), &mut rng);
        assert_eq!(set.sampled()[0], id(0));
    }
    // Guards without the required flags are never sampled.
    let mut relays = consensus(10);
    relays[3].flags.remove(RelayFlags::STABLE);
    let mut rng = rng();
    let mut set = GuardSet::new(GuardParams::default());
    set.update_consensus(&relays, &BandwidthWeights::default(), t0(), &mut rng);
    assert_eq!(set.sampled().len(), 9);
    assert!(!set.sampled().contains(&id(3)));
}

#[test]
fn pick_prefers_primary_and_honours_exclusions() {
    let mut rng = rng();
    let (mut set, _) = set_with(8, &mut rng);
    let p = set.primary().to_vec();
    for _ in 0..10 {
        let c = set.pick_guard(&[], t0(), &mut rng).unwrap();
        assert_eq!(
            c,
            GuardChoice {
                id: p[0],
                usage: GuardUsage::Primary
            }
        );
    }
    let c = set.pick_guard(&[p[0]], t0(), &mut rng).unwrap();
    assert_eq!(
        c,
        GuardChoice {
            id: p[1],
            usage: GuardUsage::Primary
        }
    );
    let c = set.pick_guard(&p, t0(), &mut rng).unwrap();
    assert_eq!(c.usage, GuardUsage::NonPrimary);
    assert!(!p.contains(&c.id));
    // Excluding everything is an error.
    let all = set.sampled();
    assert!(matches!(
        set.pick_guard(&all, t0(), &mut rng),
        Err(GuardError::NoUsableGuard(_))
    ));
}

#[test]
fn excluded_guards_never_returned() {
    let mut rng = rng();
    let (mut set, _) = set_with(10, &mut rng);
    let sampled = set.sampled();
    let mut now = t0();
    for round in 0..500_u32 {
        now += Duration::from_secs(37);
        let exclude: Vec<RelayId> = sampled
            .iter()
            .filter(|_| rng.random_range(0..3) == 0)
            .copied()
            .collect();
        match set.pick_guard(&exclude, now, &mut rng) {
            Ok(c) => {
                assert!(!exclude.contains(&c.id));
                // Fail or succeed at random to move the state around.
                if round % 3 == 0 {
                    set.note_failure(&c.id, now).unwrap();
                } else {
                    set.note_success(&c.id, now, &mut rng).unwrap();
                }
            }
            Err(e) => assert_eq!(exclude.len(), sampled.len(), "{e}"),
        }
    }
}

#[test]
fn failure_skips_guard_until_retry() {
    let mut rng = rng();
    let (mut set, _) = set_with(8, &mut rng);
    let p = set.primary().to_vec();
    let now = t0();
    set.note_failure(&p[0], now).unwrap();
    assert_eq!(set.reachability(&p[0], now), Some(Reachability::No));
    assert_eq!(set.retry_at(&p[0]), Some(now + min(10)));
    assert!(!set.usable_guards(now).contains(&p[0]));
    let c = set.pick_guard(&[], now + min(1), &mut rng).unwrap();
    assert_eq!(c.id, p[1]);
    let c = set.pick_guard(&[], now + min(9), &mut rng).unwrap();
    assert_eq!(c.id, p[1]);
    // Primary guards are retried after 10 minutes.
    assert_eq!(
        set.reachability(&p[0], now + min(10)),
        Some(Reachability::Maybe)
    );
    let c = set.pick_guard(&[], now + min(10), &mut rng).unwrap();
    assert_eq!(c.id, p[0]);

    // A non-primary guard waits an hour.
    let other = set.sampled()[5];
    assert!(!set.primary().contains(&other));
    set.note_failure(&other, now).unwrap();
    assert_eq!(set.retry_at(&other), Some(now + HOUR));
    assert!(!set.usable_guards(now + min(59)).contains(&other));
    assert!(set.usable_guards(now + HOUR).contains(&other));

    // Still failing after more than six hours: retries slow to 90 minutes.
    set.note_failure(&p[0], now + 7 * HOUR).unwrap();
    assert_eq!(set.retry_at(&p[0]), Some(now + 7 * HOUR + min(90)));
    // Success resets the failure period.
    let later = now + 7 * HOUR + min(90);
    assert_eq!(set.pick_guard(&[], later, &mut rng).unwrap().id, p[0]);
    set.note_success(&p[0], later, &mut rng).unwrap();
    set.note_failure(&p[0], later + min(10)).unwrap();
    assert_eq!(set.retry_at(&p[0]), Some(later + min(20)));
}

#[test]
fn all_failed_marks_maybe() {
    let mut rng = rng();
    let (mut set, _) = set_with(4, &mut rng);
    for g in set.sampled() {
        set.note_failure(&g, t0()).unwrap();
    }
    assert!(set.all_primary_unreachable(t0()));
    assert!(set.usable_guards(t0()).is_empty());
    // §4.6: with every guard down, all become Maybe and we keep trying.
    let c = set.pick_guard(&[], t0(), &mut rng).unwrap();
    assert_eq!(c.id, set.primary()[0]);
    assert_eq!(set.usable_guards(t0()).len(), 4);
}

#[test]
fn confirmation_reorders_primary() {
    let mut rng = rng();
    let (mut set, _) = set_with(8, &mut rng);
    let sampled = set.sampled();
    let p = set.primary().to_vec();
    // Primary guards confirm in place and are usable at once.
    assert_eq!(
        set.note_success(&p[1], t0(), &mut rng).unwrap(),
        SuccessOutcome::UseNow
    );
    assert_eq!(set.confirmed(), &[p[1]]);
    assert_eq!(set.primary(), &[p[1], p[0], p[2]]);
    // A non-primary guard that works while the primaries may be up waits.
    let g6 = sampled[6];
    let out = set.note_success(&g6, t0() + min(1), &mut rng).unwrap();
    assert_eq!(out, SuccessOutcome::WaitForBetterGuard);
    // It is confirmed, so it joins the primaries after the confirmed
    // ones, displacing an unconfirmed one.
    assert_eq!(set.confirmed(), &[p[1], g6]);
    assert_eq!(set.primary(), &[p[1], g6, p[0]]);
    // With every primary down, a non-primary success is usable now.
    let now = t0() + min(2);
    for g in set.primary().to_vec() {
        set.note_failure(&g, now).unwrap();
    }
    let g7 = sampled[7];
    assert_eq!(
        set.note_success(&g7, now, &mut rng).unwrap(),
        SuccessOutcome::UseNow
    );
    // Unknown guards are reported.
    assert_eq!(
        set.note_success(&id(999), now, &mut rng),
        Err(GuardError::UnknownGuard(id(999)))
    );
    assert_eq!(
        set.note_failure(&id(999), now),
        Err(GuardError::UnknownGuard(id(999)))
    );
}

/// §4.9: a held circuit is used once every primary guard is down, or
/// once it has waited NONPRIMARY_GUARD_CONNECT_TIMEOUT for a better one.
#[test]
fn a_waiting_circuit_becomes_usable() {
    let mut rng = rng();
    let (mut set, _) = set_with(8, &mut rng);
    let now = t0();
    let g = set.sampled()[6];
    assert_eq!(
        set.note_success(&g, now, &mut rng).unwrap(),
        SuccessOutcome::WaitForBetterGuard
    );
    assert!(!set.waiting_circuit_usable(Duration::from_secs(1), now));
    assert!(set.waiting_circuit_usable(Duration::from_secs(15), now));
    for p in set.primary().to_vec() {
        if p != g {
            set.note_failure(&p, now).unwrap();
        }
    }
    // g joined the primaries when confirmed; fail it too.
    set.note_failure(&g, now).unwrap();
    assert!(set.waiting_circuit_usable(Duration::ZERO, now));
    let short = GuardParams::from_consensus(
        &[("guard-nonprimary-guard-connect-timeout".to_owned(), 2)]
            .into_iter()
            .collect(),
    );
    assert_eq!(short.nonprimary_connect_timeout, Duration::from_secs(2));
}

#[test]
fn net_down_retries_primaries() {
    let mut rng = rng();
    let (mut set, _) = set_with(8, &mut rng);
    let p = set.primary().to_vec();
    let now = t0();
    set.note_success(&p[0], now, &mut rng).unwrap();
    for g in &p {
        set.note_failure(g, now + min(1)).unwrap();
    }
    // Non-primary success after 30 minutes offline: primaries get
    // another chance and the circuit waits.
    let other = set.sampled()[5];
    let out = set.note_success(&other, now + min(31), &mut rng).unwrap();
    assert_eq!(out, SuccessOutcome::WaitForBetterGuard);
    assert_eq!(
        set.reachability(&p[0], now + min(31)),
        Some(Reachability::Maybe)
    );
}

#[test]
fn pending_non_primary_guards() {
    let mut rng = rng();
    let (mut set, _) = set_with(8, &mut rng);
    let p = set.primary().to_vec();
    let a = set.pick_guard(&p, t0(), &mut rng).unwrap();
    let b = set.pick_guard(&p, t0(), &mut rng).unwrap();
    // The first is pending, so the next non-primary pick moves on.
    assert_eq!(a.usage, GuardUsage::NonPrimary);
    assert_ne!(a.id, b.id);
    // Sample order.
    let rest: Vec<RelayId> = set
        .sampled()
        .into_iter()
        .filter(|g| !p.contains(g))
        .collect();
    assert_eq!([a.id, b.id], [rest[0], rest[1]]);
    // A confirmed non-primary guard comes before sample order.
    set.note_success(&rest[3], t0(), &mut rng).unwrap();
    let excl: Vec<RelayId> = set.primary().to_vec();
    let c = set.pick_guard(&excl, t0(), &mut rng).unwrap();
    assert!(!excl.contains(&c.id));
}

#[test]
fn filter_by_port_and_running() {
    let mut rng = rng();
    let (mut set, mut relays) = set_with(6, &mut rng);
    set.set_filter(GuardFilter {
        exclude: Vec::new(),
        reachable_ports: Some("accept 9001-9002".parse().unwrap()),
    });
    let mut f = set.filtered();
    f.sort();
    assert_eq!(f, vec![id(0), id(1)]);
    assert_eq!(set.primary().len(), 2);
    set.set_filter(GuardFilter::default());
    relays[0].flags.remove(RelayFlags::RUNNING);
    set.update_consensus(&relays, &BandwidthWeights::default(), t0(), &mut rng);
    assert!(!set.filtered().contains(&id(0)));
    assert!(!set.primary().contains(&id(0)));
    for _ in 0..20 {
        assert_ne!(set.pick_guard(&[], t0(), &mut rng).unwrap().id, id(0));
    }
}

#[test]
fn unlisted_and_old_guards_expire() {
    let mut rng = rng();
    let (mut set, relays) = set_with(5, &mut rng);
    let w = BandwidthWeights::default();
    let gone = set.primary()[0];
    let without: Vec<Relay> = relays.iter().filter(|r| r.id != gone).cloned().collect();
    set.update_consensus(&without, &w, t0(), &mut rng);
    assert!(set.sampled().contains(&gone));
    assert!(!set.filtered().contains(&gone));
    assert!(!set.primary().contains(&gone));
    // Still there after 15 days; gone after REMOVE_UNLISTED_GUARDS_AFTER.
    set.update_consensus(&without, &w, t0() + 15 * DAY, &mut rng);
    assert!(set.sampled().contains(&gone));
    set.update_consensus(&without, &w, t0() + 20 * DAY, &mut rng);
    assert!(!set.sampled().contains(&gone));

    // GUARD_LIFETIME: unconfirmed guards go after 120 days; confirmed
    // ones stay until confirmed 60 days ago.
    let (mut set, relays) = set_with(5, &mut rng);
    let keep = set.sampled()[1];
    let late = t0() + 110 * DAY;
    set.note_success(&keep, late, &mut rng).unwrap();
    set.update_consensus(&relays, &w, t0() + 121 * DAY, &mut rng);
    assert_eq!(set.confirmed(), &[keep]);
    assert!(set.sampled().contains(&keep));
    // The others expired and were sampled again (fresh dates).
    assert_eq!(set.sampled().len(), 5);
    set.update_consensus(&relays, &w, late + 61 * DAY, &mut rng);
    assert!(set.confirmed().is_empty());
}

#[test]
fn toml_round_trip() {
    let mut rng = rng();
    let (mut set, relays) = set_with(8, &mut rng);
    let s = set.sampled();
    set.note_success(&s[2], t0(), &mut rng).unwrap();
    set.note_success(&s[0], t0(), &mut rng).unwrap();
    set.note_success(&s[6], t0(), &mut rng).unwrap();
    let without: Vec<Relay> = relays.iter().filter(|r| r.id != s[7]).cloned().collect();
    set.update_consensus(&without, &BandwidthWeights::default(), t0(), &mut rng);
    set.note_failure(&s[1], t0()).unwrap();

    let text = set.to_toml().unwrap();
    assert!(text.contains("[[guard]]"), "{text}");
    assert!(text.contains(&format!("rsa_id = \"{}\"", s[0])), "{text}");
    let back = GuardSet::from_toml(&text, GuardParams::default()).unwrap();
    assert_eq!(back.sampled(), set.sampled());
    assert!(!back.sampled[7].listed);
    assert!(back.sampled[7].unlisted_since.is_some());
    assert_eq!(back.confirmed(), &[s[2], s[0], s[6]]);
    assert_eq!(back.to_toml().unwrap(), text);
    for (a, b) in back.sampled.iter().zip(&set.sampled) {
        // Our test times are whole seconds, so nothing is lost.
        assert_eq!(a.added_on, b.added_on);
        assert_eq!(a.added_by, b.added_by);
        assert_eq!(a.nickname, b.nickname);
        assert_eq!(a.listed, b.listed);
        assert_eq!(a.unlisted_since, b.unlisted_since);
        assert_eq!(a.confirmed_on, b.confirmed_on);
    }
    // Transient state is fresh and nothing is usable before a consensus.
    let mut back = back;
    assert!(matches!(
        back.pick_guard(&[], t0(), &mut rng),
        Err(GuardError::NoUsableGuard(_))
    ));
    assert_eq!(back.reachability(&s[1], t0()), Some(Reachability::Maybe));
    back.update_consensus(&relays, &BandwidthWeights::default(), t0(), &mut rng);
    assert_eq!(back.primary(), &[s[2], s[0], s[6]]);
    let c = back.pick_guard(&[], t0(), &mut rng).unwrap();
    assert_eq!(
        c,
        GuardChoice {
            id: s[2],
            usage: GuardUsage::Primary
        }
    );
}

#[test]
fn toml_keeps_unknown_keys() {
    let text = format!(
        "version = 1\n\n[[guard]]\nrsa_id = \"{}\"\nsampled_on = 1700000000\nlisted = true\n\
         pb_use_attempts = 3.5\nfuture = \"x\"\n",
        id(4)
    );
    let set = GuardSet::from_toml(&text, GuardParams::default()).unwrap();
    assert_eq!(set.sampled(), vec![id(4)]);
    let out = set.to_toml().unwrap();
    assert!(out.contains("pb_use_attempts = 3.5"), "{out}");
    assert!(out.contains("future = \"x\""), "{out}");
}

#[test]
fn corrupt_state_is_an_error() {
    let g = |extra: &str| {
        format!(
            "version = 1\n[[guard]]\nrsa_id = \"{}\"\nsampled_on = 1\nlisted = true\n{extra}",
            id(1)
        )
    };
    let dup = format!(
        "{}\n[[guard]]\nrsa_id = \"{}\"\nsampled_on = 1\nlisted = true\n",
        g(""),
        id(1)
    );
    let dup_idx = format!(
        "{}\n[[guard]]\nrsa_id = \"{}\"\nsampled_on = 1\nlisted = true\nconfirmed_idx = 0\n",
        g("confirmed_idx = 0\n"),
        id(2)
    );
    for bad in [
        "not toml at all [".to_owned(),
        String::new(),
        "version = 2".to_owned(),
        g("").replace(&id(1).to_string(), "XYZ"),
        g("").replace("sampled_on = 1", "sampled_on = -5"),
        g("").replace("listed = true", ""),
        g("confirmed_on = \"yesterday\"\n"),
        dup,
        dup_idx,
    ] {
        let e = GuardSet::from_toml(&bad, GuardParams::default()).unwrap_err();
        assert!(matches!(e, GuardError::CorruptState(_)), "{bad:?}: {e:?}");
    }
    // An empty state is fine.
    let set = GuardSet::from_toml("version = 1\n", GuardParams::default()).unwrap();
    assert!(set.sampled().is_empty());
    assert_eq!(set.params(), &GuardParams::default());
}
