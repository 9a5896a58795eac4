//! Directory responses as `braid_dir::fetch::http::parse_response` splits
//! and decodes them (over BEGIN_DIR and from DirPorts), two ways:
//!
//! - the input's bytes as a whole response, `max_body` chosen by the
//!   input (0 to 64 KiB);
//! - a response made from the input: a status, a `Content-Encoding` header
//!   (declared or not, right or wrong) and a body sent as is or deflated or
//!   gzipped.
//!
//! Invariants: only a 200 or 304 is accepted, a 304 with no body; an
//! accepted body is at most `max_body`; an identity body is the bytes
//! after the first blank line; a refused status is the one on the status
//! line; a body we compressed comes back byte for byte when it fits
//! `max_body` and is refused as too large (never truncated) when it does
//! not; a head past 16 KiB is refused.
#![no_main]

use std::io::Write as _;

use braid_dir::fetch::http::{MAX_HEAD, parse_response};
use braid_dir::fetch::{DecodeError, Encoding, ResponseError};
use libfuzzer_sys::fuzz_target;

/// The status code on the first line, as an HTTP/1.x response has it.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn whole(data: &[u8], max_body: usize) {
    let result = parse_response(data, max_body);
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n");
    match &result {
        Ok(r) => {
            let end = head_end.expect("an accepted response has a blank line");
            assert!(end <= MAX_HEAD, "a head of {end} bytes was accepted");
            assert_eq!(status_of(&data[..end]), Some(r.status));
            assert!(r.status == 200 || r.status == 304, "{}", r.status);
            assert!(r.body.len() <= max_body);
            if r.status == 304 {
                assert!(r.body.is_empty());
            } else if r.encoding == Encoding::Identity {
                assert_eq!(r.body, &data[end + 4..]);
            }
        }
        Err(ResponseError::Status { status, .. }) => {
            let end = head_end.expect("a status follows a blank line");
            assert_eq!(status_of(&data[..end]), Some(*status));
            assert!(*status != 200 && *status != 304);
        }
        Err(_) => {}
    }
}

fn made(status: u16, declare: u8, send: u8, body: &[u8], max_body: usize) {
    let encodings = [Encoding::Identity, Encoding::Deflate, Encoding::Gzip];
    let sent = encodings[usize::from(send) % encodings.len()];
    let raw = match sent {
        Encoding::Identity => body.to_vec(),
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        _ => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
    };
    // Declared right, declared wrong, or not declared.
    let header = match declare % 3 {
        0 => format!("\r\nContent-Encoding: {}", sent.name()),
        1 => "\r\nContent-Encoding: deflate".to_owned(),
        _ => String::new(),
    };
    let mut response = format!("HTTP/1.0 {status} Whatever{header}\r\n\r\n").into_bytes();
    response.extend_from_slice(&raw);
    let result = parse_response(&response, max_body);
    whole(&response, max_body);
    if status == 304 {
        let r = result.expect("a 304 is accepted");
        assert!(r.body.is_empty());
        return;
    }
    if status != 200 {
        assert!(
            matches!(result, Err(ResponseError::Status { status: s, .. }) if s == status),
            "{result:?}"
        );
        return;
    }
    // A plain body that happens to start like compressed data may decode
    // as such; only a body that does not is checked byte for byte.
    if sent == Encoding::Identity && Encoding::sniff(body).is_some() {
        return;
    }
    // The magic bytes win over a wrong header (C-tor does the same); a
    // plain body declared compressed does not decode.
    let declared_wrong_plain = sent == Encoding::Identity && declare % 3 == 1;
    match result {
        Ok(r) => {
            assert!(!declared_wrong_plain || body.is_empty() || r.body == body);
            assert_eq!(r.body, body, "sent {sent:?}, header {header:?}");
            assert!(body.len() <= max_body);
        }
        Err(ResponseError::Decode(DecodeError::Bomb { .. })) => {
            assert!(body.len() > max_body, "a {}-byte body refused with limit {max_body}", body.len());
        }
        Err(e) => assert!(declared_wrong_plain, "sent {sent:?}, header {header:?}: {e}"),
    }
}

fuzz_target!(|input: (bool, u16, u8, u8, u16, &[u8])| {
    let (structured, status_sel, declare, send, max_sel, data) = input;
    let max_body = usize::from(max_sel);
    if structured {
        // Bodies stay under the 1 MiB past which the ratio rule applies.
        let status = [200, 200, 200, 304, 404, 503][usize::from(status_sel) % 6];
        made(status, declare, send, data, max_body);
    } else {
        whole(data, max_body);
    }
});
