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
//!
//! Here: linking and the legs; the SWITCH floods are in
//! `hostile_switch_tests`, the reorder queue attacks in `hostile_gap_tests`,
//! which share the helpers below (`pub(super)`).

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

pub(super) fn nonce(seed: u8) -> ConfluxNonce {
    let mut b = [0_u8; NONCE_LEN];
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    ConfluxNonce::from_bytes(b)
}

pub(super) fn stream() -> Option<StreamId> {
    StreamId::new(1)
}

pub(super) fn data(i: u32) -> AnyRelayMsg {
    Data::new(&i.to_be_bytes()).unwrap().into()
}

/// A full DATA cell (498 bytes), as a queue-filling peer would send.
pub(super) fn big_data() -> AnyRelayMsg {
    Data::new(&[0xa5; 498]).unwrap().into()
}

pub(super) fn switch(rel: u32) -> AnyRelayMsg {
    ConfluxSwitch::new(rel).into()
}

/// The exit's CONFLUX_LINKED with `nonce` and sequence numbers.
pub(super) fn linked_msg(nonce: &ConfluxNonce, sent: u64, recv: u64) -> AnyRelayMsg {
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
pub(super) struct Client {
    pub(super) set: ConfluxSet,
    /// The LINK payload of each leg launched, in launch order.
    pub(super) links: Vec<(LegId, LinkInfo)>,
    pub(super) events: Vec<ConfluxEvent>,
    pub(super) now: Instant,
}

impl Client {
    pub(super) fn new(seed: u8, config: ConfluxConfig) -> Self {
        Self {
            set: ConfluxSet::new_client(nonce(seed), config),
            links: Vec::new(),
            events: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Launch a leg; its LINK is read off `poll_transmit`.
    pub(super) fn launch(&mut self) -> LegId {
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
    pub(super) fn honest_linked(&self, leg: LegId) -> AnyRelayMsg {
        let info = &self.links.iter().find(|(l, _)| *l == leg).unwrap().1;
        linked_msg(&info.nonce, info.last_seqno_recv, info.last_seqno_sent)
    }

    /// Hand `msg` to the set on `leg`.
    pub(super) fn feed(&mut self, leg: LegId, msg: AnyRelayMsg) -> Result<Handled, ConfluxError> {
        let s = if is_multiplexed(msg.cmd()) {
            stream()
        } else {
            None
        };
        self.set.handle_msg(leg, s, msg, self.now)
    }

    /// Answer `leg` honestly; expect its LINKED_ACK.
    pub(super) fn link(&mut self, leg: LegId) {
        let m = self.honest_linked(leg);
        assert!(matches!(self.feed(leg, m), Ok(Handled::Consumed)));
        let (l, ack) = self.set.poll_transmit().unwrap();
        assert_eq!((l, ack.cmd()), (leg, RelayCmd::CONFLUX_LINKED_ACK));
        self.drain_events();
    }

    pub(super) fn drain_events(&mut self) {
        while let Some(e) = self.set.poll_event() {
            self.events.push(e);
        }
    }

    /// Messages delivered in order, as `(seq, leg)`.
    pub(super) fn delivered(&mut self) -> Vec<(u64, LegId)> {
        let mut v = Vec::new();
        while let Some(d) = self.set.poll_delivered() {
            v.push((d.seq, d.leg));
        }
        v
    }

    /// The `LegFailed` events seen so far.
    pub(super) fn failed(&self) -> Vec<(LegId, ConfluxError)> {
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
pub(super) fn linked(seed: u8, n: usize) -> (Client, Vec<LegId>) {
    linked_with(seed, n, ConfluxConfig::client())
}

pub(super) fn linked_with(seed: u8, n: usize, config: ConfluxConfig) -> (Client, Vec<LegId>) {
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
pub(super) struct Bystander {
    pub(super) c: Client,
    pub(super) legs: Vec<LegId>,
    pub(super) bytes: usize,
}

impl Bystander {
    pub(super) fn new() -> Self {
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
    pub(super) fn check(mut self) {
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
pub(super) fn assert_violation(e: &ConfluxError, rule: &str) {
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
