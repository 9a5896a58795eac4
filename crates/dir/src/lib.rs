//! Path and guard selection for Braid.
//!
//! This crate holds the pure decision logic of a Tor client's path building:
//! no IO and no clock of its own. Callers pass in the relays of the current
//! consensus (as [`Relay`]s, whatever parser produced them), the consensus
//! [`BandwidthWeights`], the current time and a random number generator, so
//! every decision can be reproduced in tests with a seeded RNG.
//!
//! - [`relay`]: the relay model: identities, flags, exit-policy summaries.
//! - [`weights`]: bandwidth weights (dir-spec §3.4.1, §3.8.3; path-spec §2.2).
//! - [`path`]: choosing guard, middle and exit under the restrictions of
//!   path-spec §2.2, and Conflux leg sets sharing one exit.
//! - [`restrict`]: node restrictions (entry, middle and exit node lists,
//!   like C-tor's `EntryNodes`, `MiddleNodes`, `ExitNodes`).
//! - [`guard`]: the guard state machine of guard-spec §4, with persistence.
//! - [`build_timeout`]: the learned circuit build timeout (path-spec §2.4).
//! - [`authority`]: authorities and fallback mirrors, built in for the
//!   public network.
//! - [`bootstrap`]: the sans-IO directory bootstrap: what to fetch, from
//!   where, when to retry and refresh, progress.
//! - [`documents`]: parsing and verifying consensus, authority certificates
//!   and microdescriptors (tor-netdoc), with `now` passed in.
//! - [`netdir`]: a verified consensus joined with its microdescriptors, as
//!   [`Relay`]s for path selection.
//! - [`descriptor`]: a relay's server descriptor: its fields, building and
//!   signing it, and the upload schedule.
//! - [`serve`]: a directory cache's server side: requests over BEGIN_DIR
//!   answered from the documents the caller holds.
//! - [`fetch`]: a client fetch: the HTTP request, compressed responses
//!   and their cap, consensus diffs.
//! - [`error`]: the error types.

pub mod authority;
pub mod bootstrap;
pub mod build_timeout;
pub mod descriptor;
pub mod documents;
pub mod error;
pub mod fetch;
pub mod guard;
mod guard_params;
#[cfg(test)]
mod guard_recovery_tests;
pub mod netdir;
pub mod path;
pub mod relay;
pub mod restrict;
pub mod serve;
pub mod weights;

pub use authority::{Authority, DirConfig, Fallback};
pub use bootstrap::{
    DirBootstrap, DirEvent, DirRequest, DirSource, OneHopTarget, Phase, Progress, RequestId,
    SourceKind,
};
pub use documents::{Lifetime, VerifiedConsensus};
pub use error::{
    DocError, DocKind, Error, GuardError, IdParseError, NodeSpecError, PathError, PolicyParseError,
    Rejections, ServeError, WeightsError,
};
pub use guard::{
    GuardChoice, GuardFilter, GuardParams, GuardSet, GuardUsage, Reachability, SuccessOutcome,
    retry_interval,
};
pub use netdir::NetDir;
pub use path::{
    Path, PathConfig, choose_conflux_legs, choose_exit, choose_guard, choose_middle, choose_path,
    conflicting_ids, conflux_exit_protocols,
};
pub use relay::{Ed25519Id, PortPolicy, PortRange, Relay, RelayFlags, RelayId};
pub use restrict::{NodeRestrictions, NodeSpec};
pub use weights::{BandwidthWeights, FlagClass, Position, WeightKey};
