//! Tests of [`super`]: holding cells until gaps fill, the queue bounds and hostile sequences.

use proptest::prelude::*;

use super::*;

fn lim(max_bytes: usize, max_cells: usize) -> ReorderLimit {
    ReorderLimit {
        max_bytes,
        max_cells,
        max_ahead: 1000,
    }
}

#[test]
fn holds_until_gap_fills() {
    let mut q = ReorderQueue::new(lim(1000, 10));
    q.insert(3, "c", 10).unwrap();
    q.insert(2, "b", 10).unwrap();
    assert_eq!(q.pop(), None);
    assert_eq!(q.unreceived_upto(5), 3);
    q.insert(1, "a", 10).unwrap();
    assert_eq!(q.expected(), 4);
    assert_eq!(q.pop(), Some((1, "a")));
    assert_eq!(q.pop(), Some((2, "b")));
    assert_eq!(q.pop(), Some((3, "c")));
    assert_eq!(q.pop(), None);
    assert_eq!(q.bytes(), 0);
    assert_eq!(q.peak_bytes(), 30);
    assert_eq!(q.peak_cells(), 3);
    // Stale and duplicate.
    assert_eq!(
        q.insert(2, "x", 1),
        Err(ReorderError::Stale {
            seq: 2,
            delivered: 3
        })
    );
    q.insert(6, "f", 1).unwrap();
    assert_eq!(q.insert(6, "f", 1), Err(ReorderError::Duplicate { seq: 6 }));
    assert!(matches!(
        q.insert(5000, "z", 1),
        Err(ReorderError::TooFarAhead { .. })
    ));
}

#[test]
fn full_is_refused_without_growth() {
    let mut q = ReorderQueue::new(lim(100, 3));
    q.insert(2, 2, 40).unwrap();
    q.insert(3, 3, 40).unwrap();
    // Bytes.
    assert!(matches!(q.insert(4, 4, 40), Err(ReorderError::Full { .. })));
    q.insert(4, 4, 20).unwrap();
    // Cells.
    assert!(matches!(q.insert(5, 5, 0), Err(ReorderError::Full { .. })));
    assert_eq!(q.cells(), 3);
    assert_eq!(q.bytes(), 100);
}

#[test]
fn mptcp_default_limit() {
    let ms = Duration::from_millis;
    // Two 2 MiB/s legs at 100 and 200 ms: 2 x 4 MiB/s x 0.2 s = 1.6 MiB.
    let l = ReorderQueue::<()>::default_limit(&[(2 << 20, ms(100)), (2 << 20, ms(200))]);
    assert_eq!(l.max_bytes, (8 << 20) / 5);
    assert_eq!(l.max_cells, l.max_bytes / ReorderLimit::BYTES_PER_CELL);
    // Floor and ceiling.
    let l = ReorderQueue::<()>::default_limit(&[(1000, ms(10))]);
    assert_eq!(l.max_bytes, ReorderLimit::FLOOR_BYTES);
    assert_eq!(
        ReorderQueue::<()>::default_limit(&[]).max_bytes,
        ReorderLimit::FLOOR_BYTES
    );
    // The notes' example: 1 Mb/s at 1000 ms beside 100 Mb/s at 10 ms
    // wants ~25 MB (2 x 12.6 MB/s x 1 s): under the ceiling.
    let l = ReorderQueue::<()>::default_limit(&[(125_000, ms(1000)), (12_500_000, ms(10))]);
    assert_eq!(l.max_bytes, 25_250_000);
    let l = ReorderQueue::<()>::default_limit(&[(u64::MAX, Duration::MAX)]);
    assert_eq!(l.max_bytes, ReorderLimit::CEILING_BYTES);
}

/// A permutation of 1..=n where no element is displaced by more than
/// `w` positions from its sorted place (a window-limited reordering).
fn windowed_perm(n: usize, keys: &[u32], w: usize) -> Vec<u64> {
    let mut v: Vec<(usize, u64)> = (0..n)
        .map(|i| {
            let jitter = keys.get(i).map_or(0, |k| *k as usize % (w + 1));
            (i + jitter, i as u64 + 1)
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

/// The most cells a run holds at once when the caller pops after every
/// insert.
fn max_held(order: &[u64]) -> usize {
    let mut got = std::collections::BTreeSet::new();
    let mut next = 1;
    let mut peak = 0;
    for s in order {
        got.insert(*s);
        peak = peak.max(got.len());
        while got.remove(&next) {
            next += 1;
        }
    }
    peak
}

proptest! {
    /// Any arrival order that fits in the bound is delivered exactly
    /// once, in order, and the held bytes never exceed the bound.
    #[test]
    fn any_permutation_within_bound(
        n in 1_usize..300,
        keys in proptest::collection::vec(any::<u32>(), 300),
        w in 0_usize..64,
        cost in 1_usize..600,
    ) {
        let order = windowed_perm(n, &keys, w);
        let need = max_held(&order);
        let limit = lim(need * cost, need);
        let mut q = ReorderQueue::new(limit);
        let mut out = Vec::new();
        for s in &order {
            q.insert(*s, *s, cost).unwrap();
            prop_assert!(q.bytes() <= limit.max_bytes);
            prop_assert!(q.cells() <= limit.max_cells);
            while let Some((seq, item)) = q.pop() {
                prop_assert_eq!(seq, item);
                out.push(seq);
            }
        }
        prop_assert_eq!(out, (1..=n as u64).collect::<Vec<_>>());
        prop_assert!(q.is_empty());
        prop_assert_eq!(q.bytes(), 0);
        prop_assert!(q.peak_bytes() <= limit.max_bytes);
    }

    /// Hostile input: arbitrary sequence numbers (gaps that never fill,
    /// huge numbers, repeats). The queue never holds more than its
    /// bound, refused cells change nothing, and whatever comes out is
    /// in order, each number once.
    #[test]
    fn hostile_sequences_bounded(
        seqs in proptest::collection::vec(
            prop_oneof![1_u64..50, 50_u64..5000, any::<u64>()], 0..400),
        costs in proptest::collection::vec(0_usize..2000, 400),
        pops in proptest::collection::vec(any::<bool>(), 400),
    ) {
        let limit = ReorderLimit { max_bytes: 8000, max_cells: 20, max_ahead: 1000 };
        let mut q = ReorderQueue::new(limit);
        let mut last = 0;
        for (i, s) in seqs.iter().enumerate() {
            let cost = costs.get(i).copied().unwrap_or(1);
            let (b, c, e) = (q.bytes(), q.cells(), q.expected());
            if q.insert(*s, *s, cost).is_err() {
                prop_assert_eq!((q.bytes(), q.cells(), q.expected()), (b, c, e));
            }
            prop_assert!(q.bytes() <= limit.max_bytes);
            prop_assert!(q.cells() <= limit.max_cells);
            if pops.get(i).copied().unwrap_or(true) {
                while let Some((seq, _)) = q.pop() {
                    prop_assert_eq!(seq, last + 1);
                    last = seq;
                }
            }
        }
        prop_assert!(q.peak_bytes() <= limit.max_bytes);
        prop_assert!(q.peak_cells() <= limit.max_cells);
    }

    /// The O(log n) [`ReorderQueue::unreceived_upto`] agrees with
    /// walking the held cells, and with a model of what arrived, for
    /// any `upto` (below, at, inside and past the held numbers), after
    /// every insert or pop of arbitrary (clustered, sparse, refused)
    /// sequence numbers; the tree stays a balanced search tree.
    #[test]
    fn unreceived_upto_matches_naive(
        ops in proptest::collection::vec(
            (prop_oneof![
                3 => 1_u64..40,
                3 => 1_u64..400,
                1 => 390_u64..2000,
                1 => any::<u64>(),
            ], any::<bool>(), 0_u64..450),
            0..300),
    ) {
        let limit = ReorderLimit { max_bytes: 1 << 20, max_cells: 200, max_ahead: 1500 };
        let mut q = ReorderQueue::new(limit);
        // Sequence numbers that arrived (held, ready or taken).
        let mut arrived = std::collections::BTreeSet::new();
        for (seq, pop, probe) in ops {
            if pop {
                q.pop();
            } else if q.insert(seq, seq, 1).is_ok() {
                arrived.insert(seq);
            }
            q.pending.check();
            let e = q.expected();
            for upto in [0, e.saturating_sub(1), e, e + probe, e + 2 * probe, u64::MAX] {
                let fast = q.unreceived_upto(upto);
                prop_assert_eq!(fast, q.unreceived_upto_naive(upto), "upto {}", upto);
                let model = if upto < e {
                    0
                } else {
                    let held = arrived.range(e..=upto).count() as u64;
                    (upto - e).saturating_add(1) - held
                };
                prop_assert_eq!(fast, model, "upto {}", upto);
            }
        }
    }
}

/// The tree under the queue: ascending, descending and interleaved
/// keys stay balanced, counts are exact, the smallest goes first.
#[test]
fn pending_tree() {
    let mut p = Pending::new();
    assert_eq!(
        (p.len(), p.first_key(), p.count_upto(u64::MAX)),
        (0, None, 0)
    );
    assert_eq!(p.remove_first_if(1), None);
    for k in (1..=500_u64)
        .map(|i| i * 2)
        .chain((1..=500).rev().map(|i| i * 2 + 1001))
    {
        assert_eq!(p.insert(k, k), None);
        p.check();
    }
    assert_eq!(p.insert(4, 40), Some(4));
    assert_eq!(p.len(), 1000);
    assert!(p.contains_key(1000) && !p.contains_key(999) && !p.contains_key(0));
    // 2, 4, ..., 1000 then 1003, 1005, ..., 2001.
    assert_eq!(p.count_upto(1), 0);
    assert_eq!(p.count_upto(2), 1);
    assert_eq!(p.count_upto(999), 499);
    assert_eq!(p.count_upto(1002), 500);
    assert_eq!(p.count_upto(1003), 501);
    assert_eq!(p.count_upto(2001), 1000);
    // Height stays logarithmic (AVL: < 1.45 log2(n + 2)).
    assert!(height(&p.root) <= 14, "{}", height(&p.root));
    assert_eq!(p.remove_first_if(4), None);
    assert_eq!(p.remove_first_if(2), Some(2));
    assert_eq!(p.remove_first_if(4), Some(40));
    p.check();
    let mut last = 4;
    while let Some(k) = p.first_key() {
        assert!(k > last);
        assert_eq!(p.remove_first_if(k), Some(k));
        p.check();
        last = k;
    }
    assert!(p.is_empty());
    assert_eq!(p.keys(), Vec::<u64>::new());
}
