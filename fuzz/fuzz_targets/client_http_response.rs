//! HTTP responses from DirPorts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    if let Ok(body) = braid_client::http::parse_response(addr, data, 4096) {
        assert!(body.len() <= 4096);
    }
});
