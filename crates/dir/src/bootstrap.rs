//! The directory bootstrap as a sans-IO state machine: which document to
//! fetch from where, what to make of each answer, when to retry and when to
//! refresh. The driver does the HTTP and the disk; this decides.
//!
//! Order of work (dir-spec §5): the microdesc consensus first; then the
//! certificates of the authorities that signed it, if we lack them; then,
//! once the consensus verifies, the microdescriptors it lists. A verified
//! consensus is refreshed at a random time between fresh-until and
//! valid-until (dir-spec §5.1).
//!
//! Inputs: [`DirBootstrap::handle_cached`], [`DirBootstrap::handle_response`],
//! [`DirBootstrap::handle_timeout`]. Outputs: [`DirBootstrap::poll_request`],
//! [`DirBootstrap::poll_event`], [`DirBootstrap::poll_timeout`]. Time is
//! always passed in.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tor_netdoc::doc::authcert::AuthCert;
use tor_netdoc::doc::microdesc::MdDigest;

use crate::authority::DirConfig;
use crate::documents::{
    CheckedCert, CheckedMicrodesc, PendingConsensus, parse_certs, parse_consensus, parse_microdescs,
};
use crate::error::{DocError, DocKind};
use crate::netdir::NetDir;
use crate::relay::RelayId;

/// Microdescriptors asked for in one request. C-tor asks for at most 92 per
/// request to a DirPort; the URL stays under 4 kB.
pub const MDS_PER_REQUEST: usize = 92;
/// Microdescriptor requests in flight at once.
pub const MAX_MD_REQUESTS_IN_FLIGHT: usize = 4;
/// How often a microdescriptor is asked for before it is given up on until
/// the next consensus.
pub const MD_ATTEMPTS: u32 = 3;
/// First retry delay after a failed fetch from a source.
pub const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Identifies a request handed out by [`DirBootstrap::poll_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

/// An HTTP GET the driver should perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRequest {
    /// Answer with this id.
    pub id: RequestId,
    /// The DirPort to ask.
    pub source: SocketAddr,
    /// The request path (dir-spec §4), e.g.
    /// `/tor/status-vote/current/consensus-microdesc`.
    pub path: String,
    /// What is being fetched.
    pub kind: DocKind,
    /// The largest body to accept; a longer one is a failed fetch.
    pub max_bytes: usize,
}

/// The bootstrap phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Nothing fetched yet.
    Starting,
    /// Waiting for a consensus.
    Consensus,
    /// Waiting for authority certificates to check the consensus.
    Certificates,
    /// Fetching the microdescriptors the consensus lists.
    Microdescriptors,
    /// Every microdescriptor is here (or was given up on).
    Done,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Consensus => "loading consensus",
            Self::Certificates => "loading authority certificates",
            Self::Microdescriptors => "loading microdescriptors",
            Self::Done => "done",
        })
    }
}

/// How far the bootstrap is, in the manner of tor's "Bootstrapped 45%".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// 0 to 100.
    pub percent: u8,
    /// The current phase.
    pub phase: Phase,
    /// Microdescriptors held and listed.
    pub microdescs: (usize, usize),
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bootstrapped {}% ({})", self.percent, self.phase)?;
        if self.phase >= Phase::Microdescriptors {
            write!(
                f,
                ": {} of {} microdescriptors",
                self.microdescs.0, self.microdescs.1
            )?;
        }
        Ok(())
    }
}

/// Something the driver should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEvent {
    /// Progress changed.
    Progress(Progress),
    /// A verified document to write to the cache, replacing the file of its
    /// kind. Only verified documents are ever handed out here, so the cache
    /// never holds worse than what it held.
    Store {
        /// Which file.
        kind: DocKind,
        /// Its new content.
        text: String,
    },
    /// A document was refused.
    Rejected {
        /// Where it came from (`None`: the cache).
        source: Option<SocketAddr>,
        /// Why.
        error: DocError,
    },
    /// A fetch failed (connection, HTTP status, size).
    FetchFailed {
        /// The source.
        source: SocketAddr,
        /// What the driver reported.
        error: String,
        /// When that source will be tried again.
        retry_at: SystemTime,
    },
    /// A new consensus is in use.
    NewConsensus {
        /// Its valid-after time.
        valid_after: SystemTime,
        /// When the next one will be fetched.
        refresh_at: SystemTime,
    },
}

#[derive(Debug)]
struct InFlight {
    source: usize,
    kind: DocKind,
    digests: Vec<MdDigest>,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    failures: u32,
    retry_at: Option<SystemTime>,
}

/// The directory bootstrap state machine.
#[derive(Debug)]
pub struct DirBootstrap {
    sources: Vec<SocketAddr>,
    source_state: Vec<SourceState>,
    next_source: usize,
    authority_ids: Vec<RelayId>,
    certs: Vec<AuthCert>,
    cert_texts: Vec<String>,
    pending: Option<(PendingConsensus, String)>,
    netdir: Option<NetDir>,
    /// Cached microdescriptor text read before any consensus verified.
    cached_md_text: Option<String>,
    md_attempts: HashMap<MdDigest, u32>,
    in_flight: HashMap<RequestId, InFlight>,
    next_id: u64,
    refresh_at: Option<SystemTime>,
    events: VecDeque<DirEvent>,
    last_progress: Option<Progress>,
    mds_dirty: bool,
    rng: StdRng,
}

impl DirBootstrap {
    /// A bootstrap that trusts `config`'s authorities and fetches from their
    /// DirPorts. `seed` seeds the jitter of retries and refresh times.
    pub fn new(config: &DirConfig, seed: u64) -> Self {
        let sources: Vec<SocketAddr> = config.authorities.iter().map(|a| a.dir_addr).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        let next_source = if sources.is_empty() {
            0
        } else {
            rng.random_range(0..sources.len())
        };
        let mut me = Self {
            source_state: vec![SourceState::default(); sources.len()],
            sources,
            next_source,
            authority_ids: config.authority_ids(),
            certs: Vec::new(),
            cert_texts: Vec::new(),
            pending: None,
            netdir: None,
            cached_md_text: None,
            md_attempts: HashMap::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            refresh_at: None,
            events: VecDeque::new(),
            last_progress: None,
            mds_dirty: false,
            rng,
        };
        me.note_progress();
        me
    }

    /// The directory, once a consensus has verified.
    pub fn netdir(&self) -> Option<&NetDir> {
        self.netdir.as_ref()
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        let microdescs = self
            .netdir
            .as_ref()
            .map_or((0, 0), |d| (d.n_with_md(), d.n_listed()));
        let phase = if let Some(dir) = &self.netdir {
            if self.mds_outstanding(dir).is_empty() {
                Phase::Done
            } else {
                Phase::Microdescriptors
            }
        } else if self.pending.is_some() {
            Phase::Certificates
        } else if self.next_id > 0 {
            Phase::Consensus
        } else {
            Phase::Starting
        };
        let percent = match phase {
            Phase::Starting => 0,
            Phase::Consensus => 10,
            Phase::Certificates => 30,
            Phase::Microdescriptors => {
                let (have, all) = microdescs;
                let frac = (have * 55).checked_div(all).unwrap_or(0);
                40 + u8::try_from(frac).unwrap_or(55)
            }
            Phase::Done => 100,
        };
        Progress {
            percent,
            phase,
            microdescs,
        }
    }

    /// True once the directory is complete (phase [`Phase::Done`]).
    pub fn is_done(&self) -> bool {
        self.progress().phase == Phase::Done
    }

    fn note_progress(&mut self) {
        let p = self.progress();
        if self.last_progress.as_ref() != Some(&p) {
            self.last_progress = Some(p.clone());
            self.events.push_back(DirEvent::Progress(p));
        }
    }

    /// Feed a document read from the cache. An error means the file is not
    /// usable: [`DocError::NotTimely`] means merely stale (keep the file
    /// until a fresh one replaces it); anything else means corrupt.
    /// Load certificates first, then the consensus, then microdescriptors.
    pub fn handle_cached(
        &mut self,
        kind: DocKind,
        text: &str,
        now: SystemTime,
    ) -> Result<(), DocError> {
        let result = match kind {
            DocKind::AuthorityCert => {
                // The cache only ever holds certificates that were good when
                // written: one that is now expired is merely stale, anything
                // else means the file was damaged.
                let (good, bad) = parse_certs(text, &self.authority_ids, now);
                let empty = good.is_empty();
                self.add_certs(good);
                match bad
                    .into_iter()
                    .find(|e| !matches!(e, DocError::NotTimely { .. }))
                {
                    Some(e) => Err(e),
                    None if empty => Err(DocError::NotTimely {
                        kind,
                        detail: "every cached certificate has expired".into(),
                    }),
                    None => Ok(()),
                }
            }
            DocKind::Consensus => self.take_consensus(text, None, now, false),
            DocKind::Microdesc => {
                if let Some(dir) = &mut self.netdir {
                    let (good, bad) = parse_microdescs(text, &dir.wanted_digests());
                    let listed = good.len();
                    dir.add_microdescs(good);
                    // Unlisted ones are normal after a new consensus;
                    // anything else means the file is damaged.
                    match bad
                        .into_iter()
                        .find(|e| !matches!(e, DocError::UnlistedMicrodesc { .. }))
                    {
                        Some(e) if listed == 0 => Err(e),
                        _ => Ok(()),
                    }
                } else {
                    self.cached_md_text = Some(text.to_owned());
                    Ok(())
                }
            }
        };
        self.note_progress();
        result
    }

    fn add_certs(&mut self, certs: Vec<CheckedCert>) -> bool {
        let mut added = false;
        for checked in certs {
            if self
                .certs
                .iter()
                .any(|c| c.key_ids() == checked.cert.key_ids())
            {
                continue;
            }
            self.certs.push(checked.cert);
            self.cert_texts.push(checked.text);
            added = true;
        }
        added
    }

    /// Parse, check and (if its certificates are here) adopt a consensus.
    fn take_consensus(
        &mut self,
        text: &str,
        source: Option<SocketAddr>,
        now: SystemTime,
        store: bool,
    ) -> Result<(), DocError> {
        let pending = parse_consensus(text, &self.authority_ids, now)?;
        if let Some(dir) = &self.netdir
            && pending.lifetime().valid_after <= dir.lifetime().valid_after
        {
            return Err(DocError::Outdated);
        }
        self.pending = Some((pending, text.to_owned()));
        self.try_verify(source, now, store);
        Ok(())
    }

    /// Verify the pending consensus if enough certificates are here.
    fn try_verify(&mut self, source: Option<SocketAddr>, now: SystemTime, store: bool) {
        let Some((pending, text)) = self.pending.take() else {
            return;
        };
        if !pending
            .missing_certs(&self.certs, &self.authority_ids)
            .is_empty()
        {
            // Enough certificates may already be at hand for a majority
            // (the same count verify() requires).
            let usable = pending.signers_with_certs(&self.certs);
            if usable < crate::documents::signatures_needed(self.authority_ids.len()) {
                self.pending = Some((pending, text));
                return;
            }
        }
        match pending.verify(&text, &self.certs, &self.authority_ids) {
            Ok(verified) => {
                let lifetime = verified.lifetime;
                let mut dir = NetDir::new(verified, self.netdir.as_ref());
                if let Some(cached) = self.cached_md_text.take() {
                    let (good, _) = parse_microdescs(&cached, &dir.wanted_digests());
                    dir.add_microdescs(good);
                }
                self.netdir = Some(dir);
                self.md_attempts.clear();
                let refresh_at = self.choose_refresh(lifetime, now);
                self.refresh_at = Some(refresh_at);
                self.events.push_back(DirEvent::NewConsensus {
                    valid_after: lifetime.valid_after,
                    refresh_at,
                });
                if store {
                    self.events.push_back(DirEvent::Store {
                        kind: DocKind::Consensus,
                        text,
                    });
                }
                self.mds_dirty = true;
                self.flush_mds_if_idle();
            }
            Err(error) => self.events.push_back(DirEvent::Rejected { source, error }),
        }
    }

    /// dir-spec §5.1: fetch the next consensus at a time chosen uniformly
    /// between three quarters of the first interval after fresh-until and
    /// seven eighths of the remaining time before valid-until.
    fn choose_refresh(&mut self, lt: crate::documents::Lifetime, now: SystemTime) -> SystemTime {
        let interval = lt
            .fresh_until
            .duration_since(lt.valid_after)
            .unwrap_or_default();
        let start = lt.fresh_until + interval * 3 / 4;
        let remaining = lt.valid_until.duration_since(start).unwrap_or_default();
        let span = remaining * 7 / 8;
        let offset = if span.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_millis(self.rng.random_range(0..span.as_millis().max(1) as u64))
        };
        (start + offset).max(now)
    }

    fn mds_outstanding(&self, dir: &NetDir) -> Vec<MdDigest> {
        dir.missing_digests()
            .into_iter()
            .filter(|d| self.md_attempts.get(d).copied().unwrap_or(0) < MD_ATTEMPTS)
            .collect()
    }

    /// Pick a source that is not backing off, round robin (so a retry goes
    /// to the next source).
    fn pick_source(&mut self, now: SystemTime) -> Option<usize> {
        let n = self.sources.len();
        for step in 0..n {
            let i = (self.next_source + step) % n;
            let ready = self
                .source_state
                .get(i)
                .is_some_and(|s| s.retry_at.is_none_or(|t| t <= now));
            if ready {
                self.next_source = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }

    fn kind_in_flight(&self, kind: DocKind) -> usize {
        self.in_flight.values().filter(|f| f.kind == kind).count()
    }

    fn issue(
        &mut self,
        source: usize,
        kind: DocKind,
        path: String,
        digests: Vec<MdDigest>,
    ) -> Option<DirRequest> {
        let addr = *self.sources.get(source)?;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.in_flight.insert(
            id,
            InFlight {
                source,
                kind,
                digests,
            },
        );
        self.note_progress();
        Some(DirRequest {
            id,
            source: addr,
            path,
            kind,
            max_bytes: crate::documents::MAX_DOCUMENT_BYTES,
        })
    }

    /// The next request to make, if any is due now.
    pub fn poll_request(&mut self, now: SystemTime) -> Option<DirRequest> {
        // 1. A consensus, when we have none or it is time to refresh.
        let want_consensus = match (&self.netdir, self.refresh_at) {
            (None, _) => self.pending.is_none(),
            (Some(_), Some(t)) => now >= t && self.pending.is_none(),
            (Some(_), None) => false,
        };
        if want_consensus
            && self.kind_in_flight(DocKind::Consensus) == 0
            && let Some(src) = self.pick_source(now)
        {
            return self.issue(
                src,
                DocKind::Consensus,
                "/tor/status-vote/current/consensus-microdesc".into(),
                Vec::new(),
            );
        }
        // 2. Certificates for a consensus that cannot be checked yet.
        if let Some((pending, _)) = &self.pending
            && self.kind_in_flight(DocKind::AuthorityCert) == 0
        {
            let missing = pending.missing_certs(&self.certs, &self.authority_ids);
            if !missing.is_empty() {
                // dir-spec §4.3: /tor/keys/fp-sk/<F>-<S>+<F>-<S>...
                let list: Vec<String> = missing
                    .iter()
                    .map(|k| {
                        format!(
                            "{}-{}",
                            hex::encode_upper(k.id_fingerprint.as_bytes()),
                            hex::encode_upper(k.sk_fingerprint.as_bytes())
                        )
                    })
                    .collect();
                if let Some(src) = self.pick_source(now) {
                    return self.issue(
                        src,
                        DocKind::AuthorityCert,
                        format!("/tor/keys/fp-sk/{}", list.join("+")),
                        Vec::new(),
                    );
                }
            }
        }
        // 3. Microdescriptors not yet here and not already asked for.
        if let Some(dir) = &self.netdir
            && self.kind_in_flight(DocKind::Microdesc) < MAX_MD_REQUESTS_IN_FLIGHT
        {
            let asked: HashSet<MdDigest> = self
                .in_flight
                .values()
                .flat_map(|f| f.digests.iter().copied())
                .collect();
            let batch: Vec<MdDigest> = self
                .mds_outstanding(dir)
                .into_iter()
                .filter(|d| !asked.contains(d))
                .take(MDS_PER_REQUEST)
                .collect();
            if !batch.is_empty() {
                // Round robin spreads retries over the sources.
                if let Some(src) = self.pick_source(now) {
                    for d in &batch {
                        *self.md_attempts.entry(*d).or_insert(0) += 1;
                    }
                    // dir-spec §4.3: /tor/micro/d/<D1>-<D2>..., base64
                    // digests without padding.
                    let list: Vec<String> = batch.iter().map(|d| base64_nopad(d)).collect();
                    return self.issue(
                        src,
                        DocKind::Microdesc,
                        format!("/tor/micro/d/{}", list.join("-")),
                        batch,
                    );
                }
            }
        }
        None
    }

    /// The body of a request, or the reason it failed (connection refused,
    /// HTTP status other than 200, body over `max_bytes`, timeout).
    pub fn handle_response(
        &mut self,
        id: RequestId,
        result: Result<String, String>,
        now: SystemTime,
    ) {
        let Some(req) = self.in_flight.remove(&id) else {
            return;
        };
        let source = self.sources.get(req.source).copied();
        match result {
            Err(error) => {
                self.source_failed(req.source, error, now);
                // A failed md batch should not count against its digests.
                for d in &req.digests {
                    if let Some(n) = self.md_attempts.get_mut(d) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            Ok(text) => {
                let ok = match req.kind {
                    DocKind::Consensus => match self.take_consensus(&text, source, now, true) {
                        Ok(()) => true,
                        Err(error) => {
                            self.events.push_back(DirEvent::Rejected { source, error });
                            false
                        }
                    },
                    DocKind::AuthorityCert => {
                        let (good, bad) = parse_certs(&text, &self.authority_ids, now);
                        for error in bad {
                            self.events.push_back(DirEvent::Rejected { source, error });
                        }
                        let got = !good.is_empty();
                        if self.add_certs(good) {
                            self.events.push_back(DirEvent::Store {
                                kind: DocKind::AuthorityCert,
                                text: self.cert_texts.concat(),
                            });
                        }
                        self.try_verify(source, now, true);
                        got
                    }
                    DocKind::Microdesc => self.take_microdescs(&text, &req.digests, source),
                };
                if ok {
                    if let Some(s) = self.source_state.get_mut(req.source) {
                        *s = SourceState::default();
                    }
                } else {
                    self.source_failed(req.source, "document refused".into(), now);
                }
            }
        }
        self.flush_mds_if_idle();
        self.note_progress();
    }

    fn take_microdescs(
        &mut self,
        text: &str,
        asked: &[MdDigest],
        source: Option<SocketAddr>,
    ) -> bool {
        let Some(dir) = &mut self.netdir else {
            return false;
        };
        let wanted: HashSet<MdDigest> = asked.iter().copied().collect();
        let (good, bad): (Vec<CheckedMicrodesc>, Vec<DocError>) = parse_microdescs(text, &wanted);
        let got = !good.is_empty();
        if dir.add_microdescs(good) > 0 {
            self.mds_dirty = true;
        }
        let refused = !bad.is_empty();
        for error in bad {
            self.events.push_back(DirEvent::Rejected { source, error });
        }
        got || !refused
    }

    fn flush_mds_if_idle(&mut self) {
        if self.mds_dirty && self.kind_in_flight(DocKind::Microdesc) == 0 {
            if let Some(dir) = &self.netdir {
                let mut texts: Vec<&str> = dir.microdescs().map(|m| m.text.as_str()).collect();
                texts.sort_unstable();
                if !texts.is_empty() {
                    self.events.push_back(DirEvent::Store {
                        kind: DocKind::Microdesc,
                        text: texts.concat(),
                    });
                }
            }
            self.mds_dirty = false;
        }
    }

    fn source_failed(&mut self, source: usize, error: String, now: SystemTime) {
        let Some(addr) = self.sources.get(source).copied() else {
            return;
        };
        let jitter = self.rng.random_range(0..=250u64);
        let Some(state) = self.source_state.get_mut(source) else {
            return;
        };
        state.failures = state.failures.saturating_add(1);
        let exp = state.failures.saturating_sub(1).min(16);
        let delay = RETRY_INITIAL
            .saturating_mul(1 << exp)
            .min(RETRY_MAX)
            .saturating_add(Duration::from_millis(jitter));
        let retry_at = now + delay;
        state.retry_at = Some(retry_at);
        self.events.push_back(DirEvent::FetchFailed {
            source: addr,
            error,
            retry_at,
        });
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<DirEvent> {
        self.events.pop_front()
    }

    /// When the driver should call [`Self::handle_timeout`] (and
    /// [`Self::poll_request`]) again even if no response arrives: the next
    /// source retry or the consensus refresh.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let retries = self.source_state.iter().filter_map(|s| s.retry_at);
        retries.chain(self.refresh_at).min()
    }

    /// Time passed. Sources whose backoff ended become usable again; the
    /// refresh starts when due (both through [`Self::poll_request`]).
    pub fn handle_timeout(&mut self, now: SystemTime) {
        for s in &mut self.source_state {
            if s.retry_at.is_some_and(|t| t <= now) {
                s.retry_at = None;
            }
        }
        self.note_progress();
    }
}

/// Base64 (standard alphabet) without padding, as microdescriptor digests
/// are written in URLs and consensus "m" lines.
fn base64_nopad(bytes: &[u8]) -> String {
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
    use super::*;
    use crate::authority::{Authority, public_authorities};

    #[test]
    fn base64_matches_rfc4648_without_padding() {
        assert_eq!(base64_nopad(b""), "");
        assert_eq!(base64_nopad(b"f"), "Zg");
        assert_eq!(base64_nopad(b"fo"), "Zm8");
        assert_eq!(base64_nopad(b"foo"), "Zm9v");
        assert_eq!(base64_nopad(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_nopad(&[0xff; 32]).len(), 43);
    }

    fn config() -> DirConfig {
        DirConfig {
            authorities: public_authorities(),
            fallbacks: Vec::new(),
        }
    }

    #[test]
    fn starts_by_asking_an_authority_for_the_consensus() {
        let cfg = config();
        let mut b = DirBootstrap::new(&cfg, 1);
        let now = SystemTime::now();
        let req = b.poll_request(now).expect("a request");
        assert_eq!(req.kind, DocKind::Consensus);
        assert_eq!(req.path, "/tor/status-vote/current/consensus-microdesc");
        assert!(cfg.authorities.iter().any(|a| a.dir_addr == req.source));
        // Only one consensus request at a time.
        assert_eq!(b.poll_request(now), None);
        assert_eq!(b.progress().phase, Phase::Consensus);
    }

    #[test]
    fn failed_fetch_backs_off_and_moves_to_another_source() {
        let cfg = config();
        let mut b = DirBootstrap::new(&cfg, 7);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = b.poll_request(now).expect("request");
        b.handle_response(first.id, Err("connection refused".into()), now);
        let mut saw_failure = false;
        while let Some(ev) = b.poll_event() {
            if let DirEvent::FetchFailed {
                source, retry_at, ..
            } = ev
            {
                assert_eq!(source, first.source);
                assert!(retry_at > now);
                saw_failure = true;
            }
        }
        assert!(saw_failure);
        let second = b
            .poll_request(now)
            .expect("another source is tried at once");
        assert_ne!(second.source, first.source);
        assert!(b.poll_timeout().is_some());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = DirConfig {
            authorities: vec![Authority {
                nickname: "only".into(),
                v3ident: RelayId::new([1; 20]),
                dir_addr: "127.0.0.1:1".parse().expect("addr"),
            }],
            fallbacks: Vec::new(),
        };
        let mut b = DirBootstrap::new(&cfg, 3);
        let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut delays = Vec::new();
        for _ in 0..12 {
            let req = b.poll_request(now).expect("due");
            b.handle_response(req.id, Err("refused".into()), now);
            // Not due again before the retry time.
            assert_eq!(b.poll_request(now), None);
            let t = b.poll_timeout().expect("retry time");
            delays.push(t.duration_since(now).expect("future"));
            now = t;
            b.handle_timeout(now);
        }
        assert!(delays.windows(2).take(5).all(|w| w[1] > w[0]), "{delays:?}");
        assert!(
            delays
                .iter()
                .all(|d| *d <= RETRY_MAX + Duration::from_millis(250))
        );
    }

    #[test]
    fn garbage_consensus_is_rejected_and_source_backs_off() {
        let cfg = config();
        let mut b = DirBootstrap::new(&cfg, 5);
        let now = SystemTime::now();
        let req = b.poll_request(now).expect("request");
        b.handle_response(req.id, Ok("hello".into()), now);
        let events: Vec<DirEvent> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(events.iter().any(|e| matches!(
            e,
            DirEvent::Rejected {
                error: DocError::Malformed { .. },
                ..
            }
        )));
        assert!(!events.iter().any(|e| matches!(e, DirEvent::Store { .. })));
        assert!(b.netdir().is_none());
    }

    #[test]
    fn progress_line_reads_like_tor() {
        let p = Progress {
            percent: 45,
            phase: Phase::Microdescriptors,
            microdescs: (3, 10),
        };
        assert_eq!(
            p.to_string(),
            "Bootstrapped 45% (loading microdescriptors): 3 of 10 microdescriptors"
        );
    }
}
