//! Answers as C-tor's directory server writes them (`dircache.c`,
//! `write_short_http_response`, `write_http_response_header_impl`): HTTP/1.0,
//! a `Date`, and for documents `Content-Type: text/plain`, the
//! `Content-Encoding` (deflate, gzip or identity, as
//! [`choose_encoding`](super::answer::choose_encoding) picks), `Content-Length` where C-tor gives one,
//! `Expires` or `Pragma: no-cache`. No `X-Your-Address-Is`: a tunnelled
//! request comes from the previous hop, which need not learn its address
//! from us. The body is a list of shared parts (the cached documents), so
//! an answer copies nothing until it is written into the stream.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::date::format_http_date;
use crate::fetch::Encoding;

/// What a document answer lets caches do with it (C-tor's
/// `cache_lifetime` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLifetime {
    /// `Expires:` this long after now.
    Expires(Duration),
    /// `Pragma: no-cache`.
    NoCache,
}

/// The kinds of document answered, for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocType {
    /// A consensus (`/tor/status-vote/current/consensus*`).
    Consensus,
    /// A consensus diff answering a consensus request (dir-spec §4.5).
    ConsensusDiff,
    /// Microdescriptors (`/tor/micro/d/`).
    Microdescs,
    /// Authority key certificates (`/tor/keys/`).
    Certificates,
    /// `robots.txt`.
    Robots,
    /// Anything else (404s, uploads).
    Other,
}

impl DocType {
    /// A short name (metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            DocType::Consensus => "consensus",
            DocType::ConsensusDiff => "consensus-diff",
            DocType::Microdescs => "microdescs",
            DocType::Certificates => "certificates",
            DocType::Robots => "robots",
            DocType::Other => "other",
        }
    }
}

/// An answer: status line and headers, then the body's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// What was asked for.
    pub doc: DocType,
    head: Vec<u8>,
    body: Vec<Arc<[u8]>>,
}

impl Response {
    /// A status line without a body (C-tor `write_short_http_response`;
    /// relays include the `Date`).
    pub fn short(doc: DocType, status: u16, reason: &str, now: SystemTime) -> Response {
        Response {
            status,
            doc,
            head: format!(
                "HTTP/1.0 {status} {reason}\r\nDate: {}\r\n\r\n",
                format_http_date(now)
            )
            .into_bytes(),
            body: Vec::new(),
        }
    }

    /// `200 OK` with `body`, already in `encoding` (C-tor
    /// `write_http_response_header_impl` with type `text/plain`):
    /// `Content-Length` if `with_length`, then `Expires` or `Pragma`, then
    /// `extra` header lines (each ending in CRLF).
    pub fn ok(
        doc: DocType,
        (body, encoding): (Vec<Arc<[u8]>>, Encoding),
        with_length: bool,
        lifetime: CacheLifetime,
        extra: &str,
        now: SystemTime,
    ) -> Response {
        let mut head = format!(
            "HTTP/1.0 200 OK\r\nDate: {}\r\nContent-Type: text/plain\r\n\
             Content-Encoding: {}\r\n",
            format_http_date(now),
            encoding.name()
        );
        if with_length {
            let len: usize = body.iter().map(|b| b.len()).sum();
            let _ = write!(head, "Content-Length: {len}\r\n");
        }
        match lifetime {
            CacheLifetime::Expires(d) => {
                let _ = write!(
                    head,
                    "Expires: {}\r\n",
                    format_http_date(now.checked_add(d).unwrap_or(now))
                );
            }
            CacheLifetime::NoCache => head.push_str("Pragma: no-cache\r\n"),
        }
        head.push_str(extra);
        head.push_str("\r\n");
        Response {
            status: 200,
            doc,
            head: head.into_bytes(),
            body,
        }
    }

    /// The status line and headers.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Bytes of the body.
    pub fn body_len(&self) -> usize {
        self.body.iter().map(|b| b.len()).sum()
    }

    /// Every byte of the answer, copied (for tests and small answers).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        for part in &self.body {
            out.extend_from_slice(part);
        }
        out
    }

    /// The answer as bytes to hand out in pieces.
    pub fn into_spool(self) -> Spool {
        let mut parts: VecDeque<Arc<[u8]>> = VecDeque::with_capacity(self.body.len() + 1);
        parts.push_back(Arc::from(self.head));
        parts.extend(self.body.into_iter().filter(|p| !p.is_empty()));
        Spool { parts, offset: 0 }
    }
}

/// An answer's bytes not yet handed out: [`Spool::chunk`] is the next
/// contiguous piece, [`Spool::advance`] drops what was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spool {
    parts: VecDeque<Arc<[u8]>>,
    offset: usize,
}

impl Spool {
    /// The next bytes to hand out; empty when all went.
    pub fn chunk(&self) -> &[u8] {
        self.parts
            .front()
            .and_then(|p| p.get(self.offset..))
            .unwrap_or_default()
    }

    /// `n` bytes of [`chunk`](Self::chunk) were taken (more than the chunk
    /// holds counts as all of it).
    pub fn advance(&mut self, n: usize) {
        self.offset = self.offset.saturating_add(n);
        if let Some(p) = self.parts.front()
            && self.offset >= p.len()
        {
            self.parts.pop_front();
            self.offset = 0;
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.len())
            .sum::<usize>()
            .saturating_sub(self.offset)
    }

    /// Nothing is left.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::time::UNIX_EPOCH;

    use proptest::prelude::*;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn short_answers_are_c_tor_s() {
        let r = Response::short(DocType::Other, 404, "Not found", at(784_111_777));
        assert_eq!(
            r.to_bytes(),
            b"HTTP/1.0 404 Not found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        );
        assert_eq!(r.body_len(), 0);
    }

    #[test]
    fn documents_have_c_tor_s_headers() {
        let body: Vec<Arc<[u8]>> = vec![Arc::from(&b"abc"[..]), Arc::from(&b"de"[..])];
        let r = Response::ok(
            DocType::Certificates,
            (body.clone(), Encoding::Identity),
            true,
            CacheLifetime::Expires(Duration::from_secs(3600)),
            "",
            at(784_111_777),
        );
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "HTTP/1.0 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Encoding: identity\r\n\
             Content-Length: 5\r\nExpires: Sun, 06 Nov 1994 09:49:37 GMT\r\n\r\nabcde"
        );
        let r = Response::ok(
            DocType::Consensus,
            (body, Encoding::Identity),
            false,
            CacheLifetime::NoCache,
            "Vary: X-Or-Diff-From-Consensus\r\n",
            at(0),
        );
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            text.ends_with("Pragma: no-cache\r\nVary: X-Or-Diff-From-Consensus\r\n\r\nabcde"),
            "{text}"
        );
        assert!(!text.contains("Content-Length"));
    }

    proptest! {
        #[test]
        fn spool_hands_out_every_byte_once(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..8),
            takes in proptest::collection::vec(0_usize..80, 1..100),
        ) {
            let body: Vec<Arc<[u8]>> = parts.iter().map(|p| Arc::from(p.as_slice())).collect();
            let r = Response::ok(DocType::Other, (body, Encoding::Identity), true, CacheLifetime::NoCache, "", at(0));
            let want = r.to_bytes();
            let mut spool = r.into_spool();
            prop_assert_eq!(spool.remaining(), want.len());
            let mut got = Vec::new();
            for n in takes.iter().cycle().take(10_000) {
                if spool.is_empty() {
                    break;
                }
                let chunk = spool.chunk();
                prop_assert!(!chunk.is_empty());
                let n = (*n).max(1).min(chunk.len());
                got.extend_from_slice(&chunk[..n]);
                spool.advance(n);
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(spool.remaining(), 0);
        }
    }
}
