//! Property tests of the exit's streams: random interleavings of a
//! (possibly hostile) client's messages on a few stream ids, driver calls,
//! circuit polls, timers and the circuit's end never panic, keep every
//! buffer and queue within its bound, and move exactly the right bytes
//! (the checks of `invariants::ExitRun`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use tor_bytes::Reader;
use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{
    AnyRelayMsg, BeginDir, Connected, Data, End, EndReason, Resolve, Sendme,
};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use crate::stream::StreamFlowMode;
use crate::stream::invariants::small_xon_xoff;

use super::invariants::{ExitOp, ExitRun};
use super::*;

/// BEGIN bodies, good and bad, as on the wire (tor-spec §6.2).
const BEGINS: [&[u8]; 9] = [
    b"example.com:80\0",
    b"192.0.2.9:443\0",
    b"[2001:db8::9]:443\0\0\0\0\x01",
    b"example.com:0\0",
    b"bad name:80\0",
    b"example.com:80\0\0\0\0\x02",
    b"example.com:80\0\0\0\0\x07",
    b"1.2.3.4.in-addr.arpa:80\0",
    b"x.onion:80\0",
];

/// RESOLVE queries.
const RESOLVES: [&str; 5] = [
    "example.com",
    "9.2.0.192.in-addr.arpa",
    "1.0.0.10.in-addr.arpa",
    "192.0.2.1",
    "bad name",
];

fn decode(cmd: u8, body: &[u8]) -> Option<AnyRelayMsg> {
    AnyRelayMsg::decode_from_reader(RelayCmd::from(cmd), &mut Reader::from_slice(body)).ok()
}

fn client_msg() -> impl Strategy<Value = AnyRelayMsg> {
    prop_oneof![
        2 => (0usize..3).prop_map(|i| decode(1, BEGINS[i]).unwrap()),
        1 => (3usize..BEGINS.len()).prop_map(|i| decode(1, BEGINS[i]).unwrap()),
        1 => Just(AnyRelayMsg::BeginDir(BeginDir::default())),
        2 => (0usize..RESOLVES.len()).prop_map(|i| AnyRelayMsg::Resolve(Resolve::new(RESOLVES[i]))),
        20 => (1usize..=498, any::<u8>()).prop_map(|(len, b)| {
            let bytes: Vec<u8> = (0..len).map(|i| b.wrapping_add(i as u8)).collect();
            AnyRelayMsg::Data(Data::new(&bytes).unwrap())
        }),
        1 => (0u8..16).prop_map(|r| AnyRelayMsg::End(End::new_with_reason(EndReason::from(r)))),
        1 => Just(AnyRelayMsg::Sendme(Sendme::new_empty())),
        2 => (0u32..3000).prop_map(|r| AnyRelayMsg::Xon(Xon::new(
            FlowCtrlVersion::V0,
            NonZeroU32::new(r).map_or(XonKBpsEwma::Unlimited, XonKBpsEwma::Limited),
        ))),
        2 => Just(AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0))),
        1 => Just(AnyRelayMsg::Connected(Connected::new_empty())),
        1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_filter_map("decodes", |(c, b)| decode(c, &b)),
    ]
}

/// Steps; the circuit's end is placed separately (`run`).
fn op() -> impl Strategy<Value = ExitOp> {
    prop_oneof![
        25 => (1u16..=6, client_msg()).prop_map(|(id, msg)| ExitOp::Client { id, msg }),
        4 => prop_oneof![
            4 => (0usize..3).prop_map(|i| decode(1, BEGINS[i]).unwrap()),
            1 => (0usize..RESOLVES.len())
                .prop_map(|i| AnyRelayMsg::Resolve(Resolve::new(RESOLVES[i]))),
            1 => Just(AnyRelayMsg::BeginDir(BeginDir::default())),
        ]
        .prop_map(|msg| ExitOp::Open { msg }),
        1 => (any::<u16>(), client_msg()).prop_map(|(id, msg)| ExitOp::Client { id, msg }),
        6 => (0usize..8, prop::option::weighted(0.2, 0u8..15), any::<bool>())
            .prop_map(|(s, refuse, v6)| ExitOp::Connect { s, refuse, v6 }),
        2 => (0usize..8, 0usize..30).prop_map(|(s, n)| ExitOp::Resolved { s, n }),
        6 => (0usize..8, 0usize..3000).prop_map(|(s, len)| ExitOp::Read { s, len }),
        8 => (0usize..8, 0usize..3000).prop_map(|(s, len)| ExitOp::Write { s, len }),
        1 => (0usize..8).prop_map(|s| ExitOp::Shutdown { s }),
        1 => (0usize..8).prop_map(|s| ExitOp::Close { s }),
        10 => (any::<bool>(), 1usize..20).prop_map(|(data, n)| ExitOp::Transmit { data, n }),
        6 => Just(ExitOp::Events),
        3 => (0u64..300).prop_map(|ms| ExitOp::Advance { ms }),
        1 => (0u64..5000).prop_map(|ms| ExitOp::Advance { ms }),
    ]
}

/// Steps of a mostly honest client (DATA on its streams, flow control
/// messages now and then) and a driver that reads and writes, so that runs
/// reach XOFF, XON, pacing and the stream SENDMEs.
fn honest_op() -> impl Strategy<Value = ExitOp> {
    prop_oneof![
        40 => (1u16..=4, 1usize..=498).prop_map(|(id, len)| ExitOp::Client {
            id,
            msg: AnyRelayMsg::Data(Data::new(&vec![id as u8; len]).unwrap()),
        }),
        3 => (0usize..3).prop_map(|i| ExitOp::Open { msg: decode(1, BEGINS[i]).unwrap() }),
        2 => (1u16..=4, 1u32..500).prop_map(|(id, r)| ExitOp::Client {
            id,
            msg: AnyRelayMsg::Xon(Xon::new(
                FlowCtrlVersion::V0,
                NonZeroU32::new(r).map_or(XonKBpsEwma::Unlimited, XonKBpsEwma::Limited),
            )),
        }),
        1 => (1u16..=4).prop_map(|id| ExitOp::Client {
            id,
            msg: AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0)),
        }),
        1 => (1u16..=4).prop_map(|id| ExitOp::Client {
            id,
            msg: AnyRelayMsg::Sendme(Sendme::new_empty()),
        }),
        1 => (1u16..=4).prop_map(|id| ExitOp::Client {
            id,
            msg: AnyRelayMsg::End(End::new_with_reason(EndReason::DONE)),
        }),
        6 => (0usize..8).prop_map(|s| ExitOp::Connect { s, refuse: None, v6: false }),
        8 => (0usize..8, 0usize..1500).prop_map(|(s, len)| ExitOp::Read { s, len }),
        8 => (0usize..8, 0usize..3000).prop_map(|(s, len)| ExitOp::Write { s, len }),
        10 => (any::<bool>(), 1usize..20).prop_map(|(data, n)| ExitOp::Transmit { data, n }),
        6 => Just(ExitOp::Events),
        4 => (0u64..20).prop_map(|ms| ExitOp::Advance { ms }),
    ]
}

/// A map with small limits, so that runs reach them.
fn small_map(cc: bool, flags: u8) -> ExitStreamMap {
    let cfg = ExitConfig {
        max_streams: 4,
        dest_buffer: 2000,
        dest_buffer_total: 5000,
        to_dest_total: 8000,
        connect_timeout: Duration::from_secs(2),
        flush_timeout: Duration::from_secs(1),
        max_half_closed: 3,
        half_closed_linger: Duration::from_millis(500),
        max_data_len: if flags & 1 != 0 { 100 } else { 498 },
        serves_directory: flags & 2 != 0,
        ipv6_exit: flags & 4 != 0,
        client_first_hop: flags & 8 != 0,
        exits: flags & 16 == 0,
        migrate: false,
    };
    let mode = if cc {
        small_xon_xoff()
    } else {
        StreamFlowMode::Windowed
    };
    ExitStreamMap::with_seed(cfg, mode, u64::from(flags))
}

/// One run; the first broken rule fails it.
fn run(ops: Vec<ExitOp>, cc: bool, flags: u8, close_at: Option<usize>) -> Result<ExitRun, String> {
    let mut run = ExitRun::new(small_map(cc, flags));
    for (i, op) in ops.into_iter().enumerate() {
        if close_at == Some(i) {
            run.step(ExitOp::CircuitClosed)?;
        }
        let desc = format!("{op:?}");
        run.step(op)
            .map_err(|e| format!("step {i} ({desc}): {e}"))?;
    }
    // Drain: whatever is left goes out within the model's rules.
    run.step(ExitOp::Events)?;
    run.step(ExitOp::Transmit {
        data: true,
        n: 100_000,
    })?;
    Ok(run)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any sequence: no panic, every bound and model check holds.
    #[test]
    fn random_sequences_keep_every_bound(
        ops in proptest::collection::vec(op(), 1..400),
        cc in any::<bool>(),
        flags in 0u8..32,
        close_at in prop::option::weighted(0.1, 0usize..400),
    ) {
        if let Err(e) = run(ops, cc, flags, close_at) {
            prop_assert!(false, "{e}");
        }
    }

    /// The same with a mostly honest client and a busy driver.
    #[test]
    fn honest_sequences_keep_every_bound(
        ops in proptest::collection::vec(honest_op(), 1..600),
        cc in any::<bool>(),
        flags in 0u8..32,
        close_at in prop::option::weighted(0.1, 0usize..600),
    ) {
        if let Err(e) = run(ops, cc, flags & !8, close_at) {
            prop_assert!(false, "{e}");
        }
    }
}

/// A run that reaches the circuit's totals: several streams, a driver that
/// never reads, a client that never stops.
#[test]
fn scripted_run_reaches_the_totals() {
    let mut run = ExitRun::new(small_map(true, 0));
    for id in 1..=4 {
        run.step(ExitOp::Client {
            id,
            msg: decode(1, BEGINS[0]).unwrap(),
        })
        .unwrap();
    }
    run.step(ExitOp::Events).unwrap();
    for s in 0..4 {
        run.step(ExitOp::Connect {
            s,
            refuse: None,
            v6: false,
        })
        .unwrap();
    }
    let mut limited = 0;
    for round in 0..40u8 {
        for id in 1..=4 {
            let data = AnyRelayMsg::Data(Data::new(&[round; 498]).unwrap());
            run.step(ExitOp::Client { id, msg: data }).unwrap();
        }
        run.step(ExitOp::Advance { ms: 1 }).unwrap();
        run.step(ExitOp::Transmit { data: true, n: 50 }).unwrap();
        let (to, _) = run.map.buffered();
        assert!(to <= 8000);
        if to > 6000 {
            limited += 1;
        }
    }
    assert!(limited > 0, "the total was approached");
    // The driver writes on all four: the circuit's total stops it.
    for _ in 0..5 {
        for s in 0..4 {
            run.step(ExitOp::Write { s, len: 3000 }).unwrap();
        }
    }
    let (_, from) = run.map.buffered();
    assert!(from <= 5000, "{from}");
}
