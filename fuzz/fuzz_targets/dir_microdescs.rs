//! Microdescriptors: splitting, tor-netdoc's parser and conversion into
//! relays' fields. Each chunk's own digest is "wanted", so the parser is
//! reached for every input.
#![no_main]

use std::collections::HashSet;

use braid_dir::documents::{parse_microdescs, split_microdescs};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|text: &str| {
    let wanted: HashSet<[u8; 32]> = split_microdescs(text)
        .into_iter()
        .map(|c| Sha256::digest(c.as_bytes()).into())
        .collect();
    let (good, _bad) = parse_microdescs(text, &wanted);
    for md in good {
        assert!(wanted.contains(&md.digest));
        let _ = md.md.ipv4_policy().to_string();
    }
});
