//! Properties of the simulation that flaky real networks make hard to
//! test: the same seed gives the same run, and under adversarial delays
//! (TCP retransmission penalties, jitter, very different legs) every byte
//! arrives in order and the reorder buffer stays within the bound the
//! model allows.

#![allow(
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "tests: helpers outside #[test] functions"
)]

use std::time::Duration;

use braid_core::conflux_sched::{Ecf, Scheduler, SchedulerKind};
use braid_sim::scenario::MIB;
use braid_sim::{BTreeReorder, LegConfig, LinkConfig, Scenario, run, run_with_sink};
use proptest::prelude::*;

/// The standard scenarios with 0.5 % of cells delayed 60 ms by a TCP
/// retransmission and up to 3 ms of jitter per cell.
fn lossy(seed: u64) -> Vec<Scenario> {
    Scenario::standard()
        .into_iter()
        .map(|sc| {
            let name = format!("{} lossy", sc.name);
            let sc = sc
                .map_links(|l| {
                    l.with_loss(5_000, Duration::from_millis(60))
                        .with_jitter(Duration::from_millis(3))
                })
                .with_seed(seed);
            Scenario { name, ..sc }
        })
        .collect()
}

#[test]
fn same_seed_same_run() {
    for sc in lossy(7) {
        for kind in SchedulerKind::ALL {
            let a = run(&sc, kind.build().as_mut());
            let b = run(&sc, kind.build().as_mut());
            assert!(a.completed, "{a}");
            assert_eq!(a, b, "{kind} on {}", sc.name);
            let c = run(&sc.clone().with_seed(8), kind.build().as_mut());
            assert!(c.completed, "{c}");
            assert_ne!(a.series, c.series, "{kind} on {}: seed ignored", sc.name);
        }
    }
}

#[test]
fn lossy_links_still_aggregate() {
    for sc in lossy(3) {
        let r: Vec<_> = SchedulerKind::ALL
            .iter()
            .map(|k| run(&sc, k.build().as_mut()))
            .collect();
        for x in &r {
            println!("{x}");
            assert!(x.completed && x.bad_choices == 0 && x.cc_errors == 0, "{x}");
            assert!(x.peak_reorder_bytes <= sc.reorder_bound_bytes(), "{x}");
        }
        let (minrtt, lowrtt, ecf) = (&r[0], &r[1], &r[2]);
        assert!(
            lowrtt.fraction > minrtt.fraction + 0.2,
            "{lowrtt} vs {minrtt}"
        );
        assert!(ecf.fraction >= lowrtt.fraction - 0.02, "{ecf} vs {lowrtt}");
    }
}

#[test]
fn retransmission_storm_on_the_fast_leg() {
    // The fast leg loses 5 % of its cells, each costing a second: every
    // loss holds back the leg (TCP is in order) while the slow leg keeps
    // delivering later cells.
    let sc = Scenario {
        transfer_bytes: 4_000_000,
        ..Scenario::new(
            "storm",
            vec![
                LegConfig::symmetric(4 * MIB, Duration::from_millis(20))
                    .map(|l| l.with_loss(50_000, Duration::from_secs(1))),
                LegConfig::symmetric(MIB, Duration::from_millis(150)),
            ],
            4,
        )
    };
    let bound = sc.reorder_bound_bytes();
    for mut sched in schedulers(&sc) {
        let mut sink = BTreeReorder::with_limit(bound);
        let r = run_with_sink(&sc, sched.as_mut(), &mut sink);
        println!("{r} (bound {bound} bytes)");
        assert!(r.completed, "{r}: {:?}", r.sink_error);
        assert!(r.peak_reorder_bytes <= bound);
    }
}

/// The three schedulers plus ECF with a reorder budget of two of the
/// scenario's largest leg BDPs.
fn schedulers(sc: &Scenario) -> Vec<Box<dyn Scheduler>> {
    let mut v: Vec<Box<dyn Scheduler>> = SchedulerKind::ALL
        .iter()
        .map(|k| k.build() as Box<dyn Scheduler>)
        .collect();
    let budget = 2 * sc.max_leg_bdp_bytes() / braid_sim::DATA_BYTES;
    v.push(Box::new(Ecf::with_reorder_budget(budget)));
    v
}

/// One leg: bandwidth, RTT, loss, retransmission penalty, jitter, queue.
fn arb_leg() -> impl Strategy<Value = LegConfig> {
    (
        256 * 1024u64..4 * MIB,
        5u64..400,
        0u32..50_000,
        0u64..800,
        0u64..40,
        16u32..600,
    )
        .prop_map(|(bw, rtt, loss, penalty, jitter, queue)| {
            let link = LinkConfig::new(bw, Duration::from_millis(rtt) / 2)
                .with_loss(loss, Duration::from_millis(penalty))
                .with_jitter(Duration::from_millis(jitter))
                .with_queue(queue);
            LegConfig {
                forward: link,
                reverse: link,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn adversarial_delays_keep_the_reorder_buffer_bounded(
        legs in prop::collection::vec(arb_leg(), 1..=3),
        bytes in 50_000u64..1_500_000,
        seed in any::<u64>(),
        which in 0usize..4,
    ) {
        let sc = Scenario {
            transfer_bytes: bytes,
            time_limit: Duration::from_secs(600),
            ..Scenario::new("adversarial", legs, 1).with_seed(seed)
        };
        let bound = sc.reorder_bound_bytes();
        let mut sched = schedulers(&sc).swap_remove(which);
        let mut sink = BTreeReorder::with_limit(bound);
        let r = run_with_sink(&sc, sched.as_mut(), &mut sink);
        prop_assert!(r.completed, "{r}: {:?}", r.sink_error);
        prop_assert_eq!(r.delivered_bytes, bytes);
        prop_assert_eq!(r.bad_choices, 0);
        prop_assert_eq!(r.cc_errors, 0);
        prop_assert!(r.peak_reorder_bytes <= bound);
        // Same seed, same run (the unbounded sink sees the same cells).
        let mut again = schedulers(&sc).swap_remove(which);
        prop_assert_eq!(run(&sc, again.as_mut()), r);
    }
}
