//! From the directory's [`Relay`] to the circuit's [`HopTarget`].

use std::net::SocketAddr;

use braid_core::circuit::HopTarget;
use braid_dir::Relay;
use tor_llcrypto::pk::curve25519;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;
use tor_protover::Protocols;

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
