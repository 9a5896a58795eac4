//! From the directory's [`Relay`] to the circuit's [`HopTarget`], and the
//! paths of tunnel legs: the plan of one leg (a channel to its guard and
//! its hops) and the [`LegSource`] a tunnel gets the legs its core asks
//! for from.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use braid_core::circuit::HopTarget;
use braid_dir::{Relay, RelayId};
use tor_llcrypto::pk::curve25519;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;
use tor_protover::Protocols;

use crate::channel::ChannelHandle;
use crate::error::TunnelError;

/// The hop target for `relay`, or `None` if the directory lacks its ntor key
/// or Ed25519 identity (such a relay cannot be extended to).
///
/// ntor-v3 is used with relays that advertise `Relay=4` (tor-spec §9.3);
/// congestion control is requested only from exits with `FlowCtrl=2`, as
/// C-tor does (proposal 324 §4).
pub fn hop_target(relay: &Relay, is_exit: bool) -> Option<HopTarget> {
    let ed = relay.ed_id?;
    let key = relay.ntor_key?;
    let ntor_v3 = supports(relay, "Relay=4");
    Some(HopTarget {
        rsa_id: RsaIdentity::from(*relay.id.as_bytes()),
        ed_id: Ed25519Identity::from(*ed.as_bytes()),
        ntor_onion_key: curve25519::PublicKey::from(key),
        addr: SocketAddr::V4(relay.addr),
        ntor_v3,
        request_cc: is_exit && ntor_v3 && supports(relay, "FlowCtrl=2"),
    })
}

fn supports(relay: &Relay, needed: &str) -> bool {
    needed
        .parse::<Protocols>()
        .is_ok_and(|n| relay.supports_all(&n))
}

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
    /// The leg along `ids` was built in `took`: its guard works
    /// (guard-spec §4.8), and the time counts for the learned build
    /// timeout (path-spec §2.4).
    fn leg_built(&self, ids: &[RelayId], took: std::time::Duration);
    /// The leg along `ids` timed out after `hops_done` hops (path-spec
    /// §2.4). Nothing by default.
    fn leg_timed_out(&self, ids: &[RelayId], hops_done: usize) {
        let _ = (ids, hops_done);
    }
    /// The build timeout for the next leg of `hops` hops; `None`: the
    /// tunnel's own. `None` by default.
    fn build_timeout(&self, hops: usize) -> Option<std::time::Duration> {
        let _ = hops;
        None
    }
    /// Tunnel `tunnel` keeps losing legs: move its streams elsewhere if
    /// they can (Braid live stream migration). Nothing by default.
    fn tunnel_failing(&self, tunnel: u64) {
        let _ = tunnel;
    }
}

/// A relay identity as the directory names it.
pub(crate) fn relay_id(rsa: &RsaIdentity) -> RelayId {
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(rsa.as_bytes());
    RelayId::new(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_dir::{Ed25519Id, RelayId};

    fn relay(protos: &str) -> Relay {
        let mut r = Relay::new(
            RelayId::new([1; 20]),
            "r",
            "127.0.0.1:9001".parse().unwrap(),
        );
        r.protocols = protos.parse().unwrap();
        r.ed_id = Some(Ed25519Id::new([2; 32]));
        r.ntor_key = Some([9; 32]);
        r
    }

    #[test]
    fn protocols_decide_handshake_and_cc() {
        let t = hop_target(&relay("Relay=2-4 FlowCtrl=1-2"), true).unwrap();
        assert!(t.ntor_v3 && t.request_cc);
        let t = hop_target(&relay("Relay=2-4 FlowCtrl=1-2"), false).unwrap();
        assert!(t.ntor_v3 && !t.request_cc);
        let t = hop_target(&relay("Relay=2-3 FlowCtrl=1-2"), true).unwrap();
        assert!(!t.ntor_v3 && !t.request_cc);
        let mut r = relay("Relay=2-4");
        r.ntor_key = None;
        assert!(hop_target(&r, false).is_none());
    }
}
