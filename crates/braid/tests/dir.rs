//! Braid's directory bootstrap against a private network of real C-tor
//! authorities and relays on 127.0.0.1: verified documents, the relay set
//! matching network.toml, the cache, refusals of real documents altered, and
//! `braid dir`. One network serves every check; it is stopped by pid at the
//! end (and by the handle's Drop if a check fails).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use braid_client::{ClientConfig, ClientError, DirCache, DirDriver, http};
use braid_dir::documents::{parse_certs, parse_consensus, parse_microdescs};
use braid_dir::{DirEvent, DocError, DocKind, RelayFlags, RelayId};
use braid_testnet::{Manifest, NetworkConfig, launcher};
use common::test_dir;

const BRAID: &str = env!("CARGO_BIN_EXE_braid");

fn hex_id(hex: &str) -> RelayId {
    hex.parse().unwrap()
}

/// Every relay and authority of the manifest, by RSA identity.
fn manifest_ids(m: &Manifest) -> BTreeSet<RelayId> {
    m.authorities
        .iter()
        .map(|a| hex_id(&a.fingerprint))
        .chain(m.relays.iter().map(|r| hex_id(&r.fingerprint)))
        .collect()
}

async fn bootstrap(
    config: &ClientConfig,
    cache: bool,
) -> (DirDriver, braid_client::BootstrapReport) {
    let mut driver = DirDriver::new(config, cache).unwrap();
    let report = driver
        .bootstrap(Duration::from_secs(60), |ev| {
            if let DirEvent::Progress(p) = ev {
                println!("  braid: {p}");
            }
        })
        .await
        .unwrap();
    (driver, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braid_bootstraps_the_directory_of_a_private_network() {
    let mut config = NetworkConfig::new(test_dir("dir"), BRAID);
    config.base_port = 25000;
    config.timeout = Duration::from_secs(180);
    let network = tokio::time::timeout(Duration::from_secs(240), launcher::up(&config))
        .await
        .expect("network start-up took more than 240 s")
        .unwrap();
    let dir = network.dir().to_path_buf();
    let manifest = network.manifest().clone();
    let toml = dir.join("network.toml");
    let mut client = ClientConfig::load(&toml).unwrap();
    client.cache_dir = dir.join("braid-cache");

    // 1. A cold bootstrap reaches 100% and holds exactly the network's relays.
    let (mut driver, report) = bootstrap(&client, true).await;
    assert_eq!(report.progress.percent, 100);
    assert!(report.from_cache.is_empty());
    let netdir = driver.netdir().unwrap();
    let relays = netdir.relays();
    let ids: BTreeSet<RelayId> = relays.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        manifest_ids(&manifest),
        "relay set differs from network.toml"
    );
    for entry in &manifest.relays {
        let r = relays
            .iter()
            .find(|r| r.id == hex_id(&entry.fingerprint))
            .unwrap();
        assert_eq!(r.addr.port(), entry.or_port, "{}", entry.nickname);
        assert_eq!(
            r.has_flags(RelayFlags::EXIT),
            entry.exit,
            "{}",
            entry.nickname
        );
        assert_eq!(
            r.has_flags(RelayFlags::GUARD),
            entry.guard,
            "{}",
            entry.nickname
        );
        assert!(r.ntor_key.is_some() && r.ed_id.is_some());
        let ed = tor_llcrypto::pk::ed25519::Ed25519Identity::from_base64(&entry.ed25519).unwrap();
        assert_eq!(
            r.ed_id.unwrap().as_bytes()[..],
            ed.as_bytes()[..],
            "{}",
            entry.nickname
        );
    }
    let ctor = braid_testnet::ctor_log::bootstrap_phases_of(&dir.join("nodes/client/tor.log"));
    let ctor_dirinfo = ctor.iter().find(|p| p.tag == "enough_dirinfo");
    let ctor_done = ctor.iter().find(|p| p.percent == 100);
    println!(
        "bootstrap: braid directory complete in {:.3} s ({} fetches); C-tor client: enough_dirinfo {:?}, 100% {:?} after start",
        report.elapsed.as_secs_f64(),
        report.fetches,
        ctor_dirinfo.map(|p| p.since_start),
        ctor_done.map(|p| p.since_start),
    );

    // The directory stays fresh: with a 10 s voting interval a consensus
    // lives 20 s, so within 25 s at least one newer one is fetched, verified
    // and adopted (dir-spec §5.1 refresh times).
    let first_valid_after = driver.netdir().unwrap().lifetime().valid_after;
    let mut adopted = 0;
    driver
        .keep_fresh(Duration::from_secs(25), |ev| {
            if matches!(ev, DirEvent::NewConsensus { .. }) {
                adopted += 1;
            }
        })
        .await;
    let now_valid_after = driver.netdir().unwrap().lifetime().valid_after;
    println!("refresh: {adopted} newer consensuses adopted in 25 s");
    assert!(adopted >= 1 && now_valid_after > first_valid_after);
    assert!(driver.state().is_done(), "{:?}", driver.state().progress());
    assert!(
        driver
            .netdir()
            .unwrap()
            .lifetime()
            .is_valid_at(SystemTime::now())
    );

    // 2. A warm start takes certificates and microdescriptors from the cache.
    let (_, warm) = bootstrap(&client, true).await;
    assert!(
        warm.from_cache.contains(&DocKind::AuthorityCert),
        "{warm:?}"
    );
    assert!(warm.from_cache.contains(&DocKind::Microdesc), "{warm:?}");
    println!(
        "bootstrap from cache: {:.3} s, {} fetches",
        warm.elapsed.as_secs_f64(),
        warm.fetches
    );

    // 3. Corrupt cache files are set aside and refetched.
    let cache = DirCache::open(&client.cache_dir).unwrap();
    let certs = cache.load(DocKind::AuthorityCert).unwrap().unwrap();
    std::fs::write(
        cache.path(DocKind::AuthorityCert),
        &certs[..certs.len() / 2],
    )
    .unwrap();
    std::fs::write(
        cache.path(DocKind::Consensus),
        "network-status-version 3 microdesc\nx\n",
    )
    .unwrap();
    let (_, repaired) = bootstrap(&client, true).await;
    assert!(
        repaired.quarantined.contains(&DocKind::AuthorityCert),
        "{repaired:?}"
    );
    assert!(
        repaired.quarantined.contains(&DocKind::Consensus),
        "{repaired:?}"
    );
    assert_eq!(repaired.progress.percent, 100);
    assert!(dir.join("braid-cache/authority-certs.corrupt").exists());
    let good_again = cache.load(DocKind::AuthorityCert).unwrap().unwrap();
    assert_eq!(good_again.matches("dir-key-certificate-version").count(), 3);

    // 4. Real documents, altered, are refused.
    altered_documents_are_refused(&manifest).await;

    // 5. Unreachable authorities: one dead DirPort is routed around; all
    //    dead gives a clear error in bounded time.
    unreachable_authorities(&toml, &dir).await;

    // 6. The CLI.
    let out = Command::new(BRAID)
        .args(["dir", "--config"])
        .arg(&toml)
        .args(["--port", "80"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Bootstrapped 100% (done)"));
    assert!(stdout.contains("relays: 11 listed, 11 with microdescriptors"));
    assert!(stdout.contains("exits allowing port 80: 3"));
    assert!(stdout.contains("guards: 5 sampled, primary "), "{stdout}");
    let paths: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" > "))
        .collect();
    assert_eq!(paths.len(), 3, "{stdout}");

    network.down().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
    http::get(addr, path, 16 << 20, Duration::from_secs(10))
        .await
        .unwrap()
}

async fn altered_documents_are_refused(m: &Manifest) {
    let a = &m.authorities[0];
    let addr = std::net::SocketAddr::from((a.address, a.dir_port));
    let ids: Vec<RelayId> = m.authorities.iter().map(|a| hex_id(&a.v3ident)).collect();
    let consensus = fetch(addr, "/tor/status-vote/current/consensus-microdesc").await;
    let certs_text = fetch(addr, "/tor/keys/all").await;
    let now = SystemTime::now();
    let (certs, bad) = parse_certs(&certs_text, &ids, now);
    assert!(bad.is_empty(), "{bad:?}");
    let certs: Vec<_> = certs.into_iter().map(|c| c.cert).collect();
    let verified = parse_consensus(&consensus, &ids, now)
        .unwrap()
        .verify(&consensus, &certs, &ids)
        .unwrap();

    // Signed by too few: keep only the first signature block.
    let first = consensus.find("directory-signature ").unwrap();
    let second = consensus[first + 1..].find("directory-signature ").unwrap() + first + 1;
    let one_sig = &consensus[..second];
    let err = parse_consensus(one_sig, &ids, now).unwrap_err();
    assert!(
        matches!(
            err,
            DocError::TooFewSignatures {
                found: 1,
                needed: 2,
                ..
            }
        ),
        "{err}"
    );
    println!("refused: {err}");

    // Expired: checked one second after its valid-until.
    let late = verified.lifetime.valid_until + Duration::from_secs(1);
    let err = parse_consensus(&consensus, &ids, late).unwrap_err();
    assert!(matches!(err, DocError::NotTimely { .. }), "{err}");
    println!("refused: {err}");

    // Altered body: signatures no longer verify.
    let altered = consensus.replacen("Bandwidth=", "Bandwidth=9", 1);
    let err = parse_consensus(&altered, &ids, now)
        .unwrap()
        .verify(&altered, &certs, &ids)
        .unwrap_err();
    assert!(matches!(err, DocError::BadSignature { .. }), "{err}");
    println!("refused: {err}");

    // A tampered microdescriptor: its digest is not in the consensus.
    let digests: Vec<&str> = consensus
        .lines()
        .filter_map(|l| l.strip_prefix("m "))
        .collect();
    let mds = fetch(addr, &format!("/tor/micro/d/{}", digests.join("-"))).await;
    let dir = braid_dir::NetDir::new(verified, None);
    let wanted = dir.wanted_digests();
    let (good, bad) = parse_microdescs(&mds, &wanted);
    assert_eq!(good.len(), digests.len());
    assert!(bad.is_empty());
    let tampered = mds.replacen("p accept", "p reject", 1);
    let (good, bad) = parse_microdescs(&tampered, &wanted);
    assert_eq!(good.len(), digests.len() - 1);
    assert!(
        matches!(bad.as_slice(), [DocError::UnlistedMicrodesc { .. }]),
        "{bad:?}"
    );
    println!("refused: {}", bad[0]);
}

/// `network.toml` without its `[[fallback]]` tables: the authorities'
/// DirPorts are then the only sources.
fn without_fallbacks(text: &str) -> String {
    let mut out = String::new();
    let mut in_fallback = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_fallback = line == "[[fallback]]";
        }
        if !in_fallback {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn unreachable_authorities(toml: &Path, dir: &Path) {
    let text = without_fallbacks(&std::fs::read_to_string(toml).unwrap());
    assert!(!text.contains("[[fallback]]") && text.contains("[[relay]]"));
    // A port nothing listens on (the network uses base+0..base+140).
    let dead_port = "24999";
    let first_dir_port = text
        .lines()
        .find_map(|l| l.strip_prefix("dir_port = "))
        .unwrap()
        .to_owned();
    let one_dead = text.replacen(
        &format!("dir_port = {first_dir_port}"),
        &format!("dir_port = {dead_port}"),
        1,
    );
    let path = dir.join("one-dead.toml");
    std::fs::write(&path, one_dead).unwrap();
    let config = ClientConfig::load(&path).unwrap();
    let (_, report) = bootstrap(&config, false).await;
    assert_eq!(report.progress.percent, 100);

    let all_dead: String = text
        .lines()
        .map(|l| {
            if l.starts_with("dir_port = ") {
                format!("dir_port = {dead_port}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("all-dead.toml");
    std::fs::write(&path, all_dead).unwrap();
    let config = ClientConfig::load(&path).unwrap();
    let mut driver = DirDriver::new(&config, false).unwrap();
    let started = std::time::Instant::now();
    let err = driver
        .bootstrap(Duration::from_secs(3), |_| {})
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ClientError::BootstrapTimeout { last_problem, .. } = &err else {
        panic!("{err}");
    };
    assert!(last_problem.contains("refused"), "{err}");
    println!("all authorities dead: {err}");
}
