//! Cells out of a [`RelayNode`]: what each channel's writer takes next
//! (the multiplexer's own cells, the node's, then the circuit with the
//! fewest recent cells, C-tor's EWMA circuit mux), channel priorities and
//! blocked channels.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tor_cell::chancell::AnyChanCell;

use super::{DIR_NEXT, DIR_PREV, NodeCirc, RelayNode};
use crate::channel::ChannelMux;
use crate::ids::{ChanKey, CircId, CircKey};

impl RelayNode {
    /// The next cell for channel `chan`: the multiplexer's own (DESTROYs),
    /// the node's (CREATE2 for extensions), then the circuits', the one
    /// with the fewest recent cells first ([`crate::relay::ewma`]). An
    /// exit circuit's streams refill its queue as it drains (so `now`: the
    /// send times of DATA feed congestion control).
    pub fn poll_transmit(&mut self, chan: ChanKey, now: Instant) -> Option<AnyChanCell> {
        let c = self.channels.get_mut(&chan)?;
        if let Some(cell) = c.mux.poll_transmit() {
            c.pad.note_xfer(now);
            self.check_idle(chan, now);
            return Some(cell);
        }
        if let Some(cell) = c.out.pop_front() {
            c.pad.note_xfer(now);
            return Some(cell);
        }
        let circuits = &mut self.circuits;
        let halflife = self.halflife;
        let (_, key, id, dir) = best_circuit(circuits, &mut c.mux, chan, now, halflife)?;
        let nc = circuits.get_mut(&key)?;
        let leg = nc.leg.filter(|_| dir == DIR_PREV);
        let msg = if dir == DIR_PREV {
            nc.circ.poll_to_prev()
        } else {
            nc.circ.poll_to_next()
        };
        if let Some(e) = nc.ewma.get_mut(dir) {
            e.note_sent(1, now, halflife);
        }
        let found = msg.map(|m| (key, id, m));
        let (key, id, msg) = found?;
        let cell = match c.mux.check_outbound(id, msg) {
            Ok(cell) => cell,
            Err(e) => {
                tracing::warn!("{key}: {e}");
                None
            }
        };
        if let Some(leg) = leg.filter(|_| cell.is_some()) {
            self.leg_sent(leg, now);
        }
        self.settle_quiet(key, now);
        self.maybe_release(key, now);
        self.run_migrations(now);
        if cell.is_some()
            && let Some(c) = self.channels.get_mut(&chan)
        {
            c.pad.note_xfer(now);
        }
        cell
    }

    /// The priority of channel `chan` for a scheduler that serves
    /// channels in turn, lowest first (C-tor `scheduler_compare_channels`,
    /// which compares the channels' circuit muxes): the decayed cell count
    /// of its best circuit with cells toward it, 0 when the node's own cells
    /// (CREATE2s) wait. `None` when no circuit has cells for it (its
    /// multiplexer may still hold a DESTROY: [`Self::poll_transmit`] says).
    pub fn channel_priority(&mut self, chan: ChanKey, now: Instant) -> Option<f64> {
        let c = self.channels.get_mut(&chan)?;
        if !c.out.is_empty() {
            return Some(0.0);
        }
        best_circuit(&self.circuits, &mut c.mux, chan, now, self.halflife).map(|b| b.0)
    }

    /// Tell circuit owners whether `chan` is blocked (its writer cannot
    /// take cells now): a congestion signal for the circuits we send as
    /// an edge on (proposal 324 §3.3).
    pub fn set_channel_blocked(&mut self, chan: ChanKey, blocked: bool) {
        for nc in self.circuits.values_mut() {
            if nc.prev.is_some_and(|(k, _)| k == chan) {
                nc.circ.set_blocked_on_channel(blocked);
            }
        }
    }
}

/// The circuit whose cell channel `chan` (multiplexer `mux`) sends next,
/// with its decayed cell count and direction. tor-spec leaves the order to
/// us: the circuit with the fewest recent cells goes first (C-tor's EWMA
/// circuit mux), ties in round-robin order.
fn best_circuit(
    circuits: &BTreeMap<CircKey, NodeCirc>,
    mux: &mut ChannelMux<CircKey>,
    chan: ChanKey,
    now: Instant,
    halflife: Duration,
) -> Option<(f64, CircKey, CircId, usize)> {
    let mut best: Option<(f64, CircKey, CircId, usize)> = None;
    mux.for_each_in_turn(|id, key| {
        let Some(nc) = circuits.get(key) else {
            return;
        };
        let (to_prev, to_next) = nc.circ.queued();
        let dir = if to_prev > 0 && nc.prev == Some((chan, id)) {
            DIR_PREV
        } else if to_next > 0 && nc.next == Some((chan, id)) {
            DIR_NEXT
        } else {
            return;
        };
        let v = nc.ewma.get(dir).map_or(0.0, |e| e.value(now, halflife));
        if best.is_none_or(|(b, ..)| v < b) {
            best = Some((v, *key, id, dir));
        }
    });
    best
}
