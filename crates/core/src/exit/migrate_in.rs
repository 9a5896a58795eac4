//! The messages of live stream migration as an exit map receives them
//! (Braid proposal 001 §4), the old ids' tails, and the map's bookkeeping
//! of migrated streams. The overview is [`super::migrate`]'s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::msg::{AnyRelayMsg, EndReason};

use crate::cc::params::STREAMWINDOW_START;
use crate::ids::StreamId;
use crate::stream::half_closed::HalfClosed;
use crate::stream::migrate_wire::{Migrate, MigrateMsg};

use super::error::ExitError;
use super::map::{ExitStreamMap, end_msg};
use super::migrate::{MAX_IN_PROGRESS, MAX_PER_SECOND, MigrateRequest};
use super::stream::{ExitStream, Kind, Phase};

impl ExitStreamMap {
    // ------------------------------------------------------------------
    // Inbound
    // ------------------------------------------------------------------

    /// One of proposal 001 §4's messages on `id`.
    pub(crate) fn on_migrate_msg(
        &mut self,
        id: StreamId,
        msg: &AnyRelayMsg,
        now: Instant,
    ) -> Result<(), ExitError> {
        let cmd = tor_cell::relaycell::RelayMsg::cmd(msg);
        let parsed = match MigrateMsg::parse(msg) {
            Some(Ok(m)) => m,
            Some(Err(_)) | None => return self.migrate_violation(id, cmd, "malformed", now),
        };
        match parsed {
            MigrateMsg::Register => {
                let Some(s) = self.streams.get_mut(&id) else {
                    self.stats.dropped_invalid += 1;
                    return Ok(());
                };
                let ok = s.kind == Kind::Connect
                    && s.phase != Phase::Closed
                    && s.mig.as_ref().is_none_or(|m| !m.registered);
                if !ok {
                    self.stats.dropped_invalid += 1;
                    return Ok(());
                }
                s.mig.get_or_insert_with(Default::default).registered = true;
                self.mig_requests
                    .push_back(MigrateRequest::WantToken { id });
                Ok(())
            }
            MigrateMsg::Migrate(m) => self.on_migrate(id, cmd, m, now),
            MigrateMsg::Mark => {
                if self.tails.get(&id).is_some_and(|t| !t.peer_mark) {
                    return self.tail_mark(id);
                }
                self.migrate_violation(id, cmd, "MIGRATE_MARK without a migration in progress", now)
            }
            MigrateMsg::Token(_) | MigrateMsg::Migrated(_) => {
                self.migrate_violation(id, cmd, "only an exit sends STREAM_TOKEN and MIGRATED", now)
            }
        }
    }

    /// A MIGRATE on new id `id`.
    fn on_migrate(
        &mut self,
        id: StreamId,
        cmd: RelayCmd,
        m: Migrate,
        now: Instant,
    ) -> Result<(), ExitError> {
        if let Some(s) = self.streams.get_mut(&id) {
            s.touch(now);
            if s.phase != Phase::Closed {
                // The client opened an id it is using: end that stream.
                let linger = super::map::linger(&self.mode, &self.cfg, now);
                s.close_local(
                    EndReason::TORPROTOCOL,
                    end_msg(EndReason::TORPROTOCOL),
                    linger,
                );
                self.refresh(id);
                return Err(ExitError::StreamInUse { id, cmd });
            }
            if !s.wire_done() {
                return Err(ExitError::StreamInUse { id, cmd });
            }
            self.replace_closed(id);
        } else if self.tails.contains_key(&id) || self.refusals.iter().any(|(r, _)| *r == id) {
            return Err(ExitError::StreamInUse { id, cmd });
        }
        self.half.remove(id);
        if self.cfg.client_first_hop {
            // §4.3: only where a BEGIN could be.
            self.refuse_migrate(id, EndReason::TORPROTOCOL, now);
            return Err(ExitError::Migration {
                id,
                why: "a MIGRATE where we are the client's first hop",
            });
        }
        while self
            .mig_recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.mig_recent.pop_front();
        }
        let busy = self.migrations_in_progress() >= MAX_IN_PROGRESS
            || self.mig_recent.len() >= MAX_PER_SECOND
            || self.streams.len() + self.orphans.len() >= self.cfg.max_streams;
        if busy {
            self.refuse_migrate(id, EndReason::RESOURCELIMIT, now);
            return Err(ExitError::TooManyMigrations { id });
        }
        self.mig_requests
            .push_back(MigrateRequest::Migrate { id, msg: m });
        Ok(())
    }

    /// Refuse the MIGRATE on `id` with END `reason` (§4.2 step 2, §4.3).
    pub fn refuse_migrate(&mut self, id: StreamId, reason: EndReason, now: Instant) {
        if self
            .answer_at_once_migrate(id, end_msg(reason), now)
            .is_err()
        {
            self.stats.dropped_invalid += 1;
        }
    }

    /// A message §4 forbids on `id`: a live stream there ends with END
    /// TORPROTOCOL; otherwise it is dropped.
    fn migrate_violation(
        &mut self,
        id: StreamId,
        _cmd: RelayCmd,
        why: &'static str,
        now: Instant,
    ) -> Result<(), ExitError> {
        let linger = super::map::linger(&self.mode, &self.cfg, now);
        match self.streams.get_mut(&id) {
            Some(s) if s.phase != Phase::Closed => {
                s.close_local(
                    EndReason::TORPROTOCOL,
                    end_msg(EndReason::TORPROTOCOL),
                    linger,
                );
                self.refresh(id);
                Err(ExitError::Migration { id, why })
            }
            _ => {
                self.stats.dropped_invalid += 1;
                Ok(())
            }
        }
    }

    /// A message on a tail's id (the old id of a migrated stream).
    pub(crate) fn tail_msg(&mut self, id: StreamId, msg: AnyRelayMsg) -> Result<(), ExitError> {
        let Some(t) = self.tails.get_mut(&id) else {
            return Ok(());
        };
        match msg {
            AnyRelayMsg::Data(d) => {
                let len = u64::try_from(d.as_ref().len()).unwrap_or(u64::MAX);
                t.received = t.received.saturating_add(len);
                if t.peer_mark || t.received > t.expect {
                    return self.tail_violation(id, "more DATA on the old stream than SENT_BYTES");
                }
                let to = t.to;
                self.mig_requests.push_back(MigrateRequest::Forward {
                    to,
                    bytes: d.as_ref().to_vec(),
                });
                Ok(())
            }
            AnyRelayMsg::End(_) => {
                if t.peer_mark {
                    self.stats.dropped_invalid += 1;
                    return Ok(());
                }
                // §4.3: the client gave the stream up on its old id.
                let to = t.to;
                self.mig_requests.push_back(MigrateRequest::Abort { to });
                self.remove_tail(id);
                Ok(())
            }
            AnyRelayMsg::Xon(_) | AnyRelayMsg::Xoff(_) | AnyRelayMsg::Sendme(_) => {
                // Flow control of a direction that has nothing left here.
                self.stats.dropped_closed += 1;
                Ok(())
            }
            _ => {
                self.stats.dropped_invalid += 1;
                Ok(())
            }
        }
    }

    /// The client's MARK on tail `id`.
    fn tail_mark(&mut self, id: StreamId) -> Result<(), ExitError> {
        let Some(t) = self.tails.get_mut(&id) else {
            return Ok(());
        };
        if t.received != t.expect {
            return self.tail_violation(id, "MIGRATE_MARK before SENT_BYTES came");
        }
        t.peer_mark = true;
        let to = t.to;
        self.mig_requests
            .push_back(MigrateRequest::SourceDone { to });
        self.queue_tail(id);
        Ok(())
    }

    /// The client broke §4.2 on tail `id`: END TORPROTOCOL there, and the
    /// stream is aborted.
    fn tail_violation(&mut self, id: StreamId, why: &'static str) -> Result<(), ExitError> {
        if let Some(t) = self.tails.get_mut(&id) {
            t.end_to_send = true;
            t.mark_to_send = false;
            let to = t.to;
            self.mig_requests.push_back(MigrateRequest::Abort { to });
        }
        self.stats.violations += 1;
        self.queue_tail(id);
        Err(ExitError::Migration { id, why })
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// Put tail `id` in the control queue if it has something to send,
    /// and drop it once done.
    pub(crate) fn queue_tail(&mut self, id: StreamId) {
        let Some(t) = self.tails.get_mut(&id) else {
            return;
        };
        if t.mark_to_send || t.end_to_send {
            if !t.queued {
                t.queued = true;
                self.ctrl_q.push_back(id);
            }
            return;
        }
        if t.peer_mark {
            // Both MARKs: the old id is closed without an END.
            self.remove_tail(id);
        }
    }

    /// Tail `id`'s next message: END MISC (and it goes), or our MARK.
    pub(crate) fn tail_control(&mut self, id: StreamId) -> Option<AnyRelayMsg> {
        let t = self.tails.get_mut(&id)?;
        t.queued = false;
        if t.end_to_send {
            self.tails.remove(&id);
            // Nothing more may come but what crossed our END.
            let hc = HalfClosed::after_end_windowed(false, false, STREAMWINDOW_START, 0);
            self.half.insert(id, hc);
            return Some(end_msg(EndReason::MISC));
        }
        if t.mark_to_send {
            t.mark_to_send = false;
            self.queue_tail(id);
            return Some(MigrateMsg::Mark.to_msg());
        }
        None
    }

    /// Forget tail `id`, keeping an account of the flow control cells the
    /// client may still have in flight.
    fn remove_tail(&mut self, id: StreamId) {
        let Some(t) = self.tails.remove(&id) else {
            return;
        };
        if t.queued {
            self.ctrl_q.retain(|x| *x != id);
        }
        let cc_until = self
            .mig_now
            .and_then(|now| super::map::linger(&self.mode, &self.cfg, now));
        let sendmes = if self.mode.is_cc() {
            0
        } else {
            t.sendmes_in_flight
        };
        self.half
            .insert(id, HalfClosed::after_migration(cc_until, sendmes));
    }

    /// The circuit is gone: tails whose client MARK never came abort their
    /// stream (§4.3: the bytes the old id owed are lost).
    pub(crate) fn tails_circuit_closed(&mut self) {
        let tails = &self.tails;
        self.ctrl_q.retain(|id| !tails.contains_key(id));
        for (_, t) in self.tails.drain() {
            if !t.peer_mark {
                self.mig_requests
                    .push_back(MigrateRequest::Abort { to: t.to });
            }
        }
    }

    /// End migrated stream `id` from our side with `reason`.
    pub(crate) fn close_migrated(&mut self, id: StreamId, reason: EndReason) {
        let linger = self
            .streams
            .get(&id)
            .and_then(|s| super::map::linger(&self.mode, &self.cfg, s.last_now));
        if let Some(s) = self.streams.get_mut(&id) {
            s.close_local(reason, end_msg(reason), linger);
        }
        self.refresh(id);
    }

    /// After a change to stream `s`: a stream that came by migration and
    /// ended before its old id's bytes were all in aborts the old id; an
    /// ended stream forgets its token.
    pub(crate) fn migrate_refresh(requests: &mut VecDeque<MigrateRequest>, s: &mut ExitStream) {
        let Some(m) = s.mig.as_mut() else {
            return;
        };
        if s.phase != Phase::Closed {
            return;
        }
        if let Some(j) = m.join.take() {
            // §4.3: ended before the old id's bytes were in. END DONE (the
            // destination finished) leaves the old id to its MARK.
            let done = s.end.is_some_and(|(r, _)| r == EndReason::DONE);
            if !done {
                requests.push_back(MigrateRequest::Abort { to: j.from });
            }
        }
        m.token_to_send = false;
        if let Some(token) = m.token.take() {
            requests.push_back(MigrateRequest::Forget { token });
        }
    }

    /// DATA on a stream that came by migration, before its old id's last
    /// bytes: held. Returns false if the stream is not waiting.
    pub(crate) fn hold_joining(s: &mut ExitStream, bytes: &[u8]) -> Option<usize> {
        let j = s.mig.as_mut()?.join.as_mut()?;
        Some(j.held.push(bytes))
    }

    /// Bytes of `s` its flow control counts as buffered: not the old id's
    /// at the front, but the held ones.
    pub(crate) fn own_buffered(s: &ExitStream) -> usize {
        let (foreign, held) = s.mig.as_deref().map_or((0, 0), |m| {
            (m.foreign, m.join.as_ref().map_or(0, |j| j.held.len()))
        });
        s.to_dest.len().saturating_sub(foreign) + held
    }

    /// `n` bytes were read from the front of `s`'s buffer: how many of
    /// them its flow control counts.
    pub(crate) fn read_own(s: &mut ExitStream, n: usize) -> usize {
        let Some(m) = s.mig.as_mut() else {
            return n;
        };
        let f = m.foreign.min(n);
        m.foreign -= f;
        n - f
    }

    /// Held bytes of `s`, for the map's totals.
    pub(crate) fn held_len(s: &ExitStream) -> usize {
        s.mig
            .as_deref()
            .and_then(|m| m.join.as_ref())
            .map_or(0, |j| j.held.len())
    }

    /// The client's END on a stream waiting for its old id: it takes effect
    /// after the old id's bytes (true: deferred). A client's END says MISC
    /// whatever the cause (tor-spec §6.3), so its reason cannot tell a
    /// clean end from an abort: a client aborting the stream ends the old
    /// id too (proposal 001 §4.3), and that aborts it here.
    pub(crate) fn defer_end(s: &mut ExitStream, reason: EndReason) -> bool {
        let Some(j) = s.mig.as_mut().and_then(|m| m.join.as_mut()) else {
            return false;
        };
        j.end = Some(reason);
        true
    }
}
