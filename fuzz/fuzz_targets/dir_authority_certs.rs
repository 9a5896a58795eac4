//! Authority key certificates (one or many): tor-netdoc's parser and our
//! trust checks.
#![no_main]

mod recorded;

use braid_dir::documents::parse_certs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (good, bad) = parse_certs(text, &recorded::authorities(), recorded::during());
    // Every certificate found is either accepted or refused, never both.
    assert!(good.len() + bad.len() >= 1);
});
