//! One direction of a leg: a bottleneck with a bounded queue, a
//! serialisation rate, a one-way delay, and loss modelled the way a TCP
//! connection shows it.
//!
//! A cell offered at `now` waits for the cells ahead of it, occupies the
//! link for `CELL_BYTES / bandwidth` (its serialisation time), then
//! propagates for `delay`. At most `queue_cells` cells may be waiting or
//! in serialisation; a full queue refuses data cells, which the sender
//! sees as its channel being blocked (C-tor's `circuit_blocked_on_n_chan`).
//!
//! Tor runs over TCP, so cells are never lost end to end. A cell "lost"
//! (probability `loss_ppm`) arrives `retx_penalty` late (the time TCP
//! takes to notice and retransmit), and optional jitter adds a uniform
//! `0..=jitter` per cell. Optional periodic stalls (a relay on the path
//! that stops forwarding for a while) hold every cell that would arrive
//! during the first `stall_for` of each `stall_period` until the stall
//! ends, when they arrive in a burst. The link delivers in order, like
//! TCP: a delayed cell holds back every cell behind it (head-of-line
//! blocking). The bandwidth a retransmission uses is not modelled.

use std::collections::VecDeque;
use std::time::Duration;

use crate::rng::SimRng;

/// Bytes of one cell on the wire (link protocol 4 and later: 4-byte
/// circuit id, command, 509-byte payload).
pub const CELL_BYTES: u64 = 514;

/// Application bytes in one full RELAY_DATA cell.
pub const DATA_BYTES: u64 = 498;

/// How one direction of a leg behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bottleneck bandwidth, bytes per second (0 is taken as 1).
    pub bandwidth: u64,
    /// Cells that may wait or be in serialisation (at least 1).
    pub queue_cells: u32,
    /// Probability that a cell is lost and retransmitted by TCP, parts per
    /// million.
    pub loss_ppm: u32,
    /// Extra delay of a lost cell.
    pub retx_penalty: Duration,
    /// Maximum of a uniform random extra delay per cell.
    pub jitter: Duration,
    /// Period of the stalls (zero: none).
    pub stall_period: Duration,
    /// Length of a stall, at the start of each period: nothing arrives.
    pub stall_for: Duration,
}

impl LinkConfig {
    /// A clean link: `bandwidth` bytes/s, `delay` one way, a queue of 256
    /// cells (C-tor's `cellq_high`), no loss, no jitter.
    pub fn new(bandwidth: u64, delay: Duration) -> Self {
        LinkConfig {
            delay,
            bandwidth,
            queue_cells: 256,
            loss_ppm: 0,
            retx_penalty: Duration::ZERO,
            jitter: Duration::ZERO,
            stall_period: Duration::ZERO,
            stall_for: Duration::ZERO,
        }
    }

    /// The same link with TCP loss: `loss_ppm` per cell, each loss costing
    /// `retx_penalty`.
    pub fn with_loss(self, loss_ppm: u32, retx_penalty: Duration) -> Self {
        LinkConfig {
            loss_ppm,
            retx_penalty,
            ..self
        }
    }

    /// The same link with per-cell jitter up to `jitter`.
    pub fn with_jitter(self, jitter: Duration) -> Self {
        LinkConfig { jitter, ..self }
    }

    /// The same link stalling for `stall_for` at the start of every
    /// `period` (virtual time from the start of the run).
    pub fn with_stalls(self, period: Duration, stall_for: Duration) -> Self {
        LinkConfig {
            stall_period: period,
            stall_for: stall_for.min(period),
            ..self
        }
    }

    /// When a cell that would arrive at `at` arrives given the stalls.
    pub fn after_stalls(&self, at: Duration) -> Duration {
        let period = self.stall_period.as_nanos();
        if period == 0 || self.stall_for.is_zero() {
            return at;
        }
        let phase = at.as_nanos() % period;
        let stall = self.stall_for.as_nanos();
        if phase < stall {
            let wait = u64::try_from(stall - phase).unwrap_or(u64::MAX);
            at.saturating_add(Duration::from_nanos(wait))
        } else {
            at
        }
    }

    /// The same link with a queue of `cells`.
    pub fn with_queue(self, cells: u32) -> Self {
        LinkConfig {
            queue_cells: cells,
            ..self
        }
    }

    /// Time one cell occupies the link.
    pub fn cell_time(&self) -> Duration {
        let ns = u128::from(CELL_BYTES) * 1_000_000_000 / u128::from(self.bandwidth.max(1));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Cells per second.
    pub fn cells_per_sec(&self) -> f64 {
        self.bandwidth as f64 / CELL_BYTES as f64
    }

    /// The longest a cell accepted by this link can take to arrive: a full
    /// queue ahead of it, its own serialisation, the delay, a loss penalty,
    /// the largest jitter and a whole stall.
    pub fn worst_case_latency(&self) -> Duration {
        self.cell_time()
            .saturating_mul(self.queue_cells.max(1))
            .saturating_add(self.delay)
            .saturating_add(self.retx_penalty)
            .saturating_add(self.jitter)
            .saturating_add(self.stall_for)
    }
}

/// Counters of one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Cells carried.
    pub cells: u64,
    /// Cells that were "lost" and arrived `retx_penalty` late.
    pub retransmitted: u64,
    /// Most cells ever waiting or in serialisation.
    pub peak_queue: u64,
}

/// One direction of a leg, with its state.
#[derive(Debug, Clone)]
pub struct Link {
    /// Its behaviour.
    cfg: LinkConfig,
    /// Its own random stream.
    rng: SimRng,
    /// When the link finishes serialising the last accepted cell.
    busy_until: Duration,
    /// Serialisation end times of the cells still queued, oldest first.
    queued: VecDeque<Duration>,
    /// Arrival time of the last accepted cell (in-order delivery).
    last_arrival: Duration,
    /// Counters.
    stats: LinkStats,
}

impl Link {
    /// A link with config `cfg` drawing from `rng`.
    pub fn new(cfg: LinkConfig, rng: SimRng) -> Self {
        Link {
            cfg,
            rng,
            busy_until: Duration::ZERO,
            queued: VecDeque::new(),
            last_arrival: Duration::ZERO,
            stats: LinkStats::default(),
        }
    }

    /// Its config.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Its counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Forget cells that finished serialising by `now`.
    fn drain(&mut self, now: Duration) {
        while self.queued.front().is_some_and(|t| *t <= now) {
            self.queued.pop_front();
        }
    }

    /// Cells waiting or in serialisation at `now`.
    pub fn queue_len(&mut self, now: Duration) -> u64 {
        self.drain(now);
        u64::try_from(self.queued.len()).unwrap_or(u64::MAX)
    }

    /// True if a data cell offered at `now` would be accepted.
    pub fn has_room(&mut self, now: Duration) -> bool {
        self.queue_len(now) < u64::from(self.cfg.queue_cells.max(1))
    }

    /// When the oldest queued cell leaves the queue (room appears), if the
    /// queue is not empty.
    pub fn next_departure(&self) -> Option<Duration> {
        self.queued.front().copied()
    }

    /// Offer a data cell at `now`: its arrival time, or `None` (nothing
    /// changes) if the queue is full.
    pub fn try_send(&mut self, now: Duration) -> Option<Duration> {
        if !self.has_room(now) {
            return None;
        }
        Some(self.send(now))
    }

    /// Send a cell at `now` whatever the queue holds (SENDMEs and other
    /// control cells, which a real sender never holds back); its arrival
    /// time.
    pub fn send(&mut self, now: Duration) -> Duration {
        self.drain(now);
        let start = self.busy_until.max(now);
        let done = start.saturating_add(self.cfg.cell_time());
        self.busy_until = done;
        self.queued.push_back(done);
        self.stats.cells += 1;
        self.stats.peak_queue = self
            .stats
            .peak_queue
            .max(u64::try_from(self.queued.len()).unwrap_or(u64::MAX));
        let mut arrival = done.saturating_add(self.cfg.delay);
        let jitter_ns = u64::try_from(self.cfg.jitter.as_nanos()).unwrap_or(u64::MAX);
        arrival = arrival.saturating_add(Duration::from_nanos(self.rng.up_to(jitter_ns)));
        if self.rng.chance_ppm(self.cfg.loss_ppm) {
            self.stats.retransmitted += 1;
            arrival = arrival.saturating_add(self.cfg.retx_penalty);
        }
        arrival = self.cfg.after_stalls(arrival);
        // TCP delivers in order.
        arrival = arrival.max(self.last_arrival);
        self.last_arrival = arrival;
        arrival
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn serialisation_and_delay() {
        // 514 000 bytes/s: one cell per ms.
        let cfg = LinkConfig::new(514_000, MS(10)).with_queue(3);
        assert_eq!(cfg.cell_time(), MS(1));
        let mut l = Link::new(cfg, SimRng::new(1));
        assert_eq!(l.try_send(MS(0)), Some(MS(11)));
        assert_eq!(l.try_send(MS(0)), Some(MS(12)));
        assert_eq!(l.try_send(MS(0)), Some(MS(13)));
        // Queue full until the first cell leaves at 1 ms.
        assert_eq!(l.try_send(MS(0)), None);
        assert_eq!(l.next_departure(), Some(MS(1)));
        assert_eq!(l.try_send(MS(1)), Some(MS(14)));
        // Control cells are never refused.
        assert_eq!(l.send(MS(1)), MS(15));
        assert_eq!(l.stats().cells, 5);
        assert_eq!(l.stats().peak_queue, 4);
        // Idle link: no queueing.
        assert_eq!(l.try_send(MS(100)), Some(MS(111)));
    }

    #[test]
    fn loss_is_delay_and_holds_back_later_cells() {
        let cfg = LinkConfig::new(514_000, MS(10)).with_loss(1_000_000, MS(50));
        let mut l = Link::new(cfg, SimRng::new(1));
        assert_eq!(l.send(MS(0)), MS(61));
        let cfg = LinkConfig { loss_ppm: 0, ..cfg };
        let mut clean = Link::new(cfg, SimRng::new(1));
        clean.last_arrival = MS(61);
        // In order: the next cell cannot overtake the delayed one.
        assert_eq!(clean.send(MS(0)), MS(61));
        assert_eq!(l.stats().retransmitted, 1);
    }

    #[test]
    fn jitter_keeps_order_and_bounds() {
        let cfg = LinkConfig::new(5_140_000, MS(10)).with_jitter(MS(20));
        let mut l = Link::new(cfg, SimRng::new(3));
        let mut last = Duration::ZERO;
        for i in 0..200u64 {
            let now = Duration::from_micros(i * 100);
            let a = l.send(now);
            assert!(a >= last);
            assert!(a <= now + cfg.worst_case_latency(), "{a:?}");
            last = a;
        }
    }

    #[test]
    fn stalls_hold_arrivals_until_they_end() {
        // 100 ms stall every second; one cell per ms, 10 ms delay.
        let cfg = LinkConfig::new(514_000, MS(10)).with_stalls(MS(1000), MS(100));
        assert_eq!(cfg.after_stalls(MS(950)), MS(950));
        assert_eq!(cfg.after_stalls(MS(1000)), MS(1100));
        assert_eq!(cfg.after_stalls(MS(1042)), MS(1100));
        assert_eq!(cfg.after_stalls(MS(1100)), MS(1100));
        assert_eq!(cfg.after_stalls(MS(5)), MS(100));
        let mut l = Link::new(cfg, SimRng::new(1));
        // Sent at 990 ms: done at 991, would arrive at 1001: held to 1100.
        assert_eq!(l.send(MS(990)), MS(1100));
        // Sent at 1200 ms: no stall.
        assert_eq!(l.send(MS(1200)), MS(1211));
        assert!(cfg.worst_case_latency() >= MS(110));
        // A stall never exceeds its period.
        let c = LinkConfig::new(1, MS(1)).with_stalls(MS(10), MS(50));
        assert_eq!(c.stall_for, MS(10));
    }
}
