//! The application's end of a Tor stream: a bounded pipe to the tunnel
//! task, plus a flag the task sets when the stream ended abnormally (the
//! circuit died, or the exit ended it with an error). Reading past the data
//! of such a stream gives `ConnectionReset` instead of a clean EOF, so a
//! truncated stream is never mistaken for a complete one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// One stream, as the SOCKS front end (or any caller) sees it.
#[derive(Debug)]
pub struct TorStream {
    pipe: DuplexStream,
    failed: Arc<AtomicBool>,
}

impl TorStream {
    pub(crate) fn new(pipe: DuplexStream, failed: Arc<AtomicBool>) -> Self {
        Self { pipe, failed }
    }

    /// True if the stream ended abnormally.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

impl AsyncRead for TorStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let failed = self.failed.clone();
        match Pin::new(&mut self.pipe).poll_read(cx, buf) {
            Poll::Ready(Ok(()))
                if buf.filled().len() == before && failed.load(Ordering::Acquire) =>
            {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "the Tor stream ended abnormally",
                )))
            }
            other => other,
        }
    }
}

impl AsyncWrite for TorStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}
