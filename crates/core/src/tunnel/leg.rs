//! One leg of a tunnel: a client circuit, what the tunnel knows about it,
//! and the launch budget legs are drawn from.

use std::time::{Duration, Instant};

use rand::CryptoRng;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::circuit::{CircParams, ClientCircuit, HopTarget};
use crate::conflux::LegClosedInfo;
use crate::ids::{CircId, HopNum, LegId, LegKey};

use super::config::MAX_RELAUNCH_BACKOFF;
use super::error::TunnelError;
use super::event::LegSnapshot;

/// A leg to launch: a circuit id the driver allocated on the channel to
/// the first hop, and the hops, first hop first (the last is the exit).
#[derive(Debug, Clone)]
pub struct LegSpec {
    /// The circuit's id on its channel.
    pub circ_id: CircId,
    /// The hops, first hop first.
    pub hops: Vec<HopTarget>,
}

/// One leg's circuit and state.
#[derive(Debug)]
pub(crate) struct Leg {
    /// The tunnel's name for it.
    pub(crate) key: LegKey,
    /// Its circuit.
    pub(crate) circuit: ClientCircuit,
    /// Its relays, first hop first.
    pub(crate) path: Vec<RsaIdentity>,
    /// Its last hop, once built.
    pub(crate) last_hop: HopNum,
    /// Hops completed so far.
    pub(crate) hops_done: usize,
    /// Built (every hop in place).
    pub(crate) built: bool,
    /// Its circuit closed (the leg lingers until its DESTROY is taken).
    pub(crate) closed: bool,
    /// The Conflux set's id for it, once its LINK went out.
    pub(crate) conflux: Option<LegId>,
    /// It was linked when it closed (a loss rather than a failure).
    pub(crate) was_linked: bool,
    /// The driver cannot take its cells now (its channel queue is full).
    pub(crate) blocked: bool,
    /// The driver's channel queues for it are gone: nothing more can be
    /// sent, queued cells are dropped.
    pub(crate) io_gone: bool,
    /// Launched to replace a leg that failed or closed.
    pub(crate) replacement: bool,
    /// Why we closed it, when we did (the circuit only knows "locally").
    pub(crate) close_error: Option<TunnelError>,
    /// When it was launched (its build time is measured from here).
    pub(crate) launched_at: Instant,
    /// Its circuit SENDMEs are held back
    /// ([`crate::conflux::ConfluxSet::sendme_hold`]).
    pub(crate) sendme_hold: bool,
}

impl Leg {
    /// A leg whose circuit starts building: its CREATE2 is queued, its
    /// EXTEND2s follow hop by hop.
    pub(crate) fn launch<R: CryptoRng + ?Sized>(
        key: LegKey,
        spec: LegSpec,
        params: &CircParams,
        replacement: bool,
        rng: &mut R,
        now: Instant,
    ) -> Result<Self, TunnelError> {
        let path: Vec<RsaIdentity> = spec.hops.iter().map(|h| h.rsa_id).collect();
        let mut hops = spec.hops.into_iter();
        let first = hops
            .next()
            .ok_or_else(|| TunnelError::BadLeg("a circuit needs at least one hop".into()))?;
        let mut circuit = ClientCircuit::new(spec.circ_id, first, params.clone(), rng, now)
            .map_err(|e| TunnelError::BadLeg(e.to_string()))?;
        for hop in hops {
            circuit
                .extend(hop, now)
                .map_err(|e| TunnelError::BadLeg(e.to_string()))?;
        }
        Ok(Self {
            key,
            circuit,
            path,
            last_hop: HopNum(0),
            hops_done: 0,
            launched_at: now,
            built: false,
            closed: false,
            conflux: None,
            was_linked: false,
            blocked: false,
            io_gone: false,
            replacement,
            close_error: None,
            sendme_hold: false,
        })
    }

    /// Still being built.
    pub(crate) fn building(&self) -> bool {
        !self.built && !self.closed
    }

    /// Close its circuit on `error` (a DESTROY is queued; the terminal
    /// circuit event follows and carries `error`).
    pub(crate) fn close_on(&mut self, error: TunnelError) {
        if self.closed || self.circuit.is_closed() {
            return;
        }
        self.close_error.get_or_insert(error);
        self.circuit.close();
    }

    /// What the set needs to know when the leg closes (prop 329 §2.4.3).
    pub(crate) fn closed_info(&self) -> LegClosedInfo {
        self.circuit
            .hop_figures(self.last_hop)
            .map(|f| LegClosedInfo {
                inflight: f.inflight.unwrap_or(0),
                sendme_inc: f.cc_sendme_inc.map_or(0, u64::from),
            })
            .unwrap_or_default()
    }

    /// Done: closed, and every cell for its channel taken (or its channel
    /// queues gone).
    pub(crate) fn releasable(&self) -> bool {
        self.closed && (self.io_gone || self.circuit.queued_cells() == 0)
    }

    /// A report of it, without the set's figures.
    pub(crate) fn snapshot(&self) -> LegSnapshot {
        LegSnapshot {
            leg: self.key,
            path: self.path.clone(),
            open: !self.closed,
            figures: self.circuit.hop_figures(self.last_hop),
            stats: None,
            replacement: self.replacement,
            link_rtt: None,
        }
    }
}

/// How often an open tunnel gets a launch back ([`Launches::refill`]).
pub(crate) const REFILL_EVERY: Duration = Duration::from_secs(60);

/// The one relaunch budget of a tunnel (prop 329 §4.2.2) and the backoff
/// between relaunches.
#[derive(Debug)]
pub(crate) struct Launches {
    /// Most launches over the tunnel's life.
    pub(crate) budget: usize,
    /// Launches so far (first legs included; a relaunch counts when asked
    /// for).
    pub(crate) launched: usize,
    /// Launches counted against the budget: `launched` less those given
    /// back by [`Self::refill`].
    used: usize,
    /// The first legs' launches: `used` never goes below.
    initial: usize,
    /// When a launch was last given back (or the tunnel opened).
    refilled_at: Option<Instant>,
    /// Relaunches asked of the driver and not answered yet.
    pub(crate) outstanding: usize,
    /// Relaunches so far (for the backoff).
    relaunches: u32,
    /// Wait before the second relaunch.
    base: Duration,
}

impl Launches {
    /// A budget of `budget` launches, `initial` of them used.
    pub(crate) fn new(budget: usize, initial: usize, base: Duration) -> Self {
        Self {
            budget,
            launched: initial,
            used: initial,
            initial,
            refilled_at: None,
            outstanding: 0,
            relaunches: 0,
            base,
        }
    }

    /// True if another launch is allowed.
    pub(crate) fn can_launch(&self) -> bool {
        self.used < self.budget
    }

    /// The tunnel is open at `now`: one launch comes back to the budget
    /// (and one step of the backoff) per [`REFILL_EVERY`] since it opened
    /// or last got one back. Braid's rule, beyond prop 329 §4.2.2's one
    /// budget for building: a set that links keeps its legs over hours of
    /// occasional losses, and a peer that kills its legs still gets at
    /// most one relaunch a minute once the budget is spent (a resumable
    /// set is bounded further by Braid proposal 001 §3.5).
    pub(crate) fn refill(&mut self, now: Instant) {
        let Some(at) = self.refilled_at else {
            self.refilled_at = Some(now);
            return;
        };
        let mut at = at;
        while now.saturating_duration_since(at) >= REFILL_EVERY {
            at = at.checked_add(REFILL_EVERY).unwrap_or(now);
            if self.used > self.initial {
                self.used -= 1;
                self.relaunches = self.relaunches.saturating_sub(1);
            } else {
                // Nothing to give back: restart the count from now.
                at = now;
                break;
            }
        }
        self.refilled_at = Some(at);
    }

    /// When the next relaunch may go if asked for at `now`: at once for
    /// the first, then after the base wait doubled per relaunch, at most
    /// [`MAX_RELAUNCH_BACKOFF`].
    pub(crate) fn next_at(&self, now: Instant) -> Instant {
        let wait = match self.relaunches {
            0 => Duration::ZERO,
            n => self
                .base
                .saturating_mul(1u32 << (n - 1).min(16))
                .min(MAX_RELAUNCH_BACKOFF),
        };
        now.checked_add(wait).unwrap_or(now)
    }

    /// A relaunch is asked of the driver now.
    pub(crate) fn take(&mut self) {
        self.launched = self.launched.saturating_add(1);
        self.used = self.used.saturating_add(1);
        self.outstanding = self.outstanding.saturating_add(1);
        self.relaunches = self.relaunches.saturating_add(1);
    }

    /// The driver answered a relaunch (with a leg or without).
    pub(crate) fn answered(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_and_backoff() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Launches::new(5, 2, ms(250));
        assert!(l.can_launch());
        assert_eq!(l.next_at(t0), t0);
        l.take();
        assert_eq!(l.next_at(t0), t0 + ms(250));
        l.take();
        assert_eq!(l.next_at(t0), t0 + ms(500));
        l.take();
        assert!(!l.can_launch(), "2 + 3 launches");
        assert_eq!(l.outstanding, 3);
        l.answered();
        assert_eq!(l.outstanding, 2);
        for _ in 0..40 {
            l.take();
        }
        assert_eq!(l.next_at(t0), t0 + MAX_RELAUNCH_BACKOFF);
    }

    /// An open tunnel gets one launch back a minute, never below its first
    /// legs, and its backoff eases with it.
    #[test]
    fn an_open_tunnel_gets_launches_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Launches::new(5, 2, ms(250));
        for _ in 0..3 {
            l.take();
        }
        assert!(!l.can_launch());
        l.refill(t0); // opened
        l.refill(t0 + ms(59_999));
        assert!(!l.can_launch());
        l.refill(t0 + REFILL_EVERY);
        assert!(l.can_launch());
        l.take();
        assert!(!l.can_launch());
        // Three minutes later: three back, but never the first legs'.
        l.refill(t0 + REFILL_EVERY * 10);
        assert_eq!(l.used, 2);
        assert_eq!(l.launched, 6, "the lifetime count stays");
        assert_eq!(l.next_at(t0), t0, "backoff eased");
        // With nothing to give back the clock restarts: a minute after
        // the next launch, not at once.
        l.take();
        l.refill(t0 + REFILL_EVERY * 10 + ms(1));
        assert_eq!(l.used, 3);
        l.refill(t0 + REFILL_EVERY * 11);
        assert_eq!(l.used, 2);
    }
}
