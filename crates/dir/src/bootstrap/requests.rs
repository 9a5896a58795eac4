//! What a request asks for and how (dir-spec §4, §5; C-tor
//! `directory_send_command`, `dir_consensus_request_set_additional_headers`,
//! `launch_descriptor_downloads`): the compression we accept, the
//! consensus we hold (for a 304 or a diff), and how many microdescriptors
//! go in one request.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::documents::Lifetime;
use crate::fetch::diff::{self, DIFF_HEADER, DIFF_MAX_AGE_HOURS, DIFF_PARAM};
use crate::fetch::{ACCEPT_ENCODING, Request};
use crate::serve::date::format_http_date;

/// Microdescriptors per request over BEGIN_DIR (C-tor `max_dl_per_request`
/// when it must use BEGIN_DIR).
pub const MAX_MDS_BEGIN_DIR: usize = 500;
/// Microdescriptors per request to a DirPort: the URL stays under 4 kB
/// for HTTP proxies (C-tor `max_dl_per_request`).
pub const MAX_MDS_DIRPORT: usize = 90;
/// Not fewer per request than this, if there are that many (C-tor
/// `MIN_DL_PER_REQUEST`).
pub const MIN_MDS_PER_REQUEST: usize = 32;
/// Spread what is missing over at least this many requests, so no single
/// cache decides what we learn (C-tor `MIN_REQUESTS`).
pub const MIN_MD_REQUESTS: usize = 3;

/// C-tor's If-Modified-Since offset after valid-after
/// (`DEFAULT_IF_MODIFIED_SINCE_DELAY`), halved for short voting intervals.
const IMS_DELAY: Duration = Duration::from_secs(180);

/// How many of `missing` microdescriptors to ask for in one request
/// (C-tor `launch_descriptor_downloads`): a third of them, at most 500 over
/// BEGIN_DIR (90 to a DirPort), at least 32 (or all if fewer).
pub fn md_batch_size(missing: usize, begin_dir: bool) -> usize {
    let max = if begin_dir {
        MAX_MDS_BEGIN_DIR
    } else {
        MAX_MDS_DIRPORT
    };
    missing
        .div_ceil(MIN_MD_REQUESTS)
        .min(max)
        .max(MIN_MDS_PER_REQUEST.min(missing))
}

/// A GET of `path` with the `Accept-Encoding` we decode.
pub fn plain(path: &str) -> Request {
    Request::get(path).with("Accept-Encoding", ACCEPT_ENCODING)
}

/// The consensus we hold, as the next consensus request names it.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// Its text.
    pub text: &'a str,
    /// Its lifetime.
    pub lifetime: Lifetime,
    /// The consensus parameters.
    pub params: &'a BTreeMap<String, i32>,
    /// Ask for a diff from it (not after one failed).
    pub diff: bool,
}

/// A consensus request: [`plain`], plus, if we hold one, `If-Modified-Since`
/// (valid-after plus 180 s, or half the voting interval: a cache with
/// nothing newer answers 304) and, if it is at most
/// `try-diff-for-consensus-newer-than` hours old, `X-Or-Diff-From-Consensus`
/// with its digest. Returns the request and whether a diff was asked for.
pub fn consensus(path: &str, held: Option<Held<'_>>, now: SystemTime) -> (Request, bool) {
    let mut req = plain(path);
    let Some(held) = held else {
        return (req, false);
    };
    let lt = held.lifetime;
    let half = lt
        .fresh_until
        .duration_since(lt.valid_after)
        .unwrap_or_default()
        / 2;
    let ims = lt.valid_after + IMS_DELAY.min(half);
    req = req.with("If-Modified-Since", format_http_date(ims));
    let hours = held
        .params
        .get(DIFF_PARAM)
        .copied()
        .unwrap_or(DIFF_MAX_AGE_HOURS)
        .clamp(0, 8192);
    let max_age = Duration::from_secs(3600 * u64::from(hours.unsigned_abs()));
    let recent = now
        .checked_sub(max_age)
        .is_none_or(|oldest| lt.valid_after >= oldest);
    match diff::digest_as_signed(held.text) {
        Some(d) if held.diff && recent => (req.with(DIFF_HEADER, hex::encode_upper(d)), true),
        _ => (req, false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn md_batches_as_ctor_splits_them() {
        // BEGIN_DIR: a third, at most 500.
        assert_eq!(md_batch_size(9000, true), 500);
        assert_eq!(md_batch_size(1200, true), 400);
        assert_eq!(md_batch_size(11, true), 11);
        assert_eq!(md_batch_size(60, true), 32);
        // DirPort: at most 90.
        assert_eq!(md_batch_size(9000, false), 90);
        assert_eq!(md_batch_size(0, false), 0);
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn consensus_requests_name_the_consensus_held() {
        let now = at(1_800_000_000);
        let (r, diff) = consensus("/c.z", None, now);
        assert!(!diff);
        assert_eq!(r.headers, [("Accept-Encoding", ACCEPT_ENCODING.to_owned())]);
        let params = BTreeMap::new();
        let text = "network-status-version 3\ndirectory-signature a b\nsig\n";
        let held = Held {
            text,
            lifetime: Lifetime {
                valid_after: at(1_800_000_000 - 3600),
                fresh_until: at(1_800_000_000),
                valid_until: at(1_800_000_000 + 7200),
            },
            params: &params,
            diff: true,
        };
        let (r, diff) = consensus("/c.z", Some(held), now);
        assert!(diff);
        let digest = hex::encode_upper(diff::digest_as_signed(text).unwrap());
        assert_eq!(
            r.headers,
            [
                ("Accept-Encoding", ACCEPT_ENCODING.to_owned()),
                (
                    "If-Modified-Since",
                    format_http_date(at(1_800_000_000 - 3600 + 180))
                ),
                (DIFF_HEADER, digest)
            ]
        );
        // A 20 s voting interval: half of it.
        let mut short = held;
        short.lifetime.fresh_until = short.lifetime.valid_after + Duration::from_secs(10);
        let (r, _) = consensus("/c.z", Some(short), now);
        assert_eq!(
            r.headers[1].1,
            format_http_date(at(1_800_000_000 - 3600 + 5))
        );
        // After a failed diff, or more than 72 h old: no diff.
        assert!(
            !consensus(
                "/c.z",
                Some(Held {
                    diff: false,
                    ..held
                }),
                now
            )
            .1
        );
        let later = now + Duration::from_secs(72 * 3600);
        assert!(!consensus("/c.z", Some(held), later).1);
    }
}
