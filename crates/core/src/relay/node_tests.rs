//! Relay nodes wired together in memory, with braid-core's client circuit
//! building through them: channels opened on demand for extensions (and
//! reused), cells routed both ways, DESTROYs and closed channels
//! propagated, a non-exit's answers to BEGIN, CREATE limits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, CreateFast, DestroyReason};
use tor_cell::chancell::{AnyChanCell, ChanCell, CircId as WireId};
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, EndReason};
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use super::*;
use crate::cc::CcParams;
use crate::circuit::{CircEvent, CircParams, ClientCircuit, CloseReason, HopTarget};
use crate::crypto::ntor::NtorSecretKey;
use crate::crypto::ntor_v3::NtorV3SecretKey;
use crate::ids::{ChanKey, CircId, HopNum, StreamId};

/// One end of a link: a node and its channel, or the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Client,
    Node(usize, ChanKey),
}

struct World {
    nodes: Vec<RelayNode>,
    targets: Vec<HopTarget>,
    /// Links between ends.
    links: Vec<(End, End)>,
    /// The client's circuits, on its channel to node 0.
    clients: Vec<ClientCircuit>,
    client_chan: ChanKey,
    rng: StdRng,
    /// Terminal events of the client circuits, by index.
    closed: Vec<Option<CloseReason>>,
    /// Stream messages the client circuits got.
    stream_msgs: Vec<Vec<AnyRelayMsg>>,
    connects: usize,
    /// Exit events by node: (circuit or set, event).
    exit_events: Vec<(usize, crate::ids::EdgeKey, crate::exit::ExitEvent)>,
    /// Every relay message the client circuits got from their last hop
    /// (stream and circuit level), by index.
    msgs: Vec<Vec<(Option<StreamId>, AnyRelayMsg)>>,
    /// Channels (node, channel) whose writer takes nothing: their cells
    /// stay queued at the node (a peer that does not read).
    frozen: Vec<(usize, ChanKey)>,
}

const CLIENT_CIRC: u32 = 0x8000_0001;

impl World {
    fn new(n: u8) -> Self {
        let mut rng = StdRng::seed_from_u64(11);
        let mut nodes = Vec::new();
        let mut targets = Vec::new();
        for i in 0..n {
            let secret = StaticSecret::from([i.wrapping_mul(29).wrapping_add(5); 32]);
            let id = RsaIdentity::from([i + 1; 20]);
            let ed = Ed25519Identity::new([i + 90; 32]);
            let ntor = NtorSecretKey::new(id, secret.clone());
            targets.push(HopTarget {
                rsa_id: id,
                ed_id: ed,
                ntor_onion_key: ntor.public.onion_key,
                addr: SocketAddr::from((Ipv4Addr::new(10, 0, 1, i + 1), 9001)),
                ntor_v3: true,
                request_cc: false,
            });
            let keys = OnionKeys {
                ntor: vec![ntor],
                ntor_v3: vec![NtorV3SecretKey::new(ed, secret)],
            };
            nodes.push(RelayNode::new(id, keys, CcParams::default(), &mut rng));
        }
        let client_chan = nodes[0].add_channel(Peer::Client, false, Instant::now());
        World {
            nodes,
            targets,
            links: vec![(End::Client, End::Node(0, client_chan))],
            clients: Vec::new(),
            client_chan,
            rng,
            closed: Vec::new(),
            stream_msgs: Vec::new(),
            connects: 0,
            exit_events: Vec::new(),
            msgs: Vec::new(),
            frozen: Vec::new(),
        }
    }

    /// A client circuit through nodes `path` (the first is node 0).
    fn circuit(&mut self, path: &[usize], now: Instant) -> usize {
        assert_eq!(path[0], 0);
        let n = self.clients.len();
        let mut t = self.targets.clone();
        let last = *path.last().unwrap();
        t[last].request_cc = true;
        let mut c = ClientCircuit::new(
            CircId::new(CLIENT_CIRC + u32::try_from(n).unwrap()).unwrap(),
            t[path[0]].clone(),
            CircParams::default(),
            &mut self.rng,
            now,
        )
        .unwrap();
        for &i in &path[1..] {
            c.extend(t[i].clone(), now).unwrap();
        }
        self.clients.push(c);
        self.closed.push(None);
        self.stream_msgs.push(Vec::new());
        self.msgs.push(Vec::new());
        n
    }

    fn other(&self, end: End) -> Option<End> {
        self.links.iter().find_map(|(a, b)| {
            if *a == end {
                Some(*b)
            } else if *b == end {
                Some(*a)
            } else {
                None
            }
        })
    }

    fn to(&mut self, end: End, cell: AnyChanCell, now: Instant) {
        match end {
            End::Client => {
                let (id, msg) = cell.into_circid_and_msg();
                // Channel-level cells (PADDING) are for no circuit.
                let Some(n) = WireId::get_or_zero(id).checked_sub(CLIENT_CIRC) else {
                    return;
                };
                let n = n as usize;
                let _ = self.clients[n].handle_cell(now, msg);
            }
            End::Node(i, chan) => {
                self.nodes[i].handle_cell(chan, cell, now).unwrap();
            }
        }
    }

    fn pump(&mut self, now: Instant) {
        for _ in 0..100_000 {
            let mut moved = false;
            for n in 0..self.clients.len() {
                while let Some(msg) = self.clients[n].poll_transmit() {
                    moved = true;
                    let id = WireId::new(CLIENT_CIRC + u32::try_from(n).unwrap());
                    let chan = self.client_chan;
                    self.nodes[0]
                        .handle_cell(chan, ChanCell::new(id, msg), now)
                        .unwrap();
                }
            }
            for i in 0..self.nodes.len() {
                while let Some(ev) = self.nodes[i].poll_event() {
                    moved = true;
                    if let NodeEvent::Exit { edge, event } = ev {
                        self.exit_events.push((i, edge, event));
                        continue;
                    }
                    if let NodeEvent::Connect { id, rsa, .. } = ev {
                        self.connects += 1;
                        let j = self.targets.iter().position(|t| t.rsa_id == rsa).unwrap();
                        let peer_j = Peer::Relay {
                            rsa,
                            ed: Some(self.targets[j].ed_id),
                        };
                        let peer_i = Peer::Relay {
                            rsa: self.targets[i].rsa_id,
                            ed: Some(self.targets[i].ed_id),
                        };
                        let ci = self.nodes[i].add_channel(peer_j, true, now);
                        let cj = self.nodes[j].add_channel(peer_i, false, now);
                        self.links.push((End::Node(i, ci), End::Node(j, cj)));
                        self.nodes[i].connect_done(id, ci, now);
                    }
                }
                let chans: Vec<ChanKey> = self
                    .links
                    .iter()
                    .flat_map(|(a, b)| [*a, *b])
                    .filter_map(|e| match e {
                        End::Node(k, c) if k == i => Some(c),
                        _ => None,
                    })
                    .collect();
                for chan in chans {
                    if self.frozen.contains(&(i, chan)) {
                        continue;
                    }
                    while let Some(cell) = self.nodes[i].poll_transmit(chan, now) {
                        moved = true;
                        let to = self.other(End::Node(i, chan)).unwrap();
                        self.to(to, cell, now);
                    }
                }
            }
            for n in 0..self.clients.len() {
                while let Some(ev) = self.clients[n].poll_event() {
                    match ev {
                        CircEvent::Closed { reason } | CircEvent::BuildFailed { reason } => {
                            self.closed[n] = Some(reason);
                        }
                        CircEvent::StreamMsg { msg, stream, .. } => {
                            self.msgs[n].push((Some(stream), msg.clone()));
                            self.stream_msgs[n].push(msg);
                        }
                        CircEvent::CircMsg { msg, .. } => self.msgs[n].push((None, msg)),
                        _ => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("never settled");
    }
}

fn begin() -> AnyRelayMsg {
    crate::stream::Target::hostname("example.com", 80)
        .begin_msg(BeginFlags::empty())
        .unwrap()
        .into()
}

#[test]
fn circuits_build_through_nodes_and_share_channels() {
    let now = Instant::now();
    let mut w = World::new(4);
    let a = w.circuit(&[0, 1, 2], now);
    let b = w.circuit(&[0, 1, 3], now);
    let c = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    for n in [a, b, c] {
        assert!(w.clients[n].is_built(), "{n}: {:?}", w.closed[n]);
    }
    // 0->1 once, 1->2 once (reused by c), 1->3 once.
    assert_eq!(w.connects, 3);
    assert_eq!(w.nodes[1].circuit_count(), 3);
    assert_eq!(w.nodes[1].stats().extends, 3);
    // A non-exit answers BEGIN with END EXITPOLICY (tor-spec §6.2).
    w.clients[a]
        .send_relay(HopNum(2), StreamId::new(3), begin(), now)
        .unwrap();
    w.pump(now);
    assert!(
        matches!(w.stream_msgs[a].as_slice(), [AnyRelayMsg::End(e)] if e.reason() == EndReason::EXITPOLICY),
        "{:?}",
        w.stream_msgs[a]
    );
    // Circuit-level cells flow through the middle both ways.
    for _ in 0..50 {
        w.clients[b]
            .send_relay(
                HopNum(2),
                None,
                tor_cell::relaycell::msg::Drop::default().into(),
                now,
            )
            .unwrap();
    }
    w.pump(now);
    assert!(w.closed.iter().all(Option::is_none), "{:?}", w.closed);
}

#[test]
fn a_destroy_from_the_client_frees_every_hop() {
    let now = Instant::now();
    let mut w = World::new(3);
    let a = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    w.clients[a].close();
    w.pump(now);
    for node in &w.nodes {
        assert_eq!(node.circuit_count(), 0);
    }
}

/// The exit flushes DESTROYs a C-tor middle may hold on the middle's
/// channel (which the middle opened): a DESTROY for one of two circuits
/// on it brings a one-hop CREATE_FAST probe, answered and destroyed; a
/// client's channel gets none.
#[test]
fn a_destroy_on_a_relay_channel_we_did_not_open_is_followed_by_a_probe() {
    let now = Instant::now();
    let mut w = World::new(3);
    let a = w.circuit(&[0, 1, 2], now);
    let _b = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    let End::Node(2, exit_chan) = w.links[2].1 else {
        panic!("{:?}", w.links)
    };
    w.frozen.push((2, exit_chan));
    w.clients[a].close();
    w.pump(now);
    let mut sent = Vec::new();
    while let Some(cell) = w.nodes[2].poll_transmit(exit_chan, now) {
        sent.push(cell);
    }
    let probes: Vec<u32> = sent
        .iter()
        .filter(|c| matches!(c.msg(), AnyChanMsg::CreateFast(_)))
        .map(|c| WireId::get_or_zero(c.circid()))
        .collect();
    assert_eq!(probes.len(), 1, "{sent:?}");
    assert_eq!(probes[0] & 0x8000_0000, 0, "a responder's circuit id");
    // The middle answers it; the exit destroys it; one circuit is left on
    // each relay.
    for cell in sent {
        let to = w.other(End::Node(2, exit_chan)).unwrap();
        w.to(to, cell, now);
    }
    w.frozen.clear();
    w.pump(now);
    assert_eq!(w.nodes[1].circuit_count(), 1);
    assert_eq!(w.nodes[2].circuit_count(), 1);
    // The guard's channel from the client: no probe toward a client.
    let mut w = World::new(3);
    let a = w.circuit(&[0, 1, 2], now);
    let _b = w.circuit(&[0, 1, 2], now);
    w.pump(now);
    let chan = w.client_chan;
    w.clients[a].close();
    w.pump(now);
    assert_eq!(w.clients.len(), 2);
    let mut to_client = Vec::new();
    while let Some(cell) = w.nodes[0].poll_transmit(chan, now) {
        to_client.push(cell);
    }
    assert!(
        !to_client
            .iter()
            .any(|c| matches!(c.msg(), AnyChanMsg::CreateFast(_))),
        "{to_client:?}"
    );
}

/// The guard's channel to the middle dies: the client hears CHANNEL_CLOSED
/// from its guard; a channel dying further on reaches it as DESTROYED (the
/// guard passes a DESTROY from further on so, as C-tor does).
#[test]
fn a_closed_channel_destroys_its_circuits_on_both_sides() {
    let now = Instant::now();
    for (link, heard) in [
        (1, DestroyReason::CHANNEL_CLOSED),
        (2, DestroyReason::DESTROYED),
    ] {
        let mut w = World::new(3);
        let a = w.circuit(&[0, 1, 2], now);
        w.pump(now);
        let (e1, e2) = w.links[link];
        let (End::Node(i, ci), End::Node(j, cj)) = (e1, e2) else {
            panic!("{:?}", w.links)
        };
        w.nodes[i].channel_closed(ci, now);
        w.nodes[j].channel_closed(cj, now);
        w.pump(now);
        assert_eq!(w.closed[a], Some(CloseReason::Destroyed { reason: heard }));
        assert!(w.nodes.iter().all(|n| n.circuit_count() == 0));
    }
}

/// The guard cannot reach the relay the client extends to: the circuit
/// closes with CONNECTFAILED.
#[test]
fn an_extension_to_a_relay_that_cannot_be_reached_fails_cleanly() {
    let now = Instant::now();
    let mut w = World::new(2);
    let a = w.circuit(&[0], now);
    w.pump(now);
    w.clients[a].extend(w.targets[1].clone(), now).unwrap();
    while let Some(msg) = w.clients[a].poll_transmit() {
        let chan = w.client_chan;
        w.nodes[0]
            .handle_cell(chan, ChanCell::new(WireId::new(CLIENT_CIRC), msg), now)
            .unwrap();
    }
    let mut failed = false;
    while let Some(ev) = w.nodes[0].poll_event() {
        if let NodeEvent::Connect { id, .. } = ev {
            w.nodes[0].connect_failed(id, now);
            failed = true;
        }
    }
    assert!(failed);
    w.pump(now);
    assert_eq!(
        w.closed[a],
        Some(CloseReason::Destroyed {
            reason: DestroyReason::CONNECTFAILED
        })
    );
    assert!(w.nodes.iter().all(|n| n.circuit_count() == 0));
}

#[test]
fn create_fast_from_a_client_and_create_limits() {
    let now = Instant::now();
    let mut w = World::new(1);
    let chan = w.client_chan;
    let mut rng = StdRng::seed_from_u64(1);
    // CREATE_FAST from a client: CREATED_FAST back.
    let (_state, x) = crate::crypto::fast::client_handshake(&mut rng);
    w.nodes[0]
        .handle_cell(
            chan,
            ChanCell::new(WireId::new(0x8000_0100), CreateFast::new(x).into()),
            now,
        )
        .unwrap();
    let cell = w.nodes[0].poll_transmit(chan, Instant::now()).unwrap();
    assert!(matches!(cell.msg(), AnyChanMsg::CreatedFast(_)));
    // A circuit id with the wrong high bit (ours as responder) is refused.
    let (_state, x) = crate::crypto::fast::client_handshake(&mut rng);
    w.nodes[0]
        .handle_cell(
            chan,
            ChanCell::new(WireId::new(0x100), CreateFast::new(x).into()),
            now,
        )
        .unwrap();
    let cell = w.nodes[0].poll_transmit(chan, Instant::now()).unwrap();
    assert!(matches!(cell.msg(), AnyChanMsg::Destroy(d) if d.reason() == DestroyReason::PROTOCOL));
    // A flood of CREATE_FAST on one channel stops at the per-channel limit.
    for k in 0..(node::MAX_CIRCUITS_PER_CHANNEL as u32 + 20) {
        let (_s, x) = crate::crypto::fast::client_handshake(&mut rng);
        w.nodes[0]
            .handle_cell(
                chan,
                ChanCell::new(WireId::new(0x8000_1000 + k), CreateFast::new(x).into()),
                now,
            )
            .unwrap();
        while w.nodes[0].poll_transmit(chan, Instant::now()).is_some() {}
    }
    assert_eq!(w.nodes[0].circuit_count(), node::MAX_CIRCUITS_PER_CHANNEL);
    assert!(w.nodes[0].stats().creates_refused >= 20);
}

/// Channel padding (padding-spec §2): the client's channel is padded
/// after 1.5-9.5 s of quiet, not while cells flow, not after
/// PADDING_NEGOTIATE STOP; the channel between two relays is not padded.
#[test]
fn quiet_client_channels_are_padded() {
    use std::time::Duration;
    use tor_cell::chancell::msg::{Padding, PaddingNegotiate};

    let t0 = Instant::now();
    let mut w = World::new(2);
    let n = w.circuit(&[0, 1], t0);
    w.pump(t0);
    assert!(w.closed[n].is_none(), "built");
    let chan = w.client_chan;
    // Step the clock by 100 ms for `secs`, with a cell from the client
    // every `client_every` steps; the times node 0 padded the client's
    // channel, and how many padding cells node 1 sent anywhere.
    let run = |w: &mut World, from: Instant, secs: u64, client_every: Option<u64>| {
        let mut padded = Vec::new();
        for step in 1..=secs * 10 {
            let now = from + Duration::from_millis(100 * step);
            if client_every.is_some_and(|k| step % k == 0) {
                w.nodes[0]
                    .handle_cell(chan, ChanCell::new(None, Padding::new().into()), now)
                    .unwrap();
            }
            for node in &mut w.nodes {
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
            while let Some(cell) = w.nodes[0].poll_transmit(chan, now) {
                if matches!(cell.msg(), AnyChanMsg::Padding(_)) {
                    padded.push(now);
                }
            }
        }
        padded
    };
    let padded = run(&mut w, t0, 40, None);
    assert!(padded.len() >= 4, "{} padding cells in 40 s", padded.len());
    let mut last = t0;
    for t in &padded {
        let gap = t.duration_since(last);
        assert!(
            gap >= Duration::from_millis(1500) && gap <= Duration::from_millis(9600),
            "gap {gap:?}"
        );
        last = *t;
    }
    assert_eq!(w.nodes[0].stats().padding_sent, padded.len() as u64);
    assert_eq!(
        w.nodes[1].stats().padding_sent,
        0,
        "relay channels are not padded"
    );

    // A cell from the client every second: no padding.
    let t1 = t0 + Duration::from_secs(40);
    assert!(run(&mut w, t1, 20, Some(10)).is_empty());

    // PADDING_NEGOTIATE STOP: none; START again: padding resumes.
    let t2 = t1 + Duration::from_secs(20);
    w.nodes[0]
        .handle_cell(
            chan,
            ChanCell::new(None, PaddingNegotiate::stop().into()),
            t2,
        )
        .unwrap();
    assert!(run(&mut w, t2, 30, None).is_empty());
    let t3 = t2 + Duration::from_secs(30);
    w.nodes[0]
        .handle_cell(
            chan,
            ChanCell::new(None, PaddingNegotiate::start_default().into()),
            t3,
        )
        .unwrap();
    assert!(!run(&mut w, t3, 20, None).is_empty());

    // Link protocol 4: none.
    w.nodes[0].set_link_version(chan, 4);
    let t4 = t3 + Duration::from_secs(20);
    assert!(run(&mut w, t4, 20, None).is_empty());
}

/// Channels without circuits close after their idle timeout (C-tor
/// `channelpadding_get_channel_idle_timeout`): the client's after 3 to 4.5
/// minutes, the ones between relays after 45 to 75 minutes; a circuit
/// stops the clock.
#[test]
fn channels_without_circuits_close_after_their_idle_timeout() {
    use std::time::Duration;

    let t0 = Instant::now();
    let mut w = World::new(2);
    let n = w.circuit(&[0, 1], t0);
    w.pump(t0);
    assert!(w.closed[n].is_none(), "built");
    let step = |w: &mut World, now: Instant, closes: &mut Vec<(usize, bool, Duration)>| {
        for i in 0..w.nodes.len() {
            if w.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                w.nodes[i].handle_timeout(now);
            }
            while let Some(ev) = w.nodes[i].poll_event() {
                if let NodeEvent::CloseChannel { chan, why } = ev {
                    assert!(why.contains("idle"), "{why}");
                    closes.push((i, chan == w.client_chan && i == 0, now.duration_since(t0)));
                    w.nodes[i].channel_closed(chan, now);
                }
            }
        }
    };
    // With the circuit open, nothing closes in 80 minutes.
    let mut closes = Vec::new();
    for s in 1..=80 * 60 {
        step(&mut w, t0 + Duration::from_secs(s), &mut closes);
    }
    assert!(closes.is_empty(), "{closes:?}");

    // The client ends its circuit: every channel is idle from then.
    let t1 = t0 + Duration::from_secs(80 * 60);
    w.clients[n].close();
    w.pump(t1);
    for s in 1..=80 * 60 {
        step(&mut w, t1 + Duration::from_secs(s), &mut closes);
    }
    let after = |d: Duration| d - Duration::from_secs(80 * 60);
    let client: Vec<_> = closes.iter().filter(|c| c.1).collect();
    assert_eq!(client.len(), 1, "{closes:?}");
    let d = after(client[0].2);
    assert!(
        d >= Duration::from_secs(180) && d <= Duration::from_secs(271),
        "{d:?}"
    );
    let relays: Vec<_> = closes.iter().filter(|c| !c.1).collect();
    assert_eq!(
        relays.len(),
        2,
        "both ends of the relay channel: {closes:?}"
    );
    for r in relays {
        let d = after(r.2);
        assert!(
            d >= Duration::from_secs(45 * 60) && d <= Duration::from_secs(75 * 60 + 1),
            "{d:?}"
        );
    }
}

/// A node whose channels all closed has nothing to wake for, padding
/// checks and idle timers included (the `core_relay_node` fuzz target
/// found a padding check left behind).
#[test]
fn a_node_without_channels_does_not_wake() {
    let t0 = Instant::now();
    let mut w = World::new(2);
    let n = w.circuit(&[0, 1], t0);
    w.pump(t0);
    assert!(w.closed[n].is_none(), "built");
    for node in &mut w.nodes {
        assert!(node.poll_timeout().is_some(), "padding and idle timers run");
    }
    let links = w.links.clone();
    for (a, b) in links {
        for end in [a, b] {
            if let End::Node(i, chan) = end {
                w.nodes[i].channel_closed(chan, t0);
            }
        }
    }
    for node in &mut w.nodes {
        while node.poll_event().is_some() {}
        assert_eq!(node.circuit_count(), 0);
        assert_eq!(node.poll_timeout(), None);
    }
}

// The exit role, circuit priority and the memory limit.
#[path = "node_exit_tests.rs"]
mod exit_tests;

// The Conflux exit role.
#[path = "node_conflux_tests.rs"]
mod conflux_tests;

// Live stream migration (Braid proposal 001 §4).
#[path = "node_migrate_tests.rs"]
mod migrate_tests;
