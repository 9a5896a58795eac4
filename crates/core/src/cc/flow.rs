//! Stream flow control on congestion-controlled circuits: XON/XOFF
//! (proposal 324 §4, C-tor `congestion_control_flow.c`).
//!
//! Streams on a circuit with congestion control have no SENDME windows
//! (§4: "we will discard stream windows entirely"). Instead the receiving
//! edge watches how many bytes wait for its application (or, at an exit,
//! its TCP connection) and:
//! - sends **XOFF** when that buffer exceeds `cc_xoff_client` /
//!   `cc_xoff_exit` cells' worth (§4.1.1), after a 5 ms grace that lets
//!   the buffer drain first (as C-tor does);
//! - sends **XON** once the buffer has drained, carrying the measured
//!   drain rate in KB/s as an advisory (§4.1.2), and advisory XONs when that
//!   rate moves by more than `cc_xon_change_pct`.
//!
//! The sending edge stops sending on the stream after an XOFF until an XON,
//! and may pace to the advised rate.
//!
//! Braid adds two checks C-tor leaves to its OOM killer or the vanguards
//! addon (§4.1.3, §4.1.4): a peer that keeps sending after our XOFF beyond
//! [`FlowParams::xoff_grace_bytes`] is a protocol violation
//! ([`CcError::XoffIgnored`]), and on the client side more XOFFs or XONs
//! than our sent bytes can explain are violations (dropmark defence).
//!
//! [`StreamFlowCtrl`] picks between these and fixed stream windows
//! (tor-spec §7.4) for circuits without congestion control.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use tor_cell::relaycell::flow_ctrl::XonKBpsEwma;

use super::error::{CcError, WindowKind};
use super::params::{FlowParams, RELAY_PAYLOAD_SIZE};
use super::rtt::n_count_ewma;
use super::sendme::{DeliverWindow, PackageWindow};

/// How long the buffer may sit over the XOFF limit before we send XOFF
/// (C-tor `XOFF_GRACE_PERIOD_USEC`, 5 ms): time for the edge to flush.
pub const XOFF_GRACE_PERIOD: Duration = Duration::from_millis(5);

/// A buffer larger than this many cells' worth is assumed not to be
/// draining, and advisory XONs are considered on data arrival too (C-tor
/// `MAX_EXPECTED_CELL_BURST`).
const MAX_EXPECTED_CELL_BURST: u64 = 32;

/// Dropmark accounting is halved when the XOFF or XON count reaches this
/// (C-tor `XOFF_COUNT_SCALE_AT`, `XON_COUNT_SCALE_AT`).
const COUNT_SCALE_AT: u64 = 200;

/// ... or when the bytes sent reach this (C-tor `TOTAL_XMIT_SCALE_AT`).
const TOTAL_XMIT_SCALE_AT: u64 = 10 << 20;

/// Which end of the stream we are, which selects the XOFF limit: clients
/// and onion services have local edges (`cc_xoff_client`), exits remote ones
/// (`cc_xoff_exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// A client (or an onion service).
    Client,
    /// An exit.
    Exit,
}

/// A flow control message the receiving edge must send on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowSignal {
    /// Send XOFF: stop sending on this stream.
    Xoff,
    /// Send XON with this advisory rate (resume, or rate update).
    Xon(XonKBpsEwma),
}

/// Encode a rate in KB/s for an XON (0 means unlimited, proposal 324
/// §4.1).
fn xon_rate(kbps: u32) -> XonKBpsEwma {
    match NonZeroU32::new(kbps) {
        Some(r) => XonKBpsEwma::Limited(r),
        None => XonKBpsEwma::Unlimited,
    }
}

/// The receiving side of a stream: decides when to send XOFF and XON.
#[derive(Debug, Clone)]
pub struct XonXoffReceiver {
    /// Buffered bytes above which we send XOFF.
    xoff_limit: u64,
    /// Bytes drained per rate measurement.
    xon_rate_bytes: u64,
    /// Rate change (percent) that warrants an advisory XON.
    xon_change_pct: u64,
    /// N of the rate N-EWMA.
    xon_ewma_cnt: u64,
    /// Bytes the peer may send after our XOFF.
    grace_bytes: u64,
    /// We sent XOFF and no XON since.
    xoff_sent: bool,
    /// When the buffer first exceeded the limit (grace period start).
    grace_start: Option<Instant>,
    /// Bytes received since our XOFF.
    since_xoff: u64,
    /// Bytes drained since `drain_start`.
    drained_bytes: u64,
    /// Bytes drained by reads that left the buffer empty, since the last
    /// read that did not or the last doubling (for the empty-buffer
    /// doubling).
    empty_drained_bytes: u64,
    /// Start of the current drain measurement.
    drain_start: Option<Instant>,
    /// Smoothed drain rate, KB/s (0: none).
    ewma_drain_rate: u32,
    /// Rate in the last XON we sent (0: none).
    rate_last_sent: u32,
}

impl XonXoffReceiver {
    /// A receiver for a stream at edge `kind`.
    pub fn new(params: &FlowParams, kind: EdgeKind) -> Self {
        XonXoffReceiver {
            xoff_limit: match kind {
                EdgeKind::Client => params.xoff_client_bytes,
                EdgeKind::Exit => params.xoff_exit_bytes,
            },
            xon_rate_bytes: params.xon_rate_bytes,
            xon_change_pct: u64::from(params.xon_change_pct),
            xon_ewma_cnt: u64::from(params.xon_ewma_cnt),
            grace_bytes: params.xoff_grace_bytes,
            xoff_sent: false,
            grace_start: None,
            since_xoff: 0,
            drained_bytes: 0,
            empty_drained_bytes: 0,
            drain_start: None,
            ewma_drain_rate: 0,
            rate_last_sent: 0,
        }
    }

    /// `len` bytes of DATA arrived at `now`; `buffered` bytes now wait for
    /// the application (these included). Returns a signal to send, if any
    /// (proposal 324 §4.1.1; C-tor `flow_control_decide_xoff`).
    ///
    /// Fails if the peer has sent more than the grace after our XOFF.
    pub fn on_data_received(
        &mut self,
        now: Instant,
        len: u64,
        buffered: u64,
    ) -> Result<Option<FlowSignal>, CcError> {
        if self.xoff_sent {
            self.since_xoff = self.since_xoff.saturating_add(len);
            if self.since_xoff > self.grace_bytes {
                return Err(CcError::XoffIgnored {
                    bytes: self.since_xoff,
                    limit: self.grace_bytes,
                });
            }
        }
        if buffered > self.xoff_limit {
            if !self.xoff_sent {
                match self.grace_start {
                    None => self.grace_start = Some(now),
                    Some(start) if now.saturating_duration_since(start) > XOFF_GRACE_PERIOD => {
                        self.xoff_sent = true;
                        self.since_xoff = 0;
                        // The rate is considered wrong if we got all the way
                        // to XOFF.
                        self.ewma_drain_rate = 0;
                        self.grace_start = None;
                        return Ok(Some(FlowSignal::Xoff));
                    }
                    Some(_) => {}
                }
            }
        } else {
            self.grace_start = None;
        }
        // A buffer over one burst is not draining: consider an advisory XON
        // now, since drain events may be rare.
        if buffered > MAX_EXPECTED_CELL_BURST * u64::from(RELAY_PAYLOAD_SIZE) {
            return Ok(self.on_drained(now, 0, buffered));
        }
        Ok(None)
    }

    /// `written` bytes were taken by the application (or written to the
    /// exit's socket) at `now`; `buffered` bytes remain. Returns an XON to
    /// send, if any (proposal 324 §4.1.1, §4.1.2; C-tor
    /// `flow_control_decide_xon`).
    pub fn on_drained(&mut self, now: Instant, written: u64, buffered: u64) -> Option<FlowSignal> {
        // Keep the byte count bounded: halve it and move the start halfway.
        if self.drained_bytes >= u64::from(u32::MAX).saturating_sub(written) {
            self.drained_bytes /= 2;
            if let Some(start) = self.drain_start {
                let half = now.saturating_duration_since(start) / 2;
                self.drain_start = Some(now.checked_sub(half).unwrap_or(start));
            }
        }
        self.drained_bytes = self.drained_bytes.saturating_add(written);

        if self.drain_start.is_none() && buffered > 0 {
            self.drain_start = Some(now);
            self.drained_bytes = 0;
        }

        if let Some(start) = self.drain_start
            && self.drained_bytes > self.xon_rate_bytes
        {
            let rate = drain_rate_kbps(self.drained_bytes, now.saturating_duration_since(start));
            // A zero time delta (stalled clock) gives no rate; keep
            // measuring.
            if rate != 0 {
                self.ewma_drain_rate = u32::try_from(n_count_ewma(
                    u64::from(rate),
                    u64::from(self.ewma_drain_rate),
                    self.xon_ewma_cnt,
                ))
                .unwrap_or(u32::MAX);
                self.drained_bytes = 0;
                self.drain_start = None;
            }
        }

        let mut signal = None;
        if !self.xoff_sent {
            if self.rate_changed() {
                signal = Some(self.send_xon());
            }
        } else if buffered == 0 {
            signal = Some(self.send_xon());
        }

        // Empty after xon_rate_bytes' worth of writes: the edge can take
        // more; double the advertised rate (§4.1.2). C-tor counts these
        // bytes in `drained_bytes`, which a drain measurement restarts, and
        // one starts whenever more than 32 cells arrive at once (above):
        // with bursts that large, as a Conflux reorder queue releases when
        // a gap fills, its rate never doubled and an exit once advised a
        // low rate was held to it for good (the stream test
        // `advised_rate_grows_when_the_application_keeps_up`). Here only a
        // read that leaves bytes behind (the edge not keeping up) restarts
        // the count.
        if buffered == 0 {
            self.drain_start = None;
            self.empty_drained_bytes = self.empty_drained_bytes.saturating_add(written);
            if self.empty_drained_bytes >= self.xon_rate_bytes && self.rate_last_sent != 0 {
                let doubled = u64::from(self.ewma_drain_rate).saturating_mul(2);
                self.ewma_drain_rate =
                    u32::try_from(doubled.min(u64::from(i32::MAX as u32))).unwrap_or(u32::MAX);
                self.empty_drained_bytes = 0;
                self.drained_bytes = 0;
            }
        } else if written > 0 {
            self.empty_drained_bytes = 0;
        }
        signal
    }

    /// The advised rate moved by more than `cc_xon_change_pct` since the
    /// last XON.
    fn rate_changed(&self) -> bool {
        if self.rate_last_sent == 0 {
            return false;
        }
        let last = u64::from(self.rate_last_sent);
        let now = u64::from(self.ewma_drain_rate);
        now > (100 + self.xon_change_pct) * last / 100
            || now < (100 - self.xon_change_pct.min(100)) * last / 100
    }

    /// Account for sending an XON and build it.
    fn send_xon(&mut self) -> FlowSignal {
        self.rate_last_sent = self.ewma_drain_rate;
        self.xoff_sent = false;
        self.since_xoff = 0;
        FlowSignal::Xon(xon_rate(self.ewma_drain_rate))
    }

    /// True while our XOFF stands.
    pub fn xoff_sent(&self) -> bool {
        self.xoff_sent
    }

    /// The smoothed drain rate in KB/s (0 if unknown).
    pub fn drain_rate_kbps(&self) -> u32 {
        self.ewma_drain_rate
    }
}

/// Bytes over a duration in KB/s (1000 bytes per second), at least 1,
/// capped at `i32::MAX`; 0 for a zero duration (C-tor `compute_drain_rate`).
fn drain_rate_kbps(bytes: u64, over: Duration) -> u32 {
    let us = over.as_micros();
    if us == 0 {
        return 0;
    }
    // bytes/µs · 10^6 µs/s / 1000 bytes/KB = bytes · 1000 / µs
    let rate = u128::from(bytes) * 1000 / us;
    let capped = rate.clamp(1, u128::from(i32::MAX as u32));
    u32::try_from(capped).unwrap_or(u32::MAX)
}

/// The sending side of a stream: honours XOFF and XON.
#[derive(Debug, Clone)]
pub struct XonXoffSender {
    /// An XOFF stands.
    xoff_received: bool,
    /// The advised rate from the last XON.
    rate: XonKBpsEwma,
    /// Bytes sent (scaled down now and then).
    total_bytes_xmit: u64,
    /// XOFFs received (scaled).
    num_xoff_recv: u64,
    /// XONs received (scaled).
    num_xon_recv: u64,
    /// Bytes to send per XOFF the peer may send, if we check (client side).
    xoff_dropmark_limit: Option<u64>,
    /// Bytes to send per XON the peer may send, if we check.
    xon_dropmark_limit: Option<u64>,
}

impl XonXoffSender {
    /// A sender at edge `kind`. A client checks the dropmark limits of
    /// proposal 324 §4.1.4 against the exit's XOFF limit (`onion` selects
    /// `cc_xoff_client` instead, for onion service circuits); an exit does
    /// not check (as C-tor).
    pub fn new(params: &FlowParams, kind: EdgeKind, onion: bool) -> Self {
        let peer_xoff = if onion {
            params.xoff_client_bytes
        } else {
            params.xoff_exit_bytes
        };
        let check = kind == EdgeKind::Client;
        XonXoffSender {
            xoff_received: false,
            rate: XonKBpsEwma::Unlimited,
            total_bytes_xmit: 0,
            num_xoff_recv: 0,
            num_xon_recv: 0,
            xoff_dropmark_limit: check.then_some(peer_xoff.max(1)),
            xon_dropmark_limit: check.then_some(peer_xoff.min(params.xon_rate_bytes).max(1)),
        }
    }

    /// True unless an XOFF stands.
    pub fn can_send(&self) -> bool {
        !self.xoff_received
    }

    /// The rate advised by the last XON (pace to it).
    pub fn rate_limit(&self) -> XonKBpsEwma {
        self.rate
    }

    /// We sent `len` bytes of stream data.
    pub fn on_data_sent(&mut self, len: u64) {
        if self.total_bytes_xmit >= TOTAL_XMIT_SCALE_AT.saturating_sub(len) {
            self.scale_down();
        }
        self.total_bytes_xmit = self.total_bytes_xmit.saturating_add(len);
    }

    /// Halve all dropmark counters (C-tor does so at its scale limits).
    fn scale_down(&mut self) {
        self.total_bytes_xmit /= 2;
        self.num_xoff_recv /= 2;
        self.num_xon_recv /= 2;
    }

    /// An XOFF arrived: stop sending on the stream (proposal 324 §4.1.1).
    pub fn on_xoff(&mut self) -> Result<(), CcError> {
        if self.xoff_received {
            return Err(CcError::DuplicateXoff);
        }
        if self.num_xoff_recv == COUNT_SCALE_AT {
            self.scale_down();
        }
        self.num_xoff_recv += 1;
        if let Some(limit) = self.xoff_dropmark_limit
            && self.total_bytes_xmit < limit.saturating_mul(self.num_xoff_recv)
        {
            return Err(CcError::XoffTooEarly {
                count: self.num_xoff_recv,
                sent: self.total_bytes_xmit,
                limit,
            });
        }
        self.xoff_received = true;
        Ok(())
    }

    /// An XON arrived with an advisory rate: resume sending and pace to it
    /// (proposal 324 §4.1.1, §4.1.2). An XON without a standing XOFF is a
    /// rate update.
    pub fn on_xon(&mut self, rate: XonKBpsEwma) -> Result<(), CcError> {
        if self.num_xon_recv == COUNT_SCALE_AT {
            self.scale_down();
        }
        self.num_xon_recv += 1;
        if let Some(limit) = self.xon_dropmark_limit
            && self.total_bytes_xmit < limit.saturating_mul(self.num_xon_recv)
        {
            return Err(CcError::XonTooEarly {
                count: self.num_xon_recv,
                sent: self.total_bytes_xmit,
                limit,
            });
        }
        self.rate = rate;
        self.xoff_received = false;
        Ok(())
    }
}

/// The flow control of one stream: fixed windows on circuits without
/// congestion control (tor-spec §7.4), XON/XOFF on circuits with it
/// (proposal 324 §4).
#[derive(Debug, Clone)]
pub enum StreamFlowCtrl {
    /// Fixed stream windows (500, +50).
    Window {
        /// Our sending side.
        package: PackageWindow,
        /// Our receiving side.
        deliver: DeliverWindow,
    },
    /// XON/XOFF.
    XonXoff {
        /// Our sending side.
        send: XonXoffSender,
        /// Our receiving side.
        recv: XonXoffReceiver,
    },
}

impl StreamFlowCtrl {
    /// Fixed windows, for a stream on a circuit without congestion control.
    pub fn windowed() -> Self {
        StreamFlowCtrl::Window {
            package: PackageWindow::stream(),
            deliver: DeliverWindow::stream(),
        }
    }

    /// XON/XOFF, for a stream on a congestion-controlled circuit.
    pub fn xon_xoff(params: &FlowParams, kind: EdgeKind, onion: bool) -> Self {
        StreamFlowCtrl::XonXoff {
            send: XonXoffSender::new(params, kind, onion),
            recv: XonXoffReceiver::new(params, kind),
        }
    }

    /// True if a DATA cell may be sent on the stream now.
    pub fn can_send(&self) -> bool {
        match self {
            StreamFlowCtrl::Window { package, .. } => package.can_send(),
            StreamFlowCtrl::XonXoff { send, .. } => send.can_send(),
        }
    }

    /// A DATA cell carrying `len` bytes was sent on the stream.
    pub fn on_data_sent(&mut self, len: u64) -> Result<(), CcError> {
        match self {
            StreamFlowCtrl::Window { package, .. } => package.on_data_sent().map(|_| ()),
            StreamFlowCtrl::XonXoff { send, .. } => {
                if !send.can_send() {
                    return Err(CcError::SendWindowClosed {
                        kind: WindowKind::Stream,
                    });
                }
                send.on_data_sent(len);
                Ok(())
            }
        }
    }

    /// A stream-level SENDME arrived: credits a fixed window; a violation
    /// with congestion control (proposal 324 §2.2).
    pub fn on_sendme(&mut self) -> Result<(), CcError> {
        match self {
            StreamFlowCtrl::Window { package, .. } => package.on_sendme(),
            StreamFlowCtrl::XonXoff { .. } => Err(CcError::StreamSendmeWithCc),
        }
    }

    /// An XOFF arrived; a violation without congestion control (C-tor:
    /// "Got XOFF for non-congestion control circuit").
    pub fn on_xoff(&mut self) -> Result<(), CcError> {
        match self {
            StreamFlowCtrl::Window { .. } => Err(CcError::XonXoffWithoutCc),
            StreamFlowCtrl::XonXoff { send, .. } => send.on_xoff(),
        }
    }

    /// An XON arrived; a violation without congestion control.
    pub fn on_xon(&mut self, rate: XonKBpsEwma) -> Result<(), CcError> {
        match self {
            StreamFlowCtrl::Window { .. } => Err(CcError::XonXoffWithoutCc),
            StreamFlowCtrl::XonXoff { send, .. } => send.on_xon(rate),
        }
    }

    /// A DATA cell with `len` bytes arrived at `now`; `buffered` bytes wait
    /// for the application. Returns an XON/XOFF to send, if any.
    pub fn on_data_received(
        &mut self,
        now: Instant,
        len: u64,
        buffered: u64,
    ) -> Result<Option<FlowSignal>, CcError> {
        match self {
            StreamFlowCtrl::Window { deliver, .. } => deliver.on_data_received().map(|()| None),
            StreamFlowCtrl::XonXoff { recv, .. } => recv.on_data_received(now, len, buffered),
        }
    }

    /// The application took `written` bytes at `now`; `buffered` remain.
    /// Returns how many stream SENDMEs to send (fixed windows: tor-spec §7.4,
    /// when fewer than ten cells' worth remain buffered) or an XON.
    pub fn on_drained(&mut self, now: Instant, written: u64, buffered: u64) -> Drained {
        match self {
            StreamFlowCtrl::Window { deliver, .. } => {
                let mut sendmes = 0;
                if buffered < 10 * u64::from(RELAY_PAYLOAD_SIZE) {
                    while deliver.take_sendme() {
                        sendmes += 1;
                    }
                }
                Drained::Sendmes(sendmes)
            }
            StreamFlowCtrl::XonXoff { recv, .. } => {
                Drained::Signal(recv.on_drained(now, written, buffered))
            }
        }
    }
}

/// What to send after the application drained a stream's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Send this many (empty) stream-level SENDMEs.
    Sendmes(u32),
    /// Send this XON, if any.
    Signal(Option<FlowSignal>),
}

#[cfg(test)]
mod tests {
    use super::*;

    const CELL: u64 = RELAY_PAYLOAD_SIZE as u64;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn xoff_after_limit_and_grace() {
        let p = FlowParams::default();
        let mut r = XonXoffReceiver::new(&p, EdgeKind::Client);
        let t0 = Instant::now();
        // Below the limit (500 cells): nothing.
        assert_eq!(r.on_data_received(t0, CELL, 10 * CELL).unwrap(), None);
        // Over the limit: the grace period starts, no XOFF yet.
        let over = 501 * CELL;
        assert_eq!(r.on_data_received(t0, CELL, over).unwrap(), None);
        assert_eq!(r.on_data_received(t0 + ms(4), CELL, over).unwrap(), None);
        // Still over after 5 ms: XOFF.
        assert_eq!(
            r.on_data_received(t0 + ms(6), CELL, over).unwrap(),
            Some(FlowSignal::Xoff)
        );
        assert!(r.xoff_sent());
        // No second XOFF.
        assert_eq!(r.on_data_received(t0 + ms(20), CELL, over).unwrap(), None);
    }

    #[test]
    fn grace_resets_when_buffer_drains() {
        let p = FlowParams::default();
        let mut r = XonXoffReceiver::new(&p, EdgeKind::Exit);
        let t0 = Instant::now();
        let over = 600 * CELL;
        r.on_data_received(t0, CELL, over).unwrap();
        // Dropped under the limit: the grace restarts.
        r.on_data_received(t0 + ms(3), CELL, 100 * CELL).unwrap();
        assert_eq!(r.on_data_received(t0 + ms(7), CELL, over).unwrap(), None);
        assert_eq!(r.on_data_received(t0 + ms(10), CELL, over).unwrap(), None);
        assert_eq!(
            r.on_data_received(t0 + ms(13), CELL, over).unwrap(),
            Some(FlowSignal::Xoff)
        );
    }

    #[test]
    fn xon_when_drained_with_rate() {
        let p = FlowParams::default();
        let mut r = XonXoffReceiver::new(&p, EdgeKind::Client);
        let t0 = Instant::now();
        let over = 600 * CELL;
        r.on_data_received(t0, CELL, over).unwrap();
        assert_eq!(
            r.on_data_received(t0 + ms(6), CELL, over).unwrap(),
            Some(FlowSignal::Xoff)
        );
        // The application reads 100 cells every 10 ms: 4980 bytes/ms ≈ 4980 KB/s.
        let mut buffered = over;
        let mut t = t0 + ms(6);
        let mut signal = None;
        while buffered > 0 {
            t += ms(10);
            let w = buffered.min(100 * CELL);
            buffered -= w;
            signal = r.on_drained(t, w, buffered);
            if buffered > 0 {
                assert_eq!(signal, None, "no XON before the buffer is empty");
            }
        }
        let Some(FlowSignal::Xon(XonKBpsEwma::Limited(rate))) = signal else {
            panic!("expected an XON with a rate, got {signal:?}");
        };
        assert!((4000..6000).contains(&rate.get()), "rate {rate}");
        assert!(!r.xoff_sent());
    }

    #[test]
    fn advisory_xon_on_rate_change() {
        let p = FlowParams::default();
        let mut r = XonXoffReceiver::new(&p, EdgeKind::Client);
        let t0 = Instant::now();
        let over = 600 * CELL;
        r.on_data_received(t0, CELL, over).unwrap();
        r.on_data_received(t0 + ms(6), CELL, over).unwrap();
        let mut t = t0 + ms(6);
        let mut b = over;
        while b > 0 {
            t += ms(10);
            let w = b.min(100 * CELL);
            b -= w;
            r.on_drained(t, w, b);
        }
        let first = r.drain_rate_kbps();
        assert!(first > 0);
        // Now a much slower drain with data kept buffered: advisory XON.
        let mut got = None;
        let mut b = 300 * CELL;
        for _ in 0..200 {
            t += ms(100);
            got = r.on_drained(t, 10 * CELL, b);
            if got.is_some() {
                break;
            }
            b += 5 * CELL;
        }
        let Some(FlowSignal::Xon(XonKBpsEwma::Limited(rate))) = got else {
            panic!("expected an advisory XON, got {got:?}");
        };
        assert!(rate.get() < first * 3 / 4, "{rate} vs {first}");
    }

    #[test]
    fn ignoring_xoff_is_a_violation() {
        let p = FlowParams::default();
        let mut r = XonXoffReceiver::new(&p, EdgeKind::Exit);
        let t0 = Instant::now();
        let mut b = 600 * CELL;
        r.on_data_received(t0, CELL, b).unwrap();
        assert_eq!(
            r.on_data_received(t0 + ms(6), CELL, b).unwrap(),
            Some(FlowSignal::Xoff)
        );
        // A peer may still have cells in flight: the grace allows them.
        let grace_cells = p.xoff_grace_bytes / CELL;
        for _ in 0..grace_cells {
            b += CELL;
            r.on_data_received(t0 + ms(7), CELL, b).unwrap();
        }
        let err = r.on_data_received(t0 + ms(8), CELL, b + CELL).unwrap_err();
        assert!(matches!(err, CcError::XoffIgnored { .. }), "{err}");
    }

    #[test]
    fn sender_honours_xoff_and_xon() {
        let p = FlowParams::default();
        let mut s = XonXoffSender::new(&p, EdgeKind::Exit, false);
        assert!(s.can_send());
        s.on_xoff().unwrap();
        assert!(!s.can_send());
        assert_eq!(s.on_xoff(), Err(CcError::DuplicateXoff));
        let rate = XonKBpsEwma::Limited(NonZeroU32::new(300).unwrap());
        s.on_xon(rate).unwrap();
        assert!(s.can_send());
        assert_eq!(s.rate_limit(), rate);
    }

    #[test]
    fn client_rejects_early_xoff_and_xon() {
        let p = FlowParams::default();
        let mut s = XonXoffSender::new(&p, EdgeKind::Client, false);
        // Nothing sent yet: an XOFF can only be a dropmark.
        assert!(matches!(s.on_xoff(), Err(CcError::XoffTooEarly { .. })));
        let mut s = XonXoffSender::new(&p, EdgeKind::Client, false);
        s.on_data_sent(p.xoff_exit_bytes);
        s.on_xoff().unwrap();
        s.on_xon(XonKBpsEwma::Unlimited).unwrap();
        // A second XOFF needs another limit's worth of data.
        assert!(matches!(s.on_xoff(), Err(CcError::XoffTooEarly { .. })));
        let mut s = XonXoffSender::new(&p, EdgeKind::Client, false);
        assert!(matches!(
            s.on_xon(XonKBpsEwma::Unlimited),
            Err(CcError::XonTooEarly { .. })
        ));
    }

    #[test]
    fn stream_flow_ctrl_modes() {
        let p = FlowParams::default();
        let t0 = Instant::now();
        let mut w = StreamFlowCtrl::windowed();
        assert_eq!(w.on_xoff(), Err(CcError::XonXoffWithoutCc));
        for _ in 0..500 {
            w.on_data_received(t0, CELL, 0).unwrap();
        }
        assert!(matches!(
            w.on_data_received(t0, CELL, 0),
            Err(CcError::DeliverWindowExhausted { .. })
        ));
        assert_eq!(w.on_drained(t0, 0, 0), Drained::Sendmes(10));
        // The send side: 500 cells, then closed until a SENDME.
        for _ in 0..500 {
            w.on_data_sent(CELL).unwrap();
        }
        assert!(!w.can_send());
        w.on_sendme().unwrap();
        assert!(w.can_send());

        let mut x = StreamFlowCtrl::xon_xoff(&p, EdgeKind::Exit, false);
        assert_eq!(x.on_sendme(), Err(CcError::StreamSendmeWithCc));
        x.on_xoff().unwrap();
        assert!(!x.can_send());
        assert!(x.on_data_sent(CELL).is_err());
        x.on_xon(XonKBpsEwma::Unlimited).unwrap();
        x.on_data_sent(CELL).unwrap();
    }

    proptest::proptest! {
        /// Any sequence of arrivals and drains: no panic, never XOFF while
        /// an XOFF stands, never XON-to-resume without one, and data after
        /// an XOFF is only accepted up to the grace.
        #[test]
        fn receiver_decisions_consistent(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..2000, 0u64..50_000), 1..500),
            exit in proptest::bool::ANY,
        ) {
            let p = FlowParams::default();
            let kind = if exit { EdgeKind::Exit } else { EdgeKind::Client };
            let mut r = XonXoffReceiver::new(&p, kind);
            let mut now = Instant::now();
            let mut buffered: u64 = 0;
            let mut xoff_out = false;
            for (arrive, step_us, bytes) in ops {
                now += Duration::from_micros(step_us * 10);
                if arrive {
                    buffered += bytes;
                    match r.on_data_received(now, bytes, buffered) {
                        Ok(Some(FlowSignal::Xoff)) => {
                            proptest::prop_assert!(!xoff_out);
                            xoff_out = true;
                        }
                        Ok(Some(FlowSignal::Xon(_))) => {
                            proptest::prop_assert!(!xoff_out, "advisory XON only");
                        }
                        Ok(None) => {}
                        Err(CcError::XoffIgnored { bytes, limit }) => {
                            proptest::prop_assert!(xoff_out && bytes > limit);
                            return Ok(());
                        }
                        Err(e) => proptest::prop_assert!(false, "unexpected error {e}"),
                    }
                } else {
                    let w = bytes.min(buffered);
                    buffered -= w;
                    if let Some(FlowSignal::Xon(_)) = r.on_drained(now, w, buffered) {
                        xoff_out = false;
                    }
                }
                proptest::prop_assert_eq!(r.xoff_sent(), xoff_out);
            }
        }
    }

    #[test]
    fn drain_rate_units() {
        assert_eq!(drain_rate_kbps(1000, Duration::from_secs(1)), 1);
        assert_eq!(drain_rate_kbps(1_000_000, Duration::from_secs(1)), 1000);
        assert_eq!(drain_rate_kbps(1, Duration::from_secs(10)), 1);
        assert_eq!(drain_rate_kbps(5, Duration::ZERO), 0);
        assert_eq!(
            drain_rate_kbps(u64::MAX, Duration::from_micros(1)),
            i32::MAX as u32
        );
    }
}
