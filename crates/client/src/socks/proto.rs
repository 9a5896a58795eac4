//! The SOCKS5 handshake, sans IO.
//!
//! A client greets with the methods it offers; we pick username/password
//! when offered (its credentials become the stream-isolation key, as tor's
//! `IsolateSOCKSAuth` does), else no authentication. Then comes one request:
//! CONNECT, or tor's RESOLVE (0xF0) and RESOLVE_PTR (0xF1). The caller
//! answers with [`SocksReply`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use braid_core::stream::Socks5Reply as SocksReply;
use thiserror::Error;

/// A malformed or unsupported handshake. The connection is closed after the
/// reply, if one is due, is sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SocksError {
    /// Not SOCKS version 5 (a SOCKS4 or HTTP client, say).
    #[error("not a SOCKS5 client (first byte {0:#04x})")]
    Version(u8),
    /// The client offered no method we accept.
    #[error("the client offers neither no-auth nor username/password")]
    NoAcceptableMethod,
    /// A username/password sub-negotiation of another version.
    #[error("bad username/password sub-negotiation version {0}")]
    AuthVersion(u8),
    /// A command we do not support (BIND, UDP ASSOCIATE).
    #[error("unsupported SOCKS command {0:#04x}")]
    Command(u8),
    /// An address type we do not know.
    #[error("unsupported address type {0:#04x}")]
    AddressType(u8),
    /// A hostname that is empty or not UTF-8.
    #[error("invalid hostname in request")]
    Hostname,
    /// A reserved byte is not zero.
    #[error("reserved byte is not zero")]
    Reserved,
    /// Bytes after the request, before our reply: not allowed.
    #[error("data sent before the request was answered")]
    EarlyData,
    /// The handshake was used after it finished or failed.
    #[error("handshake already finished")]
    Finished,
}

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocksCommand {
    /// Open a stream.
    Connect,
    /// Resolve a hostname (tor extension 0xF0).
    Resolve,
    /// Reverse-resolve an address (tor extension 0xF1).
    ResolvePtr,
}

/// The target of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksTarget {
    /// A hostname, resolved by the exit.
    Hostname(String, u16),
    /// An address.
    Ip(IpAddr, u16),
}

impl SocksTarget {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Hostname(_, p) | Self::Ip(_, p) => *p,
        }
    }
}

impl fmt::Display for SocksTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hostname(h, p) => write!(f, "{h}:{p}"),
            Self::Ip(IpAddr::V6(a), p) => write!(f, "[{a}]:{p}"),
            Self::Ip(a, p) => write!(f, "{a}:{p}"),
        }
    }
}

/// Streams with different keys never share a circuit. The key is the SOCKS
/// username and password (empty without authentication).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IsolationKey {
    /// Username bytes.
    pub username: Vec<u8>,
    /// Password bytes.
    pub password: Vec<u8>,
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    /// What to do.
    pub command: SocksCommand,
    /// Where.
    pub target: SocksTarget,
    /// The isolation key.
    pub isolation: IsolationKey,
}

/// The reply message for `code` with a bound address (all zeros when there
/// is none to tell): VER, REP, RSV, ATYP, BND.ADDR, BND.PORT (RFC 1928 §6).
pub fn encode_reply(code: SocksReply, bound: Option<SocksTarget>) -> Vec<u8> {
    let mut out = vec![5, code.code(), 0];
    push_addr(
        &mut out,
        &bound.unwrap_or(SocksTarget::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    );
    out
}

fn push_addr(out: &mut Vec<u8>, target: &SocksTarget) {
    match target {
        SocksTarget::Ip(IpAddr::V4(a), p) => {
            out.push(1);
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&p.to_be_bytes());
        }
        SocksTarget::Ip(IpAddr::V6(a), p) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&p.to_be_bytes());
        }
        SocksTarget::Hostname(h, p) => {
            let bytes = h.as_bytes();
            let len = bytes.len().min(255);
            out.push(3);
            out.push(len as u8);
            out.extend_from_slice(bytes.get(..len).unwrap_or_default());
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Auth,
    Request,
    Done,
    Failed,
}

/// The handshake state machine.
#[derive(Debug)]
pub struct SocksHandshake {
    state: State,
    buf: Vec<u8>,
    out: Vec<u8>,
    isolation: IsolationKey,
    request: Option<SocksRequest>,
}

impl Default for SocksHandshake {
    fn default() -> Self {
        Self::new()
    }
}

/// The longest message of the handshake: a request with a 255-byte
/// hostname, or an authentication with 255-byte name and password.
const MAX_MESSAGE: usize = 513;

impl SocksHandshake {
    /// A handshake waiting for the client's greeting.
    pub fn new() -> Self {
        Self {
            state: State::Greeting,
            buf: Vec::new(),
            out: Vec::new(),
            isolation: IsolationKey::default(),
            request: None,
        }
    }

    /// Feed bytes from the client. Returns the finished request once it is
    /// complete; `Ok(None)` means more bytes are needed. After an error,
    /// send what [`Self::poll_transmit`] holds (if anything) and close.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<Option<SocksRequest>, SocksError> {
        if matches!(self.state, State::Done | State::Failed) {
            return Err(if bytes.is_empty() {
                SocksError::Finished
            } else {
                SocksError::EarlyData
            });
        }
        self.buf.extend_from_slice(bytes);
        loop {
            let before = self.state;
            let step = match self.state {
                State::Greeting => self.greeting(),
                State::Auth => self.auth(),
                State::Request => self.request(),
                State::Done | State::Failed => Ok(()),
            };
            if let Err(e) = step {
                self.state = State::Failed;
                return Err(e);
            }
            if self.state == State::Done {
                if !self.buf.is_empty() {
                    self.state = State::Failed;
                    return Err(SocksError::EarlyData);
                }
                return Ok(self.request.clone());
            }
            if self.state == before {
                // Waiting for more input; a message never exceeds
                // MAX_MESSAGE, so a longer buffer cannot become valid.
                if self.buf.len() > MAX_MESSAGE {
                    self.state = State::Failed;
                    return Err(SocksError::EarlyData);
                }
                return Ok(None);
            }
        }
    }

    /// Bytes to send to the client.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }

    fn greeting(&mut self) -> Result<(), SocksError> {
        let (Some(&ver), Some(&n)) = (self.buf.first(), self.buf.get(1)) else {
            if let Some(&ver) = self.buf.first()
                && ver != 5
            {
                return Err(SocksError::Version(ver));
            }
            return Ok(());
        };
        if ver != 5 {
            return Err(SocksError::Version(ver));
        }
        let Some(methods) = self.buf.get(2..2 + usize::from(n)) else {
            return Ok(());
        };
        let choice = if methods.contains(&2) {
            Some(2u8)
        } else if methods.contains(&0) {
            Some(0u8)
        } else {
            None
        };
        self.consume(2 + usize::from(n));
        match choice {
            Some(m) => {
                self.out.extend_from_slice(&[5, m]);
                self.state = if m == 2 { State::Auth } else { State::Request };
                Ok(())
            }
            None => {
                self.out.extend_from_slice(&[5, 0xff]);
                Err(SocksError::NoAcceptableMethod)
            }
        }
    }

    /// RFC 1929: VER=1, ULEN, UNAME, PLEN, PASSWD.
    fn auth(&mut self) -> Result<(), SocksError> {
        let Some(&ver) = self.buf.first() else {
            return Ok(());
        };
        if ver != 1 {
            self.out.extend_from_slice(&[1, 1]);
            return Err(SocksError::AuthVersion(ver));
        }
        let Some(&ulen) = self.buf.get(1) else {
            return Ok(());
        };
        let ulen = usize::from(ulen);
        let Some(&plen) = self.buf.get(2 + ulen) else {
            return Ok(());
        };
        let plen = usize::from(plen);
        let (Some(user), Some(pass)) = (
            self.buf.get(2..2 + ulen),
            self.buf.get(3 + ulen..3 + ulen + plen),
        ) else {
            return Ok(());
        };
        self.isolation = IsolationKey {
            username: user.to_vec(),
            password: pass.to_vec(),
        };
        self.consume(3 + ulen + plen);
        // Any credentials are accepted: they only isolate streams.
        self.out.extend_from_slice(&[1, 0]);
        self.state = State::Request;
        Ok(())
    }

    /// RFC 1928 §4: VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT.
    fn request(&mut self) -> Result<(), SocksError> {
        let Some(head) = self.buf.get(..4) else {
            if let Some(&ver) = self.buf.first()
                && ver != 5
            {
                return Err(SocksError::Version(ver));
            }
            return Ok(());
        };
        let (ver, cmd, rsv, atyp) = match *head {
            [a, b, c, d] => (a, b, c, d),
            _ => return Ok(()),
        };
        if ver != 5 {
            return Err(SocksError::Version(ver));
        }
        let command = match cmd {
            1 => SocksCommand::Connect,
            0xf0 => SocksCommand::Resolve,
            0xf1 => SocksCommand::ResolvePtr,
            other => {
                self.out
                    .extend(encode_reply(SocksReply::CommandNotSupported, None));
                return Err(SocksError::Command(other));
            }
        };
        if rsv != 0 {
            self.out
                .extend(encode_reply(SocksReply::GeneralFailure, None));
            return Err(SocksError::Reserved);
        }
        let (addr_len, start) = match atyp {
            1 => (4, 4),
            4 => (16, 4),
            3 => match self.buf.get(4) {
                Some(&n) => (usize::from(n), 5),
                None => return Ok(()),
            },
            other => {
                self.out
                    .extend(encode_reply(SocksReply::AddressTypeNotSupported, None));
                return Err(SocksError::AddressType(other));
            }
        };
        let end = start + addr_len;
        let (Some(addr), Some(port)) = (self.buf.get(start..end), self.buf.get(end..end + 2))
        else {
            return Ok(());
        };
        let port = u16::from_be_bytes([
            port.first().copied().unwrap_or(0),
            port.get(1).copied().unwrap_or(0),
        ]);
        let target = match atyp {
            1 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(addr);
                SocksTarget::Ip(IpAddr::V4(Ipv4Addr::from(a)), port)
            }
            4 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(addr);
                SocksTarget::Ip(IpAddr::V6(Ipv6Addr::from(a)), port)
            }
            _ => {
                let host = std::str::from_utf8(addr)
                    .ok()
                    .filter(|h| !h.is_empty() && !h.contains('\0'))
                    .ok_or_else(|| {
                        self.out
                            .extend(encode_reply(SocksReply::GeneralFailure, None));
                        SocksError::Hostname
                    })?;
                SocksTarget::Hostname(host.to_owned(), port)
            }
        };
        self.consume(end + 2);
        self.request = Some(SocksRequest {
            command,
            target,
            isolation: self.isolation.clone(),
        });
        self.state = State::Done;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(bytes: &[u8]) -> (Result<Option<SocksRequest>, SocksError>, Vec<u8>) {
        let mut h = SocksHandshake::new();
        let r = h.handle_bytes(bytes);
        (r, h.poll_transmit().unwrap_or_default())
    }

    #[test]
    fn no_auth_connect_hostname() {
        let mut msg = vec![5, 1, 0, 5, 1, 0, 3, 11];
        msg.extend_from_slice(b"example.com");
        msg.extend_from_slice(&443u16.to_be_bytes());
        let (r, out) = run(&msg);
        let req = r.unwrap().unwrap();
        assert_eq!(out, vec![5, 0]);
        assert_eq!(req.command, SocksCommand::Connect);
        assert_eq!(req.target, SocksTarget::Hostname("example.com".into(), 443));
        assert_eq!(req.isolation, IsolationKey::default());
    }

    #[test]
    fn username_password_becomes_the_isolation_key() {
        let msg = [
            5, 2, 0, 2, // greeting: no-auth and user/pass
            1, 1, b'u', 2, b'p', b'w', // auth
            5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80,
        ];
        let (r, out) = run(&msg);
        let req = r.unwrap().unwrap();
        assert_eq!(out, vec![5, 2, 1, 0]);
        assert_eq!(req.isolation.username, b"u");
        assert_eq!(req.isolation.password, b"pw");
        assert_eq!(req.target, SocksTarget::Ip("::1".parse().unwrap(), 80));
    }

    #[test]
    fn byte_by_byte_equals_all_at_once() {
        let msg = [5, 1, 0, 5, 0xf0, 0, 1, 127, 0, 0, 1, 0, 0];
        let mut h = SocksHandshake::new();
        let mut result = None;
        for b in msg {
            if let Some(r) = h.handle_bytes(&[b]).unwrap() {
                result = Some(r);
            }
        }
        let req = result.unwrap();
        assert_eq!(req.command, SocksCommand::Resolve);
        assert_eq!(run(&msg).0.unwrap().unwrap(), req);
    }

    #[test]
    fn refusals_have_replies() {
        let (r, out) = run(&[4, 1, 0, 80]);
        assert_eq!(r.unwrap_err(), SocksError::Version(4));
        assert!(out.is_empty());
        let (r, out) = run(&[5, 1, 0x80]);
        assert_eq!(r.unwrap_err(), SocksError::NoAcceptableMethod);
        assert_eq!(out, vec![5, 0xff]);
        let (r, out) = run(&[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80]);
        assert_eq!(r.unwrap_err(), SocksError::Command(2));
        assert_eq!(out[..4], [5, 0, 5, 7]);
        let (r, _) = run(&[5, 1, 0, 5, 1, 0, 9]);
        assert_eq!(r.unwrap_err(), SocksError::AddressType(9));
        let (r, _) = run(&[5, 1, 0, 5, 1, 0, 3, 0, 0, 80]);
        assert_eq!(r.unwrap_err(), SocksError::Hostname);
        let (r, _) = run(&[5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80, 9]);
        assert_eq!(r.unwrap_err(), SocksError::EarlyData);
    }

    #[test]
    fn reply_encoding() {
        assert_eq!(
            encode_reply(SocksReply::Succeeded, None),
            vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        let r = encode_reply(
            SocksReply::Succeeded,
            Some(SocksTarget::Ip("10.0.0.1".parse().unwrap(), 1)),
        );
        assert_eq!(r, vec![5, 0, 0, 1, 10, 0, 0, 1, 0, 1]);
    }

    proptest! {
        #[test]
        fn never_panics_and_buffers_are_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..40)) {
            let mut h = SocksHandshake::new();
            for c in chunks {
                match h.handle_bytes(&c) {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => prop_assert!(h.buf.len() <= MAX_MESSAGE),
                }
            }
        }
    }
}
