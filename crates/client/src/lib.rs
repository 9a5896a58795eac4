//! Async drivers for the Braid client: the channel reactor per TLS
//! connection, the tunnel reactor per circuit or Conflux set, and the SOCKS5
//! front end. The drivers move bytes and timers; the protocol lives in
//! `braid-core`. Nothing is implemented here yet.
