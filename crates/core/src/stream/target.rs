//! What a stream connects to or looks up, and the answers: the BEGIN
//! target (tor-spec §6.2), the CONNECTED address and TTL (§6.2), and the
//! RESOLVED answers (§6.4).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tor_bytes::Reader;
use tor_cell::relaycell::msg::{Begin, BeginFlags, Body, Connected, Resolve, ResolvedVal};

use super::error::StreamError;

/// The longest hostname we put in a BEGIN or RESOLVE: a DNS name is at most
/// 253 characters, and C-tor's SOCKS code refuses longer ones (255).
pub const MAX_HOSTNAME_LEN: usize = 255;

/// The host part of a BEGIN target (tor-spec §6.2: "ADDRESS can be a DNS
/// hostname, or an IPv4 address in dotted-quad format, or an IPv6 address
/// surrounded by square brackets").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A hostname, resolved by the exit.
    Hostname(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address.
    Ipv6(Ipv6Addr),
}

impl From<IpAddr> for Host {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Hostname(h) => f.write_str(h),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Where a stream connects: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host.
    pub host: Host,
    /// The TCP port, 1 to 65535 (tor-spec §6.2).
    pub port: u16,
}

impl Target {
    /// A hostname target.
    pub fn hostname(name: impl Into<String>, port: u16) -> Self {
        Target {
            host: Host::Hostname(name.into()),
            port,
        }
    }

    /// An address target.
    pub fn ip(addr: IpAddr, port: u16) -> Self {
        Target {
            host: addr.into(),
            port,
        }
    }

    /// The BEGIN message for this target (tor-spec §6.2): ADDRPORT in lower
    /// case (tor-cell lowercases; the spec says SHOULD, against
    /// fingerprinting), IPv6 in brackets, then the flags if any are set.
    pub(crate) fn begin_msg(&self, flags: BeginFlags) -> Result<Begin, StreamError> {
        if self.port == 0 {
            return Err(StreamError::InvalidTarget {
                why: "port 0 (tor-spec §6.2: PORT is between 1 and 65535)",
            });
        }
        let addr = match &self.host {
            Host::Hostname(h) => {
                check_hostname(h)?;
                h.clone()
            }
            Host::Ipv4(a) => a.to_string(),
            // tor-cell puts an address with ':' in brackets.
            Host::Ipv6(a) => a.to_string(),
        };
        Begin::new(&addr, self.port, flags).map_err(|_| StreamError::InvalidTarget {
            why: "address not ASCII",
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Check a hostname for a BEGIN or RESOLVE: non-empty, ASCII, at most
/// [`MAX_HOSTNAME_LEN`] bytes, and free of the bytes that would break the
/// encoding (NUL ends ADDRPORT; ':' separates the port; brackets mark
/// IPv6) or that no DNS name has (whitespace, control characters).
pub(crate) fn check_hostname(h: &str) -> Result<(), StreamError> {
    let why = if h.is_empty() {
        "empty hostname"
    } else if h.len() > MAX_HOSTNAME_LEN {
        "hostname longer than 255 bytes"
    } else if !h.is_ascii() {
        "hostname not ASCII"
    } else if h
        .bytes()
        .any(|b| b.is_ascii_control() || b.is_ascii_whitespace() || b"[]:".contains(&b))
    {
        "hostname contains a control character, whitespace, ':' or a bracket"
    } else {
        return Ok(());
    };
    Err(StreamError::InvalidTarget { why })
}

/// The RESOLVE message for a hostname (tor-spec §6.4), lower-cased like a
/// BEGIN.
pub(crate) fn resolve_msg(hostname: &str) -> Result<Resolve, StreamError> {
    check_hostname(hostname)?;
    Ok(Resolve::new(&hostname.to_ascii_lowercase()))
}

/// The address and TTL of a CONNECTED message (tor-spec §6.2), `None` for
/// an empty body (BEGIN_DIR, onion services).
///
/// tor-cell keeps the address private, so the message is re-encoded (into
/// the canonical form its parser accepted) and read back.
pub(crate) fn connected_addr(msg: Connected) -> Result<Option<(IpAddr, u32)>, &'static str> {
    let mut body: Vec<u8> = Vec::new();
    msg.encode_onto(&mut body)
        .map_err(|_| "body cannot be re-encoded")?;
    if body.is_empty() {
        return Ok(None);
    }
    let mut r = Reader::from_slice(&body);
    let first = r.take_u32().map_err(|_| "truncated address")?;
    let addr = if first != 0 {
        IpAddr::V4(Ipv4Addr::from(first))
    } else {
        // Four zero octets, type 6, then the IPv6 address.
        let ty = r.take_u8().map_err(|_| "truncated address type")?;
        if ty != 6 {
            return Err("unknown address type");
        }
        let mut a = [0u8; 16];
        r.take_into(&mut a).map_err(|_| "truncated IPv6 address")?;
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let ttl = r.take_u32().map_err(|_| "truncated TTL")?;
    if addr.is_unspecified() {
        // C-tor: "...but it claims the IP address was 0.0.0.0. Closing."
        return Err("unspecified address (C-tor closes the stream)");
    }
    Ok(Some((addr, ttl)))
}

/// One answer of a RESOLVED message (tor-spec §6.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResolvedAnswer {
    /// An address, with its TTL in seconds.
    Ip {
        /// The address.
        addr: IpAddr,
        /// Seconds it may be cached (the exit may lie; do not trust it far).
        ttl: u32,
    },
    /// A hostname (answer to a reverse lookup), with its TTL.
    Hostname {
        /// The name, in DNS order; bytes that are not UTF-8 are replaced.
        name: String,
        /// Seconds it may be cached.
        ttl: u32,
    },
    /// "Error, transient": the lookup may succeed later.
    TransientError,
    /// "Error, nontransient": do not retry.
    NontransientError,
    /// An answer type we do not know (ignored by C-tor).
    Unrecognized {
        /// The type byte.
        kind: u8,
    },
}

impl ResolvedAnswer {
    /// Convert one answer as parsed by tor-cell.
    pub(crate) fn from_cell(val: ResolvedVal, ttl: u32) -> Self {
        match val {
            ResolvedVal::Ip(addr) => ResolvedAnswer::Ip { addr, ttl },
            ResolvedVal::Hostname(h) => ResolvedAnswer::Hostname {
                name: String::from_utf8_lossy(&h).into_owned(),
                ttl,
            },
            ResolvedVal::TransientError => ResolvedAnswer::TransientError,
            ResolvedVal::NontransientError => ResolvedAnswer::NontransientError,
            ResolvedVal::Unrecognized(kind, _) => ResolvedAnswer::Unrecognized { kind },
            // ResolvedVal is non-exhaustive: anything newer is unknown to us.
            _ => ResolvedAnswer::Unrecognized { kind: 0xFF },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tor_cell::relaycell::msg::Resolved;

    fn encode(b: Begin) -> Vec<u8> {
        let mut v = Vec::new();
        b.encode_onto(&mut v).unwrap();
        v
    }

    #[test]
    fn begin_encodings() {
        // tor-spec §6.2: ADDRPORT NUL, then FLAGS (omitted when zero).
        let b = Target::hostname("Example.COM", 443)
            .begin_msg(BeginFlags::empty())
            .unwrap();
        assert_eq!(encode(b), b"example.com:443\0");
        let b = Target::ip("192.0.2.7".parse().unwrap(), 80)
            .begin_msg(BeginFlags::IPV6_OKAY)
            .unwrap();
        assert_eq!(encode(b), b"192.0.2.7:80\0\0\0\0\x01");
        let b = Target::ip("2001:DB8::1".parse().unwrap(), 8080)
            .begin_msg(BeginFlags::IPV6_OKAY | BeginFlags::IPV6_PREFERRED)
            .unwrap();
        assert_eq!(encode(b), b"[2001:db8::1]:8080\0\0\0\0\x05");
    }

    #[test]
    fn bad_targets_refused() {
        for t in [
            Target::hostname("", 80),
            Target::hostname("a:b", 80),
            Target::hostname("a\0b", 80),
            Target::hostname("a b", 80),
            Target::hostname("[::1]", 80),
            Target::hostname("é.example", 80),
            Target::hostname("x".repeat(256), 80),
            Target::hostname("example.com", 0),
        ] {
            let e = t.begin_msg(BeginFlags::empty()).unwrap_err();
            assert!(e.is_misuse(), "{t}: {e}");
        }
        assert!(resolve_msg("ok.example").is_ok());
        assert!(resolve_msg("bad:name").is_err());
    }

    #[test]
    fn connected_bodies() {
        assert_eq!(connected_addr(Connected::new_empty()), Ok(None));
        let v4: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(
            connected_addr(Connected::new_with_addr(v4, 300)),
            Ok(Some((v4, 300)))
        );
        let v6: IpAddr = "2001:db8::9".parse().unwrap();
        assert_eq!(
            connected_addr(Connected::new_with_addr(v6, 7)),
            Ok(Some((v6, 7)))
        );
        // An IPv6 CONNECTED parsed from the wire format of tor-spec §6.2.
        let mut wire = vec![0, 0, 0, 0, 6];
        wire.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        wire.extend_from_slice(&[0; 11]);
        wire.push(1);
        wire.extend_from_slice(&60u32.to_be_bytes());
        let c = Connected::decode_from_reader(&mut Reader::from_slice(&wire)).unwrap();
        assert_eq!(
            connected_addr(c),
            Ok(Some(("2001:db8::1".parse().unwrap(), 60)))
        );
        let zero = Connected::new_with_addr("::".parse().unwrap(), 1);
        assert!(connected_addr(zero).is_err());
    }

    #[test]
    fn resolved_answers() {
        let mut r = Resolved::new_empty();
        r.add_answer(ResolvedVal::Ip("192.0.2.1".parse().unwrap()), 10);
        r.add_answer(ResolvedVal::Hostname(b"host.example".to_vec()), 20);
        r.add_answer(ResolvedVal::Unrecognized(9, vec![1]), 0);
        let got: Vec<_> = r
            .into_answers()
            .into_iter()
            .map(|(v, t)| ResolvedAnswer::from_cell(v, t))
            .collect();
        assert_eq!(
            got,
            vec![
                ResolvedAnswer::Ip {
                    addr: "192.0.2.1".parse().unwrap(),
                    ttl: 10
                },
                ResolvedAnswer::Hostname {
                    name: "host.example".into(),
                    ttl: 20
                },
                ResolvedAnswer::Unrecognized { kind: 9 },
            ]
        );
    }
}
