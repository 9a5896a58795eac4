//! The name rules: onion addresses, `.exit`, hostnames, reverse-lookup
//! names, and what each request becomes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use proptest::prelude::*;

use super::*;

/// The Tor Project's onion address (torproject.org's Onion-Location).
const TORPROJECT: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut acc, mut bits, mut out) = (0u32, 0u32, String::new());
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The onion address of `key` with `version`, checksum computed.
fn onion(key: [u8; 32], version: u8) -> String {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&onion_checksum(&key, version)[..2]);
    bytes.push(version);
    base32_encode(&bytes)
}

/// The ed25519 base point: a valid public key.
fn base_point() -> [u8; 32] {
    let mut k = [0x66u8; 32];
    k[0] = 0x58;
    k
}

#[test]
fn v3_onion_addresses_are_checked() {
    assert!(onion_v3_is_valid(TORPROJECT));
    assert!(onion_v3_is_valid(&TORPROJECT.to_ascii_uppercase()));
    let made = onion(base_point(), 3);
    assert_eq!(made.len(), ONION_V3_LEN);
    assert!(onion_v3_is_valid(&made));
    // A wrong checksum, version, length or alphabet.
    let mut bad = TORPROJECT.as_bytes().to_vec();
    bad[50] = if bad[50] == b'a' { b'b' } else { b'a' };
    assert!(!onion_v3_is_valid(std::str::from_utf8(&bad).unwrap()));
    assert!(!onion_v3_is_valid(&onion(base_point(), 2)));
    assert!(!onion_v3_is_valid(&TORPROJECT[1..]));
    assert!(!onion_v3_is_valid(&format!("{}1", &TORPROJECT[1..])));
    // A right checksum over bytes that are no curve point: y = 2 has no x
    // on edwards25519.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(PublicKey::from_bytes(&not_a_point).is_err());
    assert!(!onion_v3_is_valid(&onion(not_a_point, 3)));
}

#[test]
fn onion_names_are_refused_whatever_their_form() {
    for host in [
        format!("{TORPROJECT}.onion"),
        format!("www.{TORPROJECT}.onion"),
        format!("{}.ONION", TORPROJECT.to_ascii_uppercase()),
        format!("{TORPROJECT}.onion."),
    ] {
        assert_eq!(check_hostname(&host), Err(Refusal::Onion), "{host}");
    }
    for host in [
        "x.onion",
        ".onion",
        "expyuzz4wqqyqhjn.onion", // a v2 address: gone since 0.4.6
        "a.b.onion.",
    ] {
        assert_eq!(check_hostname(host), Err(Refusal::BadOnion), "{host}");
    }
    let bad = format!("{}a.onion", &TORPROJECT[1..]);
    assert_eq!(check_hostname(&bad), Err(Refusal::BadOnion));
    // Not onion names.
    assert_eq!(check_hostname("onion"), Ok(()));
    assert_eq!(check_hostname("onion.example"), Ok(()));
    assert_eq!(check_hostname("myonion"), Ok(()));
}

#[test]
fn exit_names_and_bad_hostnames_are_refused() {
    for host in ["www.example.com.relay.exit", "relay.EXIT", "x.exit."] {
        assert_eq!(check_hostname(host), Err(Refusal::DotExit), "{host}");
    }
    for host in [
        "a b",
        "a/b",
        "caf\u{e9}.example",
        "x:y",
        "",
        "a\u{0}b",
        "%41",
    ] {
        assert_eq!(check_hostname(host), Err(Refusal::BadHostname), "{host:?}");
    }
    for host in [
        "example.com",
        "example.com.",
        "my_host.example",
        "xn--caf-dma.example",
        "10.0.0.1",
        "::1",
        "[2001:db8::1]",
        "exit",
        "exit.example",
    ] {
        assert_eq!(check_hostname(host), Ok(()), "{host}");
    }
}

#[test]
fn replies_follow_c_tor() {
    assert_eq!(Refusal::Onion.socks5_reply(), SocksReply::HostUnreachable);
    assert_eq!(Refusal::Onion.extended_error(), None);
    assert_eq!(Refusal::BadOnion.socks5_reply(), SocksReply::GeneralFailure);
    assert_eq!(
        Refusal::BadOnion.extended_error(),
        Some(ExtendedError::HsBadAddress)
    );
    assert_eq!(Refusal::DotExit.socks5_reply(), SocksReply::GeneralFailure);
    assert_eq!(Refusal::DotExit.extended_error(), None);
    assert_eq!(
        Refusal::PtrNotAddress.socks5_reply(),
        SocksReply::HostUnreachable
    );
}

fn host(h: &str, port: u16) -> SocksTarget {
    SocksTarget::Hostname(h.into(), port)
}

fn ip(a: &str) -> IpAddr {
    a.parse().unwrap()
}

#[test]
fn requests_are_routed() {
    use SocksCommand::{Connect, Resolve, ResolvePtr};
    assert_eq!(
        route(Connect, &host("WWW.Example.com", 443)),
        Route::Exit(host("www.example.com", 443))
    );
    let addr = SocksTarget::Ip(ip("192.0.2.1"), 80);
    assert_eq!(route(Connect, &addr), Route::Exit(addr.clone()));
    assert_eq!(
        route(Connect, &host(&format!("{TORPROJECT}.onion"), 80)),
        Route::Refuse(Refusal::Onion)
    );
    assert_eq!(
        route(Resolve, &host("x.exit", 0)),
        Route::Refuse(Refusal::DotExit)
    );
    // A RESOLVE of an address is that address.
    assert_eq!(
        route(Resolve, &addr),
        Route::Answer(SocksTarget::Ip(ip("192.0.2.1"), 0))
    );
    assert_eq!(
        route(Resolve, &host("2001:db8::2", 0)),
        Route::Answer(SocksTarget::Ip(ip("2001:db8::2"), 0))
    );
    assert_eq!(
        route(Resolve, &host("Example.org", 0)),
        Route::Exit(host("example.org", 0))
    );
    // A reverse lookup needs an address.
    assert_eq!(
        route(ResolvePtr, &addr),
        Route::Exit(SocksTarget::Ip(ip("192.0.2.1"), 0))
    );
    assert_eq!(
        route(ResolvePtr, &host("1.2.0.192.in-addr.arpa", 0)),
        Route::Exit(SocksTarget::Ip(ip("192.0.2.1"), 0))
    );
    assert_eq!(
        route(ResolvePtr, &host("example.org", 0)),
        Route::Refuse(Refusal::PtrNotAddress)
    );
}

#[test]
fn reverse_lookup_names() {
    assert_eq!(parse_ptr_name("4.3.2.1.in-addr.arpa"), Some(ip("1.2.3.4")));
    assert_eq!(parse_ptr_name("4.3.2.1.IN-ADDR.ARPA."), Some(ip("1.2.3.4")));
    assert_eq!(parse_ptr_name("10.0.0.1"), Some(ip("10.0.0.1")));
    assert_eq!(parse_ptr_name("[::1]"), Some(ip("::1")));
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
    assert_eq!(parse_ptr_name(v6), Some(ip("2001:db8::1")));
    for bad in [
        "3.2.1.in-addr.arpa",
        "5.4.3.2.1.in-addr.arpa",
        "256.3.2.1.in-addr.arpa",
        "x.3.2.1.in-addr.arpa",
        "+4.3.2.1.in-addr.arpa",
        ".3.2.1.in-addr.arpa",
        "in-addr.arpa",
        "1.0.ip6.arpa",
        &format!("0.{v6}"),
        "10.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        "example.org",
    ] {
        assert_eq!(parse_ptr_name(bad), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let text = base32_encode(&bytes);
        // Whole bytes always decode back; padding bits are zero.
        prop_assert_eq!(base32_decode(&text), Some(bytes));
    }

    #[test]
    fn never_panics(h in "\\PC{0,80}", port in any::<u16>()) {
        let _ = check_hostname(&h);
        let _ = parse_ptr_name(&h);
        for cmd in [SocksCommand::Connect, SocksCommand::Resolve, SocksCommand::ResolvePtr] {
            let _ = route(cmd, &SocksTarget::Hostname(h.clone(), port));
        }
    }

    #[test]
    fn what_goes_to_an_exit_is_never_onion_or_exit(h in "[a-zA-Z0-9._-]{0,70}(\\.onion|\\.exit)\\.?") {
        prop_assert!(!matches!(route(SocksCommand::Connect, &SocksTarget::Hostname(h, 80)), Route::Exit(_)));
    }
}
