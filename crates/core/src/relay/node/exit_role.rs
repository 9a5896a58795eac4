//! The exit role of a [`RelayNode`]: each circuit that reaches us as its
//! last hop gets its own [`ExitStreamMap`] at its first stream message
//! (tor-spec §6.2), the map's requests go to the driver as
//! [`NodeEvent::Exit`], the driver answers through [`RelayNode::exit`],
//! and the map's cells go into the circuit as its queue toward the client
//! drains ([`pump`]). The node's timers (connect and flush deadlines of
//! the streams) live here too.

use std::time::Instant;

use tor_cell::chancell::msg::DestroyReason;
use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::msg::AnyRelayMsg;

use super::{NodeEvent, RelayNode};
use crate::cc::FlowParams;
use crate::conflux::ext::LinkExt;
use crate::exit::{ExitConfig, ExitStreamMap, deliver, pump};
use crate::ids::{ChanKey, CircKey, EdgeKey, StreamId};
use crate::relay::node::Peer;
use crate::stream::StreamFlowMode;

impl RelayNode {
    /// Take the exit role with these stream limits (`None`: not an exit,
    /// the default). Circuits that already have streams keep their map.
    pub fn set_exit(&mut self, cfg: Option<ExitConfig>) {
        self.exit = cfg;
    }

    /// The consensus' XON/XOFF parameters for exit streams on circuits
    /// with congestion control (proposal 324 §4); default
    /// [`FlowParams::default`].
    pub fn set_flow_params(&mut self, flow: FlowParams) {
        self.flow = flow;
    }

    /// Whether we act as an exit.
    pub fn is_exit(&self) -> bool {
        self.exit.is_some()
    }

    /// Answer or feed the exit streams of `edge`, a circuit or a Conflux
    /// set (connected, refuse, resolved, read, write, close ... on the
    /// map), then let the node move what that changed. `None` if it is
    /// gone or has no streams: its streams' `Closed` events were given or
    /// are queued.
    pub fn exit<T>(
        &mut self,
        edge: EdgeKey,
        now: Instant,
        f: impl FnOnce(&mut ExitStreamMap) -> T,
    ) -> Option<T> {
        let out = match edge {
            EdgeKey::Circuit(circ) => {
                let map = self.circuits.get_mut(&circ)?.streams.as_mut()?;
                let out = f(map);
                self.settle(circ, now);
                out
            }
            EdgeKey::Set(set) => {
                let out = f(&mut self.sets.get_mut(&set)?.streams);
                self.drive_set(set, now);
                out
            }
        };
        self.check_memory(now);
        Some(out)
    }

    /// Exit streams of `edge`, for figures.
    pub fn exit_streams(&self, edge: EdgeKey) -> Option<&ExitStreamMap> {
        match edge {
            EdgeKey::Circuit(circ) => self.circuits.get(&circ)?.streams.as_ref(),
            EdgeKey::Set(set) => Some(&self.sets.get(&set)?.streams),
        }
    }

    /// Exit streams over all circuits and sets.
    pub fn exit_stream_count(&self) -> usize {
        let on_circuits: usize = self
            .circuits
            .values()
            .filter_map(|c| c.streams.as_ref())
            .map(ExitStreamMap::len)
            .sum();
        on_circuits + self.sets.values().map(|s| s.streams.len()).sum::<usize>()
    }

    /// The earliest deadline: a circuit's (its streams' connect and flush
    /// deadlines), a channel's padding or idle time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.first().map(|(t, _)| *t),
            self.padding_timeout(),
            self.idle_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The earliest deadline of a circuit or a Conflux set alone (not the
    /// channels' padding and idle times).
    pub fn edge_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Run what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_padding(now);
        self.handle_idle(now);
        while let Some(&(t, edge)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, edge));
            match edge {
                EdgeKey::Circuit(key) => {
                    if let Some(nc) = self.circuits.get_mut(&key) {
                        nc.deadline = None;
                        if let Some(map) = nc.streams.as_mut() {
                            map.handle_timeout(now);
                        }
                    }
                    self.settle(key, now);
                }
                EdgeKey::Set(set) => self.set_timeout(set, now),
            }
        }
    }

    /// A channel that may have cells to send since the last call (after
    /// cells, answers or timers); pull them with
    /// [`RelayNode::poll_transmit`] while its writer has room. A channel
    /// whose writer was full is not named again for the same cells: pull
    /// it when the writer has room again.
    pub fn poll_ready(&mut self) -> Option<ChanKey> {
        self.ready.pop_first()
    }

    /// A stream message reached us as circuit `key`'s edge, as an exit.
    pub(super) fn edge_exit(
        &mut self,
        key: CircKey,
        stream: Option<StreamId>,
        msg: AnyRelayMsg,
        now: Instant,
    ) {
        if self.exit.is_none() {
            return;
        }
        let Some(leg) = self.circuits.get(&key).map(|nc| nc.leg) else {
            return;
        };
        if let Some((set, leg)) = leg {
            self.set_msg(set, leg, stream, msg, now);
            return;
        }
        let msg = match msg {
            AnyRelayMsg::ConfluxLink(link) => {
                self.link(key, &link, &LinkExt::default(), now);
                return;
            }
            AnyRelayMsg::Unrecognized(u) if u.cmd() == RelayCmd::CONFLUX_LINK => {
                // A LINK with Braid's extensions (proposal 001 §2.2).
                match crate::conflux::ext::split(AnyRelayMsg::Unrecognized(u)) {
                    Ok((AnyRelayMsg::ConfluxLink(link), ext)) => self.link(key, &link, &ext, now),
                    Ok(_) | Err(_) => {
                        if let Some(nc) = self.circuits.get_mut(&key) {
                            nc.circ.close(DestroyReason::PROTOCOL);
                        }
                    }
                }
                return;
            }
            m => m,
        };
        if self.conflux_misplaced(key, &msg) || self.migrate_misplaced(key, stream, &msg, now) {
            return;
        }
        let Some(cfg) = self.exit.as_ref() else {
            return;
        };
        let Some(nc) = self.circuits.get(&key) else {
            return;
        };
        if nc.streams.is_none() && stream.is_none() {
            // A circuit-level message on a circuit without streams:
            // nothing to make.
            return;
        }
        let client_first_hop = nc
            .prev
            .and_then(|(chan, _)| self.channels.get(&chan))
            .is_some_and(|c| c.peer == Peer::Client);
        let mode = if nc.circ.cc_sendme_inc().is_some() {
            StreamFlowMode::XonXoff {
                params: self.flow.clone(),
                onion: false,
            }
        } else {
            StreamFlowMode::Windowed
        };
        let cfg = ExitConfig {
            client_first_hop,
            ..cfg.clone()
        };
        let seed: u64 = rand::RngExt::random(&mut self.rng);
        let Some(nc) = self.circuits.get_mut(&key) else {
            return;
        };
        let map = nc
            .streams
            .get_or_insert_with(|| ExitStreamMap::with_seed(cfg, mode, seed));
        if let Err(e) = deliver(map, &mut nc.circ, stream, msg, now) {
            tracing::debug!("{key}: exit stream: {e}");
        }
    }

    /// Move circuit `key`'s exit stream cells into it and its map's events
    /// to the driver. True if the circuit closed while sending (its
    /// `Closed` event waits).
    pub(super) fn pump_exit(&mut self, key: CircKey, now: Instant) -> bool {
        let Some(nc) = self.circuits.get_mut(&key) else {
            return false;
        };
        if let Some((set, _)) = nc.leg {
            let was_closed = nc.circ.is_closed();
            self.drive_set(set, now);
            return self
                .circuits
                .get(&key)
                .is_some_and(|nc| !was_closed && nc.circ.is_closed());
        }
        let Some(map) = nc.streams.as_mut() else {
            return false;
        };
        let was_closed = nc.circ.is_closed();
        pump(map, &mut nc.circ, now);
        while let Some(event) = map.poll_event() {
            self.events.push_back(NodeEvent::Exit {
                edge: EdgeKey::Circuit(key),
                event,
            });
        }
        !was_closed && nc.circ.is_closed()
    }

    /// File circuit `key`'s next deadline.
    pub(super) fn refresh_timer(&mut self, key: CircKey) {
        let Some(nc) = self.circuits.get_mut(&key) else {
            return;
        };
        let next = nc.streams.as_ref().and_then(ExitStreamMap::poll_timeout);
        if next == nc.deadline {
            return;
        }
        if let Some(t) = nc.deadline.take() {
            self.timers.remove(&(t, EdgeKey::Circuit(key)));
        }
        if let Some(t) = next {
            self.timers.insert((t, EdgeKey::Circuit(key)));
            nc.deadline = Some(t);
        }
    }
}
