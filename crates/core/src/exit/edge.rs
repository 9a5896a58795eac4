//! [`ExitEdge`]: one relay circuit with the exit's streams on it, what the
//! relay driver holds per circuit.
//!
//! The circuit ([`RelayCircuit`]) does the cells: our layer of relay
//! crypto, circuit SENDMEs, congestion control of what we send; the map
//! ([`ExitStreamMap`]) does the streams. The edge feeds the circuit's
//! `Edge` events to the map, pumps the map's messages into the circuit
//! (DATA only while the circuit's window is open), closes the circuit when
//! a stream violation calls for it (C-tor's rules, see
//! [`ExitError::closes_circuit`]), and ends every stream with `Closed`
//! (reason DESTROY) when the circuit goes. A Conflux exit will compose
//! several circuits and one map in the same way: the map knows nothing of
//! the circuit.
//!
//! Cells are packaged lazily: the map keeps the bytes (where flow control
//! and the bounds apply) and the circuit's queue toward the previous hop is
//! topped up to [`PREV_QUEUE_TARGET`] cells whenever the driver takes one
//! ([`ExitEdge::poll_to_prev`]), so a slow channel (or KIST holding the
//! writes back) leaves the data in the streams rather than in cells.

use std::collections::VecDeque;
use std::time::Instant;

use tor_cell::chancell::msg::{AnyChanMsg, DestroyReason};
use tor_cell::relaycell::msg::AnyRelayMsg;

use crate::cc::FlowParams;
use crate::ids::StreamId;
use crate::relay::{RelayCircEvent, RelayCircuit};
use crate::stream::StreamFlowMode;

use super::config::ExitConfig;
use super::error::ExitError;
use super::event::ExitEvent;
use super::map::ExitStreamMap;

/// Cells the edge keeps queued toward the previous hop; past this, the
/// map's messages wait in the map.
pub const PREV_QUEUE_TARGET: usize = 64;

/// A relay circuit and the exit's streams on it. See the
/// [module docs](self).
#[derive(Debug)]
pub struct ExitEdge {
    /// The circuit.
    circ: RelayCircuit,
    /// Its streams.
    streams: ExitStreamMap,
    /// The circuit's events for the driver (extend requests, the close).
    circ_events: VecDeque<RelayCircEvent>,
    /// Circuit-level messages for the edge that an exit does not handle
    /// (Conflux, which we do not offer yet), dropped.
    ignored: u64,
    /// The last stream error, for reports.
    last_error: Option<ExitError>,
}

impl ExitEdge {
    /// The exit's streams on `circ`: XON/XOFF with `flow` (the consensus
    /// parameters) if the circuit negotiated congestion control, fixed
    /// stream windows otherwise (proposal 324 §4).
    pub fn new(circ: RelayCircuit, cfg: ExitConfig, flow: FlowParams) -> Self {
        let mode = if circ.cc_sendme_inc().is_some() {
            StreamFlowMode::XonXoff {
                params: flow,
                onion: false,
            }
        } else {
            StreamFlowMode::Windowed
        };
        Self::with_map(circ, ExitStreamMap::new(cfg, mode))
    }

    /// `circ` with a map made by the caller (its flow mode must match the
    /// circuit's congestion control).
    pub fn with_map(circ: RelayCircuit, streams: ExitStreamMap) -> Self {
        ExitEdge {
            circ,
            streams,
            circ_events: VecDeque::new(),
            ignored: 0,
            last_error: None,
        }
    }

    /// The circuit.
    pub fn circuit(&self) -> &RelayCircuit {
        &self.circ
    }

    /// The circuit, for calls the edge does not wrap (`extended`,
    /// `extend_failed`, `set_blocked_on_channel`, figures).
    pub fn circuit_mut(&mut self) -> &mut RelayCircuit {
        &mut self.circ
    }

    /// The streams.
    pub fn streams(&self) -> &ExitStreamMap {
        &self.streams
    }

    /// The streams, for the driver's answers and bytes (`connected`,
    /// `read`, `write`, ...). Then take cells with
    /// [`poll_to_prev`](Self::poll_to_prev).
    pub fn streams_mut(&mut self) -> &mut ExitStreamMap {
        &mut self.streams
    }

    /// Circuit-level messages for the edge dropped (not for an exit).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The last error a client's stream message caused, if any.
    pub fn last_error(&self) -> Option<&ExitError> {
        self.last_error.as_ref()
    }

    // ----- Input -----

    /// A cell from the previous hop's channel.
    pub fn handle_from_prev(&mut self, cell: AnyChanMsg, now: Instant) {
        self.circ.handle_from_prev(cell, now);
        self.process(now);
    }

    /// A cell from the next hop's channel (a circuit we extended).
    pub fn handle_from_next(&mut self, cell: AnyChanMsg, now: Instant) {
        self.circ.handle_from_next(cell, now);
        self.process(now);
    }

    /// The previous hop's channel closed.
    pub fn handle_prev_gone(&mut self, now: Instant) {
        self.circ.handle_prev_gone();
        self.process(now);
    }

    /// The next hop's channel closed.
    pub fn handle_next_gone(&mut self, now: Instant) {
        self.circ.handle_next_gone();
        self.process(now);
    }

    /// Close the circuit (a local decision: OOM, shutdown) with `reason`.
    pub fn close(&mut self, reason: DestroyReason, now: Instant) {
        self.circ.close(reason);
        self.process(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.streams.poll_timeout()
    }

    /// The streams' deadlines (see [`ExitStreamMap::handle_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.streams.handle_timeout(now);
    }

    // ----- Output -----

    /// The next cell for the previous hop's channel, topping the queue up
    /// from the streams first (DATA as the circuit's window allows).
    pub fn poll_to_prev(&mut self, now: Instant) -> Option<AnyChanMsg> {
        self.process(now);
        self.pump(now);
        self.circ.poll_to_prev()
    }

    /// The next cell for the next hop's channel.
    pub fn poll_to_next(&mut self) -> Option<AnyChanMsg> {
        self.circ.poll_to_next()
    }

    /// The next event of the circuit for the driver: an extend request, or
    /// the circuit closed (after which the streams' `Closed` events wait in
    /// [`poll_event`](Self::poll_event)). Stream messages never come here.
    pub fn poll_circ_event(&mut self, now: Instant) -> Option<RelayCircEvent> {
        self.process(now);
        self.circ_events.pop_front()
    }

    /// The next event of the streams for the driver.
    pub fn poll_event(&mut self, now: Instant) -> Option<ExitEvent> {
        self.process(now);
        self.streams.poll_event()
    }

    // ----- Internals -----

    /// Take the circuit's events: stream messages to the map, the rest for
    /// the driver.
    fn process(&mut self, now: Instant) {
        // Bounded: each pass takes what the circuit queued (its events are
        // bounded); closing adds one Closed.
        while let Some(ev) = self.circ.poll_event() {
            match ev {
                RelayCircEvent::Edge { stream, msg } => {
                    match deliver(&mut self.streams, &mut self.circ, stream, msg, now) {
                        Ok(true) => {}
                        Ok(false) => self.ignored += 1,
                        Err(e) => self.last_error = Some(e),
                    }
                }
                RelayCircEvent::Closed { reason } => {
                    self.streams.handle_circuit_closed();
                    self.circ_events
                        .push_back(RelayCircEvent::Closed { reason });
                }
                other @ RelayCircEvent::Extend(_) => self.circ_events.push_back(other),
            }
        }
    }

    /// Move the map's messages into the circuit (see [`pump`]).
    fn pump(&mut self, now: Instant) {
        pump(&mut self.streams, &mut self.circ, now);
        // A failed send closes the circuit: its Closed reaches the streams.
        self.process(now);
    }
}

/// Hand `msg`, a message the circuit `circ` gave its edge on `stream`, to
/// the streams `map`; close the circuit (DESTROY PROTOCOL) when the error
/// calls for it ([`ExitError::closes_circuit`], C-tor's
/// `-END_CIRC_REASON_TORPROTOCOL`). `Ok(false)`: a circuit-level message
/// an exit does not handle (stream 0: Conflux linking, which we do not
/// offer yet), dropped. For a caller that holds the circuit and the map
/// itself (the relay node) rather than an [`ExitEdge`].
pub fn deliver(
    map: &mut ExitStreamMap,
    circ: &mut RelayCircuit,
    stream: Option<StreamId>,
    msg: AnyRelayMsg,
    now: Instant,
) -> Result<bool, ExitError> {
    let Some(id) = stream else {
        return Ok(false);
    };
    map.handle_msg(id, msg, now)
        .map(|()| true)
        .inspect_err(|e| {
            tracing::debug!("exit stream: {e}");
            if e.closes_circuit() {
                circ.close(DestroyReason::PROTOCOL);
            }
        })
}

/// Move `map`'s messages into `circ` while its queue toward the previous
/// hop is under [`PREV_QUEUE_TARGET`] cells, DATA only while its window is
/// open. Call it whenever the driver takes cells from the circuit and
/// after the map changed; then hand the circuit's `Closed` (if a send
/// failed) to the map.
pub fn pump(map: &mut ExitStreamMap, circ: &mut RelayCircuit, now: Instant) {
    while !circ.is_closed() && circ.queued().0 < PREV_QUEUE_TARGET {
        let Some((id, msg)) = map.poll_transmit(circ.can_send_data()) else {
            break;
        };
        if let Err(e) = circ.send(Some(id), msg, now) {
            // Only if the circuit closed under us (it closes itself on
            // anything but a local error).
            tracing::debug!("exit edge: send on {id}: {e}");
            break;
        }
    }
}
