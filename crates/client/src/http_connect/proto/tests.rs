//! The HTTP CONNECT parser: requests, isolation headers, refusals and
//! their answers, the size bound.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use proptest::prelude::*;

use super::*;

fn parse(bytes: &[u8]) -> Result<Option<HttpConnectRequest>, HttpConnectError> {
    HttpConnectParser::new().handle_bytes(bytes)
}

fn status(response: &[u8]) -> String {
    let text = String::from_utf8(response.to_vec()).unwrap();
    text.lines().next().unwrap().to_owned()
}

#[test]
fn connect_with_a_hostname() {
    let req = parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(req.target, SocksTarget::Hostname("example.com".into(), 443));
    assert_eq!(req.isolation, IsolationKey::default());
}

#[test]
fn addresses_and_method_case() {
    let req = parse(b"connect 192.0.2.1:80 HTTP/1.0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        req.target,
        SocksTarget::Ip("192.0.2.1".parse().unwrap(), 80)
    );
    let req = parse(b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        req.target,
        SocksTarget::Ip("2001:db8::1".parse().unwrap(), 8443)
    );
}

#[test]
fn isolation_headers_as_c_tor() {
    let req = parse(
        b"CONNECT a.example:443 HTTP/1.1\r\n\
          proxy-authorization:  Basic dXNlcjpwYXNz \r\n\
          X-Tor-Stream-Isolation: tab-1\r\n\
          Proxy-Authorization: Basic c2Vjb25k\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    // The whole value, first header of each name.
    assert_eq!(req.isolation.username, b"Basic dXNlcjpwYXNz");
    assert_eq!(req.isolation.password, b"tab-1");
}

#[test]
fn byte_by_byte_and_early_data() {
    let msg = b"CONNECT h.example:22 HTTP/1.1\r\nUser-Agent: x\r\n\r\nSSH-2.0-client\r\n";
    let mut p = HttpConnectParser::new();
    let mut got = None;
    for b in msg {
        if let Some(r) = p.handle_bytes(&[*b]).unwrap() {
            got = Some(r);
            break;
        }
    }
    let req = got.unwrap();
    assert_eq!(req.target, SocksTarget::Hostname("h.example".into(), 22));
    // The head ended at the blank line; what came with it is early data.
    let mut whole = HttpConnectParser::new();
    assert_eq!(whole.handle_bytes(msg).unwrap().unwrap(), req);
    assert_eq!(whole.take_early_data(), b"SSH-2.0-client\r\n");
    assert_eq!(whole.handle_bytes(b"more"), Err(HttpConnectError::Finished));
}

#[test]
fn refusals_and_their_answers() {
    let cases: [(&[u8], &str); 12] = [
        (
            b"GET http://example.com/ HTTP/1.1\r\n\r\n",
            "HTTP/1.0 405 Method Not Allowed",
        ),
        (
            b"POST / HTTP/1.0\r\n\r\n",
            "HTTP/1.0 405 Method Not Allowed",
        ),
        (
            b"CONNECT example.com HTTP/1.1\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (
            b"CONNECT example.com:0 HTTP/1.1\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (
            b"CONNECT example.com:65536 HTTP/1.1\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (
            b"CONNECT example.com:+80 HTTP/1.1\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (b"CONNECT :80 HTTP/1.1\r\n\r\n", "HTTP/1.0 400 Bad Request"),
        (
            b"CONNECT ::1:80 HTTP/1.1\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (
            b"CONNECT example.com:80 HTTP/2.0\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (
            b"CONNECT example.com:80\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (
            b"CONNECT example.com:80 HTTP/1.1\r\nno colon\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
        (
            b"CONNECT  example.com:80 HTTP/1.1\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
        ),
    ];
    for (msg, want) in cases {
        let err = parse(msg).unwrap_err();
        assert_eq!(
            status(&err.response()),
            want,
            "{}",
            String::from_utf8_lossy(msg)
        );
    }
    let long_host = format!("CONNECT {}:80 HTTP/1.1\r\n\r\n", "h".repeat(256));
    let err = parse(long_host.as_bytes()).unwrap_err();
    assert_eq!(err, HttpConnectError::HostTooLong);
    assert_eq!(status(&err.response()), "HTTP/1.0 414 Request-URI Too Long");
    let ok_host = format!("CONNECT {}:80 HTTP/1.1\r\n\r\n", "h".repeat(255));
    assert!(parse(ok_host.as_bytes()).unwrap().is_some());
}

#[test]
fn the_head_is_bounded() {
    let mut p = HttpConnectParser::new();
    assert_eq!(p.handle_bytes(b"CONNECT a:1 HTTP/1.1\r\n").unwrap(), None);
    let filler = format!("X-Filler: {}\r\n", "f".repeat(100));
    let mut result = Ok(None);
    let mut fed = 22;
    while let Ok(None) = result {
        result = p.handle_bytes(filler.as_bytes());
        fed += filler.len();
        assert!(p.buf.len() <= MAX_HEAD + filler.len());
    }
    assert_eq!(result, Err(HttpConnectError::HeadTooLong));
    assert!(
        fed >= MAX_HEAD && fed < MAX_HEAD + filler.len() + 1,
        "{fed}"
    );
    // Exactly MAX_HEAD bytes with the blank line is still a request.
    let head = b"CONNECT a:1 HTTP/1.1\r\nX-Pad: ";
    let mut msg = head.to_vec();
    msg.extend(std::iter::repeat_n(b'p', MAX_HEAD - head.len() - 4));
    msg.extend_from_slice(b"\r\n\r\n");
    assert_eq!(msg.len(), MAX_HEAD);
    assert!(parse(&msg).unwrap().is_some());
    let mut longer = msg[..msg.len() - 4].to_vec();
    longer.extend_from_slice(b"p\r\n\r\n");
    assert_eq!(parse(&longer), Err(HttpConnectError::HeadTooLong));
}

#[test]
fn failures_map_to_c_tor_status_lines() {
    let cases = [
        (
            SocksReply::HostUnreachable,
            "HTTP/1.0 404 Not Found (resolve failed)",
        ),
        (
            SocksReply::ConnectionRefused,
            "HTTP/1.0 403 Forbidden (connection refused)",
        ),
        (
            SocksReply::NotAllowed,
            "HTTP/1.0 403 Forbidden (exit policy)",
        ),
        (SocksReply::TtlExpired, "HTTP/1.0 504 Gateway Timeout"),
        (SocksReply::GeneralFailure, "HTTP/1.0 502 Bad Gateway"),
    ];
    for (reply, want) in cases {
        let r = failure_response(reply, "why");
        assert_eq!(status(&r), want);
        assert!(r.ends_with(b"\r\nContent-Length: 4\r\n\r\nwhy\n"));
    }
    assert_eq!(SUCCESS, b"HTTP/1.0 200 OK\r\n\r\n");
}

proptest! {
    #[test]
    fn never_panics_and_stays_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..40)
    ) {
        let mut p = HttpConnectParser::new();
        for c in chunks {
            let len = c.len();
            match p.handle_bytes(&c) {
                Ok(Some(req)) => {
                    if let SocksTarget::Hostname(h, _) = &req.target {
                        prop_assert!(!h.is_empty() && h.len() <= MAX_HOST);
                    }
                    prop_assert!(req.target.port() != 0);
                    break;
                }
                Ok(None) => prop_assert!(p.buf.len() < MAX_HEAD + len),
                Err(e) => {
                    prop_assert!(e.response().starts_with(b"HTTP/1.0 4"));
                    break;
                }
            }
        }
    }

    #[test]
    fn any_target_round_trips(host in "[a-z0-9-]{1,40}(\\.[a-z0-9-]{1,20}){0,3}", port in 1u16..) {
        let msg = format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n");
        let req = parse(msg.as_bytes()).unwrap().unwrap();
        let want = match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => SocksTarget::Ip(IpAddr::V4(ip), port),
            Err(_) => SocksTarget::Hostname(host, port),
        };
        prop_assert_eq!(req.target, want);
    }
}
