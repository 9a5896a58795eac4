//! Scraping `braid proxy --metrics` while a transfer runs, and turning the
//! scrapes into per-leg figures and time series.
//!
//! The endpoint's metrics (see `braid_client::metrics`) are labelled by
//! tunnel (`tunnel="<id>"`) and leg (`leg="<index>"`); a single circuit is
//! a tunnel with one leg. A transfer is followed on one counter per leg,
//! chosen by its [`Direction`]: DATA bytes received for a download
//! (`braid_leg_data_bytes_received_total`), DATA bytes sent for an upload
//! (`braid_leg_data_bytes_sent_total`). The tunnel that carried the
//! transfer is the one whose counter, summed over its legs, grew the most
//! between the first and the last scrape.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use braid_testnet::download::http_get;
use serde::Serialize;

use super::prom::{PromSample, parse};

/// Which way a transfer goes, and so which per-leg counter shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Direction {
    /// From the file server to the client: DATA bytes the client received
    /// on each leg, split across the legs by the exit's scheduler.
    Download,
    /// From the client to the file server: DATA bytes the client sent on
    /// each leg, split across the legs by the client's scheduler.
    Upload,
}

impl Direction {
    /// `download` or `upload`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }

    /// The leg's counter for a transfer this way: DATA payload bytes
    /// received (download) or sent (upload) so far.
    fn bytes(self, leg: &LegSnap) -> f64 {
        match self {
            Direction::Download => leg.received,
            Direction::Upload => leg.sent,
        }
    }
}

/// How often the endpoint is scraped during a transfer.
pub(crate) const SCRAPE_PERIOD: Duration = Duration::from_millis(100);
/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// One leg in one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LegSnap {
    /// `guard>middle>exit`, from `braid_leg_open`.
    pub(crate) path: Option<String>,
    pub(crate) open: Option<bool>,
    /// DATA payload bytes received so far.
    pub(crate) received: f64,
    /// DATA payload bytes sent so far.
    pub(crate) sent: f64,
    pub(crate) rtt_s: Option<f64>,
    pub(crate) min_rtt_s: Option<f64>,
    /// CONFLUX_LINK to LINKED (Conflux legs only).
    pub(crate) link_rtt_s: Option<f64>,
    pub(crate) cwnd_cells: Option<f64>,
    pub(crate) inflight_cells: Option<f64>,
}

/// One tunnel in one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TunnelSnap {
    pub(crate) legs: BTreeMap<u32, LegSnap>,
    pub(crate) reorder_bytes: Option<f64>,
    pub(crate) reorder_peak_bytes: Option<f64>,
    pub(crate) reorder_limit_bytes: Option<f64>,
}

/// Every tunnel in one scrape, by tunnel id.
pub(crate) type Snapshot = BTreeMap<String, TunnelSnap>;

/// Collects the metrics this benchmark reads; anything else is ignored.
pub(crate) fn snapshot(samples: &[PromSample]) -> Snapshot {
    let mut out = Snapshot::new();
    for s in samples {
        let Some(tunnel) = s.label("tunnel") else {
            continue;
        };
        if !s.value.is_finite() {
            continue;
        }
        if s.name.starts_with("braid_leg_") {
            let Some(leg) = s.label("leg").and_then(|l| l.parse::<u32>().ok()) else {
                continue;
            };
            let l = out
                .entry(tunnel.to_string())
                .or_default()
                .legs
                .entry(leg)
                .or_default();
            match s.name.as_str() {
                "braid_leg_open" => {
                    l.open = Some(s.value > 0.0);
                    l.path = s.label("path").map(str::to_string);
                }
                "braid_leg_data_bytes_received_total" => l.received = s.value,
                "braid_leg_data_bytes_sent_total" => l.sent = s.value,
                "braid_leg_rtt_seconds" => l.rtt_s = Some(s.value),
                "braid_leg_min_rtt_seconds" => l.min_rtt_s = Some(s.value),
                "braid_leg_link_rtt_seconds" => l.link_rtt_s = Some(s.value),
                "braid_leg_cwnd_cells" => l.cwnd_cells = Some(s.value),
                "braid_leg_inflight_cells" => l.inflight_cells = Some(s.value),
                _ => {}
            }
        } else {
            let t = out.entry(tunnel.to_string()).or_default();
            match s.name.as_str() {
                "braid_tunnel_reorder_bytes" => t.reorder_bytes = Some(s.value),
                "braid_tunnel_reorder_peak_bytes" => t.reorder_peak_bytes = Some(s.value),
                "braid_tunnel_reorder_limit_bytes" => t.reorder_limit_bytes = Some(s.value),
                _ => {}
            }
        }
    }
    out
}

/// `GET /metrics` from `addr`, parsed.
pub(crate) async fn scrape(addr: SocketAddr) -> Result<Snapshot, String> {
    let get = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        let head = http_get(stream, &addr.to_string(), "/metrics", |chunk| {
            body.extend_from_slice(chunk);
            body.len() < 16 * 1024 * 1024
        })
        .await
        .map_err(|e| e.to_string())?;
        if head.status != 200 {
            return Err(format!("status {}", head.status));
        }
        Ok(snapshot(&parse(&String::from_utf8_lossy(&body))))
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, get)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// One scrape, `t` seconds after the transfer started.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub(crate) t: f64,
    pub(crate) snap: Snapshot,
}

/// The scrapes taken around one transfer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recording {
    pub(crate) points: Vec<Point>,
    /// Scrapes that failed (endpoint absent, timeout, ...).
    pub(crate) failures: usize,
    pub(crate) last_error: Option<String>,
}

/// Runs `transfer` while scraping `addr` every [`SCRAPE_PERIOD`]: one
/// scrape just before it starts (t = 0), then periodically from a task of
/// its own (so the transfer is never held up by a scrape), and one after
/// it ends.
pub(crate) async fn record<F: Future>(addr: SocketAddr, transfer: F) -> (F::Output, Recording) {
    let mut rec = Recording::default();
    let first = scrape(addr).await;
    let start = Instant::now();
    note(&mut rec, 0.0, first);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut out: Vec<(f64, Result<Snapshot, String>)> = Vec::new();
        let mut tick = tokio::time::interval(SCRAPE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {
                    let r = scrape(addr).await;
                    out.push((start.elapsed().as_secs_f64(), r));
                }
            }
        }
        out
    });
    let output = transfer.await;
    let end = start.elapsed().as_secs_f64();
    let _ = stop.send(());
    if let Ok(points) = sampler.await {
        for (t, r) in points.into_iter().filter(|(t, _)| *t <= end) {
            note(&mut rec, t, r);
        }
    }
    let last = scrape(addr).await;
    note(&mut rec, end, last);
    (output, rec)
}

fn note(rec: &mut Recording, t: f64, r: Result<Snapshot, String>) {
    match r {
        Ok(snap) => rec.points.push(Point { t, snap }),
        Err(e) => {
            rec.failures += 1;
            rec.last_error = Some(e);
        }
    }
}

/// What one leg carried during a transfer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegUse {
    pub(crate) leg: u32,
    pub(crate) path: Option<String>,
    /// DATA payload bytes received (download) or sent (upload) during the
    /// transfer.
    pub(crate) bytes: f64,
    pub(crate) rtt_s: Option<f64>,
    pub(crate) min_rtt_s: Option<f64>,
    pub(crate) link_rtt_s: Option<f64>,
}

/// Bytes per second per fixed-width time bin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) bin_s: f64,
    /// One vector per leg, in the order of [`TunnelUse::legs`].
    pub(crate) legs: Vec<Vec<f64>>,
    pub(crate) total: Vec<f64>,
}

/// The tunnel that carried a transfer and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TunnelUse {
    pub(crate) tunnel: String,
    pub(crate) legs: Vec<LegUse>,
    /// The queue's high-water mark over the tunnel's life, at the end.
    pub(crate) reorder_peak_bytes: Option<f64>,
    /// The largest queue seen by a scrape during the transfer.
    pub(crate) reorder_sampled_max_bytes: Option<f64>,
    pub(crate) series: Series,
}

/// The tunnel's counter for `direction`, summed over its legs.
fn tunnel_total(t: &TunnelSnap, direction: Direction) -> f64 {
    t.legs.values().map(|l| direction.bytes(l)).sum()
}

/// Finds the tunnel that carried a transfer going `direction` (the one
/// whose counter for that direction grew the most) and bins each leg's
/// bytes that way into `bin_s`-second bins (linear interpolation between
/// scrapes).
pub(crate) fn analyse(points: &[Point], bin_s: f64, direction: Direction) -> Option<TunnelUse> {
    let (first, last) = (points.first()?, points.last()?);
    if points.len() < 2 || bin_s <= 0.0 {
        return None;
    }
    let total = |t: &TunnelSnap| tunnel_total(t, direction);
    let (tunnel, grew) = last
        .snap
        .iter()
        .map(|(id, t)| {
            let before = first.snap.get(id).map_or(0.0, total);
            (id.clone(), total(t) - before)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if grew <= 0.0 {
        return None;
    }
    let leg_ids: Vec<u32> = {
        let mut ids: Vec<u32> = points
            .iter()
            .filter_map(|p| p.snap.get(&tunnel))
            .flat_map(|t| t.legs.keys().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let last_t = last.snap.get(&tunnel)?;
    let baseline = |leg: u32| {
        first
            .snap
            .get(&tunnel)
            .and_then(|t| t.legs.get(&leg))
            .map_or(0.0, |l| direction.bytes(l))
    };
    // Cumulative bytes of each leg at each point (carried forward when a
    // scrape lacks the leg).
    let cumulative: Vec<Vec<(f64, f64)>> = leg_ids
        .iter()
        .map(|&leg| {
            let base = baseline(leg);
            let mut value = 0.0;
            points
                .iter()
                .map(|p| {
                    if let Some(l) = p.snap.get(&tunnel).and_then(|t| t.legs.get(&leg)) {
                        value = (direction.bytes(l) - base).max(0.0);
                    }
                    (p.t, value)
                })
                .collect()
        })
        .collect();
    let end = last.t;
    let bins = (end / bin_s).ceil().max(1.0) as usize;
    let legs_series: Vec<Vec<f64>> = cumulative
        .iter()
        .map(|c| {
            (0..bins)
                .map(|j| {
                    let a = j as f64 * bin_s;
                    let b = ((j + 1) as f64 * bin_s).min(end);
                    let width = b - a;
                    if width <= 0.0 {
                        0.0
                    } else {
                        (interpolate(c, b) - interpolate(c, a)) / width
                    }
                })
                .collect()
        })
        .collect();
    let total = (0..bins)
        .map(|j| legs_series.iter().filter_map(|s| s.get(j)).sum())
        .collect();
    let legs = leg_ids
        .iter()
        .map(|&leg| {
            let now = last_t.legs.get(&leg);
            LegUse {
                leg,
                path: points
                    .iter()
                    .rev()
                    .filter_map(|p| p.snap.get(&tunnel)?.legs.get(&leg)?.path.clone())
                    .next(),
                bytes: now.map_or(0.0, |l| (direction.bytes(l) - baseline(leg)).max(0.0)),
                rtt_s: now.and_then(|l| l.rtt_s),
                min_rtt_s: now.and_then(|l| l.min_rtt_s),
                link_rtt_s: now.and_then(|l| l.link_rtt_s),
            }
        })
        .collect();
    Some(TunnelUse {
        legs,
        reorder_peak_bytes: last_t.reorder_peak_bytes,
        reorder_sampled_max_bytes: points
            .iter()
            .filter_map(|p| p.snap.get(&tunnel)?.reorder_bytes)
            .reduce(f64::max),
        series: Series {
            bin_s,
            legs: legs_series,
            total,
        },
        tunnel,
    })
}

/// The value of the piecewise-linear function through `points` (sorted by
/// time) at `t`, flat beyond both ends.
fn interpolate(points: &[(f64, f64)], t: f64) -> f64 {
    let Some(&(t0, v0)) = points.first() else {
        return 0.0;
    };
    if t <= t0 {
        return v0;
    }
    for w in points.windows(2) {
        if let [(ta, va), (tb, vb)] = w
            && t <= *tb
        {
            if tb - ta <= 0.0 {
                return *vb;
            }
            return va + (vb - va) * (t - ta) / (tb - ta);
        }
    }
    points.last().map_or(0.0, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t7: [f64; 2], t9: f64, peak: f64) -> String {
        format!(
            "# TYPE braid_leg_open gauge\n\
             braid_leg_open{{tunnel=\"7\",leg=\"0\",path=\"relay0>relay2>exit0\"}} 1\n\
             braid_leg_open{{tunnel=\"7\",leg=\"1\",path=\"relay1>relay3>exit0\"}} 1\n\
             braid_leg_data_bytes_received_total{{tunnel=\"7\",leg=\"0\"}} {}\n\
             braid_leg_data_bytes_received_total{{tunnel=\"7\",leg=\"1\"}} {}\n\
             braid_leg_rtt_seconds{{tunnel=\"7\",leg=\"0\"}} 0.05\n\
             braid_leg_min_rtt_seconds{{tunnel=\"7\",leg=\"0\"}} 0.042\n\
             braid_leg_link_rtt_seconds{{tunnel=\"7\",leg=\"1\"}} 0.061\n\
             braid_leg_future_metric{{tunnel=\"7\",leg=\"0\"}} 5\n\
             braid_leg_data_bytes_received_total{{tunnel=\"9\",leg=\"0\"}} {t9}\n\
             braid_tunnel_reorder_bytes{{tunnel=\"7\"}} {}\n\
             braid_tunnel_reorder_peak_bytes{{tunnel=\"7\"}} {peak}\n\
             braid_tunnels 2\n",
            t7[0],
            t7[1],
            peak / 2.0
        )
    }

    fn point(t: f64, t7: [f64; 2], t9: f64, peak: f64) -> Point {
        Point {
            t,
            snap: snapshot(&parse(&text(t7, t9, peak))),
        }
    }

    #[test]
    fn snapshot_reads_legs_and_tunnels() {
        let s = snapshot(&parse(&text([10.0, 20.0], 5.0, 1000.0)));
        assert_eq!(s.len(), 2);
        let t = &s["7"];
        assert_eq!(t.legs.len(), 2);
        assert_eq!(t.legs[&0].path.as_deref(), Some("relay0>relay2>exit0"));
        assert_eq!(t.legs[&0].open, Some(true));
        assert_eq!(t.legs[&1].received, 20.0);
        assert_eq!(t.legs[&0].min_rtt_s, Some(0.042));
        assert_eq!(t.legs[&1].rtt_s, None);
        assert_eq!(t.legs[&1].link_rtt_s, Some(0.061));
        assert_eq!(t.reorder_peak_bytes, Some(1000.0));
        assert_eq!(t.reorder_bytes, Some(500.0));
        assert_eq!(s["9"].legs[&0].received, 5.0);
        assert!(snapshot(&parse("garbage\nbraid_tunnels 3\n")).is_empty());
    }

    #[test]
    fn analyse_finds_the_busy_tunnel_and_bins() {
        // Tunnel 9 moves 100 bytes; tunnel 7 moves 1.2 MB over 0.4 s:
        // leg 0 at 2 MB/s throughout, leg 1 at 1 MB/s in the second half.
        let points = vec![
            point(0.0, [1000.0, 500.0], 0.0, 10.0),
            point(0.1, [201_000.0, 500.0], 0.0, 10.0),
            point(0.2, [401_000.0, 500.0], 50.0, 10.0),
            point(0.3, [601_000.0, 100_500.0], 80.0, 40.0),
            point(0.4, [801_000.0, 200_500.0], 100.0, 4000.0),
        ];
        let u = analyse(&points, 0.2, Direction::Download).unwrap();
        assert_eq!(u.tunnel, "7");
        assert_eq!(u.legs.len(), 2);
        assert_eq!(u.legs[0].bytes, 800_000.0);
        assert_eq!(u.legs[1].bytes, 200_000.0);
        assert_eq!(u.legs[1].path.as_deref(), Some("relay1>relay3>exit0"));
        assert_eq!(u.legs[0].min_rtt_s, Some(0.042));
        assert_eq!(u.legs[1].link_rtt_s, Some(0.061));
        assert_eq!(u.reorder_peak_bytes, Some(4000.0));
        assert_eq!(u.reorder_sampled_max_bytes, Some(2000.0));
        let s = &u.series;
        assert_eq!(s.legs.len(), 2);
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
        };
        assert!(close(&s.legs[0], &[2e6, 2e6]), "{:?}", s.legs[0]);
        assert!(close(&s.legs[1], &[0.0, 1e6]), "{:?}", s.legs[1]);
        assert!(close(&s.total, &[2e6, 3e6]), "{:?}", s.total);
    }

    #[test]
    fn analyse_interpolates_and_handles_gaps() {
        // Irregular scrapes and a partial last bin.
        let points = vec![
            point(0.0, [0.0, 0.0], 0.0, 0.0),
            point(0.25, [250_000.0, 0.0], 0.0, 0.0),
            point(0.5, [500_000.0, 0.0], 0.0, 0.0),
        ];
        let u = analyse(&points, 0.2, Direction::Download).unwrap();
        let s = &u.series.legs[0];
        assert_eq!(s.len(), 3);
        for v in s {
            assert!((v - 1e6).abs() < 1e-6, "{s:?}");
        }
        // Nothing moved, one point, or a bad bin: no answer.
        let still = vec![
            point(0.0, [5.0, 5.0], 1.0, 0.0),
            point(1.0, [5.0, 5.0], 1.0, 0.0),
        ];
        assert_eq!(analyse(&still, 0.2, Direction::Download), None);
        assert_eq!(analyse(&points[..1], 0.2, Direction::Download), None);
        assert_eq!(analyse(&points, 0.0, Direction::Download), None);
        assert_eq!(analyse(&[], 0.2, Direction::Download), None);
        // A tunnel that appears after the first scrape counts from zero.
        let late = vec![
            Point {
                t: 0.0,
                snap: Snapshot::new(),
            },
            point(0.2, [100.0, 100.0], 0.0, 0.0),
        ];
        let u = analyse(&late, 0.2, Direction::Download).unwrap();
        assert_eq!(u.legs[0].bytes + u.legs[1].bytes, 200.0);
    }

    /// [`point`] plus the DATA bytes sent on tunnel 7's two legs and on
    /// tunnel 9's one.
    fn point_sent(t: f64, t7: [f64; 2], t9: f64, s7: [f64; 2], s9: f64) -> Point {
        let sent = format!(
            "braid_leg_data_bytes_sent_total{{tunnel=\"7\",leg=\"0\"}} {}\n\
             braid_leg_data_bytes_sent_total{{tunnel=\"7\",leg=\"1\"}} {}\n\
             braid_leg_data_bytes_sent_total{{tunnel=\"9\",leg=\"0\"}} {s9}\n",
            s7[0], s7[1]
        );
        Point {
            t,
            snap: snapshot(&parse(&(text(t7, t9, 0.0) + &sent))),
        }
    }

    #[test]
    fn analyse_follows_the_direction_counter() {
        // An upload on tunnel 7 (which had sent 12 kB before): 400 kB sent
        // over 0.4 s, leg 0 at 0.5 MB/s throughout, leg 1 at 0.5 MB/s in
        // the second half; it receives only the 100-byte answer. Tunnel 9
        // receives 1000 bytes meanwhile and sends nothing.
        let points = vec![
            point_sent(0.0, [0.0, 0.0], 0.0, [5000.0, 7000.0], 30.0),
            point_sent(0.2, [0.0, 0.0], 500.0, [105_000.0, 7000.0], 30.0),
            point_sent(0.4, [100.0, 0.0], 1000.0, [205_000.0, 107_000.0], 30.0),
        ];
        assert_eq!(points[2].snap["7"].legs[&1].sent, 107_000.0);
        let up = analyse(&points, 0.2, Direction::Upload).unwrap();
        assert_eq!(up.tunnel, "7");
        let bytes: Vec<f64> = up.legs.iter().map(|l| l.bytes).collect();
        assert_eq!(bytes, [200_000.0, 100_000.0]);
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
        };
        assert!(close(&up.series.legs[0], &[5e5, 5e5]), "{:?}", up.series);
        assert!(close(&up.series.legs[1], &[0.0, 5e5]), "{:?}", up.series);
        assert!(close(&up.series.total, &[5e5, 1e6]), "{:?}", up.series);
        // The same scrapes read as a download: tunnel 9's received bytes.
        let down = analyse(&points, 0.2, Direction::Download).unwrap();
        assert_eq!(down.tunnel, "9");
        assert_eq!(down.legs.len(), 1);
        assert_eq!(down.legs[0].bytes, 1000.0);
        // Nothing sent anywhere: no upload found.
        let quiet = vec![
            point_sent(0.0, [0.0, 0.0], 0.0, [5.0, 5.0], 5.0),
            point_sent(0.2, [900.0, 0.0], 0.0, [5.0, 5.0], 5.0),
        ];
        assert_eq!(analyse(&quiet, 0.2, Direction::Upload), None);
        assert!(analyse(&quiet, 0.2, Direction::Download).is_some());
    }

    #[test]
    fn direction_names() {
        assert_eq!(Direction::Download.name(), "download");
        assert_eq!(Direction::Upload.name(), "upload");
        assert_eq!(
            serde_json::to_string(&[Direction::Download, Direction::Upload]).unwrap(),
            "[\"download\",\"upload\"]"
        );
    }

    #[test]
    fn interpolation() {
        let pts = [(0.0, 0.0), (1.0, 10.0), (1.0, 12.0), (2.0, 12.0)];
        assert_eq!(interpolate(&pts, -1.0), 0.0);
        assert_eq!(interpolate(&pts, 0.5), 5.0);
        assert_eq!(interpolate(&pts, 1.5), 12.0);
        assert_eq!(interpolate(&pts, 9.0), 12.0);
        assert_eq!(interpolate(&[], 1.0), 0.0);
    }
}
