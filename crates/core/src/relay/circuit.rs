//! [`RelayCircuit`]: one circuit at a relay, between the previous hop's
//! channel and (once extended) the next hop's.
//!
//! Outbound cells (from the client side) get our layer removed: a cell we
//! recognize is ours (tor-spec §5.5.2.2) and is handled here (EXTEND2,
//! circuit SENDMEs, DATA counting) or handed to the edge above as a
//! [`RelayCircEvent::Edge`] (stream messages at an exit); one we do not
//! recognize goes on to the next hop, or, with no next hop, closes the
//! circuit. Inbound cells from the next hop get our layer added and go back.
//! Cells we originate (the edge's answers, our SENDMEs) get our layer with
//! [`RelayHop::originate_inbound`]; DATA we send is counted by congestion
//! control (TOR_VEGAS when negotiated at CREATE2, fixed windows otherwise).
//!
//! Sans-IO: the driver gives cells with `now` and takes cells for each
//! channel from [`RelayCircuit::poll_to_prev`] / [`RelayCircuit::poll_to_next`],
//! and events from [`RelayCircuit::poll_event`]. Both queues are bounded
//! ([`MAX_QUEUED_CELLS`]): a peer that sends faster than the other channel
//! takes closes the circuit (RESOURCELIMIT), never the relay.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};
use tor_cell::chancell::ChanMsg as _;
use tor_cell::chancell::msg::{AnyChanMsg, Create2, Destroy, DestroyReason, Relay};
use tor_cell::relaycell::msg::{AnyRelayMsg, Extended2, Sendme, Truncated};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};
use tor_linkspec::LinkSpec;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::cc::sendme::PacedDeliver;
use crate::cc::{CcParams, CcPath, CircuitSender, DeliverWindow, SendmeTag as CcTag};
use crate::circuit::relay_cell;
use crate::conflux::LegCc;
use crate::crypto::{RelayHop, SendmeTag};
use crate::ids::StreamId;

use super::create::Answered;
use super::error::RelayCircError;
use super::queue::CellQueue;

/// Most cells queued toward either channel before the circuit is closed
/// (the other side sends faster than this side takes).
pub const MAX_QUEUED_CELLS: usize = 4096;

/// RELAY_EARLY cells a circuit may carry (tor-spec §5.6).
pub const MAX_RELAY_EARLY: u8 = 8;

/// Most events waiting for the driver.
const MAX_EVENTS: usize = 1024;

/// A request to extend the circuit (tor-spec §5.1.2): the driver opens or
/// reuses a channel to the target, sends `create` on a new circuit there,
/// and answers with [`RelayCircuit::extended`] or
/// [`RelayCircuit::extend_failed`].
#[derive(Debug, Clone)]
pub struct ExtendRequest {
    /// The target's RSA identity (required).
    pub rsa_id: RsaIdentity,
    /// Its Ed25519 identity, if given: the channel must prove it.
    pub ed_id: Option<Ed25519Identity>,
    /// Its ORPort addresses, IPv4 first.
    pub addrs: Vec<SocketAddr>,
    /// The CREATE2 to send it.
    pub create: Create2,
}

/// What a circuit tells its driver.
#[derive(Debug, Clone)]
pub enum RelayCircEvent {
    /// Extend the circuit.
    Extend(ExtendRequest),
    /// A message for the edge (an exit's streams, BEGIN_DIR, Conflux): we
    /// are its recipient.
    Edge {
        /// Its stream.
        stream: Option<StreamId>,
        /// The message.
        msg: AnyRelayMsg,
    },
    /// The circuit closed; its DESTROYs are queued.
    Closed {
        /// The reason sent (or received).
        reason: DestroyReason,
    },
}

/// Where the next hop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// No next hop: we are the circuit's edge.
    None,
    /// Asked the driver to extend; waiting for CREATED2.
    Extending,
    /// Extended: unrecognized cells go there.
    Open,
}

/// One circuit at a relay. See the [module docs](self).
#[derive(Debug)]
pub struct RelayCircuit {
    /// Our layer.
    hop: RelayHop,
    /// Randomness for cell padding.
    rng: StdRng,
    /// Congestion control settings.
    cc_params: CcParams,
    /// Negotiated `sendme_inc`.
    cc: Option<u8>,
    /// The client's DATA to us: when to send a SENDME (held back while a
    /// Conflux set asks, [`Self::set_sendme_hold`]).
    deliver: PacedDeliver<SendmeTag>,
    /// Our DATA to the client: the window.
    sender: CircuitSender,
    /// RELAY_EARLY cells received.
    early_seen: u8,
    /// The next hop.
    next: Next,
    /// Our RSA identity (no extending to ourselves).
    own_id: RsaIdentity,
    /// The previous hop's RSA identity when it authenticated as a relay
    /// (no extending back to it).
    prev_id: Option<RsaIdentity>,
    /// Cells for the previous hop's channel.
    to_prev: CellQueue,
    /// Cells for the next hop's channel.
    to_next: CellQueue,
    /// The latest `now` we were given, the time of cells queued by calls
    /// without one (DESTROYs).
    clock: Option<Instant>,
    /// Events for the driver.
    events: VecDeque<RelayCircEvent>,
    /// Closed.
    closed: bool,
    /// DATA cells we sent and received, for reports.
    data_sent: u64,
    data_received: u64,
}

impl RelayCircuit {
    /// A circuit answered with `answered` (see
    /// [`answer_create2`](super::answer_create2)): its CREATED cell is the
    /// first in [`Self::poll_to_prev`].
    pub fn new<R: CryptoRng + ?Sized>(
        answered: Answered,
        cc_params: CcParams,
        own_id: RsaIdentity,
        prev_id: Option<RsaIdentity>,
        rng: &mut R,
    ) -> Self {
        let (sender, deliver) = match answered.cc {
            Some(inc) => (
                CircuitSender::vegas(&cc_params, CcPath::Exit, inc),
                DeliverWindow::circuit_cc(inc),
            ),
            None => (CircuitSender::fixed(&cc_params), DeliverWindow::circuit()),
        };
        let mut to_prev = CellQueue::default();
        to_prev.push(answered.reply, None);
        Self {
            hop: RelayHop::new(&answered.keys),
            rng: StdRng::from_rng(rng),
            cc_params,
            cc: answered.cc,
            deliver: PacedDeliver::new(deliver, answered.cc.is_some()),
            sender,
            early_seen: 0,
            next: Next::None,
            own_id,
            prev_id,
            to_prev,
            to_next: CellQueue::default(),
            clock: None,
            events: VecDeque::new(),
            closed: false,
            data_sent: 0,
            data_received: 0,
        }
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True if the circuit continues past us.
    pub fn has_next(&self) -> bool {
        self.next != Next::None
    }

    /// The negotiated `sendme_inc`, with congestion control.
    pub fn cc_sendme_inc(&self) -> Option<u8> {
        self.cc
    }

    /// DATA cells (sent, received) at this hop as the edge.
    pub fn data_counts(&self) -> (u64, u64) {
        (self.data_sent, self.data_received)
    }

    /// Cells waiting for each channel: (previous, next).
    pub fn queued(&self) -> (usize, usize) {
        (self.to_prev.len(), self.to_next.len())
    }

    /// The next cell for the previous hop's channel.
    pub fn poll_to_prev(&mut self) -> Option<AnyChanMsg> {
        self.to_prev.pop()
    }

    /// The next cell for the next hop's channel.
    pub fn poll_to_next(&mut self) -> Option<AnyChanMsg> {
        self.to_next.pop()
    }

    /// When the oldest cell queued toward either channel was queued (the
    /// age the node's out-of-memory policy orders circuits by).
    pub fn oldest_queued(&self) -> Option<Instant> {
        match (self.to_prev.oldest(), self.to_next.oldest()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RelayCircEvent> {
        self.events.pop_front()
    }

    // ----- From the previous hop -----

    /// A cell from the previous hop's channel.
    pub fn handle_from_prev(&mut self, cell: AnyChanMsg, now: Instant) {
        self.clock = Some(now);
        if self.closed {
            return;
        }
        let result = match cell {
            AnyChanMsg::Relay(r) => self.outbound(r.into_relay_body(), false, now),
            AnyChanMsg::RelayEarly(r) => {
                self.early_seen = self.early_seen.saturating_add(1);
                if self.early_seen > MAX_RELAY_EARLY {
                    Err(RelayCircError::TooManyRelayEarly {
                        max: MAX_RELAY_EARLY,
                    })
                } else {
                    self.outbound(r.into_relay_body(), true, now)
                }
            }
            AnyChanMsg::Destroy(d) => {
                // tor-spec §5.4: pass it on, and the circuit is gone.
                self.shutdown(d.reason(), false, true);
                Ok(())
            }
            other => Err(RelayCircError::UnexpectedCell {
                cell: other.cmd().to_string(),
                rule: "tor-spec §5: after CREATE only RELAY, RELAY_EARLY and DESTROY",
            }),
        };
        if let Err(e) = result {
            self.fail(&e);
        }
    }

    /// An outbound relay cell body: ours, or on to the next hop.
    fn outbound(
        &mut self,
        mut body: Box<crate::crypto::RelayCellBody>,
        early: bool,
        now: Instant,
    ) -> Result<(), RelayCircError> {
        let Some(tag) = self.hop.decrypt_outbound(&mut body) else {
            return match self.next {
                Next::Open => {
                    let relay = Relay::from_raw(*body);
                    let cell = if early {
                        relay.into_early()
                    } else {
                        AnyChanMsg::Relay(relay)
                    };
                    self.to_next.push_bounded(cell, Some(now))
                }
                // tor-spec §5.5.2.2: not ours and nowhere to go.
                Next::None | Next::Extending => Err(RelayCircError::Unrecognized),
            };
        };
        let (stream, msg) = relay_cell::decode(&body).map_err(RelayCircError::Malformed)?;
        let cmd = msg.cmd();
        match (stream, msg) {
            (None, AnyRelayMsg::Extend2(e)) => {
                if !early {
                    return Err(RelayCircError::ExtendNotEarly);
                }
                self.extend(&e)
            }
            (None, AnyRelayMsg::Sendme(s)) => {
                let tag = s.into_sendme_tag();
                self.sender
                    .on_sendme_received(now, tag.as_ref())
                    .map_err(RelayCircError::FlowControl)?;
                Ok(())
            }
            (_, AnyRelayMsg::Drop(_)) => Ok(()),
            (None, AnyRelayMsg::Truncate(_)) => {
                // tor-spec §5.4: tear down what is past us, answer TRUNCATED.
                if self.next != Next::None {
                    self.to_next
                        .push(Destroy::new(DestroyReason::REQUESTED).into(), Some(now));
                    self.next = Next::None;
                }
                self.originate(None, Truncated::new(DestroyReason::REQUESTED).into(), now)
            }
            (Some(stream), AnyRelayMsg::Data(d)) => {
                self.on_data(&tag, now)?;
                self.push_event(RelayCircEvent::Edge {
                    stream: Some(stream),
                    msg: d.into(),
                })
            }
            (_, msg) if is_backward_only(cmd) => {
                drop(msg);
                Err(RelayCircError::UnexpectedRelayMsg {
                    cmd,
                    rule: "tor-spec §6.1: a backward-only command from the client side",
                })
            }
            (stream, msg) => self.push_event(RelayCircEvent::Edge { stream, msg }),
        }
    }

    /// A DATA cell for us: count it, and send a circuit SENDME v1 with its
    /// tag when one is due (tor-spec §7.3, proposal 289; every
    /// `sendme_inc` with congestion control, proposal 324), unless they
    /// are held ([`Self::set_sendme_hold`]).
    fn on_data(&mut self, tag: &SendmeTag, now: Instant) -> Result<(), RelayCircError> {
        self.deliver
            .on_data(*tag)
            .map_err(RelayCircError::FlowControl)?;
        self.data_received += 1;
        self.send_due_sendmes(now)
    }

    /// Hold back (or release) our circuit SENDMEs to the client: a Conflux
    /// exit set whose upload reorder queue fills holds the legs ahead of
    /// the gap ([`crate::conflux::ConfluxSet::sendme_hold`]), so the
    /// client's congestion window stops them ([`PacedDeliver`]). Releasing
    /// sends every held SENDME in order; a failure closes the circuit.
    pub fn set_sendme_hold(&mut self, hold: bool, now: Instant) {
        if self.closed {
            return;
        }
        self.deliver.set_hold(hold);
        if let Err(e) = self.send_due_sendmes(now) {
            self.fail(&e);
        }
    }

    /// Send the SENDMEs [`PacedDeliver::next_sendme`] lets go now.
    fn send_due_sendmes(&mut self, now: Instant) -> Result<(), RelayCircError> {
        while let Some(tag) = self.deliver.next_sendme() {
            let msg = Sendme::from(CcTag::from(*tag.as_bytes()));
            self.originate(None, msg.into(), now)?;
        }
        Ok(())
    }

    /// An EXTEND2 for us (tor-spec §5.1.2).
    fn extend(&mut self, e: &tor_cell::relaycell::msg::Extend2) -> Result<(), RelayCircError> {
        if self.next != Next::None {
            return Err(RelayCircError::UnexpectedRelayMsg {
                cmd: RelayCmd::EXTEND2,
                rule: "tor-spec §5.1.2: a circuit is extended once from its last hop",
            });
        }
        let mut rsa_id = None;
        let mut ed_id = None;
        let mut addrs = Vec::new();
        for ls in e.linkspecs() {
            match ls.parse() {
                Ok(LinkSpec::OrPort(ip, port)) => addrs.push(SocketAddr::new(ip, port)),
                Ok(LinkSpec::RsaId(id)) => rsa_id = Some(id),
                Ok(LinkSpec::Ed25519Id(id)) => ed_id = Some(id),
                _ => {}
            }
        }
        addrs.sort_by_key(|a| !a.is_ipv4());
        let Some(rsa_id) = rsa_id.filter(|_| !addrs.is_empty()) else {
            return Err(RelayCircError::UnexpectedRelayMsg {
                cmd: RelayCmd::EXTEND2,
                rule: "tor-spec §5.1.2: EXTEND2 names an RSA identity and an address",
            });
        };
        if rsa_id == self.own_id || Some(rsa_id) == self.prev_id {
            return Err(RelayCircError::UnexpectedRelayMsg {
                cmd: RelayCmd::EXTEND2,
                rule: "tor-spec §5.1.2: no extending to ourselves or back to the previous hop",
            });
        }
        self.next = Next::Extending;
        let create = Create2::new(e.handshake_type(), e.handshake().to_vec());
        self.push_event(RelayCircEvent::Extend(ExtendRequest {
            rsa_id,
            ed_id,
            addrs,
            create,
        }))
    }

    // ----- From the next hop -----

    /// The next hop answered our CREATE2: EXTENDED2 goes back.
    pub fn extended(&mut self, created: &tor_cell::chancell::msg::Created2, now: Instant) {
        self.clock = Some(now);
        if self.closed || self.next != Next::Extending {
            return;
        }
        self.next = Next::Open;
        let msg = Extended2::new(created.clone().into_body());
        if let Err(e) = self.originate(None, msg.into(), now) {
            self.fail(&e);
        }
    }

    /// The extension failed (no channel, refused): the circuit closes
    /// (C-tor closes it with CONNECTFAILED / CHANNEL_CLOSED).
    pub fn extend_failed(&mut self, reason: DestroyReason) {
        if self.closed || self.next != Next::Extending {
            return;
        }
        self.next = Next::None;
        self.shutdown(reason, true, false);
    }

    /// A cell from the next hop's channel.
    pub fn handle_from_next(&mut self, cell: AnyChanMsg, now: Instant) {
        self.clock = Some(now);
        if self.closed {
            return;
        }
        let result = match (self.next, cell) {
            (Next::Extending, AnyChanMsg::Created2(c)) => {
                self.extended(&c, now);
                Ok(())
            }
            (Next::Open, AnyChanMsg::Relay(r)) => {
                let mut body = r.into_relay_body();
                self.hop.encrypt_inbound(&mut body);
                self.to_prev
                    .push_bounded(Relay::from_raw(*body).into(), Some(now))
            }
            (_, AnyChanMsg::Destroy(_)) => {
                // C-tor tells the client DESTROYED (a DESTROY from further
                // on), closing this circuit too.
                self.next = Next::None;
                self.shutdown(DestroyReason::DESTROYED, true, false);
                Ok(())
            }
            (_, other) => Err(RelayCircError::UnexpectedCell {
                cell: other.cmd().to_string(),
                rule: "tor-spec §5: the next hop sends CREATED2 once, then RELAY or DESTROY",
            }),
        };
        if let Err(e) = result {
            self.fail(&e);
        }
    }

    /// The next hop's channel closed: the client hears CHANNEL_CLOSED.
    pub fn handle_next_gone(&mut self) {
        if self.closed || self.next == Next::None {
            return;
        }
        self.next = Next::None;
        self.shutdown(DestroyReason::CHANNEL_CLOSED, true, false);
    }

    /// The previous hop's channel closed: the circuit is gone; DESTROY
    /// goes on to the next hop.
    pub fn handle_prev_gone(&mut self) {
        self.shutdown(DestroyReason::CHANNEL_CLOSED, false, true);
        self.to_prev.clear();
    }

    // ----- As the edge -----

    /// True if a DATA cell we send now goes at once (congestion window).
    pub fn can_send_data(&self) -> bool {
        !self.closed && self.sender.can_send() && self.to_prev.len() < MAX_QUEUED_CELLS
    }

    /// Send `msg` on `stream` toward the client, as this hop (the edge).
    /// DATA needs [`Self::can_send_data`].
    pub fn send(
        &mut self,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), RelayCircError> {
        self.clock = Some(now);
        if self.closed {
            return Err(RelayCircError::Closed);
        }
        if msg.cmd() == RelayCmd::DATA && !self.sender.can_send() {
            return Err(RelayCircError::WindowClosed);
        }
        let r = self.originate(stream, msg, now);
        if let Err(e) = &r
            && e.kind() != super::error::RelayCircErrorKind::Local
        {
            self.fail(e);
        }
        r
    }

    /// Frame, layer and queue a message we originate.
    fn originate(
        &mut self,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), RelayCircError> {
        let is_data = msg.cmd() == RelayCmd::DATA;
        let mut body =
            relay_cell::encode(stream, msg, &mut self.rng).map_err(RelayCircError::Encode)?;
        let tag = self.hop.originate_inbound(&mut body);
        if is_data {
            let t = CcTag::from(*tag.as_bytes());
            self.sender
                .on_data_sent(now, || t)
                .map_err(RelayCircError::FlowControl)?;
            self.data_sent += 1;
        }
        self.to_prev
            .push_bounded(Relay::from_raw(*body).into(), Some(now))
    }

    /// The driver reports whether the previous hop's channel is blocked (a
    /// congestion signal for TOR_VEGAS, proposal 324 §3.3).
    pub fn set_blocked_on_channel(&mut self, blocked: bool) {
        let queued = u64::try_from(self.to_prev.len()).unwrap_or(u64::MAX);
        self.sender.set_blocked_on_channel(blocked, queued);
    }

    /// Our congestion window's figures: (cwnd, inflight) with TOR_VEGAS.
    pub fn cwnd(&self) -> Option<(u64, u64)> {
        self.sender.vegas_state().map(|v| (v.cwnd(), v.inflight()))
    }

    /// The figures a Conflux scheduler places DATA by, for this circuit
    /// as a leg whose edge we are (prop 329 §3). `can_send`: DATA goes out
    /// now (window open and the queue toward the client under
    /// `queue_target` cells).
    pub fn leg_cc(&self, queue_target: usize) -> LegCc {
        let vegas = self.sender.vegas_state();
        LegCc {
            min_rtt: vegas.and_then(|v| v.rtt().min_rtt()),
            ewma_rtt: vegas.and_then(|v| v.rtt().ewma_rtt()),
            cwnd: vegas.map(|v| v.cwnd()),
            inflight: vegas.map(|v| v.inflight()),
            in_slow_start: vegas.map(|v| v.in_slow_start()),
            sendme_inc: self.cc,
            can_send: self.can_send_data() && self.to_prev.len() < queue_target,
        }
    }

    /// The congestion control settings.
    pub fn cc_params(&self) -> &CcParams {
        &self.cc_params
    }

    // ----- Closing -----

    /// Close the circuit with `reason` both ways (a local decision).
    pub fn close(&mut self, reason: DestroyReason) {
        self.shutdown(reason, true, true);
    }

    /// Close on `e`: DESTROY both ways with its reason.
    fn fail(&mut self, e: &RelayCircError) {
        tracing::debug!("relay circuit closed: {e}");
        self.shutdown(e.destroy_reason(), true, true);
    }

    /// Close: queue DESTROYs (to the previous hop if `to_prev`, to the next
    /// if there is one and `to_next`), drop queued cells, one event.
    fn shutdown(&mut self, reason: DestroyReason, to_prev: bool, to_next: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.to_prev.clear();
        self.to_next.clear();
        if to_prev {
            self.to_prev.push(Destroy::new(reason).into(), self.clock);
        }
        if to_next && self.next != Next::None {
            self.to_next.push(Destroy::new(reason).into(), self.clock);
        }
        self.next = Next::None;
        // The terminal event is always delivered, bound or not.
        self.events.push_back(RelayCircEvent::Closed { reason });
    }

    /// Queue an event within its bound.
    fn push_event(&mut self, ev: RelayCircEvent) -> Result<(), RelayCircError> {
        if self.events.len() >= MAX_EVENTS {
            return Err(RelayCircError::QueueFull {
                queued: self.events.len(),
                limit: MAX_EVENTS,
            });
        }
        self.events.push_back(ev);
        Ok(())
    }
}

/// Relay commands only a relay sends toward the client (tor-spec §6.1
/// "[backward]"): a client sending one breaks the protocol.
fn is_backward_only(cmd: RelayCmd) -> bool {
    matches!(
        cmd,
        RelayCmd::EXTENDED
            | RelayCmd::EXTENDED2
            | RelayCmd::TRUNCATED
            | RelayCmd::CONNECTED
            | RelayCmd::RESOLVED
            | RelayCmd::CONFLUX_LINKED
    )
}
