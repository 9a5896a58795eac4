//! The client's learned circuit build timeout (path-spec §2.4): one
//! [`BuildTimes`] estimator for the client's 3-hop circuits, fed with every
//! built leg's time and every timeout, following the consensus's `cbt*`
//! parameters. Each tunnel's legs are launched with its current usage
//! timeout; a leg past it is given up (the tunnel launches another, and
//! the hop that did not answer is avoided, as for any failed extend).
//! Braid does not keep given-up circuits building to measure them (C-tor's
//! measurement circuits); they count in the curve's tail at the longest
//! time seen instead.

use std::time::Duration;

use braid_dir::build_timeout::{BuildTimeParams, BuildTimes};

use super::TorClient;

/// Hops of the circuits whose times are recorded (path-spec §2.4.2).
const RECORDED_HOPS: usize = 3;

/// The build times are saved in the state directory every this many
/// records (and at the first).
const SAVE_EVERY: usize = 20;

impl TorClient {
    /// The usage timeout for a circuit of `hops` hops now.
    pub(crate) fn build_timeout(&self, hops: usize) -> Duration {
        self.build_times().timeout_for_hops(hops)
    }

    /// The learned timeout's state: (usage timeout of a 3-hop circuit,
    /// builds recorded, learned yet).
    pub fn build_timeout_state(&self) -> (Duration, usize, bool) {
        let b = self.build_times();
        (b.timeout(), b.recorded(), b.is_learned())
    }

    /// A circuit of `hops` hops was built in `took`.
    pub(crate) fn note_build_time(&self, hops: usize, took: Duration) {
        if hops == RECORDED_HOPS {
            let mut b = self.build_times();
            b.note_built(took);
            self.save_build_times(&b);
        }
    }

    /// The build times saved in the state directory, if any (path-spec
    /// §2.4.2: a restart does not learn again from nothing).
    pub(crate) fn load_build_times(&self) {
        let Some(state) = &self.inner.state else {
            return;
        };
        match state.load_build_times() {
            Ok(Some(text)) => {
                let mut b = self.build_times();
                let params = b.params();
                let (loaded, skipped) = BuildTimes::from_text(&text, params);
                if skipped > 0 {
                    tracing::warn!(
                        "{skipped} damaged lines skipped in the saved circuit build times"
                    );
                }
                *b = loaded;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot read the saved circuit build times: {e}"),
        }
    }

    fn save_build_times(&self, b: &BuildTimes) {
        if b.recorded() % SAVE_EVERY != 1 {
            return;
        }
        if let Some(state) = &self.inner.state
            && let Err(e) = state.store_build_times(&b.to_text())
        {
            tracing::warn!("cannot save the circuit build times: {e}");
        }
    }

    /// A circuit of `hops` hops passed its timeout after `hops_done`.
    pub(crate) fn note_build_timed_out(&self, hops: usize, hops_done: usize) {
        if hops == RECORDED_HOPS {
            let mut b = self.build_times();
            b.note_timed_out(hops_done);
            self.save_build_times(&b);
            tracing::info!(
                "circuit build timed out after {hops_done} of {hops} hops; timeout now {} ms ({} builds known)",
                b.timeout().as_millis(),
                b.recorded()
            );
        }
    }

    /// Follow the consensus's `cbt*` parameters (path-spec §2.4.6).
    pub(crate) fn update_build_time_params(
        &self,
        params: &std::collections::BTreeMap<String, i32>,
    ) {
        let p = BuildTimeParams::from_params(|name| params.get(name).copied());
        self.build_times().set_params(p);
    }

    fn build_times(&self) -> std::sync::MutexGuard<'_, BuildTimes> {
        self.inner
            .build_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl TorClient {
    /// Build a single-circuit tunnel through `hops` over `channel` with
    /// the learned timeout, and record how long it took or that it timed
    /// out.
    pub(crate) async fn build_single(
        &self,
        channel: &crate::channel::ChannelHandle,
        hops: Vec<braid_core::circuit::HopTarget>,
        info: crate::tunnel::TunnelInfo,
        mut config: braid_core::tunnel::TunnelConfig,
    ) -> Result<crate::tunnel::TunnelHandle, crate::error::TunnelError> {
        let n = hops.len();
        config.leg_build_timeout = self.build_timeout(n);
        let start = std::time::Instant::now();
        let result = crate::tunnel::build_tunnel(channel, hops, info, config).await;
        match &result {
            Ok(_) => self.note_build_time(n, start.elapsed()),
            Err(crate::error::TunnelError::Core(
                braid_core::tunnel::TunnelError::BuildTimeout { hops_done, .. },
            )) => self.note_build_timed_out(n, *hops_done),
            Err(_) => {}
        }
        result
    }
}
