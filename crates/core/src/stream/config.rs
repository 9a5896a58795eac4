//! Limits and choices of a [`StreamMap`](super::StreamMap), fixed when it is
//! created for a circuit.

use std::time::Duration;

use tor_cell::relaycell::msg::Data;

use crate::cc::FlowParams;
use crate::cc::params::{RELAY_PAYLOAD_SIZE, STREAMWINDOW_START};

/// C-tor's wait for CONNECTED on the first two attempts of a stream
/// (`compute_retry_timeout`: 10 s, then 15 s).
pub const CONNECT_TIMEOUT_FIRST: Duration = Duration::from_secs(10);

/// C-tor's wait for CONNECTED from the third attempt on.
pub const CONNECT_TIMEOUT_LATER: Duration = Duration::from_secs(15);

/// The wait for CONNECTED or RESOLVED that C-tor uses on attempt number
/// `attempt` (0 for the first) of a stream. C-tor retries a timed-out
/// stream on another circuit; that is the driver's business here: it
/// passes the result to [`StreamMap::begin_with_timeout`](super::StreamMap::begin_with_timeout).
pub fn connect_timeout_for_attempt(attempt: u32) -> Duration {
    if attempt < 2 {
        CONNECT_TIMEOUT_FIRST
    } else {
        CONNECT_TIMEOUT_LATER
    }
}

/// Stream flow control on the circuit, chosen when the map is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFlowMode {
    /// The circuit has no congestion control: fixed stream windows of 500
    /// cells, +50 per stream-level SENDME (tor-spec §7.4).
    Windowed,
    /// The circuit has congestion control: XON/XOFF (proposal 324 §4); a
    /// stream-level SENDME is then a violation.
    XonXoff {
        /// The consensus parameters.
        params: FlowParams,
        /// An onion service circuit (the peer's XOFF limit is then
        /// `cc_xoff_client`).
        onion: bool,
    },
}

/// Limits of one circuit's [`StreamMap`](super::StreamMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMapConfig {
    /// Streams the circuit may hold at once (any state, including closed
    /// streams whose data the application has not read yet). Default 1000.
    pub max_streams: usize,
    /// Bytes the application may buffer per stream before `write` pushes
    /// back. Default 64 KiB.
    pub send_buffer: usize,
    /// Default wait for CONNECTED or RESOLVED. Default 10 s (C-tor).
    pub connect_timeout: Duration,
    /// Largest DATA body we send: 498 (`Data::MAXLEN`, relay cell format
    /// v0), 488 for format v1. Values outside 1..=498 are clamped.
    pub max_data_len: usize,
    /// Send DATA right after BEGIN, before CONNECTED (tor-spec §6.2,
    /// "optimistic data"; exits since 0.2.3.1-alpha queue it). Default off.
    pub optimistic_data: bool,
    /// Send the caller's END reason on the wire instead of MISC. Default
    /// off: tor-spec §6.3 says a stream's originator "SHOULD NOT send any
    /// reason except REASON_MISC", and C-tor sends MISC on client circuits.
    pub informative_end_reasons: bool,
    /// Closed streams whose late cells we keep accounting for (C-tor keeps
    /// them all, up to 65535). Default 1024; the oldest are forgotten first.
    pub max_half_closed: usize,
    /// With congestion control, how long after our END we still accept
    /// DATA/XON/XOFF on the stream (C-tor: the larger of the circuit build
    /// timeout and the circuit's largest RTT). Default 60 s.
    pub half_closed_linger: Duration,
    /// Make connect streams migratable (Braid proposal 001 §4.1: a
    /// STREAM_REGISTER after each BEGIN) and accept migrated ones
    /// ([`StreamMap::migrate_in`](super::StreamMap::migrate_in)). Only for
    /// an exit whose consensus `pr` line lists `BraidMigrate=1` (§2.1):
    /// never toward C-tor. Default off.
    pub migratable: bool,
}

impl Default for StreamMapConfig {
    fn default() -> Self {
        StreamMapConfig {
            max_streams: 1000,
            send_buffer: 64 * 1024,
            connect_timeout: CONNECT_TIMEOUT_FIRST,
            max_data_len: Data::MAXLEN,
            optimistic_data: false,
            informative_end_reasons: false,
            max_half_closed: 1024,
            half_closed_linger: Duration::from_secs(60),
            migratable: false,
        }
    }
}

impl StreamMapConfig {
    /// `max_data_len` clamped to 1..=498.
    pub(crate) fn data_len(&self) -> usize {
        self.max_data_len.clamp(1, Data::MAXLEN)
    }
}

impl StreamFlowMode {
    /// The receive buffer bound per stream: what flow control lets the
    /// exit send before it must stop.
    ///
    /// - Fixed windows: the 500-cell window, plus the fewer than ten cells
    ///   that may sit unread when we send SENDMEs (tor-spec §7.4).
    /// - XON/XOFF: the XOFF limit, up to as much again during the 5 ms before
    ///   the XOFF goes out, plus the grace the exit has after it (proposal
    ///   324 §4.1.1; see [`FlowParams::xoff_grace_bytes`]).
    pub(crate) fn recv_limit(&self) -> usize {
        let cell = u64::from(RELAY_PAYLOAD_SIZE);
        let bytes = match self {
            StreamFlowMode::Windowed => u64::from(STREAMWINDOW_START + 10) * cell,
            StreamFlowMode::XonXoff { params, .. } => params
                .xoff_client_bytes
                .saturating_mul(2)
                .saturating_add(params.xoff_grace_bytes),
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// True for XON/XOFF.
    pub(crate) fn is_cc(&self) -> bool {
        matches!(self, StreamFlowMode::XonXoff { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_tor_retry_timeouts() {
        assert_eq!(connect_timeout_for_attempt(0), Duration::from_secs(10));
        assert_eq!(connect_timeout_for_attempt(1), Duration::from_secs(10));
        assert_eq!(connect_timeout_for_attempt(2), Duration::from_secs(15));
        assert_eq!(connect_timeout_for_attempt(100), Duration::from_secs(15));
    }

    #[test]
    fn limits() {
        let c = StreamMapConfig {
            max_data_len: 10_000,
            ..StreamMapConfig::default()
        };
        assert_eq!(c.data_len(), 498);
        let c = StreamMapConfig {
            max_data_len: 0,
            ..StreamMapConfig::default()
        };
        assert_eq!(c.data_len(), 1);
        assert_eq!(StreamFlowMode::Windowed.recv_limit(), 510 * 498);
        let p = FlowParams::default();
        let cc = StreamFlowMode::XonXoff {
            params: p.clone(),
            onion: false,
        };
        assert!(cc.is_cc());
        let want = 2 * p.xoff_client_bytes + p.xoff_grace_bytes;
        assert_eq!(cc.recv_limit() as u64, want);
    }
}
