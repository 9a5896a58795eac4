//! The bootstrap state machine fed arbitrary cache files and responses.
#![no_main]

mod recorded;

use braid_dir::{Authority, DirBootstrap, DirConfig, DocKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &str, &str)| {
    let (order, a, b) = input;
    let config = DirConfig {
        authorities: recorded::authorities()
            .into_iter()
            .enumerate()
            .map(|(i, v3ident)| Authority {
                nickname: format!("a{i}"),
                v3ident,
                dir_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
            })
            .collect(),
        fallbacks: Vec::new(),
    };
    let now = recorded::during();
    let mut boot = DirBootstrap::new(&config, u64::from(order));
    let kinds = [
        DocKind::AuthorityCert,
        DocKind::Consensus,
        DocKind::Microdesc,
    ];
    let _ = boot.handle_cached(kinds[usize::from(order % 3)], a, now);
    let _ = boot.handle_cached(DocKind::AuthorityCert, recorded::CERTS, now);
    while let Some(req) = boot.poll_request(now) {
        boot.handle_response(req.id, Ok(b.to_owned()), now);
        if boot.progress().percent == 100 {
            break;
        }
    }
    while boot.poll_event().is_some() {}
});
