//! Hostile input against a client [`ConfluxSet`], as a malicious or broken
//! exit would send it: LINKED with a nonce one byte off, LINKED that never
//! comes, SWITCH floods (repeated, zero, huge), sequence gaps meant to fill
//! the reorder queue, cells on a leg that is not linked, and the exit's
//! own handshake messages sent back.
//!
//! For each: the leg (while it is linking) or the set (once linked) is
//! closed with the error naming the rule (variant, kind and the spec
//! reference in its `Display`), the reorder queue never holds more than
//! its limit and does not move under a flood, and a second set, a
//! bystander with data of its own, is unaffected. The test plays the exit
//! itself: it reads each LINK from `poll_transmit` and answers.

use std::time::{Duration, Instant};

use tor_cell::chancell::msg::DestroyReason;
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{
    AnyRelayMsg, BeginDir, ConfluxLink, ConfluxLinked, ConfluxLinkedAck, ConfluxSwitch, Connected,
    Data, End,
};

use super::*;
use crate::ids::{LegId, StreamId};

fn nonce(seed: u8) -> ConfluxNonce {
    let mut b = [0_u8; NONCE_LEN];
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    ConfluxNonce::from_bytes(b)
}

fn stream() -> Option<StreamId> {
    StreamId::new(1)
}

fn data(i: u32) -> AnyRelayMsg {
    Data::new(&i.to_be_bytes()).unwrap().into()
}

/// A full DATA cell (498 bytes), as a queue-filling peer would send.
fn big_data() -> AnyRelayMsg {
    Data::new(&[0xa5; 498]).unwrap().into()
}

fn switch(rel: u32) -> AnyRelayMsg {
    ConfluxSwitch::new(rel).into()
}

/// The exit's CONFLUX_LINKED with `nonce` and sequence numbers.
fn linked_msg(nonce: &ConfluxNonce, sent: u64, recv: u64) -> AnyRelayMsg {
    ConfluxLinked::new(
        LinkInfo {
            nonce: nonce.clone(),
            last_seqno_sent: sent,
            last_seqno_recv: recv,
            desired_ux: V1DesiredUx::MIN_LATENCY,
        }
        .to_payload()
        .unwrap(),
    )
    .into()
}

/// A client set as the exit sees it: what each leg's LINK said.
#[derive(Debug)]
struct Client {
    set: ConfluxSet,
    /// The LINK payload of each leg launched, in launch order.
    links: Vec<(LegId, LinkInfo)>,
    events: Vec<ConfluxEvent>,
    now: Instant,
}

impl Client {
    fn new(seed: u8, config: ConfluxConfig) -> Self {
        Self {
            set: ConfluxSet::new_client(nonce(seed), config),
            links: Vec::new(),
            events: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Launch a leg; its LINK is read off `poll_transmit`.
    fn launch(&mut self) -> LegId {
        let leg = self.set.add_leg(self.now).unwrap();
        let (l, m) = self.set.poll_transmit().unwrap();
        assert_eq!(l, leg);
        let AnyRelayMsg::ConfluxLink(link) = m else {
            panic!("not a LINK: {m:?}");
        };
        self.links.push((leg, LinkInfo::from_link(&link).unwrap()));
        assert!(self.set.poll_transmit().is_none());
        leg
    }

    /// The honest LINKED for `leg` (its LINK's nonce).
    fn honest_linked(&self, leg: LegId) -> AnyRelayMsg {
        let info = &self.links.iter().find(|(l, _)| *l == leg).unwrap().1;
        linked_msg(&info.nonce, info.last_seqno_recv, info.last_seqno_sent)
    }

    /// Hand `msg` to the set on `leg`.
    fn feed(&mut self, leg: LegId, msg: AnyRelayMsg) -> Result<Handled, ConfluxError> {
        let s = if is_multiplexed(msg.cmd()) {
            stream()
        } else {
            None
        };
        self.set.handle_msg(leg, s, msg, self.now)
    }

    /// Answer `leg` honestly; expect its LINKED_ACK.
    fn link(&mut self, leg: LegId) {
        let m = self.honest_linked(leg);
        assert!(matches!(self.feed(leg, m), Ok(Handled::Consumed)));
        let (l, ack) = self.set.poll_transmit().unwrap();
        assert_eq!((l, ack.cmd()), (leg, RelayCmd::CONFLUX_LINKED_ACK));
        self.drain_events();
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.set.poll_event() {
            self.events.push(e);
        }
    }

    /// Messages delivered in order, as `(seq, leg)`.
    fn delivered(&mut self) -> Vec<(u64, LegId)> {
        let mut v = Vec::new();
        while let Some(d) = self.set.poll_delivered() {
            v.push((d.seq, d.leg));
        }
        v
    }

    /// The `LegFailed` events seen so far.
    fn failed(&self) -> Vec<(LegId, ConfluxError)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ConfluxEvent::LegFailed { leg, error } => Some((*leg, error.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A linked client set with `n` legs, default config.
fn linked(seed: u8, n: usize) -> (Client, Vec<LegId>) {
    linked_with(seed, n, ConfluxConfig::client())
}

fn linked_with(seed: u8, n: usize, config: ConfluxConfig) -> (Client, Vec<LegId>) {
    let mut c = Client::new(seed, config);
    let legs: Vec<LegId> = (0..n).map(|_| c.launch()).collect();
    for l in &legs {
        c.link(*l);
    }
    assert!(c.set.is_linked());
    assert!(
        c.events
            .contains(&ConfluxEvent::SetLinked { legs: legs.len() })
    );
    (c, legs)
}

/// A second set with state of its own: two legs, cell 1 delivered, cell 3
/// held for the gap at 2.
struct Bystander {
    c: Client,
    legs: Vec<LegId>,
    bytes: usize,
}

impl Bystander {
    fn new() -> Self {
        let (mut c, legs) = linked(200, 2);
        c.feed(legs[0], data(1)).unwrap();
        assert_eq!(c.delivered(), vec![(1, legs[0])]);
        c.feed(legs[1], switch(2)).unwrap();
        c.feed(legs[1], data(3)).unwrap();
        assert_eq!(c.set.reorder_waiting(), 1);
        let bytes = c.set.reorder_bytes();
        assert!(bytes > 0);
        Self { c, legs, bytes }
    }

    /// Untouched by whatever happened to the other set, and still works:
    /// cell 2 fills the gap and 2, 3 come out.
    fn check(mut self) {
        assert!(self.c.set.is_linked());
        assert!(!self.c.set.is_closed());
        assert_eq!(self.c.set.reorder_bytes(), self.bytes);
        assert_eq!(self.c.set.last_seq_delivered(), 1);
        self.c.feed(self.legs[0], data(2)).unwrap();
        assert_eq!(
            self.c.delivered(),
            vec![(2, self.legs[0]), (3, self.legs[1])]
        );
        assert_eq!(self.c.set.reorder_bytes(), 0);
    }
}

/// `e` is a protocol violation whose message cites `rule`.
fn assert_violation(e: &ConfluxError, rule: &str) {
    assert!(e.is_protocol_violation(), "{e:?}");
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
    let text = e.to_string();
    assert!(text.contains(rule), "{text:?} does not cite {rule:?}");
}

/// LINKED whose nonce differs from the LINK's in one byte (first, middle,
/// last; one bit or all of them) fails that leg only, with `WrongNonce`
/// (prop 329 §4.2.1). The leg is gone: an honest LINKED after it is for
/// no leg of the set.
///
/// TROVE-2026-004, the client's side: C-tor's `conflux_process_linked`
/// (conflux_pool.c, `syphyr/tor` main at 817b7105f2) compares the LINKED
/// nonce with `tor_memneq(link->nonce, circ->conflux_pending_nonce,
/// sizeof(*link->nonce))`, one byte of 32; the fix compares all of them.
/// Braid compares in constant time over 32 bytes (`ConfluxNonce::ct_eq`).
/// The exit's side: `relay::trove_tests`.
#[test]
fn trove_2026_004_nonce_compared_in_full_client() {
    let by = Bystander::new();
    for pos in [0, 15, NONCE_LEN - 1] {
        for flip in [0x01_u8, 0x80, 0xff] {
            let mut c = Client::new(7, ConfluxConfig::client());
            let a = c.launch();
            let b = c.launch();
            let mut bytes = *c.links[1].1.nonce.as_bytes();
            bytes[pos] ^= flip;
            let forged = linked_msg(&ConfluxNonce::from_bytes(bytes), 0, 0);
            assert!(matches!(c.feed(b, forged), Ok(Handled::Consumed)));
            // No LINKED_ACK for a forged LINKED.
            assert!(c.set.poll_transmit().is_none());
            c.drain_events();
            let failed = c.failed();
            assert_eq!(failed, vec![(b, ConfluxError::WrongNonce { leg: b })]);
            assert_violation(&failed[0].1, "prop 329 §4.2.1");
            assert!(failed[0].1.to_string().contains("nonce"));
            assert!(!c.set.is_closed());
            assert_eq!(c.set.legs().collect::<Vec<_>>(), vec![(a, false)]);
            // The honest answer comes too late for b; a links the set.
            let honest = c.honest_linked(b);
            assert_eq!(
                c.feed(b, honest).unwrap_err(),
                ConfluxError::NoSuchLeg { leg: b }
            );
            c.link(a);
            assert!(c.set.is_linked());
            assert!(c.events.contains(&ConfluxEvent::SetLinked { legs: 1 }));
            c.feed(a, data(1)).unwrap();
            assert_eq!(c.delivered(), vec![(1, a)]);
        }
    }
    // Another set's whole nonce, too.
    let mut c = Client::new(7, ConfluxConfig::client());
    let a = c.launch();
    assert!(matches!(
        c.feed(a, linked_msg(&nonce(200), 0, 0)),
        Ok(Handled::Consumed)
    ));
    c.drain_events();
    assert_eq!(c.failed(), vec![(a, ConfluxError::WrongNonce { leg: a })]);
    assert_eq!(c.set.legs().count(), 0);
    assert!(!c.set.is_linked());
    by.check();
}

/// A (forged or honest) LINKED on a leg already linked closes the set:
/// LINKED only on an unlinked circuit (prop 329 §4.2.1).
#[test]
fn linked_again_on_a_linked_leg_closes_the_set() {
    let by = Bystander::new();
    for honest in [true, false] {
        let (mut c, legs) = linked(7, 2);
        let m = if honest {
            c.honest_linked(legs[0])
        } else {
            linked_msg(&nonce(8), 0, 0)
        };
        let e = c.feed(legs[0], m).unwrap_err();
        assert_eq!(e, ConfluxError::LinkedTwice { leg: legs[0] });
        assert_violation(&e, "prop 329 §4.2.1");
        assert!(c.set.is_closed());
        assert_eq!(c.set.close_reason(), Some(&e));
        assert_eq!(c.feed(legs[1], data(1)).unwrap_err(), ConfluxError::Closed);
    }
    by.check();
}

/// LINKED that never comes: the deadline is exposed, nothing happens
/// before it, at it the leg fails with `LinkTimeout` (prop 329 §2.2) and
/// the set goes on with the legs that linked. A LINKED arriving after the
/// deadline but before the timer ran fails the leg the same way.
#[test]
fn linked_that_never_comes_times_out() {
    let by = Bystander::new();
    let timeout = ConfluxConfig::client().link_timeout;
    let mut c = Client::new(7, ConfluxConfig::client());
    let t0 = c.now;
    let a = c.launch();
    c.now = t0 + Duration::from_millis(300);
    let b = c.launch();
    assert_eq!(c.set.poll_timeout(), Some(t0 + timeout));
    c.now = t0 + Duration::from_secs(1);
    c.link(b);
    // Only a is awaited now.
    assert_eq!(c.set.poll_timeout(), Some(t0 + timeout));
    c.set.handle_timeout(t0 + timeout - Duration::from_nanos(1));
    c.drain_events();
    assert!(c.failed().is_empty());
    assert!(!c.set.is_linked());
    c.set.handle_timeout(t0 + timeout);
    c.drain_events();
    let failed = c.failed();
    assert_eq!(
        failed,
        vec![(a, ConfluxError::LinkTimeout { leg: a, timeout })]
    );
    let e = &failed[0].1;
    assert_eq!(e.kind(), ConfluxErrorKind::Timeout);
    assert_eq!(e.destroy_reason(), DestroyReason::TIMEOUT);
    assert!(e.to_string().contains("prop 329 §2.2"), "{e}");
    assert_eq!(c.set.poll_timeout(), None);
    // The set links with b alone, once.
    assert!(c.set.is_linked());
    assert!(!c.set.is_closed());
    assert_eq!(
        c.events
            .iter()
            .filter(|e| matches!(e, ConfluxEvent::SetLinked { .. }))
            .count(),
        1
    );
    // The late LINKED is for no leg; timers with nothing due do nothing.
    let late = c.honest_linked(a);
    assert_eq!(
        c.feed(a, late).unwrap_err(),
        ConfluxError::NoSuchLeg { leg: a }
    );
    for i in 0..10_000 {
        c.set
            .handle_timeout(t0 + timeout + Duration::from_millis(i));
    }
    assert!(c.set.poll_event().is_none());
    c.feed(b, data(1)).unwrap();
    assert_eq!(c.delivered(), vec![(1, b)]);

    // LINKED one nanosecond late, before handle_timeout ran.
    let mut c = Client::new(7, ConfluxConfig::client());
    let a = c.launch();
    let m = c.honest_linked(a);
    c.now += timeout + Duration::from_nanos(1);
    assert!(matches!(c.feed(a, m), Ok(Handled::Consumed)));
    assert!(c.set.poll_transmit().is_none());
    c.drain_events();
    assert_eq!(
        c.failed(),
        vec![(a, ConfluxError::LinkTimeout { leg: a, timeout })]
    );
    by.check();
}

/// No leg ever links: every launch times out and fails alone, and the set
/// never becomes usable. (The relaunch budget, prop 329 §4.2.2, is the
/// tunnel's: see braid-sim's tunnel tests.)
#[test]
fn no_leg_ever_links() {
    let by = Bystander::new();
    let config = ConfluxConfig::client();
    let mut c = Client::new(7, config);
    let launches = 12;
    for _ in 0..launches {
        c.set.add_leg(c.now).unwrap();
        while c.set.poll_transmit().is_some() {}
        let due = c.set.poll_timeout().unwrap();
        c.now = due;
        c.set.handle_timeout(due);
        c.drain_events();
        assert_eq!(c.set.legs().count(), 0);
        assert_eq!(c.set.poll_timeout(), None);
        assert!(!c.set.is_linked());
    }
    assert_eq!(c.failed().len(), launches);
    assert!(
        c.failed()
            .iter()
            .all(|(_, e)| matches!(e, ConfluxError::LinkTimeout { .. }))
    );
    assert!(!c.set.is_linked());
    let mut chooser = StickyLowestRtt;
    assert_eq!(
        c.set
            .send(&mut chooser, &[], stream(), data(0), c.now)
            .unwrap_err(),
        ConfluxError::NotLinked
    );
    by.check();
}

/// 100 000 SWITCH cells with no data between them, on one leg that has
/// just carried a cell: a SWITCH(1) there is fine (it moves the leg on),
/// and then every further one is empty (repeated, prop 329 §4.2.1); a
/// flood of SWITCH(0) is empty from the first (zero after data, §2.6).
/// Exactly `MAX_EMPTY_SWITCHES` empty ones are tolerated (C-tor sends a
/// few), the next closes the set (`SwitchRepeated` / `SwitchZero`,
/// §4.2.3), every later one is refused as `Closed`, and the reorder queue
/// (holding one cell for a gap) does not move until the set closes and
/// empties it.
#[test]
fn switch_flood_on_one_leg() {
    let by = Bystander::new();
    let max = MAX_EMPTY_SWITCHES as usize;
    for (rel, passing) in [(1, 1 + max), (0, max)] {
        let (mut c, legs) = linked(7, 2);
        let (a, b) = (legs[0], legs[1]);
        c.feed(a, data(1)).unwrap();
        c.feed(b, switch(2)).unwrap();
        c.feed(b, data(3)).unwrap();
        assert_eq!(c.delivered(), vec![(1, a)]);
        let (bytes, waiting) = (c.set.reorder_bytes(), c.set.reorder_waiting());
        assert_eq!(waiting, 1);
        let mut results = Vec::new();
        for _ in 0..100_000 {
            results.push(c.feed(b, switch(rel)));
            // Unmoved while open; emptied once closed (TROVE-2026-010).
            let open = !c.set.is_closed();
            assert_eq!(c.set.reorder_bytes(), if open { bytes } else { 0 });
            assert_eq!(c.set.reorder_waiting(), if open { waiting } else { 0 });
        }
        assert!(
            results[..passing]
                .iter()
                .all(|r| matches!(r, Ok(Handled::Consumed))),
            "SWITCH({rel})"
        );
        let e = results[passing].as_ref().unwrap_err();
        if rel == 0 {
            assert_eq!(e, &ConfluxError::SwitchZero { leg: b });
            assert_violation(e, "prop 329 §2.6");
        } else {
            assert_eq!(e, &ConfluxError::SwitchRepeated { leg: b });
            assert_violation(e, "prop 329 §4.2.1");
        }
        assert!(
            results[passing + 1..]
                .iter()
                .all(|r| matches!(r, Err(ConfluxError::Closed)))
        );
        assert_eq!(c.set.close_reason(), Some(e));
        assert!(c.delivered().is_empty());
        assert!(c.set.reorder_peak_bytes() <= c.set.reorder_limit().max_bytes);
    }
    by.check();
}

/// 100 000 SWITCHes round-robin over three legs with no data: spreading
/// them does not buy more, the count of empty ones is the set's. Before
/// any data each leg may take one SWITCH(0) (C-tor's first-leg race), the
/// rest are repeats; after data every SWITCH(0) is empty. Either way
/// exactly `MAX_EMPTY_SWITCHES` empty ones pass and the next closes the
/// set.
#[test]
fn switch_flood_across_legs() {
    let max = MAX_EMPTY_SWITCHES as usize;
    for data_first in [true, false] {
        let (mut c, legs) = linked(7, 3);
        if data_first {
            c.feed(legs[0], data(1)).unwrap();
            assert_eq!(c.delivered(), vec![(1, legs[0])]);
        }
        let bytes = c.set.reorder_bytes();
        let results: Vec<_> = (0..100_000)
            .map(|n| {
                let r = c.feed(legs[n % 3], switch(0));
                assert_eq!(c.set.reorder_bytes(), bytes);
                r
            })
            .collect();
        let passing = if data_first { max } else { 3 + max };
        assert!(results[..passing].iter().all(Result::is_ok));
        let leg = legs[passing % 3];
        let expected = if data_first {
            ConfluxError::SwitchZero { leg }
        } else {
            ConfluxError::SwitchRepeated { leg }
        };
        assert_eq!(results[passing].as_ref().unwrap_err(), &expected);
        assert!(
            results[passing + 1..]
                .iter()
                .all(|r| matches!(r, Err(ConfluxError::Closed)))
        );
        assert_eq!(c.set.close_reason(), Some(&expected));
        assert_eq!(c.set.reorder_bytes(), 0);
        assert!(c.set.is_closed());
    }
}

/// An honest but relentless peer: 100 000 SWITCH + DATA pairs alternating
/// between two legs, every cell in order. Nothing waits in the queue, all
/// is delivered, the set stays open.
#[test]
fn legitimate_switch_storm_keeps_the_queue_empty() {
    let (mut c, legs) = linked(7, 2);
    c.feed(legs[0], data(0)).unwrap();
    let mut expected = 1;
    assert_eq!(c.delivered(), vec![(1, legs[0])]);
    for i in 1..100_000_u32 {
        let leg = legs[(i % 2) as usize];
        c.feed(leg, switch(1)).unwrap();
        c.feed(leg, data(i)).unwrap();
        expected += 1;
        assert_eq!(c.set.reorder_waiting(), 0);
        let d = c.delivered();
        assert_eq!(d, vec![(expected, leg)]);
    }
    assert!(!c.set.is_closed());
    // At most the one cell, momentarily, before it was taken.
    assert_eq!(c.set.reorder_peak_cells(), 1);
}

/// SWITCH with relative seqno 0: before any data it is C-tor's first-leg
/// race, once per leg, and not counted; after data it moves nothing
/// (prop 329 §2.6), but C-tor sends such "empty" switches when it flips
/// legs without sending (see [`ctor_empty_switches_keep_the_set_open`]):
/// `MAX_EMPTY_SWITCHES` in a row are tolerated, the next closes the set
/// (§4.2.3). Any multiplexed cell starts the count again.
#[test]
fn switch_zero() {
    let by = Bystander::new();
    let max = MAX_EMPTY_SWITCHES;
    // Before data: the first is free, the repeats count.
    let (mut c, legs) = linked(7, 2);
    for _ in 0..=max {
        c.feed(legs[1], switch(0)).unwrap();
    }
    assert_eq!(
        c.feed(legs[1], switch(0)).unwrap_err(),
        ConfluxError::SwitchRepeated { leg: legs[1] }
    );

    // After data: a few are tolerated, on either leg.
    let (mut c, legs) = linked(7, 2);
    c.feed(legs[0], data(1)).unwrap();
    for i in 0..max {
        c.feed(legs[(i % 2) as usize], switch(0)).unwrap();
    }
    // One DATA (on the leg that carried 1: it is 2) resets the count...
    c.feed(legs[0], data(2)).unwrap();
    assert_eq!(c.delivered(), vec![(1, legs[0]), (2, legs[0])]);
    // ... so as many again pass.
    for i in 0..max {
        c.feed(legs[(i % 2) as usize], switch(0)).unwrap();
    }
    assert!(!c.set.is_closed());
    c.feed(legs[0], data(3)).unwrap();
    assert_eq!(c.delivered(), vec![(3, legs[0])]);
    for _ in 0..max {
        c.feed(legs[1], switch(0)).unwrap();
    }
    assert!(c.set.is_linked());
    assert!(!c.set.is_closed());
    // One more closes the set.
    let e = c.feed(legs[1], switch(0)).unwrap_err();
    assert_eq!(e, ConfluxError::SwitchZero { leg: legs[1] });
    assert_violation(&e, "relative seqno 0");
    assert_violation(&e, "prop 329 §2.6");
    assert_violation(&e, &format!("the {}th switch in a row", max + 1));
    assert!(c.set.is_closed());
    assert_eq!(c.set.close_reason(), Some(&e));
    assert_eq!(c.feed(legs[0], data(4)).unwrap_err(), ConfluxError::Closed);
    by.check();
}

/// C-tor's sending side (`conflux_decide_circ_for_send` in conflux.c):
/// the leg it is on and each leg's `last_seq_sent`. Deciding on another
/// leg sends SWITCH(current's `last_seq_sent` - the new leg's) on it and
/// brings the new leg level, whether or not a cell follows: C-tor also
/// decides when it only measures room to package. It also counts the
/// SWITCHes that move nothing, as the receiver sees them: a zero after
/// data, or one on a leg whose last SWITCH had no cell after it.
struct CTorSender {
    last_sent: Vec<(LegId, u64)>,
    current: usize,
    /// The relative numbers of the SWITCHes sent, in order.
    switches: Vec<u32>,
    /// Per leg: a SWITCH was sent on it and no cell since.
    pending: Vec<bool>,
    sent_any: bool,
    /// Empty SWITCHes: in all, in a row since the last cell, most in a row.
    empty: usize,
    empty_run: u32,
    max_empty_run: u32,
}

impl CTorSender {
    fn new(legs: &[LegId]) -> Self {
        Self {
            last_sent: legs.iter().map(|l| (*l, 0)).collect(),
            current: 0,
            switches: Vec::new(),
            pending: vec![false; legs.len()],
            sent_any: false,
            empty: 0,
            empty_run: 0,
            max_empty_run: 0,
        }
    }

    /// Pick leg `i`: a SWITCH on it if it is not the current one.
    fn decide(&mut self, c: &mut Client, i: usize) {
        if i == self.current {
            return;
        }
        let prev = self.last_sent[self.current].1;
        let (leg, last) = self.last_sent[i];
        let rel = u32::try_from(prev - last).unwrap();
        self.last_sent[i].1 = prev;
        self.current = i;
        self.switches.push(rel);
        if (rel == 0 && self.sent_any) || self.pending[i] {
            self.empty += 1;
            self.empty_run += 1;
            self.max_empty_run = self.max_empty_run.max(self.empty_run);
        }
        self.pending[i] = true;
        assert!(
            matches!(c.feed(leg, switch(rel)), Ok(Handled::Consumed)),
            "SWITCH({rel}) on {leg}: {:?}",
            c.set.close_reason()
        );
    }

    /// Pick leg `i` and send a DATA cell on it.
    fn send(&mut self, c: &mut Client, i: usize, tag: u32) {
        self.decide(c, i);
        self.last_sent[i].1 += 1;
        self.pending[i] = false;
        self.sent_any = true;
        self.empty_run = 0;
        let leg = self.last_sent[i].0;
        assert!(
            matches!(c.feed(leg, data(tag)), Ok(Handled::Consumed)),
            "DATA {tag} on {leg}: {:?}",
            c.set.close_reason()
        );
    }
}

/// What a C-tor 0.4.9 exit sends: data on A, then on B; it flips to A
/// (a SWITCH, no data) and back to B, which is level with A by then: a
/// SWITCH(0) on B after data on B. Later it moves to A again, whose last
/// SWITCH had no cell after it: a repeat; and flips to B and back to A
/// without data: SWITCH(0) on A after data on A. Those three are empty
/// switches, and the set must take them and deliver everything in order.
/// Then the same sender at random over three legs, up to
/// `MAX_EMPTY_SWITCHES - 1` flips without data before each cell (plus the
/// SWITCH that may come with the cell), so runs of exactly
/// `MAX_EMPTY_SWITCHES` empty ones: the set stays open and delivers each
/// cell at once, in order.
#[test]
fn ctor_empty_switches_keep_the_set_open() {
    let by = Bystander::new();
    let (mut c, legs) = linked(7, 2);
    let (a, b) = (legs[0], legs[1]);
    let mut tx = CTorSender::new(&legs);
    for i in 1..=3 {
        tx.send(&mut c, 0, i);
    }
    tx.send(&mut c, 1, 4);
    tx.send(&mut c, 1, 5);
    // Measuring room to package: A, then B again, nothing sent.
    tx.decide(&mut c, 0);
    tx.decide(&mut c, 1);
    tx.send(&mut c, 1, 6);
    tx.send(&mut c, 1, 7);
    // To A, whose SWITCH(2) had no cell after it.
    tx.send(&mut c, 0, 8);
    // B and back to A without data: SWITCH(0) on A after data on A.
    tx.decide(&mut c, 1);
    tx.decide(&mut c, 0);
    tx.send(&mut c, 0, 9);
    assert_eq!(tx.switches, vec![3, 2, 0, 2, 1, 0]);
    assert_eq!((tx.empty, tx.max_empty_run), (3, 1));
    assert!(c.set.is_linked());
    assert!(!c.set.is_closed());
    assert_eq!(
        c.delivered(),
        vec![
            (1, a),
            (2, a),
            (3, a),
            (4, b),
            (5, b),
            (6, b),
            (7, b),
            (8, a),
            (9, a)
        ]
    );
    assert_eq!(c.set.reorder_bytes(), 0);

    // At random, three legs.
    let (mut c, legs) = linked(8, 3);
    let mut tx = CTorSender::new(&legs);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        usize::try_from(rng % n).unwrap()
    };
    for seq in 1..=20_000_u64 {
        // Flips to another leg, no data.
        for _ in 0..next(u64::from(MAX_EMPTY_SWITCHES)) {
            let i = (tx.current + 1 + next(2)) % 3;
            tx.decide(&mut c, i);
        }
        let i = next(3);
        tx.send(&mut c, i, u32::try_from(seq).unwrap());
        // Each cell comes out at once, in order, on its leg.
        assert_eq!(c.delivered(), vec![(seq, legs[i])]);
        assert_eq!(c.set.reorder_waiting(), 0);
    }
    assert!(c.set.is_linked());
    assert!(!c.set.is_closed());
    let zeros = tx.switches.iter().filter(|r| **r == 0).count();
    assert!(zeros > 1000, "{zeros} SWITCH(0) of {}", tx.switches.len());
    assert!(tx.empty > 10_000, "{} empty", tx.empty);
    assert_eq!(tx.max_empty_run, MAX_EMPTY_SWITCHES);
    by.check();
}

/// A SWITCH jumping further than the other legs could have in flight
/// (`SwitchWindow`: 16 384 cells per other leg plus 8 per cell it
/// received) closes the set as implausible (prop 329 §4.2); one exactly at
/// the bound is accepted. `u32::MAX` is refused, nothing is queued.
#[test]
fn switch_with_huge_relative_seqno() {
    let by = Bystander::new();
    let window = ConfluxConfig::client().switch_window;
    let bound = window.capacity(0);
    assert_eq!(bound, 16_384);

    let (mut c, legs) = linked(7, 2);
    let e = c.feed(legs[1], switch(u32::MAX)).unwrap_err();
    assert_eq!(
        e,
        ConfluxError::SwitchTooFar {
            leg: legs[1],
            missing: u64::from(u32::MAX),
            bound
        }
    );
    assert_violation(&e, "implausible sequence jump");
    assert_eq!(c.set.reorder_bytes(), 0);

    // Exactly at the bound: fine; one more: refused.
    let rel = u32::try_from(bound).unwrap();
    let (mut c, legs) = linked(7, 2);
    c.feed(legs[1], switch(rel)).unwrap();
    let (mut c2, legs2) = linked(7, 2);
    assert!(matches!(
        c2.feed(legs2[1], switch(rel + 1)),
        Err(ConfluxError::SwitchTooFar { missing, bound: b, .. }) if missing == bound + 1 && b == bound
    ));
    // The bound sums over the other legs...
    let (mut c3, legs3) = linked(7, 3);
    assert!(c3.feed(legs3[2], switch(rel * 2)).is_ok());
    // ... and grows with what they received.
    c.feed(legs[1], data(0)).unwrap();
    for i in 0..10 {
        c.feed(legs[0], data(i)).unwrap();
    }
    assert!(matches!(
        c.feed(legs[1], switch(u32::MAX)),
        Err(ConfluxError::SwitchTooFar { bound: b, .. }) if b == window.capacity(10)
    ));
    by.check();
}

/// The gap attack: a SWITCH skips one sequence number (left to the other
/// leg, which never sends it) and the exit sends full DATA cells after it
/// until the queue is full. Every cell up to the limit is held, the queue
/// never exceeds its limit, the set closes with RESOURCELIMIT
/// (`ReorderQueueFull`, prop 329 §4.1), and later cells do not grow it.
#[test]
fn gap_attack_fills_the_queue_to_its_limit_and_no_further() {
    let by = Bystander::new();
    let (mut c, legs) = linked(7, 2);
    let limit = c.set.reorder_limit();
    assert_eq!(limit, ReorderSizer::initial_limit());
    c.feed(legs[1], switch(1)).unwrap();
    c.feed(legs[1], big_data()).unwrap();
    let cost = c.set.reorder_bytes();
    let fits = (limit.max_bytes / cost).min(limit.max_cells);
    let mut held = 1;
    let err = loop {
        match c.feed(legs[1], big_data()) {
            Ok(_) => held += 1,
            Err(e) => break e,
        }
        assert!(c.set.reorder_bytes() <= limit.max_bytes);
        assert_eq!(c.set.reorder_bytes(), held * cost);
        assert!(held <= fits, "held {held} > {fits}");
    };
    assert_eq!(held, fits);
    assert!(
        matches!(err, ConfluxError::ReorderQueueFull { cells, bytes, .. }
        if cells == fits && bytes == fits * cost)
    );
    assert!(err.is_resource_limit());
    assert_eq!(err.destroy_reason(), DestroyReason::RESOURCELIMIT);
    assert!(err.to_string().contains("prop 329 §4.1"), "{err}");
    assert!(c.set.is_closed());
    let full = c.set.reorder_bytes();
    for _ in 0..10_000 {
        assert_eq!(
            c.feed(legs[1], big_data()).unwrap_err(),
            ConfluxError::Closed
        );
        assert_eq!(
            c.feed(legs[0], big_data()).unwrap_err(),
            ConfluxError::Closed
        );
    }
    assert_eq!(c.set.reorder_bytes(), full);
    assert!(c.set.reorder_peak_bytes() <= limit.max_bytes);
    assert!(c.delivered().is_empty());
    by.check();
}

/// SWITCH(1) + full DATA on one leg until the set closes, each pair
/// leaving one sequence number to the other leg: how many pairs got
/// through, and the error that closed the set. Memory stays within the
/// limit at every step.
fn sparse_gaps(config: ConfluxConfig) -> (Client, Vec<LegId>, u64, ConfluxError) {
    let max_bytes = config.reorder.max_bytes;
    let (mut c, legs) = linked_with(7, 2, config);
    let mut jumps = 0_u64;
    let err = loop {
        let r = c
            .feed(legs[1], switch(1))
            .and_then(|_| c.feed(legs[1], big_data()));
        assert!(c.set.reorder_bytes() <= max_bytes);
        match r {
            Ok(_) => jumps += 1,
            Err(e) => break e,
        }
    };
    assert!(c.set.is_closed());
    assert!(c.set.reorder_peak_bytes() <= max_bytes);
    assert_eq!(c.set.reorder_peak_cells() as u64, jumps);
    assert_eq!(c.set.reorder_waiting(), 0, "emptied on close");
    (c, legs, jumps, err)
}

/// Many small gaps (see [`sparse_gaps`]). At the default limit the queue
/// fills first; with a large limit the SWITCH plausibility bound stops it
/// first (the other leg cannot have more than its window in flight,
/// prop 329 §4.2).
#[test]
fn sparse_gap_attack() {
    let (_, _, jumps, err) = sparse_gaps(ConfluxConfig::client());
    assert!(
        matches!(err, ConfluxError::ReorderQueueFull { cells, .. } if cells as u64 == jumps),
        "{err:?}"
    );
    let config = ConfluxConfig {
        reorder: ReorderLimit::from_bytes(ReorderLimit::CEILING_BYTES),
        switch_window: SwitchWindow {
            initial_cells: 2000,
            growth: 8,
        },
        ..ConfluxConfig::client()
    };
    let (_, legs, jumps, err) = sparse_gaps(config);
    assert_eq!(
        err,
        ConfluxError::SwitchTooFar {
            leg: legs[1],
            missing: 2001,
            bound: 2000
        }
    );
    assert_eq!(jumps, 2000);
}

/// The same attack with the default SWITCH window and the largest queue:
/// 16 384 pairs before the SWITCH bound stops them. Each SWITCH asks how
/// many sequence numbers up to its target have not arrived
/// (`ReorderQueue::unreceived_upto`, the prop 329 §4.2 plausibility
/// check). That used to walk the held cells (a `BTreeMap` range count),
/// so the attack cost time quadratic in the cells held: 5.9 s for 16 384
/// pairs in a debug build. The queue now counts in O(log n) with an
/// order-statistics tree: about 0.05 s. Judged against the same number
/// of cells in order, timed in the same run, so a slow or busy machine
/// does not fail it.
#[test]
fn sparse_gap_attack_costs_linear_time() {
    let config = ConfluxConfig {
        reorder: ReorderLimit::from_bytes(ReorderLimit::CEILING_BYTES),
        ..ConfluxConfig::client()
    };
    let t = Instant::now();
    let (_, _, jumps, err) = sparse_gaps(config);
    let took = t.elapsed();
    assert!(matches!(err, ConfluxError::SwitchTooFar { .. }), "{err:?}");
    assert_eq!(jumps, 16_384);
    // The same number of cells in order, each delivered at once: linear
    // work, measured on the same machine at the same moment. Held with a
    // gap each, the cells cost a few times more (a map insert each); a
    // quadratic cost would be thousands of times more.
    let (mut c, legs) = linked_with(7, 2, ConfluxConfig::client());
    let t = Instant::now();
    for _ in 0..jumps {
        c.feed(legs[1], big_data()).unwrap();
        c.delivered();
    }
    let baseline = t.elapsed();
    assert!(
        took < baseline * 50 + Duration::from_millis(20),
        "{took:?} against {baseline:?} in order"
    );
}

/// SWITCHes whose targets fall inside the held numbers rather than past
/// them (so a count that is only cheap past the highest held number would
/// still be quadratic: in a debug build A's walk below took 1.4 s with
/// such a count and 6.8 s with the old range count; the whole test now
/// takes about 0.1 s). Three legs: C never moves, so the gap at 1 can still
/// fill (otherwise `GapCannotFill` closes the set, prop 329 §2.4.3);
/// B leaves a gap with every cell up to 32 000 (2, 4, ..., 32 000 held);
/// A jumps to the middle and walks up through B's cells filling the odd
/// gaps with SWITCH(1) + DATA, each SWITCH landing on a held number;
/// then C fills the rest from the bottom and all 32 000 come out in
/// order. Every step is O(log n): judged by how the time grows with the
/// cells, not by the time itself.
#[test]
fn switches_inside_the_held_range_cost_linear_time() {
    // The walk with 12 times the cells (the most the largest reorder limit
    // holds): 12 to 30 times the time if every step is O(log n) (measured;
    // the larger run also leaves the caches), 144 times if quadratic. The fastest of three runs of each, so a busy
    // machine does not decide.
    let best = |half| {
        (0..3)
            .map(|_| held_range_walk(half))
            .min()
            .unwrap_or_default()
    };
    let small = best(1_000);
    let large = best(12_000);
    eprintln!("walk: {small:?} then {large:?}");
    assert!(
        large < small * 70,
        "{large:?} for 12x the cells of {small:?}"
    );
}

/// The walk of [`switches_inside_the_held_range_cost_linear_time`] with
/// `2 * half` cells from B; its time.
fn held_range_walk(half: u32) -> Duration {
    let config = ConfluxConfig {
        reorder: ReorderLimit::from_bytes(ReorderLimit::CEILING_BYTES),
        ..ConfluxConfig::client()
    };
    let (mut c, legs) = linked_with(7, 3, config);
    let (a, b, cc) = (legs[0], legs[1], legs[2]);
    let t = Instant::now();
    for _ in 0..2 * half {
        c.feed(b, switch(1)).unwrap();
        c.feed(b, big_data()).unwrap();
    }
    assert_eq!(c.set.reorder_waiting(), 2 * half as usize);
    c.feed(a, switch(2 * half)).unwrap();
    c.feed(a, big_data()).unwrap();
    for _ in 1..half {
        c.feed(a, switch(1)).unwrap();
        c.feed(a, big_data()).unwrap();
    }
    assert_eq!(c.set.reorder_waiting(), 3 * half as usize);
    assert!(c.delivered().is_empty());
    c.feed(cc, big_data()).unwrap();
    for _ in 1..half {
        c.feed(cc, switch(1)).unwrap();
        c.feed(cc, big_data()).unwrap();
    }
    let took = t.elapsed();
    let got = c.delivered();
    assert_eq!(got.len(), 4 * half as usize);
    assert!(got.iter().map(|(s, _)| *s).eq(1..=u64::from(4 * half)));
    assert_eq!(c.set.reorder_bytes(), 0);
    assert!(c.set.is_linked());
    took
}

/// With the SWITCH bound lifted, a jump of 2^32 - 1 passes and the DATA
/// after it is refused by the queue's own bound (`SeqTooFarAhead`, more
/// than 2^31 ahead): nothing is held.
#[test]
fn data_too_far_ahead_is_refused_by_the_queue() {
    let config = ConfluxConfig {
        switch_window: SwitchWindow {
            initial_cells: u64::MAX,
            growth: 0,
        },
        ..ConfluxConfig::client()
    };
    let (mut c, legs) = linked_with(7, 2, config);
    c.feed(legs[1], switch(u32::MAX)).unwrap();
    let e = c.feed(legs[1], big_data()).unwrap_err();
    assert_eq!(
        e,
        ConfluxError::SeqTooFarAhead {
            leg: legs[1],
            seq: u64::from(u32::MAX) + 1,
            expected: 1,
            max_ahead: ReorderLimit::DEFAULT_MAX_AHEAD
        }
    );
    assert_violation(&e, "reorder queue abuse");
    assert_eq!(c.set.reorder_bytes(), 0);
    assert_eq!(c.set.reorder_peak_bytes(), 0);
}

/// DATA, SWITCH, END, CONNECTED on a leg still linking fail that leg only
/// (`NotLinkedLeg`, prop 329 §2.4); the set goes on with its linked legs
/// (here: a set that links with them, and a linked set adding a leg).
///
/// TROVE-2026-025 (LINK after a stream), the client's side: a leg carries
/// no stream before it is linked, in either direction. C-tor's exit took
/// a LINK on a circuit that already had streams (`conflux_process_link`,
/// conflux_pool.c at 817b7105f2, checks nothing; `validate_circ_has_no_streams`
/// only logs a BUG and forgets the stream lists); the fix refuses it. The
/// exit's side: `relay::trove_tests`, `conflux::trove_tests`.
#[test]
fn trove_2026_025_stream_cells_before_linked_client() {
    let by = Bystander::new();
    let msgs = || -> Vec<AnyRelayMsg> {
        vec![
            data(0),
            switch(1),
            switch(0),
            End::new_misc().into(),
            Connected::new_empty().into(),
        ]
    };
    for m in msgs() {
        let cmd = m.cmd();
        let mut c = Client::new(7, ConfluxConfig::client());
        let a = c.launch();
        let b = c.launch();
        c.link(a);
        assert!(!c.set.is_linked());
        assert!(matches!(c.feed(b, m), Ok(Handled::Consumed)));
        c.drain_events();
        let failed = c.failed();
        assert_eq!(
            failed,
            vec![(b, ConfluxError::NotLinkedLeg { leg: b, cmd })]
        );
        assert_violation(&failed[0].1, "prop 329 §2.4");
        assert!(c.set.is_linked());
        assert_eq!(c.set.reorder_bytes(), 0);
        assert!(c.delivered().is_empty());
    }
    for m in msgs() {
        let cmd = m.cmd();
        let (mut c, legs) = linked(7, 2);
        c.feed(legs[0], data(1)).unwrap();
        let x = c.launch();
        assert!(matches!(c.feed(x, m), Ok(Handled::Consumed)));
        c.drain_events();
        assert_eq!(
            c.failed(),
            vec![(x, ConfluxError::NotLinkedLeg { leg: x, cmd })]
        );
        assert!(c.set.is_linked());
        assert_eq!(c.set.legs().count(), 2);
        c.feed(legs[0], data(2)).unwrap();
        assert_eq!(c.delivered(), vec![(1, legs[0]), (2, legs[0])]);
    }
    by.check();
}

/// Cells for a leg the set does not have (never had, or closed) are a
/// local error: nothing changes.
#[test]
fn cells_on_a_leg_that_is_not_in_the_set() {
    let (mut c, legs) = linked(7, 3);
    c.feed(legs[1], switch(1)).unwrap();
    c.feed(legs[1], data(2)).unwrap();
    let bytes = c.set.reorder_bytes();
    c.set
        .leg_closed(legs[2], LegClosedInfo::default(), c.now)
        .unwrap();
    for leg in [LegId(77), LegId(u8::MAX), legs[2]] {
        for m in [data(0), switch(5), linked_msg(&nonce(7), 0, 0)] {
            let e = c.feed(leg, m).unwrap_err();
            assert_eq!(e, ConfluxError::NoSuchLeg { leg });
            assert_eq!(e.kind(), ConfluxErrorKind::Local);
        }
    }
    assert!(!c.set.is_closed());
    assert_eq!(c.set.reorder_bytes(), bytes);
    c.feed(legs[0], data(1)).unwrap();
    assert_eq!(c.delivered(), vec![(1, legs[0]), (2, legs[1])]);
}

/// The exit's half of the handshake sent back to the client: LINK and
/// LINKED_ACK only go to the exit (prop 329 §4.2.1). On a linked leg the
/// set closes; on a leg still linking only that leg fails. BEGIN_DIR on a
/// leg closes the set too.
#[test]
fn link_and_linked_ack_from_the_exit() {
    let by = Bystander::new();
    let link = || -> AnyRelayMsg {
        ConfluxLink::new(
            LinkInfo {
                nonce: nonce(7),
                last_seqno_sent: 0,
                last_seqno_recv: 0,
                desired_ux: V1DesiredUx::HIGH_THROUGHPUT,
            }
            .to_payload()
            .unwrap(),
        )
        .into()
    };
    let ack = || -> AnyRelayMsg { ConfluxLinkedAck::default().into() };
    for m in [link(), ack()] {
        let cmd = m.cmd();
        let (mut c, legs) = linked(7, 2);
        c.feed(legs[0], data(1)).unwrap();
        let e = c.feed(legs[1], m).unwrap_err();
        assert_eq!(e, ConfluxError::WrongDirection { leg: legs[1], cmd });
        assert_violation(&e, "LINK and LINKED_ACK go to the exit");
        assert!(c.set.is_closed());
        assert_eq!(c.feed(legs[0], data(2)).unwrap_err(), ConfluxError::Closed);
    }
    for m in [link(), ack()] {
        let cmd = m.cmd();
        let mut c = Client::new(7, ConfluxConfig::client());
        let a = c.launch();
        let b = c.launch();
        assert!(matches!(c.feed(b, m), Ok(Handled::Consumed)));
        c.drain_events();
        assert_eq!(
            c.failed(),
            vec![(b, ConfluxError::WrongDirection { leg: b, cmd })]
        );
        c.link(a);
        assert!(c.set.is_linked());
    }
    let (mut c, legs) = linked(7, 2);
    let e = c
        .feed(legs[0], AnyRelayMsg::BeginDir(BeginDir::default()))
        .unwrap_err();
    assert_eq!(e, ConfluxError::BeginDirOnLeg { leg: legs[0] });
    assert!(c.set.is_closed());
    by.check();
}

/// A replacement leg whose LINKED claims the exit sent less than we had
/// already delivered when we sent LINK (prop 329 §2.4.4): that leg fails,
/// the set goes on.
#[test]
fn replacement_leg_with_impossible_linked_seq() {
    let (mut c, legs) = linked(7, 2);
    for i in 1..=5 {
        c.feed(legs[0], data(i)).unwrap();
    }
    assert_eq!(c.delivered().len(), 5);
    let x = c.launch();
    assert_eq!(c.links.last().unwrap().1.last_seqno_recv, 5);
    let m = linked_msg(&c.links.last().unwrap().1.nonce, 4, 0);
    assert!(matches!(c.feed(x, m), Ok(Handled::Consumed)));
    c.drain_events();
    let failed = c.failed();
    assert_eq!(failed.len(), 1);
    assert!(
        matches!(failed[0], (l, ConfluxError::ImpossibleLinkSeq { leg, .. }) if l == x && leg == x)
    );
    assert_violation(&failed[0].1, "prop 329 §2.4.4");
    assert!(c.set.is_linked());
    c.feed(legs[0], data(6)).unwrap();
    assert_eq!(c.delivered(), vec![(6, legs[0])]);
}

/// A set closed by a violation on its linked leg while another leg is
/// still linking: when that leg then times out (or its circuit closes),
/// the set must not announce itself usable.
#[test]
fn closed_set_never_reports_set_linked() {
    for by_timeout in [false, true] {
        let mut c = Client::new(7, ConfluxConfig::client());
        let a = c.launch();
        let b = c.launch();
        c.link(a);
        assert!(!c.set.is_linked());
        // SWITCH(0) before data is free once, then MAX_EMPTY_SWITCHES
        // repeats pass and the next closes the set.
        for _ in 0..=MAX_EMPTY_SWITCHES {
            c.feed(a, switch(0)).unwrap();
        }
        assert!(!c.set.is_closed());
        let e = c.feed(a, switch(0)).unwrap_err();
        assert_eq!(e, ConfluxError::SwitchRepeated { leg: a });
        assert!(c.set.is_closed());
        c.events.clear();
        if by_timeout {
            let due = c.set.poll_timeout().unwrap();
            c.set.handle_timeout(due);
        } else {
            c.set
                .leg_closed(b, LegClosedInfo::default(), c.now)
                .unwrap();
        }
        c.drain_events();
        assert!(!c.set.is_linked());
        assert!(
            !c.events
                .iter()
                .any(|e| matches!(e, ConfluxEvent::SetLinked { .. })),
            "closed set reported {:?}",
            c.events
        );
        // The late leg is still reported (its circuit must close); a
        // closed set stays closed and launches nothing.
        let failed = c.failed();
        if by_timeout {
            assert_eq!(failed.len(), 1);
            assert!(matches!(failed[0], (l, ConfluxError::LinkTimeout { .. }) if l == b));
        } else {
            assert!(failed.is_empty());
        }
        assert_eq!(c.set.linked_legs(), 1);
        assert!(c.set.poll_timeout().is_none());
        assert_eq!(c.set.close_reason(), Some(&e));
        assert_eq!(c.set.add_leg(c.now).unwrap_err(), ConfluxError::Closed);
        assert_eq!(c.feed(a, data(1)).unwrap_err(), ConfluxError::Closed);
    }
}

/// The reorder limit grows with what the set delivers, not with what an
/// exit piles up behind a gap: the gap attack spread over seconds meets
/// the starting limit, while the same bytes sent in order raise it (to
/// twice their rate times the legs' RTT, within the sizer's bounds).
#[test]
fn reorder_limit_follows_delivery_not_the_queue() {
    let (mut c, legs) = linked(8, 2);
    let start = c.set.reorder_limit();
    c.feed(legs[1], switch(1)).unwrap();
    let err = loop {
        c.now += Duration::from_millis(1);
        match c.feed(legs[1], big_data()) {
            Ok(_) => {}
            Err(e) => break e,
        }
        assert_eq!(c.set.reorder_limit(), start);
    };
    assert!(err.is_resource_limit(), "{err}");

    // Honest: 400 cells every 10 ms (about 20 MB/s) in order on leg 0,
    // legs with a 100 ms link RTT.
    let mut c = Client::new(9, ConfluxConfig::client());
    let legs: Vec<LegId> = (0..2).map(|_| c.launch()).collect();
    c.now += Duration::from_millis(100);
    for l in &legs {
        c.link(*l);
    }
    assert!(c.set.is_linked());
    let start = c.set.reorder_limit();
    for _ in 0..300 {
        c.now += Duration::from_millis(10);
        for _ in 0..400 {
            c.feed(legs[0], big_data()).unwrap();
            while c.set.poll_delivered().is_some() {}
        }
    }
    let grown = c.set.reorder_limit();
    let rtt = legs.iter().filter_map(|l| c.set.leg_rtt(*l)).max().unwrap();
    println!(
        "limit {} -> {} (link RTT {rtt:?})",
        start.max_bytes, grown.max_bytes
    );
    assert!(grown.max_bytes >= start.max_bytes);
    assert_eq!(rtt, Duration::from_millis(100));
    // 2 x 19.9 MB/s x 0.1 s: about 4 MB.
    let expect = 2.0 * 400.0 * 498.0 / 0.010 * rtt.as_secs_f64();
    let got = grown.max_bytes as f64;
    assert!(
        (0.9 * expect..1.1 * expect).contains(&got),
        "{grown:?} vs {expect}"
    );
    assert!(grown.max_bytes <= ReorderLimit::CEILING_BYTES);
}
