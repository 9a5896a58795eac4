//! The directory bootstrap state machine: which document to fetch from
//! where and when, and what to make of each answer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use tor_netdoc::doc::authcert::{AuthCert, AuthCertKeyIds};
use tor_netdoc::doc::microdesc::MdDigest;

use crate::authority::DirConfig;
use crate::documents::{
    CheckedCert, CheckedMicrodesc, PendingConsensus, VerifiedConsensus, parse_certs,
    parse_consensus_within, parse_microdescs, signatures_needed,
};
use crate::error::{DocError, DocKind};
use crate::netdir::NetDir;
use crate::relay::RelayId;

use super::events::{DirEvent, DirRequest, Phase, Progress, RequestId};
use super::paths;
use super::schedule::{CERT_SCHEDULE, CONSENSUS_SCHEDULE, DownloadSchedule, MICRODESC_SCHEDULE};
use super::sources::Sources;
use super::timing::{self, CERT_WAIT, CLOCK_TOLERANCE, ClockSkew};

/// Microdescriptors asked for in one request. C-tor asks for at most 92 per
/// request to a DirPort; the URL stays under 4 kB.
pub const MDS_PER_REQUEST: usize = 92;
/// Microdescriptor requests in flight at once.
pub const MAX_MD_REQUESTS_IN_FLIGHT: usize = 4;
/// How often a microdescriptor is asked for before it is given up on until
/// the next consensus.
pub const MD_ATTEMPTS: u32 = 3;

#[derive(Debug)]
struct InFlight {
    source: usize,
    kind: DocKind,
    /// Microdescriptors asked for.
    digests: Vec<MdDigest>,
    /// Certificates asked for.
    certs: Vec<AuthCertKeyIds>,
}

/// A consensus that parsed and waits for the certificates that check it.
#[derive(Debug)]
struct Pending {
    consensus: PendingConsensus,
    text: String,
    /// The source it came from (`None`: the cache).
    source: Option<usize>,
    since: SystemTime,
    /// Write it to the cache once verified.
    store: bool,
}

/// What became of a pending consensus when its signatures could be checked.
#[derive(Debug)]
enum Verdict {
    /// Still waiting for certificates.
    Waiting,
    /// Verified and in use.
    Adopted { source: Option<usize> },
    /// Refused (the `Rejected` event is out), and why.
    Refused {
        source: Option<usize>,
        reason: String,
    },
}

/// One download schedule per document (dir-spec §5.5).
#[derive(Debug)]
struct Schedules {
    consensus: DownloadSchedule,
    certs: DownloadSchedule,
    mds: DownloadSchedule,
}

impl Schedules {
    fn of(&mut self, kind: DocKind) -> &mut DownloadSchedule {
        match kind {
            DocKind::Consensus => &mut self.consensus,
            DocKind::AuthorityCert => &mut self.certs,
            DocKind::Microdesc => &mut self.mds,
        }
    }
}

/// The directory bootstrap state machine.
#[derive(Debug)]
pub struct DirBootstrap {
    sources: Sources,
    authority_ids: Vec<RelayId>,
    certs: Vec<AuthCert>,
    cert_texts: Vec<String>,
    pending: Option<Pending>,
    netdir: Option<NetDir>,
    /// Cached microdescriptor text read before any consensus verified.
    cached_md_text: Option<String>,
    md_attempts: HashMap<MdDigest, u32>,
    in_flight: HashMap<RequestId, InFlight>,
    next_id: u64,
    /// When the consensus after the held one is due (dir-spec §5.1).
    refresh_at: Option<SystemTime>,
    schedules: Schedules,
    events: VecDeque<DirEvent>,
    last_progress: Option<Progress>,
    mds_dirty: bool,
    rng: StdRng,
}

impl DirBootstrap {
    /// A bootstrap that trusts `config`'s authorities and fetches from their
    /// DirPorts. `seed` seeds every random choice (first source, retry
    /// delays, refresh times), so a run is reproducible.
    pub fn new(config: &DirConfig, seed: u64) -> Self {
        let addrs: Vec<SocketAddr> = config.authorities.iter().map(|a| a.dir_addr).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        let first = if addrs.is_empty() {
            0
        } else {
            rng.random_range(0..addrs.len())
        };
        let mut me = Self {
            sources: Sources::new(addrs, first),
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
            schedules: Schedules {
                consensus: DownloadSchedule::new(CONSENSUS_SCHEDULE),
                certs: DownloadSchedule::new(CERT_SCHEDULE),
                mds: DownloadSchedule::new(MICRODESC_SCHEDULE),
            },
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

    /// The download schedule of `kind` (for inspection).
    pub fn schedule(&self, kind: DocKind) -> &DownloadSchedule {
        match kind {
            DocKind::Consensus => &self.schedules.consensus,
            DocKind::AuthorityCert => &self.schedules.certs,
            DocKind::Microdesc => &self.schedules.mds,
        }
    }

    /// When the consensus after the held one will be fetched.
    pub fn refresh_at(&self) -> Option<SystemTime> {
        self.refresh_at
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
    /// until a fresh one replaces it); anything else means corrupt. A
    /// consensus whose signatures fail is reported as a
    /// [`DirEvent::Rejected`] (its certificates may come later).
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
            DocKind::Consensus => self.take_consensus(text, None, now, false).map(|_| ()),
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

    /// Add certificates not yet held; returns the key ids of those added.
    fn add_certs(&mut self, certs: Vec<CheckedCert>) -> Vec<AuthCertKeyIds> {
        let mut added = Vec::new();
        for checked in certs {
            let ids = checked.cert.key_ids();
            if self.certs.iter().any(|c| c.key_ids() == ids) {
                continue;
            }
            self.certs.push(checked.cert);
            self.cert_texts.push(checked.text);
            added.push(ids);
        }
        added
    }

    /// Parse and check a consensus, and adopt it if its certificates are
    /// here. Up to [`CLOCK_TOLERANCE`] outside its validity is accepted
    /// (C-tor's reasonably live consensus); one no newer than the held one
    /// is [`DocError::Outdated`] (C-tor checks this before the signatures
    /// too: there is nothing to gain from checking them).
    fn take_consensus(
        &mut self,
        text: &str,
        source: Option<usize>,
        now: SystemTime,
        store: bool,
    ) -> Result<Verdict, DocError> {
        let consensus = parse_consensus_within(text, &self.authority_ids, now, CLOCK_TOLERANCE)?;
        if let Some(dir) = &self.netdir
            && consensus.lifetime().valid_after <= dir.lifetime().valid_after
        {
            return Err(DocError::Outdated);
        }
        self.pending = Some(Pending {
            consensus,
            text: text.to_owned(),
            source,
            since: now,
            store,
        });
        Ok(self.try_verify(now))
    }

    /// Verify the pending consensus if enough certificates are here.
    fn try_verify(&mut self, now: SystemTime) -> Verdict {
        let Some(p) = self.pending.take() else {
            return Verdict::Waiting;
        };
        if !p
            .consensus
            .missing_certs(&self.certs, &self.authority_ids)
            .is_empty()
        {
            // Enough certificates may already be at hand for a majority
            // (the same count verify() requires).
            let usable = p.consensus.signers_with_certs(&self.certs);
            if usable < signatures_needed(self.authority_ids.len()) {
                self.pending = Some(p);
                return Verdict::Waiting;
            }
        }
        let source = p.source;
        match p
            .consensus
            .verify(&p.text, &self.certs, &self.authority_ids)
        {
            Ok(verified) => {
                self.adopt(verified, source, p.store, now);
                Verdict::Adopted { source }
            }
            Err(error) => {
                let source_addr = source.and_then(|s| self.sources.addr(s));
                let reason = error.to_string();
                self.events.push_back(DirEvent::Rejected {
                    source: source_addr,
                    error,
                });
                Verdict::Refused { source, reason }
            }
        }
    }

    fn adopt(
        &mut self,
        verified: VerifiedConsensus,
        source: Option<usize>,
        store: bool,
        now: SystemTime,
    ) {
        let lifetime = verified.lifetime;
        if let Some(skew) = ClockSkew::of(&lifetime, now) {
            self.events.push_back(DirEvent::ClockSkew {
                source: source.and_then(|s| self.sources.addr(s)),
                skew,
                lifetime,
            });
        }
        let text = store.then(|| verified.text.clone());
        let mut dir = NetDir::new(verified, self.netdir.as_ref());
        if let Some(cached) = self.cached_md_text.take() {
            let (good, _) = parse_microdescs(&cached, &dir.wanted_digests());
            dir.add_microdescs(good);
        }
        self.netdir = Some(dir);
        self.md_attempts.clear();
        let refresh_at = timing::fetch_time(&lifetime, now, &mut self.rng);
        self.refresh_at = Some(refresh_at);
        self.events.push_back(DirEvent::NewConsensus {
            valid_after: lifetime.valid_after,
            refresh_at,
        });
        if let Some(text) = text {
            self.events.push_back(DirEvent::Store {
                kind: DocKind::Consensus,
                text,
            });
        }
        self.mds_dirty = true;
        self.flush_mds_if_idle();
    }

    /// Count a verdict against (or for) the consensus' source and the
    /// consensus schedule. A consensus from the cache counts for nothing.
    fn settle(&mut self, verdict: Verdict, now: SystemTime) {
        match verdict {
            Verdict::Waiting => {}
            Verdict::Adopted { source } => {
                if let Some(s) = source {
                    self.succeed(s, DocKind::Consensus);
                }
            }
            Verdict::Refused { source, reason } => {
                if let Some(s) = source {
                    self.fail(s, DocKind::Consensus, reason, now);
                }
            }
        }
    }

    /// A consensus that waited too long for its certificates (C-tor
    /// `DELAY_WHILE_FETCHING_CERTS`), or that fell outside the clock
    /// tolerance while waiting, is dropped: another is fetched.
    fn expire_pending(&mut self, now: SystemTime) {
        let Some(p) = &self.pending else {
            return;
        };
        let waited_out = p.since.checked_add(CERT_WAIT).is_some_and(|t| t <= now);
        let too_old = ClockSkew::of(&p.consensus.lifetime(), now)
            .is_some_and(|s| matches!(s, ClockSkew::Ahead(_)) && !s.is_tolerated());
        if !(waited_out || too_old) {
            return;
        }
        let have = p.consensus.signers_with_certs(&self.certs);
        let source = p.source;
        self.pending = None;
        self.events.push_back(DirEvent::Rejected {
            source: source.and_then(|s| self.sources.addr(s)),
            error: DocError::MissingCerts {
                have,
                needed: signatures_needed(self.authority_ids.len()),
            },
        });
        match source {
            Some(s) => self.fail(s, DocKind::Consensus, "certificates never came".into(), now),
            None => {
                self.schedules.consensus.note_failure(now, &mut self.rng);
            }
        }
    }

    fn mds_outstanding(&self, dir: &NetDir) -> Vec<MdDigest> {
        dir.missing_digests()
            .into_iter()
            .filter(|d| self.md_attempts.get(d).copied().unwrap_or(0) < MD_ATTEMPTS)
            .collect()
    }

    fn kind_in_flight(&self, kind: DocKind) -> usize {
        self.in_flight.values().filter(|f| f.kind == kind).count()
    }

    /// When a consensus fetch is due, if one is wanted and none is under
    /// way: at once without a consensus, at the refresh time with one, and
    /// never before its schedule allows.
    fn consensus_due(&self) -> Option<SystemTime> {
        if self.sources.is_empty()
            || self.pending.is_some()
            || self.kind_in_flight(DocKind::Consensus) > 0
        {
            return None;
        }
        let refresh = match &self.netdir {
            None => UNIX_EPOCH,
            Some(_) => self.refresh_at.unwrap_or(UNIX_EPOCH),
        };
        let ready = self.schedules.consensus.ready_at().unwrap_or(UNIX_EPOCH);
        Some(refresh.max(ready))
    }

    /// The certificates to ask for, if the pending consensus lacks some and
    /// none are being fetched.
    fn certs_wanted(&self) -> Option<Vec<AuthCertKeyIds>> {
        let p = self.pending.as_ref()?;
        if self.sources.is_empty() || self.kind_in_flight(DocKind::AuthorityCert) > 0 {
            return None;
        }
        let missing = p.consensus.missing_certs(&self.certs, &self.authority_ids);
        (!missing.is_empty()).then_some(missing)
    }

    /// The next batch of microdescriptors to ask for, if a request may be
    /// added to those in flight.
    fn mds_wanted(&self) -> Option<Vec<MdDigest>> {
        let dir = self.netdir.as_ref()?;
        if self.sources.is_empty()
            || self.kind_in_flight(DocKind::Microdesc) >= MAX_MD_REQUESTS_IN_FLIGHT
        {
            return None;
        }
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
        (!batch.is_empty()).then_some(batch)
    }

    fn issue(
        &mut self,
        kind: DocKind,
        path: String,
        digests: Vec<MdDigest>,
        certs: Vec<AuthCertKeyIds>,
    ) -> Option<DirRequest> {
        let source = self.sources.pick()?;
        let addr = self.sources.addr(source)?;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.in_flight.insert(
            id,
            InFlight {
                source,
                kind,
                digests,
                certs,
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
        self.expire_pending(now);
        // 1. A consensus, when we have none or it is time to refresh.
        if self.consensus_due().is_some_and(|t| t <= now) {
            return self.issue(
                DocKind::Consensus,
                paths::CONSENSUS.into(),
                Vec::new(),
                Vec::new(),
            );
        }
        // 2. Certificates for a consensus that cannot be checked yet.
        if self.schedules.certs.is_ready(now)
            && let Some(missing) = self.certs_wanted()
        {
            return self.issue(
                DocKind::AuthorityCert,
                paths::certs(&missing),
                Vec::new(),
                missing,
            );
        }
        // 3. Microdescriptors not yet here and not already asked for.
        if self.schedules.mds.is_ready(now)
            && let Some(batch) = self.mds_wanted()
        {
            for d in &batch {
                *self.md_attempts.entry(*d).or_insert(0) += 1;
            }
            return self.issue(
                DocKind::Microdesc,
                paths::microdescs(&batch),
                batch,
                Vec::new(),
            );
        }
        None
    }

    /// The body of a request, or the reason it failed (connection refused,
    /// HTTP status other than 200, body over `max_bytes`, timeout).
    ///
    /// Only an answer that brings something new counts as a success of its
    /// source and resets the document's schedule: a consensus adopted, a
    /// certificate or microdescriptor asked for. Anything refused (bad
    /// signatures, other authorities, out of time, unparsable, nothing asked
    /// for) is a failure of the source and of the schedule. A consensus no
    /// newer than the held one is neither: the next fetch waits for the
    /// next consensus' time (dir-spec §5.1).
    pub fn handle_response(
        &mut self,
        id: RequestId,
        result: Result<String, String>,
        now: SystemTime,
    ) {
        let Some(req) = self.in_flight.remove(&id) else {
            return;
        };
        match result {
            Err(error) => {
                // A failed md batch should not count against its digests.
                for d in &req.digests {
                    if let Some(n) = self.md_attempts.get_mut(d) {
                        *n = n.saturating_sub(1);
                    }
                }
                self.fail(req.source, req.kind, error, now);
            }
            Ok(text) => match req.kind {
                DocKind::Consensus => self.consensus_answer(req.source, &text, now),
                DocKind::AuthorityCert => self.certs_answer(req.source, &text, &req.certs, now),
                DocKind::Microdesc => self.mds_answer(req.source, &text, &req.digests, now),
            },
        }
        self.flush_mds_if_idle();
        self.note_progress();
    }

    fn consensus_answer(&mut self, source: usize, text: &str, now: SystemTime) {
        match self.take_consensus(text, Some(source), now, true) {
            Ok(verdict) => self.settle(verdict, now),
            Err(DocError::Outdated) => {
                self.events.push_back(DirEvent::Rejected {
                    source: self.sources.addr(source),
                    error: DocError::Outdated,
                });
                if let Some(dir) = &self.netdir {
                    let at = timing::fetch_time_not_newer(&dir.lifetime(), now, &mut self.rng);
                    self.refresh_at = Some(at);
                }
            }
            Err(error) => {
                let reason = error.to_string();
                self.events.push_back(DirEvent::Rejected {
                    source: self.sources.addr(source),
                    error,
                });
                self.fail(source, DocKind::Consensus, reason, now);
            }
        }
    }

    fn certs_answer(
        &mut self,
        source: usize,
        text: &str,
        asked: &[AuthCertKeyIds],
        now: SystemTime,
    ) {
        let (good, bad) = parse_certs(text, &self.authority_ids, now);
        let addr = self.sources.addr(source);
        for error in bad {
            self.events.push_back(DirEvent::Rejected {
                source: addr,
                error,
            });
        }
        let added = self.add_certs(good);
        if !added.is_empty() {
            self.events.push_back(DirEvent::Store {
                kind: DocKind::AuthorityCert,
                text: self.cert_texts.concat(),
            });
        }
        if added.iter().any(|k| asked.contains(k)) {
            self.succeed(source, DocKind::AuthorityCert);
        } else {
            let error = "no certificate asked for in the answer".into();
            self.fail(source, DocKind::AuthorityCert, error, now);
        }
        let verdict = self.try_verify(now);
        self.settle(verdict, now);
    }

    fn mds_answer(&mut self, source: usize, text: &str, asked: &[MdDigest], now: SystemTime) {
        let addr = self.sources.addr(source);
        let Some(dir) = &mut self.netdir else {
            return;
        };
        let wanted: HashSet<MdDigest> = asked.iter().copied().collect();
        let (good, bad): (Vec<CheckedMicrodesc>, Vec<DocError>) = parse_microdescs(text, &wanted);
        let added = dir.add_microdescs(good);
        if added > 0 {
            self.mds_dirty = true;
        }
        for error in bad {
            self.events.push_back(DirEvent::Rejected {
                source: addr,
                error,
            });
        }
        if added > 0 {
            self.succeed(source, DocKind::Microdesc);
        } else {
            let error = "no microdescriptor asked for in the answer".into();
            self.fail(source, DocKind::Microdesc, error, now);
        }
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

    fn succeed(&mut self, source: usize, kind: DocKind) {
        self.sources.mark_up(source);
        self.schedules.of(kind).note_success();
    }

    fn fail(&mut self, source: usize, kind: DocKind, error: String, now: SystemTime) {
        self.sources.mark_down(source);
        let retry_at = self.schedules.of(kind).note_failure(now, &mut self.rng);
        if let Some(addr) = self.sources.addr(source) {
            self.events.push_back(DirEvent::FetchFailed {
                source: addr,
                error,
                retry_at,
            });
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<DirEvent> {
        self.events.pop_front()
    }

    /// When the driver should call [`Self::handle_timeout`] and
    /// [`Self::poll_request`] again if no response arrives first: the next
    /// time a document's schedule or the consensus refresh lets a request
    /// go, or a consensus waiting for certificates gives up. After
    /// [`Self::poll_request`] returned `None` at `now`, this is `None` or
    /// later than `now`.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let consensus = self.consensus_due();
        let pending = self.pending.as_ref().map(|p| {
            let waited = p.since.checked_add(CERT_WAIT).unwrap_or(p.since);
            let lt = p.consensus.lifetime();
            let too_old = lt
                .valid_until
                .checked_add(CLOCK_TOLERANCE)
                .unwrap_or(lt.valid_until);
            waited.min(too_old.max(p.since))
        });
        let certs = self
            .certs_wanted()
            .and_then(|_| self.schedules.certs.ready_at());
        let mds = self
            .mds_wanted()
            .and_then(|_| self.schedules.mds.ready_at());
        [consensus, pending, certs, mds].into_iter().flatten().min()
    }

    /// Time passed: a consensus waiting for certificates may give up; due
    /// requests come from [`Self::poll_request`].
    pub fn handle_timeout(&mut self, now: SystemTime) {
        self.expire_pending(now);
        self.note_progress();
    }
}
