//! The server side of a directory cache, sans IO (dir-spec §4, §6;
//! tor-spec §6.2 BEGIN_DIR): what a relay answers to the directory
//! requests C-tor clients and relays send it over BEGIN_DIR streams, built
//! as C-tor's `dircache.c` builds it, from documents the caller fetched
//! and checked.
//!
//! - [`request`]: one HTTP/1.0 request head, bounded.
//! - [`cache`]: the documents served (consensus, certificates,
//!   microdescriptors), bounded.
//! - [`mod@answer`]: C-tor's URL table.
//! - [`response`]: the answers' heads and shared bodies.
//! - [`session`]: one directory stream, bytes in, one answer out.
//! - [`schedule`]: what a cache fetches and when (dir-spec §4.3, §5.1).
//! - [`date`]: HTTP dates.

pub mod answer;
pub mod cache;
pub mod date;
pub mod diffs;
pub mod request;
pub mod response;
pub mod schedule;
pub mod session;

pub use answer::answer;
pub use cache::{CachedCert, CachedConsensus, DirCache};
pub use request::{MAX_HEAD_BYTES, Method, Request, RequestParser};
pub use response::{DocType, Response, Spool};
pub use schedule::{MDS_PER_REQUEST, microdesc_paths, next_consensus_fetch};
pub use session::{Outcome, STALL_TIMEOUT, Session};

#[cfg(test)]
mod tests;
