//! Identity keys for authorities and relays, made with tor's own tools.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::TestnetError;

/// The identities of one relay or authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeys {
    /// RSA identity fingerprint, 40 upper-case hex digits.
    pub fingerprint: String,
    /// Ed25519 master identity, unpadded base64 as tor prints it.
    pub ed25519: String,
}

/// Creates a relay's identity keys in `data_dir` by running
/// `tor --list-fingerprint` with an empty torrc, and reads them back.
pub fn relay_keys(
    tor: &Path,
    node_dir: &Path,
    data_dir: &Path,
    nickname: &str,
    or_port: u16,
) -> Result<NodeKeys, TestnetError> {
    let empty = node_dir.join("keygen.torrc");
    std::fs::write(&empty, "").map_err(|e| TestnetError::io("writing", &empty, e))?;
    let output = Command::new(tor)
        .arg("--list-fingerprint")
        .arg("-f")
        .arg(&empty)
        .arg("--DataDirectory")
        .arg(data_dir)
        .args(["--Nickname", nickname, "--Address", "127.0.0.1"])
        .args(["--ORPort", &format!("127.0.0.1:{or_port}")])
        .args(["--Log", "warn stderr"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing_or_io(tor, e))?;
    if !output.status.success() {
        return Err(TestnetError::Keygen {
            name: nickname.to_string(),
            detail: format!(
                "tor --list-fingerprint: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    let read = |file: &str| {
        let path = data_dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| TestnetError::io("reading", &path, e))
    };
    let fingerprint = second_word(&read("fingerprint")?, nickname)?;
    let ed25519 = second_word(&read("fingerprint-ed25519")?, nickname)?;
    if fingerprint.len() != 40 || !fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TestnetError::Keygen {
            name: nickname.to_string(),
            detail: format!("unexpected fingerprint `{fingerprint}`"),
        });
    }
    Ok(NodeKeys {
        fingerprint: fingerprint.to_ascii_uppercase(),
        ed25519,
    })
}

/// Creates an authority's v3 identity key, signing key and certificate in
/// `DATA/keys` with `tor-gencert`, and returns the v3 identity fingerprint.
pub fn authority_v3_keys(
    gencert: &Path,
    data_dir: &Path,
    nickname: &str,
    dir_port: u16,
) -> Result<String, TestnetError> {
    use std::io::Write;
    let keys = data_dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| TestnetError::io("creating", &keys, e))?;
    let mut child = Command::new(gencert)
        .current_dir(&keys)
        .args(["--create-identity-key", "-m", "12"])
        .args(["-a", &format!("127.0.0.1:{dir_port}")])
        .args(["-i", "authority_identity_key"])
        .args(["-s", "authority_signing_key"])
        .args(["-c", "authority_certificate"])
        .args(["--passphrase-fd", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_or_io(gencert, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // An empty passphrase.
        let _ = stdin.write_all(b"\n");
    }
    let output = child
        .wait_with_output()
        .map_err(|e| TestnetError::io("running tor-gencert in", &keys, e))?;
    if !output.status.success() {
        return Err(TestnetError::Keygen {
            name: nickname.to_string(),
            detail: format!("tor-gencert: {}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    let cert_path = keys.join("authority_certificate");
    let cert = std::fs::read_to_string(&cert_path)
        .map_err(|e| TestnetError::io("reading", &cert_path, e))?;
    cert.lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .map(|fp| fp.trim().to_ascii_uppercase())
        .ok_or_else(|| TestnetError::Keygen {
            name: nickname.to_string(),
            detail: "authority certificate has no fingerprint line".into(),
        })
}

fn second_word(text: &str, nickname: &str) -> Result<String, TestnetError> {
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| TestnetError::Keygen {
            name: nickname.to_string(),
            detail: format!("unexpected fingerprint file `{}`", text.trim()),
        })
}

fn missing_or_io(program: &Path, e: std::io::Error) -> TestnetError {
    if e.kind() == std::io::ErrorKind::NotFound {
        TestnetError::TorMissing {
            binary: program.display().to_string(),
        }
    } else {
        TestnetError::io("running", program, e)
    }
}

/// Runs `tor --version` and checks that it is 0.4.9 or newer; returns the
/// version string.
pub fn check_tor_version(tor: &Path) -> Result<String, TestnetError> {
    let output = Command::new(tor)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing_or_io(tor, e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_tor_version(&text).ok_or_else(|| TestnetError::TorMissing {
        binary: format!("{} (did not print a version)", tor.display()),
    })?;
    let numbers: Vec<u32> = version
        .split('.')
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .collect();
    if numbers.as_slice() < [0, 4, 9].as_slice() {
        return Err(TestnetError::TorTooOld { found: version });
    }
    Ok(version)
}

/// Extracts `0.4.9.11` from `Tor version 0.4.9.11.` (first line).
pub fn parse_tor_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let rest = line.strip_prefix("Tor version ")?;
    let version = rest.split_whitespace().next()?.trim_end_matches('.');
    (!version.is_empty()).then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(
            parse_tor_version("Tor version 0.4.9.11.\nThis build...").as_deref(),
            Some("0.4.9.11")
        );
        assert_eq!(
            parse_tor_version("Tor version 0.4.8.10 (git-abc).").as_deref(),
            Some("0.4.8.10")
        );
        assert_eq!(parse_tor_version("something else"), None);
    }

    #[test]
    fn missing_tor_is_named() {
        let err = check_tor_version(Path::new("/nonexistent/tor")).unwrap_err();
        assert!(matches!(err, TestnetError::TorMissing { .. }), "{err}");
        assert!(err.to_string().contains("apt-get install tor"));
    }
}
