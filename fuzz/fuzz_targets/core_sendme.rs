//! SENDMEs and circuit send control (`braid_core::cc`): arbitrary SENDME
//! bodies (`parse_sendme_body`) fed to a `CircuitSender` (fixed window or
//! TOR_VEGAS, parameters from an arbitrary consensus) interleaved with
//! DATA cells sent, clock steps and channel-blocked signals.
//!
//! Invariants: no panic; DATA is sent only while `can_send`, and then
//! accepted; outstanding SENDME tags never exceed their bound; a SENDME
//! carrying the oldest expected tag is never refused for its tag.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use braid_core::cc::{
    CcError, CcParams, CcPath, CircuitSender, SendmeTag, parse_sendme_body, sendme_v1_body,
};
use libfuzzer_sys::fuzz_target;

/// Consensus parameters the fuzzer may set.
const PARAMS: &[&str] = &[
    "cc_alg",
    "cc_sendme_inc",
    "cc_cwnd_init",
    "cc_cwnd_min",
    "cc_cwnd_max",
    "cc_cwnd_inc",
    "cc_cwnd_inc_pct_ss",
    "cc_cwnd_inc_rate",
    "cc_ewma_cwnd_pct",
    "cc_ewma_max",
    "cc_ewma_ss",
    "cc_ss_max",
    "cc_bwe_min",
    "cc_rtt_reset_pct",
    "cc_cwnd_full_gap",
    "cc_cwnd_full_minpct",
    "cc_cwnd_full_per_cwnd",
    "cc_vegas_alpha_exit",
    "cc_vegas_delta_exit",
    "cc_sscap_exit",
    "circwindow",
    "sendme_accept_min_version",
];

fuzz_target!(|input: (Vec<(u8, i32)>, u8, &[u8])| {
    let (consensus, inc, ops) = input;
    let consensus: Vec<(String, i32)> = consensus
        .iter()
        .map(|&(k, v)| (PARAMS[usize::from(k) % PARAMS.len()].to_owned(), v))
        .collect();
    let params = CcParams::from_consensus(&consensus);
    // Vegas with a `sendme_inc` the client would have accepted from the
    // exit (within one of the consensus value), or fixed windows.
    let offered = (i32::from(params.sendme_inc) + i32::from(inc % 3) - 1).clamp(0, 255) as u8;
    let mut sender = if inc >= 3 && params.sendme_inc_acceptable(offered) {
        CircuitSender::vegas(&params, CcPath::Exit, offered)
    } else {
        CircuitSender::fixed(&params)
    };
    let mut now = Instant::now();
    let mut sent: u64 = 0;
    // Tags of the cells that expect a SENDME, as the peer would see them.
    let mut expected: VecDeque<SendmeTag> = VecDeque::new();
    let mut ops = ops;
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op % 6 {
            // Send DATA cells while the window allows.
            0 | 1 => {
                for _ in 0..=(op >> 3) {
                    if !sender.can_send() {
                        break;
                    }
                    sent += 1;
                    let mut tag = [0_u8; 20];
                    tag[..8].copy_from_slice(&sent.to_be_bytes());
                    let tag = SendmeTag::from(tag);
                    let expects = sender
                        .on_data_sent(now, || tag)
                        .expect("DATA within the window is accepted");
                    if expects {
                        expected.push_back(tag);
                    }
                }
                assert!(sender.expected_sendmes() <= sender.expected_sendmes_capacity());
                assert_eq!(sender.expected_sendmes(), expected.len());
            }
            // A SENDME body from the wire.
            2 => {
                let n = usize::from(op >> 3).min(ops.len());
                let (body, rest) = ops.split_at(n);
                ops = rest;
                if let Ok(tag) = parse_sendme_body(body) {
                    let before = expected.len();
                    let _ = sender.on_sendme_received(now, tag.as_ref());
                    // The oldest tag is consumed whenever the version is
                    // acceptable; keep the model in step.
                    if sender.expected_sendmes() < before {
                        expected.pop_front();
                    }
                }
            }
            // The honest SENDME for the oldest outstanding cell.
            3 => {
                if let Some(tag) = expected.front().copied() {
                    let body = sendme_v1_body(&tag);
                    let parsed = parse_sendme_body(&body).expect("own body parses");
                    assert_eq!(parsed, Some(tag));
                    let before = expected.len();
                    let r = sender.on_sendme_received(now, parsed.as_ref());
                    assert!(
                        !matches!(r, Err(CcError::SendmeTagMismatch)),
                        "the right tag was refused"
                    );
                    if sender.expected_sendmes() < before {
                        expected.pop_front();
                    }
                    assert_eq!(sender.expected_sendmes(), expected.len());
                }
            }
            4 => now += Duration::from_micros(u64::from(op) * 997),
            _ => sender.set_blocked_on_channel(op & 8 != 0, u64::from(op >> 4)),
        }
        let _ = sender.send_window();
        assert!(sender.expected_sendmes() <= sender.expected_sendmes_capacity());
    }
});
