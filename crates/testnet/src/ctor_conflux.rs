//! A download through the network's C-tor client, with a per-leg report of
//! the Conflux set it used, read from the client's control port.
//!
//! The stream's circuit comes from its `STREAM ... SUCCEEDED` event; the
//! legs are the circuits of `GETINFO circuit-status` with the same
//! `CONFLUX_ID`; bytes per leg are the sums of `DELIVERED_READ` in
//! `CIRC_BW` events; RTT is the leg's `CONFLUX_RTT`.
//!
//! This is how the foundation proves the network fit for Conflux before
//! Braid's own client exists; later the same report comes from Braid.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::control::{ControlConn, keyword, keywords};
use crate::download::{self, Download};
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

/// One leg of the set a download used.
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
    /// Payload bytes the leg delivered to the client during the download
    /// (`DELIVERED_READ`). On a Conflux leg tor counts a cell where it is
    /// processed, and the cells a gap-filling cell releases from the
    /// reorder queue are processed on that cell's leg: with legs of
    /// different RTTs most bytes are credited to the slower leg.
    pub bytes: u64,
    /// Cell bytes that arrived on the leg during the download (`READ`,
    /// counted where each cell arrives): the reliable per-leg split.
    pub read: u64,
}

/// A checked download and what carried it.
#[derive(Debug, Clone)]
pub struct ClientDownload {
    /// The download itself (size, time, digest).
    pub download: Download,
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

impl ClientDownload {
    /// Checks that the download used a linked Conflux set of two legs that
    /// share the exit and differ in guard and middle.
    pub fn check_linked_pair(&self) -> Result<(), String> {
        if self.purpose != "CONFLUX_LINKED" {
            return Err(format!(
                "stream circuit {:?} has purpose {:?}, not CONFLUX_LINKED",
                self.stream_circ, self.purpose
            ));
        }
        let [a, b] = self.legs.as_slice() else {
            return Err(format!("the set has {} legs, not 2", self.legs.len()));
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

    /// A table: one row per leg with path, RTT, cell bytes that arrived on
    /// it (`READ`: `DELIVERED_READ` credits a gap-filling leg with what it
    /// releases from the reorder queue), share and MB/s.
    pub fn table(&self) -> String {
        let secs = self.download.elapsed.as_secs_f64().max(1e-9);
        let total: u64 = self.legs.iter().map(|l| l.read).sum();
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<4} {:>5}  {:<32} {:>8} {:>12} {:>6} {:>7}",
            "leg", "circ", "path (guard > middle > exit)", "RTT ms", "cell bytes", "share", "MB/s"
        );
        for (i, leg) in self.legs.iter().enumerate() {
            let _ = writeln!(
                t,
                "{:<4} {:>5}  {:<32} {:>8} {:>12} {:>5.1}% {:>7.2}",
                i + 1,
                leg.circ_id,
                leg.path.join(" > "),
                leg.rtt_ms.map_or("-".to_string(), |r| format!("{r:.1}")),
                leg.read,
                100.0 * leg.read as f64 / total.max(1) as f64,
                leg.read as f64 / 1e6 / secs
            );
        }
        let _ = writeln!(
            t,
            "{:<4} {:>5}  {:<32} {:>8} {:>12} {:>6} {:>7.2}",
            "all",
            "",
            format!("{} bytes in {:.2} s", self.download.bytes, secs),
            "",
            total,
            "",
            self.download.mb_per_s()
        );
        t
    }
}

/// Downloads `size` bytes from the file server through the network's C-tor
/// client (fresh SOCKS credentials, so a fresh circuit or set), checks the
/// SHA-256, and reports the legs that carried it.
pub async fn download(
    manifest: &Manifest,
    size: u64,
    seed: u64,
) -> Result<ClientDownload, TestnetError> {
    let client = manifest
        .client
        .as_ref()
        .ok_or_else(|| TestnetError::Config("the network has no C-tor client".into()))?;
    let control_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client.control_port));
    let socks = SocketAddr::from((Ipv4Addr::LOCALHOST, client.socks_port));
    let mut control = ControlConn::connect(control_addr, &client.control_cookie).await?;
    control.set_events(&["STREAM", "CIRC_BW"]).await?;
    let server = manifest.fileserver.address;
    let user = format!("braid-{}-{}", std::process::id(), seed);
    let fetch = tokio::spawn(async move {
        download::fetch_file(
            server,
            Some((socks, Some((user.as_str(), "x")))),
            size,
            seed,
        )
        .await
    });
    let mut stream_circ = None;
    let mut delivered: HashMap<u64, u64> = HashMap::new();
    let mut read: HashMap<u64, u64> = HashMap::new();
    let mut min_rtt: HashMap<u64, f64> = HashMap::new();
    let target = server.to_string();
    let mut note = |event: &str| {
        let mut words = event.split_ascii_whitespace();
        match words.next() {
            Some("STREAM") => {
                let fields: Vec<&str> = words.collect();
                if let (Some(status), Some(circ), Some(to)) =
                    (fields.get(1), fields.get(2), fields.get(3))
                    && *status == "SUCCEEDED"
                    && *to == target
                {
                    stream_circ = circ.parse().ok();
                }
            }
            Some("CIRC_BW") => {
                let kw = keywords(event);
                if let Some(id) = keyword(&kw, "ID").and_then(|v| v.parse::<u64>().ok()) {
                    let bytes: u64 = keyword(&kw, "DELIVERED_READ")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    *delivered.entry(id).or_default() += bytes;
                    let cells: u64 = keyword(&kw, "READ")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    *read.entry(id).or_default() += cells;
                    if let Some(rtt) = keyword(&kw, "MIN_RTT").and_then(|v| v.parse::<f64>().ok())
                        && rtt > 0.0
                    {
                        min_rtt.insert(id, rtt);
                    }
                }
            }
            _ => {}
        }
    };
    let mut fetch = fetch;
    let result = loop {
        tokio::select! {
            r = &mut fetch => break r,
            e = control.next_event(Duration::from_secs(3600)) => {
                if let Some(e) = e {
                    for line in &e.lines { note(line); }
                }
            }
        }
    };
    let download =
        result.map_err(|e| TestnetError::Config(format!("download task failed: {e}")))??;
    // CIRC_BW events come once a second: wait for the last ones.
    let settle = Instant::now() + Duration::from_millis(2200);
    while let Some(left) = settle.checked_duration_since(Instant::now()) {
        match control.next_event(left).await {
            Some(e) => e.lines.iter().for_each(|l| note(l)),
            None => break,
        }
    }
    let circuits = parse_circuit_status(&control.getinfo("circuit-status").await?);
    let stream = circuits.iter().find(|c| Some(c.id) == stream_circ);
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
        .map(|c| LegReport {
            circ_id: c.id,
            path: c
                .path
                .iter()
                .map(|fp| manifest.nickname_of(fp).unwrap_or(fp).to_string())
                .collect(),
            fingerprints: c.path.clone(),
            rtt_ms: c
                .conflux_rtt_us
                .map(|us| us as f64 / 1000.0)
                .or_else(|| min_rtt.get(&c.id).copied()),
            bytes: delivered.get(&c.id).copied().unwrap_or(0),
            read: read.get(&c.id).copied().unwrap_or(0),
        })
        .collect();
    Ok(ClientDownload {
        download,
        stream_circ,
        purpose,
        conflux_id,
        legs,
        dropped_events: control.dropped_events(),
    })
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
            stream_circ: Some(1),
            purpose: "CONFLUX_LINKED".into(),
            conflux_id: Some("x".into()),
            legs: vec![leg(1, ["g1", "m1", "e"]), leg(2, ["g2", "m2", "e"])],
            dropped_events: 0,
        };
        assert_eq!(d.check_linked_pair(), Ok(()));
        assert!(d.table().contains("g1 > m1 > e"));
        d.legs[1] = leg(2, ["g1", "m2", "e"]);
        assert!(d.check_linked_pair().unwrap_err().contains("guard"));
        d.legs[1] = leg(2, ["g2", "m1", "e"]);
        assert!(d.check_linked_pair().unwrap_err().contains("middle"));
        d.legs[1] = leg(2, ["g2", "m2", "f"]);
        assert!(d.check_linked_pair().unwrap_err().contains("exit"));
        d.legs.pop();
        assert!(d.check_linked_pair().unwrap_err().contains("1 legs"));
        d.purpose = "GENERAL".into();
        assert!(d.check_linked_pair().unwrap_err().contains("GENERAL"));
    }
}
