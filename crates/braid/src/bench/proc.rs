//! CPU time and peak memory of a process, from `/proc` (proc(5)).
//!
//! In these VMs `/proc/stat` under-counts tor's CPU; the per-process
//! `utime + stime` of `/proc/PID/stat` is what the benchmarks use.

/// Linux reports /proc CPU times in USER_HZ ticks, 100 per second on every
/// architecture Braid runs on.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of a process, all threads.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name: state is field 3,
    // utime 14 and stime 15 (proc(5)).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Peak resident set size in MB (`VmHWM`).
pub(crate) fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_cpu_and_rss() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(peak_rss_mb(pid).is_some_and(|m| m > 0.0));
        assert!(cpu_seconds(u32::MAX).is_none());
    }
}
