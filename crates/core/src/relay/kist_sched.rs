//! KIST in the channel writers (C-tor `scheduler_kist.c`; Jansen et al.,
//! "Never Been KIST", USENIX Security 2014): the node task hands each
//! channel's writer only what the kernel can send soon, so cells wait in
//! the core's per-circuit queues, where circuit priority orders them,
//! instead of in socket buffers, where nothing can.
//!
//! A channel's write limit ([`write_limit`]:
//! from `TCP_INFO` and `SIOCOUTQNSD`, or the writer's room when the kernel
//! cannot tell) holds for one run interval (`KISTSchedRunInterval`, 10
//! ms). A channel with cells sends within its limit; one that used its
//! limit with cells left is *pending* until its interval is over. Then a
//! run gives every pending channel whose interval is over a new limit and
//! serves them one cell at a time, the one whose best circuit has the
//! lowest EWMA first (C-tor `kist_scheduler_run` with
//! `scheduler_compare_channels`), until each has used its limit, has no
//! more cells or its writer is full.
//!
//! Unlike C-tor, which writes only during runs, one every interval for all
//! channels, a channel whose limit has expired gets a new one as soon as
//! it has cells: only a channel its limit holds back waits. In C-tor every
//! cell waits for the next run (5 ms on average, per relay and direction);
//! measured in the relay_run test (loopback, debug build) a 20 MB download
//! through our relay as middle went at 3.4 MB/s with global 10 ms runs
//! (sending between runs only within the current run's limits), 12.0 MB/s
//! with 1 ms runs, 10.8 MB/s without KIST and 12.1 MB/s as here. What the
//! limit is for, keeping the
//! kernel's queue short so that circuit priority decides what leaves
//! first, holds either way: no channel hands its socket more than its
//! limit per interval.
//!
//! The scheduling is here, sans-IO, against the [`Outlet`] trait (time
//! passed in); braid-relay's node task implements it over the node and
//! its channel writers, and asks the kernel for the sockets' figures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::kist::{CELL_WIRE_BYTES, KistParams, SocketInfo, write_limit};
use crate::ids::ChanKey;

/// What became of a request to move one cell into a channel's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A cell went into the writer's queue.
    Cell,
    /// The channel had no cell to send.
    Empty,
    /// The writer's queue is full (it says when it has room again).
    Full,
    /// The channel is gone.
    Gone,
}

/// Why the kernel gave no figures for a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// It does not have `TCP_INFO` or `SIOCOUTQNSD` (EINVAL): stop asking.
    Unsupported(String),
    /// This socket's query failed.
    Failed(String),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Unsupported(e) | KernelError::Failed(e) => f.write_str(e),
        }
    }
}

/// What a channel's socket and writer look like, for its write limit.
#[derive(Debug)]
pub struct SocketState {
    /// The kernel's figures, `None` without a socket handle.
    pub info: Option<Result<SocketInfo, KernelError>>,
    /// Bytes handed to the writer and not yet written to the socket.
    pub buffered: usize,
    /// Cells the writer's queue has room for (the fallback limit).
    pub room: usize,
}

/// The channels KIST schedules: the node's cells and the writers.
pub trait Outlet {
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
pub struct KistStats {
    /// Runs (for channels their limit held back).
    pub runs: u64,
    /// Write limits computed.
    pub limits: u64,
    /// Of those, from the writer's room (no kernel figures).
    pub fallbacks: u64,
    /// Sum of the limits, bytes.
    pub limit_bytes: u64,
    /// Times a channel used its whole limit with cells left.
    pub limited: u64,
    /// Cells moved to writers under KIST.
    pub cells: u64,
}

/// What is left of a channel's limit, and when it was computed.
#[derive(Debug, Clone, Copy)]
struct Budget {
    at: Instant,
    left: usize,
}

/// The KIST scheduler of the node task.
#[derive(Debug)]
pub struct Kist {
    /// `[braid_relay] kist`.
    configured: bool,
    /// `[braid_relay] kist_interval_ms`, over the consensus.
    configured_interval: Option<Duration>,
    /// The consensus' `KISTSchedRunInterval` (None: not seen).
    consensus_interval: Option<i32>,
    /// The parameters in force; `None`: KIST off.
    params: Option<KistParams>,
    /// Channels that used their limit with cells left, waiting for their
    /// interval to end.
    pending: BTreeSet<ChanKey>,
    budgets: BTreeMap<ChanKey, Budget>,
    /// `TCP_INFO` or `SIOCOUTQNSD` said EINVAL once: the kernel lacks
    /// them, stop asking (C-tor's `kist_no_kernel_support`).
    no_kernel_support: bool,
    stats: KistStats,
}

impl Kist {
    /// KIST as configured: on or off, and a run interval that overrides
    /// the consensus'.
    pub fn new(configured: bool, configured_interval: Option<Duration>) -> Self {
        let mut k = Self {
            configured,
            configured_interval,
            consensus_interval: None,
            params: None,
            pending: BTreeSet::new(),
            budgets: BTreeMap::new(),
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
    pub fn set_consensus_interval(&mut self, msec: Option<i32>) -> Vec<ChanKey> {
        self.consensus_interval = msec;
        self.params = self.compute_params();
        if self.params.is_none() {
            self.budgets.clear();
            return std::mem::take(&mut self.pending).into_iter().collect();
        }
        Vec::new()
    }

    /// The parameters in force, `None` when KIST is off.
    pub fn params(&self) -> Option<KistParams> {
        self.params
    }

    /// Figures.
    pub fn stats(&self) -> KistStats {
        self.stats
    }

    /// Channels waiting for their limit to expire.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Forget a closed channel.
    pub fn forget(&mut self, chan: ChanKey) {
        self.pending.remove(&chan);
        self.budgets.remove(&chan);
    }

    /// When channel `chan`'s limit expires (`None`: it has none).
    fn expiry(&self, chan: ChanKey, interval: Duration) -> Option<Instant> {
        self.budgets.get(&chan).map(|b| b.at + interval)
    }

    /// When the next run is due, at `now` or later (`None`: nothing
    /// pending, or KIST off).
    pub fn next_run(&self, now: Instant) -> Option<Instant> {
        let p = self.params?;
        self.pending
            .iter()
            .map(|&c| self.expiry(c, p.run_interval).unwrap_or(now).max(now))
            .min()
    }

    /// Channel `chan` may have cells (the node named it, or its writer has
    /// room again): send what its limit allows, with a new limit if its
    /// last one expired, or leave it pending until it does.
    pub fn ready(&mut self, out: &mut impl Outlet, chan: ChanKey, now: Instant) {
        let Some(params) = self.params else {
            return;
        };
        let mut left = match self.budgets.get(&chan) {
            Some(b) if now < b.at + params.run_interval => {
                if b.left < CELL_WIRE_BYTES {
                    // Used up (and counted) already.
                    self.pending.insert(chan);
                    return;
                }
                b.left
            }
            _ => {
                let Some(limit) = self.limit(out, chan, &params) else {
                    self.forget(chan);
                    return;
                };
                self.budgets.insert(
                    chan,
                    Budget {
                        at: now,
                        left: limit,
                    },
                );
                self.pending.remove(&chan);
                limit
            }
        };
        if left < CELL_WIRE_BYTES {
            self.out_of_limit(out, chan, now);
            return;
        }
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
    pub fn run_if_due(&mut self, out: &mut impl Outlet, now: Instant) {
        if self.next_run(now).is_some_and(|t| t <= now) {
            self.run_now(out, now);
        }
    }

    /// One run (C-tor `kist_scheduler_run`): new limits for the pending
    /// channels whose limit expired, then one cell at a time from the
    /// channel with the best circuit.
    fn run_now(&mut self, out: &mut impl Outlet, now: Instant) {
        let Some(params) = self.params else {
            return;
        };
        self.stats.runs += 1;
        let due: Vec<ChanKey> = self
            .pending
            .iter()
            .copied()
            .filter(|&c| self.expiry(c, params.run_interval).is_none_or(|t| t <= now))
            .collect();
        // (priority, channel, bytes left) of the channels served.
        let mut active: Vec<(f64, ChanKey, usize)> = Vec::new();
        for chan in due {
            self.pending.remove(&chan);
            let Some(limit) = self.limit(out, chan, &params) else {
                self.forget(chan);
                continue;
            };
            self.budgets.insert(
                chan,
                Budget {
                    at: now,
                    left: limit,
                },
            );
            if limit < CELL_WIRE_BYTES {
                // Case 3 of C-tor's loop: cells, but no room: next time.
                self.out_of_limit(out, chan, now);
            } else {
                let p = out.priority(chan, now).unwrap_or(f64::NEG_INFINITY);
                active.push((p, chan, limit));
            }
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

    /// Channel `chan` used its limit: pending until it expires (it may
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
                if matches!(e, KernelError::Unsupported(_)) {
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
