//! The C-tor client of `braid bench relay`: its paths pinned through the
//! control port, circuits built ahead of the measured streams (one per
//! SOCKS isolation tag) and their paths read back.

use std::net::SocketAddr;
use std::time::Duration;

use braid_testnet::Manifest;
use braid_testnet::control::ControlConn;
use braid_testnet::ctor_conflux::parse_circuit_status;
use braid_testnet::download::fetch_file;
use braid_testnet::process::read_records;

use super::setup::{Exit, GUARD};
use crate::bench::error::BenchError;

/// Bytes of each warm-up download (it builds the tag's circuit).
const WARMUP_BYTES: u64 = 1_000;
/// Tries at each warm-up download: C-tor exits refuse streams for a
/// moment after the network is ready.
const WARMUP_ATTEMPTS: usize = 5;
/// How long one warm-up download may take (circuit building included).
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the control connection's last events may lag behind the
/// streams they describe.
const EVENT_GRACE: Duration = Duration::from_millis(300);

/// The C-tor client, its control connection with STREAM events on.
#[derive(Debug)]
pub(super) struct CtorClient {
    ctl: ControlConn,
    /// Its SOCKS port.
    pub(super) socks: SocketAddr,
    /// The network's file server.
    pub(super) files: SocketAddr,
    manifest: Manifest,
}

impl CtorClient {
    /// Connects to the client's control port.
    pub(super) async fn connect(manifest: &Manifest) -> Result<CtorClient, BenchError> {
        let c = manifest
            .client
            .as_ref()
            .ok_or(BenchError::Missing("C-tor client"))?;
        let mut ctl = ControlConn::connect(
            SocketAddr::from(([127, 0, 0, 1], c.control_port)),
            &c.control_cookie,
        )
        .await?;
        ctl.set_events(&["STREAM"]).await?;
        Ok(CtorClient {
            ctl,
            socks: manifest
                .client_socks()
                .ok_or(BenchError::Missing("C-tor client SOCKS port"))?,
            files: manifest.fileserver.address,
            manifest: manifest.clone(),
        })
    }

    /// Pins new circuits to `GUARD > middle > exit` (`StrictNodes`).
    pub(super) async fn pin(&mut self, middle: &str, exit: Exit) -> Result<(), BenchError> {
        self.ctl
            .command(&format!(
                "SETCONF EntryNodes={GUARD} MiddleNodes={middle} ExitNodes={} StrictNodes=1",
                exit.nickname()
            ))
            .await?;
        self.ctl.drain_events();
        Ok(())
    }

    /// Builds a circuit for each tag with a small download on it (all at
    /// once, each tried a few times), then checks that every circuit that
    /// carried one runs `GUARD > middle > exit`. Later streams with the same
    /// tags use these circuits.
    pub(super) async fn prepare(
        &mut self,
        tags: &[String],
        middle: &str,
        exit: Exit,
    ) -> Result<(), BenchError> {
        self.ctl.drain_events();
        let (files, socks) = (self.files, self.socks);
        let mut tasks = tokio::task::JoinSet::new();
        for tag in tags {
            let tag = tag.clone();
            tasks.spawn(async move { warm_up(files, socks, &tag).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| BenchError::Failed(format!("warm-up task: {e}")))??;
        }
        // The events of the last streams may still be on their way.
        tokio::time::sleep(EVENT_GRACE).await;
        let lines: Vec<String> = self
            .ctl
            .drain_events()
            .into_iter()
            .filter_map(|e| e.lines.into_iter().next())
            .collect();
        let circuits = succeeded_circuits(&lines, self.files);
        if circuits.len() < tags.len() {
            return Err(BenchError::Failed(format!(
                "{} warm-up streams through {} succeeded on {} circuits (control events dropped: {})",
                tags.len(),
                exit.nickname(),
                circuits.len(),
                self.ctl.dropped_events()
            )));
        }
        let status = parse_circuit_status(&self.ctl.getinfo("circuit-status").await?);
        let want = [GUARD, middle, exit.nickname()];
        for id in circuits {
            let path = status
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.path.clone())
                .unwrap_or_default();
            let names: Vec<&str> = path
                .iter()
                .map(|fp| self.manifest.nickname_of(fp).unwrap_or("?"))
                .collect();
            if names != want {
                return Err(BenchError::Failed(format!(
                    "circuit {id} runs {names:?}, not {want:?}"
                )));
            }
        }
        Ok(())
    }
}

/// One warm-up download on `tag`, tried [`WARMUP_ATTEMPTS`] times.
async fn warm_up(files: SocketAddr, socks: SocketAddr, tag: &str) -> Result<(), BenchError> {
    let mut last = String::new();
    for attempt in 0..WARMUP_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let auth = Some((socks, Some((tag, tag))));
        match tokio::time::timeout(WARMUP_TIMEOUT, fetch_file(files, auth, WARMUP_BYTES, 999)).await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {} s", WARMUP_TIMEOUT.as_secs()),
        }
    }
    Err(BenchError::Failed(format!(
        "warm-up on {tag} failed {WARMUP_ATTEMPTS} times: {last}"
    )))
}

/// The distinct circuits of the `STREAM ... SUCCEEDED` events (first
/// lines of 650 replies, control-spec §4.1.2) whose target is `target`,
/// in order of appearance.
pub(super) fn succeeded_circuits(lines: &[String], target: SocketAddr) -> Vec<u64> {
    let target = target.to_string();
    let mut out = Vec::new();
    for line in lines {
        let w: Vec<&str> = line.split(' ').collect();
        if let ["STREAM", _, "SUCCEEDED", circ, t, ..] = w.as_slice()
            && *t == target
            && let Ok(id) = circ.parse::<u64>()
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out
}

/// The pid of process `name` of the network in `dir` (its pid file).
pub(super) fn pid_of(dir: &std::path::Path, name: &str) -> Result<u32, BenchError> {
    read_records(dir)?
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.pid)
        .ok_or_else(|| BenchError::Failed(format!("no process {name} in {}", dir.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn circuits_of_succeeded_streams_to_the_target() {
        let files: SocketAddr = "127.0.0.1:36002".parse().unwrap();
        let lines: Vec<String> = [
            "STREAM 10 NEW 0 127.0.0.1:36002 SOURCE_ADDR=127.0.0.1:5000 PURPOSE=USER",
            "STREAM 10 SENTCONNECT 7 127.0.0.1:36002",
            "STREAM 10 SUCCEEDED 7 127.0.0.1:36002",
            "STREAM 11 SUCCEEDED 8 127.0.0.1:36002 SOCKS_USERNAME=\"a\"",
            "STREAM 12 SUCCEEDED 7 127.0.0.1:36002",
            "STREAM 13 SUCCEEDED 9 127.0.0.1:36003",
            "STREAM 14 SUCCEEDED 3 $ABCD~auth0:0",
            "STREAM 15 FAILED 12 127.0.0.1:36002 REASON=END REMOTE_REASON=EXITPOLICY",
            "STREAM 16 SUCCEEDED x 127.0.0.1:36002",
            "CIRC 7 BUILT",
            "",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        assert_eq!(succeeded_circuits(&lines, files), [7, 8]);
        assert!(succeeded_circuits(&[], files).is_empty());
    }
}
