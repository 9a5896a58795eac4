//! A private network bootstrapped the public way (issue 16): Braid asks
//! the fallback directories that `network.toml` lists over BEGIN_DIR on
//! one-hop circuits, then its guards as directory caches, and the
//! authorities' DirPorts only when none of those answers. Every
//! authority's `dir_port` is pointed at a test server that answers 503 and
//! counts requests: the directory bootstraps cold and warm, bodies come
//! compressed from the C-tor caches and are taken, a consensus diff is
//! fetched after two consensus periods, `braid proxy` bootstraps and
//! carries a download, and the test server sees no request at all. Then
//! two fallbacks that lie about their identity are refused, each in turn,
//! and only then are the (real) authorities asked.
//!
//! Fixed ports from 35000: run with
//! `flock /tmp/braid-net.lock cargo test --locked -p braid --test dir_public_way`.

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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use braid_client::{BootstrapReport, ClientConfig, DirDriver};
use braid_dir::fetch::Encoding;
use braid_dir::{DirEvent, DocKind, SourceKind};
use braid_testnet::download::fetch_file;
use braid_testnet::{NetworkConfig, launcher};
use common::{init_test_log, test_dir, wait_for_exits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
const BASE: u16 = 15000;

/// A DirPort that answers every request 503 and counts them.
struct Busy {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl Busy {
    async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = [0_u8; 4096];
                    if let Ok(n) = s.read(&mut buf).await
                        && n > 0
                    {
                        count.fetch_add(1, Ordering::SeqCst);
                        let line = String::from_utf8_lossy(&buf[..n]);
                        println!("  503 server: {}", line.lines().next().unwrap_or(""));
                    }
                    let _ = s
                        .write_all(b"HTTP/1.0 503 Directory busy, try again later\r\n\r\n")
                        .await;
                });
            }
        });
        Self { addr, requests }
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// `network.toml` with every authority's `dir_port` replaced by `port`,
/// and the cache in `cache`.
fn with_dir_ports(text: &str, port: u16, cache: &Path) -> String {
    let mut out: String = text
        .lines()
        .map(|l| {
            if l.starts_with("dir_port = ") {
                format!("dir_port = {port}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    out.push_str(&format!(
        "\n[braid]\ncache_dir = {:?}\n",
        cache.display().to_string()
    ));
    out
}

async fn bootstrap(config: &ClientConfig) -> (DirDriver, BootstrapReport) {
    let mut driver = DirDriver::new(config, true).unwrap();
    let report = driver
        .bootstrap(Duration::from_secs(60), |ev| match ev {
            DirEvent::Progress(p) => println!("  braid: {p}"),
            DirEvent::FetchFailed { source, error, .. } => {
                println!("  braid: fetch from {source} failed: {error}");
            }
            _ => {}
        })
        .await
        .unwrap();
    (driver, report)
}

fn figures(what: &str, r: &BootstrapReport) {
    let f = &r.figures;
    println!(
        "{what}: {:.2} s, {} requests, {} bytes read ({} decoded); answers: {} from fallbacks, {} from caches, {} from authorities; encodings {:?}; {} diffs",
        r.elapsed.as_secs_f64(),
        r.fetches,
        f.wire_bytes,
        f.body_bytes,
        f.from_fallbacks,
        f.from_caches,
        f.from_authorities,
        f.by_encoding,
        f.diffs
    );
}

/// A `braid proxy` child process, killed on drop.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(toml: &Path, socks: SocketAddr) -> Proxy {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_network_bootstraps_the_public_way() {
    init_test_log();
    let mut config = NetworkConfig::new(test_dir("dir-public-way"), BRAID);
    config.base_port = BASE;
    config.client = false;
    config.timeout = Duration::from_secs(180);
    let network = tokio::time::timeout(Duration::from_secs(240), launcher::up(&config))
        .await
        .expect("network start-up took more than 240 s")
        .unwrap();
    let dir = network.dir().to_path_buf();
    let manifest = network.manifest().clone();
    assert_eq!(manifest.fallbacks.len(), manifest.relays.len());
    let text = std::fs::read_to_string(dir.join("network.toml")).unwrap();
    assert_eq!(text.matches("[[fallback]]").count(), manifest.relays.len());

    let busy = Busy::start(SocketAddr::from(([127, 0, 0, 1], BASE + 900))).await;
    let toml = dir.join("public-way.toml");
    std::fs::write(
        &toml,
        with_dir_ports(&text, busy.addr.port(), &dir.join("cache-public-way")),
    )
    .unwrap();
    let client = ClientConfig::load(&toml).unwrap();
    assert_eq!(client.dir.fallbacks.len(), manifest.relays.len());
    assert!(client.dir.fallbacks.iter().all(|f| f.ed_id.is_some()));

    // 1. Cold: everything from fallbacks and caches, compressed.
    let (mut driver, cold) = bootstrap(&client).await;
    figures("cold bootstrap", &cold);
    assert_eq!(cold.progress.percent, 100);
    let f = &cold.figures;
    assert_eq!(f.from_authorities, 0);
    assert!(f.from_fallbacks >= 1, "{f:?}");
    assert!(f.compressed >= 1 && f.wire_bytes < f.body_bytes, "{f:?}");
    assert!(
        f.by_encoding.iter().any(|(e, _)| *e != Encoding::Identity),
        "{f:?}"
    );
    assert!(driver.onehop().open_channels() >= 1);
    assert!(!driver.state().caches().is_empty());
    assert_eq!(busy.count(), 0);

    // 2. Two consensus periods (a consensus every 10 s): newer ones come
    //    from the caches as diffs from ours, and are taken.
    let first = driver.netdir().unwrap().lifetime().valid_after;
    let mut diffs = 0;
    let mut adopted = 0;
    let mut cache_answers = 0;
    driver
        .keep_fresh(Duration::from_secs(45), |ev| match ev {
            DirEvent::Fetched {
                kind: DocKind::Consensus,
                source,
                diff,
                wire_bytes,
                body_bytes,
                encoding,
            } => {
                println!("  consensus from {source}: {wire_bytes} bytes {encoding}, {body_bytes} decoded, diff: {diff}");
                diffs += usize::from(*diff);
                cache_answers += usize::from(source.kind() == SourceKind::Cache);
            }
            DirEvent::NewConsensus { .. } => adopted += 1,
            _ => {}
        })
        .await;
    println!(
        "refresh over 45 s: {adopted} consensuses adopted, {diffs} as diffs, {cache_answers} answers from caches"
    );
    assert!(adopted >= 2, "{adopted}");
    assert!(diffs >= 1, "no diff in 45 s");
    assert!(driver.netdir().unwrap().lifetime().valid_after > first);
    assert_eq!(busy.count(), 0);

    // 3. Warm: the cache, then what changed.
    let (_, warm) = bootstrap(&client).await;
    figures("warm bootstrap", &warm);
    assert!(warm.from_cache.contains(&DocKind::Microdesc), "{warm:?}");
    assert_eq!(warm.figures.from_authorities, 0);

    // 4. `braid proxy` on the same file: bootstraps, carries a download.
    let socks: SocketAddr = SocketAddr::from(([127, 0, 0, 1], BASE + 901));
    let proxy_cache = dir.join("cache-proxy");
    let proxy_toml = dir.join("public-way-proxy.toml");
    std::fs::write(
        &proxy_toml,
        with_dir_ports(&text, busy.addr.port(), &proxy_cache),
    )
    .unwrap();
    let started = Instant::now();
    let proxy = start_proxy(&proxy_toml, socks);
    println!(
        "braid proxy ready in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let files = manifest.fileserver.address;
    wait_for_exits(files, socks).await;
    let d = fetch_file(files, Some((socks, None)), 5_000_000, 3)
        .await
        .unwrap();
    println!("5 MB through braid proxy: {:.2} MB/s", d.mb_per_s());
    drop(proxy);
    assert_eq!(busy.count(), 0, "the authorities' DirPorts were asked");

    // 5. Fallbacks that lie: each claims the other's identity. Both are
    //    refused at the link handshake, and only then are the (real)
    //    authorities asked.
    lying_fallbacks_are_refused(&text, &dir).await;

    network.down().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn lying_fallbacks_are_refused(text: &str, dir: &Path) {
    let mut config = ClientConfig::parse(text, &dir.join("network.toml")).unwrap();
    config.cache_dir = dir.join("cache-liars");
    // Two, so the consensus schedule's backoff (1 s, then up to 3 s)
    // keeps the test short.
    config.dir.fallbacks.truncate(2);
    let n = config.dir.fallbacks.len();
    let ids: Vec<_> = config
        .dir
        .fallbacks
        .iter()
        .map(|f| (f.id, f.ed_id))
        .collect();
    for (i, f) in config.dir.fallbacks.iter_mut().enumerate() {
        (f.id, f.ed_id) = ids[(i + 1) % n];
    }
    let mut driver = DirDriver::new(&config, false).unwrap();
    let mut refused = Vec::new();
    let report = driver
        .bootstrap(Duration::from_secs(90), |ev| {
            if let DirEvent::FetchFailed { source, error, .. } = ev {
                println!("  liar: {source}: {error}");
                if source.kind() == SourceKind::Fallback {
                    refused.push(error.clone());
                }
            }
        })
        .await
        .unwrap();
    figures("with lying fallbacks", &report);
    assert!(refused.len() >= n, "{refused:?}");
    assert!(
        refused.iter().all(|e| e.contains("identity")),
        "{refused:?}"
    );
    assert!(report.figures.from_authorities >= 1);
    assert_eq!(report.figures.from_fallbacks, 0);
}
