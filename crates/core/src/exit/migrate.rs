//! Live stream migration, exit side (Braid proposal 001 §4): a stream
//! leaves one circuit's (or set's) [`ExitStreamMap`] for another's at the
//! same exit, its destination untouched.
//!
//! One map cannot see another, so what crosses maps goes out as a
//! [`MigrateRequest`] ([`ExitStreamMap::take_migrate_requests`]) that the
//! owner of the maps (the relay node; tests) carries out with the calls
//! here, and the stream's tokens live in one [`MigrateTokens`] table. The
//! rules are all in this module:
//!
//! - §4.1: a STREAM_REGISTER on a connect stream asks for a token
//!   ([`MigrateRequest::WantToken`]); the owner issues one (at most
//!   [`MAX_TOKENS`]) and STREAM_TOKEN goes after CONNECTED. A token is
//!   forgotten when its stream ends ([`MigrateRequest::Forget`]).
//! - §4.2 step 2: a MIGRATE on a new id B ([`MigrateRequest::Migrate`]) is
//!   checked ([`ExitStreamMap::migrate_check`]: the stream is open and not
//!   migrating, RECV_BYTES ≤ what we sent on A, SENT_BYTES ≥ what we
//!   received), else answered END on B with A untouched. Then the stream
//!   moves ([`ExitStreamMap::migrate_take`], [`ExitStreamMap::migrate_put`]):
//!   MIGRATED goes on B, the destination's new bytes go on B, and a
//!   MIGRATE_MARK on A after the last byte that went there. A keeps a
//!   *tail* for the old id until the client's MARK.
//! - §4.2 step 4: the client's bytes still arriving on A go ahead of B's
//!   ([`MigrateRequest::Forward`]); B's bytes are held, counted by B's flow
//!   control, until the client's MARK on A ([`MigrateRequest::SourceDone`]).
//! - §4.3: our END other than DONE on the new id, the client's END on the
//!   old id, or the tunnel of either going, before both MARKs, aborts the
//!   stream: the other id gets END MISC ([`MigrateRequest::Abort`]). The
//!   client's END on the new id takes effect after the old id's bytes (a
//!   client's END always says MISC, tor-spec §6.3: its reason cannot tell
//!   an abort, which ends the old id too); a MARK without a migration, or a
//!   second MIGRATE for a stream migrating, is END TORPROTOCOL on that id;
//!   a MIGRATE on a circuit where we are the client's first hop is END
//!   TORPROTOCOL (the relay node also refuses it on a circuit that goes on
//!   past us); at most [`MAX_IN_PROGRESS`] migrations in progress per
//!   tunnel and [`MAX_PER_SECOND`] a second, else END RESOURCELIMIT.

use std::collections::HashMap;
use std::time::Instant;

use rand::CryptoRng;
use tor_cell::relaycell::msg::EndReason;

use crate::cc::params::{STREAMWINDOW_INCREMENT, STREAMWINDOW_START};
use crate::cc::{EdgeKind, StreamFlowCtrl};
use crate::ids::{EdgeKey, StreamId};
use crate::stream::StreamFlowMode;
use crate::stream::buffer::ByteQueue;
use crate::stream::migrate_wire::{Migrate, MigrateMsg, Migrated, StreamToken};

use super::map::ExitStreamMap;
use super::stream::{ExitStream, Phase};

/// Tokens an exit holds at once (proposal 001 §4.1); a REGISTER beyond
/// them gets no token.
pub const MAX_TOKENS: usize = 4096;

/// Migrations in progress on one tunnel (proposal 001 §4.3).
pub const MAX_IN_PROGRESS: usize = 64;

/// Migrations begun on one tunnel in any second (proposal 001 §4.3).
pub const MAX_PER_SECOND: usize = 16;

/// Where a stream is: its circuit or set, and its id there.
pub type StreamAt = (EdgeKey, StreamId);

/// What a map asks its owner to do with other maps or the token table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateRequest {
    /// STREAM_REGISTER on stream `id`: issue it a token
    /// ([`MigrateTokens::issue`], then [`ExitStreamMap::set_token`]).
    WantToken {
        /// The stream.
        id: StreamId,
    },
    /// A stream with this token ended: forget it.
    Forget {
        /// The token.
        token: StreamToken,
    },
    /// RELAY_BRAID_MIGRATE on new id `id`.
    Migrate {
        /// The new id.
        id: StreamId,
        /// What it says.
        msg: Migrate,
    },
    /// Client bytes for the destination that came on a migrated stream's
    /// old id: they go before anything of its new id's
    /// ([`ExitStreamMap::migrate_forward`]).
    Forward {
        /// Where the stream is now.
        to: StreamAt,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The client's MARK came on the old id: the stream now at `to` has
    /// every byte of it ([`ExitStreamMap::migrate_joined`]).
    SourceDone {
        /// Where the stream is now.
        to: StreamAt,
    },
    /// The migration failed on this side: end the other id with END MISC
    /// ([`ExitStreamMap::migrate_abort`]).
    Abort {
        /// The other id.
        to: StreamAt,
    },
}

/// The exit's tokens (proposal 001 §4.1): where each stream is, at most
/// [`MAX_TOKENS`].
#[derive(Debug, Default)]
pub struct MigrateTokens {
    /// By token.
    at: HashMap<StreamToken, StreamAt>,
}

impl MigrateTokens {
    /// A fresh token for the stream at `at`, unless [`MAX_TOKENS`] are
    /// held.
    pub fn issue<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        at: StreamAt,
    ) -> Option<StreamToken> {
        if self.at.len() >= MAX_TOKENS {
            return None;
        }
        // 256 random bits do not collide; a second draw costs nothing.
        for _ in 0..2 {
            let t = StreamToken::random(rng);
            if !self.at.contains_key(&t) {
                self.at.insert(t.clone(), at);
                return Some(t);
            }
        }
        None
    }

    /// Where the stream with `token` is.
    pub fn find(&self, token: &StreamToken) -> Option<StreamAt> {
        self.at.get(token).copied()
    }

    /// The stream with `token` moved to `at`.
    pub fn moved(&mut self, token: &StreamToken, at: StreamAt) {
        if let Some(v) = self.at.get_mut(token) {
            *v = at;
        }
    }

    /// Forget `token`.
    pub fn forget(&mut self, token: &StreamToken) {
        self.at.remove(token);
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// A stream's migration state at the exit.
#[derive(Debug, Default)]
pub(crate) struct ExitMig {
    /// The client sent STREAM_REGISTER.
    pub(crate) registered: bool,
    /// Its token.
    pub(crate) token: Option<StreamToken>,
    /// STREAM_TOKEN waits for CONNECTED to go first.
    pub(crate) token_to_send: bool,
    /// It came here by migration and its old id's bytes are not all in:
    /// where the old id is, and the new id's bytes held meanwhile.
    pub(crate) join: Option<Join>,
    /// Bytes at the front of `to_dest` that came from the old id (counted
    /// by its flow control, not ours).
    pub(crate) foreign: usize,
    /// The client said it was done writing (MIGRATE's FLAGS bit 0).
    pub(crate) client_done: bool,
}

/// A migrated stream waiting for its old id's last bytes.
#[derive(Debug)]
pub(crate) struct Join {
    /// The old id.
    pub(crate) from: StreamAt,
    /// This id's bytes, held until the old id's MARK (§4.2 step 4).
    pub(crate) held: ByteQueue,
    /// The client's END on this id, applied after the old id's bytes.
    pub(crate) end: Option<EndReason>,
}

/// What is left of a stream on its old id after it moved: the client's
/// bytes still on their way, its MARK, and ours.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    /// Where the stream is now.
    pub(crate) to: StreamAt,
    /// The client's SENT_BYTES: every byte it sent on this id.
    pub(crate) expect: u64,
    /// Bytes received on this id so far.
    pub(crate) received: u64,
    /// Our MARK waits to go.
    pub(crate) mark_to_send: bool,
    /// The client's MARK came.
    pub(crate) peer_mark: bool,
    /// END MISC to send (aborted), then the tail goes.
    pub(crate) end_to_send: bool,
    /// Stream SENDMEs the client may still have in flight (fixed windows).
    pub(crate) sendmes_in_flight: u32,
    /// In the map's control queue.
    pub(crate) queued: bool,
}

/// A stream taken out of its old map, for its new one.
#[derive(Debug)]
pub struct MovedStream {
    /// The stream.
    stream: Box<ExitStream>,
    /// The figures for MIGRATED.
    figures: Migrated,
    /// The old id's flow control bound on bytes for the destination.
    old_limit: usize,
}

impl ExitStreamMap {
    // ------------------------------------------------------------------
    // The owner's calls
    // ------------------------------------------------------------------

    /// What this map asks of its owner since the last call.
    pub fn take_migrate_requests(&mut self) -> Vec<MigrateRequest> {
        self.mig_requests.drain(..).collect()
    }

    /// True if [`take_migrate_requests`](Self::take_migrate_requests) has
    /// something.
    pub fn has_migrate_requests(&self) -> bool {
        !self.mig_requests.is_empty()
    }

    /// Give stream `id` its token (after [`MigrateRequest::WantToken`]):
    /// STREAM_TOKEN goes after CONNECTED. False if the stream is gone
    /// (forget the token).
    pub fn set_token(&mut self, id: StreamId, token: StreamToken) -> bool {
        let Some(s) = self.streams.get_mut(&id) else {
            return false;
        };
        if s.phase == Phase::Closed {
            return false;
        }
        let Some(m) = s.mig.as_mut() else {
            return false;
        };
        m.token = Some(token);
        m.token_to_send = true;
        self.refresh(id);
        true
    }

    /// May stream `id`, named by a MIGRATE `msg`, move (§4.2 step 2)? The
    /// END reason for the new id if not: MISC for no such stream (we do
    /// not say whether the token existed), TORPROTOCOL for a stream
    /// already migrating or counts that cannot be.
    pub fn migrate_check(&self, id: StreamId, msg: &Migrate) -> Result<(), EndReason> {
        let Some(s) = self.streams.get(&id) else {
            return Err(EndReason::MISC);
        };
        let Some(m) = s.mig.as_deref() else {
            return Err(EndReason::MISC);
        };
        if m.token.as_ref() != Some(&msg.token) || s.phase != Phase::Open || !s.visible() {
            return Err(EndReason::MISC);
        }
        if m.join.is_some() {
            // §4.3: a second MIGRATE for a stream already migrating.
            return Err(EndReason::TORPROTOCOL);
        }
        // §4.2 step 2; and what the client says is still on its way must
        // fit in the old id's flow control (our bound on what we hold).
        let in_flight = msg.sent_bytes.saturating_sub(s.bytes_in);
        let limit = u64::try_from(self.to_dest_limit).unwrap_or(u64::MAX);
        if msg.recv_bytes > s.bytes_out || msg.sent_bytes < s.bytes_in || in_flight > limit {
            return Err(EndReason::TORPROTOCOL);
        }
        Ok(())
    }

    /// Take stream `id` out for `to` (after [`Self::migrate_check`]): a
    /// tail stays on `id` until the client's MARK, and ours goes after the
    /// last byte we sent here. `client_sent` is MIGRATE's SENT_BYTES. The
    /// driver is told with [`ExitEvent::Moved`](super::ExitEvent::Moved), which the owner
    /// gives.
    pub fn migrate_take(
        &mut self,
        id: StreamId,
        to: StreamAt,
        client_sent: u64,
    ) -> Option<MovedStream> {
        let s = self.streams.get(&id)?;
        let sendmes_in_flight = match &s.flow {
            StreamFlowCtrl::Window { deliver, .. } => {
                // The SENDMEs for what the client sent here that it has
                // not seen yet (tor-spec §7.4): at most one per 50 cells
                // of its window.
                STREAMWINDOW_START.saturating_sub(deliver.window()) / STREAMWINDOW_INCREMENT + 1
            }
            _ => 0,
        };
        let received = s.bytes_in;
        let figures = Migrated {
            recv_bytes: s.bytes_in,
            sent_bytes: s.bytes_out,
            done: s.dest_eof,
        };
        let mut stream = Box::new(self.detach(id)?);
        // Its token moves with it; its old id's accounting is the tail's.
        stream.queued = Default::default();
        self.tails.insert(
            id,
            Tail {
                to,
                expect: client_sent,
                received,
                mark_to_send: true,
                peer_mark: false,
                end_to_send: false,
                sendmes_in_flight,
                queued: false,
            },
        );
        self.queue_tail(id);
        Some(MovedStream {
            stream,
            figures,
            old_limit: self.to_dest_limit,
        })
    }

    /// True if new id `id` is free for a migrated stream.
    pub fn can_take_migrated(&self, id: StreamId) -> bool {
        !self.streams.contains_key(&id)
            && !self.tails.contains_key(&id)
            && !self.refusals.iter().any(|(r, _)| *r == id)
            && !self.circuit_closed
    }

    /// Put `moved` on new id `id`, from `from` (§4.2 step 2): MIGRATED goes
    /// first, then the destination's bytes; the client's bytes on this id
    /// are held until the old id's last ones are in. `client_done` is
    /// MIGRATE's FLAGS bit 0. The flow control of this id starts afresh.
    pub fn migrate_put(
        &mut self,
        id: StreamId,
        from: StreamAt,
        moved: MovedStream,
        client_done: bool,
        now: Instant,
    ) {
        let MovedStream {
            mut stream,
            figures,
            old_limit,
        } = moved;
        let s = stream.as_mut();
        s.touch(now);
        s.flow = match &self.mode {
            StreamFlowMode::Windowed => StreamFlowCtrl::windowed(),
            StreamFlowMode::XonXoff { params, onion } => {
                StreamFlowCtrl::xon_xoff(params, EdgeKind::Exit, *onion)
            }
        };
        s.pacer = None;
        s.signals.clear();
        s.sendmes = 0;
        s.deadline = None;
        s.bytes_in = 0;
        s.bytes_out = 0;
        // The old id's unread bytes and what is still on its way fit in
        // its bound; this id's in ours.
        let mut to_dest = ByteQueue::new(old_limit.saturating_add(self.to_dest_limit));
        to_dest.push(&s.to_dest.take_all());
        s.to_dest = to_dest;
        let mut from_dest = ByteQueue::new(self.cfg.dest_buffer.max(s.from_dest.len()));
        from_dest.push(&s.from_dest.take_all());
        s.from_dest = from_dest;
        s.reply = Some(MigrateMsg::Migrated(figures).to_msg());
        s.events = Default::default();
        s.events.readable = !s.to_dest.is_empty();
        s.want_writable = !s.dest_eof;
        let foreign = s.to_dest.len();
        let m = s.mig.get_or_insert_with(Default::default);
        m.foreign = foreign;
        m.client_done = client_done;
        m.join = Some(Join {
            from,
            held: ByteQueue::new(self.to_dest_limit),
            end: None,
        });
        self.streams.insert(id, *stream);
        self.half.remove(id);
        self.mig_recent.push_back(now);
        self.refresh(id);
    }

    /// Client bytes from the old id of the stream on `id` (§4.2 step 4):
    /// before anything of this id's. More than the old id's flow control
    /// allowed aborts the stream.
    pub fn migrate_forward(&mut self, id: StreamId, bytes: &[u8]) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.phase == Phase::Closed {
            // Over already: dropped, as after any END.
            return;
        }
        let n = s.to_dest.push(bytes);
        if let Some(m) = s.mig.as_mut() {
            m.foreign = m.foreign.saturating_add(n);
        }
        if n < bytes.len() {
            self.stats.violations += 1;
            self.close_migrated(id, EndReason::TORPROTOCOL);
            return;
        }
        if s.visible() && n > 0 {
            s.events.readable = true;
        }
        self.refresh(id);
    }

    /// The old id of the stream on `id` is done (the client's MARK came):
    /// this id's held bytes follow its last ones, and a deferred END DONE
    /// applies.
    pub fn migrate_joined(&mut self, id: StreamId, now: Instant) {
        let flush = self.cfg.flush_timeout;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(join) = s.mig.as_mut().and_then(|m| m.join.take()) else {
            return;
        };
        let mut held = join.held;
        let held_bytes = held.take_all();
        if s.phase != Phase::Closed {
            let room = s.to_dest.free();
            if room < held_bytes.len() {
                let limit = s.to_dest.limit();
                s.to_dest = {
                    let mut q = ByteQueue::new(limit.saturating_add(held_bytes.len() - room));
                    q.push(&s.to_dest.take_all());
                    q
                };
            }
            s.to_dest.push(&held_bytes);
            if s.visible() && !s.to_dest.is_empty() {
                s.events.readable = true;
            }
            if let Some(reason) = join.end {
                s.client_end(reason, now.checked_add(flush));
            }
        }
        self.refresh(id);
    }

    /// End the stream or the tail on `id` for a migration that failed on
    /// the other side: END MISC (§4.3).
    pub fn migrate_abort(&mut self, id: StreamId) {
        if let Some(t) = self.tails.get_mut(&id) {
            if !t.peer_mark || t.mark_to_send {
                t.end_to_send = true;
                t.mark_to_send = false;
            }
            self.queue_tail(id);
            return;
        }
        if let Some(m) = self.streams.get_mut(&id).and_then(|s| s.mig.as_mut()) {
            // The other side is gone already.
            m.join = None;
        }
        self.close_migrated(id, EndReason::MISC);
    }

    /// Tails of migrated streams on this map.
    pub fn migration_tails(&self) -> usize {
        self.tails.len()
    }

    /// Migrations in progress into this map (held new ids).
    pub fn migrations_in_progress(&self) -> usize {
        self.streams
            .values()
            .filter(|s| s.mig.as_ref().is_some_and(|m| m.join.is_some()))
            .count()
    }
}

/// What holds the maps of an exit, by edge, for [`carry_out`].
pub trait ExitMaps {
    /// The map of `edge`, if it has one.
    fn map_mut(&mut self, edge: EdgeKey) -> Option<&mut ExitStreamMap>;
}

/// What [`carry_out`] did that its caller must act on.
#[derive(Debug, Default)]
pub struct CarriedOut {
    /// Maps that changed: drive them (their cells, events, requests).
    pub touched: Vec<EdgeKey>,
    /// Streams that moved, old place and new: tell the driver
    /// ([`ExitEvent::Moved`](super::ExitEvent::Moved)) before any event
    /// of the new place.
    pub moved: Vec<(StreamAt, StreamAt)>,
}

/// Carry out `request` of `edge`'s map, with the exit's `tokens` (new ones
/// drawn from `rng`).
pub fn carry_out<M: ExitMaps + ?Sized, R: CryptoRng + ?Sized>(
    maps: &mut M,
    tokens: &mut MigrateTokens,
    rng: &mut R,
    edge: EdgeKey,
    request: MigrateRequest,
    now: Instant,
    out: &mut CarriedOut,
) {
    match request {
        MigrateRequest::WantToken { id } => {
            let Some(token) = tokens.issue(rng, (edge, id)) else {
                // At the limit: no token, the stream is not migratable.
                return;
            };
            let given = maps
                .map_mut(edge)
                .is_some_and(|m| m.set_token(id, token.clone()));
            if !given {
                tokens.forget(&token);
            }
            out.touched.push(edge);
        }
        MigrateRequest::Forget { token } => tokens.forget(&token),
        MigrateRequest::Migrate { id, msg } => {
            out.touched.push(edge);
            if !maps.map_mut(edge).is_some_and(|m| m.can_take_migrated(id)) {
                // The id was taken meanwhile: nothing to answer on it.
                return;
            }
            // §4.2 step 2: the stream, by its token; the exit does not say
            // whether the token ever existed.
            let checked = tokens
                .find(&msg.token)
                .ok_or(EndReason::MISC)
                .and_then(|from| {
                    maps.map_mut(from.0)
                        .ok_or(EndReason::MISC)?
                        .migrate_check(from.1, &msg)
                        .map(|()| from)
                });
            let from = match checked {
                Ok(from) => from,
                Err(reason) => {
                    if let Some(m) = maps.map_mut(edge) {
                        m.refuse_migrate(id, reason, now);
                    }
                    return;
                }
            };
            let Some(moved) = maps
                .map_mut(from.0)
                .and_then(|m| m.migrate_take(from.1, (edge, id), msg.sent_bytes))
            else {
                return;
            };
            out.moved.push((from, (edge, id)));
            if let Some(m) = maps.map_mut(edge) {
                m.migrate_put(id, from, moved, msg.done, now);
            }
            tokens.moved(&msg.token, (edge, id));
            out.touched.push(from.0);
        }
        MigrateRequest::Forward { to, bytes } => {
            if let Some(m) = maps.map_mut(to.0) {
                m.migrate_forward(to.1, &bytes);
            }
            out.touched.push(to.0);
        }
        MigrateRequest::SourceDone { to } => {
            if let Some(m) = maps.map_mut(to.0) {
                m.migrate_joined(to.1, now);
            }
            out.touched.push(to.0);
        }
        MigrateRequest::Abort { to } => {
            if let Some(m) = maps.map_mut(to.0) {
                m.migrate_abort(to.1);
            }
            out.touched.push(to.0);
        }
    }
}
