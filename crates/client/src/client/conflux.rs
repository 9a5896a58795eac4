//! Conflux sets (prop 329): the legs' plans (guards from the guard set,
//! distinct middles, one exit), building a set, and the client as the
//! sets' [`LegSource`] for the legs their cores ask for later.

use super::*;

impl TorClient {
    /// Build a Conflux tunnel of `n` legs to one exit allowing `port`
    /// (prop 329 §2.2): distinct guards from the guard set (or from
    /// `entry_nodes`), distinct middles, an exit with Conflux=1 and
    /// FlowCtrl=2; every hop from its node list when one is configured.
    pub async fn build_conflux(&self, port: u16, n: usize) -> Result<TunnelHandle, TunnelError> {
        let (legs, exit) = self.conflux_plans(Some(port), n, None, &[]).await?;
        self.build_conflux_from(legs, &exit).await
    }

    /// Build a Conflux tunnel of `n` legs to the exit `exit` (allowing
    /// `port`, or any), whatever the exit restriction says: for tests and
    /// tools that must reach one exit (prop 329 §2.2 otherwise).
    pub async fn build_conflux_to(
        &self,
        exit: RelayId,
        port: Option<u16>,
        n: usize,
    ) -> Result<TunnelHandle, TunnelError> {
        let (legs, exit) = self.conflux_plans(port, n, Some(exit), &[]).await?;
        self.build_conflux_from(legs, &exit).await
    }

    /// The legs of a Conflux set of `n` legs, channels to their guards
    /// open, to one exit allowing `port` (or any), or to `exit` (prop 329
    /// §2.2: distinct guards from the guard set or `entry_nodes`, distinct
    /// middles, an exit with Conflux=1 and FlowCtrl=2). No middle is one
    /// of `avoid` where the directory allows (Braid proposal 001 §5.3).
    pub(crate) async fn conflux_plans(
        &self,
        port: Option<u16>,
        n: usize,
        exit: Option<RelayId>,
        avoid: &[RelayId],
    ) -> Result<(Vec<LegPlan>, ExitFacts), TunnelError> {
        let dir = self
            .netdir()
            .ok_or_else(|| TunnelError::Path("no directory yet".into()))?;
        let all = dir.relays();
        let failed = self.avoided_relays();
        let relays = without_failed(&all, &failed);
        let mut nodes = self.inner.config.nodes.clone();
        if let Some(exit) = exit {
            nodes.exit = vec![braid_dir::NodeSpec::Id(exit)];
        }
        let config = PathConfig {
            enforce_distinct_subnets: self.inner.config.enforce_distinct_subnets,
            nodes,
            ..PathConfig::conflux(port)
        };
        // With `entry_nodes`, path selection picks distinct guards from
        // that list instead of the guard set.
        let guard_ids = self.conflux_guards(n, &[]);
        let guard_relays = by_id(&guard_ids, &relays);
        let keep = |r: &Relay| guard_ids.contains(&r.id);
        let fewer = without(&relays, avoid, keep);
        let fewer_guards = by_id(&guard_ids, &fewer);
        let paths = choose_conflux_legs(
            &fewer,
            dir.weights(),
            n,
            &config,
            &fewer_guards,
            &mut rand::rng(),
        )
        .or_else(|e| {
            if avoid.is_empty() {
                return Err(e);
            }
            tracing::info!("no Conflux legs on other middles ({e}); any middles");
            choose_conflux_legs(
                &relays,
                dir.weights(),
                n,
                &config,
                &guard_relays,
                &mut rand::rng(),
            )
        })
        .or_else(|e| {
            // As for a new leg (`conflux_leg`): through relays that failed
            // lately rather than a single circuit instead of a set.
            if failed.is_empty() {
                return Err(e);
            }
            tracing::info!(
                "no Conflux legs avoiding the {} relay(s) that failed lately ({e}); trying them too",
                failed.len()
            );
            choose_conflux_legs(
                &all,
                dir.weights(),
                n,
                &config,
                &by_id(&guard_ids, &all),
                &mut rand::rng(),
            )
        })
        .map_err(|e| TunnelError::Path(e.to_string()))?;
        let exit = paths
            .first()
            .map(|p| ExitFacts {
                id: p.exit.id,
                policy: p.exit.policy.clone(),
                resume: self.inner.config.resume
                    && p.exit.protocols.supports_subver("BraidResume", 1),
                migrate: self.migrates_with(p.exit),
            })
            .ok_or_else(|| TunnelError::Path("no legs".into()))?;
        let mut legs = Vec::new();
        for p in &paths {
            legs.push(self.leg_plan(p).await?);
        }
        Ok((legs, exit))
    }

    /// Build and link a Conflux set over `legs` to `exit`.
    pub(crate) async fn build_conflux_from(
        &self,
        legs: Vec<LegPlan>,
        exit: &ExitFacts,
    ) -> Result<TunnelHandle, TunnelError> {
        let dir = self
            .netdir()
            .ok_or_else(|| TunnelError::Path("no directory yet".into()))?;
        let info = TunnelInfo {
            legs: legs.iter().map(|l| l.names.clone()).collect(),
            exit: exit.id,
            exit_policy: exit.policy.clone(),
            migrate: exit.migrate,
        };
        let (reorder, reorder_auto) = self.inner.config.reorder();
        let kind = TunnelKind::Conflux {
            conflux: ConfluxConfig {
                desired_ux: self.inner.config.conflux_ux,
                reorder,
                reorder_auto,
                ..ConfluxConfig::client()
            },
            scheduler: self.inner.config.scheduler,
        };
        let mut config = TunnelConfig::from_consensus(kind, dir.params());
        // Braid proposal 001: resumption and migration only with an exit
        // that advertises them (never a C-tor exit).
        if exit.resume {
            config.resume = Some(braid_core::conflux::ResumeParams::default());
        }
        config.streams.migratable = exit.migrate;
        // path-spec §2.4: the learned timeout (legs launched later take
        // the value current then, from the source).
        config.leg_build_timeout = self.build_timeout(3);
        // Legs the set's core asks for come from here, and their failures
        // are reported to `leg_failed` (so the culprit is avoided).
        // Weakly: the tunnel's task must not keep the client alive (a spare
        // tunnel held by the client would otherwise hold it forever).
        let source: Arc<dyn LegSource> = Arc::new(WeakClient(Arc::downgrade(&self.inner)));
        build_conflux_tunnel(legs, info, config, Some(source)).await
    }

    /// Streams on a tunnel to `exit` are migratable: `[braid] migrate` is
    /// on and the exit advertises `BraidMigrate=1` (Braid proposal 001
    /// §2.1).
    pub(super) fn migrates_with(&self, exit: &Relay) -> bool {
        self.inner.config.migrate && exit.protocols.supports_subver("BraidMigrate", 1)
    }

    /// `n` distinct guards for Conflux legs, none of `exclude`: from the
    /// guard set (guard-spec §4.6 with exclusions), or none when
    /// `entry_nodes` is set (path selection then picks from that list).
    pub(super) fn conflux_guards(&self, n: usize, exclude: &[RelayId]) -> Vec<RelayId> {
        if !self.inner.config.nodes.entry.is_empty() {
            return Vec::new();
        }
        let mut ids: Vec<RelayId> = exclude.to_vec();
        ids.extend(self.avoided_relays());
        let skip = ids.len();
        let mut guards = self.inner.guards.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..n {
            match guards.pick_guard(&ids, SystemTime::now(), &mut rand::rng()) {
                Ok(c) => ids.push(c.id),
                Err(_) => break,
            }
        }
        ids.split_off(skip)
    }

    /// A channel to `path`'s guard and its hops: one leg to build.
    pub(super) async fn leg_plan(&self, path: &Path<'_>) -> Result<LegPlan, TunnelError> {
        let hops = path_hops(path)?;
        let channel = match self.channel_to(path.guard).await {
            Ok(ch) => ch,
            Err(e) => {
                // guard-spec §4.7: the guard is unreachable.
                let mut guards = self.inner.guards.lock().unwrap_or_else(|e| e.into_inner());
                if guards
                    .note_failure(&path.guard.id, SystemTime::now())
                    .is_ok()
                {
                    self.save_guards(&guards);
                }
                return Err(e);
            }
        };
        Ok(LegPlan {
            channel,
            hops,
            names: path_names(path),
            ids: path.ids().to_vec(),
        })
    }

    /// A new leg for a Conflux set to `exit` (a relaunch): a guard and a
    /// middle none of `used` (prop 329 §2.2), an exit still fit for
    /// Conflux.
    pub(crate) async fn conflux_leg(
        &self,
        exit: RelayId,
        used: Vec<RelayId>,
    ) -> Result<LegPlan, TunnelError> {
        let dir = self
            .netdir()
            .ok_or_else(|| TunnelError::Path("no directory yet".into()))?;
        let mut all = dir.relays();
        all.retain(|r| !used.contains(&r.id));
        let avoided = self.avoided_relays();
        let relays = without_failed(&all, &avoided);
        let mut nodes = self.inner.config.nodes.clone();
        nodes.exit = vec![braid_dir::NodeSpec::Id(exit)];
        let config = PathConfig {
            enforce_distinct_subnets: self.inner.config.enforce_distinct_subnets,
            nodes,
            ..PathConfig::conflux(None)
        };
        let guard_ids = self.conflux_guards(1, &used);
        let guard_relays = by_id(&guard_ids, &relays);
        let paths = match choose_conflux_legs(
            &relays,
            dir.weights(),
            1,
            &config,
            &guard_relays,
            &mut rand::rng(),
        ) {
            Ok(p) => p,
            // The relays that failed lately are avoided for a minute; when
            // that leaves no path (a small network, or several kills in a
            // row), a new leg through one of them beats a set that waits
            // out the minute with a leg missing (found by `braid bench
            // resume`: resumptions waited 18-23 s for it).
            Err(e) if !avoided.is_empty() => {
                tracing::info!(
                    "no new leg avoiding the {} relay(s) that failed lately ({e}); trying them too",
                    avoided.len()
                );
                let guard_relays = by_id(&guard_ids, &all);
                choose_conflux_legs(
                    &all,
                    dir.weights(),
                    1,
                    &config,
                    &guard_relays,
                    &mut rand::rng(),
                )
                .map_err(|e| TunnelError::Path(e.to_string()))?
            }
            Err(e) => return Err(TunnelError::Path(e.to_string())),
        };
        let path = paths
            .first()
            .ok_or_else(|| TunnelError::Path("no leg".into()))?;
        self.leg_plan(path).await
    }
}

/// The client as a Conflux set's [`LegSource`], held weakly: once the
/// client is gone, no new legs.
#[derive(Debug)]
pub(super) struct WeakClient(pub(super) std::sync::Weak<Inner>);

impl LegSource for WeakClient {
    fn new_leg(&self, exit: RelayId, used: Vec<RelayId>) -> LegFuture {
        match self.0.upgrade() {
            Some(inner) => TorClient { inner }.new_leg(exit, used),
            None => Box::pin(async { Err(TunnelError::Path("the client is gone".into())) }),
        }
    }

    fn leg_failed(&self, ids: &[RelayId], suspect: usize) {
        if let Some(inner) = self.0.upgrade() {
            TorClient { inner }.leg_failed(ids, suspect);
        }
    }

    fn leg_built(&self, ids: &[RelayId], took: Duration) {
        if let Some(inner) = self.0.upgrade() {
            TorClient { inner }.leg_built(ids, took);
        }
    }

    fn leg_timed_out(&self, ids: &[RelayId], hops_done: usize) {
        if let Some(inner) = self.0.upgrade() {
            TorClient { inner }.leg_timed_out(ids, hops_done);
        }
    }

    fn build_timeout(&self, hops: usize) -> Option<Duration> {
        self.0
            .upgrade()
            .map(|inner| TorClient { inner }.build_timeout(hops))
    }
}

impl LegSource for TorClient {
    fn new_leg(&self, exit: RelayId, used: Vec<RelayId>) -> LegFuture {
        let client = self.clone();
        Box::pin(async move { client.conflux_leg(exit, used).await })
    }

    fn leg_failed(&self, ids: &[RelayId], suspect: usize) {
        self.avoid_ids(ids, suspect);
    }

    /// guard-spec §4.8: a leg's circuit is built, so its guard (picked from
    /// the guard set for the set's first legs and for relaunched ones) is
    /// confirmed, as [`TorClient::build`] does for a single circuit. The
    /// guard state is saved.
    fn tunnel_failing(&self, tunnel: u64) {
        self.evacuate(tunnel);
    }

    fn leg_timed_out(&self, ids: &[RelayId], hops_done: usize) {
        self.note_build_timed_out(ids.len(), hops_done);
    }

    fn build_timeout(&self, hops: usize) -> Option<Duration> {
        Some(TorClient::build_timeout(self, hops))
    }

    fn leg_built(&self, ids: &[RelayId], took: Duration) {
        self.note_build_time(ids.len(), took);
        let Some(guard) = ids.first() else {
            return;
        };
        if !self.inner.config.nodes.entry.is_empty() {
            // `entry_nodes` guards are not the guard set's.
            return;
        }
        let mut guards = self.inner.guards.lock().unwrap_or_else(|e| e.into_inner());
        match guards.note_success(guard, SystemTime::now(), &mut rand::rng()) {
            Ok(_) => self.save_guards(&guards),
            Err(e) => tracing::debug!("conflux leg built: {e}"),
        }
    }
}

/// The relays of `relays` with the ids `ids`, in the order of `ids` (those
/// missing skipped).
fn by_id<'a>(ids: &[RelayId], relays: &'a [Relay]) -> Vec<&'a Relay> {
    ids.iter()
        .filter_map(|id| relays.iter().find(|r| r.id == *id))
        .collect()
}

/// `relays` without those that failed lately (`failed`).
pub(super) fn without_failed(relays: &[Relay], failed: &[RelayId]) -> Vec<Relay> {
    relays
        .iter()
        .filter(|r| !failed.contains(&r.id))
        .cloned()
        .collect()
}

#[cfg(test)]
mod without_failed_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    #[test]
    fn failed_relays_are_left_out() {
        let relays: Vec<Relay> = (1..=4_u8)
            .map(|i| {
                Relay::new(
                    RelayId::new([i; 20]),
                    format!("r{i}"),
                    SocketAddrV4::new(Ipv4Addr::new(10, i, 0, 1), 9001),
                )
            })
            .collect();
        let failed = [RelayId::new([2; 20]), RelayId::new([9; 20])];
        let kept = without_failed(&relays, &failed);
        assert_eq!(
            kept.iter().map(|r| r.nickname.as_str()).collect::<Vec<_>>(),
            ["r1", "r3", "r4"]
        );
    }
}
