//! Silent legs of a resumable set (Braid proposal 001 §3.6).
//!
//! A relay that hangs without closing its connections (a frozen process,
//! a machine cut off from the network) sends no DESTROY and closes no TCP
//! connection: neither end of the set hears of a loss, and what the leg
//! carried waits forever. Both ends therefore watch their linked legs. A
//! LEG_PING goes on a leg (answered at once by the peer's LEG_PONG on the
//! same leg) when, for [`ProbeParams::quiet`]:
//!
//! - something went out on it and nothing at all came back (both ends);
//! - or, at the client, nothing came after a cell that was not a probe:
//!   one PING per burst, so that a client that only receives notices
//!   when all its legs hang behind one guard (the exit cannot tell it).
//!
//! When the PING has had no answer, nor anything else, for
//! [`ProbeParams::lost`], the leg is lost ([`ConfluxEvent::LegSilent`]):
//! the driver closes its circuit and the set resumes as for any loss.
//! Only between ends that both sent the PROBE extension.
//!
//! The driver reports every cell of a leg's circuit, both ways
//! ([`ConfluxSet::leg_heard`], [`ConfluxSet::leg_sent`]), SENDMEs and
//! padding included.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{ConfluxEvent, ConfluxSet, Handled};
use crate::conflux::error::ConfluxError;
use crate::conflux::ext::Probe;
use crate::conflux::retransmit::ProbeParams;
use crate::ids::LegId;

/// A set's watch over its legs.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// The peer sent PROBE: it answers LEG_PING.
    pub(super) peer_probes: bool,
    /// Linked legs with something sent since anything was heard.
    legs: BTreeMap<LegId, LegWatch>,
    /// PINGs sent.
    pings: u64,
}

/// One leg's watch.
#[derive(Debug, Clone, Copy, Default)]
struct LegWatch {
    /// When the first cell went since anything was last heard.
    waiting_since: Option<Instant>,
    /// Client: when the last cell was heard, unless it was a probe or a
    /// PING went since.
    heard_at: Option<Instant>,
    /// When our unanswered PING went.
    pinged_at: Option<Instant>,
    /// When anything was last heard.
    last_heard: Option<Instant>,
    /// PONGs queued that have not gone yet: their sending asks for no
    /// answer (without this two idle ends would ping each other forever).
    pongs: u8,
    /// Reported lost.
    reported: bool,
}

impl LegWatch {
    /// Since when a PING may be due: the earlier of an unanswered send and
    /// the last cell heard (client).
    fn since(&self) -> Option<Instant> {
        match (self.waiting_since, self.heard_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl ConfluxSet {
    /// The probe timings, when both ends agreed to probe (PROBE in the
    /// LINK and the LINKED of a resumable set).
    fn probing(&self) -> Option<ProbeParams> {
        let resume = self.resume.as_ref()?;
        resume.params().probe.filter(|_| self.watch.peer_probes)
    }

    /// Whether linked leg `leg` is watched (probes are on).
    fn watches(&self, leg: LegId) -> bool {
        self.probing().is_some() && self.legs.get(&leg).is_some_and(|s| s.is_linked())
    }

    /// Whether we offer PROBE in our LINK or LINKED.
    pub(super) fn offers_probe(&self) -> bool {
        self.resume_offer.is_some_and(|p| p.probe.is_some())
    }

    /// A cell of any kind came on `leg`'s circuit (a SENDME, padding,
    /// anything the set is given): the leg is alive.
    pub fn leg_heard(&mut self, leg: LegId, now: Instant) {
        if !self.watches(leg) {
            return;
        }
        let client = self.role == super::Role::Client;
        let w = self.watch.legs.entry(leg).or_default();
        w.waiting_since = None;
        w.pinged_at = None;
        w.last_heard = Some(now);
        if client {
            w.heard_at = Some(now);
        }
    }

    /// A cell went out on `leg`'s circuit. True if the set's deadline may
    /// have moved earlier (the driver then re-reads
    /// [`Self::poll_timeout`]).
    pub fn leg_sent(&mut self, leg: LegId, now: Instant) -> bool {
        if !self.watches(leg) {
            return false;
        }
        let w = self.watch.legs.entry(leg).or_default();
        if w.pongs > 0 {
            w.pongs -= 1;
            return false;
        }
        if w.waiting_since.is_some() || w.reported {
            return false;
        }
        w.waiting_since = Some(now);
        true
    }

    /// PINGs this set sent.
    pub fn pings_sent(&self) -> u64 {
        self.watch.pings
    }

    /// `leg`'s times: quiet before a PING, then silence before the loss,
    /// each at least a multiple of its link RTT.
    fn probe_times(&self, leg: LegId, p: ProbeParams) -> (Duration, Duration) {
        let rtt = self
            .legs
            .get(&leg)
            .and_then(|s| s.rtt())
            .unwrap_or_default();
        (p.quiet.max(rtt * 2), p.lost.max(rtt * 4))
    }

    /// The earliest PING or loss due.
    pub(super) fn probe_deadline(&self) -> Option<Instant> {
        let p = self.probing()?;
        self.watch
            .legs
            .iter()
            .filter(|(_, w)| !w.reported)
            .filter_map(|(leg, w)| {
                let (quiet, lost) = self.probe_times(*leg, p);
                match w.pinged_at {
                    Some(at) => Some(at + lost),
                    None => w.since().map(|t| t + quiet),
                }
            })
            .min()
    }

    /// PINGs and losses due at `now`.
    pub(super) fn check_probes(&mut self, now: Instant) {
        let Some(p) = self.probing() else {
            return;
        };
        let legs = &self.legs;
        self.watch
            .legs
            .retain(|l, _| legs.get(l).is_some_and(|s| s.is_linked()));
        let mut ping = Vec::new();
        let mut silent = Vec::new();
        for (&leg, w) in &self.watch.legs {
            if w.reported {
                continue;
            }
            let (quiet, lost) = self.probe_times(leg, p);
            match (w.pinged_at, w.since()) {
                (Some(at), _) if now >= at + lost => {
                    let since = w.last_heard.unwrap_or(at).min(at);
                    silent.push((leg, now.saturating_duration_since(since)));
                }
                (None, Some(since)) if now >= since + quiet => ping.push(leg),
                _ => {}
            }
        }
        for leg in ping {
            if let Some(w) = self.watch.legs.get_mut(&leg) {
                w.pinged_at = Some(now);
                w.heard_at = None;
            }
            self.watch.pings += 1;
            self.transmit.push_back((leg, Probe::Ping.msg()));
        }
        for (leg, silent) in silent {
            if let Some(w) = self.watch.legs.get_mut(&leg) {
                w.reported = true;
            }
            self.events
                .push_back(ConfluxEvent::LegSilent { leg, silent });
        }
    }

    /// A LEG_PING or LEG_PONG came on `leg`: a PING is answered on the
    /// same leg; one from a peer that never offered PROBE, or to an end
    /// that did not, is a protocol violation.
    pub(super) fn probe_from_peer(
        &mut self,
        leg: LegId,
        probe: Probe,
    ) -> Result<Handled, ConfluxError> {
        if !self.offers_probe() || !self.watch.peer_probes {
            let cmd = tor_cell::relaycell::RelayCmd::from(match probe {
                Probe::Ping => crate::conflux::ext::CMD_LEG_PING,
                Probe::Pong => crate::conflux::ext::CMD_LEG_PONG,
            });
            return self.violation(
                leg,
                ConfluxError::BadExtension {
                    cmd,
                    why: "a leg probe without PROBE on both ends",
                },
            );
        }
        let w = self.watch.legs.entry(leg).or_default();
        // The cell just heard was a probe: no PING for it.
        w.heard_at = None;
        if probe == Probe::Ping {
            w.pongs = w.pongs.saturating_add(1);
            self.transmit.push_back((leg, Probe::Pong.msg()));
        }
        Ok(Handled::Consumed)
    }
}
