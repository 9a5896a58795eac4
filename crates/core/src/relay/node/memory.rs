//! The node's memory limit (C-tor's `MaxMemInQueues`): every circuit's
//! queued cells and its exit streams' buffers are counted, with every
//! Conflux set's reorder queue and stream buffers, and once the
//! total passes the limit the circuits and sets whose queued data is oldest are
//! closed (DESTROY RESOURCELIMIT both ways) until it is back under three
//! quarters of it (C-tor `cell_queues_check_size` and
//! `circuits_handle_oom`, which frees down to `MaxMemInQueues_low_threshold`).

use std::time::Instant;

use tor_cell::chancell::msg::DestroyReason;

use super::RelayNode;
use crate::conflux::ConfluxError;
use crate::ids::{CircKey, EdgeKey};

/// Bytes a queued cell counts for: a cell on the wire with link protocol 4
/// and up (C-tor counts `packed_cell_t`, a little more).
pub const CELL_MEM_BYTES: usize = 514;

impl RelayNode {
    /// Bound the bytes of all circuits' queues and exit buffers (`None`:
    /// no bound, the default). Checked as cells arrive.
    pub fn set_memory_limit(&mut self, limit: Option<usize>) {
        self.mem_limit = limit;
    }

    /// Bytes queued in circuits and their exit streams now.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Recount circuit `key`'s bytes into the node's total, and note since
    /// when its exit streams hold bytes.
    pub(super) fn account(&mut self, key: CircKey, now: Instant) {
        let Some(nc) = self.circuits.get_mut(&key) else {
            return;
        };
        let (p, n) = nc.circ.queued();
        let streams = nc.streams.as_ref().map_or(0, |m| {
            let (to_dest, from_dest) = m.buffered();
            to_dest + from_dest
        });
        let bytes = (p + n) * CELL_MEM_BYTES + streams;
        self.queued_bytes = self.queued_bytes - nc.accounted + bytes;
        nc.accounted = bytes;
        if streams == 0 {
            nc.streams_loaded_since = None;
        } else if nc.streams_loaded_since.is_none() {
            nc.streams_loaded_since = Some(now);
        }
    }

    /// Over the limit: close the circuits with the oldest queued data
    /// first until under three quarters of it. A circuit's age is that of
    /// the oldest of its queued cells and its exit streams' bytes (C-tor
    /// `circuit_max_queued_item_age` takes the oldest of the cell queues
    /// and the edge connections' buffers).
    pub(super) fn check_memory(&mut self, now: Instant) {
        let Some(limit) = self.mem_limit else {
            return;
        };
        if self.queued_bytes <= limit {
            return;
        }
        let target = limit / 4 * 3;
        let mut victims: Vec<(Instant, EdgeKey)> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.accounted > 0 && !c.circ.is_closed() && c.leg.is_none())
            .map(|(k, c)| {
                let oldest = c
                    .circ
                    .oldest_queued()
                    .into_iter()
                    .chain(c.streams_loaded_since)
                    .min()
                    .map_or(now, |t| t.min(now));
                (oldest, EdgeKey::Circuit(*k))
            })
            .chain(self.set_victims(now))
            .collect();
        victims.sort();
        tracing::warn!(
            "out of memory for queues: {} bytes queued, limit {limit}: closing circuits, oldest data first",
            self.queued_bytes
        );
        for (_, edge) in victims {
            if self.queued_bytes <= target {
                break;
            }
            match edge {
                EdgeKey::Circuit(key) => {
                    if let Some(nc) = self.circuits.get_mut(&key) {
                        nc.circ.close(DestroyReason::RESOURCELIMIT);
                        self.stats.oom_closed += 1;
                    }
                    self.settle(key, now);
                }
                EdgeKey::Set(set) => {
                    if let Some(es) = self.sets.get_mut(&set) {
                        es.close(ConfluxError::OutOfMemory);
                        self.stats.oom_sets_closed += 1;
                    }
                    self.drive_set(set, now);
                }
            }
        }
    }
}
