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

use crate::cc::FlowParams;
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
                RelayCircEvent::Edge {
                    stream: Some(id),
                    msg,
                } => {
                    if let Err(e) = self.streams.handle_msg(id, msg, now) {
                        tracing::debug!("exit stream: {e}");
                        if e.closes_circuit() {
                            // C-tor returns -END_CIRC_REASON_TORPROTOCOL.
                            self.circ.close(DestroyReason::PROTOCOL);
                        }
                        self.last_error = Some(e);
                    }
                }
                RelayCircEvent::Edge { stream: None, .. } => {
                    // Circuit-level messages the circuit leaves to the edge
                    // (Conflux linking): not offered by this exit.
                    self.ignored += 1;
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

    /// Move the map's messages into the circuit while its queue toward the
    /// previous hop is short.
    fn pump(&mut self, now: Instant) {
        while !self.circ.is_closed() && self.circ.queued().0 < PREV_QUEUE_TARGET {
            let Some((id, msg)) = self.streams.poll_transmit(self.circ.can_send_data()) else {
                break;
            };
            if let Err(e) = self.circ.send(Some(id), msg, now) {
                // Only if the circuit closed under us (it closes itself on
                // anything but a local error).
                tracing::debug!("exit edge: send on {id}: {e}");
                break;
            }
        }
        // A failed send closes the circuit: its Closed reaches the streams.
        self.process(now);
    }
}
