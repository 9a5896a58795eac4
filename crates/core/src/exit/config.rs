//! Limits and choices of an [`ExitStreamMap`](super::ExitStreamMap), fixed
//! when it is created for a circuit.

use std::time::Duration;

use tor_cell::relaycell::msg::Data;

use crate::cc::params::{RELAY_PAYLOAD_SIZE, STREAMWINDOW_START};
use crate::stream::StreamFlowMode;

/// Streams a circuit may hold at once by default; a BEGIN or RESOLVE
/// beyond it is answered END RESOURCELIMIT (issue 13, "BEGIN floods").
/// C-tor has no per-circuit limit of its own (its relays rely on the
/// DoS subsystem and the OOM killer); 512 is well above what a client
/// opens on one circuit (Tor Browser's busiest pages use a few dozen).
pub const DEFAULT_MAX_STREAMS: usize = 512;

/// How long the driver has to connect (or resolve) after a BEGIN (or
/// RESOLVE) before the stream is closed with END TIMEOUT.
///
/// C-tor's exit has no timer of its own: its non-blocking connect ends
/// when the kernel gives up (about two minutes of SYN retries on Linux),
/// its DNS after `exit_dns_timeout` (1 s) times `exit_dns_num_attempts`
/// (2), and a C-tor client gives up after 10 s, then 15 s on later
/// attempts (`compute_retry_timeout`), sending END. 20 s is past any C-tor
/// client's wait, so an honest client always ends a slow stream first
/// (its END arrives, nothing races it), and it bounds what a client that
/// never ends its streams (to addresses that never answer) can hold.
pub const EXIT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a stream the client ended may wait for the driver to take the
/// client's last bytes for the destination: C-tor holds a connection open
/// to flush it for 15 s without progress (`connection_expire_held_open`).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

/// Limits of one circuit's [`ExitStreamMap`](super::ExitStreamMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitConfig {
    /// Streams held at once (any state, including closed streams whose
    /// `Closed` event the driver has not taken yet). Default
    /// [`DEFAULT_MAX_STREAMS`].
    pub max_streams: usize,
    /// Bytes from the destination a stream buffers before `write` takes
    /// no more (the driver then stops reading the socket). Default 64 KiB.
    pub dest_buffer: usize,
    /// The same bound over all the circuit's streams together, so that a
    /// client that never reads cannot make the exit hold
    /// `max_streams × dest_buffer`. Default 1 MiB.
    pub dest_buffer_total: usize,
    /// Bytes from the client waiting for the destinations, over all
    /// streams. Each stream is bounded by its flow control; this bounds
    /// their sum. A DATA cell that would pass it closes its stream with
    /// END RESOURCELIMIT. Default 16 MiB.
    pub to_dest_total: usize,
    /// Wait for `connected`, `refuse` or `resolved` after a BEGIN or
    /// RESOLVE. Default [`EXIT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Wait for the driver to take a stream's last bytes after the client
    /// ended it. Default [`FLUSH_TIMEOUT`].
    pub flush_timeout: Duration,
    /// Closed streams whose late cells we account for; the oldest are
    /// forgotten first. Default 1024.
    pub max_half_closed: usize,
    /// With congestion control, how long after our END the client's DATA,
    /// XON and XOFF are still dropped quietly rather than counted as
    /// invalid (as the client side, C-tor's half-closed streams). Default
    /// 60 s.
    pub half_closed_linger: Duration,
    /// Largest DATA body we send: 498 (`Data::MAXLEN`, relay cell format
    /// v0). Values outside 1..=498 are clamped.
    pub max_data_len: usize,
    /// We exit at all (default true). A relay that is not an exit but
    /// serves directory requests takes the exit role for BEGIN_DIR alone
    /// and answers BEGIN and RESOLVE as a C-tor non-exit does: BEGIN to a
    /// name END RESOLVEFAILED (`dns_resolve_impl`: "If we're a non-exit,
    /// don't even do DNS lookups"), BEGIN to an IP literal END EXITPOLICY
    /// with the address (`connection_exit_connect`, policy `reject *:*`),
    /// RESOLVE of a name a RESOLVED error; an IP literal's RESOLVE is
    /// answered with the address, as an exit does. The rules before those
    /// (port 0, a client's first hop, IPv4-not-ok) are the exit's.
    pub exits: bool,
    /// We serve directory requests: BEGIN_DIR opens a stream to our
    /// directory server; otherwise it is answered END NOTDIRECTORY (C-tor
    /// `directory_permits_begindir_requests`). Default off.
    pub serves_directory: bool,
    /// We exit to IPv6 (C-tor `IPv6Exit`, default off): without it
    /// IPv6-preferred and IPv6-ok are cleared from BEGIN flags, IPv4-not-ok
    /// is answered END EXITPOLICY, and IPv6 literals are refused with
    /// EXITPOLICY (C-tor `connection_exit_begin_conn`,
    /// `my_exit_policy_rejects`).
    pub ipv6_exit: bool,
    /// The circuit came over a channel from a client (not an authenticated
    /// relay): we are its first hop, and C-tor refuses BEGIN there with
    /// END TORPROTOCOL ("Don't let clients use us as a single-hop proxy").
    /// BEGIN_DIR and RESOLVE are still answered. Default off.
    pub client_first_hop: bool,
    /// Take part in Braid's live stream migration (proposal 001 §4):
    /// answer STREAM_REGISTER with a token and take MIGRATE. Advertise
    /// `BraidMigrate=1` with it; without it those messages are ignored as
    /// unknown commands (tor-spec §6.1). Default off.
    pub migrate: bool,
}

impl Default for ExitConfig {
    fn default() -> Self {
        ExitConfig {
            max_streams: DEFAULT_MAX_STREAMS,
            dest_buffer: 64 * 1024,
            dest_buffer_total: 1024 * 1024,
            to_dest_total: 16 * 1024 * 1024,
            connect_timeout: EXIT_CONNECT_TIMEOUT,
            flush_timeout: FLUSH_TIMEOUT,
            max_half_closed: 1024,
            half_closed_linger: Duration::from_secs(60),
            max_data_len: Data::MAXLEN,
            exits: true,
            serves_directory: false,
            ipv6_exit: false,
            client_first_hop: false,
            migrate: false,
        }
    }
}

impl ExitConfig {
    /// `max_data_len` clamped to 1..=498.
    pub(crate) fn data_len(&self) -> usize {
        self.max_data_len.clamp(1, Data::MAXLEN)
    }

    /// Refusals (END or RESOLVED for a stream we never opened) waiting to
    /// be sent: one per stream we could hold, and at least 64.
    pub(crate) fn max_refusals(&self) -> usize {
        self.max_streams.max(64)
    }
}

/// The bound on a stream's bytes for the destination: what flow control
/// lets the client send before it must stop.
///
/// - Fixed windows: the 500-cell window, plus the fewer than ten cells that
///   may wait when we send SENDMEs (tor-spec §7.4).
/// - XON/XOFF: the exit's XOFF limit (`cc_xoff_exit`), up to as much again
///   during the 5 ms before the XOFF goes out, plus the grace the client
///   has after it (proposal 324 §4.1.1; see
///   [`FlowParams::xoff_grace_bytes`](crate::cc::FlowParams::xoff_grace_bytes)).
pub(crate) fn to_dest_limit(mode: &StreamFlowMode) -> usize {
    let cell = u64::from(RELAY_PAYLOAD_SIZE);
    let bytes = match mode {
        StreamFlowMode::Windowed => u64::from(STREAMWINDOW_START + 10) * cell,
        StreamFlowMode::XonXoff { params, .. } => params
            .xoff_exit_bytes
            .saturating_mul(2)
            .saturating_add(params.xoff_grace_bytes),
    };
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::FlowParams;

    #[test]
    fn limits() {
        let c = ExitConfig {
            max_data_len: 9999,
            ..ExitConfig::default()
        };
        assert_eq!(c.data_len(), 498);
        assert_eq!(c.max_refusals(), 512);
        assert_eq!(to_dest_limit(&StreamFlowMode::Windowed), 510 * 498);
        let p = FlowParams::default();
        let want = 2 * p.xoff_exit_bytes + p.xoff_grace_bytes;
        let cc = StreamFlowMode::XonXoff {
            params: p,
            onion: false,
        };
        assert_eq!(to_dest_limit(&cc) as u64, want);
    }
}
