#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use braid_dir::RelayId;
use braid_dir::documents::split_microdescs;
use braid_dir::serve::{DirCache, RequestParser, Session, answer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;
use crate::run::consensus::fetch;

/// Documents recorded from a private network (braid-dir's testdata).
const CONSENSUS: &str = include_str!("../../../../../dir/testdata/private-net/consensus-microdesc");
const CERTS: &str = include_str!("../../../../../dir/testdata/private-net/certs");
const MICRODESCS: &str = include_str!("../../../../../dir/testdata/private-net/microdescs");
const AUTHORITIES: &str = include_str!("../../../../../dir/testdata/private-net/authorities");

/// Inside the recorded consensus' lifetime.
fn during() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_258_700)
}

fn ids() -> Vec<RelayId> {
    AUTHORITIES.lines().map(|l| l.parse().unwrap()).collect()
}

/// An authority's DirPort: the recorded consensus and certificates, and
/// the recorded microdescriptors asked for (answered by braid-dir's own
/// URL table over a cache holding them); the paths asked.
async fn dirport() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut mds = DirCache::default();
    for md in split_microdescs(MICRODESCS) {
        mds.insert_microdesc(md).unwrap();
    }
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&paths);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0_u8; 4096];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let req = RequestParser::new().push(&head).unwrap().unwrap();
            seen.lock().unwrap().push(req.url.clone());
            let reply = if req.url == "/tor/status-vote/current/consensus-microdesc" {
                format!("HTTP/1.0 200 OK\r\n\r\n{CONSENSUS}").into_bytes()
            } else if req.url.starts_with("/tor/keys/fp-sk/") {
                format!("HTTP/1.0 200 OK\r\n\r\n{CERTS}").into_bytes()
            } else {
                answer(&mds, &req, during()).unwrap().to_bytes()
            };
            s.write_all(&reply).await.unwrap();
        }
    });
    (addr, paths)
}

/// The listed microdescriptors are fetched (from the second authority
/// when the first is down), the consensus and certificates served; an
/// unlisted microdescriptor goes; a second refresh asks for nothing.
#[tokio::test]
async fn refresh_fills_the_cache_from_the_authorities() {
    let (addr, paths) = dirport().await;
    // Port 1: no test server can be there (a port freed here could be
    // taken by a test running beside this one).
    let dead: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let ids = ids();
    let mut certs = Vec::new();
    let (_, dir) = fetch(addr, &ids, &mut certs, during()).await.unwrap();
    let authorities = vec![
        Authority {
            nickname: "down".into(),
            v3ident: ids[0],
            dir_addr: dead,
        },
        Authority {
            nickname: "up".into(),
            v3ident: ids[1],
            dir_addr: addr,
        },
    ];
    let shared = DirShared::default();
    shared
        .cache
        .write()
        .unwrap()
        .insert_microdesc("onion-key\nntor-onion-key unlisted\n")
        .unwrap();
    refresh(&shared, &authorities, 0, &dir, &certs).await;
    let listed = dir.wanted_digests().len();
    assert!(listed > 5, "{listed}");
    let f = shared.figures();
    assert_eq!(
        f.microdescs.0, listed,
        "every listed one, the unlisted gone"
    );
    assert_eq!(f.certs, 3);
    assert_eq!((f.md_fetches.0, f.md_fetches.1), (1, 1));
    assert_eq!(f.consensus_valid_after, Some(dir.lifetime().valid_after));
    let md_requests = |p: &[String]| p.iter().filter(|u| u.starts_with("/tor/micro/d/")).count();
    assert_eq!(md_requests(&paths.lock().unwrap()), 1);

    // What a client gets over BEGIN_DIR: the consensus byte for byte, a
    // microdescriptor by digest.
    {
        let cache = shared.cache.read().unwrap();
        let now = Instant::now();
        let mut s = Session::new(now);
        s.handle_input(
            b"GET /tor/status-vote/current/consensus-microdesc.z HTTP/1.0\r\n\r\n",
            now,
            during(),
        );
        s.answer(&cache, during());
        let mut out = Vec::new();
        while !s.output().is_empty() {
            out.extend_from_slice(s.output());
            let n = s.output().len();
            s.consume(n, now);
        }
        // A `.z` URL: deflated, as C-tor's caches answer.
        let r = braid_dir::fetch::http::parse_response(&out, 1 << 20).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.encoding, braid_dir::fetch::Encoding::Deflate);
        assert_eq!(String::from_utf8(r.body).unwrap(), CONSENSUS);
    }

    // Nothing is missing now.
    refresh(&shared, &authorities, 1, &dir, &certs).await;
    assert_eq!(md_requests(&paths.lock().unwrap()), 1);
    assert_eq!(shared.figures().md_fetches, (1, 1));
}
