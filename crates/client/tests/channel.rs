//! The channel driver against real C-tor relays on a private network
//! (127.0.0.1, ports 27000 and up): link handshake with the right and wrong
//! identities, CREATE_FAST / CREATED_FAST through the reactor on several
//! circuits at once, an idle channel surviving the relay's padding, a
//! relay killed under an open channel, and failures that stay within
//! their time limit.
//!
//! This test has its own `main` (`harness = false`): the launcher starts
//! the network's helper process (file server, shapers) as
//! `<program> testnet helper --dir DIR`, and the program here is this test
//! binary. One network serves every check; it is stopped whatever happens
//! (`Network::down`, or its `Drop` if a check panics).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests"
)]

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use braid_client::channel::{
    Channel, ChannelConfig, ChannelDriverError, ChannelHandle, CloseReason, ConnectPhase,
};
use braid_core::channel::{ChannelError, ExpectedIdentity};
use braid_core::crypto::fast;
use braid_testnet::manifest::RelayEntry;
use braid_testnet::process::read_records;
use braid_testnet::{Manifest, NetworkConfig, launcher};
use tor_cell::chancell::ChanMsg as _;
use tor_cell::chancell::msg::{AnyChanMsg, CreateFast, DestroyReason};
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

/// The name `--list` shows.
const TEST_NAME: &str = "channel_to_ctor_relays";
/// First port of the network (other developers use 21000-26999).
const BASE_PORT: u16 = 27000;
/// Limit on network start-up.
const STARTUP_LIMIT: Duration = Duration::from_secs(240);
/// Limit on the whole test once the network is up.
const CHECKS_LIMIT: Duration = Duration::from_secs(180);
/// Connect timeout used against live relays.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("testnet") {
        return helper(&args);
    }
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return ExitCode::SUCCESS;
    }
    // Name filters, as libtest takes them; flags (--nocapture, ...) are
    // accepted and ignored.
    let mut skip_value = false;
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| {
            let value = std::mem::take(&mut skip_value);
            if a.starts_with("--") {
                skip_value = matches!(
                    a.as_str(),
                    "--test-threads" | "--skip" | "--color" | "--format" | "-Z"
                );
            }
            !value && !a.starts_with('-')
        })
        .collect();
    if args.iter().any(|a| a == "--ignored")
        || (!filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())))
    {
        println!(
            "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n"
        );
        return ExitCode::SUCCESS;
    }
    println!("\nrunning 1 test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let failures = runtime.block_on(run());
    let secs = start.elapsed().as_secs_f64();
    if failures.is_empty() {
        println!(
            "test {TEST_NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed; finished in {secs:.1}s\n"
        );
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        println!(
            "test {TEST_NAME} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed; finished in {secs:.1}s\n"
        );
        ExitCode::FAILURE
    }
}

/// `testnet helper --dir DIR`: be the network's helper process.
fn helper(args: &[String]) -> ExitCode {
    let dir = match args {
        [_, helper, flag, dir] if helper == "helper" && flag == "--dir" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: testnet helper --dir DIR");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(braid_testnet::helper::run(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helper: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Start the network, run every check, stop the network. Returns the
/// failures.
async fn run() -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("braid-it-channel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut config = NetworkConfig::new(&dir, exe);
    config.base_port = BASE_PORT;
    config.relays = 4;
    config.exits = 1;
    config.client = false;
    config.timeout = Duration::from_secs(180);
    config.progress = true;
    let started = Instant::now();
    let network = match tokio::time::timeout(STARTUP_LIMIT, launcher::up(&config)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return vec![format!("network start-up failed: {e}")],
        Err(_) => return vec![format!("network start-up took more than {STARTUP_LIMIT:?}")],
    };
    println!("network up in {:.1} s", started.elapsed().as_secs_f64());
    let manifest = network.manifest().clone();
    // Never touch anything off loopback.
    let off_loopback: Vec<_> = manifest
        .relays
        .iter()
        .filter(|r| !r.address.is_loopback())
        .map(|r| r.nickname.clone())
        .collect();
    let failures = if off_loopback.is_empty() {
        match tokio::time::timeout(CHECKS_LIMIT, checks(&manifest, network.dir())).await {
            Ok(f) => f,
            Err(_) => vec![format!("checks took more than {CHECKS_LIMIT:?}")],
        }
    } else {
        vec![format!("relays off loopback: {off_loopback:?}")]
    };

    let stopped = network.down();
    println!("network stopped: {stopped:?}");
    if stopped.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    failures
}

type Check<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

/// Every check, in order; each failure is reported, none stops the rest.
async fn checks(manifest: &Manifest, dir: &std::path::Path) -> Vec<String> {
    let list: Vec<(&str, Check<'_>)> = vec![
        ("handshake with every relay", Box::pin(handshakes(manifest))),
        ("handshake nudge", Box::pin(nudged_handshakes(manifest))),
        (
            "wrong identities refused",
            Box::pin(wrong_identities(manifest)),
        ),
        (
            "CREATE_FAST through the reactor",
            Box::pin(create_fast(manifest)),
        ),
        ("closed port", Box::pin(closed_port())),
        ("silent port times out", Box::pin(silent_port())),
        ("idle channel survives", Box::pin(idle_channel(manifest))),
        (
            "relay killed under a channel",
            Box::pin(relay_killed(manifest, dir)),
        ),
    ];
    let mut failures = Vec::new();
    for (name, check) in list {
        let start = Instant::now();
        let result = check.await;
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!("  ok   {name} ({secs:.2} s)"),
            Err(e) => {
                println!("  FAIL {name} ({secs:.2} s): {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    failures
}

fn addr(r: &RelayEntry) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(r.address), r.or_port)
}

fn identity(r: &RelayEntry) -> ExpectedIdentity {
    ExpectedIdentity {
        rsa: RsaIdentity::from_hex(&r.fingerprint).expect("RSA fingerprint"),
        ed25519: Some(
            Ed25519Identity::from_base64(r.ed25519.trim_end_matches('=')).expect("Ed25519 id"),
        ),
    }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

async fn connect(r: &RelayEntry) -> Result<ChannelHandle, String> {
    let (handle, _task) = Channel::connect(addr(r), identity(r), CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("{}: {e}", r.nickname))?;
    Ok(handle)
}

/// A channel to every relay: link version 5, the identities we asked for,
/// TLS 1.3; prints the timings.
async fn handshakes(manifest: &Manifest) -> Result<(), String> {
    for r in &manifest.relays {
        let handle = connect(r).await?;
        let info = handle.info();
        let out = &info.outcome;
        let want = identity(r);
        println!(
            "    {:<8} link v{} {:?} {:?} sni={} tcp {:.1} ms, tls {:.1} ms, link handshake {:.1} ms; skew {:?}; our addr seen {:?}",
            r.nickname,
            out.link_version,
            info.tls.version,
            info.tls.cipher_suite,
            info.tls.sni,
            ms(info.tcp_time),
            ms(info.tls_time),
            ms(info.handshake_time),
            out.clock_skew,
            out.our_addr_seen_by_peer,
        );
        check(out.link_version == 5, || {
            format!("{}: link version {}", r.nickname, out.link_version)
        })?;
        check(out.peer.rsa == want.rsa, || {
            format!("{}: RSA id", r.nickname)
        })?;
        check(Some(out.peer.ed25519) == want.ed25519, || {
            format!("{}: Ed25519 id", r.nickname)
        })?;
        check(info.tls.version == Some(rustls_tls13()), || {
            format!("{}: TLS {:?}", r.nickname, info.tls.version)
        })?;
        check(out.peer_addrs.contains(&IpAddr::V4(r.address)), || {
            format!("{}: NETINFO addresses {:?}", r.nickname, out.peer_addrs)
        })?;
        handle.shutdown().await.map_err(|e| e.to_string())?;
        let reason = tokio::time::timeout(Duration::from_secs(10), handle.closed())
            .await
            .map_err(|_| "shutdown took more than 10 s".to_string())?;
        check(matches!(reason, CloseReason::Local), || {
            format!("{}: closed with {reason}", r.nickname)
        })?;
    }
    Ok(())
}

/// With `handshake_nudge`, the link handshake skips the 40 ms that Nagle
/// and delayed ACK cost (see `ChannelConfig::handshake_nudge`), and the
/// extra VPADDING leaves the channel in working order.
async fn nudged_handshakes(manifest: &Manifest) -> Result<(), String> {
    let config = ChannelConfig {
        connect_timeout: CONNECT_TIMEOUT,
        handshake_nudge: Some(Duration::from_millis(1)),
        ..ChannelConfig::default()
    };
    let mut times = Vec::new();
    for r in &manifest.relays {
        let (handle, _) = Channel::connect_with(addr(r), identity(r), &config)
            .await
            .map_err(|e| format!("{}: {e}", r.nickname))?;
        let info = handle.info();
        times.push(ms(info.handshake_time - info.tls_time));
        check(info.outcome.link_version == 5, || "link version".into())?;
        create_fast_once(&handle).await?;
    }
    println!("    link handshake after TLS, nudged: {times:.1?} ms");
    Ok(())
}

/// One CREATE_FAST / CREATED_FAST on a new circuit of `handle`.
async fn create_fast_once(handle: &ChannelHandle) -> Result<(), String> {
    let (id, mut io) = handle.open_circuit().await.map_err(|e| e.to_string())?;
    let (state, body) = fast::client_handshake(&mut rand::rng());
    io.tx
        .send(CreateFast::new(body.to_vec()).into())
        .await
        .map_err(|_| format!("{id}: send failed"))?;
    match tokio::time::timeout(Duration::from_secs(10), io.rx.recv()).await {
        Ok(Some(AnyChanMsg::CreatedFast(c))) => state
            .finish(&c.into_handshake())
            .map(|_| ())
            .map_err(|e| format!("{id}: {e}")),
        other => Err(format!("{id}: got {other:?}")),
    }
}

fn rustls_tls13() -> rustls::ProtocolVersion {
    rustls::ProtocolVersion::TLSv1_3
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Expecting another relay's RSA or Ed25519 identity fails the handshake
/// with WrongRsaIdentity / WrongEd25519Identity, naming what was found.
async fn wrong_identities(manifest: &Manifest) -> Result<(), String> {
    let (a, b) = (&manifest.relays[0], &manifest.relays[1]);
    let mut wrong = identity(a);
    wrong.rsa = identity(b).rsa;
    let start = Instant::now();
    match Channel::connect(addr(a), wrong, CONNECT_TIMEOUT).await {
        Err(ChannelDriverError::Handshake {
            source: ChannelError::WrongRsaIdentity { expected, found },
            ..
        }) => {
            check(
                expected == identity(b).rsa && found == identity(a).rsa,
                || format!("wrong ids reported: expected {expected}, found {found}"),
            )?;
            println!("    wrong RSA id refused in {:.1} ms", ms(start.elapsed()));
        }
        Err(e) => return Err(format!("wrong RSA id: unexpected error {e}")),
        Ok(_) => return Err("wrong RSA id accepted".into()),
    }

    let mut wrong = identity(a);
    wrong.ed25519 = identity(b).ed25519;
    match Channel::connect(addr(a), wrong, CONNECT_TIMEOUT).await {
        Err(e) => check(
            matches!(
                e.channel_error(),
                Some(ChannelError::WrongEd25519Identity { .. })
            ),
            || format!("wrong Ed25519 id: unexpected error {e}"),
        )?,
        Ok(_) => return Err("wrong Ed25519 id accepted".into()),
    }

    // Without an Ed25519 identity to check, the RSA one suffices.
    let mut rsa_only = identity(a);
    rsa_only.ed25519 = None;
    let (handle, _) = Channel::connect(addr(a), rsa_only, CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("RSA-only expectation: {e}"))?;
    check(
        Some(handle.outcome().peer.ed25519) == identity(a).ed25519,
        || "RSA-only expectation: Ed25519 id not reported".into(),
    )
}

/// CREATE_FAST on several circuits of one channel at once; each gets its
/// own CREATED_FAST, whose KH checks out. Then the circuits are closed
/// (DESTROY) and one more is created on the same channel.
async fn create_fast(manifest: &Manifest) -> Result<(), String> {
    let relay = manifest
        .relays
        .iter()
        .find(|r| r.exit)
        .unwrap_or(&manifest.relays[0]);
    let handle = connect(relay).await?;
    let mut circuits = Vec::new();
    for _ in 0..4 {
        let (id, io) = handle.open_circuit().await.map_err(|e| e.to_string())?;
        check(id.high_bit(), || format!("{id} lacks the initiator bit"))?;
        let (state, body) = fast::client_handshake(&mut rand::rng());
        io.tx
            .send(CreateFast::new(body.to_vec()).into())
            .await
            .map_err(|_| format!("{id}: send failed"))?;
        circuits.push((id, io, state, Instant::now()));
    }
    let mut open = Vec::new();
    for (id, mut io, state, sent) in circuits {
        let reply = tokio::time::timeout(Duration::from_secs(10), io.rx.recv())
            .await
            .map_err(|_| format!("{id}: no answer in 10 s"))?
            .ok_or_else(|| format!("{id}: circuit ended: {:?}", handle.close_reason()))?;
        let AnyChanMsg::CreatedFast(created) = reply else {
            return Err(format!("{id}: got {} instead of CREATED_FAST", reply.cmd()));
        };
        state
            .finish(&created.into_handshake())
            .map_err(|e| format!("{id}: CREATED_FAST does not verify: {e}"))?;
        println!(
            "    {id}: CREATED_FAST from {} after {:.1} ms",
            relay.nickname,
            ms(sent.elapsed())
        );
        open.push((id, io));
    }
    for (id, _) in &open {
        let was_open = handle
            .close_circuit(*id, DestroyReason::NONE)
            .await
            .map_err(|e| e.to_string())?;
        check(was_open, || format!("{id} was not open"))?;
    }
    for (id, io) in &mut open {
        let end = tokio::time::timeout(Duration::from_secs(5), io.rx.recv())
            .await
            .map_err(|_| format!("{id}: queue did not end after close"))?;
        check(end.is_none(), || format!("{id}: cell after close"))?;
    }
    // The channel is still good.
    create_fast_once(&handle).await
}

/// A port nobody listens on: refused at once.
async fn closed_port() -> Result<(), String> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let expected = ExpectedIdentity {
        rsa: RsaIdentity::from_bytes(&[1; 20]).expect("20 bytes"),
        ed25519: None,
    };
    let start = Instant::now();
    let limit = Duration::from_secs(5);
    let result = tokio::time::timeout(
        limit + Duration::from_secs(1),
        Channel::connect(addr, expected, limit),
    )
    .await
    .map_err(|_| "connect overran its timeout".to_string())?;
    let elapsed = start.elapsed();
    match result {
        Err(ChannelDriverError::Connect { source, .. }) => {
            println!("    refused in {:.2} ms: {source}", ms(elapsed));
            check(elapsed < limit, || format!("took {elapsed:?}"))
        }
        Err(e) => Err(format!("unexpected error {e}")),
        Ok(_) => Err("connected to a closed port".into()),
    }
}

/// A port that accepts TCP but never answers TLS: the connect times out in
/// the TLS phase, on time.
async fn silent_port() -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let expected = ExpectedIdentity {
        rsa: RsaIdentity::from_bytes(&[1; 20]).expect("20 bytes"),
        ed25519: None,
    };
    let limit = Duration::from_millis(800);
    let start = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        Channel::connect(addr, expected, limit),
    )
    .await
    .map_err(|_| "connect overran its timeout".to_string());
    hold.abort();
    let elapsed = start.elapsed();
    match result? {
        Err(ChannelDriverError::Timeout {
            phase: ConnectPhase::Tls,
            ..
        }) => check(elapsed < limit + Duration::from_millis(500), || {
            format!("timed out after {elapsed:?}")
        }),
        Err(e) => Err(format!("unexpected error {e}")),
        Ok(_) => Err("handshake with a silent server succeeded".into()),
    }
}

/// A channel left idle for longer than C-tor's padding timeout (1.5-9.5 s)
/// stays open (padding is ignored) and still carries a circuit.
async fn idle_channel(manifest: &Manifest) -> Result<(), String> {
    let relay = &manifest.relays[2];
    let handle = connect(relay).await?;
    // A circuit makes the channel one C-tor pads; a registered circuit
    // stays silent, too.
    create_fast_once(&handle).await?;
    let (_id, _io) = handle.open_circuit().await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    check(!handle.is_closed(), || {
        format!("closed while idle: {:?}", handle.close_reason())
    })?;
    create_fast_once(&handle).await?;
    let stats = handle.stats();
    println!("    after 12 s idle: {stats:?}");
    // C-tor 0.4.9 relays were not seen to pad such a channel within 12 s,
    // so padding is not required here; the unit tests cover ignoring it.
    check(stats.overflow_closes == 0, || format!("{stats:?}"))
}

/// SIGKILL a relay with an open channel and circuit: the circuit's queue
/// ends and the handle says the connection went away.
async fn relay_killed(manifest: &Manifest, dir: &std::path::Path) -> Result<(), String> {
    let relay = manifest
        .relays
        .iter()
        .rfind(|r| !r.exit)
        .ok_or("no relay")?;
    let handle = connect(relay).await?;
    let (_id, mut io) = handle.open_circuit().await.map_err(|e| e.to_string())?;
    let record = read_records(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|r| r.name == relay.nickname)
        .ok_or_else(|| format!("no pid recorded for {}", relay.nickname))?;
    let status = Command::new("kill")
        .args(["-KILL", &record.pid.to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    check(status.success(), || {
        format!("kill {}: {status}", record.pid)
    })?;
    let start = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), io.rx.recv())
        .await
        .map_err(|_| "circuit queue did not end within 10 s".to_string())?;
    check(end.is_none(), || "a cell instead of the end".into())?;
    let reason = handle.close_reason().ok_or("handle has no close reason")?;
    println!(
        "    {} killed: channel closed after {:.1} ms: {reason}",
        relay.nickname,
        ms(start.elapsed())
    );
    check(
        matches!(reason, CloseReason::Eof | CloseReason::Io(_)),
        || format!("close reason {reason}"),
    )?;
    match handle.open_circuit().await {
        Err(ChannelDriverError::Closed(_)) => Ok(()),
        other => Err(format!("open_circuit on a dead channel: {other:?}")),
    }
}
