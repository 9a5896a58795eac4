//! `braid proxy` against a private network of real C-tor relays on
//! 127.0.0.1: downloads checked by SHA-256, concurrent streams, a refused
//! port, curl through SOCKS4, SOCKS4a and HTTP CONNECT (byte-identical),
//! `.onion` and `.exit` refused in milliseconds with no circuit, a reverse
//! lookup at an exit, a middle relay killed under a live stream, and a
//! clean SIGTERM.
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
use std::time::{Duration, Instant};

use braid_client::socks::IsolationKey;
use braid_client::{ClientConfig, TorClient};
use braid_testnet::download::fetch_file;
use braid_testnet::process::read_records;
use braid_testnet::{Manifest, NetworkConfig, launcher, socks};
use common::{InProcessSocks, test_dir, wait_for_exits};
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

/// Start `braid proxy` (with an HTTP CONNECT listener on `http`) and wait
/// for its "SOCKS5 proxy on" line.
fn start_proxy(toml: &Path, socks: SocketAddr, http: SocketAddr) -> (Proxy, Vec<String>) {
    let mut child = Command::new(BRAID)
        .args(["-v", "proxy", "--config"])
        .arg(toml)
        .args(["--socks", &socks.to_string()])
        .args(["--http-connect", &http.to_string()])
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
    let http_addr: SocketAddr = format!("127.0.0.1:{}", BASE + 501).parse().unwrap();

    // 1. The CLI proxy: ready, with preemptive circuits.
    let started = Instant::now();
    let (mut proxy, lines) = start_proxy(&toml, socks_addr, http_addr);
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

    // 4b. curl through SOCKS4a, SOCKS4 and HTTP CONNECT; names refused.
    curl_downloads(files, socks_addr, http_addr, closed).await;
    names_refused_at_once(socks_addr).await;

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
    std::fs::remove_dir_all(&dir).unwrap();
}

/// In-process client: open a stream on its own circuit (isolation key),
/// read part of a large download, kill that circuit's middle relay: the
/// stream ends with an error (not EOF, not a hang), and a new stream works.
async fn middle_killed_mid_stream(dir: &Path, manifest: &Manifest, toml: &Path) {
    let mut cfg = ClientConfig::load(toml).unwrap();
    cfg.cache_dir = dir.join("braid-cache-inproc");
    // Single circuits: this part is about a circuit's relay dying under a
    // stream, which a Conflux set (the default) would survive.
    cfg.conflux_legs = None;
    let client = TorClient::bootstrap(cfg, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let socks_srv = InProcessSocks::serve(&client).await;
    let socks_addr = socks_srv.addr;

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

    primary_guard_stopped(dir, &client, socks_addr, files).await;

    no_circuit_for_refused_names(&client, socks_addr).await;
    socks_srv.stop().await;
}

/// `curl` with `args`, its output checked against the file server's
/// `size` bytes for `seed`; how long it took.
async fn curl_file(args: &[&str], files: SocketAddr, size: u64, seed: u64) -> Duration {
    let url = format!(
        "http://{files}{}",
        braid_testnet::fileserver::file_path(size, seed)
    );
    let t = Instant::now();
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "60"])
        .args(args)
        .arg(&url)
        .output()
        .await
        .expect("curl (scripts/ensure-deps.sh installs it)");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = vec![0u8; usize::try_from(size).unwrap()];
    braid_testnet::fileserver::fill(seed, 0, &mut want);
    assert_eq!(out.stdout.len(), want.len(), "curl {args:?}: length");
    assert!(out.stdout == want, "curl {args:?}: the bytes differ");
    took
}

/// curl fails with `args`; its stderr.
async fn curl_fails(args: &[&str], url: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .arg(url)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "curl {args:?} {url} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Downloads through curl's SOCKS4a, SOCKS4 and HTTP CONNECT (`-p -x`)
/// clients, byte-identical; C-tor's answers to a refused CONNECT and to a
/// plain HTTP proxy request.
async fn curl_downloads(
    files: SocketAddr,
    socks: SocketAddr,
    http: SocketAddr,
    closed: SocketAddr,
) {
    let size = 5_000_000;
    let socks = socks.to_string();
    let proxy = format!("http://{http}");
    for (name, args, seed) in [
        ("SOCKS4a", vec!["--socks4a", socks.as_str()], 21),
        ("SOCKS4", vec!["--socks4", socks.as_str()], 22),
        ("HTTP CONNECT", vec!["-p", "-x", proxy.as_str()], 23),
        (
            "HTTP CONNECT with credentials",
            vec!["-p", "-x", proxy.as_str(), "-U", "alice:secret"],
            24,
        ),
    ] {
        let took = curl_file(&args, files, size, seed).await;
        println!(
            "curl {name}: 5 MB byte-identical in {} ms",
            took.as_millis()
        );
    }
    // CONNECT to a port nothing listens on: the exit's END (MISC from a
    // C-tor exit, see above) is a 502.
    let err = curl_fails(&["-p", "-x", &proxy], &format!("http://{closed}/")).await;
    println!("curl HTTP CONNECT to a closed port: {}", err.trim());
    assert!(err.contains("502"), "{err}");
    // A plain HTTP proxy request is not CONNECT: 405.
    let out = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-x", &proxy])
        .arg(format!("http://{files}/"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
}

/// The Tor Project's onion address.
const ONION: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

/// A SOCKS5 request (`cmd`) for `host` with username/password `user`/x;
/// the reply's code and how long the answer took.
async fn socks5_code(socks: SocketAddr, cmd: u8, host: &str, user: &str) -> (u8, Duration) {
    let t = Instant::now();
    let mut c = tokio::net::TcpStream::connect(socks).await.unwrap();
    let mut m = vec![5, 1, 2, 1, u8::try_from(user.len()).unwrap()];
    m.extend_from_slice(user.as_bytes());
    m.extend_from_slice(&[1, b'x']);
    m.extend_from_slice(&[5, cmd, 0, 3, u8::try_from(host.len()).unwrap()]);
    m.extend_from_slice(host.as_bytes());
    m.extend_from_slice(&443u16.to_be_bytes());
    c.write_all(&m).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut reply))
        .await
        .expect("no answer")
        .unwrap();
    // Method choice, auth status, then VER REP.
    assert_eq!(reply[..5], [5, 2, 1, 0, 5], "{reply:?}");
    (reply[5], t.elapsed())
}

/// `.onion` and `.exit` names are answered in milliseconds by the CLI
/// proxy: "host unreachable" and "general failure", as C-tor answers.
async fn names_refused_at_once(socks: SocketAddr) {
    for (host, code) in [
        (ONION.to_owned(), 4),
        (format!("www.{ONION}"), 4),
        ("bad.onion".to_owned(), 1),
        ("www.example.com.exitrelay.exit".to_owned(), 1),
    ] {
        let (got, took) = socks5_code(socks, 1, &host, "names").await;
        println!("{host}: reply {got} after {} us", took.as_micros());
        assert_eq!(got, code, "{host}");
        assert!(took < Duration::from_millis(100), "{host}: {took:?}");
    }
}

/// In-process: a refused `.onion` name takes no tunnel for its isolation
/// key (no circuit was asked for, so no BEGIN reached any exit), while a
/// reverse lookup does go to an exit: C-tor exits refuse reverse lookups
/// of internal addresses, so 127.0.0.1 gets "host unreachable" from it.
async fn no_circuit_for_refused_names(client: &TorClient, socks: SocketAddr) {
    let key = |user: &str| IsolationKey {
        username: user.as_bytes().to_vec(),
        password: b"x".to_vec(),
    };
    let (code, took) = socks5_code(socks, 1, ONION, "onion").await;
    assert_eq!(code, 4);
    assert!(took < Duration::from_millis(100), "{took:?}");
    let (code, _) = socks5_code(socks, 0xf0, ONION, "onion").await;
    assert_eq!(code, 4);
    assert!(
        client.tunnels_for(&key("onion")).is_empty(),
        "a tunnel for .onion"
    );

    let (code, took) = socks5_code(socks, 0xf1, "127.0.0.1", "ptr").await;
    println!(
        "RESOLVE_PTR 127.0.0.1: reply {code} after {} ms",
        took.as_millis()
    );
    // C-tor exits refuse reverse lookups of internal addresses; whether the
    // refusal reaches us as "host unreachable" (4) or "general failure"
    // (1) depends on the exit's RESOLVED/END (seen both in CI).
    assert!(matches!(code, 1 | 4), "the exit's refusal: {code}");
    assert_eq!(client.tunnels_for(&key("ptr")).len(), 1, "asked at an exit");
}

/// Issue 16 (guard-spec §4.6-§4.7, §4.10): the client's primary guard is
/// stopped while the client runs; the next new stream succeeds through
/// another guard, without a restart, and later streams keep away from it.
async fn primary_guard_stopped(
    dir: &Path,
    client: &TorClient,
    socks_addr: SocketAddr,
    files: SocketAddr,
) {
    let key = IsolationKey {
        username: b"after".to_vec(),
        password: b"x".to_vec(),
    };
    let tunnels = client.tunnels_for(&key);
    assert_eq!(tunnels.len(), 1);
    let guard = tunnels[0].info().legs[0][0].clone();
    let record = read_records(dir)
        .unwrap()
        .into_iter()
        .find(|r| r.name == guard)
        .unwrap();
    println!("stopping the primary guard {guard} (pid {})", record.pid);
    stop_pid(record.pid, "-KILL");

    let t = Instant::now();
    for (i, user) in ["guard-a", "guard-b"].into_iter().enumerate() {
        // One retry, printed: once in a CI run (2026-12-07) the first
        // stream after the kill failed at once with no log line from the
        // client; not yet diagnosed (issue 16). The next streams must work.
        let mut tries = 0;
        let d = loop {
            tries += 1;
            match fetch_file(
                files,
                Some((socks_addr, Some((user, "x")))),
                1_000_000,
                40 + i as u64,
            )
            .await
            {
                Ok(d) => break d,
                Err(e) if tries == 1 => {
                    println!("RETRY: stream {i} after the guard stopped failed once: {e}");
                }
                Err(e) => panic!("stream {i} after the guard stopped, twice: {e}"),
            }
        };
        let key = IsolationKey {
            username: user.as_bytes().to_vec(),
            password: b"x".to_vec(),
        };
        let used = client.tunnels_for(&key)[0].info().legs[0][0].clone();
        println!(
            "stream {i} after the guard stopped: {:.2} MB/s through {used}, {} ms after the stop",
            d.mb_per_s(),
            t.elapsed().as_millis()
        );
        assert_ne!(used, guard, "a new circuit went through the stopped guard");
    }
}
