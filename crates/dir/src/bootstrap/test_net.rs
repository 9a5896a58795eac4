//! Documents for the bootstrap's tests.
//!
//! The private network recorded in `testdata/private-net` (real C-tor
//! documents, a consensus valid for 20 s), and a network of authorities of
//! our own whose certificates and consensuses are signed here for any
//! lifetime, so the bootstrap can run through days of virtual time with the
//! public network's timing (fresh an hour, valid three) and with clocks off
//! either way. The relays of that consensus, and so its microdescriptors,
//! are the recorded network's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use base64ct::{Base64, Encoding as _};
use digest::Digest as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_llcrypto::d::{Sha1, Sha256};
use tor_llcrypto::pk::rsa;
use tor_netdoc::types::Iso8601TimeSp;

use crate::authority::{Authority, DirConfig};
use crate::relay::RelayId;

pub(crate) const CONSENSUS: &str = include_str!("../../testdata/private-net/consensus-microdesc");
pub(crate) const CERTS: &str = include_str!("../../testdata/private-net/certs");
pub(crate) const MICRODESCS: &str = include_str!("../../testdata/private-net/microdescs");
const AUTHORITIES: &str = include_str!("../../testdata/private-net/authorities");

/// 2026-11-21 10:58:20 UTC, inside the recorded consensus' lifetime
/// (10:58:10 to 10:58:30).
pub(crate) fn during() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_258_700)
}

fn dir_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + u16::try_from(i).unwrap()))
}

/// The recorded network's authorities.
pub(crate) fn recorded_config() -> DirConfig {
    DirConfig {
        authorities: AUTHORITIES
            .lines()
            .enumerate()
            .map(|(i, l)| Authority {
                nickname: format!("auth{i}"),
                v3ident: l.parse().unwrap(),
                dir_addr: dir_addr(i),
            })
            .collect(),
        fallbacks: Vec::new(),
    }
}

/// The recorded consensus with its body altered: every signature fails.
pub(crate) fn forged_consensus() -> String {
    CONSENSUS.replacen("Bandwidth=", "Bandwidth=9", 1)
}

struct TestAuthority {
    identity: rsa::KeyPair,
    signing: rsa::KeyPair,
}

impl TestAuthority {
    fn v3ident(&self) -> RelayId {
        RelayId::new(self.identity.to_public_key().to_rsa_identity().to_bytes())
    }

    fn signing_digest(&self) -> [u8; 20] {
        self.signing.to_public_key().to_rsa_identity().to_bytes()
    }
}

/// Authorities of our own, three, with certificates valid 2020 to 2040.
pub(crate) struct TestNet {
    authorities: Vec<TestAuthority>,
    certs: String,
}

static NET: LazyLock<TestNet> = LazyLock::new(TestNet::generate);

fn pem(tag: &str, der: &[u8]) -> String {
    let b64 = Base64::encode_string(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {tag}-----");
    out
}

fn iso(t: SystemTime) -> String {
    Iso8601TimeSp(t).to_string()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

impl TestNet {
    /// The network (keys are made once: RSA generation is slow).
    pub(crate) fn get() -> &'static Self {
        &NET
    }

    fn generate() -> Self {
        let mut rng = StdRng::seed_from_u64(0x0062_7261_6964);
        let authorities: Vec<TestAuthority> = (0..3)
            .map(|_| TestAuthority {
                identity: rsa::KeyPair::generate(&mut rng).unwrap(),
                signing: rsa::KeyPair::generate(&mut rng).unwrap(),
            })
            .collect();
        let certs = authorities.iter().map(Self::cert).collect();
        Self { authorities, certs }
    }

    /// dir-spec §3.1: the identity key certifies the signing key, which
    /// cross-certifies the identity.
    fn cert(a: &TestAuthority) -> String {
        let id = a.identity.to_public_key();
        let mut text = String::new();
        text.push_str("dir-key-certificate-version 3\n");
        let _ = writeln!(
            text,
            "fingerprint {}",
            hex::encode_upper(id.to_rsa_identity().as_bytes())
        );
        // 2020-01-01 to 2040-01-01.
        let _ = writeln!(text, "dir-key-published {}", iso(at(1_577_836_800)));
        let _ = writeln!(text, "dir-key-expires {}", iso(at(2_208_988_800)));
        text.push_str("dir-identity-key\n");
        text.push_str(&pem("RSA PUBLIC KEY", &id.to_der()));
        text.push_str("dir-signing-key\n");
        text.push_str(&pem("RSA PUBLIC KEY", &a.signing.to_public_key().to_der()));
        text.push_str("dir-key-crosscert\n");
        let cross = a.signing.sign(id.to_rsa_identity().as_bytes()).unwrap();
        text.push_str(&pem("ID SIGNATURE", &cross));
        text.push_str("dir-key-certification\n");
        let digest = Sha1::digest(text.as_bytes());
        text.push_str(&pem("SIGNATURE", &a.identity.sign(&digest).unwrap()));
        text
    }

    /// The authorities, their DirPorts on 127.0.0.1.
    pub(crate) fn config(&self) -> DirConfig {
        DirConfig {
            authorities: self
                .authorities
                .iter()
                .enumerate()
                .map(|(i, a)| Authority {
                    nickname: format!("test{i}"),
                    v3ident: a.v3ident(),
                    dir_addr: dir_addr(i),
                })
                .collect(),
            fallbacks: Vec::new(),
        }
    }

    /// Their certificates, concatenated.
    pub(crate) fn certs(&self) -> &str {
        &self.certs
    }

    /// A consensus valid from `valid_after`, fresh for `fresh`, valid for
    /// `valid`, signed by every authority (dir-spec §3.4.1: the signatures
    /// cover the text through the space after the first
    /// "directory-signature").
    pub(crate) fn consensus(
        &self,
        valid_after: SystemTime,
        fresh: Duration,
        valid: Duration,
    ) -> String {
        let body_end = CONSENSUS.find("directory-signature ").unwrap();
        let mut body = String::new();
        let mut in_voters = false;
        for line in CONSENSUS[..body_end].split_inclusive('\n') {
            let kw = line.split_ascii_whitespace().next().unwrap_or("");
            match kw {
                "valid-after" => {
                    let _ = writeln!(body, "valid-after {}", iso(valid_after));
                }
                "fresh-until" => {
                    let _ = writeln!(body, "fresh-until {}", iso(valid_after + fresh));
                }
                "valid-until" => {
                    let _ = writeln!(body, "valid-until {}", iso(valid_after + valid));
                }
                "dir-source" | "contact" | "vote-digest" => {
                    if !in_voters {
                        in_voters = true;
                        body.push_str(&self.voters());
                    }
                }
                _ => body.push_str(line),
            }
        }
        body.push_str("directory-signature ");
        let digest = Sha256::digest(body.as_bytes());
        let mut text = body[..body.len() - "directory-signature ".len()].to_owned();
        for a in &self.authorities {
            let _ = writeln!(
                text,
                "directory-signature sha256 {} {}",
                hex::encode_upper(a.v3ident().as_bytes()),
                hex::encode_upper(a.signing_digest())
            );
            text.push_str(&pem("SIGNATURE", &a.signing.sign(&digest).unwrap()));
        }
        text
    }

    /// The public network's shape: fresh an hour, valid three.
    pub(crate) fn hourly(&self, valid_after: SystemTime) -> String {
        self.consensus(
            valid_after,
            Duration::from_secs(3600),
            Duration::from_secs(3 * 3600),
        )
    }

    fn voters(&self) -> String {
        let mut ids: Vec<(String, usize)> = self
            .authorities
            .iter()
            .enumerate()
            .map(|(i, a)| (hex::encode_upper(a.v3ident().as_bytes()), i))
            .collect();
        ids.sort();
        let mut out = String::new();
        for (hex, i) in ids {
            let port = 7000 + i;
            let _ = writeln!(
                out,
                "dir-source test{i} {hex} 127.0.0.1 127.0.0.1 {port} {}",
                port + 100
            );
            out.push_str("contact test\n");
            let _ = writeln!(out, "vote-digest {}", "AB".repeat(20));
        }
        out
    }
}
