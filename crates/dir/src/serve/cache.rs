//! The documents a directory cache serves, as the caller fetched and
//! checked them (the raw bytes the authorities served): the
//! microdesc-flavoured consensus, the authorities' key certificates and
//! the microdescriptors the consensus lists. The cache checks nothing
//! cryptographic itself (braid-dir's `documents` does that before); it
//! keeps what the URL table needs to find each document, and bounds its
//! memory: one consensus of at most [`MAX_DOCUMENT_BYTES`], at most
//! [`MAX_CERTS`] certificates (the newest kept), microdescriptors up to a
//! byte budget.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use tor_llcrypto::d::Sha3_256;
use tor_netdoc::doc::microdesc::MdDigest;

use super::diffs::{self, CachedDiff, OldConsensus};
use crate::documents::{CheckedCert, Lifetime, MAX_DOCUMENT_BYTES};
use crate::error::ServeError;

/// Certificates held at most: a few per authority (the public network has
/// nine authorities, each with one or two live certificates).
pub const MAX_CERTS: usize = 64;

/// Default budget for microdescriptors: the public network's (about
/// 9,000 relays, 4 to 5 MB of microdescriptors) several times over.
pub const DEFAULT_MAX_MICRODESC_BYTES: usize = 64 << 20;

/// The consensus held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedConsensus {
    /// The text; `body` is the same allocation as bytes.
    text: Arc<str>,
    body: Arc<[u8]>,
    lifetime: Lifetime,
    signers: Vec<[u8; 20]>,
    digest_as_signed: [u8; 32],
    /// The body deflated, made at the first request that wants it.
    deflated: std::sync::OnceLock<Arc<[u8]>>,
    /// Diffs to it from the consensuses served before, by their digest.
    diffs: HashMap<[u8; 32], Arc<CachedDiff>>,
}

impl CachedConsensus {
    /// `text`, a microdesc-flavoured consensus valid for `lifetime`, ready
    /// to serve, with diffs to it from each of `sources` (see
    /// [`DirCache::diff_sources`]; making them takes a while for the public
    /// network's consensus: call this off the async runtime). Refused:
    /// another flavour, or over [`MAX_DOCUMENT_BYTES`].
    pub fn build(
        text: &str,
        lifetime: Lifetime,
        sources: &[OldConsensus],
    ) -> Result<Self, ServeError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(ServeError::DocumentTooLarge {
                size: text.len(),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        if !text.starts_with("network-status-version 3 microdesc\n") {
            return Err(ServeError::NotMicrodescConsensus);
        }
        let digest = digest_as_signed(text);
        let shared: Arc<str> = Arc::from(text);
        Ok(CachedConsensus {
            body: Arc::from(Arc::clone(&shared)),
            text: shared,
            lifetime,
            signers: signers(text),
            digest_as_signed: digest,
            deflated: std::sync::OnceLock::new(),
            diffs: diffs::make_diffs(sources, text, &digest),
        })
    }

    /// The diff to it from the consensus whose signed part hashes to
    /// `from`, if one is held.
    pub fn diff_from(&self, from: &[u8; 32]) -> Option<&CachedDiff> {
        self.diffs.get(from).map(|d| &**d)
    }

    /// How many diffs to it are held.
    pub fn n_diffs(&self) -> usize {
        self.diffs.len()
    }

    /// The text, as the authority served it.
    pub fn body(&self) -> &Arc<[u8]> {
        &self.body
    }

    /// The text deflated (zlib), compressed once and kept (C-tor keeps
    /// its consensuses precompressed too).
    pub fn deflated(&self) -> &Arc<[u8]> {
        diffs::deflate_once(&self.deflated, &self.body)
    }

    /// Its validity period.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    /// The identities of the authorities with a `directory-signature`
    /// (C-tor's "consensus-signatories": voters with a signature).
    pub fn signers(&self) -> &[[u8; 20]] {
        &self.signers
    }

    /// SHA3-256 of the signed part, from `network-status-version` through
    /// the space after the first `directory-signature` (prop 140: what
    /// `X-Or-Diff-From-Consensus` names).
    pub fn digest_as_signed(&self) -> &[u8; 32] {
        &self.digest_as_signed
    }
}

/// An authority key certificate held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedCert {
    body: Arc<[u8]>,
    id: [u8; 20],
    sk: [u8; 20],
    published: SystemTime,
    expires: SystemTime,
}

impl CachedCert {
    /// A certificate with `text` (from `dir-key-certificate-version` to
    /// the end of its signature), the authority's identity digest `id`,
    /// its signing key's digest `sk`, and its `dir-key-published` and
    /// `dir-key-expires`.
    pub fn new(
        text: &str,
        id: [u8; 20],
        sk: [u8; 20],
        published: SystemTime,
        expires: SystemTime,
    ) -> Self {
        Self {
            body: Arc::from(text.as_bytes()),
            id,
            sk,
            published,
            expires,
        }
    }

    /// The text.
    pub fn body(&self) -> &Arc<[u8]> {
        &self.body
    }

    /// The authority's identity digest.
    pub fn id(&self) -> &[u8; 20] {
        &self.id
    }

    /// The signing key's digest.
    pub fn sk(&self) -> &[u8; 20] {
        &self.sk
    }

    /// `dir-key-published`.
    pub fn published(&self) -> SystemTime {
        self.published
    }

    /// `dir-key-expires`.
    pub fn expires(&self) -> SystemTime {
        self.expires
    }
}

impl From<&CheckedCert> for CachedCert {
    fn from(c: &CheckedCert) -> Self {
        let ids = c.cert.key_ids();
        Self::new(
            &c.text,
            ids.id_fingerprint.to_bytes(),
            ids.sk_fingerprint.to_bytes(),
            c.cert.published(),
            c.cert.expires(),
        )
    }
}

/// The documents served. See the [module docs](self).
#[derive(Debug)]
pub struct DirCache {
    consensus: Option<CachedConsensus>,
    /// The consensuses served before, oldest first, to make diffs from.
    history: VecDeque<OldConsensus>,
    certs: Vec<CachedCert>,
    mds: HashMap<MdDigest, Arc<[u8]>>,
    md_bytes: usize,
    max_md_bytes: usize,
}

impl Default for DirCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MICRODESC_BYTES)
    }
}

impl DirCache {
    /// An empty cache holding at most `max_md_bytes` of microdescriptors.
    pub fn new(max_md_bytes: usize) -> Self {
        Self {
            consensus: None,
            history: VecDeque::new(),
            certs: Vec::new(),
            mds: HashMap::new(),
            md_bytes: 0,
            max_md_bytes,
        }
    }

    /// Serve `text`, a microdesc-flavoured consensus valid for `lifetime`,
    /// in place of the one held. Refused (the old one kept): another
    /// flavour, or over [`MAX_DOCUMENT_BYTES`].
    ///
    /// [`CachedConsensus::build`] then [`Self::install_consensus`], in one.
    pub fn set_consensus(&mut self, text: &str, lifetime: Lifetime) -> Result<(), ServeError> {
        let c = CachedConsensus::build(text, lifetime, &self.diff_sources())?;
        self.install_consensus(c);
        Ok(())
    }

    /// What a new consensus' diffs are made from: the consensuses served
    /// before and the one held.
    pub fn diff_sources(&self) -> Vec<OldConsensus> {
        let mut out: Vec<OldConsensus> = self.history.iter().cloned().collect();
        out.extend(self.consensus.as_ref().map(old_of));
        // What the history keeps once the held one joins it.
        let extra = out.len().saturating_sub(diffs::MAX_HISTORY);
        out.split_off(extra)
    }

    /// Serve `c` in place of the consensus held, which is kept to make
    /// diffs from (within [`diffs::MAX_HISTORY`], [`diffs::MAX_HISTORY_BYTES`]
    /// and [`diffs::MAX_AGE`]).
    pub fn install_consensus(&mut self, c: CachedConsensus) {
        let newest = c.lifetime.valid_after;
        if let Some(old) = self.consensus.take()
            && old.digest_as_signed != c.digest_as_signed
        {
            diffs::keep(&mut self.history, old_of(&old), newest);
        }
        self.consensus = Some(c);
    }

    /// Consensuses kept to make diffs from.
    pub fn n_old_consensuses(&self) -> usize {
        self.history.len()
    }

    /// The consensus held.
    pub fn consensus(&self) -> Option<&CachedConsensus> {
        self.consensus.as_ref()
    }

    /// Serve `certs` in place of the certificates held; past
    /// [`MAX_CERTS`], the ones published last are kept.
    pub fn set_certs(&mut self, certs: impl IntoIterator<Item = CachedCert>) {
        let mut certs: Vec<CachedCert> = certs.into_iter().collect();
        // One per (identity, signing key): the one published last.
        certs.sort_by_key(|c| (c.id, c.sk, std::cmp::Reverse(c.published)));
        certs.dedup_by(|a, b| a.id == b.id && a.sk == b.sk);
        if certs.len() > MAX_CERTS {
            certs.sort_by_key(|c| std::cmp::Reverse(c.published));
            certs.truncate(MAX_CERTS);
        }
        certs.sort_by_key(|c| (c.id, c.published));
        self.certs = certs;
    }

    /// The certificates held, by identity then publication.
    pub fn certs(&self) -> &[CachedCert] {
        &self.certs
    }

    /// Hold the microdescriptor `text` (from `onion-key` to the end of its
    /// last line, the text its digest covers). `Ok(false)` if it was held
    /// already. Refused when it would pass the byte budget.
    pub fn insert_microdesc(&mut self, text: &str) -> Result<bool, ServeError> {
        let digest: MdDigest = Sha256::digest(text.as_bytes()).into();
        if self.mds.contains_key(&digest) {
            return Ok(false);
        }
        let after = self.md_bytes.saturating_add(text.len());
        if after > self.max_md_bytes {
            return Err(ServeError::CacheFull {
                limit: self.max_md_bytes,
            });
        }
        self.mds.insert(digest, Arc::from(text.as_bytes()));
        self.md_bytes = after;
        Ok(true)
    }

    /// Drop the microdescriptors not in `keep` (those the new consensus
    /// no longer lists); how many went.
    pub fn retain_microdescs(&mut self, keep: &HashSet<MdDigest>) -> usize {
        let before = self.mds.len();
        let mut freed = 0;
        self.mds.retain(|d, text| {
            let stay = keep.contains(d);
            if !stay {
                freed += text.len();
            }
            stay
        });
        self.md_bytes = self.md_bytes.saturating_sub(freed);
        before - self.mds.len()
    }

    /// The microdescriptor with `digest`.
    pub fn microdesc(&self, digest: &MdDigest) -> Option<&Arc<[u8]>> {
        self.mds.get(digest)
    }

    /// Of `listed`, the digests not held, each once, in order.
    pub fn missing_microdescs<'a>(
        &self,
        listed: impl IntoIterator<Item = &'a MdDigest>,
    ) -> Vec<MdDigest> {
        let mut seen = HashSet::new();
        listed
            .into_iter()
            .filter(|d| !self.mds.contains_key(*d) && seen.insert(**d))
            .copied()
            .collect()
    }

    /// Microdescriptors held.
    pub fn n_microdescs(&self) -> usize {
        self.mds.len()
    }

    /// Their bytes.
    pub fn microdesc_bytes(&self) -> usize {
        self.md_bytes
    }
}

/// `c` as a source of diffs.
fn old_of(c: &CachedConsensus) -> OldConsensus {
    OldConsensus {
        digest: c.digest_as_signed,
        text: Arc::clone(&c.text),
        valid_after: c.lifetime.valid_after,
    }
}

/// The identities in a consensus' `directory-signature` lines
/// (`directory-signature [algorithm] identity signing-key-digest`,
/// dir-spec §3.4.1), each once.
fn signers(text: &str) -> Vec<[u8; 20]> {
    let mut out: Vec<[u8; 20]> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("directory-signature") {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        let ident = match rest.as_slice() {
            [_, ident, _] | [ident, _] => *ident,
            _ => continue,
        };
        let mut id = [0_u8; 20];
        if hex::decode_to_slice(ident, &mut id).is_ok() && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// C-tor `router_get_networkstatus_v3_sha3_as_signed`: SHA3-256 from
/// `network-status-version` through the space after the first
/// `\ndirectory-signature`, or of all of `text` if it has no such part.
fn digest_as_signed(text: &str) -> [u8; 32] {
    let signed = text.find("network-status-version").and_then(|start| {
        let from = start + "network-status-version".len();
        let sig = from + text.get(from..)?.find("\ndirectory-signature")?;
        let after = sig + "\ndirectory-signature".len();
        let space = after + text.get(after..)?.find(' ')?;
        text.get(start..=space)
    });
    Sha3_256::digest(signed.unwrap_or(text).as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn lifetime() -> Lifetime {
        Lifetime {
            valid_after: UNIX_EPOCH + Duration::from_secs(1000),
            fresh_until: UNIX_EPOCH + Duration::from_secs(2000),
            valid_until: UNIX_EPOCH + Duration::from_secs(3000),
        }
    }

    #[test]
    fn consensus_signers_and_digest() {
        let text = "network-status-version 3 microdesc\nvote-status consensus\n\
                    directory-footer\n\
                    directory-signature sha256 0123456789ABCDEF0123456789ABCDEF01234567 AAAA\n\
                    -----BEGIN SIGNATURE-----\nx\n-----END SIGNATURE-----\n\
                    directory-signature 89ABCDEF0123456789ABCDEF0123456789ABCDEF BBBB\n\
                    directory-signature 89ABCDEF0123456789ABCDEF0123456789ABCDEF CCCC\n\
                    directory-signature nothex BBBB\n";
        let mut cache = DirCache::default();
        cache.set_consensus(text, lifetime()).unwrap();
        let c = cache.consensus().unwrap();
        assert_eq!(&c.body()[..], text.as_bytes());
        assert_eq!(c.signers().len(), 2);
        assert_eq!(
            hex::encode_upper(c.signers()[1]),
            "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
        );
        let signed = "network-status-version 3 microdesc\nvote-status consensus\n\
                      directory-footer\ndirectory-signature ";
        let want: [u8; 32] = Sha3_256::digest(signed.as_bytes()).into();
        assert_eq!(c.digest_as_signed(), &want);
        // Without a signature: the whole text.
        let bare = "network-status-version 3 microdesc\n";
        cache.set_consensus(bare, lifetime()).unwrap();
        let want: [u8; 32] = Sha3_256::digest(bare.as_bytes()).into();
        assert_eq!(cache.consensus().unwrap().digest_as_signed(), &want);
        assert!(cache.consensus().unwrap().signers().is_empty());
    }

    #[test]
    fn other_flavours_and_huge_documents_are_refused() {
        let mut cache = DirCache::default();
        assert_eq!(
            cache.set_consensus("network-status-version 3\n", lifetime()),
            Err(ServeError::NotMicrodescConsensus)
        );
        let big = format!(
            "network-status-version 3 microdesc\n{}",
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        assert!(matches!(
            cache.set_consensus(&big, lifetime()),
            Err(ServeError::DocumentTooLarge { .. })
        ));
        assert!(cache.consensus().is_none());
    }

    #[test]
    fn microdescs_are_bounded_and_dropped_when_unlisted() {
        let mut cache = DirCache::new(30);
        let a = "onion-key\nntor-onion-key A\n";
        let b = "onion-key\nntor-onion-key B\n";
        assert!(cache.insert_microdesc(a).unwrap());
        assert!(!cache.insert_microdesc(a).unwrap());
        assert_eq!(
            cache.insert_microdesc(b),
            Err(ServeError::CacheFull { limit: 30 })
        );
        let da: MdDigest = Sha256::digest(a.as_bytes()).into();
        let db: MdDigest = Sha256::digest(b.as_bytes()).into();
        assert_eq!(&cache.microdesc(&da).unwrap()[..], a.as_bytes());
        assert_eq!(cache.missing_microdescs([&db, &da, &db]), vec![db]);
        assert_eq!(cache.retain_microdescs(&HashSet::from([db])), 1);
        assert_eq!((cache.n_microdescs(), cache.microdesc_bytes()), (0, 0));
        assert!(cache.insert_microdesc(b).unwrap());
        assert_eq!(cache.microdesc_bytes(), b.len());
    }

    #[test]
    fn certs_are_deduplicated_and_bounded() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let mut cache = DirCache::default();
        let mut certs: Vec<CachedCert> = (0..100_u8)
            .map(|i| CachedCert::new("c", [i; 20], [i; 20], t(u64::from(i)), t(10_000)))
            .collect();
        certs.push(certs[5].clone());
        cache.set_certs(certs);
        assert_eq!(cache.certs().len(), MAX_CERTS);
        // The newest kept, in identity order.
        assert_eq!(cache.certs()[0].id(), &[36; 20]);
        assert_eq!(cache.certs()[MAX_CERTS - 1].published(), t(99));
    }
}
