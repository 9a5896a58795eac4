//! SENDME: authenticated SENDMEs (proposal 289, tor-spec §7.3.1) and
//! fixed-window flow control (tor-spec §7.3, §7.4).
//!
//! **Authentication.** The sender of DATA cells remembers, for every cell
//! that will make the peer send a SENDME (every `sendme_inc`-th DATA cell:
//! 100 on fixed windows, the negotiated `cc_sendme_inc` with congestion
//! control), the 20-byte running digest of that cell, computed by the relay
//! crypto layer and passed in as a [`SendmeTag`]. A circuit-level SENDME v1
//! must carry the oldest remembered tag ([`SendmeTags::validate`]); the
//! receiver of DATA cells builds such a body with [`sendme_v1_body`].
//!
//! **Fixed windows**, for circuits whose last hop did not accept congestion
//! control, and for streams on them: a [`PackageWindow`] on the sending side
//! (circuit 1000 cells, +100 per SENDME; stream 500, +50) and a
//! [`DeliverWindow`] on the receiving side; DATA beyond the deliver window
//! is a protocol violation.

use std::collections::VecDeque;

use tor_bytes::Reader;
use tor_cell::relaycell::msg::{Body, Sendme};

pub use tor_cell::relaycell::msg::SendmeTag;

use super::error::{CcError, WindowKind};
use super::params::{
    CIRCWINDOW_INCREMENT, CIRCWINDOW_START_MAX, STREAMWINDOW_INCREMENT, STREAMWINDOW_START,
};

/// The highest SENDME version we understand (tor-spec §7.3.1).
pub const SENDME_MAX_SUPPORTED_VERSION: u8 = 1;

/// Encode a SENDME v1 body carrying `tag` (tor-spec §7.3.1: VERSION 1,
/// DATA_LEN, DATA = the digest).
pub fn sendme_v1_body(tag: &SendmeTag) -> Vec<u8> {
    let t = tag.as_ref();
    // A SendmeTag is 16 or 20 bytes, so the length fits in a byte.
    let len = u8::try_from(t.len()).unwrap_or(u8::MAX);
    let mut out = Vec::with_capacity(3 + t.len());
    out.push(SENDME_MAX_SUPPORTED_VERSION);
    out.push(0);
    out.push(len);
    out.extend_from_slice(t);
    out
}

/// Decode a SENDME body (tor-spec §7.3.1): `None` for version 0 (an empty
/// body, or version byte 0), `Some(tag)` for version 1. Trailing bytes after
/// the declared data are ignored, as C-tor does.
pub fn parse_sendme_body(body: &[u8]) -> Result<Option<SendmeTag>, CcError> {
    let mut r = Reader::from_slice(body);
    Sendme::decode_from_reader(&mut r)
        .map(Sendme::into_sendme_tag)
        .map_err(|e| CcError::MalformedSendme(e.to_string()))
}

/// The sender's queue of expected SENDME tags, oldest first (proposal 289
/// §3). Bounded: at most one entry per outstanding SENDME, which the window
/// bounds (10 on a fixed circuit window, `cwnd_max / sendme_inc` with
/// congestion control).
#[derive(Debug, Clone)]
pub struct SendmeTags {
    /// Expected tags, oldest first.
    tags: VecDeque<SendmeTag>,
    /// Hard bound on `tags`.
    capacity: usize,
}

impl SendmeTags {
    /// An empty queue holding at most `capacity` tags.
    pub fn new(capacity: usize) -> Self {
        SendmeTags {
            tags: VecDeque::new(),
            capacity,
        }
    }

    /// The queue for a window of `max_window` cells acknowledged `inc` at a
    /// time: room for `max_window / inc` tags.
    pub fn for_window(max_window: u64, inc: u64) -> Self {
        let cap = max_window / inc.max(1);
        Self::new(usize::try_from(cap).unwrap_or(usize::MAX))
    }

    /// Remember the tag of a DATA cell we just sent that will make the
    /// peer send a SENDME. Fails (a local error) when the queue is full,
    /// which only happens if the sender overruns its window.
    pub fn record(&mut self, tag: SendmeTag) -> Result<(), CcError> {
        if self.tags.len() >= self.capacity {
            return Err(CcError::SendWindowClosed {
                kind: WindowKind::Circuit,
            });
        }
        self.tags.push_back(tag);
        Ok(())
    }

    /// Check a received circuit-level SENDME (tor-spec §7.3.1, proposal
    /// 289): `received` is its tag (`None` for version 0), `accept_min` the
    /// lowest version accepted (see
    /// [`CcParams::sendme_accept_min`](super::params::CcParams::sendme_accept_min)).
    ///
    /// On success the oldest expected tag is consumed. Errors: a version
    /// outside `[accept_min, 1]`; no SENDME outstanding; a tag that is not
    /// the oldest expected one (compared in constant time). The version is
    /// checked first; the oldest tag is consumed whenever the version is
    /// acceptable, as in C-tor, but a failure closes the circuit anyway.
    pub fn validate(
        &mut self,
        received: Option<&SendmeTag>,
        accept_min: u8,
    ) -> Result<(), CcError> {
        let version = if received.is_some() { 1 } else { 0 };
        if version < accept_min || accept_min > SENDME_MAX_SUPPORTED_VERSION {
            return Err(CcError::SendmeVersionRejected {
                version,
                min: accept_min,
            });
        }
        let expected = self.tags.pop_front().ok_or(CcError::UnexpectedSendme {
            kind: WindowKind::Circuit,
        })?;
        match received {
            // `SendmeTag`'s equality is constant-time (`CtByteArray`).
            Some(tag) if *tag != expected => Err(CcError::SendmeTagMismatch),
            _ => Ok(()),
        }
    }

    /// Tags waiting for their SENDME.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// True if no SENDME is expected.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The bound on the queue.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The sending side of a fixed window (tor-spec §7.3 for circuits, §7.4 for
/// streams).
#[derive(Debug, Clone)]
pub struct PackageWindow {
    /// Circuit or stream.
    kind: WindowKind,
    /// Cells we may still send.
    window: u32,
    /// Largest window a SENDME may bring us to.
    max: u32,
    /// Cells per SENDME.
    inc: u32,
    /// Cells sent since the last multiple of `inc` (0..inc).
    since_expected: u32,
}

impl PackageWindow {
    /// A circuit package window: `circwindow` (the consensus parameter,
    /// clamped to [100, 1000]) cells to start, +100 per SENDME, at most
    /// 1000 (C-tor `CIRCWINDOW_START_MAX`).
    pub fn circuit(circwindow: u32) -> Self {
        PackageWindow {
            kind: WindowKind::Circuit,
            window: circwindow.clamp(CIRCWINDOW_INCREMENT, CIRCWINDOW_START_MAX),
            max: CIRCWINDOW_START_MAX,
            inc: CIRCWINDOW_INCREMENT,
            since_expected: 0,
        }
    }

    /// A stream package window: 500 cells, +50 per SENDME, at most 500.
    pub fn stream() -> Self {
        PackageWindow {
            kind: WindowKind::Stream,
            window: STREAMWINDOW_START,
            max: STREAMWINDOW_START,
            inc: STREAMWINDOW_INCREMENT,
            since_expected: 0,
        }
    }

    /// True if a DATA cell may be sent.
    pub fn can_send(&self) -> bool {
        self.window > 0
    }

    /// Cells we may still send.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// A DATA cell was sent. Returns true if it makes the peer send a
    /// SENDME (every `inc`-th cell, which is when the peer's deliver window
    /// crosses an increment): for a circuit, record its tag. Counting cells
    /// rather than testing the window keeps sender and receiver in step
    /// even when `circwindow` is not 1000. Fails, a local error, if the
    /// window was empty.
    pub fn on_data_sent(&mut self) -> Result<bool, CcError> {
        if self.window == 0 {
            return Err(CcError::SendWindowClosed { kind: self.kind });
        }
        self.window -= 1;
        self.since_expected += 1;
        if self.since_expected == self.inc {
            self.since_expected = 0;
            return Ok(true);
        }
        Ok(false)
    }

    /// A SENDME for this window arrived (its tag, for a circuit, already
    /// checked). A window above its maximum is the peer's protocol
    /// violation (C-tor `sendme_process_circuit_level_impl`,
    /// `sendme_process_stream_level`).
    pub fn on_sendme(&mut self) -> Result<(), CcError> {
        let new = self.window.saturating_add(self.inc);
        if new > self.max {
            return Err(CcError::PackageWindowOverflow {
                kind: self.kind,
                max: self.max,
            });
        }
        self.window = new;
        Ok(())
    }
}

/// The receiving side of a window: counts DATA cells and says when to send
/// a SENDME (tor-spec §7.3, §7.4; with congestion control the circuit
/// deliver window still paces SENDMEs, proposal 324 §3).
#[derive(Debug, Clone)]
pub struct DeliverWindow {
    /// Circuit or stream.
    kind: WindowKind,
    /// Cells the peer may still send.
    window: u32,
    /// Initial (and maximum) window.
    start: u32,
    /// Cells per SENDME.
    inc: u32,
}

impl DeliverWindow {
    /// A circuit deliver window without congestion control: 1000, SENDME
    /// every 100 cells.
    pub fn circuit() -> Self {
        Self::with(
            WindowKind::Circuit,
            CIRCWINDOW_START_MAX,
            CIRCWINDOW_INCREMENT,
        )
    }

    /// A circuit deliver window with congestion control: a SENDME every
    /// `sendme_inc` cells (the negotiated `cc_sendme_inc`; 0 is taken as 1).
    /// Since we send each SENDME as soon as it is due, the window never
    /// goes below `1000 − sendme_inc`.
    pub fn circuit_cc(sendme_inc: u8) -> Self {
        Self::with(
            WindowKind::Circuit,
            CIRCWINDOW_START_MAX,
            u32::from(sendme_inc.max(1)),
        )
    }

    /// A stream deliver window: 500, SENDME every 50 cells (only without
    /// congestion control).
    pub fn stream() -> Self {
        Self::with(
            WindowKind::Stream,
            STREAMWINDOW_START,
            STREAMWINDOW_INCREMENT,
        )
    }

    /// A window of `start` cells acknowledged `inc` at a time.
    fn with(kind: WindowKind, start: u32, inc: u32) -> Self {
        DeliverWindow {
            kind,
            window: start,
            start,
            inc: inc.min(start),
        }
    }

    /// A DATA cell arrived. A cell beyond the window is the peer's
    /// protocol violation (tor-spec §7.3: "If a deliver window goes below
    /// 0, the circuit should be torn down").
    pub fn on_data_received(&mut self) -> Result<(), CcError> {
        if self.window == 0 {
            return Err(CcError::DeliverWindowExhausted { kind: self.kind });
        }
        self.window -= 1;
        Ok(())
    }

    /// True if a SENDME is due (the window is a full increment below its
    /// start).
    pub fn sendme_due(&self) -> bool {
        self.window + self.inc <= self.start
    }

    /// If a SENDME is due, account for sending it and return true. For a
    /// circuit, call this right after each DATA cell and send a SENDME v1
    /// with that cell's digest when it returns true (proposal 289: one
    /// SENDME per increment, right away). For a stream, call it when the
    /// application has taken the data (tor-spec §7.4), in a loop.
    pub fn take_sendme(&mut self) -> bool {
        if self.sendme_due() {
            self.window += self.inc;
            true
        } else {
            false
        }
    }

    /// Cells the peer may still send.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Cells per SENDME.
    pub fn increment(&self) -> u32 {
        self.inc
    }

    /// SENDMEs due and not yet taken (more than one only while the caller
    /// holds them back).
    pub fn due_increments(&self) -> u32 {
        (self.start - self.window) / self.inc.max(1)
    }
}

/// A circuit deliver window whose due SENDMEs the receiver may hold back:
/// Braid's receiver backpressure (a Conflux set holds the legs that are
/// ahead of a gap in its reorder queue). With congestion control the sender
/// stops once its window of unacknowledged cells is full (proposal 324
/// §3), so holding our SENDMEs slows it without breaking the protocol.
/// Held SENDMEs keep the tags of the cells that made them due (proposal
/// 289) and go in order. Holding never lets our window fall below two
/// increments: a sender whose congestion window is larger than ours (1000
/// cells) is never pushed into a violation by us. `T` is the tag type.
#[derive(Debug, Clone)]
pub struct PacedDeliver<T> {
    /// The window.
    window: DeliverWindow,
    /// Due SENDMEs not sent, as their tags, oldest first.
    held: VecDeque<T>,
    /// Hold them (only honoured with congestion control).
    hold: bool,
    /// The hop runs congestion control (else a fixed window of 1000 is
    /// the bound already and nothing is held).
    cc: bool,
}

impl<T: Copy> PacedDeliver<T> {
    /// Pacing over `window`; `cc`: the hop runs congestion control.
    pub fn new(window: DeliverWindow, cc: bool) -> Self {
        Self {
            window,
            held: VecDeque::new(),
            hold: false,
            cc,
        }
    }

    /// A DATA cell carrying `tag` arrived: count it, and remember the tag
    /// if a SENDME became due with it. Then take [`Self::next_sendme`].
    pub fn on_data(&mut self, tag: T) -> Result<(), CcError> {
        self.window.on_data_received()?;
        let due = usize::try_from(self.window.due_increments()).unwrap_or(usize::MAX);
        if due > self.held.len() {
            self.held.push_back(tag);
        }
        Ok(())
    }

    /// The next SENDME to send now (its tag), if any; call until `None`.
    pub fn next_sendme(&mut self) -> Option<T> {
        let floor = self.window.increment().saturating_mul(2);
        if self.hold && self.cc && self.window.window() > floor {
            return None;
        }
        let tag = self.held.pop_front()?;
        self.window.take_sendme().then_some(tag)
    }

    /// Hold SENDMEs back or not; after a release, [`Self::next_sendme`]
    /// gives every held one.
    pub fn set_hold(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// SENDMEs due and held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Cells the peer may still send before our next SENDME.
    pub fn window(&self) -> u32 {
        self.window.window()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(b: u8) -> SendmeTag {
        SendmeTag::from([b; 20])
    }

    #[test]
    fn v1_body_round_trip() {
        let t = SendmeTag::from(*b"0123456789abcdefghij");
        let body = sendme_v1_body(&t);
        assert_eq!(&body[..3], &[1, 0, 20]);
        assert_eq!(body.len(), 23);
        assert_eq!(parse_sendme_body(&body).unwrap(), Some(t));
        // Version 0, empty or not.
        assert_eq!(parse_sendme_body(&[]).unwrap(), None);
        assert_eq!(parse_sendme_body(&[0, 0, 0]).unwrap(), None);
        // Unknown version, short data, bad length.
        assert!(parse_sendme_body(&[2, 0, 0]).is_err());
        assert!(parse_sendme_body(&[1, 0, 20, 1, 2]).is_err());
        assert!(parse_sendme_body(&[1, 0, 5, 1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn validate_matching_tags_in_order() {
        let mut q = SendmeTags::new(10);
        q.record(tag(1)).unwrap();
        q.record(tag(2)).unwrap();
        q.validate(Some(&tag(1)), 1).unwrap();
        q.validate(Some(&tag(2)), 1).unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn tag_mismatch_rejected() {
        let mut q = SendmeTags::new(10);
        q.record(tag(1)).unwrap();
        q.record(tag(2)).unwrap();
        // The second tag, out of order, is a mismatch.
        assert_eq!(
            q.validate(Some(&tag(2)), 1),
            Err(CcError::SendmeTagMismatch)
        );
        let mut q = SendmeTags::new(10);
        q.record(tag(1)).unwrap();
        assert_eq!(
            q.validate(Some(&tag(9)), 1),
            Err(CcError::SendmeTagMismatch)
        );
    }

    #[test]
    fn unexpected_sendme_rejected() {
        let mut q = SendmeTags::new(10);
        assert_eq!(
            q.validate(Some(&tag(1)), 1),
            Err(CcError::UnexpectedSendme {
                kind: WindowKind::Circuit
            })
        );
        q.record(tag(1)).unwrap();
        q.validate(Some(&tag(1)), 1).unwrap();
        assert!(matches!(
            q.validate(Some(&tag(1)), 1),
            Err(CcError::UnexpectedSendme { .. })
        ));
    }

    #[test]
    fn version_rules() {
        let mut q = SendmeTags::new(10);
        q.record(tag(1)).unwrap();
        // v0 rejected when v1 is required, and the expectation stays.
        assert_eq!(
            q.validate(None, 1),
            Err(CcError::SendmeVersionRejected { version: 0, min: 1 })
        );
        assert_eq!(q.len(), 1);
        // v0 accepted when the minimum is 0 (C-tor's default) but still
        // needs an outstanding expectation.
        q.validate(None, 0).unwrap();
        assert!(q.validate(None, 0).is_err());
        // A minimum above what we support rejects everything.
        q.record(tag(1)).unwrap();
        assert!(matches!(
            q.validate(Some(&tag(1)), 2),
            Err(CcError::SendmeVersionRejected { .. })
        ));
    }

    #[test]
    fn tag_queue_is_bounded() {
        let mut q = SendmeTags::for_window(1000, 100);
        for i in 0..10 {
            q.record(tag(i)).unwrap();
        }
        assert!(q.record(tag(11)).is_err());
        assert_eq!(q.len(), 10);
    }

    #[test]
    fn fixed_circuit_window_counts() {
        let mut w = PackageWindow::circuit(1000);
        let mut expecting = Vec::new();
        for i in 1..=1000 {
            if w.on_data_sent().unwrap() {
                expecting.push(i);
            }
        }
        assert_eq!(expecting, (1..=10).map(|k| k * 100).collect::<Vec<_>>());
        assert!(!w.can_send());
        assert!(w.on_data_sent().is_err());
        w.on_sendme().unwrap();
        assert_eq!(w.window(), 100);
        // Ten SENDMEs bring it back to 1000; an eleventh overflows.
        for _ in 0..9 {
            w.on_sendme().unwrap();
        }
        assert_eq!(w.window(), 1000);
        assert_eq!(
            w.on_sendme(),
            Err(CcError::PackageWindowOverflow {
                kind: WindowKind::Circuit,
                max: 1000
            })
        );
    }

    #[test]
    fn fixed_stream_window_counts() {
        let mut w = PackageWindow::stream();
        for _ in 0..50 {
            w.on_data_sent().unwrap();
        }
        assert_eq!(w.window(), 450);
        w.on_sendme().unwrap();
        assert!(matches!(
            w.on_sendme(),
            Err(CcError::PackageWindowOverflow {
                kind: WindowKind::Stream,
                ..
            })
        ));
    }

    #[test]
    fn small_circwindow_still_expects_every_hundredth() {
        let mut w = PackageWindow::circuit(150);
        let n: Vec<usize> = (1..=150).filter(|_| w.on_data_sent().unwrap()).collect();
        assert_eq!(n, vec![100]);
    }

    #[test]
    fn deliver_window_circuit() {
        let mut d = DeliverWindow::circuit();
        let mut sendmes = 0;
        for i in 1..=1000 {
            d.on_data_received().unwrap();
            if d.take_sendme() {
                sendmes += 1;
                assert_eq!(i % 100, 0);
            }
        }
        assert_eq!(sendmes, 10);
        assert_eq!(d.window(), 1000);
    }

    #[test]
    fn deliver_window_goes_negative_is_violation() {
        let mut d = DeliverWindow::circuit();
        // A receiver that never sends SENDMEs: cell 1001 is a violation.
        for _ in 0..1000 {
            d.on_data_received().unwrap();
        }
        assert_eq!(
            d.on_data_received(),
            Err(CcError::DeliverWindowExhausted {
                kind: WindowKind::Circuit
            })
        );
        let mut s = DeliverWindow::stream();
        for _ in 0..500 {
            s.on_data_received().unwrap();
        }
        assert!(s.on_data_received().is_err());
        // The application drained: several stream SENDMEs at once.
        let mut n = 0;
        while s.take_sendme() {
            n += 1;
        }
        assert_eq!(n, 10);
    }

    #[test]
    fn deliver_window_cc_paces_by_sendme_inc() {
        let mut d = DeliverWindow::circuit_cc(31);
        let due: Vec<u32> = (1..=100)
            .filter(|_| {
                d.on_data_received().unwrap();
                d.take_sendme()
            })
            .collect();
        assert_eq!(due, vec![31, 62, 93]);
        assert!(d.window() > 1000 - 31);
    }

    proptest! {
        /// For any interleaving of sends (when the window allows),
        /// honest and forged SENDMEs, the tag queue never exceeds its
        /// bound, honest SENDMEs are always accepted, and the window stays
        /// within [0, 1000].
        #[test]
        fn tag_queue_bounded(ops in proptest::collection::vec(0u8..4, 1..3000)) {
            let mut w = PackageWindow::circuit(1000);
            let mut q = SendmeTags::for_window(1000, 100);
            let mut sent: VecDeque<SendmeTag> = VecDeque::new();
            let mut n: u32 = 0;
            for op in ops {
                match op {
                    0 | 1 => {
                        if w.can_send() {
                            n = n.wrapping_add(1);
                            if w.on_data_sent().unwrap() {
                                let mut b = [1u8; 20];
                                b[1..5].copy_from_slice(&n.to_be_bytes());
                                let t = SendmeTag::from(b);
                                q.record(t).unwrap();
                                sent.push_back(t);
                            }
                        } else {
                            prop_assert!(w.on_data_sent().is_err());
                        }
                    }
                    2 => {
                        // Honest SENDME, if one is due.
                        if let Some(t) = sent.pop_front() {
                            prop_assert!(q.validate(Some(&t), 1).is_ok());
                            prop_assert!(w.on_sendme().is_ok());
                        } else {
                            prop_assert!(q.validate(Some(&tag(0)), 1).is_err());
                        }
                    }
                    _ => {
                        // Forged: wrong tag, or none due. Always rejected;
                        // the circuit would close, so start a fresh one.
                        let forged = SendmeTag::from([0xEE; 20]);
                        prop_assert!(q.validate(Some(&forged), 1).is_err());
                        w = PackageWindow::circuit(1000);
                        q = SendmeTags::for_window(1000, 100);
                        sent.clear();
                    }
                }
                prop_assert!(q.len() <= q.capacity());
                prop_assert!(q.capacity() == 10);
                prop_assert!(w.window() <= 1000);
            }
        }
    }
}
