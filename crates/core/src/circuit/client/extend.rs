//! Building a [`ClientCircuit`] past its first hop: extensions asked for
//! and started one after the other, each an EXTEND2 in a RELAY_EARLY cell
//! to the current last hop (tor-spec §5.1.2, §5.6), and a completed
//! handshake becoming a hop.

use std::time::Instant;

use super::{ClientCircuit, Pending};
use crate::circuit::build::{self, HopTarget};
use crate::circuit::error::CircError;
use crate::circuit::event::CircEvent;
use crate::circuit::hop::{Hop, PlainCell};
use crate::circuit::relay_cell;

impl ClientCircuit {
    /// Ask for one more hop, `target`, after those already built or
    /// requested. Its EXTEND2 goes to the then-last hop in a RELAY_EARLY
    /// cell as soon as no other handshake is in flight.
    ///
    /// Local errors, circuit left as it was: the circuit is closed; or the
    /// RELAY_EARLY budget (tor-spec §5.6) cannot carry this and the already
    /// requested extensions. If the EXTEND2 cannot be started (an unusable
    /// onion key in the directory data, the control reserve full), the
    /// circuit closes ([`CircEvent::BuildFailed`]) and the error is
    /// returned here when the extension started at once, or from the
    /// `handle_cell` that completed the previous hop otherwise.
    pub fn extend(&mut self, target: HopTarget, now: Instant) -> Result<(), CircError> {
        if self.closed {
            return Err(CircError::Closed);
        }
        if self.planned.len() >= usize::from(self.relay_early_left) {
            return Err(CircError::RelayEarlyExhausted);
        }
        self.planned.push_back(target);
        self.building = true;
        if self.pending.is_none() {
            self.start_next_extend(now)?;
        }
        Ok(())
    }

    /// Start the next planned extension, if any; otherwise report the
    /// circuit built. Errors close the circuit.
    fn start_next_extend(&mut self, now: Instant) -> Result<(), CircError> {
        let Some(target) = self.planned.pop_front() else {
            let built = CircEvent::Built {
                n_hops: self.hops.len(),
            };
            self.push_event(built).map_err(|e| self.fail(e))?;
            self.building = false;
            return Ok(());
        };
        let result = self.send_extend2(&target, now);
        result.map_err(|e| self.fail(e))
    }

    /// Send the EXTEND2 for `target` to the last hop.
    fn send_extend2(&mut self, target: &HopTarget, now: Instant) -> Result<(), CircError> {
        let last = self
            .last_hop()
            .ok_or(CircError::Internal("extend with no hop"))?;
        let new_hop = self.hop_num(self.hops.len()).ok_or(CircError::Crypto(
            crate::crypto::RelayCryptoError::TooManyHops,
        ))?;
        if self.relay_early_left == 0 {
            return Err(CircError::RelayEarlyExhausted);
        }
        let (handshake, htype, onionskin) =
            build::start(&mut self.rng, new_hop, target, &self.params.cc)?;
        let msg = build::extend2(target, htype, onionskin)?;
        let body =
            relay_cell::encode(None, msg.into(), &mut self.rng).map_err(CircError::Encode)?;
        self.check_control_space()?;
        self.pending = Some(Pending {
            hop: new_hop,
            handshake,
        });
        self.transmit(
            last,
            PlainCell {
                body,
                is_data: false,
                stream: None,
            },
            true,
            now,
        )
    }

    /// A handshake reply (CREATED2 or EXTENDED2 body) for the pending hop.
    pub(super) fn finish_hop(&mut self, reply: &[u8], now: Instant) -> Result<(), CircError> {
        let pending = self
            .pending
            .take()
            .ok_or(CircError::Internal("no pending handshake"))?;
        let keys = pending
            .handshake
            .finish(pending.hop, reply, &self.params.cc)?;
        let hop = self.layers.add_hop(&keys.keys).map_err(CircError::Crypto)?;
        if hop != pending.hop {
            return Err(CircError::Internal("hop numbering out of step"));
        }
        self.hops.push(Hop::new(
            &self.params.cc,
            self.params.cc_path,
            keys.cc_sendme_inc,
        ));
        // Within max_pending_events like every other event.
        let added = CircEvent::HopAdded {
            hop,
            cc_sendme_inc: keys.cc_sendme_inc,
        };
        self.push_event(added).map_err(|e| self.fail(e))?;
        self.start_next_extend(now)
    }
}
