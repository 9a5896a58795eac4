//! Directory authorities and fallback mirrors: the trust roots of the
//! directory, built in for the public network and taken from a network file
//! for a private one.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::relay::{Ed25519Id, RelayId};

/// A v3 directory authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Nickname, for messages.
    pub nickname: String,
    /// The v3 identity: the fingerprint of its authority identity key, which
    /// signs its key certificates (dir-spec §3.1) and names its signature on
    /// the consensus.
    pub v3ident: RelayId,
    /// Its DirPort, where documents are fetched over plain HTTP.
    pub dir_addr: SocketAddr,
}

/// A fallback directory mirror (a relay that caches directory documents),
/// asked over a one-hop circuit (BEGIN_DIR, tor-spec §6.2) before any
/// consensus is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// RSA identity.
    pub id: RelayId,
    /// IPv4 ORPort.
    pub or_addr: SocketAddrV4,
    /// IPv6 ORPort, if any.
    pub or_addr_v6: Option<SocketAddrV6>,
    /// Nickname, for messages.
    pub nickname: String,
    /// Ed25519 identity, if known: the channel's CERTS must then prove it
    /// too (C-tor's list names none; a network file may).
    pub ed_id: Option<Ed25519Id>,
}

/// Where the client's directory information comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirConfig {
    /// The authorities whose majority must sign the consensus.
    pub authorities: Vec<Authority>,
    /// Fallback mirrors.
    pub fallbacks: Vec<Fallback>,
}

impl DirConfig {
    /// The public Tor network: the nine v3 authorities and the fallback
    /// mirrors that tor 0.4.9 ships.
    pub fn public() -> Self {
        Self {
            authorities: public_authorities(),
            fallbacks: public_fallbacks(),
        }
    }

    /// The authorities' v3 identities.
    pub fn authority_ids(&self) -> Vec<RelayId> {
        self.authorities.iter().map(|a| a.v3ident).collect()
    }
}

/// The public network's v3 directory authorities (nickname, v3ident,
/// IPv4 DirPort), as in tor 0.4.9's `auth_dirs.inc`.
const PUBLIC_AUTHORITIES: [(&str, &str, &str); 9] = [
    (
        "moria1",
        "F533C81CEF0BC0267857C99B2F471ADF249FA232",
        "128.31.0.39:9231",
    ),
    (
        "tor26",
        "2F3DF9CA0E5D36F2685A2DA67184EB8DCB8CBA8C",
        "217.196.147.77:80",
    ),
    (
        "dizum",
        "E8A9C45EDE6D711294FADF8E7951F4DE6CA56B58",
        "45.66.35.11:80",
    ),
    (
        "gabelmoo",
        "ED03BB616EB2F60BEC80151114BB25CEF515B226",
        "131.188.40.189:80",
    ),
    (
        "dannenberg",
        "0232AF901C31A04EE9848595AF9BB7620D4C5B2E",
        "193.23.244.244:80",
    ),
    (
        "maatuska",
        "49015F787433103580E3B66A1707A00E60F2D15B",
        "171.25.193.9:443",
    ),
    (
        "longclaw",
        "23D15D965BC35114467363C165C4F724B64B4F66",
        "199.58.81.140:80",
    ),
    (
        "bastet",
        "27102BC123E7AF1D4741AE047E160C91ADC76B21",
        "204.13.164.118:80",
    ),
    (
        "faravahar",
        "70849B868D606BAECFB6128C5E3D782029AA394F",
        "216.218.219.41:80",
    ),
];

/// The public network's authorities. Entries that do not parse are skipped;
/// a unit test checks that none is.
pub fn public_authorities() -> Vec<Authority> {
    PUBLIC_AUTHORITIES
        .iter()
        .filter_map(|(nick, ident, addr)| {
            Some(Authority {
                nickname: (*nick).to_owned(),
                v3ident: ident.parse().ok()?,
                dir_addr: addr.parse().ok()?,
            })
        })
        .collect()
}

/// The fallback list shipped in `data/fallback_dirs.txt`.
const FALLBACK_DIRS: &str = include_str!("../data/fallback_dirs.txt");

/// The public network's fallback mirrors. Lines that do not parse are
/// skipped; a unit test checks that none is.
pub fn public_fallbacks() -> Vec<Fallback> {
    FALLBACK_DIRS.lines().filter_map(parse_fallback).collect()
}

/// One line of `data/fallback_dirs.txt`: `ID IPV4:PORT IPV6|- NICKNAME`.
fn parse_fallback(line: &str) -> Option<Fallback> {
    if line.starts_with('#') {
        return None;
    }
    let mut w = line.split_ascii_whitespace();
    let id = w.next()?.parse().ok()?;
    let or_addr = w.next()?.parse().ok()?;
    let or_addr_v6 = match w.next()? {
        "-" => None,
        v6 => Some(v6.parse().ok()?),
    };
    let nickname = w.next().unwrap_or("-").to_owned();
    Some(Fallback {
        id,
        or_addr,
        or_addr_v6,
        nickname,
        ed_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_lists_parse_completely() {
        assert_eq!(public_authorities().len(), PUBLIC_AUTHORITIES.len());
        let data_lines = FALLBACK_DIRS
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        let fallbacks = public_fallbacks();
        assert_eq!(fallbacks.len(), data_lines);
        assert!(fallbacks.len() >= 100, "{}", fallbacks.len());
        assert!(fallbacks.iter().any(|f| f.or_addr_v6.is_some()));
    }

    #[test]
    fn public_authorities_are_distinct() {
        let auths = public_authorities();
        for (i, a) in auths.iter().enumerate() {
            for b in auths.iter().skip(i + 1) {
                assert_ne!(a.v3ident, b.v3ident);
                assert_ne!(a.dir_addr, b.dir_addr);
            }
        }
    }

    #[test]
    fn bad_fallback_lines_are_skipped() {
        assert!(parse_fallback("# comment").is_none());
        assert!(parse_fallback("nothex 1.2.3.4:5 - x").is_none());
        assert!(
            parse_fallback("EF8DF732D0F307F63011B81CA44257E30BEF2B5C 1.2.3.4:99999 - x").is_none()
        );
        let f = parse_fallback("EF8DF732D0F307F63011B81CA44257E30BEF2B5C 1.2.3.4:5 [::1]:6 n");
        assert_eq!(f.map(|f| f.or_addr.port()), Some(5));
    }
}
