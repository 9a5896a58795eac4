//! Where a tunnel's legs come from: the plan of one leg (a channel to its
//! guard and its hops), and the [`LegSource`] the client implements for
//! legs the core asks for later.

use std::future::Future;
use std::pin::Pin;

use braid_core::circuit::HopTarget;
use braid_core::tunnel::LegSpec;
use braid_dir::RelayId;

use super::handle::TunnelError;
use crate::channel::{ChannelHandle, CircuitIo};

/// One leg to build: a channel to its guard, the hops from that guard to
/// the exit, and its relays (nicknames and identities, guard first).
#[derive(Debug)]
pub struct LegPlan {
    /// A channel to the guard.
    pub channel: ChannelHandle,
    /// The hops, guard first.
    pub hops: Vec<HopTarget>,
    /// Nicknames, guard first.
    pub names: Vec<String>,
    /// Identities, guard first.
    pub ids: Vec<RelayId>,
}

/// A future of a new leg's plan.
pub type LegFuture = Pin<Box<dyn Future<Output = Result<LegPlan, TunnelError>> + Send>>;

/// Where a set gets the paths of the legs its core asks for, and whom it
/// tells about legs that worked or failed.
pub trait LegSource: Send + Sync + std::fmt::Debug {
    /// A leg to `exit` whose guard and middle are none of `used` (prop 329
    /// §2.2: legs share no guard or middle).
    fn new_leg(&self, exit: RelayId, used: Vec<RelayId>) -> LegFuture;
    /// The leg along `ids` failed, and the relay at index `suspect` (never
    /// the guard, whose reachability the guard set judges) is the likely
    /// culprit ([`braid_core::tunnel::TunnelError::suspect`]).
    fn leg_failed(&self, ids: &[RelayId], suspect: usize);
    /// The leg along `ids` was built: its guard works (guard-spec §4.8).
    fn leg_built(&self, ids: &[RelayId]);
}

/// A leg's circuit registered on its channel: the spec the core builds it
/// from, the channel queues, and the relays.
#[derive(Debug)]
pub(crate) struct OpenedLeg {
    pub(crate) spec: LegSpec,
    pub(crate) io: CircuitIo,
    pub(crate) names: Vec<String>,
    pub(crate) ids: Vec<RelayId>,
}

/// Register a circuit for `plan` on its channel.
pub(crate) async fn open_leg(plan: LegPlan) -> Result<OpenedLeg, TunnelError> {
    if plan.hops.is_empty() {
        return Err(TunnelError::Path("a circuit needs at least one hop".into()));
    }
    let (circ_id, io) = plan.channel.open_circuit().await?;
    Ok(OpenedLeg {
        spec: LegSpec {
            circ_id,
            hops: plan.hops,
        },
        io,
        names: plan.names,
        ids: plan.ids,
    })
}

/// A relay identity as the directory names it.
pub(crate) fn relay_id(rsa: &tor_llcrypto::pk::rsa::RsaIdentity) -> RelayId {
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(rsa.as_bytes());
    RelayId::new(bytes)
}
