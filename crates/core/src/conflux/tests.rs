//! Tests of [`ConfluxSet`]: a client set and an exit set talking through
//! in-memory legs with per-leg delays (each leg in order, legs overtaking
//! each other), and the refusal and leg-loss rules.
//!
//! Here: the pair and its helpers (`pub(super)`, shared with
//! `violation_tests` and `leg_loss_tests`, which hold those rules' tests),
//! linking, sequencing, the reorder queue's limit and SENDME pacing.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, ConfluxLinked, ConfluxSwitch, Data, End, Sendme};

use super::*;
use crate::ids::{LegId, StreamId};

/// A tiny deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub(super) struct Xs(pub(super) u64);

impl Xs {
    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Picks a random linked leg for every message.
#[derive(Debug)]
pub(super) struct RandomChooser(pub(super) Xs);

impl LegChooser for RandomChooser {
    fn choose(
        &mut self,
        legs: &[LegInfo],
        _current: Option<LegId>,
        _cmd: RelayCmd,
        _now: Instant,
    ) -> Option<LegId> {
        let i = usize::try_from(self.0.below(legs.len() as u64)).unwrap();
        legs.get(i).map(|l| l.leg)
    }
}

/// Always holds.
#[derive(Debug)]
pub(super) struct Hold;

impl LegChooser for Hold {
    fn choose(
        &mut self,
        _: &[LegInfo],
        _: Option<LegId>,
        _: RelayCmd,
        _: Instant,
    ) -> Option<LegId> {
        None
    }
}

pub(super) fn stream() -> Option<StreamId> {
    StreamId::new(1)
}

pub(super) fn data(i: u32) -> AnyRelayMsg {
    Data::new(&i.to_be_bytes()).unwrap().into()
}

pub(super) fn data_index(m: &AnyRelayMsg) -> u32 {
    match m {
        AnyRelayMsg::Data(d) => u32::from_be_bytes(d.as_ref().try_into().unwrap()),
        other => panic!("not DATA: {other:?}"),
    }
}

pub(super) fn nonce(seed: u8) -> ConfluxNonce {
    ConfluxNonce::from_bytes([seed; 32])
}

/// One direction of one leg: in order, each message due at a time.
#[derive(Debug, Default)]
pub(super) struct Pipe {
    pub(super) q: VecDeque<(Instant, Option<StreamId>, AnyRelayMsg)>,
}

/// A client set and an exit set joined by legs.
#[derive(Debug)]
pub(super) struct Pair {
    pub(super) client: ConfluxSet,
    pub(super) exit: ConfluxSet,
    /// Client leg → exit leg, once the exit accepted the LINK.
    pub(super) map: BTreeMap<LegId, LegId>,
    /// Client to exit, per client leg.
    pub(super) up: BTreeMap<LegId, Pipe>,
    /// Exit to client, per client leg.
    pub(super) down: BTreeMap<LegId, Pipe>,
    /// One-way delay per client leg.
    pub(super) delay: BTreeMap<LegId, Duration>,
    /// Random extra delay up to this.
    pub(super) jitter_ms: u64,
    pub(super) now: Instant,
    pub(super) rng: Xs,
    /// In-order DATA indices delivered at the client / at the exit.
    pub(super) got_client: Vec<u32>,
    pub(super) got_exit: Vec<u32>,
    pub(super) switches_up: usize,
    pub(super) switches_down: usize,
    pub(super) events_client: Vec<ConfluxEvent>,
    pub(super) events_exit: Vec<ConfluxEvent>,
    /// DATA cells that arrived at the exit / at the client, per client
    /// leg: what a leg's congestion control acknowledges.
    pub(super) data_up: BTreeMap<LegId, u64>,
    pub(super) data_down: BTreeMap<LegId, u64>,
    /// Client legs whose path is gone: what goes on them, either way, is
    /// lost.
    pub(super) dead: Vec<LegId>,
}

impl Pair {
    pub(super) fn new(seed: u64, jitter_ms: u64) -> Self {
        Self {
            client: ConfluxSet::new_client(nonce(7), ConfluxConfig::client()),
            exit: ConfluxSet::new_exit(nonce(7), ConfluxConfig::exit()),
            map: BTreeMap::new(),
            up: BTreeMap::new(),
            down: BTreeMap::new(),
            delay: BTreeMap::new(),
            jitter_ms,
            now: Instant::now(),
            rng: Xs(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)),
            got_client: Vec::new(),
            got_exit: Vec::new(),
            switches_up: 0,
            switches_down: 0,
            events_client: Vec::new(),
            events_exit: Vec::new(),
            data_up: BTreeMap::new(),
            data_down: BTreeMap::new(),
            dead: Vec::new(),
        }
    }

    /// Launch a client leg with one-way `delay`.
    pub(super) fn launch(&mut self, delay: Duration) -> LegId {
        let leg = self.client.add_leg(self.now).unwrap();
        self.delay.insert(leg, delay);
        self.up.entry(leg).or_default();
        self.down.entry(leg).or_default();
        self.pump();
        leg
    }

    /// Launch a replacement leg whose LINK claims only `delivered`.
    pub(super) fn launch_delivered(&mut self, delay: Duration, delivered: u64) -> LegId {
        let leg = self.client.add_leg_delivered(self.now, delivered).unwrap();
        self.delay.insert(leg, delay);
        self.up.entry(leg).or_default();
        self.down.entry(leg).or_default();
        self.pump();
        leg
    }

    pub(super) fn due(&mut self, leg: LegId, last: Option<Instant>) -> Instant {
        let j = Duration::from_millis(self.rng.below(self.jitter_ms + 1));
        let t = self.now + self.delay[&leg] + j;
        last.map_or(t, |l| l.max(t))
    }

    pub(super) fn push_up(&mut self, leg: LegId, s: Option<StreamId>, m: AnyRelayMsg) {
        if self.dead.contains(&leg) {
            return;
        }
        if m.cmd() == RelayCmd::CONFLUX_SWITCH {
            self.switches_up += 1;
        }
        let last = self.up[&leg].q.back().map(|e| e.0);
        let t = self.due(leg, last);
        self.up.get_mut(&leg).unwrap().q.push_back((t, s, m));
    }

    pub(super) fn push_down(&mut self, leg: LegId, s: Option<StreamId>, m: AnyRelayMsg) {
        if self.dead.contains(&leg) {
            return;
        }
        if m.cmd() == RelayCmd::CONFLUX_SWITCH {
            self.switches_down += 1;
        }
        let last = self.down[&leg].q.back().map(|e| e.0);
        let t = self.due(leg, last);
        self.down.get_mut(&leg).unwrap().q.push_back((t, s, m));
    }

    /// Client leg `leg`'s path dies: what is on its way either way is
    /// lost, and so is what goes on it later; neither end is told.
    pub(super) fn cut(&mut self, leg: LegId) {
        self.dead.push(leg);
        if let Some(p) = self.up.get_mut(&leg) {
            p.q.clear();
        }
        if let Some(p) = self.down.get_mut(&leg) {
            p.q.clear();
        }
    }

    pub(super) fn client_leg_of(&self, exit_leg: LegId) -> LegId {
        *self.map.iter().find(|(_, e)| **e == exit_leg).unwrap().0
    }

    /// Move handshake output, deliveries and events.
    pub(super) fn pump(&mut self) {
        while let Some((leg, m)) = self.client.poll_transmit() {
            self.push_up(leg, None, m);
        }
        while let Some((leg, m)) = self.exit.poll_transmit() {
            let c = self.client_leg_of(leg);
            self.push_down(c, None, m);
        }
        // Resends of a resumed leg (Braid proposal 001 §3.3), after its
        // handshake messages.
        while let Some(out) = self.client.poll_resend(|_| true) {
            let leg = out.leg;
            for (s, m) in out.into_msgs() {
                self.push_up(leg, s, m);
            }
        }
        while let Some(out) = self.exit.poll_resend(|_| true) {
            let c = self.client_leg_of(out.leg);
            for (s, m) in out.into_msgs() {
                self.push_down(c, s, m);
            }
        }
        while let Some(d) = self.client.poll_delivered() {
            self.got_client.push(data_index(&d.msg));
        }
        while let Some(d) = self.exit.poll_delivered() {
            self.got_exit.push(data_index(&d.msg));
        }
        while let Some(e) = self.client.poll_event() {
            self.events_client.push(e);
        }
        while let Some(e) = self.exit.poll_event() {
            self.events_exit.push(e);
        }
    }

    /// Deliver the earliest message in flight; false if none.
    pub(super) fn step(&mut self) -> bool {
        let mut best: Option<(Instant, bool, LegId)> = None;
        for (up, pipes) in [(true, &self.up), (false, &self.down)] {
            for (leg, p) in pipes {
                if let Some((t, _, _)) = p.q.front()
                    && best.is_none_or(|b| *t < b.0)
                {
                    best = Some((*t, up, *leg));
                }
            }
        }
        let Some((t, up, leg)) = best else {
            return false;
        };
        self.now = self.now.max(t);
        let pipes = if up { &mut self.up } else { &mut self.down };
        let (_, s, m) = pipes.get_mut(&leg).unwrap().q.pop_front().unwrap();
        if m.cmd() == RelayCmd::DATA {
            let counts = if up {
                &mut self.data_up
            } else {
                &mut self.data_down
            };
            *counts.entry(leg).or_default() += 1;
        }
        if up {
            match (self.map.get(&leg).copied(), m) {
                (None, AnyRelayMsg::ConfluxLink(link)) => {
                    let e = self.exit.accept_link(&link, false, self.now).unwrap();
                    self.map.insert(leg, e);
                }
                (None, m) if m.cmd() == RelayCmd::CONFLUX_LINK => {
                    // With Braid's extensions (proposal 001 §2.2).
                    let (link, ext) = super::ext::split(m).unwrap();
                    let AnyRelayMsg::ConfluxLink(link) = link else {
                        panic!("{link:?}")
                    };
                    let e = self
                        .exit
                        .accept_link_with(&link, &ext, false, self.now)
                        .unwrap();
                    self.map.insert(leg, e);
                }
                (Some(e), m) => {
                    let h = self.exit.handle_msg(e, s, m, self.now).unwrap();
                    assert!(matches!(h, Handled::Consumed));
                }
                (None, m) => panic!("{m:?} before LINK"),
            }
        } else {
            let h = self.client.handle_msg(leg, s, m, self.now).unwrap();
            assert!(matches!(h, Handled::Consumed));
        }
        self.pump();
        true
    }

    pub(super) fn run(&mut self) {
        while self.step() {}
    }

    pub(super) fn client_send(&mut self, chooser: &mut dyn LegChooser, i: u32) {
        match self
            .client
            .send(chooser, &[], stream(), data(i), self.now)
            .unwrap()
        {
            SendOutcome::Sent(out) => {
                let leg = out.leg;
                for (s, m) in out.into_msgs() {
                    self.push_up(leg, s, m);
                }
            }
            SendOutcome::Blocked { .. } => panic!("blocked"),
        }
    }

    pub(super) fn exit_send(&mut self, chooser: &mut dyn LegChooser, i: u32) {
        match self
            .exit
            .send(chooser, &[], stream(), data(i), self.now)
            .unwrap()
        {
            SendOutcome::Sent(out) => {
                let c = self.client_leg_of(out.leg);
                for (s, m) in out.into_msgs() {
                    self.push_down(c, s, m);
                }
            }
            SendOutcome::Blocked { .. } => panic!("blocked"),
        }
    }

    pub(super) fn client_send_on(&mut self, leg: LegId, i: u32) {
        let out = self.client.send_on(leg, stream(), data(i)).unwrap();
        let leg = out.leg;
        for (s, m) in out.into_msgs() {
            self.push_up(leg, s, m);
        }
    }

    pub(super) fn exit_send_on(&mut self, client_leg: LegId, i: u32) {
        let out = self
            .exit
            .send_on(self.map[&client_leg], stream(), data(i))
            .unwrap();
        for (s, m) in out.into_msgs() {
            self.push_down(client_leg, s, m);
        }
    }
}

/// A linked pair with `delays` per leg.
pub(super) fn linked_pair(seed: u64, jitter_ms: u64, delays: &[u64]) -> (Pair, Vec<LegId>) {
    let mut p = Pair::new(seed, jitter_ms);
    let legs: Vec<LegId> = delays
        .iter()
        .map(|d| p.launch(Duration::from_millis(*d)))
        .collect();
    p.run();
    assert!(p.client.is_linked());
    assert!(p.exit.is_linked());
    assert_eq!(p.client.linked_legs(), delays.len());
    assert_eq!(p.exit.linked_legs(), delays.len());
    (p, legs)
}

#[test]
fn link_measures_rtt_from_the_clock() {
    let (p, legs) = linked_pair(1, 0, &[10, 35]);
    assert_eq!(p.client.leg_rtt(legs[0]), Some(Duration::from_millis(20)));
    assert_eq!(p.client.leg_rtt(legs[1]), Some(Duration::from_millis(70)));
    assert_eq!(
        p.exit.leg_rtt(p.map[&legs[0]]),
        Some(Duration::from_millis(20))
    );
    assert_eq!(
        p.exit.leg_rtt(p.map[&legs[1]]),
        Some(Duration::from_millis(70))
    );
    assert_eq!(p.client.peer_ux(), Some(V1DesiredUx::MIN_LATENCY));
    assert_eq!(p.exit.peer_ux(), Some(V1DesiredUx::HIGH_THROUGHPUT));
    // Client: each leg linked, then the set, once.
    let linked: Vec<_> = p
        .events_client
        .iter()
        .filter(|e| matches!(e, ConfluxEvent::SetLinked { .. }))
        .collect();
    assert_eq!(linked, vec![&ConfluxEvent::SetLinked { legs: 2 }]);
    assert!(p.events_exit.iter().any(|e| matches!(
        e,
        ConfluxEvent::LegRtt { rtt, .. } if *rtt == Duration::from_millis(70)
    )));
}

#[test]
fn send_before_link_and_misuse() {
    let mut p = Pair::new(2, 0);
    let a = p.launch(Duration::from_millis(5));
    let mut ch = RandomChooser(Xs(1));
    // Not linked yet.
    assert_eq!(
        p.client
            .send(&mut ch, &[], stream(), data(0), p.now)
            .unwrap_err(),
        ConfluxError::NotLinked
    );
    p.run();
    // Not multiplexed.
    assert_eq!(
        p.client
            .send(&mut ch, &[], None, Sendme::new_empty().into(), p.now)
            .unwrap_err(),
        ConfluxError::NotMultiplexed {
            cmd: RelayCmd::SENDME
        }
    );
    // A hold keeps DATA back and lets END through on the current leg.
    match p
        .client
        .send(&mut Hold, &[], stream(), data(1), p.now)
        .unwrap()
    {
        SendOutcome::Blocked { msg, .. } => assert_eq!(data_index(&msg), 1),
        SendOutcome::Sent(_) => panic!("sent"),
    }
    match p
        .client
        .send(&mut Hold, &[], stream(), End::new_misc().into(), p.now)
        .unwrap()
    {
        SendOutcome::Sent(out) => assert_eq!(out.leg, a),
        SendOutcome::Blocked { .. } => panic!("END held"),
    }
    // Non-conflux messages are given back.
    let h = p
        .client
        .handle_msg(a, None, Sendme::new_empty().into(), p.now)
        .unwrap();
    assert!(matches!(h, Handled::NotConflux { .. }));
    // Unknown leg.
    assert_eq!(
        p.client
            .handle_msg(LegId(99), stream(), data(0), p.now)
            .unwrap_err(),
        ConfluxError::NoSuchLeg { leg: LegId(99) }
    );
    // The exit cannot add legs; the client cannot accept them.
    assert!(p.exit.add_leg(p.now).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Both ends send DATA over 2-4 legs with random leg choices and random
    /// delays (legs overtake each other); each end receives every message
    /// exactly once, in order, with SWITCH correct on both ends.
    #[test]
    fn sequencing_across_switches_both_directions(
        seed in any::<u64>(),
        delays in proptest::collection::vec(1_u64..60, 2..=4),
        n_up in 0_u32..150,
        n_down in 0_u32..400,
    ) {
        let (mut p, _) = linked_pair(seed, 25, &delays);
        let mut cc = RandomChooser(Xs(seed ^ 1));
        let mut ce = RandomChooser(Xs(seed ^ 2));
        let (mut i_up, mut i_down) = (0, 0);
        while i_up < n_up || i_down < n_down {
            match p.rng.below(4) {
                0 if i_up < n_up => { p.client_send(&mut cc, i_up); i_up += 1; }
                1 | 2 if i_down < n_down => { p.exit_send(&mut ce, i_down); i_down += 1; }
                _ => { p.step(); }
            }
        }
        p.run();
        prop_assert_eq!(&p.got_exit, &(0..n_up).collect::<Vec<_>>());
        prop_assert_eq!(&p.got_client, &(0..n_down).collect::<Vec<_>>());
        prop_assert_eq!(p.client.last_seq_delivered(), u64::from(n_down));
        prop_assert_eq!(p.exit.last_seq_delivered(), u64::from(n_up));
        prop_assert!(p.client.reorder_peak_bytes() <= p.client.reorder_limit().max_bytes);
        if n_down > 40 {
            prop_assert!(p.switches_down > 0);
            // Legs overtook each other: cells waited for gaps.
            prop_assert!(p.client.reorder_peak_cells() > 1);
        }
        prop_assert_eq!(p.client.reorder_bytes(), 0);
    }
}

/// A pending leg that gets a LINKED with the wrong nonce fails alone; the
/// set links with the other leg.
#[test]
fn wrong_nonce_fails_only_that_leg() {
    let mut p = Pair::new(3, 0);
    let a = p.launch(Duration::from_millis(5));
    let b = p.client.add_leg(p.now).unwrap();
    // Drop b's LINK; answer it with another set's nonce.
    let (leg, _link) = p.client.poll_transmit().unwrap();
    assert_eq!(leg, b);
    let forged = LinkInfo {
        nonce: nonce(8),
        last_seqno_sent: 0,
        last_seqno_recv: 0,
        desired_ux: V1DesiredUx::MIN_LATENCY,
    };
    let linked = ConfluxLinked::new(forged.to_payload().unwrap());
    assert!(matches!(
        p.client.handle_msg(b, None, linked.into(), p.now).unwrap(),
        Handled::Consumed
    ));
    assert_eq!(
        p.client.poll_event(),
        Some(ConfluxEvent::LegFailed {
            leg: b,
            error: ConfluxError::WrongNonce { leg: b }
        })
    );
    p.run();
    assert!(p.client.is_linked());
    assert_eq!(p.client.legs().collect::<Vec<_>>(), vec![(a, true)]);
}

/// LINKED deadlines: exposed, and a late leg fails; at most `max_legs`
/// legs at once (the launch budget is the tunnel's).
#[test]
fn link_timeout_and_leg_limit() {
    let t0 = Instant::now();
    let mut c = ConfluxSet::new_client(nonce(1), ConfluxConfig::client());
    let a = c.add_leg(t0).unwrap();
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    c.handle_timeout(t0 + Duration::from_secs(9));
    assert_eq!(c.poll_event(), None);
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(
        c.poll_event(),
        Some(ConfluxEvent::LegFailed {
            leg: a,
            error: ConfluxError::LinkTimeout {
                leg: a,
                timeout: Duration::from_secs(10)
            }
        })
    );
    assert_eq!(c.poll_timeout(), None);
    for _ in 0..MAX_LEGS {
        c.add_leg(t0).unwrap();
    }
    assert!(matches!(c.add_leg(t0), Err(ConfluxError::CannotAddLeg(_))));
}

/// A peer holding back one cell while sending on another leg fills the
/// reorder queue: refused at the bound, set closed with RESOURCELIMIT.
#[test]
fn reorder_queue_full_closes_with_resource_limit() {
    let (mut p, legs) = linked_pair(6, 0, &[5, 5]);
    p.client
        .set_reorder_limit(ReorderLimit::from_bytes(16 * 1024));
    p.client
        .handle_msg(legs[1], None, ConfluxSwitch::new(1).into(), p.now)
        .unwrap();
    let big = |_| -> AnyRelayMsg { Data::new(&[0_u8; 498]).unwrap().into() };
    let mut err = None;
    for i in 0..100 {
        if let Err(e) = p.client.handle_msg(legs[1], stream(), big(i), p.now) {
            err = Some(e);
            break;
        }
        assert!(p.client.reorder_bytes() <= 16 * 1024);
    }
    let err = err.unwrap();
    assert!(err.is_resource_limit(), "{err}");
    assert_eq!(
        err.destroy_reason(),
        tor_cell::chancell::msg::DestroyReason::RESOURCELIMIT
    );
    assert!(p.client.is_closed());
    assert!(p.client.reorder_peak_bytes() <= 16 * 1024);
    assert!(p.client.reorder_peak_bytes() > 8 * 1024);
}

/// Receiver backpressure (`sendme_hold`): once the queue holds more than a
/// quarter of its limit, the legs that received past the gap are held and
/// the leg that can still fill it never is; filling the gap releases all.
#[test]
fn sendme_hold_holds_the_legs_ahead_of_a_gap() {
    let (mut p, legs) = linked_pair(6, 0, &[5, 5]);
    p.client
        .set_reorder_limit(ReorderLimit::from_bytes(16 * 1024));
    // #1 "sent" on leg 0 (lost for now); leg 1 carries #2 onwards.
    p.client
        .handle_msg(legs[1], None, ConfluxSwitch::new(1).into(), p.now)
        .unwrap();
    let big = || -> AnyRelayMsg { Data::new(&[0_u8; 498]).unwrap().into() };
    let mut held_at = None;
    for i in 0..20 {
        p.client
            .handle_msg(legs[1], stream(), big(), p.now)
            .unwrap();
        assert!(
            !p.client.sendme_hold(legs[0]),
            "the leg that can fill the gap"
        );
        if p.client.sendme_hold(legs[1]) && held_at.is_none() {
            held_at = Some((i, p.client.reorder_bytes()));
        }
    }
    let (i, bytes) = held_at.unwrap();
    assert!(
        bytes > 4 * 1024 && i < 10,
        "held from {i} cells, {bytes} bytes"
    );
    p.client
        .handle_msg(legs[0], stream(), big(), p.now)
        .unwrap();
    while p.client.poll_delivered().is_some() {}
    assert_eq!(p.client.reorder_bytes(), 0);
    assert!(!p.client.sendme_hold(legs[1]) && !p.client.sendme_hold(legs[0]));
}

/// Send DATA `from..200` both ways on any leg and check that both ends
/// got 0..200 in order.
pub(super) fn finish_to_200(
    p: &mut Pair,
    cc: &mut RandomChooser,
    ce: &mut RandomChooser,
    from: u32,
) {
    for i in from..200 {
        p.client_send(cc, i);
        p.exit_send(ce, i);
        if i % 3 == 0 {
            p.step();
        }
    }
    p.run();
    assert_eq!(p.got_client, (0..200).collect::<Vec<_>>());
    assert_eq!(p.got_exit, (0..200).collect::<Vec<_>>());
}

// Resumption (Braid proposal 001 §3).
#[path = "resume_tests.rs"]
mod resume_tests;

// Lost legs named in LINK (Braid proposal 001 §3.3).
#[path = "legnote_tests.rs"]
mod legnote_tests;

#[path = "liveness_tests.rs"]
mod liveness_tests;
