//! What the client holds of a tunnel: a cheap, cloneable handle that sends
//! requests to the tunnel's task.

use std::sync::Arc;

use braid_core::circuit::HopFigures;
use braid_core::stream::{ResolvedAnswer, Socks5Reply, Target};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use super::stream::TorStream;
use crate::channel::ChannelDriverError;

/// A tunnel could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The channel to the first hop failed.
    #[error(transparent)]
    Channel(#[from] ChannelDriverError),
    /// The circuit was refused or failed while building.
    #[error("circuit build failed after {hops_done} hops: {reason}")]
    Build {
        /// Why.
        reason: String,
        /// Hops completed when it failed: the relay at this index of the
        /// path (if any) is the one that could not be reached or refused.
        hops_done: usize,
    },
    /// One leg of a Conflux set failed while building.
    #[error("conflux leg {leg} failed after {hops_done} hops: {reason}")]
    LegBuild {
        /// The leg's index in the path list.
        leg: usize,
        /// Hops completed: the relay at this index of the leg's path (if
        /// any) could not be reached.
        hops_done: usize,
        /// Why.
        reason: String,
    },
    /// Building took too long.
    #[error("circuit build timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// No usable path.
    #[error("no path: {0}")]
    Path(String),
}

/// A stream could not be opened; `reply` is the SOCKS answer.
#[derive(Debug, Clone, Error)]
#[error("{reason}")]
pub struct BeginError {
    /// The SOCKS5 reply code that says it.
    pub reply: Socks5Reply,
    /// Why, in words (the exit's END reason, a timeout, the circuit
    /// closing).
    pub reason: String,
    /// True if another circuit may do better: the circuit itself failed,
    /// or the exit gave a reason C-tor's client retries elsewhere (MISC,
    /// RESOLVEFAILED, TIMEOUT, NOROUTE, RESOURCELIMIT, HIBERNATING;
    /// `connection_ap_process_end_not_open`), or CONNECTED did not come in
    /// time.
    pub circuit_failed: bool,
}

/// The state of a tunnel, as its task reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelStatus {
    /// Being built.
    Building,
    /// Built; streams can be opened.
    Open,
    /// Gone, and why.
    Closed(String),
}

/// What is known about a tunnel from its creation.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    /// The legs (one for a single circuit), each its relays' nicknames,
    /// first hop first.
    pub legs: Vec<Vec<String>>,
    /// The exit's RSA identity.
    pub exit: braid_dir::RelayId,
    /// The exit's port policy summary, to pick tunnels for a port.
    pub exit_policy: braid_dir::PortPolicy,
}

/// A request to the task.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Open a stream; answered when it is connected or failed.
    Begin {
        target: Target,
        reply: oneshot::Sender<Result<TorStream, BeginError>>,
    },
    /// Resolve a hostname at the exit.
    Resolve {
        host: String,
        reply: oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>,
    },
    /// Report the last hop's figures.
    Figures {
        reply: oneshot::Sender<Option<HopFigures>>,
    },
    /// Report the Conflux reorder queue's peak bytes (`None` on a single
    /// circuit).
    ReorderPeak {
        reply: oneshot::Sender<Option<usize>>,
    },
    /// Report every leg's last-hop figures (closed legs too), in leg order.
    LegFigures {
        reply: oneshot::Sender<Vec<LegFigures>>,
    },
    /// Close the circuit.
    Close,
}

/// One leg's state, for reports.
#[derive(Debug, Clone)]
pub struct LegFigures {
    /// Still open.
    pub open: bool,
    /// Its last hop's figures (RTT, cwnd, cells sent and received).
    pub figures: Option<HopFigures>,
}

/// A handle to a tunnel's task. Dropping every handle closes the circuit
/// once its streams are done.
#[derive(Debug, Clone)]
pub struct TunnelHandle {
    pub(crate) cmd: mpsc::Sender<Cmd>,
    pub(crate) status: watch::Receiver<TunnelStatus>,
    pub(crate) info: Arc<TunnelInfo>,
}

impl TunnelInfo {
    /// `guard > middle > exit`, legs separated by ` | `.
    pub fn describe(&self) -> String {
        self.legs
            .iter()
            .map(|l| l.join(" > "))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl TunnelHandle {
    /// What the tunnel goes through.
    pub fn info(&self) -> &TunnelInfo {
        &self.info
    }

    /// Its current status.
    pub fn status(&self) -> TunnelStatus {
        self.status.borrow().clone()
    }

    /// True once the tunnel is gone.
    pub fn is_closed(&self) -> bool {
        matches!(*self.status.borrow(), TunnelStatus::Closed(_)) || self.cmd.is_closed()
    }

    fn gone() -> BeginError {
        BeginError {
            reply: Socks5Reply::GeneralFailure,
            reason: "the circuit closed".into(),
            circuit_failed: true,
        }
    }

    /// Open a stream to `target` and wait for the exit's CONNECTED. The
    /// returned pipe carries the stream's bytes both ways; its buffer is
    /// bounded.
    pub async fn begin(&self, target: Target) -> Result<TorStream, BeginError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Begin { target, reply })
            .await
            .map_err(|_| Self::gone())?;
        rx.await.map_err(|_| Self::gone())?
    }

    /// Resolve `host` at the exit (tor-spec §6.4).
    pub async fn resolve(&self, host: &str) -> Result<Vec<ResolvedAnswer>, BeginError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Resolve {
                host: host.to_owned(),
                reply,
            })
            .await
            .map_err(|_| Self::gone())?;
        rx.await.map_err(|_| Self::gone())?
    }

    /// RTT, congestion window and counters of the last hop.
    pub async fn figures(&self) -> Option<HopFigures> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Cmd::Figures { reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Every leg's figures (one leg for a single circuit).
    pub async fn leg_figures(&self) -> Vec<LegFigures> {
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Cmd::LegFigures { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The most bytes the Conflux reorder queue held so far (`None` for a
    /// single circuit).
    pub async fn reorder_peak(&self) -> Option<usize> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Cmd::ReorderPeak { reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Close the circuit (its streams end).
    pub async fn close(&self) {
        let _ = self.cmd.send(Cmd::Close).await;
    }
}
