//! Tests of the channel reactor ([`super::reactor`]) against a relay end
//! made of a duplex pipe and a cell codec: cells both ways, overflow,
//! DESTROYs and the probe, round robin, EOF, shutdown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::time::Duration;

use braid_core::channel::CellCodec;
use braid_core::ids::CircId;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tor_cell::chancell::msg::{
    AnyChanMsg, CreateFast, CreatedFast, Destroy, DestroyReason, Netinfo, Padding, Relay, Vpadding,
};
use tor_cell::chancell::{AnyChanCell, ChanCell, ChanCmd, ChanMsg, CircId as WireCircId};

use super::config::ChannelConfig;
use super::error::{ChannelDriverError, CloseReason};
use super::handle::{CircuitIo, ReactorLink};
use super::reactor::spawn_link;

const WAIT: Duration = Duration::from_secs(5);

/// The relay's end of the connection.
struct Peer {
    io: DuplexStream,
    codec: CellCodec,
}

impl Peer {
    async fn send(&mut self, id: u32, msg: AnyChanMsg) {
        let mut out = Vec::new();
        self.codec
            .encode_cell(ChanCell::new(WireCircId::new(id), msg), &mut out)
            .unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> AnyChanCell {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(c) = self.codec.poll_cell().unwrap() {
                    return c;
                }
                let mut buf = [0_u8; 4096];
                let n = self.io.read(&mut buf).await.unwrap();
                assert!(n > 0, "reactor closed the connection");
                self.codec.handle_bytes(&buf[..n]).unwrap();
            }
        })
        .await
        .expect("no cell from the reactor")
    }

    /// Any bytes from the reactor.
    async fn recv_raw(&mut self) -> usize {
        let mut buf = [0_u8; 4096];
        self.io.read(&mut buf).await.unwrap()
    }

    /// Expect a DESTROY for `id`; return its reason.
    async fn recv_destroy(&mut self, id: CircId) -> DestroyReason {
        let (cid, msg) = self.recv().await.into_circid_and_msg();
        assert_eq!(WireCircId::get_or_zero(cid), id.get());
        match msg {
            AnyChanMsg::Destroy(d) => d.reason(),
            m => panic!("expected DESTROY, got {}", m.cmd()),
        }
    }
}

fn codec() -> CellCodec {
    let mut c = CellCodec::new();
    c.set_link_version(5).unwrap();
    c
}

fn start(config: ChannelConfig, unsent: Vec<u8>) -> (ReactorLink, JoinHandle<CloseReason>, Peer) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let peer: SocketAddr = ([127, 0, 0, 1], 9).into();
    let (link, task) = spawn_link(ours, peer, codec(), unsent, config);
    (
        link,
        task,
        Peer {
            io: theirs,
            codec: codec(),
        },
    )
}

async fn recv_msg(io: &mut CircuitIo) -> Option<AnyChanMsg> {
    tokio::time::timeout(WAIT, io.rx.recv())
        .await
        .expect("circuit waited too long")
}

fn relay(marker: u8) -> AnyChanMsg {
    Relay::new([marker]).into()
}

fn marker(msg: AnyChanMsg) -> u8 {
    match msg {
        AnyChanMsg::Relay(r) => r.into_relay_body()[0],
        m => panic!("expected RELAY, got {}", m.cmd()),
    }
}

#[tokio::test]
async fn cells_flow_both_ways() {
    let mut netinfo = Vec::new();
    codec()
        .encode_cell(
            ChanCell::new(None, Netinfo::from_client(None).into()),
            &mut netinfo,
        )
        .unwrap();
    let (link, _task, mut peer) = start(ChannelConfig::default(), netinfo);
    // What the handshake left unsent goes first.
    assert_eq!(peer.recv().await.msg().cmd(), ChanCmd::NETINFO);

    let (id, mut io) = link.open_circuit().await.unwrap();
    assert!(id.high_bit(), "{id}");
    io.tx
        .send(CreateFast::new(vec![7; 20]).into())
        .await
        .unwrap();
    let (cid, msg) = peer.recv().await.into_circid_and_msg();
    assert_eq!(WireCircId::get_or_zero(cid), id.get());
    assert!(matches!(msg, AnyChanMsg::CreateFast(c) if c.handshake() == [7; 20]));

    // Padding, VPADDING and cells for unknown circuits are dropped; the
    // circuit gets only its own.
    peer.send(0, Padding::new().into()).await;
    peer.send(0, Vpadding::new(10).into()).await;
    peer.send(0x8000_0001 ^ id.get(), relay(9)).await;
    peer.send(id.get(), CreatedFast::new(vec![3; 40]).into())
        .await;
    peer.send(id.get(), relay(1)).await;
    let msg = recv_msg(&mut io).await.unwrap();
    match msg {
        AnyChanMsg::CreatedFast(c) => assert_eq!(c.into_handshake(), [3; 40]),
        m => panic!("expected CREATED_FAST, got {}", m.cmd()),
    }
    assert_eq!(marker(recv_msg(&mut io).await.unwrap()), 1);
    assert!(!link.is_closed());
    let stats = link.stats();
    assert_eq!((stats.padding_in, stats.cells_dropped), (2, 1), "{stats:?}");
    assert_eq!((stats.cells_in, stats.cells_out), (5, 1), "{stats:?}");
}

#[tokio::test]
async fn full_inbound_queue_closes_only_that_circuit() {
    let config = ChannelConfig {
        circuit_inbound_queue: 2,
        ..ChannelConfig::default()
    };
    let (link, _task, mut peer) = start(config, Vec::new());
    let (slow, mut slow_io) = link.open_circuit().await.unwrap();
    let (fast, mut fast_io) = link.open_circuit().await.unwrap();
    for i in 0..3 {
        peer.send(slow.get(), relay(i)).await;
    }
    assert_eq!(peer.recv_destroy(slow).await, DestroyReason::RESOURCELIMIT);
    assert_eq!(link.stats().overflow_closes, 1);
    // The slow circuit gets what fit, then its queue ends.
    assert_eq!(marker(recv_msg(&mut slow_io).await.unwrap()), 0);
    assert_eq!(marker(recv_msg(&mut slow_io).await.unwrap()), 1);
    assert!(recv_msg(&mut slow_io).await.is_none());
    assert!(slow_io.tx.send(relay(0)).await.is_err());
    // Later cells for it are dropped; the other circuit is unharmed.
    peer.send(slow.get(), relay(5)).await;
    peer.send(fast.get(), relay(6)).await;
    assert_eq!(marker(recv_msg(&mut fast_io).await.unwrap()), 6);
    fast_io.tx.send(relay(7)).await.unwrap();
    let (cid, msg) = peer.recv().await.into_circid_and_msg();
    assert_eq!(WireCircId::get_or_zero(cid), fast.get());
    assert_eq!(marker(msg), 7);
    // Closing an already closed circuit says so.
    assert!(!link.close_circuit(slow, DestroyReason::NONE).await.unwrap());
}

#[tokio::test]
async fn relay_destroys_make_the_relay_flush_held_destroys() {
    let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
    let (a, mut a_io) = link.open_circuit().await.unwrap();
    let (b, mut b_io) = link.open_circuit().await.unwrap();
    let (c, mut c_io) = link.open_circuit().await.unwrap();
    let probe_of = |cell: AnyChanCell| {
        let (cid, msg) = cell.into_circid_and_msg();
        assert!(matches!(msg, AnyChanMsg::CreateFast(_)), "{}", msg.cmd());
        let id = WireCircId::get_or_zero(cid);
        assert!(![a.get(), b.get(), c.get()].contains(&id));
        id
    };
    // a destroyed while b and c remain: a probe.
    peer.send(a.get(), Destroy::new(DestroyReason::CHANNEL_CLOSED).into())
        .await;
    assert!(matches!(
        recv_msg(&mut a_io).await,
        Some(AnyChanMsg::Destroy(_))
    ));
    let p1 = probe_of(peer.recv().await);
    // b destroyed while the probe is out: no second probe yet.
    peer.send(b.get(), Destroy::new(DestroyReason::CHANNEL_CLOSED).into())
        .await;
    assert!(matches!(
        recv_msg(&mut b_io).await,
        Some(AnyChanMsg::Destroy(_))
    ));
    // The answer is destroyed unread, then c (still here) gets another.
    peer.send(p1, CreatedFast::new(vec![7; 40]).into()).await;
    let (cid, msg) = peer.recv().await.into_circid_and_msg();
    assert_eq!(WireCircId::get_or_zero(cid), p1);
    assert!(matches!(msg, AnyChanMsg::Destroy(_)));
    let p2 = probe_of(peer.recv().await);
    assert_ne!(p1, p2);
    // A probe refused with DESTROY is simply over.
    peer.send(p2, Destroy::new(DestroyReason::RESOURCELIMIT).into())
        .await;
    // c destroyed last: nobody left, no probe; c's queue is intact.
    peer.send(c.get(), Destroy::new(DestroyReason::FINISHED).into())
        .await;
    assert!(matches!(
        recv_msg(&mut c_io).await,
        Some(AnyChanMsg::Destroy(_))
    ));
    assert!(recv_msg(&mut c_io).await.is_none());
    assert_eq!(link.stats().destroy_probes, 2);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), peer.recv_raw())
            .await
            .is_err(),
        "nothing more from the reactor"
    );
}

#[tokio::test]
async fn destroys_both_ways() {
    let config = ChannelConfig {
        destroy_probe: false,
        ..ChannelConfig::default()
    };
    let (link, _task, mut peer) = start(config, Vec::new());
    let (a, mut a_io) = link.open_circuit().await.unwrap();
    let (b, mut b_io) = link.open_circuit().await.unwrap();
    let (c, c_io) = link.open_circuit().await.unwrap();
    let (d, d_io) = link.open_circuit().await.unwrap();

    // The relay destroys a: a gets the DESTROY, then its queue ends,
    // and nothing goes back.
    peer.send(a.get(), Destroy::new(DestroyReason::FINISHED).into())
        .await;
    let msg = recv_msg(&mut a_io).await.unwrap();
    assert!(matches!(msg, AnyChanMsg::Destroy(d) if d.reason() == DestroyReason::FINISHED));
    assert!(recv_msg(&mut a_io).await.is_none());

    // We close b.
    assert!(link.close_circuit(b, DestroyReason::NONE).await.unwrap());
    assert_eq!(peer.recv_destroy(b).await, DestroyReason::NONE);
    assert!(recv_msg(&mut b_io).await.is_none());

    // c's owner sends a DESTROY itself.
    c_io.tx
        .send(Destroy::new(DestroyReason::NONE).into())
        .await
        .unwrap();
    assert_eq!(peer.recv_destroy(c).await, DestroyReason::NONE);

    // d's owner drops it, after a last cell.
    d_io.tx.send(relay(4)).await.unwrap();
    drop(d_io);
    let (cid, msg) = peer.recv().await.into_circid_and_msg();
    assert_eq!(WireCircId::get_or_zero(cid), d.get());
    assert_eq!(marker(msg), 4);
    assert_eq!(peer.recv_destroy(d).await, DestroyReason::NONE);

    // A circuit may not send channel-level cells: closed.
    let (e, e_io) = link.open_circuit().await.unwrap();
    e_io.tx.send(Padding::new().into()).await.unwrap();
    assert_eq!(peer.recv_destroy(e).await, DestroyReason::NONE);
    assert!(!link.is_closed());
}

#[tokio::test]
async fn circuits_take_turns() {
    let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
    let (a, a_io) = link.open_circuit().await.unwrap();
    let (b, b_io) = link.open_circuit().await.unwrap();
    // Queued before the reactor runs again (current-thread runtime).
    for i in 0..4 {
        a_io.tx.try_send(relay(i)).unwrap();
        b_io.tx.try_send(relay(i)).unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..8 {
        let (cid, msg) = peer.recv().await.into_circid_and_msg();
        let cid = WireCircId::get_or_zero(cid);
        order.push((cid == a.get(), marker(msg)));
        assert!(cid == a.get() || cid == b.get());
    }
    for pair in order.chunks(2) {
        assert_ne!(pair[0].0, pair[1].0, "not round robin: {order:?}");
        assert_eq!(pair[0].1, pair[1].1, "{order:?}");
    }
}

#[tokio::test]
async fn eof_ends_every_circuit() {
    let (link, task, peer) = start(ChannelConfig::default(), Vec::new());
    let (_a, mut a_io) = link.open_circuit().await.unwrap();
    drop(peer);
    assert!(recv_msg(&mut a_io).await.is_none());
    assert!(matches!(link.closed().await, CloseReason::Eof));
    assert!(matches!(task.await.unwrap(), CloseReason::Eof));
    assert!(link.is_closed());
    assert!(matches!(
        link.open_circuit().await.unwrap_err(),
        ChannelDriverError::Closed(CloseReason::Eof)
    ));
}

#[tokio::test]
async fn eof_mid_cell_is_an_error() {
    let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
    peer.io.write_all(&[0x80, 0, 0, 1, 3, 0]).await.unwrap();
    drop(peer);
    assert!(matches!(link.closed().await, CloseReason::Io(_)));
}

#[tokio::test]
async fn handshake_cell_on_open_channel_closes_it() {
    let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
    let (_a, mut a_io) = link.open_circuit().await.unwrap();
    peer.send(0, Netinfo::from_client(None).into()).await;
    assert!(recv_msg(&mut a_io).await.is_none());
    let reason = link.closed().await;
    assert!(
        matches!(reason, CloseReason::UnexpectedCell { cmd } if cmd == ChanCmd::NETINFO),
        "{reason}"
    );
    assert!(reason.is_peer_fault());
}

#[tokio::test]
async fn circuit_cell_on_circuit_zero_closes_the_channel() {
    let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
    // A RELAY cell with circuit id 0, framed by hand.
    let mut cell = vec![0, 0, 0, 0, 3];
    cell.resize(514, 0);
    peer.io.write_all(&cell).await.unwrap();
    let reason = link.closed().await;
    assert!(matches!(reason, CloseReason::Cell(_)), "{reason}");
}

#[tokio::test]
async fn shutdown_and_dropped_handles_close_locally() {
    let (link, task, mut peer) = start(ChannelConfig::default(), Vec::new());
    let (_a, mut a_io) = link.open_circuit().await.unwrap();
    link.shutdown().await.unwrap();
    assert!(recv_msg(&mut a_io).await.is_none());
    assert!(matches!(task.await.unwrap(), CloseReason::Local));
    let mut buf = [0_u8; 16];
    assert_eq!(
        peer.io.read(&mut buf).await.unwrap(),
        0,
        "EOF after shutdown"
    );

    // Without handles the channel lives as long as its circuits.
    let (link, task, mut peer) = start(ChannelConfig::default(), Vec::new());
    let (a, a_io) = link.open_circuit().await.unwrap();
    drop(link);
    peer.send(a.get(), relay(1)).await;
    a_io.tx.send(relay(2)).await.unwrap();
    let (_, msg) = peer.recv().await.into_circid_and_msg();
    assert_eq!(marker(msg), 2);
    drop(a_io);
    assert_eq!(peer.recv_destroy(a).await, DestroyReason::NONE);
    let reason = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert!(matches!(reason, CloseReason::Local), "{reason}");
}

/// The next cell from the reactor within `limit` (virtual time in paused
/// tests), with when it came.
async fn recv_within(
    peer: &mut Peer,
    limit: Duration,
) -> Option<(tokio::time::Instant, AnyChanCell)> {
    tokio::time::timeout(limit, async {
        loop {
            if let Some(c) = peer.codec.poll_cell().unwrap() {
                return (tokio::time::Instant::now(), c);
            }
            let mut buf = [0_u8; 4096];
            let n = peer.io.read(&mut buf).await.unwrap();
            assert!(n > 0, "reactor closed the connection");
            peer.codec.handle_bytes(&buf[..n]).unwrap();
        }
    })
    .await
    .ok()
}

/// padding-spec §2.2: once a full circuit uses the channel, an idle
/// channel sends a CELL_PADDING every 1.5-9.5 s, never silent past the
/// routers' 10 s inactive-flow timeout.
#[tokio::test(start_paused = true)]
async fn an_idle_channel_with_a_full_circuit_is_padded() {
    use tor_cell::chancell::msg::{Create2, HandshakeType};
    let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
    let (_id, io) = link.open_circuit().await.unwrap();
    io.tx
        .send(Create2::new(HandshakeType::NTOR, vec![1; 84]).into())
        .await
        .unwrap();
    let (mut last, first) = recv_within(&mut peer, WAIT).await.unwrap();
    assert_eq!(first.msg().cmd(), ChanCmd::CREATE2);
    for _ in 0..20 {
        let (at, cell) = recv_within(&mut peer, Duration::from_secs(11))
            .await
            .expect("an idle padded channel was silent for 11 s");
        assert_eq!(cell.msg().cmd(), ChanCmd::PADDING);
        let gap = at - last;
        assert!(
            gap >= Duration::from_millis(1500) && gap <= Duration::from_millis(9500),
            "{gap:?}"
        );
        last = at;
    }
    assert_eq!(link.stats().padding_out, 20);
    drop(io);
}

/// A channel that only carried a one-hop (CREATE_FAST) circuit is not
/// padded, as C-tor's CHANNEL_USED_NOT_USED_FOR_FULL_CIRCS.
#[tokio::test(start_paused = true)]
async fn a_one_hop_channel_is_not_padded() {
    let (link, _task, mut peer) = start(ChannelConfig::default(), Vec::new());
    let (_id, io) = link.open_circuit().await.unwrap();
    io.tx
        .send(CreateFast::new(vec![7; 20]).into())
        .await
        .unwrap();
    assert_eq!(
        recv_within(&mut peer, WAIT).await.unwrap().1.msg().cmd(),
        ChanCmd::CREATE_FAST
    );
    assert!(
        recv_within(&mut peer, Duration::from_secs(60))
            .await
            .is_none()
    );
    assert_eq!(link.stats().padding_out, 0);
    drop(io);
}

/// A client channel without circuits closes after 180-270 s
/// (`channelpadding_get_channel_idle_timeout`), even while its handle is
/// kept; one with a circuit stays open.
#[tokio::test(start_paused = true)]
async fn a_channel_without_circuits_closes_when_idle() {
    let (link, _task, _peer) = start(ChannelConfig::default(), Vec::new());
    let t0 = tokio::time::Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(600), link.closed())
        .await
        .expect("an idle channel stayed open 10 minutes");
    let idle = t0.elapsed();
    assert!(matches!(reason, CloseReason::Local), "{reason}");
    assert!(
        idle >= Duration::from_secs(180) && idle <= Duration::from_secs(271),
        "{idle:?}"
    );

    let (link, _task, _peer) = start(ChannelConfig::default(), Vec::new());
    let (_id, io) = link.open_circuit().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(600), link.closed())
            .await
            .is_err()
    );
    // The circuit goes: the idle timer starts from then.
    drop(io);
    let t1 = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(600), link.closed())
        .await
        .expect("the channel stayed open after its last circuit");
    assert!(t1.elapsed() >= Duration::from_secs(180));
}
