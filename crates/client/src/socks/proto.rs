//! The SOCKS handshake, sans IO: SOCKS5 and SOCKS4(a) on one port, told
//! apart by the first byte, as on C-tor's SocksPort.
//!
//! SOCKS5: a client greets with the methods it offers; we pick
//! username/password when offered (its credentials become the
//! stream-isolation key, as tor's `IsolateSOCKSAuth` does), else no
//! authentication. Then comes one request: CONNECT, or tor's RESOLVE (0xF0)
//! and RESOLVE_PTR (0xF1). SOCKS4 sends its request at once (`super::v4`).
//! The caller answers with [`super::reply::encode_reply`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use super::reply::{SocksReply, encode_reply};
use super::v4;

/// A malformed or unsupported handshake. The connection is closed after the
/// reply, if one is due, is sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SocksError {
    /// Neither SOCKS4 nor SOCKS5 (an HTTP client, say).
    #[error("not a SOCKS client (first byte {0:#04x})")]
    Version(u8),
    /// The client offered no method we accept.
    #[error("the client offers neither no-auth nor username/password")]
    NoAcceptableMethod,
    /// A username/password sub-negotiation of another version.
    #[error("bad username/password sub-negotiation version {0}")]
    AuthVersion(u8),
    /// A command we do not support (BIND, UDP ASSOCIATE; anything but
    /// CONNECT over SOCKS4).
    #[error("unsupported SOCKS command {0:#04x}")]
    Command(u8),
    /// A SOCKS4 request for port 0 or address 0.0.0.0.
    #[error("SOCKS4 request with port or address zero")]
    Socks4Zero,
    /// A SOCKS4 user id or hostname longer than 255 bytes.
    #[error("SOCKS4 user id or hostname longer than 255 bytes")]
    FieldTooLong,
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

/// The protocol a client speaks (the reply is in the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocksVersion {
    /// SOCKS4 or SOCKS4a.
    V4,
    /// SOCKS5.
    V5,
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
/// username and password (empty without authentication; SOCKS4's user id
/// is a username without password; HTTP CONNECT's `Proxy-Authorization`
/// and `X-Tor-Stream-Isolation` headers are username and password, as in
/// C-tor).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Socks4,
    Auth,
    Request,
    Done,
    Failed,
}

/// The handshake state machine.
#[derive(Debug)]
pub struct SocksHandshake {
    state: State,
    version: Option<SocksVersion>,
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

/// The longest message of the handshake: a SOCKS4a request with a 255-byte
/// user id and hostname (a SOCKS5 request or authentication is at most
/// 513 bytes).
const MAX_MESSAGE: usize = v4::MAX_REQUEST;

impl SocksHandshake {
    /// A handshake waiting for the client's greeting.
    pub fn new() -> Self {
        Self {
            state: State::Greeting,
            version: None,
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
                State::Socks4 => self.socks4(),
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

    /// The client's protocol, once its first byte is known to be SOCKS4
    /// or SOCKS5: replies are in the same one.
    pub fn version(&self) -> Option<SocksVersion> {
        self.version
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
        match self.buf.first() {
            None => return Ok(()),
            Some(4) => {
                self.version = Some(SocksVersion::V4);
                self.state = State::Socks4;
                return Ok(());
            }
            Some(5) => self.version = Some(SocksVersion::V5),
            Some(&ver) => return Err(SocksError::Version(ver)),
        }
        let Some(&n) = self.buf.get(1) else {
            return Ok(());
        };
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

    /// A SOCKS4 or SOCKS4a request; a refusal is answered "rejected".
    fn socks4(&mut self) -> Result<(), SocksError> {
        match v4::parse(&self.buf) {
            Ok(None) => Ok(()),
            Ok(Some((request, n))) => {
                self.consume(n);
                self.request = Some(request);
                self.state = State::Done;
                Ok(())
            }
            Err(e) => {
                self.reply_error(SocksVersion::V4, SocksReply::GeneralFailure);
                Err(e)
            }
        }
    }

    fn reply_error(&mut self, version: SocksVersion, reply: SocksReply) {
        self.out.extend(encode_reply(version, reply.code(), None));
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
                self.reply_error(SocksVersion::V5, SocksReply::CommandNotSupported);
                return Err(SocksError::Command(other));
            }
        };
        if rsv != 0 {
            self.reply_error(SocksVersion::V5, SocksReply::GeneralFailure);
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
                self.reply_error(SocksVersion::V5, SocksReply::AddressTypeNotSupported);
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
                    .map(str::to_owned);
                let Some(host) = host else {
                    self.reply_error(SocksVersion::V5, SocksReply::GeneralFailure);
                    return Err(SocksError::Hostname);
                };
                SocksTarget::Hostname(host, port)
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
        let (r, out) = run(b"GET / HTTP/1.0\r\n");
        assert_eq!(r.unwrap_err(), SocksError::Version(b'G'));
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

    /// VN 4, CD, DSTPORT, DSTIP, USERID, NUL [, HOSTNAME, NUL].
    fn socks4(cd: u8, port: u16, ip: [u8; 4], user: &[u8], host: Option<&[u8]>) -> Vec<u8> {
        let mut m = vec![4, cd];
        m.extend_from_slice(&port.to_be_bytes());
        m.extend_from_slice(&ip);
        m.extend_from_slice(user);
        m.push(0);
        if let Some(h) = host {
            m.extend_from_slice(h);
            m.push(0);
        }
        m
    }

    #[test]
    fn socks4_with_an_address() {
        let (r, out) = run(&socks4(1, 80, [192, 0, 2, 7], b"", None));
        let req = r.unwrap().unwrap();
        assert!(out.is_empty(), "SOCKS4 has no greeting to answer");
        assert_eq!(req.command, SocksCommand::Connect);
        assert_eq!(
            req.target,
            SocksTarget::Ip("192.0.2.7".parse().unwrap(), 80)
        );
        assert_eq!(req.isolation, IsolationKey::default());
    }

    #[test]
    fn socks4a_hostname_and_user_id_as_isolation() {
        let msg = socks4(1, 443, [0, 0, 0, 1], b"alice", Some(b"example.org"));
        // Whole, and one byte at a time.
        let (r, _) = run(&msg);
        let whole = r.unwrap().unwrap();
        let mut h = SocksHandshake::new();
        let mut got = None;
        for b in &msg {
            if let Some(r) = h.handle_bytes(&[*b]).unwrap() {
                got = Some(r);
            }
        }
        assert_eq!(got.unwrap(), whole);
        assert_eq!(h.version(), Some(SocksVersion::V4));
        assert_eq!(
            whole.target,
            SocksTarget::Hostname("example.org".into(), 443)
        );
        assert_eq!(whole.isolation.username, b"alice");
        assert!(whole.isolation.password.is_empty());
    }

    #[test]
    fn socks4_refusals_are_rejected() {
        let rejected = vec![0, 0x5B, 0, 0, 0, 0, 0, 0];
        // BIND, and tor's RESOLVE, which Braid takes over SOCKS5 only.
        for cd in [2, 0xF0] {
            let (r, out) = run(&socks4(cd, 80, [192, 0, 2, 7], b"", None));
            assert_eq!(r.unwrap_err(), SocksError::Command(cd));
            assert_eq!(out, rejected);
        }
        let (r, out) = run(&socks4(1, 0, [192, 0, 2, 7], b"", None));
        assert_eq!(r.unwrap_err(), SocksError::Socks4Zero);
        assert_eq!(out, rejected);
        let (r, _) = run(&socks4(1, 80, [0, 0, 0, 0], b"", None));
        assert_eq!(r.unwrap_err(), SocksError::Socks4Zero);
        let (r, _) = run(&socks4(1, 80, [0, 0, 0, 9], b"", Some(b"")));
        assert_eq!(r.unwrap_err(), SocksError::Hostname);
        let (r, _) = run(&socks4(1, 80, [0, 0, 0, 9], b"", Some(b"\xff\xfe")));
        assert_eq!(r.unwrap_err(), SocksError::Hostname);
        // A user id or hostname without its NUL in 256 bytes.
        let mut long = socks4(1, 80, [192, 0, 2, 7], b"", None);
        long.pop();
        long.extend(std::iter::repeat_n(b'u', 256));
        let (r, out) = run(&long);
        assert_eq!(r.unwrap_err(), SocksError::FieldTooLong);
        assert_eq!(out, rejected);
        let mut long_host = socks4(1, 80, [0, 0, 0, 1], b"u", None);
        long_host.extend(std::iter::repeat_n(b'h', 256));
        assert_eq!(run(&long_host).0.unwrap_err(), SocksError::FieldTooLong);
        // 255 bytes each is the most, and fine.
        let user = vec![b'u'; 255];
        let host = vec![b'h'; 255];
        let (r, _) = run(&socks4(1, 80, [0, 0, 0, 1], &user, Some(&host)));
        assert_eq!(r.unwrap().unwrap().isolation.username, user);
        // Bytes after the request, before our reply.
        let mut early = socks4(1, 80, [192, 0, 2, 7], b"", None);
        early.push(b'x');
        assert_eq!(run(&early).0.unwrap_err(), SocksError::EarlyData);
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
