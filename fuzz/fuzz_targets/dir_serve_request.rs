//! The directory cache's server side (`braid_dir::serve`): a stream's
//! bytes in arbitrary chunks through a `Session` (the request parser, the
//! URL table against a small filled cache, the answer handed out in small
//! pieces). The first byte picks the chunk size; the rest is either used
//! as it is or, when the second byte is even, put after a valid-looking
//! `GET /tor/` so the URL table is reached. Checks: the head buffer stays
//! under its limit, one outcome at most, an answer starts with an HTTP/1.0
//! status line and is handed out whole, a finished session takes nothing.
#![no_main]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use braid_dir::documents::Lifetime;
use braid_dir::serve::{CachedCert, DirCache, Outcome, Session};
use libfuzzer_sys::fuzz_target;

fn cache() -> DirCache {
    let t = |s| UNIX_EPOCH + Duration::from_secs(s);
    let mut c = DirCache::default();
    let text = "network-status-version 3 microdesc\ndirectory-footer\n\
                directory-signature 0123456789ABCDEF0123456789ABCDEF01234567 AAAA\n";
    let _ = c.set_consensus(
        text,
        Lifetime {
            valid_after: t(1000),
            fresh_until: t(2000),
            valid_until: t(3000),
        },
    );
    let _ = c.insert_microdesc("onion-key\nntor-onion-key AAAA\n");
    c.set_certs([CachedCert::new("cert\n", [1; 20], [2; 20], t(10), t(9999))]);
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let input: Vec<u8> = match rest.split_first() {
        Some((&mode, tail)) if mode % 2 == 0 => {
            let mut v = b"GET /tor/".to_vec();
            v.extend_from_slice(tail);
            v.extend_from_slice(b" HTTP/1.0\r\n\r\n");
            v
        }
        _ => rest.to_vec(),
    };
    let cache = cache();
    let now = Instant::now();
    let date: SystemTime = UNIX_EPOCH + Duration::from_secs(1500);
    let mut s = Session::new(now);
    let mut outcomes = 0;
    let mut sent = Vec::new();
    let mut expected = None;
    for chunk in input.chunks(usize::from(step).max(1)) {
        let finished = s.is_finished();
        if let Some(o) = s.handle_input(chunk, now, date) {
            assert!(!finished);
            outcomes += 1;
            if let Outcome::Answered { bytes, .. } = o {
                expected = Some(bytes);
            }
        }
        if s.is_ready() {
            if let Some(Outcome::Answered { bytes, .. }) = s.answer(&cache, date) {
                expected = Some(bytes);
            }
            outcomes += 1;
        }
        while !s.output().is_empty() {
            let n = s.output().len().min(usize::from(step) + 1);
            sent.extend_from_slice(&s.output()[..n]);
            s.consume(n, now);
        }
    }
    assert!(outcomes <= 1);
    if let Some(bytes) = expected {
        assert_eq!(sent.len(), bytes);
        assert!(sent.starts_with(b"HTTP/1.0 "));
        assert!(s.is_finished());
    }
});
