//! Tests of [`super`]: relay ids, flags, port policies, families and protocols.

use super::*;
use std::net::Ipv4Addr;

fn rid(n: u8) -> RelayId {
    RelayId::new([n; 20])
}

#[test]
fn relay_id_hex_round_trip() {
    let id = RelayId::new([
        0x00, 0x01, 0xab, 0xcd, 0xef, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0,
        0xb0, 0xc0, 0xd0, 0xe0, 0xff,
    ]);
    let s = id.to_string();
    assert_eq!(s, "0001ABCDEF102030405060708090A0B0C0D0E0FF");
    assert_eq!(s.parse::<RelayId>().unwrap(), id);
    assert_eq!(s.to_lowercase().parse::<RelayId>().unwrap(), id);
    assert_eq!(format!("${s}").parse::<RelayId>().unwrap(), id);
    assert_eq!(format!("{id:?}"), format!("RelayId({s})"));
}

#[test]
fn relay_id_parse_errors() {
    assert!("".parse::<RelayId>().is_err());
    assert!("00".parse::<RelayId>().is_err());
    let long = "0".repeat(42);
    assert!(long.parse::<RelayId>().is_err());
    let bad = format!("{}G", "0".repeat(39));
    let e = bad.parse::<RelayId>().unwrap_err();
    assert_eq!(e.expected, 40);
    assert!(e.to_string().contains("40 hex digits"));
    // Non-ASCII must not panic on a char boundary.
    let uni = format!("{}é", "0".repeat(38));
    assert!(uni.parse::<RelayId>().is_err());
}

#[test]
fn ed_id_round_trip() {
    let id = Ed25519Id::new([0x5a; 32]);
    assert_eq!(id.to_string().parse::<Ed25519Id>().unwrap(), id);
    assert!("5A".parse::<Ed25519Id>().is_err());
}

#[test]
fn flags_parse_and_display() {
    let f = RelayFlags::from_names("Exit Fast Guard Running Stable Valid Unknown".split(' '));
    assert!(f.contains(RelayFlags::EXIT | RelayFlags::GUARD));
    assert!(!f.contains(RelayFlags::BAD_EXIT));
    assert!(f.intersects(RelayFlags::BAD_EXIT | RelayFlags::FAST));
    assert_eq!(f.to_string(), "Exit Fast Guard Running Stable Valid");
    let mut g = f;
    g.remove(RelayFlags::EXIT);
    g.insert(RelayFlags::MIDDLE_ONLY);
    assert_eq!(g.to_string(), "Fast Guard MiddleOnly Running Stable Valid");
    assert!(RelayFlags::empty().is_empty());
    assert_eq!(RelayFlags::from_bits_truncate(0xffff), RelayFlags::ALL);
    assert_eq!(RelayFlags::ALL.to_string().split(' ').count(), 12);
    assert_eq!(RelayFlags::from_bits_truncate(f.bits()), f);
    for (flag, name) in RelayFlags::NAMES {
        assert_eq!(RelayFlags::from_name(name), Some(flag));
    }
    assert_eq!(RelayFlags::from_name("exit"), None);
}

#[test]
fn port_range_parse() {
    assert_eq!(
        "80".parse::<PortRange>().unwrap(),
        PortRange::new(80, 80).unwrap()
    );
    assert_eq!(
        "1-65535".parse::<PortRange>().unwrap(),
        PortRange::new(1, 65535).unwrap()
    );
    for bad in [
        "0", "0-5", "5-4", "65536", "", "-", "1-", "+5", "a", "1-2-3", " 1",
    ] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn policy_parse_and_allows() {
    let p: PortPolicy = "accept 80,443,1000-2000".parse().unwrap();
    assert!(p.is_accept());
    for (port, ok) in [
        (80, true),
        (443, true),
        (1000, true),
        (1500, true),
        (2000, true),
        (2001, false),
        (81, false),
        (22, false),
        (0, false),
    ] {
        assert_eq!(p.allows_port(port), ok, "port {port}");
    }
    assert!(p.allows_some_port());
    assert_eq!(p.to_string(), "accept 80,443,1000-2000");

    let r: PortPolicy = "reject 25,119,135-139,445".parse().unwrap();
    assert!(!r.allows_port(25));
    assert!(!r.allows_port(137));
    assert!(r.allows_port(80));
    assert!(r.allows_port(65535));
    assert!(!r.allows_port(0));
    assert!(r.allows_some_port());

    let all: PortPolicy = "reject 1-65535".parse().unwrap();
    assert!(!all.allows_some_port());
    assert!(!all.allows_port(80));
    assert_eq!(all, PortPolicy::reject_all());
    let all2: PortPolicy = "reject 1-100,101-65535".parse().unwrap();
    assert_eq!(all2, PortPolicy::reject_all());
    let any: PortPolicy = "accept 1-65535".parse().unwrap();
    assert_eq!(any, PortPolicy::accept_all());
    assert!(!PortPolicy::reject_all().allows_some_port());
    assert!(!PortPolicy::default().allows_port(443));
    assert!(PortPolicy::accept_all().allows_port(443));
    assert!(PortPolicy::accept_all().allows_some_port());
    assert_eq!(PortPolicy::reject_all().to_string(), "reject 1-65535");
    assert_eq!(PortPolicy::accept_all().to_string(), "accept 1-65535");

    let p2: PortPolicy = "p accept 443,80,81-90,85".parse().unwrap();
    assert_eq!(p2.to_string(), "accept 80-90,443");
    assert_eq!(p2.ranges().len(), 2);
}

#[test]
fn policy_parse_errors() {
    assert!(matches!(
        "allow 80".parse::<PortPolicy>(),
        Err(PolicyParseError::BadKeyword(_))
    ));
    assert!(matches!(
        "".parse::<PortPolicy>(),
        Err(PolicyParseError::BadKeyword(_))
    ));
    assert!(matches!(
        "accept".parse::<PortPolicy>(),
        Err(PolicyParseError::BadShape)
    ));
    assert!(matches!(
        "accept 80 443".parse::<PortPolicy>(),
        Err(PolicyParseError::BadShape)
    ));
    for bad in [
        "accept 80,",
        "accept ,80",
        "reject 0",
        "accept 10-5",
        "accept 70000",
    ] {
        assert!(
            matches!(
                bad.parse::<PortPolicy>(),
                Err(PolicyParseError::BadRange(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_shared_family_id_makes_one_family() {
    let addr = |a| SocketAddrV4::new(Ipv4Addr::new(a, 1, 1, 1), 9001);
    let mut a = Relay::new(rid(1), "a", addr(10));
    let mut b = Relay::new(rid(2), "b", addr(11));
    a.family_ids = vec!["ed25519:AAAA".into(), "ed25519:BBBB".into()];
    b.family_ids = vec!["ed25519:CCCC".into()];
    assert!(!a.same_family(&b));
    b.family_ids.push("ed25519:BBBB".into());
    assert!(a.same_family(&b) && b.same_family(&a));
    // No RSA declaration is needed once an id is shared.
    assert!(a.family.is_empty() && b.family.is_empty());
}

#[test]
fn relay_relations() {
    let addr = |a, b| SocketAddrV4::new(Ipv4Addr::new(a, b, 1, 1), 9001);
    let mut a = Relay::new(rid(1), "a", addr(10, 1));
    let mut b = Relay::new(rid(2), "b", addr(10, 1));
    let c = Relay::new(rid(3), "c", addr(10, 2));
    assert!(a.same_subnet16(&b));
    assert!(!a.same_subnet16(&c));
    assert_eq!(c.subnet16(), [10, 2]);

    // One-sided declaration is not a family.
    a.family.push(rid(2));
    assert!(!a.same_family(&b));
    b.family.push(rid(1));
    assert!(a.same_family(&b) && b.same_family(&a));
    assert!(!a.same_family(&c));

    // Same RSA id counts as the same relay and family.
    let a2 = Relay::new(rid(1), "other", addr(11, 1));
    assert!(a.same_relay(&a2) && a.same_family(&a2));

    // Same Ed25519 id too.
    let mut d = Relay::new(rid(4), "d", addr(12, 1));
    let mut e = Relay::new(rid(5), "e", addr(13, 1));
    assert!(!d.same_relay(&e));
    d.ed_id = Some(Ed25519Id::new([9; 32]));
    e.ed_id = Some(Ed25519Id::new([9; 32]));
    assert!(d.same_relay(&e));
    assert_eq!(d.to_string(), format!("d~{}", rid(4)));
}

#[test]
fn relay_protocols() {
    let mut r = Relay::new(rid(1), "a", SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1));
    let need: Protocols = "Conflux=1 FlowCtrl=2".parse().unwrap();
    assert!(!r.supports_all(&need));
    r.protocols = "Conflux=1 FlowCtrl=1-2 Link=1-5".parse().unwrap();
    assert!(r.supports_all(&need));
    r.protocols = "FlowCtrl=1-2".parse().unwrap();
    assert!(!r.supports_all(&need));
    assert!(r.supports_all(&Protocols::new()));
}
