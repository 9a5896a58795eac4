//! The persisted guard state file (it may be corrupt or hand-edited).
#![no_main]

use braid_dir::{GuardParams, GuardSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(set) = GuardSet::from_toml(text, GuardParams::default()) {
        // What was accepted can be written and read back.
        let again = set.to_toml().expect("accepted state serialises");
        GuardSet::from_toml(&again, GuardParams::default()).expect("own state reloads");
    }
});
