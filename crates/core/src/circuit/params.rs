//! The settings of a client circuit.

use crate::cc::{CcParams, CcPath};

/// Default bound on the cells a circuit holds for its channel: queued
/// behind a closed congestion window plus encrypted and waiting for the
/// driver. C-tor's `cellq_high` (256) is where it declares a circuit
/// blocked on its channel; Braid's bound is twice that.
pub const DEFAULT_MAX_QUEUED_CELLS: usize = 512;

/// Cells beyond [`CircParams::max_queued_cells`] that the circuit itself
/// may queue (circuit SENDMEs, EXTEND2, DESTROY), so that the caller
/// filling the queue cannot starve flow control. When even this reserve is
/// full (the driver is not sending while the relay keeps sending us
/// DATA), the circuit is closed: a resource limit.
pub const CONTROL_RESERVE_CELLS: usize = 32;

/// Default bound on events waiting for `poll_event`.
pub const DEFAULT_MAX_PENDING_EVENTS: usize = 2048;

/// The settings of a [`ClientCircuit`](super::ClientCircuit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircParams {
    /// Congestion control and SENDME parameters from the consensus.
    pub cc: CcParams,
    /// Which Vegas thresholds a hop that accepts congestion control uses
    /// (exit circuits and Conflux legs: [`CcPath::Exit`]).
    pub cc_path: CcPath,
    /// Most cells the caller may have queued on the circuit (waiting for
    /// the congestion window, or for the driver to transmit them); over it,
    /// `send_relay` fails with a resource-limit error.
    pub max_queued_cells: usize,
    /// Most events waiting for `poll_event`; over it the circuit is closed
    /// (a resource limit: the driver does not keep up).
    pub max_pending_events: usize,
}

impl Default for CircParams {
    fn default() -> Self {
        Self {
            cc: CcParams::default(),
            cc_path: CcPath::Exit,
            max_queued_cells: DEFAULT_MAX_QUEUED_CELLS,
            max_pending_events: DEFAULT_MAX_PENDING_EVENTS,
        }
    }
}
