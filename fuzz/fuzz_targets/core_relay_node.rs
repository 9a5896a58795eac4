//! A relay's node (`braid_core::relay::RelayNode`) in the exit role, fed
//! by three peers at once: a real client circuit (braid-core's
//! `ClientCircuit`, building through the node with ntor-v3 and congestion
//! control, so its relay cells pass the node's crypto and reach the exit
//! streams) sending BEGIN, RESOLVE, BEGIN_DIR, DATA, END, SENDME, XON,
//! XOFF on a few stream ids; arbitrary cells decoded from fuzz bytes by
//! the link codec on a client channel and on a relay's channel (CREATE_FAST,
//! CREATE2 with any body, RELAY with any body, DESTROY, ...); the driver's
//! answers to exit requests (connected, refuse, resolved, reads, writes,
//! closes), extensions answered or failed, channels closed, time and
//! timers.
//!
//! Invariants: no panic; circuits and streams within the node's limits;
//! every channel's writer drains in a bounded number of cells; the
//! earliest deadline is never in the past after `handle_timeout`; after
//! every channel closes, nothing is left.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use braid_core::cc::CcParams;
use braid_core::channel::CellCodec;
use braid_core::circuit::{CircParams, ClientCircuit, HopTarget};
use braid_core::crypto::ntor::NtorSecretKey;
use braid_core::crypto::ntor_v3::NtorV3SecretKey;
use braid_core::exit::{ExitConfig, ExitEvent};
use braid_core::conflux::{ConfluxNonce, LinkInfo, V1DesiredUx};
use braid_core::ids::{ChanKey, CircId, EdgeKey, HopNum, StreamId};
use braid_core::relay::node::{MAX_CIRCUITS, MAX_CIRCUITS_PER_CHANNEL};
use braid_core::relay::{ConfluxExitConfig, NodeEvent, OnionKeys, Peer, RelayNode};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::ChanCell;
use tor_cell::relaycell::msg::{
    AnyRelayMsg, Begin, BeginDir, ConfluxLink, ConfluxLinkedAck, ConfluxSwitch, Data, End,
    EndReason, Resolve, Sendme,
};
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

/// The fuzz input, read front to back; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// Most cells one channel may hold for its writer after any step: the
/// node's per-circuit queues are bounded, and the fuzz input makes few
/// circuits.
const DRAIN_BOUND: usize = 200_000;

const CLIENT_CIRC: u32 = 0x8000_0001;

fn client_msg(inp: &mut Input<'_>) -> Option<AnyRelayMsg> {
    Some(match inp.u8() % 12 {
        0 => {
            let host = ["example.com", "192.0.2.5", "x.onion", "[::1]"][usize::from(inp.u8() % 4)];
            AnyRelayMsg::Begin(Begin::new(host, inp.u16(), u32::from(inp.u8() & 7)).ok()?)
        }
        1 => AnyRelayMsg::Resolve(Resolve::new("example.com")),
        2 => AnyRelayMsg::BeginDir(BeginDir::default()),
        3 | 4 => {
            let n = usize::from(inp.u16() % 499).max(1);
            AnyRelayMsg::Data(Data::new(&vec![inp.u8(); n]).ok()?)
        }
        5 => AnyRelayMsg::End(End::new_with_reason(EndReason::from(inp.u8()))),
        6 => AnyRelayMsg::Sendme(Sendme::new_empty()),
        7 => AnyRelayMsg::Xoff(tor_cell::relaycell::flow_ctrl::Xoff::new(
            tor_cell::relaycell::flow_ctrl::FlowCtrlVersion::V0,
        )),
        // Conflux (prop 329): LINK with one of two nonces, LINKED_ACK,
        // SWITCH.
        9 => {
            let info = LinkInfo {
                nonce: ConfluxNonce::from_bytes([inp.u8() & 1; 32]),
                last_seqno_sent: u64::from(inp.u16()),
                last_seqno_recv: u64::from(inp.u8()),
                desired_ux: V1DesiredUx::from(inp.u8() % 5),
            };
            AnyRelayMsg::ConfluxLink(ConfluxLink::new(info.to_payload().ok()?))
        }
        10 => AnyRelayMsg::ConfluxLinkedAck(ConfluxLinkedAck::default()),
        11 => AnyRelayMsg::ConfluxSwitch(ConfluxSwitch::new(u32::from(inp.u16()))),
        _ => AnyRelayMsg::Begin(Begin::new("example.com", 443, 0).ok()?),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let mut rng = StdRng::seed_from_u64(7);
    let t0 = Instant::now();
    let mut now = t0;
    let secret = StaticSecret::from([9; 32]);
    let id = RsaIdentity::from([1; 20]);
    let ed = Ed25519Identity::new([2; 32]);
    let ntor = NtorSecretKey::new(id, secret.clone());
    let target = HopTarget {
        rsa_id: id,
        ed_id: ed,
        ntor_onion_key: ntor.public.onion_key,
        addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 9001)),
        ntor_v3: true,
        request_cc: true,
    };
    let keys = OnionKeys {
        ntor: vec![ntor],
        ntor_v3: vec![NtorV3SecretKey::new(ed, secret)],
    };
    let mut node = RelayNode::new(id, keys, CcParams::default(), &mut rng);
    node.set_exit(Some(ExitConfig {
        max_streams: 4,
        ..ExitConfig::default()
    }));
    node.set_conflux(Some(ConfluxExitConfig::default()));
    let client_chan = node.add_channel(Peer::Client, false, now);
    let raw_client = node.add_channel(Peer::Client, false, now);
    let relay = node.add_channel(
        Peer::Relay {
            rsa: RsaIdentity::from([3; 20]),
            ed: Some(Ed25519Identity::new([4; 32])),
        },
        false,
        now,
    );
    let mut chans: Vec<ChanKey> = vec![client_chan, raw_client, relay];
    let mut client = ClientCircuit::new(
        CircId::new(CLIENT_CIRC).expect("id"),
        target,
        CircParams::default(),
        &mut rng,
        now,
    )
    .ok();
    let mut exits: Vec<(EdgeKey, ExitEvent)> = Vec::new();
    let mut connects = Vec::new();
    let mut buf = vec![0_u8; 4096];

    while !inp.0.is_empty() {
        let op = inp.u8();
        match op % 10 {
            0 | 1 => {
                // The client circuit speaks.
                if let (Some(c), Some(msg)) = (client.as_mut(), client_msg(&mut inp)) {
                    let sid = StreamId::new(1 + u16::from(op >> 4 & 3));
                    let sid = if matches!(msg, AnyRelayMsg::Sendme(_)) && op & 0x80 != 0 {
                        None
                    } else {
                        sid
                    };
                    let _ = c.send_relay(HopNum(0), sid, msg, now);
                }
            }
            2 | 3 => {
                // A raw cell on the raw client channel or the relay's.
                let chan = if op & 0x10 != 0 { relay } else { raw_client };
                let mut codec = CellCodec::new();
                let _ = codec.set_link_version(5);
                let n = usize::from(inp.u16() % 600);
                let _ = codec.handle_bytes(inp.bytes(n));
                while let Ok(Some(cell)) = codec.poll_cell() {
                    if node.handle_cell(chan, cell, now).is_err() {
                        node.channel_closed(chan, now);
                        chans.retain(|c| *c != chan);
                        break;
                    }
                }
            }
            4 => {
                // The driver answers the oldest exit request.
                if exits.is_empty() {
                    continue;
                }
                let (circ, ev) = exits.remove(0);
                let how = inp.u8();
                let _ = node.exit(circ, now, |m| match ev {
                    ExitEvent::Connect { id, .. } => {
                        if how & 1 == 0 {
                            let _ = m.connected(id, IpAddr::from([192, 0, 2, 9]), 60, now);
                        } else {
                            let _ = m.refuse(id, EndReason::CONNECTREFUSED, now);
                        }
                    }
                    ExitEvent::Resolve { id, .. } => {
                        let _ = m.resolved(id, &[], now);
                    }
                    ExitEvent::Readable { id } => {
                        let _ = m.read(id, &mut buf, now);
                    }
                    ExitEvent::DirStream { id } | ExitEvent::Writable { id } => {
                        let n = usize::from(how) * 300;
                        let _ = m.write(id, &vec![how; n], now);
                        if how & 0x80 != 0 {
                            let _ = m.shutdown_write(id, now);
                        }
                    }
                    // A migrated stream (Braid proposal 001 §4): the
                    // driver only re-keys its socket; nothing to answer.
                    ExitEvent::Closed { .. } | ExitEvent::Moved { .. } => {}
                });
            }
            5 => {
                // Extensions: answer or fail the oldest.
                if !connects.is_empty() {
                    let cid = connects.remove(0);
                    if op & 0x10 != 0 {
                        node.connect_failed(cid, now);
                    } else {
                        let peer = Peer::Relay {
                            rsa: RsaIdentity::from([inp.u8(); 20]),
                            ed: None,
                        };
                        let c = node.add_channel(peer, true, now);
                        chans.push(c);
                        node.connect_done(cid, c, now);
                    }
                }
            }
            6 => {
                now += Duration::from_millis(u64::from(inp.u16()) * 10);
                node.handle_timeout(now);
                if let Some(t) = node.poll_timeout() {
                    assert!(t > now, "a deadline left in the past");
                }
            }
            7 => {
                // A channel closes (not the client circuit's, mostly).
                if op & 0x80 != 0 && chans.len() > 1 {
                    let i = usize::from(inp.u8()) % chans.len();
                    let c = chans.remove(i);
                    node.channel_closed(c, now);
                    if c == client_chan {
                        client = None;
                    }
                }
            }
            _ => {}
        }
        // Move cells: the client's to the node, the node's out.
        if let Some(c) = client.as_mut() {
            while let Some(msg) = c.poll_transmit() {
                let cell = ChanCell::new(tor_cell::chancell::CircId::new(CLIENT_CIRC), msg);
                if node.handle_cell(client_chan, cell, now).is_err() {
                    break;
                }
            }
        }
        while let Some(ev) = node.poll_event() {
            match ev {
                NodeEvent::Exit { edge, event } => {
                    if exits.len() < 64 {
                        exits.push((edge, event));
                    }
                }
                NodeEvent::Connect { id, .. } => connects.push(id),
                NodeEvent::CloseChannel { .. } => {}
            }
        }
        while node.poll_ready().is_some() {}
        for &chan in &chans {
            let mut n = 0;
            while let Some(cell) = node.poll_transmit(chan, now) {
                n += 1;
                assert!(n < DRAIN_BOUND, "channel {chan:?} never drains");
                if chan == client_chan {
                    if let Some(c) = client.as_mut() {
                        let (_, msg) = cell.into_circid_and_msg();
                        let _ = c.handle_cell(now, msg);
                    }
                }
            }
        }
        if let Some(c) = client.as_mut() {
            while c.poll_event().is_some() {}
        }
        assert!(node.circuit_count() <= MAX_CIRCUITS);
        assert!(node.circuit_count() <= chans.len() * MAX_CIRCUITS_PER_CHANNEL + 16);
        assert!(node.exit_stream_count() <= node.circuit_count() * 4 + 4);
    }
    for c in chans {
        node.channel_closed(c, now);
    }
    while node.poll_event().is_some() {}
    assert_eq!(
        node.circuit_count(),
        0,
        "circuits left after every channel closed"
    );
    assert_eq!(node.poll_timeout(), None);
});
