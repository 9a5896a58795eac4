//! Circuit-level send control: one object for the circuit reactor, whether
//! the hop negotiated congestion control (TOR_VEGAS, proposal 324) or uses
//! fixed windows (tor-spec §7.3), with SENDME v1 authentication (proposal
//! 289) in both cases.
//!
//! Sending a DATA cell: check [`CircuitSender::can_send`], send, then call
//! [`CircuitSender::on_data_sent`] with a closure that yields the cell's
//! SENDME tag (the relay crypto digest); it is called only for the cells
//! that make the peer send a SENDME. Receiving a circuit-level SENDME:
//! [`CircuitSender::on_sendme_received`] with its parsed tag, which checks
//! the tag against the oldest expected one and then credits the window.
//!
//! The receiving side is a [`DeliverWindow`](super::sendme::DeliverWindow)
//! (`circuit()` or `circuit_cc(sendme_inc)`).

use std::time::Instant;

use super::error::CcError;
use super::params::{CIRCWINDOW_INCREMENT, CIRCWINDOW_START_MAX, CcParams, CcPath};
use super::rtt::RttSample;
use super::sendme::{PackageWindow, SendmeTag, SendmeTags};
use super::vegas::Vegas;

/// The window algorithm behind a [`CircuitSender`].
#[derive(Debug, Clone)]
pub enum SendControl {
    /// Fixed circuit window (no congestion control negotiated).
    Fixed(PackageWindow),
    /// TOR_VEGAS.
    Vegas(Box<Vegas>),
}

/// Send control of one circuit hop: window plus expected SENDME tags.
#[derive(Debug, Clone)]
pub struct CircuitSender {
    /// The window algorithm.
    ctrl: SendControl,
    /// Tags of the cells that expect a SENDME.
    tags: SendmeTags,
    /// Lowest SENDME version accepted.
    accept_min: u8,
}

impl CircuitSender {
    /// Fixed-window sending (tor-spec §7.3), initial window `circwindow`.
    pub fn fixed(params: &CcParams) -> Self {
        CircuitSender {
            ctrl: SendControl::Fixed(PackageWindow::circuit(params.circwindow)),
            tags: SendmeTags::for_window(
                u64::from(CIRCWINDOW_START_MAX),
                u64::from(CIRCWINDOW_INCREMENT),
            ),
            accept_min: params.sendme_accept_min(),
        }
    }

    /// TOR_VEGAS sending with the negotiated `sendme_inc`.
    pub fn vegas(params: &CcParams, path: CcPath, sendme_inc: u8) -> Self {
        let v = Vegas::new(params, path, sendme_inc);
        let (_, max) = v.cwnd_bounds();
        CircuitSender {
            tags: SendmeTags::for_window(max, v.sendme_inc()),
            ctrl: SendControl::Vegas(Box::new(v)),
            accept_min: params.sendme_accept_min(),
        }
    }

    /// True if a DATA cell may be sent now.
    pub fn can_send(&self) -> bool {
        match &self.ctrl {
            SendControl::Fixed(w) => w.can_send(),
            SendControl::Vegas(v) => v.can_send(),
        }
    }

    /// DATA cells that may be sent now.
    pub fn send_window(&self) -> u64 {
        match &self.ctrl {
            SendControl::Fixed(w) => u64::from(w.window()),
            SendControl::Vegas(v) => v.send_window(),
        }
    }

    /// A DATA cell was sent at `now`. `tag` gives its SENDME tag; it is
    /// called only if this cell makes the peer send a SENDME. Returns
    /// whether it did. Fails, a local error, if the window was closed; the
    /// state is then unchanged.
    pub fn on_data_sent(
        &mut self,
        now: Instant,
        tag: impl FnOnce() -> SendmeTag,
    ) -> Result<bool, CcError> {
        if !self.can_send() {
            return Err(CcError::SendWindowClosed {
                kind: super::error::WindowKind::Circuit,
            });
        }
        let expects = match &mut self.ctrl {
            SendControl::Fixed(w) => w.on_data_sent()?,
            SendControl::Vegas(v) => v.on_data_sent(now)?,
        };
        if expects {
            self.tags.record(tag())?;
        }
        Ok(expects)
    }

    /// A circuit-level SENDME arrived at `now` with `tag` (`None` for a
    /// version 0 body; see [`parse_sendme_body`](super::sendme::parse_sendme_body)).
    /// Checks it (proposal 289) and credits the window. Returns the RTT
    /// sample with congestion control, `None` with fixed windows.
    pub fn on_sendme_received(
        &mut self,
        now: Instant,
        tag: Option<&SendmeTag>,
    ) -> Result<Option<RttSample>, CcError> {
        self.tags.validate(tag, self.accept_min)?;
        match &mut self.ctrl {
            SendControl::Fixed(w) => w.on_sendme().map(|()| None),
            SendControl::Vegas(v) => v.on_sendme_received(now).map(Some),
        }
    }

    /// The driver reports the channel state (see
    /// [`Vegas::set_blocked_on_channel`]); ignored with fixed windows.
    pub fn set_blocked_on_channel(&mut self, blocked: bool, queued_cells: u64) {
        if let SendControl::Vegas(v) = &mut self.ctrl {
            v.set_blocked_on_channel(blocked, queued_cells);
        }
    }

    /// The window algorithm.
    pub fn control(&self) -> &SendControl {
        &self.ctrl
    }

    /// The Vegas state, if congestion control is in use.
    pub fn vegas_state(&self) -> Option<&Vegas> {
        match &self.ctrl {
            SendControl::Vegas(v) => Some(v),
            SendControl::Fixed(_) => None,
        }
    }

    /// SENDMEs outstanding.
    pub fn expected_sendmes(&self) -> usize {
        self.tags.len()
    }

    /// The bound on outstanding SENDMEs.
    pub fn expected_sendmes_capacity(&self) -> usize {
        self.tags.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::sendme::{DeliverWindow, parse_sendme_body, sendme_v1_body};
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// A fake running digest: the tag of cell `n`.
    fn digest(n: u64) -> SendmeTag {
        let mut b = [0u8; 20];
        for (i, x) in n.to_be_bytes().iter().enumerate() {
            if let Some(slot) = b.get_mut(i) {
                *slot = *x;
            }
        }
        SendmeTag::from(b)
    }

    /// Sender and receiver in lock step, SENDMEs carried as encoded bodies.
    fn exchange(mut s: CircuitSender, mut d: DeliverWindow, cells: u64) -> CircuitSender {
        let mut now = Instant::now();
        let mut wire: VecDeque<Vec<u8>> = VecDeque::new();
        let mut n = 0;
        while n < cells {
            while s.can_send() && n < cells {
                n += 1;
                now += Duration::from_micros(100);
                s.on_data_sent(now, || digest(n)).unwrap();
                d.on_data_received().unwrap();
                if d.take_sendme() {
                    wire.push_back(sendme_v1_body(&digest(n)));
                }
            }
            now += Duration::from_millis(20);
            while let Some(body) = wire.pop_front() {
                let tag = parse_sendme_body(&body).unwrap();
                s.on_sendme_received(now, tag.as_ref()).unwrap();
            }
        }
        s
    }

    #[test]
    fn fixed_window_end_to_end() {
        let p = CcParams::default();
        let s = exchange(CircuitSender::fixed(&p), DeliverWindow::circuit(), 5000);
        // 5000 is a multiple of 100: every SENDME came back.
        assert_eq!(s.send_window(), 1000);
        assert!(s.vegas_state().is_none());
    }

    #[test]
    fn vegas_end_to_end() {
        let p = CcParams::default();
        let s = exchange(
            CircuitSender::vegas(&p, CcPath::Exit, 31),
            DeliverWindow::circuit_cc(31),
            20_000,
        );
        let v = s.vegas_state().unwrap();
        assert!(v.cwnd() > 124, "grew: {}", v.cwnd());
        assert!(v.ewma_rtt().is_some());
    }

    #[test]
    fn wrong_tag_and_unexpected_sendme() {
        let p = CcParams::default();
        let mut s = CircuitSender::vegas(&p, CcPath::Exit, 31);
        let now = Instant::now();
        assert!(matches!(
            s.on_sendme_received(now, Some(&digest(31))),
            Err(CcError::UnexpectedSendme { .. })
        ));
        for n in 1..=31 {
            s.on_data_sent(now, || digest(n)).unwrap();
        }
        assert_eq!(
            s.on_sendme_received(now, Some(&digest(30))),
            Err(CcError::SendmeTagMismatch)
        );
        // v0 is refused by default (Braid requires v1).
        let mut s = CircuitSender::fixed(&p);
        for n in 1..=100 {
            s.on_data_sent(now, || digest(n)).unwrap();
        }
        assert!(matches!(
            s.on_sendme_received(now, None),
            Err(CcError::SendmeVersionRejected { .. })
        ));
    }

    #[test]
    fn tag_closure_called_only_when_expected() {
        let p = CcParams::default();
        let mut s = CircuitSender::fixed(&p);
        let now = Instant::now();
        let mut calls = 0;
        for n in 1..=1000 {
            s.on_data_sent(now, || {
                calls += 1;
                digest(n)
            })
            .unwrap();
        }
        assert_eq!(calls, 10);
        assert!(s.on_data_sent(now, || digest(0)).is_err());
    }

    proptest! {
        /// Whatever the peer sends (honest, forged or spurious SENDMEs),
        /// the expected-tag queue stays within its bound and cwnd within
        /// its limits.
        #[test]
        fn queue_bounded_for_any_input(
            ops in proptest::collection::vec((0u8..4, 1u16..400), 1..300),
            vegas in any::<bool>(),
        ) {
            let p = CcParams::default();
            let mut s = if vegas {
                CircuitSender::vegas(&p, CcPath::Exit, 31)
            } else {
                CircuitSender::fixed(&p)
            };
            let mut now = Instant::now();
            let mut honest: VecDeque<SendmeTag> = VecDeque::new();
            let mut n = 0u64;
            for (op, k) in ops {
                now += Duration::from_micros(u64::from(k) * 100);
                match op {
                    0 | 1 => {
                        for _ in 0..k {
                            if !s.can_send() { break; }
                            n += 1;
                            if s.on_data_sent(now, || digest(n)).unwrap() {
                                honest.push_back(digest(n));
                            }
                        }
                    }
                    2 => {
                        if let Some(t) = honest.pop_front() {
                            prop_assert!(s.on_sendme_received(now, Some(&t)).is_ok());
                        } else {
                            prop_assert!(s.on_sendme_received(now, Some(&digest(0))).is_err());
                        }
                    }
                    _ => {
                        // A forged tag is always refused.
                        let forged = SendmeTag::from([0xAB; 20]);
                        prop_assert!(s.on_sendme_received(now, Some(&forged)).is_err());
                        // The circuit would be closed: start a new one.
                        s = if vegas { CircuitSender::vegas(&p, CcPath::Exit, 31) } else { CircuitSender::fixed(&p) };
                        honest.clear();
                    }
                }
                prop_assert!(s.expected_sendmes() <= s.expected_sendmes_capacity());
                prop_assert_eq!(s.expected_sendmes(), honest.len());
                if let Some(v) = s.vegas_state() {
                    let (lo, hi) = v.cwnd_bounds();
                    prop_assert!(v.cwnd() >= lo && v.cwnd() <= hi);
                }
            }
        }
    }
}
