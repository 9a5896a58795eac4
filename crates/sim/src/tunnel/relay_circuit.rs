//! The relay side of one simulated circuit: every hop's handshake and
//! onion layer in one object (the relays of a leg are one bottleneck in
//! the simulation), the exit hop's circuit SENDMEs both ways (proposal
//! 289 tags, TOR_VEGAS for what the exit sends), and what the exit hop
//! recognizes, handed to the exit.
//!
//! Relay cells are framed with tor-cell's own codec, not braid-core's, so
//! that the two check each other.

use std::time::Instant;

use braid_core::cc::{CcParams, CcPath, CircuitSender, DeliverWindow, SendmeTag as CcTag};
use braid_core::conflux::LegCc;
use braid_core::crypto::{RelayCellBody, RelayHop};
use braid_core::ids::StreamId;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, Created2, Destroy, DestroyReason, Relay};
use tor_cell::relaycell::msg::{AnyRelayMsg, Extended2, Sendme};
use tor_cell::relaycell::{
    AnyRelayMsgOuter, RelayCellFormat, RelayCmd, RelayMsg as _, StreamId as CellStreamId,
};
use tor_linkspec::LinkSpec;

use super::relays::SimRelays;

/// One hop's relay-side state.
#[derive(Debug)]
struct HopState {
    /// Which relay.
    relay: usize,
    /// Its layer.
    crypto: RelayHop,
    /// Negotiated `sendme_inc`, with congestion control.
    cc: Option<u8>,
    /// Its window for the client's DATA.
    deliver: DeliverWindow,
    /// Its window for DATA it sends (TOR_VEGAS or fixed).
    sender: CircuitSender,
}

/// What a cell from the client produced.
#[derive(Debug)]
pub enum FromClient {
    /// A cell to send back to the client (CREATED2, EXTENDED2, SENDME,
    /// DESTROY on a failed handshake).
    Reply(AnyChanMsg),
    /// A relay message the last hop recognized and did not handle itself.
    AtExit {
        /// Its stream, if any.
        stream: Option<StreamId>,
        /// The message.
        msg: AnyRelayMsg,
    },
    /// A relay message recognized by a hop that is not the last.
    AtMiddle {
        /// The hop.
        hop: usize,
        /// Its command.
        cmd: RelayCmd,
    },
    /// The client destroyed the circuit.
    Destroyed,
    /// A cell no hop recognized, or a protocol error of the client.
    Broken(&'static str),
}

/// The relay side of one circuit.
#[derive(Debug)]
pub struct RelayCircuit {
    /// Hops in path order.
    hops: Vec<HopState>,
    /// Randomness for handshakes and padding.
    rng: StdRng,
    /// Settings for the exit's congestion control.
    params: CcParams,
    /// The relay that answers no EXTEND2 (a black hole), if any.
    pub black_hole: Option<usize>,
    /// Refuse congestion control on this circuit (an exit hop that does
    /// not answer the request).
    pub refuse_cc: bool,
    /// DATA cells the exit hop sent.
    pub data_sent: u64,
    /// DATA cells the exit hop received.
    pub data_received: u64,
    /// DESTROY cells received from the client.
    pub destroys: u32,
    /// The exit sent DATA beyond its window (a test playing a hostile
    /// exit): the client's SENDMEs for it cannot match, and are not
    /// checked from then on.
    overran: bool,
}

impl RelayCircuit {
    /// A circuit whose first relay has not yet seen the CREATE2.
    pub fn new(seed: u64) -> Self {
        Self {
            hops: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            params: CcParams::default(),
            black_hole: None,
            refuse_cc: false,
            data_sent: 0,
            data_received: 0,
            destroys: 0,
            overran: false,
        }
    }

    /// Hops built.
    pub fn n_hops(&self) -> usize {
        self.hops.len()
    }

    /// A cell from the client, arriving at `now` at the first relay.
    pub fn from_client(
        &mut self,
        relays: &SimRelays,
        first_relay: usize,
        cell: AnyChanMsg,
        now: Instant,
    ) -> Vec<FromClient> {
        match cell {
            AnyChanMsg::Create2(c) => {
                if !self.hops.is_empty() {
                    return vec![FromClient::Broken("CREATE2 on a live circuit")];
                }
                match self.add_hop(relays, first_relay, c.handshake_type(), c.body()) {
                    Some(reply) => vec![FromClient::Reply(Created2::new(reply).into())],
                    None => vec![FromClient::Reply(
                        Destroy::new(DestroyReason::PROTOCOL).into(),
                    )],
                }
            }
            AnyChanMsg::Relay(r) => self.relay_cell(relays, r.into_relay_body(), now),
            AnyChanMsg::RelayEarly(r) => self.relay_cell(relays, r.into_relay_body(), now),
            AnyChanMsg::Destroy(_) => {
                self.destroys += 1;
                vec![FromClient::Destroyed]
            }
            _ => vec![FromClient::Broken("not a circuit cell")],
        }
    }

    /// Relay `relay` answers an onionskin and becomes the next hop.
    fn add_hop(
        &mut self,
        relays: &SimRelays,
        relay: usize,
        htype: tor_cell::chancell::msg::HandshakeType,
        skin: &[u8],
    ) -> Option<Vec<u8>> {
        let answered = relays.answer(relay, htype, skin, self.refuse_cc, &mut self.rng)?;
        let sender = match answered.cc {
            Some(inc) => CircuitSender::vegas(&self.params, CcPath::Exit, inc),
            None => CircuitSender::fixed(&self.params),
        };
        self.hops.push(HopState {
            relay,
            crypto: RelayHop::new(&answered.keys),
            cc: answered.cc,
            deliver: answered
                .cc
                .map_or_else(DeliverWindow::circuit, DeliverWindow::circuit_cc),
            sender,
        });
        Some(answered.reply)
    }

    /// An outbound relay cell: peel layers until a hop recognizes it.
    fn relay_cell(
        &mut self,
        relays: &SimRelays,
        mut body: Box<RelayCellBody>,
        now: Instant,
    ) -> Vec<FromClient> {
        let mut found = None;
        for (i, h) in self.hops.iter_mut().enumerate() {
            if let Some(tag) = h.crypto.decrypt_outbound(&mut body) {
                found = Some((i, tag));
                break;
            }
        }
        let Some((hop, tag)) = found else {
            return vec![FromClient::Broken("a relay cell no hop recognized")];
        };
        let Ok(outer) = AnyRelayMsgOuter::decode_singleton(RelayCellFormat::V0, body) else {
            return vec![FromClient::Broken("a relay cell tor-cell cannot parse")];
        };
        let (stream, msg) = outer.into_streamid_and_msg();
        let stream = stream.and_then(|s| StreamId::new(u16::from(s)));
        let last = hop + 1 == self.hops.len();
        match msg {
            AnyRelayMsg::Extend2(e) if last => {
                let mut rsa = None;
                for ls in e.linkspecs() {
                    if let Ok(LinkSpec::RsaId(r)) = ls.parse() {
                        rsa = Some(r);
                    }
                }
                let Some(next) = rsa.and_then(|r| relays.find(&r)) else {
                    return vec![FromClient::Reply(
                        Destroy::new(DestroyReason::PROTOCOL).into(),
                    )];
                };
                if self.black_hole == Some(next) {
                    return Vec::new();
                }
                match self.add_hop(relays, next, e.handshake_type(), e.handshake()) {
                    Some(reply) => vec![FromClient::Reply(self.originate(
                        hop,
                        None,
                        Extended2::new(reply).into(),
                        now,
                    ))],
                    None => vec![FromClient::Reply(
                        Destroy::new(DestroyReason::PROTOCOL).into(),
                    )],
                }
            }
            AnyRelayMsg::Sendme(s) if stream.is_none() => {
                let Some(h) = self.hops.get_mut(hop) else {
                    return Vec::new();
                };
                let tag = s.into_sendme_tag();
                match h.sender.on_sendme_received(now, tag.as_ref()) {
                    Ok(_) => Vec::new(),
                    Err(_) if self.overran => Vec::new(),
                    Err(_) => vec![FromClient::Broken("a SENDME the exit did not expect")],
                }
            }
            AnyRelayMsg::Data(d) if last => {
                self.data_received += 1;
                let Some(h) = self.hops.get_mut(hop) else {
                    return Vec::new();
                };
                if h.deliver.on_data_received().is_err() {
                    return vec![FromClient::Broken("the client overran the deliver window")];
                }
                let mut out = Vec::new();
                if h.deliver.take_sendme() {
                    let t = CcTag::from(*tag.as_bytes());
                    out.push(FromClient::Reply(self.originate(
                        hop,
                        None,
                        Sendme::from(t).into(),
                        now,
                    )));
                }
                out.push(FromClient::AtExit {
                    stream,
                    msg: d.into(),
                });
                out
            }
            msg if last => vec![FromClient::AtExit { stream, msg }],
            msg => vec![FromClient::AtMiddle {
                hop,
                cmd: msg.cmd(),
            }],
        }
    }

    /// True if the exit hop may send a DATA cell now.
    pub fn can_send_data(&self) -> bool {
        self.hops.last().is_some_and(|h| h.sender.can_send())
    }

    /// The exit hop's congestion figures, for its scheduler.
    pub fn leg_cc(&self, room: bool) -> LegCc {
        let Some(h) = self.hops.last() else {
            return LegCc::default();
        };
        let v = h.sender.vegas_state();
        LegCc {
            min_rtt: v.and_then(|v| v.rtt().min_rtt()),
            ewma_rtt: v.and_then(|v| v.rtt().ewma_rtt()),
            cwnd: v.map(|v| v.cwnd()),
            inflight: v.map(|v| v.inflight()),
            in_slow_start: v.map(|v| v.in_slow_start()),
            sendme_inc: h.cc,
            can_send: room && h.sender.can_send(),
        }
    }

    /// The exit hop sends `msg` on `stream` towards the client.
    pub fn from_exit(
        &mut self,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> AnyChanMsg {
        let hop = self.hops.len().saturating_sub(1);
        self.originate(hop, stream, msg, now)
    }

    /// Hop `hop` originates `msg` towards the client (a middle sending
    /// what only the exit may send is how tests play a hostile middle).
    pub fn originate(
        &mut self,
        hop: usize,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> AnyChanMsg {
        let is_data = msg.cmd() == RelayCmd::DATA;
        let sid = CellStreamId::new(stream.map_or(0, StreamId::get));
        let Ok(mut body) =
            AnyRelayMsgOuter::new(sid, msg).encode(RelayCellFormat::V0, &mut self.rng)
        else {
            return Destroy::new(DestroyReason::INTERNAL).into();
        };
        let Some(h) = self.hops.get_mut(hop) else {
            return Destroy::new(DestroyReason::INTERNAL).into();
        };
        let tag = h.crypto.originate_inbound(&mut body);
        if is_data {
            self.data_sent += 1;
            let t = CcTag::from(*tag.as_bytes());
            // Over the window only when a test injects: the client sees
            // the cell anyway and its deliver window judges it.
            if h.sender.on_data_sent(now, || t).is_err() {
                self.overran = true;
            }
        }
        for h in self.hops.iter_mut().take(hop).rev() {
            h.crypto.encrypt_inbound(&mut body);
        }
        Relay::from_raw(*body).into()
    }

    /// The relay at hop `hop`.
    pub fn relay(&self, hop: usize) -> Option<usize> {
        self.hops.get(hop).map(|h| h.relay)
    }
}
