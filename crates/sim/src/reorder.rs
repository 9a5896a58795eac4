//! The receiver's reorder buffer: cells arrive by leg, out of order, and
//! leave in sequence order. [`ReorderSink`] is the interface the simulator
//! drives, so braid-core's bounded reorder queue can be measured in place
//! of the simple [`BTreeReorder`] here.

use std::collections::BTreeMap;
use std::fmt;

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
    /// Buffering the cell would exceed the limit.
    Overflow {
        /// Bytes buffered before the cell.
        buffered: u64,
        /// The limit.
        limit: u64,
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
}
