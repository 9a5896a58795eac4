//! Test support: the invariants of a [`StreamMap`] that no sequence of
//! application calls, circuit polls, timers and exit messages may break,
//! checked against a model of each stream's bytes. Shared by the stream
//! property tests and the fuzz target (public as
//! `braid_core::test_support::stream_invariants` with the `test-support`
//! feature). A broken invariant panics.
//!
//! The invariants: an id is never opened twice, and the map never sends
//! on an id it did not open; streams, half-closed entries, send and
//! receive buffers stay within their limits; DATA goes out only when the
//! circuit allows it, at most the configured length, in the order
//! written; accepted DATA grows the receive buffer by its length; the
//! application reads exactly the DATA the map accepted, in order; a
//! message on an id the map never used is a protocol violation.

#![allow(clippy::indexing_slicing, reason = "test support")]

use std::collections::HashMap;
use std::time::Instant;

use tor_cell::relaycell::msg::AnyRelayMsg;

use super::{StreamError, StreamEvent, StreamFlowMode, StreamMap, StreamMapConfig, StreamState};
use crate::cc::FlowParams;
use crate::ids::StreamId;

/// The largest DATA body (a relay cell, format v0).
const MAX_DATA_LEN: usize = 498;

/// What the checker knows about one stream.
#[derive(Debug, Default)]
struct Model {
    /// Bytes `write` accepted.
    written: Vec<u8>,
    /// Bytes that went out in DATA messages.
    sent: Vec<u8>,
    /// Bytes of DATA the map accepted for delivery.
    delivered: Vec<u8>,
    /// Bytes the application read.
    read: Vec<u8>,
    /// The application closed the stream (its unread data is dropped).
    closed: bool,
}

/// A [`StreamMap`] under watch: the streams opened on it and what each
/// carried. Tell it about every call made on the map; it panics when an
/// invariant breaks.
#[derive(Debug, Default)]
pub struct StreamChecker {
    /// Every stream opened, in order.
    ids: Vec<StreamId>,
    /// Their models.
    models: HashMap<StreamId, Model>,
}

impl StreamChecker {
    /// A checker of a map with no streams yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stream opened, in order.
    pub fn ids(&self) -> &[StreamId] {
        &self.ids
    }

    /// `id` was opened on the map.
    pub fn knows(&self, id: StreamId) -> bool {
        self.models.contains_key(&id)
    }

    /// `begin` or `resolve` opened `id`: never an id used before.
    pub fn opened(&mut self, id: StreamId) {
        assert!(!self.knows(id), "id {id} reused");
        self.ids.push(id);
        self.models.insert(id, Model::default());
    }

    /// `write(id, bytes)` accepted `n` bytes.
    pub fn wrote(&mut self, id: StreamId, bytes: &[u8], n: usize) {
        assert!(n <= bytes.len(), "write accepted more than it was given");
        if let Some(md) = self.models.get_mut(&id) {
            md.written.extend_from_slice(&bytes[..n]);
        }
    }

    /// The application read `bytes` from `id`.
    pub fn read(&mut self, id: StreamId, bytes: &[u8]) {
        if let Some(md) = self.models.get_mut(&id) {
            md.read.extend_from_slice(bytes);
        }
    }

    /// The application closed `id`: what it did not read is dropped.
    pub fn closed(&mut self, id: StreamId) {
        if let Some(md) = self.models.get_mut(&id) {
            md.closed = true;
            md.delivered.truncate(md.read.len());
        }
    }

    /// `poll_transmit(can_send)` gave `msg` on `id`: only on an id the map
    /// opened, and DATA only when the circuit allowed it, of 1 to
    /// `max_data_len` bytes.
    pub fn transmitted(
        &mut self,
        id: StreamId,
        msg: &AnyRelayMsg,
        can_send: bool,
        max_data_len: usize,
    ) {
        assert!(self.knows(id), "message on id {id}, never opened");
        if let AnyRelayMsg::Data(d) = msg {
            assert!(can_send, "DATA while the circuit said no");
            let b = d.as_ref();
            assert!(
                !b.is_empty() && b.len() <= max_data_len.min(MAX_DATA_LEN),
                "DATA of {} bytes",
                b.len()
            );
            if let Some(md) = self.models.get_mut(&id) {
                md.sent.extend_from_slice(b);
            }
        }
    }

    /// The map gave event `ev`: about a stream it opened.
    pub fn event(&self, ev: &StreamEvent) {
        assert!(self.knows(ev.id()), "event on id {}, never opened", ev.id());
    }

    /// Hand `msg` from the exit to `m` on `id`. DATA accepted on a stream
    /// that receives is recorded, and must grow its receive buffer by its
    /// length. On an id the map does not hold and never opened, anything
    /// but DROP or an unrecognized command is a protocol violation.
    pub fn deliver(
        &mut self,
        m: &mut StreamMap,
        now: Instant,
        id: StreamId,
        msg: AnyRelayMsg,
    ) -> Result<(), StreamError> {
        let held = m.state(id).is_some();
        let receiving = matches!(
            m.state(id),
            Some(StreamState::Open | StreamState::HalfClosedLocal)
        );
        let droppable = matches!(msg, AnyRelayMsg::Drop(_) | AnyRelayMsg::Unrecognized(_));
        let bytes = match &msg {
            AnyRelayMsg::Data(d) => Some(d.as_ref().to_vec()),
            _ => None,
        };
        let before = m.recv_buffered(id);
        let r = m.handle_msg(now, id, msg);
        if let (Ok(()), Some(b), true) = (&r, bytes, receiving)
            && let Some(md) = self.models.get_mut(&id)
        {
            assert_eq!(
                m.recv_buffered(id),
                before.map(|x| x + b.len()),
                "accepted DATA on {id} not buffered"
            );
            md.delivered.extend_from_slice(&b);
        }
        if !held && !self.knows(id) && !droppable {
            assert!(
                r.as_ref().is_err_and(StreamError::is_protocol_violation),
                "a message on never-used id {id} accepted: {r:?}"
            );
        }
        r
    }

    /// The bounds that hold after every step: streams and half-closed
    /// entries, send and receive buffers; and each stream's DATA sent and
    /// read in order.
    pub fn check_bounds(&self, m: &StreamMap, cfg: &StreamMapConfig) {
        assert!(m.len() <= cfg.max_streams, "{} streams", m.len());
        assert!(
            m.half_closed_len() <= cfg.max_half_closed,
            "{} half-closed",
            m.half_closed_len()
        );
        for id in &self.ids {
            if let Some(n) = m.recv_buffered(*id) {
                assert!(n <= m.recv_limit(), "{n} bytes received on {id}");
            }
            if let Some(n) = m.send_buffered(*id) {
                assert!(n <= cfg.send_buffer, "{n} bytes to send on {id}");
            }
            if let Some(md) = self.models.get(id) {
                assert!(
                    md.written.starts_with(&md.sent),
                    "DATA out of order on {id}"
                );
                assert!(
                    md.delivered.starts_with(&md.read),
                    "read out of order on {id}"
                );
            }
        }
    }

    /// The application reads what is left, `buf_len` bytes at a time:
    /// every stream it did not close gives exactly what the map accepted.
    pub fn finish(&mut self, m: &mut StreamMap, now: Instant, buf_len: usize) {
        let mut buf = vec![0_u8; buf_len.max(1)];
        for id in &self.ids {
            let Some(md) = self.models.get_mut(id) else {
                continue;
            };
            if !md.closed {
                for _ in 0..10_000 {
                    match m.read(*id, &mut buf, now) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => md.read.extend_from_slice(&buf[..n]),
                    }
                }
            }
            assert!(
                md.read == md.delivered,
                "stream {id}: read differs from delivered"
            );
        }
    }
}

/// XON/XOFF with thresholds of a few cells, so that runs reach them.
pub fn small_xon_xoff() -> StreamFlowMode {
    let cell = MAX_DATA_LEN as u64;
    StreamFlowMode::XonXoff {
        params: FlowParams {
            xoff_client_bytes: 10 * cell,
            xoff_exit_bytes: 4 * cell,
            xon_rate_bytes: 5 * cell,
            xoff_grace_bytes: 20 * cell,
            ..FlowParams::default()
        },
        onion: false,
    }
}
