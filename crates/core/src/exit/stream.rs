//! One exit stream's state: its phase, its two byte queues, flow control,
//! what it still has to send to the client and what it still has to tell
//! the driver.
//!
//! The [`ExitStreamMap`](super::ExitStreamMap) owns the queues across
//! streams; the methods here only look at and change one stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{AnyRelayMsg, BeginFlags, End, EndReason, Sendme};

use crate::cc::params::{RELAY_PAYLOAD_SIZE, STREAMWINDOW_INCREMENT, STREAMWINDOW_START};
use crate::cc::{FlowSignal, StreamFlowCtrl};
use crate::ids::StreamId;
use crate::stream::Target;
use crate::stream::buffer::ByteQueue;
use crate::stream::half_closed::HalfClosed;
use crate::stream::migrate_wire::MigrateMsg;

use super::error::ExitStreamState;
use super::event::ExitEvent;
use super::request::ResolveQuery;

/// What the client opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// BEGIN: a TCP connection.
    Connect,
    /// RESOLVE: a lookup; no data.
    Resolve,
    /// BEGIN_DIR: a stream to our directory server.
    Dir,
}

/// The wire-level phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the driver's answer (connect or lookup).
    Requested,
    /// Connected.
    Open,
    /// Over on the wire: our END (or RESOLVED) queued or sent, or the
    /// client's END received.
    Closed,
}

/// The request the driver has not been told about yet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// [`ExitEvent::Connect`].
    Connect {
        /// Where.
        target: Target,
        /// The flags to act on.
        flags: BeginFlags,
    },
    /// [`ExitEvent::Resolve`].
    Resolve(ResolveQuery),
    /// [`ExitEvent::DirStream`].
    Dir,
}

/// Events not yet taken by the driver; at most one of each.
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingEvents {
    /// The request.
    pub(crate) request: Option<Request>,
    /// Bytes arrived in an empty buffer for the destination.
    pub(crate) readable: bool,
    /// Room for the destination's bytes after a short write.
    pub(crate) writable: bool,
    /// The stream is over.
    pub(crate) closed: bool,
}

/// Which of the map's queues hold this stream's id, and what of its
/// buffers the map's totals count.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Queued {
    /// Control messages to send.
    pub(crate) ctrl: bool,
    /// DATA to send.
    pub(crate) data: bool,
    /// Events for the driver.
    pub(crate) event: bool,
    /// Waiting for room in the map's total for the destination's bytes.
    pub(crate) waiting: bool,
    /// The deadline registered with the map's timer set.
    pub(crate) deadline: Option<Instant>,
    /// Bytes of `to_dest` counted in the map's total.
    pub(crate) to_dest: usize,
    /// Bytes of `from_dest` counted in the map's total.
    pub(crate) from_dest: usize,
}

/// Pacing of what we send to the client's advised rate (proposal 324
/// §4.1.2: the XON's rate; C-tor limits its read from the destination with a
/// token bucket of that rate, one second's burst, in
/// `circuit_process_stream_xon`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer {
    /// Bytes per second.
    rate: u64,
    /// Bytes we may take now.
    tokens: u64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl Pacer {
    /// A bucket for `kbps` KB/s (1000 bytes), full, or none for an
    /// unlimited rate; a bucket already running keeps its tokens (up to the
    /// new burst).
    pub(crate) fn for_xon(rate: XonKBpsEwma, old: Option<Pacer>, now: Instant) -> Option<Pacer> {
        let XonKBpsEwma::Limited(kbps) = rate else {
            return None;
        };
        let rate = u64::from(kbps.get()).saturating_mul(1000);
        let burst = Self::burst_of(rate);
        let tokens = old.map_or(burst, |p| p.tokens.min(burst));
        Some(Pacer {
            rate,
            tokens,
            last: now,
        })
    }

    /// The bucket's size: a second's worth, at least a cell.
    fn burst_of(rate: u64) -> u64 {
        rate.max(u64::from(RELAY_PAYLOAD_SIZE))
    }

    /// Add the tokens earned since the last update.
    pub(crate) fn refill(&mut self, now: Instant) {
        let us = now.saturating_duration_since(self.last).as_micros();
        let earned = u128::from(self.rate) * us / 1_000_000;
        if earned > 0 {
            let earned = u64::try_from(earned).unwrap_or(u64::MAX);
            self.tokens = self
                .tokens
                .saturating_add(earned)
                .min(Self::burst_of(self.rate));
            self.last = now;
        }
    }

    /// Bytes that may be taken now (after `refill`).
    pub(crate) fn tokens(&self) -> usize {
        usize::try_from(self.tokens).unwrap_or(usize::MAX)
    }

    /// `n` bytes were taken.
    pub(crate) fn take(&mut self, n: usize) {
        self.tokens = self
            .tokens
            .saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// When a cell's worth of tokens will be there.
    pub(crate) fn next_cell_at(&self) -> Instant {
        let want = u64::from(RELAY_PAYLOAD_SIZE).saturating_sub(self.tokens);
        let us = (u128::from(want) * 1_000_000).div_ceil(u128::from(self.rate.max(1)));
        let wait = Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX));
        self.last.checked_add(wait).unwrap_or(self.last)
    }
}

/// One stream at the exit.
#[derive(Debug)]
pub(crate) struct ExitStream {
    /// What it is for.
    pub(crate) kind: Kind,
    /// Wire phase.
    pub(crate) phase: Phase,
    /// The target was an IP literal (no lookup: C-tor's TTL is then
    /// `DEFAULT_DNS_TTL`, and any address family goes).
    pub(crate) literal: bool,
    /// The BEGIN flags acted on.
    pub(crate) flags: BeginFlags,
    /// The one timer: connect deadline, flush deadline after the client's
    /// END, or when pacing lets a short write go on.
    pub(crate) deadline: Option<Instant>,
    /// The latest `now` we were given.
    pub(crate) last_now: Instant,
    /// Windows or XON/XOFF.
    pub(crate) flow: StreamFlowCtrl,
    /// Bytes from the client for the destination.
    pub(crate) to_dest: ByteQueue,
    /// Bytes from the destination for the client.
    pub(crate) from_dest: ByteQueue,
    /// The destination reached EOF: END DONE once `from_dest` is sent.
    pub(crate) dest_eof: bool,
    /// CONNECTED or RESOLVED to send.
    pub(crate) reply: Option<AnyRelayMsg>,
    /// END to send.
    pub(crate) end_to_send: Option<End>,
    /// XON/XOFF to send, in order (at most two: see `push_signal`).
    pub(crate) signals: VecDeque<FlowSignal>,
    /// Stream-level SENDMEs to send.
    pub(crate) sendmes: u32,
    /// Once closed on the wire: what the client may still send.
    pub(crate) after_close: Option<HalfClosed>,
    /// How it ended: the reason, and whether the client ended it.
    pub(crate) end: Option<(EndReason, bool)>,
    /// The driver took the request event.
    pub(crate) announced: bool,
    /// The driver ended the stream itself: no more events.
    pub(crate) released: bool,
    /// `Closed` was queued for the driver.
    pub(crate) close_reported: bool,
    /// Events for the driver.
    pub(crate) events: PendingEvents,
    /// A write came up short: say `Writable` when there is room.
    pub(crate) want_writable: bool,
    /// Pacing to the client's advised rate.
    pub(crate) pacer: Option<Pacer>,
    /// Queue membership and counted bytes, kept by the map.
    pub(crate) queued: Queued,
    /// Client bytes received in DATA on this id (Braid proposal 001 §4.2).
    pub(crate) bytes_in: u64,
    /// Bytes sent to the client in DATA on this id.
    pub(crate) bytes_out: u64,
    /// Live migration (Braid proposal 001 §4): token and join state.
    pub(crate) mig: Option<Box<super::migrate::ExitMig>>,
}

impl ExitStream {
    /// A new stream asking the driver for `request`.
    #[allow(
        clippy::too_many_arguments,
        reason = "a constructor taking every part it does not default"
    )]
    pub(crate) fn new(
        kind: Kind,
        request: Request,
        literal: bool,
        flags: BeginFlags,
        flow: StreamFlowCtrl,
        to_dest_limit: usize,
        from_dest_limit: usize,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Self {
        let data = kind != Kind::Resolve;
        ExitStream {
            kind,
            phase: if kind == Kind::Dir {
                Phase::Open
            } else {
                Phase::Requested
            },
            literal,
            flags,
            deadline,
            last_now: now,
            flow,
            to_dest: ByteQueue::new(if data { to_dest_limit } else { 0 }),
            from_dest: ByteQueue::new(if data { from_dest_limit } else { 0 }),
            dest_eof: false,
            reply: None,
            end_to_send: None,
            signals: VecDeque::new(),
            sendmes: 0,
            after_close: None,
            end: None,
            announced: false,
            released: false,
            close_reported: false,
            events: PendingEvents {
                request: Some(request),
                ..PendingEvents::default()
            },
            want_writable: false,
            pacer: None,
            queued: Queued::default(),
            bytes_in: 0,
            bytes_out: 0,
            mig: None,
        }
    }

    /// Remember the latest time we were given.
    pub(crate) fn touch(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// The state the driver sees.
    pub(crate) fn state(&self) -> ExitStreamState {
        match self.phase {
            Phase::Requested if self.kind == Kind::Resolve => ExitStreamState::Resolving,
            Phase::Requested => ExitStreamState::Connecting,
            Phase::Open if self.dest_eof => ExitStreamState::HalfClosedLocal,
            Phase::Open => ExitStreamState::Open,
            Phase::Closed => {
                if self.end.is_some_and(|(_, remote)| remote) && !self.to_dest.is_empty() {
                    ExitStreamState::HalfClosedRemote
                } else {
                    ExitStreamState::Closed
                }
            }
        }
    }

    /// True while the driver may deal with it.
    pub(crate) fn visible(&self) -> bool {
        self.announced && !self.released
    }

    /// True once our END or RESOLVED went out, or the client's END came:
    /// the client may reuse the id.
    pub(crate) fn wire_done(&self) -> bool {
        self.phase == Phase::Closed && self.reply.is_none() && self.end_to_send.is_none()
    }

    /// True if a control message waits to be sent.
    pub(crate) fn has_control(&self) -> bool {
        self.reply.is_some()
            || self.end_to_send.is_some()
            || !self.signals.is_empty()
            || self.sendmes > 0
            || self.token_due()
    }

    /// STREAM_TOKEN waits to go: after CONNECTED (Braid proposal 001 §4.1).
    pub(crate) fn token_due(&self) -> bool {
        self.phase == Phase::Open && self.mig.as_ref().is_some_and(|m| m.token_to_send)
    }

    /// True if a DATA cell could be sent now (the circuit permitting).
    pub(crate) fn can_send_data(&self) -> bool {
        self.phase == Phase::Open
            && self.reply.is_none()
            && !self.from_dest.is_empty()
            && self.flow.can_send()
    }

    /// True if an event waits for the driver.
    pub(crate) fn has_events(&self) -> bool {
        let e = &self.events;
        e.request.is_some() || e.readable || e.writable || e.closed
    }

    /// Room for the destination's bytes at `now`, with `total_free` left in
    /// the map's total, and whether pacing is what limits it.
    pub(crate) fn write_room(&mut self, now: Instant, total_free: usize) -> (usize, bool) {
        let mut room = self.from_dest.free().min(total_free);
        let mut paced = false;
        if let Some(p) = self.pacer.as_mut() {
            p.refill(now);
            if p.tokens() < room {
                room = p.tokens();
                paced = true;
            }
        }
        (room, paced)
    }

    /// Queue an XON or XOFF, folding what need not go out (as the client's
    /// streams do): at most `[XON, XOFF]` waits.
    pub(crate) fn push_signal(&mut self, sig: FlowSignal) {
        match sig {
            FlowSignal::Xon(_) => {
                self.signals.clear();
                self.signals.push_back(sig);
            }
            FlowSignal::Xoff => {
                if !matches!(self.signals.back(), Some(FlowSignal::Xoff)) {
                    self.signals.push_back(sig);
                }
            }
        }
    }

    /// The next control message, in the order: CONNECTED/RESOLVED (or
    /// MIGRATED), STREAM_TOKEN, END, XON/XOFF, SENDME.
    pub(crate) fn take_control(&mut self) -> Option<AnyRelayMsg> {
        if let Some(m) = self.reply.take() {
            return Some(m);
        }
        if self.token_due()
            && let Some(m) = self.mig.as_mut()
        {
            m.token_to_send = false;
            if let Some(t) = &m.token {
                return Some(MigrateMsg::Token(t.clone()).to_msg());
            }
        }
        if let Some(e) = self.end_to_send.take() {
            return Some(AnyRelayMsg::End(e));
        }
        if let Some(sig) = self.signals.pop_front() {
            return Some(match sig {
                FlowSignal::Xoff => AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0)),
                FlowSignal::Xon(rate) => AnyRelayMsg::Xon(Xon::new(FlowCtrlVersion::V0, rate)),
            });
        }
        if self.sendmes > 0 {
            self.sendmes -= 1;
            // tor-spec §7.4: stream-level SENDMEs are empty.
            return Some(AnyRelayMsg::Sendme(Sendme::new_empty()));
        }
        None
    }

    /// The next event for the driver: the request, Readable, Writable,
    /// Closed. Taking the request announces the stream.
    pub(crate) fn take_event(&mut self, id: StreamId) -> Option<ExitEvent> {
        if let Some(req) = self.events.request.take() {
            self.announced = true;
            return Some(match req {
                Request::Connect { target, flags } => ExitEvent::Connect { id, target, flags },
                Request::Resolve(query) => ExitEvent::Resolve { id, query },
                Request::Dir => ExitEvent::DirStream { id },
            });
        }
        if std::mem::take(&mut self.events.readable) {
            return Some(ExitEvent::Readable { id });
        }
        if std::mem::take(&mut self.events.writable) {
            return Some(ExitEvent::Writable { id });
        }
        if std::mem::take(&mut self.events.closed) {
            let (reason, remote) = self.end.unwrap_or((EndReason::MISC, false));
            return Some(ExitEvent::Closed { id, reason, remote });
        }
        None
    }

    /// The driver ends the stream: it hears nothing more about it.
    pub(crate) fn release(&mut self) {
        self.released = true;
        self.events = PendingEvents::default();
        self.want_writable = false;
        self.to_dest.clear();
    }

    /// Nothing more goes to the client: drop what waited to go.
    fn clear_outbound(&mut self) {
        self.from_dest.clear();
        self.reply = None;
        self.signals.clear();
        self.sendmes = 0;
        self.want_writable = false;
        self.events.writable = false;
        self.pacer = None;
        self.deadline = None;
    }

    /// Close from our side: `reason` for the driver, `msg` (END, or
    /// RESOLVED for a lookup) for the client; the client's crossing cells
    /// are accounted for (C-tor `connection_half_edge_add` on the client
    /// side; `linger_until` with congestion control). The bytes for the
    /// destination are dropped. No effect if already closed.
    pub(crate) fn close_local(
        &mut self,
        reason: EndReason,
        msg: AnyRelayMsg,
        linger_until: Option<Instant>,
    ) {
        if self.phase == Phase::Closed {
            return;
        }
        self.clear_outbound();
        self.to_dest.clear();
        match msg {
            AnyRelayMsg::End(e) => self.end_to_send = Some(e),
            other => self.reply = Some(other),
        }
        let resolving = self.kind == Kind::Resolve;
        self.after_close = Some(match (&self.flow, linger_until) {
            (StreamFlowCtrl::Window { package, deliver }, _) => {
                let unacked = STREAMWINDOW_START.saturating_sub(package.window());
                HalfClosed::after_end_windowed(
                    false,
                    resolving,
                    deliver.window(),
                    unacked / STREAMWINDOW_INCREMENT,
                )
            }
            (_, Some(until)) if !resolving => HalfClosed::after_end_cc(false, until),
            _ => HalfClosed::after_end_windowed(false, resolving, 0, 0),
        });
        self.phase = Phase::Closed;
        self.end = Some((reason, false));
        if !self.announced {
            // The driver never heard of it: nothing to tell.
            self.events = PendingEvents::default();
        }
    }

    /// The client sent END (tor-spec §6.3): nothing more goes to it. What
    /// it sent for the destination before is still delivered, within
    /// `flush_until` (C-tor `connection_mark_and_flush`), if the stream was
    /// connected; otherwise dropped.
    pub(crate) fn client_end(&mut self, reason: EndReason, flush_until: Option<Instant>) {
        let was_open = self.phase == Phase::Open;
        self.clear_outbound();
        self.end_to_send = None;
        self.phase = Phase::Closed;
        self.after_close = Some(HalfClosed::nothing());
        self.end = Some((reason, true));
        if was_open && !self.to_dest.is_empty() && !self.released {
            self.deadline = flush_until;
        } else {
            self.to_dest.clear();
        }
        if !self.announced {
            self.events = PendingEvents::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn pacer_refills_at_its_rate() {
        let t0 = Instant::now();
        let rate = XonKBpsEwma::Limited(NonZeroU32::new(100).unwrap());
        let mut p = Pacer::for_xon(rate, None, t0).unwrap();
        // A second's burst: 100 000 bytes.
        assert_eq!(p.tokens(), 100_000);
        p.take(100_000);
        assert_eq!(p.tokens(), 0);
        // 498 bytes take 4.98 ms at 100 KB/s.
        assert_eq!(p.next_cell_at(), t0 + Duration::from_micros(4980));
        p.refill(t0 + Duration::from_millis(10));
        assert_eq!(p.tokens(), 1000);
        p.refill(t0 + Duration::from_secs(60));
        assert_eq!(p.tokens(), 100_000, "capped at the burst");
        // A new rate keeps the tokens up to its burst; unlimited drops it.
        let slow = XonKBpsEwma::Limited(NonZeroU32::new(1).unwrap());
        let q = Pacer::for_xon(slow, Some(p), t0).unwrap();
        assert_eq!(q.tokens(), 1000);
        assert!(Pacer::for_xon(XonKBpsEwma::Unlimited, Some(q), t0).is_none());
    }
}
