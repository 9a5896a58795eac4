//! The pipe between a tunnel's task and the application's end of one of
//! its streams ([`TorStream`]): one bounded buffer each way and the wakers
//! of both sides, behind one lock.
//!
//! The task fills the application's buffer straight from the core's
//! stream buffer, only as far as it has room: what the application has
//! not taken waits in the core, whose flow control (XON/XOFF, proposal
//! 324 §4) counts it, and not in buffers it cannot see. Each side wakes
//! the other only when the other said it waits: the reader when it found
//! nothing to read, the task when it found the application's buffer full
//! (then only once half of it is free) or nothing to send.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes one pipe buffers per direction.
pub(crate) const PIPE_BYTES: usize = 64 * 1024;

/// A bounded byte buffer read from the front and written at the back,
/// whose bytes stay contiguous: it restarts at the front when emptied, and
/// moves what it holds to the front once at least half of it is read (so
/// each byte moves at most once more).
#[derive(Debug, Default)]
struct Buf {
    /// Allocated on first use, `PIPE_BYTES` long.
    bytes: Vec<u8>,
    /// `bytes[start..end]` holds the data.
    start: usize,
    end: usize,
}

impl Buf {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn free(&self) -> usize {
        PIPE_BYTES - self.len()
    }

    /// The bytes held.
    fn data(&self) -> &[u8] {
        self.bytes.get(self.start..self.end).unwrap_or_default()
    }

    /// `n` bytes were taken from the front.
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room at the back to write into (empty when full); [`Self::commit`]
    /// what was written.
    fn spare(&mut self) -> &mut [u8] {
        if self.bytes.is_empty() {
            self.bytes = vec![0; PIPE_BYTES];
        }
        if self.start >= PIPE_BYTES / 2 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.bytes.get_mut(self.end..).unwrap_or_default()
    }

    /// `n` bytes were written into [`Self::spare`].
    fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.bytes.len());
    }

    /// Append as much of `data` as fits; how much did.
    fn push(&mut self, data: &[u8]) -> usize {
        let room = self.spare();
        let n = room.len().min(data.len());
        if let (Some(dst), Some(src)) = (room.get_mut(..n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.commit(n);
        n
    }
}

/// Both directions and both sides' state.
#[derive(Debug, Default)]
struct State {
    /// Exit to application.
    down: Buf,
    /// Application to exit.
    up: Buf,
    /// The task put the stream's last byte into `down`.
    down_eof: bool,
    /// The stream ended abnormally: reading past its data is an error.
    failed: bool,
    /// The application shut down its writing side.
    up_shutdown: bool,
    /// The application dropped its end.
    app_gone: bool,
    /// The task dropped its end.
    task_gone: bool,
    /// The reader waits for bytes.
    reader: Option<Waker>,
    /// The writer waits for room.
    writer: Option<Waker>,
    /// The task, registered whenever it looks at this pipe.
    task: Option<Waker>,
    /// The task waits for room in `down`.
    task_wants_room: bool,
    /// The task waits for bytes in `up`.
    task_wants_data: bool,
}

/// The pipe both ends share.
#[derive(Debug, Default)]
struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new pipe: the task's end and the application's.
pub(crate) fn pipe() -> (StreamPipe, TorStream) {
    let shared = Arc::new(Shared::default());
    (
        StreamPipe {
            shared: shared.clone(),
        },
        TorStream { shared },
    )
}

/// Wake `w`, if any.
fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// What [`StreamPipe::fill`]'s reader found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// This many bytes, written into the room it was given.
    Bytes(usize),
    /// The end of the stream.
    Eof,
    /// The stream is gone without its end: the application reads an
    /// error after what is buffered.
    Broken,
    /// Nothing now.
    Nothing,
}

/// What [`StreamPipe::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Bytes went in.
    Moved,
    /// The end went in (after any bytes): nothing more will.
    Ended,
    /// Nothing could move now.
    Idle,
    /// The application dropped its end.
    AppGone,
}

/// The task's end of a stream's pipe. Dropping it ends the stream for the
/// application: after what is buffered it reads EOF, or an error if the
/// stream failed or never ended.
#[derive(Debug)]
pub(crate) struct StreamPipe {
    shared: Arc<Shared>,
}

impl StreamPipe {
    /// Move bytes toward the application: `read` is given the free room
    /// and says what it put there. A full buffer has the application wake
    /// the task once half of it is free.
    pub(crate) fn fill(&self, cx: &Context<'_>, mut read: impl FnMut(&mut [u8]) -> Read) -> Fill {
        let mut st = self.shared.lock();
        register(&mut st.task, cx);
        if st.app_gone {
            return Fill::AppGone;
        }
        let mut moved = false;
        while !st.down_eof {
            let room = st.down.spare();
            if room.is_empty() {
                st.task_wants_room = true;
                break;
            }
            match read(room) {
                Read::Bytes(n) => st.down.commit(n),
                Read::Eof => st.down_eof = true,
                Read::Broken => (st.down_eof, st.failed) = (true, true),
                Read::Nothing => break,
            }
            moved = true;
        }
        let ended = moved && st.down_eof;
        let reader = if moved { st.reader.take() } else { None };
        drop(st);
        wake(reader);
        match (ended, moved) {
            (true, _) => Fill::Ended,
            (false, true) => Fill::Moved,
            (false, false) => Fill::Idle,
        }
    }

    /// Move bytes from the application: `write` is given what waits and
    /// returns how many it took (0: no room now). Returns whether anything
    /// moved, and whether the application is done writing (it shut down
    /// its side or dropped its end) with nothing left to take.
    pub(crate) fn drain(
        &self,
        cx: &Context<'_>,
        mut write: impl FnMut(&[u8]) -> usize,
    ) -> (bool, bool) {
        let mut st = self.shared.lock();
        register(&mut st.task, cx);
        let mut moved = false;
        while !st.up.is_empty() {
            let n = write(st.up.data());
            if n == 0 {
                break;
            }
            st.up.consume(n);
            moved = true;
        }
        let finished = st.up_shutdown || st.app_gone;
        st.task_wants_data = st.up.is_empty() && !finished;
        let done = finished && st.up.is_empty();
        let writer = if moved { st.writer.take() } else { None };
        drop(st);
        wake(writer);
        (moved, done)
    }

    /// The stream ended abnormally (the circuit died, or the exit ended it
    /// with an error): reading past its data gives an error.
    pub(crate) fn set_failed(&self) {
        self.shared.lock().failed = true;
    }
}

impl Drop for StreamPipe {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.task_gone = true;
        let (reader, writer) = (st.reader.take(), st.writer.take());
        drop(st);
        wake(reader);
        wake(writer);
    }
}

/// Keep `cx`'s waker in `slot`.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The application's end of a Tor stream, as the SOCKS front end (or any
/// caller) sees it. Reading past the data of a stream that ended
/// abnormally (its circuit died, or the exit ended it with an error) gives
/// `ConnectionReset` instead of a clean EOF, so a truncated stream is
/// never mistaken for a complete one.
#[derive(Debug)]
pub struct TorStream {
    shared: Arc<Shared>,
}

impl TorStream {
    /// True if the stream ended abnormally.
    pub fn failed(&self) -> bool {
        self.shared.lock().failed
    }
}

impl AsyncRead for TorStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        if !st.down.is_empty() {
            let n = st.down.len().min(buf.remaining());
            buf.put_slice(st.down.data().get(..n).unwrap_or_default());
            st.down.consume(n);
            let task = if st.task_wants_room && st.down.free() >= PIPE_BYTES / 2 {
                st.task_wants_room = false;
                st.task.clone()
            } else {
                None
            };
            drop(st);
            wake(task);
            return Poll::Ready(Ok(()));
        }
        if !st.down_eof && !st.task_gone {
            register(&mut st.reader, cx);
            return Poll::Pending;
        }
        // The end: clean only if the stream ended well and was delivered
        // to its last byte.
        if st.failed || !st.down_eof {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the Tor stream ended abnormally",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TorStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        if st.task_gone || st.up_shutdown {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = st.up.push(buf);
        if n == 0 && !buf.is_empty() {
            register(&mut st.writer, cx);
            return Poll::Pending;
        }
        let task = if st.task_wants_data {
            st.task_wants_data = false;
            st.task.clone()
        } else {
            None
        };
        drop(st);
        wake(task);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        st.up_shutdown = true;
        let task = st.task.clone();
        drop(st);
        wake(task);
        Poll::Ready(Ok(()))
    }
}

impl Drop for TorStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.app_gone = true;
        let task = st.task.clone();
        drop(st);
        wake(task);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    fn wakes(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    /// Read what the application side has now (`None`: Pending).
    fn read(s: &mut TorStream, w: &Waker, max: usize) -> Option<io::Result<Vec<u8>>> {
        let mut buf = vec![0; max];
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(s).poll_read(&mut Context::from_waker(w), &mut rb) {
            Poll::Ready(Ok(())) => Some(Ok(rb.filled().to_vec())),
            Poll::Ready(Err(e)) => Some(Err(e)),
            Poll::Pending => None,
        }
    }

    /// Fill from `src`, as the task does from the core.
    fn fill(p: &StreamPipe, w: &Waker, src: &mut Vec<u8>, eof: bool) -> Fill {
        p.fill(&Context::from_waker(w), |room| {
            if src.is_empty() {
                return if eof { Read::Eof } else { Read::Nothing };
            }
            let n = room.len().min(src.len());
            room[..n].copy_from_slice(&src[..n]);
            src.drain(..n);
            Read::Bytes(n)
        })
    }

    #[test]
    fn bytes_reach_the_application_in_order_and_wait_in_the_source_when_full() {
        let (task, mut app) = pipe();
        let (tc, tw) = counter();
        let (rc, rw) = counter();
        let total: Vec<u8> = (0..3 * PIPE_BYTES + 123).map(|i| (i % 251) as u8).collect();
        let mut src = total.clone();
        let mut got = Vec::new();
        assert!(read(&mut app, &rw, 1000).is_none(), "nothing yet");
        assert_eq!(fill(&task, &tw, &mut src, true), Fill::Moved);
        // Only a pipe's worth left the source; the rest waits there.
        assert_eq!(src.len(), total.len() - PIPE_BYTES);
        assert_eq!(wakes(&rc), 1, "the waiting reader is woken");
        // Reading less than half the pipe does not wake the task.
        got.extend(read(&mut app, &rw, PIPE_BYTES / 4).unwrap().unwrap());
        assert_eq!(wakes(&tc), 0);
        got.extend(read(&mut app, &rw, PIPE_BYTES / 4).unwrap().unwrap());
        assert_eq!(wakes(&tc), 1, "half free: the task is woken once");
        got.extend(read(&mut app, &rw, 7).unwrap().unwrap());
        assert_eq!(wakes(&tc), 1);
        loop {
            match fill(&task, &tw, &mut src, true) {
                Fill::Ended => {}
                Fill::Moved | Fill::Idle => {}
                Fill::AppGone => panic!("app gone"),
            }
            match read(&mut app, &rw, 10_000) {
                Some(Ok(b)) if b.is_empty() => break,
                Some(Ok(b)) => got.extend(b),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, total);
        assert!(!app.failed());
        // EOF stays EOF.
        assert!(read(&mut app, &rw, 10).unwrap().unwrap().is_empty());
    }

    #[test]
    fn a_failed_stream_reads_its_data_then_an_error() {
        let (task, mut app) = pipe();
        let (_, w) = counter();
        let mut src = b"partial".to_vec();
        fill(&task, &w, &mut src, false);
        task.set_failed();
        assert_eq!(read(&mut app, &w, 100).unwrap().unwrap(), b"partial");
        assert!(read(&mut app, &w, 100).is_none(), "the end is not in yet");
        assert_eq!(fill(&task, &w, &mut src, true), Fill::Ended);
        let e = read(&mut app, &w, 100).unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(app.failed());
    }

    #[test]
    fn a_task_gone_without_the_end_is_an_error_after_the_data() {
        let (task, mut app) = pipe();
        let (rc, w) = counter();
        let mut src = b"abc".to_vec();
        fill(&task, &w, &mut src, false);
        assert_eq!(read(&mut app, &w, 2).unwrap().unwrap(), b"ab");
        assert!(read(&mut app, &w, 2).unwrap().unwrap() == b"c");
        assert!(read(&mut app, &w, 2).is_none());
        let before = wakes(&rc);
        drop(task);
        assert_eq!(wakes(&rc), before + 1);
        let e = read(&mut app, &w, 2).unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        // Writes fail too.
        let r = Pin::new(&mut app).poll_write(&mut Context::from_waker(&w), b"x");
        assert!(matches!(r, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe));
    }

    #[test]
    fn the_application_writes_until_full_and_the_task_drains_it() {
        let (task, mut app) = pipe();
        let (tc, tw) = counter();
        let (wc, ww) = counter();
        let tcx = Context::from_waker(&tw);
        let mut wcx = Context::from_waker(&ww);
        // The task looks first: nothing to take, it waits for data.
        assert_eq!(task.drain(&tcx, |_| unreachable!()), (false, false));
        let chunk = vec![7u8; 40_000];
        let mut written = 0;
        while let Poll::Ready(n) = Pin::new(&mut app).poll_write(&mut wcx, &chunk) {
            written += n.unwrap();
        }
        assert_eq!(written, PIPE_BYTES, "bounded");
        assert_eq!(wakes(&tc), 1, "woken once, on the first bytes");
        // The core takes 10 000 at a time, twice, then has no room.
        let mut taken = 0;
        let mut calls = 0;
        let (moved, done) = task.drain(&tcx, |data| {
            calls += 1;
            if calls > 2 {
                return 0;
            }
            let n = data.len().min(10_000);
            taken += n;
            n
        });
        assert!(moved && !done);
        assert_eq!(taken, 20_000);
        assert_eq!(wakes(&wc), 1, "the blocked writer is woken");
        let r = Pin::new(&mut app).poll_shutdown(&mut wcx);
        assert!(matches!(r, Poll::Ready(Ok(()))));
        assert_eq!(wakes(&tc), 2, "a shutdown always wakes the task");
        let r = Pin::new(&mut app).poll_write(&mut wcx, b"late");
        assert!(matches!(r, Poll::Ready(Err(_))));
        let (moved, done) = task.drain(&tcx, |data| {
            taken += data.len();
            data.len()
        });
        assert!(moved && done);
        assert_eq!(taken, PIPE_BYTES);
    }

    #[test]
    fn a_dropped_application_is_seen_by_the_task() {
        let (task, app) = pipe();
        let (tc, tw) = counter();
        let mut src = b"x".to_vec();
        assert_eq!(fill(&task, &tw, &mut src, false), Fill::Moved);
        drop(app);
        assert_eq!(wakes(&tc), 1);
        assert_eq!(fill(&task, &tw, &mut src, false), Fill::AppGone);
        // Its writing side counts as finished.
        assert_eq!(task.drain(&Context::from_waker(&tw), |_| 0), (false, true));
    }

    #[test]
    fn buf_keeps_bytes_contiguous_and_moves_each_at_most_once_more() {
        let mut b = Buf::default();
        assert_eq!(b.push(&[1; 10]), 10);
        b.consume(10);
        assert_eq!((b.start, b.end), (0, 0), "restarts when emptied");
        assert_eq!(b.push(&vec![2; PIPE_BYTES]), PIPE_BYTES);
        assert_eq!(b.push(&[3]), 0, "full");
        b.consume(PIPE_BYTES / 2 - 1);
        assert!(b.spare().is_empty(), "no move before half is read");
        b.consume(1);
        assert_eq!(b.spare().len(), PIPE_BYTES / 2, "moved to the front");
        assert_eq!(b.data().len(), PIPE_BYTES / 2);
        assert!(b.data().iter().all(|&x| x == 2));
    }

    /// The advised rates (KB/s, 0 for unlimited) of the XONs `m` sends now,
    /// and whether it sends an XOFF.
    fn flow_signals(m: &mut braid_core::stream::StreamMap) -> (Vec<u32>, bool) {
        use tor_cell::relaycell::flow_ctrl::XonKBpsEwma;
        use tor_cell::relaycell::msg::AnyRelayMsg;
        let mut rates = Vec::new();
        let mut xoff = false;
        while let Some((_, msg)) = m.poll_transmit(false) {
            match msg {
                AnyRelayMsg::Xon(x) => rates.push(match x.kbytes_per_sec_ewma() {
                    XonKBpsEwma::Limited(r) => r.get(),
                    XonKBpsEwma::Unlimited => 0,
                }),
                AnyRelayMsg::Xoff(_) => xoff = true,
                _ => {}
            }
        }
        (rates, xoff)
    }

    /// The task's fill from the core's stream, then the application takes
    /// everything the pipe holds; returns the bytes it took.
    fn through(
        p: &StreamPipe,
        app: &mut TorStream,
        m: &mut braid_core::stream::StreamMap,
        id: braid_core::ids::StreamId,
        t: std::time::Instant,
    ) -> usize {
        let (_, w) = counter();
        let mut took = 0;
        loop {
            p.fill(&Context::from_waker(&w), |room| match m.read(id, room, t) {
                Ok(0) => Read::Eof,
                Ok(n) => Read::Bytes(n),
                Err(_) => Read::Nothing,
            });
            match read(app, &w, PIPE_BYTES) {
                Some(Ok(b)) if !b.is_empty() => took += b.len(),
                _ => return took,
            }
        }
    }

    /// prop 324 §4.1.2 through the driver's pipe: after an XOFF and a low
    /// advised rate, an application that takes every burst at once (40
    /// cells: more than one 16 KB read, as a Conflux reorder queue releases
    /// when a gap fills) must see the advised rate double, i.e. the task
    /// empties the core's buffer in one fill. The driver-level twin of
    /// braid-core's `advised_rate_grows_when_the_application_keeps_up`.
    #[test]
    fn advised_rate_doubles_while_the_application_takes_bursts_through_the_pipe() {
        use std::time::{Duration, Instant};

        use braid_core::cc::FlowParams;
        use braid_core::stream::{BeginFlags, StreamFlowMode, StreamMap, StreamMapConfig, Target};
        use tor_cell::relaycell::msg::{Connected, Data};

        const CELL: usize = Data::MAXLEN;
        let p = FlowParams::default();
        let mode = StreamFlowMode::XonXoff {
            params: p.clone(),
            onion: false,
        };
        let mut m = StreamMap::new(StreamMapConfig::default(), mode);
        let t0 = Instant::now();
        let target = Target::hostname("example.com", 80);
        let id = m.begin(&target, BeginFlags::empty(), t0).unwrap();
        while m.poll_transmit(true).is_some() {}
        m.handle_msg(t0, id, Connected::new_empty().into()).unwrap();
        while m.poll_event().is_some() {}
        let (task, mut app) = pipe();
        let cell = [5u8; CELL];
        let data = || Data::new(&cell).unwrap().into();
        // The application does not read: past cc_xoff_client, XOFF.
        let limit = usize::try_from(p.xoff_client_bytes).unwrap() / CELL;
        for i in 0..limit + 3 {
            let t = if i > limit {
                t0 + Duration::from_millis(6)
            } else {
                t0
            };
            m.handle_msg(t, id, data()).unwrap();
        }
        assert!(flow_signals(&mut m).1, "XOFF");
        // A slow application: 25 cells every 20 ms until drained.
        let mut t = t0 + Duration::from_millis(10);
        let (_, w) = counter();
        while m.recv_buffered(id).unwrap() > 0 {
            t += Duration::from_millis(20);
            task.fill(&Context::from_waker(&w), |room| {
                let n = room.len().min(25 * CELL);
                let room = &mut room[..n];
                match m.read(id, room, t) {
                    Ok(n) if n > 0 => Read::Bytes(n),
                    _ => Read::Nothing,
                }
            });
            while let Some(Ok(b)) = read(&mut app, &w, PIPE_BYTES) {
                if b.is_empty() {
                    break;
                }
            }
        }
        let (first, _) = flow_signals(&mut m);
        assert_eq!(first.len(), 1, "one XON once drained: {first:?}");
        let first = first[0];
        assert!(first > 0, "a measured rate");
        // The exit keeps to the advised rate, in bursts of 40 cells; the
        // application takes each burst at once through the pipe.
        let burst = 40;
        let period = Duration::from_micros((burst * CELL) as u64 * 1000 / u64::from(first));
        let mut later = Vec::new();
        for _ in 0..(3_000_000 / (burst * CELL)) {
            t += period;
            for _ in 0..burst {
                m.handle_msg(t, id, data()).unwrap();
            }
            assert_eq!(through(&task, &mut app, &mut m, id, t), burst * CELL);
            later.extend(flow_signals(&mut m).0);
        }
        assert!(
            later.iter().any(|&r| r == 0 || r >= 2 * first),
            "first XON {first} KB/s, then {later:?}"
        );
    }
}
