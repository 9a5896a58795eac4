//! The stream side of a tunnel: what the application does with its
//! streams. Stream rules (tor-spec §6, proposal 324 §4) are the
//! [`StreamMap`](crate::stream::StreamMap)'s; the tunnel carries its
//! messages, and after each call moves what became sendable.

use std::net::IpAddr;
use std::time::Instant;

use tor_cell::relaycell::msg::{BeginFlags, EndReason};

use crate::ids::StreamId;
use crate::stream::{StreamError, StreamState, Target};

use super::client::ClientTunnel;
use super::error::TunnelError;

impl ClientTunnel {
    /// Open a stream to `target` (tor-spec §6.2); CONNECTED or END comes
    /// as a [`StreamEvent`](crate::stream::StreamEvent) in
    /// [`TunnelEvent::Stream`](super::TunnelEvent::Stream).
    pub fn begin(&mut self, target: &Target, now: Instant) -> Result<StreamId, TunnelError> {
        let streams = self.open_streams_mut()?;
        let id = streams
            .begin(target, BeginFlags::empty(), now)
            .map_err(TunnelError::Stream)?;
        self.settle(now);
        Ok(id)
    }

    /// Ask the exit to resolve `host` (tor-spec §6.4).
    pub fn resolve(&mut self, host: &str, now: Instant) -> Result<StreamId, TunnelError> {
        let streams = self.open_streams_mut()?;
        let id = streams.resolve(host, now).map_err(TunnelError::Stream)?;
        self.settle(now);
        Ok(id)
    }

    /// Ask the exit for the name of `addr` (tor-spec §6.4, a reverse
    /// lookup: C-tor's RESOLVE_PTR).
    pub fn resolve_reverse(&mut self, addr: IpAddr, now: Instant) -> Result<StreamId, TunnelError> {
        let streams = self.open_streams_mut()?;
        let id = streams
            .resolve_reverse(addr, now)
            .map_err(TunnelError::Stream)?;
        self.settle(now);
        Ok(id)
    }

    /// Buffer `data` for stream `id`; how much fit (0: wait for
    /// `Writable`).
    pub fn write(&mut self, id: StreamId, data: &[u8], now: Instant) -> Result<usize, StreamError> {
        let n = self.streams_mut(id)?.write(id, data)?;
        self.settle(now);
        Ok(n)
    }

    /// Read what stream `id` received into `buf`; 0 is EOF. Reading frees
    /// window for the exit (XON or stream SENDMEs may follow).
    pub fn read(
        &mut self,
        id: StreamId,
        buf: &mut [u8],
        now: Instant,
    ) -> Result<usize, StreamError> {
        let n = self.streams_mut(id)?.read(id, buf, now)?;
        self.settle(now);
        Ok(n)
    }

    /// The application will write no more: END after what is buffered.
    pub fn shutdown_write(&mut self, id: StreamId, now: Instant) -> Result<(), StreamError> {
        self.streams_mut(id)?.shutdown_write(id, now)?;
        self.settle(now);
        Ok(())
    }

    /// The application is done with stream `id` (END with `reason` if it
    /// is still live; MISC on the wire, tor-spec §6.3).
    pub fn close_stream(
        &mut self,
        id: StreamId,
        reason: EndReason,
        now: Instant,
    ) -> Result<(), StreamError> {
        self.streams_mut(id)?.close(id, reason, now)?;
        self.settle(now);
        Ok(())
    }

    /// Bytes stream `id` has waiting to be read.
    pub fn recv_buffered(&self, id: StreamId) -> Option<usize> {
        self.streams.as_ref()?.recv_buffered(id)
    }

    /// The most bytes a stream may have waiting to be read: more is a
    /// protocol violation of the exit's (tor-spec §7.4, proposal 324 §4).
    pub fn recv_limit(&self) -> Option<usize> {
        self.streams
            .as_ref()
            .map(crate::stream::StreamMap::recv_limit)
    }

    /// Bytes stream `id` may still buffer for sending (0 while it is being
    /// migrated away: the bytes wait for its new tunnel).
    pub fn send_space(&self, id: StreamId) -> Option<usize> {
        self.streams.as_ref()?.send_space(id)
    }

    /// Bytes stream `id` has buffered for sending.
    pub fn send_buffered(&self, id: StreamId) -> Option<usize> {
        self.streams.as_ref()?.send_buffered(id)
    }

    /// The state of stream `id`, if held.
    pub fn stream_state(&self, id: StreamId) -> Option<StreamState> {
        self.streams.as_ref()?.state(id)
    }

    /// The streams, if the tunnel is open.
    pub(crate) fn open_streams_mut(
        &mut self,
    ) -> Result<&mut crate::stream::StreamMap, TunnelError> {
        if !self.is_open() {
            return Err(TunnelError::NotOpen);
        }
        self.streams.as_mut().ok_or(TunnelError::NotOpen)
    }

    /// The streams, for an operation on stream `id`.
    pub(crate) fn streams_mut(
        &mut self,
        id: StreamId,
    ) -> Result<&mut crate::stream::StreamMap, StreamError> {
        self.streams
            .as_mut()
            .ok_or(StreamError::NoSuchStream { id })
    }
}
