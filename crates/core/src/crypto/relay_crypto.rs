//! tor1 relay cell crypto (tor-spec §5.2, §5.5, §6.1).
//!
//! Each hop of a circuit shares with the client four secrets derived by the
//! handshake ([`Tor1Keys`]): digest seeds `Df`, `Db` and AES-128 keys `Kf`,
//! `Kb`. Per direction there is one AES-128-CTR stream (zero IV) and one
//! running SHA-1 digest seeded with `Df` or `Db`; both live as long as the
//! circuit.
//!
//! Direction names: *outbound* is tor-spec's "forward" (client towards the
//! exit, keys `Kf`/`Df`), *inbound* is "backward" (`Kb`/`Db`).
//!
//! - Client: [`ClientLayers`] holds every hop's state; it encrypts an
//!   outbound cell for a target hop through all onion layers and peels
//!   inbound cells hop by hop until one hop recognizes the cell.
//! - Relay: [`RelayHop`] is one hop's state: it decrypts outbound cells
//!   (recognizing those meant for it), encrypts inbound cells it passes
//!   back, and originates its own inbound cells.
//!
//! A cell is *recognized* at a hop when, after that hop's layer is removed,
//! `recognized` is zero and the `digest` field equals the first four bytes
//! of the hop's running digest updated with the cell (digest field zeroed).
//! The running digest advances only for recognized cells (it is updated on
//! a clone and kept only on a match, tor-spec §6.1).
//!
//! Every originated or recognized cell yields a [`SendmeTag`]: the full
//! 20-byte running digest after that cell, which authenticated SENDMEs
//! (tor-spec §7.4, proposal 289) echo back.

use std::fmt;

use cipher::{KeyIvInit as _, StreamCipher as _};
use digest::Digest as _;
use subtle::ConstantTimeEq as _;
use tor_llcrypto::cipher::aes::Aes128Ctr;
use tor_llcrypto::d::Sha1;
use zeroize::Zeroizing;

use super::error::RelayCryptoError;
use super::kdf::KeyGenerator;
use crate::ids::HopNum;

/// Length of a relay cell body: `PAYLOAD_LEN` of a fixed-length cell
/// (tor-spec §3), the part the relay crypto covers.
pub const CELL_BODY_LEN: usize = 509;

/// The body of a RELAY or RELAY_EARLY cell: `command | recognized |
/// stream id | digest | length | data | padding` (tor-spec §6.1).
pub type RelayCellBody = [u8; CELL_BODY_LEN];

/// Length of a [`SendmeTag`]: a SHA-1 output.
pub const SENDME_TAG_LEN: usize = 20;

/// Length of the digest seeds `Df`, `Db` (`HASH_LEN`).
const DIGEST_SEED_LEN: usize = 20;
/// Length of the AES-128 keys `Kf`, `Kb` (`KEY_LEN`).
const KEY_LEN: usize = 16;
/// Length of `KH`.
const KH_LEN: usize = 20;

/// The running digest of a hop and direction just after one relay cell
/// (tor-spec §7.4; proposal 289): what a SENDME v1 cell carries to
/// acknowledge the cell that triggered it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SendmeTag([u8; SENDME_TAG_LEN]);

impl SendmeTag {
    /// The 20 bytes.
    pub fn as_bytes(&self) -> &[u8; SENDME_TAG_LEN] {
        &self.0
    }

    /// Constant-time comparison, for checking a peer's SENDME against the
    /// tag we expect.
    pub fn ct_eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl From<[u8; SENDME_TAG_LEN]> for SendmeTag {
    fn from(bytes: [u8; SENDME_TAG_LEN]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SendmeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendmeTag(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// One hop's tor1 key material (tor-spec §5.2.2; proposal 332 A.2).
pub struct Tor1Keys {
    /// `Df`: seed of the outbound running digest.
    df: Zeroizing<[u8; DIGEST_SEED_LEN]>,
    /// `Db`: seed of the inbound running digest.
    db: Zeroizing<[u8; DIGEST_SEED_LEN]>,
    /// `Kf`: outbound AES-128 key.
    kf: Zeroizing<[u8; KEY_LEN]>,
    /// `Kb`: inbound AES-128 key.
    kb: Zeroizing<[u8; KEY_LEN]>,
    /// `KH`: the "derivative key data" (CREATE_FAST) or onion service nonce.
    kh: Zeroizing<[u8; KH_LEN]>,
}

/// Split `N` bytes off the front of `rest`.
fn take<const N: usize>(rest: &mut &[u8]) -> Option<Zeroizing<[u8; N]>> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(Zeroizing::new(*head))
}

impl Tor1Keys {
    /// Bytes of key material tor1 needs: `Df | Db | Kf | Kb | KH`.
    pub const KEY_MATERIAL_LEN: usize = 2 * DIGEST_SEED_LEN + 2 * KEY_LEN + KH_LEN;

    /// Keys from ntor or ntor-v3 key material, laid out
    /// `Df | Db | Kf | Kb | KH` (tor-spec §5.2.2; excess bytes ignored).
    pub fn from_key_material(km: &[u8]) -> Result<Self, RelayCryptoError> {
        let short = RelayCryptoError::ShortKeyMaterial {
            needed: Self::KEY_MATERIAL_LEN,
            got: km.len(),
        };
        let mut rest = km;
        let df = take(&mut rest).ok_or(short.clone())?;
        let db = take(&mut rest).ok_or(short.clone())?;
        let kf = take(&mut rest).ok_or(short.clone())?;
        let kb = take(&mut rest).ok_or(short.clone())?;
        let kh = take(&mut rest).ok_or(short)?;
        Ok(Self { df, db, kf, kb, kh })
    }

    /// Keys from KDF-TOR key material (CREATE_FAST), laid out
    /// `KH | Df | Db | Kf | Kb` (tor-spec §5.2.1).
    pub fn from_kdf_tor_key_material(km: &[u8]) -> Result<Self, RelayCryptoError> {
        let short = RelayCryptoError::ShortKeyMaterial {
            needed: Self::KEY_MATERIAL_LEN,
            got: km.len(),
        };
        let mut rest = km;
        let kh = take(&mut rest).ok_or(short.clone())?;
        let df = take(&mut rest).ok_or(short.clone())?;
        let db = take(&mut rest).ok_or(short.clone())?;
        let kf = take(&mut rest).ok_or(short.clone())?;
        let kb = take(&mut rest).ok_or(short)?;
        Ok(Self { df, db, kf, kb, kh })
    }

    /// Expand a finished handshake's key material into tor1 keys, with the
    /// layout that goes with its KDF.
    pub fn derive(keygen: KeyGenerator) -> Result<Self, RelayCryptoError> {
        let kh_first = keygen.is_kdf_tor();
        let km = keygen.expand(Self::KEY_MATERIAL_LEN)?;
        if kh_first {
            Self::from_kdf_tor_key_material(&km)
        } else {
            Self::from_key_material(&km)
        }
    }

    /// `KH`: for CREATE_FAST the value the relay proves knowledge of the
    /// keys with; for onion services a nonce.
    pub fn kh(&self) -> &[u8; KH_LEN] {
        &self.kh
    }
}

impl fmt::Debug for Tor1Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tor1Keys").finish_non_exhaustive()
    }
}

/// One direction of one hop: the AES-128-CTR stream and the running SHA-1
/// digest.
struct CryptState {
    /// AES-128-CTR with `Kf` or `Kb` and a zero IV (tor-spec §0.3).
    cipher: Aes128Ctr,
    /// SHA-1 seeded with `Df` or `Db`, then fed every cell originated at or
    /// recognized by this hop in this direction (tor-spec §6.1).
    digest: Sha1,
}

/// Where the `recognized` field lies in a relay cell body (tor-spec §6.1).
const RECOGNIZED: std::ops::Range<usize> = 1..3;
/// Where the `digest` field lies.
const DIGEST: std::ops::Range<usize> = 5..9;

impl CryptState {
    /// A fresh state from a key and a digest seed.
    fn new(key: &[u8; KEY_LEN], seed: &[u8; DIGEST_SEED_LEN]) -> Self {
        let mut digest = Sha1::new();
        digest.update(seed);
        Self {
            cipher: Aes128Ctr::new(&(*key).into(), &Default::default()),
            digest,
        }
    }

    /// Add or remove this layer of encryption (AES-CTR is its own inverse).
    fn apply(&mut self, body: &mut RelayCellBody) {
        self.cipher.apply_keystream(body);
    }

    /// Make `body` a cell originated here (tor-spec §6.1): `recognized` is
    /// set to zero, the digest field to the first four bytes of the running
    /// digest updated with the cell (digest field zero while hashing).
    fn originate(&mut self, body: &mut RelayCellBody) -> SendmeTag {
        body[RECOGNIZED].fill(0);
        body[DIGEST].fill(0);
        self.digest.update(&body[..]);
        let full: [u8; SENDME_TAG_LEN] = self.digest.clone().finalize().into();
        let (first4, _) = full.split_at(DIGEST.len());
        body[DIGEST].copy_from_slice(first4);
        SendmeTag(full)
    }

    /// Is the (already decrypted) `body` meant for this hop? If so, the
    /// running digest advances over it and its tag is returned; if not, the
    /// digest is left exactly as it was (tor-spec §6.1).
    fn recognize(&mut self, body: &RelayCellBody) -> Option<SendmeTag> {
        if body[RECOGNIZED] != [0, 0] {
            return None;
        }
        let (head, rest) = body.split_at(DIGEST.start);
        let (received, tail) = rest.split_at(DIGEST.len());
        let mut candidate = self.digest.clone();
        candidate.update(head);
        candidate.update([0_u8; 4]);
        candidate.update(tail);
        let full: [u8; SENDME_TAG_LEN] = candidate.clone().finalize().into();
        let (first4, _) = full.split_at(DIGEST.len());
        if bool::from(first4.ct_eq(received)) {
            self.digest = candidate;
            Some(SendmeTag(full))
        } else {
            None
        }
    }

    /// The running digest as it stands (what the next tag would build on).
    #[cfg(test)]
    fn digest_now(&self) -> [u8; SENDME_TAG_LEN] {
        self.digest.clone().finalize().into()
    }
}

/// Both directions of one hop.
struct HopState {
    /// Outbound (forward): `Kf`, `Df`.
    outbound: CryptState,
    /// Inbound (backward): `Kb`, `Db`.
    inbound: CryptState,
}

impl HopState {
    /// States from the hop's keys.
    fn new(keys: &Tor1Keys) -> Self {
        Self {
            outbound: CryptState::new(&keys.kf, &keys.df),
            inbound: CryptState::new(&keys.kb, &keys.db),
        }
    }
}

/// The client's relay crypto for one circuit: one layer per hop, hop 0
/// (the guard) first.
#[derive(Default)]
pub struct ClientLayers {
    /// Hop states, in path order.
    hops: Vec<HopState>,
}

impl ClientLayers {
    /// A circuit with no hops yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the next hop (after its CREATED2 / EXTENDED2), returning its
    /// number.
    pub fn add_hop(&mut self, keys: &Tor1Keys) -> Result<HopNum, RelayCryptoError> {
        let hop = u8::try_from(self.hops.len()).map_err(|_| RelayCryptoError::TooManyHops)?;
        self.hops.push(HopState::new(keys));
        Ok(HopNum(hop))
    }

    /// How many hops the circuit has.
    pub fn n_hops(&self) -> usize {
        self.hops.len()
    }

    /// Forget the hops after the first `n_hops` (after a TRUNCATED).
    pub fn truncate(&mut self, n_hops: usize) {
        self.hops.truncate(n_hops);
    }

    /// Prepare an outbound cell for hop `target` (tor-spec §5.5.2.1): set
    /// its `recognized` and `digest` with the target's running digest, then
    /// encrypt with `Kf` of the target and of every hop before it, the
    /// target's layer first. Returns the cell's SENDME tag.
    pub fn encrypt_outbound(
        &mut self,
        target: HopNum,
        body: &mut RelayCellBody,
    ) -> Result<SendmeTag, RelayCryptoError> {
        let n_hops = self.hops.len();
        let idx = usize::from(target.0);
        let layers = self
            .hops
            .get_mut(..=idx)
            .ok_or(RelayCryptoError::NoSuchHop {
                hop: target,
                n_hops,
            })?;
        let (last, _) = layers.split_last_mut().ok_or(RelayCryptoError::NoSuchHop {
            hop: target,
            n_hops,
        })?;
        let tag = last.outbound.originate(body);
        for hop in layers.iter_mut().rev() {
            hop.outbound.apply(body);
        }
        Ok(tag)
    }

    /// Peel an inbound cell (tor-spec §5.5.4): decrypt with `Kb` of hop 0,
    /// 1, ... until a hop recognizes it. Returns the originating hop and
    /// the cell's SENDME tag, the body left in plaintext.
    ///
    /// `None` means no hop recognized the cell: a protocol violation; the
    /// inbound cipher streams have advanced, so the circuit must be closed.
    pub fn decrypt_inbound(&mut self, body: &mut RelayCellBody) -> Option<(HopNum, SendmeTag)> {
        for (i, hop) in self.hops.iter_mut().enumerate() {
            hop.inbound.apply(body);
            if let Some(tag) = hop.inbound.recognize(body) {
                // add_hop keeps the hop count within u8.
                return Some((HopNum(u8::try_from(i).ok()?), tag));
            }
        }
        None
    }
}

impl fmt::Debug for ClientLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLayers")
            .field("n_hops", &self.hops.len())
            .finish_non_exhaustive()
    }
}

/// One relay's crypto for one circuit (the relay side of one hop).
pub struct RelayHop {
    /// Both directions.
    state: HopState,
}

impl RelayHop {
    /// The relay's state from the keys of its handshake with the client.
    pub fn new(keys: &Tor1Keys) -> Self {
        Self {
            state: HopState::new(keys),
        }
    }

    /// Remove this hop's layer from an outbound cell (tor-spec §5.5.2.2).
    /// `Some(tag)` if the cell is for this relay (now plaintext), `None` if
    /// it must be passed on to the next hop (or, at the last hop, the
    /// circuit destroyed).
    pub fn decrypt_outbound(&mut self, body: &mut RelayCellBody) -> Option<SendmeTag> {
        self.state.outbound.apply(body);
        self.state.outbound.recognize(body)
    }

    /// Add this hop's layer to an inbound cell coming from further along
    /// the circuit (tor-spec §5.5.3.1).
    pub fn encrypt_inbound(&mut self, body: &mut RelayCellBody) {
        self.state.inbound.apply(body);
    }

    /// Send a cell of our own towards the client: set `recognized` and
    /// `digest` with the inbound running digest, then encrypt with `Kb`.
    /// Returns the cell's SENDME tag.
    pub fn originate_inbound(&mut self, body: &mut RelayCellBody) -> SendmeTag {
        let tag = self.state.inbound.originate(body);
        self.state.inbound.apply(body);
        tag
    }
}

impl fmt::Debug for RelayHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayHop").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
