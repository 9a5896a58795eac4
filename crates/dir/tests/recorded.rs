//! The directory bootstrap on documents recorded from a private C-tor
//! network (testdata/private-net): the whole code path that runs against the
//! public network, with no network access, plus refusals of documents
//! altered in the ways an attacker or a broken cache would alter them.

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests: helpers outside #[test] functions"
)]

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use braid_dir::documents::{parse_certs, parse_consensus, parse_microdescs};
use braid_dir::{
    Authority, DirBootstrap, DirConfig, DirEvent, DocError, DocKind, Fallback, PathConfig, Phase,
    RelayFlags, RelayId, choose_conflux_legs,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CONSENSUS: &str = include_str!("../testdata/private-net/consensus-microdesc");
const CERTS: &str = include_str!("../testdata/private-net/certs");
const MICRODESCS: &str = include_str!("../testdata/private-net/microdescs");
const AUTHORITIES: &str = include_str!("../testdata/private-net/authorities");

/// 2026-11-21 10:58:20 UTC, inside the recorded consensus' lifetime.
fn during() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_258_700)
}

fn ids() -> Vec<RelayId> {
    AUTHORITIES
        .lines()
        .map(|l| l.parse().expect("v3ident"))
        .collect()
}

fn config() -> DirConfig {
    DirConfig {
        authorities: ids()
            .into_iter()
            .enumerate()
            .map(|(i, v3ident)| Authority {
                nickname: format!("auth{i}"),
                v3ident,
                dir_addr: format!("127.0.0.1:{}", 26001 + 10 * i)
                    .parse()
                    .expect("addr"),
            })
            .collect(),
        fallbacks: Vec::<Fallback>::new(),
    }
}

/// Answer every request from the recorded documents until none is left.
fn run(b: &mut DirBootstrap, now: SystemTime) -> Vec<DirEvent> {
    let mut events = Vec::new();
    for _ in 0..100 {
        let Some(req) = b.poll_request(now) else {
            break;
        };
        let body = match req.kind {
            DocKind::Consensus => CONSENSUS,
            DocKind::AuthorityCert => CERTS,
            DocKind::Microdesc => MICRODESCS,
        };
        b.handle_response(req.id, Ok(body.to_owned()), now);
        events.extend(std::iter::from_fn(|| b.poll_event()));
    }
    events
}

#[test]
fn recorded_network_bootstraps_to_100_percent() {
    let mut b = DirBootstrap::new(&config(), 42);
    let events = run(&mut b, during());
    assert!(b.is_done(), "{:?}", b.progress());
    assert_eq!(b.progress().percent, 100);
    let percents: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            DirEvent::Progress(p) => Some(p.percent),
            _ => None,
        })
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    let stored: HashSet<DocKind> = events
        .iter()
        .filter_map(|e| match e {
            DirEvent::Store { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        stored.len(),
        3,
        "consensus, certs and microdescs are cached"
    );

    let dir = b.netdir().expect("netdir");
    let relays = dir.relays();
    assert_eq!(relays.len(), 11, "3 authorities + 8 relays");
    assert_eq!(dir.n_listed(), 11);
    assert!(
        relays
            .iter()
            .all(|r| r.ntor_key.is_some() && r.ed_id.is_some())
    );
    let exits: Vec<_> = relays
        .iter()
        .filter(|r| r.has_flags(RelayFlags::EXIT))
        .collect();
    assert_eq!(exits.len(), 3);
    assert!(exits.iter().all(|r| r.policy.allows_port(80)));
    assert!(
        relays
            .iter()
            .filter(|r| !r.has_flags(RelayFlags::EXIT))
            .all(|r| !r.policy.allows_some_port())
    );

    // Paths can be chosen from what was bootstrapped.
    let cfg = PathConfig {
        enforce_distinct_subnets: false,
        ..PathConfig::conflux(Some(80))
    };
    let mut rng = StdRng::seed_from_u64(1);
    let legs = choose_conflux_legs(&relays, dir.weights(), 2, &cfg, &[], &mut rng)
        .expect("two conflux legs");
    assert_eq!(legs.len(), 2);
    assert_eq!(legs[0].exit.id, legs[1].exit.id);
}

#[test]
fn cache_alone_restores_the_directory() {
    let mut b = DirBootstrap::new(&config(), 1);
    let now = during();
    b.handle_cached(DocKind::AuthorityCert, CERTS, now)
        .expect("certs");
    b.handle_cached(DocKind::Consensus, CONSENSUS, now)
        .expect("consensus");
    b.handle_cached(DocKind::Microdesc, MICRODESCS, now)
        .expect("mds");
    assert!(b.is_done());
    // Nothing to fetch until the refresh time, which lies inside the
    // consensus lifetime (dir-spec §5.1).
    assert_eq!(b.poll_request(now), None);
    let refresh = b.poll_timeout().expect("refresh time");
    let lt = b.netdir().expect("dir").lifetime();
    assert!(
        refresh > lt.fresh_until && refresh < lt.valid_until,
        "{refresh:?} {lt:?}"
    );
    let req = b.poll_request(refresh).expect("refresh request");
    assert_eq!(req.kind, DocKind::Consensus);
    // The same consensus again is a replay.
    b.handle_response(req.id, Ok(CONSENSUS.to_owned()), refresh);
    let events: Vec<DirEvent> = std::iter::from_fn(|| b.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        DirEvent::Rejected {
            error: DocError::Outdated,
            ..
        }
    )));
}

#[test]
fn microdescs_cached_before_the_consensus_are_matched_later() {
    let mut b = DirBootstrap::new(&config(), 1);
    let now = during();
    b.handle_cached(DocKind::Microdesc, MICRODESCS, now)
        .expect("held");
    b.handle_cached(DocKind::AuthorityCert, CERTS, now)
        .expect("certs");
    b.handle_cached(DocKind::Consensus, CONSENSUS, now)
        .expect("consensus");
    assert!(b.is_done());
}

#[test]
fn corrupt_cache_files_are_reported() {
    let mut b = DirBootstrap::new(&config(), 1);
    let now = during();
    let truncated = &CERTS[..CERTS.len() / 2];
    assert!(
        b.handle_cached(DocKind::AuthorityCert, truncated, now)
            .is_err()
    );
    let err = b
        .handle_cached(
            DocKind::Consensus,
            &CONSENSUS.replace("r relay", "r r3lay"),
            now,
        )
        .err();
    // Without certificates the consensus waits; with them it is checked.
    assert!(err.is_none());
    b.handle_cached(DocKind::AuthorityCert, CERTS, now)
        .expect("certs");
    let mut b2 = DirBootstrap::new(&config(), 1);
    b2.handle_cached(DocKind::AuthorityCert, CERTS, now)
        .expect("certs");
    let bad = CONSENSUS.replacen("Bandwidth=", "Bandwidth=9", 1);
    b2.handle_cached(DocKind::Consensus, &bad, now)
        .expect("parsed; the signature check reports through events");
    let events: Vec<DirEvent> = std::iter::from_fn(|| b2.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            DirEvent::Rejected {
                error: DocError::BadSignature { .. },
                ..
            }
        )),
        "{events:?}"
    );
    assert!(b2.netdir().is_none());
}

/// Remove the `n`th "directory-signature" block (0-based).
fn drop_signature(text: &str, n: usize) -> String {
    let starts: Vec<usize> = text
        .match_indices("directory-signature ")
        .map(|(i, _)| i)
        .collect();
    let start = starts[n];
    let end = starts.get(n + 1).copied().unwrap_or(text.len());
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn consensus_signed_by_too_few_authorities_is_refused() {
    let now = during();
    let ids = ids();
    // Two of three signatures still make a majority.
    let one_less = drop_signature(CONSENSUS, 2);
    let pending = parse_consensus(&one_less, &ids, now).expect("2 of 3");
    let (certs, bad) = parse_certs(CERTS, &ids, now);
    assert!(bad.is_empty(), "{bad:?}");
    let certs: Vec<_> = certs.into_iter().map(|c| c.cert).collect();
    pending
        .verify(&one_less, &certs, &ids)
        .expect("2 of 3 verify");
    // One of three does not.
    let two_less = drop_signature(&one_less, 1);
    let err = parse_consensus(&two_less, &ids, now).expect_err("1 of 3");
    assert_eq!(
        err,
        DocError::TooFewSignatures {
            found: 1,
            configured: 3,
            needed: 2
        }
    );
    assert!(err.to_string().contains("signed by 1 of the 3"), "{err}");
}

#[test]
fn consensus_of_other_authorities_is_refused() {
    let strangers: Vec<RelayId> = (1..=3u8).map(|i| RelayId::new([i; 20])).collect();
    let err = parse_consensus(CONSENSUS, &strangers, during()).expect_err("strangers");
    assert!(matches!(err, DocError::TooFewSignatures { found: 0, .. }));
}

#[test]
fn forged_signatures_are_refused() {
    let now = during();
    let ids = ids();
    let (certs, _) = parse_certs(CERTS, &ids, now);
    let certs: Vec<_> = certs.into_iter().map(|c| c.cert).collect();
    // Altering the signed body breaks every signature.
    let altered = CONSENSUS.replacen("Bandwidth=", "Bandwidth=9", 1);
    let pending = parse_consensus(&altered, &ids, now).expect("parses");
    let err = pending.verify(&altered, &certs, &ids).expect_err("forged");
    assert!(matches!(err, DocError::BadSignature { .. }), "{err}");
    // Without the certificates nothing can be checked.
    let pending = parse_consensus(CONSENSUS, &ids, now).expect("parses");
    let err = pending
        .verify(CONSENSUS, &certs[..1], &ids)
        .expect_err("one cert");
    assert!(
        matches!(err, DocError::MissingCerts { have: 1, needed: 2 }),
        "{err}"
    );
}

#[test]
fn expired_and_future_consensus_is_refused() {
    let ids = ids();
    let late = during() + Duration::from_secs(3600);
    let err = parse_consensus(CONSENSUS, &ids, late).expect_err("expired");
    assert!(matches!(
        err,
        DocError::NotTimely {
            kind: DocKind::Consensus,
            ..
        }
    ));
    assert!(err.to_string().contains("not valid now"), "{err}");
    let early = during() - Duration::from_secs(3600);
    let err = parse_consensus(CONSENSUS, &ids, early).expect_err("not yet valid");
    assert!(matches!(err, DocError::NotTimely { .. }));
}

#[test]
fn certificates_of_unconfigured_authorities_are_refused() {
    let ids = ids();
    let (good, bad) = parse_certs(CERTS, &ids[..2], during());
    assert_eq!(good.len(), 2);
    assert!(matches!(bad.as_slice(), [DocError::UntrustedCert { id }] if *id == ids[2]));
    // A certificate far past its expiry is refused too.
    let (good, bad) = parse_certs(CERTS, &ids, during() + Duration::from_secs(3 * 365 * 86400));
    assert!(good.is_empty());
    assert_eq!(bad.len(), 3);
    // A flipped byte inside a certificate's signature breaks it.
    let idx = CERTS.find("-----BEGIN SIGNATURE-----").expect("sig") + 40;
    let mut forged = CERTS.to_owned();
    let ch = if &CERTS[idx..=idx] == "A" { "B" } else { "A" };
    forged.replace_range(idx..=idx, ch);
    let (good, bad) = parse_certs(&forged, &ids, during());
    assert_eq!(good.len(), 2);
    assert_eq!(bad.len(), 1);
}

#[test]
fn tampered_microdescriptor_is_refused_and_stays_missing() {
    let mut b = DirBootstrap::new(&config(), 9);
    let now = during();
    b.handle_cached(DocKind::AuthorityCert, CERTS, now)
        .expect("certs");
    b.handle_cached(DocKind::Consensus, CONSENSUS, now)
        .expect("consensus");
    let wanted = b.netdir().expect("dir").wanted_digests();
    // Change one character of the first microdescriptor's ntor key.
    let at = MICRODESCS.find("ntor-onion-key ").expect("ntor") + 20;
    let mut tampered = MICRODESCS.to_owned();
    let ch = if &MICRODESCS[at..=at] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..=at, ch);
    let (good, bad) = parse_microdescs(&tampered, &wanted);
    assert_eq!(good.len(), 10);
    assert!(matches!(
        bad.as_slice(),
        [DocError::UnlistedMicrodesc { .. }]
    ));

    let req = b.poll_request(now).expect("md request");
    assert_eq!(req.kind, DocKind::Microdesc);
    b.handle_response(req.id, Ok(tampered), now);
    let dir = b.netdir().expect("dir");
    assert_eq!(dir.n_with_md(), 10);
    assert_eq!(dir.missing_digests().len(), 1);
    // Ten of eleven are enough paths to build circuits (C-tor's 60%
    // rule), but the missing one is still fetched.
    assert_eq!(b.progress().phase, Phase::Done);
    assert_eq!(b.progress().microdescs, (10, 11));
    // The missing one is asked for again, from the next source.
    let again = b.poll_request(now).expect("retry");
    assert_eq!(again.kind, DocKind::Microdesc);
    assert_ne!(again.source, req.source);
    b.handle_response(again.id, Ok(MICRODESCS.to_owned()), now);
    assert_eq!(b.progress().microdescs, (11, 11));
}

/// A clock behind the authorities' certificates: a certificate published
/// up to CLOCK_TOLERANCE (24 h) after `now` is taken, as a consensus is
/// (C-tor checks only expiry); one published further ahead is refused.
/// The fuzz target dir_authority_certs asserts the same bound (its CI run
/// found the target still asserting "published <= now").
#[test]
fn certificates_published_ahead_of_a_slow_clock() {
    use braid_dir::bootstrap::CLOCK_TOLERANCE;
    let ids = ids();
    let (good, _) = parse_certs(CERTS, &ids, during());
    let published = good
        .iter()
        .map(|c| c.cert.published())
        .max()
        .expect("certificates");
    let (good, bad) = parse_certs(
        CERTS,
        &ids,
        published - CLOCK_TOLERANCE + Duration::from_secs(60),
    );
    assert_eq!((good.len(), bad.len()), (3, 0), "{bad:?}");
    let (good, bad) = parse_certs(
        CERTS,
        &ids,
        published - CLOCK_TOLERANCE - Duration::from_secs(60),
    );
    assert!(good.len() < 3);
    assert!(
        bad.iter().all(|e| matches!(e, DocError::NotTimely { .. })),
        "{bad:?}"
    );
}
