//! The bootstrap's answers, one request at a time: what counts as a
//! failure, what backs off, what is retried at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, SystemTime};

use super::schedule::{MAX_DELAY, MIN_DELAY};
use super::test_net::{CERTS, CONSENSUS, during, forged_consensus, recorded_config};
use super::*;
use crate::authority::{Authority, DirConfig, public_authorities};
use crate::error::{DocError, DocKind};
use crate::relay::RelayId;

fn drain(b: &mut DirBootstrap) -> Vec<DirEvent> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn failures(events: &[DirEvent]) -> Vec<SystemTime> {
    events
        .iter()
        .filter_map(|e| match e {
            DirEvent::FetchFailed { retry_at, .. } => Some(*retry_at),
            _ => None,
        })
        .collect()
}

/// The first certificate of the recorded three.
fn first_cert() -> &'static str {
    let second = CERTS[1..].find("dir-key-certificate-version").unwrap() + 1;
    &CERTS[..second]
}

fn public_config() -> DirConfig {
    DirConfig {
        authorities: public_authorities(),
        fallbacks: Vec::new(),
    }
}

/// Without fallbacks, an authority's DirPort; the consensus is asked for
/// as C-tor asks (signed by our authorities, deflated) with the encodings
/// we take.
#[test]
fn starts_by_asking_an_authority_for_the_consensus() {
    let cfg = public_config();
    let mut b = DirBootstrap::new(&cfg, 1);
    let now = SystemTime::now();
    let req = b.poll_request(now).expect("a request");
    assert_eq!(req.kind, DocKind::Consensus);
    assert_eq!(
        req.path,
        "/tor/status-vote/current/consensus-microdesc/0232AF+23D15D+27102B+2F3DF9+49015F+70849B+E8A9C4+ED03BB+F533C8.z"
    );
    let text = String::from_utf8(req.request.clone()).unwrap();
    assert!(
        text.starts_with(&format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\n",
            req.path,
            req.source.addr()
        )),
        "{text}"
    );
    assert!(text.contains("\r\nAccept-Encoding: x-zstd, deflate, gzip, identity\r\n\r\n"));
    assert!(!text.contains("X-Or-Diff"), "no consensus to diff from");
    assert_eq!(req.source.kind(), SourceKind::Authority);
    assert!(
        cfg.authorities
            .iter()
            .any(|a| a.dir_addr == req.source.addr())
    );
    // Only one consensus request at a time, and nothing to wake up for.
    assert_eq!(b.poll_request(now), None);
    assert_eq!(b.poll_timeout(), None);
    assert_eq!(b.progress().phase, Phase::Consensus);
}

#[test]
fn failed_fetch_backs_off_then_asks_another_source() {
    let cfg = public_config();
    let mut b = DirBootstrap::new(&cfg, 7);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let first = b.poll_request(now).expect("request");
    b.handle_response(first.id, Err("connection refused".into()), now);
    let events = drain(&mut b);
    assert_eq!(failures(&events), vec![now + MIN_DELAY]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DirEvent::FetchFailed { source, .. } if *source == first.source))
    );
    // Not at once: the consensus schedule waits its first delay.
    assert_eq!(b.poll_request(now), None);
    assert_eq!(b.poll_timeout(), Some(now + MIN_DELAY));
    let second = b.poll_request(now + MIN_DELAY).expect("retry");
    assert_eq!(second.kind, DocKind::Consensus);
    assert_ne!(second.source, first.source);
}

#[test]
fn backoff_grows_to_the_cap_whatever_the_source() {
    let cfg = DirConfig {
        authorities: vec![Authority {
            nickname: "only".into(),
            v3ident: RelayId::new([1; 20]),
            dir_addr: "127.0.0.1:1".parse().expect("addr"),
        }],
        fallbacks: Vec::new(),
    };
    let mut b = DirBootstrap::new(&cfg, 3);
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut delays = Vec::new();
    for _ in 0..40 {
        let req = b.poll_request(now).expect("due");
        b.handle_response(req.id, Err("refused".into()), now);
        assert_eq!(b.poll_request(now), None, "not due again at once");
        let t = b.poll_timeout().expect("retry time");
        delays.push(t.duration_since(now).expect("future"));
        now = t;
        b.handle_timeout(now);
    }
    assert_eq!(delays[0], MIN_DELAY);
    assert!(delays.iter().all(|d| *d >= MIN_DELAY && *d <= MAX_DELAY));
    assert!(delays.contains(&MAX_DELAY), "{delays:?}");
    assert_eq!(b.schedule(DocKind::Consensus).failures(), 40);
}

#[test]
fn garbage_consensus_is_a_failure_of_source_and_schedule() {
    let cfg = public_config();
    let mut b = DirBootstrap::new(&cfg, 5);
    let now = SystemTime::now();
    let req = b.poll_request(now).expect("request");
    b.handle_response(req.id, Ok("hello".into()), now);
    let events = drain(&mut b);
    assert!(events.iter().any(|e| matches!(
        e,
        DirEvent::Rejected {
            error: DocError::Malformed { .. },
            ..
        }
    )));
    assert_eq!(failures(&events).len(), 1);
    assert!(!events.iter().any(|e| matches!(e, DirEvent::Store { .. })));
    assert!(b.netdir().is_none());
    assert_eq!(b.poll_request(now), None);
}

/// Issue 17's hang: a consensus that parses but whose signatures fail
/// counted as a success, so the next source was asked at once, for ever.
#[test]
fn bad_signature_is_a_failure_not_a_success() {
    let mut b = DirBootstrap::new(&recorded_config(), 11);
    let now = during();
    b.handle_cached(DocKind::AuthorityCert, CERTS, now).unwrap();
    let req = b.poll_request(now).expect("request");
    b.handle_response(req.id, Ok(forged_consensus()), now);
    let events = drain(&mut b);
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
    assert_eq!(failures(&events), vec![now + MIN_DELAY]);
    assert_eq!(b.schedule(DocKind::Consensus).failures(), 1);
    assert_eq!(b.poll_request(now), None, "no request at the same instant");
    let again = b.poll_request(now + MIN_DELAY).expect("after the delay");
    assert_ne!(again.source, req.source, "the failed source is avoided");

    // Answered at once, every time, at one instant: one request (there
    // were more than 1,000).
    let mut b = DirBootstrap::new(&recorded_config(), 16);
    b.handle_cached(DocKind::AuthorityCert, CERTS, now).unwrap();
    let mut at_once = 0;
    while let Some(req) = b.poll_request(now) {
        at_once += 1;
        assert!(at_once < 2000, "runaway");
        b.handle_response(req.id, Ok(forged_consensus()), now);
    }
    assert_eq!(at_once, 1);
}

/// The same when the signatures are checked only once the certificates
/// arrive: the consensus' source fails, not the certificates'.
#[test]
fn bad_signature_found_after_certificates_fails_the_consensus_source() {
    let mut b = DirBootstrap::new(&recorded_config(), 12);
    let now = during();
    let req = b.poll_request(now).expect("consensus");
    b.handle_response(req.id, Ok(forged_consensus()), now);
    assert_eq!(b.progress().phase, Phase::Certificates);
    let certs = b.poll_request(now).expect("certificates");
    assert_eq!(certs.kind, DocKind::AuthorityCert);
    drain(&mut b);
    b.handle_response(certs.id, Ok(CERTS.to_owned()), now);
    let events = drain(&mut b);
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DirEvent::FetchFailed { source, .. } => Some(source.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![req.source], "{events:?}");
    assert_eq!(b.schedule(DocKind::Consensus).failures(), 1);
    assert_eq!(b.schedule(DocKind::AuthorityCert).failures(), 0);
    assert_eq!(b.poll_request(now), None);
    assert!(b.poll_timeout().is_some_and(|t| t > now));
}

/// A certificate answer without any certificate asked for is a failure:
/// asking again at once would loop.
#[test]
fn certificates_not_asked_for_are_a_failure() {
    let mut b = DirBootstrap::new(&recorded_config(), 13);
    let now = during();
    b.handle_cached(DocKind::AuthorityCert, first_cert(), now)
        .unwrap();
    let req = b.poll_request(now).expect("consensus");
    b.handle_response(req.id, Ok(CONSENSUS.to_owned()), now);
    let certs = b.poll_request(now).expect("certificates");
    assert_eq!(certs.path.matches('+').count(), 1, "two missing");
    b.handle_response(certs.id, Ok(first_cert().to_owned()), now);
    assert_eq!(b.schedule(DocKind::AuthorityCert).failures(), 1);
    assert_eq!(b.poll_request(now), None);
    let again = b.poll_request(now + MIN_DELAY).expect("retry");
    assert_eq!(again.kind, DocKind::AuthorityCert);
    b.handle_response(again.id, Ok(CERTS.to_owned()), now + MIN_DELAY);
    assert!(b.netdir().is_some());
    assert_eq!(b.schedule(DocKind::AuthorityCert).failures(), 0);
    assert_eq!(b.schedule(DocKind::Consensus).failures(), 0);
}

/// An empty or useless microdescriptor answer backs off too; each digest
/// is asked for at most MD_ATTEMPTS times.
#[test]
fn useless_microdescriptor_answers_back_off_and_end() {
    let mut b = DirBootstrap::new(&recorded_config(), 14);
    let mut now = during();
    b.handle_cached(DocKind::AuthorityCert, CERTS, now).unwrap();
    b.handle_cached(DocKind::Consensus, CONSENSUS, now).unwrap();
    let mut times = Vec::new();
    while !b.is_done() {
        if let Some(req) = b.poll_request(now) {
            assert_eq!(req.kind, DocKind::Microdesc);
            times.push(now);
            b.handle_response(req.id, Ok(String::new()), now);
            continue;
        }
        let t = b.poll_timeout().expect("a retry time");
        assert!(t > now);
        now = t;
    }
    assert_eq!(times.len(), MD_ATTEMPTS as usize);
    assert!(
        times
            .windows(2)
            .all(|w| w[1].duration_since(w[0]).unwrap() >= MIN_DELAY)
    );
    assert_eq!(b.schedule(DocKind::Microdesc).failures(), MD_ATTEMPTS);
    let dir = b.netdir().unwrap();
    assert_eq!(dir.n_with_md(), 0, "given up until the next consensus");
}

/// A consensus whose certificates never come is dropped after C-tor's 20
/// minutes, and another consensus is fetched.
#[test]
fn consensus_waiting_for_certificates_gives_up_after_20_minutes() {
    let mut b = DirBootstrap::new(&recorded_config(), 15);
    let start = during();
    let mut now = start;
    let req = b.poll_request(now).expect("consensus");
    b.handle_response(req.id, Ok(CONSENSUS.to_owned()), now);
    let mut cert_requests = 0;
    let refetch = loop {
        if let Some(r) = b.poll_request(now) {
            if r.kind == DocKind::Consensus {
                break now;
            }
            cert_requests += 1;
            b.handle_response(r.id, Err("404 Not found".into()), now);
            continue;
        }
        now = b.poll_timeout().expect("a deadline");
        b.handle_timeout(now);
    };
    let waited = refetch.duration_since(start).unwrap();
    assert!(
        waited >= CERT_WAIT && waited < CERT_WAIT + MAX_DELAY,
        "{waited:?}"
    );
    // Backed off meanwhile (1 s, then up to three times the last): a few
    // dozen certificate requests in 20 minutes, not one a second.
    assert!((10..=60).contains(&cert_requests), "{cert_requests}");
}

#[test]
fn progress_line_reads_like_tor() {
    let p = Progress {
        percent: 45,
        phase: Phase::Microdescriptors,
        microdescs: (3, 10),
    };
    assert_eq!(
        p.to_string(),
        "Bootstrapped 45% (loading microdescriptors): 3 of 10 microdescriptors"
    );
}
