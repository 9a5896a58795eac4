//! `braid proxy` as a child process of a benchmark.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::BenchError;

/// How long a proxy may take to bootstrap and build its first circuits.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// `braid proxy` as a child, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub(crate) struct ProxyChild(Child);

impl ProxyChild {
    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        // Never signal a pid that has been reaped (it may be reused).
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `braid proxy -v --config <config> --socks <socks> <extra>...`
/// (this very program) and waits until it says it serves SOCKS. Its log
/// (info level: tunnels built, lost and closed, with reasons) goes to the
/// config's path with the extension `log`, so that a failed transfer can
/// be explained afterwards.
pub(crate) fn start_proxy(
    config: &Path,
    socks: SocketAddr,
    extra: &[String],
) -> Result<ProxyChild, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Proxy(e.to_string()))?;
    let log_path = config.with_extension("log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| BenchError::Proxy(format!("cannot create {}: {e}", log_path.display())))?;
    let mut child = Command::new(exe)
        .args(["proxy", "-v", "--config"])
        .arg(config)
        .args(["--socks", &socks.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| BenchError::Proxy(format!("cannot start: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Proxy("no stdout".into()))?;
    let mut proxy = ProxyChild(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("SOCKS5 proxy on") => break,
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = proxy
                    .0
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(BenchError::Proxy(format!(
                    "exited before it was ready ({status}); see {}",
                    log_path.display()
                )));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(BenchError::Proxy(format!(
                    "not ready within {} s",
                    READY_TIMEOUT.as_secs()
                )));
            }
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Ok(proxy)
}
