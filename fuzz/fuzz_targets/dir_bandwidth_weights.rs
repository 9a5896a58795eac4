//! The consensus `bandwidth-weights` line.
#![no_main]

use braid_dir::{BandwidthWeights, Position, RelayFlags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(weights) = BandwidthWeights::parse(text) {
        for position in [
            Position::Guard,
            Position::Middle,
            Position::Exit,
            Position::BeginDir,
        ] {
            for flags in [
                RelayFlags::empty(),
                RelayFlags::GUARD,
                RelayFlags::EXIT,
                RelayFlags::GUARD | RelayFlags::EXIT,
            ] {
                let _ = weights.weight(position, flags);
            }
        }
    }
});
