//! Tests of the channel multiplexer ([`super::mux`]): classification of
//! inbound cells, circuit ids, what circuits may send, round robin, closing
//! and the DESTROY probe. The property test is in `mux_proptests`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::convert::Infallible;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{
    AnyChanMsg, Certs, Create2, CreateFast, CreatedFast, Destroy, DestroyReason, HandshakeType,
    Netinfo, Padding, PaddingNegotiate, Relay, Unrecognized, Versions, Vpadding,
};
use tor_cell::chancell::{AnyChanCell, ChanCell, ChanCmd, ChanMsg, CircId as WireCircId};

use super::error::{ChannelError, ErrorKind};
use super::mux::*;
use crate::ids::CircId;

/// A random source that yields `values` in turn (then zeros), for tests of
/// circuit-id allocation.
struct Script {
    values: Vec<u32>,
    next: usize,
}

impl Script {
    fn new(values: &[u32]) -> Self {
        Script {
            values: values.to_vec(),
            next: 0,
        }
    }
}

impl rand::TryRng for Script {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let v = self.values.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        Ok(v)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(u64::from(self.try_next_u32()?))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        dst.fill(0x55);
        Ok(())
    }
}

impl rand::TryCryptoRng for Script {}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

pub(super) fn cell(id: u32, msg: impl Into<AnyChanMsg>) -> AnyChanCell {
    ChanCell::new(WireCircId::new(id), msg.into())
}

pub(super) fn relay(marker: u8) -> AnyChanMsg {
    Relay::new([marker]).into()
}

pub(super) fn destroy(reason: DestroyReason) -> AnyChanMsg {
    Destroy::new(reason).into()
}

/// Every cell the mux wants to send, as (circuit id, message).
pub(super) fn drain<T>(mux: &mut ChannelMux<T>) -> Vec<(u32, AnyChanMsg)> {
    std::iter::from_fn(|| mux.poll_transmit())
        .map(|c| {
            let (id, msg) = c.into_circid_and_msg();
            (WireCircId::get_or_zero(id), msg)
        })
        .collect()
}

/// The one cell the mux wants to send: a DESTROY for `id`; its reason.
fn one_destroy<T>(mux: &mut ChannelMux<T>, id: CircId) -> DestroyReason {
    let out = drain(mux);
    match out.as_slice() {
        [(got, AnyChanMsg::Destroy(d))] if *got == id.get() => d.reason(),
        other => panic!("expected one DESTROY for {id}, got {other:?}"),
    }
}

/// The one cell the mux wants to send: a probe; its id.
fn one_probe<T>(mux: &mut ChannelMux<T>) -> u32 {
    let out = drain(mux);
    match out.as_slice() {
        [(id, AnyChanMsg::CreateFast(c))] => {
            assert_eq!(c.handshake().len(), 20);
            *id
        }
        other => panic!("expected one probe, got {other:?}"),
    }
}

fn no_probe_config() -> MuxConfig {
    MuxConfig {
        destroy_probe: false,
        ..MuxConfig::client()
    }
}

fn ignored<T>(r: Result<Inbound<'_, T>, ChannelError>) -> IgnoreReason {
    match r {
        Ok(Inbound::Ignored { why, .. }) => why,
        Ok(Inbound::Deliver { id, .. }) => panic!("delivered to {id}"),
        Ok(Inbound::Destroyed { id, .. }) => panic!("destroyed {id}"),
        Ok(Inbound::PeerCreate { id, .. }) => panic!("peer create on {id}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn inbound_classes() {
    let mut mux = ChannelMux::new(MuxConfig::client());
    let mut r = rng();
    let a = mux.open_circuit(&mut r, 'a').unwrap();
    match mux.handle_cell(cell(a.get(), CreatedFast::new(vec![0; 40])), &mut r) {
        Ok(Inbound::Deliver {
            id,
            entry,
            msg: AnyChanMsg::CreatedFast(_),
        }) => assert_eq!((id, *entry), (a, 'a')),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        mux.handle_cell(cell(a.get(), relay(1)), &mut r),
        Ok(Inbound::Deliver { id, msg: AnyChanMsg::Relay(_), .. }) if id == a
    ));
    let padding = [AnyChanMsg::from(Padding::new()), Vpadding::new(3).into()];
    for msg in padding {
        assert_eq!(
            ignored(mux.handle_cell(cell(0, msg), &mut r)),
            IgnoreReason::Padding
        );
    }
    let dropped = [
        (
            cell(0, Versions::new([4, 5]).unwrap()),
            IgnoreReason::LateVersions,
        ),
        (
            cell(0, PaddingNegotiate::start_default()),
            IgnoreReason::PaddingNegotiate,
        ),
        (
            cell(0, Unrecognized::new(ChanCmd::from(200), vec![1])),
            IgnoreReason::UnknownCommand,
        ),
        (
            cell(5, CreateFast::new(vec![0; 20])),
            IgnoreReason::PeerCreate,
        ),
        (
            cell(6, Create2::new(HandshakeType::NTOR, vec![0; 84])),
            IgnoreReason::PeerCreate,
        ),
        (cell(a.get() ^ 1, relay(2)), IgnoreReason::UnknownCircuit),
        (
            cell(a.get() ^ 1, destroy(DestroyReason::NONE)),
            IgnoreReason::UnknownCircuit,
        ),
        // tor-cell checks no circuit id: a circuit command on circuit 0.
        (cell(0, relay(3)), IgnoreReason::ChannelLevel),
    ];
    let n = dropped.len();
    for (c, why) in dropped {
        assert_eq!(ignored(mux.handle_cell(c, &mut r)), why);
    }
    let stats = mux.stats();
    assert_eq!((stats.padding_in, stats.cells_dropped), (2, n as u64));
    assert!(drain(&mut mux).is_empty(), "nothing goes back");

    for msg in [
        AnyChanMsg::from(Netinfo::from_client(None)),
        Certs::new_empty().into(),
    ] {
        let cmd = msg.cmd();
        let err = mux.handle_cell(cell(0, msg), &mut r).unwrap_err();
        assert!(
            matches!(err, ChannelError::UnexpectedCell { cmd: c, .. } if c == cmd),
            "{err}"
        );
        assert!(err.is_peer_fault());
    }
    assert!(mux.contains(a), "the decision to close is the driver's");
}

#[test]
fn peer_create_handed_up_when_not_ignored() {
    let config = MuxConfig {
        initiator: false,
        ignore_create: false,
        ..MuxConfig::client()
    };
    let mut mux = ChannelMux::<()>::new(config);
    let mut r = rng();
    match mux.handle_cell(cell(0x8000_0005, CreateFast::new(vec![0; 20])), &mut r) {
        Ok(Inbound::PeerCreate {
            id,
            msg: AnyChanMsg::CreateFast(_),
        }) => assert_eq!(id.get(), 0x8000_0005),
        other => panic!("{other:?}"),
    }
    assert_eq!(mux.stats(), MuxStats::default());
    assert!(mux.is_empty(), "not registered");
}

#[test]
fn circuit_ids() {
    // The initiator's ids have the high bit, the responder's do not.
    let mut mux = ChannelMux::new(MuxConfig::client());
    let mut r = rng();
    for i in 0..1000 {
        assert!(mux.open_circuit(&mut r, i).unwrap().high_bit());
    }
    assert_eq!(mux.len(), 1000, "all distinct");
    let mut mux = ChannelMux::new(MuxConfig {
        initiator: false,
        ..MuxConfig::client()
    });
    for i in 0..1000 {
        assert!(!mux.open_circuit(&mut r, i).unwrap().high_bit());
    }

    // Ids in use are skipped; zero maps to the bare initiator bit, never to
    // circuit 0.
    let mut mux = ChannelMux::new(MuxConfig::client());
    let a = mux.open_circuit(&mut Script::new(&[3]), ()).unwrap();
    assert_eq!(a.get(), 0x8000_0003);
    let b = mux.open_circuit(&mut Script::new(&[3, 0x8000_0003, 0]), ());
    assert_eq!(b.unwrap().get(), INITIATOR_BIT);
    let err = mux
        .open_circuit(&mut Script::new(&[3; 64]), ())
        .unwrap_err();
    assert_eq!(
        err,
        ChannelError::CircIdsExhausted {
            attempts: CIRC_ID_ATTEMPTS
        }
    );
    assert_eq!(err.kind(), ErrorKind::ResourceLimit);
    // A responder's zero is no id: the next value is tried.
    assert_eq!(
        allocate_circ_id(
            {
                let mut v = [INITIATOR_BIT, 9].into_iter();
                move || v.next().unwrap_or(0)
            },
            false,
            |_| false
        )
        .map(CircId::get),
        Some(9)
    );
    assert!(allocate_circ_id(|| 0, false, |_| false).is_none());
}

#[test]
fn outbound_rules() {
    for (msg, ok) in [
        (AnyChanMsg::from(CreateFast::new(vec![0; 20])), true),
        (destroy(DestroyReason::NONE), true),
        (relay(0), true),
        (Padding::new().into(), false),
        (Netinfo::from_client(None).into(), false),
        (CreatedFast::new(vec![0; 40]).into(), false),
    ] {
        assert_eq!(initiator_may_send(&msg), ok, "{}", msg.cmd());
    }

    let mut mux = ChannelMux::new(MuxConfig::client());
    let mut r = rng();
    let a = mux.open_circuit(&mut r, 1).unwrap();
    let b = mux.open_circuit(&mut r, 2).unwrap();
    let c = mux.open_circuit(&mut r, 3).unwrap();
    let out = mux.check_outbound(a, relay(5)).unwrap().unwrap();
    assert_eq!(WireCircId::get_or_zero(out.circid()), a.get());
    assert!(drain(&mut mux).is_empty());

    // A cell it may not send closes the circuit.
    let err = mux.check_outbound(b, Padding::new().into()).unwrap_err();
    assert_eq!(
        err,
        ChannelError::CellNotAllowed {
            circ_id: b.get(),
            cmd: ChanCmd::PADDING
        }
    );
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(one_destroy(&mut mux, b), DestroyReason::NONE);
    assert!(!mux.contains(b));
    // Its later cells are dropped.
    assert!(mux.check_outbound(b, relay(6)).unwrap().is_none());

    // The owner's DESTROY goes out and closes it, with no second DESTROY.
    let out = mux
        .check_outbound(c, destroy(DestroyReason::FINISHED))
        .unwrap()
        .unwrap();
    assert!(matches!(out.msg(), AnyChanMsg::Destroy(_)));
    assert!(!mux.contains(c));
    assert!(!mux.close_circuit(c, DestroyReason::NONE));
    assert!(drain(&mut mux).is_empty());
    assert_eq!(mux.len(), 1);
}

#[test]
fn closing_circuits() {
    let mut mux = ChannelMux::new(no_probe_config());
    let mut r = rng();
    let ids: Vec<_> = (0..5)
        .map(|i| mux.open_circuit(&mut r, i).unwrap())
        .collect();
    let [a, b, c, d, e] = ids[..] else {
        unreachable!()
    };

    assert!(mux.close_circuit(a, DestroyReason::FINISHED));
    assert_eq!(one_destroy(&mut mux, a), DestroyReason::FINISHED);
    assert!(!mux.close_circuit(a, DestroyReason::NONE));
    assert!(drain(&mut mux).is_empty());

    // Full: the configured reason and a count; gone: NONE.
    assert!(mux.deliver_failed(b, Undelivered::Full));
    assert_eq!(one_destroy(&mut mux, b), DestroyReason::RESOURCELIMIT);
    assert_eq!(mux.stats().overflow_closes, 1);
    assert!(mux.deliver_failed(c, Undelivered::Gone));
    assert_eq!(one_destroy(&mut mux, c), DestroyReason::NONE);
    assert!(!mux.deliver_failed(c, Undelivered::Full));
    assert_eq!(mux.stats().overflow_closes, 1);
    assert!(mux.owner_gone(d));
    assert_eq!(one_destroy(&mut mux, d), DestroyReason::NONE);

    // The peer destroys e: the entry comes back with the DESTROY, nothing
    // goes back, and a failed delivery after it changes nothing.
    match mux.handle_cell(cell(e.get(), destroy(DestroyReason::FINISHED)), &mut r) {
        Ok(Inbound::Destroyed {
            id,
            entry,
            msg: AnyChanMsg::Destroy(m),
        }) => {
            assert_eq!((id, entry, m.reason()), (e, 4, DestroyReason::FINISHED));
        }
        other => panic!("{other:?}"),
    }
    assert!(!mux.deliver_failed(e, Undelivered::Full));
    assert!(drain(&mut mux).is_empty());
    assert!(mux.is_empty());
    // Later cells for it reach nobody.
    assert_eq!(
        ignored(mux.handle_cell(cell(e.get(), relay(1)), &mut r)),
        IgnoreReason::UnknownCircuit
    );

    // A circuit whose owner never got it goes without DESTROY; one that sent
    // a cell gets one.
    let mut mux = ChannelMux::new(MuxConfig {
        overflow_reason: DestroyReason::NONE,
        ..no_probe_config()
    });
    let f = mux.open_circuit(&mut r, 0).unwrap();
    let g = mux.open_circuit(&mut r, 0).unwrap();
    assert!(mux.cancel_circuit(f));
    assert!(drain(&mut mux).is_empty());
    mux.check_outbound(g, relay(0)).unwrap();
    assert!(mux.cancel_circuit(g));
    assert_eq!(one_destroy(&mut mux, g), DestroyReason::NONE);
    assert!(!mux.cancel_circuit(g));

    // The configured overflow reason.
    let h = mux.open_circuit(&mut r, 0).unwrap();
    mux.deliver_failed(h, Undelivered::Full);
    assert_eq!(one_destroy(&mut mux, h), DestroyReason::NONE);

    // send_failed closes with NONE; clear drops everything.
    let i = mux.open_circuit(&mut r, 0).unwrap();
    let j = mux.open_circuit(&mut r, 0).unwrap();
    assert!(mux.send_failed(i));
    assert_eq!(one_destroy(&mut mux, i), DestroyReason::NONE);
    mux.close_circuit(j, DestroyReason::NONE);
    mux.clear();
    assert!(mux.is_empty() && mux.poll_transmit().is_none());
}

/// The order `for_each_in_turn` visits circuits in.
fn turn<T>(mux: &mut ChannelMux<T>) -> Vec<CircId> {
    let mut order = Vec::new();
    mux.for_each_in_turn(|id, _| order.push(id));
    order
}

#[test]
fn round_robin_starts_after_the_last_served() {
    let mut mux = ChannelMux::new(MuxConfig::client());
    let ids: Vec<_> = [5, 1, 9, 3]
        .iter()
        .map(|&v| mux.open_circuit(&mut Script::new(&[v]), v).unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(turn(&mut mux), sorted);
    // Serve the second: the next turn starts at the third and wraps.
    mux.check_outbound(sorted[1], relay(0)).unwrap();
    assert_eq!(turn(&mut mux), [sorted[2], sorted[3], sorted[0], sorted[1]]);
    // The entries are the ones attached.
    mux.for_each_in_turn(|id, v| assert_eq!(id.get(), INITIATOR_BIT | *v));
    // The last served circuit closes: the turn still starts after its id.
    mux.check_outbound(sorted[2], destroy(DestroyReason::NONE))
        .unwrap();
    assert_eq!(turn(&mut mux), [sorted[3], sorted[0], sorted[1]]);
    mux.check_outbound(sorted[3], relay(0)).unwrap();
    assert_eq!(turn(&mut mux), [sorted[0], sorted[1], sorted[3]]);
}

#[test]
fn destroy_probe() {
    let mut mux = ChannelMux::new(MuxConfig::client());
    let mut r = rng();
    let a = mux.open_circuit(&mut r, 'a').unwrap();
    let b = mux.open_circuit(&mut r, 'b').unwrap();
    let c = mux.open_circuit(&mut r, 'c').unwrap();
    let peer_destroys = |mux: &mut ChannelMux<char>, id: CircId, r: &mut StdRng| {
        assert!(matches!(
            mux.handle_cell(cell(id.get(), destroy(DestroyReason::CHANNEL_CLOSED)), r),
            Ok(Inbound::Destroyed { id: got, .. }) if got == id
        ));
    };

    // a destroyed while b and c remain: a probe on a fresh id.
    peer_destroys(&mut mux, a, &mut r);
    let p1 = one_probe(&mut mux);
    assert!(p1 & INITIATOR_BIT != 0 && ![a, b, c].iter().any(|x| x.get() == p1));
    assert_eq!(mux.len(), 2, "the probe is no circuit of the caller's");
    // b destroyed while the probe is out: no second probe yet.
    peer_destroys(&mut mux, b, &mut r);
    assert!(drain(&mut mux).is_empty());
    // The answer is destroyed unread, then another probe for c.
    assert_eq!(
        ignored(mux.handle_cell(cell(p1, CreatedFast::new(vec![7; 40])), &mut r)),
        IgnoreReason::ProbeAnswer
    );
    let out = drain(&mut mux);
    assert!(
        matches!(&out[..], [(d, AnyChanMsg::Destroy(m)), (p2, AnyChanMsg::CreateFast(_))]
            if *d == p1 && m.reason() == DestroyReason::NONE && *p2 != p1),
        "{out:?}"
    );
    let p2 = out[1].0;
    // A probe refused with DESTROY is simply over.
    assert_eq!(
        ignored(mux.handle_cell(cell(p2, destroy(DestroyReason::RESOURCELIMIT)), &mut r)),
        IgnoreReason::ProbeAnswer
    );
    assert!(drain(&mut mux).is_empty());
    // Later cells on the old probe ids are for no circuit.
    assert_eq!(
        ignored(mux.handle_cell(cell(p1, relay(0)), &mut r)),
        IgnoreReason::UnknownCircuit
    );
    // c destroyed last: nobody left, no probe.
    peer_destroys(&mut mux, c, &mut r);
    assert!(drain(&mut mux).is_empty());
    assert_eq!(mux.stats().destroy_probes, 2);
    assert_eq!(mux.stats().cells_dropped, 1, "probe answers are not drops");
}

#[test]
fn destroy_probe_edges() {
    // Off: no probe.
    let mut mux = ChannelMux::new(no_probe_config());
    let mut r = rng();
    let a = mux.open_circuit(&mut r, ()).unwrap();
    mux.open_circuit(&mut r, ()).unwrap();
    mux.handle_cell(cell(a.get(), destroy(DestroyReason::NONE)), &mut r)
        .unwrap();
    assert!(drain(&mut mux).is_empty());
    assert_eq!(mux.stats().destroy_probes, 0);

    // A DESTROY came while the probe was out, but by its answer no circuit
    // is left: no second probe.
    let mut mux = ChannelMux::new(MuxConfig::client());
    let ids: Vec<_> = (0..3)
        .map(|_| mux.open_circuit(&mut r, ()).unwrap())
        .collect();
    mux.handle_cell(cell(ids[0].get(), destroy(DestroyReason::NONE)), &mut r)
        .unwrap();
    let p = one_probe(&mut mux);
    mux.handle_cell(cell(ids[1].get(), destroy(DestroyReason::NONE)), &mut r)
        .unwrap();
    assert!(mux.close_circuit(ids[2], DestroyReason::NONE));
    assert_eq!(one_destroy(&mut mux, ids[2]), DestroyReason::NONE);
    mux.handle_cell(cell(p, CreatedFast::new(vec![0; 40])), &mut r)
        .unwrap();
    assert_eq!(
        one_destroy(&mut mux, CircId::new(p).unwrap()),
        DestroyReason::NONE
    );

    // The probe's id is not handed out while it is in flight.
    let mut mux = ChannelMux::new(MuxConfig::client());
    let a = mux.open_circuit(&mut Script::new(&[1]), ()).unwrap();
    mux.open_circuit(&mut Script::new(&[2]), ()).unwrap();
    mux.handle_cell(
        cell(a.get(), destroy(DestroyReason::NONE)),
        &mut Script::new(&[7]),
    )
    .unwrap();
    assert_eq!(one_probe(&mut mux), INITIATOR_BIT | 7);
    let c = mux.open_circuit(&mut Script::new(&[7, 8]), ()).unwrap();
    assert_eq!(c.get(), INITIATOR_BIT | 8);
}
