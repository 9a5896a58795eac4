//! What a client asks of an exit, checked as C-tor's exit checks it: the
//! BEGIN target and flags (tor-spec §6.2), the RESOLVE query (§6.4,
//! including reverse lookups), and the rules for the answers: which of
//! a name's addresses to connect to, and the TTLs given back (C-tor's
//! DefectTor defence).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::RngExt as _;
use tor_cell::relaycell::msg::{Begin, BeginFlags, EndReason};

use crate::stream::target::MAX_HOSTNAME_LEN;
use crate::stream::{Host, Target};

/// The TTL an exit gives for an address it did not look up (an IP literal)
/// (C-tor `DEFAULT_DNS_TTL`, 30 min).
pub const DEFAULT_DNS_TTL: u32 = 30 * 60;

/// TTLs below this are given as this; all others as [`MAX_DNS_TTL`] (C-tor
/// `clip_dns_ttl`: only two values, against DNS-based traffic confirmation,
/// "DefectTor").
pub const MIN_DNS_TTL: u32 = 5 * 60;

/// The TTL given for any answer whose TTL is at least [`MIN_DNS_TTL`].
pub const MAX_DNS_TTL: u32 = 60 * 60;

/// A clipped TTL is moved by up to this much either way, uniformly at
/// random (C-tor `FUZZY_DNS_TTL`, `clip_dns_fuzzy_ttl`).
pub const FUZZY_DNS_TTL: u32 = 4 * 60;

/// What a RESOLVE asks for (tor-spec §6.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResolveQuery {
    /// The addresses of a hostname (lower case).
    Name(String),
    /// The name of an address: a reverse lookup, asked as
    /// `d.c.b.a.in-addr.arpa` or the nibbles of an IPv6 address in
    /// `ip6.arpa`.
    Reverse(IpAddr),
}

/// How a RESOLVE is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveParse {
    /// The driver must look it up.
    Lookup(ResolveQuery),
    /// An IP literal: the answer is the address itself.
    Literal(IpAddr),
    /// Nothing to look up: answered with a RESOLVED error at once (C-tor
    /// `dns_resolve` returning -1: "Error resolving hostname", the
    /// nontransient type).
    Invalid,
}

/// Parse a BEGIN as C-tor's exit does (`begin_cell_parse`,
/// `connection_exit_begin_conn`, `dns_resolve_impl`): the target and the
/// flags to act on, or the END reason to refuse it with.
///
/// - port 0: TORPROTOCOL ("Missing port in relay begin cell");
/// - without `ipv6_exit`: IPv4-not-ok is EXITPOLICY ("If you don't want
///   IPv4, I can't help"), an IPv6 literal is EXITPOLICY (`IPv6Exit` not
///   set), and IPv6-ok / IPv6-preferred are cleared;
/// - a hostname with characters outside letters, digits, `-`, `.` and `_`,
///   an empty or over-long one, a reverse-lookup name, or an onion address:
///   RESOLVEFAILED (C-tor's answer when `dns_resolve` refuses a name).
///
/// tor-cell has already split ADDRPORT at its last `:` (or the `]` of
/// an IPv6 literal) and required ASCII and a decimal port: a BEGIN it
/// cannot parse never reaches the exit (see the module docs of
/// [`exit`](super)).
pub(crate) fn parse_begin(
    begin: &Begin,
    ipv6_exit: bool,
) -> Result<(Target, BeginFlags), EndReason> {
    // tor-spec §6.2: "PORT ... between 1 and 65535".
    if begin.port() == 0 {
        return Err(EndReason::TORPROTOCOL);
    }
    let mut flags = begin.flags();
    if !ipv6_exit {
        if flags.contains(BeginFlags::IPV4_NOT_OKAY) {
            return Err(EndReason::EXITPOLICY);
        }
        flags.remove(BeginFlags::IPV6_OKAY | BeginFlags::IPV6_PREFERRED);
    }
    let addr = std::str::from_utf8(begin.addr())
        .map_err(|_| EndReason::TORPROTOCOL)?
        .to_ascii_lowercase();
    let host = match parse_ip(&addr) {
        Some(IpAddr::V6(_)) if !ipv6_exit => return Err(EndReason::EXITPOLICY),
        Some(ip) => Host::from(ip),
        None => {
            // C-tor `dns_resolve_impl`: reverse lookups only with RESOLVE.
            if !valid_hostname(&addr) || parse_ptr_name(&addr).is_some() {
                return Err(EndReason::RESOLVEFAILED);
            }
            Host::Hostname(addr)
        }
    };
    Ok((
        Target {
            host,
            port: begin.port(),
        },
        flags,
    ))
}

/// Parse a RESOLVE query (tor-spec §6.4; C-tor `dns_resolve_impl`).
pub(crate) fn parse_resolve(query: &[u8]) -> ResolveParse {
    let Ok(q) = std::str::from_utf8(query) else {
        return ResolveParse::Invalid;
    };
    let q = q.to_ascii_lowercase();
    if let Some(ip) = parse_ip(&q) {
        // C-tor answers an IP literal at once; with the address itself
        // here (C-tor's cached-answer path, given no cache entry, sends an
        // error: clients never ask it).
        return ResolveParse::Literal(ip);
    }
    if !valid_hostname(&q) {
        return ResolveParse::Invalid;
    }
    match parse_ptr_name(&q) {
        // C-tor: no reverse lookups of internal addresses.
        Some(Some(ip)) if is_internal(ip) => ResolveParse::Invalid,
        Some(Some(ip)) => ResolveParse::Lookup(ResolveQuery::Reverse(ip)),
        Some(None) => ResolveParse::Invalid,
        None => ResolveParse::Lookup(ResolveQuery::Name(q)),
    }
}

/// An IPv4 or IPv6 literal (tor-cell strips an IPv6 literal's brackets).
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| s.parse::<Ipv6Addr>().map(IpAddr::V6))
        .ok()
}

/// A name the exit will look up: non-empty, at most 255 bytes, only
/// letters, digits, `-`, `.` and `_` (C-tor `address_is_invalid_destination`
/// for servers: RFC 953 plus the underscore "Windows does ... to thumb its
/// nose at the IETF"), and not an onion address (RFC 7686 §2: resolvers
/// "SHOULD NOT perform lookups" for `.onion`; a client never sends one to
/// an exit, and looking it up would leak it to the DNS).
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_HOSTNAME_LEN
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !(h == "onion" || h.ends_with(".onion"))
}

/// A reverse-lookup name (C-tor `tor_addr_parse_PTR_name`): `None` if `name`
/// (lower case) is not one, `Some(None)` if it is malformed, else the
/// address it names. `d.c.b.a.in-addr.arpa` is `a.b.c.d`; an `ip6.arpa`
/// name is the 32 nibbles of the address, low-order first, each followed by
/// a dot.
pub(crate) fn parse_ptr_name(name: &str) -> Option<Option<IpAddr>> {
    if let Some(prefix) = name.strip_suffix(".in-addr.arpa") {
        let v4 = prefix.parse::<Ipv4Addr>().ok().map(|a| {
            let [a, b, c, d] = a.octets();
            IpAddr::V4(Ipv4Addr::new(d, c, b, a))
        });
        return Some(v4);
    }
    if !name.ends_with(".ip6.arpa") {
        return None;
    }
    // The nibble labels, each with its dot.
    let prefix = name.strip_suffix("ip6.arpa")?;
    Some(parse_ip6_nibbles(prefix))
}

/// The 32 "n." nibble labels of an `ip6.arpa` name, low-order first.
fn parse_ip6_nibbles(prefix: &str) -> Option<IpAddr> {
    let b = prefix.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut octets = [0u8; 16];
    for (i, pair) in b.chunks_exact(4).enumerate() {
        let [lo, d1, hi, d2] = *pair else {
            return None;
        };
        if d1 != b'.' || d2 != b'.' {
            return None;
        }
        let lo = char::from(lo).to_digit(16)?;
        let hi = char::from(hi).to_digit(16)?;
        let o = octets.get_mut(15usize.checked_sub(i)?)?;
        *o = u8::try_from(lo | (hi << 4)).ok()?;
    }
    Some(IpAddr::V6(Ipv6Addr::from(octets)))
}

/// An internal address (C-tor `tor_addr_is_internal`, not for listening):
/// 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16, the
/// same inside IPv4-mapped IPv6, fc00::/7, fe80::/10, fec0::/10 and ::/127.
pub fn is_internal(addr: IpAddr) -> bool {
    let v4 = match addr {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => m,
            None => {
                let s = a.segments();
                let [s0, ..] = s;
                return (s0 & 0xfe00) == 0xfc00
                    || (s0 & 0xffc0) == 0xfe80
                    || (s0 & 0xffc0) == 0xfec0
                    || u128::from(a) <= 1;
            }
        },
    };
    let x = u32::from(v4);
    (x & 0xff00_0000) == 0x0a00_0000
        || (x & 0xff00_0000) == 0
        || (x & 0xff00_0000) == 0x7f00_0000
        || (x & 0xffc0_0000) == 0x6440_0000
        || (x & 0xffff_0000) == 0xa9fe_0000
        || (x & 0xfff0_0000) == 0xac10_0000
        || (x & 0xffff_0000) == 0xc0a8_0000
}

/// Which of a hostname's addresses to connect to, as C-tor's exit chooses
/// (`set_exitconn_info_from_resolve`), given the BEGIN `flags` as passed in
/// [`ExitEvent::Connect`](super::ExitEvent::Connect) (IPv6 flags already
/// cleared when we do not exit to IPv6) and `allowed`, the exit policy for
/// the stream's port:
///
/// IPv4 answers unless IPv4-not-ok, IPv6 answers only with IPv6-ok; with
/// both, the one the policy allows, else the client's preference (IPv4
/// unless IPv6-preferred). `None`: nothing usable (C-tor then fails the
/// stream with RESOLVEFAILED). The first address of each family is taken.
pub fn choose_address(
    flags: BeginFlags,
    addrs: &[IpAddr],
    allowed: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let v4 = addrs
        .iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .filter(|_| !flags.contains(BeginFlags::IPV4_NOT_OKAY));
    let v6 = addrs
        .iter()
        .copied()
        .find(IpAddr::is_ipv6)
        .filter(|_| flags.contains(BeginFlags::IPV6_OKAY));
    let prefer_v6 = flags.contains(BeginFlags::IPV6_PREFERRED);
    match (v4, v6) {
        (Some(a), Some(b)) => match (allowed(a), allowed(b)) {
            (true, false) => Some(a),
            (false, true) => Some(b),
            _ if prefer_v6 => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    }
}

/// C-tor `clip_dns_ttl`: below [`MIN_DNS_TTL`] gives [`MIN_DNS_TTL`],
/// anything else [`MAX_DNS_TTL`].
pub fn clip_dns_ttl(ttl: u32) -> u32 {
    if ttl < MIN_DNS_TTL {
        MIN_DNS_TTL
    } else {
        MAX_DNS_TTL
    }
}

/// C-tor `clip_dns_fuzzy_ttl`: [`clip_dns_ttl`] moved uniformly by up to
/// [`FUZZY_DNS_TTL`] either way; what an exit gives for an answer it looked
/// up, in CONNECTED and RESOLVED.
pub fn clip_dns_fuzzy_ttl<R: rand::Rng + ?Sized>(ttl: u32, rng: &mut R) -> u32 {
    let fuzz = rng.random_range(0..=2 * FUZZY_DNS_TTL);
    (clip_dns_ttl(ttl) + fuzz).saturating_sub(FUZZY_DNS_TTL)
}

/// The END reason for a destination socket's error, as C-tor's exit gives
/// it (`errno_to_stream_end_reason`): refused, reset and timed out as such,
/// unreachable or not permitted as NOROUTE, out of descriptors, memory or
/// local addresses as RESOURCELIMIT, a broken pipe as DONE, our own misuse
/// of the socket as INTERNAL, anything else MISC.
pub fn end_reason_for_io(kind: std::io::ErrorKind) -> EndReason {
    use std::io::ErrorKind as K;
    match kind {
        K::BrokenPipe => EndReason::DONE,
        K::InvalidInput | K::NotConnected | K::Unsupported => EndReason::INTERNAL,
        K::NetworkUnreachable | K::HostUnreachable | K::PermissionDenied => EndReason::NOROUTE,
        K::ConnectionRefused => EndReason::CONNECTREFUSED,
        K::ConnectionReset => EndReason::CONNRESET,
        K::TimedOut => EndReason::TIMEOUT,
        K::OutOfMemory | K::AddrInUse | K::AddrNotAvailable => EndReason::RESOURCELIMIT,
        _ => EndReason::MISC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;
    use tor_bytes::Reader;
    use tor_cell::relaycell::msg::Body as _;

    /// A BEGIN as it comes off the wire (tor-spec §6.2).
    fn wire(body: &[u8]) -> Begin {
        Begin::decode_from_reader(&mut Reader::from_slice(body)).unwrap()
    }

    fn ok(body: &[u8], v6: bool) -> (Target, BeginFlags) {
        parse_begin(&wire(body), v6).unwrap()
    }

    #[test]
    fn begin_targets() {
        let (t, f) = ok(b"Example.COM:443\0", false);
        assert_eq!(t, Target::hostname("example.com", 443));
        assert!(f.is_empty());
        let (t, _) = ok(b"192.0.2.7:80\0", false);
        assert_eq!(t, Target::ip("192.0.2.7".parse().unwrap(), 80));
        let (t, f) = ok(b"[2001:DB8::1]:8080\0\0\0\0\x05", true);
        assert_eq!(t, Target::ip("2001:db8::1".parse().unwrap(), 8080));
        assert_eq!(f, BeginFlags::IPV6_OKAY | BeginFlags::IPV6_PREFERRED);
        let (t, _) = ok(b"under_score-ok.example:1\0", false);
        assert_eq!(t.port, 1);
    }

    #[test]
    fn begin_flags_without_ipv6_exit() {
        // IPv6 wishes are dropped; IPv4-not-ok cannot be served.
        let (_, f) = ok(b"example.com:80\0\0\0\0\x05", false);
        assert!(f.is_empty());
        let e = parse_begin(&wire(b"example.com:80\0\0\0\0\x02"), false).unwrap_err();
        assert_eq!(e, EndReason::EXITPOLICY);
        let (_, f) = ok(b"example.com:80\0\0\0\0\x03", true);
        assert_eq!(f, BeginFlags::IPV6_OKAY | BeginFlags::IPV4_NOT_OKAY);
        let e = parse_begin(&wire(b"[::1]:80\0"), false).unwrap_err();
        assert_eq!(e, EndReason::EXITPOLICY);
    }

    #[test]
    fn bad_begins_refused_as_c_tor_does() {
        for (body, want) in [
            (&b"example.com:0\0"[..], EndReason::TORPROTOCOL),
            (b":80\0", EndReason::RESOLVEFAILED),
            (b"a b.example:80\0", EndReason::RESOLVEFAILED),
            (b"a%b:80\0", EndReason::RESOLVEFAILED),
            (b"[1::2::3]:80\0", EndReason::RESOLVEFAILED),
            (b"4.3.2.1.in-addr.arpa:80\0", EndReason::RESOLVEFAILED),
            (b"x.in-addr.arpa:80\0", EndReason::RESOLVEFAILED),
            (
                b"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion:80\0",
                EndReason::RESOLVEFAILED,
            ),
        ] {
            assert_eq!(
                parse_begin(&wire(body), true).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!("{}:80\0", "a".repeat(256));
        assert_eq!(
            parse_begin(&wire(long.as_bytes()), true).unwrap_err(),
            EndReason::RESOLVEFAILED
        );
    }

    #[test]
    fn resolve_queries() {
        assert_eq!(
            parse_resolve(b"WWW.Example.com"),
            ResolveParse::Lookup(ResolveQuery::Name("www.example.com".into()))
        );
        assert_eq!(
            parse_resolve(b"7.2.0.192.in-addr.arpa"),
            ResolveParse::Lookup(ResolveQuery::Reverse("192.0.2.7".parse().unwrap()))
        );
        let v6: IpAddr = "2001:db8::567:89ab".parse().unwrap();
        let q = tor_cell::relaycell::msg::Resolve::new_reverse(&v6);
        assert_eq!(
            parse_resolve(q.query()),
            ResolveParse::Lookup(ResolveQuery::Reverse(v6))
        );
        assert_eq!(
            parse_resolve(b"192.0.2.9"),
            ResolveParse::Literal("192.0.2.9".parse().unwrap())
        );
        for bad in [
            &b""[..],
            b"1.0.0.127.in-addr.arpa",
            b"1.0.168.192.in-addr.arpa",
            b"300.1.1.1.in-addr.arpa",
            b"1.2.ip6.arpa",
            b"bad name",
            b"\xff\xfe",
            b"x.onion",
        ] {
            assert_eq!(
                parse_resolve(bad),
                ResolveParse::Invalid,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A name that merely ends in "ip6.arpa" without the dot is a name.
        assert_eq!(
            parse_resolve(b"myip6.arpa"),
            ResolveParse::Lookup(ResolveQuery::Name("myip6.arpa".into()))
        );
    }

    #[test]
    fn internal_addresses_like_c_tor() {
        for a in [
            "10.1.2.3",
            "0.1.2.3",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "172.31.255.255",
            "192.168.0.1",
            "::ffff:10.0.0.1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "::1",
            "::",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in [
            "192.0.2.1",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::2",
        ] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn address_choice_like_c_tor() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let both = [v6, v4];
        let all = |_| true;
        assert_eq!(choose_address(BeginFlags::empty(), &both, all), Some(v4));
        let ok6 = BeginFlags::IPV6_OKAY;
        assert_eq!(choose_address(ok6, &both, all), Some(v4));
        let pref6 = BeginFlags::IPV6_OKAY | BeginFlags::IPV6_PREFERRED;
        assert_eq!(choose_address(pref6, &both, all), Some(v6));
        // The policy decides when it allows only one.
        assert_eq!(choose_address(pref6, &both, |a| a.is_ipv4()), Some(v4));
        assert_eq!(choose_address(ok6, &both, |a| a.is_ipv6()), Some(v6));
        // Not IPv4: only IPv6 will do.
        let no4 = BeginFlags::IPV6_OKAY | BeginFlags::IPV4_NOT_OKAY;
        assert_eq!(choose_address(no4, &both, all), Some(v6));
        assert_eq!(choose_address(no4, &[v4], all), None);
        assert_eq!(choose_address(BeginFlags::empty(), &[v6], all), None);
        assert_eq!(choose_address(BeginFlags::empty(), &[], all), None);
    }

    #[test]
    fn ttls_clipped_and_fuzzed() {
        assert_eq!(clip_dns_ttl(0), MIN_DNS_TTL);
        assert_eq!(clip_dns_ttl(299), 300);
        assert_eq!(clip_dns_ttl(300), 3600);
        assert_eq!(clip_dns_ttl(u32::MAX), 3600);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let t = clip_dns_fuzzy_ttl(10, &mut rng);
            assert!((60..=540).contains(&t), "{t}");
            seen.insert(t);
            let t = clip_dns_fuzzy_ttl(86_400, &mut rng);
            assert!((3360..=3840).contains(&t), "{t}");
        }
        assert!(seen.len() > 100, "fuzzed: {} values", seen.len());
    }

    #[test]
    fn io_errors_map_like_c_tor() {
        use std::io::ErrorKind as K;
        assert_eq!(
            end_reason_for_io(K::ConnectionRefused),
            EndReason::CONNECTREFUSED
        );
        assert_eq!(end_reason_for_io(K::ConnectionReset), EndReason::CONNRESET);
        assert_eq!(end_reason_for_io(K::TimedOut), EndReason::TIMEOUT);
        assert_eq!(end_reason_for_io(K::HostUnreachable), EndReason::NOROUTE);
        assert_eq!(
            end_reason_for_io(K::AddrNotAvailable),
            EndReason::RESOURCELIMIT
        );
        assert_eq!(end_reason_for_io(K::BrokenPipe), EndReason::DONE);
        assert_eq!(end_reason_for_io(K::Other), EndReason::MISC);
    }
}
