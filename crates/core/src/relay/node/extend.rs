//! Extending a [`RelayNode`]'s circuits (tor-spec §5.1.2): over a channel
//! the next relay authenticated on, or one the driver is asked to open
//! ([`NodeEvent::Connect`]), and what its opening or failing means for
//! the circuits waiting for it.

use std::time::Instant;

use tor_cell::chancell::msg::DestroyReason;

use super::{ConnectId, NodeEvent, Peer, RelayNode};
use crate::ids::{ChanKey, CircKey};
use crate::relay::circuit::ExtendRequest;

impl RelayNode {
    /// Circuit `key` asks to extend: over a channel the relay
    /// authenticated on, or a new one.
    pub(super) fn extend(&mut self, key: CircKey, req: ExtendRequest) {
        let existing = self
            .channels
            .iter()
            .find(|(_, c)| match c.peer {
                Peer::Relay { rsa, ed } => {
                    rsa == req.rsa_id && (req.ed_id.is_none() || ed == req.ed_id)
                }
                Peer::Client => false,
            })
            .map(|(k, _)| *k);
        match existing {
            Some(chan) => self.start_extend(key, chan, req),
            None => {
                let pending = self
                    .connects
                    .iter_mut()
                    .find(|(_, (rsa, _))| *rsa == req.rsa_id);
                if let Some((_, (_, waiting))) = pending {
                    waiting.push(key);
                } else {
                    let id = ConnectId(self.next_connect);
                    self.next_connect += 1;
                    self.connects.insert(id, (req.rsa_id, vec![key]));
                    self.events.push_back(NodeEvent::Connect {
                        id,
                        rsa: req.rsa_id,
                        ed: req.ed_id,
                        addrs: req.addrs.clone(),
                    });
                }
                if let Some(nc) = self.circuits.get_mut(&key) {
                    nc.waiting = Some(req);
                }
            }
        }
    }

    /// Send circuit `key`'s CREATE2 on `chan`.
    fn start_extend(&mut self, key: CircKey, chan: ChanKey, req: ExtendRequest) {
        let Some(c) = self.channels.get_mut(&chan) else {
            return;
        };
        let Ok(id) = c.mux.open_circuit(&mut self.rng, key) else {
            if let Some(nc) = self.circuits.get_mut(&key) {
                nc.circ.extend_failed(DestroyReason::RESOURCELIMIT);
            }
            return;
        };
        if let Ok(Some(cell)) = c.mux.check_outbound(id, req.create.into()) {
            c.out.push_back(cell);
            self.ready.insert(chan);
        }
        self.stats.extends += 1;
        self.stop_idle(chan);
        if let Some(nc) = self.circuits.get_mut(&key) {
            nc.next = Some((chan, id));
            nc.waiting = None;
        }
    }

    /// A channel asked for with [`NodeEvent::Connect`] is open (added with
    /// [`Self::add_channel`]): the circuits waiting for it extend.
    pub fn connect_done(&mut self, id: ConnectId, chan: ChanKey, now: Instant) {
        let Some((_, waiting)) = self.connects.remove(&id) else {
            return;
        };
        for key in waiting {
            let req = self.circuits.get_mut(&key).and_then(|nc| nc.waiting.take());
            if let Some(req) = req {
                self.start_extend(key, chan, req);
            }
            self.settle(key, now);
        }
    }

    /// The channel asked for could not be opened: the circuits waiting for
    /// it close with CONNECTFAILED (C-tor: `circuit_n_chan_done` failing).
    pub fn connect_failed(&mut self, id: ConnectId, now: Instant) {
        let Some((_, waiting)) = self.connects.remove(&id) else {
            return;
        };
        for key in waiting {
            if let Some(nc) = self.circuits.get_mut(&key) {
                nc.waiting = None;
                nc.circ.extend_failed(DestroyReason::CONNECTFAILED);
            }
            self.settle(key, now);
        }
    }
}
