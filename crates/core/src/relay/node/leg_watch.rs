//! What the Conflux exit role's sets learn of their legs' cells, for
//! their watch over silent legs (Braid proposal 001 §3.6): every cell from
//! the client on a leg's circuit, every cell sent to it.

use std::time::Instant;

use super::RelayNode;
use crate::ids::CircKey;

impl RelayNode {
    /// A cell came on circuit `key` from the client: if it is a leg, its
    /// set hears it alive.
    pub(super) fn leg_heard(&mut self, key: CircKey, now: Instant) {
        let Some((set, leg)) = self.circuits.get(&key).and_then(|nc| nc.leg) else {
            return;
        };
        if let Some(es) = self.sets.get_mut(&set) {
            es.set.leg_heard(leg, now);
        }
    }

    /// A cell of circuit `key` went toward the client: if it is a leg,
    /// its set starts waiting for an answer (and its deadline may move).
    pub(super) fn leg_sent(&mut self, key: CircKey, now: Instant) {
        let Some((set, leg)) = self.circuits.get(&key).and_then(|nc| nc.leg) else {
            return;
        };
        let moved = self
            .sets
            .get_mut(&set)
            .is_some_and(|es| es.set.leg_sent(leg, now));
        if moved {
            self.refresh_set_timer(set);
        }
    }
}
