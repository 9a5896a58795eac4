//! Tests of [`super`]: path and Conflux leg selection, its restrictions and bandwidth weighting.

use super::*;
use crate::error::PathError;
use crate::relay::PortPolicy;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::{Ipv4Addr, SocketAddrV4};

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

/// Pearson's chi-square statistic of observed counts against expected
/// probabilities.
fn chi_square(observed: &[u64], expected: &[f64], n: u64) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn bandwidth_weighting_follows_weights() {
    // (flags, bandwidth)
    let spec: [(&str, u64); 12] = [
        ("Guard", 100),
        ("Guard", 200),
        ("Guard", 300),
        ("Guard", 400),
        ("", 50),
        ("", 150),
        ("", 500),
        ("Exit", 300),
        ("Exit", 600),
        ("Exit", 900),
        ("Guard Exit", 250),
        ("Guard Exit", 700),
    ];
    let relays: Vec<Relay> = spec
        .iter()
        .zip(1_u8..)
        .map(|((f, bw), n)| relay(n, f, *bw, n))
        .collect();
    let w =
        BandwidthWeights::parse("Wmg=4000 Wmm=10000 Wme=2000 Wmd=1000 Wee=8000 Wed=3000").unwrap();
    let class_weight_middle = |f: &str| match f {
        "Guard" => 4000.0,
        "" => 10000.0,
        "Exit" => 2000.0,
        _ => 1000.0,
    };
    let class_weight_exit = |f: &str| match f {
        "Exit" => 8000.0,
        "Guard Exit" => 3000.0,
        _ => 0.0,
    };
    let mut rng = StdRng::seed_from_u64(20_261_121);
    let cfg = PathConfig::default();
    const N: u64 = 100_000;
    for (position, weight_of) in [
        (
            Position::Middle,
            &class_weight_middle as &dyn Fn(&str) -> f64,
        ),
        (Position::Exit, &class_weight_exit),
    ] {
        let raw: Vec<f64> = spec
            .iter()
            .map(|(f, bw)| *bw as f64 * weight_of(f))
            .collect();
        let total: f64 = raw.iter().sum();
        let mut counts = vec![0_u64; relays.len()];
        for _ in 0..N {
            let r = match position {
                Position::Middle => choose_middle(&relays, &w, &cfg, &[], &mut rng),
                _ => choose_exit(&relays, &w, &cfg, &[], &mut rng),
            }
            .unwrap();
            counts[usize::from(r.id.as_bytes()[0] - 1)] += 1;
        }
        // Relays with zero expected weight must never appear; leave them
        // out of the statistic.
        let (obs, exp): (Vec<u64>, Vec<f64>) = counts
            .iter()
            .zip(&raw)
            .filter_map(|(&c, &r)| {
                if r == 0.0 {
                    assert_eq!(c, 0);
                    None
                } else {
                    Some((c, r / total))
                }
            })
            .unzip();
        let chi = chi_square(&obs, &exp, N);
        // Degrees of freedom: 11 (middle) and 4 (exit); the 0.1% critical
        // values are 31.3 and 18.5. Be generous.
        let limit = if position == Position::Middle {
            45.0
        } else {
            30.0
        };
        assert!(
            chi < limit,
            "{position}: chi-square {chi} (counts {counts:?})"
        );
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Spec {
        id: u8,
        ed: Option<u8>,
        flags: u16,
        running_valid: bool,
        weight: u64,
        net: u8,
        family: Vec<usize>,
        policy: usize,
        protos: usize,
    }

    const POLICIES: [&str; 5] = [
        "accept 80,443",
        "reject 80",
        "reject 1-65535",
        "accept 1-65535",
        "accept 1000-2000",
    ];
    const PROTOS: [&str; 4] = [
        "",
        "Conflux=1 FlowCtrl=2",
        "Conflux=1",
        "FlowCtrl=1-2 Link=4",
    ];

    /// A flag set in which each flag appears with a realistic frequency.
    fn flags() -> impl Strategy<Value = u16> {
        use proptest::bool::weighted;
        let f = |flag: RelayFlags, p: f64| {
            weighted(p).prop_map(move |on| if on { flag.bits() } else { 0 })
        };
        (
            f(RelayFlags::FAST, 0.85),
            f(RelayFlags::STABLE, 0.75),
            f(RelayFlags::GUARD, 0.4),
            f(RelayFlags::EXIT, 0.4),
            f(RelayFlags::BAD_EXIT, 0.1),
            f(RelayFlags::MIDDLE_ONLY, 0.1),
            f(RelayFlags::V2DIR, 0.9),
        )
            .prop_map(|(a, b, c, d, e, g, h)| a | b | c | d | e | g | h)
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0_u8..40,
            proptest::option::weighted(0.2, 0_u8..5),
            flags(),
            proptest::bool::weighted(0.9),
            0_u64..1000,
            0_u8..6,
            proptest::collection::vec(0_usize..30, 0..4),
            prop::sample::select(vec![0_usize, 0, 1, 2, 3, 3, 3, 4]),
            prop::sample::select(vec![0_usize, 1, 1, 1, 2, 3]),
        )
            .prop_map(
                |(id, ed, flags, running_valid, weight, net, family, policy, protos)| Spec {
                    id,
                    ed,
                    flags,
                    running_valid,
                    weight,
                    net,
                    family,
                    policy,
                    protos,
                },
            )
    }

    fn build(specs: &[Spec]) -> Vec<Relay> {
        let mut relays: Vec<Relay> = specs
            .iter()
            .map(|s| {
                let mut r = Relay::new(
                    RelayId::new([s.id; 20]),
                    format!("r{}", s.id),
                    SocketAddrV4::new(Ipv4Addr::new(10, s.net, s.id, 1), 9001),
                );
                r.ed_id = s.ed.map(|e| crate::relay::Ed25519Id::new([e; 32]));
                r.flags = RelayFlags::from_bits_truncate(s.flags);
                if s.running_valid {
                    r.flags.insert(RelayFlags::RUNNING | RelayFlags::VALID);
                }
                r.weight = s.weight;
                r.policy = POLICIES[s.policy].parse().unwrap();
                r.protocols = PROTOS[s.protos].parse().unwrap();
                r
            })
            .collect();
        for (i, s) in specs.iter().enumerate() {
            let fam: Vec<RelayId> = s
                .family
                .iter()
                .filter_map(|j| relays.get(*j).map(|r| r.id))
                .collect();
            relays[i].family = fam;
        }
        relays
    }

    fn config() -> impl Strategy<Value = PathConfig> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(prop::sample::select(vec![22_u16, 80, 443, 1500])),
            any::<bool>(),
            [node_list(), node_list(), node_list()],
        )
            .prop_map(
                |(subnets, family, stable, fast, port, conflux, [entry, middle, exit])| {
                    PathConfig {
                        enforce_distinct_subnets: subnets,
                        enforce_family: family,
                        need_stable: stable,
                        need_fast: fast,
                        exit_port: port,
                        exit_protocols: conflux.then(conflux_exit_protocols),
                        nodes: NodeRestrictions {
                            entry,
                            middle,
                            exit,
                        },
                    }
                },
            )
    }

    /// Mostly no list; otherwise a few relays by id or nickname.
    fn node_list() -> impl Strategy<Value = Vec<crate::restrict::NodeSpec>> {
        use crate::restrict::NodeSpec;
        proptest::option::weighted(
            0.3,
            proptest::collection::vec((0_u8..40, any::<bool>()), 1..8),
        )
        .prop_map(|list| {
            list.unwrap_or_default()
                .into_iter()
                .map(|(id, by_id)| {
                    if by_id {
                        NodeSpec::Id(RelayId::new([id; 20]))
                    } else {
                        NodeSpec::Nickname(format!("R{id}"))
                    }
                })
                .collect()
        })
    }

    /// Check every rule independently of the implementation.
    fn check(p: &Path<'_>, cfg: &PathConfig) -> Result<(), TestCaseError> {
        let hops = p.hops();
        for r in hops {
            prop_assert!(r.flags.contains(RelayFlags::RUNNING | RelayFlags::VALID));
            prop_assert!(!cfg.need_fast || r.flags.contains(RelayFlags::FAST));
            prop_assert!(!cfg.need_stable || r.flags.contains(RelayFlags::STABLE));
        }
        prop_assert!(p.guard.flags.contains(RelayFlags::GUARD));
        prop_assert!(!p.guard.flags.contains(RelayFlags::MIDDLE_ONLY));
        for (list, r) in [
            (&cfg.nodes.entry, p.guard),
            (&cfg.nodes.middle, p.middle),
            (&cfg.nodes.exit, p.exit),
        ] {
            prop_assert!(
                list.is_empty() || list.iter().any(|s| s.matches(r)),
                "{} not listed",
                r
            );
        }
        let e = p.exit;
        prop_assert!(e.flags.contains(RelayFlags::EXIT));
        prop_assert!(!e.flags.contains(RelayFlags::BAD_EXIT));
        prop_assert!(!e.flags.contains(RelayFlags::MIDDLE_ONLY));
        match cfg.exit_port {
            Some(port) => prop_assert!(e.policy.allows_port(port)),
            None => prop_assert!(e.policy.allows_some_port()),
        }
        if let Some(need) = &cfg.exit_protocols {
            prop_assert!(e.supports_all(need));
        }
        for (i, a) in hops.iter().enumerate() {
            for b in &hops[i + 1..] {
                prop_assert!(a.id != b.id, "same RSA id twice");
                prop_assert!(a.ed_id.is_none() || a.ed_id != b.ed_id, "same ed id twice");
                if cfg.enforce_family {
                    let mutual = a.family.contains(&b.id) && b.family.contains(&a.id);
                    prop_assert!(!mutual, "family {a} {b}");
                }
                if cfg.enforce_distinct_subnets {
                    prop_assert!(a.addr.ip().octets()[..2] != b.addr.ip().octets()[..2]);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn paths_obey_restrictions(
            specs in proptest::collection::vec(spec(), 0..30),
            cfg in config(),
            guard_idx in proptest::option::of(0_usize..30),
            seed in any::<u64>(),
        ) {
            let relays = build(&specs);
            let w = BandwidthWeights::default();
            let mut rng = StdRng::seed_from_u64(seed);
            let guard = guard_idx.and_then(|i| relays.get(i));
            for _ in 0..5 {
                match choose_path(&relays, &w, guard, &cfg, &mut rng) {
                    Ok(p) => {
                        check(&p, &cfg)?;
                        if let Some(g) = guard {
                            prop_assert_eq!(p.guard.id, g.id);
                        }
                    }
                    Err(PathError::NoCandidate { position: Position::Exit, .. }) if guard.is_none() => {
                        // Then no relay at all can be an exit.
                        let any_exit = relays.iter().any(|r| suitable(r, Position::Exit, &cfg).is_ok());
                        prop_assert!(!any_exit);
                    }
                    Err(e) => {
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
            }
        }

        #[test]
        fn conflux_legs_obey_restrictions(
            specs in proptest::collection::vec(spec(), 0..30),
            cfg in config(),
            n_legs in prop::sample::select(vec![0_usize, 1, 2, 2, 2, 3]),
            guard_idx in proptest::option::weighted(0.5, proptest::collection::vec(0_usize..30, 1..8)),
            seed in any::<u64>(),
        ) {
            let relays = build(&specs);
            let guards: Vec<&Relay> = guard_idx.iter().flatten().filter_map(|i| relays.get(*i)).collect();
            let w = BandwidthWeights::parse("Wmg=3000 Wme=0 Wee=10000 Wgg=7000").unwrap();
            let mut rng = StdRng::seed_from_u64(seed);
            match choose_conflux_legs(&relays, &w, n_legs, &cfg, &guards, &mut rng) {
                Ok(legs) => {
                    prop_assert_eq!(legs.len(), n_legs);
                    let mut used: Vec<&Relay> = Vec::new();
                    for leg in &legs {
                        check(leg, &cfg)?;
                        prop_assert!(std::ptr::eq(leg.exit, legs[0].exit));
                        if !guards.is_empty() {
                            prop_assert!(guards.iter().any(|g| std::ptr::eq(*g, leg.guard)));
                        }
                        for r in [leg.guard, leg.middle] {
                            prop_assert!(!used.iter().any(|u| u.same_relay(r)), "{} reused", r);
                            used.push(r);
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(n_legs > 0 || e == PathError::NoLegs);
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}
