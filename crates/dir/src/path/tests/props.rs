//! Property tests of [`super::super`]: random networks and configurations, every
//! chosen path and Conflux leg set checked against the rules of path-spec §2.2.

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
    let f =
        |flag: RelayFlags, p: f64| weighted(p).prop_map(move |on| if on { flag.bits() } else { 0 });
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
            |(subnets, family, stable, fast, port, conflux, [entry, middle, exit])| PathConfig {
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
