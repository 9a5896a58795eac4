//! What the Conflux exit role's sets learn of their legs' cells, for
//! their watch over silent legs (Braid proposal 001 §3.6): every cell from
//! the client on a leg's circuit, every cell sent to it. The callers have
//! the circuit at hand and pass its leg, so that cells of circuits that
//! are no leg cost nothing more.

use std::time::Instant;

use super::RelayNode;
use crate::ids::{LegId, SetKey};

impl RelayNode {
    /// A cell came from the client on leg `leg` of set `set`: the set
    /// hears it alive.
    pub(super) fn leg_heard(&mut self, (set, leg): (SetKey, LegId), now: Instant) {
        if let Some(es) = self.sets.get_mut(&set) {
            es.set.leg_heard(leg, now);
        }
    }

    /// A cell of leg `leg` of set `set` went toward the client: the set
    /// starts waiting for an answer (and its deadline may move).
    pub(super) fn leg_sent(&mut self, (set, leg): (SetKey, LegId), now: Instant) {
        let moved = self
            .sets
            .get_mut(&set)
            .is_some_and(|es| es.set.leg_sent(leg, now));
        if moved {
            self.refresh_set_timer(set);
        }
    }
}
