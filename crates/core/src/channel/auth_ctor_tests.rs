//! A real AUTH0003 authenticator: a C-tor 0.4.9.8 relay authenticating to
//! Braid's responder, recorded by `tests/ctor_link.rs` (the bytes each side
//! sent, our TLS certificate and the TLS exporter value). C-tor's own tests
//! have no fixed-key AUTH0003 vectors; this one pins down, without a
//! running tor, what SLOG, CLOG, SCERT and TLSSECRETS cover and that
//! C-tor's authenticator verifies as ours does.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use digest::Digest as _;
use tor_cell::chancell::msg::{AnyChanMsg, Authenticate};
use tor_cell::chancell::{ChanCmd, ChanMsg as _};
use tor_cert::CertType;
use tor_llcrypto::d::Sha256;

use super::auth::Auth0003;
use super::certs::{certs_msg_body, check_identity_chain, parse_certs_body, rsa_key_digest};
use super::codec::CellCodec;
use super::error::ChannelError;
use super::initiator_certs::verify_initiator_certs;

const RECORDING: &str = include_str!("testdata/ctor_auth0003.txt");

/// The recording's fields.
fn recording() -> HashMap<&'static str, &'static str> {
    RECORDING
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(": "))
        .collect()
}

fn bytes(name: &str) -> Vec<u8> {
    hex::decode(recording()[name]).unwrap()
}

/// One side's cells: the bytes each took on the wire and the message.
fn cells(wire: &[u8]) -> Vec<(Vec<u8>, AnyChanMsg)> {
    let mut codec = CellCodec::new();
    codec.handle_bytes(wire).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(raw) = codec.poll_raw_cell().unwrap() {
        let used = wire.len() - at - codec.buffered_len();
        let (_, msg) = raw.parse().unwrap().into_circid_and_msg();
        if raw.cmd() == ChanCmd::VERSIONS && codec.link_version().is_none() {
            codec.set_link_version(5).unwrap();
        }
        out.push((wire[at..at + used].to_vec(), msg));
        at += used;
    }
    out
}

/// SHA-256 of the cells up to and including the first with `cmd` (or
/// excluding it, if `!including`).
fn log_until(cells: &[(Vec<u8>, AnyChanMsg)], cmd: ChanCmd, including: bool) -> [u8; 32] {
    let mut h = Sha256::new();
    for (wire, msg) in cells {
        if msg.cmd() == cmd {
            if including {
                h.update(wire);
            }
            break;
        }
        h.update(wire);
    }
    h.finalize().into()
}

/// The recorded authenticator, and the fields we compute for it.
fn recorded() -> (Authenticate, Auth0003, tor_llcrypto::pk::ed25519::PublicKey) {
    let time: u64 = recording()["time"].parse().unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(time);
    let theirs = cells(&bytes("initiator_sent"));
    let ours = cells(&bytes("responder_sent"));

    let find = |cells: &[(Vec<u8>, AnyChanMsg)], cmd: ChanCmd| {
        cells
            .iter()
            .find(|(_, m)| m.cmd() == cmd)
            .map(|(_, m)| m.clone())
            .unwrap()
    };
    let AnyChanMsg::Certs(their_certs) = find(&theirs, ChanCmd::CERTS) else {
        unreachable!()
    };
    let AnyChanMsg::Authenticate(auth) = find(&theirs, ChanCmd::AUTHENTICATE) else {
        unreachable!()
    };
    let AnyChanMsg::Certs(our_certs) = find(&ours, ChanCmd::CERTS) else {
        unreachable!()
    };
    let initiator = verify_initiator_certs(&certs_msg_body(&their_certs).unwrap(), now).unwrap();
    let our_body = certs_msg_body(&our_certs).unwrap();
    let our_entries = parse_certs_body(&our_body).unwrap();
    let (chain, _) = check_identity_chain(&our_entries, CertType::SIGNING_V_TLS_CERT, now).unwrap();

    let fields = Auth0003 {
        cid: initiator.rsa_id_sha256,
        sid: rsa_key_digest(&chain.rsa_key),
        cid_ed: initiator.identity.ed25519.into(),
        sid_ed: chain.ed_id.into(),
        // The responder's cells up to and including AUTH_CHALLENGE.
        slog: log_until(&ours, ChanCmd::AUTH_CHALLENGE, true),
        // The initiator's cells before AUTHENTICATE.
        clog: log_until(&theirs, ChanCmd::AUTHENTICATE, false),
        scert: Sha256::digest(bytes("responder_tls_cert")).into(),
        tlssecrets: bytes("exporter_value").try_into().unwrap(),
    };
    (auth, fields, initiator.auth_key)
}

#[test]
fn ctor_authenticator_verifies() {
    let (auth, fields, key) = recorded();
    fields.verify(&auth, &key).unwrap();
    // C-tor's layout: exactly TYPE..RAND and a signature.
    assert_eq!(auth.auth_type(), 3);
    assert_eq!(auth.auth().len(), 352);
    assert_eq!(&auth.auth()[..8], b"AUTH0003");
    // The exporter's context was the CID (not CID_ED).
    assert_eq!(bytes("exporter_context"), fields.cid);
}

#[test]
fn ctor_transcript_shape() {
    // C-tor's initiator sends VERSIONS (3, 4, 5), then CERTS with its RSA
    // AUTH certificate (type 3) besides 2, 4, 6, 7, then AUTHENTICATE and
    // NETINFO; the CREATE2 of the circuit it extends came in the same read.
    let theirs = cells(&bytes("initiator_sent"));
    let cmds: Vec<ChanCmd> = theirs.iter().map(|(_, m)| m.cmd()).collect();
    assert_eq!(
        cmds,
        [
            ChanCmd::VERSIONS,
            ChanCmd::CERTS,
            ChanCmd::AUTHENTICATE,
            ChanCmd::NETINFO,
            ChanCmd::CREATE2
        ]
    );
    assert_eq!(hex::encode(&theirs[0].0), "0000070006000300040005");
    let AnyChanMsg::Certs(c) = &theirs[1].1 else {
        unreachable!()
    };
    let body = certs_msg_body(c).unwrap();
    let types: Vec<u8> = parse_certs_body(&body)
        .unwrap()
        .iter()
        .map(|e| e.cert_type.into())
        .collect();
    assert_eq!(types, [3, 2, 4, 6, 7]);
}

#[test]
fn ctor_authenticator_refused_when_anything_differs() {
    let (auth, fields, key) = recorded();
    let mut wrong = fields.clone();
    wrong.slog[0] ^= 1;
    assert_eq!(
        wrong.verify(&auth, &key).unwrap_err(),
        ChannelError::AuthenticateMismatch { field: "SLOG" }
    );
    // CLOG over the cells including AUTHENTICATE, or without VERSIONS'
    // 2-byte-id framing, is not what C-tor signed.
    let theirs = cells(&bytes("initiator_sent"));
    let mut wrong = fields.clone();
    wrong.clog = log_until(&theirs, ChanCmd::AUTHENTICATE, true);
    assert_eq!(
        wrong.verify(&auth, &key).unwrap_err(),
        ChannelError::AuthenticateMismatch { field: "CLOG" }
    );
    // SLOG with our NETINFO in it.
    let ours = cells(&bytes("responder_sent"));
    let mut wrong = fields.clone();
    wrong.slog = log_until(&ours, ChanCmd::PADDING, false);
    assert_eq!(
        wrong.verify(&auth, &key).unwrap_err(),
        ChannelError::AuthenticateMismatch { field: "SLOG" }
    );
    let mut wrong = fields.clone();
    wrong.tlssecrets[31] ^= 1;
    assert_eq!(
        wrong.verify(&auth, &key).unwrap_err(),
        ChannelError::AuthenticateMismatch {
            field: "TLSSECRETS"
        }
    );
    // Its RAND and signature are covered.
    let mut body = auth.auth().to_vec();
    body[270] ^= 1;
    assert_eq!(
        fields
            .verify(&Authenticate::new(3, body), &key)
            .unwrap_err(),
        ChannelError::BadAuthenticateSignature
    );
}
