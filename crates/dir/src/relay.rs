//! Braid's own model of a relay as listed in a microdescriptor consensus plus
//! its microdescriptor, independent of any document parser.

use std::fmt;
use std::net::SocketAddrV4;
use std::ops::{BitOr, BitOrAssign};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tor_protover::Protocols;

use crate::error::{IdParseError, PolicyParseError};

/// Decode `N` bytes from `2 * N` hex digits (either case).
fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], IdParseError> {
    let err = || IdParseError {
        input: s.chars().take(80).collect(),
        expected: 2 * N,
    };
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return Err(err());
    }
    let mut out = [0_u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let mut v = 0_u8;
        for &c in pair {
            let d = char::from(c).to_digit(16).ok_or_else(err)?;
            // d < 16, so this cannot truncate.
            v = (v << 4) | (d as u8);
        }
        *byte = v;
    }
    Ok(out)
}

/// Write bytes as upper-case hex.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02X}")?;
    }
    Ok(())
}

/// A relay's RSA identity: the SHA-1 digest of its RSA identity key, shown as
/// 40 upper-case hex digits (the "fingerprint").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId([u8; 20]);

impl RelayId {
    /// Length in bytes.
    pub const LEN: usize = 20;

    /// Wrap raw identity bytes.
    pub const fn new(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl From<[u8; 20]> for RelayId {
    fn from(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayId(")?;
        write_hex(f, &self.0)?;
        write!(f, ")")
    }
}

impl FromStr for RelayId {
    type Err = IdParseError;

    /// Parse 40 hex digits, optionally prefixed by `$` as in family lines.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix('$').unwrap_or(s);
        decode_hex::<20>(hex).map(Self).map_err(|mut e| {
            e.input = s.chars().take(80).collect();
            e
        })
    }
}

impl Serialize for RelayId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RelayId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A relay's Ed25519 identity key, shown as 64 upper-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ed25519Id([u8; 32]);

impl Ed25519Id {
    /// Wrap raw key bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Ed25519Id {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Ed25519Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Ed25519Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Id(")?;
        write_hex(f, &self.0)?;
        write!(f, ")")
    }
}

impl FromStr for Ed25519Id {
    type Err = IdParseError;

    /// Parse 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex::<32>(s).map(Self)
    }
}

/// The consensus flags of a relay (dir-spec §3.4.1, the "s" line), as a
/// small bit set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RelayFlags(u16);

impl RelayFlags {
    /// Directory authority.
    pub const AUTHORITY: Self = Self(1 << 0);
    /// Listed as a bad exit; never chosen as an exit (path-spec §2.2.1).
    pub const BAD_EXIT: Self = Self(1 << 1);
    /// Suitable as an exit.
    pub const EXIT: Self = Self(1 << 2);
    /// Suitable for high-bandwidth circuits.
    pub const FAST: Self = Self(1 << 3);
    /// Suitable as an entry guard.
    pub const GUARD: Self = Self(1 << 4);
    /// Onion-service directory.
    pub const HSDIR: Self = Self(1 << 5);
    /// Only to be used in the middle position.
    pub const MIDDLE_ONLY: Self = Self(1 << 6);
    /// Currently usable.
    pub const RUNNING: Self = Self(1 << 7);
    /// Suitable for long-lived circuits.
    pub const STABLE: Self = Self(1 << 8);
    /// Descriptor is old enough that the relay should upload a new one.
    pub const STALE_DESC: Self = Self(1 << 9);
    /// Serves directory information (BEGIN_DIR).
    pub const V2DIR: Self = Self(1 << 10);
    /// Has been validated.
    pub const VALID: Self = Self(1 << 11);

    /// Every flag with its consensus name, in the consensus' (lexical) order.
    const NAMES: [(Self, &'static str); 12] = [
        (Self::AUTHORITY, "Authority"),
        (Self::BAD_EXIT, "BadExit"),
        (Self::EXIT, "Exit"),
        (Self::FAST, "Fast"),
        (Self::GUARD, "Guard"),
        (Self::HSDIR, "HSDir"),
        (Self::MIDDLE_ONLY, "MiddleOnly"),
        (Self::RUNNING, "Running"),
        (Self::STABLE, "Stable"),
        (Self::STALE_DESC, "StaleDesc"),
        (Self::V2DIR, "V2Dir"),
        (Self::VALID, "Valid"),
    ];

    /// Every flag we know.
    pub const ALL: Self = Self(0x0fff);

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from raw bits, dropping bits that are no flag.
    pub const fn from_bits_truncate(bits: u16) -> Self {
        Self(bits & Self::ALL.0)
    }

    /// No flags.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// True if every flag of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any flag of `other` is set in `self`.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Set the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Clear the flags of `other`.
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }

    /// True if no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flag with this consensus name (case-sensitive, as in the
    /// consensus), if it is one we know.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(flag, _)| *flag)
    }

    /// Parse the words of a consensus "s" line (without the leading "s").
    /// Unknown flags are ignored, as dir-spec §3.4.1 asks of clients.
    pub fn from_names<'a>(words: impl IntoIterator<Item = &'a str>) -> Self {
        words
            .into_iter()
            .filter_map(Self::from_name)
            .fold(Self::empty(), |acc, f| acc | f)
    }
}

impl BitOr for RelayFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for RelayFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for RelayFlags {
    /// The flags' consensus names separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = " ";
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RelayFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayFlags({self})")
    }
}

/// An inclusive range of TCP ports, `1 <= lo <= hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// The range `lo..=hi`, if `1 <= lo <= hi`.
    pub const fn new(lo: u16, hi: u16) -> Option<Self> {
        if lo >= 1 && lo <= hi {
            Some(Self { lo, hi })
        } else {
            None
        }
    }

    /// The lowest port.
    pub const fn lo(self) -> u16 {
        self.lo
    }

    /// The highest port.
    pub const fn hi(self) -> u16 {
        self.hi
    }

    /// True if `port` is in the range.
    pub const fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl FromStr for PortRange {
    type Err = PolicyParseError;

    /// Parse `port` or `lo-hi` (dir-spec §3.8.2).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PolicyParseError::BadRange(s.chars().take(80).collect());
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (s, s),
        };
        // `u16::from_str` accepts a leading '+', which the spec does not.
        let num = |t: &str| -> Result<u16, PolicyParseError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        Self::new(num(lo)?, num(hi)?).ok_or_else(bad)
    }
}

/// A microdescriptor exit-policy summary (dir-spec §3.3 "p" line, port lists
/// encoded as in §3.8.2): either the ports the relay accepts connections to
/// for most addresses, or the ports it rejects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortPolicy {
    accept: bool,
    /// Sorted, non-overlapping, non-adjacent ranges.
    ranges: Vec<PortRange>,
}

impl PortPolicy {
    /// A policy that accepts the given ports and rejects all others.
    pub fn accept(ranges: impl IntoIterator<Item = PortRange>) -> Self {
        Self::canonical(true, ranges)
    }

    /// A policy that rejects the given ports and accepts all others.
    pub fn reject(ranges: impl IntoIterator<Item = PortRange>) -> Self {
        Self::canonical(false, ranges)
    }

    /// Build a policy in canonical form: ranges normalized, and a list
    /// covering every port turned into the empty list of the opposite kind,
    /// so that equal policies compare equal.
    fn canonical(accept: bool, ranges: impl IntoIterator<Item = PortRange>) -> Self {
        let ranges = normalize(ranges);
        if ranges
            == [PortRange {
                lo: 1,
                hi: u16::MAX,
            }]
        {
            Self {
                accept: !accept,
                ranges: Vec::new(),
            }
        } else {
            Self { accept, ranges }
        }
    }

    /// The policy of a relay that is not an exit: `reject 1-65535`. This is
    /// also the policy of a microdescriptor without a "p" line.
    pub fn reject_all() -> Self {
        Self {
            accept: true,
            ranges: Vec::new(),
        }
    }

    /// `accept 1-65535`.
    pub fn accept_all() -> Self {
        Self {
            accept: false,
            ranges: Vec::new(),
        }
    }

    /// True if the relay will (probably) connect to `port` on an unknown
    /// address: path-spec §2.2.1 "might support". Port 0 is never allowed.
    pub fn allows_port(&self, port: u16) -> bool {
        if port == 0 {
            return false;
        }
        let listed = self.ranges.iter().any(|r| r.contains(port));
        listed == self.accept
    }

    /// True unless the policy is equivalent to "reject *:*" (path-spec §1.1:
    /// an exit circuit's last hop must not be reject-all).
    pub fn allows_some_port(&self) -> bool {
        // In canonical form only `accept` with no ports rejects everything.
        !(self.accept && self.ranges.is_empty())
    }

    /// The normalized port ranges, sorted and merged.
    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    /// True for an `accept` summary, false for `reject`.
    pub fn is_accept(&self) -> bool {
        self.accept
    }
}

impl Default for PortPolicy {
    fn default() -> Self {
        Self::reject_all()
    }
}

/// Sort ranges and merge overlapping or adjacent ones.
fn normalize(ranges: impl IntoIterator<Item = PortRange>) -> Vec<PortRange> {
    let mut v: Vec<PortRange> = ranges.into_iter().collect();
    v.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if u32::from(r.lo) <= u32::from(last.hi) + 1 => {
                last.hi = last.hi.max(r.hi);
            }
            _ => out.push(r),
        }
    }
    out
}

impl FromStr for PortPolicy {
    type Err = PolicyParseError;

    /// Parse `accept PortList` or `reject PortList`, where PortList is
    /// comma-separated ports and `lo-hi` ranges (dir-spec §3.8.2). A leading
    /// `p ` (the microdescriptor keyword) is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_ascii_whitespace().peekable();
        if words.peek() == Some(&"p") {
            words.next();
        }
        let accept = match words.next() {
            Some("accept") => true,
            Some("reject") => false,
            Some(other) => {
                return Err(PolicyParseError::BadKeyword(
                    other.chars().take(80).collect(),
                ));
            }
            None => return Err(PolicyParseError::BadKeyword(String::new())),
        };
        let list = words.next().ok_or(PolicyParseError::BadShape)?;
        if words.next().is_some() {
            return Err(PolicyParseError::BadShape);
        }
        let ranges = list
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<PortRange>, _>>()?;
        Ok(Self::canonical(accept, ranges))
    }
}

impl fmt::Display for PortPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An empty list cannot be written; use its equivalent.
        if self.ranges.is_empty() {
            let kw = if self.accept { "reject" } else { "accept" };
            return write!(f, "{kw} 1-65535");
        }
        write!(f, "{}", if self.accept { "accept" } else { "reject" })?;
        let mut sep = " ";
        for r in &self.ranges {
            write!(f, "{sep}{r}")?;
            sep = ",";
        }
        Ok(())
    }
}

/// One relay, as far as path selection cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// RSA identity.
    pub id: RelayId,
    /// Ed25519 identity, if known.
    pub ed_id: Option<Ed25519Id>,
    /// Nickname (not unique; for logs only).
    pub nickname: String,
    /// IPv4 OR address and port.
    pub addr: SocketAddrV4,
    /// Consensus flags.
    pub flags: RelayFlags,
    /// Consensus bandwidth weight: the `w Bandwidth=` value.
    pub weight: u64,
    /// Supported subprotocols: the consensus `pr` line.
    pub protocols: Protocols,
    /// Exit-policy summary from the microdescriptor.
    pub policy: PortPolicy,
    /// Declared family members by RSA identity (microdescriptor "family").
    pub family: Vec<RelayId>,
    /// Family ids (microdescriptor "family-ids", prop 321's happy
    /// families), in their text form (`ed25519:<base64>`, or a form this
    /// version does not know): two relays sharing one are one family.
    pub family_ids: Vec<String>,
    /// The curve25519 ntor onion key (microdescriptor "ntor-onion-key"),
    /// needed to extend a circuit to this relay.
    pub ntor_key: Option<[u8; 32]>,
}

impl Relay {
    /// A relay with no flags, weight 0, no protocols, a reject-all policy and
    /// no family; fill in the rest with the public fields.
    pub fn new(id: RelayId, nickname: impl Into<String>, addr: SocketAddrV4) -> Self {
        Self {
            id,
            ed_id: None,
            nickname: nickname.into(),
            addr,
            flags: RelayFlags::empty(),
            weight: 0,
            protocols: Protocols::new(),
            policy: PortPolicy::reject_all(),
            family: Vec::new(),
            family_ids: Vec::new(),
            ntor_key: None,
        }
    }

    /// True if the relay has every flag in `flags`.
    pub fn has_flags(&self, flags: RelayFlags) -> bool {
        self.flags.contains(flags)
    }

    /// True if `self` and `other` are the same relay: equal RSA identities,
    /// or equal Ed25519 identities where both are known.
    pub fn same_relay(&self, other: &Relay) -> bool {
        self.id == other.id || matches!((self.ed_id, other.ed_id), (Some(a), Some(b)) if a == b)
    }

    /// True if the two relays are in one family: each lists the other
    /// (path-spec §2.2), they share a family id (prop 321: a relay proves
    /// its membership by signing with the family key, so one shared id is
    /// enough; C-tor 0.4.9 and arti treat it so), or they are the same
    /// relay.
    pub fn same_family(&self, other: &Relay) -> bool {
        self.same_relay(other)
            || (self.family.contains(&other.id) && other.family.contains(&self.id))
            || self.family_ids.iter().any(|f| other.family_ids.contains(f))
    }

    /// The first two octets of the OR address: the relay's /16 network.
    pub fn subnet16(&self) -> [u8; 2] {
        let [a, b, _, _] = self.addr.ip().octets();
        [a, b]
    }

    /// True if both relays are in the same IPv4 /16 (path-spec §2.2).
    pub fn same_subnet16(&self, other: &Relay) -> bool {
        self.subnet16() == other.subnet16()
    }

    /// True if the relay supports every subprotocol version in `required`.
    pub fn supports_all(&self, required: &Protocols) -> bool {
        required.difference(&self.protocols).is_empty()
    }
}

impl fmt::Display for Relay {
    /// `nickname~FINGERPRINT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}~{}", self.nickname, self.id)
    }
}

#[cfg(test)]
mod tests;
