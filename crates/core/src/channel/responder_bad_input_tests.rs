//! The responder against wrong identities, cells out of order, garbage
//! and limits, and random cell sequences (tor-spec §4).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::sync::OnceLock;
use std::time::Instant;

use tor_cell::chancell::msg::{
    AnyChanMsg, AuthChallenge, Authenticate, Create2, HandshakeType, Netinfo, Padding, Versions,
    Vpadding,
};
use tor_cell::chancell::{ChanCell, ChanCmd, CircId};

use super::auth::AUTH0003_EXPORTER_LABEL;
use super::certs::ExpectedIdentity;
use super::codec::CellCodec;
use super::error::{ChannelError, ErrorKind};
use super::handshake::ClientHandshake;
use super::initiator_auth::InitiatorAuth;
use super::responder::{Initiator, ResponderHandshake, ResponderParams};
use super::responder_tests::{
    Failed, INIT_ADDR, RESP_ADDR, cell, client_params, export, keys_a, keys_b, now, pump,
    relay_params, responder, responder_seeded, split_cells, split_cells_at, versions,
};

/// An honest relay B's bytes to `responder_seeded(SEED)`.
struct Recorded {
    versions: Vec<u8>,
    certs: Vec<u8>,
    authenticate: Vec<u8>,
    netinfo: Vec<u8>,
}

const SEED: u64 = 11;

fn recorded() -> &'static Recorded {
    static R: OnceLock<Recorded> = OnceLock::new();
    R.get_or_init(|| {
        let mut init = ClientHandshake::new(relay_params(), Instant::now());
        let mut resp = responder_seeded(SEED);
        let versions = init.poll_transmit().unwrap();
        resp.handle_bytes(now(), &versions).unwrap();
        init.handle_bytes(now(), &resp.poll_transmit().unwrap())
            .unwrap();
        let answer = init.poll_transmit().unwrap();
        let mut cells = split_cells_at(&answer, true).into_iter().map(|(b, _)| b);
        Recorded {
            versions,
            certs: cells.next().unwrap(),
            authenticate: cells.next().unwrap(),
            netinfo: cells.next().unwrap(),
        }
    })
}

/// A fresh `responder_seeded(SEED)` fed `parts` in turn, with the TLS
/// exporter answered when asked.
fn feed(parts: &[&[u8]]) -> (ResponderHandshake, Result<(), ChannelError>) {
    let mut r = responder_seeded(SEED);
    let mut result = Ok(());
    for p in parts {
        result = r.handle_bytes(now(), p);
        if result.is_ok()
            && let Some(req) = r.tls_export_request()
        {
            result = r.handle_tls_export(now(), export(&req.context));
        }
        if result.is_err() {
            break;
        }
    }
    (r, result)
}

fn feed_err(parts: &[&[u8]]) -> ChannelError {
    let (r, e) = feed(parts);
    assert!(r.is_failed());
    e.unwrap_err()
}

fn unexpected(cmd: ChanCmd, expecting: &'static str) -> ChannelError {
    ChannelError::UnexpectedCell { cmd, expecting }
}

#[test]
fn recorded_answer_authenticates() {
    let rec = recorded();
    let (r, res) = feed(&[&rec.versions, &rec.certs, &rec.authenticate, &rec.netinfo]);
    res.unwrap();
    assert!(matches!(
        r.outcome().unwrap().initiator,
        Initiator::Relay(_)
    ));
    // Byte by byte, too.
    let all = [
        rec.versions.clone(),
        rec.certs.clone(),
        rec.authenticate.clone(),
        rec.netinfo.clone(),
    ]
    .concat();
    let parts: Vec<&[u8]> = all.chunks(1).collect();
    let (r, res) = feed(&parts);
    res.unwrap();
    assert!(r.is_open());
}

#[test]
fn cells_out_of_order_refused() {
    let rec = recorded();
    let v = &rec.versions[..];
    let auth_challenge = cell(AuthChallenge::new([1; 32], vec![3]).into());
    let padding = cell(Padding::new().into());
    let mut create2 = Vec::new();
    let mut codec = CellCodec::new();
    codec.set_link_version(5).unwrap();
    codec
        .encode_cell(
            ChanCell::new(
                CircId::new(0x8000_0001),
                Create2::new(HandshakeType::NTOR, vec![0; 84]).into(),
            ),
            &mut create2,
        )
        .unwrap();
    let cases: Vec<(Vec<&[u8]>, ChannelError)> = vec![
        // Before VERSIONS: a CERTS with 2-byte circuit ids, a NETINFO
        // (fixed-length, so it cannot even be framed).
        (
            vec![&[0, 0, 129, 0, 1, 0]],
            unexpected(ChanCmd::CERTS, "VERSIONS"),
        ),
        (
            vec![&[0, 0, 8, 0, 0]],
            ChannelError::FixedCellBeforeVersions {
                cmd: ChanCmd::NETINFO,
            },
        ),
        // AUTHENTICATE before CERTS.
        (
            vec![v, &rec.authenticate],
            unexpected(ChanCmd::AUTHENTICATE, "CERTS or NETINFO"),
        ),
        // AUTH_CHALLENGE is the responder's.
        (
            vec![v, &auth_challenge],
            unexpected(ChanCmd::AUTH_CHALLENGE, "CERTS or NETINFO"),
        ),
        // A fixed-length PADDING, or a circuit cell, during the handshake.
        (
            vec![v, &padding],
            unexpected(ChanCmd::PADDING, "CERTS or NETINFO"),
        ),
        (
            vec![v, &create2],
            unexpected(ChanCmd::CREATE2, "CERTS or NETINFO"),
        ),
        (
            vec![v, &rec.certs, &padding],
            unexpected(ChanCmd::PADDING, "AUTHENTICATE or NETINFO"),
        ),
        // Two CERTS; CERTS or AUTHENTICATE after AUTHENTICATE.
        (
            vec![v, &rec.certs, &rec.certs],
            unexpected(ChanCmd::CERTS, "AUTHENTICATE or NETINFO"),
        ),
        (
            vec![v, &rec.certs, &rec.authenticate, &rec.certs],
            unexpected(ChanCmd::CERTS, "NETINFO"),
        ),
        (
            vec![v, &rec.certs, &rec.authenticate, &rec.authenticate],
            unexpected(ChanCmd::AUTHENTICATE, "NETINFO"),
        ),
    ];
    for (parts, want) in cases {
        assert_eq!(feed_err(&parts), want);
        assert!(want.is_peer_fault());
    }
}

/// VPADDING, AUTHORIZE, unknown variable-length cells and later VERSIONS
/// are allowed where tor-spec §4 allows them.
#[test]
fn padding_and_unknown_cells_allowed() {
    let vpad_pre = [0, 0, 128, 0, 2, 9, 9];
    let authorize_pre = [0, 0, 132, 0, 0];
    let unknown = cell(AnyChanMsg::Unrecognized(
        tor_cell::chancell::msg::Unrecognized::new(ChanCmd::from(200), vec![1, 2]),
    ));
    let again = cell(Versions::new(vec![4]).unwrap().into());
    let vpad = cell(Vpadding::new(30).into());
    let netinfo = cell(Netinfo::from_client(Some(RESP_ADDR.into())).into());
    let (r, res) = feed(&[
        &vpad_pre,
        &authorize_pre,
        &versions(&[4, 5]),
        &unknown,
        &again,
        &vpad,
        &netinfo,
    ]);
    res.unwrap();
    assert_eq!(r.outcome().unwrap().initiator, Initiator::Unauthenticated);
    // The same around a relay's cells breaks its transcript (CLOG): only
    // cells the initiator sent may be in it.
    let rec = recorded();
    assert_eq!(
        feed_err(&[&rec.versions, &vpad, &rec.certs, &rec.authenticate]),
        ChannelError::AuthenticateMismatch { field: "CLOG" }
    );
}

#[test]
fn garbage_refused_with_typed_errors() {
    let rec = recorded();
    let v = &rec.versions[..];
    let certs_cell = |body: &[u8]| {
        let mut c = vec![0, 0, 0, 0, 129];
        c.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        c.extend_from_slice(body);
        c
    };
    let authenticate =
        |auth_type: u16, auth: Vec<u8>| cell(Authenticate::new(auth_type, auth).into());
    let with_certs = |c: &[u8]| vec![v.to_vec(), rec.certs.clone(), c.to_vec()];
    type Check = fn(&ChannelError) -> bool;
    let cases: Vec<(Vec<Vec<u8>>, Check)> = vec![
        // VERSIONS with an odd length, or nothing in common.
        (
            vec![vec![0, 0, 7, 0, 3, 0, 4, 0]],
            |e| matches!(e, ChannelError::MalformedCell { cmd, .. } if *cmd == ChanCmd::VERSIONS),
        ),
        (vec![versions(&[1, 2, 3])], |e| {
            *e == ChannelError::NoCommonVersion {
                ours: vec![4, 5],
                theirs: vec![1, 2, 3],
            }
        }),
        // CERTS bodies that do not parse, or lack what a relay needs.
        (
            vec![v.to_vec(), certs_cell(&[3, 2, 0, 9])],
            |e| matches!(e, ChannelError::MalformedCell { cmd, .. } if *cmd == ChanCmd::CERTS),
        ),
        (vec![v.to_vec(), certs_cell(&[1, 2, 0, 2, 0x30, 0])], |e| {
            matches!(e, ChannelError::MissingCert { .. })
        }),
        (
            vec![v.to_vec(), certs_cell(&[])],
            |e| matches!(e, ChannelError::MalformedCell { cmd, .. } if *cmd == ChanCmd::CERTS),
        ),
        // A certificate of type 2 that is no X.509.
        (
            vec![
                v.to_vec(),
                certs_cell(&[4, 2, 0, 1, 0x30, 4, 0, 1, 0, 6, 0, 1, 0, 7, 0, 1, 0]),
            ],
            |e| matches!(e, ChannelError::MalformedCert { .. }),
        ),
        // AUTHENTICATE: too short, another method, cut short.
        (with_certs(&authenticate(3, vec![0; 100])), |e| {
            matches!(e, ChannelError::MalformedAuthenticate { .. })
        }),
        (with_certs(&authenticate(1, vec![0; 400])), |e| {
            *e == ChannelError::UnsupportedAuthType { auth_type: 1 }
        }),
        // An authenticator length of 100 in a 4-byte body.
        (
            with_certs(&[0, 0, 0, 0, 131, 0, 4, 0, 3, 0, 100]),
            |e| matches!(e, ChannelError::MalformedCell { cmd, .. } if *cmd == ChanCmd::AUTHENTICATE),
        ),
        // A NETINFO whose addresses run past the end of the cell: after
        // the timestamp, an address of type 0xff and length 255, then 255
        // more such addresses.
        (
            vec![v.to_vec(), {
                let mut n = vec![0, 0, 0, 0, 8, 0, 0, 0, 0];
                n.resize(514, 0xff);
                n
            }],
            |e| matches!(e, ChannelError::MalformedCell { cmd, .. } if *cmd == ChanCmd::NETINFO),
        ),
    ];
    for (parts, check) in cases {
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let e = feed_err(&parts);
        assert!(check(&e), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Protocol);
    }
}

#[test]
fn limits_and_misuse() {
    // More undecoded input than the codec holds: a resource limit, not a
    // panic or unbounded growth.
    let rec = recorded();
    let mut big = vec![0, 0, 0, 0, 128, 0xff, 0xff];
    big.resize(300_000, 0);
    let e = feed_err(&[&rec.versions, &big]);
    assert!(matches!(e, ChannelError::BufferFull { .. }));
    assert_eq!(e.kind(), ErrorKind::ResourceLimit);
    // Input after failure, and finish() before opening: internal errors.
    let mut r = responder();
    assert!(r.handle_bytes(now(), &[0, 0, 8, 0, 0]).is_err());
    assert_eq!(
        r.handle_bytes(now(), &rec.versions).unwrap_err().kind(),
        ErrorKind::Internal
    );
    assert!(r.finish().is_err());
    // An exporter value nobody asked for is refused without harm.
    let mut r = responder_seeded(SEED);
    assert_eq!(
        r.handle_tls_export(now(), [0; 32]).unwrap_err().kind(),
        ErrorKind::Internal
    );
    r.handle_bytes(now(), &rec.versions).unwrap();
    assert!(r.handle_tls_export(now(), [0; 32]).is_err());
    r.handle_bytes(now(), &rec.certs).unwrap();
    let req = r.tls_export_request().unwrap();
    assert_eq!(req.label, AUTH0003_EXPORTER_LABEL);
    assert_eq!(req.context, keys_b().auth0003_exporter_context());
    // While it waits, input is buffered, not processed.
    r.handle_bytes(now(), &rec.authenticate).unwrap();
    r.handle_bytes(now(), &rec.netinfo).unwrap();
    assert!(!r.is_open() && r.tls_export_request().is_some());
    r.handle_tls_export(now(), export(&req.context)).unwrap();
    assert!(r.is_open());
    // The deadline.
    let start = Instant::now();
    let p = ResponderParams::new(keys_a()).with_timeout(std::time::Duration::from_secs(9));
    let r = ResponderHandshake::new(p, &mut rand::rng(), start);
    assert_eq!(r.deadline(), start + std::time::Duration::from_secs(9));
}

#[test]
fn wrong_identities_refused() {
    // A client that meant to reach relay B reaches relay A.
    let b = keys_b();
    let mut p = client_params();
    p.expected = ExpectedIdentity {
        rsa: b.rsa_identity(),
        ed25519: None,
    };
    let mut init = ClientHandshake::new(p, Instant::now());
    let mut resp = responder();
    assert_eq!(
        pump(&mut init, &mut resp).unwrap_err(),
        Failed::Initiator(ChannelError::WrongRsaIdentity {
            expected: b.rsa_identity(),
            found: keys_a().rsa_identity(),
        })
    );
    assert!(!resp.is_open());

    // An initiator that exports TLS keying material with its Ed25519
    // identity as context (as older tor-spec text said) is refused: C-tor
    // and we use the CID.
    let exporter = export(b.ed_identity().as_bytes().try_into().unwrap());
    let p = client_params().with_relay_auth(InitiatorAuth::new(
        b.clone(),
        exporter,
        vec![INIT_ADDR.into()],
        &mut rand::rng(),
    ));
    let mut init = ClientHandshake::new(p, Instant::now());
    let mut resp = responder();
    assert_eq!(
        pump(&mut init, &mut resp).unwrap_err(),
        Failed::Responder(ChannelError::AuthenticateMismatch {
            field: "TLSSECRETS"
        })
    );

    // B's certificates with an authenticator signed by another key (A's
    // authentication key): the signature is refused.
    let rec = recorded();
    let mut auth_cell = split_cells_at(&rec.authenticate, true);
    let AnyChanMsg::Authenticate(auth) = auth_cell.remove(0).1 else {
        panic!()
    };
    let signed = &auth.auth()[..288];
    let forged = [signed, &keys_a().auth_key().sign(signed).to_bytes()[..]].concat();
    let forged = cell(Authenticate::new(3, forged).into());
    assert_eq!(
        feed_err(&[&rec.versions, &rec.certs, &forged]),
        ChannelError::BadAuthenticateSignature
    );
}

/// A relay that is not offered method 3, or gets no AUTH_CHALLENGE, or
/// sends CERTS but no AUTHENTICATE, ends up unauthenticated on both sides.
#[test]
fn unauthenticated_relay_initiators() {
    // The responder's AUTH_CHALLENGE rewritten to offer method 1 only, or
    // dropped.
    for rewrite in [Some(vec![1_u16]), None] {
        let mut init = ClientHandshake::new(relay_params(), Instant::now());
        let mut resp = responder();
        resp.handle_bytes(now(), &init.poll_transmit().unwrap())
            .unwrap();
        let flight = resp.poll_transmit().unwrap();
        let mut changed = Vec::new();
        for (bytes, msg) in split_cells(&flight) {
            match (msg, &rewrite) {
                (AnyChanMsg::AuthChallenge(_), Some(m)) => {
                    changed.extend(cell(AuthChallenge::new([5; 32], m.clone()).into()))
                }
                (AnyChanMsg::AuthChallenge(_), None) => {}
                _ => changed.extend(bytes),
            }
        }
        init.handle_bytes(now(), &changed).unwrap();
        assert!(init.is_open());
        let answer = init.poll_transmit().unwrap();
        let cells = split_cells_at(&answer, true);
        assert_eq!(cells.len(), 1, "NETINFO only");
        resp.handle_bytes(now(), &answer).unwrap();
        assert_eq!(
            resp.outcome().unwrap().initiator,
            Initiator::Unauthenticated
        );
        assert!(!init.outcome().unwrap().authenticated);
        // Still a relay's NETINFO: time and address.
        assert_eq!(resp.outcome().unwrap().peer_time, Some(now()));
    }
    // CERTS, then NETINFO without AUTHENTICATE (C-tor allows it).
    let rec = recorded();
    let (r, res) = feed(&[&rec.versions, &rec.certs, &rec.netinfo]);
    res.unwrap();
    assert_eq!(r.outcome().unwrap().initiator, Initiator::Unauthenticated);
}

/// An authenticating handshake cannot take pre-framed cells: its
/// authenticator covers the bytes.
#[test]
fn authenticating_initiator_needs_bytes() {
    let mut init = ClientHandshake::new(relay_params(), Instant::now());
    let e = init
        .handle_cell(now(), ChanCell::new(None, Vpadding::new(1).into()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    // A client's can.
    let mut init = ClientHandshake::new(client_params(), Instant::now());
    init.handle_cell(now(), ChanCell::new(None, Vpadding::new(1).into()))
        .unwrap();
}

/// One cell an initiator might send, for the random sequences.
#[derive(Debug, Clone)]
enum Step {
    Versions(Vec<u16>),
    Certs,
    Authenticate,
    Netinfo,
    Vpadding(u16),
    AuthChallenge,
    Unknown(u8, Vec<u8>),
    Bytes(Vec<u8>),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(0_u16..8, 0..4).prop_map(Step::Versions),
        Just(Step::Certs),
        Just(Step::Authenticate),
        Just(Step::Netinfo),
        (0_u16..40).prop_map(Step::Vpadding),
        Just(Step::AuthChallenge),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(c, b)| Step::Unknown(c, b)),
        proptest::collection::vec(any::<u8>(), 0..60).prop_map(Step::Bytes),
    ]
}

fn encode_step(s: &Step, negotiated: bool) -> Vec<u8> {
    let rec = recorded();
    match s {
        Step::Versions(vs) => {
            if negotiated {
                cell(Versions::new(vs.clone()).unwrap().into())
            } else {
                versions(vs)
            }
        }
        Step::Certs => rec.certs.clone(),
        Step::Authenticate => rec.authenticate.clone(),
        Step::Netinfo => rec.netinfo.clone(),
        Step::Vpadding(n) => cell(Vpadding::new(*n).into()),
        Step::AuthChallenge => cell(AuthChallenge::new([3; 32], vec![3]).into()),
        Step::Unknown(cmd, body) => {
            let mut c = vec![0, 0, 0, 0, *cmd];
            if ChanCmd::from(*cmd).is_var_cell() {
                c.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
                c.extend_from_slice(body);
            } else {
                c.extend_from_slice(body);
                c.resize(514, 0);
            }
            c
        }
        Step::Bytes(b) => b.clone(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Random cell sequences (often starting with a good VERSIONS) in
    /// random chunks never panic the responder; it ends open, failed or
    /// waiting, sends at most its one flight, and an authenticated outcome
    /// names relay B.
    #[test]
    fn random_cell_sequences_never_panic(
        good_start in proptest::bool::weighted(0.8),
        steps in proptest::collection::vec(step(), 0..12),
        chunk in 1_usize..700,
    ) {
        let rec = recorded();
        let mut input = if good_start { rec.versions.clone() } else { Vec::new() };
        for s in &steps {
            input.extend(encode_step(s, good_start));
        }
        let mut r = responder_seeded(SEED);
        for part in input.chunks(chunk) {
            let mut res = r.handle_bytes(now(), part);
            if res.is_ok() && let Some(req) = r.tls_export_request() {
                res = r.handle_tls_export(now(), export(&req.context));
            }
            if res.is_err() {
                proptest::prop_assert!(r.is_failed());
                break;
            }
        }
        let sent = r.poll_transmit().map_or(0, |b| b.len());
        proptest::prop_assert!(sent < 4000, "{sent}");
        if let Some(o) = r.outcome()
            && let Initiator::Relay(id) = o.initiator
        {
            proptest::prop_assert_eq!(id.rsa, keys_b().rsa_identity());
        }
    }
}
