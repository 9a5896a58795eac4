//! The bootstrap on a virtual clock for hours and days: directories that
//! fail, stall or lie, and clocks that are off. Every request is counted;
//! the figures asserted are requests per minute or per hour.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests"
)]

use std::time::{Duration, SystemTime};

use super::test_net::{CERTS, CONSENSUS, MICRODESCS, TestNet, during, forged_consensus};
use super::*;
use crate::authority::DirConfig;
use crate::error::{DocError, DocKind};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// A request made, and when.
#[derive(Debug, Clone, Copy)]
struct Made {
    at: SystemTime,
    kind: DocKind,
}

/// A bootstrap on a virtual clock; every answer takes `latency`.
struct Sim {
    b: DirBootstrap,
    start: SystemTime,
    now: SystemTime,
    latency: Duration,
    made: Vec<Made>,
    events: Vec<DirEvent>,
}

/// More than this many requests in one run is a runaway (the bug this
/// file guards against made more than 1,000 at one instant).
const RUNAWAY: usize = 20_000;

impl Sim {
    fn new(config: &DirConfig, seed: u64, start: SystemTime) -> Self {
        Self {
            b: DirBootstrap::new(config, seed),
            start,
            now: start,
            latency: Duration::from_millis(200),
            made: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Run for `span`, answering each request with `answer(request, now)`.
    /// Checks on the way that the bootstrap never asks to be woken in the
    /// past (a driver would spin).
    fn run(
        &mut self,
        span: Duration,
        mut answer: impl FnMut(&DirRequest, SystemTime) -> Result<String, String>,
    ) {
        let until = self.now + span;
        let mut waiting: Vec<(SystemTime, RequestId, Result<String, String>)> = Vec::new();
        loop {
            while let Some(req) = self.b.poll_request(self.now) {
                self.made.push(Made {
                    at: self.now,
                    kind: req.kind,
                });
                assert!(
                    self.made.len() < RUNAWAY,
                    "runaway: {} requests by {:?}",
                    self.made.len(),
                    self.now.duration_since(self.start)
                );
                let result = answer(&req, self.now);
                waiting.push((self.now + self.latency, req.id, result));
            }
            self.events
                .extend(std::iter::from_fn(|| self.b.poll_event()));
            let timeout = self.b.poll_timeout();
            if let Some(t) = timeout {
                assert!(t > self.now, "woken in the past: {t:?} <= {:?}", self.now);
            }
            let next_answer = waiting.iter().map(|w| w.0).min();
            let Some(next) = [timeout, next_answer].into_iter().flatten().min() else {
                break;
            };
            if next > until {
                self.now = until;
                break;
            }
            self.now = next;
            let (due, later): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|w| w.0 <= self.now);
            waiting = later;
            for (_, id, result) in due {
                self.b.handle_response(id, result, self.now);
            }
            self.b.handle_timeout(self.now);
        }
        // Answers still on their way arrive.
        for (_, id, result) in waiting {
            self.b.handle_response(id, result, self.now);
        }
        self.events
            .extend(std::iter::from_fn(|| self.b.poll_event()));
    }

    /// Requests (of `kind`, or all) per `window`, from the start.
    fn per(&self, window: Duration, kind: Option<DocKind>) -> Vec<usize> {
        let n = usize::try_from(
            self.now.duration_since(self.start).unwrap().as_secs() / window.as_secs() + 1,
        )
        .unwrap();
        let mut out = vec![0; n];
        for m in &self.made {
            if kind.is_some_and(|k| k != m.kind) {
                continue;
            }
            let i = m.at.duration_since(self.start).unwrap().as_secs() / window.as_secs();
            out[usize::try_from(i).unwrap()] += 1;
        }
        out
    }

    fn skews(&self) -> Vec<ClockSkew> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DirEvent::ClockSkew { skew, .. } => Some(*skew),
                _ => None,
            })
            .collect()
    }
}

/// Answers from the recorded network, with `consensus` for the consensus.
fn recorded(consensus: String) -> impl FnMut(&DirRequest, SystemTime) -> Result<String, String> {
    move |req, _| {
        Ok(match req.kind {
            DocKind::Consensus => consensus.clone(),
            DocKind::AuthorityCert => CERTS.to_owned(),
            DocKind::Microdesc => MICRODESCS.to_owned(),
        })
    }
}

/// Issue 17's regression: every source answers a consensus whose
/// signatures fail. Before, the bootstrap asked the next source at once,
/// more than 1,000 times at one instant; now the consensus schedule backs
/// off to its cap.
#[test]
fn forged_consensus_over_and_over_is_asked_for_a_few_times_a_minute() {
    let mut worst_minute = 0;
    let mut worst_first_hour = 0;
    let mut later = Vec::new();
    for seed in 0..20 {
        let mut sim = Sim::new(&super::test_net::recorded_config(), seed, during());
        sim.b
            .handle_cached(DocKind::AuthorityCert, CERTS, during())
            .unwrap();
        sim.run(6 * HOUR, recorded(forged_consensus()));
        assert!(sim.b.netdir().is_none());
        let minutes = sim.per(MINUTE, None);
        let hours = sim.per(HOUR, None);
        worst_minute = worst_minute.max(*minutes.iter().max().unwrap());
        worst_first_hour = worst_first_hour.max(hours[0]);
        later.extend_from_slice(&hours[1..6]);
        assert!(
            sim.events.iter().any(|e| matches!(
                e,
                DirEvent::Rejected {
                    error: DocError::BadSignature { .. },
                    ..
                }
            )),
            "seed {seed}"
        );
    }
    let mean_later = later.iter().sum::<usize>() as f64 / later.len() as f64;
    println!(
        "forged consensus, 20 seeds x 6 h: at most {worst_minute} requests in a minute, \
         {worst_first_hour} in the first hour; hours 2-6: {mean_later:.1} an hour on average, \
         at most {}",
        later.iter().max().unwrap()
    );
    // 1 s, then each delay drawn up to three times the last (dir-spec
    // §5.5): a dozen or so in the first minute, against more than 1,000 at
    // one instant before.
    assert!(worst_minute <= 20, "{worst_minute}");
    assert!(worst_first_hour <= 150, "{worst_first_hour}");
    assert!(mean_later <= 12.0, "{mean_later}");
}

/// A directory that always fails (connection refused): a handful of
/// requests an hour once backed off.
#[test]
fn always_failing_directory_is_asked_a_handful_of_times_an_hour() {
    let mut first = Vec::new();
    let mut later = Vec::new();
    let mut last_day = Vec::new();
    for seed in 0..20 {
        let mut sim = Sim::new(&TestNet::get().config(), seed, during());
        sim.run(48 * HOUR, |_, _| Err("connection refused".into()));
        let hours = sim.per(HOUR, None);
        first.push(hours[0]);
        later.extend_from_slice(&hours[1..24]);
        last_day.extend_from_slice(&hours[24..48]);
    }
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    let max = |v: &[usize]| *v.iter().max().unwrap();
    println!(
        "always failing, 20 seeds x 48 h, requests an hour: first hour {:.1} on average \
         (at most {}), hours 2-24 {:.1} (at most {}), hours 25-48 {:.1} (at most {})",
        mean(&first),
        max(&first),
        mean(&later),
        max(&later),
        mean(&last_day),
        max(&last_day)
    );
    assert!(max(&first) <= 150, "{}", max(&first));
    // Once backed off, the cap's six an hour, with the jitter's dips.
    assert!(mean(&later) <= 9.0, "{}", mean(&later));
    assert!(mean(&last_day) <= 7.0, "{}", mean(&last_day));
    assert!(max(&last_day) <= 40, "{}", max(&last_day));
}

/// A stalled directory: the authorities stop voting, every source keeps
/// serving the last consensus. The client looks once per voting interval
/// (dir-spec §5.1's window, one interval on) while that consensus is within
/// a day of its validity, then on the failure schedule.
#[test]
fn stalled_directory_is_asked_once_an_hour_then_a_handful() {
    let net = TestNet::get();
    let va = during();
    let stale = net.hourly(va);
    let mut sim = Sim::new(&net.config(), 21, va + 10 * MINUTE);
    sim.run(48 * HOUR, |req, _| {
        Ok(match req.kind {
            DocKind::Consensus => stale.clone(),
            DocKind::AuthorityCert => net.certs().to_owned(),
            DocKind::Microdesc => MICRODESCS.to_owned(),
        })
    });
    assert!(sim.b.is_done());
    let hours = sim.per(HOUR, Some(DocKind::Consensus));
    println!("stalled directory, consensus requests per hour: {hours:?}");
    // Hour 0: the bootstrap. Until 24 h after valid-until (27 h from
    // valid-after): "not newer", about one per hour.
    assert_eq!(hours[0], 1);
    assert!(hours[1..26].iter().all(|n| *n <= 2), "{hours:?}");
    let not_newer: usize = hours[1..26].iter().sum();
    assert!((20..=27).contains(&not_newer), "{not_newer}");
    // Then the consensus is out of the clock tolerance: refused, a
    // failure, on the consensus schedule (hour 28 on: 24 h after
    // valid-until, 10 minutes after the start).
    let failing = &hours[28..48];
    assert!(failing[0] <= 100, "{hours:?}");
    let mean = failing[1..].iter().sum::<usize>() as f64 / 19.0;
    assert!(mean <= 12.0, "{hours:?}");
    assert!(sim.events.iter().any(|e| matches!(
        e,
        DirEvent::Rejected {
            error: DocError::NotTimely { .. },
            ..
        }
    )));
    // "Not newer" is not a failure: the first failure comes only then.
    let first_failure = sim
        .events
        .iter()
        .filter_map(|e| match e {
            DirEvent::FetchFailed { retry_at, .. } => Some(*retry_at),
            _ => None,
        })
        .min()
        .unwrap();
    assert!(first_failure > va + 27 * HOUR, "{first_failure:?}");
}

/// A healthy network with the public timing: one consensus an hour,
/// fetched in the §5.1 window, never expired, about one request an hour.
#[test]
fn healthy_hourly_network_is_followed_with_one_request_an_hour() {
    let net = TestNet::get();
    let epoch = during();
    let mut sim = Sim::new(&net.config(), 22, epoch + 5 * MINUTE);
    let mut adopted_late = 0;
    sim.run(24 * HOUR, |req, now| {
        let hour = now.duration_since(epoch).unwrap().as_secs() / 3600;
        Ok(match req.kind {
            DocKind::Consensus => net.hourly(epoch + HOUR * u32::try_from(hour).unwrap()),
            DocKind::AuthorityCert => net.certs().to_owned(),
            DocKind::Microdesc => MICRODESCS.to_owned(),
        })
    });
    for e in &sim.events {
        if let DirEvent::ClockSkew { .. } = e {
            adopted_late += 1;
        }
    }
    let hours = sim.per(HOUR, Some(DocKind::Consensus));
    println!("healthy network, consensus requests per hour: {hours:?}");
    assert_eq!(adopted_late, 0, "always refreshed before valid-until");
    assert!(hours.iter().all(|n| *n <= 2), "{hours:?}");
    let total: usize = hours.iter().sum();
    assert!((12..=25).contains(&total), "{total}");
    assert!(sim.b.is_done());
    assert_eq!(sim.b.schedule(DocKind::Consensus).failures(), 0);
}

/// Equal within the answers' latencies.
fn assert_near(d: Duration, expected: Duration) {
    let diff = d.abs_diff(expected);
    assert!(diff < Duration::from_secs(1), "{d:?} vs {expected:?}");
}

/// A network whose newest consensus is at `offset` from our clock, one per
/// hour by the network's clock.
fn skewed_run(offset_secs: i64, seed: u64, span: Duration) -> Sim {
    let net = TestNet::get();
    let epoch = during();
    // Network time = our time - offset.
    let ours = |net_t: SystemTime| -> SystemTime {
        if offset_secs >= 0 {
            net_t + Duration::from_secs(offset_secs.unsigned_abs())
        } else {
            net_t - Duration::from_secs(offset_secs.unsigned_abs())
        }
    };
    let start = ours(epoch + 10 * MINUTE);
    let mut sim = Sim::new(&net.config(), seed, start);
    sim.run(span, |req, now| {
        let net_now = if offset_secs >= 0 {
            now - Duration::from_secs(offset_secs.unsigned_abs())
        } else {
            now + Duration::from_secs(offset_secs.unsigned_abs())
        };
        let hour = net_now.duration_since(epoch).unwrap().as_secs() / 3600;
        Ok(match req.kind {
            DocKind::Consensus => net.hourly(epoch + HOUR * u32::try_from(hour).unwrap()),
            DocKind::AuthorityCert => net.certs().to_owned(),
            DocKind::Microdesc => MICRODESCS.to_owned(),
        })
    });
    sim
}

/// A clock 12 hours ahead or behind bootstraps, with the skew reported,
/// and keeps following the network with a few requests an hour.
#[test]
fn clock_12_hours_off_bootstraps_with_the_skew_reported() {
    for (offset, seed) in [(12 * 3600, 31), (-12 * 3600, 32)] {
        let sim = skewed_run(offset, seed, 12 * HOUR);
        assert!(sim.b.is_done(), "{offset}: {:?}", sim.b.progress());
        let skews = sim.skews();
        let first = skews.first().copied().expect("skew reported");
        match first {
            // The newest consensus, 10 minutes old, expired 2 h 50 min ago
            // by the network's clock: 9 h 10 min by ours.
            ClockSkew::Ahead(d) => {
                assert!(offset > 0);
                assert_near(d, Duration::from_secs(9 * 3600 + 10 * 60));
            }
            // Valid 10 minutes ago by the network's clock: 11 h 50 min
            // ahead of ours.
            ClockSkew::Behind(d) => {
                assert!(offset < 0);
                assert_near(d, Duration::from_secs(11 * 3600 + 50 * 60));
            }
        }
        let text = first.to_string();
        assert!(
            text.contains("9h 10m 0s") || text.contains("11h 49m 59s"),
            "{text}"
        );
        let hours = sim.per(HOUR, Some(DocKind::Consensus));
        println!("clock off by {offset} s: consensus requests per hour {hours:?}");
        assert!(hours.iter().all(|n| *n <= 3), "{offset}: {hours:?}");
        // It kept up: several newer consensuses adopted.
        let adopted = sim
            .events
            .iter()
            .filter(|e| matches!(e, DirEvent::NewConsensus { .. }))
            .count();
        assert!(adopted >= 5, "{offset}: {adopted}");
    }
}

/// The recorded C-tor documents, by a clock 12 hours ahead and one 12
/// hours behind (before even the certificates' publication: C-tor checks
/// only their expiry).
#[test]
fn recorded_network_12_hours_either_way_bootstraps_with_a_warning() {
    let config = super::test_net::recorded_config();
    let mut sim = Sim::new(&config, 33, during() + 12 * HOUR);
    sim.run(MINUTE, recorded(CONSENSUS.to_owned()));
    assert!(sim.b.is_done());
    let skews = sim.skews();
    let Some(ClockSkew::Ahead(d)) = skews.first() else {
        panic!("{skews:?}");
    };
    // valid-until 10:58:30, 10 s after `during`.
    assert_near(*d, Duration::from_secs(12 * 3600 - 10));

    let mut sim = Sim::new(&config, 34, during() - 12 * HOUR);
    sim.run(MINUTE, recorded(CONSENSUS.to_owned()));
    assert!(sim.b.is_done(), "{:?}", sim.events);
    let skews = sim.skews();
    let Some(ClockSkew::Behind(d)) = skews.first() else {
        panic!("{skews:?}");
    };
    // valid-after 10:58:10, 10 s before `during`.
    assert_near(*d, Duration::from_secs(12 * 3600 - 10));
}

/// 25 hours outside the validity: refused with a clear error, and asked
/// for on the failure schedule, not at once.
#[test]
fn clock_25_hours_off_is_refused_clearly() {
    // The newest consensus is 10 minutes old by the network: 25 h past its
    // valid-until means a clock 27 h 50 min ahead; 25 h before its
    // valid-after means 25 h 10 min behind.
    for (offset, seed) in [
        (27 * 3600 + 50 * 60 + 30, 41),
        (-(25 * 3600 + 10 * 60 + 30), 42),
    ] {
        let sim = skewed_run(offset, seed, 6 * HOUR);
        assert!(sim.b.netdir().is_none(), "{offset}");
        let refusal = sim
            .events
            .iter()
            .find_map(|e| match e {
                DirEvent::Rejected {
                    error: error @ DocError::NotTimely { .. },
                    ..
                } => Some(error.to_string()),
                _ => None,
            })
            .expect("refused as untimely");
        println!("{refusal}");
        // 25 h and 30 s, less the answer's latency.
        assert!(
            refusal.contains("25h 0m 29s") || refusal.contains("25h 0m 30s"),
            "{refusal}"
        );
        assert!(refusal.contains("check the system clock"), "{refusal}");
        assert!(refusal.contains("24h 0m 0s tolerance"), "{refusal}");
        let hours = sim.per(HOUR, None);
        println!("clock off by {offset} s: requests per hour {hours:?}");
        assert!(hours.iter().all(|n| *n <= 100), "{offset}: {hours:?}");
    }
}

/// The fuzz target's world (fuzz/fuzz_targets/dir_bootstrap_cache.rs) as
/// a property: answers of every kind, good and bad, after random
/// latencies, with the clock anywhere within a day of the recorded
/// consensus; never more than 22 requests in a virtual second (the bound
/// the target derives), never a wake-up in the past (checked by `Sim`).
mod any_answers {
    use proptest::prelude::*;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    fn answer(kind: DocKind, rng: &mut StdRng) -> Result<String, String> {
        let doc = match kind {
            DocKind::Consensus => CONSENSUS,
            DocKind::AuthorityCert => CERTS,
            DocKind::Microdesc => MICRODESCS,
        };
        Ok(match rng.random_range(0..9_u8) {
            0 | 1 => doc.to_owned(),
            2 => forged_consensus(),
            3 => doc[..rng.random_range(0..doc.len())].to_owned(),
            4 => CERTS.to_owned(),
            5 => MICRODESCS.to_owned(),
            6 => String::new(),
            7 => return Err("503 Directory busy".into()),
            _ => return Err("connection refused".into()),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn never_more_than_22_requests_a_second(
            seed: u64,
            offset_s in 0_u64..(26 * 3600),
            behind: bool,
            cached in 0_u8..8,
        ) {
            let start = if behind {
                during() - Duration::from_secs(offset_s)
            } else {
                during() + Duration::from_secs(offset_s)
            };
            let mut sim = Sim::new(&super::super::test_net::recorded_config(), seed, start);
            if cached & 1 != 0 {
                let _ = sim.b.handle_cached(DocKind::AuthorityCert, CERTS, start);
            }
            if cached & 2 != 0 {
                let _ = sim.b.handle_cached(DocKind::Consensus, CONSENSUS, start);
            }
            if cached & 4 != 0 {
                let _ = sim.b.handle_cached(DocKind::Microdesc, MICRODESCS, start);
            }
            let mut rng = StdRng::seed_from_u64(seed);
            let mut latencies = StdRng::seed_from_u64(!seed);
            sim.latency = Duration::from_millis(latencies.random_range(0..3000));
            sim.run(6 * HOUR, |req, _| answer(req.kind, &mut rng));
            let worst = sim.per(Duration::from_secs(1), None).into_iter().max().unwrap_or(0);
            prop_assert!(worst <= 22, "{worst} requests in one second");
        }
    }
}
