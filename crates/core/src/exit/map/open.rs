//! Opening streams on an [`ExitStreamMap`]: a BEGIN, BEGIN_DIR or RESOLVE
//! becomes a stream for the driver or is answered at once (END, RESOLVED),
//! with what the client may still send accounted for (tor-spec §6.2, §6.4);
//! a closed stream's id reused.

use std::time::Instant;

use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::RelayMsg as _;
use tor_cell::relaycell::msg::{AnyRelayMsg, Connected, EndReason};

use super::{ExitStreamMap, Opening, end_msg, linger};
use crate::cc::params::STREAMWINDOW_START;
use crate::cc::{EdgeKind, StreamFlowCtrl};
use crate::exit::error::ExitError;
use crate::exit::event::ExitEvent;
use crate::exit::stream::{ExitStream, Kind, Phase};
use crate::ids::StreamId;
use crate::stream::StreamFlowMode;
use crate::stream::half_closed::HalfClosed;

impl ExitStreamMap {
    /// A BEGIN, BEGIN_DIR or RESOLVE on `id`: `decision` is the stream to
    /// open, or the message answering the request at once.
    pub(super) fn on_open(
        &mut self,
        id: StreamId,
        cmd: RelayCmd,
        now: Instant,
        decision: Result<Opening, AnyRelayMsg>,
    ) -> Result<(), ExitError> {
        if let Some(s) = self.streams.get_mut(&id) {
            s.touch(now);
            if s.phase != Phase::Closed {
                // The client opened an id it is using: end that stream.
                let linger = linger(&self.mode, &self.cfg, now);
                s.close_local(
                    EndReason::TORPROTOCOL,
                    end_msg(EndReason::TORPROTOCOL),
                    linger,
                );
                self.refresh(id);
                return Err(ExitError::StreamInUse { id, cmd });
            }
            if !s.wire_done() {
                // Our END has not gone out: the client cannot know the id
                // is free.
                return Err(ExitError::StreamInUse { id, cmd });
            }
            self.replace(id);
        } else if self.refusals.iter().any(|(r, _)| *r == id) {
            // Our answer to its last request on this id has not gone out.
            return Err(ExitError::StreamInUse { id, cmd });
        }
        self.half.remove(id);
        let opening = match decision {
            Ok(o) => o,
            Err(answer) => return self.answer_at_once(id, answer, now),
        };
        if self.streams.len() + self.orphans.len() >= self.cfg.max_streams {
            self.answer_at_once(id, end_msg(EndReason::RESOURCELIMIT), now)?;
            return Err(ExitError::TooManyStreams {
                id,
                limit: self.cfg.max_streams,
            });
        }
        let Opening {
            kind,
            literal,
            flags,
            request,
        } = opening;
        let flow = match &self.mode {
            StreamFlowMode::Windowed => StreamFlowCtrl::windowed(),
            StreamFlowMode::XonXoff { params, onion } => {
                StreamFlowCtrl::xon_xoff(params, EdgeKind::Exit, *onion)
            }
        };
        let deadline = (kind != Kind::Dir)
            .then(|| now.checked_add(self.cfg.connect_timeout))
            .flatten();
        let mut s = ExitStream::new(
            kind,
            request,
            literal,
            flags,
            flow,
            self.to_dest_limit,
            self.cfg.dest_buffer,
            deadline,
            now,
        );
        if kind == Kind::Dir {
            // C-tor `connection_exit_connect_dir`: CONNECTED at once, empty
            // (tor-spec §6.2: no address for a directory stream).
            s.reply = Some(AnyRelayMsg::Connected(Connected::new_empty()));
        }
        self.streams.insert(id, s);
        self.stats.opened += 1;
        self.refresh(id);
        Ok(())
    }

    /// [`Self::answer_at_once`], for the migration module.
    pub(crate) fn answer_at_once_migrate(
        &mut self,
        id: StreamId,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), ExitError> {
        self.answer_at_once(id, msg, now)
    }

    /// Answer a request on `id` at once with `msg` (END or RESOLVED), and
    /// account for what the client may send before it sees it.
    fn answer_at_once(
        &mut self,
        id: StreamId,
        msg: AnyRelayMsg,
        now: Instant,
    ) -> Result<(), ExitError> {
        let limit = self.cfg.max_refusals();
        if self.refusals.len() >= limit {
            return Err(ExitError::RefusalsQueued { id, limit });
        }
        let resolving = msg.cmd() == RelayCmd::RESOLVED;
        let hc = match (&self.mode, linger(&self.mode, &self.cfg, now)) {
            // Optimistic DATA after a BEGIN: up to a full stream window.
            (StreamFlowMode::Windowed, _) | (_, None) => {
                HalfClosed::after_end_windowed(false, resolving, STREAMWINDOW_START, 0)
            }
            (_, Some(until)) if !resolving => HalfClosed::after_end_cc(false, until),
            _ => HalfClosed::after_end_windowed(false, true, 0, 0),
        };
        self.half.insert(id, hc);
        self.refusals.push_back((id, msg));
        self.stats.answered_at_once += 1;
        Ok(())
    }

    /// [`Self::replace`], for the migration module.
    pub(crate) fn replace_closed(&mut self, id: StreamId) {
        self.replace(id);
    }

    /// Forget the wire-closed stream on `id` for a new one: a `Closed` the
    /// driver has not had yet is kept for it.
    fn replace(&mut self, id: StreamId) {
        let Some(old) = self.streams.get(&id) else {
            return;
        };
        if old.visible() && (old.events.closed || !old.close_reported) {
            let (reason, remote) = old.end.unwrap_or((EndReason::MISC, true));
            self.orphans
                .push_back(ExitEvent::Closed { id, reason, remote });
        }
        self.remove(id, false);
    }
}
