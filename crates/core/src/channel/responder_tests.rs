//! The link handshake's two sides against each other in memory: a client
//! and an authenticating relay against [`ResponderHandshake`], byte-exact
//! transcripts, identities, cells out of order, garbage and limits
//! (tor-spec §4).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use digest::Digest as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, Netinfo, Vpadding};
use tor_cell::chancell::{ChanCell, ChanCmd, ChanMsg as _};
use tor_cert::CertType;
use tor_llcrypto::d::Sha256;

use super::auth::AUTH0003_EXPORTER_LABEL;
use super::certs::{ExpectedIdentity, certs_msg_body, parse_certs_body, verify_responder_certs};
use super::codec::{CellCodec, encode_versions};
use super::error::ChannelError;
use super::handshake::{ClientHandshake, HandshakeParams};
use super::initiator_auth::InitiatorAuth;
use super::relay_keys::RelayLinkKeys;
use super::responder::{Initiator, ResponderHandshake, ResponderParams};
use super::test_relay::MockRelay;

pub(super) const RESP_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub(super) const INIT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

pub(super) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

/// The responder's link keys (relay A), built once.
pub(super) fn keys_a() -> Arc<RelayLinkKeys> {
    static K: OnceLock<Arc<RelayLinkKeys>> = OnceLock::new();
    K.get_or_init(|| Arc::new(MockRelay::shared().link_keys(now())))
        .clone()
}

/// An initiating relay's link keys (relay B), built once.
pub(super) fn keys_b() -> Arc<RelayLinkKeys> {
    static K: OnceLock<Arc<RelayLinkKeys>> = OnceLock::new();
    K.get_or_init(|| Arc::new(MockRelay::other().link_keys(now())))
        .clone()
}

/// The TLS exporter of our pretend TLS session: any function of the
/// context that both sides share will do.
pub(super) fn export(context: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"session secret");
    h.update(AUTH0003_EXPORTER_LABEL);
    h.update(context);
    h.finalize().into()
}

pub(super) fn responder() -> ResponderHandshake {
    responder_seeded(rand::random())
}

/// A responder whose challenge comes from a seeded RNG: two with the same
/// seed send the same bytes (the time is fixed too).
pub(super) fn responder_seeded(seed: u64) -> ResponderHandshake {
    let p = ResponderParams::new(keys_a())
        .with_peer_addr(INIT_ADDR.into())
        .with_my_addrs(vec![RESP_ADDR.into()]);
    ResponderHandshake::new(p, &mut StdRng::seed_from_u64(seed), Instant::now())
}

/// A client's parameters for reaching relay A.
pub(super) fn client_params() -> HandshakeParams {
    let a = keys_a();
    HandshakeParams::new(
        ExpectedIdentity {
            rsa: a.rsa_identity(),
            ed25519: Some(a.ed_identity()),
        },
        a.tls_cert_der().to_vec(),
    )
    .with_peer_addr(RESP_ADDR.into())
}

/// Relay B's parameters for reaching relay A, authenticating.
pub(super) fn relay_params() -> HandshakeParams {
    let b = keys_b();
    let exporter = export(&b.auth0003_exporter_context());
    client_params().with_relay_auth(InitiatorAuth::new(
        b,
        exporter,
        vec![INIT_ADDR.into()],
        &mut rand::rng(),
    ))
}

/// Which side failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failed {
    Initiator(ChannelError),
    Responder(ChannelError),
}

/// Move bytes both ways (and the exporter value) until neither side has
/// anything to say. `tamper` may change what the initiator sends.
pub(super) fn pump_with(
    init: &mut ClientHandshake,
    resp: &mut ResponderHandshake,
    tamper: &mut dyn FnMut(Vec<u8>) -> Vec<u8>,
) -> Result<(), Failed> {
    loop {
        let mut progressed = false;
        if let Some(b) = init.poll_transmit() {
            resp.handle_bytes(now(), &tamper(b))
                .map_err(Failed::Responder)?;
            progressed = true;
        }
        if let Some(req) = resp.tls_export_request() {
            assert_eq!(req.label, AUTH0003_EXPORTER_LABEL);
            assert_eq!(req.len, 32);
            resp.handle_tls_export(now(), export(&req.context))
                .map_err(Failed::Responder)?;
            progressed = true;
        }
        if let Some(b) = resp.poll_transmit() {
            init.handle_bytes(now(), &b).map_err(Failed::Initiator)?;
            progressed = true;
        }
        if !progressed {
            return Ok(());
        }
    }
}

pub(super) fn pump(
    init: &mut ClientHandshake,
    resp: &mut ResponderHandshake,
) -> Result<(), Failed> {
    pump_with(init, resp, &mut |b| b)
}

/// A cell framed for link protocol 5.
pub(super) fn cell(msg: AnyChanMsg) -> Vec<u8> {
    let mut codec = CellCodec::new();
    codec.set_link_version(5).unwrap();
    let mut out = Vec::new();
    codec
        .encode_cell(ChanCell::new(None, msg), &mut out)
        .unwrap();
    out
}

pub(super) fn versions(vs: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_versions(vs, &mut out).unwrap();
    out
}

/// Split a side's bytes into cells as framed: from the start of the
/// connection (VERSIONS first), or after VERSIONS if `negotiated`.
pub(super) fn split_cells_at(bytes: &[u8], negotiated: bool) -> Vec<(Vec<u8>, AnyChanMsg)> {
    let mut codec = CellCodec::new();
    if negotiated {
        codec.set_link_version(5).unwrap();
    }
    codec.handle_bytes(bytes).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let before = codec.buffered_len();
        let Some(raw) = codec.poll_raw_cell().unwrap() else {
            break;
        };
        let used = before - codec.buffered_len();
        let (_, parsed) = raw.parse().unwrap().into_circid_and_msg();
        if parsed.cmd() == ChanCmd::VERSIONS && codec.link_version().is_none() {
            codec.set_link_version(5).unwrap();
        }
        out.push((bytes[at..at + used].to_vec(), parsed));
        at += used;
    }
    assert_eq!(at, bytes.len());
    out
}

/// [`split_cells_at`] from the start of the connection.
pub(super) fn split_cells(bytes: &[u8]) -> Vec<(Vec<u8>, AnyChanMsg)> {
    split_cells_at(bytes, false)
}

#[test]
fn client_to_responder() {
    let mut init = ClientHandshake::new(client_params(), Instant::now());
    let mut resp = responder();
    assert!(resp.poll_transmit().is_none(), "nothing before VERSIONS");
    pump(&mut init, &mut resp).unwrap();
    assert!(init.is_open() && resp.is_open());
    let i = init.finish().unwrap();
    let r = resp.finish().unwrap();
    assert!(i.unsent.is_empty() && r.unsent.is_empty());
    // The client verified relay A's CERTS.
    assert_eq!(i.outcome.peer.rsa, keys_a().rsa_identity());
    assert_eq!(i.outcome.peer.ed25519, keys_a().ed_identity());
    assert_eq!(i.outcome.link_version, 5);
    assert!(!i.outcome.authenticated);
    assert_eq!(i.outcome.peer_addrs, vec![IpAddr::from(RESP_ADDR)]);
    assert_eq!(i.outcome.our_addr_seen_by_peer, Some(INIT_ADDR.into()));
    assert_eq!(i.outcome.peer_time, Some(now()));
    // The responder saw a client.
    let o = &r.outcome;
    assert_eq!(o.initiator, Initiator::Unauthenticated);
    assert_eq!(o.link_version, 5);
    assert_eq!(o.peer_time, None);
    assert!(o.peer_addrs.is_empty());
    assert_eq!(o.our_addr_seen_by_peer, Some(RESP_ADDR.into()));
    assert_eq!(r.codec.link_version(), Some(5));
}

#[test]
fn relay_to_responder() {
    let mut init = ClientHandshake::new(relay_params(), Instant::now());
    let mut resp = responder();
    pump(&mut init, &mut resp).unwrap();
    let i = init.finish().unwrap();
    let r = resp.finish().unwrap();
    assert!(i.outcome.authenticated);
    let Initiator::Relay(id) = r.outcome.initiator else {
        panic!("not authenticated: {:?}", r.outcome);
    };
    assert_eq!(id.rsa, keys_b().rsa_identity());
    assert_eq!(id.ed25519, keys_b().ed_identity());
    assert!(id.valid_until > now());
    // A relay's NETINFO: its time and address.
    assert_eq!(r.outcome.peer_time, Some(now()));
    assert_eq!(r.outcome.peer_addrs, vec![IpAddr::from(INIT_ADDR)]);
    assert_eq!(r.outcome.clock_skew.map(|_| ()), Some(()));
}

/// What the responder sends, cell by cell, as C-tor sends it.
#[test]
fn responder_flight() {
    let mut resp = responder();
    resp.handle_bytes(now(), &versions(&[3, 4, 5])).unwrap();
    let flight = resp.poll_transmit().unwrap();
    let cells = split_cells(&flight);
    let cmds: Vec<ChanCmd> = cells.iter().map(|(_, c)| c.cmd()).collect();
    assert_eq!(
        cmds,
        [
            ChanCmd::VERSIONS,
            ChanCmd::CERTS,
            ChanCmd::AUTH_CHALLENGE,
            ChanCmd::NETINFO
        ]
    );
    // VERSIONS with 2-byte circuit ids, offering 4 and 5.
    assert_eq!(hex::encode(&cells[0].0), "000007000400040005");
    let AnyChanMsg::Certs(c) = cells[1].1.clone() else {
        panic!()
    };
    let body = certs_msg_body(&c).unwrap();
    let types: Vec<u8> = parse_certs_body(&body)
        .unwrap()
        .iter()
        .map(|e| e.cert_type.into())
        .collect();
    assert_eq!(types, [1, 2, 4, 5, 7]);
    let a = keys_a();
    assert_eq!(c.cert_body(CertType::TLS_LINK_X509), Some(a.tls_cert_der()));
    let exp = ExpectedIdentity {
        rsa: a.rsa_identity(),
        ed25519: Some(a.ed_identity()),
    };
    let tls = super::certs::tls_cert_digest(a.tls_cert_der());
    verify_responder_certs(&body, &tls, &exp, now()).unwrap();
    // AUTH_CHALLENGE: 32 bytes, method 3 only.
    let AnyChanMsg::AuthChallenge(ch) = cells[2].1.clone() else {
        panic!()
    };
    assert_eq!(ch.methods(), &[3]);
    assert_eq!(cells[2].0.len(), 7 + 32 + 2 + 2);
    // NETINFO: our time, the initiator's address, ours.
    let AnyChanMsg::Netinfo(n) = cells[3].1.clone() else {
        panic!()
    };
    assert_eq!(n.timestamp(), Some(now()));
    assert_eq!(n.their_addr(), Some(&IpAddr::from(INIT_ADDR)));
    assert_eq!(n.my_addrs(), &[IpAddr::from(RESP_ADDR)]);
    // Every challenge differs.
    let mut other = responder();
    other.handle_bytes(now(), &versions(&[4, 5])).unwrap();
    let other = other.poll_transmit().unwrap();
    assert_ne!(split_cells(&other)[2].0, cells[2].0);
}

#[test]
fn link_version_4() {
    let mut resp = responder();
    resp.handle_bytes(now(), &versions(&[3, 4])).unwrap();
    assert_eq!(resp.link_version(), Some(4));
    let flight = resp.poll_transmit().unwrap();
    // Our VERSIONS still lists 4 and 5; the rest is framed for 4 (the same
    // framing as 5).
    assert_eq!(hex::encode(&flight[..9]), "000007000400040005");
    let mut c = CellCodec::new();
    c.set_link_version(4).unwrap();
    let mut netinfo = Vec::new();
    c.encode_cell(
        ChanCell::new(None, Netinfo::from_client(Some(RESP_ADDR.into())).into()),
        &mut netinfo,
    )
    .unwrap();
    resp.handle_bytes(now(), &netinfo).unwrap();
    assert_eq!(resp.outcome().unwrap().link_version, 4);
}

/// The initiator's AUTHENTICATE carries the digests of the exact bytes on
/// the wire, computed here independently from what each side sent.
#[test]
fn authenticate_covers_the_wire_bytes() {
    let mut init = ClientHandshake::new(relay_params(), Instant::now());
    let mut resp = responder();
    let init_versions = init.poll_transmit().unwrap();
    resp.handle_bytes(now(), &init_versions).unwrap();
    let flight = resp.poll_transmit().unwrap();
    // Some VPADDING from the responder before its flight, which the
    // initiator must count in SLOG too.
    let vpad = [0, 0, 128, 0, 3, 1, 2, 3];
    init.handle_bytes(now(), &vpad).unwrap();
    init.handle_bytes(now(), &flight).unwrap();
    let answer = init.poll_transmit().unwrap();
    let cells = split_cells(&[init_versions.clone(), answer.clone()].concat());
    let cmds: Vec<ChanCmd> = cells.iter().map(|(_, c)| c.cmd()).collect();
    assert_eq!(
        cmds,
        [
            ChanCmd::VERSIONS,
            ChanCmd::CERTS,
            ChanCmd::AUTHENTICATE,
            ChanCmd::NETINFO
        ]
    );
    let AnyChanMsg::Authenticate(auth) = cells[2].1.clone() else {
        panic!()
    };
    let auth = auth.auth();
    assert_eq!(auth.len(), 352);
    let field = |i: usize| &auth[8 + 32 * i..8 + 32 * (i + 1)];
    let a = keys_a();
    let b = keys_b();
    assert_eq!(&auth[..8], b"AUTH0003");
    assert_eq!(field(0), &b.auth0003_exporter_context());
    assert_eq!(field(1), &a.auth0003_exporter_context());
    assert_eq!(field(2), b.ed_identity().as_bytes());
    assert_eq!(field(3), a.ed_identity().as_bytes());
    let resp_cells = split_cells(&flight);
    let slog_bytes = [
        vpad.to_vec(),
        resp_cells[0].0.clone(),
        resp_cells[1].0.clone(),
        resp_cells[2].0.clone(),
    ]
    .concat();
    assert_eq!(field(4), Sha256::digest(&slog_bytes).as_slice(), "SLOG");
    let clog_bytes = [cells[0].0.clone(), cells[1].0.clone()].concat();
    assert_eq!(field(5), Sha256::digest(&clog_bytes).as_slice(), "CLOG");
    assert_eq!(field(6), Sha256::digest(a.tls_cert_der()).as_slice());
    assert_eq!(field(7), &export(&b.auth0003_exporter_context()));
    // Our SLOG holds the VPADDING the responder never sent (as a MITM
    // would add): the responder refuses the authenticator.
    let e = resp.handle_bytes(now(), &answer);
    let e = e.and_then(|()| {
        let req = resp.tls_export_request().unwrap();
        resp.handle_tls_export(now(), export(&req.context))
    });
    assert_eq!(
        e.unwrap_err(),
        ChannelError::AuthenticateMismatch { field: "SLOG" }
    );
}

/// Any byte the initiator sent before AUTHENTICATE that reaches the
/// responder changed makes the handshake fail: certificates break, or the
/// transcript (CLOG) no longer matches.
#[test]
fn flipped_initiator_bytes_fail() {
    // Capture an honest run's initiator bytes.
    let mut init = ClientHandshake::new(relay_params(), Instant::now());
    let mut resp = responder_seeded(7);
    let init_versions = init.poll_transmit().unwrap();
    resp.handle_bytes(now(), &init_versions).unwrap();
    let flight = resp.poll_transmit().unwrap();
    init.handle_bytes(now(), &flight).unwrap();
    let answer = init.poll_transmit().unwrap();
    let cells = split_cells_at(&answer, true);
    // CERTS and AUTHENTICATE: everything but NETINFO.
    let authenticated_len = cells[0].0.len() + cells[1].0.len();

    // Replay (parts of) the initiator's bytes to responders that send the
    // same flight.
    let run = |versions: &[u8], answer: &[u8]| -> Result<ResponderHandshake, ChannelError> {
        let mut r = responder_seeded(7);
        r.handle_bytes(now(), versions)?;
        assert_eq!(r.poll_transmit(), Some(flight.clone()));
        r.handle_bytes(now(), answer)?;
        if let Some(req) = r.tls_export_request() {
            r.handle_tls_export(now(), export(&req.context))?;
        }
        Ok(r)
    };
    assert!(run(&init_versions, &answer).unwrap().is_open());
    // A responder with another challenge refuses the same answer.
    let mut r = responder_seeded(8);
    r.handle_bytes(now(), &init_versions).unwrap();
    r.handle_bytes(now(), &answer).unwrap();
    let req = r.tls_export_request().unwrap();
    assert_eq!(
        r.handle_tls_export(now(), export(&req.context))
            .unwrap_err(),
        ChannelError::AuthenticateMismatch { field: "SLOG" }
    );

    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..authenticated_len {
        let mut bad = answer.clone();
        bad[i] ^= 0x20;
        match run(&init_versions, &bad) {
            // Not an error, but never a relay: a changed command byte
            // turns AUTHENTICATE into an unknown cell that is dropped, and
            // the NETINFO after it opens an unauthenticated channel.
            Ok(r) => assert!(
                !matches!(r.outcome(), Some(o) if o.initiator != Initiator::Unauthenticated),
                "byte {i} flipped, still authenticated"
            ),
            Err(e) => *kinds.entry(variant(&e)).or_default() += 1,
        }
    }
    // And in the initiator's VERSIONS (still a valid list when a version's
    // low byte changes: 4,5 -> 4,0x25): CLOG differs.
    let mut v = init_versions.clone();
    v[8] ^= 0x20;
    assert_eq!(
        run(&v, &answer).unwrap_err(),
        ChannelError::AuthenticateMismatch { field: "CLOG" }
    );
    // A VPADDING the initiator never sent, slipped in before CERTS.
    let vpad = cell(Vpadding::new(4).into());
    assert_eq!(
        run(&init_versions, &[vpad, answer.clone()].concat()).unwrap_err(),
        ChannelError::AuthenticateMismatch { field: "CLOG" }
    );
    // Flips inside AUTHENTICATE's fields are named.
    assert!(kinds.contains_key("AuthenticateMismatch"), "{kinds:?}");
    assert!(kinds.contains_key("BadAuthenticateSignature"), "{kinds:?}");
    assert!(kinds.contains_key("BadSignature"), "{kinds:?}");
}

/// The name of an error's variant.
fn variant(e: &ChannelError) -> String {
    format!("{e:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap()
        .to_string()
}
