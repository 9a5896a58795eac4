//! The client circuit: a sans-IO state machine for one origin circuit on
//! one channel.
//!
//! Life cycle:
//!
//! 1. [`ClientCircuit::new`] starts the first hop's handshake: the first
//!    [`poll_transmit`](ClientCircuit::poll_transmit) is a CREATE2
//!    (tor-spec §5.1). [`extend`](ClientCircuit::extend) asks for one more
//!    hop; extensions run one after the other, each an EXTEND2 in a
//!    RELAY_EARLY cell to the current last hop (tor-spec §5.1.2, §5.6).
//!    Every completed handshake is a [`CircEvent::HopAdded`]; when no
//!    handshake is in flight or waiting, [`CircEvent::Built`].
//! 2. [`send_relay`](ClientCircuit::send_relay) frames, queues and (when
//!    the hop's congestion window allows) encrypts relay messages; the
//!    driver takes the resulting RELAY / RELAY_EARLY cells with
//!    `poll_transmit` and gives them the circuit id.
//! 3. [`handle_cell`](ClientCircuit::handle_cell) takes every cell the
//!    channel receives for this circuit: CREATED2, RELAY, DESTROY. Circuit
//!    SENDMEs are handled here (proposal 289 tags, Vegas RTT and window,
//!    tor-spec §7.3); we send our own SENDMEs when our deliver windows ask
//!    for them. Stream messages come out of
//!    [`poll_event`](ClientCircuit::poll_event).
//! 4. [`close`](ClientCircuit::close), a DESTROY or TRUNCATED from the
//!    relays, or a protocol violation end the circuit; one terminal event
//!    ([`CircEvent::Closed`] or [`CircEvent::BuildFailed`]) says why.
//!
//! Timers (the build timeout, idle circuits) belong to the driver.
//!
//! **Queues and bounds.** The circuit holds cells in two places: per hop,
//! cells waiting for the congestion window (DATA cells, and stream cells
//! behind their stream's DATA so that a stream's cells stay in order), and
//! encrypted cells waiting for `poll_transmit`. The caller may queue at
//! most [`CircParams::max_queued_cells`] in all; beyond that `send_relay`
//! fails with [`CircError::QueueFull`] and the circuit stays open. The
//! circuit's own cells (SENDMEs, EXTEND2, DESTROY) may use
//! [`CONTROL_RESERVE_CELLS`] more; if even that fills up, the relay is
//! sending faster than our driver drains us and the circuit is closed.
//! Events wait in a queue bounded by [`CircParams::max_pending_events`].
//!
//! Cells are encrypted when they leave the waiting queues, in the order
//! they will be transmitted: the relay crypto is a stream cipher and a
//! running digest per hop, so encryption order must be wire order.

use std::collections::VecDeque;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};
use tor_cell::chancell::msg::{AnyChanMsg, Create2, Destroy, DestroyReason, Relay};
use tor_cell::relaycell::msg::{AnyRelayMsg, Sendme};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::build::{self, HopTarget, PendingHandshake};
use super::error::CircError;
use super::event::{CircEvent, CloseReason};
use super::hop::{Hop, HopFigures, PlainCell};
use super::params::{CONTROL_RESERVE_CELLS, CircParams};
use super::relay_cell;
use crate::cc::SendmeTag as CcSendmeTag;
use crate::crypto::{ClientLayers, RelayCellBody, SendmeTag};
use crate::ids::{CircId, HopNum, StreamId};

/// RELAY_EARLY cells a circuit may send (tor-spec §5.6: a relay closes a
/// circuit that sends it more than 8).
pub const MAX_RELAY_EARLY: u8 = 8;

/// A handshake in flight.
#[derive(Debug)]
struct Pending {
    /// The hop it will become.
    hop: HopNum,
    /// Its client state.
    handshake: PendingHandshake,
}

/// A client (origin) circuit. See the [module documentation](self).
#[derive(Debug)]
pub struct ClientCircuit {
    /// Our id for it on its channel.
    circ_id: CircId,
    /// Settings.
    params: CircParams,
    /// Randomness for handshakes and relay cell padding, seeded from the
    /// caller's generator.
    rng: StdRng,
    /// Relay crypto, one layer per hop.
    layers: ClientLayers,
    /// Flow control per hop, in path order.
    hops: Vec<Hop>,
    /// The handshake in flight, if any.
    pending: Option<Pending>,
    /// Hops asked for with `extend` and not started yet, in order.
    planned: VecDeque<HopTarget>,
    /// RELAY_EARLY cells we may still send.
    relay_early_left: u8,
    /// Encrypted cells (and CREATE2, DESTROY) for the channel, in order.
    ready: VecDeque<AnyChanMsg>,
    /// Cells in all hops' waiting queues.
    waiting_total: usize,
    /// Events for the driver.
    events: VecDeque<CircEvent>,
    /// A hop is being added or waits to be (from `new` or `extend` until
    /// the `Built` event).
    building: bool,
    /// The circuit is closed (terminal event emitted).
    closed: bool,
}

impl ClientCircuit {
    /// A new circuit with id `circ_id` whose first hop is `first` (the
    /// relay at the other end of the channel): queues the CREATE2.
    ///
    /// Fails only if the target's onion key is unusable (small order).
    pub fn new<R: CryptoRng + ?Sized>(
        circ_id: CircId,
        first: HopTarget,
        params: CircParams,
        rng: &mut R,
        _now: Instant,
    ) -> Result<Self, CircError> {
        let mut rng = StdRng::from_rng(rng);
        let (handshake, htype, onionskin) = build::start(&mut rng, HopNum(0), &first, &params.cc)?;
        let mut ready = VecDeque::new();
        ready.push_back(AnyChanMsg::Create2(Create2::new(htype, onionskin)));
        Ok(Self {
            circ_id,
            params,
            rng,
            layers: ClientLayers::new(),
            hops: Vec::new(),
            pending: Some(Pending {
                hop: HopNum(0),
                handshake,
            }),
            planned: VecDeque::new(),
            relay_early_left: MAX_RELAY_EARLY,
            ready,
            waiting_total: 0,
            events: VecDeque::new(),
            building: true,
            closed: false,
        })
    }

    // ----- State -----

    /// The circuit id on its channel.
    pub fn circ_id(&self) -> CircId {
        self.circ_id
    }

    /// Hops whose handshake completed.
    pub fn n_hops(&self) -> usize {
        self.hops.len()
    }

    /// The last completed hop, if any.
    pub fn last_hop(&self) -> Option<HopNum> {
        self.hop_num(self.hops.len().checked_sub(1)?)
    }

    /// True once every requested hop is in place, until the circuit
    /// closes.
    pub fn is_built(&self) -> bool {
        !self.closed && !self.building && !self.hops.is_empty()
    }

    /// True once the circuit is closed (its terminal event is queued).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True if `hop` accepted congestion control (TOR_VEGAS). Streams on
    /// such a hop use XON/XOFF instead of stream SENDMEs (proposal 324 §4).
    pub fn cc_enabled(&self, hop: HopNum) -> bool {
        self.hop(hop).is_some_and(|h| h.cc_sendme_inc.is_some())
    }

    /// RELAY_EARLY cells we may still send (tor-spec §5.6).
    pub fn relay_early_left(&self) -> u8 {
        self.relay_early_left
    }

    /// Cells held by the circuit: waiting for a window plus ready for the
    /// channel.
    pub fn queued_cells(&self) -> usize {
        self.ready.len() + self.waiting_total
    }

    /// How many more cells `send_relay` accepts now.
    pub fn queue_space(&self) -> usize {
        self.params
            .max_queued_cells
            .saturating_sub(self.queued_cells())
    }

    /// True if a DATA cell sent to `hop` now would go out at once rather
    /// than wait for the congestion window (what a stream scheduler asks
    /// before reading more from its sockets).
    pub fn can_send_data(&self, hop: HopNum) -> bool {
        !self.closed
            && self.queue_space() > 0
            && self
                .hop(hop)
                .is_some_and(|h| h.waiting.is_empty() && h.sender.can_send())
    }

    /// Flow and congestion control figures of `hop`.
    pub fn hop_figures(&self, hop: HopNum) -> Option<HopFigures> {
        self.hop(hop).map(|h| h.figures(hop))
    }

    /// Figures of the last hop (the one streams use).
    pub fn last_hop_figures(&self) -> Option<HopFigures> {
        self.hop_figures(self.last_hop()?)
    }

    /// The driver reports whether the channel is blocked for this circuit
    /// (a congestion signal for TOR_VEGAS, proposal 324 §3.3).
    pub fn set_blocked_on_channel(&mut self, blocked: bool) {
        let queued = u64::try_from(self.queued_cells()).unwrap_or(u64::MAX);
        for h in &mut self.hops {
            h.sender.set_blocked_on_channel(blocked, queued);
        }
    }

    // ----- Building -----

    /// Ask for one more hop, `target`, after those already built or
    /// requested. Its EXTEND2 goes to the then-last hop in a RELAY_EARLY
    /// cell as soon as no other handshake is in flight.
    ///
    /// Local errors, circuit left as it was: the circuit is closed; or the
    /// RELAY_EARLY budget (tor-spec §5.6) cannot carry this and the already
    /// requested extensions. If the EXTEND2 cannot be started (an unusable
    /// onion key in the directory data, the control reserve full), the
    /// circuit closes ([`CircEvent::BuildFailed`]) and the error is
    /// returned here when the extension started at once, or from the
    /// `handle_cell` that completed the previous hop otherwise.
    pub fn extend(&mut self, target: HopTarget, now: Instant) -> Result<(), CircError> {
        if self.closed {
            return Err(CircError::Closed);
        }
        if self.planned.len() >= usize::from(self.relay_early_left) {
            return Err(CircError::RelayEarlyExhausted);
        }
        self.planned.push_back(target);
        self.building = true;
        if self.pending.is_none() {
            self.start_next_extend(now)?;
        }
        Ok(())
    }

    /// Start the next planned extension, if any; otherwise report the
    /// circuit built. Errors close the circuit.
    fn start_next_extend(&mut self, now: Instant) -> Result<(), CircError> {
        let Some(target) = self.planned.pop_front() else {
            let built = CircEvent::Built {
                n_hops: self.hops.len(),
            };
            self.push_event(built).map_err(|e| self.fail(e))?;
            self.building = false;
            return Ok(());
        };
        let result = self.send_extend2(&target, now);
        result.map_err(|e| self.fail(e))
    }

    /// Send the EXTEND2 for `target` to the last hop.
    fn send_extend2(&mut self, target: &HopTarget, now: Instant) -> Result<(), CircError> {
        let last = self
            .last_hop()
            .ok_or(CircError::Internal("extend with no hop"))?;
        let new_hop = self.hop_num(self.hops.len()).ok_or(CircError::Crypto(
            crate::crypto::RelayCryptoError::TooManyHops,
        ))?;
        if self.relay_early_left == 0 {
            return Err(CircError::RelayEarlyExhausted);
        }
        let (handshake, htype, onionskin) =
            build::start(&mut self.rng, new_hop, target, &self.params.cc)?;
        let msg = build::extend2(target, htype, onionskin)?;
        let body =
            relay_cell::encode(None, msg.into(), &mut self.rng).map_err(CircError::Encode)?;
        self.check_control_space()?;
        self.pending = Some(Pending {
            hop: new_hop,
            handshake,
        });
        self.transmit(
            last,
            PlainCell {
                body,
                is_data: false,
                stream: None,
            },
            true,
            now,
        )
    }

    /// A handshake reply (CREATED2 or EXTENDED2 body) for the pending hop.
    fn finish_hop(&mut self, reply: &[u8], now: Instant) -> Result<(), CircError> {
        let pending = self
            .pending
            .take()
            .ok_or(CircError::Internal("no pending handshake"))?;
        let keys = pending
            .handshake
            .finish(pending.hop, reply, &self.params.cc)?;
        let hop = self.layers.add_hop(&keys.keys).map_err(CircError::Crypto)?;
        if hop != pending.hop {
            return Err(CircError::Internal("hop numbering out of step"));
        }
        self.hops.push(Hop::new(
            &self.params.cc,
            self.params.cc_path,
            keys.cc_sendme_inc,
        ));
        // Within max_pending_events like every other event.
        let added = CircEvent::HopAdded {
            hop,
            cc_sendme_inc: keys.cc_sendme_inc,
        };
        self.push_event(added).map_err(|e| self.fail(e))?;
        self.start_next_extend(now)
    }

    // ----- Sending -----

    /// Queue `msg` for `hop` on `stream` (`None`: a circuit-level message,
    /// stream id 0).
    ///
    /// DATA cells wait while the hop's congestion window is closed
    /// (tor-spec §7.3, proposal 324); other cells go at once, except that a
    /// stream's cells never overtake that stream's waiting DATA.
    ///
    /// Errors (the circuit stays open): [`CircError::QueueFull`] when the
    /// caller already has [`CircParams::max_queued_cells`] queued; the
    /// circuit is closed; no such hop; the message cannot be framed for
    /// that stream; EXTEND2 and circuit-level SENDMEs, which the circuit
    /// sends itself.
    pub fn send_relay(
        &mut self,
        hop: HopNum,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), CircError> {
        if self.closed {
            return Err(CircError::Closed);
        }
        let n_hops = self.hops.len();
        let h = self.hop(hop).ok_or(CircError::NoSuchHop { hop, n_hops })?;
        let cmd = msg.cmd();
        if matches!(cmd, RelayCmd::EXTEND | RelayCmd::EXTEND2)
            || (cmd == RelayCmd::SENDME && stream.is_none())
        {
            return Err(CircError::ReservedCommand { cmd });
        }
        let queued = self.queued_cells();
        if queued >= self.params.max_queued_cells {
            return Err(CircError::QueueFull {
                queued,
                limit: self.params.max_queued_cells,
            });
        }
        let is_data = cmd == RelayCmd::DATA;
        let must_wait = if is_data {
            !h.waiting.is_empty() || !h.sender.can_send()
        } else {
            stream.is_some_and(|s| h.stream_has_waiting(s))
        };
        let body = relay_cell::encode(stream, msg, &mut self.rng).map_err(CircError::Encode)?;
        let cell = PlainCell {
            body,
            is_data,
            stream,
        };
        if must_wait {
            let h = self
                .hop_mut(hop)
                .ok_or(CircError::Internal("hop vanished"))?;
            h.waiting.push_back(cell);
            self.waiting_total += 1;
            Ok(())
        } else {
            // An error here leaves the crypto state uncertain: close.
            self.transmit(hop, cell, false, now)
                .map_err(|e| self.fail(e))
        }
    }

    /// Close the circuit: drop what is queued, send a DESTROY (reason NONE,
    /// as clients always do, tor-spec §5.4). No effect if already closed.
    pub fn close(&mut self) {
        self.shutdown(CloseReason::Local, true);
    }

    /// The channel under the circuit closed, or the channel dropped the
    /// circuit: it is gone without a DESTROY from us
    /// ([`CloseReason::ChannelClosed`]). No effect if already closed.
    pub fn handle_channel_closed(&mut self) {
        self.shutdown(CloseReason::ChannelClosed, false);
    }

    /// The next cell for the channel, if any. The driver sends it with this
    /// circuit's id.
    pub fn poll_transmit(&mut self) -> Option<AnyChanMsg> {
        self.ready.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<CircEvent> {
        self.events.pop_front()
    }

    /// Encrypt `cell` for `hop` and queue it for the channel. `extend`:
    /// it carries an EXTEND2 and must be a RELAY_EARLY cell.
    fn transmit(
        &mut self,
        hop: HopNum,
        mut cell: PlainCell,
        extend: bool,
        now: Instant,
    ) -> Result<(), CircError> {
        let h = self.hop(hop).ok_or(CircError::NoSuchHop {
            hop,
            n_hops: self.hops.len(),
        })?;
        if cell.is_data && !h.sender.can_send() {
            return Err(CircError::Internal("DATA transmitted with a closed window"));
        }
        let tag = self
            .layers
            .encrypt_outbound(hop, &mut cell.body)
            .map_err(CircError::Crypto)?;
        if cell.is_data {
            let h = self
                .hop_mut(hop)
                .ok_or(CircError::Internal("hop vanished"))?;
            h.sender
                .on_data_sent(now, || to_cc_tag(&tag))
                .map_err(|source| CircError::FlowControl { hop, source })?;
            h.data_sent += 1;
        }
        // tor-spec §5.6: EXTEND2 only in RELAY_EARLY; the first RELAY_EARLY
        // budget also covers other cells not for the first hop, to hide the
        // circuit's length, keeping enough for the extensions requested.
        let early = if extend {
            true
        } else {
            hop != HopNum(0) && usize::from(self.relay_early_left) > self.planned.len()
        };
        let relay = Relay::from_raw(*cell.body);
        if early {
            self.relay_early_left = self
                .relay_early_left
                .checked_sub(1)
                .ok_or(CircError::RelayEarlyExhausted)?;
            self.ready.push_back(relay.into_early());
        } else {
            self.ready.push_back(AnyChanMsg::Relay(relay));
        }
        Ok(())
    }

    /// Send what the windows now allow from the waiting queues.
    fn release_waiting(&mut self, now: Instant) -> Result<(), CircError> {
        for i in 0..self.hops.len() {
            let hop = self.hop_num(i).ok_or(CircError::Internal("hop number"))?;
            while let Some(h) = self.hops.get_mut(i) {
                let go = h
                    .waiting
                    .front()
                    .is_some_and(|c| !c.is_data || h.sender.can_send());
                let Some(cell) = go.then(|| h.waiting.pop_front()).flatten() else {
                    break;
                };
                self.waiting_total = self.waiting_total.saturating_sub(1);
                self.transmit(hop, cell, false, now)?;
            }
        }
        Ok(())
    }

    /// Fail unless a circuit-generated cell fits in the control reserve.
    fn check_control_space(&self) -> Result<(), CircError> {
        let limit = self.params.max_queued_cells + CONTROL_RESERVE_CELLS;
        let queued = self.queued_cells();
        if queued >= limit {
            Err(CircError::QueueFull { queued, limit })
        } else {
            Ok(())
        }
    }

    // ----- Receiving -----

    /// A cell from the channel for this circuit.
    ///
    /// `Err` means the cell broke the protocol (or overran one of our
    /// bounds) and the circuit is now closed: a DESTROY is queued and the
    /// terminal event carries the same error. Cells for a closed circuit
    /// are ignored (tor-spec §5.4).
    pub fn handle_cell(&mut self, now: Instant, msg: AnyChanMsg) -> Result<(), CircError> {
        if self.closed {
            return Ok(());
        }
        let result = match msg {
            AnyChanMsg::Created2(c) => {
                if self.hops.is_empty() && self.pending.is_some() {
                    self.finish_hop(&c.into_body(), now)
                } else {
                    Err(unexpected(
                        "CREATED2",
                        "tor-spec §5.1: CREATED2 answers our CREATE2, and only once",
                    ))
                }
            }
            AnyChanMsg::Relay(r) => self.handle_relay(now, r.into_relay_body()),
            AnyChanMsg::RelayEarly(_) => Err(unexpected(
                "RELAY_EARLY",
                "tor-spec §5.6: an inbound RELAY_EARLY cell MUST close the circuit",
            )),
            AnyChanMsg::Destroy(d) => {
                self.shutdown(CloseReason::Destroyed { reason: d.reason() }, false);
                Ok(())
            }
            other => Err(CircError::UnexpectedCell {
                cell: tor_cell::chancell::ChanMsg::cmd(&other).to_string(),
                rule: "tor-spec §5: not a cell a relay sends on a client circuit",
            }),
        };
        result.map_err(|e| if self.closed { e } else { self.fail(e) })
    }

    /// An inbound RELAY cell body: peel, recognize, dispatch.
    fn handle_relay(
        &mut self,
        now: Instant,
        mut body: Box<RelayCellBody>,
    ) -> Result<(), CircError> {
        if self.hops.is_empty() {
            return Err(unexpected(
                "RELAY",
                "tor-spec §5.1: no relay cell before the first hop's CREATED2",
            ));
        }
        let (hop, tag) =
            self.layers
                .decrypt_inbound(&mut body)
                .ok_or(CircError::UnrecognizedCell {
                    n_hops: self.hops.len(),
                })?;
        let (stream, msg) = relay_cell::decode(&body)
            .map_err(|source| CircError::MalformedRelayCell { hop, source })?;
        let cmd = msg.cmd();
        match (stream, msg) {
            (Some(stream), AnyRelayMsg::Data(data)) => {
                self.on_data_received(hop, &tag, now)?;
                self.push_event(CircEvent::StreamMsg {
                    hop,
                    stream,
                    msg: data.into(),
                })
            }
            (None, AnyRelayMsg::Sendme(sendme)) => self.on_circuit_sendme(hop, sendme, now),
            (None, AnyRelayMsg::Extended2(ext)) => {
                if self.pending.is_some() && Some(hop) == self.last_hop() && !self.hops.is_empty() {
                    self.finish_hop(&ext.into_body(), now)
                } else {
                    Err(CircError::UnexpectedRelayMsg {
                        hop,
                        cmd,
                        rule: "tor-spec §5.1.2: EXTENDED2 answers our EXTEND2, from the last hop",
                    })
                }
            }
            (None, AnyRelayMsg::Extended(_)) => Err(CircError::UnexpectedRelayMsg {
                hop,
                cmd,
                rule: "tor-spec §5.1.2: EXTENDED answers EXTEND, which Braid never sends",
            }),
            (None, AnyRelayMsg::Truncated(t)) => {
                self.shutdown(
                    CloseReason::Truncated {
                        hop,
                        reason: t.reason(),
                    },
                    true,
                );
                Ok(())
            }
            // Padding (tor-spec §6.1 RELAY_DROP) and commands we do not
            // know: "the cell must be dropped and ignored" (tor-spec §6.1);
            // they count for the digests, which is done.
            (_, AnyRelayMsg::Drop(_) | AnyRelayMsg::Unrecognized(_)) => Ok(()),
            (_, msg) if is_forward_only(cmd) => {
                drop(msg);
                Err(CircError::UnexpectedRelayMsg {
                    hop,
                    cmd,
                    rule: "tor-spec §6.1: commands labelled \"forward\" are sent only by the \
                           origin of the circuit, which we are",
                })
            }
            (Some(stream), msg) => self.push_event(CircEvent::StreamMsg { hop, stream, msg }),
            (None, msg) => self.push_event(CircEvent::CircMsg { hop, msg }),
        }
    }

    /// A DATA cell from `hop` with SENDME tag `tag`: count it against our
    /// deliver window and send a circuit SENDME v1 carrying its tag when an
    /// increment is due (tor-spec §7.3, §7.3.1; proposal 289; with
    /// congestion control every `sendme_inc` cells, proposal 324).
    fn on_data_received(
        &mut self,
        hop: HopNum,
        tag: &SendmeTag,
        now: Instant,
    ) -> Result<(), CircError> {
        let h = self
            .hop_mut(hop)
            .ok_or(CircError::Internal("recognized by a missing hop"))?;
        h.deliver
            .on_data_received()
            .map_err(|source| CircError::FlowControl { hop, source })?;
        h.data_received += 1;
        if !h.deliver.take_sendme() {
            return Ok(());
        }
        h.sendmes_sent += 1;
        // Bounded: a peer that keeps sending DATA while we cannot get our
        // SENDMEs out fills the reserve and the circuit closes.
        self.check_control_space()?;
        let msg = Sendme::from(to_cc_tag(tag));
        let body =
            relay_cell::encode(None, msg.into(), &mut self.rng).map_err(CircError::Encode)?;
        // Circuit-level cells never wait for the window.
        self.transmit(
            hop,
            PlainCell {
                body,
                is_data: false,
                stream: None,
            },
            false,
            now,
        )
    }

    /// A circuit-level SENDME from `hop`: check its tag, credit the window
    /// (and, with congestion control, take an RTT sample and update cwnd),
    /// then send what the window now allows.
    fn on_circuit_sendme(
        &mut self,
        hop: HopNum,
        sendme: Sendme,
        now: Instant,
    ) -> Result<(), CircError> {
        let tag = sendme.into_sendme_tag();
        let h = self
            .hop_mut(hop)
            .ok_or(CircError::Internal("recognized by a missing hop"))?;
        h.sender
            .on_sendme_received(now, tag.as_ref())
            .map_err(|source| CircError::FlowControl { hop, source })?;
        h.sendmes_received += 1;
        self.release_waiting(now)
    }

    /// Queue an event for the driver, within its bound.
    fn push_event(&mut self, ev: CircEvent) -> Result<(), CircError> {
        if self.events.len() >= self.params.max_pending_events {
            return Err(CircError::EventQueueFull {
                limit: self.params.max_pending_events,
            });
        }
        self.events.push_back(ev);
        Ok(())
    }

    // ----- Closing -----

    /// Close on `err` (a protocol violation or resource limit), sending a
    /// DESTROY; returns `err` for the caller.
    fn fail(&mut self, err: CircError) -> CircError {
        self.shutdown(CloseReason::Error(err.clone()), true);
        err
    }

    /// Close: drop the queues, optionally send a DESTROY, emit the
    /// terminal event.
    fn shutdown(&mut self, reason: CloseReason, send_destroy: bool) {
        if self.closed {
            return;
        }
        let was_built = !self.building;
        self.closed = true;
        self.ready.clear();
        for h in &mut self.hops {
            h.waiting.clear();
        }
        self.waiting_total = 0;
        self.pending = None;
        self.planned.clear();
        if send_destroy {
            // tor-spec §5.4: "An OP should always use the NONE reason for
            // its own DESTROY cells."
            self.ready
                .push_back(AnyChanMsg::Destroy(Destroy::new(DestroyReason::NONE)));
        }
        // The terminal event is always delivered, bound or not.
        self.events.push_back(if was_built {
            CircEvent::Closed { reason }
        } else {
            CircEvent::BuildFailed { reason }
        });
    }

    // ----- Helpers -----

    /// Hop number `i`, if representable.
    fn hop_num(&self, i: usize) -> Option<HopNum> {
        u8::try_from(i).ok().map(HopNum)
    }

    /// The hop `hop`.
    fn hop(&self, hop: HopNum) -> Option<&Hop> {
        self.hops.get(usize::from(hop.0))
    }

    /// The hop `hop`, mutably.
    fn hop_mut(&mut self, hop: HopNum) -> Option<&mut Hop> {
        self.hops.get_mut(usize::from(hop.0))
    }
}

/// A relay crypto tag as the cc module's (tor-cell's) type.
fn to_cc_tag(tag: &SendmeTag) -> CcSendmeTag {
    CcSendmeTag::from(*tag.as_bytes())
}

/// An unexpected channel cell.
fn unexpected(cell: &str, rule: &'static str) -> CircError {
    CircError::UnexpectedCell {
        cell: cell.to_string(),
        rule,
    }
}

/// Relay commands only the origin of a circuit sends (tor-spec §6.1
/// "[forward]"; proposal 329 for CONFLUX_LINK and CONFLUX_LINKED_ACK;
/// rend-spec for the onion service requests).
fn is_forward_only(cmd: RelayCmd) -> bool {
    matches!(
        cmd,
        RelayCmd::BEGIN
            | RelayCmd::EXTEND
            | RelayCmd::TRUNCATE
            | RelayCmd::RESOLVE
            | RelayCmd::BEGIN_DIR
            | RelayCmd::EXTEND2
            | RelayCmd::CONNECT_UDP
            | RelayCmd::CONFLUX_LINK
            | RelayCmd::CONFLUX_LINKED_ACK
            | RelayCmd::ESTABLISH_INTRO
            | RelayCmd::ESTABLISH_RENDEZVOUS
            | RelayCmd::INTRODUCE1
            | RelayCmd::PADDING_NEGOTIATE
    )
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]

    use std::time::Duration;

    use proptest::prelude::*;
    use tor_cell::relaycell::msg::{Begin, Data, End, Truncated};

    use super::super::error::{CircErrorKind, RelayCellError};
    use super::super::test_network::{MockNet, build, pump};
    use super::*;
    use crate::cc::CcError;

    fn sid(n: u16) -> Option<StreamId> {
        StreamId::new(n)
    }

    fn data(bytes: &[u8]) -> AnyRelayMsg {
        Data::new(bytes).unwrap().into()
    }

    /// All events queued now.
    fn events(c: &mut ClientCircuit) -> Vec<CircEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// The DATA payloads of the stream events.
    fn stream_data(evs: &[CircEvent]) -> Vec<(HopNum, u16, Vec<u8>)> {
        evs.iter()
            .filter_map(|e| match e {
                CircEvent::StreamMsg {
                    hop,
                    stream,
                    msg: AnyRelayMsg::Data(d),
                } => Some((*hop, stream.get(), d.as_ref().to_vec())),
                _ => None,
            })
            .collect()
    }

    fn terminal(evs: &[CircEvent]) -> Option<&CloseReason> {
        evs.iter().find_map(|e| match e {
            CircEvent::Closed { reason } | CircEvent::BuildFailed { reason } => Some(reason),
            _ => None,
        })
    }

    /// A built 3-hop circuit: ntor, ntor, ntor-v3 + CC.
    fn three_hop() -> (ClientCircuit, MockNet, Instant) {
        let now = Instant::now();
        let mut net = MockNet::three_hops();
        let mut c = build(&mut net, &[0, 1, 2], CircParams::default(), now);
        let _ = events(&mut c);
        (c, net, now)
    }

    #[test]
    fn builds_three_hops() {
        let now = Instant::now();
        let mut net = MockNet::three_hops();
        let mut seed = StdRng::seed_from_u64(5);
        let id = CircId::new(0x8000_0042).unwrap();
        let mut c =
            ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now).unwrap();
        assert!(!c.is_built());
        assert_eq!(c.circ_id(), id);
        // The first cell is a CREATE2 with ntor (relay 0 lacks Relay=4).
        let create = c.poll_transmit().unwrap();
        match &create {
            AnyChanMsg::Create2(c2) => assert_eq!(
                c2.handshake_type(),
                tor_cell::chancell::msg::HandshakeType::NTOR
            ),
            other => panic!("{other:?}"),
        }
        for reply in net.deliver(create) {
            c.handle_cell(now, reply).unwrap();
        }
        assert!(c.is_built(), "one hop, nothing planned");
        c.extend(net.target(1), now).unwrap();
        c.extend(net.target(2), now).unwrap();
        assert!(!c.is_built());
        pump(&mut c, &mut net, now).unwrap();
        assert!(c.is_built());
        assert_eq!(c.n_hops(), 3);
        assert_eq!(
            net.hops.iter().map(|h| h.relay).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let evs = events(&mut c);
        let summary: Vec<String> = evs.iter().map(|e| format!("{e:?}")).collect();
        assert!(
            matches!(
                evs[..],
                [
                    CircEvent::HopAdded {
                        hop: HopNum(0),
                        cc_sendme_inc: None
                    },
                    CircEvent::Built { n_hops: 1 },
                    CircEvent::HopAdded {
                        hop: HopNum(1),
                        cc_sendme_inc: None
                    },
                    CircEvent::HopAdded {
                        hop: HopNum(2),
                        cc_sendme_inc: Some(31)
                    },
                    CircEvent::Built { n_hops: 3 },
                ]
            ),
            "{summary:?}"
        );
        // Both EXTEND2s went in RELAY_EARLY cells; the exit negotiated CC.
        assert_eq!(net.early, [(0, RelayCmd::EXTEND2), (1, RelayCmd::EXTEND2)]);
        assert_eq!(net.extend_not_early, 0);
        assert_eq!(c.relay_early_left(), MAX_RELAY_EARLY - 2);
        assert_eq!(net.hops[2].cc, Some(31));
        assert!(c.cc_enabled(HopNum(2)));
        assert!(!c.cc_enabled(HopNum(1)));
        let f = c.last_hop_figures().unwrap();
        assert_eq!(f.hop, HopNum(2));
        assert_eq!(f.cc_sendme_inc, Some(31));
        assert_eq!(f.cwnd, Some(124));
        assert_eq!(f.inflight, Some(0));
        let f0 = c.hop_figures(HopNum(0)).unwrap();
        assert_eq!(f0.cwnd, None);
        assert_eq!(f0.send_window, 1000);
    }

    /// Keys agree with every hop: cells to and from each hop round-trip.
    #[test]
    fn data_round_trips_to_every_hop() {
        let (mut c, mut net, now) = three_hop();
        for hop in 0..3_u8 {
            let payload = vec![hop; 100 + usize::from(hop)];
            c.send_relay(HopNum(hop), sid(7), data(&payload), now)
                .unwrap();
            pump(&mut c, &mut net, now).unwrap();
            let got = stream_data(&events(&mut c));
            assert_eq!(got, [(HopNum(hop), 7, payload.clone())]);
            assert_eq!(net.log.last().unwrap().0, usize::from(hop));
        }
        // A full cell, and BEGIN -> CONNECTED on the exit.
        c.send_relay(HopNum(2), sid(9), data(&[0xee; 498]), now)
            .unwrap();
        let begin = Begin::new("example.com", 80, 0).unwrap();
        c.send_relay(HopNum(2), sid(10), begin.into(), now).unwrap();
        pump(&mut c, &mut net, now).unwrap();
        let evs = events(&mut c);
        assert_eq!(stream_data(&evs), [(HopNum(2), 9, vec![0xee; 498])]);
        assert!(evs.iter().any(|e| matches!(
            e,
            CircEvent::StreamMsg { hop: HopNum(2), stream, msg: AnyRelayMsg::Connected(_) }
                if stream.get() == 10
        )));
        assert_eq!(net.unrecognized, 0);
    }

    /// tor-spec §5.6: after the two EXTEND2s, the next six cells for hops
    /// other than the first are RELAY_EARLY, then plain RELAY.
    #[test]
    fn relay_early_budget() {
        let (mut c, mut net, now) = three_hop();
        net.echo = false;
        c.send_relay(HopNum(0), sid(1), data(b"first hop"), now)
            .unwrap();
        for i in 0..10_u8 {
            c.send_relay(HopNum(2), sid(1), data(&[i]), now).unwrap();
        }
        pump(&mut c, &mut net, now).unwrap();
        assert_eq!(net.early.len(), 8);
        assert!(net.early[2..].iter().all(|(h, _)| *h == 2));
        assert_eq!(c.relay_early_left(), 0);
        // No RELAY_EARLY left for an EXTEND2.
        assert_eq!(
            c.extend(net.target(0), now),
            Err(CircError::RelayEarlyExhausted)
        );
        assert!(!c.is_closed());
    }

    /// Requested extensions keep their RELAY_EARLY cells even when other
    /// cells are sent meanwhile.
    #[test]
    fn relay_early_reserved_for_planned_extends() {
        let now = Instant::now();
        let mut net = MockNet::new(&[(true, None); 9], 3);
        let mut c = build(&mut net, &[0, 1], CircParams::default(), now);
        for i in 2..9 {
            c.extend(net.target(i), now).unwrap();
        }
        // The budget is spoken for: 1 used, 1 pending, 6 planned.
        assert_eq!(
            c.extend(net.target(0), now),
            Err(CircError::RelayEarlyExhausted)
        );
        net.echo = false;
        c.send_relay(HopNum(1), sid(3), data(b"x"), now).unwrap();
        pump(&mut c, &mut net, now).unwrap();
        assert!(c.is_built());
        assert_eq!(c.n_hops(), 9);
        assert_eq!(net.extend_not_early, 0);
        assert_eq!(net.early.len(), 8);
        assert!(net.early.iter().all(|(_, cmd)| *cmd == RelayCmd::EXTEND2));
    }

    /// A relay without ntor-v3 gets ntor and fixed windows, and a SENDME
    /// every 100 DATA cells.
    #[test]
    fn ntor_only_relays_get_fixed_windows() {
        let now = Instant::now();
        let mut net = MockNet::new(&[(false, None), (false, None)], 4);
        let mut c = build(&mut net, &[0, 1], CircParams::default(), now);
        assert!(!c.cc_enabled(HopNum(1)));
        assert_eq!(net.hops[1].cc, None);
        let f = c.last_hop_figures().unwrap();
        assert_eq!(f.cwnd, None);
        assert_eq!(f.send_window, 1000);
        // Inbound: 250 DATA cells from hop 1 -> our SENDMEs after 100, 200.
        for i in 0..250_u32 {
            let cell = net.originate(1, 5, data(&i.to_be_bytes()));
            c.handle_cell(now, cell).unwrap();
            pump(&mut c, &mut net, now).unwrap();
        }
        assert_eq!(net.hops[1].sendmes, [(100, true), (200, true)]);
        assert_eq!(c.hop_figures(HopNum(1)).unwrap().sendmes_sent, 2);
        // Outbound: the fixed window closes after 1000 cells without SENDMEs.
        net.auto_sendme = false;
        net.echo = false;
        let _ = events(&mut c);
        for _ in 0..1000 {
            assert!(c.can_send_data(HopNum(1)));
            c.send_relay(HopNum(1), sid(5), data(b"d"), now).unwrap();
            pump(&mut c, &mut net, now).unwrap();
        }
        assert!(!c.can_send_data(HopNum(1)));
        c.send_relay(HopNum(1), sid(5), data(b"waits"), now)
            .unwrap();
        pump(&mut c, &mut net, now).unwrap();
        assert_eq!(net.hops[1].data_received, 1000);
        assert_eq!(c.hop_figures(HopNum(1)).unwrap().waiting_cells, 1);
    }

    /// With congestion control, our SENDMEs come every `sendme_inc` (31)
    /// DATA cells and carry the tag of the cell that triggered them.
    #[test]
    fn circuit_sendmes_every_sendme_inc_with_v1_tags() {
        let (mut c, mut net, now) = three_hop();
        for i in 0..100_u32 {
            let cell = net.originate(2, 1, data(&i.to_be_bytes()));
            c.handle_cell(now, cell).unwrap();
            pump(&mut c, &mut net, now).unwrap();
        }
        assert_eq!(stream_data(&events(&mut c)).len(), 100);
        assert_eq!(net.hops[2].sendmes, [(31, true), (62, true), (93, true)]);
        let f = c.last_hop_figures().unwrap();
        assert_eq!(f.data_received, 100);
        assert_eq!(f.sendmes_sent, 3);
        assert_eq!(f.deliver_window, 1000 - 7);
        // Nothing from the middle hops.
        assert!(net.hops[0].sendmes.is_empty() && net.hops[1].sendmes.is_empty());
    }

    /// A SENDME with a forged tag closes the circuit (proposal 289).
    #[test]
    fn forged_sendme_tag_closes() {
        let (mut c, mut net, now) = three_hop();
        net.auto_sendme = false;
        net.echo = false;
        for _ in 0..31 {
            c.send_relay(HopNum(2), sid(1), data(b"x"), now).unwrap();
        }
        pump(&mut c, &mut net, now).unwrap();
        let forged = net.originate(2, 0, Sendme::new_tag([0xab; 20]).into());
        let err = c.handle_cell(now, forged).unwrap_err();
        assert_eq!(
            err,
            CircError::FlowControl {
                hop: HopNum(2),
                source: CcError::SendmeTagMismatch
            }
        );
        assert!(err.is_protocol_violation());
        assert!(c.is_closed());
        let evs = events(&mut c);
        assert_eq!(terminal(&evs), Some(&CloseReason::Error(err)));
        assert!(matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(_))));
        assert!(c.poll_transmit().is_none());
        // Closed: further input is ignored, output refused.
        let late = net.originate(2, 1, data(b"late"));
        assert!(c.handle_cell(now, late).is_ok());
        assert_eq!(
            c.send_relay(HopNum(2), sid(1), data(b"x"), now),
            Err(CircError::Closed)
        );
    }

    /// A SENDME when none is expected, and a version 0 SENDME.
    #[test]
    fn unexpected_and_v0_sendmes_close() {
        let (mut c, mut net, now) = three_hop();
        let spurious = net.originate(2, 0, Sendme::new_tag([1; 20]).into());
        assert!(matches!(
            c.handle_cell(now, spurious),
            Err(CircError::FlowControl {
                source: CcError::UnexpectedSendme { .. },
                ..
            })
        ));

        let (mut c, mut net, now) = three_hop();
        net.auto_sendme = false;
        net.echo = false;
        for _ in 0..31 {
            c.send_relay(HopNum(2), sid(1), data(b"x"), now).unwrap();
        }
        pump(&mut c, &mut net, now).unwrap();
        let v0 = net.originate(2, 0, Sendme::new_empty().into());
        assert!(matches!(
            c.handle_cell(now, v0),
            Err(CircError::FlowControl {
                source: CcError::SendmeVersionRejected { version: 0, .. },
                ..
            })
        ));
    }

    /// DATA waits while the congestion window is closed and leaves when a
    /// SENDME opens it; RTT is measured.
    #[test]
    fn data_waits_for_the_congestion_window() {
        let (mut c, mut net, mut now) = three_hop();
        net.auto_sendme = false;
        net.echo = false;
        // cwnd_init = 124: 124 cells go, the rest wait.
        for i in 0..130_u32 {
            c.send_relay(HopNum(2), sid(1), data(&i.to_be_bytes()), now)
                .unwrap();
        }
        // A non-DATA cell on another stream does not wait; one on the
        // waiting stream does.
        c.send_relay(HopNum(2), sid(2), End::new_misc().into(), now)
            .unwrap();
        c.send_relay(HopNum(2), sid(1), End::new_misc().into(), now)
            .unwrap();
        pump(&mut c, &mut net, now).unwrap();
        assert_eq!(net.hops[2].data_received, 124);
        let f = c.last_hop_figures().unwrap();
        assert_eq!(f.inflight, Some(124));
        assert_eq!(f.waiting_cells, 7);
        assert_eq!(c.queued_cells(), 7);
        assert!(!c.can_send_data(HopNum(2)));
        let ends: Vec<u16> = net
            .log
            .iter()
            .filter(|(_, _, m)| m.cmd() == RelayCmd::END)
            .map(|(_, s, _)| *s)
            .collect();
        assert_eq!(ends, [2]);
        // The relay acknowledges the first 31 cells 50 ms later, with the
        // tag of the 31st.
        now += Duration::from_millis(50);
        let tag = net.hops[2].data_tags[30];
        let sendme = net.originate(2, 0, Sendme::from(tag).into());
        c.handle_cell(now, sendme).unwrap();
        pump(&mut c, &mut net, now).unwrap();
        assert_eq!(net.hops[2].data_received, 130);
        let ends: Vec<u16> = net
            .log
            .iter()
            .filter(|(_, _, m)| m.cmd() == RelayCmd::END)
            .map(|(_, s, _)| *s)
            .collect();
        assert_eq!(ends, [2, 1], "stream 1's END after its DATA");
        let f = c.last_hop_figures().unwrap();
        assert_eq!(f.waiting_cells, 0);
        assert_eq!(f.sendmes_received, 1);
        assert!(f.min_rtt.is_some() && f.ewma_rtt.is_some(), "{f:?}");
    }

    #[test]
    fn destroy_closes() {
        let (mut c, _net, now) = three_hop();
        let d = AnyChanMsg::Destroy(Destroy::new(DestroyReason::CHANNEL_CLOSED));
        c.handle_cell(now, d).unwrap();
        assert!(c.is_closed());
        assert!(!c.is_built());
        let evs = events(&mut c);
        assert!(matches!(
            evs[..],
            [CircEvent::Closed {
                reason: CloseReason::Destroyed {
                    reason: DestroyReason::CHANNEL_CLOSED
                }
            }]
        ));
        // No DESTROY in answer to a DESTROY.
        assert!(c.poll_transmit().is_none());
    }

    #[test]
    fn truncated_closes_and_destroys() {
        let (mut c, mut net, now) = three_hop();
        let t = net.originate(1, 0, Truncated::new(DestroyReason::CONNECTFAILED).into());
        c.handle_cell(now, t).unwrap();
        let evs = events(&mut c);
        assert_eq!(
            terminal(&evs),
            Some(&CloseReason::Truncated {
                hop: HopNum(1),
                reason: DestroyReason::CONNECTFAILED
            })
        );
        assert!(
            matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(d)) if d.reason() == DestroyReason::NONE)
        );
    }

    #[test]
    fn local_close() {
        let (mut c, mut net, now) = three_hop();
        net.auto_sendme = false;
        c.send_relay(HopNum(2), sid(1), data(b"dropped"), now)
            .unwrap();
        c.close();
        c.close();
        assert!(matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(_))));
        assert!(c.poll_transmit().is_none());
        let evs = events(&mut c);
        assert!(matches!(
            evs[..],
            [CircEvent::Closed {
                reason: CloseReason::Local
            }]
        ));
        assert_eq!(c.extend(net.target(0), now), Err(CircError::Closed));
    }

    /// tor-spec §5.5.3: an inbound cell no hop recognizes is an error.
    #[test]
    fn unrecognized_cell_is_a_violation() {
        let (mut c, mut net, now) = three_hop();
        let g = net.garbage();
        let err = c.handle_cell(now, g).unwrap_err();
        assert_eq!(err, CircError::UnrecognizedCell { n_hops: 3 });
        assert!(err.is_protocol_violation());
        assert!(err.to_string().contains("tor-spec §5.5.3"));
        assert!(matches!(c.poll_transmit(), Some(AnyChanMsg::Destroy(_))));
    }

    #[test]
    fn inbound_relay_early_and_stray_cells_are_violations() {
        let (mut c, mut net, now) = three_hop();
        let AnyChanMsg::Relay(r) = net.originate(2, 1, data(b"x")) else {
            panic!()
        };
        let err = c.handle_cell(now, r.into_early()).unwrap_err();
        assert!(matches!(err, CircError::UnexpectedCell { .. }));
        assert!(err.to_string().contains("§5.6"));

        let (mut c, _net, now) = three_hop();
        let stray = AnyChanMsg::Created2(tor_cell::chancell::msg::Created2::new(vec![0; 64]));
        assert!(
            c.handle_cell(now, stray)
                .unwrap_err()
                .is_protocol_violation()
        );

        // A forward-only command from a relay.
        let (mut c, mut net, now) = three_hop();
        let begin = Begin::new("example.com", 80, 0).unwrap();
        let cell = net.originate(2, 4, begin.into());
        assert!(matches!(
            c.handle_cell(now, cell),
            Err(CircError::UnexpectedRelayMsg {
                hop: HopNum(2),
                cmd: RelayCmd::BEGIN,
                ..
            })
        ));
        // EXTENDED2 nobody asked for.
        let (mut c, mut net, now) = three_hop();
        let cell = net.originate(
            2,
            0,
            tor_cell::relaycell::msg::Extended2::new(vec![1]).into(),
        );
        assert!(
            c.handle_cell(now, cell)
                .unwrap_err()
                .is_protocol_violation()
        );
    }

    /// Cells the client tolerates: padding, unknown commands, stream
    /// messages from a middle hop (leaky pipe), circuit messages for the
    /// layer above.
    #[test]
    fn tolerated_inbound_cells() {
        let (mut c, mut net, now) = three_hop();
        let drop_cell = net.originate(1, 0, tor_cell::relaycell::msg::Drop::default().into());
        c.handle_cell(now, drop_cell).unwrap();
        let unknown = tor_cell::relaycell::msg::Unrecognized::new(RelayCmd::from(250), vec![1, 2]);
        let cell = net.originate(2, 0, unknown.into());
        c.handle_cell(now, cell).unwrap();
        let cell = net.originate(0, 3, End::new_misc().into());
        c.handle_cell(now, cell).unwrap();
        let switch = tor_cell::relaycell::conflux::ConfluxSwitch::new(7);
        let cell = net.originate(2, 0, switch.into());
        c.handle_cell(now, cell).unwrap();
        let evs = events(&mut c);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert!(matches!(
            &evs[0],
            CircEvent::StreamMsg {
                hop: HopNum(0),
                msg: AnyRelayMsg::End(_),
                ..
            }
        ));
        assert!(matches!(
            &evs[1],
            CircEvent::CircMsg {
                hop: HopNum(2),
                msg: AnyRelayMsg::ConfluxSwitch(_)
            }
        ));
        assert!(!c.is_closed());
    }

    /// A CREATED2 whose AUTH does not verify fails the build.
    #[test]
    fn bad_created2_fails_the_build() {
        let now = Instant::now();
        for (v3, at_hop) in [(false, 0), (true, 0), (false, 1), (true, 2)] {
            let mut net = MockNet::new(&[(v3, Some(31)); 3], 8);
            let mut seed = StdRng::seed_from_u64(1);
            let id = CircId::new(0x8000_0001).unwrap();
            let mut c =
                ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now)
                    .unwrap();
            for i in 1..3 {
                c.extend(net.target(i), now).unwrap();
            }
            if at_hop == 0 {
                net.tamper_reply = true;
                let err = pump(&mut c, &mut net, now).unwrap_err();
                assert!(
                    matches!(err, CircError::Handshake { hop: HopNum(0), .. }),
                    "{err}"
                );
            } else {
                // Build up to the hop before, then tamper.
                let create = c.poll_transmit().unwrap();
                for r in net.deliver(create) {
                    c.handle_cell(now, r).unwrap();
                }
                if at_hop == 2 {
                    let ext = c.poll_transmit().unwrap();
                    for r in net.deliver(ext) {
                        c.handle_cell(now, r).unwrap();
                    }
                }
                net.tamper_reply = true;
                let err = pump(&mut c, &mut net, now).unwrap_err();
                assert!(
                    matches!(err, CircError::Handshake { hop, .. } if hop == HopNum(at_hop)),
                    "{err}"
                );
            }
            assert!(c.is_closed());
            let evs = events(&mut c);
            assert!(
                matches!(
                    evs.last(),
                    Some(CircEvent::BuildFailed {
                        reason: CloseReason::Error(CircError::Handshake { .. })
                    })
                ),
                "{v3} {at_hop} {evs:?}"
            );
            assert_eq!(net.destroys, 1);
        }
    }

    /// DESTROY during the build: BuildFailed.
    #[test]
    fn destroy_while_building() {
        let now = Instant::now();
        let mut net = MockNet::three_hops();
        let mut seed = StdRng::seed_from_u64(1);
        let id = CircId::new(0x8000_0001).unwrap();
        let mut c =
            ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now).unwrap();
        let _ = c.poll_transmit();
        let d = AnyChanMsg::Destroy(Destroy::new(DestroyReason::RESOURCELIMIT));
        c.handle_cell(now, d).unwrap();
        assert!(matches!(
            events(&mut c)[..],
            [CircEvent::BuildFailed {
                reason: CloseReason::Destroyed { .. }
            }]
        ));
        let _ = &mut net;
    }

    /// The exit answers congestion control we did not ask for, or with an
    /// unacceptable `sendme_inc`.
    #[test]
    fn bad_cc_negotiation_fails_the_build() {
        let now = Instant::now();
        for (inc, unasked) in [(31, true), (60, false), (0, false)] {
            let mut net = MockNet::new(&[(true, None), (true, Some(inc))], 2);
            net.relays[1].cc_unasked = unasked;
            let mut seed = StdRng::seed_from_u64(1);
            let id = CircId::new(0x8000_0001).unwrap();
            let mut c =
                ClientCircuit::new(id, net.target(0), CircParams::default(), &mut seed, now)
                    .unwrap();
            let mut t = net.target(1);
            t.request_cc = !unasked;
            c.extend(t, now).unwrap();
            let err = pump(&mut c, &mut net, now).unwrap_err();
            assert!(
                matches!(err, CircError::CcNegotiation { hop: HopNum(1), .. }),
                "{inc} {unasked}: {err}"
            );
        }
    }

    /// An ntor-v3 relay that declines congestion control gets fixed
    /// windows.
    #[test]
    fn declined_cc_means_fixed_windows() {
        let now = Instant::now();
        let mut net = MockNet::new(&[(true, None), (true, None)], 2);
        let c = build(&mut net, &[0, 1], CircParams::default(), now);
        assert!(!c.cc_enabled(HopNum(1)));
        assert_eq!(c.last_hop_figures().unwrap().send_window, 1000);
    }

    #[test]
    fn local_errors_leave_the_circuit_open() {
        let (mut c, mut net, now) = three_hop();
        assert_eq!(
            c.send_relay(HopNum(3), sid(1), data(b"x"), now),
            Err(CircError::NoSuchHop {
                hop: HopNum(3),
                n_hops: 3
            })
        );
        assert!(matches!(
            c.send_relay(HopNum(2), None, data(b"x"), now),
            Err(CircError::Encode(RelayCellError::BadStreamId { .. }))
        ));
        assert!(matches!(
            c.send_relay(HopNum(2), None, Sendme::new_tag([0; 20]).into(), now),
            Err(CircError::ReservedCommand { .. })
        ));
        let ext = tor_cell::relaycell::msg::Extend2::new(
            vec![],
            tor_cell::chancell::msg::HandshakeType::NTOR,
            vec![],
        );
        assert!(matches!(
            c.send_relay(HopNum(2), None, ext.into(), now),
            Err(CircError::ReservedCommand { .. })
        ));
        // A stream-level SENDME is the stream layer's to send.
        c.send_relay(HopNum(2), sid(1), Sendme::new_empty().into(), now)
            .unwrap();
        assert!(!c.is_closed());
        pump(&mut c, &mut net, now).unwrap();
        assert_eq!(CircError::Closed.kind(), CircErrorKind::Local);
    }

    /// The outbound queue bound holds, and is a local resource limit.
    #[test]
    fn queue_bound() {
        let now = Instant::now();
        let mut net = MockNet::three_hops();
        let params = CircParams {
            max_queued_cells: 10,
            ..CircParams::default()
        };
        let mut c = build(&mut net, &[0, 1, 2], params, now);
        // The driver does not transmit: the ready queue fills.
        for i in 0..10_u8 {
            c.send_relay(HopNum(2), sid(1), data(&[i]), now).unwrap();
        }
        assert_eq!(c.queue_space(), 0);
        assert!(!c.can_send_data(HopNum(2)));
        let err = c
            .send_relay(HopNum(2), sid(1), data(b"over"), now)
            .unwrap_err();
        assert_eq!(
            err,
            CircError::QueueFull {
                queued: 10,
                limit: 10
            }
        );
        assert!(err.is_resource_limit());
        assert!(!c.is_closed());
        // Draining makes room.
        let _ = c.poll_transmit();
        c.send_relay(HopNum(2), sid(1), data(b"fits"), now).unwrap();
    }

    /// Inbound DATA while the driver never transmits: our SENDMEs fill the
    /// control reserve and the circuit closes on the resource limit.
    #[test]
    fn control_reserve_overflow_closes() {
        let now = Instant::now();
        let mut net = MockNet::three_hops();
        let params = CircParams {
            max_queued_cells: 4,
            ..CircParams::default()
        };
        let mut c = build(&mut net, &[0, 1, 2], params, now);
        let mut closed = None;
        for i in 0..5000_u32 {
            let cell = net.originate(2, 1, data(&i.to_be_bytes()));
            if let Err(e) = c.handle_cell(now, cell) {
                closed = Some((i, e));
                break;
            }
            let _ = events(&mut c);
        }
        let (i, e) = closed.unwrap();
        assert!(e.is_resource_limit(), "{e}");
        // 36 SENDMEs fit (4 + 32), the 37th does not: cell 37 * 31.
        assert_eq!(i + 1, 37 * 31);
        assert!(c.is_closed());
    }

    /// Stream events beyond their bound close the circuit.
    #[test]
    fn event_bound() {
        let now = Instant::now();
        let mut net = MockNet::three_hops();
        let params = CircParams {
            max_pending_events: 5,
            ..CircParams::default()
        };
        let mut c = build(&mut net, &[0, 1, 2], params, now);
        let _ = events(&mut c);
        for i in 0..5_u8 {
            let cell = net.originate(2, 1, data(&[i]));
            c.handle_cell(now, cell).unwrap();
        }
        let cell = net.originate(2, 1, data(b"one too many"));
        assert_eq!(
            c.handle_cell(now, cell),
            Err(CircError::EventQueueFull { limit: 5 })
        );
        let evs = events(&mut c);
        assert_eq!(evs.len(), 6, "5 messages and the terminal event");
    }

    /// Random operations never panic and never exceed the bounds.
    #[derive(Debug, Clone)]
    enum Op {
        /// Send DATA to a hop on a stream.
        Send(u8, u16, u16),
        /// Send END on a stream.
        End(u8, u16),
        /// Let the mock network answer everything queued.
        Pump,
        /// Transmit one cell without the network answering.
        Drop1,
        /// The exit sends n DATA cells.
        Inbound(u8, u16),
        /// The exit sends a forged SENDME.
        Forge,
        /// Garbage arrives.
        Garbage,
        /// Time passes.
        Wait(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4_u8, 1..4_u16, 1..60_u16).prop_map(|(h, s, n)| Op::Send(h, s, n)),
            1 => (0..4_u8, 1..4_u16).prop_map(|(h, s)| Op::End(h, s)),
            4 => Just(Op::Pump),
            2 => Just(Op::Drop1),
            3 => (0..3_u8, 1..80_u16).prop_map(|(h, n)| Op::Inbound(h, n)),
            1 => Just(Op::Forge),
            1 => Just(Op::Garbage),
            2 => (1..200_u16).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_operations_stay_bounded(
            ops in proptest::collection::vec(op(), 1..60),
            limit in 1..80_usize,
            echo in any::<bool>(),
        ) {
            let mut now = Instant::now();
            let mut net = MockNet::three_hops();
            net.echo = echo;
            let params = CircParams {
                max_queued_cells: limit,
                max_pending_events: 500,
                ..CircParams::default()
            };
            let mut c = build(&mut net, &[0, 1, 2], params, now);
            let mut dropped = false;
            for op in ops {
                match op {
                    Op::Send(h, s, n) => {
                        for i in 0..n {
                            let r = c.send_relay(HopNum(h), sid(s), data(&i.to_be_bytes()), now);
                            if let Err(e) = r {
                                prop_assert!(
                                    matches!(e, CircError::QueueFull { .. } | CircError::Closed | CircError::NoSuchHop { .. }),
                                    "{}", e
                                );
                                prop_assert!(!e.is_protocol_violation());
                            }
                        }
                    }
                    Op::End(h, s) => {
                        let _ = c.send_relay(HopNum(h), sid(s), End::new_misc().into(), now);
                    }
                    Op::Pump => {
                        if !dropped {
                            let _ = pump(&mut c, &mut net, now);
                        }
                    }
                    Op::Drop1 => {
                        // A cell lost: the relay side is out of step from
                        // now on, so stop talking to it.
                        if c.poll_transmit().is_some() {
                            dropped = true;
                        }
                    }
                    Op::Inbound(h, n) => {
                        if !dropped {
                            for i in 0..n {
                                let cell = net.originate(usize::from(h), 1, data(&i.to_be_bytes()));
                                let _ = c.handle_cell(now, cell);
                            }
                        }
                    }
                    Op::Forge => {
                        if !dropped {
                            let cell = net.originate(2, 0, Sendme::new_tag([9; 20]).into());
                            if !c.is_closed() {
                                prop_assert!(c.handle_cell(now, cell).is_err());
                            }
                        }
                    }
                    Op::Garbage => {
                        let g = net.garbage();
                        let was_closed = c.is_closed();
                        let r = c.handle_cell(now, g);
                        prop_assert_eq!(r.is_err(), !was_closed);
                    }
                    Op::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
                }
                prop_assert!(c.queued_cells() <= limit + CONTROL_RESERVE_CELLS);
                let evs = events(&mut c);
                prop_assert!(evs.len() <= 501);
                if c.is_closed() {
                    prop_assert!(!c.is_built());
                }
                for h in 0..3_u8 {
                    let f = c.hop_figures(HopNum(h)).unwrap();
                    if let (Some(cwnd), Some(inflight)) = (f.cwnd, f.inflight) {
                        prop_assert!(inflight <= cwnd + 31);
                    }
                }
            }
            prop_assert_eq!(net.unrecognized, 0);
            prop_assert_eq!(net.extend_not_early, 0);
        }
    }
}
