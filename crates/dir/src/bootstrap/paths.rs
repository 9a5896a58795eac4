//! The request paths of the documents a client fetches (dir-spec §4.3).

use tor_netdoc::doc::authcert::AuthCertKeyIds;
use tor_netdoc::doc::microdesc::MdDigest;

use crate::relay::RelayId;

/// The microdesc-flavoured consensus (dir-spec §4.3, §5.1).
pub const CONSENSUS: &str = "/tor/status-vote/current/consensus-microdesc";

/// Bytes of an authority's v3 identity named in a consensus URL (C-tor
/// `CONDITIONAL_CONSENSUS_FPR_LEN`).
const FPR_PREFIX: usize = 3;

/// The consensus as C-tor asks for it (`directory_get_consensus_url`):
/// signed by enough of our authorities, named by the first bytes of their
/// v3 identities in sorted upper-case hex joined by `+`, deflated (`.z`):
/// `/tor/status-vote/current/consensus-microdesc/0232AF+14C131.z`.
/// A cache that holds no consensus signed by enough of them answers 404
/// (dir-spec §4.3).
pub fn consensus(authorities: &[RelayId]) -> String {
    let mut fps: Vec<String> = authorities
        .iter()
        .map(|id| hex::encode_upper(id.as_bytes().get(..FPR_PREFIX).unwrap_or_default()))
        .collect();
    fps.sort_unstable();
    if fps.is_empty() {
        format!("{CONSENSUS}.z")
    } else {
        format!("{CONSENSUS}/{}.z", fps.join("+"))
    }
}

/// Authority certificates by identity and signing key:
/// `/tor/keys/fp-sk/<F>-<S>+<F>-<S>...`, upper-case hex.
pub fn certs(ids: &[AuthCertKeyIds]) -> String {
    let list: Vec<String> = ids
        .iter()
        .map(|k| {
            format!(
                "{}-{}",
                hex::encode_upper(k.id_fingerprint.as_bytes()),
                hex::encode_upper(k.sk_fingerprint.as_bytes())
            )
        })
        .collect();
    format!("/tor/keys/fp-sk/{}", list.join("+"))
}

/// Microdescriptors by digest, deflated as C-tor asks for them
/// (`initiate_descriptor_downloads`): `/tor/micro/d/<D1>-<D2>....z`,
/// base64 without padding.
pub fn microdescs(digests: &[MdDigest]) -> String {
    let list: Vec<String> = digests.iter().map(|d| base64_nopad(d)).collect();
    format!("/tor/micro/d/{}.z", list.join("-"))
}

/// Base64 (standard alphabet) without padding, as microdescriptor digests
/// are written in URLs and consensus "m" lines.
pub fn base64_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            if let Some(c) = ALPHABET.get(idx as usize) {
                out.push(char::from(*c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn base64_matches_rfc4648_without_padding() {
        assert_eq!(base64_nopad(b""), "");
        assert_eq!(base64_nopad(b"f"), "Zg");
        assert_eq!(base64_nopad(b"fo"), "Zm8");
        assert_eq!(base64_nopad(b"foo"), "Zm9v");
        assert_eq!(base64_nopad(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_nopad(&[0xff; 32]).len(), 43);
    }

    #[test]
    fn paths_as_dir_spec_writes_them() {
        assert_eq!(
            microdescs(&[[0; 32], [0xff; 32]]),
            format!("/tor/micro/d/{}-{}8.z", "A".repeat(43), "/".repeat(42))
        );
        let ids: Vec<RelayId> = [
            "F533C81CEF0BC0267857C99B2F471ADF249FA232",
            "0232AF901C31A04EE9848595AF9BB7620D4C5B2E",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            consensus(&ids),
            "/tor/status-vote/current/consensus-microdesc/0232AF+F533C8.z"
        );
    }
}
