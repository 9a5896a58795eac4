//! Processes the launcher starts: spawning, the pid file, and stopping
//! exactly those processes.
//!
//! Every process is recorded in `DIR/pids` right after it is spawned, with
//! its start time from `/proc/<pid>/stat`, so that `down` (even from another
//! launcher after this one was killed) stops those processes and never a
//! stranger that happens to reuse a pid.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::TestnetError;

/// Name of the pid file inside the network directory.
pub const PID_FILE: &str = "pids";

/// One recorded process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidRecord {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`); tells it apart from a later process with the
    /// same pid.
    pub start_time: u64,
    /// What it is (a nickname, `helper`).
    pub name: String,
}

/// A process the launcher started and still holds a handle for.
#[derive(Debug)]
pub struct Spawned {
    /// Its nickname.
    pub name: String,
    /// The child handle, for `try_wait`.
    pub child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

/// Spawns `cmd` with standard output and error appended to `log`, in a
/// process group of its own (so a Ctrl-C aimed at the launcher does not
/// reach it before the launcher has cleaned up), and records it in
/// `DIR/pids`.
pub fn spawn_recorded(
    dir: &Path,
    name: &str,
    mut cmd: Command,
    log: &Path,
) -> Result<Spawned, TestnetError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| TestnetError::io("opening log", log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| TestnetError::io("opening log", log, e))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TestnetError::TorMissing { binary: program }
        } else {
            TestnetError::io("starting", log, e)
        }
    })?;
    let pid = child.id();
    let record = PidRecord {
        pid,
        start_time: start_time(pid).unwrap_or(0),
        name: name.to_string(),
    };
    append_record(dir, &record)?;
    tracing::debug!(name, pid, "started");
    Ok(Spawned {
        name: name.to_string(),
        child,
        log: log.to_path_buf(),
    })
}

fn append_record(dir: &Path, record: &PidRecord) -> Result<(), TestnetError> {
    let path = dir.join(PID_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| TestnetError::io("opening", &path, e))?;
    writeln!(file, "{} {} {}", record.pid, record.start_time, record.name)
        .and_then(|()| file.sync_data())
        .map_err(|e| TestnetError::io("writing", &path, e))
}

/// Reads `DIR/pids`; a missing file is an empty list, malformed lines are
/// skipped.
pub fn read_records(dir: &Path) -> Result<Vec<PidRecord>, TestnetError> {
    let path = dir.join(PID_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TestnetError::io("reading", &path, e)),
    };
    let mut records = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| TestnetError::io("reading", &path, e))?;
        let mut fields = line.splitn(3, ' ');
        let (Some(pid), Some(start), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if let (Ok(pid), Ok(start_time)) = (pid.parse(), start.parse()) {
            records.push(PidRecord {
                pid,
                start_time,
                name: name.to_string(),
            });
        }
    }
    Ok(records)
}

/// The start time of `pid` from `/proc/<pid>/stat`, and its state letter.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 precede the start time (field 22); we consumed field 3.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// Whether the recorded process is still running (not a zombie, and the
/// pid has not been reused).
pub fn is_alive(record: &PidRecord) -> bool {
    match proc_stat(record.pid) {
        Some((state, start)) => {
            state != 'Z' && state != 'X' && (record.start_time == 0 || start == record.start_time)
        }
        None => false,
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; the pid was
    // checked against its recorded start time just before.
    #[allow(unsafe_code, reason = "kill(2) is the way to signal a process by pid")]
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Kills (SIGKILL) the recorded process named `name` if it is still
/// alive, as a relay dying without a word. True if it was alive.
pub fn kill_recorded(dir: &Path, name: &str) -> Result<bool, TestnetError> {
    let records = read_records(dir)?;
    let Some(r) = records.iter().find(|r| r.name == name && is_alive(r)) else {
        return Ok(false);
    };
    tracing::debug!(name = %r.name, pid = r.pid, "SIGKILL");
    signal(r.pid, libc::SIGKILL);
    Ok(true)
}

/// Stops every recorded process that is still alive: SIGTERM, then SIGKILL
/// after `grace`. Returns how many were alive and how many survived.
pub fn stop_recorded(dir: &Path, grace: Duration) -> Result<(usize, usize), TestnetError> {
    let records = read_records(dir)?;
    let alive: Vec<&PidRecord> = records.iter().filter(|r| is_alive(r)).collect();
    for r in &alive {
        tracing::debug!(name = %r.name, pid = r.pid, "SIGTERM");
        signal(r.pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && alive.iter().any(|r| is_alive(r)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in alive.iter().filter(|r| is_alive(r)) {
        tracing::debug!(name = %r.name, pid = r.pid, "SIGKILL");
        signal(r.pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && alive.iter().any(|r| is_alive(r)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors = alive.iter().filter(|r| is_alive(r)).count();
    Ok((alive.len(), survivors))
}

/// Removes the pid file once nothing in it is alive.
pub fn clear_records(dir: &Path) -> Result<(), TestnetError> {
    let path = dir.join(PID_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TestnetError::io("removing", &path, e)),
    }
}

/// The last `lines` lines of a log file (at most the last 64 KiB are read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_ok() {
        text = String::from_utf8_lossy(&buf).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all.get(all.len().saturating_sub(lines)..)
        .unwrap_or_default()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_stop_only_ours() {
        let dir = std::env::temp_dir().join(format!("braid-proc-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sleep.log");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut spawned = spawn_recorded(&dir, "sleeper", cmd, &log).unwrap();
        // A record whose start time does not match must never be signalled.
        append_record(
            &dir,
            &PidRecord {
                pid: std::process::id(),
                start_time: 1,
                name: "stranger".into(),
            },
        )
        .unwrap();
        let records = read_records(&dir).unwrap();
        assert_eq!(records.len(), 2);
        assert!(is_alive(&records[0]));
        assert!(!is_alive(&records[1]), "pid reuse must not count as alive");
        // Reap the child from another thread, as init would for `down`.
        let reaper = std::thread::spawn(move || spawned.child.wait());
        let (alive, survivors) = stop_recorded(&dir, Duration::from_secs(2)).unwrap();
        assert_eq!((alive, survivors), (1, 0));
        reaper.join().unwrap().unwrap();
        assert!(!is_alive(&records[0]));
        clear_records(&dir).unwrap();
        assert!(read_records(&dir).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_of_missing_and_short_logs() {
        assert!(log_tail(Path::new("/nonexistent/log"), 5).contains("no log"));
        let path = std::env::temp_dir().join(format!("braid-tail-{}", std::process::id()));
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert_eq!(log_tail(&path, 10), "a\nb\nc\nd");
        std::fs::remove_file(&path).unwrap();
    }
}
