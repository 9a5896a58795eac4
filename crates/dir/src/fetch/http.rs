//! The HTTP/1.0 of directory requests (dir-spec §4): the GET a client
//! sends, over BEGIN_DIR or to a DirPort, and the answer read until the
//! stream ends, split into status, headers and a body decoded as its
//! `Content-Encoding` says (or its magic bytes, when the two disagree, as
//! C-tor does).

use std::fmt::Write as _;

use thiserror::Error;

use super::compress::{self, DecodeError, Encoding};

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// A request: the path and the extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path, e.g. `/tor/status-vote/current/consensus-microdesc/A+B.z`.
    pub path: String,
    /// Headers besides `Host`, in order.
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    /// A GET of `path` with no extra header.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            headers: Vec::new(),
        }
    }

    /// Add a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes to send, as C-tor writes them (`directory_send_command`):
    /// `GET path HTTP/1.0`, `Host`, the headers, a blank line.
    pub fn encode(&self, host: &str) -> Vec<u8> {
        let mut out = format!("GET {} HTTP/1.0\r\nHost: {host}\r\n", self.path);
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// A response whose body was decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// How the body came (after checking its magic bytes).
    pub encoding: Encoding,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// Why a response was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not an HTTP/1.x response, or its head is unreadable.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// A status other than 200 (or 304 where the caller handles it).
    #[error("HTTP {status} {reason}")]
    Status {
        /// The code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A `Content-Encoding` we did not offer.
    #[error("body in an encoding we did not ask for: {0:?}")]
    UnknownEncoding(String),
    /// The body could not be decoded, or decodes to too much.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl ResponseError {
    /// True for a compression bomb.
    pub fn is_bomb(&self) -> bool {
        matches!(self, Self::Decode(DecodeError::Bomb { .. }))
    }
}

/// Split a complete response (as read until the stream ended) and decode
/// its body to at most `max_body` bytes. A non-200 status is an error,
/// except 304 (Not Modified), returned with an empty body.
pub fn parse_response(buf: &[u8], max_body: usize) -> Result<Response, ResponseError> {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ResponseError::Malformed("no end of headers"))?;
    if head_end > MAX_HEAD {
        return Err(ResponseError::Malformed("headers too long"));
    }
    let head = std::str::from_utf8(buf.get(..head_end).unwrap_or_default())
        .map_err(|_| ResponseError::Malformed("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().splitn(3, ' ');
    // C-tor (`parse_http_response`): "HTTP/1." and one digit, then the
    // status. Anything else in the version (a bare CR, a NUL: found by
    // the dir_http_response fuzz target) is no status line.
    let version = parts.next().unwrap_or_default().as_bytes();
    if !matches!(version, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit()) {
        return Err(ResponseError::Malformed("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ResponseError::Malformed("bad status code"))?;
    let reason = parts.next().unwrap_or_default().trim().to_owned();
    let mut declared = Encoding::Identity;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-encoding")
        {
            declared = Encoding::from_name(value)
                .ok_or_else(|| ResponseError::UnknownEncoding(value.trim().to_owned()))?;
        }
    }
    if status == 304 {
        return Ok(Response {
            status,
            reason,
            encoding: Encoding::Identity,
            body: Vec::new(),
        });
    }
    if status != 200 {
        return Err(ResponseError::Status { status, reason });
    }
    let raw = buf.get(head_end + 4..).unwrap_or_default();
    // C-tor (`dir_client_decompress_response_body`): a body whose magic
    // bytes say otherwise is decoded as they say; a "compressed" body that
    // does not decode but reads as plain text is taken as it is.
    let encoding = Encoding::sniff(raw).unwrap_or(declared);
    let body = match compress::decode(encoding, raw, max_body) {
        Ok(body) => body,
        Err(DecodeError::Corrupt { .. }) if encoding != declared => {
            compress::decode(declared, raw, max_body)?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Response {
        status,
        reason,
        encoding,
        body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write as _;

    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A version with anything but one digit after "HTTP/1." is no status
    /// line (the fuzz target found "HTTP/1." then control bytes, a bare
    /// CR and NULs, read as a 503 from the token after them).
    #[test]
    fn only_http_1_digit_versions_are_status_lines() {
        let mut odd = b"HTTP/1.".to_vec();
        odd.extend_from_slice(&[0x18; 8]);
        odd.extend_from_slice(b"\r\r\0\x180 503 Directory busy\r\n\r\n");
        assert!(matches!(
            parse_response(&odd, 100),
            Err(ResponseError::Malformed(_))
        ));
        for v in ["HTTP/1.", "HTTP/1.10", "HTTP/2.0", "http/1.0"] {
            let r = format!("{v} 503 busy\r\n\r\n");
            assert!(
                matches!(
                    parse_response(r.as_bytes(), 100),
                    Err(ResponseError::Malformed(_))
                ),
                "{v}"
            );
        }
        let r = parse_response(b"HTTP/1.0 503 busy\r\n\r\n", 100);
        assert!(
            matches!(r, Err(ResponseError::Status { status: 503, .. })),
            "{r:?}"
        );
    }

    fn response(head: &str, body: &[u8]) -> Vec<u8> {
        let mut out = head.as_bytes().to_vec();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn requests_are_written_as_ctor_writes_them() {
        let r = Request::get("/tor/micro/d/AAA.z")
            .with("Accept-Encoding", compress::ACCEPT_ENCODING)
            .encode("1.2.3.4:443");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "GET /tor/micro/d/AAA.z HTTP/1.0\r\nHost: 1.2.3.4:443\r\nAccept-Encoding: x-zstd, deflate, gzip, identity\r\n\r\n"
        );
    }

    #[test]
    fn bodies_are_decoded_as_declared_or_as_their_magic_says() {
        let plain = b"network-status-version 3 microdesc\n".repeat(100);
        let z = zlib(&plain);
        let declared = response(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: deflate",
            &z,
        );
        let r = parse_response(&declared, 1 << 20).unwrap();
        assert_eq!(
            (r.encoding, r.body.as_slice()),
            (Encoding::Deflate, &plain[..])
        );
        // Undeclared, but deflate by its magic (a `.z` URL without header).
        let r = parse_response(&response("HTTP/1.0 200 OK", &z), 1 << 20).unwrap();
        assert_eq!(r.encoding, Encoding::Deflate);
        assert_eq!(r.body, plain);
        // Declared identity, plain text.
        let r = parse_response(
            &response("HTTP/1.0 200 OK\r\nContent-Encoding: identity", &plain),
            1 << 20,
        )
        .unwrap();
        assert_eq!((r.encoding, r.body), (Encoding::Identity, plain.clone()));
    }

    #[test]
    fn errors_name_what_went_wrong() {
        let e = parse_response(&response("HTTP/1.0 503 Busy", b""), 10).unwrap_err();
        assert_eq!(e.to_string(), "HTTP 503 Busy");
        let r = parse_response(&response("HTTP/1.0 304 Not modified", b""), 10).unwrap();
        assert_eq!(r.status, 304);
        assert!(matches!(
            parse_response(b"garbage", 10),
            Err(ResponseError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(&response("SMTP 200 OK", b""), 10),
            Err(ResponseError::Malformed(_))
        ));
        let e = parse_response(
            &response("HTTP/1.0 200 OK\r\nContent-Encoding: x-tor-lzma", b"x"),
            10,
        )
        .unwrap_err();
        assert!(matches!(e, ResponseError::UnknownEncoding(_)), "{e}");
        let zeros = zlib(&vec![0; 8 << 20]);
        let e = parse_response(&response("HTTP/1.0 200 OK", &zeros), 16 << 20).unwrap_err();
        assert!(e.is_bomb(), "{e}");
        let e = parse_response(&response("HTTP/1.0 200 OK", &[b'a'; 11]), 10).unwrap_err();
        assert!(e.is_bomb(), "{e}");
    }
}
