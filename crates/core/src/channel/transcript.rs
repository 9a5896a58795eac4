//! The running digests of a link handshake that an AUTH0003 authenticator
//! signs (tor-spec §4.4.2: SLOG, "a SHA256 hash of all bytes sent from the
//! responder to the initiator as part of the negotiation up to and
//! including the AUTH_CHALLENGE cell", and CLOG, "of all bytes sent from
//! the initiator to the responder as part of the negotiation so far").
//!
//! Both sides must hash exactly the same bytes, so a [`Transcript`] takes
//! cells as they were on the wire: the bytes we encoded for what we send,
//! and for what we receive the framing the codec used (2-byte circuit ids
//! up to the first VERSIONS cell, 4-byte after; C-tor re-packs each cell
//! with the header it was read with, `or_handshake_state_record_var_cell`).
//! A side stops recording when the authenticator is built or checked, as
//! C-tor does: the responder's NETINFO and the initiator's AUTHENTICATE are
//! not part of either log.

use digest::Digest;
use tor_cell::chancell::CELL_DATA_LEN;
use tor_llcrypto::d::Sha256;

use super::codec::RawCell;

/// The SHA-256 of the cells one side sent during a handshake, until
/// [`close`](Self::close)d.
#[derive(Clone)]
pub(crate) struct Transcript {
    /// The running digest, `None` once closed.
    hasher: Option<Sha256>,
    /// The digest when it was closed.
    closed_at: [u8; 32],
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcript")
            .field("open", &self.hasher.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

impl Transcript {
    /// An empty, open transcript.
    pub(crate) fn new() -> Self {
        Transcript {
            hasher: Some(Sha256::new()),
            closed_at: [0; 32],
        }
    }

    /// Add bytes as sent (ignored once closed).
    pub(crate) fn record(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
    }

    /// Add a received cell as it was framed: with a 4-byte circuit id if
    /// `wide` (the link version was known when the codec framed it), else
    /// with a 2-byte one (tor-spec §3).
    pub(crate) fn record_raw(&mut self, raw: &RawCell, wide: bool) {
        let Some(h) = &mut self.hasher else {
            return;
        };
        if wide {
            h.update(raw.circ_id().to_be_bytes());
        } else {
            // Before negotiation the codec reads two bytes, so the id fits.
            h.update(u16::try_from(raw.circ_id()).unwrap_or(0).to_be_bytes());
        }
        h.update([raw.cmd().into()]);
        let body = raw.body();
        if raw.cmd().is_var_cell() {
            // The codec refuses bodies longer than 65535 bytes.
            h.update(u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
        } else if body.len() != CELL_DATA_LEN {
            // Cannot happen for a framed fixed cell; keep the digest honest
            // rather than guess.
            self.hasher = None;
            return;
        }
        h.update(body);
    }

    /// The digest of what was recorded until now (or until it was closed).
    pub(crate) fn digest(&self) -> [u8; 32] {
        match &self.hasher {
            Some(h) => h.clone().finalize().into(),
            None => self.closed_at,
        }
    }

    /// Stop recording; [`digest`](Self::digest) keeps its value.
    pub(crate) fn close(&mut self) {
        self.closed_at = self.digest();
        self.hasher = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::super::codec::CellCodec;
    use super::*;
    use tor_cell::chancell::ChanCmd;

    /// Framed cells hash to the bytes they were framed from, with either
    /// circuit id width.
    #[test]
    fn raw_cells_hash_as_on_the_wire() {
        // Before VERSIONS: VPADDING and VERSIONS with 2-byte ids.
        let pre = hex::decode("0000800003aabbcc000007000400040005").unwrap();
        // After: a 4-byte-id VPADDING, a fixed PADDING cell, and an unknown
        // variable-length command.
        let mut post = hex::decode("00000000800002ffee").unwrap();
        post.extend_from_slice(&[0, 0, 0, 0, 0]);
        post.extend_from_slice(&[7; CELL_DATA_LEN]);
        post.extend(hex::decode("00000000c9000101").unwrap());

        let mut codec = CellCodec::new();
        codec.handle_bytes(&pre).unwrap();
        codec.handle_bytes(&post).unwrap();
        let mut t = Transcript::new();
        let mut n = 0;
        while let Some(raw) = codec.poll_raw_cell().unwrap() {
            let wide = codec.link_version().is_some();
            t.record_raw(&raw, wide);
            if raw.cmd() == ChanCmd::VERSIONS {
                codec.set_link_version(4).unwrap();
            }
            n += 1;
        }
        assert_eq!(n, 5);
        let mut direct = Transcript::new();
        direct.record(&pre);
        direct.record(&post);
        assert_eq!(t.digest(), direct.digest());
    }

    #[test]
    fn close_freezes_the_digest() {
        let mut t = Transcript::new();
        t.record(b"abc");
        let d = t.digest();
        assert_eq!(d, <[u8; 32]>::from(Sha256::digest(b"abc")));
        t.close();
        t.record(b"more");
        assert_eq!(t.digest(), d);
        assert_eq!(
            Transcript::new().digest(),
            <[u8; 32]>::from(Sha256::digest(b""))
        );
    }
}
