//! A download or upload through the network's C-tor client, with a per-leg
//! report of the Conflux set it used, read from the client's control port.
//!
//! The stream's circuit comes from its `STREAM ... SUCCEEDED` event; the
//! legs are the circuits of `GETINFO circuit-status` with the same
//! `CONFLUX_ID`; bytes per leg are the sums of `READ`, `WRITTEN`,
//! `DELIVERED_READ` and `DELIVERED_WRITTEN` in `CIRC_BW` events; RTT is
//! the leg's `CONFLUX_RTT`. A download is split across the legs by the
//! exit's scheduler (seen in `READ`), an upload by the client's (seen in
//! `WRITTEN`).
//!
//! This is how the foundation proves the network fit for Conflux before
//! Braid's own client exists; later the same report comes from Braid.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::control::{ControlConn, keyword, keywords};
use crate::download::{self, Download, Upload};
use crate::error::TestnetError;
use crate::manifest::Manifest;

/// One circuit from `GETINFO circuit-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitInfo {
    /// The circuit id.
    pub id: u64,
    /// BUILT, EXTENDED, ...
    pub status: String,
    /// Fingerprints of the hops, guard first, upper-case hex.
    pub path: Vec<String>,
    /// PURPOSE=.
    pub purpose: String,
    /// CONFLUX_ID=, for Conflux legs.
    pub conflux_id: Option<String>,
    /// CONFLUX_RTT= in microseconds.
    pub conflux_rtt_us: Option<u64>,
}

/// Parses the lines of `GETINFO circuit-status` (control-spec §4.1.1 format).
pub fn parse_circuit_status(text: &str) -> Vec<CircuitInfo> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace();
            let id = words.next()?.parse().ok()?;
            let status = words.next()?.to_string();
            let rest: Vec<&str> = words.collect();
            let path = rest
                .first()
                .filter(|w| w.starts_with('$'))
                .map(|w| {
                    w.split(',')
                        .map(|hop| {
                            hop.trim_start_matches('$')
                                .split(['~', '='])
                                .next()
                                .unwrap_or_default()
                                .to_ascii_uppercase()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let kw = keywords(line);
            Some(CircuitInfo {
                id,
                status,
                path,
                purpose: keyword(&kw, "PURPOSE").unwrap_or_default().to_string(),
                conflux_id: keyword(&kw, "CONFLUX_ID").map(str::to_string),
                conflux_rtt_us: keyword(&kw, "CONFLUX_RTT").and_then(|v| v.parse().ok()),
            })
        })
        .collect()
}

/// One leg of the set a transfer used.
#[derive(Debug, Clone)]
pub struct LegReport {
    /// Circuit id at the client.
    pub circ_id: u64,
    /// Nicknames of guard, middle, exit.
    pub path: Vec<String>,
    /// Fingerprints of guard, middle, exit.
    pub fingerprints: Vec<String>,
    /// RTT the client measured for the leg, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Payload bytes the leg delivered to the client during the transfer
    /// (`DELIVERED_READ`). On a Conflux leg tor counts a cell where it is
    /// processed, and the cells a gap-filling cell releases from the
    /// reorder queue are processed on that cell's leg: with legs of
    /// different RTTs most bytes are credited to the slower leg.
    pub bytes: u64,
    /// Cell bytes that arrived on the leg during the transfer (`READ`,
    /// counted where each cell arrives): the reliable per-leg split of a
    /// download.
    pub read: u64,
    /// Cell bytes the client wrote on the leg during the transfer
    /// (`WRITTEN`, counted where each cell leaves): the per-leg split of an
    /// upload, as the client's Conflux scheduler chose it.
    pub written: u64,
    /// Payload bytes of the relay cells the client sent on the leg during
    /// the transfer (`DELIVERED_WRITTEN`).
    pub delivered_written: u64,
}

/// A checked download and what carried it.
#[derive(Debug, Clone)]
pub struct ClientDownload {
    /// The download itself (size, time, digest).
    pub download: Download,
    /// The circuits that carried it.
    pub route: Route,
}

impl ClientDownload {
    /// A table: one row per leg with path, RTT, cell bytes that arrived on
    /// it (`READ`: `DELIVERED_READ` credits a gap-filling leg with what it
    /// releases from the reorder queue), share and MB/s.
    pub fn table(&self) -> String {
        leg_table(
            &self.route.legs,
            |l| l.read,
            self.download.bytes,
            self.download.elapsed,
            self.download.mb_per_s(),
        )
    }
}

/// A checked upload and what carried it.
#[derive(Debug, Clone)]
pub struct ClientUpload {
    /// The upload itself (size, times, digest).
    pub upload: Upload,
    /// The circuits that carried it.
    pub route: Route,
}

impl ClientUpload {
    /// A table: one row per leg with path, RTT, cell bytes the client wrote
    /// on it (`WRITTEN`), share and MB/s, over the upload's time less the
    /// connection set-up (as [`Upload::mb_per_s`]).
    pub fn table(&self) -> String {
        leg_table(
            &self.route.legs,
            |l| l.written,
            self.upload.bytes,
            self.upload.elapsed.saturating_sub(self.upload.connected),
            self.upload.mb_per_s(),
        )
    }
}

impl Route {
    /// Checks that the transfer used a linked Conflux set of two legs that
    /// share the exit and differ in guard and middle.
    pub fn check_linked_pair(&self) -> Result<(), String> {
        let (stream_circ, purpose, legs) = (self.stream_circ, &self.purpose, self.legs.as_slice());
        if purpose != "CONFLUX_LINKED" {
            return Err(format!(
                "stream circuit {stream_circ:?} has purpose {purpose:?}, not CONFLUX_LINKED"
            ));
        }
        let [a, b] = legs else {
            return Err(format!("the set has {} legs, not 2", legs.len()));
        };
        if a.fingerprints.len() != 3 || b.fingerprints.len() != 3 {
            return Err("a leg is not a 3-hop circuit".into());
        }
        let hop = |l: &LegReport, i: usize| l.fingerprints.get(i).cloned().unwrap_or_default();
        if hop(a, 2) != hop(b, 2) {
            return Err(format!(
                "legs end at different exits: {:?} / {:?}",
                a.path, b.path
            ));
        }
        if hop(a, 0) == hop(b, 0) {
            return Err(format!(
                "legs share their guard: {:?} / {:?}",
                a.path, b.path
            ));
        }
        if hop(a, 1) == hop(b, 1) {
            return Err(format!(
                "legs share their middle: {:?} / {:?}",
                a.path, b.path
            ));
        }
        Ok(())
    }
}

/// The table of [`ClientDownload::table`] and [`ClientUpload::table`]: one
/// row per leg with the leg's `figure` (cell bytes), its share and its rate
/// over `elapsed`, then a row for the whole transfer of `bytes` at
/// `mb_per_s`.
fn leg_table(
    legs: &[LegReport],
    figure: fn(&LegReport) -> u64,
    bytes: u64,
    elapsed: Duration,
    mb_per_s: f64,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let total: u64 = legs.iter().map(figure).sum();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<4} {:>5}  {:<32} {:>8} {:>12} {:>6} {:>7}",
        "leg", "circ", "path (guard > middle > exit)", "RTT ms", "cell bytes", "share", "MB/s"
    );
    for (i, leg) in legs.iter().enumerate() {
        let cells = figure(leg);
        let _ = writeln!(
            t,
            "{:<4} {:>5}  {:<32} {:>8} {:>12} {:>5.1}% {:>7.2}",
            i + 1,
            leg.circ_id,
            leg.path.join(" > "),
            leg.rtt_ms.map_or("-".to_string(), |r| format!("{r:.1}")),
            cells,
            100.0 * cells as f64 / total.max(1) as f64,
            cells as f64 / 1e6 / secs
        );
    }
    let _ = writeln!(
        t,
        "{:<4} {:>5}  {:<32} {:>8} {:>12} {:>6} {:>7.2}",
        "all",
        "",
        format!("{bytes} bytes in {secs:.2} s"),
        "",
        total,
        "",
        mb_per_s
    );
    t
}

/// Downloads `size` bytes from the file server through the network's C-tor
/// client (fresh SOCKS credentials, so a fresh circuit or set), checks the
/// SHA-256, and reports the legs that carried it.
pub async fn download(
    manifest: &Manifest,
    size: u64,
    seed: u64,
) -> Result<ClientDownload, TestnetError> {
    let (download, route) = observe(manifest, Direction::Download, seed, move |to| async move {
        let auth = Some((to.user.as_str(), "x"));
        download::fetch_file(to.server, Some((to.socks, auth)), size, seed).await
    })
    .await?;
    Ok(ClientDownload { download, route })
}

/// Uploads `size` bytes (the file for `seed`) to the file server through
/// the network's C-tor client (fresh SOCKS credentials, so a fresh circuit
/// or set), checks the SHA-256 the server reports, and reports the legs
/// that carried it, with the bytes the client wrote on each
/// ([`LegReport::written`], [`LegReport::delivered_written`]).
pub async fn upload(
    manifest: &Manifest,
    size: u64,
    seed: u64,
) -> Result<ClientUpload, TestnetError> {
    let (upload, route) = observe(manifest, Direction::Upload, seed, move |to| async move {
        let auth = Some((to.user.as_str(), "x"));
        download::upload_file(to.server, Some((to.socks, auth)), size, seed).await
    })
    .await?;
    Ok(ClientUpload { upload, route })
}

/// Makes the network's C-tor client build its circuits to `exit` (a
/// nickname) only, from now on (`ExitNodes`, `StrictNodes`, `NEWNYM`),
/// and waits up to `wait` until it has a linked Conflux set of at least two
/// built legs ending there (its prebuilt sets went to other exits).
pub async fn pin_exit(manifest: &Manifest, exit: &str, wait: Duration) -> Result<(), TestnetError> {
    let client = manifest
        .client
        .as_ref()
        .ok_or_else(|| TestnetError::Config("the network has no C-tor client".into()))?;
    let exit_fp = manifest
        .relays
        .iter()
        .find(|r| r.nickname == exit)
        .map(|r| r.fingerprint.to_ascii_uppercase())
        .ok_or_else(|| TestnetError::Config(format!("no relay {exit} in the network")))?;
    let control_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client.control_port));
    let mut control = ControlConn::connect(control_addr, &client.control_cookie).await?;
    control
        .command(&format!("SETCONF ExitNodes={exit} StrictNodes=1"))
        .await?;
    control.command("SIGNAL NEWNYM").await?;
    let deadline = Instant::now() + wait;
    loop {
        let status = control.getinfo("circuit-status").await?;
        if linked_sets_at(&status, &exit_fp) > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TestnetError::Config(format!(
                "the C-tor client linked no Conflux set at {exit} within {} s; its circuits:\n{status}",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Conflux sets in a `circuit-status` listing with at least two built
/// legs ending at the relay with fingerprint `exit_fp` (upper-case hex).
pub fn linked_sets_at(circuit_status: &str, exit_fp: &str) -> usize {
    let mut legs: HashMap<String, usize> = HashMap::new();
    for c in parse_circuit_status(circuit_status) {
        if c.status == "BUILT"
            && c.purpose == "CONFLUX_LINKED"
            && c.path.last().map(String::as_str) == Some(exit_fp)
            && let Some(id) = c.conflux_id
        {
            *legs.entry(id).or_default() += 1;
        }
    }
    legs.values().filter(|n| **n >= 2).count()
}

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// From the file server to the client.
    Download,
    /// From the client to the file server.
    Upload,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }
}

/// Where a transfer through the C-tor client goes and how it connects.
#[derive(Debug)]
struct Endpoints {
    /// The file server.
    server: SocketAddr,
    /// The client's SOCKS port.
    socks: SocketAddr,
    /// A SOCKS username used by no other transfer of this process.
    user: String,
}

/// Counts transfers, so that each gets fresh SOCKS credentials.
static TRANSFERS: AtomicU64 = AtomicU64::new(0);

/// The circuits that carried a transfer through the C-tor client.
#[derive(Debug, Clone)]
pub struct Route {
    /// The circuit the stream was attached to.
    pub stream_circ: Option<u64>,
    /// PURPOSE of that circuit.
    pub purpose: String,
    /// The Conflux set's nonce, when it was a Conflux leg.
    pub conflux_id: Option<String>,
    /// Every leg of that set (or the single circuit).
    pub legs: Vec<LegReport>,
    /// CIRC_BW events lost to a full queue (bytes may be under-counted).
    pub dropped_events: u64,
}

/// Runs the transfer that `start` spawns through the network's C-tor
/// client while watching its control port (STREAM and CIRC_BW events),
/// then finds the circuit the stream used and, when it was a Conflux leg,
/// every leg of its set, with the bytes counted on each in both
/// directions.
async fn observe<T, F>(
    manifest: &Manifest,
    direction: Direction,
    seed: u64,
    start: impl FnOnce(Endpoints) -> F,
) -> Result<(T, Route), TestnetError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, TestnetError>> + Send + 'static,
{
    let client = manifest
        .client
        .as_ref()
        .ok_or_else(|| TestnetError::Config("the network has no C-tor client".into()))?;
    let control_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client.control_port));
    let socks = SocketAddr::from((Ipv4Addr::LOCALHOST, client.socks_port));
    let mut control = ControlConn::connect(control_addr, &client.control_cookie).await?;
    control.set_events(&["STREAM", "CIRC_BW"]).await?;
    let server = manifest.fileserver.address;
    let user = format!(
        "braid-{}-{}-{seed}-{}",
        std::process::id(),
        direction.name(),
        TRANSFERS.fetch_add(1, Ordering::Relaxed)
    );
    let mut observer = Observer::new(server.to_string(), user.clone());
    let mut transfer = tokio::spawn(start(Endpoints {
        server,
        socks,
        user,
    }));
    let result = loop {
        tokio::select! {
            r = &mut transfer => break r,
            e = control.next_event(Duration::from_secs(3600)) => {
                if let Some(e) = e {
                    e.lines.iter().for_each(|l| observer.note(l));
                }
            }
        }
    };
    let done = result
        .map_err(|e| TestnetError::Config(format!("{} task failed: {e}", direction.name())))??;
    // CIRC_BW events come once a second: wait for the last ones.
    let settle = Instant::now() + Duration::from_millis(2200);
    while let Some(left) = settle.checked_duration_since(Instant::now()) {
        match control.next_event(left).await {
            Some(e) => e.lines.iter().for_each(|l| observer.note(l)),
            None => break,
        }
    }
    let circuits = parse_circuit_status(&control.getinfo("circuit-status").await?);
    let mut route = observer.route(&circuits, |fp| {
        manifest.nickname_of(fp).unwrap_or(fp).to_string()
    });
    route.dropped_events = control.dropped_events();
    Ok((done, route))
}

/// Per-circuit figures of `CIRC_BW` events (control-spec §4.1.22), each
/// the bytes since the previous event, or their sums.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct CircBw {
    /// `READ`: cell bytes that arrived on the circuit.
    read: u64,
    /// `WRITTEN`: cell bytes written on the circuit.
    written: u64,
    /// `DELIVERED_READ`: relay payload bytes delivered to the client.
    delivered_read: u64,
    /// `DELIVERED_WRITTEN`: relay payload bytes sent by the client.
    delivered_written: u64,
    /// `MIN_RTT` in milliseconds, when given and positive (only circuits
    /// with congestion control report it).
    min_rtt_ms: Option<f64>,
}

impl CircBw {
    /// Adds the figures of a later event; its `MIN_RTT` replaces ours.
    fn add(&mut self, later: &CircBw) {
        self.read += later.read;
        self.written += later.written;
        self.delivered_read += later.delivered_read;
        self.delivered_written += later.delivered_written;
        if later.min_rtt_ms.is_some() {
            self.min_rtt_ms = later.min_rtt_ms;
        }
    }
}

/// The circuit id and figures of a `CIRC_BW` event line (as the control
/// connection hands it over, without `650 `); `None` for other lines and
/// for one without a numeric `ID`. Missing or malformed counters count as 0.
fn parse_circ_bw(line: &str) -> Option<(u64, CircBw)> {
    let mut words = line.split_ascii_whitespace();
    if words.next() != Some("CIRC_BW") {
        return None;
    }
    let kw = keywords(line);
    let id = keyword(&kw, "ID")?.parse().ok()?;
    let count = |key: &str| keyword(&kw, key).and_then(|v| v.parse().ok()).unwrap_or(0);
    let min_rtt_ms = keyword(&kw, "MIN_RTT")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|&rtt| rtt > 0.0);
    Some((
        id,
        CircBw {
            read: count("READ"),
            written: count("WRITTEN"),
            delivered_read: count("DELIVERED_READ"),
            delivered_written: count("DELIVERED_WRITTEN"),
            min_rtt_ms,
        },
    ))
}

/// What the control port's events tell about one transfer.
#[derive(Debug)]
struct Observer {
    /// The file server's address, as STREAM events give a target.
    target: String,
    /// The transfer's SOCKS username.
    user: String,
    /// The circuit the transfer's stream was attached to.
    stream_circ: Option<u64>,
    /// Sums of CIRC_BW figures by circuit id.
    circuits: HashMap<u64, CircBw>,
}

impl Observer {
    fn new(target: String, user: String) -> Self {
        Observer {
            target,
            user,
            stream_circ: None,
            circuits: HashMap::new(),
        }
    }

    /// Takes note of one event line: a `STREAM <id> SUCCEEDED <circ>
    /// <target>` for a stream to the file server (and, when the event names
    /// one, with the transfer's SOCKS username), or a `CIRC_BW`.
    fn note(&mut self, line: &str) {
        if let Some((id, bw)) = parse_circ_bw(line) {
            self.circuits.entry(id).or_default().add(&bw);
            return;
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if let [event, _stream, status, circ, to, ..] = fields.as_slice()
            && *event == "STREAM"
            && *status == "SUCCEEDED"
            && *to == self.target
        {
            let kw = keywords(line);
            let ours =
                keyword(&kw, "SOCKS_USERNAME").is_none_or(|u| u.trim_matches('"') == self.user);
            if ours {
                self.stream_circ = circ.parse().ok();
            }
        }
    }

    /// The stream's circuit and, when it is a Conflux leg, every circuit of
    /// its set among `circuits`, with their counters; `nickname` names a
    /// relay by fingerprint.
    fn route(&self, circuits: &[CircuitInfo], nickname: impl Fn(&str) -> String) -> Route {
        let stream = circuits.iter().find(|c| Some(c.id) == self.stream_circ);
        let purpose = stream.map(|c| c.purpose.clone()).unwrap_or_default();
        let conflux_id = stream.and_then(|c| c.conflux_id.clone());
        let legs: Vec<&CircuitInfo> = match &conflux_id {
            Some(id) => circuits
                .iter()
                .filter(|c| c.conflux_id.as_ref() == Some(id))
                .collect(),
            None => stream.into_iter().collect(),
        };
        let legs = legs
            .into_iter()
            .map(|c| {
                let bw = self.circuits.get(&c.id).copied().unwrap_or_default();
                LegReport {
                    circ_id: c.id,
                    path: c.path.iter().map(|fp| nickname(fp)).collect(),
                    fingerprints: c.path.clone(),
                    rtt_ms: c
                        .conflux_rtt_us
                        .map(|us| us as f64 / 1000.0)
                        .or(bw.min_rtt_ms),
                    bytes: bw.delivered_read,
                    read: bw.read,
                    written: bw.written,
                    delivered_written: bw.delivered_written,
                }
            })
            .collect();
        Route {
            stream_circ: self.stream_circ,
            purpose,
            conflux_id,
            legs,
            dropped_events: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_status_lines() {
        let text = "7 BUILT $AAAA~relay0,$BBBB~relay3,$CCCC~exit1 BUILD_FLAGS=NEED_CAPACITY,NEED_UPTIME PURPOSE=CONFLUX_LINKED TIME_CREATED=2026-11-21T10:00:00.000000 CONFLUX_ID=abcd CONFLUX_RTT=2100\n\
                    9 EXTENDED $DDDD~relay1 BUILD_FLAGS=NEED_CAPACITY PURPOSE=GENERAL TIME_CREATED=2026-11-21T10:00:00.000000\n\
                    garbage\n";
        let circuits = parse_circuit_status(text);
        assert_eq!(circuits.len(), 2);
        assert_eq!(circuits[0].id, 7);
        assert_eq!(circuits[0].path, vec!["AAAA", "BBBB", "CCCC"]);
        assert_eq!(circuits[0].purpose, "CONFLUX_LINKED");
        assert_eq!(circuits[0].conflux_id.as_deref(), Some("abcd"));
        assert_eq!(circuits[0].conflux_rtt_us, Some(2100));
        assert_eq!(circuits[1].conflux_id, None);
        assert_eq!(circuits[1].status, "EXTENDED");
    }

    fn leg(id: u64, hops: [&str; 3]) -> LegReport {
        LegReport {
            circ_id: id,
            path: hops.iter().map(|s| s.to_string()).collect(),
            fingerprints: hops.iter().map(|s| s.to_string()).collect(),
            rtt_ms: Some(1.0),
            bytes: 10,
            read: 11,
            written: 12,
            delivered_written: 13,
        }
    }

    #[test]
    fn linked_pair_checks() {
        let mut d = ClientDownload {
            download: Download {
                bytes: 20,
                elapsed: Duration::from_secs(1),
                time_to_first_byte: Duration::from_millis(10),
                sha256: String::new(),
            },
            route: Route {
                stream_circ: Some(1),
                purpose: "CONFLUX_LINKED".into(),
                conflux_id: Some("x".into()),
                legs: vec![leg(1, ["g1", "m1", "e"]), leg(2, ["g2", "m2", "e"])],
                dropped_events: 0,
            },
        };
        assert_eq!(d.route.check_linked_pair(), Ok(()));
        assert!(d.table().contains("g1 > m1 > e"));
        d.route.legs[1] = leg(2, ["g1", "m2", "e"]);
        assert!(d.route.check_linked_pair().unwrap_err().contains("guard"));
        d.route.legs[1] = leg(2, ["g2", "m1", "e"]);
        assert!(d.route.check_linked_pair().unwrap_err().contains("middle"));
        d.route.legs[1] = leg(2, ["g2", "m2", "f"]);
        assert!(d.route.check_linked_pair().unwrap_err().contains("exit"));
        d.route.legs.pop();
        assert!(d.route.check_linked_pair().unwrap_err().contains("1 legs"));
        d.route.purpose = "GENERAL".into();
        assert!(d.route.check_linked_pair().unwrap_err().contains("GENERAL"));
    }

    #[test]
    fn circ_bw_lines() {
        let line = "CIRC_BW ID=12 READ=5088 WRITTEN=498000 TIME=2026-11-21T10:00:01.500000 DELIVERED_READ=0 OVERHEAD_READ=4980 DELIVERED_WRITTEN=488000 OVERHEAD_WRITTEN=1200 SS=0 CWND=124 RTT=31 MIN_RTT=22";
        assert_eq!(
            parse_circ_bw(line),
            Some((
                12,
                CircBw {
                    read: 5088,
                    written: 498_000,
                    delivered_read: 0,
                    delivered_written: 488_000,
                    min_rtt_ms: Some(22.0),
                }
            ))
        );
        // Without congestion control fields; MIN_RTT=0 is no measurement.
        let line = "CIRC_BW ID=3 READ=1 WRITTEN=2 TIME=2026-11-21T10:00:01.500000 DELIVERED_READ=3 OVERHEAD_READ=0 DELIVERED_WRITTEN=4 OVERHEAD_WRITTEN=0";
        let bw = CircBw {
            read: 1,
            written: 2,
            delivered_read: 3,
            delivered_written: 4,
            min_rtt_ms: None,
        };
        assert_eq!(parse_circ_bw(line), Some((3, bw)));
        assert_eq!(
            parse_circ_bw(&format!("{line} SS=1 CWND=31 RTT=0 MIN_RTT=0")),
            Some((3, bw))
        );
        assert_eq!(parse_circ_bw("CIRC_BW READ=1 WRITTEN=2"), None);
        assert_eq!(parse_circ_bw("CIRC_BW ID=x READ=1"), None);
        assert_eq!(
            parse_circ_bw("STREAM 1 SUCCEEDED 12 127.0.0.1:80 ID=1"),
            None
        );
        assert_eq!(parse_circ_bw("CIRC_BWX ID=1 READ=1"), None);
    }

    #[test]
    fn events_give_the_stream_circuit_and_per_leg_counters() {
        let mut o = Observer::new("127.0.0.1:8000".into(), "braid-1-upload-7-0".into());
        for line in [
            "STREAM 40 NEW 0 127.0.0.1:8000 SOURCE_ADDR=127.0.0.1:5000 PURPOSE=USER",
            // Another target, then another transfer's stream.
            "STREAM 41 SUCCEEDED 3 127.0.0.1:9999",
            "STREAM 42 SUCCEEDED 9 127.0.0.1:8000 SOCKS_USERNAME=\"braid-1-download-7-0\" SOCKS_PASSWORD=\"x\"",
            "STREAM 40 SUCCEEDED 7 127.0.0.1:8000 SOCKS_USERNAME=\"braid-1-upload-7-0\" SOCKS_PASSWORD=\"x\"",
            "CIRC_BW ID=7 READ=1000 WRITTEN=50000 TIME=x DELIVERED_READ=10 OVERHEAD_READ=0 DELIVERED_WRITTEN=49000 OVERHEAD_WRITTEN=0 SS=0 CWND=100 RTT=30 MIN_RTT=20",
            "CIRC_BW ID=8 READ=500 WRITTEN=20000 TIME=x DELIVERED_READ=5 OVERHEAD_READ=0 DELIVERED_WRITTEN=19000 OVERHEAD_WRITTEN=0 SS=0 CWND=100 RTT=60 MIN_RTT=40",
            "CIRC_BW ID=7 READ=24 WRITTEN=7000 TIME=x DELIVERED_READ=0 OVERHEAD_READ=0 DELIVERED_WRITTEN=6500 OVERHEAD_WRITTEN=0 SS=0 CWND=100 RTT=30 MIN_RTT=18",
            "CIRC_BW ID=9 READ=1 WRITTEN=1 TIME=x DELIVERED_READ=1 OVERHEAD_READ=0 DELIVERED_WRITTEN=1 OVERHEAD_WRITTEN=0",
            "CIRC 7 BUILT $AAAA~relay0",
        ] {
            o.note(line);
        }
        assert_eq!(o.stream_circ, Some(7));
        let status = "7 BUILT $AAAA~relay0,$BBBB~relay3,$CCCC~exit1 PURPOSE=CONFLUX_LINKED CONFLUX_ID=abcd CONFLUX_RTT=2100\n\
                      8 BUILT $DDDD~relay1,$EEEE~relay4,$CCCC~exit1 PURPOSE=CONFLUX_LINKED CONFLUX_ID=abcd\n\
                      9 BUILT $DDDD~relay1,$EEEE~relay4,$FFFF~exit2 PURPOSE=CONFLUX_LINKED CONFLUX_ID=other\n\
                      10 BUILT $AAAA~relay0 PURPOSE=GENERAL";
        let circuits = parse_circuit_status(status);
        let route = o.route(&circuits, |fp| format!("n{fp}"));
        assert_eq!(route.stream_circ, Some(7));
        assert_eq!(route.purpose, "CONFLUX_LINKED");
        assert_eq!(route.conflux_id.as_deref(), Some("abcd"));
        let legs = &route.legs;
        assert_eq!(legs.len(), 2);
        assert_eq!((legs[0].circ_id, legs[1].circ_id), (7, 8));
        assert_eq!(legs[0].path, vec!["nAAAA", "nBBBB", "nCCCC"]);
        assert_eq!(legs[1].fingerprints, vec!["DDDD", "EEEE", "CCCC"]);
        let figures = |l: &LegReport| (l.read, l.bytes, l.written, l.delivered_written);
        assert_eq!(figures(&legs[0]), (1024, 10, 57_000, 55_500));
        assert_eq!(figures(&legs[1]), (500, 5, 20_000, 19_000));
        // CONFLUX_RTT when there is one, else the latest MIN_RTT.
        assert_eq!(legs[0].rtt_ms, Some(2.1));
        assert_eq!(legs[1].rtt_ms, Some(40.0));
        let upload = ClientUpload {
            upload: Upload {
                bytes: 70_000,
                elapsed: Duration::from_secs(2),
                connected: Duration::from_secs(1),
                server_elapsed: Duration::from_millis(900),
                sha256: String::new(),
            },
            route,
        };
        assert_eq!(upload.route.check_linked_pair(), Ok(()));
        let table = upload.table();
        assert!(table.contains("57000"), "{table}");
        assert!(table.contains("74.0%"), "{table}");
        assert!(table.contains("77000"), "{table}");
        assert!(table.contains("70000 bytes in 1.00 s"), "{table}");

        // A stream on a plain circuit: that circuit alone. An event without
        // a username is taken on its target.
        let mut o = Observer::new("127.0.0.1:8000".into(), "u".into());
        o.note("STREAM 50 SUCCEEDED 10 127.0.0.1:8000");
        let route = o.route(&circuits, |fp| fp.to_string());
        assert_eq!(route.purpose, "GENERAL");
        assert_eq!(route.conflux_id, None);
        assert_eq!(route.legs.len(), 1);
        assert_eq!(route.legs[0].circ_id, 10);
        assert_eq!(route.legs[0].written, 0);
        // No stream seen: no legs.
        let o = Observer::new("127.0.0.1:8000".into(), "u".into());
        assert!(o.route(&circuits, |fp| fp.to_string()).legs.is_empty());
    }

    #[test]
    fn linked_sets_are_counted_by_exit() {
        let status = "7 BUILT $AAAA~relay0,$BBBB~relay3,$CCCC~exit1 PURPOSE=CONFLUX_LINKED CONFLUX_ID=abcd\n\
                      8 BUILT $DDDD~relay1,$EEEE~relay4,$CCCC~exit1 PURPOSE=CONFLUX_LINKED CONFLUX_ID=abcd\n\
                      9 BUILT $DDDD~relay1,$EEEE~relay4,$FFFF~exit2 PURPOSE=CONFLUX_LINKED CONFLUX_ID=other\n\
                      10 EXTENDED $AAAA~relay0,$EEEE~relay4,$FFFF~exit2 PURPOSE=CONFLUX_LINKED CONFLUX_ID=other\n\
                      11 BUILT $AAAA~relay0,$BBBB~relay3,$FFFF~exit2 PURPOSE=GENERAL\n";
        assert_eq!(linked_sets_at(status, "CCCC"), 1);
        assert_eq!(
            linked_sets_at(status, "FFFF"),
            0,
            "one leg built, one general"
        );
    }
}
