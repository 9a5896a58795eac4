//! Closing channels that carry no circuit (C-tor
//! `channelpadding_get_channel_idle_timeout`): a channel to a client
//! closes after 3 to 4.5 minutes without circuits, one to a relay after
//! 3/4 to 5/4 of `nf_conntimeout_relays` (45 to 75 minutes by default), so
//! that relays keep the channels between them for the circuits to come
//! and clients' channels do not outlive their use. The time is drawn once
//! per channel and counts from its opening or its last circuit's end; a
//! new circuit stops it. When it runs out the node asks the driver to
//! close the channel ([`NodeEvent::CloseChannel`]).

use std::time::{Duration, Instant};

use rand::RngExt as _;

use super::{NodeEvent, Peer, RelayNode};
use crate::ids::ChanKey;

/// A client channel lives at least this long without circuits (C-tor
/// `CONNTIMEOUT_CLIENTS_BASE`), and up to half as long again.
pub const CLIENT_IDLE_BASE: Duration = Duration::from_secs(180);

impl RelayNode {
    /// A channel's idle timeout, drawn for a peer like `peer`.
    pub(super) fn draw_idle_timeout(&mut self, peer: Peer) -> Duration {
        match peer {
            Peer::Client => {
                let b = CLIENT_IDLE_BASE.as_secs();
                Duration::from_secs(b + self.rng.random_range(0..b / 2))
            }
            Peer::Relay { .. } => {
                let b = u64::from(self.padding.conntimeout_relays_secs.max(4));
                Duration::from_secs(3 * b / 4 + self.rng.random_range(0..b / 2))
            }
        }
    }

    /// Channel `chan` carries no circuit since `now`: its idle time runs
    /// (if it was not running).
    pub(super) fn start_idle(&mut self, chan: ChanKey, now: Instant) {
        let Some(c) = self.channels.get_mut(&chan) else {
            return;
        };
        if c.idle_deadline.is_none() {
            let deadline = now + c.idle_timeout;
            c.idle_deadline = Some(deadline);
            self.idle_timers.insert((deadline, chan));
        }
    }

    /// If channel `chan` carries no circuit now, its idle time runs.
    pub(super) fn check_idle(&mut self, chan: ChanKey, now: Instant) {
        if self.channels.get(&chan).is_some_and(|c| c.mux.is_empty()) {
            self.start_idle(chan, now);
        }
    }

    /// Channel `chan` carries a circuit: its idle time stops.
    pub(super) fn stop_idle(&mut self, chan: ChanKey) {
        if let Some(c) = self.channels.get_mut(&chan)
            && let Some(deadline) = c.idle_deadline.take()
        {
            self.idle_timers.remove(&(deadline, chan));
        }
    }

    /// When the next idle channel is due.
    pub(super) fn idle_timeout(&self) -> Option<Instant> {
        self.idle_timers.first().map(|(t, _)| *t)
    }

    /// Ask the driver to close the channels whose idle time ran out.
    pub(super) fn handle_idle(&mut self, now: Instant) {
        while let Some(&(t, chan)) = self.idle_timers.first() {
            if t > now {
                break;
            }
            self.idle_timers.remove(&(t, chan));
            if let Some(c) = self.channels.get_mut(&chan) {
                c.idle_deadline = None;
                let secs = c.idle_timeout.as_secs();
                self.events.push_back(NodeEvent::CloseChannel {
                    chan,
                    why: format!("no circuit for {secs} s (idle timeout)"),
                });
            }
        }
    }
}
