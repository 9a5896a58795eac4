//! The directory bootstrap state machine: which document to fetch from
//! where and when. What it makes of each answer is in `answers`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_netdoc::doc::authcert::{AuthCert, AuthCertKeyIds};
use tor_netdoc::doc::microdesc::MdDigest;

use crate::authority::DirConfig;
use crate::documents::{PendingConsensus, parse_certs, parse_microdescs};
use crate::error::{DocError, DocKind};
use crate::fetch::Request;
use crate::fetch::http::MAX_HEAD;
use crate::netdir::NetDir;
use crate::relay::RelayId;

use super::enough::{PathsAvailable, paths_needed};
use super::events::{DirEvent, DirRequest, Phase, Progress, RequestId};
use super::paths;
use super::requests::{self, Held};
use super::schedule::{CERT_SCHEDULE, CONSENSUS_SCHEDULE, DownloadSchedule, MICRODESC_SCHEDULE};
use super::sources::{DirSource, OneHopTarget, SourceKind, Sources, choose_caches};
use super::timing::{CERT_WAIT, CLOCK_TOLERANCE};

/// Microdescriptor requests in flight at once.
pub const MAX_MD_REQUESTS_IN_FLIGHT: usize = 4;
/// How often a microdescriptor is asked for before it is given up on until
/// the next consensus.
pub const MD_ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) source: DirSource,
    pub(super) kind: DocKind,
    /// Microdescriptors asked for.
    pub(super) digests: Vec<MdDigest>,
    /// Certificates asked for.
    pub(super) certs: Vec<AuthCertKeyIds>,
}

/// A consensus that parsed and waits for the certificates that check it.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) consensus: PendingConsensus,
    pub(super) text: String,
    /// The source it came from (`None`: the cache).
    pub(super) source: Option<DirSource>,
    pub(super) since: SystemTime,
    /// Write it to the cache once verified.
    pub(super) store: bool,
}

/// One download schedule per document (dir-spec §5.5).
#[derive(Debug)]
pub(super) struct Schedules {
    pub(super) consensus: DownloadSchedule,
    pub(super) certs: DownloadSchedule,
    pub(super) mds: DownloadSchedule,
}

impl Schedules {
    pub(super) fn of(&mut self, kind: DocKind) -> &mut DownloadSchedule {
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
    pub(super) sources: Sources,
    pub(super) authority_ids: Vec<RelayId>,
    /// The consensus path, naming our authorities.
    consensus_path: String,
    pub(super) certs: Vec<AuthCert>,
    pub(super) cert_texts: Vec<String>,
    pub(super) pending: Option<Pending>,
    pub(super) netdir: Option<NetDir>,
    /// Cached microdescriptor text read before any consensus verified.
    pub(super) cached_md_text: Option<String>,
    pub(super) md_attempts: HashMap<MdDigest, u32>,
    pub(super) in_flight: HashMap<RequestId, InFlight>,
    pub(super) next_id: u64,
    /// When the consensus after the held one is due (dir-spec §5.1).
    pub(super) refresh_at: Option<SystemTime>,
    pub(super) schedules: Schedules,
    pub(super) events: VecDeque<DirEvent>,
    last_progress: Option<Progress>,
    pub(super) mds_dirty: bool,
    /// The valid-after of a held consensus a diff from which failed: the
    /// next requests ask for the whole consensus.
    pub(super) no_diff_from: Option<SystemTime>,
    /// The client's guards, best first, to ask as directory caches.
    dir_guards: Vec<RelayId>,
    pub(super) rng: StdRng,
}

impl DirBootstrap {
    /// A bootstrap that trusts `config`'s authorities and fetches from its
    /// fallbacks over BEGIN_DIR, then from directory caches among our
    /// guards once a consensus is known, and from the authorities' DirPorts
    /// only when none of those answers. `seed` seeds every random choice
    /// (source order, retry delays, refresh times), so a run is
    /// reproducible.
    pub fn new(config: &DirConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let fallbacks = config
            .fallbacks
            .iter()
            .map(|f| DirSource::BeginDir {
                kind: SourceKind::Fallback,
                target: OneHopTarget {
                    id: f.id,
                    ed_id: f.ed_id,
                    addr: f.or_addr,
                    ntor_key: None,
                    nickname: f.nickname.clone(),
                },
            })
            .collect();
        let authorities = config
            .authorities
            .iter()
            .map(|a| DirSource::DirPort {
                nickname: a.nickname.clone(),
                addr: a.dir_addr,
            })
            .collect();
        let authority_ids = config.authority_ids();
        let mut me = Self {
            sources: Sources::new(fallbacks, authorities, &mut rng),
            consensus_path: paths::consensus(&authority_ids),
            authority_ids,
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
            no_diff_from: None,
            dir_guards: Vec::new(),
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

    /// The directory caches asked once a consensus is known.
    pub fn caches(&self) -> Vec<DirSource> {
        self.sources.caches().to_vec()
    }

    /// Use the client's guards (best first, e.g. its primary guards) as
    /// directory caches, those the consensus lists as caches (C-tor's
    /// directory guards). With none, the bootstrap keeps three directory
    /// guards of its own, drawn by their BEGIN_DIR weight.
    pub fn set_dir_guards(&mut self, guards: Vec<RelayId>) {
        if guards != self.dir_guards {
            self.dir_guards = guards;
            self.update_caches();
        }
    }

    /// Choose the directory caches anew from the consensus held.
    pub(super) fn update_caches(&mut self) {
        let Some(dir) = &self.netdir else {
            return;
        };
        let previous: Vec<RelayId> = self
            .sources
            .caches()
            .iter()
            .filter_map(|c| match c {
                DirSource::BeginDir { target, .. } => Some(target.id),
                DirSource::DirPort { .. } => None,
            })
            .collect();
        let caches = choose_caches(
            &dir.listed(),
            dir.weights(),
            &self.dir_guards,
            &previous,
            &mut self.rng,
        );
        self.sources.set_caches(
            caches
                .into_iter()
                .map(|target| DirSource::BeginDir {
                    kind: SourceKind::Cache,
                    target,
                })
                .collect(),
        );
    }

    /// The share of paths the microdescriptors held make usable.
    pub fn paths_available(&self) -> Option<PathsAvailable> {
        let dir = self.netdir.as_ref()?;
        Some(PathsAvailable::of(&dir.listed(), dir.weights()))
    }

    /// True if the directory is enough to build circuits: a consensus, and
    /// either every microdescriptor we will ask for or enough of them for
    /// `min_paths_for_circs_pct` (60%) of paths (C-tor
    /// `router_have_minimum_dir_info`).
    fn enough(&self, dir: &NetDir) -> bool {
        self.mds_outstanding(dir).is_empty()
            || PathsAvailable::of(&dir.listed(), dir.weights()).paths()
                >= paths_needed(dir.params())
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        let microdescs = self
            .netdir
            .as_ref()
            .map_or((0, 0), |d| (d.n_with_md(), d.n_listed()));
        let phase = if let Some(dir) = &self.netdir {
            if self.enough(dir) {
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

    /// True once the directory is enough to build circuits (phase
    /// [`Phase::Done`]); missing microdescriptors are still fetched.
    pub fn is_done(&self) -> bool {
        self.progress().phase == Phase::Done
    }

    pub(super) fn note_progress(&mut self) {
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

    pub(super) fn mds_outstanding(&self, dir: &NetDir) -> Vec<MdDigest> {
        dir.missing_digests()
            .into_iter()
            .filter(|d| self.md_attempts.get(d).copied().unwrap_or(0) < MD_ATTEMPTS)
            .collect()
    }

    pub(super) fn kind_in_flight(&self, kind: DocKind) -> usize {
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

    /// The microdescriptors to ask for next, not already asked for, if a
    /// request may be added to those in flight, and how many there are in
    /// all (what the batch size is a share of).
    fn mds_wanted(&self) -> Option<(Vec<MdDigest>, usize)> {
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
        let outstanding = self.mds_outstanding(dir);
        let all = outstanding.len();
        let left: Vec<MdDigest> = outstanding
            .into_iter()
            .filter(|d| !asked.contains(d))
            .collect();
        (!left.is_empty()).then_some((left, all))
    }

    /// Hand out a request to the next source: what to send there, with
    /// `build` making the request for that source.
    fn issue(
        &mut self,
        kind: DocKind,
        build: impl FnOnce(&mut Self, &DirSource) -> (Request, Vec<MdDigest>),
        certs: Vec<AuthCertKeyIds>,
    ) -> Option<DirRequest> {
        let source = self.sources.pick()?;
        let (request, digests) = build(self, &source);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let bytes = request.encode(&source.addr().to_string());
        self.in_flight.insert(
            id,
            InFlight {
                source: source.clone(),
                kind,
                digests,
                certs,
            },
        );
        self.note_progress();
        Some(DirRequest {
            id,
            source,
            path: request.path,
            request: bytes,
            kind,
            max_bytes: MAX_HEAD.saturating_add(crate::documents::MAX_DOCUMENT_BYTES),
        })
    }

    /// The consensus held, for the next consensus request.
    fn held(&self) -> Option<Held<'_>> {
        let dir = self.netdir.as_ref()?;
        let lifetime = dir.lifetime();
        Some(Held {
            text: &dir.consensus().text,
            lifetime,
            params: dir.params(),
            diff: self.no_diff_from != Some(lifetime.valid_after),
        })
    }

    /// The next request to make, if any is due now.
    pub fn poll_request(&mut self, now: SystemTime) -> Option<DirRequest> {
        self.expire_pending(now);
        // 1. A consensus, when we have none or it is time to refresh.
        if self.consensus_due().is_some_and(|t| t <= now) {
            return self.issue(
                DocKind::Consensus,
                |me, _| {
                    let (req, _) = requests::consensus(&me.consensus_path, me.held(), now);
                    (req, Vec::new())
                },
                Vec::new(),
            );
        }
        // 2. Certificates for a consensus that cannot be checked yet.
        if self.schedules.certs.is_ready(now)
            && let Some(missing) = self.certs_wanted()
        {
            let path = paths::certs(&missing);
            return self.issue(
                DocKind::AuthorityCert,
                |_, _| (requests::plain(&path), Vec::new()),
                missing,
            );
        }
        // 3. Microdescriptors not yet here and not already asked for, in
        //    batches sized for the source.
        if self.schedules.mds.is_ready(now)
            && let Some((left, all)) = self.mds_wanted()
        {
            return self.issue(
                DocKind::Microdesc,
                |me, source| {
                    let n = requests::md_batch_size(all, source.is_begin_dir());
                    let batch: Vec<MdDigest> = left.into_iter().take(n).collect();
                    for d in &batch {
                        *me.md_attempts.entry(*d).or_insert(0) += 1;
                    }
                    (requests::plain(&paths::microdescs(&batch)), batch)
                },
                Vec::new(),
            );
        }
        None
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
