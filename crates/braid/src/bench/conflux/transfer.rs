//! One checked transfer or short upload by one client, with what each leg
//! carried: Braid's from its metrics, C-tor's from `CIRC_BW` events.

use std::time::Duration;

use braid_testnet::Manifest;
use braid_testnet::ctor_conflux::{self, LegReport, Route};
use braid_testnet::download::{Download, Upload, fetch_file, upload_file};

use super::report::{LegFigure, Sample, SeriesJson, ShortSample};
use super::run::Running;
use super::scenario::{Scenario, Who};
use crate::bench::proc::cpu_seconds;
use crate::bench::scrape::{self, Direction, Point, Recording, TunnelUse};

/// Width of a time-series bin.
const BIN_S: f64 = 0.2;

/// What a checked transfer measured, either way.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Done {
    bytes: u64,
    /// [`Sample::mb_per_s`].
    mb_per_s: f64,
    /// [`Sample::server_mb_per_s`].
    server_mb_per_s: Option<f64>,
    /// [`Sample::ttfb_ms`]: first byte of a download, connect time of an
    /// upload.
    first_ms: f64,
}

impl From<&Download> for Done {
    fn from(d: &Download) -> Self {
        Done {
            bytes: d.bytes,
            mb_per_s: d.mb_per_s(),
            server_mb_per_s: None,
            first_ms: d.time_to_first_byte.as_secs_f64() * 1000.0,
        }
    }
}

impl From<&Upload> for Done {
    fn from(u: &Upload) -> Self {
        Done {
            bytes: u.bytes,
            mb_per_s: u.mb_per_s(),
            server_mb_per_s: Some(u.server_mb_per_s()),
            first_ms: u.connected.as_secs_f64() * 1000.0,
        }
    }
}

/// How long a transfer of `size` bytes may take: generous, 50 kB/s and a
/// minute.
fn time_limit(size: u64) -> Duration {
    Duration::from_secs(60 + size / 50_000)
}

/// One checked transfer by one client.
pub(super) async fn transfer(
    sc: &Scenario,
    c: &Running,
    direction: Direction,
    manifest: &Manifest,
    size: u64,
    rep: usize,
    exit_pid: Option<u32>,
) -> Sample {
    let limit = time_limit(size);
    let seed = rep as u64;
    let cpu0 = cpu_seconds(c.pid);
    let exit_cpu0 = exit_pid.and_then(cpu_seconds);
    let mut sample = Sample {
        scenario: sc.name.into(),
        client: c.who.label(),
        kind: c.who.kind(),
        direction,
        rep,
        ok: false,
        error: None,
        bytes: 0,
        mb_per_s: 0.0,
        server_mb_per_s: None,
        ttfb_ms: 0.0,
        cpu_s_per_100mb: None,
        exit_cpu_s_per_100mb: None,
        tunnel: None,
        reorder_peak_bytes: None,
        reorder_sampled_max_bytes: None,
        legs: Vec::new(),
        series: None,
        metrics_scrapes: 0,
        metrics_failures: 0,
    };
    let timed_out = || {
        format!(
            "no complete {} within {} s",
            direction.name(),
            limit.as_secs()
        )
    };
    let server = manifest.fileserver.address;
    match c.who {
        Who::Ctor => {
            let run = async {
                match direction {
                    Direction::Download => ctor_conflux::download(manifest, size, seed)
                        .await
                        .map(|d| (Done::from(&d.download), d.route)),
                    Direction::Upload => ctor_conflux::upload(manifest, size, seed)
                        .await
                        .map(|u| (Done::from(&u.upload), u.route)),
                }
            };
            match tokio::time::timeout(limit, run).await {
                Ok(Ok((done, route))) => {
                    fill_done(&mut sample, &done);
                    sample.tunnel = route.conflux_id.clone();
                    sample.legs = ctor_legs(&route.legs, direction);
                    sample.error = check_ctor_set(sc, &route);
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
        Who::Leg(_) | Who::Braid(_) => {
            let socks = Some((c.socks, None));
            let run = tokio::time::timeout(limit, async {
                match direction {
                    Direction::Download => fetch_file(server, socks, size, seed)
                        .await
                        .map(|d| Done::from(&d)),
                    Direction::Upload => upload_file(server, socks, size, seed)
                        .await
                        .map(|u| Done::from(&u)),
                }
            });
            let (result, rec) = match c.metrics {
                Some(addr) => scrape::record(addr, run).await,
                None => (run.await, Recording::default()),
            };
            sample.metrics_scrapes = rec.points.len();
            sample.metrics_failures = rec.failures;
            match result {
                Ok(Ok(done)) => {
                    fill_done(&mut sample, &done);
                    if let Some(u) = scrape::analyse(&rec.points, BIN_S, direction) {
                        fill_from_metrics(&mut sample, &u);
                    }
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
    }
    if let (Some(a), Some(b)) = (cpu0, cpu_seconds(c.pid))
        && sample.ok
    {
        sample.cpu_s_per_100mb = Some((b - a) * 1e8 / size as f64);
    }
    if let (Some(a), Some(b)) = (exit_cpu0, exit_pid.and_then(cpu_seconds))
        && sample.ok
    {
        sample.exit_cpu_s_per_100mb = Some((b - a) * 1e8 / size as f64);
    }
    sample
}

/// Marks `sample` as a success with `done`'s figures.
fn fill_done(sample: &mut Sample, done: &Done) {
    sample.ok = true;
    sample.bytes = done.bytes;
    sample.mb_per_s = done.mb_per_s;
    sample.server_mb_per_s = done.server_mb_per_s;
    sample.ttfb_ms = done.first_ms;
}

/// One checked short upload of `size` bytes by one client: its completion
/// time and what each leg sent (for Braid from a scrape before and one
/// after the upload, none during it, so that the timed part is not
/// disturbed).
pub(super) async fn short_upload(
    sc: &Scenario,
    c: &Running,
    manifest: &Manifest,
    size: u64,
    rep: usize,
) -> ShortSample {
    let limit = time_limit(size);
    let seed = rep as u64;
    let mut sample = ShortSample {
        scenario: sc.name.into(),
        client: c.who.label(),
        kind: c.who.kind(),
        rep,
        ok: false,
        error: None,
        bytes: 0,
        completion_ms: 0.0,
        connect_ms: 0.0,
        tunnel: None,
        legs: Vec::new(),
    };
    let timed_out = || format!("no complete upload within {} s", limit.as_secs());
    match c.who {
        Who::Ctor => {
            match tokio::time::timeout(limit, ctor_conflux::upload(manifest, size, seed)).await {
                Ok(Ok(u)) => {
                    fill_short(&mut sample, &u.upload);
                    sample.tunnel = u.route.conflux_id.clone();
                    sample.legs = ctor_legs(&u.route.legs, Direction::Upload);
                    sample.error = check_ctor_set(sc, &u.route);
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
        Who::Leg(_) | Who::Braid(_) => {
            let snap = || async {
                match c.metrics {
                    Some(addr) => scrape::scrape(addr).await.ok(),
                    None => None,
                }
            };
            let before = snap().await;
            let socks = Some((c.socks, None));
            let server = manifest.fileserver.address;
            match tokio::time::timeout(limit, upload_file(server, socks, size, seed)).await {
                Ok(Ok(u)) => {
                    fill_short(&mut sample, &u);
                    if let (Some(before), Some(after)) = (before, snap().await) {
                        let points = [
                            Point {
                                t: 0.0,
                                snap: before,
                            },
                            Point {
                                t: u.elapsed.as_secs_f64(),
                                snap: after,
                            },
                        ];
                        if let Some(used) = scrape::analyse(&points, BIN_S, Direction::Upload) {
                            sample.tunnel = Some(used.tunnel.clone());
                            sample.legs = leg_figures(&used);
                        }
                    }
                }
                Ok(Err(e)) => sample.error = Some(e.to_string()),
                Err(_) => sample.error = Some(timed_out()),
            }
        }
    }
    sample
}

/// An upload's completion time in ms: from the SOCKS connection's success
/// (CONNECTED) to the server's answer.
pub(super) fn completion_ms(u: &Upload) -> f64 {
    u.elapsed.saturating_sub(u.connected).as_secs_f64() * 1000.0
}

/// Marks `sample` as a success with `u`'s figures.
fn fill_short(sample: &mut ShortSample, u: &Upload) {
    sample.ok = true;
    sample.bytes = u.bytes;
    sample.completion_ms = completion_ms(u);
    sample.connect_ms = u.connected.as_secs_f64() * 1000.0;
}

/// C-tor's legs for a transfer going `direction`: cell bytes counted where
/// each cell arrives (`READ`) for a download, where each leaves the client
/// (`WRITTEN`) for an upload, with the `DELIVERED_` figure beside.
fn ctor_legs(legs: &[LegReport], direction: Direction) -> Vec<LegFigure> {
    let figures = |l: &LegReport| match direction {
        Direction::Download => (l.read, l.bytes),
        Direction::Upload => (l.written, l.delivered_written),
    };
    let total = legs.iter().map(|l| figures(l).0).sum::<u64>().max(1);
    legs.iter()
        .enumerate()
        .map(|(i, l)| {
            let (bytes, delivered) = figures(l);
            LegFigure {
                leg: i,
                path: l.path.join(">"),
                bytes,
                delivered_bytes: Some(delivered),
                share: bytes as f64 / total as f64,
                rtt_ms: None,
                min_rtt_ms: None,
                link_rtt_ms: l.rtt_ms,
            }
        })
        .collect()
}

/// Why C-tor's transfer does not count as a Conflux set of the scenario's
/// legs: its stream's circuit was not CONFLUX_LINKED, or its set had
/// another number of legs (3 legs only with the consensus parameter).
fn check_ctor_set(sc: &Scenario, route: &Route) -> Option<String> {
    (route.purpose != "CONFLUX_LINKED" || route.legs.len() != sc.legs()).then(|| {
        format!(
            "C-tor used a {} circuit with {} legs",
            route.purpose,
            route.legs.len()
        )
    })
}

/// Braid's per-leg figures, series and (downloads only) reorder queue.
fn fill_from_metrics(sample: &mut Sample, u: &TunnelUse) {
    sample.tunnel = Some(u.tunnel.clone());
    if sample.direction == Direction::Download {
        sample.reorder_peak_bytes = u.reorder_peak_bytes;
        sample.reorder_sampled_max_bytes = u.reorder_sampled_max_bytes;
    }
    sample.legs = leg_figures(u);
    let mb = |v: &Vec<f64>| v.iter().map(|x| (x / 1e4).round() / 100.0).collect();
    sample.series = Some(SeriesJson {
        bin_ms: u.series.bin_s * 1000.0,
        unit: "MB/s",
        legs: u.series.legs.iter().map(mb).collect(),
        total: mb(&u.series.total),
    });
}

/// Braid's per-leg figures of a transfer, from its metrics.
fn leg_figures(u: &TunnelUse) -> Vec<LegFigure> {
    let total: f64 = u.legs.iter().map(|l| l.bytes).sum::<f64>().max(1.0);
    u.legs
        .iter()
        .map(|l| LegFigure {
            leg: l.leg as usize,
            path: l.path.clone().unwrap_or_default(),
            bytes: l.bytes as u64,
            delivered_bytes: None,
            share: l.bytes / total,
            rtt_ms: l.rtt_s.map(|s| s * 1000.0),
            min_rtt_ms: l.min_rtt_s.map(|s| s * 1000.0),
            link_rtt_ms: l.link_rtt_s.map(|s| s * 1000.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::conflux::fixtures::short;
    use crate::bench::conflux::scenario::scenarios;

    #[test]
    fn transfer_figures_each_way() {
        let d = Download {
            bytes: 2_000_000,
            elapsed: Duration::from_secs(2),
            time_to_first_byte: Duration::from_millis(120),
            sha256: String::new(),
        };
        assert_eq!(
            Done::from(&d),
            Done {
                bytes: 2_000_000,
                mb_per_s: 1.0,
                server_mb_per_s: None,
                first_ms: 120.0
            }
        );
        let u = Upload {
            bytes: 2_000_000,
            elapsed: Duration::from_millis(1250),
            connected: Duration::from_millis(250),
            server_elapsed: Duration::from_millis(500),
            sha256: String::new(),
        };
        assert_eq!(
            Done::from(&u),
            Done {
                bytes: 2_000_000,
                mb_per_s: 2.0,
                server_mb_per_s: Some(4.0),
                first_ms: 250.0
            }
        );
    }

    #[test]
    fn ctor_legs_follow_the_direction() {
        let leg = |id: u64, middle: &str, read: u64, written: u64| LegReport {
            circ_id: id,
            path: vec![format!("relay{id}"), middle.into(), "exit0".into()],
            fingerprints: vec![format!("G{id}"), middle.into(), "E".into()],
            rtt_ms: Some(45.0),
            bytes: 7,
            read,
            written,
            delivered_written: 9,
        };
        let legs = vec![leg(0, "relay2", 300, 1000), leg(1, "relay3", 100, 3000)];
        let down = ctor_legs(&legs, Direction::Download);
        let figures = |v: &[LegFigure]| -> Vec<(u64, Option<u64>, f64)> {
            v.iter()
                .map(|l| (l.bytes, l.delivered_bytes, l.share))
                .collect()
        };
        assert_eq!(figures(&down), [(300, Some(7), 0.75), (100, Some(7), 0.25)]);
        assert_eq!(down[1].path, "relay1>relay3>exit0");
        assert_eq!(down[0].link_rtt_ms, Some(45.0));
        let up = ctor_legs(&legs, Direction::Upload);
        assert_eq!(figures(&up), [(1000, Some(9), 0.25), (3000, Some(9), 0.75)]);
        // The set must be linked and have the scenario's legs.
        let route = |purpose: &str, legs: Vec<LegReport>| Route {
            stream_circ: Some(1),
            purpose: purpose.into(),
            conflux_id: Some("x".into()),
            legs,
            dropped_events: 0,
        };
        let sc = &scenarios()[0];
        assert_eq!(
            check_ctor_set(sc, &route("CONFLUX_LINKED", legs.clone())),
            None
        );
        assert_eq!(
            check_ctor_set(&scenarios()[6], &route("CONFLUX_LINKED", legs.clone())),
            Some("C-tor used a CONFLUX_LINKED circuit with 2 legs".into())
        );
        assert_eq!(
            check_ctor_set(sc, &route("GENERAL", legs[..1].to_vec())),
            Some("C-tor used a GENERAL circuit with 1 legs".into())
        );
    }

    #[test]
    fn time_limits() {
        assert_eq!(time_limit(100_000), Duration::from_secs(62));
    }

    #[test]
    fn short_completion_excludes_the_connection() {
        let u = Upload {
            bytes: 100_000,
            elapsed: Duration::from_millis(480),
            connected: Duration::from_millis(130),
            server_elapsed: Duration::from_millis(200),
            sha256: String::new(),
        };
        assert!((completion_ms(&u) - 350.0).abs() < 1e-9);
        let mut s = short(Who::Ctor, 0, 0.0, &[]);
        s.ok = false;
        fill_short(&mut s, &u);
        assert!(s.ok);
        assert!((s.completion_ms - 350.0).abs() < 1e-9);
        assert!((s.connect_ms - 130.0).abs() < 1e-9);
    }
}
