//! Live stream migration, the client's policy (Braid proposal 001 §4):
//! which streams move, and where to. The protocol is braid-core's; the
//! tunnel tasks carry it ([`TunnelHandle::migrate_to`]). A stream only
//! ever moves between tunnels of its own isolation key (SOCKS credentials)
//! to the same exit, and only when that exit advertises `BraidMigrate=1`.
//!
//! - (a) A stream opened while its key's Conflux set was being built goes
//!   on a single circuit to the set's exit at once, and moves to the set
//!   when it is ready ([`TorClient::conflux_meanwhile`]).
//! - (b) The streams of a tunnel that keeps losing legs leave it for
//!   another tunnel to the same exit ([`TorClient::evacuate`]).
//! - (c) The long-lived streams of a tunnel retired for dirtiness move to
//!   a fresh tunnel of their key to the same exit (the rotate module).
//! - On request, one stream moves ([`TorClient::migrate_stream`], what
//!   `braid streams migrate` asks of `braid proxy`).

use std::time::Duration;

use braid_dir::RelayId;

use super::TorClient;
use crate::report::StreamReport;
use crate::socks::IsolationKey;
use crate::tunnel::{TunnelError, TunnelHandle, TunnelInfo, TunnelStatus};

/// How often, and how many times, the streams of a tunnel that was
/// replaced are looked at for ones that became migratable (their exit's
/// token comes after CONNECTED).
const MOVE_RETRY: Duration = Duration::from_millis(250);
const MOVE_TRIES: usize = 20;

/// One stream, as `braid streams` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamView {
    /// The tunnel carrying it.
    pub tunnel: u64,
    /// "conflux" or "single".
    pub kind: String,
    /// Its exit (hex fingerprint).
    pub exit: String,
    /// The stream.
    #[serde(flatten)]
    pub stream: StreamReport,
}

/// Where a requested migration takes a stream (`braid streams migrate APP
/// --to ...`); always a tunnel of the stream's isolation key to the same
/// exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrateTo {
    /// Another tunnel, a Conflux set first; one built if there is none.
    #[default]
    Any,
    /// A single circuit; one built if there is none.
    Single,
    /// A Conflux set; one built if there is none (with the configured
    /// number of legs, 2 when Conflux is off).
    Conflux,
    /// That tunnel (the `tunnel` column of `braid streams`); never built.
    Tunnel(u64),
}

impl std::str::FromStr for MigrateTo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Self::Any),
            "single" => Ok(Self::Single),
            "conflux" => Ok(Self::Conflux),
            n => n
                .parse()
                .map(Self::Tunnel)
                .map_err(|_| format!("`{n}`: expected any, single, conflux or a tunnel number")),
        }
    }
}

impl MigrateTo {
    /// Whether tunnel `t` (not the stream's own) is such a place.
    fn takes(self, t: &TunnelHandle) -> bool {
        match self {
            Self::Any => true,
            Self::Single => t.info().legs.len() < 2,
            Self::Conflux => t.info().legs.len() >= 2,
            Self::Tunnel(id) => t.id() == id,
        }
    }
}

/// What a requested migration did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrateOutcome {
    /// The application stream.
    pub app: u64,
    /// The tunnel it left.
    pub from: u64,
    /// The tunnel it goes to.
    pub to: u64,
    /// Its stream id there.
    pub to_stream: u16,
    /// That tunnel was built for the move.
    pub built: bool,
}

impl TorClient {
    /// Every connected stream of every live tunnel.
    pub async fn streams(&self) -> Vec<StreamView> {
        let mut out = Vec::new();
        for t in self.live_tunnels() {
            let Some(r) = t.report().await else {
                continue;
            };
            for s in r.stream_list {
                out.push(StreamView {
                    tunnel: r.id,
                    kind: if r.conflux { "conflux" } else { "single" }.into(),
                    exit: t.info().exit.to_string(),
                    stream: s,
                });
            }
        }
        out.sort_by_key(|v| v.stream.app);
        out
    }

    /// Move application stream `app` to another tunnel of its isolation
    /// key to the same exit, of the kind `to` asks (a Conflux set first
    /// for [`MigrateTo::Any`]), built for it if there is none.
    pub async fn migrate_stream(&self, app: u64, to: MigrateTo) -> Result<MigrateOutcome, String> {
        let mut found = None;
        for t in self.live_tunnels() {
            if let Some(id) = t.find_app(app).await {
                found = Some((t, id));
                break;
            }
        }
        let (from, id) = found.ok_or_else(|| format!("no stream {app}"))?;
        if !from.info().migrate {
            return Err("its exit does not take migrated streams (no BraidMigrate=1)".into());
        }
        let key = self
            .key_of(&from)
            .ok_or_else(|| "its tunnel belongs to no isolation key".to_owned())?;
        if to == MigrateTo::Tunnel(from.id()) {
            return Err(format!("stream {app} is on tunnel {} already", from.id()));
        }
        let (to, built) = self.target_for(&key, &from, to).await?;
        let to_id = from.migrate_to(id, &to).await?;
        Ok(MigrateOutcome {
            app,
            from: from.id(),
            to: to.id(),
            to_stream: to_id.get(),
            built,
        })
    }

    /// The isolation key `tunnel` serves: the one whose pool holds it, or
    /// the one it was pooled for.
    fn key_of(&self, tunnel: &TunnelHandle) -> Option<IsolationKey> {
        let pooled = {
            let pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.key_of(|t| t.id() == tunnel.id())
        };
        // One that left the pool (full, dirty or failing) still serves
        // the key it was built for.
        pooled.or_else(|| self.registered_key(tunnel))
    }

    /// Another open tunnel of `key` to `from`'s exit that takes migrated
    /// streams and is of the kind `to` asks (a Conflux set first), or a
    /// new one, added to `key`'s pool; true if built.
    pub(super) async fn target_for(
        &self,
        key: &IsolationKey,
        from: &TunnelHandle,
        to: MigrateTo,
    ) -> Result<(TunnelHandle, bool), String> {
        let fits = |t: &TunnelHandle| {
            t.id() != from.id()
                && t.info().exit == from.info().exit
                && t.info().migrate
                && t.status() == TunnelStatus::Open
                && to.takes(t)
        };
        // Only the key's own pool: a tunnel that left it (too dirty, or
        // failing) may be another key's, and a stream never crosses keys.
        let mut candidates: Vec<TunnelHandle> =
            self.tunnels_for(key).into_iter().filter(fits).collect();
        candidates.sort_by_key(|t| t.info().legs.len() < 2);
        if let Some(t) = candidates.into_iter().next() {
            return Ok((t, false));
        }
        let exit = from.info().exit;
        let built = match to {
            MigrateTo::Any => self.build_to_exit(exit).await,
            MigrateTo::Single => self.single_to(exit, Vec::new()).await,
            MigrateTo::Conflux => {
                let n = self.inner.config.conflux_legs.unwrap_or(2).max(2);
                match self.conflux_plans(None, n, Some(exit), &[]).await {
                    Ok((legs, facts)) => self.build_conflux_from(legs, &facts).await,
                    Err(e) => Err(e),
                }
            }
            MigrateTo::Tunnel(id) => {
                return Err(format!(
                    "tunnel {id} is not an open tunnel of the stream's isolation key to its exit \
                     that takes migrated streams"
                ));
            }
        };
        let t = built.map_err(|e| format!("no tunnel to the same exit: {e}"))?;
        if !t.info().migrate {
            return Err("the new tunnel's exit does not take migrated streams".into());
        }
        self.add_to_pool(key, t.clone());
        Ok((t, true))
    }

    /// A tunnel to `exit`: a Conflux set when Conflux is on, else a
    /// single circuit.
    pub async fn build_to_exit(&self, exit: RelayId) -> Result<TunnelHandle, TunnelError> {
        if let Some(n) = self.inner.config.conflux_legs {
            let (legs, facts) = self.conflux_plans(None, n, Some(exit), &[]).await?;
            return self.build_conflux_from(legs, &facts).await;
        }
        self.single_to(exit, Vec::new()).await
    }

    /// A single circuit to `exit` whose guard and middle are none of
    /// `used`.
    async fn single_to(
        &self,
        exit: RelayId,
        used: Vec<RelayId>,
    ) -> Result<TunnelHandle, TunnelError> {
        let dir = self
            .netdir()
            .ok_or_else(|| TunnelError::Path("no directory yet".into()))?;
        let relay = dir
            .relays()
            .into_iter()
            .find(|r| r.id == exit)
            .ok_or_else(|| TunnelError::Path("the exit left the directory".into()))?;
        let plan = self.conflux_leg(exit, used).await?;
        let migrate = self.migrates_with(&relay);
        let info = TunnelInfo {
            legs: vec![plan.names.clone()],
            exit,
            exit_policy: relay.policy.clone(),
            migrate,
        };
        let mut config = braid_core::tunnel::TunnelConfig::from_consensus(
            braid_core::tunnel::TunnelKind::Single,
            dir.params(),
        );
        config.streams.migratable = migrate;
        let t = self
            .build_single(&plan.channel, plan.hops, info, config)
            .await?;
        self.register(&t, None);
        Ok(t)
    }

    /// Policy (a): a Conflux set for `key` is built; meanwhile a single
    /// circuit to the set's exit carries the key's streams, which move to
    /// the set once it is linked. Returns that circuit (or, if the exit
    /// does not take migrated streams or the circuit fails, the set).
    pub(super) async fn conflux_meanwhile(
        &self,
        key: &IsolationKey,
        port: u16,
        n: usize,
        avoid: &[RelayId],
    ) -> Result<TunnelHandle, TunnelError> {
        let (legs, facts) = self.conflux_plans(Some(port), n, None, avoid).await?;
        if !facts.migrate {
            return self.build_conflux_from(legs, &facts).await;
        }
        // The circuit keeps clear of the set's guards and middles.
        let mut used: Vec<RelayId> = legs
            .iter()
            .flat_map(|l| l.ids.iter().copied())
            .filter(|id| *id != facts.id)
            .collect();
        used.extend(avoid.iter().copied().filter(|id| *id != facts.id));
        let exit = facts.id;
        let client = self.clone();
        let set_key = key.clone();
        let (set_tx, set_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let built = client.build_conflux_from(legs, &facts).await;
            let _ = set_tx.send(built);
        });
        let early = match self.single_to(exit, used).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(
                    "a circuit while the Conflux set builds failed ({e}): waiting for the set"
                );
                return set_rx
                    .await
                    .unwrap_or_else(|_| Err(TunnelError::Path("the set's build ended".into())));
            }
        };
        let client = self.clone();
        let circuit = early.clone();
        tokio::spawn(async move {
            match set_rx.await {
                Ok(Ok(set)) => {
                    // New streams of the key go to the set from now on;
                    // the circuit's move there.
                    client.add_to_pool(&set_key, set.clone());
                    client.drop_from_pool(&set_key, &circuit);
                    let moved = client.move_streams(&circuit, &set).await;
                    tracing::info!(
                        "tunnel {}: the Conflux set is ready; {moved} stream(s) moved to it from tunnel {}",
                        set.id(),
                        circuit.id()
                    );
                }
                Ok(Err(e)) => tracing::info!("the Conflux set failed ({e}); the circuit stays"),
                Err(_) => {}
            }
        });
        Ok(early)
    }

    /// Move every stream of `from` to `to` as it becomes migratable (a
    /// stream's token comes after CONNECTED); how many moved.
    pub(super) async fn move_streams(&self, from: &TunnelHandle, to: &TunnelHandle) -> usize {
        let mut moved = 0;
        for _ in 0..MOVE_TRIES {
            let Some(report) = from.report().await else {
                return moved;
            };
            // The circuit was handed out for a stream that may not be
            // open on it yet (the set can be ready first): wait for it.
            let mut waiting = moved == 0 && report.stream_list.is_empty();
            for s in report.stream_list {
                if s.migrating {
                    continue;
                }
                let Some(id) = braid_core::ids::StreamId::new(s.id) else {
                    continue;
                };
                if !s.migratable {
                    waiting = true;
                    continue;
                }
                match from.migrate_to(id, to).await {
                    Ok(_) => moved += 1,
                    Err(e) => tracing::debug!("stream {} stays: {e}", s.app),
                }
            }
            if !waiting {
                break;
            }
            tokio::time::sleep(MOVE_RETRY).await;
        }
        moved
    }

    /// Policy (b): tunnel `id` keeps losing legs. It takes no new streams,
    /// and its streams move to another tunnel of its key to the same exit
    /// (built if needed).
    pub(super) fn evacuate(&self, id: u64) {
        let client = self.clone();
        tokio::spawn(async move {
            let Some(from) = client.live_tunnels().into_iter().find(|t| t.id() == id) else {
                return;
            };
            if !from.info().migrate {
                return;
            }
            let Some(key) = client.key_of(&from) else {
                return;
            };
            client.drop_from_pool(&key, &from);
            match client.target_for(&key, &from, MigrateTo::Any).await {
                Ok((to, _)) => {
                    let moved = client.move_streams(&from, &to).await;
                    tracing::info!(
                        "tunnel {id} keeps failing: {moved} stream(s) moved to tunnel {}",
                        to.id()
                    );
                }
                Err(e) => tracing::info!("tunnel {id} keeps failing; its streams stay: {e}"),
            }
        });
    }
}
