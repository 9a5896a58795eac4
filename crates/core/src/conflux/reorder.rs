//! The bounded reorder queue (prop 329 §2.6, §4.1).
//!
//! Multiplexed cells arrive on several legs, so cell N+1 can arrive before
//! cell N. The [`ReorderQueue`] holds the early ones until the gap fills and
//! hands cells out strictly in sequence order, each exactly once. Unlike
//! C-tor's (whose `cfx_max_oooq_bytes` defaults to `INT32_MAX`) it is
//! bounded in bytes and in cells ([`ReorderLimit`]); a cell that would go
//! over is refused and the queue does not grow ([`ReorderError::Full`]):
//! the set is then closed with RESOURCELIMIT. A sequence number already
//! handed out, a duplicate, or one absurdly far ahead is refused as a
//! protocol violation, also without growth.
//!
//! Every CONFLUX_SWITCH asks how many numbers up to its target have not
//! arrived ([`ReorderQueue::unreceived_upto`], for the plausibility check
//! of prop 329 §4.2). The cells waiting for a gap are kept in an
//! order-statistics tree so that this, like inserting and taking cells,
//! is O(log n) in the cells held: a peer that leaves a gap with every
//! SWITCH cannot make the receiver's work quadratic.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::Duration;

use super::sizer::ReorderSizer;

/// The bounds of a [`ReorderQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderLimit {
    /// Bytes held at most (cells waiting for a gap plus cells ready but
    /// not yet taken), as charged by the caller per cell.
    pub max_bytes: usize,
    /// Cells held at most.
    pub max_cells: usize,
    /// How far beyond the next needed sequence number a cell may be.
    pub max_ahead: u64,
}

impl ReorderLimit {
    /// The smallest byte limit [`ReorderQueue::default_limit`] gives:
    /// slow start on two legs (2 x 124-cell windows of ~600 accounted bytes
    /// each) fits several times.
    pub const FLOOR_BYTES: usize = 512 * 1024;
    /// The largest byte limit [`ReorderQueue::default_limit`] gives.
    pub const CEILING_BYTES: usize = 32 * 1024 * 1024;
    /// Bytes per cell used to derive the cell limit from the byte limit
    /// (half a relay cell: tiny cells may be more numerous, not unbounded).
    pub const BYTES_PER_CELL: usize = 256;
    /// A cell more than this ahead of delivery is refused: no sender that
    /// keeps relative sequence numbers within 2^31 (prop 329 §2.6) over at
    /// most 8 legs gets there with a sane window.
    pub const DEFAULT_MAX_AHEAD: u64 = 1 << 31;

    /// A limit of `max_bytes`, with the cell limit derived from it.
    pub fn from_bytes(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            max_cells: (max_bytes / Self::BYTES_PER_CELL).max(16),
            max_ahead: Self::DEFAULT_MAX_AHEAD,
        }
    }
}

impl Default for ReorderLimit {
    /// The limit a set starts with ([`ReorderSizer::initial_limit`]).
    fn default() -> Self {
        ReorderSizer::initial_limit()
    }
}

/// Why a cell was refused. Nothing changed in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReorderError {
    /// Its sequence number was already handed out.
    Stale {
        /// The sequence number.
        seq: u64,
        /// The last sequence number received in order.
        delivered: u64,
    },
    /// A cell with this sequence number is already held.
    Duplicate {
        /// The sequence number.
        seq: u64,
    },
    /// It is more than `max_ahead` beyond the next needed number.
    TooFarAhead {
        /// The sequence number.
        seq: u64,
        /// The next sequence number needed.
        expected: u64,
        /// The limit.
        max_ahead: u64,
    },
    /// Holding it would exceed the limit.
    Full {
        /// Cells held.
        cells: usize,
        /// Bytes held.
        bytes: usize,
        /// The limit.
        limit: ReorderLimit,
    },
}

/// A held cell.
#[derive(Debug)]
struct Held<T> {
    /// The item.
    item: T,
    /// Its charge in bytes.
    cost: usize,
}

/// A subtree of [`Pending`].
type Link<V> = Option<Box<Node<V>>>;

/// A node of [`Pending`].
#[derive(Debug)]
struct Node<V> {
    /// The sequence number.
    key: u64,
    /// What is held under it.
    value: V,
    /// Height of the subtree (a leaf is 1).
    height: u8,
    /// Nodes in the subtree.
    size: usize,
    /// Smaller keys.
    left: Link<V>,
    /// Larger keys.
    right: Link<V>,
}

/// The height of `link` (0 if empty).
fn height<V>(link: &Link<V>) -> u8 {
    link.as_ref().map_or(0, |n| n.height)
}

/// The number of nodes under `link`.
fn size<V>(link: &Link<V>) -> usize {
    link.as_ref().map_or(0, |n| n.size)
}

impl<V> Node<V> {
    /// A leaf.
    fn leaf(key: u64, value: V) -> Box<Self> {
        Box::new(Self {
            key,
            value,
            height: 1,
            size: 1,
            left: None,
            right: None,
        })
    }

    /// Recompute `height` and `size` from the children.
    fn update(&mut self) {
        self.height = height(&self.left)
            .max(height(&self.right))
            .saturating_add(1);
        self.size = size(&self.left)
            .saturating_add(size(&self.right))
            .saturating_add(1);
    }

    /// Left child up, `self` down to its right.
    fn rotate_right(mut self: Box<Self>) -> Box<Self> {
        let Some(mut l) = self.left.take() else {
            return self;
        };
        self.left = l.right.take();
        self.update();
        l.right = Some(self);
        l.update();
        l
    }

    /// Right child up, `self` down to its left.
    fn rotate_left(mut self: Box<Self>) -> Box<Self> {
        let Some(mut r) = self.right.take() else {
            return self;
        };
        self.right = r.left.take();
        self.update();
        r.left = Some(self);
        r.update();
        r
    }

    /// Restore the AVL balance (children's heights differ by at most 1)
    /// after one insertion or removal below `self`, and update it.
    fn rebalance(mut self: Box<Self>) -> Box<Self> {
        self.update();
        let (hl, hr) = (height(&self.left), height(&self.right));
        if hl > hr.saturating_add(1) {
            if let Some(l) = self.left.take() {
                self.left = Some(if height(&l.right) > height(&l.left) {
                    l.rotate_left()
                } else {
                    l
                });
            }
            self.rotate_right()
        } else if hr > hl.saturating_add(1) {
            if let Some(r) = self.right.take() {
                self.right = Some(if height(&r.left) > height(&r.right) {
                    r.rotate_right()
                } else {
                    r
                });
            }
            self.rotate_left()
        } else {
            self
        }
    }

    /// Insert `key` under `link`; the replaced value if it was there.
    fn insert(link: Link<V>, key: u64, value: V) -> (Box<Self>, Option<V>) {
        let Some(mut n) = link else {
            return (Self::leaf(key, value), None);
        };
        let old = match key.cmp(&n.key) {
            Ordering::Less => {
                let (l, old) = Self::insert(n.left.take(), key, value);
                n.left = Some(l);
                old
            }
            Ordering::Greater => {
                let (r, old) = Self::insert(n.right.take(), key, value);
                n.right = Some(r);
                old
            }
            Ordering::Equal => {
                let old = std::mem::replace(&mut n.value, value);
                return (n, Some(old));
            }
        };
        (n.rebalance(), old)
    }

    /// Remove the smallest key of the subtree: what is left, and it.
    fn pop_first(mut self: Box<Self>) -> (Link<V>, u64, V) {
        match self.left.take() {
            None => {
                let Node {
                    key, value, right, ..
                } = *self;
                (right, key, value)
            }
            Some(l) => {
                let (l, key, value) = l.pop_first();
                self.left = l;
                (Some(self.rebalance()), key, value)
            }
        }
    }
}

/// The cells waiting for a gap, by sequence number: an AVL tree whose
/// nodes know the size of their subtree, so that counting the keys up to
/// a number ([`Pending::count_upto`], what every CONFLUX_SWITCH asks) takes
/// O(log n) like the other operations. (A `BTreeMap` counts a range by
/// walking it: O(n) per SWITCH, quadratic under a peer that leaves a gap
/// with every SWITCH.) The height of an AVL tree of n nodes is below
/// 1.45 log2(n + 2), so the recursion is shallow.
#[derive(Debug)]
struct Pending<V> {
    /// The tree.
    root: Link<V>,
}

impl<V> Pending<V> {
    /// Empty.
    fn new() -> Self {
        Self { root: None }
    }

    /// Keys held.
    fn len(&self) -> usize {
        size(&self.root)
    }

    /// True if nothing is held.
    fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// True if `key` is held.
    fn contains_key(&self, key: u64) -> bool {
        let mut cur = &self.root;
        while let Some(n) = cur {
            cur = match key.cmp(&n.key) {
                Ordering::Less => &n.left,
                Ordering::Greater => &n.right,
                Ordering::Equal => return true,
            };
        }
        false
    }

    /// Hold `value` under `key`; the value it replaces, if any.
    fn insert(&mut self, key: u64, value: V) -> Option<V> {
        let (root, old) = Node::insert(self.root.take(), key, value);
        self.root = Some(root);
        old
    }

    /// The smallest key.
    fn first_key(&self) -> Option<u64> {
        let mut n = self.root.as_ref()?;
        while let Some(l) = &n.left {
            n = l;
        }
        Some(n.key)
    }

    /// Remove the smallest key if it is `key`.
    fn remove_first_if(&mut self, key: u64) -> Option<V> {
        if self.first_key() != Some(key) {
            return None;
        }
        let (root, _, value) = self.root.take()?.pop_first();
        self.root = root;
        Some(value)
    }

    /// How many keys are `<= upto`: O(log n).
    fn count_upto(&self, upto: u64) -> usize {
        let mut count = 0_usize;
        let mut cur = &self.root;
        while let Some(n) = cur {
            if n.key <= upto {
                count = count.saturating_add(size(&n.left)).saturating_add(1);
                cur = &n.right;
            } else {
                cur = &n.left;
            }
        }
        count
    }

    /// The keys in order (tests).
    #[cfg(test)]
    fn keys(&self) -> Vec<u64> {
        fn walk<V>(link: &Link<V>, out: &mut Vec<u64>) {
            if let Some(n) = link {
                walk(&n.left, out);
                out.push(n.key);
                walk(&n.right, out);
            }
        }
        let mut out = Vec::with_capacity(self.len());
        walk(&self.root, &mut out);
        out
    }

    /// Check the tree's invariants (tests): keys in order, sizes and
    /// heights right, balanced.
    #[cfg(test)]
    fn check(&self) {
        fn walk<V>(link: &Link<V>, lo: Option<u64>, hi: Option<u64>) -> (u8, usize) {
            let Some(n) = link else {
                return (0, 0);
            };
            assert!(lo.is_none_or(|lo| n.key > lo) && hi.is_none_or(|hi| n.key < hi));
            let (hl, sl) = walk(&n.left, lo, Some(n.key));
            let (hr, sr) = walk(&n.right, Some(n.key), hi);
            assert!(hl.abs_diff(hr) <= 1, "unbalanced at {}", n.key);
            assert_eq!(n.height, hl.max(hr) + 1);
            assert_eq!(n.size, sl + sr + 1);
            (n.height, n.size)
        }
        walk(&self.root, None, None);
    }
}

/// The bounded reorder queue.
#[derive(Debug)]
pub struct ReorderQueue<T> {
    /// The next sequence number needed (all below it were received).
    expected: u64,
    /// Cells that arrived early, all numbered above `expected`.
    pending: Pending<Held<T>>,
    /// Cells in order, waiting to be taken by [`ReorderQueue::pop`].
    ready: VecDeque<(u64, Held<T>)>,
    /// Bytes charged for `pending` and `ready`.
    bytes: usize,
    /// The most bytes ever held.
    peak_bytes: usize,
    /// The most cells ever held.
    peak_cells: usize,
    /// The bounds.
    limit: ReorderLimit,
}

impl<T> ReorderQueue<T> {
    /// An empty queue expecting sequence number 1.
    pub fn new(limit: ReorderLimit) -> Self {
        Self::starting_after(0, limit)
    }

    /// An empty queue expecting `last + 1`.
    pub fn starting_after(last: u64, limit: ReorderLimit) -> Self {
        Self {
            expected: last.saturating_add(1),
            pending: Pending::new(),
            ready: VecDeque::new(),
            bytes: 0,
            peak_bytes: 0,
            peak_cells: 0,
            limit,
        }
    }

    /// The limit MPTCP uses for its receive buffer (RFC 6182 §5.3.2,
    /// RFC 8684 §3.3.6): twice the sum of the legs' bandwidths times the
    /// largest RTT, clamped to [[`ReorderLimit::FLOOR_BYTES`],
    /// [`ReorderLimit::CEILING_BYTES`]]. `legs` holds each leg's
    /// bandwidth in bytes per second and its RTT. A slow, long leg beside
    /// a fast one makes this large: that is what the ceiling is for (and
    /// why schedulers should avoid such legs).
    pub fn default_limit(legs: &[(u64, Duration)]) -> ReorderLimit {
        let sum_bw: u128 = legs.iter().map(|(bw, _)| u128::from(*bw)).sum();
        let rtt_max = legs.iter().map(|(_, rtt)| *rtt).max().unwrap_or_default();
        let bytes = sum_bw.saturating_mul(2).saturating_mul(rtt_max.as_micros()) / 1_000_000;
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        ReorderLimit::from_bytes(
            bytes.clamp(ReorderLimit::FLOOR_BYTES, ReorderLimit::CEILING_BYTES),
        )
    }

    /// The bounds.
    pub fn limit(&self) -> ReorderLimit {
        self.limit
    }

    /// Change the bounds (for example once legs are measured). Cells
    /// already held stay; a lower limit refuses new ones until it is met.
    pub fn set_limit(&mut self, limit: ReorderLimit) {
        self.limit = limit;
    }

    /// The next sequence number needed.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// The last sequence number received in order (C-tor's
    /// `last_seq_delivered`; what a LINK reports as `last_seqno_recv`).
    pub fn last_in_order(&self) -> u64 {
        self.expected.saturating_sub(1)
    }

    /// Cells held (waiting or ready).
    pub fn cells(&self) -> usize {
        self.pending.len().saturating_add(self.ready.len())
    }

    /// Cells waiting for a gap to fill.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The most bytes ever held.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// The most cells ever held.
    pub fn peak_cells(&self) -> usize {
        self.peak_cells
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.ready.is_empty()
    }

    /// How many sequence numbers in `expected..=upto` have not arrived
    /// (what a CONFLUX_SWITCH to `upto` skips over, prop 329 §2.6, §4.2):
    /// the span minus the cells held in it. O(log n) in the cells held.
    pub fn unreceived_upto(&self, upto: u64) -> u64 {
        if upto < self.expected {
            return 0;
        }
        let span = upto.saturating_sub(self.expected).saturating_add(1);
        // Every waiting cell is numbered above `expected`.
        let held = self.pending.count_upto(upto);
        span.saturating_sub(u64::try_from(held).unwrap_or(u64::MAX))
    }

    /// [`Self::unreceived_upto`] the slow way, by walking the held cells
    /// (tests).
    #[cfg(test)]
    fn unreceived_upto_naive(&self, upto: u64) -> u64 {
        if upto < self.expected {
            return 0;
        }
        let span = upto - self.expected + 1;
        let held = self
            .pending
            .keys()
            .into_iter()
            .filter(|k| (self.expected..=upto).contains(k))
            .count();
        span.saturating_sub(held as u64)
    }

    /// Hold `item`, numbered `seq`, charged `cost` bytes. On error nothing
    /// changed.
    pub fn insert(&mut self, seq: u64, item: T, cost: usize) -> Result<(), ReorderError> {
        if seq < self.expected {
            return Err(ReorderError::Stale {
                seq,
                delivered: self.last_in_order(),
            });
        }
        if seq.saturating_sub(self.expected) > self.limit.max_ahead {
            return Err(ReorderError::TooFarAhead {
                seq,
                expected: self.expected,
                max_ahead: self.limit.max_ahead,
            });
        }
        if self.pending.contains_key(seq) {
            return Err(ReorderError::Duplicate { seq });
        }
        let cells = self.cells();
        let bytes = self.bytes.saturating_add(cost);
        if cells >= self.limit.max_cells || bytes > self.limit.max_bytes {
            return Err(ReorderError::Full {
                cells,
                bytes: self.bytes,
                limit: self.limit,
            });
        }
        self.bytes = bytes;
        self.peak_bytes = self.peak_bytes.max(bytes);
        self.peak_cells = self.peak_cells.max(cells.saturating_add(1));
        let held = Held { item, cost };
        if seq == self.expected {
            self.ready.push_back((seq, held));
            self.expected = self.expected.saturating_add(1);
            while let Some(h) = self.pending.remove_first_if(self.expected) {
                self.ready.push_back((self.expected, h));
                self.expected = self.expected.saturating_add(1);
            }
        } else {
            self.pending.insert(seq, held);
        }
        Ok(())
    }

    /// Drop every cell held, waiting or ready, and their charge: the
    /// count goes to zero with them (C-tor's TROVE-2026-010 freed a set's
    /// queue without taking its cost off the total). What was expected
    /// and the peaks stay.
    pub fn clear(&mut self) {
        self.pending = Pending::new();
        self.ready.clear();
        self.bytes = 0;
    }

    /// The next cell in order, if it has arrived.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let (seq, h) = self.ready.pop_front()?;
        self.bytes = self.bytes.saturating_sub(h.cost);
        Some((seq, h.item))
    }
}

#[cfg(test)]
mod tests;
