//! A mock network of relays for the circuit tests: it answers CREATE2 and
//! EXTEND2 with the crypto module's relay side, peels and adds onion layers
//! with [`RelayHop`], echoes DATA, answers BEGIN, and runs the relay side
//! of circuit SENDMEs, checking the client's v1 tags.
//!
//! Relay cells are framed and parsed here with tor-cell's own codec, not
//! with [`super::relay_cell`], so that the two check each other.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test support"
)]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, Created2, Destroy, DestroyReason, HandshakeType, Relay};
use tor_cell::relaycell::msg::{AnyRelayMsg, Connected, Data, Extended2, Sendme};
use tor_cell::relaycell::{
    AnyRelayMsgOuter, RelayCellFormat, RelayCmd, RelayMsg as _, StreamId as CellStreamId,
};
use tor_linkspec::LinkSpec;
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use super::build::HopTarget;
use super::client::ClientCircuit;
use crate::cc::{DeliverWindow, SendmeTag as CcTag};
use crate::crypto::extensions;
use crate::crypto::ntor::{self, NtorSecretKey};
use crate::crypto::ntor_v3::{self, NtorV3SecretKey};
use crate::crypto::{CELL_BODY_LEN, RelayCellBody, RelayHop, SendmeTag, Tor1Keys};

/// One relay of the mock network.
#[derive(Debug)]
pub struct MockRelay {
    /// Its ntor key (RSA identity).
    ntor: NtorSecretKey,
    /// The same onion key for ntor-v3 (Ed25519 identity).
    ntor_v3: NtorV3SecretKey,
    /// It speaks ntor-v3 (Relay=4).
    pub speaks_v3: bool,
    /// The `sendme_inc` it answers a congestion control request with, if
    /// it accepts congestion control.
    pub cc_answer: Option<u8>,
    /// Answer a congestion control answer even when not asked.
    pub cc_unasked: bool,
}

impl MockRelay {
    /// Relay number `i`.
    fn new(i: u8, speaks_v3: bool, cc_answer: Option<u8>) -> Self {
        let secret = StaticSecret::from([i.wrapping_mul(7).wrapping_add(1); 32]);
        Self {
            ntor: NtorSecretKey::new(RsaIdentity::from([i + 1; 20]), secret.clone()),
            ntor_v3: NtorV3SecretKey::new(Ed25519Identity::new([i + 100; 32]), secret),
            speaks_v3,
            cc_answer,
            cc_unasked: false,
        }
    }

    /// How the client sees it.
    pub fn target(&self, i: u8) -> HopTarget {
        HopTarget {
            rsa_id: self.ntor.public.id,
            ed_id: self.ntor_v3.public.id,
            ntor_onion_key: self.ntor.public.onion_key,
            addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, i + 1), 9001)),
            ntor_v3: self.speaks_v3,
            request_cc: true,
        }
    }
}

/// The relay side of one hop of the circuit under test.
#[derive(Debug)]
pub struct MockHop {
    /// Which relay.
    pub relay: usize,
    /// Its relay crypto.
    pub crypto: RelayHop,
    /// Negotiated `sendme_inc`, if congestion control.
    pub cc: Option<u8>,
    /// Its deliver window for the client's DATA.
    pub deliver: DeliverWindow,
    /// DATA cells it sent towards the client.
    pub data_sent: u64,
    /// Tags of its DATA cells that expect a SENDME, oldest first.
    pub expected: VecDeque<CcTag>,
    /// Circuit SENDMEs from the client: (cell count when received, tag
    /// matched).
    pub sendmes: Vec<(u64, bool)>,
    /// DATA cells received from the client.
    pub data_received: u64,
    /// The relay-side SENDME tag of every DATA cell received, in order.
    pub data_tags: Vec<CcTag>,
}

/// The mock network.
#[derive(Debug)]
pub struct MockNet {
    /// Randomness for handshakes and padding.
    rng: StdRng,
    /// The relays.
    pub relays: Vec<MockRelay>,
    /// The circuit's hops as built so far.
    pub hops: Vec<MockHop>,
    /// Echo DATA back from the hop that received it.
    pub echo: bool,
    /// Send circuit SENDMEs for the client's DATA.
    pub auto_sendme: bool,
    /// Answer BEGIN with CONNECTED.
    pub answer_begin: bool,
    /// Flip a byte of the next handshake reply.
    pub tamper_reply: bool,
    /// Messages recognized at a hop: (hop, stream id or 0, message).
    pub log: Vec<(usize, u16, AnyRelayMsg)>,
    /// Commands of the RELAY_EARLY cells seen, with their hop.
    pub early: Vec<(usize, RelayCmd)>,
    /// Relay cells no hop recognized.
    pub unrecognized: usize,
    /// An EXTEND2 arrived in a plain RELAY cell.
    pub extend_not_early: usize,
    /// DESTROY cells received.
    pub destroys: usize,
}

impl MockNet {
    /// Relays with the given capabilities: (speaks ntor-v3, CC answer).
    pub fn new(relays: &[(bool, Option<u8>)], seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            relays: relays
                .iter()
                .zip(0_u8..)
                .map(|(&(v3, cc), i)| MockRelay::new(i, v3, cc))
                .collect(),
            hops: Vec::new(),
            echo: true,
            auto_sendme: true,
            answer_begin: true,
            tamper_reply: false,
            log: Vec::new(),
            early: Vec::new(),
            unrecognized: 0,
            extend_not_early: 0,
            destroys: 0,
        }
    }

    /// Three relays: two ntor-only middles and an ntor-v3 exit with
    /// congestion control (`sendme_inc` 31).
    pub fn three_hops() -> Self {
        Self::new(&[(false, None), (false, None), (true, Some(31))], 1)
    }

    /// How the client sees relay `i`.
    pub fn target(&self, i: usize) -> HopTarget {
        self.relays[i].target(u8::try_from(i).unwrap())
    }

    /// A cell from the client; returns the cells sent back.
    pub fn deliver(&mut self, cell: AnyChanMsg) -> Vec<AnyChanMsg> {
        match cell {
            AnyChanMsg::Create2(c) => {
                assert!(self.hops.is_empty(), "CREATE2 on a live circuit");
                match self.handshake(0, c.handshake_type(), c.body()) {
                    Some(reply) => vec![AnyChanMsg::Created2(Created2::new(reply))],
                    None => vec![AnyChanMsg::Destroy(Destroy::new(DestroyReason::PROTOCOL))],
                }
            }
            AnyChanMsg::Relay(r) => self.relay_cell(r.into_relay_body(), false),
            AnyChanMsg::RelayEarly(r) => self.relay_cell(r.into_relay_body(), true),
            AnyChanMsg::Destroy(_) => {
                self.destroys += 1;
                vec![]
            }
            other => panic!("unexpected cell from the client: {other:?}"),
        }
    }

    /// Run the relay side of a handshake at relay `relay`, adding the hop;
    /// `None` if the handshake fails.
    pub fn handshake(
        &mut self,
        relay: usize,
        htype: HandshakeType,
        skin: &[u8],
    ) -> Option<Vec<u8>> {
        let r = &self.relays[relay];
        let (reply, keygen, cc) = if htype == HandshakeType::NTOR {
            let (kg, reply) =
                ntor::server_handshake(&mut self.rng, std::slice::from_ref(&r.ntor), skin).ok()?;
            (reply.to_vec(), kg, None)
        } else if htype == HandshakeType::NTOR_V3 && r.speaks_v3 {
            let mut cc = None;
            let (answer, unasked) = (r.cc_answer, r.cc_unasked);
            let (reply, kg) = ntor_v3::server_handshake_for_circuit(
                &mut self.rng,
                std::slice::from_ref(&r.ntor_v3),
                skin,
                |exts| {
                    let asked = extensions::requests_cc(exts);
                    Some(match answer {
                        Some(inc) if asked || unasked => {
                            cc = Some(inc);
                            vec![extensions::cc_response(inc)]
                        }
                        _ => vec![],
                    })
                },
            )
            .ok()?;
            (reply, kg, cc)
        } else {
            return None;
        };
        let keys = Tor1Keys::derive(keygen).unwrap();
        self.hops.push(MockHop {
            relay,
            crypto: RelayHop::new(&keys),
            cc,
            deliver: cc.map_or_else(DeliverWindow::circuit, DeliverWindow::circuit_cc),
            data_sent: 0,
            expected: VecDeque::new(),
            sendmes: Vec::new(),
            data_received: 0,
            data_tags: Vec::new(),
        });
        let mut reply = reply;
        if self.tamper_reply {
            self.tamper_reply = false;
            let last = reply.len() - 1;
            reply[last] ^= 1;
        }
        Some(reply)
    }

    /// An outbound relay cell: peel layers until a hop recognizes it.
    fn relay_cell(&mut self, mut body: Box<RelayCellBody>, early: bool) -> Vec<AnyChanMsg> {
        let mut found = None;
        for (i, h) in self.hops.iter_mut().enumerate() {
            if let Some(tag) = h.crypto.decrypt_outbound(&mut body) {
                found = Some((i, tag));
                break;
            }
        }
        let Some((hop, tag)) = found else {
            self.unrecognized += 1;
            return vec![AnyChanMsg::Destroy(Destroy::new(DestroyReason::PROTOCOL))];
        };
        let outer = AnyRelayMsgOuter::decode_singleton(RelayCellFormat::V0, body)
            .expect("the client framed a cell tor-cell cannot parse");
        let (stream, msg) = outer.into_streamid_and_msg();
        let stream = stream.map_or(0, u16::from);
        if early {
            self.early.push((hop, msg.cmd()));
        }
        self.log.push((hop, stream, msg.clone()));
        let mut out = Vec::new();
        match msg {
            AnyRelayMsg::Data(d) => {
                let h = &mut self.hops[hop];
                h.data_received += 1;
                h.data_tags.push(CcTag::from(*tag.as_bytes()));
                h.deliver
                    .on_data_received()
                    .expect("client overran the deliver window");
                if h.deliver.take_sendme() && self.auto_sendme {
                    let t = CcTag::from(*tag.as_bytes());
                    out.push(self.originate(hop, 0, Sendme::from(t).into()));
                }
                if self.echo {
                    let data: Vec<u8> = d.into();
                    out.push(self.originate(hop, stream, Data::new(&data).unwrap().into()));
                }
            }
            AnyRelayMsg::Begin(_) if self.answer_begin => {
                out.push(self.originate(hop, stream, Connected::new_empty().into()));
            }
            AnyRelayMsg::Sendme(s) if stream == 0 => {
                let h = &mut self.hops[hop];
                let expected = h.expected.pop_front();
                let got = s.into_sendme_tag();
                let ok = expected.is_some() && expected == got;
                h.sendmes.push((h.data_sent, ok));
            }
            AnyRelayMsg::Extend2(e) => {
                assert_eq!(hop + 1, self.hops.len(), "EXTEND2 not to the last hop");
                if !early {
                    self.extend_not_early += 1;
                }
                let mut rsa = None;
                let mut ed = None;
                for ls in e.linkspecs() {
                    match ls.parse().unwrap() {
                        LinkSpec::RsaId(r) => rsa = Some(r),
                        LinkSpec::Ed25519Id(x) => ed = Some(x),
                        _ => {}
                    }
                }
                let target = self
                    .relays
                    .iter()
                    .position(|r| Some(r.ntor.public.id) == rsa && Some(r.ntor_v3.public.id) == ed)
                    .expect("EXTEND2 to an unknown relay");
                match self.handshake(target, e.handshake_type(), e.handshake()) {
                    Some(reply) => {
                        out.push(self.originate(hop, 0, Extended2::new(reply).into()));
                    }
                    None => out.push(AnyChanMsg::Destroy(Destroy::new(DestroyReason::PROTOCOL))),
                }
            }
            _ => {}
        }
        out
    }

    /// A relay cell that hop `hop` sends towards the client (stream 0 for
    /// circuit-level). DATA cells count towards its expected SENDMEs.
    pub fn originate(&mut self, hop: usize, stream: u16, msg: AnyRelayMsg) -> AnyChanMsg {
        let is_data = msg.cmd() == RelayCmd::DATA;
        let mut body = AnyRelayMsgOuter::new(CellStreamId::new(stream), msg)
            .encode(RelayCellFormat::V0, &mut self.rng)
            .unwrap();
        let tag = self.originate_body(hop, &mut body);
        if is_data {
            let h = &mut self.hops[hop];
            h.data_sent += 1;
            let inc = h.cc.map_or(100, u64::from);
            if h.data_sent.is_multiple_of(inc) {
                h.expected.push_back(CcTag::from(*tag.as_bytes()));
            }
        }
        AnyChanMsg::Relay(Relay::from_raw(*body))
    }

    /// Add the layers for a body that hop `hop` originates.
    pub fn originate_body(&mut self, hop: usize, body: &mut RelayCellBody) -> SendmeTag {
        let tag = self.hops[hop].crypto.originate_inbound(body);
        for h in self.hops[..hop].iter_mut().rev() {
            h.crypto.encrypt_inbound(body);
        }
        tag
    }

    /// A random inbound cell that no hop originated.
    pub fn garbage(&mut self) -> AnyChanMsg {
        let mut body = [0_u8; CELL_BODY_LEN];
        rand::Rng::fill_bytes(&mut self.rng, &mut body);
        AnyChanMsg::Relay(Relay::from_raw(body))
    }
}

/// Move cells both ways until nothing moves. Returns the first error
/// `handle_cell` gave, if any.
pub fn pump(
    circ: &mut ClientCircuit,
    net: &mut MockNet,
    now: Instant,
) -> Result<(), super::error::CircError> {
    let mut first_err = Ok(());
    loop {
        let mut moved = false;
        while let Some(cell) = circ.poll_transmit() {
            moved = true;
            for reply in net.deliver(cell) {
                if let Err(e) = circ.handle_cell(now, reply)
                    && first_err.is_ok()
                {
                    first_err = Err(e);
                }
            }
        }
        if !moved {
            return first_err;
        }
    }
}

/// A client circuit through relays `path` of `net`, built and with its
/// events drained.
pub fn build(
    net: &mut MockNet,
    path: &[usize],
    params: super::params::CircParams,
    now: Instant,
) -> ClientCircuit {
    let mut seed = StdRng::seed_from_u64(99);
    let circ_id = crate::ids::CircId::new(0x8000_0001).unwrap();
    let mut circ =
        ClientCircuit::new(circ_id, net.target(path[0]), params, &mut seed, now).unwrap();
    for &i in &path[1..] {
        circ.extend(net.target(i), now).unwrap();
    }
    pump(&mut circ, net, now).unwrap();
    assert!(circ.is_built());
    circ
}
