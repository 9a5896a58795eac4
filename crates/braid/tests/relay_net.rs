//! Braid relays in the private network (issue 13, part 2): `braid testnet
//! up` with `braid_relays = 1, braid_exits = 1` beside a small C-tor part.
//! The C-tor authorities must list `braidexit0` with Exit, Running, Valid,
//! Fast and Stable and `braidrelay0` with Guard (and the others), from the
//! consensus an authority serves on its DirPort, both with V2Dir (they are
//! directory caches); the C-tor client, started with entry guards on and
//! `braidrelay0` its only guard, bootstraps and fetches its directory
//! through it over BEGIN_DIR; the consensus `braidrelay0` serves over
//! BEGIN_DIR is the authority's byte for byte; then the C-tor client
//! downloads through `braidrelay0` as its first hop and as its middle, and
//! (`ctor_client_exits_through_braid_exit`, which needs the relay's exit
//! role) through `braidexit0` as its exit, 50 MB each, byte-identical
//! (SHA-256), each path read back from the client's control port; a port
//! the Braid exit's policy rejects gives END EXITPOLICY. Every process is
//! stopped by PID.
//!
//! Tests that start a network hold `NETWORK_LOCK`, so one network runs at a
//! time (2 cores); each has its own directory and ports.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]
// The lock only keeps networks from running side by side: holding it across
// awaits is the point.
#![allow(clippy::await_holding_lock, reason = "serialises whole tests")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use braid_client::channel::Channel;
use braid_client::socks::IsolationKey;
use braid_client::{ClientConfig, TorClient};
use braid_core::channel::ExpectedIdentity;
use braid_core::circuit::{CircEvent, CircParams, ClientCircuit};
use braid_core::ids::{HopNum, StreamId};
use braid_dir::Relay;
use braid_dir::restrict::NodeRestrictions;
use braid_relay::http::request;
use braid_testnet::braid_relay::{BRAID_EXIT_PROTO, BRAID_PROTO};
use braid_testnet::consensus::{self, RouterEntry};
use braid_testnet::control::ControlConn;
use braid_testnet::ctor_conflux::parse_circuit_status;
use braid_testnet::download::fetch_file;
use braid_testnet::launcher::{self, Network};
use braid_testnet::plan::Software;
use braid_testnet::process::{is_alive, read_records};
use braid_testnet::{Manifest, NetworkConfig};
use common::{InProcessSocks, test_dir};
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginDir, Data, Sendme};

static NETWORK_LOCK: Mutex<()> = Mutex::new(());

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
/// First port of the listing test's network (each test has its own block,
/// all below 32768, where Linux's ephemeral ports begin).
const BASE_LISTING: u16 = 19000;
/// First port of the exit test's network.
const BASE_EXIT: u16 = 19500;
/// braidrelay0's metrics in the listing test (past the network's ports).
const LISTING_METRICS: u16 = BASE_LISTING + 400;
/// Bytes of each download (the acceptance's 50 MB).
const SIZE: u64 = 50_000_000;

fn lock() -> std::sync::MutexGuard<'static, ()> {
    NETWORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small C-tor part (3 authorities, 2 relays, 1 exit, the client without
/// Conflux: these tests pin single circuits) and one Braid relay and exit.
fn config(name: &str, base_port: u16) -> NetworkConfig {
    let mut config = NetworkConfig::new(test_dir(name), BRAID);
    config.base_port = base_port;
    config.relays = 2;
    config.exits = 1;
    config.braid_relays = 1;
    config.braid_exits = 1;
    config.client_conflux = false;
    config.timeout = Duration::from_secs(150);
    config
}

async fn up(config: &NetworkConfig) -> Network {
    let start = Instant::now();
    let network = tokio::time::timeout(Duration::from_secs(180), launcher::up(config))
        .await
        .expect("network start-up took more than 180 s")
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "network with Braid relays up in {:.1} s (consensus and client included)",
        start.elapsed().as_secs_f64()
    );
    network
}

fn relay<'a>(manifest: &'a Manifest, nickname: &str) -> &'a braid_testnet::manifest::RelayEntry {
    manifest
        .relays
        .iter()
        .find(|r| r.nickname == nickname)
        .unwrap_or_else(|| panic!("{nickname} not in network.toml"))
}

/// Every process recorded in `dir` is gone.
fn assert_all_stopped(dir: &Path) {
    let alive: Vec<_> = read_records(dir)
        .unwrap()
        .into_iter()
        .filter(is_alive)
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
}

fn assert_flags(entry: &RouterEntry, flags: &[&str]) {
    for f in flags {
        assert!(
            entry.has_flag(f),
            "{} lacks {f}: {:?}",
            entry.nickname,
            entry.flags
        );
    }
}

/// The authorities list both Braid relays with the flags the issue asks
/// (V2Dir too: they serve the directory), network.toml marks them; the
/// C-tor client, started fresh with `UseEntryGuards 1` and `EntryNodes
/// braidrelay0`, bootstraps (the launcher waits for 100 %) fetching its
/// directory from braidrelay0 over BEGIN_DIR (its metrics count the
/// answers) and downloads 50 MB with it as its first hop; braidrelay0's
/// consensus over BEGIN_DIR is the authority's byte for byte; then 50 MB
/// with braidrelay0 as the middle; `status` sees them, `down` stops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorities_list_braid_relays_and_ctor_circuits_cross_them() {
    let _guard = lock();
    let mut config = config("relay-net-listing", BASE_LISTING);
    // C-tor samples guards only among relays with V2Dir
    // (`node_is_possible_guard`): braidrelay0 must be a directory cache.
    config.client_torrc = vec!["UseEntryGuards 1".into(), "EntryNodes braidrelay0".into()];
    let metrics = SocketAddr::from(([127, 0, 0, 1], LISTING_METRICS));
    config.set_braid_relay_option("braidrelay0", "metrics", metrics.to_string());
    let network = up(&config).await;
    let manifest = network.manifest().clone();
    let dir = network.dir().to_path_buf();

    // network.toml: software per relay, no ControlPort for Braid relays.
    assert_eq!(manifest.relays.len(), 5);
    for r in &manifest.relays {
        let braid = r.nickname.starts_with("braid");
        let want = if braid {
            Software::Braid
        } else {
            Software::Tor
        };
        assert_eq!(r.software, want, "{}", r.nickname);
        assert_eq!(r.control_port == 0, braid, "{}", r.nickname);
    }
    let text = std::fs::read_to_string(dir.join("network.toml")).unwrap();
    assert_eq!(text.matches("software = \"braid\"").count(), 2, "{text}");
    assert_eq!(text.matches("software = \"tor\"").count(), 3, "{text}");

    // The consensus auth0 serves on its DirPort.
    let auth0 = &manifest.authorities[0];
    let doc = consensus::fetch(
        SocketAddr::from((auth0.address, auth0.dir_port)),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let entries = consensus::parse_entries(&doc);
    let find = |nickname: &str| {
        let fp = &relay(&manifest, nickname).fingerprint;
        entries
            .iter()
            .find(|e| &e.fingerprint == fp)
            .unwrap_or_else(|| panic!("{nickname} not in the consensus"))
            .clone()
    };
    let exit = find("braidexit0");
    let middle = find("braidrelay0");
    println!("braidexit0: {:?} pr {}", exit.flags, exit.protocols);
    println!("braidrelay0: {:?} pr {}", middle.flags, middle.protocols);
    assert_flags(
        &exit,
        &["Exit", "Running", "Valid", "Fast", "Stable", "V2Dir"],
    );
    assert!(!exit.has_flag("Guard"), "{:?}", exit.flags);
    assert_flags(
        &middle,
        &["Guard", "Running", "Valid", "Fast", "Stable", "V2Dir"],
    );
    assert!(!middle.has_flag("Exit"), "{:?}", middle.flags);
    for e in [&exit, &middle] {
        let proto = if e.nickname == "braidexit0" {
            BRAID_EXIT_PROTO
        } else {
            BRAID_PROTO
        };
        assert_eq!(e.protocols, proto, "{}", e.nickname);
        assert!(!e.has_flag("HSDir"), "{}: {:?}", e.nickname, e.flags);
        assert_eq!(e.or_port, relay(&manifest, &e.nickname).or_port);
    }
    // Measured bandwidths from the bandwidth file, like the C-tor relays'.
    let w = |nickname: &str| weight_line(&doc, &relay(&manifest, nickname).fingerprint);
    let ctor = w("relay0").expect("relay0 has a w line");
    assert!(!ctor.contains("Unmeasured"), "{ctor}");
    for nickname in ["braidexit0", "braidrelay0"] {
        assert_eq!(w(nickname).as_ref(), Some(&ctor), "{nickname}");
    }

    // The C-tor client's guard is braidrelay0 (EntryNodes, entry guards
    // on): its first hop, to the C-tor exit.
    let mut client = Client::new(&manifest).await;
    let braid_relay = client.fp("braidrelay0");
    client.pin("ExitNodes=exit0 StrictNodes=1").await;
    let path = client.download("braid-first-hop", 3).await;
    assert_eq!(path.first(), Some(&braid_relay), "{path:?}");
    // It fetched its directory from braidrelay0 over BEGIN_DIR: the
    // microdescriptors at bootstrap, the consensus as each one expires
    // (10 s votes), as a diff from the one it holds (dir-spec §4.5: it
    // names it in X-Or-Diff-From-Consensus). Nothing else asks braidrelay0
    // for them (the C-tor relays are caches that fetch from the
    // authorities).
    let answers = wait_for_dir_answers(metrics, &["consensus-diff", "microdescs"]).await;
    println!("braidrelay0 answered over BEGIN_DIR: {answers:?}");
    let client_log = std::fs::read_to_string(dir.join("nodes/client/tor.log")).unwrap_or_default();
    assert!(
        !client_log.contains("Could not apply consensus diff"),
        "the C-tor client refused a diff of braidrelay0's:\n{}",
        client_log
            .lines()
            .filter(|l| l.contains("diff"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Over BEGIN_DIR ourselves: the consensus is the authority's.
    let auth0_dir = SocketAddr::from((auth0.address, auth0.dir_port));
    begin_dir_serves_the_authoritys_documents(&dir, auth0_dir).await;

    // braidrelay0 as the middle, behind a C-tor guard.
    let other_guard = manifest
        .relays
        .iter()
        .find(|r| r.guard && r.software == Software::Tor)
        .expect("a C-tor guard")
        .nickname
        .clone();
    client
        .pin(&format!(
            "EntryNodes={other_guard} ExitNodes=exit0 MiddleNodes=braidrelay0 StrictNodes=1"
        ))
        .await;
    let path = client.download("braid-middle", 2).await;
    assert_eq!(path.len(), 3, "{path:?}");
    assert_eq!(path[1], braid_relay, "{path:?}");
    drop(client);

    // `status` knows them and finds nothing missing.
    let status = launcher::status(&dir).await.unwrap();
    let (listed, problems) = status.consensus.expect("auth0 answers");
    assert_eq!(listed, 8, "3 authorities + 5 relays");
    assert!(problems.is_empty(), "{problems:?}");
    for name in ["braidrelay0", "braidexit0"] {
        let p = status
            .processes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} not recorded"));
        assert!(p.alive, "{name} not running");
    }

    let stopped = network.down().unwrap();
    assert_eq!(
        stopped, 10,
        "helper, 3 authorities, 3 C-tor relays, 2 Braid, client"
    );
    assert_all_stopped(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `w` line of the consensus entry with RSA fingerprint `fp` (hex).
fn weight_line(doc: &str, fp: &str) -> Option<String> {
    let mut in_entry = false;
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("r ") {
            in_entry = rest
                .split(' ')
                .nth(1)
                .and_then(consensus::decode_base64)
                .is_some_and(|id| id.iter().map(|b| format!("{b:02X}")).collect::<String>() == fp);
        } else if in_entry && line.starts_with("w ") {
            return Some(line.to_string());
        }
    }
    None
}

/// braidrelay0's count of 200 answers per document kind named in `docs`,
/// once each is at least 1 (polled for 90 s).
async fn wait_for_dir_answers(metrics: SocketAddr, docs: &[&str]) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = request(
            metrics,
            "GET",
            "/metrics",
            None,
            1 << 20,
            Duration::from_secs(5),
        )
        .await
        .map(|a| a.body)
        .unwrap_or_default();
        let counts: Vec<(String, u64)> = docs
            .iter()
            .map(|doc| {
                let key = format!("braid_relay_dir_answers_total{{doc=\"{doc}\",status=\"200\"}} ");
                let n = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&key))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                (doc.to_string(), n as u64)
            })
            .collect();
        if counts.iter().all(|(_, n)| *n > 0) {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "braidrelay0 answered no BEGIN_DIR request for some of {docs:?} in 90 s: {counts:?}\n{}",
            text.lines()
                .filter(|l| l.starts_with("braid_relay_dir"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Over BEGIN_DIR to braidrelay0 (a one-hop circuit, as C-tor clients
/// fetch from their directory guard): the microdesc consensus is the one
/// auth0 serves on its DirPort, byte for byte (asked as C-tor asks, with
/// `.z` and the authorities' fingerprint prefixes); a microdescriptor it
/// lists and the authorities' certificates are served too.
async fn begin_dir_serves_the_authoritys_documents(dir: &Path, auth0: SocketAddr) {
    let mut cfg = ClientConfig::load(&dir.join("network.toml")).unwrap();
    cfg.cache_dir = dir.join("braid-cache-begin-dir");
    let client = TorClient::bootstrap(cfg, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let netdir = client.netdir().expect("a directory");
    let relay = netdir
        .relays()
        .into_iter()
        .find(|r| r.nickname == "braidrelay0")
        .expect("braidrelay0 in the Braid client's directory");
    let fps: Vec<String> = ClientConfig::load(&dir.join("network.toml"))
        .unwrap()
        .dir
        .authority_ids()
        .iter()
        .map(|id| id.to_string()[..6].to_string())
        .collect();
    let url = format!(
        "/tor/status-vote/current/consensus-microdesc/{}.z",
        fps.join("+")
    );
    let path = "/tor/status-vote/current/consensus-microdesc";
    let fetch_auth = || async {
        request(auth0, "GET", path, None, 16 << 20, Duration::from_secs(10))
            .await
            .unwrap()
            .body
    };
    // The consensus changes every 10 s and braidrelay0 fetches each new
    // one a few seconds after it is out: compare with auth0's before and
    // after.
    let deadline = Instant::now() + Duration::from_secs(60);
    let consensus = loop {
        let before = fetch_auth().await;
        let (status, body) = begin_dir_get(&relay, &url).await;
        let after = fetch_auth().await;
        assert!(status.starts_with("HTTP/1.0 200 OK"), "{status}");
        let body = String::from_utf8(body).unwrap();
        if body == before || body == after {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "braidrelay0's consensus over BEGIN_DIR is neither of auth0's:\n{}",
            body.lines().take(6).collect::<Vec<_>>().join("\n")
        );
    };
    println!(
        "braidrelay0 over BEGIN_DIR: the consensus ({} bytes) is auth0's, byte for byte",
        consensus.len()
    );
    // A diff from that consensus to the next (`/diff/<HASH>/` URL, dir-spec
    // §4.5.2), once braidrelay0 has the next: it applies to the old one
    // (arti's applier, with the digest check) and gives auth0's.
    let from: String = braid_dir::fetch::diff::digest_as_signed(&consensus)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let diff_url = format!(
        "/tor/status-vote/current/consensus-microdesc/diff/{from}/{}.z",
        fps.join("+")
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = begin_dir_get(&relay, &diff_url).await;
        if status.starts_with("HTTP/1.0 304 ") {
            assert!(Instant::now() < deadline, "no newer consensus in 60 s");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        assert!(status.starts_with("HTTP/1.0 200 OK"), "{status}");
        let diff = String::from_utf8(body).unwrap();
        let next = braid_dir::fetch::diff::apply(&consensus, &diff).unwrap();
        let now_auth = fetch_auth().await;
        // valid-after, the 4th line.
        let va = |c: &str| c.lines().nth(3).unwrap_or_default().to_owned();
        assert!(
            va(&next) > va(&consensus),
            "the diff gives no newer consensus"
        );
        assert!(
            next == now_auth || va(&next) < va(&now_auth),
            "the diff gives neither auth0's consensus nor an older one"
        );
        println!(
            "braidrelay0 over BEGIN_DIR: a diff of {} bytes to the next consensus ({} bytes)",
            diff.len(),
            next.len()
        );
        break;
    }
    let md = consensus
        .lines()
        .find_map(|l| l.strip_prefix("m "))
        .expect("an m line");
    let (status, body) = begin_dir_get(&relay, &format!("/tor/micro/d/{md}.z")).await;
    assert!(status.starts_with("HTTP/1.0 200 OK"), "{status}");
    assert!(
        body.starts_with(b"onion-key\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, body) = begin_dir_get(&relay, "/tor/keys/all").await;
    assert!(status.starts_with("HTTP/1.0 200 OK"), "{status}");
    let certs = String::from_utf8(body).unwrap();
    assert_eq!(
        certs.matches("dir-key-certificate-version").count(),
        3,
        "{certs}"
    );
    let (status, _) = begin_dir_get(&relay, "/tor/server/all").await;
    assert!(status.starts_with("HTTP/1.0 404 "), "{status}");
}

/// `GET path` over a BEGIN_DIR stream on a one-hop circuit to `relay`
/// (braid-client's channel, braid-core's client circuit): the status line
/// and the body. Stream SENDMEs every 50 DATA cells (tor-spec §7.4).
async fn begin_dir_get(relay: &Relay, path: &str) -> (String, Vec<u8>) {
    let target = braid_client::hops::hop_target(relay, false).expect("keys for braidrelay0");
    let expected = ExpectedIdentity {
        rsa: target.rsa_id,
        ed25519: Some(target.ed_id),
    };
    let (chan, _reactor) = Channel::connect(
        SocketAddr::V4(relay.addr),
        expected,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let (circ_id, mut io) = chan.open_circuit().await.unwrap();
    let mut circ = ClientCircuit::new(
        circ_id,
        target,
        CircParams::default(),
        &mut rand::rng(),
        Instant::now(),
    )
    .unwrap();
    let sid = StreamId::new(1).unwrap();
    let mut answer = Vec::new();
    let mut cells = 0_u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    'outer: loop {
        while let Some(cell) = circ.poll_transmit() {
            io.tx.send(cell).await.unwrap();
        }
        while let Some(ev) = circ.poll_event() {
            let now = Instant::now();
            match ev {
                CircEvent::Built { .. } => {
                    circ.send_relay(HopNum(0), Some(sid), BeginDir::default().into(), now)
                        .unwrap();
                }
                CircEvent::StreamMsg { msg, .. } => match msg {
                    AnyRelayMsg::Connected(_) => {
                        let req = format!("GET {path} HTTP/1.0\r\n\r\n");
                        let data = Data::new(req.as_bytes()).unwrap();
                        circ.send_relay(HopNum(0), Some(sid), data.into(), now)
                            .unwrap();
                    }
                    AnyRelayMsg::Data(d) => {
                        answer.extend_from_slice(d.as_ref());
                        cells += 1;
                        if cells.is_multiple_of(50) {
                            circ.send_relay(HopNum(0), Some(sid), Sendme::new_empty().into(), now)
                                .unwrap();
                        }
                    }
                    AnyRelayMsg::End(e) => {
                        assert_eq!(e.reason(), tor_cell::relaycell::msg::EndReason::DONE);
                        break 'outer;
                    }
                    other => panic!("{path}: unexpected {other:?}"),
                },
                other @ (CircEvent::BuildFailed { .. } | CircEvent::Closed { .. }) => {
                    panic!("{path}: {other:?}")
                }
                _ => {}
            }
        }
        while let Some(cell) = circ.poll_transmit() {
            io.tx.send(cell).await.unwrap();
        }
        let cell = tokio::time::timeout_at(deadline, io.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within 30 s"))
            .expect("the channel closed");
        circ.handle_cell(Instant::now(), cell).unwrap();
    }
    circ.close();
    while let Some(cell) = circ.poll_transmit() {
        let _ = io.tx.send(cell).await;
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let head_len = head.len() + 4;
    let status = head.lines().next().unwrap_or_default().to_string();
    // The body as its Content-Encoding says (deflate for `.z` URLs).
    let encoding = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Encoding: "))
        .and_then(braid_dir::fetch::Encoding::from_name)
        .unwrap_or(braid_dir::fetch::Encoding::Identity);
    let body = braid_dir::fetch::compress::decode(encoding, &answer[head_len..], 64 << 20)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    if path.ends_with(".z") && status.contains(" 200 ") {
        assert_eq!(encoding, braid_dir::fetch::Encoding::Deflate, "{head}");
    }
    (status, body)
}

/// The C-tor client's view: its control connection (STREAM events on) and
/// where to download from.
struct Client {
    ctl: ControlConn,
    socks: SocketAddr,
    files: SocketAddr,
    manifest: Manifest,
}

impl Client {
    async fn new(manifest: &Manifest) -> Client {
        let c = manifest.client.as_ref().expect("a C-tor client");
        let mut ctl = ControlConn::connect(
            SocketAddr::from(([127, 0, 0, 1], c.control_port)),
            &c.control_cookie,
        )
        .await
        .unwrap();
        ctl.set_events(&["STREAM"]).await.unwrap();
        Client {
            ctl,
            socks: manifest.client_socks().unwrap(),
            files: manifest.fileserver.address,
            manifest: manifest.clone(),
        }
    }

    /// Sets client options and abandons the circuits built before.
    async fn pin(&mut self, settings: &str) {
        self.ctl
            .command(&format!("SETCONF {settings}"))
            .await
            .unwrap();
        self.ctl.command("SIGNAL NEWNYM").await.unwrap();
        self.ctl.drain_events();
    }

    /// Opens a stream to `target` on isolation tag `tag` and returns the
    /// exit's END reason from the client's STREAM events (within 60 s).
    async fn refusal(&mut self, target: SocketAddr, tag: &str) -> String {
        let (socks, tag_owned) = (self.socks, tag.to_string());
        let attempt = tokio::spawn(async move {
            braid_testnet::socks::connect(socks, target, Some((&tag_owned, &tag_owned))).await
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let reason = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{tag}: no END within 60 s: {seen:#?}");
            let Some(ev) = self.ctl.next_event(left).await else {
                continue;
            };
            let line = ev.lines.first().cloned().unwrap_or_default();
            if line.contains(&format!(" {target} ")) {
                seen.push(line.clone());
                if let Some(r) = line
                    .split(' ')
                    .find_map(|w| w.strip_prefix("REMOTE_REASON="))
                {
                    break r.to_string();
                }
            }
        };
        attempt.abort();
        let states: Vec<&str> = seen.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        println!(
            "{tag}: stream to {target}: {} REMOTE_REASON={reason}",
            states.join(" ")
        );
        reason
    }

    fn fp(&self, nickname: &str) -> String {
        relay(&self.manifest, nickname).fingerprint.clone()
    }

    /// Downloads `SIZE` bytes (checked by SHA-256) on a fresh isolation
    /// tag; returns the path (fingerprints) of the circuit that carried it.
    async fn download(&mut self, tag: &str, seed: u64) -> Vec<String> {
        let start = Instant::now();
        let d = tokio::time::timeout(
            Duration::from_secs(120),
            fetch_file(self.files, Some((self.socks, Some((tag, tag)))), SIZE, seed),
        )
        .await
        .unwrap_or_else(|_| panic!("{tag}: download took more than 120 s"));
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                // What the client saw of the stream: the exit's END reason.
                let events: Vec<String> = self
                    .ctl
                    .drain_events()
                    .into_iter()
                    .filter_map(|e| e.lines.first().cloned())
                    .filter(|l| l.contains(&self.files.to_string()))
                    .collect();
                panic!("{tag}: {e}; the client's STREAM events: {events:#?}");
            }
        };
        assert_eq!(d.bytes, SIZE);
        let circ = self
            .ctl
            .drain_events()
            .iter()
            .filter_map(|e| e.lines.first())
            .find_map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                (w.first() == Some(&"STREAM") && w.get(2) == Some(&"SUCCEEDED"))
                    .then(|| w.get(3).and_then(|c| c.parse::<u64>().ok()))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("{tag}: no STREAM SUCCEEDED event"));
        let circuits = parse_circuit_status(&self.ctl.getinfo("circuit-status").await.unwrap());
        let path = circuits
            .iter()
            .find(|c| c.id == circ)
            .unwrap_or_else(|| panic!("{tag}: circuit {circ} gone"))
            .path
            .clone();
        let names: Vec<&str> = path
            .iter()
            .map(|fp| self.manifest.nickname_of(fp).unwrap_or("?"))
            .collect();
        println!(
            "{tag}: {} MB in {:.1} s ({:.1} MB/s, first byte {} ms, started {:.1} s ago) over {}, sha256 {}",
            d.bytes / 1_000_000,
            d.elapsed.as_secs_f64(),
            d.mb_per_s(),
            d.time_to_first_byte.as_millis(),
            start.elapsed().as_secs_f64(),
            names.join(" -> "),
            &d.sha256[..16]
        );
        path
    }
}

/// The C-tor client downloads 50 MB through `braidexit0` (ExitNodes,
/// StrictNodes) byte-identical, gets END EXITPOLICY for a port the Braid
/// exit's policy rejects and END NOROUTE for an address outside
/// 127.0.0.0/8 the policy accepts (`exit_connect_loopback_only`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctor_client_exits_through_braid_exit() {
    let _guard = lock();
    let mut config = config("relay-net-exit", BASE_EXIT);
    // A port on 127.0.0.1 that only the full policy rejects: the
    // microdescriptor's summary (ports only, `p accept 1-65535`) still
    // lets the client pick the exit for it.
    let rejected = BASE_EXIT + 999;
    config.braid_exit_policy = vec![
        format!("reject 127.0.0.1:{rejected}"),
        "accept 127.0.0.0/8:*".into(),
        "accept *:*".into(),
    ];
    let network = up(&config).await;
    let manifest = network.manifest().clone();
    let dir = network.dir().to_path_buf();
    let mut client = Client::new(&manifest).await;
    let braid_exit = client.fp("braidexit0");

    // 1. braidexit0 as the exit.
    client.pin("ExitNodes=braidexit0 StrictNodes=1").await;
    let path = client.download("braid-exit", 1).await;
    assert_eq!(path.last(), Some(&braid_exit), "{path:?}");

    // 2. The rejected port: the Braid exit answers END EXITPOLICY (the
    // client reports the exit's reason in its STREAM events).
    let reason = client
        .refusal(SocketAddr::from(([127, 0, 0, 1], rejected)), "rejected")
        .await;
    assert_eq!(reason, "EXITPOLICY");

    // 3. An address the policy accepts but that is not loopback (TEST-NET-1,
    // never routed): a testnet Braid exit refuses it without connecting.
    let reason = client
        .refusal(SocketAddr::from(([192, 0, 2, 1], 80)), "outside")
        .await;
    assert_eq!(reason, "NOROUTE");

    // 4. Braid's own client through a Braid first hop and a Braid exit.
    braid_client_through_braid_relays(&dir, &manifest).await;

    drop(client);
    let stopped = network.down().unwrap();
    assert_eq!(stopped, 10);
    assert_all_stopped(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Braid's client (in process, behind a SOCKS port) pinned to
/// braidrelay0 > relay1 > braidexit0: 20 MB byte-identical, and the
/// tunnel's path is the one asked for.
async fn braid_client_through_braid_relays(dir: &Path, manifest: &Manifest) {
    let mut cfg = ClientConfig::load(&dir.join("network.toml")).unwrap();
    cfg.cache_dir = dir.join("braid-cache-all-braid");
    cfg.conflux_legs = None;
    cfg.nodes = NodeRestrictions::parse(&["braidrelay0"], &["relay1"], &["braidexit0"]).unwrap();
    let client = TorClient::bootstrap(cfg, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let socks_srv = InProcessSocks::serve(&client).await;
    let socks = socks_srv.addr;
    let size = 20_000_000;
    let d = tokio::time::timeout(
        Duration::from_secs(120),
        fetch_file(
            manifest.fileserver.address,
            Some((socks, Some(("allbraid", "x")))),
            size,
            5,
        ),
    )
    .await
    .expect("the download through Braid relays took more than 120 s")
    .unwrap_or_else(|e| panic!("Braid client through Braid relays: {e}"));
    let key = IsolationKey {
        username: b"allbraid".to_vec(),
        password: b"x".to_vec(),
    };
    let tunnels = client.tunnels_for(&key);
    assert_eq!(tunnels.len(), 1);
    let legs = tunnels[0].info().legs.clone();
    println!(
        "Braid client via {:?}: {} bytes in {:.2} s ({:.2} MB/s), sha256 {}",
        legs[0],
        d.bytes,
        d.elapsed.as_secs_f64(),
        d.mb_per_s(),
        d.sha256
    );
    assert_eq!(legs[0], ["braidrelay0", "relay1", "braidexit0"], "{legs:?}");
    socks_srv.stop().await;
}
