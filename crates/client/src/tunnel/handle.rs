//! What the client holds of a tunnel: a cheap, cloneable handle that sends
//! requests to the tunnel's task.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use braid_core::circuit::HopFigures;
use braid_core::stream::{ResolvedAnswer, Target};
use tokio::sync::{mpsc, oneshot, watch};

use braid_core::ids::StreamId;
use braid_core::stream::{Handover, MigrateTicket};
use braid_core::tunnel::TunnelClose;

use super::apps::App;
use crate::error::BeginError;
use crate::pipe::TorStream;
use crate::report::{LegReport, TunnelInfo, TunnelReport, TunnelStatus};

/// A request to the task.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Open a stream; answered when it is connected or failed.
    Begin {
        target: Target,
        reply: oneshot::Sender<Result<TorStream, BeginError>>,
    },
    /// Resolve a hostname, or an address's name, at the exit.
    Resolve {
        query: ResolveQuery,
        reply: oneshot::Sender<Result<Vec<ResolvedAnswer>, BeginError>>,
    },
    /// Report the tunnel's figures.
    Report {
        reply: oneshot::Sender<TunnelReport>,
    },
    /// Close the circuit.
    Close,
    /// Begin moving stream `id` away (Braid proposal 001 §4.2): its
    /// ticket, for the new tunnel.
    MigrateOut {
        id: StreamId,
        reply: oneshot::Sender<Result<MigrateTicket, String>>,
    },
    /// Open the new id of a migration from stream `from_id` of `from`.
    MigrateIn {
        ticket: MigrateTicket,
        from: WeakTunnel,
        from_id: StreamId,
        reply: oneshot::Sender<Result<StreamId, String>>,
    },
    /// Where outgoing stream `id` goes: stream `to_id` of `to`.
    MigrateTo {
        id: StreamId,
        to: TunnelHandle,
        to_id: StreamId,
    },
    /// Incoming stream `id` takes over: what its old id left, and the
    /// application's end.
    MigrateJoin {
        id: StreamId,
        handover: Handover,
        app: App,
    },
    /// The new id of outgoing stream `id` failed (`refused`: the exit said
    /// no, the stream goes on here).
    MigrateTargetFailed { id: StreamId, refused: bool },
    /// End stream `id` (the other id of its migration ended).
    CloseStream { id: StreamId },
    /// Where application stream `app` is here, if it is.
    FindApp {
        app: u64,
        reply: oneshot::Sender<Option<StreamId>>,
    },
}

/// What a RESOLVE asks the exit (tor-spec §6.4).
#[derive(Debug)]
pub(crate) enum ResolveQuery {
    /// The addresses of a hostname.
    Name(String),
    /// The name of an address (a reverse lookup).
    Reverse(IpAddr),
}

/// A handle to a tunnel's task. Dropping every handle closes the circuit
/// once its streams are done.
#[derive(Debug, Clone)]
pub struct TunnelHandle {
    /// Unique in this process, in creation order.
    pub(crate) id: u64,
    pub(crate) cmd: mpsc::Sender<Cmd>,
    /// What keeps the tunnel: the task closes it once every holder is
    /// gone and its streams are done. `None` for a handle reached through
    /// a [`WeakTunnel`] after that (it reports and moves streams, and
    /// keeps nothing).
    pub(crate) hold: Option<mpsc::Sender<()>>,
    pub(crate) status: watch::Receiver<TunnelStatus>,
    pub(crate) info: Arc<TunnelInfo>,
    /// Streams open or opening (and resolves waiting), as the task last
    /// counted them.
    pub(crate) busy: Arc<AtomicUsize>,
}

/// A tunnel known without keeping it alive (for reports): its task ends
/// once every [`TunnelHandle`] is gone and its streams are done, whatever
/// holds this. Its command queue stays open while the task runs, so a
/// tunnel only its streams hold can still be reached (to list or move
/// them).
#[derive(Debug, Clone)]
pub struct WeakTunnel {
    id: u64,
    cmd: mpsc::Sender<Cmd>,
    /// `None` when taken from a handle that kept nothing.
    hold: Option<mpsc::WeakSender<()>>,
    status: watch::Receiver<TunnelStatus>,
    info: Arc<TunnelInfo>,
    busy: Arc<AtomicUsize>,
}

impl WeakTunnel {
    /// A handle that keeps the tunnel, if something else still does.
    pub fn upgrade(&self) -> Option<TunnelHandle> {
        let hold = Some(self.hold.as_ref()?.upgrade()?);
        (!self.cmd.is_closed()).then(|| self.handle(hold))
    }

    /// A handle while the task runs, held or not (a tunnel only its
    /// streams hold): it keeps the tunnel only if something else does.
    pub fn reach(&self) -> Option<TunnelHandle> {
        let hold = self.hold.as_ref().and_then(mpsc::WeakSender::upgrade);
        (!self.cmd.is_closed()).then(|| self.handle(hold))
    }

    /// True once the task has ended.
    pub fn is_gone(&self) -> bool {
        self.cmd.is_closed()
    }

    fn handle(&self, hold: Option<mpsc::Sender<()>>) -> TunnelHandle {
        TunnelHandle {
            id: self.id,
            cmd: self.cmd.clone(),
            hold,
            status: self.status.clone(),
            info: self.info.clone(),
            busy: self.busy.clone(),
        }
    }

    /// The tunnel's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl TunnelHandle {
    /// A handle with no task behind it, for tests of what keeps handles:
    /// the tunnel lives while the returned receiver does.
    #[cfg(test)]
    pub(crate) fn test_pair(id: u64) -> (TunnelHandle, mpsc::Receiver<Cmd>) {
        let (cmd, rx) = mpsc::channel(1);
        let (hold, _) = mpsc::channel(1);
        let (_, status) = watch::channel(TunnelStatus::Open);
        let info = Arc::new(TunnelInfo {
            legs: vec![vec!["g".into(), "m".into(), "e".into()]],
            exit: braid_dir::RelayId::from([7; 20]),
            exit_policy: braid_dir::PortPolicy::accept([]),
            migrate: true,
        });
        (
            TunnelHandle {
                id,
                cmd,
                hold: Some(hold),
                status,
                info,
                busy: Arc::new(AtomicUsize::new(1)),
            },
            rx,
        )
    }

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

    /// Wait for the tunnel to close, without keeping it alive: why it
    /// closed, or `None` if its task ended without saying.
    pub fn closed(
        &self,
    ) -> impl std::future::Future<Output = Option<TunnelClose>> + Send + 'static {
        let mut rx = self.status.clone();
        async move {
            let status = rx
                .wait_for(|s| matches!(s, TunnelStatus::Closed(_)))
                .await
                .ok()?;
            match &*status {
                TunnelStatus::Closed(c) => Some(c.clone()),
                _ => None,
            }
        }
    }

    fn gone() -> BeginError {
        BeginError::circuit_closed(None, true)
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
        self.ask(ResolveQuery::Name(host.to_owned())).await
    }

    /// Ask the exit for the name of `addr` (tor-spec §6.4, a reverse
    /// lookup); the answers are hostnames.
    pub async fn resolve_reverse(&self, addr: IpAddr) -> Result<Vec<ResolvedAnswer>, BeginError> {
        self.ask(ResolveQuery::Reverse(addr)).await
    }

    async fn ask(&self, query: ResolveQuery) -> Result<Vec<ResolvedAnswer>, BeginError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Resolve { query, reply })
            .await
            .map_err(|_| Self::gone())?;
        rx.await.map_err(|_| Self::gone())?
    }

    /// The tunnel's id, unique in this process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A reference that does not keep the tunnel alive.
    pub fn downgrade(&self) -> WeakTunnel {
        WeakTunnel {
            id: self.id,
            cmd: self.cmd.clone(),
            hold: self.hold.as_ref().map(mpsc::Sender::downgrade),
            status: self.status.clone(),
            info: self.info.clone(),
            busy: self.busy.clone(),
        }
    }

    /// Streams open or opening on the tunnel (and resolves waiting), as
    /// its task last counted them.
    pub fn streams_open(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// A snapshot of the tunnel's figures (`None` once it is gone).
    pub async fn report(&self) -> Option<TunnelReport> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Cmd::Report { reply }).await.ok()?;
        rx.await.ok()
    }

    /// RTT, congestion window and counters of the last hop (of the first
    /// open leg of a Conflux set).
    pub async fn figures(&self) -> Option<HopFigures> {
        let report = self.report().await?;
        report
            .legs
            .into_iter()
            .find(|l| l.open)
            .and_then(|l| l.figures)
    }

    /// Every leg's report (one leg for a single circuit).
    pub async fn leg_figures(&self) -> Vec<LegReport> {
        self.report().await.map(|r| r.legs).unwrap_or_default()
    }

    /// The most bytes the Conflux reorder queue held so far (`None` for a
    /// single circuit).
    pub async fn reorder_peak(&self) -> Option<usize> {
        self.report().await?.reorder.map(|r| r.peak_bytes)
    }

    /// Close the circuit (its streams end).
    pub async fn close(&self) {
        let _ = self.cmd.send(Cmd::Close).await;
    }

    /// Move stream `id` of this tunnel to `to`, another tunnel to the same
    /// exit (Braid proposal 001 §4; the caller keeps to one isolation
    /// key). Returns once the move has begun: the new tunnel takes the
    /// stream over when the exit's MIGRATE_MARK comes; a refusal leaves it
    /// here.
    pub async fn migrate_to(&self, id: StreamId, to: &TunnelHandle) -> Result<StreamId, String> {
        if to.info.exit != self.info.exit {
            return Err("not a tunnel to the same exit".into());
        }
        let gone = || "the tunnel is gone".to_owned();
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::MigrateOut { id, reply })
            .await
            .map_err(|_| gone())?;
        let ticket = rx.await.map_err(|_| gone())??;
        let (reply, rx) = oneshot::channel();
        let sent = to
            .cmd
            .send(Cmd::MigrateIn {
                ticket,
                from: self.downgrade(),
                from_id: id,
                reply,
            })
            .await;
        let opened = match sent {
            Ok(()) => rx.await.unwrap_or_else(|_| Err(gone())),
            Err(_) => Err(gone()),
        };
        match opened {
            Ok(to_id) => {
                let _ = self
                    .cmd
                    .send(Cmd::MigrateTo {
                        id,
                        to: to.clone(),
                        to_id,
                    })
                    .await;
                Ok(to_id)
            }
            Err(e) => {
                // Nothing went out: the stream goes on here.
                let _ = self
                    .cmd
                    .send(Cmd::MigrateTargetFailed { id, refused: true })
                    .await;
                Err(e)
            }
        }
    }

    /// The stream carrying application stream `app` on this tunnel.
    pub async fn find_app(&self, app: u64) -> Option<StreamId> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Cmd::FindApp { app, reply }).await.ok()?;
        rx.await.ok()?
    }

    /// Send `cmd` to the task without waiting (from another task's loop):
    /// at once if its queue has room, else from a spawned task.
    pub(crate) fn send_now(&self, cmd: Cmd) {
        match self.cmd.try_send(cmd) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let tx = self.cmd.clone();
                tokio::spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
        }
    }
}

/// The next tunnel id.
pub(crate) fn next_tunnel_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// A tunnel its streams alone hold (every holder gone, its task still
    /// running) is reached through a weak reference, without being kept;
    /// once the task ends, it is not.
    #[test]
    fn a_tunnel_only_its_streams_hold_is_reached_not_kept() {
        let (t, mut task) = TunnelHandle::test_pair(5);
        let weak = t.downgrade();
        assert_eq!(weak.upgrade().map(|t| t.id()), Some(5));
        drop(t);
        assert!(weak.upgrade().is_none(), "nothing holds it");
        let reached = weak.reach().expect("its task still runs");
        assert!(reached.hold.is_none(), "a reached handle keeps nothing");
        // Commands still get to the task.
        reached.send_now(Cmd::Close);
        assert!(matches!(task.try_recv(), Ok(Cmd::Close)));
        // A weak reference of a reached handle does not hold it either.
        assert!(reached.downgrade().upgrade().is_none());
        drop(task);
        assert!(weak.is_gone());
        assert!(weak.reach().is_none());
    }
}
