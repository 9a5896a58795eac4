//! The BEGIN_DIR transport of the directory driver: a channel to the relay
//! (its CERTS must prove the identity we expect: a fallback or cache that
//! is not who it claims is refused at the link handshake), a one-hop
//! circuit on it (CREATE_FAST when we know no onion key, ntor otherwise,
//! as C-tor), and braid-core's [`BeginDirFetch`] fed with the circuit's
//! cells until the answer is in. Channels are kept for the next request
//! to the same relay, a few at a time. Which relay to ask, and what the
//! answer means, is braid-dir's business.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_core::channel::ExpectedIdentity;
use braid_core::circuit::{BeginDirFetch, CircParams, ClientCircuit, HopTarget};
use braid_dir::{OneHopTarget, RelayId};
use tor_llcrypto::pk::curve25519;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::channel::{Channel, ChannelConfig, ChannelHandle};
use crate::error::FetchError;
use crate::keyed_lock::KeyedLock;

/// Channels to directory relays kept open at once; the least recently
/// used beyond this is shut down.
pub const MAX_DIR_CHANNELS: usize = 6;
/// Cells a directory circuit may have waiting for the fetch task.
const DIR_CIRCUIT_INBOUND: usize = 4096;

/// One-hop directory fetches, with the channels they keep.
#[derive(Debug, Clone)]
pub struct OneHopDir {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Open channels by relay, with when each was last used.
    channels: Mutex<HashMap<RelayId, (ChannelHandle, Instant)>>,
    /// One connect at a time per relay.
    connecting: KeyedLock<RelayId>,
    connect_timeout: Duration,
}

impl OneHopDir {
    /// Channels open within `connect_timeout` or fail.
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                connecting: KeyedLock::new(),
                connect_timeout,
            }),
        }
    }

    /// Relays with an open channel.
    pub fn open_channels(&self) -> usize {
        let channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        channels.values().filter(|(c, _)| !c.is_closed()).count()
    }

    fn cached(&self, id: &RelayId) -> Option<ChannelHandle> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (ch, used) = channels.get_mut(id).filter(|(c, _)| !c.is_closed())?;
        *used = Instant::now();
        Some(ch.clone())
    }

    /// A channel to `target`, reusing an open one.
    async fn channel(&self, target: &OneHopTarget) -> Result<ChannelHandle, FetchError> {
        if let Some(ch) = self.cached(&target.id) {
            return Ok(ch);
        }
        let _one = self.inner.connecting.lock(target.id).await;
        if let Some(ch) = self.cached(&target.id) {
            return Ok(ch);
        }
        let expected = ExpectedIdentity {
            rsa: RsaIdentity::from(*target.id.as_bytes()),
            ed25519: target.ed_id.map(|e| Ed25519Identity::from(*e.as_bytes())),
        };
        let config = ChannelConfig {
            circuit_inbound_queue: DIR_CIRCUIT_INBOUND,
            ..ChannelConfig::default().with_connect_timeout(self.inner.connect_timeout)
        };
        let (ch, _task) =
            Channel::connect_with(SocketAddr::V4(target.addr), expected, &config).await?;
        let evicted = {
            let mut channels = self
                .inner
                .channels
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            channels.retain(|_, (c, _)| !c.is_closed());
            channels.insert(target.id, (ch.clone(), Instant::now()));
            let mut evicted = Vec::new();
            while channels.len() > MAX_DIR_CHANNELS {
                let Some(oldest) = channels
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                if let Some((c, _)) = channels.remove(&oldest) {
                    evicted.push(c);
                }
            }
            evicted
        };
        for c in evicted {
            let _ = c.shutdown().await;
        }
        Ok(ch)
    }

    /// Send `request` to `target` over BEGIN_DIR on a new one-hop circuit
    /// and return every byte of the answer (at most `max_bytes`).
    pub async fn fetch(
        &self,
        target: &OneHopTarget,
        request: Vec<u8>,
        max_bytes: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let addr = SocketAddr::V4(target.addr);
        let channel = self.channel(target).await?;
        let (circ_id, mut io) = channel.open_circuit().await?;
        let now = std::time::Instant::now();
        let circ = first_hop(target, circ_id, now);
        let mut fetch = BeginDirFetch::new(circ, request, max_bytes);
        let outcome = loop {
            while let Some(cell) = fetch.poll_transmit() {
                if io.tx.send(cell).await.is_err() {
                    fetch.handle_channel_closed(std::time::Instant::now());
                }
            }
            if let Some(outcome) = fetch.take_outcome() {
                break outcome;
            }
            match io.rx.recv().await {
                Some(cell) => fetch.handle_cell(std::time::Instant::now(), cell),
                None => fetch.handle_channel_closed(std::time::Instant::now()),
            }
        };
        // The DESTROY, if the fetch queued one after its outcome.
        while let Some(cell) = fetch.poll_transmit() {
            let _ = io.tx.send(cell).await;
        }
        outcome.map_err(|source| FetchError::BeginDir { addr, source })
    }
}

/// The one-hop circuit to `target`: ntor when its onion key (and Ed25519
/// identity) are known, CREATE_FAST otherwise (tor-spec §5.1.5), as C-tor.
fn first_hop(
    target: &OneHopTarget,
    circ_id: braid_core::ids::CircId,
    now: std::time::Instant,
) -> ClientCircuit {
    let mut rng = rand::rng();
    let params = CircParams::default();
    match (target.ntor_key, target.ed_id) {
        (Some(key), Some(ed)) => {
            let hop = HopTarget {
                rsa_id: RsaIdentity::from(*target.id.as_bytes()),
                ed_id: Ed25519Identity::from(*ed.as_bytes()),
                ntor_onion_key: curve25519::PublicKey::from(key),
                addr: SocketAddr::V4(target.addr),
                ntor_v3: false,
                request_cc: false,
            };
            ClientCircuit::new(circ_id, hop, params, &mut rng, now).unwrap_or_else(|_| {
                ClientCircuit::new_fast(circ_id, CircParams::default(), &mut rng, now)
            })
        }
        _ => ClientCircuit::new_fast(circ_id, params, &mut rng, now),
    }
}
