//! The microdesc consensus: tor-netdoc's parser behind our time, majority
//! and signature checks. Seed the corpus with the recorded consensus.
#![no_main]

mod recorded;

use braid_dir::documents::{parse_certs, parse_consensus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let ids = recorded::authorities();
    let now = recorded::during();
    if let Ok(pending) = parse_consensus(text, &ids, now) {
        let (certs, _) = parse_certs(recorded::CERTS, &ids, now);
        let certs: Vec<_> = certs.into_iter().map(|c| c.cert).collect();
        let _ = pending.missing_certs(&certs, &ids);
        if let Ok(verified) = pending.verify(text, &certs, &ids) {
            let dir = braid_dir::NetDir::new(verified, None);
            let _ = dir.relays();
            let _ = dir.missing_digests();
        }
    }
});
