//! Relay identities (hex, base64) and the consensus `s` flag line.
#![no_main]

use braid_dir::{Ed25519Id, RelayFlags, RelayId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(id) = text.parse::<RelayId>() {
        assert_eq!(id.to_string().parse::<RelayId>().ok(), Some(id));
    }
    let _ = text.parse::<Ed25519Id>();
    let flags = RelayFlags::from_names(text.split_ascii_whitespace());
    let _ = flags.bits();
});
