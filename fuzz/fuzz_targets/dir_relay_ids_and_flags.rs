//! Relay identities (`RelayId`: hex with or without `$`, or unpadded
//! base64 as in the consensus; `Ed25519Id`) and the consensus `s` flag
//! line (`RelayFlags::from_names`). Seeded with the recorded consensus'
//! and microdescriptors' identities and flag lines.
//!
//! Invariants: an identity that parses renders to a form that parses back
//! to it (both kinds); the flags of a line are exactly the known names in
//! it (unknown ones ignored, dir-spec §3.4.1), and rendering them gives a
//! line with the same flags.
#![no_main]

use braid_dir::{Ed25519Id, RelayFlags, RelayId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(id) = text.parse::<RelayId>() {
        assert_eq!(id.to_string().parse::<RelayId>().ok(), Some(id));
    }
    if let Ok(id) = text.parse::<Ed25519Id>() {
        assert_eq!(id.to_string().parse::<Ed25519Id>().ok(), Some(id));
    }
    let flags = RelayFlags::from_names(text.split_ascii_whitespace());
    for word in text.split_ascii_whitespace() {
        if let Some(f) = RelayFlags::from_name(word) {
            assert!(flags.contains(f), "{word} lost");
        }
    }
    let rendered = flags.to_string();
    for word in rendered.split_ascii_whitespace() {
        assert!(text.split_ascii_whitespace().any(|w| w == word), "{word} added");
    }
    assert_eq!(RelayFlags::from_names(rendered.split_ascii_whitespace()), flags);
});
