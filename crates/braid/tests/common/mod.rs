//! Helpers shared by the integration tests (each test binary uses a part).

#![allow(dead_code, reason = "each test binary uses a part of these helpers")]
#![allow(clippy::panic, clippy::print_stdout, reason = "test helpers")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use braid_testnet::download::fetch_file;

/// A fresh directory for one test's network, named for the test and the
/// process.
pub(crate) fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Right after a network is ready, C-tor exits sometimes refuse streams to
/// the file server with END reason MISC for a moment (seen in CI, three
/// circuits in a row within 120 ms). Wait until a small download works, so
/// the checks that follow measure Braid, not the network's first second.
pub(crate) async fn wait_for_exits(files: std::net::SocketAddr, socks: std::net::SocketAddr) {
    let start = Instant::now();
    loop {
        match fetch_file(files, Some((socks, None)), 1000, 0).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "exits still refuse after 30 s: {e}"
                );
                println!("warm-up: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    println!("exits ready after {} ms", start.elapsed().as_millis());
}

/// Kill the relay `name` of the network in `dir` (SIGKILL, by its pid).
pub(crate) fn kill_relay(dir: &std::path::Path, name: &str) {
    signal_relay(dir, name, "-KILL");
}

/// Freeze the relay `name` of the network in `dir` (SIGSTOP, by its pid):
/// it hangs with its connections open, as a frozen process or a machine
/// cut off would. Kill it afterwards ([`kill_relay`]): a stopped process
/// would not heed the SIGTERM that stops the network.
pub(crate) fn freeze_relay(dir: &std::path::Path, name: &str) {
    signal_relay(dir, name, "-STOP");
}

/// Send `signal` (`kill`'s option) to the relay `name` of the network in
/// `dir`, by its pid.
fn signal_relay(dir: &std::path::Path, name: &str, signal: &str) {
    let record = braid_testnet::process::read_records(dir)
        .unwrap_or_else(|e| panic!("reading the network's records: {e}"))
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no process {name} in the network"));
    let ok = std::process::Command::new("kill")
        .args([signal, &record.pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {signal} {name}");
}

/// `BRAID_TEST_LOG=1`: the in-process client's debug log on stderr (to
/// see why a run failed).
pub(crate) fn init_test_log() {
    if std::env::var_os("BRAID_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    }
}

/// An in-process SOCKS port serving a client; [`InProcessSocks::stop`]
/// ends it.
pub(crate) struct InProcessSocks {
    pub(crate) addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcessSocks {
    /// Serve `client` on a free port of 127.0.0.1.
    pub(crate) async fn serve(client: &braid_client::TorClient) -> Self {
        let server = braid_client::socks::SocksServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(std::sync::Arc::new(client.clone()), async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop,
            serving,
        }
    }

    /// Stop serving and wait for it: the server ends cleanly.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.serving
            .await
            .expect("the SOCKS server task")
            .expect("the SOCKS server ended cleanly");
    }
}

/// Stop `network` (every process it started, by PID), check none is left
/// and remove its directory.
pub(crate) fn stop_network(network: braid_testnet::launcher::Network) {
    let dir = network.dir().to_path_buf();
    let stopped = network.down().unwrap();
    assert!(stopped > 0);
    let alive: Vec<_> = braid_testnet::process::read_records(&dir)
        .unwrap()
        .into_iter()
        .filter(braid_testnet::process::is_alive)
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A whole HTTP/1.0 answer of the file server, `got`, checked as file
/// (`size`, `seed`): every byte of the body is there (else a panic naming
/// `what`); true if its SHA-256 is the file's.
pub(crate) fn file_body_ok(got: &[u8], size: u64, seed: u64, what: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    let start = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or_else(|| panic!("{what}: no end of the HTTP head"));
    let body = got.get(start..).unwrap_or_default();
    assert_eq!(body.len() as u64, size, "every byte of {what}");
    let sha: [u8; 32] = Sha256::digest(body).into();
    sha == braid_testnet::fileserver::expected_sha256(size, seed)
}

/// Reads `stream` to its end onto `got`, within `limit`; a hang or an
/// error panics, naming `what`.
pub(crate) async fn read_rest(
    stream: &mut tokio::net::TcpStream,
    got: &mut Vec<u8>,
    limit: Duration,
    what: &str,
) {
    let mut buf = vec![0_u8; 64 * 1024];
    let rest = tokio::time::timeout(limit, async {
        loop {
            let n = tokio::io::AsyncReadExt::read(stream, &mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the download hung"));
    rest.unwrap_or_else(|e| panic!("{what}: the stream broke: {e}"));
}
