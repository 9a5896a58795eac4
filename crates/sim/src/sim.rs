//! One simulation run: the sender, the legs and the receiver, driven by the
//! event queue until every byte is delivered in order (or the time limit).
//!
//! The sender sends whenever something may have opened room: at the
//! start, at each SENDME, and when a full link queue drains. Each time it
//! asks the scheduler for a leg, cell after cell, until the scheduler says
//! "none" or the data runs out. The receiver counts cells per leg, sends a
//! SENDME on the leg's reverse link every 31 (on receipt, before
//! reordering, as circuit-level SENDMEs are), and passes each cell to the
//! reorder sink.

use std::time::{Duration, Instant};

use braid_core::conflux_sched::{DeliveryRate, LegView, Scheduler};
use braid_core::ids::LegId;

use crate::cc::{LegCc, SENDME_INC};
use crate::clock::VirtualClock;
use crate::event::EventQueue;
use crate::link::{DATA_BYTES, Link};
use crate::reorder::{BTreeReorder, ReorderSink, SinkError};
use crate::report::{LegReport, Report, Sample};
use crate::rng::SimRng;
use crate::scenario::{BwSource, LegConfig, Scenario};

/// Something that happens at a time.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// DATA cell `seq` reaches the receiver on leg `leg` (an index).
    CellArrives {
        /// Leg index.
        leg: usize,
        /// Sequence number.
        seq: u64,
    },
    /// A SENDME reaches the sender on leg `leg`.
    SendmeArrives {
        /// Leg index.
        leg: usize,
    },
    /// Leg `leg`'s forward queue has room again.
    LinkRoom {
        /// Leg index.
        leg: usize,
    },
}

/// One leg's state.
#[derive(Debug)]
struct Leg {
    /// Its id in the set (its index).
    id: LegId,
    /// Its config.
    cfg: LegConfig,
    /// Its congestion control.
    cc: LegCc,
    /// Sender to receiver.
    fwd: Link,
    /// Receiver to sender.
    rev: Link,
    /// The LINK → LINKED RTT: the scheduler's RTT before any SENDME.
    link_rtt: Duration,
    /// DATA cells sent.
    sent: u64,
    /// DATA cells received.
    received: u64,
    /// A `LinkRoom` event is scheduled.
    wake_pending: bool,
    /// Delivery rate from SENDMEs.
    rate: DeliveryRate,
}

/// The whole simulation state of a run.
struct Run<'a> {
    /// What is simulated.
    sc: &'a Scenario,
    /// The scheduler under test.
    sched: &'a mut dyn Scheduler,
    /// The receiver's reorder buffer.
    sink: &'a mut dyn ReorderSink,
    /// Virtual time.
    clock: VirtualClock,
    /// Pending events.
    events: EventQueue<Event>,
    /// The legs.
    legs: Vec<Leg>,
    /// Cells in the transfer.
    total: u64,
    /// Next sequence number to send.
    next_seq: u64,
    /// Cells delivered in order.
    delivered: u64,
    /// Payload bytes delivered in order.
    delivered_bytes: u64,
    /// Time of the last in-order delivery.
    last_delivery: Duration,
    /// Leg of the last cell sent.
    last_leg: Option<usize>,
    /// Leg changes.
    switches: u64,
    /// See [`Report::bad_choices`].
    bad_choices: u64,
    /// See [`Report::cc_errors`].
    cc_errors: u64,
    /// See [`Report::sink_error`].
    sink_error: Option<SinkError>,
    /// Largest reorder buffer, bytes and cells.
    peak_reorder: (u64, u64),
    /// The time series.
    series: Vec<Sample>,
    /// Scratch space for the scheduler's input.
    views: Vec<LegView>,
}

/// Run `scenario` with `scheduler` and a fresh unbounded
/// [`BTreeReorder`] at the receiver.
pub fn run(scenario: &Scenario, scheduler: &mut dyn Scheduler) -> Report {
    let mut sink = BTreeReorder::new();
    run_with_sink(scenario, scheduler, &mut sink)
}

/// Run `scenario` with `scheduler`, the receiver reordering with `sink`.
pub fn run_with_sink(
    scenario: &Scenario,
    scheduler: &mut dyn Scheduler,
    sink: &mut dyn ReorderSink,
) -> Report {
    let legs = scenario
        .legs
        .iter()
        .enumerate()
        .map(|(i, cfg)| {
            let n = u64::try_from(i).unwrap_or(u64::MAX);
            Leg {
                id: LegId(u8::try_from(i).unwrap_or(u8::MAX)),
                cfg: *cfg,
                cc: LegCc::new(scenario.cc),
                fwd: Link::new(
                    cfg.forward,
                    SimRng::stream(scenario.seed, n.saturating_mul(2)),
                ),
                rev: Link::new(
                    cfg.reverse,
                    SimRng::stream(scenario.seed, n.saturating_mul(2).saturating_add(1)),
                ),
                link_rtt: cfg.base_rtt(),
                sent: 0,
                received: 0,
                wake_pending: false,
                rate: DeliveryRate::default(),
            }
        })
        .collect();
    let mut run = Run {
        sc: scenario,
        sched: scheduler,
        sink,
        clock: VirtualClock::new(Instant::now()),
        events: EventQueue::new(),
        legs,
        total: scenario.total_cells(),
        next_seq: 0,
        delivered: 0,
        delivered_bytes: 0,
        last_delivery: Duration::ZERO,
        last_leg: None,
        switches: 0,
        bad_choices: 0,
        cc_errors: 0,
        sink_error: None,
        peak_reorder: (0, 0),
        series: Vec::new(),
        views: Vec::new(),
    };
    run.go();
    run.report()
}

impl Run<'_> {
    /// The event loop.
    fn go(&mut self) {
        self.try_send(Duration::ZERO);
        while self.delivered < self.total && self.sink_error.is_none() {
            let Some((at, ev)) = self.events.pop() else {
                break;
            };
            if at > self.sc.time_limit {
                break;
            }
            self.clock.advance_to(at);
            match ev {
                Event::CellArrives { leg, seq } => self.on_cell(at, leg, seq),
                Event::SendmeArrives { leg } => {
                    let now = self.clock.now();
                    if let Some(l) = self.legs.get_mut(leg) {
                        let queued = l.fwd.queue_len(at);
                        let blocked = !l.fwd.has_room(at);
                        l.cc.set_blocked(blocked, queued);
                        if l.cc.on_sendme(now).is_err() {
                            self.cc_errors += 1;
                        }
                        l.rate.on_ack(now, SENDME_INC);
                    }
                    self.try_send(at);
                }
                Event::LinkRoom { leg } => {
                    if let Some(l) = self.legs.get_mut(leg) {
                        l.wake_pending = false;
                    }
                    self.try_send(at);
                }
            }
        }
    }

    /// The time-series bucket for `at`.
    fn bucket(&mut self, at: Duration) -> Option<&mut Sample> {
        let width = self.sc.sample_interval.max(Duration::from_micros(1));
        let idx = usize::try_from(at.as_nanos() / width.as_nanos()).ok()?;
        // The loop stops at the time limit, so this stays bounded.
        while self.series.len() <= idx {
            let start = width.saturating_mul(u32::try_from(self.series.len()).ok()?);
            self.series.push(Sample {
                start,
                leg_bytes: vec![0; self.legs.len()],
                delivered_bytes: 0,
                reorder_bytes: 0,
            });
        }
        self.series.get_mut(idx)
    }

    /// A DATA cell reached the receiver.
    fn on_cell(&mut self, at: Duration, leg: usize, seq: u64) {
        if let Some(l) = self.legs.get_mut(leg) {
            l.received += 1;
            if l.received.is_multiple_of(SENDME_INC) {
                let back = l.rev.send(at);
                self.events.push(back, Event::SendmeArrives { leg });
            }
        }
        if let Some(b) = self.bucket(at).and_then(|s| s.leg_bytes.get_mut(leg)) {
            *b += DATA_BYTES;
        }
        // The last cell carries what is left.
        let bytes = if seq + 1 == self.total {
            self.sc.transfer_bytes - DATA_BYTES * (self.total - 1)
        } else {
            DATA_BYTES
        };
        match self.sink.on_cell(seq, bytes) {
            Ok(d) => {
                self.delivered += d.cells;
                self.delivered_bytes += d.bytes;
                if d.cells > 0 {
                    self.last_delivery = at;
                }
                let buffered = self.sink.buffered_bytes();
                self.peak_reorder.0 = self.peak_reorder.0.max(buffered);
                self.peak_reorder.1 = self.peak_reorder.1.max(self.sink.buffered_cells());
                if let Some(s) = self.bucket(at) {
                    s.delivered_bytes += d.bytes;
                    s.reorder_bytes = buffered;
                }
            }
            Err(e) => self.sink_error = Some(e),
        }
    }

    /// What the scheduler sees of each leg at `at`.
    fn fill_views(&mut self, at: Duration) {
        self.views.clear();
        for l in &mut self.legs {
            self.views.push(LegView {
                id: l.id,
                min_rtt: l.cc.min_rtt().or(Some(l.link_rtt)),
                ewma_rtt: l.cc.ewma_rtt(),
                cwnd_cells: l.cc.cwnd(),
                inflight_cells: l.cc.inflight(),
                can_send: l.fwd.has_room(at),
                est_bandwidth: match self.sc.bandwidth {
                    BwSource::None => None,
                    BwSource::Sendme => l.rate.rate(),
                    BwSource::Oracle => Some(l.cfg.forward.cells_per_sec() as u64),
                },
            });
        }
    }

    /// Send as long as the scheduler names a leg.
    fn try_send(&mut self, at: Duration) {
        let now = self.clock.now();
        while self.next_seq < self.total {
            self.fill_views(at);
            if self.sc.tell_backlog {
                self.sched.set_backlog(Some(self.total - self.next_seq));
            }
            let Some(id) = self.sched.choose(&self.views, now) else {
                break;
            };
            let ready = self.views.iter().find(|v| v.id == id).map(LegView::ready);
            let idx = self.legs.iter().position(|l| l.id == id);
            let (Some(true), Some(idx)) = (ready, idx) else {
                self.bad_choices += 1;
                break;
            };
            let Some(l) = self.legs.get_mut(idx) else {
                break;
            };
            if l.cc.on_sent(now).is_err() {
                self.cc_errors += 1;
                break;
            }
            let Some(arrival) = l.fwd.try_send(at) else {
                self.bad_choices += 1;
                break;
            };
            l.sent += 1;
            self.events.push(
                arrival,
                Event::CellArrives {
                    leg: idx,
                    seq: self.next_seq,
                },
            );
            self.next_seq += 1;
            if self.last_leg.is_some_and(|p| p != idx) {
                self.switches += 1;
            }
            self.last_leg = Some(idx);
        }
        // Wake up when a full link drains (the scheduler may be waiting
        // for exactly that leg).
        for (i, l) in self.legs.iter_mut().enumerate() {
            if !l.wake_pending
                && !l.fwd.has_room(at)
                && let Some(t) = l.fwd.next_departure()
            {
                l.wake_pending = true;
                self.events.push(t, Event::LinkRoom { leg: i });
            }
        }
    }

    /// The report.
    fn report(self) -> Report {
        let completed = self.delivered >= self.total && self.sink_error.is_none();
        let duration = if completed {
            self.last_delivery
        } else {
            self.clock.elapsed()
        };
        let secs = duration.as_secs_f64();
        let goodput = if secs > 0.0 {
            self.delivered_bytes as f64 / secs
        } else {
            0.0
        };
        let capacity = self.sc.capacity();
        let all_sent: u64 = self.legs.iter().map(|l| l.sent).sum();
        let legs = self
            .legs
            .iter()
            .map(|l| LegReport {
                id: l.id,
                bandwidth: l.cfg.forward.bandwidth,
                base_rtt: l.link_rtt,
                cells_sent: l.sent,
                share: l.sent as f64 / all_sent.max(1) as f64,
                final_cwnd: l.cc.cwnd(),
                final_ewma_rtt: l.cc.ewma_rtt(),
                retransmitted: l.fwd.stats().retransmitted,
                peak_queue: l.fwd.stats().peak_queue,
            })
            .collect();
        Report {
            scenario: self.sc.name.clone(),
            scheduler: self.sched.name(),
            seed: self.sc.seed,
            completed,
            duration,
            delivered_bytes: self.delivered_bytes,
            goodput,
            capacity,
            fraction: if capacity > 0.0 {
                goodput / capacity
            } else {
                0.0
            },
            legs,
            peak_reorder_bytes: self.peak_reorder.0,
            peak_reorder_cells: self.peak_reorder.1,
            max_leg_bdp_bytes: self.sc.max_leg_bdp_bytes(),
            switches: self.switches,
            bad_choices: self.bad_choices,
            cc_errors: self.cc_errors,
            sink_error: self.sink_error,
            sample_interval: self.sc.sample_interval,
            series: self.series,
        }
    }
}

#[cfg(test)]
mod tests {
    use braid_core::conflux_sched::SchedulerKind;

    use super::*;
    use crate::cc::CcModel;
    use crate::scenario::MIB;

    fn small(legs: Vec<LegConfig>) -> Scenario {
        Scenario {
            transfer_bytes: 2_000_000,
            ..Scenario::new("small", legs, 1)
        }
    }

    #[test]
    fn one_leg_fixed_window_runs_at_window_over_rtt() {
        // 100 ms RTT, 4 MiB/s, window 62 cells: 620 cells/s, far under
        // the link's 8160 cells/s.
        let mut sc = small(vec![LegConfig::symmetric(
            4 * MIB,
            Duration::from_millis(100),
        )]);
        sc.cc = CcModel::Fixed(62);
        sc.transfer_bytes = 620 * DATA_BYTES * 5;
        let r = run(&sc, SchedulerKind::LowRtt.build().as_mut());
        assert!(r.completed, "{r:?}");
        assert_eq!(r.delivered_bytes, sc.transfer_bytes);
        assert_eq!(r.peak_reorder_bytes, 0);
        let cells_per_sec = r.goodput / DATA_BYTES as f64;
        assert!((590.0..630.0).contains(&cells_per_sec), "{cells_per_sec}");
    }

    #[test]
    fn every_byte_arrives_once_in_order() {
        let sc = small(vec![
            LegConfig::symmetric(MIB, Duration::from_millis(20)),
            LegConfig::symmetric(2 * MIB, Duration::from_millis(90)),
        ])
        .map_links(|l| l.with_loss(20_000, Duration::from_millis(60)));
        for kind in SchedulerKind::ALL {
            let r = run(&sc, kind.build().as_mut());
            assert!(r.completed, "{kind}: {r:?}");
            assert_eq!(r.delivered_bytes, sc.transfer_bytes);
            assert_eq!(r.bad_choices, 0);
            assert_eq!(r.cc_errors, 0);
            let sent: u64 = r.legs.iter().map(|l| l.cells_sent).sum();
            assert_eq!(sent, sc.total_cells());
            let series: u64 = r.series.iter().map(|s| s.delivered_bytes).sum();
            assert_eq!(series, sc.transfer_bytes);
        }
    }

    #[test]
    fn a_bounded_sink_that_overflows_stops_the_run() {
        let sc = small(vec![
            LegConfig::symmetric(2 * MIB, Duration::from_millis(10)),
            LegConfig::symmetric(2 * MIB, Duration::from_millis(300)),
        ]);
        let mut sink = BTreeReorder::with_limit(10 * DATA_BYTES);
        let r = run_with_sink(&sc, SchedulerKind::LowRtt.build().as_mut(), &mut sink);
        assert!(!r.completed);
        assert!(matches!(r.sink_error, Some(SinkError::Overflow { .. })));
        assert!(r.peak_reorder_bytes <= 10 * DATA_BYTES);
    }

    #[test]
    fn time_limit_stops_a_run() {
        let mut sc = small(vec![LegConfig::symmetric(MIB, Duration::from_millis(50))]);
        sc.time_limit = Duration::from_millis(300);
        let r = run(&sc, SchedulerKind::MinRtt.build().as_mut());
        assert!(!r.completed);
        assert!(r.duration <= Duration::from_millis(300));
        assert!(r.delivered_bytes < sc.transfer_bytes);
    }
}
