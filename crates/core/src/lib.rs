//! The sans-IO protocol core of Braid.
//!
//! This crate will hold the Tor protocol as plain state machines: channel
//! handshake state, circuits, relay crypto, streams, SENDME and congestion
//! control (proposal 324), Conflux linking, sequencing, leg scheduling and the
//! bounded reorder queue (proposal 329). It owns no sockets, no runtime and no
//! clock: callers pass `now`, feed input through `handle_*` methods and take
//! output from `poll_*` methods, in the manner of `quinn-proto`.
//!
//! Nothing is implemented here yet; see the issues that build on the
//! foundation.
