//! The microdesc consensus: tor-netdoc's parser behind our time, majority
//! and signature checks (`parse_consensus`, `PendingConsensus::verify`),
//! then conversion to relays. The first input byte chooses which of the
//! recorded authorities' certificates are at hand (bits 0-2) and which
//! authorities are configured (bits 3-4: the three recorded ones; those
//! and one or two unknown ones, so that all three signatures are needed;
//! or only two of them); the rest is the consensus text. Seeded with the
//! recorded consensus.
//!
//! Invariant: a consensus that verifies carries valid signatures, checked
//! here without tor-netdoc (the signed text hashed as dir-spec §3.4.1 says,
//! each RSA signature checked with the signing key of a certificate at
//! hand of the identity it names), from a majority of the configured
//! authorities, each authority counted once; and it is valid now.
#![no_main]

mod recorded;

use std::sync::OnceLock;

use base64ct::{Base64, Encoding as _};
use braid_dir::RelayId;
use braid_dir::documents::{parse_certs, parse_consensus, signatures_needed};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};
use tor_llcrypto::d::Sha1;
use tor_netdoc::doc::authcert::AuthCert;

/// One "directory-signature" item (dir-spec §3.4.1).
struct Sig {
    sha256: bool,
    identity: String,
    signing_key_digest: String,
    signature: Vec<u8>,
}

/// The signature items of `text` and the text they sign: from the start
/// through the space after the first "directory-signature".
fn signatures(text: &str) -> (Option<&str>, Vec<Sig>) {
    let mut signed = None;
    let mut sigs = Vec::new();
    let mut pos = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let start = pos;
        pos += line.len();
        let Some(args) = line.strip_prefix("directory-signature ") else {
            continue;
        };
        if signed.is_none() {
            signed = text.get(..start + "directory-signature ".len());
        }
        let words: Vec<&str> = args.split_ascii_whitespace().collect();
        let (sha256, identity, skd) = match words.as_slice() {
            ["sha256", id, skd] => (true, id, skd),
            ["sha1", id, skd] | [id, skd] => (false, id, skd),
            _ => continue,
        };
        let mut b64 = String::new();
        if lines.peek().map(|l| l.trim_end()) == Some("-----BEGIN SIGNATURE-----") {
            let begin = lines.next().unwrap_or_default();
            pos += begin.len();
            for l in lines.by_ref() {
                pos += l.len();
                if l.trim_end() == "-----END SIGNATURE-----" {
                    break;
                }
                b64.push_str(l.trim_end());
            }
        }
        sigs.push(Sig {
            sha256,
            identity: identity.to_uppercase(),
            signing_key_digest: skd.to_uppercase(),
            signature: Base64::decode_vec(&b64).unwrap_or_default(),
        });
    }
    (signed, sigs)
}

/// The configured authorities with a signature on `text` that verifies
/// under a certificate in `certs`.
fn valid_signers(text: &str, certs: &[AuthCert], configured: &[RelayId]) -> Vec<RelayId> {
    let (Some(signed), sigs) = signatures(text) else {
        return Vec::new();
    };
    let sha256 = Sha256::digest(signed.as_bytes());
    let sha1 = Sha1::digest(signed.as_bytes());
    let mut out: Vec<RelayId> = Vec::new();
    for sig in sigs {
        let Ok(id) = sig.identity.parse::<RelayId>() else {
            continue;
        };
        if !configured.contains(&id) || out.contains(&id) {
            continue;
        }
        let digest: &[u8] = if sig.sha256 { &sha256 } else { &sha1 };
        let good = certs.iter().any(|c| {
            hex(c.id_fingerprint().as_bytes()) == sig.identity
                && hex(c.key_ids().sk_fingerprint.as_bytes()) == sig.signing_key_digest
                && c.signing_key().verify(digest, &sig.signature).is_ok()
        });
        if good {
            out.push(id);
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The recorded authorities' certificates, checked once.
fn recorded_certs() -> &'static [AuthCert] {
    static CERTS: OnceLock<Vec<AuthCert>> = OnceLock::new();
    CERTS.get_or_init(|| {
        let (certs, _) = parse_certs(
            recorded::CERTS,
            &recorded::authorities(),
            recorded::during(),
        );
        assert_eq!(certs.len(), 3, "the recorded certificates verify");
        certs.into_iter().map(|c| c.cert).collect()
    })
}

fn unknown(n: u8) -> RelayId {
    RelayId::new([n; 20])
}

fuzz_target!(
    init: {
        recorded_certs();
    },
    |input: (u8, &str)| {
    let (sel, text) = input;
    let recorded_ids = recorded::authorities();
    let now = recorded::during();
    let configured: Vec<RelayId> = match (sel >> 3) & 3 {
        0 => recorded_ids.clone(),
        1 => [recorded_ids.clone(), vec![unknown(1)]].concat(),
        2 => [recorded_ids.clone(), vec![unknown(1), unknown(2)]].concat(),
        _ => recorded_ids.iter().take(2).copied().collect(),
    };
    let Ok(pending) = parse_consensus(text, &configured, now) else {
        return;
    };
    let certs: Vec<AuthCert> = recorded_certs()
        .iter()
        .enumerate()
        .filter(|(i, _)| sel & (1 << i) != 0)
        .map(|(_, c)| c.clone())
        .collect();
    let _ = pending.missing_certs(&certs, &configured);
    let Ok(verified) = pending.verify(text, &certs, &configured) else {
        return;
    };
    let signers = valid_signers(text, &certs, &configured);
    assert!(
        signers.len() >= signatures_needed(configured.len()),
        "accepted with valid signatures from {} of {} configured authorities",
        signers.len(),
        configured.len()
    );
    assert!(verified.lifetime.is_valid_at(now));
    assert_eq!(verified.text, text);
    let dir = braid_dir::NetDir::new(verified, None);
    let _ = dir.relays();
    let _ = dir.missing_digests();
});
