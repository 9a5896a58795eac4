//! Filling the directory cache after each consensus fetch: the
//! microdescriptors the new consensus lists and the cache lacks, from the
//! authorities' DirPorts (dir-spec §4.3, `/tor/micro/d/<D1>-<D2>...`,
//! each checked against the digests asked for), in batches of
//! `MDS_PER_REQUEST` (90) one after the other, a failed batch asked again of
//! the next authority; then the consensus and the certificates are served.
//! Microdescriptors the consensus no longer lists are dropped first, so
//! the cache holds one consensus' worth. What could not be fetched is
//! asked again after the next consensus.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use braid_dir::documents::{CheckedCert, MAX_DOCUMENT_BYTES, parse_microdescs};
use braid_dir::serve::date::format_http_date;
use braid_dir::serve::{CachedCert, CachedConsensus, MDS_PER_REQUEST, microdesc_paths};
use braid_dir::{Authority, NetDir};

use super::DirShared;
use crate::http::request;

/// A microdescriptor digest (SHA-256).
type MdDigest = [u8; 32];
/// Each request may take this long.
const MD_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Serve `dir`'s consensus with `certs`, after fetching the
/// microdescriptors it lists that the cache lacks from `authorities`,
/// starting with the one at index `first`.
pub(crate) async fn refresh(
    shared: &DirShared,
    authorities: &[Authority],
    first: usize,
    dir: &NetDir,
    certs: &[CheckedCert],
) {
    let listed = dir.wanted_digests();
    // The dir holds no microdescriptor: all are "missing", in order.
    let in_order: Vec<MdDigest> = dir.missing_digests();
    let missing = {
        let mut cache = shared.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.retain_microdescs(&listed);
        cache.missing_microdescs(&in_order)
    };
    let mut fetched = 0;
    for (batch, path) in missing
        .chunks(MDS_PER_REQUEST)
        .zip(microdesc_paths(&missing))
    {
        fetched += fetch_batch(shared, authorities, first, batch, &path).await;
    }
    let lifetime = dir.lifetime();
    // Diffs from the consensuses served before (dir-spec §4.5) are made
    // off the runtime: for the public network's that takes a while.
    let sources = {
        let cache = shared.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.diff_sources()
    };
    let text = dir.consensus().text.clone();
    let built =
        tokio::task::spawn_blocking(move || CachedConsensus::build(&text, lifetime, &sources))
            .await;
    let mut cache = shared.cache.write().unwrap_or_else(|e| e.into_inner());
    match built {
        Ok(Ok(c)) => cache.install_consensus(c),
        Ok(Err(e)) => tracing::warn!("directory cache: the consensus is not served: {e}"),
        Err(e) => tracing::warn!("directory cache: making the consensus' diffs failed: {e}"),
    }
    cache.set_certs(certs.iter().map(CachedCert::from));
    let held = in_order
        .iter()
        .filter(|d| cache.microdesc(d).is_some())
        .count();
    tracing::info!(
        "directory cache: consensus valid after {}, {held} of {} microdescriptors ({fetched} fetched), \
         {} certificates, diffs from {} older consensuses",
        format_http_date(lifetime.valid_after),
        in_order.len(),
        cache.certs().len(),
        cache.consensus().map_or(0, CachedConsensus::n_diffs)
    );
}

/// Fetch `batch` (asking the authorities in turn from `first` until one
/// answers) into the cache; how many were added.
async fn fetch_batch(
    shared: &DirShared,
    authorities: &[Authority],
    first: usize,
    batch: &[MdDigest],
    path: &str,
) -> usize {
    let wanted: HashSet<MdDigest> = batch.iter().copied().collect();
    let n = authorities.len().max(1);
    for k in 0..n {
        let Some(auth) = authorities.get((first + k) % n) else {
            break;
        };
        let answer = request(
            auth.dir_addr,
            "GET",
            path,
            None,
            MAX_DOCUMENT_BYTES,
            MD_FETCH_TIMEOUT,
        )
        .await;
        let body = match answer {
            Ok(a) if a.status == 200 => a.body,
            Ok(a) => {
                shared
                    .stats
                    .md_fetches_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    "microdescriptors from authority {}: {} {}",
                    auth.nickname,
                    a.status,
                    a.reason
                );
                continue;
            }
            Err(e) => {
                shared
                    .stats
                    .md_fetches_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!("microdescriptors from authority {}: {e}", auth.nickname);
                continue;
            }
        };
        shared.stats.md_fetches.fetch_add(1, Ordering::Relaxed);
        let (good, bad) = parse_microdescs(&body, &wanted);
        for e in bad {
            tracing::debug!("a microdescriptor from authority {}: {e}", auth.nickname);
        }
        let mut cache = shared.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut added = 0;
        for md in good {
            match cache.insert_microdesc(&md.text) {
                Ok(true) => added += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("directory cache: {e}");
                    break;
                }
            }
        }
        return added;
    }
    0
}

#[cfg(test)]
mod tests;
