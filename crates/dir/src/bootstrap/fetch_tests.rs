//! The bootstrap as a client of the public network's kind: fallbacks
//! first over BEGIN_DIR, directory caches among guards once a consensus is
//! known, authorities last; compressed answers and the bomb cap; 304 and
//! consensus diffs, with the full consensus after a diff that fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::io::Write as _;
use std::net::SocketAddrV4;
use std::time::{Duration, SystemTime};

use super::test_net::{CERTS, CONSENSUS, TestNet, during, recorded_config};
use super::*;
use crate::authority::{DirConfig, Fallback};
use crate::error::{DocError, DocKind};
use crate::fetch::Encoding;
use crate::fetch::diff::{DIFF_HEADER, digest_as_signed};
use crate::relay::{RelayFlags, RelayId};

fn drain(b: &mut DirBootstrap) -> Vec<DirEvent> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn fallback(i: u8) -> Fallback {
    Fallback {
        id: RelayId::new([i; 20]),
        or_addr: SocketAddrV4::new([127, 0, 0, 1].into(), 6000 + u16::from(i)),
        or_addr_v6: None,
        nickname: format!("fallback{i}"),
        ed_id: None,
    }
}

fn with_fallbacks(mut cfg: DirConfig, n: u8) -> DirConfig {
    cfg.fallbacks = (1..=n).map(fallback).collect();
    cfg
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An HTTP answer with `body` sent as `encoding`.
fn http(body: &str, encoding: Encoding) -> Vec<u8> {
    let bytes = match encoding {
        Encoding::Identity => body.as_bytes().to_vec(),
        Encoding::Deflate => deflate(body.as_bytes()),
        Encoding::Zstd => ruzstd::encoding::compress_to_vec(
            body.as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        ),
        Encoding::Gzip => panic!("not used"),
    };
    let mut out = format!("HTTP/1.0 200 OK\r\nContent-Encoding: {encoding}\r\n\r\n").into_bytes();
    out.extend(bytes);
    out
}

fn header(req: &DirRequest, name: &str) -> Option<String> {
    String::from_utf8(req.request.clone())
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
}

/// Fallbacks over BEGIN_DIR until every one has failed; only then an
/// authority's DirPort; after a consensus, directory caches among the
/// guards; and when they fail too, fallbacks before authorities again.
#[test]
fn fallbacks_then_caches_and_authorities_only_when_nothing_else_answers() {
    let cfg = with_fallbacks(recorded_config(), 3);
    let mut b = DirBootstrap::new(&cfg, 5);
    let mut now = during();
    let mut asked = Vec::new();
    for _ in 0..3 {
        let req = b.poll_request(now).expect("a request");
        assert_eq!(req.source.kind(), SourceKind::Fallback, "{}", req.source);
        assert!(req.source.is_begin_dir());
        asked.push(req.source.nickname().to_owned());
        b.handle_http(req.id, Err("channel: identity does not match".into()), now);
        now = b.poll_timeout().unwrap();
    }
    asked.sort();
    assert_eq!(asked, ["fallback1", "fallback2", "fallback3"]);
    let req = b.poll_request(now).unwrap();
    assert_eq!(req.source.kind(), SourceKind::Authority);
    assert!(!req.source.is_begin_dir());

    // A consensus: the caches are guards with V2Dir from it.
    b.handle_cached(DocKind::AuthorityCert, CERTS, now).unwrap();
    b.handle_http(req.id, Ok(http(CONSENSUS, Encoding::Deflate)), now);
    let caches = b.caches();
    assert_eq!(caches.len(), sources::DIR_CACHES);
    let listed = b.netdir().unwrap().listed();
    for c in &caches {
        assert_eq!(c.kind(), SourceKind::Cache);
        let DirSource::BeginDir { target, .. } = c else {
            panic!("{c}")
        };
        let r = listed.iter().find(|r| r.id == target.id).unwrap();
        assert!(r.has_flags(RelayFlags::GUARD | RelayFlags::V2DIR), "{c}");
        // No microdescriptor yet: no onion key, so CREATE_FAST.
        assert_eq!(target.ntor_key, None);
    }
    let md = b.poll_request(now).expect("microdescriptors");
    assert_eq!(md.kind, DocKind::Microdesc);
    assert_eq!(md.source.kind(), SourceKind::Cache);

    // Started with a consensus at hand: when every cache fails, the
    // fallbacks come before the authorities.
    let mut b = DirBootstrap::new(&cfg, 6);
    b.handle_cached(DocKind::AuthorityCert, CERTS, now).unwrap();
    b.handle_cached(DocKind::Consensus, CONSENSUS, now).unwrap();
    let mut kinds = Vec::new();
    let mut req = b.poll_request(now).unwrap();
    for _ in 0..4 {
        kinds.push(req.source.kind());
        b.handle_http(req.id, Err("circuit destroyed".into()), now);
        now = b.poll_timeout().unwrap();
        req = b.poll_request(now).unwrap();
    }
    kinds.push(req.source.kind());
    assert_eq!(
        kinds,
        [
            SourceKind::Cache,
            SourceKind::Cache,
            SourceKind::Cache,
            SourceKind::Fallback,
            SourceKind::Fallback
        ]
    );
}

/// The client's own guards, when it names them, are the caches.
#[test]
fn the_clients_guards_are_its_directory_caches() {
    let mut b = DirBootstrap::new(&with_fallbacks(recorded_config(), 2), 1);
    let now = during();
    b.handle_cached(DocKind::AuthorityCert, CERTS, now).unwrap();
    b.handle_cached(DocKind::Consensus, CONSENSUS, now).unwrap();
    let guard = b
        .netdir()
        .unwrap()
        .listed()
        .into_iter()
        .find(sources::is_dir_guard)
        .unwrap();
    b.set_dir_guards(vec![RelayId::new([7; 20]), guard.id]);
    let req = b.poll_request(now).unwrap();
    assert_eq!(req.source.nickname(), guard.nickname);
    assert_eq!(b.caches().len(), 1);
}

/// All eleven microdescriptors in one request over BEGIN_DIR (C-tor asks
/// at least 32 at a time), deflated, and a zstd answer taken.
#[test]
fn microdescriptors_in_one_begin_dir_batch_compressed() {
    let mut b = DirBootstrap::new(&with_fallbacks(recorded_config(), 2), 3);
    let now = during();
    b.handle_cached(DocKind::AuthorityCert, CERTS, now).unwrap();
    b.handle_cached(DocKind::Consensus, CONSENSUS, now).unwrap();
    drain(&mut b);
    let req = b.poll_request(now).unwrap();
    assert!(req.source.is_begin_dir());
    assert!(req.path.starts_with("/tor/micro/d/") && req.path.ends_with(".z"));
    assert_eq!(req.path.matches('-').count() + 1, 11);
    assert_eq!(b.poll_request(now), None, "nothing left to ask");
    let body = super::test_net::MICRODESCS;
    b.handle_http(req.id, Ok(http(body, Encoding::Zstd)), now);
    let events = drain(&mut b);
    assert!(events.iter().any(|e| matches!(
        e,
        DirEvent::Fetched { encoding: Encoding::Zstd, body_bytes, wire_bytes, .. }
            if *body_bytes == body.len() && wire_bytes < body_bytes
    )));
    assert_eq!(b.progress().microdescs, (11, 11));
    assert!(b.is_done());
}

/// A compression bomb is a clear failure of its source, and the next
/// source is asked.
#[test]
fn a_compression_bomb_fails_its_source_and_the_next_is_asked() {
    let mut b = DirBootstrap::new(&with_fallbacks(recorded_config(), 2), 4);
    let now = during();
    let req = b.poll_request(now).unwrap();
    let zeros = "\0".repeat(32 << 20);
    b.handle_http(req.id, Ok(http(&zeros, Encoding::Deflate)), now);
    let events = drain(&mut b);
    let failed = events
        .iter()
        .find_map(|e| match e {
            DirEvent::FetchFailed { source, error, .. } => Some((source, error)),
            _ => None,
        })
        .expect("a failure");
    assert_eq!(*failed.0, req.source);
    assert!(failed.1.contains("compression bomb"), "{}", failed.1);
    let next = b.poll_request(b.poll_timeout().unwrap()).unwrap();
    assert_ne!(next.source, req.source);
}

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// A bootstrap holding the test network's consensus valid from `t0`, at
/// its refresh time, with the consensus request it makes then.
fn holding(t0: u64) -> (DirBootstrap, DirRequest, String) {
    let net = TestNet::get();
    let mut b = DirBootstrap::new(&with_fallbacks(net.config(), 2), 8);
    let base = net.hourly(at(t0));
    b.handle_cached(DocKind::AuthorityCert, net.certs(), at(t0))
        .unwrap();
    b.handle_cached(DocKind::Consensus, &base, at(t0)).unwrap();
    let refresh = b.refresh_at().unwrap();
    let req = b.poll_request(refresh).unwrap();
    assert_eq!(req.kind, DocKind::Consensus);
    (b, req, base)
}

/// A held consensus is named by its digest; a diff from it is applied,
/// checked and adopted, and the full consensus goes to the cache.
#[test]
fn a_consensus_diff_is_applied_and_adopted() {
    let t0 = 1_800_000_000;
    let (mut b, req, base) = holding(t0);
    let digest = hex::encode_upper(digest_as_signed(&base).unwrap());
    assert_eq!(header(&req, DIFF_HEADER), Some(digest));
    assert!(header(&req, "If-Modified-Since").is_some());
    let next = TestNet::get().hourly(at(t0 + 3600));
    let diff =
        tor_consdiff::gen_cons_diff(&base, &next, tor_consdiff::DiffSizeStrictness::None).unwrap();
    assert!(
        diff.len() < next.len() / 4,
        "{} of {}",
        diff.len(),
        next.len()
    );
    let now = b.refresh_at().unwrap();
    drain(&mut b);
    b.handle_http(req.id, Ok(http(&diff, Encoding::Deflate)), now);
    let events = drain(&mut b);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DirEvent::Fetched { diff: true, .. }))
    );
    assert!(
        events.iter().any(
            |e| matches!(e, DirEvent::Store { kind: DocKind::Consensus, text } if *text == next)
        )
    );
    assert_eq!(b.netdir().unwrap().lifetime().valid_after, at(t0 + 3600));
    assert_eq!(b.schedule(DocKind::Consensus).failures(), 0);
}

/// A truncated or malformed diff is refused (no panic), the consensus held
/// is kept, and the next request asks for the full consensus; once a new
/// consensus is in, diffs are asked for again.
#[test]
fn a_bad_diff_falls_back_to_the_full_consensus() {
    let t0 = 1_800_000_000;
    let next = TestNet::get().hourly(at(t0 + 3600));
    let (_, _, base) = holding(t0);
    let good =
        tor_consdiff::gen_cons_diff(&base, &next, tor_consdiff::DiffSizeStrictness::None).unwrap();
    for bad in [
        good[..good.len() / 2].to_owned(),
        good.replacen("hash ", "hash 0", 1),
        good.replacen("valid-after", "valid-afterX", 1),
        "network-status-diff-version 1\nhash\n".to_owned(),
    ] {
        let (mut b, req, _) = holding(t0);
        let now = b.refresh_at().unwrap();
        drain(&mut b);
        b.handle_http(req.id, Ok(http(&bad, Encoding::Identity)), now);
        let events = drain(&mut b);
        assert!(
            events.iter().any(|e| matches!(
                e,
                DirEvent::Rejected {
                    error: DocError::BadDiff { .. },
                    ..
                }
            )),
            "{bad:?}: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DirEvent::FetchFailed { .. }))
        );
        assert_eq!(b.netdir().unwrap().lifetime().valid_after, at(t0));
        let retry_at = b.poll_timeout().unwrap();
        let full = b.poll_request(retry_at).unwrap();
        assert_eq!(full.kind, DocKind::Consensus);
        assert_eq!(header(&full, DIFF_HEADER), None, "{bad:?}");
        assert_ne!(full.source, req.source);
        b.handle_http(full.id, Ok(http(&next, Encoding::Zstd)), retry_at);
        assert_eq!(b.netdir().unwrap().lifetime().valid_after, at(t0 + 3600));
        let again = b.poll_request(b.refresh_at().unwrap()).unwrap();
        assert!(header(&again, DIFF_HEADER).is_some());
    }
}

/// 304 Not Modified to a consensus request is "nothing newer": not a
/// failure, the next fetch later.
#[test]
fn not_modified_is_not_a_failure() {
    let (mut b, req, _) = holding(1_800_000_000);
    let now = b.refresh_at().unwrap();
    drain(&mut b);
    b.handle_http(
        req.id,
        Ok(b"HTTP/1.0 304 Not modified\r\n\r\n".to_vec()),
        now,
    );
    let events = drain(&mut b);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, DirEvent::FetchFailed { .. })),
        "{events:?}"
    );
    assert_eq!(b.schedule(DocKind::Consensus).failures(), 0);
    assert!(b.refresh_at().unwrap() > now);
    while let Some(r) = b.poll_request(now) {
        assert_eq!(r.kind, DocKind::Microdesc);
    }
}
