//! Limits and timeouts of a channel.

use std::time::Duration;

use braid_core::channel::handshake::DEFAULT_HANDSHAKE_TIMEOUT;
use braid_core::channel::padding::PaddingParams;
use tor_cell::chancell::msg::DestroyReason;

/// Limits and timeouts of one channel. Every queue is bounded.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// How long TCP connect, TLS and the link handshake may take together.
    pub connect_timeout: Duration,
    /// Cells the reactor may queue toward one circuit. A circuit that lets
    /// it fill is closed (see
    /// [`overflow_reason`](Self::overflow_reason)): the channel never waits
    /// for a slow circuit, and never buffers for it without limit.
    pub circuit_inbound_queue: usize,
    /// Cells one circuit may queue toward the reactor; the circuit's
    /// sender waits when it is full.
    pub circuit_outbound_queue: usize,
    /// Most cells the reactor takes from circuits before it writes them
    /// out (one TLS write and flush per batch).
    pub write_batch_cells: usize,
    /// Bytes of encoded cells past which the reactor stops taking cells
    /// from circuits until the socket drains.
    pub write_buffer_limit: usize,
    /// Requests (open, close, shutdown) that may wait for the reactor.
    pub control_queue: usize,
    /// The reason in the DESTROY sent for a circuit whose inbound queue
    /// overflowed. RESOURCELIMIT by default, which tells the relay why;
    /// tor-spec §5.4 has clients send NONE to avoid leaking their version,
    /// which this can be set to.
    pub overflow_reason: DestroyReason,
    /// How long a local shutdown may take to flush and send TLS
    /// close_notify.
    pub shutdown_timeout: Duration,
    /// If set, and the relay has not answered our VERSIONS after this long,
    /// send one empty VPADDING cell (allowed at any time, tor-spec §4).
    ///
    /// Why: C-tor relays (OpenSSL, TLS 1.3) send their session tickets
    /// right after the TLS handshake, and their answer to VERSIONS then
    /// waits in Nagle's algorithm until our kernel acknowledges the
    /// tickets, which delayed ACK puts off for 40 ms. Any bytes from us
    /// carry that ACK at once: measured on loopback against C-tor 0.4.9,
    /// the link handshake takes ~2 ms with a 1 ms nudge instead of ~42 ms.
    /// Off by default: C-tor clients do not send it, so it sets us apart
    /// on the wire.
    pub handshake_nudge: Option<Duration>,
    /// After the relay destroys one of our circuits while others stay on
    /// the channel, open and at once close a one-hop CREATE_FAST circuit,
    /// so that the relay flushes DESTROYs it still holds for the others.
    ///
    /// Why: C-tor 0.4.9 queues a DESTROY in the channel's circuitmux and
    /// writes it at once only if the connection's output buffer is empty
    /// (`circuitmux_append_destroy_cell`); a second DESTROY queued behind
    /// the first waits until some circuit on the channel queues a cell
    /// (which is what wakes its scheduler). When a middle dies under two
    /// of our circuits through the same guard, we hear of the first and,
    /// on an idle channel, never of the second: a Conflux leg that looks
    /// alive and is not. The CREATED_FAST answer goes through the
    /// circuit queue and wakes the scheduler, which then writes the held
    /// DESTROYs. Seen on loopback with 0.4.9.11: without the probe the
    /// second leg's DESTROY had not come after 30 s; with it, within
    /// milliseconds.
    pub destroy_probe: bool,
    /// Connection padding (padding-spec §2): the consensus' `nf_*`
    /// parameters ([`PaddingParams::from_consensus`]). Padding starts once
    /// a full circuit uses the channel; a channel without circuits closes
    /// after 180-270 s, as C-tor clients' do.
    pub padding: PaddingParams,
}

/// Default inbound queue per circuit (arti's channel-to-circuit queue).
pub const DEFAULT_CIRCUIT_QUEUE: usize = 128;

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            connect_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            circuit_inbound_queue: DEFAULT_CIRCUIT_QUEUE,
            circuit_outbound_queue: DEFAULT_CIRCUIT_QUEUE,
            write_batch_cells: 32,
            write_buffer_limit: 64 * 1024,
            control_queue: 32,
            overflow_reason: DestroyReason::RESOURCELIMIT,
            shutdown_timeout: Duration::from_secs(5),
            handshake_nudge: None,
            destroy_probe: true,
            padding: PaddingParams::default(),
        }
    }
}

impl ChannelConfig {
    /// The default configuration with `timeout` for the whole connect.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The queue sizes, each raised to at least 1 (tokio's bounded queues
    /// need it).
    pub(crate) fn sanitized(mut self) -> Self {
        self.circuit_inbound_queue = self.circuit_inbound_queue.max(1);
        self.circuit_outbound_queue = self.circuit_outbound_queue.max(1);
        self.write_batch_cells = self.write_batch_cells.max(1);
        self.control_queue = self.control_queue.max(1);
        self
    }
}
