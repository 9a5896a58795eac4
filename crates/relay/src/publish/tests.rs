//! The publisher against fake authorities on loopback: a refusal is
//! retried with backoff until accepted, an unreachable authority does not
//! hold up the others, a change makes a fresh descriptor that goes to all.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use braid_dir::descriptor::{
    Bandwidth, DescriptorError, DescriptorInfo, ExitPolicy, build_descriptor,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;
use crate::RelayKeys;

/// A fake authority: answers each upload with the next of `answers`
/// (the last one repeated), keeping the descriptor when the answer's flag
/// says so, and serves what it keeps at `/tor/server/d/` (404 otherwise).
/// Records the bodies it received.
async fn fake_authority(
    answers: Vec<(&'static str, bool)>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    tokio::spawn(async move {
        let mut uploads = 0;
        let mut kept: Option<String> = None;
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0_u8; 4096];
            // Read the head, then Content-Length bytes.
            let (head, body) = loop {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed early");
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |l| l.parse().unwrap());
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8(buf[end + 4..end + 4 + len].to_vec()).unwrap();
                    break (head, body);
                }
            };
            if head.starts_with("GET /tor/server/d/") {
                let answer = match &kept {
                    Some(d) => format!("HTTP/1.0 200 OK\r\n\r\n{d}"),
                    None => "HTTP/1.0 404 Not found\r\n\r\n".to_owned(),
                };
                s.write_all(answer.as_bytes()).await.unwrap();
                continue;
            }
            assert!(head.starts_with("POST /tor/ HTTP/1.0\r\n"), "{head}");
            seen.lock().unwrap().push(body.clone());
            let (answer, keep) = answers[uploads.min(answers.len() - 1)];
            uploads += 1;
            if keep {
                kept = Some(body);
            }
            s.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    (addr, bodies)
}

fn authority(nickname: &str, dir_addr: SocketAddr) -> Authority {
    Authority {
        nickname: nickname.into(),
        v3ident: "0000000000000000000000000000000000000000".parse().unwrap(),
        dir_addr,
    }
}

fn info(published: SystemTime, bandwidth: u32) -> DescriptorInfo {
    DescriptorInfo {
        nickname: "braidpub".into(),
        address: Ipv4Addr::LOCALHOST,
        or_port: 9001,
        bandwidth: Bandwidth {
            average: bandwidth,
            burst: bandwidth,
            observed: 0,
        },
        platform: "Braid 0.1.0 on Linux".into(),
        proto: "Link=4-5".into(),
        exit_policy: ExitPolicy::reject_all(),
        contact: None,
        hidden_service_dir: false,
        tunnelled_dir_server: false,
        uptime: 0,
        published,
    }
}

async fn next_event(rx: &mut mpsc::Receiver<PublishEvent>) -> PublishEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within 10 s")
        .expect("publisher running")
}

#[tokio::test]
async fn refusals_are_retried_until_every_authority_accepts() {
    let (good, good_seen) = fake_authority(vec![("HTTP/1.0 200 [None]\r\n\r\n", true)]).await;
    // Refuses, then drops it silently with a 200 (as C-tor does with a
    // descriptor it cannot parse), then keeps it.
    let (picky, picky_seen) = fake_authority(vec![
        (
            "HTTP/1.0 400 Looks like your keypair has changed? This authority previously recorded another.\r\n\r\n",
            false,
        ),
        ("HTTP/1.0 200 [None]\r\n\r\n", false),
        ("HTTP/1.0 200 OK\r\nX-Descriptor-Not-New: Yes\r\n\r\n", true),
    ])
    .await;
    // Port 1: no test server can be there (a port freed here could be
    // taken by a test running beside this one).
    let dead: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();

    let keys = RelayKeys::generate(&mut rand::rng(), SystemTime::now()).unwrap();
    let config = ScheduleConfig {
        republish_after: Duration::from_secs(3600),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
    };
    let auths = vec![
        authority("good", good),
        authority("picky", picky),
        authority("dead", dead),
    ];
    let mut publisher = Publisher::new(auths, config, Duration::from_secs(5));
    let changed = Arc::new(Notify::new());
    let bandwidth = Arc::new(Mutex::new(100_000_u32));
    let (tx, mut rx) = mpsc::channel(64);
    let (c, bw) = (Arc::clone(&changed), Arc::clone(&bandwidth));
    let task = tokio::spawn(async move {
        let make = |t| build_descriptor(&keys.descriptor_keys(), &info(t, *bw.lock().unwrap()));
        publisher.run(make, &c, Some(tx)).await
    });

    let PublishEvent::Built { digest, .. } = next_event(&mut rx).await else {
        panic!("first event is the build");
    };
    /// Status and whether the authority kept it, or the error.
    type Seen = Result<(u16, bool), String>;
    let mut answers: Vec<(String, Seen)> = Vec::new();
    // The good and the picky authority hold it after two refusals; the
    // dead one keeps failing, retried every 200 ms at most.
    while answers
        .iter()
        .filter(|(a, r)| a == "picky" && matches!(r, Ok((200, true))))
        .count()
        == 0
        || answers.iter().filter(|(a, _)| a == "dead").count() < 4
    {
        if let PublishEvent::Answer { authority, result } = next_event(&mut rx).await {
            answers.push((authority, result.map(|r| (r.answer.status, r.stored))));
        }
    }
    let statuses = |who: &str| -> Vec<Seen> {
        answers
            .iter()
            .filter(|(a, _)| a == who)
            .map(|(_, r)| r.clone())
            .collect()
    };
    assert_eq!(statuses("good"), [Ok((200, true))]);
    assert_eq!(
        statuses("picky"),
        [Ok((400, false)), Ok((200, false)), Ok((200, true))]
    );
    assert!(statuses("dead").iter().all(|r| r.is_err()), "{answers:?}");
    let first = good_seen.lock().unwrap()[0].clone();
    assert!(first.starts_with("router braidpub 127.0.0.1 9001 0 0\n"));
    assert!(picky_seen.lock().unwrap().iter().all(|b| *b == first));

    // A change: a fresh descriptor goes to every authority again.
    *bandwidth.lock().unwrap() = 200_000;
    changed.notify_one();
    loop {
        if let PublishEvent::Built { digest: d2, .. } = next_event(&mut rx).await {
            assert_ne!(d2, digest);
            break;
        }
    }
    let wait = Instant::now();
    while good_seen.lock().unwrap().len() < 2 || picky_seen.lock().unwrap().len() < 4 {
        assert!(
            wait.elapsed() < Duration::from_secs(10),
            "new descriptor not uploaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(good_seen.lock().unwrap()[1].contains("\nbandwidth 200000 200000 0\n"));
    task.abort();
}

#[tokio::test]
async fn a_failing_build_stops_the_publisher_with_its_error() {
    let mut publisher = Publisher::new(
        Vec::new(),
        ScheduleConfig::default(),
        Duration::from_secs(1),
    );
    let e = publisher
        .run(
            |_| Err(DescriptorError::Keys("expired".into())),
            &Notify::new(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e, DescriptorError::Keys("expired".into()));
}

#[test]
fn answers_are_described_with_their_reason() {
    let refused = UploadResult {
        answer: HttpAnswer {
            status: 400,
            reason: "Missing TAP key in descriptor".into(),
            headers: vec![],
            body: " x ".into(),
        },
        stored: false,
    };
    assert!(!refused.accepted());
    assert_eq!(
        refused.describe(),
        "400 Missing TAP key in descriptor; body: \"x\""
    );
    let ok = HttpAnswer {
        status: 200,
        reason: "OK".into(),
        headers: vec![("X-Descriptor-Not-New".into(), "Yes".into())],
        body: String::new(),
    };
    let kept = UploadResult {
        answer: ok.clone(),
        stored: true,
    };
    assert!(kept.accepted());
    assert!(kept.describe().contains("not new"));
    let dropped = UploadResult {
        answer: ok,
        stored: false,
    };
    assert!(!dropped.accepted());
    assert!(
        dropped.describe().contains("dropped"),
        "{}",
        dropped.describe()
    );
}
