//! One stream's state: its phase, buffers, flow control, what it still has
//! to send on the wire and what it still has to tell the application.
//!
//! The [`StreamMap`](super::StreamMap) owns the queues across streams; the
//! methods here only look at and change one stream.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon};
use tor_cell::relaycell::msg::{AnyRelayMsg, End, EndReason, Sendme};

use crate::cc::{FlowSignal, StreamFlowCtrl};
use crate::ids::StreamId;

use super::buffer::ByteQueue;
use super::event::StreamEvent;
use super::half_closed::{HalfClosed, UsedIds};
use super::migrate::MigState;
use super::reasons::CloseReason;
use super::target::ResolvedAnswer;

/// A stream's state as the application sees it.
///
/// ```text
///  Connecting ──CONNECTED──▶ Open ──shutdown_write──▶ HalfClosedLocal
///      │                      │                          │ (flushed: END sent)
///      │                      │ END from the exit        ▼
///      └──END / timeout──────▶├────────────────────▶ HalfClosedRemote ──read to EOF──▶ Closed
///  Resolving ──RESOLVED / END──────────────────────────────────────────────────────▶ Closed
/// ```
///
/// Tor has no half-close on the wire (tor-spec §6.3: the FIN states are
/// "unimplemented functionality"): `HalfClosedLocal` lasts only until the
/// buffered data is sent, then an END closes the stream both ways, as C-tor
/// does when its SOCKS client stops writing. `HalfClosedRemote` is a
/// stream the exit ended while the application still has data to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamState {
    /// BEGIN queued or sent, waiting for CONNECTED (tor-spec §6.2).
    Connecting,
    /// RESOLVE queued or sent, waiting for RESOLVED (tor-spec §6.4).
    Resolving,
    /// Connected: data flows both ways.
    Open,
    /// The application stopped writing: the rest of its data goes out,
    /// then END; data from the exit is still delivered until then.
    HalfClosedLocal,
    /// The exit sent END; buffered data can still be read, nothing can be
    /// sent.
    HalfClosedRemote,
    /// Finished on the wire (END sent or received, RESOLVED received, or
    /// never sent); what is still buffered can be read, then EOF.
    Closed,
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            StreamState::Connecting => "connecting",
            StreamState::Resolving => "resolving",
            StreamState::Open => "open",
            StreamState::HalfClosedLocal => "half-closed (local)",
            StreamState::HalfClosedRemote => "half-closed (remote)",
            StreamState::Closed => "closed",
        };
        f.write_str(s)
    }
}

/// What the stream was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// BEGIN: a TCP connection through the exit.
    Connect,
    /// RESOLVE: a DNS lookup by the exit; no data.
    Resolve,
}

/// The wire-level phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for CONNECTED.
    Connecting,
    /// Waiting for RESOLVED.
    Resolving,
    /// Connected.
    Open,
    /// END sent or received, or RESOLVED received, or never sent at all.
    Closed,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamEnd {
    /// Why.
    pub(crate) reason: CloseReason,
    /// The exit sent END.
    pub(crate) remote: bool,
}

/// Events not yet taken by the application; at most one of each.
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingEvents {
    /// CONNECTED arrived, with its address.
    pub(crate) connected: Option<Option<(IpAddr, u32)>>,
    /// RESOLVED arrived.
    pub(crate) resolved: Option<Vec<ResolvedAnswer>>,
    /// Data arrived in an empty buffer.
    pub(crate) readable: bool,
    /// Room in the send buffer after a short write.
    pub(crate) writable: bool,
    /// The stream ended.
    pub(crate) ended: bool,
    /// A migration's old stream has all its bytes (proposal 001 §4.2).
    pub(crate) migrate_handover: bool,
    /// A migration's new stream failed before it took over; whether the
    /// exit refused it.
    pub(crate) migrate_failed: Option<bool>,
}

/// Which of the map's queues hold this stream's id.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Queued {
    /// Control messages to send.
    pub(crate) ctrl: bool,
    /// DATA to send.
    pub(crate) data: bool,
    /// Events for the application.
    pub(crate) event: bool,
    /// The deadline registered with the map's timer set.
    pub(crate) deadline: Option<Instant>,
}

/// One stream of a circuit.
#[derive(Debug)]
pub(crate) struct Stream {
    /// BEGIN or RESOLVE.
    pub(crate) kind: Kind,
    /// Wire phase.
    pub(crate) phase: Phase,
    /// The BEGIN or RESOLVE, until it is sent.
    pub(crate) opener: Option<AnyRelayMsg>,
    /// When we give up waiting for CONNECTED or RESOLVED.
    pub(crate) deadline: Option<Instant>,
    /// The latest `now` we were given (for closing from `poll_transmit`).
    pub(crate) last_now: Instant,
    /// Windows or XON/XOFF.
    pub(crate) flow: StreamFlowCtrl,
    /// Data from the application, not yet in DATA cells.
    pub(crate) send: ByteQueue,
    /// Data from the exit, not yet read by the application.
    pub(crate) recv: ByteQueue,
    /// The application called `shutdown_write`.
    pub(crate) shutdown: bool,
    /// How it ended, once it has.
    pub(crate) end: Option<StreamEnd>,
    /// An END to send, with its wire reason.
    pub(crate) end_to_send: Option<EndReason>,
    /// XON/XOFF to send, in order (at most two: see `push_signal`).
    pub(crate) signals: VecDeque<FlowSignal>,
    /// Stream-level SENDMEs to send.
    pub(crate) sendmes: u32,
    /// Once closed on the wire: what may still arrive (`None` if the
    /// stream never reached the wire).
    pub(crate) after_close: Option<HalfClosed>,
    /// The application called `close`: it wants nothing more.
    pub(crate) released: bool,
    /// The application read the EOF.
    pub(crate) eof_read: bool,
    /// Events for the application.
    pub(crate) events: PendingEvents,
    /// A write came up short: say `Writable` when room frees up.
    pub(crate) want_writable: bool,
    /// Queue membership, kept by the map.
    pub(crate) queued: Queued,
    /// Stream bytes sent in DATA on this id (Braid proposal 001 §4.2).
    pub(crate) sent_bytes: u64,
    /// Stream bytes received in DATA on this id.
    pub(crate) recv_bytes: u64,
    /// Live migration (Braid proposal 001 §4), for a migratable stream.
    pub(crate) mig: Option<Box<MigState>>,
}

impl Stream {
    /// A new stream that will send `opener` (a BEGIN or RESOLVE).
    pub(crate) fn new(
        kind: Kind,
        opener: AnyRelayMsg,
        deadline: Instant,
        now: Instant,
        flow: StreamFlowCtrl,
        send_limit: usize,
        recv_limit: usize,
    ) -> Self {
        Stream {
            kind,
            phase: match kind {
                Kind::Connect => Phase::Connecting,
                Kind::Resolve => Phase::Resolving,
            },
            opener: Some(opener),
            deadline: Some(deadline),
            last_now: now,
            flow,
            send: ByteQueue::new(match kind {
                Kind::Connect => send_limit,
                Kind::Resolve => 0,
            }),
            recv: ByteQueue::new(match kind {
                Kind::Connect => recv_limit,
                Kind::Resolve => 0,
            }),
            shutdown: false,
            end: None,
            end_to_send: None,
            signals: VecDeque::new(),
            sendmes: 0,
            after_close: None,
            released: false,
            eof_read: false,
            events: PendingEvents::default(),
            want_writable: false,
            queued: Queued::default(),
            sent_bytes: 0,
            recv_bytes: 0,
            mig: None,
        }
    }

    /// Remember the latest time we were given.
    pub(crate) fn touch(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// The state the application sees.
    pub(crate) fn state(&self) -> StreamState {
        match self.phase {
            Phase::Connecting => StreamState::Connecting,
            Phase::Resolving => StreamState::Resolving,
            Phase::Open if self.shutdown => StreamState::HalfClosedLocal,
            Phase::Open => StreamState::Open,
            Phase::Closed => {
                if self.end.is_some_and(|e| e.remote) && !self.recv.is_empty() {
                    StreamState::HalfClosedRemote
                } else {
                    StreamState::Closed
                }
            }
        }
    }

    /// True if a control message waits to be sent.
    pub(crate) fn has_control(&self) -> bool {
        self.opener.is_some()
            || self.end_to_send.is_some()
            || !self.signals.is_empty()
            || self.sendmes > 0
            || self.mig.as_ref().is_some_and(|m| m.has_control())
    }

    /// True if a DATA cell could be sent now.
    pub(crate) fn can_send_data(&self, optimistic: bool) -> bool {
        let phase_ok = match self.phase {
            Phase::Open => true,
            Phase::Connecting => optimistic && self.opener.is_none(),
            Phase::Resolving | Phase::Closed => false,
        };
        phase_ok
            && !self.send.is_empty()
            && self.flow.can_send()
            && self.end_to_send.is_none()
            && self.mig.as_ref().is_none_or(|m| m.may_send_data())
    }

    /// True if an event waits for the application.
    pub(crate) fn has_events(&self) -> bool {
        let e = &self.events;
        e.connected.is_some()
            || e.resolved.is_some()
            || e.readable
            || e.writable
            || e.ended
            || e.migrate_handover
            || e.migrate_failed.is_some()
    }

    /// Queue an XON or XOFF, folding what need not go out: an XON makes
    /// any unsent XOFF and older XON moot (the exit ends up sending, at the
    /// latest rate), and a second XOFF in a row adds nothing. So at most
    /// `[XON, XOFF]` waits.
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

    /// The next control message to send, in the order: BEGIN/RESOLVE (or
    /// MIGRATE), STREAM_REGISTER, MIGRATE_MARK, END, XON/XOFF, SENDME.
    /// Sending the opener marks the id used.
    pub(crate) fn take_control(&mut self, id: StreamId, used: &mut UsedIds) -> Option<AnyRelayMsg> {
        if let Some(m) = self.opener.take() {
            used.set(id);
            return Some(m);
        }
        if let Some(mig) = self.mig.as_mut() {
            if let Some(m) = mig.take_control() {
                return Some(m);
            }
            if mig.quiet() {
                // proposal 001 §4.2: after our MARK nothing more goes on
                // the old id (its flow control is moot: no byte of ours
                // or the exit's is left on it).
                self.signals.clear();
                self.sendmes = 0;
            }
        }
        if let Some(r) = self.end_to_send.take() {
            return Some(AnyRelayMsg::End(End::new_with_reason(r)));
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

    /// The next event for the application, in the order: Connected,
    /// Resolved, Readable, Writable, Ended.
    pub(crate) fn take_event(&mut self, id: StreamId) -> Option<StreamEvent> {
        let e = &mut self.events;
        if let Some(addr) = e.connected.take() {
            return Some(StreamEvent::Connected { id, addr });
        }
        if let Some(answers) = e.resolved.take() {
            return Some(StreamEvent::Resolved { id, answers });
        }
        if std::mem::take(&mut e.readable) {
            return Some(StreamEvent::Readable { id });
        }
        if std::mem::take(&mut e.writable) {
            return Some(StreamEvent::Writable { id });
        }
        if std::mem::take(&mut e.migrate_handover) {
            return Some(StreamEvent::MigrateHandover { id });
        }
        if let Some(refused) = e.migrate_failed.take() {
            return Some(StreamEvent::MigrateFailed { id, refused });
        }
        if std::mem::take(&mut e.ended) {
            let end = self.end?;
            return Some(StreamEvent::Ended {
                id,
                reason: end.reason,
                remote: end.remote,
            });
        }
        None
    }

    /// Everything the wire side still had to do is void (the stream closed):
    /// drop unsent data and flow control messages.
    pub(crate) fn clear_outbound(&mut self) {
        self.send.clear();
        self.signals.clear();
        self.sendmes = 0;
        self.want_writable = false;
        self.events.writable = false;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tor_cell::relaycell::flow_ctrl::XonKBpsEwma;

    #[test]
    fn signals_fold() {
        let mut s = Stream::new(
            Kind::Connect,
            AnyRelayMsg::Sendme(Sendme::new_empty()),
            Instant::now(),
            Instant::now(),
            StreamFlowCtrl::windowed(),
            10,
            10,
        );
        s.push_signal(FlowSignal::Xoff);
        s.push_signal(FlowSignal::Xon(XonKBpsEwma::Unlimited));
        assert_eq!(s.signals.len(), 1);
        s.push_signal(FlowSignal::Xoff);
        s.push_signal(FlowSignal::Xoff);
        assert_eq!(s.signals.len(), 2);
        s.push_signal(FlowSignal::Xon(XonKBpsEwma::Unlimited));
        assert_eq!(s.signals.len(), 1);
        assert_eq!(
            StreamState::HalfClosedLocal.to_string(),
            "half-closed (local)"
        );
    }
}
