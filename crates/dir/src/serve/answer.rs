//! C-tor's URL table for GET (`dircache.c`, `directory_handle_command_get`
//! and its handlers), for what a cache that is not an authority holds: the
//! microdesc consensus, microdescriptors and authority certificates
//! (dir-spec §4.2, §4.3, §6.2). A trailing `.z` is dropped from the URL
//! after it chose the answer's encoding ([`choose_encoding`]). A client
//! that names in `X-Or-Diff-From-Consensus` (or in a `/diff/` URL) a
//! consensus we served before gets a diff from it ([`super::diffs`]), one
//! that names the one held gets 304; without a diff, the full consensus
//! (prop 140 §3 allows it), or 404 for a `/diff/` URL. Documents a cache
//! does not serve (votes, server descriptors, onion-service descriptors,
//! the front page, the bandwidth file) are 404 as at a C-tor relay that
//! holds none; uploads are 400 (`directory_handle_command_post`: a
//! non-authority takes none).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64ct::{Base64Unpadded, Encoding as _};

use super::cache::{CachedCert, DirCache};
use super::date::parse_http_date;
use super::request::{Method, Request};
use super::response::{CacheLifetime, DocType, Response};
use crate::fetch::{Encoding, compress};

/// How long past `valid-until` a consensus is still served, and how long
/// before `valid-after` it already is (C-tor `REASONABLY_LIVE_TIME`).
pub const REASONABLY_LIVE: Duration = Duration::from_secs(24 * 60 * 60);
/// `Expires` of microdescriptors (C-tor `MICRODESC_CACHE_LIFETIME`).
pub const MICRODESC_LIFETIME: Duration = Duration::from_secs(48 * 60 * 60);
/// `Expires` of certificates (C-tor: an hour).
pub const CERT_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// `Expires` of robots.txt (C-tor `ROBOTS_CACHE_LIFETIME`).
pub const ROBOTS_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The answer to `req` from `cache` at `now`; `None` when C-tor writes
/// none (`/tor/networkstatus-bridges` at a relay that is no bridge
/// authority): end the stream.
pub fn answer(cache: &DirCache, req: &Request, now: SystemTime) -> Option<Response> {
    let enc = choose_encoding(req);
    let url = req.url.strip_suffix(".z").unwrap_or(&req.url);
    if req.method == Method::Post {
        return Some(post(url, now));
    }
    let ims = req.header("If-Modified-Since").and_then(parse_http_date);
    let not_found = |doc| Some(Response::short(doc, 404, "Not found", now));
    if url == "/tor/" {
        // No DirPortFrontPage.
        return not_found(DocType::Other);
    }
    if url.starts_with("/tor/status-vote/current/consensus") {
        return Some(consensus(cache, req, url, ims, enc, now));
    }
    if let Some(list) = url.strip_prefix("/tor/micro/d/") {
        return Some(microdescs(cache, list, enc, now));
    }
    if url.starts_with("/tor/keys/") {
        return Some(keys(cache, url, ims, enc, now));
    }
    if url == "/tor/robots.txt" {
        let body: Arc<[u8]> = Arc::from(&b"User-agent: *\r\nDisallow: /\r\n"[..]);
        return Some(Response::ok(
            DocType::Robots,
            encoded(vec![body], enc),
            true,
            CacheLifetime::Expires(ROBOTS_LIFETIME),
            "",
            now,
        ));
    }
    if url == "/tor/networkstatus-bridges" {
        return None;
    }
    // Votes, the bandwidth file, server and extra-info descriptors,
    // onion-service descriptors, anything else: none held.
    not_found(DocType::Other)
}

/// How an answer to `req` is encoded (C-tor `parse_accept_encoding_header`
/// and `srv_meth_pref_streaming_compression`, dir-spec §4): deflate when
/// the URL ends in `.z` or `Accept-Encoding` names it, else gzip when
/// named, else identity. zstd, C-tor's first choice, we decode but do not
/// make.
pub fn choose_encoding(req: &Request) -> Encoding {
    let named: Vec<Option<Encoding>> = req
        .header("Accept-Encoding")
        .unwrap_or_default()
        .split(',')
        .map(Encoding::from_name)
        .collect();
    if req.url.ends_with(".z") || named.contains(&Some(Encoding::Deflate)) {
        Encoding::Deflate
    } else if named.contains(&Some(Encoding::Gzip)) {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// `parts` as one body in `enc` (as they are for identity).
fn encoded(parts: Vec<Arc<[u8]>>, enc: Encoding) -> (Vec<Arc<[u8]>>, Encoding) {
    if enc == Encoding::Identity {
        return (parts, enc);
    }
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    match compress::encode(enc, &whole) {
        Some(body) => (vec![Arc::from(body)], enc),
        None => (parts, Encoding::Identity),
    }
}

/// The answer when too many answers are under way (C-tor's, when its
/// write bucket is low).
pub fn busy(doc: DocType, now: SystemTime) -> Response {
    Response::short(doc, 503, "Directory busy, try again later", now)
}

/// The kind of document `url` asks for (for statistics of refusals).
pub fn doc_type(url: &str) -> DocType {
    if url.starts_with("/tor/status-vote/current/consensus") {
        DocType::Consensus
    } else if url.starts_with("/tor/micro/d/") {
        DocType::Microdescs
    } else if url.starts_with("/tor/keys/") {
        DocType::Certificates
    } else if url == "/tor/robots.txt" {
        DocType::Robots
    } else {
        DocType::Other
    }
}

/// C-tor `directory_handle_command_post` at a relay that is neither an
/// authority nor storing onion-service descriptors.
fn post(url: &str, now: SystemTime) -> Response {
    let reason = if url.starts_with("/tor/hs/") {
        "Invalid HS descriptor. Rejected."
    } else {
        "Nonauthoritative directory does not accept posted server descriptors"
    };
    Response::short(DocType::Other, 400, reason, now)
}

/// What a consensus request asks (C-tor `parse_consensus_request`).
#[derive(Debug, Default, PartialEq, Eq)]
struct ConsensusRequest<'a> {
    /// The microdesc flavour (else `ns`, which a cache of microdesc
    /// consensuses does not hold).
    microdesc: bool,
    /// `+`-separated authority fingerprint prefixes that must have signed.
    want_fps: Option<&'a str>,
    /// Digests of consensuses the client holds (a diff from one would do).
    diff_from: Option<Vec<[u8; 32]>>,
    /// A diff and nothing else.
    diff_only: bool,
}

/// Parse the URL (and `X-Or-Diff-From-Consensus`); `None` if a digest in
/// the URL is malformed.
fn parse_consensus_request<'a>(url: &'a str, req: &Request) -> Option<ConsensusRequest<'a>> {
    let mut out = ConsensusRequest::default();
    let after_flavor = if let Some(f) = url.strip_prefix("/tor/status-vote/current/consensus-") {
        let (name, after) = match f.split_once('/') {
            Some((name, after)) => (name, Some(after)),
            None => (f, None),
        };
        out.microdesc = name == "microdesc";
        after
    } else {
        url.strip_prefix("/tor/status-vote/current/consensus/")
    };
    match after_flavor.and_then(|a| a.strip_prefix("diff/")) {
        Some(diff) => {
            let (hash, fps) = match diff.split_once('/') {
                Some((hash, fps)) => (hash, Some(fps)),
                None => (diff, None),
            };
            out.want_fps = fps;
            out.diff_only = true;
            out.diff_from = Some(vec![digest256(hash)?]);
        }
        None => {
            out.want_fps = after_flavor;
            out.diff_from = req.header("X-Or-Diff-From-Consensus").map(|h| {
                // Malformed digests are ignored.
                h.split(' ').filter_map(digest256).collect()
            });
        }
    }
    Some(out)
}

/// A hex SHA3-256 digest.
fn digest256(hex: &str) -> Option<[u8; 32]> {
    let mut d = [0_u8; 32];
    hex::decode_to_slice(hex, &mut d).ok().map(|()| d)
}

/// GET `/tor/status-vote/current/consensus[-flavor][/diff/H][/fps]`
/// (C-tor `handle_get_current_consensus`; dir-spec §4.2, §6.2).
fn consensus(
    cache: &DirCache,
    req: &Request,
    url: &str,
    ims: Option<SystemTime>,
    enc: Encoding,
    now: SystemTime,
) -> Response {
    let short = |status, reason| Response::short(DocType::Consensus, status, reason, now);
    let Some(parsed) = parse_consensus_request(url, req) else {
        return short(404, "Couldn't parse request");
    };
    let held = cache.consensus().filter(|_| parsed.microdesc);
    if let (Some(c), Some(from)) = (held, &parsed.diff_from)
        && from.contains(c.digest_as_signed())
    {
        return short(304, "Not modified");
    }
    // C-tor `find_best_diff`: the first digest named that we hold a diff
    // from.
    let diff = match (held, &parsed.diff_from) {
        (Some(c), Some(from)) => from.iter().find_map(|d| c.diff_from(d)),
        _ => None,
    };
    if parsed.diff_only && diff.is_none() {
        return short(404, "No such diff available");
    }
    let Some(c) = held else {
        return short(404, "Not found");
    };
    let lifetime = c.lifetime();
    if lifetime
        .valid_after
        .checked_sub(REASONABLY_LIVE)
        .is_some_and(|t| now < t)
    {
        return short(404, "Consensus is too new");
    }
    if lifetime
        .valid_until
        .checked_add(REASONABLY_LIVE)
        .is_some_and(|t| now > t)
    {
        return short(404, "Consensus is too old");
    }
    if let Some(fps) = parsed.want_fps
        && !enough_signers(c.signers(), fps)
    {
        return short(
            404,
            "Consensus not signed by sufficient number of requested authorities",
        );
    }
    if ims.is_some_and(|ims| lifetime.valid_after < ims) {
        return short(304, "Not modified");
    }
    let expires = match lifetime.fresh_until.duration_since(now) {
        Ok(d) if !d.is_zero() => CacheLifetime::Expires(d),
        _ => CacheLifetime::NoCache,
    };
    let (doc, body) = match (diff, enc) {
        (Some(d), Encoding::Deflate) => (
            DocType::ConsensusDiff,
            (vec![Arc::clone(d.deflated())], enc),
        ),
        (Some(d), _) => (
            DocType::ConsensusDiff,
            encoded(vec![Arc::clone(d.body())], enc),
        ),
        (None, Encoding::Deflate) => (DocType::Consensus, (vec![Arc::clone(c.deflated())], enc)),
        (None, _) => (DocType::Consensus, encoded(vec![Arc::clone(c.body())], enc)),
    };
    Response::ok(
        doc,
        body,
        false,
        expires,
        "Vary: X-Or-Diff-From-Consensus\r\n",
        now,
    )
}

/// C-tor `client_likes_consensus`: more than half of the `+`-separated
/// fingerprint prefixes in `want` (hex, any case) begin the identity of an
/// authority that signed.
fn enough_signers(signers: &[[u8; 20]], want: &str) -> bool {
    let hex: Vec<String> = signers.iter().map(hex::encode_upper).collect();
    let wanted: Vec<&str> = want.split('+').collect();
    let need = wanted.len() / 2 + 1;
    let have = wanted
        .iter()
        .filter(|w| {
            hex.iter().any(|h| {
                h.get(..w.len())
                    .is_some_and(|prefix| prefix.eq_ignore_ascii_case(w))
            })
        })
        .count();
    have >= need
}

/// GET `/tor/micro/d/<D1>-<D2>...` (C-tor `handle_get_microdesc`;
/// dir-spec §4.3): the microdescriptors held of those named (base64
/// SHA-256 digests, 43 characters; others skipped), in digest order.
fn microdescs(cache: &DirCache, list: &str, enc: Encoding, now: SystemTime) -> Response {
    let mut digests: Vec<[u8; 32]> = list
        .split('-')
        .filter(|d| d.len() == 43)
        .filter_map(|d| {
            let mut out = [0_u8; 32];
            (Base64Unpadded::decode(d, &mut out).ok()?.len() == 32).then_some(out)
        })
        .collect();
    digests.sort_unstable();
    digests.dedup();
    let body: Vec<Arc<[u8]>> = digests
        .iter()
        .filter_map(|d| cache.microdesc(d).cloned())
        .collect();
    if body.is_empty() {
        return Response::short(DocType::Microdescs, 404, "Not found", now);
    }
    Response::ok(
        DocType::Microdescs,
        encoded(body, enc),
        false,
        CacheLifetime::Expires(MICRODESC_LIFETIME),
        "",
        now,
    )
}

/// GET `/tor/keys/...` (C-tor `handle_get_keys`; dir-spec §4.3): `all`,
/// `authority` (ours: we are none), `fp/<F>+...` (the newest of each
/// authority), `sk/<S>+...`, `fp-sk/<F>-<S>+...`; 400 for anything else.
fn keys(
    cache: &DirCache,
    url: &str,
    ims: Option<SystemTime>,
    enc: Encoding,
    now: SystemTime,
) -> Response {
    let short = |status, reason| Response::short(DocType::Certificates, status, reason, now);
    let all = cache.certs();
    let mut certs: Vec<&CachedCert> = if url == "/tor/keys/all" {
        all.iter().collect()
    } else if url == "/tor/keys/authority" {
        Vec::new()
    } else if let Some(list) = url.strip_prefix("/tor/keys/fp/") {
        hex_digests(list)
            .iter()
            .filter_map(|id| {
                all.iter()
                    .filter(|c| c.id() == id)
                    .max_by_key(|c| c.published())
            })
            .collect()
    } else if let Some(list) = url.strip_prefix("/tor/keys/sk/") {
        hex_digests(list)
            .iter()
            .filter_map(|sk| all.iter().find(|c| c.sk() == sk))
            .collect()
    } else if let Some(list) = url.strip_prefix("/tor/keys/fp-sk/") {
        let mut pairs: Vec<([u8; 20], [u8; 20])> = list
            .split('+')
            .filter_map(|p| {
                let (id, sk) = p.split_once('-')?;
                (id.len() == 40 && sk.len() == 40).then_some(())?;
                Some((digest160(id)?, digest160(sk)?))
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
            .iter()
            .filter_map(|(id, sk)| all.iter().find(|c| c.id() == id && c.sk() == sk))
            .collect()
    } else {
        return short(400, "Bad request");
    };
    if certs.is_empty() {
        return short(404, "Not found");
    }
    if let Some(ims) = ims {
        certs.retain(|c| c.published() >= ims);
        if certs.is_empty() {
            return short(304, "Not modified");
        }
    }
    Response::ok(
        DocType::Certificates,
        encoded(certs.iter().map(|c| Arc::clone(c.body())).collect(), enc),
        true,
        CacheLifetime::Expires(CERT_LIFETIME),
        "",
        now,
    )
}

/// `+`-separated hex SHA-1 digests, malformed ones skipped, sorted, each
/// once (C-tor `dir_split_resource_into_fingerprints` with `DSR_HEX |
/// DSR_SORT_UNIQ`).
fn hex_digests(list: &str) -> Vec<[u8; 20]> {
    let mut out: Vec<[u8; 20]> = list.split('+').filter_map(digest160).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A hex SHA-1 digest.
fn digest160(hex: &str) -> Option<[u8; 20]> {
    let mut d = [0_u8; 20];
    hex::decode_to_slice(hex, &mut d).ok().map(|()| d)
}
