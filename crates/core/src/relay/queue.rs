//! A relay circuit's bounded queue of cells toward one channel, each with
//! the time it was queued, so that under memory pressure the node frees
//! the circuits whose queued data is oldest first (C-tor
//! `circuits_handle_oom`, by `circuit_max_queued_item_age`).

use std::collections::VecDeque;
use std::time::Instant;

use tor_cell::chancell::msg::AnyChanMsg;

use super::circuit::MAX_QUEUED_CELLS;
use super::error::RelayCircError;

/// Cells waiting for a channel's writer, oldest first.
#[derive(Debug, Default)]
pub(crate) struct CellQueue {
    /// Each cell with when it was queued (None: before the circuit saw a
    /// clock, i.e. its CREATED answer).
    cells: VecDeque<(Option<Instant>, AnyChanMsg)>,
}

impl CellQueue {
    /// Cells held.
    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    /// Queue `cell` at `at`, whatever the bound (DESTROY, CREATED).
    pub(crate) fn push(&mut self, cell: AnyChanMsg, at: Option<Instant>) {
        self.cells.push_back((at, cell));
    }

    /// Queue `cell` at `at` unless the queue is at [`MAX_QUEUED_CELLS`].
    pub(crate) fn push_bounded(
        &mut self,
        cell: AnyChanMsg,
        at: Option<Instant>,
    ) -> Result<(), RelayCircError> {
        if self.cells.len() >= MAX_QUEUED_CELLS {
            return Err(RelayCircError::QueueFull {
                queued: self.cells.len(),
                limit: MAX_QUEUED_CELLS,
            });
        }
        self.push(cell, at);
        Ok(())
    }

    /// The oldest cell.
    pub(crate) fn pop(&mut self) -> Option<AnyChanMsg> {
        self.cells.pop_front().map(|(_, c)| c)
    }

    /// Drop every cell.
    pub(crate) fn clear(&mut self) {
        self.cells.clear();
    }

    /// When the oldest cell with a time was queued.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.cells.iter().find_map(|(t, _)| *t)
    }
}
