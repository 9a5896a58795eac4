//! Circuit cryptography: the circuit handshakes and tor1 relay cell crypto.
//!
//! - [`ntor`]: the ntor handshake, CREATE2 type 2 (tor-spec §5.1.4).
//! - [`ntor_v3`]: the ntor-v3 handshake, CREATE2 type 3, with its
//!   encrypted messages (proposal 332).
//! - [`fast`]: CREATE_FAST (tor-spec §5.1.5), first hop only.
//! - [`extensions`]: the extension lists those messages carry, notably
//!   congestion-control negotiation (proposal 324).
//! - [`kdf`]: KDF-TOR, KDF-RFC5869 (HKDF-SHA256) and SHAKE-256
//!   (tor-spec §5.2), and the [`KeyGenerator`] a handshake yields.
//! - [`relay_crypto`]: per-hop AES-128-CTR and running SHA-1 digests,
//!   onion layering, recognition and SENDME tags (tor-spec §5.5, §6.1).
//! - [`error`]: the error types.
//!
//! All of it is pure computation: randomness comes from the caller's RNG,
//! and nothing panics on network input.

pub mod error;
pub mod extensions;
pub mod fast;
pub mod kdf;
pub mod ntor;
pub mod ntor_v3;
pub mod relay_crypto;

pub use error::{HandshakeError, KdfError, RelayCryptoError};
pub use kdf::{KeyGenerator, SecretBytes};
pub use relay_crypto::{CELL_BODY_LEN, ClientLayers, RelayCellBody, RelayHop, SendmeTag, Tor1Keys};
