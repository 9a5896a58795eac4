//! Test support, public for the fuzz targets behind the `test-support`
//! feature (and compiled for braid-core's own tests); never part of a
//! normal build.
//!
//! - [`x509`]: DER elements and self-signed X.509 RSA identity
//!   certificates as C-tor makes them (tor-spec §4.2, CERTS type 2).
//! - [`circuit_network`]: a mock network of relays for a client circuit:
//!   the relay side of CREATE2 / EXTEND2 (ntor, ntor-v3 with or without
//!   congestion control), onion layers, circuit SENDMEs, and a build
//!   helper.
//! - [`stream_invariants`]: a [`StreamMap`](crate::stream::StreamMap)
//!   under watch, checked against a model of each stream's bytes.

pub use crate::channel::x509::build as x509;
pub use crate::circuit::test_network as circuit_network;
pub use crate::stream::invariants as stream_invariants;
