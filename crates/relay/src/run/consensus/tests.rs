#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::time::UNIX_EPOCH;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;
use braid_core::cc::CcAlg;

/// Documents recorded from a private network (braid-dir's testdata).
const CONSENSUS: &str = include_str!("../../../../dir/testdata/private-net/consensus-microdesc");
const CERTS: &str = include_str!("../../../../dir/testdata/private-net/certs");
const AUTHORITIES: &str = include_str!("../../../../dir/testdata/private-net/authorities");

/// Inside the recorded consensus' lifetime (2026-11-21 10:58:20 UTC).
fn during() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_258_700)
}

fn ids() -> Vec<RelayId> {
    AUTHORITIES.lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn parameters_from_the_params_line() {
    let t = UNIX_EPOCH + Duration::from_secs(1000);
    let params: BTreeMap<String, i32> = [
        ("cc_alg", 0),
        ("cc_sendme_inc", 33),
        ("cc_xoff_exit", 100),
        ("CircuitPriorityHalflifeMsec", 5000),
        ("KISTSchedRunInterval", 2),
        ("bwweightscale", 10000),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let p = NetParams::from_params(&params, t);
    assert_eq!(p.cc.alg, CcAlg::FixedWindow);
    assert_eq!(p.cc.sendme_inc, 33);
    assert_eq!(p.flow.xoff_exit_bytes, 100 * 498);
    assert_eq!(p.halflife, Duration::from_millis(5000));
    assert_eq!(p.kist_interval, Some(2));
    assert_eq!(p.valid_after, t);
    assert_eq!(
        p.summary,
        "CircuitPriorityHalflifeMsec=5000 KISTSchedRunInterval=2 cc_alg=0 cc_sendme_inc=33 cc_xoff_exit=100"
    );
    let d = NetParams::from_params(&BTreeMap::new(), t);
    assert_eq!(d.cc, CcParams::default());
    assert_eq!(d.flow, FlowParams::default());
    assert_eq!(d.halflife, braid_core::relay::ewma::DEFAULT_HALFLIFE);
    assert_eq!(d.kist_interval, None);
    assert_eq!(d.summary, "none set, defaults");
}

/// A DirPort serving the recorded consensus and certificates (`bad`: a
/// consensus with a byte changed); the paths it was asked for.
async fn dirport(bad: bool) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut paths = Vec::new();
        while let Ok(Ok((mut s, _))) =
            tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
        {
            let mut req = Vec::new();
            let mut buf = [0_u8; 4096];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8(req).unwrap();
            let path = req.split(' ').nth(1).unwrap().to_owned();
            let body = if path == "/tor/status-vote/current/consensus-microdesc" {
                if bad {
                    CONSENSUS.replacen("Running", "Runninh", 1)
                } else {
                    CONSENSUS.to_owned()
                }
            } else if path.starts_with("/tor/keys/fp-sk/") {
                CERTS.to_owned()
            } else {
                String::new()
            };
            let head = if body.is_empty() {
                "HTTP/1.0 404 Not found\r\n\r\n".to_owned()
            } else {
                "HTTP/1.0 200 OK\r\n\r\n".to_owned()
            };
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(body.as_bytes()).await.unwrap();
            paths.push(path);
        }
        paths
    });
    (addr, server)
}

/// The consensus, then the certificates of its signers (one request for
/// all), verified; the next fetch needs no certificates.
#[tokio::test]
async fn fetches_and_verifies_the_consensus() {
    let (addr, server) = dirport(false).await;
    let mut certs = Vec::new();
    let (p, dir) = fetch(addr, &ids(), &mut certs, during()).await.unwrap();
    assert_eq!(dir.consensus().text, CONSENSUS);
    assert_eq!(certs.len(), 3);
    // The recorded network sets no parameter we apply.
    assert_eq!(p.summary, "none set, defaults");
    assert_eq!(p.cc, CcParams::default());
    assert_eq!(
        p.valid_after,
        UNIX_EPOCH + Duration::from_secs(1_795_258_690)
    );
    fetch(addr, &ids(), &mut certs, during()).await.unwrap();
    let paths = server.await.unwrap();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(paths[1].starts_with("/tor/keys/fp-sk/"), "{paths:?}");
    assert_eq!(paths[1].matches('+').count(), 2, "{paths:?}");
    assert_eq!(paths[2], paths[0]);
}

/// A consensus that does not verify, one outside its lifetime, a refusal
/// and a closed port are errors.
#[tokio::test]
async fn bad_consensuses_and_answers_are_errors() {
    let (addr, _server) = dirport(true).await;
    let e = fetch(addr, &ids(), &mut Vec::new(), during())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Document(_)), "{e}");
    let (addr, _server) = dirport(false).await;
    let late = during() + Duration::from_secs(3600);
    let e = fetch(addr, &ids(), &mut Vec::new(), late)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not valid now"), "{e}");
    // Authorities we do not know signed it.
    let other: Vec<RelayId> = vec![RelayId::new([7; 20]), RelayId::new([8; 20])];
    let e = fetch(addr, &other, &mut Vec::new(), during())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Document(_)), "{e}");
    // Port 1: privileged, so no other test's server can be there (a port
    // freed here could be taken by a test running beside this one, which
    // would then see this request).
    let dead: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let e = fetch(dead, &ids(), &mut Vec::new(), during())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Http(_)), "{e}");
}

/// `get` refuses answers other than 200.
#[tokio::test]
async fn a_refusal_names_the_path_and_status() {
    let (addr, _server) = dirport(false).await;
    let e = get(addr, "/tor/nothing").await.unwrap_err();
    assert_eq!(e.to_string(), "GET /tor/nothing: 404 Not found");
}
