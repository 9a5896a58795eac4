//! Drives [`DirBootstrap`] with real IO: its requests carried on tokio
//! tasks (BEGIN_DIR on one-hop circuits to fallbacks and caches,
//! [`crate::dir_onehop`]; plain HTTP to authorities' DirPorts,
//! [`crate::http`]), the disk cache, and the wall clock. The bytes of each
//! request and answer are the state machine's: no directory logic lives
//! here.

use std::time::{Duration, Instant, SystemTime};

use braid_dir::bootstrap::ClockSkew;
use braid_dir::fetch::Encoding;
use braid_dir::{
    DirBootstrap, DirEvent, DirRequest, DirSource, DocError, DocKind, NetDir, Progress, RelayId,
    RequestId, SourceKind,
};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::ClientConfig;
use crate::dir_cache::DirCache;
use crate::dir_onehop::OneHopDir;
use crate::error::ClientError;
use crate::http;

/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a channel to a directory relay may take to open.
pub const DIR_CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// Figures of the answers that arrived (responses decoded, before their
/// documents were checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchFigures {
    /// Answers from directory caches among the guards (BEGIN_DIR).
    pub from_caches: usize,
    /// Answers from fallback directories (BEGIN_DIR).
    pub from_fallbacks: usize,
    /// Answers from authorities' DirPorts.
    pub from_authorities: usize,
    /// Response bytes read (heads and bodies as sent).
    pub wire_bytes: usize,
    /// Body bytes after decoding.
    pub body_bytes: usize,
    /// Bodies that came compressed (deflate, gzip or zstd).
    pub compressed: usize,
    /// Bodies by encoding name.
    pub by_encoding: Vec<(Encoding, usize)>,
    /// Consensus diffs received.
    pub diffs: usize,
}

impl FetchFigures {
    fn note(&mut self, ev: &DirEvent) {
        let DirEvent::Fetched {
            source,
            encoding,
            wire_bytes,
            body_bytes,
            diff,
            ..
        } = ev
        else {
            return;
        };
        match source.kind() {
            SourceKind::Cache => self.from_caches += 1,
            SourceKind::Fallback => self.from_fallbacks += 1,
            SourceKind::Authority => self.from_authorities += 1,
        }
        self.wire_bytes += wire_bytes;
        self.body_bytes += body_bytes;
        if *encoding != Encoding::Identity {
            self.compressed += 1;
        }
        match self.by_encoding.iter_mut().find(|(e, _)| e == encoding) {
            Some((_, n)) => *n += 1,
            None => self.by_encoding.push((*encoding, 1)),
        }
        if *diff {
            self.diffs += 1;
        }
    }
}

/// What a finished bootstrap reports.
#[derive(Debug, Clone)]
pub struct BootstrapReport {
    /// Wall time from the start of [`DirDriver::bootstrap`].
    pub elapsed: Duration,
    /// Final progress.
    pub progress: Progress,
    /// Documents taken from the cache.
    pub from_cache: Vec<DocKind>,
    /// Cache files set aside as corrupt.
    pub quarantined: Vec<DocKind>,
    /// Requests made.
    pub fetches: usize,
    /// What the answers were: sources, bytes, compression, diffs.
    pub figures: FetchFigures,
    /// Fetches that failed.
    pub fetch_failures: usize,
    /// Documents refused.
    pub rejected: usize,
    /// How far outside its validity the consensus in use was when it was
    /// taken, if it was (our clock is off, or the consensus is stale).
    pub clock_skew: Option<ClockSkew>,
}

/// The directory driver of one client.
#[derive(Debug)]
pub struct DirDriver {
    boot: DirBootstrap,
    cache: Option<DirCache>,
    fetch_timeout: Duration,
    onehop: OneHopDir,
    tasks: JoinSet<(RequestId, Result<Vec<u8>, String>)>,
    /// The client's guards, best first, to use as directory caches.
    dir_guards: Option<watch::Receiver<Vec<RelayId>>>,
    report: BootstrapReport,
    last_problem: Option<String>,
    /// Where each new state of the directory is published, if anyone
    /// subscribed.
    publish: Option<watch::Sender<Option<Arc<NetDir>>>>,
    /// What was last published: (valid-after, microdescriptors held).
    published: Option<(SystemTime, usize)>,
}

impl DirDriver {
    /// A driver for `config`, with its cache (or none).
    pub fn new(config: &ClientConfig, use_cache: bool) -> Result<Self, ClientError> {
        let cache = if use_cache {
            Some(
                DirCache::open(&config.cache_dir).map_err(|source| ClientError::Cache {
                    path: config.cache_dir.clone(),
                    source,
                })?,
            )
        } else {
            None
        };
        Ok(Self {
            boot: DirBootstrap::new(&config.dir, rand::random()),
            cache,
            fetch_timeout: FETCH_TIMEOUT,
            onehop: OneHopDir::new(DIR_CHANNEL_TIMEOUT),
            tasks: JoinSet::new(),
            dir_guards: None,
            report: BootstrapReport {
                elapsed: Duration::ZERO,
                progress: Progress {
                    percent: 0,
                    phase: braid_dir::Phase::Starting,
                    microdescs: (0, 0),
                },
                from_cache: Vec::new(),
                quarantined: Vec::new(),
                fetches: 0,
                figures: FetchFigures::default(),
                fetch_failures: 0,
                rejected: 0,
                clock_skew: None,
            },
            last_problem: None,
            publish: None,
            published: None,
        })
    }

    /// Receive a copy of the directory whenever it changes (a new consensus,
    /// more microdescriptors).
    pub fn subscribe(&mut self) -> watch::Receiver<Option<Arc<NetDir>>> {
        let current = self.boot.netdir().cloned().map(Arc::new);
        match &self.publish {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(current);
                self.publish = Some(tx);
                rx
            }
        }
    }

    /// True while someone holds a receiver from [`Self::subscribe`].
    pub fn has_subscribers(&self) -> bool {
        self.publish
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    fn publish_if_changed(&mut self) {
        let Some(tx) = &self.publish else {
            return;
        };
        let Some(dir) = self.boot.netdir() else {
            return;
        };
        let key = (dir.lifetime().valid_after, dir.n_with_md());
        if self.published != Some(key) {
            self.published = Some(key);
            let _ = tx.send(Some(Arc::new(dir.clone())));
        }
    }

    /// Ask the client's guards (best first, as `guards` publishes them)
    /// as directory caches, once a consensus lists them (C-tor's
    /// directory guards).
    pub fn follow_guards(&mut self, guards: watch::Receiver<Vec<RelayId>>) {
        self.dir_guards = Some(guards);
    }

    /// The one-hop transport (for inspection: open channels).
    pub fn onehop(&self) -> &OneHopDir {
        &self.onehop
    }

    /// The directory, once a consensus verified.
    pub fn netdir(&self) -> Option<&NetDir> {
        self.boot.netdir()
    }

    /// The state machine (for inspection).
    pub fn state(&self) -> &DirBootstrap {
        &self.boot
    }

    /// Feed the cache to the state machine: certificates, then the
    /// consensus, then microdescriptors. A file that fails verification for
    /// any reason but age is set aside as corrupt.
    fn load_cache(&mut self, on_event: &mut impl FnMut(&DirEvent)) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        for kind in [
            DocKind::AuthorityCert,
            DocKind::Consensus,
            DocKind::Microdesc,
        ] {
            let text = match cache.load(kind) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("cache file {} unreadable: {e}", cache.path(kind).display());
                    self.set_aside(&cache, kind);
                    continue;
                }
            };
            match self.boot.handle_cached(kind, &text, SystemTime::now()) {
                Ok(()) => self.report.from_cache.push(kind),
                Err(DocError::NotTimely { .. }) => {
                    tracing::info!("cached {kind} is out of date; fetching a new one");
                }
                Err(error) => {
                    tracing::warn!(
                        "cached {kind} in {} refused: {error}",
                        cache.path(kind).display()
                    );
                    on_event(&DirEvent::Rejected {
                        source: None,
                        error,
                    });
                    self.set_aside(&cache, kind);
                }
            }
            self.drain_events(on_event);
        }
    }

    fn set_aside(&mut self, cache: &DirCache, kind: DocKind) {
        match cache.quarantine(kind) {
            Ok(aside) => {
                tracing::warn!("set corrupt cache file aside as {}", aside.display());
                self.report.quarantined.push(kind);
            }
            Err(e) => tracing::warn!("cannot set corrupt cache file aside: {e}"),
        }
    }

    fn drain_events(&mut self, on_event: &mut impl FnMut(&DirEvent)) {
        while let Some(ev) = self.boot.poll_event() {
            self.report.figures.note(&ev);
            match &ev {
                DirEvent::Fetched {
                    source,
                    kind,
                    encoding,
                    wire_bytes,
                    body_bytes,
                    diff,
                } => tracing::debug!(
                    "{kind} from {source}: {wire_bytes} bytes {encoding}, {body_bytes} decoded{}",
                    if *diff { " (a diff)" } else { "" }
                ),
                DirEvent::Store { kind, text } => {
                    if let Some(cache) = &self.cache
                        && let Err(e) = cache.store(*kind, text)
                    {
                        // The old file is intact (atomic write); go on in
                        // memory.
                        tracing::warn!("cannot write {kind} to the cache: {e}");
                        self.last_problem = Some(format!("cache write failed: {e}"));
                    }
                }
                DirEvent::Rejected { source, error } => {
                    self.report.rejected += 1;
                    let from = source
                        .as_ref()
                        .map_or_else(|| "cache".to_owned(), ToString::to_string);
                    if matches!(error, DocError::Outdated) {
                        // Not a failure: the next one is fetched later.
                        tracing::info!("consensus from {from} is no newer than ours");
                    } else {
                        tracing::warn!("refused document from {from}: {error}");
                        self.last_problem = Some(format!("{from}: {error}"));
                    }
                }
                DirEvent::FetchFailed {
                    source,
                    error,
                    retry_at,
                } => {
                    self.report.fetch_failures += 1;
                    let wait = retry_at
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tracing::info!(
                        "fetch from {source} failed: {error}; next attempt in {:.1} s",
                        wait.as_secs_f64()
                    );
                    self.last_problem = Some(error.clone());
                }
                DirEvent::ClockSkew { source, skew, .. } => {
                    match (source, skew) {
                        // An old cache file: expected after a pause.
                        (None, ClockSkew::Ahead(_)) => tracing::info!(
                            "cached consensus taken outside its validity until a newer one arrives: {skew}"
                        ),
                        _ => {
                            let from = source
                                .as_ref()
                                .map_or_else(|| "the cache".to_owned(), ToString::to_string);
                            tracing::warn!(
                                "consensus from {from} taken outside its validity: {skew}"
                            );
                        }
                    }
                    self.report.clock_skew = Some(*skew);
                }
                DirEvent::Progress(p) => tracing::info!("{p}"),
                DirEvent::NewConsensus { .. } => {}
            }
            on_event(&ev);
        }
    }

    /// Run until the directory is complete (100%), or fail after `limit`.
    /// `on_event` sees every event (progress lines, refusals, failures).
    pub async fn bootstrap(
        &mut self,
        limit: Duration,
        mut on_event: impl FnMut(&DirEvent),
    ) -> Result<BootstrapReport, ClientError> {
        let start = Instant::now();
        self.load_cache(&mut on_event);
        self.run_until(start, limit, &mut on_event, DirBootstrap::is_done)
            .await?;
        self.report.elapsed = start.elapsed();
        self.report.progress = self.boot.progress();
        Ok(self.report.clone())
    }

    /// After [`Self::bootstrap`] from a cache: run until the directory's
    /// consensus is newer than one valid after `than` (the time its
    /// schedule fetches it, by diff where a cache offers one), or fail
    /// after `limit`. The figures keep counting from the bootstrap.
    pub async fn catch_up(
        &mut self,
        than: SystemTime,
        limit: Duration,
        mut on_event: impl FnMut(&DirEvent),
    ) -> Result<BootstrapReport, ClientError> {
        let start = Instant::now();
        self.run_until(start, limit, &mut on_event, |b| {
            b.netdir().is_some_and(|d| d.lifetime().valid_after > than)
        })
        .await?;
        self.report.elapsed += start.elapsed();
        self.report.progress = self.boot.progress();
        Ok(self.report.clone())
    }

    /// Keep the directory fresh for `duration`: refetch the consensus and
    /// new microdescriptors as their times come.
    pub async fn keep_fresh(&mut self, duration: Duration, mut on_event: impl FnMut(&DirEvent)) {
        let start = Instant::now();
        let _ = self
            .run_until(start, duration, &mut on_event, |_| false)
            .await;
    }

    async fn run_until(
        &mut self,
        start: Instant,
        limit: Duration,
        on_event: &mut impl FnMut(&DirEvent),
        done: impl Fn(&DirBootstrap) -> bool,
    ) -> Result<(), ClientError> {
        loop {
            self.drain_events(on_event);
            self.publish_if_changed();
            if done(&self.boot) {
                return Ok(());
            }
            if let Some(rx) = &mut self.dir_guards
                && rx.has_changed().unwrap_or(false)
            {
                let guards = rx.borrow_and_update().clone();
                self.boot.set_dir_guards(guards);
            }
            let now = SystemTime::now();
            while let Some(req) = self.boot.poll_request(now) {
                self.report.fetches += 1;
                tracing::debug!("{} from {}: {}", req.kind, req.source, req.path);
                self.spawn(req);
            }
            self.drain_events(on_event);
            let Some(left) = limit.checked_sub(start.elapsed()) else {
                return Err(ClientError::BootstrapTimeout {
                    elapsed: start.elapsed(),
                    progress: self.boot.progress().to_string(),
                    last_problem: self.last_problem.clone().unwrap_or_else(|| "none".into()),
                });
            };
            let wake = self
                .boot
                .poll_timeout()
                .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
                .map_or(left, |d| d.min(left));
            tokio::select! {
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok((id, result)) = joined {
                        self.boot.handle_http(id, result, SystemTime::now());
                    }
                }
                () = tokio::time::sleep(wake) => {
                    self.boot.handle_timeout(SystemTime::now());
                }
            }
        }
    }

    /// Carry `req` on a task: its bytes to its source, over BEGIN_DIR or
    /// to a DirPort, and the raw answer back.
    fn spawn(&mut self, req: DirRequest) {
        let timeout = self.fetch_timeout;
        let onehop = self.onehop.clone();
        self.tasks.spawn(async move {
            let result = match &req.source {
                DirSource::DirPort { addr, .. } => {
                    http::exchange(*addr, &req.request, req.max_bytes, timeout).await
                }
                DirSource::BeginDir { target, .. } => {
                    let fetch = onehop.fetch(target, req.request, req.max_bytes);
                    match tokio::time::timeout(timeout, fetch).await {
                        Ok(r) => r,
                        Err(_) => Err(crate::error::FetchError::Timeout {
                            addr: req.source.addr(),
                            timeout,
                        }),
                    }
                }
            };
            (req.id, result.map_err(|e| e.to_string()))
        });
    }
}
