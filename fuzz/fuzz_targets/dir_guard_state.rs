//! The persisted guard state file (`GuardSet::from_toml`; it may be
//! corrupt or hand-edited). Seeded with state files like the ones Braid
//! writes.
//!
//! Invariant: what is accepted is written back (`to_toml`) to a file that
//! loads, and writing that again gives the same file: nothing accepted is
//! lost or changed by a save and load.
#![no_main]

use braid_dir::{GuardParams, GuardSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(set) = GuardSet::from_toml(text, GuardParams::default()) {
        let again = set.to_toml().expect("accepted state serialises");
        let reloaded =
            GuardSet::from_toml(&again, GuardParams::default()).expect("own state reloads");
        assert_eq!(
            reloaded.to_toml().expect("reloaded state serialises"),
            again,
            "a save and load changed the state"
        );
    }
});
