//! Reading the authorities' consensus to tell when the network is ready.
//!
//! This is launcher tooling, not Braid's directory client (that is
//! `braid-dir`, which verifies signatures): it only reads the `r`, `s` and
//! `pr` lines of the unflavoured consensus that an authority serves on its
//! DirPort (dir-spec §3.4.1) to see which relays are listed with which flags.

use std::net::SocketAddr;
use std::time::Duration;

use crate::download::http_get;
use crate::error::TestnetError;
use crate::plan::Software;

/// A router status entry, as much as the launcher needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterEntry {
    /// Nickname from the `r` line.
    pub nickname: String,
    /// RSA identity fingerprint, upper-case hex.
    pub fingerprint: String,
    /// ORPort from the `r` line.
    pub or_port: u16,
    /// Flags from the `s` line.
    pub flags: Vec<String>,
    /// The `pr` line's protocol list.
    pub protocols: String,
}

impl RouterEntry {
    /// Whether the entry has `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Parses the router entries of a consensus document; lines it does not
/// know are ignored, entries with a malformed `r` line are skipped.
pub fn parse_entries(text: &str) -> Vec<RouterEntry> {
    let mut entries: Vec<RouterEntry> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("r") => {
                let fields: Vec<&str> = words.collect();
                // r nickname identity digest date time IP ORPort DirPort
                if let (Some(nick), Some(id), Some(port)) =
                    (fields.first(), fields.get(1), fields.get(6))
                    && let (Some(fp), Ok(or_port)) = (decode_base64(id), port.parse())
                {
                    entries.push(RouterEntry {
                        nickname: (*nick).to_string(),
                        fingerprint: hex_upper(&fp),
                        or_port,
                        flags: Vec::new(),
                        protocols: String::new(),
                    });
                }
            }
            Some("s") => {
                if let Some(e) = entries.last_mut() {
                    e.flags = words.map(str::to_string).collect();
                }
            }
            Some("pr") => {
                if let Some(e) = entries.last_mut() {
                    e.protocols = words.collect::<Vec<_>>().join(" ");
                }
            }
            Some("directory-footer") => break,
            _ => {}
        }
    }
    entries
}

/// Whether a `pr`-style list (`Conflux=1 FlowCtrl=1-2 Link=1-5`) includes
/// `version` of `proto`.
pub fn supports(protocols: &str, proto: &str, version: u32) -> bool {
    protocols.split_ascii_whitespace().any(|item| {
        let Some((name, ranges)) = item.split_once('=') else {
            return false;
        };
        name == proto
            && ranges.split(',').any(|r| {
                let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                matches!((lo.parse::<u32>(), hi.parse::<u32>()), (Ok(lo), Ok(hi)) if lo <= version && version <= hi)
            })
    })
}

/// A relay the network should list.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Nickname.
    pub nickname: String,
    /// RSA fingerprint, upper-case hex.
    pub fingerprint: String,
    /// Must have the Guard flag.
    pub guard: bool,
    /// Must have the Exit flag.
    pub exit: bool,
    /// Protocol versions its `pr` line must include.
    pub protocols: Vec<(&'static str, u32)>,
}

impl Expected {
    /// What the launcher waits for of a relay: Running, Valid, Fast,
    /// Stable, and Guard (`guard`) or Exit (`exit`); a C-tor exit must
    /// offer Conflux=1 and FlowCtrl=2 (the C-tor client's Conflux sets end
    /// there); a Braid relay Relay=2 (C-tor clients skip relays without
    /// EXTEND2 in every position: `routerstatus_version_supports_extend2_cells`)
    /// and, as an exit, FlowCtrl=2 (congestion control, XON/XOFF).
    pub fn for_relay(
        nickname: &str,
        fingerprint: &str,
        guard: bool,
        exit: bool,
        software: Software,
    ) -> Self {
        let protocols = match (software, exit) {
            (Software::Tor, true) => vec![("Conflux", 1), ("FlowCtrl", 2)],
            (Software::Tor, false) => Vec::new(),
            (Software::Braid, true) => vec![("Relay", 2), ("FlowCtrl", 2)],
            (Software::Braid, false) => vec![("Relay", 2)],
        };
        Expected {
            nickname: nickname.to_string(),
            fingerprint: fingerprint.to_string(),
            guard,
            exit,
            protocols,
        }
    }
}

/// What is still missing for `expected` to be ready in `entries`; empty
/// when the consensus is fit for Conflux.
pub fn missing(entries: &[RouterEntry], expected: &[Expected]) -> Vec<String> {
    let mut problems = Vec::new();
    for want in expected {
        let Some(e) = entries.iter().find(|e| e.fingerprint == want.fingerprint) else {
            problems.push(format!("{} not listed", want.nickname));
            continue;
        };
        let mut flags = vec!["Running", "Valid", "Fast", "Stable"];
        if want.guard {
            flags.push("Guard");
        }
        if want.exit {
            flags.push("Exit");
        }
        let lacking: Vec<&str> = flags.into_iter().filter(|f| !e.has_flag(f)).collect();
        if !lacking.is_empty() {
            problems.push(format!("{} lacks {}", want.nickname, lacking.join(",")));
        }
        for (proto, v) in &want.protocols {
            if !supports(&e.protocols, proto, *v) {
                problems.push(format!("{} lacks {proto}={v}", want.nickname));
            }
        }
    }
    problems
}

/// Fetches the current consensus from an authority's DirPort.
pub async fn fetch(dir_port: SocketAddr, timeout: Duration) -> Result<String, TestnetError> {
    http_text(dir_port, "/tor/status-vote/current/consensus", timeout).await
}

/// GETs `path` from `addr` (one HTTP/1.0 request) and returns the body of
/// a 200 answer as text.
pub async fn http_text(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<String, TestnetError> {
    let url = format!("http://{addr}{path}");
    let fut = async {
        let stream =
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| TestnetError::Http {
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
        let mut body = Vec::new();
        let head = http_get(stream, &addr.to_string(), path, |chunk| {
            body.extend_from_slice(chunk);
            // A test network's documents are small; refuse absurd bodies.
            body.len() < 64 << 20
        })
        .await?;
        if head.status != 200 {
            return Err(TestnetError::Http {
                url: url.clone(),
                detail: format!("status {}", head.status),
            });
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TestnetError::Http {
            url: url.clone(),
            detail: "timed out".into(),
        })?
}

/// The `valid-after` of a consensus (dir-spec §3.4.1, any flavour) as Unix
/// seconds; `None` when the line is missing or malformed.
pub fn valid_after_unix(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("valid-after "))?;
    let (date, time) = line.trim().split_once(' ')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// The value of an unlabelled Prometheus gauge `name` in `text`.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Upper-case hex, as tor writes fingerprints and control cookies.
pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Decodes unpadded or padded standard base64; `None` on bad input.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_after_in_unix_seconds() {
        let doc = "network-status-version 3 microdesc\nvalid-after 2026-12-07 12:00:10\n";
        assert_eq!(super::valid_after_unix(doc), Some(1_796_644_810));
        assert_eq!(
            super::valid_after_unix("valid-after 1970-01-01 00:00:00\n"),
            Some(0)
        );
        assert_eq!(
            super::valid_after_unix("valid-after 2000-03-01 00:00:01"),
            Some(951_868_801)
        );
        assert_eq!(
            super::valid_after_unix("valid-after 2026-13-01 00:00:00"),
            None
        );
        assert_eq!(super::valid_after_unix("valid-after soon"), None);
        assert_eq!(
            super::valid_after_unix("fresh-until 2026-12-07 12:00:10"),
            None
        );
    }

    #[test]
    fn gauges_from_prometheus_text() {
        let text = "# HELP x y\nbraid_relay_dir_consensus_valid_after_seconds 1796644810\n\
                    braid_relay_dir_consensus_valid_after_seconds_total 3\n";
        assert_eq!(
            super::gauge(text, "braid_relay_dir_consensus_valid_after_seconds"),
            Some(1_796_644_810.0)
        );
        assert_eq!(super::gauge(text, "braid_relay_dir"), None);
    }

    use super::*;

    const SAMPLE: &str = "network-status-version 3\n\
r relay0 RWFwZXJzIGFyZSBncmVhdCEh AAAAAAAAAAAAAAAAAAAAAAAAAAA 2026-11-21 10:00:00 127.0.0.1 17030 0\n\
s Fast Guard Running Stable V2Dir Valid\n\
pr Conflux=1 Cons=1-2 FlowCtrl=1-2 Link=1-5\n\
w Bandwidth=20\n\
r exit0 ZXhpdHMgYXJlIGdyZWF0IHRvbyE AAAAAAAAAAAAAAAAAAAAAAAAAAA 2026-11-21 10:00:00 127.0.0.1 17080 0\n\
s Exit Fast Running Valid\n\
pr Conflux=1 FlowCtrl=1\n\
directory-footer\n\
r ignored bm90IGFuIGVudHJ5IGF0IGFsbCE AAA 2026-11-21 10:00:00 127.0.0.1 1 0\n";

    #[test]
    fn parses_entries() {
        let entries = parse_entries(SAMPLE);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].nickname, "relay0");
        assert_eq!(entries[0].or_port, 17030);
        assert_eq!(entries[0].fingerprint, hex_upper(b"Eapers are great!!"));
        assert!(entries[0].has_flag("Guard"));
        assert!(supports(&entries[0].protocols, "FlowCtrl", 2));
        assert!(!supports(&entries[1].protocols, "FlowCtrl", 2));
    }

    #[test]
    fn reports_what_is_missing() {
        let entries = parse_entries(SAMPLE);
        let expected = vec![
            Expected::for_relay(
                "relay0",
                &entries[0].fingerprint,
                true,
                false,
                Software::Tor,
            ),
            Expected::for_relay("exit0", &entries[1].fingerprint, false, true, Software::Tor),
            Expected::for_relay("exit1", &"00".repeat(20), false, true, Software::Tor),
        ];
        let problems = missing(&entries, &expected);
        assert_eq!(
            problems,
            vec![
                "exit0 lacks Stable".to_string(),
                "exit0 lacks FlowCtrl=2".to_string(),
                "exit1 not listed".to_string()
            ]
        );
        assert!(missing(&entries, &expected[..1]).is_empty());
    }

    #[test]
    fn braid_relays_need_extend2_and_no_conflux() {
        let text = "r braidexit0 YnJhaWRleGl0MCBpcyBoZXJlIQ AAAAAAAAAAAAAAAAAAAAAAAAAAA 2026-11-21 10:00:00 127.0.0.1 17090 0\n\
s Exit Fast Running Stable Valid\n\
pr FlowCtrl=1-2 Link=4-5 LinkAuth=3 Relay=2,4\n\
r braidrelay0 YnJhaWRyZWxheTAgaXMgaGVyZQ AAAAAAAAAAAAAAAAAAAAAAAAAAA 2026-11-21 10:00:00 127.0.0.1 17080 0\n\
s Fast Running Stable Valid\n\
pr Link=4-5 LinkAuth=3\n";
        let entries = parse_entries(text);
        assert_eq!(entries.len(), 2);
        let exit = Expected::for_relay(
            "braidexit0",
            &entries[0].fingerprint,
            false,
            true,
            Software::Braid,
        );
        assert!(missing(&entries, std::slice::from_ref(&exit)).is_empty());
        // The same entry would not do for a C-tor exit: no Conflux.
        let ctor =
            Expected::for_relay("exit0", &entries[0].fingerprint, false, true, Software::Tor);
        assert_eq!(missing(&entries, &[ctor]), vec!["exit0 lacks Conflux=1"]);
        let relay = Expected::for_relay(
            "braidrelay0",
            &entries[1].fingerprint,
            true,
            false,
            Software::Braid,
        );
        assert_eq!(
            missing(&entries, &[relay]),
            vec!["braidrelay0 lacks Guard", "braidrelay0 lacks Relay=2"]
        );
    }

    #[test]
    fn protocol_ranges() {
        assert!(supports("A=1,3-5 B=2", "A", 4));
        assert!(!supports("A=1,3-5 B=2", "A", 2));
        assert!(!supports("A=x", "A", 1));
        assert!(!supports("", "A", 1));
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert!(decode_base64("a*b").is_none());
    }
}
