//! Tests of [`ConfluxSet`]: a client set and an exit set talking through
//! in-memory legs with per-leg delays (each leg in order, legs overtaking
//! each other), and the refusal and leg-loss rules.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{
    AnyRelayMsg, ConfluxLink, ConfluxLinked, ConfluxLinkedAck, ConfluxSwitch, Data, End, Sendme,
};

use super::*;
use crate::ids::{LegId, StreamId};

/// A tiny deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
struct Xs(u64);

impl Xs {
    fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Picks a random linked leg for every message.
#[derive(Debug)]
struct RandomChooser(Xs);

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
struct Hold;

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

fn stream() -> Option<StreamId> {
    StreamId::new(1)
}

fn data(i: u32) -> AnyRelayMsg {
    Data::new(&i.to_be_bytes()).unwrap().into()
}

fn data_index(m: &AnyRelayMsg) -> u32 {
    match m {
        AnyRelayMsg::Data(d) => u32::from_be_bytes(d.as_ref().try_into().unwrap()),
        other => panic!("not DATA: {other:?}"),
    }
}

fn nonce(seed: u8) -> ConfluxNonce {
    ConfluxNonce::from_bytes([seed; 32])
}

/// One direction of one leg: in order, each message due at a time.
#[derive(Debug, Default)]
struct Pipe {
    q: VecDeque<(Instant, Option<StreamId>, AnyRelayMsg)>,
}

/// A client set and an exit set joined by legs.
#[derive(Debug)]
struct Pair {
    client: ConfluxSet,
    exit: ConfluxSet,
    /// Client leg → exit leg, once the exit accepted the LINK.
    map: BTreeMap<LegId, LegId>,
    /// Client to exit, per client leg.
    up: BTreeMap<LegId, Pipe>,
    /// Exit to client, per client leg.
    down: BTreeMap<LegId, Pipe>,
    /// One-way delay per client leg.
    delay: BTreeMap<LegId, Duration>,
    /// Random extra delay up to this.
    jitter_ms: u64,
    now: Instant,
    rng: Xs,
    /// In-order DATA indices delivered at the client / at the exit.
    got_client: Vec<u32>,
    got_exit: Vec<u32>,
    switches_up: usize,
    switches_down: usize,
    events_client: Vec<ConfluxEvent>,
    events_exit: Vec<ConfluxEvent>,
    /// DATA cells that arrived at the exit / at the client, per client
    /// leg: what a leg's congestion control acknowledges.
    data_up: BTreeMap<LegId, u64>,
    data_down: BTreeMap<LegId, u64>,
}

impl Pair {
    fn new(seed: u64, jitter_ms: u64) -> Self {
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
        }
    }

    /// Launch a client leg with one-way `delay`.
    fn launch(&mut self, delay: Duration) -> LegId {
        let leg = self.client.add_leg(self.now).unwrap();
        self.delay.insert(leg, delay);
        self.up.entry(leg).or_default();
        self.down.entry(leg).or_default();
        self.pump();
        leg
    }

    /// Launch a replacement leg whose LINK claims only `delivered`.
    fn launch_delivered(&mut self, delay: Duration, delivered: u64) -> LegId {
        let leg = self.client.add_leg_delivered(self.now, delivered).unwrap();
        self.delay.insert(leg, delay);
        self.up.entry(leg).or_default();
        self.down.entry(leg).or_default();
        self.pump();
        leg
    }

    fn due(&mut self, leg: LegId, last: Option<Instant>) -> Instant {
        let j = Duration::from_millis(self.rng.below(self.jitter_ms + 1));
        let t = self.now + self.delay[&leg] + j;
        last.map_or(t, |l| l.max(t))
    }

    fn push_up(&mut self, leg: LegId, s: Option<StreamId>, m: AnyRelayMsg) {
        if m.cmd() == RelayCmd::CONFLUX_SWITCH {
            self.switches_up += 1;
        }
        let last = self.up[&leg].q.back().map(|e| e.0);
        let t = self.due(leg, last);
        self.up.get_mut(&leg).unwrap().q.push_back((t, s, m));
    }

    fn push_down(&mut self, leg: LegId, s: Option<StreamId>, m: AnyRelayMsg) {
        if m.cmd() == RelayCmd::CONFLUX_SWITCH {
            self.switches_down += 1;
        }
        let last = self.down[&leg].q.back().map(|e| e.0);
        let t = self.due(leg, last);
        self.down.get_mut(&leg).unwrap().q.push_back((t, s, m));
    }

    fn client_leg_of(&self, exit_leg: LegId) -> LegId {
        *self.map.iter().find(|(_, e)| **e == exit_leg).unwrap().0
    }

    /// Move handshake output, deliveries and events.
    fn pump(&mut self) {
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
    fn step(&mut self) -> bool {
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

    fn run(&mut self) {
        while self.step() {}
    }

    fn client_send(&mut self, chooser: &mut dyn LegChooser, i: u32) {
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

    fn exit_send(&mut self, chooser: &mut dyn LegChooser, i: u32) {
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

    fn client_send_on(&mut self, leg: LegId, i: u32) {
        let out = self.client.send_on(leg, stream(), data(i)).unwrap();
        let leg = out.leg;
        for (s, m) in out.into_msgs() {
            self.push_up(leg, s, m);
        }
    }

    fn exit_send_on(&mut self, client_leg: LegId, i: u32) {
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
fn linked_pair(seed: u64, jitter_ms: u64, delays: &[u64]) -> (Pair, Vec<LegId>) {
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

/// Violations on a linked leg close the set; on a linking leg, only the leg.
#[test]
fn violations() {
    let linked_ack = || -> AnyRelayMsg { ConfluxLinkedAck::default().into() };
    let switch = |n| -> AnyRelayMsg { ConfluxSwitch::new(n).into() };

    // Client receives LINKED_ACK / LINK.
    for m in [
        linked_ack(),
        ConfluxLink::new(
            LinkInfo {
                nonce: nonce(7),
                last_seqno_sent: 0,
                last_seqno_recv: 0,
                desired_ux: V1DesiredUx::NO_OPINION,
            }
            .to_payload()
            .unwrap(),
        )
        .into(),
    ] {
        let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
        let cmd = m.cmd();
        let e = p.client.handle_msg(legs[0], None, m, p.now).unwrap_err();
        assert_eq!(e, ConfluxError::WrongDirection { leg: legs[0], cmd });
        assert!(e.is_protocol_violation());
        assert!(p.client.is_closed());
        assert_eq!(
            p.client
                .handle_msg(legs[0], stream(), data(0), p.now)
                .unwrap_err(),
            ConfluxError::Closed
        );
    }

    // LINKED twice.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    let again = ConfluxLinked::new(
        LinkInfo {
            nonce: nonce(7),
            last_seqno_sent: 0,
            last_seqno_recv: 0,
            desired_ux: V1DesiredUx::NO_OPINION,
        }
        .to_payload()
        .unwrap(),
    );
    assert_eq!(
        p.client
            .handle_msg(legs[1], None, again.into(), p.now)
            .unwrap_err(),
        ConfluxError::LinkedTwice { leg: legs[1] }
    );

    // SWITCH 0 after data; SWITCH repeated: C-tor sends a few such empty
    // switches, MAX_EMPTY_SWITCHES in a row pass, the next closes the set.
    // LINKED_ACK twice at the exit.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    p.client
        .handle_msg(legs[0], stream(), data(0), p.now)
        .unwrap();
    for _ in 0..MAX_EMPTY_SWITCHES {
        p.client
            .handle_msg(legs[1], None, switch(0), p.now)
            .unwrap();
    }
    assert_eq!(
        p.client
            .handle_msg(legs[1], None, switch(0), p.now)
            .unwrap_err(),
        ConfluxError::SwitchZero { leg: legs[1] }
    );
    assert!(p.client.is_closed());
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    // The first SWITCH on a leg is not empty; repeats are.
    for _ in 0..=MAX_EMPTY_SWITCHES {
        p.client
            .handle_msg(legs[1], None, switch(3), p.now)
            .unwrap();
    }
    assert_eq!(
        p.client
            .handle_msg(legs[1], None, switch(3), p.now)
            .unwrap_err(),
        ConfluxError::SwitchRepeated { leg: legs[1] }
    );
    assert!(p.client.is_closed());
    let e0 = p.map[&legs[0]];
    assert_eq!(
        p.exit
            .handle_msg(e0, None, linked_ack(), p.now)
            .unwrap_err(),
        ConfluxError::AckTwice { leg: e0 }
    );

    // C-tor's first-leg race: SWITCH(0) before any data is fine.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    p.client
        .handle_msg(legs[1], None, switch(0), p.now)
        .unwrap();
    p.client
        .handle_msg(legs[1], stream(), data(0), p.now)
        .unwrap();
    assert_eq!(p.client.poll_delivered().map(|d| d.seq), Some(1));

    // An implausible jump before any data (arti's check, generalised).
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    assert!(matches!(
        p.client.handle_msg(legs[1], None, switch(1_000_000), p.now),
        Err(ConfluxError::SwitchTooFar { .. })
    ));

    // Overlapping sequence numbers: B claims 1..=3 after A delivered 1..=3.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    for i in 0..3 {
        p.client
            .handle_msg(legs[0], stream(), data(i), p.now)
            .unwrap();
    }
    assert_eq!(
        p.client
            .handle_msg(legs[1], stream(), data(9), p.now)
            .unwrap_err(),
        ConfluxError::StaleSeq {
            leg: legs[1],
            seq: 1,
            delivered: 3
        }
    );
    // Duplicate: two legs claim 5 (a third could still bring 1..=4).
    let (mut p, legs) = linked_pair(4, 0, &[5, 5, 5]);
    p.client
        .handle_msg(legs[0], None, switch(4), p.now)
        .unwrap();
    p.client
        .handle_msg(legs[0], stream(), data(5), p.now)
        .unwrap();
    p.client
        .handle_msg(legs[1], None, switch(4), p.now)
        .unwrap();
    assert_eq!(
        p.client
            .handle_msg(legs[1], stream(), data(5), p.now)
            .unwrap_err(),
        ConfluxError::DuplicateSeq {
            leg: legs[1],
            seq: 5
        }
    );

    // BEGIN_DIR on a leg.
    let (mut p, legs) = linked_pair(4, 0, &[5, 5]);
    let bd = AnyRelayMsg::BeginDir(tor_cell::relaycell::msg::BeginDir::default());
    assert_eq!(
        p.client
            .handle_msg(legs[0], stream(), bd, p.now)
            .unwrap_err(),
        ConfluxError::BeginDirOnLeg { leg: legs[0] }
    );

    // Data on a leg still linking: that leg fails, the set is fine.
    let mut p = Pair::new(5, 0);
    let a = p.launch(Duration::from_millis(5));
    p.run();
    let b = p.client.add_leg(p.now).unwrap();
    assert!(matches!(
        p.client.handle_msg(b, stream(), data(0), p.now).unwrap(),
        Handled::Consumed
    ));
    assert!(p.client.is_linked());
    assert_eq!(p.client.legs().collect::<Vec<_>>(), vec![(a, true)]);
}

/// Exit side refusals: a ninth leg (here: beyond max_legs), LINK on a
/// circuit with streams, impossible sequence numbers. None touches the set.
#[test]
fn exit_refusals() {
    let t0 = Instant::now();
    let mut cfg = ConfluxConfig::exit();
    cfg.max_legs = 2;
    let mut e = ConfluxSet::new_exit(nonce(7), cfg);
    let link = |recv: u64| {
        ConfluxLink::new(
            LinkInfo {
                nonce: nonce(7),
                last_seqno_sent: 0,
                last_seqno_recv: recv,
                desired_ux: V1DesiredUx::HIGH_THROUGHPUT,
            }
            .to_payload()
            .unwrap(),
        )
    };
    assert_eq!(
        e.accept_link(&link(0), true, t0).unwrap_err(),
        ConfluxError::LinkOnUsedCircuit
    );
    assert!(matches!(
        e.accept_link(&link(5), false, t0),
        Err(ConfluxError::ImpossibleLinkSeq {
            claimed: 5,
            sent: 0,
            ..
        })
    ));
    e.accept_link(&link(0), false, t0).unwrap();
    e.accept_link(&link(0), false, t0).unwrap();
    assert_eq!(
        e.accept_link(&link(0), false, t0).unwrap_err(),
        ConfluxError::TooManyLegs { max: 2 }
    );
    assert!(!e.is_closed());
    assert_eq!(e.linked_legs(), 2);
    // Another set's LINK.
    let mut e2 = ConfluxSet::new_exit(nonce(9), ConfluxConfig::exit());
    assert!(e2.accept_link(&link(0), false, t0).is_err());
    assert_eq!(e2.linked_legs(), 0);
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

/// Leg loss without lost data: the set goes on with the other legs.
#[test]
fn leg_loss_without_data_loss_continues() {
    let (mut p, legs) = linked_pair(7, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    // Traffic on both legs both ways, the last of it on A.
    p.client_send_on(b, 0);
    p.exit_send_on(b, 0);
    p.client_send_on(a, 1);
    p.exit_send_on(a, 1);
    p.run();
    let info = LegClosedInfo {
        inflight: 3,
        sendme_inc: 31,
    };
    p.client.leg_closed(b, info, p.now).unwrap();
    p.exit.leg_closed(p.map[&b], info, p.now).unwrap();
    assert!(p.client.is_linked());
    for i in 2..20 {
        p.client_send(&mut RandomChooser(Xs(u64::from(i) + 100)), i);
        p.exit_send(&mut RandomChooser(Xs(u64::from(i))), i);
    }
    p.run();
    assert_eq!(p.got_client, (0..20).collect::<Vec<_>>());
    assert_eq!(p.got_exit, (0..20).collect::<Vec<_>>());
}

/// Leg loss with possible data loss closes the set, naming the rule.
#[test]
fn leg_loss_with_data_loss_closes() {
    let none = LegClosedInfo::default();

    // Our current sending leg.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    p.client_send_on(legs[1], 0);
    assert_eq!(
        p.client.leg_closed(legs[1], none, p.now).unwrap_err(),
        ConfluxError::LegLost {
            leg: legs[1],
            rule: LegLossRule::CurrentSendingLeg
        }
    );
    assert!(p.client.is_closed());

    // A leg with a SENDME's worth of DATA unacknowledged.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    p.client_send_on(legs[1], 0);
    p.client_send_on(legs[0], 1);
    let e = p
        .client
        .leg_closed(
            legs[1],
            LegClosedInfo {
                inflight: 31,
                sendme_inc: 31,
            },
            p.now,
        )
        .unwrap_err();
    assert_eq!(
        e,
        ConfluxError::LegLost {
            leg: legs[1],
            rule: LegLossRule::DataInFlight
        }
    );

    // Receive side: the exit sent 1..=5 on A, then switched to B; A dies
    // before its cells arrive. The gap is detected when A closes.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    for i in 0..5 {
        p.exit_send_on(a, i);
    }
    p.exit_send_on(b, 5);
    // Deliver only B's pipe.
    let down_b: Vec<_> = p.down.get_mut(&b).unwrap().q.drain(..).collect();
    p.down.get_mut(&a).unwrap().q.clear();
    for (_, s, m) in down_b {
        p.client.handle_msg(b, s, m, p.now).unwrap();
    }
    assert_eq!(p.client.reorder_waiting(), 1);
    assert_eq!(
        p.client.leg_closed(a, none, p.now).unwrap_err(),
        ConfluxError::LegLost {
            leg: a,
            rule: LegLossRule::GapCannotFill
        }
    );

    // ... or, if B's SWITCH comes later, when it arrives.
    let (mut p, legs) = linked_pair(8, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    for i in 0..5 {
        p.exit_send_on(a, i);
    }
    p.exit_send_on(b, 5);
    let down_b: Vec<_> = p.down.get_mut(&b).unwrap().q.drain(..).collect();
    p.client.leg_closed(a, none, p.now).unwrap();
    let mut res = Ok(Handled::Consumed);
    for (_, s, m) in down_b {
        res = p.client.handle_msg(b, s, m, p.now);
        if res.is_err() {
            break;
        }
    }
    assert_eq!(
        res.unwrap_err(),
        ConfluxError::LegLost {
            leg: b,
            rule: LegLossRule::GapCannotFill
        }
    );

    // The last leg.
    let (mut p, legs) = linked_pair(8, 0, &[5]);
    assert_eq!(
        p.client.leg_closed(legs[0], none, p.now).unwrap_err(),
        ConfluxError::LegLost {
            leg: legs[0],
            rule: LegLossRule::NoLegsLeft
        }
    );

    // A leg still linking just leaves.
    let (mut p, _) = linked_pair(8, 0, &[5]);
    let c = p.client.add_leg(p.now).unwrap();
    p.client.leg_closed(c, none, p.now).unwrap();
    assert!(p.client.is_linked());
}

/// Two linked legs A and B with 30 DATA each way spread over them, then
/// 1 more on A, B lost on both ends, and DATA 31..40 in flight on A.
/// Returns the pair, A, B, the choosers, and the client's
/// `last_seq_sent` before the in-flight part.
fn lose_b_with_data_in_flight(
    seed: u64,
    jitter_ms: u64,
) -> (Pair, LegId, LegId, RandomChooser, RandomChooser, u64) {
    let (mut p, legs) = linked_pair(seed, jitter_ms, &[5, 12]);
    let (a, b) = (legs[0], legs[1]);
    let mut cc = RandomChooser(Xs(seed + 2));
    let mut ce = RandomChooser(Xs(seed + 3));
    for i in 0..30 {
        p.client_send(&mut cc, i);
        p.exit_send(&mut ce, i);
    }
    p.run();
    // Make A the current leg on both ends, then lose B.
    p.client_send_on(a, 30);
    p.exit_send_on(a, 30);
    p.run();
    let delivered = p.client.last_seq_sent();
    p.client
        .leg_closed(b, LegClosedInfo::default(), p.now)
        .unwrap();
    p.exit
        .leg_closed(p.map[&b], LegClosedInfo::default(), p.now)
        .unwrap();
    p.map.remove(&b);
    p.up.remove(&b);
    p.down.remove(&b);
    // Data in flight on A while the new leg links.
    for i in 31..40 {
        p.client_send_on(a, i);
        p.exit_send_on(a, i);
    }
    (p, a, b, cc, ce, delivered)
}

/// Send DATA `from..200` both ways on any leg and check that both ends
/// got 0..200 in order.
fn finish_to_200(p: &mut Pair, cc: &mut RandomChooser, ce: &mut RandomChooser, from: u32) {
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

/// A set that lost a leg links a replacement (same nonce, current sequence
/// numbers, prop 329 §2.4.4), even with data in flight on the survivor,
/// and sequencing stays right in both directions.
#[test]
fn replacement_leg_after_loss() {
    let (mut p, _, b, mut cc, mut ce, _) = lose_b_with_data_in_flight(9, 3);
    let c = p.launch(Duration::from_millis(2));
    assert_ne!(c, b);
    p.run();
    assert_eq!(p.client.linked_legs(), 2);
    assert_eq!(p.exit.linked_legs(), 2);
    finish_to_200(&mut p, &mut cc, &mut ce, 40);
    assert!(p.switches_down > 0 && p.switches_up > 0);
}

/// A replacement leg whose LINK claims only what the exit surely has
/// (`add_leg_delivered`, for C-tor's data-loss check) while more is in
/// flight on the survivor: its numbers start there, our first message on
/// it carries a SWITCH over the rest, and both directions stay in order.
#[test]
fn replacement_leg_links_with_an_older_last_seqno_sent() {
    let (mut p, _, _, mut cc, mut ce, delivered) = lose_b_with_data_in_flight(19, 2);
    assert!(p.client.last_seq_sent() > delivered);
    let c = p.launch_delivered(Duration::from_millis(1), delivered);
    p.run();
    assert_eq!(p.client.linked_legs(), 2);
    assert_eq!(p.exit.linked_legs(), 2);
    let st = p.client.leg_stats(c).unwrap();
    assert_eq!(st.last_seq_sent, delivered, "numbers start at the claim");
    // The first message on the new leg jumps the gap with a SWITCH.
    let switches = p.switches_up;
    p.client_send_on(c, 40);
    assert_eq!(p.switches_up, switches + 1);
    p.exit_send(&mut ce, 40);
    finish_to_200(&mut p, &mut cc, &mut ce, 41);
}

/// `leg_stats`: per-leg DATA bytes and messages each way, SWITCHes sent
/// and received (prop 329 §2.6), the legs' last sequence numbers; zeros
/// for a linked leg that carried nothing, `None` for a leg still linking
/// or unknown; kept after the leg closes.
#[test]
fn leg_stats_count_each_leg_and_survive_its_close() {
    let (mut p, legs) = linked_pair(21, 0, &[5, 9]);
    let (a, b) = (legs[0], legs[1]);
    let zero = LegStats::default();
    assert_eq!(p.client.leg_stats(a), Some(zero));
    assert_eq!(p.exit.leg_stats(p.map[&b]), Some(zero));
    assert_eq!(p.client.leg_stats(LegId(200)), None);

    // Client: 2 DATA (4 bytes each) on A, then one on B (after a
    // SWITCH(2)), then one on A again (after a SWITCH(1)).
    p.client_send_on(a, 0);
    p.client_send_on(a, 1);
    p.client_send_on(b, 2);
    p.client_send_on(a, 3);
    // Exit: DATA on A, then END on B (after a SWITCH(1)), DATA on A
    // (after a SWITCH(1)).
    p.exit_send_on(a, 0);
    let out = p
        .exit
        .send_on(p.map[&b], stream(), End::new_misc().into())
        .unwrap();
    assert!(out.switch.is_some(), "a SWITCH, then the message");
    for (s, m) in out.into_msgs() {
        p.push_down(b, s, m);
    }
    p.exit_send_on(a, 1);
    // The pair only delivers DATA: feed the client A's then B's pipe.
    for leg in [a, b] {
        let down: Vec<_> = p.down.get_mut(&leg).unwrap().q.drain(..).collect();
        for (_, s, m) in down {
            p.client.handle_msg(leg, s, m, p.now).unwrap();
        }
    }
    let mut got = Vec::new();
    while let Some(d) = p.client.poll_delivered() {
        got.push((d.seq, d.leg, d.msg.cmd()));
    }
    assert_eq!(
        got,
        vec![
            (1, a, RelayCmd::DATA),
            (2, b, RelayCmd::END),
            (3, a, RelayCmd::DATA)
        ]
    );
    p.run();
    assert_eq!(p.got_exit, vec![0, 1, 2, 3]);

    let sa = p.client.leg_stats(a).unwrap();
    let sb = p.client.leg_stats(b).unwrap();
    assert_eq!(
        sa,
        LegStats {
            data_bytes_sent: 12,
            data_bytes_received: 8,
            msgs_sent: 3,
            msgs_received: 2,
            switches_sent: 1,
            switches_received: 1,
            last_seq_sent: 4,
            last_seq_recv: 3,
        }
    );
    assert_eq!(
        sb,
        LegStats {
            data_bytes_sent: 4,
            data_bytes_received: 0,
            msgs_sent: 1,
            msgs_received: 1,
            switches_sent: 1,
            switches_received: 1,
            last_seq_sent: 3,
            last_seq_recv: 2,
        }
    );
    // The exit's view of the same legs mirrors the client's.
    let ea = p.exit.leg_stats(p.map[&a]).unwrap();
    let eb = p.exit.leg_stats(p.map[&b]).unwrap();
    assert_eq!(
        (
            ea.data_bytes_received,
            ea.msgs_received,
            ea.switches_received
        ),
        (12, 3, 1)
    );
    assert_eq!(
        (ea.data_bytes_sent, ea.msgs_sent, ea.switches_sent),
        (8, 2, 1)
    );
    assert_eq!((ea.last_seq_sent, ea.last_seq_recv), (3, 4));
    assert_eq!(
        (
            eb.data_bytes_received,
            eb.msgs_received,
            eb.switches_received
        ),
        (4, 1, 1)
    );
    assert_eq!(
        (eb.data_bytes_sent, eb.msgs_sent, eb.switches_sent),
        (0, 1, 1)
    );
    assert_eq!((eb.last_seq_sent, eb.last_seq_recv), (2, 3));

    // B closes (not the current leg on either end, nothing in flight):
    // the sets go on and B's counters stay, with its last numbers.
    p.client
        .leg_closed(b, LegClosedInfo::default(), p.now)
        .unwrap();
    p.exit
        .leg_closed(p.map[&b], LegClosedInfo::default(), p.now)
        .unwrap();
    assert!(p.client.is_linked() && p.exit.is_linked());
    assert_eq!(p.client.leg_stats(b), Some(sb));
    assert_eq!(p.exit.leg_stats(p.map[&b]), Some(eb));
    // A goes on counting; B does not.
    p.client_send_on(a, 4);
    p.run();
    let sa2 = p.client.leg_stats(a).unwrap();
    assert_eq!((sa2.msgs_sent, sa2.data_bytes_sent), (4, 16));
    assert_eq!((sa2.switches_sent, sa2.last_seq_sent), (1, 5));
    assert_eq!(p.client.leg_stats(b), Some(sb));

    // A leg still linking has none; once linked, zeros and its starting
    // numbers (prop 329 §2.4.4: our LINK's).
    let c = p.launch(Duration::from_millis(2));
    assert_eq!(p.client.leg_stats(c), None);
    p.run();
    assert_eq!(
        p.client.leg_stats(c),
        Some(LegStats {
            last_seq_sent: 5,
            last_seq_recv: 3,
            ..LegStats::default()
        })
    );
    assert_eq!(
        p.exit.leg_stats(p.map[&c]),
        Some(LegStats {
            last_seq_sent: 3,
            last_seq_recv: 5,
            ..LegStats::default()
        })
    );
}

// Resumption (Braid proposal 001 §3).
#[path = "resume_tests.rs"]
mod resume_tests;
