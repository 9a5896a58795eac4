//! The Tor client: a directory kept fresh, a guard set, channels to guards,
//! and a pool of built tunnels per isolation key (bounded, [`crate::pool`]),
//! used by the SOCKS front end through [`Connector`](crate::socks::Connector).
//!
//! Paths follow path-spec §2.2 through braid-dir; the first hop comes from
//! the guard set (guard-spec §4), whose state is saved in the cache folder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use braid_core::channel::ExpectedIdentity;
use braid_core::channel::padding::PaddingParams;
use braid_core::circuit::HopTarget;
use braid_core::conflux::ConfluxConfig;
use braid_core::stream::{Host, Socks5Reply, Target};
use braid_core::tunnel::{TunnelConfig, TunnelKind};
use braid_dir::{
    DirEvent, GuardParams, GuardSet, GuardUsage, NetDir, Path, PathConfig, Relay, RelayId,
    SuccessOutcome, choose_conflux_legs, choose_path,
};
use tokio::sync::watch;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::channel::{Channel, ChannelConfig, ChannelHandle};
use crate::config::ClientConfig;
use crate::dir_cache::DirCache;
use crate::dir_driver::DirDriver;
use crate::error::ClientError;
use crate::hops::hop_target;
use crate::keyed_lock::KeyedLock;
use crate::names;
use crate::pool::{IsolationPool, MAX_POOL_KEYS};
use crate::socks::IsolationKey;
use crate::state::{StateDir, network_key};
use crate::tunnel::{
    BeginError, LegFuture, LegPlan, LegSource, TorStream, TunnelError, TunnelHandle, TunnelInfo,
    WeakTunnel, build_conflux_tunnel,
};

/// How long a channel may take to open.
pub const CHANNEL_TIMEOUT: Duration = Duration::from_secs(15);
/// Cells a circuit may have waiting between its channel and its tunnel
/// task (2 MB). An exit may have its whole congestion window in flight, and
/// on a fast path that window reaches thousands of cells; the task drains
/// the queue in batches, so it only fills when the task stalls, and then the
/// circuit is closed (the seed's KIST plan, item 3).
pub const CIRCUIT_INBOUND_CELLS: usize = 4096;
/// Tunnels built ahead of need for the default isolation key, so the first
/// request does not wait for a build.
pub const PREEMPTIVE_TUNNELS: usize = 2;
/// Tunnels kept per isolation key.
pub const MAX_TUNNELS_PER_KEY: usize = 4;
/// How long a relay that a circuit could not be extended to is avoided.
pub const FAILED_RELAY_AVOID: Duration = Duration::from_secs(60);
/// How often the pool drops the tunnels too dirty for new streams.
const TUNNEL_SWEEP: Duration = Duration::from_secs(30);
/// Attempts at a stream before giving up (a failed circuit is replaced).
const BEGIN_ATTEMPTS: usize = 3;

/// The client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TorClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    netdir: watch::Receiver<Option<Arc<NetDir>>>,
    guards: Mutex<GuardSet>,
    cache: Option<DirCache>,
    /// Where the guard set is saved; locked for the client's life.
    state: Option<StateDir>,
    /// Open channels by relay.
    channels: Mutex<HashMap<RelayId, ChannelHandle>>,
    /// One connect at a time per relay: a request for a relay being
    /// connected to waits for that connect and takes its channel; connects
    /// to different relays go on in parallel.
    connecting: KeyedLock<RelayId>,
    /// Built tunnels per isolation key, for the [`MAX_POOL_KEYS`] keys
    /// used last.
    pool: Mutex<IsolationPool<IsolationKey, TunnelHandle>>,
    /// Every tunnel handed out, without keeping any alive (for reports).
    registry: Mutex<Vec<(WeakTunnel, Option<IsolationKey>)>>,
    /// Built tunnels no isolation key has claimed yet: the first stream of
    /// a new key takes one instead of waiting for a build (as C-tor's
    /// prebuilt Conflux sets, `cfx_max_prebuilt_set`).
    spare: Mutex<Vec<TunnelHandle>>,
    /// A refill of `spare` is under way.
    refilling: std::sync::atomic::AtomicBool,
    /// One build on demand at a time per isolation key, so a burst of
    /// requests for a key does not start a burst of builds (the waiters
    /// take the tunnel built first); keys build in parallel.
    building: KeyedLock<IsolationKey>,
    /// Relays a circuit could not be extended to, and until when to avoid
    /// them: the consensus may list a relay as Running for a while after it
    /// died.
    failed_relays: Mutex<HashMap<RelayId, std::time::Instant>>,
    /// The primary guards, for the directory driver to ask as caches.
    dir_guards: watch::Sender<Vec<RelayId>>,
    /// The learned circuit build timeout (path-spec §2.4).
    build_times: Mutex<braid_dir::build_timeout::BuildTimes>,
    /// Keys whose next tunnel waits and avoids middles (Braid proposal
    /// 001 §5.3).
    rebuild: Mutex<rebuild::RebuildGate<IsolationKey>>,
    /// Tunnels that left the pool for dirtiness, for policy (c) (the
    /// rotate module).
    retired: Mutex<rotate::Retired>,
}

impl TorClient {
    /// Bootstrap the directory (within `limit`), keep it fresh in the
    /// background, load the guard state, and build the preemptive tunnels.
    pub async fn bootstrap(
        config: ClientConfig,
        limit: Duration,
        mut on_event: impl FnMut(&DirEvent) + Send + 'static,
    ) -> Result<Self, ClientError> {
        // The state directory first: a second proxy on the same state
        // fails at once, before any network traffic.
        let network = network_key(
            config
                .dir
                .authorities
                .iter()
                .map(|a| a.v3ident.as_bytes().as_slice()),
        );
        let state = StateDir::open(&config.state_dir, &network)?;
        let mut driver = DirDriver::new(&config, true)?;
        driver.bootstrap(limit, &mut on_event).await?;
        let netdir = driver.subscribe();
        let cache = DirCache::open(&config.cache_dir).ok();
        let params = GuardParams::default();
        // The state directory's guards; a cache of an older Braid may hold
        // them instead (taken once, then saved in the state directory).
        let saved = match state.load_guards()? {
            Some(t) => Some(t),
            None => cache.as_ref().and_then(|c| c.load_guards().ok().flatten()),
        };
        let guards = saved
            .and_then(|t| GuardSet::from_toml(&t, params.clone()).ok())
            .unwrap_or_else(|| GuardSet::new(params));
        let client = Self::with_parts(config, netdir, guards, cache, Some(state));
        client.load_build_times();
        // Our primary guards are the directory's caches from now on.
        driver.follow_guards(client.inner.dir_guards.subscribe());
        tokio::spawn(async move {
            // Until the client is dropped (its receiver with it).
            while driver.has_subscribers() {
                driver
                    .keep_fresh(Duration::from_secs(10), &mut on_event)
                    .await;
            }
        });
        client.update_guards();
        client.follow_consensus();
        client.expire_tunnels();
        Ok(client)
    }

    /// A client over a directory feed, a guard set and a cache, with no
    /// channels or tunnels yet.
    fn with_parts(
        config: ClientConfig,
        netdir: watch::Receiver<Option<Arc<NetDir>>>,
        guards: GuardSet,
        cache: Option<DirCache>,
        state: Option<StateDir>,
    ) -> Self {
        let dirtiness = config.max_circuit_dirtiness;
        Self {
            inner: Arc::new(Inner {
                config,
                netdir,
                guards: Mutex::new(guards),
                cache,
                state,
                channels: Mutex::new(HashMap::new()),
                connecting: KeyedLock::new(),
                pool: Mutex::new(IsolationPool::new(
                    MAX_POOL_KEYS,
                    MAX_TUNNELS_PER_KEY,
                    dirtiness,
                )),
                registry: Mutex::new(Vec::new()),
                spare: Mutex::new(Vec::new()),
                refilling: std::sync::atomic::AtomicBool::new(false),
                building: KeyedLock::new(),
                failed_relays: Mutex::new(HashMap::new()),
                build_times: Mutex::new(braid_dir::build_timeout::BuildTimes::new(
                    braid_dir::build_timeout::BuildTimeParams::default(),
                )),
                dir_guards: watch::channel(Vec::new()).0,
                rebuild: Mutex::new(rebuild::RebuildGate::new(MAX_POOL_KEYS)),
                retired: Mutex::new(rotate::Retired::default()),
            }),
        }
    }

    /// Build the preemptive tunnels (Conflux sets for port 443 when
    /// Conflux is on), kept spare for the first streams of any isolation
    /// key. Errors are logged; requests build their own tunnels if these
    /// failed.
    pub async fn build_preemptive(&self) {
        while self.spare_count() < PREEMPTIVE_TUNNELS {
            match self.build_spare().await {
                Ok(t) => self.add_spare(t),
                Err(e) => {
                    tracing::warn!("preemptive circuit failed: {e}");
                    break;
                }
            }
        }
    }

    /// One tunnel of the configured kind, for the spare pool.
    async fn build_spare(&self) -> Result<TunnelHandle, TunnelError> {
        self.build_for(None, 443, &[]).await
    }

    /// Conflux legs per tunnel now: the configured number while the
    /// consensus enables Conflux (`cfx_enabled`, default 1, as C-tor's
    /// `conflux_is_enabled`), else `None`.
    fn conflux_legs(&self) -> Option<usize> {
        let n = self.inner.config.conflux_legs?;
        let enabled = self
            .netdir()
            .is_none_or(|d| d.params().get("cfx_enabled").is_none_or(|v| *v != 0));
        enabled.then_some(n)
    }

    /// A tunnel of the configured kind for `port`: a Conflux set, or one
    /// circuit when Conflux is off or no Conflux exit allows the port
    /// (C-tor clients also fall back to a single circuit then). For an
    /// isolation `key` whose exit migrates streams, a circuit carries the
    /// first streams while the set builds (the migrate module).
    /// Its middles are none of `avoid` where the directory allows (Braid
    /// proposal 001 §5.3).
    async fn build_for(
        &self,
        key: Option<&IsolationKey>,
        port: u16,
        avoid: &[RelayId],
    ) -> Result<TunnelHandle, TunnelError> {
        let Some(n) = self.conflux_legs() else {
            return self.build_avoiding(Some(port), avoid).await;
        };
        let built = match key {
            Some(key) if self.inner.config.migrate => {
                self.conflux_meanwhile(key, port, n, avoid).await
            }
            _ => {
                let (legs, exit) = self.conflux_plans(Some(port), n, None, avoid).await?;
                self.build_conflux_from(legs, &exit).await
            }
        };
        match built {
            Err(TunnelError::Path(why)) => {
                tracing::info!("no Conflux set for port {port} ({why}); one circuit instead");
                self.build_avoiding(Some(port), avoid).await
            }
            other => other,
        }
    }

    /// Live spare tunnels.
    fn spare_count(&self) -> usize {
        let mut spare = self.inner.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.retain(|t| !t.is_closed());
        spare.len()
    }

    fn add_spare(&self, tunnel: TunnelHandle) {
        self.register(&tunnel, None);
        let mut spare = self.inner.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.push(tunnel);
    }

    /// Take a spare tunnel whose exit allows `port`, and refill the pool in
    /// the background.
    fn claim_spare(&self, port: u16) -> Option<TunnelHandle> {
        let claimed = {
            let mut spare = self.inner.spare.lock().unwrap_or_else(|e| e.into_inner());
            spare.retain(|t| !t.is_closed());
            let i = spare
                .iter()
                .position(|t| t.info().exit_policy.allows_port(port))?;
            spare.remove(i)
        };
        self.refill_spare();
        Some(claimed)
    }

    /// Build spare tunnels up to [`PREEMPTIVE_TUNNELS`], one refill at a
    /// time.
    fn refill_spare(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            client.build_preemptive().await;
            client.inner.refilling.store(false, Ordering::Release);
        });
    }

    /// The current directory.
    pub fn netdir(&self) -> Option<Arc<NetDir>> {
        self.inner.netdir.borrow().clone()
    }

    /// Built tunnels of one isolation key.
    pub fn tunnels_for(&self, key: &IsolationKey) -> Vec<TunnelHandle> {
        let pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.tunnels_of(key)
    }

    /// Built tunnels, claimed or spare.
    pub fn tunnels(&self) -> Vec<TunnelHandle> {
        let mut out: Vec<TunnelHandle> = {
            let pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.all()
        };
        let spare = self.inner.spare.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(spare.iter().cloned());
        out
    }

    /// Every tunnel still running (in the pool or carrying streams), for
    /// status reports.
    pub fn live_tunnels(&self) -> Vec<TunnelHandle> {
        let mut reg = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A tunnel only its streams hold is reached too (its handle keeps
        // nothing): `braid streams` lists and moves its streams.
        reg.retain(|(w, _)| !w.is_gone());
        reg.iter().filter_map(|(w, _)| w.reach()).collect()
    }

    /// Remember `tunnel` for [`Self::live_tunnels`], with the isolation
    /// key it serves once it has one (it may leave the key's pool, full or
    /// too dirty, and carry the key's streams on).
    fn register(&self, tunnel: &TunnelHandle, key: Option<&IsolationKey>) {
        let mut reg = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        reg.retain(|(w, _)| !w.is_gone());
        match reg.iter_mut().find(|(w, _)| w.id() == tunnel.id()) {
            Some((_, k)) => {
                if k.is_none() {
                    *k = key.cloned();
                }
            }
            None => reg.push((tunnel.downgrade(), key.cloned())),
        }
    }

    /// The isolation key `tunnel` was put in the pool for, if any.
    pub(crate) fn registered_key(&self, tunnel: &TunnelHandle) -> Option<IsolationKey> {
        let reg = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        reg.iter()
            .find(|(w, _)| w.id() == tunnel.id())
            .and_then(|(_, k)| k.clone())
    }

    /// Update the guard set on every new directory (guard-spec §4.10: "on
    /// every new consensus"), so that a primary guard that leaves the
    /// consensus stops being chosen without a restart. The task holds the
    /// client weakly and ends with it.
    fn follow_consensus(&self) {
        let mut rx = self.inner.netdir.clone();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                TorClient { inner }.update_guards();
            }
        });
    }

    /// Every [`TUNNEL_SWEEP`] (more often for short dirtiness or
    /// rotation settings), drop the pool's tunnels that are too dirty for
    /// new streams (`max_circuit_dirtiness`, [`crate::pool::MAX_CIRCUIT_DIRTINESS`] by
    /// default): with no handle left, each closes once its last stream
    /// ends, as C-tor closes a dirty circuit without streams; and move
    /// the long-lived streams of those retired long enough ago (policy
    /// (c), the rotate module). Ends with the client.
    fn expire_tunnels(&self) {
        let weak = Arc::downgrade(&self.inner);
        let config = &self.inner.config;
        let every = [
            Some(config.max_circuit_dirtiness),
            config.rotate_streams_after,
        ]
        .into_iter()
        .flatten()
        .map(|d| d / 4)
        .fold(TUNNEL_SWEEP, Duration::min)
        .max(Duration::from_millis(250));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                let now = std::time::Instant::now();
                let dirty = {
                    let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
                    pool.expire(now)
                };
                {
                    let mut retired = inner.retired.lock().unwrap_or_else(|e| e.into_inner());
                    for (key, t) in dirty {
                        tracing::debug!("tunnel {} takes no new streams (dirty)", t.id());
                        retired.add(key, t, now);
                    }
                }
                TorClient { inner }.rotate_due(now);
            }
        });
    }

    /// Apply the current directory to the guard set: its guard parameters
    /// (guard-spec §A.1), then its relays (§4.10).
    fn update_guards(&self) {
        let Some(dir) = self.netdir() else {
            return;
        };
        let relays = dir.relays();
        let mut guards = self.inner.guards.lock().unwrap_or_else(|e| e.into_inner());
        guards.set_params(GuardParams::from_consensus(dir.params()));
        self.update_build_time_params(dir.params());
        guards.update_consensus(&relays, dir.weights(), SystemTime::now(), &mut rand::rng());
        self.save_guards(&guards);
        self.inner
            .dir_guards
            .send_replace(guards.primary().to_vec());
    }

    fn save_guards(&self, guards: &GuardSet) {
        let Ok(text) = guards.to_toml() else {
            return;
        };
        let saved = match (&self.inner.state, &self.inner.cache) {
            (Some(state), _) => state.store_guards(&text).map_err(|e| e.to_string()),
            (None, Some(cache)) => cache.store_guards(&text).map_err(|e| e.to_string()),
            (None, None) => Ok(()),
        };
        if let Err(e) = saved {
            tracing::warn!("cannot save the guard state: {e}");
        }
    }

    /// An open channel to `relay`, if there is one.
    fn open_channel(&self, relay: &RelayId) -> Option<ChannelHandle> {
        let channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        channels.get(relay).filter(|ch| !ch.is_closed()).cloned()
    }

    /// A channel to `relay`, reusing an open one. Requests for a relay
    /// being connected to share that connect (if it fails, the next waiter
    /// tries again); different relays connect in parallel.
    async fn channel_to(&self, relay: &Relay) -> Result<ChannelHandle, TunnelError> {
        if let Some(ch) = self.open_channel(&relay.id) {
            return Ok(ch);
        }
        let _connecting = self.inner.connecting.lock(relay.id).await;
        if let Some(ch) = self.open_channel(&relay.id) {
            return Ok(ch);
        }
        let expected = ExpectedIdentity {
            rsa: RsaIdentity::from(*relay.id.as_bytes()),
            ed25519: relay.ed_id.map(|e| Ed25519Identity::from(*e.as_bytes())),
        };
        let padding = self
            .netdir()
            .map(|d| PaddingParams::from_consensus(d.params()))
            .unwrap_or_default();
        let config = ChannelConfig {
            circuit_inbound_queue: CIRCUIT_INBOUND_CELLS,
            padding,
            ..ChannelConfig::default().with_connect_timeout(CHANNEL_TIMEOUT)
        };
        let (ch, _task) =
            Channel::connect_with(std::net::SocketAddr::V4(relay.addr), expected, &config).await?;
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        channels.retain(|_, c| !c.is_closed());
        channels.insert(relay.id, ch.clone());
        Ok(ch)
    }

    /// Build a 3-hop tunnel whose exit allows `port` (any port if `None`).
    /// A circuit through a guard that is not primary while a primary may
    /// still work is held (guard-spec §4.9, `<waiting_for_better_guard>`)
    /// while a circuit through the better guard is tried
    /// (`wait_for_better_guard`).
    pub async fn build(&self, port: Option<u16>) -> Result<TunnelHandle, TunnelError> {
        self.build_avoiding(port, &[]).await
    }

    /// [`Self::build`] with a middle none of `avoid` where the directory
    /// allows.
    async fn build_avoiding(
        &self,
        port: Option<u16>,
        avoid: &[RelayId],
    ) -> Result<TunnelHandle, TunnelError> {
        let (tunnel, outcome) = self.build_attempt(port, avoid).await?;
        if outcome == Some(SuccessOutcome::WaitForBetterGuard) {
            return Ok(self.wait_for_better_guard(tunnel, port, avoid).await);
        }
        Ok(tunnel)
    }

    /// One build: the tunnel, and what the guard set said of its guard's
    /// success (`None` with `entry_nodes`).
    async fn build_attempt(
        &self,
        port: Option<u16>,
        avoid: &[RelayId],
    ) -> Result<(TunnelHandle, Option<SuccessOutcome>), TunnelError> {
        let dir = self
            .netdir()
            .ok_or_else(|| TunnelError::Path("no directory yet".into()))?;
        let relays = self.usable_relays(&dir);
        let config = PathConfig {
            enforce_distinct_subnets: self.inner.config.enforce_distinct_subnets,
            exit_port: port,
            nodes: self.inner.config.nodes.clone(),
            ..PathConfig::default()
        };
        // guard-spec §4.6: the first hop from the guard set, unless
        // `entry_nodes` names the guards (path selection then picks one).
        let choice = if self.inner.config.nodes.entry.is_empty() {
            // Never a guard the client avoids for now (it failed to carry a
            // circuit): the next usable one instead, rather than a build
            // that cannot find it among the usable relays.
            let avoided = self.avoided_relays();
            let mut guards = self.inner.guards.lock().unwrap_or_else(|e| e.into_inner());
            Some(
                guards
                    .pick_guard(&avoided, SystemTime::now(), &mut rand::rng())
                    .map_err(|e| TunnelError::Path(e.to_string()))?,
            )
        } else {
            None
        };
        let guard = match &choice {
            Some(c) => Some(relays.iter().find(|r| r.id == c.id).ok_or_else(|| {
                TunnelError::Path("the chosen guard is not in the directory".into())
            })?),
            None => None,
        };
        let keep = |r: &Relay| guard.is_some_and(|g| g.id == r.id);
        let fewer = without(&relays, avoid, keep);
        let path = choose_path(&fewer, dir.weights(), guard, &config, &mut rand::rng())
            .or_else(|e| {
                if avoid.is_empty() {
                    return Err(e);
                }
                tracing::info!("no path on other middles ({e}); any middle");
                choose_path(&relays, dir.weights(), guard, &config, &mut rand::rng())
            })
            .map_err(|e| TunnelError::Path(e.to_string()))?;
        let hops = path_hops(&path)?;
        let migrate = self.migrates_with(path.exit);
        let info = TunnelInfo {
            legs: vec![path_names(&path)],
            exit: path.exit.id,
            exit_policy: path.exit.policy.clone(),
            migrate,
        };
        let mut config = TunnelConfig::from_consensus(TunnelKind::Single, dir.params());
        // Braid proposal 001 §2.1: only with an exit that advertises it.
        config.streams.migratable = migrate;
        let result = match self.channel_to(path.guard).await {
            Ok(ch) => self.build_single(&ch, hops, info, config).await,
            Err(e) => Err(e),
        };
        if let Some(suspect) = result.as_ref().err().and_then(TunnelError::suspect) {
            self.avoid_hop(&path, suspect);
        }
        let Some(choice) = choice else {
            return result.map(|t| (t, None));
        };
        let mut guards = self.inner.guards.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        let mut outcome = None;
        match &result {
            Ok(_) => {
                outcome = guards.note_success(&choice.id, now, &mut rand::rng()).ok();
            }
            // guard-spec §4.7: only a failure to reach the guard marks it.
            // A relay we cannot reach is likely down: it is not picked as
            // another circuit's middle or exit for a while either.
            Err(TunnelError::Channel(_)) => {
                let _ = guards.note_failure(&choice.id, now);
                self.avoid(choice.id);
            }
            Err(_) => {}
        }
        if choice.usage == GuardUsage::Primary || result.is_ok() {
            self.save_guards(&guards);
        }
        result.map(|t| (t, outcome))
    }

    /// A circuit along `path` failed after `hops_done` hops: the relay it
    /// was extending to is avoided for [`FAILED_RELAY_AVOID`]. A failure
    /// before the first hop is the guard's, which the guard set handles.
    fn avoid_hop(&self, path: &Path<'_>, hops_done: usize) {
        self.avoid_ids(&path.ids(), hops_done);
    }

    /// [`Self::avoid_hop`] for a path given by its identities.
    fn avoid_ids(&self, ids: &[RelayId], hops_done: usize) {
        if let Some(culprit) = ids.get(hops_done).copied().filter(|_| hops_done > 0) {
            self.avoid(culprit);
        }
    }

    /// Avoid `relay` for [`FAILED_RELAY_AVOID`].
    fn avoid(&self, relay: RelayId) {
        let mut failed = self
            .inner
            .failed_relays
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failed.insert(relay, std::time::Instant::now() + FAILED_RELAY_AVOID);
    }

    /// Relays avoided for now (see [`FAILED_RELAY_AVOID`]).
    fn avoided_relays(&self) -> Vec<RelayId> {
        let mut failed = self
            .inner
            .failed_relays
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        failed.retain(|_, until| *until > now);
        failed.keys().copied().collect()
    }

    /// The relays of `dir` minus those recently found unreachable.
    fn usable_relays(&self, dir: &NetDir) -> Vec<Relay> {
        conflux::without_failed(&dir.relays(), &self.avoided_relays())
    }

    pub(crate) fn add_to_pool(&self, key: &IsolationKey, tunnel: TunnelHandle) {
        self.register(&tunnel, Some(key));
        self.watch_close(key, &tunnel);
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.insert(key.clone(), tunnel, std::time::Instant::now());
    }

    pub(crate) fn drop_from_pool(&self, key: &IsolationKey, tunnel: &TunnelHandle) {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.remove(key, |t| t.id() == tunnel.id());
    }

    /// A built tunnel for `key` whose exit allows `port`: from the pool, or
    /// newly built.
    async fn tunnel_for(&self, key: &IsolationKey, port: u16) -> Result<TunnelHandle, TunnelError> {
        let pick = |me: &Self| {
            let mut pool = me.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.find(key, std::time::Instant::now(), |t| {
                t.info().exit_policy.allows_port(port)
            })
        };
        if let Some(t) = pick(self) {
            return Ok(t);
        }
        // After a close that calls for it, the next tunnel is built fresh,
        // after a random delay, on other middles (Braid proposal 001 §5.3).
        if !self.rebuild_pending(key)
            && let Some(t) = self.claim_spare(port)
        {
            self.add_to_pool(key, t.clone());
            return Ok(t);
        }
        let _one_per_key = self.inner.building.lock(key.clone()).await;
        if let Some(t) = pick(self) {
            return Ok(t);
        }
        let avoid = self.rebuild_wait(key).await;
        let t = self.build_for(Some(key), port, &avoid).await?;
        self.rebuilt(key);
        self.add_to_pool(key, t.clone());
        Ok(t)
    }

    /// Open a stream to `target` for isolation key `key`. A name that must
    /// not reach an exit (`.onion`, `.exit`, not a DNS name) fails at once
    /// ([`crate::names`]).
    pub async fn connect(
        &self,
        target: Target,
        key: &IsolationKey,
    ) -> Result<TorStream, BeginError> {
        if let Host::Hostname(h) = &target.host {
            check_name(h)?;
        }
        let mut last = None;
        for _ in 0..BEGIN_ATTEMPTS {
            let tunnel = match self.tunnel_for(key, target.port).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!("circuit for a stream failed: {e}");
                    last = Some(BeginError {
                        reply: Socks5Reply::GeneralFailure,
                        reason: e.to_string(),
                        circuit_failed: true,
                    });
                    continue;
                }
            };
            match tunnel.begin(target.clone()).await {
                Ok(s) => return Ok(s),
                Err(e) if e.circuit_failed => {
                    // Like C-tor: the circuit is not used for new streams.
                    tracing::info!("stream failed ({e}); trying another circuit");
                    self.drop_from_pool(key, &tunnel);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(BeginError {
            reply: Socks5Reply::GeneralFailure,
            reason: "no circuit".into(),
            circuit_failed: true,
        }))
    }
}

/// The circuit hop targets of `path`, guard first; the exit is asked for
/// congestion control.
fn path_hops(path: &Path<'_>) -> Result<Vec<HopTarget>, TunnelError> {
    path.hops()
        .iter()
        .enumerate()
        .map(|(i, r)| hop_target(r, i == 2))
        .collect::<Option<_>>()
        .ok_or_else(|| TunnelError::Path("a relay lacks its keys".into()))
}

/// `relays` but those in `avoid`, except the ones to `keep` (the guards:
/// Braid proposal 001 §5.2, only the client's own guard set).
fn without(relays: &[Relay], avoid: &[RelayId], keep: impl Fn(&Relay) -> bool) -> Vec<Relay> {
    relays
        .iter()
        .filter(|r| keep(r) || !avoid.contains(&r.id))
        .cloned()
        .collect()
}

/// The nicknames along `path`, guard first.
fn path_names(path: &Path<'_>) -> Vec<String> {
    path.hops().iter().map(|r| r.nickname.clone()).collect()
}

/// [`names::check_hostname`] as a stream error.
fn check_name(host: &str) -> Result<(), BeginError> {
    names::check_hostname(host).map_err(|why| BeginError {
        reply: why.socks5_reply(),
        reason: why.to_string(),
        circuit_failed: false,
    })
}

mod better_guard;
mod build_times;
mod conflux;
mod connector;
mod migrate;
mod rebuild;
mod rotate;
#[cfg(test)]
mod tests;

pub use migrate::{MigrateOutcome, MigrateTo, StreamView};

/// What tunnels to an exit need to know of it.
#[derive(Debug, Clone)]
pub(crate) struct ExitFacts {
    /// Its identity.
    pub(crate) id: RelayId,
    /// Its port policy.
    pub(crate) policy: braid_dir::PortPolicy,
    /// Resumption is offered to it.
    pub(crate) resume: bool,
    /// Its streams are migratable.
    pub(crate) migrate: bool,
}
