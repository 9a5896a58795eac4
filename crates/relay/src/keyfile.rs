//! C-tor's key file formats, so that C-tor tools and Braid read each
//! other's key directories:
//!
//! - the "tagged contents" format of ed25519 and curve25519 keys and
//!   certificates (`crypto_write_tagged_contents_to_file` in C-tor's
//!   `crypto_format.c`): a 32-byte header, the NUL-padded string
//!   `== TYPE: TAG ==`, then the raw bytes;
//! - PEM PKCS#1 `RSA PRIVATE KEY` for the RSA keys (`secret_id_key`,
//!   `secret_onion_key`).
//!
//! Files are written to a temporary name with mode 0600 and renamed into
//! place, so a crash never leaves half a key.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _, LineEnding};
use tor_llcrypto::pk::rsa::KeyPair as RsaKeyPair;
use zeroize::Zeroizing;

use crate::error::KeyError;

/// Length of the tagged-contents header.
const HEADER_LEN: usize = 32;

/// Largest key file we read: the biggest is a PEM RSA-1024 key (under 1
/// KiB); anything much larger is not a key.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// `== TYPE: TAG ==` padded with NULs to 32 bytes, then `data`.
pub(crate) fn encode_tagged(typestring: &str, tag: &str, data: &[u8]) -> Zeroizing<Vec<u8>> {
    let header = format!("== {typestring}: {tag} ==");
    let mut out = Zeroizing::new(Vec::with_capacity(HEADER_LEN + data.len()));
    out.extend_from_slice(header.as_bytes());
    out.resize(HEADER_LEN.max(header.len()), 0);
    out.extend_from_slice(data);
    out
}

/// Split a tagged file into its tag and data, checking the header as C-tor
/// does (`crypto_read_tagged_contents_from_file`).
pub(crate) fn decode_tagged<'a>(
    bytes: &'a [u8],
    typestring: &str,
) -> Result<(&'a str, &'a [u8]), String> {
    let (header, data) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or("shorter than the 32-byte header")?;
    let text_len = header.iter().position(|&b| b == 0).unwrap_or(HEADER_LEN);
    let (text, padding) = header.split_at(text_len);
    if padding.iter().any(|&b| b != 0) {
        return Err("header not NUL-padded".into());
    }
    let text = std::str::from_utf8(text).map_err(|_| "header is not text")?;
    let tag = text
        .strip_prefix("== ")
        .and_then(|t| t.strip_suffix(" =="))
        .and_then(|t| t.strip_prefix(typestring))
        .and_then(|t| t.strip_prefix(": "))
        .ok_or_else(|| format!("header {text:?} is not \"== {typestring}: TAG ==\""))?;
    Ok((tag, data))
}

/// Read a tagged file of type `typestring` whose tag must be `tag` and
/// whose data must be `N` bytes.
pub(crate) fn read_tagged<const N: usize>(
    path: &Path,
    typestring: &str,
    tag: &str,
) -> Result<Zeroizing<[u8; N]>, KeyError> {
    let bytes = read(path)?;
    let malformed = |detail: String| KeyError::Malformed {
        path: path.to_owned(),
        detail,
    };
    let (got_tag, data) = decode_tagged(&bytes, typestring).map_err(malformed)?;
    if got_tag != tag {
        return Err(malformed(format!("tag {got_tag:?}, expected {tag:?}")));
    }
    let mut out = Zeroizing::new([0_u8; N]);
    if data.len() != N {
        return Err(malformed(format!(
            "{} bytes after the header, expected {N}",
            data.len()
        )));
    }
    out.copy_from_slice(data);
    Ok(out)
}

/// Read a tagged file of type `typestring` and tag `tag` of any length
/// (certificates).
pub(crate) fn read_tagged_vec(
    path: &Path,
    typestring: &str,
    tag: &str,
) -> Result<Vec<u8>, KeyError> {
    let bytes = read(path)?;
    let malformed = |detail: String| KeyError::Malformed {
        path: path.to_owned(),
        detail,
    };
    let (got_tag, data) = decode_tagged(&bytes, typestring).map_err(malformed)?;
    if got_tag != tag {
        return Err(malformed(format!("tag {got_tag:?}, expected {tag:?}")));
    }
    Ok(data.to_vec())
}

/// Read a PEM `RSA PRIVATE KEY` (PKCS#1) and check it is RSA-1024 with
/// exponent 65537, as Tor's RSA keys must be.
pub(crate) fn read_rsa(path: &Path) -> Result<RsaKeyPair, KeyError> {
    let bytes = read(path)?;
    let malformed = |detail: String| KeyError::Malformed {
        path: path.to_owned(),
        detail,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not PEM text".into()))?;
    // C-tor's files end with a NUL after the PEM text.
    let text = text.trim_end_matches(|c: char| c == '\0' || c.is_ascii_whitespace());
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(text)
        .map_err(|e| malformed(format!("not a PEM RSA PRIVATE KEY: {e}")))?;
    let key = RsaKeyPair::from(key);
    let public = key.to_public_key();
    if public.bits() != 1024 || !public.exponent_is(65537) {
        return Err(malformed(format!(
            "RSA key of {} bits; Tor needs 1024 bits with exponent 65537",
            public.bits()
        )));
    }
    Ok(key)
}

/// PEM `RSA PRIVATE KEY` text of `key`, as C-tor writes it.
pub(crate) fn rsa_pem(key: &RsaKeyPair) -> Result<Zeroizing<String>, KeyError> {
    key.as_key()
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(format!("encoding an RSA key: {e}")))
}

/// Whether `path` exists (following symlinks); errors other than "not
/// found" count as existing, so the read that follows reports them.
pub(crate) fn exists(path: &Path) -> bool {
    !matches!(fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let len = fs::metadata(path).map_err(io)?.len();
    if len > MAX_KEY_FILE {
        return Err(KeyError::Malformed {
            path: path.to_owned(),
            detail: format!("{len} bytes: too large for a key file"),
        });
    }
    fs::read(path).map(Zeroizing::new).map_err(io)
}

/// Create `dir` (and its parents) if needed and make it private (0700), as
/// C-tor requires of its key directory.
pub(crate) fn private_dir(dir: &Path) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: dir.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Write `data` to `path` with mode 0600: to `path.tmp` first, synced,
/// then renamed over `path`.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn tagged_round_trip_and_checks() {
        let enc = encode_tagged("c25519v1", "onion", &[7; 64]);
        assert_eq!(enc.len(), 96);
        assert_eq!(&enc[..21], b"== c25519v1: onion ==");
        assert!(enc[21..32].iter().all(|&b| b == 0));
        let (tag, data) = decode_tagged(&enc, "c25519v1").unwrap();
        assert_eq!(tag, "onion");
        assert_eq!(data, &[7; 64]);

        assert!(decode_tagged(&enc, "ed25519v1-secret").is_err());
        assert!(decode_tagged(&enc[..20], "c25519v1").is_err());
        let mut bad = enc.clone();
        bad[30] = b'x';
        assert!(decode_tagged(&bad, "c25519v1").unwrap_err().contains("NUL"));
        let mut bad = enc.clone();
        bad[0] = b'-';
        assert!(decode_tagged(&bad, "c25519v1").is_err());
        let mut bad = enc.to_vec();
        bad[2] = 0xff;
        bad[3..32].fill(0);
        assert!(decode_tagged(&bad, "c25519v1").is_err());
    }

    #[test]
    fn private_files_and_dirs() {
        let dir = std::env::temp_dir().join(format!("braid-keyfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let keys = dir.join("a/keys");
        private_dir(&keys).unwrap();
        let mode = fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let f = keys.join("k");
        write_private(&f, b"one").unwrap();
        write_private(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(exists(&f));
        assert!(!exists(&keys.join("nothing")));
        assert!(!exists(&keys.join("k.tmp")));
        // PEM as C-tor writes it: followed by a NUL.
        let key = RsaKeyPair::generate(&mut rand::rng()).unwrap();
        let mut pem = rsa_pem(&key).unwrap().as_bytes().to_vec();
        pem.push(0);
        write_private(&f, &pem).unwrap();
        assert_eq!(read_rsa(&f).unwrap().to_public_key(), key.to_public_key());
        fs::write(keys.join("big"), vec![0_u8; 20_000]).unwrap();
        let e = read_tagged_vec(&keys.join("big"), "x", "y").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
