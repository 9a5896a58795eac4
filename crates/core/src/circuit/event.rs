//! What a client circuit reports to its driver through `poll_event`.

use tor_cell::chancell::msg::DestroyReason;
use tor_cell::relaycell::msg::AnyRelayMsg;

use super::error::CircError;
use crate::ids::{HopNum, StreamId};

/// Why a circuit closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We closed it (`close()`), sending a DESTROY.
    Local,
    /// The first hop sent a DESTROY (tor-spec §5.4).
    Destroyed {
        /// The reason it gave.
        reason: DestroyReason,
    },
    /// A hop sent a RELAY_TRUNCATED: the hops after it are gone. Braid,
    /// like C-tor, does not reuse truncated circuits and sends a DESTROY
    /// (tor-spec §5.4).
    Truncated {
        /// The hop that sent it.
        hop: HopNum,
        /// The reason it gave.
        reason: DestroyReason,
    },
    /// We closed it on an error (a protocol violation, or one of our
    /// resource limits), sending a DESTROY.
    Error(CircError),
    /// The channel under it closed (or dropped the circuit): nothing can
    /// be sent or received, and no DESTROY is needed (tor-spec §5.4: a
    /// channel's circuits end with it).
    ChannelClosed,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed by us"),
            CloseReason::Destroyed { reason } => {
                write!(f, "destroyed by the relay ({})", reason.human_str())
            }
            CloseReason::Truncated { hop, reason } => {
                write!(f, "truncated at {hop} ({})", reason.human_str())
            }
            CloseReason::Error(e) => write!(f, "closed on an error: {e}"),
            CloseReason::ChannelClosed => f.write_str("its channel closed"),
        }
    }
}

/// An event of a client circuit.
///
/// Exactly one terminal event ends a circuit's life: [`BuildFailed`]
/// if the circuit closes while a hop is still being added (or waiting to
/// be), [`Closed`] otherwise.
///
/// [`BuildFailed`]: CircEvent::BuildFailed
/// [`Closed`]: CircEvent::Closed
#[derive(Debug)]
pub enum CircEvent {
    /// A hop's handshake completed; the hop can carry cells.
    HopAdded {
        /// The new hop.
        hop: HopNum,
        /// Its negotiated `sendme_inc` if it accepted congestion control
        /// (TOR_VEGAS), `None` for fixed windows.
        cc_sendme_inc: Option<u8>,
    },
    /// Every requested hop is in place (no handshake in flight, none
    /// waiting). Reported again after a later `extend` completes.
    Built {
        /// Hops on the circuit.
        n_hops: usize,
    },
    /// The circuit closed before it was built.
    BuildFailed {
        /// Why.
        reason: CloseReason,
    },
    /// A message for a stream, from `hop`.
    StreamMsg {
        /// The hop that sent it (normally the last).
        hop: HopNum,
        /// The stream.
        stream: StreamId,
        /// The message (DATA, CONNECTED, END, RESOLVED, stream SENDME,
        /// XON, XOFF).
        msg: AnyRelayMsg,
    },
    /// A circuit-level message the circuit does not handle itself (for
    /// example Conflux LINKED or SWITCH), for the layer above.
    CircMsg {
        /// The hop that sent it.
        hop: HopNum,
        /// The message.
        msg: AnyRelayMsg,
    },
    /// The circuit closed after it was built.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}
