//! Why streams end: the RELAY_END reasons of tor-spec §6.3, the local
//! reasons a client adds (C-tor `or.h`, `END_STREAM_REASON_*` above 255),
//! and their mapping to SOCKS5 reply codes (RFC 1928 §6) as C-tor does it
//! (`stream_end_reason_to_socks5_response` in `reasons.c`).
//!
//! On the wire a client always sends `REASON_MISC` for a stream it
//! originated (tor-spec §6.3: "Tors SHOULD NOT send any reason except
//! REASON_MISC for a stream that they have originated"; C-tor's
//! `connection_edge_end` replaces the reason on client circuits). The
//! reasons below are for the local side: logs, events, and the SOCKS reply.

use std::fmt;

pub use tor_cell::relaycell::msg::EndReason;

/// A SOCKS5 reply code (RFC 1928 §6), as sent in the REP field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Socks5Reply {
    /// 0x00: succeeded.
    Succeeded = 0x00,
    /// 0x01: general SOCKS server failure.
    GeneralFailure = 0x01,
    /// 0x02: connection not allowed by ruleset.
    NotAllowed = 0x02,
    /// 0x03: network unreachable.
    NetworkUnreachable = 0x03,
    /// 0x04: host unreachable.
    HostUnreachable = 0x04,
    /// 0x05: connection refused.
    ConnectionRefused = 0x05,
    /// 0x06: TTL expired (C-tor's answer to a timeout).
    TtlExpired = 0x06,
    /// 0x07: command not supported.
    CommandNotSupported = 0x07,
    /// 0x08: address type not supported.
    AddressTypeNotSupported = 0x08,
}

impl Socks5Reply {
    /// The REP byte.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Socks5Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Socks5Reply::Succeeded => "succeeded",
            Socks5Reply::GeneralFailure => "general SOCKS server failure",
            Socks5Reply::NotAllowed => "connection not allowed by ruleset",
            Socks5Reply::NetworkUnreachable => "network unreachable",
            Socks5Reply::HostUnreachable => "host unreachable",
            Socks5Reply::ConnectionRefused => "connection refused",
            Socks5Reply::TtlExpired => "TTL expired",
            Socks5Reply::CommandNotSupported => "command not supported",
            Socks5Reply::AddressTypeNotSupported => "address type not supported",
        };
        write!(f, "{s} ({:#04x})", self.code())
    }
}

/// C-tor's `END_STREAM_REASON_ENTRYPOLICY`: refused by the client's own
/// policy. Never sent on the wire, but it fits in a byte and C-tor maps it.
pub const END_REASON_ENTRYPOLICY: u8 = 15;

/// Why a stream ended (or failed to open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A RELAY_END reason (tor-spec §6.3): the one the exit sent, or the one
    /// we closed the stream for (`DONE` after [`shutdown_write`], `TIMEOUT`
    /// when CONNECTED never came, `TORPROTOCOL` after a violation by the
    /// exit, `MISC` or the caller's reason for [`close`]).
    ///
    /// [`shutdown_write`]: super::StreamMap::shutdown_write
    /// [`close`]: super::StreamMap::close
    End(EndReason),
    /// No circuit could carry the stream (C-tor `END_STREAM_REASON_CANT_ATTACH`, 257).
    CantAttach,
    /// No exit can reach the target's network (C-tor
    /// `END_STREAM_REASON_NET_UNREACHABLE`, 258).
    NetUnreachable,
    /// The application's SOCKS request was malformed (C-tor
    /// `END_STREAM_REASON_SOCKSPROTOCOL`, 259).
    SocksProtocol,
    /// The target is a private address we refuse to connect to (C-tor
    /// `END_STREAM_REASON_PRIVATE_ADDR`, 262).
    PrivateAddr,
}

impl CloseReason {
    /// The reason given to a stream whose CONNECTED (or RESOLVED) did not
    /// arrive in time (C-tor `connection_ap_expire_beginning`).
    pub const CONNECT_TIMEOUT: CloseReason = CloseReason::End(EndReason::TIMEOUT);

    /// C-tor's numeric code (`END_STREAM_REASON_*`).
    pub fn code(self) -> u16 {
        match self {
            CloseReason::End(r) => u16::from(u8::from(r)),
            CloseReason::CantAttach => 257,
            CloseReason::NetUnreachable => 258,
            CloseReason::SocksProtocol => 259,
            CloseReason::PrivateAddr => 262,
        }
    }

    /// The SOCKS5 reply for a stream that ended this way before it was
    /// connected (C-tor `stream_end_reason_to_socks5_response`).
    pub fn socks5_reply(self) -> Socks5Reply {
        match self {
            CloseReason::End(r) => socks5_reply_for_end(r),
            CloseReason::NetUnreachable => Socks5Reply::NetworkUnreachable,
            CloseReason::CantAttach | CloseReason::SocksProtocol | CloseReason::PrivateAddr => {
                Socks5Reply::GeneralFailure
            }
        }
    }

    /// The name used in control-port STREAM events (C-tor
    /// `stream_end_reason_to_control_string`); `None` for an END reason
    /// nobody has defined.
    pub fn name(self) -> Option<&'static str> {
        match self {
            CloseReason::End(r) => end_reason_name(r),
            CloseReason::CantAttach => Some("CANT_ATTACH"),
            CloseReason::NetUnreachable => Some("NET_UNREACHABLE"),
            CloseReason::SocksProtocol => Some("SOCKS_PROTOCOL"),
            CloseReason::PrivateAddr => Some("PRIVATE_ADDR"),
        }
    }

    /// True if a stream that ended this way before it was connected may
    /// do better on another circuit. C-tor's client retries MISC,
    /// RESOLVEFAILED, TIMEOUT (the exit's, or our connect timeout),
    /// NOROUTE, RESOURCELIMIT and HIBERNATING elsewhere
    /// (`connection_ap_process_end_not_open`), and a stream whose circuit
    /// died (DESTROY); the other reasons are answers about the target
    /// (refused, not allowed by the exit policy) that another exit would
    /// repeat.
    pub fn retry_elsewhere(self) -> bool {
        matches!(
            self,
            CloseReason::End(
                EndReason::MISC
                    | EndReason::RESOLVEFAILED
                    | EndReason::TIMEOUT
                    | EndReason::NOROUTE
                    | EndReason::RESOURCELIMIT
                    | EndReason::HIBERNATING
                    | EndReason::DESTROY
            )
        )
    }

    /// A human description (C-tor `stream_end_reason_to_string`).
    pub fn description(self) -> &'static str {
        match self {
            CloseReason::End(r) => end_reason_description(r),
            CloseReason::CantAttach => "no circuit could carry the stream",
            CloseReason::NetUnreachable => "no exit can reach the network",
            CloseReason::SocksProtocol => "malformed SOCKS request",
            CloseReason::PrivateAddr => "private address refused",
        }
    }
}

impl From<EndReason> for CloseReason {
    fn from(r: EndReason) -> Self {
        CloseReason::End(r)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.description()),
            None => write!(f, "reason {} (unknown)", self.code()),
        }
    }
}

/// The control-port name of an END reason (tor-spec §6.3 list, plus
/// C-tor's ENTRYPOLICY); `None` for other values, which must still be
/// accepted (§6.3: "OPs and ORs MUST accept reasons not on the above
/// list").
pub fn end_reason_name(r: EndReason) -> Option<&'static str> {
    Some(match u8::from(r) {
        1 => "MISC",
        2 => "RESOLVEFAILED",
        3 => "CONNECTREFUSED",
        4 => "EXITPOLICY",
        5 => "DESTROY",
        6 => "DONE",
        7 => "TIMEOUT",
        8 => "NOROUTE",
        9 => "HIBERNATING",
        10 => "INTERNAL",
        11 => "RESOURCELIMIT",
        12 => "CONNRESET",
        13 => "TORPROTOCOL",
        14 => "NOTDIRECTORY",
        END_REASON_ENTRYPOLICY => "ENTRYPOLICY",
        _ => return None,
    })
}

/// The description C-tor logs for an END reason (tor-spec §6.3).
pub fn end_reason_description(r: EndReason) -> &'static str {
    match u8::from(r) {
        1 => "misc error",
        2 => "resolve failed",
        3 => "connection refused",
        4 => "exit policy failed",
        5 => "destroyed",
        6 => "closed normally",
        7 => "gave up (timeout)",
        8 => "no route to host",
        9 => "server is hibernating",
        10 => "internal error at server",
        11 => "server out of resources",
        12 => "connection reset",
        13 => "Tor protocol error",
        14 => "not a directory",
        END_REASON_ENTRYPOLICY => "refused by entry policy",
        _ => "unknown",
    }
}

/// The SOCKS5 reply C-tor gives for a stream ended by `r` before it was
/// connected (`stream_end_reason_to_socks5_response`).
///
/// `DONE` maps to "connection refused": before CONNECTED it means the exit
/// closed the connection without ever telling us it was open (C-tor's
/// comment). Unknown reasons, and `NOTDIRECTORY` (which C-tor's switch does
/// not list), give "general failure".
pub fn socks5_reply_for_end(r: EndReason) -> Socks5Reply {
    match u8::from(r) {
        0 => Socks5Reply::Succeeded,
        2 | 8 => Socks5Reply::HostUnreachable,
        3 | 6 | 12 => Socks5Reply::ConnectionRefused,
        4 | END_REASON_ENTRYPOLICY => Socks5Reply::NotAllowed,
        7 => Socks5Reply::TtlExpired,
        _ => Socks5Reply::GeneralFailure,
    }
}

/// The SOCKS5 reply for a stream whose CONNECTED never came: C-tor closes
/// it with `END_STREAM_REASON_TIMEOUT`, which gives "TTL expired".
pub fn socks5_reply_for_timeout() -> Socks5Reply {
    CloseReason::CONNECT_TIMEOUT.socks5_reply()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_map_like_c_tor() {
        let expect = [
            (1, Socks5Reply::GeneralFailure, "MISC"),
            (2, Socks5Reply::HostUnreachable, "RESOLVEFAILED"),
            (3, Socks5Reply::ConnectionRefused, "CONNECTREFUSED"),
            (4, Socks5Reply::NotAllowed, "EXITPOLICY"),
            (5, Socks5Reply::GeneralFailure, "DESTROY"),
            (6, Socks5Reply::ConnectionRefused, "DONE"),
            (7, Socks5Reply::TtlExpired, "TIMEOUT"),
            (8, Socks5Reply::HostUnreachable, "NOROUTE"),
            (9, Socks5Reply::GeneralFailure, "HIBERNATING"),
            (10, Socks5Reply::GeneralFailure, "INTERNAL"),
            (11, Socks5Reply::GeneralFailure, "RESOURCELIMIT"),
            (12, Socks5Reply::ConnectionRefused, "CONNRESET"),
            (13, Socks5Reply::GeneralFailure, "TORPROTOCOL"),
            (14, Socks5Reply::GeneralFailure, "NOTDIRECTORY"),
            (15, Socks5Reply::NotAllowed, "ENTRYPOLICY"),
        ];
        for (code, reply, name) in expect {
            let r = CloseReason::End(EndReason::from(code));
            assert_eq!(r.socks5_reply(), reply, "reason {code}");
            assert_eq!(r.name(), Some(name));
            assert_eq!(r.code(), u16::from(code));
            assert_ne!(r.description(), "unknown");
        }
        // Unknown reasons are accepted and give a general failure.
        let odd = CloseReason::End(EndReason::from(200));
        assert_eq!(odd.socks5_reply(), Socks5Reply::GeneralFailure);
        assert_eq!(odd.name(), None);
        assert_eq!(odd.to_string(), "reason 200 (unknown)");
    }

    #[test]
    fn local_reasons_and_timeout() {
        assert_eq!(socks5_reply_for_timeout(), Socks5Reply::TtlExpired);
        assert_eq!(socks5_reply_for_timeout().code(), 0x06);
        assert_eq!(
            CloseReason::NetUnreachable.socks5_reply(),
            Socks5Reply::NetworkUnreachable
        );
        assert_eq!(CloseReason::NetUnreachable.code(), 258);
        assert_eq!(
            CloseReason::CantAttach.socks5_reply(),
            Socks5Reply::GeneralFailure
        );
        assert_eq!(CloseReason::PrivateAddr.name(), Some("PRIVATE_ADDR"));
        assert_eq!(Socks5Reply::ConnectionRefused.code(), 5);
        assert!(Socks5Reply::TtlExpired.to_string().contains("0x06"));
        assert!(
            CloseReason::End(EndReason::DONE)
                .to_string()
                .contains("closed normally")
        );
    }
}
