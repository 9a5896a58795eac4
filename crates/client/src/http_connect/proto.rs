//! An HTTP CONNECT request, sans IO, read as C-tor's HTTPTunnelPort reads
//! it (`connection_ap_process_http_connect` in `connection_edge.c`):
//!
//! - the request head (request line and headers, up to the blank line) is
//!   at most [`MAX_HEAD`] bytes (C-tor's 8192), else 400;
//! - the request line is `CONNECT host:port HTTP/1.x` (the method in any
//!   case); another method gets 405, a malformed line or target 400, a
//!   host of 256 bytes or more 414;
//! - `Proxy-Authorization` and `X-Tor-Stream-Isolation` are the stream
//!   isolation credentials (their values as they are: C-tor puts them in
//!   the SOCKS username and password, so streams with different values
//!   never share a circuit);
//! - bytes after the head are the stream's first data, sent once it is
//!   open (C-tor leaves them in the connection's buffer).
//!
//! The answers are C-tor's status lines (`end_reason_to_http_connect_
//! response_line`), with a short plain-text body saying why on errors.

use std::net::IpAddr;

use thiserror::Error;

use crate::socks::{IsolationKey, SocksReply, SocksTarget};

/// The longest request head, blank line included (C-tor's limit).
pub const MAX_HEAD: usize = 8192;
/// The longest host (C-tor's `MAX_SOCKS_ADDR_LEN` is 256 with its NUL).
pub const MAX_HOST: usize = 255;

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConnectRequest {
    /// Where.
    pub target: SocksTarget,
    /// The isolation key: `Proxy-Authorization` as the username,
    /// `X-Tor-Stream-Isolation` as the password (empty when absent).
    pub isolation: IsolationKey,
}

/// A request that is refused; the answer is [`Self::response`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HttpConnectError {
    /// No blank line within [`MAX_HEAD`] bytes.
    #[error("request head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    /// A request line, target or header that does not parse.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Not CONNECT: a client that takes this port for an HTTP proxy.
    #[error("method {0:?} is not CONNECT")]
    NotConnect(String),
    /// A host of more than [`MAX_HOST`] bytes.
    #[error("host longer than {MAX_HOST} bytes")]
    HostTooLong,
    /// Bytes after the request was complete, or input after a failure.
    #[error("request already finished")]
    Finished,
}

impl HttpConnectError {
    /// C-tor's answer to it.
    pub fn response(&self) -> Vec<u8> {
        match self {
            Self::NotConnect(_) => response(
                "HTTP/1.0 405 Method Not Allowed",
                "This is an HTTP CONNECT tunnel, not an HTTP proxy: configure the \
                 application to use it as an HTTPS proxy (it then sends CONNECT), \
                 or use the SOCKS port.",
            ),
            Self::HostTooLong => response("HTTP/1.0 414 Request-URI Too Long", &self.to_string()),
            Self::HeadTooLong | Self::Malformed(_) | Self::Finished => {
                response("HTTP/1.0 400 Bad Request", &self.to_string())
            }
        }
    }
}

/// The answer to a CONNECT that opened its stream.
pub const SUCCESS: &[u8] = b"HTTP/1.0 200 OK\r\n\r\n";

/// The answer to a CONNECT that failed with `reply` (the SOCKS5 code of
/// the exit's END reason, or of a refusal), `why` in the body. C-tor maps
/// END reasons to status lines; the SOCKS5 code stands for the reasons
/// that map to it.
pub fn failure_response(reply: SocksReply, why: &str) -> Vec<u8> {
    let line = match reply {
        // RESOLVEFAILED, NOROUTE.
        SocksReply::HostUnreachable | SocksReply::NetworkUnreachable => {
            "HTTP/1.0 404 Not Found (resolve failed)"
        }
        // CONNECTREFUSED, CONNRESET, DONE before CONNECTED.
        SocksReply::ConnectionRefused => "HTTP/1.0 403 Forbidden (connection refused)",
        // EXITPOLICY, ENTRYPOLICY.
        SocksReply::NotAllowed => "HTTP/1.0 403 Forbidden (exit policy)",
        // TIMEOUT.
        SocksReply::TtlExpired => "HTTP/1.0 504 Gateway Timeout",
        // MISC, DESTROY, TORPROTOCOL, INTERNAL, RESOURCELIMIT, no circuit.
        SocksReply::Succeeded
        | SocksReply::GeneralFailure
        | SocksReply::CommandNotSupported
        | SocksReply::AddressTypeNotSupported => "HTTP/1.0 502 Bad Gateway",
    };
    response(line, why)
}

/// A status line and a one-line plain-text body.
fn response(status: &str, body: &str) -> Vec<u8> {
    let body = format!("{body}\n");
    format!(
        "{status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The request parser: bytes in, a request (or a refusal) out.
#[derive(Debug, Default)]
pub struct HttpConnectParser {
    buf: Vec<u8>,
    /// Where to look for the blank line next (what was searched before
    /// cannot hold it).
    scanned: usize,
    done: bool,
}

impl HttpConnectParser {
    /// A parser waiting for the request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes from the client. Returns the request once its head is
    /// complete; `Ok(None)` means more bytes are needed. After an error,
    /// send its [`HttpConnectError::response`] and close. The parser holds
    /// at most [`MAX_HEAD`] bytes plus the last input.
    pub fn handle_bytes(
        &mut self,
        bytes: &[u8],
    ) -> Result<Option<HttpConnectRequest>, HttpConnectError> {
        if self.done {
            return Err(HttpConnectError::Finished);
        }
        self.buf.extend_from_slice(bytes);
        let from = self.scanned.saturating_sub(3);
        let window = self
            .buf
            .get(from..MAX_HEAD.min(self.buf.len()))
            .unwrap_or_default();
        let Some(at) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() >= MAX_HEAD {
                self.fail();
                return Err(HttpConnectError::HeadTooLong);
            }
            self.scanned = self.buf.len();
            return Ok(None);
        };
        let end = from + at + 4;
        let head = self.buf.get(..end).unwrap_or_default();
        let result = parse_head(head);
        match &result {
            Ok(_) => {
                self.buf.drain(..end);
                self.done = true;
            }
            Err(_) => self.fail(),
        }
        result.map(Some)
    }

    /// The bytes the client sent after its request head, for the stream.
    pub fn take_early_data(&mut self) -> Vec<u8> {
        if self.done {
            std::mem::take(&mut self.buf)
        } else {
            Vec::new()
        }
    }

    fn fail(&mut self) {
        self.done = true;
        self.buf = Vec::new();
    }
}

/// A complete head, blank line included.
fn parse_head(head: &[u8]) -> Result<HttpConnectRequest, HttpConnectError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .ok_or(HttpConnectError::Malformed("request line"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(authority), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpConnectError::Malformed("request line"));
    };
    let minor = version
        .strip_prefix("HTTP/1.")
        .ok_or(HttpConnectError::Malformed("HTTP version"))?;
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpConnectError::Malformed("HTTP version"));
    }
    if method.is_empty() {
        return Err(HttpConnectError::Malformed("request line"));
    }
    if !method.eq_ignore_ascii_case("CONNECT") {
        let shown: String = method.chars().take(16).collect();
        return Err(HttpConnectError::NotConnect(shown));
    }
    let target = parse_authority(authority)?;
    let mut isolation = IsolationKey::default();
    let (mut auth, mut iso) = (None, None);
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpConnectError::Malformed("header without a colon"))?;
        let (name, value) = line.split_at(colon);
        let value = trim(value.get(1..).unwrap_or_default());
        if name.is_empty() || name.iter().any(|b| !b.is_ascii_graphic()) {
            return Err(HttpConnectError::Malformed("header name"));
        }
        // The first of each counts (C-tor's http_get_header).
        if name.eq_ignore_ascii_case(b"Proxy-Authorization") && auth.is_none() {
            auth = Some(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"X-Tor-Stream-Isolation") && iso.is_none() {
            iso = Some(value.to_vec());
        }
    }
    isolation.username = auth.unwrap_or_default();
    isolation.password = iso.unwrap_or_default();
    Ok(HttpConnectRequest { target, isolation })
}

/// `host:port` or `[v6]:port`.
fn parse_authority(text: &str) -> Result<SocksTarget, HttpConnectError> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or(HttpConnectError::Malformed("target without a port"))?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpConnectError::Malformed("port"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or(HttpConnectError::Malformed("port"))?;
    if host.len() > MAX_HOST {
        return Err(HttpConnectError::HostTooLong);
    }
    if let Some(v6) = host.strip_prefix('[') {
        let ip = v6
            .strip_suffix(']')
            .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
            .ok_or(HttpConnectError::Malformed("IPv6 address"))?;
        return Ok(SocksTarget::Ip(IpAddr::V6(ip), port));
    }
    if host.is_empty() || host.contains([':', '[', ']']) {
        return Err(HttpConnectError::Malformed("host"));
    }
    Ok(match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => SocksTarget::Ip(IpAddr::V4(ip), port),
        Err(_) => SocksTarget::Hostname(host.to_owned(), port),
    })
}

/// Without the optional whitespace around a header value.
fn trim(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |e| e + 1);
    value.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests;
