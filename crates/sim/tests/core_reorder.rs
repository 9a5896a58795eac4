//! braid-core's bounded reorder queue (`ReorderQueue`, prop 329 §4.1) at
//! the simulated receiver, through [`CoreReorder`], with
//! [`BTreeReorder`] as the unbounded reference.
//!
//! - On the standard scenarios every scheduler reaches its fraction of the
//!   summed capacity with the core queue at the limit a set derives from
//!   its legs (`ReorderQueue::default_limit`), the queue never goes over
//!   that limit, and the run is the very run of the reference (same cells
//!   delivered at the same times). ECF also completes with the queue
//!   limited to 2 × the largest leg's bandwidth-delay product.
//! - Under adversarial delays (a leg with large jitter, TCP retransmission
//!   penalties and periodic stalls) the core queue never holds more than
//!   its limit: either the transfer completes or the queue refuses a cell
//!   with `ReorderError::Full` (the error a set closes on with
//!   RESOURCELIMIT) and the run stops there. Which of the two happens is
//!   predicted from the reference's peak.
//!
//! `cargo test -p braid-sim --test core_reorder -- --nocapture` prints the
//! figures.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: helpers outside #[test] functions print, index and unwrap"
)]

use std::time::Duration;

use braid_core::conflux::{ReorderError, ReorderLimit};
use braid_core::conflux_sched::SchedulerKind;
use braid_sim::scenario::MIB;
use braid_sim::{
    BTreeReorder, CoreReorder, DATA_BYTES, LegConfig, LinkConfig, Report, Scenario, SinkError,
    run_with_sink,
};
use proptest::prelude::*;

/// Run `sc` with a fresh scheduler of `kind`, once with the unbounded
/// reference and once with `core`: the two reports.
fn both(sc: &Scenario, kind: SchedulerKind, core: &mut CoreReorder) -> (Report, Report) {
    let reference = run_with_sink(sc, kind.build().as_mut(), &mut BTreeReorder::new());
    let r = run_with_sink(sc, kind.build().as_mut(), core);
    (reference, r)
}

/// The invariants of a run through the core queue, whatever its outcome:
/// the queue stayed within its byte and cell limits by its own count and by
/// the simulator's; a run either delivered everything in order or stopped
/// on the queue's `Full`.
fn check_bounded(sc: &Scenario, r: &Report, core: &CoreReorder) {
    let limit = core.limit();
    let max_bytes = limit.max_bytes as u64;
    assert!(core.peak_bytes() <= max_bytes, "{r}: {core:?}");
    assert!(core.peak_cells() <= limit.max_cells as u64, "{r}: {core:?}");
    assert!(r.peak_reorder_bytes <= max_bytes, "{r}: {max_bytes}");
    assert_eq!(r.bad_choices, 0, "{r}");
    assert_eq!(r.cc_errors, 0, "{r}");
    if r.completed {
        assert_eq!(r.sink_error, None, "{r}");
        assert_eq!(r.delivered_bytes, sc.transfer_bytes, "{r}");
        assert_eq!(core.last_error(), None, "{r}");
    } else {
        assert!(
            matches!(r.sink_error, Some(SinkError::Overflow { limit, .. }) if limit == max_bytes),
            "{r}: {:?}",
            r.sink_error
        );
        assert!(
            matches!(core.last_error(), Some(ReorderError::Full { .. })),
            "{r}: {:?}",
            core.last_error()
        );
        assert!(r.delivered_bytes < sc.transfer_bytes, "{r}");
    }
}

/// `(minrtt, lowrtt, ecf)` bounds on the fraction of the summed capacity,
/// from the measurements in `schedulers.rs` (LowRTT and ECF 0.96-0.985,
/// MinRTT about one leg's share) with a margin.
fn fraction_bounds(sc: &Scenario) -> [(f64, f64); 3] {
    match sc.name.as_str() {
        "1:1" | "10ms:200ms" => [(0.45, 0.6), (0.93, 1.0), (0.93, 1.0)],
        "1:3" => [(0.70, 0.8), (0.93, 1.0), (0.93, 1.0)],
        other => panic!("no bounds for {other}"),
    }
}

#[test]
fn standard_scenarios_through_the_core_queue() {
    println!("{} limit KB | core peak KB", Report::table_header());
    for sc in Scenario::standard() {
        let bounds = fraction_bounds(&sc);
        for (kind, (lo, hi)) in SchedulerKind::ALL.into_iter().zip(bounds) {
            let mut core = CoreReorder::for_scenario(&sc);
            let limit = core.limit();
            // The MPTCP limit is above its floor here: the legs are measured.
            assert!(limit.max_bytes >= ReorderLimit::FLOOR_BYTES);
            let (reference, r) = both(&sc, kind, &mut core);
            println!(
                "{r} {:.0} | {:.0}",
                limit.max_bytes as f64 / 1e3,
                core.peak_bytes() as f64 / 1e3
            );
            check_bounded(&sc, &r, &core);
            assert!(r.completed, "{r}: {:?}", r.sink_error);
            assert!(
                (lo..=hi).contains(&r.fraction),
                "{r}: fraction {} not in {lo}..={hi}",
                r.fraction
            );
            // The bounded queue changed nothing: same cells, same times.
            assert_eq!(r, reference, "{kind} on {}", sc.name);
            if kind == SchedulerKind::Ecf {
                assert!(r.reorder_in_bdps() < 2.0, "{r}");
                // The queue's own peak also counts the gap-filling cell.
                assert!(
                    core.peak_bytes() <= 2 * sc.max_leg_bdp_bytes(),
                    "{r}: core peak {}",
                    core.peak_bytes()
                );
            }
        }
    }
}

#[test]
fn ecf_completes_within_two_bdps_of_core_queue() {
    // The queue limited to 2 × the largest leg BDP (no floor): ECF needs
    // no more, and loses nothing to the bound.
    for sc in Scenario::standard() {
        let max = usize::try_from(2 * sc.max_leg_bdp_bytes()).unwrap();
        let mut core = CoreReorder::new(ReorderLimit::from_bytes(max));
        let (reference, r) = both(&sc, SchedulerKind::Ecf, &mut core);
        println!(
            "{r} limit {:.0} KB, core peak {:.0} KB",
            max as f64 / 1e3,
            core.peak_bytes() as f64 / 1e3
        );
        check_bounded(&sc, &r, &core);
        assert!(r.completed, "{r}: {:?}", r.sink_error);
        assert_eq!(r, reference);
    }
}

#[test]
fn standard_scenarios_with_the_sets_accounting() {
    // Charged as a ConfluxSet charges a held DATA message (payload plus
    // entry overhead), at the set's default limit: every scheduler still
    // completes at full speed.
    for sc in Scenario::standard() {
        let bounds = fraction_bounds(&sc);
        for (kind, (lo, _)) in SchedulerKind::ALL.into_iter().zip(bounds) {
            let mut core =
                CoreReorder::for_scenario(&sc).with_cell_overhead(CoreReorder::SET_CELL_OVERHEAD);
            let (reference, r) = both(&sc, kind, &mut core);
            check_bounded(&sc, &r, &core);
            assert!(r.completed, "{r}: {:?}", r.sink_error);
            assert!(r.fraction >= lo, "{r}");
            assert_eq!(r.duration, reference.duration, "{r} vs {reference}");
            // Charged more per cell than the payload the reference counts.
            if reference.peak_reorder_bytes > 0 {
                assert!(r.peak_reorder_bytes > reference.peak_reorder_bytes, "{r}");
            }
        }
    }
}

/// The fast leg is clean; the other has up to 40 ms of jitter per cell, 2 %
/// of cells delayed 400 ms by a TCP retransmission, and stalls 300 ms
/// every 1.5 s (cells pile up and arrive in a burst).
fn adversarial() -> Scenario {
    let bad = LegConfig::symmetric(MIB, Duration::from_millis(100)).map(|l| {
        l.with_jitter(Duration::from_millis(40))
            .with_loss(20_000, Duration::from_millis(400))
            .with_stalls(Duration::from_millis(1500), Duration::from_millis(300))
    });
    Scenario {
        time_limit: Duration::from_secs(120),
        ..Scenario::new(
            "adversarial",
            vec![
                LegConfig::symmetric(4 * MIB, Duration::from_millis(20)),
                bad,
            ],
            3,
        )
    }
}

/// What the core queue must do given the reference's peak: complete (and
/// be the reference's run) if even the gap-filling cell fits, overflow if
/// the reference held more than the limit. In between either is right.
fn check_against_reference(sc: &Scenario, reference: &Report, r: &Report, core: &CoreReorder) {
    check_bounded(sc, r, core);
    assert!(reference.completed, "{reference}");
    let max = core.limit().max_bytes as u64;
    if reference.peak_reorder_bytes + DATA_BYTES <= max {
        assert!(
            r.completed,
            "{r}: {:?} (reference {reference})",
            r.sink_error
        );
        assert_eq!(r, reference);
    }
    if reference.peak_reorder_bytes > max {
        assert!(!r.completed, "{r} (reference {reference})");
        // Stopped before going over: it held less than the reference did.
        assert!(r.peak_reorder_bytes < reference.peak_reorder_bytes);
    }
}

#[test]
fn adversarial_delays_never_take_the_core_queue_over_its_limit() {
    let sc = adversarial();
    let default = CoreReorder::default_limit(&sc).max_bytes;
    let tight = 96 * 1024;
    let generous = usize::try_from(sc.reorder_bound_bytes()).unwrap() + 2 * DATA_BYTES as usize;
    let mut outcomes = Vec::new();
    for max in [tight, default, generous] {
        for kind in SchedulerKind::ALL {
            let mut core = CoreReorder::new(ReorderLimit::from_bytes(max));
            let (reference, r) = both(&sc, kind, &mut core);
            println!(
                "{r} limit {:.0} KB, core peak {:.0} KB, reference peak {:.0} KB, {:?}",
                max as f64 / 1e3,
                core.peak_bytes() as f64 / 1e3,
                reference.peak_reorder_bytes as f64 / 1e3,
                r.sink_error
            );
            check_against_reference(&sc, &reference, &r, &core);
            outcomes.push((max, kind, r.completed));
        }
    }
    // Within the model's own bound every scheduler completes; with 96 KB
    // the schedulers that use the bad leg overflow.
    for (max, kind, completed) in &outcomes {
        if *max == generous {
            assert!(completed, "{kind} at {max}");
        }
        if *max == tight && *kind != SchedulerKind::MinRtt {
            assert!(!completed, "{kind} at {max}");
        }
    }
}

/// One leg: bandwidth, RTT, loss, penalty, jitter, stalls, queue.
fn arb_leg() -> impl Strategy<Value = LegConfig> {
    (
        256 * 1024u64..4 * MIB,
        5u64..300,
        0u32..50_000,
        0u64..600,
        0u64..60,
        (0u64..3, 200u64..2000, 0u64..400),
        16u32..400,
    )
        .prop_map(
            |(bw, rtt, loss, penalty, jitter, (stalls, period, stall), queue)| {
                let mut link = LinkConfig::new(bw, Duration::from_millis(rtt) / 2)
                    .with_loss(loss, Duration::from_millis(penalty))
                    .with_jitter(Duration::from_millis(jitter))
                    .with_queue(queue);
                if stalls == 0 {
                    link = link
                        .with_stalls(Duration::from_millis(period), Duration::from_millis(stall));
                }
                LegConfig {
                    forward: link,
                    reverse: link,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any legs, any limit, any scheduler: the core queue stays within its
    /// limit, completes or stops on `Full`, and agrees with the reference.
    #[test]
    fn core_queue_bounded_under_any_delays(
        legs in prop::collection::vec(arb_leg(), 2..=3),
        bytes in 50_000u64..1_000_000,
        seed in any::<u64>(),
        which in 0usize..3,
        // 4 KB to 1 MB, log-uniform: some runs overflow, some complete.
        (base, shift) in (4_000usize..8_000, 0u32..8),
    ) {
        let max = base << shift;
        let sc = Scenario {
            transfer_bytes: bytes,
            time_limit: Duration::from_secs(600),
            ..Scenario::new("arbitrary", legs, 1).with_seed(seed)
        };
        let kind = SchedulerKind::ALL[which];
        let mut core = CoreReorder::new(ReorderLimit::from_bytes(max));
        let (reference, r) = both(&sc, kind, &mut core);
        check_against_reference(&sc, &reference, &r, &core);
    }
}
