//! TOR_VEGAS congestion control (proposal 324 §3.3), as C-tor 0.4.9 runs it.
//!
//! One [`Vegas`] controls the DATA cells one endpoint sends on one circuit
//! hop (for a client: the exit hop). The driver calls
//! [`Vegas::can_send`] before sending a DATA cell, [`Vegas::on_data_sent`]
//! after, and [`Vegas::on_sendme_received`] for each circuit-level SENDME
//! (after checking its tag with [`super::sendme::SendmeTags`]). It tells the
//! controller when the circuit's channel is blocked
//! ([`Vegas::set_blocked_on_channel`]), which Vegas treats as a congestion
//! signal (§3.3: C-tor declares a channel blocked when the circuit's cell
//! queue for it exceeds `cellq_high`).
//!
//! The algorithm, once per SENDME:
//! - RTT sample (§2.1) and, unless the clock looks stalled or jumped,
//!   a BDP estimate from the congestion window: `BDP = cwnd · RTT_min /
//!   RTT_ewma` (§3.1.2);
//! - `queue_use = cwnd − BDP`;
//! - in slow start: grow by the RFC 3742 limited slow start increment
//!   while `queue_use < gamma`, the channel is not blocked and the window is
//!   full; otherwise leave slow start with `cwnd = BDP + gamma`; never above
//!   `cc_ss_max`;
//! - after slow start, once per `CWND_UPDATE_RATE` SENDMEs
//!   (`next_cc_event`): above `delta` drop to `BDP + delta − inc`, above
//!   `beta` (or blocked) shrink by `cc_cwnd_inc`, below `alpha` with a full
//!   window grow by `cc_cwnd_inc`;
//! - cwnd stays within `[cc_cwnd_min, cc_cwnd_max]`.
//!
//! Differences from C-tor, all on paths the network does not exercise with
//! its parameters: arithmetic saturates where C-tor's unsigned arithmetic
//! would wrap (`cwnd − cc_cwnd_inc` with a huge `cc_cwnd_inc`), and the
//! `cc_cwnd_min` floor also applies in slow start, so that cwnd is always
//! within its bounds.

use std::time::{Duration, Instant};

use super::error::{CcError, WindowKind};
use super::params::{CcParams, CcPath, VegasThresholds};
use super::rtt::{RttContext, RttEstimator, RttSample};

/// TOR_VEGAS state of one circuit hop.
#[derive(Debug, Clone)]
pub struct Vegas {
    /// Cells acknowledged by one SENDME (negotiated for this circuit).
    sendme_inc: u64,
    /// `cc_cwnd_min`.
    cwnd_min: u64,
    /// `cc_cwnd_max` (never below `cwnd_min`).
    cwnd_max: u64,
    /// `cc_cwnd_inc`.
    cwnd_inc: u64,
    /// `cc_cwnd_inc_pct_ss`.
    cwnd_inc_pct_ss: u64,
    /// `cc_cwnd_inc_rate`.
    cwnd_inc_rate: u64,
    /// `cc_ss_max`.
    ss_max: u64,
    /// `cc_cwnd_full_gap`.
    full_gap: u64,
    /// `cc_cwnd_full_minpct`.
    full_minpct: u64,
    /// `cc_cwnd_full_per_cwnd`.
    full_per_cwnd: bool,
    /// alpha, beta, gamma, delta, ss_cap for this path.
    th: VegasThresholds,

    /// Congestion window, cells.
    cwnd: u64,
    /// DATA cells sent and not yet acknowledged by a SENDME.
    inflight: u64,
    /// Last BDP estimate, cells.
    bdp: u64,
    /// SENDMEs until the next congestion window update (`next_cc_event`).
    next_cc_event: u64,
    /// SENDMEs until a full cwnd has been acknowledged (`next_cwnd_event`).
    next_cwnd_event: u64,
    /// In slow start.
    in_slow_start: bool,
    /// The window was full since the last reset.
    cwnd_full: bool,
    /// The channel was blocked at the last SENDME (C-tor `blocked_chan`).
    blocked_chan: bool,
    /// The driver's latest word: the channel is blocked now.
    chan_blocked_now: bool,
    /// The driver's latest word: cells of this circuit queued for the channel.
    chan_queue_cells: u64,
    /// RTT estimator holding one send time per outstanding SENDME.
    rtt: RttEstimator,
}

impl Vegas {
    /// A new controller in slow start, for a circuit whose negotiated
    /// SENDME increment is `sendme_inc` (from the ntor-v3 congestion
    /// control extension; a value of 0 is treated as 1).
    pub fn new(params: &CcParams, path: CcPath, sendme_inc: u8) -> Self {
        let sendme_inc = u64::from(sendme_inc.max(1));
        let cwnd_min = u64::from(params.cwnd_min);
        let cwnd_max = u64::from(params.effective_cwnd_max());
        let cwnd = u64::from(params.cwnd_init).clamp(cwnd_min, cwnd_max);
        // One entry per outstanding SENDME; inflight never exceeds cwnd_max.
        let capacity = usize::try_from(cwnd_max / sendme_inc + 1).unwrap_or(usize::MAX);
        let mut v = Vegas {
            sendme_inc,
            cwnd_min,
            cwnd_max,
            cwnd_inc: u64::from(params.cwnd_inc),
            cwnd_inc_pct_ss: u64::from(params.cwnd_inc_pct_ss),
            cwnd_inc_rate: u64::from(params.cwnd_inc_rate.max(1)),
            ss_max: u64::from(params.ss_max),
            full_gap: u64::from(params.cwnd_full_gap),
            full_minpct: u64::from(params.cwnd_full_minpct),
            full_per_cwnd: params.cwnd_full_per_cwnd,
            th: params.vegas(path),
            cwnd,
            inflight: 0,
            bdp: 0,
            next_cc_event: 0,
            next_cwnd_event: 0,
            in_slow_start: true,
            cwnd_full: false,
            blocked_chan: false,
            chan_blocked_now: false,
            chan_queue_cells: 0,
            rtt: RttEstimator::new(params, capacity),
        };
        v.next_cc_event = v.cwnd_update_rate();
        v
    }

    /// True if a DATA cell may be sent now: `inflight < cwnd` (proposal
    /// 324 §3: cells cease being sent when `cwnd − inflight <= 0`).
    pub fn can_send(&self) -> bool {
        self.inflight < self.cwnd
    }

    /// DATA cells that may be sent now (`cwnd − inflight`, 0 if negative):
    /// the package window of a congestion-controlled circuit.
    pub fn send_window(&self) -> u64 {
        self.cwnd.saturating_sub(self.inflight)
    }

    /// True if the next DATA cell sent will make the peer send a SENDME,
    /// i.e. it is a multiple of `sendme_inc` cells since the last one
    /// acknowledged (C-tor `circuit_sent_cell_for_sendme`).
    pub fn next_cell_expects_sendme(&self) -> bool {
        (self.inflight + 1).is_multiple_of(self.sendme_inc)
    }

    /// A DATA cell was sent at `now`. Returns true if this cell makes the
    /// peer send a SENDME: the caller records its tag (proposal 289).
    ///
    /// Fails, a local error, if the window was closed.
    pub fn on_data_sent(&mut self, now: Instant) -> Result<bool, CcError> {
        if !self.can_send() {
            return Err(CcError::SendWindowClosed {
                kind: WindowKind::Circuit,
            });
        }
        let expects = self.next_cell_expects_sendme();
        if expects {
            self.rtt.expect_sendme(now)?;
        }
        self.inflight += 1;
        Ok(expects)
    }

    /// The driver reports whether the circuit's channel is blocked (its
    /// queue for this circuit is over `cellq_high`, or the socket will not
    /// take more), and how many of this circuit's cells wait for it. Read
    /// at the next SENDME (proposal 324 §3.3).
    pub fn set_blocked_on_channel(&mut self, blocked: bool, queued_cells: u64) {
        self.chan_blocked_now = blocked;
        self.chan_queue_cells = queued_cells;
    }

    /// A circuit-level SENDME arrived at `now` (its tag already checked).
    /// Updates RTT, BDP and cwnd (proposal 324 §3.3; C-tor
    /// `congestion_control_vegas_process_sendme`).
    ///
    /// A SENDME with nothing outstanding is the peer's protocol violation;
    /// the state is then unchanged.
    pub fn on_sendme_received(&mut self, now: Instant) -> Result<RttSample, CcError> {
        if self.rtt.pending() == 0 || self.inflight < self.sendme_inc {
            return Err(CcError::UnexpectedSendme {
                kind: WindowKind::Circuit,
            });
        }
        self.next_cc_event = self.next_cc_event.saturating_sub(1);
        self.next_cwnd_event = self.next_cwnd_event.saturating_sub(1);

        let ctx = RttContext {
            in_slow_start: self.in_slow_start,
            cwnd_update_rate: self.cwnd_update_rate(),
            at_cwnd_min: self.cwnd == self.cwnd_min,
        };
        let sample = self.rtt.on_sendme(now, ctx)?;

        // proposal 324 §2.1.1: no algorithm update on a stalled or jumped
        // clock (unless the channel signal gives a BDP anyway, as in C-tor).
        if self.update_bdp(sample.is_measured()) {
            self.update_cwnd();
        }
        self.inflight -= self.sendme_inc;
        self.cwnd = self.cwnd.clamp(self.cwnd_min, self.cwnd_max);
        Ok(sample)
    }

    /// BDP estimate (proposal 324 §3.1.2, C-tor
    /// `congestion_control_update_circuit_bdp`). Returns true if the
    /// algorithm should run this SENDME.
    fn update_bdp(&mut self, measured: bool) -> bool {
        let blocked = self.chan_blocked_now;
        let ewma = self.rtt.ewma_usec();
        if ewma == 0 {
            // The clock has never given a usable RTT: take cwnd (less what
            // waits on a blocked channel) as the BDP.
            let mut cwnd = self.cwnd;
            if blocked {
                cwnd = if self.chan_queue_cells >= cwnd {
                    self.cwnd_min
                } else {
                    (cwnd - self.chan_queue_cells).max(self.cwnd_min)
                };
            }
            self.blocked_chan = blocked;
            self.bdp = cwnd;
            return blocked;
        }
        let bdp = u128::from(self.cwnd) * u128::from(self.rtt.min_usec()) / u128::from(ewma);
        self.bdp = u64::try_from(bdp).unwrap_or(u64::MAX);

        // A change of the blocked state is an immediate congestion event
        // (still once per change).
        if blocked != self.blocked_chan {
            self.blocked_chan = blocked;
            self.next_cc_event = 0;
        }
        blocked || measured
    }

    /// The Vegas window update proper (proposal 324 §3.3 pseudocode).
    fn update_cwnd(&mut self) {
        let queue_use = self.cwnd.saturating_sub(self.bdp);

        if self.cwnd_became_full() {
            self.cwnd_full = true;
        } else if self.cwnd_became_nonfull() {
            self.cwnd_full = false;
        }

        if self.in_slow_start {
            if queue_use < u64::from(self.th.gamma) && !self.blocked_chan {
                // Grow only when the window is used.
                if self.cwnd_full {
                    let inc = self.ss_inc();
                    self.cwnd = self.cwnd.saturating_add(inc);
                    // Leave slow start once its increment is no more than
                    // the steady-state one over a cwnd.
                    if inc.saturating_mul(self.sendme_per_cwnd())
                        <= self.cwnd_inc.saturating_mul(self.cwnd_inc_rate)
                    {
                        self.in_slow_start = false;
                    }
                }
            } else {
                // Queue over gamma, or channel blocked: congestion signal.
                self.cwnd = self.bdp.saturating_add(u64::from(self.th.gamma));
                self.in_slow_start = false;
            }
            // Emergency hard maximum of slow start.
            if self.cwnd >= self.ss_max {
                self.cwnd = self.ss_max;
                self.in_slow_start = false;
            }
        } else if self.next_cc_event == 0 {
            if queue_use > u64::from(self.th.delta) {
                self.cwnd = self
                    .bdp
                    .saturating_add(u64::from(self.th.delta))
                    .saturating_sub(self.cwnd_inc);
            } else if queue_use > u64::from(self.th.beta) || self.blocked_chan {
                self.cwnd = self.cwnd.saturating_sub(self.cwnd_inc);
            } else if self.cwnd_full && queue_use < u64::from(self.th.alpha) {
                self.cwnd = self.cwnd.saturating_add(self.cwnd_inc);
            }
            self.cwnd = self.cwnd.max(self.cwnd_min);
        }
        self.cwnd = self.cwnd.clamp(self.cwnd_min, self.cwnd_max);

        if self.next_cwnd_event == 0 {
            self.next_cwnd_event = self.sendme_per_cwnd();
        }
        if self.next_cc_event == 0 {
            self.next_cc_event = self.cwnd_update_rate();
        }
        let reset = if self.full_per_cwnd {
            self.next_cwnd_event == self.sendme_per_cwnd()
        } else {
            self.next_cc_event == self.cwnd_update_rate()
        };
        if reset {
            self.cwnd_full = false;
        }
    }

    /// RFC 3742 limited slow start increment (proposal 324 §3.3
    /// `rfc3742_ss_inc`).
    fn ss_inc(&self) -> u64 {
        let cap = u64::from(self.th.ss_cap);
        if self.cwnd <= cap {
            (self.cwnd_inc_pct_ss * self.sendme_inc + 50) / 100
        } else {
            let cwnd = self.cwnd.max(1);
            (self.sendme_inc.saturating_mul(cap).saturating_add(cwnd) / (2 * cwnd)).max(1)
        }
    }

    /// `cwnd_is_full` (§3.3): inflight within `cc_cwnd_full_gap` SENDMEs of cwnd.
    fn cwnd_became_full(&self) -> bool {
        self.inflight
            .saturating_add(self.full_gap.saturating_mul(self.sendme_inc))
            >= self.cwnd
    }

    /// `cwnd_is_nonfull` (§3.3): inflight below `cc_cwnd_full_minpct` of cwnd.
    fn cwnd_became_nonfull(&self) -> bool {
        u128::from(self.inflight) * 100 < u128::from(self.full_minpct) * u128::from(self.cwnd)
    }

    /// `SENDME_PER_CWND` (§3.3): SENDMEs in a cwnd, rounded.
    fn sendme_per_cwnd(&self) -> u64 {
        (self.cwnd + self.sendme_inc / 2) / self.sendme_inc
    }

    /// `CWND_UPDATE_RATE` (§3.3): 1 in slow start, else SENDMEs per
    /// `cc_cwnd_inc_rate`-th of a cwnd, rounded (0 means every SENDME).
    fn cwnd_update_rate(&self) -> u64 {
        if self.in_slow_start {
            1
        } else {
            let unit = self.cwnd_inc_rate * self.sendme_inc;
            (self.cwnd + unit / 2) / unit
        }
    }

    /// Congestion window, cells.
    pub fn cwnd(&self) -> u64 {
        self.cwnd
    }

    /// DATA cells sent and not yet acknowledged.
    pub fn inflight(&self) -> u64 {
        self.inflight
    }

    /// Last BDP estimate, cells.
    pub fn bdp(&self) -> u64 {
        self.bdp
    }

    /// In slow start.
    pub fn in_slow_start(&self) -> bool {
        self.in_slow_start
    }

    /// The negotiated SENDME increment.
    pub fn sendme_inc(&self) -> u64 {
        self.sendme_inc
    }

    /// The lower and upper bounds of cwnd.
    pub fn cwnd_bounds(&self) -> (u64, u64) {
        (self.cwnd_min, self.cwnd_max)
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// Smoothed RTT, once measured (what Conflux schedulers compare).
    pub fn ewma_rtt(&self) -> Option<Duration> {
        self.rtt.ewma_rtt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A virtual clock and the SENDMEs on their way back to us.
    struct Clock {
        /// Now.
        now: Instant,
        /// When each expected SENDME will arrive, oldest first.
        pending: std::collections::VecDeque<Instant>,
    }

    impl Clock {
        fn new() -> Self {
            Clock {
                now: Instant::now(),
                pending: Default::default(),
            }
        }
    }

    fn params(v: &[(&str, i32)]) -> CcParams {
        let v: Vec<(String, i32)> = v.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        CcParams::from_consensus(v.as_slice())
    }

    /// Fill the window, then answer one SENDME per `sendme_inc` cells, the
    /// SENDME arriving `rtt(cwnd)` after the cell that triggered it; stop
    /// after `rounds` SENDMEs. Returns the cwnd after each SENDME.
    fn drive(
        v: &mut Vegas,
        clock: &mut Clock,
        rounds: usize,
        rtt: impl Fn(u64) -> Duration,
    ) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..rounds {
            while v.can_send() {
                clock.now += Duration::from_micros(10);
                if v.on_data_sent(clock.now).unwrap() {
                    clock.pending.push_back(clock.now + rtt(v.cwnd()));
                }
            }
            let Some(at) = clock.pending.pop_front() else {
                break;
            };
            clock.now = clock.now.max(at);
            v.on_sendme_received(clock.now).unwrap();
            out.push(v.cwnd());
        }
        out
    }

    #[test]
    fn initial_state() {
        let v = Vegas::new(&CcParams::default(), CcPath::Exit, 31);
        assert_eq!(v.cwnd(), 124);
        assert_eq!(v.inflight(), 0);
        assert!(v.in_slow_start());
        assert!(v.can_send());
        assert_eq!(v.send_window(), 124);
    }

    #[test]
    fn sendme_expected_every_inc_cells() {
        let mut v = Vegas::new(&CcParams::default(), CcPath::Exit, 31);
        let now = Instant::now();
        let flags: Vec<bool> = (0..124).map(|_| v.on_data_sent(now).unwrap()).collect();
        let expecting: Vec<usize> = flags
            .iter()
            .enumerate()
            .filter(|(_, f)| **f)
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(expecting, vec![31, 62, 93, 124]);
        assert!(!v.can_send());
        assert_eq!(
            v.on_data_sent(now),
            Err(CcError::SendWindowClosed {
                kind: WindowKind::Circuit
            })
        );
        assert_eq!(v.rtt().pending(), 4);
    }

    #[test]
    fn unexpected_sendme_leaves_state_alone() {
        let mut v = Vegas::new(&CcParams::default(), CcPath::Exit, 31);
        let now = Instant::now();
        assert!(matches!(
            v.on_sendme_received(now),
            Err(CcError::UnexpectedSendme { .. })
        ));
        for _ in 0..30 {
            v.on_data_sent(now).unwrap();
        }
        // 30 cells: no SENDME is due yet.
        assert!(v.on_sendme_received(now).is_err());
        assert_eq!(v.inflight(), 30);
    }

    #[test]
    fn slow_start_grows_with_constant_rtt() {
        let mut v = Vegas::new(&CcParams::default(), CcPath::Exit, 31);
        let mut clock = Clock::new();
        let cw = drive(&mut v, &mut clock, 40, |_| Duration::from_millis(50));
        // No queueing (RTT constant), so cwnd grows by 31 each SENDME
        // (cc_cwnd_inc_pct_ss 100 % of sendme_inc) up to the RFC 3742 cap.
        assert_eq!(cw.first().copied(), Some(124 + 31));
        assert!(cw.windows(2).all(|w| w[1] >= w[0]), "{cw:?}");
        assert!(v.cwnd() > 600, "grew past ss_cap: {}", v.cwnd());
    }

    #[test]
    fn slow_start_exits_on_queue_growth() {
        let mut v = Vegas::new(&CcParams::default(), CcPath::Exit, 31);
        let mut clock = Clock::new();
        // RTT = 50 ms base plus 0.5 ms per cell above 200 in the window:
        // a bottleneck queue.
        let rtt = |cwnd: u64| Duration::from_micros(50_000 + 500 * cwnd.saturating_sub(200));
        drive(&mut v, &mut clock, 60, rtt);
        assert!(!v.in_slow_start());
        // After the gamma exit, cwnd was set to BDP + gamma.
        assert!(v.cwnd() < 1000, "cwnd {}", v.cwnd());
    }

    #[test]
    fn slow_start_exits_when_channel_blocked() {
        let mut v = Vegas::new(&CcParams::default(), CcPath::Exit, 31);
        let mut clock = Clock::new();
        drive(&mut v, &mut clock, 3, |_| Duration::from_millis(50));
        assert!(v.in_slow_start());
        v.set_blocked_on_channel(true, 10);
        drive(&mut v, &mut clock, 1, |_| Duration::from_millis(50));
        assert!(!v.in_slow_start());
        // cwnd = BDP + gamma; BDP = cwnd (RTT constant).
        assert_eq!(v.cwnd(), v.bdp() + 186);
    }

    #[test]
    fn slow_start_capped_by_ss_max() {
        let p = params(&[("cc_ss_max", 500), ("cc_sscap_exit", 100000)]);
        let mut v = Vegas::new(&p, CcPath::Exit, 31);
        let mut clock = Clock::new();
        let cw = drive(&mut v, &mut clock, 50, |_| Duration::from_millis(20));
        assert!(!v.in_slow_start());
        // Slow start ended exactly at the cap; steady state then grows by
        // at most cc_cwnd_inc (1) per SENDME.
        let at = cw.iter().position(|&c| c == 500).unwrap();
        assert!(cw.get(..at).unwrap().iter().all(|&c| c < 500));
        assert!(v.cwnd() <= 500 + cw.len() as u64);
    }

    /// Leave slow start quickly (low ss_max), then examine steady state.
    fn steady(extra: &[(&str, i32)]) -> (Vegas, Clock) {
        // The proposal's steady state: +-31 cells once per cwnd.
        let mut kv = vec![
            ("cc_ss_max", 500),
            ("cc_cwnd_inc", 31),
            ("cc_cwnd_inc_rate", 1),
        ];
        kv.extend_from_slice(extra);
        let p = params(&kv);
        let mut v = Vegas::new(&p, CcPath::Exit, 31);
        let mut clock = Clock::new();
        drive(&mut v, &mut clock, 30, |_| Duration::from_millis(20));
        assert!(!v.in_slow_start());
        (v, clock)
    }

    #[test]
    fn steady_state_grows_below_alpha() {
        let (mut v, mut clock) = steady(&[]);
        let before = v.cwnd();
        // Constant RTT: BDP == cwnd, queue_use 0 < alpha: grow.
        drive(&mut v, &mut clock, 100, |_| Duration::from_millis(20));
        assert!(v.cwnd() > before, "{} -> {}", before, v.cwnd());
    }

    #[test]
    fn steady_state_settles_between_alpha_and_beta() {
        let (mut v, mut clock) = steady(&[]);
        // A bottleneck: BDP of 400 cells; every cell above it adds queue delay.
        // With min RTT 20 ms the RTT is 20 ms · cwnd / 400 above 400.
        let rtt = |cwnd: u64| Duration::from_micros(20_000 * cwnd.max(400) / 400);
        let cw = drive(&mut v, &mut clock, 2000, rtt);
        let tail = cw.get(cw.len().saturating_sub(100)..).unwrap_or_default();
        // queue_use = cwnd − BDP; alpha 186, beta 248 → cwnd around 586–648,
        // give or take an increment.
        for &c in tail {
            assert!(
                (400 + 186 - 62..=400 + 248 + 62).contains(&c),
                "cwnd {c}: {tail:?}"
            );
        }
    }

    #[test]
    fn steady_state_delta_drops_cwnd() {
        let (mut v, mut clock) = steady(&[
            ("cc_vegas_delta_exit", 100),
            ("cc_vegas_beta_exit", 50),
            ("cc_vegas_alpha_exit", 10),
        ]);
        let before = v.cwnd();
        assert!(before >= 400);
        // The path suddenly has a BDP of 100 cells: RTT scales with cwnd.
        let rtt = |cwnd: u64| Duration::from_micros(20_000 * cwnd.max(100) / 100);
        let cw = drive(&mut v, &mut clock, 200, rtt);
        // A delta event sets cwnd = BDP + delta − inc, well below where it was.
        assert!(cw.iter().any(|&c| c + 100 < before), "{cw:?}");
    }

    #[test]
    fn steady_state_shrinks_when_channel_blocked() {
        let (mut v, mut clock) = steady(&[]);
        let before = v.cwnd();
        v.set_blocked_on_channel(true, 50);
        drive(&mut v, &mut clock, 20, |_| Duration::from_millis(20));
        assert!(v.cwnd() < before, "{} -> {}", before, v.cwnd());
    }

    #[test]
    fn cwnd_never_below_min_nor_above_max() {
        let p = params(&[
            ("cc_cwnd_max", 600),
            ("cc_cwnd_min", 100),
            ("cc_cwnd_init", 100),
            ("cc_vegas_delta_exit", 0),
        ]);
        let mut v = Vegas::new(&p, CcPath::Exit, 31);
        let mut clock = Clock::new();
        let cw = drive(&mut v, &mut clock, 300, |_| Duration::from_millis(20));
        assert!(cw.iter().all(|&c| (100..=600).contains(&c)), "{cw:?}");
        assert_eq!(v.cwnd(), 600);
        // Now massive queueing: RTT grows 100× — cwnd drops, but not below min.
        let cw = drive(&mut v, &mut clock, 300, |c| {
            Duration::from_millis(20 * c / 10)
        });
        assert!(cw.iter().all(|&c| (100..=600).contains(&c)), "{cw:?}");
        assert!(cw.contains(&100), "{cw:?}");
    }

    #[test]
    fn stalled_clock_does_not_update_cwnd() {
        let mut v = Vegas::new(&CcParams::default(), CcPath::Exit, 31);
        let now = Instant::now();
        for _ in 0..124 {
            v.on_data_sent(now).unwrap();
        }
        // Every SENDME arrives at the same instant as the send: zero RTT.
        for _ in 0..4 {
            assert_eq!(v.on_sendme_received(now).unwrap(), RttSample::ClockStalled);
        }
        assert_eq!(v.cwnd(), 124);
        assert_eq!(v.inflight(), 0);
        assert!(v.rtt().clock_stalled());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send(u8),
        Sendme(u32),
        Block(bool, u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..=200).prop_map(Op::Send),
            (0u32..200_000).prop_map(Op::Sendme),
            (any::<bool>(), any::<u16>()).prop_map(|(b, q)| Op::Block(b, q)),
        ]
    }

    proptest! {
        /// For any sequence of sends, SENDMEs (expected or not, at any
        /// delay) and channel signals: cwnd stays within its bounds,
        /// inflight never underflows, and the expected-SENDME queue
        /// holds exactly inflight / sendme_inc entries, never more than
        /// cwnd_max / sendme_inc.
        #[test]
        fn invariants(
            ops in proptest::collection::vec(op(), 1..400),
            inc in 1u8..=64,
            cwnd_min in 31i32..=1000,
            cwnd_max in 500i32..=3000,
            init in 31i32..=10000,
        ) {
            let p = params(&[
                ("cc_cwnd_min", cwnd_min),
                ("cc_cwnd_max", cwnd_max),
                ("cc_cwnd_init", init),
                ("cc_sendme_inc", i32::from(inc)),
            ]);
            let mut v = Vegas::new(&p, CcPath::Exit, inc);
            let (lo, hi) = v.cwnd_bounds();
            let mut now = Instant::now();
            for op in ops {
                match op {
                    Op::Send(n) => {
                        for _ in 0..n {
                            now += Duration::from_micros(1);
                            let was_open = v.can_send();
                            let r = v.on_data_sent(now);
                            prop_assert_eq!(r.is_ok(), was_open);
                        }
                    }
                    Op::Sendme(us) => {
                        now += Duration::from_micros(u64::from(us));
                        let due = v.inflight() >= v.sendme_inc();
                        let r = v.on_sendme_received(now);
                        prop_assert_eq!(r.is_ok(), due);
                    }
                    Op::Block(b, q) => v.set_blocked_on_channel(b, u64::from(q)),
                }
                prop_assert!(v.cwnd() >= lo && v.cwnd() <= hi, "cwnd {} not in [{}, {}]", v.cwnd(), lo, hi);
                prop_assert_eq!(v.rtt().pending() as u64, v.inflight() / v.sendme_inc());
                prop_assert!(v.rtt().pending() as u64 <= hi / v.sendme_inc());
                prop_assert!(v.inflight() <= hi);
            }
        }
    }
}
