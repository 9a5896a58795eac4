//! The consensus `bandwidth-weights` line (`BandwidthWeights::parse_with_scale`):
//! the first two input bytes choose the scale (`bwweightscale`; 0 means
//! the default 10000), the rest is the line. Seeded with the recorded
//! consensus' line.
//!
//! Invariants: accepted weights are each within `0..=scale` (dir-spec
//! §3.4.1, path-spec §2.2), so every position's weight is too, and an
//! exit-only relay never guards; a known weight the line gives is the
//! value it gives (a second one is refused), and one it leaves out is its
//! dir-spec §3.8.3 copy or the scale.
#![no_main]

use braid_dir::{BandwidthWeights, Position, RelayFlags, WeightKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &str)| {
    let (scale_sel, text) = input;
    let scale = match scale_sel {
        0 => BandwidthWeights::DEFAULT_SCALE,
        s => u32::from(s),
    };
    let Ok(weights) = BandwidthWeights::parse_with_scale(text, scale) else {
        return;
    };
    assert_eq!(weights.scale(), scale);
    let given: Vec<(&str, &str)> = text
        .split_ascii_whitespace()
        .filter_map(|item| item.split_once('='))
        .collect();
    for key in WeightKey::ALL {
        let w = weights.get(key);
        assert!(w <= scale, "{key}={w} over the scale {scale}");
        let mut values = given.iter().filter(|(k, _)| *k == key.name());
        match (values.next(), values.next()) {
            (Some((_, v)), None) => assert_eq!(v.parse::<i64>().ok(), Some(i64::from(w)), "{key}"),
            (None, None) => {}
            _ => panic!("{key} given twice and accepted"),
        }
    }
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
            RelayFlags::V2DIR,
            RelayFlags::GUARD | RelayFlags::EXIT | RelayFlags::V2DIR,
        ] {
            let w = weights.weight(position, flags);
            assert!(w <= u64::from(scale), "{position:?} {flags}: {w}");
        }
    }
    assert_eq!(weights.weight(Position::Guard, RelayFlags::EXIT), 0);
});
