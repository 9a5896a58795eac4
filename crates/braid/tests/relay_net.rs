//! Braid relays in the private network (issue 13, part 2): `braid testnet
//! up` with `braid_relays = 1, braid_exits = 1` beside a small C-tor part.
//! The C-tor authorities must list `braidexit0` with Exit, Running, Valid,
//! Fast and Stable and `braidrelay0` with Guard (and the others), from the
//! consensus an authority serves on its DirPort; then the C-tor client
//! downloads through `braidrelay0` as its middle and as its first hop, and
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

use braid_client::socks::{IsolationKey, SocksServer};
use braid_client::{ClientConfig, TorClient};
use braid_dir::restrict::NodeRestrictions;
use braid_testnet::braid_relay::{BRAID_EXIT_PROTO, BRAID_PROTO};
use braid_testnet::consensus::{self, RouterEntry};
use braid_testnet::control::ControlConn;
use braid_testnet::ctor_conflux::parse_circuit_status;
use braid_testnet::download::fetch_file;
use braid_testnet::launcher::{self, Network};
use braid_testnet::plan::Software;
use braid_testnet::process::{is_alive, read_records};
use braid_testnet::{Manifest, NetworkConfig};
use common::test_dir;

static NETWORK_LOCK: Mutex<()> = Mutex::new(());

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
/// First port of the listing test's network (other tests use 21000 to
/// 32999).
const BASE_LISTING: u16 = 33000;
/// First port of the exit test's network.
const BASE_EXIT: u16 = 33500;
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

/// The authorities list both Braid relays with the flags the issue asks,
/// network.toml marks them; the C-tor client downloads 50 MB with
/// braidrelay0 as its middle and 50 MB with it as its first hop; `status`
/// sees them, `down` stops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorities_list_braid_relays_and_ctor_circuits_cross_them() {
    let _guard = lock();
    let config = config("relay-net-listing", BASE_LISTING);
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
    assert_flags(&exit, &["Exit", "Running", "Valid", "Fast", "Stable"]);
    assert!(!exit.has_flag("Guard"), "{:?}", exit.flags);
    assert_flags(&middle, &["Guard", "Running", "Valid", "Fast", "Stable"]);
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

    // The C-tor client's circuits through braidrelay0 as middle, then as
    // first hop (see `Client::first_hop_on`), to the C-tor exit.
    let mut client = Client::new(&manifest).await;
    let braid_relay = client.fp("braidrelay0");
    client
        .pin("ExitNodes=exit0 MiddleNodes=braidrelay0 StrictNodes=1")
        .await;
    let path = client.download("braid-middle", 2).await;
    assert_eq!(path.len(), 3, "{path:?}");
    assert_eq!(path[1], braid_relay, "{path:?}");
    client.first_hop_on("braidrelay0").await;
    let path = client.download("braid-first-hop", 3).await;
    assert_eq!(path.first(), Some(&braid_relay), "{path:?}");
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

    /// Makes `nickname` the client's first hop: `UseEntryGuards 0` with
    /// every other Guard-flagged relay excluded. Not `EntryNodes`: C-tor
    /// samples guards only among relays with the V2Dir flag
    /// (`node_is_possible_guard` wants `node_is_dir`), which a relay gets
    /// only by advertising `tunnelled-dir-server`, i.e. serving BEGIN_DIR,
    /// which the Braid relay does not; without guards, the first hop is
    /// any relay with the Guard flag (`choose_good_entry_server`,
    /// `CRN_NEED_GUARD`).
    async fn first_hop_on(&mut self, nickname: &str) {
        let others: Vec<&str> = self
            .manifest
            .relays
            .iter()
            .filter(|r| r.guard && r.nickname != nickname)
            .map(|r| r.nickname.as_str())
            .collect();
        let settings = format!(
            "ExitNodes=exit0 MiddleNodes= UseEntryGuards=0 ExcludeNodes={} StrictNodes=1",
            others.join(",")
        );
        self.pin(&settings).await;
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
    let server = SocksServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let socks = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(std::sync::Arc::new(client.clone()), async {
        let _ = stopped.await;
    }));
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
    let _ = stop.send(());
    let _ = serving.await;
}
