//! Tests of [`super`]: path and Conflux leg selection and its restrictions, with the shared
//! helpers; bandwidth weighting in [`weighting`], property tests in [`props`].

use super::*;
use crate::error::PathError;
use crate::relay::PortPolicy;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::{Ipv4Addr, SocketAddrV4};

mod props;
mod weighting;

/// A relay with id byte `n`, flags by name, weight, and address 10.`net`.x.x.
fn relay(n: u8, flags: &str, weight: u64, net: u8) -> Relay {
    let mut r = Relay::new(
        RelayId::new([n; 20]),
        format!("r{n}"),
        SocketAddrV4::new(Ipv4Addr::new(10, net, 0, n), 9001),
    );
    r.flags = RelayFlags::from_names(flags.split_whitespace())
        | RelayFlags::RUNNING
        | RelayFlags::VALID
        | RelayFlags::FAST
        | RelayFlags::STABLE;
    r.weight = weight;
    if r.flags.contains(RelayFlags::EXIT) {
        r.policy = PortPolicy::accept_all();
        r.protocols = "Conflux=1 FlowCtrl=1-2 Link=1-5".parse().unwrap();
    }
    r
}

/// 4 guards, 4 middles, 3 exits, each in its own /16.
fn network() -> Vec<Relay> {
    let mut v = Vec::new();
    for n in 1..=4 {
        v.push(relay(n, "Guard V2Dir", 100, n));
    }
    for n in 5..=8 {
        v.push(relay(n, "V2Dir", 100, n));
    }
    for n in 9..=11 {
        v.push(relay(n, "Exit V2Dir", 100, n));
    }
    v
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn assert_distinct(path: &Path<'_>) {
    let [g, m, e] = path.hops();
    assert!(
        !g.same_relay(m) && !g.same_relay(e) && !m.same_relay(e),
        "{path}"
    );
}

#[test]
fn basic_path() {
    let relays = network();
    let w = BandwidthWeights::default();
    let mut rng = rng();
    for _ in 0..200 {
        let p = choose_path(&relays, &w, None, &PathConfig::default(), &mut rng).unwrap();
        assert!(p.guard.flags.contains(RelayFlags::GUARD));
        assert!(p.exit.flags.contains(RelayFlags::EXIT));
        assert_distinct(&p);
        assert_eq!(p.ids(), [p.guard.id, p.middle.id, p.exit.id]);
    }
}

#[test]
fn exit_port_and_protocols() {
    let mut relays = network();
    relays[8].policy = "accept 443".parse().unwrap();
    relays[9].policy = "reject 1-1000".parse().unwrap();
    relays[10].policy = "accept 80,443".parse().unwrap();
    relays[10].protocols = "FlowCtrl=2".parse().unwrap();
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let cfg = PathConfig {
        exit_port: Some(80),
        ..PathConfig::default()
    };
    for _ in 0..50 {
        let e = choose_exit(&relays, &w, &cfg, &[], &mut rng).unwrap();
        assert_eq!(e.id, relays[10].id);
    }
    let cfg = PathConfig::conflux(Some(80));
    let err = choose_path(&relays, &w, None, &cfg, &mut rng).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("no exit relay available"), "{msg}");
    assert!(msg.contains("allowing port 80"), "{msg}");
    assert!(msg.contains("supporting Conflux=1 FlowCtrl=2"), "{msg}");
    assert!(msg.contains("2 rejecting the port"), "{msg}");
    assert!(msg.contains("1 lacking the protocols"), "{msg}");
    assert!(msg.contains("8 without the Exit flag"), "{msg}");
    let PathError::NoCandidate {
        position, rejected, ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(position, Position::Exit);
    assert_eq!(rejected.total, 11);
    // Port 8080 is allowed by exit 10 only (protocols fine).
    let cfg = PathConfig::conflux(Some(8080));
    for _ in 0..20 {
        let p = choose_path(&relays, &w, None, &cfg, &mut rng).unwrap();
        assert_eq!(p.exit.id, relays[9].id);
    }
    // Without a port, reject-all exits are skipped.
    relays[8].policy = PortPolicy::reject_all();
    relays[9].policy = PortPolicy::reject_all();
    relays[10].policy = PortPolicy::reject_all();
    let err = choose_exit(&relays, &w, &PathConfig::default(), &[], &mut rng).unwrap_err();
    assert!(err.to_string().contains("allowing some port"), "{err}");
}

#[test]
fn bad_exit_and_middle_only() {
    let mut relays = network();
    relays[8].flags.insert(RelayFlags::BAD_EXIT);
    relays[9].flags.insert(RelayFlags::MIDDLE_ONLY);
    relays[0].flags.insert(RelayFlags::MIDDLE_ONLY);
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let mut middles = std::collections::HashSet::new();
    for _ in 0..500 {
        let p = choose_path(&relays, &w, None, &PathConfig::default(), &mut rng).unwrap();
        assert_eq!(p.exit.id, relays[10].id);
        assert_ne!(p.guard.id, relays[0].id);
        middles.insert(p.middle.id);
    }
    // MiddleOnly relays are still used as middles.
    assert!(middles.contains(&relays[0].id));
    assert!(middles.contains(&relays[9].id));
}

#[test]
fn running_valid_fast_stable() {
    let mut relays = network();
    for r in &mut relays[4..8] {
        r.flags.remove(RelayFlags::STABLE);
    }
    relays[4].flags.remove(RelayFlags::RUNNING);
    relays[5].flags.remove(RelayFlags::VALID);
    relays[6].flags.remove(RelayFlags::FAST);
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let cfg = PathConfig {
        need_stable: true,
        ..PathConfig::default()
    };
    for _ in 0..200 {
        let p = choose_path(&relays, &w, None, &cfg, &mut rng).unwrap();
        assert!(!(4..8).any(|i| p.middle.id == relays[i].id));
        let p = choose_path(&relays, &w, None, &PathConfig::default(), &mut rng).unwrap();
        assert!(!(4..7).any(|i| p.middle.id == relays[i].id));
    }
}

#[test]
fn family_and_subnet() {
    let w = BandwidthWeights::default();
    let mut rng = rng();
    // One guard, one middle, one exit; guard and exit share a /16.
    let mut relays = vec![
        relay(1, "Guard", 100, 1),
        relay(2, "", 100, 2),
        relay(3, "Exit", 100, 1),
    ];
    let err = choose_path(&relays, &w, None, &PathConfig::default(), &mut rng).unwrap_err();
    assert!(
        err.to_string().contains("in the /16 of a chosen relay"),
        "{err}"
    );
    let loopback = PathConfig {
        enforce_distinct_subnets: false,
        ..PathConfig::default()
    };
    choose_path(&relays, &w, None, &loopback, &mut rng).unwrap();

    // Families: one-sided is fine, mutual is not.
    relays[2].addr = SocketAddrV4::new(Ipv4Addr::new(10, 3, 0, 3), 9001);
    let (id0, id1) = (relays[0].id, relays[1].id);
    relays[0].family.push(id1);
    choose_path(&relays, &w, None, &PathConfig::default(), &mut rng).unwrap();
    relays[1].family.push(id0);
    let err = choose_path(&relays, &w, None, &PathConfig::default(), &mut rng).unwrap_err();
    assert!(
        err.to_string().contains("in the family of a chosen relay"),
        "{err}"
    );
    let no_family = PathConfig {
        enforce_family: false,
        ..PathConfig::default()
    };
    choose_path(&relays, &w, None, &no_family, &mut rng).unwrap();
}

#[test]
fn same_id_is_same_relay() {
    let w = BandwidthWeights::default();
    let mut rng = rng();
    // The only middle candidate has the guard's RSA id.
    let relays = vec![
        relay(1, "Guard", 100, 1),
        relay(1, "", 100, 2),
        relay(3, "Exit", 100, 3),
    ];
    let err = choose_path(&relays, &w, None, &PathConfig::default(), &mut rng).unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
}

#[test]
fn given_guard() {
    let relays = network();
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let guard = &relays[2];
    for _ in 0..100 {
        let p = choose_path(&relays, &w, Some(guard), &PathConfig::default(), &mut rng).unwrap();
        assert_eq!(p.guard.id, guard.id);
        assert_distinct(&p);
    }
    let mut down = relays[2].clone();
    down.flags.remove(RelayFlags::RUNNING);
    let err = choose_path(&relays, &w, Some(&down), &PathConfig::default(), &mut rng).unwrap_err();
    assert!(matches!(err, PathError::UnusableGuard { .. }));
    assert!(err.to_string().contains("not Running and Valid"), "{err}");
    let err = choose_path(
        &relays,
        &w,
        Some(&relays[5]),
        &PathConfig::default(),
        &mut rng,
    )
    .unwrap_err();
    assert!(err.to_string().contains("lacks the Guard flag"), "{err}");
}

#[test]
fn guard_conflicts_restrict_exit() {
    let mut relays = network();
    // Guard 1 is in a family with exits 9 and 10.
    for i in [8, 9] {
        let other = relays[i].id;
        relays[0].family.push(other);
        let id = relays[0].id;
        relays[i].family.push(id);
    }
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let guard = relays[0].clone();
    for _ in 0..50 {
        let p = choose_path(&relays, &w, Some(&guard), &PathConfig::default(), &mut rng).unwrap();
        assert_eq!(p.exit.id, relays[10].id);
    }
    let ids = conflicting_ids(&relays, &relays[8], &PathConfig::default());
    assert_eq!(ids, vec![relays[8].id, relays[0].id]);
}

#[test]
fn zero_weights_choose_uniformly() {
    let mut relays = network();
    for r in &mut relays {
        r.weight = 0;
    }
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..300 {
        seen.insert(
            choose_exit(&relays, &w, &PathConfig::default(), &[], &mut rng)
                .unwrap()
                .id,
        );
    }
    assert_eq!(seen.len(), 3);
    // With some weight present, zero-weight relays are never chosen.
    relays[8].weight = 5;
    for _ in 0..300 {
        let e = choose_exit(&relays, &w, &PathConfig::default(), &[], &mut rng).unwrap();
        assert_eq!(e.id, relays[8].id);
    }
}

#[test]
fn empty_relay_list() {
    let w = BandwidthWeights::default();
    let err = choose_path(&[], &w, None, &PathConfig::default(), &mut rng()).unwrap_err();
    assert!(err.to_string().contains("the relay list is empty"), "{err}");
}

/// The loopback test network of the project: 5 non-exit guards and 3
/// exits, all on 127.0.0.1.
fn loopback_network() -> Vec<Relay> {
    let mut v = network();
    v.retain(|r| !r.flags.contains(RelayFlags::EXIT));
    v.truncate(5);
    v[4].flags.insert(RelayFlags::GUARD);
    for n in 9..=11 {
        v.push(relay(n, "Exit V2Dir", 100, 1));
    }
    for r in &mut v {
        r.addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5000 + u16::from(r.id.as_bytes()[0]));
    }
    v
}

fn check_legs(legs: &[Path<'_>], n: usize) {
    assert_eq!(legs.len(), n);
    let exit = legs[0].exit.id;
    let mut used = Vec::new();
    for leg in legs {
        assert_eq!(leg.exit.id, exit);
        assert_distinct(leg);
        for r in [leg.guard, leg.middle] {
            assert!(!used.contains(&r.id), "{r} in two legs");
            used.push(r.id);
        }
    }
}

#[test]
fn conflux_legs_loopback() {
    let relays = loopback_network();
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let cfg = PathConfig {
        enforce_distinct_subnets: false,
        ..PathConfig::conflux(Some(80))
    };
    // Strict /16 enforcement makes it impossible on loopback.
    assert!(
        choose_conflux_legs(&relays, &w, 2, &PathConfig::conflux(None), &[], &mut rng).is_err()
    );
    for _ in 0..100 {
        let legs = choose_conflux_legs(&relays, &w, 2, &cfg, &[], &mut rng).unwrap();
        check_legs(&legs, 2);
    }
    // With guards from a guard set, in order of preference.
    let guards: Vec<&Relay> = vec![&relays[3], &relays[1], &relays[0]];
    for _ in 0..50 {
        let legs = choose_conflux_legs(&relays, &w, 2, &cfg, &guards, &mut rng).unwrap();
        check_legs(&legs, 2);
        assert_eq!(legs[0].guard.id, relays[3].id);
        assert_eq!(legs[1].guard.id, relays[1].id);
    }
    // Three legs still fit; the middles may be exits.
    let legs = choose_conflux_legs(&relays, &w, 3, &cfg, &[], &mut rng).unwrap();
    check_legs(&legs, 3);
    // Five legs need ten distinct guards and middles: impossible.
    let err = choose_conflux_legs(&relays, &w, 5, &cfg, &[], &mut rng).unwrap_err();
    assert!(
        matches!(
            err,
            PathError::NotEnoughLegs {
                legs: 5,
                tried: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        choose_conflux_legs(&relays, &w, 0, &cfg, &[], &mut rng),
        Err(PathError::NoLegs)
    ));
    // Only one usable guard given for two legs.
    let err = choose_conflux_legs(&relays, &w, 2, &cfg, &guards[..1], &mut rng).unwrap_err();
    assert!(err.to_string().contains("given guards"), "{err}");
}

fn restricted(entry: &[&str], middle: &[&str], exit: &[&str]) -> PathConfig {
    PathConfig {
        enforce_distinct_subnets: false,
        nodes: NodeRestrictions::parse(entry, middle, exit).unwrap(),
        ..PathConfig::conflux(Some(80))
    }
}

#[test]
fn node_lists_restrict_paths() {
    let relays = loopback_network();
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let exit10 = "0A".repeat(20);
    let cfg = restricted(&["r2"], &["R5"], &[exit10.as_str()]);
    for _ in 0..50 {
        let p = choose_path(&relays, &w, None, &cfg, &mut rng).unwrap();
        assert_eq!(
            [
                p.guard.nickname.as_str(),
                p.middle.nickname.as_str(),
                p.exit.nickname.as_str()
            ],
            ["r2", "r5", "r10"]
        );
    }
    // A guard from a guard set outside entry_nodes is refused.
    let err = choose_path(&relays, &w, Some(&relays[0]), &cfg, &mut rng).unwrap_err();
    assert!(err.to_string().contains("node list"), "{err}");
    let p = choose_path(&relays, &w, Some(&relays[1]), &cfg, &mut rng).unwrap();
    assert_eq!(p.middle.nickname, "r5");
    // Exits may serve as middles when listed.
    let cfg = restricted(&[], &["r11"], &["r9"]);
    let p = choose_path(&relays, &w, None, &cfg, &mut rng).unwrap();
    assert_eq!(
        (p.middle.nickname.as_str(), p.exit.nickname.as_str()),
        ("r11", "r9")
    );
    // The only listed middle is the guard: no path, and the error says why.
    let cfg = restricted(&["r2"], &["r2"], &[]);
    let err = choose_path(&relays, &w, None, &cfg, &mut rng).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            PathError::NoCandidate {
                position: Position::Middle,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("one of middle_nodes [r2]"), "{text}");
    assert!(text.contains("already used"), "{text}");
    assert!(text.contains("not in the configured node list"), "{text}");
    // A listed exit that is no exit.
    let cfg = restricted(&[], &[], &["r1"]);
    let text = choose_path(&relays, &w, None, &cfg, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(text.contains("exit_nodes [r1]"), "{text}");
    assert!(text.contains("1 without the Exit flag"), "{text}");
    // An unknown name matches nothing.
    let cfg = restricted(&["nosuchrelay"], &[], &[]);
    let text = choose_path(&relays, &w, None, &cfg, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(text.contains("entry_nodes [nosuchrelay]"), "{text}");
}

#[test]
fn node_lists_restrict_conflux_legs() {
    let relays = loopback_network();
    let w = BandwidthWeights::default();
    let mut rng = rng();
    let cfg = restricted(&["r1", "r2"], &["r3", "r4"], &["r9"]);
    for _ in 0..50 {
        let legs = choose_conflux_legs(&relays, &w, 2, &cfg, &[], &mut rng).unwrap();
        check_legs(&legs, 2);
        let mut guards: Vec<&str> = legs.iter().map(|l| l.guard.nickname.as_str()).collect();
        let mut middles: Vec<&str> = legs.iter().map(|l| l.middle.nickname.as_str()).collect();
        guards.sort_unstable();
        middles.sort_unstable();
        assert_eq!((guards, middles), (vec!["r1", "r2"], vec!["r3", "r4"]));
        assert_eq!(legs[0].exit.nickname, "r9");
    }
    // Guards given by the caller must be listed too.
    let err =
        choose_conflux_legs(&relays, &w, 2, &cfg, &[&relays[2], &relays[0]], &mut rng).unwrap_err();
    assert!(
        err.to_string().contains("not in the configured node list"),
        "{err}"
    );
    // Three legs: three listed guards and middles (an exit among them).
    let cfg = restricted(&["r1", "r2", "r3"], &["r4", "r5", "r10"], &["r9"]);
    let legs = choose_conflux_legs(&relays, &w, 3, &cfg, &[], &mut rng).unwrap();
    check_legs(&legs, 3);
    // Too few listed guards or middles for distinct legs.
    let cfg = restricted(&["r1", "r2"], &["r3", "r4"], &["r9"]);
    let text = choose_conflux_legs(&relays, &w, 3, &cfg, &[], &mut rng)
        .unwrap_err()
        .to_string();
    assert!(text.contains("entry_nodes [r1, r2]"), "{text}");
    let cfg = restricted(&["r1", "r2"], &["r3"], &["r9"]);
    let text = choose_conflux_legs(&relays, &w, 2, &cfg, &[], &mut rng)
        .unwrap_err()
        .to_string();
    assert!(text.contains("middle_nodes [r3]"), "{text}");
    assert!(text.contains("already used"), "{text}");
}
