//! Tests of held circuit SENDMEs ([`ClientCircuit::set_sendme_hold`]): the
//! receiver's backpressure a Conflux set applies to the legs ahead of a gap.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Instant;

use proptest::prelude::*;
use tor_cell::relaycell::msg::{AnyRelayMsg, Data};

use super::test_network::{MockNet, build, pump};
use super::*;
use crate::ids::HopNum;

/// A built 3-hop circuit: ntor, ntor, ntor-v3 + CC (`sendme_inc` 31).
fn three_hop() -> (ClientCircuit, MockNet, Instant) {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let mut c = build(&mut net, &[0, 1, 2], CircParams::default(), now);
    while c.poll_event().is_some() {}
    (c, net, now)
}

/// `n` DATA cells from the last hop.
fn receive(c: &mut ClientCircuit, net: &mut MockNet, n: u32, now: Instant) {
    for i in 0..n {
        let msg: AnyRelayMsg = Data::new(&i.to_be_bytes()).unwrap().into();
        let cell = net.originate(2, 1, msg);
        c.handle_cell(now, cell).unwrap();
        pump(c, net, now).unwrap();
        while c.poll_event().is_some() {}
    }
}

/// Held SENDMEs stay until released, then go in order with the tags of
/// the cells that made them due; the exit's check accepts every one.
#[test]
fn held_sendmes_go_in_order_on_release() {
    let (mut c, mut net, now) = three_hop();
    c.set_sendme_hold(HopNum(2), true, now).unwrap();
    receive(&mut c, &mut net, 100, now);
    assert!(net.hops[2].sendmes.is_empty(), "held");
    let f = c.last_hop_figures().unwrap();
    assert_eq!((f.sendmes_held, f.sendmes_sent), (3, 0));
    assert_eq!(f.deliver_window, 900);

    c.set_sendme_hold(HopNum(2), false, now).unwrap();
    pump(&mut c, &mut net, now).unwrap();
    // MockNet records (DATA cells it had sent, tag matched) per SENDME.
    assert_eq!(net.hops[2].sendmes, [(100, true), (100, true), (100, true)]);
    let f = c.last_hop_figures().unwrap();
    assert_eq!((f.sendmes_held, f.sendmes_sent), (0, 3));
    assert_eq!(f.deliver_window, 1000 - 7);
    // Released: the next increment goes at once.
    receive(&mut c, &mut net, 24, now);
    assert_eq!(net.hops[2].sendmes.len(), 4);
    assert!(net.hops[2].sendmes.iter().all(|(_, ok)| *ok));
}

/// Holding never runs our deliver window out: a sender with a window
/// larger than 1000 cells gets a SENDME each time the window reaches two
/// increments, so it never breaks tor-spec §7.3 because of us.
#[test]
fn holding_keeps_two_increments_of_window() {
    let (mut c, mut net, now) = three_hop();
    c.set_sendme_hold(HopNum(2), true, now).unwrap();
    receive(&mut c, &mut net, 3000, now);
    let f = c.last_hop_figures().unwrap();
    assert!(!c.is_closed());
    assert!(f.deliver_window >= 31, "window {}", f.deliver_window);
    assert!(f.deliver_window <= 62 + 31);
    assert!(f.sendmes_sent > 0);
    assert!(net.hops[2].sendmes.iter().all(|(_, ok)| *ok));
}

/// A hop without congestion control is never held (its fixed window of
/// 1000 is the bound already).
#[test]
fn fixed_window_hops_are_not_held() {
    let now = Instant::now();
    let mut net = MockNet::three_hops();
    let mut c = build(&mut net, &[0, 1], CircParams::default(), now);
    while c.poll_event().is_some() {}
    assert!(!c.cc_enabled(HopNum(1)));
    c.set_sendme_hold(HopNum(1), true, now).unwrap();
    for i in 0..250_u32 {
        let msg: AnyRelayMsg = Data::new(&i.to_be_bytes()).unwrap().into();
        let cell = net.originate(1, 1, msg);
        c.handle_cell(now, cell).unwrap();
        pump(&mut c, &mut net, now).unwrap();
        while c.poll_event().is_some() {}
    }
    assert_eq!(net.hops[1].sendmes.len(), 2);
}

proptest! {
    /// Any pattern of holds and releases between DATA cells: the deliver
    /// window never runs out, every SENDME carries the right tag, and once
    /// released everything due has gone.
    #[test]
    fn hold_patterns_keep_the_protocol(steps in proptest::collection::vec((0u32..200, any::<bool>()), 1..20)) {
        let (mut c, mut net, now) = three_hop();
        let mut received = 0u32;
        for (n, hold) in steps {
            c.set_sendme_hold(HopNum(2), hold, now).unwrap();
            pump(&mut c, &mut net, now).unwrap();
            receive(&mut c, &mut net, n, now);
            received += n;
            let f = c.last_hop_figures().unwrap();
            prop_assert!(f.deliver_window > 0);
            prop_assert!(net.hops[2].sendmes.iter().all(|(_, ok)| *ok));
        }
        c.set_sendme_hold(HopNum(2), false, now).unwrap();
        pump(&mut c, &mut net, now).unwrap();
        let f = c.last_hop_figures().unwrap();
        prop_assert_eq!(f.sendmes_held, 0);
        prop_assert_eq!(u64::from(received / 31), f.sendmes_sent);
        prop_assert_eq!(net.hops[2].sendmes.len() as u64, f.sendmes_sent);
    }
}
