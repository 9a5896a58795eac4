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
use tor_cell::chancell::msg::{AnyChanMsg, Create2, CreateFast, Destroy, DestroyReason, Relay};
use tor_cell::relaycell::msg::AnyRelayMsg;
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::build::{self, HopTarget, PendingHandshake};
use super::error::CircError;
use super::event::{CircEvent, CloseReason};
use super::hop::{Hop, HopFigures, PlainCell};
use super::params::{CONTROL_RESERVE_CELLS, CircParams};
use super::relay_cell;
use crate::cc::SendmeTag as CcSendmeTag;
use crate::crypto::{ClientLayers, SendmeTag, fast};
use crate::ids::{CircId, HopNum, StreamId};

mod extend;
mod receive;

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
        let create = AnyChanMsg::Create2(Create2::new(htype, onionskin));
        Ok(Self::starting(circ_id, params, rng, handshake, create))
    }

    /// A one-hop circuit with id `circ_id` to the relay at the other end of
    /// the channel, made with CREATE_FAST (tor-spec §5.1.5): for BEGIN_DIR
    /// to a relay whose onion key we do not know (a fallback directory),
    /// as C-tor does. Its channel's TLS already authenticated the relay.
    pub fn new_fast<R: CryptoRng + ?Sized>(
        circ_id: CircId,
        params: CircParams,
        rng: &mut R,
        _now: Instant,
    ) -> Self {
        let mut rng = StdRng::from_rng(rng);
        let (state, x) = fast::client_handshake(&mut rng);
        let create = AnyChanMsg::CreateFast(CreateFast::new(x.to_vec()));
        Self::starting(circ_id, params, rng, PendingHandshake::Fast(state), create)
    }

    /// A circuit whose first hop's `create` cell is queued.
    fn starting(
        circ_id: CircId,
        params: CircParams,
        rng: StdRng,
        handshake: PendingHandshake,
        create: AnyChanMsg,
    ) -> Self {
        let mut ready = VecDeque::new();
        ready.push_back(create);
        Self {
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
        }
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
