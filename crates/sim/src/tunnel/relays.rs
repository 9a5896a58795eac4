//! The simulated network's relays: identities and onion keys drawn from
//! the seed, and the relay side of the circuit handshakes (ntor, ntor-v3
//! with the congestion-control extension of proposal 324), run with
//! braid-core's own crypto.

use std::net::{Ipv4Addr, SocketAddr};

use braid_core::circuit::HopTarget;
use braid_core::crypto::Tor1Keys;
use braid_core::crypto::extensions;
use braid_core::crypto::ntor::{self, NtorSecretKey};
use braid_core::crypto::ntor_v3::{self, NtorV3SecretKey};
use braid_core::relay::OnionKeys;
use rand::CryptoRng;
use tor_cell::chancell::msg::HandshakeType;
use tor_llcrypto::pk::curve25519::StaticSecret;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::rng::SimRng;

/// `sendme_inc` the simulated exits answer a congestion-control request
/// with (C-tor's default).
pub const SENDME_INC: u8 = 31;

/// One relay.
#[derive(Debug)]
pub struct SimRelay {
    /// Its ntor key.
    ntor: NtorSecretKey,
    /// The same onion key for ntor-v3.
    ntor_v3: NtorV3SecretKey,
    /// Accepts congestion control when asked (an exit with `FlowCtrl=2`).
    pub accepts_cc: bool,
    /// Answers congestion control even when not asked (a hostile relay:
    /// C-tor's TROVE-2026-032).
    pub answers_cc_unasked: bool,
}

/// What a successful handshake gives the relay.
#[derive(Debug)]
pub struct Answered {
    /// The reply for CREATED2 / EXTENDED2.
    pub reply: Vec<u8>,
    /// The hop's keys.
    pub keys: Tor1Keys,
    /// The `sendme_inc` agreed if congestion control was negotiated.
    pub cc: Option<u8>,
}

/// The relays of a simulated network.
#[derive(Debug)]
pub struct SimRelays {
    relays: Vec<SimRelay>,
}

impl SimRelays {
    /// `n` relays with keys from `seed`; all accept congestion control.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = SimRng::stream(seed, 0x7e1a_u64);
        let relays = (0..n)
            .map(|i| {
                let mut bytes = [0u8; 32];
                for b in &mut bytes {
                    *b = u8::try_from(rng.up_to(255)).unwrap_or(0);
                }
                let secret = StaticSecret::from(bytes);
                let idx = u8::try_from(i % 251).unwrap_or(0);
                let mut rsa = [idx.wrapping_add(1); 20];
                rsa[19] = u8::try_from(i / 251).unwrap_or(0);
                let mut ed = [idx.wrapping_add(100); 32];
                ed[31] = u8::try_from(i / 251).unwrap_or(0);
                SimRelay {
                    ntor: NtorSecretKey::new(RsaIdentity::from(rsa), secret.clone()),
                    ntor_v3: NtorV3SecretKey::new(Ed25519Identity::new(ed), secret),
                    accepts_cc: true,
                    answers_cc_unasked: false,
                }
            })
            .collect();
        Self { relays }
    }

    /// Relays in the network.
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// Relay `i`, to change how it behaves.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut SimRelay> {
        self.relays.get_mut(i)
    }

    /// How a client sees relay `i`; `exit` asks it for congestion control,
    /// as the client asks only exits (proposal 324 §4).
    pub fn target(&self, i: usize, exit: bool) -> Option<HopTarget> {
        let r = self.relays.get(i)?;
        let host = u8::try_from(i % 250).unwrap_or(0).wrapping_add(1);
        Some(HopTarget {
            rsa_id: r.ntor.public.id,
            ed_id: r.ntor_v3.public.id,
            ntor_onion_key: r.ntor.public.onion_key,
            addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), 9001)),
            ntor_v3: true,
            request_cc: exit,
        })
    }

    /// Relay `i`'s onion keys, for a relay played by braid-core's
    /// [`RelayNode`](braid_core::relay::RelayNode).
    pub fn onion_keys(&self, i: usize) -> Option<OnionKeys> {
        let r = self.relays.get(i)?;
        Some(OnionKeys {
            ntor: vec![r.ntor.clone()],
            ntor_v3: vec![r.ntor_v3.clone()],
        })
    }

    /// The relay with identity `rsa`.
    pub fn find(&self, rsa: &RsaIdentity) -> Option<usize> {
        self.relays.iter().position(|r| r.ntor.public.id == *rsa)
    }

    /// Relay `i` answers an onionskin of type `htype`; `None` if the
    /// handshake fails. `refuse_cc`: this circuit gets no congestion
    /// control even if asked.
    pub fn answer<R: CryptoRng + ?Sized>(
        &self,
        i: usize,
        htype: HandshakeType,
        skin: &[u8],
        refuse_cc: bool,
        rng: &mut R,
    ) -> Option<Answered> {
        let r = self.relays.get(i)?;
        if htype == HandshakeType::NTOR {
            let (kg, reply) =
                ntor::server_handshake(rng, std::slice::from_ref(&r.ntor), skin).ok()?;
            let keys = Tor1Keys::derive(kg).ok()?;
            return Some(Answered {
                reply: reply.to_vec(),
                keys,
                cc: None,
            });
        }
        if htype != HandshakeType::NTOR_V3 {
            return None;
        }
        let mut cc = None;
        let accepts = r.accepts_cc && !refuse_cc;
        let unasked = r.answers_cc_unasked;
        let (reply, kg) = ntor_v3::server_handshake_for_circuit(
            rng,
            std::slice::from_ref(&r.ntor_v3),
            skin,
            |exts| {
                Some(if accepts && extensions::requests_cc(exts) {
                    cc = Some(SENDME_INC);
                    vec![extensions::cc_response(SENDME_INC)]
                } else if unasked {
                    vec![extensions::cc_response(SENDME_INC)]
                } else {
                    vec![]
                })
            },
        )
        .ok()?;
        let keys = Tor1Keys::derive(kg).ok()?;
        Some(Answered { reply, keys, cc })
    }
}
