//! A client Conflux set (`braid_core::conflux::ConfluxSet`, prop 329) with
//! 2-3 legs, driven by a hostile exit: a sequence of operations decoded
//! from the fuzz bytes — CONFLUX_LINKED with the right nonce (honest or
//! arbitrary sequence numbers) or a nonce with one byte changed,
//! CONFLUX_SWITCH with any relative seqno, DATA / END / CONNECTED on any
//! stream id, LINK / LINKED_ACK / BEGIN_DIR / SENDME, on known legs or ids
//! the set never had; legs closing; timers with time moving on; the
//! client's own sends and extra legs. Small reorder limits and SWITCH
//! windows so that they are reached.
//!
//! Invariants checked after every step: no panic; the reorder queue never
//! holds more than its byte or cell limit; delivered messages come out
//! with consecutive sequence numbers, each DATA on the leg it was fed on,
//! at most once, in the order it was fed on that leg; a call returning a
//! non-local error closed the set with that error, `Ok` and local errors
//! do not close it; a closed set refuses every message with `Closed` and
//! its queue does not grow; of the SWITCHes on linked legs since the last
//! multiplexed cell (empty ones, zero after data or repeated on a leg,
//! are tolerated `MAX_EMPTY_SWITCHES` in a row, prop 329 §4.2.3) at most
//! `MAX_EMPTY_SWITCHES` plus one per leg linked in that time pass, and a
//! `SwitchZero` / `SwitchRepeated` close comes only after at least
//! `MAX_EMPTY_SWITCHES` of them; what the set sends goes on a linked leg, a
//! SWITCH first only when the leg changes, never SWITCH(0), one sequence
//! number per message; the set never has more legs than `max_legs`; a
//! failed leg is gone.
#![no_main]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use braid_core::conflux::{
    ConfluxConfig, ConfluxError, ConfluxErrorKind, ConfluxEvent, ConfluxNonce, ConfluxSet, Handled,
    LegChooser, LegClosedInfo, LegInfo, LinkInfo, MAX_EMPTY_SWITCHES, NONCE_LEN, ReorderLimit,
    SendOutcome, SwitchWindow, V1DesiredUx, is_multiplexed,
};
use braid_core::ids::{LegId, StreamId};
use libfuzzer_sys::fuzz_target;
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{
    AnyRelayMsg, BeginDir, ConfluxLink, ConfluxLinked, ConfluxLinkedAck, ConfluxSwitch, Connected,
    Data, End, Sendme,
};

/// The fuzz input, read front to back; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Picks the leg the input names (any id, linked or not).
struct FuzzChooser(Option<LegId>);

impl LegChooser for FuzzChooser {
    fn choose(
        &mut self,
        _legs: &[LegInfo],
        _current: Option<LegId>,
        _cmd: RelayCmd,
        _now: Instant,
    ) -> Option<LegId> {
        self.0
    }
}

/// What the target knows.
struct Model {
    set: ConfluxSet,
    config: ConfluxConfig,
    now: Instant,
    /// The LINK each leg sent.
    links: BTreeMap<LegId, LinkInfo>,
    /// DATA tags fed on each leg, in order, not yet delivered.
    fed: BTreeMap<LegId, VecDeque<u32>>,
    next_tag: u32,
    /// The last sequence number delivered.
    delivered: u64,
    /// The client's last sequence number sent.
    sent: u64,
    /// SWITCHes accepted on linked legs since the last multiplexed cell
    /// accepted on one.
    switch_run: usize,
    /// Legs linked at that cell or since: each may take one SWITCH in the
    /// run that is not empty.
    switch_budget: usize,
    /// Per linked leg, SWITCH(0)s accepted on it since its last
    /// multiplexed cell or non-zero SWITCH (the leg's own run, which
    /// other legs' cells do not end).
    zero_run: BTreeMap<LegId, usize>,
}

impl Model {
    fn launch(&mut self) -> Option<LegId> {
        let before = self.set.legs().count();
        let leg = match self.set.add_leg(self.now) {
            Ok(l) => l,
            Err(e) => {
                assert_eq!(e.kind(), ConfluxErrorKind::Local, "{e:?}");
                assert_eq!(self.set.legs().count(), before);
                return None;
            }
        };
        let (l, m) = self.set.poll_transmit().expect("a LINK for the new leg");
        assert_eq!(l, leg);
        let AnyRelayMsg::ConfluxLink(link) = m else {
            panic!("not a LINK: {m:?}");
        };
        let info = LinkInfo::from_link(&link).expect("our own LINK parses");
        assert!(info.nonce.ct_eq(self.set.nonce()));
        assert_eq!(info.last_seqno_recv, self.delivered);
        assert_eq!(info.last_seqno_sent, self.sent);
        self.links.insert(leg, info);
        assert!(self.set.poll_transmit().is_none());
        Some(leg)
    }

    /// The leg the input names: one the set had, or any id.
    fn leg(&self, inp: &mut Input<'_>) -> LegId {
        let b = inp.u8();
        let known: Vec<LegId> = self.links.keys().copied().collect();
        known
            .get(usize::from(b) % (known.len() + 1))
            .copied()
            .unwrap_or(LegId(inp.u8()))
    }

    fn linked_for(&self, leg: LegId, inp: &mut Input<'_>, honest_nonce: bool) -> AnyRelayMsg {
        let info = self.links.get(&leg).cloned().unwrap_or(LinkInfo {
            nonce: self.set.nonce().clone(),
            last_seqno_sent: 0,
            last_seqno_recv: 0,
            desired_ux: V1DesiredUx::NO_OPINION,
        });
        let mut nonce = *info.nonce.as_bytes();
        if !honest_nonce {
            let pos = usize::from(inp.u8()) % NONCE_LEN;
            nonce[pos] ^= inp.u8() | 1;
        }
        let (sent, recv) = if inp.u8() & 1 == 0 {
            (info.last_seqno_recv, info.last_seqno_sent)
        } else {
            (inp.u64(), inp.u64())
        };
        let payload = LinkInfo {
            nonce: ConfluxNonce::from_bytes(nonce),
            last_seqno_sent: sent,
            last_seqno_recv: recv,
            desired_ux: V1DesiredUx::MIN_LATENCY,
        }
        .to_payload()
        .expect("payload");
        ConfluxLinked::new(payload).into()
    }

    /// Feed an exit message on `leg` and check what the result says.
    fn feed(&mut self, leg: LegId, stream: Option<StreamId>, msg: AnyRelayMsg) {
        let was_closed = self.set.is_closed();
        let bytes = self.set.reorder_bytes();
        let tag = match &msg {
            AnyRelayMsg::Data(d) => {
                let b = d.as_ref();
                Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => None,
        };
        if let Some(t) = tag {
            self.fed.entry(leg).or_default().push_back(t);
        }
        let is_linked = |set: &ConfluxSet| set.legs().any(|(l, linked)| l == leg && linked);
        let was_linked = is_linked(&self.set);
        let is_switch = matches!(msg, AnyRelayMsg::ConfluxSwitch(_));
        let switch_zero = matches!(&msg, AnyRelayMsg::ConfluxSwitch(s) if s.seqno() == 0);
        let multiplexed = is_multiplexed(msg.cmd());
        let r = self.set.handle_msg(leg, stream, msg, self.now);
        if was_closed {
            assert!(matches!(r, Err(ConfluxError::Closed)), "{r:?}");
            assert!(self.set.reorder_bytes() <= bytes);
            return;
        }
        match r {
            Ok(Handled::Consumed) | Ok(Handled::NotConflux { .. }) => {
                assert!(!self.set.is_closed());
                if was_linked && is_switch {
                    let run = self.zero_run.entry(leg).or_default();
                    *run = if switch_zero { *run + 1 } else { 0 };
                    self.switch_run += 1;
                    assert!(
                        self.switch_run <= MAX_EMPTY_SWITCHES as usize + self.switch_budget,
                        "{} SWITCHes without a cell, {} legs",
                        self.switch_run,
                        self.switch_budget
                    );
                } else if was_linked && multiplexed {
                    self.zero_run.insert(leg, 0);
                    self.switch_run = 0;
                    self.switch_budget = self.set.legs().filter(|(_, linked)| *linked).count();
                } else if !was_linked && is_linked(&self.set) {
                    self.switch_budget += 1;
                }
            }
            Err(e) if e.kind() == ConfluxErrorKind::Local => {
                assert!(!self.set.is_closed(), "{e:?}");
                assert_eq!(self.set.reorder_bytes(), bytes, "{e:?}");
            }
            Err(e) => {
                assert_eq!(self.set.close_reason(), Some(&e));
                if matches!(
                    e,
                    ConfluxError::SwitchZero { .. } | ConfluxError::SwitchRepeated { .. }
                ) {
                    assert!(is_switch && was_linked, "{e:?}");
                    let own = self.zero_run.get(&leg).copied().unwrap_or(0);
                    assert!(
                        self.switch_run >= MAX_EMPTY_SWITCHES as usize
                            || (switch_zero && own >= MAX_EMPTY_SWITCHES as usize),
                        "{e:?} after {} SWITCHes without a cell, {own} SWITCH(0)s on the leg",
                        self.switch_run
                    );
                }
                // Describes itself without the nonce, citing a rule.
                let _ = e.to_string();
                let _ = e.destroy_reason();
            }
        }
    }

    /// A client send; check what comes out.
    fn send(&mut self, inp: &mut Input<'_>) {
        let leg = self.leg(inp);
        let msg: AnyRelayMsg = match inp.u8() % 3 {
            0 => Data::new(&inp.u32().to_be_bytes()).expect("data").into(),
            1 => End::new_misc().into(),
            _ => Sendme::new_empty().into(),
        };
        let multiplexed = !matches!(msg, AnyRelayMsg::Sendme(_));
        let stream = StreamId::new(inp.u16());
        let linked: Vec<LegId> = self
            .set
            .legs()
            .filter(|(_, l)| *l)
            .map(|(l, _)| l)
            .collect();
        let before = self.set.last_seq_sent();
        assert_eq!(before, self.sent);
        let leg_sent: BTreeMap<LegId, u64> = self
            .set
            .leg_infos(&[])
            .iter()
            .map(|i| (i.leg, i.last_seq_sent))
            .collect();
        let r = if inp.u8() & 1 == 0 {
            self.set
                .send(&mut FuzzChooser(Some(leg)), &[], stream, msg, self.now)
        } else {
            self.set.send_on(leg, stream, msg).map(SendOutcome::Sent)
        };
        match r {
            Ok(SendOutcome::Sent(out)) => {
                assert!(multiplexed);
                assert!(self.set.is_linked());
                assert!(linked.contains(&out.leg), "sent on {:?}", out.leg);
                // A SWITCH first exactly when the leg is behind, carrying
                // how far (prop 329 §2.6); never SWITCH(0).
                let behind = before - leg_sent[&out.leg];
                match &out.switch {
                    None => assert_eq!(behind, 0),
                    Some(sw) => {
                        assert!(sw.seqno() > 0, "SWITCH(0)");
                        assert_eq!(u64::from(sw.seqno()), behind);
                    }
                }
                assert!(!matches!(out.msg, AnyRelayMsg::ConfluxSwitch(_)));
                self.sent += 1;
                assert_eq!(self.set.last_seq_sent(), self.sent);
                assert_eq!(self.set.current_leg(), Some(out.leg));
            }
            Ok(SendOutcome::Blocked { .. }) => {
                assert_eq!(self.set.last_seq_sent(), before);
            }
            Err(e) => {
                assert_eq!(e.kind(), ConfluxErrorKind::Local, "{e:?}");
                assert_eq!(self.set.last_seq_sent(), before);
            }
        }
    }

    /// Everything that must hold between steps.
    fn check(&mut self) {
        let limit = self.set.reorder_limit();
        assert!(self.set.reorder_bytes() <= limit.max_bytes);
        assert!(self.set.reorder_peak_bytes() <= limit.max_bytes);
        assert!(self.set.reorder_peak_cells() <= limit.max_cells);
        assert!(self.set.reorder_waiting() <= limit.max_cells);
        assert!(self.set.legs().count() <= self.config.max_legs);
        while let Some(d) = self.set.poll_delivered() {
            assert_eq!(d.seq, self.delivered + 1, "out of order");
            self.delivered = d.seq;
            if let AnyRelayMsg::Data(data) = &d.msg {
                let b = data.as_ref();
                let tag = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let q = self.fed.get_mut(&d.leg).expect("DATA on a leg never fed");
                // Cells fed before it on that leg and not delivered were
                // refused; it must be there, after them.
                loop {
                    let t = q.pop_front().expect("DATA delivered twice or never fed");
                    if t == tag {
                        break;
                    }
                }
            }
        }
        assert_eq!(self.set.last_seq_delivered(), self.delivered);
        while let Some(ev) = self.set.poll_event() {
            match ev {
                ConfluxEvent::LegFailed { leg, error } => {
                    assert!(
                        self.set.legs().all(|(l, _)| l != leg),
                        "{leg:?} failed, still there"
                    );
                    assert_ne!(error.kind(), ConfluxErrorKind::Local, "{error:?}");
                }
                ConfluxEvent::LegLinked { leg, .. } => {
                    assert!(self.links.contains_key(&leg));
                }
                ConfluxEvent::SetLinked { legs } => {
                    assert!(legs >= 1 && legs <= self.config.max_legs);
                }
                ConfluxEvent::LegRtt { .. } => panic!("LegRtt at a client"),
                // An exit's LEGS_LOST (Braid proposal 001 §3.3): only on a
                // resumable set.
                ConfluxEvent::LegDropped { leg } => {
                    assert!(self.set.is_resumable(), "{leg:?} dropped, not resumable");
                }
                // A leg probe unanswered (§3.6): only on a resumable set.
                ConfluxEvent::LegSilent { leg, .. } => {
                    assert!(self.set.is_resumable(), "{leg:?} silent, not resumable");
                }
            }
        }
        // Handshake output: only LINKED_ACK for a leg just linked.
        while let Some((leg, m)) = self.set.poll_transmit() {
            assert!(self.links.contains_key(&leg));
            assert!(
                matches!(m, AnyRelayMsg::ConfluxLinkedAck(_)),
                "client transmits {m:?}"
            );
        }
        if let Some(t) = self.set.poll_timeout() {
            assert!(self.set.legs().any(|(_, linked)| !linked));
            let _ = t;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let flags = inp.u8();
    let max_bytes = match inp.u8() % 4 {
        0 => 2_048,
        1 => 16 * 1024,
        2 => 64 * 1024,
        _ => 4 * 1024 * 1024,
    };
    let n = 2 + usize::from(flags & 1);
    let config = ConfluxConfig {
        num_legs: n,
        link_timeout: Duration::from_millis(1 + u64::from(inp.u16())),
        max_leg_retries: usize::from(inp.u8() % 4),
        reorder: ReorderLimit::from_bytes(max_bytes),
        // Mostly the small fixed limits above; with 0x40 the sizer may
        // raise them as the fuzzer's time and deliveries go on.
        reorder_auto: flags & 0x40 != 0,
        switch_window: SwitchWindow {
            initial_cells: u64::from(inp.u16()),
            growth: u64::from(inp.u8() % 9),
        },
        ..ConfluxConfig::client()
    };
    let mut nonce = [0_u8; NONCE_LEN];
    nonce[0] = flags;
    nonce[NONCE_LEN - 1] = 0x5a;
    let mut m = Model {
        set: ConfluxSet::new_client(ConfluxNonce::from_bytes(nonce), config),
        config,
        now: Instant::now(),
        links: BTreeMap::new(),
        fed: BTreeMap::new(),
        next_tag: 0,
        delivered: 0,
        sent: 0,
        switch_run: 0,
        switch_budget: 0,
        zero_run: BTreeMap::new(),
    };
    let legs: Vec<LegId> = (0..n).filter_map(|_| m.launch()).collect();
    assert_eq!(legs.len(), n);
    if flags & 0x80 != 0 {
        // Start linked: the honest LINKED on every leg.
        for leg in &legs {
            let msg = m.linked_for(*leg, &mut Input(&[0]), true);
            m.feed(*leg, None, msg);
        }
        m.check();
        assert!(m.set.is_linked());
    }
    let mut steps = 0;
    while !inp.is_empty() && steps < 4096 {
        steps += 1;
        let op = inp.u8();
        match op % 14 {
            0 => {
                let leg = m.leg(&mut inp);
                let msg = m.linked_for(leg, &mut inp, true);
                m.feed(leg, None, msg);
            }
            1 => {
                let leg = m.leg(&mut inp);
                let msg = m.linked_for(leg, &mut inp, false);
                m.feed(leg, None, msg);
            }
            2 => {
                let leg = m.leg(&mut inp);
                let rel = match inp.u8() % 4 {
                    0 => 0,
                    1 | 2 => u32::from(inp.u8()),
                    _ => inp.u32(),
                };
                m.feed(leg, None, ConfluxSwitch::new(rel).into());
            }
            3..=6 => {
                let leg = m.leg(&mut inp);
                let len = 4 + usize::from(inp.u16() % 495);
                let mut body = vec![0_u8; len];
                body[..4].copy_from_slice(&m.next_tag.to_be_bytes());
                m.next_tag += 1;
                let stream = StreamId::new(inp.u8().into());
                m.feed(leg, stream, Data::new(&body).expect("data").into());
            }
            7 => {
                let leg = m.leg(&mut inp);
                let stream = StreamId::new(inp.u16());
                m.feed(leg, stream, End::new_misc().into());
            }
            8 => {
                let leg = m.leg(&mut inp);
                let stream = StreamId::new(inp.u16());
                m.feed(leg, stream, Connected::new_empty().into());
            }
            9 => {
                let leg = m.leg(&mut inp);
                let msg: AnyRelayMsg = match inp.u8() % 4 {
                    0 => ConfluxLinkedAck::default().into(),
                    1 => {
                        let info = m.links.get(&leg).cloned().unwrap_or(LinkInfo {
                            nonce: m.set.nonce().clone(),
                            last_seqno_sent: 0,
                            last_seqno_recv: 0,
                            desired_ux: V1DesiredUx::NO_OPINION,
                        });
                        ConfluxLink::new(info.to_payload().expect("payload")).into()
                    }
                    2 => BeginDir::default().into(),
                    _ => Sendme::new_empty().into(),
                };
                m.feed(leg, None, msg);
            }
            10 => {
                let leg = m.leg(&mut inp);
                let info = LegClosedInfo {
                    inflight: u64::from(inp.u8()),
                    sendme_inc: u64::from(inp.u8() % 64),
                };
                let was_closed = m.set.is_closed();
                let known = m.set.legs().any(|(l, _)| l == leg);
                match m.set.leg_closed(leg, info, m.now) {
                    Ok(()) => assert_eq!(m.set.is_closed(), was_closed),
                    Err(ConfluxError::NoSuchLeg { .. }) => assert!(!known),
                    Err(e) => {
                        assert_eq!(e.kind(), ConfluxErrorKind::LegLoss, "{e:?}");
                        assert!(m.set.is_closed());
                    }
                }
                assert!(m.set.legs().all(|(l, _)| l != leg));
            }
            11 => {
                m.now += Duration::from_millis(u64::from(inp.u16()));
                m.set.handle_timeout(m.now);
                if let Some(t) = m.set.poll_timeout() {
                    assert!(t > m.now, "an overdue deadline survived handle_timeout");
                }
            }
            12 => m.send(&mut inp),
            _ => {
                m.launch();
            }
        }
        m.check();
    }
});
