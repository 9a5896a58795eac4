//! Integration tests of the private C-tor network: real `tor` processes on
//! 127.0.0.1, started by the launcher and stopped by pid.
//!
//! Tests that start a network hold `NETWORK_LOCK` so that only one network
//! runs at a time (2 cores); each uses its own directory and ports.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]
// Each test has its own runtime; the lock only keeps networks from running
// side by side, so holding it across awaits is the point.
#![allow(clippy::await_holding_lock, reason = "serialises whole tests")]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use braid_testnet::process::{is_alive, read_records};
use braid_testnet::{NetworkConfig, RelayShape, TestnetError, ctor_conflux, launcher};
use common::test_dir;

static NETWORK_LOCK: Mutex<()> = Mutex::new(());

const BRAID: &str = env!("CARGO_BIN_EXE_braid");

fn lock() -> std::sync::MutexGuard<'static, ()> {
    NETWORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(name: &str, base_port: u16) -> NetworkConfig {
    let mut config = NetworkConfig::new(test_dir(name), BRAID);
    config.base_port = base_port;
    config.timeout = Duration::from_secs(180);
    config
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

/// The main proof that the network is fit for Conflux: a 20 MB download
/// through the C-tor client uses a linked set of two legs sharing the exit
/// with distinct guards and middles; every relay of network.toml is in the
/// consensus with the flags it needs; shaping caps the guards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctor_client_downloads_through_a_linked_conflux_set() {
    let _guard = lock();
    let mut config = config("conflux", 21000);
    // Every guard capped at 3 MiB/s with 5 ms each way: whatever paths the
    // client picks, two legs can never exceed 2 x 3 MiB/s.
    let (name, shape) = RelayShape::parse_flag("relays:3MiB:5ms").unwrap();
    config.shapes.insert(name, shape);
    let network = tokio::time::timeout(Duration::from_secs(240), launcher::up(&config))
        .await
        .expect("network start-up took more than 240 s")
        .unwrap();
    let manifest = network.manifest().clone();
    assert_eq!(manifest.authorities.len(), 3);
    assert_eq!(manifest.relays.len(), 8);
    assert_eq!(manifest.relays.iter().filter(|r| r.exit).count(), 3);

    // A second network in the same directory is refused.
    let err = launcher::up(&config).await.unwrap_err();
    assert!(matches!(err, TestnetError::AlreadyRunning { .. }), "{err}");

    let status = launcher::status(network.dir()).await.unwrap();
    let (listed, problems) = status.consensus.expect("authority answers");
    assert_eq!(listed, 11, "3 authorities + 8 relays");
    assert!(problems.is_empty(), "{problems:?}");
    assert!(status.processes.iter().all(|p| p.alive));

    let report = tokio::time::timeout(
        Duration::from_secs(120),
        ctor_conflux::download(&manifest, 20_000_000, 7),
    )
    .await
    .expect("download took more than 120 s")
    .unwrap();
    println!("{}", report.table());
    assert_eq!(report.download.bytes, 20_000_000);
    report.route.check_linked_pair().unwrap();
    let leg_bytes: u64 = report.route.legs.iter().map(|l| l.bytes).sum();
    assert!(
        leg_bytes >= 20_000_000,
        "legs delivered {leg_bytes} bytes (dropped events: {})",
        report.route.dropped_events
    );
    let cap = 2.0 * 3.0 * 1_048_576.0 / 1e6;
    assert!(
        report.download.mb_per_s() < cap * 1.1,
        "{:.2} MB/s through guards shaped to 3 MiB/s each",
        report.download.mb_per_s()
    );

    let dir = network.dir().to_path_buf();
    let stopped = network.down().unwrap();
    assert_eq!(stopped, 13, "helper, 3 authorities, 8 relays, client");
    assert_all_stopped(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A relay that dies during bootstrap fails `up` with its name and log,
/// and nothing is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_dying_during_bootstrap_fails_cleanly() {
    let _guard = lock();
    let mut config = config("dies", 22000);
    config.client = false;
    let dir = config.dir.clone();
    let killer = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Some(r) = read_records(&dir)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|r| r.name == "relay2")
                {
                    std::thread::sleep(Duration::from_millis(500));
                    Command::new("kill")
                        .args(["-KILL", &r.pid.to_string()])
                        .status()
                        .unwrap();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
    };
    let err = launcher::up(&config).await.unwrap_err();
    assert!(killer.join().unwrap(), "relay2 never started");
    match &err {
        TestnetError::ProcessDied { name, .. } => assert_eq!(name, "relay2"),
        other => panic!("expected ProcessDied, got {other}"),
    }
    assert_all_stopped(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The CLI: `up` returns with the network running, `status` shows it,
/// `down` stops it; a launcher killed half-way leaves only what `down`
/// cleans.
#[test]
fn cli_up_status_down_and_killed_launcher() {
    let _guard = lock();
    let dir = test_dir("cli");
    let braid = |args: &[&str]| {
        let out = Command::new(BRAID).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.to_str().unwrap();
    let up = [
        "testnet",
        "up",
        "--dir",
        d,
        "--base-port",
        "23000",
        "--no-client",
    ];
    let (ok, out, err) = braid(&up);
    assert!(ok, "up failed: {out}\n{err}");
    assert!(out.contains("network up in"), "{out}");
    assert!(dir.join("network.toml").exists());
    let (ok, out, _) = braid(&["testnet", "status", "--dir", d]);
    assert!(ok);
    assert!(out.contains("12 of 12 processes running"), "{out}");
    assert!(out.contains("every relay has the flags it needs"), "{out}");
    let (ok, out, _) = braid(&["testnet", "down", "--dir", d]);
    assert!(ok);
    assert!(out.contains("stopped 12 processes"), "{out}");
    assert_all_stopped(&dir);
    let (ok, out, _) = braid(&["testnet", "status", "--dir", d]);
    assert!(ok && out.contains("0 of 0 processes running"), "{out}");

    // Kill the launcher once the relays are starting; `down` cleans up.
    let mut launcher = Command::new(BRAID)
        .args(up)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_records(&dir).unwrap_or_default().len() < 6 {
        assert!(Instant::now() < deadline, "relays never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let records = read_records(&dir).unwrap();
    assert!(
        records.iter().any(is_alive),
        "the killed launcher's relays keep running"
    );
    let (ok, out, err) = braid(&["testnet", "down", "--dir", d]);
    assert!(ok, "{out}{err}");
    assert_all_stopped(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad input that must fail before anything starts, with a one-line cause.
#[tokio::test]
async fn refuses_bad_setups_without_starting_anything() {
    // tor missing.
    let mut c = config("notor", 24000);
    c.tor = "/nonexistent/tor".into();
    let err = launcher::up(&c).await.unwrap_err();
    assert!(matches!(err, TestnetError::TorMissing { .. }), "{err}");
    assert!(err.to_string().contains("apt-get install tor"));
    assert!(!c.dir.join("pids").exists());

    // tor too old.
    let fake = test_dir("oldtor-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let script = fake.join("tor");
    std::fs::write(&script, "#!/bin/sh\necho 'Tor version 0.4.8.10.'\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let mut c = config("oldtor", 24000);
    c.tor = script;
    let err = launcher::up(&c).await.unwrap_err();
    assert!(matches!(err, TestnetError::TorTooOld { .. }), "{err}");
    assert!(err.to_string().contains("0.4.8.10"));
    std::fs::remove_dir_all(&fake).unwrap();

    // A port of the network in use.
    let c = config("busy", 24100);
    let _held = std::net::TcpListener::bind(("127.0.0.1", 24100 + 30)).unwrap();
    let err = launcher::up(&c).await.unwrap_err();
    match &err {
        TestnetError::PortInUse { port, purpose } => {
            assert_eq!(*port, 24130);
            assert!(purpose.contains("relay0"), "{purpose}");
        }
        other => panic!("expected PortInUse, got {other}"),
    }
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    assert!(read_records(&c.dir).unwrap().is_empty());

    // A directory that is not ours.
    let c = config("foreign", 24200);
    let foreign = c.dir.clone();
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep me").unwrap();
    let err = launcher::up(&c).await.unwrap_err();
    assert!(matches!(err, TestnetError::ForeignDirectory(_)), "{err}");
    assert!(foreign.join("precious.txt").exists());
    std::fs::remove_dir_all(&foreign).unwrap();

    // `down` on a directory without a network.
    let err = launcher::down(&test_dir("nothing")).unwrap_err();
    assert!(matches!(err, TestnetError::NoNetwork(_)), "{err}");
}
