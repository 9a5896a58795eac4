//! The exit through a real circuit: braid-core's `ClientCircuit` and
//! `StreamMap` build through relays in memory, each hop an `ExitEdge`
//! (the middle ones only pass cells on), and a scripted driver plays the
//! destinations: bytes both ways byte-exact with XON/XOFF engaged or with
//! fixed windows, a client that never reads, a violation that closes the
//! circuit, the circuit's end reaching the streams.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{AnyChanMsg, DestroyReason};
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, EndReason, Sendme};
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::cc::{CcParams, FlowParams};
use crate::circuit::{CircEvent, CircParams, ClientCircuit, CloseReason, HopTarget};
use crate::crypto::ntor::NtorSecretKey;
use crate::crypto::ntor_v3::NtorV3SecretKey;
use crate::ids::{CircId, HopNum, StreamId};
use crate::relay::{OnionKeys, RelayCircEvent, RelayCircuit, answer_create2};
use crate::stream::{
    CloseReason as StreamClose, Socks5Reply, StreamEvent, StreamFlowMode, StreamMap,
    StreamMapConfig, Target,
};

use super::*;

/// One relay's keys.
struct R {
    keys: OnionKeys,
    id: RsaIdentity,
    target: HopTarget,
}

fn relay(i: u8, request_cc: bool) -> R {
    let secret = StaticSecret::from([i.wrapping_mul(17).wrapping_add(5); 32]);
    let id = RsaIdentity::from([i + 1; 20]);
    let ed = Ed25519Identity::new([i + 60; 32]);
    let ntor = NtorSecretKey::new(id, secret.clone());
    let ntor_v3 = NtorV3SecretKey::new(ed, secret);
    let target = HopTarget {
        rsa_id: id,
        ed_id: ed,
        ntor_onion_key: ntor.public.onion_key,
        addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, i + 1), 9001)),
        ntor_v3: true,
        request_cc,
    };
    R {
        keys: OnionKeys {
            ntor: vec![ntor],
            ntor_v3: vec![ntor_v3],
        },
        id,
        target,
    }
}

/// What the scripted destinations do.
#[derive(Clone)]
struct DestPlan {
    /// Bytes each destination sends, then EOF if `eof`.
    download: Vec<u8>,
    /// Send EOF after the download.
    eof: bool,
    /// Bytes a destination takes per step (its socket's speed).
    read_per_step: usize,
    /// Bytes a destination sends per step (the link's speed: without it
    /// bytes in memory move without limit within a step).
    write_per_step: usize,
    /// Refuse every connect with this reason.
    refuse: Option<EndReason>,
}

/// One destination's progress.
#[derive(Default)]
struct Dest {
    received: Vec<u8>,
    sent: usize,
    readable: bool,
    blocked: bool,
    eof_sent: bool,
    closed: Option<(EndReason, bool)>,
    /// Bytes it may still take this step.
    budget: usize,
    /// Bytes it may still send this step.
    send_budget: usize,
}

/// A client circuit through relays in memory, with streams at both ends.
struct Net {
    relays: Vec<R>,
    client: ClientCircuit,
    streams: Option<StreamMap>,
    hops: Vec<ExitEdge>,
    rng: StdRng,
    now: Instant,
    flow: FlowParams,
    exit_cfg: ExitConfig,
    plan: DestPlan,
    dests: HashMap<StreamId, Dest>,
    client_closed: Option<CloseReason>,
    exit_closed: Option<DestroyReason>,
    client_events: Vec<StreamEvent>,
    /// Stream messages the client sent and received, by command.
    client_sent: Vec<(StreamId, RelayCmd)>,
    client_got: Vec<(StreamId, RelayCmd)>,
    /// The largest buffers seen at the exit over the run.
    peak_to_dest: usize,
    peak_from_dest: usize,
}

impl Net {
    /// `n` relays; the last negotiates congestion control if `cc`.
    fn new(n: u8, cc: bool, flow: FlowParams, plan: DestPlan) -> Self {
        let relays: Vec<R> = (0..n).map(|i| relay(i, cc && i == n - 1)).collect();
        let mut rng = StdRng::seed_from_u64(11);
        let now = Instant::now();
        let mut client = ClientCircuit::new(
            CircId::new(0x8000_0002).unwrap(),
            relays[0].target.clone(),
            CircParams::default(),
            &mut rng,
            now,
        )
        .unwrap();
        for r in &relays[1..] {
            client.extend(r.target.clone(), now).unwrap();
        }
        let mut net = Net {
            relays,
            client,
            streams: None,
            hops: Vec::new(),
            rng,
            now,
            flow,
            exit_cfg: ExitConfig::default(),
            plan,
            dests: HashMap::new(),
            client_closed: None,
            exit_closed: None,
            client_events: Vec::new(),
            client_sent: Vec::new(),
            client_got: Vec::new(),
            peak_to_dest: 0,
            peak_from_dest: 0,
        };
        net.pump();
        assert!(net.client.is_built());
        let last = net.last();
        assert_eq!(net.client.cc_enabled(last), cc);
        let mode = if cc {
            StreamFlowMode::XonXoff {
                params: net.flow.clone(),
                onion: false,
            }
        } else {
            StreamFlowMode::Windowed
        };
        let cfg = StreamMapConfig {
            informative_end_reasons: true,
            ..StreamMapConfig::default()
        };
        net.streams = Some(StreamMap::with_first_id(cfg, mode, 1));
        net
    }

    fn last(&self) -> HopNum {
        HopNum(u8::try_from(self.relays.len() - 1).unwrap())
    }

    fn exit(&mut self) -> &mut ExitEdge {
        self.hops.last_mut().unwrap()
    }

    fn client_streams(&mut self) -> &mut StreamMap {
        self.streams.as_mut().unwrap()
    }

    /// Answer a CREATE2 at relay `i`, whose previous hop is `prev`.
    fn answer(&mut self, i: usize, cell: AnyChanMsg, prev: Option<RsaIdentity>) -> ExitEdge {
        let AnyChanMsg::Create2(c) = cell else {
            panic!("expected CREATE2, got {cell:?}")
        };
        let r = &self.relays[i];
        let answered = answer_create2(
            &r.keys,
            c.handshake_type(),
            c.body(),
            &CcParams::default(),
            &mut self.rng,
        )
        .unwrap();
        let circ = RelayCircuit::new(answered, CcParams::default(), r.id, prev, &mut self.rng);
        let mut edge = ExitEdge::new(circ, self.exit_cfg.clone(), self.flow.clone());
        // A fixed seed for the TTL fuzzing: reproducible runs.
        let mode = if edge.circuit().cc_sendme_inc().is_some() {
            StreamFlowMode::XonXoff {
                params: self.flow.clone(),
                onion: false,
            }
        } else {
            StreamFlowMode::Windowed
        };
        *edge.streams_mut() = ExitStreamMap::with_seed(self.exit_cfg.clone(), mode, 3);
        edge
    }

    /// Move cells and events until nothing moves.
    fn pump(&mut self) {
        let now = self.now;
        for _ in 0..100_000 {
            let mut moved = false;
            if let Some(streams) = self.streams.as_mut() {
                let last = HopNum(u8::try_from(self.relays.len() - 1).unwrap());
                while self.client.queue_space() > 0 {
                    let Some((id, msg)) = streams.poll_transmit(self.client.can_send_data(last))
                    else {
                        break;
                    };
                    moved = true;
                    self.client_sent.push((id, msg.cmd()));
                    self.client.send_relay(last, Some(id), msg, now).unwrap();
                }
            }
            while let Some(cell) = self.client.poll_transmit() {
                moved = true;
                if self.hops.is_empty() {
                    let e = self.answer(0, cell, None);
                    self.hops.push(e);
                } else {
                    self.hops[0].handle_from_prev(cell, now);
                }
            }
            for i in 0..self.hops.len() {
                while let Some(cell) = self.hops[i].poll_to_next() {
                    moved = true;
                    if let Some(next) = self.hops.get_mut(i + 1) {
                        next.handle_from_prev(cell, now);
                    }
                }
                while let Some(ev) = self.hops[i].poll_circ_event(now) {
                    moved = true;
                    match ev {
                        RelayCircEvent::Extend(req) => {
                            let j = self.relays.iter().position(|r| r.id == req.rsa_id).unwrap();
                            let prev = Some(self.relays[i].id);
                            let e = self.answer(j, req.create.into(), prev);
                            self.hops.push(e);
                        }
                        RelayCircEvent::Closed { reason } => {
                            if i + 1 == self.relays.len() {
                                self.exit_closed = Some(reason);
                            }
                        }
                        RelayCircEvent::Edge { .. } => panic!("edge events stay in the edge"),
                    }
                }
                if i + 1 == self.relays.len() {
                    moved |= self.drive_destinations();
                } else {
                    assert!(
                        self.hops[i].poll_event(now).is_none(),
                        "a middle hop has no streams"
                    );
                }
            }
            for i in (0..self.hops.len()).rev() {
                while let Some(cell) = self.hops[i].poll_to_prev(now) {
                    moved = true;
                    if i == 0 {
                        let _ = self.client.handle_cell(now, cell);
                    } else if let AnyChanMsg::Created2(c) = cell {
                        self.hops[i - 1].circuit_mut().extended(&c, now);
                    } else {
                        self.hops[i - 1].handle_from_next(cell, now);
                    }
                }
            }
            while let Some(ev) = self.client.poll_event() {
                moved = true;
                match ev {
                    CircEvent::StreamMsg { stream, msg, .. } => {
                        self.client_got.push((stream, msg.cmd()));
                        if let Some(s) = self.streams.as_mut() {
                            let _ = s.handle_msg(now, stream, msg);
                        }
                    }
                    CircEvent::Closed { reason } | CircEvent::BuildFailed { reason } => {
                        self.client_closed = Some(reason);
                        if let Some(s) = self.streams.as_mut() {
                            s.handle_circuit_closed();
                        }
                    }
                    _ => {}
                }
            }
            if let Some(s) = self.streams.as_mut() {
                while let Some(ev) = s.poll_event() {
                    moved = true;
                    self.client_events.push(ev);
                }
            }
            if let Some(exit) = self.hops.get(self.relays.len() - 1) {
                let m = exit.streams();
                m.check_invariants().unwrap();
                let (to, from) = m.buffered();
                self.peak_to_dest = self.peak_to_dest.max(to);
                self.peak_from_dest = self.peak_from_dest.max(from);
            }
            if !moved {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// The exit's driver: answer requests, move each destination's bytes.
    /// Returns true if anything happened.
    fn drive_destinations(&mut self) -> bool {
        let now = self.now;
        let plan = self.plan.clone();
        let exit = self.hops.last_mut().unwrap();
        let mut moved = false;
        while let Some(ev) = exit.poll_event(now) {
            moved = true;
            match ev {
                ExitEvent::Connect { id, .. } => {
                    let budget = plan.read_per_step;
                    let send_budget = plan.write_per_step;
                    self.dests.insert(
                        id,
                        Dest {
                            budget,
                            send_budget,
                            ..Dest::default()
                        },
                    );
                    let m = exit.streams_mut();
                    match plan.refuse {
                        Some(r) => m.refuse(id, r, now).unwrap(),
                        None => {
                            m.connected(id, "192.0.2.10".parse().unwrap(), 600, now)
                                .unwrap();
                        }
                    }
                }
                ExitEvent::Readable { id } => self.dests.get_mut(&id).unwrap().readable = true,
                ExitEvent::Writable { id } => self.dests.get_mut(&id).unwrap().blocked = false,
                ExitEvent::Closed { id, reason, remote } => {
                    self.dests.get_mut(&id).unwrap().closed = Some((reason, remote));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for (id, d) in &mut self.dests {
            if d.closed.is_some() || (plan.refuse.is_some()) {
                continue;
            }
            let m = exit.streams_mut();
            if d.readable && d.budget > 0 {
                let mut buf = vec![0u8; d.budget.min(1 << 20)];
                let n = m.read(*id, &mut buf, now).unwrap();
                d.received.extend_from_slice(&buf[..n]);
                d.budget -= n;
                moved |= n > 0;
                if n < buf.len() {
                    d.readable = false;
                }
            }
            if !d.blocked && d.send_budget > 0 && d.sent < plan.download.len() {
                let end = plan.download.len().min(d.sent + d.send_budget);
                let n = m.write(*id, &plan.download[d.sent..end], now).unwrap();
                d.sent += n;
                d.send_budget -= n;
                moved |= n > 0;
                if d.sent < end {
                    d.blocked = true;
                }
            }
            if plan.eof && !d.eof_sent && d.sent == plan.download.len() {
                m.shutdown_write(*id, now).unwrap();
                d.eof_sent = true;
                moved = true;
            }
        }
        moved
    }

    /// One millisecond passes.
    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        for d in self.dests.values_mut() {
            d.budget = self.plan.read_per_step;
            d.send_budget = self.plan.write_per_step;
        }
        let now = self.now;
        self.client_streams().handle_timeout(now);
        self.exit().handle_timeout(now);
        self.pump();
    }

    /// Open a stream to example.com:80.
    fn open(&mut self) -> StreamId {
        let now = self.now;
        let id = self
            .client_streams()
            .begin(
                &Target::hostname("example.com", 80),
                BeginFlags::empty(),
                now,
            )
            .unwrap();
        self.pump();
        id
    }

    fn count(list: &[(StreamId, RelayCmd)], cmd: RelayCmd) -> usize {
        list.iter().filter(|(_, c)| *c == cmd).count()
    }
}

/// 1 MB each way through a three-hop circuit with congestion control:
/// first a destination slower than the client (the exit's XOFF), then a
/// client slower than the destination (the client's XOFF); every byte
/// arrives in order, and the exit's buffers stay within their bounds.
#[test]
fn one_megabyte_each_way_with_xon_xoff_engaged() {
    const MB: usize = 1 << 20;
    let download: Vec<u8> = (0..MB).map(|i| (i * 7 % 253) as u8).collect();
    let upload: Vec<u8> = (0..MB).map(|i| (i * 13 % 251) as u8).collect();
    let plan = DestPlan {
        download: Vec::new(),
        eof: false,
        read_per_step: 4 * 1024,
        write_per_step: 64 * 1024,
        refuse: None,
    };
    let mut net = Net::new(3, true, FlowParams::default(), plan);
    let start = net.now;
    let id = net.open();
    // Upload: the destination takes 4 KB/ms, the client writes as fast as
    // the circuit goes.
    let mut off = 0;
    for _ in 0..5_000 {
        off += net.client_streams().write(id, &upload[off..]).unwrap();
        net.step();
        let got = net.dests.values().map(|d| d.received.len()).sum::<usize>();
        if got == MB {
            break;
        }
    }
    let dest = net.dests.values().next().unwrap();
    assert!(
        dest.received == upload,
        "upload: {} of {} bytes",
        dest.received.len(),
        MB
    );
    assert!(
        Net::count(&net.client_got, RelayCmd::XOFF) >= 1,
        "the exit sent XOFF"
    );
    assert!(Net::count(&net.client_got, RelayCmd::XON) >= 1, "and XON");
    let limit = net.exit().streams().to_dest_limit();
    assert!(net.peak_to_dest <= limit, "{} > {limit}", net.peak_to_dest);
    assert!(
        net.peak_to_dest >= FlowParams::default().xoff_exit_bytes as usize,
        "the destination was slow enough to pass the XOFF limit: {}",
        net.peak_to_dest
    );

    // Download: the destination writes as fast as the exit takes, the
    // client reads 4 KB/ms.
    net.plan.download = download.clone();
    net.plan.read_per_step = usize::MAX / 2;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4 * 1024];
    for _ in 0..5_000 {
        let now = net.now;
        if let Ok(n) = net.client_streams().read(id, &mut buf, now) {
            got.extend_from_slice(&buf[..n]);
        }
        net.step();
        if got.len() == MB {
            break;
        }
    }
    assert!(got == download, "download: {} of {} bytes", got.len(), MB);
    assert!(
        Net::count(&net.client_sent, RelayCmd::XOFF) >= 1,
        "the client sent XOFF"
    );
    assert!(Net::count(&net.client_sent, RelayCmd::XON) >= 1, "and XON");
    assert!(net.peak_from_dest <= 64 * 1024, "{}", net.peak_from_dest);
    assert_eq!(net.client_closed, None);
    assert_eq!(net.exit_closed, None);
    assert_eq!(
        Net::count(&net.client_got, RelayCmd::SENDME),
        0,
        "no stream SENDMEs with cc"
    );
    eprintln!(
        "1 MB each way in {} simulated ms: exit XOFF/XON {}/{}, client XOFF/XON {}/{}, \
         peak bytes at the exit for the destination {} (bound {limit}), from it {}",
        (net.now - start).as_millis(),
        Net::count(&net.client_got, RelayCmd::XOFF),
        Net::count(&net.client_got, RelayCmd::XON),
        Net::count(&net.client_sent, RelayCmd::XOFF),
        Net::count(&net.client_sent, RelayCmd::XON),
        net.peak_to_dest,
        net.peak_from_dest,
    );
}

/// Without congestion control: fixed stream windows with SENDMEs both
/// ways, 1 MB each way at the same time, then the destination's EOF (Tor
/// has no half-close, tor-spec §6.3: END DONE ends the stream both ways,
/// so the destination closes only once it has the upload).
#[test]
fn one_megabyte_each_way_with_fixed_windows() {
    const MB: usize = 1 << 20;
    let download: Vec<u8> = (0..MB).map(|i| (i * 3 % 241) as u8).collect();
    let upload: Vec<u8> = (0..MB).map(|i| (i * 5 % 239) as u8).collect();
    let plan = DestPlan {
        download: download.clone(),
        eof: false,
        read_per_step: 16 * 1024,
        write_per_step: 16 * 1024,
        refuse: None,
    };
    let mut net = Net::new(3, false, FlowParams::default(), plan);
    let id = net.open();
    let mut off = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut ended = false;
    for _ in 0..10_000 {
        off += net.client_streams().write(id, &upload[off..]).unwrap_or(0);
        let now = net.now;
        match net.client_streams().read(id, &mut buf, now) {
            Ok(0) => ended = true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        net.step();
        let up = net.dests.values().map(|d| d.received.len()).sum::<usize>();
        net.plan.eof = up == MB;
        if ended {
            break;
        }
    }
    assert!(got == download, "download: {} of {} bytes", got.len(), MB);
    let up = &net.dests.values().next().unwrap().received;
    assert!(*up == upload, "upload: {} of {} bytes", up.len(), MB);
    assert!(
        Net::count(&net.client_sent, RelayCmd::SENDME) >= 40,
        "the client's stream SENDMEs"
    );
    assert!(
        Net::count(&net.client_got, RelayCmd::SENDME) >= 40,
        "the exit's stream SENDMEs"
    );
    assert!(net.client_events.iter().any(|e| matches!(
        e,
        StreamEvent::Ended {
            reason: StreamClose::End(EndReason::DONE),
            remote: true,
            ..
        }
    )));
    assert_eq!(
        net.dests.values().next().unwrap().closed,
        Some((EndReason::DONE, false))
    );
}

/// A client that never reads: the exit takes what flow control lets it
/// send and the destination's bytes up to its bound, then stops taking
/// them; nothing grows after that, and the circuit stays up.
#[test]
fn a_client_that_never_reads_leaves_the_exit_bounded() {
    for cc in [true, false] {
        let plan = DestPlan {
            download: vec![1u8; 8 << 20],
            eof: false,
            read_per_step: 4096,
            write_per_step: 64 * 1024,
            refuse: None,
        };
        let mut net = Net::new(3, cc, FlowParams::default(), plan);
        let ids: Vec<StreamId> = (0..4).map(|_| net.open()).collect();
        for _ in 0..300 {
            net.step();
        }
        let taken: usize = net.dests.values().map(|d| d.sent).sum();
        let from_dest = net.exit().streams().buffered().1;
        for _ in 0..300 {
            net.step();
        }
        assert_eq!(
            net.dests.values().map(|d| d.sent).sum::<usize>(),
            taken,
            "cc {cc}: stopped"
        );
        assert!(
            net.dests.values().all(|d| d.blocked),
            "every destination pushed back"
        );
        assert!(from_dest <= 4 * 64 * 1024, "{from_dest}");
        assert!(
            net.peak_from_dest <= 4 * 64 * 1024,
            "{}",
            net.peak_from_dest
        );
        // Every byte taken is in the client's buffers or the exit's: none
        // lost, none in cells stuck on the way.
        let mut at_client = 0;
        for id in &ids {
            let held = net.client_streams().recv_buffered(*id).unwrap();
            let limit = net.client_streams().recv_limit();
            assert!(held <= limit, "{held} > {limit}");
            at_client += held;
        }
        assert_eq!(taken, at_client + from_dest, "cc {cc}");
        eprintln!(
            "cc {cc}: destinations wrote {taken} bytes; {at_client} wait at the client, \
             {from_dest} at the exit"
        );
        assert!(
            net.hops
                .iter()
                .all(|h| h.circuit().queued().0 <= PREV_QUEUE_TARGET)
        );
        assert_eq!(net.exit_closed, None);
    }
}

/// The circuit's end reaches every stream as Closed DESTROY.
#[test]
fn a_destroyed_circuit_ends_the_exits_streams() {
    let plan = DestPlan {
        download: Vec::new(),
        eof: false,
        read_per_step: 1024,
        write_per_step: 1024,
        refuse: None,
    };
    let mut net = Net::new(2, true, FlowParams::default(), plan);
    let a = net.open();
    let b = net.open();
    net.client.close();
    net.pump();
    assert_eq!(net.exit_closed, Some(DestroyReason::NONE));
    for id in [a, b] {
        assert_eq!(net.dests[&id].closed, Some((EndReason::DESTROY, true)));
    }
    assert!(net.exit().streams().is_empty());
}

/// A stream SENDME on a congestion-controlled circuit: the exit closes the
/// circuit (proposal 324 §2.2; C-tor's TORPROTOCOL), the client hears the
/// DESTROY, the streams end.
#[test]
fn a_stream_sendme_with_congestion_control_closes_the_circuit() {
    let plan = DestPlan {
        download: Vec::new(),
        eof: false,
        read_per_step: 1024,
        write_per_step: 1024,
        refuse: None,
    };
    let mut net = Net::new(1, true, FlowParams::default(), plan);
    let id = net.open();
    let now = net.now;
    net.client
        .send_relay(
            HopNum(0),
            Some(id),
            AnyRelayMsg::Sendme(Sendme::new_empty()),
            now,
        )
        .unwrap();
    net.pump();
    assert_eq!(net.exit_closed, Some(DestroyReason::PROTOCOL));
    assert_eq!(
        net.client_closed,
        Some(CloseReason::Destroyed {
            reason: DestroyReason::PROTOCOL
        })
    );
    assert_eq!(net.dests[&id].closed, Some((EndReason::DESTROY, true)));
    assert!(
        net.exit()
            .last_error()
            .is_some_and(ExitError::closes_circuit)
    );
}

/// A refused connect reaches the client through the circuit with the
/// SOCKS reply C-tor's client derives; the circuit carries on.
#[test]
fn a_policy_refusal_reaches_the_client_through_the_circuit() {
    let plan = DestPlan {
        download: Vec::new(),
        eof: false,
        read_per_step: 1024,
        write_per_step: 1024,
        refuse: Some(EndReason::EXITPOLICY),
    };
    let mut net = Net::new(3, true, FlowParams::default(), plan);
    let mut refused = HashSet::new();
    for _ in 0..3 {
        let id = net.open();
        refused.insert(id);
    }
    let replies: Vec<_> = net
        .client_events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Ended { id, reason, .. } if refused.contains(id) => {
                Some(reason.socks5_reply())
            }
            _ => None,
        })
        .collect();
    assert_eq!(replies, vec![Socks5Reply::NotAllowed; 3]);
    assert_eq!(net.client_closed, None);
    assert!(net.exit().streams().is_empty());
}
