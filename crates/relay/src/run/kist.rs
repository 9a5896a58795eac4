//! KIST in the channel writers (C-tor `scheduler_kist.c`; Jansen et al.,
//! "Never Been KIST", USENIX Security 2014): the node task hands each
//! channel's writer only what the kernel can send soon, so cells wait in
//! the core's per-circuit queues, where circuit priority orders them,
//! instead of in socket buffers, where nothing can.
//!
//! Channels with cells to send are *pending*. A run happens at most once
//! per run interval (`KISTSchedRunInterval`, 10 ms), and at once when the
//! last was longer ago (C-tor `kist_scheduler_schedule`). A run computes
//! each pending channel's write limit from its socket
//! ([`braid_core::relay::kist::write_limit`]: `TCP_INFO` and
//! `SIOCOUTQNSD`, or the writer's room when the kernel cannot tell), then
//! serves the channels one cell at a time, the one whose best circuit has
//! the lowest EWMA first (C-tor `kist_scheduler_run` with
//! `scheduler_compare_channels`), until each has used its limit, has no
//! more cells or its writer is full. A channel stopped by its limit with
//! cells left is pending again for the next run.
//!
//! Unlike C-tor, which writes only during runs, a channel may use what is
//! left of its limit between runs (cells arriving for it, its writer
//! taking cells again): the limit bounds what sits in the kernel until the
//! next run either way, and an interactive cell need not wait for the next
//! run when its channel has room.
//!
//! The scheduling is here, against the [`Outlet`] trait; the node task
//! implements it over the node and the channel writers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use braid_core::ids::ChanKey;
use braid_core::relay::kist::{CELL_WIRE_BYTES, KistParams, SocketInfo, write_limit};

/// What became of a request to move one cell into a channel's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// A cell went into the writer's queue.
    Cell,
    /// The channel had no cell to send.
    Empty,
    /// The writer's queue is full (it says when it has room again).
    Full,
    /// The channel is gone.
    Gone,
}

/// What a channel's socket and writer look like, for its write limit.
#[derive(Debug)]
pub(crate) struct SocketState {
    /// The kernel's figures, `None` without a socket handle.
    pub(crate) info: Option<std::io::Result<SocketInfo>>,
    /// Bytes handed to the writer and not yet written to the socket.
    pub(crate) buffered: usize,
    /// Cells the writer's queue has room for (the fallback limit).
    pub(crate) room: usize,
}

/// The channels KIST schedules: the node's cells and the writers.
pub(crate) trait Outlet {
    /// The channel's priority, lowest first (its best circuit's EWMA);
    /// `None` when no circuit has cells for it.
    fn priority(&mut self, chan: ChanKey, now: Instant) -> Option<f64>;
    /// Move one cell of `chan` into its writer.
    fn send_one(&mut self, chan: ChanKey, now: Instant) -> Sent;
    /// The kernel's figures for `chan`'s socket (only asked when the kernel
    /// is believed to answer) and its writer's state; `None` if the
    /// channel is gone.
    fn socket(&mut self, chan: ChanKey, ask_kernel: bool) -> Option<SocketState>;
}

/// KIST's figures, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KistStats {
    /// Runs.
    pub(crate) runs: u64,
    /// Write limits computed.
    pub(crate) limits: u64,
    /// Of those, from the writer's room (no kernel figures).
    pub(crate) fallbacks: u64,
    /// Sum of the limits, bytes.
    pub(crate) limit_bytes: u64,
    /// Times a channel used its whole limit with cells left.
    pub(crate) limited: u64,
    /// Cells moved to writers under KIST.
    pub(crate) cells: u64,
}

/// What is left of a channel's limit, and of which run.
#[derive(Debug, Clone, Copy)]
struct Budget {
    run: u64,
    left: usize,
}

/// The KIST scheduler of the node task.
#[derive(Debug)]
pub(crate) struct Kist {
    /// `[braid_relay] kist`.
    configured: bool,
    /// `[braid_relay] kist_interval_ms`, over the consensus.
    configured_interval: Option<Duration>,
    /// The consensus' `KISTSchedRunInterval` (None: not seen).
    consensus_interval: Option<i32>,
    /// The parameters in force; `None`: KIST off.
    params: Option<KistParams>,
    /// Channels with cells and no limit left in this run.
    pending: BTreeSet<ChanKey>,
    budgets: BTreeMap<ChanKey, Budget>,
    /// The number of the current run, and when it started.
    run: u64,
    last_run: Option<Instant>,
    /// `TCP_INFO` or `SIOCOUTQNSD` said EINVAL once: the kernel lacks
    /// them, stop asking (C-tor's `kist_no_kernel_support`).
    no_kernel_support: bool,
    stats: KistStats,
}

impl Kist {
    /// KIST as configured: on or off, and a run interval that overrides
    /// the consensus'.
    pub(crate) fn new(configured: bool, configured_interval: Option<Duration>) -> Self {
        let mut k = Self {
            configured,
            configured_interval,
            consensus_interval: None,
            params: None,
            pending: BTreeSet::new(),
            budgets: BTreeMap::new(),
            run: 0,
            last_run: None,
            no_kernel_support: false,
            stats: KistStats::default(),
        };
        k.params = k.compute_params();
        k
    }

    /// The parameters that follow from the configuration and consensus
    /// (C-tor `kist_scheduler_run_interval`: the torrc interval if set,
    /// else the consensus'; 0 turns KIST off).
    fn compute_params(&self) -> Option<KistParams> {
        if !self.configured {
            return None;
        }
        match self.configured_interval {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(KistParams {
                run_interval: d,
                ..KistParams::default()
            }),
            None => KistParams::default().with_run_interval_param(self.consensus_interval),
        }
    }

    /// The consensus' `KISTSchedRunInterval`. Returns whether KIST is on
    /// afterwards, and the channels that were pending if it just went off
    /// (pull them without limits).
    pub(crate) fn set_consensus_interval(&mut self, msec: Option<i32>) -> Vec<ChanKey> {
        self.consensus_interval = msec;
        self.params = self.compute_params();
        if self.params.is_none() {
            self.budgets.clear();
            return std::mem::take(&mut self.pending).into_iter().collect();
        }
        Vec::new()
    }

    /// The parameters in force, `None` when KIST is off.
    pub(crate) fn params(&self) -> Option<KistParams> {
        self.params
    }

    /// Figures.
    pub(crate) fn stats(&self) -> KistStats {
        self.stats
    }

    /// Channels waiting for the next run.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Forget a closed channel.
    pub(crate) fn forget(&mut self, chan: ChanKey) {
        self.pending.remove(&chan);
        self.budgets.remove(&chan);
    }

    /// When the next run is due, at `now` or later (`None`: nothing
    /// pending, or KIST off).
    pub(crate) fn next_run(&self, now: Instant) -> Option<Instant> {
        let p = self.params?;
        if self.pending.is_empty() {
            return None;
        }
        Some(self.last_run.map_or(now, |t| (t + p.run_interval).max(now)))
    }

    /// Channel `chan` may have cells (the node named it, or its writer has
    /// room again): send what its limit in this run allows, or leave it
    /// for the next run.
    pub(crate) fn ready(&mut self, out: &mut impl Outlet, chan: ChanKey, now: Instant) {
        let run = self.run;
        let left = match self.budgets.get(&chan) {
            Some(b) if b.run == run => b.left,
            _ => 0,
        };
        if left < CELL_WIRE_BYTES {
            self.pending.insert(chan);
            return;
        }
        let mut left = left;
        loop {
            match out.send_one(chan, now) {
                Sent::Cell => {
                    self.stats.cells += 1;
                    left = left.saturating_sub(CELL_WIRE_BYTES);
                    if left < CELL_WIRE_BYTES {
                        self.out_of_limit(out, chan, now);
                        break;
                    }
                }
                Sent::Empty | Sent::Full => break,
                Sent::Gone => {
                    self.forget(chan);
                    return;
                }
            }
        }
        if let Some(b) = self.budgets.get_mut(&chan) {
            b.left = left;
        }
    }

    /// A run, if one is due at `now`.
    pub(crate) fn run_if_due(&mut self, out: &mut impl Outlet, now: Instant) {
        if self.next_run(now).is_some_and(|t| t <= now) {
            self.run_now(out, now);
        }
    }

    /// One run (C-tor `kist_scheduler_run`): new limits for every pending
    /// channel, then one cell at a time from the channel with the best
    /// circuit.
    fn run_now(&mut self, out: &mut impl Outlet, now: Instant) {
        let Some(params) = self.params else {
            return;
        };
        self.run += 1;
        self.stats.runs += 1;
        self.last_run = Some(now);
        // (priority, channel, bytes left) of the channels served.
        let mut active: Vec<(f64, ChanKey, usize)> = Vec::new();
        for chan in std::mem::take(&mut self.pending) {
            let Some(limit) = self.limit(out, chan, &params) else {
                self.forget(chan);
                continue;
            };
            if limit < CELL_WIRE_BYTES {
                // Case 3 of C-tor's loop: cells, but no room: next run.
                self.out_of_limit(out, chan, now);
            } else {
                let p = out.priority(chan, now).unwrap_or(f64::NEG_INFINITY);
                active.push((p, chan, limit));
            }
            self.budgets.insert(
                chan,
                Budget {
                    run: self.run,
                    left: limit,
                },
            );
        }
        while let Some(i) = best(&active) {
            let Some(entry) = active.get_mut(i) else {
                break;
            };
            let chan = entry.1;
            match out.send_one(chan, now) {
                Sent::Cell => {
                    self.stats.cells += 1;
                    entry.2 = entry.2.saturating_sub(CELL_WIRE_BYTES);
                    let left = entry.2;
                    if let Some(b) = self.budgets.get_mut(&chan) {
                        b.left = left;
                    }
                    if left < CELL_WIRE_BYTES {
                        active.swap_remove(i);
                        self.out_of_limit(out, chan, now);
                    } else {
                        entry.0 = out.priority(chan, now).unwrap_or(f64::NEG_INFINITY);
                    }
                }
                // Waiting for cells (the node names it when some come) or
                // for its writer (which says when it has room).
                Sent::Empty | Sent::Full => {
                    active.swap_remove(i);
                }
                Sent::Gone => {
                    active.swap_remove(i);
                    self.forget(chan);
                }
            }
        }
    }

    /// Channel `chan` used its limit: pending for the next run (it may
    /// still hold cells, or a DESTROY its priority does not show).
    fn out_of_limit(&mut self, out: &mut impl Outlet, chan: ChanKey, now: Instant) {
        if out.priority(chan, now).is_some() {
            self.stats.limited += 1;
        }
        self.pending.insert(chan);
    }

    /// The write limit of `chan` now (`None`: the channel is gone).
    fn limit(
        &mut self,
        out: &mut impl Outlet,
        chan: ChanKey,
        params: &KistParams,
    ) -> Option<usize> {
        let s = out.socket(chan, !self.no_kernel_support)?;
        let info = match s.info {
            Some(Ok(i)) => Some(i),
            Some(Err(e)) => {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    tracing::info!(
                        "KIST: the kernel does not give TCP_INFO or SIOCOUTQNSD ({e}); \
                         limits from the writers' room from now on"
                    );
                    self.no_kernel_support = true;
                }
                None
            }
            None => None,
        };
        if info.is_none() {
            self.stats.fallbacks += 1;
        }
        let limit = write_limit(info.as_ref(), s.buffered, params, s.room);
        self.stats.limits += 1;
        self.stats.limit_bytes = self.stats.limit_bytes.saturating_add(limit as u64);
        Some(limit)
    }
}

/// The index of the entry with the lowest priority (ties: the first).
fn best(active: &[(f64, ChanKey, usize)]) -> Option<usize> {
    active
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests;
