//! A bounded byte queue, for a stream's send and receive buffers.

use std::collections::VecDeque;

/// Capacity above which an emptied queue gives its memory back.
const SHRINK_ABOVE: usize = 64 * 1024;

/// A FIFO of bytes that never holds more than `limit`.
#[derive(Debug, Clone)]
pub(crate) struct ByteQueue {
    /// The bytes, oldest first.
    buf: VecDeque<u8>,
    /// Hard bound on `buf.len()`.
    limit: usize,
}

impl ByteQueue {
    /// An empty queue bounded at `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        ByteQueue {
            buf: VecDeque::new(),
            limit,
        }
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bound.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Room left.
    pub(crate) fn free(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    /// Append as much of `data` as fits; returns how much was taken.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        self.buf.extend(data.iter().take(n));
        n
    }

    /// Copy up to `out.len()` bytes out, oldest first; returns how many.
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        for (o, b) in out.iter_mut().zip(self.buf.drain(..n)) {
            *o = b;
        }
        self.maybe_shrink();
        n
    }

    /// Take up to `max` bytes off the front.
    pub(crate) fn pop_chunk(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.buf.len());
        let chunk: Vec<u8> = self.buf.drain(..n).collect();
        self.maybe_shrink();
        chunk
    }

    /// Drop everything.
    pub(crate) fn clear(&mut self) {
        self.buf = VecDeque::new();
    }

    /// Give back a large allocation once the queue is empty, so an idle
    /// stream does not keep its peak memory.
    fn maybe_shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > SHRINK_ABOVE {
            self.buf = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo() {
        let mut q = ByteQueue::new(5);
        assert_eq!(q.push(b"abc"), 3);
        assert_eq!(q.push(b"defg"), 2);
        assert_eq!(q.push(b"x"), 0);
        assert_eq!(q.len(), 5);
        assert_eq!(q.free(), 0);
        let mut out = [0u8; 2];
        assert_eq!(q.pop_into(&mut out), 2);
        assert_eq!(&out, b"ab");
        assert_eq!(q.pop_chunk(10), b"cde");
        assert!(q.is_empty());
        assert_eq!(q.pop_into(&mut out), 0);
        assert_eq!(q.limit(), 5);
        q.push(b"zz");
        q.clear();
        assert!(q.is_empty());
    }
}
