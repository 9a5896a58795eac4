//! Key directories shared with C-tor (Debian's tor 0.4.9): keys made by
//! `tor --list-fingerprint` load in Braid with the identities tor printed,
//! and tor reads a directory Braid made, printing Braid's identities and
//! leaving the keys as they were.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests"
)]

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use braid_dir::descriptor::{Bandwidth, DescriptorInfo, ExitPolicy, build_descriptor};
use braid_relay::keys::keys_dir;
use braid_relay::{KeysOpened, RelayKeys};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-ctor-keys-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run `tor --list-fingerprint` on `data_dir`; tor needs a torrc file
/// (`-f /dev/null` is refused), an empty one will do.
fn tor_list_fingerprint(base: &Path, data_dir: &Path) -> String {
    let torrc = base.join("torrc");
    fs::write(&torrc, "").unwrap();
    let out = Command::new("tor")
        .arg("--list-fingerprint")
        .arg("-f")
        .arg(&torrc)
        .arg("--DataDirectory")
        .arg(data_dir)
        .args(["--ORPort", "127.0.0.1:9999", "--Nickname", "braidkeys"])
        .args(["--Log", "notice stdout"])
        .output()
        .expect("tor is installed (Debian's tor 0.4.9)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tor --list-fingerprint failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The second word of the one-line file `name` in `data_dir` ("NICK ID").
fn id_file(data_dir: &Path, name: &str) -> String {
    let text = fs::read_to_string(data_dir.join(name)).unwrap();
    let mut words = text.split_whitespace();
    assert_eq!(words.next(), Some("braidkeys"));
    words.next().unwrap().to_owned()
}

fn info(published: SystemTime) -> DescriptorInfo {
    DescriptorInfo {
        nickname: "braidkeys".into(),
        address: Ipv4Addr::LOCALHOST,
        or_port: 9999,
        bandwidth: Bandwidth {
            average: 100_000,
            burst: 100_000,
            observed: 0,
        },
        platform: "Braid 0.1.0 on Linux".into(),
        proto: "Link=4-5".into(),
        exit_policy: ExitPolicy::reject_all(),
        contact: None,
        hidden_service_dir: false,
        tunnelled_dir_server: false,
        uptime: 0,
        published,
    }
}

#[test]
fn braid_loads_the_keys_tor_made() {
    let base = temp("from-tor");
    let data = base.join("data");
    let out = tor_list_fingerprint(&base, &data);
    let rsa = id_file(&data, "fingerprint");
    let ed = id_file(&data, "fingerprint-ed25519");

    let keys = RelayKeys::load(&keys_dir(&data)).unwrap();
    assert_eq!(keys.rsa_identity().as_hex_upper(), rsa);
    assert_eq!(keys.ed_identity().to_string(), ed);
    assert!(keys.master_secret().is_some());
    println!("tor made {rsa} / {ed}; Braid loads the same identities");
    assert!(out.contains(&rsa), "{out}");

    // tor's signing-key certificate is good for our descriptor.
    let now = SystemTime::now();
    let d = build_descriptor(&keys.descriptor_keys(), &info(now)).unwrap();
    assert_eq!(d.rsa_identity(), keys.rsa_identity());
    assert!(keys.signing_cert_expiry() > now + Duration::from_secs(20 * 86400));

    // Opening does not touch a fresh directory.
    let (_, how) = RelayKeys::open(&keys_dir(&data), &mut rand::rng(), now).unwrap();
    assert_eq!(how, KeysOpened::Loaded);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn tor_reads_the_keys_braid_made() {
    let base = temp("from-braid");
    let data = base.join("data");
    let keys_path = keys_dir(&data);
    let (keys, how) = RelayKeys::open(&keys_path, &mut rand::rng(), SystemTime::now()).unwrap();
    assert_eq!(how, KeysOpened::Generated);
    fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&keys_path)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();

    let out = tor_list_fingerprint(&base, &data);
    let rsa = keys.rsa_identity().as_hex_upper();
    let ed = keys.ed_identity().to_string();
    assert_eq!(id_file(&data, "fingerprint"), rsa, "{out}");
    assert_eq!(id_file(&data, "fingerprint-ed25519"), ed, "{out}");
    assert!(
        !out.contains("need to generate"),
        "tor made new keys instead of reading ours: {out}"
    );
    for (path, bytes) in &before {
        assert_eq!(&fs::read(path).unwrap(), bytes, "tor rewrote {path:?}");
    }
    println!("Braid made {rsa} / {ed}; tor --list-fingerprint prints the same");
    fs::remove_dir_all(&base).unwrap();
}
