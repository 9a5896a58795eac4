//! One HTTP/1.0 request on a directory stream, read as C-tor's directory
//! server reads it (`directory_handle_command`, `parse_http_command`,
//! `parse_http_url`, `http_get_header`): the head ends at the first empty
//! line (`\r\n\r\n`) and may be at most [`MAX_HEAD_BYTES`] long; the method
//! is the first word (GET or POST, any case); the request line is
//! `METHOD SP URL SP HTTP/1.x CR`; a URL that does not start with `/tor/`
//! gets it (`/robots.txt` is `/tor/robots.txt`), and a proxy-style
//! `http://host/` prefix is dropped. Headers are looked up by a
//! case-insensitive `Name: ` at the start of a line, the first one wins.
//! A body (POST) is never read: no answer of a cache depends on it.

use crate::error::ServeError;

/// The longest request head: C-tor's `MAX_HEADERS_SIZE`. A C-tor client
/// asks for up to 500 microdescriptors in one tunnelled request
/// (`max_dl_per_request` when it must use BEGIN_DIR), 44 bytes each in the
/// URL: about 22 KB.
pub const MAX_HEAD_BYTES: usize = 50_000;

/// The methods a directory server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Fetch a document (dir-spec §4).
    Get,
    /// Upload one (descriptors, votes, onion-service descriptors): only
    /// authorities and HSDirs take them.
    Post,
}

/// A request head, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The URL as the URL table sees it (starting `/tor/`, with any
    /// trailing `.z` still there).
    pub url: String,
    /// The head's text after the request line (header lines).
    headers: String,
}

impl Request {
    /// Parse a complete head (up to, not including, the empty line).
    /// Errors: the method is neither GET nor POST
    /// ([`ServeError::UnknownMethod`]); the request line is malformed
    /// ([`ServeError::BadRequestLine`], C-tor answers 400).
    pub fn parse(head: &str) -> Result<Request, ServeError> {
        // C-tor `directory_handle_command`: strncasecmp on the first
        // three or four bytes, before the request line is parsed.
        let starts = |p: &str| {
            head.get(..p.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(p))
        };
        let method = if starts("GET") {
            Method::Get
        } else if starts("POST") {
            Method::Post
        } else {
            return Err(ServeError::UnknownMethod {
                method: head
                    .split_ascii_whitespace()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(16)
                    .collect(),
            });
        };
        let (line, headers) = head.split_once('\n').unwrap_or((head, ""));
        // The head ends before "\r\n\r\n": the last line lost its CR.
        let line = if headers.is_empty() && !line.ends_with('\r') {
            format!("{line}\r")
        } else {
            line.to_owned()
        };
        let url = request_url(&line).ok_or(ServeError::BadRequestLine)?;
        Ok(Request {
            method,
            url: rewrite_url(url),
            headers: headers.to_owned(),
        })
    }

    /// The value of the first header line starting with `name: ` (any
    /// case), up to its CR (C-tor `http_get_header`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.split('\n').find_map(|line| {
            let key = line.get(..name.len())?;
            let rest = line.get(name.len()..)?.strip_prefix(": ")?;
            key.eq_ignore_ascii_case(name)
                .then(|| rest.split('\r').next().unwrap_or(rest))
        })
    }
}

/// C-tor `parse_http_command`: the URL of `line`, a request line ending
/// in CR.
fn request_url(line: &str) -> Option<&str> {
    let ws = |c: char| c == ' ' || c == '\t';
    let end_of_word = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let s = line.trim_start_matches(ws);
    let after_command = s.get(s.find(end_of_word)?..)?;
    let rest = after_command.trim_start_matches(ws);
    if rest.is_empty() || rest.starts_with(['\r', '\n']) {
        return None;
    }
    let url_end = rest.find(end_of_word)?;
    let (mut url, after) = rest.split_at(url_end);
    // "http[s]://hostname/..." as a proxy would send it.
    if let Some(hostpart) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        && let Some(slash) = hostpart.find('/')
    {
        url = hostpart.get(slash..)?;
    }
    // "HTTP/1.%u%c" with the character a CR.
    let version = after.trim_start_matches(ws).strip_prefix("HTTP/1.")?;
    let minor_len = version.bytes().take_while(u8::is_ascii_digit).count();
    if minor_len == 0 || version.get(minor_len..minor_len + 1) != Some("\r") {
        return None;
    }
    Some(url)
}

/// C-tor `parse_http_url`: a URL not under `/tor/` is put there.
fn rewrite_url(url: &str) -> String {
    if url.starts_with("/tor/") {
        url.to_owned()
    } else if url.starts_with('/') {
        format!("/tor{url}")
    } else {
        format!("/tor/{url}")
    }
}

/// Collects a request head from the bytes of a stream, bounded by
/// [`MAX_HEAD_BYTES`].
#[derive(Debug, Default)]
pub struct RequestParser {
    buf: Vec<u8>,
    done: bool,
}

impl RequestParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the head was complete (or refused): bytes pushed after
    /// that are ignored.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Add `data`; the request once the head is complete (once), `None`
    /// while it is not. Bytes after the head (a POST's body) are ignored.
    /// Errors: the head passes [`MAX_HEAD_BYTES`] ([`ServeError::HeadTooLarge`]),
    /// or it cannot be parsed (see [`Request::parse`]). After a request or an
    /// error, nothing more comes out.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Request>, ServeError> {
        if self.done {
            return Ok(None);
        }
        // Look for the end from just before the new bytes.
        let from = self.buf.len().saturating_sub(3);
        let room = (MAX_HEAD_BYTES + 4).saturating_sub(self.buf.len());
        self.buf
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or(data));
        let end = self
            .buf
            .get(from..)
            .and_then(|tail| tail.windows(4).position(|w| w == b"\r\n\r\n"))
            .map(|i| from + i);
        let Some(end) = end else {
            if self.buf.len() > MAX_HEAD_BYTES {
                self.done = true;
                self.buf = Vec::new();
                return Err(ServeError::HeadTooLarge {
                    limit: MAX_HEAD_BYTES,
                });
            }
            return Ok(None);
        };
        self.done = true;
        let head = std::mem::take(&mut self.buf);
        if end > MAX_HEAD_BYTES {
            return Err(ServeError::HeadTooLarge {
                limit: MAX_HEAD_BYTES,
            });
        }
        let text = String::from_utf8_lossy(head.get(..end).unwrap_or_default());
        Request::parse(&text).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    fn parse(text: &str) -> Result<Option<Request>, ServeError> {
        RequestParser::new().push(text.as_bytes())
    }

    #[test]
    fn c_tor_client_requests() {
        let r = parse(
            "GET /tor/status-vote/current/consensus-microdesc/0232AF+14C131.z HTTP/1.0\r\n\
             Host: 127.0.0.1:5000\r\nAccept-Encoding: deflate, identity, gzip\r\n\
             X-Or-Diff-From-Consensus: ABCD\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.url,
            "/tor/status-vote/current/consensus-microdesc/0232AF+14C131.z"
        );
        assert_eq!(r.header("accept-encoding"), Some("deflate, identity, gzip"));
        assert_eq!(r.header("X-Or-Diff-From-Consensus"), Some("ABCD"));
        assert_eq!(r.header("If-Modified-Since"), None);
        // No header lines at all.
        let r = parse("GET /tor/keys/all HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.url, "/tor/keys/all");
    }

    #[test]
    fn urls_are_rewritten_as_c_tor_does() {
        for (line, url) in [
            ("GET / HTTP/1.0", "/tor/"),
            ("GET /robots.txt HTTP/1.1", "/tor/robots.txt"),
            ("GET robots.txt HTTP/1.0", "/tor/robots.txt"),
            (
                "get http://1.2.3.4:80/tor/keys/all HTTP/1.0",
                "/tor/keys/all",
            ),
            ("GET https://host/x HTTP/1.0", "/tor/x"),
            ("GET http://host HTTP/1.0", "/tor/http://host"),
            ("GET\t/tor/micro/d/x  HTTP/1.0", "/tor/micro/d/x"),
            ("POST /tor/ HTTP/1.0", "/tor/"),
        ] {
            let r = parse(&format!("{line}\r\n\r\n")).unwrap().unwrap();
            assert_eq!(r.url, url, "{line}");
        }
    }

    #[test]
    fn bad_request_lines() {
        for line in [
            "GET",
            "GET ",
            "GET /tor/",
            "GET /tor/ HTTP/2.0",
            "GET /tor/ HTTP/1.",
            "GET /tor/ HTTP/1.0x",
            "GET /tor/ FTP/1.0",
        ] {
            let err = parse(&format!("{line}\r\n\r\n")).unwrap_err();
            assert_eq!(err, ServeError::BadRequestLine, "{line:?}");
            assert!(!err.closes_stream());
        }
        // C-tor looks at the first bytes for the method: no leading space.
        assert!(
            parse(" GET /tor/ HTTP/1.0\r\n\r\n")
                .unwrap_err()
                .closes_stream()
        );
        let err = parse("PUT /tor/ HTTP/1.0\r\n\r\n").unwrap_err();
        assert!(err.closes_stream());
        assert!(matches!(err, ServeError::UnknownMethod { method } if method == "PUT"));
    }

    #[test]
    fn head_is_bounded_and_split_anywhere() {
        let req = "GET /tor/keys/all HTTP/1.0\r\nHost: x\r\n\r\n";
        for split in 0..req.len() {
            let mut p = RequestParser::new();
            let (a, b) = req.as_bytes().split_at(split);
            let first = p.push(a).unwrap();
            if split < req.len() {
                assert!(first.is_none(), "{split}");
                assert_eq!(p.push(b).unwrap().unwrap().url, "/tor/keys/all");
            }
            assert!(p.is_done());
            assert_eq!(p.push(b"more").unwrap(), None);
        }
        // One byte at a time up to the limit, then refused.
        let mut p = RequestParser::new();
        let long = format!("GET /tor/{} HTTP/1.0\r\n", "a".repeat(MAX_HEAD_BYTES));
        let mut out = Ok(None);
        for chunk in long.as_bytes().chunks(1000) {
            out = p.push(chunk);
            if out.is_err() {
                break;
            }
        }
        assert_eq!(
            out,
            Err(ServeError::HeadTooLarge {
                limit: MAX_HEAD_BYTES
            })
        );
        assert!(p.buffered() == 0 && p.is_done());
        // A head that ends just within the limit is taken.
        let pad = MAX_HEAD_BYTES - "GET /tor/ HTTP/1.0\r\nX: \r\n".len() + 2;
        let ok = format!("GET /tor/ HTTP/1.0\r\nX: {}\r\n\r\n", "b".repeat(pad - 2));
        assert_eq!(ok.len(), MAX_HEAD_BYTES + 2);
        assert!(parse(&ok).unwrap().is_some());
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..40)
        ) {
            let mut p = RequestParser::new();
            for c in &chunks {
                let _ = p.push(c);
                prop_assert!(p.buffered() <= MAX_HEAD_BYTES + 4);
            }
        }

        #[test]
        fn any_path_survives(path in "/tor/[a-zA-Z0-9/+=.-]{0,200}") {
            let r = parse(&format!("GET {path} HTTP/1.0\r\n\r\n")).unwrap().unwrap();
            prop_assert_eq!(r.url, path);
        }
    }
}
