//! A bounded byte queue, for a stream's send and receive buffers.

use std::collections::VecDeque;

/// Capacity above which an emptied queue gives its memory back (down to
/// this much).
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
        // A slice's iterator, so VecDeque copies it in one go (with
        // `take(n)` it went byte by byte).
        self.buf.extend(data.get(..n).unwrap_or_default());
        n
    }

    /// Copy up to `out.len()` bytes out, oldest first; returns how many.
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        // Both halves of the ring copied as slices, then dropped from the
        // front: a byte-by-byte drain was a tenth of a download's CPU.
        let (front, back) = self.buf.as_slices();
        let a = front.len().min(n);
        if let Some((dst_a, dst_b)) = out.get_mut(..n).and_then(|o| o.split_at_mut_checked(a))
            && let (Some(src_a), Some(src_b)) = (front.get(..a), back.get(..n - a))
        {
            dst_a.copy_from_slice(src_a);
            dst_b.copy_from_slice(src_b);
        }
        self.buf.drain(..n);
        self.maybe_shrink();
        n
    }

    /// Take up to `max` bytes off the front.
    pub(crate) fn pop_chunk(&mut self, max: usize) -> Vec<u8> {
        let mut chunk = vec![0; max.min(self.buf.len())];
        self.pop_into(&mut chunk);
        chunk
    }

    /// Put `front` before what is queued, raising the bound by its length
    /// (a migrated stream's unread bytes ahead of the new id's, Braid
    /// proposal 001 §4.2 step 4).
    pub(crate) fn prepend(&mut self, front: &[u8]) {
        let rest = std::mem::take(&mut self.buf);
        let mut buf = VecDeque::with_capacity(front.len() + rest.len());
        buf.extend(front);
        buf.extend(rest);
        self.buf = buf;
        self.limit = self.limit.saturating_add(front.len());
    }

    /// Lower the bound by `n` (not below what is queued).
    pub(crate) fn shrink_limit(&mut self, n: usize) {
        self.limit = self.limit.saturating_sub(n).max(self.buf.len());
    }

    /// Take everything.
    pub(crate) fn take_all(&mut self) -> Vec<u8> {
        let v: Vec<u8> = std::mem::take(&mut self.buf).into();
        v
    }

    /// Drop everything.
    pub(crate) fn clear(&mut self) {
        self.buf = VecDeque::new();
    }

    /// Give back a large allocation once the queue is empty, so an idle
    /// stream keeps at most [`SHRINK_ABOVE`] bytes, not its peak.
    fn maybe_shrink(&mut self) {
        // Down to SHRINK_ABOVE, not to nothing: a busy stream empties its
        // buffer at every read and would otherwise grow it again from a
        // few bytes, reallocating and copying at each doubling.
        if self.buf.is_empty() && self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(SHRINK_ABOVE);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests")]

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

    #[test]
    fn prepend_goes_first_and_grows_the_bound_until_shrunk() {
        let mut q = ByteQueue::new(4);
        q.push(b"cdef");
        q.prepend(b"ab");
        assert_eq!((q.len(), q.limit(), q.free()), (6, 6, 0));
        q.shrink_limit(1);
        assert_eq!(q.limit(), 6, "never below what is queued");
        let mut out = [0u8; 3];
        q.pop_into(&mut out);
        assert_eq!(&out, b"abc");
        q.shrink_limit(2);
        assert_eq!(q.limit(), 4);
        assert_eq!(q.take_all(), b"def");
        assert!(q.is_empty());
    }

    #[test]
    fn copies_across_the_ring_wrap_in_order() {
        let mut q = ByteQueue::new(8);
        let mut out = [0u8; 8];
        let mut next = 0u8;
        let mut expect = 0u8;
        // Every split of pushes and pops, so reads start and end on both
        // sides of the ring's wrap.
        for round in 0..40usize {
            let chunk: Vec<u8> = (0..1 + round % 7)
                .map(|i| next.wrapping_add(i as u8))
                .collect();
            let took = q.push(&chunk);
            next = next.wrapping_add(took as u8);
            let want = 1 + (round * 3) % 8;
            let n = q.pop_into(&mut out[..want]);
            for &b in &out[..n] {
                assert_eq!(b, expect, "round {round}");
                expect = expect.wrapping_add(1);
            }
        }
        let rest = q.pop_chunk(8);
        for b in rest {
            assert_eq!(b, expect);
            expect = expect.wrapping_add(1);
        }
        assert_eq!(expect, next);
    }
}
