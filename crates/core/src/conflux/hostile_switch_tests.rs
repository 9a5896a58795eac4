//! Hostile CONFLUX_SWITCH cells against a client [`ConfluxSet`], in the
//! setting of `hostile_tests` (whose helpers these use): floods of empty
//! switches on one leg and across legs, SWITCH(0), the empty switches
//! C-tor's exits send, and relative sequence numbers too large to be
//! plausible (prop 329 §2.6, §4.2).

use super::hostile_tests::{Bystander, Client, assert_violation, data, linked, switch};
use super::*;
use crate::ids::LegId;

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

/// A flood of SWITCH(0) on one leg while the other leg's DATA arrives
/// between them (two channels read in turn): the other leg's cells do not
/// reset the leg's run. `MAX_EMPTY_SWITCHES` pass, the next closes the
/// set (`SwitchZero`, prop 329 §2.6). Found by the hostile-exit test over
/// real sockets under load, where the 40 switches of a `switch-flood`
/// exit arrived interleaved with the other leg's cells.
#[test]
fn switch_flood_on_one_leg_with_data_on_another() {
    let by = Bystander::new();
    let max = MAX_EMPTY_SWITCHES as usize;
    let (mut c, legs) = linked(7, 2);
    let (a, b) = (legs[0], legs[1]);
    c.feed(a, data(1)).unwrap();
    c.feed(b, switch(1)).unwrap();
    c.feed(b, data(2)).unwrap();
    let mut results = Vec::new();
    for i in 0..=max {
        results.push(c.feed(a, switch(0)));
        // The other leg's data keeps arriving in between.
        if !c.set.is_closed() {
            c.feed(b, data(3 + u32::try_from(i).unwrap())).unwrap();
        }
    }
    assert!(
        results[..max]
            .iter()
            .all(|r| matches!(r, Ok(Handled::Consumed))),
        "{results:?}"
    );
    let e = results[max].as_ref().unwrap_err();
    assert_eq!(e, &ConfluxError::SwitchZero { leg: a });
    assert_violation(e, "prop 329 §2.6");
    assert_eq!(c.set.close_reason(), Some(e));
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
/// (§4.2.3). Any multiplexed cell starts the set's count again, and a
/// leg's own run of zeros ends only with a cell or a moving SWITCH on it.
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
    // Leg 1 has had `max` zeros and no cell: the data on leg 0 restarted
    // the set's count, not leg 1's run (an honest peer sends SWITCH(0)
    // only with nothing sent since, so the run was one in its send order
    // too). The next zero on leg 1 closes the set.
    assert!(c.set.is_linked());
    assert!(!c.set.is_closed());
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
