//! Channel padding at a relay (padding-spec §2, proposal 251; C-tor
//! `channelpadding.c`): a channel to a client that has carried a circuit
//! and stays quiet for a random 1.5–9.5 s gets a PADDING cell, so that a
//! netflow record of the connection does not end with the user's traffic.
//!
//! - The timeout after the last cell in or out is `low + max(X1, X2)`, `X`
//!   uniform in `0..high-low` ([`PaddingParams::sample`], C-tor's
//!   `channelpadding_get_netflow_inactive_timeout_ms`: with both ends
//!   padding, the average lands near the middle of the range); `low` and
//!   `high` are the consensus' `nf_ito_low`/`nf_ito_high` (1500/9500 ms),
//!   raised to what the client asked in PADDING_NEGOTIATE START, never
//!   lowered below the consensus.
//! - Only channels whose link protocol is 5 or more (C-tor
//!   `MIN_LINK_PROTO_FOR_CHANNEL_PADDING`), to clients (relay channels too
//!   when `nf_pad_relays` is 1), that carried a circuit (`nf_pad_before_usage`
//!   1: from their first circuit), and not after PADDING_NEGOTIATE STOP.
//! - A padding cell goes only when nothing else waits for the channel.
//!
//! The node checks its channels once a second (C-tor's housekeeping) and
//! files the ones whose padding falls due within the next 1.1 s.

use std::time::{Duration, Instant};

use rand::Rng;
use tor_cell::chancell::ChanCell;
use tor_cell::chancell::msg::{Padding, PaddingNegotiate, PaddingNegotiateCmd};

use super::Peer;
use crate::channel::padding::{MIN_LINK_PROTO_FOR_PADDING, PaddingParams};
use crate::ids::ChanKey;

/// How often the node looks for channels to pad (C-tor
/// `TOR_HOUSEKEEPING_CALLBACK_MSEC`).
pub const PADDING_CHECK: Duration = Duration::from_secs(1);
/// A channel whose padding falls due within this of a check is filed for
/// its exact time (C-tor: the callback period plus 100 ms of slack).
pub const PADDING_HORIZON: Duration = Duration::from_millis(1100);

/// One channel's padding state.
#[derive(Debug, Clone)]
pub(super) struct ChanPadding {
    /// Not stopped by PADDING_NEGOTIATE.
    enabled: bool,
    /// The link protocol allows it (5 or more).
    link_ok: bool,
    /// It carried a circuit.
    pub(super) used: bool,
    /// What the client asked in PADDING_NEGOTIATE START, milliseconds.
    asked: Option<(u32, u32)>,
    /// The last cell in or out.
    last_xfer: Option<Instant>,
    /// The quiet time after which it is padded (drawn again after each
    /// cell in or out).
    timeout: Option<Duration>,
}

impl Default for ChanPadding {
    fn default() -> Self {
        Self {
            enabled: true,
            link_ok: true,
            used: false,
            asked: None,
            last_xfer: None,
            timeout: None,
        }
    }
}

impl ChanPadding {
    /// A cell went in or out at `now`: the timeout is drawn anew (C-tor's
    /// `channel_timestamp_xmit`/`_recv` clear `next_padding_time`). With
    /// both ends padding, each draw races the other end's: a timeout kept
    /// across the peer's padding would almost never win.
    pub(super) fn note_xfer(&mut self, now: Instant) {
        self.last_xfer = Some(now);
        self.timeout = None;
    }

    /// The link protocol the channel speaks.
    pub(super) fn set_link_version(&mut self, version: u16) {
        self.link_ok = version >= MIN_LINK_PROTO_FOR_PADDING;
    }

    /// PADDING_NEGOTIATE from the client (padding-spec §2.2; C-tor
    /// `channelpadding_update_padding_for_channel`): START with its
    /// timeouts (never below the consensus'), or STOP.
    pub(super) fn negotiate(&mut self, start: bool, low: u16, high: u16, params: &PaddingParams) {
        self.enabled = start;
        let low = params.ito_low_ms.max(u32::from(low));
        self.asked = Some((low, low.max(u32::from(high))));
        self.timeout = None;
    }

    /// Whether the channel is padded, its peer a client or not.
    pub(super) fn active(&self, is_client: bool, params: &PaddingParams) -> bool {
        self.enabled
            && self.link_ok
            && self.used
            && params.pad_before_usage
            && (is_client || params.pad_relays)
            && !params.disabled()
    }

    /// When it is padded unless a cell goes first (drawing the timeout if
    /// none is drawn).
    pub(super) fn deadline<R: Rng + ?Sized>(
        &mut self,
        params: &PaddingParams,
        rng: &mut R,
    ) -> Option<Instant> {
        let last = self.last_xfer?;
        if self.timeout.is_none() {
            // The consensus' range, raised to the client's if it asked
            // (C-tor uses the larger bound of each).
            let range = match self.asked {
                Some((l, h)) => PaddingParams {
                    ito_low_ms: params.ito_low_ms.max(l),
                    ito_high_ms: params.ito_high_ms.max(h),
                    ..*params
                },
                None => *params,
            };
            self.timeout = Some(range.sample(rng));
        }
        Some(last + self.timeout?)
    }

    /// A padding cell was queued at `now`: the next timeout is drawn anew.
    pub(super) fn padded(&mut self, now: Instant) {
        self.last_xfer = Some(now);
        self.timeout = None;
    }
}

impl super::RelayNode {
    /// The consensus' channel padding parameters.
    pub fn set_padding_params(&mut self, params: PaddingParams) {
        self.padding = params;
    }

    /// The link protocol channel `chan` speaks (padding needs 5 or more).
    pub fn set_link_version(&mut self, chan: ChanKey, version: u16) {
        if let Some(c) = self.channels.get_mut(&chan) {
            c.pad.set_link_version(version);
        }
    }

    /// PADDING_NEGOTIATE on `chan`: from a client only (C-tor refuses it
    /// from relays), START or STOP.
    pub(super) fn padding_negotiate(
        &mut self,
        chan: ChanKey,
        msg: &PaddingNegotiate,
        now: Instant,
    ) {
        let params = self.padding;
        let Some(c) = self.channels.get_mut(&chan) else {
            return;
        };
        if c.peer != Peer::Client {
            tracing::debug!("{chan}: PADDING_NEGOTIATE from a relay, ignored");
            return;
        }
        // version, command, ito_low_ms, ito_high_ms (padding-spec §2.2).
        let mut body = Vec::new();
        if tor_cell::chancell::ChanMsg::encode_onto(msg.clone(), &mut body).is_err() {
            return;
        }
        let (Some(&cmd), Some(low), Some(high)) = (
            body.get(1),
            body.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()),
            body.get(4..6).and_then(|b| <[u8; 2]>::try_from(b).ok()),
        ) else {
            return;
        };
        // START is 2, STOP 1 (padding-spec §2.2).
        let start = cmd == u8::from(PaddingNegotiateCmd::START);
        c.pad.negotiate(
            start,
            u16::from_be_bytes(low),
            u16::from_be_bytes(high),
            &params,
        );
        if start {
            self.pad_check.get_or_insert(now + PADDING_CHECK);
        }
    }

    /// Channel `chan` is gone: no padding for it, and no check at all
    /// once no channel is left (found by the `core_relay_node` fuzz
    /// target: a node without channels must not wake).
    pub(super) fn forget_padding(&mut self, chan: ChanKey) {
        self.pad_due.retain(|(_, c)| *c != chan);
        if self.channels.is_empty() {
            self.pad_check = None;
        }
    }

    /// The next time padding needs the node.
    pub(super) fn padding_timeout(&self) -> Option<Instant> {
        let due = self.pad_due.first().map(|(t, _)| *t);
        [due, self.pad_check].into_iter().flatten().min()
    }

    /// Once a second, file the channels whose padding falls due soon; send
    /// padding on those due now that have nothing else to send.
    pub(super) fn handle_padding(&mut self, now: Instant) {
        if self.pad_check.is_none_or(|t| t <= now) {
            let params = self.padding;
            let mut any = false;
            for (&key, c) in &mut self.channels {
                if !c.pad.active(c.peer == Peer::Client, &params) {
                    continue;
                }
                any = true;
                if let Some(d) = c.pad.deadline(&params, &mut self.rng)
                    && d <= now + PADDING_HORIZON
                {
                    self.pad_due.insert((d, key));
                }
            }
            // No channel to pad: no wake-up until a cell comes (the next
            // `handle_cell` resets the check).
            self.pad_check = any.then_some(now + PADDING_CHECK);
        }
        while let Some(&(t, key)) = self.pad_due.first() {
            if t > now {
                break;
            }
            self.pad_due.remove(&(t, key));
            let params = self.padding;
            let is_idle = self.channel_priority(key, now).is_none();
            let Some(c) = self.channels.get_mut(&key) else {
                continue;
            };
            let current = c.pad.deadline(&params, &mut self.rng);
            // A cell went since it was filed, or cells wait: not now.
            if !c.pad.active(c.peer == Peer::Client, &params)
                || current.is_none_or(|d| d > now)
                || !c.out.is_empty()
                || !is_idle
            {
                continue;
            }
            c.out.push_back(ChanCell::new(None, Padding::new().into()));
            c.pad.padded(now);
            self.stats.padding_sent += 1;
            self.ready.insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn who_is_padded() {
        let p = PaddingParams::default();
        let mut c = ChanPadding::default();
        assert!(!c.active(true, &p), "not before a circuit");
        c.used = true;
        assert!(c.active(true, &p));
        assert!(!c.active(false, &p), "relays only with nf_pad_relays");
        assert!(c.active(
            false,
            &PaddingParams {
                pad_relays: true,
                ..p
            }
        ));
        c.set_link_version(4);
        assert!(!c.active(true, &p), "link protocol 4 has no padding");
        c.set_link_version(5);
        c.negotiate(false, 0, 0, &p);
        assert!(!c.active(true, &p), "STOP");
        c.negotiate(true, 0, 0, &p);
        assert!(c.active(true, &p), "START");
    }

    #[test]
    fn the_deadline_follows_the_last_cell_and_the_clients_range() {
        let p = PaddingParams::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = ChanPadding::default();
        assert_eq!(c.deadline(&p, &mut rng), None, "no cell yet");
        let t0 = Instant::now();
        c.note_xfer(t0);
        let d = c.deadline(&p, &mut rng).unwrap();
        assert!(d >= t0 + Duration::from_millis(1500) && d < t0 + Duration::from_millis(9500));
        // Asked again, the same; a later cell draws anew from there.
        assert_eq!(c.deadline(&p, &mut rng), Some(d));
        c.note_xfer(t0 + Duration::from_secs(2));
        let d2 = c.deadline(&p, &mut rng).unwrap();
        assert!(
            d2 >= t0 + Duration::from_millis(3500) && d2 < t0 + Duration::from_millis(11_500),
            "{d2:?}"
        );
        let draws: std::collections::BTreeSet<Instant> = (0..20)
            .map(|_| {
                c.note_xfer(t0 + Duration::from_secs(2));
                c.deadline(&p, &mut rng).unwrap()
            })
            .collect();
        assert!(draws.len() > 10, "a new draw after each cell");
        // A client asking for 20-30 s gets them; one asking for less than
        // the consensus gets the consensus.
        c.negotiate(true, 20_000, 30_000, &p);
        let d = c.deadline(&p, &mut rng).unwrap();
        let base = t0 + Duration::from_secs(2);
        assert!(d >= base + Duration::from_secs(20) && d < base + Duration::from_secs(30));
        c.negotiate(true, 10, 20, &p);
        let d = c.deadline(&p, &mut rng).unwrap();
        assert!(d >= base + Duration::from_millis(1500) && d < base + Duration::from_millis(9500));
        c.padded(base + Duration::from_secs(5));
        assert!(c.deadline(&p, &mut rng).unwrap() >= base + Duration::from_millis(6500));
    }
}
