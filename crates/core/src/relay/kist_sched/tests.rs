#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::float_cmp,
    reason = "tests"
)]

use super::*;

/// A channel of the fake outlet.
#[derive(Debug, Clone)]
struct FakeChan {
    cells: usize,
    /// Its priority, and how much each cell sent adds.
    prio: f64,
    per_cell: f64,
    /// Cells its writer takes before it is full.
    room: usize,
    /// What the kernel says: figures, or why not.
    kernel: Option<Result<SocketInfo, KernelError>>,
    buffered: usize,
}

impl FakeChan {
    fn new(cells: usize, kernel: Option<Result<SocketInfo, KernelError>>) -> Self {
        Self {
            cells,
            prio: 0.0,
            per_cell: 1.0,
            room: 10_000,
            kernel,
            buffered: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Fake {
    chans: BTreeMap<ChanKey, FakeChan>,
    /// Channels in the order their cells were sent.
    sent: Vec<ChanKey>,
    /// Whether each socket query asked the kernel.
    asked_kernel: Vec<bool>,
}

impl Outlet for Fake {
    fn priority(&mut self, chan: ChanKey, _now: Instant) -> Option<f64> {
        let c = self.chans.get(&chan)?;
        (c.cells > 0).then_some(c.prio)
    }

    fn send_one(&mut self, chan: ChanKey, _now: Instant) -> Sent {
        let Some(c) = self.chans.get_mut(&chan) else {
            return Sent::Gone;
        };
        if c.room == 0 {
            return Sent::Full;
        }
        if c.cells == 0 {
            return Sent::Empty;
        }
        c.cells -= 1;
        c.room -= 1;
        c.prio += c.per_cell;
        self.sent.push(chan);
        Sent::Cell
    }

    fn socket(&mut self, chan: ChanKey, ask_kernel: bool) -> Option<SocketState> {
        let c = self.chans.get(&chan)?;
        self.asked_kernel.push(ask_kernel);
        let info = if ask_kernel { c.kernel.clone() } else { None };
        Some(SocketState {
            info,
            buffered: c.buffered,
            room: c.room,
        })
    }
}

fn info(cwnd: u32, unacked: u32, notsent: u32) -> SocketInfo {
    SocketInfo {
        cwnd,
        unacked,
        mss: 1000,
        notsent,
    }
}

const A: ChanKey = ChanKey(1);
const B: ChanKey = ChanKey(2);

fn kist() -> Kist {
    Kist::new(true, None)
}

/// A channel with cells gets its socket's limit at once, (4 - 0) * 1000
/// plus 4 * 1000 bytes, 14 cells of 543; with cells left it is pending
/// until the limit expires one interval later, when a run gives it a new
/// one.
#[test]
fn a_channel_sends_what_the_socket_limit_allows() {
    let t0 = Instant::now();
    let interval = KistParams::default().run_interval;
    let mut k = kist();
    let mut out = Fake::default();
    out.chans
        .insert(A, FakeChan::new(100, Some(Ok(info(4, 0, 0)))));
    assert_eq!(k.next_run(t0), None);
    k.ready(&mut out, A, t0);
    assert_eq!(out.sent.len(), 14);
    let s = k.stats();
    assert_eq!((s.runs, s.limits, s.fallbacks), (0, 1, 0));
    assert_eq!((s.limit_bytes, s.limited, s.cells), (8000, 1, 14));
    assert_eq!(k.pending_count(), 1);

    // Not before the interval has passed, whatever comes.
    assert_eq!(k.next_run(t0), Some(t0 + interval));
    k.run_if_due(&mut out, t0 + interval / 2);
    k.ready(&mut out, A, t0 + interval / 2);
    assert_eq!(out.sent.len(), 14);
    // The kernel now holds 6000 unsent bytes and 4 segments unacked:
    // 0 + 4000 - 6000 < 0, no room.
    out.chans.get_mut(&A).unwrap().kernel = Some(Ok(info(4, 4, 6000)));
    k.run_if_due(&mut out, t0 + interval);
    assert_eq!(out.sent.len(), 14);
    assert_eq!((k.stats().runs, k.stats().limited), (1, 2));
    // What we hold unsent counts too: 8000 - 2000 - 1000.
    let c = out.chans.get_mut(&A).unwrap();
    c.kernel = Some(Ok(info(4, 0, 2000)));
    c.buffered = 1000;
    k.run_if_due(&mut out, t0 + interval * 2);
    assert_eq!(out.sent.len(), 14 + 5000 / CELL_WIRE_BYTES);
    assert_eq!(k.stats().runs, 2);
}

/// Without kernel figures the limit is the writer's room; EINVAL (a
/// kernel without TCP_INFO) stops the questions, other errors do not.
#[test]
fn the_fallback_is_the_writers_room() {
    let t0 = Instant::now();
    let interval = KistParams::default().run_interval;
    let mut k = kist();
    let mut out = Fake::default();
    let mut c = FakeChan::new(100, Some(Err(KernelError::Failed("EBADF".into()))));
    c.room = 5;
    out.chans.insert(A, c);
    k.ready(&mut out, A, t0);
    assert_eq!(out.sent.len(), 5);
    assert_eq!(k.stats().fallbacks, 1);
    out.chans.get_mut(&A).unwrap().room = 3;
    out.chans.get_mut(&A).unwrap().kernel = Some(Err(KernelError::Unsupported("EINVAL".into())));
    k.run_if_due(&mut out, t0 + interval);
    assert_eq!(out.sent.len(), 8);
    out.chans.get_mut(&A).unwrap().room = 2;
    k.run_if_due(&mut out, t0 + interval * 2);
    assert_eq!(out.sent.len(), 10);
    assert_eq!(out.asked_kernel, [true, true, false]);
    assert_eq!(k.stats().fallbacks, 3);

    // No socket handle at all: the same.
    let mut k = kist();
    let mut out = Fake::default();
    let mut c = FakeChan::new(100, None);
    c.room = 7;
    out.chans.insert(B, c);
    k.ready(&mut out, B, t0);
    assert_eq!(out.sent.len(), 7);
    assert_eq!(k.stats().fallbacks, 1);
}

/// In a run the channel whose best circuit is quietest goes first, one
/// cell at a time: B (priority 0) sends until it is as busy as A (10.5),
/// then they alternate.
#[test]
fn channels_are_served_by_priority() {
    let t0 = Instant::now();
    let interval = KistParams::default().run_interval;
    let mut k = kist();
    let mut out = Fake::default();
    // Both use up a limit of one cell first, so both wait for the run.
    let small = SocketInfo {
        cwnd: 1,
        unacked: 0,
        mss: 300,
        notsent: 0,
    };
    let mut a = FakeChan::new(6, Some(Ok(small)));
    a.prio = 9.5;
    let mut b = FakeChan::new(21, Some(Ok(small)));
    b.prio = -1.0;
    out.chans.insert(A, a);
    out.chans.insert(B, b);
    k.ready(&mut out, A, t0);
    k.ready(&mut out, B, t0);
    assert_eq!(out.sent, [A, B]);
    assert_eq!(k.pending_count(), 2);
    for c in out.chans.values_mut() {
        c.kernel = Some(Ok(info(100, 0, 0)));
    }
    out.sent.clear();
    k.run_if_due(&mut out, t0 + interval);
    assert_eq!(out.sent.len(), 25);
    assert!(out.sent[..11].iter().all(|&c| c == B), "{:?}", out.sent);
    assert_eq!(&out.sent[11..15], &[A, B, A, B]);
    assert_eq!(k.pending_count(), 0, "both ran out of cells");
    assert_eq!(k.stats().limited, 2);
}

/// Within its interval a channel uses what is left of its limit when
/// cells come; with nothing left it waits for the interval's end; after
/// it, a new limit at once. A full writer stops it without making it
/// pending (the writer says when it has room).
#[test]
fn a_limit_holds_for_one_interval() {
    let t0 = Instant::now();
    let interval = KistParams::default().run_interval;
    let mut k = kist();
    let mut out = Fake::default();
    // 20 cells of room in the socket, 2 cells to send.
    let kernel = SocketInfo {
        cwnd: 10,
        unacked: 0,
        mss: 543,
        notsent: 0,
    };
    out.chans.insert(A, FakeChan::new(2, Some(Ok(kernel))));
    k.ready(&mut out, A, t0);
    assert_eq!(out.sent.len(), 2);
    assert_eq!(k.pending_count(), 0);
    // More cells within the interval, 3 cells of room in the writer.
    let t1 = t0 + interval / 4;
    out.chans.get_mut(&A).unwrap().cells = 30;
    out.chans.get_mut(&A).unwrap().room = 3;
    k.ready(&mut out, A, t1);
    assert_eq!(out.sent.len(), 5, "until the writer is full");
    assert_eq!(k.pending_count(), 0);
    assert_eq!(k.next_run(t1), None);
    // The writer has room again: on with the rest (20 - 5 cells).
    out.chans.get_mut(&A).unwrap().room = 100;
    k.ready(&mut out, A, t1);
    assert_eq!(out.sent.len(), 20);
    assert_eq!(k.pending_count(), 1, "limit used with cells left");
    assert_eq!(k.next_run(t1), Some(t0 + interval));
    k.ready(&mut out, A, t1);
    assert_eq!(out.sent.len(), 20, "nothing left until the interval ends");
    assert_eq!(k.stats().limits, 1);
    // Past it, cells go at once with a new limit (before the run).
    k.ready(&mut out, A, t0 + interval);
    assert_eq!(out.sent.len(), 32);
    assert_eq!(k.pending_count(), 0);
    assert_eq!((k.stats().limits, k.stats().runs), (2, 0));
    // An idle channel's next cells too, however long after.
    out.chans.get_mut(&A).unwrap().cells = 1;
    k.ready(&mut out, A, t0 + interval * 10);
    assert_eq!(out.sent.len(), 33);
    // A channel that closed is forgotten.
    out.chans.get_mut(&A).unwrap().cells = 100;
    k.ready(&mut out, A, t0 + interval * 20);
    assert_eq!(k.pending_count(), 1);
    out.chans.remove(&A);
    k.run_if_due(&mut out, t0 + interval * 21);
    assert_eq!(k.pending_count(), 0);
    assert_eq!(k.next_run(t0 + interval * 21), None);
}

/// `kist = false` turns it off; a configured interval wins over the
/// consensus'; a consensus interval of 0 turns it off and hands back the
/// pending channels.
#[test]
fn configuration_and_consensus() {
    let t0 = Instant::now();
    assert!(Kist::new(false, None).params().is_none());
    let mut off = Kist::new(false, Some(Duration::from_millis(5)));
    assert!(off.set_consensus_interval(Some(20)).is_empty());
    assert!(off.params().is_none());

    let mut k = Kist::new(true, Some(Duration::from_millis(5)));
    k.set_consensus_interval(Some(20));
    assert_eq!(k.params().unwrap().run_interval, Duration::from_millis(5));
    assert!(Kist::new(true, Some(Duration::ZERO)).params().is_none());

    let mut k = kist();
    assert_eq!(k.params().unwrap().run_interval, Duration::from_millis(10));
    k.set_consensus_interval(Some(25));
    assert_eq!(k.params().unwrap().run_interval, Duration::from_millis(25));
    let mut out = Fake::default();
    let mut c = FakeChan::new(3, None);
    c.room = 1;
    out.chans.insert(A, c);
    k.ready(&mut out, A, t0);
    assert_eq!(k.pending_count(), 1);
    assert_eq!(k.set_consensus_interval(Some(0)), vec![A]);
    assert!(k.params().is_none());
    assert_eq!(k.next_run(t0), None);
    assert!(k.set_consensus_interval(None).is_empty());
    assert!(k.params().is_some(), "no parameter: the default, on");
}
