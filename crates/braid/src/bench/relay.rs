//! `braid bench relay`: Braid's exit against C-tor's exit, on one private
//! network, the C-tor client pinned to each in turn (issue 13, part 3).
//!
//! The network ([`setup`]): 3 C-tor authorities; the C-tor relays
//! `relay0` (every circuit's guard), `relay1` (the bulk downloads' middle,
//! `--bulk-shape`, unshaped by default) and `relay2` (the load runs'
//! middle, `--shape`, default 2 MiB/s and 10 ms each way); the C-tor exit
//! `exit0`; the Braid exits `braidexit0` (`kist = true`) and `braidexit1`
//! (`kist = false`, the same relay without KIST); the C-tor client without
//! Conflux (the Braid exits offer none). The exits have no link emulation
//! (a Braid relay cannot have any) and the same BandwidthRate
//! (`--exit-bandwidth`, default none: 1 GiB/s for both). Circuits are
//! pinned through the client's control port (`EntryNodes`,
//! `MiddleNodes`, `ExitNodes`, `StrictNodes`), built by a small download
//! on a fresh SOCKS isolation tag before each measured stream on the same
//! tag, and every such circuit's path is read back (`GETINFO
//! circuit-status`) and checked ([`client`]).
//!
//! 1. Bulk downloads ([`bulk`]): `--reps` downloads of `--size` bytes per
//!    exit (Braid with KIST on, C-tor), alternating, the order flipped
//!    every repetition; MB/s, time to first byte, the exit's CPU time
//!    (`/proc/PID/stat` of the pid the network's pid file records) per
//!    100 MB, and its peak RSS (`VmHWM`) after them.
//! 2. Load runs ([`load`]): per exit (Braid with KIST on and off, C-tor),
//!    `--reps` runs of `--load-streams` streams on as many circuits, bulk
//!    (`--load-bulk-size`) and small (`--load-small-size`) alternately;
//!    the bulk streams start together, the small ones every
//!    `--small-gap-ms` after that; per-stream first byte and throughput,
//!    the small streams' first bytes under load summarised (median, p90).
//! 3. The tables and the targets, met or not, from figures of this
//!    run only ([`report`], [`table`]), and the JSON file (`--json`,
//!    default DIR/bench-relay.json) with every sample.
//!
//! The Braid exits serve their metrics (`[braid_relay] metrics`, ports
//! `--base-port` + 900 and 901); each load run through one records what
//! its KIST did ([`metrics`]), and the table says whether KIST ran on
//! the exit with `kist = true` and not on the other.
//!
//! [`stats`]: the summaries; [`run`]: the whole, the network stopped on
//! errors, Ctrl-C and SIGTERM.

mod bulk;
mod client;
mod load;
mod metrics;
mod report;
mod run;
mod setup;
mod stats;
mod table;

pub(crate) use run::relay;
