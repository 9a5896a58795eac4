//! What the bootstrap makes of an answer: the HTTP response decoded, a
//! consensus (or a diff to one) checked and adopted, certificates and
//! microdescriptors added, and the source and the document's schedule
//! credited or blamed.

use std::collections::HashSet;
use std::time::SystemTime;

use tor_netdoc::doc::authcert::AuthCertKeyIds;
use tor_netdoc::doc::microdesc::MdDigest;

use crate::documents::{
    CheckedCert, CheckedMicrodesc, MAX_DOCUMENT_BYTES, VerifiedConsensus, parse_certs,
    parse_consensus_within, parse_microdescs, signatures_needed,
};
use crate::error::{DocError, DocKind};
use crate::fetch::diff;
use crate::fetch::http::parse_response;
use crate::netdir::NetDir;

use super::events::{DirEvent, RequestId};
use super::sources::DirSource;
use super::state::{DirBootstrap, Pending};
use super::timing::{self, CERT_WAIT, CLOCK_TOLERANCE, ClockSkew};

/// What became of a pending consensus when its signatures could be checked.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Still waiting for certificates.
    Waiting,
    /// Verified and in use.
    Adopted { source: Option<DirSource> },
    /// Refused (the `Rejected` event is out), and why.
    Refused {
        source: Option<DirSource>,
        reason: String,
    },
}

impl DirBootstrap {
    /// The raw HTTP response to a request (as read until its stream
    /// ended), or why the exchange failed (connection, circuit, timeout,
    /// too many bytes). The response is split and its body decoded here
    /// (dir-spec §4; compressed bodies under the document limit, a
    /// compression bomb refused); a 304 answer to a consensus request means
    /// "nothing newer" (C-tor's If-Modified-Since), which is not a failure.
    /// Then as [`Self::handle_response`].
    pub fn handle_http(&mut self, id: RequestId, result: Result<Vec<u8>, String>, now: SystemTime) {
        let Some(req) = self.in_flight.get(&id) else {
            return;
        };
        let (source, kind) = (req.source.clone(), req.kind);
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => return self.handle_response(id, Err(e), now),
        };
        let response = match parse_response(&bytes, MAX_DOCUMENT_BYTES) {
            Ok(r) => r,
            Err(e) => return self.handle_response(id, Err(e.to_string()), now),
        };
        if response.status == 304 {
            if kind == DocKind::Consensus {
                self.in_flight.remove(&id);
                self.not_newer(now);
                self.note_progress();
                return;
            }
            return self.handle_response(
                id,
                Err("HTTP 304 to a request without a date".into()),
                now,
            );
        }
        let body = match String::from_utf8(response.body) {
            Ok(body) => body,
            Err(_) => return self.handle_response(id, Err("body is not UTF-8".into()), now),
        };
        self.events.push_back(DirEvent::Fetched {
            source,
            kind,
            encoding: response.encoding,
            wire_bytes: bytes.len(),
            body_bytes: body.len(),
            diff: kind == DocKind::Consensus && diff::is_diff(&body),
        });
        self.handle_response(id, Ok(body), now);
    }

    /// The body of a request, or the reason it failed (connection refused,
    /// HTTP status other than 200, body over `max_bytes`, timeout).
    ///
    /// Only an answer that brings something new counts as a success of its
    /// source and resets the document's schedule: a consensus adopted, a
    /// certificate or microdescriptor asked for. Anything refused (bad
    /// signatures, other authorities, out of time, unparsable, a diff that
    /// does not apply, nothing asked for) is a failure of the source and of
    /// the schedule. A consensus no newer than the held one is neither: the
    /// next fetch waits for the next consensus' time (dir-spec §5.1).
    pub fn handle_response(
        &mut self,
        id: RequestId,
        result: Result<String, String>,
        now: SystemTime,
    ) {
        let Some(req) = self.in_flight.remove(&id) else {
            return;
        };
        match result {
            Err(error) => {
                // A failed md batch should not count against its digests.
                for d in &req.digests {
                    if let Some(n) = self.md_attempts.get_mut(d) {
                        *n = n.saturating_sub(1);
                    }
                }
                self.fail(&req.source, req.kind, error, now);
            }
            Ok(text) => match req.kind {
                DocKind::Consensus => self.consensus_answer(req.source, &text, now),
                DocKind::AuthorityCert => self.certs_answer(&req.source, &text, &req.certs, now),
                DocKind::Microdesc => self.mds_answer(&req.source, &text, &req.digests, now),
            },
        }
        self.flush_mds_if_idle();
        self.note_progress();
    }

    /// Add certificates not yet held; returns the key ids of those added.
    pub(super) fn add_certs(&mut self, certs: Vec<CheckedCert>) -> Vec<AuthCertKeyIds> {
        let mut added = Vec::new();
        for checked in certs {
            let ids = checked.cert.key_ids();
            if self.certs.iter().any(|c| c.key_ids() == ids) {
                continue;
            }
            self.certs.push(checked.cert);
            self.cert_texts.push(checked.text);
            added.push(ids);
        }
        added
    }

    /// Parse and check a consensus, and adopt it if its certificates are
    /// here. Up to [`CLOCK_TOLERANCE`] outside its validity is accepted
    /// (C-tor's reasonably live consensus); one no newer than the held one
    /// is [`DocError::Outdated`] (C-tor checks this before the signatures
    /// too: there is nothing to gain from checking them).
    pub(super) fn take_consensus(
        &mut self,
        text: &str,
        source: Option<DirSource>,
        now: SystemTime,
        store: bool,
    ) -> Result<Verdict, DocError> {
        let consensus = parse_consensus_within(text, &self.authority_ids, now, CLOCK_TOLERANCE)?;
        if let Some(dir) = &self.netdir
            && consensus.lifetime().valid_after <= dir.lifetime().valid_after
        {
            return Err(DocError::Outdated);
        }
        self.pending = Some(Pending {
            consensus,
            text: text.to_owned(),
            source,
            since: now,
            store,
        });
        Ok(self.try_verify(now))
    }

    /// Verify the pending consensus if enough certificates are here.
    fn try_verify(&mut self, now: SystemTime) -> Verdict {
        let Some(p) = self.pending.take() else {
            return Verdict::Waiting;
        };
        if !p
            .consensus
            .missing_certs(&self.certs, &self.authority_ids)
            .is_empty()
        {
            // Enough certificates may already be at hand for a majority
            // (the same count verify() requires).
            let usable = p.consensus.signers_with_certs(&self.certs);
            if usable < signatures_needed(self.authority_ids.len()) {
                self.pending = Some(p);
                return Verdict::Waiting;
            }
        }
        let source = p.source;
        match p
            .consensus
            .verify(&p.text, &self.certs, &self.authority_ids)
        {
            Ok(verified) => {
                self.adopt(verified, source.as_ref(), p.store, now);
                Verdict::Adopted { source }
            }
            Err(error) => {
                let reason = error.to_string();
                self.events.push_back(DirEvent::Rejected {
                    source: source.clone(),
                    error,
                });
                Verdict::Refused { source, reason }
            }
        }
    }

    fn adopt(
        &mut self,
        verified: VerifiedConsensus,
        source: Option<&DirSource>,
        store: bool,
        now: SystemTime,
    ) {
        let lifetime = verified.lifetime;
        if let Some(skew) = ClockSkew::of(&lifetime, now) {
            self.events.push_back(DirEvent::ClockSkew {
                source: source.cloned(),
                skew,
                lifetime,
            });
        }
        let text = store.then(|| verified.text.clone());
        let mut dir = NetDir::new(verified, self.netdir.as_ref());
        if let Some(cached) = self.cached_md_text.take() {
            let (good, _) = parse_microdescs(&cached, &dir.wanted_digests());
            dir.add_microdescs(good);
        }
        self.netdir = Some(dir);
        self.md_attempts.clear();
        self.update_caches();
        let refresh_at = timing::fetch_time(&lifetime, now, &mut self.rng);
        self.refresh_at = Some(refresh_at);
        self.events.push_back(DirEvent::NewConsensus {
            valid_after: lifetime.valid_after,
            refresh_at,
        });
        if let Some(text) = text {
            self.events.push_back(DirEvent::Store {
                kind: DocKind::Consensus,
                text,
            });
        }
        self.mds_dirty = true;
        self.flush_mds_if_idle();
    }

    /// Count a verdict against (or for) the consensus' source and the
    /// consensus schedule. A consensus from the cache counts for nothing.
    fn settle(&mut self, verdict: Verdict, now: SystemTime) {
        match verdict {
            Verdict::Waiting => {}
            Verdict::Adopted { source } => {
                if let Some(s) = source {
                    self.succeed(&s, DocKind::Consensus);
                }
            }
            Verdict::Refused { source, reason } => {
                if let Some(s) = source {
                    self.fail(&s, DocKind::Consensus, reason, now);
                }
            }
        }
    }

    /// A consensus that waited too long for its certificates (C-tor
    /// `DELAY_WHILE_FETCHING_CERTS`), or that fell outside the clock
    /// tolerance while waiting, is dropped: another is fetched.
    pub(super) fn expire_pending(&mut self, now: SystemTime) {
        let Some(p) = &self.pending else {
            return;
        };
        let waited_out = p.since.checked_add(CERT_WAIT).is_some_and(|t| t <= now);
        let too_old = ClockSkew::of(&p.consensus.lifetime(), now)
            .is_some_and(|s| matches!(s, ClockSkew::Ahead(_)) && !s.is_tolerated());
        if !(waited_out || too_old) {
            return;
        }
        let have = p.consensus.signers_with_certs(&self.certs);
        let source = p.source.clone();
        self.pending = None;
        self.events.push_back(DirEvent::Rejected {
            source: source.clone(),
            error: DocError::MissingCerts {
                have,
                needed: signatures_needed(self.authority_ids.len()),
            },
        });
        match source {
            Some(s) => self.fail(
                &s,
                DocKind::Consensus,
                "certificates never came".into(),
                now,
            ),
            None => {
                self.schedules.consensus.note_failure(now, &mut self.rng);
            }
        }
    }

    /// A consensus answer: a consensus, or a diff from the one we hold
    /// (applied, its result checked, then taken as a consensus). A diff
    /// that fails is refused and the next request asks for the whole
    /// consensus.
    fn consensus_answer(&mut self, source: DirSource, text: &str, now: SystemTime) {
        let full;
        let text = if diff::is_diff(text) {
            let applied = match &self.netdir {
                Some(dir) => diff::apply(&dir.consensus().text, text),
                None => Err(DocError::BadDiff {
                    detail: "a diff, but we hold no consensus".into(),
                }),
            };
            match applied {
                Ok(t) => {
                    full = t;
                    full.as_str()
                }
                Err(error) => {
                    self.no_diff_from = self.netdir.as_ref().map(|d| d.lifetime().valid_after);
                    return self.refuse_consensus(source, error, now);
                }
            }
        } else {
            text
        };
        match self.take_consensus(text, Some(source.clone()), now, true) {
            Ok(verdict) => self.settle(verdict, now),
            Err(DocError::Outdated) => {
                self.events.push_back(DirEvent::Rejected {
                    source: Some(source.clone()),
                    error: DocError::Outdated,
                });
                self.not_newer(now);
            }
            Err(error) => self.refuse_consensus(source, error, now),
        }
    }

    fn refuse_consensus(&mut self, source: DirSource, error: DocError, now: SystemTime) {
        let reason = error.to_string();
        self.events.push_back(DirEvent::Rejected {
            source: Some(source.clone()),
            error,
        });
        self.fail(&source, DocKind::Consensus, reason, now);
    }

    /// Nothing newer than the consensus held (an outdated one, or a 304):
    /// not a failure; the next fetch waits for the next consensus' time.
    fn not_newer(&mut self, now: SystemTime) {
        if let Some(dir) = &self.netdir {
            let at = timing::fetch_time_not_newer(&dir.lifetime(), now, &mut self.rng);
            self.refresh_at = Some(at);
        }
    }

    fn certs_answer(
        &mut self,
        source: &DirSource,
        text: &str,
        asked: &[AuthCertKeyIds],
        now: SystemTime,
    ) {
        let (good, bad) = parse_certs(text, &self.authority_ids, now);
        for error in bad {
            self.events.push_back(DirEvent::Rejected {
                source: Some(source.clone()),
                error,
            });
        }
        let added = self.add_certs(good);
        if !added.is_empty() {
            self.events.push_back(DirEvent::Store {
                kind: DocKind::AuthorityCert,
                text: self.cert_texts.concat(),
            });
        }
        if added.iter().any(|k| asked.contains(k)) {
            self.succeed(source, DocKind::AuthorityCert);
        } else {
            let error = "no certificate asked for in the answer".into();
            self.fail(source, DocKind::AuthorityCert, error, now);
        }
        let verdict = self.try_verify(now);
        self.settle(verdict, now);
    }

    fn mds_answer(&mut self, source: &DirSource, text: &str, asked: &[MdDigest], now: SystemTime) {
        let Some(dir) = &mut self.netdir else {
            return;
        };
        let wanted: HashSet<MdDigest> = asked.iter().copied().collect();
        let (good, bad): (Vec<CheckedMicrodesc>, Vec<DocError>) = parse_microdescs(text, &wanted);
        let added = dir.add_microdescs(good);
        if added > 0 {
            self.mds_dirty = true;
        }
        for error in bad {
            self.events.push_back(DirEvent::Rejected {
                source: Some(source.clone()),
                error,
            });
        }
        if added > 0 {
            self.succeed(source, DocKind::Microdesc);
        } else {
            let error = "no microdescriptor asked for in the answer".into();
            self.fail(source, DocKind::Microdesc, error, now);
        }
    }

    pub(super) fn flush_mds_if_idle(&mut self) {
        if self.mds_dirty && self.kind_in_flight(DocKind::Microdesc) == 0 {
            if let Some(dir) = &self.netdir {
                let mut texts: Vec<&str> = dir.microdescs().map(|m| m.text.as_str()).collect();
                texts.sort_unstable();
                if !texts.is_empty() {
                    self.events.push_back(DirEvent::Store {
                        kind: DocKind::Microdesc,
                        text: texts.concat(),
                    });
                }
            }
            self.mds_dirty = false;
        }
    }

    fn succeed(&mut self, source: &DirSource, kind: DocKind) {
        self.sources.mark_up(source);
        self.schedules.of(kind).note_success();
    }

    fn fail(&mut self, source: &DirSource, kind: DocKind, error: String, now: SystemTime) {
        self.sources.mark_down(source);
        let retry_at = self.schedules.of(kind).note_failure(now, &mut self.rng);
        self.events.push_back(DirEvent::FetchFailed {
            source: source.clone(),
            error,
            retry_at,
        });
    }
}
