//! SOCKS4 and SOCKS4a requests, as C-tor reads them on its SocksPort
//! (`parse_socks4_request` and `process_socks4_request` in
//! `proto_socks.c`):
//!
//! VN 4, CD, DSTPORT, DSTIP, USERID, NUL, and for SOCKS4a (DSTIP 0.0.0.x
//! with x not 0) HOSTNAME, NUL. Only CONNECT is taken. The user id is the
//! stream-isolation credential, as SOCKS5's username (C-tor's
//! `IsolateSOCKSAuth`); SOCKS4 has no password.

use std::net::{IpAddr, Ipv4Addr};

use super::proto::{IsolationKey, SocksCommand, SocksError, SocksRequest, SocksTarget};

/// The fixed part: VN, CD, DSTPORT, DSTIP.
const HEAD: usize = 8;
/// The longest user id or hostname, without its NUL (SOCKS5's limit for
/// the same fields, so isolation keys are alike).
pub(super) const MAX_FIELD: usize = 255;
/// The longest request.
pub(super) const MAX_REQUEST: usize = HEAD + 2 * (MAX_FIELD + 1);

/// A request from the start of `buf` (whose first byte is 4), with the
/// bytes it took; `Ok(None)` if more are needed.
pub(super) fn parse(buf: &[u8]) -> Result<Option<(SocksRequest, usize)>, SocksError> {
    if let Some(&cd) = buf.get(1)
        && cd != 1
    {
        // BIND, or tor's RESOLVE (which C-tor takes over SOCKS4a and Braid
        // only over SOCKS5).
        return Err(SocksError::Command(cd));
    }
    let Some(head) = buf.get(..HEAD) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([byte(head, 2), byte(head, 3)]);
    let ip = Ipv4Addr::new(byte(head, 4), byte(head, 5), byte(head, 6), byte(head, 7));
    let Some((user, after_user)) = field(buf, HEAD)? else {
        return Ok(None);
    };
    if port == 0 || ip.is_unspecified() {
        // C-tor: "socks4: Port or DestIP is zero. Rejecting."
        return Err(SocksError::Socks4Zero);
    }
    let (target, end) = if u32::from(ip) >> 8 == 0 {
        // SOCKS4a: the hostname follows; the exit resolves it.
        let Some((host, end)) = field(buf, after_user)? else {
            return Ok(None);
        };
        let host = std::str::from_utf8(host)
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or(SocksError::Hostname)?;
        (SocksTarget::Hostname(host.to_owned(), port), end)
    } else {
        (SocksTarget::Ip(IpAddr::V4(ip), port), after_user)
    };
    let request = SocksRequest {
        command: SocksCommand::Connect,
        target,
        isolation: IsolationKey {
            username: user.to_vec(),
            password: Vec::new(),
        },
    };
    Ok(Some((request, end)))
}

fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The NUL-terminated field at `start` and the offset after its NUL;
/// `Ok(None)` if its NUL has not come yet.
fn field(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, SocksError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = rest.get(..=MAX_FIELD).unwrap_or(rest);
    match window.iter().position(|&b| b == 0) {
        Some(n) => Ok(Some((rest.get(..n).unwrap_or_default(), start + n + 1))),
        None if window.len() > MAX_FIELD => Err(SocksError::FieldTooLong),
        None => Ok(None),
    }
}
