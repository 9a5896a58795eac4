//! Publishing the server descriptor: `POST /tor/` to every authority's
//! DirPort (dir-spec §4.1), each answer logged, refusals and failures
//! retried per braid-dir's [`PublishSchedule`], a fresh descriptor built
//! every 18 hours or when the caller says the contents changed.
//!
//! C-tor answers an upload with `400` and the reason in the status line
//! when it refuses the descriptor, and otherwise with `200` (plus
//! `X-Descriptor-Not-New: Yes` when it already had an equivalent one)
//! (`dircache.c`, `directory_handle_command_post`). But a `200` is not
//! proof: a descriptor C-tor cannot parse (a bad signature, say) is dropped
//! with a warning in the authority's log and still answered `200 [None]`
//! (seen with tor 0.4.9.8: its `msg` starts as "[None]", so the "No
//! descriptors found" answer of `dirserv_add_multiple_descriptors` never
//! fires). So after a `200` the publisher fetches the descriptor back by
//! digest (`/tor/server/d/`, dir-spec §4.2) and counts the upload only if
//! the authority serves it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use braid_dir::Authority;
use braid_dir::descriptor::{
    PublishSchedule, ScheduleConfig, ServerDescriptor, Upload, UploadOutcome,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::error::PublishError;
use crate::http::{HttpAnswer, request};

/// Largest answer body we read from an upload (C-tor sends none).
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// Upload `descriptor` to the DirPort `addr`; the authority's answer,
/// whatever its status.
pub async fn upload(
    addr: std::net::SocketAddr,
    descriptor: &str,
    timeout: Duration,
) -> Result<HttpAnswer, PublishError> {
    request(
        addr,
        "POST",
        "/tor/",
        Some(descriptor.as_bytes()),
        MAX_ANSWER_BODY,
        timeout,
    )
    .await
}

/// Largest descriptor we read back.
const MAX_DESCRIPTOR_BODY: usize = 64 * 1024;

/// What became of an upload that got an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadResult {
    /// The authority's answer to the POST.
    pub answer: HttpAnswer,
    /// Whether the authority then served the descriptor back unchanged
    /// (only asked after a `200`).
    pub stored: bool,
}

impl UploadResult {
    /// Whether the authority holds the descriptor.
    pub fn accepted(&self) -> bool {
        self.answer.status == 200 && self.stored
    }

    /// One sentence for the log.
    pub fn describe(&self) -> String {
        let mut s = describe(&self.answer);
        if self.answer.status == 200 && !self.stored {
            s.push_str(
                "; but it does not serve the descriptor back: it dropped it (its log says why)",
            );
        }
        s
    }
}

/// Upload `descriptor` to the DirPort `addr` and, if the answer is `200`,
/// check that the authority serves it back.
pub async fn upload_and_check(
    addr: std::net::SocketAddr,
    descriptor: &ServerDescriptor,
    timeout: Duration,
) -> Result<UploadResult, PublishError> {
    let answer = upload(addr, descriptor.text(), timeout).await?;
    let stored = answer.status == 200 && serves(addr, descriptor, timeout).await?;
    Ok(UploadResult { answer, stored })
}

/// Whether the authority at `addr` serves `descriptor`, byte for byte, at
/// `/tor/server/d/<digest>`.
pub async fn serves(
    addr: std::net::SocketAddr,
    descriptor: &ServerDescriptor,
    timeout: Duration,
) -> Result<bool, PublishError> {
    let path = format!("/tor/server/d/{}", hex_digest(&descriptor.digest()));
    let got = request(addr, "GET", &path, None, MAX_DESCRIPTOR_BODY, timeout).await?;
    Ok(got.status == 200 && got.body == descriptor.text())
}

/// One sentence for the log about an authority's answer.
pub fn describe(answer: &HttpAnswer) -> String {
    let mut s = format!("{} {}", answer.status, answer.reason);
    if answer.header("X-Descriptor-Not-New").is_some() {
        s.push_str(" (not new: it already had this descriptor)");
    }
    let body = answer.body.trim();
    if !body.is_empty() {
        let shown: String = body.chars().take(500).collect();
        s.push_str(&format!("; body: {shown:?}"));
    }
    s
}

/// What the publisher did, for callers that watch it (status pages,
/// tests). Sent without waiting: events are dropped when the channel is
/// full.
#[derive(Debug, Clone)]
pub enum PublishEvent {
    /// A new descriptor was built.
    Built {
        /// Its digest (as in `/tor/server/d/`).
        digest: [u8; 20],
        /// Its size in bytes.
        len: usize,
    },
    /// An authority answered, or could not be reached.
    Answer {
        /// The authority's nickname.
        authority: String,
        /// Its answer and whether it serves the descriptor, or why there
        /// was no answer.
        result: Result<UploadResult, String>,
    },
    /// Every authority holds the current descriptor.
    AllAccepted,
}

/// Uploads the relay's descriptor to a fixed set of authorities, for as
/// long as [`run`](Self::run) runs.
#[derive(Debug)]
pub struct Publisher {
    authorities: Vec<Authority>,
    schedule: PublishSchedule,
    timeout: Duration,
}

impl Publisher {
    /// A publisher to `authorities` with `config`'s timing; each upload
    /// may take `timeout`.
    pub fn new(authorities: Vec<Authority>, config: ScheduleConfig, timeout: Duration) -> Self {
        let schedule = PublishSchedule::new(authorities.len(), config);
        Self {
            authorities,
            schedule,
            timeout,
        }
    }

    /// Build descriptors with `make` (given the publication time) and
    /// upload them, until `make` fails (its error is returned). `changed`
    /// asks for a fresh descriptor at once (new address, bandwidth,
    /// policy; use `notify_one`, which is kept until the publisher looks).
    /// Cancel the future to stop.
    pub async fn run<E>(
        &mut self,
        mut make: impl FnMut(SystemTime) -> Result<ServerDescriptor, E>,
        changed: &Notify,
        events: Option<mpsc::Sender<PublishEvent>>,
    ) -> Result<(), E> {
        let send = |ev: PublishEvent| {
            if let Some(tx) = &events {
                let _ = tx.try_send(ev);
            }
        };
        let mut current: Option<Arc<ServerDescriptor>> = None;
        let mut uploads: JoinSet<(Upload, Result<UploadResult, PublishError>)> = JoinSet::new();
        let mut rebuild = false;
        loop {
            let now = Instant::now();
            if rebuild || self.schedule.needs_rebuild(now) {
                rebuild = false;
                let d = make(SystemTime::now())?;
                tracing::info!(
                    "descriptor built: {} bytes, digest {}",
                    d.text().len(),
                    hex_digest(&d.digest())
                );
                send(PublishEvent::Built {
                    digest: d.digest(),
                    len: d.text().len(),
                });
                current = Some(Arc::new(d));
                self.schedule.descriptor_built(now);
            }
            if let Some(d) = &current {
                while let Some(up) = self.schedule.poll_upload(now) {
                    let Some(auth) = self.authorities.get(up.authority) else {
                        continue;
                    };
                    let (addr, d, timeout) = (auth.dir_addr, Arc::clone(d), self.timeout);
                    uploads.spawn(async move { (up, upload_and_check(addr, &d, timeout).await) });
                }
            }
            let wake = self.schedule.poll_timeout();
            tokio::select! {
                Some(joined) = uploads.join_next() => {
                    let Ok((up, result)) = joined else { continue };
                    let name = self
                        .authorities
                        .get(up.authority)
                        .map_or_else(String::new, |a| format!("{} ({})", a.nickname, a.dir_addr));
                    let outcome = match &result {
                        Ok(r) if r.accepted() => {
                            tracing::info!("authority {name} holds the descriptor: {}", r.describe());
                            UploadOutcome::Accepted
                        }
                        Ok(r) => {
                            tracing::warn!("authority {name} refused the descriptor: {}", r.describe());
                            UploadOutcome::Refused
                        }
                        Err(e) => {
                            tracing::warn!("upload to authority {name} failed: {e}");
                            UploadOutcome::Failed
                        }
                    };
                    self.schedule.upload_done(up, outcome, Instant::now());
                    if let Some(t) = self.schedule.retry_at(up.authority) {
                        tracing::info!(
                            "retrying {name} in {:.0?}",
                            t.saturating_duration_since(Instant::now())
                        );
                    }
                    send(PublishEvent::Answer {
                        authority: self
                            .authorities
                            .get(up.authority)
                            .map_or_else(String::new, |a| a.nickname.clone()),
                        result: result.map_err(|e| e.to_string()),
                    });
                    if up.generation > 0 && self.schedule.accepted_count() == self.authorities.len() {
                        send(PublishEvent::AllAccepted);
                    }
                }
                () = sleep_until(wake) => {}
                () = changed.notified() => rebuild = true,
            }
        }
    }

    /// How many authorities hold the current descriptor.
    pub fn accepted_count(&self) -> usize {
        self.schedule.accepted_count()
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn hex_digest(d: &[u8; 20]) -> String {
    d.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests;
