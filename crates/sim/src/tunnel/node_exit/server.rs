//! The destinations behind the real exit, played as its driver plays
//! sockets (crates/relay `run/exit.rs`), with [`SimExit`]'s semantics:
//! `dl-N.sim` connects and sends `N` bytes of [`content_byte`], then EOF;
//! `ul.sim` connects and takes what comes, checking every byte; anything
//! else is refused with END EXITPOLICY.
//!
//! A destination is infinitely fast: its bytes go into the stream map as
//! fast as the map takes them ([`ExitStreamMap::write`], then `Writable`
//! after a short write), and the client's bytes are read out on
//! `Readable` until the map has none.
//!
//! [`SimExit`]: crate::tunnel::SimExit

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use braid_core::exit::{ExitEvent, ExitStreamMap};
use braid_core::ids::{EdgeKey, StreamId};
use braid_core::relay::RelayNode;
use braid_core::stream::Host;
use tor_cell::relaycell::msg::EndReason;

use crate::tunnel::app::UPLOAD_BYTE;
use crate::tunnel::exit::content_byte;

/// The address every destination is at.
const DEST_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
/// The resolver's TTL for it.
const DEST_TTL: u32 = 300;
/// Most destination bytes offered at once.
const DEST_CHUNK: usize = 16 * 1024;
/// Bytes read from the map at once.
const READ_CHUNK: usize = 16 * 1024;

/// What a stream asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `dl-N.sim`: `N` bytes to the client, then EOF.
    Download(u64),
    /// `ul.sim`: the client's bytes, counted.
    Upload,
    /// `ulo.sim`: the client's bytes, each checked against
    /// [`upload_byte`] of its offset (the order of an upload).
    OrderedUpload,
}

/// The byte at `offset` of an ordered upload (`ulo.sim`).
pub fn upload_byte(offset: u64) -> u8 {
    (offset.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 31) as u8
}

/// One destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// What it is.
    pub kind: Kind,
    /// The stream id it was opened on: its content is that stream's
    /// ([`content_byte`]), wherever the stream moves (Braid live stream
    /// migration).
    pub content_id: StreamId,
    /// Bytes the map took from it.
    pub sent: u64,
    /// Bytes read from the map for it.
    pub received: u64,
    /// Every byte read was the client's upload byte.
    pub upload_ok: bool,
    /// Its EOF went to the map.
    pub eof_sent: bool,
    /// The map said it is over: its reason, and whether the client (or
    /// the circuit's end) ended it.
    pub closed: Option<(EndReason, bool)>,
}

impl Dest {
    /// Bytes it still has for the client.
    fn left(&self) -> u64 {
        match self.kind {
            Kind::Download(n) => n.saturating_sub(self.sent),
            Kind::Upload | Kind::OrderedUpload => 0,
        }
    }
}

/// The destinations of every exit stream.
#[derive(Debug, Default)]
pub struct Destinations {
    /// Live and ended ones, by circuit or set and stream.
    pub dests: BTreeMap<(EdgeKey, StreamId), Dest>,
    /// Ended destinations whose stream id came back for a new stream.
    pub retired: Vec<Dest>,
    /// BEGINs refused (not a `.sim` name we serve).
    pub refused: u32,
    /// Calls on the map that failed (a bug of this driver or of the
    /// map).
    pub errors: Vec<String>,
}

impl Destinations {
    /// Act on a node event about stream `ev.id()` of `edge`.
    pub fn event(&mut self, node: &mut RelayNode, edge: EdgeKey, ev: ExitEvent, now: Instant) {
        let id = ev.id();
        match ev {
            ExitEvent::Connect { target, .. } => {
                let kind = match &target.host {
                    Host::Hostname(h) if h == "ul.sim" => Some(Kind::Upload),
                    Host::Hostname(h) if h == "ulo.sim" => Some(Kind::OrderedUpload),
                    Host::Hostname(h) => h
                        .strip_prefix("dl-")
                        .and_then(|r| r.strip_suffix(".sim"))
                        .and_then(|n| n.parse().ok())
                        .map(Kind::Download),
                    _ => None,
                };
                let Some(kind) = kind else {
                    self.refused += 1;
                    self.call(node, edge, now, "refuse", |m| {
                        m.refuse(id, EndReason::EXITPOLICY, now)
                    });
                    return;
                };
                let dest = Dest {
                    kind,
                    content_id: id,
                    sent: 0,
                    received: 0,
                    upload_ok: true,
                    eof_sent: false,
                    closed: None,
                };
                if let Some(old) = self.dests.insert((edge, id), dest) {
                    self.retired.push(old);
                }
                self.call(node, edge, now, "connected", |m| {
                    m.connected(id, DEST_ADDR, DEST_TTL, now)
                });
                // Optimistic data may already wait.
                self.read(node, edge, id, now);
                self.write(node, edge, id, now);
            }
            ExitEvent::Resolve { .. } => {
                self.call(node, edge, now, "resolved", |m| m.resolved(id, &[], now));
            }
            ExitEvent::DirStream { .. } => {
                self.call(node, edge, now, "close", |m| {
                    m.close(id, EndReason::NOTDIRECTORY, now)
                });
            }
            ExitEvent::Readable { .. } => self.read(node, edge, id, now),
            ExitEvent::Writable { .. } => self.write(node, edge, id, now),
            ExitEvent::Closed { reason, remote, .. } => {
                if let Some(d) = self.dests.get_mut(&(edge, id)) {
                    d.closed = Some((reason, remote));
                }
            }
            ExitEvent::Moved { to_edge, to_id, .. } => {
                // The stream is now `to_id` of `to_edge`; its destination
                // stays (Braid proposal 001 §4).
                if let Some(d) = self.dests.remove(&(edge, id)) {
                    if let Some(old) = self.dests.insert((to_edge, to_id), d) {
                        self.retired.push(old);
                    }
                    self.read(node, to_edge, to_id, now);
                    self.write(node, to_edge, to_id, now);
                }
            }
        }
    }

    /// Call `f` on `edge`'s map; note a failure.
    fn call<T, E: std::fmt::Display>(
        &mut self,
        node: &mut RelayNode,
        edge: EdgeKey,
        now: Instant,
        what: &str,
        f: impl FnOnce(&mut ExitStreamMap) -> Result<T, E>,
    ) -> Option<T> {
        match node.exit(edge, now, f) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                self.errors.push(format!("{edge} {what}: {e}"));
                None
            }
            // The circuit or set is gone: its Closed events are queued.
            None => None,
        }
    }

    /// The client's bytes for upload destination `id`, all the map has.
    fn read(&mut self, node: &mut RelayNode, edge: EdgeKey, id: StreamId, now: Instant) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if self
                .dests
                .get(&(edge, id))
                .is_none_or(|d| d.closed.is_some())
            {
                return;
            }
            let n = match node.exit(edge, now, |m| m.read(id, &mut buf, now)) {
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    self.errors.push(format!("{edge} read: {e}"));
                    return;
                }
                None => return,
            };
            if n == 0 {
                return;
            }
            let Some(d) = self.dests.get_mut(&(edge, id)) else {
                return;
            };
            let ok = match d.kind {
                Kind::Upload => buf.iter().take(n).all(|b| *b == UPLOAD_BYTE),
                Kind::OrderedUpload => buf
                    .iter()
                    .take(n)
                    .enumerate()
                    .all(|(i, b)| *b == upload_byte(d.received + i as u64)),
                Kind::Download(_) => false,
            };
            d.received += n as u64;
            d.upload_ok &= ok;
        }
    }

    /// A download destination's bytes into the map while it takes them;
    /// its EOF once all went.
    fn write(&mut self, node: &mut RelayNode, edge: EdgeKey, id: StreamId, now: Instant) {
        loop {
            let Some(d) = self.dests.get(&(edge, id)).filter(|d| d.closed.is_none()) else {
                return;
            };
            if !matches!(d.kind, Kind::Download(_)) || d.eof_sent {
                return;
            }
            let (left, from, content) = (d.left(), d.sent, d.content_id);
            if left == 0 {
                if self
                    .call(node, edge, now, "shutdown_write", |m| {
                        m.shutdown_write(id, now)
                    })
                    .is_some()
                    && let Some(d) = self.dests.get_mut(&(edge, id))
                {
                    d.eof_sent = true;
                }
                return;
            }
            // Offer what the map has room for (one byte when it has none:
            // the short write asks for `Writable`).
            let Some(room) = self.call(node, edge, now, "write_capacity", |m| {
                m.write_capacity(id, now)
            }) else {
                return;
            };
            let len = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(room.max(1))
                .min(DEST_CHUNK);
            let bytes: Vec<u8> = (0..len as u64)
                .map(|i| content_byte(content, from + i))
                .collect();
            let Some(n) = self.call(node, edge, now, "write", |m| m.write(id, &bytes, now)) else {
                return;
            };
            if let Some(d) = self.dests.get_mut(&(edge, id)) {
                d.sent += n as u64;
            }
            if n < len {
                return;
            }
        }
    }

    /// Every destination, live, ended and retired.
    pub fn all(&self) -> impl Iterator<Item = &Dest> {
        self.dests.values().chain(self.retired.iter())
    }
}
