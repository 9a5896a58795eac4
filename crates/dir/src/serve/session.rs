//! One directory stream (a BEGIN_DIR stream, tor-spec §6.2): the client's
//! bytes in until the request is complete, then one answer out, then the
//! stream ends (HTTP/1.0: C-tor closes the connection after each answer).
//! The driver moves bytes and says when it has the cache at hand; the
//! session decides what to send.

use std::time::{Duration, Instant, SystemTime};

use super::answer::{answer, busy, doc_type};
use super::cache::DirCache;
use super::request::{Request, RequestParser};
use super::response::{DocType, Response, Spool};
use crate::error::ServeError;

/// A directory stream that moves no byte for this long is closed (C-tor
/// `TestingDirConnectionMaxStall`, 5 minutes).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What became of a stream's request, once decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with `status` (its body follows the head).
    Answered {
        /// What was asked for.
        doc: DocType,
        /// The status code.
        status: u16,
        /// Bytes of the answer, head and body.
        bytes: usize,
    },
    /// No answer: the stream ends (a request C-tor closes the connection
    /// on, or one C-tor writes nothing for).
    Closed {
        /// Why, if the request was at fault.
        error: Option<ServeError>,
    },
}

#[derive(Debug)]
enum State {
    /// Reading the request.
    Reading(RequestParser),
    /// The request is complete and waits for [`Session::answer`].
    Ready(Request),
    /// The answer's bytes not handed out yet.
    Answering(Spool),
    /// Nothing more to send: end the stream.
    Finished,
}

/// One directory stream. See the [module docs](self).
#[derive(Debug)]
pub struct Session {
    state: State,
    last_progress: Instant,
}

impl Session {
    /// A stream opened at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Reading(RequestParser::new()),
            last_progress: now,
        }
    }

    /// Bytes from the client. Returns the outcome if they ended the
    /// stream (a request too large or with an unknown method); a bad
    /// request line is answered 400 at once. When the request is
    /// complete, [`is_ready`](Self::is_ready) turns true: call
    /// [`answer`](Self::answer). Bytes after the request are ignored.
    pub fn handle_input(&mut self, data: &[u8], now: Instant, date: SystemTime) -> Option<Outcome> {
        let State::Reading(parser) = &mut self.state else {
            return None;
        };
        if !data.is_empty() {
            self.last_progress = now;
        }
        match parser.push(data) {
            Ok(None) => None,
            Ok(Some(req)) => {
                self.state = State::Ready(req);
                None
            }
            Err(e) if e.closes_stream() => {
                self.state = State::Finished;
                Some(Outcome::Closed { error: Some(e) })
            }
            // C-tor: `parse_http_url` failed, 400.
            Err(_) => Some(self.send(Response::short(DocType::Other, 400, "Bad request", date))),
        }
    }

    /// The request is complete and waits for [`answer`](Self::answer).
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }

    /// The URL asked, once the request is complete.
    pub fn url(&self) -> Option<&str> {
        match &self.state {
            State::Ready(r) => Some(&r.url),
            _ => None,
        }
    }

    /// Answer the complete request from `cache` at `date` (nothing if it
    /// is not complete or was answered).
    pub fn answer(&mut self, cache: &DirCache, date: SystemTime) -> Option<Outcome> {
        let State::Ready(req) = &self.state else {
            return None;
        };
        Some(match answer(cache, req, date) {
            Some(r) => self.send(r),
            None => {
                self.state = State::Finished;
                Outcome::Closed { error: None }
            }
        })
    }

    /// Answer the complete request 503 (too many answers under way).
    pub fn answer_busy(&mut self, date: SystemTime) -> Option<Outcome> {
        let State::Ready(req) = &self.state else {
            return None;
        };
        let r = busy(
            doc_type(req.url.strip_suffix(".z").unwrap_or(&req.url)),
            date,
        );
        Some(self.send(r))
    }

    fn send(&mut self, r: Response) -> Outcome {
        let outcome = Outcome::Answered {
            doc: r.doc,
            status: r.status,
            bytes: r.head().len() + r.body_len(),
        };
        self.state = State::Answering(r.into_spool());
        outcome
    }

    /// Whether client bytes are still wanted (the request is not
    /// complete).
    pub fn wants_input(&self) -> bool {
        matches!(self.state, State::Reading(_))
    }

    /// The next answer bytes to send; empty when none wait.
    pub fn output(&self) -> &[u8] {
        match &self.state {
            State::Answering(s) => s.chunk(),
            _ => &[],
        }
    }

    /// `n` bytes of [`output`](Self::output) were sent.
    pub fn consume(&mut self, n: usize, now: Instant) {
        if let State::Answering(s) = &mut self.state {
            if n > 0 {
                self.last_progress = now;
            }
            s.advance(n);
            if s.is_empty() {
                self.state = State::Finished;
            }
        }
    }

    /// Bytes of the answer not sent yet.
    pub fn pending(&self) -> usize {
        match &self.state {
            State::Answering(s) => s.remaining(),
            _ => 0,
        }
    }

    /// Everything was sent (or nothing is to be): end the stream.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// No byte moved for [`STALL_TIMEOUT`]: close the stream.
    pub fn is_stalled(&self, now: Instant) -> bool {
        !self.is_finished() && now.saturating_duration_since(self.last_progress) >= STALL_TIMEOUT
    }
}
