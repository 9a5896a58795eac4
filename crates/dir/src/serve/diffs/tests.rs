//! Tests of [`super`]: diffs from the consensuses a cache served before,
//! made from a consensus recorded from a private C-tor network and served
//! by the URL table, applied by the client's applier (arti's
//! `tor-consdiff`); the history's bounds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::documents::Lifetime;
use crate::fetch::{Encoding, compress, diff};
use crate::serve::{DirCache, DocType, RequestParser, answer};

const RECORDED: &str = include_str!("../../../testdata/private-net/consensus-microdesc");

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// A consensus valid after `s` for 10 000 s.
fn lifetime(s: u64) -> Lifetime {
    Lifetime {
        valid_after: t(s),
        fresh_until: t(s + 3600),
        valid_until: t(s + 10_000),
    }
}

/// The recorded consensus the way the next one differs: `n` in its
/// `valid-after`, relay0's flags, exit2 gone, other signatures.
fn next(n: u32) -> String {
    let mut out = String::new();
    let mut skip = false;
    for line in RECORDED.lines() {
        if line.starts_with("r ") {
            skip = line.starts_with("r exit2 ");
        } else if line.starts_with("directory-footer") {
            skip = false;
        }
        if skip {
            continue;
        }
        let line = match line {
            l if l.starts_with("valid-after ") => format!("valid-after 2026-11-21 10:{n:02}:10"),
            "s Fast Running Stable V2Dir Valid" if n % 2 == 1 => {
                "s Fast Guard Running Stable V2Dir Valid".to_owned()
            }
            l if l.len() == 64 && !l.starts_with("-----") => format!("{n:02}{}", &l[2..]),
            l => l.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Status, document type and body (decoded) of the answer to `head`.
fn get(cache: &DirCache, head: &str) -> (u16, DocType, String) {
    let req = RequestParser::new()
        .push(format!("{head}\r\n\r\n").as_bytes())
        .unwrap()
        .unwrap();
    let resp = answer(cache, &req, t(100_500)).unwrap();
    let head_text = String::from_utf8_lossy(resp.head()).into_owned();
    let raw = resp.to_bytes()[resp.head().len()..].to_vec();
    let body = if head_text.contains("Content-Encoding: deflate") {
        compress::decode(Encoding::Deflate, &raw, 1 << 24).unwrap()
    } else {
        raw
    };
    (resp.status, resp.doc, String::from_utf8(body).unwrap())
}

fn hex_digest(text: &str) -> String {
    hex::encode_upper(diff::digest_as_signed(text).unwrap())
}

const URL: &str = "/tor/status-vote/current/consensus-microdesc";

#[test]
fn a_client_naming_an_older_consensus_gets_a_diff_that_applies() {
    let new = next(59);
    assert_ne!(new, RECORDED);
    let mut cache = DirCache::default();
    cache.set_consensus(RECORDED, lifetime(100_000)).unwrap();
    cache.set_consensus(&new, lifetime(100_010)).unwrap();
    assert_eq!(cache.consensus().unwrap().n_diffs(), 1);
    let old = hex_digest(RECORDED);
    let named = format!(
        "GET {URL} HTTP/1.0\r\nX-Or-Diff-From-Consensus: {} {old}",
        "ab".repeat(32)
    );
    let (status, doc, body) = get(&cache, &named);
    assert_eq!((status, doc), (200, DocType::ConsensusDiff));
    assert!(diff::is_diff(&body), "{body}");
    assert!(body.len() < new.len() / 2, "{} bytes", body.len());
    assert_eq!(diff::apply(RECORDED, &body).unwrap(), new);
    // The same compressed, and in the URL.
    let (status, _, z) = get(
        &cache,
        &format!("{}.z{}", &named[..4 + URL.len()], &named[4 + URL.len()..]),
    );
    assert_eq!((status, z.as_str()), (200, body.as_str()));
    let (status, doc, in_url) = get(&cache, &format!("GET {URL}/diff/{old}/77CB+DF42 HTTP/1.0"));
    assert_eq!(
        (status, doc, in_url.as_str()),
        (200, DocType::ConsensusDiff, body.as_str())
    );
    // A consensus we never served: the whole document.
    let (status, doc, full) = get(
        &cache,
        &format!(
            "GET {URL} HTTP/1.0\r\nX-Or-Diff-From-Consensus: {}",
            "cd".repeat(32)
        ),
    );
    assert_eq!((status, doc, full), (200, DocType::Consensus, new.clone()));
    // The same consensus set again: its diffs stay, none from itself.
    cache.set_consensus(&new, lifetime(100_010)).unwrap();
    assert_eq!(cache.consensus().unwrap().n_diffs(), 1);
    assert_eq!(cache.n_old_consensuses(), 1);
}

#[test]
fn diffs_from_every_consensus_kept_and_the_history_bounded() {
    let mut cache = DirCache::default();
    let texts: Vec<String> = (0..MAX_HISTORY as u32 + 3).map(next).collect();
    for (i, text) in texts.iter().enumerate() {
        cache
            .set_consensus(text, lifetime(100_000 + 10 * i as u64))
            .unwrap();
    }
    assert_eq!(cache.n_old_consensuses(), MAX_HISTORY);
    let newest = texts.last().unwrap();
    for (i, text) in texts.iter().enumerate().take(texts.len() - 1) {
        let (status, doc, body) = get(
            &cache,
            &format!(
                "GET {URL} HTTP/1.0\r\nX-Or-Diff-From-Consensus: {}",
                hex_digest(text)
            ),
        );
        assert_eq!(status, 200);
        // The two oldest fell out of the history.
        if i < 2 {
            assert_eq!((doc, &body), (DocType::Consensus, newest), "{i}");
        } else {
            assert_eq!(doc, DocType::ConsensusDiff, "{i}");
            assert_eq!(&diff::apply(text, &body).unwrap(), newest, "{i}");
        }
    }
}

#[test]
fn consensuses_past_the_age_limit_are_dropped() {
    let mut cache = DirCache::default();
    cache.set_consensus(&next(1), lifetime(100_000)).unwrap();
    cache.set_consensus(&next(2), lifetime(100_010)).unwrap();
    let later = 100_010 + MAX_AGE.as_secs() + 1;
    cache.set_consensus(&next(3), lifetime(later)).unwrap();
    // next(1) and next(2) (the one replaced) are past the age limit.
    assert_eq!(cache.n_old_consensuses(), 0);
    cache.set_consensus(&next(4), lifetime(later + 10)).unwrap();
    assert_eq!(cache.n_old_consensuses(), 1, "next(3) is young");
}

/// [`keep`] on its own: size bound.
#[derive(Default)]
struct VecDequeProbe(std::collections::VecDeque<OldConsensus>);

impl VecDequeProbe {
    fn push(&mut self, va: SystemTime, kib: usize) {
        let old = OldConsensus {
            digest: [self.0.len() as u8; 32],
            text: Arc::from("x".repeat(kib * 1024).as_str()),
            valid_after: va,
        };
        keep(&mut self.0, old, va);
    }
}

#[test]
fn the_history_keeps_within_its_bytes() {
    let mut h = VecDequeProbe::default();
    let per = MAX_HISTORY_BYTES / 1024 / 3 + 1;
    for _ in 0..4 {
        h.push(t(1000), per);
    }
    assert_eq!(h.0.len(), 2, "three would pass the byte bound");
    assert!(h.0.iter().map(|o| o.text.len()).sum::<usize>() <= MAX_HISTORY_BYTES);
}
