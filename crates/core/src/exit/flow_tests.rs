//! Flow control and bounds at the exit, against the client's `StreamMap`:
//! SENDMEs without congestion control, XON/XOFF both ways with it
//! (proposal 324 §4), pacing to the client's rate, and a client that never
//! reads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use tor_cell::relaycell::flow_ctrl::{FlowCtrlVersion, Xoff, Xon, XonKBpsEwma};
use tor_cell::relaycell::msg::{AnyRelayMsg, Sendme};

use crate::cc::FlowParams;
use crate::ids::StreamId;
use crate::stream::StreamFlowMode;

use super::harness::*;
use super::*;

#[test]
fn windowed_streams_trade_sendmes() {
    let mut p = Pair::new(StreamFlowMode::Windowed, ExitConfig::default());
    let id = p.open();
    // A SENDME for nothing sent: the window would pass 500 (C-tor closes
    // the circuit).
    let e = p
        .give_exit(id, AnyRelayMsg::Sendme(Sendme::new_empty()))
        .unwrap_err();
    assert!(e.closes_circuit(), "{e}");
    // On a fresh stream: 600 cells down, honest SENDMEs from the client.
    let id = p.open();
    let body: Vec<u8> = (0..600 * 498).map(|i| (i % 251) as u8).collect();
    let mut off = 0;
    let mut got = Vec::new();
    while got.len() < body.len() {
        off += p.exit_write(id, &body[off..]);
        p.pump();
        got.extend(p.client_read_all(id));
    }
    assert_eq!(got, body);
    let sendmes = p
        .client_sent
        .iter()
        .filter(|(i, m)| *i == id && matches!(m, AnyRelayMsg::Sendme(_)))
        .count();
    assert!(sendmes >= 11, "{sendmes}");
    // And the exit sends SENDMEs as its driver reads.
    let up = vec![5u8; 200 * 498];
    let mut off = 0;
    let mut read = Vec::new();
    while read.len() < up.len() {
        off += p.client.write(id, &up[off..]).unwrap();
        p.pump();
        read.extend(p.exit_read_all(id));
    }
    assert_eq!(read, up);
    assert!(
        p.exit_sent
            .iter()
            .any(|(i, m)| *i == id && matches!(m, AnyRelayMsg::Sendme(_)))
    );
}

#[test]
fn a_slow_destination_gets_xoff_then_xon() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let id = p.open();
    let limit = FlowParams::default().xoff_exit_bytes as usize;
    // The client writes 4x the exit's XOFF limit; the driver reads nothing.
    let total = 4 * limit;
    let mut written = 0;
    for _ in 0..200 {
        written += p.client.write(id, &vec![1u8; total - written]).unwrap();
        p.advance(Duration::from_millis(2));
        if written == total {
            break;
        }
    }
    let xoff = p
        .exit_sent
        .iter()
        .filter(|(_, m)| matches!(m, AnyRelayMsg::Xoff(_)))
        .count();
    assert_eq!(xoff, 1, "proposal 324 §4.1.1: XOFF once past cc_xoff_exit");
    let buffered = p.exit.to_dest_buffered(id).unwrap();
    assert!(buffered > limit && buffered <= p.exit.to_dest_limit());
    assert!(written < total, "the client stopped: {written} of {total}");
    // The driver drains: XON, and the client sends the rest.
    let mut got = 0;
    for _ in 0..1000 {
        got += p.exit_read_all(id).len();
        written += p.client.write(id, &vec![1u8; total - written]).unwrap();
        p.advance(Duration::from_millis(2));
        if got == total {
            break;
        }
    }
    assert_eq!(got, total);
    assert!(
        p.exit_sent
            .iter()
            .any(|(_, m)| matches!(m, AnyRelayMsg::Xon(_)))
    );
}

#[test]
fn the_clients_xoff_and_rate_are_honoured() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let id = p.open();
    let params = FlowParams::default();
    // Enough sent that an XOFF is plausible, then XOFF from the client.
    let n = params.xoff_exit_bytes as usize;
    let mut off = 0;
    while off < n {
        off += p.exit_write(id, &vec![3u8; n - off]);
        p.pump();
    }
    p.give_exit(id, AnyRelayMsg::Xoff(Xoff::new(FlowCtrlVersion::V0)))
        .unwrap();
    let sent_before = p.exit_sent.len();
    p.exit_write(id, &[1; 1000]);
    p.pump();
    assert_eq!(p.exit_sent.len(), sent_before, "no DATA while XOFF stands");
    // XON at 10 KB/s: a second's burst of 10 000 bytes, then 10 bytes/ms.
    let rate = XonKBpsEwma::Limited(std::num::NonZeroU32::new(10).unwrap());
    p.give_exit(id, AnyRelayMsg::Xon(Xon::new(FlowCtrlVersion::V0, rate)))
        .unwrap();
    p.pump();
    assert!(p.exit_sent.len() > sent_before, "sending again");
    assert_eq!(p.exit.write_capacity(id, p.now).unwrap(), 10_000);
    assert_eq!(p.exit_write(id, &[2; 20_000]), 10_000);
    assert_eq!(p.exit_write(id, &[2; 100]), 0);
    let at = p.exit.poll_timeout().unwrap();
    assert_eq!(at, p.now + Duration::from_micros(49_800), "a cell's worth");
    p.advance(at - p.now);
    assert!(
        p.exit_events
            .iter()
            .filter(|e| **e == ExitEvent::Writable { id })
            .count()
            >= 1
    );
    assert_eq!(p.exit.write_capacity(id, p.now).unwrap(), 498);
}

#[test]
fn a_client_that_never_reads_cannot_fill_the_exit() {
    let mut p = Pair::new(cc(), ExitConfig::default());
    let ids: Vec<StreamId> = (0..40).map(|_| p.open()).collect();
    let chunk = vec![9u8; 16 * 1024];
    let mut blocked = 0;
    for _ in 0..200 {
        for id in &ids {
            p.exit_write(*id, &chunk);
        }
        p.advance(Duration::from_millis(10));
    }
    for id in &ids {
        assert_eq!(p.exit.write_capacity(*id, p.now).unwrap(), 0);
        if p.exit.write(*id, b"x", p.now).unwrap() == 0 {
            blocked += 1;
        }
        assert!(p.exit.from_dest_buffered(*id).unwrap() <= 64 * 1024);
    }
    assert_eq!(blocked, 40, "every stream pushes back");
    let (_, from_dest) = p.exit.buffered();
    assert!(from_dest <= 1024 * 1024, "{from_dest}");
    // The client sent XOFF on every stream it did not read.
    let xoffs = p
        .client_sent
        .iter()
        .filter(|(_, m)| matches!(m, AnyRelayMsg::Xoff(_)))
        .count();
    assert!(xoffs >= 1, "{xoffs}");
}

/// The backlog a Conflux scheduler sees at the exit: the destination's
/// bytes in cells, unknown while a destination that has not finished keeps
/// its buffer at least half full.
#[test]
fn send_backlog_for_the_exit_scheduler() {
    let mut p = Pair::new(
        StreamFlowMode::Windowed,
        ExitConfig {
            dest_buffer: 10_000,
            ..ExitConfig::default()
        },
    );
    assert_eq!(p.exit.send_backlog(), Some(0), "no streams");
    let id = p.open();
    let now = p.now;
    assert_eq!(p.exit_write(id, &[1; 1000]), 1000);
    assert_eq!(p.exit.send_backlog(), Some(3), "1000 bytes: 3 cells");
    assert_eq!(p.exit_write(id, &[1; 4000]), 4000);
    assert_eq!(p.exit.send_backlog(), None, "half full and still writing");
    p.exit.shutdown_write(id, now).unwrap();
    assert_eq!(
        p.exit.send_backlog(),
        Some(11),
        "the destination is done: all there is"
    );
}
