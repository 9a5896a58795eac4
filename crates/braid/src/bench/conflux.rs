//! `braid bench conflux`: Braid's Conflux sets against each leg alone and
//! against the C-tor client's Conflux sets, over middles with different
//! links.
//!
//! Each scenario launches its own private network: `k` guards (`relay0`
//! .. `relay{k-1}`, unshaped), `k` middles (`relay{k}` ..
//! `relay{2k-1}`, shaped as the scenario says), one exit (`exit0`,
//! unshaped), 3 authorities, the file server and the C-tor client. Every
//! client is pinned to those relays: Braid with `[braid] entry_nodes`,
//! `middle_nodes`, `exit_nodes`, the C-tor client with `EntryNodes`,
//! `MiddleNodes`, `ExitNodes` (and, for 3 legs, the consensus parameter
//! `cfx_num_legs_set=3` voted by the authorities' `ConsensusParams`, since
//! C-tor takes its set size from the consensus only).
//!
//! Link emulation (the testnet shaper): a middle's rate caps each
//! direction of its access link, and its delay is added once per direction
//! of that link. A circuit crosses a middle's link twice each way (in from
//! the exit, out to the guard, and back), so a middle with delay `D` adds
//! `2D` to each one-way trip and `4D` to the circuit's round trip; its rate
//! caps the circuit's throughput.
//!
//! Then, alternating the order every repetition as `bench single` does,
//! each client downloads and/or uploads (`--direction download|upload|both`,
//! default both), every transfer checked by SHA-256 (the file server checks
//! an upload's and answers its digest):
//! 1. each leg alone: a Braid single circuit pinned to `guard_i > middle_i
//!    > exit`, whose throughput is the leg's capacity that way;
//! 2. Braid Conflux with each scheduler (minrtt, lowrtt, ecf);
//! 3. the C-tor client's Conflux set (fresh SOCKS credentials each time).
//!
//! The two directions answer different questions. A download is split
//! across the legs by the C-tor exit's scheduler (prop 329 §3: the sender
//! schedules), so Braid's scheduler only places the request and SWITCHes:
//! downloads compare Braid's receive side (reordering, flow control) with
//! C-tor's. An upload is split by the client's scheduler, so uploads are
//! where Braid's schedulers differ, and how its default is chosen.
//!
//! Figures per direction. A download's throughput is its bytes over the
//! time from opening the SOCKS connection to the last byte, and its first
//! byte is the time to the first body byte. An upload's throughput is its
//! bytes over the time from the SOCKS connection's success (the stream's
//! CONNECTED) to the server's answer ([`Upload::mb_per_s`]), and the
//! first-byte column holds its connect time instead (SOCKS and BEGIN to
//! CONNECTED: an upload sends at once). The reorder queue that matters for
//! an upload is the exit's, which the client cannot see: upload rows have
//! no reorder peak, and the BDP (each leg's download capacity times its
//! RTT) is only set against downloads.
//!
//! Braid runs as `braid proxy` children with `--metrics`; `/metrics` is
//! scraped every 100 ms during each Braid transfer for per-leg DATA bytes
//! (received for a download, sent for an upload: [`scrape::Direction`]),
//! RTT and the reorder queue. C-tor's per-leg bytes come from `CIRC_BW`
//! events: `READ` for a download, `WRITTEN` for an upload.
//!
//! Short uploads (`--short-size`, default 1 MB; `--short-reps`, default
//! 10, 0 for none). Bulk transfers show a scheduler's steady state; its
//! handling of a transfer's end (ECF keeps the last cells off a slower leg
//! when the faster one alone would deliver them sooner) shows in transfers
//! short enough for the end to be much of them, and too large for the fast
//! leg's window alone (100 kB went wholly on the fast leg of a warm set
//! with every scheduler). So after the bulk
//! repetitions every client makes `short-reps` uploads of `short-size`
//! bytes, in rounds over the clients whose order alternates as above,
//! each checked by SHA-256. Completion time is the time from the SOCKS
//! connection's success (CONNECTED) to the server's answer
//! (`Upload::elapsed - Upload::connected`); each client gets its mean,
//! median, range and failures, and each scenario the Braid scheduler of
//! lowest median. Braid's proxies keep one set per SOCKS isolation key, so
//! its uploads go one after another over the set the bulk part warmed (as
//! a browser's would); the C-tor client gets fresh SOCKS credentials, so a
//! prebuilt set, each time. Braid's per-leg DATA bytes sent come from one
//! scrape before and one after each short upload (none during it);
//! C-tor's from `CIRC_BW WRITTEN`. When no bulk uploads run
//! (`--direction download`), each client warms up with an upload too.
//!
//! The code: [`scenario`] (the scenarios, who transfers), [`run`] (a
//! scenario's network, clients, warm-up and repetitions), [`transfer`]
//! (one checked transfer and what each leg carried), [`stats`] (rows, leg
//! capacities and RTTs, the BDP, the targets), [`report`] (the JSON
//! report), [`table`] and [`plot`] (what is printed and drawn).
//!
//! [`Upload::mb_per_s`]: braid_testnet::download::Upload::mb_per_s
//! [`scrape::Direction`]: super::scrape::Direction

#[cfg(test)]
mod fixtures;
mod plot;
mod report;
mod run;
mod scenario;
mod stats;
mod table;
mod transfer;

pub(crate) use run::conflux;
