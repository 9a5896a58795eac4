//! KIST's socket write limit (Jansen et al., "Never Been KIST", USENIX
//! Security 2014; C-tor `scheduler_kist.c`, `update_socket_info_impl`):
//! a channel's writer hands its socket only what the kernel can send
//! soon, so cells wait in Tor's per-circuit queues, where the circuit
//! priority ([`super::ewma`]) orders them, instead of in the kernel's
//! buffer, where nothing can.
//!
//! The driver reads the socket's `TCP_INFO` (congestion window, unacked
//! segments, MSS) and its unsent bytes (`SIOCOUTQNSD`) every
//! [`KistParams::run_interval`] and lets the writer take at most
//! [`write_limit`] bytes of cells until the next run. Without kernel
//! information it falls back to what the writer's own buffer takes (C-tor:
//! `channel_num_cells_writeable`, the "vanilla" scheduler).

use std::time::Duration;

/// C-tor's `KIST_SCHED_RUN_INTERVAL_DEFAULT`: the consensus parameter
/// `KISTSchedRunInterval`, in milliseconds (range 0 to 100; 0 turns KIST
/// off).
pub const DEFAULT_RUN_INTERVAL: Duration = Duration::from_millis(10);

/// Bytes a cell takes on the wire in a TLS record, as C-tor counts it
/// (`CELL_MAX_NETWORK_SIZE` 514 plus `TLS_PER_CELL_OVERHEAD` 29).
pub const CELL_WIRE_BYTES: usize = 514 + 29;

/// KIST's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KistParams {
    /// How often the limits are recomputed: [`DEFAULT_RUN_INTERVAL`].
    pub run_interval: Duration,
    /// How much beyond what the congestion window can send at once the
    /// kernel may hold, as a fraction of the window (C-tor's
    /// `KISTSockBufSizeFactor`, default 1.0: at most two windows sit in
    /// the kernel, one on the wire and one ready to go).
    pub sock_buf_size_factor: f64,
}

impl Default for KistParams {
    fn default() -> Self {
        KistParams {
            run_interval: DEFAULT_RUN_INTERVAL,
            sock_buf_size_factor: 1.0,
        }
    }
}

impl KistParams {
    /// With the consensus' `KISTSchedRunInterval` (milliseconds, clamped to
    /// 0..=100). `None` if it is 0: KIST off.
    pub fn with_run_interval_param(self, msec: Option<i32>) -> Option<Self> {
        let ms = msec.map_or(10, |m| m.clamp(0, 100));
        (ms > 0).then(|| KistParams {
            run_interval: Duration::from_millis(u64::try_from(ms).unwrap_or(10)),
            ..self
        })
    }
}

/// What the kernel says about a socket (Linux `struct tcp_info` and
/// `SIOCOUTQNSD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketInfo {
    /// `tcpi_snd_cwnd`: the congestion window, in segments.
    pub cwnd: u32,
    /// `tcpi_unacked`: segments sent and not acknowledged.
    pub unacked: u32,
    /// `tcpi_snd_mss`: bytes per segment.
    pub mss: u32,
    /// `SIOCOUTQNSD`: bytes in the socket not sent yet.
    pub notsent: u32,
}

/// Bytes the writer may hand the socket until the next run:
///
/// - with kernel information, the room left in the congestion window,
///   `(cwnd - unacked) * mss`, plus `cwnd * mss * factor` less what already
///   waits unsent in the kernel and in our own buffer (`buffered`), and 0
///   when that is negative (C-tor `update_socket_info_impl`);
/// - without (`info` None: not Linux, or the calls failed), `fallback_cells`
///   cells, what the writer's buffer takes.
pub fn write_limit(
    info: Option<&SocketInfo>,
    buffered: usize,
    params: &KistParams,
    fallback_cells: usize,
) -> usize {
    let Some(i) = info else {
        return fallback_cells.saturating_mul(CELL_WIRE_BYTES);
    };
    let mss = i64::from(i.mss);
    let tcp_space = i64::from(i.cwnd.saturating_sub(i.unacked)) * mss;
    let window = (i64::from(i.cwnd) * mss) as f64 * params.sock_buf_size_factor.max(0.0);
    let extra = clamp_to_i64(window)
        .saturating_sub(i64::from(i.notsent))
        .saturating_sub(i64::try_from(buffered).unwrap_or(i64::MAX));
    let limit = tcp_space.saturating_add(extra);
    usize::try_from(limit.max(0)).unwrap_or(usize::MAX)
}

/// C-tor's `clamp_double_to_int64`, for finite and infinite values.
fn clamp_to_i64(x: f64) -> i64 {
    if x.is_nan() {
        0
    } else if x >= i64::MAX as f64 {
        i64::MAX
    } else if x <= i64::MIN as f64 {
        i64::MIN
    } else {
        x as i64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn limit_is_the_window_room_plus_one_window_less_what_waits() {
        let p = KistParams::default();
        let i = SocketInfo {
            cwnd: 10,
            unacked: 4,
            mss: 1000,
            notsent: 3000,
        };
        // (10 - 4) * 1000 + 10 * 1000 - 3000 - 500
        assert_eq!(write_limit(Some(&i), 500, &p, 0), 12_500);
        // A kernel queue longer than a window and the room: nothing.
        let full = SocketInfo {
            notsent: 40_000,
            ..i
        };
        assert_eq!(write_limit(Some(&full), 0, &p, 0), 0);
        // More unacked than the window (after a loss): no TCP space.
        let lossy = SocketInfo {
            unacked: 20,
            notsent: 0,
            ..i
        };
        assert_eq!(write_limit(Some(&lossy), 0, &p, 0), 10_000);
        // Factor 0: only the room in the window.
        let p0 = KistParams {
            sock_buf_size_factor: 0.0,
            ..p
        };
        assert_eq!(write_limit(Some(&lossy), 0, &p0, 0), 0);
        // No kernel information: the fallback in cells.
        assert_eq!(write_limit(None, 0, &p, 8), 8 * CELL_WIRE_BYTES);
    }

    #[test]
    fn run_interval_from_the_consensus() {
        let p = KistParams::default();
        assert_eq!(
            p.with_run_interval_param(None).unwrap().run_interval,
            DEFAULT_RUN_INTERVAL
        );
        assert_eq!(
            p.with_run_interval_param(Some(250)).unwrap().run_interval,
            Duration::from_millis(100)
        );
        assert!(p.with_run_interval_param(Some(0)).is_none());
        assert!(p.with_run_interval_param(Some(-3)).is_none());
    }

    proptest! {
        /// The limit never passes the room plus one window, and more
        /// waiting never raises it.
        #[test]
        fn limit_is_bounded_and_monotone(
            cwnd in 0u32..100_000, unacked in 0u32..100_000, mss in 0u32..65_536,
            notsent in 0u32..u32::MAX, buffered in 0usize..1 << 30, more in 0u32..1 << 20,
        ) {
            let p = KistParams::default();
            let i = SocketInfo { cwnd, unacked, mss, notsent };
            let l = write_limit(Some(&i), buffered, &p, 0);
            let bound = (u64::from(cwnd.saturating_sub(unacked)) + u64::from(cwnd)) * u64::from(mss);
            prop_assert!(l as u64 <= bound);
            let busier = SocketInfo { notsent: notsent.saturating_add(more), ..i };
            prop_assert!(write_limit(Some(&busier), buffered, &p, 0) <= l);
        }
    }
}
