//! The directory sources and which to ask next. A source that failed is
//! avoided until it answers well or every source has failed, when all are
//! tried again (C-tor `router_pick_directory_server` with
//! `PDS_RETRY_IF_NO_SERVERS`). How soon anything is asked again is the
//! download schedules' business, not the sources'.

use std::net::SocketAddr;

/// The sources, round robin, skipping failed ones.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    addrs: Vec<SocketAddr>,
    down: Vec<bool>,
    next: usize,
}

impl Sources {
    /// `addrs`, starting with the one at `first` (modulo their number).
    pub(crate) fn new(addrs: Vec<SocketAddr>, first: usize) -> Self {
        let next = first.checked_rem(addrs.len()).unwrap_or(0);
        Self {
            down: vec![false; addrs.len()],
            addrs,
            next,
        }
    }

    /// True if there is no source at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The address of source `i`.
    pub(crate) fn addr(&self, i: usize) -> Option<SocketAddr> {
        self.addrs.get(i).copied()
    }

    /// The next source that has not failed, round robin; when all have
    /// failed, all are marked up again first. `None` only with no sources.
    pub(crate) fn pick(&mut self) -> Option<usize> {
        let n = self.addrs.len();
        if n == 0 {
            return None;
        }
        if self.down.iter().all(|d| *d) {
            self.down.fill(false);
        }
        let i = (0..n)
            .map(|step| (self.next + step) % n)
            .find(|&i| !self.down.get(i).copied().unwrap_or(true))?;
        self.next = (i + 1) % n;
        Some(i)
    }

    /// Source `i` failed.
    pub(crate) fn mark_down(&mut self, i: usize) {
        if let Some(d) = self.down.get_mut(i) {
            *d = true;
        }
    }

    /// Source `i` answered well.
    pub(crate) fn mark_up(&mut self, i: usize) {
        if let Some(d) = self.down.get_mut(i) {
            *d = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i)))
            .collect()
    }

    #[test]
    fn round_robin_skips_failed_and_retries_all_when_all_failed() {
        let mut s = Sources::new(addrs(3), 4);
        assert_eq!(s.pick(), Some(1));
        assert_eq!(s.pick(), Some(2));
        assert_eq!(s.pick(), Some(0));
        s.mark_down(1);
        assert_eq!(s.pick(), Some(2));
        assert_eq!(s.pick(), Some(0));
        assert_eq!(s.pick(), Some(2));
        s.mark_down(0);
        s.mark_down(2);
        // All down: all up again.
        assert!(s.pick().is_some());
        s.mark_up(1);
        assert_eq!(Sources::new(Vec::new(), 3).pick(), None);
    }
}
