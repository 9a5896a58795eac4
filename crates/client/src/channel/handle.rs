//! The handle to an open channel, and a circuit's two queues.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use braid_core::channel::HandshakeOutcome;
use braid_core::ids::CircId;
use tokio::sync::{mpsc, oneshot, watch};
use tor_cell::chancell::msg::{AnyChanMsg, DestroyReason};

use super::error::{ChannelDriverError, CloseReason};
use super::reactor::{ChannelStats, SharedStats};
use super::tls::TlsInfo;

/// What is known about an open channel.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// The relay's ORPort.
    pub addr: SocketAddr,
    /// What the TLS handshake settled (version, cipher suite, certificate).
    pub tls: TlsInfo,
    /// What the link handshake settled (link version, verified identities,
    /// addresses, clock skew).
    pub outcome: HandshakeOutcome,
    /// Time to connect TCP, from the start.
    pub tcp_time: Duration,
    /// Time to finish TLS, from the start.
    pub tls_time: Duration,
    /// Time to finish the link handshake, from the start.
    pub handshake_time: Duration,
}

/// One circuit's end of the channel: cells to send and cells received.
///
/// `rx` ends (yields `None`) when the circuit is gone from the channel: it
/// was closed, the relay destroyed it (the DESTROY is delivered first), its
/// queue overflowed, or the channel closed. Sending a DESTROY through `tx`
/// closes the circuit; so does dropping `tx` or `rx` (the reactor then
/// sends DESTROY with reason NONE).
#[derive(Debug)]
pub struct CircuitIo {
    /// Cells to send on the circuit (CREATE*, RELAY, RELAY_EARLY,
    /// DESTROY), bounded by
    /// [`ChannelConfig::circuit_outbound_queue`](super::ChannelConfig::circuit_outbound_queue).
    pub tx: mpsc::Sender<AnyChanMsg>,
    /// Cells received on the circuit, bounded by
    /// [`ChannelConfig::circuit_inbound_queue`](super::ChannelConfig::circuit_inbound_queue).
    pub rx: mpsc::Receiver<AnyChanMsg>,
}

/// A request to the reactor.
#[derive(Debug)]
pub(crate) enum Ctrl {
    /// Register a circuit with these queue ends; answer with its id.
    Open {
        /// Where the reactor puts the circuit's cells.
        inbound: mpsc::Sender<AnyChanMsg>,
        /// Where the reactor takes the circuit's cells from.
        outbound: mpsc::Receiver<AnyChanMsg>,
        /// The answer.
        reply: oneshot::Sender<Result<CircId, ChannelDriverError>>,
    },
    /// Forget a circuit and send DESTROY with this reason.
    Close {
        /// The circuit.
        id: CircId,
        /// The DESTROY reason.
        reason: DestroyReason,
        /// Answered with whether the circuit was open.
        reply: oneshot::Sender<bool>,
    },
    /// Flush, send TLS close_notify and stop.
    Shutdown,
}

/// The requests side of a reactor: everything a handle does except
/// knowing what the handshakes settled.
#[derive(Debug, Clone)]
pub(crate) struct ReactorLink {
    /// Requests to the reactor.
    control: mpsc::Sender<Ctrl>,
    /// Set by the reactor when it stops.
    closed: watch::Receiver<Option<CloseReason>>,
    /// The reactor's counters.
    stats: Arc<SharedStats>,
    /// Inbound queue size for new circuits.
    inbound_queue: usize,
    /// Outbound queue size for new circuits.
    outbound_queue: usize,
}

/// A cloneable handle to an open channel, whose reactor task owns the
/// connection. The channel stays open while a handle or a circuit is left,
/// until the relay closes it, or until [`shutdown`](Self::shutdown).
#[derive(Debug, Clone)]
pub struct ChannelHandle {
    /// Requests to the reactor.
    link: ReactorLink,
    /// What the handshakes settled.
    info: Arc<ChannelInfo>,
}

impl ChannelHandle {
    /// A handle for the reactor behind `link`.
    pub(crate) fn new(link: ReactorLink, info: ChannelInfo) -> Self {
        ChannelHandle {
            link,
            info: Arc::new(info),
        }
    }

    /// What the TLS and link handshakes settled.
    pub fn info(&self) -> &ChannelInfo {
        &self.info
    }

    /// The link handshake's result.
    pub fn outcome(&self) -> &HandshakeOutcome {
        &self.info.outcome
    }

    /// Register a new circuit: a fresh circuit id with the most significant
    /// bit set (tor-spec §5.1.1) and its two bounded queues. Nothing is
    /// sent; the caller sends its CREATE* through [`CircuitIo::tx`].
    pub async fn open_circuit(&self) -> Result<(CircId, CircuitIo), ChannelDriverError> {
        self.link.open_circuit().await
    }

    /// Close circuit `id`: forget it and send DESTROY with `reason`
    /// (clients should say [`DestroyReason::NONE`]). Cells it had queued
    /// are dropped. Returns whether the circuit was open.
    pub async fn close_circuit(
        &self,
        id: CircId,
        reason: DestroyReason,
    ) -> Result<bool, ChannelDriverError> {
        self.link.close_circuit(id, reason).await
    }

    /// Ask the reactor to flush what it has, send TLS close_notify and
    /// stop. Circuits' receivers end. Returns once the request is queued;
    /// [`closed`](Self::closed) waits for the end.
    pub async fn shutdown(&self) -> Result<(), ChannelDriverError> {
        self.link.shutdown().await
    }

    /// True once the channel has stopped.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Why the channel stopped, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.link.close_reason()
    }

    /// Wait until the channel stops, and say why.
    pub async fn closed(&self) -> CloseReason {
        self.link.closed().await
    }

    /// The reactor's counters so far.
    pub fn stats(&self) -> ChannelStats {
        self.link.stats()
    }
}

impl ReactorLink {
    /// A link to a reactor through `control` and `closed`.
    pub(crate) fn new(
        control: mpsc::Sender<Ctrl>,
        closed: watch::Receiver<Option<CloseReason>>,
        stats: Arc<SharedStats>,
        inbound_queue: usize,
        outbound_queue: usize,
    ) -> Self {
        ReactorLink {
            control,
            closed,
            stats,
            inbound_queue,
            outbound_queue,
        }
    }

    /// See [`ChannelHandle::open_circuit`].
    pub(crate) async fn open_circuit(&self) -> Result<(CircId, CircuitIo), ChannelDriverError> {
        let (inbound_tx, inbound_rx) = mpsc::channel(self.inbound_queue.max(1));
        let (outbound_tx, outbound_rx) = mpsc::channel(self.outbound_queue.max(1));
        let (reply, answer) = oneshot::channel();
        self.request(Ctrl::Open {
            inbound: inbound_tx,
            outbound: outbound_rx,
            reply,
        })
        .await?;
        let id = match answer.await {
            Ok(r) => r?,
            Err(_) => return Err(self.closed_error().await),
        };
        Ok((
            id,
            CircuitIo {
                tx: outbound_tx,
                rx: inbound_rx,
            },
        ))
    }

    /// See [`ChannelHandle::close_circuit`].
    pub(crate) async fn close_circuit(
        &self,
        id: CircId,
        reason: DestroyReason,
    ) -> Result<bool, ChannelDriverError> {
        let (reply, answer) = oneshot::channel();
        self.request(Ctrl::Close { id, reason, reply }).await?;
        match answer.await {
            Ok(was_open) => Ok(was_open),
            Err(_) => Err(self.closed_error().await),
        }
    }

    /// See [`ChannelHandle::shutdown`].
    pub(crate) async fn shutdown(&self) -> Result<(), ChannelDriverError> {
        self.request(Ctrl::Shutdown).await
    }

    /// See [`ChannelHandle::is_closed`].
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.borrow().is_some() || self.control.is_closed()
    }

    /// See [`ChannelHandle::close_reason`].
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        if let Some(r) = self.closed.borrow().clone() {
            return Some(r);
        }
        self.control.is_closed().then_some(CloseReason::ReactorGone)
    }

    /// See [`ChannelHandle::stats`].
    pub(crate) fn stats(&self) -> ChannelStats {
        self.stats.snapshot()
    }

    /// See [`ChannelHandle::closed`].
    pub(crate) async fn closed(&self) -> CloseReason {
        let mut rx = self.closed.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(CloseReason::ReactorGone),
            Err(_) => CloseReason::ReactorGone,
        }
    }

    /// Send a request, or say why the channel cannot take it.
    async fn request(&self, ctrl: Ctrl) -> Result<(), ChannelDriverError> {
        if let Some(r) = self.closed.borrow().clone() {
            return Err(ChannelDriverError::Closed(r));
        }
        match self.control.send(ctrl).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.closed_error().await),
        }
    }

    /// The error for a request the reactor dropped: it is stopping.
    async fn closed_error(&self) -> ChannelDriverError {
        ChannelDriverError::Closed(self.closed().await)
    }
}
