//! Reading C-tor's own log: the times of its bootstrap phases, so Braid's
//! directory bootstrap can be set beside C-tor's client on the same network.

use std::path::Path;
use std::time::Duration;

/// One "Bootstrapped N% (tag)" line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapPhase {
    /// The percentage.
    pub percent: u8,
    /// tor's phase tag, e.g. `enough_dirinfo`.
    pub tag: String,
    /// Time since the first line of the log (tor's start).
    pub since_start: Duration,
}

/// The bootstrap phases in a C-tor log (`Log notice` with
/// `LogTimeGranularity 1`, lines like `Nov 21 10:57:52.123 [notice]
/// Bootstrapped 75% (enough_dirinfo): ...`). Times are relative to the first
/// timestamped line; a log that crosses midnight is handled.
pub fn bootstrap_phases(log: &str) -> Vec<BootstrapPhase> {
    let mut start: Option<u64> = None;
    let mut last = 0u64;
    let mut day_offset = 0u64;
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(ms) = time_of_day_ms(line) else {
            continue;
        };
        let mut t = ms + day_offset;
        if t + 3_600_000 < last {
            day_offset += 86_400_000;
            t += 86_400_000;
        }
        last = t;
        let first = *start.get_or_insert(t);
        let Some(rest) = line.split("Bootstrapped ").nth(1) else {
            continue;
        };
        let Some((pct, after)) = rest.split_once("% (") else {
            continue;
        };
        let (Ok(percent), Some((tag, _))) = (pct.parse::<u8>(), after.split_once(')')) else {
            continue;
        };
        out.push(BootstrapPhase {
            percent,
            tag: tag.to_owned(),
            since_start: Duration::from_millis(t.saturating_sub(first)),
        });
    }
    out
}

/// `HH:MM:SS.mmm` in the third word of a log line, as milliseconds.
fn time_of_day_ms(line: &str) -> Option<u64> {
    let clock = line.split_ascii_whitespace().nth(2)?;
    let (hms, ms) = clock.split_once('.').unwrap_or((clock, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    let ms: u64 = ms.parse().ok()?;
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

/// [`bootstrap_phases`] of the log file at `path` (empty if unreadable).
pub fn bootstrap_phases_of(path: &Path) -> Vec<BootstrapPhase> {
    std::fs::read_to_string(path)
        .map(|t| bootstrap_phases(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
Nov 21 23:59:59.500 [notice] Tor 0.4.9.11 running on Linux
Nov 21 23:59:59.600 [notice] Bootstrapped 0% (starting): Starting
Nov 22 00:00:01.000 [notice] Bootstrapped 50% (loading_descriptors): Loading relay descriptors
Nov 22 00:00:09.750 [notice] Bootstrapped 75% (enough_dirinfo): Loaded enough directory info
garbage line
Nov 22 00:00:10.000 [notice] Bootstrapped 100% (done): Done
";

    #[test]
    fn phases_across_midnight() {
        let p = bootstrap_phases(LOG);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].since_start, Duration::from_millis(100));
        assert_eq!(p[2].percent, 75);
        assert_eq!(p[2].tag, "enough_dirinfo");
        assert_eq!(p[2].since_start, Duration::from_millis(10_250));
        assert_eq!(p[3].since_start, Duration::from_millis(10_500));
    }
}
