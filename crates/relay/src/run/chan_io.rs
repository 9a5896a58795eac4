//! A channel's two tasks, which only move bytes: the reader decodes cells
//! (braid-core's codec) and hands them to the node task over its bounded
//! inbox (so a busy node slows the reading of sockets); the writer encodes
//! the cells the node task pulled into the channel's small bounded queue.
//! The node pulls only while the queue has room, so what waits beyond it
//! waits in the core's per-circuit queues.

use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use braid_core::channel::CellCodec;
use braid_core::ids::ChanKey;
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tor_cell::chancell::AnyChanCell;

use super::msg::{OpenedLink, OrStream, ToNode};

/// Cells a channel's writer queue holds.
pub(crate) const WRITE_QUEUE_CELLS: usize = 64;
/// Bytes the writer encodes before it writes them out.
const WRITE_BATCH_BYTES: usize = 32 * 1024;
/// Bytes the reader reads at once.
const READ_BUF: usize = 16 * 1024;
/// How long a closing channel's writer may take to say goodbye.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// A channel whose socket takes no byte for this long is closed: a peer
/// that stopped reading must not hold its circuits' memory and the
/// channel's buffers forever (the memory limit would close its circuits
/// one by one, never the channel).
pub(crate) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes moved by every channel, for the observed bandwidth.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Bytes read.
    pub(crate) read: AtomicU64,
    /// Bytes written.
    pub(crate) written: AtomicU64,
}

/// The node task's end of a channel.
#[derive(Debug)]
pub(crate) struct ChanIo {
    /// The writer's queue.
    pub(crate) tx: mpsc::Sender<AnyChanCell>,
    /// Set by the node when it found the queue full; the writer clears it
    /// and sends [`ToNode::WriterReady`] once it took cells.
    pub(crate) full: Arc<AtomicBool>,
    /// Cells put in the queue and not yet written to the socket (KIST
    /// counts them as buffered): the node adds, the writer subtracts.
    pub(crate) unwritten: Arc<AtomicUsize>,
    /// A handle of the TCP socket under TLS, for KIST's `TCP_INFO` (`None`
    /// if it could not be duplicated). Closed with the channel.
    pub(crate) sock: Option<OwnedFd>,
    /// The reader, aborted when the node closes the channel.
    reader: AbortHandle,
}

impl ChanIo {
    /// Start the reader and writer of `link`, channel `chan`.
    pub(crate) fn spawn(
        chan: ChanKey,
        link: OpenedLink,
        to_node: &mpsc::Sender<ToNode>,
        traffic: &Arc<Traffic>,
    ) -> Self {
        let sock = match link
            .stream
            .get_ref()
            .0
            .get_ref()
            .as_fd()
            .try_clone_to_owned()
        {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!("{chan}: no socket handle for KIST: {e}");
                None
            }
        };
        let (r, w) = tokio::io::split(link.stream);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CELLS);
        let full = Arc::new(AtomicBool::new(false));
        let unwritten = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            chan,
            codec: link.codec.clone(),
            rx,
            full: Arc::clone(&full),
            unwritten: Arc::clone(&unwritten),
            to_node: to_node.clone(),
            traffic: Arc::clone(traffic),
        };
        tokio::spawn(writer.run(w, link.unsent));
        let reader = tokio::spawn(read(
            chan,
            r,
            link.codec,
            to_node.clone(),
            Arc::clone(traffic),
        ))
        .abort_handle();
        Self {
            tx,
            full,
            unwritten,
            sock,
            reader,
        }
    }

    /// Stop reading; the writer sends what is queued and closes the
    /// connection once `self` (the queue's sender) is dropped.
    pub(crate) fn close(self) {
        self.reader.abort();
    }
}

/// Read cells from `r` and send them to the node, until EOF, an error, or
/// the node stops listening.
async fn read(
    chan: ChanKey,
    mut r: ReadHalf<OrStream>,
    mut codec: CellCodec,
    to_node: mpsc::Sender<ToNode>,
    traffic: Arc<Traffic>,
) {
    let mut buf = vec![0; READ_BUF];
    let why = loop {
        let mut cells = Vec::new();
        let err = loop {
            match codec.poll_cell() {
                Ok(Some(cell)) => cells.push(cell),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if !cells.is_empty() && to_node.send(ToNode::Cells { chan, cells }).await.is_err() {
            return;
        }
        if let Some(e) = err {
            break format!("bad cell: {e}");
        }
        match r.read(&mut buf).await {
            Ok(0) => break "closed by the peer".to_owned(),
            Ok(n) => {
                traffic.read.fetch_add(n as u64, Ordering::Relaxed);
                if let Err(e) = codec.handle_bytes(buf.get(..n).unwrap_or_default()) {
                    break format!("bad input: {e}");
                }
            }
            Err(e) => break format!("read: {e}"),
        }
    };
    let _ = to_node.send(ToNode::Closed { chan, why }).await;
}

/// A channel's writer.
struct Writer {
    chan: ChanKey,
    codec: CellCodec,
    rx: mpsc::Receiver<AnyChanCell>,
    full: Arc<AtomicBool>,
    unwritten: Arc<AtomicUsize>,
    to_node: mpsc::Sender<ToNode>,
    traffic: Arc<Traffic>,
}

impl Writer {
    /// Write `unsent`, then the queue's cells, until the node drops the
    /// queue (then close the connection) or a write fails.
    async fn run(mut self, mut w: WriteHalf<OrStream>, unsent: Vec<u8>) {
        let mut buf = unsent;
        // Cells encoded into `buf`.
        let mut cells = 0;
        loop {
            if !buf.is_empty() {
                let written = write_all_or_stall(&mut w, &buf, WRITE_STALL_TIMEOUT).await;
                if let Err(e) = written {
                    let why = format!("write: {e}");
                    let _ = self
                        .to_node
                        .send(ToNode::Closed {
                            chan: self.chan,
                            why,
                        })
                        .await;
                    return;
                }
                self.traffic
                    .written
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                self.unwritten.fetch_sub(cells, Ordering::Relaxed);
                buf.clear();
                cells = 0;
            }
            let Some(cell) = self.rx.recv().await else {
                break;
            };
            self.encode(cell, &mut buf);
            cells += 1;
            while buf.len() < WRITE_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(cell) => {
                        self.encode(cell, &mut buf);
                        cells += 1;
                    }
                    Err(_) => break,
                }
            }
            if self.full.swap(false, Ordering::SeqCst)
                && self
                    .to_node
                    .send(ToNode::WriterReady { chan: self.chan })
                    .await
                    .is_err()
            {
                return;
            }
        }
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, w.shutdown()).await;
    }

    fn encode(&self, cell: AnyChanCell, buf: &mut Vec<u8>) {
        if let Err(e) = self.codec.encode_cell(cell, buf) {
            // A cell the node built wrongly: a bug, not the peer's doing.
            tracing::warn!("{}: cannot encode a cell: {e}", self.chan);
        }
    }
}

/// Write all of `buf` and flush, failing with `TimedOut` when the socket
/// takes no byte for `stall`.
async fn write_all_or_stall<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &[u8],
    stall: Duration,
) -> std::io::Result<()> {
    let stalled = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer took no byte for {} s", stall.as_secs()),
        )
    };
    let mut off = 0;
    while let Some(rest) = buf.get(off..).filter(|r| !r.is_empty()) {
        match tokio::time::timeout(stall, w.write(rest)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => off += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(stalled()),
        }
    }
    tokio::time::timeout(stall, w.flush())
        .await
        .map_err(|_| stalled())?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that never reads: the write fails after the stall time, not
    /// before; one that reads gets everything.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_timed_out() {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let data = vec![7_u8; 64 * 1024];
        let start = tokio::time::Instant::now();
        let e = write_all_or_stall(&mut ours, &data, WRITE_STALL_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("took no byte for 120 s"), "{e}");
        assert_eq!(start.elapsed(), WRITE_STALL_TIMEOUT);

        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0_u8; 1000];
            while got.len() < 4096 + 64 * 1024 {
                let n = theirs.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                // A slow reader: a pause shorter than the stall time.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            got.len()
        });
        write_all_or_stall(&mut ours, &data, WRITE_STALL_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap(), 4096 + 64 * 1024);
    }
}
