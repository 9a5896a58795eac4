//! Connection-level padding and the idle timeout of a client's channel
//! (padding-spec §2, proposal 251), as a sans-IO timer: the driver tells it
//! when a cell went out and how many circuits the channel has, asks
//! [`ChannelTimers::poll_timeout`] when to wake, and on
//! [`ChannelTimers::handle_timeout`] learns whether to send one
//! CELL_PADDING or to close the channel.
//!
//! What C-tor 0.4.9 clients do, and so what Braid does so that its
//! channels look like theirs on the wire (`channelpadding.c`):
//! - padding is on for link protocol 5 and later without any negotiation
//!   (a client sends PADDING_NEGOTIATE only to reduce or disable it);
//! - a channel is padded once it has carried a full (CREATE2) circuit
//!   when `nf_pad_before_usage` is 1 (the default), never if it has only
//!   carried one-hop directory circuits;
//! - after each cell sent, the next padding cell is due after a timeout
//!   drawn from max(X, X) with X uniform in `nf_ito_low..nf_ito_high` ms
//!   (1500..9500 by default, padding-spec §2.3), so an idle channel sends
//!   a CELL_PADDING about every 5.5 s and never stays silent past the
//!   routers' 10 s inactive-flow timeout;
//! - a client channel without circuits closes after 180 to 270 s
//!   (`channelpadding_get_channel_idle_timeout`, CHANNEL_IS_CLIENT).

use std::time::{Duration, Instant};

use rand::{Rng, RngExt};

use crate::cc::params::ParamSource;

/// The lowest link protocol that pads (C-tor's
/// MIN_LINK_PROTO_FOR_CHANNEL_PADDING).
pub const MIN_LINK_PROTO_FOR_PADDING: u16 = 5;
/// The most any padding timeout may be, in ms (C-tor's
/// DFLT_NETFLOW_INACTIVE_KEEPALIVE_MAX).
const ITO_MAX_MS: i32 = 60_000;
/// A client channel without circuits lives this long at least...
const IDLE_BASE: Duration = Duration::from_secs(180);

/// The consensus parameters of connection padding (padding-spec §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaddingParams {
    /// `nf_ito_low`, ms (1500).
    pub ito_low_ms: u32,
    /// `nf_ito_high`, ms (9500), at least `ito_low_ms`.
    pub ito_high_ms: u32,
    /// `nf_pad_before_usage` (1): pad a channel that has carried a full
    /// circuit before any application data.
    pub pad_before_usage: bool,
    /// `nf_pad_relays` (0): a relay pads its channels to relays too, not
    /// only those to clients.
    pub pad_relays: bool,
    /// `nf_conntimeout_relays`, seconds (3600): a relay closes a channel to
    /// another relay after 3/4 to 5/4 of this without circuits.
    pub conntimeout_relays_secs: u32,
}

impl Default for PaddingParams {
    fn default() -> Self {
        Self {
            ito_low_ms: 1500,
            ito_high_ms: 9500,
            pad_before_usage: true,
            pad_relays: false,
            conntimeout_relays_secs: 3600,
        }
    }
}

impl PaddingParams {
    /// From a consensus, with C-tor's defaults and ranges.
    pub fn from_consensus(params: &(impl ParamSource + ?Sized)) -> Self {
        let low = params
            .param("nf_ito_low")
            .unwrap_or(1500)
            .clamp(0, ITO_MAX_MS);
        let high = params
            .param("nf_ito_high")
            .unwrap_or(9500)
            .clamp(low, ITO_MAX_MS);
        let before = params.param("nf_pad_before_usage").unwrap_or(1).clamp(0, 1);
        let relays = params.param("nf_pad_relays").unwrap_or(0).clamp(0, 1);
        let conntimeout = params
            .param("nf_conntimeout_relays")
            .unwrap_or(3600)
            .clamp(60, 604_800);
        Self {
            ito_low_ms: u32::try_from(low).unwrap_or(1500),
            ito_high_ms: u32::try_from(high).unwrap_or(9500),
            pad_before_usage: before == 1,
            pad_relays: relays == 1,
            conntimeout_relays_secs: u32::try_from(conntimeout).unwrap_or(3600),
        }
    }

    /// No padding at all (`nf_ito_low` = `nf_ito_high` = 0).
    pub fn disabled(&self) -> bool {
        self.ito_low_ms == 0 && self.ito_high_ms == 0
    }

    /// One padding timeout: `low` + max(X, X), X uniform in 0..high-low
    /// (padding-spec §2.3); `low` when the range is empty.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let range = self.ito_high_ms.saturating_sub(self.ito_low_ms);
        let extra = if range == 0 {
            0
        } else {
            let x1 = rng.random_range(0..range);
            let x2 = rng.random_range(0..range);
            x1.max(x2)
        };
        Duration::from_millis(u64::from(self.ito_low_ms) + u64::from(extra))
    }
}

/// What a timeout asks the driver to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Nothing is due yet.
    None,
    /// Send one CELL_PADDING now (then report it with
    /// [`ChannelTimers::note_sent`] like any cell).
    SendPadding,
    /// The channel has had no circuit for its idle timeout: close it.
    CloseIdle,
}

/// The padding and idle timers of one open client channel.
#[derive(Clone, Debug)]
pub struct ChannelTimers {
    params: PaddingParams,
    /// Link protocol 5 or later.
    link_pads: bool,
    /// A full (multi-hop) circuit has used the channel.
    full_circuit_seen: bool,
    /// When the next padding cell is due, if padding is active.
    next_padding: Option<Instant>,
    /// Since when the channel has had no circuit, and when it closes.
    idle_deadline: Option<Instant>,
    /// The drawn idle timeout (180-270 s), kept for the channel's life.
    idle_timeout: Duration,
    /// Padding cells asked for.
    padding_sent: u64,
}

impl ChannelTimers {
    /// Timers for a channel opened `now` with link protocol `link` and no
    /// circuit yet (so its idle timeout starts now).
    pub fn new<R: Rng + ?Sized>(
        params: PaddingParams,
        link: u16,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        let idle_timeout =
            IDLE_BASE + Duration::from_secs(rng.random_range(0..IDLE_BASE.as_secs() / 2));
        Self {
            params,
            link_pads: link >= MIN_LINK_PROTO_FOR_PADDING,
            full_circuit_seen: false,
            next_padding: None,
            idle_deadline: now.checked_add(idle_timeout),
            idle_timeout,
            padding_sent: 0,
        }
    }

    /// The idle timeout drawn for this channel.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Padding cells asked for so far.
    pub fn padding_sent(&self) -> u64 {
        self.padding_sent
    }

    /// True if this channel pads now.
    pub fn padding_active(&self) -> bool {
        self.link_pads
            && !self.params.disabled()
            && self.full_circuit_seen
            && self.params.pad_before_usage
    }

    /// A full (CREATE2, multi-hop) circuit was opened on the channel.
    pub fn note_full_circuit<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        if !self.full_circuit_seen {
            self.full_circuit_seen = true;
            self.note_sent(now, rng);
        }
    }

    /// A cell (of any kind) went out at `now`: the padding timer restarts
    /// (padding-spec §2.2).
    pub fn note_sent<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        self.next_padding = if self.padding_active() {
            now.checked_add(self.params.sample(rng))
        } else {
            None
        };
    }

    /// The channel now has `circuits` circuits: with none, the idle timer
    /// runs from `now` (if it was not already running); with some, it
    /// stops.
    pub fn note_circuits(&mut self, circuits: usize, now: Instant) {
        if circuits > 0 {
            self.idle_deadline = None;
        } else if self.idle_deadline.is_none() {
            self.idle_deadline = now.checked_add(self.idle_timeout);
        }
    }

    /// When the driver must call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_padding, self.idle_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What is due at `now`. Closing wins over padding.
    pub fn handle_timeout<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> TimerAction {
        if self.idle_deadline.is_some_and(|t| now >= t) {
            return TimerAction::CloseIdle;
        }
        if self.next_padding.is_some_and(|t| now >= t) {
            self.padding_sent += 1;
            self.note_sent(now, rng);
            return TimerAction::SendPadding;
        }
        TimerAction::None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn timers(link: u16) -> (ChannelTimers, Instant, StdRng) {
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        (
            ChannelTimers::new(PaddingParams::default(), link, t0, &mut rng),
            t0,
            rng,
        )
    }

    #[test]
    fn consensus_parameters_are_clamped_like_c_tor() {
        let p: BTreeMap<String, i32> = [("nf_ito_low", 3000), ("nf_ito_high", 1000)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let p = PaddingParams::from_consensus(&p);
        assert_eq!((p.ito_low_ms, p.ito_high_ms), (3000, 3000));
        let p: BTreeMap<String, i32> = [
            ("nf_ito_low", 0),
            ("nf_ito_high", 0),
            ("nf_pad_before_usage", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let p = PaddingParams::from_consensus(&p);
        assert!(p.disabled());
        assert!(!p.pad_before_usage);
        assert_eq!(
            PaddingParams::from_consensus(&BTreeMap::new()),
            PaddingParams::default()
        );
    }

    #[test]
    fn the_timeout_distribution_has_the_specs_mean() {
        // padding-spec §2.3: R = 8000, Exp[max(X, X)] = 5332.8, plus low.
        let p = PaddingParams::default();
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let total: u128 = (0..n).map(|_| p.sample(&mut rng).as_millis()).sum();
        let mean = total as f64 / f64::from(n);
        assert!((mean - (1500.0 + 5332.8)).abs() < 60.0, "{mean}");
    }

    #[test]
    fn no_padding_before_a_full_circuit_nor_on_link_4() {
        let (mut t, t0, mut rng) = timers(5);
        t.note_sent(t0, &mut rng);
        assert!(!t.padding_active());
        // Only the idle timer runs.
        assert_eq!(t.poll_timeout(), Some(t0 + t.idle_timeout()));
        let (mut t4, t0, mut rng) = timers(4);
        t4.note_full_circuit(t0, &mut rng);
        assert!(!t4.padding_active());
    }

    #[test]
    fn an_idle_channel_pads_within_the_range_and_a_sent_cell_resets_it() {
        let (mut t, t0, mut rng) = timers(5);
        t.note_circuits(1, t0);
        t.note_full_circuit(t0, &mut rng);
        let due = t.poll_timeout().unwrap();
        let wait = due - t0;
        assert!(wait >= Duration::from_millis(1500) && wait < Duration::from_millis(9500));
        // Nothing before it is due.
        assert_eq!(
            t.handle_timeout(due - Duration::from_millis(1), &mut rng),
            TimerAction::None
        );
        // A cell sent in between pushes it back.
        let sent = t0 + Duration::from_millis(1000);
        t.note_sent(sent, &mut rng);
        assert!(t.poll_timeout().unwrap() >= sent + Duration::from_millis(1500));
        // An idle minute: padding every 1.5-9.5 s, never a gap over 9.5 s.
        let mut now = sent;
        let mut pads = 0;
        while now < sent + Duration::from_secs(60) {
            let next = t.poll_timeout().unwrap();
            assert!(next - now <= Duration::from_millis(9500));
            now = next;
            assert_eq!(t.handle_timeout(now, &mut rng), TimerAction::SendPadding);
            pads += 1;
        }
        assert_eq!(t.padding_sent(), pads);
        assert!((6..=40).contains(&pads), "{pads}");
    }

    #[test]
    fn a_channel_without_circuits_closes_after_its_idle_timeout() {
        let (mut t, t0, mut rng) = timers(5);
        let idle = t.idle_timeout();
        assert!(idle >= Duration::from_secs(180) && idle < Duration::from_secs(270));
        t.note_circuits(2, t0);
        t.note_full_circuit(t0, &mut rng);
        // With circuits, only padding is due, for as long as it lasts.
        let late = t0 + Duration::from_secs(3600);
        assert_eq!(t.handle_timeout(late, &mut rng), TimerAction::SendPadding);
        // The last circuit closes: the channel closes after `idle`,
        // padding until then.
        t.note_circuits(0, late);
        let end = late + idle;
        assert_eq!(
            t.handle_timeout(end - Duration::from_millis(1), &mut rng),
            TimerAction::SendPadding
        );
        assert_eq!(t.handle_timeout(end, &mut rng), TimerAction::CloseIdle);
        // A new circuit in time stops the idle timer.
        t.note_circuits(1, end);
        assert_ne!(
            t.handle_timeout(end + idle, &mut rng),
            TimerAction::CloseIdle
        );
    }

    proptest! {
        #[test]
        fn timeouts_stay_in_range(low in 0_i32..70_000, high in 0_i32..70_000, seed: u64) {
            let p: BTreeMap<String, i32> = [("nf_ito_low", low), ("nf_ito_high", high)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let p = PaddingParams::from_consensus(&p);
            let mut rng = StdRng::seed_from_u64(seed);
            let d = p.sample(&mut rng);
            prop_assert!(d >= Duration::from_millis(u64::from(p.ito_low_ms)));
            prop_assert!(d <= Duration::from_millis(u64::from(p.ito_high_ms)));
            prop_assert!(d <= Duration::from_millis(60_000));
        }
    }
}
