//! The URL table and sessions against a filled cache.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64ct::{Base64Unpadded, Encoding as _};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};
use tor_llcrypto::d::Sha3_256;

use super::*;
use crate::documents::Lifetime;
use crate::error::ServeError;
use crate::fetch::{Encoding, compress};
use answer::choose_encoding;

const A: &str = "0123456789ABCDEF0123456789ABCDEF01234567";
const B: &str = "89ABCDEF0123456789ABCDEF0123456789ABCDEF";
const C: &str = "FEDCBA9876543210FEDCBA9876543210FEDCBA98";

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// A consensus signed by A and B, valid 100 000 to 110 000 (fresh to
/// 103 600).
fn consensus_text() -> String {
    format!(
        "network-status-version 3 microdesc\nvote-status consensus\ndirectory-footer\n\
         directory-signature sha256 {A} 1111\n-----BEGIN SIGNATURE-----\nx\n-----END SIGNATURE-----\n\
         directory-signature sha256 {B} 2222\n-----BEGIN SIGNATURE-----\ny\n-----END SIGNATURE-----\n"
    )
}

const MD1: &str = "onion-key\nntor-onion-key AAAA\n";
const MD2: &str = "onion-key\nntor-onion-key BBBB\nfamily x\n";

fn md_b64(md: &str) -> String {
    Base64Unpadded::encode_string(&Sha256::digest(md.as_bytes()))
}

fn hex20(h: &str) -> [u8; 20] {
    let mut out = [0; 20];
    hex::decode_to_slice(h, &mut out).unwrap();
    out
}

fn cache() -> DirCache {
    let mut c = DirCache::default();
    c.set_consensus(
        &consensus_text(),
        Lifetime {
            valid_after: t(100_000),
            fresh_until: t(103_600),
            valid_until: t(110_000),
        },
    )
    .unwrap();
    c.insert_microdesc(MD1).unwrap();
    c.insert_microdesc(MD2).unwrap();
    c.set_certs([
        CachedCert::new("cert A old\n", hex20(A), hex20(C), t(1000), t(900_000)),
        CachedCert::new("cert A new\n", hex20(A), hex20(B), t(2000), t(900_000)),
        CachedCert::new("cert B\n", hex20(B), hex20(A), t(1500), t(900_000)),
    ]);
    c
}

/// Status, reason and body of the answer to `head` at `now`.
fn get_at(cache: &DirCache, head: &str, now: SystemTime) -> (u16, String, String) {
    let req = RequestParser::new()
        .push(format!("{head}\r\n\r\n").as_bytes())
        .unwrap()
        .unwrap();
    let r = answer(cache, &req, now).expect("an answer");
    let bytes = r.to_bytes();
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let status_line = head.lines().next().unwrap();
    let reason = status_line.splitn(3, ' ').nth(2).unwrap().to_owned();
    assert_eq!(r.status.to_string(), status_line.split(' ').nth(1).unwrap());
    assert!(head.contains("\r\nDate: "), "{head}");
    let mut body = bytes[end + 4..].to_vec();
    if r.status == 200 {
        // The encoding C-tor would pick: deflate for `.z` (every such
        // request here), identity otherwise.
        let want = if req.url.ends_with(".z") {
            Encoding::Deflate
        } else {
            Encoding::Identity
        };
        assert!(
            head.contains(&format!("Content-Encoding: {}\r\n", want.name())),
            "{head}"
        );
        assert_eq!(choose_encoding(&req), want);
        body = compress::decode(want, &body, 1 << 20).unwrap();
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
        {
            assert_eq!(len.parse::<usize>().unwrap(), bytes.len() - end - 4);
        }
    }
    (r.status, reason, String::from_utf8(body).unwrap())
}

/// The answer's encoding follows the URL's `.z` and `Accept-Encoding`,
/// as C-tor's does (deflate first; gzip; identity), and a deflated
/// consensus is made once.
#[test]
fn encodings_as_c_tor_picks_them() {
    let c = cache();
    let pick = |head: &str| {
        let req = RequestParser::new()
            .push(format!("{head}\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap();
        choose_encoding(&req)
    };
    let url = "/tor/status-vote/current/consensus-microdesc";
    assert_eq!(pick(&format!("GET {url} HTTP/1.0")), Encoding::Identity);
    assert_eq!(pick(&format!("GET {url}.z HTTP/1.0")), Encoding::Deflate);
    assert_eq!(
        pick(&format!(
            "GET {url} HTTP/1.0\r\nAccept-Encoding: x-zstd, gzip"
        )),
        Encoding::Gzip
    );
    assert_eq!(
        pick(&format!(
            "GET {url} HTTP/1.0\r\nAccept-Encoding: x-zstd, deflate, gzip, identity"
        )),
        Encoding::Deflate
    );
    assert_eq!(
        pick(&format!(
            "GET {url} HTTP/1.0\r\nAccept-Encoding: x-tor-lzma"
        )),
        Encoding::Identity
    );
    let held = c.consensus().unwrap();
    assert!(std::ptr::eq(held.deflated(), held.deflated()), "made once");
    assert_eq!(
        compress::decode(Encoding::Deflate, held.deflated(), 1 << 20).unwrap(),
        &held.body()[..]
    );
    // A gzip answer decodes to the same consensus.
    let req = RequestParser::new()
        .push(format!("GET {url} HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n").as_bytes())
        .unwrap()
        .unwrap();
    let bytes = answer(&c, &req, t(101_000)).unwrap().to_bytes();
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(String::from_utf8_lossy(&bytes[..end]).contains("Content-Encoding: gzip\r\n"));
    assert_eq!(
        compress::decode(Encoding::Gzip, &bytes[end + 4..], 1 << 20).unwrap(),
        &held.body()[..]
    );
}

fn get(cache: &DirCache, head: &str) -> (u16, String, String) {
    get_at(cache, head, t(101_000))
}

#[test]
fn consensus_as_c_tor_serves_it() {
    let c = cache();
    let text = consensus_text();
    // What a C-tor client asks: its authorities' fingerprint prefixes, .z.
    for url in [
        "/tor/status-vote/current/consensus-microdesc",
        "/tor/status-vote/current/consensus-microdesc.z",
        &format!(
            "/tor/status-vote/current/consensus-microdesc/{}+{}.z",
            &A[..6],
            &B[..6]
        ),
        &format!(
            "/tor/status-vote/current/consensus-microdesc/{}+{}+{}",
            &A[..6],
            &B[..6],
            &C[..6]
        ),
        &format!(
            "/tor/status-vote/current/consensus-microdesc/{}",
            A[..12].to_lowercase()
        ),
    ] {
        let (status, _, body) = get(&c, &format!("GET {url} HTTP/1.0"));
        assert_eq!((status, body.as_str()), (200, text.as_str()), "{url}");
    }
    // Not enough of the named authorities signed.
    for url in [
        format!("/tor/status-vote/current/consensus-microdesc/{}", &C[..6]),
        format!(
            "/tor/status-vote/current/consensus-microdesc/{}+{}",
            &A[..6],
            &C[..6]
        ),
        format!("/tor/status-vote/current/consensus-microdesc/{A}0"),
    ] {
        let (status, reason, _) = get(&c, &format!("GET {url} HTTP/1.0"));
        assert_eq!(status, 404, "{url}");
        assert_eq!(
            reason,
            "Consensus not signed by sufficient number of requested authorities"
        );
    }
    // The ns flavour (and unknown ones, which C-tor takes as ns): none held.
    for url in [
        "/tor/status-vote/current/consensus",
        "/tor/status-vote/current/consensus.z",
        "/tor/status-vote/current/consensus-ns",
        "/tor/status-vote/current/consensus-bogus/AAAA",
        "/tor/status-vote/current/consensus/AAAA",
    ] {
        assert_eq!(get(&c, &format!("GET {url} HTTP/1.0")).0, 404, "{url}");
    }
    // No consensus at all.
    let empty = DirCache::default();
    let (status, reason, _) = get(
        &empty,
        "GET /tor/status-vote/current/consensus-microdesc HTTP/1.0",
    );
    assert_eq!((status, reason.as_str()), (404, "Not found"));
}

#[test]
fn consensus_diffs_and_if_modified_since() {
    let c = cache();
    let ours = hex::encode(c.consensus().unwrap().digest_as_signed());
    let signed = consensus_text();
    let signed =
        &signed[..signed.find("directory-signature").unwrap() + "directory-signature ".len()];
    let want: [u8; 32] = Sha3_256::digest(signed.as_bytes()).into();
    assert_eq!(ours, hex::encode(want));
    let url = "/tor/status-vote/current/consensus-microdesc";
    // The client has ours: 304; another: the full consensus.
    let (status, reason, _) = get(
        &c,
        &format!(
            "GET {url} HTTP/1.0\r\nX-Or-Diff-From-Consensus: {} {ours}",
            "ab".repeat(32)
        ),
    );
    assert_eq!((status, reason.as_str()), (304, "Not modified"));
    let (status, _, body) = get(
        &c,
        &format!(
            "GET {url} HTTP/1.0\r\nX-Or-Diff-From-Consensus: {} junk",
            "ab".repeat(32)
        ),
    );
    assert_eq!((status, body), (200, consensus_text()));
    // A diff in the URL: none kept; a malformed one: unparseable.
    let (status, reason, _) = get(
        &c,
        &format!("GET {url}/diff/{}/{} HTTP/1.0", "ab".repeat(32), &A[..4]),
    );
    assert_eq!((status, reason.as_str()), (404, "No such diff available"));
    let (status, reason, _) = get(&c, &format!("GET {url}/diff/{ours} HTTP/1.0"));
    assert_eq!((status, reason.as_str()), (304, "Not modified"));
    let (status, reason, _) = get(&c, &format!("GET {url}/diff/abc HTTP/1.0"));
    assert_eq!((status, reason.as_str()), (404, "Couldn't parse request"));
    // If-Modified-Since: after valid-after is 304, at or before is 200.
    let ims = |s| {
        format!(
            "GET {url} HTTP/1.0\r\nIf-Modified-Since: {}",
            date::format_http_date(t(s))
        )
    };
    assert_eq!(get(&c, &ims(100_001)).0, 304);
    assert_eq!(get(&c, &ims(100_000)).0, 200);
    // A malformed date is no header.
    assert_eq!(
        get(
            &c,
            &format!("GET {url} HTTP/1.0\r\nIf-Modified-Since: soon")
        )
        .0,
        200
    );
}

#[test]
fn consensus_liveness_and_expiry_headers() {
    let c = cache();
    let head = "GET /tor/status-vote/current/consensus-microdesc HTTP/1.0";
    let day = 24 * 3600;
    let (status, reason, _) = get_at(&c, head, t(110_001 + day));
    assert_eq!((status, reason.as_str()), (404, "Consensus is too old"));
    assert_eq!(get_at(&c, head, t(110_000 + day)).0, 200);
    let (status, reason, _) = get_at(&c, head, t(100_000 - 1000));
    assert_eq!(status, 200, "{reason}");
    let mut early = DirCache::default();
    early
        .set_consensus(
            &consensus_text(),
            Lifetime {
                valid_after: t(200_000),
                fresh_until: t(203_600),
                valid_until: t(210_000),
            },
        )
        .unwrap();
    let (status, reason, _) = get_at(&early, head, t(200_000 - day - 1));
    assert_eq!((status, reason.as_str()), (404, "Consensus is too new"));
    // Expires while fresh, no-cache after; the Vary header either way.
    let req = RequestParser::new()
        .push(format!("{head}\r\n\r\n").as_bytes())
        .unwrap()
        .unwrap();
    let fresh = String::from_utf8(answer(&c, &req, t(103_000)).unwrap().head().to_vec()).unwrap();
    assert!(
        fresh.contains(&format!(
            "Expires: {}\r\n",
            date::format_http_date(t(103_600))
        )),
        "{fresh}"
    );
    assert!(fresh.contains("Vary: X-Or-Diff-From-Consensus\r\n"));
    assert!(!fresh.contains("Content-Length"));
    let stale = String::from_utf8(answer(&c, &req, t(104_000)).unwrap().head().to_vec()).unwrap();
    assert!(stale.contains("Pragma: no-cache\r\n"), "{stale}");
}

#[test]
fn microdescriptors() {
    let c = cache();
    let (d1, d2) = (md_b64(MD1), md_b64(MD2));
    // Sorted by digest, each once, unknown and malformed ones skipped.
    let mut want = [
        (Sha256::digest(MD1.as_bytes()), MD1),
        (Sha256::digest(MD2.as_bytes()), MD2),
    ];
    want.sort();
    let want: String = want.iter().map(|(_, m)| *m).collect();
    let unknown = md_b64("nothing");
    for url in [
        format!("/tor/micro/d/{d1}-{d2}"),
        format!("/tor/micro/d/{d2}-{d1}-{d2}.z"),
        format!("/tor/micro/d/{d2}-{unknown}-short-{d1}"),
    ] {
        let (status, _, body) = get(&c, &format!("GET {url} HTTP/1.0"));
        assert_eq!((status, body.as_str()), (200, want.as_str()), "{url}");
    }
    let (status, _, body) = get(&c, &format!("GET /tor/micro/d/{d1} HTTP/1.0"));
    assert_eq!((status, body.as_str()), (200, MD1));
    for url in [
        format!("/tor/micro/d/{unknown}"),
        "/tor/micro/d/".into(),
        "/tor/micro/d/!!!".into(),
    ] {
        let (status, reason, _) = get(&c, &format!("GET {url} HTTP/1.0"));
        assert_eq!((status, reason.as_str()), (404, "Not found"), "{url}");
    }
}

#[test]
fn certificates() {
    let c = cache();
    let all = get(&c, "GET /tor/keys/all HTTP/1.0");
    assert_eq!(all.0, 200);
    assert_eq!(all.2, "cert A old\ncert A new\ncert B\n");
    // fp: the newest per authority, in identity order.
    let (status, _, body) = get(
        &c,
        &format!("GET /tor/keys/fp/{B}+{}+{A}.z HTTP/1.0", A.to_lowercase()),
    );
    assert_eq!((status, body.as_str()), (200, "cert A new\ncert B\n"));
    let (_, _, body) = get(&c, &format!("GET /tor/keys/sk/{C} HTTP/1.0"));
    assert_eq!(body, "cert A old\n");
    let (_, _, body) = get(
        &c,
        &format!("GET /tor/keys/fp-sk/{B}-{A}+{A}-{C}+{A}-{A}+junk HTTP/1.0"),
    );
    assert_eq!(body, "cert A old\ncert B\n");
    for (url, want) in [
        ("/tor/keys/authority".to_string(), (404, "Not found")),
        (format!("/tor/keys/fp/{C}"), (404, "Not found")),
        ("/tor/keys/fp/".to_string(), (404, "Not found")),
        ("/tor/keys/bogus".to_string(), (400, "Bad request")),
    ] {
        let (status, reason, _) = get(&c, &format!("GET {url} HTTP/1.0"));
        assert_eq!((status, reason.as_str()), want, "{url}");
    }
    // Content-Length is given; If-Modified-Since drops older ones.
    let req = RequestParser::new()
        .push(b"GET /tor/keys/all HTTP/1.0\r\n\r\n")
        .unwrap()
        .unwrap();
    let head = String::from_utf8(answer(&c, &req, t(0)).unwrap().head().to_vec()).unwrap();
    assert!(head.contains("Content-Length: 29\r\n"), "{head}");
    let ims = |s| {
        format!(
            "GET /tor/keys/all HTTP/1.0\r\nIf-Modified-Since: {}",
            date::format_http_date(t(s))
        )
    };
    assert_eq!(get(&c, &ims(1500)).2, "cert A new\ncert B\n");
    let (status, reason, _) = get(&c, &ims(2001));
    assert_eq!((status, reason.as_str()), (304, "Not modified"));
}

#[test]
fn everything_else() {
    let c = cache();
    let (status, _, body) = get(&c, "GET /robots.txt HTTP/1.0");
    assert_eq!(
        (status, body.as_str()),
        (200, "User-agent: *\r\nDisallow: /\r\n")
    );
    for url in [
        "/",
        "/tor/",
        "/tor/server/authority",
        "/tor/server/d/ABCD",
        "/tor/extra/all",
        "/tor/status-vote/current/authority",
        "/tor/status-vote/next/bandwidth",
        "/tor/hs/3/abc",
        "/nothing",
    ] {
        let (status, reason, _) = get(&c, &format!("GET {url} HTTP/1.0"));
        assert_eq!((status, reason.as_str()), (404, "Not found"), "{url}");
    }
    let req = RequestParser::new()
        .push(b"GET /tor/networkstatus-bridges HTTP/1.0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(answer(&c, &req, t(0)), None);
    let (status, reason, _) = get(&c, "POST /tor/ HTTP/1.0\r\nContent-Length: 5");
    assert_eq!(
        (status, reason.as_str()),
        (
            400,
            "Nonauthoritative directory does not accept posted server descriptors"
        )
    );
    let (status, reason, _) = get(&c, "POST /tor/hs/3/publish HTTP/1.0");
    assert_eq!(
        (status, reason.as_str()),
        (400, "Invalid HS descriptor. Rejected.")
    );
}

/// Drain a session's output in pieces of `step`.
fn drain(s: &mut Session, step: usize, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    while !s.output().is_empty() {
        let n = step.min(s.output().len());
        out.extend_from_slice(&s.output()[..n]);
        s.consume(n, now);
    }
    out
}

#[test]
fn sessions() {
    let c = cache();
    let now = Instant::now();
    let date = t(101_000);
    // A request in two pieces, answered, the answer taken in small pieces.
    let mut s = Session::new(now);
    assert!(s.wants_input());
    assert_eq!(s.handle_input(b"GET /tor/keys/fp/", now, date), None);
    assert!(!s.is_ready());
    assert_eq!(
        s.handle_input(format!("{B} HTTP/1.0\r\n\r\nextra").as_bytes(), now, date),
        None
    );
    assert!(s.is_ready() && !s.wants_input());
    assert_eq!(s.url(), Some(format!("/tor/keys/fp/{B}").as_str()));
    let outcome = s.answer(&c, date).unwrap();
    let Outcome::Answered { doc, status, bytes } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((doc, status), (DocType::Certificates, 200));
    assert_eq!(s.pending(), bytes);
    let out = drain(&mut s, 7, now);
    assert_eq!(out.len(), bytes);
    assert!(out.ends_with(b"\r\n\r\ncert B\n"));
    assert!(s.is_finished() && s.answer(&c, date).is_none());
    // A bad request line: 400 at once.
    let mut s = Session::new(now);
    let outcome = s.handle_input(b"GET /tor/\r\n\r\n", now, date).unwrap();
    assert!(matches!(outcome, Outcome::Answered { status: 400, .. }));
    assert!(drain(&mut s, 1000, now).starts_with(b"HTTP/1.0 400 Bad request\r\n"));
    assert!(s.is_finished());
    // An unknown method, or a head too large: closed without an answer.
    let mut s = Session::new(now);
    let outcome = s
        .handle_input(b"BREW /pot HTTP/1.0\r\n\r\n", now, date)
        .unwrap();
    assert!(matches!(
        outcome,
        Outcome::Closed {
            error: Some(ServeError::UnknownMethod { .. })
        }
    ));
    assert!(s.is_finished() && s.output().is_empty());
    let mut s = Session::new(now);
    let outcome = s
        .handle_input(&vec![b'G'; MAX_HEAD_BYTES + 10], now, date)
        .unwrap();
    assert!(matches!(
        outcome,
        Outcome::Closed {
            error: Some(ServeError::HeadTooLarge { .. })
        }
    ));
    // Busy: 503 for the kind asked.
    let mut s = Session::new(now);
    s.handle_input(b"GET /tor/micro/d/x.z HTTP/1.0\r\n\r\n", now, date);
    let outcome = s.answer_busy(date).unwrap();
    assert!(matches!(
        outcome,
        Outcome::Answered {
            status: 503,
            doc: DocType::Microdescs,
            ..
        }
    ));
    assert!(drain(&mut s, 9, now).starts_with(b"HTTP/1.0 503 Directory busy, try again later\r\n"));
    // No answer written (networkstatus-bridges): finished.
    let mut s = Session::new(now);
    s.handle_input(
        b"GET /tor/networkstatus-bridges HTTP/1.0\r\n\r\n",
        now,
        date,
    );
    assert_eq!(s.answer(&c, date), Some(Outcome::Closed { error: None }));
    assert!(s.is_finished());
    // Stalls: no byte for five minutes.
    let mut s = Session::new(now);
    s.handle_input(b"GET", now, date);
    assert!(!s.is_stalled(now + STALL_TIMEOUT - Duration::from_secs(1)));
    assert!(s.is_stalled(now + STALL_TIMEOUT));
    s.handle_input(b" /", now + Duration::from_secs(200), date);
    assert!(!s.is_stalled(now + STALL_TIMEOUT));
}

proptest! {
    #[test]
    fn any_request_gets_a_known_answer(
        path in "/tor/(status-vote/current/consensus(-microdesc)?|micro/d|keys|keys/fp|keys/fp-sk|server)?/?[A-Za-z0-9+/=.-]{0,120}",
        header in "[A-Za-z-]{0,20}: [ -~]{0,70}",
    ) {
        let c = cache();
        let req = RequestParser::new()
            .push(format!("GET {path} HTTP/1.0\r\n{header}\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap();
        if let Some(r) = answer(&c, &req, t(101_000)) {
            prop_assert!([200, 304, 400, 404].contains(&r.status), "{}", r.status);
            let text = r.to_bytes();
            let line = format!("HTTP/1.0 {} ", r.status);
            prop_assert!(text.starts_with(line.as_bytes()));
        }
    }

    #[test]
    fn sessions_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let c = cache();
        let now = Instant::now();
        let mut s = Session::new(now);
        for chunk in &chunks {
            s.handle_input(chunk, now, t(0));
            if s.is_ready() {
                s.answer(&c, t(0));
            }
            let _ = drain(&mut s, 100, now);
        }
    }
}
