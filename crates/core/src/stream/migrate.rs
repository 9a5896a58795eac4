//! Live stream migration, client side (Braid proposal 001 §4): a stream
//! moves from one circuit's [`StreamMap`] (tunnel A) to another's (tunnel
//! B) at the same exit without losing or repeating a byte.
//!
//! The two maps know nothing of each other; their driver carries what one
//! gives to the other, and every rule is here:
//!
//! 1. [`StreamMap::migrate_out`] on A: the stream stops sending DATA on A
//!    (what the application writes waits) and gives a [`MigrateTicket`]
//!    (its token and byte counts, §4.2 step 1).
//! 2. [`StreamMap::migrate_in`] on B: a new stream id whose opener is
//!    RELAY_BRAID_MIGRATE. It sends nothing else and gives the
//!    application nothing until it has taken the stream over.
//! 3. The exit answers MIGRATED on B and sends MIGRATE_MARK on A after its
//!    last byte there. A, on that MARK, sends its own MARK (it sent its
//!    last byte on A at step 1) and says
//!    [`StreamEvent::MigrateHandover`](super::StreamEvent::MigrateHandover).
//! 4. [`StreamMap::migrate_finish`] on A gives a [`Handover`]: the bytes
//!    the application has not read yet (every one of A's, up to the MARK),
//!    those it wrote that A did not send, and whether it stopped writing;
//!    the old id closes without an END. [`StreamMap::migrate_join`] on B
//!    puts them first: A's bytes are read before any of B's (§4.2 step 4),
//!    and B sends the unsent ones before anything written later. B's own
//!    bytes count against its flow control as usual; A's, already counted
//!    on A, do not.
//!
//! Failures (§4.3): an END on B before MIGRATED is a refusal that leaves A
//! untouched ([`StreamEvent::MigrateFailed`](super::StreamEvent::MigrateFailed)
//! `refused`, then [`StreamMap::migrate_target_failed`] on A lets it send
//! again); an END other than DONE on B after MIGRATED aborts the stream
//! (A is ended with END MISC); A's END, or A's circuit closing before its
//! MARK, ends the stream on A and the driver closes B. A MARK on a stream
//! that is not being migrated, or DATA after the MARK, is a protocol
//! violation (END TORPROTOCOL on that id).

use std::time::Instant;

use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::msg::{AnyRelayMsg, EndReason};

use crate::cc::StreamFlowCtrl;
use crate::cc::params::{STREAMWINDOW_INCREMENT, STREAMWINDOW_START};
use crate::ids::StreamId;

use super::error::StreamError;
use super::half_closed::HalfClosed;
use super::map::StreamMap;
use super::migrate_wire::{Migrate, MigrateMsg, Migrated, StreamToken};
use super::reasons::CloseReason;
use super::state::{Kind, Phase, Stream};

/// What tunnel B needs to take a stream over (proposal 001 §4.2 step 1).
/// Its `Debug` does not show the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateTicket {
    /// The stream's token.
    token: StreamToken,
    /// Bytes received on the old id.
    recv_bytes: u64,
    /// Bytes sent on the old id.
    sent_bytes: u64,
    /// The application had stopped writing.
    done: bool,
}

impl MigrateTicket {
    /// Bytes the stream had received on its old id.
    pub fn recv_bytes(&self) -> u64 {
        self.recv_bytes
    }

    /// Bytes the stream had sent on its old id.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }
}

/// What is left of a stream on its old id once the exit's MIGRATE_MARK
/// came (proposal 001 §4.2 step 4), for the new id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// Bytes received on the old id that the application has not read.
    recv: Vec<u8>,
    /// Every byte received on the old id, read or not.
    recv_total: u64,
    /// Bytes the application wrote that the old id did not send.
    send: Vec<u8>,
    /// The application stopped writing.
    shutdown: bool,
}

impl Handover {
    /// Unread bytes handed over.
    pub fn recv_len(&self) -> usize {
        self.recv.len()
    }

    /// Unsent bytes handed over.
    pub fn send_len(&self) -> usize {
        self.send.len()
    }
}

/// Where a migratable stream's token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Register {
    /// STREAM_REGISTER goes after the BEGIN.
    ToSend,
    /// Sent; the exit's STREAM_TOKEN (or nothing) comes after CONNECTED.
    Sent,
    /// The exit gave this token.
    Token(StreamToken),
}

/// The old id of a stream being migrated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Source {
    /// The exit's MARK came: every byte of the old id is here.
    pub(crate) peer_mark: bool,
    /// Our MARK waits to go.
    pub(crate) mark_to_send: bool,
    /// Our MARK went.
    pub(crate) mark_sent: bool,
}

/// The new id of a stream being migrated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The ticket's counts, to check MIGRATED against.
    pub(crate) ticket_recv: u64,
    pub(crate) ticket_sent: u64,
    /// MIGRATED came.
    pub(crate) migrated: Option<Migrated>,
    /// The old id's bytes were handed over: all it received.
    pub(crate) joined: Option<u64>,
}

/// A stream's part in a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not being migrated.
    Plain,
    /// The old id.
    Source(Source),
    /// The new id.
    Target(Target),
}

/// Live migration state of a migratable stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MigState {
    /// Its token.
    pub(crate) register: Register,
    /// Its part in a migration.
    pub(crate) role: Role,
    /// Bytes at the front of the receive buffer that came from its old id
    /// (counted by that id's flow control, not this one's).
    pub(crate) foreign: usize,
}

impl MigState {
    /// True if a message of ours waits (REGISTER, MARK).
    pub(crate) fn has_control(&self) -> bool {
        self.register == Register::ToSend || matches!(&self.role, Role::Source(s) if s.mark_to_send)
    }

    /// The next message of ours: REGISTER, then MARK.
    pub(crate) fn take_control(&mut self) -> Option<AnyRelayMsg> {
        if self.register == Register::ToSend {
            self.register = Register::Sent;
            return Some(MigrateMsg::Register.to_msg());
        }
        if let Role::Source(s) = &mut self.role
            && s.mark_to_send
        {
            s.mark_to_send = false;
            s.mark_sent = true;
            return Some(MigrateMsg::Mark.to_msg());
        }
        None
    }

    /// After our MARK nothing more goes on the old id.
    pub(crate) fn quiet(&self) -> bool {
        matches!(&self.role, Role::Source(s) if s.mark_sent)
    }

    /// DATA may go: not on an old id (its last byte went when the
    /// migration began), not on a new id before it has taken over and the
    /// exit answered.
    pub(crate) fn may_send_data(&self) -> bool {
        match &self.role {
            Role::Plain => true,
            Role::Source(_) => false,
            Role::Target(t) => t.migrated.is_some() && t.joined.is_some(),
        }
    }

    /// The token, for a stream that may be migrated now.
    fn token(&self) -> Option<&StreamToken> {
        match (&self.register, &self.role) {
            (Register::Token(t), Role::Plain) => Some(t),
            _ => None,
        }
    }
}

/// A violation of proposal 001 §4 by the exit on stream `id`.
fn violation(s: &Stream, id: StreamId, cmd: RelayCmd, rule: &'static str) -> StreamError {
    StreamError::UnexpectedMessage {
        id,
        cmd,
        state: s.state(),
        rule,
    }
}

impl StreamMap {
    // ------------------------------------------------------------------
    // Inbound
    // ------------------------------------------------------------------

    /// One of proposal 001 §4's messages from the exit on live stream `s`.
    pub(crate) fn handle_migrate_msg(
        s: &mut Stream,
        id: StreamId,
        msg: &AnyRelayMsg,
        cmd: RelayCmd,
    ) -> Result<(), StreamError> {
        let parsed = match MigrateMsg::parse(msg) {
            Some(Ok(m)) => m,
            Some(Err(_)) | None => {
                return Err(violation(s, id, cmd, "malformed (proposal 001 §4)"));
            }
        };
        let phase = s.phase;
        let Some(mig) = s.mig.as_mut() else {
            return Err(violation(
                s,
                id,
                cmd,
                "proposal 001 §4.1: not a migratable stream",
            ));
        };
        match parsed {
            MigrateMsg::Token(t) => {
                if mig.register != Register::Sent || phase != Phase::Open {
                    return Err(violation(
                        s,
                        id,
                        cmd,
                        "proposal 001 §4.1: STREAM_TOKEN answers our REGISTER, once, after CONNECTED",
                    ));
                }
                mig.register = Register::Token(t);
                Ok(())
            }
            MigrateMsg::Migrated(m) => {
                let ok = match &mut mig.role {
                    Role::Target(t) if t.migrated.is_none() && phase == Phase::Connecting => {
                        // §4.2 step 2, the exit's own checks seen from
                        // here: it cannot have received more than we sent
                        // on A, nor sent less than we received.
                        let counts = m.recv_bytes <= t.ticket_sent && m.sent_bytes >= t.ticket_recv;
                        let joined = t.joined.is_none_or(|r| r == m.sent_bytes);
                        t.migrated = Some(m);
                        counts && joined
                    }
                    _ => {
                        return Err(violation(
                            s,
                            id,
                            cmd,
                            "proposal 001 §4.2: MIGRATED answers our MIGRATE, once",
                        ));
                    }
                };
                if !ok {
                    return Err(violation(
                        s,
                        id,
                        cmd,
                        "proposal 001 §4.2: MIGRATED's byte counts do not match the old stream's",
                    ));
                }
                if let Some(m) = s.mig.as_deref_mut()
                    && matches!(&m.role, Role::Target(t) if t.joined.is_some())
                {
                    // Answered, and taken over: a plain stream again.
                    m.role = Role::Plain;
                }
                s.phase = Phase::Open;
                s.deadline = None;
                Ok(())
            }
            MigrateMsg::Mark => {
                match &mut mig.role {
                    Role::Source(src) if !src.peer_mark => {
                        src.peer_mark = true;
                        // §4.2 step 3: ours follows (our last byte on A
                        // went when the migration began).
                        if !src.mark_sent {
                            src.mark_to_send = true;
                        }
                        s.events.migrate_handover = !s.released;
                        Ok(())
                    }
                    _ => Err(violation(
                        s,
                        id,
                        cmd,
                        "proposal 001 §4.3: MIGRATE_MARK without a migration in progress",
                    )),
                }
            }
            MigrateMsg::Register | MigrateMsg::Migrate(_) => Err(violation(
                s,
                id,
                cmd,
                "proposal 001 §4: only a client sends REGISTER and MIGRATE",
            )),
        }
    }

    /// DATA of `len` bytes on live stream `s`: what migration forbids.
    pub(crate) fn check_migrate_data(s: &Stream, id: StreamId) -> Result<(), StreamError> {
        match s.mig.as_deref().map(|m| &m.role) {
            Some(Role::Source(src)) if src.peer_mark => Err(violation(
                s,
                id,
                RelayCmd::DATA,
                "proposal 001 §4.2: no DATA on the old stream after its MIGRATE_MARK",
            )),
            _ => Ok(()),
        }
    }

    /// An END on live stream `s` that migration treats apart: on an old id
    /// after the exit's MARK it is a violation (the exit has no stream
    /// there any more).
    pub(crate) fn check_migrate_end(s: &Stream, id: StreamId) -> Result<(), StreamError> {
        match s.mig.as_deref().map(|m| &m.role) {
            Some(Role::Source(src)) if src.peer_mark => Err(violation(
                s,
                id,
                RelayCmd::END,
                "proposal 001 §4.2: no END on the old stream after its MIGRATE_MARK",
            )),
            _ => Ok(()),
        }
    }

    /// Bytes at the front of `s`'s receive buffer that its own flow
    /// control does not count (a new id's bytes from its old one).
    pub(crate) fn foreign(s: &Stream) -> usize {
        s.mig.as_deref().map_or(0, |m| m.foreign)
    }

    /// `n` bytes were read from the front of `s`: the part that was its
    /// old id's, which its flow control does not count.
    pub(crate) fn read_foreign(s: &mut Stream, n: usize) -> usize {
        let Some(m) = s.mig.as_deref_mut() else {
            return 0;
        };
        let f = m.foreign.min(n);
        m.foreign -= f;
        s.recv.shrink_limit(f);
        f
    }

    /// True if `s` is the new id of a migration (it is answered MIGRATED,
    /// not CONNECTED).
    pub(crate) fn is_target(s: &Stream) -> bool {
        matches!(s.mig.as_deref().map(|m| &m.role), Some(Role::Target(_)))
    }

    /// True if reads of `s` must wait: a new id before it took over.
    pub(crate) fn reads_held(s: &Stream) -> bool {
        matches!(s.mig.as_deref().map(|m| &m.role), Some(Role::Target(t)) if t.joined.is_none())
    }

    /// True if `s` is an old id still waiting for the exit's MARK (or the
    /// driver's `migrate_finish`) and must not be ended with its circuit:
    /// its bytes all came.
    pub(crate) fn survives_circuit(s: &Stream) -> bool {
        matches!(s.mig.as_deref().map(|m| &m.role), Some(Role::Source(src)) if src.peer_mark)
    }

    /// True if a shut-down write side must not end `s` now: an old id
    /// whose unsent bytes and shutdown go to the new one.
    pub(crate) fn holds_shutdown(s: &Stream) -> bool {
        matches!(s.mig.as_deref().map(|m| &m.role), Some(Role::Source(_)))
    }

    /// After a change to `s`: a new id that ended before it took over
    /// tells its driver (once), refused if the exit never answered.
    pub(crate) fn note_target_end(s: &mut Stream) {
        if s.phase != Phase::Closed || s.released {
            return;
        }
        let Some(Role::Target(t)) = s.mig.as_deref().map(|m| &m.role) else {
            return;
        };
        if t.joined.is_some() {
            return;
        }
        let refused = t.migrated.is_none();
        let done = s
            .end
            .is_some_and(|e| e.reason == CloseReason::End(EndReason::DONE));
        if refused || !done {
            s.events.migrate_failed = Some(refused);
            // Reported once: from now on it is a plain closed stream.
            if let Some(m) = s.mig.as_deref_mut() {
                m.role = Role::Plain;
            }
        }
        // END DONE after MIGRATED: the destination is done; the old id's
        // bytes still come first, then these, then the end.
    }

    // ------------------------------------------------------------------
    // The driver's calls
    // ------------------------------------------------------------------

    /// True if stream `id` may be migrated now: open, the exit gave it a
    /// token, not being migrated.
    pub fn migratable(&self, id: StreamId) -> bool {
        self.stream(id).is_some_and(|s| {
            s.phase == Phase::Open
                && !s.released
                && s.end_to_send.is_none()
                && s.mig.as_ref().is_some_and(|m| m.token().is_some())
        })
    }

    /// True if stream `id` is the old or new id of a migration in
    /// progress.
    pub fn migrating(&self, id: StreamId) -> bool {
        self.stream(id)
            .and_then(|s| s.mig.as_ref())
            .is_some_and(|m| m.role != Role::Plain)
    }

    /// The streams held, in no order.
    pub fn ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.stream_ids()
    }

    /// Bytes stream `id` sent and received in DATA on this circuit.
    pub fn byte_counts(&self, id: StreamId) -> Option<(u64, u64)> {
        self.stream(id).map(|s| (s.sent_bytes, s.recv_bytes))
    }

    /// True while a stream is the old or new id of a migration (the old
    /// id until its MIGRATE_MARK has gone): the circuit must not be closed
    /// for want of streams.
    pub fn migrations_pending(&self) -> bool {
        self.stream_ids().any(|id| self.migrating(id))
    }

    /// Begin moving stream `id` away (proposal 001 §4.2 step 1): from now
    /// on it sends no DATA here, and what the application writes waits
    /// ([`send_space`](Self::send_space) is 0). Give the ticket to the
    /// new tunnel's [`migrate_in`](Self::migrate_in).
    pub fn migrate_out(&mut self, id: StreamId) -> Result<MigrateTicket, StreamError> {
        if !self.migratable(id) {
            let state = self.state(id).ok_or(StreamError::NoSuchStream { id })?;
            return Err(StreamError::InvalidState {
                id,
                op: "migrate",
                state,
            });
        }
        let s = self
            .stream_mut(id)
            .ok_or(StreamError::NoSuchStream { id })?;
        let Some(mig) = s.mig.as_deref_mut() else {
            return Err(StreamError::Internal("migratable without state".into()));
        };
        let Some(token) = mig.token().cloned() else {
            return Err(StreamError::Internal("migratable without a token".into()));
        };
        mig.role = Role::Source(Source::default());
        let ticket = MigrateTicket {
            token,
            recv_bytes: s.recv_bytes,
            sent_bytes: s.sent_bytes,
            done: s.shutdown,
        };
        self.refresh_stream(id);
        Ok(ticket)
    }

    /// Open the new id of a migration (proposal 001 §4.2 step 1): it sends
    /// RELAY_BRAID_MIGRATE and waits (up to the connect timeout) for
    /// MIGRATED; it carries the stream once the old id's bytes are
    /// [joined](Self::migrate_join). Only on a map whose exit lists
    /// `BraidMigrate=1` ([`StreamMapConfig::migratable`](super::StreamMapConfig::migratable)).
    pub fn migrate_in(
        &mut self,
        ticket: &MigrateTicket,
        now: Instant,
    ) -> Result<StreamId, StreamError> {
        if !self.config().migratable {
            return Err(StreamError::InvalidTarget {
                why: "the exit does not take migrated streams (no BraidMigrate=1)",
            });
        }
        let msg = MigrateMsg::Migrate(Migrate {
            token: ticket.token.clone(),
            recv_bytes: ticket.recv_bytes,
            sent_bytes: ticket.sent_bytes,
            done: ticket.done,
        })
        .to_msg();
        let timeout = self.config().connect_timeout;
        let id = self.open_stream(Kind::Connect, msg, timeout, now)?;
        let token = ticket.token.clone();
        if let Some(s) = self.stream_mut(id) {
            s.mig = Some(Box::new(MigState {
                register: Register::Token(token),
                role: Role::Target(Target {
                    ticket_recv: ticket.recv_bytes,
                    ticket_sent: ticket.sent_bytes,
                    migrated: None,
                    joined: None,
                }),
                foreign: 0,
            }));
        }
        self.refresh_stream(id);
        Ok(id)
    }

    /// The new id ended before it took over (its
    /// [`MigrateFailed`](super::StreamEvent::MigrateFailed)): if `refused`,
    /// old stream `id` goes on as before (proposal 001 §4.2: a refusal
    /// leaves A untouched); otherwise the stream is aborted: END MISC here
    /// and the application sees a reset (§4.3).
    pub fn migrate_target_failed(
        &mut self,
        id: StreamId,
        refused: bool,
        now: Instant,
    ) -> Result<(), StreamError> {
        let s = self
            .stream_mut(id)
            .ok_or(StreamError::NoSuchStream { id })?;
        let Some(mig) = s.mig.as_deref_mut() else {
            return Ok(());
        };
        let Role::Source(src) = &mig.role else {
            return Ok(());
        };
        if refused && !src.peer_mark {
            mig.role = Role::Plain;
            self.refresh_stream(id);
            return Ok(());
        }
        self.abort_stream(id, now);
        Ok(())
    }

    /// Take what is left of old stream `id` after its
    /// [`MigrateHandover`](super::StreamEvent::MigrateHandover): the id is
    /// closed without an END (only the exit's flow control cells in flight
    /// may still come on it) once our MARK is out.
    pub fn migrate_finish(&mut self, id: StreamId, now: Instant) -> Result<Handover, StreamError> {
        let windowed = !self.mode().is_cc();
        let linger = self.config().half_closed_linger;
        let s = self
            .stream_mut(id)
            .ok_or(StreamError::NoSuchStream { id })?;
        let ready =
            matches!(s.mig.as_deref().map(|m| &m.role), Some(Role::Source(src)) if src.peer_mark);
        if !ready || s.released {
            return Err(StreamError::InvalidState {
                id,
                op: "finish the migration of",
                state: s.state(),
            });
        }
        s.touch(now);
        let handover = Handover {
            recv: s.recv.take_all(),
            recv_total: s.recv_bytes,
            send: s.send.take_all(),
            shutdown: s.shutdown,
        };
        let sendmes = match &s.flow {
            StreamFlowCtrl::Window { package, .. } if windowed => {
                STREAMWINDOW_START.saturating_sub(package.window()) / STREAMWINDOW_INCREMENT
            }
            _ => 0,
        };
        let cc_until = (!windowed).then(|| now.checked_add(linger)).flatten();
        s.clear_outbound();
        s.events = Default::default();
        s.released = true;
        s.phase = Phase::Closed;
        s.end = None;
        s.end_to_send = None;
        s.after_close = Some(HalfClosed::after_migration(cc_until, sendmes));
        self.refresh_stream(id);
        Ok(handover)
    }

    /// Give new stream `id` what its old id left ([`migrate_finish`](Self::migrate_finish)):
    /// the unread bytes go before any of its own, the unsent ones before
    /// anything written later, and it takes the stream over: reads go on
    /// here. MIGRATED's count of bytes sent on the old id must be what the
    /// old id received (proposal 001 §4.2): otherwise END TORPROTOCOL.
    pub fn migrate_join(
        &mut self,
        id: StreamId,
        handover: Handover,
        now: Instant,
    ) -> Result<(), StreamError> {
        let wire = self.end_reason_on_wire(EndReason::TORPROTOCOL);
        let s = self
            .stream_mut(id)
            .ok_or(StreamError::NoSuchStream { id })?;
        s.touch(now);
        let state = s.state();
        let Some(Role::Target(t)) = s.mig.as_deref_mut().map(|m| &mut m.role) else {
            return Err(StreamError::InvalidState {
                id,
                op: "join a migration on",
                state,
            });
        };
        if t.joined.is_some() {
            return Err(StreamError::InvalidState {
                id,
                op: "join a migration twice on",
                state,
            });
        }
        t.joined = Some(handover.recv_total);
        let mismatch = t
            .migrated
            .is_some_and(|m| m.sent_bytes != handover.recv_total);
        let done = t.migrated.is_some() && !mismatch;
        if let Some(m) = s.mig.as_deref_mut() {
            m.foreign = handover.recv.len();
            if done {
                // Taken over, and answered: a plain stream again (which
                // may move again).
                m.role = Role::Plain;
            }
        }
        s.recv.prepend(&handover.recv);
        if !handover.recv.is_empty() {
            s.events.readable = true;
        }
        if s.phase != Phase::Closed {
            s.send.push(&handover.send);
            s.shutdown |= handover.shutdown;
        }
        if mismatch {
            let e = StreamError::UnexpectedMessage {
                id,
                cmd: RelayCmd::from(super::migrate_wire::CMD_MIGRATED),
                state: s.state(),
                rule: "proposal 001 §4.2: MIGRATED's count of bytes sent on the old stream is not \
                       what it received",
            };
            self.close_with(id, CloseReason::End(EndReason::TORPROTOCOL), wire);
            return Err(e);
        }
        self.refresh_stream(id);
        Ok(())
    }

    /// Bytes stream `id` may still take from the application now: 0 while
    /// it is the old id of a migration.
    pub fn send_space(&self, id: StreamId) -> Option<usize> {
        let s = self.stream(id)?;
        if s.mig
            .as_deref()
            .is_some_and(|m| matches!(m.role, Role::Source(_)))
        {
            return Some(0);
        }
        Some(s.send.free())
    }

    /// End stream `id` for an aborted migration: END MISC, and the
    /// application sees a reset (proposal 001 §4.3).
    fn abort_stream(&mut self, id: StreamId, now: Instant) {
        let wire = self.end_reason_on_wire(EndReason::MISC);
        if let Some(s) = self.stream_mut(id) {
            s.touch(now);
            if let Some(m) = s.mig.as_deref_mut() {
                m.role = Role::Plain;
            }
        }
        self.close_with(id, CloseReason::End(EndReason::MISC), wire);
    }
}
