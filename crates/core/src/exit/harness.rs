//! The test harness of the exit's streams: the client's `StreamMap`
//! joined message for message to an `ExitStreamMap`, every step checked
//! with the map's invariants and the wire model of `invariants`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tor_bytes::Reader;
use tor_cell::relaycell::msg::{AnyRelayMsg, Begin, BeginFlags, Data, EndReason};

use crate::cc::FlowParams;
use crate::ids::StreamId;
use crate::stream::{CloseReason, StreamEvent, StreamFlowMode, StreamMap, StreamMapConfig, Target};

use super::*;

pub(super) fn sid(n: u16) -> StreamId {
    StreamId::new(n).unwrap()
}

pub(super) fn cc() -> StreamFlowMode {
    StreamFlowMode::XonXoff {
        params: FlowParams::default(),
        onion: false,
    }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A BEGIN as it comes off the wire.
pub(super) fn begin_wire(body: &[u8]) -> AnyRelayMsg {
    AnyRelayMsg::Begin(
        <Begin as tor_cell::relaycell::msg::Body>::decode_from_reader(&mut Reader::from_slice(
            body,
        ))
        .unwrap(),
    )
}

pub(super) fn data(b: &[u8]) -> AnyRelayMsg {
    AnyRelayMsg::Data(Data::new(b).unwrap())
}

/// A client `StreamMap` and an exit `ExitStreamMap` joined directly.
pub(super) struct Pair {
    pub(super) client: StreamMap,
    pub(super) exit: ExitStreamMap,
    pub(super) now: Instant,
    pub(super) exit_events: Vec<ExitEvent>,
    pub(super) client_events: Vec<StreamEvent>,
    pub(super) exit_errors: Vec<ExitError>,
    /// Everything the exit sent, in order.
    pub(super) exit_sent: Vec<(StreamId, AnyRelayMsg)>,
    /// Everything the client sent, in order.
    pub(super) client_sent: Vec<(StreamId, AnyRelayMsg)>,
    pub(super) checker: invariants::ExitChecker,
}

impl Pair {
    pub(super) fn new(mode: StreamFlowMode, exit_cfg: ExitConfig) -> Self {
        let client_cfg = StreamMapConfig {
            connect_timeout: Duration::from_secs(60),
            informative_end_reasons: true,
            ..StreamMapConfig::default()
        };
        Pair {
            checker: invariants::ExitChecker::new(exit_cfg.data_len()),
            client: StreamMap::with_first_id(client_cfg, mode.clone(), 1),
            exit: ExitStreamMap::with_seed(exit_cfg, mode, 9),
            now: Instant::now(),
            exit_events: Vec::new(),
            client_events: Vec::new(),
            exit_errors: Vec::new(),
            exit_sent: Vec::new(),
            client_sent: Vec::new(),
        }
    }

    /// Move messages both ways until nothing moves.
    pub(super) fn pump(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            while let Some((id, msg)) = self.client.poll_transmit(true) {
                moved = true;
                self.client_sent.push((id, msg.clone()));
                let _ = self.give_exit(id, msg);
            }
            while let Some((id, msg)) = self.exit.poll_transmit(true) {
                moved = true;
                self.checker.sent(id, &msg, true).unwrap();
                self.exit_sent.push((id, msg.clone()));
                let _ = self.client.handle_msg(self.now, id, msg);
            }
            while let Some(ev) = self.exit.poll_event() {
                moved = true;
                self.exit_events.push(ev);
            }
            while let Some(ev) = self.client.poll_event() {
                moved = true;
                self.client_events.push(ev);
            }
            self.exit.check_invariants().unwrap();
            if !moved {
                return;
            }
        }
        panic!("never settled");
    }

    /// Hand the exit a client message, checking it.
    pub(super) fn give_exit(&mut self, id: StreamId, msg: AnyRelayMsg) -> Result<(), ExitError> {
        let before = self.exit.to_dest_buffered(id);
        let copy = msg.clone();
        let r = self.exit.handle_msg(id, msg, self.now);
        let after = self.exit.to_dest_buffered(id);
        self.checker
            .client_msg(id, &copy, &r, before, after)
            .unwrap();
        if let Err(e) = &r {
            self.exit_errors.push(e.clone());
        }
        self.exit.check_invariants().unwrap();
        r
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.exit.handle_timeout(self.now);
        self.pump();
    }

    /// Open a stream to `target` and return the exit's Connect event.
    pub(super) fn begin(&mut self, target: Target, flags: BeginFlags) -> (StreamId, ExitEvent) {
        let id = self.client.begin(&target, flags, self.now).unwrap();
        self.pump();
        let ev = self
            .exit_events
            .iter()
            .rev()
            .find(|e| e.id() == id)
            .cloned()
            .expect("a Connect event");
        (id, ev)
    }

    /// An open stream to example.com:80.
    pub(super) fn open(&mut self) -> StreamId {
        let (id, _) = self.begin(Target::hostname("example.com", 80), BeginFlags::empty());
        self.exit
            .connected(id, ip("192.0.2.80"), 600, self.now)
            .unwrap();
        self.pump();
        id
    }

    /// Everything the exit driver can read from `id`.
    pub(super) fn exit_read_all(&mut self, id: StreamId) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.exit.read(id, &mut buf, self.now).unwrap();
            if n == 0 {
                break;
            }
            self.checker.read(id, &buf[..n]).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        self.pump();
        out
    }

    /// The exit driver writes `bytes`; returns how many were taken.
    pub(super) fn exit_write(&mut self, id: StreamId, bytes: &[u8]) -> usize {
        let n = self.exit.write(id, bytes, self.now).unwrap();
        self.checker.wrote(id, &bytes[..n]);
        n
    }

    /// Everything the client application can read from `id` now.
    pub(super) fn client_read_all(&mut self, id: StreamId) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.client.read(id, &mut buf, self.now) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        self.pump();
        out
    }

    pub(super) fn client_ended(&self, id: StreamId) -> Option<(CloseReason, bool)> {
        self.client_events.iter().find_map(|e| match e {
            StreamEvent::Ended {
                id: i,
                reason,
                remote,
            } if *i == id => Some((*reason, *remote)),
            _ => None,
        })
    }

    pub(super) fn exit_closed(&self, id: StreamId) -> Vec<(EndReason, bool)> {
        self.exit_events
            .iter()
            .filter_map(|e| match e {
                ExitEvent::Closed {
                    id: i,
                    reason,
                    remote,
                } if *i == id => Some((*reason, *remote)),
                _ => None,
            })
            .collect()
    }
}
