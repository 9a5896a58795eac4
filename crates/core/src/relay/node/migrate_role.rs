//! Live stream migration at a Braid exit (Braid proposal 001 §4): the
//! node owns every circuit's and set's [`ExitStreamMap`] and the one
//! [`MigrateTokens`] table, so it carries out what one map asks of another
//! ([`MigrateRequest`]). Every rule is the maps' (`crate::exit::migrate`);
//! here they are only found and called, and the driver is told a stream
//! moved ([`ExitEvent::Moved`]) before any event of its new id.
//!
//! The requests are collected from the maps the node just drove (`settle`,
//! `drive_set`) and carried out at the end of each of those, once: what
//! that changes in other maps is driven in turn, until nothing is left.

use std::time::Instant;

use tor_cell::relaycell::msg::{AnyRelayMsg, End, EndReason};

use std::collections::BTreeMap;

use super::conflux_role::ExitSet;
use super::{NodeCirc, NodeEvent, RelayNode};
use crate::exit::migrate::{CarriedOut, ExitMaps, carry_out};
use crate::exit::{ExitEvent, ExitStreamMap};
use crate::ids::{CircKey, EdgeKey, SetKey, StreamId};
use crate::stream::migrate_wire::is_migrate_cmd;

/// Rounds of carrying out requests before the rest waits for the next
/// call (each round is driven by cells or timers, so a bound only guards
/// against a bug looping).
const MAX_ROUNDS: usize = 1024;

impl RelayNode {
    /// Tokens held (proposal 001 §4.1), for figures and tests.
    pub fn migrate_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Note that `edge`'s map may have requests.
    pub(super) fn note_migrate_requests(&mut self, edge: EdgeKey) {
        let has = match edge {
            EdgeKey::Circuit(c) => self
                .circuits
                .get(&c)
                .and_then(|nc| nc.streams.as_ref())
                .is_some_and(ExitStreamMap::has_migrate_requests),
            EdgeKey::Set(s) => self
                .sets
                .get(&s)
                .is_some_and(|es| es.streams.has_migrate_requests()),
        };
        if has {
            self.mig_dirty.insert(edge);
        }
    }

    /// proposal 001 §4.3: one of §4's messages on circuit `key`, which
    /// goes on past us (we are not its last hop), gets END TORPROTOCOL on
    /// its stream. True if it was one (and is answered).
    pub(super) fn migrate_misplaced(
        &mut self,
        key: CircKey,
        stream: Option<StreamId>,
        msg: &AnyRelayMsg,
        now: Instant,
    ) -> bool {
        let cmd = tor_cell::relaycell::RelayMsg::cmd(msg);
        if !is_migrate_cmd(cmd) || !self.exit.as_ref().is_some_and(|c| c.migrate) {
            return false;
        }
        let Some(nc) = self.circuits.get_mut(&key) else {
            return false;
        };
        if nc.next.is_none() && nc.waiting.is_none() {
            return false;
        }
        if stream.is_some() {
            let end = End::new_with_reason(EndReason::TORPROTOCOL).into();
            if let Err(e) = nc.circ.send(stream, end, now) {
                tracing::debug!("{key}: {e}");
            }
        }
        true
    }

    /// Carry out what the maps asked, and drive the maps that changed,
    /// until nothing is left.
    pub(super) fn run_migrations(&mut self, now: Instant) {
        if self.mig_running || self.mig_dirty.is_empty() {
            return;
        }
        self.mig_running = true;
        for _ in 0..MAX_ROUNDS {
            let Some(edge) = self.mig_dirty.pop_first() else {
                break;
            };
            let requests = NodeMaps {
                circuits: &mut self.circuits,
                sets: &mut self.sets,
            }
            .map_mut(edge)
            .map(ExitStreamMap::take_migrate_requests)
            .unwrap_or_default();
            let mut out = CarriedOut::default();
            for r in requests {
                let mut maps = NodeMaps {
                    circuits: &mut self.circuits,
                    sets: &mut self.sets,
                };
                carry_out(
                    &mut maps,
                    &mut self.tokens,
                    &mut self.rng,
                    edge,
                    r,
                    now,
                    &mut out,
                );
            }
            // The driver hears of a move before anything of the new id.
            for ((from_edge, id), (to_edge, to_id)) in out.moved {
                self.events.push_back(NodeEvent::Exit {
                    edge: from_edge,
                    event: ExitEvent::Moved { id, to_edge, to_id },
                });
            }
            let mut touched = out.touched;
            touched.sort_unstable();
            touched.dedup();
            for e in touched {
                match e {
                    EdgeKey::Circuit(c) => self.settle(c, now),
                    EdgeKey::Set(s) => self.drive_set(s, now),
                }
            }
        }
        self.mig_running = false;
    }
}

/// The node's maps, borrowed apart from its other fields.
struct NodeMaps<'a> {
    circuits: &'a mut BTreeMap<CircKey, NodeCirc>,
    sets: &'a mut BTreeMap<SetKey, ExitSet>,
}

impl ExitMaps for NodeMaps<'_> {
    fn map_mut(&mut self, edge: EdgeKey) -> Option<&mut ExitStreamMap> {
        match edge {
            EdgeKey::Circuit(c) => self.circuits.get_mut(&c)?.streams.as_mut(),
            EdgeKey::Set(s) => Some(&mut self.sets.get_mut(&s)?.streams),
        }
    }
}
