//! Tests of the client side of the link handshake (tor-spec §4) against a
//! mock relay's cells.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use super::certs::ExpectedIdentity;
use super::codec::CellCodec;
use super::codec::{FIXED_CELL_LEN, encode_versions};
use super::error::ChannelError;
use super::error::ErrorKind;
use super::handshake::*;
use super::test_relay::{CertSet, MockRelay};
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};
use tor_cell::chancell::msg::{AnyChanMsg, Netinfo, Versions};
use tor_cell::chancell::msg::{AuthChallenge, Padding, Vpadding};
use tor_cell::chancell::{ChanCell, ChanCmd, ChanMsg as _};
use tor_cert::CertType;

const OUR_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const RELAY_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

fn params(r: &MockRelay) -> HandshakeParams {
    HandshakeParams::new(
        ExpectedIdentity {
            rsa: r.rsa_id(),
            ed25519: Some(r.ed_id()),
        },
        r.tls_cert().to_vec(),
    )
    .with_peer_addr(RELAY_ADDR.into())
}

/// What a mock responder sends, built cell by cell.
struct Responder {
    versions: Vec<u16>,
    link: u16,
    certs: CertSet,
    netinfo_time: u32,
}

impl Responder {
    fn new(r: &MockRelay) -> Self {
        Responder {
            versions: vec![3, 4, 5],
            link: 5,
            certs: r.certs(now()),
            netinfo_time: 1_790_000_005,
        }
    }

    fn cell(&self, msg: AnyChanMsg) -> Vec<u8> {
        let mut codec = CellCodec::new();
        codec.set_link_version(self.link).unwrap();
        let mut out = Vec::new();
        codec
            .encode_cell(ChanCell::new(None, msg), &mut out)
            .unwrap();
        out
    }

    fn versions(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_versions(&self.versions, &mut out).unwrap();
        out
    }

    fn certs(&self) -> Vec<u8> {
        let body = self.certs.body();
        let mut out = vec![0, 0, 0, 0, 129];
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn auth_challenge(&self) -> Vec<u8> {
        self.cell(AuthChallenge::new([7; 32], vec![1, 3]).into())
    }

    fn netinfo(&self) -> Vec<u8> {
        self.cell(
            Netinfo::from_relay(
                self.netinfo_time,
                Some(OUR_ADDR.into()),
                vec![RELAY_ADDR.into()],
            )
            .into(),
        )
    }

    /// The whole flight: VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO.
    fn all(&self) -> Vec<u8> {
        [
            self.versions(),
            self.certs(),
            self.auth_challenge(),
            self.netinfo(),
        ]
        .concat()
    }
}

fn run(p: HandshakeParams, input: &[u8]) -> Result<OpenedChannel, ChannelError> {
    let mut h = ClientHandshake::new(p, Instant::now());
    assert_eq!(
        hex::encode(h.poll_transmit().unwrap()),
        "000007000400040005"
    );
    h.handle_bytes(now(), input)?;
    assert!(h.is_open(), "not open after the whole flight");
    h.finish()
}

#[test]
fn good_handshake() {
    let r = MockRelay::shared();
    let resp = Responder::new(r);
    let start = Instant::now();
    let mut h = ClientHandshake::new(params(r).with_timeout(Duration::from_secs(10)), start);
    assert_eq!(h.deadline(), start + Duration::from_secs(10));
    assert_eq!(
        hex::encode(h.poll_transmit().unwrap()),
        "000007000400040005"
    );
    assert!(h.poll_transmit().is_none());
    h.handle_bytes(now(), &resp.all()).unwrap();
    assert!(h.is_open());
    let netinfo = h.poll_transmit().unwrap();
    let opened = h.finish().unwrap();
    let o = &opened.outcome;
    assert_eq!(o.link_version, 5);
    assert_eq!(o.peer.rsa, r.rsa_id());
    assert_eq!(o.peer.ed25519, r.ed_id());
    assert_eq!(o.peer_addrs, vec![IpAddr::from(RELAY_ADDR)]);
    assert_eq!(o.our_addr_seen_by_peer, Some(OUR_ADDR.into()));
    assert_eq!(o.peer_time, Some(now() + Duration::from_secs(5)));
    assert_eq!(
        o.clock_skew,
        Some(ClockSkew::PeerAhead(Duration::from_secs(5)))
    );
    assert!(opened.unsent.is_empty());

    // Our NETINFO: fixed cell, circuit 0, timestamp 0, the relay's
    // address, none of ours.
    assert_eq!(netinfo.len(), FIXED_CELL_LEN);
    assert_eq!(
        hex::encode(&netinfo[..16]),
        "0000000008000000000404c633640100"
    );
    assert!(netinfo[16..].iter().all(|&b| b == 0));
}

#[test]
fn good_handshake_byte_by_byte_with_padding() {
    let r = MockRelay::shared();
    let resp = Responder::new(r);
    // VPADDING and AUTHORIZE before VERSIONS (2-byte circuit ids), then
    // VPADDING and an unknown variable-length cell between the others.
    let mut input = hex::decode("0000800003000000").unwrap();
    input.extend(hex::decode("0000840000").unwrap());
    input.extend(resp.versions());
    input.extend(resp.cell(Vpadding::new(20).into()));
    input.extend(resp.certs());
    input.extend(hex::decode("00000000c8000101").unwrap());
    input.extend(resp.auth_challenge());
    input.extend(resp.cell(Vpadding::new(0).into()));
    input.extend(resp.netinfo());
    // And a cell for the open channel.
    let after = resp.cell(Padding::new().into());
    input.extend(&after);

    let mut h = ClientHandshake::new(params(r), Instant::now());
    let _ = h.poll_transmit();
    for b in &input {
        h.handle_bytes(now(), std::slice::from_ref(b)).unwrap();
    }
    assert!(h.is_open());
    let mut opened = h.finish().unwrap();
    assert_eq!(opened.unsent.len(), FIXED_CELL_LEN);
    assert_eq!(opened.codec.buffered_len(), after.len());
    let next = opened.codec.poll_cell().unwrap().unwrap();
    assert_eq!(next.msg().cmd(), ChanCmd::PADDING);
}

#[test]
fn link_version_4_and_no_auth_challenge() {
    let r = MockRelay::shared();
    let mut resp = Responder::new(r);
    resp.versions = vec![3, 4];
    resp.link = 4;
    resp.netinfo_time = 0;
    let input = [resp.versions(), resp.certs(), resp.netinfo()].concat();
    let opened = run(params(r), &input).unwrap();
    assert_eq!(opened.outcome.link_version, 4);
    assert_eq!(opened.outcome.peer_time, None);
    assert_eq!(opened.outcome.clock_skew, None);
}

#[test]
fn no_common_version_refused() {
    let r = MockRelay::shared();
    let mut resp = Responder::new(r);
    resp.versions = vec![1, 2, 3, 6];
    let mut h = ClientHandshake::new(params(r), Instant::now());
    let e = h.handle_bytes(now(), &resp.versions()).unwrap_err();
    assert_eq!(
        e,
        ChannelError::NoCommonVersion {
            ours: vec![4, 5],
            theirs: vec![1, 2, 3, 6]
        }
    );
    assert!(e.is_peer_fault());
    assert!(h.is_failed());
    // A failed handshake takes no more input.
    assert_eq!(
        h.handle_bytes(now(), &resp.certs()).unwrap_err().kind(),
        ErrorKind::Internal
    );
    assert!(h.finish().is_err());
}

#[test]
fn cert_failures_end_the_handshake() {
    let r = MockRelay::shared();
    type Mutate = Box<dyn Fn(&mut CertSet)>;
    let cases: Vec<(HandshakeParams, Mutate, ChannelError)> = vec![
        (
            {
                let mut p = params(r);
                p.expected.rsa = [1; 20].into();
                p
            },
            Box::new(|_| {}),
            ChannelError::WrongRsaIdentity {
                expected: [1; 20].into(),
                found: r.rsa_id(),
            },
        ),
        (
            {
                let mut p = params(r);
                p.expected.ed25519 = Some([1; 32].into());
                p
            },
            Box::new(|_| {}),
            ChannelError::WrongEd25519Identity {
                expected: [1; 32].into(),
                found: r.ed_id(),
            },
        ),
        (
            HandshakeParams::new(params(r).expected, b"another TLS cert".to_vec()),
            Box::new(|_| {}),
            ChannelError::TlsCertMismatch,
        ),
        (
            params(r),
            Box::new(|s| s.remove(CertType::RSA_ID_V_IDENTITY)),
            ChannelError::MissingCert {
                cert_type: CertType::RSA_ID_V_IDENTITY,
            },
        ),
        (
            params(r),
            Box::new(|s| s.push(CertType::SIGNING_V_TLS_CERT, vec![0])),
            ChannelError::DuplicateCert {
                cert_type: CertType::SIGNING_V_TLS_CERT,
            },
        ),
        (
            params(r),
            Box::new(|s| {
                let past = now() - Duration::from_secs(7200);
                s.replace(
                    CertType::SIGNING_V_TLS_CERT,
                    MockRelay::shared().cert_expiring(CertType::SIGNING_V_TLS_CERT, past),
                )
            }),
            ChannelError::CertExpired {
                cert_type: CertType::SIGNING_V_TLS_CERT,
                // Expiry is rounded up to the hour.
                expired_at: SystemTime::UNIX_EPOCH
                    + Duration::from_secs((1_790_000_000 - 7200) / 3600 * 3600 + 3600),
            },
        ),
        (
            params(r),
            Box::new(|s| {
                let mut c = s.get(CertType::RSA_ID_V_IDENTITY).to_vec();
                let n = c.len();
                c[n - 1] ^= 0x80;
                s.replace(CertType::RSA_ID_V_IDENTITY, c)
            }),
            ChannelError::BadSignature {
                cert_type: CertType::RSA_ID_V_IDENTITY,
            },
        ),
    ];
    for (p, mutate, want) in cases {
        let mut resp = Responder::new(r);
        mutate(&mut resp.certs);
        let mut h = ClientHandshake::new(p, Instant::now());
        let e = h.handle_bytes(now(), &resp.all()).unwrap_err();
        assert_eq!(e, want);
        assert!(h.is_failed());
        // Nothing but our VERSIONS was ever sent: no NETINFO.
        assert_eq!(h.poll_transmit().unwrap().len(), 9);
    }
}

#[test]
fn out_of_order_cells_refused() {
    let r = MockRelay::shared();
    let resp = Responder::new(r);
    let padding = resp.cell(Padding::new().into());
    let cases: Vec<(Vec<u8>, ChanCmd, &str)> = vec![
        // NETINFO before CERTS.
        (
            [resp.versions(), resp.netinfo()].concat(),
            ChanCmd::NETINFO,
            "CERTS",
        ),
        // AUTH_CHALLENGE before CERTS.
        (
            [resp.versions(), resp.auth_challenge()].concat(),
            ChanCmd::AUTH_CHALLENGE,
            "CERTS",
        ),
        // Two CERTS.
        (
            [resp.versions(), resp.certs(), resp.certs()].concat(),
            ChanCmd::CERTS,
            "AUTH_CHALLENGE or NETINFO",
        ),
        // Two AUTH_CHALLENGEs.
        (
            [
                resp.versions(),
                resp.certs(),
                resp.auth_challenge(),
                resp.auth_challenge(),
            ]
            .concat(),
            ChanCmd::AUTH_CHALLENGE,
            "NETINFO",
        ),
        // A fixed-length PADDING during the handshake.
        (
            [resp.versions(), resp.certs(), padding].concat(),
            ChanCmd::PADDING,
            "AUTH_CHALLENGE or NETINFO",
        ),
        // An unknown variable-length cell before VERSIONS.
        (
            hex::decode("0000c80000").unwrap(),
            ChanCmd::from(200),
            "VERSIONS",
        ),
    ];
    for (input, cmd, expecting) in cases {
        let mut h = ClientHandshake::new(params(r), Instant::now());
        assert_eq!(
            h.handle_bytes(now(), &input).unwrap_err(),
            ChannelError::UnexpectedCell { cmd, expecting }
        );
    }
    // A fixed-length cell before VERSIONS cannot even be framed.
    let mut h = ClientHandshake::new(params(r), Instant::now());
    assert_eq!(
        h.handle_bytes(now(), &[0, 0, 8, 0, 0]).unwrap_err(),
        ChannelError::FixedCellBeforeVersions {
            cmd: ChanCmd::NETINFO
        }
    );
}

#[test]
fn later_versions_cells_ignored() {
    let r = MockRelay::shared();
    let resp = Responder::new(r);
    // A second VERSIONS, framed with 4-byte circuit ids as the spec
    // requires, after CERTS.
    let again = resp.cell(Versions::new(vec![4]).unwrap().into());
    let input = [
        resp.versions(),
        resp.certs(),
        again,
        resp.auth_challenge(),
        resp.netinfo(),
    ]
    .concat();
    assert_eq!(run(params(r), &input).unwrap().outcome.link_version, 5);
}

#[test]
fn handle_cell_path() {
    let r = MockRelay::shared();
    let resp = Responder::new(r);
    // Frame the cells ourselves and hand them over one by one.
    let mut framer = CellCodec::new();
    let mut h = ClientHandshake::new(params(r), Instant::now());
    framer.handle_bytes(&resp.all()).unwrap();
    while let Some(cell) = framer.poll_cell().unwrap() {
        h.handle_cell(now(), cell).unwrap();
        if let Some(v) = h.link_version() {
            framer.set_link_version(v).unwrap();
        }
    }
    assert!(h.is_open());
    // Cells after opening belong to the channel, not the handshake.
    let e = h
        .handle_cell(now(), ChanCell::new(None, Padding::new().into()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    // A channel cell on a circuit id is refused.
    let mut h = ClientHandshake::new(params(r), Instant::now());
    let e = h
        .handle_cell(
            now(),
            ChanCell::new(tor_cell::chancell::CircId::new(3), Vpadding::new(1).into()),
        )
        .unwrap_err();
    assert!(matches!(e, ChannelError::BadCircId { circ_id: 3, .. }));
}

#[test]
fn skew() {
    let t = now();
    assert_eq!(
        ClockSkew::between(t - Duration::from_secs(90), t),
        ClockSkew::PeerBehind(Duration::from_secs(90))
    );
    assert_eq!(
        ClockSkew::between(t, t),
        ClockSkew::PeerAhead(Duration::ZERO)
    );
}

proptest::proptest! {
    /// Arbitrary bytes, alone or after a good VERSIONS and CERTS, never
    /// make the handshake panic.
    #[test]
    fn handshake_never_panics(
        data in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
        prefix in 0_usize..3,
        chunk in 1_usize..600,
    ) {
        let r = MockRelay::shared();
        let resp = Responder::new(r);
        let mut input = match prefix {
            0 => Vec::new(),
            1 => resp.versions(),
            _ => [resp.versions(), resp.certs()].concat(),
        };
        input.extend(data);
        let mut h = ClientHandshake::new(params(r), Instant::now());
        for part in input.chunks(chunk) {
            if h.handle_bytes(now(), part).is_err() {
                break;
            }
        }
    }
}
