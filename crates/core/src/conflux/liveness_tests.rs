//! Silent legs (Braid proposal 001 §3.6): a leg on which something went
//! and nothing came back is probed with LEG_PING, and lost when the PING
//! has no answer; a client probes once after each burst it received.

use super::resume_tests::linked_with;
use super::*;
use crate::conflux::ext::Probe;
use crate::conflux::retransmit::ProbeParams;

const QUIET: Duration = Duration::from_secs(3);
const LOST: Duration = Duration::from_secs(10);

/// A two-leg pair whose ends offer resumption with `client` and `exit`
/// as their probe settings, linked.
fn pair(client: Option<ProbeParams>, exit: Option<ProbeParams>) -> (Pair, Vec<LegId>) {
    let (p, legs) = linked_with(9, 0, &[5, 12], |p| {
        p.client.offer_resumption(ResumeParams {
            probe: client,
            ..ResumeParams::default()
        });
        p.exit.offer_resumption(ResumeParams {
            probe: exit,
            ..ResumeParams::default()
        });
    });
    assert!(p.client.is_resumable() && p.exit.is_resumable());
    (p, legs)
}

/// The probes `set` has to send, with their legs.
fn probes(set: &mut ConfluxSet) -> Vec<(LegId, Probe)> {
    std::iter::from_fn(|| set.poll_transmit())
        .filter_map(|(leg, m)| Probe::parse(&m).map(|p| (leg, p)))
        .collect()
}

fn silent(set: &mut ConfluxSet) -> Vec<LegId> {
    std::iter::from_fn(|| set.poll_event())
        .filter_map(|e| match e {
            ConfluxEvent::LegSilent { leg, silent } => {
                assert!(silent >= LOST, "{silent:?}");
                Some(leg)
            }
            _ => None,
        })
        .collect()
}

/// The exit sent on a leg and heard nothing for 3 s: it PINGs; the
/// client's PONG (the answer's sending asks for none) keeps the leg.
#[test]
fn a_quiet_leg_is_pinged_and_a_pong_keeps_it() {
    let (mut p, legs) = pair(Some(ProbeParams::default()), Some(ProbeParams::default()));
    let (a, ea) = (legs[0], p.map[&legs[0]]);
    let t0 = p.now;
    assert!(p.exit.leg_sent(ea, t0), "the first send starts the wait");
    assert!(!p.exit.leg_sent(ea, t0 + QUIET / 2), "one wait at a time");
    assert_eq!(p.exit.poll_timeout(), Some(t0 + QUIET));
    p.exit.handle_timeout(t0 + QUIET - Duration::from_millis(1));
    assert!(probes(&mut p.exit).is_empty());
    p.exit.handle_timeout(t0 + QUIET);
    assert_eq!(probes(&mut p.exit), [(ea, Probe::Ping)]);
    assert_eq!(p.exit.pings_sent(), 1);
    assert_eq!(p.exit.poll_timeout(), Some(t0 + QUIET + LOST));
    // The client answers on the same leg; its PONG's sending waits for
    // nothing.
    let now = t0 + QUIET + Duration::from_millis(5);
    p.client.leg_heard(a, now);
    p.client
        .handle_msg(a, None, Probe::Ping.msg(), now)
        .unwrap();
    assert_eq!(probes(&mut p.client), [(a, Probe::Pong)]);
    assert!(!p.client.leg_sent(a, now), "a PONG asks for no answer");
    assert_eq!(p.client.poll_timeout(), None, "a probe heard is no burst");
    // The PONG comes back: nothing more.
    let now = now + Duration::from_millis(5);
    p.exit.leg_heard(ea, now);
    p.exit.handle_msg(ea, None, Probe::Pong.msg(), now).unwrap();
    assert_eq!(p.exit.poll_timeout(), None);
    p.exit.handle_timeout(now + LOST * 2);
    assert!(silent(&mut p.exit).is_empty() && probes(&mut p.exit).is_empty());
}

/// No answer to the PING, nor anything else, for 10 s: the leg is
/// reported silent, once; a leg's RTT stretches both times.
#[test]
fn an_unanswered_ping_loses_the_leg_once() {
    let (mut p, legs) = pair(Some(ProbeParams::default()), Some(ProbeParams::default()));
    let (a, b) = (legs[0], legs[1]);
    let t0 = p.now;
    p.client.leg_sent(b, t0);
    p.client.handle_timeout(t0 + QUIET);
    assert_eq!(probes(&mut p.client), [(b, Probe::Ping)]);
    // Another leg's traffic does not keep this one.
    p.client.leg_heard(a, t0 + QUIET + LOST / 2);
    p.client
        .handle_timeout(t0 + QUIET + LOST - Duration::from_millis(1));
    assert!(silent(&mut p.client).is_empty());
    p.client.handle_timeout(t0 + QUIET + LOST);
    assert_eq!(silent(&mut p.client), [b]);
    p.client.handle_timeout(t0 + QUIET + LOST * 3);
    assert!(!silent(&mut p.client).contains(&b), "reported once");
    // Each time at least a multiple of the leg's RTT.
    let rtt = p.client.leg_rtt(a).unwrap();
    let slow = ProbeParams {
        quiet: rtt,
        lost: rtt,
    };
    let (mut p, legs) = pair(Some(slow), Some(slow));
    let t0 = p.now;
    let a = legs[0];
    let rtt = p.client.leg_rtt(a).unwrap();
    p.client.leg_sent(a, t0);
    assert_eq!(p.client.poll_timeout(), Some(t0 + rtt * 2));
    p.client.handle_timeout(t0 + rtt * 2);
    assert_eq!(p.client.poll_timeout(), Some(t0 + rtt * 6));
}

/// A client that only receives PINGs once after each burst (its legs may
/// all hang behind one guard, where the exit cannot tell it); an exit
/// does not (a client that sends notices itself).
#[test]
fn a_client_pings_once_after_a_burst_it_received() {
    let (mut p, legs) = pair(Some(ProbeParams::default()), Some(ProbeParams::default()));
    let (a, ea) = (legs[0], p.map[&legs[0]]);
    let t0 = p.now;
    for i in 0..5 {
        p.client.leg_heard(a, t0 + Duration::from_millis(i * 100));
        p.exit.leg_heard(ea, t0 + Duration::from_millis(i * 100));
    }
    let last = t0 + Duration::from_millis(400);
    assert_eq!(p.client.poll_timeout(), Some(last + QUIET));
    assert_eq!(p.exit.poll_timeout(), None);
    p.client.handle_timeout(last + QUIET);
    assert_eq!(probes(&mut p.client), [(a, Probe::Ping)]);
    // The PONG: the burst is answered, no second PING.
    let now = last + QUIET + Duration::from_millis(20);
    p.client.leg_heard(a, now);
    p.client
        .handle_msg(a, None, Probe::Pong.msg(), now)
        .unwrap();
    assert_eq!(p.client.poll_timeout(), None);
}

/// Probes only where both ends sent PROBE: an end that did not offer it
/// never pings, and a probe to it is a protocol violation.
#[test]
fn no_probe_without_probe_on_both_ends() {
    for (client, exit) in [
        (None, Some(ProbeParams::default())),
        (Some(ProbeParams::default()), None),
    ] {
        let (mut p, legs) = pair(client, exit);
        let (a, ea) = (legs[0], p.map[&legs[0]]);
        let t0 = p.now;
        assert!(!p.client.leg_sent(a, t0) && !p.exit.leg_sent(ea, t0));
        p.client.leg_heard(a, t0);
        assert_eq!(
            (p.client.poll_timeout(), p.exit.poll_timeout()),
            (None, None)
        );
        p.client.handle_timeout(t0 + LOST * 3);
        p.exit.handle_timeout(t0 + LOST * 3);
        assert!(probes(&mut p.client).is_empty() && probes(&mut p.exit).is_empty());
        let e = p
            .exit
            .handle_msg(ea, None, Probe::Ping.msg(), t0)
            .unwrap_err();
        assert!(e.is_protocol_violation(), "{e}");
        assert!(p.exit.is_closed());
    }
}
