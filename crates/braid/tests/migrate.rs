//! Live stream migration (Braid proposal 001 §4) over a private network
//! of C-tor relays with a Braid exit (`braidexit0`, which advertises
//! `BraidMigrate=1`): a 40 MB download through `braid proxy` (single
//! circuits pinned to the Braid exit) is moved mid-transfer to another
//! tunnel with `braid streams migrate`, then back, and arrives
//! byte-identical (SHA-256). `braid streams` shows the stream on its new
//! tunnel each time. Then policy (c): with a dirtiness and
//! a rotation delay of 2 s each (an in-process client), a paused download
//! is moved off its tunnel to a fresh one to the same exit, the old one
//! closes, and the download completes byte-identical. Then, through a
//! second proxy with Conflux on (its
//! own state directory), a new key's first download ends on the Conflux
//! set, directly or moved there from a single circuit by policy (a)
//! (20 MB, SHA-256 checked; the run prints which).
//!
//! A second test: ten concurrent 20 MB downloads of
//! one isolation key, paused mid-transfer, move from their single circuit
//! to a Conflux set (`braid streams migrate APP --to conflux`) and back
//! (`--to single`), each SHA-256 checked.
//!
//! Every process is stopped by PID (the proxy on drop, the network by its
//! records). Run alone: `flock /tmp/braid-net.lock cargo test --locked -p
//! braid --test migrate`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use braid_client::{ClientConfig, TorClient};
use braid_dir::restrict::NodeRestrictions;
use braid_testnet::launcher::{self, Network};
use braid_testnet::{NetworkConfig, socks};
use common::{
    InProcessSocks, file_body_ok, init_test_log, read_rest, stop_network, test_dir, wait_for_exits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
/// First port of this test's network (each test has its own block,
/// all below 32768, where Linux's ephemeral ports begin).
const BASE: u16 = 16000;
/// The ten-stream test's network.
const BASE_TEN: u16 = 17000;

/// The tests of this file take turns (cargo runs them at once): two
/// networks with their downloads on two cores made both slower than
/// their bounds allow. Each also has its own port block.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `braid proxy` child process, killed (by its PID) on drop.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `braid proxy` with Conflux sets of `legs` legs ("0": single
/// circuits) to braidexit0, with its metrics port, and wait for its
/// "SOCKS5 proxy on" line.
fn start_proxy(toml: &Path, socks: SocketAddr, metrics: SocketAddr, legs: &str) -> Proxy {
    let mut child = Command::new(BRAID)
        .args(["-v", "proxy", "--config"])
        .arg(toml)
        .args(["--socks", &socks.to_string()])
        .args(["--metrics", &metrics.to_string()])
        .args(["--conflux-legs", legs, "--exit-nodes", "braidexit0"])
        // Each proxy its own state (guards) and cache.
        .arg("--state")
        .arg(toml.with_file_name(format!("state-{}", socks.port())))
        .arg("--cache")
        .arg(toml.with_file_name(format!("cache-{}", socks.port())))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  proxy: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("braid proxy did not become ready");
        if line.starts_with("SOCKS5 proxy on") {
            break;
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Proxy(child)
}

/// `braid streams ARGS --metrics ADDR`: its stdout; panics if it fails.
/// `braid status` of the proxy (for failure messages).
fn braid_status(metrics: SocketAddr) -> String {
    let out = Command::new(BRAID)
        .args(["status", "--metrics", &metrics.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn braid_streams(metrics: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(BRAID)
        .arg("streams")
        .args(args)
        .args(["--metrics", &metrics.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "braid streams {args:?}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The stream that has read more than `at_least` bytes, as `braid
/// streams --json` lists it.
fn our_stream(metrics: SocketAddr, at_least: u64) -> serde_json::Value {
    find_stream(metrics, at_least)
        .unwrap_or_else(|json| panic!("no stream past {at_least} bytes in {json}"))
}

/// [`our_stream`], or the listing without it. In the instant of its
/// handover (the application's end travelling from one tunnel's task to
/// the other's) a moving stream is on neither tunnel's list: a CI run
/// listed `[]` then.
fn find_stream(metrics: SocketAddr, at_least: u64) -> Result<serde_json::Value, String> {
    let json = braid_streams(metrics, &["--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    list.into_iter()
        .find(|s| s["bytes_read"].as_u64().unwrap_or(0) >= at_least)
        .ok_or(json)
}

/// This file's network (6 C-tor relays, a C-tor exit, `braidexit0`) in
/// `test_dir(name)`, and a `braid proxy` on single circuits pinned to
/// `braidexit0` (its SOCKS and metrics ports), its exits ready.
async fn network_and_proxy(name: &str, base: u16) -> (Network, SocketAddr, SocketAddr, Proxy) {
    let mut config = NetworkConfig::new(test_dir(name), BRAID);
    config.base_port = base;
    config.client = false;
    config.relays = 6;
    config.exits = 1;
    config.braid_exits = 1;
    config.timeout = Duration::from_secs(180);
    let start = Instant::now();
    let network = tokio::time::timeout(Duration::from_secs(240), launcher::up(&config))
        .await
        .expect("network start-up took more than 240 s")
        .unwrap_or_else(|e| panic!("{e}"));
    println!("network up in {:.1} s", start.elapsed().as_secs_f64());
    let files = network.manifest().fileserver.address;
    let socks_addr: SocketAddr = format!("127.0.0.1:{}", base + 500).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", base + 502).parse().unwrap();
    let proxy = start_proxy(
        &network.dir().join("network.toml"),
        socks_addr,
        metrics,
        "0",
    );
    wait_for_exits(files, socks_addr).await;
    (network, socks_addr, metrics, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_through_braid_proxy_moves_between_tunnels_mid_transfer() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (network, socks_addr, metrics, proxy) = network_and_proxy("migrate", BASE).await;
    let dir = network.dir().to_path_buf();
    let files = network.manifest().fileserver.address;

    let size: u64 = 40_000_000;
    let seed = 31;
    let mut stream = socks::connect(socks_addr, files, Some(("migrate", "x")))
        .await
        .unwrap();
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {files}\r\n\r\n",
        braid_testnet::fileserver::file_path(size, seed)
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut got: Vec<u8> = Vec::with_capacity(usize::try_from(size).unwrap() + 4096);
    let mut buf = vec![0_u8; 64 * 1024];
    let started = Instant::now();
    let mut moves = Vec::new();
    for (k, at) in [5_000_000_usize, 20_000_000].into_iter().enumerate() {
        while got.len() < at {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "ended early at {}", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        let before = our_stream(metrics, 1_000_000);
        assert_eq!(before["migratable"], true, "{before}");
        assert_eq!(before["moves"].as_u64(), Some(k as u64), "{before}");
        let app = before["app"].as_u64().unwrap();
        let from = before["tunnel"].as_u64().unwrap();
        println!("{}", braid_streams(metrics, &[]).trim_end());
        let asked = Instant::now();
        let said = braid_streams(metrics, &["migrate", &app.to_string()]);
        println!("{}", said.trim_end());
        assert!(
            said.contains(&format!("from tunnel {from} to tunnel")),
            "{said}"
        );
        // Read on while it moves; it shows on its new tunnel once the
        // exit's MARK came.
        let moved_at = got.len();
        let after = loop {
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                .await
                .expect("the download stalled during the move")
                .unwrap();
            assert!(n > 0, "ended during the move");
            got.extend_from_slice(&buf[..n]);
            let s = find_stream(metrics, 1_000_000);
            if let Ok(s) = &s
                && s["moves"].as_u64() == Some(k as u64 + 1)
            {
                break s.clone();
            }
            assert!(
                asked.elapsed() < Duration::from_secs(30),
                "never handed over: {s:?}"
            );
        };
        assert_eq!(after["app"].as_u64(), Some(app));
        assert_ne!(after["tunnel"].as_u64(), Some(from), "{after}");
        moves.push((moved_at, asked.elapsed(), after["tunnel"].as_u64().unwrap()));
    }
    read_rest(
        &mut stream,
        &mut got,
        Duration::from_secs(180),
        "after the moves",
    )
    .await;
    let took = started.elapsed();
    assert!(
        file_body_ok(&got, size, seed, "the download"),
        "the file's SHA-256"
    );
    for (at, handover, to) in &moves {
        println!(
            "moved at {at} bytes to tunnel {to}: on its new tunnel {} ms after `braid streams migrate`",
            handover.as_millis()
        );
    }
    println!(
        "{size} bytes in {:.1} s ({:.2} MB/s) with {} moves, SHA-256 checked",
        took.as_secs_f64(),
        size as f64 / took.as_secs_f64() / 1e6,
        moves.len()
    );
    drop(stream);
    drop(proxy);
    long_lived_stream_rotates(&dir, files).await;

    // A proxy with Conflux on: a new key's first stream ends on the set,
    // directly or, by policy (a) (Braid proposal 001 §4), after starting
    // on a single circuit to the set's exit while the set builds.
    let socks2: SocketAddr = format!("127.0.0.1:{}", BASE + 510).parse().unwrap();
    let metrics2: SocketAddr = format!("127.0.0.1:{}", BASE + 512).parse().unwrap();
    let proxy2 = start_proxy(&dir.join("network.toml"), socks2, metrics2, "2");
    let size2: u64 = 20_000_000;
    let mut s2 = socks::connect(socks2, files, Some(("meanwhile", "x")))
        .await
        .unwrap();
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {files}\r\n\r\n",
        braid_testnet::fileserver::file_path(size2, 32)
    );
    s2.write_all(req.as_bytes()).await.unwrap();
    let mut got2: Vec<u8> = Vec::new();
    let mut on_set = None;
    let t2 = Instant::now();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), s2.read(&mut buf))
            .await
            .expect("the second download stalled")
            .unwrap();
        if n == 0 {
            break;
        }
        got2.extend_from_slice(&buf[..n]);
        if on_set.is_none() && got2.len() > 1_000_000 {
            // (Absent in the instant of a policy (a) handover.)
            if let Ok(s) = find_stream(metrics2, 1_000_000)
                && s["kind"] == "conflux"
            {
                on_set = Some((t2.elapsed(), got2.len(), s["moves"].as_u64()));
            }
        }
    }
    assert!(
        file_body_ok(&got2, size2, 32, "the second download"),
        "the second download's SHA-256"
    );
    let (when, at, moves) = on_set.expect("the stream never reached the Conflux set");
    println!(
        "policy (a): the stream on the Conflux set {} ms after its request, {at} bytes in, moves {moves:?}; {size2} bytes, SHA-256 checked",
        when.as_millis()
    );
    drop(s2);
    drop(proxy2);
    stop_network(network);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_downloads_move_from_a_circuit_to_a_set_and_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (network, socks_addr, metrics, proxy) = network_and_proxy("migrate-ten", BASE_TEN).await;
    let files = network.manifest().fileserver.address;
    ten_streams_to_a_set_and_back(files, socks_addr, metrics).await;
    drop(proxy);
    stop_network(network);
}

/// Each of the ten downloads: far more than a paused stream's buffers
/// hold past its pause (the proxy's 3.2 MB, loopback TCP's up to 6 MB
/// receive and 4 MB send): a 6 MB download paused at 2 MB could finish at
/// the exit into them, and a finished stream has nothing left to move
/// (seen once in 7 runs).
const TEN_SIZE: usize = 20_000_000;
/// Bytes each of the ten streams reads before each move waits.
const TEN_PAUSES: [usize; 2] = [1_500_000, 3_000_000];

/// Ten concurrent 20 MB downloads of one isolation key start on its single
/// circuit; each stops reading at 1.5 MB (its data still flowing into the
/// proxy's buffers, then held back by flow control) while `braid streams
/// migrate APP --to conflux` moves all ten to a Conflux set built for the
/// first; at 3 MB `--to single` moves them back to the circuit; every
/// download is byte-identical (SHA-256).
async fn ten_streams_to_a_set_and_back(
    files: SocketAddr,
    socks_addr: SocketAddr,
    metrics: SocketAddr,
) {
    let (phase_tx, phase_rx) = tokio::sync::watch::channel(0_usize);
    let (at_tx, mut at_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize)>();
    let started = Instant::now();
    let readers: Vec<_> = (0..10_u64)
        .map(|i| {
            let mut phase = phase_rx.clone();
            let at_tx = at_tx.clone();
            tokio::spawn(async move {
                let mut s = socks::connect(socks_addr, files, Some(("ten", "x")))
                    .await
                    .map_err(|e| format!("stream {i}: {e}"))?;
                let req = format!(
                    "GET {} HTTP/1.0\r\nHost: {files}\r\n\r\n",
                    braid_testnet::fileserver::file_path(TEN_SIZE as u64, 60 + i)
                );
                s.write_all(req.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut got = Vec::with_capacity(TEN_SIZE + 4096);
                let mut buf = vec![0_u8; 32 * 1024];
                for (k, pause) in TEN_PAUSES.into_iter().enumerate() {
                    while got.len() < pause {
                        let n = s
                            .read(&mut buf)
                            .await
                            .map_err(|e| format!("stream {i}: {e}"))?;
                        if n == 0 {
                            return Err(format!("stream {i} ended at {} bytes", got.len()));
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let _ = at_tx.send((usize::try_from(i).unwrap_or(0), k));
                    phase
                        .wait_for(|p| *p > k)
                        .await
                        .map_err(|_| "the test ended".to_owned())?;
                }
                s.read_to_end(&mut got)
                    .await
                    .map_err(|e| format!("stream {i}: {e}"))?;
                Ok::<_, String>((i, got))
            })
        })
        .collect();
    drop(at_tx);
    for (k, (to, kind)) in [("conflux", "conflux"), ("single", "single")]
        .into_iter()
        .enumerate()
    {
        // All ten paused at this point of their downloads.
        let mut paused = 0;
        while paused < 10 {
            let (_, at) = tokio::time::timeout(Duration::from_secs(120), at_rx.recv())
                .await
                .expect("the ten streams took more than 120 s to reach a pause")
                .expect("a stream failed");
            assert_eq!(at, k);
            paused += 1;
        }
        let list = ten_streams(metrics);
        assert_eq!(
            list.len(),
            10,
            "{list:?}\nall: {}\ntunnels: {}",
            braid_streams(metrics, &[]),
            braid_status(metrics)
        );
        if k == 0 {
            assert!(list.iter().all(|s| s["kind"] == "single"), "{list:?}");
        }
        let from: Vec<u64> = list.iter().map(|s| s["tunnel"].as_u64().unwrap()).collect();
        let asked = Instant::now();
        for s in &list {
            let app = s["app"].as_u64().unwrap().to_string();
            let said = braid_streams(metrics, &["migrate", &app, "--to", to]);
            assert!(said.contains("to tunnel"), "{said}");
            if s == &list[0] {
                println!("ten streams: {}", said.trim_end());
            }
        }
        // Each shows on a tunnel of the asked kind once its handover is done.
        let now = loop {
            let list = ten_streams(metrics);
            if list.len() == 10 && list.iter().all(|s| s["kind"] == kind) {
                break list;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(30),
                "not all on a {kind} tunnel after 30 s: {list:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let to_tunnels: Vec<u64> = now.iter().map(|s| s["tunnel"].as_u64().unwrap()).collect();
        println!(
            "ten streams: moved from tunnels {from:?} to {to_tunnels:?} ({kind}) in {} ms",
            asked.elapsed().as_millis()
        );
        assert!(
            now.iter()
                .all(|s| s["moves"].as_u64() == Some(k as u64 + 1)),
            "{now:?}"
        );
        phase_tx.send_replace(k + 1);
    }
    for r in readers {
        let (i, got) = tokio::time::timeout(Duration::from_secs(180), r)
            .await
            .expect("a download hung after the moves")
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let what = format!("download {i}");
        assert!(
            file_body_ok(&got, TEN_SIZE as u64, 60 + i, &what),
            "{what}'s SHA-256"
        );
    }
    println!(
        "ten streams: 10 x {TEN_SIZE} bytes moved to a set and back in {:.1} s, SHA-256 checked",
        started.elapsed().as_secs_f64()
    );
}

/// The ten streams of [`ten_streams_to_a_set_and_back`] that `braid
/// streams --json` lists (not the earlier 40 MB download, if it lingers).
fn ten_streams(metrics: SocketAddr) -> Vec<serde_json::Value> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&braid_streams(metrics, &["--json"])).unwrap();
    list.into_iter()
        .filter(|s| s["bytes_read"].as_u64().unwrap_or(0) <= TEN_SIZE as u64 + 4096)
        .collect()
}

/// Policy (c) (Braid proposal 001 §4.4): a client whose tunnels take new
/// streams for 2 s and keep long-lived ones 2 s longer. A 10 MB download
/// pauses at 1 MB; its tunnel leaves the pool, then its stream moves to a
/// fresh tunnel to the same exit; the old tunnel closes (no stream, no
/// handle); the download completes byte-identical.
async fn long_lived_stream_rotates(dir: &Path, files: SocketAddr) {
    init_test_log();
    let mut cfg = ClientConfig::load(&dir.join("network.toml")).unwrap();
    cfg.cache_dir = dir.join("braid-cache-rotate");
    cfg.conflux_legs = None;
    cfg.max_circuit_dirtiness = Duration::from_secs(2);
    cfg.rotate_streams_after = Some(Duration::from_secs(2));
    cfg.nodes = NodeRestrictions::parse(&[], &[], &["braidexit0"]).unwrap();
    let client = TorClient::bootstrap(cfg, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let socks = InProcessSocks::serve(&client).await;
    let socks_addr = socks.addr;
    let size: u64 = 10_000_000;
    let mut s = socks::connect(socks_addr, files, Some(("rotate", "x")))
        .await
        .unwrap();
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {files}\r\n\r\n",
        braid_testnet::fileserver::file_path(size, 71)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0_u8; 32 * 1024];
    while got.len() < 1_000_000 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "ended early");
        got.extend_from_slice(&buf[..n]);
    }
    let ours = |list: Vec<braid_client::client::StreamView>| {
        list.into_iter().find(|v| v.stream.bytes_read >= 1_000_000)
    };
    let before = ours(client.streams().await).expect("the stream is listed");
    assert_eq!(before.stream.moves, 0);
    let after = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(v) = ours(client.streams().await)
            && v.stream.moves == 1
        {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not rotated after 30 s"
        );
    };
    let moved_at = started.elapsed();
    assert_ne!(after.tunnel, before.tunnel, "on a fresh tunnel");
    assert_eq!(after.exit, before.exit, "to the same exit");
    // The old tunnel closes: no stream and no handle are left on it.
    let closed = loop {
        if !client
            .live_tunnels()
            .iter()
            .any(|t| t.id() == before.tunnel)
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "tunnel {} still open",
            before.tunnel
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    s.read_to_end(&mut got).await.unwrap();
    assert!(
        file_body_ok(&got, size, 71, "the rotated download"),
        "the rotated download's SHA-256"
    );
    println!(
        "rotation: the stream moved from tunnel {} to tunnel {} {} ms after it began \
         (dirtiness 2 s + 2 s), the old tunnel gone at {} ms; {size} bytes, SHA-256 checked",
        before.tunnel,
        after.tunnel,
        moved_at.as_millis(),
        closed.as_millis()
    );
    socks.stop().await;
}
