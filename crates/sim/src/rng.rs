//! The simulation's random numbers: xoshiro256++ from one `u64` seed.
//! `rand` documents this generator as reproducible (same seed, same
//! numbers, on every platform), which `StdRng` is not promised to be
//! across versions.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// A seeded random number generator.
#[derive(Debug, Clone)]
pub struct SimRng {
    /// The generator.
    inner: Xoshiro256PlusPlus,
}

impl SimRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng {
            inner: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// An independent generator for sub-stream `stream` of `seed` (one per
    /// link), so that adding a link leaves the others' draws unchanged.
    pub fn stream(seed: u64, stream: u64) -> Self {
        Self::new(splitmix64(seed ^ splitmix64(stream.wrapping_add(1))))
    }

    /// True with probability `ppm` / 1 000 000.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.inner.random_range(0u32..1_000_000) < ppm
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.inner.random_range(0..=max)
        }
    }
}

/// SplitMix64's output function: a good bijective mixer for seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers() {
        let (mut a, mut b) = (SimRng::stream(7, 1), SimRng::stream(7, 1));
        let xs: Vec<u64> = (0..20).map(|_| a.up_to(1000)).collect();
        let ys: Vec<u64> = (0..20).map(|_| b.up_to(1000)).collect();
        assert_eq!(xs, ys);
        let mut c = SimRng::stream(7, 2);
        let zs: Vec<u64> = (0..20).map(|_| c.up_to(1000)).collect();
        assert_ne!(xs, zs);
    }

    #[test]
    fn chances() {
        let mut r = SimRng::new(1);
        assert!(!(0..1000).any(|_| r.chance_ppm(0)));
        assert!((0..1000).all(|_| r.chance_ppm(1_000_000)));
        let hits = (0..100_000).filter(|_| r.chance_ppm(100_000)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert_eq!(r.up_to(0), 0);
    }
}
