//! Summary statistics of the samples: mean, median, 90th percentile and
//! range.

use serde::Serialize;

/// The summary of a set of figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Summary {
    /// How many figures.
    pub(super) n: usize,
    /// Their mean.
    pub(super) mean: f64,
    /// Their median (the mean of the middle two for an even count).
    pub(super) median: f64,
    /// Their 90th percentile, nearest rank: the smallest figure with at
    /// least 90 % of the figures at or below it.
    pub(super) p90: f64,
    /// The smallest.
    pub(super) min: f64,
    /// The largest.
    pub(super) max: f64,
}

/// The summary of `v`; `None` when it is empty or holds a NaN.
pub(super) fn summary(v: &[f64]) -> Option<Summary> {
    if v.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let low = *sorted.get(n.checked_sub(1)? / 2)?;
    let high = *sorted.get(n / 2)?;
    // Nearest rank: ceil(0.9 n), 1-based; 9 n / 10 rounded up.
    let rank = (9 * n).div_ceil(10).max(1);
    Some(Summary {
        n,
        mean: sorted.iter().sum::<f64>() / n as f64,
        median: (low + high) / 2.0,
        p90: *sorted.get(rank - 1)?,
        min: *sorted.first()?,
        max: *sorted.last()?,
    })
}

/// The mean of `v`; `None` when it is empty.
pub(super) fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn odd_and_even_counts() {
        let s = summary(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(s.n, 3);
        assert_eq!((s.mean, s.median, s.min, s.max), (3.0, 3.0, 1.0, 5.0));
        // ceil(0.9 * 3) = 3rd of 3.
        assert_eq!(s.p90, 5.0);
        let s = summary(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.mean, 2.5);
        assert_eq!(s.p90, 4.0);
        let one = summary(&[7.0]).unwrap();
        assert_eq!(
            (one.median, one.p90, one.min, one.max),
            (7.0, 7.0, 7.0, 7.0)
        );
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        // 1..=10: the 9th figure; 1..=20: the 18th; 1..=11: the 10th.
        let range = |n: u32| (1..=n).map(f64::from).collect::<Vec<_>>();
        assert_eq!(summary(&range(10)).unwrap().p90, 9.0);
        assert_eq!(summary(&range(20)).unwrap().p90, 18.0);
        assert_eq!(summary(&range(11)).unwrap().p90, 10.0);
        assert_eq!(summary(&range(100)).unwrap().p90, 90.0);
        // Order does not matter.
        let mut r = range(20);
        r.reverse();
        assert_eq!(summary(&r).unwrap().p90, 18.0);
        assert_eq!(summary(&r).unwrap().median, 10.5);
    }

    #[test]
    fn nothing_to_summarise() {
        assert_eq!(summary(&[]), None);
        assert_eq!(summary(&[1.0, f64::NAN]), None);
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
    }
}
