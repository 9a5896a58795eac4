//! The consensus parameters a relay follows: the relay fetches the
//! microdesc consensus from an authority's DirPort at start and every
//! hour (dir-spec §4.3: `/tor/status-vote/current/consensus-microdesc`,
//! the authorities' certificates from `/tor/keys/fp-sk/`), checks it with
//! braid-dir (a majority of the configured authorities' signatures, its
//! validity time) and hands the node task what it applies to new
//! circuits: congestion control (`cc_*`, proposal 324 §6.5), XON/XOFF
//! (`cc_xo*`), circuit priority's half-life (`CircuitPriorityHalflifeMsec`)
//! and KIST's run interval (`KISTSchedRunInterval`). A failed fetch keeps
//! what is in force and is retried with backoff, from the next authority;
//! it never stops the relay.
//!
//! A relay that serves the directory (`dircache`) hands each consensus to
//! its cache, which fetches the microdescriptors it lists, and fetches the
//! next one when a cache should (dir-spec §5.1, braid-dir's
//! `next_consensus_fetch`) rather than hourly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use braid_core::cc::{CcParams, FlowParams};
use braid_core::relay::ewma::halflife_from_param;
use braid_dir::documents::{CheckedCert, MAX_DOCUMENT_BYTES, parse_certs, parse_consensus};
use braid_dir::serve::next_consensus_fetch;
use braid_dir::{Authority, NetDir, RelayId};
use tokio::sync::{mpsc, watch};

use super::dircache::{DirShared, refresh};
use super::msg::ToNode;
use super::rekey::KeySchedule;
use crate::error::FetchError;
use crate::http::request;

/// How often the consensus is fetched again.
pub(crate) const REFRESH: Duration = Duration::from_secs(3600);
/// The first retry after a failure; doubled each time up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(10);
/// The longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(600);
/// Each request may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// A directory cache that fetched no newer consensus than it had waits at
/// least this long, doubled each time up to [`RETRY_MAX`] (the
/// authorities are late; C-tor backs off its downloads likewise).
const SAME_CONSENSUS_WAIT: Duration = Duration::from_secs(5);

/// The parameters of names the relay applies (for the log).
const APPLIED: [&str; 8] = [
    "CircuitPriorityHalflifeMsec",
    "KISTSchedRunInterval",
    "onion-key-rotation-days",
    "onion-key-grace-period-days",
    "nf_ito_low",
    "nf_ito_high",
    "nf_pad_before_usage",
    "nf_pad_relays",
];

/// What the node applies from one consensus.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetParams {
    /// Congestion control of new circuits.
    pub(crate) cc: CcParams,
    /// XON/XOFF of new exit streams.
    pub(crate) flow: FlowParams,
    /// Circuit priority's half-life.
    pub(crate) halflife: Duration,
    /// `KISTSchedRunInterval`, milliseconds, if present.
    pub(crate) kist_interval: Option<i32>,
    /// When onion keys rotate.
    pub(crate) keys: KeySchedule,
    /// Channel padding (padding-spec §2.6).
    pub(crate) padding: braid_core::channel::padding::PaddingParams,
    /// The parameters of those names the consensus sets, `name=value`.
    pub(crate) summary: String,
    /// The consensus' `valid-after`.
    pub(crate) valid_after: SystemTime,
}

impl NetParams {
    /// From a consensus' `params` line.
    pub(crate) fn from_params(params: &BTreeMap<String, i32>, valid_after: SystemTime) -> Self {
        let set: Vec<String> = params
            .iter()
            .filter(|(k, _)| k.starts_with("cc_") || APPLIED.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Self {
            cc: CcParams::from_consensus(params),
            flow: FlowParams::from_consensus(params),
            halflife: halflife_from_param(params.get("CircuitPriorityHalflifeMsec").copied()),
            kist_interval: params.get("KISTSchedRunInterval").copied(),
            keys: KeySchedule::from_params(params),
            padding: braid_core::channel::padding::PaddingParams::from_consensus(params),
            summary: if set.is_empty() {
                "none set, defaults".to_owned()
            } else {
                set.join(" ")
            },
            valid_after,
        }
    }
}

/// Fetches and failures, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct FetchStats {
    /// Consensuses fetched and verified.
    pub(crate) fetched: AtomicU64,
    /// Attempts that failed.
    pub(crate) failed: AtomicU64,
}

/// Fetch, verify and hand over the consensus' parameters for as long as
/// the node task listens; with `dir`, fill the directory cache too.
pub(crate) async fn fetch_loop(
    authorities: Vec<Authority>,
    to_node: mpsc::Sender<ToNode>,
    key_schedule: watch::Sender<KeySchedule>,
    stats: Arc<FetchStats>,
    dir: Option<Arc<DirShared>>,
) {
    let ids: Vec<RelayId> = authorities.iter().map(|a| a.v3ident).collect();
    let mut certs = Vec::new();
    let mut retry = RETRY_MIN;
    let mut same_wait = SAME_CONSENSUS_WAIT;
    let mut last_valid_after = None;
    let mut next = usize::from(rand::random::<u8>());
    loop {
        let n = authorities.len().max(1);
        let Some(auth) = authorities.get(next % n) else {
            return;
        };
        let wait = match fetch(auth.dir_addr, &ids, &mut certs, SystemTime::now()).await {
            Ok((params, netdir)) => {
                stats.fetched.fetch_add(1, Ordering::Relaxed);
                retry = RETRY_MIN;
                let valid_after = params.valid_after;
                key_schedule.send_if_modified(|s| std::mem::replace(s, params.keys) != params.keys);
                if to_node
                    .send(ToNode::Params(Box::new(params)))
                    .await
                    .is_err()
                {
                    return;
                }
                match &dir {
                    Some(shared) => {
                        refresh(shared, &authorities, next % n, &netdir, &certs).await;
                        let now = SystemTime::now();
                        let at = next_consensus_fetch(&netdir.lifetime(), now, &mut rand::rng());
                        let floor = if last_valid_after == Some(valid_after) {
                            let w = same_wait;
                            same_wait = (same_wait * 2).min(RETRY_MAX);
                            w
                        } else {
                            same_wait = SAME_CONSENSUS_WAIT;
                            Duration::from_secs(1)
                        };
                        last_valid_after = Some(valid_after);
                        at.duration_since(now).unwrap_or_default().max(floor)
                    }
                    None => REFRESH,
                }
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                next = next.wrapping_add(1);
                tracing::warn!(
                    "consensus from authority {} ({}): {e}; keeping the parameters in force, \
                     retrying in {retry:?}",
                    auth.nickname,
                    auth.dir_addr
                );
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = to_node.closed() => return,
        }
    }
}

/// Fetch the consensus from the DirPort `addr`, with the certificates it
/// needs that `certs` lacks (kept there), and verify it at `now` against
/// the authorities `ids`: its parameters, and the consensus.
pub(crate) async fn fetch(
    addr: std::net::SocketAddr,
    ids: &[RelayId],
    certs: &mut Vec<CheckedCert>,
    now: SystemTime,
) -> Result<(NetParams, NetDir), FetchError> {
    let text = get(addr, "/tor/status-vote/current/consensus-microdesc").await?;
    let pending = parse_consensus(&text, ids, now)?;
    let have: Vec<_> = certs.iter().map(|c| c.cert.clone()).collect();
    let missing = pending.missing_certs(&have, ids);
    if !missing.is_empty() {
        // dir-spec §4.3: /tor/keys/fp-sk/<F>-<S>+<F>-<S>...
        let list: Vec<String> = missing
            .iter()
            .map(|k| {
                format!(
                    "{}-{}",
                    k.id_fingerprint.as_hex_upper(),
                    k.sk_fingerprint.as_hex_upper()
                )
            })
            .collect();
        let body = get(addr, &format!("/tor/keys/fp-sk/{}", list.join("+"))).await?;
        let (good, bad) = parse_certs(&body, ids, now);
        for e in bad {
            tracing::debug!("an authority certificate from {addr}: {e}");
        }
        certs.retain(|c| c.cert.expires() > now);
        certs.extend(good);
    }
    let have: Vec<_> = certs.iter().map(|c| c.cert.clone()).collect();
    let verified = pending.verify(&text, &have, ids)?;
    let valid_after = verified.lifetime.valid_after;
    let dir = NetDir::new(verified, None);
    Ok((NetParams::from_params(dir.params(), valid_after), dir))
}

/// The body of `GET path` at `addr`, if the answer is 200.
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<String, FetchError> {
    let a = request(addr, "GET", path, None, MAX_DOCUMENT_BYTES, FETCH_TIMEOUT).await?;
    if a.status != 200 {
        return Err(FetchError::Status {
            path: path.to_owned(),
            status: a.status,
            reason: a.reason,
        });
    }
    Ok(a.body)
}

#[cfg(test)]
mod tests;
