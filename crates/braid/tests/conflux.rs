//! Braid's Conflux client against C-tor exits on a private network:
//!
//! 1. sets of 2 and 3 legs link with a real exit (its log says so), carry
//!    50 MB byte for byte with every leg used, take a 20 MB upload over
//!    every leg (put back in order by the exit), and carry 8 streams at once;
//! 2. a middle killed under an idle leg: the stream goes on over the other
//!    leg, and the set gets a replacement leg (a LINK with the set's nonce,
//!    which C-tor exits accept) that then carries data;
//! 3. a middle killed under the leg that carries the download: the stream
//!    ends with an error within seconds, and a new stream works on a new
//!    set.
//!
//! One network serves every check; it is stopped by pid at the end (and by
//! Drop on failure).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_client::socks::{IsolationKey, SocksServer};
use braid_client::tunnel::{TunnelHandle, TunnelReport};
use braid_client::{ClientConfig, TorClient};
use braid_testnet::download::{fetch_file, upload_file};
use braid_testnet::fileserver::{file_path, fill};
use braid_testnet::{NetworkConfig, launcher, socks};
use common::{init_test_log, kill_relay, test_dir, wait_for_exits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
const BASE: u16 = 29000;

/// An in-process Braid client with Conflux sets of `legs` legs behind a
/// SOCKS port.
struct Proxy {
    client: TorClient,
    socks: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Proxy {
    async fn start(dir: &Path, legs: usize, name: &str) -> Self {
        let mut cfg = ClientConfig::load(&dir.join("network.toml")).unwrap();
        cfg.cache_dir = dir.join(format!("braid-cache-{name}"));
        cfg.conflux_legs = Some(legs);
        let client = TorClient::bootstrap(cfg, Duration::from_secs(60), |_| {})
            .await
            .unwrap();
        let server = SocksServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let socks = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(Arc::new(client.clone()), async {
            let _ = stopped.await;
        }));
        Self {
            client,
            socks,
            stop: Some(stop),
            serving,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.serving.await.unwrap().unwrap();
    }

    fn tunnel(&self, key: &IsolationKey) -> TunnelHandle {
        let tunnels = self.client.tunnels_for(key);
        assert_eq!(tunnels.len(), 1, "one set per key");
        tunnels[0].clone()
    }
}

fn key(name: &str) -> IsolationKey {
    IsolationKey {
        username: name.as_bytes().to_vec(),
        password: b"x".to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braid_conflux_sets_link_with_c_tor_exits_and_survive_leg_loss() {
    init_test_log();
    let mut config = NetworkConfig::new(test_dir("conflux"), BRAID);
    config.base_port = BASE;
    config.client = false;
    // The exits' info log says when a set links.
    config.log_level = "info".into();
    config.timeout = Duration::from_secs(180);
    let network = tokio::time::timeout(Duration::from_secs(240), launcher::up(&config))
        .await
        .expect("network start-up took more than 240 s")
        .unwrap();
    let dir = network.dir().to_path_buf();
    let files = network.manifest().fileserver.address;

    for legs in [2usize, 3] {
        let proxy = Proxy::start(&dir, legs, &format!("{legs}")).await;
        wait_for_exits(files, proxy.socks).await;
        downloads_over_every_leg(&dir, &proxy, files, legs).await;
        proxy.stop().await;
    }

    let proxy = Proxy::start(&dir, 2, "loss").await;
    wait_for_exits(files, proxy.socks).await;
    idle_leg_lost(&dir, &proxy, files).await;
    busy_leg_lost(&dir, &proxy, files).await;
    proxy.stop().await;

    network.down().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 50 MB byte for byte through one set, every leg used, the exit's log
/// showing the set linked; then 8 streams at once on the same set.
async fn downloads_over_every_leg(dir: &Path, proxy: &Proxy, files: SocketAddr, legs: usize) {
    let size = 50_000_000;
    let d = fetch_file(files, Some((proxy.socks, None)), size, legs as u64)
        .await
        .unwrap();
    let t = proxy.tunnel(&IsolationKey::default());
    assert_eq!(t.info().legs.len(), legs);
    let exits: Vec<&String> = t.info().legs.iter().map(|l| &l[2]).collect();
    assert!(
        exits.windows(2).all(|w| w[0] == w[1]),
        "legs share the exit"
    );
    let report = t.report().await.unwrap();
    let received: Vec<u64> = report
        .legs
        .iter()
        .map(|l| l.stats.map_or(0, |s| s.data_bytes_received))
        .collect();
    let peak = report.reorder.unwrap().peak_bytes;
    println!(
        "{legs} legs ({}): {:.2} MB/s, first byte {} ms, DATA bytes per leg {received:?}, reorder peak {peak} bytes",
        t.info().describe(),
        d.mb_per_s(),
        d.time_to_first_byte.as_millis()
    );
    assert!(
        received.iter().all(|r| *r > 0),
        "every leg carried data: {received:?}"
    );
    assert_eq!(received.iter().sum::<u64>(), report.data_bytes_received());
    // The exit says it linked a set (conflux_pool.c, try_finalize_set).
    let log = std::fs::read_to_string(dir.join("nodes").join(exits[0]).join("tor.log")).unwrap();
    let linked = log
        .matches("Successfully linked a conflux relay set")
        .count();
    println!("{}: {linked} sets linked in its log", exits[0]);
    assert!(linked >= 1, "the exit's log shows no linked set");

    // An upload on the same set: our scheduler splits it and the C-tor
    // exit puts it back in order (the file server checks the SHA-256).
    let sent = |r: &TunnelReport| -> Vec<u64> {
        r.legs
            .iter()
            .map(|l| l.stats.map_or(0, |s| s.data_bytes_sent))
            .collect()
    };
    let before = sent(&report);
    let u = upload_file(
        files,
        Some((proxy.socks, None)),
        20_000_000,
        70 + legs as u64,
    )
    .await
    .unwrap();
    let after = t.report().await.unwrap();
    assert_eq!(after.id, report.id, "the upload used the same set");
    let up: Vec<u64> = sent(&after)
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a - b)
        .collect();
    println!(
        "{legs} legs: upload {:.2} MB/s (server side {:.2}), DATA bytes sent per leg {up:?}",
        u.mb_per_s(),
        u.server_mb_per_s()
    );
    assert!(
        up.iter().all(|b| *b > 0),
        "every leg carried part of the upload: {up:?}"
    );
    assert!(up.iter().sum::<u64>() >= 20_000_000);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let socks = proxy.socks;
        tasks.push(tokio::spawn(async move {
            fetch_file(files, Some((socks, None)), 1_000_000 + i * 777, 50 + i).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    println!(
        "{legs} legs: 8 concurrent streams in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(proxy.client.tunnels_for(&IsolationKey::default()).len(), 1);
}

/// A download whose body is checked as it is read.
struct Body {
    stream: TcpStream,
    seed: u64,
    size: u64,
    offset: u64,
    buf: Vec<u8>,
    expect: Vec<u8>,
}

impl Body {
    async fn open(
        socks_addr: SocketAddr,
        files: SocketAddr,
        user: &str,
        size: u64,
        seed: u64,
    ) -> Self {
        let mut stream = socks::connect(socks_addr, files, Some((user, "x")))
            .await
            .unwrap();
        let req = format!(
            "GET {} HTTP/1.0\r\nHost: {files}\r\n\r\n",
            file_path(size, seed)
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        // The head, byte by byte (it is short).
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(
                stream.read(&mut b).await.unwrap(),
                1,
                "stream ended in the head"
            );
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Self {
            stream,
            seed,
            size,
            offset: 0,
            buf: vec![0; 64 * 1024],
            expect: vec![0; 64 * 1024],
        }
    }

    /// Read and check up to `n` more bytes; Ok(false) at the end.
    async fn read(&mut self, n: u64) -> std::io::Result<bool> {
        let until = (self.offset + n).min(self.size);
        while self.offset < until {
            let got = self.stream.read(&mut self.buf).await?;
            if got == 0 {
                return Ok(false);
            }
            fill(self.seed, self.offset, &mut self.expect[..got]);
            assert!(
                self.buf[..got] == self.expect[..got],
                "wrong bytes at {}",
                self.offset
            );
            self.offset += got as u64;
        }
        Ok(self.offset < self.size)
    }
}

/// Wait (up to `limit`) until `check` holds for the tunnel's report.
async fn wait_report(
    t: &TunnelHandle,
    limit: Duration,
    check: impl Fn(&TunnelReport) -> bool,
) -> TunnelReport {
    let start = Instant::now();
    loop {
        let Some(r) = t.report().await else {
            panic!("the set is gone: {:?}", t.status());
        };
        if check(&r) {
            return r;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The index of an open leg whose loss C-tor's exit and Braid both let
/// the set survive (prop 329 §2.4.3; C-tor's `cfx_del_leg`): not the
/// leg the exit last sent on (highest `last_seq_recv` here), not ours
/// (highest `last_seq_sent`), nothing in flight.
fn idle_leg(r: &TunnelReport) -> Option<usize> {
    let open: Vec<(usize, _, u64)> = r
        .legs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.open)
        .filter_map(|(i, l)| Some((i, l.stats?, l.figures.as_ref()?.inflight.unwrap_or(0))))
        .collect();
    let max_recv = open.iter().map(|(_, s, _)| s.last_seq_recv).max()?;
    let max_sent = open.iter().map(|(_, s, _)| s.last_seq_sent).max()?;
    open.iter()
        .find(|(_, s, inflight)| {
            s.last_seq_recv < max_recv && s.last_seq_sent < max_sent.max(1) && *inflight == 0
        })
        .or_else(|| {
            // Equal numbers (nothing sent on either) are no loss either.
            open.iter().find(|(_, s, inflight)| {
                s.last_seq_recv < max_recv && s.last_seq_sent == 0 && *inflight == 0
            })
        })
        .map(|(i, _, _)| *i)
}

/// A middle killed under an idle leg: the paused stream resumes over the
/// other leg and completes byte for byte; the set gets a replacement leg
/// that links with the exit (same nonce) and carries a new download.
async fn idle_leg_lost(dir: &Path, proxy: &Proxy, files: SocketAddr) {
    let size: u64 = 60_000_000;
    let mut body = Body::open(proxy.socks, files, "idle", size, 11).await;
    assert!(body.read(2_000_000).await.unwrap());
    let t = proxy.tunnel(&key("idle"));
    // Pause until the exit stops (our buffers fill, XOFF) and one leg is
    // idle in C-tor's sense; the loopback socket buffers hold megabytes,
    // so "stopped" means no leg's numbers moved for 500 ms.
    let mut victim = None;
    for _ in 0..10 {
        let mut last = t.report().await.unwrap();
        let quiet = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let r = t.report().await.unwrap();
            let seqs = |r: &TunnelReport| -> Vec<_> { r.legs.iter().map(|l| l.stats).collect() };
            if seqs(&r) == seqs(&last) {
                break;
            }
            assert!(
                quiet.elapsed() < Duration::from_secs(20),
                "the exit never stopped"
            );
            last = r;
        }
        if let Some(i) = idle_leg(&last) {
            victim = Some((i, last));
            break;
        }
        assert!(body.read(500_000).await.unwrap());
    }
    let (i, before) = victim.expect("no leg went idle in 10 pauses");
    let middle = before.legs[i].path[1].clone();
    println!(
        "idle leg {i} ({}) at {} bytes; killing {middle}; legs: {:?}",
        before.legs[i].path.join(" > "),
        body.offset,
        before.legs.iter().map(|l| l.stats).collect::<Vec<_>>()
    );
    let killed = Instant::now();
    kill_relay(dir, &middle);
    // The guard learns at once (its channel to the middle closes) and
    // sends DESTROY; a CI run once waited more than 10 s, so the limit is
    // 30 s and a miss shows the guard's log.
    let guard = before.legs[i].path[0].clone();
    let after = tokio::time::timeout(
        Duration::from_secs(30),
        wait_report(&t, Duration::from_secs(31), |r| !r.legs[i].open),
    )
    .await
    .unwrap_or_else(|_| {
        let log = dir.join("nodes").join(&guard).join("tor.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        panic!(
            "leg {i} still open 30 s after {middle} was killed; {guard}'s log ends: {:#?}",
            tail.into_iter().rev().collect::<Vec<_>>()
        )
    });
    println!("leg {i} closed after {} ms", killed.elapsed().as_millis());
    assert_eq!(after.id, before.id);

    // The stream goes on over the other leg.
    let resumed = Instant::now();
    let mut joined = None;
    // Per 10 MB: time, and per open leg the bytes it brought, its
    // reorder-queue share and what the exit's flow looked like.
    let mut progress = Vec::new();
    while body
        .read(2_000_000)
        .await
        .unwrap_or_else(|e| panic!("{e}; the set: {:?}", t.status()))
    {
        let Some(r) = t.report().await else {
            panic!("the set is gone: {:?}", t.status());
        };
        if body.offset % 10_000_000 < 2_000_000 {
            progress.push(format!(
                "{:.1} s {} MB: legs {:?}, reorder {} B",
                resumed.elapsed().as_secs_f64(),
                body.offset / 1_000_000,
                r.legs
                    .iter()
                    .map(|l| (
                        l.open,
                        l.data_bytes_received(),
                        l.figures.as_ref().map(|f| f.deliver_window)
                    ))
                    .collect::<Vec<_>>(),
                r.reorder.map_or(0, |q| q.bytes),
            ));
        }
        if joined.is_none()
            && r.legs
                .iter()
                .any(|l| l.replacement && l.open && l.link_rtt.is_some())
        {
            joined = Some((killed.elapsed(), body.offset));
        }
    }
    println!(
        "a replacement leg linked during the stream: {joined:?} (time since the kill, bytes read)"
    );
    println!("resumed stream (open, DATA bytes received, deliver window per leg):");
    for line in &progress {
        println!("  {line}");
    }
    assert_eq!(body.offset, size, "the stream ended early");
    println!(
        "the paused stream completed over the remaining leg: {} bytes in {:.2} s",
        size - 2_000_000,
        resumed.elapsed().as_secs_f64()
    );

    // A replacement leg, linked with the set's nonce.
    let r = wait_report(&t, Duration::from_secs(30), |r| {
        r.legs
            .iter()
            .any(|l| l.replacement && l.open && l.link_rtt.is_some())
    })
    .await;
    let new = r
        .legs
        .iter()
        .position(|l| l.replacement && l.open && l.link_rtt.is_some())
        .unwrap();
    println!(
        "replacement leg {new}: {} (LINK RTT {:?}) after {} ms",
        r.legs[new].path.join(" > "),
        r.legs[new].link_rtt.unwrap(),
        killed.elapsed().as_millis()
    );
    assert!(!r.legs[new].path.contains(&middle));
    // It carries data: downloads on the same set until it has some.
    let mut seed = 20;
    loop {
        fetch_file(
            files,
            Some((proxy.socks, Some(("idle", "x")))),
            5_000_000,
            seed,
        )
        .await
        .unwrap();
        let r = t.report().await.unwrap();
        assert_eq!(r.id, before.id, "the same set serves the key");
        let got = r.legs[new].data_bytes_received();
        if got > 0 {
            println!("the replacement leg carried {got} bytes");
            break;
        }
        seed += 1;
        assert!(seed < 30, "the replacement leg never carried data");
    }
}

/// A middle killed under the leg that carries the download: the stream
/// ends with an error (not EOF, not a hang), and a new stream works on a
/// new set.
async fn busy_leg_lost(dir: &Path, proxy: &Proxy, files: SocketAddr) {
    let size: u64 = 500_000_000;
    let mut body = Body::open(proxy.socks, files, "busy", size, 12).await;
    assert!(body.read(3_000_000).await.unwrap());
    let t = proxy.tunnel(&key("busy"));
    let r = t.report().await.unwrap();
    // The leg the exit sends on now.
    let (i, leg) = r
        .legs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.open)
        .max_by_key(|(_, l)| l.stats.map_or(0, |s| s.last_seq_recv))
        .unwrap();
    let middle = leg.path[1].clone();
    println!("busy leg {i} ({}); killing {middle}", leg.path.join(" > "));
    let killed = Instant::now();
    kill_relay(dir, &middle);
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match body.read(1_000_000).await {
                Ok(true) => {}
                Ok(false) => return Ok(body.offset),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the stream hung after its leg's middle died");
    println!(
        "stream after the kill: {end:?} after {} ms, {} of {size} bytes",
        killed.elapsed().as_millis(),
        body.offset
    );
    let err = end.expect_err("a cut stream must end in an error, not EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let start = Instant::now();
    while !t.is_closed() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the set did not close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A new stream works, on a new set.
    let d = fetch_file(
        files,
        Some((proxy.socks, Some(("busy", "x")))),
        5_000_000,
        13,
    )
    .await
    .unwrap();
    let t2 = proxy.tunnel(&key("busy"));
    assert_ne!(t2.id(), t.id(), "a new set");
    println!("new stream on a new set: {:.2} MB/s", d.mb_per_s());
}
