//! Tests of [`super::super`]: middle and exit choice follows the bandwidth weights
//! (chi-square against the expected distribution).

use super::*;

/// Pearson's chi-square statistic of observed counts against expected
/// probabilities.
fn chi_square(observed: &[u64], expected: &[f64], n: u64) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn bandwidth_weighting_follows_weights() {
    // (flags, bandwidth)
    let spec: [(&str, u64); 12] = [
        ("Guard", 100),
        ("Guard", 200),
        ("Guard", 300),
        ("Guard", 400),
        ("", 50),
        ("", 150),
        ("", 500),
        ("Exit", 300),
        ("Exit", 600),
        ("Exit", 900),
        ("Guard Exit", 250),
        ("Guard Exit", 700),
    ];
    let relays: Vec<Relay> = spec
        .iter()
        .zip(1_u8..)
        .map(|((f, bw), n)| relay(n, f, *bw, n))
        .collect();
    let w =
        BandwidthWeights::parse("Wmg=4000 Wmm=10000 Wme=2000 Wmd=1000 Wee=8000 Wed=3000").unwrap();
    let class_weight_middle = |f: &str| match f {
        "Guard" => 4000.0,
        "" => 10000.0,
        "Exit" => 2000.0,
        _ => 1000.0,
    };
    let class_weight_exit = |f: &str| match f {
        "Exit" => 8000.0,
        "Guard Exit" => 3000.0,
        _ => 0.0,
    };
    let mut rng = StdRng::seed_from_u64(20_261_121);
    let cfg = PathConfig::default();
    const N: u64 = 100_000;
    for (position, weight_of) in [
        (
            Position::Middle,
            &class_weight_middle as &dyn Fn(&str) -> f64,
        ),
        (Position::Exit, &class_weight_exit),
    ] {
        let raw: Vec<f64> = spec
            .iter()
            .map(|(f, bw)| *bw as f64 * weight_of(f))
            .collect();
        let total: f64 = raw.iter().sum();
        let mut counts = vec![0_u64; relays.len()];
        for _ in 0..N {
            let r = match position {
                Position::Middle => choose_middle(&relays, &w, &cfg, &[], &mut rng),
                _ => choose_exit(&relays, &w, &cfg, &[], &mut rng),
            }
            .unwrap();
            counts[usize::from(r.id.as_bytes()[0] - 1)] += 1;
        }
        // Relays with zero expected weight must never appear; leave them
        // out of the statistic.
        let (obs, exp): (Vec<u64>, Vec<f64>) = counts
            .iter()
            .zip(&raw)
            .filter_map(|(&c, &r)| {
                if r == 0.0 {
                    assert_eq!(c, 0);
                    None
                } else {
                    Some((c, r / total))
                }
            })
            .unzip();
        let chi = chi_square(&obs, &exp, N);
        // Degrees of freedom: 11 (middle) and 4 (exit); the 0.1% critical
        // values are 31.3 and 18.5. Be generous.
        let limit = if position == Position::Middle {
            45.0
        } else {
            30.0
        };
        assert!(
            chi < limit,
            "{position}: chi-square {chi} (counts {counts:?})"
        );
    }
}
