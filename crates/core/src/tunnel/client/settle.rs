//! The settling loop of a [`ClientTunnel`]: the legs' circuit events fed
//! through until nothing moves, and what a leg built, failed or closed
//! means for the tunnel (prop 329 §2.4.3); stream events out, finished
//! legs released.

use std::time::Instant;

use rand::RngExt as _;

use crate::circuit::{CircEvent, CloseReason};
use crate::ids::{HopNum, LegKey};
use crate::stream::{StreamFlowMode, StreamMap};
use crate::tunnel::error::TunnelError;
use crate::tunnel::event::TunnelEvent;
use crate::tunnel::leg::Leg;
use crate::tunnel::timers::Timer;

use super::relaunch::killed_together;
use super::{ClientTunnel, MAX_LEG_RECORDS, Phase};

impl ClientTunnel {
    /// The leg `key`.
    pub(crate) fn leg_mut(&mut self, key: LegKey) -> Option<&mut Leg> {
        self.legs.iter_mut().find(|l| l.key == key)
    }

    /// Feed everything through until nothing moves: circuit events into
    /// the set and the streams, the set's output onto legs, stream events
    /// out, stream data into legs; release legs that are done.
    pub(crate) fn settle(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            for i in 0..self.legs.len() {
                moved |= self.leg_events(i, now);
            }
            moved |= self.drain_set(now);
            if !moved {
                break;
            }
        }
        self.stream_events();
        self.pump_sends(now);
        self.pace_legs(now);
        self.release_legs();
    }

    /// Hold back or release each Conflux leg's circuit SENDMEs as the set
    /// says ([`crate::conflux::ConfluxSet::sendme_hold`]: the legs ahead of
    /// a gap wait while the reorder queue is over half full).
    fn pace_legs(&mut self, now: Instant) {
        let Some(m) = self.multipath.as_ref() else {
            return;
        };
        for l in &mut self.legs {
            let Some(id) = l.conflux else { continue };
            let hold = m.set.sendme_hold(id);
            if hold != l.sendme_hold && l.built && !l.closed {
                l.sendme_hold = hold;
                if let Err(e) = l.circuit.set_sendme_hold(l.last_hop, hold, now) {
                    tracing::debug!("{}: cannot release SENDMEs: {e}", l.key);
                }
            }
        }
    }

    /// Leg `i`'s circuit events. True if there were any.
    fn leg_events(&mut self, i: usize, now: Instant) -> bool {
        let mut any = false;
        while let Some(ev) = self.legs.get_mut(i).and_then(|l| l.circuit.poll_event()) {
            any = true;
            match ev {
                CircEvent::HopAdded { .. } => {
                    if let Some(l) = self.legs.get_mut(i) {
                        l.hops_done += 1;
                    }
                }
                CircEvent::Built { n_hops } => self.on_built(i, n_hops, now),
                CircEvent::BuildFailed { reason } => self.on_build_failed(i, reason, now),
                CircEvent::Closed { reason } => self.on_closed(i, reason, now),
                CircEvent::StreamMsg { hop, stream, msg } => {
                    self.on_msg(i, hop, Some(stream), msg, now);
                }
                CircEvent::CircMsg { hop, msg } => self.on_msg(i, hop, None, msg, now),
            }
        }
        any
    }

    /// Leg `i`'s circuit is built.
    fn on_built(&mut self, i: usize, n_hops: usize, now: Instant) {
        let conflux = self.multipath.is_some();
        let closed = self.is_closed();
        let Some(leg) = self.legs.get_mut(i) else {
            return;
        };
        leg.built = true;
        leg.last_hop = HopNum(u8::try_from(n_hops.saturating_sub(1)).unwrap_or(0));
        let key = leg.key;
        let cc = leg.circuit.cc_enabled(leg.last_hop);
        let path = leg.path.clone();
        let took = now.saturating_duration_since(leg.launched_at);
        self.timers.cancel(Timer::LegBuild(key));
        if closed {
            return;
        }
        self.events.push_back(TunnelEvent::LegBuilt {
            leg: key,
            path,
            took,
        });
        if !conflux {
            self.open_streams(cc, now);
            return;
        }
        if !cc {
            // prop 329 §2.2: every leg needs congestion control.
            if let Some(l) = self.legs.get_mut(i) {
                l.close_on(TunnelError::NoCongestionControl { leg: key });
            }
            return;
        }
        self.link_built_legs(now);
    }

    /// The tunnel is open: streams may start, with XON/XOFF when the exit
    /// hop runs congestion control, else fixed windows (proposal 324 §4).
    pub(super) fn open_streams(&mut self, congestion_controlled: bool, now: Instant) {
        if self.phase != Phase::Building {
            return;
        }
        let mode = if congestion_controlled {
            StreamFlowMode::XonXoff {
                params: self.config.flow.clone(),
                onion: false,
            }
        } else {
            StreamFlowMode::Windowed
        };
        let first: u16 = self.rng.random();
        self.streams = Some(StreamMap::with_first_id(
            self.config.streams.clone(),
            mode,
            first,
        ));
        self.phase = Phase::Open;
        self.timers.cancel(Timer::Open);
        self.events.push_back(TunnelEvent::Opened);
        // The launch budget starts giving launches back from now.
        self.launches.refill(now);
    }

    /// Leg `i`'s circuit closed before it was built.
    fn on_build_failed(&mut self, i: usize, reason: CloseReason, now: Instant) {
        let Some(leg) = self.legs.get_mut(i) else {
            return;
        };
        leg.closed = true;
        let key = leg.key;
        let error = leg.close_error.take().unwrap_or(TunnelError::BuildFailed {
            leg: key,
            hops_done: leg.hops_done,
            reason,
        });
        let path = leg.path.clone();
        self.timers.cancel(Timer::LegBuild(key));
        if self.is_closed() {
            return;
        }
        self.events.push_back(TunnelEvent::LegFailed {
            leg: key,
            path,
            error: error.clone(),
        });
        self.note_leg_trouble(now);
        if self.multipath.is_none() {
            self.close_with(error);
        } else {
            self.relaunch_or_fail(now, error);
        }
    }

    /// Leg `i`'s circuit closed after it was built.
    fn on_closed(&mut self, i: usize, reason: CloseReason, now: Instant) {
        let Some(leg) = self.legs.get_mut(i) else {
            return;
        };
        leg.closed = true;
        let key = leg.key;
        let error = leg
            .close_error
            .take()
            .unwrap_or(TunnelError::CircuitClosed { leg: key, reason });
        let path = leg.path.clone();
        let info = leg.closed_info();
        let id = leg.conflux;
        if self.is_closed() {
            return;
        }
        let Some(m) = self.multipath.as_mut() else {
            self.close_with(error);
            return;
        };
        let linked = id.is_some_and(|id| m.set.legs().any(|(l, linked)| l == id && linked));
        if let Some(id) = id {
            // prop 329 §2.4.3: the set goes on only if no data was lost
            // with the leg.
            if let Err(e) = m.set.leg_closed(id, info, now) {
                // The leg's own error (a protocol violation of the exit,
                // say) is told here: the tunnel closes on the set's rule.
                tracing::info!("{error}; the set cannot go on without it");
                self.close_with(TunnelError::Conflux(e));
                return;
            }
        }
        if let Some(l) = self.legs.get_mut(i) {
            l.was_linked = linked;
        }
        if linked && let Some(e) = killed_together(m, path.first().copied(), now) {
            self.close_with(e);
            return;
        }
        if linked {
            self.counters.leg_lost(now);
        }
        let ev = if linked {
            TunnelEvent::LegLost {
                leg: key,
                path,
                error: error.clone(),
            }
        } else {
            TunnelEvent::LegFailed {
                leg: key,
                path,
                error: error.clone(),
            }
        };
        self.events.push_back(ev);
        self.note_leg_trouble(now);
        self.relaunch_or_fail(now, error);
    }

    /// Stream events out.
    pub(super) fn stream_events(&mut self) {
        let Some(streams) = self.streams.as_mut() else {
            return;
        };
        while let Some(ev) = streams.poll_event() {
            self.events.push_back(TunnelEvent::Stream(ev));
        }
    }

    /// Drop legs whose circuit closed and whose last cell went out.
    pub(super) fn release_legs(&mut self) {
        while let Some(i) = self.legs.iter().position(Leg::releasable) {
            let leg = self.legs.remove(i);
            let mut s = self.snapshot(&leg);
            s.open = false;
            if self.records.len() >= MAX_LEG_RECORDS {
                self.records.pop_front();
            }
            self.records.push_back(s);
            self.timers.cancel(Timer::LegBuild(leg.key));
            self.events
                .push_back(TunnelEvent::LegReleased { leg: leg.key });
            if self.cursor > i {
                self.cursor -= 1;
            }
        }
    }
}
