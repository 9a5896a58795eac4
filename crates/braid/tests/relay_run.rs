//! `braid relay run` on a private network of C-tor 0.4.9 authorities and
//! relays: the relay publishes its descriptor, the authorities' reachability
//! tests complete the link handshake with it so the consensus lists it
//! Running, and the C-tor client, its middles pinned to our relay
//! (EXTENDCIRCUIT guard -> braidrelay0 -> C-tor exit), downloads through
//! it (the relay extends to the C-tor exit as an authenticated relay), then
//! with braidrelay0 as the exit (its policy accepts 127.0.0.0/8 and it
//! connects nowhere else); SHA-256 checked each time. Its metrics page
//! then shows the traffic, circuits, extensions, KIST's runs and the
//! consensus it fetched. SIGTERM stops it cleanly. Every process is stopped by PID at the end
//! (about 55 s).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use braid_relay::http::request;
use braid_relay::{KeysOpened, RelayKeys};
use braid_testnet::control::ControlConn;
use braid_testnet::download::fetch_file;
use braid_testnet::{NetworkConfig, launcher};
use common::test_dir;

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
/// First port of this test's network (each test has its own block,
/// all below 32768, where Linux's ephemeral ports begin).
const BASE: u16 = 20000;

/// A child process, killed (by PID) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn fetch(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    match request(addr, "GET", path, None, 4 << 20, Duration::from_secs(10)).await {
        Ok(a) => (a.status, a.body),
        Err(e) => (0, e.to_string()),
    }
}

/// The lines of `nickname`'s entry in a network status document.
fn entry(doc: &str, nickname: &str) -> Option<Vec<String>> {
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.starts_with(&format!("r {nickname} ")));
    let first = lines.next()?;
    let rest = lines.take_while(|l| !l.starts_with("r ") && !l.starts_with("directory-footer"));
    Some(
        std::iter::once(first)
            .chain(rest)
            .map(str::to_owned)
            .collect(),
    )
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Have the C-tor client build a circuit along `path` (fingerprints) and
/// download `size` bytes from the file server over it (SHA-256 checked).
async fn download_on(
    ctl: &mut ControlConn,
    path: &[&str],
    files: std::net::SocketAddr,
    socks: std::net::SocketAddr,
    size: u64,
    log_path: &Path,
) -> braid_testnet::download::Download {
    let hops: Vec<String> = path.iter().map(|f| format!("${f}")).collect();
    let reply = ctl
        .command(&format!("EXTENDCIRCUIT 0 {}", hops.join(",")))
        .await
        .unwrap();
    let circ = reply.lines[0].strip_prefix("EXTENDED ").unwrap().to_owned();
    let start = Instant::now();
    loop {
        let status = ctl.getinfo("circuit-status").await.unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{circ} ")))
            .unwrap_or_default()
            .to_owned();
        if line.contains(" BUILT ") {
            println!(
                "circuit {circ} built in {} ms: {line}",
                start.elapsed().as_millis()
            );
            break;
        }
        assert!(
            !line.is_empty() && start.elapsed() < Duration::from_secs(30),
            "circuit {circ} along {path:?} not built ({line:?}); braidrelay0's log:\n{}",
            log_tail(log_path)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let download = tokio::spawn(async move {
        tokio::time::timeout(
            Duration::from_secs(60),
            fetch_file(files, Some((socks, None)), size, 42),
        )
        .await
    });
    let mut attached = false;
    while !download.is_finished() {
        let Some(ev) = ctl.next_event(Duration::from_millis(200)).await else {
            continue;
        };
        let words: Vec<&str> = ev.lines[0].split(' ').collect();
        if words.get(2) != Some(&"NEW") {
            continue;
        }
        // Our stream goes on our circuit; tor's own (directory fetches)
        // wherever tor likes.
        let to_files = words.get(4) == Some(&files.to_string().as_str());
        let target = if to_files { circ.as_str() } else { "0" };
        let r = ctl
            .command(&format!("ATTACHSTREAM {} {target}", words[1]))
            .await;
        // tor may have attached its own streams already ("not managed by
        // controller"); ours must attach.
        if to_files {
            r.unwrap();
            attached = true;
        }
    }
    assert!(
        attached,
        "the download's stream never came to the controller"
    );
    match download.await.unwrap() {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => panic!(
            "download along {path:?}: {e}; braidrelay0's log:\n{}",
            log_tail(log_path)
        ),
        Err(_) => panic!(
            "download along {path:?} timed out; braidrelay0's log:\n{}",
            log_tail(log_path)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braid_relay_runs_as_middle_and_exit_for_the_ctor_client() {
    let test_start = Instant::now();
    let mut config = NetworkConfig::new(test_dir("relay-run"), BRAID);
    config.base_port = BASE;
    config.relays = 4;
    config.exits = 1;
    config.client = false;
    config.timeout = Duration::from_secs(120);
    let network = tokio::time::timeout(Duration::from_secs(150), launcher::up(&config))
        .await
        .expect("network start-up took more than 150 s")
        .unwrap();
    let dir = network.dir().to_path_buf();
    let manifest = network.manifest().clone();
    println!("network up in {:.1} s", test_start.elapsed().as_secs_f64());

    // The relay file: network.toml plus a [braid_relay] table; keys made
    // first so the test knows the fingerprint.
    let or_port = BASE + 500;
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], BASE + 512));
    let network_toml = std::fs::read_to_string(dir.join("network.toml")).unwrap();
    let path = dir.join("braidrelay0.toml");
    std::fs::write(
        &path,
        format!(
            "{network_toml}\n[braid_relay]\nnickname = \"braidrelay0\"\naddress = \"127.0.0.1\"\n\
             or_port = {or_port}\nkeys_dir = \"braidrelay0/keys\"\nbandwidth_rate = 10000000\n\
             proto = \"Link=4-5 LinkAuth=3 Relay=2-4\"\ncontact = \"braid relay_run test\"\n\
             exit = true\nexit_policy = [\"accept 127.0.0.0/8:*\", \"accept *:*\"]\n\
             exit_connect_loopback_only = true\nmetrics = \"{metrics}\"\n"
        ),
    )
    .unwrap();
    let (keys, how) = RelayKeys::open(
        &dir.join("braidrelay0/keys"),
        &mut rand::rng(),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(how, KeysOpened::Generated);
    let fp = keys.rsa_identity().as_hex_upper();
    drop(keys);
    // A measured bandwidth like the C-tor relays', so the consensus weight
    // is not 0 (the authorities read the file at each vote).
    let mut bw = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("bandwidth-file"))
        .unwrap();
    writeln!(bw, "node_id=${fp} bw=10000").unwrap();
    drop(bw);

    let log_path = dir.join("braidrelay0.log");
    let relay = Command::new(BRAID)
        .args(["relay", "run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut relay = Process(relay);
    println!("braidrelay0 {fp}, pid {}", relay.0.id());

    // (a) The consensus lists it Running (the authorities connected to
    // our ORPort and finished the link handshake).
    let auth0 = &manifest.authorities[0];
    let dir_addr = std::net::SocketAddr::new(auth0.address.into(), auth0.dir_port);
    let start = Instant::now();
    let listed = loop {
        assert!(
            relay.0.try_wait().unwrap().is_none(),
            "braid relay run exited:\n{}",
            log_tail(&log_path)
        );
        let (_, doc) = fetch(dir_addr, "/tor/status-vote/current/consensus").await;
        if let Some(e) = entry(&doc, "braidrelay0")
            && e.iter()
                .any(|l| l.starts_with("s ") && l.split(' ').any(|f| f == "Running"))
        {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "braidrelay0 not Running in the consensus after 90 s; its log:\n{}",
            log_tail(&log_path)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    println!(
        "consensus lists braidrelay0 after {:.1} s: {listed:?}",
        start.elapsed().as_secs_f64()
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    for a in &manifest.authorities {
        assert!(
            log.contains(&format!("open with relay {}", a.fingerprint)),
            "no channel from authority {} in the log",
            a.nickname
        );
    }

    // (b) A C-tor client started now (so its first consensus lists
    // braidrelay0 and it fetches its microdescriptor at once; a running
    // client fetches new ones lazily), then its middles pinned to
    // braidrelay0 (with MiddleNodes in its torrc from the start, tor 0.4.9
    // counts no guard bandwidth and never bootstraps).
    let client_dir = dir.join("ctorclient");
    std::fs::create_dir_all(&client_dir).unwrap();
    let socks = std::net::SocketAddr::from(([127, 0, 0, 1], BASE + 510));
    let control = std::net::SocketAddr::from(([127, 0, 0, 1], BASE + 511));
    let mut torrc = format!(
        "TestingTorNetwork 1\nDataDirectory {d}\nSocksPort {socks}\nControlPort {control}\n\
         CookieAuthentication 1\nClientOnly 1\nEnforceDistinctSubnets 0\nConfluxEnabled 0\n\
         PathsNeededToBuildCircuits 0.25\nSafeLogging 0\n\
         Log info file {d}/tor.log\n",
        d = client_dir.display()
    );
    for a in &manifest.authorities {
        torrc.push_str(&format!(
            "DirAuthority {} orport={} v3ident={} 127.0.0.1:{} {}\n",
            a.nickname, a.or_port, a.v3ident, a.dir_port, a.fingerprint
        ));
    }
    std::fs::write(client_dir.join("torrc"), torrc).unwrap();
    let client = Command::new(&config.tor)
        .arg("-f")
        .arg(client_dir.join("torrc"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = Process(client);
    println!("C-tor client pid {}", client.0.id());
    let start = Instant::now();
    let mut ctl = loop {
        if let Ok(c) = ControlConn::connect(control, &client_dir.join("control_auth_cookie")).await
        {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no control port");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    loop {
        let md = ctl
            .getinfo(&format!("md/id/{fp}"))
            .await
            .unwrap_or_default();
        let phase = ctl
            .getinfo("status/bootstrap-phase")
            .await
            .unwrap_or_default();
        if md.contains("ntor-onion-key") && phase.contains("PROGRESS=100") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the C-tor client not ready after 60 s ({phase}; md {md:?}); its log:\n{}",
            log_tail(&client_dir.join("tor.log"))
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "C-tor client bootstrapped with braidrelay0 in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // A circuit guard -> braidrelay0 -> exit built by the C-tor client
    // (EXTENDCIRCUIT), and the download's stream attached to it.
    let guard = manifest.relays.iter().find(|r| r.guard).unwrap();
    let exit = manifest.relays.iter().find(|r| r.exit).unwrap();
    ctl.command("SETCONF __LeaveStreamsUnattached=1")
        .await
        .unwrap();
    ctl.set_events(&["STREAM"]).await.unwrap();
    let files = manifest.fileserver.address;
    let path = [guard.fingerprint.as_str(), &fp, &exit.fingerprint];
    let d = download_on(&mut ctl, &path, files, socks, 20_000_000, &log_path).await;
    println!(
        "{} bytes through braidrelay0 in {:.2} s ({:.2} MB/s), sha256 {}",
        d.bytes,
        d.elapsed.as_secs_f64(),
        d.mb_per_s(),
        d.sha256
    );
    let circuits = ctl.getinfo("circuit-status").await.unwrap();
    let through_us: Vec<&str> = circuits
        .lines()
        .filter(|l| {
            l.contains(" BUILT ")
                && l.split(' ')
                    .nth(2)
                    .and_then(|path| path.split(',').nth(1))
                    .is_some_and(|hop| hop.starts_with(&format!("${fp}")))
        })
        .collect();
    println!("C-tor client circuits with braidrelay0 as middle: {through_us:#?}");
    assert!(
        !through_us.is_empty(),
        "no built circuit through braidrelay0:\n{circuits}"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("(we extend to it)"),
        "braidrelay0 never opened a channel to extend:\n{}",
        log_tail(&log_path)
    );

    // braidrelay0 as the exit: guard -> another relay -> braidrelay0, the
    // stream to the file server on 127.0.0.1 (the policy accepts it).
    let middle = manifest
        .relays
        .iter()
        .find(|r| !r.exit && r.fingerprint != guard.fingerprint)
        .unwrap();
    let path = [guard.fingerprint.as_str(), &middle.fingerprint, &fp];
    let d = download_on(&mut ctl, &path, files, socks, 20_000_000, &log_path).await;
    println!(
        "{} bytes with braidrelay0 as exit in {:.2} s ({:.2} MB/s, first byte after {} ms), sha256 {}",
        d.bytes,
        d.elapsed.as_secs_f64(),
        d.mb_per_s(),
        d.time_to_first_byte.as_millis(),
        d.sha256
    );

    // The metrics page: 20 MB read from channels (the exit's 20 MB came
    // from the file server's socket), 40 MB written, the circuits, the
    // extension to the C-tor exit, KIST at work, the consensus fetched.
    let (status, page) = fetch(metrics, "/metrics").await;
    assert_eq!(status, 200, "{page}");
    let value = |name: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{page}"))
    };
    let figures: Vec<String> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    println!("braidrelay0's metrics:\n{}", figures.join("\n"));
    for (name, least) in [
        ("braid_relay_read_bytes_total", 20e6),
        ("braid_relay_written_bytes_total", 40e6),
        ("braid_relay_circuits_created_total", 2.0),
        ("braid_relay_extends_total", 1.0),
        ("braid_relay_channels{peer=\"relay\"}", 1.0),
        ("braid_relay_kist_enabled", 1.0),
        ("braid_relay_kist_limits_total", 1.0),
        ("braid_relay_kist_limit_bytes_total", 30e6),
        ("braid_relay_kist_cells_total", 30e6 / 514.0),
        ("braid_relay_consensus_fetches_total{result=\"ok\"}", 1.0),
    ] {
        assert!(value(name) >= least, "{name} below {least}");
    }
    // On Linux every limit comes from TCP_INFO.
    assert_eq!(value("braid_relay_kist_fallback_limits_total"), 0.0);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("consensus parameters (valid-after"),
        "no consensus parameters applied:\n{}",
        log_tail(&log_path)
    );

    // SIGTERM: a clean exit.
    let pid = relay.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = relay.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        log_tail(&log_path)
    );
    drop(relay);
    drop(client);

    let stopped = network.down().unwrap();
    println!(
        "stopped {stopped} processes; test took {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
