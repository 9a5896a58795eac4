//! Circuit building: who a hop is, the handshake we run with it, and the
//! cells that carry the handshake (tor-spec §5.1, §5.1.2; proposal 332).
//!
//! A [`HopTarget`] describes a relay as the directory does: identities,
//! ntor onion key, ORPort, and two capabilities. [`start`] picks the
//! handshake (ntor-v3, CREATE2 type 3, when the relay speaks `Relay=4`;
//! ntor, type 2, otherwise), with the congestion control request extension
//! of proposal 324 when asked for and allowed, and returns the onionskin;
//! [`PendingHandshake::finish`] checks the relay's reply and yields the
//! hop's tor1 keys and, if the relay accepted congestion control, its
//! `sendme_inc`. [`extend2`] wraps an onionskin in an EXTEND2 message with
//! the target's link specifiers.

use std::net::SocketAddr;

use rand::CryptoRng;
use tor_cell::chancell::msg::HandshakeType;
use tor_cell::relaycell::msg::Extend2;
use tor_linkspec::{EncodedLinkSpec, LinkSpec};
use tor_llcrypto::pk::curve25519;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use super::error::CircError;
use crate::cc::{CcAlg, CcParams};
use crate::crypto::Tor1Keys;
use crate::crypto::extensions::{self, CircResponseExt};
use crate::crypto::fast::FastClientState;
use crate::crypto::ntor::{self, NtorClientState, NtorPublicKey};
use crate::crypto::ntor_v3::{self, NtorV3ClientState, NtorV3PublicKey};
use crate::ids::HopNum;

/// A relay to add to a circuit, as the directory describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopTarget {
    /// RSA identity digest (legacy identity, link specifier type 2).
    pub rsa_id: RsaIdentity,
    /// Ed25519 identity (link specifier type 3; ntor-v3's `ID`).
    pub ed_id: Ed25519Identity,
    /// The relay's current ntor onion key (`B`).
    pub ntor_onion_key: curve25519::PublicKey,
    /// The ORPort (link specifier type 0 or 1). Unused for the first hop,
    /// whose channel is already open.
    pub addr: SocketAddr,
    /// The relay supports the ntor-v3 handshake (subprotocol `Relay=4`,
    /// tor-spec §9.3).
    pub ntor_v3: bool,
    /// Ask this hop for congestion control (proposal 324). Only honoured
    /// with ntor-v3 and when the consensus has not switched congestion
    /// control off (`cc_alg=0`). C-tor asks only the exit hop of a circuit
    /// (and only exits advertising `FlowCtrl=2`); the path builder decides.
    pub request_cc: bool,
}

impl HopTarget {
    /// The EXTEND2 link specifiers in the order tor-spec §5.1.2 asks for:
    /// `[00]` IPv4 ORPort, `[02]` RSA identity, `[03]` Ed25519 identity,
    /// `[01]` IPv6 ORPort.
    pub fn link_specifiers(&self) -> Result<Vec<EncodedLinkSpec>, CircError> {
        let mut specs = vec![
            LinkSpec::from(self.addr),
            LinkSpec::RsaId(self.rsa_id),
            LinkSpec::Ed25519Id(self.ed_id),
        ];
        LinkSpec::sort_by_type(&mut specs);
        specs
            .iter()
            .map(|s| {
                s.encode()
                    .map_err(|_| CircError::Internal("encoding a link specifier"))
            })
            .collect()
    }

    /// True if a handshake with this target will carry the congestion
    /// control request.
    pub fn will_request_cc(&self, params: &CcParams) -> bool {
        self.ntor_v3 && self.request_cc && params.alg == CcAlg::Vegas
    }
}

/// A handshake in flight, waiting for CREATED2, CREATED_FAST or EXTENDED2.
#[derive(Debug)]
pub enum PendingHandshake {
    /// CREATE_FAST (tor-spec §5.1.5), first hop only: for one-hop
    /// directory circuits to a relay whose onion key we do not know.
    Fast(FastClientState),
    /// ntor (tor-spec §5.1.4).
    Ntor(NtorClientState),
    /// ntor-v3 (proposal 332), and whether we asked for congestion control.
    NtorV3 {
        /// The client state.
        state: NtorV3ClientState,
        /// We sent the CC request extension.
        requested_cc: bool,
    },
}

/// What a finished handshake gives the circuit.
#[derive(Debug)]
pub struct HopKeys {
    /// The hop's relay crypto keys.
    pub keys: Tor1Keys,
    /// The negotiated `sendme_inc` if the hop accepted congestion control.
    pub cc_sendme_inc: Option<u8>,
}

/// Begin a handshake with `target` for hop `hop`: the state to finish it
/// with, the CREATE2/EXTEND2 handshake type and the onionskin.
pub fn start<R: CryptoRng + ?Sized>(
    rng: &mut R,
    hop: HopNum,
    target: &HopTarget,
    params: &CcParams,
) -> Result<(PendingHandshake, HandshakeType, Vec<u8>), CircError> {
    if target.ntor_v3 {
        let requested_cc = target.will_request_cc(params);
        let exts = if requested_cc {
            vec![extensions::cc_request()]
        } else {
            vec![]
        };
        let key = NtorV3PublicKey {
            id: target.ed_id,
            onion_key: target.ntor_onion_key,
        };
        let (state, onionskin) = ntor_v3::client_handshake_for_circuit(rng, &key, &exts)
            .map_err(|source| CircError::HandshakeStart { hop, source })?;
        Ok((
            PendingHandshake::NtorV3 {
                state,
                requested_cc,
            },
            HandshakeType::NTOR_V3,
            onionskin,
        ))
    } else {
        let key = NtorPublicKey {
            id: target.rsa_id,
            onion_key: target.ntor_onion_key,
        };
        let (state, onionskin) = ntor::client_handshake(rng, &key);
        Ok((
            PendingHandshake::Ntor(state),
            HandshakeType::NTOR,
            onionskin.to_vec(),
        ))
    }
}

impl PendingHandshake {
    /// Finish with the relay's reply (the body of CREATED2 or EXTENDED2).
    /// A reply that does not verify, or a congestion control answer we
    /// cannot accept, is the relay's protocol violation.
    pub fn finish(
        self,
        hop: HopNum,
        reply: &[u8],
        params: &CcParams,
    ) -> Result<HopKeys, CircError> {
        let handshake = |source| CircError::Handshake { hop, source };
        match self {
            PendingHandshake::Fast(state) => {
                let keygen = state.finish(reply).map_err(handshake)?;
                let keys = Tor1Keys::derive(keygen).map_err(CircError::Crypto)?;
                Ok(HopKeys {
                    keys,
                    cc_sendme_inc: None,
                })
            }
            PendingHandshake::Ntor(state) => {
                let keygen = state.finish(reply).map_err(handshake)?;
                let keys = Tor1Keys::derive(keygen).map_err(CircError::Crypto)?;
                Ok(HopKeys {
                    keys,
                    cc_sendme_inc: None,
                })
            }
            PendingHandshake::NtorV3 {
                state,
                requested_cc,
            } => {
                let (exts, keygen) = state.finish_for_circuit(reply).map_err(handshake)?;
                let cc_sendme_inc = check_cc_answer(hop, &exts, requested_cc, params)?;
                let keys = Tor1Keys::derive(keygen).map_err(CircError::Crypto)?;
                Ok(HopKeys {
                    keys,
                    cc_sendme_inc,
                })
            }
        }
    }
}

/// The relay's congestion control answer (proposal 324 §6.2): none, or a
/// `sendme_inc` within one of our consensus value (C-tor
/// `congestion_control_validate_sendme_increment`). An answer to a request
/// we did not make is refused.
fn check_cc_answer(
    hop: HopNum,
    exts: &[CircResponseExt],
    requested: bool,
    params: &CcParams,
) -> Result<Option<u8>, CircError> {
    match extensions::cc_sendme_inc(exts) {
        None => Ok(None),
        Some(inc) if !requested => Err(CircError::CcNegotiation {
            hop,
            reason: format!("sendme_inc {inc} offered, but we did not request congestion control"),
        }),
        Some(inc) if !params.sendme_inc_acceptable(inc) => Err(CircError::CcNegotiation {
            hop,
            reason: format!(
                "sendme_inc {inc} is not within 1 of our cc_sendme_inc {}",
                params.sendme_inc
            ),
        }),
        Some(inc) => Ok(Some(inc)),
    }
}

/// The EXTEND2 message asking the last hop to extend to `target`
/// (tor-spec §5.1.2).
pub fn extend2(
    target: &HopTarget,
    htype: HandshakeType,
    onionskin: Vec<u8>,
) -> Result<Extend2, CircError> {
    Ok(Extend2::new(target.link_specifiers()?, htype, onionskin))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::{Ipv4Addr, Ipv6Addr};

    use rand::SeedableRng as _;
    use tor_linkspec::LinkSpecType;
    use tor_llcrypto::pk::curve25519::StaticSecret;

    use super::*;

    fn target(ntor_v3: bool) -> HopTarget {
        HopTarget {
            rsa_id: RsaIdentity::from([3; 20]),
            ed_id: Ed25519Identity::new([4; 32]),
            ntor_onion_key: curve25519::PublicKey::from(&StaticSecret::from([5; 32])),
            addr: SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 9001)),
            ntor_v3,
            request_cc: true,
        }
    }

    #[test]
    fn link_specifier_order_and_bodies() {
        let specs = target(true).link_specifiers().unwrap();
        let types: Vec<_> = specs.iter().map(EncodedLinkSpec::lstype).collect();
        assert_eq!(
            types,
            [
                LinkSpecType::ORPORT_V4,
                LinkSpecType::RSAID,
                LinkSpecType::ED25519ID
            ]
        );
        assert_eq!(
            specs[0].parse().unwrap(),
            LinkSpec::OrPort(Ipv4Addr::new(127, 0, 0, 1).into(), 9001)
        );
        let mut t = target(true);
        t.addr = SocketAddr::from((Ipv6Addr::LOCALHOST, 443));
        let types: Vec<_> = t
            .link_specifiers()
            .unwrap()
            .iter()
            .map(EncodedLinkSpec::lstype)
            .collect();
        assert_eq!(
            types,
            [
                LinkSpecType::RSAID,
                LinkSpecType::ED25519ID,
                LinkSpecType::ORPORT_V6
            ]
        );
    }

    #[test]
    fn handshake_choice() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = CcParams::default();
        let (st, ht, skin) = start(&mut rng, HopNum(0), &target(false), &p).unwrap();
        assert!(matches!(st, PendingHandshake::Ntor(_)));
        assert_eq!(ht, HandshakeType::NTOR);
        assert_eq!(skin.len(), ntor::CLIENT_HANDSHAKE_LEN);

        let (st, ht, skin) = start(&mut rng, HopNum(0), &target(true), &p).unwrap();
        assert!(matches!(
            st,
            PendingHandshake::NtorV3 {
                requested_cc: true,
                ..
            }
        ));
        assert_eq!(ht, HandshakeType::NTOR_V3);
        // ID | B | X | ENC([1, 1, 0]) | MAC.
        assert_eq!(skin.len(), ntor_v3::CLIENT_HANDSHAKE_MIN_LEN + 3);

        // cc_alg=0 in the consensus: no request.
        let off = CcParams::from_consensus(&[("cc_alg".to_string(), 0)][..]);
        let (st, _, _) = start(&mut rng, HopNum(0), &target(true), &off).unwrap();
        assert!(matches!(
            st,
            PendingHandshake::NtorV3 {
                requested_cc: false,
                ..
            }
        ));
    }

    #[test]
    fn cc_answers() {
        let p = CcParams::default();
        let h = HopNum(2);
        assert_eq!(check_cc_answer(h, &[], true, &p).unwrap(), None);
        assert_eq!(
            check_cc_answer(h, &[extensions::cc_response(31)], true, &p).unwrap(),
            Some(31)
        );
        assert_eq!(
            check_cc_answer(h, &[extensions::cc_response(32)], true, &p).unwrap(),
            Some(32)
        );
        for bad in [0, 29, 33, 255] {
            let e = check_cc_answer(h, &[extensions::cc_response(bad)], true, &p).unwrap_err();
            assert!(e.is_protocol_violation(), "{bad}");
        }
        assert!(
            check_cc_answer(h, &[extensions::cc_response(31)], false, &p)
                .unwrap_err()
                .is_protocol_violation()
        );
    }
}
