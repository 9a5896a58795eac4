//! The saved circuit build times (`BuildTimes::from_text`, path-spec §2.4;
//! the file may be damaged or hand-edited). Seeded with files like the
//! ones Braid writes.
//!
//! Invariant: at most 1000 records load; the usage timeout is at least
//! `cbtmintimeout` and, once learned, at most the longest build loaded;
//! the close timeout at least `cbtinitialtimeout`; what loads saves to a
//! file that loads to the same records and timeouts.
#![no_main]

use std::time::Duration;

use braid_dir::build_timeout::{BuildTimeParams, BuildTimes, MAX_RECORDED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let params = BuildTimeParams::default();
    let (b, _) = BuildTimes::from_text(text, params);
    assert!(b.recorded() <= MAX_RECORDED);
    assert!(b.timeout() >= params.min_timeout);
    assert!(b.close_timeout() >= params.initial_timeout);
    if b.is_learned() {
        let longest = text
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .max()
            .unwrap_or(0);
        let cap = Duration::from_millis(u64::from(longest)).max(params.min_timeout);
        assert!(b.timeout() <= cap, "{:?} over {cap:?}", b.timeout());
    }
    let saved = b.to_text();
    let (again, skipped) = BuildTimes::from_text(&saved, params);
    assert_eq!(skipped, 0, "our own file has no bad line");
    assert_eq!(again.recorded(), b.recorded());
    assert_eq!(again.timeout(), b.timeout());
    assert_eq!(again.close_timeout(), b.close_timeout());
    assert_eq!(again.to_text(), saved);
});
