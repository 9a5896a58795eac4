//! One hop of a client circuit as the circuit sees it: its send control
//! (TOR_VEGAS or a fixed window), its deliver window, the DATA cells
//! waiting for its window, and counters.

use std::collections::VecDeque;
use std::time::Duration;

use crate::cc::sendme::PacedDeliver;
use crate::cc::{CcError, CcParams, CcPath, CircuitSender, DeliverWindow};
use crate::crypto::{RelayCellBody, SendmeTag};
use crate::ids::{HopNum, StreamId};

/// A framed, not yet encrypted, relay cell.
#[derive(Debug)]
pub(crate) struct PlainCell {
    /// The plaintext body (tor-spec §6.1).
    pub(crate) body: Box<RelayCellBody>,
    /// It is a RELAY_DATA cell (subject to the congestion window).
    pub(crate) is_data: bool,
    /// Its stream.
    pub(crate) stream: Option<StreamId>,
}

/// One hop's flow and congestion control state.
#[derive(Debug)]
pub(crate) struct Hop {
    /// Sending DATA: Vegas or the fixed window, with expected SENDME tags.
    pub(crate) sender: CircuitSender,
    /// Receiving DATA: when to send a circuit SENDME (held back while
    /// the tunnel asks, [`PacedDeliver`]).
    pub(crate) deliver: PacedDeliver<SendmeTag>,
    /// The negotiated `sendme_inc` if the hop accepted congestion control.
    pub(crate) cc_sendme_inc: Option<u8>,
    /// Cells for this hop waiting behind a closed congestion window, in
    /// order (DATA, and stream cells queued behind their stream's DATA).
    pub(crate) waiting: VecDeque<PlainCell>,
    /// DATA cells sent to this hop.
    pub(crate) data_sent: u64,
    /// DATA cells received from this hop.
    pub(crate) data_received: u64,
    /// Circuit SENDMEs we sent to this hop.
    pub(crate) sendmes_sent: u64,
    /// Circuit SENDMEs this hop sent us.
    pub(crate) sendmes_received: u64,
}

impl Hop {
    /// A hop with TOR_VEGAS if it accepted congestion control with
    /// `sendme_inc`, else fixed windows (tor-spec §7.3).
    pub(crate) fn new(params: &CcParams, path: CcPath, cc_sendme_inc: Option<u8>) -> Self {
        let (sender, deliver) = match cc_sendme_inc {
            Some(inc) => (
                CircuitSender::vegas(params, path, inc),
                DeliverWindow::circuit_cc(inc),
            ),
            None => (CircuitSender::fixed(params), DeliverWindow::circuit()),
        };
        Hop {
            sender,
            deliver: PacedDeliver::new(deliver, cc_sendme_inc.is_some()),
            cc_sendme_inc,
            waiting: VecDeque::new(),
            data_sent: 0,
            data_received: 0,
            sendmes_sent: 0,
            sendmes_received: 0,
        }
    }

    /// A DATA cell arrived from this hop carrying `tag`: count it against
    /// the deliver window (tor-spec §7.3; proposal 289: a SENDME v1
    /// carries the tag of the cell that made it due).
    pub(crate) fn on_data(&mut self, tag: &SendmeTag) -> Result<(), CcError> {
        self.deliver.on_data(*tag)?;
        self.data_received += 1;
        Ok(())
    }

    /// The next circuit SENDME to send now ([`PacedDeliver::next_sendme`]).
    pub(crate) fn next_sendme(&mut self) -> Option<SendmeTag> {
        let tag = self.deliver.next_sendme()?;
        self.sendmes_sent += 1;
        Some(tag)
    }

    /// True if a cell on `stream` must queue behind cells already waiting,
    /// to keep the stream's cells in order.
    pub(crate) fn stream_has_waiting(&self, stream: StreamId) -> bool {
        self.waiting.iter().any(|c| c.stream == Some(stream))
    }

    /// The figures for observability.
    pub(crate) fn figures(&self, hop: HopNum) -> HopFigures {
        let vegas = self.sender.vegas_state();
        HopFigures {
            hop,
            cc_sendme_inc: self.cc_sendme_inc,
            min_rtt: vegas.and_then(|v| v.rtt().min_rtt()),
            ewma_rtt: vegas.and_then(|v| v.rtt().ewma_rtt()),
            cwnd: vegas.map(|v| v.cwnd()),
            inflight: vegas.map(|v| v.inflight()),
            in_slow_start: vegas.map(|v| v.in_slow_start()),
            send_window: self.sender.send_window(),
            deliver_window: self.deliver.window(),
            waiting_cells: self.waiting.len(),
            data_sent: self.data_sent,
            data_received: self.data_received,
            sendmes_sent: self.sendmes_sent,
            sendmes_received: self.sendmes_received,
            sendmes_held: self.deliver.held(),
        }
    }
}

/// A snapshot of one hop's flow and congestion control, for logs, metrics
/// and Conflux leg scheduling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopFigures {
    /// The hop.
    pub hop: HopNum,
    /// Negotiated `sendme_inc`, `None` on fixed windows.
    pub cc_sendme_inc: Option<u8>,
    /// Minimum RTT (TOR_VEGAS only, once measured).
    pub min_rtt: Option<Duration>,
    /// Smoothed RTT (TOR_VEGAS only, once measured).
    pub ewma_rtt: Option<Duration>,
    /// Congestion window, cells (TOR_VEGAS only).
    pub cwnd: Option<u64>,
    /// DATA cells sent and not yet acknowledged (TOR_VEGAS only).
    pub inflight: Option<u64>,
    /// Still in slow start (TOR_VEGAS only).
    pub in_slow_start: Option<bool>,
    /// DATA cells that may be sent now.
    pub send_window: u64,
    /// DATA cells the hop may still send us before our next SENDME.
    pub deliver_window: u32,
    /// Cells waiting for the window.
    pub waiting_cells: usize,
    /// DATA cells sent to the hop.
    pub data_sent: u64,
    /// DATA cells received from the hop.
    pub data_received: u64,
    /// Circuit SENDMEs sent to the hop.
    pub sendmes_sent: u64,
    /// Circuit SENDMEs received from the hop.
    pub sendmes_received: u64,
    /// Circuit SENDMEs due and held back (receiver backpressure).
    pub sendmes_held: usize,
}
