//! `braid proxy` against a private network of real C-tor relays on
//! 127.0.0.1: downloads checked by SHA-256, concurrent streams, a refused
//! port, a middle relay killed under a live stream, and a clean SIGTERM.
//! One network serves every check; it is stopped by pid at the end (and by
//! the handle's Drop if a check fails).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_client::socks::{IsolationKey, SocksServer};
use braid_client::{ClientConfig, TorClient};
use braid_testnet::download::fetch_file;
use braid_testnet::process::read_records;
use braid_testnet::{Manifest, NetworkConfig, launcher, socks};
use common::{test_dir, wait_for_exits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
const BASE: u16 = 28000;

/// A `braid proxy` child process, killed on drop if still running.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `braid proxy` and wait for its "SOCKS5 proxy on" line.
fn start_proxy(toml: &Path, socks: SocketAddr) -> (Proxy, Vec<String>) {
    let mut child = Command::new(BRAID)
        .args(["-v", "proxy", "--config"])
        .arg(toml)
        .args(["--socks", &socks.to_string()])
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
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("braid proxy did not become ready");
        let ready = line.starts_with("SOCKS5 proxy on");
        lines.push(line);
        if ready {
            break;
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (Proxy(child), lines)
}

fn stop_pid(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braid_proxy_carries_streams_through_c_tor_relays() {
    let mut config = NetworkConfig::new(test_dir("proxy"), BRAID);
    config.base_port = BASE;
    config.client = false;
    config.timeout = Duration::from_secs(180);
    let network = tokio::time::timeout(Duration::from_secs(240), launcher::up(&config))
        .await
        .expect("network start-up took more than 240 s")
        .unwrap();
    let dir = network.dir().to_path_buf();
    let manifest = network.manifest().clone();
    let toml = dir.join("network.toml");
    let files = manifest.fileserver.address;
    let socks_addr: SocketAddr = format!("127.0.0.1:{}", BASE + 500).parse().unwrap();

    // 1. The CLI proxy: ready, with preemptive circuits.
    let started = Instant::now();
    let (mut proxy, lines) = start_proxy(&toml, socks_addr);
    println!(
        "braid proxy ready in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("circuit ready:"))
            .count()
            >= 1
    );

    wait_for_exits(files, socks_addr).await;

    // 2. 50 MB, byte-identical.
    let d = fetch_file(files, Some((socks_addr, None)), 50_000_000, 7)
        .await
        .unwrap();
    println!(
        "50 MB through braid proxy: {:.2} MB/s, first byte after {} ms",
        d.mb_per_s(),
        d.time_to_first_byte.as_millis()
    );

    // 3. 16 concurrent streams on the shared circuits, each checked.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        tasks.push(tokio::spawn(async move {
            fetch_file(
                files,
                Some((socks_addr, None)),
                2_000_000 + i * 1000,
                100 + i,
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    println!(
        "16 concurrent 2 MB streams in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // 4. A port nothing listens on: the exit's END becomes the matching
    //    SOCKS reply within a second. C-tor 0.4.9 exits report a refused
    //    loopback connect as END reason MISC (the asynchronous connect's
    //    error is read from errno, which is 0 by then), and MISC maps to
    //    SOCKS "general failure" (1), as in C-tor's own client.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let t = Instant::now();
    let err = socks::connect(socks_addr, closed, None).await.unwrap_err();
    let took = t.elapsed();
    println!("refused port: {err} after {} ms", took.as_millis());
    assert!(err.to_string().contains("failed: general failure"), "{err}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // 5. SIGTERM: the proxy stops cleanly.
    stop_pid(proxy.0.id(), "-TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = proxy.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "proxy ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(tokio::net::TcpStream::connect(socks_addr).await.is_err());

    // 6. A middle relay killed under a live stream.
    middle_killed_mid_stream(&dir, &manifest, &toml).await;

    network.down().unwrap();
}

/// In-process client: open a stream on its own circuit (isolation key),
/// read part of a large download, kill that circuit's middle relay: the
/// stream ends with an error (not EOF, not a hang), and a new stream works.
async fn middle_killed_mid_stream(dir: &Path, manifest: &Manifest, toml: &Path) {
    let mut cfg = ClientConfig::load(toml).unwrap();
    cfg.cache_dir = dir.join("braid-cache-inproc");
    let client = TorClient::bootstrap(cfg, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let server = SocksServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let socks_addr = server.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(Arc::new(client.clone()), async {
        let _ = stop_rx.await;
    }));

    let files = manifest.fileserver.address;
    let size: u64 = 500_000_000;
    let mut stream = socks::connect(socks_addr, files, Some(("victim", "x")))
        .await
        .unwrap();
    let req = format!("GET /bytes/{size}?seed=3 HTTP/1.0\r\nHost: {files}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    while got < 2_000_000 {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        got += n;
    }
    let key = IsolationKey {
        username: b"victim".to_vec(),
        password: b"x".to_vec(),
    };
    let tunnels = client.tunnels_for(&key);
    assert_eq!(tunnels.len(), 1);
    let middle = tunnels[0].info().legs[0][1].clone();
    let record = read_records(dir)
        .unwrap()
        .into_iter()
        .find(|r| r.name == middle)
        .unwrap();
    println!("killing {middle} (pid {}) after {got} bytes", record.pid);
    stop_pid(record.pid, "-KILL");

    let t = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(got),
                Ok(n) => got += n,
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the stream hung after its middle relay died");
    println!(
        "stream after the kill: {end:?} after {} ms, {got} of {size} bytes",
        t.elapsed().as_millis()
    );
    let err = end.expect_err("a cut stream must end in an error, not EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!((got as u64) < size);

    // A new stream, on a new circuit, works.
    let d = fetch_file(
        files,
        Some((socks_addr, Some(("after", "x")))),
        5_000_000,
        4,
    )
    .await
    .unwrap();
    println!("new stream after the kill: {:.2} MB/s", d.mb_per_s());
    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
}
