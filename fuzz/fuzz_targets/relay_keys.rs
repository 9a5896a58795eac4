//! A relay's key directory (`braid_relay::RelayKeys::load`, C-tor's
//! `keys/` layout): a valid directory made once by Braid, then one of its
//! files replaced by fuzz bytes, truncated, with a byte changed, or
//! removed, and loaded again.
//!
//! Invariants: no panic; the untouched directory loads with the identity
//! that was stored; a removed required file is an error; keys that load
//! always make a relay's link identity (`identity_keys`: the RSA->Ed25519
//! cross-certificate and the signing-key certificate check out) and onion
//! keys.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use braid_relay::RelayKeys;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

/// The files a key directory must hold (C-tor's names).
const REQUIRED: [&str; 5] = [
    "secret_id_key",
    "secret_onion_key",
    "secret_onion_key_ntor",
    "ed25519_signing_secret_key",
    "ed25519_signing_cert",
];

/// The valid directory, and its files' names and bytes.
fn original() -> &'static (PathBuf, Vec<(String, Vec<u8>)>) {
    static DIR: OnceLock<(PathBuf, Vec<(String, Vec<u8>)>)> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("braid-fuzz-keys-{}", std::process::id()));
        let dir = base.join("orig");
        let _ = std::fs::remove_dir_all(&base);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_258_700);
        let keys = RelayKeys::generate(&mut StdRng::seed_from_u64(3), now).expect("keys");
        keys.store(&dir).expect("store");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("read"),
                )
            })
            .collect();
        files.sort();
        let loaded = RelayKeys::load(&dir).expect("the stored keys load");
        assert_eq!(loaded.rsa_identity(), keys.rsa_identity());
        assert_eq!(loaded.ed_identity(), keys.ed_identity());
        (base, files)
    })
}

fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
}

fuzz_target!(|data: &[u8]| {
    let (base, files) = original();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut files = files.clone();
    let which = usize::from(sel) % files.len();
    let mode = sel / 64;
    let mut removed = None;
    match mode {
        0 => files[which].1 = rest.to_vec(),
        1 => {
            let n = rest.first().map_or(0, |&b| usize::from(b));
            let len = files[which].1.len();
            files[which].1.truncate(n * len / 256);
        }
        2 => {
            for pair in rest.chunks(3) {
                if let [hi, lo, x] = pair {
                    let len = files[which].1.len();
                    if len > 0 {
                        let at = usize::from(u16::from_be_bytes([*hi, *lo])) % len;
                        files[which].1[at] ^= x | 1;
                    }
                }
            }
        }
        _ => removed = Some(files.remove(which).0),
    }
    let dir = base.join("run");
    write_dir(&dir, &files);
    match RelayKeys::load(&dir) {
        Ok(keys) => {
            if let Some(name) = &removed {
                assert!(!REQUIRED.contains(&name.as_str()), "loaded without {name}");
            }
            keys.identity_keys()
                .expect("loaded keys always make the link identity");
            let _ = keys.onion_keys();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
