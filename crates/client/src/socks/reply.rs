//! The proxy's answers to a SOCKS request, in either version: SOCKS5's
//! reply (RFC 1928 §6, with tor's extended codes of prop 304 when the port
//! asks for them) and SOCKS4's (0x5A granted, 0x5B rejected).

use std::net::{IpAddr, Ipv4Addr};

pub use braid_core::stream::Socks5Reply as SocksReply;

use super::proto::{SocksTarget, SocksVersion};

/// Prop 304's extended SOCKS5 reply codes, sent instead of the standard
/// code only on a port with C-tor's `ExtendedErrors` flag (applications
/// that do not know them may take them for garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExtendedError {
    /// X'F0': the onion service descriptor cannot be found.
    HsNotFound = 0xF0,
    /// X'F1': the onion service descriptor is invalid.
    HsIsInvalid = 0xF1,
    /// X'F2': introduction failed.
    HsIntroFailed = 0xF2,
    /// X'F3': rendezvous failed.
    HsRendFailed = 0xF3,
    /// X'F4': client authorization is missing.
    HsMissingClientAuth = 0xF4,
    /// X'F5': client authorization is wrong.
    HsBadClientAuth = 0xF5,
    /// X'F6': the onion address is invalid.
    HsBadAddress = 0xF6,
    /// X'F7': introduction timed out.
    HsIntroTimedOut = 0xF7,
}

/// A failed request: the standard SOCKS5 code, and the extended one C-tor
/// would send instead with `ExtendedErrors`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The SOCKS5 reply (SOCKS4 has only "rejected").
    pub reply: SocksReply,
    /// The prop 304 code, if one applies.
    pub extended: Option<ExtendedError>,
}

impl Failure {
    /// The REP byte: the extended code when the port has
    /// `ExtendedErrors` and one applies (C-tor's
    /// `connection_ap_handshake_socks_reply`), else the standard one.
    pub fn code(self, extended_errors: bool) -> u8 {
        match self.extended {
            Some(e) if extended_errors => e as u8,
            _ => self.reply.code(),
        }
    }
}

impl From<SocksReply> for Failure {
    fn from(reply: SocksReply) -> Self {
        Self {
            reply,
            extended: None,
        }
    }
}

/// SOCKS4's "request granted".
pub const SOCKS4_GRANTED: u8 = 0x5A;
/// SOCKS4's "request rejected or failed".
pub const SOCKS4_REJECTED: u8 = 0x5B;

/// The reply to a request of `version` with REP byte `code` (0 for
/// success) and the bound address, or the answer of a RESOLVE (zeros when
/// there is none to tell).
///
/// SOCKS5: VER, REP, RSV, ATYP, BND.ADDR, BND.PORT (RFC 1928 §6).
/// SOCKS4: VN 0, CD 0x5A or 0x5B, DSTPORT and DSTIP zero, as C-tor sends.
pub fn encode_reply(version: SocksVersion, code: u8, bound: Option<&SocksTarget>) -> Vec<u8> {
    match version {
        SocksVersion::V4 => {
            let cd = if code == 0 {
                SOCKS4_GRANTED
            } else {
                SOCKS4_REJECTED
            };
            vec![0, cd, 0, 0, 0, 0, 0, 0]
        }
        SocksVersion::V5 => {
            let mut out = vec![5, code, 0];
            let none = SocksTarget::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
            push_addr(&mut out, bound.unwrap_or(&none));
            out
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn socks5_replies() {
        assert_eq!(
            encode_reply(SocksVersion::V5, 0, None),
            vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        let bound = SocksTarget::Ip("10.0.0.1".parse().unwrap(), 1);
        assert_eq!(
            encode_reply(SocksVersion::V5, 0, Some(&bound)),
            vec![5, 0, 0, 1, 10, 0, 0, 1, 0, 1]
        );
        let name = SocksTarget::Hostname("a.example".into(), 0);
        let mut want = vec![5, 0, 0, 3, 9];
        want.extend_from_slice(b"a.example");
        want.extend_from_slice(&[0, 0]);
        assert_eq!(encode_reply(SocksVersion::V5, 0, Some(&name)), want);
    }

    #[test]
    fn socks4_replies_are_granted_or_rejected() {
        assert_eq!(
            encode_reply(SocksVersion::V4, 0, None),
            vec![0, 0x5A, 0, 0, 0, 0, 0, 0]
        );
        for code in [1, 4, 0xF6] {
            assert_eq!(
                encode_reply(SocksVersion::V4, code, None),
                vec![0, 0x5B, 0, 0, 0, 0, 0, 0]
            );
        }
    }

    #[test]
    fn extended_codes_only_when_the_port_asks() {
        let f = Failure {
            reply: SocksReply::GeneralFailure,
            extended: Some(ExtendedError::HsBadAddress),
        };
        assert_eq!(f.code(false), 1);
        assert_eq!(f.code(true), 0xF6);
        let plain = Failure::from(SocksReply::HostUnreachable);
        assert_eq!(plain.code(true), 4);
    }
}
