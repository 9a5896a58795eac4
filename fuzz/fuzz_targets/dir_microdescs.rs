//! Microdescriptors: splitting, tor-netdoc's parser and conversion into
//! relays' fields (`parse_microdescs`). The first input byte chooses which
//! of the text's microdescriptors the consensus lists ("wanted"): the
//! chunk at position i is listed if bit i % 8 is set; the digests of two
//! texts that are not in the input are listed too. The rest is the text.
//! Seeded with the recorded microdescriptors.
//!
//! Invariants: every microdescriptor in the text is accepted or refused,
//! once; every unlisted one is refused as unlisted (dir-spec §3.3: its
//! digest is its whole authentication), whatever its text; an accepted
//! one is a listed chunk of the text, its digest the SHA-256 of its text.
#![no_main]

use std::collections::HashSet;

use braid_dir::DocError;
use braid_dir::documents::{parse_microdescs, split_microdescs};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fuzz_target!(|input: (u8, &str)| {
    let (listed, text) = input;
    let chunks = split_microdescs(text);
    let mut wanted: HashSet<[u8; 32]> = chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| listed & (1 << (i % 8)) != 0)
        .map(|(_, c)| digest(c))
        .collect();
    wanted.insert(digest("onion-key\n"));
    wanted.insert([0; 32]);
    let (good, bad) = parse_microdescs(text, &wanted);
    assert_eq!(good.len() + bad.len(), chunks.len());
    let unlisted = chunks
        .iter()
        .filter(|c| !wanted.contains(&digest(c)))
        .count();
    let refused_unlisted = bad
        .iter()
        .filter(|e| matches!(e, DocError::UnlistedMicrodesc { .. }))
        .count();
    assert_eq!(
        refused_unlisted, unlisted,
        "unlisted microdescriptors not refused as such"
    );
    for md in good {
        assert_eq!(md.digest, digest(&md.text));
        assert!(
            wanted.contains(&md.digest),
            "an unlisted microdescriptor was accepted"
        );
        assert!(chunks.contains(&md.text.as_str()));
        let _ = md.md.ipv4_policy().to_string();
    }
});
