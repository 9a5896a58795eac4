//! The application on the client side of a simulated tunnel: it opens
//! streams, reads everything that arrives (checking every byte against
//! [`content_byte`]), writes uploads, and records how each stream ended.

use std::collections::BTreeMap;
use std::time::Instant;

use braid_core::ids::StreamId;
use braid_core::stream::{CloseReason, StreamError, StreamEvent, Target};
use braid_core::tunnel::{ClientTunnel, TunnelError};

use super::exit::content_byte;

/// The byte every upload consists of.
pub const UPLOAD_BYTE: u8 = 0x5a;

/// What a stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Download this many bytes.
    Download(u64),
    /// Upload this many bytes.
    Upload(u64),
}

/// One stream as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStream {
    /// What it does.
    pub want: Want,
    /// CONNECTED came.
    pub connected: bool,
    /// Bytes read.
    pub received: u64,
    /// Every byte read was the right one at the right place.
    pub content_ok: bool,
    /// Bytes written.
    pub written: u64,
    /// Read to EOF.
    pub eof: bool,
    /// How it ended, and whether the exit ended it.
    pub ended: Option<(CloseReason, bool)>,
    /// A read failed with an error other than "nothing yet".
    pub read_error: Option<StreamError>,
}

impl AppStream {
    /// Finished as asked: every byte downloaded and right, or every byte
    /// uploaded and the stream closed cleanly.
    pub fn complete(&self) -> bool {
        match self.want {
            Want::Download(n) => self.eof && self.received == n && self.content_ok,
            Want::Upload(n) => self.written == n && self.ended.is_some(),
        }
    }

    /// Ended abnormally (reset, circuit gone) before completing.
    pub fn failed(&self) -> bool {
        !self.complete()
            && self.ended.is_some_and(|(r, _)| {
                r != CloseReason::End(tor_cell::relaycell::msg::EndReason::DONE)
            })
    }
}

/// The application's streams.
#[derive(Debug, Default)]
pub struct App {
    /// By id.
    pub streams: BTreeMap<StreamId, AppStream>,
    /// `Ended` events each stream got (one, once it ended).
    pub ends: BTreeMap<StreamId, u32>,
    /// Read buffer.
    buf: Vec<u8>,
}

impl App {
    /// Open a stream on `tunnel`.
    pub fn open(
        &mut self,
        tunnel: &mut ClientTunnel,
        want: Want,
        now: Instant,
    ) -> Result<StreamId, TunnelError> {
        let host = match want {
            Want::Download(n) => format!("dl-{n}.sim"),
            Want::Upload(_) => "ul.sim".to_owned(),
        };
        let id = tunnel.begin(&Target::hostname(host, 80), now)?;
        self.streams.insert(
            id,
            AppStream {
                want,
                connected: false,
                received: 0,
                content_ok: true,
                written: 0,
                eof: false,
                ended: None,
                read_error: None,
            },
        );
        Ok(id)
    }

    /// A stream event.
    pub fn on_event(&mut self, tunnel: &mut ClientTunnel, ev: StreamEvent, now: Instant) {
        let id = ev.id();
        match ev {
            StreamEvent::Connected { .. } => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.connected = true;
                }
                self.write(tunnel, id, now);
                self.read(tunnel, id, now);
            }
            StreamEvent::Readable { .. } => self.read(tunnel, id, now),
            StreamEvent::Writable { .. } => self.write(tunnel, id, now),
            StreamEvent::Ended { reason, remote, .. } => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.ended = Some((reason, remote));
                }
                *self.ends.entry(id).or_default() += 1;
                self.read(tunnel, id, now);
            }
            // Migration is the test's driver's (crates/sim/tests).
            StreamEvent::Resolved { .. }
            | StreamEvent::MigrateHandover { .. }
            | StreamEvent::MigrateFailed { .. } => {}
        }
    }

    /// Read everything stream `id` has.
    pub fn read(&mut self, tunnel: &mut ClientTunnel, id: StreamId, now: Instant) {
        if self.buf.len() < 64 * 1024 {
            self.buf.resize(64 * 1024, 0);
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.eof || matches!(s.want, Want::Upload(_)) {
            return;
        }
        loop {
            match tunnel.read(id, &mut self.buf, now) {
                Ok(0) => {
                    s.eof = true;
                    return;
                }
                Ok(n) => {
                    for (i, b) in self.buf.iter().take(n).enumerate() {
                        if *b != content_byte(id, s.received + i as u64) {
                            s.content_ok = false;
                        }
                    }
                    s.received += n as u64;
                }
                Err(e) if e.is_would_block() => return,
                Err(e) => {
                    s.read_error = Some(e);
                    return;
                }
            }
        }
    }

    /// Write what an upload still has to send, then shut the stream down.
    pub fn write(&mut self, tunnel: &mut ClientTunnel, id: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let Want::Upload(total) = s.want else {
            return;
        };
        if !s.connected || s.written >= total {
            return;
        }
        let chunk = vec![UPLOAD_BYTE; 16 * 1024];
        while s.written < total {
            let want = usize::try_from(total - s.written)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            match tunnel.write(id, chunk.get(..want).unwrap_or_default(), now) {
                Ok(0) | Err(_) => return,
                Ok(n) => s.written += n as u64,
            }
        }
        let _ = tunnel.shutdown_write(id, now);
    }

    /// Every stream complete.
    pub fn all_complete(&self) -> bool {
        !self.streams.is_empty() && self.streams.values().all(AppStream::complete)
    }

    /// Every stream ended, one way or the other.
    pub fn all_ended(&self) -> bool {
        self.streams
            .values()
            .all(|s| s.complete() || s.ended.is_some() || s.read_error.is_some())
    }
}
