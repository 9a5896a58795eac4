//! Microdescriptor exit-policy summaries (`PortPolicy`, "accept
//! 80,443,1000-2000"). Seeded with the recorded microdescriptors' "p" lines.
//!
//! Invariants: a parsed policy answers for every port, says it allows some
//! port exactly when one of the 65536 is allowed, and round-trips through
//! its own rendering.
#![no_main]

use braid_dir::PortPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(policy) = text.parse::<PortPolicy>() {
        // A parsed policy answers for every port and round-trips through
        // its own rendering.
        let allowed = (0..=u16::MAX).filter(|p| policy.allows_port(*p)).count();
        assert_eq!(allowed > 0, policy.allows_some_port());
        let again: PortPolicy = policy.to_string().parse().expect("own rendering parses");
        assert_eq!(again, policy);
    }
});
