//! What may still arrive on a stream after it closed, and which ids were
//! ever used (tor-spec §6.3; C-tor's `half_edge_t` in `connection_edge.c`).
//!
//! After we send END the exit has not seen it yet, so cells keep coming:
//! C-tor remembers, per closed stream, how many it would still have
//! accepted (a CONNECTED if we were waiting for one, the DATA cells its
//! deliver window allowed, the SENDMEs its package window implied, and
//! with congestion control anything for a time), drops those quietly, and
//! counts the rest as invalid (which the vanguards addon uses against
//! dropped-cell side channels). tor-spec §6.3 says the sender of END
//! "SHOULD kill the circuit if it receives more than permitted".
//!
//! Braid does the same accounting and returns the excess as a
//! [`StreamError::ClosedStream`](super::StreamError::ClosedStream)
//! violation. After the exit's own END, or a RESOLVED, nothing more may
//! arrive. The table is bounded (oldest entries are forgotten first); a
//! forgotten id that was once used is then ignored, as C-tor ignores cells
//! for unknown streams, while an id never used on the circuit is a
//! violation ([`UsedIds`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tor_cell::relaycell::RelayCmd;

use crate::ids::StreamId;

/// What a closed stream may still receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HalfClosed {
    /// A CONNECTED may still come (we closed while waiting for it).
    connected_pending: bool,
    /// DATA cells that may still come (fixed windows: the deliver window
    /// when we closed).
    data_pending: u32,
    /// Stream SENDMEs that may still come (fixed windows: one per 50 cells
    /// of ours not yet acknowledged).
    sendmes_pending: u32,
    /// Congestion control: DATA, XON and XOFF are accepted until then.
    cc_until: Option<Instant>,
    /// The exit may still send its own END (or RESOLVED) crossing ours.
    end_pending: bool,
    /// The exit's STREAM_TOKEN may still come (we sent STREAM_REGISTER
    /// and closed before it came, Braid proposal 001 §4.1).
    token_pending: bool,
}

impl HalfClosed {
    /// Nothing more may arrive (the exit ended the stream, or answered the
    /// RESOLVE).
    pub(crate) fn nothing() -> Self {
        HalfClosed {
            connected_pending: false,
            data_pending: 0,
            sendmes_pending: 0,
            cc_until: None,
            end_pending: false,
            token_pending: false,
        }
    }

    /// We sent END on a stream without congestion control (C-tor
    /// `connection_half_edge_add`): `deliver_window` DATA cells may still
    /// come unless we were resolving, and a SENDME for every 50 of our cells
    /// not yet acknowledged.
    pub(crate) fn after_end_windowed(
        connected_pending: bool,
        resolving: bool,
        deliver_window: u32,
        sendmes_pending: u32,
    ) -> Self {
        HalfClosed {
            connected_pending,
            data_pending: if resolving { 0 } else { deliver_window },
            sendmes_pending,
            cc_until: None,
            end_pending: true,
            token_pending: false,
        }
    }

    /// We sent END on a congestion-controlled stream: C-tor uses a time
    /// limit instead of counts (the larger of the circuit build timeout and
    /// the circuit's largest RTT).
    pub(crate) fn after_end_cc(connected_pending: bool, until: Instant) -> Self {
        HalfClosed {
            connected_pending,
            data_pending: 0,
            sendmes_pending: 0,
            cc_until: Some(until),
            end_pending: true,
            token_pending: false,
        }
    }

    /// A migrated stream's old id after both MIGRATE_MARKs (Braid proposal
    /// 001 §4.2): no END was sent and nothing but the peer's flow control
    /// cells already in flight may come: XON and XOFF until `cc_until`
    /// (congestion control), `sendmes_pending` stream SENDMEs (fixed
    /// windows). DATA or END is a violation.
    pub(crate) fn after_migration(cc_until: Option<Instant>, sendmes_pending: u32) -> Self {
        HalfClosed {
            connected_pending: false,
            data_pending: 0,
            sendmes_pending,
            cc_until,
            end_pending: false,
            token_pending: false,
        }
    }

    /// A message with `cmd` arrived at `now`. Returns true if it was within
    /// what may still arrive (drop it quietly), false if the exit sent more
    /// than it could have. An acceptable END or RESOLVED ends the
    /// accounting: nothing more may arrive after it.
    /// The same, where the exit may still send the STREAM_TOKEN that
    /// answers our STREAM_REGISTER (once).
    pub(crate) fn with_token_pending(mut self) -> Self {
        self.token_pending = true;
        self
    }

    pub(crate) fn accept(&mut self, now: Instant, cmd: RelayCmd) -> bool {
        let within_cc = self.cc_until.is_some_and(|t| now <= t);
        // After a migration (no END crossed) no DATA may come: only the
        // flow control cells in flight.
        let data_like = matches!(cmd, RelayCmd::XON | RelayCmd::XOFF)
            || (cmd == RelayCmd::DATA && (self.end_pending || self.data_pending > 0));
        match cmd {
            RelayCmd::END | RelayCmd::RESOLVED if self.end_pending => {
                *self = HalfClosed::nothing();
                true
            }
            RelayCmd::CONNECTED if self.connected_pending => {
                self.connected_pending = false;
                true
            }
            c if self.token_pending && u8::from(c) == crate::stream::migrate_wire::CMD_TOKEN => {
                self.token_pending = false;
                true
            }
            _ if data_like && within_cc => true,
            _ if data_like && self.data_pending > 0 => {
                self.data_pending -= 1;
                true
            }
            RelayCmd::SENDME if self.sendmes_pending > 0 => {
                self.sendmes_pending -= 1;
                true
            }
            _ => false,
        }
    }
}

/// A bounded table of closed streams' [`HalfClosed`] accounting, oldest
/// forgotten first.
#[derive(Debug, Clone)]
pub(crate) struct HalfClosedTable {
    /// Entries with their insertion number.
    entries: HashMap<StreamId, (u64, HalfClosed)>,
    /// Insertion number to id, for eviction in order.
    order: BTreeMap<u64, StreamId>,
    /// Next insertion number.
    next_seq: u64,
    /// Bound on `entries`.
    limit: usize,
}

impl HalfClosedTable {
    /// An empty table holding at most `limit` entries.
    pub(crate) fn new(limit: usize) -> Self {
        HalfClosedTable {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            limit,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if `id` has an entry.
    pub(crate) fn contains(&self, id: StreamId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Add (or replace) the entry for `id`, forgetting the oldest entries
    /// if the table is full.
    pub(crate) fn insert(&mut self, id: StreamId, hc: HalfClosed) {
        self.remove(id);
        if self.limit == 0 {
            return;
        }
        while self.entries.len() >= self.limit {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&old);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.entries.insert(id, (seq, hc));
        self.order.insert(seq, id);
    }

    /// Forget `id`.
    pub(crate) fn remove(&mut self, id: StreamId) {
        if let Some((seq, _)) = self.entries.remove(&id) {
            self.order.remove(&seq);
        }
    }

    /// Account for a message on `id`: `None` if there is no entry,
    /// otherwise whether it was acceptable. An END or RESOLVED that was
    /// acceptable closes the accounting; the entry then stays with nothing
    /// more allowed, so that later cells are violations.
    pub(crate) fn accept(&mut self, now: Instant, id: StreamId, cmd: RelayCmd) -> Option<bool> {
        let (_, hc) = self.entries.get_mut(&id)?;
        Some(hc.accept(now, cmd))
    }
}

/// One bit per stream id: set once a BEGIN or RESOLVE for it went out on
/// this circuit (8 KiB).
#[derive(Debug, Clone)]
pub(crate) struct UsedIds {
    /// 65536 bits.
    bits: Box<[u64]>,
}

impl UsedIds {
    /// No id used yet.
    pub(crate) fn new() -> Self {
        UsedIds {
            bits: vec![0u64; 1024].into_boxed_slice(),
        }
    }

    /// Word index and mask of `id`.
    fn pos(id: StreamId) -> (usize, u64) {
        let v = id.get();
        (usize::from(v >> 6), 1u64 << (v & 63))
    }

    /// Mark `id` as used.
    pub(crate) fn set(&mut self, id: StreamId) {
        let (w, m) = Self::pos(id);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= m;
        }
    }

    /// True if `id` was ever used.
    pub(crate) fn contains(&self, id: StreamId) -> bool {
        let (w, m) = Self::pos(id);
        self.bits.get(w).is_some_and(|word| word & m != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(n: u16) -> StreamId {
        StreamId::new(n).unwrap()
    }

    #[test]
    fn windowed_accounting() {
        let now = Instant::now();
        let mut hc = HalfClosed::after_end_windowed(true, false, 2, 1);
        assert!(hc.accept(now, RelayCmd::CONNECTED));
        assert!(!hc.accept(now, RelayCmd::CONNECTED));
        assert!(hc.accept(now, RelayCmd::DATA));
        assert!(hc.accept(now, RelayCmd::DATA));
        assert!(!hc.accept(now, RelayCmd::DATA));
        assert!(hc.accept(now, RelayCmd::SENDME));
        assert!(!hc.accept(now, RelayCmd::SENDME));
        assert!(!hc.accept(now, RelayCmd::BEGIN));
        assert!(hc.accept(now, RelayCmd::END));
        assert!(!hc.accept(now, RelayCmd::END));
        // A RESOLVE stream gets no DATA.
        let mut r = HalfClosed::after_end_windowed(false, true, 500, 0);
        assert!(!r.accept(now, RelayCmd::DATA));
        assert!(r.accept(now, RelayCmd::RESOLVED));
    }

    #[test]
    fn cc_accounting_is_timed() {
        let now = Instant::now();
        let mut hc = HalfClosed::after_end_cc(false, now + Duration::from_secs(1));
        for _ in 0..1000 {
            assert!(hc.accept(now, RelayCmd::DATA));
        }
        assert!(hc.accept(now, RelayCmd::XOFF));
        assert!(!hc.accept(now, RelayCmd::SENDME));
        assert!(!hc.accept(now + Duration::from_secs(2), RelayCmd::DATA));
        let mut nothing = HalfClosed::nothing();
        assert!(!nothing.accept(now, RelayCmd::DATA));
        assert!(!nothing.accept(now, RelayCmd::END));
    }

    #[test]
    fn table_is_bounded_oldest_first() {
        let now = Instant::now();
        let mut t = HalfClosedTable::new(2);
        t.insert(id(1), HalfClosed::nothing());
        t.insert(id(2), HalfClosed::after_end_windowed(false, false, 1, 0));
        t.insert(id(3), HalfClosed::nothing());
        assert_eq!(t.len(), 2);
        assert!(!t.contains(id(1)));
        assert_eq!(t.accept(now, id(1), RelayCmd::DATA), None);
        assert_eq!(t.accept(now, id(2), RelayCmd::DATA), Some(true));
        assert_eq!(t.accept(now, id(2), RelayCmd::DATA), Some(false));
        t.remove(id(3));
        assert_eq!(t.len(), 1);
        // Re-inserting replaces.
        t.insert(id(2), HalfClosed::nothing());
        assert_eq!(t.len(), 1);
        let mut z = HalfClosedTable::new(0);
        z.insert(id(1), HalfClosed::nothing());
        assert_eq!(z.len(), 0);
    }

    #[test]
    fn used_ids() {
        let mut u = UsedIds::new();
        assert!(!u.contains(id(1)));
        u.set(id(1));
        u.set(id(u16::MAX));
        assert!(u.contains(id(1)));
        assert!(u.contains(id(u16::MAX)));
        assert!(!u.contains(id(2)));
        assert!(!u.contains(id(65)));
    }
}
