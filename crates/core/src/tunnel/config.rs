//! The settings of a tunnel, fixed when it is created.

use std::time::Duration;

use crate::cc::{CcParams, FlowParams};
use crate::circuit::CircParams;
use crate::conflux::ConfluxConfig;
use crate::conflux_sched::SchedulerKind;
use crate::stream::StreamMapConfig;

/// How long a circuit may take to build before it is given up (C-tor's
/// circuit build timeout is adaptive and at most 60 s; Braid's is fixed
/// for now).
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The first relaunch of a failed Conflux leg goes at once; each later one
/// waits this long, doubled per failure (see [`TunnelConfig::relaunch_backoff`]).
pub const DEFAULT_RELAUNCH_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between relaunches.
pub const MAX_RELAUNCH_BACKOFF: Duration = Duration::from_secs(5);

/// What a tunnel is made of.
#[derive(Debug, Clone)]
pub enum TunnelKind {
    /// One circuit: the tunnel is its circuit.
    Single,
    /// A Conflux set (prop 329) of `conflux.num_legs` legs to one exit.
    Conflux {
        /// The set's settings: legs, relaunch retries, reorder bounds, the
        /// UX asked of the exit.
        conflux: ConfluxConfig,
        /// The scheduler that places what we send.
        scheduler: SchedulerKind,
    },
}

/// The settings of a [`ClientTunnel`](super::ClientTunnel).
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// Single circuit or Conflux set.
    pub kind: TunnelKind,
    /// Every leg's circuit settings (congestion control from the consensus).
    pub circuit: CircParams,
    /// Stream limits.
    pub streams: StreamMapConfig,
    /// XON/XOFF parameters from the consensus (proposal 324 §4).
    pub flow: FlowParams,
    /// A leg whose circuit is not built this long after its launch is
    /// closed (and, in a set, relaunched within the budget).
    pub leg_build_timeout: Duration,
    /// A tunnel not open (circuit built, or set linked) this long after it
    /// was created fails.
    pub open_timeout: Duration,
    /// Wait before the second relaunch of a failed leg; doubled for every
    /// later one, up to [`MAX_RELAUNCH_BACKOFF`]. The first goes at once.
    pub relaunch_backoff: Duration,
    /// Offer the exit resumption (Braid proposal 001): only for an exit
    /// whose consensus `pr` lists `BraidResume=1` (never to C-tor). With
    /// it, a leg lost with data in flight is replaced instead of closing
    /// the tunnel. `None` by default.
    pub resume: Option<crate::conflux::ResumeParams>,
}

impl TunnelConfig {
    /// A single-circuit tunnel with default settings.
    pub fn single() -> Self {
        Self::with_kind(TunnelKind::Single)
    }

    /// A Conflux tunnel with `conflux` and `scheduler`, other settings
    /// default.
    pub fn conflux(conflux: ConfluxConfig, scheduler: SchedulerKind) -> Self {
        Self::with_kind(TunnelKind::Conflux { conflux, scheduler })
    }

    /// Default settings for `kind`.
    pub fn with_kind(kind: TunnelKind) -> Self {
        Self {
            kind,
            circuit: CircParams::default(),
            streams: StreamMapConfig::default(),
            flow: FlowParams::default(),
            leg_build_timeout: DEFAULT_BUILD_TIMEOUT,
            open_timeout: DEFAULT_BUILD_TIMEOUT,
            relaunch_backoff: DEFAULT_RELAUNCH_BACKOFF,
            resume: None,
        }
    }

    /// Settings for `kind` with congestion control (proposal 324) and
    /// XON/XOFF parameters from a consensus' `params` line, the rest
    /// default.
    pub fn from_consensus(
        kind: TunnelKind,
        params: &std::collections::BTreeMap<String, i32>,
    ) -> Self {
        let pairs: Vec<(String, i32)> = params.iter().map(|(k, v)| (k.clone(), *v)).collect();
        Self {
            circuit: CircParams {
                cc: CcParams::from_consensus(pairs.as_slice()),
                ..CircParams::default()
            },
            flow: FlowParams::from_consensus(pairs.as_slice()),
            ..Self::with_kind(kind)
        }
    }

    /// True for a Conflux set.
    pub fn is_conflux(&self) -> bool {
        matches!(self.kind, TunnelKind::Conflux { .. })
    }

    /// Legs launched at the start.
    pub fn initial_legs(&self) -> usize {
        match &self.kind {
            TunnelKind::Single => 1,
            TunnelKind::Conflux { conflux, .. } => conflux.num_legs.max(1),
        }
    }

    /// Most leg launches over the tunnel's life, first ones included: the
    /// one relaunch budget (prop 329 §4.2.2, bounded to limit guard
    /// discovery; C-tor `cfx_max_unlinked_leg_retry`). A single circuit is
    /// never relaunched: the client builds another tunnel.
    pub fn launch_budget(&self) -> usize {
        match &self.kind {
            TunnelKind::Single => 1,
            TunnelKind::Conflux { conflux, .. } => conflux
                .num_legs
                .max(1)
                .saturating_add(conflux.max_leg_retries),
        }
    }
}
