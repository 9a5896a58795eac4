//! What is known about a tunnel: what it was built through and its
//! status, and what its task reports about itself (per tunnel and per leg
//! figures for `braid status`, the metrics endpoint, demos and benchmarks).

use std::collections::BTreeMap;

use braid_core::circuit::HopFigures;
use braid_core::conflux::LegStats;
use braid_core::ids::LegKey;
use braid_core::tunnel::{ClientTunnel, ResumeStats};

/// A snapshot of one tunnel, taken by its task.
#[derive(Debug, Clone)]
pub struct TunnelReport {
    /// The tunnel's id, unique in this process (creation order).
    pub id: u64,
    /// A Conflux set (else a single circuit, reported as one leg).
    pub conflux: bool,
    /// Every leg the tunnel had, closed ones too, in launch order.
    pub legs: Vec<LegReport>,
    /// The reorder queue (Conflux only).
    pub reorder: Option<ReorderReport>,
    /// Streams open or opening.
    pub streams: usize,
    /// The connected streams the application holds.
    pub stream_list: Vec<StreamReport>,
    /// Resumption and migration figures (Braid proposal 001; zero for a
    /// tunnel without them).
    pub resume: ResumeStats,
}

/// One connected stream of a tunnel, as `braid streams` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamReport {
    /// The application's stream, unique in this process; it keeps its
    /// number when it moves to another tunnel.
    pub app: u64,
    /// Its stream id on this tunnel.
    pub id: u16,
    /// It may be moved now (the exit gave it a token, Braid proposal 001
    /// §4.1).
    pub migratable: bool,
    /// It is moving (to or from this tunnel).
    pub migrating: bool,
    /// Bytes the application read from it, over every tunnel it was on.
    pub bytes_read: u64,
    /// Bytes the application wrote to it, over every tunnel.
    pub bytes_written: u64,
    /// Times it moved.
    pub moves: u32,
    /// Bytes received and waiting for the application now.
    #[serde(default)]
    pub buffered: u64,
    /// The most that may wait (more closes the stream: the exit broke flow
    /// control).
    #[serde(default)]
    pub buffer_limit: u64,
}

/// One leg of a tunnel.
#[derive(Debug, Clone)]
pub struct LegReport {
    /// The leg's relays by nickname, guard first.
    pub path: Vec<String>,
    /// Still open.
    pub open: bool,
    /// Its last hop's figures (RTT, cwnd, inflight, cells).
    pub figures: Option<HopFigures>,
    /// What the leg carried as part of a Conflux set (bytes, SWITCHes,
    /// sequence numbers); `None` for a single circuit or an unlinked leg.
    pub stats: Option<LegStats>,
    /// This leg replaced one that closed.
    pub replacement: bool,
    /// CONFLUX_LINK to LINKED (prop 329 §2.4.2); the only RTT a leg that
    /// only receives has, since congestion control measures it from our
    /// DATA's SENDMEs.
    pub link_rtt: Option<std::time::Duration>,
}

/// A Conflux set's reorder queue.
#[derive(Debug, Clone, Copy)]
pub struct ReorderReport {
    /// Bytes held now.
    pub bytes: usize,
    /// The most bytes ever held.
    pub peak_bytes: usize,
    /// The byte limit; going over it closes the set.
    pub limit_bytes: usize,
    /// Messages waiting for a gap to fill.
    pub waiting: usize,
}

impl TunnelReport {
    /// `tunnel`'s figures, every leg launched so far included, each leg
    /// named from `names`.
    pub(crate) fn of(
        id: u64,
        tunnel: &ClientTunnel,
        names: &BTreeMap<LegKey, Vec<String>>,
        streams: usize,
        stream_list: Vec<StreamReport>,
    ) -> Self {
        TunnelReport {
            id,
            conflux: tunnel.is_conflux(),
            legs: tunnel
                .leg_snapshots()
                .into_iter()
                .map(|s| LegReport {
                    path: names.get(&s.leg).cloned().unwrap_or_default(),
                    open: s.open,
                    figures: s.figures,
                    stats: s.stats,
                    replacement: s.replacement,
                    link_rtt: s.link_rtt,
                })
                .collect(),
            reorder: tunnel.reorder_snapshot().map(|r| ReorderReport {
                bytes: r.bytes,
                peak_bytes: r.peak_bytes,
                limit_bytes: r.limit_bytes,
                waiting: r.waiting,
            }),
            streams,
            stream_list,
            resume: tunnel.resume_stats(),
        }
    }

    /// DATA payload bytes received over all legs (Conflux), or DATA cells
    /// received times 498 for a single circuit.
    pub fn data_bytes_received(&self) -> u64 {
        self.legs.iter().map(LegReport::data_bytes_received).sum()
    }
}

impl LegReport {
    /// DATA payload bytes received on this leg: exact on a Conflux leg,
    /// DATA cells × 498 on a single circuit.
    pub fn data_bytes_received(&self) -> u64 {
        match (&self.stats, &self.figures) {
            (Some(s), _) => s.data_bytes_received,
            (None, Some(f)) => f.data_received.saturating_mul(498),
            (None, None) => 0,
        }
    }

    /// DATA payload bytes sent on this leg, as [`Self::data_bytes_received`].
    pub fn data_bytes_sent(&self) -> u64 {
        match (&self.stats, &self.figures) {
            (Some(s), _) => s.data_bytes_sent,
            (None, Some(f)) => f.data_sent.saturating_mul(498),
            (None, None) => 0,
        }
    }
}

/// The state of a tunnel, as its task reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelStatus {
    /// Being built.
    Building,
    /// Built; streams can be opened.
    Open,
    /// Gone, and why: the cause (what the client acts on, Braid proposal
    /// 001 §5.3), its text for display, and the middles its legs used.
    Closed(braid_core::tunnel::TunnelClose),
}

/// What is known about a tunnel from its creation.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    /// The legs (one for a single circuit), each its relays' nicknames,
    /// first hop first.
    pub legs: Vec<Vec<String>>,
    /// The exit's RSA identity.
    pub exit: braid_dir::RelayId,
    /// The exit's port policy summary, to pick tunnels for a port.
    pub exit_policy: braid_dir::PortPolicy,
    /// Its streams are migratable: the exit advertises `BraidMigrate=1`
    /// and the client's `[braid] migrate` is on (Braid proposal 001 §4).
    pub migrate: bool,
}

impl TunnelInfo {
    /// `guard > middle > exit`, legs separated by ` | `.
    pub fn describe(&self) -> String {
        self.legs
            .iter()
            .map(|l| l.join(" > "))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}
