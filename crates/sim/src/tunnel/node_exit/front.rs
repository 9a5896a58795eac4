//! The relays in front of a real exit on one simulated circuit: the
//! guard's and the middle's handshakes and onion layers, nothing else
//! (neither is the circuit's edge, so neither counts SENDMEs). The guard
//! answers the client's CREATE2 and extends to the middle itself; the
//! middle's EXTEND2 to the exit becomes a CREATE2 for the exit (tor-spec
//! §5.1.2, §5.3), its CREATED2 comes back as EXTENDED2, relay cells no
//! layer recognizes go on to the exit (tor-spec §5.5.2.2) and the exit's
//! come back with both layers added (tor-spec §5.5.3).

use braid_core::crypto::{RelayCellBody, RelayHop};
use braid_core::ids::StreamId;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, Create2, Created2, Destroy, DestroyReason, Relay};
use tor_cell::relaycell::msg::{AnyRelayMsg, Extended2};
use tor_cell::relaycell::{AnyRelayMsgOuter, RelayCellFormat, StreamId as CellStreamId};
use tor_linkspec::LinkSpec;

use crate::tunnel::relays::SimRelays;

/// Relays a leg has in front of its exit.
pub const FRONT_HOPS: usize = 2;

/// One relay's layer.
#[derive(Debug)]
struct Layer {
    /// Which relay.
    relay: usize,
    /// Its relay crypto.
    crypto: RelayHop,
}

/// Where the circuit stands beyond the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beyond {
    /// Not extended to the exit.
    Nothing,
    /// CREATE2 sent to the exit, CREATED2 awaited.
    Extending,
    /// The exit is the next hop.
    Open,
}

/// What a cell from the client produced.
#[derive(Debug)]
pub enum FromClient {
    /// A cell back to the client (CREATED2, EXTENDED2 of the guard, a
    /// DESTROY).
    Reply(AnyChanMsg),
    /// A cell for the exit on the middle's channel (CREATE2, RELAY,
    /// RELAY_EARLY, DESTROY).
    ToExit(AnyChanMsg),
    /// The client broke the protocol at the guard or the middle: the
    /// circuit closed (DESTROY goes both ways).
    Broken(&'static str),
}

/// The guard and the middle of one circuit. See the [module docs](self).
#[derive(Debug)]
pub struct FrontRelays {
    layers: Vec<Layer>,
    /// The relay the middle's EXTEND2 must name (the exit).
    exit_relay: usize,
    beyond: Beyond,
    rng: StdRng,
    /// The relay that answers no EXTEND2 to it (a black hole), if any.
    pub black_hole: Option<usize>,
    /// Closed: cells either way are dropped, as a relay drops cells of a
    /// circuit it forgot.
    pub closed: bool,
    /// DESTROY cells received from the client (also after the circuit
    /// closed here).
    pub destroys: u32,
    /// DESTROY cells received from the exit.
    pub exit_destroys: u32,
}

impl FrontRelays {
    /// A circuit whose guard has not seen the CREATE2; it will extend to
    /// `exit_relay`.
    pub fn new(exit_relay: usize, seed: u64) -> Self {
        Self {
            layers: Vec::new(),
            exit_relay,
            beyond: Beyond::Nothing,
            rng: StdRng::seed_from_u64(seed),
            black_hole: None,
            closed: false,
            destroys: 0,
            exit_destroys: 0,
        }
    }

    /// Relays built (0 to [`FRONT_HOPS`]).
    pub fn n_hops(&self) -> usize {
        self.layers.len()
    }

    /// The exit is the next hop (CREATED2 came back).
    pub fn is_extended(&self) -> bool {
        self.beyond == Beyond::Open
    }

    /// Whether cells have gone to the exit (so a DESTROY must follow).
    pub fn reaches_exit(&self) -> bool {
        self.beyond != Beyond::Nothing
    }

    /// A cell from the client, at the guard (`guard` is its relay).
    pub fn from_client(
        &mut self,
        relays: &SimRelays,
        guard: usize,
        cell: AnyChanMsg,
    ) -> Vec<FromClient> {
        if matches!(cell, AnyChanMsg::Destroy(_)) {
            self.destroys += 1;
        }
        if self.closed {
            return Vec::new();
        }
        match cell {
            AnyChanMsg::Create2(c) => {
                if !self.layers.is_empty() {
                    return self.broken("CREATE2 on a live circuit");
                }
                match self.add_layer(relays, guard, c.handshake_type(), c.body()) {
                    Some(reply) => vec![FromClient::Reply(Created2::new(reply).into())],
                    None => self.broken("the guard's handshake failed"),
                }
            }
            AnyChanMsg::Relay(r) => self.relay_cell(relays, r.into_relay_body(), false),
            AnyChanMsg::RelayEarly(r) => self.relay_cell(relays, r.into_relay_body(), true),
            AnyChanMsg::Destroy(d) => {
                self.closed = true;
                // tor-spec §5.4: the DESTROY goes on.
                if self.reaches_exit() {
                    vec![FromClient::ToExit(Destroy::new(d.reason()).into())]
                } else {
                    Vec::new()
                }
            }
            _ => self.broken("not a circuit cell"),
        }
    }

    /// Close on a protocol error of the client.
    fn broken(&mut self, why: &'static str) -> Vec<FromClient> {
        let mut out = vec![FromClient::Broken(why)];
        if self.reaches_exit() {
            out.push(FromClient::ToExit(
                Destroy::new(DestroyReason::PROTOCOL).into(),
            ));
        }
        self.closed = true;
        out
    }

    /// Relay `relay` answers an onionskin and adds its layer.
    fn add_layer(
        &mut self,
        relays: &SimRelays,
        relay: usize,
        htype: tor_cell::chancell::msg::HandshakeType,
        skin: &[u8],
    ) -> Option<Vec<u8>> {
        let answered = relays.answer(relay, htype, skin, false, &mut self.rng)?;
        self.layers.push(Layer {
            relay,
            crypto: RelayHop::new(&answered.keys),
        });
        Some(answered.reply)
    }

    /// An outbound relay cell: peel the layers; a cell neither relay
    /// recognizes goes on to the exit, as RELAY or RELAY_EARLY as it came.
    fn relay_cell(
        &mut self,
        relays: &SimRelays,
        mut body: Box<RelayCellBody>,
        early: bool,
    ) -> Vec<FromClient> {
        let mut found = None;
        for (i, l) in self.layers.iter_mut().enumerate() {
            if l.crypto.decrypt_outbound(&mut body).is_some() {
                found = Some(i);
                break;
            }
        }
        let Some(hop) = found else {
            if self.beyond != Beyond::Open {
                return self.broken("a relay cell no hop recognized");
            }
            let relay = Relay::from_raw(*body);
            let cell = if early {
                relay.into_early()
            } else {
                relay.into()
            };
            return vec![FromClient::ToExit(cell)];
        };
        let Ok(outer) = AnyRelayMsgOuter::decode_singleton(RelayCellFormat::V0, body) else {
            return self.broken("a relay cell tor-cell cannot parse");
        };
        let (_, msg) = outer.into_streamid_and_msg();
        let last = hop + 1 == self.layers.len();
        let AnyRelayMsg::Extend2(e) = msg else {
            return self.broken("a relay in front of the exit recognized a cell");
        };
        if !last || self.beyond != Beyond::Nothing {
            return self.broken("EXTEND2 at a hop that is extended");
        }
        let mut rsa = None;
        for ls in e.linkspecs() {
            if let Ok(LinkSpec::RsaId(r)) = ls.parse() {
                rsa = Some(r);
            }
        }
        let Some(next) = rsa.and_then(|r| relays.find(&r)) else {
            return self.broken("EXTEND2 to no known relay");
        };
        if self.black_hole == Some(next) {
            return Vec::new();
        }
        if self.layers.len() < FRONT_HOPS {
            // The guard extends to the middle: both are simulated.
            if next == self.exit_relay {
                return self.broken("a circuit shorter than guard, middle, exit");
            }
            return match self.add_layer(relays, next, e.handshake_type(), e.handshake()) {
                Some(reply) => {
                    let cell = self.originate(hop, None, Extended2::new(reply).into());
                    vec![FromClient::Reply(cell)]
                }
                None => self.broken("the middle's handshake failed"),
            };
        }
        if next != self.exit_relay {
            return self.broken("the middle extends to a relay that is not the exit");
        }
        self.beyond = Beyond::Extending;
        let create = Create2::new(e.handshake_type(), e.handshake().to_vec());
        vec![FromClient::ToExit(create.into())]
    }

    /// A cell from the exit on the middle's channel; what goes on to the
    /// client, if anything.
    pub fn from_exit(&mut self, cell: AnyChanMsg) -> Option<AnyChanMsg> {
        if matches!(cell, AnyChanMsg::Destroy(_)) {
            self.exit_destroys += 1;
        }
        if self.closed {
            return None;
        }
        match (self.beyond, cell) {
            (Beyond::Extending, AnyChanMsg::Created2(c)) => {
                self.beyond = Beyond::Open;
                let hop = self.layers.len().saturating_sub(1);
                Some(self.originate(hop, None, Extended2::new(c.into_body()).into()))
            }
            (Beyond::Open, AnyChanMsg::Relay(r)) => {
                let mut body = r.into_relay_body();
                for l in self.layers.iter_mut().rev() {
                    l.crypto.encrypt_inbound(&mut body);
                }
                Some(Relay::from_raw(*body).into())
            }
            (_, AnyChanMsg::Destroy(_)) => {
                // As braid-core's and C-tor's middles: the client hears
                // DESTROYED, and the circuit is gone here too.
                self.closed = true;
                Some(Destroy::new(DestroyReason::DESTROYED).into())
            }
            _ => {
                self.closed = true;
                Some(Destroy::new(DestroyReason::PROTOCOL).into())
            }
        }
    }

    /// The middle's channel to the exit closed: the client hears
    /// CHANNEL_CLOSED (tor-spec §5.4).
    pub fn exit_gone(&mut self) -> Option<AnyChanMsg> {
        if self.closed {
            return None;
        }
        self.closed = true;
        Some(Destroy::new(DestroyReason::CHANNEL_CLOSED).into())
    }

    /// Hop `hop` (0 guard, 1 middle) originates `msg` towards the client
    /// (how tests play a hostile relay).
    pub fn originate(
        &mut self,
        hop: usize,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
    ) -> AnyChanMsg {
        let sid = CellStreamId::new(stream.map_or(0, StreamId::get));
        let Ok(mut body) =
            AnyRelayMsgOuter::new(sid, msg).encode(RelayCellFormat::V0, &mut self.rng)
        else {
            return Destroy::new(DestroyReason::INTERNAL).into();
        };
        let Some(l) = self.layers.get_mut(hop) else {
            return Destroy::new(DestroyReason::INTERNAL).into();
        };
        l.crypto.originate_inbound(&mut body);
        for l in self.layers.iter_mut().take(hop).rev() {
            l.crypto.encrypt_inbound(&mut body);
        }
        Relay::from_raw(*body).into()
    }

    /// The relay at hop `hop`.
    pub fn relay(&self, hop: usize) -> Option<usize> {
        self.layers.get(hop).map(|l| l.relay)
    }
}
