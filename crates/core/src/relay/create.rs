//! Answering a circuit's first cell at a relay: CREATE2 with ntor
//! (tor-spec §5.1.4) or ntor-v3 (proposal 332) and the congestion-control
//! negotiation of proposal 324 §6.2, or CREATE_FAST (tor-spec §5.1.5).

use rand::CryptoRng;
use tor_cell::chancell::msg::{AnyChanMsg, Created2, CreatedFast, HandshakeType};

use crate::cc::{CcAlg, CcParams};
use crate::crypto::extensions;
use crate::crypto::ntor::{self, NtorSecretKey};
use crate::crypto::ntor_v3::{self, NtorV3SecretKey};
use crate::crypto::{Tor1Keys, fast};

use super::error::RelayCircError;

/// A relay's circuit-extension keys: its current ntor onion key and, while
/// clients may still use it, the previous one (dir-spec: clients may hold
/// a microdescriptor up to a week old), each with the relay's identities.
#[derive(Debug, Clone)]
pub struct OnionKeys {
    /// ntor keys (RSA identity), newest first.
    pub ntor: Vec<NtorSecretKey>,
    /// The same onion keys for ntor-v3 (Ed25519 identity), newest first.
    pub ntor_v3: Vec<NtorV3SecretKey>,
}

/// What answering a CREATE cell gives the relay.
#[derive(Debug)]
pub struct Answered {
    /// The CREATED2 or CREATED_FAST cell to send back.
    pub reply: AnyChanMsg,
    /// The hop's relay crypto keys.
    pub keys: Tor1Keys,
    /// The `sendme_inc` agreed, if congestion control was negotiated.
    pub cc: Option<u8>,
}

/// Answer a CREATE2 (`htype`, `body`): ntor or ntor-v3. With ntor-v3, a
/// client that asks for congestion control gets it (our consensus
/// `sendme_inc`) unless the consensus turned it off (`cc_alg=0`), as C-tor
/// relays answer at any hop they are asked.
pub fn answer_create2<R: CryptoRng + ?Sized>(
    keys: &OnionKeys,
    htype: HandshakeType,
    body: &[u8],
    cc_params: &CcParams,
    rng: &mut R,
) -> Result<Answered, RelayCircError> {
    if htype == HandshakeType::NTOR {
        let (kg, reply) = ntor::server_handshake(rng, &keys.ntor, body)?;
        return Ok(Answered {
            reply: Created2::new(reply.to_vec()).into(),
            keys: Tor1Keys::derive(kg)?,
            cc: None,
        });
    }
    if htype != HandshakeType::NTOR_V3 {
        return Err(RelayCircError::UnsupportedHandshake(htype));
    }
    let mut cc = None;
    let offer = (cc_params.alg == CcAlg::Vegas).then_some(cc_params.sendme_inc);
    let (reply, kg) = ntor_v3::server_handshake_for_circuit(rng, &keys.ntor_v3, body, |exts| {
        Some(match offer {
            Some(inc) if extensions::requests_cc(exts) => {
                cc = Some(inc);
                vec![extensions::cc_response(inc)]
            }
            _ => Vec::new(),
        })
    })?;
    Ok(Answered {
        reply: Created2::new(reply).into(),
        keys: Tor1Keys::derive(kg)?,
        cc,
    })
}

/// Answer a CREATE_FAST (tor-spec §5.1.5): first hop only, no
/// congestion control.
pub fn answer_create_fast<R: CryptoRng + ?Sized>(
    body: &[u8],
    rng: &mut R,
) -> Result<Answered, RelayCircError> {
    let (kg, reply) = fast::server_handshake(rng, body)?;
    Ok(Answered {
        reply: CreatedFast::new(reply.to_vec()).into(),
        keys: Tor1Keys::derive(kg)?,
        cc: None,
    })
}
