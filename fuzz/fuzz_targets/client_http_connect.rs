//! The HTTP CONNECT front end's request parser
//! (`braid_client::http_connect::proto::HttpConnectParser`): the client's
//! bytes in arbitrary chunks.
//!
//! Invariants: no panic; the outcome does not depend on how the bytes were
//! cut (the same request, early data or refusal as all at once); a request
//! comes from a head of at most `MAX_HEAD` bytes that ends at its first
//! blank line, and everything after that line is early data; a target's
//! host is 1 to 255 bytes and its port not 0; after a request or a refusal
//! the parser takes no more input; a refusal's answer is a whole HTTP/1.0
//! 4xx response whose Content-Length is its body's.
#![no_main]

use braid_client::http_connect::proto::{
    HttpConnectError, HttpConnectParser, HttpConnectRequest, MAX_HEAD, MAX_HOST,
};
use braid_client::socks::SocksTarget;
use libfuzzer_sys::fuzz_target;

type Outcome = Result<Option<(HttpConnectRequest, Vec<u8>)>, HttpConnectError>;

/// Feed `data` in chunks of the given sizes (cycled; all at once if none)
/// until a request or a refusal; also the bytes fed.
fn run(sizes: &[u8], data: &[u8]) -> (Outcome, usize) {
    let mut p = HttpConnectParser::new();
    let mut rest = data;
    let mut fed = 0;
    let mut sizes = sizes.iter().copied().cycle();
    loop {
        let n = sizes
            .next()
            .map_or(rest.len(), |s| usize::from(s).max(1))
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        fed += n;
        match p.handle_bytes(chunk) {
            Ok(Some(req)) => {
                let early = p.take_early_data();
                assert!(p.handle_bytes(b"x").is_err(), "input after the request");
                return (Ok(Some((req, early))), fed);
            }
            Ok(None) => {}
            Err(e) => {
                assert!(p.handle_bytes(b"").is_err(), "failed parser went on");
                assert!(p.take_early_data().is_empty());
                return (Err(e), fed);
            }
        }
        if rest.is_empty() {
            return (Ok(None), fed);
        }
    }
}

fn check_response(response: &[u8]) {
    let text = std::str::from_utf8(response).expect("answers are text");
    assert!(text.starts_with("HTTP/1.0 4"), "{text:?}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    assert_eq!(length, body.len());
}

fuzz_target!(|input: (Vec<u8>, &[u8])| {
    let (sizes, data) = input;
    let (chunked, fed) = run(&sizes, data);
    let (whole, _) = run(&[], data);
    match (&chunked, &whole) {
        // No complete head in the input, however it is cut.
        (Ok(None), _) => assert_eq!(whole, chunked, "all at once found a head"),
        (Ok(Some((req, early))), Ok(Some((w_req, w_early)))) => {
            assert_eq!(req, w_req);
            // The chunked run stopped at the chunk that completed the
            // head: its early data is a prefix of the whole run's.
            assert!(w_early.starts_with(early));
            let head_len = fed - early.len();
            assert!(head_len <= MAX_HEAD);
            let head = &data[..head_len];
            assert!(head.ends_with(b"\r\n\r\n"));
            assert_eq!(
                head.windows(4).position(|w| w == b"\r\n\r\n"),
                Some(head_len - 4),
                "the head ends at its first blank line"
            );
            assert_eq!(&data[head_len..fed], &early[..]);
            match &req.target {
                SocksTarget::Hostname(h, p) => {
                    assert!(!h.is_empty() && h.len() <= MAX_HOST);
                    assert_ne!(*p, 0);
                }
                SocksTarget::Ip(_, p) => assert_ne!(*p, 0),
            }
        }
        (Err(e), Err(w)) => {
            assert_eq!(e, w);
            check_response(&e.response());
        }
        _ => panic!("chunked {chunked:?} but whole {whole:?}"),
    }
});
