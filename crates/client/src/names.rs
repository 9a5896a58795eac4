//! Which requests go to an exit, which are answered here, and which are
//! refused, sans IO: C-tor's rules for the names applications ask for
//! (`connection_ap_handshake_rewrite` and `parse_extended_hostname` in
//! `connection_edge.c`, `address_is_invalid_destination` in
//! `addressmap.c`).
//!
//! - `.onion` names are never sent to an exit (the exit would look them up
//!   in DNS, telling it and the resolver which onion service the user
//!   wants). Braid has no onion-service client, so they are refused at
//!   once: "host unreachable", as C-tor answers when it may not fetch
//!   onion-service descriptors (`FetchHidServDescriptors 0`:
//!   `END_STREAM_REASON_RESOLVEFAILED`). A malformed one is refused as
//!   C-tor refuses it: general failure, or with `ExtendedErrors` prop 304's
//!   X'F6' (bad onion address).
//! - `.exit` names are refused (C-tor has refused them from applications
//!   since `AllowDotExit` was removed: a web page could pick the exit).
//! - Hostnames with characters no DNS name has are refused before any
//!   circuit is used (C-tor: `AllowNonRFC953Hostnames 0`).
//! - A RESOLVE of an address is answered with that address; a
//!   RESOLVE_PTR needs an address (or its `in-addr.arpa` / `ip6.arpa`
//!   name) and is sent to an exit as a reverse lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use digest::Digest as _;
use thiserror::Error;
use tor_llcrypto::d::Sha3_256;
use tor_llcrypto::pk::ed25519::PublicKey;

use crate::socks::{ExtendedError, SocksCommand, SocksReply, SocksTarget};

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send it to an exit with this target (hostnames lower-cased, as
    /// C-tor does; a RESOLVE_PTR's target is the address to look up).
    Exit(SocksTarget),
    /// Answer it at once with this, using no circuit.
    Answer(SocksTarget),
    /// Refuse it at once, using no circuit.
    Refuse(Refusal),
}

/// Why a request is refused without using the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A well-formed v3 `.onion` name: Braid has no onion-service client.
    #[error("a .onion address (Braid does not reach onion services)")]
    Onion,
    /// A `.onion` name that is not a valid v3 onion address.
    #[error("a malformed .onion address")]
    BadOnion,
    /// The `.exit` notation.
    #[error("the .exit notation is refused (it would let a web page pick the exit)")]
    DotExit,
    /// A hostname with characters no DNS name has.
    #[error("not a valid hostname")]
    BadHostname,
    /// A RESOLVE_PTR of something that is not an address.
    #[error("a reverse lookup needs an address")]
    PtrNotAddress,
}

impl Refusal {
    /// The SOCKS5 reply, as C-tor maps the END reason it closes such a
    /// request with (`stream_end_reason_to_socks5_response`).
    pub fn socks5_reply(self) -> SocksReply {
        match self {
            // END_STREAM_REASON_RESOLVEFAILED.
            Self::Onion | Self::PtrNotAddress => SocksReply::HostUnreachable,
            // END_STREAM_REASON_TORPROTOCOL.
            Self::BadOnion | Self::DotExit | Self::BadHostname => SocksReply::GeneralFailure,
        }
    }

    /// The extended reply (prop 304) C-tor sends instead when the port has
    /// `ExtendedErrors`: only for a malformed onion address
    /// (`SOCKS5_HS_BAD_ADDRESS`); C-tor sets no extended code for the
    /// others.
    pub fn extended_error(self) -> Option<ExtendedError> {
        match self {
            Self::BadOnion => Some(ExtendedError::HsBadAddress),
            Self::Onion | Self::DotExit | Self::BadHostname | Self::PtrNotAddress => None,
        }
    }
}

/// Decide what to do with `command` for `target`.
pub fn route(command: SocksCommand, target: &SocksTarget) -> Route {
    match command {
        SocksCommand::ResolvePtr => {
            let ip = match target {
                SocksTarget::Ip(ip, _) => Some(*ip),
                SocksTarget::Hostname(h, _) => parse_ptr_name(h),
            };
            match ip {
                Some(ip) => Route::Exit(SocksTarget::Ip(ip, 0)),
                None => Route::Refuse(Refusal::PtrNotAddress),
            }
        }
        SocksCommand::Resolve => {
            let ip = match target {
                SocksTarget::Ip(ip, _) => Some(*ip),
                SocksTarget::Hostname(h, _) => parse_ip(h),
            };
            match ip {
                // C-tor answers a RESOLVE of an address itself.
                Some(ip) => Route::Answer(SocksTarget::Ip(ip, 0)),
                None => to_exit(target),
            }
        }
        SocksCommand::Connect => to_exit(target),
    }
}

/// `target` for an exit, if its name may go to one.
fn to_exit(target: &SocksTarget) -> Route {
    match target {
        SocksTarget::Ip(..) => Route::Exit(target.clone()),
        SocksTarget::Hostname(h, port) => match check_hostname(h) {
            Ok(()) => Route::Exit(SocksTarget::Hostname(h.to_ascii_lowercase(), *port)),
            Err(r) => Route::Refuse(r),
        },
    }
}

/// Whether `host` may be sent to an exit: not a `.onion` or `.exit` name,
/// and only the characters of DNS names (letters, digits, `-`, `.`, and
/// `_`, which Windows uses), or an address.
pub fn check_hostname(host: &str) -> Result<(), Refusal> {
    let lower = host.to_ascii_lowercase();
    // A final dot makes the name absolute; it is the same name. (C-tor
    // would send "x.onion." to an exit: its checks miss the dot.)
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.ends_with(".exit") {
        return Err(Refusal::DotExit);
    }
    if let Some(rest) = name.strip_suffix(".onion") {
        // "x.y.onion": the onion address is the last label (C-tor drops
        // the rest).
        let label = rest.rsplit('.').next().unwrap_or(rest);
        return Err(if onion_v3_is_valid(label) {
            Refusal::Onion
        } else {
            Refusal::BadOnion
        });
    }
    if parse_ip(host).is_some() {
        return Ok(());
    }
    let fine = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if fine {
        Ok(())
    } else {
        Err(Refusal::BadHostname)
    }
}

/// An address written as text, IPv6 with or without brackets.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    inner.parse().ok()
}

/// The address of a reverse lookup: an address, or its `in-addr.arpa` or
/// `ip6.arpa` name (C-tor's `tor_addr_parse_PTR_name`).
pub fn parse_ptr_name(name: &str) -> Option<IpAddr> {
    if let Some(ip) = parse_ip(name) {
        return Some(ip);
    }
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(rest) = lower.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let mut parts = rest.split('.');
        // The octets come in reverse order.
        for slot in octets.iter_mut().rev() {
            let part = parts.next()?;
            if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        return parts
            .next()
            .is_none()
            .then(|| IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(rest) = lower.strip_suffix(".ip6.arpa") {
        // 32 nibbles, least significant first.
        let mut value: u128 = 0;
        let mut n = 0;
        for (i, part) in rest.split('.').enumerate() {
            let nibble = match part.as_bytes() {
                [c] => char::from(*c).to_digit(16)?,
                _ => return None,
            };
            if i >= 32 {
                return None;
            }
            value |= u128::from(nibble) << (4 * i);
            n = i + 1;
        }
        return (n == 32).then(|| IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

/// The length of a v3 onion address's label (rend-spec-v3 §6).
const ONION_V3_LEN: usize = 56;

/// rend-spec-v3 §6: `base32(PUBKEY | CHECKSUM | VERSION)` with VERSION 3,
/// CHECKSUM the first two bytes of `SHA3-256(".onion checksum" | PUBKEY |
/// VERSION)`, and PUBKEY an ed25519 point (C-tor's `hs_address_is_valid`).
fn onion_v3_is_valid(label: &str) -> bool {
    if label.len() != ONION_V3_LEN {
        return false;
    }
    let Some(bytes) = base32_decode(label) else {
        return false;
    };
    let (Some(key), Some(checksum), Some(&version)) =
        (bytes.get(..32), bytes.get(32..34), bytes.get(34))
    else {
        return false;
    };
    if version != 3 {
        return false;
    }
    let digest = onion_checksum(key, version);
    if digest.get(..2) != Some(checksum) {
        return false;
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(key);
    PublicKey::from_bytes(&pk).is_ok()
}

/// SHA3-256(".onion checksum" | PUBKEY | VERSION).
fn onion_checksum(key: &[u8], version: u8) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b".onion checksum");
    h.update(key);
    h.update([version]);
    h.finalize().into()
}

/// RFC 4648 base32 without padding, either case; `None` for a character
/// outside the alphabet or leftover bits that are not zero.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => c - b'a',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests;
