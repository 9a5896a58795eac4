#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::UNIX_EPOCH;

use braid_dir::descriptor::{DescriptorInfo, ExitPolicy, build_descriptor};

use super::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-keys-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn open_generates_stores_and_loads_the_same_identity() {
    let dir = temp("open");
    let keys_dir = keys_dir(&dir);
    let (keys, how) = RelayKeys::open(&keys_dir, &mut rand::rng(), t0()).unwrap();
    assert_eq!(how, KeysOpened::Generated);
    assert_eq!(mode(&keys_dir), 0o700);
    for f in REQUIRED.iter().chain(&[MASTER_SECRET, MASTER_PUBLIC]) {
        assert_eq!(mode(&keys_dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        keys.signing_cert_expiry(),
        t0() + SIGNING_KEY_LIFETIME,
        "expiry rounds up to the hour; t0 is on one"
    );

    let (again, how) = RelayKeys::open(&keys_dir, &mut rand::rng(), t0()).unwrap();
    assert_eq!(how, KeysOpened::Loaded);
    assert_eq!(again.rsa_identity(), keys.rsa_identity());
    assert_eq!(again.ed_identity(), keys.ed_identity());
    assert_eq!(again.signing_cert(), keys.signing_cert());
    assert_eq!(
        again.signing().to_secret_key_bytes(),
        keys.signing().to_secret_key_bytes()
    );
    assert_eq!(again.ntor().public, keys.ntor().public);
    assert_eq!(
        again.tap_onion().to_public_key(),
        keys.tap_onion().to_public_key()
    );
    assert!(again.master_secret().is_some());
    assert!(again.ntor_previous().is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_signing_key_is_renewed_near_expiry_and_stored() {
    let dir = temp("renew");
    let (keys, _) = RelayKeys::open(&dir, &mut rand::rng(), t0()).unwrap();
    let late = keys.signing_cert_expiry() - SIGNING_KEY_SLOP + Duration::from_secs(1);
    let (renewed, how) = RelayKeys::open(&dir, &mut rand::rng(), late).unwrap();
    assert_eq!(how, KeysOpened::RenewedSigningKey);
    assert_eq!(renewed.ed_identity(), keys.ed_identity());
    assert_eq!(renewed.rsa_identity(), keys.rsa_identity());
    assert_ne!(renewed.signing().public(), keys.signing().public());
    assert!(renewed.signing_cert_expiry() >= late + SIGNING_KEY_LIFETIME);
    let loaded = RelayKeys::load(&dir).unwrap();
    assert_eq!(loaded.signing_cert(), renewed.signing_cert());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_offline_master_key_loads_but_cannot_renew() {
    let dir = temp("offline");
    let (keys, _) = RelayKeys::open(&dir, &mut rand::rng(), t0()).unwrap();
    fs::remove_file(dir.join(MASTER_SECRET)).unwrap();
    let loaded = RelayKeys::load(&dir).unwrap();
    assert_eq!(loaded.ed_identity(), keys.ed_identity());
    assert!(loaded.master_secret().is_none());
    let e = RelayKeys::open(&dir, &mut rand::rng(), keys.signing_cert_expiry()).unwrap_err();
    assert!(matches!(e, KeyError::CannotRenew { .. }), "{e}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn incomplete_mismatched_and_malformed_directories_are_refused() {
    let dir = temp("bad");
    RelayKeys::open(&dir, &mut rand::rng(), t0()).unwrap();
    let tap = fs::read(dir.join(TAP_KEY)).unwrap();
    fs::remove_file(dir.join(TAP_KEY)).unwrap();
    let e = RelayKeys::open(&dir, &mut rand::rng(), t0()).unwrap_err();
    assert!(
        matches!(&e, KeyError::Incomplete { missing, .. } if missing == &[TAP_KEY.to_owned()]),
        "{e}"
    );
    assert!(!dir.join(TAP_KEY).exists(), "nothing was generated");
    fs::write(dir.join(TAP_KEY), tap).unwrap();

    // The certificate of another identity.
    let other = temp("other");
    RelayKeys::open(&other, &mut rand::rng(), t0()).unwrap();
    let cert = fs::read(dir.join(SIGNING_CERT)).unwrap();
    fs::copy(other.join(SIGNING_CERT), dir.join(SIGNING_CERT)).unwrap();
    let e = RelayKeys::load(&dir).unwrap_err();
    assert!(
        matches!(&e, KeyError::Mismatch(m) if m.contains("does not certify")),
        "{e}"
    );
    fs::write(dir.join(SIGNING_CERT), &cert).unwrap();
    // Another master key beside the right certificate.
    let master = fs::read(dir.join(MASTER_SECRET)).unwrap();
    fs::copy(other.join(MASTER_SECRET), dir.join(MASTER_SECRET)).unwrap();
    let e = RelayKeys::load(&dir).unwrap_err();
    assert!(
        matches!(&e, KeyError::Mismatch(m) if m.contains(MASTER_SECRET)),
        "{e}"
    );
    fs::write(dir.join(MASTER_SECRET), master).unwrap();
    let public = fs::read(dir.join(MASTER_PUBLIC)).unwrap();
    fs::copy(other.join(MASTER_PUBLIC), dir.join(MASTER_PUBLIC)).unwrap();
    let e = RelayKeys::load(&dir).unwrap_err();
    assert!(
        matches!(&e, KeyError::Mismatch(m) if m.contains(MASTER_PUBLIC)),
        "{e}"
    );
    fs::write(dir.join(MASTER_PUBLIC), public).unwrap();
    fs::remove_dir_all(&other).unwrap();
    RelayKeys::load(&dir).unwrap();

    // Damaged files.
    let ntor = fs::read(dir.join(NTOR_KEY)).unwrap();
    for (bytes, needle) in [
        (ntor[..80].to_vec(), "expected 64"),
        ([&ntor[..64], &[0; 32][..]].concat(), "does not match"),
        (
            [&encode_tagged("c25519v1", "other", &[])[..], &ntor[32..]].concat(),
            "tag",
        ),
    ] {
        fs::write(dir.join(NTOR_KEY), bytes).unwrap();
        let e = RelayKeys::load(&dir).unwrap_err();
        assert!(
            matches!(&e, KeyError::Malformed { detail, .. } if detail.contains(needle)),
            "{needle}: {e}"
        );
    }
    fs::write(dir.join(NTOR_KEY), &ntor).unwrap();
    fs::write(dir.join(ID_KEY), "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n").unwrap();
    let e = RelayKeys::load(&dir).unwrap_err();
    assert!(
        matches!(&e, KeyError::Malformed { detail, .. } if detail.contains("PEM")),
        "{e}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_previous_ntor_key_is_kept() {
    let dir = temp("ntor-old");
    let (keys, _) = RelayKeys::open(&dir, &mut rand::rng(), t0()).unwrap();
    let other = generate_ntor(&mut rand::rng());
    fs::write(dir.join(NTOR_KEY_OLD), &*ntor_file(&other)).unwrap();
    let loaded = RelayKeys::load(&dir).unwrap();
    assert_eq!(loaded.ntor_previous().unwrap().public, other.public);
    assert_eq!(loaded.ntor().public, keys.ntor().public);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn onion_keys_rotate_are_stored_and_expire() {
    let dir = temp("rotate");
    let (mut keys, _) = RelayKeys::open(&dir, &mut rand::rng(), t0()).unwrap();
    let set_at = RelayKeys::load(&dir).unwrap().onion_set_at();
    assert!(set_at > UNIX_EPOCH, "the key file's time is read");
    let (ntor, tap) = (keys.ntor().public, keys.tap_onion().to_public_key());
    let later = t0() + Duration::from_secs(28 * 86_400);
    keys.rotate_onion_keys(&mut rand::rng(), later).unwrap();
    assert_eq!(keys.onion_set_at(), later);
    assert_ne!(keys.ntor().public, ntor);
    assert_eq!(keys.ntor_previous().unwrap().public, ntor);
    assert_ne!(keys.tap_onion().to_public_key(), tap);
    // Both ntor keys answer CREATE2; the descriptor names the new one.
    assert_eq!(keys.onion_keys().ntor.len(), 2);
    keys.store_onion_keys(&dir).unwrap();
    for f in [NTOR_KEY, NTOR_KEY_OLD, TAP_KEY] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let back = RelayKeys::load(&dir).unwrap();
    assert_eq!(back.ntor().public, keys.ntor().public);
    assert_eq!(back.ntor_previous().unwrap().public, ntor);
    assert_eq!(
        back.tap_onion().to_public_key(),
        keys.tap_onion().to_public_key()
    );
    assert_eq!(back.rsa_identity(), keys.rsa_identity(), "same identity");

    keys.expire_previous_onion_key();
    assert!(keys.ntor_previous().is_none());
    assert_eq!(keys.onion_keys().ntor.len(), 1);
    keys.store_onion_keys(&dir).unwrap();
    assert!(!dir.join(NTOR_KEY_OLD).exists());
    assert!(RelayKeys::load(&dir).unwrap().ntor_previous().is_none());
    // Expiring twice (no file left) is fine.
    keys.store_onion_keys(&dir).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_keys_make_a_descriptor() {
    let keys = RelayKeys::generate(&mut rand::rng(), t0()).unwrap();
    let info = DescriptorInfo {
        nickname: "braidtest".into(),
        address: std::net::Ipv4Addr::LOCALHOST,
        or_port: 9001,
        bandwidth: braid_dir::descriptor::Bandwidth {
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
        published: t0() + Duration::from_secs(60),
    };
    let d = build_descriptor(&keys.descriptor_keys(), &info).unwrap();
    assert_eq!(d.rsa_identity(), keys.rsa_identity());
    assert_eq!(d.ed_identity(), keys.ed_identity());
    // After the certificate's expiry the descriptor cannot be made.
    let late = DescriptorInfo {
        published: keys.signing_cert_expiry() + Duration::from_secs(1),
        ..info
    };
    assert!(build_descriptor(&keys.descriptor_keys(), &late).is_err());
}
