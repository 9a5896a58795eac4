//! The directory bootstrap as a sans-IO state machine: which document to
//! fetch from where, what to make of each answer, when to retry and when to
//! refresh. The driver does the HTTP and the disk; this decides.
//!
//! Sources (dir-spec §5, C-tor's client): fallback directories over
//! BEGIN_DIR on one-hop circuits, then directory caches among our guards
//! once a consensus is known, and the authorities' DirPorts only when none
//! of those answers. Bodies come compressed (deflate, gzip, zstd) under a
//! hard cap; a held consensus is named so a cache can answer 304 or with a
//! diff.
//!
//! Order of work (dir-spec §5): the microdesc consensus first; then the
//! certificates of the authorities that signed it, if we lack them; then,
//! once the consensus verifies, the microdescriptors it lists. A verified
//! consensus is refreshed at a random time between fresh-until and
//! valid-until (dir-spec §5.1); a failed fetch is retried on the document's
//! download schedule (dir-spec §5.5); a consensus up to a day outside its
//! validity is taken with a warning naming the clock skew (C-tor).
//!
//! Inputs: [`DirBootstrap::handle_cached`], [`DirBootstrap::handle_response`],
//! [`DirBootstrap::handle_timeout`]. Outputs: [`DirBootstrap::poll_request`],
//! [`DirBootstrap::poll_event`], [`DirBootstrap::poll_timeout`]. Time is
//! always passed in.
//!
//! - [`events`]: requests, progress and events.
//! - [`paths`]: the request paths (dir-spec §4.3).
//! - [`requests`]: the request headers and microdescriptor batch sizes.
//! - [`sources`]: caches, fallbacks, authorities: whom to ask next.
//! - [`state`]: the state machine; `answers`: what it makes of answers.
//! - [`enough`]: when the directory is enough to build circuits.
//! - [`schedule`]: download schedules (dir-spec §5.5).
//! - [`timing`]: consensus fetch times (dir-spec §5.1) and clock skew.

mod answers;
pub mod enough;
pub mod events;
pub mod paths;
pub mod requests;
pub mod schedule;
pub mod sources;
pub mod state;
pub mod timing;

pub use enough::PathsAvailable;
pub use events::{DirEvent, DirRequest, Phase, Progress, RequestId};
pub use requests::{MAX_MDS_BEGIN_DIR, MAX_MDS_DIRPORT, md_batch_size};
pub use schedule::{DownloadSchedule, ScheduleParams};
pub use sources::{DirSource, OneHopTarget, SourceKind};
pub use state::{DirBootstrap, MAX_MD_REQUESTS_IN_FLIGHT, MD_ATTEMPTS};
pub use timing::{CERT_WAIT, CLOCK_TOLERANCE, ClockSkew, Hms};

#[cfg(test)]
mod fetch_tests;
#[cfg(test)]
mod test_net;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod time_loop_tests;
