//! What goes out of a [`StreamMap`]: the application's writes, half-close
//! and close, and the messages the circuit takes in turn (control
//! messages first, DATA as its window allows).

use std::time::Instant;

use tor_cell::relaycell::msg::{AnyRelayMsg, Data, EndReason};

use super::{StreamMap, close_local, held};
use crate::ids::StreamId;
use crate::stream::error::StreamError;
use crate::stream::reasons::CloseReason;
use crate::stream::state::{Kind, Phase, Stream};

impl StreamMap {
    /// Buffer `data` for stream `id`; returns how much fit (0 when the send
    /// buffer is full: wait for
    /// [`StreamEvent::Writable`](crate::stream::StreamEvent::Writable)).
    /// Allowed while connecting (it waits for CONNECTED) and open, not after
    /// [`shutdown_write`](Self::shutdown_write) or END.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let s = held(&mut self.streams, id)?;
        if Self::holds_shutdown(s) && s.phase == Phase::Open && !s.shutdown {
            // Being migrated away: the bytes wait for the new id.
            return Ok(0);
        }
        let writable = matches!(s.phase, Phase::Connecting | Phase::Open) && !s.shutdown;
        if !writable {
            return Err(StreamError::InvalidState {
                id,
                op: "write to",
                state: s.state(),
            });
        }
        let n = s.send.push(data);
        if n < data.len() {
            s.want_writable = true;
        }
        self.refresh(id);
        Ok(n)
    }

    /// The application will write no more: send what is buffered, then END
    /// (reason DONE locally, MISC on the wire unless
    /// [`StreamMapConfig::informative_end_reasons`](crate::stream::StreamMapConfig::informative_end_reasons)).
    ///
    /// Tor has no TCP half-close on the wire (tor-spec §6.3): the END
    /// closes the stream both ways, so data the exit sends after it is
    /// dropped, exactly as C-tor does when its SOCKS client shuts down its
    /// write side. Until the END goes out, data from the exit is delivered.
    pub fn shutdown_write(&mut self, id: StreamId, now: Instant) -> Result<(), StreamError> {
        let s = held(&mut self.streams, id)?;
        if s.kind == Kind::Resolve {
            return Err(StreamError::InvalidState {
                id,
                op: "shut down",
                state: s.state(),
            });
        }
        s.touch(now);
        s.shutdown = true;
        self.refresh(id);
        Ok(())
    }

    /// The application is done with stream `id`: drop its buffers, send END
    /// if the stream is still live (MISC on the wire unless
    /// [`StreamMapConfig::informative_end_reasons`](crate::stream::StreamMapConfig::informative_end_reasons),
    /// then `reason`), and
    /// release the id once the END is out. No event follows.
    pub fn close(
        &mut self,
        id: StreamId,
        reason: EndReason,
        now: Instant,
    ) -> Result<(), StreamError> {
        let wire = self.wire_reason(reason);
        let s = held(&mut self.streams, id)?;
        s.touch(now);
        s.released = true;
        s.events = Default::default();
        s.recv.clear();
        close_local(s, &self.mode, &self.cfg, CloseReason::End(reason), wire);
        self.refresh(id);
        Ok(())
    }

    /// The next message to send on the circuit: BEGIN, RESOLVE, END, XON,
    /// XOFF and SENDME first, then, if `can_send_data` (the circuit's window
    /// allows), one DATA cell of at most
    /// [`StreamMapConfig::max_data_len`](crate::stream::StreamMapConfig::max_data_len)
    /// bytes. Streams take turns.
    pub fn poll_transmit(&mut self, can_send_data: bool) -> Option<(StreamId, AnyRelayMsg)> {
        for _ in 0..self.ctrl_q.len() {
            let id = self.ctrl_q.pop_front()?;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.queued.ctrl = false;
            let msg = s.take_control(id, &mut self.used);
            self.refresh(id);
            if let Some(msg) = msg {
                return Some((id, msg));
            }
        }
        if !can_send_data {
            return None;
        }
        let max = self.cfg.data_len();
        for _ in 0..self.data_q.len() {
            let id = self.data_q.pop_front()?;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.queued.data = false;
            if !s.can_send_data(self.cfg.optimistic_data) {
                self.refresh(id);
                continue;
            }
            let chunk = s.send.pop_chunk(max);
            let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            s.sent_bytes = s.sent_bytes.saturating_add(len);
            let sent = s.flow.on_data_sent(len);
            let data = Data::new(&chunk);
            if s.want_writable && (s.send.free() >= max || s.send.is_empty()) {
                s.want_writable = false;
                s.events.writable = true;
            }
            self.refresh(id);
            match (sent, data) {
                (Ok(()), Ok(data)) => return Some((id, AnyRelayMsg::Data(data))),
                // Cannot happen: `can_send_data` checked the window and the
                // chunk is 1..=498 bytes. Drop the chunk rather than panic.
                (Err(e), _) => {
                    tracing::warn!(%id, error = %e, "stream DATA over its window; dropped");
                }
                (_, Err(e)) => {
                    tracing::warn!(%id, error = %e, "stream DATA could not be built; dropped");
                }
            }
        }
        None
    }

    /// True if [`poll_transmit`](Self::poll_transmit) has something to give.
    pub fn wants_transmit(&self, can_send_data: bool) -> bool {
        let ctrl = self
            .ctrl_q
            .iter()
            .any(|id| self.streams.get(id).is_some_and(Stream::has_control));
        ctrl || (can_send_data
            && self.data_q.iter().any(|id| {
                self.streams
                    .get(id)
                    .is_some_and(|s| s.can_send_data(self.cfg.optimistic_data))
            }))
    }
}
