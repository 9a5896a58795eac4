//! Tests of the learned circuit build timeout (path-spec §2.4).

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn the_initial_timeout_until_enough_builds() {
    let mut b = BuildTimes::new(BuildTimeParams::default());
    assert_eq!(b.timeout(), ms(60_000));
    for _ in 0..99 {
        b.note_built(ms(300));
    }
    assert!(!b.is_learned());
    assert_eq!(b.timeout(), ms(60_000));
    b.note_built(ms(300));
    assert!(b.is_learned());
    assert!(b.timeout() < ms(1000), "{:?}", b.timeout());
}

/// Build times drawn from a Pareto curve with Xm = 200 ms and alpha = 3:
/// the learned timeout lands near its 80% point (200 / 0.2^(1/3) ≈ 342
/// ms; the 10 ms bins and the mode average move Xm a little).
#[test]
fn a_pareto_sample_gives_its_quantile() {
    let mut b = BuildTimes::new(BuildTimeParams::default());
    // Deterministic quantiles of the curve instead of random draws.
    let n = 1000;
    for i in 0..n {
        let u = (i as f64 + 0.5) / n as f64;
        let x = 200.0 / (1.0 - u).powf(1.0 / 3.0);
        b.note_built(Duration::from_secs_f64(x / 1000.0));
    }
    let t = b.timeout().as_secs_f64() * 1000.0;
    assert!((300.0..400.0).contains(&t), "timeout {t} ms");
    // The close timeout is at least the initial timeout (§2.4.3).
    assert_eq!(b.close_timeout(), ms(60_000));
    // Longer circuits scale by Actions(N) / Actions(3).
    assert_eq!(b.timeout_for_hops(4), b.timeout() * 10 / 6);
    assert_eq!(b.timeout_for_hops(1), b.timeout() / 6);
}

#[test]
fn the_timeout_is_capped_at_the_longest_build_seen() {
    let mut b = BuildTimes::new(BuildTimeParams::default());
    for i in 0..200u64 {
        b.note_built(ms(100 + i % 7));
    }
    assert!(b.timeout() <= ms(106), "{:?}", b.timeout());
    assert!(b.timeout() >= ms(10));
}

/// §2.4.5: 18 of the last 20 builds time out after a hop: the history is
/// discarded and the timeout starts again from the initial value.
#[test]
fn many_timeouts_reset_the_history() {
    let mut b = BuildTimes::new(BuildTimeParams::default());
    for _ in 0..150 {
        b.note_built(ms(100));
    }
    assert!(b.timeout() < ms(1000));
    for _ in 0..17 {
        b.note_timed_out(1);
    }
    assert_eq!(b.resets(), 0);
    b.note_timed_out(2);
    assert_eq!(b.resets(), 1);
    assert_eq!(b.recorded(), 0);
    assert_eq!(b.timeout(), ms(60_000));
    // A second reset with the timeout already at the initial value doubles it.
    for _ in 0..18 {
        b.note_timed_out(1);
    }
    assert_eq!(b.resets(), 2);
    assert_eq!(b.timeout(), ms(120_000));
}

/// A build that failed before its first hop (the guard unreachable) says
/// nothing about the network's build times (§2.4.5 counts circuits that
/// completed at least one hop).
#[test]
fn timeouts_before_the_first_hop_do_not_reset() {
    let mut b = BuildTimes::new(BuildTimeParams::default());
    for _ in 0..50 {
        b.note_timed_out(0);
    }
    assert_eq!(b.resets(), 0);
}

/// Abandoned builds keep the tail heavy: with a fifth of builds abandoned
/// the timeout is longer than with the fast builds alone.
#[test]
fn abandoned_builds_count_in_the_tail() {
    let mut fast = BuildTimes::new(BuildTimeParams::default());
    let mut mixed = BuildTimes::new(BuildTimeParams::default());
    for i in 0..400u64 {
        let t = ms(100 + (i * 37) % 400);
        fast.note_built(t);
        mixed.note_built(t);
        if i % 5 == 0 {
            mixed.note_timed_out(0);
        }
    }
    assert!(
        mixed.timeout() > fast.timeout(),
        "{:?} vs {:?}",
        mixed.timeout(),
        fast.timeout()
    );
}

#[test]
fn consensus_parameters_are_clamped_and_disable() {
    let p = BuildTimeParams::from_params(|name| match name {
        "cbtquantile" => Some(5),
        "cbtclosequantile" => Some(3),
        "cbtmincircs" => Some(0),
        "cbtinitialtimeout" => Some(1),
        "cbtmintimeout" => Some(50),
        _ => None,
    });
    assert_eq!(p.quantile, 0.10);
    assert_eq!(p.close_quantile, 0.10);
    assert_eq!(p.min_circs, 1);
    assert_eq!(p.min_timeout, ms(50));
    assert_eq!(p.initial_timeout, ms(50));
    assert_eq!(
        BuildTimeParams::from_params(|_| None),
        BuildTimeParams::default()
    );

    let mut b = BuildTimes::new(BuildTimeParams::default());
    for _ in 0..120 {
        b.note_built(ms(100));
    }
    assert!(b.is_learned());
    b.set_params(BuildTimeParams::from_params(|n| {
        (n == "cbtdisabled").then_some(1)
    }));
    assert_eq!(b.recorded(), 0);
    assert_eq!(b.timeout(), ms(60_000));
    b.note_built(ms(100));
    assert_eq!(b.recorded(), 0);
}

#[test]
fn the_mode_average_breaks_ties_towards_shorter_times() {
    // Bins 10 (100-109 ms) and 30 (300-309 ms) both twice; one mode.
    assert_eq!(mode_average(&[100, 105, 300, 301, 500], 1), 105.0);
    // Two modes: both bins, equal weight.
    assert_eq!(mode_average(&[100, 105, 300, 301, 500], 2), 205.0);
    assert_eq!(mode_average(&[], 3), 0.0);
}

#[test]
fn the_records_survive_a_restart() {
    let mut b = BuildTimes::new(BuildTimeParams::default());
    for i in 0..150u64 {
        b.note_built(ms(100 + i % 90));
        if i % 10 == 0 {
            b.note_timed_out(0);
        }
    }
    let text = b.to_text();
    let (again, skipped) = BuildTimes::from_text(&text, BuildTimeParams::default());
    assert_eq!(skipped, 0);
    assert_eq!(again.recorded(), b.recorded());
    assert_eq!(again.timeout(), b.timeout());
    assert!(again.is_learned());
    // A damaged file loses only its bad lines.
    let damaged = format!("{text}garbage\n-5\n\n120\n");
    let (d, skipped) = BuildTimes::from_text(&damaged, BuildTimeParams::default());
    assert_eq!(skipped, 2);
    assert_eq!(d.recorded(), b.recorded() + 1);
    // Never more than MAX_RECORDED, the newest kept.
    let long: String = (0..1500).map(|i| format!("{}\n", 100 + i)).collect();
    let (l, _) = BuildTimes::from_text(&long, BuildTimeParams::default());
    assert_eq!(l.recorded(), MAX_RECORDED);
    assert!(l.timeout() <= ms(1599));
}

proptest! {
    // Each case records up to 1,500 builds, each recomputing the fit over
    // up to 1,000 records: a few dozen cases cover it.
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Whatever the builds, the timeouts stay in their bounds: the usage
    /// timeout at least cbtmintimeout and, once learned, at most the
    /// longest build seen; the close timeout at least the initial one;
    /// never more than MAX_RECORDED records.
    /// Any text: never a panic, at most MAX_RECORDED records, the
    /// timeouts in their bounds.
    #[test]
    fn any_saved_text_loads(text in "[0-9a-z#\\n -]{0,400}") {
        let (b, _) = BuildTimes::from_text(&text, BuildTimeParams::default());
        prop_assert!(b.recorded() <= MAX_RECORDED);
        prop_assert!(b.timeout() >= ms(10));
        prop_assert!(b.close_timeout() >= ms(60_000));
    }

    #[test]
    fn timeouts_stay_in_bounds(events in proptest::collection::vec((0u64..120_000, 0u8..4), 0..1100)) {
        let mut b = BuildTimes::new(BuildTimeParams::default());
        let mut longest = 0;
        for (t, kind) in events {
            if kind == 0 {
                b.note_timed_out(usize::from(t % 3 == 0));
            } else {
                longest = longest.max(t);
                b.note_built(ms(t));
            }
            prop_assert!(b.timeout() >= ms(10));
            prop_assert!(b.close_timeout() >= ms(60_000));
            prop_assert!(b.recorded() <= MAX_RECORDED);
            if b.is_learned() {
                prop_assert!(b.timeout() <= ms(longest.max(10)), "{:?} > {longest}", b.timeout());
            }
        }
    }
}
