//! The receiver's reorder buffer: cells arrive by leg, out of order, and
//! leave in sequence order. [`ReorderSink`] is the interface the simulator
//! drives. Two implementations:
//!
//! - [`BTreeReorder`], a simple map, unbounded unless given a limit: the
//!   reference (what C-tor has, `cfx_max_oooq_bytes` = INT32_MAX);
//! - [`CoreReorder`], braid-core's bounded
//!   [`ReorderQueue`] (prop 329 §4.1),
//!   the queue a [`ConfluxSet`](braid_core::conflux::ConfluxSet) uses,
//!   refusing what would go over its [`ReorderLimit`].

use std::collections::BTreeMap;
use std::fmt;

use braid_core::conflux::{ReorderError, ReorderLimit, ReorderQueue};

use crate::scenario::Scenario;

/// What one arrival released, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Cells delivered.
    pub cells: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Why a sink refused a cell (the real queue would close the set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// The cell's sequence number was already delivered or buffered.
    Duplicate {
        /// The sequence number.
        seq: u64,
    },
    /// Buffering the cell would exceed the limit (for [`CoreReorder`]:
    /// its byte or its cell limit, [`ReorderError::Full`]).
    Overflow {
        /// Bytes buffered before the cell.
        buffered: u64,
        /// The limit.
        limit: u64,
    },
    /// The cell is further ahead of the next needed one than the queue
    /// allows ([`ReorderError::TooFarAhead`]).
    TooFarAhead {
        /// The sequence number.
        seq: u64,
        /// The next sequence number needed.
        expected: u64,
    },
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Duplicate { seq } => write!(f, "duplicate sequence number {seq}"),
            SinkError::Overflow { buffered, limit } => {
                write!(
                    f,
                    "reorder buffer over its limit ({buffered} of {limit} bytes)"
                )
            }
            SinkError::TooFarAhead { seq, expected } => {
                write!(
                    f,
                    "sequence number {seq} too far ahead of the next needed {expected}"
                )
            }
        }
    }
}

impl std::error::Error for SinkError {}

/// A receiver-side reorder buffer. Sequence numbers start at 0.
pub trait ReorderSink: fmt::Debug {
    /// Cell `seq` of `bytes` arrived: what it releases in order.
    fn on_cell(&mut self, seq: u64, bytes: u64) -> Result<Delivered, SinkError>;
    /// Bytes held out of order.
    fn buffered_bytes(&self) -> u64;
    /// Cells held out of order.
    fn buffered_cells(&self) -> u64;
}

/// A reorder buffer on a `BTreeMap`, with an optional byte limit.
#[derive(Debug, Clone, Default)]
pub struct BTreeReorder {
    /// The next sequence number to deliver.
    next: u64,
    /// Held cells: sequence number → bytes.
    held: BTreeMap<u64, u64>,
    /// Sum of `held`.
    bytes: u64,
    /// Refuse a cell that would take `bytes` over this.
    limit: Option<u64>,
}

impl BTreeReorder {
    /// An unbounded buffer (what C-tor has: `cfx_max_oooq_bytes` is
    /// INT32_MAX).
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer refusing to hold more than `limit` bytes.
    pub fn with_limit(limit: u64) -> Self {
        BTreeReorder {
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// The next sequence number it waits for.
    pub fn next_seq(&self) -> u64 {
        self.next
    }
}

impl ReorderSink for BTreeReorder {
    fn on_cell(&mut self, seq: u64, bytes: u64) -> Result<Delivered, SinkError> {
        if seq < self.next || self.held.contains_key(&seq) {
            return Err(SinkError::Duplicate { seq });
        }
        if seq > self.next {
            if let Some(limit) = self.limit
                && self.bytes.saturating_add(bytes) > limit
            {
                return Err(SinkError::Overflow {
                    buffered: self.bytes,
                    limit,
                });
            }
            self.held.insert(seq, bytes);
            self.bytes = self.bytes.saturating_add(bytes);
            return Ok(Delivered::default());
        }
        let mut out = Delivered { cells: 1, bytes };
        self.next += 1;
        while let Some(b) = self.held.remove(&self.next) {
            out.cells += 1;
            out.bytes = out.bytes.saturating_add(b);
            self.bytes = self.bytes.saturating_sub(b);
            self.next += 1;
        }
        Ok(out)
    }

    fn buffered_bytes(&self) -> u64 {
        self.bytes
    }

    fn buffered_cells(&self) -> u64 {
        u64::try_from(self.held.len()).unwrap_or(u64::MAX)
    }
}

/// braid-core's bounded [`ReorderQueue`] as a sink.
///
/// The simulator numbers cells from 0, a Conflux set from 1 (prop 329
/// §2.6: the first multiplexed cell has absolute sequence number 1), so
/// cell `seq` goes in as `seq + 1`. Each cell is charged its payload bytes
/// plus a per-cell overhead (0 unless [`CoreReorder::with_cell_overhead`];
/// [`CoreReorder::SET_CELL_OVERHEAD`] approximates what a
/// [`ConfluxSet`](braid_core::conflux::ConfluxSet) charges). Released cells
/// are taken out at once, as a driver draining `poll_delivered` after every
/// message does, so [`ReorderSink::buffered_bytes`] is what waits for a gap.
///
/// Unlike [`BTreeReorder`], the core queue counts the cell that fills a gap
/// against the limit too (it holds the released cells until they are
/// taken): a cell is refused when the bytes held before it plus its own
/// charge would exceed the limit, in order or not.
#[derive(Debug)]
pub struct CoreReorder {
    /// The queue; the item is the cell's payload bytes.
    queue: ReorderQueue<u64>,
    /// Bytes charged per cell beyond its payload.
    cell_overhead: u64,
    /// The error the queue returned, if it refused a cell.
    last_error: Option<ReorderError>,
}

impl CoreReorder {
    /// Roughly what a `ConfluxSet` charges per held message beyond its DATA
    /// bytes (its `ENTRY_OVERHEAD`: 96 bytes of map entry plus the
    /// `Delivered` struct).
    pub const SET_CELL_OVERHEAD: u64 =
        96 + std::mem::size_of::<braid_core::conflux::Delivered>() as u64;

    /// A queue bounded by `limit`, charging payload bytes only.
    pub fn new(limit: ReorderLimit) -> Self {
        CoreReorder {
            queue: ReorderQueue::new(limit),
            cell_overhead: 0,
            last_error: None,
        }
    }

    /// A queue with the limit a set derives from its measured legs,
    /// [`ReorderQueue::default_limit`] (MPTCP's: twice the summed bandwidth
    /// times the largest RTT, clamped), from each leg's forward payload
    /// rate and idle RTT.
    pub fn for_scenario(sc: &Scenario) -> Self {
        Self::new(Self::default_limit(sc))
    }

    /// [`ReorderQueue::default_limit`] of `sc`'s legs.
    pub fn default_limit(sc: &Scenario) -> ReorderLimit {
        let legs: Vec<_> = sc
            .legs
            .iter()
            .map(|l| (l.payload_rate() as u64, l.base_rtt()))
            .collect();
        ReorderQueue::<u64>::default_limit(&legs)
    }

    /// The same queue charging `bytes` more per cell.
    pub fn with_cell_overhead(self, bytes: u64) -> Self {
        CoreReorder {
            cell_overhead: bytes,
            ..self
        }
    }

    /// The queue's bounds.
    pub fn limit(&self) -> ReorderLimit {
        self.queue.limit()
    }

    /// The most bytes the queue ever held, by its own count (including a
    /// cell that filled a gap, for the moment before it is taken).
    pub fn peak_bytes(&self) -> u64 {
        u64::try_from(self.queue.peak_bytes()).unwrap_or(u64::MAX)
    }

    /// The most cells the queue ever held, by its own count.
    pub fn peak_cells(&self) -> u64 {
        u64::try_from(self.queue.peak_cells()).unwrap_or(u64::MAX)
    }

    /// What the queue returned when it refused a cell.
    pub fn last_error(&self) -> Option<ReorderError> {
        self.last_error
    }

    /// The next sequence number it waits for, in the simulator's numbering.
    pub fn next_seq(&self) -> u64 {
        self.queue.expected().saturating_sub(1)
    }
}

impl ReorderSink for CoreReorder {
    fn on_cell(&mut self, seq: u64, bytes: u64) -> Result<Delivered, SinkError> {
        let cost = usize::try_from(bytes.saturating_add(self.cell_overhead)).unwrap_or(usize::MAX);
        if let Err(e) = self.queue.insert(seq.saturating_add(1), bytes, cost) {
            self.last_error = Some(e);
            let limit = self.queue.limit();
            return Err(match e {
                ReorderError::Stale { .. } | ReorderError::Duplicate { .. } => {
                    SinkError::Duplicate { seq }
                }
                ReorderError::TooFarAhead { expected, .. } => SinkError::TooFarAhead {
                    seq,
                    expected: expected.saturating_sub(1),
                },
                ReorderError::Full { bytes, .. } => SinkError::Overflow {
                    buffered: u64::try_from(bytes).unwrap_or(u64::MAX),
                    limit: u64::try_from(limit.max_bytes).unwrap_or(u64::MAX),
                },
            });
        }
        let mut out = Delivered::default();
        while let Some((_, b)) = self.queue.pop() {
            out.cells += 1;
            out.bytes = out.bytes.saturating_add(b);
        }
        Ok(out)
    }

    fn buffered_bytes(&self) -> u64 {
        u64::try_from(self.queue.bytes()).unwrap_or(u64::MAX)
    }

    fn buffered_cells(&self) -> u64 {
        u64::try_from(self.queue.cells()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_order() {
        let mut r = BTreeReorder::new();
        assert_eq!(r.on_cell(1, 10), Ok(Delivered::default()));
        assert_eq!(r.on_cell(2, 10), Ok(Delivered::default()));
        assert_eq!(r.buffered_bytes(), 20);
        assert_eq!(r.buffered_cells(), 2);
        assert_eq!(
            r.on_cell(0, 5),
            Ok(Delivered {
                cells: 3,
                bytes: 25
            })
        );
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.next_seq(), 3);
        assert_eq!(r.on_cell(1, 10), Err(SinkError::Duplicate { seq: 1 }));
        assert_eq!(r.on_cell(5, 10), Ok(Delivered::default()));
        assert_eq!(r.on_cell(5, 10), Err(SinkError::Duplicate { seq: 5 }));
    }

    #[test]
    fn limit() {
        let mut r = BTreeReorder::with_limit(15);
        assert!(r.on_cell(1, 10).is_ok());
        assert_eq!(
            r.on_cell(2, 10),
            Err(SinkError::Overflow {
                buffered: 10,
                limit: 15
            })
        );
        // The expected cell always goes through.
        assert_eq!(r.on_cell(0, 10).map(|d| d.cells), Ok(2));
    }

    #[test]
    fn core_queue_same_order_as_reference() {
        let mut core = CoreReorder::new(ReorderLimit::from_bytes(1 << 20));
        let mut reference = BTreeReorder::new();
        for seq in [2, 1, 5, 0, 3, 4, 7, 6] {
            assert_eq!(core.on_cell(seq, 10), reference.on_cell(seq, 10));
            assert_eq!(core.buffered_bytes(), reference.buffered_bytes());
            assert_eq!(core.buffered_cells(), reference.buffered_cells());
        }
        assert_eq!(core.next_seq(), 8);
        assert_eq!(core.on_cell(3, 10), Err(SinkError::Duplicate { seq: 3 }));
        core.on_cell(9, 10).unwrap();
        assert_eq!(core.on_cell(9, 10), Err(SinkError::Duplicate { seq: 9 }));
        assert!(matches!(
            core.last_error(),
            Some(ReorderError::Duplicate { seq: 10 })
        ));
    }

    #[test]
    fn core_queue_limit_and_overhead() {
        let limit = ReorderLimit {
            max_bytes: 100,
            max_cells: 50,
            max_ahead: 1000,
        };
        let mut core = CoreReorder::new(limit).with_cell_overhead(20);
        assert!(core.on_cell(1, 20).is_ok());
        assert!(core.on_cell(2, 20).is_ok());
        assert_eq!(core.buffered_bytes(), 80);
        assert_eq!(
            core.on_cell(3, 20),
            Err(SinkError::Overflow {
                buffered: 80,
                limit: 100
            })
        );
        // Unlike the reference, the gap-filling cell counts too.
        assert!(matches!(
            core.on_cell(0, 20),
            Err(SinkError::Overflow { .. })
        ));
        assert_eq!(core.buffered_bytes(), 80);
        assert!(core.peak_bytes() <= 100);
        assert_eq!(
            core.on_cell(2000, 1),
            Err(SinkError::TooFarAhead {
                seq: 2000,
                expected: 0
            })
        );
        // A small in-order cell fits and releases everything.
        assert_eq!(
            core.on_cell(0, 0),
            Ok(Delivered {
                cells: 3,
                bytes: 40
            })
        );
        assert_eq!(core.buffered_bytes(), 0);
    }
}
