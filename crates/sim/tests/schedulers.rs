//! Every scheduler on the standard scenarios (two legs of 1:1 and 1:3
//! bandwidth at equal RTT, and 10 ms : 200 ms RTT at equal bandwidth),
//! with the fraction of the summed leg capacity each reaches asserted.
//!
//! The thresholds come from measuring this simulator (TOR_VEGAS legs with
//! C-tor's default parameters, 256-cell bottleneck queues, 8 s of
//! transfer), with a margin; `cargo test -p braid-sim --test schedulers --
//! --nocapture` prints the table. Set `BRAID_SIM_CSV=<dir>` to also write
//! each run's per-leg throughput time series there.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: helpers outside #[test] functions print and unwrap"
)]

use std::time::Duration;

use braid_core::conflux_sched::{Ecf, Scheduler, SchedulerKind};
use braid_sim::scenario::MIB;
use braid_sim::{LegConfig, Report, Scenario, run};

/// Run and check the invariants every run must keep.
fn measure(sc: &Scenario, sched: &mut dyn Scheduler) -> Report {
    let r = run(sc, sched);
    assert!(r.completed, "{r}: did not complete");
    assert_eq!(r.delivered_bytes, sc.transfer_bytes, "{r}");
    assert_eq!(
        r.bad_choices, 0,
        "{r}: scheduler named a leg that cannot send"
    );
    assert_eq!(r.cc_errors, 0, "{r}");
    if let Ok(dir) = std::env::var("BRAID_SIM_CSV") {
        let name = format!("{}-{}.csv", sc.name, r.scheduler).replace([':', ' ', '/'], "_");
        std::fs::write(std::path::Path::new(&dir).join(name), r.series_csv()).unwrap();
    }
    r
}

/// Every scheduler on `sc`, in `SchedulerKind::ALL` order.
fn all(sc: &Scenario) -> Vec<Report> {
    let reports: Vec<Report> = SchedulerKind::ALL
        .iter()
        .map(|k| measure(sc, k.build().as_mut()))
        .collect();
    for r in &reports {
        println!("{r}");
    }
    reports
}

/// `(minrtt, lowrtt, ecf)` lower bounds on the fraction of capacity.
fn check(sc: &Scenario, min: [f64; 3]) -> Vec<Report> {
    let reports = all(sc);
    for (r, min) in reports.iter().zip(min) {
        assert!(r.fraction >= min, "{r}: fraction {} < {min}", r.fraction);
    }
    let (minrtt, lowrtt, ecf) = (&reports[0], &reports[1], &reports[2]);
    // ECF is never worse than the C-tor schedulers (to within 0.5 %).
    assert!(ecf.fraction >= minrtt.fraction - 0.005, "{ecf} vs {minrtt}");
    assert!(ecf.fraction >= lowrtt.fraction - 0.005, "{ecf} vs {lowrtt}");
    reports
}

#[test]
fn one_to_one() {
    let sc = Scenario::one_to_one();
    println!("{}", Report::table_header());
    let r = check(&sc, [0.45, 0.95, 0.95]);
    // MinRTT uses one leg at a time: about half the capacity (C-tor's
    // MinRTT is for latency, not throughput).
    assert!(r[0].fraction < 0.6, "{}", r[0]);
    for r in &r[1..] {
        for leg in &r.legs {
            assert!((0.45..0.55).contains(&leg.share), "{r}");
        }
    }
}

#[test]
fn one_to_three() {
    let sc = Scenario::one_to_three();
    println!("{}", Report::table_header());
    let r = check(&sc, [0.70, 0.95, 0.95]);
    // MinRTT: about the faster leg alone (3 of 4).
    assert!(r[0].fraction < 0.8, "{}", r[0]);
    for r in &r[1..] {
        assert!((0.2..0.3).contains(&r.legs[0].share), "{r}");
        // Reorder peak under 2 × the largest leg BDP.
        assert!(r.reorder_in_bdps() < 2.0, "{r}");
    }
}

#[test]
fn rtt_10_200() {
    let sc = Scenario::rtt_10_200();
    println!("{}", Report::table_header());
    let r = check(&sc, [0.45, 0.93, 0.93]);
    let (minrtt, lowrtt, ecf) = (&r[0], &r[1], &r[2]);
    // MinRTT never touches the 200 ms leg: no reordering, half the capacity.
    assert_eq!(minrtt.peak_reorder_bytes, 0);
    assert!(minrtt.fraction < 0.55, "{minrtt}");
    // ECF: far more goodput than MinRTT, a little more than LowRTT (it
    // stops feeding the 200 ms leg at the end), no more reordering, and
    // reorder under 2 × the largest leg BDP.
    assert!(ecf.goodput > 1.8 * minrtt.goodput, "{ecf} vs {minrtt}");
    assert!(ecf.goodput > lowrtt.goodput, "{ecf} vs {lowrtt}");
    assert!(ecf.peak_reorder_bytes <= lowrtt.peak_reorder_bytes);
    assert!(ecf.reorder_in_bdps() < 2.0, "{ecf}");
}

#[test]
fn short_transfers_on_10_200() {
    // What ECF is for: a transfer the fast leg finishes before the slow
    // leg delivers anything should not go on the slow leg.
    println!("{}", Report::table_header());
    let mut done = Vec::new();
    for size in [100_000u64, 500_000, 2_000_000] {
        let sc = Scenario {
            name: format!("10ms:200ms {} kB", size / 1000),
            transfer_bytes: size,
            ..Scenario::rtt_10_200()
        };
        let r = all(&sc);
        done.push((size, r[1].duration, r[2].duration));
        // ECF finishes no later than LowRTT or MinRTT.
        assert!(r[2].duration <= r[1].duration, "{} vs {}", r[2], r[1]);
        assert!(r[2].duration <= r[0].duration, "{} vs {}", r[2], r[0]);
    }
    // 100 kB: LowRTT puts the tail on the 200 ms leg; ECF is about twice
    // as fast.
    let (_, low, ecf) = done[0];
    assert!(ecf.as_secs_f64() < 0.6 * low.as_secs_f64(), "{done:?}");
    println!("completion times (size, lowrtt, ecf): {done:?}");
}

#[test]
fn reorder_budget_on_a_very_slow_leg() {
    // A 10 ms, 4 MiB/s leg beside a 300 ms, 256 KiB/s one: the case where
    // reorder memory explodes (RFC 8684 §3.3.6). Every scheduler but
    // MinRTT makes the receiver hold tens of BDPs of the fast leg; ECF
    // with a reorder budget of 2 BDPs gives up the slow leg's 6 % of
    // capacity instead.
    let sc = Scenario::new(
        "10ms 4MiB/s : 300ms 256KiB/s",
        vec![
            LegConfig::symmetric(4 * MIB, Duration::from_millis(10)),
            LegConfig::symmetric(256 * 1024, Duration::from_millis(300)),
        ],
        8,
    );
    println!("{}", Report::table_header());
    let r = all(&sc);
    let budget_cells = 2 * sc.max_leg_bdp_bytes() / braid_sim::DATA_BYTES;
    let budgeted = measure(&sc, &mut Ecf::with_reorder_budget(budget_cells));
    println!("{budgeted}");
    assert!(r[1].reorder_in_bdps() > 10.0, "{}", r[1]);
    assert!(r[2].reorder_in_bdps() > 10.0, "{}", r[2]);
    assert!(budgeted.reorder_in_bdps() <= 2.0, "{budgeted}");
    assert!(budgeted.fraction >= r[0].fraction - 0.005, "{budgeted}");
    // Plain ECF still beats LowRTT on completion: it stops feeding the
    // slow leg when the fast one alone finishes sooner.
    assert!(r[2].fraction > r[1].fraction + 0.03, "{} vs {}", r[2], r[1]);
}
