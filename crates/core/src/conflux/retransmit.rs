//! The retransmit buffer of a resumable set (Braid proposal 001 §3.2,
//! prop 329 §2.7): every sequenced message sent and not yet acknowledged,
//! with its absolute sequence number, so that a leg that dies with data in
//! flight can be replaced and the peer given what it lacks.
//!
//! Acknowledgement is per leg: circuits are in order, and a circuit SENDME
//! acknowledges DATA cells (proposal 324: one SENDME every `sendme_inc`
//! DATA cells, end to end). When the driver reports that `n` DATA cells of
//! a leg are acknowledged, everything sent on that leg up to and including
//! the `n`-th DATA cell has reached the peer, and is dropped here. Other
//! sequenced messages (CONNECTED, END, XON, ...) are covered by the next
//! acknowledged DATA cell behind them.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tor_cell::relaycell::msg::AnyRelayMsg;

use crate::ids::{LegId, StreamId};

/// Bytes a held message is charged besides its body (map entry, message).
const ENTRY_OVERHEAD: usize = 96;
/// A relay message body at most (tor-spec §6.1).
const BODY_MAX: usize = 498;

/// The bounds of resumption (Braid proposal 001 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeParams {
    /// Bytes the retransmit buffer may hold: past it no new DATA is sent
    /// until acknowledgements free room (nothing unacknowledged is ever
    /// dropped). Default 2 MiB; at least 64 KiB.
    pub buffer_bytes: usize,
    /// How long a set may live without a linked leg. Default 30 s.
    pub grace: Duration,
    /// Resumptions allowed within one minute. Default 3.
    pub per_minute: usize,
    /// Resumptions allowed in the set's life. Default 20.
    pub total: usize,
    /// Probing legs that go silent (Braid proposal 001 §3.6), offered with
    /// the PROBE extension; `None`: neither offered nor done.
    pub probe: Option<ProbeParams>,
}

impl Default for ResumeParams {
    fn default() -> Self {
        Self {
            buffer_bytes: 2 * 1024 * 1024,
            grace: Duration::from_secs(30),
            per_minute: 3,
            total: 20,
            probe: Some(ProbeParams::default()),
        }
    }
}

/// When a silent leg is probed and when it is given up (Braid proposal
/// 001 §3.6). Each is at least a multiple of the leg's link RTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeParams {
    /// Something went out on a leg and nothing came back on it for this
    /// long (and twice its RTT): a LEG_PING goes. Default 3 s.
    pub quiet: Duration,
    /// The LEG_PING has had no answer, nor anything else, for this long
    /// (and four times the leg's RTT): the leg is lost. Default 10 s.
    pub lost: Duration,
}

impl Default for ProbeParams {
    fn default() -> Self {
        Self {
            quiet: Duration::from_secs(3),
            lost: Duration::from_secs(10),
        }
    }
}

/// One message kept for resending.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// Its stream.
    pub(crate) stream: Option<StreamId>,
    /// The message.
    pub(crate) msg: AnyRelayMsg,
    /// Its charge in [`Retransmit::bytes`].
    cost: usize,
}

/// What was sent on one leg, in order, for acknowledgement.
#[derive(Debug, Default)]
struct LegLog {
    /// Absolute sequence numbers sent on the leg, with whether each was
    /// DATA, not yet known to have arrived.
    sent: VecDeque<(u64, bool)>,
    /// DATA cells of the leg acknowledged so far (as last reported).
    acked: u64,
    /// DATA cells of the leg sent so far.
    data_sent: u64,
    /// Its congestion window (cells) as last reported.
    cwnd: u64,
}

/// The retransmit buffer. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Retransmit {
    params: ResumeParams,
    /// Unacknowledged messages by absolute sequence number.
    held: BTreeMap<u64, Held>,
    /// Per leg, what it carried.
    legs: BTreeMap<LegId, LegLog>,
    /// Bytes charged for `held`.
    bytes: usize,
    /// The most `bytes` ever was.
    peak: usize,
    /// The congestion windows (cells) of the legs gone whose messages
    /// may still be held: until a resumption has resent them.
    lost_cwnd: BTreeMap<LegId, u64>,
    /// At the peak, what the legs' congestion windows allowed: the sum
    /// of the windows of the legs holding messages (lost ones included),
    /// each cell charged as a full one (Braid proposal 001 §3.2's bound).
    peak_bound: usize,
    /// When resumptions happened (the last minute's).
    recent: VecDeque<Instant>,
    /// Resumptions in the set's life.
    total: usize,
}

impl Retransmit {
    /// An empty buffer bounded by `params`.
    pub(crate) fn new(params: ResumeParams) -> Self {
        Self {
            params: ResumeParams {
                buffer_bytes: params.buffer_bytes.max(64 * 1024),
                ..params
            },
            held: BTreeMap::new(),
            legs: BTreeMap::new(),
            bytes: 0,
            peak: 0,
            lost_cwnd: BTreeMap::new(),
            peak_bound: 0,
            recent: VecDeque::new(),
            total: 0,
        }
    }

    /// The bounds.
    pub(crate) fn params(&self) -> &ResumeParams {
        &self.params
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The most bytes ever held.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// What the congestion windows allowed at the peak ([`Self::peak`]):
    /// the sum of the windows of the legs that held messages then (lost
    /// legs awaiting their resend included), a full cell's charge each.
    pub(crate) fn peak_bound(&self) -> usize {
        self.peak_bound
    }

    /// The congestion windows' allowance now (see [`Self::peak_bound`]).
    fn cwnd_bound(&self) -> usize {
        let cells: u64 =
            self.legs.values().map(|l| l.cwnd).sum::<u64>() + self.lost_cwnd.values().sum::<u64>();
        usize::try_from(cells)
            .unwrap_or(usize::MAX)
            .saturating_mul(ENTRY_OVERHEAD + BODY_MAX)
    }

    /// Forget everything held (the set closed: nothing will be resent),
    /// its charge with it.
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.legs.clear();
        self.lost_cwnd.clear();
        self.bytes = 0;
    }

    /// Messages held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no more DATA may be sent until acknowledgements come.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= self.params.buffer_bytes
    }

    /// Keep message `seq`, sent on `leg`.
    pub(crate) fn record(
        &mut self,
        leg: LegId,
        seq: u64,
        stream: Option<StreamId>,
        msg: &AnyRelayMsg,
    ) {
        let is_data = matches!(msg, AnyRelayMsg::Data(_));
        let cost = ENTRY_OVERHEAD
            + match msg {
                AnyRelayMsg::Data(d) => d.as_ref().len(),
                _ => BODY_MAX,
            };
        let log = self.legs.entry(leg).or_default();
        log.sent.push_back((seq, is_data));
        if is_data {
            log.data_sent += 1;
        }
        if self
            .held
            .insert(
                seq,
                Held {
                    stream,
                    msg: msg.clone(),
                    cost,
                },
            )
            .is_none()
        {
            self.bytes += cost;
            if self.bytes > self.peak {
                self.peak = self.bytes;
                self.peak_bound = self.cwnd_bound();
            }
        }
    }

    /// `data_acked` DATA cells sent on `leg` are acknowledged (cumulative,
    /// as the leg's congestion control counts them: sent minus in flight),
    /// and its congestion window is `cwnd` cells (if it has one). Drops
    /// what the peer now has. Counts beyond what was sent are capped.
    pub(crate) fn acked(&mut self, leg: LegId, data_acked: u64, cwnd: Option<u64>) {
        if self.lost_cwnd.contains_key(&leg) {
            return;
        }
        // A new leg's window counts from before its first message.
        let log = self.legs.entry(leg).or_default();
        if let Some(c) = cwnd {
            log.cwnd = c;
        }
        let target = data_acked.min(log.data_sent);
        if target <= log.acked {
            return;
        }
        // Drop up to and including the `target`-th DATA cell.
        let mut n = log.acked;
        let mut freed = Vec::new();
        while n < target {
            let Some((seq, is_data)) = log.sent.pop_front() else {
                break;
            };
            freed.push(seq);
            if is_data {
                n += 1;
            }
        }
        log.acked = n;
        for seq in freed {
            if let Some(h) = self.held.remove(&seq) {
                self.bytes -= h.cost;
            }
        }
    }

    /// A leg is gone: what it carried stays held (the peer may lack it)
    /// but is no longer acknowledged through it. True if it carried
    /// messages not acknowledged (the peer may now have a gap).
    pub(crate) fn leg_gone(&mut self, leg: LegId) -> bool {
        let Some(log) = self.legs.remove(&leg) else {
            return false;
        };
        if log.sent.is_empty() {
            return false;
        }
        self.lost_cwnd.insert(leg, log.cwnd);
        true
    }

    /// Everything the legs gone carried and the peer lacked was resent on
    /// new legs (or freed): their windows bound nothing any more.
    pub(crate) fn resends_done(&mut self) {
        self.lost_cwnd.clear();
    }

    /// The peer has everything up to `seq` in order (its LINK or LINKED
    /// said so): drop what is held up to there. A lost leg's messages the
    /// peer had are freed here, as no acknowledgement will free them.
    pub(crate) fn forget_through(&mut self, seq: u64) {
        let keep = self.held.split_off(&(seq.saturating_add(1)));
        let gone = std::mem::replace(&mut self.held, keep);
        for h in gone.values() {
            self.bytes -= h.cost;
        }
    }

    /// The messages held among `after + 1 ..= upto`, in order: what a peer
    /// that has everything up to `after` in order may lack. The others were
    /// acknowledged: the peer has them, out of order (its reorder queue
    /// outlives legs).
    pub(crate) fn held_in(&self, after: u64, upto: u64) -> Vec<(u64, Held)> {
        if upto <= after {
            return Vec::new();
        }
        self.held
            .range(after + 1..=upto)
            .map(|(s, h)| (*s, h.clone()))
            .collect()
    }

    /// Whether `seq` is held.
    #[cfg(test)]
    pub(crate) fn holds(&self, seq: u64) -> bool {
        self.held.contains_key(&seq)
    }

    /// Whether a resumption at `now` is within the limits (§3.5).
    pub(crate) fn allows_resumption(&self, now: Instant) -> bool {
        let recent = self
            .recent
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < Duration::from_secs(60))
            .count();
        recent < self.params.per_minute && self.total < self.params.total
    }

    /// Count a resumption at `now`; false past the limits (§3.5).
    pub(crate) fn note_resumption(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.params.per_minute || self.total >= self.params.total {
            return false;
        }
        self.recent.push_back(now);
        self.total += 1;
        true
    }

    /// Resumptions so far.
    pub(crate) fn resumptions(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tor_cell::relaycell::msg::{Data, End, EndReason};

    use super::*;

    fn data(n: u8) -> AnyRelayMsg {
        Data::new(&[n; 100]).unwrap().into()
    }

    #[test]
    fn acknowledged_prefixes_of_each_leg_are_dropped() {
        let mut r = Retransmit::new(ResumeParams::default());
        let (a, b) = (LegId(0), LegId(1));
        let s = StreamId::new(1);
        // a: 1 DATA, 2 END, 4 DATA; b: 3 DATA, 5 DATA.
        r.record(a, 1, s, &data(1));
        r.record(a, 2, s, &End::new_with_reason(EndReason::DONE).into());
        r.record(b, 3, s, &data(3));
        r.record(a, 4, s, &data(4));
        r.record(b, 5, s, &data(5));
        assert_eq!(r.len(), 5);
        r.acked(a, 1, None);
        assert!(!r.holds(1), "1 is gone");
        assert!(r.holds(2), "the END behind it is kept");
        r.acked(a, 2, None);
        assert!(!r.holds(2) && !r.holds(4) && r.holds(5));
        assert!(r.holds(3), "b's 3 waits for b's acknowledgement");
        r.acked(b, 9, None);
        assert_eq!(r.len(), 0, "counts past what was sent are capped");
        assert_eq!(r.bytes(), 0);
        assert!(r.peak() > 0);
    }

    #[test]
    fn ranges_come_back_in_order() {
        let mut r = Retransmit::new(ResumeParams::default());
        for seq in 1..=6 {
            r.record(LegId(u8::try_from(seq % 2).unwrap()), seq, None, &data(0));
        }
        let got: Vec<u64> = r.held_in(2, 6).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, [3, 4, 5, 6]);
        assert!(r.held_in(6, 6).is_empty());
        r.leg_gone(LegId(0));
        assert_eq!(r.held_in(0, 6).len(), 6, "a dead leg's messages stay");
        // Acknowledged through leg 1 (3 and 5): only 4 and 6 of leg 0
        // would be resent, with the numbers they had.
        r.acked(LegId(1), 3, None);
        let got: Vec<u64> = r.held_in(2, 6).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, [4, 6]);
    }

    #[test]
    fn the_peak_is_reported_with_the_windows_that_allowed_it() {
        let mut r = Retransmit::new(ResumeParams::default());
        let (a, b) = (LegId(0), LegId(1));
        let cell = ENTRY_OVERHEAD + BODY_MAX;
        r.acked(a, 0, Some(10));
        r.acked(b, 0, Some(4));
        for seq in 1..=3 {
            r.record(a, seq, None, &data(0));
        }
        assert_eq!(r.peak(), 3 * 196);
        assert_eq!(r.peak_bound(), 14 * cell, "both legs' windows");
        // a dies holding 3; its window still bounds what is held until
        // the resends are done, and a new leg c adds its own.
        assert!(r.leg_gone(a));
        r.acked(a, 3, Some(99));
        assert_eq!(r.held_in(0, 3).len(), 3, "a gone leg acknowledges nothing");
        let c = LegId(2);
        r.acked(c, 0, Some(6));
        r.record(c, 4, None, &data(0));
        assert_eq!(r.peak(), 4 * 196);
        assert_eq!(r.peak_bound(), (10 + 4 + 6) * cell);
        r.resends_done();
        r.forget_through(3);
        r.record(c, 5, None, &data(0));
        r.record(c, 6, None, &data(0));
        r.record(c, 7, None, &data(0));
        assert_eq!(r.peak(), 4 * 196, "3 freed, 3 more held: no new peak");
        r.record(c, 8, None, &data(0));
        r.record(c, 9, None, &data(0));
        assert_eq!(r.peak(), 6 * 196);
        assert_eq!(
            r.peak_bound(),
            (4 + 6) * cell,
            "a's window no longer counts"
        );
    }

    #[test]
    fn full_at_the_bound_and_resumptions_limited() {
        let params = ResumeParams {
            buffer_bytes: 1,
            ..ResumeParams::default()
        };
        let mut r = Retransmit::new(params);
        assert_eq!(r.params().buffer_bytes, 64 * 1024, "at least 64 KiB");
        let mut seq = 0;
        while !r.is_full() {
            seq += 1;
            r.record(LegId(0), seq, None, &data(0));
        }
        assert_eq!(seq, (64 * 1024_u64).div_ceil(196));
        let t = Instant::now();
        assert!(r.note_resumption(t) && r.note_resumption(t) && r.note_resumption(t));
        assert!(!r.note_resumption(t), "3 a minute");
        assert!(r.note_resumption(t + Duration::from_secs(60)));
        assert_eq!(r.resumptions(), 4);
    }
}
